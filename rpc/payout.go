package rpc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// Payouts is what the API needs of the leader's payout driver (*payout.Driver): the policy
// stamped on a withdrawal request, and manual flushes of a queue.
type Payouts interface {
	Policy(queue string, script []byte) (string, *bankdv1.PayoutQueuePolicy, error)
	Flush(queue string) (string, error)
}

// payoutService implements bankd.v1.PayoutService.
type payoutService struct{ s *Server }

var _ bankdv1connect.PayoutServiceHandler = (*payoutService)(nil)

func (p *payoutService) payouts() (Payouts, error) {
	if p.s.payouts == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the cluster takes no withdrawals: cluster.hcl has no payouts block"))
	}
	return p.s.payouts, nil
}

// RequestPayout holds amount + fee on the account and queues the withdrawal (or waits for
// approval). The address is checked here for the cluster.hcl network and again in apply.
func (p *payoutService) RequestPayout(ctx context.Context, req *connect.Request[bankdv1.RequestPayoutRequest]) (*connect.Response[bankdv1.RequestPayoutResponse], error) {
	m := req.Msg
	if m.GetQueue() != "" {
		if fe := fsm.CheckPayoutQueue("queue", m.GetQueue()); fe != nil {
			return nil, fsmFieldError(fe, "", "")
		}
	}
	probe := &bankdv1.RequestPayoutRequest{Id: m.GetId(), AccountId: m.GetAccountId(), Address: m.GetAddress(), AmountSat: m.GetAmountSat(), Queue: "q"}
	if fe := fsm.ValidateRequestPayout(probe); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	addr, fe := fsm.ParsePayoutAddress("address", m.GetAddress(), p.s.network)
	if fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	if dust := fsm.DustThreshold(addr.Script); m.GetAmountSat() < dust {
		return nil, invalidArgument("amount_sat", "%d is below the dust threshold of a %s output (%d)", m.GetAmountSat(), addr.Type, dust)
	}
	drv, err := p.payouts()
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, p.s, req, func(ctx context.Context, m *bankdv1.RequestPayoutRequest) (*bankdv1.RequestPayoutResponse, error) {
		queue, policy, err := drv.Policy(m.Queue, addr.Script)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("queue: %w", err))
		}
		body := &bankdv1.PayoutRequestCommand{
			Request: &bankdv1.RequestPayoutRequest{Id: m.Id, AccountId: m.AccountId, Address: m.Address, AmountSat: m.AmountSat, Queue: queue},
			Policy:  policy,
		}
		return apply[*bankdv1.RequestPayoutResponse](ctx, p.s, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_REQUEST, body, nil)
	})
}

func (p *payoutService) GetPayout(ctx context.Context, req *connect.Request[bankdv1.GetPayoutRequest]) (*connect.Response[bankdv1.GetPayoutResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	id := req.Msg.GetId()
	return read(ctx, p.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetPayoutResponse, error) {
		po, err := st.Payout(id)
		if err != nil {
			return nil, err
		}
		out := &bankdv1.GetPayoutResponse{Payout: po, Meta: meta}
		if po.BatchId != "" {
			if out.Batch, err = st.PayoutBatch(po.BatchId); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

func (p *payoutService) ListPayouts(ctx context.Context, req *connect.Request[bankdv1.ListPayoutsRequest]) (*connect.Response[bankdv1.ListPayoutsResponse], error) {
	m := req.Msg
	if m.GetAccountId() != "" {
		if err := checkID("account_id", m.GetAccountId()); err != nil {
			return nil, err
		}
	}
	if _, ok := bankdv1.PayoutState_name[int32(m.GetState())]; !ok {
		return nil, invalidArgument("state", "unknown value %d", int32(m.GetState()))
	}
	size, err := pageSize("page_size", m.GetPageSize())
	if err != nil {
		return nil, err
	}
	if err := checkConsistency(m.GetConsistency()); err != nil {
		return nil, err
	}
	account, state, token := m.GetAccountId(), m.GetState(), m.GetPageToken()
	return read(ctx, p.s, req, m.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListPayoutsResponse, error) {
		payouts, next, err := st.ListPayouts(account, state, token, size)
		if err != nil {
			return nil, fmt.Errorf("list withdrawals: %w", err)
		}
		return &bankdv1.ListPayoutsResponse{Payouts: payouts, NextPageToken: next, Meta: meta}, nil
	})
}

func (p *payoutService) CancelPayout(ctx context.Context, req *connect.Request[bankdv1.CancelPayoutRequest]) (*connect.Response[bankdv1.CancelPayoutResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	return onLeader(ctx, p.s, req, func(ctx context.Context, m *bankdv1.CancelPayoutRequest) (*bankdv1.CancelPayoutResponse, error) {
		return apply[*bankdv1.CancelPayoutResponse](ctx, p.s, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_CANCEL, m, nil)
	})
}

func (p *payoutService) ApprovePayout(ctx context.Context, req *connect.Request[bankdv1.DecidePayoutRequest]) (*connect.Response[bankdv1.DecidePayoutResponse], error) {
	req.Msg.Approve = true
	return p.decide(ctx, req)
}

func (p *payoutService) RejectPayout(ctx context.Context, req *connect.Request[bankdv1.DecidePayoutRequest]) (*connect.Response[bankdv1.DecidePayoutResponse], error) {
	req.Msg.Approve = false
	if req.Msg.GetReason() == "" {
		return nil, invalidArgument("reason", "required: say why the withdrawal is rejected")
	}
	return p.decide(ctx, req)
}

// decide proposes an approval or rejection; the state machine checks that the caller (the
// principal the leader stamps) is not the requester.
func (p *payoutService) decide(ctx context.Context, req *connect.Request[bankdv1.DecidePayoutRequest]) (*connect.Response[bankdv1.DecidePayoutResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if len(req.Msg.GetReason()) > fsm.MaxPayoutReasonLen {
		return nil, invalidArgument("reason", "at most %d bytes", fsm.MaxPayoutReasonLen)
	}
	return onLeader(ctx, p.s, req, func(ctx context.Context, m *bankdv1.DecidePayoutRequest) (*bankdv1.DecidePayoutResponse, error) {
		return apply[*bankdv1.DecidePayoutResponse](ctx, p.s, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_DECIDE, m, nil)
	})
}

func (p *payoutService) GetBatch(ctx context.Context, req *connect.Request[bankdv1.GetPayoutBatchRequest]) (*connect.Response[bankdv1.GetPayoutBatchResponse], error) {
	if fe := fsm.CheckBatchID("batch_id", req.Msg.GetBatchId()); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	id := req.Msg.GetBatchId()
	return read(ctx, p.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetPayoutBatchResponse, error) {
		b, err := st.PayoutBatch(id)
		if err != nil {
			return nil, err
		}
		return &bankdv1.GetPayoutBatchResponse{Batch: b, Meta: meta}, nil
	})
}

func (p *payoutService) ListBatches(ctx context.Context, req *connect.Request[bankdv1.ListPayoutBatchesRequest]) (*connect.Response[bankdv1.ListPayoutBatchesResponse], error) {
	m := req.Msg
	if _, ok := bankdv1.BatchState_name[int32(m.GetState())]; !ok {
		return nil, invalidArgument("state", "unknown value %d", int32(m.GetState()))
	}
	size, err := pageSize("page_size", m.GetPageSize())
	if err != nil {
		return nil, err
	}
	if err := checkConsistency(m.GetConsistency()); err != nil {
		return nil, err
	}
	state, token := m.GetState(), m.GetPageToken()
	return read(ctx, p.s, req, m.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListPayoutBatchesResponse, error) {
		batches, next, err := st.ListPayoutBatches(state, token, size)
		if err != nil {
			return nil, fmt.Errorf("list batches: %w", err)
		}
		return &bankdv1.ListPayoutBatchesResponse{Batches: batches, NextPageToken: next, Meta: meta}, nil
	})
}

// SubmitSignature checks a signer's PSBT against the batch before proposing it (the state
// machine checks it again): a PSBT of another transaction, or one that does not verify, never
// reaches the log.
func (p *payoutService) SubmitSignature(ctx context.Context, req *connect.Request[bankdv1.SubmitPayoutSignatureRequest]) (*connect.Response[bankdv1.SubmitPayoutSignatureResponse], error) {
	if fe := fsm.ValidateSubmitPayoutSignature(req.Msg); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	return onLeader(ctx, p.s, req, func(ctx context.Context, m *bankdv1.SubmitPayoutSignatureRequest) (*bankdv1.SubmitPayoutSignatureResponse, error) {
		b, err := p.s.node.State().PayoutBatch(m.BatchId)
		if err != nil {
			if errors.Is(err, fsm.ErrNotFound) {
				return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("batch_id: no batch %q", m.BatchId))
			}
			return nil, err
		}
		if b.SignaturesRequired > 0 {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("batch_id: batch %s spends the cold vault; its cosigners' signatures go to VaultService.SubmitSignature", b.Id))
		}
		if b.State == bankdv1.BatchState_BATCH_STATE_PLANNED {
			if _, fe := fsm.SignedBatchTx(b, m.Psbt); fe != nil {
				return nil, fsmFieldError(fe, "", "")
			}
		}
		return apply[*bankdv1.SubmitPayoutSignatureResponse](ctx, p.s, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_SIGNED, m, nil)
	})
}

func (p *payoutService) AbandonBatch(ctx context.Context, req *connect.Request[bankdv1.AbandonPayoutBatchRequest]) (*connect.Response[bankdv1.AbandonPayoutBatchResponse], error) {
	if fe := fsm.CheckBatchID("batch_id", req.Msg.GetBatchId()); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	if req.Msg.GetReason() == "" || len(req.Msg.GetReason()) > fsm.MaxPayoutReasonLen {
		return nil, invalidArgument("reason", "required, at most %d bytes", fsm.MaxPayoutReasonLen)
	}
	return onLeader(ctx, p.s, req, func(ctx context.Context, m *bankdv1.AbandonPayoutBatchRequest) (*bankdv1.AbandonPayoutBatchResponse, error) {
		return apply[*bankdv1.AbandonPayoutBatchResponse](ctx, p.s, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_ABANDON, m, nil)
	})
}

// FlushQueue asks the leader's payout driver to plan a queue at its next tick (operator).
func (p *payoutService) FlushQueue(ctx context.Context, req *connect.Request[bankdv1.FlushQueueRequest]) (*connect.Response[bankdv1.FlushQueueResponse], error) {
	if q := req.Msg.GetQueue(); q != "" {
		if fe := fsm.CheckPayoutQueue("queue", q); fe != nil {
			return nil, fsmFieldError(fe, "", "")
		}
	}
	drv, err := p.payouts()
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, p.s, req, func(ctx context.Context, m *bankdv1.FlushQueueRequest) (*bankdv1.FlushQueueResponse, error) {
		queue, err := drv.Flush(m.Queue)
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("queue: %w", err))
		}
		return &bankdv1.FlushQueueResponse{Queue: queue}, nil
	})
}

// ReconcileWallets compares the bank's wallets with their books and its customer liabilities
// with its assets (operator).
func (p *payoutService) ReconcileWallets(ctx context.Context, req *connect.Request[bankdv1.ReconcileWalletsRequest]) (*connect.Response[bankdv1.ReconcileWalletsResponse], error) {
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	return read(ctx, p.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ReconcileWalletsResponse, error) {
		wallets, err := st.WalletReconciliation()
		if err != nil {
			return nil, fmt.Errorf("reconcile wallets: %w", err)
		}
		solvency, err := st.Solvency()
		if err != nil {
			return nil, fmt.Errorf("solvency: %w", err)
		}
		return &bankdv1.ReconcileWalletsResponse{Wallets: wallets, Solvency: solvency, Meta: meta}, nil
	})
}

// walletCollector exports, at scrape time, each HOT and COLD wallet's reconciliation from this
// node's state machine: the difference between its books and its UTXOs (zero once settled),
// and its unsettled batches. A scan of the UTXO set per scrape: fine for the sizes a hot wallet
// keeps.
type walletCollector struct {
	b                    backend
	difference, unsettle *prometheus.Desc
}

func registerWalletMetrics(reg prometheus.Registerer, b backend) error {
	c := &walletCollector{b: b,
		difference: prometheus.NewDesc("bankd_wallet_reconciliation_difference_sat",
			"A HOT or COLD wallet's ledger account minus its UTXOs (bankctl payout reconcile); zero once settled.", []string{"wallet"}, nil),
		unsettle: prometheus.NewDesc("bankd_wallet_unsettled_batches",
			"Signed payout transactions of a wallet not yet final.", []string{"wallet"}, nil),
	}
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("rpc: register wallet metrics: %w", err)
	}
	return nil
}

func (c *walletCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.difference
	ch <- c.unsettle
}

func (c *walletCollector) Collect(ch chan<- prometheus.Metric) {
	recs, err := c.b.State().WalletReconciliation()
	if err != nil {
		return
	}
	for _, r := range recs {
		ch <- prometheus.MustNewConstMetric(c.difference, prometheus.GaugeValue, float64(r.DifferenceSat), r.WalletId)
		ch <- prometheus.MustNewConstMetric(c.unsettle, prometheus.GaugeValue, float64(r.UnsettledBatches), r.WalletId)
	}
}
