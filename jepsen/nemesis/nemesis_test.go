package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
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
	// regions are the hosts of each region (nil: none).
	regions [][]int
	// nonVoters are the hosts cluster.hcl makes non-voters.
	nonVoters []int
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
func (f *fakeCluster) DropPairs(_ context.Context, p [][2]int) error {
	return f.record(fmt.Sprint("drop ", p))
}
func (f *fakeCluster) Loss(_ context.Context, hs []int, p float64) error {
	return f.record(fmt.Sprint("loss ", hs, " ", p))
}
func (f *fakeCluster) Netem(context.Context, int, time.Duration, float64) error {
	return ErrNetemUnsupported
}
func (f *fakeCluster) ClearNetem(context.Context, int) error { return nil }
func (f *fakeCluster) TransferLeadership(_ context.Context, target string) (string, error) {
	return target, f.record("transfer " + target)
}
func (f *fakeCluster) RaftID(_ context.Context, i int) (string, error) {
	return fmt.Sprintf("n%d-old", i+1), nil
}
func (f *fakeCluster) RemoveServer(_ context.Context, id string) error {
	return f.record("remove " + id)
}
func (f *fakeCluster) Wipe(i int) error { return f.record(fmt.Sprint("wipe ", i)) }
func (f *fakeCluster) WaitMember(_ context.Context, i int, old string) (string, error) {
	return fmt.Sprintf("n%d-new", i+1), f.record(fmt.Sprint("member ", i))
}
func (f *fakeCluster) Voter(i int) bool { return !slices.Contains(f.nonVoters, i) }
func (f *fakeCluster) Regions() [][]int { return f.regions }
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
	for _, kind := range []Kind{Kill, Pause, PartitionLeader, PartitionHalves, PartitionOneWay, PartitionRing, Loss, LeaderStorm, Membership} {
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
			if kind == LeaderStorm {
				// Its heal only stops its own goroutine; the windows here are shorter than a gap.
				return
			}
			last := fc.calls[len(fc.calls)-1]
			if last != "heal" && !strings.HasPrefix(last, "restart") && !strings.HasPrefix(last, "resume") &&
				!strings.HasPrefix(last, "member") && !strings.HasPrefix(last, "transfer") {
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
	if k, err := ParseKind("kill, partition-leader"); err != nil || k != "kill,partition-leader" ||
		!slices.Equal(k.Split(), []Kind{Kill, PartitionLeader}) {
		t.Fatalf("composed: %q %v", k, err)
	}
	for _, bad := range []string{"kill,meteor", "none,kill", "kill,"} {
		if _, err := ParseKind(bad); err == nil {
			t.Fatalf("ParseKind accepted %q", bad)
		}
	}
	_, err := ParseKind("clock-skew")
	if err == nil || !strings.Contains(err.Error(), "not supported on namespace hosts: they share the host clock") {
		t.Fatalf("clock-skew: %v", err)
	}
	if _, err := ParseKind("kill,clock-skew"); err == nil {
		t.Fatal("clock-skew accepted in a list")
	}
}

// A majorities ring of 5: each node receives from exactly its two ring neighbours (so it is
// in a majority of 3), no two nodes see the same majority, and every drop is between
// distinct nodes. Of 3: each node receives from one other, one way.
func TestRingDrops(t *testing.T) {
	for _, n := range []int{3, 5} {
		ring := rand.New(rand.NewPCG(3, 0)).Perm(n)
		drops := RingDrops(ring)
		sees := map[int]map[int]bool{}
		for _, to := range ring {
			sees[to] = map[int]bool{}
			for _, from := range ring {
				sees[to][from] = true
			}
		}
		for _, d := range drops {
			if d[0] == d[1] {
				t.Fatalf("self drop %v", d)
			}
			delete(sees[d[1]], d[0])
		}
		views := map[string]bool{}
		for p, to := range ring {
			if len(sees[to]) != n/2+1 {
				t.Fatalf("n=%d: node %d sees %d nodes, want a bare majority", n, to, len(sees[to]))
			}
			next := ring[(p+1)%n]
			if !sees[to][next] {
				t.Fatalf("n=%d: node %d does not see its ring neighbour %d", n, to, next)
			}
			var v []int
			for k := range sees[to] {
				v = append(v, k)
			}
			slices.Sort(v)
			views[fmt.Sprint(v)] = true
		}
		if len(views) != n {
			t.Fatalf("n=%d: %d distinct majorities, want %d", n, len(views), n)
		}
	}
}

func TestPlanOneWayAndLoss(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 0))
	for range 50 {
		for _, n := range []int{3, 5} {
			p := plan(PartitionOneWay, rng, n, 1)
			if p.targets[0] != 1 || len(p.targets) != 1+min(n/2+1, n-1) || slices.Contains(p.targets[1:], 1) {
				t.Fatalf("oneway of %d: %+v", n, p)
			}
			if d := oneWayDrops(p.variant, p.targets); len(d) != len(p.targets)-1 {
				t.Fatalf("oneway drops %v", d)
			}
			l := plan(Loss, rng, n, 1)
			if l.probability < 0.2 || l.probability > 0.4 || len(l.targets) == 0 {
				t.Fatalf("loss %+v", l)
			}
		}
	}
}

// A composed nemesis picks among its kinds, and only among them.
func TestComposedNemesisPicksAmongItsKinds(t *testing.T) {
	fc := &fakeCluster{}
	hist, _ := history.NewRecorder(time.Now(), "")
	n := New(Config{Kind: "kill,partition-leader", Seed: 3, FaultWindow: 5 * time.Millisecond, RecoveryWindow: 5 * time.Millisecond}, fc, hist)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[Kind]int{}
	for _, f := range n.Faults() {
		seen[f.Kind]++
	}
	if len(seen) != 2 || seen[Kill] == 0 || seen[PartitionLeader] == 0 {
		t.Fatalf("kinds drawn: %v", seen)
	}
}

// The membership fault removes the old identity, kills, wipes and restarts the node, and its
// heal waits for the new identity to be back in its role: a voter as a voter, a non-voter as a
// non-voter, which the fault's note says.
func TestMembershipFaultSequence(t *testing.T) {
	tests := []struct {
		name      string
		nonVoters []int
		wantNote  string // with %d for the node's number
	}{
		{"a voter", nil, "voter again as n%d-new"},
		{"a non-voter", []int{0, 1, 2}, "non-voter again as n%d-new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := &fakeCluster{nonVoters: tt.nonVoters}
			hist, _ := history.NewRecorder(time.Now(), "")
			n := New(Config{Kind: Membership, Seed: 1, FaultWindow: 10 * time.Millisecond, RecoveryWindow: 10 * time.Millisecond}, fc, hist)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			if err := n.Run(ctx); err != nil {
				t.Fatal(err)
			}
			f := n.Faults()[0]
			i := n.index(f.Targets[0])
			want := []string{fmt.Sprintf("remove n%d-old", i+1), fmt.Sprint("kill ", i), fmt.Sprint("wipe ", i),
				fmt.Sprint("restart ", i), fmt.Sprint("restart ", i), fmt.Sprint("member ", i)}
			if !slices.Equal(fc.calls[:6], want) {
				t.Fatalf("calls %v, want %v", fc.calls, want)
			}
			if note := fmt.Sprintf(tt.wantNote, i+1); !strings.Contains(f.Note, note) || (tt.nonVoters == nil && strings.Contains(f.Note, "non-voter")) {
				t.Fatalf("note %q, want it to say %q", f.Note, note)
			}
		})
	}
}

// A leader storm asks only voters to take leadership over (or lets Raft choose).
func TestLeaderStormTargetsOnlyVoters(t *testing.T) {
	fc := &fakeCluster{nonVoters: []int{1, 2}}
	hist, _ := history.NewRecorder(time.Now(), "")
	n := New(Config{Kind: LeaderStorm, Seed: 1, FaultWindow: 2 * time.Second, RecoveryWindow: 10 * time.Millisecond}, fc, hist)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.calls) < 3 {
		t.Fatalf("%d transfers in 2 s, want at least 3", len(fc.calls))
	}
	for _, c := range fc.calls {
		if c != "transfer n1" && c != "transfer " {
			t.Fatalf("%q: a transfer to a non-voter (n2, n3), among %v", c, fc.calls)
		}
	}
}

// A leader storm keeps asking for transfers, 200-500 ms apart, until its heal stops it.
func TestLeaderStormTransfersUntilHealed(t *testing.T) {
	fc := &fakeCluster{}
	hist, _ := history.NewRecorder(time.Now(), "")
	n := New(Config{Kind: LeaderStorm, Seed: 1, FaultWindow: 1500 * time.Millisecond, RecoveryWindow: 10 * time.Millisecond}, fc, hist)
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	fc.mu.Lock()
	calls := len(fc.calls)
	fc.mu.Unlock()
	if calls < 2 || calls > 6 {
		t.Fatalf("%d transfers in about 1.2 s, want 2-6", calls)
	}
	time.Sleep(600 * time.Millisecond)
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.calls) != calls {
		t.Fatal("transfers after the heal")
	}
	if f := n.Faults()[0]; !strings.Contains(f.Note, "transfers answered") {
		t.Fatalf("note %q", f.Note)
	}
}

func TestPlanRegionCutsOffAWholeRegion(t *testing.T) {
	regions := [][]int{{0, 3}, {1, 4}, {2}}
	rng := rand.New(rand.NewPCG(9, 0))
	seen := map[string]bool{}
	for range 50 {
		p := planRegion(rng, regions, 5, 4)
		kind, region, _ := strings.Cut(p.variant, " ")
		seen[kind] = true
		var r int
		if _, err := fmt.Sscanf(region, "r%d", &r); err != nil || r < 0 || r >= len(regions) {
			t.Fatalf("variant %q names no region", p.variant)
		}
		if !slices.Equal(p.targets, regions[r]) {
			t.Fatalf("%s: targets %v, want region r%d's hosts %v", p.variant, p.targets, r, regions[r])
		}
		if kind == "leader-region" && r != 1 {
			t.Fatalf("%s: the leader (host 4) is in r1", p.variant)
		}
	}
	if !seen["leader-region"] || !seen["region"] {
		t.Fatalf("variants drawn: %v, want both leader-region and region", seen)
	}
}

func TestRegionPartitionPartitionsAndHeals(t *testing.T) {
	fc := &fakeCluster{regions: [][]int{{0}, {1}, {2}}}
	hist, _ := history.NewRecorder(time.Now(), "")
	n := New(Config{Kind: RegionPartition, Seed: 1, FaultWindow: 10 * time.Millisecond, RecoveryWindow: 10 * time.Millisecond}, fc, hist)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	f := n.Faults()[0]
	if len(f.Targets) != 1 || !strings.HasPrefix(f.Variant, "leader-region") && !strings.HasPrefix(f.Variant, "region") {
		t.Fatalf("fault %+v", f)
	}
	want := []string{fmt.Sprintf("partition [[%d]]", n.index(f.Targets[0])), "heal"}
	if !slices.Equal(fc.calls[:2], want) {
		t.Fatalf("calls %v, want %v", fc.calls, want)
	}
}

func TestRegionPartitionWithoutRegionsIsAHarnessError(t *testing.T) {
	hist, _ := history.NewRecorder(time.Now(), "")
	n := New(Config{Kind: RegionPartition, Seed: 1, FaultWindow: 10 * time.Millisecond, RecoveryWindow: 10 * time.Millisecond}, &fakeCluster{}, hist)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := n.Run(ctx); !errors.Is(err, errNoRegions) {
		t.Fatalf("Run without regions: %v, want errNoRegions", err)
	}
}
