//lint:file-ignore SA1019 replies are built as lnd v0.20 sends them, deprecated fields (settled, amt_paid, chain, UNKNOWN) included

package lnd

import (
	"errors"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnrpc"
)

// The converters see whatever lnd (or something pretending to be lnd) sends. Whatever that
// is, they must not panic, and anything they refuse must be ErrInvalidReply.

func FuzzConvertInvoice(f *testing.F) {
	v := validInvoice(f)
	f.Add(v.RHash, v.RPreimage, v.Value, v.ValueMsat, v.AmtPaidMsat, int32(v.State), v.AddIndex, v.SettleIndex,
		v.CreationDate, v.SettleDate, v.Expiry, v.Settled, v.PaymentRequest)
	f.Add([]byte{}, []byte{1}, int64(-1), int64(-1000), int64(-1), int32(-1), uint64(0), uint64(0),
		int64(0), int64(0), int64(-1), false, "lnbcrt1")
	f.Fuzz(func(t *testing.T, rHash, rPreimage []byte, value, valueMsat, amtPaidMsat int64, state int32,
		addIndex, settleIndex uint64, creation, settle, expiry int64, settled bool, pr string) {
		r := &lnrpc.Invoice{
			RHash: rHash, RPreimage: rPreimage, Value: value, ValueMsat: valueMsat,
			AmtPaidMsat: amtPaidMsat, State: lnrpc.Invoice_InvoiceState(state), AddIndex: addIndex,
			SettleIndex: settleIndex, CreationDate: creation, SettleDate: settle, Expiry: expiry,
			Settled: settled, PaymentRequest: pr,
		}
		for _, net := range []*chaincfg.Params{nil, &chaincfg.RegressionNetParams} {
			inv, err := convertInvoice(r, net)
			if err != nil {
				if !errors.Is(err, ErrInvalidReply) {
					t.Fatalf("error %v is not ErrInvalidReply", err)
				}
				continue
			}
			if len(inv.Hash) != 64 || inv.AddIndex == 0 || inv.ValueMsat < 0 {
				t.Fatalf("accepted %+v", inv)
			}
			if (inv.State == InvoiceSettled) != (inv.SettleIndex > 0) {
				t.Fatalf("accepted %+v", inv)
			}
		}
	})
}

func FuzzConvertPayment(f *testing.F) {
	v := validPayment()
	f.Add(v.PaymentHash, v.PaymentPreimage, v.ValueMsat, v.FeeMsat, v.CreationTimeNs, int32(v.Status), int32(v.FailureReason))
	f.Add("", zeroPreimage, int64(-1), int64(-1), int64(-1), int32(3), int32(0))
	f.Fuzz(func(t *testing.T, hash, preimage string, valueMsat, feeMsat, created int64, status, reason int32) {
		p, err := convertPayment(&lnrpc.Payment{
			PaymentHash: hash, PaymentPreimage: preimage, ValueMsat: valueMsat, FeeMsat: feeMsat,
			CreationTimeNs: created, Status: lnrpc.Payment_PaymentStatus(status),
			FailureReason: lnrpc.PaymentFailureReason(reason),
		})
		if err != nil {
			if !errors.Is(err, ErrInvalidReply) {
				t.Fatalf("error %v is not ErrInvalidReply", err)
			}
			return
		}
		if len(p.Hash) != 64 || p.ValueMsat < 0 || p.FeeMsat < 0 {
			t.Fatalf("accepted %+v", p)
		}
		if p.Status == PaymentSucceeded && len(p.Preimage) != 64 {
			t.Fatalf("accepted a success without preimage: %+v", p)
		}
		if p.Status == PaymentFailed && p.FailureReason == "" {
			t.Fatalf("accepted a failure without reason: %+v", p)
		}
	})
}
