package payout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/lnpool/lnd"
	"github.com/bankd/bankd/payout/coinselect"
)

// Channel funding through PSBTs (fsm/channel_open.go has the states). The driver takes each
// active open one step per tick, and proposes each step's outcome before it takes the next:
//
//	REQUESTED   connect to the peer, start lnd's PSBT flow      -> NEGOTIATED (funding output)
//	NEGOTIATED  plan the funding transaction from the hot wallet -> PLANNED
//	PLANNED     psbt_verify with the unsigned transaction        -> VERIFIED
//	VERIFIED    once the signer signed: record FINALIZING, then psbt_finalize
//	FINALIZING  ask lnd whether it has the channel               -> PENDING
//
// lnd refusing a step before FINALIZING fails the open (its coins are released); so does an
// open still short of FINALIZING after ChannelOpenTimeout, since lnd's peer forgets a flow
// after ten minutes. From FINALIZING on only an operator gives an open up.

// ChannelOpenTimeout is how long an open may take to reach FINALIZING (lnd's peers forget a
// PSBT flow after 10 minutes).
const ChannelOpenTimeout = 10 * time.Minute

// maxActiveChannelOpens bounds the opens one tick looks at.
const maxActiveChannelOpens = 100

// Funders gives the driver the PSBT funding side of a pool node (*lnpool.Pool).
type Funders interface {
	Funder(ctx context.Context, nodeID string) (lnd.Funder, error)
}

// ChannelState is the read side of channel opens (*fsm.FSM).
type ChannelState interface {
	ActiveChannelOpens(max int) ([]*bankdv1.ChannelOpen, error)
	ChannelOpen(id string) (*bankdv1.ChannelOpen, error)
}

// flow is what this leader holds of one open's lnd flow: the stream it started, and what the
// stream said last.
type flow struct {
	stream lnd.FundingStream
	mu     sync.Mutex
	txid   string
	vout   uint32
	err    error
	// finalized: this leader handed lnd the signed transaction (or tried to).
	finalized bool
}

func (f *flow) result() (string, uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.txid, f.vout, f.err
}

// driveChannels takes every active channel open one step.
func (d *Driver) driveChannels(ctx context.Context) error {
	if d.opts.Funders == nil || d.opts.Channels == nil {
		return nil
	}
	opens, err := d.opts.Channels.ActiveChannelOpens(maxActiveChannelOpens)
	if err != nil {
		return err
	}
	active := map[string]bool{}
	for _, o := range opens {
		active[o.Id] = true
		if err := d.stepChannel(ctx, o); err != nil && ctx.Err() == nil {
			d.log.Warn("channel open step failed", "open", o.Id, "state", o.State, "err", err)
		}
	}
	d.endFlows(ctx, active)
	return nil
}

// endFlows closes the flows of opens that are no longer active; lnd is told to forget those
// an operator cancelled, so that the peer drops its reservation too.
func (d *Driver) endFlows(ctx context.Context, active map[string]bool) {
	d.mu.Lock()
	var ended []string
	for id, f := range d.flows {
		if !active[id] {
			ended = append(ended, id)
			if f.stream != nil {
				f.stream.Close()
			}
			delete(d.flows, id)
		}
	}
	d.mu.Unlock()
	for _, id := range ended {
		o, err := d.opts.Channels.ChannelOpen(id)
		if err != nil || o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED {
			continue
		}
		if funder, err := d.opts.Funders.Funder(ctx, o.NodeId); err == nil {
			if err := funder.CancelFunding(ctx, o.PendingChanId); err != nil {
				d.log.Info("lnd did not cancel the funding flow (it may have ended already)", "open", o.Id, "err", err)
			}
		}
	}
}

func (d *Driver) stepChannel(ctx context.Context, o *bankdv1.ChannelOpen) error {
	if o.State < bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING && time.Since(time.UnixMilli(o.RequestedUnixMs)) > ChannelOpenTimeout {
		return d.failChannel(ctx, o, nil, fmt.Sprintf("not funded within %v (lnd's peer forgets the flow)", ChannelOpenTimeout))
	}
	funder, err := d.opts.Funders.Funder(ctx, o.NodeId)
	if err != nil {
		return fmt.Errorf("lnd %q: %w", o.NodeId, err)
	}
	switch o.State {
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_REQUESTED:
		return d.negotiate(ctx, o, funder)
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED:
		return d.planChannel(ctx, o, funder)
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PLANNED:
		b, err := d.state.PayoutBatch(o.BatchId)
		if err != nil {
			return err
		}
		if err := funder.VerifyFunding(ctx, o.PendingChanId, b.Psbt); err != nil {
			return d.failOnRefusal(ctx, o, funder, "lnd refused the funding transaction (psbt_verify)", err)
		}
		return d.channelStep(ctx, &bankdv1.ChannelOpenStep{Id: o.Id, State: bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED})
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED:
		b, err := d.state.PayoutBatch(o.BatchId)
		if err != nil || b.State != bankdv1.BatchState_BATCH_STATE_SIGNED {
			return err // waiting for the signer
		}
		// Intent first: once lnd may hold the signed transaction, the open is never failed
		// automatically again.
		if err := d.channelStep(ctx, &bankdv1.ChannelOpenStep{Id: o.Id, State: bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING}); err != nil {
			return err
		}
		return d.finalize(ctx, o, funder, b)
	case bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FINALIZING:
		return d.awaitPending(ctx, o, funder)
	}
	return nil
}

// negotiate starts lnd's PSBT flow and records the funding output lnd asks for.
func (d *Driver) negotiate(ctx context.Context, o *bankdv1.ChannelOpen, funder lnd.Funder) error {
	if o.PeerHost != "" {
		if err := funder.ConnectPeer(ctx, o.PeerPubkey, o.PeerHost); err != nil {
			return d.failOnRefusal(ctx, o, funder, "lnd could not connect to the peer", err)
		}
	}
	// The stream lives as long as this leadership: its later update says when the channel is
	// pending.
	stream, req, err := funder.OpenChannelPSBT(d.runCtx, lnd.OpenChannelPSBTRequest{
		PeerPubkey: o.PeerPubkey, AmountSat: o.AmountSat, PendingID: o.PendingChanId, Private: o.Private,
	})
	if err != nil {
		return d.failOnRefusal(ctx, o, funder, "lnd refused to open the channel", err)
	}
	f := &flow{stream: stream}
	d.mu.Lock()
	if old := d.flows[o.Id]; old != nil {
		old.stream.Close()
	}
	d.flows[o.Id] = f
	d.mu.Unlock()
	go func() {
		txid, vout, err := stream.Recv()
		f.mu.Lock()
		f.txid, f.vout, f.err = txid, vout, err
		f.mu.Unlock()
	}()
	return d.channelStep(ctx, &bankdv1.ChannelOpenStep{Id: o.Id, State: bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_NEGOTIATED,
		FundingAddress: req.Address, FundingAmountSat: req.AmountSat})
}

// planChannel plans the funding transaction: the funding output, then change, from the hot
// wallet's spendable coins at the default queue's fee rate.
func (d *Driver) planChannel(ctx context.Context, o *bankdv1.ChannelOpen, funder lnd.Funder) error {
	w, err := d.state.Wallet(d.cfg.Wallet)
	if err != nil {
		return fmt.Errorf("hot wallet %q: %w", d.cfg.Wallet, err)
	}
	if len(w.Branches) != 2 {
		return fmt.Errorf("hot wallet %q has no change branch", w.Id)
	}
	utxos, err := d.state.SpendableUtxos(w.Id)
	if err != nil {
		return err
	}
	inputs, change, rate, err := d.selectInputs(utxos, o.AmountSat, o.FundingScript, fsm.P2WPKHInputVBytes, fsm.P2WPKHChangeVBytes)
	if errors.Is(err, coinselect.ErrInsufficientFunds) {
		return d.failChannel(ctx, o, funder, fmt.Sprintf("the hot wallet cannot pay %d sat (%d spendable UTXOs)", o.AmountSat, len(utxos)))
	}
	if err != nil {
		return err
	}
	plan := &bankdv1.PayoutPlan{Queue: fsm.ChannelQueue, WalletId: w.Id, ChangeSat: change, FeeRateSatKvb: rate, ChannelOpenId: o.Id}
	for _, in := range inputs {
		plan.Inputs = append(plan.Inputs, in.Outpoint)
	}
	outputs := []*bankdv1.BatchOutput{{ValueSat: o.AmountSat, Script: o.FundingScript}}
	if change > 0 {
		next := w.Branches[1].NextIndex
		script, err := changeScript(w.Descriptor_, d.network, next)
		if err != nil {
			return err
		}
		outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: change, Script: script, Change: true, ChangeIndex: next})
	}
	if plan.Psbt, err = fsm.BuildPayoutPSBT(w.Descriptor_, d.network, inputs, outputs); err != nil {
		return fmt.Errorf("build psbt: %w", err)
	}
	res, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, plan, nil)
	if err != nil {
		return fmt.Errorf("plan the funding transaction: %w", err)
	}
	d.metrics.planned.WithLabelValues(fsm.ChannelQueue).Inc()
	if r, ok := res.(*bankdv1.PayoutPlanResponse); ok {
		d.log.Info("channel funding planned", "open", o.Id, "batch", r.Batch.Id, "txid", r.Batch.Txid, "amount_sat", o.AmountSat, "fee_sat", r.Batch.FeeSat)
	}
	return nil
}

// finalize hands lnd the signed funding transaction. The open is FINALIZING: whatever lnd
// answers, it is not failed here (an operator decides if lnd never publishes it).
func (d *Driver) finalize(ctx context.Context, o *bankdv1.ChannelOpen, funder lnd.Funder, b *bankdv1.PayoutBatch) error {
	f := d.flowOf(o.Id)
	f.mu.Lock()
	f.finalized = true
	f.mu.Unlock()
	if err := funder.FinalizeFunding(ctx, o.PendingChanId, b.SignedTx); err != nil {
		d.log.Error("lnd did not take the signed funding transaction; the open stays FINALIZING until lnd publishes it or an operator cancels it",
			"open", o.Id, "batch", b.Id, "txid", b.Txid, "err", err)
		return nil
	}
	d.log.Info("channel funding handed to lnd", "open", o.Id, "txid", b.Txid)
	return nil
}

// awaitPending records PENDING once lnd has the channel: from the flow's stream on this
// leader, else by asking lnd. A leader that took over a FINALIZING open it never finalized
// hands lnd the transaction once (lnd refuses a second finalize; nothing is lost).
func (d *Driver) awaitPending(ctx context.Context, o *bankdv1.ChannelOpen, funder lnd.Funder) error {
	b, err := d.state.PayoutBatch(o.BatchId)
	if err != nil {
		return err
	}
	f := d.flowOf(o.Id)
	if txid, vout, _ := f.result(); txid == b.Txid {
		return d.channelStep(ctx, &bankdv1.ChannelOpenStep{Id: o.Id, State: bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING, Vout: vout})
	}
	vout, found, err := funder.FundedChannel(ctx, b.Txid)
	if err != nil {
		return err
	}
	if found {
		return d.channelStep(ctx, &bankdv1.ChannelOpenStep{Id: o.Id, State: bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING, Vout: vout})
	}
	f.mu.Lock()
	tried := f.finalized
	f.mu.Unlock()
	if !tried && b.State == bankdv1.BatchState_BATCH_STATE_SIGNED {
		return d.finalize(ctx, o, funder, b)
	}
	return nil
}

// flowOf returns this leader's flow of an open, empty if it started none.
func (d *Driver) flowOf(id string) *flow {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.flows[id]
	if f == nil {
		f = &flow{}
		d.flows[id] = f
	}
	return f
}

// failOnRefusal fails the open when lnd refused (a definite answer); anything else (lnd
// unreachable, outcome unknown) is returned to be tried again at the next tick.
func (d *Driver) failOnRefusal(ctx context.Context, o *bankdv1.ChannelOpen, funder lnd.Funder, what string, err error) error {
	if errors.Is(err, lnd.ErrRefused) || errors.Is(err, lnd.ErrInvalidReply) || errors.Is(err, lnd.ErrNotFound) {
		return d.failChannel(ctx, o, funder, fmt.Sprintf("%s: %v", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// failChannel records the open FAILED (its batch abandoned, its coins released), then tells
// lnd to forget the flow.
func (d *Driver) failChannel(ctx context.Context, o *bankdv1.ChannelOpen, funder lnd.Funder, reason string) error {
	if len(reason) > fsm.MaxPayoutReasonLen {
		reason = reason[:fsm.MaxPayoutReasonLen]
	}
	if err := d.channelStep(ctx, &bankdv1.ChannelOpenStep{Id: o.Id, State: bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED, Reason: reason}); err != nil {
		return err
	}
	d.log.Warn("channel open failed", "open", o.Id, "node", o.NodeId, "reason", reason)
	d.mu.Lock()
	if f := d.flows[o.Id]; f != nil && f.stream != nil {
		f.stream.Close()
	}
	delete(d.flows, o.Id)
	d.mu.Unlock()
	if funder != nil {
		if err := funder.CancelFunding(ctx, o.PendingChanId); err != nil {
			d.log.Info("lnd did not cancel the funding flow (it may have ended already)", "open", o.Id, "err", err)
		}
	}
	return nil
}

func (d *Driver) channelStep(ctx context.Context, step *bankdv1.ChannelOpenStep) error {
	_, err := d.proposer.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_CHANNEL_OPEN_STEP, step, nil)
	if err != nil {
		return fmt.Errorf("record channel open %s %s: %w", step.Id, step.State, err)
	}
	return nil
}

// channelBroadcastable reports whether a channel funding batch may be broadcast by the driver:
// only once lnd has the peer's signature of the commitment (the open is PENDING or OPEN).
func (d *Driver) channelBroadcastable(b *bankdv1.PayoutBatch) bool {
	if b.ChannelOpenId == "" {
		return true
	}
	if d.opts.Channels == nil {
		return false
	}
	o, err := d.opts.Channels.ChannelOpen(b.ChannelOpenId)
	return err == nil && (o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING || o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_OPEN)
}
