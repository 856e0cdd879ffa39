package jepsen

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/internal/proccluster"
	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/hosts"
	"github.com/bankd/bankd/jepsen/nemesis"
)

// TestBankUnderKillIsValid is the short jepsen suite: a 30 s bank run on 3 nodes while the
// kill nemesis SIGKILLs and restarts nodes; every checker must say valid.
func TestBankUnderKillIsValid(t *testing.T) {
	if testing.Short() {
		t.Skip("jepsen run; skipped with -short")
	}
	if err := hosts.Supported(); err != nil {
		t.Skipf("jepsen hosts unsupported here: %v", err)
	}
	bin, _ := filepath.Abs(proccluster.DefaultBin())
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no bankd binary at %s (run `make build` or set BANKD_BIN)", bin)
	}
	// Kept when the test fails: the report is the evidence.
	dir, err := os.MkdirTemp("", "bankd-jepsen-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("report kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Workload: "bank", Nemesis: nemesis.Kill, Nodes: 3, Duration: 30 * time.Second, Seed: 7,
		ReportDir: dir, Bin: bin, FaultWindow: 4 * time.Second, RecoveryWindow: 4 * time.Second,
	})
	if err != nil {
		t.Fatalf("harness error: %v", err)
	}
	t.Log(rep.Line())
	if rep.Verdict != checker.Valid {
		for _, r := range rep.Results {
			t.Logf("%s: %s %s", r.Name, r.Verdict, r.CounterExample)
		}
		t.Fatalf("verdict %s", rep.Verdict)
	}
	if rep.Counts.OK == 0 || len(rep.Faults) == 0 {
		t.Fatalf("run proved little: %d ok ops, %d faults", rep.Counts.OK, len(rep.Faults))
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
