package node

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"

	"github.com/bankd/bankd/fsm"
)

// PayoutsConfig is the `payouts` block: the hot wallet withdrawals are paid from and the named
// queues they wait in. Without the block, withdrawals are refused.
type PayoutsConfig struct {
	// Wallet is the id of the HOT wallet payouts are paid from.
	Wallet string
	// DefaultQueue takes withdrawals that name no queue.
	DefaultQueue string
	// Queues in file order.
	Queues []PayoutQueueConfig
	// Consolidate is the consolidate block: when many small UTXOs are merged. Zero MinUtxos:
	// never.
	Consolidate ConsolidateConfig
	// Sweep is the sweep block: when DEPOSIT wallets' credited coins move to the hot wallet.
	// Zero Interval: never.
	Sweep SweepConfig
	// Split is the split block: how many coins the hot wallet keeps. Zero TargetUtxos: never.
	Split SplitConfig
}

// SplitConfig is the `split` block of the payouts block: while the hot wallet has fewer than
// TargetUtxos spendable UTXOs, its largest coin is split into change outputs of at least MinSat
// each (one split at a time), so that payouts need not wait on one unconfirmed change.
type SplitConfig struct {
	TargetUtxos int
	MinSat      int64
}

// SweepConfig is the `sweep` block of the payouts block: every Interval, each DEPOSIT wallet
// whose credited, unswept coins add up to at least MinSat has up to MaxInputs of them moved to
// the hot wallet (one sweep per wallet at a time), signed by that wallet's own signer.
type SweepConfig struct {
	Interval  time.Duration
	MinSat    int64
	MaxInputs int
}

// ConsolidateConfig is the `consolidate` block of the payouts block: while the default queue's
// fee rate is at most BelowFeeRate (sat/vB) and the hot wallet has at least MinUtxos spendable
// UTXOs, the driver merges the smallest MaxInputs of them into one change output (one
// consolidation at a time).
type ConsolidateConfig struct {
	BelowFeeRate int64
	MinUtxos     int
	MaxInputs    int
}

// Payout triggers: when a queue's next transaction is planned.
const (
	// TriggerInterval plans every Interval whatever is due.
	TriggerInterval = "interval"
	// TriggerCount plans as soon as Count withdrawals are due, or Interval after the oldest.
	TriggerCount = "count"
	// TriggerManual plans only when an operator asks (bankctl payout flush).
	TriggerManual = "manual"
)

// Fee policies: what a customer is charged for the network fee.
const (
	// FeeFlat charges FeeSat per withdrawal.
	FeeFlat = "flat"
	// FeeEstimate charges the queue's fee estimate for one output and one input's share,
	// capped at FeeSat.
	FeeEstimate = "estimate"
)

// PayoutQueueConfig is one `queue "<name>"` block of the payouts block.
type PayoutQueueConfig struct {
	Name    string
	Trigger string
	// Interval: how often an interval queue plans; for a count queue, the longest the oldest
	// due withdrawal waits.
	Interval time.Duration
	Count    int
	// ConfTarget is the confirmation target of the fee estimate, in blocks.
	ConfTarget int
	// MinFeeRate and MaxFeeRate bound the fee rate, in sat/vB: the estimate is clamped into
	// [MinFeeRate, MaxFeeRate].
	MinFeeRate int64
	MaxFeeRate int64
	// Fee is FeeFlat or FeeEstimate; FeeSat the flat fee or the cap.
	Fee    string
	FeeSat int64
	// ApprovalThresholdSat: withdrawals above it need approval by a second identity (0: none).
	ApprovalThresholdSat int64
	// MaxBatch bounds the withdrawals of one transaction.
	MaxBatch int
	// BumpAfterBlocks: a signed transaction still unconfirmed this many blocks after its
	// signature gets its fee raised; 0 never bumps.
	BumpAfterBlocks int
	// Bump is how: BumpRBF replaces it with a higher-fee version (BIP 125), BumpCPFP spends
	// its change in a child that lifts the package's fee rate.
	Bump string
}

// How a stuck payout's fee is raised.
const (
	BumpRBF  = "rbf"
	BumpCPFP = "cpfp"
)

// Enabled reports whether the cluster takes withdrawals.
func (c PayoutsConfig) Enabled() bool { return len(c.Queues) > 0 }

// Queue returns the queue of that name ("" is the default queue).
func (c PayoutsConfig) Queue(name string) (PayoutQueueConfig, bool) {
	if name == "" {
		name = c.DefaultQueue
	}
	for _, q := range c.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return PayoutQueueConfig{}, false
}

// Defaults of a payout queue.
const (
	DefaultPayoutInterval   = time.Minute
	DefaultPayoutCount      = 100
	DefaultPayoutConfTarget = 6
	DefaultPayoutMinFeeRate = 1
	DefaultPayoutMaxFeeRate = 500
	DefaultPayoutMaxBatch   = 500
	DefaultPayoutBumpAfter  = 3
)

var (
	payoutsSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "wallet", Required: true}, {Name: "default_queue"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "queue", LabelNames: []string{"name"}}, {Type: "consolidate"}, {Type: "sweep"}, {Type: "split"}},
	}
	splitSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "target_utxos", Required: true}, {Name: "min_sat", Required: true},
	}}
	sweepSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "interval"}, {Name: "min_sat"}, {Name: "max_inputs"},
	}}
	consolidateSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "below_fee_rate", Required: true}, {Name: "min_utxos", Required: true}, {Name: "max_inputs"},
	}}
	payoutQueueSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "trigger"}, {Name: "interval"}, {Name: "count"}, {Name: "conf_target"},
		{Name: "min_fee_rate"}, {Name: "max_fee_rate"}, {Name: "fee"}, {Name: "fee_sat"},
		{Name: "approval_threshold_sat"}, {Name: "max_batch"}, {Name: "bump_after_blocks"}, {Name: "bump"},
	}}
)

func (p *configParser) parsePayouts(block *hcl.Block, pc *PayoutsConfig) {
	content, diags := block.Body.Content(payoutsSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	if attr, ok := content.Attributes["wallet"]; ok {
		if v, ok := p.str(attr); ok {
			if len(fsm.WalletAccount(v)) > fsm.MaxIDLen || fsm.CheckPayoutQueue("wallet", v) != nil {
				p.errorf(attr.Expr.Range(), "invalid wallet", "wallet must be a wallet id of 1-%d characters from [A-Za-z0-9._:-], got %q",
					fsm.MaxIDLen-len(fsm.WalletAccountPrefix), v)
			}
			pc.Wallet = v
		}
	}
	for _, qb := range content.Blocks {
		switch qb.Type {
		case "consolidate":
			p.parseConsolidate(qb, pc)
			continue
		case "sweep":
			p.parseSweep(qb, pc)
			continue
		case "split":
			p.parseSplit(qb, pc)
			continue
		}
		p.parsePayoutQueue(qb, pc)
	}
	if len(pc.Queues) == 0 {
		p.errorf(block.DefRange, "no payout queues", "the payouts block needs at least one queue block")
		return
	}
	if attr, ok := content.Attributes["default_queue"]; ok {
		if v, ok := p.str(attr); ok {
			if _, found := pc.Queue(v); !found {
				p.errorf(attr.Expr.Range(), "unknown default_queue", "default_queue %q names no queue block", v)
			}
			pc.DefaultQueue = v
		}
	} else {
		pc.DefaultQueue = pc.Queues[0].Name
	}
}

func (p *configParser) parsePayoutQueue(block *hcl.Block, pc *PayoutsConfig) {
	name := block.Labels[0]
	if err := fsm.CheckPayoutQueue("queue", name); err != nil {
		p.errorf(block.LabelRanges[0], "invalid queue name", "%s", err.Message)
		return
	}
	if name == fsm.ConsolidationQueue || name == fsm.SweepQueue || name == fsm.SplitQueue || name == fsm.ChannelQueue || name == fsm.VaultQueue {
		p.errorf(block.LabelRanges[0], "reserved queue name", "queue %q is the name of the driver's consolidations, sweeps, splits, channel fundings or vault moves; pick another", name)
		return
	}
	if _, dup := pc.Queue(name); dup {
		p.errorf(block.DefRange, "duplicate queue block", "queue %q is defined twice", name)
		return
	}
	q := PayoutQueueConfig{
		Name: name, Trigger: TriggerInterval, Interval: DefaultPayoutInterval, Count: DefaultPayoutCount,
		ConfTarget: DefaultPayoutConfTarget, MinFeeRate: DefaultPayoutMinFeeRate, MaxFeeRate: DefaultPayoutMaxFeeRate,
		Fee: FeeFlat, MaxBatch: DefaultPayoutMaxBatch, BumpAfterBlocks: DefaultPayoutBumpAfter, Bump: BumpRBF,
	}
	content, diags := block.Body.Content(payoutQueueSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	attrs := content.Attributes
	choices := []struct {
		name    string
		allowed []string
		set     *string
	}{
		{"trigger", []string{TriggerInterval, TriggerCount, TriggerManual}, &q.Trigger},
		{"fee", []string{FeeFlat, FeeEstimate}, &q.Fee},
		{"bump", []string{BumpRBF, BumpCPFP}, &q.Bump},
	}
	for _, c := range choices {
		attr, ok := attrs[c.name]
		if !ok {
			continue
		}
		v, ok := p.str(attr)
		if !ok {
			continue
		}
		valid := false
		for _, a := range c.allowed {
			valid = valid || v == a
		}
		if !valid {
			p.errorf(attr.Expr.Range(), "invalid "+c.name, "%s must be one of %v, got %q", c.name, c.allowed, v)
			continue
		}
		*c.set = v
	}
	p.wholeNumbers(attrs, []wholeNumber{
		{"count", 1, fsm.MaxBatchPayouts, func(v int64) { q.Count = int(v) }},
		{"conf_target", 1, 1008, func(v int64) { q.ConfTarget = int(v) }},
		{"min_fee_rate", 1, fsm.MaxPayoutFeeRateSatKvB / 1000, func(v int64) { q.MinFeeRate = v }},
		{"max_fee_rate", 1, fsm.MaxPayoutFeeRateSatKvB / 1000, func(v int64) { q.MaxFeeRate = v }},
		{"fee_sat", 0, 100_000_000, func(v int64) { q.FeeSat = v }},
		{"approval_threshold_sat", 0, fsm.MaxPayoutAmountSat, func(v int64) { q.ApprovalThresholdSat = v }},
		{"max_batch", 1, fsm.MaxBatchPayouts, func(v int64) { q.MaxBatch = int(v) }},
		{"bump_after_blocks", 0, 1008, func(v int64) { q.BumpAfterBlocks = int(v) }},
	})
	if attr, ok := attrs["interval"]; ok {
		if v, ok := p.duration(attr); ok {
			if v < 100*time.Millisecond || v > 24*time.Hour {
				p.errorf(attr.Expr.Range(), "invalid interval", "interval must be between 100ms and 24h, got %s", v)
			} else {
				q.Interval = v
			}
		}
	}
	if q.MinFeeRate > q.MaxFeeRate {
		p.errorf(rangeOf(attrs, "min_fee_rate", block.DefRange), "invalid min_fee_rate",
			"min_fee_rate (%d sat/vB) is above max_fee_rate (%d sat/vB)", q.MinFeeRate, q.MaxFeeRate)
	}
	if q.Fee == FeeEstimate && q.FeeSat == 0 {
		p.errorf(rangeOf(attrs, "fee", block.DefRange), "missing fee_sat", "fee = %q needs fee_sat, the most a withdrawal is charged", FeeEstimate)
	}
	pc.Queues = append(pc.Queues, q)
}

func (p *configParser) parseConsolidate(block *hcl.Block, pc *PayoutsConfig) {
	content, diags := block.Body.Content(consolidateSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	c := ConsolidateConfig{MaxInputs: 200}
	p.wholeNumbers(content.Attributes, []wholeNumber{
		{"below_fee_rate", 1, fsm.MaxPayoutFeeRateSatKvB / 1000, func(v int64) { c.BelowFeeRate = v }},
		{"min_utxos", 2, 1_000_000, func(v int64) { c.MinUtxos = int(v) }},
		{"max_inputs", 2, fsm.MaxBatchInputs, func(v int64) { c.MaxInputs = int(v) }},
	})
	pc.Consolidate = c
}

func (p *configParser) parseSweep(block *hcl.Block, pc *PayoutsConfig) {
	content, diags := block.Body.Content(sweepSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	sc := SweepConfig{Interval: 10 * time.Minute, MinSat: 100_000, MaxInputs: 500}
	if attr, ok := content.Attributes["interval"]; ok {
		if v, ok := p.duration(attr); ok {
			if v < 100*time.Millisecond || v > 24*time.Hour {
				p.errorf(attr.Expr.Range(), "invalid interval", "interval must be between 100ms and 24h, got %s", v)
			} else {
				sc.Interval = v
			}
		}
	}
	p.wholeNumbers(content.Attributes, []wholeNumber{
		{"min_sat", 1, fsm.MaxPayoutAmountSat, func(v int64) { sc.MinSat = v }},
		{"max_inputs", 1, fsm.MaxBatchInputs, func(v int64) { sc.MaxInputs = int(v) }},
	})
	pc.Sweep = sc
}

func (p *configParser) parseSplit(block *hcl.Block, pc *PayoutsConfig) {
	content, diags := block.Body.Content(splitSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	var sc SplitConfig
	p.wholeNumbers(content.Attributes, []wholeNumber{
		{"target_utxos", 2, fsm.MaxSplitOutputs, func(v int64) { sc.TargetUtxos = int(v) }},
		{"min_sat", 1_000, fsm.MaxPayoutAmountSat, func(v int64) { sc.MinSat = v }},
	})
	pc.Split = sc
}

// wholeNumber is an optional whole-number attribute of a block, its bounds and where it goes.
type wholeNumber struct {
	name     string
	min, max int64
	set      func(int64)
}

// wholeNumbers reads each attribute of ns present in attrs, refusing a value that is not a
// whole number within its bounds.
func (p *configParser) wholeNumbers(attrs hcl.Attributes, ns []wholeNumber) {
	for _, n := range ns {
		attr, ok := attrs[n.name]
		if !ok {
			continue
		}
		var v int64
		if diags := gohcl.DecodeExpression(attr.Expr, nil, &v); diags.HasErrors() {
			p.errorf(attr.Expr.Range(), "invalid "+n.name, "%s must be a whole number: %s", n.name, firstDetail(diags))
			continue
		}
		if v < n.min || v > n.max {
			p.errorf(attr.Expr.Range(), "invalid "+n.name, "%s must be between %d and %d, got %d", n.name, n.min, n.max, v)
			continue
		}
		n.set(v)
	}
}
