package fsm

import (
	"maps"
	"slices"
	"unicode/utf8"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// The checks in this file look at one request alone, not at the state. rpc/ runs them before
// proposing so that bad input never reaches the log; Apply runs them again, so a command that
// slipped past (another version, a bug) is still refused on every replica alike.

const maxPendingTimeoutMs = 30 * 24 * 3600 * 1000 // 30 days

func invalid(format string, args ...any) *Error {
	return refuse(bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, format, args...)
}

func validID(s string) bool { return validChars(s, MaxIDLen, false) }

// validChars reports whether s is 1..maxLen characters of [A-Za-z0-9._:-], plus '/' if slash.
func validChars(s string, maxLen int, slash bool) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		case c == '/' && slash:
		default:
			return false
		}
	}
	return true
}

func checkID(field, s string) *Error {
	if !validID(s) {
		return invalid("%s: must be 1-%d characters from [A-Za-z0-9._:-], got %q", field, MaxIDLen, truncate(s))
	}
	return nil
}

func validCurrency(s string) bool {
	if len(s) < 3 || len(s) > 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func checkCurrency(field, s string) *Error {
	if !validCurrency(s) {
		return invalid("%s: must be 3-8 upper-case letters, got %q", field, truncate(s))
	}
	return nil
}

func checkMetadata(field string, md map[string]string) *Error {
	if len(md) > MaxMetadataEntries {
		return invalid("%s: at most %d entries, got %d", field, MaxMetadataEntries, len(md))
	}
	if len(md) == 0 {
		return nil // nearly every transfer: skip sorting no keys, which allocates
	}
	// Sorted, so that the same bad request gets the same message on every replica.
	for _, k := range slices.Sorted(maps.Keys(md)) {
		v := md[k]
		if len(k) == 0 || len(k) > MaxMetadataKeyLen || !utf8.ValidString(k) {
			return invalid("%s: keys must be 1-%d bytes of UTF-8, got %q", field, MaxMetadataKeyLen, truncate(k))
		}
		if len(v) > MaxMetadataValueLen || !utf8.ValidString(v) {
			return invalid("%s[%q]: values must be at most %d bytes of UTF-8", field, truncate(k), MaxMetadataValueLen)
		}
	}
	return nil
}

// ValidateAccount checks an account definition as a client sends it: its shape, and that its id
// is not of the form of an account a driver creates (owner.go).
func ValidateAccount(a *bankdv1.Account) *Error { return validateClientAccount(a, true) }

// validateClientAccount is ValidateAccount with the gated id forms (owner.go) or without them.
func validateClientAccount(a *bankdv1.Account, gated bool) *Error {
	if err := validateAccountShape(a); err != nil {
		return err
	}
	if !ownershipChecksOff {
		if o, ok := systemOwner(systemAccountIDs, gatedForms(gatedAccountIDs, gated), a.Id); ok {
			return invalid("account.id: %q has the form of the accounts the cluster's %s driver creates; choose another id", truncate(a.Id), OwnerName(o))
		}
	}
	return nil
}

// validateAccountShape checks an account definition, whoever creates it.
func validateAccountShape(a *bankdv1.Account) *Error {
	if a == nil {
		return invalid("account: required")
	}
	if err := checkID("account.id", a.Id); err != nil {
		return err
	}
	if err := checkCurrency("account.currency", a.Currency); err != nil {
		return err
	}
	if _, ok := bankdv1.AccountKind_name[int32(a.Kind)]; !ok || a.Kind == bankdv1.AccountKind_ACCOUNT_KIND_UNSPECIFIED {
		return invalid("account.kind: must be one of asset, liability, equity, income, expense")
	}
	if a.DailyDebitLimit < 0 {
		return invalid("account.daily_debit_limit: must be >= 0 (0 means no limit), got %d", a.DailyDebitLimit)
	}
	if err := checkMetadata("account.metadata", a.Metadata); err != nil {
		return err
	}
	if a.Balance != nil || a.CreatedAtUnixMs != 0 || a.CreatedIndex != 0 {
		return invalid("account.balance, created_at_unix_ms, created_index: set by the cluster, must be empty")
	}
	if a.Owner != bankdv1.Owner_OWNER_UNSPECIFIED {
		return invalid("account.owner: set by the cluster, must be empty")
	}
	return nil
}

// ValidateTransfer checks one transfer as a client sends it: its shape, and that it names no id
// a driver owns (owner.go): its own id is not of the form of a driver's transfer ids, it posts
// or voids no driver's pending transfer, and it moves no money into or out of a driver's
// account. The state machine checks the same again against the owners it recorded.
func ValidateTransfer(t *bankdv1.Transfer) *Error { return validateClientTransfer(t, true) }

// validateClientTransfer is ValidateTransfer with the gated id forms (owner.go) or without them.
func validateClientTransfer(t *bankdv1.Transfer, gated bool) *Error {
	if err := validateTransferShape(t); err != nil {
		return err
	}
	if ownershipChecksOff {
		return nil
	}
	if o, ok := systemOwner(systemTransferIDs, gatedForms(gatedTransferIDs, gated), t.Id); ok {
		return invalid("transfer.id: %q has the form of the transfer ids the cluster's %s driver uses; choose another id", truncate(t.Id), OwnerName(o))
	}
	if t.PostPending || t.VoidPending {
		if o, ok := systemOwner(systemTransferIDs, gatedForms(gatedTransferIDs, gated), t.PendingId); ok {
			return invalid("transfer.pending_id: %q is a transfer of the cluster's %s driver; only that driver posts or voids it", truncate(t.PendingId), OwnerName(o))
		}
	}
	if err := checkClientAccountID("transfer.debit_account_id", t.DebitAccountId, "move money out of", gated); err != nil {
		return err
	}
	return checkClientAccountID("transfer.credit_account_id", t.CreditAccountId, "move money into", gated)
}

// ownershipChecksOff disables the client ownership checks. Only tests set it, to show that the
// property test catches a state machine without them.
var ownershipChecksOff bool

// validateTransferShape checks one transfer, whoever sends it.
func validateTransferShape(t *bankdv1.Transfer) *Error {
	if t == nil {
		return invalid("transfer: required")
	}
	if err := checkID("transfer.id", t.Id); err != nil {
		return err
	}
	modes := 0
	for _, set := range []bool{t.Pending, t.PostPending, t.VoidPending} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		return invalid("transfer: at most one of pending, post_pending, void_pending")
	}
	if t.Index != 0 || t.CreatedAtUnixMs != 0 || t.State != bankdv1.TransferState_TRANSFER_STATE_UNSPECIFIED ||
		t.PostedAmount != 0 || t.ExpiresAtUnixMs != 0 {
		return invalid("transfer.index, created_at_unix_ms, state, posted_amount, expires_at_unix_ms: set by the cluster, must be empty")
	}
	if t.Owner != bankdv1.Owner_OWNER_UNSPECIFIED {
		return invalid("transfer.owner: set by the cluster, must be empty")
	}
	if len(t.ExternalRef) > MaxExternalRefLen || !utf8.ValidString(t.ExternalRef) {
		return invalid("transfer.external_ref: at most %d bytes of UTF-8", MaxExternalRefLen)
	}
	if err := checkMetadata("transfer.metadata", t.Metadata); err != nil {
		return err
	}
	if t.TimeoutMs < 0 || t.TimeoutMs > maxPendingTimeoutMs {
		return invalid("transfer.timeout_ms: must be 0-%d, got %d", maxPendingTimeoutMs, t.TimeoutMs)
	}
	if t.TimeoutMs != 0 && !t.Pending {
		return invalid("transfer.timeout_ms: only for pending transfers")
	}

	if t.PostPending || t.VoidPending {
		if err := checkID("transfer.pending_id", t.PendingId); err != nil {
			return err
		}
		if t.DebitAccountId != "" {
			if err := checkID("transfer.debit_account_id", t.DebitAccountId); err != nil {
				return err
			}
		}
		if t.CreditAccountId != "" {
			if err := checkID("transfer.credit_account_id", t.CreditAccountId); err != nil {
				return err
			}
		}
		if t.Currency != "" {
			if err := checkCurrency("transfer.currency", t.Currency); err != nil {
				return err
			}
		}
		if t.Amount < 0 {
			return invalid("transfer.amount: must be >= 0 when posting or voiding (0 means the full pending amount), got %d", t.Amount)
		}
		return nil
	}

	if t.PendingId != "" {
		return invalid("transfer.pending_id: only with post_pending or void_pending")
	}
	if err := checkID("transfer.debit_account_id", t.DebitAccountId); err != nil {
		return err
	}
	if err := checkID("transfer.credit_account_id", t.CreditAccountId); err != nil {
		return err
	}
	if t.DebitAccountId == t.CreditAccountId {
		return invalid("transfer.credit_account_id: must differ from debit_account_id")
	}
	if t.Amount <= 0 {
		return invalid("transfer.amount: must be > 0, got %d", t.Amount)
	}
	return checkCurrency("transfer.currency", t.Currency)
}

// ValidateTransfers checks the shape of a request: its size and that it does not end inside a
// linked chain. Each transfer is checked separately by ValidateTransfer.
func ValidateTransfers(ts []*bankdv1.Transfer) *Error {
	if len(ts) == 0 {
		return invalid("transfers: at least one transfer")
	}
	if len(ts) > MaxTransfersPerCommand {
		return invalid("transfers: at most %d per request, got %d", MaxTransfersPerCommand, len(ts))
	}
	if ts[len(ts)-1].GetLinked() {
		return invalid("transfers[%d].linked: the last transfer of a request cannot open a linked chain", len(ts)-1)
	}
	return nil
}

// ValidateLockName checks a lock name.
func ValidateLockName(name string) *Error {
	if !validChars(name, MaxLockNameLen, true) {
		return invalid("name: must be 1-%d characters from [A-Za-z0-9._:/-], got %q", MaxLockNameLen, truncate(name))
	}
	return nil
}

// ValidateLockHolder checks a lock holder: 1-128 printable ASCII characters.
func ValidateLockHolder(holder string) *Error {
	if len(holder) == 0 || len(holder) > MaxLockNameLen {
		return invalid("holder: must be 1-%d characters", MaxLockNameLen)
	}
	for i := 0; i < len(holder); i++ {
		if holder[i] < 0x21 || holder[i] > 0x7e {
			return invalid("holder: printable ASCII without spaces only")
		}
	}
	return nil
}

// ValidateLockTTL checks a lease length.
func ValidateLockTTL(ms int64) *Error {
	if ms < MinLockTTLMs || ms > MaxLockTTLMs {
		return invalid("ttl_ms: must be %d-%d, got %d", MinLockTTLMs, MaxLockTTLMs, ms)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
