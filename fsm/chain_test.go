package fsm

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// chainFixture is a cluster with one deposit wallet, a customer "alice" with one deposit
// address, and a hand-built chain: block n has hash h(n) and builds on h(n-1).
type chainFixture struct {
	*testFSM
	script []byte // alice's deposit script
	height uint32 // the fixture's idea of the tip
	depth  uint32 // final_depth stamped on blocks
}

func h(n uint32) string       { return fmt.Sprintf("%064x", 0xb10c0000+uint64(n)) }
func txid(name string) string { return fmt.Sprintf("%064x", []byte(name)) }

func newChainFixture(t *testing.T) *chainFixture {
	t.Helper()
	tf := openTestFSM(t)
	tf.mustAccount("alice", "LIABILITY", true)
	tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT,
		Descriptor_: depositDescriptor(t, 1), Network: "regtest", GapLimit: 5})
	addr := tf.mustAddress("alice", "dep", "r1")
	return &chainFixture{testFSM: tf, script: addr.Script, height: 99, depth: 3}
}

// pay is a transaction paying value to script at vout 0, spending the named outpoints.
func pay(name string, script []byte, value int64, spends ...*bankdv1.Outpoint) *bankdv1.TxMatch {
	m := &bankdv1.TxMatch{Txid: txid(name), Inputs: spends}
	if script != nil {
		m.Outputs = []*bankdv1.TxOutputMatch{{Vout: 0, ValueSat: value, Script: script}}
	}
	if len(m.Inputs) == 0 {
		m.Inputs = []*bankdv1.Outpoint{{Txid: txid("funding-of-" + name), Vout: 0}}
	}
	return m
}

func out(name string, vout uint32) *bankdv1.Outpoint {
	return &bankdv1.Outpoint{Txid: txid(name), Vout: vout}
}

// connect connects the next block (hash h(height+1) unless salt is given) with txs.
func (c *chainFixture) connect(txs ...*bankdv1.TxMatch) any {
	return c.connectSalted(0, txs...)
}

func (c *chainFixture) connectSalted(salt uint32, txs ...*bankdv1.TxMatch) any {
	c.t.Helper()
	req := &bankdv1.ChainBlockConnected{Height: c.height + 1, Hash: h(c.height + 1 + salt<<16), PrevHash: c.tipHash(),
		Txs: txs, FinalDepth: c.depth, KeepHashes: 100}
	res := c.do(bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, req, nil)
	if _, ok := res.(*bankdv1.ChainTip); ok {
		c.height++
	}
	return res
}

func (c *chainFixture) tipHash() string {
	tip, ok, err := c.ChainTip()
	if err != nil {
		c.t.Fatal(err)
	}
	if !ok {
		return h(c.height) // the first block may build on anything
	}
	return tip.Hash
}

func (c *chainFixture) disconnect() any {
	c.t.Helper()
	tip, _, err := c.ChainTip()
	if err != nil {
		c.t.Fatal(err)
	}
	res := c.do(bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_DISCONNECTED, &bankdv1.ChainBlockDisconnected{Height: tip.Height, Hash: tip.Hash}, nil)
	if _, ok := res.(*bankdv1.ChainTip); ok {
		c.height--
	}
	return res
}

func (c *chainFixture) mempool(added []*bankdv1.TxMatch, removed ...string) any {
	c.t.Helper()
	tip, _, err := c.ChainTip()
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do(bankdv1.CommandType_COMMAND_TYPE_CHAIN_MEMPOOL, &bankdv1.ChainMempool{TipHash: tip.GetHash(), Added: added, Removed: removed}, nil)
}

func (c *chainFixture) mustOK(res any) {
	c.t.Helper()
	if e, ok := res.(*Error); ok {
		c.t.Fatalf("refused: %v", e)
	}
}

func (c *chainFixture) tx(name string) (*bankdv1.ChainTx, []*bankdv1.Deposit) {
	c.t.Helper()
	rec, deps, err := c.ChainTx(txid(name))
	if err != nil {
		c.t.Fatalf("chain tx %s: %v", name, err)
	}
	return rec, deps
}

// expect checks a transaction's state and the single deposit it pays.
func (c *chainFixture) expect(name string, state bankdv1.TxState, dep bankdv1.DepositState) {
	c.t.Helper()
	rec, deps := c.tx(name)
	if rec.State != state {
		c.t.Fatalf("tx %s is %v, want %v", name, rec.State, state)
	}
	if dep == bankdv1.DepositState_DEPOSIT_STATE_UNSPECIFIED {
		if len(deps) != 0 {
			c.t.Fatalf("tx %s has deposits %v, want none", name, deps)
		}
		return
	}
	if len(deps) != 1 || deps[0].State != dep {
		c.t.Fatalf("tx %s deposits %v, want one %v", name, deps, dep)
	}
}

// aliceIs checks alice's posted and pending credits net of debits.
func (c *chainFixture) aliceIs(posted, pending int64) {
	c.t.Helper()
	b := c.balance("alice")
	if got := b.CreditsPosted - b.DebitsPosted; got != posted {
		c.t.Fatalf("alice posted %d, want %d (%v)", got, posted, b)
	}
	if got := b.CreditsPending - b.DebitsPending; got != pending {
		c.t.Fatalf("alice pending %d, want %d (%v)", got, pending, b)
	}
}

func (c *chainFixture) utxos() map[string]int64 {
	c.t.Helper()
	us, _, err := c.ListUtxos("", "", 1000)
	if err != nil {
		c.t.Fatal(err)
	}
	m := map[string]int64{}
	for _, u := range us {
		m[outpointString(u.Outpoint)] = u.ValueSat
	}
	st, err := c.ChainStatus()
	if err != nil {
		c.t.Fatal(err)
	}
	var sum int64
	for _, v := range m {
		sum += v
	}
	if st.Utxos != uint64(len(m)) || st.UtxoValueSat != sum {
		c.t.Fatalf("chain status counts %d utxos of %d sat, the set has %d of %d", st.Utxos, st.UtxoValueSat, len(m), sum)
	}
	return m
}

const (
	pending  = bankdv1.TxState_TX_STATE_PENDING
	conf     = bankdv1.TxState_TX_STATE_CONFIRMED
	final    = bankdv1.TxState_TX_STATE_FINAL
	rejected = bankdv1.TxState_TX_STATE_REJECTED

	depPending  = bankdv1.DepositState_DEPOSIT_STATE_PENDING
	depCredited = bankdv1.DepositState_DEPOSIT_STATE_CREDITED
	depRejected = bankdv1.DepositState_DEPOSIT_STATE_REJECTED
	noDeposit   = bankdv1.DepositState_DEPOSIT_STATE_UNSPECIFIED
)

func TestDepositGoesPendingThenCreditedAtFinalDepth(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect()) // the chain starts at 100
	c.mustOK(c.mempool([]*bankdv1.TxMatch{pay("d1", c.script, 50_000)}))
	c.expect("d1", pending, depPending)
	c.aliceIs(0, 50_000)

	c.mustOK(c.connect(pay("d1", c.script, 50_000))) // 101: 1 confirmation
	c.expect("d1", conf, depPending)
	if got := c.utxos(); len(got) != 1 || got[outpointString(out("d1", 0))] != 50_000 {
		t.Fatalf("utxos %v", got)
	}
	c.mustOK(c.connect()) // 2 confirmations
	c.expect("d1", conf, depPending)
	c.mustOK(c.connect()) // 3 = final_depth
	c.expect("d1", final, depCredited)
	c.aliceIs(50_000, 0)
	if b := c.balance(DepositClearingAccount); b.DebitsPosted != 50_000 {
		t.Fatalf("clearing account %v", b)
	}
	if rec, _ := c.tx("d1"); rec.Confirmations != 3 {
		t.Fatalf("confirmations %d", rec.Confirmations)
	}
	c.mustOK(c.connect())
	c.aliceIs(50_000, 0) // credited once
}

func TestReorgBeforeFinalityKeepsTheDepositPending(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	c.mustOK(c.connect(pay("d1", c.script, 7_000))) // 101
	c.mustOK(c.connect())                           // 102
	c.mustOK(c.disconnect())
	c.mustOK(c.disconnect()) // back to 100: d1 unconfirmed
	c.expect("d1", pending, depPending)
	c.aliceIs(0, 7_000)
	if got := c.utxos(); len(got) != 0 {
		t.Fatalf("utxos after the reorg %v", got)
	}
	// The other branch confirms it at 102 instead.
	c.mustOK(c.connectSalted(1))
	c.mustOK(c.connectSalted(1, pay("d1", c.script, 7_000)))
	c.expect("d1", conf, depPending)
	c.mustOK(c.connectSalted(1))
	c.mustOK(c.connectSalted(1))
	c.expect("d1", final, depCredited)
	c.aliceIs(7_000, 0)
}

func TestReorgAfterFinalityReversesAndCreditsAgain(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	c.mustOK(c.connect(pay("d1", c.script, 9_000))) // 101
	c.mustOK(c.connect())
	c.mustOK(c.connect()) // 103: final
	c.aliceIs(9_000, 0)
	for range 3 {
		c.mustOK(c.disconnect())
	}
	// The block holding d1 is gone: the credit is reversed and a new attempt is pending.
	c.expect("d1", pending, depPending)
	c.aliceIs(0, 9_000)
	_, deps := c.tx("d1")
	if deps[0].Reversals != 1 || deps[0].Attempt != 2 {
		t.Fatalf("deposit after a deep reorg: %v", deps[0])
	}
	// Alice spent the money meanwhile? The reversal goes through anyway (tested below); here
	// the new branch confirms d1 again and it is credited once more.
	c.mustOK(c.connectSalted(2, pay("d1", c.script, 9_000)))
	c.mustOK(c.connectSalted(2))
	c.mustOK(c.connectSalted(2))
	c.expect("d1", final, depCredited)
	c.aliceIs(9_000, 0)
}

func TestReversalMayOverdrawTheCustomer(t *testing.T) {
	c := newChainFixture(t)
	c.mustAccount("shop", "LIABILITY", false)
	c.mustOK(c.connect())
	c.mustOK(c.connect(pay("d1", c.script, 9_000)))
	c.mustOK(c.connect())
	c.mustOK(c.connect())
	if r := c.transfer(xfer("spend", "alice", "shop", 9_000)); r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		t.Fatalf("spend: %v", r)
	}
	for range 3 {
		c.mustOK(c.disconnect())
	}
	c.aliceIs(-9_000, 9_000)
}

// TestHoldOnAnOverdrawnAccountCanStillBePosted: once a reversal took a customer below zero,
// resolving a hold made before it lowers nothing (the held amount was already out of
// available), so it is not refused; before, the post was refused and a payment's outcome could
// not be recorded.
func TestHoldOnAnOverdrawnAccountCanStillBePosted(t *testing.T) {
	c := newChainFixture(t)
	c.mustAccount("shop", "LIABILITY", false)
	c.mustOK(c.connect())
	c.mustOK(c.connect(pay("d1", c.script, 9_000)))
	c.mustOK(c.connect())
	c.mustOK(c.connect())
	hold := xfer("hold", "alice", "shop", 5_000)
	hold.Pending = true
	if r := c.transfer(hold); r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		t.Fatalf("hold: %v", r)
	}
	for range 3 {
		c.mustOK(c.disconnect())
	}
	if b := c.balance("alice"); b.Available != -5_000 {
		t.Fatalf("alice after the reversal %v", b)
	}
	if r := c.transfer(&bankdv1.Transfer{Id: "hold-post", PostPending: true, PendingId: "hold", Amount: 4_000}); r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		t.Fatalf("posting part of the hold on an overdrawn account: %v", r)
	}
	if b := c.balance("alice"); b.Available != -4_000 {
		t.Fatalf("alice after the post %v, want the 1,000 not posted back", b)
	}
	// A new debit that lowers it further is still refused.
	if r := c.transfer(xfer("more", "alice", "shop", 1)); r.Code != bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS {
		t.Fatalf("a debit of an overdrawn account: %v", r)
	}
}

func TestDoubleSpendRejectsTheDepositAndVoidsItsCredit(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	dep := pay("d1", c.script, 5_000, out("coin", 3))
	c.mustOK(c.mempool([]*bankdv1.TxMatch{dep}))
	c.aliceIs(0, 5_000)
	// A block confirms another transaction spending the same coin and paying someone else.
	c.mustOK(c.connect(pay("thief", nil, 0, out("coin", 3))))
	c.expect("d1", rejected, depRejected)
	rec, _ := c.tx("d1")
	if rec.RejectReason != bankdv1.RejectReason_REJECT_REASON_DOUBLE_SPENT || rec.ConflictingTxid != txid("thief") {
		t.Fatalf("rejection %v %s", rec.RejectReason, rec.ConflictingTxid)
	}
	c.aliceIs(0, 0)
	if _, _, err := c.ChainTx(txid("thief")); err == nil {
		t.Fatal("the conflicting transaction pays nothing of ours and should not be tracked")
	}
	for range 5 {
		c.mustOK(c.connect())
	}
	c.aliceIs(0, 0) // never credited
}

func TestEvictionRejectsAndASecondSightingStartsANewAttempt(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	c.mustOK(c.mempool([]*bankdv1.TxMatch{pay("d1", c.script, 4_000)}))
	c.mustOK(c.mempool(nil, txid("d1")))
	c.expect("d1", rejected, depRejected)
	c.aliceIs(0, 0)
	c.mustOK(c.connect(pay("d1", c.script, 4_000)))
	c.expect("d1", conf, depPending)
	_, deps := c.tx("d1")
	if deps[0].Attempt != 2 {
		t.Fatalf("attempt %d", deps[0].Attempt)
	}
	c.mustOK(c.connect())
	c.mustOK(c.connect())
	c.aliceIs(4_000, 0)
}

func TestSpendingOurUtxoAndUndoingIt(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	c.mustOK(c.connect(pay("d1", c.script, 8_000)))
	// An unconfirmed spend marks the UTXO; a block spends it.
	c.mustOK(c.mempool([]*bankdv1.TxMatch{pay("sweep", nil, 0, out("d1", 0))}))
	us, _, _ := c.ListUtxos("dep", "", 10)
	if len(us) != 1 || us[0].SpendingTxid != txid("sweep") {
		t.Fatalf("utxo after an unconfirmed spend: %v", us)
	}
	c.mustOK(c.connect(pay("sweep", nil, 0, out("d1", 0))))
	if got := c.utxos(); len(got) != 0 {
		t.Fatalf("spent utxo still there: %v", got)
	}
	c.mustOK(c.disconnect())
	if got := c.utxos(); len(got) != 1 {
		t.Fatalf("utxo not restored by the disconnect: %v", got)
	}
	c.expect("sweep", pending, noDeposit)
}

func TestOutputCreatedAndSpentInOneDisconnectedBlockIsNotRestored(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	c.mustOK(c.connect(pay("d1", c.script, 8_000), pay("sweep", nil, 0, out("d1", 0))))
	c.mustOK(c.disconnect())
	if got := c.utxos(); len(got) != 0 {
		t.Fatalf("utxos %v", got)
	}
}

func TestStaleChainCommandsChangeNothing(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	c.mustOK(c.connect(pay("d1", c.script, 1_000)))
	before := storeDump(t, c.FSM)
	tests := []struct {
		name string
		body proto.Message
		typ  bankdv1.CommandType
		msg  string
	}{
		{"a block that does not build on the tip", &bankdv1.ChainBlockConnected{Height: 102, Hash: h(500), PrevHash: h(499), FinalDepth: 3, KeepHashes: 100},
			bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, "does not build on the tip"},
		{"the tip's block connected again (a retried command)", &bankdv1.ChainBlockConnected{Height: 101, Hash: h(101), PrevHash: h(100), FinalDepth: 3, KeepHashes: 100},
			bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, "does not build on the tip"},
		{"a disconnect of a block below the tip", &bankdv1.ChainBlockDisconnected{Height: 100, Hash: h(100)},
			bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_DISCONNECTED, "is not the tip"},
		{"a mempool change observed at an old tip", &bankdv1.ChainMempool{TipHash: h(100), Removed: []string{txid("d1")}},
			bankdv1.CommandType_COMMAND_TYPE_CHAIN_MEMPOOL, "observed at tip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := c.do(tt.typ, tt.body, nil)
			refusal(t, res, bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, tt.msg)
		})
	}
	if after := storeDump(t, c.FSM); !slices.Equal(before, after) {
		t.Fatalf("refused chain commands changed the store:\n%v\n%v", before, after)
	}
}

func TestMalformedChainCommandsAreRefused(t *testing.T) {
	c := newChainFixture(t)
	ok := func() *bankdv1.ChainBlockConnected {
		return &bankdv1.ChainBlockConnected{Height: 100, Hash: h(100), PrevHash: h(99), FinalDepth: 6, KeepHashes: 100}
	}
	tests := []struct {
		name  string
		edit  func(*bankdv1.ChainBlockConnected)
		field string
	}{
		{"short hash", func(r *bankdv1.ChainBlockConnected) { r.Hash = "abc" }, "hash"},
		{"non-hex prev hash", func(r *bankdv1.ChainBlockConnected) { r.PrevHash = fmt.Sprintf("%064s", "xyz") }, "prev_hash"},
		{"final depth 0", func(r *bankdv1.ChainBlockConnected) { r.FinalDepth = 0 }, "final_depth"},
		{"keep hashes 0", func(r *bankdv1.ChainBlockConnected) { r.KeepHashes = 0 }, "keep_hashes"},
		{"bad txid", func(r *bankdv1.ChainBlockConnected) { r.Txs = []*bankdv1.TxMatch{{Txid: "00"}} }, "txs[0].txid"},
		{"a txid twice", func(r *bankdv1.ChainBlockConnected) {
			r.Txs = []*bankdv1.TxMatch{pay("a", nil, 0), pay("a", nil, 0)}
		}, "appears twice"},
		{"negative value", func(r *bankdv1.ChainBlockConnected) {
			r.Txs = []*bankdv1.TxMatch{pay("a", c.script, -1)}
		}, "value_sat"},
		{"empty script", func(r *bankdv1.ChainBlockConnected) {
			r.Txs = []*bankdv1.TxMatch{pay("a", []byte{}, 1)}
			r.Txs[0].Outputs[0].Script = nil
		}, "script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ok()
			tt.edit(req)
			res := c.do(bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, req, nil)
			refusal(t, res, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, tt.field)
		})
	}
	if _, ok, _ := c.ChainTip(); ok {
		t.Fatal("a refused block changed the tip")
	}
}

func TestPaymentsToScriptsNotOursOrToLookAheadAddresses(t *testing.T) {
	c := newChainFixture(t)
	w, err := c.Wallet("dep")
	if err != nil {
		t.Fatal(err)
	}
	// Index 3 of the receive branch is watched (gap limit 5) but not handed out.
	lookAhead := watchedScripts(t, c.FSM)["dep/0/3"].GetScript()
	if lookAhead == nil {
		t.Fatal("receive index 3 is not watched")
	}
	c.mustOK(c.connect())
	c.mustOK(c.connect(
		pay("stranger", []byte{0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, 1_000),
		pay("lookahead", lookAhead, 2_000)))
	if _, _, err := c.ChainTx(txid("stranger")); err == nil {
		t.Fatal("a payment to a script nobody watches (a fingerprint collision) was tracked")
	}
	c.expect("lookahead", conf, noDeposit)
	if got := c.utxos(); len(got) != 1 {
		t.Fatalf("utxos %v", got)
	}
	after, err := c.Wallet("dep")
	if err != nil {
		t.Fatal(err)
	}
	if before, now := w.Branches[0].NextIndex, after.Branches[0].NextIndex; now != 4 || before != 1 {
		t.Fatalf("receive next_index %d -> %d, want 1 -> 4 (the paid look-ahead index 3 is used)", before, now)
	}
}

func TestChainStateSurvivesSnapshotAndReplay(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	c.mustOK(c.mempool([]*bankdv1.TxMatch{pay("d1", c.script, 3_000), pay("d2", c.script, 4_000)}))
	c.mustOK(c.connect(pay("d1", c.script, 3_000)))
	c.mustOK(c.connect(pay("thief", nil, 0, pay("d2", nil, 0).Inputs[0])))
	c.mustOK(c.connect())
	c.mustOK(c.disconnect())
	c.mustOK(c.connect())
	c.mustOK(c.connect())
	_, want := c.hash()

	replica := openTestFSM(t)
	replica.ApplyBatch(c.log)
	if _, got := replica.hash(); got != want {
		t.Fatal("a replica replaying the log has another state")
	}
	restored := openTestFSM(t)
	if err := restored.Restore(readCloser(snapshotBytes(t, c.FSM))); err != nil {
		t.Fatal(err)
	}
	if _, got := restored.hash(); got != want {
		t.Fatal("a replica restored from a snapshot has another state")
	}
}

func (c *chainFixture) rescan(from uint32) any {
	return c.do(bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN, &bankdv1.RescanChainRequest{FromHeight: from}, nil)
}

func (c *chainFixture) rescanBlock(height uint32, txs ...*bankdv1.TxMatch) any {
	return c.do(bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN_BLOCK, &bankdv1.ChainRescanBlock{Height: height, Hash: h(height), Txs: txs, FinalDepth: c.depth}, nil)
}

func TestRescanFindsOldPaymentsOnce(t *testing.T) {
	c := newChainFixture(t)
	refusal(t, c.rescan(0), bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, "nothing to rescan")
	c.mustOK(c.connect())                           // 100
	c.mustOK(c.connect(pay("known", c.script, 10))) // 101: matched live
	for range 4 {
		c.mustOK(c.connect()) // 102..105
	}
	refusal(t, c.rescan(106), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "above the tip")
	res := c.rescan(0) // from below the start: starts at the start, 100
	p := res.(*bankdv1.RescanChainResponse).Rescan
	if p.FromHeight != 100 || p.NextHeight != 100 || p.TargetHeight != 105 {
		t.Fatalf("rescan %v", p)
	}
	refusal(t, c.rescanBlock(101), bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, "not the next block")
	c.mustOK(c.rescanBlock(100))
	// 101 again with the known tx and one that was missed (say, a wallet imported later).
	c.mustOK(c.rescanBlock(101, pay("known", c.script, 10), pay("missed", c.script, 20)))
	c.expect("missed", final, depCredited) // 101 is 5 deep at tip 105, final depth 3
	c.mustOK(c.rescanBlock(102))
	c.mustOK(c.rescanBlock(103))
	refusal(t, c.do(bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN_BLOCK,
		&bankdv1.ChainRescanBlock{Height: 104, Hash: h(999), FinalDepth: 3}, nil), bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, "is not the followed chain's block")
	c.mustOK(c.rescanBlock(104, pay("recent", c.script, 30)))
	c.expect("recent", conf, depPending) // 2 confirmations
	st, _ := c.ChainStatus()
	if st.Rescan.GetNextHeight() != 105 {
		t.Fatalf("progress %v", st.Rescan)
	}
	c.mustOK(c.rescanBlock(105))
	if _, running, _ := c.ChainRescan(); running {
		t.Fatal("the rescan did not end at its target")
	}
	c.aliceIs(30, 30) // known 10 + missed 20 credited; recent 30 pending
	// The rescanned block can be disconnected like any other.
	c.mustOK(c.disconnect())
	c.mustOK(c.disconnect())
	c.expect("recent", pending, depPending)
	c.mustOK(c.connectSalted(1))
	c.mustOK(c.connectSalted(1, pay("recent", c.script, 30)))
	c.mustOK(c.connectSalted(1))
	c.expect("recent", conf, depPending)
	c.mustOK(c.connectSalted(1))
	c.expect("recent", final, depCredited)
	c.aliceIs(60, 0)
}

func TestRescanEndsWhenTheChainShrinksBelowIt(t *testing.T) {
	c := newChainFixture(t)
	for range 4 {
		c.mustOK(c.connect()) // 100..103
	}
	c.mustOK(c.rescan(102))
	c.mustOK(c.disconnect())
	c.mustOK(c.disconnect()) // tip 101 < next 102
	if _, running, _ := c.ChainRescan(); running {
		t.Fatal("a rescan past the tip is still running")
	}
}

func TestRescanAddsOutputsAKnownTransactionPaysToScriptsWatchedSince(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect())
	// "both" pays alice's address and a script the cluster does not watch yet.
	later := c.mustAddress("alice", "dep", "r2").Script // watched now, but say the block was matched before
	tx := &bankdv1.TxMatch{Txid: txid("both"), Inputs: []*bankdv1.Outpoint{out("coin", 0)},
		Outputs: []*bankdv1.TxOutputMatch{{Vout: 0, ValueSat: 100, Script: c.script}}}
	c.mustOK(c.connect(tx))
	c.mustOK(c.connect())
	c.mustOK(c.connect()) // final
	c.aliceIs(100, 0)
	c.mustOK(c.rescan(101))
	full := proto.Clone(tx).(*bankdv1.TxMatch)
	full.Outputs = append(full.Outputs, &bankdv1.TxOutputMatch{Vout: 1, ValueSat: 50, Script: later})
	c.mustOK(c.rescanBlock(101, full))
	rec, deps := c.tx("both")
	if len(rec.Outputs) != 2 || len(deps) != 2 {
		t.Fatalf("after the rescan: outputs %v, deposits %v", rec.Outputs, deps)
	}
	c.aliceIs(150, 0) // the new output of a final transaction is credited at once, the old one not again
	if got := c.utxos(); len(got) != 2 {
		t.Fatalf("utxos %v", got)
	}
}
