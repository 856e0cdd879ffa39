package testcluster_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

func createAccount(t *testing.T, c *testcluster.Cluster, id string) uint64 {
	t.Helper()
	_, err := c.ApplyOnLeader(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{
		Account: &bankdv1.Account{Id: id, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}})
	if err != nil {
		t.Fatalf("create account %s: %v", id, err)
	}
	return c.Leader().FSM().AppliedIndex()
}

// The in-process cluster runs real agents that stop, restart with their data, and come back
// wiped as a new Raft server once the old one is removed.
func TestInProcessNodesStopRestartAndWipe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{})
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	createAccount(t, c, "before")

	t.Run("a stopped follower catches up after a restart", func(t *testing.T) {
		f := c.Follower()
		f.Stop()
		if f.Running() {
			t.Fatal("stopped node still running")
		}
		index := createAccount(t, c, "while-down")
		f.Restart()
		c.WaitApplied(index)
		if _, err := f.FSM().Account("while-down"); err != nil {
			t.Fatalf("restarted follower misses the write made while it was down: %v", err)
		}
		c.WaitSameState()
	})

	t.Run("a stopped leader hands leadership over", func(t *testing.T) {
		old := c.Leader()
		old.Stop()
		if next := c.WaitLeader(); next == old {
			t.Fatalf("stopped node %s still leads", old.ID)
		}
		old.Restart()
		c.WaitLeader()
	})

	t.Run("a wiped node rejoins as a new server once its old identity is removed", func(t *testing.T) {
		f := c.Follower()
		oldRaftID := f.Node().RaftID()
		f.Stop()
		f.Wipe()
		if _, err := c.Leader().Node().RemoveNode(context.Background(), oldRaftID); err != nil {
			t.Fatalf("remove %s: %v", oldRaftID, err)
		}
		index := createAccount(t, c, "after-wipe")
		f.Restart()
		if f.Node().RaftID() == oldRaftID {
			t.Fatalf("wiped node kept its Raft id %s", oldRaftID)
		}
		c.WaitApplied(index)
		if _, err := f.FSM().Account("before"); err != nil {
			t.Fatalf("wiped node did not get the state back: %v", err)
		}
		c.WaitSameState()
	})
}

// Clients reach every node with the cluster's tokens; a wrong or under-scoped token is refused.
func TestInProcessClientsUseTheSpecsTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 1, Tokens: testcluster.Tokens{Admin: []string{"adm"}, Client: []string{"cli"}}})
	n := c.Nodes[0]
	ctx := context.Background()
	status := func(token string) error {
		_, err := n.Clients(token).Cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
		return err
	}
	if err := status("cli"); err != nil {
		t.Fatalf("client token: %v", err)
	}
	if err := status(testcluster.ClientToken); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a token the spec does not list: %v, want Unauthenticated", err)
	}
	_, err := n.Clients("cli").Cluster.RemoveNode(ctx, connect.NewRequest(&bankdv1.RemoveNodeRequest{Id: "n1"}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("RemoveNode with a client token: %v, want PermissionDenied", err)
	}
}

// A refusal of the state machine is returned at once, not retried as a leadership change.
func TestApplyOnLeaderReturnsRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 1})
	createAccount(t, c, "a")
	_, err := c.ApplyOnLeader(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{
		Account: &bankdv1.Account{Id: "a", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET}})
	var refused *fsm.Error
	if !errors.As(err, &refused) || refused.Code != bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS {
		t.Fatalf("the same id with another body: %v, want ALREADY_EXISTS", err)
	}
	if !strings.Contains(c.Logs(), "api serving") {
		t.Fatal("the cluster's logs are not kept")
	}
}

// The multi-process cluster: kill -9, pause, graceful stop with exit status 0, restart, and a
// wipe refused while the node runs.
func TestProcessNodesKillPauseStopRestart(t *testing.T) {
	c := testcluster.StartProcs(t, testcluster.Spec{}, testcluster.ProcOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin := c.Client(leader, testcluster.AdminToken)
	if _, err := admin.Ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{
		Account: &bankdv1.Account{Id: "a", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}})); err != nil {
		t.Fatal(err)
	}

	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if c.Running(leader) || c.ExitCode(leader) != -1 {
		t.Fatalf("killed node: running %v, exit %d", c.Running(leader), c.ExitCode(leader))
	}
	if err := c.Wipe((leader + 1) % len(c.Nodes)); err == nil {
		t.Fatal("wiped a running node")
	}
	next, err := c.WaitLeader(ctx)
	if err != nil || next == leader {
		t.Fatalf("after kill -9 of %s: leader %d, %v", c.Nodes[leader].ID, next, err)
	}
	follower := 3 - leader - next
	if err := c.Pause(follower); err != nil {
		t.Fatal(err)
	}
	if !c.Running(follower) {
		t.Fatal("a paused node counts as not running")
	}
	if err := c.Resume(follower); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(leader); err == nil {
		t.Fatal("started a running node twice")
	}
	st, err := c.Client(next, testcluster.ClientToken).Cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitApplied(ctx, st.Msg.AppliedIndex); err != nil {
		t.Fatal(err)
	}
	hashes, index, err := c.StateHashes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hashes) != 3 || hashes["n1"] != hashes["n2"] || hashes["n2"] != hashes["n3"] {
		t.Fatalf("state hashes at %d: %v", index, hashes)
	}

	if err := c.Stop(next); err != nil {
		t.Fatal(err)
	}
	if code := c.ExitCode(next); code != 0 {
		t.Fatalf("graceful stop exited %d, want 0\n%s", code, c.LogTail(next, 20))
	}
	if !strings.Contains(c.LogTail(next, 50), "bankd stopped") {
		t.Fatalf("no clean stop in the log:\n%s", c.LogTail(next, 20))
	}
}
