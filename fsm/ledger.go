package fsm

import (
	"crypto/sha256"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
)

const msPerDay = 24 * 3600 * 1000

func (a *applier) createAccount(tx *txn, req *bankdv1.CreateAccountRequest) (proto.Message, error) {
	check := validateAccountShape
	if a.enforcesClientOwnership() {
		// The forms the adjustments added are checked against the state (adjustment.go).
		check = func(acc *bankdv1.Account) *Error { return validateClientAccount(acc, false) }
	}
	if err := check(req.Account); err != nil {
		return nil, err
	}
	if a.enforcesClientOwnership() {
		if err := refuseGatedClientID(tx, "account.id", req.Account.Id, gatedAccountIDs); err != nil {
			return nil, err
		}
	}
	if existing, found := tx.account(req.Account.Id); found {
		if o := accountOwner(existing); o != a.owner && a.checksOwnership() {
			return nil, invalid("account.id: %q is taken by an account of %s", req.Account.Id, ownerPhrase(o))
		}
		if !sameAccountDefinition(existing, req.Account) {
			return nil, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS,
				"account.id: account %q already exists with a different definition", req.Account.Id)
		}
		return &bankdv1.CreateAccountResponse{Account: existing, Replayed: true}, nil
	}
	if a.owner == bankdv1.Owner_OWNER_UNSPECIFIED {
		return nil, fmt.Errorf("a %s command, which acts as no one, tried to create account %q", a.cmdType, req.Account.Id)
	}
	acc := proto.Clone(req.Account).(*bankdv1.Account)
	acc.Balance = deriveBalance(acc.Kind, &bankdv1.Balance{})
	acc.CreatedAtUnixMs = a.now
	acc.CreatedIndex = a.index
	acc.Owner = a.owner
	tx.putAccount(copyAccount(acc))
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_AccountCreated{AccountCreated: acc}})
	return &bankdv1.CreateAccountResponse{Account: acc}, nil
}

// ensureAccount creates a driver's own account (the deposit clearing account, the Lightning
// pool's accounts) unless it exists. One that exists under another owner (a client took the id
// before owners were recorded) is refused: the driver must not move its money through it.
func (a *applier) ensureAccount(tx *txn, acc *bankdv1.Account) error {
	if existing, found := tx.account(acc.Id); found {
		if o := accountOwner(existing); o != a.owner {
			return invalid("account.id: %q, which the %s driver needs, is taken by an account of %s", acc.Id, OwnerName(a.owner), ownerPhrase(o))
		}
		return nil
	}
	_, err := a.createAccount(tx, &bankdv1.CreateAccountRequest{Account: acc})
	return err
}

// enforcesClientOwnership reports whether this command is a client's, whose ids and accounts
// are checked against what the drivers own (owner.go).
func (a *applier) enforcesClientOwnership() bool {
	return a.owner == bankdv1.Owner_OWNER_CLIENT && !ownershipChecksOff
}

// checksOwnership reports whether the ownership rules apply to this command: always to a
// driver's, and to a client's unless a test switched the client checks off.
func (a *applier) checksOwnership() bool {
	return a.owner != bankdv1.Owner_OWNER_CLIENT || !ownershipChecksOff
}

// ownerPhrase names an owner in a sentence: "a client", "the chain driver".
func ownerPhrase(o bankdv1.Owner) string {
	if o == bankdv1.Owner_OWNER_CLIENT {
		return "a client"
	}
	return "the " + OwnerName(o) + " driver"
}

func sameAccountDefinition(stored, req *bankdv1.Account) bool {
	def := proto.Clone(stored).(*bankdv1.Account)
	def.Balance, def.CreatedAtUnixMs, def.CreatedIndex, def.Owner = nil, 0, 0, bankdv1.Owner_OWNER_UNSPECIFIED
	return proto.Equal(def, req)
}

// createTransfers applies a request chain by chain. A chain is a run of transfers joined by
// `linked`; it applies in a txn of its own that is dropped if any member fails, so a failed
// chain leaves no trace but its rejection events.
func (a *applier) createTransfers(tx *txn, req *bankdv1.CreateTransfersRequest) (proto.Message, error) {
	if err := ValidateTransfers(req.Transfers); err != nil {
		return nil, err
	}
	ts := req.Transfers
	results := make([]*bankdv1.TransferResult, len(ts))
	for start := 0; start < len(ts); {
		end := start
		for end < len(ts)-1 && ts[end].Linked {
			end++
		}
		chain := tx.child()
		itemsMark, seqMark := len(a.items), a.seq
		failed := -1
		for i := start; i <= end; i++ {
			res, err := a.applyTransfer(chain, ts[i])
			if err != nil {
				return nil, err
			}
			results[i] = res
			if res.Code != bankdv1.ResultCode_RESULT_CODE_OK {
				failed = i
				break
			}
		}
		if failed < 0 {
			if err := chain.commit(); err != nil {
				return nil, err
			}
		} else {
			chain.rollback()
			a.items, a.seq = a.items[:itemsMark], seqMark
			for i := start; i <= end; i++ {
				if i != failed && (results[i] == nil || !results[i].Replayed) {
					results[i] = &bankdv1.TransferResult{
						Id:      ts[i].GetId(),
						Code:    bankdv1.ResultCode_RESULT_CODE_LINKED_FAILED,
						Message: fmt.Sprintf("transfers[%d] (%q) of the same linked chain failed", failed, ts[failed].GetId()),
					}
				}
				a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_TransferRejected{TransferRejected: results[i]}})
			}
		}
		start = end + 1
	}
	return &bankdv1.CreateTransfersResponse{Results: results}, nil
}

// applyTransfer applies one transfer into tx. Refusals come back as a result; an error means
// the store is broken.
func (a *applier) applyTransfer(tx *txn, t *bankdv1.Transfer) (*bankdv1.TransferResult, error) {
	check := validateTransferShape
	if a.enforcesClientOwnership() {
		// The forms the adjustments added are checked against the state (adjustment.go).
		check = func(t *bankdv1.Transfer) *Error { return validateClientTransfer(t, false) }
	}
	if err := check(t); err != nil {
		return refusalResult(t.GetId(), err), nil
	}
	if a.enforcesClientOwnership() {
		if err := refuseGatedClientID(tx, "transfer.id", t.Id, gatedTransferIDs); err != nil {
			if refusal, ok := asRefusal(err); ok {
				return refusalResult(t.Id, refusal), nil
			}
			return nil, err
		}
	}
	if a.owner == bankdv1.Owner_OWNER_UNSPECIFIED {
		return nil, fmt.Errorf("a %s command, which acts as no one, tried to create transfer %q", a.cmdType, t.Id)
	}
	reqHash, err := a.requestHash(t)
	if err != nil {
		return nil, err
	}
	stored, storedHash, found, err := loadTransfer(tx, t.Id)
	if err != nil {
		return nil, err
	}
	// failpoint skip-idempotency-check: treat a stored transfer as absent, so it applies again.
	found = found && !failpoint.Enabled(failpoint.SkipIdempotencyCheck)
	if found {
		// An id is judged by the owner recorded with it: a driver never takes over a transfer
		// a client made under one of its ids, nor a client a driver's.
		if o := transferOwner(stored); o != a.owner && a.checksOwnership() {
			return refusalResult(t.Id, invalid("transfer.id: %q is taken by a transfer of %s", t.Id, ownerPhrase(o))), nil
		}
		if storedHash != reqHash {
			return refusalResult(t.Id, refuse(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS,
				"transfer.id: %q was already used for a transfer with a different body", t.Id)), nil
		}
		return &bankdv1.TransferResult{Id: t.Id, Code: bankdv1.ResultCode_RESULT_CODE_OK, Transfer: stored, Replayed: true}, nil
	}

	var rec *bankdv1.Transfer
	if t.PostPending || t.VoidPending {
		rec, err = a.resolvePending(tx, t)
	} else {
		rec, err = a.moveOrReserve(tx, t)
	}
	if refusal, ok := asRefusal(err); ok {
		return refusalResult(t.Id, refusal), nil
	}
	if err != nil {
		return nil, err
	}
	if err := storeTransfer(tx, rec, reqHash); err != nil {
		return nil, err
	}
	a.emitTransfer(rec)
	return a.okResult(t.Id, rec), nil
}

// driverTransfer applies one transfer a driver's command makes, in a txn of its own: a refused
// transfer may have written its debit before its credit was refused, and the driver's command
// goes on after a refusal, so nothing of it may remain.
func (a *applier) driverTransfer(tx *txn, t *bankdv1.Transfer) (*bankdv1.TransferResult, error) {
	own := tx.child()
	res, err := a.applyTransfer(own, t)
	if err != nil || res.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		own.rollback()
		return res, err
	}
	return res, own.commit()
}

func refusalResult(id string, e *Error) *bankdv1.TransferResult {
	return &bankdv1.TransferResult{Id: id, Code: e.Code, Message: e.Message}
}

// moveOrReserve applies a plain transfer (posted at once) or a pending one (reserved).
func (a *applier) moveOrReserve(tx *txn, t *bankdv1.Transfer) (*bankdv1.Transfer, error) {
	debit, credit, err := a.loadPair(tx, t.DebitAccountId, t.CreditAccountId, t.Currency)
	if err != nil {
		return nil, err
	}
	if err := a.checkAccountUse(debit, credit); err != nil {
		return nil, err
	}
	rec := copyTransferTo(a.records.new(), t)
	rec.Index, rec.CreatedAtUnixMs, rec.Owner = a.index, a.now, a.owner
	var dd, cd delta
	if t.Pending {
		rec.State = bankdv1.TransferState_TRANSFER_STATE_PENDING
		if t.TimeoutMs > 0 {
			rec.ExpiresAtUnixMs = a.now + t.TimeoutMs
		}
		dd, cd = delta{debitsPending: t.Amount}, delta{creditsPending: t.Amount}
	} else {
		rec.State = bankdv1.TransferState_TRANSFER_STATE_POSTED
		dd, cd = delta{debitsPosted: t.Amount}, delta{creditsPosted: t.Amount}
		// failpoint unbalanced-transfer: debit one less than the amount credited.
		if failpoint.Enabled(failpoint.UnbalancedTransfer) {
			dd.debitsPosted--
		}
	}
	if err := a.checkDailyLimit(tx, debit, credit, t.Amount); err != nil {
		return nil, err
	}
	if err := a.changeBalance(tx, debit, dd, rec); err != nil {
		return nil, err
	}
	if err := a.changeBalance(tx, credit, cd, rec); err != nil {
		return nil, err
	}
	if rec.ExpiresAtUnixMs > 0 {
		tx.set(expiryKey(rec.ExpiresAtUnixMs, rec.Id), nil)
	}
	return rec, nil
}

// resolvePending posts (all or part of) or voids a pending transfer.
func (a *applier) resolvePending(tx *txn, t *bankdv1.Transfer) (*bankdv1.Transfer, error) {
	p, _, found, err := loadTransfer(tx, t.PendingId)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "transfer.pending_id: no transfer %q", t.PendingId)
	}
	if o := transferOwner(p); o != a.owner && a.checksOwnership() {
		return nil, invalid("transfer.pending_id: %q is a transfer of %s; only its owner posts or voids it", p.Id, ownerPhrase(o))
	}
	if err := checkResolvable(p, a.now); err != nil {
		return nil, err
	}
	if t.DebitAccountId != "" && t.DebitAccountId != p.DebitAccountId {
		return nil, invalid("transfer.debit_account_id: pending transfer %q debits %q", p.Id, p.DebitAccountId)
	}
	if t.CreditAccountId != "" && t.CreditAccountId != p.CreditAccountId {
		return nil, invalid("transfer.credit_account_id: pending transfer %q credits %q", p.Id, p.CreditAccountId)
	}
	if t.Currency != "" && t.Currency != p.Currency {
		return nil, invalid("transfer.currency: pending transfer %q is in %s", p.Id, p.Currency)
	}
	amount := t.Amount
	if amount == 0 {
		amount = p.Amount
	}
	if amount > p.Amount {
		return nil, invalid("transfer.amount: %d exceeds the pending amount %d", amount, p.Amount)
	}
	if t.VoidPending && amount != p.Amount {
		return nil, invalid("transfer.amount: a void releases the whole pending amount %d; send 0", p.Amount)
	}

	debit, credit, err := a.loadPair(tx, p.DebitAccountId, p.CreditAccountId, p.Currency)
	if err != nil {
		return nil, err
	}
	if err := a.checkAccountUse(debit, credit); err != nil {
		return nil, err
	}
	rec := copyTransferTo(a.records.new(), t)
	rec.DebitAccountId, rec.CreditAccountId, rec.Currency = p.DebitAccountId, p.CreditAccountId, p.Currency
	rec.Amount, rec.Index, rec.CreatedAtUnixMs, rec.Owner = amount, a.index, a.now, a.owner
	dd := delta{debitsPending: -p.Amount}
	cd := delta{creditsPending: -p.Amount}
	if t.PostPending {
		rec.State = bankdv1.TransferState_TRANSFER_STATE_POSTED
		dd.debitsPosted, cd.creditsPosted = amount, amount
		p.State, p.PostedAmount = bankdv1.TransferState_TRANSFER_STATE_PENDING_POSTED, amount
	} else {
		rec.State = bankdv1.TransferState_TRANSFER_STATE_VOID
		p.State = bankdv1.TransferState_TRANSFER_STATE_PENDING_VOIDED
	}
	if err := a.changeBalance(tx, debit, dd, rec); err != nil {
		return nil, err
	}
	if err := a.changeBalance(tx, credit, cd, rec); err != nil {
		return nil, err
	}
	if err := a.updatePending(tx, p); err != nil {
		return nil, err
	}
	a.emitTransfer(p)
	return rec, nil
}

func checkResolvable(p *bankdv1.Transfer, nowMs int64) error {
	switch p.State {
	case bankdv1.TransferState_TRANSFER_STATE_PENDING:
		if p.ExpiresAtUnixMs > 0 && nowMs >= p.ExpiresAtUnixMs {
			return refuse(bankdv1.ResultCode_RESULT_CODE_PENDING_RESOLVED, "pending transfer %q expired at %d", p.Id, p.ExpiresAtUnixMs)
		}
		return nil
	case bankdv1.TransferState_TRANSFER_STATE_PENDING_POSTED, bankdv1.TransferState_TRANSFER_STATE_PENDING_VOIDED,
		bankdv1.TransferState_TRANSFER_STATE_PENDING_EXPIRED:
		return refuse(bankdv1.ResultCode_RESULT_CODE_PENDING_RESOLVED, "pending transfer %q is already %s", p.Id, stateName(p.State))
	default:
		return invalid("transfer.pending_id: %q is not a pending transfer", p.Id)
	}
}

// updatePending rewrites a pending transfer after it was resolved, keeping its request hash,
// and drops it from the expiry index.
func (a *applier) updatePending(tx *txn, p *bankdv1.Transfer) error {
	_, hash, _, err := loadTransfer(tx, p.Id)
	if err != nil {
		return err
	}
	if p.ExpiresAtUnixMs > 0 {
		tx.delete(expiryKey(p.ExpiresAtUnixMs, p.Id))
	}
	return storeTransfer(tx, p, hash)
}

// expirePending releases up to max pending transfers whose timeout has passed in cluster time.
func (a *applier) expirePending(tx *txn, max int) error {
	iter, err := tx.batch.NewIter(&pebble.IterOptions{
		LowerBound: []byte{tagExpiry},
		UpperBound: expiryKey(a.now+1, ""),
	})
	if err != nil {
		return fmt.Errorf("iterate expiries: %w", err)
	}
	var ids []string
	for ok := iter.First(); ok && len(ids) < max; ok = iter.Next() {
		_, id, err := parseExpiryKey(iter.Key())
		if err != nil {
			iter.Close()
			return err
		}
		ids = append(ids, id)
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("iterate expiries: %w", err)
	}
	for _, id := range ids {
		p, _, found, err := loadTransfer(tx, id)
		if err != nil {
			return err
		}
		if !found || p.State != bankdv1.TransferState_TRANSFER_STATE_PENDING {
			return fmt.Errorf("expiry index names %q, which is not a pending transfer", id)
		}
		debit, credit, err := a.loadPair(tx, p.DebitAccountId, p.CreditAccountId, p.Currency)
		if err != nil {
			return fmt.Errorf("expire %q: %w", id, err)
		}
		p.State = bankdv1.TransferState_TRANSFER_STATE_PENDING_EXPIRED
		if err := a.changeBalance(tx, debit, delta{debitsPending: -p.Amount}, p); err != nil {
			return fmt.Errorf("expire %q: %w", id, err)
		}
		if err := a.changeBalance(tx, credit, delta{creditsPending: -p.Amount}, p); err != nil {
			return fmt.Errorf("expire %q: %w", id, err)
		}
		if err := a.updatePending(tx, p); err != nil {
			return err
		}
		a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_PendingExpired{PendingExpired: p}})
	}
	return nil
}

// checkAccountUse refuses a transfer through an account this command's owner may not use: a
// client moves money only between client accounts; a driver between its own and client ones.
func (a *applier) checkAccountUse(debit, credit *bankdv1.Account) error {
	if !a.checksOwnership() {
		return nil
	}
	// The one crossing: a final channel funding moves coins from the chain driver's hot wallet
	// into the Lightning driver's ln:<node> (finalizeChannel).
	crossing := a.crossBooks && a.owner == bankdv1.Owner_OWNER_CHAIN && accountOwner(debit) == bankdv1.Owner_OWNER_LIGHTNING
	if o := accountOwner(debit); !mayUseAccount(a.owner, o) && !crossing {
		return invalid("transfer.debit_account_id: %q is an account of %s; %s cannot move money out of it", debit.Id, ownerPhrase(o), ownerPhrase(a.owner))
	}
	if o := accountOwner(credit); !mayUseAccount(a.owner, o) {
		return invalid("transfer.credit_account_id: %q is an account of %s; %s cannot move money into it", credit.Id, ownerPhrase(o), ownerPhrase(a.owner))
	}
	return nil
}

// loadPair loads both accounts of a transfer and checks that they exist and hold currency.
func (a *applier) loadPair(tx *txn, debitID, creditID, currency string) (debit, credit *bankdv1.Account, err error) {
	debit, err = loadAccount(tx, "transfer.debit_account_id", debitID, currency)
	if err != nil {
		return nil, nil, err
	}
	credit, err = loadAccount(tx, "transfer.credit_account_id", creditID, currency)
	if err != nil {
		return nil, nil, err
	}
	return debit, credit, nil
}

// loadAccount returns a copy of account id in currency, with a copy of its balance, which the
// caller may change (changeBalance updates the balance in place).
func loadAccount(tx *txn, field, id, currency string) (*bankdv1.Account, error) {
	acc, found := tx.account(id)
	if !found {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "%s: no account %q", field, id)
	}
	if acc.Currency != currency {
		return nil, invalid("transfer.currency: transfer is in %s but account %q is in %s", currency, id, acc.Currency)
	}
	return acc, nil
}

// delta is a change to an account's four running totals.
type delta struct {
	debitsPosted, creditsPosted, debitsPending, creditsPending int64
}

// creditNormal reports whether an account's balance grows with credits.
func creditNormal(k bankdv1.AccountKind) bool {
	switch k {
	case bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, bankdv1.AccountKind_ACCOUNT_KIND_INCOME:
		return true
	default:
		return false
	}
}

// changeBalance applies d to acc, refusing overflow and (for non-negative accounts) a drop of
// the available balance below zero, and writes the account and a history entry. acc must be the
// caller's copy (loadAccount), not changed after the call: it becomes the account's record. Its
// balance is a copy too, and is updated in place once the change is allowed.
func (a *applier) changeBalance(tx *txn, acc *bankdv1.Account, d delta, cause *bankdv1.Transfer) error {
	b := acc.Balance
	var next totals
	var ok1, ok2, ok3, ok4 bool
	next.debitsPosted, ok1 = addTotal(b.DebitsPosted, d.debitsPosted)
	next.creditsPosted, ok2 = addTotal(b.CreditsPosted, d.creditsPosted)
	next.debitsPending, ok3 = addTotal(b.DebitsPending, d.debitsPending)
	next.creditsPending, ok4 = addTotal(b.CreditsPending, d.creditsPending)
	if !(ok1 && ok2 && ok3 && ok4) {
		return refuse(bankdv1.ResultCode_RESULT_CODE_OVERFLOW, "account %q: a running total would leave 0..%d", acc.Id, int64(math.MaxInt64))
	}
	// Posted plus pending must fit too, so that balances derived from them cannot overflow.
	if _, ok := addTotal(next.debitsPosted, next.debitsPending); !ok {
		return refuse(bankdv1.ResultCode_RESULT_CODE_OVERFLOW, "account %q: debits would exceed %d", acc.Id, int64(math.MaxInt64))
	}
	if _, ok := addTotal(next.creditsPosted, next.creditsPending); !ok {
		return refuse(bankdv1.ResultCode_RESULT_CODE_OVERFLOW, "account %q: credits would exceed %d", acc.Id, int64(math.MaxInt64))
	}
	_, available := next.derive(acc.Kind)
	// Refused is a change that lowers available below zero. One that leaves it where it was or
	// raises it is not, even on an account below zero (a reversal took it there): resolving a
	// hold made before lowers nothing, since the held amount was already out of available.
	if acc.NonNegative && available < 0 && available < b.Available && !a.allowNegative {
		return refuse(bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS,
			"account %q: available balance %d, transfer %q needs %d", acc.Id, b.Available, cause.Id, b.Available-available)
	}
	next.setIn(acc.Kind, b)
	tx.putAccount(acc)
	v, err := appendHistory(tx.valueBuf(96), historyRecord{
		transferID: cause.Id,
		index:      a.index,
		atUnixMs:   a.now,
		change:     d,
		after:      b,
		cause:      cause.State,
	})
	if err != nil {
		return fmt.Errorf("marshal history entry: %w", err)
	}
	tx.addHistory(tx.historyKey(historyTag(a.format), acc.Id, a.index, a.nextSeq()), v)
	return nil
}

// totals are an account's four running totals, from which its balances derive.
type totals struct {
	debitsPosted, creditsPosted, debitsPending, creditsPending int64
}

// derive returns the posted and available balances of an account of kind k. Callers keep each
// side's posted+pending within int64, so neither difference can overflow.
func (t totals) derive(k bankdv1.AccountKind) (posted, available int64) {
	if creditNormal(k) {
		return t.creditsPosted - t.debitsPosted, t.creditsPosted - (t.debitsPosted + t.debitsPending)
	}
	return t.debitsPosted - t.creditsPosted, t.debitsPosted - (t.creditsPosted + t.creditsPending)
}

// setIn writes the totals and the balances derived from them into b.
func (t totals) setIn(k bankdv1.AccountKind, b *bankdv1.Balance) {
	b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending = t.debitsPosted, t.creditsPosted, t.debitsPending, t.creditsPending
	b.Posted, b.Available = t.derive(k)
}

// addTotal adds d to a running total, which must stay within 0..MaxInt64.
func addTotal(total, d int64) (int64, bool) {
	if d > 0 && total > math.MaxInt64-d {
		return 0, false
	}
	sum := total + d
	return sum, sum >= 0
}

// deriveBalance fills Posted and Available from the four totals.
func deriveBalance(k bankdv1.AccountKind, b *bankdv1.Balance) *bankdv1.Balance {
	totals{b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending}.setIn(k, b)
	return b
}

// checkDailyLimit enforces daily_debit_limit on whichever account the transfer draws down.
// Amounts count when a transfer is created (pending ones included) and are not given back by
// a void or an expiry: the limit errs on the safe side.
func (a *applier) checkDailyLimit(tx *txn, debit, credit *bankdv1.Account, amount int64) error {
	for _, acc := range []*bankdv1.Account{debit, credit} {
		drawnDown := (acc == debit) == creditNormal(acc.Kind)
		if !drawnDown || acc.DailyDebitLimit == 0 {
			continue
		}
		day := a.now / msPerDay
		usedDay, used, err := loadDaily(tx, acc.Id)
		if err != nil {
			return err
		}
		if usedDay != day {
			used = 0
		}
		if amount > acc.DailyDebitLimit-used {
			return refuse(bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED,
				"account %q: daily debit limit %d, %d used today, transfer needs %d", acc.Id, acc.DailyDebitLimit, used, amount)
		}
		v := encodeUint64(uint64(day))
		v = append(v, encodeUint64(uint64(used+amount))...)
		tx.set(dailyKey(acc.Id), v)
	}
	return nil
}

func loadDaily(tx *txn, id string) (day, used int64, err error) {
	v, found, err := tx.get(dailyKey(id))
	if err != nil || !found {
		return 0, 0, err
	}
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("corrupt daily total for %q", id)
	}
	d, _ := decodeUint64(v[:8])
	u, _ := decodeUint64(v[8:])
	return int64(d), int64(u), nil
}

// requestHash is the SHA-256 of the transfer as the client sent it, encoded into the applier's
// scratch buffer (only the hash is kept).
func (a *applier) requestHash(t *bankdv1.Transfer) ([32]byte, error) {
	b, err := appendTransfer(a.scratch[:0], t)
	if err != nil {
		return [32]byte{}, fmt.Errorf("marshal transfer: %w", err)
	}
	a.scratch = b
	return sha256.Sum256(b), nil
}

// A stored transfer is the SHA-256 of the request that created it followed by the record. The
// hash tells a retry (same body) from a reuse of the id (another body).
func storeTransfer(tx *txn, rec *bankdv1.Transfer, reqHash [32]byte) error {
	v := append(tx.valueBuf(len(reqHash)+sizeTransfer(rec)), reqHash[:]...)
	v, err := appendTransfer(v, rec)
	if err != nil {
		return fmt.Errorf("marshal transfer %q: %w", rec.Id, err)
	}
	tx.setString(tx.taggedKey(tagTransfer, rec.Id), v)
	if tx.resident != nil && tx.resident.transfers != nil {
		tx.resident.transfers.add(rec.Id)
	}
	return nil
}

func loadTransfer(tx *txn, id string) (*bankdv1.Transfer, [32]byte, bool, error) {
	if tx.resident != nil && tx.resident.transfers != nil && !tx.resident.transfers.mayContain(id) {
		return nil, [32]byte{}, false, nil // never stored
	}
	v, found, err := tx.get(transferKey(id))
	if err != nil || !found {
		return nil, [32]byte{}, false, err
	}
	t, hash, err := decodeStoredTransfer(v)
	if err != nil {
		return nil, [32]byte{}, false, fmt.Errorf("transfer %q: %w", id, err)
	}
	return t, hash, true, nil
}

func decodeStoredTransfer(v []byte) (*bankdv1.Transfer, [32]byte, error) {
	var hash [32]byte
	if len(v) < len(hash) {
		return nil, hash, fmt.Errorf("corrupt stored transfer: %d bytes", len(v))
	}
	copy(hash[:], v)
	t := &bankdv1.Transfer{}
	if err := proto.Unmarshal(v[len(hash):], t); err != nil {
		return nil, hash, fmt.Errorf("corrupt stored transfer: %w", err)
	}
	return t, hash, nil
}

func stateName(s bankdv1.TransferState) string {
	switch s {
	case bankdv1.TransferState_TRANSFER_STATE_PENDING_POSTED:
		return "posted"
	case bankdv1.TransferState_TRANSFER_STATE_PENDING_VOIDED:
		return "voided"
	case bankdv1.TransferState_TRANSFER_STATE_PENDING_EXPIRED:
		return "expired"
	default:
		return s.String()
	}
}
