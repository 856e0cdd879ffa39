package jepsen

import (
	"testing"
	"time"

	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/nemesis"
	"github.com/bankd/bankd/jepsen/workload/lightning"
)

// runLightningMustBeValid runs the Lightning workload and requires, besides every checker
// valid, that it made payments and settlements for the checkers to judge.
func runLightningMustBeValid(t *testing.T, cfg Config) *Report {
	t.Helper()
	cfg.Workload = lightning.Name
	rep := runMustBeValid(t, cfg)
	for _, r := range rep.Results {
		switch r.Name {
		case checker.NameLnPayOnce, checker.NameLnCreditOnce, checker.NameLnNoEarlyFailure:
			if r.Checked < 5 {
				t.Fatalf("%s checked only %d", r.Name, r.Checked)
			}
		}
	}
	return rep
}

// TestLightningUnderLndFaultsIsValid is the Lightning workload's short run (in make test): 3
// nodes, a simulated lnd killed, cut off from the leader, slow, erroring or holding payments
// (across a leader change), or a bankd node killed.
func TestLightningUnderLndFaultsIsValid(t *testing.T) {
	runLightningMustBeValid(t, Config{Nemesis: nemesis.Lnd + "," + nemesis.Kill, Duration: 25 * time.Second, Seed: 7})
}

// TestLightningUnderPartitionsIsValid: the Lightning workload under bankd faults alone (the
// leader cut off, halves, kills), 5 nodes. Only with BANKD_JEPSEN_LONG=1.
func TestLightningUnderPartitionsIsValid(t *testing.T) {
	longJepsen(t)
	runLightningMustBeValid(t, Config{Nemesis: "partition-leader,partition-halves,kill", Nodes: 5, Duration: 25 * time.Second, Seed: 7})
}

// TestLightningUnderLndFaultsOnFiveNodesIsValid: every lnd fault and bankd kills, 5 nodes.
// Only with BANKD_JEPSEN_LONG=1.
func TestLightningUnderLndFaultsOnFiveNodesIsValid(t *testing.T) {
	longJepsen(t)
	runLightningMustBeValid(t, Config{Nemesis: nemesis.Lnd + "," + nemesis.Kill, Nodes: 5, Duration: 25 * time.Second, Seed: 11})
}
