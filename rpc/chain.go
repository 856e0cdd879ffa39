package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// chainService implements bankd.v1.ChainService: reads of the chain state the leader's chain
// watcher keeps in the state machine. Nothing here writes.
type chainService struct{ s *Server }

var _ bankdv1connect.ChainServiceHandler = (*chainService)(nil)

func (c *chainService) GetChainStatus(ctx context.Context, req *connect.Request[bankdv1.GetChainStatusRequest]) (*connect.Response[bankdv1.GetChainStatusResponse], error) {
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	return read(ctx, c.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetChainStatusResponse, error) {
		status, err := st.ChainStatus()
		if err != nil {
			return nil, fmt.Errorf("chain status: %w", err)
		}
		status.Meta = meta
		return status, nil
	})
}

func (c *chainService) GetChainTx(ctx context.Context, req *connect.Request[bankdv1.GetChainTxRequest]) (*connect.Response[bankdv1.GetChainTxResponse], error) {
	txid := req.Msg.GetTxid()
	if err := checkTxid("txid", txid); err != nil {
		return nil, err
	}
	if err := checkConsistency(req.Msg.GetConsistency()); err != nil {
		return nil, err
	}
	return read(ctx, c.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetChainTxResponse, error) {
		tx, deposits, err := st.ChainTx(txid)
		if err != nil {
			return nil, err // already names the transaction
		}
		return &bankdv1.GetChainTxResponse{Tx: tx, Deposits: deposits, Meta: meta}, nil
	})
}

func (c *chainService) ListUtxos(ctx context.Context, req *connect.Request[bankdv1.ListUtxosRequest]) (*connect.Response[bankdv1.ListUtxosResponse], error) {
	if id := req.Msg.GetWalletId(); id != "" {
		if err := checkID("wallet_id", id); err != nil {
			return nil, err
		}
	}
	size, err := validatePage(req.Msg)
	if err != nil {
		return nil, err
	}
	wallet, token := req.Msg.GetWalletId(), req.Msg.GetPageToken()
	return read(ctx, c.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListUtxosResponse, error) {
		utxos, next, err := st.ListUtxos(wallet, token, size)
		if err != nil {
			return nil, fmt.Errorf("list utxos: %w", err)
		}
		return &bankdv1.ListUtxosResponse{Utxos: utxos, NextPageToken: next, Meta: meta}, nil
	})
}

func (c *chainService) ListDeposits(ctx context.Context, req *connect.Request[bankdv1.ListDepositsRequest]) (*connect.Response[bankdv1.ListDepositsResponse], error) {
	if err := checkID("account_id", req.Msg.GetAccountId()); err != nil {
		return nil, err
	}
	size, err := validatePage(req.Msg)
	if err != nil {
		return nil, err
	}
	id, token := req.Msg.GetAccountId(), req.Msg.GetPageToken()
	return read(ctx, c.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListDepositsResponse, error) {
		deposits, next, err := st.ListDeposits(id, token, size)
		if err != nil {
			return nil, fmt.Errorf("deposits of account %q: %w", id, err)
		}
		return &bankdv1.ListDepositsResponse{Deposits: deposits, NextPageToken: next, Meta: meta}, nil
	})
}

// checkTxid accepts a transaction id in its usual display form, as the state machine does.
func checkTxid(field, txid string) *connect.Error {
	if fe := fsm.CheckHash(field, txid); fe != nil {
		return fsmFieldError(fe, "", "")
	}
	return nil
}

// Rescan proposes a rescan from a height; the leader's chain watcher then matches those blocks
// again, one command per block.
func (c *chainService) Rescan(ctx context.Context, req *connect.Request[bankdv1.RescanChainRequest]) (*connect.Response[bankdv1.RescanChainResponse], error) {
	return onLeader(ctx, c.s, req, func(ctx context.Context, m *bankdv1.RescanChainRequest) (*bankdv1.RescanChainResponse, error) {
		return apply[*bankdv1.RescanChainResponse](ctx, c.s, bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN, m, nil)
	})
}
