package fsm

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Accounts are resident: every account, definition and balance, is held decoded in memory
// (FSM.accounts), and the apply path reads accounts only from there. Pebble stays the durable
// store, with records byte for byte as before: a command that changes an account writes its
// record into the command's Pebble batch once, however many of its transfers touched it.
//
// Within a command, account writes are buffered in the txn tree like any other write
// (txn.putAccount), so a refused command or a failed linked chain leaves no trace. When a command
// commits, its accounts are marshalled into the Pebble batch and kept in an ApplyBatch-level map
// (residentState.batch) that later commands of the same batch read; once the batch is
// committed to Pebble they become the resident state. Open and Restore rebuild it from the
// store.
//
// Memory holds accounts as plain fields, not protobuf messages: the committed state in an
// accountTable (account_table.go), which has no pointers for the garbage collector to scan,
// and what the batch's commands wrote as residentAccount records until the batch commits.
// txn.account hands out copies as protobuf records, which callers may change freely.

// residentAccount is what memory holds of an account: every field its stored record has,
// without the protobuf bookkeeping (message state, size cache, unknown fields) or a separate
// Balance. Unknown fields are not kept: an account is only ever written back from a copy, and
// copies have never carried them.
type residentAccount struct {
	id, currency string
	metadata     map[string]string // shared with the records it came from; never changed
	accountFields
}

// accountFields are an account's fields that hold no pointers, kept alike by residentAccount
// and by the account table's records.
type accountFields struct {
	dailyDebitLimit int64
	createdAtUnixMs int64
	createdIndex    uint64
	// balance holds debits posted, credits posted, debits pending, credits pending, posted and
	// available, in that order, when hasBalance.
	balance     [6]int64
	kind        bankdv1.AccountKind
	owner       bankdv1.Owner
	nonNegative bool
	hasBalance  bool
}

// residentAccountOf returns what memory holds of acc.
func residentAccountOf(acc *bankdv1.Account) residentAccount {
	return residentAccount{id: acc.Id, currency: acc.Currency, metadata: acc.Metadata, accountFields: fieldsOf(acc)}
}

// fieldsOf returns acc's fields that hold no pointers; the balance's unknown fields are not
// among them.
func fieldsOf(acc *bankdv1.Account) accountFields {
	f := accountFields{
		dailyDebitLimit: acc.DailyDebitLimit,
		createdAtUnixMs: acc.CreatedAtUnixMs,
		createdIndex:    acc.CreatedIndex,
		kind:            acc.Kind,
		owner:           acc.Owner,
		nonNegative:     acc.NonNegative,
	}
	if b := acc.Balance; b != nil {
		f.hasBalance = true
		f.balance = [6]int64{b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending, b.Posted, b.Available}
	}
	return f
}

// copyTo writes the account into c and returns it: an Account whose Balance (when it has one)
// is c's own, so that the caller may change both.
func (r *residentAccount) copyTo(c *accountAndBalance) *bankdv1.Account {
	return r.accountFields.copyTo(c, r.id, r.currency, r.metadata)
}

// copyTo writes an account with these fields and the given strings and metadata into c and
// returns it; see residentAccount.copyTo.
func (f *accountFields) copyTo(c *accountAndBalance, id, currency string, metadata map[string]string) *bankdv1.Account {
	c.acc.Id, c.acc.Currency, c.acc.Metadata = id, currency, metadata
	c.acc.Kind, c.acc.NonNegative, c.acc.DailyDebitLimit = f.kind, f.nonNegative, f.dailyDebitLimit
	c.acc.CreatedAtUnixMs, c.acc.CreatedIndex, c.acc.Owner = f.createdAtUnixMs, f.createdIndex, f.owner
	if f.hasBalance {
		b := &c.bal
		b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending = f.balance[0], f.balance[1], f.balance[2], f.balance[3]
		b.Posted, b.Available = f.balance[4], f.balance[5]
		c.acc.Balance = b
	}
	return &c.acc
}

// residentState is what one ApplyBatch reads from memory: accounts, and the filter of transfer
// ids (transfer_filter.go; nil reads every id from the store).
type residentState struct {
	committed *accountTable               // FSM.accounts: the state before this batch
	batch     map[string]*residentAccount // written by the batch's earlier commands
	transfers *transferFilter
	// copies is where the account copies the batch's commands change come from (slab.go): they
	// are written back as new resident records, never kept.
	copies slab[accountAndBalance]
	// records is where the batch's resident records come from: the accounts table copies them
	// when the batch commits.
	records slab[residentAccount]
	// txns is where the batch's txns come from (a command of 8,000 transfers opens a child per
	// chain). They hold the batch, so they are the batch's, not the FSM's.
	txns slab[txn]
}

// newRecord returns a resident record of acc, which the batch's later commands read.
func (r *residentState) newRecord(acc *bankdv1.Account) *residentAccount {
	rec := r.records.new()
	*rec = residentAccountOf(acc)
	return rec
}

// account returns a copy of account id that the caller may change.
func (r *residentState) account(id string) (*bankdv1.Account, bool) {
	if acc, ok := r.batch[id]; ok {
		return acc.copyTo(r.copies.new()), true
	}
	return r.committed.copyTo(id, r.copies.new())
}

// copyAccount returns a copy of acc that shares its metadata map (never changed after an
// account is created) and its balance, which the copy must not change.
func copyAccount(acc *bankdv1.Account) *bankdv1.Account {
	return &bankdv1.Account{
		Id:              acc.Id,
		Currency:        acc.Currency,
		Kind:            acc.Kind,
		NonNegative:     acc.NonNegative,
		DailyDebitLimit: acc.DailyDebitLimit,
		Metadata:        acc.Metadata,
		Balance:         acc.Balance,
		CreatedAtUnixMs: acc.CreatedAtUnixMs,
		CreatedIndex:    acc.CreatedIndex,
		Owner:           acc.Owner,
	}
}

// accountAndBalance holds an account copy and its own balance in one allocation.
type accountAndBalance struct {
	acc bankdv1.Account
	bal bankdv1.Balance
}

// copyAccountTo writes a copy of acc into c and returns it, with a copy of its balance, so that
// the caller may change both; the metadata map is still shared. The balance's six fields are
// copied and unknown fields are not: an account is only written back through changeBalance,
// which has always written exactly those six.
func copyAccountTo(c *accountAndBalance, acc *bankdv1.Account) *bankdv1.Account {
	f := fieldsOf(acc)
	return f.copyTo(c, acc.Id, acc.Currency, acc.Metadata)
}

// copyTransferTo writes a copy of t into dst and returns dst. The copy shares t's metadata
// map, which the apply path never changes. It is proto.Clone without reflection, for the hot
// path, into a record the caller provides (applier.records).
func copyTransferTo(dst, t *bankdv1.Transfer) *bankdv1.Transfer {
	*dst = bankdv1.Transfer{
		Id:              t.Id,
		DebitAccountId:  t.DebitAccountId,
		CreditAccountId: t.CreditAccountId,
		Amount:          t.Amount,
		Currency:        t.Currency,
		Code:            t.Code,
		ExternalRef:     t.ExternalRef,
		Metadata:        t.Metadata,
		Linked:          t.Linked,
		Pending:         t.Pending,
		PostPending:     t.PostPending,
		VoidPending:     t.VoidPending,
		PendingId:       t.PendingId,
		TimeoutMs:       t.TimeoutMs,
		Index:           t.Index,
		CreatedAtUnixMs: t.CreatedAtUnixMs,
		State:           t.State,
		PostedAmount:    t.PostedAmount,
		ExpiresAtUnixMs: t.ExpiresAtUnixMs,
		Owner:           t.Owner,
	}
	return dst
}

// loadResidentAccounts reads every account of the store into memory.
func loadResidentAccounts(r pebble.Reader) (*accountTable, error) {
	out := newAccountTable()
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagAccount}, UpperBound: []byte{tagAccount + 1}})
	if err != nil {
		return nil, fmt.Errorf("iterate accounts: %w", err)
	}
	acc := &bankdv1.Account{}
	for ok := it.First(); ok; ok = it.Next() {
		acc.Reset()
		if err := proto.Unmarshal(it.Value(), acc); err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("corrupt account record at %q: %w", it.Key(), err)
		}
		if string(accountKey(acc.Id)) != string(it.Key()) {
			_ = it.Close()
			return nil, fmt.Errorf("account record at %q holds account %q", it.Key(), acc.Id)
		}
		r := residentAccountOf(acc)
		out.put(&r) // copied into the table: no record per account to collect afterwards
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("iterate accounts: %w", err)
	}
	return out, nil
}
