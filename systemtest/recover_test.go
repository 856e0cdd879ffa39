package systemtest

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// TestQuorumLossRecoveredFromTheSurvivor loses two nodes of three for good, recovers the
// survivor with `bankd recover` (a new configuration of itself alone, as peers.json would),
// and requires every acknowledged transfer to be there and writes to work; a replacement node
// with an empty data dir then joins and converges on the same state.
func TestQuorumLossRecoveredFromTheSurvivor(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	leader, cl := leaderClient(t, c)
	createAccount(t, cl, "reserve", asset, false)
	createAccount(t, cl, "alice", liability, false)
	const acked = 30
	for i := range acked {
		if _, err := cl.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer(uniqueID("q", i), "reserve", "alice", 2)})); err != nil {
			t.Fatal(err)
		}
	}
	// The survivor is a follower, so it must win an election it could not win before.
	survivor := followerOf(c, leader)
	if err := c.WaitApplied(ctxFor(t, 30*time.Second), appliedIndex(t, cl)); err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes {
		if i != survivor {
			if err := c.Kill(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.Stop(survivor); err != nil {
		t.Fatal(err)
	}
	id := c.Nodes[survivor].ID
	run := func(args ...string) (string, error) {
		out, err := exec.Command(testcluster.BankdBin(), append([]string{"recover", "-config", c.ConfigPath, "-node", id}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("-survivors", "nx"); err == nil || !strings.Contains(out, "not among the survivors") {
		t.Fatalf("recover without this node: %v\n%s", err, out)
	}
	out, err := run("-survivors", id)
	if err != nil || !strings.Contains(out, "now has the configuration: "+id) {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	if err := c.Restart(survivor); err != nil {
		t.Fatal(err)
	}
	if got, err := c.WaitLeader(ctxFor(t, 30*time.Second)); err != nil || got != survivor {
		t.Fatalf("leader after recovery: %d %v, want %s", got, err, id)
	}
	scl := c.Client(survivor, testcluster.ClientToken)
	if b := balance(t, scl, "alice"); b.Posted != 2*acked {
		t.Fatalf("alice holds %d after recovery, want %d", b.Posted, 2*acked)
	}
	if _, err := scl.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("after", "reserve", "alice", 1)})); err != nil {
		t.Fatalf("a write after recovery: %v", err)
	}

	// A lost node comes back as a new, empty server and is added by the leader.
	lost := (survivor + 1) % len(c.Nodes)
	if err := c.Wipe(lost); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(lost); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, c.Nodes[lost].ID+" to catch up", func() bool {
		resp, err := c.Client(lost, testcluster.ClientToken).Ledger.GetAccount(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.GetAccountRequest{
			Id: "alice", Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE,
		}))
		return err == nil && resp.Msg.Account.Balance.Posted == 2*acked+1
	})
	requireSameStateHash(t, c)
}
