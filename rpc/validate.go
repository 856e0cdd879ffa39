package rpc

import (
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// The checks here are the cheap, stateless ones that let a node refuse a malformed request
// before it is proposed (or forwarded). The rules about ledger and lock fields are fsm's
// exported validators, so they live in one place; this file only adds request-level checks
// (required ids, page sizes, enums) and puts the right field path on each message.

// maxPageTokenLen bounds page tokens, which are opaque keys produced by fsm.
const maxPageTokenLen = 1024

// fsmFieldError turns an fsm validation refusal into InvalidArgument. The fsm messages already
// start with a field path ("transfer.amount: ..."); rename replaces its first element, e.g.
// "transfer" → "transfers[3]".
func fsmFieldError(fe *fsm.Error, from, to string) *connect.Error {
	msg := fe.Message
	if from != to && strings.HasPrefix(msg, from) {
		msg = to + msg[len(from):]
	}
	ce := connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s", msg))
	attachResultCode(ce, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT.String())
	return ce
}

// checkID checks an id used as a lookup key: required, and no longer than any id can be.
func checkID(field, id string) *connect.Error {
	switch {
	case id == "":
		return invalidArgument(field, "required")
	case len(id) > fsm.MaxIDLen:
		return invalidArgument(field, "at most %d characters, got %d", fsm.MaxIDLen, len(id))
	}
	return nil
}

func checkConsistency(c bankdv1.ReadConsistency) *connect.Error {
	if _, ok := bankdv1.ReadConsistency_name[int32(c)]; !ok {
		return invalidArgument("consistency", "unknown value %d", int32(c))
	}
	return nil
}

// pageSize resolves a requested page size: 0 means the default, above the maximum is refused.
func pageSize(field string, n uint32) (int, *connect.Error) {
	switch {
	case n == 0:
		return fsm.DefaultPageSize, nil
	case n > fsm.MaxPageSize:
		return 0, invalidArgument(field, "must be 0-%d, got %d", fsm.MaxPageSize, n)
	}
	return int(n), nil
}

func checkPageToken(field, token string) *connect.Error {
	if len(token) > maxPageTokenLen {
		return invalidArgument(field, "at most %d bytes", maxPageTokenLen)
	}
	return nil
}

func checkFence(f *bankdv1.Fence) *connect.Error {
	if f == nil {
		return nil
	}
	if fe := fsm.ValidateLockName(f.GetLockName()); fe != nil {
		return fsmFieldError(fe, "name", "fence.lock_name")
	}
	if f.GetToken() == 0 {
		return invalidArgument("fence.token", "must be > 0 (the token of the lock grant)")
	}
	return nil
}

func validateCreateAccount(r *bankdv1.CreateAccountRequest) *connect.Error {
	if fe := fsm.ValidateAccount(r.GetAccount()); fe != nil {
		return fsmFieldError(fe, "account", "account")
	}
	return checkFence(r.GetFence())
}

func validateCreateTransfer(r *bankdv1.CreateTransferRequest) *connect.Error {
	t := r.GetTransfer()
	if fe := fsm.ValidateTransfer(t); fe != nil {
		return fsmFieldError(fe, "transfer", "transfer")
	}
	if t.GetLinked() {
		return invalidArgument("transfer.linked", "a single transfer cannot open a linked chain")
	}
	return checkFence(r.GetFence())
}

func validateCreateTransfers(r *bankdv1.CreateTransfersRequest) *connect.Error {
	ts := r.GetTransfers()
	if fe := fsm.ValidateTransfers(ts); fe != nil {
		return fsmFieldError(fe, "transfers", "transfers")
	}
	for i, t := range ts {
		if fe := fsm.ValidateTransfer(t); fe != nil {
			return fsmFieldError(fe, "transfer", fmt.Sprintf("transfers[%d]", i))
		}
	}
	return checkFence(r.GetFence())
}

func validateGetAccount(r *bankdv1.GetAccountRequest) *connect.Error {
	if err := checkID("id", r.GetId()); err != nil {
		return err
	}
	return checkConsistency(r.GetConsistency())
}

func validateGetTransfer(r *bankdv1.GetTransferRequest) *connect.Error {
	if err := checkID("id", r.GetId()); err != nil {
		return err
	}
	return checkConsistency(r.GetConsistency())
}

// pagedRead is a list request: a page size, a page token and a consistency.
type pagedRead interface {
	GetPageSize() uint32
	GetPageToken() string
	GetConsistency() bankdv1.ReadConsistency
}

// validatePage checks a list request's paging and consistency and returns the page size.
func validatePage(r pagedRead) (int, *connect.Error) {
	n, err := pageSize("page_size", r.GetPageSize())
	if err != nil {
		return 0, err
	}
	if err := checkPageToken("page_token", r.GetPageToken()); err != nil {
		return 0, err
	}
	return n, checkConsistency(r.GetConsistency())
}

func validateListAccounts(r *bankdv1.ListAccountsRequest) (int, *connect.Error) {
	return validatePage(r)
}

func validateListAccountHistory(r *bankdv1.ListAccountHistoryRequest) (int, *connect.Error) {
	if err := checkID("account_id", r.GetAccountId()); err != nil {
		return 0, err
	}
	return validatePage(r)
}

// lockFields checks the name and holder that every lock write carries.
func lockFields(name, holder string) *connect.Error {
	if fe := fsm.ValidateLockName(name); fe != nil {
		return fsmFieldError(fe, "name", "name")
	}
	if fe := fsm.ValidateLockHolder(holder); fe != nil {
		return fsmFieldError(fe, "holder", "holder")
	}
	return nil
}

func checkLockToken(token uint64) *connect.Error {
	if token == 0 {
		return invalidArgument("token", "must be > 0 (the token returned by Acquire)")
	}
	return nil
}

func checkTTL(ms int64) *connect.Error {
	if fe := fsm.ValidateLockTTL(ms); fe != nil {
		return fsmFieldError(fe, "ttl_ms", "ttl_ms")
	}
	return nil
}

func validateAcquireLock(r *bankdv1.AcquireLockRequest) *connect.Error {
	if err := lockFields(r.GetName(), r.GetHolder()); err != nil {
		return err
	}
	return checkTTL(r.GetTtlMs())
}

func validateRenewLock(r *bankdv1.RenewLockRequest) *connect.Error {
	if err := lockFields(r.GetName(), r.GetHolder()); err != nil {
		return err
	}
	if err := checkLockToken(r.GetToken()); err != nil {
		return err
	}
	return checkTTL(r.GetTtlMs())
}

func validateReleaseLock(r *bankdv1.ReleaseLockRequest) *connect.Error {
	if err := lockFields(r.GetName(), r.GetHolder()); err != nil {
		return err
	}
	return checkLockToken(r.GetToken())
}

func validateGetLock(r *bankdv1.GetLockRequest) *connect.Error {
	if fe := fsm.ValidateLockName(r.GetName()); fe != nil {
		return fsmFieldError(fe, "name", "name")
	}
	return checkConsistency(r.GetConsistency())
}

// maxNodeIDLen bounds node ids in cluster requests (cluster.hcl allows 64; Raft ids add an
// incarnation suffix).
const maxNodeIDLen = 128

func validateTransferLeadership(r *bankdv1.TransferLeadershipRequest) *connect.Error {
	if len(r.GetTargetNodeId()) > maxNodeIDLen {
		return invalidArgument("target_node_id", "at most %d characters", maxNodeIDLen)
	}
	return nil
}

func validateRemoveNode(r *bankdv1.RemoveNodeRequest) *connect.Error {
	switch {
	case r.GetId() == "":
		return invalidArgument("id", "required")
	case len(r.GetId()) > maxNodeIDLen:
		return invalidArgument("id", "at most %d characters", maxNodeIDLen)
	}
	return nil
}

// validateCreateWallet checks a CreateWallet request whose network the handler has filled from
// cluster.hcl when it was empty. A network other than the node's own is refused here, before
// the state machine refuses it for not being the cluster's.
func validateCreateWallet(r *bankdv1.CreateWalletRequest, network string) *connect.Error {
	if r.GetNetwork() != network {
		return invalidArgument("network", "this cluster is for %s (cluster.hcl chain.network), got %q; leave it empty", network, r.GetNetwork())
	}
	if fe := fsm.ValidateCreateWallet(r); fe != nil {
		return fsmFieldError(fe, "", "")
	}
	return nil
}

func validateGetWallet(r *bankdv1.GetWalletRequest) *connect.Error {
	if err := checkID("wallet_id", r.GetWalletId()); err != nil {
		return err
	}
	return checkConsistency(r.GetConsistency())
}

func validateListWallets(r *bankdv1.ListWalletsRequest) (int, *connect.Error) {
	return validatePage(r)
}

func validateNewDepositAddress(r *bankdv1.NewDepositAddressRequest) *connect.Error {
	if fe := fsm.ValidateNewDepositAddress(r); fe != nil {
		return fsmFieldError(fe, "", "")
	}
	return nil
}

func validateListDepositAddresses(r *bankdv1.ListDepositAddressesRequest) (int, *connect.Error) {
	if err := checkID("account_id", r.GetAccountId()); err != nil {
		return 0, err
	}
	return validatePage(r)
}

func validateLookupAddress(r *bankdv1.LookupAddressRequest) *connect.Error {
	switch {
	case r.GetAddress() == "":
		return invalidArgument("address", "required")
	case len(r.GetAddress()) > fsm.MaxAddressLen:
		return invalidArgument("address", "at most %d characters, got %d", fsm.MaxAddressLen, len(r.GetAddress()))
	}
	return checkConsistency(r.GetConsistency())
}
