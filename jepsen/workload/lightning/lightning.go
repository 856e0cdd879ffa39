// Package lightning is the jepsen Lightning workload. The harness runs a simulated network of
// lnd nodes (package fakelnd) as its own process on the bridge; cluster.hcl's lnd blocks point
// the cluster at its nodes, and the cluster's leader drives them over lnd's gRPC API.
//
// A few customers are funded in the ledger from a capital (EQUITY) account. Clients create
// invoices, have the outside world pay them (through the network's control endpoint, not
// bankd), pay invoices of the outside world, pay each other's invoices (settled inside the
// ledger) and read their balances, concurrently. Every id (invoice request id, payment id) is
// resent with the same body to random nodes until a definite answer, and some payments are
// resent after they were acknowledged. Every attempt is one operation in the history.
//
// At the end (faults healed) the harness waits until no payment is in flight and the cluster
// has followed every settlement the network made, then reads bankd's books and the network's
// own record; the checkers in checker/lightning.go compare the two.
package lightning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/fakelnd"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/jepsen/workload/pace"
	"github.com/bankd/bankd/rpc"
)

// Name is the workload's name; the F* constants its operations (history.Op.F).
const (
	Name     = "lightning"
	FInvoice = "invoice" // CreateInvoice for a customer
	FPayIn   = "pay-in"  // the outside world pays one of our invoices (no bankd call)
	FPayOut  = "pay-out" // PayInvoice of an outside invoice
	FPayOwn  = "pay-own" // PayInvoice of another customer's invoice: settled in the ledger
	FRead    = "read"    // every customer's balance
)

// CapitalID funds the customers.
const CapitalID = "lnj-capital"

// Cluster is what the workload needs from the hosts.
type Cluster interface {
	ledger.Cluster
	AdminClient(i int) *apiclient.Clients
}

// Network is what the workload needs from the simulated network's control endpoint.
type Network interface {
	OutsideInvoice(ctx context.Context, sat int64) (fakelnd.Invoice, error)
	Pay(ctx context.Context, paymentRequest string) error
	Record(ctx context.Context, outsideHashes []string) (fakelnd.Record, error)
	Heal(ctx context.Context) error
}

// Config shapes the workload. Zero fields take the defaults in brackets.
type Config struct {
	Clients    int    // [5]
	Seed       uint64 // of the clients' choices
	Customers  int    // [5]
	FundingSat int64  // each customer's opening balance [1,000,000]
	// MinAmount and MaxAmount bound invoices and payments [1,000, 20,000].
	MinAmount, MaxAmount int64
	OpTimeout            time.Duration // [5s]
	// WaitMs is PayInvoice's wait_ms [1000].
	WaitMs int64
	// ResendShare of payment operations resend an acknowledged payment id [0.1].
	ResendShare float64
	// Pause is the most a client sleeps between operations [100ms]; Backoff between attempts
	// of one id [300ms].
	Pause, Backoff time.Duration
	// SettleTimeout bounds the wait at the end for payments and settlements [90s].
	SettleTimeout time.Duration
}

func (c *Config) defaults() {
	if c.Clients == 0 {
		c.Clients = 5
	}
	if c.Customers == 0 {
		c.Customers = 5
	}
	if c.FundingSat == 0 {
		c.FundingSat = 1_000_000
	}
	if c.MinAmount == 0 {
		c.MinAmount = 1_000
	}
	if c.MaxAmount == 0 {
		c.MaxAmount = 20_000
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 5 * time.Second
	}
	if c.WaitMs == 0 {
		c.WaitMs = 1000
	}
	if c.ResendShare == 0 {
		c.ResendShare = 0.1
	}
	if c.Pause == 0 {
		c.Pause = 100 * time.Millisecond
	}
	if c.Backoff == 0 {
		c.Backoff = 300 * time.Millisecond
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = 90 * time.Second
	}
}

// Value is an operation's value in the history.
type Value struct {
	ID      string `json:"id,omitempty"` // request id (invoice) or payment id
	Attempt int    `json:"attempt,omitempty"`
	Account string `json:"account,omitempty"`
	Amount  int64  `json:"amount,omitempty"`
	Hash    string `json:"hash,omitempty"`
	// Set on completion.
	Node     string `json:"node,omitempty"`
	State    string `json:"state,omitempty"`
	Code     string `json:"code,omitempty"`
	Internal bool   `json:"internal,omitempty"`
}

// ReadValue is a read's value: each customer's balance.
type ReadValue struct {
	Balances map[string]Balance `json:"balances,omitempty"`
}

// Balance is a customer's balance as read.
type Balance struct {
	Posted        int64 `json:"posted"`
	Available     int64 `json:"available"`
	DebitsPending int64 `json:"debits_pending"`
}

// invoice is one the cluster acknowledged.
type invoice struct {
	hash, request, account string
}

// payment is one payment id a client sent (with the body every resend repeats).
type payment struct {
	id, account, request, hash string
}

// Workload drives the clients.
type Workload struct {
	cfg       Config
	cluster   Cluster
	hist      *history.Recorder
	net       Network
	log       *slog.Logger
	customers []string

	nextProcess atomic.Int64

	mu       sync.Mutex
	open     []invoice            // acknowledged invoices nobody has paid yet
	payments map[string]payment   // every payment id sent
	acked    []string             // payment ids acknowledged
	outside  []string             // hashes of outside invoices made
	invoices map[string]invoice   // every acknowledged invoice, by hash
	created  map[string]time.Time // when each acknowledged invoice was first seen
}

// New builds a workload; Setup must run before Run.
func New(cfg Config, cluster Cluster, hist *history.Recorder, net Network, log *slog.Logger) *Workload {
	cfg.defaults()
	customers := make([]string, cfg.Customers)
	for i := range customers {
		customers[i] = fmt.Sprintf("lnj-c%d", i)
	}
	return &Workload{cfg: cfg, cluster: cluster, hist: hist, net: net, log: log.With("workload", Name), customers: customers,
		payments: map[string]payment{}, invoices: map[string]invoice{}, created: map[string]time.Time{}}
}

// Customers lists the customer accounts.
func (w *Workload) Customers() []string { return slices.Clone(w.customers) }

// Setup funds the customers and waits until every pool node is usable.
func (w *Workload) Setup(ctx context.Context) error {
	accounts := []*bankdv1.Account{{Id: CapitalID, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_EQUITY}}
	for _, c := range w.customers {
		accounts = append(accounts, &bankdv1.Account{Id: c, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true})
	}
	if err := ledger.CreateAccounts(ctx, w.cluster, w.cfg.OpTimeout, accounts); err != nil {
		return err
	}
	for _, c := range w.customers {
		t := &bankdv1.Transfer{Id: "fund-" + c, DebitAccountId: CapitalID, CreditAccountId: c, Amount: w.cfg.FundingSat, Currency: ledger.Currency}
		_, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (struct{}, error) {
			res, err := cl.Ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{t}}))
			if err == nil && res.Msg.Results[0].Code != bankdv1.ResultCode_RESULT_CODE_OK {
				err = fmt.Errorf("refused: %s %s", res.Msg.Results[0].Code, res.Msg.Results[0].Message)
			}
			return struct{}{}, err
		})
		if err != nil {
			return fmt.Errorf("fund %s: %w", c, err)
		}
	}
	return w.waitUsable(ctx)
}

// waitUsable waits until every pool node is active, reachable and bound to its pubkey.
func (w *Workload) waitUsable(ctx context.Context) error {
	for {
		nodes, err := w.listNodes(ctx)
		usable := 0
		for _, n := range nodes {
			if n.State == bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE && n.Reachable && n.Pubkey != "" {
				usable++
			}
		}
		if err == nil && len(nodes) > 0 && usable == len(nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pool nodes not all usable (%d of %d, last error %v): %w", usable, len(nodes), err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (w *Workload) listNodes(ctx context.Context) ([]*bankdv1.LndNode, error) {
	return ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) ([]*bankdv1.LndNode, error) {
		res, err := cl.Lightning.ListNodes(ctx, connect.NewRequest(&bankdv1.ListLndNodesRequest{Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
		if err != nil {
			return nil, err
		}
		return res.Msg.Nodes, nil
	})
}

// Run starts the clients and returns when ctx ends and every client has finished its last
// attempt (each bounded by OpTimeout).
func (w *Workload) Run(ctx context.Context) {
	w.nextProcess.Store(int64(w.cfg.Clients))
	var wg sync.WaitGroup
	for c := range w.cfg.Clients {
		rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(c)+0x6c6e))
		wg.Go(func() { w.client(ctx, c, rng) })
	}
	wg.Wait()
}

func (w *Workload) client(ctx context.Context, client int, rng *rand.Rand) {
	process, seq := client, 0
	for ctx.Err() == nil {
		seq++
		account := w.customers[rng.IntN(len(w.customers))]
		amount := w.cfg.MinAmount + rng.Int64N(w.cfg.MaxAmount-w.cfg.MinAmount+1)
		var (
			f string
			v Value
		)
		switch r := rng.Float64(); {
		case r < 0.3:
			f, v = FInvoice, Value{ID: fmt.Sprintf("i%d-%d", client, seq), Account: account, Amount: amount}
		case r < 0.5:
			inv, ok := w.takeOpen(rng, "")
			if !ok {
				continue
			}
			w.payIn(ctx, process, inv)
			pace.Sleep(ctx, time.Duration(rng.Int64N(int64(w.cfg.Pause))))
			continue
		case r < 0.65:
			inv, ok := w.takeOpen(rng, account)
			if !ok {
				continue
			}
			f, v = FPayOwn, Value{ID: fmt.Sprintf("p%d-%d", client, seq), Account: account, Hash: inv.hash}
			w.remember(payment{id: v.ID, account: account, request: inv.request, hash: inv.hash})
		case r < 0.9:
			if id, ok := w.pickAcked(rng); ok && rng.Float64() < w.cfg.ResendShare*4 {
				// Resend an acknowledged payment: the same id and body.
				p := w.payment(id)
				f, v = FPayOut, Value{ID: p.id, Account: p.account, Hash: p.hash}
				if w.isOwn(p.hash) {
					f = FPayOwn
				}
				break
			}
			out, err := w.net.OutsideInvoice(ctx, amount)
			if err != nil {
				w.log.Warn("outside invoice", "err", err)
				pace.Sleep(ctx, w.cfg.Backoff)
				continue
			}
			f, v = FPayOut, Value{ID: fmt.Sprintf("p%d-%d", client, seq), Account: account, Hash: out.Hash, Amount: amount}
			w.mu.Lock()
			w.outside = append(w.outside, out.Hash)
			w.mu.Unlock()
			w.remember(payment{id: v.ID, account: account, request: out.PaymentRequest, hash: out.Hash})
		default:
			w.read(process, rng.IntN(w.cluster.Size()))
			pace.Sleep(ctx, time.Duration(rng.Int64N(int64(w.cfg.Pause))))
			continue
		}
		for attempt := 1; ; attempt++ {
			v.Attempt = attempt
			typ, definite := w.send(process, rng.IntN(w.cluster.Size()), f, v)
			if typ == history.Info {
				process = int(w.nextProcess.Add(1)) - 1
			}
			if definite || ctx.Err() != nil {
				break
			}
			pace.Sleep(ctx, time.Duration(1+rng.Int64N(int64(w.cfg.Backoff))))
		}
		pace.Sleep(ctx, time.Duration(rng.Int64N(int64(w.cfg.Pause))))
	}
}

func (w *Workload) remember(p payment) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.payments[p.id] = p
}

func (w *Workload) payment(id string) payment {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.payments[id]
}

func (w *Workload) isOwn(hash string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.invoices[hash]
	return ok
}

func (w *Workload) pickAcked(rng *rand.Rand) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.acked) == 0 {
		return "", false
	}
	return w.acked[rng.IntN(len(w.acked))], true
}

// takeOpen takes an unpaid invoice of another account than notOf (any with ""), so that each
// invoice is paid once, from outside or from inside.
func (w *Workload) takeOpen(rng *rand.Rand, notOf string) (invoice, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var candidates []int
	for i, inv := range w.open {
		if inv.account != notOf {
			candidates = append(candidates, i)
		}
	}
	if len(candidates) == 0 {
		return invoice{}, false
	}
	i := candidates[rng.IntN(len(candidates))]
	inv := w.open[i]
	w.open = slices.Delete(w.open, i, i+1)
	return inv, true
}

// payIn pays one of our invoices from outside the pool; refused when its node is down or it
// is no longer payable (then nothing was paid).
func (w *Workload) payIn(ctx context.Context, process int, inv invoice) {
	v := Value{Account: inv.account, Hash: inv.hash}
	op := w.hist.Invoke(process, FPayIn, v, "outside")
	cctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
	defer cancel()
	err := w.net.Pay(cctx, inv.request)
	typ := history.OK
	switch {
	case errors.Is(err, fakelnd.ErrRefused):
		typ = history.Fail
	case err != nil:
		typ = history.Info
	}
	w.hist.Complete(op, typ, v, err)
}

// read reads every customer's balance linearizably through one node.
func (w *Workload) read(process, node int) {
	op := w.hist.Invoke(process, FRead, nil, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	v := ReadValue{Balances: map[string]Balance{}}
	var err error
	for _, c := range w.customers {
		var b Balance
		if b, err = getBalance(ctx, w.cluster.Client(node), c); err != nil {
			break
		}
		v.Balances[c] = b
	}
	if err != nil {
		w.hist.Complete(op, history.Fail, nil, err) // a read changes nothing
		return
	}
	w.hist.Complete(op, history.OK, v, nil)
}

func getBalance(ctx context.Context, cl *apiclient.Clients, account string) (Balance, error) {
	res, err := cl.Ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: account, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
	if err != nil {
		return Balance{}, err
	}
	b := res.Msg.GetAccount().GetBalance()
	return Balance{Posted: b.GetPosted(), Available: b.GetAvailable(), DebitsPending: b.GetDebitsPending()}, nil
}

// classify is ledger.ClassifyWrite, plus the pool's "nothing was recorded" (no usable node,
// lnd unreachable before anything was proposed) and "nothing was done" (not the leader, or
// reconciling): certainly not applied.
func classify(err error) history.Type {
	if err != nil && connect.CodeOf(err) == connect.CodeUnavailable &&
		(strings.Contains(err.Error(), "nothing was recorded") || strings.Contains(err.Error(), "nothing was done")) {
		return history.Fail
	}
	return ledger.ClassifyWrite(err)
}

// send performs and records one attempt. definite is true for an ok and for a refusal with a
// result code or as invalid.
func (w *Workload) send(process, node int, f string, v Value) (typ history.Type, definite bool) {
	op := w.hist.Invoke(process, f, v, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	cl := w.cluster.Client(node)
	var err error
	if f == FInvoice {
		var res *connect.Response[bankdv1.CreateInvoiceResponse]
		res, err = cl.Lightning.CreateInvoice(ctx, connect.NewRequest(&bankdv1.CreateInvoiceRequest{
			AccountId: v.Account, AmountSat: v.Amount, RequestId: v.ID, Memo: "jepsen " + v.ID}))
		if err == nil {
			inv := res.Msg.Invoice
			v.Hash, v.Node, v.State = inv.Hash, inv.NodeId, inv.State.String()
			w.mu.Lock()
			if _, seen := w.invoices[inv.Hash]; !seen {
				i := invoice{hash: inv.Hash, request: inv.PaymentRequest, account: v.Account}
				w.invoices[inv.Hash] = i
				w.created[inv.Hash] = time.Now()
				w.open = append(w.open, i)
			}
			w.mu.Unlock()
		}
	} else {
		p := w.payment(v.ID)
		var res *connect.Response[bankdv1.PayInvoiceResponse]
		res, err = cl.Lightning.PayInvoice(ctx, connect.NewRequest(&bankdv1.PayInvoiceRequest{
			Id: p.id, AccountId: p.account, PaymentRequest: p.request, WaitMs: w.cfg.WaitMs}))
		if err == nil {
			pay := res.Msg.Payment
			v.Node, v.State, v.Internal = pay.NodeId, pay.State.String(), pay.Internal
			w.mu.Lock()
			if !slices.Contains(w.acked, v.ID) {
				w.acked = append(w.acked, v.ID)
			}
			w.mu.Unlock()
		}
	}
	typ = classify(err)
	switch {
	case typ == history.OK:
		definite = true
	case rpc.ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_UNSPECIFIED:
		v.Code, definite = rpc.ResultCodeOf(err).String(), true
	case connect.CodeOf(err) == connect.CodeInvalidArgument || connect.CodeOf(err) == connect.CodeFailedPrecondition:
		v.Code, definite = connect.CodeOf(err).String(), true
		typ = history.Fail
	}
	w.hist.Complete(op, typ, v, err)
	return typ, definite
}
