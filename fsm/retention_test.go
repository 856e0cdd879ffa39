package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

func (tf *testFSM) compact(req *bankdv1.CompactRequest) *bankdv1.CompactResponse {
	tf.t.Helper()
	res := tf.do(bankdv1.CommandType_COMMAND_TYPE_COMPACT, req, nil)
	resp, ok := res.(*bankdv1.CompactResponse)
	if !ok {
		tf.t.Fatalf("compact: got %T %v", res, res)
	}
	return resp
}

// historyIndexes lists the indexes of an account's history entries, in order, as the store
// holds them in either layout (history.go): one per entry.
func (tf *testFSM) historyIndexes(id string) []uint64 {
	tf.t.Helper()
	var out []uint64
	for _, prefix := range [][]byte{historyPrefix(id), historyGroupPrefix(id)} {
		err := tf.scan(prefix, prefixEnd(prefix), func(k, v []byte) (bool, error) {
			index := binary.BigEndian.Uint64(k[len(prefix):])
			if k[0] == tagHistory {
				out = append(out, index)
				return true, nil
			}
			return true, forEachGroupEntry(v, func(uint32, []byte) (bool, error) {
				out = append(out, index)
				return true, nil
			})
		})
		if err != nil {
			tf.t.Fatal(err)
		}
	}
	return out
}

// keysByTag counts the store's keys per table tag.
func (tf *testFSM) keysByTag() map[byte]int {
	tf.t.Helper()
	out := map[byte]int{}
	if err := tf.scan(nil, []byte{0xff}, func(k, _ []byte) (bool, error) { out[k[0]]++; return true, nil }); err != nil {
		tf.t.Fatal(err)
	}
	return out
}

func TestCompactDropsWhatTheWindowLetGoAndKeepsTheBooks(t *testing.T) {
	for _, format := range []uint32{FormatBaseline, FormatGroupedHistory} {
		t.Run(fmt.Sprintf("format=%d", format), func(t *testing.T) { testCompactDropsWhatTheWindowLetGo(t, format) })
	}
}

func testCompactDropsWhatTheWindowLetGo(t *testing.T, format uint32) {
	tf := bank(t)
	tf.switchFormat(format)
	wantCode(t, tf.transfer(xfer("seed", "reserve", "alice", 1000)), codeOK, "")
	open := xfer("hold", "alice", "bob", 100)
	open.Pending = true
	wantCode(t, tf.transfer(open), codeOK, "")
	done := xfer("held", "alice", "bob", 50)
	done.Pending = true
	wantCode(t, tf.transfer(done), codeOK, "")
	wantCode(t, tf.transfer(&bankdv1.Transfer{Id: "held-post", PostPending: true, PendingId: "held"}), codeOK, "")
	wantCode(t, tf.transfer(xfer("old", "alice", "bob", 10)), codeOK, "")

	tf.advance(60_000)
	cut := tf.nowMs
	wantCode(t, tf.transfer(xfer("new", "alice", "bob", 20)), codeOK, "")
	newIndex := uint64(len(tf.log))
	aliceBefore, bobBefore := tf.balance("alice"), tf.balance("bob")

	resp := tf.compact(&bankdv1.CompactRequest{BeforeIndex: 1 << 40, BeforeUnixMs: cut, TransfersBeforeUnixMs: cut, MaxDeletes: 1000})
	c := resp.Compaction
	if resp.More || c.HorizonIndex != newIndex {
		t.Fatalf("compaction %v (more %v), want horizon %d and nothing more", c, resp.More, newIndex)
	}
	if c.EventsDeleted != 8 || c.TransfersDeleted != 4 {
		t.Fatalf("compaction %v: want 8 events (3 accounts, 5 transfer commands) and 4 finished transfers", c)
	}
	if tf.keysByTag()[historyTag(format)] != 2 {
		t.Fatalf("history keys left %v, want only the last transfer's two", tf.keysByTag())
	}

	// The books are untouched; only records older than the window are gone.
	if b := tf.balance("alice"); !equalBalance(b, aliceBefore) {
		t.Fatalf("alice %v, was %v", b, aliceBefore)
	}
	if b := tf.balance("bob"); !equalBalance(b, bobBefore) {
		t.Fatalf("bob %v, was %v", b, bobBefore)
	}
	for _, id := range []string{"alice", "bob"} {
		if got := tf.historyIndexes(id); len(got) != 1 || got[0] != newIndex {
			t.Fatalf("%s history at indexes %v, want only %d", id, got, newIndex)
		}
	}
	for id, kept := range map[string]bool{"seed": false, "held": false, "held-post": false, "old": false, "hold": true, "new": true} {
		_, err := tf.Transfer(id)
		if kept != (err == nil) {
			t.Errorf("transfer %s: kept %v, err %v", id, kept, err)
		}
	}

	// Events before the horizon are refused with the horizon named, not skipped.
	var ce *CompactedError
	if _, err := tf.Events(1, 10); !errors.As(err, &ce) || ce.Horizon != newIndex {
		t.Fatalf("events from 1: %v, want a CompactedError at %d", err, newIndex)
	}
	evs, err := tf.Events(newIndex, 10)
	if err != nil || len(evs) != 2 || evs[0].Index != newIndex || evs[1].Items[0].GetCompacted() == nil {
		t.Fatalf("events from the horizon: %v %v, want the transfer and the compaction", evs, err)
	}

	// The pending transfer still resolves; a retry of a dropped id is a new request.
	wantCode(t, tf.transfer(&bankdv1.Transfer{Id: "hold-void", VoidPending: true, PendingId: "hold"}), codeOK, "")
	if r := tf.transfer(xfer("old", "alice", "bob", 10)); r.Code != codeOK || r.Replayed {
		t.Fatalf("retry of a dropped id: %v, want a new transfer", r)
	}
	if b := tf.balance("bob"); b.Posted != bobBefore.Posted+10 {
		t.Fatalf("bob %v after the retry, want %d posted", b, bobBefore.Posted+10)
	}

	// Nothing more is due: a second compaction with the same bounds drops nothing and
	// writes no event.
	again := tf.compact(&bankdv1.CompactRequest{BeforeIndex: 1 << 40, BeforeUnixMs: cut, TransfersBeforeUnixMs: cut, MaxDeletes: 1000})
	if n := again.Compaction; n.EventsDeleted+n.HistoryDeleted+n.TransfersDeleted != 0 || n.HorizonIndex != newIndex {
		t.Fatalf("second compaction: %v", n)
	}
	tf.replicaAgrees()
}

func equalBalance(a, b *bankdv1.Balance) bool {
	return a.Posted == b.Posted && a.Available == b.Available && a.DebitsPending == b.DebitsPending && a.CreditsPending == b.CreditsPending
}

// replicaAgrees replays the whole log into a new state machine, as a follower or a restarted
// node would, and requires the same state.
func (tf *testFSM) replicaAgrees() {
	tf.t.Helper()
	other := openTestFSM(tf.t)
	other.ApplyBatch(tf.log)
	i1, h1 := tf.hash()
	i2, h2 := other.hash()
	if i1 != i2 || h1 != h2 {
		tf.t.Fatalf("a replica that replayed the log differs: %d %x vs %d %x", i1, h1, i2, h2)
	}
}

func TestCompactStopsAtTheIndexBoundAndAtTheFirstRecentEvent(t *testing.T) {
	for _, tc := range []struct {
		name        string
		beforeIndex func(first, second uint64) uint64
		wantHorizon func(first, second uint64) uint64
	}{
		{"the index bound stops it first", func(first, _ uint64) uint64 { return first }, func(first, _ uint64) uint64 { return first }},
		{"the first recent event stops it", func(_, _ uint64) uint64 { return 1 << 40 }, func(_, second uint64) uint64 { return second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tf := bank(t)
			first := uint64(len(tf.log)) + 1
			wantCode(t, tf.transfer(xfer("a", "reserve", "alice", 5)), codeOK, "")
			wantCode(t, tf.transfer(xfer("b", "reserve", "alice", 5)), codeOK, "")
			tf.advance(10_000)
			second := uint64(len(tf.log)) + 1
			wantCode(t, tf.transfer(xfer("c", "reserve", "alice", 5)), codeOK, "")
			resp := tf.compact(&bankdv1.CompactRequest{BeforeIndex: tc.beforeIndex(first, second), BeforeUnixMs: tf.nowMs, MaxDeletes: 100})
			if want := tc.wantHorizon(first, second); resp.Compaction.HorizonIndex != want {
				t.Fatalf("horizon %d, want %d", resp.Compaction.HorizonIndex, want)
			}
			for _, idx := range tf.historyIndexes("alice") {
				if idx < resp.Compaction.HorizonIndex {
					t.Fatalf("history at %d survived below the horizon %d", idx, resp.Compaction.HorizonIndex)
				}
			}
		})
	}
}

func TestCompactInSmallStepsEndsWhereOneStepWould(t *testing.T) {
	run := func(maxDeletes uint32) (*testFSM, int) {
		tf := bank(t)
		for i := range 40 {
			wantCode(t, tf.transfers(nil, xfer(fmt.Sprintf("x%d", i), "reserve", "alice", 3), xfer(fmt.Sprintf("y%d", i), "alice", "bob", 1))[1], codeOK, "")
		}
		tf.advance(1000)
		cut := tf.nowMs
		commands := 0
		for range 1000 {
			commands++
			if !tf.compact(&bankdv1.CompactRequest{BeforeIndex: 1 << 40, BeforeUnixMs: cut, TransfersBeforeUnixMs: cut, MaxDeletes: maxDeletes}).More {
				break
			}
		}
		return tf, commands
	}
	small, steps := run(7)
	big, one := run(MaxCompactDeletes)
	if one != 1 || steps < 10 {
		t.Fatalf("%d steps of 7 and %d of the most: the bound is not applied", steps, one)
	}
	for _, tf := range []*testFSM{small, big} {
		keys := tf.keysByTag()
		if keys[tagHistory] != 0 || keys[tagTransfer] != 0 {
			t.Fatalf("left after compaction: %d history entries, %d transfers", keys[tagHistory], keys[tagTransfer])
		}
		// What is left of the log is the compactions' own events, written after the cut.
		evs, err := tf.Events(0, 1000)
		var ce *CompactedError
		if errors.As(err, &ce) {
			evs, err = tf.Events(ce.Horizon, 1000)
		}
		if err != nil || len(evs) == 0 {
			t.Fatalf("events left: %v %v", evs, err)
		}
		for _, ev := range evs {
			if len(ev.Items) != 1 || ev.Items[0].GetCompacted() == nil {
				t.Fatalf("event %d survived the compaction: %v", ev.Index, ev)
			}
		}
	}
	if a, b := small.balance("alice"), big.balance("alice"); !equalBalance(a, b) || a.Posted != 80 {
		t.Fatalf("alice %v and %v, want 80 posted in both", a, b)
	}
	small.replicaAgrees()
}

func TestCompactRefusesBadBounds(t *testing.T) {
	tf := bank(t)
	for _, req := range []*bankdv1.CompactRequest{
		{MaxDeletes: 0},
		{MaxDeletes: MaxCompactDeletes + 1},
		{MaxDeletes: 10, BeforeUnixMs: -1},
		{MaxDeletes: 10, TransfersBeforeUnixMs: -5},
	} {
		res := tf.do(bankdv1.CommandType_COMMAND_TYPE_COMPACT, req, nil)
		var e *Error
		if err, ok := res.(error); !ok || !errors.As(err, &e) || e.Code != bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT {
			t.Fatalf("compact %v: %v, want invalid argument", req, res)
		}
	}
}

// Under a steady workload with compaction every "minute", the store's size stays bounded:
// the number of keys stops growing once the window is full.
func TestRetentionBoundsTheStoreUnderASteadyWorkload(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("seed", "reserve", "alice", 1_000_000)), codeOK, "")
	const window = 5 * 60_000
	var sizes []int
	n := 0
	for range 30 {
		for range 20 {
			n++
			wantCode(t, tf.transfer(xfer(fmt.Sprintf("w%d", n), "alice", "bob", 1)), codeOK, "")
			tf.advance(3000)
		}
		cut := tf.nowMs - window
		for range 100 {
			if !tf.compact(&bankdv1.CompactRequest{BeforeIndex: 1 << 40, BeforeUnixMs: cut, TransfersBeforeUnixMs: cut, MaxDeletes: 64}).More {
				break
			}
		}
		total := 0
		for _, c := range tf.keysByTag() {
			total += c
		}
		sizes = append(sizes, total)
	}
	// After the first 5 minutes every minute adds 20 transfers and drops 20.
	grown := sizes[len(sizes)-1] - sizes[9]
	if grown > 10 || sizes[len(sizes)-1] >= 20*30 {
		t.Fatalf("keys per minute: %v; the store keeps growing", sizes)
	}
	t.Logf("keys at the end of each minute: %v", sizes)
}

func TestCompactTakesABatchBiggerThanItsBudgetWhole(t *testing.T) {
	tf := bank(t)
	var batch []*bankdv1.Transfer
	for i := range 20 {
		batch = append(batch, xfer(fmt.Sprintf("big%d", i), "reserve", "alice", 1))
	}
	tf.transfers(nil, batch...)
	tf.advance(1000)
	cut := tf.nowMs
	for range 100 {
		if !tf.compact(&bankdv1.CompactRequest{TransfersBeforeUnixMs: cut, MaxDeletes: 5}).More {
			break
		}
	}
	for i := range 20 {
		if _, err := tf.Transfer(fmt.Sprintf("big%d", i)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("big%d: %v, want it dropped", i, err)
		}
	}
}

// An idempotency window longer than the history window holds the history back: an event goes
// only once the transfer walk has looked at it, so no finished transfer is kept for ever.
func TestCompactKeepsEventsTheTransferWalkHasNotReached(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("early", "reserve", "alice", 1)), codeOK, "")
	tf.advance(10_000)
	mid := tf.nowMs
	wantCode(t, tf.transfer(xfer("late", "reserve", "alice", 1)), codeOK, "")
	tf.advance(10_000)
	// History would drop everything before now; transfers only what finished before mid.
	resp := tf.compact(&bankdv1.CompactRequest{BeforeIndex: 1 << 40, BeforeUnixMs: tf.nowMs, TransfersBeforeUnixMs: mid, MaxDeletes: 100})
	late, err := tf.Transfer("late")
	if err != nil {
		t.Fatalf("late: %v", err)
	}
	if resp.Compaction.HorizonIndex != late.Index || resp.Compaction.TransfersDeleted != 1 {
		t.Fatalf("compaction %v: want the horizon at the late transfer's index %d and only the early transfer dropped", resp.Compaction, late.Index)
	}
	if _, err := tf.Transfer("early"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("early: %v, want it dropped", err)
	}
	// Once the window lets the late transfer go, its event goes too.
	resp = tf.compact(&bankdv1.CompactRequest{BeforeIndex: 1 << 40, BeforeUnixMs: tf.nowMs, TransfersBeforeUnixMs: tf.nowMs, MaxDeletes: 100})
	if _, err := tf.Transfer("late"); !errors.Is(err, ErrNotFound) || resp.Compaction.HorizonIndex <= late.Index {
		t.Fatalf("late: %v, horizon %d; want both past it", err, resp.Compaction.HorizonIndex)
	}
	tf.replicaAgrees()
}
