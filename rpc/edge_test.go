package rpc

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/node"
)

func TestAuthRefusesMissingInvalidAndUnderScopedTokens(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = okTransfers
	srv := startFakeServer(t, n, Options{})
	ctx := context.Background()

	read := func(token string) error {
		_, err := ledgerClient(srv.url, token).GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{
			Id: "acc", Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE,
		}))
		return err
	}
	write := func(token string) error {
		_, err := ledgerClient(srv.url, token).CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer("t1")}))
		return err
	}
	operate := func(token string) error {
		_, err := clusterClient(srv.url, token).StateHash(ctx, connect.NewRequest(&bankdv1.StateHashRequest{}))
		return err
	}
	administer := func(token string) error {
		_, err := clusterClient(srv.url, token).RemoveNode(ctx, connect.NewRequest(&bankdv1.RemoveNodeRequest{Id: "n3"}))
		return err
	}
	tests := []struct {
		name string
		call func(string) error
		tok  string
		want connect.Code // 0: success
	}{
		{"missing token is unauthenticated", read, "", connect.CodeUnauthenticated},
		{"unknown token is unauthenticated", read, "nope", connect.CodeUnauthenticated},
		{"token prefix is unauthenticated", read, clientToken[:len(clientToken)-1], connect.CodeUnauthenticated},
		{"missing token on an admin procedure is unauthenticated", administer, "", connect.CodeUnauthenticated},

		{"read token may read", read, readToken, connect.CodeNotFound},
		{"read token may not move money", write, readToken, connect.CodePermissionDenied},
		{"read token may not run the bank's machinery", operate, readToken, connect.CodePermissionDenied},
		{"read token may not change the cluster", administer, readToken, connect.CodePermissionDenied},

		{"write token may read", read, clientToken, connect.CodeNotFound},
		{"write token may move money", write, clientToken, 0},
		{"write token may not run the bank's machinery", operate, clientToken, connect.CodePermissionDenied},
		{"write token may not change the cluster", administer, clientToken, connect.CodePermissionDenied},

		{"operator token may read", read, operatorToken, connect.CodeNotFound},
		{"operator token may not move money", write, operatorToken, connect.CodePermissionDenied},
		{"operator token may run the bank's machinery", operate, operatorToken, 0},
		{"operator token may not change the cluster", administer, operatorToken, connect.CodePermissionDenied},

		{"admin token may do everything", administer, adminToken, 0},
		{"admin token may move money", write, adminToken, 0},
		{"admin token may run the bank's machinery", operate, adminToken, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(n.appliedTypes())
			err := tt.call(tt.tok)
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if got := connect.CodeOf(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
			if got := len(n.appliedTypes()); got != before {
				t.Fatalf("a refused call proposed a command")
			}
		})
	}
}

func TestEveryProcedureNeedsAScope(t *testing.T) {
	files := []protoreflect.FileDescriptor{
		bankdv1.File_bankd_v1_ledger_proto, bankdv1.File_bankd_v1_lock_proto, bankdv1.File_bankd_v1_event_proto,
		bankdv1.File_bankd_v1_cluster_proto, bankdv1.File_bankd_v1_wallet_proto, bankdv1.File_bankd_v1_chain_proto,
		bankdv1.File_bankd_v1_lightning_proto, bankdv1.File_bankd_v1_payout_proto, bankdv1.File_bankd_v1_vault_proto,
	}
	listed := 0
	for _, f := range files {
		for i := range f.Services().Len() {
			svc := f.Services().Get(i)
			for j := range svc.Methods().Len() {
				procedure := "/" + string(svc.FullName()) + "/" + string(svc.Methods().Get(j).Name())
				if _, ok := procedureScopes[procedure]; !ok {
					t.Errorf("%s has no scope in procedureScopes: every token would be refused", procedure)
				}
				listed++
			}
		}
	}
	if listed != len(procedureScopes) {
		t.Errorf("procedureScopes lists %d procedures, the services have %d", len(procedureScopes), listed)
	}
}

func TestProposalsCarryTheCallersTokenName(t *testing.T) {
	leader := newFakeNode("n1")
	leader.applyFn = okTransfers
	leaderSrv := startFakeServer(t, leader, Options{})
	follower := newFakeNode("n2")
	follower.setLeader(false, node.LeaderInfo{NodeID: "n1", APIAddr: strings.TrimPrefix(leaderSrv.url, "http://")}, true)
	followerSrv := startFakeServer(t, follower, Options{})

	for _, url := range []string{leaderSrv.url, followerSrv.url} {
		if _, err := ledgerClient(url, clientToken).CreateTransfer(context.Background(),
			connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer("t1")})); err != nil {
			t.Fatal(err)
		}
	}
	// The leader authenticates a forwarded call again and proposes it under the same name.
	if got := leader.proposedBy(); len(got) != 2 || got[0] != "client" || got[1] != "client" {
		t.Fatalf("proposals carried %q, want the token's name twice", got)
	}
}

func TestTokensReloadWithoutARestart(t *testing.T) {
	n := newFakeNode("n1")
	fs := startFakeServer(t, n, Options{})
	stateHash := func(token string) error {
		_, err := clusterClient(fs.url, token).StateHash(context.Background(), connect.NewRequest(&bankdv1.StateHashRequest{}))
		return err
	}
	if err := stateHash(operatorToken); err != nil {
		t.Fatal(err)
	}
	const rotated = "test-operator-token-rotated"
	if err := fs.srv.SetTokens([]node.TokenConfig{{Name: "operator", Scopes: []string{node.ScopeOperator}, SHA256: sha256.Sum256([]byte(rotated))}}); err != nil {
		t.Fatal(err)
	}
	if err := stateHash(operatorToken); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("the replaced token: %v, want Unauthenticated", err)
	}
	if err := stateHash(rotated); err != nil {
		t.Fatalf("the new token: %v", err)
	}
	if err := fs.srv.SetTokens([]node.TokenConfig{{Name: "x", Scopes: []string{"root"}}}); err == nil {
		t.Fatal("a token with an unknown scope was accepted")
	}
	if err := stateHash(rotated); err != nil {
		t.Fatalf("a refused reload must keep the tokens in force: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header string
		token  string
		ok     bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Basic abc", "", false},
		{"Bearer ", "", false},
		{"", "", false},
		{"Bearer " + strings.Repeat("x", maxTokenLen+1), "", false},
	}
	for _, tt := range tests {
		token, ok := bearerToken(tt.header)
		if token != tt.token || ok != tt.ok {
			t.Errorf("bearerToken(%.20q) = %q, %v; want %q, %v", tt.header, token, ok, tt.token, tt.ok)
		}
	}
}

func TestValidationRefusesBadRequestsBeforeProposing(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = okTransfers
	srv := startFakeServer(t, n, Options{})
	ctx := context.Background()
	ledger := ledgerClient(srv.url, adminToken)
	locks := bankdv1connect.NewLockServiceClient(http.DefaultClient, srv.url, bearer(adminToken))

	transferWith := func(mut func(*bankdv1.Transfer)) *bankdv1.Transfer {
		tr := validTransfer("t1")
		mut(tr)
		return tr
	}
	tooMany := make([]*bankdv1.Transfer, fsm.MaxTransfersPerCommand+1)
	for i := range tooMany {
		tooMany[i] = validTransfer("t")
	}
	tests := []struct {
		name  string
		call  func() error
		field string // the message must start with it
	}{
		{"transfer amount must be positive", func() error {
			_, err := ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: transferWith(func(t *bankdv1.Transfer) { t.Amount = 0 })}))
			return err
		}, "transfer.amount: must be > 0"},
		{"transfer is required", func() error {
			_, err := ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{}))
			return err
		}, "transfer: required"},
		{"a single transfer cannot be linked", func() error {
			_, err := ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: transferWith(func(t *bankdv1.Transfer) { t.Linked = true })}))
			return err
		}, "transfer.linked"},
		{"batch item names its position", func() error {
			_, err := ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
				validTransfer("ok"), transferWith(func(t *bankdv1.Transfer) { t.Currency = "btc" }),
			}}))
			return err
		}, "transfers[1].currency"},
		{"empty batch", func() error {
			_, err := ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{}))
			return err
		}, "transfers: at least"},
		{"batch over 8000", func() error {
			_, err := ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: tooMany}))
			return err
		}, "transfers: at most 8000"},
		{"fence needs a token", func() error {
			_, err := ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
				Transfer: validTransfer("t1"), Fence: &bankdv1.Fence{LockName: "acc/a"},
			}))
			return err
		}, "fence.token"},
		{"account kind is required", func() error {
			_, err := ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: &bankdv1.Account{Id: "a", Currency: "BTC"}}))
			return err
		}, "account.kind"},
		{"get account needs an id", func() error {
			_, err := ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{}))
			return err
		}, "id: required"},
		{"page size is bounded", func() error {
			_, err := ledger.ListAccounts(ctx, connect.NewRequest(&bankdv1.ListAccountsRequest{PageSize: fsm.MaxPageSize + 1}))
			return err
		}, "page_size"},
		{"consistency must be known", func() error {
			_, err := ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: "a", Consistency: 9}))
			return err
		}, "consistency"},
		{"lock ttl is bounded", func() error {
			_, err := locks.Acquire(ctx, connect.NewRequest(&bankdv1.AcquireLockRequest{Name: "l", Holder: "h", TtlMs: 1}))
			return err
		}, "ttl_ms"},
		{"lock name charset", func() error {
			_, err := locks.Acquire(ctx, connect.NewRequest(&bankdv1.AcquireLockRequest{Name: "a b", Holder: "h", TtlMs: 1000}))
			return err
		}, "name"},
		{"renew needs the token", func() error {
			_, err := locks.Renew(ctx, connect.NewRequest(&bankdv1.RenewLockRequest{Name: "l", Holder: "h", TtlMs: 1000}))
			return err
		}, "token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			requireInvalidField(t, err, tt.field)
		})
	}
	if got := n.appliedTypes(); len(got) != 0 {
		t.Fatalf("invalid requests were proposed: %v", got)
	}
}

func TestCreateTransferMapsARefusalToItsCode(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = func(bankdv1.CommandType, proto.Message, *bankdv1.Fence) (proto.Message, error) {
		return &bankdv1.CreateTransfersResponse{Results: []*bankdv1.TransferResult{{
			Id: "t1", Code: bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED, Message: "transfer.amount: daily limit",
		}}}, nil
	}
	srv := startFakeServer(t, n, Options{})
	_, err := ledgerClient(srv.url, clientToken).CreateTransfer(context.Background(),
		connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer("t1")}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("code = %v, want failed_precondition", connect.CodeOf(err))
	}
	if ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED {
		t.Fatalf("result code = %v", ResultCodeOf(err))
	}
}

func TestFollowerForwardsWritesAndLinearizableReadsOnce(t *testing.T) {
	leader := newFakeNode("n1")
	leader.applyFn = okTransfers
	leader.state.putAccount(&bankdv1.Account{Id: "acc", Currency: "BTC"})
	leaderSrv := startFakeServer(t, leader, Options{})

	follower := newFakeNode("n2")
	follower.setLeader(false, node.LeaderInfo{NodeID: "n1", APIAddr: strings.TrimPrefix(leaderSrv.url, "http://")}, true)
	followerSrv := startFakeServer(t, follower, Options{})
	ctx := context.Background()
	client := ledgerClient(followerSrv.url, clientToken)

	res, err := client.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer("t1")}))
	if err != nil {
		t.Fatalf("forwarded write: %v", err)
	}
	if res.Msg.Transfer.GetId() != "t1" {
		t.Fatalf("transfer = %v", res.Msg.Transfer)
	}
	if got := follower.appliedTypes(); len(got) != 0 {
		t.Fatalf("follower applied %v", got)
	}
	if got := leader.appliedTypes(); len(got) != 1 {
		t.Fatalf("leader applied %v", got)
	}

	acc, err := client.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: "acc"}))
	if err != nil {
		t.Fatalf("forwarded read: %v", err)
	}
	if acc.Msg.Meta.GetServedBy() != "n1" {
		t.Fatalf("linearizable read served by %q, want the leader", acc.Msg.Meta.GetServedBy())
	}

	stale, err := client.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: "acc", Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("stale read on follower without the account: %v %v", stale, err)
	}

	// An error from the leader keeps its code and result code through the hop.
	_, err = client.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: &bankdv1.Account{
		Id: "x", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET,
	}}))
	if err != nil {
		t.Fatalf("forwarded create account: %v", err)
	}
	leader.setApply(func(bankdv1.CommandType, proto.Message, *bankdv1.Fence) (proto.Message, error) {
		return nil, &fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN, Message: "fence: stale"}
	})
	_, err = client.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: validTransfer("t2"), Fence: &bankdv1.Fence{LockName: "l", Token: 3},
	}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN {
		t.Fatalf("forwarded refusal = %v (result %v)", err, ResultCodeOf(err))
	}

	// A forwarded call that lands on a non-leader is not forwarded again.
	third := newFakeNode("n3")
	third.setLeader(false, node.LeaderInfo{NodeID: "n2", APIAddr: strings.TrimPrefix(followerSrv.url, "http://")}, true)
	thirdSrv := startFakeServer(t, third, Options{})
	follower.setLeader(false, node.LeaderInfo{NodeID: "n3", APIAddr: strings.TrimPrefix(thirdSrv.url, "http://")}, true)
	_, err = client.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer("t3")}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "forwarded") {
		t.Fatalf("double forward: %v", err)
	}
	if got := third.appliedTypes(); len(got) != 0 {
		t.Fatalf("third node applied %v", got)
	}

	// No known leader: Unavailable, retryable.
	follower.setLeader(false, node.LeaderInfo{}, false)
	_, err = client.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer("t4")}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "retry") {
		t.Fatalf("no leader: %v", err)
	}
}

func TestForwardToAnUnreachableLeaderIsUnavailable(t *testing.T) {
	follower := newFakeNode("n2")
	follower.setLeader(false, node.LeaderInfo{NodeID: "n1", APIAddr: "127.0.0.1:1"}, true)
	srv := startFakeServer(t, follower, Options{})
	_, err := ledgerClient(srv.url, clientToken).CreateTransfer(context.Background(),
		connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer("t1")}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "n1") {
		t.Fatalf("err = %v", err)
	}
	// Nothing was sent (the dial failed), so the caller learns the write was not applied
	// rather than that its outcome is unknown.
	if !strings.Contains(err.Error(), "not applied") || strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("a write that never left the follower must be reported as not applied: %v", err)
	}
}

// dyingLeader accepts connections, reads what the follower sends and then resets the
// connection, as the socket of a leader killed mid-call does.
func dyingLeader(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Read(buf) // the request reached the "leader": its outcome is unknown
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // close with RST
			}
			_ = c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestForwardBrokenByADyingLeaderIsUnavailable(t *testing.T) {
	follower := newFakeNode("n2")
	follower.setLeader(false, node.LeaderInfo{NodeID: "n1", APIAddr: dyingLeader(t)}, true)
	srv := startFakeServer(t, follower, Options{})
	client := ledgerClient(srv.url, clientToken)

	_, err := client.CreateTransfer(context.Background(),
		connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer("t1")}))
	if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("write through a dying leader = %v, want Unavailable with outcome unknown", err)
	}
	_, err = client.GetAccount(context.Background(), connect.NewRequest(&bankdv1.GetAccountRequest{Id: "acc"}))
	if connect.CodeOf(err) != connect.CodeUnavailable || strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("read through a dying leader = %v, want Unavailable, safe to retry", err)
	}
}

func TestOnlyTheCallersOwnContextGivesCanceled(t *testing.T) {
	leader := node.LeaderInfo{NodeID: "n1", APIAddr: "127.0.0.1:1"}
	reset := connect.NewError(connect.CodeCanceled, errors.New("read: connection reset by peer"))
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		want connect.Code
		// wantEdge is what the edge makes of a handler's Canceled: kept when the caller gave up.
		wantEdge connect.Code
	}{
		{"the leader's connection reset while the caller waits", context.Background(), connect.CodeUnavailable, connect.CodeUnavailable},
		{"the caller cancelled", canceled, connect.CodeCanceled, connect.CodeCanceled},
		{"the caller's deadline passed", expired, connect.CodeDeadlineExceeded, connect.CodeCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := connect.CodeOf(forwardError(tt.ctx, reset, leader, false)); got != tt.want {
				t.Fatalf("forwardError: code %v, want %v", got, tt.want)
			}
			spec := connect.Spec{Procedure: bankdv1connect.LedgerServiceCreateTransferProcedure}
			if got := unlessCallerGaveUp(tt.ctx, spec, connect.NewError(connect.CodeCanceled, context.Canceled)); got.Code() != tt.wantEdge {
				t.Fatalf("edge: code %v, want %v", got.Code(), tt.wantEdge)
			}
		})
	}
}

func TestWatchEventsFollowsAndResumesWithoutGapOrDuplicate(t *testing.T) {
	n := newFakeNode("n1")
	for i := uint64(1); i <= 600; i += 2 { // odd indexes only: not every index has an event
		n.state.appendEvent(i)
	}
	srv := startFakeServer(t, n, Options{})
	events := bankdv1connect.NewEventServiceClient(http.DefaultClient, srv.url, bearer(clientToken))

	collect := func(from uint64, until uint64) uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := events.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: from}))
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		defer stream.Close()
		want := from
		if want%2 == 0 {
			want++
		}
		var last uint64
		for stream.Receive() {
			got := stream.Msg().GetEvent().GetIndex()
			if got != want {
				t.Fatalf("event %d, want %d", got, want)
			}
			last, want = got, got+2
			if got >= until {
				return last
			}
		}
		t.Fatalf("stream ended: %v", stream.Err())
		return 0
	}
	last := collect(0, 301)
	if last != 301 {
		t.Fatalf("last = %d", last)
	}
	// Disconnected; resume at last+1 and follow events that commit later.
	go func() {
		time.Sleep(50 * time.Millisecond)
		for i := uint64(601); i <= 611; i += 2 {
			n.state.appendEvent(i)
		}
	}()
	if last := collect(last+1, 611); last != 611 {
		t.Fatalf("last = %d", last)
	}
}

func TestWatchEventsEndsWhenTheServerStops(t *testing.T) {
	n := newFakeNode("n1")
	srv := startFakeServer(t, n, Options{})
	events := bankdv1connect.NewEventServiceClient(http.DefaultClient, srv.url, bearer(clientToken))
	stream, err := events.WatchEvents(context.Background(), connect.NewRequest(&bankdv1.WatchEventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	time.AfterFunc(50*time.Millisecond, srv.srv.Stop)
	for stream.Receive() {
	}
	if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
		t.Fatalf("stream err = %v, want unavailable", stream.Err())
	}
}

func TestOversizedRequestIsRefusedCleanly(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = okTransfers
	srv := startFakeServer(t, n, Options{MaxRequestBytes: 1 << 10})
	_, err := ledgerClient(srv.url, clientToken).CreateTransfer(context.Background(), connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: &bankdv1.Transfer{Id: "t1", ExternalRef: strings.Repeat("x", 4<<10)},
	}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("code = %v (%v), want resource_exhausted", connect.CodeOf(err), err)
	}
	// The server is still fine.
	if _, err := clusterClient(srv.url, clientToken).Status(context.Background(), connect.NewRequest(&bankdv1.StatusRequest{})); err != nil {
		t.Fatalf("status after oversized request: %v", err)
	}
}

func TestOperationsEndpoints(t *testing.T) {
	n := newFakeNode("n1")
	srv := startFakeServer(t, n, Options{})
	get := func(path string) (int, string) {
		res, err := http.Get(srv.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	// One call so the histogram has a series.
	_, _ = clusterClient(srv.url, clientToken).Status(context.Background(), connect.NewRequest(&bankdv1.StatusRequest{}))

	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d", code)
	}
	n.mu.Lock()
	n.ready = errors.New("no leader")
	n.mu.Unlock()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no leader") {
		t.Errorf("/readyz not ready = %d %q", code, body)
	}
	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, `bankd_rpc_request_duration_seconds_count{code="ok",procedure="/bankd.v1.ClusterService/Status"} 1`) {
		t.Errorf("/metrics = %d, missing the request histogram:\n%.2000s", code, body)
	}
}

func TestEveryProtocolIsServed(t *testing.T) {
	n := newFakeNode("n1")
	srv := startFakeServer(t, n, Options{})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &p}}
	tests := []struct {
		name string
		hc   *http.Client
		opts []connect.ClientOption
	}{
		{"connect proto", http.DefaultClient, nil},
		{"connect json", http.DefaultClient, []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect get", http.DefaultClient, []connect.ClientOption{connect.WithHTTPGet()}},
		{"grpc over h2c", h2c, []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web over http/1.1", http.DefaultClient, []connect.ClientOption{connect.WithGRPCWeb()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := bankdv1connect.NewClusterServiceClient(tt.hc, srv.url, append(tt.opts, bearer(clientToken))...)
			res, err := c.Status(context.Background(), connect.NewRequest(&bankdv1.StatusRequest{}))
			if err != nil || res.Msg.NodeId != "n1" {
				t.Fatalf("status = %v, %v", res, err)
			}
			// Refusals carry their result code in every protocol.
			l := bankdv1connect.NewLedgerServiceClient(tt.hc, srv.url, append(tt.opts, bearer(clientToken))...)
			_, err = l.GetAccount(context.Background(), connect.NewRequest(&bankdv1.GetAccountRequest{}))
			if ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT {
				t.Fatalf("refusal = %v (result %v)", err, ResultCodeOf(err))
			}
		})
	}
}

func TestEventStreamsAreBounded(t *testing.T) {
	n := newFakeNode("n1")
	srv := startFakeServer(t, n, Options{MaxEventStreams: 1})
	events := bankdv1connect.NewEventServiceClient(http.DefaultClient, srv.url, bearer(clientToken))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := events.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := events.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{}))
	if err == nil {
		for second.Receive() {
		}
		err = second.Err()
		second.Close()
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("second stream: %v, want resource_exhausted", err)
	}
}

// A leader on an older binary answers a call it does not know with a 404: the follower says so
// (unimplemented, nothing applied) instead of "outcome unknown".
func TestForwardToALeaderWithoutTheProcedureIsUnimplemented(t *testing.T) {
	old := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go old.Serve(ln)
	t.Cleanup(func() { old.Close() })
	client := bankdv1connect.NewClusterServiceClient(http.DefaultClient, "http://"+ln.Addr().String())
	_, callErr := client.Compact(context.Background(), connect.NewRequest(&bankdv1.CompactClusterRequest{KeepIndexes: 1}))
	leader := node.LeaderInfo{NodeID: "n3", APIAddr: ln.Addr().String()}
	got := forwardError(context.Background(), callErr, leader, false)
	if connect.CodeOf(got) != connect.CodeUnimplemented || !strings.Contains(got.Error(), "older bankd") {
		t.Fatalf("forwardError(%v) = %v, want unimplemented naming an older bankd", callErr, got)
	}
}

// requireInvalidField checks that err refuses a request as invalid_argument (result code
// INVALID_ARGUMENT too) with a message that starts by naming field.
func requireInvalidField(t *testing.T, err error, field string) {
	t.Helper()
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("code = %v (%v), want invalid_argument", connect.CodeOf(err), err)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || !strings.HasPrefix(ce.Message(), field) {
		t.Fatalf("message of %v does not start with %q", err, field)
	}
	if ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT {
		t.Fatalf("result code = %v", ResultCodeOf(err))
	}
}
