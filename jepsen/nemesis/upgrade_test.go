package nemesis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/jepsen/history"
)

// upgradeFake is a 3-node cluster whose nodes run "old" or "new"; n2 leads until it stops,
// then the lowest running node does. Its gate answers as bankd's does, unless leaky.
type upgradeFake struct {
	fakeCluster
	bins    [3]string
	running [3]bool
	next    [3]string
	// leaky accepts the new command type even while a node is old (the bug the checker must
	// see).
	leaky bool
}

func newUpgradeFake() *upgradeFake {
	return &upgradeFake{bins: [3]string{"old", "old", "old"}, running: [3]bool{true, true, true}}
}

func (f *upgradeFake) Leader(context.Context) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running[1] {
		return 1
	}
	for i, r := range f.running {
		if r {
			return i
		}
	}
	return -1
}

func (f *upgradeFake) Stop(i int) (int, error) {
	f.mu.Lock()
	f.running[i] = false
	f.mu.Unlock()
	return 0, f.record(fmt.Sprint("stop ", i))
}

func (f *upgradeFake) SetBin(i int, bin string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next[i] = bin
}

func (f *upgradeFake) Restart(i int) error {
	f.mu.Lock()
	f.running[i] = true
	if f.next[i] != "" {
		f.bins[i] = f.next[i]
	}
	f.mu.Unlock()
	return f.record(fmt.Sprint("restart ", i))
}

func (f *upgradeFake) WaitCaughtUp(_ context.Context, i int) error {
	return f.record(fmt.Sprint("caught-up ", i))
}

func (f *upgradeFake) compact(_ context.Context, via int) (*bankdv1.Compaction, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bins[via] == "old" {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("404 Not Found"))
	}
	var behind []string
	for i, b := range f.bins {
		if b == "old" {
			behind = append(behind, fmt.Sprintf("n%d (version old)", i+1))
		}
	}
	if len(behind) > 0 && !f.leaky {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("apply COMMAND_TYPE_COMPACT: not every node applies this command yet: upgrade %s first", strings.Join(behind, ", ")))
	}
	return &bankdv1.Compaction{EventsDeleted: 3}, nil
}

func runUpgradeNemesis(t *testing.T, f *upgradeFake) *Nemesis {
	t.Helper()
	hist, _ := history.NewRecorder(time.Now(), "")
	n := New(Config{Kind: Upgrade, RecoveryWindow: 10 * time.Millisecond,
		Upgrade: &UpgradeConfig{Bin: "new", Compact: f.compact}}, f, hist)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	// The run's time is up long before the upgrade is done: it is finished anyway.
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// Followers first, the leader last; every node ends on the new binary; each answer of the gate
// is the one bankd gives (unimplemented from the old leader, failed_precondition naming the old
// nodes from a new one) and the new command applies after the last step.
func TestUpgradeNemesisUpgradesTheLeaderLast(t *testing.T) {
	f := newUpgradeFake()
	n := runUpgradeNemesis(t, f)
	if f.bins != [3]string{"new", "new", "new"} {
		t.Fatalf("binaries after the upgrade: %v", f.bins)
	}
	var order []string
	for _, fault := range n.Faults() {
		if fault.Kind != Upgrade || fault.End == 0 || fault.Error != "" {
			t.Fatalf("fault %+v", fault)
		}
		order = append(order, fault.Variant+" "+strings.Join(fault.Targets, ","))
	}
	if want := []string{"follower n1", "follower n3", "leader n2"}; !slices.Equal(order, want) {
		t.Fatalf("upgrade order %v, want %v", order, want)
	}
	rec := n.Upgrade()
	if len(rec.Steps) != 3 || rec.Accepted == nil || rec.Accepted.Compaction.GetEventsDeleted() != 3 {
		t.Fatalf("record %+v", rec)
	}
	var codes []string
	for _, a := range rec.Gate {
		if !a.Expected {
			t.Fatalf("gate answer judged unexpected: %+v", a)
		}
		codes = append(codes, a.Code+" "+strings.Join(a.Old, ","))
	}
	want := []string{
		"unimplemented n1,n2,n3",                        // before the first step
		"unimplemented n1,n2,n3", "unimplemented n2,n3", // n1 down, then up again
		"unimplemented n2,n3", "unimplemented n2", // n3 down, then up again
		"failed_precondition n2", // n2 (the leader) down: n1 leads
		"ok ",                    // after the last step
	}
	if !slices.Equal(codes, want) {
		t.Fatalf("gate answers\n%q\nwant\n%q", codes, want)
	}
}

// A cluster that applies the new command type while a node runs the old binary is recorded as
// such.
func TestUpgradeNemesisRecordsAnEarlyAcceptance(t *testing.T) {
	f := newUpgradeFake()
	f.leaky = true
	n := runUpgradeNemesis(t, f)
	var early []GateAnswer
	for _, a := range n.Upgrade().Gate {
		if a.Code == "ok" && len(a.Old) > 0 {
			early = append(early, a)
			if a.Expected {
				t.Fatalf("an acceptance while %v are old judged expected", a.Old)
			}
		}
	}
	if len(early) == 0 {
		t.Fatalf("no early acceptance recorded: %+v", n.Upgrade().Gate)
	}
}

func TestUpgradeCannotBeCombined(t *testing.T) {
	if _, err := ParseKind("upgrade,kill"); err == nil {
		t.Fatal("upgrade accepted in a list")
	}
}

func TestNamedNodes(t *testing.T) {
	got := NamedNodes("apply COMMAND_TYPE_COMPACT: not every node applies this command yet: upgrade n3 (version 27b4134), n1 (not seen in gossip) first",
		[]string{"n1", "n2", "n3"})
	if !slices.Equal(got, []string{"n1", "n3"}) {
		t.Fatalf("named %v", got)
	}
}
