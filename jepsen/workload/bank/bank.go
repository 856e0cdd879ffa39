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
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/rpc"
)

// ReserveID is the account that funds the customers.
const ReserveID = "reserve"

// Currency of every account.
const Currency = ledger.Currency

// Operation names (history.Op.F).
const (
	FTransfer = "transfer"
	FRead     = "read"
)

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

// ReadValue is the value of an ok read: every account's balance, from one state.
type ReadValue map[string]ledger.Balance

// Workload drives one bank run.
type Workload struct {
	cfg     Config
	model   Model
	cluster ledger.Cluster
	hist    *history.Recorder
	// nextProcess hands out process numbers: a client continues as a new process after info.
	nextProcess atomic.Int64
}

// New builds a workload; Setup must run before Run.
func New(cfg Config, cluster ledger.Cluster, hist *history.Recorder) *Workload {
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
	if err := ledger.CreateAccounts(ctx, w.cluster, w.cfg.OpTimeout, accounts); err != nil {
		return err
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
	typ := ledger.ClassifyWrite(err)
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
func readAll(ctx context.Context, cl *apiclient.Clients) (ReadValue, error) {
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
		v[a.Id] = ledger.Balance{DebitsPosted: b.GetDebitsPosted(), CreditsPosted: b.GetCreditsPosted(),
			Posted: b.GetPosted(), Available: b.GetAvailable(), NonNegative: a.NonNegative}
	}
	return v, nil
}

// Final is what the cluster holds once faults are healed, read linearizably.
type Final struct {
	Balances ReadValue `json:"balances"`
	// Transfers maps every transfer id the history invoked to what the cluster recorded, or
	// nil when the cluster does not know it.
	Transfers map[string]*TransferValue `json:"transfers"`
	// Histories holds every account's history entries in commit order.
	Histories map[string][]ledger.Entry `json:"histories"`
}

// Final reads the balances, every invoked transfer id and every account's history, all from
// one state (ledger.ConsistentRead).
func (w *Workload) Final(ctx context.Context, ops []history.Op) (*Final, error) {
	var ids []string
	seen := map[string]bool{}
	for _, op := range ops {
		if t, ok := op.Value.(TransferValue); ok && op.Type == history.Invoke && !seen[t.ID] {
			seen[t.ID] = true
			ids = append(ids, t.ID)
		}
	}
	balances := func(ctx context.Context) (ReadValue, error) {
		return ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, readAll)
	}
	rest := func(ctx context.Context) (*Final, error) {
		f := &Final{Transfers: map[string]*TransferValue{}, Histories: map[string][]ledger.Entry{}}
		found, err := ledger.GetTransfers(ctx, w.cluster, w.cfg.OpTimeout, ids)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if t := found[id]; t != nil {
				f.Transfers[id] = &TransferValue{ID: t.ID, From: t.From, To: t.To, Amount: t.Amount}
			} else {
				f.Transfers[id] = nil
			}
		}
		for _, acc := range w.model.Accounts() {
			entries, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) ([]ledger.Entry, error) {
				return ledger.AccountHistory(ctx, cl, acc)
			})
			if err != nil {
				return nil, fmt.Errorf("final history of %s: %w", acc, err)
			}
			f.Histories[acc] = entries
		}
		return f, nil
	}
	b, f, err := ledger.ConsistentRead(ctx, balances, rest)
	if err != nil {
		return nil, fmt.Errorf("final state: %w", err)
	}
	f.Balances = b
	return f, nil
}
