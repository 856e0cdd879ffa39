package jepsen

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/nemesis"
	"github.com/bankd/bankd/jepsen/workload/register"
)

// TestBankUnderKillIsValid is the short jepsen suite: a 30 s bank run on 3 nodes while the
// kill nemesis SIGKILLs and restarts nodes; every checker must say valid.
func TestBankUnderKillIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: "bank", Nemesis: nemesis.Kill, Duration: 30 * time.Second, Seed: 7, RecoveryWindow: 4 * time.Second})
}

// TestRegisterWithNonVotersUnderPartitionsIsValid: 5 nodes of which the last 2 are non-voters
// (read replicas), the register workload with half its reads stale (each sending its process's
// Bankd-Min-Index), while the leader is cut off, the nodes are split in halves (a side may be
// all non-voters, or hold the leader with a bare quorum of voters) or killed. Linearizable
// reads must stay linearizable and no process may see the state go back, whichever replica
// serves it.
func TestRegisterWithNonVotersUnderPartitionsIsValid(t *testing.T) {
	rep := runMustBeValid(t, Config{Workload: "register", Nemesis: "partition-leader,partition-halves,kill",
		Nodes: 5, NonVoters: 2, Duration: 30 * time.Second, Seed: 7})
	for _, r := range rep.Results {
		if r.Name == checker.NameMonotonicReads && r.Checked < 100 {
			t.Fatalf("%s checked only %d reads", r.Name, r.Checked)
		}
	}
	served := map[string]int{}
	for _, op := range readOps(t, rep.Dir) {
		if op.Type == history.OK && op.F == register.FReadStale {
			served[op.Value.ServedBy]++
		}
	}
	if served["n4"] == 0 || served["n5"] == 0 {
		t.Fatalf("stale reads served by %v: the non-voters n4 and n5 served none", served)
	}
}

// readOp is a register read as history.jsonl holds it.
type readOp struct {
	Type  history.Type       `json:"type"`
	F     string             `json:"f"`
	Value register.ReadValue `json:"value"`
}

// readOps returns the register reads in the history.jsonl of report dir dir.
func readOps(t *testing.T, dir string) []readOp {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var ops []readOp
	for line := range strings.Lines(string(b)) {
		var op readOp
		if !strings.Contains(line, `"f":"read`) {
			continue
		}
		if err := json.Unmarshal([]byte(line), &op); err != nil {
			t.Fatalf("history line %q: %v", line, err)
		}
		ops = append(ops, op)
	}
	return ops
}

// Non-voters must leave a voter, and cannot run with a nemesis they would break.
func TestNonVotersAreValidated(t *testing.T) {
	tests := []struct {
		name      string
		nemesis   nemesis.Kind
		nodes     int
		nonvoters int
		err       string
	}{
		{"two of five", nemesis.Kill, 5, 2, ""},
		{"all but one", nemesis.PartitionHalves, 3, 2, ""},
		{"membership with two voters", nemesis.Membership, 5, 3, ""},
		{"no voter left", nemesis.Kill, 3, 3, "at least one voter"},
		{"negative", nemesis.Kill, 3, -1, "at least one voter"},
		{"membership may remove the only voter", "kill,membership", 3, 2, "want at least 2 voters"},
		{"upgrade starts on a release without voter", nemesis.Upgrade, 5, 2, "does not know voter = false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Workload: "register", Nemesis: tt.nemesis, Nodes: tt.nodes, NonVoters: tt.nonvoters,
				Duration: time.Second, ReportDir: t.TempDir(), PrevBin: os.Args[0]}
			err := cfg.validate()
			if tt.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want one saying %q", err, tt.err)
			}
		})
	}
}

func TestReportLineLeadsWithTheVerdict(t *testing.T) {
	cfg := map[string]string{"workload": "bank", "nemesis": "kill", "nodes": "3", "seed": "7"}
	tests := []struct {
		name    string
		results []checker.Result
		prefix  string
	}{
		{"all valid", []checker.Result{{Name: "a", Verdict: checker.Valid}}, "VALID  ("},
		{"first invalid checker and its counter-example", []checker.Result{
			{Name: "a", Verdict: checker.Valid},
			{Name: "no-lost-writes", Verdict: checker.Invalid, CounterExample: "transfer t1-2 acknowledged ok is missing"},
			{Name: "c", Verdict: checker.Invalid, CounterExample: "later"},
		}, "INVALID no-lost-writes: transfer t1-2 acknowledged ok is missing  ("},
		{"unknown when nothing was checked", []checker.Result{{Name: "conservation", Verdict: checker.Unknown}}, "UNKNOWN conservation: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := (&Report{Results: tt.results, Config: cfg}).Line()
			if !strings.HasPrefix(line, tt.prefix) {
				t.Fatalf("line %q does not start with %q", line, tt.prefix)
			}
		})
	}
}
