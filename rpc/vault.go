package rpc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// vaultService implements bankd.v1.VaultService: moves between the hot wallet and the cold
// vault, proposed by coldvault (or an operator) and approved by another identity.
type vaultService struct{ s *Server }

var _ bankdv1connect.VaultServiceHandler = (*vaultService)(nil)

func (v *vaultService) Propose(ctx context.Context, req *connect.Request[bankdv1.ProposeVaultTransferRequest]) (*connect.Response[bankdv1.ProposeVaultTransferResponse], error) {
	if fe := fsm.ValidateProposeVault(req.Msg); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	if v.s.hotWallet == "" {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the cluster has no hot wallet: cluster.hcl has no payouts block"))
	}
	return onLeader(ctx, v.s, req, func(ctx context.Context, m *bankdv1.ProposeVaultTransferRequest) (*bankdv1.ProposeVaultTransferResponse, error) {
		body := &bankdv1.VaultProposeCommand{Request: m, HotWalletId: v.s.hotWallet}
		return apply[*bankdv1.ProposeVaultTransferResponse](ctx, v.s, bankdv1.CommandType_COMMAND_TYPE_VAULT_PROPOSE, body, nil)
	})
}

func (v *vaultService) Get(ctx context.Context, req *connect.Request[bankdv1.GetVaultProposalRequest]) (*connect.Response[bankdv1.GetVaultProposalResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	id := req.Msg.GetId()
	return read(ctx, v.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetVaultProposalResponse, error) {
		p, err := st.VaultProposal(id)
		if err != nil {
			return nil, err
		}
		out := &bankdv1.GetVaultProposalResponse{Proposal: p, Meta: meta}
		if p.BatchId != "" {
			if out.Batch, err = st.PayoutBatch(p.BatchId); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

func (v *vaultService) List(ctx context.Context, req *connect.Request[bankdv1.ListVaultProposalsRequest]) (*connect.Response[bankdv1.ListVaultProposalsResponse], error) {
	m := req.Msg
	if _, ok := bankdv1.VaultProposalState_name[int32(m.GetState())]; !ok {
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
	return read(ctx, v.s, req, m.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListVaultProposalsResponse, error) {
		ps, next, err := st.ListVaultProposals(state, token, size)
		if err != nil {
			return nil, fmt.Errorf("list vault proposals: %w", err)
		}
		return &bankdv1.ListVaultProposalsResponse{Proposals: ps, NextPageToken: next, Meta: meta}, nil
	})
}

func (v *vaultService) Approve(ctx context.Context, req *connect.Request[bankdv1.DecideVaultProposalRequest]) (*connect.Response[bankdv1.DecideVaultProposalResponse], error) {
	req.Msg.Approve = true
	return v.decide(ctx, req)
}

func (v *vaultService) Reject(ctx context.Context, req *connect.Request[bankdv1.DecideVaultProposalRequest]) (*connect.Response[bankdv1.DecideVaultProposalResponse], error) {
	req.Msg.Approve = false
	if req.Msg.GetReason() == "" {
		return nil, invalidArgument("reason", "required: say why the move is rejected")
	}
	return v.decide(ctx, req)
}

// decide proposes an approval or rejection; the state machine checks that the caller is not
// the proposer.
func (v *vaultService) decide(ctx context.Context, req *connect.Request[bankdv1.DecideVaultProposalRequest]) (*connect.Response[bankdv1.DecideVaultProposalResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if len(req.Msg.GetReason()) > fsm.MaxPayoutReasonLen {
		return nil, invalidArgument("reason", "at most %d bytes", fsm.MaxPayoutReasonLen)
	}
	return onLeader(ctx, v.s, req, func(ctx context.Context, m *bankdv1.DecideVaultProposalRequest) (*bankdv1.DecideVaultProposalResponse, error) {
		return apply[*bankdv1.DecideVaultProposalResponse](ctx, v.s, bankdv1.CommandType_COMMAND_TYPE_VAULT_DECIDE, m, nil)
	})
}

func (v *vaultService) Abandon(ctx context.Context, req *connect.Request[bankdv1.AbandonVaultProposalRequest]) (*connect.Response[bankdv1.AbandonVaultProposalResponse], error) {
	if err := checkID("id", req.Msg.GetId()); err != nil {
		return nil, err
	}
	if req.Msg.GetReason() == "" || len(req.Msg.GetReason()) > fsm.MaxPayoutReasonLen {
		return nil, invalidArgument("reason", "required, at most %d bytes", fsm.MaxPayoutReasonLen)
	}
	return onLeader(ctx, v.s, req, func(ctx context.Context, m *bankdv1.AbandonVaultProposalRequest) (*bankdv1.AbandonVaultProposalResponse, error) {
		return apply[*bankdv1.AbandonVaultProposalResponse](ctx, v.s, bankdv1.CommandType_COMMAND_TYPE_VAULT_ABANDON, m, nil)
	})
}

// SubmitSignature takes a cosigner's PSBT of a move out of the cold vault; the state machine
// verifies each signature and collects them until M.
func (v *vaultService) SubmitSignature(ctx context.Context, req *connect.Request[bankdv1.SubmitPayoutSignatureRequest]) (*connect.Response[bankdv1.SubmitPayoutSignatureResponse], error) {
	if fe := fsm.ValidateSubmitPayoutSignature(req.Msg); fe != nil {
		return nil, fsmFieldError(fe, "", "")
	}
	return onLeader(ctx, v.s, req, func(ctx context.Context, m *bankdv1.SubmitPayoutSignatureRequest) (*bankdv1.SubmitPayoutSignatureResponse, error) {
		b, err := v.s.node.State().PayoutBatch(m.BatchId)
		if err != nil {
			if errors.Is(err, fsm.ErrNotFound) {
				return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("batch_id: no batch %q", m.BatchId))
			}
			return nil, err
		}
		if b.SignaturesRequired == 0 {
			return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("batch_id: batch %s does not spend the cold vault; its signer submits to PayoutService.SubmitSignature", b.Id))
		}
		return apply[*bankdv1.SubmitPayoutSignatureResponse](ctx, v.s, bankdv1.CommandType_COMMAND_TYPE_PAYOUT_SIGNED, m, nil)
	})
}
