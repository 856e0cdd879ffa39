package fsm

import (
	"errors"
	"testing"
	"time"
)

// A Restore that comes while Raft holds a snapshot it has not persisted yet must not wait for
// it: Raft's snapshot goroutine holds it while asking Raft's main loop for the configuration,
// and on a follower the main loop is the one waiting for this Restore (InstallSnapshot). The
// held snapshot is dropped: its Persist fails, its Release is harmless, and the next snapshot
// is of the restored state.
func TestRestoreDropsAnUnpersistedRaftSnapshotInsteadOfWaitingForIt(t *testing.T) {
	src := bank(t)
	src.transfer(xfer("from-the-leader", "reserve", "alice", 5))
	installed := snapshotBytes(t, src.FSM)
	_, want := src.hash()

	f := bank(t)
	held, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Restore(readCloser(installed)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Restore waited for a Raft snapshot that was never going to be released")
	}
	if _, got := f.hash(); got != want {
		t.Fatalf("restored hash %x, want %x", got, want)
	}
	if err := held.Persist(&memSink{}); !errors.Is(err, errSnapshotDropped) {
		t.Fatalf("persist of the dropped snapshot: %v, want errSnapshotDropped", err)
	}
	held.Release()
	held.Release()
	if _, got := hashOfSnapshot(t, f); got != want {
		t.Fatalf("a snapshot after the restore has hash %x, want the restored %x", got, want)
	}
}

// A Persist in progress and a Backup are reads a Restore waits for: they need nothing from
// Raft to finish, and the store must not close under them.
func TestRestoreWaitsForAPersistInProgress(t *testing.T) {
	src := bank(t)
	installed := snapshotBytes(t, src.FSM)

	f := bank(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s, ok := snap.(*fsmSnapshot)
	if !ok {
		t.Fatalf("Snapshot returned %T", snap)
	}
	if !f.snapshots.beginRead(s) { // as Persist does, and then stays in the middle of it
		t.Fatal("a fresh snapshot cannot be read")
	}
	done := make(chan error, 1)
	go func() { done <- f.Restore(readCloser(installed)) }()
	select {
	case err := <-done:
		t.Fatalf("Restore returned (%v) while a snapshot was being read", err)
	case <-time.After(200 * time.Millisecond):
	}
	f.snapshots.endRead()
	if err := <-done; err != nil {
		t.Fatalf("restore after the read ended: %v", err)
	}
	snap.Release()
}

// hashOfSnapshot restores a snapshot of f into a new state machine and returns its hash.
func hashOfSnapshot(t *testing.T, f *testFSM) (uint64, [32]byte) {
	t.Helper()
	other := openTestFSM(t)
	if err := other.Restore(readCloser(snapshotBytes(t, f.FSM))); err != nil {
		t.Fatal(err)
	}
	return other.hash()
}
