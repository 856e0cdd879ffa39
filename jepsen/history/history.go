// Package history records what the clients of a jepsen run asked for and what they were told:
// an append-only list of operations, each an invoke followed (in the same process) by ok, fail
// or info, stamped with a monotonic time since the run started.
//
// ok means the operation took effect, fail means it certainly did not, info means it may or
// may not have (a timeout, a lost connection, "outcome unknown"). A process never has two
// operations open at once; after an info its operation may still take effect later, so the
// client continues as a new process. The package knows nothing about bankd or its workloads.
package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// Type is the kind of an operation record.
type Type string

const (
	Invoke Type = "invoke"
	OK     Type = "ok"
	Fail   Type = "fail"
	Info   Type = "info"
)

// NemesisProcess is the process of fault records (type info, f "start <kind>" / "heal <kind>").
const NemesisProcess = -1

// Op is one record of the history.
type Op struct {
	Index   int    `json:"index"`
	Process int    `json:"process"`
	Type    Type   `json:"type"`
	F       string `json:"f"`
	Value   any    `json:"value,omitempty"`
	// Time since the run started, from the monotonic clock.
	Time time.Duration `json:"time_ns"`
	// Node the client sent the request to.
	Node  string `json:"node,omitempty"`
	Error string `json:"error,omitempty"`
}

// Recorder is an append-only, concurrency-safe history that also streams every record as a
// JSON line to a file.
type Recorder struct {
	start time.Time

	mu   sync.Mutex
	ops  []Op
	file *os.File
	buf  *bufio.Writer
	werr error
}

// NewRecorder starts a history at start; with a non-empty path every record is also written
// there as one JSON line.
func NewRecorder(start time.Time, path string) (*Recorder, error) {
	r := &Recorder{start: start}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("create history file: %w", err)
		}
		r.file, r.buf = f, bufio.NewWriterSize(f, 1<<16)
	}
	return r, nil
}

// Since is the monotonic time since the run started.
func (r *Recorder) Since() time.Duration { return time.Since(r.start) }

// Append stamps op with the next index and the current time and records it.
func (r *Recorder) Append(op Op) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Index = len(r.ops)
	op.Time = time.Since(r.start)
	r.ops = append(r.ops, op)
	if r.buf != nil && r.werr == nil {
		b, err := json.Marshal(op)
		if err == nil {
			b = append(b, '\n')
			_, err = r.buf.Write(b)
		}
		r.werr = err
	}
	return op
}

// Invoke records that process starts operation f with value against node.
func (r *Recorder) Invoke(process int, f string, value any, node string) Op {
	return r.Append(Op{Process: process, Type: Invoke, F: f, Value: value, Node: node})
}

// Complete records the outcome of invoke; err, when not nil, is kept as text.
func (r *Recorder) Complete(invoke Op, typ Type, value any, err error) Op {
	op := Op{Process: invoke.Process, Type: typ, F: invoke.F, Value: value, Node: invoke.Node}
	if err != nil {
		op.Error = err.Error()
	}
	return r.Append(op)
}

// Ops returns a copy of the records so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Op, len(r.ops))
	copy(out, r.ops)
	return out
}

// Close flushes and closes the file; it returns the first write error, if any.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.file == nil {
		return nil
	}
	err := r.werr
	if ferr := r.buf.Flush(); err == nil {
		err = ferr
	}
	if cerr := r.file.Close(); err == nil {
		err = cerr
	}
	r.file, r.buf = nil, nil
	return err
}

// Pair is an invocation and its completion; Complete is nil when the operation never
// completed, which counts as info.
type Pair struct {
	Invoke   Op
	Complete *Op
}

// Outcome is the completion's type, or Info when there is none.
func (p Pair) Outcome() Type {
	if p.Complete == nil {
		return Info
	}
	return p.Complete.Type
}

// Pairs matches every client invocation with the next completion of the same process, in
// invocation order. Nemesis records are skipped. It returns an error for a completion without
// an open invocation or a second invocation while one is open.
func Pairs(ops []Op) ([]Pair, error) {
	var pairs []Pair
	open := map[int]int{} // process -> index into pairs
	for _, op := range ops {
		if op.Process == NemesisProcess {
			continue
		}
		switch op.Type {
		case Invoke:
			if i, ok := open[op.Process]; ok {
				return nil, fmt.Errorf("op %d: process %d invokes while op %d is open", op.Index, op.Process, pairs[i].Invoke.Index)
			}
			open[op.Process] = len(pairs)
			pairs = append(pairs, Pair{Invoke: op})
		case OK, Fail, Info:
			i, ok := open[op.Process]
			if !ok {
				return nil, fmt.Errorf("op %d: %s of process %d without an invocation", op.Index, op.Type, op.Process)
			}
			c := op
			pairs[i].Complete = &c
			delete(open, op.Process)
		default:
			return nil, fmt.Errorf("op %d: unknown type %q", op.Index, op.Type)
		}
	}
	return pairs, nil
}
