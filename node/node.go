package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bbolterrors "go.etcd.io/bbolt/errors"

	"github.com/bankd/bankd/clustertls"
	"github.com/bankd/bankd/fsm"
)

// Sentinel errors callers decide on.
var (
	// ErrNotLeader: this node is not the leader (or not yet ready to serve as one). Nothing was
	// proposed; retry on the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrOutcomeUnknown: the command reached Raft but its fate is unknown (leadership lost,
	// shutdown, or the caller gave up). It may or may not commit; retry with the same ids.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrNoLeader: the cluster has no known leader right now.
	ErrNoLeader = errors.New("no known leader")
	// ErrUnknownNode: an id names no server in the Raft configuration.
	ErrUnknownNode = errors.New("unknown node")
	// ErrTooLarge: the command is larger than raft.max_entry_bytes. Nothing was proposed.
	ErrTooLarge = errors.New("command too large")
	// ErrShutdown: the node was shut down (or never started).
	ErrShutdown = errors.New("node is shut down")
	// ErrNotUpgraded: a server of the Raft configuration does not apply the command's type (an
	// older binary mid-upgrade). Nothing was proposed; upgrade the nodes the error names first.
	ErrNotUpgraded = errors.New("not every node applies this command yet")
)

// Driver is leader-only work (chain follower, lnd pool, payouts). Run starts after this node
// became leader and its Barrier completed; ctx is cancelled the moment leadership is lost.
// A Run that returns an error while still leader is restarted with backoff; one that returns
// nil is done for this term.
type Driver interface {
	Name() string
	Run(ctx context.Context) error
}

// Options are the parts of a node that do not come from cluster.hcl.
type Options struct {
	// Logger receives everything; nil means slog.Default(). Records carry node=<id>.
	Logger *slog.Logger
	// Version is this binary's version string, advertised in gossip.
	Version string
	// Drivers run on the leader only.
	Drivers []Driver
	// FSMFatal is passed to fsm.Options.Fatal; nil keeps the fsm default (log and exit).
	FSMFatal func(error)
	// RaftLogLevel filters the logs of hashicorp/raft and memberlist; nil means Warn (they are
	// chatty at Info).
	RaftLogLevel slog.Leveler
	// ScriptIndex, when set, is kept in step with the state machine's script table on this node
	// (every node, leader or not), so that a new leader's chain watcher finds it complete.
	ScriptIndex ScriptIndex

	// advertisedTypes, in tests, makes the node advertise another command type set than
	// fsm.CommandTypes(), and no stored format, as an older binary would; zero means its own.
	advertisedTypes uint64
}

// ScriptIndex is an in-memory index of the state machine's script table (the chain watcher's).
// The node subscribes it to the state machine before anything is applied, loads it once the
// state machine is open, and loads it again after every snapshot restore (which replaces the
// store without reporting the scripts it added). Both methods are called on the goroutine that
// applies Raft entries, never concurrently with each other, and adding a script twice must be
// harmless.
type ScriptIndex interface {
	// AddScripts is the state machine's OnScriptsWatched hook: scripts a committed batch added.
	AddScripts(scripts [][]byte)
	// Load adds every script of f's script table.
	Load(f *fsm.FSM) error
}

// Limits and timings that are not worth a knob in cluster.hcl.
const (
	raftIDFile        = "raft-id"
	snapshotsRetained = 2
	// boltLockTimeout bounds the wait for the Raft log's file lock.
	boltLockTimeout        = 2 * time.Second
	transportMaxPool       = 3
	transportTimeout       = 10 * time.Second
	notifyChBuffer         = 16
	shutdownTransferBound  = 5 * time.Second
	gossipLeaveTimeout     = time.Second
	readyMaxLagEntries     = 16
	readIndexMaxScan       = 256
	restoreCheckMaxEntries = 4096
)

// Node is one running cluster member. Create it with New, then Start; stop it with Shutdown.
type Node struct {
	cfg    *Config
	self   NodeConfig
	opts   Options
	log    *slog.Logger
	raftID string

	fsm       *fsm.FSM
	logStore  *raftboltdb.BoltStore
	snapshots *raft.FileSnapshotStore
	transport *raft.NetworkTransport
	raftGate  *gatedStreamLayer
	raft      *raft.Raft
	gossip    *gossip
	metrics   *metrics
	// lastApply carries the FSM's OnApplied report to raftFSM.ApplyBatch; both run on Raft's
	// apply goroutine, so it needs no lock.
	lastApply     fsm.ApplyStats
	slowLogWrites slowWarnings
	slowApplies   slowWarnings
	// coalescer groups concurrent transfers into shared entries on the leader; nil when off.
	coalescer *coalescer
	// tls holds the node's certificate and the cluster CA; nil under insecure_plaintext.
	tls *clustertls.Store

	notifyCh chan bool
	// ready is true while this node is leader and its Barrier for readyTerm has completed.
	ready     atomic.Bool
	readyTerm atomic.Uint64

	// life is cancelled by Shutdown; every background goroutine watches it and is counted in wg.
	life     context.Context
	stopLife context.CancelFunc
	wg       sync.WaitGroup

	mu           sync.Mutex
	started      bool
	shutdownDone chan struct{}
	shutdownErr  error
}

// New opens the node's local storage (creating its data dir and Raft identity the first time)
// but starts no network activity. FSM() is usable from here on.
func New(cfg *Config, nodeID string, opts Options) (*Node, error) {
	if cfg == nil {
		return nil, errors.New("new node: nil config")
	}
	self, ok := cfg.Node(nodeID)
	if !ok {
		return nil, fmt.Errorf("new node: node %q is not in %s", nodeID, cfg.Path)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RaftLogLevel == nil {
		opts.RaftLogLevel = slog.LevelWarn
	}
	n := &Node{
		cfg:      cfg,
		self:     self,
		opts:     opts,
		log:      opts.Logger.With("node", nodeID),
		notifyCh: make(chan bool, notifyChBuffer),
	}
	n.life, n.stopLife = context.WithCancel(context.Background())
	n.metrics = newMetrics(n)
	n.initSlowWarnings()
	n.coalescer = newCoalescer(n, cfg.Raft)
	if !cfg.InsecurePlaintext {
		store, err := clustertls.Load(clustertls.NodeIdentity(cfg.Name, nodeID), cfg.TLS.CAFile, self.TLSCert, self.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w (make the cluster's certificates with: bankd tls init -config %s)", nodeID, err, cfg.Path)
		}
		n.tls = store
	}
	if err := n.openStorage(); err != nil {
		n.closeStorage()
		return nil, fmt.Errorf("node %s: %w", nodeID, err)
	}
	return n, nil
}

func (n *Node) openStorage() error {
	dir := n.self.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	id, err := loadOrCreateRaftID(dir, n.self.ID)
	if err != nil {
		return err
	}
	n.raftID = id
	n.log = n.log.With("raft_id", id)

	if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	boltPath := filepath.Join(dir, "raft", "raft.db")
	// Bolt waits for the file's lock for ever by default: another process on this data dir
	// (a running node while `bankd recover` is tried) must be an error instead.
	store, err := raftboltdb.New(raftboltdb.Options{Path: boltPath, NoSync: false, BoltOptions: &bbolt.Options{Timeout: boltLockTimeout}})
	if errors.Is(err, bbolterrors.ErrTimeout) {
		return fmt.Errorf("open raft log %s: locked by another process (is a bankd running on this data dir?)", boltPath)
	}
	if err != nil {
		return fmt.Errorf("open raft log %s: %w", boltPath, err)
	}
	n.logStore = store

	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetained, n.hclog("snapshots"))
	if err != nil {
		return fmt.Errorf("open snapshot store in %s: %w", dir, err)
	}
	n.snapshots = snaps

	fsmDir := filepath.Join(dir, "fsm")
	fopts := fsm.Options{Logger: n.log.With("component", "fsm"), Fatal: n.opts.FSMFatal, OnApplied: n.onApplied}
	if n.opts.ScriptIndex != nil {
		// Subscribed before the first apply and loaded below: no script is missed, and one
		// added twice is harmless.
		fopts.OnScriptsWatched = n.opts.ScriptIndex.AddScripts
	}
	f, err := fsm.Open(fsmDir, fopts)
	if err != nil {
		return fmt.Errorf("open state machine %s: %w", fsmDir, err)
	}
	n.fsm = f
	if err := n.restoreSnapshotIfBehind(); err != nil {
		return err
	}
	return n.loadScriptIndex()
}

// loadScriptIndex loads the script index, if any, from the state machine's script table.
func (n *Node) loadScriptIndex() error {
	if n.opts.ScriptIndex == nil {
		return nil
	}
	started := time.Now()
	if err := n.opts.ScriptIndex.Load(n.fsm); err != nil {
		return fmt.Errorf("load the script index: %w", err)
	}
	n.log.Info("script index loaded", "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// raftFSM is the state machine as Raft sees it: the FSM (ApplyBatch and Snapshot promoted, so
// Raft still batches), with the script index reloaded after a snapshot restore.
type raftFSM struct {
	*fsm.FSM
	n *Node
}

// Restore replaces the state machine with a snapshot, then reloads the script index before
// Raft applies anything else (both run on Raft's FSM goroutine).
func (r raftFSM) Restore(rc io.ReadCloser) error {
	if err := r.FSM.Restore(rc); err != nil {
		return err
	}
	// Raft restores a snapshot when a follower (or non-voter) is too far behind for the log
	// entries the leader still holds, and on a backup restore.
	r.n.log.Info("state machine replaced by a snapshot", "applied_index", r.FSM.AppliedIndex())
	return r.n.loadScriptIndex()
}

// restoreSnapshotIfBehind covers NoSnapshotRestoreOnStart: Raft will resume applying after its
// newest snapshot, so the persistent FSM must already hold every command up to that index. When
// it does not (its store was lost or is older), the snapshot is restored here.
func (n *Node) restoreSnapshotIfBehind() error {
	list, err := n.snapshots.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(list) == 0 {
		return nil
	}
	newest := list[0]
	applied := n.fsm.AppliedIndex()
	if newest.Index <= applied {
		return nil
	}
	need, err := n.commandsBetween(applied, newest.Index)
	if err != nil {
		return err
	}
	if !need {
		// Only no-op, barrier or configuration entries lie between: nothing to restore.
		return nil
	}
	n.log.Warn("state machine is behind the newest snapshot; restoring it",
		"fsm_applied_index", applied, "snapshot_index", newest.Index, "snapshot", newest.ID)
	_, rc, err := n.snapshots.Open(newest.ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", newest.ID, err)
	}
	defer rc.Close()
	if err := n.fsm.Restore(rc); err != nil {
		return fmt.Errorf("restore snapshot %s into the state machine: %w", newest.ID, err)
	}
	n.log.Info("restored state machine from snapshot", "snapshot_index", newest.Index, "fsm_applied_index", n.fsm.AppliedIndex())
	return nil
}

// commandsBetween reports whether the log holds a command in (from, to], or cannot prove that
// it does not (entries missing or too many to check).
func (n *Node) commandsBetween(from, to uint64) (bool, error) {
	if to-from > restoreCheckMaxEntries {
		return true, nil
	}
	for idx := from + 1; idx <= to; idx++ {
		var l raft.Log
		if err := n.logStore.GetLog(idx, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				return true, nil
			}
			return false, fmt.Errorf("read raft log entry %d: %w", idx, err)
		}
		if l.Type == raft.LogCommand {
			return true, nil
		}
	}
	return false, nil
}

func (n *Node) hclog(name string) hclog.Logger {
	level := hclog.Warn
	switch l := n.opts.RaftLogLevel.Level(); {
	case l <= slog.LevelDebug:
		level = hclog.Debug
	case l <= slog.LevelInfo:
		level = hclog.Info
	case l >= slog.LevelError:
		level = hclog.Error
	}
	return newHCLogAdapter(n.log, name, level)
}

func (n *Node) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	c := n.cfg.Raft
	rc.LocalID = raft.ServerID(n.raftID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	rc.MaxAppendEntries = c.MaxAppendEntries
	rc.BatchApplyCh = true
	// The FSM is persistent and skips replayed entries by its own applied index; see
	// restoreSnapshotIfBehind for the case where it is behind the newest snapshot.
	rc.NoSnapshotRestoreOnStart = true
	// A removed node stays up (serving stale reads and status) rather than stopping Raft under
	// the API; the leader never re-adds it because it advertises existing Raft state.
	rc.ShutdownOnRemove = false
	rc.NotifyCh = n.notifyCh
	rc.Logger = n.hclog("raft")
	return rc
}

// Start brings up the Raft transport, Raft, and gossip, and begins discovery, bootstrap and the
// leadership loop. ctx bounds start-up only; the node runs until Shutdown. When Start fails,
// call Shutdown to release what was opened.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started {
		return errors.New("start: already started")
	}
	if n.shutdownDone != nil {
		return ErrShutdown
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	n.started = true

	hasState, err := n.hasRaftLog()
	if err != nil {
		return fmt.Errorf("start: check for raft state: %w", err)
	}
	rc := n.raftConfig()
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("start: raft config: %w", err)
	}
	// A node with Raft state takes part at once; a fresh one waits (see gatedStreamLayer).
	stream, err := listenGated(n, hasState)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	n.raftGate = stream
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  n.hclog("raft-net"),
	})
	n.transport = trans
	r, err := raft.NewRaft(rc, raftFSM{FSM: n.fsm, n: n}, timedLogStore{n.logStore, n}, n.logStore, n.snapshots, trans)
	if err != nil {
		return fmt.Errorf("start: raft: %w", err)
	}
	n.raft = r

	n.goBackground(n.monitorLeadership)
	if n.coalescer != nil {
		n.goBackground(n.coalescer.run)
	}

	g, err := startGossip(n, hasState, removedMarkerExists(n.self.DataDir))
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	n.gossip = g
	n.goBackground(g.joinLoop)
	n.goBackground(n.bootstrapLoop)
	n.goBackground(n.watchOwnMembership)

	for _, w := range n.cfg.PlacementWarnings() {
		n.log.Warn("placement: " + w)
	}
	if n.cfg.InsecurePlaintext {
		n.log.Warn("INSECURE: insecure_plaintext is set; Raft, gossip and the API run without TLS or encryption, and anyone who reaches these ports can rewrite the ledger. Development only.")
	}
	n.log.Info("node started", "raft_addr", n.self.RaftAddr, "gossip_addr", n.self.GossipAddr,
		"api_addr", n.self.APIAddr, "has_state", hasState, "version", n.opts.Version)
	return nil
}

// TLS is the node's certificate store (its certificate and the cluster CA); nil under
// insecure_plaintext.
func (n *Node) TLS() *clustertls.Store { return n.tls }

// ReloadSecrets reads the node's certificate, the cluster CA and the gossip keyring again
// (SIGHUP). What fails to load is not installed; the error says what and the old one stays.
func (n *Node) ReloadSecrets() error {
	var errs []error
	if n.tls != nil {
		if err := n.tls.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	n.mu.Lock()
	g := n.gossip
	n.mu.Unlock()
	if g != nil {
		if err := g.reloadKeyring(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// AddDriver adds a leader-only driver to those of Options.Drivers. It must be called before
// Start; it exists for drivers that need the node itself (to propose and read), which cannot be
// in the Options that create it.
func (n *Node) AddDriver(d Driver) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started || n.shutdownDone != nil {
		return errors.New("add driver: the node was already started")
	}
	n.opts.Drivers = append(n.opts.Drivers, d)
	return nil
}

func (n *Node) goBackground(fn func(ctx context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn(n.life)
	}()
}

// Shutdown stops the node gracefully: a leader first hands leadership to a follower (bounded),
// then drivers stop, Raft stops, the node leaves gossip and the stores close. It is idempotent;
// later calls wait for the first and return its result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if n.shutdownDone != nil {
		done := n.shutdownDone
		n.mu.Unlock()
		select {
		case <-done:
			return n.shutdownErr
		case <-ctx.Done():
			return fmt.Errorf("shutdown: %w", ctx.Err())
		}
	}
	n.shutdownDone = make(chan struct{})
	n.mu.Unlock()

	n.shutdownErr = n.shutdown(ctx, true)
	close(n.shutdownDone)
	return n.shutdownErr
}

func (n *Node) shutdown(ctx context.Context, graceful bool) error {
	var errs []error
	if graceful && n.raft != nil && n.raft.State() == raft.Leader {
		n.handOffLeadership(ctx)
	}
	n.stopLife()
	waited := make(chan struct{})
	go func() { n.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		n.log.Warn("shutdown: background work did not stop in time; closing anyway", "err", ctx.Err())
	}
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	if n.transport != nil {
		if err := n.transport.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft transport: %w", err))
		}
	}
	if n.gossip != nil {
		if err := n.gossip.stop(graceful); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, n.closeStorage()...)
	n.log.Info("node stopped", "graceful", graceful)
	return errors.Join(errs...)
}

// handOffLeadership transfers leadership and waits (bounded) until another node leads, so
// clients redirected by followers find a leader as this one stops.
func (n *Node) handOffLeadership(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, shutdownTransferBound)
	defer cancel()
	term := n.raft.CurrentTerm()
	n.log.Info("shutdown: transferring leadership", "term", term)
	newLeader, err := n.TransferLeadership(ctx, "")
	if err != nil {
		n.log.Warn("shutdown: leadership transfer failed; stopping anyway", "term", term, "err", err)
		return
	}
	n.log.Info("shutdown: leadership transferred", "term", term, "new_leader", newLeader)
}

func (n *Node) closeStorage() []error {
	var errs []error
	if n.fsm != nil {
		if err := n.fsm.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close state machine: %w", err))
		}
	}
	if n.logStore != nil {
		if err := n.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft log: %w", err))
		}
	}
	return errs
}

// awaitFuture waits for a Raft future, giving up (without cancelling the operation) when ctx ends.
func awaitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ID returns this node's id from cluster.hcl.
func (n *Node) ID() string { return n.self.ID }

// RaftID returns this node's Raft server id ("<node id>-<8 hex>").
func (n *Node) RaftID() string { return n.raftID }

// Config returns the cluster configuration the node runs with.
func (n *Node) Config() *Config { return n.cfg }

// FSM returns the state machine, for reads.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// IsLeader reports whether this node is the Raft leader.
func (n *Node) IsLeader() bool { return n.raft != nil && n.raft.State() == raft.Leader }
