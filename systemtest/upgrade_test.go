package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
)

// compactBit is COMPACT in a member's command_types: the command type the current release adds
// over the previous one (PREVIOUS_RELEASE in the Makefile).
const compactBit = uint64(1) << uint(bankdv1.CommandType_COMMAND_TYPE_COMPACT)

// TestRollingUpgradeUnderLoad starts three nodes on the previous release and, while a writer
// keeps transferring, upgrades them one by one to this tree's bankd (SIGTERM, restart on the
// same data dir with the new binary, wait until it has caught up), followers first and the
// leader last. COMPACT, CREATE_ACCOUNTS and BOOK_ADJUSTMENT, the new command types, are refused
// until every node runs the new binary: the old leader does not know their RPCs at all, a new leader answers
// failed_precondition naming exactly the nodes still to upgrade. Then they apply, the leader
// switches every replica to the newest stored format, and nothing acknowledged was lost.
//
// Then a downgrade: a follower stopped after the upgrade and started again on the previous
// release meets, in the log it catches up on, a COMPACT committed while it was down; it stops
// (exit status 2, "upgrade this node") instead of applying around it, the other two keep
// serving, and on the new binary again it catches up to the same state.
func TestRollingUpgradeUnderLoad(t *testing.T) {
	prev := testcluster.PrevBankdBin()
	if prev == "" {
		t.Skip("no previous release binary: set BANKD_PREV_BIN or run `make prev` (make test does)")
	}
	cur := testcluster.BankdBin()
	c := testcluster.StartProcs(t, testcluster.Spec{}, testcluster.ProcOptions{Bin: prev})
	leader, admin := leaderClient(t, c)
	createAccount(t, admin, "reserve", asset, false)
	customers := []string{"c1", "c2", "c3"}
	for _, id := range customers {
		createAccount(t, admin, id, liability, false)
	}
	oldVersion := requireVersions(t, c, leader, "", false)

	w := startTransfers(c, "reserve", customers)
	defer w.stop()
	old := map[int]bool{0: true, 1: true, 2: true}
	// Every node runs the old release: its leader has no Compact RPC.
	requireGate(t, c, old)

	// Followers first, the leader last.
	var order []int
	for i := range c.Nodes {
		if i != leader {
			order = append(order, i)
		}
	}
	order = append(order, leader)
	for _, i := range order {
		before := w.acked()
		start := time.Now()
		if err := c.Stop(i); err != nil {
			t.Fatal(err)
		}
		if code := c.ExitCode(i); code != 0 {
			t.Fatalf("%s exited %d on SIGTERM, want 0", c.Nodes[i].ID, code)
		}
		// Down, it is still old as far as the cluster knows (its last gossip says so).
		requireGate(t, c, old)
		c.SetBin(i, cur)
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
		waitCaughtUp(t, c)
		delete(old, i)
		if len(old) > 0 {
			requireGate(t, c, old)
		}
		t.Logf("%s upgraded in %s; %d transfers acknowledged meanwhile", c.Nodes[i].ID, time.Since(start).Round(time.Millisecond), w.acked()-before)
		if w.acked() == before {
			t.Fatalf("no transfer acknowledged while %s was upgraded: the cluster stopped serving", c.Nodes[i].ID)
		}
	}

	// Every node runs the new binary: COMPACT is usable once gossip carries the last one's types.
	done := compactUntilAccepted(t, c)
	t.Logf("first COMPACT: horizon %d, %d events and %d history keys dropped", done.HorizonIndex, done.EventsDeleted, done.HistoryDeleted)
	if done.EventsDeleted == 0 {
		t.Fatal("the first COMPACT dropped nothing: no COMPACT command reached the log")
	}
	// And so is CREATE_ACCOUNTS: the accounts the gate refused are created now.
	_, admin = leaderClient(t, c)
	created, err := admin.Ledger.CreateAccounts(ctxFor(t, 10*time.Second), createAccountsRequest())
	if err != nil {
		t.Fatalf("create accounts after the upgrade: %v", err)
	}
	for _, r := range created.Msg.Results {
		if r.Code != bankdv1.ResultCode_RESULT_CODE_OK || r.Replayed {
			t.Fatalf("create accounts after the upgrade: %v (replayed: a refused call was applied)", r)
		}
	}
	leader, _ = leaderClient(t, c)
	if v := requireVersions(t, c, leader, oldVersion, true); v == oldVersion {
		t.Fatalf("every node still reports version %s after the upgrade", v)
	}
	// The leader switches every replica to the newest stored format now that all read it.
	// (Waited for here, so that the downgrade below meets the COMPACT, not the switch.)
	waitStoredFormat(t, c, fsm.LatestFormat)

	// A downgrade: a follower stops, a COMPACT commits while it is down (its last gossip said it
	// applies COMPACT), and it comes back on the old binary.
	f := followerOf(c, leader)
	if err := c.Stop(f); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a transfer acknowledged with "+c.Nodes[f].ID+" down", w.ackedSince(w.acked()))
	done = compact(t, c, leader)
	if done.EventsDeleted == 0 {
		t.Fatal("the COMPACT made while the follower was down dropped nothing")
	}
	c.SetBin(f, prev)
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	code, err := c.WaitExit(ctxFor(t, 60*time.Second), f)
	if err != nil {
		t.Fatalf("%s on the previous release did not stop at the COMPACT in its log: %v", c.Nodes[f].ID, err)
	}
	logText, _ := os.ReadFile(c.Nodes[f].LogPath)
	fatal := lastLineWith(string(logText), "upgrade this node")
	if code != 2 || !strings.Contains(fatal, fmt.Sprintf("unknown command type %d", bankdv1.CommandType_COMMAND_TYPE_COMPACT)) {
		t.Fatalf("downgraded %s exited %d, want 2 with a log line that says to upgrade it; that line: %q", c.Nodes[f].ID, code, fatal)
	}
	t.Logf("downgraded %s stopped with exit status 2: %s", c.Nodes[f].ID, fatal)
	waitFor(t, 10*time.Second, "a transfer acknowledged by the two others", w.ackedSince(w.acked()))

	// Back on the new binary it applies the COMPACT it stopped at and catches up.
	c.SetBin(f, cur)
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, c)

	// And BOOK_ADJUSTMENT reaches the state machine, which answers for its state: this cluster
	// has no pool node to adjust. (Only now: a node downgraded after it would stop at it rather
	// than at the COMPACT the downgrade above is about.)
	// The leader gates on what each node advertises: wait until it has heard the restarted
	// node's new binary (its last word was the old one's, just before it stopped).
	leader, admin = leaderClient(t, c)
	requireVersions(t, c, leader, oldVersion, true)
	if err := gatedCalls[2].call(t, admin); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("book adjustment after the upgrade: %v, want the state machine's not_found", err)
	}
	// So do DECLARE_LND_LOST and RESOLVE_LOST_PAYMENT: no such pool node, no such payment.
	for _, gated := range gatedCalls[3:] {
		if err := gated.call(t, admin); connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("%s after the upgrade: %v, want the state machine's not_found", gated.name, err)
		}
	}
	w.stop()
	w.requireAllPresent(t, c)
	requireSameStateHash(t, c)
	// What retention kept of each history, grouped per account and command since the switch,
	// reads through the API as one unbroken chain up to the balance.
	for _, id := range append([]string{"reserve"}, customers...) {
		requireHistoryChains(t, admin, id)
	}

	// A node on the previous release may not join the switched store even with a fresh data
	// dir: it would restore the grouped history and read it as missing.
	leader, admin = leaderClient(t, c)
	f = followerOf(c, leader)
	if err := c.Stop(f); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Cluster.RemoveNode(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.RemoveNodeRequest{Id: c.Nodes[f].ID})); err != nil {
		t.Fatalf("remove %s: %v", c.Nodes[f].ID, err)
	}
	if err := c.Wipe(f); err != nil {
		t.Fatal(err)
	}
	c.SetBin(f, prev)
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	refusal := fmt.Sprintf("node reads stored formats up to %d but the store is in format %d", fsm.FormatBaseline, fsm.LatestFormat)
	waitFor(t, 60*time.Second, "the leader to refuse to add "+c.Nodes[f].ID+" on the previous release", func() bool {
		for i, n := range c.Nodes { // whichever node leads by then
			logText, _ := os.ReadFile(n.LogPath)
			if i != f && strings.Contains(lastLineWith(string(logText), refusal), "member="+c.Nodes[f].ID) {
				return true
			}
		}
		return false
	})
	members, err := admin.Cluster.Members(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.MembersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members.Msg.Members {
		if m.NodeId == c.Nodes[f].ID && m.Suffrage != "" && m.GossipState != "unknown" {
			t.Fatalf("%s on the previous release is a %s of the switched cluster", m.NodeId, m.Suffrage)
		}
	}
	// On the current release, with a fresh data dir again, it joins and catches up.
	if err := c.Stop(f); err != nil {
		t.Fatal(err)
	}
	if err := c.Wipe(f); err != nil {
		t.Fatal(err)
	}
	c.SetBin(f, cur)
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, c)
	requireSameStateHash(t, c)
}

// waitStoredFormat waits until every node reports the stored format want.
func waitStoredFormat(t *testing.T, c *testcluster.ProcCluster, want uint32) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("every node in stored format %d", want), func() bool {
		for i := range c.Nodes {
			st, err := c.Client(i, testcluster.AdminToken).Cluster.Status(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.StatusRequest{}))
			if err != nil || st.Msg.StoredFormat != want {
				return false
			}
		}
		return true
	})
	t.Logf("every node is in stored format %d", want)
}

// requireHistoryChains reads an account's whole history through the API, in pages, and
// requires it to be one unbroken chain: each entry's balance after is the one before it plus
// its deltas, and the last is the account's balance now. Retention dropped the oldest entries,
// so the chain starts at the first one kept.
func requireHistoryChains(t *testing.T, cl *apiclient.Clients, id string) {
	t.Helper()
	totals := func(b *bankdv1.Balance) [4]int64 {
		return [4]int64{b.GetDebitsPosted(), b.GetCreditsPosted(), b.GetDebitsPending(), b.GetCreditsPending()}
	}
	var last *[4]int64
	entries, token := 0, ""
	for page := 0; ; page++ {
		if page > 10_000 {
			t.Fatalf("history of %s never ended", id)
		}
		resp, err := cl.Ledger.ListAccountHistory(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.ListAccountHistoryRequest{
			AccountId: id, PageSize: 97, PageToken: token, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		for _, e := range resp.Msg.Entries {
			after := totals(e.BalanceAfter)
			if last != nil {
				want := *last
				want[0] += e.DebitsPostedDelta
				want[1] += e.CreditsPostedDelta
				want[2] += e.DebitsPendingDelta
				want[3] += e.CreditsPendingDelta
				if after != want {
					t.Fatalf("%s: history entry %d (index %d) has totals %v after, the entry before and its deltas say %v", id, entries, e.Index, after, want)
				}
			}
			last = &after
			entries++
		}
		if token = resp.Msg.NextPageToken; token == "" {
			break
		}
	}
	acc, err := cl.Ledger.GetAccount(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.GetAccountRequest{
		Id: id, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
	if err != nil {
		t.Fatal(err)
	}
	if last == nil || *last != totals(acc.Msg.Account.Balance) {
		t.Fatalf("%s: %d history entries end at %v, the balance is %v", id, entries, last, acc.Msg.Account.Balance)
	}
	t.Logf("%s: %d history entries chain up to its balance", id, entries)
}

// transfers is a background writer: reserve -> a random customer, 1-100 sat, against random
// running nodes; it records what the cluster acknowledged.
type transfers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	ok   map[string]int64
	errs int
}

func startTransfers(c *testcluster.ProcCluster, from string, to []string) *transfers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &transfers{cancel: cancel, ok: map[string]int64{}}
	for g := range 3 {
		w.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 12))
			for i := 0; ctx.Err() == nil; i++ {
				node := rng.IntN(len(c.Nodes))
				if !c.Running(node) {
					continue
				}
				id := uniqueID(fmt.Sprintf("up%d", g), i)
				amount := int64(1 + rng.IntN(100))
				rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := c.Client(node, testcluster.ClientToken).Ledger.CreateTransfer(rctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
					Transfer: xfer(id, from, to[rng.IntN(len(to))], amount),
				}))
				rcancel()
				w.mu.Lock()
				if err == nil {
					w.ok[id] = amount
				} else {
					w.errs++
				}
				w.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // a node on its way down or up
				}
			}
		})
	}
	return w
}

func (w *transfers) stop() {
	w.cancel()
	w.wg.Wait()
}

func (w *transfers) acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ok)
}

// ackedSince is a condition for waitFor: more than n transfers acknowledged.
func (w *transfers) ackedSince(n int) func() bool {
	return func() bool { return w.acked() > n }
}

// requireAllPresent checks, after stop, that every acknowledged transfer exists with its amount
// and that the ledger balances.
func (w *transfers) requireAllPresent(t *testing.T, c *testcluster.ProcCluster) {
	t.Helper()
	_, cl := leaderClient(t, c)
	requireAcknowledgedPresent(t, cl, w.ok, []string{"c1", "c2", "c3"})
	t.Logf("%d acknowledged transfers all present (%d refused or unknown); the ledger balances", len(w.ok), w.errs)
}

// waitCaughtUp waits until every running node has applied what the leader had applied.
func waitCaughtUp(t *testing.T, c *testcluster.ProcCluster) {
	t.Helper()
	_, cl := leaderClient(t, c)
	if err := c.WaitApplied(ctxFor(t, 60*time.Second), appliedIndex(t, cl)); err != nil {
		t.Fatal(err)
	}
}

// compactRequest drops the events and account history of all but the newest index: it never
// touches balances or transfers, which the test checks at the end.
func compactRequest() *connect.Request[bankdv1.CompactClusterRequest] {
	return connect.NewRequest(&bankdv1.CompactClusterRequest{KeepIndexes: 1})
}

// compact asks node i for a compaction and fails the test unless it applies.
func compact(t *testing.T, c *testcluster.ProcCluster, i int) *bankdv1.Compaction {
	t.Helper()
	resp, err := c.Client(i, testcluster.AdminToken).Cluster.Compact(ctxFor(t, 30*time.Second), compactRequest())
	if err != nil {
		t.Fatalf("compact through %s: %v", c.Nodes[i].ID, err)
	}
	return resp.Msg.Compaction
}

// compactUntilAccepted retries Compact while the leader says some node has not advertised
// COMPACT yet (gossip takes a moment to carry a restarted node's types).
func compactUntilAccepted(t *testing.T, c *testcluster.ProcCluster) *bankdv1.Compaction {
	t.Helper()
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		leader, _ := leaderClient(t, c)
		resp, err := c.Client(leader, testcluster.AdminToken).Cluster.Compact(ctxFor(t, 30*time.Second), compactRequest())
		if err == nil {
			return resp.Msg.Compaction
		}
		if code := connect.CodeOf(err); code != connect.CodeFailedPrecondition && code != connect.CodeUnavailable {
			t.Fatalf("compact after the upgrade: %v", err)
		}
		last = err
	}
	t.Fatalf("compact still refused 30s after every node runs the new binary: %v", last)
	return nil
}

// gatedCalls are the calls of the command types the current release adds over the previous
// one: COMPACT (ClusterService.Compact), CREATE_ACCOUNTS (LedgerService.CreateAccounts),
// BOOK_ADJUSTMENT (LedgerService.BookAdjustment), DECLARE_LND_LOST and RESOLVE_LOST_PAYMENT
// (LightningService.DeclareNodeLost, ResolveLostPayment).
var gatedCalls = []struct {
	name string
	call func(t *testing.T, cl *apiclient.Clients) error
}{
	{"compact", func(t *testing.T, cl *apiclient.Clients) error {
		_, err := cl.Cluster.Compact(ctxFor(t, 10*time.Second), compactRequest())
		return err
	}},
	{"create accounts", func(t *testing.T, cl *apiclient.Clients) error {
		_, err := cl.Ledger.CreateAccounts(ctxFor(t, 10*time.Second), createAccountsRequest())
		return err
	}},
	// BOOK_ADJUSTMENT (LedgerService.BookAdjustment): the cluster has no pool node, so once the
	// gate lets it through the state machine refuses it (not_found), which the loop does not take
	// for a refusal by the gate.
	{"book adjustment", func(t *testing.T, cl *apiclient.Clients) error {
		_, err := cl.Ledger.BookAdjustment(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.BookAdjustmentRequest{
			Id: "gated-adj", AccountId: "ln:pool-1", AmountSat: 1, Kind: bankdv1.AdjustmentKind_ADJUSTMENT_KIND_OTHER,
			Reason: "upgrade gate", ExternalReference: "none"}))
		return err
	}},
	// The lost-node calls: no pool node and no payment here either (not_found once through).
	{"declare lnd lost", func(t *testing.T, cl *apiclient.Clients) error {
		_, err := cl.Lightning.DeclareNodeLost(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.DeclareLndLostRequest{NodeId: "pool-1", Reason: "upgrade gate"}))
		return err
	}},
	{"resolve lost payment", func(t *testing.T, cl *apiclient.Clients) error {
		_, err := cl.Lightning.ResolveLostPayment(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.ResolveLostPaymentRequest{PaymentId: "gated-payment",
			Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT, Reference: "upgrade gate"}))
		return err
	}},
}

// createAccountsRequest is a CreateAccounts call the gate must refuse: it is never applied
// while a node runs the previous release.
func createAccountsRequest() *connect.Request[bankdv1.CreateAccountsRequest] {
	return connect.NewRequest(&bankdv1.CreateAccountsRequest{Accounts: []*bankdv1.Account{
		{Id: "gated-1", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY},
		{Id: "gated-2", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY},
	}})
}

// requireGate checks that every gated call is refused while the nodes in old run (or last ran)
// the previous release, asking the leader: unimplemented while an old binary leads (it has no
// such RPC), failed_precondition naming exactly the old nodes while a new one does. Gossip may
// take a moment to carry a restarted node's types, so a refusal that still names an upgraded
// node is asked again for a while; an acceptance fails at once.
func requireGate(t *testing.T, c *testcluster.ProcCluster, old map[int]bool) {
	t.Helper()
	var want []string
	for i := range old {
		want = append(want, c.Nodes[i].ID)
	}
	slices.Sort(want)
	for _, gated := range gatedCalls {
		var last error
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			leader, admin := leaderClient(t, c)
			err := gated.call(t, admin)
			if err == nil {
				t.Fatalf("%s applied (leader %s) while %v run the previous release", gated.name, c.Nodes[leader].ID, want)
			}
			code := connect.CodeOf(err)
			if old[leader] && code == connect.CodeUnimplemented ||
				!old[leader] && code == connect.CodeFailedPrecondition && slices.Equal(namedNodes(c, err.Error()), want) {
				t.Logf("%s refused while %v run the previous release (leader %s): %v", gated.name, want, c.Nodes[leader].ID, err)
				break
			}
			if code != connect.CodeFailedPrecondition && code != connect.CodeUnavailable {
				t.Fatalf("%s with leader %s (old: %v): %v, want a refusal naming %v", gated.name, c.Nodes[leader].ID, old[leader], err, want)
			}
			// gossip behind, or a leader change under way: ask again
			last = err
			if time.Now().After(deadline) {
				t.Fatalf("%s never refused naming exactly %v; last answer: %v", gated.name, want, last)
			}
		}
	}
}

// namedNodes returns the node ids a not-upgraded refusal names ("upgrade n1 (version x), n3
// (not seen in gossip) first"), sorted.
func namedNodes(c *testcluster.ProcCluster, msg string) []string {
	var ids []string
	for _, n := range c.Nodes {
		if strings.Contains(msg, n.ID+" (") {
			ids = append(ids, n.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// requireVersions checks through node via that every voter reports one version and whether
// it applies COMPACT (upgraded), and returns the version. A non-empty not is a version no node
// may report.
func requireVersions(t *testing.T, c *testcluster.ProcCluster, via int, not string, upgraded bool) string {
	t.Helper()
	var last string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := c.Client(via, testcluster.AdminToken).Cluster.Members(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.MembersRequest{}))
		if err != nil {
			last = err.Error()
			continue
		}
		version, ok, voters := "", true, 0
		var rows []string
		for _, m := range resp.Msg.Members {
			if m.Suffrage != "voter" {
				continue
			}
			voters++
			rows = append(rows, fmt.Sprintf("%s version %s types %#x", m.NodeId, m.Version, m.CommandTypes))
			if version == "" {
				version = m.Version
			}
			ok = ok && m.Version == version && m.Version != not && (m.CommandTypes&compactBit != 0) == upgraded
		}
		if ok && voters == len(c.Nodes) && version != "" {
			t.Logf("every node runs version %s (applies COMPACT: %v)", version, upgraded)
			return version
		}
		last = strings.Join(rows, "; ")
	}
	t.Fatalf("members never all reported one version other than %q with COMPACT %v: %s", not, upgraded, last)
	return ""
}

// lastLineWith returns the last line of text that contains s, or "".
func lastLineWith(text, s string) string {
	lines := strings.Split(text, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
