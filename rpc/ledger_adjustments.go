package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// BookAdjustment books money that moved outside bankd (docs/ADJUSTMENTS.md): one
// BOOK_ADJUSTMENT entry, proposed once the request is valid on its own. Who decided is the
// caller's token, which the leader stamps on the command; nothing in the request names it. The
// command type is newer than the baseline: while some server runs a binary without it,
// node.Apply refuses to propose it (answered failed_precondition naming the nodes to upgrade).
func (l *ledgerService) BookAdjustment(ctx context.Context, req *connect.Request[bankdv1.BookAdjustmentRequest]) (*connect.Response[bankdv1.BookAdjustmentResponse], error) {
	if fe := fsm.ValidateBookAdjustment(req.Msg); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.BookAdjustmentRequest) (*bankdv1.BookAdjustmentResponse, error) {
		// Only the fields the command knows: anything else a client sent (unknown fields) stays
		// out of the log.
		body := &bankdv1.BookAdjustmentRequest{
			Id: m.GetId(), AccountId: m.GetAccountId(), AmountSat: m.GetAmountSat(), Kind: m.GetKind(),
			Reason: m.GetReason(), ExternalReference: m.GetExternalReference(),
		}
		return apply[*bankdv1.BookAdjustmentResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT, body, nil)
	})
}

func (l *ledgerService) GetAdjustment(ctx context.Context, req *connect.Request[bankdv1.GetAdjustmentRequest]) (*connect.Response[bankdv1.GetAdjustmentResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	id := req.Msg.GetId()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetAdjustmentResponse, error) {
		adj, err := st.Adjustment(id)
		if err != nil {
			return nil, err // already names the adjustment
		}
		return &bankdv1.GetAdjustmentResponse{Adjustment: adj, Meta: meta}, nil
	})
}

func (l *ledgerService) ListAdjustments(ctx context.Context, req *connect.Request[bankdv1.ListAdjustmentsRequest]) (*connect.Response[bankdv1.ListAdjustmentsResponse], error) {
	m := req.Msg
	if m.GetAccountId() != "" {
		if err := checkID("account_id", m.GetAccountId()); err != nil {
			return nil, err
		}
	}
	size, verr := validatePage(m)
	if verr != nil {
		return nil, verr
	}
	account, token := m.GetAccountId(), m.GetPageToken()
	return read(ctx, l.s, req, m.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListAdjustmentsResponse, error) {
		adjs, next, err := st.ListAdjustments(account, token, size)
		if err != nil {
			return nil, fmt.Errorf("list adjustments: %w", err)
		}
		return &bankdv1.ListAdjustmentsResponse{Adjustments: adjs, NextPageToken: next, Meta: meta}, nil
	})
}
