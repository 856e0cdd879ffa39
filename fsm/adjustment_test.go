package fsm

import (
	"slices"
	"strings"
	"testing"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

const bookAdjustment = bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT

func adjustment(id, account string, sat int64, kind bankdv1.AdjustmentKind) *bankdv1.BookAdjustmentRequest {
	return &bankdv1.BookAdjustmentRequest{Id: id, AccountId: account, AmountSat: sat, Kind: kind,
		Reason: "reason of " + id, ExternalReference: "ref-" + id}
}

// book applies a BOOK_ADJUSTMENT as the leader does for the API token "ops-ann".
func (tf *testFSM) book(req *bankdv1.BookAdjustmentRequest) any {
	tf.t.Helper()
	return tf.asPrincipal("ops-ann", bookAdjustment, req)
}

func (tf *testFSM) mustBook(req *bankdv1.BookAdjustmentRequest) *bankdv1.BookAdjustmentResponse {
	tf.t.Helper()
	res, ok := tf.book(req).(*bankdv1.BookAdjustmentResponse)
	if !ok {
		tf.t.Fatalf("adjustment %s: %v", req.Id, tf.book(req))
	}
	return res
}

func TestAdjustmentsOfEveryKindPostOneTransferAgainstTheirCounterAccount(t *testing.T) {
	kinds := []struct {
		kind    bankdv1.AdjustmentKind
		sat     int64
		counter string
		accKind bankdv1.AccountKind
	}{
		{bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CHANNEL_OPENED_BY_HAND, 500_000, "ln-adjust:channel-opened", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY},
		{bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CHANNEL_CLOSED_BY_HAND, -200_000, "ln-adjust:channel-closed", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY},
		{bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES, 1_234, "ln-adjust:routing-fees", bankdv1.AccountKind_ACCOUNT_KIND_INCOME},
		{bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CLOSE_FEES, -1_222, "ln-adjust:close-fees", bankdv1.AccountKind_ACCOUNT_KIND_EXPENSE},
		{bankdv1.AdjustmentKind_ADJUSTMENT_KIND_FEE_ROUNDING, 1, "ln-adjust:fee-rounding", bankdv1.AccountKind_ACCOUNT_KIND_INCOME},
		{bankdv1.AdjustmentKind_ADJUSTMENT_KIND_OTHER, -7, "ln-adjust:other", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY},
	}
	tf := lightningFixture(t)
	node := LightningNodeAccount("pool-1")
	want := tf.balance(node).Posted
	for i, k := range kinds {
		t.Run(k.kind.String(), func(t *testing.T) {
			tf.advance(1_000)
			id := "adj-" + k.counter
			res := tf.mustBook(adjustment(id, node, k.sat, k.kind))
			adj := res.Adjustment
			index := uint64(len(tf.log))
			if res.Replayed || adj.DecidedBy != "ops-ann" || adj.DecidedUnixMs != tf.nowMs || adj.Index != index ||
				adj.CounterAccountId != k.counter || adj.TransferId != adjustmentTransferID(LightningAdjustmentPrefix, index) ||
				adj.Reason != "reason of "+id || adj.ExternalReference != "ref-"+id || adj.AmountSat != k.sat || adj.Kind != k.kind {
				t.Fatalf("adjustment %d booked as %v", i, adj)
			}
			want += k.sat
			if got := tf.balance(node).Posted; got != want {
				t.Fatalf("%s posted %d, want %d", node, got, want)
			}
			counter, err := tf.Account(k.counter)
			if err != nil || counter.Kind != k.accKind || counter.Owner != asLightning {
				t.Fatalf("counter-account %v %v", counter, err)
			}
			// Debits less credits of the counter-account mirror the node account's change.
			if b := counter.Balance; b.DebitsPosted-b.CreditsPosted != -k.sat {
				t.Fatalf("counter-account %s balance %v after %d", k.counter, b, k.sat)
			}
			tr, err := tf.Transfer(adj.TransferId)
			if err != nil || tr.Owner != asLightning || tr.ExternalRef != adj.ExternalReference || tr.Amount != abs(k.sat) ||
				tr.Metadata["adjustment"] != id || tr.Metadata["decided_by"] != "ops-ann" || tr.Metadata["reason"] != adj.Reason {
				t.Fatalf("transfer %v %v", tr, err)
			}
			if (k.sat > 0) != (tr.DebitAccountId == node) {
				t.Fatalf("transfer %s -> %s for %d sat", tr.DebitAccountId, tr.CreditAccountId, k.sat)
			}
			// The node account's history names the transfer; the event feed has the adjustment.
			hist, _, err := tf.AccountHistory(node, "", MaxPageSize)
			if err != nil || hist[len(hist)-1].TransferId != adj.TransferId {
				t.Fatalf("history of %s ends with %v, %v", node, hist[len(hist)-1], err)
			}
			evs, err := tf.Events(index, 1)
			if err != nil || len(evs) != 1 || !slices.ContainsFunc(evs[0].Items, func(it *bankdv1.EventItem) bool {
				return it.GetAdjustment().GetId() == id
			}) {
				t.Fatalf("event at %d: %v %v", index, evs, err)
			}
			if got, err := tf.Adjustment(id); err != nil || got.Index != index {
				t.Fatalf("read back %v %v", got, err)
			}
			checkInvariants(t, tf)
			checkOwnershipInvariants(t, tf)
		})
	}
	all, next, err := tf.ListAdjustments("", "", 4)
	if err != nil || len(all) != 4 || next == "" || all[0].Kind != kinds[0].kind {
		t.Fatalf("first page %v %q %v", all, next, err)
	}
	rest, next, err := tf.ListAdjustments("", next, 4)
	if err != nil || len(rest) != 2 || next != "" || rest[1].Kind != kinds[5].kind {
		t.Fatalf("second page %v %q %v", rest, next, err)
	}
	if none, _, err := tf.ListAdjustments("ln:pool-2", "", 10); err != nil || len(none) != 0 {
		t.Fatalf("adjustments of another account %v %v", none, err)
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

func TestAdjustmentRefusalsLeaveNothingBehind(t *testing.T) {
	tf := lightningFixture(t)
	node := LightningNodeAccount("pool-1")
	with := func(f func(r *bankdv1.BookAdjustmentRequest)) *bankdv1.BookAdjustmentRequest {
		r := adjustment("a1", node, 1_000, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES)
		f(r)
		return r
	}
	tests := []struct {
		name string
		req  *bankdv1.BookAdjustmentRequest
		code bankdv1.ResultCode
		msg  string
	}{
		{"a customer account", with(func(r *bankdv1.BookAdjustmentRequest) { r.AccountId = "alice" }), codeInvalid, "account_id: \"alice\" is not a pool node's"},
		{"another system account", with(func(r *bankdv1.BookAdjustmentRequest) { r.AccountId = LightningCapitalAccount }), codeInvalid, "account_id"},
		{"a node that is not registered", with(func(r *bankdv1.BookAdjustmentRequest) { r.AccountId = "ln:pool-9" }), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "account_id: no account"},
		{"a wallet account that does not exist", with(func(r *bankdv1.BookAdjustmentRequest) { r.AccountId = "wallet:hot" }), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "account_id"},
		{"zero", with(func(r *bankdv1.BookAdjustmentRequest) { r.AmountSat = 0 }), codeInvalid, "amount_sat: must not be 0"},
		{"more than there is", with(func(r *bankdv1.BookAdjustmentRequest) { r.AmountSat = MaxAdjustmentSat + 1 }), codeInvalid, "amount_sat"},
		{"no kind", with(func(r *bankdv1.BookAdjustmentRequest) { r.Kind = 0 }), codeInvalid, "kind"},
		{"an unknown kind", with(func(r *bankdv1.BookAdjustmentRequest) { r.Kind = 99 }), codeInvalid, "kind"},
		{"no reason", with(func(r *bankdv1.BookAdjustmentRequest) { r.Reason = "" }), codeInvalid, "reason: required"},
		{"a reason too long", with(func(r *bankdv1.BookAdjustmentRequest) { r.Reason = strings.Repeat("x", MaxAdjustmentReasonLen+1) }), codeInvalid, "reason: at most"},
		{"a reason with a control character", with(func(r *bankdv1.BookAdjustmentRequest) { r.Reason = "fees\x00" }), codeInvalid, "reason"},
		{"no reference", with(func(r *bankdv1.BookAdjustmentRequest) { r.ExternalReference = "" }), codeInvalid, "external_reference: required"},
		{"a reference too long", with(func(r *bankdv1.BookAdjustmentRequest) {
			r.ExternalReference = strings.Repeat("x", MaxAdjustmentReferenceLen+1)
		}), codeInvalid, "external_reference"},
		{"no id", with(func(r *bankdv1.BookAdjustmentRequest) { r.Id = "" }), codeInvalid, "id"},
		// The node account cannot go negative: an adjustment may not take it below zero either.
		{"an overdraft of the node account", with(func(r *bankdv1.BookAdjustmentRequest) { r.AmountSat = -1_000_001 }), codeInsufficient, "ln:pool-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := storeDump(t, tf.FSM)
			refusal(t, tf.book(tc.req), tc.code, tc.msg)
			if after := storeDump(t, tf.FSM); !slices.Equal(before, after) {
				t.Fatalf("a refused adjustment left records behind")
			}
		})
	}
	// Without an authenticated principal (a driver, or a leader that stamped none) nothing is
	// booked: someone must have decided it.
	refusal(t, tf.do(bookAdjustment, adjustment("a1", node, 1_000, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES), nil), codeInvalid, "decided_by")
	// The whole balance may go, no more.
	tf.mustBook(adjustment("all", node, -1_000_000, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_CHANNEL_CLOSED_BY_HAND))
	if b := tf.balance(node); b.Posted != 0 {
		t.Fatalf("%s after closing everything: %v", node, b)
	}
}

func TestAdjustmentRetriesReplayAndReusesAreRefused(t *testing.T) {
	tf := lightningFixture(t)
	node := LightningNodeAccount("pool-1")
	req := adjustment("fees-2026-12", node, 2_500, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES)
	first := tf.mustBook(req)
	tf.advance(5_000)
	// A retry, even by another operator, returns the first result and moves nothing.
	again, ok := tf.asPrincipal("ops-bob", bookAdjustment, req).(*bankdv1.BookAdjustmentResponse)
	if !ok || !again.Replayed || again.Adjustment.DecidedBy != "ops-ann" || again.Adjustment.Index != first.Adjustment.Index {
		t.Fatalf("retry answered %v", again)
	}
	if b := tf.balance(node); b.Posted != 1_002_500 {
		t.Fatalf("%s %v, want the fees booked once", node, b)
	}
	for _, change := range []func(r *bankdv1.BookAdjustmentRequest){
		func(r *bankdv1.BookAdjustmentRequest) { r.AmountSat = 2_501 },
		func(r *bankdv1.BookAdjustmentRequest) { r.Reason = "other reason" },
		func(r *bankdv1.BookAdjustmentRequest) { r.Kind = bankdv1.AdjustmentKind_ADJUSTMENT_KIND_OTHER },
	} {
		other := adjustment("fees-2026-12", node, 2_500, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES)
		change(other)
		refusal(t, tf.book(other), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "different body")
	}
	if list, _, err := tf.ListAdjustments(node, "", 10); err != nil || len(list) != 1 {
		t.Fatalf("adjustments of %s: %v %v", node, list, err)
	}
}

// TestAdjustmentIDFormsAreReservedFromTheFirstAdjustmentOn: before any adjustment a client's
// account or transfer under one of the forms the adjustments added applies as an older binary
// applies it (a mixed cluster must agree); the API refuses those ids at once, the state machine
// from the first adjustment on. An adjustment whose counter-account a client took is refused.
func TestAdjustmentIDFormsAreReservedFromTheFirstAdjustmentOn(t *testing.T) {
	tf := lightningFixture(t)
	node := LightningNodeAccount("pool-1")
	for _, id := range []string{"ln-adjust:other", "onchain-adjust:routing-fees"} {
		if e := ValidateAccount(&bankdv1.Account{Id: id, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}); e == nil {
			t.Fatalf("the API would let a client create %s", id)
		}
	}
	if e := ValidateTransfer(xfer("ln-adjust:77", "alice", "bob", 1)); e == nil {
		t.Fatal("the API would let a client use transfer id ln-adjust:77")
	}
	tf.mustOK(tf.createAccount(&bankdv1.Account{Id: "ln-adjust:other", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}))
	if r := tf.transfer(xfer("ln-adjust:12345", "alice", "bob", 1)); r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		t.Fatalf("before any adjustment: %v", r)
	}
	refusal(t, tf.book(adjustment("o1", node, 5, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_OTHER)), codeInvalid, "taken by an account of a client")

	tf.mustBook(adjustment("r1", node, 5, bankdv1.AdjustmentKind_ADJUSTMENT_KIND_ROUTING_FEES))
	refusal(t, tf.createAccount(&bankdv1.Account{Id: "ln-adjust:close-fees", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}),
		codeInvalid, "account.id: \"ln-adjust:close-fees\" has the form")
	if r := tf.transfer(xfer("onchain-adjust:99999", "alice", "bob", 1)); r.Code != codeInvalid || !strings.Contains(r.Message, "transfer.id") {
		t.Fatalf("after the first adjustment: %v", r)
	}
	if r := tf.transfer(xfer("steal", "ln-adjust:routing-fees", "alice", 1)); r.Code != codeInvalid {
		t.Fatalf("a client moved money out of a counter-account: %v", r)
	}
	checkOwnershipInvariants(t, tf)
}

func TestWalletAdjustmentBringsItsReconciliationBackToZero(t *testing.T) {
	f := newPayoutFixture(t)
	for i := 0; i < 5; i++ {
		if _, err := f.Account(WalletAccount("hot")); err == nil {
			break
		}
		f.mustOK(f.connect())
	}
	settled := func() *bankdv1.WalletReconciliation {
		t.Helper()
		recs, err := f.WalletReconciliation()
		if err != nil || len(recs) != 1 || recs[0].UnsettledInflowSat != 0 {
			t.Fatalf("reconciliation %v %v", recs, err)
		}
		return recs[0]
	}
	if r := settled(); r.DifferenceSat != 0 || r.LedgerSat != 800_000 {
		t.Fatalf("before: %v", r)
	}
	// A spend the cluster did not plan (a hot key used by hand) takes 300,000 sat out.
	f.mustOK(f.connect(&bankdv1.TxMatch{Txid: txid("by-hand"), Inputs: []*bankdv1.Outpoint{out("funding", 1)}}))
	if r := settled(); r.DifferenceSat != 300_000 {
		t.Fatalf("after a spend by hand: %v, want the books 300,000 above the coins", r)
	}
	res, ok := f.asPrincipal("ops-ann", bookAdjustment, &bankdv1.BookAdjustmentRequest{
		Id: "hand-spend", AccountId: WalletAccount("hot"), AmountSat: -300_000, Kind: bankdv1.AdjustmentKind_ADJUSTMENT_KIND_OTHER,
		Reason: "treasury moved coins by hand", ExternalReference: txid("by-hand"),
	}).(*bankdv1.BookAdjustmentResponse)
	if !ok || res.Adjustment.CounterAccountId != "onchain-adjust:other" || res.Adjustment.TransferId != adjustmentTransferID(WalletAdjustmentPrefix, res.Adjustment.Index) {
		t.Fatalf("wallet adjustment %v", res)
	}
	if r := settled(); r.DifferenceSat != 0 {
		t.Fatalf("after the adjustment: %v", r)
	}
	if tr, err := f.Transfer(res.Adjustment.TransferId); err != nil || tr.Owner != asChain {
		t.Fatalf("transfer %v %v, want the chain driver's", tr, err)
	}
	checkInvariants(t, f.testFSM)
	checkOwnershipInvariants(t, f.testFSM)
}
