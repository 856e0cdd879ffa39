package rpc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/lnpool"
	"github.com/bankd/bankd/lnpool/lnd"
)

// LightningPool is the leader's lnd pool driver as the API uses it. *lnpool.Pool implements
// it; its methods answer lnpool.ErrNotReady on a node that is not leading.
type LightningPool interface {
	CreateInvoice(ctx context.Context, req *bankdv1.CreateInvoiceRequest) (*bankdv1.LnInvoice, error)
	PayInvoice(ctx context.Context, req *bankdv1.PayInvoiceRequest) (*bankdv1.LnPayment, error)
	Reconcile(ctx context.Context) ([]*bankdv1.NodeReconciliation, error)
}

// Limits of LightningService requests.
const (
	maxPayWait = 5 * time.Minute
)

// lightningService implements bankd.v1.LightningService.
type lightningService struct{ s *Server }

var _ bankdv1connect.LightningServiceHandler = (*lightningService)(nil)

// pool returns the configured pool or an error saying the cluster has none.
func (l *lightningService) pool() (LightningPool, error) {
	if l.s.lightning == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("this cluster has no lnd pool (no lnd block in cluster.hcl)"))
	}
	return l.s.lightning, nil
}

// poolError maps the pool's errors onto Connect codes; state machine refusals pass through.
func poolError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lnpool.ErrBadInvoice):
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("payment_request: %w", err))
	case errors.Is(err, lnpool.ErrNotReady):
		return connect.NewError(connect.CodeUnavailable, err)
	case errors.Is(err, lnpool.ErrNoNode), errors.Is(err, lnd.ErrUnavailable):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w; nothing was recorded, retry", err))
	case errors.Is(err, lnd.ErrPermission):
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%w (check the node's macaroon)", err))
	case errors.Is(err, lnd.ErrRefused), errors.Is(err, lnd.ErrInvalidReply):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return err
}

func (l *lightningService) ListNodes(ctx context.Context, req *connect.Request[bankdv1.ListLndNodesRequest]) (*connect.Response[bankdv1.ListLndNodesResponse], error) {
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, _ *bankdv1.ReadMeta) (*bankdv1.ListLndNodesResponse, error) {
		nodes, err := st.LndNodes()
		if err != nil {
			return nil, fmt.Errorf("list pool nodes: %w", err)
		}
		return &bankdv1.ListLndNodesResponse{Nodes: nodes}, nil
	})
}

func (l *lightningService) AddNode(ctx context.Context, req *connect.Request[bankdv1.AddLndNodeRequest]) (*connect.Response[bankdv1.AddLndNodeResponse], error) {
	body := &bankdv1.UpsertLndNodeRequest{Id: req.Msg.GetId(), Address: req.Msg.GetAddress(), TlsCertPath: req.Msg.GetTlsCertPath(), MacaroonPath: req.Msg.GetMacaroonPath()}
	if fe := fsm.ValidateUpsertLndNode(body); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, _ *bankdv1.AddLndNodeRequest) (*bankdv1.AddLndNodeResponse, error) {
		res, err := apply[*bankdv1.UpsertLndNodeResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT, body, nil)
		if err != nil {
			return nil, err
		}
		return &bankdv1.AddLndNodeResponse{Node: res.Node, Created: res.Created}, nil
	})
}

func (l *lightningService) DrainNode(ctx context.Context, req *connect.Request[bankdv1.DrainLndNodeRequest]) (*connect.Response[bankdv1.DrainLndNodeResponse], error) {
	if fe := fsm.CheckLndNodeID("id", req.Msg.GetId()); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	state := bankdv1.LndNodeState_LND_NODE_STATE_DRAINING
	if req.Msg.GetUndo() {
		state = bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE
	}
	body := &bankdv1.SetLndNodeStateRequest{Id: req.Msg.GetId(), State: state}
	return onLeader(ctx, l.s, req, func(ctx context.Context, _ *bankdv1.DrainLndNodeRequest) (*bankdv1.DrainLndNodeResponse, error) {
		res, err := apply[*bankdv1.SetLndNodeStateResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE, body, nil)
		if err != nil {
			return nil, err
		}
		return &bankdv1.DrainLndNodeResponse{Node: res.Node}, nil
	})
}

func (l *lightningService) CreateInvoice(ctx context.Context, req *connect.Request[bankdv1.CreateInvoiceRequest]) (*connect.Response[bankdv1.CreateInvoiceResponse], error) {
	m := req.Msg
	if err := checkID("account_id", m.GetAccountId()); err != nil {
		return nil, err
	}
	if fe := fsm.CheckClientAccountID("account_id", m.GetAccountId(), "have an invoice issued to"); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	if err := checkID("request_id", m.GetRequestId()); err != nil {
		return nil, err
	}
	if m.GetAmountSat() <= 0 || m.GetAmountSat() > fsm.MaxLightningAmountSat {
		return nil, invalidArgument("amount_sat", "must be 1-%d satoshis, got %d", int64(fsm.MaxLightningAmountSat), m.GetAmountSat())
	}
	if len(m.GetMemo()) > fsm.MaxInvoiceMemoLen {
		return nil, invalidArgument("memo", "at most %d bytes, got %d", fsm.MaxInvoiceMemoLen, len(m.GetMemo()))
	}
	if m.GetExpirySeconds() < 0 || time.Duration(m.GetExpirySeconds())*time.Second > lnpool.MaxInvoiceExpiry {
		return nil, invalidArgument("expiry_seconds", "must be 0 (one hour) to %d, got %d", int64(lnpool.MaxInvoiceExpiry/time.Second), m.GetExpirySeconds())
	}
	pool, err := l.pool()
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.CreateInvoiceRequest) (*bankdv1.CreateInvoiceResponse, error) {
		if err := requireAccount(l.s, m.AccountId); err != nil {
			return nil, err
		}
		inv, err := pool.CreateInvoice(ctx, m)
		if err != nil {
			return nil, poolError(err)
		}
		return &bankdv1.CreateInvoiceResponse{Invoice: inv}, nil
	})
}

// requireAccount checks on the leader, before lnd is asked for anything, that the account
// exists; the state machine checks it again when the invoice is recorded.
func requireAccount(s *Server, id string) error {
	if _, err := s.node.State().Account(id); err != nil {
		if errors.Is(err, fsm.ErrNotFound) {
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("account_id: no account %q", id))
		}
		return err
	}
	return nil
}

func (l *lightningService) GetInvoice(ctx context.Context, req *connect.Request[bankdv1.GetInvoiceRequest]) (*connect.Response[bankdv1.GetInvoiceResponse], error) {
	if fe := fsm.CheckPaymentHash("hash", req.Msg.GetHash()); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	hash := req.Msg.GetHash()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, _ *bankdv1.ReadMeta) (*bankdv1.GetInvoiceResponse, error) {
		inv, err := st.Invoice(hash)
		if err != nil {
			return nil, fmt.Errorf("invoice %s: %w", hash, err)
		}
		return &bankdv1.GetInvoiceResponse{Invoice: inv}, nil
	})
}

func (l *lightningService) PayInvoice(ctx context.Context, req *connect.Request[bankdv1.PayInvoiceRequest]) (*connect.Response[bankdv1.PayInvoiceResponse], error) {
	m := req.Msg
	if err := checkID("id", m.GetId()); err != nil {
		return nil, err
	}
	if err := checkID("account_id", m.GetAccountId()); err != nil {
		return nil, err
	}
	if fe := fsm.CheckClientAccountID("account_id", m.GetAccountId(), "pay from"); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	switch {
	case m.GetPaymentRequest() == "":
		return nil, invalidArgument("payment_request", "required")
	case len(m.GetPaymentRequest()) > fsm.MaxPaymentRequestLen:
		return nil, invalidArgument("payment_request", "at most %d characters, got %d", fsm.MaxPaymentRequestLen, len(m.GetPaymentRequest()))
	case m.GetAmountSat() < 0 || m.GetAmountSat() > fsm.MaxLightningAmountSat:
		return nil, invalidArgument("amount_sat", "must be 0-%d satoshis, got %d", int64(fsm.MaxLightningAmountSat), m.GetAmountSat())
	case m.GetMaxFeeSat() < 0 || m.GetMaxFeeSat() > fsm.MaxLightningAmountSat:
		return nil, invalidArgument("max_fee_sat", "must be 0-%d satoshis, got %d", int64(fsm.MaxLightningAmountSat), m.GetMaxFeeSat())
	case m.GetWaitMs() < 0 || time.Duration(m.GetWaitMs())*time.Millisecond > maxPayWait:
		return nil, invalidArgument("wait_ms", "must be 0-%d, got %d", maxPayWait.Milliseconds(), m.GetWaitMs())
	}
	pool, err := l.pool()
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.PayInvoiceRequest) (*bankdv1.PayInvoiceResponse, error) {
		if err := requireAccount(l.s, m.AccountId); err != nil {
			return nil, err
		}
		p, err := pool.PayInvoice(ctx, m)
		if err != nil {
			return nil, poolError(err)
		}
		return &bankdv1.PayInvoiceResponse{Payment: p}, nil
	})
}

func (l *lightningService) GetPayment(ctx context.Context, req *connect.Request[bankdv1.GetPaymentRequest]) (*connect.Response[bankdv1.GetPaymentResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	id := req.Msg.GetId()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, _ *bankdv1.ReadMeta) (*bankdv1.GetPaymentResponse, error) {
		p, err := st.Payment(id)
		if err != nil {
			return nil, fmt.Errorf("payment %q: %w", id, err)
		}
		return &bankdv1.GetPaymentResponse{Payment: p}, nil
	})
}

// PayInternal moves money between two accounts of the bank: one posted ledger transfer,
// applied in one Raft entry, no lnd involved.
func (l *lightningService) PayInternal(ctx context.Context, req *connect.Request[bankdv1.PayInternalRequest]) (*connect.Response[bankdv1.PayInternalResponse], error) {
	m := req.Msg
	t := &bankdv1.Transfer{
		Id: m.GetId(), DebitAccountId: m.GetFromAccountId(), CreditAccountId: m.GetToAccountId(),
		Amount: m.GetAmountSat(), Currency: "BTC", Code: InternalPaymentCode,
	}
	if m.GetMemo() != "" {
		t.Metadata = map[string]string{"memo": m.GetMemo()}
	}
	if fe := fsm.ValidateTransfer(t); fe != nil {
		ce := fsmFieldError(fe, "transfer.", "")
		// Name the request's fields, not the transfer's.
		for _, f := range [][2]string{{"debit_account_id", "from_account_id"}, {"credit_account_id", "to_account_id"}, {"amount", "amount_sat"}} {
			if strings.HasPrefix(ce.Message(), f[0]+":") {
				ce = fsmFieldError(&fsm.Error{Code: fe.Code, Message: f[1] + strings.TrimPrefix(ce.Message(), f[0])}, "", "")
			}
		}
		return nil, ce
	}
	if t.DebitAccountId == t.CreditAccountId {
		return nil, invalidArgument("to_account_id", "must differ from from_account_id")
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, _ *bankdv1.PayInternalRequest) (*bankdv1.PayInternalResponse, error) {
		res, err := apply[*bankdv1.CreateTransfersResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS,
			&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{t}}, nil)
		if err != nil {
			return nil, err
		}
		r := res.Results[0]
		if r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
			return nil, &fsm.Error{Code: r.Code, Message: r.Message}
		}
		return &bankdv1.PayInternalResponse{Transfer: r.Transfer}, nil
	})
}

// InternalPaymentCode is the ledger transfer code of PayInternal transfers.
const InternalPaymentCode = 7001

func (l *lightningService) Reconcile(ctx context.Context, req *connect.Request[bankdv1.ReconcileLightningRequest]) (*connect.Response[bankdv1.ReconcileLightningResponse], error) {
	pool, err := l.pool()
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, _ *bankdv1.ReconcileLightningRequest) (*bankdv1.ReconcileLightningResponse, error) {
		nodes, err := pool.Reconcile(ctx)
		if err != nil {
			return nil, poolError(err)
		}
		return &bankdv1.ReconcileLightningResponse{Nodes: nodes}, nil
	})
}

// OpenChannel records an operator's channel open; the leader's payout driver then runs lnd's
// PSBT funding flow with the hot wallet's coins. The leader stamps lnd's pending channel id.
func (l *lightningService) OpenChannel(ctx context.Context, req *connect.Request[bankdv1.OpenChannelRequest]) (*connect.Response[bankdv1.OpenChannelResponse], error) {
	if fe := fsm.ValidateOpenChannel(req.Msg); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	if _, err := l.pool(); err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.OpenChannelRequest) (*bankdv1.OpenChannelResponse, error) {
		pendingID := make([]byte, 32)
		if _, err := rand.Read(pendingID); err != nil {
			return nil, fmt.Errorf("pending channel id: %w", err)
		}
		body := &bankdv1.ChannelOpenRequestCommand{Request: m, PendingChanId: pendingID}
		return apply[*bankdv1.OpenChannelResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_CHANNEL_OPEN_REQUEST, body, nil)
	})
}

func (l *lightningService) GetChannelOpen(ctx context.Context, req *connect.Request[bankdv1.GetChannelOpenRequest]) (*connect.Response[bankdv1.GetChannelOpenResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	id := req.Msg.GetId()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetChannelOpenResponse, error) {
		o, err := st.ChannelOpen(id)
		if err != nil {
			return nil, err
		}
		out := &bankdv1.GetChannelOpenResponse{Open: o, Meta: meta}
		if o.BatchId != "" {
			if out.Batch, err = st.PayoutBatch(o.BatchId); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

// CancelChannelOpen gives an open up (its funding transaction abandoned, its coins released).
// The state machine allows it until lnd has published the funding transaction.
func (l *lightningService) CancelChannelOpen(ctx context.Context, req *connect.Request[bankdv1.CancelChannelOpenRequest]) (*connect.Response[bankdv1.CancelChannelOpenResponse], error) {
	body := &bankdv1.ChannelOpenStep{Id: req.Msg.GetId(), State: bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED, Reason: req.Msg.GetReason()}
	if fe := fsm.ValidateChannelOpenStep(body); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, _ *bankdv1.CancelChannelOpenRequest) (*bankdv1.CancelChannelOpenResponse, error) {
		res, err := apply[*bankdv1.ChannelOpenStepResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_CHANNEL_OPEN_STEP, body, nil)
		if err != nil {
			return nil, err
		}
		return &bankdv1.CancelChannelOpenResponse{Open: res.Open}, nil
	})
}
