package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
)

const (
	barrierRetryMin   = 50 * time.Millisecond
	barrierRetryMax   = 2 * time.Second
	driverBackoffMin  = 100 * time.Millisecond
	driverBackoffMax  = 30 * time.Second
	driverHealthyRun  = time.Minute
	reconcileInterval = time.Second
	tickInterval      = 250 * time.Millisecond
)

// monitorLeadership follows Raft's notify channel. Gaining leadership starts leaderLoop;
// losing it cancels the loop and waits for it, so drivers are stopped before the next
// notification is handled. Both transitions are idempotent.
func (n *Node) monitorLeadership(ctx context.Context) {
	type leadership struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var current *leadership
	revoke := func() {
		if current == nil {
			return
		}
		current.cancel()
		<-current.done
		current = nil
	}
	defer revoke()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-n.notifyCh:
			if !isLeader {
				revoke()
				continue
			}
			if current != nil {
				continue
			}
			n.metrics.leaderChanges.Inc()
			lctx, cancel := context.WithCancel(ctx)
			current = &leadership{cancel: cancel, done: make(chan struct{})}
			go n.leaderLoop(lctx, current.done)
		}
	}
}

// leaderLoop establishes leadership (Barrier, then ready, then drivers) and tears it down when
// ctx is cancelled. It makes no external calls before the drivers start.
func (n *Node) leaderLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	term := n.raft.CurrentTerm()
	log := n.log.With("term", term)
	log.Info("gained leadership", "index", n.raft.LastIndex())

	if err := n.barrier(ctx); err != nil {
		log.Warn("leadership not established", "err", err)
		return
	}
	n.readyTerm.Store(term)
	n.ready.Store(true)
	log.Info("leadership established; serving linearizable reads", "applied_index", n.fsm.AppliedIndex())

	drivers := []Driver{&membershipReconciler{n: n}, &expiryTicker{n: n}, &formatDriver{n: n}}
	if n.cfg.Placement.LeaderRegion != "" && n.cfg.Placement.LeaderRegion != n.self.Region {
		drivers = append(drivers, &leaderRegionDriver{n: n})
	}
	if n.cfg.Retention.Enabled() {
		drivers = append(drivers, &retentionDriver{n: n})
	}
	drivers = append(drivers, n.opts.Drivers...)
	var wg sync.WaitGroup
	for _, d := range drivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.runDriver(ctx, d)
		}()
	}
	<-ctx.Done()
	n.ready.Store(false)
	wg.Wait()
	if failpoint.Enabled(failpoint.CrashOnLeadershipLoss) {
		log.Error("failpoint crash-on-leadership-loss: exiting")
		os.Exit(3) // failpoint CrashOnLeadershipLoss
	}
	log.Info("lost leadership; leader-only work stopped")
}

// barrier waits until every entry of earlier terms is applied, retrying while still leader.
func (n *Node) barrier(ctx context.Context) error {
	backoff := barrierRetryMin
	for {
		err := awaitFuture(ctx, n.raft.Barrier(n.cfg.Raft.ApplyTimeout))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			return fmt.Errorf("barrier: %w", err)
		}
		n.log.Warn("barrier failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return fmt.Errorf("barrier: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, barrierRetryMax)
	}
}

// runDriver runs d until ctx ends, restarting it with backoff when it fails.
func (n *Node) runDriver(ctx context.Context, d Driver) {
	log := n.log.With("driver", d.Name(), "term", n.raft.CurrentTerm())
	backoff := driverBackoffMin
	for {
		log.Info("starting leader driver")
		started := time.Now()
		err := d.Run(ctx)
		if ctx.Err() != nil {
			log.Info("leader driver stopped")
			return
		}
		if err == nil {
			log.Info("leader driver finished")
			return
		}
		if time.Since(started) > driverHealthyRun {
			backoff = driverBackoffMin
		}
		log.Error("leader driver failed; restarting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, driverBackoffMax)
	}
}

// membershipReconciler adds configured nodes that gossip but are not Raft servers yet: a node
// that joins a running cluster, or comes back with a wiped data dir under a new Raft id.
type membershipReconciler struct {
	n *Node
	// said holds the last message logged per node, so a waiting node is reported once.
	said map[string]string
}

func (m *membershipReconciler) Name() string { return "membership" }

func (m *membershipReconciler) Run(ctx context.Context) error {
	m.said = map[string]string{}
	ticker := time.NewTicker(reconcileInterval)
	defer ticker.Stop()
	for {
		if err := m.reconcile(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (m *membershipReconciler) say(nodeID, msg string, args ...any) {
	if m.said[nodeID] == msg {
		return
	}
	m.said[nodeID] = msg
	m.n.log.Warn(msg, append([]any{"member", nodeID}, args...)...)
}

func (m *membershipReconciler) reconcile(ctx context.Context) error {
	n := m.n
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	for _, p := range n.gossip.peers() {
		if ctx.Err() != nil {
			return nil
		}
		if p.State != "alive" || !p.MetaOK {
			continue
		}
		nc, ok := n.cfg.Node(p.NodeID)
		if !ok {
			m.say(p.NodeID, "gossip member is not in cluster.hcl; ignoring it")
			continue
		}
		if s, ok := findByID(servers, p.Meta.RaftID); ok {
			if changed, err := m.matchSuffrage(ctx, nc, s, servers); changed || err != nil {
				return err // one change at a time; the configuration is re-read next round
			}
			// A member that went back to an older release cannot be refused any more (it may be
			// a voter the quorum needs); say what it gets wrong.
			if reads, stored := p.Meta.readsFormat(), n.fsm.Format(); reads < stored {
				m.say(p.NodeID, fmt.Sprintf("member reads stored formats up to %d but the store is in format %d: its stale reads miss the history written since the switch; upgrade it", reads, stored),
					"version", orUnknown(p.Meta.Version))
				continue
			}
			delete(m.said, p.NodeID)
			continue
		}
		if p.Meta.HasState {
			// Only a node without Raft state (a fresh or wiped data dir) is ever added. One with
			// state that is not in the configuration was removed; adding it back would undo the
			// operator's removal, and its old log must not rejoin as if nothing happened.
			m.say(p.NodeID, "node has Raft state but is not in the configuration (it was removed); wipe its data dir and restart it to let it rejoin", "raft_id", p.Meta.RaftID)
			continue
		}
		if p.Meta.Removed {
			m.say(p.NodeID, "node was removed from the Raft configuration; wipe its data dir and restart it to let it rejoin", "raft_id", p.Meta.RaftID)
			continue
		}
		// A node joins through a snapshot or the log, both in the store's format: one that does
		// not read it would serve the history written since the switch as missing.
		if reads, stored := p.Meta.readsFormat(), n.fsm.Format(); reads < stored {
			m.say(p.NodeID, fmt.Sprintf("node reads stored formats up to %d but the store is in format %d; not adding it: upgrade it to this release", reads, stored),
				"version", orUnknown(p.Meta.Version))
			continue
		}
		if p.Meta.RaftAddr != nc.RaftAddr {
			m.say(p.NodeID, "node advertises a raft_addr different from cluster.hcl; not adding it", "advertised", p.Meta.RaftAddr, "configured", nc.RaftAddr)
			continue
		}
		if old, ok := conflictingServer(servers, p.NodeID, nc.RaftAddr); ok {
			m.say(p.NodeID, fmt.Sprintf("node came back with a new raft id but its old one is still a Raft server; run `bankctl cluster remove %s` first", old.ID),
				"raft_id", p.Meta.RaftID, "old_raft_id", string(old.ID), "old_raft_addr", string(old.Address))
			continue
		}
		kind := suffrageName(suffrageOf(nc))
		n.log.Info("adding "+kind, "member", p.NodeID, "raft_id", p.Meta.RaftID, "raft_addr", nc.RaftAddr)
		id, addr := raft.ServerID(p.Meta.RaftID), raft.ServerAddress(nc.RaftAddr)
		future := n.raft.AddVoter(id, addr, 0, n.cfg.Raft.ApplyTimeout)
		if nc.NonVoter {
			future = n.raft.AddNonvoter(id, addr, 0, n.cfg.Raft.ApplyTimeout)
		}
		if err := awaitFuture(ctx, future); err != nil {
			return fmt.Errorf("add %s %s (%s): %w", kind, p.NodeID, p.Meta.RaftID, err)
		}
		delete(m.said, p.NodeID)
		n.log.Info("added "+kind, "member", p.NodeID, "raft_id", p.Meta.RaftID)
		return nil // one change at a time; the configuration is re-read next round
	}
	return nil
}

// matchSuffrage promotes a non-voter that cluster.hcl now calls a voter, or demotes a voter
// that it calls a non-voter, and reports whether it changed the configuration. The node is alive
// in gossip (the caller checked). A demotion keeps at least one voter, and the leader hands
// leadership over before it demotes itself.
func (m *membershipReconciler) matchSuffrage(ctx context.Context, nc NodeConfig, s raft.Server, servers []raft.Server) (bool, error) {
	n := m.n
	want := suffrageOf(nc)
	if s.Suffrage == want || s.Suffrage == raft.Staging {
		return false, nil
	}
	if want == raft.Voter {
		n.log.Info("promoting non-voter to voter", "member", nc.ID, "raft_id", string(s.ID))
		if err := awaitFuture(ctx, n.raft.AddVoter(s.ID, s.Address, 0, n.cfg.Raft.ApplyTimeout)); err != nil {
			return false, fmt.Errorf("promote %s to voter: %w", nc.ID, err)
		}
		return true, nil
	}
	if countVoters(servers) <= 1 {
		m.say(nc.ID, "cluster.hcl makes the last voter a non-voter; keeping it a voter")
		return false, nil
	}
	if string(s.ID) == n.raftID {
		n.log.Info("cluster.hcl makes this leader a non-voter; handing leadership over first")
		if _, err := n.TransferLeadership(ctx, ""); err != nil {
			return false, fmt.Errorf("hand leadership over before demoting this node: %w", err)
		}
		return true, nil
	}
	n.log.Info("demoting voter to non-voter", "member", nc.ID, "raft_id", string(s.ID))
	if err := awaitFuture(ctx, n.raft.DemoteVoter(s.ID, 0, n.cfg.Raft.ApplyTimeout)); err != nil {
		return false, fmt.Errorf("demote %s to non-voter: %w", nc.ID, err)
	}
	return true, nil
}

func findByID(servers []raft.Server, raftID string) (raft.Server, bool) {
	for _, s := range servers {
		if string(s.ID) == raftID {
			return s, true
		}
	}
	return raft.Server{}, false
}

func inConfiguration(servers []raft.Server, raftID string) bool {
	_, ok := findByID(servers, raftID)
	return ok
}

func countVoters(servers []raft.Server) int {
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	return voters
}

// conflictingServer finds a server that is an older incarnation of nodeID: same node id prefix
// or same Raft address.
func conflictingServer(servers []raft.Server, nodeID, raftAddr string) (raft.Server, bool) {
	for _, s := range servers {
		if nodeIDOf(string(s.ID)) == nodeID || string(s.Address) == raftAddr {
			return s, true
		}
	}
	return raft.Server{}, false
}

// expiryTicker proposes a TICK when a pending transfer is due to expire: cluster time only
// moves with commands, so an idle cluster needs a tick to void pending transfers.
type expiryTicker struct{ n *Node }

func (t *expiryTicker) Name() string { return "expiry-tick" }

func (t *expiryTicker) Run(ctx context.Context) error {
	ticker := time.NewTicker(tickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		due, ok := t.n.fsm.NextExpiryUnixMs()
		if !ok || due > time.Now().UnixMilli() {
			continue
		}
		if _, err := t.n.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_TICK, nil, nil); err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrNotLeader) {
				return nil
			}
			return fmt.Errorf("propose tick: %w", err)
		}
	}
}
