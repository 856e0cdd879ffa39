package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/principal"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
)

// One entry in flight and a full millisecond of linger: requests sent together are all but
// certain to share entries, which is what these tests are about.
var coalesceHard = clusterhcl.Raft{CoalesceInFlight: 1, CoalesceLinger: time.Millisecond}

// transferEntries reads the leader's log from index from on and returns the CREATE_TRANSFERS
// commands in it.
func transferEntries(t *testing.T, n *Node, from uint64) []*bankdv1.Command {
	t.Helper()
	var out []*bankdv1.Command
	for i := from; i <= n.raft.LastIndex(); i++ {
		var l raft.Log
		if err := n.logStore.GetLog(i, &l); err != nil {
			t.Fatalf("read log %d: %v", i, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		cmd := &bankdv1.Command{}
		if err := proto.Unmarshal(l.Data, cmd); err != nil {
			t.Fatalf("decode log %d: %v", i, err)
		}
		if cmd.Type == bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS {
			out = append(out, cmd)
		}
	}
	return out
}

// TestConcurrentTransfersShareEntriesAndKeepTheirOwnResults sends requests at once whose
// outcomes differ (applied, replayed, a conflicting reuse of an id, an overdraft, a linked chain
// that fails, a request refused as a whole) and checks each caller gets exactly what applying
// its request alone would have given it, while the log holds fewer entries than requests.
func TestConcurrentTransfersShareEntriesAndKeepTheirOwnResults(t *testing.T) {
	c := startTestCluster(t, 3, coalesceHard)
	leader := c.leader()
	createAccount(t, leader, "reserve", bankdv1.AccountKind_ACCOUNT_KIND_ASSET)
	for i := range 4 {
		createAccount(t, leader, fmt.Sprintf("c%d", i), bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY)
	}
	// c0 holds 10; liabilities are non-negative here only when the account says so.
	nonNeg := &bankdv1.Account{Id: "nn", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true}
	if _, err := leader.Apply(testCtx(t), bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{Account: nonNeg}, nil); err != nil {
		t.Fatal(err)
	}
	move := func(id, from, to string, amount int64) *bankdv1.Transfer {
		return &bankdv1.Transfer{Id: id, DebitAccountId: from, CreditAccountId: to, Amount: amount, Currency: "BTC"}
	}
	from := leader.raft.LastIndex() + 1

	type request struct {
		name      string
		transfers []*bankdv1.Transfer
		// want is each transfer's result code; nil means the request is refused as a whole.
		want []bankdv1.ResultCode
	}
	ok, linkedFailed := bankdv1.ResultCode_RESULT_CODE_OK, bankdv1.ResultCode_RESULT_CODE_LINKED_FAILED
	requests := []request{
		{"overdraft of a non-negative account", []*bankdv1.Transfer{move("o1", "nn", "c1", 5)}, []bankdv1.ResultCode{bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS}},
		{"a linked chain whose second transfer fails", []*bankdv1.Transfer{
			{Id: "l1", DebitAccountId: "reserve", CreditAccountId: "c2", Amount: 1, Currency: "BTC", Linked: true},
			move("l2", "c2", "no-such-account", 1),
		}, []bankdv1.ResultCode{linkedFailed, bankdv1.ResultCode_RESULT_CODE_NOT_FOUND}},
		{"refused as a whole: ends with an open chain", []*bankdv1.Transfer{
			{Id: "w1", DebitAccountId: "reserve", CreditAccountId: "c3", Amount: 1, Currency: "BTC", Linked: true},
		}, nil},
	}
	for i := range 200 {
		requests = append(requests, request{fmt.Sprintf("plain %d", i), []*bankdv1.Transfer{move(fmt.Sprintf("p%d", i), "reserve", fmt.Sprintf("c%d", i%4), 1)}, []bankdv1.ResultCode{ok}})
	}
	// The same id twice with the same body (one applies, the other replays it) and twice with
	// different bodies (one applies, the other is refused): whichever comes first wins.
	requests = append(requests,
		request{"dup-same a", []*bankdv1.Transfer{move("d1", "reserve", "c0", 7)}, []bankdv1.ResultCode{ok}},
		request{"dup-same b", []*bankdv1.Transfer{move("d1", "reserve", "c0", 7)}, []bankdv1.ResultCode{ok}},
		request{"dup-other a", []*bankdv1.Transfer{move("d2", "reserve", "c0", 1)}, nil},
		request{"dup-other b", []*bankdv1.Transfer{move("d2", "reserve", "c0", 2)}, nil},
	)

	type answer struct {
		res *bankdv1.CreateTransfersResponse
		err error
	}
	answers := make([]answer, len(requests))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range requests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := leader.Apply(testCtx(t), bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: r.transfers}, nil)
			answers[i].err = err
			if err == nil {
				answers[i].res = res.(*bankdv1.CreateTransfersResponse)
			}
		}()
	}
	close(start)
	wg.Wait()

	var dupSameReplays, dupOtherOK, dupOtherConflict int
	for i, r := range requests {
		a := answers[i]
		switch r.name {
		case "dup-same a", "dup-same b":
			if a.err != nil || len(a.res.Results) != 1 || a.res.Results[0].Code != ok {
				t.Fatalf("%s: got %v %v, want OK", r.name, a.res, a.err)
			}
			if a.res.Results[0].Replayed {
				dupSameReplays++
			}
			continue
		case "dup-other a", "dup-other b":
			if a.err != nil || len(a.res.Results) != 1 {
				t.Fatalf("%s: got %v %v", r.name, a.res, a.err)
			}
			switch a.res.Results[0].Code {
			case ok:
				dupOtherOK++
			case bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS:
				dupOtherConflict++
			}
			continue
		}
		if r.want == nil {
			var refusal *fsm.Error
			if !errors.As(a.err, &refusal) || refusal.Code != bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT {
				t.Fatalf("%s: got %v %v, want the request refused as invalid", r.name, a.res, a.err)
			}
			continue
		}
		if a.err != nil {
			t.Fatalf("%s: %v", r.name, a.err)
		}
		if len(a.res.Results) != len(r.transfers) {
			t.Fatalf("%s: %d results for %d transfers", r.name, len(a.res.Results), len(r.transfers))
		}
		for j, res := range a.res.Results {
			if res.Id != r.transfers[j].Id || res.Code != r.want[j] {
				t.Errorf("%s: result %d is %s %s (%s), want %s %s", r.name, j, res.Id, res.Code, res.Message, r.transfers[j].Id, r.want[j])
			}
		}
	}
	if dupSameReplays != 1 || dupOtherOK != 1 || dupOtherConflict != 1 {
		t.Errorf("reused ids: %d replays of the same body (want 1), %d applied and %d refused of different bodies (want 1 and 1)",
			dupSameReplays, dupOtherOK, dupOtherConflict)
	}

	// 200 plain transfers of 1 each, plus d1 (7) and whichever d2 won.
	got, err := leader.FSM().Account("reserve")
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Balance.Posted; p != 207+1 && p != 207+2 {
		t.Errorf("reserve posted %d, want 208 or 209", p)
	}
	entries := transferEntries(t, leader, from)
	if len(entries) >= len(requests)-1 {
		t.Errorf("%d CREATE_TRANSFERS entries for %d requests: nothing was coalesced", len(entries), len(requests))
	}
	t.Logf("%d requests in %d entries", len(requests), len(entries))
	c.waitConverged(leader.FSM().AppliedIndex())
}

// TestCoalescedEntriesKeepPrincipalsApart checks that requests of different API tokens never
// share an entry: the command envelope records one principal.
func TestCoalescedEntriesKeepPrincipalsApart(t *testing.T) {
	c := startTestCluster(t, 1, coalesceHard)
	leader := c.leader()
	createAccount(t, leader, "reserve", bankdv1.AccountKind_ACCOUNT_KIND_ASSET)
	createAccount(t, leader, "c0", bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY)
	from := leader.raft.LastIndex() + 1
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := principal.With(testCtx(t), fmt.Sprintf("token-%d", i%3))
			_, err := leader.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
				{Id: fmt.Sprintf("t%d-by-%d", i, i%3), DebitAccountId: "reserve", CreditAccountId: "c0", Amount: 1, Currency: "BTC"},
			}}, nil)
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, cmd := range transferEntries(t, leader, from) {
		body := &bankdv1.CreateTransfersRequest{}
		if err := proto.Unmarshal(cmd.Body, body); err != nil {
			t.Fatal(err)
		}
		for _, tr := range body.Transfers {
			total++
			if want := "token-" + tr.Id[len(tr.Id)-1:]; cmd.Principal != want {
				t.Errorf("transfer %s is in an entry of %q, want %q", tr.Id, cmd.Principal, want)
			}
		}
	}
	if total != 60 {
		t.Errorf("%d transfers in the log, want 60", total)
	}
}

// TestCallerThatGivesUpIsToldTheOutcomeIsUnknown checks the answer of a caller whose context
// ends while its transfer waits in a coalesced entry: not "failed", since it may still apply.
func TestCallerThatGivesUpIsToldTheOutcomeIsUnknown(t *testing.T) {
	c := startTestCluster(t, 1, coalesceHard)
	leader := c.leader()
	createAccount(t, leader, "reserve", bankdv1.AccountKind_ACCOUNT_KIND_ASSET)
	createAccount(t, leader, "c0", bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY)
	// Hold the only slot, so the next proposal waits in the queue.
	leader.coalescer.slots <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := leader.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
		{Id: "late", DebitAccountId: "reserve", CreditAccountId: "c0", Amount: 1, Currency: "BTC"},
	}}, nil)
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want an unknown outcome after the deadline", err)
	}
	<-leader.coalescer.slots
	// The transfer was dropped from its entry (its caller had gone), so a retry applies it once.
	res, err := leader.Apply(testCtx(t), bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
		{Id: "late", DebitAccountId: "reserve", CreditAccountId: "c0", Amount: 1, Currency: "BTC"},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.(*bankdv1.CreateTransfersResponse).Results[0]; r.Code != bankdv1.ResultCode_RESULT_CODE_OK || r.Replayed {
		t.Fatalf("retry: %v, want applied now", r)
	}
}

// TestShutdownAnswersQueuedTransfers checks that proposals still waiting for a slot when the
// node stops get an answer rather than waiting for their deadline.
func TestShutdownAnswersQueuedTransfers(t *testing.T) {
	c := startTestCluster(t, 1, coalesceHard)
	leader := c.leader()
	leader.coalescer.slots <- struct{}{} // the only slot: nothing is proposed from here on
	done := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, err := leader.Apply(testCtx(t), bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
				{Id: fmt.Sprintf("queued-%d", i), DebitAccountId: "reserve", CreditAccountId: "c0", Amount: 1, Currency: "BTC"},
			}}, nil)
			done <- err
		}()
	}
	// One is held by the gathering loop, waiting for the slot; the others are in the queue.
	c.waitFor("proposals to be queued", func() bool { return len(leader.coalescer.queue) >= 2 })
	c.stop(leader.ID())
	for range 3 {
		select {
		case err := <-done:
			// A proposal that reached the coalescer hears that the node stopped; one that came
			// after it stopped hears that this node is not the leader.
			if !errors.Is(err, ErrShutdown) && !errors.Is(err, ErrNotLeader) {
				t.Fatalf("got %v, want ErrShutdown", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a queued proposal got no answer after shutdown")
		}
	}
}
