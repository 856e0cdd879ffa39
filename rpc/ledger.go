package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// ledgerService implements bankd.v1.LedgerService.
type ledgerService struct{ s *Server }

var _ bankdv1connect.LedgerServiceHandler = (*ledgerService)(nil)

func (l *ledgerService) CreateAccount(ctx context.Context, req *connect.Request[bankdv1.CreateAccountRequest]) (*connect.Response[bankdv1.CreateAccountResponse], error) {
	if err := validateCreateAccount(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.CreateAccountRequest) (*bankdv1.CreateAccountResponse, error) {
		// The fence travels in the command envelope, not in the body.
		body := &bankdv1.CreateAccountRequest{Account: m.GetAccount()}
		return apply[*bankdv1.CreateAccountResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, body, m.GetFence())
	})
}

func (l *ledgerService) GetAccount(ctx context.Context, req *connect.Request[bankdv1.GetAccountRequest]) (*connect.Response[bankdv1.GetAccountResponse], error) {
	if err := validateGetAccount(req.Msg); err != nil {
		return nil, err
	}
	id := req.Msg.GetId()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetAccountResponse, error) {
		acc, err := st.Account(id)
		if err != nil {
			return nil, err // already names the account
		}
		return &bankdv1.GetAccountResponse{Account: acc, Meta: meta}, nil
	})
}

func (l *ledgerService) ListAccounts(ctx context.Context, req *connect.Request[bankdv1.ListAccountsRequest]) (*connect.Response[bankdv1.ListAccountsResponse], error) {
	size, verr := validateListAccounts(req.Msg)
	if verr != nil {
		return nil, verr
	}
	token := req.Msg.GetPageToken()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListAccountsResponse, error) {
		accs, next, err := st.ListAccounts(token, size)
		if err != nil {
			return nil, fmt.Errorf("list accounts: %w", err)
		}
		return &bankdv1.ListAccountsResponse{Accounts: accs, NextPageToken: next, Meta: meta}, nil
	})
}

func (l *ledgerService) CreateTransfer(ctx context.Context, req *connect.Request[bankdv1.CreateTransferRequest]) (*connect.Response[bankdv1.CreateTransferResponse], error) {
	if err := validateCreateTransfer(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.CreateTransferRequest) (*bankdv1.CreateTransferResponse, error) {
		body := &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{m.GetTransfer()}}
		res, err := apply[*bankdv1.CreateTransfersResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, body, m.GetFence())
		if err != nil {
			return nil, err
		}
		if len(res.GetResults()) != 1 {
			return nil, fmt.Errorf("create transfer: %d results for 1 transfer", len(res.GetResults()))
		}
		r := res.GetResults()[0]
		if r.GetCode() != bankdv1.ResultCode_RESULT_CODE_OK {
			return nil, &fsm.Error{Code: r.GetCode(), Message: r.GetMessage()}
		}
		return &bankdv1.CreateTransferResponse{Transfer: r.GetTransfer(), Replayed: r.GetReplayed()}, nil
	})
}

func (l *ledgerService) CreateTransfers(ctx context.Context, req *connect.Request[bankdv1.CreateTransfersRequest]) (*connect.Response[bankdv1.CreateTransfersResponse], error) {
	if err := validateCreateTransfers(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.CreateTransfersRequest) (*bankdv1.CreateTransfersResponse, error) {
		body := &bankdv1.CreateTransfersRequest{Transfers: m.GetTransfers()}
		res, err := apply[*bankdv1.CreateTransfersResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, body, m.GetFence())
		if err != nil {
			return nil, err
		}
		if len(res.GetResults()) != len(m.GetTransfers()) {
			return nil, fmt.Errorf("create transfers: %d results for %d transfers", len(res.GetResults()), len(m.GetTransfers()))
		}
		return res, nil
	})
}

func (l *ledgerService) GetTransfer(ctx context.Context, req *connect.Request[bankdv1.GetTransferRequest]) (*connect.Response[bankdv1.GetTransferResponse], error) {
	if err := validateGetTransfer(req.Msg); err != nil {
		return nil, err
	}
	id := req.Msg.GetId()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetTransferResponse, error) {
		t, err := st.Transfer(id)
		if err != nil {
			return nil, err // already names the transfer
		}
		return &bankdv1.GetTransferResponse{Transfer: t, Meta: meta}, nil
	})
}

func (l *ledgerService) ListAccountHistory(ctx context.Context, req *connect.Request[bankdv1.ListAccountHistoryRequest]) (*connect.Response[bankdv1.ListAccountHistoryResponse], error) {
	size, verr := validateListAccountHistory(req.Msg)
	if verr != nil {
		return nil, verr
	}
	id, token := req.Msg.GetAccountId(), req.Msg.GetPageToken()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListAccountHistoryResponse, error) {
		entries, next, err := st.AccountHistory(id, token, size)
		if err != nil {
			return nil, fmt.Errorf("history of account %q: %w", id, err)
		}
		return &bankdv1.ListAccountHistoryResponse{Entries: entries, NextPageToken: next, Meta: meta}, nil
	})
}
