package nemesis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/jepsen/history"
)

// The upgrade nemesis is a schedule of its own: the cluster starts on the previous release
// (the run's hosts run UpgradeConfig's old binary), and after the recovery window every node
// in turn, followers first and the leader last, is stopped with SIGTERM and started again on
// the new binary with the same data dir, and the nemesis waits until it has caught up. Between
// steps, and while each node is down, the new release's first new command type
// (UpgradeConfig.Compact) must be refused; once every node runs the new binary it must apply.
// Each step is a fault window (kind upgrade, variant follower or leader); the answers are kept
// in UpgradeRecord for the run's checker.

// UpgradeConfig shapes the upgrade nemesis.
type UpgradeConfig struct {
	// Bin is the binary every node is upgraded to.
	Bin string
	// Compact uses the new command type through host via (the leader): ClusterService.Compact.
	Compact func(ctx context.Context, via int) (*bankdv1.Compaction, error)
}

// Upgrader is what the upgrade nemesis needs of the hosts beyond Cluster (hosts.Cluster has
// it).
type Upgrader interface {
	// Stop sends SIGTERM to host i, waits for it to exit and returns its exit status.
	Stop(i int) (int, error)
	// SetBin makes host i run bin from its next start on.
	SetBin(i int, bin string)
	// WaitCaughtUp waits until host i has applied what the leader had applied.
	WaitCaughtUp(ctx context.Context, i int) error
}

// Bounds of the upgrade nemesis.
const (
	// upgradeStepTimeout bounds one node's upgrade: SIGTERM (30 s before a kill), the restart
	// and the catch-up.
	upgradeStepTimeout = 90 * time.Second
	// gateTimeout bounds the wait for the expected refusal (gossip carries a restarted node's
	// command types within a second or two) and, after the last step, for the acceptance.
	gateTimeout = 30 * time.Second
	// gateCallTimeout bounds one call of the new command type.
	gateCallTimeout = 5 * time.Second
)

// GateAnswer is one answer of the cluster to the new command type during an upgrade.
type GateAnswer struct {
	// At is the time since the run started.
	At time.Duration `json:"at_ns"`
	// Old are the nodes still on the previous release (the one being upgraded included until
	// it runs the new binary); empty after the last step.
	Old []string `json:"old"`
	// Leader is the node asked and whether it ran the previous release.
	Leader    string `json:"leader"`
	LeaderOld bool   `json:"leader_old"`
	// Code is "ok" or the connect code of the refusal; Message its text.
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	// Expected: refused while Old is not empty (unimplemented from an old leader, which has no
	// such RPC; failed_precondition naming exactly Old from a new one), applied after.
	Expected bool `json:"expected"`
	// Compaction is what an applied call dropped.
	Compaction *bankdv1.Compaction `json:"compaction,omitempty"`
}

// UpgradeStep is one node's upgrade.
type UpgradeStep struct {
	Node string `json:"node"`
	// Role is "follower" or "leader" when the step began.
	Role string `json:"role"`
	// Exit is the old binary's exit status on SIGTERM (0 for a clean stop).
	Exit int           `json:"exit"`
	Took time.Duration `json:"took_ns"`
	// Error is what went wrong in the step (a stop that timed out, a node that never caught up).
	Error string `json:"error,omitempty"`
}

// UpgradeRecord is what the upgrade nemesis did and saw.
type UpgradeRecord struct {
	Steps []UpgradeStep `json:"steps"`
	Gate  []GateAnswer  `json:"gate"`
	// Accepted is the answer that applied the new command type after the last step; nil if
	// none did within gateTimeout.
	Accepted *GateAnswer `json:"accepted,omitempty"`
}

// upgradeState is the nemesis's record while it runs.
type upgradeState struct {
	mu  sync.Mutex
	rec UpgradeRecord
}

// Upgrade returns what the upgrade nemesis did so far (nil for other kinds).
func (n *Nemesis) Upgrade() *UpgradeRecord {
	if n.upgrade == nil {
		return nil
	}
	n.upgrade.mu.Lock()
	defer n.upgrade.mu.Unlock()
	rec := n.upgrade.rec
	rec.Steps = slices.Clone(rec.Steps)
	rec.Gate = slices.Clone(rec.Gate)
	return &rec
}

func (n *Nemesis) recordGate(a GateAnswer) {
	n.upgrade.mu.Lock()
	defer n.upgrade.mu.Unlock()
	n.upgrade.rec.Gate = append(n.upgrade.rec.Gate, a)
	if a.Code == "ok" && len(a.Old) == 0 {
		n.upgrade.rec.Accepted = &a
	}
}

// runUpgrade upgrades every node, followers first and the leader last, waiting the recovery
// window before the first step and half of it between steps. Once begun, the upgrade is
// finished even if the run's time is up (a half-upgraded cluster proves little); only a
// harness error (a host that cannot be started) ends it early.
func (n *Nemesis) runUpgrade(ctx context.Context) error {
	up, ok := n.cluster.(Upgrader)
	if !ok || n.cfg.Upgrade == nil || n.cfg.Upgrade.Bin == "" || n.cfg.Upgrade.Compact == nil {
		return errors.New("upgrade nemesis: needs hosts that can stop and change binaries, a new binary and a Compact call")
	}
	if !sleep(ctx, n.cfg.RecoveryWindow) {
		return nil
	}
	size := n.cluster.Size()
	old := map[int]bool{}
	for i := range size {
		old[i] = true
	}
	// The upgrade goes on past the run's end; this bounds it as a whole.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(size+1)*upgradeStepTimeout)
	defer cancel()
	n.checkGate(uctx, old)
	for len(old) > 0 {
		leader, err := n.waitLeader(uctx)
		if err != nil {
			return fmt.Errorf("upgrade: %w", err)
		}
		next, role := -1, "follower"
		for i := range size {
			if old[i] && i != leader {
				next = i
				break
			}
		}
		if next < 0 {
			next, role = leader, "leader"
		}
		if err := n.upgradeStep(uctx, up, next, role, old); err != nil {
			return err
		}
		if len(old) > 0 {
			sleep(ctx, n.cfg.RecoveryWindow/2)
		}
	}
	n.acceptGate(uctx)
	return nil
}

// upgradeStep stops node i, checks the gate while it is down, starts it on the new binary,
// waits until it has caught up and checks the gate again. Only a failure to start the node is
// returned (a harness error); what bankd did wrong is in the step's record.
func (n *Nemesis) upgradeStep(ctx context.Context, up Upgrader, i int, role string, old map[int]bool) error {
	id := n.cluster.NodeID(i)
	f := Fault{Kind: Upgrade, Variant: role, Targets: []string{id}, Start: n.hist.Since()}
	n.hist.Append(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "start " + string(Upgrade), Value: f.Targets})
	n.cfg.Logger.Info("nemesis start", "kind", Upgrade, "variant", role, "targets", f.Targets)
	n.mu.Lock()
	n.faults = append(n.faults, f)
	n.active = len(n.faults) - 1
	n.mu.Unlock()

	sctx, cancel := context.WithTimeout(ctx, upgradeStepTimeout)
	defer cancel()
	step := UpgradeStep{Node: id, Role: role}
	began := time.Now()
	var errs []string
	code, err := up.Stop(i)
	step.Exit = code
	if err != nil {
		errs = append(errs, err.Error())
	}
	// Down, the node is still old to the cluster: its last gossip advertised the old types.
	n.checkGate(sctx, old)
	up.SetBin(i, n.cfg.Upgrade.Bin)
	startErr := n.cluster.Restart(i)
	if startErr == nil {
		if err := up.WaitCaughtUp(sctx, i); err != nil {
			errs = append(errs, err.Error())
		}
		delete(old, i)
		if len(old) > 0 {
			n.checkGate(sctx, old)
		}
	}
	step.Took = time.Since(began)
	step.Error = strings.Join(errs, "; ")
	n.upgrade.mu.Lock()
	n.upgrade.rec.Steps = append(n.upgrade.rec.Steps, step)
	n.upgrade.mu.Unlock()

	n.hist.Append(history.Op{Process: history.NemesisProcess, Type: history.Info, F: "heal " + string(Upgrade), Value: f.Targets})
	n.cfg.Logger.Info("nemesis heal", "kind", Upgrade, "targets", f.Targets, "exit", code, "took", step.Took, "err", step.Error)
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.active
	n.faults[a].End = n.hist.Since()
	n.faults[a].Note = fmt.Sprintf("SIGTERM: exit %d; on %s after %s", code, n.cfg.Upgrade.Bin, step.Took.Round(time.Millisecond))
	if step.Error != "" {
		n.faults[a].Error = step.Error
	}
	n.active = -1
	if startErr != nil {
		return fmt.Errorf("upgrade %s: %w", id, startErr)
	}
	return nil
}

// waitLeader polls until some node leads.
func (n *Nemesis) waitLeader(ctx context.Context) (int, error) {
	for {
		if l := n.cluster.Leader(ctx); l >= 0 {
			return l, nil
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return -1, fmt.Errorf("no leader: %w", ctx.Err())
		}
	}
}

// checkGate calls the new command type through the leader until it gets the refusal expected
// while the nodes in old run (or last ran) the previous release, or gateTimeout passes;
// transient answers (no leader, gossip not yet carrying a restarted node's types) are asked
// again. Every answer is recorded; an acceptance ends the wait at once.
func (n *Nemesis) checkGate(ctx context.Context, old map[int]bool) {
	var want []string
	for i := range old {
		want = append(want, n.cluster.NodeID(i))
	}
	slices.Sort(want)
	deadline := time.Now().Add(gateTimeout)
	for {
		a, transient := n.askGate(ctx, want, old)
		if !transient || time.Now().After(deadline) || ctx.Err() != nil {
			n.recordGate(a)
			return
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// acceptGate calls the new command type until it applies (gossip needs a moment to carry the
// last node's types) or gateTimeout passes.
func (n *Nemesis) acceptGate(ctx context.Context) {
	deadline := time.Now().Add(gateTimeout)
	for {
		a, _ := n.askGate(ctx, nil, nil)
		if a.Expected || time.Now().After(deadline) || ctx.Err() != nil {
			n.recordGate(a)
			n.cfg.Logger.Info("nemesis upgrade: new command type", "code", a.Code, "message", a.Message)
			return
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// askGate makes one call through the leader and judges its answer. transient marks an answer
// worth asking again: any refusal but the expected one (no leader, a leader change under way,
// gossip that still shows an upgraded node's old types). An acceptance while some node is old
// is final: the command is in the log.
func (n *Nemesis) askGate(ctx context.Context, want []string, old map[int]bool) (a GateAnswer, transient bool) {
	a = GateAnswer{At: n.hist.Since(), Old: want}
	leader := n.cluster.Leader(ctx)
	if leader < 0 {
		a.Code, a.Message = connect.CodeUnavailable.String(), "no leader"
		return a, true
	}
	a.Leader, a.LeaderOld = n.cluster.NodeID(leader), old[leader]
	cctx, cancel := context.WithTimeout(ctx, gateCallTimeout)
	res, err := n.cfg.Upgrade.Compact(cctx, leader)
	cancel()
	if err == nil {
		a.Code, a.Compaction = "ok", res
		a.Expected = len(want) == 0
		return a, false
	}
	code := connect.CodeOf(err)
	a.Code, a.Message = code.String(), err.Error()
	switch {
	case len(want) == 0:
	case a.LeaderOld:
		a.Expected = code == connect.CodeUnimplemented
	default:
		a.Expected = code == connect.CodeFailedPrecondition && slices.Equal(NamedNodes(a.Message, n.nodeIDs()), want)
	}
	return a, !a.Expected
}

func (n *Nemesis) nodeIDs() []string {
	ids := make([]string, n.cluster.Size())
	for i := range ids {
		ids[i] = n.cluster.NodeID(i)
	}
	return ids
}

// NamedNodes returns the node ids among ids that a not-upgraded refusal names ("upgrade n1
// (version 27b4134), n3 (not seen in gossip) first"), sorted.
func NamedNodes(msg string, ids []string) []string {
	var named []string
	for _, id := range ids {
		if strings.Contains(msg, id+" (") {
			named = append(named, id)
		}
	}
	slices.Sort(named)
	return named
}
