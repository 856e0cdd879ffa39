// Package payout is the leader's payout driver: it plans one transaction per queue trigger for
// every withdrawal that is due, commits each plan through Raft before anyone signs it, and
// broadcasts signed transactions until the chain watcher sees them. It never holds a key (the
// separate signerd signs) and never decides anything the state machine has not recorded: a new
// leader starts from the batches and queues the state machine holds.
//
// Coin selection is package payout/coinselect; the plan's rules (which coins may be spent, what
// the transaction must look like) are checked again by the state machine (fsm/payout.go).
package payout

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/node"
	"github.com/bankd/bankd/payout/coinselect"
)

// Proposer proposes commands through Raft (*node.Node).
type Proposer interface {
	Apply(ctx context.Context, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error)
}

// State is the read side of the state machine the driver needs (*fsm.FSM).
type State interface {
	Wallet(id string) (*bankdv1.Wallet, error)
	QueuedPayouts(queue string, max int) ([]*bankdv1.Payout, error)
	SpendableUtxos(walletID string) ([]*bankdv1.Utxo, error)
	ListPayoutBatches(state bankdv1.BatchState, pageToken string, pageSize int) ([]*bankdv1.PayoutBatch, string, error)
	ChainTx(txid string) (*bankdv1.ChainTx, []*bankdv1.Deposit, error)
	LookupAddress(address string) (*bankdv1.WatchedScript, error)
	PayoutBatch(id string) (*bankdv1.PayoutBatch, error)
	ChainTip() (tip *bankdv1.ChainTip, ok bool, err error)
	ListWallets(pageToken string, pageSize int) ([]*bankdv1.Wallet, string, error)
	SweepableUtxos(walletID string) ([]*bankdv1.Utxo, error)
}

// Chain is the chain node the driver estimates fees with and broadcasts to
// (*chainrpc.Client).
type Chain interface {
	EstimateFeeRate(ctx context.Context, target int) (satPerKvB int64, ok bool, err error)
	SendRawTransaction(ctx context.Context, tx *wire.MsgTx) (chainhash.Hash, error)
	// RawTransaction returns a confirmed or mempool transaction by txid, verified to be it.
	RawTransaction(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error)
}

// Options tune the driver; zero values take the defaults.
type Options struct {
	Logger *slog.Logger
	// Tick is how often the driver looks at the queues and the signed batches (default 1s, or
	// less when a queue's interval is shorter).
	Tick time.Duration
	// RebroadcastEvery is how long a signed transaction the chain has not shown waits before it
	// is sent again (default 30s).
	RebroadcastEvery time.Duration
	// Funders and Channels turn on channel funding through PSBTs (channel.go): the pool's lnd
	// nodes and the state machine's channel opens. Either nil: opens wait.
	Funders  Funders
	Channels ChannelState
	// Vault lets the driver plan approved moves to the cold vault (vault.go); nil: they wait.
	Vault VaultState
}

// Driver plans, and broadcasts, the cluster's payouts. It exists on every node and runs only
// on the leader (node.Driver).
type Driver struct {
	cfg      node.PayoutsConfig
	network  string
	proposer Proposer
	state    State
	chain    Chain
	log      *slog.Logger
	opts     Options
	rng      *rand.Rand

	mu sync.Mutex
	// rates are the last fee rate per queue (sat/kvB, within the queue's bounds).
	rates map[string]int64
	// lastPlan is when each queue last planned (or, on a new leader, when it started).
	lastPlan map[string]time.Time
	// flush asks for a plan of a queue at the next tick, whatever its trigger.
	flush map[string]bool
	// sent is when each signed batch was last broadcast by this leader.
	sent map[string]time.Time
	// lastSweep is when this leader last looked for deposits to sweep.
	lastSweep time.Time
	// runCtx is this leadership's context (lnd funding streams live as long as it); flows are
	// the channel opens' lnd flows this leader started or finalized.
	runCtx  context.Context
	flows   map[string]*flow
	metrics *metrics
}

// New returns the driver of cfg's queues. chain may be nil when the cluster follows no chain
// node: plans are still made (at the queues' minimum fee rates) but nothing is broadcast.
func New(cfg node.PayoutsConfig, network string, proposer Proposer, state State, chain Chain, opts Options) *Driver {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
		for _, q := range cfg.Queues {
			opts.Tick = min(opts.Tick, q.Interval)
		}
	}
	if opts.RebroadcastEvery <= 0 {
		opts.RebroadcastEvery = 30 * time.Second
	}
	return &Driver{
		cfg: cfg, network: network, proposer: proposer, state: state, chain: chain,
		log: opts.Logger.With("driver", "payouts"), opts: opts, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9a70)),
		rates: map[string]int64{}, lastPlan: map[string]time.Time{}, flush: map[string]bool{}, sent: map[string]time.Time{},
		flows: map[string]*flow{}, runCtx: context.Background(), metrics: newMetrics(),
	}
}

// Name implements node.Driver.
func (d *Driver) Name() string { return "payouts" }

// ErrNoPayouts is returned by Policy when cluster.hcl has no payouts block.
var ErrNoPayouts = errors.New("payouts: the cluster takes no withdrawals (cluster.hcl has no payouts block)")

// ErrUnknownQueue is returned by Policy and Flush for a queue cluster.hcl does not name.
var ErrUnknownQueue = errors.New("payouts: no such queue")

// Policy returns the queue a withdrawal to script goes to (queue "" is the default one) and
// what the leader stamps on its request: the fee the customer is charged and the queue's
// approval threshold.
func (d *Driver) Policy(queue string, script []byte) (string, *bankdv1.PayoutQueuePolicy, error) {
	if !d.cfg.Enabled() {
		return "", nil, ErrNoPayouts
	}
	q, ok := d.cfg.Queue(queue)
	if !ok {
		return "", nil, fmt.Errorf("%w: %q (cluster.hcl names %s)", ErrUnknownQueue, queue, d.queueNames())
	}
	fee := q.FeeSat
	if q.Fee == node.FeeEstimate {
		// One output and one input's share of the transaction, at the queue's rate.
		vbytes := int64(8+1+len(script)) + fsm.P2WPKHInputVBytes
		fee = min(q.FeeSat, (vbytes*d.rate(q)+999)/1000)
	}
	return q.Name, &bankdv1.PayoutQueuePolicy{FeeSat: fee, ApprovalThresholdSat: q.ApprovalThresholdSat}, nil
}

// Flush asks for a plan of queue ("" is the default one) at the next tick, whatever its
// trigger, and returns the queue's name. It has effect on the leader only.
func (d *Driver) Flush(queue string) (string, error) {
	if !d.cfg.Enabled() {
		return "", ErrNoPayouts
	}
	q, ok := d.cfg.Queue(queue)
	if !ok {
		return "", fmt.Errorf("%w: %q (cluster.hcl names %s)", ErrUnknownQueue, queue, d.queueNames())
	}
	d.mu.Lock()
	d.flush[q.Name] = true
	d.mu.Unlock()
	return q.Name, nil
}

func (d *Driver) queueNames() string {
	var names []string
	for _, q := range d.cfg.Queues {
		names = append(names, fmt.Sprintf("%q", q.Name))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// rate is the queue's current fee rate in sat/kvB: the last estimate, else its floor.
func (d *Driver) rate(q node.PayoutQueueConfig) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.rates[q.Name]; ok {
		return r
	}
	return q.MinFeeRate * 1000
}

// Run implements node.Driver: until ctx ends, every tick it refreshes fee estimates, plans
// the queues that are due and broadcasts signed transactions the chain has not shown.
func (d *Driver) Run(ctx context.Context) error {
	if !d.cfg.Enabled() {
		<-ctx.Done()
		return nil
	}
	start := time.Now()
	d.mu.Lock()
	for _, q := range d.cfg.Queues {
		d.lastPlan[q.Name] = start
	}
	d.sent = map[string]time.Time{}
	d.flows = map[string]*flow{}
	d.runCtx = ctx
	d.mu.Unlock()
	t := time.NewTicker(d.opts.Tick)
	defer t.Stop()
	lastEstimate := time.Time{}
	for {
		if time.Since(lastEstimate) >= time.Minute {
			d.refreshRates(ctx)
			lastEstimate = time.Now()
		}
		for _, q := range d.cfg.Queues {
			if err := d.maybePlan(ctx, q); err != nil && ctx.Err() == nil {
				d.log.Warn("payout plan failed", "queue", q.Name, "err", err)
			}
		}
		if err := d.maybeConsolidate(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("consolidation failed", "err", err)
		}
		if err := d.maybeSweep(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("sweep failed", "err", err)
		}
		if err := d.maybeSplit(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("split failed", "err", err)
		}
		if err := d.planVaultMoves(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("vault moves failed", "err", err)
		}
		if err := d.driveChannels(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("channel opens failed", "err", err)
		}
		if err := d.broadcastSigned(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("payout broadcast pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// refreshRates asks the chain node for each queue's estimate and clamps it into the queue's
// bounds; without an estimate the queue pays its floor.
func (d *Driver) refreshRates(ctx context.Context) {
	for _, q := range d.cfg.Queues {
		rate := q.MinFeeRate * 1000
		if d.chain != nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			est, ok, err := d.chain.EstimateFeeRate(cctx, q.ConfTarget)
			cancel()
			switch {
			case err != nil:
				d.log.Warn("fee estimate failed; using the queue's floor", "queue", q.Name, "err", err)
			case ok:
				rate = max(q.MinFeeRate*1000, min(q.MaxFeeRate*1000, est))
			}
		}
		d.mu.Lock()
		d.rates[q.Name] = rate
		d.mu.Unlock()
	}
}

// maybePlan plans q's next transaction if its trigger says so.
func (d *Driver) maybePlan(ctx context.Context, q node.PayoutQueueConfig) error {
	queued, err := d.state.QueuedPayouts(q.Name, q.MaxBatch)
	if err != nil || len(queued) == 0 {
		return err
	}
	d.mu.Lock()
	last, flush := d.lastPlan[q.Name], d.flush[q.Name]
	d.mu.Unlock()
	due := flush
	switch q.Trigger {
	case node.TriggerInterval:
		due = due || time.Since(last) >= q.Interval
	case node.TriggerCount:
		oldest := time.UnixMilli(queued[0].RequestedUnixMs)
		due = due || len(queued) >= q.Count || time.Since(oldest) >= q.Interval
	}
	if !due {
		return nil
	}
	b, err := d.plan(ctx, q, queued)
	d.mu.Lock()
	d.lastPlan[q.Name] = time.Now()
	if err == nil {
		delete(d.flush, q.Name)
	}
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if b != nil {
		d.log.Info("payout planned", "queue", q.Name, "batch", b.Id, "txid", b.Txid, "payouts", len(b.Outputs),
			"inputs", len(b.Inputs), "fee_sat", b.FeeSat, "fee_rate_sat_kvb", b.FeeRateSatKvb)
	}
	return nil
}

// plan selects coins for as many of the queued withdrawals (in request order) as the hot
// wallet can pay, and commits the plan. It returns nil when nothing can be paid yet.
func (d *Driver) plan(ctx context.Context, q node.PayoutQueueConfig, queued []*bankdv1.Payout) (*bankdv1.PayoutBatch, error) {
	w, err := d.state.Wallet(d.cfg.Wallet)
	if err != nil {
		return nil, fmt.Errorf("hot wallet %q: %w", d.cfg.Wallet, err)
	}
	if len(w.Branches) != 2 {
		return nil, fmt.Errorf("hot wallet %q has no change branch", w.Id)
	}
	utxos, err := d.state.SpendableUtxos(w.Id)
	if err != nil {
		return nil, err
	}
	coins, byID := coinsOf(utxos)
	rate := d.rate(q)
	// Pay the oldest withdrawals first; drop the newest until the wallet can pay the rest.
	for n := len(queued); n > 0; n-- {
		batch := queued[:n]
		var target int64
		scripts := make([][]byte, 0, n+1)
		for _, p := range batch {
			target += p.AmountSat
			scripts = append(scripts, p.Script)
		}
		// The base is the transaction without inputs or change; the input count's varint is
		// counted at its largest, so the state machine's exact size never exceeds the estimate.
		base := fsm.PayoutTxVSize(0, scripts) + 2
		sel, err := coinselect.Select(coins, coinselect.Params{
			Target: target, FeeRate: rate, LongTermFeeRate: q.MinFeeRate * 1000, BaseVBytes: base,
			ChangeVBytes: fsm.P2WPKHChangeVBytes, ChangeSpendVBytes: fsm.P2WPKHInputVBytes, MinChange: 1000,
		}, d.rng)
		if errors.Is(err, coinselect.ErrInsufficientFunds) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n < len(queued) {
			d.log.Warn("hot wallet cannot pay every queued withdrawal; paying the oldest", "queue", q.Name, "paying", n, "queued", len(queued))
		}
		return d.commit(ctx, q, w, batch, sel, byID)
	}
	d.log.Warn("hot wallet cannot pay the oldest queued withdrawal", "queue", q.Name, "payout", queued[0].Id,
		"amount_sat", queued[0].AmountSat, "spendable_utxos", len(utxos))
	return nil, nil
}

// selectInputs selects coins among utxos (each adding inputVBytes) for one output of target sat
// paying script, with change (changeVBytes) when it is worth it, at the default queue's rate.
// It returns the inputs, the change (0: none) and the rate; coinselect.ErrInsufficientFunds
// when the coins cannot pay it.
func (d *Driver) selectInputs(utxos []*bankdv1.Utxo, target int64, script []byte, inputVBytes, changeVBytes int64) ([]*bankdv1.BatchInput, int64, int64, error) {
	coins, byID := coinsOf(utxos)
	for i := range coins {
		coins[i].InputVBytes = inputVBytes
	}
	q, _ := d.cfg.Queue("")
	rate := d.rate(q)
	sel, err := coinselect.Select(coins, coinselect.Params{
		Target: target, FeeRate: rate, LongTermFeeRate: q.MinFeeRate * 1000, BaseVBytes: fsm.PayoutTxVSize(0, [][]byte{script}) + 2,
		ChangeVBytes: changeVBytes, ChangeSpendVBytes: inputVBytes, MinChange: 1000,
	}, d.rng)
	if err != nil {
		return nil, 0, 0, err
	}
	selected := make([]*bankdv1.Utxo, 0, len(sel.Coins))
	for _, c := range sel.Coins {
		selected = append(selected, byID[c.ID])
	}
	inputs, _, err := d.inputsOf(selected)
	return inputs, sel.Change, rate, err
}

// coinsOf makes coin selection's coins of p2wpkh UTXOs, and the UTXOs by coin id.
func coinsOf(utxos []*bankdv1.Utxo) ([]coinselect.Coin, map[string]*bankdv1.Utxo) {
	coins := make([]coinselect.Coin, 0, len(utxos))
	byID := make(map[string]*bankdv1.Utxo, len(utxos))
	for _, u := range utxos {
		id := fmt.Sprintf("%s:%d", u.Outpoint.Txid, u.Outpoint.Vout)
		coins = append(coins, coinselect.Coin{ID: id, Value: u.ValueSat, InputVBytes: fsm.P2WPKHInputVBytes})
		byID[id] = u
	}
	return coins, byID
}

// commit builds the plan's PSBT and proposes it.
func (d *Driver) commit(ctx context.Context, q node.PayoutQueueConfig, w *bankdv1.Wallet, batch []*bankdv1.Payout,
	sel coinselect.Result, byID map[string]*bankdv1.Utxo) (*bankdv1.PayoutBatch, error) {
	plan := &bankdv1.PayoutPlan{Queue: q.Name, WalletId: w.Id, ChangeSat: sel.Change, FeeRateSatKvb: d.rate(q)}
	utxos := make([]*bankdv1.Utxo, 0, len(sel.Coins))
	for _, c := range sel.Coins {
		utxos = append(utxos, byID[c.ID])
	}
	inputs, _, err := d.inputsOf(utxos)
	if err != nil {
		return nil, err
	}
	for _, in := range inputs {
		plan.Inputs = append(plan.Inputs, in.Outpoint)
	}
	var outputs []*bankdv1.BatchOutput
	for _, p := range batch {
		plan.PayoutIds = append(plan.PayoutIds, p.Id)
		outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: p.AmountSat, Script: p.Script})
	}
	if sel.Change > 0 {
		next := w.Branches[1].NextIndex
		script, err := changeScript(w.Descriptor_, d.network, next)
		if err != nil {
			return nil, err
		}
		outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: sel.Change, Script: script, Change: true, ChangeIndex: next})
	}
	raw, err := fsm.BuildPayoutPSBT(w.Descriptor_, d.network, inputs, outputs)
	if err != nil {
		return nil, fmt.Errorf("build psbt: %w", err)
	}
	plan.Psbt = raw
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, plan, nil)
	var refusal *fsm.Error
	if errors.As(err, &refusal) {
		return nil, fmt.Errorf("plan refused by the state machine: %s", refusal.Message)
	}
	if err != nil {
		return nil, err
	}
	r, ok := res.(*bankdv1.PayoutPlanResponse)
	if !ok {
		return nil, fmt.Errorf("plan: unexpected response %T", res)
	}
	d.metrics.planned.WithLabelValues(q.Name).Inc()
	return r.Batch, nil
}

// maybeConsolidate merges the hot wallet's smallest UTXOs into one change output while fees
// are low (the default queue's rate at most consolidate.below_fee_rate) and the wallet holds at
// least consolidate.min_utxos spendable UTXOs; one consolidation at a time.
func (d *Driver) maybeConsolidate(ctx context.Context) error {
	c := d.cfg.Consolidate
	if c.MinUtxos == 0 {
		return nil
	}
	q, _ := d.cfg.Queue("")
	rate := d.rate(q)
	if rate > c.BelowFeeRate*1000 {
		return nil
	}
	inFlight := false
	if err := d.forEachUnsettled(func(b *bankdv1.PayoutBatch) { inFlight = inFlight || b.Queue == fsm.ConsolidationQueue }); err != nil || inFlight {
		return err
	}
	utxos, err := d.state.SpendableUtxos(d.cfg.Wallet)
	if err != nil || len(utxos) < c.MinUtxos {
		return err
	}
	slices.SortFunc(utxos, func(a, b *bankdv1.Utxo) int { return cmp.Compare(a.ValueSat, b.ValueSat) })
	utxos = utxos[:min(len(utxos), c.MaxInputs)]
	w, err := d.state.Wallet(d.cfg.Wallet)
	if err != nil {
		return fmt.Errorf("hot wallet %q: %w", d.cfg.Wallet, err)
	}
	if len(w.Branches) != 2 {
		return fmt.Errorf("hot wallet %q has no change branch", w.Id)
	}
	next := w.Branches[1].NextIndex
	script, err := changeScript(w.Descriptor_, d.network, next)
	if err != nil {
		return err
	}
	plan := &bankdv1.PayoutPlan{Queue: fsm.ConsolidationQueue, WalletId: w.Id, FeeRateSatKvb: rate}
	inputs, in, err := d.inputsOf(utxos)
	if err != nil {
		return err
	}
	for _, i := range inputs {
		plan.Inputs = append(plan.Inputs, i.Outpoint)
	}
	fee := (fsm.PayoutTxVSize(len(inputs), [][]byte{script})*rate + 999) / 1000
	// Consolidate only what it pays to: the merged coin must be worth several times the fee.
	if plan.ChangeSat = in - fee; plan.ChangeSat < 4*fee || plan.ChangeSat < fsm.DustThreshold(script) {
		return nil
	}
	outputs := []*bankdv1.BatchOutput{{ValueSat: plan.ChangeSat, Script: script, Change: true, ChangeIndex: next}}
	if plan.Psbt, err = fsm.BuildPayoutPSBT(w.Descriptor_, d.network, inputs, outputs); err != nil {
		return fmt.Errorf("build psbt: %w", err)
	}
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, plan, nil)
	if err != nil {
		return err
	}
	d.metrics.planned.WithLabelValues(fsm.ConsolidationQueue).Inc()
	if r, ok := res.(*bankdv1.PayoutPlanResponse); ok {
		d.log.Info("consolidation planned", "batch", r.Batch.Id, "txid", r.Batch.Txid, "inputs", len(inputs), "fee_sat", r.Batch.FeeSat, "fee_rate_sat_kvb", r.Batch.FeeRateSatKvb)
	}
	return nil
}

// maybeSweep moves, every sweep.interval, each DEPOSIT wallet's credited coins to the hot
// wallet's next change index once they add up to sweep.min_sat: one sweep per wallet at a time,
// signed by that wallet's own signer.
func (d *Driver) maybeSweep(ctx context.Context) error {
	sc := d.cfg.Sweep
	if sc.Interval == 0 || time.Since(d.lastSweep) < sc.Interval {
		return nil
	}
	d.lastSweep = time.Now()
	busy := map[string]bool{}
	if err := d.forEachUnsettled(func(b *bankdv1.PayoutBatch) { busy[b.WalletId] = busy[b.WalletId] || b.ToWalletId != "" }); err != nil {
		return err
	}
	hot, err := d.state.Wallet(d.cfg.Wallet)
	if err != nil {
		return fmt.Errorf("hot wallet %q: %w", d.cfg.Wallet, err)
	}
	if len(hot.Branches) != 2 {
		return fmt.Errorf("hot wallet %q has no change branch", hot.Id)
	}
	q, _ := d.cfg.Queue("")
	token := ""
	for range 1000 {
		wallets, next, err := d.state.ListWallets(token, fsm.MaxPageSize)
		if err != nil {
			return err
		}
		for _, w := range wallets {
			if w.Kind != bankdv1.WalletKind_WALLET_KIND_DEPOSIT || busy[w.Id] {
				continue
			}
			if err := d.sweep(ctx, w, hot, d.rate(q)); err != nil {
				d.log.Warn("sweep of a deposit wallet failed", "wallet", w.Id, "err", err)
			}
			// The hot wallet's next change index moved: read it again for the next sweep.
			if hot, err = d.state.Wallet(d.cfg.Wallet); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		token = next
	}
	return nil
}

func (d *Driver) sweep(ctx context.Context, w, hot *bankdv1.Wallet, rate int64) error {
	utxos, err := d.state.SweepableUtxos(w.Id)
	if err != nil {
		return err
	}
	utxos = utxos[:min(len(utxos), d.cfg.Sweep.MaxInputs)]
	plan := &bankdv1.PayoutPlan{Queue: fsm.SweepQueue, WalletId: w.Id, ToWalletId: hot.Id, FeeRateSatKvb: rate}
	inputs, in, err := d.inputsOf(utxos)
	if err != nil {
		return err
	}
	for _, i := range inputs {
		plan.Inputs = append(plan.Inputs, i.Outpoint)
	}
	if len(inputs) == 0 || in < d.cfg.Sweep.MinSat {
		return nil
	}
	next := hot.Branches[1].NextIndex
	script, err := changeScript(hot.Descriptor_, d.network, next)
	if err != nil {
		return err
	}
	fee := (fsm.PayoutTxVSize(len(inputs), [][]byte{script})*rate + 999) / 1000
	if plan.ChangeSat = in - fee; plan.ChangeSat < fsm.DustThreshold(script) {
		return nil
	}
	outputs := []*bankdv1.BatchOutput{{ValueSat: plan.ChangeSat, Script: script, Change: true, ChangeIndex: next}}
	if plan.Psbt, err = fsm.BuildSweepPSBT(w.Descriptor_, d.network, inputs, outputs); err != nil {
		return fmt.Errorf("build psbt: %w", err)
	}
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, plan, nil)
	if err != nil {
		return err
	}
	d.metrics.planned.WithLabelValues(fsm.SweepQueue).Inc()
	if r, ok := res.(*bankdv1.PayoutPlanResponse); ok {
		d.log.Info("sweep planned", "batch", r.Batch.Id, "from", w.Id, "to", hot.Id, "txid", r.Batch.Txid, "inputs", len(inputs), "sat", in, "fee_sat", r.Batch.FeeSat)
	}
	return nil
}

// maybeSplit keeps split.target_utxos coins in the hot wallet: while it has fewer spendable
// UTXOs, its largest coin is split into change outputs of at least split.min_sat each (as many
// as are missing, plus the coin itself), one split at a time.
func (d *Driver) maybeSplit(ctx context.Context) error {
	sc := d.cfg.Split
	if sc.TargetUtxos == 0 {
		return nil
	}
	inFlight := false
	if err := d.forEachUnsettled(func(b *bankdv1.PayoutBatch) { inFlight = inFlight || b.Queue == fsm.SplitQueue }); err != nil || inFlight {
		return err
	}
	utxos, err := d.state.SpendableUtxos(d.cfg.Wallet)
	if err != nil || len(utxos) == 0 || len(utxos) >= sc.TargetUtxos {
		return err
	}
	largest := slices.MaxFunc(utxos, func(a, b *bankdv1.Utxo) int { return cmp.Compare(a.ValueSat, b.ValueSat) })
	w, err := d.state.Wallet(d.cfg.Wallet)
	if err != nil {
		return fmt.Errorf("hot wallet %q: %w", d.cfg.Wallet, err)
	}
	if len(w.Branches) != 2 {
		return fmt.Errorf("hot wallet %q has no change branch", w.Id)
	}
	inputs, _, err := d.inputsOf([]*bankdv1.Utxo{largest})
	if err != nil {
		return err
	}
	q, _ := d.cfg.Queue("")
	rate := d.rate(q)
	next := w.Branches[1].NextIndex
	n := min(sc.TargetUtxos-len(utxos)+1, fsm.MaxSplitOutputs+1)
	var outputs []*bankdv1.BatchOutput
	var avail int64
	for ; n >= 2; n-- {
		outputs = outputs[:0]
		var scripts [][]byte
		for i := range n {
			script, err := changeScript(w.Descriptor_, d.network, next+uint32(i))
			if err != nil {
				return err
			}
			scripts = append(scripts, script)
			outputs = append(outputs, &bankdv1.BatchOutput{Script: script, Change: true, ChangeIndex: next + uint32(i)})
		}
		fee := (fsm.PayoutTxVSize(1, scripts)*rate + 999) / 1000
		if avail = largest.ValueSat - fee; avail/int64(n) >= sc.MinSat {
			break
		}
	}
	if n < 2 {
		return nil // the largest coin is too small to split
	}
	each := avail / int64(n)
	plan := &bankdv1.PayoutPlan{Queue: fsm.SplitQueue, WalletId: w.Id, Inputs: []*bankdv1.Outpoint{largest.Outpoint}, FeeRateSatKvb: rate}
	for i, o := range outputs {
		o.ValueSat = each
		if i == 0 {
			o.ValueSat = avail - each*int64(n-1)
			plan.ChangeSat = o.ValueSat
		} else {
			plan.SplitSat = append(plan.SplitSat, each)
		}
	}
	if plan.Psbt, err = fsm.BuildPayoutPSBT(w.Descriptor_, d.network, inputs, outputs); err != nil {
		return fmt.Errorf("build psbt: %w", err)
	}
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, plan, nil)
	if err != nil {
		return err
	}
	d.metrics.planned.WithLabelValues(fsm.SplitQueue).Inc()
	if r, ok := res.(*bankdv1.PayoutPlanResponse); ok {
		d.log.Info("split planned", "batch", r.Batch.Id, "txid", r.Batch.Txid, "outputs", n, "each_sat", each, "fee_sat", r.Batch.FeeSat)
	}
	return nil
}

// inputsOf makes the batch inputs of UTXOs, with where their wallet derives each, and their
// total.
func (d *Driver) inputsOf(utxos []*bankdv1.Utxo) ([]*bankdv1.BatchInput, int64, error) {
	inputs := make([]*bankdv1.BatchInput, 0, len(utxos))
	var total int64
	for _, u := range utxos {
		ws, err := d.state.LookupAddress(u.Address)
		if err != nil {
			return nil, 0, fmt.Errorf("UTXO %s:%d: %w", u.Outpoint.Txid, u.Outpoint.Vout, err)
		}
		total += u.ValueSat
		inputs = append(inputs, &bankdv1.BatchInput{Outpoint: u.Outpoint, ValueSat: u.ValueSat, Script: u.Script, Branch: ws.Branch, Index: ws.Index})
	}
	return inputs, total, nil
}

// forEachUnsettled calls fn for every batch that may still confirm or be signed: PLANNED,
// SIGNED or CONFIRMED.
func (d *Driver) forEachUnsettled(fn func(*bankdv1.PayoutBatch)) error {
	for _, state := range []bankdv1.BatchState{bankdv1.BatchState_BATCH_STATE_PLANNED, bankdv1.BatchState_BATCH_STATE_SIGNED, bankdv1.BatchState_BATCH_STATE_CONFIRMED} {
		if err := d.forEachBatch(state, fn); err != nil {
			return err
		}
	}
	return nil
}

// forEachBatch calls fn for every batch in state, page by page.
func (d *Driver) forEachBatch(state bankdv1.BatchState, fn func(*bankdv1.PayoutBatch)) error {
	token := ""
	for range 1000 {
		batches, next, err := d.state.ListPayoutBatches(state, token, fsm.MaxPageSize)
		if err != nil {
			return err
		}
		for _, b := range batches {
			fn(b)
		}
		if next == "" {
			return nil
		}
		token = next
	}
	return nil
}

// changeScript derives the hot wallet's change script at index.
func changeScript(desc, network string, index uint32) ([]byte, error) {
	return branchScript(desc, network, 1, index)
}

// broadcastSigned sends every SIGNED batch's transaction that the chain watcher has not seen in
// the mempool or a block, at most once per RebroadcastEvery. Sending a transaction twice is
// harmless (the node answers that it has it), so a new leader simply sends again.
func (d *Driver) broadcastSigned(ctx context.Context) error {
	if d.chain == nil {
		return nil
	}
	return d.forEachBatch(bankdv1.BatchState_BATCH_STATE_SIGNED, func(b *bankdv1.PayoutBatch) { d.maybeBroadcast(ctx, b) })
}

func (d *Driver) maybeBroadcast(ctx context.Context, b *bankdv1.PayoutBatch) {
	if !d.channelBroadcastable(b) {
		return // lnd publishes a funding transaction first, once the peer has signed
	}
	if b.ReplacedBy != "" {
		if r, err := d.state.PayoutBatch(b.ReplacedBy); err == nil && r.State != bankdv1.BatchState_BATCH_STATE_PLANNED && r.State != bankdv1.BatchState_BATCH_STATE_ABANDONED {
			return // its fee bump is signed: that one goes out
		}
	}
	rec, _, err := d.state.ChainTx(b.Txid)
	if err == nil && rec.State != bankdv1.TxState_TX_STATE_REJECTED {
		if rec.State == bankdv1.TxState_TX_STATE_PENDING {
			d.maybeBump(ctx, b)
		}
		return // the chain watcher sees it: mempool or a block
	}
	defer d.maybeBump(ctx, b)
	d.mu.Lock()
	last, sentBefore := d.sent[b.Id]
	d.mu.Unlock()
	if sentBefore && time.Since(last) < d.opts.RebroadcastEvery {
		return
	}
	tx := wire.NewMsgTx(2)
	if err := tx.Deserialize(bytes.NewReader(b.SignedTx)); err != nil {
		d.log.Error("signed transaction of a batch does not decode", "batch", b.Id, "err", err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = d.chain.SendRawTransaction(cctx, tx)
	cancel()
	d.mu.Lock()
	d.sent[b.Id] = time.Now()
	d.mu.Unlock()
	if err != nil && !alreadyKnown(err) {
		d.metrics.broadcasts.WithLabelValues("refused").Inc()
		d.log.Warn("payout broadcast refused by the chain node", "batch", b.Id, "txid", b.Txid, "err", err)
		return
	}
	d.metrics.broadcasts.WithLabelValues("ok").Inc()
	d.log.Info("payout broadcast", "batch", b.Id, "txid", b.Txid)
}

// maybeBump raises the fee of a signed batch that is still unconfirmed bump_after_blocks after
// its signature. The new rate is the queue's current one, but at least 1.25× the old and 1
// sat/vB more, within max_fee_rate. With bump = "rbf" the batch is replaced by a higher-fee
// version of the same transaction (BIP 125): the same inputs and withdrawals, the change
// lowered (or, below dust, left to the fee). With bump = "cpfp", and always for a channel
// funding (the channel is bound to its txid), a child spends its change so that parent and
// child together pay the new rate (lift).
func (d *Driver) maybeBump(ctx context.Context, b *bankdv1.PayoutBatch) {
	q, ok := d.cfg.Queue(b.Queue)
	if b.ChannelOpenId != "" {
		q, ok = d.cfg.Queue("")
		q.Bump = node.BumpCPFP
	}
	if !ok || q.BumpAfterBlocks == 0 || b.ReplacedBy != "" || b.LiftedBy != "" {
		return
	}
	tip, ok, err := d.state.ChainTip()
	if err != nil || !ok || tip.Height < b.SignedAtHeight+uint32(q.BumpAfterBlocks) {
		return
	}
	rate := max(d.rate(q), b.FeeRateSatKvb*5/4, b.FeeRateSatKvb+1000)
	rate = min(rate, q.MaxFeeRate*1000)
	if rate <= b.FeeRateSatKvb {
		d.log.Warn("payout unconfirmed at the queue's max_fee_rate; not bumped", "batch", b.Id, "txid", b.Txid, "fee_rate_sat_kvb", b.FeeRateSatKvb)
		return
	}
	if q.Bump == node.BumpCPFP {
		if b.Lifts != "" {
			return // a package is lifted once: a child is not lifted in turn
		}
		d.lift(ctx, b, rate)
		return
	}
	var change *bankdv1.BatchOutput
	for _, o := range b.Outputs {
		if o.Change {
			if change != nil {
				return // a split: its outputs are its point; it is not bumped
			}
			change = o
		}
	}
	if change == nil {
		d.log.Warn("payout unconfirmed and without change to pay a bump from; not bumped", "batch", b.Id, "txid", b.Txid)
		return
	}
	fee := max((b.Vsize*rate+999)/1000, b.FeeSat+b.Vsize)
	newChange := change.ValueSat - (fee - b.FeeSat)
	if newChange < fsm.DustThreshold(change.Script) {
		newChange = 0
	}
	plan := &bankdv1.PayoutPlan{Queue: b.Queue, WalletId: b.WalletId, ChangeSat: newChange, FeeRateSatKvb: rate, Replaces: b.Id}
	var outputs []*bankdv1.BatchOutput
	for _, o := range b.Outputs {
		o := proto.Clone(o).(*bankdv1.BatchOutput)
		if o.Change {
			if newChange == 0 {
				continue
			}
			o.ValueSat = newChange
		} else {
			plan.PayoutIds = append(plan.PayoutIds, o.PayoutId)
		}
		outputs = append(outputs, o)
	}
	for _, in := range b.Inputs {
		plan.Inputs = append(plan.Inputs, in.Outpoint)
	}
	w, err := d.state.Wallet(b.WalletId)
	if err != nil {
		d.log.Warn("fee bump: hot wallet", "batch", b.Id, "err", err)
		return
	}
	if plan.Psbt, err = fsm.BuildPayoutPSBT(w.Descriptor_, d.network, b.Inputs, outputs); err != nil {
		d.log.Warn("fee bump: build psbt", "batch", b.Id, "err", err)
		return
	}
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_BUMP, plan, nil)
	if err != nil {
		d.log.Warn("fee bump refused", "batch", b.Id, "err", err)
		return
	}
	d.metrics.bumps.WithLabelValues(node.BumpRBF).Inc()
	if r, ok := res.(*bankdv1.PayoutPlanResponse); ok {
		d.log.Info("payout fee bumped", "batch", b.Id, "replacement", r.Batch.Id, "txid", r.Batch.Txid,
			"fee_sat", r.Batch.FeeSat, "fee_rate_sat_kvb", r.Batch.FeeRateSatKvb, "unconfirmed_blocks", tip.Height-b.SignedAtHeight)
	}
}

// lift plans a child that spends b's (first) change output, pays the oldest withdrawals queued
// in b's queue that the change can pay, sends the rest to the wallet's next change index, and
// pays what b lacks for the package of both to pay rate (sat/kvB):
// child fee = rate × (parent vsize + child vsize) − parent fee, at least the minimum relay fee
// of the child itself.
func (d *Driver) lift(ctx context.Context, b *bankdv1.PayoutBatch, rate int64) {
	var change *bankdv1.BatchOutput
	for _, o := range b.Outputs {
		if o.Change {
			change = o
			break
		}
	}
	if change == nil {
		d.log.Warn("payout unconfirmed and without change to lift it from; not bumped", "batch", b.Id, "txid", b.Txid)
		return
	}
	w, err := d.state.Wallet(b.WalletId)
	if err != nil || len(w.Branches) != 2 {
		d.log.Warn("cpfp: hot wallet", "batch", b.Id, "err", err)
		return
	}
	next := w.Branches[1].NextIndex
	script, err := changeScript(w.Descriptor_, d.network, next)
	if err != nil {
		d.log.Warn("cpfp: change script", "batch", b.Id, "err", err)
		return
	}
	// The child is the queue's next payout: the oldest queued withdrawals the parent's change
	// can pay along with the lift; without any, it only moves the change.
	var queued []*bankdv1.Payout
	if q, ok := d.cfg.Queue(b.Queue); ok && b.Queue == q.Name {
		if queued, err = d.state.QueuedPayouts(q.Name, q.MaxBatch); err != nil {
			d.log.Warn("cpfp: queued withdrawals", "batch", b.Id, "err", err)
			return
		}
	}
	scripts := [][]byte{script}
	var outputs []*bankdv1.BatchOutput
	var payoutIDs []string
	var paid int64
	for _, p := range queued {
		withP := append(slices.Clone(scripts[:len(scripts)-1]), p.Script, script)
		_, v := LiftFee(b.Vsize, b.FeeSat, fsm.PayoutTxVSize(1, withP), rate, change.ValueSat-paid-p.AmountSat)
		if v < fsm.DustThreshold(script) {
			break
		}
		scripts, paid = withP, paid+p.AmountSat
		payoutIDs = append(payoutIDs, p.Id)
		outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: p.AmountSat, Script: p.Script})
	}
	fee, value := LiftFee(b.Vsize, b.FeeSat, fsm.PayoutTxVSize(1, scripts), rate, change.ValueSat-paid)
	if value < fsm.DustThreshold(script) {
		d.log.Warn("payout unconfirmed and its change is too small to lift it; not bumped", "batch", b.Id, "txid", b.Txid, "change_sat", change.ValueSat, "child_fee_sat", fee)
		return
	}
	op := &bankdv1.Outpoint{Txid: b.Txid, Vout: change.Vout}
	input := &bankdv1.BatchInput{Outpoint: op, ValueSat: change.ValueSat, Script: change.Script, Branch: 1, Index: change.ChangeIndex}
	plan := &bankdv1.PayoutPlan{Queue: fsm.ConsolidationQueue, WalletId: b.WalletId, Inputs: []*bankdv1.Outpoint{op}, ChangeSat: value, FeeRateSatKvb: rate, Lifts: b.Id, PayoutIds: payoutIDs}
	if len(payoutIDs) > 0 {
		plan.Queue = b.Queue
	}
	outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: value, Script: script, Change: true, ChangeIndex: next})
	if plan.Psbt, err = fsm.BuildPayoutPSBT(w.Descriptor_, d.network, []*bankdv1.BatchInput{input}, outputs); err != nil {
		d.log.Warn("cpfp: build psbt", "batch", b.Id, "err", err)
		return
	}
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, plan, nil)
	if err != nil {
		d.log.Warn("cpfp child refused", "batch", b.Id, "err", err)
		return
	}
	d.metrics.bumps.WithLabelValues(node.BumpCPFP).Inc()
	if r, ok := res.(*bankdv1.PayoutPlanResponse); ok {
		d.log.Info("payout lifted by a child (CPFP)", "batch", b.Id, "child", r.Batch.Id, "txid", r.Batch.Txid, "child_fee_sat", r.Batch.FeeSat,
			"package_fee_rate_sat_kvb", (b.FeeSat+r.Batch.FeeSat)*1000/(b.Vsize+r.Batch.Vsize))
	}
}

// LiftFee is the fee of a child of childVSize spending a parent's change of changeSat so that
// parent and child together pay rate (sat/kvB), and the child's output: the package's fee at
// rate less what the parent pays, but never below the minimum relay fee of the child alone.
func LiftFee(parentVSize, parentFee, childVSize, rate, changeSat int64) (fee, value int64) {
	fee = ((parentVSize+childVSize)*rate+999)/1000 - parentFee
	fee = max(fee, (childVSize*fsm.MinPayoutFeeRateSatKvB+999)/1000)
	return fee, changeSat - fee
}

// alreadyKnown reports a node's answer that it already has the transaction (mempool or chain).
func alreadyKnown(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"already have transaction", "already in block chain", "txn-already-known", "txn-already-in-mempool", "transaction already exists"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
