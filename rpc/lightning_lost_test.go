package rpc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/fsmtest"
	"github.com/bankd/bankd/internal/principal"
)

// The fake state answers the lost-node reads from its lightning state machine, if it has one.
func (s *fakeState) LndNode(id string) (*bankdv1.LndNode, error) {
	if s.lightning == nil {
		return nil, fmt.Errorf("pool node %q: %w", id, fsm.ErrNotFound)
	}
	return s.lightning.LndNode(id)
}

func (s *fakeState) OpenInvoices(node, after string, max int) ([]*bankdv1.LnInvoice, error) {
	if s.lightning == nil {
		return nil, nil
	}
	return s.lightning.OpenInvoices(node, after, max)
}

func (s *fakeState) InFlightPayments(node, after string, max int) ([]*bankdv1.LnPayment, error) {
	if s.lightning == nil {
		return nil, nil
	}
	return s.lightning.InFlightPayments(node, after, max)
}

func lightningClient(url, token string) bankdv1connect.LightningServiceClient {
	return bankdv1connect.NewLightningServiceClient(http.DefaultClient, url, bearer(token))
}

// lostPreimage returns preimage n and its payment hash, hex.
func lostPreimage(n int) (preimage, hash string) {
	pre := sha256.Sum256([]byte(fmt.Sprintf("lost preimage %d", n)))
	h := sha256.Sum256(pre[:])
	return hex.EncodeToString(pre[:]), hex.EncodeToString(h[:])
}

// lostNode is a fake node whose lost-node commands reach a real state machine, stamped with the
// principal the API put on the call as the leader does. The state machine holds pool-1, which
// stopped answering, with two open invoices of bob's and two payments of alice's in flight
// (lp-1: 1,000 sat + 10 reserve, hash 1; lp-2: 2,000 sat + 20, hash 2).
func lostNode(t *testing.T) (*fakeNode, *fsm.FSM, *[]proto.Message) {
	f := fsmtest.Open(t)
	p := &fsmtest.Proposer{T: t, F: f}
	p.Must(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT, &bankdv1.UpsertLndNodeRequest{Id: "pool-1", Address: "127.0.0.1:10009", TlsCertPath: "/c", MacaroonPath: "/m"})
	p.Must(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_HEALTH, &bankdv1.LndNodeHealth{Id: "pool-1", Reachable: true, SyncedToChain: true,
		Pubkey: "02" + strings.Repeat("11", 32), OpeningBalanceSat: 1_000_000})
	for _, id := range []string{"alice", "bob"} {
		p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{Account: &bankdv1.Account{Id: id, Currency: "BTC",
			Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true}})
	}
	p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{Account: &bankdv1.Account{Id: "treasury", Currency: "BTC",
		Kind: bankdv1.AccountKind_ACCOUNT_KIND_EQUITY}})
	p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
		{Id: "fund", DebitAccountId: "treasury", CreditAccountId: "alice", Amount: 100_000, Currency: "BTC"}}})
	for i := 1; i <= 2; i++ {
		_, hash := lostPreimage(10 + i)
		p.Must(bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED, &bankdv1.LnInvoiceCreated{Invoice: &bankdv1.LnInvoice{
			Hash: hash, AccountId: "bob", NodeId: "pool-1", AmountSat: 500, PaymentRequest: "lnbcrt" + hash,
			ExpiresUnixMs: 1 << 50, AddIndex: uint64(i), RequestId: fmt.Sprintf("inv-%d", i)}})
		_, hash = lostPreimage(i)
		p.Must(bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START, &bankdv1.LnPaymentStart{Id: fmt.Sprintf("lp-%d", i), AccountId: "alice", Hash: hash,
			PaymentRequest: "lnbcrt" + hash, Destination: "03" + hash, AmountSat: int64(1_000 * i), FeeReserveSat: int64(10 * i), NodeId: "pool-1"})
	}
	p.Must(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_HEALTH, &bankdv1.LndNodeHealth{Id: "pool-1", Error: "connection refused"})
	n := newFakeNode("n1")
	n.state.lightning = f
	var bodies []proto.Message
	n.applyFn = func(typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error) {
		if (typ != bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST && typ != bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT) || fence != nil {
			return nil, fmt.Errorf("unexpected proposal %s with fence %v", typ, fence)
		}
		bodies = append(bodies, body)
		who := n.proposedBy()
		return p.Apply(principal.With(context.Background(), who[len(who)-1]), typ, body, nil)
	}
	return n, f, &bodies
}

func TestLostNodeCallsNeedTheAdminScope(t *testing.T) {
	n, f, bodies := lostNode(t)
	srv := startFakeServer(t, n, Options{})
	declare := &bankdv1.DeclareLndLostRequest{NodeId: "pool-1", Reason: "host decommissioned, disk wiped"}
	pre, _ := lostPreimage(1)
	resolve := &bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-1", Succeeded: true, Preimage: pre, FeeSat: 4}
	for _, tok := range []string{"", "not-a-token", readToken, clientToken, operatorToken} {
		want := connect.CodePermissionDenied
		if tok == "" || tok == "not-a-token" {
			want = connect.CodeUnauthenticated
		}
		if _, err := lightningClient(srv.url, tok).DeclareNodeLost(context.Background(), connect.NewRequest(declare)); connect.CodeOf(err) != want {
			t.Fatalf("declare with %q: %v, want %v", tok, err, want)
		}
		if _, err := lightningClient(srv.url, tok).ResolveLostPayment(context.Background(), connect.NewRequest(resolve)); connect.CodeOf(err) != want {
			t.Fatalf("resolve with %q: %v, want %v", tok, err, want)
		}
	}
	if len(*bodies) != 0 {
		t.Fatalf("refused callers' commands were proposed: %v", *bodies)
	}
	// Resolving before the node is lost: the pool's tracking is authoritative.
	if _, err := lightningClient(srv.url, adminToken).ResolveLostPayment(context.Background(), connect.NewRequest(resolve)); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("resolve on a live node: %v, want failed_precondition", err)
	}

	// Reads: what is unresolved, with the read scope.
	unresolved, err := lightningClient(srv.url, readToken).ListUnresolved(context.Background(), connect.NewRequest(&bankdv1.ListUnresolvedRequest{NodeId: "pool-1"}))
	if err != nil || len(unresolved.Msg.Invoices) != 2 || len(unresolved.Msg.Payments) != 2 || unresolved.Msg.Node.GetOpenInvoices() != 2 {
		t.Fatalf("unresolved before: %v %v", unresolved, err)
	}
	page, err := lightningClient(srv.url, readToken).ListUnresolved(context.Background(), connect.NewRequest(&bankdv1.ListUnresolvedRequest{NodeId: "pool-1", PageSize: 1}))
	if err != nil || len(page.Msg.Payments) != 1 || page.Msg.NextPaymentsAfter != "lp-1" || page.Msg.NextInvoicesAfter == "" {
		t.Fatalf("a page of one: %v %v", page, err)
	}
	rest, err := lightningClient(srv.url, readToken).ListUnresolved(context.Background(), connect.NewRequest(&bankdv1.ListUnresolvedRequest{NodeId: "pool-1", PageSize: 1,
		PaymentsAfter: "lp-1", InvoicesAfter: page.Msg.NextInvoicesAfter}))
	if err != nil || len(rest.Msg.Payments) != 1 || rest.Msg.Payments[0].Id != "lp-2" || rest.Msg.NextPaymentsAfter != "" || len(rest.Msg.Invoices) != 1 || rest.Msg.NextInvoicesAfter != "" {
		t.Fatalf("the next page: %v %v", rest, err)
	}

	res, err := lightningClient(srv.url, adminToken).DeclareNodeLost(context.Background(), connect.NewRequest(declare))
	if err != nil || res.Msg.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_LOST || res.Msg.InvoicesCanceled != 2 || res.Msg.Node.LostDecidedBy != "admin" {
		t.Fatalf("declared: %v %v", res, err)
	}
	got, err := lightningClient(srv.url, adminToken).ResolveLostPayment(context.Background(), connect.NewRequest(resolve))
	if err != nil || got.Msg.Payment.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED || got.Msg.Payment.LostResolution.DecidedBy != "admin" ||
		got.Msg.Payment.LostResolution.Evidence != bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PREIMAGE {
		t.Fatalf("resolved: %v %v", got, err)
	}
	unresolved, err = lightningClient(srv.url, readToken).ListUnresolved(context.Background(), connect.NewRequest(&bankdv1.ListUnresolvedRequest{NodeId: "pool-1"}))
	if err != nil || len(unresolved.Msg.Invoices) != 0 || len(unresolved.Msg.Payments) != 1 || unresolved.Msg.Payments[0].Id != "lp-2" {
		t.Fatalf("unresolved after: %v %v", unresolved, err)
	}
	failed, err := lightningClient(srv.url, adminToken).ResolveLostPayment(context.Background(), connect.NewRequest(&bankdv1.ResolveLostPaymentRequest{
		PaymentId: "lp-2", Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT, Reference: "payee ticket 7"}))
	if err != nil || failed.Msg.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED {
		t.Fatalf("last resolution: %v %v", failed, err)
	}
	if acc, err := f.Account("alice"); err != nil || acc.Balance.Posted != 100_000-1_004 || acc.Balance.Available != 100_000-1_004 {
		t.Fatalf("alice %v %v", acc, err)
	}
	// A contradicting preimage is recorded as a problem, answered failed_precondition.
	pre2, _ := lostPreimage(2)
	_, err = lightningClient(srv.url, adminToken).ResolveLostPayment(context.Background(), connect.NewRequest(&bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-2", Succeeded: true, Preimage: pre2}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "bank bears") {
		t.Fatalf("a preimage after a failure: %v, want failed_precondition naming the problem", err)
	}
	if c, _ := f.ProblemCount(); c != 1 {
		t.Fatalf("problems %d, want the contradiction recorded", c)
	}
	if _, err := lightningClient(srv.url, readToken).ListUnresolved(context.Background(), connect.NewRequest(&bankdv1.ListUnresolvedRequest{NodeId: "pool-9"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("an unknown node: %v, want not_found", err)
	}
}

// TestTheLostDeciderIsTheCallersToken: a request that sends decided_by (the record's field 10)
// as an unknown field is recorded under the caller's token, and the unknown field never reaches
// the log.
func TestTheLostDeciderIsTheCallersToken(t *testing.T) {
	n, f, bodies := lostNode(t)
	srv := startFakeServer(t, n, Options{})
	crafted, err := proto.Marshal(&bankdv1.LostPaymentResolution{DecidedBy: "someone-else", Reference: "x"})
	if err != nil {
		t.Fatal(err)
	}
	req := &bankdv1.DeclareLndLostRequest{NodeId: "pool-1", Reason: "gone"}
	if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(crafted, req); err != nil || len(req.ProtoReflect().GetUnknown()) == 0 {
		t.Fatalf("crafted request %v %v: want decided_by as an unknown field", req, err)
	}
	if _, err := lightningClient(srv.url, adminToken).DeclareNodeLost(context.Background(), connect.NewRequest(req)); err != nil {
		t.Fatal(err)
	}
	if node, err := f.LndNode("pool-1"); err != nil || node.LostDecidedBy != "admin" {
		t.Fatalf("declared by %v %v, want admin", node, err)
	}
	resolve := &bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-1", Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_FORCE_CLOSE_RESOLUTION, Reference: "txid:1"}
	if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(crafted, resolve); err != nil {
		t.Fatal(err)
	}
	res, err := lightningClient(srv.url, adminToken).ResolveLostPayment(context.Background(), connect.NewRequest(resolve))
	if err != nil || res.Msg.Payment.LostResolution.DecidedBy != "admin" {
		t.Fatalf("resolved %v %v, want decided by admin", res, err)
	}
	for _, b := range *bodies {
		if len(b.ProtoReflect().GetUnknown()) != 0 {
			t.Fatalf("proposed %v, want the known fields only", b)
		}
	}
}

func TestLostNodeCallsRefuseInvalidRequests(t *testing.T) {
	n, _, bodies := lostNode(t)
	srv := startFakeServer(t, n, Options{})
	cl := lightningClient(srv.url, adminToken)
	for name, req := range map[string]*bankdv1.DeclareLndLostRequest{
		"node_id": {NodeId: "pool 1", Reason: "gone"},
		"reason":  {NodeId: "pool-1", Reason: strings.Repeat("r", fsm.MaxLostReasonLen+1)},
	} {
		_, err := cl.DeclareNodeLost(context.Background(), connect.NewRequest(req))
		requireInvalidField(t, err, name)
	}
	pre, _ := lostPreimage(1)
	for _, tt := range []struct {
		field string
		req   *bankdv1.ResolveLostPaymentRequest
	}{
		{"payment_id", &bankdv1.ResolveLostPaymentRequest{Succeeded: true, Preimage: pre}},
		{"preimage", &bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-1", Succeeded: true, Preimage: "00"}},
		{"fee_sat", &bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-1", Succeeded: true, Preimage: pre, FeeSat: -1}},
		{"evidence", &bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-1", Succeeded: true, Preimage: pre, Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT}},
		{"evidence", &bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-1", Reference: "r"}},
		{"reference", &bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-1", Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT}},
		{"preimage", &bankdv1.ResolveLostPaymentRequest{PaymentId: "lp-1", Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT, Reference: "r", Preimage: pre}},
	} {
		_, err := cl.ResolveLostPayment(context.Background(), connect.NewRequest(tt.req))
		requireInvalidField(t, err, tt.field)
	}
	for name, req := range map[string]*bankdv1.ListUnresolvedRequest{
		"node_id":        {},
		"page_size":      {NodeId: "pool-1", PageSize: fsm.MaxPageSize + 1},
		"invoices_after": {NodeId: "pool-1", InvoicesAfter: "xyz"},
		"payments_after": {NodeId: "pool-1", PaymentsAfter: strings.Repeat("p", fsm.MaxIDLen+1)},
	} {
		_, err := lightningClient(srv.url, readToken).ListUnresolved(context.Background(), connect.NewRequest(req))
		requireInvalidField(t, err, name)
	}
	if len(*bodies) != 0 {
		t.Fatalf("invalid requests reached the log: %v", *bodies)
	}
}
