//lint:file-ignore SA1019 replies are built as lnd v0.20 sends them, deprecated fields (settled, amt_paid, chain, UNKNOWN) included

package lnd

import (
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
)

// wantInvalid checks err is an ErrInvalidReply naming field.
func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	if !errors.Is(err, ErrInvalidReply) {
		t.Fatalf("err = %v, want ErrInvalidReply", err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Fatalf("err = %v, want it to name %q", err, field)
	}
}

func TestConvertInvoice(t *testing.T) {
	otherPre, otherHash := preimageFor(9)
	tests := []struct {
		name    string
		null    bool // lnd sent no message at all
		mutate  func(*lnrpc.Invoice)
		net     *chaincfg.Params
		field   string // "" when valid
		checkOK func(*testing.T, Invoice)
	}{
		{name: "settled", checkOK: func(t *testing.T, inv Invoice) {
			_, hash := preimageFor(1)
			want := Invoice{
				Hash: hex.EncodeToString(hash), Memo: "deposit", ValueMsat: 5_000_000,
				AmtPaidMsat: 5_000_000, State: InvoiceSettled, AddIndex: 7, SettleIndex: 3,
				CreationUnix: 1_700_000_000, SettleUnix: 1_700_000_005, ExpirySeconds: 3600,
			}
			inv.PaymentRequest = ""
			if inv != want {
				t.Fatalf("got %+v\nwant %+v", inv, want)
			}
		}},
		{name: "settled, network given", net: &chaincfg.RegressionNetParams},
		{name: "open", mutate: func(r *lnrpc.Invoice) {
			r.State, r.Settled, r.SettleIndex, r.SettleDate = lnrpc.Invoice_OPEN, false, 0, 0
			r.AmtPaid, r.AmtPaidSat, r.AmtPaidMsat = 0, 0, 0
		}, checkOK: func(t *testing.T, inv Invoice) {
			if inv.State != InvoiceOpen || inv.SettleIndex != 0 {
				t.Fatalf("got %+v", inv)
			}
		}},
		{name: "canceled", mutate: func(r *lnrpc.Invoice) {
			r.State, r.Settled, r.SettleIndex, r.SettleDate = lnrpc.Invoice_CANCELED, false, 0, 0
		}},
		{name: "accepted hold invoice without preimage", mutate: func(r *lnrpc.Invoice) {
			r.State, r.Settled, r.SettleIndex, r.SettleDate = lnrpc.Invoice_ACCEPTED, false, 0, 0
			r.RPreimage = nil
		}},
		{name: "keysend without payment request", mutate: func(r *lnrpc.Invoice) { r.PaymentRequest = "" }},
		{name: "overpaid", mutate: func(r *lnrpc.Invoice) { r.AmtPaidMsat = 6_000_000 }},

		{name: "nil", null: true, field: "Invoice"},
		{name: "short hash", mutate: func(r *lnrpc.Invoice) { r.RHash = r.RHash[:31] }, field: "r_hash"},
		{name: "long hash", mutate: func(r *lnrpc.Invoice) { r.RHash = append(r.RHash, 0) }, field: "r_hash"},
		{name: "preimage of another hash", mutate: func(r *lnrpc.Invoice) { r.RPreimage = otherPre }, field: "r_preimage"},
		{name: "short preimage", mutate: func(r *lnrpc.Invoice) { r.RPreimage = r.RPreimage[:5] }, field: "r_preimage"},
		{name: "negative value", mutate: func(r *lnrpc.Invoice) { r.ValueMsat, r.Value = -1000, -1 }, field: "value_msat"},
		{name: "value beyond supply", mutate: func(r *lnrpc.Invoice) { r.ValueMsat, r.Value = math.MaxInt64, math.MaxInt64/1000 }, field: "value_msat"},
		{name: "sat and msat disagree", mutate: func(r *lnrpc.Invoice) { r.Value = 4999 }, field: "value"},
		{name: "negative amount paid", mutate: func(r *lnrpc.Invoice) { r.AmtPaidMsat = -1 }, field: "amt_paid_msat"},
		{name: "unknown state", mutate: func(r *lnrpc.Invoice) { r.State = 42 }, field: "state"},
		{name: "no add index", mutate: func(r *lnrpc.Invoice) { r.AddIndex = 0 }, field: "add_index"},
		{name: "no creation date", mutate: func(r *lnrpc.Invoice) { r.CreationDate = 0 }, field: "creation_date"},
		{name: "negative expiry", mutate: func(r *lnrpc.Invoice) { r.Expiry = -1 }, field: "expiry"},
		{name: "settled without settle index", mutate: func(r *lnrpc.Invoice) { r.SettleIndex = 0 }, field: "settle_index"},
		{name: "settled without amount paid", mutate: func(r *lnrpc.Invoice) { r.AmtPaidMsat = 0 }, field: "amt_paid_msat"},
		{name: "settled for less than asked", mutate: func(r *lnrpc.Invoice) { r.AmtPaidMsat = 4_999_999 }, field: "amt_paid_msat"},
		{name: "settled without settle date", mutate: func(r *lnrpc.Invoice) { r.SettleDate = 0 }, field: "settle_date"},
		{name: "open with settle index", mutate: func(r *lnrpc.Invoice) {
			r.State, r.Settled, r.SettleDate = lnrpc.Invoice_OPEN, false, 0
		}, field: "settle_index"},
		{name: "payment request for another hash", mutate: func(r *lnrpc.Invoice) {
			r.PaymentRequest = makePaymentRequest(t, &chaincfg.RegressionNetParams, otherHash, 5_000_000, "deposit", time.Hour, time.Unix(1_700_000_000, 0))
		}, field: "payment_request"},
		{name: "payment request for another amount", mutate: func(r *lnrpc.Invoice) {
			r.PaymentRequest = makePaymentRequest(t, &chaincfg.RegressionNetParams, r.RHash, 6_000_000, "deposit", time.Hour, time.Unix(1_700_000_000, 0))
		}, field: "payment_request"},
		{name: "payment request for another network", net: &chaincfg.MainNetParams, field: "payment_request"},
		{name: "garbage payment request", mutate: func(r *lnrpc.Invoice) { r.PaymentRequest = "lnbcrt1garbage" }, field: "payment_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validInvoice(t)
			switch {
			case tt.null:
				r = nil
			case tt.mutate != nil:
				tt.mutate(r)
			}
			inv, err := convertInvoice(r, tt.net)
			if tt.field != "" {
				wantInvalid(t, err, tt.field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.checkOK != nil {
				tt.checkOK(t, inv)
			}
		})
	}
}

func TestConvertAddInvoice(t *testing.T) {
	_, hash := preimageFor(3)
	_, otherHash := preimageFor(4)
	created := time.Unix(1_700_000_100, 0)
	req := AddInvoiceRequest{ValueSat: 2500, Memo: "top up", ExpirySeconds: 600}
	pr := func(hash []byte, msat int64, memo string, expiry time.Duration) string {
		return makePaymentRequest(t, &chaincfg.RegressionNetParams, hash, msat, memo, expiry, created)
	}
	tests := []struct {
		name  string
		resp  *lnrpc.AddInvoiceResponse
		field string
	}{
		{name: "valid", resp: &lnrpc.AddInvoiceResponse{RHash: hash, PaymentRequest: pr(hash, 2_500_000, "top up", 10*time.Minute), AddIndex: 12}},
		{name: "nil", resp: nil, field: "AddInvoiceResponse"},
		{name: "short hash", resp: &lnrpc.AddInvoiceResponse{RHash: hash[:3], PaymentRequest: pr(hash, 2_500_000, "top up", 10*time.Minute), AddIndex: 12}, field: "r_hash"},
		{name: "no add index", resp: &lnrpc.AddInvoiceResponse{RHash: hash, PaymentRequest: pr(hash, 2_500_000, "top up", 10*time.Minute)}, field: "add_index"},
		{name: "no payment request", resp: &lnrpc.AddInvoiceResponse{RHash: hash, AddIndex: 12}, field: "payment_request"},
		{name: "other hash", resp: &lnrpc.AddInvoiceResponse{RHash: hash, PaymentRequest: pr(otherHash, 2_500_000, "top up", 10*time.Minute), AddIndex: 12}, field: "payment hash"},
		{name: "other amount", resp: &lnrpc.AddInvoiceResponse{RHash: hash, PaymentRequest: pr(hash, 2_000_000, "top up", 10*time.Minute), AddIndex: 12}, field: "amount"},
		{name: "amount-less", resp: &lnrpc.AddInvoiceResponse{RHash: hash, PaymentRequest: pr(hash, 0, "top up", 10*time.Minute), AddIndex: 12}, field: "amount"},
		{name: "other memo", resp: &lnrpc.AddInvoiceResponse{RHash: hash, PaymentRequest: pr(hash, 2_500_000, "x", 10*time.Minute), AddIndex: 12}, field: "description"},
		{name: "other expiry", resp: &lnrpc.AddInvoiceResponse{RHash: hash, PaymentRequest: pr(hash, 2_500_000, "top up", time.Hour), AddIndex: 12}, field: "expiry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := convertAddInvoice(req, tt.resp, &chaincfg.RegressionNetParams)
			if tt.field != "" {
				wantInvalid(t, err, tt.field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Invoice{
				Hash: hex.EncodeToString(hash), PaymentRequest: tt.resp.PaymentRequest, Memo: "top up",
				ValueMsat: 2_500_000, State: InvoiceOpen, AddIndex: 12, CreationUnix: created.Unix(),
				ExpirySeconds: 600,
			}
			if inv != want {
				t.Fatalf("got %+v\nwant %+v", inv, want)
			}
		})
	}
}

func TestConvertPayment(t *testing.T) {
	otherPre, _ := preimageFor(8)
	pre, hash := preimageFor(2)
	tests := []struct {
		name   string
		null   bool
		mutate func(*lnrpc.Payment)
		field  string
		want   *Payment
	}{
		{name: "succeeded", want: &Payment{
			Hash: hex.EncodeToString(hash), Status: PaymentSucceeded, ValueMsat: 1_000_000, FeeMsat: 1_500,
			Preimage: hex.EncodeToString(pre), CreationUnixNano: 1_700_000_000_000_000_000,
		}},
		{name: "uppercase hex is normalized", mutate: func(p *lnrpc.Payment) {
			p.PaymentHash = strings.ToUpper(p.PaymentHash)
			p.PaymentPreimage = strings.ToUpper(p.PaymentPreimage)
		}},
		{name: "in flight with zero preimage", mutate: func(p *lnrpc.Payment) {
			p.Status, p.PaymentPreimage, p.FeeMsat = lnrpc.Payment_IN_FLIGHT, zeroPreimage, 0
		}, want: &Payment{
			Hash: hex.EncodeToString(hash), Status: PaymentInFlight, ValueMsat: 1_000_000,
			CreationUnixNano: 1_700_000_000_000_000_000,
		}},
		{name: "initiated", mutate: func(p *lnrpc.Payment) { p.Status, p.PaymentPreimage = lnrpc.Payment_INITIATED, "" }},
		{name: "in flight with a failure reason (HTLCs still out)", mutate: func(p *lnrpc.Payment) {
			p.Status, p.PaymentPreimage = lnrpc.Payment_IN_FLIGHT, zeroPreimage
			p.FailureReason = lnrpc.PaymentFailureReason_FAILURE_REASON_TIMEOUT
		}},
		{name: "failed", mutate: func(p *lnrpc.Payment) {
			p.Status, p.PaymentPreimage, p.FeeMsat = lnrpc.Payment_FAILED, zeroPreimage, 0
			p.FailureReason = lnrpc.PaymentFailureReason_FAILURE_REASON_NO_ROUTE
		}, want: &Payment{
			Hash: hex.EncodeToString(hash), Status: PaymentFailed, ValueMsat: 1_000_000,
			FailureReason: "FAILURE_REASON_NO_ROUTE", CreationUnixNano: 1_700_000_000_000_000_000,
		}},

		{name: "nil", null: true, field: "Payment"},
		{name: "short hash", mutate: func(p *lnrpc.Payment) { p.PaymentHash = p.PaymentHash[:62] }, field: "payment_hash"},
		{name: "hash not hex", mutate: func(p *lnrpc.Payment) { p.PaymentHash = strings.Repeat("zz", 32) }, field: "payment_hash"},
		{name: "status unknown (0)", mutate: func(p *lnrpc.Payment) { p.Status = lnrpc.Payment_UNKNOWN }, field: "status"},
		{name: "status out of range", mutate: func(p *lnrpc.Payment) { p.Status = 17 }, field: "status"},
		{name: "negative value", mutate: func(p *lnrpc.Payment) { p.ValueMsat = -5 }, field: "value_msat"},
		{name: "negative fee", mutate: func(p *lnrpc.Payment) { p.FeeMsat = -5 }, field: "fee_msat"},
		{name: "fee beyond supply", mutate: func(p *lnrpc.Payment) { p.FeeMsat = math.MaxInt64 }, field: "fee_msat"},
		{name: "negative creation time", mutate: func(p *lnrpc.Payment) { p.CreationTimeNs = -1 }, field: "creation_time_ns"},
		{name: "unknown failure reason", mutate: func(p *lnrpc.Payment) { p.FailureReason = 99 }, field: "failure_reason"},
		{name: "succeeded without preimage", mutate: func(p *lnrpc.Payment) { p.PaymentPreimage = zeroPreimage }, field: "payment_preimage"},
		{name: "succeeded with empty preimage", mutate: func(p *lnrpc.Payment) { p.PaymentPreimage = "" }, field: "payment_preimage"},
		{name: "preimage of another hash", mutate: func(p *lnrpc.Payment) { p.PaymentPreimage = hex.EncodeToString(otherPre) }, field: "payment_preimage"},
		{name: "short preimage", mutate: func(p *lnrpc.Payment) { p.PaymentPreimage = "abcd" }, field: "payment_preimage"},
		{name: "failed without reason", mutate: func(p *lnrpc.Payment) {
			p.Status, p.PaymentPreimage = lnrpc.Payment_FAILED, zeroPreimage
		}, field: "failure_reason"},
		{name: "failed with preimage", mutate: func(p *lnrpc.Payment) {
			p.Status = lnrpc.Payment_FAILED
			p.FailureReason = lnrpc.PaymentFailureReason_FAILURE_REASON_NO_ROUTE
		}, field: "payment_preimage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validPayment()
			switch {
			case tt.null:
				r = nil
			case tt.mutate != nil:
				tt.mutate(r)
			}
			p, err := convertPayment(r)
			if tt.field != "" {
				wantInvalid(t, err, tt.field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Hash != hex.EncodeToString(hash) {
				t.Fatalf("hash %s not normalized", p.Hash)
			}
			if tt.want != nil && p != *tt.want {
				t.Fatalf("got %+v\nwant %+v", p, *tt.want)
			}
		})
	}
}

func TestConvertInfo(t *testing.T) {
	pub := hex.EncodeToString(testKey.PubKey().SerializeCompressed())
	valid := func() *lnrpc.GetInfoResponse {
		return &lnrpc.GetInfoResponse{
			IdentityPubkey: pub, Alias: "alice", Version: "0.20.0-beta", SyncedToChain: true,
			BlockHeight: 500, Chains: []*lnrpc.Chain{{Chain: "bitcoin", Network: "regtest"}},
		}
	}
	tests := []struct {
		name   string
		null   bool
		mutate func(*lnrpc.GetInfoResponse)
		field  string
	}{
		{name: "valid"},
		{name: "nil", null: true, field: "GetInfoResponse"},
		{name: "short pubkey", mutate: func(r *lnrpc.GetInfoResponse) { r.IdentityPubkey = pub[:64] }, field: "identity_pubkey"},
		{name: "uncompressed prefix", mutate: func(r *lnrpc.GetInfoResponse) { r.IdentityPubkey = "04" + pub[2:] }, field: "identity_pubkey"},
		{name: "not on the curve", mutate: func(r *lnrpc.GetInfoResponse) { r.IdentityPubkey = "02" + strings.Repeat("ff", 32) }, field: "identity_pubkey"},
		{name: "not hex", mutate: func(r *lnrpc.GetInfoResponse) { r.IdentityPubkey = "02" + strings.Repeat("x", 64) }, field: "identity_pubkey"},
		{name: "no chains", mutate: func(r *lnrpc.GetInfoResponse) { r.Chains = nil }, field: "chains"},
		{name: "nil chain", mutate: func(r *lnrpc.GetInfoResponse) { r.Chains = []*lnrpc.Chain{nil} }, field: "chains"},
		{name: "unknown network", mutate: func(r *lnrpc.GetInfoResponse) { r.Chains[0].Network = "moonnet" }, field: "chains[0].network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid()
			switch {
			case tt.null:
				r = nil
			case tt.mutate != nil:
				tt.mutate(r)
			}
			info, err := convertInfo(r)
			if tt.field != "" {
				wantInvalid(t, err, tt.field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Info{Pubkey: pub, Alias: "alice", Version: "0.20.0-beta", Network: "regtest", SyncedToChain: true, BlockHeight: 500}
			if info != want {
				t.Fatalf("got %+v, want %+v", info, want)
			}
		})
	}
}

func TestConvertChannelBalance(t *testing.T) {
	amt := func(msat uint64) *lnrpc.Amount { return &lnrpc.Amount{Sat: msat / 1000, Msat: msat} }
	tests := []struct {
		name  string
		resp  *lnrpc.ChannelBalanceResponse
		want  ChannelBalance
		field string
	}{
		{name: "valid", resp: &lnrpc.ChannelBalanceResponse{
			LocalBalance: amt(5_000_500), UnsettledLocalBalance: amt(1_000), PendingOpenLocalBalance: amt(0),
		}, want: ChannelBalance{LocalMsat: 5_000_500, UnsettledLocalMsat: 1_000}},
		{name: "nil", resp: nil, field: "ChannelBalanceResponse"},
		{name: "missing local", resp: &lnrpc.ChannelBalanceResponse{
			UnsettledLocalBalance: amt(0), PendingOpenLocalBalance: amt(0),
		}, field: "local_balance"},
		{name: "missing unsettled", resp: &lnrpc.ChannelBalanceResponse{
			LocalBalance: amt(0), PendingOpenLocalBalance: amt(0),
		}, field: "unsettled_local_balance"},
		{name: "missing pending open", resp: &lnrpc.ChannelBalanceResponse{
			LocalBalance: amt(0), UnsettledLocalBalance: amt(0),
		}, field: "pending_open_local_balance"},
		{name: "overflowing msat", resp: &lnrpc.ChannelBalanceResponse{
			LocalBalance: &lnrpc.Amount{Sat: math.MaxUint64 / 1000, Msat: math.MaxUint64}, UnsettledLocalBalance: amt(0), PendingOpenLocalBalance: amt(0),
		}, field: "local_balance.msat"},
		{name: "sat and msat disagree", resp: &lnrpc.ChannelBalanceResponse{
			LocalBalance: &lnrpc.Amount{Sat: 4, Msat: 5000}, UnsettledLocalBalance: amt(0), PendingOpenLocalBalance: amt(0),
		}, field: "local_balance.sat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := convertChannelBalance(tt.resp)
			if tt.field != "" {
				wantInvalid(t, err, tt.field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b != tt.want {
				t.Fatalf("got %+v, want %+v", b, tt.want)
			}
		})
	}
}

func TestRouteFeeSat(t *testing.T) {
	tests := []struct {
		name  string
		resp  *routerrpc.RouteFeeResponse
		want  int64
		field string
	}{
		{name: "zero", resp: &routerrpc.RouteFeeResponse{}, want: 0},
		{name: "whole sat", resp: &routerrpc.RouteFeeResponse{RoutingFeeMsat: 3000}, want: 3},
		{name: "rounds up", resp: &routerrpc.RouteFeeResponse{RoutingFeeMsat: 3001}, want: 4},
		{name: "one msat", resp: &routerrpc.RouteFeeResponse{RoutingFeeMsat: 1}, want: 1},
		{name: "nil", resp: nil, field: "RouteFeeResponse"},
		{name: "negative", resp: &routerrpc.RouteFeeResponse{RoutingFeeMsat: -1}, field: "routing_fee_msat"},
		{name: "beyond supply", resp: &routerrpc.RouteFeeResponse{RoutingFeeMsat: math.MaxInt64}, field: "routing_fee_msat"},
		{name: "unknown reason", resp: &routerrpc.RouteFeeResponse{FailureReason: 77}, field: "failure_reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := routeFeeSat(tt.resp)
			if tt.field != "" {
				wantInvalid(t, err, tt.field)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}
