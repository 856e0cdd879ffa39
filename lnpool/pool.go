// Package lnpool drives the cluster's pool of lnd nodes from the Raft leader: it registers and
// health-checks the nodes, issues invoices for accounts and credits their settlements exactly
// once, pays BOLT11 invoices from accounts exactly once across the pool, drains and retires
// nodes, and reconciles each node's ledger account with its channels.
//
// The rule that makes it safe: every effect on lnd follows a committed intent. The state
// machine (fsm/lightning.go) records the payment and holds its money before SendPaymentV2 is
// called, and the pool reports only what lnd said for certain: a payment is failed only when
// its node says it failed (or says it never heard of it after refusing it), never on a timeout
// or an error. After a failover the new leader's pool first reconciles every payment in flight
// and every open invoice with the nodes, then takes new work. A node an admin declared LOST is
// never called again: its payments in flight are resolved by an admin from evidence
// (docs/LOST_NODES.md).
//
// A Pool exists on every bankd node; it runs (Run, a node.Driver) only on the leader, and the
// API calls CreateInvoice, PayInvoice and Reconcile on the leader only.
package lnpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/lnpool/lnd"
)

// Proposer commits a command through Raft and returns the state machine's answer; a refusal is
// a *fsm.Error. *node.Node implements it.
type Proposer interface {
	Apply(ctx context.Context, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error)
}

// State is the read side of the state machine the pool needs. *fsm.FSM implements it.
type State interface {
	Changed() <-chan struct{}
	Account(id string) (*bankdv1.Account, error)
	LndNodes() ([]*bankdv1.LndNode, error)
	LndNode(id string) (*bankdv1.LndNode, error)
	Invoice(hash string) (*bankdv1.LnInvoice, error)
	InvoiceByRequest(requestID string) (*bankdv1.LnInvoice, error)
	Payment(id string) (*bankdv1.LnPayment, error)
	OpenInvoices(nodeID, after string, max int) ([]*bankdv1.LnInvoice, error)
	InFlightPayments(nodeID, after string, max int) ([]*bankdv1.LnPayment, error)
	InvoicesToCancel(max int) ([]*bankdv1.LnInvoice, error)
}

// Dialer connects to one pool node.
type Dialer func(ctx context.Context, n *bankdv1.LndNode) (lnd.Client, error)

// NodeConfig is a pool node as cluster.hcl names it.
type NodeConfig struct {
	ID, Address, TLSCertPath, MacaroonPath string
}

// Config is the pool's configuration.
type Config struct {
	// Network is the chain network invoices must be for (cluster.hcl's chain.network).
	Network string
	// Nodes from cluster.hcl, registered when the pool starts on a new leader. Nodes added at
	// runtime (AddNode) live in the state machine only.
	Nodes []NodeConfig
	// HealthInterval is how often each node is checked (default 2 s).
	HealthInterval time.Duration
	// SweepInterval is how often open invoices are looked up on their nodes (default 30 s).
	SweepInterval time.Duration
	// DefaultInvoiceExpiry applies when a request gives none (default 1 h).
	DefaultInvoiceExpiry time.Duration
	// PaymentTimeout is how long a node keeps looking for routes (default 60 s).
	PaymentTimeout time.Duration
	// FeeReservePPM and MinFeeReserveSat make the default fee reserve of a payment:
	// max(min, amount × ppm / 1e6, the route-fee probe), unless the request gives max_fee_sat.
	FeeReservePPM    int64
	MinFeeReserveSat int64
}

func (c *Config) defaults() {
	if c.HealthInterval <= 0 {
		c.HealthInterval = 2 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 30 * time.Second
	}
	if c.DefaultInvoiceExpiry <= 0 {
		c.DefaultInvoiceExpiry = time.Hour
	}
	if c.PaymentTimeout <= 0 {
		c.PaymentTimeout = 60 * time.Second
	}
	if c.FeeReservePPM <= 0 {
		c.FeeReservePPM = 10_000 // 1%
	}
	if c.MinFeeReserveSat <= 0 {
		c.MinFeeReserveSat = 10
	}
}

// Options are the parts of a pool that do not come from Config.
type Options struct {
	Logger *slog.Logger
	// Dial replaces lnd.Dial (tests use lndtest).
	Dial Dialer
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// ErrNotReady is returned by the pool's API methods when it is not running on this node (not
// the leader) or has not finished reconciling after it started. Nothing was done; retry.
var ErrNotReady = errors.New("lightning pool is not ready (not the leader, or reconciling after a leader change); nothing was done, retry shortly")

// Pool is the leader's driver of the lnd pool. See the package documentation.
type Pool struct {
	cfg      Config
	params   *chaincfg.Params
	proposer Proposer
	state    State
	dial     Dialer
	now      func() time.Time
	log      *slog.Logger
	metrics  *metrics
	fees     *feeCache

	mu      sync.Mutex
	run     *runState // nil unless running and reconciled
	clients map[string]*conn
}

// conn is a live client of one node and the registry entry it was dialed for.
type conn struct {
	client lnd.Client
	node   *bankdv1.LndNode
}

// runState is what one term's run shares with the API.
type runState struct {
	ctx      context.Context
	wg       *sync.WaitGroup
	tracking map[string]bool // payment ids with a tracker running
}

// New returns a pool. It does nothing until Run is called on the leader.
func New(cfg Config, proposer Proposer, state State, opts Options) (*Pool, error) {
	cfg.defaults()
	params, ok := fsm.ChainParams(cfg.Network)
	if !ok {
		return nil, fmt.Errorf("lnpool: network must be one of %s, got %q", fsm.ChainNetworkNames, cfg.Network)
	}
	if proposer == nil || state == nil {
		return nil, errors.New("lnpool: a proposer and a state are required")
	}
	for _, n := range cfg.Nodes {
		if err := fsm.ValidateUpsertLndNode(&bankdv1.UpsertLndNodeRequest{Id: n.ID, Address: n.Address, TlsCertPath: n.TLSCertPath, MacaroonPath: n.MacaroonPath}); err != nil {
			return nil, fmt.Errorf("lnpool: lnd %q: %s", n.ID, err.Message)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Dial == nil {
		opts.Dial = func(ctx context.Context, n *bankdv1.LndNode) (lnd.Client, error) {
			return lnd.Dial(ctx, lnd.Config{Address: n.Address, TLSCertPath: n.TlsCertPath, MacaroonPath: n.MacaroonPath, Network: params})
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Pool{
		cfg: cfg, params: params, proposer: proposer, state: state, dial: opts.Dial, now: opts.Now,
		log: opts.Logger.With("component", "lnpool"), metrics: newMetrics(), fees: newFeeCache(),
		clients: make(map[string]*conn),
	}, nil
}

// Name implements node.Driver.
func (p *Pool) Name() string { return "lnpool" }

// Run is the leader's pool loop for one term. It registers cluster.hcl's nodes, checks every
// node, reconciles every payment in flight and every open invoice, then serves the API and
// keeps the nodes' invoice subscriptions, health checks, sweeps and drains going until ctx
// ends (leadership lost or shutdown).
func (p *Pool) Run(ctx context.Context) error {
	defer p.stop()
	for _, n := range p.cfg.Nodes {
		if err := p.register(ctx, n); err != nil {
			return err
		}
	}
	p.checkHealth(ctx)

	var wg sync.WaitGroup
	defer wg.Wait()
	rs := &runState{ctx: ctx, wg: &wg, tracking: make(map[string]bool)}

	// Reconcile before taking new work: every payment in flight learns its node's answer (or
	// keeps waiting for a node that is down), every open invoice is looked up.
	start := p.now()
	reconciled, err := p.reconcileInFlight(ctx, rs)
	if err != nil {
		return err
	}
	p.sweepAll(ctx)
	p.mu.Lock()
	p.run = rs
	p.mu.Unlock()
	p.log.Info("lightning pool ready", "payments_reconciled", reconciled, "took", p.now().Sub(start).Round(time.Millisecond))

	subscribed := map[string]bool{}
	health := time.NewTicker(p.cfg.HealthInterval)
	defer health.Stop()
	sweep := time.NewTicker(p.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		p.startSubscriptions(ctx, &wg, subscribed)
		select {
		case <-ctx.Done():
			return nil
		case <-health.C:
			p.checkHealth(ctx)
			p.retireDrained(ctx)
			p.updateReconciliationMetric(ctx)
		case <-sweep.C:
			p.sweepAll(ctx)
			if _, err := p.reconcileInFlight(ctx, rs); err != nil {
				return err
			}
		}
	}
}

// stop forgets the run and closes every client.
func (p *Pool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.run = nil
	for id, c := range p.clients {
		_ = c.client.Close()
		delete(p.clients, id)
	}
}

// running returns the current run, or ErrNotReady.
func (p *Pool) running() (*runState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run == nil || p.run.ctx.Err() != nil {
		return nil, ErrNotReady
	}
	return p.run, nil
}

func (p *Pool) register(ctx context.Context, n NodeConfig) error {
	_, err := p.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT, &bankdv1.UpsertLndNodeRequest{
		Id: n.ID, Address: n.Address, TlsCertPath: n.TLSCertPath, MacaroonPath: n.MacaroonPath,
	}, nil)
	var refusal *fsm.Error
	if errors.As(err, &refusal) {
		// A retired node still in cluster.hcl: say so and go on with the others.
		p.log.Warn("lnd from cluster.hcl not registered", "lnd", n.ID, "reason", refusal.Message)
		return nil
	}
	if err != nil {
		return fmt.Errorf("lnpool: register lnd %q: %w", n.ID, err)
	}
	return nil
}

// ErrNodeLost is returned for any call to a node an admin declared LOST: the pool never calls
// it again (docs/LOST_NODES.md).
var ErrNodeLost = errors.New("lnd node was declared lost; the pool does not call it")

// client returns a client of node n, dialing it if needed (or again if its address changed).
// A node declared LOST is never called: the registry is read again here, since n may have been
// read before the declaration.
func (p *Pool) client(ctx context.Context, n *bankdv1.LndNode) (lnd.Client, error) {
	if isLost(n) || p.lostNow(n.Id) {
		p.forget(n.Id)
		return nil, fmt.Errorf("lnd %q: %w", n.Id, ErrNodeLost)
	}
	p.mu.Lock()
	c := p.clients[n.Id]
	p.mu.Unlock()
	if c != nil && c.node.Address == n.Address && c.node.TlsCertPath == n.TlsCertPath && c.node.MacaroonPath == n.MacaroonPath {
		return c.client, nil
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, err := p.dial(dialCtx, n)
	if err != nil {
		return nil, fmt.Errorf("dial lnd %q at %s: %w", n.Id, n.Address, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.clients[n.Id]; old != nil {
		_ = old.client.Close()
	}
	p.clients[n.Id] = &conn{client: client, node: proto.Clone(n).(*bankdv1.LndNode)}
	return client, nil
}

// clientOf returns a client of the registered node id.
func (p *Pool) clientOf(ctx context.Context, id string) (lnd.Client, *bankdv1.LndNode, error) {
	n, err := p.state.LndNode(id)
	if err != nil {
		return nil, nil, fmt.Errorf("lnd %q: %w", id, err)
	}
	c, err := p.client(ctx, n)
	return c, n, err
}

// propose commits one command; refusals come back as *fsm.Error.
func (p *Pool) propose(ctx context.Context, typ bankdv1.CommandType, body proto.Message) (proto.Message, error) {
	return p.proposer.Apply(ctx, typ, body, nil)
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
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

// ErrNoFunding is returned by Funder for a node whose client cannot run lnd's PSBT funding
// flow (a simulated node).
var ErrNoFunding = errors.New("lnpool: this lnd client cannot fund channels through PSBTs")

// Funder returns the PSBT funding side of pool node id, for the payout driver's channel opens.
// Clients are kept while the pool runs (on the leader); a caller elsewhere gets ErrNotReady.
func (p *Pool) Funder(ctx context.Context, id string) (lnd.Funder, error) {
	if _, err := p.running(); err != nil {
		return nil, err
	}
	c, _, err := p.clientOf(ctx, id)
	if err != nil {
		return nil, err
	}
	f, ok := c.(lnd.Funder)
	if !ok {
		return nil, fmt.Errorf("lnd %q: %w", id, ErrNoFunding)
	}
	return f, nil
}

// isLost reports whether an admin declared node n lost.
func isLost(n *bankdv1.LndNode) bool { return n.GetState() == bankdv1.LndNodeState_LND_NODE_STATE_LOST }

// lostNow reads the registry for whether node id is LOST now.
func (p *Pool) lostNow(id string) bool {
	n, err := p.state.LndNode(id)
	return err == nil && isLost(n)
}

// forget closes and drops the client of node id, if any.
func (p *Pool) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[id]; c != nil {
		_ = c.client.Close()
		delete(p.clients, id)
	}
}
