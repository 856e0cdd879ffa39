package fsm

import (
	"fmt"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// lightningGen proposes random Lightning commands for the property test: nodes registered,
// healthy or not (some answering with another node's pubkey), drained and retired; invoices
// created, settled, expired, settled twice or never issued; payments started (some of our own
// invoices, some of hashes in flight or paid) and resolved with right and wrong attempts and
// preimages.
type lightningGen struct {
	results map[string]int
	// payments are the ids started so far; hashes numbers preimageAndHash uses.
	payments []string
	settle   uint64
}

var lightningNodes = []string{"ln-a", "ln-b", "ln-c"}

// pubkeys: ln-c answers with ln-a's key, which must never be bound twice.
var lightningPubkeys = map[string]string{
	"ln-a": "02" + "aa" + testPubkey[4:],
	"ln-b": "03" + "bb" + testPubkey[4:],
	"ln-c": "02" + "aa" + testPubkey[4:],
}

func (g *commandGen) lightningStep() {
	lg := &g.lightning
	if lg.results == nil {
		// Start with two healthy nodes holding money, so that payments can start at all.
		lg.results = map[string]int{}
		for _, id := range lightningNodes[:2] {
			g.tf.upsertNode(id)
			g.tf.health(id, true, lightningPubkeys[id], 1_000_000)
		}
	}
	node := lightningNodes[g.rng.IntN(len(lightningNodes))]
	hashN := g.rng.IntN(12)
	var typ bankdv1.CommandType
	var res any
	switch g.rng.IntN(9) {
	case 0:
		typ = bankdv1.CommandType_COMMAND_TYPE_LND_NODE_UPSERT
		res = g.tf.upsertNode(node)
	case 1:
		typ = bankdv1.CommandType_COMMAND_TYPE_LND_NODE_HEALTH
		up := g.rng.IntN(4) != 0
		pk := ""
		if up {
			pk = lightningPubkeys[node]
		}
		res = g.tf.health(node, up, pk, int64(g.rng.IntN(3))*100_000)
	case 2:
		typ = bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE
		state := []bankdv1.LndNodeState{bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE, bankdv1.LndNodeState_LND_NODE_STATE_DRAINING,
			bankdv1.LndNodeState_LND_NODE_STATE_RETIRED}[g.rng.IntN(3)]
		res = g.tf.do(typ, &bankdv1.SetLndNodeStateRequest{Id: node, State: state}, nil)
	case 3:
		typ = bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED
		res = g.tf.invoice(hashN, "acct"+fmt.Sprint(1+g.rng.IntN(3)), node, int64(1+g.rng.IntN(500)))
	case 4, 5:
		typ = bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_UPDATES
		u := settled(hashN, 0, int64(1+g.rng.IntN(5_000)))
		if g.rng.IntN(4) == 0 {
			u.State, u.AmountPaidSat = bankdv1.InvoiceState_INVOICE_STATE_EXPIRED, 0
		} else {
			if g.rng.IntN(3) != 0 {
				lg.settle++
			}
			u.SettleIndex = lg.settle + 1
		}
		res = g.tf.settle(node, g.rng.IntN(2) == 0, u)
	case 6, 7:
		typ = bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START
		id := g.id("lp")
		if len(lg.payments) > 0 && g.rng.IntN(5) == 0 {
			id = lg.payments[g.rng.IntN(len(lg.payments))] // a retry
		}
		account := g.account()
		if g.rng.IntN(4) != 0 {
			account = "acct" + fmt.Sprint(1+g.rng.IntN(3)) // the customer accounts, which hold money and may pay
		}
		res = g.tf.startPayment(id, account, hashN, int64(1+g.rng.IntN(500)), int64(g.rng.IntN(50)), lightningNodes[g.rng.IntN(2)])
		if _, ok := res.(*bankdv1.LnPaymentStartResponse); ok {
			lg.payments = append(lg.payments, id)
		}
	default:
		typ = bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_RESULT
		if len(lg.payments) == 0 {
			return
		}
		id := lg.payments[g.rng.IntN(len(lg.payments))]
		p, err := g.tf.Payment(id)
		if err != nil {
			g.tf.t.Fatal(err)
		}
		n := -1
		for i := range 12 {
			if _, h := preimageAndHash(i); h == p.Hash {
				n = i
			}
		}
		if g.rng.IntN(6) == 0 {
			n = (n + 1) % 12 // a preimage of another hash
		}
		failure := ""
		if g.rng.IntN(3) == 0 {
			failure = "FAILURE_REASON_NO_ROUTE"
		}
		attempt := uint32(1)
		if g.rng.IntN(5) == 0 {
			attempt = 2 // a stale or made-up attempt
		}
		res = g.tf.paymentResult(id, attempt, n, int64(g.rng.IntN(60)), failure)
	}
	if e, ok := res.(*Error); ok {
		lg.results["refused "+e.Code.String()]++
		return
	}
	lg.results[typ.String()]++
}

// checkLightningInvariants checks the Lightning tables agree with each other and the ledger:
// node counters match the open-invoice and in-flight indexes, every IN_FLIGHT payment holds a
// pending transfer of amount + reserve, a hash has at most one payment IN_FLIGHT or SUCCEEDED,
// and no two nodes are bound to one pubkey.
func checkLightningInvariants(t failer, tf *testFSM) {
	t.Helper()
	nodes, err := tf.LndNodes()
	if err != nil {
		t.Fatal(err)
	}
	pubkeys := map[string]string{}
	for _, n := range nodes {
		if n.Pubkey != "" {
			if other, dup := pubkeys[n.Pubkey]; dup {
				t.Fatalf("nodes %s and %s are both bound to %s", other, n.Id, n.Pubkey)
			}
			pubkeys[n.Pubkey] = n.Id
		}
		open, err := tf.OpenInvoices(n.Id, "", 10_000)
		if err != nil {
			t.Fatal(err)
		}
		inflight, err := tf.InFlightPayments(n.Id, "", 10_000)
		if err != nil {
			t.Fatal(err)
		}
		if int(n.OpenInvoices) != len(open) || int(n.InflightPayments) != len(inflight) {
			t.Fatalf("node %s counts %d open, %d in flight; indexes hold %d, %d", n.Id, n.OpenInvoices, n.InflightPayments, len(open), len(inflight))
		}
		for _, inv := range open {
			if inv.State != bankdv1.InvoiceState_INVOICE_STATE_OPEN || inv.NodeId != n.Id {
				t.Fatalf("open index of %s lists %v", n.Id, inv)
			}
		}
		for _, p := range inflight {
			if p.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT || p.NodeId != n.Id {
				t.Fatalf("in-flight index of %s lists %v", n.Id, p)
			}
			tr, err := tf.Transfer(p.TransferId)
			if err != nil || tr.State != bankdv1.TransferState_TRANSFER_STATE_PENDING || tr.Amount != p.AmountSat+p.FeeReserveSat {
				t.Fatalf("in-flight payment %s holds %v (%v)", p.Id, tr, err)
			}
		}
	}
	for n := range 12 {
		_, hash := preimageAndHash(n)
		p, err := tf.PaymentOfHash(hash)
		if err != nil {
			continue
		}
		// A hash stays spoken for only by a payment in flight or paid, or one an admin failed
		// by hand after its node was lost (which may have paid it all the same).
		if (p.State == bankdv1.PaymentState_PAYMENT_STATE_FAILED && p.LostResolution == nil) || p.Hash != hash {
			t.Fatalf("hash %s names payment %v", hash, p)
		}
	}
}

func (g *lightningGen) String() string { return fmt.Sprint(g.results) }
