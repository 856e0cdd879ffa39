package lnpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/fsmtest"
	"github.com/bankd/bankd/lnpool/lnd"
	"github.com/bankd/bankd/lnpool/lnd/lndtest"
)

// fixture is a real state machine, a proposer that applies to it directly, and a fake network
// of two pool nodes. alice holds 100,000 sat, bob nothing.
type fixture struct {
	t     *testing.T
	f     *fsm.FSM
	p     *fsmtest.Proposer
	net   *lndtest.Network
	nodes map[string]*lndtest.Node
	// now, when set, is the pools' clock.
	now func() time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := fsmtest.Open(t)
	fx := &fixture{t: t, f: f, p: &fsmtest.Proposer{T: t, F: f}, net: lndtest.NewNetwork(), nodes: map[string]*lndtest.Node{}}
	for _, id := range []string{"pool-1", "pool-2"} {
		fx.nodes[id] = fx.net.NewNode(id)
	}
	for _, acc := range []*bankdv1.Account{
		{Id: "alice", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true},
		{Id: "bob", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true},
		{Id: "treasury", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_EQUITY},
	} {
		fx.p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{Account: acc})
	}
	fx.p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
		{Id: "fund", DebitAccountId: "treasury", CreditAccountId: "alice", Amount: 100_000, Currency: "BTC"},
	}})
	return fx
}

func (fx *fixture) newPool() *Pool {
	fx.t.Helper()
	var cfg []NodeConfig
	for _, id := range []string{"pool-1", "pool-2"} {
		cfg = append(cfg, NodeConfig{ID: id, Address: "127.0.0.1:10009", TLSCertPath: "/tls.cert", MacaroonPath: "/admin.macaroon"})
	}
	p, err := New(Config{Network: "regtest", Nodes: cfg, HealthInterval: 20 * time.Millisecond, SweepInterval: 50 * time.Millisecond},
		fx.p, fx.f, Options{
			Logger: slog.New(slog.DiscardHandler),
			Now:    fx.now,
			Dial: func(_ context.Context, n *bankdv1.LndNode) (lnd.Client, error) {
				node, ok := fx.nodes[n.Id]
				if !ok {
					return nil, fmt.Errorf("no fake node %q", n.Id)
				}
				return node, nil
			},
		})
	if err != nil {
		fx.t.Fatal(err)
	}
	return p
}

// run runs a pool as the leader would until the returned stop is called, and waits until it
// takes work.
func (fx *fixture) run(p *Pool) (stop func()) {
	fx.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(ctx); err != nil {
			fx.t.Errorf("pool run: %v", err)
		}
	}()
	stop = func() { cancel(); wg.Wait() }
	fx.t.Cleanup(stop)
	fx.eventually("pool ready", func() bool { _, err := p.running(); return err == nil })
	return stop
}

func (fx *fixture) eventually(what string, cond func() bool) {
	fx.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			fx.t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (fx *fixture) balance(id string) *bankdv1.Balance {
	fx.t.Helper()
	acc, err := fx.f.Account(id)
	if err != nil {
		fx.t.Fatal(err)
	}
	return acc.Balance
}

func (fx *fixture) payment(id string) *bankdv1.LnPayment {
	fx.t.Helper()
	p, err := fx.f.Payment(id)
	if err != nil {
		fx.t.Fatal(err)
	}
	return p
}

func (fx *fixture) waitPayment(id string, want bankdv1.PaymentState) *bankdv1.LnPayment {
	fx.t.Helper()
	fx.eventually("payment "+id+" "+want.String(), func() bool { return fx.payment(id).State == want })
	return fx.payment(id)
}

func pay(id, account, bolt11 string) *bankdv1.PayInvoiceRequest {
	return &bankdv1.PayInvoiceRequest{Id: id, AccountId: account, PaymentRequest: bolt11}
}

func TestPoolRegistersAndBindsNodes(t *testing.T) {
	fx := newFixture(t)
	fx.run(fx.newPool())
	nodes, err := fx.f.LndNodes()
	if err != nil || len(nodes) != 2 {
		t.Fatalf("nodes %v, %v", nodes, err)
	}
	for _, n := range nodes {
		if !fsm.LndNodeUsable(n) || n.Pubkey != fx.nodes[n.Id].Pubkey() {
			t.Fatalf("node %v not bound to its pubkey", n)
		}
		if b := fx.balance(n.AccountId); b.Posted != lndtest.DefaultBalanceSat {
			t.Fatalf("%s opening balance %v", n.Id, b)
		}
	}
	fx.nodes["pool-2"].SetUnreachable(true)
	fx.eventually("pool-2 marked down", func() bool {
		n, _ := fx.f.LndNode("pool-2")
		return !n.Reachable && n.HealthError != ""
	})
}

func TestInvoiceSettlementIsCreditedOnce(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	inv, err := pool.CreateInvoice(context.Background(), &bankdv1.CreateInvoiceRequest{AccountId: "bob", AmountSat: 2_000, RequestId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := pool.CreateInvoice(context.Background(), &bankdv1.CreateInvoiceRequest{AccountId: "bob", AmountSat: 2_000, RequestId: "r1"})
	if err != nil || again.Hash != inv.Hash {
		t.Fatalf("retried request made another invoice: %v %v", again, err)
	}
	var fe *fsm.Error
	if _, err := pool.CreateInvoice(context.Background(), &bankdv1.CreateInvoiceRequest{AccountId: "alice", AmountSat: 2_000, RequestId: "r1"}); !errors.As(err, &fe) || fe.Code != bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS {
		t.Fatalf("request id reused for another account: %v", err)
	}
	if err := fx.net.PayFromOutside(inv.PaymentRequest); err != nil {
		t.Fatal(err)
	}
	fx.eventually("bob credited", func() bool { return fx.balance("bob").Posted == 2_000 })
	time.Sleep(150 * time.Millisecond) // sweeps and resubscriptions run; nothing more may arrive
	if b := fx.balance("bob"); b.Posted != 2_000 {
		t.Fatalf("bob %v, want 2000 once", b)
	}
}

func TestSettlementWhileNoLeaderIsCreditedByTheNext(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	stop := fx.run(pool)
	inv, err := pool.CreateInvoice(context.Background(), &bankdv1.CreateInvoiceRequest{AccountId: "bob", AmountSat: 1_000, RequestId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	stop() // leadership lost
	if err := fx.net.PayFromOutside(inv.PaymentRequest); err != nil {
		t.Fatal(err)
	}
	if b := fx.balance("bob"); b.Posted != 0 {
		t.Fatalf("credited with no leader: %v", b)
	}
	fx.run(fx.newPool())
	fx.eventually("bob credited by the next leader", func() bool { return fx.balance("bob").Posted == 1_000 })
}

func TestPaymentSucceedsWithItsFee(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	for _, n := range fx.nodes {
		n.SetFeeMsat(1_500)
	}
	bolt11 := fx.net.OutsideInvoice(10_000)
	p, err := pool.PayInvoice(context.Background(), &bankdv1.PayInvoiceRequest{Id: "p1", AccountId: "alice", PaymentRequest: bolt11, WaitMs: 2_000})
	if err != nil {
		t.Fatal(err)
	}
	if p.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED || p.FeeSat != 2 || p.FeeReserveSat < 100 {
		t.Fatalf("payment %v: want succeeded, fee 1.5 sat charged as 2, reserve >= 1%%", p)
	}
	if b := fx.balance("alice"); b.Posted != 100_000-10_002 || b.DebitsPending != 0 {
		t.Fatalf("alice %v", b)
	}
	if got := fx.net.OutsidePaidMsat(p.Hash); got != 10_000_000 {
		t.Fatalf("outside received %d msat", got)
	}
	// Paid once: another id for the same invoice is refused, nothing held.
	_, err = pool.PayInvoice(context.Background(), pay("p2", "alice", bolt11))
	var fe *fsm.Error
	if !errors.As(err, &fe) || fe.Code != bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT {
		t.Fatalf("second payment of a paid invoice: %v", err)
	}
	// The id of a payment reused for another invoice is refused, not answered with the first.
	if _, err := pool.PayInvoice(context.Background(), pay("p1", "alice", fx.net.OutsideInvoice(10))); !errors.As(err, &fe) || fe.Code != bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS {
		t.Fatalf("payment id reused for another invoice: %v", err)
	}
}

func TestPaymentOnADeadNodeWaitsForIt(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	for _, n := range fx.nodes {
		n.HoldPayments(true)
	}
	p, err := pool.PayInvoice(context.Background(), pay("p1", "alice", fx.net.OutsideInvoice(5_000)))
	if err != nil {
		t.Fatal(err)
	}
	node := fx.nodes[p.NodeId]
	fx.eventually("payment held on its node", func() bool { return len(node.HeldPayments()) == 1 })
	node.SetUnreachable(true)
	time.Sleep(200 * time.Millisecond) // health checks, tracker retries
	if cur := fx.payment("p1"); cur.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT || cur.NodeId != p.NodeId || cur.Attempt != 1 {
		t.Fatalf("payment on a dead node: %v, want in flight on %s at attempt 1", cur, p.NodeId)
	}
	for id, other := range fx.nodes {
		if id != p.NodeId && len(other.HeldPayments()) != 0 {
			t.Fatalf("payment retried on %s while in flight on %s", id, p.NodeId)
		}
	}
	node.SetUnreachable(false)
	if err := node.ReleasePayment(p.Hash); err != nil {
		t.Fatal(err)
	}
	fx.waitPayment("p1", bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED)
	if got := fx.net.OutsidePaidMsat(p.Hash); got != 5_000_000 {
		t.Fatalf("outside received %d msat, want 5000 sat once", got)
	}
}

func TestNewLeaderReconcilesPaymentsBeforeNewWork(t *testing.T) {
	fx := newFixture(t)
	first := fx.newPool()
	stop := fx.run(first)
	for _, n := range fx.nodes {
		n.HoldPayments(true)
	}
	p, err := first.PayInvoice(context.Background(), pay("p1", "alice", fx.net.OutsideInvoice(3_000)))
	if err != nil {
		t.Fatal(err)
	}
	node := fx.nodes[p.NodeId]
	fx.eventually("payment held", func() bool { return len(node.HeldPayments()) == 1 })
	stop()
	// While no one leads, the node gives up on the payment.
	if err := node.FailPayment(p.Hash, lndtest.FailNoRoute); err != nil {
		t.Fatal(err)
	}
	// Hold the new leader's record of the outcome: until it is committed the pool must not
	// take new work.
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	fx.p.Intercept = func(typ bankdv1.CommandType, _ proto.Message) (bool, error) {
		if typ == bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_RESULT {
			<-release
		}
		return false, nil
	}
	second := fx.newPool()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = second.Run(ctx) }()
	t.Cleanup(func() { releaseAll(); cancel(); <-done })
	time.Sleep(100 * time.Millisecond)
	if _, err := second.running(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("the pool takes new work while a payment is being reconciled (err %v)", err)
	}
	releaseAll()
	fx.eventually("ready after reconciling", func() bool { _, err := second.running(); return err == nil })
	if cur := fx.payment("p1"); cur.State != bankdv1.PaymentState_PAYMENT_STATE_FAILED || cur.FailureReason != lndtest.FailNoRoute {
		t.Fatalf("after the new leader started: %v", cur)
	}
	if b := fx.balance("alice"); b.Available != 100_000 {
		t.Fatalf("alice %v: the failed payment's hold must be released", b)
	}
}

func TestIntentIsRecordedBeforeLndIsAsked(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	for _, n := range fx.nodes {
		n.HoldPayments(true)
	}
	// Raft refuses the intent: lnd must never see the payment.
	fx.p.Intercept = func(typ bankdv1.CommandType, _ proto.Message) (bool, error) {
		if typ == bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START {
			return false, errors.New("no quorum")
		}
		return false, nil
	}
	if _, err := pool.PayInvoice(context.Background(), pay("p1", "alice", fx.net.OutsideInvoice(1_000))); err == nil {
		t.Fatal("payment reported started without its intent committed")
	}
	time.Sleep(100 * time.Millisecond)
	for id, n := range fx.nodes {
		if len(n.HeldPayments()) != 0 {
			t.Fatalf("%s was asked to pay without a committed intent", id)
		}
	}
	// The answer of a committed intent is lost: the payment goes ahead once, and a retry of
	// the same id answers with it.
	fx.p.Intercept = func(typ bankdv1.CommandType, _ proto.Message) (bool, error) {
		if typ == bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START {
			return true, errors.New("outcome unknown")
		}
		return false, nil
	}
	bolt11 := fx.net.OutsideInvoice(1_000)
	if _, err := pool.PayInvoice(context.Background(), pay("p2", "alice", bolt11)); err == nil {
		t.Fatal("lost answer reported as success")
	}
	fx.p.Intercept = nil
	p, err := pool.PayInvoice(context.Background(), pay("p2", "alice", bolt11))
	if err != nil || p.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
		t.Fatalf("retry: %v %v", p, err)
	}
	node := fx.nodes[p.NodeId]
	fx.eventually("payment sent once", func() bool { return len(node.HeldPayments()) == 1 })
	if err := node.ReleasePayment(p.Hash); err != nil {
		t.Fatal(err)
	}
	fx.waitPayment("p2", bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED)
}

func TestBadInvoicesRecordNothing(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	mainnet := "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpuaztrnwngzn3kdzw5hydlzf03qdgm2hdq27cqv3agm2awhz5se903vruatfhq77w3ls4evs3ch9zw97j25emudupq63nyw24cg27h2rspfj9srp"
	// An invoice that expired: made by an outside world whose clock is two hours behind.
	fx.net.SetClock(func() time.Time { return time.Now().Add(-2 * time.Hour) })
	expired := fx.net.OutsideInvoice(1_000)
	fx.net.SetClock(time.Now)
	before := len(fx.p.Applied())
	for _, tc := range []struct {
		name, bolt11 string
		amount       int64
	}{
		{"garbage", "lnbcrt1garbage", 0},
		{"wrong network", mainnet, 0},
		{"amount-less without an amount", fx.net.OutsideInvoice(0), 0},
		{"empty", "", 0},
		{"expired", expired, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pool.PayInvoice(context.Background(), &bankdv1.PayInvoiceRequest{Id: "bad", AccountId: "alice", PaymentRequest: tc.bolt11, AmountSat: tc.amount})
			if !errors.Is(err, ErrBadInvoice) {
				t.Fatalf("err %v, want ErrBadInvoice", err)
			}
		})
	}
	for _, a := range fx.p.Applied()[before:] {
		if a.Type == bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START {
			t.Fatalf("a bad invoice reached the state machine: %v", a.Body)
		}
	}
	if b := fx.balance("alice"); b.Available != 100_000 {
		t.Fatalf("alice %v", b)
	}
}

func TestRouteFeeProbesAreCached(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	// One usable node, so both payments go through it (the cache is per node).
	fx.nodes["pool-2"].SetUnreachable(true)
	fx.eventually("pool-2 down", func() bool { n, _ := fx.f.LndNode("pool-2"); return !n.Reachable })
	for _, n := range fx.nodes {
		n.SetFeeMsat(20_000) // a route-fee estimate of 20 sat, above the 10-sat minimum
	}
	first, err := pool.PayInvoice(context.Background(), pay("p1", "alice", fx.net.OutsideInvoice(600)))
	if err != nil {
		t.Fatal(err)
	}
	if first.FeeReserveSat < 20 {
		t.Fatalf("reserve %d ignores the probe's 20 sat", first.FeeReserveSat)
	}
	for _, n := range fx.nodes {
		n.SetFeeMsat(90_000)
	}
	second, err := pool.PayInvoice(context.Background(), pay("p2", "alice", fx.net.OutsideInvoice(700)))
	if err != nil {
		t.Fatal(err)
	}
	if second.FeeReserveSat != first.FeeReserveSat {
		t.Fatalf("reserve %d, want the cached probe's %d for the same destination and amount bucket", second.FeeReserveSat, first.FeeReserveSat)
	}
}

func TestOwnPoolInvoiceIsPaidInsideTheLedger(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	inv, err := pool.CreateInvoice(context.Background(), &bankdv1.CreateInvoiceRequest{AccountId: "bob", AmountSat: 4_000, RequestId: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.PayInvoice(context.Background(), pay("p1", "alice", inv.PaymentRequest))
	if err != nil || !p.Internal || p.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED {
		t.Fatalf("own-pool payment %v %v", p, err)
	}
	if a, b := fx.balance("alice"), fx.balance("bob"); a.Posted != 96_000 || b.Posted != 4_000 {
		t.Fatalf("alice %v bob %v", a, b)
	}
	// The invoice is canceled on its node so it cannot be paid there as well.
	fx.eventually("invoice canceled on its node", func() bool {
		left, _ := fx.f.InvoicesToCancel(10)
		return len(left) == 0
	})
	if err := fx.net.PayFromOutside(inv.PaymentRequest); err == nil {
		t.Fatal("an internally settled invoice could still be paid on its node")
	}
}

func TestExpiredInvoiceIsMarkedSo(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	inv, err := pool.CreateInvoice(context.Background(), &bankdv1.CreateInvoiceRequest{AccountId: "bob", AmountSat: 1_000, RequestId: "r1", ExpirySeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Minute)
	fx.net.SetClock(func() time.Time { return later })
	fx.eventually("invoice expired", func() bool {
		cur, err := fx.f.Invoice(inv.Hash)
		return err == nil && cur.State == bankdv1.InvoiceState_INVOICE_STATE_EXPIRED
	})
	if n, _ := fx.f.LndNode(inv.NodeId); n.OpenInvoices != 0 {
		t.Fatalf("node still counts the expired invoice open: %v", n)
	}
	if b := fx.balance("bob"); b.Posted != 0 {
		t.Fatalf("bob %v", b)
	}
}

func TestInvoiceWhoseRecordAnswerIsLostStaysPayable(t *testing.T) {
	fx := newFixture(t)
	pool := fx.newPool()
	fx.run(pool)
	fx.p.Intercept = func(typ bankdv1.CommandType, _ proto.Message) (bool, error) {
		if typ == bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED {
			return true, errors.New("outcome unknown") // recorded, answer lost
		}
		return false, nil
	}
	req := &bankdv1.CreateInvoiceRequest{AccountId: "bob", AmountSat: 1_500, RequestId: "r1"}
	if _, err := pool.CreateInvoice(context.Background(), req); err == nil {
		t.Fatal("a lost answer reported as success")
	}
	fx.p.Intercept = nil
	inv, err := pool.CreateInvoice(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.net.PayFromOutside(inv.PaymentRequest); err != nil {
		t.Fatalf("the recorded invoice cannot be paid: %v", err)
	}
	fx.eventually("bob credited", func() bool { return fx.balance("bob").Posted == 1_500 })
}

// countingClient counts the calls of a node that spend or probe.
type countingClient struct {
	lnd.Client
	mu    sync.Mutex
	calls int
}

func (c *countingClient) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func (c *countingClient) EstimateRouteFee(ctx context.Context, dest string, amountSat int64) (int64, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.Client.EstimateRouteFee(ctx, dest, amountSat)
}

func (c *countingClient) SendPayment(ctx context.Context, req lnd.SendPaymentRequest) (lnd.PaymentStream, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return c.Client.SendPayment(ctx, req)
}

// TestOnlyCustomerAccountsThatCannotGoNegativePay: the pool refuses a payer before it asks any
// node anything (no fee probe, no send) and records nothing: an account of the pool itself, the
// bank's own side, and a customer account created without non_negative, which could otherwise
// pay an invoice it cannot cover and go negative.
func TestOnlyCustomerAccountsThatCannotGoNegativePay(t *testing.T) {
	fx := newFixture(t)
	fx.p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{Account: &bankdv1.Account{
		Id: "loose", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}})
	fx.p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
		{Id: "fund-loose", DebitAccountId: "treasury", CreditAccountId: "loose", Amount: 500, Currency: "BTC"},
	}})
	counted := map[string]*countingClient{}
	for id, n := range fx.nodes {
		counted[id] = &countingClient{Client: n}
	}
	pool := fx.newPool()
	pool.dial = func(_ context.Context, n *bankdv1.LndNode) (lnd.Client, error) { return counted[n.Id], nil }
	fx.run(pool)
	own, err := pool.CreateInvoice(context.Background(), &bankdv1.CreateInvoiceRequest{AccountId: "bob", AmountSat: 2_000, RequestId: "inv-bob"})
	if err != nil {
		t.Fatal(err)
	}
	before := fx.p.Count(bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START)
	for _, tc := range []struct {
		name, account, bolt11, want string
		code                        bankdv1.ResultCode
	}{
		{"an account created without non_negative, beyond its balance", "loose", fx.net.OutsideInvoice(1_000), "non_negative", bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT},
		{"the same, for an invoice of our own pool", "loose", own.PaymentRequest, "non_negative", bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT},
		{"the bank's own equity", "treasury", fx.net.OutsideInvoice(1_000), "EQUITY", bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT},
		{"the pool's capital account", fsm.LightningCapitalAccount, fx.net.OutsideInvoice(1_000), "lightning driver", bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT},
		{"a pool node's account", fsm.LightningNodeAccount("pool-1"), fx.net.OutsideInvoice(1_000), "lightning driver", bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT},
		{"no such account", "nobody", fx.net.OutsideInvoice(1_000), "nobody", bankdv1.ResultCode_RESULT_CODE_NOT_FOUND},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pool.PayInvoice(context.Background(), pay("p-"+tc.account, tc.account, tc.bolt11))
			var fe *fsm.Error
			if !errors.As(err, &fe) || fe.Code != tc.code || !strings.HasPrefix(fe.Message, "account_id: ") || !strings.Contains(fe.Message, tc.want) {
				t.Fatalf("err %v, want %s naming account_id and %q", err, tc.code, tc.want)
			}
		})
	}
	if n := fx.p.Count(bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START); n != before {
		t.Fatalf("%d refused payments reached the state machine", n-before)
	}
	for id, c := range counted {
		if c.count() != 0 {
			t.Fatalf("%s was asked to probe or pay %d times for refused payers", id, c.count())
		}
	}
	if b := fx.balance("loose"); b.Posted != 500 || b.Available != 500 {
		t.Fatalf("loose %v", b)
	}
}
