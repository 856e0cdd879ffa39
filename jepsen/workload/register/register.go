// Package register is the jepsen register workload: a few counters ("keys") built on the
// ledger, checked for linearizability. Key K is a pair of accounts, K-src (asset) and K-dst
// (liability); add(v) is a transfer of v from K-src to K-dst under a unique id, and read is a
// linearizable GetAccount of K-dst, whose posted balance is the sum of the adds applied so far.
// Some reads are stale (any node, from its own state). Stale reads promise no freshness, but
// each client process sends the highest applied index it has read so far (ReadMeta's
// applied_index of any ok read) as the Bankd-Min-Index header, so a process must never see the
// state go back: the linearizability checker leaves stale reads out, the monotonic-reads
// checker judges them with the rest.
//
// After the faults are healed, Final resolves the adds whose outcome was unknown (an add whose
// id does not exist at the end never applied) and then reads every key once more, recorded in
// the history like any read, so the checker sees those reads as the last operations.
package register

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/rpc"
)

// Operation names (history.Op.F).
const (
	FAdd       = "add"
	FRead      = "read"
	FReadStale = "read-stale"
)

// FinalProcess is the first process number of the final reads (one per key).
const FinalProcess = 1 << 20

// Config shapes the workload. Zero fields take the defaults in brackets.
type Config struct {
	Keys       int           // registers [3]
	Clients    int           // concurrent clients [5]
	MaxAdd     int64         // adds are 1..MaxAdd, varied so that reads tell subsets apart [100]
	ReadShare  float64       // share of operations that read [0.5]
	StaleShare float64       // share of reads that are stale (Bankd-Min-Index, monotonic) [0.1]
	OpTimeout  time.Duration // per request [2s]
	Seed       uint64
}

func (c *Config) defaults() {
	if c.Keys == 0 {
		c.Keys = 3
	}
	if c.Clients == 0 {
		c.Clients = 5
	}
	if c.MaxAdd == 0 {
		c.MaxAdd = 100
	}
	if c.ReadShare == 0 {
		c.ReadShare = 0.5
	}
	if c.StaleShare == 0 {
		c.StaleShare = 0.1
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
}

// AddValue is the value of an add (invocation and completion).
type AddValue struct {
	Key    string `json:"key"`
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
}

// Read consistencies (ReadValue.Consistency).
const (
	Linearizable = "linearizable"
	Stale        = "stale"
)

// ReadValue is the value of a read: the key, its consistency and, for a stale read, the
// Bankd-Min-Index sent; on ok the register's value and the state it was read from.
type ReadValue struct {
	Key         string `json:"key"`
	Consistency string `json:"consistency"`
	// MinIndex is the Bankd-Min-Index header a stale read sent (0: none).
	MinIndex uint64 `json:"min_index,omitempty"`
	Value    int64  `json:"value"`
	// AppliedIndex and ServedBy describe the state the read was served from (ok reads only).
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	ServedBy     string `json:"served_by,omitempty"`
}

// Key names register i.
func Key(i int) string { return fmt.Sprintf("k%d", i) }

// Src and Dst are the accounts of key k.
func Src(k string) string { return k + "-src" }
func Dst(k string) string { return k + "-dst" }

// Workload drives one register run.
type Workload struct {
	cfg     Config
	keys    []string
	cluster ledger.Cluster
	hist    *history.Recorder
}

// New builds a workload; Setup must run before Run.
func New(cfg Config, cluster ledger.Cluster, hist *history.Recorder) *Workload {
	cfg.defaults()
	w := &Workload{cfg: cfg, cluster: cluster, hist: hist}
	for i := range cfg.Keys {
		w.keys = append(w.keys, Key(i))
	}
	return w
}

// Keys lists the registers.
func (w *Workload) Keys() []string { return w.keys }

// Setup creates both accounts of every key; registers start at 0.
func (w *Workload) Setup(ctx context.Context) error {
	var accounts []*bankdv1.Account
	for _, k := range w.keys {
		accounts = append(accounts,
			&bankdv1.Account{Id: Src(k), Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
			&bankdv1.Account{Id: Dst(k), Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY})
	}
	return ledger.CreateAccounts(ctx, w.cluster, w.cfg.OpTimeout, accounts)
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
	process, seq := client, 0
	// seen is the highest applied index this process has read: its stale reads send it as
	// Bankd-Min-Index.
	var seen uint64
	for ctx.Err() == nil {
		node := rng.IntN(w.cluster.Size())
		key := w.keys[rng.IntN(len(w.keys))]
		if rng.Float64() < w.cfg.ReadShare {
			f, minIndex := FRead, uint64(0)
			if rng.Float64() < w.cfg.StaleShare {
				f, minIndex = FReadStale, seen
			}
			if v, ok := w.read(process, node, key, f, minIndex); ok {
				seen = max(seen, v.AppliedIndex)
			}
			continue
		}
		seq++
		a := AddValue{Key: key, ID: fmt.Sprintf("r%d-%d", process, seq), Amount: 1 + rng.Int64N(w.cfg.MaxAdd)}
		if w.add(process, node, a) == history.Info {
			// The add may still apply later: this client goes on as a new process, a new
			// session that has read nothing yet.
			process += w.cfg.Clients
			seq, seen = 0, 0
		}
	}
}

func (w *Workload) add(process, node int, a AddValue) history.Type {
	inv := w.hist.Invoke(process, FAdd, a, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	_, err := w.cluster.Client(node).Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: &bankdv1.Transfer{Id: a.ID, DebitAccountId: Src(a.Key), CreditAccountId: Dst(a.Key), Amount: a.Amount, Currency: ledger.Currency},
	}))
	typ := ledger.ClassifyWrite(err)
	w.hist.Complete(inv, typ, a, err)
	return typ
}

// read performs and records one read and reports whether it was ok; f is FRead
// (linearizable) or FReadStale, which sends minIndex (when not 0) as Bankd-Min-Index.
func (w *Workload) read(process, node int, key, f string, minIndex uint64) (ReadValue, bool) {
	req := newRead(key, f, minIndex)
	inv := w.hist.Invoke(process, f, req, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	v, err := readKey(ctx, w.cluster.Client(node), req)
	if err != nil {
		// A read changes nothing: a failed one (a node behind minIndex answers Unavailable) is
		// simply fail.
		w.hist.Complete(inv, history.Fail, req, err)
		return ReadValue{}, false
	}
	w.hist.Complete(inv, history.OK, v, nil)
	return v, true
}

// newRead is the invocation value of a read of key; minIndex counts for stale reads only.
func newRead(key, f string, minIndex uint64) ReadValue {
	if f == FReadStale {
		return ReadValue{Key: key, Consistency: Stale, MinIndex: minIndex}
	}
	return ReadValue{Key: key, Consistency: Linearizable}
}

// readKey performs the read r describes and returns r completed with what it read.
func readKey(ctx context.Context, cl *apiclient.Clients, r ReadValue) (ReadValue, error) {
	consistency := bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE
	if r.Consistency == Stale {
		consistency = bankdv1.ReadConsistency_READ_CONSISTENCY_STALE
	}
	req := connect.NewRequest(&bankdv1.GetAccountRequest{Id: Dst(r.Key), Consistency: consistency})
	if r.MinIndex > 0 {
		req.Header().Set(rpc.MinIndexHeader, strconv.FormatUint(r.MinIndex, 10))
	}
	resp, err := cl.Ledger.GetAccount(ctx, req)
	if err != nil {
		return ReadValue{}, err
	}
	r.Value = resp.Msg.Account.GetBalance().GetPosted()
	r.AppliedIndex, r.ServedBy = resp.Msg.Meta.GetAppliedIndex(), resp.Msg.Meta.GetServedBy()
	return r, nil
}

// Final is what the checker needs from the healed cluster besides the history.
type Final struct {
	// Transfers maps the id of every add that did not end ok to whether it exists at the end.
	Transfers map[string]bool `json:"transfers"`
	// ResolvedAt is when Transfers had been read (time since the run started): an add found
	// there applied before it.
	ResolvedAt time.Duration `json:"resolved_at_ns"`
	// Values holds each key's final linearizable read (also recorded in the history), made
	// after ResolvedAt.
	Values map[string]int64 `json:"values"`
}

// Final resolves the adds of ops whose outcome was not ok (an add whose id does not exist
// once the cluster is healed never applies), then reads every key linearizably, recording
// each attempt in the history.
func (w *Workload) Final(ctx context.Context, ops []history.Op) (*Final, error) {
	f := &Final{Values: map[string]int64{}, Transfers: map[string]bool{}}
	pairs, err := history.Pairs(ops)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range pairs {
		if a, ok := p.Invoke.Value.(AddValue); ok && p.Outcome() != history.OK {
			ids = append(ids, a.ID)
		}
	}
	found, err := ledger.GetTransfers(ctx, w.cluster, w.cfg.OpTimeout, ids)
	if err != nil {
		return nil, err
	}
	for id, t := range found {
		f.Transfers[id] = t != nil
	}
	f.ResolvedAt = w.hist.Since()
	for i, key := range w.keys {
		v, err := w.finalRead(ctx, FinalProcess+i*ledger.MaxAttempts, key)
		if err != nil {
			return nil, fmt.Errorf("final read of %s: %w", key, err)
		}
		f.Values[key] = v.Value
	}
	return f, nil
}

// finalRead reads key against the nodes in turn until one answers, recording every attempt
// as a read of its own process (first, first+1, ...).
func (w *Workload) finalRead(ctx context.Context, first int, key string) (ReadValue, error) {
	var err error
	for attempt := range ledger.MaxAttempts {
		node := attempt % w.cluster.Size()
		req := newRead(key, FRead, 0)
		inv := w.hist.Invoke(first+attempt, FRead, req, w.cluster.NodeID(node))
		cctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		var v ReadValue
		v, err = readKey(cctx, w.cluster.Client(node), req)
		cancel()
		if err == nil {
			w.hist.Complete(inv, history.OK, v, nil)
			return v, nil
		}
		w.hist.Complete(inv, history.Fail, req, err)
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return ReadValue{}, err
}
