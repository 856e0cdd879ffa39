package systemtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/invoicesrpc"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/regtest"
)

// lightningStack is a bankd cluster whose lnd pool is a real regtest stack: btcd, three pool
// lnd and one external lnd (the outside world) with a channel to each pool node.
type lightningStack struct {
	t        *testing.T
	c        *testcluster.ProcCluster
	lg       *regtest.Lightning
	invoices invoicesrpc.InvoicesClient // of the external node: hold invoices
}

func startLightningStack(t *testing.T) *lightningStack {
	t.Helper()
	regtest.RequireLnd(t)
	btcd := regtest.StartTest(t, regtest.Options{})
	lg := regtest.StartLightningTest(t, btcd, regtest.LightningOptions{})
	c := startCluster(t, testcluster.Spec{Chain: &testcluster.Chain{Network: "regtest"}, Extra: lg.PoolHCL()})
	conn, err := regtest.DialLnd(lg.External.RPCAddr, lg.External.TLSCertPath, lg.External.MacaroonPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &lightningStack{t: t, c: c, lg: lg, invoices: invoicesrpc.NewInvoicesClient(conn)}
	s.waitUsable(len(lg.Pool))
	return s
}

// ln returns a Lightning client of any running node (calls are forwarded to the leader).
func (s *lightningStack) ln() bankdv1connect.LightningServiceClient {
	return s.c.Client(followerOf(s.c, -1), testcluster.AdminToken).Lightning
}

// eventually retries fn (which reports done, or an error that is fatal) every 200 ms until
// the deadline; Unavailable answers (elections, the pool reconciling) are retried too.
func (s *lightningStack) eventually(what string, d time.Duration, fn func() (bool, error)) {
	s.t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		done, err := fn()
		if err == nil && done {
			return
		}
		if err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
			s.t.Fatalf("%s: %v", what, err)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("%s: not within %s (last error: %v)", what, d, last)
}

func (s *lightningStack) waitUsable(n int) {
	s.t.Helper()
	s.eventually(fmt.Sprintf("%d usable pool nodes", n), 90*time.Second, func() (bool, error) {
		res, err := s.ln().ListNodes(context.Background(), connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
		if err != nil {
			return false, err
		}
		usable := 0
		for _, node := range res.Msg.Nodes {
			if node.State == bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE && node.Reachable && node.SyncedToChain && node.Pubkey != "" {
				usable++
			}
		}
		return usable >= n, nil
	})
}

func (s *lightningStack) invoice(account string, sat int64) *bankdv1.LnInvoice {
	s.t.Helper()
	var inv *bankdv1.LnInvoice
	req := &bankdv1.CreateInvoiceRequest{AccountId: account, AmountSat: sat, RequestId: randomID("inv")}
	s.eventually("create invoice", 30*time.Second, func() (bool, error) {
		res, err := s.ln().CreateInvoice(context.Background(), connect.NewRequest(req))
		if err != nil {
			return false, err
		}
		inv = res.Msg.Invoice
		return true, nil
	})
	return inv
}

func (s *lightningStack) pay(id, account, bolt11 string, wait time.Duration) (*bankdv1.LnPayment, error) {
	res, err := s.ln().PayInvoice(context.Background(), connect.NewRequest(&bankdv1.PayInvoiceRequest{
		Id: id, AccountId: account, PaymentRequest: bolt11, WaitMs: wait.Milliseconds(),
	}))
	if err != nil {
		return nil, err
	}
	return res.Msg.Payment, nil
}

// payRetrying pays, retrying Unavailable answers (a new leader reconciling) with the same id.
func (s *lightningStack) payRetrying(id, account, bolt11 string, wait time.Duration) *bankdv1.LnPayment {
	s.t.Helper()
	var p *bankdv1.LnPayment
	s.eventually("pay "+id, 60*time.Second, func() (bool, error) {
		var err error
		p, err = s.pay(id, account, bolt11, wait)
		return err == nil, err
	})
	return p
}

func (s *lightningStack) waitPayment(id string, want bankdv1.PaymentState) *bankdv1.LnPayment {
	s.t.Helper()
	var p *bankdv1.LnPayment
	s.eventually("payment "+id+" "+want.String(), 60*time.Second, func() (bool, error) {
		res, err := s.ln().GetPayment(context.Background(), connect.NewRequest(&bankdv1.GetPaymentRequest{Id: id}))
		if err != nil {
			return false, err
		}
		p = res.Msg.Payment
		if p.State != want && p.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
			s.t.Fatalf("payment %s is %s (%s), want %s", id, p.State, p.FailureReason, want)
		}
		return p.State == want, nil
	})
	return p
}

func (s *lightningStack) waitPosted(account string, want int64) {
	s.t.Helper()
	s.eventually(fmt.Sprintf("%s posted %d", account, want), 60*time.Second, func() (bool, error) {
		b, err := tryBalance(s.t, s.c.Client(followerOf(s.c, -1), testcluster.ClientToken), account)
		if err != nil {
			return false, err
		}
		if b.Posted > want {
			s.t.Fatalf("%s has %d posted, more than %d: credited twice", account, b.Posted, want)
		}
		return b.Posted == want && b.CreditsPending == 0 && b.DebitsPending == 0, nil
	})
}

// holdInvoice makes the external node issue an invoice whose HTLCs it holds until settle.
func (s *lightningStack) holdInvoice(sat int64) (bolt11 string, settle func()) {
	s.t.Helper()
	pre := make([]byte, 32)
	_, _ = rand.Read(pre)
	hash := sha256.Sum256(pre)
	ctx := context.Background()
	res, err := s.invoices.AddHoldInvoice(ctx, &invoicesrpc.AddHoldInvoiceRequest{Hash: hash[:], Value: sat, Expiry: 3600})
	if err != nil {
		s.t.Fatalf("add hold invoice: %v", err)
	}
	return res.PaymentRequest, func() {
		s.t.Helper()
		s.eventually("external accepts the held HTLC", 60*time.Second, func() (bool, error) {
			inv, err := s.lg.External.Client.LookupInvoice(ctx, &lnrpc.PaymentHash{RHash: hash[:]})
			return err == nil && inv.State == lnrpc.Invoice_ACCEPTED, nil
		})
		if _, err := s.invoices.SettleInvoice(ctx, &invoicesrpc.SettleInvoiceMsg{Preimage: pre}); err != nil {
			s.t.Fatalf("settle hold invoice: %v", err)
		}
	}
}

// externalReceived returns what the external node received for an invoice, and its state.
func (s *lightningStack) externalReceived(hashHex string) (int64, lnrpc.Invoice_InvoiceState) {
	s.t.Helper()
	inv, err := s.lg.External.Client.LookupInvoice(context.Background(), &lnrpc.PaymentHash{RHashStr: hashHex})
	if err != nil {
		s.t.Fatalf("lookup external invoice: %v", err)
	}
	return inv.AmtPaidSat, inv.State
}

func (s *lightningStack) poolNode(id string) *regtest.Lnd {
	s.t.Helper()
	for _, n := range s.lg.PoolNodes() {
		if n.Name == id {
			return n
		}
	}
	s.t.Fatalf("no pool lnd %q", id)
	return nil
}

func (s *lightningStack) requireReconciled() {
	s.t.Helper()
	s.eventually("reconciliation reads zero", 30*time.Second, func() (bool, error) {
		res, err := s.ln().Reconcile(context.Background(), connect.NewRequest(&bankdv1.ReconcileLightningRequest{}))
		if err != nil {
			return false, err
		}
		for _, r := range res.Msg.Nodes {
			if r.Error != "" || r.DifferenceSat != 0 {
				s.t.Logf("reconciliation: %v", r)
				return false, nil
			}
		}
		return len(res.Msg.Nodes) > 0, nil
	})
}

func randomID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// TestLightningPool runs the pool against real lnd nodes, in one stack whose state carries from
// step to step (balances below are cumulative).
func TestLightningPool(t *testing.T) {
	if testing.Short() {
		t.Skip("real lnd; skipped with -short")
	}
	s := startLightningStack(t)
	_, cl := leaderClient(t, s.c)
	for _, id := range []string{"alice", "bob", "carol", "dave"} {
		createAccount(t, cl, id, liability, true)
	}
	createAccount(t, cl, "treasury", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	// fund retries with the same transfer id through any running node: earlier steps kill and
	// restart nodes.
	fund := func(id string, amount int64) {
		t.Helper()
		tr := xfer(randomID("fund"), "treasury", id, amount)
		s.eventually("fund "+id, 30*time.Second, func() (bool, error) {
			res, err := s.c.Client(followerOf(s.c, -1), testcluster.AdminToken).Ledger.CreateTransfers(context.Background(),
				connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{tr}}))
			if err != nil {
				return false, err
			}
			if r := res.Msg.Results[0]; r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
				t.Fatalf("fund %s: %v", id, r)
			}
			return true, nil
		})
	}
	fund("alice", 500_000)
	want := map[string]int64{"alice": 500_000}

	t.Run("invoice paid from outside is credited once", func(t *testing.T) {
		inv := s.invoice("bob", 5_000)
		if _, _, err := s.lg.External.PayInvoice(context.Background(), inv.PaymentRequest); err != nil {
			t.Fatal(err)
		}
		want["bob"] += 5_000
		s.waitPosted("bob", want["bob"])
	})

	t.Run("leader dies between settle and credit", func(t *testing.T) {
		inv := s.invoice("bob", 3_000)
		leader, _ := leaderClient(t, s.c)
		if err := s.c.Pause(leader); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.lg.External.PayInvoice(context.Background(), inv.PaymentRequest); err != nil {
			t.Fatal(err)
		}
		if err := s.c.Kill(leader); err != nil {
			t.Fatal(err)
		}
		want["bob"] += 3_000
		s.waitPosted("bob", want["bob"])
		if err := s.c.Restart(leader); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("invoice settled while the whole cluster was down", func(t *testing.T) {
		inv := s.invoice("carol", 4_000)
		for i := range s.c.Nodes {
			if err := s.c.Stop(i); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := s.lg.External.PayInvoice(context.Background(), inv.PaymentRequest); err != nil {
			t.Fatal(err)
		}
		for i := range s.c.Nodes {
			if err := s.c.Restart(i); err != nil {
				t.Fatal(err)
			}
		}
		want["carol"] += 4_000
		s.waitPosted("carol", want["carol"])
	})

	t.Run("outgoing payment succeeds", func(t *testing.T) {
		bolt11, hash, err := s.lg.External.AddInvoice(context.Background(), 2_000, "succeeds")
		if err != nil {
			t.Fatal(err)
		}
		p := s.payRetrying(randomID("pay"), "alice", bolt11, 30*time.Second)
		p = s.waitPayment(p.Id, bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED)
		want["alice"] -= 2_000 + p.FeeSat
		s.waitPosted("alice", want["alice"])
		if got, state := s.externalReceived(hash); got != 2_000 || state != lnrpc.Invoice_SETTLED {
			t.Fatalf("external received %d (%s), want 2000", got, state)
		}
		if p.Preimage == "" || p.NodeId == "" {
			t.Fatalf("succeeded payment %v", p)
		}
	})

	t.Run("outgoing payment fails and releases the money", func(t *testing.T) {
		bolt11, hash, err := s.lg.External.AddInvoice(context.Background(), 1_500, "canceled")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := hex.DecodeString(hash)
		if _, err := s.invoices.CancelInvoice(context.Background(), &invoicesrpc.CancelInvoiceMsg{PaymentHash: raw}); err != nil {
			t.Fatal(err)
		}
		p := s.payRetrying(randomID("pay"), "alice", bolt11, 30*time.Second)
		p = s.waitPayment(p.Id, bankdv1.PaymentState_PAYMENT_STATE_FAILED)
		if p.FailureReason == "" {
			t.Fatalf("failed payment without a reason: %v", p)
		}
		s.waitPosted("alice", want["alice"])
	})

	t.Run("invoice of our own pool settles inside the ledger", func(t *testing.T) {
		inv := s.invoice("bob", 1_000)
		if _, err := s.pay(randomID("self"), "bob", inv.PaymentRequest, 0); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("paying one's own invoice: %v, want FailedPrecondition", err)
		}
		p := s.payRetrying(randomID("pay"), "alice", inv.PaymentRequest, 0)
		if !p.Internal || p.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED || p.NodeId != "" {
			t.Fatalf("own-pool payment %v", p)
		}
		want["alice"] -= 1_000
		want["bob"] += 1_000
		s.waitPosted("alice", want["alice"])
		s.waitPosted("bob", want["bob"])
	})

	t.Run("paying lnd killed mid-payment pays once", func(t *testing.T) {
		bolt11, settle := s.holdInvoice(2_500)
		p := s.payRetrying(randomID("pay"), "alice", bolt11, 0)
		if p.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
			t.Fatalf("held payment %v", p)
		}
		node := s.poolNode(p.NodeId)
		s.eventually("HTLC held at external", 30*time.Second, func() (bool, error) {
			inv, err := s.lg.External.Client.LookupInvoice(context.Background(), &lnrpc.PaymentHash{RHashStr: p.Hash})
			return err == nil && inv.State == lnrpc.Invoice_ACCEPTED, nil
		})
		node.Kill()
		time.Sleep(3 * time.Second) // the pool sees the node down; the payment must stay in flight
		if cur := s.waitPaymentState(p.Id); cur.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
			t.Fatalf("payment on a dead node left flight: %v", cur)
		}
		if err := node.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
		settle()
		done := s.waitPayment(p.Id, bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED)
		want["alice"] -= 2_500 + done.FeeSat
		s.waitPosted("alice", want["alice"])
		if got, _ := s.externalReceived(p.Hash); got != 2_500 {
			t.Fatalf("external received %d, want 2500 once", got)
		}
	})

	t.Run("leader failover mid-payment", func(t *testing.T) {
		bolt11, settle := s.holdInvoice(1_200)
		p := s.payRetrying(randomID("pay"), "alice", bolt11, 0)
		leader, _ := leaderClient(t, s.c)
		s.eventually("HTLC held at external", 30*time.Second, func() (bool, error) {
			inv, err := s.lg.External.Client.LookupInvoice(context.Background(), &lnrpc.PaymentHash{RHashStr: p.Hash})
			return err == nil && inv.State == lnrpc.Invoice_ACCEPTED, nil
		})
		if err := s.c.Kill(leader); err != nil {
			t.Fatal(err)
		}
		settle()
		done := s.waitPayment(p.Id, bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED)
		want["alice"] -= 1_200 + done.FeeSat
		s.waitPosted("alice", want["alice"])
		if got, _ := s.externalReceived(p.Hash); got != 1_200 {
			t.Fatalf("external received %d, want 1200 once", got)
		}
		if err := s.c.Restart(leader); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("50 concurrent sends from one account never overdraw", func(t *testing.T) {
		s.waitUsable(len(s.lg.Pool))
		fund("dave", 10_000)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var started []*bankdv1.LnPayment
		refused := 0
		for i := range 50 {
			bolt11, _, err := s.lg.External.AddInvoice(context.Background(), 900, fmt.Sprintf("burst %d", i))
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := &bankdv1.PayInvoiceRequest{Id: randomID("burst"), AccountId: "dave", PaymentRequest: bolt11, MaxFeeSat: 10, WaitMs: 30_000}
				res, err := s.ln().PayInvoice(context.Background(), connect.NewRequest(req))
				for try := 0; connect.CodeOf(err) == connect.CodeUnavailable && try < 50; try++ {
					time.Sleep(100 * time.Millisecond) // an election or a node restarting: retry, same id
					res, err = s.ln().PayInvoice(context.Background(), connect.NewRequest(req))
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if connect.CodeOf(err) != connect.CodeFailedPrecondition {
						t.Errorf("burst payment: %v", err)
					}
					refused++
					return
				}
				started = append(started, res.Msg.Payment)
			}()
		}
		wg.Wait()
		// 10,000 sat covers ten holds of 910 at once; a payment that succeeds without a fee
		// releases its 10-sat reserve, so at most 10,000 / 900 = 11 can ever start.
		if len(started) > 11 || len(started) < 10 || len(started)+refused != 50 {
			t.Fatalf("%d payments started, %d refused", len(started), refused)
		}
		spent := int64(0)
		for _, p := range started {
			p = s.waitPayment(p.Id, bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED)
			spent += p.AmountSat + p.FeeSat
		}
		if spent > 10_000 {
			t.Fatalf("dave spent %d of 10000", spent)
		}
		s.waitPosted("dave", 10_000-spent)
		t.Logf("%d of 50 concurrent payments started and succeeded, %d refused; dave spent %d of 10000", len(started), refused, spent)
	})

	t.Run("ledger and channels reconcile", func(t *testing.T) {
		s.requireReconciled()
	})

	t.Run("a node added at runtime takes work", func(t *testing.T) {
		n4, err := s.lg.AddPoolNode(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.ln().AddNode(context.Background(), connect.NewRequest(&bankdv1.AddLndNodeRequest{
			Id: n4.Name, Address: n4.RPCAddr, TlsCertPath: n4.TLSCertPath, MacaroonPath: n4.MacaroonPath,
		}))
		if err != nil || !res.Msg.Created {
			t.Fatalf("add %s: %v %v", n4.Name, err, res)
		}
		s.waitUsable(len(s.lg.PoolNodes()))
		s.requireReconciled()
	})

	t.Run("a macaroon without permission never makes a node usable", func(t *testing.T) {
		pool1 := s.poolNode("pool-1")
		invoiceOnly := filepath.Join(filepath.Dir(pool1.MacaroonPath), "invoice.macaroon")
		if _, err := s.ln().AddNode(context.Background(), connect.NewRequest(&bankdv1.AddLndNodeRequest{
			Id: "pool-1-invoice-macaroon", Address: pool1.RPCAddr, TlsCertPath: pool1.TLSCertPath, MacaroonPath: invoiceOnly,
		})); err != nil {
			t.Fatal(err)
		}
		s.eventually("the node reported down for its macaroon", 30*time.Second, func() (bool, error) {
			res, err := s.ln().ListNodes(context.Background(), connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
			if err != nil {
				return false, err
			}
			for _, n := range res.Msg.Nodes {
				if n.Id == "pool-1-invoice-macaroon" {
					if n.Pubkey != "" || n.Reachable {
						t.Fatalf("a node reached with an invoice-only macaroon was trusted: %v", n)
					}
					return strings.Contains(n.HealthError, "macaroon"), nil
				}
			}
			return false, nil
		})
	})

	t.Run("draining a node with an open invoice", func(t *testing.T) {
		inv := s.invoice("carol", 700)
		drained := inv.NodeId
		res, err := s.ln().DrainNode(context.Background(), connect.NewRequest(&bankdv1.DrainLndNodeRequest{Id: drained}))
		if err != nil || res.Msg.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_DRAINING {
			t.Fatalf("drain %s: %v %v", drained, err, res)
		}
		if other := s.invoice("carol", 800); other.NodeId == drained {
			t.Fatalf("a draining node got a new invoice: %v", other)
		}
		time.Sleep(3 * time.Second) // several health ticks: it must not retire with an open invoice
		nodes, err := s.ln().ListNodes(context.Background(), connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes.Msg.Nodes {
			if n.Id == drained && n.State != bankdv1.LndNodeState_LND_NODE_STATE_DRAINING {
				t.Fatalf("node with an open invoice left DRAINING: %v", n)
			}
		}
		if _, _, err := s.lg.External.PayInvoice(context.Background(), inv.PaymentRequest); err != nil {
			t.Fatal(err)
		}
		want["carol"] += 700
		s.waitPosted("carol", want["carol"])
		s.eventually(drained+" retired", 60*time.Second, func() (bool, error) {
			res, err := s.ln().ListNodes(context.Background(), connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
			if err != nil {
				return false, err
			}
			for _, n := range res.Msg.Nodes {
				if n.Id == drained {
					return n.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED, nil
				}
			}
			return false, nil
		})
	})

	for id, w := range want {
		s.waitPosted(id, w)
	}
	requireSameStateHash(t, s.c)
}

// waitPaymentState reads a payment (any state).
func (s *lightningStack) waitPaymentState(id string) *bankdv1.LnPayment {
	s.t.Helper()
	var p *bankdv1.LnPayment
	s.eventually("read payment "+id, 30*time.Second, func() (bool, error) {
		res, err := s.ln().GetPayment(context.Background(), connect.NewRequest(&bankdv1.GetPaymentRequest{Id: id}))
		if err != nil {
			return false, err
		}
		p = res.Msg.Payment
		return true, nil
	})
	return p
}
