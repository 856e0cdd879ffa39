package systemtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
)

// startCluster starts spec as bankd processes (skipped with -short) and waits for a leader;
// the processes are killed, and a failed test shows their last log lines, at cleanup.
func startCluster(t testing.TB, spec testcluster.Spec) *testcluster.ProcCluster {
	t.Helper()
	return testcluster.StartProcs(t, spec, testcluster.ProcOptions{})
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createAccount creates an account, retrying while the cluster answers Unavailable (between
// leaders, the request was not applied): a second try of the same definition is a replay.
func createAccount(t testing.TB, cl *apiclient.Clients, id string, kind bankdv1.AccountKind, nonNegative bool) {
	t.Helper()
	retryUnavailable(t, func() (*connect.Response[bankdv1.CreateAccountResponse], error) {
		res, err := cl.Ledger.CreateAccount(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateAccountRequest{
			Account: &bankdv1.Account{Id: id, Currency: "BTC", Kind: kind, NonNegative: nonNegative},
		}))
		if err != nil {
			return nil, fmt.Errorf("create account %s: %w", id, err)
		}
		return res, nil
	})
}

func xfer(id, from, to string, amount int64) *bankdv1.Transfer {
	return &bankdv1.Transfer{Id: id, DebitAccountId: from, CreditAccountId: to, Amount: amount, Currency: "BTC"}
}

func balance(t testing.TB, cl *apiclient.Clients, id string) *bankdv1.Balance {
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
func tryBalance(t testing.TB, cl *apiclient.Clients, id string) (*bankdv1.Balance, error) {
	t.Helper()
	resp, err := cl.Ledger.GetAccount(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.GetAccountRequest{Id: id}))
	if err != nil {
		return nil, fmt.Errorf("get account %s: %w", id, err)
	}
	return resp.Msg.Account.Balance, nil
}

func leaderClient(t testing.TB, c *testcluster.ProcCluster) (int, *apiclient.Clients) {
	t.Helper()
	i, err := c.WaitLeader(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return i, c.Client(i, testcluster.AdminToken)
}

func followerOf(c *testcluster.ProcCluster, leader int) int {
	for i := range c.Nodes {
		if i != leader && c.Running(i) {
			return i
		}
	}
	return -1
}

func requireSameStateHash(t testing.TB, c *testcluster.ProcCluster) {
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

func appliedIndex(t testing.TB, cl *apiclient.Clients) uint64 {
	t.Helper()
	resp, err := cl.Cluster.Status(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.StatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.AppliedIndex
}

func uniqueID(prefix string, i int) string { return fmt.Sprintf("%s-%06d", prefix, i) }

// requireAcknowledgedPresent checks that every acknowledged transfer (id to amount) exists with
// its amount, that the reserve balances the customers, and that the customers hold at least
// what was acknowledged (an unacknowledged transfer may have been applied too). It returns what
// the customers hold and the acknowledged sum.
func requireAcknowledgedPresent(t testing.TB, cl *apiclient.Clients, acked map[string]int64, customers []string) (held, sum int64) {
	t.Helper()
	for id, amount := range acked {
		resp, err := cl.Ledger.GetTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.GetTransferRequest{Id: id}))
		if err != nil {
			t.Fatalf("acknowledged transfer %s: %v", id, err)
		}
		if resp.Msg.Transfer.Amount != amount {
			t.Fatalf("transfer %s: amount %d, acknowledged %d", id, resp.Msg.Transfer.Amount, amount)
		}
		sum += amount
	}
	for _, id := range customers {
		held += balance(t, cl, id).Posted
	}
	if reserve := balance(t, cl, "reserve").Posted; reserve != held {
		t.Fatalf("the ledger does not balance: reserve %d, customers %d", reserve, held)
	}
	if held < sum {
		t.Fatalf("customers hold %d, less than the %d acknowledged", held, sum)
	}
	return held, sum
}
