package jepsen

import (
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/jepsen/nemesis"
	"github.com/bankd/bankd/jepsen/workload/payouts"
	"github.com/bankd/bankd/jepsen/workload/stream"
)

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

// TestStreamUnderKillIsValid: watchers that resume on other nodes while nodes are killed and
// restarted receive every event once, in commit order, as the final log has it.
func TestStreamUnderKillIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: stream.Name, Nemesis: nemesis.Kill, Seed: 17})
}

// TestPayoutsUnderKillIsValid: withdrawals requested and cancelled while nodes are killed and
// restarted are each paid once on the fake chain, or not at all when refused or cancelled.
func TestPayoutsUnderKillIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: payouts.Name, Nemesis: nemesis.Kill, Seed: 19})
}
