package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// CreateAccounts creates up to fsm.MaxAccountsPerCommand accounts in one CREATE_ACCOUNTS entry
// and answers one result per account. The command type is newer than the baseline: while some
// server of the configuration runs a binary without it, node.Apply refuses to propose it
// (ErrNotUpgraded, answered failed_precondition naming the nodes to upgrade), and an older
// leader this node forwards to answers unimplemented.
func (l *ledgerService) CreateAccounts(ctx context.Context, req *connect.Request[bankdv1.CreateAccountsRequest]) (*connect.Response[bankdv1.CreateAccountsResponse], error) {
	if err := validateCreateAccounts(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.CreateAccountsRequest) (*bankdv1.CreateAccountsResponse, error) {
		// The fence travels in the command envelope, not in the body.
		body := &bankdv1.CreateAccountsRequest{Accounts: m.GetAccounts()}
		res, err := apply[*bankdv1.CreateAccountsResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS, body, m.GetFence())
		if err != nil {
			return nil, err
		}
		if len(res.GetResults()) != len(m.GetAccounts()) {
			return nil, fmt.Errorf("create accounts: %d results for %d accounts", len(res.GetResults()), len(m.GetAccounts()))
		}
		return res, nil
	})
}

// validateCreateAccounts refuses the whole request, before anything is proposed, when its shape
// is wrong (no accounts, too many, an id twice) or any account is invalid on its own, naming the
// account's position: as CreateTransfers does, so that bad input never reaches the log. The
// state machine still answers per account for what only the state decides (replays, conflicts).
func validateCreateAccounts(r *bankdv1.CreateAccountsRequest) *connect.Error {
	accs := r.GetAccounts()
	if fe := fsm.ValidateAccounts(accs); fe != nil {
		return fsmFieldError(fe, "accounts", "accounts")
	}
	for i, acc := range accs {
		if fe := fsm.ValidateAccount(acc); fe != nil {
			return fsmFieldError(fe, "account", fmt.Sprintf("accounts[%d]", i))
		}
	}
	return checkFence(r.GetFence())
}
