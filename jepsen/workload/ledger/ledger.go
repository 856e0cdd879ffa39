// Package ledger holds what the ledger-based jepsen workloads (bank, register, idempotent,
// stream) share: the cluster they talk to, creating accounts, classifying a write's outcome,
// retrying a read across nodes, and reading transfers, balances and account histories
// linearizably once the faults are healed.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/rpc"
)

// Currency of every workload account.
const Currency = "BTC"

// Cluster is what the workloads need from the hosts.
type Cluster interface {
	Size() int
	NodeID(i int) string
	Client(i int) *apiclient.Clients
}

// Balance is the part of an account's balance the checkers look at.
type Balance struct {
	DebitsPosted  int64 `json:"debits_posted"`
	CreditsPosted int64 `json:"credits_posted"`
	Posted        int64 `json:"posted"`
	Available     int64 `json:"available"`
	NonNegative   bool  `json:"non_negative"`
}

// Entry is one line of an account's history at the end of the run.
type Entry struct {
	TransferID         string `json:"transfer_id"`
	Index              uint64 `json:"index"`
	DebitsPostedDelta  int64  `json:"debits_posted_delta"`
	CreditsPostedDelta int64  `json:"credits_posted_delta"`
}

// ClassifyWrite maps the error of a write to its history type: OK for nil; Fail only when
// the write certainly did not apply (a refusal with a result code, "not applied", or a
// connection that was never made); Info otherwise.
func ClassifyWrite(err error) history.Type {
	if err == nil {
		return history.OK
	}
	if rpc.ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_UNSPECIFIED {
		return history.Fail
	}
	// bankd says "not applied" only when nothing was proposed (no leader, or a forwarded call
	// reached a node that is no longer leader); "outcome unknown" is the opposite promise.
	if msg := err.Error(); connect.CodeOf(err) == connect.CodeUnavailable &&
		strings.Contains(msg, "not applied") && !strings.Contains(msg, "outcome unknown") {
		return history.Fail
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return history.Fail
	}
	return history.Info
}

// Counts summarises a history for progress lines and reports.
type Counts struct {
	Invoked, OK, Fail, Info int
}

// Count tallies the client completions of ops.
func Count(ops []history.Op) Counts {
	var c Counts
	for _, op := range ops {
		if op.Process == history.NemesisProcess {
			continue
		}
		switch op.Type {
		case history.Invoke:
			c.Invoked++
		case history.OK:
			c.OK++
		case history.Fail:
			c.Fail++
		case history.Info:
			c.Info++
		}
	}
	return c
}

// SortedIDs returns the keys of m in order, for deterministic reports.
func SortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

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
func Retry[T any](ctx context.Context, cluster Cluster, opTimeout time.Duration, f func(context.Context, *apiclient.Clients) (T, error)) (T, error) {
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
		_, err := Retry(ctx, cluster, opTimeout, func(ctx context.Context, cl *apiclient.Clients) (struct{}, error) {
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
func GetTransfer(ctx context.Context, cl *apiclient.Clients, id string) (*Transfer, error) {
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
				t, err := Retry(ctx, cluster, opTimeout, func(ctx context.Context, cl *apiclient.Clients) (*Transfer, error) {
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
func GetBalance(ctx context.Context, cl *apiclient.Clients, account string, consistency bankdv1.ReadConsistency) (Balance, error) {
	resp, err := cl.Ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: account, Consistency: consistency}))
	if err != nil {
		return Balance{}, err
	}
	a := resp.Msg.Account
	b := a.GetBalance()
	return Balance{DebitsPosted: b.GetDebitsPosted(), CreditsPosted: b.GetCreditsPosted(),
		Posted: b.GetPosted(), Available: b.GetAvailable(), NonNegative: a.GetNonNegative()}, nil
}

// maxHistoryPages bounds one account's history read (1000 entries a page).
const maxHistoryPages = 1000

// AccountHistory reads every history entry of account linearizably, in commit order.
func AccountHistory(ctx context.Context, cl *apiclient.Clients, account string) ([]Entry, error) {
	var out []Entry
	token := ""
	for range maxHistoryPages {
		resp, err := cl.Ledger.ListAccountHistory(ctx, connect.NewRequest(&bankdv1.ListAccountHistoryRequest{
			AccountId: account, PageSize: 1000, PageToken: token, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE,
		}))
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Msg.Entries {
			out = append(out, Entry{TransferID: e.TransferId, Index: e.Index, DebitsPostedDelta: e.DebitsPostedDelta, CreditsPostedDelta: e.CreditsPostedDelta})
		}
		token = resp.Msg.NextPageToken
		if token == "" {
			return out, nil
		}
	}
	return nil, fmt.Errorf("history of %s longer than %d pages", account, maxHistoryPages)
}

// maxConsistentReads bounds the attempts of ConsistentRead.
const maxConsistentReads = 5

// ConsistentRead reads a final state made of several reads that cannot be taken at one Raft
// index (balances, transfers, histories). A write whose outcome was unknown can still apply
// after the faults are healed — a forwarded request held in a TCP retransmit queue during a
// partition reaches the leader when it heals, even after its client gave up — and the reads
// would then mix two states. So the cheap reads of the totals (outer) are made before and
// after the others (inner); totals only grow with every applied transfer, so equal outer reads
// mean nothing applied in between. It tries again, up to maxConsistentReads times, otherwise.
func ConsistentRead[O, I any](ctx context.Context, outer func(context.Context) (O, error), inner func(context.Context) (I, error)) (O, I, error) {
	var (
		before, after O
		in            I
		err           error
	)
	for range maxConsistentReads {
		if before, err = outer(ctx); err != nil {
			return before, in, err
		}
		if in, err = inner(ctx); err != nil {
			return before, in, err
		}
		if after, err = outer(ctx); err != nil {
			return before, in, err
		}
		if reflect.DeepEqual(before, after) {
			return after, in, nil
		}
	}
	return after, in, fmt.Errorf("the state kept changing during %d attempts at the final reads", maxConsistentReads)
}
