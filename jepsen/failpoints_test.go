package jepsen

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/internal/failpoint"
	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/nemesis"
	"github.com/bankd/bankd/jepsen/workload/lightning"
	"github.com/bankd/bankd/jepsen/workload/locks"
	"github.com/bankd/bankd/jepsen/workload/stream"
)

// failpointRuns are the runs that prove each checker catches a real bug: bankd built with
// -tags failpoints and broken on purpose by one failpoint, under the nemesis that exposes it.
// Each run must come out invalid, and the named checker must be among those that say so.
var failpointRuns = []failpointRun{
	// Reads answered from any node's state: a node behind (a follower a few entries behind,
	// a partitioned old leader far behind) misses transfers acknowledged before the read.
	{failpoint.StaleLinearizableRead, "bank", nemesis.PartitionLeader, checker.NameFreshReads, 3, 0},
	// The same bug seen by porcupine: a "linearizable" read of a per-key counter served by a
	// node behind misses an add acknowledged before it, which no linearization allows.
	{failpoint.StaleLinearizableRead, "register", nemesis.PartitionLeader, checker.NameLinearizable, 3, 0},
	// Transfers acknowledged before Raft committed them: those the state machine then refuses,
	// and those an isolated leader accepted and lost at the heal, are missing at the end.
	{failpoint.AckBeforeCommit, "bank", nemesis.PartitionLeader, checker.NameLostWrites, 3, 0},
	// A killed node replays its log on top of its state when it restarts: transfers refused
	// the first time apply the second, and its state hash departs from the others'.
	{failpoint.SkipAppliedIndexCheck, "bank", nemesis.Kill, checker.NameReplicas, 3, 0},
	// Contending clients are granted the lock while another holder's lease runs; no fault is
	// needed.
	{failpoint.LockGrantedTwice, locks.Name, nemesis.None, checker.NameLockExclusive, 3, 0},
	// Fences are not checked: holders back from a pause longer than their lease write after
	// the lock went to someone else. No fault is needed.
	{failpoint.SkipFenceCheck, locks.Name, nemesis.None, checker.NameFencedWrites, 3, 0},
	// Every plain transfer debits one sat less than it credits: the first read after one shows
	// debits != credits. No fault is needed.
	{failpoint.UnbalancedTransfer, "bank", nemesis.None, checker.NameConservation, 3, 0},
	// The stored-transfer lookup is skipped: a resent, already acknowledged id applies again
	// under a new index, answered replayed=false. No fault is needed (30% of the idempotent
	// workload's operations resend an acknowledged id).
	{failpoint.SkipIdempotencyCheck, "idempotent", nemesis.None, checker.NameAppliedOnce, 3, 0},
	// Every resumed event stream starts one index late: the event at from_index is lost
	// whenever a watcher reconnects (every 1.5-3 s). No fault is needed.
	{failpoint.StreamResumeSkip, stream.Name, nemesis.None, checker.NameStreamOrder, 3, 0},
	// The leader exits when it is cut off and steps down; the nemesis restarts only what it
	// killed itself, so the node is found dead at the end.
	{failpoint.CrashOnLeadershipLoss, "bank", nemesis.PartitionLeader, checker.NameRecovery, 3, 0},
	// Stale reads ignore the client's Bankd-Min-Index: a process that read index N on one node
	// reads an older state on a node behind (a non-voter or follower a few entries behind, a
	// side of the halves without a quorum). Half the register reads are stale with non-voters.
	{failpoint.IgnoreMinIndex, "register", nemesis.PartitionHalves, checker.NameMonotonicReads, 5, 2},
	// A payment its node holds in flight for more than 2 s is sent again from another pool node;
	// the held one completes at the heal, and the outside world is paid twice.
	{failpoint.LnPayOnAnotherNode, lightning.Name, nemesis.LndHoldKind, checker.NameLnPayOnce, 3, 0},
	// Every settlement the subscription delivers is booked twice. No fault is needed.
	{failpoint.LnCreditTwice, lightning.Name, nemesis.None, checker.NameLnCreditOnce, 3, 0},
	// A payment its node holds in flight for more than 2 s is recorded FAILED and the customer
	// refunded; the node completes it at the heal.
	{failpoint.LnFailOnTimeout, lightning.Name, nemesis.LndHoldKind, checker.NameLnNoEarlyFailure, 3, 0},
}

// failpointRun is one bug and the run that must catch it.
type failpointRun struct {
	failpoint string
	workload  string
	nemesis   nemesis.Kind
	checker   string
	// nodes and nonvoters shape the cluster.
	nodes, nonvoters int
}

// TestEveryFailpointIsCaught runs bankd broken by each failpoint for 15 s on the table's
// cluster and requires an invalid verdict from the checker that guards against that bug: a
// checker that cannot fail would prove nothing.
func TestEveryFailpointIsCaught(t *testing.T) {
	needHosts(t)
	bin := filepath.Join(t.TempDir(), "bankd-failpoints")
	bctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err := BuildFailpoints(bctx, bin)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	for _, fr := range failpointRuns {
		t.Run(fr.failpoint+"/"+fr.workload, func(t *testing.T) {
			rep := runForTest(t, Config{
				Workload: fr.workload, Nemesis: fr.nemesis, Nodes: fr.nodes, NonVoters: fr.nonvoters, Duration: 15 * time.Second, Seed: 7,
				Bin: bin, Failpoint: fr.failpoint, FaultWindow: 4 * time.Second, RecoveryWindow: 3 * time.Second,
			}, checker.Invalid)
			for _, r := range rep.Results {
				if r.Name == fr.checker {
					if r.Verdict != checker.Invalid {
						t.Fatalf("%s says %s with failpoint %s; it must catch it", r.Name, r.Verdict, fr.failpoint)
					}
					t.Logf("%s: %d violations, first: %s", r.Name, r.Violations, r.CounterExample)
					return
				}
			}
			t.Fatalf("no %s result", fr.checker)
		})
	}
}

// TestLocksUnderPartitionIsValid is the control of the lock workload: real bankd, the leader
// partitioned away and healed, and lock-exclusive must find nothing.
func TestLocksUnderPartitionIsValid(t *testing.T) {
	rep := runMustBeValid(t, Config{Workload: locks.Name, Nemesis: nemesis.PartitionLeader, Duration: 15 * time.Second, Seed: 7})
	if rep.Counts.OK < 10 {
		t.Fatalf("run proved little: %d ok ops", rep.Counts.OK)
	}
}

// A failpoint run against a binary without the failpoints tag would be valid and prove
// nothing, so it is refused; so is an unknown failpoint.
func TestFailpointRunNeedsAFailpointsBuild(t *testing.T) {
	cfg := Config{Workload: "bank", Nemesis: nemesis.None, Nodes: 3, Duration: time.Second, ReportDir: t.TempDir(), Bin: os.Args[0]}
	cfg.Failpoint = "no-such-failpoint"
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "want one of") {
		t.Fatalf("unknown failpoint: %v", err)
	}
	// This test binary was built without the tag.
	cfg.Failpoint = failpoint.AckBeforeCommit
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "not built with -tags failpoints") {
		t.Fatalf("binary without the tag: %v", err)
	}
	if env := failpointEnv(failpoint.AckBeforeCommit); len(env) != 1 || env[0] != "BANKD_FAILPOINTS=ack-before-commit" {
		t.Fatalf("env %v", env)
	}
}

// Every failpoint bankd knows has a run here that shows a checker catching it.
func TestEveryFailpointHasARun(t *testing.T) {
	for _, name := range failpoint.Names {
		if !slices.ContainsFunc(failpointRuns, func(fr failpointRun) bool { return fr.failpoint == name }) {
			t.Errorf("failpoint %s has no run in failpointRuns", name)
		}
	}
}
