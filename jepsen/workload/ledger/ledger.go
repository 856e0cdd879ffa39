// Package ledger holds the client calls that the ledger-based jepsen workloads (register,
// idempotent) share: creating accounts, retrying a read across nodes, and reading transfers,
// balances and account histories linearizably once the faults are healed.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/proccluster"
	"github.com/bankd/bankd/jepsen/workload/bank"
)

// Currency of every workload account.
const Currency = bank.Currency

// Cluster is what the workloads need from the hosts.
type Cluster = bank.Cluster

// Transfer is what the cluster recorded for a transfer id.
type Transfer struct {
	ID     string `json:"id"`
	From   string `json:"from"`
	To     string `json:"to"`
	Amount int64  `json:"amount"`
	// Index is the Raft index the transfer was applied at.
	Index uint64 `json:"index"`
}

// MaxAttempts bounds the retries of Retry.
const MaxAttempts = 30

// Retry runs f against the nodes in turn, each attempt bounded by opTimeout, until one
// succeeds, MaxAttempts fail, or ctx ends.
func Retry[T any](ctx context.Context, cluster Cluster, opTimeout time.Duration, f func(context.Context, *proccluster.Clients) (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for attempt := range MaxAttempts {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		v, err = f(cctx, cluster.Client(attempt%cluster.Size()))
		cancel()
		if err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, errors.Join(err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return v, err
}

// CreateAccounts creates accounts (idempotent by id and body), retrying each across nodes.
func CreateAccounts(ctx context.Context, cluster Cluster, opTimeout time.Duration, accounts []*bankdv1.Account) error {
	for _, a := range accounts {
		_, err := Retry(ctx, cluster, opTimeout, func(ctx context.Context, cl *proccluster.Clients) (struct{}, error) {
			_, err := cl.Ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: a}))
			return struct{}{}, err
		})
		if err != nil {
			return fmt.Errorf("create account %s: %w", a.Id, err)
		}
	}
	return nil
}

// GetTransfer reads transfer id linearizably; nil when the cluster does not know it.
func GetTransfer(ctx context.Context, cl *proccluster.Clients, id string) (*Transfer, error) {
	resp, err := cl.Ledger.GetTransfer(ctx, connect.NewRequest(&bankdv1.GetTransferRequest{
		Id: id, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE,
	}))
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return FromProto(resp.Msg.Transfer), nil
}

// FromProto keeps the fields of t the checkers compare.
func FromProto(t *bankdv1.Transfer) *Transfer {
	return &Transfer{ID: t.GetId(), From: t.GetDebitAccountId(), To: t.GetCreditAccountId(), Amount: t.GetAmount(), Index: t.GetIndex()}
}

// GetTransfers reads every id with a few parallel readers, each read retried across nodes.
// A nil value means the cluster does not know the id.
func GetTransfers(ctx context.Context, cluster Cluster, opTimeout time.Duration, ids []string) (map[string]*Transfer, error) {
	out := make(map[string]*Transfer, len(ids))
	const readers = 8
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		next     atomic.Int64
	)
	for range readers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				t, err := Retry(ctx, cluster, opTimeout, func(ctx context.Context, cl *proccluster.Clients) (*Transfer, error) {
					return GetTransfer(ctx, cl, ids[i])
				})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("final read of transfer %s: %w", ids[i], err)
				}
				out[ids[i]] = t
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// GetBalance reads one account's balance with the given consistency.
func GetBalance(ctx context.Context, cl *proccluster.Clients, account string, consistency bankdv1.ReadConsistency) (bank.Balance, error) {
	resp, err := cl.Ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: account, Consistency: consistency}))
	if err != nil {
		return bank.Balance{}, err
	}
	a := resp.Msg.Account
	b := a.GetBalance()
	return bank.Balance{DebitsPosted: b.GetDebitsPosted(), CreditsPosted: b.GetCreditsPosted(),
		Posted: b.GetPosted(), Available: b.GetAvailable(), NonNegative: a.GetNonNegative()}, nil
}

// maxHistoryPages bounds one account's history read (1000 entries a page).
const maxHistoryPages = 1000

// AccountHistory reads every history entry of account linearizably, in commit order.
func AccountHistory(ctx context.Context, cl *proccluster.Clients, account string) ([]bank.Entry, error) {
	var out []bank.Entry
	token := ""
	for range maxHistoryPages {
		resp, err := cl.Ledger.ListAccountHistory(ctx, connect.NewRequest(&bankdv1.ListAccountHistoryRequest{
			AccountId: account, PageSize: 1000, PageToken: token, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE,
		}))
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Msg.Entries {
			out = append(out, bank.Entry{TransferID: e.TransferId, Index: e.Index, DebitsPostedDelta: e.DebitsPostedDelta, CreditsPostedDelta: e.CreditsPostedDelta})
		}
		token = resp.Msg.NextPageToken
		if token == "" {
			return out, nil
		}
	}
	return nil, fmt.Errorf("history of %s longer than %d pages", account, maxHistoryPages)
}
