package coldvault

import (
	"context"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
)

// ClientAPI is the API of a node's clients.
func ClientAPI(c *apiclient.Clients) API { return clientAPI{c} }

type clientAPI struct{ c *apiclient.Clients }

func (a clientAPI) ReconcileWallets(ctx context.Context, r *connect.Request[bankdv1.ReconcileWalletsRequest]) (*connect.Response[bankdv1.ReconcileWalletsResponse], error) {
	return a.c.Payout.ReconcileWallets(ctx, r)
}

func (a clientAPI) ListVaultProposals(ctx context.Context, r *connect.Request[bankdv1.ListVaultProposalsRequest]) (*connect.Response[bankdv1.ListVaultProposalsResponse], error) {
	return a.c.Vault.List(ctx, r)
}

func (a clientAPI) ProposeVaultTransfer(ctx context.Context, r *connect.Request[bankdv1.ProposeVaultTransferRequest]) (*connect.Response[bankdv1.ProposeVaultTransferResponse], error) {
	return a.c.Vault.Propose(ctx, r)
}
