package console

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// Tokens of the fake API: a read token, an operator token, and one the API stops accepting.
const (
	readToken     = "read-secret-token"
	operatorToken = "operator-secret-token"
)

// fakeAPI is a small stand-in for the node's API, with the same shape of authorization as
// rpc/auth.go: a bearer token, and a scope per procedure.
type fakeAPI struct {
	bankdv1connect.UnimplementedClusterServiceHandler
	bankdv1connect.UnimplementedLedgerServiceHandler
	bankdv1connect.UnimplementedPayoutServiceHandler
	bankdv1connect.UnimplementedEventServiceHandler

	mu       sync.Mutex
	revoked  map[string]bool
	leader   string
	term     uint64
	payout   *bankdv1.Payout
	approved []string
	// unavailable answers the next calls of GetAccount and ApprovePayout Unavailable.
	unavailable int
}

func (f *fakeAPI) failNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unavailable = n
}

// election answers Unavailable while failNext's count lasts.
func (f *fakeAPI) election() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unavailable == 0 {
		return nil
	}
	f.unavailable--
	return connect.NewError(connect.CodeUnavailable, errors.New("no known leader"))
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{
		revoked: map[string]bool{}, leader: "n1", term: 2,
		payout: &bankdv1.Payout{Id: "p1", AccountId: "alice", AmountSat: 2_000_000, State: bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL, RequestedBy: "dev-write-1"},
	}
}

func (f *fakeAPI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(bankdv1connect.NewClusterServiceHandler(f))
	mux.Handle(bankdv1connect.NewLedgerServiceHandler(f))
	mux.Handle(bankdv1connect.NewPayoutServiceHandler(f))
	mux.Handle(bankdv1connect.NewVaultServiceHandler(fakeVault{f: f}))
	mux.Handle(bankdv1connect.NewEventServiceHandler(f))
	return mux
}

func (f *fakeAPI) revoke(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked[token] = true
}

func (f *fakeAPI) setLeader(id string, term uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader, f.term = id, term
}

func (f *fakeAPI) approvals() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.approved...)
}

// authorize is rpc/auth.go in miniature: operator needs the operator token, read takes either.
func (f *fakeAPI) authorize(h http.Header, operator bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	token, ok := bearerOf(h.Get("Authorization"))
	switch {
	case !ok || f.revoked[token] || (token != readToken && token != operatorToken):
		return connect.NewError(connect.CodeUnauthenticated, errors.New("invalid bearer token"))
	case operator && token != operatorToken:
		return connect.NewError(connect.CodePermissionDenied, errors.New("needs a token with the operator scope"))
	}
	return nil
}

func bearerOf(v string) (string, bool) {
	const prefix = "Bearer "
	if len(v) <= len(prefix) || v[:len(prefix)] != prefix {
		return "", false
	}
	return v[len(prefix):], true
}

func (f *fakeAPI) Status(_ context.Context, req *connect.Request[bankdv1.StatusRequest]) (*connect.Response[bankdv1.StatusResponse], error) {
	if err := f.authorize(req.Header(), false); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return connect.NewResponse(&bankdv1.StatusResponse{NodeId: "n2", RaftState: "Follower", Term: f.term, LeaderId: f.leader, CommitIndex: 10, AppliedIndex: 9}), nil
}

func (f *fakeAPI) Members(_ context.Context, req *connect.Request[bankdv1.MembersRequest]) (*connect.Response[bankdv1.MembersResponse], error) {
	if err := f.authorize(req.Header(), false); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ms []*bankdv1.Member
	for _, id := range []string{"n1", "n2", "n3"} {
		ms = append(ms, &bankdv1.Member{NodeId: id, Region: "r1", Suffrage: "voter", GossipState: "alive", Leader: id == f.leader})
	}
	return connect.NewResponse(&bankdv1.MembersResponse{Members: ms}), nil
}

func (f *fakeAPI) ListProblems(_ context.Context, req *connect.Request[bankdv1.ListProblemsRequest]) (*connect.Response[bankdv1.ListProblemsResponse], error) {
	if err := f.authorize(req.Header(), true); err != nil {
		return nil, err
	}
	return connect.NewResponse(&bankdv1.ListProblemsResponse{}), nil
}

func (f *fakeAPI) ListAccounts(_ context.Context, req *connect.Request[bankdv1.ListAccountsRequest]) (*connect.Response[bankdv1.ListAccountsResponse], error) {
	if err := f.authorize(req.Header(), false); err != nil {
		return nil, err
	}
	return connect.NewResponse(&bankdv1.ListAccountsResponse{Accounts: []*bankdv1.Account{alice()}, Meta: &bankdv1.ReadMeta{LagMs: 3}}), nil
}

func alice() *bankdv1.Account {
	return &bankdv1.Account{Id: "alice", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY,
		Balance: &bankdv1.Balance{Posted: 1_234_567, Available: 1_000_000}}
}

func (f *fakeAPI) GetAccount(_ context.Context, req *connect.Request[bankdv1.GetAccountRequest]) (*connect.Response[bankdv1.GetAccountResponse], error) {
	if err := f.authorize(req.Header(), false); err != nil {
		return nil, err
	}
	if err := f.election(); err != nil {
		return nil, err
	}
	if req.Msg.Id != "alice" {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("account not found"))
	}
	return connect.NewResponse(&bankdv1.GetAccountResponse{Account: alice()}), nil
}

func (f *fakeAPI) ListAccountHistory(_ context.Context, req *connect.Request[bankdv1.ListAccountHistoryRequest]) (*connect.Response[bankdv1.ListAccountHistoryResponse], error) {
	if err := f.authorize(req.Header(), false); err != nil {
		return nil, err
	}
	return connect.NewResponse(&bankdv1.ListAccountHistoryResponse{}), nil
}

func (f *fakeAPI) ListPayouts(_ context.Context, req *connect.Request[bankdv1.ListPayoutsRequest]) (*connect.Response[bankdv1.ListPayoutsResponse], error) {
	if err := f.authorize(req.Header(), false); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var ps []*bankdv1.Payout
	if req.Msg.State == 0 || req.Msg.State == f.payout.State {
		ps = append(ps, f.payout)
	}
	return connect.NewResponse(&bankdv1.ListPayoutsResponse{Payouts: ps}), nil
}

func (f *fakeAPI) ApprovePayout(_ context.Context, req *connect.Request[bankdv1.DecidePayoutRequest]) (*connect.Response[bankdv1.DecidePayoutResponse], error) {
	if err := f.authorize(req.Header(), true); err != nil {
		return nil, err
	}
	if err := f.election(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Msg.Id != f.payout.Id {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no such payout"))
	}
	f.approved = append(f.approved, req.Msg.Id)
	f.payout.State = bankdv1.PayoutState_PAYOUT_STATE_QUEUED
	return connect.NewResponse(&bankdv1.DecidePayoutResponse{Payout: f.payout}), nil
}

// fakeVault is the vault service apart: it shares SubmitSignature's name with PayoutService.
type fakeVault struct {
	bankdv1connect.UnimplementedVaultServiceHandler
	f *fakeAPI
}

func (v fakeVault) List(_ context.Context, req *connect.Request[bankdv1.ListVaultProposalsRequest]) (*connect.Response[bankdv1.ListVaultProposalsResponse], error) {
	if err := v.f.authorize(req.Header(), false); err != nil {
		return nil, err
	}
	return connect.NewResponse(&bankdv1.ListVaultProposalsResponse{}), nil
}

// WatchEvents sends three events from from_index, then waits for the client to go.
func (f *fakeAPI) WatchEvents(ctx context.Context, req *connect.Request[bankdv1.WatchEventsRequest], stream *connect.ServerStream[bankdv1.WatchEventsResponse]) error {
	if err := f.authorize(req.Header(), false); err != nil {
		return err
	}
	for i := uint64(0); i < 3; i++ {
		ev := &bankdv1.Event{Index: req.Msg.FromIndex + i, Items: []*bankdv1.EventItem{{Kind: &bankdv1.EventItem_Transfer{
			Transfer: &bankdv1.Transfer{Id: "t<script>", DebitAccountId: "reserve", CreditAccountId: "alice", Amount: 100, Currency: "BTC"}}}}}
		if err := stream.Send(&bankdv1.WatchEventsResponse{Event: ev}); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}
