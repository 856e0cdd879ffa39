package signer_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/wire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
	"github.com/bankd/bankd/wallet/descriptor"
)

// TestSweeps: a deposit wallet's signer signs a sweep only to the hot wallet it is configured
// with, at that wallet's change script; a sweep has no outflow.
func TestSweeps(t *testing.T) {
	deposit := signertest.NewWallet(t)
	hot := signertest.NewWallet(t)
	hotDesc, err := descriptor.Parse(hot.Descriptor, hot.Net)
	if err != nil {
		t.Fatal(err)
	}
	newSigner := func(to *signer.SweepDestination) *signer.Signer {
		w, err := signer.LoadWallet(deposit.KeyFile(t), deposit.Descriptor, deposit.Net)
		if err != nil {
			t.Fatal(err)
		}
		ledger, err := signer.OpenLedger(filepath.Join(t.TempDir(), "ledger.json"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := signer.New(signer.Config{Wallet: w, Ledger: ledger, Limits: testLimits, Now: func() time.Time { return day0 }, SweepTo: to})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A sweep built as the planner builds it: the deposit wallet's coins into one output,
	// marked change at index 4 and paying the hot wallet's change script there.
	sweep := func(t *testing.T) *signertest.Batch {
		b := deposit.Batch(t, signertest.Plan{Coins: []signertest.Coin{{Index: 1, ValueSat: 80_000}, {Index: 2, ValueSat: 40_000}}, ChangeSat: 119_000, ChangeIndex: 4})
		script, err := hotDesc.Multipath()[1].Derive(4)
		if err != nil {
			t.Fatal(err)
		}
		b.Record.ToWalletId, b.Record.Queue = "hot", "sweep"
		b.Record.Outputs[0].Script = script
		b.EditPSBT(t, func(p *psbt.Packet) {
			p.UnsignedTx.TxOut[0].PkScript = script
			p.Outputs[0].Bip32Derivation = nil
		})
		b.SyncTxid(t)
		return b
	}
	to := &signer.SweepDestination{WalletID: "hot", Change: hotDesc.Multipath()[1]}

	c, err := newSigner(to).Check(sweep(t).Record, nil, nil)
	if err != nil {
		t.Fatalf("a sweep to the configured hot wallet: %v", err)
	}
	if c.OutflowSat() != 0 {
		t.Errorf("a sweep's outflow is %d, want 0", c.OutflowSat())
	}
	for _, bad := range []struct {
		name string
		s    *signer.Signer
		edit func(*signertest.Batch)
	}{
		{"no destination configured", newSigner(nil), func(*signertest.Batch) {}},
		{"another destination wallet", newSigner(to), func(b *signertest.Batch) { b.Record.ToWalletId = "elsewhere" }},
		{"another change index than the script", newSigner(to), func(b *signertest.Batch) { b.Record.Outputs[0].ChangeIndex = 5 }},
	} {
		t.Run(bad.name, func(t *testing.T) {
			b := sweep(t)
			bad.edit(b)
			if _, err := bad.s.Check(b.Record, nil, nil); !errors.Is(err, signer.ErrChange) {
				t.Fatalf("Check = %v, want %v", err, signer.ErrChange)
			}
		})
	}
}

// TestSplitChange: a batch whose change is split over several change indexes of the wallet is
// signed; its change is the sum and its outflow the withdrawals only.
func TestSplitChange(t *testing.T) {
	w := signertest.NewWallet(t)
	b := w.Batch(t, signertest.Plan{Coins: []signertest.Coin{{Index: 1, ValueSat: 200_500}}, ChangeSat: 150_000, ChangeIndex: 4,
		Withdrawals: []signertest.Withdrawal{{ID: "w1", AmountSat: 50_000}}})
	s := newSplitSigner(t, w)
	// Split 150,000 of change into 100,000 at index 4 and 50,000 at index 5.
	b.Record.Outputs[1].ValueSat = 100_000
	b.Record.Outputs = append(b.Record.Outputs, &bankdv1.BatchOutput{Vout: 2, ValueSat: 50_000, Script: w.Script(t, 1, 5), Change: true, ChangeIndex: 5})
	b.EditPSBT(t, func(p *psbt.Packet) {
		p.UnsignedTx.TxOut[1].Value = 100_000
		p.UnsignedTx.AddTxOut(wire.NewTxOut(50_000, w.Script(t, 1, 5)))
		p.Outputs = append(p.Outputs, psbt.POutput{})
	})
	b.SyncTxid(t)
	c, err := s.Check(b.Record, b.Payouts, nil)
	if err != nil {
		t.Fatalf("a split change: %v", err)
	}
	if c.ChangeSat() != 150_000 || c.OutflowSat() != 50_000 {
		t.Fatalf("change %d, outflow %d", c.ChangeSat(), c.OutflowSat())
	}
}

func newSplitSigner(t *testing.T, w *signertest.Wallet) *signer.Signer {
	t.Helper()
	wallet, err := signer.LoadWallet(w.KeyFile(t), w.Descriptor, w.Net)
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := signer.OpenLedger(filepath.Join(t.TempDir(), "ledger.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := signer.New(signer.Config{Wallet: wallet, Ledger: ledger, Limits: testLimits, Now: func() time.Time { return day0 }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
