// Package nemesis injects faults into a jepsen run on a schedule driven by a seeded RNG: after
// a quiet recovery window it applies one fault (kill, pause, partition), keeps it for a fault
// window, heals it, and repeats until the run ends, when it always heals. Every fault window
// is recorded in the history (process history.NemesisProcess) and in Faults for the report.
//
// The nemesis acts on processes and packets only, through the Cluster interface; it never
// reaches inside bankd.
package nemesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bankd/bankd/jepsen/history"
)

// Kind names a nemesis.
type Kind string

const (
	None Kind = "none"
	// Kill SIGKILLs one random node, the leader, or a random minority, and restarts them at heal.
	Kill Kind = "kill"
	// Pause SIGSTOPs the leader and SIGCONTs it at heal.
	Pause Kind = "pause"
	// PartitionLeader cuts the leader off from every other node.
	PartitionLeader Kind = "partition-leader"
	// PartitionHalves cuts the nodes into two random halves (the smaller one a minority).
	PartitionHalves Kind = "partition-halves"
)

// Kinds lists every nemesis, for flag help.
var Kinds = []Kind{None, Kill, Pause, PartitionLeader, PartitionHalves}

// ParseKind validates a nemesis name.
func ParseKind(s string) (Kind, error) {
	if k := Kind(s); slices.Contains(Kinds, k) {
		return k, nil
	}
	var names []string
	for _, k := range Kinds {
		names = append(names, string(k))
	}
	return "", fmt.Errorf("unknown nemesis %q (want one of %s)", s, strings.Join(names, ", "))
}

// Cluster is what the nemesis needs from the hosts.
type Cluster interface {
	Size() int
	NodeID(i int) string
	// Leader returns the current leader's index, or -1.
	Leader(ctx context.Context) int
	Kill(i int) error
	Restart(i int) error
	Pause(i int) error
	Resume(i int) error
	Partition(ctx context.Context, groups [][]int) error
	Heal(ctx context.Context) error
}

// Config shapes the schedule.
type Config struct {
	Kind Kind
	Seed uint64
	// FaultWindow is how long each fault lasts [5s].
	FaultWindow time.Duration
	// RecoveryWindow is the quiet time before each fault (and so after each heal) [5s].
	RecoveryWindow time.Duration
	Logger         *slog.Logger
}

// Fault is one fault window.
type Fault struct {
	Kind    Kind     `json:"kind"`
	Variant string   `json:"variant"`
	Targets []string `json:"targets"`
	// Start and End are times since the run started; End is when the heal completed.
	Start time.Duration `json:"start_ns"`
	End   time.Duration `json:"end_ns"`
	Error string        `json:"error,omitempty"`
}

// Nemesis runs one schedule.
type Nemesis struct {
	cfg     Config
	cluster Cluster
	hist    *history.Recorder
	rng     *rand.Rand

	mu     sync.Mutex
	faults []Fault
	// active is the index in faults of the fault in place, or -1.
	active int
}

// New builds a nemesis; Run drives it.
func New(cfg Config, cluster Cluster, hist *history.Recorder) *Nemesis {
	if cfg.FaultWindow == 0 {
		cfg.FaultWindow = 5 * time.Second
	}
	if cfg.RecoveryWindow == 0 {
		cfg.RecoveryWindow = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Nemesis{cfg: cfg, cluster: cluster, hist: hist, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e656d)), active: -1}
}

// healTimeout bounds a heal, which must run even after the run's context ended.
const healTimeout = 30 * time.Second

// Run applies faults until ctx ends, then heals whatever is still in place. It returns the
// first error of injecting or healing (a harness error, not a bankd one).
func (n *Nemesis) Run(ctx context.Context) error {
	if n.cfg.Kind == None {
		<-ctx.Done()
		return nil
	}
	for {
		if !sleep(ctx, n.cfg.RecoveryWindow) {
			return nil
		}
		if err := n.inject(ctx); err != nil {
			return errors.Join(err, n.heal())
		}
		sleep(ctx, n.cfg.FaultWindow)
		if err := n.heal(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Plan picks the variant and target nodes of the next fault of kind among n nodes, given the
// current leader (-1 when unknown). It is deterministic in rng.
func Plan(kind Kind, rng *rand.Rand, n, leader int) (variant string, targets []int) {
	if leader < 0 {
		// No leader known: a random node stands in for it.
		leader = rng.IntN(n)
	}
	switch kind {
	case Kill:
		switch rng.IntN(3) {
		case 0:
			return "one", []int{rng.IntN(n)}
		case 1:
			return "leader", []int{leader}
		default:
			perm := rng.Perm(n)
			minority := perm[:(n-1)/2]
			slices.Sort(minority)
			return "minority", minority
		}
	case Pause:
		return "leader", []int{leader}
	case PartitionLeader:
		return "leader", []int{leader}
	case PartitionHalves:
		perm := rng.Perm(n)
		half := perm[:n/2]
		slices.Sort(half)
		return "halves", half
	}
	return "", nil
}

func (n *Nemesis) inject(ctx context.Context) error {
	size := n.cluster.Size()
	variant, targets := Plan(n.cfg.Kind, n.rng, size, n.cluster.Leader(ctx))
	f := Fault{Kind: n.cfg.Kind, Variant: variant, Start: n.hist.Since()}
	for _, i := range targets {
		f.Targets = append(f.Targets, n.cluster.NodeID(i))
	}
	n.hist.Append(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "start " + string(f.Kind), Value: f.Targets})
	n.cfg.Logger.Info("nemesis start", "kind", f.Kind, "variant", variant, "targets", f.Targets)
	var err error
	switch n.cfg.Kind {
	case Kill:
		for _, i := range targets {
			err = errors.Join(err, n.cluster.Kill(i))
		}
	case Pause:
		for _, i := range targets {
			err = errors.Join(err, n.cluster.Pause(i))
		}
	case PartitionLeader, PartitionHalves:
		// A fault that has begun is put in place even if the run ends meanwhile (the heal
		// right after undoes it): cut short, it would be a harness error. healTimeout bounds it.
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healTimeout)
		err = n.cluster.Partition(ictx, [][]int{targets})
		cancel()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		f.Error = err.Error()
	}
	n.faults = append(n.faults, f)
	n.active = len(n.faults) - 1
	if err != nil {
		return fmt.Errorf("inject %s %v: %w", f.Kind, f.Targets, err)
	}
	return nil
}

// heal undoes the active fault, if any.
func (n *Nemesis) heal() error {
	n.mu.Lock()
	if n.active < 0 {
		n.mu.Unlock()
		return nil
	}
	active := n.active
	f := n.faults[active]
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), healTimeout)
	defer cancel()
	var err error
	switch f.Kind {
	case Kill:
		for _, id := range f.Targets {
			err = errors.Join(err, n.cluster.Restart(n.index(id)))
		}
	case Pause:
		for _, id := range f.Targets {
			err = errors.Join(err, n.cluster.Resume(n.index(id)))
		}
	case PartitionLeader, PartitionHalves:
		err = n.cluster.Heal(ctx)
	}
	n.hist.Append(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "heal " + string(f.Kind), Value: f.Targets})
	n.cfg.Logger.Info("nemesis heal", "kind", f.Kind, "targets", f.Targets, "err", err)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults[active].End = n.hist.Since()
	if err != nil {
		n.faults[active].Error = strings.TrimPrefix(f.Error+"; heal: "+err.Error(), "; ")
	}
	n.active = -1
	if err != nil {
		return fmt.Errorf("heal %s %v: %w", f.Kind, f.Targets, err)
	}
	return nil
}

func (n *Nemesis) index(id string) int {
	for i := range n.cluster.Size() {
		if n.cluster.NodeID(i) == id {
			return i
		}
	}
	return -1
}

// Faults returns the fault windows so far.
func (n *Nemesis) Faults() []Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.faults)
}

// Active describes the fault in place, or "" when none is.
func (n *Nemesis) Active() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.active < 0 {
		return ""
	}
	f := n.faults[n.active]
	return fmt.Sprintf("%s %s %s", f.Kind, f.Variant, strings.Join(f.Targets, ","))
}
