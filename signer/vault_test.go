package signer_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
	"github.com/bankd/bankd/wallet/descriptor"
)

// TestVaultMoves: the hot wallet's signer signs a move to the cold vault only when output 0 is
// the configured cold descriptor's receive script at the recorded index, and does not count it
// against the daily limit.
func TestVaultMoves(t *testing.T) {
	hot := signertest.NewWallet(t)
	cosigners := []*signertest.Wallet{signertest.NewWallet(t), signertest.NewWallet(t), signertest.NewWallet(t)}
	coldText := "wsh(sortedmulti(2"
	for _, c := range cosigners {
		k := c.Master
		for _, step := range c.Account {
			var err error
			if k, err = k.Derive(step); err != nil {
				t.Fatal(err)
			}
		}
		pub, err := k.Neuter()
		if err != nil {
			t.Fatal(err)
		}
		coldText += "," + pub.String() + "/<0;1>/*"
	}
	coldText += "))"
	cold, err := descriptor.Parse(coldText, hot.Net)
	if err != nil {
		t.Fatal(err)
	}
	receive := cold.Multipath()[0]
	newSigner := func(v *signer.VaultDestination) *signer.Signer {
		w, err := signer.LoadWallet(hot.KeyFile(t), hot.Descriptor, hot.Net)
		if err != nil {
			t.Fatal(err)
		}
		ledger, err := signer.OpenLedger(filepath.Join(t.TempDir(), "ledger.json"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := signer.New(signer.Config{Wallet: w, Ledger: ledger, Limits: testLimits, Now: func() time.Time { return day0 }, Vault: v})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A move built as the planner builds it: output 0 to the cold receive index 7, then change.
	move := func(t *testing.T) *signertest.Batch {
		b := hot.Batch(t, signertest.Plan{Coins: []signertest.Coin{{Index: 1, ValueSat: 200_000}}, ChangeSat: 199_000, ChangeIndex: 2})
		script, err := receive.Derive(7)
		if err != nil {
			t.Fatal(err)
		}
		insertOutput(t, b, 0, &bankdv1.BatchOutput{ValueSat: 300_000, Script: script, VaultIndex: 7})
		b.Record.Queue, b.Record.VaultProposalId, b.Record.VaultWalletId = "vault", "v1", "cold"
		return b
	}
	to := &signer.VaultDestination{WalletID: "cold", Receive: receive}
	c, err := newSigner(to).Check(move(t).Record, nil, nil)
	if err != nil {
		t.Fatalf("a move to the configured cold vault: %v", err)
	}
	if c.OutflowSat() != 0 {
		t.Errorf("a move to the cold vault counts %d sat of outflow, want 0", c.OutflowSat())
	}
	for _, bad := range []struct {
		name string
		s    *signer.Signer
		edit func(*signertest.Batch)
	}{
		{"no cold vault configured", newSigner(nil), func(*signertest.Batch) {}},
		{"another cold wallet", newSigner(to), func(b *signertest.Batch) { b.Record.VaultWalletId = "elsewhere" }},
		{"another receive index than the script", newSigner(to), func(b *signertest.Batch) { b.Record.Outputs[0].VaultIndex = 8 }},
		{"output 0 marked a withdrawal", newSigner(to), func(b *signertest.Batch) { b.Record.Outputs[0].PayoutId = "w9" }},
	} {
		t.Run(bad.name, func(t *testing.T) {
			b := move(t)
			bad.edit(b)
			if _, err := bad.s.Check(b.Record, nil, nil); !errors.Is(err, signer.ErrPayout) {
				t.Fatalf("Check = %v, want ErrPayout", err)
			}
		})
	}
}
