package jepsen

import (
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/nemesis"
)

// TestBankUnderKillIsValid is the short jepsen suite: a 30 s bank run on 3 nodes while the
// kill nemesis SIGKILLs and restarts nodes; every checker must say valid.
func TestBankUnderKillIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: "bank", Nemesis: nemesis.Kill, Duration: 30 * time.Second, Seed: 7, RecoveryWindow: 4 * time.Second})
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
