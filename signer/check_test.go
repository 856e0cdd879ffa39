package signer_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
)

// attacker is a script nobody in the tests owns.
var attacker = signertest.WithdrawalScript("attacker")

func TestCheck(t *testing.T) {
	h := func(i uint32) uint32 { return 0x80000000 + i }
	tests := []struct {
		name string
		// plan replaces goodPlan when set.
		plan func() signertest.Plan
		// edit forges the batch (the wallet is the signer's).
		edit func(t *testing.T, w *signertest.Wallet, b *signertest.Batch)
		// wantErr is the refusal's kind, nil for a batch fit to sign; wantIn is part of its
		// message.
		wantErr error
		wantIn  string
	}{
		{
			name: "a planned batch of the wallet's coins paying its withdrawals with change is fit to sign",
		},
		{
			name: "a batch without change is fit to sign",
			plan: func() signertest.Plan { p := goodPlan(); p.ChangeSat = 0; p.Coins[1].ValueSat = 12_000; return p },
		},

		// 1. The PSBT is the batch record.
		{
			name:    "a PSBT that does not decode is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Record.Psbt = []byte("not a psbt") },
			wantErr: signer.ErrMalformed, wantIn: "does not decode",
		},
		{
			name: "bytes after the PSBT are refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Record.Psbt = append(b.Record.Psbt, 0)
			},
			wantErr: signer.ErrMalformed, wantIn: "follow the PSBT",
		},
		{
			name: "a batch that is not PLANNED is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Record.State = bankdv1.BatchState_BATCH_STATE_ABANDONED
			},
			wantErr: signer.ErrMalformed, wantIn: "ABANDONED",
		},
		{
			name: "an output value changed in the PSBT is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.UnsignedTx.TxOut[0].Value += 1_000 })
			},
			wantErr: signer.ErrTxMismatch, wantIn: "output 0: ",
		},
		{
			name: "an output added to the PSBT is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) {
					p.UnsignedTx.AddTxOut(wire.NewTxOut(1_000, attacker))
					p.Outputs = append(p.Outputs, psbt.POutput{})
				})
			},
			wantErr: signer.ErrTxMismatch, wantIn: "4 outputs, the record 3",
		},
		{
			name: "an output redirected in the PSBT is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.UnsignedTx.TxOut[1].PkScript = attacker })
			},
			wantErr: signer.ErrTxMismatch, wantIn: "output 1: transaction differs from the batch record: pays script",
		},
		{
			name: "an input spending another outpoint than the record's is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.UnsignedTx.TxIn[1].PreviousOutPoint.Hash = chainhash.HashH([]byte("x")) })
			},
			wantErr: signer.ErrTxMismatch, wantIn: "input 1: transaction differs from the batch record: spends",
		},
		{
			name: "inputs in another order than the record's are refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Record.Inputs[0], b.Record.Inputs[1] = b.Record.Inputs[1], b.Record.Inputs[0]
			},
			wantErr: signer.ErrTxMismatch, wantIn: "input 0: transaction differs from the batch record: spends",
		},
		{
			name: "a txid that is not the transaction's is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Record.Txid = chainhash.HashH([]byte("x")).String()
			},
			wantErr: signer.ErrTxMismatch, wantIn: "transaction's id",
		},
		{
			name: "a version 1 transaction is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.UnsignedTx.Version = 1 })
				b.SyncTxid(t)
			},
			wantErr: signer.ErrTxMismatch, wantIn: "version 1",
		},
		{
			name: "a locktime is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.UnsignedTx.LockTime = 900_000 })
				b.SyncTxid(t)
			},
			wantErr: signer.ErrTxMismatch, wantIn: "locktime 900000",
		},
		{
			name: "a final sequence is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.UnsignedTx.TxIn[0].Sequence = wire.MaxTxInSequenceNum })
				b.SyncTxid(t)
			},
			wantErr: signer.ErrTxMismatch, wantIn: "input 0: transaction differs from the batch record: sequence 0xffffffff",
		},
		{
			name: "a witness UTXO worth another amount than the record's input is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[1].WitnessUtxo.Value -= 5_000 })
			},
			wantErr: signer.ErrTxMismatch, wantIn: "input 1: transaction differs from the batch record: the witness UTXO is worth 45000 sat, the record says 50000 sat",
		},

		// 2. Every input is the wallet's.
		{
			name: "an input with another master fingerprint is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[0].Bip32Derivation[0].MasterKeyFingerprint ^= 1 })
			},
			wantErr: signer.ErrForeignInput, wantIn: "input 0: input is not the wallet's: BIP 32 fingerprint",
		},
		{
			name: "an input on another account's path is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[0].Bip32Derivation[0].Bip32Path = []uint32{h(84), h(1), h(1), 0, 3} })
			},
			wantErr: signer.ErrForeignInput, wantIn: "m/84'/1'/1'/0/3 is not m/84'/1'/0'/<branch>/<index>",
		},
		{
			name: "an input on a third branch is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[1].Bip32Derivation[0].Bip32Path = w.Path(2, 2) })
			},
			wantErr: signer.ErrForeignInput, wantIn: "input 1: ",
		},
		{
			name: "an input whose named key is not the key at its path is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[0].Bip32Derivation[0].PubKey = w.PubKey(t, 0, 4) })
			},
			wantErr: signer.ErrForeignInput, wantIn: "the key at m/84'/1'/0'/0/3 is",
		},
		{
			name: "an input spending another script than the wallet's at its path is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[1].WitnessUtxo.PkScript = attacker })
				b.Record.Inputs[1].Script = attacker
			},
			wantErr: signer.ErrForeignInput, wantIn: "input 1: input is not the wallet's: spends script",
		},
		{
			name: "an input of another wallet is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				other := signertest.NewWallet(t)
				b.EditPSBT(t, func(p *psbt.Packet) {
					p.Inputs[1].WitnessUtxo.PkScript = other.Script(t, 1, 2)
					p.Inputs[1].Bip32Derivation[0] = &psbt.Bip32Derivation{PubKey: other.PubKey(t, 1, 2), MasterKeyFingerprint: other.FingerprintUint32(), Bip32Path: other.Path(1, 2)}
				})
				b.Record.Inputs[1].Script = other.Script(t, 1, 2)
			},
			wantErr: signer.ErrForeignInput, wantIn: "input 1: ",
		},
		{
			name: "an input without a BIP 32 derivation is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[0].Bip32Derivation = nil })
			},
			wantErr: signer.ErrForeignInput, wantIn: "0 BIP 32 derivations",
		},
		{
			name: "an input with a witness script is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[0].WitnessScript = []byte{txscript.OP_TRUE} })
			},
			wantErr: signer.ErrForeignInput, wantIn: "witness script",
		},
		{
			name:    "an input derived elsewhere than the record says is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Record.Inputs[0].Index = 4 },
			wantErr: signer.ErrTxMismatch, wantIn: "the record at 0/4",
		},
		{
			name: "an input that is not SIGHASH_ALL is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[0].SighashType = txscript.SigHashSingle | txscript.SigHashAnyOneCanPay })
			},
			wantErr: signer.ErrMalformed, wantIn: "sighash type 0x83",
		},
		{
			name: "an input without a witness UTXO is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Inputs[1].WitnessUtxo = nil })
			},
			wantErr: signer.ErrMalformed, wantIn: "input 1: malformed batch: no witness UTXO",
		},

		// 3. Change.
		{
			name: "change to a receive index is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				receive := w.Script(t, 0, 5)
				b.Record.Outputs[2].Script = receive
				b.EditPSBT(t, func(p *psbt.Packet) {
					p.UnsignedTx.TxOut[2].PkScript = receive
					p.Outputs[2].Bip32Derivation[0] = &psbt.Bip32Derivation{PubKey: w.PubKey(t, 0, 5), MasterKeyFingerprint: w.FingerprintUint32(), Bip32Path: w.Path(0, 5)}
				})
				b.SyncTxid(t)
			},
			wantErr: signer.ErrChange, wantIn: "output 2: bad change output: pays script",
		},
		{
			name:    "change at another index than the record's is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Record.Outputs[2].ChangeIndex = 6 },
			wantErr: signer.ErrChange, wantIn: "change script at index 6",
		},
		{
			name: "a change derivation naming the receive branch is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) {
					p.Outputs[2].Bip32Derivation[0] = &psbt.Bip32Derivation{PubKey: w.PubKey(t, 0, 5), MasterKeyFingerprint: w.FingerprintUint32(), Bip32Path: w.Path(0, 5)}
				})
			},
			wantErr: signer.ErrChange, wantIn: "the PSBT derives it at 0/5",
		},
		{
			name: "a change derivation of another key is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.EditPSBT(t, func(p *psbt.Packet) { p.Outputs[2].Bip32Derivation[0].MasterKeyFingerprint ^= 1 })
			},
			wantErr: signer.ErrChange, wantIn: "BIP 32 fingerprint",
		},
		{
			name:    "an output without a withdrawal that is not marked change is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Record.Outputs[2].Change = false },
			wantErr: signer.ErrChange, wantIn: "output 2: bad change output: pays no withdrawal and is not marked change",
		},
		{
			name:    "an output marked change that pays a withdrawal is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Record.Outputs[0].Change = true },
			wantErr: signer.ErrChange, wantIn: `output 0: bad change output: marked change but pays withdrawal "w1"`,
		},
		{
			name: "a second change output at the same change index is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				insertOutput(t, b, 3, &bankdv1.BatchOutput{ValueSat: 5_000, Script: w.Script(t, 1, 5), Change: true, ChangeIndex: 5})
			},
			wantErr: signer.ErrChange, wantIn: "output 3: bad change output: change index 5 is paid twice",
		},
		{
			name: "change before a withdrawal is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				insertOutput(t, b, 0, &bankdv1.BatchOutput{ValueSat: 5_000, Script: w.Script(t, 1, 6), Change: true, ChangeIndex: 6})
			},
			wantErr: signer.ErrChange, wantIn: "output 0: bad change output: change must come after every withdrawal",
		},
		{
			name: "an extra output to an outsider, marked change, is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				insertOutput(t, b, 0, &bankdv1.BatchOutput{ValueSat: 5_000, Script: attacker, Change: true})
			},
			wantErr: signer.ErrChange, wantIn: "output 0: ",
		},

		// 4. Every other output pays a withdrawal of this batch.
		{
			name: "an output redirected in the record and the PSBT alike is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Record.Outputs[1].Script = attacker
				b.EditPSBT(t, func(p *psbt.Packet) { p.UnsignedTx.TxOut[1].PkScript = attacker })
				b.SyncTxid(t)
			},
			wantErr: signer.ErrPayout, wantIn: `output 1: output does not pay its withdrawal: pays script`,
		},
		{
			name: "an output value changed in the record and the PSBT alike is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Record.Outputs[0].ValueSat += 1_000
				b.Record.FeeSat -= 1_000
				b.EditPSBT(t, func(p *psbt.Packet) { p.UnsignedTx.TxOut[0].Value += 1_000 })
				b.SyncTxid(t)
			},
			wantErr: signer.ErrPayout, wantIn: `output 0: output does not pay its withdrawal: pays 41000 sat; withdrawal "w1" is for 40000 sat`,
		},
		{
			name: "an extra output to an unknown withdrawal is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				insertOutput(t, b, 1, &bankdv1.BatchOutput{ValueSat: 5_000, Script: attacker, PayoutId: "w9"})
			},
			wantErr: signer.ErrPayout, wantIn: `output 1: output does not pay its withdrawal: withdrawal "w9" is unknown`,
		},
		{
			name: "a withdrawal paid twice is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				first := b.Record.Outputs[0]
				insertOutput(t, b, 2, &bankdv1.BatchOutput{ValueSat: first.ValueSat, Script: first.Script, PayoutId: first.PayoutId})
			},
			wantErr: signer.ErrPayout, wantIn: `output 2: output does not pay its withdrawal: pays withdrawal "w1" a second time (output 0 pays it)`,
		},
		{
			name: "a withdrawal that is not BATCHED is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Payouts[1].State = bankdv1.PayoutState_PAYOUT_STATE_CANCELLED
			},
			wantErr: signer.ErrPayout, wantIn: `withdrawal "w2" is PAYOUT_STATE_CANCELLED, not BATCHED`,
		},
		{
			name:    "a withdrawal of another batch is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Payouts[0].BatchId = "b6" },
			wantErr: signer.ErrPayout, wantIn: `withdrawal "w1" is in batch "b6"`,
		},
		{
			name:    "a withdrawal for another amount is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Payouts[0].AmountSat = 39_000 },
			wantErr: signer.ErrPayout, wantIn: `withdrawal "w1" is for 39000 sat`,
		},
		{
			name:    "a withdrawal to another script is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Payouts[1].Script = attacker },
			wantErr: signer.ErrPayout, wantIn: `withdrawal "w2" is to script`,
		},
		{
			name:    "a withdrawal naming another output of the transaction is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Payouts[0].Vout = 1 },
			wantErr: signer.ErrPayout, wantIn: `withdrawal "w1" names output`,
		},
		{
			name:    "a withdrawal the caller did not give is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Payouts = b.Payouts[:1] },
			wantErr: signer.ErrPayout, wantIn: `withdrawal "w2" is unknown`,
		},
		{
			name: "a withdrawal given that no output pays is refused",
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Payouts = append(b.Payouts, &bankdv1.Payout{Id: "w3", State: bankdv1.PayoutState_PAYOUT_STATE_BATCHED, BatchId: "b7"})
			},
			wantErr: signer.ErrPayout, wantIn: `withdrawal "w3" was given but no output pays it`,
		},

		// 5. Fee.
		{
			name:    "a fee other than the record's is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Record.FeeSat++ },
			wantErr: signer.ErrFee, wantIn: "= 2000 sat, the record says 2001 sat",
		},
		{
			name:    "a zero fee is refused",
			plan:    func() signertest.Plan { p := goodPlan(); p.ChangeSat += 2_000; return p },
			wantErr: signer.ErrFee, wantIn: "the fee is 0 sat",
		},
		{
			name:    "a fee above the absolute cap is refused",
			plan:    func() signertest.Plan { p := goodPlan(); p.ChangeSat -= 23_000; return p },
			wantErr: signer.ErrFeeCap, wantIn: "fee 25000 sat is above the cap of 20000 sat",
		},
		{
			name:    "a fee rate above the cap is refused",
			plan:    func() signertest.Plan { p := goodPlan(); p.ChangeSat -= 13_000; return p },
			wantErr: signer.ErrFeeCap, wantIn: "above the cap of 50.000 sat/vB",
		},
		{
			name: "a record that claims a larger transaction to lower its fee rate is refused",
			plan: func() signertest.Plan { p := goodPlan(); p.ChangeSat -= 13_000; return p },
			edit: func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) {
				b.Record.Vsize = 10_000
			},
			wantErr: signer.ErrFeeCap, wantIn: "above the cap of 50.000 sat/vB",
		},
		{
			name:    "a record without a vsize is refused",
			edit:    func(t *testing.T, w *signertest.Wallet, b *signertest.Batch) { b.Record.Vsize = 0 },
			wantErr: signer.ErrMalformed, wantIn: "vsize is 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, testLimits)
			plan := goodPlan()
			if tt.plan != nil {
				plan = tt.plan()
			}
			b := f.wallet.Batch(t, plan)
			if tt.edit != nil {
				tt.edit(t, f.wallet, b)
			}
			c, err := f.signer.Check(b.Record, b.Payouts, nil)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if c.BatchID() != b.Record.Id || c.Txid() != b.Record.Txid || c.FeeSat() != b.Record.FeeSat {
					t.Errorf("checked batch %s %s fee %d, want the record's %s %s fee %d", c.BatchID(), c.Txid(), c.FeeSat(), b.Record.Id, b.Record.Txid, b.Record.FeeSat)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
			var ce *signer.CheckError
			if !errors.As(err, &ce) || ce.BatchID != b.Record.Id {
				t.Errorf("Check = %#v, want a *CheckError naming batch %s", err, b.Record.Id)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("Check = %q, want it to contain %q", err, tt.wantIn)
			}
			if c != nil {
				t.Errorf("Check returned a checked batch with its error")
			}
		})
	}
}

func TestCheckedBatchFigures(t *testing.T) {
	f := newFixture(t, testLimits)
	b := f.wallet.Batch(t, goodPlan())
	c, err := f.signer.Check(b.Record, b.Payouts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.OutflowSat(), int64(70_000); got != want {
		t.Errorf("OutflowSat = %d, want %d (the withdrawals, without change)", got, want)
	}
	if got, want := c.ChangeSat(), int64(38_000); got != want {
		t.Errorf("ChangeSat = %d, want %d", got, want)
	}
	if got, want := c.FeeSat(), int64(2_000); got != want {
		t.Errorf("FeeSat = %d, want %d", got, want)
	}
	if c.VSize() != b.Record.Vsize {
		t.Errorf("VSize = %d, want the record's %d", c.VSize(), b.Record.Vsize)
	}
}

func TestCheckChangesNothing(t *testing.T) {
	f := newFixture(t, testLimits)
	b := f.wallet.Batch(t, goodPlan())
	for range 3 {
		if _, err := f.signer.Check(b.Record, b.Payouts, nil); err != nil {
			t.Fatal(err)
		}
	}
	f.restart(t)
	// Checking never counts: the whole limit is still there.
	limits := testLimits
	limits.DailyLimitSat = 70_000
	f.limits = limits
	f.restart(t)
	if _, err := f.signer.Check(b.Record, b.Payouts, nil); err != nil {
		t.Fatalf("Check after checks only: %v", err)
	}
}
