package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// createAccounts applies a CREATE_ACCOUNTS command: up to MaxAccountsPerCommand accounts in one
// entry, each applied exactly as a CREATE_ACCOUNT of it would be (createAccount: validation,
// ownership, replay of the same definition, ALREADY_EXISTS for another one). Each account has
// its own result; one refused does not refuse the others. Only a request of the wrong shape
// (no accounts, too many, an id twice) refuses the whole command.
//
// CREATE_ACCOUNTS is newer than BaselineCommandTypes, so the leader proposes it only once every
// server applies it (node.checkUpgraded); CREATE_ACCOUNT itself is unchanged.
func (a *applier) createAccounts(tx *txn, req *bankdv1.CreateAccountsRequest) (proto.Message, error) {
	if err := ValidateAccounts(req.Accounts); err != nil {
		return nil, err
	}
	results := make([]*bankdv1.AccountResult, len(req.Accounts))
	for i, acc := range req.Accounts {
		res, err := a.createOneOfMany(tx, acc)
		if err != nil {
			return nil, fmt.Errorf("accounts[%d] (%q): %w", i, acc.GetId(), err)
		}
		results[i] = res
	}
	return &bankdv1.CreateAccountsResponse{Results: results}, nil
}

// createOneOfMany applies one account of a batch in a txn of its own, so that a refused account
// leaves nothing behind (no write, no event item) whatever createAccount did before refusing it.
// Refusals come back as a result; an error means the store is broken.
func (a *applier) createOneOfMany(tx *txn, acc *bankdv1.Account) (*bankdv1.AccountResult, error) {
	own := tx.child()
	itemsMark := len(a.items)
	res, err := a.createAccount(own, &bankdv1.CreateAccountRequest{Account: acc})
	if refusal, ok := asRefusal(err); ok {
		own.rollback()
		a.items = a.items[:itemsMark]
		return &bankdv1.AccountResult{Id: acc.GetId(), Code: refusal.Code, Message: refusal.Message}, nil
	}
	if err != nil {
		return nil, err
	}
	created, ok := res.(*bankdv1.CreateAccountResponse)
	if !ok {
		return nil, fmt.Errorf("create account answered %T", res)
	}
	if err := own.commit(); err != nil {
		return nil, err
	}
	return &bankdv1.AccountResult{
		Id:       acc.GetId(),
		Code:     bankdv1.ResultCode_RESULT_CODE_OK,
		Account:  created.Account,
		Replayed: created.Replayed,
	}, nil
}

// ValidateAccounts checks the shape of a CreateAccounts request: 1 to MaxAccountsPerCommand
// accounts, no id twice (a second definition under the same id in one request would be either
// a replay of the first or a conflict with it, depending on order alone). Each account is
// checked on its own by ValidateAccount (rpc/) and again when it applies.
func ValidateAccounts(accs []*bankdv1.Account) *Error {
	if len(accs) == 0 {
		return invalid("accounts: at least one account")
	}
	if len(accs) > MaxAccountsPerCommand {
		return invalid("accounts: at most %d per request, got %d", MaxAccountsPerCommand, len(accs))
	}
	first := make(map[string]int, len(accs))
	for i, acc := range accs {
		id := acc.GetId()
		if id == "" {
			continue // refused on its own, as every account without an id
		}
		if j, dup := first[id]; dup {
			return invalid("accounts[%d].id: %q is also accounts[%d].id; ids must be distinct within one request", i, truncate(id), j)
		}
		first[id] = i
	}
	return nil
}
