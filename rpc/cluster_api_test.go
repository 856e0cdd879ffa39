//lint:file-ignore SA1019 this test checks the v1alpha reflection service that older grpcurl versions still use
package rpc_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/rpc"
)

// ledgerFixture is the set of accounts every API test starts from.
type ledgerFixture struct {
	cash, alice, bob string
}

func createAccounts(t *testing.T, c *apiclient.Clients, prefix string) ledgerFixture {
	t.Helper()
	f := ledgerFixture{cash: prefix + "cash", alice: prefix + "alice", bob: prefix + "bob"}
	for _, a := range []*bankdv1.Account{
		{Id: f.cash, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		{Id: f.alice, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true},
		{Id: f.bob, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true},
	} {
		if _, err := c.Ledger.CreateAccount(context.Background(), connect.NewRequest(&bankdv1.CreateAccountRequest{Account: a})); err != nil {
			t.Fatalf("create account %s: %v", a.Id, err)
		}
	}
	return f
}

func transfer(id, from, to string, amount int64) *bankdv1.Transfer {
	return &bankdv1.Transfer{Id: id, DebitAccountId: from, CreditAccountId: to, Amount: amount, Currency: "BTC"}
}

func mustTransfer(t *testing.T, c *apiclient.Clients, tr *bankdv1.Transfer) *bankdv1.CreateTransferResponse {
	t.Helper()
	var res *connect.Response[bankdv1.CreateTransferResponse]
	retryUnavailable(t, func() (err error) {
		res, err = c.Ledger.CreateTransfer(context.Background(), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: tr}))
		return err
	})
	return res.Msg
}

// TestClusterAPI runs the API against one real three-node cluster; the subtests share it
// because starting a cluster is the expensive part on a small machine.
func TestClusterAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 3})
	leader, follower := c.Leader(), c.Follower()
	onLeader := leader.Clients(testcluster.ClientToken)
	onFollower := follower.Clients(testcluster.ClientToken)
	ctx := context.Background()
	f := createAccounts(t, onFollower, "api-")

	t.Run("a write on a follower is forwarded to the leader", func(t *testing.T) {
		res := mustTransfer(t, onFollower, transfer("fwd-1", f.cash, f.alice, 1000))
		if res.Transfer.GetIndex() == 0 || res.Transfer.GetState() != bankdv1.TransferState_TRANSFER_STATE_POSTED {
			t.Fatalf("transfer = %v", res.Transfer)
		}
	})

	t.Run("a client cannot pass its call off as forwarded", func(t *testing.T) {
		// Bankd-Forwarded from a client (no node certificate) is dropped: the follower still
		// forwards the call instead of answering that it was forwarded to the wrong node.
		req := connect.NewRequest(&bankdv1.GetTransferRequest{Id: "fwd-1"})
		req.Header().Set(rpc.ForwardedHeader, "1")
		res, err := onFollower.Ledger.GetTransfer(ctx, req)
		if err != nil {
			t.Fatalf("a call with a client-written Bankd-Forwarded header: %v", err)
		}
		if res.Msg.Meta.GetServedBy() != leader.ID {
			t.Fatalf("served by %q, want the leader %q", res.Msg.Meta.GetServedBy(), leader.ID)
		}
	})

	t.Run("a linearizable read on a follower is forwarded and sees the last write", func(t *testing.T) {
		w := mustTransfer(t, onLeader, transfer("lin-1", f.cash, f.alice, 1))
		res, err := onFollower.Ledger.GetTransfer(ctx, connect.NewRequest(&bankdv1.GetTransferRequest{Id: "lin-1"}))
		if err != nil {
			t.Fatalf("get transfer: %v", err)
		}
		if res.Msg.Meta.GetServedBy() != leader.ID {
			t.Fatalf("served by %q, want the leader %q", res.Msg.Meta.GetServedBy(), leader.ID)
		}
		if res.Msg.Meta.GetAppliedIndex() < w.Transfer.GetIndex() {
			t.Fatalf("read at index %d, before the write at %d", res.Msg.Meta.GetAppliedIndex(), w.Transfer.GetIndex())
		}
	})

	t.Run("a stale read answers locally with its meta", func(t *testing.T) {
		// A stale read may lag by definition: wait until the follower has applied what the
		// leader has (the accounts), then read there.
		c.WaitApplied(c.Leader().FSM().AppliedIndex())
		res, err := onFollower.Ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{
			Id: f.cash, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE,
		}))
		if err != nil {
			t.Fatalf("stale read: %v", err)
		}
		if res.Msg.Meta.GetServedBy() != follower.ID || res.Msg.Meta.GetAppliedIndex() == 0 {
			t.Fatalf("meta = %v, want served by %s with an applied index", res.Msg.Meta, follower.ID)
		}
	})

	t.Run("insufficient funds is FailedPrecondition with its result code", func(t *testing.T) {
		_, err := onFollower.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
			Transfer: transfer("nsf-1", f.bob, f.alice, 5),
		}))
		if connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("code = %v (%v)", connect.CodeOf(err), err)
		}
		if rpc.ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS {
			t.Fatalf("result code = %v", rpc.ResultCodeOf(err))
		}
	})

	t.Run("a batch reports one result per transfer", func(t *testing.T) {
		res, err := onFollower.Ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
			transfer("batch-1", f.cash, f.bob, 10),
			transfer("batch-2", f.bob, f.alice, 1_000_000),
		}}))
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
		got := []bankdv1.ResultCode{res.Msg.Results[0].GetCode(), res.Msg.Results[1].GetCode()}
		want := []bankdv1.ResultCode{bankdv1.ResultCode_RESULT_CODE_OK, bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS}
		if got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("results = %v, want %v", got, want)
		}
	})

	t.Run("a reused id with another body is AlreadyExists and a replay returns the first result", func(t *testing.T) {
		first := mustTransfer(t, onFollower, transfer("idem-1", f.cash, f.alice, 7))
		replay := mustTransfer(t, onLeader, transfer("idem-1", f.cash, f.alice, 7))
		if !replay.Replayed || replay.Transfer.GetIndex() != first.Transfer.GetIndex() {
			t.Fatalf("replay = %v, first = %v", replay, first)
		}
		_, err := onFollower.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
			Transfer: transfer("idem-1", f.cash, f.alice, 8),
		}))
		if connect.CodeOf(err) != connect.CodeAlreadyExists {
			t.Fatalf("code = %v (%v)", connect.CodeOf(err), err)
		}
	})

	t.Run("a stale fencing token is refused", func(t *testing.T) {
		first, err := onFollower.Lock.Acquire(ctx, connect.NewRequest(&bankdv1.AcquireLockRequest{Name: "acct/" + f.alice, Holder: "worker-1", TtlMs: 10_000}))
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		old := first.Msg.Lock.GetToken()
		if _, err := onFollower.Lock.Release(ctx, connect.NewRequest(&bankdv1.ReleaseLockRequest{Name: "acct/" + f.alice, Holder: "worker-1", Token: old})); err != nil {
			t.Fatalf("release: %v", err)
		}
		second, err := onFollower.Lock.Acquire(ctx, connect.NewRequest(&bankdv1.AcquireLockRequest{Name: "acct/" + f.alice, Holder: "worker-2", TtlMs: 10_000}))
		if err != nil {
			t.Fatalf("acquire again: %v", err)
		}
		if second.Msg.Lock.GetToken() <= old {
			t.Fatalf("new token %d not above old %d", second.Msg.Lock.GetToken(), old)
		}
		_, err = onFollower.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
			Transfer: transfer("fenced-1", f.alice, f.bob, 1),
			Fence:    &bankdv1.Fence{LockName: "acct/" + f.alice, Token: old},
		}))
		if connect.CodeOf(err) != connect.CodeFailedPrecondition || rpc.ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN {
			t.Fatalf("stale fence: %v (result %v)", err, rpc.ResultCodeOf(err))
		}
		// The current token passes.
		mustTransferFenced(t, onFollower, transfer("fenced-2", f.alice, f.bob, 1), &bankdv1.Fence{LockName: "acct/" + f.alice, Token: second.Msg.Lock.GetToken()})
		lock, err := onFollower.Lock.Get(ctx, connect.NewRequest(&bankdv1.GetLockRequest{Name: "acct/" + f.alice}))
		if err != nil || lock.Msg.Lock.GetHolder() != "worker-2" {
			t.Fatalf("get lock = %v, %v", lock, err)
		}
	})

	t.Run("WatchEvents resumes after a disconnect without gap or duplicate", func(t *testing.T) {
		// Everything up to now, in one go from the leader, is the reference.
		want := watchUntil(t, leader.Clients(testcluster.ClientToken), 0, leader.FSM().AppliedIndex())
		if len(want) == 0 {
			t.Fatal("no events")
		}
		// Read half from one node, disconnect, write more, resume from another node.
		half := want[len(want)/2]
		got := watchUntil(t, onFollower, 0, half)
		for i := 0; i < 3; i++ {
			mustTransfer(t, onLeader, transfer(fmt.Sprintf("watch-%d", i), f.cash, f.bob, 1))
		}
		last := leader.FSM().AppliedIndex()
		c.WaitApplied(last)
		other := c.Nodes[0]
		if other == follower {
			other = c.Nodes[1]
		}
		got = append(got, watchUntil(t, other.Clients(testcluster.ClientToken), half+1, last)...)
		want = watchUntil(t, leader.Clients(testcluster.ClientToken), 0, last)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("resumed stream\n got %v\nwant %v", got, want)
		}
	})

	t.Run("every replica has the same state hash at the same index", func(t *testing.T) {
		index := leader.FSM().AppliedIndex()
		c.WaitApplied(index)
		hashes := map[string]bool{}
		for _, n := range c.Nodes {
			res, err := n.Clients(testcluster.AdminToken).Cluster.StateHash(ctx, connect.NewRequest(&bankdv1.StateHashRequest{}))
			if err != nil {
				t.Fatalf("state hash of %s: %v", n.ID, err)
			}
			if res.Msg.AppliedIndex != index || len(res.Msg.Sha256) != 64 {
				t.Fatalf("%s: %v", n.ID, res.Msg)
			}
			hashes[res.Msg.Sha256] = true
		}
		if len(hashes) != 1 {
			t.Fatalf("replicas disagree: %v", hashes)
		}
	})

	t.Run("a plain gRPC client can write, read and see error codes", func(t *testing.T) {
		conn := dialGRPC(t, c, follower.URL)
		authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+testcluster.ClientToken)
		res := &bankdv1.CreateTransferResponse{}
		err := conn.Invoke(authed, "/bankd.v1.LedgerService/CreateTransfer",
			&bankdv1.CreateTransferRequest{Transfer: transfer("grpc-1", f.cash, f.bob, 3)}, res)
		if err != nil || res.Transfer.GetId() != "grpc-1" {
			t.Fatalf("grpc CreateTransfer = %v, %v", res, err)
		}
		acc := &bankdv1.GetAccountResponse{}
		if err := conn.Invoke(authed, "/bankd.v1.LedgerService/GetAccount", &bankdv1.GetAccountRequest{Id: f.bob}, acc); err != nil {
			t.Fatalf("grpc GetAccount: %v", err)
		}
		if acc.Account.GetBalance().GetPosted() <= 0 {
			t.Fatalf("bob = %v", acc.Account)
		}
		var trailer metadata.MD
		err = conn.Invoke(authed, "/bankd.v1.LedgerService/CreateTransfer",
			&bankdv1.CreateTransferRequest{Transfer: transfer("grpc-2", f.bob, f.alice, 1<<40)}, res, grpc.Trailer(&trailer))
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("grpc code = %v (%v)", status.Code(err), err)
		}
		err = conn.Invoke(ctx, "/bankd.v1.LedgerService/GetAccount", &bankdv1.GetAccountRequest{Id: f.bob}, acc)
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("grpc without token: %v", err)
		}
	})

	t.Run("gRPC health reports SERVING without a token", func(t *testing.T) {
		conn := dialGRPC(t, c, follower.URL)
		for _, service := range []string{"", "bankd.v1.LedgerService"} {
			res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
			if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health %q = %v, %v", service, res, err)
			}
		}
	})

	t.Run("reflection lists the services", func(t *testing.T) {
		want := []string{"bankd.v1.ClusterService", "bankd.v1.EventService", "bankd.v1.LedgerService", "bankd.v1.LockService"}
		// v1alpha, as grpcurl asks.
		conn := dialGRPC(t, c, follower.URL)
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatalf("reflection: %v", err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("reflection recv: %v", err)
		}
		var got []string
		for _, s := range res.GetListServicesResponse().GetService() {
			got = append(got, s.GetName())
		}
		_ = stream.CloseSend()
		if !containsAll(got, want) {
			t.Fatalf("v1alpha services = %v, want %v", got, want)
		}
		// v1, as buf curl asks.
		client := grpcreflect.NewClient(c.HTTPClient(), follower.URL)
		rs := client.NewStream(ctx)
		defer rs.Close()
		names, err := rs.ListServices()
		if err != nil {
			t.Fatalf("v1 list services: %v", err)
		}
		got = got[:0]
		for _, n := range names {
			got = append(got, string(n))
		}
		if !containsAll(got, want) {
			t.Fatalf("v1 services = %v, want %v", got, want)
		}
	})

	t.Run("an oversized request is refused cleanly", func(t *testing.T) {
		_, err := onFollower.Ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{{
			Id: "huge", ExternalRef: strings.Repeat("x", rpc.DefaultMaxRequestBytes+1),
		}}}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("code = %v (%v)", connect.CodeOf(err), err)
		}
		if _, err := onFollower.Cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{})); err != nil {
			t.Fatalf("node unwell after an oversized request: %v", err)
		}
	})

	t.Run("operations endpoints serve the node's state and metrics", func(t *testing.T) {
		for path, want := range map[string]string{
			"/healthz": "ok",
			"/readyz":  "ready",
			"/metrics": "bankd_fsm_applied_index",
		} {
			res, err := c.HTTPClient().Get(follower.URL + path)
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				t.Fatalf("GET %s = %d, want %q in:\n%.1500s", path, res.StatusCode, want, body)
			}
			if path == "/metrics" && !strings.Contains(string(body), "bankd_rpc_request_duration_seconds_bucket") {
				t.Fatalf("/metrics lacks the request histogram")
			}
		}
	})

	t.Run("cluster views agree on the leader", func(t *testing.T) {
		// A follower's views follow the cluster's with a delay (gossip, heartbeats), and a loaded
		// machine may see an election at any time: the views must come to agree with the leader
		// every node knows, not with the one captured when the test began.
		var last string
		agree := func() bool {
			want := c.WaitLeader().ID
			res, err := onFollower.Cluster.Leader(ctx, connect.NewRequest(&bankdv1.LeaderRequest{}))
			if err != nil || res.Msg.LeaderId != want || res.Msg.LeaderApiAddr == "" {
				last = fmt.Sprintf("leader = %v, %v (want %s)", res, err, want)
				return false
			}
			members, err := onFollower.Cluster.Members(ctx, connect.NewRequest(&bankdv1.MembersRequest{}))
			if err != nil || len(members.Msg.Members) != 3 {
				last = fmt.Sprintf("members = %v, %v", members, err)
				return false
			}
			st, err := onFollower.Cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
			if err != nil || st.Msg.NodeId != follower.ID || st.Msg.LeaderId != want {
				last = fmt.Sprintf("status = %v, %v (want leader %s)", st, err, want)
				return false
			}
			return true
		}
		for deadline := time.Now().Add(20 * time.Second); !agree(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("a follower's views never agreed with the cluster's leader; last: %s", last)
			}
		}
	})

	t.Run("leadership transfer needs an admin token and is forwarded", func(t *testing.T) {
		_, err := onFollower.Cluster.TransferLeadership(ctx, connect.NewRequest(&bankdv1.TransferLeadershipRequest{TargetNodeId: follower.ID}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("client token: %v", err)
		}
		admin := follower.Clients(testcluster.AdminToken)
		var res *connect.Response[bankdv1.TransferLeadershipResponse]
		retryUnavailable(t, func() (err error) {
			res, err = admin.Cluster.TransferLeadership(ctx, connect.NewRequest(&bankdv1.TransferLeadershipRequest{TargetNodeId: follower.ID}))
			return err
		})
		if res.Msg.NewLeaderId != follower.ID {
			t.Fatalf("new leader = %v", res.Msg)
		}
		if l := c.WaitLeader(); l.ID != follower.ID {
			t.Fatalf("leader is %s, want %s", l.ID, follower.ID)
		}
		// The old leader is a follower now and forwards.
		mustTransfer(t, onLeader, transfer("after-transfer", f.cash, f.bob, 1))
	})
}

// retryUnavailable retries call while it fails with Unavailable (an election on a loaded
// machine), as a client should.
func retryUnavailable(t *testing.T, call func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := call()
		if err == nil {
			return
		}
		if connect.CodeOf(err) != connect.CodeUnavailable || time.Now().After(deadline) {
			t.Fatalf("call failed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustTransferFenced(t *testing.T, c *apiclient.Clients, tr *bankdv1.Transfer, fence *bankdv1.Fence) {
	t.Helper()
	if _, err := c.Ledger.CreateTransfer(context.Background(), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: tr, Fence: fence})); err != nil {
		t.Fatalf("fenced transfer %s: %v", tr.Id, err)
	}
}

// watchUntil streams events from from until it has seen one at or past until and returns
// their indexes.
func watchUntil(t *testing.T, c *apiclient.Clients, from, until uint64) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := c.Event.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: from}))
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer stream.Close()
	var out []uint64
	for stream.Receive() {
		idx := stream.Msg().GetEvent().GetIndex()
		if len(out) > 0 && idx <= out[len(out)-1] {
			t.Fatalf("index %d after %d", idx, out[len(out)-1])
		}
		out = append(out, idx)
		if idx >= until {
			return out
		}
	}
	t.Fatalf("stream ended before index %d: %v", until, stream.Err())
	return nil
}

// dialGRPC dials a node of c with grpc-go over TLS, trusting the cluster CA.
func dialGRPC(t *testing.T, c *testcluster.Cluster, url string) *grpc.ClientConn {
	t.Helper()
	creds, err := credentials.NewClientTLSFromFile(c.Config.TLS.CAFile, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.Dial(strings.TrimPrefix(url, "https://"), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatalf("grpc dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func containsAll(got, want []string) bool {
	set := map[string]bool{}
	for _, g := range got {
		set[g] = true
	}
	for _, w := range want {
		if !set[w] {
			return false
		}
	}
	sort.Strings(got)
	return true
}
