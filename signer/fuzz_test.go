package signer_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
)

// FuzzCheck feeds arbitrary bytes to Check as a batch's PSBT: it must refuse them with a
// *CheckError, never panic, and never accept anything but the batch's own PSBT.
func FuzzCheck(f *testing.F) {
	w := signertest.NewWalletFromSeed(f, []byte("signer fuzz seed, 32 bytes long."))
	b := w.Batch(f, goodPlan())
	good := b.Record.Psbt
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("psbt\xff"))
	f.Add([]byte{})
	ledgerDir := f.TempDir()
	wallet, err := signer.LoadWallet(w.KeyFile(f), w.Descriptor, w.Net)
	if err != nil {
		f.Fatal(err)
	}
	ledger, err := signer.OpenLedger(ledgerDir + "/ledger.json")
	if err != nil {
		f.Fatal(err)
	}
	s, err := signer.New(signer.Config{Wallet: wallet, Ledger: ledger, Limits: testLimits})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec := proto.Clone(b.Record).(*bankdv1.PayoutBatch)
		rec.Psbt = data
		c, err := s.Check(rec, b.Payouts, nil)
		if err != nil {
			var ce *signer.CheckError
			if !errors.As(err, &ce) {
				t.Fatalf("Check = %v, want a *CheckError", err)
			}
			return
		}
		if c.Txid() != b.Record.Txid {
			t.Fatalf("Check accepted a PSBT of transaction %s for batch %s", c.Txid(), b.Record.Txid)
		}
	})
}
