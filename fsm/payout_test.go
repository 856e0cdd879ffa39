package fsm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
)

// payoutFixture is a chain fixture with a funded customer "alice" (1,000,000 sat), a p2wpkh
// hot wallet "hot" of test key 2 whose receive indexes 0 and 1 hold 500,000 and 300,000 sat in
// confirmed UTXOs, and the account key to sign for it.
type payoutFixture struct {
	*chainFixture
	hotPriv  string
	hotDesc  string
	branches []*descriptor.Descriptor
	funding  *bankdv1.TxMatch
}

func newPayoutFixture(t *testing.T) *payoutFixture {
	t.Helper()
	c := newChainFixture(t)
	c.principal = "app"
	c.mustAccount("capital", "EQUITY", false)
	if r := c.transfer(xfer("fund-alice", "capital", "alice", 1_000_000)); r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		t.Fatalf("fund alice: %v", r)
	}
	priv, pub := testXKey(t, 2, &chaincfg.RegressionNetParams)
	desc := fmt.Sprintf("wpkh(%s/<0;1>/*)", pub)
	w := c.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "hot", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: desc, GapLimit: 5})
	d, err := descriptor.Parse(w.Descriptor_, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	f := &payoutFixture{chainFixture: c, hotPriv: priv, hotDesc: w.Descriptor_, branches: d.Multipath()}
	f.funding = &bankdv1.TxMatch{Txid: txid("funding"), Inputs: []*bankdv1.Outpoint{out("coinbase", 0)},
		Outputs: []*bankdv1.TxOutputMatch{{Vout: 0, ValueSat: 500_000, Script: f.hotScript(0, 0)}, {Vout: 1, ValueSat: 300_000, Script: f.hotScript(0, 1)}}}
	c.mustOK(c.connect(f.funding))
	if recs, err := f.WalletReconciliation(); err != nil || len(recs) != 1 || recs[0].UnsettledInflowSat != 800_000 || recs[0].DifferenceSat != -800_000 {
		t.Fatalf("reconciliation before the funding is final: %v %v, want it unsettled", recs, err)
	}
	return f
}

func (f *payoutFixture) hotScript(branch, index uint32) []byte {
	f.t.Helper()
	s, err := f.branches[branch].Derive(index)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// outsider is a regtest address of a wallet the cluster does not watch.
func outsider(t *testing.T, typ string) string {
	t.Helper()
	hash := bytes.Repeat([]byte{7}, 20)
	var addr btcutil.Address
	var err error
	switch typ {
	case "p2wpkh":
		addr, err = btcutil.NewAddressWitnessPubKeyHash(hash, &chaincfg.RegressionNetParams)
	case "p2pkh":
		addr, err = btcutil.NewAddressPubKeyHash(hash, &chaincfg.RegressionNetParams)
	case "p2sh":
		addr, err = btcutil.NewAddressScriptHashFromHash(hash, &chaincfg.RegressionNetParams)
	case "p2wsh":
		addr, err = btcutil.NewAddressWitnessScriptHash(bytes.Repeat([]byte{7}, 32), &chaincfg.RegressionNetParams)
	case "p2tr":
		addr, err = btcutil.NewAddressTaproot(bytes.Repeat([]byte{7}, 32), &chaincfg.RegressionNetParams)
	case "mainnet-p2wpkh":
		addr, err = btcutil.NewAddressWitnessPubKeyHash(hash, &chaincfg.MainNetParams)
	}
	if err != nil || addr == nil {
		t.Fatalf("address %s: %v", typ, err)
	}
	return addr.EncodeAddress()
}

func (f *payoutFixture) request(id, addr string, amount, fee, threshold int64) any {
	f.t.Helper()
	return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_REQUEST, &bankdv1.PayoutRequestCommand{
		Request: &bankdv1.RequestPayoutRequest{Id: id, AccountId: "alice", Address: addr, AmountSat: amount, Queue: "batched"},
		Policy:  &bankdv1.PayoutQueuePolicy{FeeSat: fee, ApprovalThresholdSat: threshold},
	}, nil)
}

func (f *payoutFixture) mustRequest(id, addr string, amount, fee, threshold int64) *bankdv1.Payout {
	f.t.Helper()
	res, ok := f.request(id, addr, amount, fee, threshold).(*bankdv1.RequestPayoutResponse)
	if !ok {
		f.t.Fatalf("request %s: %v", id, f.request(id, addr, amount, fee, threshold))
	}
	return res.Payout
}

// plan proposes a plan spending inputs (indexes into the funding transaction) for payouts, with
// change, built the way the payout driver builds it.
func (f *payoutFixture) plan(payouts []string, change int64, vouts ...uint32) any {
	f.t.Helper()
	var inputs []*bankdv1.BatchInput
	var ops []*bankdv1.Outpoint
	for _, v := range vouts {
		o := f.funding.Outputs[v]
		op := &bankdv1.Outpoint{Txid: f.funding.Txid, Vout: v}
		ops = append(ops, op)
		inputs = append(inputs, &bankdv1.BatchInput{Outpoint: op, ValueSat: o.ValueSat, Script: o.Script, Branch: 0, Index: v})
	}
	var outputs []*bankdv1.BatchOutput
	for _, id := range payouts {
		p, err := f.Payout(id)
		if err != nil { // a plan naming a withdrawal that does not exist
			p = &bankdv1.Payout{AmountSat: 100_000, Script: f.hotScript(0, 4)}
		}
		outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: p.AmountSat, Script: p.Script})
	}
	if change > 0 {
		w, err := f.Wallet("hot")
		if err != nil {
			f.t.Fatal(err)
		}
		next := w.Branches[1].NextIndex
		outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: change, Script: f.hotScript(1, next), Change: true, ChangeIndex: next})
	}
	raw, err := BuildPayoutPSBT(f.hotDesc, "regtest", inputs, outputs)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{
		Queue: "batched", WalletId: "hot", PayoutIds: payouts, Inputs: ops, ChangeSat: change, Psbt: raw,
	}, nil)
}

func (f *payoutFixture) mustPlan(payouts []string, change int64, vouts ...uint32) *bankdv1.PayoutBatch {
	f.t.Helper()
	res := f.plan(payouts, change, vouts...)
	r, ok := res.(*bankdv1.PayoutPlanResponse)
	if !ok {
		f.t.Fatalf("plan: %v", res)
	}
	return r.Batch
}

// sign signs every input of a batch's PSBT with the hot wallet's key, as signerd would.
func (f *payoutFixture) sign(b *bankdv1.PayoutBatch) []byte {
	f.t.Helper()
	return f.signWith(b, f.hotPriv)
}

// signWith signs every input of a batch's PSBT with an account key.
func (f *payoutFixture) signWith(b *bankdv1.PayoutBatch, accountKey string) []byte {
	f.t.Helper()
	p, err := psbt.NewFromRawBytes(bytes.NewReader(b.Psbt), false)
	if err != nil {
		f.t.Fatal(err)
	}
	account, err := hdkeychain.NewKeyFromString(accountKey)
	if err != nil {
		f.t.Fatal(err)
	}
	fetcher := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range p.UnsignedTx.TxIn {
		fetcher.AddPrevOut(in.PreviousOutPoint, p.Inputs[i].WitnessUtxo)
	}
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, fetcher)
	for i, in := range b.Inputs {
		k, err := account.Derive(in.Branch)
		if err == nil {
			k, err = k.Derive(in.Index)
		}
		if err != nil {
			f.t.Fatal(err)
		}
		priv, err := k.ECPrivKey()
		if err != nil {
			f.t.Fatal(err)
		}
		sig, err := txscript.RawTxInWitnessSignature(p.UnsignedTx, hashes, i, in.ValueSat, in.Script, txscript.SigHashAll, priv)
		if err != nil {
			f.t.Fatal(err)
		}
		p.Inputs[i].PartialSigs = []*psbt.PartialSig{{PubKey: priv.PubKey().SerializeCompressed(), Signature: sig}}
	}
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		f.t.Fatal(err)
	}
	return buf.Bytes()
}

func (f *payoutFixture) submit(id string, raw []byte) any {
	return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_SIGNED, &bankdv1.SubmitPayoutSignatureRequest{BatchId: id, Psbt: raw}, nil)
}

// batchMatch is what the chain watcher reports of a batch's transaction.
func batchMatch(b *bankdv1.PayoutBatch) *bankdv1.TxMatch {
	m := &bankdv1.TxMatch{Txid: b.Txid}
	for _, in := range b.Inputs {
		m.Inputs = append(m.Inputs, in.Outpoint)
	}
	for _, o := range b.Outputs {
		if o.Change {
			m.Outputs = append(m.Outputs, &bankdv1.TxOutputMatch{Vout: o.Vout, ValueSat: o.ValueSat, Script: o.Script})
		}
	}
	return m
}

func (f *payoutFixture) payout(id string) *bankdv1.Payout {
	f.t.Helper()
	p, err := f.Payout(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func (f *payoutFixture) batch(id string) *bankdv1.PayoutBatch {
	f.t.Helper()
	b, err := f.PayoutBatch(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// net is an account's normal-side balance: posted and pending.
func (f *payoutFixture) net(id string) (posted, pending int64) {
	f.t.Helper()
	acc, err := f.Account(id)
	if err != nil {
		f.t.Fatal(err)
	}
	b := acc.Balance
	if creditNormal(acc.Kind) {
		return b.CreditsPosted - b.DebitsPosted, b.CreditsPending - b.DebitsPending
	}
	return b.DebitsPosted - b.CreditsPosted, b.DebitsPending - b.CreditsPending
}

func TestWithdrawalIsHeldBatchedSignedAndBookedAtFinalDepth(t *testing.T) {
	f := newPayoutFixture(t)
	p := f.mustRequest("w1", outsider(t, "p2wpkh"), 100_000, 1_000, 0)
	if p.State != bankdv1.PayoutState_PAYOUT_STATE_QUEUED || p.RequestedBy != "app" {
		t.Fatalf("payout %v", p)
	}
	if posted, pending := f.net("alice"); posted != 1_000_000 || pending != -101_000 {
		t.Fatalf("alice %d posted %d pending, want the amount and fee held", posted, pending)
	}
	// The same request again returns the first result; another body under the id is refused.
	if r := f.request("w1", outsider(t, "p2wpkh"), 100_000, 1_000, 0).(*bankdv1.RequestPayoutResponse); !r.Replayed {
		t.Fatalf("retry not replayed: %v", r)
	}
	refusal(t, f.request("w1", outsider(t, "p2wpkh"), 100_001, 1_000, 0), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "another withdrawal")

	// 500,000 in; 100,000 out; 2,000 fee; the rest is change.
	b := f.mustPlan([]string{"w1"}, 398_000, 0)
	if b.State != bankdv1.BatchState_BATCH_STATE_PLANNED || b.FeeSat != 2_000 || b.ChargedFeeSat != 1_000 || len(b.Outputs) != 2 {
		t.Fatalf("batch %v", b)
	}
	if p := f.payout("w1"); p.State != bankdv1.PayoutState_PAYOUT_STATE_BATCHED || p.BatchId != b.Id || p.Txid != b.Txid {
		t.Fatalf("payout after plan %v", p)
	}
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_CANCEL, &bankdv1.CancelPayoutRequest{Id: "w1"}, nil),
		bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "only one not yet in a transaction")
	spendable, err := f.SpendableUtxos("hot")
	if err != nil || len(spendable) != 1 || spendable[0].Outpoint.Vout != 1 {
		t.Fatalf("spendable after plan %v %v, want only the unreserved UTXO", spendable, err)
	}

	// An unsigned or tampered PSBT is refused; the signed one is kept, once.
	refusal(t, f.submit(b.Id, b.Psbt), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not every input is signed")
	signed := f.sign(b)
	if r := f.submit(b.Id, signed).(*bankdv1.SubmitPayoutSignatureResponse); r.Batch.State != bankdv1.BatchState_BATCH_STATE_SIGNED || len(r.Batch.SignedTx) == 0 {
		t.Fatalf("signed batch %v", r.Batch)
	}
	if r := f.submit(b.Id, signed).(*bankdv1.SubmitPayoutSignatureResponse); !r.Replayed {
		t.Fatal("second submission not replayed")
	}
	tx := wire.NewMsgTx(2)
	if err := tx.Deserialize(bytes.NewReader(f.batch(b.Id).SignedTx)); err != nil || tx.TxHash().String() != b.Txid {
		t.Fatalf("signed tx %v %v, want txid %s", tx.TxHash(), err, b.Txid)
	}

	// The chain: mempool, a block, a reorg of that block, the block again, final depth.
	f.mustOK(f.mempool([]*bankdv1.TxMatch{batchMatch(b)}))
	f.mustOK(f.connect(batchMatch(b)))
	if got := f.batch(b.Id); got.State != bankdv1.BatchState_BATCH_STATE_CONFIRMED {
		t.Fatalf("batch in a block is %v", got.State)
	}
	f.mustOK(f.disconnect())
	if got := f.batch(b.Id); got.State != bankdv1.BatchState_BATCH_STATE_SIGNED {
		t.Fatalf("batch after its block left is %v", got.State)
	}
	f.mustOK(f.connectSalted(1, batchMatch(b)))
	f.mustOK(f.connect())
	if p := f.payout("w1"); p.State != bankdv1.PayoutState_PAYOUT_STATE_BATCHED {
		t.Fatalf("payout before final depth is %v", p.State)
	}
	f.mustOK(f.connect())
	if got := f.batch(b.Id); got.State != bankdv1.BatchState_BATCH_STATE_FINAL {
		t.Fatalf("batch at final depth is %v", got.State)
	}
	if p := f.payout("w1"); p.State != bankdv1.PayoutState_PAYOUT_STATE_PAID {
		t.Fatalf("payout at final depth is %v", p.State)
	}
	// Books: alice paid amount + fee charged; the hot wallet lost amount + fee paid; the bank
	// paid the 1,000 it did not charge.
	for _, c := range []struct {
		account         string
		posted, pending int64
	}{
		{"alice", 1_000_000 - 101_000, 0},
		{PayoutClearingAccount, 0, 0},
		{WalletAccount("hot"), 800_000 - 102_000, 0},
		{WalletCapitalAccount, 800_000, 0},
		{PayoutFeeExpenseAccount, 1_000, 0},
	} {
		if posted, pending := f.net(c.account); posted != c.posted || pending != c.pending {
			t.Errorf("%s: %d posted %d pending, want %d and %d", c.account, posted, pending, c.posted, c.pending)
		}
	}
	// The change is a UTXO of the hot wallet's change branch; the spent input is gone, and so
	// is its reservation.
	utxos, err := f.SpendableUtxos("hot")
	if err != nil || len(utxos) != 2 {
		t.Fatalf("spendable after final %v %v", utxos, err)
	}
	if w, _ := f.Wallet("hot"); w.Branches[1].NextIndex != 1 {
		t.Fatalf("change branch next index %d, want 1", w.Branches[1].NextIndex)
	}
	// Settled, the hot wallet's books equal its UTXOs; the change is not an inflow.
	recs, err := f.WalletReconciliation()
	if err != nil || len(recs) != 1 || recs[0].DifferenceSat != 0 || recs[0].LedgerSat != 698_000 || recs[0].UnsettledBatches != 0 {
		t.Fatalf("reconciliation %v %v, want the books equal to the UTXOs", recs, err)
	}
	s, err := f.Solvency()
	if err != nil || s.CustomerLiabilitiesSat != 899_000 || s.WalletsSat != 698_000 {
		t.Fatalf("solvency %v %v", s, err)
	}
}

// TestReconciliationShowsASpendThatIsNotABatch: coins leaving the hot wallet in a transaction
// the cluster did not plan (a leaked key) are not booked, and reconciliation shows the gap.
func TestReconciliationShowsASpendThatIsNotABatch(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustOK(f.connect(&bankdv1.TxMatch{Txid: txid("thief"), Inputs: []*bankdv1.Outpoint{out("funding", 1)}}))
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	recs, err := f.WalletReconciliation()
	if err != nil || len(recs) != 1 || recs[0].DifferenceSat != 300_000 {
		t.Fatalf("reconciliation %v %v, want a difference of the 300,000 taken", recs, err)
	}
}

func TestWithdrawalRequestsThatAreRefused(t *testing.T) {
	f := newPayoutFixture(t)
	hot0, _ := btcutil.NewAddressWitnessPubKeyHash(f.hotScript(0, 0)[2:], &chaincfg.RegressionNetParams)
	for _, c := range []struct {
		name, addr string
		amount     int64
		code       bankdv1.ResultCode
		msg        string
	}{
		{"wrong network", outsider(t, "mainnet-p2wpkh"), 10_000, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "address"},
		{"malformed", "bcrt1qnotanaddress", 10_000, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not a regtest address"},
		{"bare public key", "02" + strings.Repeat("11", 32), 10_000, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "address"},
		{"dust p2wpkh", outsider(t, "p2wpkh"), 293, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "dust threshold of a p2wpkh output (294)"},
		{"dust p2pkh", outsider(t, "p2pkh"), 545, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "dust threshold of a p2pkh output (546)"},
		{"zero", outsider(t, "p2wpkh"), 0, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "amount_sat"},
		{"negative", outsider(t, "p2wpkh"), -5, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "amount_sat"},
		{"over the balance", outsider(t, "p2wpkh"), 999_500, bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS, ""},
		{"our own wallet", hot0.EncodeAddress(), 10_000, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "cluster's wallet \"hot\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before, _ := f.hash()
			refusal(t, f.request("bad-"+strings.ReplaceAll(c.name, " ", "-"), c.addr, c.amount, 1_000, 0), c.code, c.msg)
			if posted, pending := f.net("alice"); posted != 1_000_000 || pending != 0 {
				t.Fatalf("alice %d/%d after a refused request", posted, pending)
			}
			if after, _ := f.hash(); after != before+1 {
				t.Fatalf("applied index %d -> %d", before, after)
			}
		})
	}
	for _, typ := range []string{"p2pkh", "p2sh", "p2wpkh", "p2wsh", "p2tr"} {
		if p := f.mustRequest("ok-"+typ, outsider(t, typ), 10_000, 0, 0); p.Address != outsider(t, typ) {
			t.Errorf("%s: address %q", typ, p.Address)
		}
	}
}

func TestApprovalNeedsAnotherIdentity(t *testing.T) {
	f := newPayoutFixture(t)
	f.principal = "teller"
	p := f.mustRequest("big", outsider(t, "p2wpkh"), 60_000, 500, 50_000)
	if p.State != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL || !p.ApprovalRequired {
		t.Fatalf("payout above the threshold %v", p)
	}
	small := f.mustRequest("small", outsider(t, "p2wpkh"), 50_000, 500, 50_000)
	if small.State != bankdv1.PayoutState_PAYOUT_STATE_QUEUED {
		t.Fatalf("payout at the threshold is %v", small.State)
	}
	decide := func(who, id string, approve bool, reason string) any {
		f.principal = who
		return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_DECIDE, &bankdv1.DecidePayoutRequest{Id: id, Approve: approve, Reason: reason}, nil)
	}
	refusal(t, decide("teller", "big", true, ""), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "another identity")
	refusal(t, decide("", "big", true, ""), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "authenticated identity")
	refusal(t, decide("boss", "small", true, ""), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "not awaiting approval")
	refusal(t, decide("boss", "big", false, ""), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "reason")
	approved := decide("boss", "big", true, "").(*bankdv1.DecidePayoutResponse).Payout
	if approved.State != bankdv1.PayoutState_PAYOUT_STATE_QUEUED || approved.DecidedBy != "boss" || approved.DecidedUnixMs == 0 {
		t.Fatalf("approved payout %v", approved)
	}
	if _, ok := decide("boss", "big", true, "").(*bankdv1.DecidePayoutResponse); !ok {
		t.Fatal("the same approval again is not answered as a retry")
	}
	refusal(t, decide("auditor", "big", false, "too late"), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "not awaiting approval")

	// A rejection voids the hold.
	f.principal = "teller"
	f.mustRequest("huge", outsider(t, "p2wpkh"), 70_000, 500, 50_000)
	rejected := decide("boss", "huge", false, "unknown beneficiary").(*bankdv1.DecidePayoutResponse).Payout
	if rejected.State != bankdv1.PayoutState_PAYOUT_STATE_REJECTED || rejected.RejectReason != "unknown beneficiary" {
		t.Fatalf("rejected payout %v", rejected)
	}
	if _, pending := f.net("alice"); pending != -(60_500 + 50_500) {
		t.Fatalf("alice pending %d, want the two live holds only", pending)
	}
}

func TestCancelReleasesTheHoldOnce(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustRequest("w", outsider(t, "p2tr"), 40_000, 300, 0)
	cancel := func() any {
		return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_CANCEL, &bankdv1.CancelPayoutRequest{Id: "w"}, nil)
	}
	for range 2 {
		r, ok := cancel().(*bankdv1.CancelPayoutResponse)
		if !ok || r.Payout.State != bankdv1.PayoutState_PAYOUT_STATE_CANCELLED {
			t.Fatalf("cancel: %v", r)
		}
	}
	if posted, pending := f.net("alice"); posted != 1_000_000 || pending != 0 {
		t.Fatalf("alice %d/%d after cancel", posted, pending)
	}
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_CANCEL, &bankdv1.CancelPayoutRequest{Id: "nope"}, nil), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "no withdrawal")
	if queued, err := f.QueuedPayouts("batched", 10); err != nil || len(queued) != 0 {
		t.Fatalf("queue after cancel %v %v", queued, err)
	}
}

func TestPlansThatAreRefused(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustRequest("a", outsider(t, "p2wpkh"), 100_000, 0, 0)
	f.mustRequest("b", outsider(t, "p2wsh"), 100_000, 0, 0)
	refusal(t, f.plan([]string{"a"}, 0, 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "above 2000 sat/vB")
	refusal(t, f.plan([]string{"a"}, 399_990, 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "below the minimum relay fee")
	refusal(t, f.plan([]string{"a"}, 100, 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "dust threshold")
	refusal(t, f.plan([]string{"a", "a"}, 298_000, 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "listed twice")
	refusal(t, f.plan([]string{"nope"}, 398_000, 0), bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "no withdrawal")
	b := f.mustPlan([]string{"a"}, 398_000, 0)
	refusal(t, f.plan([]string{"b"}, 398_000, 0), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "reserved by batch "+b.Id)
	refusal(t, f.plan([]string{"a"}, 198_000, 1), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "not QUEUED")

	// A PSBT whose transaction differs from the plan (an output redirected) is refused.
	p, err := psbt.NewFromRawBytes(bytes.NewReader(b.Psbt), false)
	if err != nil {
		t.Fatal(err)
	}
	p.UnsignedTx.TxOut[0].PkScript = f.hotScript(0, 3)
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: "batched", WalletId: "hot",
		PayoutIds: []string{"b"}, Inputs: []*bankdv1.Outpoint{out("funding", 1)}, ChangeSat: 198_000, Psbt: buf.Bytes()}, nil),
		bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not the plan's")

	// Abandoning the unsigned plan releases its input and queues its withdrawal again.
	r := f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_ABANDON, &bankdv1.AbandonPayoutBatchRequest{BatchId: b.Id, Reason: "fee too high"}, nil)
	if ab, ok := r.(*bankdv1.AbandonPayoutBatchResponse); !ok || ab.Batch.State != bankdv1.BatchState_BATCH_STATE_ABANDONED {
		t.Fatalf("abandon: %v", r)
	}
	if p := f.payout("a"); p.State != bankdv1.PayoutState_PAYOUT_STATE_QUEUED || p.BatchId != "" {
		t.Fatalf("payout after abandon %v", p)
	}
	b2 := f.mustPlan([]string{"a", "b"}, 297_000, 0)
	refusal(t, f.submit(b2.Id, f.sign(b)), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not batch "+b2.Id)
	f.mustOK(f.submit(b2.Id, f.sign(b2)))
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_ABANDON, &bankdv1.AbandonPayoutBatchRequest{BatchId: b2.Id, Reason: "x"}, nil),
		bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "can only be replaced")
}

func TestASignatureThatDoesNotVerifyIsRefused(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustRequest("a", outsider(t, "p2wpkh"), 100_000, 0, 0)
	b := f.mustPlan([]string{"a"}, 398_000, 0)
	p, err := psbt.NewFromRawBytes(bytes.NewReader(f.sign(b)), false)
	if err != nil {
		t.Fatal(err)
	}
	sig := p.Inputs[0].PartialSigs[0].Signature
	sig[10] ^= 1
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	res := f.submit(b.Id, buf.Bytes())
	if e, ok := res.(*Error); !ok || e.Code != bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT {
		t.Fatalf("a corrupted signature: %v", res)
	}
	refusal(t, f.submit(b.Id, []byte("garbage")), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "does not decode")
	if got := f.batch(b.Id); got.State != bankdv1.BatchState_BATCH_STATE_PLANNED {
		t.Fatalf("batch after bad signatures is %v", got.State)
	}
}

// psbtParserCrasher makes btcutil/psbt v1.1.8's parser panic (btcsuite/btcd#2351); signer's
// fuzz target found it.
const psbtParserCrasher = "psbt\xff\x01\x00\xb90000\x02000000000000000000000000000000000000\x000000000000000000000000000000000000000000\x000000\x0300000000$00000000000000000000000000000000000000000000\x0000000000\x000000000000000000000000000000000000\x00\"\x06\x0310020102101207710000002011001010\x00"

func TestAPSBTThatCrashesTheParserIsRefused(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustRequest("a", outsider(t, "p2wpkh"), 100_000, 0, 0)
	b := f.mustPlan([]string{"a"}, 398_000, 0)
	refusal(t, f.submit(b.Id, []byte(psbtParserCrasher)), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "the parser failed")
	f.mustRequest("b", outsider(t, "p2wpkh"), 100_000, 0, 0)
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: "batched", WalletId: "hot",
		PayoutIds: []string{"b"}, Inputs: []*bankdv1.Outpoint{out("funding", 1)}, ChangeSat: 198_000, Psbt: []byte(psbtParserCrasher)}, nil),
		bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "psbt")
}

// FuzzSignedBatchTx: whatever a signer sends, checking it against a batch refuses or accepts
// it, and never panics.
func FuzzSignedBatchTx(f *testing.F) {
	b := &bankdv1.PayoutBatch{Id: "b7", Txid: strings.Repeat("00", 32),
		Inputs:  []*bankdv1.BatchInput{{Outpoint: &bankdv1.Outpoint{Txid: strings.Repeat("ab", 32)}, ValueSat: 50_000, Script: append([]byte{0, 20}, bytes.Repeat([]byte{1}, 20)...)}},
		Outputs: []*bankdv1.BatchOutput{{ValueSat: 40_000, Script: append([]byte{0, 20}, bytes.Repeat([]byte{2}, 20)...)}},
	}
	f.Add([]byte(psbtParserCrasher))
	f.Add([]byte("psbt\xff"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if tx, err := SignedBatchTx(b, raw); err == nil && tx == nil {
			t.Fatal("accepted without a transaction")
		}
	})
}

// bump proposes a fee bump of old with the change lowered to change.
func (f *payoutFixture) bump(old *bankdv1.PayoutBatch, change int64) any {
	f.t.Helper()
	var ops []*bankdv1.Outpoint
	for _, in := range old.Inputs {
		ops = append(ops, in.Outpoint)
	}
	var outputs []*bankdv1.BatchOutput
	var ids []string
	for _, o := range old.Outputs {
		o := proto.Clone(o).(*bankdv1.BatchOutput)
		if o.Change {
			if change == 0 {
				continue
			}
			o.ValueSat = change
		} else if o.PayoutId != "" {
			ids = append(ids, o.PayoutId)
		}
		outputs = append(outputs, o)
	}
	raw, err := BuildPayoutPSBT(f.hotDesc, "regtest", old.Inputs, outputs)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_BUMP, &bankdv1.PayoutPlan{
		Queue: old.Queue, WalletId: old.WalletId, PayoutIds: ids, Inputs: ops, ChangeSat: change, Psbt: raw, Replaces: old.Id,
		ChannelOpenId: old.ChannelOpenId,
	}, nil)
}

func (f *payoutFixture) signedBatch(id string) *bankdv1.PayoutBatch {
	f.t.Helper()
	b := f.batch(id)
	r, ok := f.submit(b.Id, f.sign(b)).(*bankdv1.SubmitPayoutSignatureResponse)
	if !ok {
		f.t.Fatalf("sign %s: %v", id, f.submit(b.Id, f.sign(b)))
	}
	return r.Batch
}

func TestAFeeBumpThatConfirmsIsBookedAndReplacesTheOriginal(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustRequest("w1", outsider(t, "p2wpkh"), 100_000, 1_000, 0)
	f.mustRequest("w2", outsider(t, "p2tr"), 50_000, 1_000, 0)
	old := f.signedBatch(f.mustPlan([]string{"w1", "w2"}, 348_000, 0).Id)
	f.mustOK(f.mempool([]*bankdv1.TxMatch{batchMatch(old)}))

	// Refused bumps: not enough more fee (BIP 125), more change than before, a plan of
	// something else; and nothing but a signed batch is bumped.
	refusal(t, f.bump(old, 347_990), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "at least")
	refusal(t, f.bump(old, 348_500), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "at least")
	res := f.bump(old, 346_000)
	nb, ok := res.(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("bump: %v", res)
	}
	bumped := nb.Batch
	if bumped.Replaces != old.Id || bumped.FeeSat != 4_000 || bumped.Txid == old.Txid {
		t.Fatalf("bumped batch %v", bumped)
	}
	if o := f.batch(old.Id); o.ReplacedBy != bumped.Id || o.State != bankdv1.BatchState_BATCH_STATE_SIGNED {
		t.Fatalf("old batch after the bump %v", o)
	}
	refusal(t, f.bump(old, 345_000), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "already replaced by "+bumped.Id)
	refusal(t, f.bump(bumped, 345_000), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "PLANNED")
	if p := f.payout("w1"); p.BatchId != bumped.Id || p.Txid != bumped.Txid {
		t.Fatalf("w1 after the bump: %v", p)
	}

	// The replacement is signed and confirms; the original, double-spent, is REPLACED.
	bumped = f.signedBatch(bumped.Id)
	f.mustOK(f.connect(batchMatch(bumped)))
	if o := f.batch(old.Id); o.State != bankdv1.BatchState_BATCH_STATE_REPLACED {
		t.Fatalf("original after its replacement confirmed: %v", o.State)
	}
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	if got := f.batch(bumped.Id); got.State != bankdv1.BatchState_BATCH_STATE_FINAL {
		t.Fatalf("replacement at final depth: %v", got.State)
	}
	for _, id := range []string{"w1", "w2"} {
		if p := f.payout(id); p.State != bankdv1.PayoutState_PAYOUT_STATE_PAID || p.Txid != bumped.Txid {
			t.Fatalf("%s: %v", id, p)
		}
	}
	if posted, _ := f.net(WalletAccount("hot")); posted != 800_000-150_000-4_000 {
		t.Fatalf("wallet:hot %d, want the replacement's fee booked", posted)
	}
	if posted, _ := f.net(PayoutFeeExpenseAccount); posted != 2_000 {
		t.Fatalf("fee expense %d, want 4,000 paid - 2,000 charged", posted)
	}
	if p, _, _ := f.ListProblems("", 100); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
}

func TestTheOriginalConfirmingInsteadOfItsBumpIsBookedOnce(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustRequest("w1", outsider(t, "p2wpkh"), 100_000, 500, 0)
	old := f.signedBatch(f.mustPlan([]string{"w1"}, 398_000, 0).Id)
	bumped := f.bump(old, 397_000).(*bankdv1.PayoutPlanResponse).Batch
	f.signedBatch(bumped.Id)
	// A miner had the original: it confirms, the replacement is REPLACED and the withdrawal
	// follows the original.
	f.mustOK(f.connect(batchMatch(old)))
	if p := f.payout("w1"); p.BatchId != old.Id || p.Txid != old.Txid {
		t.Fatalf("w1 after the original confirmed: %v", p)
	}
	if b := f.batch(bumped.Id); b.State != bankdv1.BatchState_BATCH_STATE_REPLACED {
		t.Fatalf("the bump after the original confirmed: %v", b.State)
	}
	// A reorg takes the original's block away and the bump confirms after all.
	f.mustOK(f.disconnect())
	f.mustOK(f.connectSalted(2, batchMatch(bumped)))
	if p := f.payout("w1"); p.BatchId != bumped.Id {
		t.Fatalf("w1 after the bump confirmed in the new branch: %v", p)
	}
	if b := f.batch(old.Id); b.State != bankdv1.BatchState_BATCH_STATE_REPLACED {
		t.Fatalf("the original after the reorg: %v", b.State)
	}
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	if posted, _ := f.net(WalletAccount("hot")); posted != 800_000-100_000-3_000 {
		t.Fatalf("wallet:hot %d, want the bump's fee booked once", posted)
	}
	if posted, _ := f.net("alice"); posted != 1_000_000-100_500 {
		t.Fatalf("alice %d", posted)
	}
}

func TestAbandoningAnUnsignedBumpKeepsTheOriginal(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustRequest("w1", outsider(t, "p2wpkh"), 100_000, 500, 0)
	old := f.signedBatch(f.mustPlan([]string{"w1"}, 398_000, 0).Id)
	bumped := f.bump(old, 397_000).(*bankdv1.PayoutPlanResponse).Batch
	f.mustOK(f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_ABANDON, &bankdv1.AbandonPayoutBatchRequest{BatchId: bumped.Id, Reason: "signer refused"}, nil))
	if o := f.batch(old.Id); o.ReplacedBy != "" || o.State != bankdv1.BatchState_BATCH_STATE_SIGNED {
		t.Fatalf("original after its bump was abandoned: %v", o)
	}
	if p := f.payout("w1"); p.State != bankdv1.PayoutState_PAYOUT_STATE_BATCHED || p.BatchId != old.Id {
		t.Fatalf("w1 after the bump was abandoned: %v", p)
	}
	f.mustOK(f.bump(old, 397_500))
}

func TestAConsolidationMergesUTXOsAndBooksItsFee(t *testing.T) {
	f := newPayoutFixture(t)
	plan := func(queue string, vouts []uint32, change int64) any {
		var inputs []*bankdv1.BatchInput
		var ops []*bankdv1.Outpoint
		for _, v := range vouts {
			o := f.funding.Outputs[v]
			op := &bankdv1.Outpoint{Txid: f.funding.Txid, Vout: v}
			ops = append(ops, op)
			inputs = append(inputs, &bankdv1.BatchInput{Outpoint: op, ValueSat: o.ValueSat, Script: o.Script, Index: v})
		}
		raw, err := BuildPayoutPSBT(f.hotDesc, "regtest", inputs, []*bankdv1.BatchOutput{{ValueSat: change, Script: f.hotScript(1, 0), Change: true}})
		if err != nil {
			t.Fatal(err)
		}
		return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: queue, WalletId: "hot", Inputs: ops, ChangeSat: change, Psbt: raw}, nil)
	}
	refusal(t, plan("batched", []uint32{0, 1}, 799_000), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "consolidation")
	refusal(t, plan(ConsolidationQueue, []uint32{0}, 499_000), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "at least two inputs")
	res, ok := plan(ConsolidationQueue, []uint32{0, 1}, 799_500).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("consolidation refused")
	}
	b := f.signedBatch(res.Batch.Id)
	f.mustOK(f.connect(batchMatch(b)))
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	if got := f.batch(b.Id); got.State != bankdv1.BatchState_BATCH_STATE_FINAL {
		t.Fatalf("consolidation at final depth: %v", got.State)
	}
	if posted, _ := f.net(WalletAccount("hot")); posted != 799_500 {
		t.Fatalf("wallet:hot %d, want 800,000 less the 500 fee", posted)
	}
	if posted, _ := f.net(PayoutFeeExpenseAccount); posted != 500 {
		t.Fatalf("fee expense %d, want 500", posted)
	}
	if us, _ := f.SpendableUtxos("hot"); len(us) != 1 || us[0].ValueSat != 799_500 {
		t.Fatalf("UTXOs after the consolidation: %v", us)
	}
	if recs, _ := f.WalletReconciliation(); recs[0].DifferenceSat != 0 {
		t.Fatalf("reconciliation %v", recs)
	}
}

func TestASweepMovesCreditedDepositsIntoTheHotWallet(t *testing.T) {
	f := newPayoutFixture(t)
	dep, err := f.Wallet("dep")
	if err != nil {
		t.Fatal(err)
	}
	depPriv, _ := testXKey(t, 1, &chaincfg.RegressionNetParams)
	deposit := pay("alice-deposit", f.script, 250_000)
	f.mustOK(f.connect(deposit))
	op := &bankdv1.Outpoint{Txid: deposit.Txid, Vout: 0}
	sweep := func(change int64) any {
		inputs := []*bankdv1.BatchInput{{Outpoint: op, ValueSat: 250_000, Script: f.script}}
		outputs := []*bankdv1.BatchOutput{{ValueSat: change, Script: f.hotScript(1, 0), Change: true}}
		raw, err := BuildSweepPSBT(dep.Descriptor_, "regtest", inputs, outputs)
		if err != nil {
			t.Fatal(err)
		}
		return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: SweepQueue, WalletId: "dep", ToWalletId: "hot",
			Inputs: []*bankdv1.Outpoint{op}, ChangeSat: change, Psbt: raw}, nil)
	}
	// Not yet final, so not credited: not swept.
	refusal(t, sweep(249_800), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "not a credited deposit")
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	res, ok := sweep(249_800).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("sweep refused: %v", sweep(249_800))
	}
	b := res.Batch
	if b.ToWalletId != "hot" || b.FeeSat != 200 {
		t.Fatalf("sweep batch %v", b)
	}
	signed, ok := f.submit(b.Id, f.signWith(b, depPriv)).(*bankdv1.SubmitPayoutSignatureResponse)
	if !ok {
		t.Fatalf("sweep signature refused")
	}
	f.mustOK(f.connect(batchMatch(signed.Batch)))
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	if got := f.batch(b.Id); got.State != bankdv1.BatchState_BATCH_STATE_FINAL {
		t.Fatalf("sweep at final depth: %v", got.State)
	}
	for _, c := range []struct {
		account string
		posted  int64
	}{
		{DepositClearingAccount, 0},
		{WalletAccount("hot"), 800_000 + 249_800},
		{PayoutFeeExpenseAccount, 200},
		{"alice", 1_250_000},
	} {
		if posted, _ := f.net(c.account); posted != c.posted {
			t.Errorf("%s: %d, want %d", c.account, posted, c.posted)
		}
	}
	if recs, _ := f.WalletReconciliation(); recs[0].DifferenceSat != 0 || recs[0].UtxoSat != 800_000+249_800 {
		t.Fatalf("hot wallet after the sweep: %v", recs)
	}
	// A sweep must name its destination, and only a sweep does.
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: SweepQueue, WalletId: "dep",
		Inputs: []*bankdv1.Outpoint{op}, ChangeSat: 1000, Psbt: []byte{1}}, nil), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "to_wallet_id")
}

func TestASplitPaysOneCoinIntoSeveralChangeOutputs(t *testing.T) {
	f := newPayoutFixture(t)
	op := &bankdv1.Outpoint{Txid: f.funding.Txid, Vout: 0}
	in := []*bankdv1.BatchInput{{Outpoint: op, ValueSat: 500_000, Script: f.funding.Outputs[0].Script}}
	split := func(change int64, more ...int64) any {
		outputs := []*bankdv1.BatchOutput{{ValueSat: change, Script: f.hotScript(1, 0), Change: true, ChangeIndex: 0}}
		for i, v := range more {
			outputs = append(outputs, &bankdv1.BatchOutput{ValueSat: v, Script: f.hotScript(1, uint32(1+i)), Change: true, ChangeIndex: uint32(1 + i)})
		}
		raw, err := BuildPayoutPSBT(f.hotDesc, "regtest", in, outputs)
		if err != nil {
			t.Fatal(err)
		}
		return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: SplitQueue, WalletId: "hot",
			Inputs: []*bankdv1.Outpoint{op}, ChangeSat: change, SplitSat: more, Psbt: raw}, nil)
	}
	refusal(t, split(499_700), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "at least two change outputs")
	refusal(t, split(499_500, 100), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "dust")
	res, ok := split(200_000, 150_000, 149_700).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("split refused: %v", split(200_000, 150_000, 149_700))
	}
	b := f.signedBatch(res.Batch.Id)
	if w, _ := f.Wallet("hot"); w.Branches[1].NextIndex != 3 {
		t.Fatalf("change branch next index %d after a 3-way split, want 3", w.Branches[1].NextIndex)
	}
	refusal(t, f.bump(b, 199_000), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "split")
	m := batchMatch(b)
	f.mustOK(f.connect(m))
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	us, err := f.SpendableUtxos("hot")
	if err != nil || len(us) != 4 {
		t.Fatalf("UTXOs after the split: %v %v, want the three outputs and the untouched coin", us, err)
	}
	if posted, _ := f.net(WalletAccount("hot")); posted != 800_000-300 {
		t.Fatalf("wallet:hot %d, want the fee taken only", posted)
	}
}

// lift plans a child of parent spending its change output (vout) into the next change index
// with childChange, as the payout driver's CPFP does.
func (f *payoutFixture) lift(parent *bankdv1.PayoutBatch, vout uint32, childChange int64) any {
	f.t.Helper()
	o := parent.Outputs[vout]
	op := &bankdv1.Outpoint{Txid: parent.Txid, Vout: vout}
	w, err := f.Wallet("hot")
	if err != nil {
		f.t.Fatal(err)
	}
	next := w.Branches[1].NextIndex
	raw, err := BuildPayoutPSBT(f.hotDesc, "regtest", []*bankdv1.BatchInput{{Outpoint: op, ValueSat: o.ValueSat, Script: o.Script, Branch: 1, Index: o.ChangeIndex}},
		[]*bankdv1.BatchOutput{{ValueSat: childChange, Script: f.hotScript(1, next), Change: true, ChangeIndex: next}})
	if err != nil {
		raw = []byte{1} // an output that is not the wallet's: the state machine refuses it first
	}
	return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{
		Queue: ConsolidationQueue, WalletId: "hot", Inputs: []*bankdv1.Outpoint{op}, ChangeSat: childChange, Psbt: raw, Lifts: parent.Id,
	}, nil)
}

func TestACPFPChildSpendsItsParentsChangeAndBothAreBooked(t *testing.T) {
	f := newPayoutFixture(t)
	f.mustRequest("w1", outsider(t, "p2wpkh"), 100_000, 1_000, 0)
	planned := f.mustPlan([]string{"w1"}, 399_000, 0)
	refusal(t, f.lift(planned, 1, 397_000), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "only a signed batch")
	parent := f.signedBatch(planned.Id)
	refusal(t, f.lift(parent, 0, 98_000), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not a change output")

	res, ok := f.lift(parent, 1, 397_000).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("lift refused: %v", f.lift(parent, 1, 397_000))
	}
	child := res.Batch
	if child.Lifts != parent.Id || f.batch(parent.Id).LiftedBy != child.Id || child.FeeSat != 2_000 {
		t.Fatalf("child %v, parent lifted by %q", child, f.batch(parent.Id).LiftedBy)
	}
	// The parent's txid must stay the one that confirms, and its change is spent once.
	refusal(t, f.bump(f.batch(parent.Id), 398_000), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "lifted by")
	refusal(t, f.lift(f.batch(parent.Id), 1, 396_000), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "already lifted")

	// Abandoning the unsigned child frees the parent's change for another child.
	f.principal = "ops"
	f.mustOK(f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_ABANDON, &bankdv1.AbandonPayoutBatchRequest{BatchId: child.Id, Reason: "test"}, nil))
	f.principal = "app"
	if got := f.batch(parent.Id).LiftedBy; got != "" {
		t.Fatalf("parent still lifted by %q after its child was abandoned", got)
	}
	res, ok = f.lift(f.batch(parent.Id), 1, 397_000).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("second lift refused")
	}
	child = f.signedBatch(res.Batch.Id)

	// Both confirm in one block; both are booked once.
	f.mustOK(f.connect(batchMatch(parent), batchMatch(child)))
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	for _, id := range []string{parent.Id, child.Id} {
		if got := f.batch(id); got.State != bankdv1.BatchState_BATCH_STATE_FINAL {
			t.Fatalf("batch %s at final depth: %v", id, got.State)
		}
	}
	if p := f.payout("w1"); p.State != bankdv1.PayoutState_PAYOUT_STATE_PAID {
		t.Fatalf("withdrawal %v", p.State)
	}
	if posted, _ := f.net(WalletAccount("hot")); posted != 697_000 {
		t.Fatalf("wallet:hot %d, want 800,000 less 101,000 paid and the child's 2,000 fee", posted)
	}
	if posted, _ := f.net(PayoutFeeExpenseAccount); posted != 2_000 {
		t.Fatalf("fee expense %d, want the child's 2,000", posted)
	}
	if us, _ := f.SpendableUtxos("hot"); len(us) != 2 {
		t.Fatalf("UTXOs %v, want the untouched coin and the child's change", us)
	}
	if recs, _ := f.WalletReconciliation(); recs[0].DifferenceSat != 0 {
		t.Fatalf("reconciliation %v", recs)
	}
}
