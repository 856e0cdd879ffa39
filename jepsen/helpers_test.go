package jepsen

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/hosts"
)

// needHosts skips a jepsen run with -short or where namespace hosts cannot be made (not root).
func needHosts(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("jepsen run; skipped with -short")
	}
	if err := hosts.Supported(); err != nil {
		t.Skipf("jepsen hosts unsupported here: %v", err)
	}
}

// builtBankd is the bankd binary `make build` made (or BANKD_BIN); the test skips without one.
func builtBankd(t *testing.T) string {
	t.Helper()
	bin, _ := filepath.Abs(testcluster.BankdBin())
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no bankd binary at %s (run `make build` or set BANKD_BIN)", bin)
	}
	return bin
}

// runMustBeValid runs cfg on real hosts with the built bankd and fails unless every checker
// says valid and the run did something: at least one ok operation and one fault. Zero fields
// take the short-suite shape: 3 nodes, 20 s, faults of 4 s, recoveries of 3 s.
func runMustBeValid(t *testing.T, cfg Config) *Report {
	t.Helper()
	needHosts(t)
	cfg.Bin = builtBankd(t)
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Duration == 0 {
		cfg.Duration = 20 * time.Second
	}
	if cfg.FaultWindow == 0 {
		cfg.FaultWindow = 4 * time.Second
	}
	if cfg.RecoveryWindow == 0 {
		cfg.RecoveryWindow = 3 * time.Second
	}
	rep := runForTest(t, cfg, checker.Valid)
	if rep.Counts.OK == 0 || len(rep.Faults) == 0 {
		t.Fatalf("run proved little: %d ok ops, %d faults", rep.Counts.OK, len(rep.Faults))
	}
	return rep
}

// runForTest performs one run in a temporary report dir (kept when the test fails) and fails
// the test unless the overall verdict is want.
func runForTest(t *testing.T, cfg Config, want checker.Verdict) *Report {
	t.Helper()
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
	cfg.ReportDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("harness error: %v", err)
	}
	t.Log(rep.Line())
	for _, r := range rep.Results {
		t.Logf("%s: %s, %d checked, %d violations %s", r.Name, r.Verdict, r.Checked, r.Violations, r.CounterExample)
	}
	if rep.Verdict != want {
		t.Fatalf("verdict %s, want %s", rep.Verdict, want)
	}
	return rep
}
