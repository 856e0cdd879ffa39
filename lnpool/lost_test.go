package lnpool

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/principal"
	"github.com/bankd/bankd/lnpool/lnd"
)

// watchedClient counts the calls the pool makes to a node once watching is on.
type watchedClient struct {
	lnd.Client
	watching *atomic.Bool
	calls    *atomic.Int64
}

func (c *watchedClient) seen() {
	if c.watching.Load() {
		c.calls.Add(1)
	}
}

func (c *watchedClient) GetInfo(ctx context.Context) (lnd.Info, error) {
	c.seen()
	return c.Client.GetInfo(ctx)
}
func (c *watchedClient) LookupInvoice(ctx context.Context, hash string) (lnd.Invoice, error) {
	c.seen()
	return c.Client.LookupInvoice(ctx, hash)
}
func (c *watchedClient) CancelInvoice(ctx context.Context, hash string) error {
	c.seen()
	return c.Client.CancelInvoice(ctx, hash)
}
func (c *watchedClient) SubscribeInvoices(ctx context.Context, addIndex, settleIndex uint64) (lnd.InvoiceStream, error) {
	c.seen()
	return c.Client.SubscribeInvoices(ctx, addIndex, settleIndex)
}
func (c *watchedClient) SendPayment(ctx context.Context, req lnd.SendPaymentRequest) (lnd.PaymentStream, error) {
	c.seen()
	return c.Client.SendPayment(ctx, req)
}
func (c *watchedClient) TrackPayment(ctx context.Context, hash string) (lnd.PaymentStream, error) {
	c.seen()
	return c.Client.TrackPayment(ctx, hash)
}
func (c *watchedClient) ChannelBalance(ctx context.Context) (lnd.ChannelBalance, error) {
	c.seen()
	return c.Client.ChannelBalance(ctx)
}
func (c *watchedClient) PendingHTLCs(ctx context.Context) (int, error) {
	c.seen()
	return c.Client.PendingHTLCs(ctx)
}

// TestThePoolNeverCallsALostNode: once an admin declares a node lost, the pool neither dials nor
// calls it (no health check, subscription, sweep, tracker, cancellation or reconciliation), even
// when it answers again; its payment in flight is left to the admin, whose resolution with the
// payee's preimage books it as the node's own success would and retires the node; the
// internally settled invoice still open on it stops waiting for a cancellation there.
func TestThePoolNeverCallsALostNode(t *testing.T) {
	fx := newFixture(t)
	var watching atomic.Bool
	var calls, dials atomic.Int64
	pool := fx.newPool()
	dial := pool.dial
	pool.dial = func(ctx context.Context, n *bankdv1.LndNode) (lnd.Client, error) {
		c, err := dial(ctx, n)
		if err != nil || n.Id != "pool-1" {
			return c, err
		}
		if watching.Load() {
			dials.Add(1)
		}
		return &watchedClient{Client: c, watching: &watching, calls: &calls}, nil
	}
	fx.run(pool)
	ctx := context.Background()
	lost := fx.nodes["pool-1"]
	fx.nodes["pool-2"].SetBalanceSat(1) // every payment goes from pool-1, every invoice to pool-2
	fx.eventually("pool-1 the richest", func() bool {
		nodes, _, _ := pool.usableNodes()
		return len(nodes) == 2 && nodes[0].Id == "pool-1"
	})
	lost.HoldPayments(true)
	p, err := pool.PayInvoice(ctx, pay("p1", "alice", fx.net.OutsideInvoice(5_000)))
	if err != nil || p.NodeId != "pool-1" {
		t.Fatalf("payment %v %v, want it in flight on pool-1", p, err)
	}
	fx.eventually("payment held on pool-1", func() bool { return len(lost.HeldPayments()) == 1 })
	// An invoice of bob's on pool-1, then paid by alice inside the ledger: it waits to be
	// canceled on pool-1.
	fx.p.Must(bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED, &bankdv1.LnInvoiceCreated{Invoice: &bankdv1.LnInvoice{
		Hash: "ab" + p.Hash[2:], AccountId: "bob", NodeId: "pool-1", AmountSat: 700, PaymentRequest: "lnbcrt-own",
		ExpiresUnixMs: time.Now().Add(time.Hour).UnixMilli(), AddIndex: 1 << 30, RequestId: "own-1"}})
	lost.SetUnreachable(true)
	fx.eventually("pool-1 seen down", func() bool {
		n, err := fx.f.LndNode("pool-1")
		return err == nil && !n.Reachable
	})
	fx.p.Must(bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START, &bankdv1.LnPaymentStart{Id: "own", AccountId: "alice", Hash: "ab" + p.Hash[2:],
		PaymentRequest: "lnbcrt-own", AmountSat: 700})
	if todo, _ := fx.f.InvoicesToCancel(10); len(todo) != 1 {
		t.Fatalf("invoices to cancel on their nodes: %v", todo)
	}

	if _, err := fx.p.Apply(principal.With(ctx, "admin-ann"), bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST,
		&bankdv1.DeclareLndLostRequest{NodeId: "pool-1", Reason: "host gone"}, nil); err != nil {
		t.Fatal(err)
	}
	watching.Store(true)
	lost.SetUnreachable(false) // it answers again: still never called
	fx.eventually("the internally settled invoice no longer waits for pool-1", func() bool {
		todo, err := fx.f.InvoicesToCancel(10)
		return err == nil && len(todo) == 0
	})
	time.Sleep(300 * time.Millisecond) // many health checks, sweeps and tracker rounds
	if c, d := calls.Load(), dials.Load(); c != 0 || d != 0 {
		t.Fatalf("the pool called the lost node %d times and dialed it %d times", c, d)
	}
	n, err := fx.f.LndNode("pool-1")
	if err != nil || n.State != bankdv1.LndNodeState_LND_NODE_STATE_LOST || n.Reachable {
		t.Fatalf("lost node %v %v", n, err)
	}
	if cur := fx.payment("p1"); cur.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
		t.Fatalf("payment %v, want it left in flight for the admin", cur)
	}
	rs, err := pool.Reconcile(ctx)
	if err != nil || len(rs) != 1 || rs[0].NodeId != "pool-2" {
		t.Fatalf("reconcile %v %v, want the lost node left out", rs, err)
	}
	if _, err := pool.Funder(ctx, "pool-1"); err == nil {
		t.Fatal("a channel could be funded from the lost node")
	}

	// The payee says it was paid and hands over the preimage.
	before := fx.balance("alice")
	res, err := fx.p.Apply(principal.With(ctx, "admin-ann"), bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT, &bankdv1.ResolveLostPaymentRequest{
		PaymentId: "p1", Succeeded: true, Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PREIMAGE, Preimage: fx.net.OutsidePreimage(p.Hash), FeeSat: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.(*bankdv1.ResolveLostPaymentResponse); r.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED || r.Payment.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
		t.Fatalf("resolved %v", r)
	}
	if b := fx.balance("alice"); b.Posted != before.Posted-5_003 || b.Available != before.Posted-5_003 {
		t.Fatalf("alice %v (was %v), want 5,000 + 3 fee charged and the rest of the reserve released", b, before)
	}
	time.Sleep(100 * time.Millisecond)
	if c, d := calls.Load(), dials.Load(); c != 0 || d != 0 {
		t.Fatalf("the pool called the retired lost node %d times and dialed it %d times", c, d)
	}
	if _, err := fx.f.LndNode("pool-2"); err != nil {
		t.Fatal(err)
	}
	var refusal *fsm.Error
	if _, err := fx.p.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT, &bankdv1.UpsertLndNodeRequest{Id: "pool-1", Address: "127.0.0.1:10009",
		TlsCertPath: "/tls.cert", MacaroonPath: "/admin.macaroon"}, nil); !errors.As(err, &refusal) {
		t.Fatalf("registering the lost node again: %v, want a refusal", err)
	}
}
