package fsm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// switchFormat moves tf's store to format with a SWITCH_FORMAT command; the baseline needs none.
func (tf *testFSM) switchFormat(format uint32) {
	tf.t.Helper()
	if format == FormatBaseline {
		return
	}
	res := tf.do(bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT, &bankdv1.SwitchFormatRequest{Format: format}, nil)
	if r, ok := res.(*bankdv1.SwitchFormatResponse); !ok || r.Format != format {
		tf.t.Fatalf("switch to format %d: %v", format, res)
	}
}

func TestSwitchFormat(t *testing.T) {
	tf := bank(t)
	if got := tf.Format(); got != FormatBaseline {
		t.Fatalf("a new store is in format %d, want %d", got, FormatBaseline)
	}
	keysBefore := tf.keysByTag()[tagMeta]
	steps := []struct {
		name       string
		format     uint32
		refused    bool
		wantFormat uint32
		wantAt     func(switchIndex uint64) uint64
	}{
		{name: "format 0 is no format", format: 0, refused: true},
		{name: "the baseline, which the store has", format: FormatBaseline, wantFormat: FormatBaseline},
		{name: "grouped history", format: FormatGroupedHistory, wantFormat: FormatGroupedHistory},
		{name: "grouped history again, a retry", format: FormatGroupedHistory, wantFormat: FormatGroupedHistory},
		{name: "back to the baseline, which changes nothing", format: FormatBaseline, wantFormat: FormatGroupedHistory},
	}
	var switchedAt uint64
	for _, s := range steps {
		res := tf.do(bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT, &bankdv1.SwitchFormatRequest{Format: s.format}, nil)
		if s.refused {
			var e *Error
			if err, ok := res.(error); !ok || !asError(err, &e) || e.Code != codeInvalid || !strings.Contains(e.Message, "format") {
				t.Fatalf("%s: %v, want a refusal naming the format", s.name, res)
			}
			if tf.keysByTag()[tagMeta] != keysBefore {
				t.Fatalf("%s: a refused switch wrote a meta key", s.name)
			}
			continue
		}
		r, ok := res.(*bankdv1.SwitchFormatResponse)
		if !ok || r.Format != s.wantFormat {
			t.Fatalf("%s: %v, want format %d", s.name, res, s.wantFormat)
		}
		if s.format == FormatGroupedHistory && switchedAt == 0 {
			switchedAt = uint64(len(tf.log))
		}
		if r.SwitchedAtIndex != switchedAt {
			t.Fatalf("%s: switched at %d, want %d", s.name, r.SwitchedAtIndex, switchedAt)
		}
		if tf.Format() != s.wantFormat {
			t.Fatalf("%s: the state machine says format %d, want %d", s.name, tf.Format(), s.wantFormat)
		}
	}

	// The format is state: a restart and a snapshot keep it, and a replica that replays the
	// log reaches it at the same index.
	snap := snapshotBytes(t, tf.FSM)
	reopened := tf.reopen()
	if reopened.Format() != FormatGroupedHistory {
		t.Fatalf("after a restart the store is in format %d", reopened.Format())
	}
	restored := openTestFSM(t)
	if err := restored.Restore(readCloser(snap)); err != nil {
		t.Fatal(err)
	}
	if restored.Format() != FormatGroupedHistory {
		t.Fatalf("after a restore the store is in format %d", restored.Format())
	}
	replica := openTestFSM(t)
	replica.ApplyBatch(tf.log)
	if replica.Format() != FormatGroupedHistory {
		t.Fatalf("a replica that replayed the log is in format %d", replica.Format())
	}
}

// TestSnapshotInANewerFormatIsRefused: a snapshot from a newer release's store (its format
// record names a format this binary does not read) is refused before it replaces the store, so
// the node keeps the state it had and says to upgrade it.
func TestSnapshotInANewerFormatIsRefused(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("t1", "reserve", "alice", 7)), codeOK, "")
	applied, hash, err := tf.StateHash()
	if err != nil {
		t.Fatal(err)
	}

	var stream bytes.Buffer
	sum := sha256.New()
	w := io.MultiWriter(&stream, sum)
	w.Write(snapshotMagic)
	writeRecord(w, keyApplied, encodeUint64(applied+100))
	writeRecord(w, keyFormat, encodeFormat(LatestFormat+1, applied+50))
	w.Write([]byte{0})
	stream.Write(sum.Sum(nil))

	err = tf.Restore(readCloser(stream.Bytes()))
	if err == nil || !strings.Contains(err.Error(), "upgrade this node") {
		t.Fatalf("restore of a snapshot in format %d: %v, want an error saying to upgrade", LatestFormat+1, err)
	}
	if _, after, err := tf.StateHash(); err != nil || tf.AppliedIndex() != applied || tf.Format() != FormatBaseline || after != hash {
		t.Fatalf("the refused snapshot changed the store: applied %d (was %d), format %d", tf.AppliedIndex(), applied, tf.Format())
	}
	if reopened := tf.reopen(); reopened.AppliedIndex() != applied {
		t.Fatalf("after a restart the store is at index %d, want %d", reopened.AppliedIndex(), applied)
	}
}

// asError is errors.As for the *Error a refused command returns.
func asError(err error, target **Error) bool {
	e, ok := asRefusal(err)
	*target = e
	return ok
}

// TestGroupedHistoryWritesOneKeyPerAccountPerCommand: a command of transfers that all debit
// one account writes one history key for it, and one for each other account.
func TestGroupedHistoryWritesOneKeyPerAccountPerCommand(t *testing.T) {
	for _, format := range []uint32{FormatBaseline, FormatGroupedHistory} {
		t.Run(fmt.Sprintf("format=%d", format), func(t *testing.T) {
			tf := openTestFSM(t)
			tf.mustAccount("reserve", "ASSET", false)
			const customers = 50
			for i := range customers {
				tf.mustAccount(fmt.Sprintf("c%d", i), "LIABILITY", false)
			}
			tf.switchFormat(format)
			var ts []*bankdv1.Transfer
			for i := range 2 * customers { // each customer twice
				ts = append(ts, xfer(fmt.Sprintf("t%d", i), "reserve", fmt.Sprintf("c%d", i%customers), int64(1+i)))
			}
			for _, r := range tf.transfers(nil, ts...) {
				wantCode(t, r, codeOK, "")
			}
			keys := tf.keysByTag()
			want := map[uint32][2]int{FormatBaseline: {4 * customers, 0}, FormatGroupedHistory: {0, customers + 1}}[format]
			if got := [2]int{keys[tagHistory], keys[tagHistoryGroup]}; got != want {
				t.Fatalf("history keys (h, G) = %v, want %v", got, want)
			}
			if n := len(tf.historyIndexes("reserve")); n != 2*customers {
				t.Fatalf("reserve has %d history entries, want %d", n, 2*customers)
			}
			tf.replicaAgrees()
		})
	}
}

// TestGroupedHistoryReadsAsTheBaseline runs random command sequences twice: once switching to
// grouped history part way, once applying a tick at that index instead. Every account's history,
// read in pages of every size, must be the same entries with the same page tokens, and so must
// the balances: the layout is invisible to readers.
func TestGroupedHistoryReadsAsTheBaseline(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed*104729))
			grouped := openTestFSM(t)
			gen := &commandGen{rng: rng, tf: grouped}
			gen.setup()
			switchAt := int(seed-1) * 40 // the first seed switches before any transfer
			var switchEntry int
			for step := range 200 {
				if step == switchAt {
					grouped.switchFormat(FormatGroupedHistory)
					switchEntry = len(grouped.log) - 1
				}
				gen.step()
			}
			if grouped.fatals.count() != 0 {
				t.Fatalf("state machine stopped: %v", grouped.fatals.errs)
			}

			baseline := openTestFSM(t)
			log := append([]*raft.Log(nil), grouped.log...)
			tick := *log[switchEntry]
			cmd := &bankdv1.Command{}
			if err := proto.Unmarshal(tick.Data, cmd); err != nil {
				t.Fatal(err)
			}
			cmd.Type, cmd.Body = bankdv1.CommandType_COMMAND_TYPE_TICK, nil
			data, err := proto.Marshal(cmd)
			if err != nil {
				t.Fatal(err)
			}
			tick.Data = data
			log[switchEntry] = &tick
			baseline.ApplyBatch(log)
			if baseline.Format() != FormatBaseline || grouped.Format() != FormatGroupedHistory {
				t.Fatalf("formats %d and %d", baseline.Format(), grouped.Format())
			}

			accs, _, err := grouped.ListAccounts("", MaxPageSize)
			if err != nil {
				t.Fatal(err)
			}
			entries := 0
			for _, acc := range accs {
				want := readAllHistory(t, baseline.FSM, acc.Id, MaxPageSize)
				entries += len(want)
				for _, size := range []int{1, 2, 3, 7, MaxPageSize} {
					if got := readAllHistory(t, grouped.FSM, acc.Id, size); !sameHistory(got, want) {
						t.Fatalf("account %s, pages of %d: grouped history\n%v\nwant\n%v", acc.Id, size, got, want)
					}
				}
				if b := baseline.balance(acc.Id); !proto.Equal(b, grouped.balance(acc.Id)) {
					t.Fatalf("account %s: balances differ: %v and %v", acc.Id, b, grouped.balance(acc.Id))
				}
			}
			// The run must have grouped something, or it compared the baseline with itself.
			keys := grouped.keysByTag()
			if keys[tagHistoryGroup] == 0 || entries <= keys[tagHistory]+keys[tagHistoryGroup] {
				t.Fatalf("%d entries in %d h keys and %d G keys: nothing was grouped", entries, keys[tagHistory], keys[tagHistoryGroup])
			}
			checkInvariants(t, grouped)
		})
	}
}

// pagedEntry is a history entry with the page token that followed it, if it ended a page.
type pagedEntry struct {
	entry *bankdv1.HistoryEntry
	token string
}

// readAllHistory reads an account's whole history in pages of size, checking each page's
// length and recording the token at the end of each page.
func readAllHistory(t *testing.T, f *FSM, id string, size int) []pagedEntry {
	t.Helper()
	var out []pagedEntry
	token := ""
	for range 10_000 {
		page, next, err := f.AccountHistory(id, token, size)
		if err != nil {
			t.Fatalf("history of %s after %q: %v", id, token, err)
		}
		if len(page) > size || (next != "" && len(page) != size) {
			t.Fatalf("history of %s after %q: a page of %d entries (size %d, next %q)", id, token, len(page), size, next)
		}
		for _, e := range page {
			out = append(out, pagedEntry{entry: e})
		}
		if next == "" {
			return out
		}
		out[len(out)-1].token = next
		token = next
	}
	t.Fatalf("history of %s never ended", id)
	return nil
}

// sameHistory compares two reads of a history: the same entries, and where both ended a page
// at the same entry, the same token.
func sameHistory(a, b []pagedEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i].entry, b[i].entry) {
			return false
		}
		if a[i].token != "" && b[i].token != "" && a[i].token != b[i].token {
			return false
		}
	}
	return true
}

// TestHistoryPageTokensAreCheckedAndStable: a malformed token is refused, and a token from
// before the switch still pages on after it.
func TestHistoryPageTokensAreCheckedAndStable(t *testing.T) {
	tf := bank(t)
	for i := range 3 {
		wantCode(t, tf.transfer(xfer(fmt.Sprintf("before%d", i), "reserve", "alice", 10)), codeOK, "")
	}
	page, token, err := tf.AccountHistory("alice", "", 2)
	if err != nil || len(page) != 2 || token == "" {
		t.Fatalf("first page: %v %q %v", page, token, err)
	}
	tf.switchFormat(FormatGroupedHistory)
	wantCode(t, tf.transfer(xfer("after", "reserve", "alice", 10)), codeOK, "")
	rest, next, err := tf.AccountHistory("alice", token, 10)
	if err != nil || next != "" || len(rest) != 2 || rest[0].TransferId != "before2" || rest[1].TransferId != "after" {
		t.Fatalf("the rest after a token from before the switch: %v %q %v", rest, next, err)
	}
	for _, bad := range []string{"zz", "00", strings.Repeat("00", historyPosLen+1)} {
		var e *Error
		if _, _, err := tf.AccountHistory("alice", bad, 2); !asError(err, &e) || e.Code != codeInvalid {
			t.Errorf("token %q: %v, want a refusal", bad, err)
		}
	}
}

// TestCorruptHistoryGroupIsAnError: a group value that does not parse is reported with the
// account and key, never returned as entries or a panic.
func TestCorruptHistoryGroupIsAnError(t *testing.T) {
	tf := bank(t)
	tf.switchFormat(FormatGroupedHistory)
	wantCode(t, tf.transfer(xfer("t1", "reserve", "alice", 10)), codeOK, "")
	key := appendHistoryKey(nil, tagHistoryGroup, "alice", uint64(len(tf.log)), 1)
	if err := tf.db.Set(key, []byte{0x01, 0x7f}, nil); err != nil { // seq 1, then 127 bytes that are not there
		t.Fatal(err)
	}
	if _, _, err := tf.AccountHistory("alice", "", 10); err == nil || !strings.Contains(err.Error(), "alice") {
		t.Fatalf("corrupt group: %v, want an error naming the account", err)
	}
}

// FuzzHistoryGroup: any bytes either parse as a group or give an error; a group groupHistory
// built parses back to the entries it was built from.
func FuzzHistoryGroup(f *testing.F) {
	f.Add([]byte{}, []byte{0x01, 0x02, 0x0a, 0x00})
	f.Add([]byte("\x0a\x02t1\x10\x05"), []byte{0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, entry, raw []byte) {
		_ = forEachGroupEntry(raw, func(uint32, []byte) (bool, error) { return true, nil })

		entries := []*logEntry{
			{key: string(appendHistoryKey(nil, tagHistoryGroup, "a", 7, 3)), value: entry},
			{key: string(appendHistoryKey(nil, tagHistoryGroup, "a", 7, 1<<32-1)), value: raw},
		}
		v := groupHistory(nil, entries)
		if len(v) > groupSize(entries) {
			t.Fatalf("group of %d bytes, bound %d", len(v), groupSize(entries))
		}
		var seqs []uint32
		var got [][]byte
		err := forEachGroupEntry(v, func(seq uint32, e []byte) (bool, error) {
			seqs, got = append(seqs, seq), append(got, e)
			return true, nil
		})
		if err != nil || len(got) != 2 || seqs[0] != 3 || seqs[1] != 1<<32-1 || !bytes.Equal(got[0], entry) || !bytes.Equal(got[1], raw) {
			t.Fatalf("round trip: %v %v %v", seqs, got, err)
		}
	})
}

// TestCompactDropsHistoryOnBothSidesOfTheSwitch: retention finds an index's history under the
// layout it was written in, h before the switch and G after it.
func TestCompactDropsHistoryOnBothSidesOfTheSwitch(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("before", "reserve", "alice", 10)), codeOK, "")
	tf.switchFormat(FormatGroupedHistory)
	wantCode(t, tf.transfer(xfer("after", "reserve", "alice", 10)), codeOK, "")
	if keys := tf.keysByTag(); keys[tagHistory] != 2 || keys[tagHistoryGroup] != 2 {
		t.Fatalf("history keys before compaction %v, want two of each layout", keys)
	}
	tf.advance(60_000)
	cut := tf.nowMs
	tf.compact(&bankdv1.CompactRequest{BeforeIndex: 1 << 40, BeforeUnixMs: cut, MaxDeletes: 1000})
	if keys := tf.keysByTag(); keys[tagHistory]+keys[tagHistoryGroup] != 0 {
		t.Fatalf("history keys left %v, want none", keys)
	}
	tf.replicaAgrees()
}
