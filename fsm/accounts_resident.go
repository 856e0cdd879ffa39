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
// Resident records are never modified in place: an account that changes is replaced by a new
// record. loadAccount hands out copies, which callers may change freely.

// residentState is what one ApplyBatch reads from memory: accounts, and the filter of transfer
// ids (transfer_filter.go; nil reads every id from the store).
type residentState struct {
	committed map[string]*bankdv1.Account // FSM.accounts: the state before this batch
	batch     map[string]*bankdv1.Account // written by the batch's earlier commands
	transfers *transferFilter
}

func (r *residentState) get(id string) (*bankdv1.Account, bool) {
	if acc, ok := r.batch[id]; ok {
		return acc, true
	}
	acc, ok := r.committed[id]
	return acc, ok
}

// copyAccount returns a copy of acc that shares its metadata map (never changed after an
// account is created) and its balance, which the copy must not change.
func copyAccount(acc *bankdv1.Account) *bankdv1.Account {
	c := &bankdv1.Account{}
	copyAccountInto(c, acc)
	return c
}

func copyAccountInto(c, acc *bankdv1.Account) {
	c.Id = acc.Id
	c.Currency = acc.Currency
	c.Kind = acc.Kind
	c.NonNegative = acc.NonNegative
	c.DailyDebitLimit = acc.DailyDebitLimit
	c.Metadata = acc.Metadata
	c.Balance = acc.Balance
	c.CreatedAtUnixMs = acc.CreatedAtUnixMs
	c.CreatedIndex = acc.CreatedIndex
	c.Owner = acc.Owner
}

// accountAndBalance holds an account copy and its own balance in one allocation.
type accountAndBalance struct {
	acc bankdv1.Account
	bal bankdv1.Balance
}

// copyAccountAndBalance returns a copy of acc whose balance is a copy too, so that the caller
// may change the balance in place (changeBalance); the metadata map is still shared. The
// balance's six fields are copied and unknown fields are not: an account is only written
// back through changeBalance, which has always written exactly those six.
func copyAccountAndBalance(acc *bankdv1.Account) *bankdv1.Account {
	c := &accountAndBalance{}
	copyAccountInto(&c.acc, acc)
	if b := acc.Balance; b != nil {
		c.bal.DebitsPosted, c.bal.CreditsPosted = b.DebitsPosted, b.CreditsPosted
		c.bal.DebitsPending, c.bal.CreditsPending = b.DebitsPending, b.CreditsPending
		c.bal.Posted, c.bal.Available = b.Posted, b.Available
		c.acc.Balance = &c.bal
	}
	return &c.acc
}

// copyTransfer returns a copy of t that shares its metadata map, which the apply path never
// changes. It is proto.Clone without reflection, for the hot path.
func copyTransfer(t *bankdv1.Transfer) *bankdv1.Transfer {
	return &bankdv1.Transfer{
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
}

// loadResidentAccounts reads every account of the store into memory.
func loadResidentAccounts(r pebble.Reader) (map[string]*bankdv1.Account, error) {
	out := make(map[string]*bankdv1.Account)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagAccount}, UpperBound: []byte{tagAccount + 1}})
	if err != nil {
		return nil, fmt.Errorf("iterate accounts: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		acc := &bankdv1.Account{}
		if err := proto.Unmarshal(it.Value(), acc); err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("corrupt account record at %q: %w", it.Key(), err)
		}
		if string(accountKey(acc.Id)) != string(it.Key()) {
			_ = it.Close()
			return nil, fmt.Errorf("account record at %q holds account %q", it.Key(), acc.Id)
		}
		out[acc.Id] = acc
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("iterate accounts: %w", err)
	}
	return out, nil
}
