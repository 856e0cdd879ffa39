package node

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/bankd/bankd/fsm"
)

// A write's two slow steps on every node are the Raft log's fsync and the state machine's apply.
// Both are timed into histograms (metrics.go) and, when one takes far longer than a healthy
// node needs, logged: a slow disk or a stalled store shows up in the log with its figures
// instead of only as slow clients.
const (
	// slowLogWrite: an fsync of the Raft log takes a few milliseconds on a healthy disk.
	slowLogWrite = 100 * time.Millisecond
	// slowApply: the largest entries (8,000 transfers) apply in about a tenth of a second.
	slowApply = 500 * time.Millisecond
	// slowWarningEvery bounds the warnings of each kind to one per interval; the ones held
	// back are counted in the next.
	slowWarningEvery = 10 * time.Second
)

// timedLogStore is the Raft log store with its writes timed. Raft calls StoreLogs on the leader
// before it replicates an entry and on a follower before it acknowledges one, so this is the
// fsync every write waits for, once on the leader and once on the follower that completes
// the quorum.
type timedLogStore struct {
	*raftboltdb.BoltStore
	n *Node
}

func (s timedLogStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

func (s timedLogStore) StoreLogs(logs []*raft.Log) error {
	start := time.Now()
	err := s.BoltStore.StoreLogs(logs)
	took := time.Since(start)
	s.n.metrics.logWrite.Observe(took.Seconds())
	s.n.slowLogWrites.check(s.n, took, "slow raft log write", "entries", len(logs))
	return err
}

// ApplyBatch times the state machine's apply. The FSM reports Pebble's part through
// onApplied just before it returns, on this goroutine.
func (r raftFSM) ApplyBatch(logs []*raft.Log) []any {
	start := time.Now()
	results := r.FSM.ApplyBatch(logs)
	took := time.Since(start)
	st := r.n.lastApply
	r.n.lastApply = fsm.ApplyStats{}
	if st.Entries == 0 {
		return results // nothing new was applied (replays, or a halted state machine)
	}
	r.n.metrics.observeApplyBatch(took, st)
	r.n.slowApplies.check(r.n, took, "slow state machine apply", "entries", st.Entries,
		"store_commit", st.Commit.Round(time.Millisecond), "store_stalled", st.Stalled.Round(time.Millisecond))
	return results
}

// Apply goes through ApplyBatch so that single entries are timed too.
func (r raftFSM) Apply(l *raft.Log) any { return r.ApplyBatch([]*raft.Log{l})[0] }

func (n *Node) initSlowWarnings() {
	n.slowLogWrites.after = slowLogWrite
	n.slowApplies.after = slowApply
}

// onApplied is the FSM's OnApplied hook; it runs inside raftFSM.ApplyBatch.
func (n *Node) onApplied(st fsm.ApplyStats) { n.lastApply = st }

// slowWarnings warns of steps that took longer than after, at most once per slowWarningEvery,
// and counts the ones it held back.
type slowWarnings struct {
	after time.Duration

	mu   sync.Mutex
	last time.Time
	held int
}

func (w *slowWarnings) check(n *Node, took time.Duration, msg string, args ...any) {
	if took <= w.after {
		return
	}
	w.mu.Lock()
	now := time.Now()
	if !w.last.IsZero() && now.Sub(w.last) < slowWarningEvery {
		w.held++
		w.mu.Unlock()
		return
	}
	held := w.held
	w.last, w.held = now, 0
	w.mu.Unlock()
	args = append(args, "took", took.Round(time.Millisecond), "expected_under", w.after)
	if held > 0 {
		args = append(args, "more_since_last_warning", held)
	}
	n.log.Warn(msg, args...)
}
