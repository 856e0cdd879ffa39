package jepsen

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/jepsen/hosts"
	"github.com/bankd/bankd/jepsen/nemesis"
)

// One short run (3 nodes) per nemesis of issue 3 that must come out valid. Three run by
// default (about 25 s each); the others only with BANKD_JEPSEN_LONG=1, to keep `make test`
// short. Each is skipped with -short, without root or without a built bankd (runMustBeValid).

// longJepsen skips a slow jepsen run unless BANKD_JEPSEN_LONG=1.
func longJepsen(t *testing.T) {
	t.Helper()
	if os.Getenv("BANKD_JEPSEN_LONG") != "1" {
		t.Skip("slow jepsen run; set BANKD_JEPSEN_LONG=1")
	}
}

// TestBankUnderMembershipIsValid: a node removed, wiped and re-added under a new Raft identity
// twice; replicas-equal compares it with the others at the end.
func TestBankUnderMembershipIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: "bank", Nemesis: nemesis.Membership, Seed: 7, Duration: 15 * time.Second})
}

// TestBankUnderPartitionRingIsValid: with 3 nodes the majorities ring is one-way (each node
// hears one other); no leader can hold a quorum for long.
func TestBankUnderPartitionRingIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: "bank", Nemesis: nemesis.PartitionRing, Seed: 7, Duration: 15 * time.Second})
}

// TestRegisterUnderLeaderStormIsValid: leadership moved every 200-500 ms while adds and
// linearizable reads go on.
func TestRegisterUnderLeaderStormIsValid(t *testing.T) {
	runMustBeValid(t, Config{Workload: "register", Nemesis: nemesis.LeaderStorm, Seed: 7, Duration: 15 * time.Second})
}

// TestBankUnderRegionPartitionIsValid: the nodes in three regions (30, 50 and 80 ms apart,
// every Raft and API connection between them delayed) while whole regions are cut off and
// healed; the checkers must hold with latency on.
func TestBankUnderRegionPartitionIsValid(t *testing.T) {
	regions, err := hosts.DefaultRegions(3)
	if err != nil {
		t.Fatal(err)
	}
	runMustBeValid(t, Config{Workload: "bank", Nemesis: nemesis.RegionPartition, Seed: 7, Duration: 15 * time.Second, Regions: regions})
}

// TestBankUnderUpgradeIsValid: the cluster starts on the previous release (BANKD_PREV_BIN or
// bin/bankd-prev, which `make test` builds) and is upgraded node by node under load, the leader
// last; COMPACT is refused until the last step and applies after it (the upgrade result).
func TestBankUnderUpgradeIsValid(t *testing.T) {
	prev := testcluster.PrevBankdBin()
	if prev == "" {
		t.Skip("no previous release binary: set BANKD_PREV_BIN or run `make prev`")
	}
	rep := runMustBeValid(t, Config{Workload: "bank", Nemesis: nemesis.Upgrade, PrevBin: prev, Seed: 7, Duration: 15 * time.Second})
	if len(rep.Faults) != 3 || rep.Faults[2].Variant != "leader" {
		t.Fatalf("upgrade steps %+v, want 3 with the leader last", rep.Faults)
	}
}

// TestBankUnderPartitionOneWayIsValid (BANKD_JEPSEN_LONG=1): the leader's packets to a
// majority dropped, or theirs to it, one way only.
func TestBankUnderPartitionOneWayIsValid(t *testing.T) {
	longJepsen(t)
	runMustBeValid(t, Config{Workload: "bank", Nemesis: nemesis.PartitionOneWay, Seed: 7})
}

// TestRegisterUnderLossIsValid (BANKD_JEPSEN_LONG=1): 20-40% of the packets leaving one node
// or every node dropped (iptables statistic; no delay without netem).
func TestRegisterUnderLossIsValid(t *testing.T) {
	longJepsen(t)
	runMustBeValid(t, Config{Workload: "register", Nemesis: nemesis.Loss, Seed: 7})
}

// TestBankUnderComposedNemesisIsValid (BANKD_JEPSEN_LONG=1): kill and partition-leader picked
// per window.
func TestBankUnderComposedNemesisIsValid(t *testing.T) {
	longJepsen(t)
	runMustBeValid(t, Config{Workload: "bank", Nemesis: "kill,partition-leader", Seed: 7})
}

// A run with clock-skew is refused before anything is built, with the reason.
func TestClockSkewIsRefused(t *testing.T) {
	cfg := Config{Workload: "bank", Nemesis: nemesis.ClockSkew, Nodes: 3, Duration: time.Second, ReportDir: t.TempDir()}
	err := cfg.validate()
	if err == nil || !strings.Contains(err.Error(), "they share the host clock") {
		t.Fatalf("clock-skew: %v", err)
	}
	cfg.Nemesis = "kill,partition-leader"
	if err := cfg.validate(); err != nil {
		t.Fatalf("composed nemesis refused: %v", err)
	}
}

// A region partition without regions is refused before anything is built.
func TestRegionPartitionNeedsRegions(t *testing.T) {
	cfg := Config{Workload: "bank", Nemesis: "kill,region-partition", Nodes: 3, Duration: time.Second, ReportDir: t.TempDir()}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "needs at least 2 regions") {
		t.Fatalf("region-partition without regions: %v", err)
	}
	regions, err := hosts.DefaultRegions(3)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Regions = regions
	if err := cfg.validate(); err != nil {
		t.Fatalf("region-partition with 3 regions refused: %v", err)
	}
}
