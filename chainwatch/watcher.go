package chainwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/chainwatch/chainrpc"
	"github.com/bankd/bankd/chainwatch/follow"
	"github.com/bankd/bankd/chainwatch/watchset"
	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Remote is the chain node as the watcher uses it. *chainrpc.Client implements it.
type Remote interface {
	follow.Remote
	// RawMempool returns the txids in the node's mempool.
	RawMempool(ctx context.Context) ([]chainhash.Hash, error)
	// RawTransaction returns a transaction of the mempool; an error for which
	// chainrpc.IsNotFound is true when it is not there.
	RawTransaction(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error)
	// CheckNetwork fails unless the node follows the network of params.
	CheckNetwork(ctx context.Context, params *chaincfg.Params) error
}

// State is what the watcher reads from the local replica of the state machine. *fsm.FSM
// implements it.
type State interface {
	ChainNetwork() (string, error)
	ChainTip() (*bankdv1.ChainTip, bool, error)
	ChainBlockHash(height uint32) (string, bool, error)
	ForEachChainOutpoint(fn func(txid string, vout uint32) error) error
	PendingChainTxs() ([]string, error)
	LookupScript(script []byte) (*bankdv1.WatchedScript, error)
	ChainRescan() (*bankdv1.RescanProgress, bool, error)
}

// Proposer commits a command through Raft and returns the state machine's answer: a refusal is
// a *fsm.Error. *node.Node implements it.
type Proposer interface {
	Apply(ctx context.Context, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error)
}

// Options are the parts of a watcher that do not come from Config.
type Options struct {
	// Logger receives the watcher's logs; nil means slog.Default().
	Logger *slog.Logger
	// NodeID labels the metrics (node=<id>).
	NodeID string
	// Remote replaces the chainrpc client built from Config.RPC (tests).
	Remote Remote
}

// Timings and bounds of the loop.
const (
	// stepTimeout bounds one step: the node calls it makes and the command it proposes.
	stepTimeout = time.Minute
	// backoffMin and backoffMax bound the pause after a failed step; it doubles per failure.
	backoffMin = 100 * time.Millisecond
	backoffMax = 30 * time.Second
	// maxConflictsInARow: CHAIN_CONFLICT refusals in a row that are re-read at once; past
	// that, the watcher backs off as after an error (the state machine keeps moving under it,
	// which only another proposer or a bug could cause).
	maxConflictsInARow = 3
	// maxMempoolFetch bounds the new mempool transactions fetched in one poll; the rest are
	// fetched at the next polls (a new leader facing a full mainnet mempool).
	maxMempoolFetch = 2000
)

// Watcher is the leader-only chain follower, a node.Driver. See the package documentation.
type Watcher struct {
	cfg      Config
	params   *chaincfg.Params
	follower *follow.Follower
	client   Remote
	close    func()
	state    State
	proposer Proposer
	index    *Index
	log      *slog.Logger
	metrics  *metrics
	// maxTxs bounds the transactions of one command (fsm.MaxChainTxsPerCommand; tests lower it).
	maxTxs int
}

// New returns a watcher that follows the node of cfg, reads state and proposes through
// proposer. index must be the node's script index (node.Options.ScriptIndex).
func New(cfg Config, proposer Proposer, state State, index *Index, opts Options) (*Watcher, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("chainwatch: %w", err)
	}
	if proposer == nil || state == nil || index == nil {
		return nil, errors.New("chainwatch: a proposer, a state and an index are required")
	}
	params, _ := fsm.ChainParams(cfg.Network)
	follower, err := follow.New(follow.Config{StartHeight: int64(cfg.StartHeight)})
	if err != nil {
		return nil, fmt.Errorf("chainwatch: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	w := &Watcher{
		cfg:      cfg,
		params:   params,
		follower: follower,
		client:   opts.Remote,
		close:    func() {},
		state:    state,
		proposer: proposer,
		index:    index,
		log:      opts.Logger.With("component", "chainwatch"),
		metrics:  newMetrics(opts.NodeID, index, state),
		maxTxs:   fsm.MaxChainTxsPerCommand,
	}
	if w.client == nil {
		client, err := chainrpc.New(cfg.RPC)
		if err != nil {
			return nil, fmt.Errorf("chainwatch: %w", err)
		}
		w.client, w.close = client, client.Close
	}
	return w, nil
}

// Name implements node.Driver.
func (w *Watcher) Name() string { return "chainwatch" }

// RegisterMetrics registers the watcher's metrics with reg.
func (w *Watcher) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range w.metrics.collectors() {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("chainwatch: register metrics: %w", err)
		}
	}
	return nil
}

// Run follows the node until ctx is cancelled (leadership lost), and then returns nil. It never
// gives up on its own: every failure is logged, counted and retried with backoff.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.close()
	s := w.newSession()
	backoff := backoffMin
	for ctx.Err() == nil {
		wait, err := s.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.failed(err, backoff)
			wait, backoff = backoff, min(2*backoff, backoffMax)
		} else {
			backoff = backoffMin
		}
		if !sleep(ctx, wait) {
			break
		}
	}
	w.log.Info("chain watcher stopped")
	return nil
}

// failed logs and counts a failed step.
func (w *Watcher) failed(err error, retry time.Duration) {
	kind := errorKind(err)
	w.metrics.errors.WithLabelValues(kind).Inc()
	switch kind {
	case kindNode:
		w.log.Warn("chain watcher: the chain node failed; retrying", "err", err, "retry_in", retry)
	case kindNetwork:
		w.log.Error("chain watcher: wrong network; not following the chain", "err", err, "network", w.cfg.Network, "retry_in", retry)
	case kindReorgTooDeep:
		w.log.Error("chain watcher: reorg deeper than the kept block hashes; not following the chain until an operator acts", "err", err, "retry_in", retry)
	case kindTooManyMatches:
		w.log.Error("chain watcher: block too large for one command; not following the chain", "err", err, "retry_in", retry)
	default:
		w.log.Error("chain watcher step failed; retrying", "kind", kind, "err", err, "retry_in", retry)
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// kindError tags an error with its kind (see the kind constants).
type kindError struct {
	kind string
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

func withKind(kind string, err error) error { return &kindError{kind: kind, err: err} }

func errorKind(err error) string {
	var ke *kindError
	var mismatch *chainrpc.NetworkMismatchError
	switch {
	case errors.Is(err, follow.ErrReorgTooDeep):
		return kindReorgTooDeep
	case errors.As(err, &ke):
		return ke.kind
	case errors.As(err, &mismatch):
		return kindNetwork
	default:
		return kindNode
	}
}

// errConflict is wrapped by propose's error when the state machine refused a command with
// CHAIN_CONFLICT: it moved since the watcher read it. Nothing changed; re-read and go on.
var errConflict = errors.New("the state machine's chain moved")

// session is the state of one leadership term's run: built from the state machine when it
// starts, so that a new leader carries on exactly where the state machine stands.
type session struct {
	*Watcher
	local  localChain
	remote Remote
	// outpoints are the outpoints whose spending concerns us: the state machine's UTXOs and
	// inputs of tracked transactions, plus those of every command proposed since. It may hold
	// more than the state machine (a refused command's, a UTXO spent since): an extra outpoint
	// only makes a transaction a candidate that the state machine then ignores.
	outpoints *watchset.OutpointSet
	// mempool holds the txids of the node's mempool examined so far whose outcome (ours and
	// proposed, or not ours) the state machine has: the base of the next poll's diff.
	mempool   map[chainhash.Hash]struct{}
	ready     bool
	conflicts int
}

func (w *Watcher) newSession() *session {
	return &session{
		Watcher: w,
		local:   localChain{state: w.state},
		remote:  observedRemote{Remote: w.client, bestHeight: w.metrics.bestHeight},
	}
}

// next runs one step and returns how long to wait before the next.
func (s *session) next(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if !s.ready {
		if err := s.prepare(ctx); err != nil {
			return 0, err
		}
		s.ready = true
		return 0, nil
	}
	wait, err := s.step(ctx)
	if errors.Is(err, errConflict) {
		s.conflicts++
		s.metrics.conflicts.Inc()
		if s.conflicts > maxConflictsInARow {
			return 0, withKind(kindPropose, fmt.Errorf("%d conflicts in a row: %w", s.conflicts, err))
		}
		s.log.Info("chain watcher: the state machine moved; re-reading", "err", err)
		return 0, nil
	}
	if err == nil {
		s.conflicts = 0
	}
	return wait, err
}

// prepare checks the networks and builds the outpoint index from the state machine.
func (s *session) prepare(ctx context.Context) error {
	network, err := s.state.ChainNetwork()
	if err != nil {
		return withKind(kindState, fmt.Errorf("read the cluster's chain network: %w", err))
	}
	if network != "" && network != s.cfg.Network {
		return withKind(kindNetwork, fmt.Errorf("the cluster's wallets are on %s, but cluster.hcl's chain network is %s", network, s.cfg.Network))
	}
	if err := s.remote.CheckNetwork(ctx, s.params); err != nil {
		return fmt.Errorf("check the node's network: %w", err)
	}
	set := watchset.NewOutpointSet(0)
	err = s.state.ForEachChainOutpoint(func(txid string, vout uint32) error {
		h, err := chainhash.NewHashFromStr(txid)
		if err != nil {
			return fmt.Errorf("outpoint %s:%d: %w", txid, vout, err)
		}
		set.Add(wire.OutPoint{Hash: *h, Index: vout})
		return nil
	})
	if err != nil {
		return withKind(kindState, fmt.Errorf("read the chain outpoints: %w", err))
	}
	s.outpoints, s.mempool = set, make(map[chainhash.Hash]struct{})
	s.metrics.outpoints.Set(float64(set.Len()))
	tip, ok, err := s.local.Tip()
	if err != nil {
		return err
	}
	args := []any{"network", s.cfg.Network, "scripts", s.index.Len(), "outpoints", set.Len(),
		"final_depth", s.cfg.FinalDepth, "mempool", s.cfg.Mempool}
	if ok {
		args = append(args, "tip", tip.String())
	} else {
		args = append(args, "tip", "none", "start_height", s.cfg.StartHeight)
	}
	s.log.Info("chain watcher started", args...)
	return nil
}

// step decides the next step and carries it out. A running rescan goes first: no block is
// followed while an older one could still reveal an output of ours that the new one spends.
func (s *session) step(ctx context.Context) (time.Duration, error) {
	p, rescanning, err := s.state.ChainRescan()
	if err != nil {
		return 0, withKind(kindState, fmt.Errorf("read the rescan: %w", err))
	}
	if rescanning {
		done, err := s.rescan(ctx, p)
		if err != nil || done {
			return 0, err
		}
	}
	st, err := s.follower.Next(ctx, s.remote, s.local)
	if err != nil {
		return 0, err
	}
	switch st := st.(type) {
	case follow.Connect:
		return 0, s.connect(ctx, st)
	case follow.Disconnect:
		return 0, s.disconnect(ctx, st)
	case follow.Idle:
		if s.cfg.Mempool {
			if err := s.pollMempool(ctx, st.Remote); err != nil {
				return 0, err
			}
		}
		return s.cfg.PollInterval, nil
	default:
		return 0, fmt.Errorf("follow returned an unknown step %T", st)
	}
}

func (s *session) connect(ctx context.Context, c follow.Connect) error {
	cmd, watch, err := s.blockCommand(c)
	if err != nil {
		return err
	}
	s.watch(watch)
	scripts := s.index.Len()
	if err := s.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, cmd); err != nil {
		return err
	}
	s.metrics.blocksConnected.Inc()
	if s.index.Len() > scripts {
		// The block paid look-ahead scripts and the wallets' windows grew: a later output of
		// the same block may pay one of the new scripts, which the match above could not know.
		if err := s.rematch(ctx, c, cmd); err != nil {
			return err
		}
	}
	level := slog.LevelDebug
	if len(cmd.Txs) > 0 {
		level = slog.LevelInfo
	}
	s.log.Log(ctx, level, "block connected", "height", cmd.Height, "hash", cmd.Hash, "txs", len(cmd.Txs))
	return nil
}

// rematch matches a connected block again with the scripts its own apply added, and asks for a
// rescan of it if that finds anything the block command did not carry.
func (s *session) rematch(ctx context.Context, c follow.Connect, sent *bankdv1.ChainBlockConnected) error {
	again, watch, err := s.blockCommand(c)
	if err != nil {
		return err
	}
	outputs := make(map[string]int, len(sent.Txs))
	for _, m := range sent.Txs {
		outputs[m.Txid] = len(m.Outputs)
	}
	missed := 0
	for _, m := range again.Txs {
		if n, ok := outputs[m.Txid]; !ok || len(m.Outputs) > n {
			missed++
		}
	}
	if missed == 0 {
		return nil
	}
	s.watch(watch)
	s.log.Info("block paid scripts its own look-ahead added; rescanning it", "height", sent.Height, "txs", missed)
	return s.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN, &bankdv1.RescanChainRequest{FromHeight: sent.Height})
}

// rescan proposes the matches of the rescan's next block. It reports false, and does nothing,
// when the node's block at that height is not the one the state machine followed: the follower
// must first walk the reorg back (which also shortens the rescan).
func (s *session) rescan(ctx context.Context, p *bankdv1.RescanProgress) (bool, error) {
	height := int64(p.NextHeight)
	hash, err := s.remote.BlockHash(ctx, height)
	if err != nil {
		return false, fmt.Errorf("rescan: hash of block %d: %w", height, err)
	}
	if kept, ok, err := s.local.HashAt(height); err != nil {
		return false, err
	} else if ok && kept != hash {
		return false, nil
	}
	blk, err := s.remote.Block(ctx, hash)
	if err != nil {
		return false, fmt.Errorf("rescan: block %d %s: %w", height, hash, err)
	}
	cmd, watch, err := s.blockCommand(follow.Connect{Height: height, Block: blk})
	if err != nil {
		return false, err
	}
	s.watch(watch)
	body := &bankdv1.ChainRescanBlock{Height: p.NextHeight, Hash: cmd.Hash, Txs: cmd.Txs, FinalDepth: s.cfg.FinalDepth}
	if err := s.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN_BLOCK, body); err != nil {
		return false, err
	}
	s.metrics.blocksRescanned.Inc()
	s.log.Info("block rescanned", "height", height, "hash", cmd.Hash, "txs", len(cmd.Txs), "target", p.TargetHeight)
	return true, nil
}

func (s *session) disconnect(ctx context.Context, d follow.Disconnect) error {
	cmd := &bankdv1.ChainBlockDisconnected{Height: uint32(d.Height), Hash: d.Hash.String()}
	if err := s.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_DISCONNECTED, cmd); err != nil {
		return err
	}
	s.metrics.blocksDisconnected.Inc()
	s.log.Info("block disconnected (reorg)", "height", cmd.Height, "hash", cmd.Hash)
	return nil
}

// watch adds outpoints to the outpoint index. Callers add a command's outpoints before they
// propose it: whatever becomes of the command, the index never misses one the state machine has.
func (s *session) watch(ops []wire.OutPoint) {
	for _, op := range ops {
		s.outpoints.Add(op)
	}
	s.metrics.outpoints.Set(float64(s.outpoints.Len()))
}

// propose commits one command and waits for the state machine's verdict.
func (s *session) propose(ctx context.Context, typ bankdv1.CommandType, body proto.Message) error {
	_, err := s.proposer.Apply(ctx, typ, body, nil)
	var refused *fsm.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &refused) && refused.Code == bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT:
		return fmt.Errorf("%s refused: %w: %s", typ, errConflict, refused.Message)
	default:
		return withKind(kindPropose, fmt.Errorf("propose %s: %w", typ, err))
	}
}

// localChain is the state machine's chain as follow sees it.
type localChain struct {
	state State
}

func (l localChain) Tip() (follow.BlockID, bool, error) {
	tip, ok, err := l.state.ChainTip()
	if err != nil {
		return follow.BlockID{}, false, withKind(kindState, err)
	}
	if !ok {
		return follow.BlockID{}, false, nil
	}
	h, err := chainhash.NewHashFromStr(tip.Hash)
	if err != nil {
		return follow.BlockID{}, false, withKind(kindState, fmt.Errorf("stored tip hash %q: %w", tip.Hash, err))
	}
	return follow.BlockID{Height: int64(tip.Height), Hash: *h}, true, nil
}

func (l localChain) HashAt(height int64) (chainhash.Hash, bool, error) {
	if height < 0 || height > math.MaxUint32 {
		return chainhash.Hash{}, false, nil
	}
	s, ok, err := l.state.ChainBlockHash(uint32(height))
	if err != nil {
		return chainhash.Hash{}, false, withKind(kindState, err)
	}
	if !ok {
		return chainhash.Hash{}, false, nil
	}
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}, false, withKind(kindState, fmt.Errorf("stored hash %q at %d: %w", s, height, err))
	}
	return *h, true, nil
}

// observedRemote records the node's best height on every look.
type observedRemote struct {
	Remote
	bestHeight prometheus.Gauge
}

func (r observedRemote) BestBlock(ctx context.Context) (int64, chainhash.Hash, error) {
	height, hash, err := r.Remote.BestBlock(ctx)
	if err == nil {
		r.bestHeight.Set(float64(height))
	}
	return height, hash, err
}
