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

// runMustBeValid runs cfg (3 nodes, 20 s of workload unless cfg says otherwise) on real hosts and fails unless every
// checker says valid. It skips with -short, without root, or without a built bankd.
func runMustBeValid(t *testing.T, cfg Config) {
	t.Helper()
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
	if cfg.Duration == 0 {
		cfg.Duration = 20 * time.Second
	}
	cfg.Nodes, cfg.ReportDir, cfg.Bin = 3, dir, bin
	cfg.FaultWindow, cfg.RecoveryWindow = 4*time.Second, 3*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
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

// TestRegisterUnderPartitionLeaderIsValid: linearizable reads and adds of three registers
// while the leader is cut off from the others must have a linearization.
func TestRegisterUnderPartitionLeaderIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: "register", Nemesis: nemesis.PartitionLeader, Seed: 11})
}

// TestIdempotentUnderKillIsValid: ids retried across killed and restarted nodes apply once.
func TestIdempotentUnderKillIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: "idempotent", Nemesis: nemesis.Kill, Seed: 13})
}

func TestConfigNamesTheWorkloads(t *testing.T) {
	for _, w := range Workloads {
		cfg := Config{Workload: w, Nemesis: nemesis.Kill, Nodes: 3, Duration: time.Second, ReportDir: "x"}
		if err := cfg.validate(); err != nil {
			t.Errorf("workload %s: %v", w, err)
		}
	}
	cfg := Config{Workload: "nope", Nemesis: nemesis.Kill, Nodes: 3, Duration: time.Second, ReportDir: "x"}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "register") {
		t.Fatalf("unknown workload: %v", err)
	}
}
