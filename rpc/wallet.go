package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// walletService implements bankd.v1.WalletService.
type walletService struct{ s *Server }

var _ bankdv1connect.WalletServiceHandler = (*walletService)(nil)

// CreateWallet proposes a wallet for the node's chain network. The state machine parses the
// descriptor again and refuses a network other than the one the cluster's first wallet set.
func (w *walletService) CreateWallet(ctx context.Context, req *connect.Request[bankdv1.CreateWalletRequest]) (*connect.Response[bankdv1.CreateWalletResponse], error) {
	if req.Msg.GetNetwork() == "" {
		req.Msg.Network = w.s.network
	}
	if err := validateCreateWallet(req.Msg, w.s.network); err != nil {
		return nil, err
	}
	return onLeader(ctx, w.s, req, func(ctx context.Context, m *bankdv1.CreateWalletRequest) (*bankdv1.CreateWalletResponse, error) {
		return apply[*bankdv1.CreateWalletResponse](ctx, w.s, bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET, m, nil)
	})
}

func (w *walletService) GetWallet(ctx context.Context, req *connect.Request[bankdv1.GetWalletRequest]) (*connect.Response[bankdv1.GetWalletResponse], error) {
	if err := validateGetWallet(req.Msg); err != nil {
		return nil, err
	}
	id := req.Msg.GetWalletId()
	return read(ctx, w.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetWalletResponse, error) {
		wallet, err := st.Wallet(id)
		if err != nil {
			return nil, err // already names the wallet
		}
		return &bankdv1.GetWalletResponse{Wallet: wallet, Meta: meta}, nil
	})
}

func (w *walletService) ListWallets(ctx context.Context, req *connect.Request[bankdv1.ListWalletsRequest]) (*connect.Response[bankdv1.ListWalletsResponse], error) {
	size, verr := validateListWallets(req.Msg)
	if verr != nil {
		return nil, verr
	}
	token := req.Msg.GetPageToken()
	return read(ctx, w.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListWalletsResponse, error) {
		wallets, next, err := st.ListWallets(token, size)
		if err != nil {
			return nil, fmt.Errorf("list wallets: %w", err)
		}
		return &bankdv1.ListWalletsResponse{Wallets: wallets, NextPageToken: next, Meta: meta}, nil
	})
}

func (w *walletService) NewDepositAddress(ctx context.Context, req *connect.Request[bankdv1.NewDepositAddressRequest]) (*connect.Response[bankdv1.NewDepositAddressResponse], error) {
	if err := validateNewDepositAddress(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, w.s, req, func(ctx context.Context, m *bankdv1.NewDepositAddressRequest) (*bankdv1.NewDepositAddressResponse, error) {
		return apply[*bankdv1.NewDepositAddressResponse](ctx, w.s, bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS, m, nil)
	})
}

func (w *walletService) ListDepositAddresses(ctx context.Context, req *connect.Request[bankdv1.ListDepositAddressesRequest]) (*connect.Response[bankdv1.ListDepositAddressesResponse], error) {
	size, verr := validateListDepositAddresses(req.Msg)
	if verr != nil {
		return nil, verr
	}
	id, token := req.Msg.GetAccountId(), req.Msg.GetPageToken()
	return read(ctx, w.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.ListDepositAddressesResponse, error) {
		addrs, next, err := st.ListDepositAddresses(id, token, size)
		if err != nil {
			return nil, fmt.Errorf("deposit addresses of account %q: %w", id, err)
		}
		return &bankdv1.ListDepositAddressesResponse{Addresses: addrs, NextPageToken: next, Meta: meta}, nil
	})
}

func (w *walletService) LookupAddress(ctx context.Context, req *connect.Request[bankdv1.LookupAddressRequest]) (*connect.Response[bankdv1.LookupAddressResponse], error) {
	if err := validateLookupAddress(req.Msg); err != nil {
		return nil, err
	}
	address := req.Msg.GetAddress()
	return read(ctx, w.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.LookupAddressResponse, error) {
		rec, err := st.LookupAddress(address)
		if err != nil {
			return nil, err // already names the address
		}
		return &bankdv1.LookupAddressResponse{Script: rec, Meta: meta}, nil
	})
}
