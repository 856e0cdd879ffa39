package fsm

import (
	"errors"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// errSnapshotDropped is what Persist answers for a Raft snapshot that a Restore dropped.
var errSnapshotDropped = errors.New("the state machine was restored from another snapshot after this one was taken; it is obsolete")

// snapshotRegistry tracks the Pebble snapshots open on the store, so that Restore can close the
// store under none of them without waiting on Raft.
//
// Waiting for every Raft snapshot to be released deadlocked a follower: Raft's snapshot
// goroutine holds the FSM snapshot while it asks Raft's main loop for the configuration, and
// the main loop was inside InstallSnapshot, waiting for this Restore. So a Restore drops the
// Raft snapshots that are not being persisted (they describe a state the restore replaces; their
// Persist then fails and Raft takes a new one later) and waits only for the reads in progress:
// a Persist that has started and every Backup. Neither needs anything from Raft to finish.
type snapshotRegistry struct {
	mu   sync.Mutex
	idle *sync.Cond // signalled when reading drops
	open map[*fsmSnapshot]struct{}
	// reading counts the snapshots being read now: Persists running and backups.
	reading int
}

func newSnapshotRegistry() *snapshotRegistry {
	r := &snapshotRegistry{open: map[*fsmSnapshot]struct{}{}}
	r.idle = sync.NewCond(&r.mu)
	return r
}

// add registers a Raft snapshot of the store.
func (r *snapshotRegistry) add(snap *pebble.Snapshot, index uint64) *fsmSnapshot {
	s := &fsmSnapshot{reg: r, snap: snap, index: index}
	r.mu.Lock()
	r.open[s] = struct{}{}
	r.mu.Unlock()
	return s
}

// beginRead marks s as being read; it reports false when s was dropped or released.
func (r *snapshotRegistry) beginRead(s *fsmSnapshot) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.open[s]; !ok {
		return false
	}
	r.reading++
	return true
}

// beginBackup counts a backup's own snapshot as a read in progress.
func (r *snapshotRegistry) beginBackup() {
	r.mu.Lock()
	r.reading++
	r.mu.Unlock()
}

// endRead ends a read begun with beginRead or beginBackup.
func (r *snapshotRegistry) endRead() {
	r.mu.Lock()
	r.reading--
	r.idle.Broadcast()
	r.mu.Unlock()
}

// release closes s's Pebble snapshot unless a Restore already did.
func (r *snapshotRegistry) release(s *fsmSnapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.open[s]; ok {
		_ = s.snap.Close()
		delete(r.open, s)
	}
}

// waitIdle waits until no snapshot is being read.
func (r *snapshotRegistry) waitIdle() {
	r.mu.Lock()
	for r.reading > 0 {
		r.idle.Wait()
	}
	r.mu.Unlock()
}

// dropIfIdle closes every open Raft snapshot and reports true when no snapshot is being read;
// otherwise it changes nothing and reports false. The caller holds the store exclusively, so no
// read can begin meanwhile.
func (r *snapshotRegistry) dropIfIdle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reading > 0 {
		return false
	}
	for s := range r.open {
		_ = s.snap.Close()
		delete(r.open, s)
	}
	return true
}
