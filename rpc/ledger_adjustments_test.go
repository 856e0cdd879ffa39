package rpc

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/fsmtest"
	"github.com/bankd/bankd/internal/principal"
)

// The fake state holds no adjustments.
func (s *fakeState) Adjustment(id string) (*bankdv1.Adjustment, error) {
	return nil, fmt.Errorf("adjustment %q: %w", id, fsm.ErrNotFound)
}

func (s *fakeState) ListAdjustments(string, string, int) ([]*bankdv1.Adjustment, string, error) {
	return nil, "", nil
}

func validAdjustment(id string) *bankdv1.BookAdjustmentRequest {
	return &bankdv1.BookAdjustmentRequest{Id: id, AccountId: "ln:pool-1", AmountSat: 1_500, Kind: bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES,
		Reason: "routing fees of December", ExternalReference: "fwd-events-2026-12"}
}

// adjustmentNode is a fake node whose BOOK_ADJUSTMENT reaches a real state machine holding one
// healthy pool node (ln:pool-1, 1,000,000 sat), stamped with the principal the API put on the
// call, as the leader does.
func adjustmentNode(t *testing.T) (*fakeNode, *fsm.FSM, *[]*bankdv1.BookAdjustmentRequest) {
	f := fsmtest.Open(t)
	p := &fsmtest.Proposer{T: t, F: f}
	p.Must(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT, &bankdv1.UpsertLndNodeRequest{Id: "pool-1", Address: "127.0.0.1:10009", TlsCertPath: "/c", MacaroonPath: "/m"})
	p.Must(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_HEALTH, &bankdv1.LndNodeHealth{Id: "pool-1", Reachable: true, SyncedToChain: true,
		Pubkey: "02" + strings.Repeat("11", 32), OpeningBalanceSat: 1_000_000})
	n := newFakeNode("n1")
	var bodies []*bankdv1.BookAdjustmentRequest
	n.applyFn = func(typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error) {
		if typ != bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT || fence != nil {
			return nil, fmt.Errorf("unexpected proposal %s with fence %v", typ, fence)
		}
		bodies = append(bodies, body.(*bankdv1.BookAdjustmentRequest))
		who := n.proposedBy()
		return p.Apply(principal.With(context.Background(), who[len(who)-1]), typ, body, nil)
	}
	return n, f, &bodies
}

func TestBookAdjustmentNeedsTheOperatorScope(t *testing.T) {
	n, f, _ := adjustmentNode(t)
	srv := startFakeServer(t, n, Options{})
	tests := []struct {
		token string
		want  connect.Code // 0: success
	}{
		{"", connect.CodeUnauthenticated},
		{"not-a-token", connect.CodeUnauthenticated},
		{readToken, connect.CodePermissionDenied},
		{clientToken, connect.CodePermissionDenied}, // a client service moves customers' money only
		{operatorToken, 0},
		{adminToken, 0},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("token %q", tt.token), func(t *testing.T) {
			before := len(n.appliedTypes())
			res, err := ledgerClient(srv.url, tt.token).BookAdjustment(context.Background(), connect.NewRequest(validAdjustment(fmt.Sprintf("a%d", i))))
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				if want := map[string]string{operatorToken: "operator", adminToken: "admin"}[tt.token]; res.Msg.Adjustment.DecidedBy != want {
					t.Fatalf("decided by %q, want the token's name %q", res.Msg.Adjustment.DecidedBy, want)
				}
				return
			}
			if got := connect.CodeOf(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
			if len(n.appliedTypes()) != before {
				t.Fatal("a refused caller's adjustment was proposed")
			}
		})
	}
	if acc, err := f.Account("ln:pool-1"); err != nil || acc.Balance.Posted != 1_003_000 {
		t.Fatalf("ln:pool-1 %v %v, want the two allowed adjustments booked", acc, err)
	}
	// Reads need the read scope.
	for _, tok := range []string{readToken, clientToken, operatorToken} {
		_, err := ledgerClient(srv.url, tok).GetAdjustment(context.Background(), connect.NewRequest(&bankdv1.GetAdjustmentRequest{Id: "nope"}))
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("get with %s: %v, want not_found", tok, err)
		}
		if _, err := ledgerClient(srv.url, tok).ListAdjustments(context.Background(), connect.NewRequest(&bankdv1.ListAdjustmentsRequest{})); err != nil {
			t.Fatalf("list with %s: %v", tok, err)
		}
	}
	if _, err := ledgerClient(srv.url, "").ListAdjustments(context.Background(), connect.NewRequest(&bankdv1.ListAdjustmentsRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("list without a token: %v", err)
	}
}

// TestTheDeciderIsTheCallersToken: a request cannot name who decided. One that tries anyway, by
// sending the record's decided_by field (10) as an unknown field of the request, is booked under
// the caller's token, and the unknown field never reaches the log.
func TestTheDeciderIsTheCallersToken(t *testing.T) {
	n, f, bodies := adjustmentNode(t)
	srv := startFakeServer(t, n, Options{})
	crafted, err := proto.Marshal(&bankdv1.Adjustment{Id: "claim", AccountId: "ln:pool-1", AmountSat: -200, Kind: bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CLOSE_FEES,
		Reason: "close fees", ExternalReference: "txid:0", DecidedBy: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	req := &bankdv1.BookAdjustmentRequest{}
	if err := proto.Unmarshal(crafted, req); err != nil || len(req.ProtoReflect().GetUnknown()) == 0 {
		t.Fatalf("crafted request %v %v: want decided_by as an unknown field", req, err)
	}
	res, err := ledgerClient(srv.url, operatorToken).BookAdjustment(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.Adjustment.DecidedBy != "operator" {
		t.Fatalf("decided by %q, want operator", res.Msg.Adjustment.DecidedBy)
	}
	if stored, err := f.Adjustment("claim"); err != nil || stored.DecidedBy != "operator" {
		t.Fatalf("stored %v %v", stored, err)
	}
	if len(*bodies) != 1 || len((*bodies)[0].ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("proposed %v, want the known fields only", *bodies)
	}
	// The same request without the crafted field is a retry, not another body.
	retry, err := ledgerClient(srv.url, adminToken).BookAdjustment(context.Background(), connect.NewRequest(&bankdv1.BookAdjustmentRequest{
		Id: "claim", AccountId: "ln:pool-1", AmountSat: -200, Kind: bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CLOSE_FEES, Reason: "close fees", ExternalReference: "txid:0"}))
	if err != nil || !retry.Msg.Replayed || retry.Msg.Adjustment.DecidedBy != "operator" {
		t.Fatalf("retry %v %v", retry, err)
	}
	// Another body under the id is refused already_exists.
	other := validAdjustment("claim")
	if _, err := ledgerClient(srv.url, operatorToken).BookAdjustment(context.Background(), connect.NewRequest(other)); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("reuse of the id: %v, want already_exists", err)
	}
	// A customer account is refused before anything is proposed; an overdraft by the state
	// machine.
	before := len(*bodies)
	customer := validAdjustment("c1")
	customer.AccountId = "alice"
	_, err = ledgerClient(srv.url, operatorToken).BookAdjustment(context.Background(), connect.NewRequest(customer))
	requireInvalidField(t, err, "account_id")
	if len(*bodies) != before {
		t.Fatal("an adjustment of a customer account was proposed")
	}
	overdraft := validAdjustment("o1")
	overdraft.AmountSat = -2_000_000
	if _, err := ledgerClient(srv.url, operatorToken).BookAdjustment(context.Background(), connect.NewRequest(overdraft)); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("overdraft: %v, want failed_precondition", err)
	}
}

func TestBookAdjustmentRefusesInvalidRequests(t *testing.T) {
	n, _, bodies := adjustmentNode(t)
	srv := startFakeServer(t, n, Options{})
	with := func(f func(r *bankdv1.BookAdjustmentRequest)) *bankdv1.BookAdjustmentRequest {
		r := validAdjustment("a1")
		f(r)
		return r
	}
	tests := []struct {
		name  string
		req   *bankdv1.BookAdjustmentRequest
		field string
	}{
		{"no id", with(func(r *bankdv1.BookAdjustmentRequest) { r.Id = "" }), "id"},
		{"a bad id", with(func(r *bankdv1.BookAdjustmentRequest) { r.Id = "a b" }), "id"},
		{"no account", with(func(r *bankdv1.BookAdjustmentRequest) { r.AccountId = "" }), "account_id"},
		{"a customer account", with(func(r *bankdv1.BookAdjustmentRequest) { r.AccountId = "alice" }), "account_id"},
		{"the capital account", with(func(r *bankdv1.BookAdjustmentRequest) { r.AccountId = fsm.LightningCapitalAccount }), "account_id"},
		{"a counter-account", with(func(r *bankdv1.BookAdjustmentRequest) { r.AccountId = "ln-adjust:routing-fees" }), "account_id"},
		{"zero", with(func(r *bankdv1.BookAdjustmentRequest) { r.AmountSat = 0 }), "amount_sat"},
		{"too much", with(func(r *bankdv1.BookAdjustmentRequest) { r.AmountSat = -fsm.MaxAdjustmentSat - 1 }), "amount_sat"},
		{"no kind", with(func(r *bankdv1.BookAdjustmentRequest) { r.Kind = 0 }), "kind"},
		{"an unknown kind", with(func(r *bankdv1.BookAdjustmentRequest) { r.Kind = 42 }), "kind"},
		{"no reason", with(func(r *bankdv1.BookAdjustmentRequest) { r.Reason = "" }), "reason"},
		{"a reason too long", with(func(r *bankdv1.BookAdjustmentRequest) { r.Reason = strings.Repeat("r", fsm.MaxAdjustmentReasonLen+1) }), "reason"},
		{"no reference", with(func(r *bankdv1.BookAdjustmentRequest) { r.ExternalReference = "" }), "external_reference"},
		{"a reference too long", with(func(r *bankdv1.BookAdjustmentRequest) {
			r.ExternalReference = strings.Repeat("x", fsm.MaxAdjustmentReferenceLen+1)
		}), "external_reference"},
		{"a reference with a newline", with(func(r *bankdv1.BookAdjustmentRequest) { r.ExternalReference = "a\nb" }), "external_reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ledgerClient(srv.url, operatorToken).BookAdjustment(context.Background(), connect.NewRequest(tt.req))
			requireInvalidField(t, err, tt.field)
		})
	}
	if len(*bodies) != 0 {
		t.Fatalf("invalid requests reached the log: %v", *bodies)
	}
	for name, req := range map[string]*bankdv1.ListAdjustmentsRequest{
		"page_size":  {PageSize: fsm.MaxPageSize + 1},
		"account_id": {AccountId: strings.Repeat("a", fsm.MaxIDLen+1)},
		"page_token": {PageToken: strings.Repeat("f", 10_000)},
	} {
		_, err := ledgerClient(srv.url, readToken).ListAdjustments(context.Background(), connect.NewRequest(req))
		requireInvalidField(t, err, name)
	}
	_, err := ledgerClient(srv.url, readToken).GetAdjustment(context.Background(), connect.NewRequest(&bankdv1.GetAdjustmentRequest{}))
	requireInvalidField(t, err, "id")
}

// TestClientsCannotUseTheAdjustmentIDs: the API refuses a client's account or transfer under
// the ids adjustments use, from the start (the state machine only from the first adjustment on).
func TestClientsCannotUseTheAdjustmentIDs(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = okTransfers
	srv := startFakeServer(t, n, Options{})
	cl := ledgerClient(srv.url, clientToken)
	_, err := cl.CreateAccount(context.Background(), connect.NewRequest(&bankdv1.CreateAccountRequest{Account: validAccount("ln-adjust:routing-fees")}))
	requireInvalidField(t, err, "account.id")
	_, err = cl.CreateAccounts(context.Background(), connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: []*bankdv1.Account{validAccount("onchain-adjust:other")}}))
	requireInvalidField(t, err, "accounts[0].id")
	_, err = cl.CreateTransfer(context.Background(), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: &bankdv1.Transfer{
		Id: "ln-adjust:42", DebitAccountId: "a", CreditAccountId: "b", Amount: 1, Currency: "BTC"}}))
	requireInvalidField(t, err, "transfer.id")
	_, err = cl.CreateTransfer(context.Background(), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: &bankdv1.Transfer{
		Id: "t1", DebitAccountId: "ln-adjust:routing-fees", CreditAccountId: "b", Amount: 1, Currency: "BTC"}}))
	requireInvalidField(t, err, "transfer.debit_account_id")
	if len(n.appliedTypes()) != 0 {
		t.Fatalf("proposed %v", n.appliedTypes())
	}
}
