package signer_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
)

func TestSignedTransactionIsValid(t *testing.T) {
	tests := []struct {
		name string
		plan signertest.Plan
	}{
		{name: "two inputs, two withdrawals and change", plan: goodPlan()},
		{name: "one input and one withdrawal", plan: signertest.Plan{
			Coins:       []signertest.Coin{{Branch: 1, Index: 0, ValueSat: 100_000}},
			Withdrawals: []signertest.Withdrawal{{ID: "w1", AmountSat: 99_000}},
		}},
		{name: "ten inputs of both branches", plan: func() signertest.Plan {
			p := goodPlan()
			p.Coins = nil
			for i := range uint32(10) {
				p.Coins = append(p.Coins, signertest.Coin{Branch: i % 2, Index: 100 + i, ValueSat: 11_000})
			}
			p.ChangeSat = 110_000 - 70_000 - 4_000
			return p
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, testLimits)
			b := f.wallet.Batch(t, tt.plan)
			signed := f.checkAndSign(t, b)

			p, err := psbt.NewFromRawBytes(bytes.NewReader(signed), false)
			if err != nil {
				t.Fatalf("the signed PSBT does not decode: %v", err)
			}
			if !p.IsComplete() {
				t.Fatal("the signed PSBT is not finalized")
			}
			tx, err := psbt.Extract(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := tx.TxHash().String(); got != b.Record.Txid {
				t.Errorf("the signed transaction is %s, the batch %s", got, b.Record.Txid)
			}
			// Verify against the outputs the test itself says were spent, not the PSBT's.
			prevOuts := make(map[wire.OutPoint]*wire.TxOut)
			for i, c := range tt.plan.Coins {
				prevOuts[tx.TxIn[i].PreviousOutPoint] = wire.NewTxOut(c.ValueSat, f.wallet.Script(t, c.Branch, c.Index))
			}
			fetcher := txscript.NewMultiPrevOutFetcher(prevOuts)
			hashes := txscript.NewTxSigHashes(tx, fetcher)
			for i, in := range tx.TxIn {
				prev := prevOuts[in.PreviousOutPoint]
				vm, err := txscript.NewEngine(prev.PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, prev.Value, fetcher)
				if err != nil {
					t.Fatal(err)
				}
				if err := vm.Execute(); err != nil {
					t.Errorf("input %d does not validate: %v", i, err)
				}
			}
		})
	}
}

func TestSignAgainGivesTheSameTransaction(t *testing.T) {
	f := newFixture(t, testLimits)
	b := f.wallet.Batch(t, goodPlan())
	first := f.checkAndSign(t, b)
	again := f.checkAndSign(t, b)
	if !bytes.Equal(first, again) {
		t.Error("signing a batch again gave other bytes; RFC 6979 signatures are deterministic")
	}
}

func TestSignRefusesWhatCheckDidNotReturn(t *testing.T) {
	f := newFixture(t, testLimits)
	if _, err := f.signer.Sign(nil); err == nil {
		t.Error("Sign(nil) succeeded")
	}
	if _, err := f.signer.Sign(&signer.CheckedBatch{}); err == nil {
		t.Error("Sign of a zero CheckedBatch succeeded")
	}
}

func TestDailyLimit(t *testing.T) {
	limits := testLimits
	limits.DailyLimitSat = 100_000
	// a pays out 70,000 sat, bOther 50,000 sat: either fits the limit, both do not.
	a := func(f *fixture, t *testing.T) *signertest.Batch { return f.wallet.Batch(t, goodPlan()) }
	bOther := func(f *fixture, t *testing.T) *signertest.Batch {
		return f.wallet.Batch(t, signertest.Plan{
			BatchID:     "b8",
			Coins:       []signertest.Coin{{Branch: 0, Index: 9, ValueSat: 60_000}},
			Withdrawals: []signertest.Withdrawal{{ID: "w3", AmountSat: 50_000}},
			ChangeSat:   9_000, ChangeIndex: 6,
		})
	}

	t.Run("a batch that would take the day above the limit is refused", func(t *testing.T) {
		f := newFixture(t, limits)
		f.checkAndSign(t, a(f, t))
		_, err := f.signer.Check(bOther(f, t).Record, bOther(f, t).Payouts, nil)
		if !errors.Is(err, signer.ErrDailyLimit) {
			t.Fatalf("Check = %v, want %v", err, signer.ErrDailyLimit)
		}
	})
	t.Run("the day's outflow is kept across a restart", func(t *testing.T) {
		f := newFixture(t, limits)
		f.checkAndSign(t, a(f, t))
		f.restart(t)
		b := bOther(f, t)
		if _, err := f.signer.Check(b.Record, b.Payouts, nil); !errors.Is(err, signer.ErrDailyLimit) {
			t.Fatalf("Check after a restart = %v, want %v", err, signer.ErrDailyLimit)
		}
	})
	t.Run("signing a batch again does not count it twice", func(t *testing.T) {
		f := newFixture(t, limits)
		f.checkAndSign(t, a(f, t))
		f.restart(t)
		f.checkAndSign(t, a(f, t))
		ledger, err := signer.OpenLedger(f.ledgerPath)
		if err != nil {
			t.Fatal(err)
		}
		if got := ledger.OutflowSat(f.now); got != 70_000 {
			t.Errorf("the day's outflow is %d sat, want 70000 (one batch)", got)
		}
	})
	t.Run("a fee bump of a signed batch (the same inputs) is not counted again", func(t *testing.T) {
		f := newFixture(t, limits)
		f.checkAndSign(t, a(f, t))
		bump := goodPlan()
		bump.BatchID, bump.ChangeSat, bump.Replaces = "b9", 37_000, "b7"
		f.checkAndSign(t, f.wallet.Batch(t, bump)) // 70,000 twice would exceed 100,000
		ledger, err := signer.OpenLedger(f.ledgerPath)
		if err != nil {
			t.Fatal(err)
		}
		if got := ledger.OutflowSat(f.now); got != 70_000 {
			t.Errorf("the day's outflow is %d sat, want 70000 (one payment, two versions)", got)
		}
	})
	t.Run("the next UTC day starts from zero", func(t *testing.T) {
		f := newFixture(t, limits)
		f.checkAndSign(t, a(f, t))
		f.now = day0.AddDate(0, 0, 1).Truncate(24 * time.Hour)
		f.restart(t)
		f.checkAndSign(t, bOther(f, t))
	})
	t.Run("one batch above the limit is refused", func(t *testing.T) {
		small := limits
		small.DailyLimitSat = 69_999
		f := newFixture(t, small)
		b := a(f, t)
		if _, err := f.signer.Check(b.Record, b.Payouts, nil); !errors.Is(err, signer.ErrDailyLimit) {
			t.Fatalf("Check = %v, want %v", err, signer.ErrDailyLimit)
		}
	})
	t.Run("two batches checked together cannot both be signed past the limit", func(t *testing.T) {
		f := newFixture(t, limits)
		ba, bb := a(f, t), bOther(f, t)
		ca, err := f.signer.Check(ba.Record, ba.Payouts, nil)
		if err != nil {
			t.Fatal(err)
		}
		cb, err := f.signer.Check(bb.Record, bb.Payouts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.signer.Sign(ca); err != nil {
			t.Fatal(err)
		}
		signed, err := f.signer.Sign(cb)
		if !errors.Is(err, signer.ErrDailyLimit) || signed != nil {
			t.Fatalf("Sign = %d bytes, %v; want no bytes and %v", len(signed), err, signer.ErrDailyLimit)
		}
	})
}

func TestLedgerConflicts(t *testing.T) {
	t.Run("the same transaction with other input values is refused", func(t *testing.T) {
		// The attack BIP 143 leaves open: two PSBTs of one transaction, each lying about a
		// different input, whose valid signatures an attacker combines.
		f := newFixture(t, testLimits)
		f.checkAndSign(t, f.wallet.Batch(t, goodPlan()))
		b := f.wallet.Batch(t, goodPlan())
		b.Record.Inputs[0].ValueSat -= 500
		b.Record.Inputs[1].ValueSat += 500
		b.EditPSBT(t, func(p *psbt.Packet) {
			p.Inputs[0].WitnessUtxo.Value -= 500
			p.Inputs[1].WitnessUtxo.Value += 500
		})
		_, err := f.signer.Check(b.Record, b.Payouts, nil)
		if !errors.Is(err, signer.ErrLedgerConflict) {
			t.Fatalf("Check = %v, want %v", err, signer.ErrLedgerConflict)
		}
	})
	t.Run("a batch id signed before as another transaction is refused", func(t *testing.T) {
		f := newFixture(t, testLimits)
		f.checkAndSign(t, f.wallet.Batch(t, goodPlan()))
		p := goodPlan()
		p.ChangeIndex = 6
		b := f.wallet.Batch(t, p)
		if _, err := f.signer.Check(b.Record, b.Payouts, nil); !errors.Is(err, signer.ErrLedgerConflict) {
			t.Fatalf("Check = %v, want %v", err, signer.ErrLedgerConflict)
		}
	})
}

func TestSignHandsNothingOutWhenTheLedgerCannotBeWritten(t *testing.T) {
	f := newFixture(t, testLimits)
	f.ledgerPath = filepath.Join(t.TempDir(), "gone", "ledger.json")
	f.restart(t)
	b := f.wallet.Batch(t, goodPlan())
	c, err := f.signer.Check(b.Record, b.Payouts, nil)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := f.signer.Sign(c)
	if err == nil || signed != nil {
		t.Fatalf("Sign = %d bytes, %v; want no bytes and an error", len(signed), err)
	}
}

func TestLedgerFile(t *testing.T) {
	t.Run("a corrupt file is refused, never reset", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.json")
		if err := os.WriteFile(path, []byte(`{"version":1,"days":[`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := signer.OpenLedger(path); err == nil {
			t.Fatal("OpenLedger of a truncated file succeeded")
		}
	})
	t.Run("a file of another version is refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.json")
		if err := os.WriteFile(path, []byte(`{"version":2,"days":[]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := signer.OpenLedger(path); err == nil {
			t.Fatal("OpenLedger of a version 2 file succeeded")
		}
	})
	t.Run("days older than the retention are dropped on the next write", func(t *testing.T) {
		f := newFixture(t, testLimits)
		f.checkAndSign(t, f.wallet.Batch(t, goodPlan()))
		f.now = day0.AddDate(0, 0, 40)
		f.restart(t)
		p := goodPlan()
		p.BatchID = "b9"
		f.checkAndSign(t, f.wallet.Batch(t, p))

		var file struct {
			Days []struct {
				Day     string `json:"day"`
				Batches []struct {
					BatchID    string `json:"batch_id"`
					OutflowSat int64  `json:"outflow_sat"`
				} `json:"batches"`
			} `json:"days"`
		}
		raw, err := os.ReadFile(f.ledgerPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &file); err != nil {
			t.Fatal(err)
		}
		if len(file.Days) != 1 || file.Days[0].Day != "2025-04-10" || len(file.Days[0].Batches) != 1 || file.Days[0].Batches[0].BatchID != "b9" {
			t.Errorf("ledger file = %s, want only 2025-04-10 with b9", raw)
		}
		info, err := os.Stat(f.ledgerPath)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("ledger file mode %04o, want 0600", perm)
		}
	})
}
