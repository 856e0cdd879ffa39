package lnd

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/lightningnetwork/lnd/lnrpc"
)

// Funder is what the payout driver needs of an lnd to open a channel funded by a PSBT the
// cluster builds and signs (lnd's docs/psbt.md): negotiate with the peer, check the unsigned
// funding transaction, hand over the signed one, and say whether the channel exists.
type Funder interface {
	// ConnectPeer connects to pubkey at host; already being connected is no error.
	ConnectPeer(ctx context.Context, pubkey, host string) error
	// OpenChannelPSBT starts the PSBT funding flow of a channel of amountSat to pubkey under
	// pendingID and waits (at most the call timeout) for lnd to name the funding output. The
	// stream lives as long as ctx or until Close; its later updates (Recv) say when the channel
	// is pending. The stream ending does not end lnd's flow.
	OpenChannelPSBT(ctx context.Context, req OpenChannelPSBTRequest) (FundingStream, FundingRequest, error)
	// VerifyFunding hands lnd the unsigned funding transaction (psbt_verify).
	VerifyFunding(ctx context.Context, pendingID []byte, psbt []byte) error
	// FinalizeFunding hands lnd the signed funding transaction (psbt_finalize): lnd sends it to
	// the peer's commitment exchange and publishes it once the peer has signed.
	FinalizeFunding(ctx context.Context, pendingID []byte, rawTx []byte) error
	// CancelFunding ends a flow that has not been finalized (shim_cancel).
	CancelFunding(ctx context.Context, pendingID []byte) error
	// FundedChannel reports whether the node has a pending or open channel funded by txid,
	// and its output.
	FundedChannel(ctx context.Context, txid string) (vout uint32, found bool, err error)
}

// OpenChannelPSBTRequest is a channel to open through the PSBT flow.
type OpenChannelPSBTRequest struct {
	PeerPubkey string
	AmountSat  int64
	PendingID  []byte // 32 bytes
	Private    bool
}

// FundingRequest is the funding output lnd asks for.
type FundingRequest struct {
	Address   string
	AmountSat int64
}

// FundingStream delivers the rest of a PSBT flow's updates.
type FundingStream interface {
	// Recv returns the funding transaction's txid and the channel's output once lnd has the
	// peer's signature and published it.
	Recv() (txid string, vout uint32, err error)
	// Close ends the stream (not lnd's flow).
	Close()
}

var _ Funder = (*grpcClient)(nil)

func (c *grpcClient) ConnectPeer(ctx context.Context, pubkey, host string) error {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	_, err := c.ln.ConnectPeer(ctx, &lnrpc.ConnectPeerRequest{Addr: &lnrpc.LightningAddress{Pubkey: pubkey, Host: host}, Timeout: 10})
	if err != nil && !strings.Contains(err.Error(), "already connected") {
		return c.fail("ConnectPeer", err)
	}
	return nil
}

func (c *grpcClient) OpenChannelPSBT(ctx context.Context, req OpenChannelPSBTRequest) (FundingStream, FundingRequest, error) {
	if len(req.PendingID) != 32 {
		return nil, FundingRequest{}, c.notSent("OpenChannel", "pending channel id of %d bytes", len(req.PendingID))
	}
	key, err := hex.DecodeString(req.PeerPubkey)
	if err != nil || len(key) != 33 {
		return nil, FundingRequest{}, c.notSent("OpenChannel", "peer %q is not a 33-byte key in hex", req.PeerPubkey)
	}
	sctx, cancel := context.WithCancel(ctx)
	ok := false
	defer func() {
		if !ok {
			cancel()
		}
	}()
	stream, err := c.ln.OpenChannel(sctx, &lnrpc.OpenChannelRequest{
		NodePubkey: key, LocalFundingAmount: req.AmountSat, Private: req.Private,
		FundingShim: &lnrpc.FundingShim{Shim: &lnrpc.FundingShim_PsbtShim{PsbtShim: &lnrpc.PsbtShim{PendingChanId: req.PendingID}}},
	})
	if err != nil {
		return nil, FundingRequest{}, c.fail("OpenChannel", err)
	}
	first := make(chan struct{})
	var (
		upd     *lnrpc.OpenStatusUpdate
		recvErr error
	)
	go func() {
		upd, recvErr = stream.Recv()
		close(first)
	}()
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case <-first:
	case <-timer.C:
		return nil, FundingRequest{}, c.fail("OpenChannel", context.DeadlineExceeded)
	case <-ctx.Done():
		return nil, FundingRequest{}, c.fail("OpenChannel", ctx.Err())
	}
	if recvErr != nil {
		return nil, FundingRequest{}, c.fail("OpenChannel", recvErr)
	}
	fund := upd.GetPsbtFund()
	switch {
	case fund == nil:
		return nil, FundingRequest{}, replyError(c.addr, "OpenChannel", invalid("update", "the first update of a PSBT flow is %T, not psbt_fund", upd.GetUpdate()))
	case fund.FundingAmount != req.AmountSat:
		return nil, FundingRequest{}, replyError(c.addr, "OpenChannel", invalid("psbt_fund.funding_amount", "%d, asked for %d", fund.FundingAmount, req.AmountSat))
	case fund.FundingAddress == "":
		return nil, FundingRequest{}, replyError(c.addr, "OpenChannel", invalid("psbt_fund.funding_address", "empty"))
	}
	ok = true
	return &fundingStream{c: c, s: stream, cancel: cancel}, FundingRequest{Address: fund.FundingAddress, AmountSat: fund.FundingAmount}, nil
}

type fundingStream struct {
	c      *grpcClient
	s      lnrpc.Lightning_OpenChannelClient
	cancel context.CancelFunc
}

func (f *fundingStream) Close() { f.cancel() }

func (f *fundingStream) Recv() (string, uint32, error) {
	for range 100 {
		upd, err := f.s.Recv()
		if errors.Is(err, io.EOF) {
			return "", 0, fmt.Errorf("lnd %s OpenChannel: %w: the stream ended before the channel was pending", f.c.addr, ErrUnavailable)
		}
		if err != nil {
			return "", 0, f.c.fail("OpenChannel", err)
		}
		if p := upd.GetChanPending(); p != nil {
			h, err := chainhash.NewHash(p.Txid)
			if err != nil {
				return "", 0, replyError(f.c.addr, "OpenChannel", invalid("chan_pending.txid", "%v", err))
			}
			return h.String(), p.OutputIndex, nil
		}
	}
	return "", 0, replyError(f.c.addr, "OpenChannel", invalid("update", "100 updates without chan_pending"))
}

func (c *grpcClient) VerifyFunding(ctx context.Context, pendingID []byte, psbt []byte) error {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	_, err := c.ln.FundingStateStep(ctx, &lnrpc.FundingTransitionMsg{Trigger: &lnrpc.FundingTransitionMsg_PsbtVerify{
		PsbtVerify: &lnrpc.FundingPsbtVerify{PendingChanId: pendingID, FundedPsbt: psbt}}})
	if err != nil {
		return c.fail("FundingStateStep psbt_verify", err)
	}
	return nil
}

func (c *grpcClient) FinalizeFunding(ctx context.Context, pendingID []byte, rawTx []byte) error {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	_, err := c.ln.FundingStateStep(ctx, &lnrpc.FundingTransitionMsg{Trigger: &lnrpc.FundingTransitionMsg_PsbtFinalize{
		PsbtFinalize: &lnrpc.FundingPsbtFinalize{PendingChanId: pendingID, FinalRawTx: rawTx}}})
	if err != nil {
		return c.fail("FundingStateStep psbt_finalize", err)
	}
	return nil
}

func (c *grpcClient) CancelFunding(ctx context.Context, pendingID []byte) error {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	_, err := c.ln.FundingStateStep(ctx, &lnrpc.FundingTransitionMsg{Trigger: &lnrpc.FundingTransitionMsg_ShimCancel{
		ShimCancel: &lnrpc.FundingShimCancel{PendingChanId: pendingID}}})
	if err != nil {
		return c.fail("FundingStateStep shim_cancel", err)
	}
	return nil
}

func (c *grpcClient) FundedChannel(ctx context.Context, txid string) (uint32, bool, error) {
	ctx, cancel := c.callCtx(ctx)
	defer cancel()
	pending, err := c.ln.PendingChannels(ctx, &lnrpc.PendingChannelsRequest{})
	if err != nil {
		return 0, false, c.fail("PendingChannels", err)
	}
	var points []string
	for _, p := range pending.GetPendingOpenChannels() {
		points = append(points, p.GetChannel().GetChannelPoint())
	}
	open, err := c.ln.ListChannels(ctx, &lnrpc.ListChannelsRequest{})
	if err != nil {
		return 0, false, c.fail("ListChannels", err)
	}
	for _, ch := range open.GetChannels() {
		points = append(points, ch.GetChannelPoint())
	}
	for _, p := range points {
		id, vout, ok := strings.Cut(p, ":")
		if !ok || id != txid {
			continue
		}
		n, err := strconv.ParseUint(vout, 10, 32)
		if err != nil {
			return 0, false, replyError(c.addr, "PendingChannels", invalid("channel_point", "%q", p))
		}
		return uint32(n), true, nil
	}
	return 0, false, nil
}
