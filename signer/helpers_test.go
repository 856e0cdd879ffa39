package signer_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/wire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
)

// testLimits are the caps of the tests' signer: 20,000 sat, 50 sat/vB, 1,000,000 sat a day.
var testLimits = signer.Limits{MaxFeeSat: 20_000, MaxFeeRateSatKvB: 50_000, DailyLimitSat: 1_000_000}

// day0 is noon of the tests' first day.
var day0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a signer of a generated wallet with a ledger in a temporary directory and a clock
// the test moves.
type fixture struct {
	wallet     *signertest.Wallet
	signer     *signer.Signer
	ledgerPath string
	now        time.Time
	limits     signer.Limits
}

func newFixture(t *testing.T, limits signer.Limits) *fixture {
	t.Helper()
	f := &fixture{
		wallet:     signertest.NewWallet(t),
		ledgerPath: filepath.Join(t.TempDir(), "signer-ledger.json"),
		now:        day0,
		limits:     limits,
	}
	f.restart(t)
	return f
}

// restart builds the signer again from the key file and the ledger file, as a restarted
// signerd does.
func (f *fixture) restart(t *testing.T) {
	t.Helper()
	w, err := signer.LoadWallet(f.wallet.KeyFile(t), f.wallet.Descriptor, f.wallet.Net)
	if err != nil {
		t.Fatalf("LoadWallet: %v", err)
	}
	ledger, err := signer.OpenLedger(f.ledgerPath)
	if err != nil {
		t.Fatalf("OpenLedger: %v", err)
	}
	f.signer, err = signer.New(signer.Config{Wallet: w, Ledger: ledger, Limits: f.limits, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatalf("signer.New: %v", err)
	}
}

// checkAndSign checks and signs b, failing the test on an error.
func (f *fixture) checkAndSign(t *testing.T, b *signertest.Batch) []byte {
	t.Helper()
	c, err := f.signer.Check(b.Record, b.Payouts, nil)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	signed, err := f.signer.Sign(c)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return signed
}

// goodPlan is a batch spending a receive and a change coin to two withdrawals, with change:
// 110,000 in, 70,000 out to withdrawals, 38,000 change, 2,000 fee (about 8 sat/vB).
func goodPlan() signertest.Plan {
	return signertest.Plan{
		Coins:       []signertest.Coin{{Branch: 0, Index: 3, ValueSat: 60_000}, {Branch: 1, Index: 2, ValueSat: 50_000}},
		Withdrawals: []signertest.Withdrawal{{ID: "w1", AmountSat: 40_000}, {ID: "w2", AmountSat: 30_000}},
		ChangeSat:   38_000,
		ChangeIndex: 5,
	}
}

// insertOutput inserts an output at position at, in the record and the PSBT, renumbering the
// record's vouts, raises input 0 by its value so that the fee stays the same, and syncs the
// txid: a consistent forgery.
func insertOutput(t *testing.T, b *signertest.Batch, at int, rec *bankdv1.BatchOutput) {
	t.Helper()
	outs := b.Record.Outputs
	b.Record.Outputs = append(append(append([]*bankdv1.BatchOutput(nil), outs[:at]...), rec), outs[at:]...)
	for i, o := range b.Record.Outputs {
		o.Vout = uint32(i)
	}
	b.Record.Inputs[0].ValueSat += rec.ValueSat
	b.EditPSBT(t, func(p *psbt.Packet) {
		p.Inputs[0].WitnessUtxo.Value += rec.ValueSat
		txOuts := p.UnsignedTx.TxOut
		p.UnsignedTx.TxOut = append(append(append([]*wire.TxOut(nil), txOuts[:at]...), wire.NewTxOut(rec.ValueSat, rec.Script)), txOuts[at:]...)
		p.Outputs = append(append(append([]psbt.POutput(nil), p.Outputs[:at]...), psbt.POutput{}), p.Outputs[at:]...)
	})
	b.SyncTxid(t)
	for _, po := range b.Payouts {
		for i, o := range b.Record.Outputs {
			if o.PayoutId == po.Id {
				po.Vout = uint32(i)
				break
			}
		}
	}
}
