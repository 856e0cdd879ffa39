package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/bankd/bankd/chainwatch"
	"github.com/bankd/bankd/chainwatch/chainrpc"
	"github.com/bankd/bankd/lnpool"
	"github.com/bankd/bankd/node"
	"github.com/bankd/bankd/payout"
	"github.com/bankd/bankd/rpc"
)

// DefaultShutdownTimeout bounds the node's graceful stop when Options leave it out. The API
// gets half of it for the calls in flight.
const DefaultShutdownTimeout = 30 * time.Second

// ErrShutdown is returned by Start on an agent that was shut down.
var ErrShutdown = errors.New("agent is shut down")

// Options are the parts of an agent that do not come from cluster.hcl.
type Options struct {
	// Logger receives everything; nil means slog.Default().
	Logger *slog.Logger
	// Version is this binary's version, advertised in gossip.
	Version string
	// FSMFatal is called when the state machine meets an entry it must not skip; nil keeps the
	// state machine's default (log and exit with status 2). Tests fail the test instead.
	FSMFatal func(error)
	// RaftLogLevel filters hashicorp/raft's and memberlist's logs; nil means Warn.
	RaftLogLevel slog.Leveler
	// APIListener, when set, is the API's listener, already bound (tests hold their ports from
	// the moment they write cluster.hcl). The agent owns it from New on: Shutdown closes it.
	// Nil means Start binds the node's api_addr.
	APIListener net.Listener
	// Drivers are extra leader-only drivers, started after the built-in ones.
	Drivers []node.Driver
	// ShutdownTimeout bounds the node's graceful stop; the API gets half of it for calls in
	// flight. Zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
}

// Agent is one wired node with its API. Create it with New, run it with Start, stop it with
// Shutdown (always, once New succeeded, whatever Start returned).
type Agent struct {
	cfg  *node.Config
	self node.NodeConfig
	opts Options
	log  *slog.Logger

	node *node.Node
	api  *rpc.Server
	pool *lnpool.Pool

	mu       sync.Mutex
	started  bool
	ln       net.Listener
	stopAPI  context.CancelFunc
	apiDone  chan struct{} // closed when Serve returned; apiErr is set then
	apiErr   error
	stopping bool
	// failed is closed when the API stopped without being asked to.
	failed       chan struct{}
	shutdownDone chan struct{}
	shutdownErr  error
}

// New wires node nodeID of cfg: it opens the node's storage and builds its drivers and API,
// but starts no network activity. On error nothing is left open.
func New(cfg *node.Config, nodeID string, opts Options) (*Agent, error) {
	if cfg == nil {
		return nil, errors.New("agent: nil config")
	}
	self, ok := cfg.Node(nodeID)
	if !ok {
		closeListener(opts.APIListener)
		return nil, fmt.Errorf("agent: node %q is not in %s", nodeID, cfg.Path)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	a := &Agent{
		cfg: cfg, self: self, opts: opts, log: opts.Logger.With("node", self.ID),
		ln: opts.APIListener, failed: make(chan struct{}),
	}
	if err := a.wire(); err != nil {
		err = fmt.Errorf("agent: %w", err)
		closeListener(a.ln)
		if a.node != nil {
			err = errors.Join(err, a.shutdownNode(context.Background()))
		}
		return nil, err
	}
	return a, nil
}

// wire builds the node, its drivers and its API, as described in the package documentation.
func (a *Agent) wire() error {
	nodeOpts := node.Options{
		Logger:       a.opts.Logger,
		Version:      a.opts.Version,
		FSMFatal:     a.opts.FSMFatal,
		RaftLogLevel: a.opts.RaftLogLevel,
	}
	var index *chainwatch.Index
	if a.cfg.Chain.Watching() {
		// Kept on every node, so that whichever node leads finds it complete.
		index = chainwatch.NewIndex()
		nodeOpts.ScriptIndex = index
	}
	n, err := node.New(a.cfg, a.self.ID, nodeOpts)
	if err != nil {
		return fmt.Errorf("create node: %w", err)
	}
	a.node = n

	pool, err := a.newLightningPool()
	if err != nil {
		return err
	}
	a.pool = pool
	payouts, err := a.newPayoutDriver()
	if err != nil {
		return err
	}
	apiOpts := rpc.Options{Logger: a.opts.Logger, ShutdownTimeout: a.opts.ShutdownTimeout / 2, Lightning: pool}
	if payouts != nil {
		apiOpts.Payouts = payouts
	}
	api, err := rpc.New(n, a.cfg, apiOpts)
	if err != nil {
		return fmt.Errorf("create api: %w", err)
	}
	a.api = api
	if err := pool.RegisterMetrics(api.Registry()); err != nil {
		return err
	}
	if err := n.AddDriver(pool); err != nil {
		return err
	}
	if payouts != nil {
		if err := payouts.RegisterMetrics(api.Registry()); err != nil {
			return err
		}
		if err := n.AddDriver(payouts); err != nil {
			return err
		}
	}
	if index != nil {
		if err := a.addChainWatcher(index); err != nil {
			return err
		}
		chain := a.cfg.Chain
		a.log.Info("chain watcher configured", "rpc_host", chain.RPCHost, "network", chain.Network,
			"final_depth", chain.FinalDepth, "start_height", chain.StartHeight, "mempool", chain.Mempool)
	}
	for _, d := range a.opts.Drivers {
		if err := n.AddDriver(d); err != nil {
			return fmt.Errorf("add driver %s: %w", d.Name(), err)
		}
	}
	return nil
}

// newLightningPool makes the driver of the lnd pool: cluster.hcl's lnd blocks, and any node
// added at runtime. It runs on the leader only.
func (a *Agent) newLightningPool() (*lnpool.Pool, error) {
	lc := lnpool.Config{Network: a.cfg.Chain.Network}
	for _, l := range a.cfg.Lightning {
		lc.Nodes = append(lc.Nodes, lnpool.NodeConfig{ID: l.ID, Address: l.Address, TLSCertPath: l.TLSCertPath, MacaroonPath: l.MacaroonPath})
	}
	pool, err := lnpool.New(lc, a.node, a.node.FSM(), lnpool.Options{Logger: a.log})
	if err != nil {
		return nil, fmt.Errorf("create lightning pool: %w", err)
	}
	return pool, nil
}

// newPayoutDriver makes the driver of cluster.hcl's payout queues (nil without a payouts
// block), with its own client of the chain node for fee estimates and broadcasts.
func (a *Agent) newPayoutDriver() (*payout.Driver, error) {
	if !a.cfg.Payouts.Enabled() {
		return nil, nil
	}
	var chain payout.Chain
	if a.cfg.Chain.Watching() {
		client, err := chainrpc.New(chainwatch.ConfigFromNode(a.cfg.Chain).RPC)
		if err != nil {
			return nil, fmt.Errorf("payout driver: %w", err)
		}
		chain = client
	}
	opts := payout.Options{Logger: a.log, Funders: a.pool, Channels: a.node.FSM(), Vault: a.node.FSM()}
	return payout.New(a.cfg.Payouts, a.cfg.Chain.Network, a.node, a.node.FSM(), chain, opts), nil
}

// addChainWatcher makes the leader follow the chain node of cluster.hcl's chain block.
func (a *Agent) addChainWatcher(index *chainwatch.Index) error {
	w, err := chainwatch.New(chainwatch.ConfigFromNode(a.cfg.Chain), a.node, a.node.FSM(), index,
		chainwatch.Options{Logger: a.log, NodeID: a.self.ID})
	if err != nil {
		return fmt.Errorf("create chain watcher: %w", err)
	}
	if err := w.RegisterMetrics(a.api.Registry()); err != nil {
		return err
	}
	return a.node.AddDriver(w)
}

// Start binds the API port (unless Options gave a listener), starts the node (gossip, Raft,
// bootstrap) and then serves the API. ctx bounds the start only. After an error, call
// Shutdown to release the node's storage.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.shutdownDone != nil:
		return ErrShutdown
	case a.started:
		return errors.New("agent: already started")
	}
	a.started = true
	if a.ln == nil {
		// Bind the API port before the node joins, so a taken port fails the start, not later.
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", a.self.APIAddr)
		if err != nil {
			return fmt.Errorf("agent: listen for the api on %s: %w", a.self.APIAddr, err)
		}
		a.ln = ln
	}
	if err := a.node.Start(ctx); err != nil {
		closeListener(a.ln)
		a.ln = nil
		return fmt.Errorf("agent: start node: %w", err)
	}

	apiCtx, stopAPI := context.WithCancel(context.Background())
	a.stopAPI = stopAPI
	a.apiDone = make(chan struct{})
	go a.serve(apiCtx, a.ln)
	return nil
}

// serve runs the API until Shutdown cancels ctx or the server fails on its own.
func (a *Agent) serve(ctx context.Context, ln net.Listener) {
	err := a.api.Serve(ctx, ln)
	a.mu.Lock()
	a.apiErr = err
	asked := a.stopping
	a.mu.Unlock()
	if !asked {
		a.log.Error("api server failed; the node must be stopped", "err", err)
		close(a.failed)
	}
	close(a.apiDone)
}

// Failed is closed when the API server stopped without being asked to (its listener broke).
// The owner should then call Shutdown, which returns the cause.
func (a *Agent) Failed() <-chan struct{} { return a.failed }

// Shutdown stops the API (calls in flight get half of ShutdownTimeout), then the node (a
// leader hands leadership over first), within ShutdownTimeout and ctx. It is idempotent:
// later calls wait for the first and return its result.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	if a.shutdownDone != nil {
		done := a.shutdownDone
		a.mu.Unlock()
		select {
		case <-done:
			return a.shutdownErr
		case <-ctx.Done():
			return fmt.Errorf("agent: shutdown: %w", ctx.Err())
		}
	}
	a.shutdownDone = make(chan struct{})
	a.stopping = true
	stopAPI, apiDone, ln := a.stopAPI, a.apiDone, a.ln
	a.mu.Unlock()

	var errs []error
	if apiDone != nil {
		stopAPI()
		select {
		case <-apiDone:
			a.mu.Lock()
			errs = append(errs, a.apiErr)
			a.mu.Unlock()
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("agent: stop api: %w", ctx.Err()))
		}
	} else {
		// Never served: a listener handed over in Options is still ours to close.
		closeListener(ln)
	}
	errs = append(errs, a.shutdownNode(ctx))
	a.shutdownErr = errors.Join(errs...)
	close(a.shutdownDone)
	return a.shutdownErr
}

func (a *Agent) shutdownNode(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, a.opts.ShutdownTimeout)
	defer cancel()
	if err := a.node.Shutdown(ctx); err != nil {
		return fmt.Errorf("agent: shut down node: %w", err)
	}
	a.log.Info("bankd stopped")
	return nil
}

// Reload reads cluster.hcl again and applies what can change while the node runs: the API
// tokens, the node's certificate and the cluster CA, and the gossip keyring. A file that no
// longer parses changes nothing, and a certificate or keyring that fails to load is not
// installed; the error says why. Everything else in the file (nodes, addresses, Raft
// settings, where the certificates live) takes a restart.
func (a *Agent) Reload() error {
	if a.cfg.Path == "" {
		return errors.New("agent: reload: the configuration was not read from a file")
	}
	cfg, err := node.LoadConfig(a.cfg.Path)
	if err != nil {
		return fmt.Errorf("agent: reload %s: %w", a.cfg.Path, err)
	}
	if err := a.api.SetTokens(cfg.Tokens.Tokens); err != nil {
		return fmt.Errorf("agent: reload %s: %w", a.cfg.Path, err)
	}
	if err := a.node.ReloadSecrets(); err != nil {
		return fmt.Errorf("agent: reload: %w", err)
	}
	return nil
}

// ID is the node's id in cluster.hcl.
func (a *Agent) ID() string { return a.self.ID }

// Config is the cluster configuration the agent runs with.
func (a *Agent) Config() *node.Config { return a.cfg }

// Node is the wired node: Raft, gossip, the state machine.
func (a *Agent) Node() *node.Node { return a.node }

// API is the node's API server (its Registry holds every metric of the agent).
func (a *Agent) API() *rpc.Server { return a.api }

// APIAddr is the address the API listens on: the bound one once Start bound it (or Options
// gave a listener), else api_addr from cluster.hcl.
func (a *Agent) APIAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln != nil {
		return a.ln.Addr().String()
	}
	return a.self.APIAddr
}

func closeListener(ln net.Listener) {
	if ln != nil {
		_ = ln.Close()
	}
}
