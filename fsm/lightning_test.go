package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

const testPubkey = "02" + "1111111111111111111111111111111111111111111111111111111111111111"

// preimageAndHash returns a preimage and its payment hash, both hex, numbered n.
func preimageAndHash(n int) (preimage, hash string) {
	pre := sha256.Sum256([]byte(fmt.Sprintf("preimage %d", n)))
	h := sha256.Sum256(pre[:])
	return hex.EncodeToString(pre[:]), hex.EncodeToString(h[:])
}

// lightningFixture is a state machine with one healthy pool node holding 1,000,000 sat and two
// customers, alice (100,000 sat) and bob (nothing).
func lightningFixture(t *testing.T) *testFSM {
	t.Helper()
	tf := openTestFSM(t)
	tf.mustOK(tf.upsertNode("pool-1"))
	tf.mustOK(tf.health("pool-1", true, testPubkey, 1_000_000))
	for _, id := range []string{"alice", "bob", "treasury"} {
		kind := bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY
		if id == "treasury" {
			kind = bankdv1.AccountKind_ACCOUNT_KIND_EQUITY
		}
		if res := tf.createAccount(&bankdv1.Account{Id: id, Currency: "BTC", Kind: kind, NonNegative: id != "treasury"}); isRefusal(res) {
			t.Fatalf("create %s: %v", id, res)
		}
	}
	tf.mustOK(tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
		{Id: "fund-alice", DebitAccountId: "treasury", CreditAccountId: "alice", Amount: 100_000, Currency: "BTC"},
	}}, nil))
	return tf
}

func isRefusal(res any) bool {
	_, ok := res.(*Error)
	return ok
}

func (tf *testFSM) mustOK(res any) any {
	tf.t.Helper()
	if e, ok := res.(*Error); ok {
		tf.t.Fatalf("refused: %v", e)
	}
	if err, ok := res.(error); ok {
		tf.t.Fatalf("failed: %v", err)
	}
	if r, ok := res.(*bankdv1.CreateTransfersResponse); ok {
		for _, x := range r.Results {
			if x.Code != bankdv1.ResultCode_RESULT_CODE_OK {
				tf.t.Fatalf("transfer %s: %s", x.Id, x.Message)
			}
		}
	}
	return res
}

func (tf *testFSM) upsertNode(id string) any {
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT, &bankdv1.UpsertLndNodeRequest{
		Id: id, Address: "127.0.0.1:10009", TlsCertPath: "/lnd/" + id + "/tls.cert", MacaroonPath: "/lnd/" + id + "/admin.macaroon",
	}, nil)
}

func (tf *testFSM) health(id string, up bool, pubkey string, opening int64) any {
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_HEALTH, &bankdv1.LndNodeHealth{
		Id: id, Reachable: up, SyncedToChain: up, Pubkey: pubkey, OpeningBalanceSat: opening,
	}, nil)
}

func (tf *testFSM) invoice(n int, account, node string, sat int64) any {
	_, hash := preimageAndHash(n)
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED, &bankdv1.LnInvoiceCreated{Invoice: &bankdv1.LnInvoice{
		Hash: hash, AccountId: account, NodeId: node, AmountSat: sat, PaymentRequest: "lnbcrt" + hash,
		ExpiresUnixMs: tf.nowMs + 3_600_000, AddIndex: uint64(n), RequestId: fmt.Sprintf("inv-%d", n),
	}}, nil)
}

func (tf *testFSM) settle(node string, fromSubscription bool, updates ...*bankdv1.LnInvoiceUpdate) any {
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_UPDATES, &bankdv1.LnInvoiceUpdates{NodeId: node, Updates: updates, FromSubscription: fromSubscription}, nil)
}

func settled(n int, settleIndex uint64, paid int64) *bankdv1.LnInvoiceUpdate {
	_, hash := preimageAndHash(n)
	return &bankdv1.LnInvoiceUpdate{Hash: hash, State: bankdv1.InvoiceState_INVOICE_STATE_SETTLED, SettleIndex: settleIndex, AmountPaidSat: paid, AddIndex: uint64(n)}
}

func (tf *testFSM) startPayment(id, account string, n int, sat, reserve int64, node string) any {
	_, hash := preimageAndHash(n)
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START, &bankdv1.LnPaymentStart{
		Id: id, AccountId: account, Hash: hash, PaymentRequest: "lnbcrt" + hash, Destination: "03" + hash[:64],
		AmountSat: sat, FeeReserveSat: reserve, NodeId: node,
	}, nil)
}

func (tf *testFSM) paymentResult(id string, attempt uint32, n int, fee int64, failure string) any {
	pre, _ := preimageAndHash(n)
	res := &bankdv1.LnPaymentResult{Id: id, Attempt: attempt, Succeeded: failure == "", FeeSat: fee, Preimage: pre, FailureReason: failure}
	if failure != "" {
		res.Preimage = ""
	}
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_RESULT, res, nil)
}

func (tf *testFSM) node(id string) *bankdv1.LndNode {
	tf.t.Helper()
	n, err := tf.LndNode(id)
	if err != nil {
		tf.t.Fatalf("node %s: %v", id, err)
	}
	return n
}

func TestPoolNodeRegistry(t *testing.T) {
	tf := openTestFSM(t)
	res := tf.mustOK(tf.upsertNode("pool-1")).(*bankdv1.UpsertLndNodeResponse)
	if !res.Created || res.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE || LndNodeUsable(res.Node) {
		t.Fatalf("new node: %v (a node is usable only once it answered)", res)
	}
	if again := tf.mustOK(tf.upsertNode("pool-1")).(*bankdv1.UpsertLndNodeResponse); again.Created {
		t.Fatal("registering the same node twice created it twice")
	}

	// First contact binds the pubkey and posts the opening balance from ln-capital, once.
	tf.mustOK(tf.health("pool-1", true, testPubkey, 500_000))
	tf.mustOK(tf.health("pool-1", false, "", 0))
	tf.mustOK(tf.health("pool-1", true, testPubkey, 900_000)) // a later opening balance is ignored
	if b := tf.balance("ln:pool-1"); b.Posted != 500_000 {
		t.Fatalf("ln:pool-1 %v, want the first opening balance 500000 once", b)
	}
	if b := tf.balance(LightningCapitalAccount); b.Posted != 500_000 {
		t.Fatalf("ln-capital %v", b)
	}
	if n := tf.node("pool-1"); !LndNodeUsable(n) {
		t.Fatalf("healthy node not usable: %v", n)
	}

	// Another lnd answering at the node's address is never trusted.
	other := "03" + testPubkey[2:]
	tf.mustOK(tf.health("pool-1", true, other, 0))
	if n := tf.node("pool-1"); LndNodeUsable(n) || n.Pubkey != testPubkey || n.HealthError == "" {
		t.Fatalf("node answering with another pubkey: %v", n)
	}

	for _, tc := range []struct {
		name string
		req  *bankdv1.UpsertLndNodeRequest
		msg  string
	}{
		{"bad id", &bankdv1.UpsertLndNodeRequest{Id: "pool 1", Address: "h:1", TlsCertPath: "/c", MacaroonPath: "/m"}, "id:"},
		{"no port", &bankdv1.UpsertLndNodeRequest{Id: "p", Address: "localhost", TlsCertPath: "/c", MacaroonPath: "/m"}, "address:"},
		{"ipv6 without port", &bankdv1.UpsertLndNodeRequest{Id: "p", Address: "[::1]", TlsCertPath: "/c", MacaroonPath: "/m"}, "address:"},
		{"port not a number", &bankdv1.UpsertLndNodeRequest{Id: "p", Address: "localhost:abc", TlsCertPath: "/c", MacaroonPath: "/m"}, "address:"},
		{"port too large", &bankdv1.UpsertLndNodeRequest{Id: "p", Address: "localhost:99999", TlsCertPath: "/c", MacaroonPath: "/m"}, "address:"},
		{"no host", &bankdv1.UpsertLndNodeRequest{Id: "p", Address: ":10009", TlsCertPath: "/c", MacaroonPath: "/m"}, "address:"},
		{"relative cert", &bankdv1.UpsertLndNodeRequest{Id: "p", Address: "h:1", TlsCertPath: "tls.cert", MacaroonPath: "/m"}, "tls_cert_path:"},
		{"no macaroon", &bankdv1.UpsertLndNodeRequest{Id: "p", Address: "h:1", TlsCertPath: "/c"}, "macaroon_path:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusal(t, tf.do(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT, tc.req, nil), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, tc.msg)
		})
	}
	refusal(t, tf.health("pool-9", true, testPubkey, 0), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "pool-9")

	// The same lnd registered under a second id is never bound: its channels would be
	// counted twice.
	tf.mustOK(tf.upsertNode("pool-2"))
	tf.mustOK(tf.health("pool-2", true, testPubkey, 500_000))
	if n := tf.node("pool-2"); LndNodeUsable(n) || n.Pubkey != "" || n.HealthError == "" {
		t.Fatalf("second registration of one lnd: %v", n)
	}
	if b := tf.balance("ln:pool-2"); b.Posted != 0 {
		t.Fatalf("opening balance posted twice: %v", b)
	}
	refusal(t, tf.health("pool-1", true, "zz", 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "pubkey")
}

func TestInvoiceIsCreditedExactlyOnce(t *testing.T) {
	tf := lightningFixture(t)
	inv := tf.mustOK(tf.invoice(1, "bob", "pool-1", 2_000)).(*bankdv1.CreateInvoiceResponse).Invoice
	if inv.State != bankdv1.InvoiceState_INVOICE_STATE_OPEN || tf.node("pool-1").OpenInvoices != 1 {
		t.Fatalf("new invoice %v, node %v", inv, tf.node("pool-1"))
	}
	// The same request again answers with the same invoice.
	if again := tf.mustOK(tf.invoice(1, "bob", "pool-1", 2_000)).(*bankdv1.CreateInvoiceResponse).Invoice; again.Hash != inv.Hash {
		t.Fatalf("replayed invoice %v", again)
	}

	// Settled from the subscription, then the same settlement from a sweep and again from a
	// resubscription after a failover: one credit.
	res := tf.mustOK(tf.settle("pool-1", true, settled(1, 7, 2_000))).(*bankdv1.LnInvoiceUpdatesResponse)
	tf.mustOK(tf.settle("pool-1", false, settled(1, 7, 2_000)))
	tf.mustOK(tf.settle("pool-1", true, settled(1, 7, 2_000)))
	if res.Settled != 1 {
		t.Fatalf("updates response %v", res)
	}
	if b := tf.balance("bob"); b.Posted != 2_000 || b.CreditsPosted != 2_000 {
		t.Fatalf("bob %v, want 2000 credited once", b)
	}
	if b := tf.balance("ln:pool-1"); b.Posted != 1_002_000 {
		t.Fatalf("ln:pool-1 %v", b)
	}
	n := tf.node("pool-1")
	if n.OpenInvoices != 0 || n.SettleIndex != 7 {
		t.Fatalf("node after settlement %v", n)
	}
	got, err := tf.Invoice(inv.Hash)
	if err != nil || got.State != bankdv1.InvoiceState_INVOICE_STATE_SETTLED || got.SettleIndex != 7 || got.AmountPaidSat != 2_000 {
		t.Fatalf("invoice after settlement %v, %v", got, err)
	}
}

func TestSweepUpdatesLeaveTheCursor(t *testing.T) {
	tf := lightningFixture(t)
	tf.mustOK(tf.invoice(1, "bob", "pool-1", 1_000))
	tf.mustOK(tf.invoice(2, "bob", "pool-1", 1_000))
	// A sweep finds invoice 2 settled at index 5 before the subscription delivered invoice 1
	// at index 4: the cursor must stay below 4 so a resubscription still replays it.
	tf.mustOK(tf.settle("pool-1", false, settled(2, 5, 1_000)))
	if n := tf.node("pool-1"); n.SettleIndex != 0 {
		t.Fatalf("a sweep moved the settle cursor: %v", n)
	}
	tf.mustOK(tf.settle("pool-1", true, settled(1, 4, 1_000), settled(2, 5, 1_000)))
	if n := tf.node("pool-1"); n.SettleIndex != 5 {
		t.Fatalf("cursor %d, want 5", n.SettleIndex)
	}
	if b := tf.balance("bob"); b.Posted != 2_000 {
		t.Fatalf("bob %v, want 2000", b)
	}
}

func TestUnknownSettlementGoesToUnattributedOnce(t *testing.T) {
	tf := lightningFixture(t)
	tf.mustOK(tf.settle("pool-1", true, settled(99, 3, 777)))
	tf.mustOK(tf.settle("pool-1", true, settled(99, 3, 777)))
	if b := tf.balance(LightningUnattributedAccount); b.Posted != 777 {
		t.Fatalf("unattributed %v, want 777 once", b)
	}
}

func TestInvoiceExpires(t *testing.T) {
	tf := lightningFixture(t)
	tf.mustOK(tf.invoice(1, "bob", "pool-1", 1_000))
	_, hash := preimageAndHash(1)
	res := tf.mustOK(tf.settle("pool-1", true, &bankdv1.LnInvoiceUpdate{Hash: hash, State: bankdv1.InvoiceState_INVOICE_STATE_EXPIRED})).(*bankdv1.LnInvoiceUpdatesResponse)
	inv, _ := tf.Invoice(hash)
	if res.Expired != 1 || inv.State != bankdv1.InvoiceState_INVOICE_STATE_EXPIRED || tf.node("pool-1").OpenInvoices != 0 {
		t.Fatalf("expired: %v %v", res, inv)
	}
	// A settlement after the expiry is money we did not expect: kept, not lost.
	tf.mustOK(tf.settle("pool-1", true, settled(1, 9, 1_000)))
	if b := tf.balance("bob"); b.Posted != 0 {
		t.Fatalf("bob credited for an expired invoice: %v", b)
	}
	if b := tf.balance(LightningUnattributedAccount); b.Posted != 1_000 {
		t.Fatalf("unattributed %v", b)
	}
}

func TestInvoiceRefusals(t *testing.T) {
	tf := lightningFixture(t)
	refusal(t, tf.invoice(1, "nobody", "pool-1", 1_000), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "nobody")
	refusal(t, tf.invoice(1, "treasury", "pool-1", 1_000), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "liability")
	refusal(t, tf.invoice(1, "bob", "pool-9", 1_000), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "pool-9")
	refusal(t, tf.invoice(1, "bob", "pool-1", 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "amount_sat")
	tf.mustOK(tf.do(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE, &bankdv1.SetLndNodeStateRequest{Id: "pool-1", State: bankdv1.LndNodeState_LND_NODE_STATE_DRAINING}, nil))
	refusal(t, tf.invoice(1, "bob", "pool-1", 1_000), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "DRAINING")
}

func TestPaymentSucceeds(t *testing.T) {
	tf := lightningFixture(t)
	p := tf.mustOK(tf.startPayment("pay-1", "alice", 1, 10_000, 100, "pool-1")).(*bankdv1.LnPaymentStartResponse).Payment
	if p.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT || p.NodeId != "pool-1" || p.Attempt != 1 {
		t.Fatalf("started %v", p)
	}
	if b := tf.balance("alice"); b.Posted != 100_000 || b.Available != 89_900 {
		t.Fatalf("alice while in flight %v, want 10100 held", b)
	}
	if n := tf.node("pool-1"); n.InflightPayments != 1 {
		t.Fatalf("node %v", n)
	}
	refusal(t, tf.paymentResult("pay-1", 2, 1, 3, ""), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "attempt")
	wrong := tf.do(bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_RESULT, &bankdv1.LnPaymentResult{Id: "pay-1", Attempt: 1, Succeeded: true, Preimage: p.Hash}, nil)
	refusal(t, wrong, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "preimage")

	done := tf.mustOK(tf.paymentResult("pay-1", 1, 1, 3, "")).(*bankdv1.LnPayment)
	if done.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED || done.FeeSat != 3 {
		t.Fatalf("succeeded %v", done)
	}
	if b := tf.balance("alice"); b.Posted != 89_997 || b.Available != 89_997 || b.DebitsPending != 0 {
		t.Fatalf("alice %v, want 100000 - 10000 - 3", b)
	}
	if b := tf.balance("ln:pool-1"); b.Posted != 1_000_000-10_003 {
		t.Fatalf("ln:pool-1 %v", b)
	}
	refusal(t, tf.paymentResult("pay-1", 1, 1, 3, ""), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "SUCCEEDED")
	// Paid once: the same invoice from another payment id is refused, nothing held.
	refusal(t, tf.startPayment("pay-2", "alice", 1, 10_000, 100, "pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "already paid")
	if b := tf.balance("alice"); b.Available != 89_997 {
		t.Fatalf("a refused payment held money: %v", b)
	}
	// A retry of the same id answers with the payment, changing nothing.
	if r := tf.mustOK(tf.startPayment("pay-1", "alice", 1, 10_000, 100, "pool-1")).(*bankdv1.LnPaymentStartResponse); !r.Replayed {
		t.Fatalf("retry %v", r)
	}
}

func TestFailedPaymentReleasesAndFreesTheHash(t *testing.T) {
	tf := lightningFixture(t)
	tf.mustOK(tf.startPayment("pay-1", "alice", 1, 10_000, 100, "pool-1"))
	// While the first attempt may be in flight, no second payment of the hash starts, on this
	// node or another.
	refusal(t, tf.startPayment("pay-2", "alice", 1, 10_000, 100, "pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "in flight")
	refusal(t, tf.do(bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_RESULT, &bankdv1.LnPaymentResult{Id: "pay-1", Attempt: 1, Succeeded: true}, nil), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "preimage")

	failed := tf.mustOK(tf.paymentResult("pay-1", 1, 1, 0, "FAILURE_REASON_NO_ROUTE")).(*bankdv1.LnPayment)
	if failed.State != bankdv1.PaymentState_PAYMENT_STATE_FAILED || failed.FailureReason != "FAILURE_REASON_NO_ROUTE" {
		t.Fatalf("failed %v", failed)
	}
	if b := tf.balance("alice"); b.Posted != 100_000 || b.Available != 100_000 {
		t.Fatalf("alice after a failed payment %v, want everything back", b)
	}
	if n := tf.node("pool-1"); n.InflightPayments != 0 {
		t.Fatalf("node %v", n)
	}
	// A failed payment frees the hash: it may be paid again.
	tf.mustOK(tf.startPayment("pay-2", "alice", 1, 10_000, 100, "pool-1"))
}

func TestPaymentRefusalsDebitNothing(t *testing.T) {
	tf := lightningFixture(t)
	cases := []struct {
		name string
		res  any
		code bankdv1.ResultCode
		msg  string
	}{
		{"over the balance", tf.startPayment("p1", "alice", 1, 100_000, 1, "pool-1"), bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS, ""},
		{"no such account", tf.startPayment("p2", "carol", 2, 1_000, 0, "pool-1"), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "carol"},
		{"no such node", tf.startPayment("p3", "alice", 3, 1_000, 0, "pool-9"), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "pool-9"},
		{"zero amount", tf.startPayment("p4", "alice", 4, 0, 0, "pool-1"), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "amount_sat"},
		{"node more than the channels hold", tf.startPayment("p5", "alice", 5, 50_000, 0, "pool-1"), bankdv1.ResultCode_RESULT_CODE_OK, ""},
	}
	for _, c := range cases[:4] {
		t.Run(c.name, func(t *testing.T) { refusal(t, c.res, c.code, c.msg) })
	}
	if b := tf.balance("alice"); b.Available != 50_000 {
		t.Fatalf("alice %v: only the one valid payment may hold money", b)
	}
	tf.mustOK(tf.health("pool-1", false, "", 0))
	refusal(t, tf.startPayment("p6", "alice", 6, 1_000, 0, "pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "reachable false")
}

func TestOwnPoolInvoiceSettlesInsideTheLedger(t *testing.T) {
	tf := lightningFixture(t)
	tf.mustOK(tf.invoice(1, "bob", "pool-1", 5_000))
	refusal(t, tf.startPayment("self", "bob", 1, 5_000, 0, "pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "own")
	refusal(t, tf.startPayment("wrong", "alice", 1, 4_000, 0, "pool-1"), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "amount_sat")

	p := tf.mustOK(tf.startPayment("pay-1", "alice", 1, 5_000, 50, "")).(*bankdv1.LnPaymentStartResponse).Payment
	if !p.Internal || p.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED || p.NodeId != "" || p.FeeSat != 0 {
		t.Fatalf("internal payment %v", p)
	}
	if a, b, ln := tf.balance("alice"), tf.balance("bob"), tf.balance("ln:pool-1"); a.Posted != 95_000 || b.Posted != 5_000 || ln.Posted != 1_000_000 {
		t.Fatalf("alice %v bob %v node %v", a, b, ln)
	}
	refusal(t, tf.startPayment("pay-2", "alice", 1, 5_000, 0, "pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "already paid")
	cancel, err := tf.InvoicesToCancel(10)
	if err != nil || len(cancel) != 1 || !cancel[0].CancelOnNode {
		t.Fatalf("invoices to cancel on their node: %v %v", cancel, err)
	}
	tf.mustOK(tf.do(bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CANCELED_ON_NODE, &bankdv1.LnInvoiceCanceledOnNode{Hash: p.Hash}, nil))
	if cancel, _ := tf.InvoicesToCancel(10); len(cancel) != 0 {
		t.Fatalf("still to cancel: %v", cancel)
	}
	// Should the node settle it anyway (paid from outside before the cancel), the money is
	// kept in ln-unattributed, bob is not credited twice.
	tf.mustOK(tf.settle("pool-1", true, settled(1, 2, 5_000)))
	if b := tf.balance("bob"); b.Posted != 5_000 {
		t.Fatalf("bob credited twice: %v", b)
	}
}

func TestDrainAndRetire(t *testing.T) {
	tf := lightningFixture(t)
	setState := func(s bankdv1.LndNodeState) any {
		return tf.do(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE, &bankdv1.SetLndNodeStateRequest{Id: "pool-1", State: s}, nil)
	}
	tf.mustOK(tf.invoice(1, "bob", "pool-1", 1_000))
	tf.mustOK(tf.startPayment("pay-1", "alice", 2, 1_000, 10, "pool-1"))
	refusal(t, setState(bankdv1.LndNodeState_LND_NODE_STATE_RETIRED), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "ACTIVE")
	tf.mustOK(setState(bankdv1.LndNodeState_LND_NODE_STATE_DRAINING))
	refusal(t, tf.startPayment("pay-2", "alice", 3, 1_000, 10, "pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "DRAINING")
	refusal(t, setState(bankdv1.LndNodeState_LND_NODE_STATE_RETIRED), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "1 open invoices and 1 payments")

	// The open invoice still settles while draining; the payment resolves.
	tf.mustOK(tf.settle("pool-1", true, settled(1, 1, 1_000)))
	tf.mustOK(tf.paymentResult("pay-1", 1, 2, 1, ""))
	tf.mustOK(setState(bankdv1.LndNodeState_LND_NODE_STATE_RETIRED))
	refusal(t, setState(bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "RETIRED")
	refusal(t, tf.upsertNode("pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "retired")
	if b := tf.balance("bob"); b.Posted != 1_000 {
		t.Fatalf("bob %v", b)
	}
}
