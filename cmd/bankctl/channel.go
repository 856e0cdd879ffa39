package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// channelPollInterval is how often lnd open-channel -wait asks for the open's state.
const channelPollInterval = 500 * time.Millisecond

func lndOpenChannel(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	id := fs.String("id", "", "channel open id, the idempotency key (generated when empty)")
	private := fs.Bool("private", false, "do not announce the channel")
	wait := fs.Bool("wait", false, "poll until lnd has published the funding transaction (PENDING) or the open failed, for at most -timeout")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 3, "NODE PEER SATS"); err != nil {
			return err
		}
		sats, err := parseSats("SATS", args[2])
		if err != nil {
			return err
		}
		if err := a.ensureID(id, "channel open id", "id"); err != nil {
			return err
		}
		req := &bankdv1.OpenChannelRequest{Id: *id, NodeId: args[0], Peer: args[1], AmountSat: sats, Private: *private}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.OpenChannelResponse, error) {
			r, err := c.lightning.OpenChannel(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("channel open %s: %w", *id, err)
		}
		open := res.Open
		if *wait {
			if open, err = a.waitChannelOpen(ctx, open); err != nil {
				return err
			}
		}
		if a.json() {
			return a.printJSON(&bankdv1.OpenChannelResponse{Open: open, Replayed: res.Replayed})
		}
		if res.Replayed {
			fmt.Fprintf(a.stdout, "channel open %s was already requested; this is it now\n", *id)
		}
		a.printChannelOpen(open, nil)
		if open.GetState() == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED {
			return fmt.Errorf("channel open %s failed: %s", open.GetId(), open.GetFailReason())
		}
		return nil
	}
}

// waitChannelOpen polls until open is PENDING or later, or FAILED, for at most -timeout.
func (a *app) waitChannelOpen(ctx context.Context, open *bankdv1.ChannelOpen) (*bankdv1.ChannelOpen, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.timeout)
	defer cancel()
	ticker := time.NewTicker(channelPollInterval)
	defer ticker.Stop()
	for {
		if open.GetState() >= bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING {
			return open, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("channel open %s is still %s; wait longer with a larger -timeout", open.GetId(), channelOpenStateName(open.GetState()))
		case <-ticker.C:
		}
		res, err := a.getChannelOpen(ctx, open.GetId())
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return nil, err
		}
		open = res.Open
	}
}

func (a *app) getChannelOpen(ctx context.Context, id string) (*bankdv1.GetChannelOpenResponse, error) {
	return call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetChannelOpenResponse, error) {
		r, err := c.lightning.GetChannelOpen(ctx, connect.NewRequest(&bankdv1.GetChannelOpenRequest{Id: id, Consistency: a.consistency()}))
		if err != nil {
			return nil, err
		}
		return r.Msg, nil
	})
}

func lndChannelOpen(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := a.getChannelOpen(ctx, args[0])
		if err != nil {
			return fmt.Errorf("channel open %s: %w", args[0], err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printChannelOpen(res.Open, res.Batch)
		return nil
	}
}

func lndCancelOpen(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	reason := fs.String("reason", "", "why the open is given up (required)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		if *reason == "" {
			return usageErrorf("-reason is required: say why the open is given up")
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.CancelChannelOpenResponse, error) {
			r, err := c.lightning.CancelChannelOpen(ctx, connect.NewRequest(&bankdv1.CancelChannelOpenRequest{Id: args[0], Reason: *reason}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("channel open %s: %w", args[0], err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printChannelOpen(res.Open, nil)
		return nil
	}
}

func channelOpenStateName(s bankdv1.ChannelOpenState) string {
	return enumName(s.String(), "CHANNEL_OPEN_STATE_")
}

func (a *app) printChannelOpen(o *bankdv1.ChannelOpen, b *bankdv1.PayoutBatch) {
	state := channelOpenStateName(o.GetState())
	if o.GetFailReason() != "" {
		state += ": " + o.GetFailReason()
		if o.GetFailedBy() != "" {
			state += " (by " + o.GetFailedBy() + ")"
		}
	}
	peer := o.GetPeerPubkey()
	if o.GetPeerHost() != "" {
		peer += "@" + o.GetPeerHost()
	}
	fields := [][2]string{
		{"id", o.GetId()},
		{"state", state},
		{"node", o.GetNodeId()},
		{"peer", peer},
		{"amount", fmt.Sprintf("%d sat", o.GetAmountSat())},
		{"private", fmt.Sprint(o.GetPrivate())},
		{"pending chan id", hex.EncodeToString(o.GetPendingChanId())},
		{"requested", fmt.Sprintf("%s by %s (index %d)", formatMs(o.GetRequestedUnixMs()), orDash(o.GetRequestedBy()), o.GetIndex())},
		{"funding address", orDash(o.GetFundingAddress())},
		{"batch", orDash(o.GetBatchId())},
	}
	if o.GetTxid() != "" {
		fields = append(fields, [2]string{"channel point", fmt.Sprintf("%s:%d", o.GetTxid(), o.GetVout())})
	}
	if b != nil {
		fields = append(fields,
			[2]string{"batch state", batchStateName(b.GetState())},
			[2]string{"batch fee", fmt.Sprintf("%d sat at %s sat/vB", b.GetFeeSat(), formatFeeRate(b.GetFeeRateSatKvb()))},
		)
	}
	fields = append(fields, [2]string{"resolved", formatMs(o.GetResolvedUnixMs())})
	a.printFields(fields)
}
