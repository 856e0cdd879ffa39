package fsm

import (
	"slices"
	"testing"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

const (
	declareLndLost     = bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST
	resolveLostPayment = bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT
	evidencePreimage   = bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PREIMAGE
	evidenceForceClose = bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_FORCE_CLOSE_RESOLUTION
	evidencePayee      = bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT
)

// declareLost applies a DECLARE_LND_LOST as the leader does for the API token "admin-ann".
func (tf *testFSM) declareLost(node, reason string) any {
	tf.t.Helper()
	return tf.asPrincipal("admin-ann", declareLndLost, &bankdv1.DeclareLndLostRequest{NodeId: node, Reason: reason})
}

// resolvedWithPreimage is a success of payment id, whose hash is number n.
func resolvedWithPreimage(id string, n int, fee int64) *bankdv1.ResolveLostPaymentRequest {
	pre, _ := preimageAndHash(n)
	return &bankdv1.ResolveLostPaymentRequest{PaymentId: id, Succeeded: true, Evidence: evidencePreimage, Preimage: pre, FeeSat: fee}
}

func resolvedFailed(id string, evidence bankdv1.LostPaymentEvidence, ref string) *bankdv1.ResolveLostPaymentRequest {
	return &bankdv1.ResolveLostPaymentRequest{PaymentId: id, Evidence: evidence, Reference: ref}
}

func (tf *testFSM) resolveLost(who string, req *bankdv1.ResolveLostPaymentRequest) any {
	tf.t.Helper()
	return tf.asPrincipal(who, resolveLostPayment, req)
}

// lostNodeFixture is lightningFixture with, on pool-1, two open invoices of bob's (hashes 1, 2)
// and two payments of alice's in flight: lp-5 (hash 5, 1,000 sat, reserve 50) and lp-6 (hash 6,
// 2,000 sat, reserve 20); then pool-1 stops answering.
func lostNodeFixture(t *testing.T) *testFSM {
	t.Helper()
	tf := lightningFixture(t)
	tf.mustOK(tf.invoice(1, "bob", "pool-1", 500))
	tf.mustOK(tf.invoice(2, "bob", "pool-1", 700))
	tf.mustOK(tf.startPayment("lp-5", "alice", 5, 1_000, 50, "pool-1"))
	tf.mustOK(tf.startPayment("lp-6", "alice", 6, 2_000, 20, "pool-1"))
	tf.mustOK(tf.health("pool-1", false, "", 0))
	return tf
}

func TestALostNodeCancelsItsInvoicesResolvesItsPaymentsFromEvidenceAndRetires(t *testing.T) {
	tf := lostNodeFixture(t)
	tf.advance(1_000)
	res := tf.mustOK(tf.declareLost("pool-1", "disk lost with its channel database")).(*bankdv1.DeclareLndLostResponse)
	n := res.Node
	if res.Replayed || res.InvoicesCanceled != 2 || n.State != lndLost || n.OpenInvoices != 0 || n.InflightPayments != 2 ||
		n.LostDecidedBy != "admin-ann" || n.LostReason != "disk lost with its channel database" || n.LostUnixMs != tf.nowMs || n.LostIndex != uint64(len(tf.log)) {
		t.Fatalf("declared lost: %v", res)
	}
	for i := 1; i <= 2; i++ {
		_, hash := preimageAndHash(i)
		inv, err := tf.Invoice(hash)
		if err != nil || inv.State != bankdv1.InvoiceState_INVOICE_STATE_EXPIRED || !inv.CanceledNodeLost || inv.TransferId != "" {
			t.Fatalf("invoice %d of the lost node: %v %v", i, inv, err)
		}
	}
	if b := tf.balance("bob"); b.Posted != 0 || b.Available != 0 {
		t.Fatalf("bob %v: nothing was credited for canceled invoices", b)
	}

	t.Run("the driver cannot bring a lost node back or give it work", func(t *testing.T) {
		before := storeDump(t, tf.FSM)
		refusal(t, tf.health("pool-1", true, testPubkey, 0), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "declared lost")
		refusal(t, tf.upsertNode("pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "is lost")
		for _, state := range []bankdv1.LndNodeState{bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE, bankdv1.LndNodeState_LND_NODE_STATE_DRAINING, bankdv1.LndNodeState_LND_NODE_STATE_RETIRED} {
			refusal(t, tf.do(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE, &bankdv1.SetLndNodeStateRequest{Id: "pool-1", State: state}, nil),
				bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "cannot go from")
		}
		refusal(t, tf.invoice(3, "bob", "pool-1", 100), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "takes no new invoices")
		refusal(t, tf.startPayment("lp-7", "alice", 7, 100, 5, "pool-1"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "takes no new payments")
		if after := storeDump(t, tf.FSM); !slices.Equal(before, after) {
			t.Fatal("a refused driver command left records behind")
		}
	})

	tf.advance(1_000)
	ok := tf.mustOK(tf.resolveLost("admin-bea", resolvedWithPreimage("lp-5", 5, 7))).(*bankdv1.ResolveLostPaymentResponse)
	p, r := ok.Payment, ok.Payment.LostResolution
	pre, _ := preimageAndHash(5)
	if ok.Replayed || p.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED || p.Preimage != pre || p.FeeSat != 7 ||
		r.DecidedBy != "admin-bea" || r.Index != uint64(len(tf.log)) || r.DecidedUnixMs != tf.nowMs || !r.Succeeded || r.Evidence != evidencePreimage {
		t.Fatalf("resolved with the preimage: %v", ok)
	}
	if ok.Node.State != lndLost || ok.Node.InflightPayments != 1 {
		t.Fatalf("node with a payment left: %v", ok.Node)
	}
	// Exactly as the node's own success: amount + fee posted, the rest of the reserve released.
	if b := tf.balance("alice"); b.Posted != 100_000-1_007 || b.Available != 100_000-1_007-2_020 {
		t.Fatalf("alice after the success %v", b)
	}
	if tr, err := tf.Transfer(p.TransferId); err != nil || tr.State != bankdv1.TransferState_TRANSFER_STATE_PENDING_POSTED || tr.PostedAmount != 1_007 {
		t.Fatalf("hold of lp-5: %v %v", tr, err)
	}

	tf.advance(1_000)
	failed := tf.mustOK(tf.resolveLost("admin-bea", resolvedFailed("lp-6", evidenceForceClose, "closing tx 8c1e:0, HTLC timed out at 812"))).(*bankdv1.ResolveLostPaymentResponse)
	if failed.Payment.State != bankdv1.PaymentState_PAYMENT_STATE_FAILED || failed.Payment.LostResolution.Succeeded ||
		failed.Payment.FailureReason != "resolved by hand after node pool-1 was lost: force-close-resolution: closing tx 8c1e:0, HTLC timed out at 812" {
		t.Fatalf("resolved failed: %v", failed.Payment)
	}
	// The last one resolved: the node retires in the same command.
	if n := tf.node("pool-1"); failed.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED || n.State != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED || n.LostDecidedBy != "admin-ann" {
		t.Fatalf("node after the last resolution: %v / %v", failed.Node, n)
	}
	if b := tf.balance("alice"); b.Posted != 100_000-1_007 || b.Available != 100_000-1_007 {
		t.Fatalf("alice after the failure %v: the hold is released", b)
	}
	// A hash failed by hand stays spoken for: the lost node may have paid it.
	tf.mustOK(tf.upsertNode("pool-2"))
	tf.mustOK(tf.health("pool-2", true, "03"+testPubkey[2:], 1_000_000))
	refusal(t, tf.startPayment("lp-6b", "alice", 6, 2_000, 20, "pool-2"), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "new invoice")
	// The declaration again changes nothing on a retired node.
	again := tf.mustOK(tf.declareLost("pool-1", "disk lost with its channel database")).(*bankdv1.DeclareLndLostResponse)
	if !again.Replayed || again.InvoicesCanceled != 0 || again.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED {
		t.Fatalf("declared again: %v", again)
	}
	checkInvariants(t, tf)
	checkLightningInvariants(t, tf)
}

func TestRefusedLostNodeCommandsChangeNothing(t *testing.T) {
	tf := lostNodeFixture(t)
	tf.mustOK(tf.upsertNode("pool-2"))
	tf.mustOK(tf.health("pool-2", true, "03"+testPubkey[2:], 1_000_000))
	tf.mustOK(tf.startPayment("lp-live", "alice", 8, 100, 5, "pool-2"))
	tf.mustOK(tf.startPayment("lp-own", "alice", 9, 100, 5, "pool-2"))
	tf.mustOK(tf.paymentResult("lp-own", 1, 9, 1, "")) // resolved by its node
	tf.mustOK(tf.invoice(10, "bob", "pool-2", 300))
	tf.mustOK(tf.startPayment("lp-internal", "alice", 10, 300, 0, ""))
	tf.mustOK(tf.upsertNode("pool-3"))
	tf.mustOK(tf.do(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE, &bankdv1.SetLndNodeStateRequest{Id: "pool-3", State: bankdv1.LndNodeState_LND_NODE_STATE_DRAINING}, nil))
	tf.mustOK(tf.do(bankdv1.CommandType_COMMAND_TYPE_LND_NODE_SET_STATE, &bankdv1.SetLndNodeStateRequest{Id: "pool-3", State: bankdv1.LndNodeState_LND_NODE_STATE_RETIRED}, nil))

	const (
		invalidArg = bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT
		conflict   = bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT
		notFound   = bankdv1.ResultCode_RESULT_CODE_NOT_FOUND
	)
	declares := []struct {
		name, who, node, reason string
		code                    bankdv1.ResultCode
		msg                     string
	}{
		{"no principal", "", "pool-1", "gone", invalidArg, "decided_by"},
		{"a bad node id", "admin-ann", "pool 1", "gone", invalidArg, "node_id"},
		{"no reason", "admin-ann", "pool-1", "", invalidArg, "reason: required"},
		{"a reason with a control character", "admin-ann", "pool-1", "gone\n", invalidArg, "control"},
		{"a reason too long", "admin-ann", "pool-1", string(make([]byte, MaxLostReasonLen+1)), invalidArg, "at most"},
		{"an unknown node", "admin-ann", "pool-9", "gone", notFound, "pool-9"},
		{"a node that answers", "admin-ann", "pool-2", "gone", conflict, "stop it first"},
		{"a retired node", "admin-ann", "pool-3", "gone", conflict, "retired"},
	}
	for _, tc := range declares {
		t.Run("declare: "+tc.name, func(t *testing.T) {
			before := storeDump(t, tf.FSM)
			refusal(t, tf.asPrincipal(tc.who, declareLndLost, &bankdv1.DeclareLndLostRequest{NodeId: tc.node, Reason: tc.reason}), tc.code, tc.msg)
			if after := storeDump(t, tf.FSM); !slices.Equal(before, after) {
				t.Fatal("a refused declaration left records behind")
			}
		})
	}

	// A payment of a node that is not lost is the pool's to resolve.
	refusal(t, tf.resolveLost("admin-ann", resolvedWithPreimage("lp-5", 5, 0)), conflict, "declare the node lost first")
	tf.mustOK(tf.declareLost("pool-1", "gone"))
	refusal(t, tf.declareLost("pool-1", "another reason"), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "another reason")

	pre5, _ := preimageAndHash(5)
	with := func(change func(*bankdv1.ResolveLostPaymentRequest)) *bankdv1.ResolveLostPaymentRequest {
		r := resolvedWithPreimage("lp-5", 5, 3)
		change(r)
		return r
	}
	resolves := []struct {
		name string
		who  string
		req  *bankdv1.ResolveLostPaymentRequest
		code bankdv1.ResultCode
		msg  string
	}{
		{"no principal", "", resolvedWithPreimage("lp-5", 5, 0), invalidArg, "decided_by"},
		{"a bad payment id", "admin-ann", with(func(r *bankdv1.ResolveLostPaymentRequest) { r.PaymentId = "" }), invalidArg, "payment_id"},
		{"an unknown payment", "admin-ann", with(func(r *bankdv1.ResolveLostPaymentRequest) { r.PaymentId = "lp-nope" }), notFound, "lp-nope"},
		{"a preimage of another hash", "admin-ann", resolvedWithPreimage("lp-5", 6, 0), invalidArg, "does not hash"},
		{"a malformed preimage", "admin-ann", with(func(r *bankdv1.ResolveLostPaymentRequest) { r.Preimage = "ABC" }), invalidArg, "preimage"},
		{"a success without the preimage evidence", "admin-ann", with(func(r *bankdv1.ResolveLostPaymentRequest) { r.Evidence = evidencePayee }), invalidArg, "evidence"},
		{"a negative fee", "admin-ann", with(func(r *bankdv1.ResolveLostPaymentRequest) { r.FeeSat = -1 }), invalidArg, "fee_sat"},
		{"a failure without evidence", "admin-ann", resolvedFailed("lp-5", 0, "ticket 1"), invalidArg, "evidence"},
		{"a failure with the preimage evidence", "admin-ann", resolvedFailed("lp-5", evidencePreimage, "ticket 1"), invalidArg, "evidence"},
		{"a failure without a reference", "admin-ann", resolvedFailed("lp-5", evidencePayee, ""), invalidArg, "reference: required"},
		{"a failure with a preimage", "admin-ann", with(func(r *bankdv1.ResolveLostPaymentRequest) {
			r.Succeeded, r.Evidence, r.Reference, r.FeeSat, r.Preimage = false, evidencePayee, "ticket", 0, pre5
		}), invalidArg, "proves the payment succeeded"},
		{"a failure with a fee", "admin-ann", with(func(r *bankdv1.ResolveLostPaymentRequest) {
			r.Succeeded, r.Evidence, r.Reference, r.Preimage = false, evidencePayee, "ticket", ""
		}), invalidArg, "fee_sat"},
		{"a payment in flight on a live node", "admin-ann", resolvedWithPreimage("lp-live", 8, 0), conflict, "pool tracks it"},
		{"a payment its node resolved", "admin-ann", resolvedWithPreimage("lp-own", 9, 0), conflict, "as its node reported"},
		{"a payment settled inside the ledger", "admin-ann", resolvedWithPreimage("lp-internal", 10, 0), conflict, "inside the ledger"},
	}
	for _, tc := range resolves {
		t.Run("resolve: "+tc.name, func(t *testing.T) {
			before := storeDump(t, tf.FSM)
			refusal(t, tf.resolveLost(tc.who, tc.req), tc.code, tc.msg)
			if after := storeDump(t, tf.FSM); !slices.Equal(before, after) {
				t.Fatal("a refused resolution left records behind")
			}
		})
	}
	checkInvariants(t, tf)
	checkLightningInvariants(t, tf)
}

func TestALostPaymentResolutionIsFinal(t *testing.T) {
	tf := lostNodeFixture(t)
	tf.mustOK(tf.declareLost("pool-1", "gone"))
	failure := resolvedFailed("lp-5", evidencePayee, "payee ticket 42: not paid, invoice canceled")
	first := tf.mustOK(tf.resolveLost("admin-ann", failure)).(*bankdv1.ResolveLostPaymentResponse)
	alice := tf.balance("alice")

	t.Run("the same evidence again is a replay, whoever sends it", func(t *testing.T) {
		before := storeDump(t, tf.FSM)
		again := tf.mustOK(tf.resolveLost("admin-bea", failure)).(*bankdv1.ResolveLostPaymentResponse)
		if !again.Replayed || again.Problem != "" || again.Payment.LostResolution.DecidedBy != "admin-ann" || again.Payment.LostResolution.Index != first.Payment.LostResolution.Index {
			t.Fatalf("replay answered %v", again)
		}
		if after := storeDump(t, tf.FSM); !slices.Equal(before, after) {
			t.Fatal("a replay changed the store")
		}
	})
	t.Run("other evidence is refused", func(t *testing.T) {
		before := storeDump(t, tf.FSM)
		refusal(t, tf.resolveLost("admin-ann", resolvedFailed("lp-5", evidencePayee, "another ticket")), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "final")
		refusal(t, tf.resolveLost("admin-ann", resolvedFailed("lp-5", evidenceForceClose, "payee ticket 42: not paid, invoice canceled")), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "final")
		if after := storeDump(t, tf.FSM); !slices.Equal(before, after) {
			t.Fatal("a refused resolution changed the store")
		}
	})
	t.Run("a preimage of a failed payment is a problem, recorded once, never a second booking", func(t *testing.T) {
		problems, _ := tf.ProblemCount()
		for i := range 2 {
			res := tf.mustOK(tf.resolveLost("admin-bea", resolvedWithPreimage("lp-5", 5, 1))).(*bankdv1.ResolveLostPaymentResponse)
			if !res.Replayed || res.Problem == "" || res.Payment.State != bankdv1.PaymentState_PAYMENT_STATE_FAILED || res.Payment.LostResolution.ContradictedIndex == 0 {
				t.Fatalf("preimage after the failure (%d): %v", i, res)
			}
			if n, _ := tf.ProblemCount(); n != problems+1 {
				t.Fatalf("problems %d, want %d: recorded once", n, problems+1)
			}
		}
		if b := tf.balance("alice"); b.Posted != alice.Posted || b.Available != alice.Available {
			t.Fatalf("alice %v, was %v: the customer is not charged again silently", b, alice)
		}
	})
	t.Run("a failure of a payment resolved with its preimage is refused", func(t *testing.T) {
		tf.mustOK(tf.resolveLost("admin-ann", resolvedWithPreimage("lp-6", 6, 2)))
		refusal(t, tf.resolveLost("admin-ann", resolvedFailed("lp-6", evidencePayee, "says not paid")), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "SUCCEEDED")
		refusal(t, tf.resolveLost("admin-ann", resolvedWithPreimage("lp-6", 6, 3)), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "final")
	})
	checkInvariants(t, tf)
	checkLightningInvariants(t, tf)
}

func TestALostNodeNodesOwnOutcomeStillAppliesAndRetiresIt(t *testing.T) {
	tf := lostNodeFixture(t)
	tf.mustOK(tf.declareLost("pool-1", "gone"))
	// The node's answers raced the declaration: they are its own word.
	tf.mustOK(tf.paymentResult("lp-5", 1, 5, 2, ""))
	if n := tf.node("pool-1"); n.State != lndLost {
		t.Fatalf("node %v with a payment left", n)
	}
	tf.mustOK(tf.paymentResult("lp-6", 1, 6, 0, "FAILURE_REASON_NO_ROUTE"))
	if n := tf.node("pool-1"); n.State != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED {
		t.Fatalf("node %v after its last payment resolved", n)
	}
	refusal(t, tf.resolveLost("admin-ann", resolvedWithPreimage("lp-5", 5, 2)), bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT, "as its node reported")
	checkLightningInvariants(t, tf)
}

func TestDeclaringANodeLostCancelsItsInvoicesInBoundedBatches(t *testing.T) {
	tf := lightningFixture(t)
	for i := range maxLostInvoicesPerCommand + 3 {
		tf.mustOK(tf.invoice(100+i, "bob", "pool-1", 10))
	}
	tf.mustOK(tf.health("pool-1", false, "", 0))
	first := tf.mustOK(tf.declareLost("pool-1", "gone")).(*bankdv1.DeclareLndLostResponse)
	if first.Replayed || first.InvoicesCanceled != maxLostInvoicesPerCommand || first.Node.State != lndLost || first.Node.OpenInvoices != 3 {
		t.Fatalf("first declaration: canceled %d, node %v", first.InvoicesCanceled, first.Node)
	}
	second := tf.mustOK(tf.declareLost("pool-1", "gone")).(*bankdv1.DeclareLndLostResponse)
	if !second.Replayed || second.InvoicesCanceled != 3 || second.Node.State != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED {
		t.Fatalf("second declaration: canceled %d, node %v", second.InvoicesCanceled, second.Node)
	}
	open, err := tf.OpenInvoices("pool-1", "", 10)
	if err != nil || len(open) != 0 {
		t.Fatalf("open invoices left: %v %v", open, err)
	}
	checkLightningInvariants(t, tf)
}
