package systemtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

func accountBatch(prefix string, n int) []*bankdv1.Account {
	accs := make([]*bankdv1.Account, n)
	for i := range accs {
		accs[i] = &bankdv1.Account{Id: uniqueID(prefix, i), Currency: "BTC", Kind: liability, NonNegative: true}
	}
	return accs
}

// TestCreateAccountsThroughRealProcesses creates 8,000 accounts with one CreateAccounts call
// through a follower of a 3-process cluster (one Raft entry), replays them through another
// node, refuses one conflicting definition without refusing the accounts beside it, refuses a
// read token, imports 10,000 more from a file with bin/bankctl (twice: created, then
// replayed), and requires every replica to hold them all at the same state hash.
func TestCreateAccountsThroughRealProcesses(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	leader, admin := leaderClient(t, c)
	follower := followerOf(c, leader)
	accs := accountBatch("bulk", 8000)

	if _, err := c.Client(follower, testcluster.ReadToken).Ledger.CreateAccounts(ctxFor(t, 10*time.Second),
		connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: accs[:2]})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a read token: %v, want permission_denied", err)
	}

	// The leader proposes CREATE_ACCOUNTS once gossip tells it every node applies it: right
	// after the start that may take a moment.
	var (
		resp *connect.Response[bankdv1.CreateAccountsResponse]
		err  error
	)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		start := time.Now()
		resp, err = c.Client(follower, testcluster.ClientToken).Ledger.CreateAccounts(ctxFor(t, 30*time.Second),
			connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: accs}))
		if err == nil {
			t.Logf("8000 accounts created through a follower in %s", time.Since(start).Round(time.Millisecond))
			break
		}
		if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "not seen in gossip") || time.Now().After(deadline) {
			t.Fatalf("create 8000 accounts through %s: %v", c.Nodes[follower].ID, err)
		}
	}
	index := resp.Msg.Results[0].GetAccount().GetCreatedIndex()
	for i, r := range resp.Msg.Results {
		if r.Code != bankdv1.ResultCode_RESULT_CODE_OK || r.Replayed || r.Id != accs[i].Id ||
			r.Account.GetCreatedIndex() != index || r.Account.GetOwner() != bankdv1.Owner_OWNER_CLIENT {
			t.Fatalf("accounts[%d]: %v (the first was created at index %d)", i, r, index)
		}
	}

	// The same batch through the leader: every account replayed, as first created.
	again, err := admin.Ledger.CreateAccounts(ctxFor(t, 30*time.Second), connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: accs}))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again.Msg.Results {
		if r.Code != bankdv1.ResultCode_RESULT_CODE_OK || !r.Replayed || r.Account.GetCreatedIndex() != index {
			t.Fatalf("replay of accounts[%d]: %v", i, r)
		}
	}

	// One account redefined among new ones: refused alone.
	conflict := &bankdv1.Account{Id: accs[5].Id, Currency: "BTC", Kind: liability, NonNegative: false}
	mixed, err := admin.Ledger.CreateAccounts(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateAccountsRequest{
		Accounts: []*bankdv1.Account{{Id: "reserve", Currency: "BTC", Kind: asset}, conflict, {Id: "carol", Currency: "BTC", Kind: liability}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if r := mixed.Msg.Results; r[0].Code != bankdv1.ResultCode_RESULT_CODE_OK || r[2].Code != bankdv1.ResultCode_RESULT_CODE_OK ||
		r[1].Code != bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS || !strings.Contains(r[1].Message, "different definition") {
		t.Fatalf("mixed batch: %v", r)
	}

	// bankctl accounts import: 10,000 accounts in two requests, then the same file again.
	var lines []string
	for i := range 10_000 {
		lines = append(lines, fmt.Sprintf(`{"id":%q,"currency":"BTC","kind":"ACCOUNT_KIND_LIABILITY","metadata":{"source":"import"}}`, uniqueID("file", i)))
	}
	file := filepath.Join(t.TempDir(), "accounts.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := bankctlOn(c, follower, testcluster.ClientToken, "accounts", "import", file)
	if err != nil || !strings.Contains(out, "created:   10000") || !strings.Contains(out, "10000 of 10000 accounts sent") {
		t.Fatalf("bankctl accounts import: %v\n%s", err, out)
	}
	out, err = bankctlOn(c, leader, testcluster.ClientToken, "accounts", "import", file)
	if err != nil || !strings.Contains(out, "replayed:  10000") || !strings.Contains(out, "created:   0") {
		t.Fatalf("bankctl accounts import again: %v\n%s", err, out)
	}

	// Money moves to an imported account; every replica holds the accounts at one state.
	if _, err := admin.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: xfer("to-imported", "reserve", uniqueID("file", 9999), 500),
	})); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitApplied(ctxFor(t, 60*time.Second), appliedIndex(t, admin)); err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes {
		for _, id := range []string{accs[0].Id, accs[7999].Id, uniqueID("file", 0), uniqueID("file", 9999)} {
			r, err := c.Client(i, testcluster.ReadToken).Ledger.GetAccount(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.GetAccountRequest{
				Id: id, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE,
			}))
			if err != nil {
				t.Fatalf("%s on %s: %v", id, c.Nodes[i].ID, err)
			}
			if id == uniqueID("file", 9999) && r.Msg.Account.GetBalance().GetPosted() != 500 {
				t.Fatalf("%s on %s: %v", id, c.Nodes[i].ID, r.Msg.Account)
			}
		}
	}
	requireSameStateHash(t, c)
}
