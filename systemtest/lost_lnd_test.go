package systemtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// TestDeclaringALostLndResolvesItsPaymentByThePreimage: a payment held in flight by the payee (a
// hold invoice on the external lnd) on a pool lnd that is then killed for good. The payment stays
// in flight; an admin declares the node lost (its open invoices are canceled in the ledger),
// ListUnresolved shows exactly the payment, the payee settles and hands over the preimage, and
// the admin's resolution posts the hold as the node's own success would: alice pays the amount
// once, the node retires, and the event feed records who decided.
func TestDeclaringALostLndResolvesItsPaymentByThePreimage(t *testing.T) {
	if testing.Short() {
		t.Skip("real lnd; skipped with -short")
	}
	s := startLightningStack(t)
	ctx := context.Background()
	_, cl := leaderClient(t, s.c)
	for _, id := range []string{"alice", "bob"} {
		createAccount(t, cl, id, liability, true)
	}
	createAccount(t, cl, "treasury", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	admin := func() *connect.Request[bankdv1.CreateTransfersRequest] {
		return connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{xfer("fund-alice", "treasury", "alice", 100_000)}})
	}
	s.eventually("fund alice", 30*time.Second, func() (bool, error) {
		_, err := s.c.Client(followerOf(s.c, -1), testcluster.AdminToken).Ledger.CreateTransfers(ctx, admin())
		return err == nil, err
	})
	s.waitPosted("alice", 100_000)

	// The payee issues a hold invoice: it keeps the HTLC until it settles with the preimage.
	pre := make([]byte, 32)
	_, _ = rand.Read(pre)
	hash := sha256.Sum256(pre)
	hold, err := s.invoices.AddHoldInvoice(ctx, &invoicesrpc.AddHoldInvoiceRequest{Hash: hash[:], Value: 2_500, Expiry: 3600})
	if err != nil {
		t.Fatalf("add hold invoice: %v", err)
	}
	p := s.payRetrying(randomID("pay"), "alice", hold.PaymentRequest, 0)
	if p.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
		t.Fatalf("held payment %v", p)
	}
	s.eventually("HTLC held at the payee", 30*time.Second, func() (bool, error) {
		inv, err := s.lg.External.Client.LookupInvoice(ctx, &lnrpc.PaymentHash{RHash: hash[:]})
		return err == nil && inv.State == lnrpc.Invoice_ACCEPTED, nil
	})
	// An invoice of bob's on every pool node but the paying one is not needed: whatever is
	// open on the lost node is what must be canceled, and ListUnresolved says exactly that.
	s.invoice("bob", 700)

	lost := s.poolNode(p.NodeId)
	lost.Kill() // for good: never restarted
	s.eventually("the pool sees "+p.NodeId+" down", 30*time.Second, func() (bool, error) {
		res, err := s.ln().ListNodes(ctx, connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
		if err != nil {
			return false, err
		}
		for _, n := range res.Msg.Nodes {
			if n.Id == p.NodeId {
				return !n.Reachable && n.HealthCheckedUnixMs > 0, nil
			}
		}
		return false, nil
	})
	before, err := s.ln().ListUnresolved(ctx, connect.NewRequest(&bankdv1.ListUnresolvedRequest{NodeId: p.NodeId}))
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Msg.Payments) != 1 || before.Msg.Payments[0].Id != p.Id || int(before.Msg.Node.OpenInvoices) != len(before.Msg.Invoices) {
		t.Fatalf("unresolved on the dead node: %v", before.Msg)
	}

	// Only an admin declares a node lost.
	if _, err := s.c.Client(followerOf(s.c, -1), testcluster.OperatorToken).Lightning.DeclareNodeLost(ctx,
		connect.NewRequest(&bankdv1.DeclareLndLostRequest{NodeId: p.NodeId, Reason: "host gone"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("declared by an operator: %v, want permission_denied", err)
	}
	var declared *bankdv1.DeclareLndLostResponse
	s.eventually("declare "+p.NodeId+" lost", 30*time.Second, func() (bool, error) {
		res, err := s.ln().DeclareNodeLost(ctx, connect.NewRequest(&bankdv1.DeclareLndLostRequest{NodeId: p.NodeId, Reason: "host gone, channel database lost"}))
		if err != nil {
			return false, err
		}
		declared = res.Msg
		return true, nil
	})
	n := declared.Node
	// The decider is the admin token's name in cluster.hcl (the request names no one).
	decider := n.LostDecidedBy
	if n.State != bankdv1.LndNodeState_LND_NODE_STATE_LOST || !strings.Contains(decider, "admin") || int(declared.InvoicesCanceled) != len(before.Msg.Invoices) ||
		n.OpenInvoices != 0 || n.InflightPayments != 1 {
		t.Fatalf("declared lost: %v", declared)
	}
	for _, inv := range before.Msg.Invoices {
		res, err := s.ln().GetInvoice(ctx, connect.NewRequest(&bankdv1.GetInvoiceRequest{Hash: inv.Hash}))
		if err != nil || res.Msg.Invoice.State != bankdv1.InvoiceState_INVOICE_STATE_EXPIRED || !res.Msg.Invoice.CanceledNodeLost {
			t.Fatalf("invoice %s of the lost node: %v %v", inv.Hash, res, err)
		}
	}
	after, err := s.ln().ListUnresolved(ctx, connect.NewRequest(&bankdv1.ListUnresolvedRequest{NodeId: p.NodeId}))
	if err != nil || len(after.Msg.Invoices) != 0 || len(after.Msg.Payments) != 1 {
		t.Fatalf("unresolved after the declaration: %v %v", after, err)
	}

	// The payee settles and tells the preimage; a wrong one is refused first.
	if _, err := s.invoices.SettleInvoice(ctx, &invoicesrpc.SettleInvoiceMsg{Preimage: pre}); err != nil {
		t.Fatalf("settle hold invoice: %v", err)
	}
	wrong := make([]byte, 32)
	_, _ = rand.Read(wrong)
	if _, err := s.ln().ResolveLostPayment(ctx, connect.NewRequest(&bankdv1.ResolveLostPaymentRequest{PaymentId: p.Id, Succeeded: true,
		Preimage: hex.EncodeToString(wrong)})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a wrong preimage: %v, want invalid_argument", err)
	}
	res, err := s.ln().ResolveLostPayment(ctx, connect.NewRequest(&bankdv1.ResolveLostPaymentRequest{PaymentId: p.Id, Succeeded: true,
		Preimage: hex.EncodeToString(pre), Reference: "preimage from the payee"}))
	if err != nil {
		t.Fatal(err)
	}
	r := res.Msg
	if r.Payment.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED || r.Payment.LostResolution.DecidedBy != decider ||
		r.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED {
		t.Fatalf("resolved: %v", r)
	}
	s.waitPosted("alice", 100_000-2_500)
	if got, state := s.externalReceived(hex.EncodeToString(hash[:])); got != 2_500 || state != lnrpc.Invoice_SETTLED {
		t.Fatalf("payee received %d (%s), want 2500 once", got, state)
	}
	// A retry is a replay; a failure claimed afterwards is refused.
	if again, err := s.ln().ResolveLostPayment(ctx, connect.NewRequest(&bankdv1.ResolveLostPaymentRequest{PaymentId: p.Id, Succeeded: true,
		Preimage: hex.EncodeToString(pre), Reference: "preimage from the payee"})); err != nil || !again.Msg.Replayed {
		t.Fatalf("retry: %v %v", again, err)
	}
	if _, err := s.ln().ResolveLostPayment(ctx, connect.NewRequest(&bankdv1.ResolveLostPaymentRequest{PaymentId: p.Id,
		Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT, Reference: "says not paid"})); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("a failure after the success: %v, want already_exists", err)
	}

	// The event feed: the node went LOST and then RETIRED, decided by the admin, and the
	// payment succeeded on the admin's resolution.
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := s.c.Client(followerOf(s.c, -1), testcluster.ClientToken).Event.WatchEvents(ectx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var sawLost, sawRetired, sawResolved bool
	for !(sawLost && sawRetired && sawResolved) && stream.Receive() {
		for _, item := range stream.Msg().Event.Items {
			if node := item.GetLndNode(); node != nil && node.Id == p.NodeId {
				sawLost = sawLost || node.State == bankdv1.LndNodeState_LND_NODE_STATE_LOST && node.LostDecidedBy == decider
				sawRetired = sawRetired || node.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED && node.LostDecidedBy == decider
			}
			if pay := item.GetPayment(); pay != nil && pay.Id == p.Id && pay.State == bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
				sawResolved = pay.LostResolution.GetDecidedBy() == decider && pay.LostResolution.GetPreimage() == hex.EncodeToString(pre)
			}
		}
	}
	if !sawLost || !sawRetired || !sawResolved {
		t.Fatalf("events: lost %v, retired %v, resolved %v (%v)", sawLost, sawRetired, sawResolved, stream.Err())
	}
	requireSameStateHash(t, s.c)
}
