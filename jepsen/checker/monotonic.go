package checker

import (
	"fmt"
	"time"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/register"
)

// NameMonotonicReads is the register workload's checker of each process's reads over time.
const NameMonotonicReads = "monotonic-reads"

// seenRead is a read a process completed ok, as a later read of it is compared with.
type seenRead struct {
	op history.Op
	v  register.ReadValue
}

func (s seenRead) String() string {
	kind := s.v.Consistency + " read"
	if s.v.MinIndex > 0 {
		kind += fmt.Sprintf(" with Bankd-Min-Index %d", s.v.MinIndex)
	}
	return fmt.Sprintf("%s=%d at applied index %d served by %s (%s sent to %s, op %d, t=%s)",
		s.v.Key, s.v.Value, s.v.AppliedIndex, s.v.ServedBy, kind, s.op.Node, s.op.Index, s.op.Time.Round(time.Millisecond))
}

// session is what one process has read so far.
type session struct {
	// newest is the read with the highest applied index.
	newest *seenRead
	// highest holds, per key, the read that showed its highest value.
	highest map[string]*seenRead
}

// MonotonicReads checks that no process sees the state go back: over each process's ok reads,
// linearizable and stale alike, in the order they completed, (1) the applied index a read was
// served at never decreases, and (2) no key's value is ever below one an earlier read showed
// (the register workload's counters only grow). Stale reads carry the highest applied index
// their process has read as Bankd-Min-Index, which is what makes them monotonic. A process ends
// at an info (the client goes on as a new process, a new session that may start anywhere); a
// failed read saw nothing.
func MonotonicReads(ops []history.Op) Result {
	c := newCollector(NameMonotonicReads)
	sessions := map[int]*session{}
	for _, op := range ops {
		if op.Process == history.NemesisProcess {
			continue
		}
		if op.Type == history.Info {
			delete(sessions, op.Process)
			continue
		}
		if op.Type != history.OK || (op.F != register.FRead && op.F != register.FReadStale) {
			continue
		}
		v, ok := op.Value.(register.ReadValue)
		if !ok {
			c.violation("ok read without a value (%s)", at(op))
			continue
		}
		s := sessions[op.Process]
		if s == nil {
			s = &session{highest: map[string]*seenRead{}}
			sessions[op.Process] = s
		}
		c.r.Checked++
		read := &seenRead{op: op, v: v}
		if s.newest != nil && v.AppliedIndex < s.newest.v.AppliedIndex {
			c.violation("process %d read an older state: %s, after %s", op.Process, read, s.newest)
		} else if h := s.highest[v.Key]; h != nil && v.Value < h.v.Value {
			c.violation("process %d saw key %s go back from %d to %d: %s, after %s", op.Process, v.Key, h.v.Value, v.Value, read, h)
		}
		if s.newest == nil || v.AppliedIndex > s.newest.v.AppliedIndex {
			s.newest = read
		}
		if h := s.highest[v.Key]; h == nil || v.Value > h.v.Value {
			s.highest[v.Key] = read
		}
	}
	return c.result()
}
