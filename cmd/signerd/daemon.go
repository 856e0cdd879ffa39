package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/signer"
)

// Bounds of the loop.
const (
	// callTimeout bounds one API call.
	callTimeout = 15 * time.Second
	// listPageSize is how many batches one ListBatches call asks for.
	listPageSize = 100
	// maxListPages bounds one poll's listing (100,000 planned batches).
	maxListPages = 1_000
	// maxBatchesPerPoll bounds the batches one poll checks and signs.
	maxBatchesPerPoll = 100
	// maxPayoutsPerBatch bounds the GetPayout calls one batch may cause.
	maxPayoutsPerBatch = 5_000
)

// payoutAPI is the part of bankd's PayoutService signerd calls; bankdv1connect's client is one.
type payoutAPI interface {
	ListBatches(context.Context, *connect.Request[bankdv1.ListPayoutBatchesRequest]) (*connect.Response[bankdv1.ListPayoutBatchesResponse], error)
	GetPayout(context.Context, *connect.Request[bankdv1.GetPayoutRequest]) (*connect.Response[bankdv1.GetPayoutResponse], error)
	SubmitSignature(context.Context, *connect.Request[bankdv1.SubmitPayoutSignatureRequest]) (*connect.Response[bankdv1.SubmitPayoutSignatureResponse], error)
}

// channelAPI is the part of bankd's LightningService signerd calls: the channel open a channel
// funding batch names.
type channelAPI interface {
	GetChannelOpen(context.Context, *connect.Request[bankdv1.GetChannelOpenRequest]) (*connect.Response[bankdv1.GetChannelOpenResponse], error)
}

// daemon polls bankd for the planned batches of one wallet and signs those the signer accepts.
// It runs in one goroutine, the caller's.
type daemon struct {
	api          payoutAPI
	channels     channelAPI
	signer       *signer.Signer
	walletID     string
	pollInterval time.Duration
	log          *slog.Logger
	now          func() time.Time
	// verdicts remembers, per listed batch, why it was not signed, so that each reason is
	// logged once; entries of batches no longer listed are dropped after each full listing.
	verdicts map[string]verdict
}

// verdict is why a batch was not signed.
type verdict struct {
	reason string
	// until is the UTC day the verdict holds for: a batch refused for the daily limit is looked
	// at again the next day. "" holds for good (until signerd restarts).
	until string
	// retry: look at the batch again on the next poll (the reason is remembered only so that
	// it is not logged again).
	retry bool
}

func newDaemon(api payoutAPI, channels channelAPI, s *signer.Signer, walletID string, pollInterval time.Duration, log *slog.Logger) *daemon {
	return &daemon{
		api: api, channels: channels, signer: s, walletID: walletID, pollInterval: pollInterval,
		log: log.With("wallet", walletID), now: time.Now, verdicts: map[string]verdict{},
	}
}

// run polls until ctx ends, then returns nil. A failed poll (an API error) is logged when its
// error differs from the last one and tried again after the poll interval.
func (d *daemon) run(ctx context.Context) error {
	d.log.Info("signerd started", "fingerprint", fmt.Sprintf("%x", d.signer.Wallet().Fingerprint()),
		"descriptor", d.signer.Wallet().Descriptor(), "poll_interval", d.pollInterval,
		"max_fee_sat", d.signer.Limits().MaxFeeSat, "max_fee_rate_sat_kvb", d.signer.Limits().MaxFeeRateSatKvB,
		"daily_limit_sat", d.signer.Limits().DailyLimitSat)
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			d.log.Info("signerd stopped")
			return nil
		case <-timer.C:
		}
		err := d.poll(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil && err.Error() != lastErr:
			d.log.Warn("bankd API call failed; retrying on the next poll", "err", err)
			lastErr = err.Error()
		case err == nil && lastErr != "":
			d.log.Info("bankd API answers again")
			lastErr = ""
		}
		timer.Reset(d.pollInterval)
	}
}

// poll lists every planned batch of the wallet, then handles up to maxBatchesPerPoll of those
// that need a look (the rest wait for the next poll). Listing first keeps the listing
// independent of the batches this poll signs. It returns the first API error; the batches not
// reached are handled on the next poll.
func (d *daemon) poll(ctx context.Context) error {
	today := d.now().UTC().Format(time.DateOnly)
	listed := map[string]bool{}
	var todo []*bankdv1.PayoutBatch
	token := ""
	for page := 0; ; page++ {
		if page == maxListPages {
			return fmt.Errorf("list batches: more than %d pages", maxListPages)
		}
		resp, err := call(ctx, d.api.ListBatches, &bankdv1.ListPayoutBatchesRequest{
			State: bankdv1.BatchState_BATCH_STATE_PLANNED, PageSize: listPageSize, PageToken: token,
			Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE,
		})
		if err != nil {
			return fmt.Errorf("list batches: %w", err)
		}
		for _, b := range resp.Msg.GetBatches() {
			if b.GetWalletId() != d.walletID || b.GetState() != bankdv1.BatchState_BATCH_STATE_PLANNED || listed[b.GetId()] {
				continue
			}
			listed[b.GetId()] = true
			if d.needsLook(b.GetId(), today) && len(todo) < maxBatchesPerPoll {
				todo = append(todo, b)
			}
		}
		next := resp.Msg.GetNextPageToken()
		if next == "" {
			break
		}
		if next == token {
			return fmt.Errorf("list batches: the page token %q repeats", next)
		}
		token = next
	}
	for id := range d.verdicts {
		if !listed[id] {
			delete(d.verdicts, id)
		}
	}
	for _, b := range todo {
		if ctx.Err() != nil {
			return nil
		}
		if err := d.handle(ctx, b, today); err != nil {
			return err
		}
	}
	return nil
}

// needsLook reports whether a listed batch is to be handled: it has no verdict, or one that
// no longer holds.
func (d *daemon) needsLook(id, today string) bool {
	v, ok := d.verdicts[id]
	return !ok || v.retry || (v.until != "" && v.until != today)
}

// handle checks, signs and submits one planned batch. It returns API errors only: a batch the
// signer refuses is logged (once per reason) and skipped.
func (d *daemon) handle(ctx context.Context, b *bankdv1.PayoutBatch, today string) error {
	id := b.GetId()
	log := d.log.With("batch", id, "txid", b.GetTxid())
	payouts, err := d.payouts(ctx, b)
	if err != nil {
		return err
	}
	open, err := d.channelOpen(ctx, b)
	if err != nil {
		return err
	}
	checked, err := d.signer.Check(b, payouts, open)
	if err != nil {
		v := verdict{reason: err.Error()}
		if errors.Is(err, signer.ErrDailyLimit) {
			v.until = today
		}
		d.record(log, id, v, slog.LevelWarn, "batch refused", "err", err)
		return nil
	}
	signed, err := d.signer.Sign(checked)
	if err != nil {
		v := verdict{reason: err.Error()}
		var refused *signer.CheckError
		switch {
		case errors.Is(err, signer.ErrDailyLimit):
			v.until = today // another batch took the room since Check
		case errors.As(err, &refused), errors.Is(err, signer.ErrSignature):
		default:
			v.retry = true // the ledger could not be written: try again
		}
		d.record(log, id, v, slog.LevelError, "batch not signed", "err", err)
		return nil
	}
	resp, err := call(ctx, d.api.SubmitSignature, &bankdv1.SubmitPayoutSignatureRequest{BatchId: id, Psbt: signed})
	if err != nil {
		switch connect.CodeOf(err) {
		case connect.CodeFailedPrecondition, connect.CodeNotFound:
			d.record(log, id, verdict{reason: err.Error()}, slog.LevelInfo, "batch no longer waits for a signature (signed meanwhile or abandoned)", "err", err)
			return nil
		case connect.CodeInvalidArgument:
			d.record(log, id, verdict{reason: err.Error()}, slog.LevelError, "bankd refused the signature", "err", err)
			return nil
		}
		return fmt.Errorf("submit the signature of batch %s: %w", id, err)
	}
	delete(d.verdicts, id)
	log.Info("batch signed", "outflow_sat", checked.OutflowSat(), "fee_sat", checked.FeeSat(),
		"change_sat", checked.ChangeSat(), "inputs", len(b.GetInputs()), "outputs", len(b.GetOutputs()),
		"replayed", resp.Msg.GetReplayed())
	return nil
}

// payouts fetches the withdrawals the batch's outputs name, each once. A withdrawal bankd does
// not know is left out, for Check to refuse the batch.
func (d *daemon) payouts(ctx context.Context, b *bankdv1.PayoutBatch) ([]*bankdv1.Payout, error) {
	seen := map[string]bool{}
	var out []*bankdv1.Payout
	for _, o := range b.GetOutputs() {
		pid := o.GetPayoutId()
		if pid == "" || seen[pid] {
			continue
		}
		seen[pid] = true
		if len(seen) > maxPayoutsPerBatch {
			return out, nil // Check refuses the batch: some withdrawals are unknown to it
		}
		resp, err := call(ctx, d.api.GetPayout, &bankdv1.GetPayoutRequest{Id: pid, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE})
		if connect.CodeOf(err) == connect.CodeNotFound {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get withdrawal %s of batch %s: %w", pid, b.GetId(), err)
		}
		out = append(out, resp.Msg.GetPayout())
	}
	return out, nil
}

// channelOpen fetches the channel open a channel funding batch names (nil for other batches, or
// when bankd does not know it: Check then refuses the batch).
func (d *daemon) channelOpen(ctx context.Context, b *bankdv1.PayoutBatch) (*bankdv1.ChannelOpen, error) {
	id := b.GetChannelOpenId()
	if id == "" || d.channels == nil {
		return nil, nil
	}
	resp, err := call(ctx, d.channels.GetChannelOpen, &bankdv1.GetChannelOpenRequest{Id: id, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE})
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get channel open %s of batch %s: %w", id, b.GetId(), err)
	}
	return resp.Msg.GetOpen(), nil
}

// record remembers why a batch was not signed and logs it unless it was logged before.
func (d *daemon) record(log *slog.Logger, id string, v verdict, level slog.Level, msg string, args ...any) {
	if old, ok := d.verdicts[id]; !ok || old.reason != v.reason {
		log.Log(context.Background(), level, msg, args...)
	}
	d.verdicts[id] = v
}

// call makes one API call bounded by callTimeout.
func call[Req, Resp any](ctx context.Context, f func(context.Context, *connect.Request[Req]) (*connect.Response[Resp], error), req *Req) (*connect.Response[Resp], error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return f(ctx, connect.NewRequest(req))
}
