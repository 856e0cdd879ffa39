package lnpool

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/principal"
	"github.com/bankd/bankd/lnpool/lnd/lndtest"
)

// TestAdjustmentsBringADriftedReconciliationBackToZero: money moves outside bankd on a node
// (routing fees earned, then a channel closed by hand with its close fees), reconciliation and
// the gauge show it, and adjustments booked by an operator bring both back to zero.
func TestAdjustmentsBringADriftedReconciliationBackToZero(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	ctx := context.Background()
	difference := func() int64 {
		t.Helper()
		rs, err := pool.Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var diff int64
		for _, r := range rs {
			if r.Error != "" {
				t.Fatalf("reconcile %s: %s", r.NodeId, r.Error)
			}
			if r.NodeId == "pool-2" && r.DifferenceSat != 0 {
				t.Fatalf("pool-2 drifted too: %v", r)
			}
			if r.NodeId == "pool-1" {
				diff = r.DifferenceSat
			}
		}
		pool.updateReconciliationMetric(ctx)
		if g := testutil.ToFloat64(pool.metrics.difference.WithLabelValues("pool-1")); int64(g) != diff {
			t.Fatalf("gauge %v, reconcile %d", g, diff)
		}
		return diff
	}
	if d := difference(); d != 0 {
		t.Fatalf("before: %d", d)
	}
	book := func(id string, sat int64, kind bankdv1.AdjustmentKind, ref string) {
		t.Helper()
		_, err := fx.p.Apply(principal.With(ctx, "ops-ann"), bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT, &bankdv1.BookAdjustmentRequest{
			Id: id, AccountId: "ln:pool-1", AmountSat: sat, Kind: kind, Reason: "found by reconciliation", ExternalReference: ref,
		}, nil)
		if err != nil {
			t.Fatalf("adjustment %s: %v", id, err)
		}
	}

	// Routing fees: lnd holds 1,234 sat more than the books.
	fx.nodes["pool-1"].SetBalanceSat(lndtest.DefaultBalanceSat + 1_234)
	if d := difference(); d != 1_234 {
		t.Fatalf("after routing fees: %d, want 1234", d)
	}
	book("fees-1", 1_234, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES, "fwd-events:1-40")
	if d := difference(); d != 0 {
		t.Fatalf("after booking the fees: %d", d)
	}

	// A channel of 300,000 sat closed by hand, 1,222 sat of it gone in close fees.
	fx.nodes["pool-1"].SetBalanceSat(lndtest.DefaultBalanceSat + 1_234 - 300_000)
	if d := difference(); d != -300_000 {
		t.Fatalf("after the close: %d", d)
	}
	book("close-1", -298_778, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CHANNEL_CLOSED_BY_HAND, "closing-txid:0")
	book("close-1-fees", -1_222, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CLOSE_FEES, "closing-txid")
	if d := difference(); d != 0 {
		t.Fatalf("after booking the close: %d", d)
	}
	// The books say why: each counter-account holds its kind's share.
	for id, want := range map[string]int64{"ln-adjust:routing-fees": 1_234, "ln-adjust:channel-closed": -298_778, "ln-adjust:close-fees": -1_222} {
		if b := fx.balance(id); b.CreditsPosted-b.DebitsPosted != want {
			t.Fatalf("%s %v, want %d credited", id, b, want)
		}
	}
}
