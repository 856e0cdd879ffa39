package checker

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/register"
)

// timed writes hand-made histories with explicit times (in ms).
type timed struct{ ops []history.Op }

func (h *timed) op(ms int, process int, typ history.Type, f string, v any) *timed {
	h.ops = append(h.ops, history.Op{Index: len(h.ops), Process: process, Type: typ, F: f, Value: v,
		Node: "n1", Time: time.Duration(ms) * time.Millisecond})
	return h
}

func (h *timed) add(call, ret, process int, outcome history.Type, key, id string, amount int64) *timed {
	a := register.AddValue{Key: key, ID: id, Amount: amount}
	h.op(call, process, history.Invoke, register.FAdd, a)
	if outcome != "" {
		h.op(ret, process, outcome, register.FAdd, a)
	}
	return h
}

func (h *timed) read(call, ret, process int, f, key string, value int64) *timed {
	h.op(call, process, history.Invoke, f, register.ReadValue{Key: key})
	return h.op(ret, process, history.OK, f, register.ReadValue{Key: key, Value: value})
}

func TestLinearizable(t *testing.T) {
	lin := register.FRead
	tests := []struct {
		name    string
		h       *timed
		final   *register.Final
		want    Verdict
		example string
	}{
		{"sequential adds and reads", new(timed).
			add(0, 10, 0, history.OK, "k0", "a", 5).
			read(20, 30, 0, lin, "k0", 5).
			add(40, 50, 0, history.OK, "k0", "b", 3).
			read(60, 70, 0, lin, "k0", 8), nil, Valid, ""},
		{"concurrent reads may see an add or not", new(timed).
			add(0, 100, 0, history.OK, "k0", "a", 5).
			read(10, 20, 1, lin, "k0", 0).
			read(30, 40, 2, lin, "k0", 5).
			read(110, 120, 1, lin, "k0", 5), nil, Valid, ""},
		{"a read after an acknowledged add misses it", new(timed).
			add(0, 10, 0, history.OK, "k0", "a", 5).
			read(20, 30, 1, lin, "k0", 0), nil, Invalid, "cannot place read(k0) -> 0"},
		{"the register goes back in time", new(timed).
			add(0, 100, 0, history.OK, "k0", "a", 5).
			read(10, 20, 1, lin, "k0", 5).
			read(30, 40, 2, lin, "k0", 0), nil, Invalid, "key k0"},
		{"a read sees a value no set of adds sums to", new(timed).
			add(0, 10, 0, history.OK, "k0", "a", 5).
			add(0, 10, 1, history.OK, "k0", "b", 3).
			read(20, 30, 2, lin, "k0", 10), nil, Invalid, "read(k0) -> 10"},
		{"an unknown add that is never seen may not have applied", new(timed).
			add(0, 10, 0, history.Info, "k0", "a", 5).
			read(20, 30, 1, lin, "k0", 0).
			read(40, 50, 1, lin, "k0", 0), nil, Valid, ""},
		{"an unknown add may apply long after it returned", new(timed).
			add(0, 10, 0, history.Info, "k0", "a", 5).
			read(20, 30, 1, lin, "k0", 0).
			read(40, 50, 1, lin, "k0", 5), nil, Valid, ""},
		{"an add that never returned may apply", new(timed).
			add(0, 0, 0, "", "k0", "a", 5).
			read(20, 30, 1, lin, "k0", 5), nil, Valid, ""},
		{"an unknown add seen and then unseen", new(timed).
			add(0, 10, 0, history.Info, "k0", "a", 5).
			read(20, 30, 1, lin, "k0", 5).
			read(40, 50, 1, lin, "k0", 0), nil, Invalid, "key k0"},
		{"an unknown add that does not exist at the end was seen", new(timed).
			add(0, 10, 0, history.Info, "k0", "a", 5).
			read(20, 30, 1, lin, "k0", 5),
			&register.Final{Transfers: map[string]bool{"a": false}, ResolvedAt: 40 * time.Millisecond}, Invalid, "read(k0) -> 5"},
		{"an unknown add that exists at the end must be in the final read", new(timed).
			add(0, 10, 0, history.Info, "k0", "a", 5).
			read(50, 60, 9, lin, "k0", 0),
			&register.Final{Transfers: map[string]bool{"a": true}, ResolvedAt: 40 * time.Millisecond}, Invalid, "read(k0) -> 0"},
		{"an unknown add that exists at the end, in the final read", new(timed).
			add(0, 10, 0, history.Info, "k0", "a", 5).
			read(20, 30, 1, lin, "k0", 0).
			read(50, 60, 9, lin, "k0", 5),
			&register.Final{Transfers: map[string]bool{"a": true}, ResolvedAt: 40 * time.Millisecond}, Valid, ""},
		{"a failed add is never seen", new(timed).
			add(0, 10, 0, history.Fail, "k0", "a", 5).
			read(20, 30, 1, lin, "k0", 5), nil, Invalid, "read(k0) -> 5"},
		{"a failed add that exists at the end", new(timed).
			add(0, 10, 0, history.Fail, "k0", "a", 5).
			read(50, 60, 9, lin, "k0", 5),
			&register.Final{Transfers: map[string]bool{"a": true}, ResolvedAt: 40 * time.Millisecond}, Invalid, "add a reported failed"},
		{"stale reads are not checked", new(timed).
			add(0, 10, 0, history.OK, "k0", "a", 5).
			read(20, 30, 1, register.FReadStale, "k0", 0).
			read(40, 50, 1, lin, "k0", 5), nil, Valid, ""},
		{"keys are independent", new(timed).
			add(0, 10, 0, history.OK, "k0", "a", 5).
			add(0, 10, 1, history.OK, "k1", "b", 3).
			read(20, 30, 0, lin, "k0", 5).
			read(20, 30, 1, lin, "k1", 3), nil, Valid, ""},
		{"the key that is not linearizable is named", new(timed).
			add(0, 10, 0, history.OK, "k0", "a", 5).
			add(0, 10, 1, history.OK, "k1", "b", 3).
			read(20, 30, 0, lin, "k0", 5).
			read(20, 30, 1, lin, "k1", 0), nil, Invalid, "key k1"},
		{"nothing read proves nothing", new(timed).
			add(0, 10, 0, history.OK, "k0", "a", 5), nil, Unknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			html := filepath.Join(t.TempDir(), "linearizability.html")
			r := Linearizable(tt.h.ops, tt.final, html)
			t.Logf("%s: %s", r.Verdict, r.CounterExample)
			expect(t, r, tt.want, tt.example)
			if tt.want == Invalid {
				b, err := os.ReadFile(html)
				if err != nil || !strings.Contains(string(b), "<html") {
					t.Fatalf("no visualization for an invalid history: %v", err)
				}
			}
		})
	}
}

func TestLinearizableRejectsMalformedHistories(t *testing.T) {
	h := new(timed).op(0, 0, history.OK, register.FRead, register.ReadValue{Key: "k0"})
	expect(t, Linearizable(h.ops, nil, ""), Invalid, "malformed history")
}

// TestLinearizableManyUnknownAdds keeps porcupine honest on the shape a faulty run produces:
// many adds with unknown outcomes open to the end while reads go on.
func TestLinearizableManyUnknownAdds(t *testing.T) {
	h := new(timed)
	var sum int64
	ms := 0
	for i := range 40 {
		id := "u" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		amount := int64(1 + i)
		if i%3 == 0 {
			h.add(ms, ms+5, 100+i, history.Info, "k0", id, amount)
			if i%2 == 0 {
				sum += amount // this one applied, right away
			}
		} else {
			h.add(ms, ms+5, 0, history.OK, "k0", id, amount)
			sum += amount
		}
		h.read(ms+6, ms+8, 1, register.FRead, "k0", sum)
		ms += 10
	}
	start := time.Now()
	expect(t, Linearizable(h.ops, nil, ""), Valid, "")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("check took %s", d)
	}
	// The same history with one read off by one is caught.
	bad := slices.Clone(h.ops)
	last := len(bad) - 1
	v := bad[last].Value.(register.ReadValue)
	v.Value--
	bad[last].Value = v
	expect(t, Linearizable(bad, nil, ""), Invalid, "key k0")
}
