package main

import (
	"context"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// fakeAdjustments records the adjustments booked and lists them back.
type fakeAdjustments struct {
	bankdv1connect.UnimplementedLedgerServiceHandler
	mu     sync.Mutex
	booked []*bankdv1.BookAdjustmentRequest
}

func (f *fakeAdjustments) BookAdjustment(_ context.Context, req *connect.Request[bankdv1.BookAdjustmentRequest]) (*connect.Response[bankdv1.BookAdjustmentResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.booked = append(f.booked, req.Msg)
	m := req.Msg
	return connect.NewResponse(&bankdv1.BookAdjustmentResponse{Adjustment: &bankdv1.Adjustment{Id: m.Id, AccountId: m.AccountId, AmountSat: m.AmountSat,
		Kind: m.Kind, Reason: m.Reason, ExternalReference: m.ExternalReference, DecidedBy: "ops", TransferId: "ln-adjust:7", CounterAccountId: "ln-adjust:close-fees", Index: 7}}), nil
}

func (f *fakeAdjustments) ListAdjustments(_ context.Context, req *connect.Request[bankdv1.ListAdjustmentsRequest]) (*connect.Response[bankdv1.ListAdjustmentsResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := &bankdv1.ListAdjustmentsResponse{}
	for _, m := range f.booked {
		if req.Msg.AccountId == "" || req.Msg.AccountId == m.AccountId {
			res.Adjustments = append(res.Adjustments, &bankdv1.Adjustment{Id: m.Id, AccountId: m.AccountId, AmountSat: m.AmountSat, Kind: m.Kind,
				Reason: m.Reason, ExternalReference: m.ExternalReference, DecidedBy: "ops"})
		}
	}
	return connect.NewResponse(res), nil
}

func TestAdjustmentsBookSendsASignedAmountAndListsIt(t *testing.T) {
	f := &fakeAdjustments{}
	env := serveLedger(t, f)
	code, out, errOut := ctl(t, env, "adjustments", "book", "ln:pool-1", "-kind", "close-fees", "-amount", "-1222",
		"-reason", "commitment fee and anchors of the close", "-ref", "8c1e:0", "-id", "close-1")
	if code != 0 || !strings.Contains(out, "counter_account:  ln-adjust:close-fees") || !strings.Contains(out, "amount_sat:       -1222") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if len(f.booked) != 1 || f.booked[0].AmountSat != -1222 || f.booked[0].Kind != bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CLOSE_FEES || f.booked[0].Id != "close-1" {
		t.Fatalf("booked %v", f.booked)
	}
	code, out, errOut = ctl(t, env, "adjustments", "list", "-account", "ln:pool-1")
	if code != 0 || !strings.Contains(out, "close-1") || !strings.Contains(out, "close-fees") {
		t.Fatalf("list: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestAdjustmentsBookRefusesIncompleteRequestsBeforeSending(t *testing.T) {
	f := &fakeAdjustments{}
	env := serveLedger(t, f)
	full := []string{"adjustments", "book", "ln:pool-1", "-kind", "routing-fees", "-amount", "5", "-reason", "fees", "-ref", "fwd-1"}
	without := func(flag string) []string {
		var out []string
		for i := 0; i < len(full); i++ {
			if full[i] == flag {
				i++
				continue
			}
			out = append(out, full[i])
		}
		return out
	}
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no kind", without("-kind"), "-kind"},
		{"an unknown kind", append(without("-kind"), "-kind", "gift"), "-kind \"gift\""},
		{"no amount", without("-amount"), "-amount is required"},
		{"no reason", without("-reason"), "-reason is required"},
		{"no reference", without("-ref"), "-ref is required"},
		{"no account", []string{"adjustments", "book", "-kind", "other", "-amount", "1", "-reason", "r", "-ref", "x"}, "ACCOUNT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := ctl(t, env, tt.args...)
			if code != exitUsage || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("exit %d, stderr %q; want usage and %q", code, errOut, tt.stderr)
			}
		})
	}
	if len(f.booked) != 0 {
		t.Fatalf("sent %v", f.booked)
	}
}
