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
// account is created) and its balance (replaced, never changed, by changeBalance).
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
