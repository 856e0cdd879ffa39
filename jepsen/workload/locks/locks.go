// Package locks is the jepsen lock workload: a few clients contend for one lease lock (or a
// few) under short TTLs. A client that is granted the lock holds it for a while, then either
// releases it or abandons it and lets the lease run out, going on as a new holder. Every
// acquire and release is recorded; an ok acquire records the grant the state machine returned
// (holder, token, acquired_at and expires_at in cluster time), which is all the lock-exclusive
// checker needs: no lock may be granted while an earlier grant's lease is still running and it
// was not released.
//
// Holders also act under their lease, as a real lock user would: each makes a few fenced writes
// (a 1 sat transfer into a "resource" account, fenced with the lock's name and token). Some
// holders that abandon their lease come back after it ran out, like a process that was paused,
// and try one more fenced write with their old token, which bankd must refuse once someone else
// holds the lock. Final reads the resource account's history: the writes that applied, in
// commit order, for checker FencedWrites.
package locks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/jepsen/workload/pace"
)

// Name is the workload's name on the command line.
const Name = "locks"

// Operation names (history.Op.F).
const (
	FAcquire = "acquire"
	FRelease = "release"
	FWrite   = "fenced-write"
)

// Accounts of the fenced writes: every write moves 1 sat from FundsID to ResourceID.
const (
	FundsID    = "lock-funds"
	ResourceID = "lock-resource"
)

// Cluster is what the workload needs from the hosts.
type Cluster = ledger.Cluster

// Config shapes the workload. Zero fields take the defaults in brackets.
type Config struct {
	Clients int           // concurrent clients [5]
	Locks   int           // lock names contended for [1]
	TTL     time.Duration // lease of every acquire, at least 100ms [500ms]
	// Hold bounds how long a holder keeps the lock before releasing or abandoning it [300ms].
	Hold time.Duration
	// ReleaseShare is the share of grants released explicitly; the rest are abandoned [0.5].
	ReleaseShare float64
	// Writes is how many fenced writes a holder makes under its lease [2].
	Writes int
	// LateShare is the share of abandoned grants whose holder tries a fenced write after its
	// lease ran out [0.5].
	LateShare float64
	OpTimeout time.Duration // per request [2s]
	Seed      uint64
}

func (c *Config) defaults() {
	if c.Clients == 0 {
		c.Clients = 5
	}
	if c.Locks == 0 {
		c.Locks = 1
	}
	if c.TTL == 0 {
		c.TTL = 500 * time.Millisecond
	}
	if c.Hold == 0 {
		c.Hold = 300 * time.Millisecond
	}
	if c.ReleaseShare == 0 {
		c.ReleaseShare = 0.5
	}
	if c.Writes == 0 {
		c.Writes = 2
	}
	if c.LateShare == 0 {
		c.LateShare = 0.5
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
}

// AcquireValue is the value of an acquire invocation.
type AcquireValue struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	TTLMs  int64  `json:"ttl_ms"`
}

// Grant is the value of an ok acquire: the lock as the state machine granted (or extended) it.
// Times are cluster time in Unix milliseconds.
type Grant struct {
	Name       string `json:"name"`
	Holder     string `json:"holder"`
	Token      uint64 `json:"token"`
	AcquiredAt int64  `json:"acquired_at_ms"`
	ExpiresAt  int64  `json:"expires_at_ms"`
}

// ReleaseValue is the value of a release invocation.
type ReleaseValue struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	Token  uint64 `json:"token"`
}

// WriteValue is the value of a fenced write: a transfer id, and the grant it was fenced with.
type WriteValue struct {
	ID    string `json:"id"`
	Lock  string `json:"lock"`
	Token uint64 `json:"token"`
	// Late is true for a write its holder tried after abandoning the lease.
	Late bool `json:"late,omitempty"`
}

// Applied is a fenced write found in the resource account's history at the end.
type Applied struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`
}

// Final is the resource account's history: every fenced write that applied, in commit order.
type Final struct {
	Applied []Applied `json:"applied"`
}

// Workload drives one lock run.
type Workload struct {
	cfg     Config
	cluster Cluster
	hist    *history.Recorder
}

// New builds a workload.
func New(cfg Config, cluster Cluster, hist *history.Recorder) *Workload {
	cfg.defaults()
	return &Workload{cfg: cfg, cluster: cluster, hist: hist}
}

// Setup creates the accounts the fenced writes move money between.
func (w *Workload) Setup(ctx context.Context) error {
	return ledger.CreateAccounts(ctx, w.cluster, w.cfg.OpTimeout, []*bankdv1.Account{
		{Id: FundsID, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		{Id: ResourceID, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY},
	})
}

// Final reads the history of the resource account linearizably.
func (w *Workload) Final(ctx context.Context) (*Final, error) {
	entries, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) ([]ledger.Entry, error) {
		return ledger.AccountHistory(ctx, cl, ResourceID)
	})
	if err != nil {
		return nil, fmt.Errorf("final history of %s: %w", ResourceID, err)
	}
	f := &Final{}
	for _, e := range entries {
		f.Applied = append(f.Applied, Applied{ID: e.TransferID, Index: e.Index})
	}
	return f, nil
}

// LockName is the name of lock i.
func LockName(i int) string { return fmt.Sprintf("jepsen-lock-%d", i) }

// Run starts the clients and returns when ctx ends and every client has finished.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for c := range w.cfg.Clients {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(c)+1))
		wg.Go(func() { w.client(ctx, c, rng) })
	}
	wg.Wait()
}

func (w *Workload) client(ctx context.Context, client int, rng *rand.Rand) {
	process, writes := client, 0
	for ctx.Err() == nil {
		name := LockName(rng.IntN(w.cfg.Locks))
		holder := fmt.Sprintf("p%d", process)
		g, typ := w.acquire(process, rng.IntN(w.cluster.Size()), name, holder)
		switch typ {
		case history.Info:
			// The grant may still happen: go on as a new process (and holder).
			process += w.cfg.Clients
			continue
		case history.Fail:
			pace.Sleep(ctx, time.Duration(10+rng.IntN(40))*time.Millisecond)
			continue
		}
		for i := range w.cfg.Writes {
			pace.Sleep(ctx, time.Duration(rng.Int64N(int64(w.cfg.Hold)/int64(w.cfg.Writes))))
			writes++
			v := WriteValue{ID: fmt.Sprintf("w%d-%d-%d", client, writes, i), Lock: g.Name, Token: g.Token}
			if w.write(process, rng.IntN(w.cluster.Size()), v) == history.Info {
				process += w.cfg.Clients
			}
		}
		if rng.Float64() < w.cfg.ReleaseShare {
			if w.release(process, rng.IntN(w.cluster.Size()), g) == history.Info {
				process += w.cfg.Clients
			}
			continue
		}
		// Abandon the lease, like a holder that crashed or paused; acquiring again as the same
		// holder would only extend it.
		process += w.cfg.Clients
		if rng.Float64() < w.cfg.LateShare {
			// Back from a pause longer than the lease: the write must not apply once the lock
			// has been granted anew.
			pace.Sleep(ctx, w.cfg.TTL+time.Duration(rng.Int64N(int64(w.cfg.TTL))))
			writes++
			v := WriteValue{ID: fmt.Sprintf("w%d-%d-late", client, writes), Lock: g.Name, Token: g.Token, Late: true}
			if w.write(process, rng.IntN(w.cluster.Size()), v) == history.Info {
				process += w.cfg.Clients
			}
		}
	}
}

// write performs and records one fenced write.
func (w *Workload) write(process, node int, v WriteValue) history.Type {
	inv := w.hist.Invoke(process, FWrite, v, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	_, err := w.cluster.Client(node).Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: &bankdv1.Transfer{Id: v.ID, DebitAccountId: FundsID, CreditAccountId: ResourceID, Amount: 1, Currency: ledger.Currency},
		Fence:    &bankdv1.Fence{LockName: v.Lock, Token: v.Token},
	}))
	typ := ledger.ClassifyWrite(err)
	w.hist.Complete(inv, typ, v, err)
	return typ
}

func (w *Workload) acquire(process, node int, name, holder string) (Grant, history.Type) {
	inv := w.hist.Invoke(process, FAcquire, AcquireValue{Name: name, Holder: holder, TTLMs: w.cfg.TTL.Milliseconds()}, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	resp, err := w.cluster.Client(node).Lock.Acquire(ctx, connect.NewRequest(&bankdv1.AcquireLockRequest{
		Name: name, Holder: holder, TtlMs: w.cfg.TTL.Milliseconds(),
	}))
	typ := ledger.ClassifyWrite(err)
	if typ != history.OK {
		w.hist.Complete(inv, typ, nil, err)
		return Grant{}, typ
	}
	l := resp.Msg.GetLock()
	g := Grant{Name: l.GetName(), Holder: l.GetHolder(), Token: l.GetToken(), AcquiredAt: l.GetAcquiredAtUnixMs(), ExpiresAt: l.GetExpiresAtUnixMs()}
	w.hist.Complete(inv, history.OK, g, nil)
	return g, history.OK
}

func (w *Workload) release(process, node int, g Grant) history.Type {
	v := ReleaseValue{Name: g.Name, Holder: g.Holder, Token: g.Token}
	inv := w.hist.Invoke(process, FRelease, v, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	_, err := w.cluster.Client(node).Lock.Release(ctx, connect.NewRequest(&bankdv1.ReleaseLockRequest{
		Name: g.Name, Holder: g.Holder, Token: g.Token,
	}))
	typ := ledger.ClassifyWrite(err)
	w.hist.Complete(inv, typ, v, err)
	return typ
}
