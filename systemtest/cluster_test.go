package systemtest

import (
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
)

const (
	asset     = bankdv1.AccountKind_ACCOUNT_KIND_ASSET
	liability = bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY
)

// TestKilledLeaderLosesNoAcknowledgedTransfer runs writers against every node while the leader
// is SIGKILLed, then checks that every transfer the cluster acknowledged is there, that the
// ledger still balances, and that the restarted node converges to the same state.
func TestKilledLeaderLosesNoAcknowledgedTransfer(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	leader, cl := leaderClient(t, c)
	createAccount(t, cl, "reserve", asset, false)
	customers := []string{"c1", "c2", "c3", "c4"}
	for _, id := range customers {
		createAccount(t, cl, id, liability, false)
	}

	var mu sync.Mutex
	acked := map[string]int64{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ctx.Err() == nil && i < 100_000; i++ {
				node := rng.IntN(len(c.Nodes))
				if !c.Running(node) {
					continue
				}
				id := uniqueID("w"+string(rune('a'+w)), i)
				amount := int64(1 + rng.IntN(1000))
				rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := c.Client(node, testcluster.ClientToken).Ledger.CreateTransfer(rctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
					Transfer: xfer(id, "reserve", customers[rng.IntN(len(customers))], amount),
				}))
				cancel()
				if err == nil {
					mu.Lock()
					acked[id] = amount
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(2 * time.Second)
	t.Logf("SIGKILL leader %s", c.Nodes[leader].ID)
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	newLeader, ncl := leaderClient(t, c)
	if newLeader == leader {
		t.Fatalf("killed node still reported as leader")
	}
	time.Sleep(2 * time.Second)
	stop()
	wg.Wait()
	if len(acked) < 50 {
		t.Fatalf("only %d transfers acknowledged; the test did not exercise anything", len(acked))
	}

	customerTotal, sum := requireAcknowledgedPresent(t, ncl, acked, customers)
	t.Logf("%d acknowledged transfers all present; %d sat in unacknowledged-but-applied transfers", len(acked), customerTotal-sum)

	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitApplied(ctxFor(t, 60*time.Second), appliedIndex(t, ncl)); err != nil {
		t.Fatal(err)
	}
	requireSameStateHash(t, c)
}

// TestRestartedFollowerCatchesUp stops a follower, writes while it is down, restarts it.
func TestRestartedFollowerCatchesUp(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	leader, cl := leaderClient(t, c)
	createAccount(t, cl, "reserve", asset, false)
	createAccount(t, cl, "alice", liability, false)
	f := followerOf(c, leader)
	if err := c.Stop(f); err != nil {
		t.Fatal(err)
	}
	if code := c.ExitCode(f); code != 0 {
		t.Fatalf("follower exited with %d after SIGTERM, want 0", code)
	}
	for i := 0; i < 100; i++ {
		if _, err := cl.Ledger.CreateTransfer(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{
			Transfer: xfer(uniqueID("r", i), "reserve", "alice", 10),
		})); err != nil {
			t.Fatalf("write with a follower down: %v", err)
		}
	}
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitApplied(ctxFor(t, 60*time.Second), appliedIndex(t, cl)); err != nil {
		t.Fatal(err)
	}
	stale, err := c.Client(f, testcluster.ClientToken).Ledger.GetAccount(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.GetAccountRequest{
		Id: "alice", Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if stale.Msg.Account.Balance.Posted != 1000 {
		t.Fatalf("restarted follower's own state shows %d, want 1000", stale.Msg.Account.Balance.Posted)
	}
	requireSameStateHash(t, c)
}

// TestFarBehindNodeCatchesUpBySnapshot keeps a follower down while the leader snapshots and
// truncates its log, so the follower can only catch up through a snapshot install.
func TestFarBehindNodeCatchesUpBySnapshot(t *testing.T) {
	c := startCluster(t, testcluster.Spec{Raft: testcluster.Raft{SnapshotInterval: time.Second, SnapshotThreshold: 50, TrailingLogs: 20}})
	leader, cl := leaderClient(t, c)
	createAccount(t, cl, "reserve", asset, false)
	createAccount(t, cl, "alice", liability, false)
	f := followerOf(c, leader)
	if err := c.Kill(f); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		if _, err := cl.Ledger.CreateTransfer(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{
			Transfer: xfer(uniqueID("s", i), "reserve", "alice", 1),
		})); err != nil {
			t.Fatal(err)
		}
	}
	// Give the leader time to take a snapshot (snapshot_interval is randomised up to 2x) and
	// truncate its log past what the follower has.
	time.Sleep(4 * time.Second)
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitApplied(ctxFor(t, 60*time.Second), appliedIndex(t, cl)); err != nil {
		t.Fatal(err)
	}
	requireSameStateHash(t, c)
	logText, _ := os.ReadFile(c.Nodes[f].LogPath)
	if !strings.Contains(string(logText), "state machine restored from snapshot") {
		t.Fatalf("follower caught up without a snapshot install; the test did not exercise it (see %s)", c.Nodes[f].LogPath)
	}
}

// TestRetryAcrossLeaderChangeAppliesOnce acknowledges a transfer on one leader, kills it, and
// retries the same transfer id on the next: the retry returns the first result.
func TestRetryAcrossLeaderChangeAppliesOnce(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	leader, cl := leaderClient(t, c)
	createAccount(t, cl, "reserve", asset, false)
	createAccount(t, cl, "alice", liability, false)
	req := &bankdv1.CreateTransferRequest{Transfer: xfer("pay-42", "reserve", "alice", 4200)}
	first, err := cl.Ledger.CreateTransfer(ctxFor(t, 5*time.Second), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	_, ncl := leaderClient(t, c)
	retry, err := ncl.Ledger.CreateTransfer(ctxFor(t, 5*time.Second), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("retry on the new leader: %v", err)
	}
	if !retry.Msg.Replayed || retry.Msg.Transfer.Index != first.Msg.Transfer.Index {
		t.Fatalf("retry was not recognised: %v", retry.Msg)
	}
	if b := balance(t, ncl, "alice"); b.Posted != 4200 {
		t.Fatalf("alice has %d after a retried transfer of 4200", b.Posted)
	}
	req.Transfer.Amount = 1
	_, err = ncl.Ledger.CreateTransfer(ctxFor(t, 5*time.Second), connect.NewRequest(req))
	if connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("reused id with another body: %v, want AlreadyExists", err)
	}
}

// TestStaleLockTokenIsRefusedAcrossFailover: a holder whose lease ran out cannot act with its
// old token, even after the leader that granted the new lease is gone.
func TestStaleLockTokenIsRefusedAcrossFailover(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	leader, cl := leaderClient(t, c)
	createAccount(t, cl, "reserve", asset, false)
	createAccount(t, cl, "alice", liability, false)
	acquire := func(cl *apiclient.Clients, holder string) (*bankdv1.Lock, error) {
		resp, err := cl.Lock.Acquire(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.AcquireLockRequest{Name: "account/alice", Holder: holder, TtlMs: 300}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.Lock, nil
	}
	old, err := acquire(cl, "worker-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acquire(cl, "worker-b"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("second holder while the lease runs: %v, want FailedPrecondition", err)
	}
	time.Sleep(400 * time.Millisecond) // the lease runs out in cluster time
	cur, err := acquire(cl, "worker-b")
	if err != nil {
		t.Fatal(err)
	}
	if cur.Token <= old.Token {
		t.Fatalf("new token %d not above old %d", cur.Token, old.Token)
	}
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	_, ncl := leaderClient(t, c)
	_, err = ncl.Ledger.CreateTransfer(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: xfer("fenced", "reserve", "alice", 1),
		Fence:    &bankdv1.Fence{LockName: "account/alice", Token: old.Token},
	}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("write fenced with a stale token: %v, want FailedPrecondition", err)
	}
	if b := balance(t, ncl, "alice"); b.Posted != 0 {
		t.Fatalf("stale-token write moved money: %v", b)
	}
}

// TestGracefulLeaderShutdownHandsOffLeadership: SIGTERM on the leader exits 0 and another node
// leads at once.
func TestGracefulLeaderShutdownHandsOffLeadership(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	leader, _ := leaderClient(t, c)
	start := time.Now()
	if err := c.Stop(leader); err != nil {
		t.Fatal(err)
	}
	if code := c.ExitCode(leader); code != 0 {
		t.Fatalf("leader exited %d after SIGTERM", code)
	}
	next, _ := leaderClient(t, c)
	t.Logf("leadership moved from %s to %s in %s", c.Nodes[leader].ID, c.Nodes[next].ID, time.Since(start))
}
