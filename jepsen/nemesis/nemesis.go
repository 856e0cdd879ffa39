// Package nemesis injects faults into a jepsen run on a schedule driven by a seeded RNG: after
// a quiet recovery window it applies one fault (kill, pause, partitions, a region cut off,
// packet loss, a storm of leadership transfers, a membership change), keeps it for a fault
// window, heals it, and repeats until the run ends, when it always heals. A comma list of kinds
// picks one of them per window. Every fault window is recorded in the history (process history.NemesisProcess)
// and in Faults for the report.
//
// The nemesis acts on processes, packets, data dirs and the admin API only, through the
// Cluster interface; it never reaches inside bankd.
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
	"github.com/bankd/bankd/jepsen/hosts"
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
	// PartitionOneWay drops the packets one way only between the leader and a majority of
	// the others: from the leader to them ("from-leader") or from them to it ("to-leader").
	PartitionOneWay Kind = "partition-oneway"
	// PartitionRing puts the nodes on a random ring and lets each receive only from the
	// majority of nodes centred on it: with 5 nodes each sees its two neighbours, so every node
	// is in a majority and no two majorities agree; with 3 nodes the ring is one-way.
	PartitionRing Kind = "partition-ring"
	// Loss drops 20-40% (seeded) of the packets leaving one node or every node (iptables'
	// statistic match), and delays them too where tc netem exists.
	Loss Kind = "loss"
	// LeaderStorm asks the leader to transfer leadership (admin API) every 200-500 ms, to a
	// random node or to Raft's choice, for the whole window.
	LeaderStorm Kind = "leader-storm"
	// Membership removes a node from the Raft configuration, kills it, wipes its data dir and
	// restarts it as a new identity; bankd's leader adds it back. The heal waits until it is a
	// voter again (a non-voter again, for a node cluster.hcl makes one).
	Membership Kind = "membership"
	// RegionPartition cuts one whole region (hosts.Regions) off from the others, both ways:
	// the leader's region ("leader-region") or a random one ("region"). It needs regions.
	RegionPartition Kind = "region-partition"
	// Upgrade is a rolling upgrade, not a repeated fault: the cluster starts on the previous
	// release and every node in turn, followers first and the leader last, is restarted on the
	// new binary; the new release's first new command type must be refused until the last
	// step and apply after it (see upgrade.go). It cannot be combined with other kinds.
	Upgrade Kind = "upgrade"
	// ClockSkew is refused: hosts are network namespaces, which share the kernel's clock.
	ClockSkew Kind = "clock-skew"
)

// Kinds lists every nemesis a run can use, for flag help.
var Kinds = append([]Kind{None, Kill, Pause, PartitionLeader, PartitionHalves, PartitionOneWay, PartitionRing,
	Loss, LeaderStorm, Membership, RegionPartition, Upgrade}, lndKinds...)

// unsupported names nemeses that exist in the Jepsen canon but cannot run on these hosts.
var unsupported = map[Kind]string{
	ClockSkew: "not supported on namespace hosts: they share the host clock (network namespaces have no clock of their own)",
}

// ParseKind validates a nemesis name or a comma list of names ("kill,partition-leader"),
// which picks one of them, seeded, for each fault window. none cannot be combined; clock-skew
// is refused with the reason.
func ParseKind(s string) (Kind, error) {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		parts[i] = p
		if why, ok := unsupported[Kind(p)]; ok {
			return "", fmt.Errorf("nemesis %s: %s", p, why)
		}
		if !slices.Contains(Kinds, Kind(p)) {
			var names []string
			for _, k := range Kinds {
				names = append(names, string(k))
			}
			return "", fmt.Errorf("unknown nemesis %q (want one of %s, or a comma list of them)", p, strings.Join(names, ", "))
		}
		if (Kind(p) == None || Kind(p) == Upgrade) && len(parts) > 1 {
			return "", fmt.Errorf("nemesis %q: %s cannot be combined with other nemeses", s, p)
		}
	}
	return Kind(strings.Join(parts, ",")), nil
}

// Split returns the kinds of a (parsed) comma list.
func (k Kind) Split() []Kind {
	var out []Kind
	for _, p := range strings.Split(string(k), ",") {
		out = append(out, Kind(p))
	}
	return out
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
	// DropPairs drops the packets from p[0] to p[1], one way, for every pair.
	DropPairs(ctx context.Context, pairs [][2]int) error
	// Loss drops packets leaving the hosts with the probability; Heal removes it.
	Loss(ctx context.Context, hosts []int, probability float64) error
	// Netem delays packets leaving host i (hosts.ErrNetemUnsupported without tc netem).
	Netem(ctx context.Context, i int, delay time.Duration, lossPercent float64) error
	ClearNetem(ctx context.Context, i int) error
	// Heal removes every drop and loss rule.
	Heal(ctx context.Context) error
	// TransferLeadership asks the leader to hand over to target ("" for Raft's choice).
	TransferLeadership(ctx context.Context, target string) (string, error)
	// RaftID is host i's current Raft id.
	RaftID(ctx context.Context, i int) (string, error)
	// RemoveServer removes a Raft server from the configuration, retrying until it is gone.
	RemoveServer(ctx context.Context, raftID string) error
	// Wipe removes stopped host i's data dir.
	Wipe(i int) error
	// WaitMember waits until host i is in the Raft configuration with the suffrage cluster.hcl
	// gives it (voter or non-voter) under a Raft id other than oldRaftID.
	WaitMember(ctx context.Context, i int, oldRaftID string) (string, error)
	// Voter reports whether cluster.hcl makes host i a voter (not a read replica).
	Voter(i int) bool
	// Regions returns the hosts of each region, nil when the hosts have none.
	Regions() [][]int
}

// ErrNetemUnsupported is what a Cluster's Netem returns without kernel support; the loss
// nemesis then drops packets without delaying them and says so in the fault's note.
var ErrNetemUnsupported = hosts.ErrNetemUnsupported

// Config shapes the schedule.
type Config struct {
	Kind Kind
	Seed uint64
	// FaultWindow is how long each fault lasts [5s].
	FaultWindow time.Duration
	// RecoveryWindow is the quiet time before each fault (and so after each heal) [5s].
	RecoveryWindow time.Duration
	Logger         *slog.Logger
	// Upgrade is required by the upgrade nemesis (and the cluster must be an Upgrader).
	Upgrade *UpgradeConfig
	// Lnd is required by the lnd nemesis: the Lightning workload's simulated network.
	Lnd LndFaults
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
	// Note says what the fault did beyond its variant (transfers made, the new identity of a
	// wiped node, a delay skipped for want of netem).
	Note string `json:"note,omitempty"`
}

// Nemesis runs one schedule.
type Nemesis struct {
	cfg     Config
	cluster Cluster
	hist    *history.Recorder
	rng     *rand.Rand
	kinds   []Kind

	mu     sync.Mutex
	faults []Fault
	// active is the index in faults of the fault in place, or -1.
	active int

	// State of the active fault that its heal needs.
	stopStorm   func() string // stops a leader storm, returns its tally
	oldRaftID   string        // the identity a membership fault removed
	netemHosts  []int         // hosts delayed by netem
	netemBroken bool          // netem proved unsupported; not tried again

	upgrade *upgradeState // the upgrade nemesis's record; nil for other kinds
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
	n := &Nemesis{cfg: cfg, cluster: cluster, hist: hist, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e656d)),
		kinds: cfg.Kind.Split(), active: -1}
	if cfg.Kind == Upgrade {
		n.upgrade = &upgradeState{}
	}
	return n
}

// healTimeout bounds a heal, which must run even after the run's context ended.
const healTimeout = 30 * time.Second

// membershipTimeout bounds each half of a membership fault: removing the server, and waiting
// for the wiped node to be a voter again (an election, a snapshot install, the leader's
// reconciler running once a second).
const membershipTimeout = 60 * time.Second

// Run applies faults until ctx ends, then heals whatever is still in place. It returns the
// first error of injecting or healing (a harness error, not a bankd one).
func (n *Nemesis) Run(ctx context.Context) error {
	switch n.cfg.Kind {
	case None:
		<-ctx.Done()
		return nil
	case Upgrade:
		return n.runUpgrade(ctx)
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
	p := plan(kind, rng, n, leader)
	return p.variant, p.targets
}

// planned is one fault to inject.
type planned struct {
	variant string
	// targets: for PartitionOneWay the leader first, then the majority; for PartitionRing the
	// ring order.
	targets []int
	// probability of a packet's loss (Loss).
	probability float64
	// delay added where netem exists (Loss).
	delay time.Duration
}

func plan(kind Kind, rng *rand.Rand, n, leader int) planned {
	if leader < 0 {
		// No leader known: a random node stands in for it.
		leader = rng.IntN(n)
	}
	switch kind {
	case Kill:
		switch rng.IntN(3) {
		case 0:
			return planned{variant: "one", targets: []int{rng.IntN(n)}}
		case 1:
			return planned{variant: "leader", targets: []int{leader}}
		default:
			perm := rng.Perm(n)
			minority := perm[:(n-1)/2]
			slices.Sort(minority)
			return planned{variant: "minority", targets: minority}
		}
	case Pause:
		return planned{variant: "leader", targets: []int{leader}}
	case PartitionLeader:
		return planned{variant: "leader", targets: []int{leader}}
	case PartitionHalves:
		perm := rng.Perm(n)
		half := perm[:n/2]
		slices.Sort(half)
		return planned{variant: "halves", targets: half}
	case PartitionOneWay:
		var others []int
		for _, i := range rng.Perm(n) {
			if i != leader {
				others = append(others, i)
			}
		}
		majority := others[:min(n/2+1, len(others))]
		slices.Sort(majority)
		variant := "from-leader"
		if rng.IntN(2) == 1 {
			variant = "to-leader"
		}
		return planned{variant: variant, targets: append([]int{leader}, majority...)}
	case PartitionRing:
		return planned{variant: "ring", targets: rng.Perm(n)}
	case Loss:
		p := planned{probability: float64(20+rng.IntN(21)) / 100, delay: time.Duration(20+rng.IntN(81)) * time.Millisecond}
		if rng.IntN(2) == 0 {
			p.variant, p.targets = "one", []int{rng.IntN(n)}
		} else {
			p.variant = "all"
			for i := range n {
				p.targets = append(p.targets, i)
			}
		}
		p.variant += fmt.Sprintf(" %.0f%%", p.probability*100)
		return p
	case LeaderStorm:
		return planned{variant: "storm", targets: []int{leader}}
	case Membership:
		return planned{variant: "remove-wipe-rejoin", targets: []int{rng.IntN(n)}}
	}
	return planned{}
}

// errNoRegions is the error of a region-partition on hosts without regions.
var errNoRegions = errors.New("region-partition needs hosts in regions (jepsen -regions)")

// planRegion picks the region to cut off: the leader's or, as often, a random one (each draw
// made either way, so the schedule depends on the seed alone). Targets are the region's hosts.
func planRegion(rng *rand.Rand, regions [][]int, n, leader int) planned {
	if leader < 0 {
		leader = rng.IntN(n)
	}
	if len(regions) == 0 {
		return planned{variant: "no regions"}
	}
	r := rng.IntN(len(regions))
	variant := "region"
	if rng.IntN(2) == 0 {
		variant = "leader-region"
		for k, hs := range regions {
			if slices.Contains(hs, leader) {
				r = k
			}
		}
	}
	return planned{variant: fmt.Sprintf("%s r%d", variant, r), targets: slices.Clone(regions[r])}
}

// RingDrops returns the one-way drops of a majorities ring over the nodes in ring order: node
// ring[p] receives only from the n/2+1 nodes of the ring centred on it (itself included), so
// each node is in a majority (its own) and, with 5 nodes, no two nodes see the same one.
func RingDrops(ring []int) [][2]int {
	n := len(ring)
	m := n/2 + 1
	var drops [][2]int
	for p, to := range ring {
		sees := map[int]bool{}
		for d := -(m - 1) / 2; d <= m/2; d++ {
			sees[ring[((p+d)%n+n)%n]] = true
		}
		for _, from := range ring {
			if !sees[from] {
				drops = append(drops, [2]int{from, to})
			}
		}
	}
	return drops
}

// oneWayDrops returns the drops of a PartitionOneWay plan: targets[0] is the leader.
func oneWayDrops(variant string, targets []int) [][2]int {
	var drops [][2]int
	for _, m := range targets[1:] {
		if variant == "to-leader" {
			drops = append(drops, [2]int{m, targets[0]})
		} else {
			drops = append(drops, [2]int{targets[0], m})
		}
	}
	return drops
}

func (n *Nemesis) inject(ctx context.Context) error {
	size := n.cluster.Size()
	kind := n.kinds[0]
	if len(n.kinds) > 1 {
		// Only a composed nemesis draws here, so a single kind's schedule for a seed is unchanged.
		kind = n.kinds[n.rng.IntN(len(n.kinds))]
	}
	var p planned
	if IsLnd(kind) {
		// The lnd nemesis draws its own variant and node (a simulated lnd, not a bankd host).
		return n.injectLndFault(ctx, kind)
	}
	if kind == RegionPartition {
		p = planRegion(n.rng, n.cluster.Regions(), size, n.cluster.Leader(ctx))
	} else {
		p = plan(kind, n.rng, size, n.cluster.Leader(ctx))
	}
	variant, targets := p.variant, p.targets
	f := Fault{Kind: kind, Variant: variant, Start: n.hist.Since()}
	for _, i := range targets {
		f.Targets = append(f.Targets, n.cluster.NodeID(i))
	}
	n.hist.Append(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "start " + string(f.Kind), Value: f.Targets})
	n.cfg.Logger.Info("nemesis start", "kind", f.Kind, "variant", variant, "targets", f.Targets)
	var err error
	// A fault that has begun is put in place even if the run ends meanwhile (the heal right
	// after undoes it): cut short, it would be a harness error. healTimeout bounds it.
	timeout := healTimeout
	if kind == Membership {
		timeout = membershipTimeout
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	switch kind {
	case Kill:
		for _, i := range targets {
			err = errors.Join(err, n.cluster.Kill(i))
		}
	case Pause:
		for _, i := range targets {
			err = errors.Join(err, n.cluster.Pause(i))
		}
	case PartitionLeader, PartitionHalves:
		err = n.cluster.Partition(ictx, [][]int{targets})
	case RegionPartition:
		if len(targets) == 0 {
			err = errNoRegions
		} else {
			err = n.cluster.Partition(ictx, [][]int{targets})
		}
	case PartitionOneWay:
		err = n.cluster.DropPairs(ictx, oneWayDrops(variant, targets))
	case PartitionRing:
		err = n.cluster.DropPairs(ictx, RingDrops(targets))
	case Loss:
		f.Note, err = n.injectLoss(ictx, p)
	case LeaderStorm:
		n.startStorm()
	case Membership:
		f.Note, err = n.injectMembership(ictx, targets[0])
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

// injectLndFault records and puts in place one lnd fault (see lnd.go).
func (n *Nemesis) injectLndFault(ctx context.Context, kind Kind) error {
	f := Fault{Kind: kind, Start: n.hist.Since()}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healTimeout)
	defer cancel()
	variant, node, note, err := n.injectLnd(ictx, kind)
	f.Variant, f.Note = variant, note
	if node != "" {
		f.Targets = []string{node}
	}
	n.hist.Append(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "start " + string(kind), Value: []string{variant, node}})
	n.cfg.Logger.Info("nemesis start", "kind", kind, "variant", variant, "targets", f.Targets)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		f.Error = err.Error()
	}
	n.faults = append(n.faults, f)
	n.active = len(n.faults) - 1
	if err != nil {
		return fmt.Errorf("inject %s %s %v: %w", kind, variant, f.Targets, err)
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
	timeout := healTimeout
	if f.Kind == Membership {
		timeout = membershipTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		err  error
		note string
	)
	switch f.Kind {
	case Kill:
		for _, id := range f.Targets {
			err = errors.Join(err, n.cluster.Restart(n.index(id)))
		}
	case Pause:
		for _, id := range f.Targets {
			err = errors.Join(err, n.cluster.Resume(n.index(id)))
		}
	case PartitionLeader, PartitionHalves, PartitionOneWay, PartitionRing, RegionPartition:
		err = n.cluster.Heal(ctx)
	case Loss:
		err = n.cluster.Heal(ctx)
		for _, i := range n.netemHosts {
			err = errors.Join(err, n.cluster.ClearNetem(ctx, i))
		}
		n.netemHosts = nil
	case LeaderStorm:
		if n.stopStorm != nil {
			note = n.stopStorm()
			n.stopStorm = nil
		}
	case Membership:
		note, err = n.healMembership(ctx, n.index(f.Targets[0]))
	}
	if IsLnd(f.Kind) {
		note, err = n.healLnd(ctx, f.Variant)
	}
	n.hist.Append(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "heal " + string(f.Kind), Value: f.Targets})
	n.cfg.Logger.Info("nemesis heal", "kind", f.Kind, "targets", f.Targets, "err", err)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults[active].End = n.hist.Since()
	if note != "" {
		n.faults[active].Note = strings.TrimPrefix(f.Note+"; "+note, "; ")
	}
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
