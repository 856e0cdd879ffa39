package checker

import (
	"strings"
	"testing"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/register"
)

// sessionHistory writes hand-made register histories of reads (and adds, for infos).
type sessionHistory struct{ ops []history.Op }

func (h *sessionHistory) append(op history.Op) {
	op.Index = len(h.ops)
	h.ops = append(h.ops, op)
}

// read records one ok read by process of key through node: value at index, served by servedBy.
func (h *sessionHistory) read(process int, f, key string, value int64, index uint64, servedBy string) *sessionHistory {
	req := register.ReadValue{Key: key, Consistency: register.Linearizable}
	if f == register.FReadStale {
		req.Consistency = register.Stale
	}
	h.append(history.Op{Process: process, Type: history.Invoke, F: f, Value: req, Node: servedBy})
	done := req
	done.Value, done.AppliedIndex, done.ServedBy = value, index, servedBy
	h.append(history.Op{Process: process, Type: history.OK, F: f, Value: done, Node: servedBy})
	return h
}

// failedRead records a read by process that failed (a node behind its Bankd-Min-Index).
func (h *sessionHistory) failedRead(process int, key string) *sessionHistory {
	req := register.ReadValue{Key: key, Consistency: register.Stale}
	h.append(history.Op{Process: process, Type: history.Invoke, F: register.FReadStale, Value: req, Node: "n5"})
	h.append(history.Op{Process: process, Type: history.Fail, F: register.FReadStale, Value: req, Node: "n5", Error: "unavailable"})
	return h
}

// unknownAdd records an add by process whose outcome is unknown: the process ends there.
func (h *sessionHistory) unknownAdd(process int, key string) *sessionHistory {
	a := register.AddValue{Key: key, ID: "a", Amount: 1}
	h.append(history.Op{Process: process, Type: history.Invoke, F: register.FAdd, Value: a, Node: "n1"})
	h.append(history.Op{Process: process, Type: history.Info, F: register.FAdd, Value: a, Node: "n1"})
	return h
}

func TestMonotonicReads(t *testing.T) {
	lin, stale := register.FRead, register.FReadStale
	tests := []struct {
		name    string
		h       *sessionHistory
		want    Verdict
		example []string // substrings of the counter-example
	}{
		{"index and values grow across nodes and consistencies", new(sessionHistory).
			read(0, lin, "k0", 5, 10, "n1").
			read(0, stale, "k1", 3, 10, "n4").
			read(0, stale, "k0", 8, 14, "n5").
			failedRead(0, "k0").
			read(0, lin, "k1", 3, 14, "n2").
			read(1, stale, "k0", 0, 2, "n5"), Valid, nil},
		{"an unchanged state read twice", new(sessionHistory).
			read(0, stale, "k0", 5, 10, "n4").
			read(0, stale, "k0", 5, 10, "n5"), Valid, nil},
		{"another process may be behind", new(sessionHistory).
			read(0, lin, "k0", 8, 14, "n1").
			read(1, stale, "k0", 5, 10, "n4"), Valid, nil},
		{"the applied index goes back", new(sessionHistory).
			read(0, lin, "k0", 8, 14, "n1").
			read(0, stale, "k1", 3, 11, "n4"), Invalid, []string{
			"process 0 read an older state",
			"k1=3 at applied index 11 served by n4 (stale read",
			"after k0=8 at applied index 14 served by n1 (linearizable read",
		}},
		{"a value goes back at a higher index", new(sessionHistory).
			read(2, stale, "k0", 8, 14, "n4").
			read(2, stale, "k1", 1, 15, "n5").
			read(2, stale, "k0", 7, 16, "n5"), Invalid, []string{
			"process 2 saw key k0 go back from 8 to 7",
			"k0=7 at applied index 16 served by n5",
			"after k0=8 at applied index 14 served by n4",
		}},
		{"a new process after an info may start anywhere", new(sessionHistory).
			read(0, lin, "k0", 8, 14, "n1").
			unknownAdd(0, "k0").
			read(5, stale, "k0", 5, 10, "n4"), Valid, nil},
		{"a process number reused after an info starts a new session", new(sessionHistory).
			read(0, lin, "k0", 8, 14, "n1").
			unknownAdd(0, "k0").
			read(0, stale, "k0", 5, 10, "n4"), Valid, nil},
		{"no ok read proves nothing", new(sessionHistory).failedRead(0, "k0"), Unknown, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := MonotonicReads(tt.h.ops)
			if r.Verdict != tt.want {
				t.Fatalf("verdict %s (%s), want %s", r.Verdict, r.CounterExample, tt.want)
			}
			for _, s := range tt.example {
				if !strings.Contains(r.CounterExample, s) {
					t.Fatalf("counter-example %q does not say %q", r.CounterExample, s)
				}
			}
			if tt.want == Valid && r.Checked == 0 {
				t.Fatal("valid with nothing checked")
			}
		})
	}
}
