// Package stream is the jepsen event-stream workload. Writers make transfers from a reserve to
// a few customers under unique ids while watchers follow WatchEvents: each watcher opens a
// stream on a random node, reads for a while (or until the stream breaks), and resumes on
// another node from the last index it received + 1, as a real consumer of the event log would.
// A watch session is one history operation whose value is everything the session received.
//
// After the faults are healed, Final writes a marker transfer and reads the whole event log up
// to the marker's index from one node: the log every session must agree with (checker
// StreamOrder).
package stream

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
)

// Name is the workload's name on the command line.
const Name = "stream"

// Operation names (history.Op.F).
const (
	FTransfer = "transfer"
	FWatch    = "watch"
)

// ReserveID funds every transfer; it is an asset account, so it never runs dry.
const ReserveID = "reserve"

// MarkerID is the transfer Final writes after the run; its index ends the final log.
const MarkerID = "stream-end-marker"

// Config shapes the workload. Zero fields take the defaults in brackets.
type Config struct {
	Customers  int           // liability accounts transfers credit [3]
	Writers    int           // concurrent writers [3]
	Watchers   int           // concurrent watchers [3]
	MaxSession time.Duration // a watcher reconnects elsewhere after at most this long [3s]
	OpTimeout  time.Duration // per write [2s]
	Seed       uint64
}

func (c *Config) defaults() {
	if c.Customers == 0 {
		c.Customers = 3
	}
	if c.Writers == 0 {
		c.Writers = 3
	}
	if c.Watchers == 0 {
		c.Watchers = 3
	}
	if c.MaxSession == 0 {
		c.MaxSession = 3 * time.Second
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
}

// Transfer is the value of a transfer operation; Index is set on ok.
type Transfer struct {
	ID    string `json:"id"`
	To    string `json:"to"`
	Index uint64 `json:"index,omitempty"`
}

// Event is what the checker compares of one event: its index and one line per item.
type Event struct {
	Index uint64   `json:"index"`
	Items []string `json:"items"`
}

// Session is the value of a watch operation: the watcher, where it asked to start, and every
// event the session received, in the order received.
type Session struct {
	Watcher int     `json:"watcher"`
	From    uint64  `json:"from"`
	Events  []Event `json:"events"`
}

// Final is the event log read after the run, up to and including the marker.
type Final struct {
	MarkerIndex uint64  `json:"marker_index"`
	Log         []Event `json:"log"`
}

// Workload drives one stream run.
type Workload struct {
	cfg       Config
	customers []string
	cluster   ledger.Cluster
	hist      *history.Recorder
	// watcherProcess hands out process numbers to watch sessions.
	watcherProcess atomic.Int64
}

// New builds a workload; Setup must run before Run.
func New(cfg Config, cluster ledger.Cluster, hist *history.Recorder) *Workload {
	cfg.defaults()
	w := &Workload{cfg: cfg, cluster: cluster, hist: hist}
	for i := range cfg.Customers {
		w.customers = append(w.customers, fmt.Sprintf("s%d", i))
	}
	w.watcherProcess.Store(1 << 20)
	return w
}

// Setup creates the accounts.
func (w *Workload) Setup(ctx context.Context) error {
	accounts := []*bankdv1.Account{{Id: ReserveID, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET}}
	for _, c := range w.customers {
		accounts = append(accounts, &bankdv1.Account{Id: c, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY})
	}
	return ledger.CreateAccounts(ctx, w.cluster, w.cfg.OpTimeout, accounts)
}

// Run starts the writers and watchers and returns when ctx ends and all have stopped.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for c := range w.cfg.Writers {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(c)+1))
		wg.Go(func() { w.writer(ctx, c, rng) })
	}
	for c := range w.cfg.Watchers {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(c)+1000))
		wg.Go(func() { w.watcher(ctx, c, rng) })
	}
	wg.Wait()
}

func (w *Workload) writer(ctx context.Context, client int, rng *rand.Rand) {
	process, seq := client, 0
	for ctx.Err() == nil {
		seq++
		t := Transfer{ID: fmt.Sprintf("t%d-%d", process, seq), To: w.customers[rng.IntN(len(w.customers))]}
		node := rng.IntN(w.cluster.Size())
		inv := w.hist.Invoke(process, FTransfer, t, w.cluster.NodeID(node))
		index, err := w.transfer(context.Background(), w.cluster.Client(node), t)
		typ := ledger.ClassifyWrite(err)
		if typ == history.OK {
			t.Index = index
		}
		w.hist.Complete(inv, typ, t, err)
		switch typ {
		case history.Info:
			// The transfer may still apply later: this writer goes on as a new process.
			process += w.cfg.Writers
			seq = 0
		case history.Fail:
			// Most likely a node that is down: do not spin against it.
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// transfer moves 1 sat from the reserve to t.To under t.ID and returns the index it applied at.
func (w *Workload) transfer(ctx context.Context, cl *apiclient.Clients, t Transfer) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	defer cancel()
	resp, err := cl.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
		Transfer: &bankdv1.Transfer{Id: t.ID, DebitAccountId: ReserveID, CreditAccountId: t.To, Amount: 1, Currency: ledger.Currency},
	}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.GetTransfer().GetIndex(), nil
}

// watcher follows the event log from index 1 to the end of the run, one session at a time,
// each on a random node and resuming where the previous one stopped.
func (w *Workload) watcher(ctx context.Context, watcher int, rng *rand.Rand) {
	next := uint64(1)
	for ctx.Err() == nil {
		node := rng.IntN(w.cluster.Size())
		length := w.cfg.MaxSession/2 + time.Duration(rng.Int64N(int64(w.cfg.MaxSession/2)))
		s := Session{Watcher: watcher, From: next}
		inv := w.hist.Invoke(int(w.watcherProcess.Add(1)), FWatch, s, w.cluster.NodeID(node))
		sctx, cancel := context.WithTimeout(ctx, length)
		err := watch(sctx, w.cluster.Client(node), &s)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || connect.CodeOf(err) == connect.CodeDeadlineExceeded || connect.CodeOf(err) == connect.CodeCanceled {
			err = nil // the session ended as planned
		}
		// What a session received is a fact whatever ended it, so every session is ok.
		w.hist.Complete(inv, history.OK, s, err)
		if n := len(s.Events); n > 0 {
			next = s.Events[n-1].Index + 1
		}
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// watch appends what one WatchEvents stream from s.From delivers to s until the stream ends.
func watch(ctx context.Context, cl *apiclient.Clients, s *Session) error {
	stream, err := cl.Event.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: s.From}))
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
		if ev := stream.Msg().GetEvent(); ev != nil {
			s.Events = append(s.Events, Summarize(ev))
		}
	}
	return stream.Err()
}

// Summarize keeps what the checker compares of ev: its index and, per item, its kind and id.
func Summarize(ev *bankdv1.Event) Event {
	e := Event{Index: ev.GetIndex()}
	for _, it := range ev.GetItems() {
		var line string
		switch k := it.GetKind().(type) {
		case *bankdv1.EventItem_AccountCreated:
			line = "account-created " + k.AccountCreated.GetId()
		case *bankdv1.EventItem_Transfer:
			line = fmt.Sprintf("transfer %s %s", k.Transfer.GetId(), k.Transfer.GetState())
		case *bankdv1.EventItem_TransferRejected:
			line = fmt.Sprintf("transfer-rejected %s %s", k.TransferRejected.GetId(), k.TransferRejected.GetCode())
		case *bankdv1.EventItem_PendingExpired:
			line = "pending-expired " + k.PendingExpired.GetId()
		case *bankdv1.EventItem_LockAcquired:
			line = "lock-acquired " + k.LockAcquired.GetName()
		case *bankdv1.EventItem_LockRenewed:
			line = "lock-renewed " + k.LockRenewed.GetName()
		case *bankdv1.EventItem_LockReleased:
			line = "lock-released " + k.LockReleased.GetName()
		case *bankdv1.EventItem_FenceRefused:
			line = "fence-refused " + k.FenceRefused
		case *bankdv1.EventItem_WalletCreated:
			line = "wallet-created " + k.WalletCreated.GetId()
		case *bankdv1.EventItem_DepositAddressCreated:
			line = "deposit-address-created " + k.DepositAddressCreated.GetAddress()
		case *bankdv1.EventItem_BlockConnected:
			line = "block-connected " + k.BlockConnected.GetHash()
		case *bankdv1.EventItem_BlockDisconnected:
			line = "block-disconnected " + k.BlockDisconnected.GetHash()
		case *bankdv1.EventItem_ChainTx:
			line = fmt.Sprintf("chain-tx %s %s", k.ChainTx.GetTxid(), k.ChainTx.GetState())
		case *bankdv1.EventItem_Deposit:
			line = fmt.Sprintf("deposit %s:%d %s", k.Deposit.GetOutpoint().GetTxid(), k.Deposit.GetOutpoint().GetVout(), k.Deposit.GetState())
		case *bankdv1.EventItem_Rescan:
			line = fmt.Sprintf("rescan next %d", k.Rescan.GetNextHeight())
		default:
			line = fmt.Sprintf("unknown %T", k)
		}
		e.Items = append(e.Items, line)
	}
	return e
}

// finalReadTimeout bounds reading the whole log at the end.
const finalReadTimeout = 60 * time.Second

// Final writes the marker transfer (retried under its id until it is ok) and reads the event
// log from index 1 through the marker's index from one node.
func (w *Workload) Final(ctx context.Context) (*Final, error) {
	marker := Transfer{ID: MarkerID, To: w.customers[0]}
	index, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (uint64, error) {
		return w.transfer(ctx, cl, marker)
	})
	if err != nil {
		return nil, fmt.Errorf("write the end marker: %w", err)
	}
	if index == 0 {
		return nil, errors.New("the end marker was acknowledged without an index")
	}
	return ledger.Retry(ctx, w.cluster, finalReadTimeout, func(ctx context.Context, cl *apiclient.Clients) (*Final, error) {
		return readLog(ctx, cl, index)
	})
}

// readLog streams events from index 1 until the one at marker.
func readLog(ctx context.Context, cl *apiclient.Clients, marker uint64) (*Final, error) {
	stream, err := cl.Event.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: 1}))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	f := &Final{MarkerIndex: marker}
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		if ev == nil {
			continue
		}
		if ev.GetIndex() > marker {
			return nil, fmt.Errorf("the log skipped the marker's index %d (next event %d)", marker, ev.GetIndex())
		}
		f.Log = append(f.Log, Summarize(ev))
		if ev.GetIndex() == marker {
			return f, nil
		}
	}
	return nil, fmt.Errorf("stream ended before the marker at %d: %w", marker, stream.Err())
}
