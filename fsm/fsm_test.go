package fsm

import (
	"crypto/sha256"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func TestUnknownCommandTypeOrVersionStopsTheStateMachine(t *testing.T) {
	for name, cmd := range map[string]*bankdv1.Command{
		"unknown type":    {Version: CommandVersion, Type: 999},
		"future version":  {Version: CommandVersion + 1, Type: bankdv1.CommandType_COMMAND_TYPE_TICK},
		"missing version": {Type: bankdv1.CommandType_COMMAND_TYPE_TICK},
		// A refusal would leave this replica in format 1 while newer ones switch.
		"switch to a format newer than this binary's": {Version: CommandVersion, Type: bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT,
			Body: func() []byte { b, _ := proto.Marshal(&bankdv1.SwitchFormatRequest{Format: LatestFormat + 1}); return b }()},
	} {
		t.Run(name, func(t *testing.T) {
			tf := openTestFSM(t)
			data, _ := proto.Marshal(cmd)
			tf.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data})
			if tf.fatals.count() != 1 {
				t.Fatalf("fatal called %d times, want 1", tf.fatals.count())
			}
			if tf.AppliedIndex() != 0 {
				t.Fatalf("applied index moved past an entry it could not apply")
			}
			// Once halted it refuses everything after, too.
			tf.Apply(tf.entry(bankdv1.CommandType_COMMAND_TYPE_TICK, nil, nil))
			if tf.fatals.count() != 2 || tf.AppliedIndex() != 0 {
				t.Fatalf("halted state machine applied a later entry")
			}
		})
	}
}

func TestGarbageEntryIsFailStop(t *testing.T) {
	tf := openTestFSM(t)
	tf.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0xff, 0xff, 0xff}})
	if tf.fatals.count() != 1 {
		t.Fatalf("undecodable envelope did not stop the state machine")
	}
}

func TestReplayedEntriesAreSkipped(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("t1", "reserve", "alice", 7)), codeOK, "")
	idx, before := tf.hash()

	// Raft replays the whole log after a restart; nothing may apply twice.
	tf.ApplyBatch(tf.log)
	if _, after := tf.hash(); after != before {
		t.Fatalf("replaying applied entries changed the state")
	}
	if b := tf.balance("alice"); b.Posted != 7 {
		t.Fatalf("replay applied a transfer twice: %v", b)
	}

	// Close, reopen, replay: same.
	f2 := tf.reopen()
	if f2.AppliedIndex() != idx {
		t.Fatalf("reopened at %d, want %d", f2.AppliedIndex(), idx)
	}
	f2.ApplyBatch(tf.log)
	_, again, _ := f2.StateHash()
	if again != before {
		t.Fatalf("state changed after reopen and replay")
	}
}

func TestNonCommandEntriesAdvanceTheAppliedIndexOnly(t *testing.T) {
	tf := openTestFSM(t)
	res := tf.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogConfiguration}, {Index: 2, Type: raft.LogConfiguration}})
	if res[0] != nil || res[1] != nil || tf.AppliedIndex() != 2 {
		t.Fatalf("config entries: results %v, applied %d", res, tf.AppliedIndex())
	}
}

func TestSnapshotRestoreGivesTheSameStateHash(t *testing.T) {
	tf := bank(t)
	for i := 0; i < 50; i++ {
		tf.transfer(xfer("t"+string(rune('A'+i)), "reserve", "alice", int64(i+1)))
	}
	idx, want := tf.hash()
	snap := snapshotBytes(t, tf.FSM)

	other := openTestFSM(t)
	other.mustAccount("junk", "ASSET", false) // restore must discard what was there
	if err := other.Restore(readCloser(snap)); err != nil {
		t.Fatalf("restore: %v", err)
	}
	gotIdx, got := other.hash()
	if gotIdx != idx || got != want {
		t.Fatalf("restored state: index %d hash %x, want %d %x", gotIdx, got, idx, want)
	}
	if _, err := other.Account("junk"); err == nil {
		t.Fatalf("restore kept an account the snapshot does not have")
	}
	// The restored replica keeps applying where the snapshot ended.
	other.log = tf.log
	other.nowMs = tf.nowMs
	r := other.transfer(xfer("after", "reserve", "bob", 1))
	wantCode(t, r, codeOK, "")
}

func TestRestoreRefusesACorruptSnapshot(t *testing.T) {
	tf := bank(t)
	snap := snapshotBytes(t, tf.FSM)
	_, before := tf.hash()
	for name, bad := range map[string][]byte{
		"flipped byte": flip(snap, len(snap)/2),
		"truncated":    snap[:len(snap)-10],
		"not ours":     []byte("hello"),
	} {
		t.Run(name, func(t *testing.T) {
			if err := tf.Restore(readCloser(bad)); err == nil {
				t.Fatalf("corrupt snapshot restored")
			}
			if _, after := tf.hash(); after != before {
				t.Fatalf("failed restore changed the state")
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0xff
	return c
}
