package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestRecorderIsConcurrencySafeAndWritesJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	r, err := NewRecorder(time.Now(), path)
	if err != nil {
		t.Fatal(err)
	}
	const workers, perWorker = 8, 100
	var wg sync.WaitGroup
	for p := range workers {
		wg.Go(func() {
			for range perWorker {
				inv := r.Invoke(p, "transfer", map[string]int{"amount": 1}, "n1")
				r.Complete(inv, OK, nil, nil)
			}
		})
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ops := r.Ops()
	if len(ops) != 2*workers*perWorker {
		t.Fatalf("recorded %d ops, want %d", len(ops), 2*workers*perWorker)
	}
	for i, op := range ops {
		if op.Index != i {
			t.Fatalf("op %d has index %d", i, op.Index)
		}
		if i > 0 && op.Time < ops[i-1].Time {
			t.Fatalf("op %d time %s before op %d time %s", i, op.Time, i-1, ops[i-1].Time)
		}
	}
	pairs, err := Pairs(ops)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != workers*perWorker {
		t.Fatalf("%d pairs, want %d", len(pairs), workers*perWorker)
	}

	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var op Op
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
		if op.Index != lines {
			t.Fatalf("line %d holds index %d", lines, op.Index)
		}
		lines++
	}
	if lines != len(ops) {
		t.Fatalf("file has %d lines, want %d", lines, len(ops))
	}
}

func TestPairs(t *testing.T) {
	inv := func(p int) Op { return Op{Process: p, Type: Invoke, F: "read"} }
	done := func(p int, typ Type) Op { return Op{Process: p, Type: typ, F: "read"} }
	tests := []struct {
		name     string
		ops      []Op
		wantErr  bool
		outcomes []Type
	}{
		{name: "interleaved processes pair by process", ops: []Op{inv(1), inv(2), done(2, Fail), done(1, OK)}, outcomes: []Type{OK, Fail}},
		{name: "an open invocation counts as info", ops: []Op{inv(1), done(1, OK), inv(1)}, outcomes: []Type{OK, Info}},
		{name: "nemesis records are skipped", ops: []Op{{Process: NemesisProcess, Type: Info, F: "start kill"}, inv(1), done(1, Info)}, outcomes: []Type{Info}},
		{name: "a completion without invocation is an error", ops: []Op{done(1, OK)}, wantErr: true},
		{name: "two open invocations of one process are an error", ops: []Op{inv(1), inv(1)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pairs, err := Pairs(tt.ops)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(pairs) != len(tt.outcomes) {
				t.Fatalf("%d pairs, want %d", len(pairs), len(tt.outcomes))
			}
			for i, p := range pairs {
				if p.Outcome() != tt.outcomes[i] {
					t.Errorf("pair %d outcome %s, want %s", i, p.Outcome(), tt.outcomes[i])
				}
			}
		})
	}
}

func TestCompleteKeepsTheError(t *testing.T) {
	r, _ := NewRecorder(time.Now(), "")
	inv := r.Invoke(3, "transfer", nil, "n2")
	op := r.Complete(inv, Info, nil, errors.New("deadline exceeded"))
	if op.Error != "deadline exceeded" || op.Process != 3 || op.Node != "n2" || op.F != "transfer" {
		t.Fatalf("completion = %+v", op)
	}
}
