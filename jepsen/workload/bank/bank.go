// Package bank is the jepsen bank workload: one asset account "reserve" funds a few
// non-negative liability customers; concurrent clients transfer money between customers (and
// to and from the reserve) under unique ids and read every balance with linearizable reads. Every
// operation is recorded in a history.Recorder; after the faults are healed, Final reads what
// the cluster ended up with, for the checkers.
//
// The workload only talks to the cluster through the public Connect API, and classifies an
// outcome as fail only when it is certain nothing was applied.
package bank

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/proccluster"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/rpc"
)

// Account ids and currency of the workload.
const (
	ReserveID = "reserve"
	Currency  = "BTC"
)

// Operation names (history.Op.F).
const (
	FTransfer = "transfer"
	FRead     = "read"
)

// Cluster is what the workload needs from the hosts.
type Cluster interface {
	Size() int
	NodeID(i int) string
	Client(i int) *proccluster.Clients
}

// Config shapes the workload. Zero fields take the defaults in brackets.
type Config struct {
	Customers      int           // customer accounts [5]
	Clients        int           // concurrent clients [5]
	InitialBalance int64         // sats each customer is funded with; small, so refusals happen [20]
	MaxAmount      int64         // largest transfer in sats [5]
	ReadShare      float64       // share of operations that read all balances [0.2]
	ReserveShare   float64       // share of transfers to or from the reserve [0.1]
	OpTimeout      time.Duration // per request [2s]
	Seed           uint64
}

func (c *Config) defaults() {
	if c.Customers == 0 {
		c.Customers = 5
	}
	if c.Clients == 0 {
		c.Clients = 5
	}
	if c.InitialBalance == 0 {
		c.InitialBalance = 20
	}
	if c.MaxAmount == 0 {
		c.MaxAmount = 5
	}
	if c.ReadShare == 0 {
		c.ReadShare = 0.2
	}
	if c.ReserveShare == 0 {
		c.ReserveShare = 0.1
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
}

// Model is the static shape of the ledger the workload builds.
type Model struct {
	Reserve   string
	Customers []string
}

// Accounts lists every account of the model.
func (m Model) Accounts() []string { return append([]string{m.Reserve}, m.Customers...) }

// TransferValue is the value of a transfer operation (and of a transfer found at the end).
type TransferValue struct {
	ID     string `json:"id"`
	From   string `json:"from"`
	To     string `json:"to"`
	Amount int64  `json:"amount"`
}

// Balance is the part of an account's balance the checkers look at.
type Balance struct {
	DebitsPosted  int64 `json:"debits_posted"`
	CreditsPosted int64 `json:"credits_posted"`
	Posted        int64 `json:"posted"`
	Available     int64 `json:"available"`
	NonNegative   bool  `json:"non_negative"`
}

// ReadValue is the value of an ok read: every account's balance, from one state.
type ReadValue map[string]Balance

// Workload drives one bank run.
type Workload struct {
	cfg     Config
	model   Model
	cluster Cluster
	hist    *history.Recorder
	// nextProcess hands out process numbers: a client continues as a new process after info.
	nextProcess atomic.Int64
}

// New builds a workload; Setup must run before Run.
func New(cfg Config, cluster Cluster, hist *history.Recorder) *Workload {
	cfg.defaults()
	m := Model{Reserve: ReserveID}
	for i := range cfg.Customers {
		m.Customers = append(m.Customers, fmt.Sprintf("c%d", i))
	}
	return &Workload{cfg: cfg, model: m, cluster: cluster, hist: hist}
}

// Model is the ledger shape, for the checkers.
func (w *Workload) Model() Model { return w.model }

// Setup creates the accounts and funds every customer from the reserve. The funding
// transfers are recorded like any other; an uncertain one is retried under the same id.
func (w *Workload) Setup(ctx context.Context) error {
	accounts := []*bankdv1.Account{{Id: w.model.Reserve, Currency: Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET}}
	for _, c := range w.model.Customers {
		accounts = append(accounts, &bankdv1.Account{Id: c, Currency: Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true})
	}
	for _, a := range accounts {
		err := w.retry(ctx, func(cl *proccluster.Clients, cctx context.Context) error {
			_, err := cl.Ledger.CreateAccount(cctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: a}))
			return err
		})
		if err != nil {
			return fmt.Errorf("create account %s: %w", a.Id, err)
		}
	}
	rng := rand.New(rand.NewPCG(w.cfg.Seed, 0))
	for _, c := range w.model.Customers {
		t := TransferValue{ID: "fund-" + c, From: w.model.Reserve, To: c, Amount: w.cfg.InitialBalance}
		var ok bool
		for attempt := 0; attempt < 20 && !ok; attempt++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			typ, err := w.transfer(int(w.nextProcess.Add(1))+1_000_000, rng.IntN(w.cluster.Size()), t)
			switch typ {
			case history.OK:
				ok = true
			case history.Fail:
				if rpc.ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_UNSPECIFIED {
					return fmt.Errorf("fund %s refused: %w", c, err)
				}
			}
			if !ok {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if !ok {
			return fmt.Errorf("fund %s: no ok after 20 attempts", c)
		}
	}
	return nil
}

// retry runs f against random nodes until it succeeds or ctx ends; for setup only.
func (w *Workload) retry(ctx context.Context, f func(*proccluster.Clients, context.Context) error) error {
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		err = f(w.cluster.Client(attempt%w.cluster.Size()), cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

// Run starts the clients and returns when ctx ends and every client has finished its last
// operation (each bounded by OpTimeout).
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for c := range w.cfg.Clients {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(c)+1))
		wg.Go(func() { w.client(ctx, c, rng) })
	}
	wg.Wait()
}

func (w *Workload) client(ctx context.Context, client int, rng *rand.Rand) {
	process := client
	seq := 0
	for ctx.Err() == nil {
		node := rng.IntN(w.cluster.Size())
		if rng.Float64() < w.cfg.ReadShare {
			w.read(process, node)
			continue
		}
		seq++
		t := TransferValue{ID: fmt.Sprintf("t%d-%d", process, seq), Amount: 1 + rng.Int64N(w.cfg.MaxAmount)}
		if rng.Float64() < w.cfg.ReserveShare {
			// Deposits and withdrawals in equal measure, so customers neither hoard money
			// (and stop being refused) nor drain the bank.
			t.From, t.To = w.model.Reserve, w.model.Customers[rng.IntN(len(w.model.Customers))]
			if rng.IntN(2) == 0 {
				t.From, t.To = t.To, t.From
			}
		} else {
			i := rng.IntN(len(w.model.Customers))
			j := (i + 1 + rng.IntN(len(w.model.Customers)-1)) % len(w.model.Customers)
			t.From, t.To = w.model.Customers[i], w.model.Customers[j]
		}
		if typ, _ := w.transfer(process, node, t); typ == history.Info {
			// The transfer may still apply later: this client goes on as a new process.
			process += w.cfg.Clients
			seq = 0
		}
	}
}

// transfer performs and records one transfer; it returns the outcome type and the error.
func (w *Workload) transfer(process, node int, t TransferValue) (history.Type, error) {
	inv := w.hist.Invoke(process, FTransfer, t, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	_, err := w.cluster.Client(node).Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: &bankdv1.Transfer{Id: t.ID, DebitAccountId: t.From, CreditAccountId: t.To, Amount: t.Amount, Currency: Currency},
	}))
	typ := ClassifyWrite(err)
	w.hist.Complete(inv, typ, t, err)
	return typ, err
}

// read performs and records one linearizable read of every balance.
func (w *Workload) read(process, node int) {
	inv := w.hist.Invoke(process, FRead, nil, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	v, err := readAll(ctx, w.cluster.Client(node))
	if err != nil {
		// A read changes nothing, so a failed one is simply fail.
		w.hist.Complete(inv, history.Fail, nil, err)
		return
	}
	w.hist.Complete(inv, history.OK, v, nil)
}

// readAll reads every account in one page, so that all balances come from one state.
func readAll(ctx context.Context, cl *proccluster.Clients) (ReadValue, error) {
	resp, err := cl.Ledger.ListAccounts(ctx, connect.NewRequest(&bankdv1.ListAccountsRequest{
		PageSize: 1000, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE,
	}))
	if err != nil {
		return nil, err
	}
	if resp.Msg.NextPageToken != "" {
		return nil, errors.New("more than 1000 accounts: a read would span several states")
	}
	v := ReadValue{}
	for _, a := range resp.Msg.Accounts {
		b := a.GetBalance()
		v[a.Id] = Balance{DebitsPosted: b.GetDebitsPosted(), CreditsPosted: b.GetCreditsPosted(),
			Posted: b.GetPosted(), Available: b.GetAvailable(), NonNegative: a.NonNegative}
	}
	return v, nil
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

// Entry is one line of an account's history at the end of the run.
type Entry struct {
	TransferID         string `json:"transfer_id"`
	Index              uint64 `json:"index"`
	DebitsPostedDelta  int64  `json:"debits_posted_delta"`
	CreditsPostedDelta int64  `json:"credits_posted_delta"`
}

// Final is what the cluster holds once faults are healed, read linearizably.
type Final struct {
	Balances ReadValue `json:"balances"`
	// Transfers maps every transfer id the history invoked to what the cluster recorded, or
	// nil when the cluster does not know it.
	Transfers map[string]*TransferValue `json:"transfers"`
	// Histories holds every account's history entries in commit order.
	Histories map[string][]Entry `json:"histories"`
}

// maxFinalAttempts bounds the retries of each final read.
const maxFinalAttempts = 30

// Final reads the balances, every invoked transfer id and every account's history.
func (w *Workload) Final(ctx context.Context, ops []history.Op) (*Final, error) {
	f := &Final{Transfers: map[string]*TransferValue{}, Histories: map[string][]Entry{}}
	var err error
	f.Balances, err = finalRead(ctx, w, readAll)
	if err != nil {
		return nil, fmt.Errorf("final balances: %w", err)
	}
	var ids []string
	for _, op := range ops {
		if t, ok := op.Value.(TransferValue); ok && op.Type == history.Invoke {
			if _, seen := f.Transfers[t.ID]; !seen {
				f.Transfers[t.ID] = nil
				ids = append(ids, t.ID)
			}
		}
	}
	// A few parallel readers: thousands of ids, each one linearizable read.
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
				t, err := finalRead(ctx, w, func(ctx context.Context, cl *proccluster.Clients) (*TransferValue, error) {
					return getTransfer(ctx, cl, ids[i])
				})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("final read of transfer %s: %w", ids[i], err)
				}
				f.Transfers[ids[i]] = t
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	for _, acc := range w.model.Accounts() {
		entries, err := finalRead(ctx, w, func(ctx context.Context, cl *proccluster.Clients) ([]Entry, error) {
			return accountHistory(ctx, cl, acc)
		})
		if err != nil {
			return nil, fmt.Errorf("final history of %s: %w", acc, err)
		}
		f.Histories[acc] = entries
	}
	return f, nil
}

// finalRead retries read against the nodes in turn until one answers.
func finalRead[T any](ctx context.Context, w *Workload, read func(context.Context, *proccluster.Clients) (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for attempt := range maxFinalAttempts {
		cctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		v, err = read(cctx, w.cluster.Client(attempt%w.cluster.Size()))
		cancel()
		if err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return v, err
}

func getTransfer(ctx context.Context, cl *proccluster.Clients, id string) (*TransferValue, error) {
	resp, err := cl.Ledger.GetTransfer(ctx, connect.NewRequest(&bankdv1.GetTransferRequest{
		Id: id, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE,
	}))
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t := resp.Msg.Transfer
	return &TransferValue{ID: t.Id, From: t.DebitAccountId, To: t.CreditAccountId, Amount: t.Amount}, nil
}

// maxHistoryPages bounds one account's history read (1000 entries a page).
const maxHistoryPages = 1000

func accountHistory(ctx context.Context, cl *proccluster.Clients, account string) ([]Entry, error) {
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
