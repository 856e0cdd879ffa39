package signer_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/psbt"

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

	c, err := newSigner(to).Check(sweep(t).Record, nil)
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
			if _, err := bad.s.Check(b.Record, nil); !errors.Is(err, signer.ErrChange) {
				t.Fatalf("Check = %v, want %v", err, signer.ErrChange)
			}
		})
	}
}
