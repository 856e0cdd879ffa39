package payouts

import (
	"context"
	"math/rand/v2"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/workload/pace"
)

// signerPoll is the pause between two looks for planned batches.
const signerPoll = 200 * time.Millisecond

// runSigner does what signerd does, in this process: it lists the hot wallet's PLANNED batches
// through a random node with the signer token, fetches the withdrawals each pays, lets the
// signer check and sign it, and submits the signature. Every failure is logged and retried on
// a later poll; the signer's own checks decide what it signs.
func (w *Workload) runSigner(ctx context.Context) {
	refused := map[string]string{} // batch -> why, logged once
	for ctx.Err() == nil {
		cl := w.cluster.SignerClient(rand.IntN(w.cluster.Size()))
		if err := w.signPlanned(ctx, cl, refused); err != nil && ctx.Err() == nil {
			w.log.Debug("signer poll failed", "err", err)
		}
		pace.Sleep(ctx, signerPoll)
	}
}

func (w *Workload) signPlanned(ctx context.Context, cl *apiclient.Clients, refused map[string]string) error {
	lctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	resp, err := cl.Payout.ListBatches(lctx, connect.NewRequest(&bankdv1.ListPayoutBatchesRequest{
		State: bankdv1.BatchState_BATCH_STATE_PLANNED, PageSize: 100, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
	cancel()
	if err != nil {
		return err
	}
	for _, b := range resp.Msg.GetBatches() {
		if b.GetWalletId() != WalletID || b.GetState() != bankdv1.BatchState_BATCH_STATE_PLANNED {
			continue
		}
		var payouts []*bankdv1.Payout
		for _, o := range b.GetOutputs() {
			if o.GetPayoutId() == "" {
				continue
			}
			gctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
			p, err := cl.Payout.GetPayout(gctx, connect.NewRequest(&bankdv1.GetPayoutRequest{
				Id: o.GetPayoutId(), Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
			cancel()
			if err != nil {
				return err
			}
			payouts = append(payouts, p.Msg.GetPayout())
		}
		checked, err := w.signer.Check(b, payouts, nil)
		if err == nil {
			var signed []byte
			if signed, err = w.signer.Sign(checked); err == nil {
				sctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
				_, err = cl.Payout.SubmitSignature(sctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: b.GetId(), Psbt: signed}))
				cancel()
				if err == nil {
					w.log.Info("batch signed", "batch", b.GetId(), "txid", b.GetTxid(), "outputs", len(b.GetOutputs()))
					continue
				}
				if connect.CodeOf(err) == connect.CodeUnavailable || connect.CodeOf(err) == connect.CodeDeadlineExceeded {
					return err // try again on the next poll
				}
			}
		}
		if refused[b.GetId()] != err.Error() {
			refused[b.GetId()] = err.Error()
			w.log.Warn("batch not signed", "batch", b.GetId(), "err", err)
		}
	}
	return nil
}
