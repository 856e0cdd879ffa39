package rpc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/node"
)

func validAccount(id string) *bankdv1.Account {
	return &bankdv1.Account{Id: id, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true}
}

func accountBatch(n int) []*bankdv1.Account {
	accs := make([]*bankdv1.Account, n)
	for i := range accs {
		accs[i] = validAccount(fmt.Sprintf("c%d", i))
	}
	return accs
}

// createdAccounts is a fake state machine's CREATE_ACCOUNTS: every account OK, and records the
// bodies and fences it was proposed with.
type createdAccounts struct {
	mu     sync.Mutex
	bodies []*bankdv1.CreateAccountsRequest
	fences []*bankdv1.Fence
}

func (c *createdAccounts) apply(typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error) {
	if typ != bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS {
		return nil, &fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, Message: "unexpected command " + typ.String()}
	}
	req := body.(*bankdv1.CreateAccountsRequest)
	c.mu.Lock()
	c.bodies, c.fences = append(c.bodies, req), append(c.fences, fence)
	c.mu.Unlock()
	res := &bankdv1.CreateAccountsResponse{}
	for _, acc := range req.Accounts {
		res.Results = append(res.Results, &bankdv1.AccountResult{Id: acc.Id, Code: bankdv1.ResultCode_RESULT_CODE_OK, Account: acc})
	}
	return res, nil
}

func TestCreateAccountsNeedsTheWriteScope(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = (&createdAccounts{}).apply
	srv := startFakeServer(t, n, Options{})
	tests := []struct {
		token string
		want  connect.Code // 0: success
	}{
		{"", connect.CodeUnauthenticated},
		{readToken, connect.CodePermissionDenied},
		{operatorToken, connect.CodePermissionDenied},
		{clientToken, 0},
		{adminToken, 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("token %q", tt.token), func(t *testing.T) {
			before := len(n.appliedTypes())
			_, err := ledgerClient(srv.url, tt.token).CreateAccounts(context.Background(),
				connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: accountBatch(2)}))
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if got := connect.CodeOf(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
			if tt.want == connect.CodePermissionDenied && !strings.Contains(err.Error(), "write") {
				t.Fatalf("the refusal %q does not name the scope needed", err)
			}
			if got := len(n.appliedTypes()); got != before {
				t.Fatalf("a refused call proposed a command")
			}
		})
	}
}

func TestCreateAccountsValidatesTheWholeRequestBeforeProposing(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = (&createdAccounts{}).apply
	srv := startFakeServer(t, n, Options{})
	with := func(mut func([]*bankdv1.Account)) []*bankdv1.Account {
		accs := accountBatch(3)
		mut(accs)
		return accs
	}
	tests := []struct {
		name  string
		req   *bankdv1.CreateAccountsRequest
		field string // the message must start with it
	}{
		{"no accounts", &bankdv1.CreateAccountsRequest{}, "accounts: at least one account"},
		{"8001 accounts", &bankdv1.CreateAccountsRequest{Accounts: accountBatch(fsm.MaxAccountsPerCommand + 1)}, "accounts: at most 8000"},
		{"an id twice", &bankdv1.CreateAccountsRequest{Accounts: with(func(a []*bankdv1.Account) { a[2].Id = a[0].Id })},
			`accounts[2].id: "c0" is also accounts[0].id`},
		{"an invalid account names its position", &bankdv1.CreateAccountsRequest{Accounts: with(func(a []*bankdv1.Account) { a[1].Currency = "btc" })},
			"accounts[1].currency"},
		{"an account without a kind", &bankdv1.CreateAccountsRequest{Accounts: with(func(a []*bankdv1.Account) { a[2].Kind = 0 })},
			"accounts[2].kind"},
		{"a driver's account id", &bankdv1.CreateAccountsRequest{Accounts: with(func(a []*bankdv1.Account) { a[0].Id = fsm.DepositClearingAccount })},
			"accounts[0].id"},
		{"an owner sent by the client", &bankdv1.CreateAccountsRequest{Accounts: with(func(a []*bankdv1.Account) { a[1].Owner = bankdv1.Owner_OWNER_CHAIN })},
			"accounts[1].owner"},
		{"a fence without a token", &bankdv1.CreateAccountsRequest{Accounts: accountBatch(1), Fence: &bankdv1.Fence{LockName: "l"}},
			"fence.token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ledgerClient(srv.url, clientToken).CreateAccounts(context.Background(), connect.NewRequest(tt.req))
			requireInvalidField(t, err, tt.field)
		})
	}
	if got := n.appliedTypes(); len(got) != 0 {
		t.Fatalf("invalid requests were proposed: %v", got)
	}
}

// TestCreateAccountsProposesOneEntry: 8,000 accounts (far above the 64 KiB every single-item
// RPC is held to) go into one CREATE_ACCOUNTS proposal, the fence in the envelope, and a
// follower forwards the call to the leader.
func TestCreateAccountsProposesOneEntry(t *testing.T) {
	sm := &createdAccounts{}
	leader := newFakeNode("n1")
	leader.applyFn = sm.apply
	leaderSrv := startFakeServer(t, leader, Options{})
	follower := newFakeNode("n2")
	follower.setLeader(false, node.LeaderInfo{NodeID: "n1", APIAddr: strings.TrimPrefix(leaderSrv.url, "http://")}, true)
	followerSrv := startFakeServer(t, follower, Options{})

	accs := accountBatch(fsm.MaxAccountsPerCommand)
	for _, acc := range accs {
		acc.Metadata = map[string]string{"source": strings.Repeat("x", 16)}
	}
	if size := proto.Size(&bankdv1.CreateAccountsRequest{Accounts: accs}); size <= maxSmallRequestBytes {
		t.Fatalf("the batch is only %d bytes; the test needs more than %d", size, maxSmallRequestBytes)
	}
	fence := &bankdv1.Fence{LockName: "import", Token: 7}
	for _, url := range []string{leaderSrv.url, followerSrv.url} {
		res, err := ledgerClient(url, clientToken).CreateAccounts(context.Background(),
			connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: accs, Fence: fence}))
		if err != nil {
			t.Fatalf("through %s: %v", url, err)
		}
		if len(res.Msg.Results) != len(accs) || res.Msg.Results[len(accs)-1].GetId() != accs[len(accs)-1].Id {
			t.Fatalf("through %s: %d results", url, len(res.Msg.Results))
		}
	}
	if got := follower.appliedTypes(); len(got) != 0 {
		t.Fatalf("the follower proposed %v", got)
	}
	got := leader.appliedTypes()
	if len(got) != 2 || got[0] != bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS || got[1] != got[0] {
		t.Fatalf("the leader proposed %v, want one CREATE_ACCOUNTS per call", got)
	}
	for i, body := range sm.bodies {
		if body.Fence != nil || !proto.Equal(sm.fences[i], fence) || len(body.Accounts) != len(accs) {
			t.Fatalf("proposal %d: fence %v in the body, %v in the envelope, %d accounts", i, body.Fence, sm.fences[i], len(body.Accounts))
		}
	}
}

// TestCreateAccountsBeforeEveryNodeIsUpgraded: the leader refuses to propose the new type while
// a server runs an older binary; the client is told which nodes to upgrade.
func TestCreateAccountsBeforeEveryNodeIsUpgraded(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = func(typ bankdv1.CommandType, _ proto.Message, _ *bankdv1.Fence) (proto.Message, error) {
		return nil, fmt.Errorf("apply %s: %w: upgrade n3 (version v0.9.0) first", typ, node.ErrNotUpgraded)
	}
	srv := startFakeServer(t, n, Options{})
	_, err := ledgerClient(srv.url, clientToken).CreateAccounts(context.Background(),
		connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: accountBatch(3)}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "upgrade n3 (version v0.9.0) first") {
		t.Fatalf("got %v, want failed_precondition naming the node to upgrade", err)
	}

	// A state machine that answers the wrong number of results is an internal error, not a
	// success with results missing.
	n.setApply(func(bankdv1.CommandType, proto.Message, *bankdv1.Fence) (proto.Message, error) {
		return &bankdv1.CreateAccountsResponse{Results: []*bankdv1.AccountResult{{Id: "c0", Code: bankdv1.ResultCode_RESULT_CODE_OK}}}, nil
	})
	_, err = ledgerClient(srv.url, clientToken).CreateAccounts(context.Background(),
		connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: accountBatch(3)}))
	if connect.CodeOf(err) != connect.CodeInternal {
		t.Fatalf("one result for three accounts: %v, want internal", err)
	}
}
