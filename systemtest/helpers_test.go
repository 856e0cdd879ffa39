package systemtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/proccluster"
)

func startCluster(t *testing.T, opts proccluster.Options) *proccluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process cluster test; skipped with -short")
	}
	opts.Dir = t.TempDir()
	c, err := proccluster.Start(opts)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			dumpLogs(t, c)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("cluster never elected a leader: %v", err)
	}
	return c
}

func dumpLogs(t *testing.T, c *proccluster.Cluster) {
	for _, n := range c.Nodes {
		b, _ := os.ReadFile(n.LogPath)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("--- last log lines of %s (%s):\n%s", n.ID, filepath.Base(n.LogPath), strings.Join(lines, "\n"))
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createAccount(t *testing.T, cl *proccluster.Clients, id string, kind bankdv1.AccountKind, nonNegative bool) {
	t.Helper()
	_, err := cl.Ledger.CreateAccount(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateAccountRequest{
		Account: &bankdv1.Account{Id: id, Currency: "BTC", Kind: kind, NonNegative: nonNegative},
	}))
	if err != nil {
		t.Fatalf("create account %s: %v", id, err)
	}
}

func xfer(id, from, to string, amount int64) *bankdv1.Transfer {
	return &bankdv1.Transfer{Id: id, DebitAccountId: from, CreditAccountId: to, Amount: amount, Currency: "BTC"}
}

func balance(t *testing.T, cl *proccluster.Clients, id string) *bankdv1.Balance {
	t.Helper()
	b, err := tryBalance(t, cl, id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tryBalance reads an account's balance and returns the error instead of failing the test, for
// callers that poll through elections (a restarted node answers Unavailable until it has heard
// from the leader).
func tryBalance(t *testing.T, cl *proccluster.Clients, id string) (*bankdv1.Balance, error) {
	t.Helper()
	resp, err := cl.Ledger.GetAccount(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.GetAccountRequest{Id: id}))
	if err != nil {
		return nil, fmt.Errorf("get account %s: %w", id, err)
	}
	return resp.Msg.Account.Balance, nil
}

func leaderClient(t *testing.T, c *proccluster.Cluster) (int, *proccluster.Clients) {
	t.Helper()
	i, err := c.WaitLeader(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return i, c.Client(i, proccluster.AdminToken)
}

func followerOf(c *proccluster.Cluster, leader int) int {
	for i := range c.Nodes {
		if i != leader && c.Running(i) {
			return i
		}
	}
	return -1
}

func requireSameStateHash(t *testing.T, c *proccluster.Cluster) {
	t.Helper()
	hashes, index, err := c.StateHashes(ctxFor(t, 60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for id, h := range hashes {
		if first == "" {
			first = h
		}
		if h != first {
			t.Fatalf("state hashes differ at index %d: %v", index, hashes)
		}
		_ = id
	}
	if len(hashes) < 2 {
		t.Fatalf("only %d nodes answered", len(hashes))
	}
	t.Logf("%d replicas agree on state hash %s… at index %d", len(hashes), first[:12], index)
}

func appliedIndex(t *testing.T, cl *proccluster.Clients) uint64 {
	t.Helper()
	resp, err := cl.Cluster.Status(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.AppliedIndex
}

func uniqueID(prefix string, i int) string { return fmt.Sprintf("%s-%06d", prefix, i) }
