package fsm

import (
	"strings"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Ownership. Every account and transfer records who created it (Account.owner,
// Transfer.owner): an API client, or one of the leader-only drivers, each acting through its own
// command types (commandBodies). What a driver creates, only that driver uses:
//
//   - a client command cannot create an account or transfer whose id has the form of a driver's
//     ids (the table below), so it cannot take an id a driver will need later;
//   - it cannot post or void a pending transfer it does not own (a deposit's pending credit, a
//     Lightning payment's hold);
//   - it cannot move money into or out of an account a driver owns (a client credit of
//     ln:<node> or onchain-deposits would break reconciliation, a debit would take the bank's
//     money);
//   - deposit addresses, invoices and payments are only for client-owned accounts.
//
// A driver may use client accounts (a deposit credits a customer, a payment debits one) and its
// own, never another driver's, with one exception: a final channel funding moves the chain
// driver's coins into the Lightning driver's ln:<node> (fsm/channel_open.go). An id that exists
// is judged by the owner recorded with it; only records written before owners were recorded
// (owner unspecified) are judged by the form of their id, which is exact for them because the
// drivers have always used these forms.

// systemIDForm is one form of id a driver creates: a fixed prefix, then a rest of some shape.
// Every form has a prefix, so that matching a client's id, which almost never has one, costs
// a few byte comparisons per form on the hot path.
type systemIDForm struct {
	owner bankdv1.Owner
	// form documents the id, as docs/ARCHITECTURE.md lists it.
	form   string
	prefix string
	rest   func(rest string) bool
}

func (f systemIDForm) match(id string) bool {
	rest, ok := strings.CutPrefix(id, f.prefix)
	return ok && f.rest(rest)
}

// systemTransferIDs are the forms of every transfer id a driver creates. TestEveryDriverIDIsSystem
// checks that each id the drivers generate matches one.
var systemTransferIDs = []systemIDForm{
	{bankdv1.Owner_OWNER_CHAIN, "d:<txid>:<vout>:<attempt>   a deposit's pending credit", "d:", isDepositRest},
	{bankdv1.Owner_OWNER_CHAIN, "p:<txid>:<vout>:<attempt>   its post at final depth", "p:", isDepositRest},
	{bankdv1.Owner_OWNER_CHAIN, "v:<txid>:<vout>:<attempt>   its void when rejected", "v:", isDepositRest},
	{bankdv1.Owner_OWNER_CHAIN, "r:<txid>:<vout>:<reversal>  the reversal of a credit a reorg took back", "r:", isDepositRest},
	{bankdv1.Owner_OWNER_LIGHTNING, "lni:<hash>                   an invoice settled on its node", "lni:", isHashRest},
	{bankdv1.Owner_OWNER_LIGHTNING, "lnin:<hash>                  an invoice of our pool paid inside the ledger", "lnin:", isHashRest},
	{bankdv1.Owner_OWNER_LIGHTNING, "lnu:<node>:<settle index>    a settlement the cluster did not issue", "lnu:", isUnattributedRest},
	{bankdv1.Owner_OWNER_LIGHTNING, "lnp:<raft index>[:post|:void] a payment's hold and its resolution", "lnp:", isPaymentRest},
	{bankdv1.Owner_OWNER_LIGHTNING, "ln-open:<node>               a pool node's opening balance", "ln-open:", isLndNodeID},
	{bankdv1.Owner_OWNER_CHAIN, "po:<raft index>[:post|:void|:pay] a withdrawal's hold, its resolution, its payment from the hot wallet", "po:", isPayoutRest},
	{bankdv1.Owner_OWNER_CHAIN, "f:<txid>:<vout>:0            coins from outside paid to a HOT or COLD wallet", "f:", isDepositRest},
	{bankdv1.Owner_OWNER_CHAIN, "pb:<raft index>:fee|:sweep|:channel|:vault a payout batch's fee paid against fees charged; a sweep's coins into the hot wallet's books; a channel funding's coins into ln:<node>; a hot -> cold move", "pb:", isBatchFeeRest},
}

// systemAccountIDs are the forms of every account id a driver creates.
var systemAccountIDs = []systemIDForm{
	{bankdv1.Owner_OWNER_CHAIN, DepositClearingAccount + "  ASSET: the bank's side of every deposit", DepositClearingAccount, isEmpty},
	{bankdv1.Owner_OWNER_LIGHTNING, LightningCapitalAccount + "        EQUITY: opening balances of pool nodes", LightningCapitalAccount, isEmpty},
	{bankdv1.Owner_OWNER_LIGHTNING, LightningUnattributedAccount + "   LIABILITY: settlements the cluster did not issue", LightningUnattributedAccount, isEmpty},
	{bankdv1.Owner_OWNER_LIGHTNING, LightningNodeAccountPrefix + "<node>            ASSET: what a pool node's channels hold", LightningNodeAccountPrefix, isLndNodeID},
	{bankdv1.Owner_OWNER_CHAIN, PayoutClearingAccount + "   LIABILITY: withdrawals held and paid", PayoutClearingAccount, isEmpty},
	{bankdv1.Owner_OWNER_CHAIN, PayoutFeeIncomeAccount + " INCOME: fees charged above the fee paid", PayoutFeeIncomeAccount, isEmpty},
	{bankdv1.Owner_OWNER_CHAIN, PayoutFeeExpenseAccount + " EXPENSE: fees paid above the fees charged", PayoutFeeExpenseAccount, isEmpty},
	{bankdv1.Owner_OWNER_CHAIN, WalletCapitalAccount + "    EQUITY: coins paid to the bank's own wallets from outside", WalletCapitalAccount, isEmpty},
	{bankdv1.Owner_OWNER_CHAIN, WalletAccountPrefix + "<wallet>      ASSET: a wallet's coins", WalletAccountPrefix, validID},
}

// gatedTransferIDs and gatedAccountIDs are the forms the adjustments added (adjustment.go): the
// API refuses them to clients at once, the state machine only once the first adjustment
// applied, so that a log without adjustments applies as the binaries before them apply it.
var (
	gatedTransferIDs = []systemIDForm{
		{bankdv1.Owner_OWNER_LIGHTNING, LightningAdjustmentPrefix + "<raft index>       an adjustment of ln:<node>: money that moved outside bankd", LightningAdjustmentPrefix, isDecimal},
		{bankdv1.Owner_OWNER_CHAIN, WalletAdjustmentPrefix + "<raft index>  an adjustment of wallet:<wallet>", WalletAdjustmentPrefix, isDecimal},
	}
	gatedAccountIDs = []systemIDForm{
		{bankdv1.Owner_OWNER_LIGHTNING, LightningAdjustmentPrefix + "<kind>      EQUITY/INCOME/EXPENSE: the other side of adjustments of ln:<node>", LightningAdjustmentPrefix, isAdjustmentKindSlug},
		{bankdv1.Owner_OWNER_CHAIN, WalletAdjustmentPrefix + "<kind> EQUITY/INCOME/EXPENSE: the other side of adjustments of wallet:<wallet>", WalletAdjustmentPrefix, isAdjustmentKindSlug},
	}
)

// SystemTransferOwner reports which driver creates transfers with an id of this form, the gated
// forms included (the API's view).
func SystemTransferOwner(id string) (bankdv1.Owner, bool) {
	return systemOwner(systemTransferIDs, gatedTransferIDs, id)
}

// SystemAccountOwner reports which driver creates accounts with an id of this form, the gated
// forms included (the API's view).
func SystemAccountOwner(id string) (bankdv1.Owner, bool) {
	return systemOwner(systemAccountIDs, gatedAccountIDs, id)
}

// systemOwner reports the owner of the first of forms, then of gated, that id has; gated may
// be nil.
func systemOwner(forms, gated []systemIDForm, id string) (bankdv1.Owner, bool) {
	for _, set := range [][]systemIDForm{forms, gated} {
		for _, f := range set {
			if f.match(id) {
				return f.owner, true
			}
		}
	}
	return bankdv1.Owner_OWNER_UNSPECIFIED, false
}

// gatedForms is gated, or nil when the gated forms are not (yet) in force.
func gatedForms(gated []systemIDForm, inForce bool) []systemIDForm {
	if inForce {
		return gated
	}
	return nil
}

// accountOwner is the owner of a stored account: the recorded one, or for an account written
// before owners were recorded, the one its id's form says.
func accountOwner(acc *bankdv1.Account) bankdv1.Owner {
	if acc.Owner != bankdv1.Owner_OWNER_UNSPECIFIED {
		return acc.Owner
	}
	// Records without an owner predate the gated forms: only the forms of their time judge them.
	if o, ok := systemOwner(systemAccountIDs, nil, acc.Id); ok {
		return o
	}
	return bankdv1.Owner_OWNER_CLIENT
}

// transferOwner is the owner of a stored transfer, judged like accountOwner.
func transferOwner(t *bankdv1.Transfer) bankdv1.Owner {
	if t.Owner != bankdv1.Owner_OWNER_UNSPECIFIED {
		return t.Owner
	}
	if o, ok := systemOwner(systemTransferIDs, nil, t.Id); ok {
		return o
	}
	return bankdv1.Owner_OWNER_CLIENT
}

// OwnerName names an owner in messages: "client", "chain", "lightning".
func OwnerName(o bankdv1.Owner) string {
	return strings.ToLower(strings.TrimPrefix(o.String(), "OWNER_"))
}

// mayUseAccount reports whether a command acting as user may move money into or out of an
// account owned by owner: its own accounts, and customers' (client-owned) ones for a driver.
func mayUseAccount(user, owner bankdv1.Owner) bool {
	return owner == user || owner == bankdv1.Owner_OWNER_CLIENT && user != bankdv1.Owner_OWNER_UNSPECIFIED
}

// CheckClientAccountID refuses, in a client's request, an account id of the form of a driver's
// accounts; use says what the client wanted to do with it ("move money out of").
func CheckClientAccountID(field, id, use string) *Error {
	return checkClientAccountID(field, id, use, true)
}

// checkClientAccountID is CheckClientAccountID with the gated forms or without them.
func checkClientAccountID(field, id, use string, gated bool) *Error {
	if o, ok := systemOwner(systemAccountIDs, gatedForms(gatedAccountIDs, gated), id); ok {
		return invalid("%s: %q is an account of the cluster's %s driver; clients cannot %s it", field, truncate(id), OwnerName(o), use)
	}
	return nil
}

// --- id forms: what follows each form's prefix ---

func isEmpty(rest string) bool { return rest == "" }

// isDepositRest matches what follows the kind in depositTransferID(kind, ...): the txid's 32
// bytes in base64url, the vout and a counter in decimal.
func isDepositRest(rest string) bool {
	if len(rest) < 44 || !isBase64URL(rest[:43]) || rest[43] != ':' {
		return false
	}
	vout, n, ok := strings.Cut(rest[44:], ":")
	return ok && isDecimal(vout) && isDecimal(n)
}

// isHashRest matches what follows the kind in hashTransferID(kind, hash): the 32-byte hash in
// base64url.
func isHashRest(rest string) bool { return len(rest) == 43 && isBase64URL(rest) }

// isUnattributedRest matches what follows "lnu:": "<node>:<settle index>".
func isUnattributedRest(rest string) bool {
	i := strings.LastIndexByte(rest, ':')
	return i > 0 && isLndNodeID(rest[:i]) && isDecimal(rest[i+1:])
}

// isPaymentRest matches what follows "lnp:": "<raft index>" and its ":post" and ":void".
func isPaymentRest(rest string) bool {
	return isDecimal(strings.TrimSuffix(strings.TrimSuffix(rest, ":post"), ":void"))
}

// isPayoutRest matches what follows "po:" in payoutTransferID: "<raft index>" and its ":post",
// ":void", ":pay".
func isPayoutRest(rest string) bool {
	for _, suffix := range []string{":post", ":void", ":pay"} {
		if r, ok := strings.CutSuffix(rest, suffix); ok {
			return isDecimal(r)
		}
	}
	return isDecimal(rest)
}

// isBatchFeeRest matches what follows "pb:" in batchTransferID: "<raft index>:fee", ":sweep",
// ":channel" and ":vault".
func isBatchFeeRest(rest string) bool {
	for _, suffix := range []string{":fee", ":sweep", ":channel", ":vault"} {
		if n, ok := strings.CutSuffix(rest, suffix); ok {
			return isDecimal(n)
		}
	}
	return false
}

func isLndNodeID(s string) bool { return CheckLndNodeID("", s) == nil }

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
