// Package idempotent is the jepsen idempotent-retry workload: every transfer moves the same
// amount from one asset account to one liability account under an id of its own, and its
// client resends the same body, to random nodes, until it gets a definite answer (ok, or a
// refusal with a result code) — through timeouts, "outcome unknown" and failovers. Clients
// also resend ids that were already acknowledged, later and elsewhere, so that replays cross
// leader changes. Every attempt is one operation in the history.
//
// bankd keys idempotency on the transfer id: the first attempt that applies answers
// replayed=false, every later one replayed=true with the same transfer (and Raft index). At
// the end each id must exist at most once, and the accounts must hold exactly
// (number of existing ids) × amount.
package idempotent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
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

// Account ids and the operation name (history.Op.F).
const (
	SrcID     = "idem-src"
	DstID     = "idem-dst"
	FTransfer = "transfer"
)

// Config shapes the workload. Zero fields take the defaults in brackets.
type Config struct {
	Clients int   // concurrent clients [5]
	Amount  int64 // of every transfer [7]
	// ReplayShare is the share of operations that resend an id already acknowledged [0.3].
	ReplayShare float64
	// Backoff is the longest pause between two attempts of one id [200ms].
	Backoff   time.Duration
	OpTimeout time.Duration // per request [2s]
	Seed      uint64
}

func (c *Config) defaults() {
	if c.Clients == 0 {
		c.Clients = 5
	}
	if c.Amount == 0 {
		c.Amount = 7
	}
	if c.ReplayShare == 0 {
		c.ReplayShare = 0.3
	}
	if c.Backoff == 0 {
		c.Backoff = 200 * time.Millisecond
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
}

// Value is the value of a transfer operation. An invocation carries ID, Amount and Attempt
// (1 for the first send of the id, 0 for a resend of an id already acknowledged); an ok completion adds the answer's Index and Replayed.
type Value struct {
	ID       string `json:"id"`
	Amount   int64  `json:"amount"`
	Attempt  int    `json:"attempt"`
	Index    uint64 `json:"index,omitempty"`
	Replayed bool   `json:"replayed,omitempty"`
	// Code is the result code of a refusal (fail completions only).
	Code string `json:"code,omitempty"`
}

// Workload drives one idempotent run.
type Workload struct {
	cfg         Config
	cluster     ledger.Cluster
	hist        *history.Recorder
	nextProcess atomic.Int64

	mu    sync.Mutex
	acked []string // ids acknowledged ok, for replays
}

// New builds a workload; Setup must run before Run.
func New(cfg Config, cluster ledger.Cluster, hist *history.Recorder) *Workload {
	cfg.defaults()
	return &Workload{cfg: cfg, cluster: cluster, hist: hist}
}

// Amount is the amount of every transfer.
func (w *Workload) Amount() int64 { return w.cfg.Amount }

// Setup creates the two accounts.
func (w *Workload) Setup(ctx context.Context) error {
	return ledger.CreateAccounts(ctx, w.cluster, w.cfg.OpTimeout, []*bankdv1.Account{
		{Id: SrcID, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		{Id: DstID, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY},
	})
}

// Run starts the clients and returns when ctx ends and every client has finished its last
// attempt (each bounded by OpTimeout).
func (w *Workload) Run(ctx context.Context) {
	w.nextProcess.Store(int64(w.cfg.Clients))
	var wg sync.WaitGroup
	for c := range w.cfg.Clients {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(c)+1))
		wg.Go(func() { w.client(ctx, c, rng) })
	}
	wg.Wait()
}

func (w *Workload) client(ctx context.Context, client int, rng *rand.Rand) {
	process, seq := client, 0
	for ctx.Err() == nil {
		if id, ok := w.pickAcked(rng); ok && rng.Float64() < w.cfg.ReplayShare {
			// One resend of an acknowledged id; it can only be ok (replayed) or unknown.
			if typ, _ := w.send(process, rng.IntN(w.cluster.Size()), id, 0); typ == history.Info {
				process = int(w.nextProcess.Add(1)) - 1
			}
			continue
		}
		seq++
		id := fmt.Sprintf("i%d-%d", client, seq)
		for attempt := 1; ; attempt++ {
			typ, definite := w.send(process, rng.IntN(w.cluster.Size()), id, attempt)
			if typ == history.Info {
				// The attempt may still apply later: go on as a new process.
				process = int(w.nextProcess.Add(1)) - 1
			}
			if definite || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(1 + rng.Int64N(int64(w.cfg.Backoff)))):
			}
		}
	}
}

func (w *Workload) pickAcked(rng *rand.Rand) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acked) == 0 {
		return "", false
	}
	return w.acked[rng.IntN(len(w.acked))], true
}

// send performs and records one attempt of transfer id. definite is true for an ok and for a
// refusal with a result code: the answers after which resending the id changes nothing.
func (w *Workload) send(process, node int, id string, attempt int) (typ history.Type, definite bool) {
	v := Value{ID: id, Amount: w.cfg.Amount, Attempt: attempt}
	inv := w.hist.Invoke(process, FTransfer, v, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	resp, err := w.cluster.Client(node).Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: &bankdv1.Transfer{Id: id, DebitAccountId: SrcID, CreditAccountId: DstID, Amount: w.cfg.Amount, Currency: ledger.Currency},
	}))
	typ = ledger.ClassifyWrite(err)
	switch {
	case typ == history.OK:
		v.Index, v.Replayed = resp.Msg.Transfer.GetIndex(), resp.Msg.Replayed
		if attempt > 0 {
			w.mu.Lock()
			w.acked = append(w.acked, id)
			w.mu.Unlock()
		}
		definite = true
	case rpc.ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_UNSPECIFIED:
		v.Code = rpc.ResultCodeOf(err).String()
		definite = true
	}
	w.hist.Complete(inv, typ, v, err)
	return typ, definite
}

// Final is what the healed cluster holds.
type Final struct {
	// Transfers maps every invoked id to what the cluster recorded, nil when it does not know it.
	Transfers map[string]*ledger.Transfer `json:"transfers"`
	Balances  map[string]ledger.Balance   `json:"balances"`
	// Histories holds both accounts' history entries in commit order.
	Histories map[string][]ledger.Entry `json:"histories"`
}

// Accounts lists the workload's accounts.
func Accounts() []string { return []string{SrcID, DstID} }

// Final reads, linearizably, every invoked id, both balances and both account histories.
func (w *Workload) Final(ctx context.Context, ops []history.Op) (*Final, error) {
	f := &Final{Balances: map[string]ledger.Balance{}, Histories: map[string][]ledger.Entry{}}
	seen := map[string]bool{}
	var ids []string
	for _, op := range ops {
		if v, ok := op.Value.(Value); ok && op.Type == history.Invoke && !seen[v.ID] {
			seen[v.ID] = true
			ids = append(ids, v.ID)
		}
	}
	slices.Sort(ids)
	balances := func(ctx context.Context) (map[string]ledger.Balance, error) {
		out := map[string]ledger.Balance{}
		for _, acc := range Accounts() {
			b, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (ledger.Balance, error) {
				return ledger.GetBalance(ctx, cl, acc, bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE)
			})
			if err != nil {
				return nil, fmt.Errorf("final balance of %s: %w", acc, err)
			}
			out[acc] = b
		}
		return out, nil
	}
	rest := func(ctx context.Context) (*Final, error) {
		r := &Final{Histories: map[string][]ledger.Entry{}}
		var err error
		if r.Transfers, err = ledger.GetTransfers(ctx, w.cluster, w.cfg.OpTimeout, ids); err != nil {
			return nil, err
		}
		for _, acc := range Accounts() {
			h, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) ([]ledger.Entry, error) {
				return ledger.AccountHistory(ctx, cl, acc)
			})
			if err != nil {
				return nil, fmt.Errorf("final history of %s: %w", acc, err)
			}
			r.Histories[acc] = h
		}
		return r, nil
	}
	b, r, err := ledger.ConsistentRead(ctx, balances, rest)
	if err != nil {
		return nil, fmt.Errorf("final state: %w", err)
	}
	f.Transfers, f.Histories, f.Balances = r.Transfers, r.Histories, b
	return f, nil
}
