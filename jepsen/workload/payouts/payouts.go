// Package payouts is the jepsen on-chain payouts workload. The harness runs a fake regtest
// chain node (package fakechain) on the bridge and a signer (package signer, in this process)
// for a hot wallet it funds there; the cluster follows the chain, plans, broadcasts and settles.
//
// A few customers are funded in the ledger from a capital (EQUITY) account. Clients request
// withdrawals under unique ids to fresh regtest p2wpkh addresses, resending the same id to
// random nodes until a definite answer (ok, or a refusal with a result code), and sometimes
// cancel one of their acknowledged withdrawals. Every attempt is one operation in the history.
//
// At the end (faults healed) the harness waits until every withdrawal is final (PAID,
// CANCELLED, REJECTED or FAILED), mining all along, then stops the chain and reads the
// withdrawals, the customers' balances and the chain's own record of every transaction it
// mined; checker.Payouts judges them.
package payouts

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/fakechain"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/jepsen/workload/pace"
	"github.com/bankd/bankd/rpc"
	"github.com/bankd/bankd/signer"
)

// Name is the workload's name; FRequest and FCancel its operations (history.Op.F).
const (
	Name     = "payouts"
	FRequest = "request"
	FCancel  = "cancel"
)

// Names and policy of the cluster's payout setup.
const (
	WalletID  = "hot"
	Queue     = "q"
	CapitalID = "po-capital"
	// FeeSat is what the queue charges a customer per withdrawal, besides its amount.
	FeeSat = 100
	// FinalDepth is the chain block's final_depth.
	FinalDepth = 2
	chainUser  = "jepsen"
	chainPass  = "jepsen-fakechain"
)

// Cluster is what the workload needs from the hosts.
type Cluster interface {
	ledger.Cluster
	AdminClient(i int) *apiclient.Clients
	SignerClient(i int) *apiclient.Clients
}

// Config shapes the workload. Zero fields take the defaults in brackets.
type Config struct {
	Clients   int   // concurrent clients [5]
	Customers int   // [5]
	Funding   int64 // of every customer, in sat [3,000,000]
	// MinAmount and MaxAmount bound a withdrawal's amount [5,000, 20,000].
	MinAmount, MaxAmount int64
	// CancelShare is the share of operations that cancel an acknowledged withdrawal [0.15].
	CancelShare float64
	// Pause is the longest pause between two operations of a client [200ms].
	Pause time.Duration
	// Backoff is the longest pause between two attempts of one id [200ms].
	Backoff   time.Duration
	OpTimeout time.Duration // per request [2s]
	// WalletOutputs outputs of WalletOutputValue sat fund the hot wallet [20 × 1,000,000].
	WalletOutputs     int
	WalletOutputValue int64
	// SettleTimeout bounds the wait for every withdrawal to be final [90s].
	SettleTimeout time.Duration
	Seed          uint64
	// Dir holds the signer's ledger file (the report dir).
	Dir string
}

func (c *Config) defaults() {
	if c.Clients == 0 {
		c.Clients = 5
	}
	if c.Customers == 0 {
		c.Customers = 5
	}
	if c.Funding == 0 {
		c.Funding = 3_000_000
	}
	if c.MinAmount == 0 {
		c.MinAmount = 5_000
	}
	if c.MaxAmount == 0 {
		c.MaxAmount = 20_000
	}
	if c.CancelShare == 0 {
		c.CancelShare = 0.15
	}
	if c.Pause == 0 {
		c.Pause = 200 * time.Millisecond
	}
	if c.Backoff == 0 {
		c.Backoff = 200 * time.Millisecond
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 2 * time.Second
	}
	if c.WalletOutputs == 0 {
		c.WalletOutputs = 20
	}
	if c.WalletOutputValue == 0 {
		c.WalletOutputValue = 1_000_000
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = 90 * time.Second
	}
}

// Value is the value of an operation. A request's invocation carries ID, Account, Address,
// Amount and Attempt (1, 2, ... for the attempts of one id); a cancel's ID and Attempt. An ok
// completion adds the withdrawal's State (and Replayed for a request); a refusal its Code.
type Value struct {
	ID       string `json:"id"`
	Account  string `json:"account,omitempty"`
	Address  string `json:"address,omitempty"`
	Amount   int64  `json:"amount,omitempty"`
	Attempt  int    `json:"attempt"`
	State    string `json:"state,omitempty"`
	Replayed bool   `json:"replayed,omitempty"`
	Code     string `json:"code,omitempty"`
}

// Model is what the checker needs of the setup.
type Model struct {
	Customers []string `json:"customers"`
	Funding   int64    `json:"funding"`
	FeeSat    int64    `json:"fee_sat"`
}

// Workload drives one payouts run.
type Workload struct {
	cfg         Config
	cluster     Cluster
	hist        *history.Recorder
	chain       *fakechain.Chain
	log         *slog.Logger
	model       Model
	nextProcess atomic.Int64

	signer     *signer.Signer
	stopSigner context.CancelFunc
	signerDone chan struct{}

	mu    sync.Mutex
	acked map[int][]string // per client, acknowledged ids not yet cancelled
}

// NewChain builds the fake chain node a payouts run needs; the harness starts it on the
// bridge with ClusterConfig before the cluster's configuration is written.
func NewChain(log *slog.Logger) *fakechain.Chain {
	return fakechain.New(fakechain.Config{User: chainUser, Pass: chainPass, BlockEvery: 500 * time.Millisecond, Logger: log})
}

// ClusterConfig starts chain's RPC on the bridge address gatewayIP and returns the chain and
// payouts blocks of cluster.hcl.
func ClusterConfig(chain *fakechain.Chain, gatewayIP string) (string, error) {
	if err := chain.Listen(net.JoinHostPort(gatewayIP, "0")); err != nil {
		return "", err
	}
	return fmt.Sprintf(`chain {
  network       = "regtest"
  rpc_host      = %q
  rpc_user      = %q
  rpc_pass      = %q
  rpc_tls       = false
  final_depth   = %d
  poll_interval = "100ms"
  start_height  = %d
}

payouts {
  wallet        = %q
  default_queue = %q
  queue %q {
    trigger           = "count"
    count             = 5
    interval          = "1s"
    fee_sat           = %d
    min_fee_rate      = 1
    max_fee_rate      = 50
    bump_after_blocks = 0
  }
}
`, chain.Addr(), chainUser, chainPass, FinalDepth, chain.Height(), WalletID, Queue, Queue, FeeSat), nil
}

// New builds a workload; Setup must run before Run.
func New(cfg Config, cluster Cluster, hist *history.Recorder, chain *fakechain.Chain, log *slog.Logger) *Workload {
	cfg.defaults()
	customers := make([]string, cfg.Customers)
	for i := range customers {
		customers[i] = fmt.Sprintf("po-c%d", i)
	}
	return &Workload{cfg: cfg, cluster: cluster, hist: hist, chain: chain, log: log.With("workload", Name),
		model: Model{Customers: customers, Funding: cfg.Funding, FeeSat: FeeSat}, acked: map[int][]string{}}
}

// Model describes the setup.
func (w *Workload) Model() Model { return w.model }

// Setup creates and funds the customers, creates the hot wallet, funds it on the chain, starts
// the miner, waits until the cluster sees the wallet's coins, and starts the signer.
func (w *Workload) Setup(ctx context.Context) error {
	accounts := []*bankdv1.Account{{Id: CapitalID, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_EQUITY}}
	for _, c := range w.model.Customers {
		accounts = append(accounts, &bankdv1.Account{Id: c, Currency: ledger.Currency, Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true})
	}
	if err := ledger.CreateAccounts(ctx, w.cluster, w.cfg.OpTimeout, accounts); err != nil {
		return err
	}
	for _, c := range w.model.Customers {
		_, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (struct{}, error) {
			_, err := cl.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: &bankdv1.Transfer{
				Id: "fund-" + c, DebitAccountId: CapitalID, CreditAccountId: c, Amount: w.cfg.Funding, Currency: ledger.Currency}}))
			return struct{}{}, err
		})
		if err != nil {
			return fmt.Errorf("fund %s: %w", c, err)
		}
	}

	net := &chaincfg.RegressionNetParams
	seed := make([]byte, 32)
	rng := rand.New(rand.NewPCG(w.cfg.Seed, 1<<40))
	for i := range seed {
		seed[i] = byte(rng.Uint32())
	}
	master, err := hdkeychain.NewMaster(seed, net)
	if err != nil {
		return fmt.Errorf("hot wallet key: %w", err)
	}
	desc, err := signer.AccountDescriptor(master, net)
	if err != nil {
		return fmt.Errorf("hot wallet descriptor: %w", err)
	}
	wallet, err := signer.NewWallet(master, desc, net)
	master.Zero()
	if err != nil {
		return fmt.Errorf("hot wallet: %w", err)
	}
	book, err := signer.OpenLedger(filepath.Join(w.cfg.Dir, "signer-ledger.json"))
	if err != nil {
		return err
	}
	w.signer, err = signer.New(signer.Config{Wallet: wallet, Ledger: book,
		Limits: signer.Limits{MaxFeeSat: 1_000_000, MaxFeeRateSatKvB: 100_000, DailyLimitSat: btcutil.MaxSatoshi}})
	if err != nil {
		return err
	}
	_, err = ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, _ *apiclient.Clients) (struct{}, error) {
		_, err := w.cluster.AdminClient(rand.IntN(w.cluster.Size())).Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
			WalletId: WalletID, Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: desc, GapLimit: 50}))
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("create hot wallet: %w", err)
	}

	var outs []*wire.TxOut
	for i := range w.cfg.WalletOutputs {
		script, err := wallet.Script(0, uint32(i))
		if err != nil {
			return err
		}
		outs = append(outs, wire.NewTxOut(w.cfg.WalletOutputValue, script))
	}
	if _, err := w.chain.Fund(outs); err != nil {
		return err
	}
	w.chain.Start()
	if err := w.waitFunded(ctx); err != nil {
		return err
	}

	sctx, cancel := context.WithCancel(context.Background())
	w.stopSigner, w.signerDone = cancel, make(chan struct{})
	go func() {
		defer close(w.signerDone)
		w.runSigner(sctx)
	}()
	return nil
}

// waitFunded polls until the cluster lists every funding output as a UTXO of the hot wallet.
func (w *Workload) waitFunded(ctx context.Context) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		resp, err := w.cluster.AdminClient(rand.IntN(w.cluster.Size())).Chain.ListUtxos(cctx, connect.NewRequest(&bankdv1.ListUtxosRequest{
			WalletId: WalletID, PageSize: 1000, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
		cancel()
		if err == nil && len(resp.Msg.Utxos) >= w.cfg.WalletOutputs {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the hot wallet's funding never showed as UTXOs (last error %v): %w", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Close stops the signer and the miner; the chain keeps its record.
func (w *Workload) Close() {
	if w.stopSigner != nil {
		w.stopSigner()
		<-w.signerDone
		w.stopSigner = nil
	}
	w.chain.StopMining()
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
		v := Value{}
		f := FRequest
		if id, ok := w.pickAcked(client, rng); ok && rng.Float64() < w.cfg.CancelShare {
			f, v.ID = FCancel, id
		} else {
			seq++
			v = Value{ID: fmt.Sprintf("w%d-%d", client, seq), Account: w.model.Customers[rng.IntN(len(w.model.Customers))],
				Address: freshAddress(rng), Amount: w.cfg.MinAmount + rng.Int64N(w.cfg.MaxAmount-w.cfg.MinAmount+1)}
		}
		for attempt := 1; ; attempt++ {
			v.Attempt = attempt
			typ, definite := w.send(process, client, rng.IntN(w.cluster.Size()), f, v)
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

// freshAddress is a regtest p2wpkh address of 20 random bytes: nobody's key, never reused.
func freshAddress(rng *rand.Rand) string {
	h := make([]byte, 20)
	for i := range h {
		h[i] = byte(rng.Uint32())
	}
	addr, err := btcutil.NewAddressWitnessPubKeyHash(h, &chaincfg.RegressionNetParams)
	if err != nil {
		panic(err) // 20 bytes always make an address
	}
	return addr.EncodeAddress()
}

func (w *Workload) pickAcked(client int, rng *rand.Rand) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.acked[client]
	if len(ids) == 0 {
		return "", false
	}
	i := rng.IntN(len(ids))
	id := ids[i]
	w.acked[client] = slices.Delete(ids, i, i+1) // cancelled at most once
	return id, true
}

// send performs and records one attempt. definite is true for an ok and for a refusal with a
// result code.
func (w *Workload) send(process, client, node int, f string, v Value) (typ history.Type, definite bool) {
	inv := w.hist.Invoke(process, f, v, w.cluster.NodeID(node))
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.OpTimeout)
	defer cancel()
	cl := w.cluster.Client(node)
	var (
		p   *bankdv1.Payout
		err error
	)
	if f == FRequest {
		var resp *connect.Response[bankdv1.RequestPayoutResponse]
		resp, err = cl.Payout.RequestPayout(ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
			Id: v.ID, AccountId: v.Account, Address: v.Address, AmountSat: v.Amount, Queue: Queue}))
		if err == nil {
			p, v.Replayed = resp.Msg.GetPayout(), resp.Msg.GetReplayed()
		}
	} else {
		var resp *connect.Response[bankdv1.CancelPayoutResponse]
		resp, err = cl.Payout.CancelPayout(ctx, connect.NewRequest(&bankdv1.CancelPayoutRequest{Id: v.ID}))
		if err == nil {
			p = resp.Msg.GetPayout()
		}
	}
	typ = ledger.ClassifyWrite(err)
	switch {
	case typ == history.OK:
		v.State = p.GetState().String()
		if f == FRequest {
			w.mu.Lock()
			w.acked[client] = append(w.acked[client], v.ID)
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

// Payout is what the cluster holds of a withdrawal at the end.
type Payout struct {
	ID      string `json:"id"`
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
	Fee     int64  `json:"fee"`
	State   string `json:"state"`
	Txid    string `json:"txid,omitempty"`
	Vout    uint32 `json:"vout,omitempty"`
}

// Balance is a customer's final balance.
type Balance struct {
	Posted        int64 `json:"posted"`
	DebitsPending int64 `json:"debits_pending"`
}

// Final is the end of a run: what the cluster holds and what the chain mined.
type Final struct {
	Payouts  map[string]Payout  `json:"payouts"`
	Balances map[string]Balance `json:"balances"`
	// Chain is the fake chain's record of every transaction it mined.
	Chain []fakechain.Tx `json:"chain"`
	// Settled is false when some withdrawal was still not final at the settle timeout.
	Settled bool `json:"settled"`
}

// final reports whether a withdrawal's state can no longer change.
func final(state bankdv1.PayoutState) bool {
	switch state {
	case bankdv1.PayoutState_PAYOUT_STATE_PAID, bankdv1.PayoutState_PAYOUT_STATE_CANCELLED,
		bankdv1.PayoutState_PAYOUT_STATE_REJECTED, bankdv1.PayoutState_PAYOUT_STATE_FAILED:
		return true
	}
	return false
}

// Final waits (up to SettleTimeout, within ctx) until every withdrawal is final while the
// chain keeps mining and the signer signing, stops both, and reads the final state.
func (w *Workload) Final(ctx context.Context) (*Final, error) {
	defer w.Close()
	f := &Final{}
	settle, cancel := context.WithTimeout(ctx, w.cfg.SettleTimeout)
	for {
		ps, err := w.listPayouts(settle)
		if err == nil && !slices.ContainsFunc(ps, func(p *bankdv1.Payout) bool { return !final(p.State) }) {
			f.Settled = true
			break
		}
		if settle.Err() != nil {
			w.log.Warn("withdrawals not settled", "timeout", w.cfg.SettleTimeout, "err", err)
			break
		}
		pace.Sleep(settle, 500*time.Millisecond)
	}
	cancel()
	w.Close()
	balances := func(ctx context.Context) (map[string]Balance, error) {
		out := map[string]Balance{}
		for _, acc := range w.model.Customers {
			b, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (Balance, error) {
				resp, err := cl.Ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{Id: acc, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
				if err != nil {
					return Balance{}, err
				}
				bal := resp.Msg.GetAccount().GetBalance()
				return Balance{Posted: bal.GetPosted(), DebitsPending: bal.GetDebitsPending()}, nil
			})
			if err != nil {
				return nil, fmt.Errorf("final balance of %s: %w", acc, err)
			}
			out[acc] = b
		}
		return out, nil
	}
	b, ps, err := ledger.ConsistentRead(ctx, balances, w.listPayouts)
	if err != nil {
		return nil, fmt.Errorf("final state: %w", err)
	}
	f.Balances = b
	f.Payouts = make(map[string]Payout, len(ps))
	for _, p := range ps {
		f.Payouts[p.Id] = Payout{ID: p.Id, Account: p.AccountId, Amount: p.AmountSat, Fee: p.FeeSat, State: p.State.String(), Txid: p.Txid, Vout: p.Vout}
	}
	f.Chain = w.chain.Mined()
	return f, nil
}

// maxPayoutPages bounds one listing of the withdrawals (1000 a page).
const maxPayoutPages = 1000

// listPayouts reads every withdrawal linearizably, each page retried across nodes.
func (w *Workload) listPayouts(ctx context.Context) ([]*bankdv1.Payout, error) {
	var out []*bankdv1.Payout
	token := ""
	for range maxPayoutPages {
		resp, err := ledger.Retry(ctx, w.cluster, w.cfg.OpTimeout, func(ctx context.Context, cl *apiclient.Clients) (*bankdv1.ListPayoutsResponse, error) {
			resp, err := cl.Payout.ListPayouts(ctx, connect.NewRequest(&bankdv1.ListPayoutsRequest{
				PageSize: 1000, PageToken: token, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE}))
			if err != nil {
				return nil, err
			}
			return resp.Msg, nil
		})
		if err != nil {
			return nil, fmt.Errorf("list withdrawals: %w", err)
		}
		out = append(out, resp.Payouts...)
		if resp.NextPageToken == "" {
			return out, nil
		}
		token = resp.NextPageToken
	}
	return nil, fmt.Errorf("more than %d pages of withdrawals", maxPayoutPages)
}
