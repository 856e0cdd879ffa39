package systemtest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/rpc/wire"
)

// TestNonVotersServeStaleReadsAndNeverCountForQuorum runs three voters and two read replicas
// (voter = false) as processes. The replicas serve stale reads with their lag, catch up by
// snapshot after missing more log than the leader keeps, and never make a quorum: with two
// voters down the three processes still up (one voter, two replicas) accept no write.
func TestNonVotersServeStaleReadsAndNeverCountForQuorum(t *testing.T) {
	c := startCluster(t, testcluster.Spec{
		Size:      5,
		NonVoters: 2,
		// A small log: a replica that misses 300 entries must be sent a snapshot.
		Raft: testcluster.Raft{SnapshotInterval: 200 * time.Millisecond, SnapshotThreshold: 64, TrailingLogs: 32},
	})
	const replica, other = 3, 4 // n4 and n5
	leader, cl := leaderClient(t, c)
	if leader >= replica {
		t.Fatalf("non-voter n%d is the leader", leader+1)
	}
	members, err := cl.Cluster.Members(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.MembersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members.Msg.Members {
		want := "voter"
		if m.NodeId == "n4" || m.NodeId == "n5" {
			want = "nonvoter"
		}
		if m.Suffrage != want {
			t.Fatalf("member %s is a %s, want %s", m.NodeId, m.Suffrage, want)
		}
	}

	createAccount(t, cl, "reserve", asset, false)
	createAccount(t, cl, "r", liability, false)
	write := func(id string) uint64 {
		t.Helper()
		resp, err := cl.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer(id, "reserve", "r", 1)}))
		if err != nil {
			t.Fatalf("transfer %s: %v", id, err)
		}
		return resp.Msg.Transfer.Index
	}
	last := write("first")

	// A stale read on a replica, made to wait for the write just acknowledged.
	rc := c.Client(replica, testcluster.ReadToken)
	got := staleBalance(t, rc, "r", last)
	if got.balance != 1 || got.meta.GetServedBy() != "n4" || got.meta.GetAppliedIndex() < last {
		t.Fatalf("stale read on n4 = %d at %v, want 1 served by n4 at index >= %d", got.balance, got.meta, last)
	}

	// The replica misses 300 writes, far more than the 32 entries the leader keeps after a
	// snapshot, and comes back: it is sent a snapshot and catches up.
	if err := c.Stop(replica); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		last = write(uniqueID("missed", i))
	}
	if err := c.Restart(replica); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "n4 to catch up", func() bool {
		b, err := tryStaleBalance(t, rc, "r", last)
		return err == nil && b.balance == 301
	})
	logText, err := os.ReadFile(c.Nodes[replica].LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), "state machine replaced by a snapshot") {
		t.Fatalf("n4 caught up without a snapshot; its log:\n%s", c.LogTail(replica, 40))
	}

	// Two voters down: one voter and two replicas are up, three of five processes, and yet no
	// quorum. Writes stop; the replicas still answer stale reads and say how far behind they are.
	survivor := (leader + 1) % replica
	down := []int{(leader + 2) % replica, leader}
	for _, i := range down {
		if err := c.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	sc := c.Client(survivor, testcluster.AdminToken)
	_, err = sc.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("no-quorum", "reserve", "r", 1)}))
	if err == nil {
		t.Fatal("a write was acknowledged by one voter and two non-voters")
	}
	t.Logf("write with one voter of three: %v", err)
	waitFor(t, 10*time.Second, "n4 to report itself behind the leader it lost", func() bool {
		b, err := tryStaleBalance(t, rc, "r", 0)
		return err == nil && b.balance == 301 && b.meta.GetLagMs() >= 1000
	})
	// One voter back: a quorum of voters, writes resume, and every replica agrees.
	if err := c.Restart(down[0]); err != nil {
		t.Fatal(err)
	}
	_, cl = leaderClient(t, c)
	// The refused write's outcome was unknown: it may sit uncommitted in the survivor's log and
	// commit now. Its resend under the same id settles it, exactly once.
	write("no-quorum")
	last = write("after")
	if b := staleBalance(t, c.Client(other, testcluster.ReadToken), "r", last); b.balance != 303 {
		t.Fatalf("n5 reads %d after the write at index %d, want 303", b.balance, last)
	}
	if err := c.Restart(down[1]); err != nil {
		t.Fatal(err)
	}
	requireSameStateHash(t, c)
}

// TestLeadershipReturnsToThePreferredRegion gives a three-region cluster placement.leader_region
// r1: leadership goes to n1, moves away when n1 is killed, and comes back once n1 has been
// healthy for leader_region_settle (1s here).
func TestLeadershipReturnsToThePreferredRegion(t *testing.T) {
	c := startCluster(t, testcluster.Spec{LeaderRegion: "r1"})
	waitLeaderIs := func(want int, what string) time.Duration {
		t.Helper()
		start := time.Now()
		waitFor(t, 30*time.Second, what, func() bool {
			i, err := c.WaitLeader(ctxFor(t, 5*time.Second))
			return err == nil && i == want
		})
		return time.Since(start)
	}
	waitLeaderIs(0, "leadership to reach n1 in r1")
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	away, cl := leaderClient(t, c)
	if away == 0 {
		t.Fatal("the killed node is still the leader")
	}
	createAccount(t, cl, "while-away", asset, false)
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	back := waitLeaderIs(0, "leadership to return to n1")
	t.Logf("leadership moved to n%d while n1 was down, back on n1 %s after its restart", away+1, back.Round(time.Millisecond))
	if _, err := tryBalance(t, c.Client(0, testcluster.AdminToken), "while-away"); err != nil {
		t.Fatalf("read on the returned leader: %v", err)
	}
}

type staleRead struct {
	balance int64
	meta    *bankdv1.ReadMeta
}

// tryStaleBalance reads an account's posted balance with STALE consistency from the node cl
// talks to, sending minIndex as Bankd-Min-Index when it is not zero.
func tryStaleBalance(t testing.TB, cl *apiclient.Clients, id string, minIndex uint64) (staleRead, error) {
	t.Helper()
	req := connect.NewRequest(&bankdv1.GetAccountRequest{Id: id, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE})
	if minIndex > 0 {
		req.Header().Set(wire.MinIndexHeader, strconv.FormatUint(minIndex, 10))
	}
	resp, err := cl.Ledger.GetAccount(ctxFor(t, 10*time.Second), req)
	if err != nil {
		return staleRead{}, err
	}
	return staleRead{balance: resp.Msg.Account.Balance.Posted, meta: resp.Msg.Meta}, nil
}

func staleBalance(t testing.TB, cl *apiclient.Clients, id string, minIndex uint64) staleRead {
	t.Helper()
	r, err := tryStaleBalance(t, cl, id, minIndex)
	if err != nil {
		t.Fatalf("stale read of %s: %v", id, err)
	}
	return r
}

// TestSuffrageFollowsClusterHCL promotes a read replica to voter and demotes it again by
// editing cluster.hcl and restarting the nodes one by one, as an operator would: the leader
// matches the Raft configuration to the file it started with.
func TestSuffrageFollowsClusterHCL(t *testing.T) {
	c := startCluster(t, testcluster.Spec{NonVoters: 1})
	const replica = 2 // n3
	suffrageOfN3 := func() string {
		_, cl := leaderClient(t, c)
		res, err := cl.Cluster.Members(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.MembersRequest{}))
		if err != nil {
			return err.Error()
		}
		for _, m := range res.Msg.Members {
			if m.NodeId == "n3" {
				return m.Suffrage
			}
		}
		return "absent"
	}
	if got := suffrageOfN3(); got != "nonvoter" {
		t.Fatalf("n3 starts as %s, want nonvoter", got)
	}
	rewrite := func(from, to string) {
		t.Helper()
		text, err := os.ReadFile(c.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), from) {
			t.Fatalf("cluster.hcl has no %q", from)
		}
		if err := os.WriteFile(c.ConfigPath, []byte(strings.Replace(string(text), from, to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rollingRestart := func() {
		t.Helper()
		for i := range c.Nodes {
			if err := c.Stop(i); err != nil {
				t.Fatal(err)
			}
			if err := c.Restart(i); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WaitLeader(ctxFor(t, 30*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	const nonVoterLine = "  voter       = false\n"
	rewrite(nonVoterLine, "")
	rollingRestart()
	waitFor(t, 30*time.Second, "n3 to be promoted to voter", func() bool { return suffrageOfN3() == "voter" })

	rewrite(`data_dir    = "`+c.Nodes[replica].DataDir+"\"\n", `data_dir    = "`+c.Nodes[replica].DataDir+"\"\n"+nonVoterLine)
	rollingRestart()
	waitFor(t, 30*time.Second, "n3 to be demoted to non-voter", func() bool { return suffrageOfN3() == "nonvoter" })
	_, cl := leaderClient(t, c)
	createAccount(t, cl, "after-demotion", asset, false)
	requireSameStateHash(t, c)
}
