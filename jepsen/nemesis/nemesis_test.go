package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bankd/bankd/jepsen/history"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		kind        Kind
		n, leader   int
		wantTargets func(variant string, targets []int) bool
	}{
		{kind: Pause, n: 3, leader: 2, wantTargets: func(_ string, ts []int) bool { return slices.Equal(ts, []int{2}) }},
		{kind: PartitionLeader, n: 5, leader: 4, wantTargets: func(_ string, ts []int) bool { return slices.Equal(ts, []int{4}) }},
		{kind: PartitionHalves, n: 5, leader: 0, wantTargets: func(_ string, ts []int) bool { return len(ts) == 2 }},
		{kind: PartitionHalves, n: 3, leader: 0, wantTargets: func(_ string, ts []int) bool { return len(ts) == 1 }},
		{kind: Kill, n: 5, leader: 1, wantTargets: func(v string, ts []int) bool {
			switch v {
			case "one":
				return len(ts) == 1
			case "leader":
				return slices.Equal(ts, []int{1})
			case "minority":
				return len(ts) == 2
			}
			return false
		}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s of %d nodes", tt.kind, tt.n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 0))
			for range 50 {
				v, ts := Plan(tt.kind, rng, tt.n, tt.leader)
				if !tt.wantTargets(v, ts) {
					t.Fatalf("plan %s %v not as expected", v, ts)
				}
				for _, i := range ts {
					if i < 0 || i >= tt.n {
						t.Fatalf("target %d out of range", i)
					}
				}
			}
		})
	}
}

func TestPlanIsDeterministicInTheSeed(t *testing.T) {
	draw := func(seed uint64) []string {
		rng := rand.New(rand.NewPCG(seed, 0))
		var out []string
		for range 20 {
			v, ts := Plan(Kill, rng, 5, 0)
			out = append(out, fmt.Sprint(v, ts))
		}
		return out
	}
	if !slices.Equal(draw(7), draw(7)) {
		t.Fatal("same seed, different schedule")
	}
	if slices.Equal(draw(7), draw(8)) {
		t.Fatal("different seeds, same schedule")
	}
}

// fakeCluster records the calls the nemesis makes.
type fakeCluster struct {
	mu    sync.Mutex
	calls []string
	// partitionTakes is how long Partition takes (it gives up when its context ends).
	partitionTakes time.Duration
}

func (f *fakeCluster) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return nil
}
func (f *fakeCluster) Size() int                  { return 3 }
func (f *fakeCluster) NodeID(i int) string        { return fmt.Sprintf("n%d", i+1) }
func (f *fakeCluster) Leader(context.Context) int { return 1 }
func (f *fakeCluster) Kill(i int) error           { return f.record(fmt.Sprint("kill ", i)) }
func (f *fakeCluster) Restart(i int) error        { return f.record(fmt.Sprint("restart ", i)) }
func (f *fakeCluster) Pause(i int) error          { return f.record(fmt.Sprint("pause ", i)) }
func (f *fakeCluster) Resume(i int) error         { return f.record(fmt.Sprint("resume ", i)) }
func (f *fakeCluster) Heal(context.Context) error { return f.record("heal") }
func (f *fakeCluster) Partition(ctx context.Context, g [][]int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(f.partitionTakes):
	}
	return f.record(fmt.Sprint("partition ", g))
}

// TestRunEndingDuringAnInjectionIsNoError: a slow partition (iptables under load) that is
// still being put in place when the run ends completes and is healed, without a harness error.
func TestRunEndingDuringAnInjectionIsNoError(t *testing.T) {
	fc := &fakeCluster{partitionTakes: 150 * time.Millisecond}
	hist, _ := history.NewRecorder(time.Now(), "")
	n := New(Config{Kind: PartitionLeader, Seed: 1, FaultWindow: 30 * time.Millisecond, RecoveryWindow: 10 * time.Millisecond}, fc, hist)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if faults := n.Faults(); len(faults) != 1 || faults[0].End == 0 || n.Active() != "" {
		t.Fatalf("faults %+v, active %q: want one, healed", faults, n.Active())
	}
}

func TestRunHealsEveryFaultItInjects(t *testing.T) {
	for _, kind := range []Kind{Kill, Pause, PartitionLeader, PartitionHalves} {
		t.Run(string(kind), func(t *testing.T) {
			fc := &fakeCluster{}
			hist, _ := history.NewRecorder(time.Now(), "")
			n := New(Config{Kind: kind, Seed: 1, FaultWindow: 30 * time.Millisecond, RecoveryWindow: 10 * time.Millisecond}, fc, hist)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if err := n.Run(ctx); err != nil {
				t.Fatal(err)
			}
			faults := n.Faults()
			if len(faults) == 0 {
				t.Fatal("no fault injected")
			}
			for _, f := range faults {
				if f.End < f.Start || f.End == 0 {
					t.Fatalf("fault %+v never healed", f)
				}
			}
			if n.Active() != "" {
				t.Fatalf("fault %s still active after Run", n.Active())
			}
			var starts, heals int
			for _, op := range hist.Ops() {
				if op.Process != history.NemesisProcess {
					t.Fatalf("nemesis record with process %d", op.Process)
				}
				switch op.F {
				case "start " + string(kind):
					starts++
				case "heal " + string(kind):
					heals++
				}
			}
			if starts != len(faults) || heals != len(faults) {
				t.Fatalf("%d starts and %d heals recorded for %d faults", starts, heals, len(faults))
			}
			fc.mu.Lock()
			defer fc.mu.Unlock()
			last := fc.calls[len(fc.calls)-1]
			if last != "heal" && last[:7] != "restart" && last[:6] != "resume" {
				t.Fatalf("last call %q is not a heal", last)
			}
		})
	}
}

func TestParseKind(t *testing.T) {
	for _, k := range Kinds {
		if got, err := ParseKind(string(k)); err != nil || got != k {
			t.Fatalf("ParseKind(%s) = %s, %v", k, got, err)
		}
	}
	if _, err := ParseKind("meteor"); err == nil {
		t.Fatal("ParseKind accepted an unknown nemesis")
	}
}
