package chainwatch_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/chainwatch"
	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/regtest"
)

// chainCluster is an in-process cluster of real agents (internal/testcluster): every node
// wired as `bankd agent` wires it, so the leader follows a real btcd through the watcher.
type chainCluster struct {
	*testcluster.Cluster
	t    *testing.T
	btcd *regtest.Btcd
}

// startChainCluster starts btcd (skipping the test without one) and a cluster of size nodes
// following it from its current tip, with final_depth 3 and a 100 ms poll. network is the
// cluster's chain network; empty means regtest, btcd's.
func startChainCluster(t *testing.T, size int, network string) *chainCluster {
	t.Helper()
	btcd := regtest.StartTest(t, regtest.Options{})
	ctx := testContext(t)
	tip, err := btcd.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rpc := btcd.RPC()
	if network == "" {
		network = "regtest"
	}
	c := testcluster.Start(t, testcluster.Spec{
		Name: "chaintest",
		Size: size,
		Chain: &testcluster.Chain{
			Network: network, RPCHost: rpc.Host, RPCUser: rpc.User, RPCPass: rpc.Pass, RPCCert: rpc.CertPath,
			FinalDepth: 3, KeepHashes: 100, StartHeight: uint32(tip.Height), PollInterval: 100 * time.Millisecond,
		},
	})
	cc := &chainCluster{Cluster: c, t: t, btcd: btcd}
	cc.leader()
	return cc
}

// leader waits for a leader whose state machine has applied everything committed (its read
// barrier passes) and returns it.
func (c *chainCluster) leader() *testcluster.Node {
	c.t.Helper()
	var leader *testcluster.Node
	c.Eventually("a leader", func() bool {
		for _, n := range c.Nodes {
			a := n.Agent()
			if a != nil && a.Node().IsLeader() && a.Node().ReadBarrier(context.Background()) == nil {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func (c *chainCluster) eventually(what string, cond func() bool) {
	c.t.Helper()
	c.Eventually(what, cond)
}

// apply proposes a command on the leader, retrying while leadership settles.
func (c *chainCluster) apply(typ bankdv1.CommandType, body proto.Message) proto.Message {
	c.t.Helper()
	res, err := c.ApplyOnLeader(typ, body)
	if err != nil {
		c.t.Fatalf("%s: %v", typ, err)
	}
	return res
}

// setup creates the deposit wallet and customer accounts.
func (c *chainCluster) setup(accounts ...string) {
	c.t.Helper()
	for _, id := range accounts {
		c.apply(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{Account: &bankdv1.Account{
			Id: id, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true}})
	}
	c.apply(bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET, &bankdv1.CreateWalletRequest{WalletId: "deposits",
		Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: chainwatch.DepositDescriptor(c.t, 7), Network: "regtest"})
}

func (c *chainCluster) newAddress(account, requestID string) *bankdv1.DepositAddress {
	c.t.Helper()
	res := c.apply(bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS,
		&bankdv1.NewDepositAddressRequest{AccountId: account, RequestId: requestID})
	return res.(*bankdv1.NewDepositAddressResponse).Address
}

// fsm returns the leader's state machine.
func (c *chainCluster) fsm() *fsm.FSM { return c.leader().FSM() }

// waitCaughtUp waits until the cluster's tip is btcd's best block.
func (c *chainCluster) waitCaughtUp() {
	c.t.Helper()
	tip, err := c.btcd.Tip(testContext(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	c.eventually(fmt.Sprintf("the cluster to follow btcd to %d/%s", tip.Height, tip.Hash), func() bool {
		ft, ok, err := c.fsm().ChainTip()
		return err == nil && ok && ft.Hash == tip.Hash.String()
	})
}

// waitTx waits until the leader tracks txid in state st and returns it with its deposits.
func (c *chainCluster) waitTx(txid chainhash.Hash, st bankdv1.TxState) (*bankdv1.ChainTx, []*bankdv1.Deposit) {
	c.t.Helper()
	var rec *bankdv1.ChainTx
	var deposits []*bankdv1.Deposit
	c.eventually(fmt.Sprintf("transaction %s to be %v", txid, st), func() bool {
		var err error
		rec, deposits, err = c.fsm().ChainTx(txid.String())
		return err == nil && rec.State == st
	})
	return rec, deposits
}

func (c *chainCluster) balance(account string) *bankdv1.Balance {
	c.t.Helper()
	acc, err := c.fsm().Account(account)
	if err != nil {
		c.t.Fatal(err)
	}
	return acc.Balance
}

// requireReplicasAgree waits until every node applied the same index with the same state hash.
func (c *chainCluster) requireReplicasAgree() {
	c.t.Helper()
	c.WaitSameState()
}

// requireLedgerBalances checks invariant 1 over the accounts given (the clearing account and
// the customers): debits and credits of every account sum to the same total.
func (c *chainCluster) requireLedgerBalances(accounts ...string) {
	c.t.Helper()
	var debits, credits int64
	for _, id := range append(accounts, fsm.DepositClearingAccount) {
		b := c.balance(id)
		debits += b.DebitsPosted
		credits += b.CreditsPosted
	}
	if debits != credits {
		c.t.Fatalf("posted debits %d != credits %d", debits, credits)
	}
}

func (c *chainCluster) pay(value int64, scripts ...[]byte) *wire.MsgTx {
	c.t.Helper()
	outs := make([]*wire.TxOut, len(scripts))
	for i, s := range scripts {
		outs[i] = &wire.TxOut{Value: value, PkScript: s}
	}
	tx, err := c.btcd.Send(testContext(c.t), outs, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	return tx
}

func (c *chainCluster) mine(n int) {
	c.t.Helper()
	if _, err := c.btcd.Generate(testContext(c.t), n); err != nil {
		c.t.Fatal(err)
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

const depositValue = 125_000

func TestClusterDepositGoesPendingConfirmedCredited(t *testing.T) {
	c := startChainCluster(t, 3, "")
	c.setup("alice")
	addr := c.newAddress("alice", "a1")
	c.waitCaughtUp()

	tx := c.pay(depositValue, addr.Script)
	_, deposits := c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_PENDING)
	if len(deposits) != 1 || deposits[0].State != bankdv1.DepositState_DEPOSIT_STATE_PENDING || deposits[0].AccountId != "alice" {
		t.Fatalf("deposits while in the mempool: %v", deposits)
	}
	if b := c.balance("alice"); b.CreditsPending != depositValue || b.Posted != 0 {
		t.Fatalf("alice while pending: %v", b)
	}

	c.mine(1)
	rec, _ := c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_CONFIRMED)
	c.mine(1)
	c.waitCaughtUp()
	if _, deposits := c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_CONFIRMED); deposits[0].State != bankdv1.DepositState_DEPOSIT_STATE_PENDING {
		t.Fatalf("deposit credited at 2 confirmations of 3: %v", deposits[0])
	}
	c.mine(1)
	_, deposits = c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_FINAL)
	if d := deposits[0]; d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED || d.Attempt != 1 || d.BlockHeight != rec.BlockHeight {
		t.Fatalf("deposit at 3 confirmations: %v", d)
	}
	if b := c.balance("alice"); b.Posted != depositValue || b.CreditsPending != 0 {
		t.Fatalf("alice after the credit: %v", b)
	}
	c.requireLedgerBalances("alice")
	c.requireReplicasAgree()
}

func TestClusterReorgBeforeFinalityKeepsTheDepositPending(t *testing.T) {
	c := startChainCluster(t, 3, "")
	c.setup("alice")
	addr := c.newAddress("alice", "a1")
	c.waitCaughtUp()
	tx := c.pay(depositValue, addr.Script)
	c.mine(1)
	before, _ := c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_CONFIRMED)

	// The block holding the deposit is replaced by a two-block branch that mines it again.
	oldBranch, newBranch, err := c.btcd.Reorg(testContext(t), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	c.waitCaughtUp()
	rec, deposits := c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_CONFIRMED)
	if rec.BlockHash != newBranch[0].String() || rec.BlockHash == before.BlockHash {
		t.Fatalf("after the reorg the deposit is in %s (old branch %v), want the new branch's first block %s", rec.BlockHash, oldBranch, newBranch[0])
	}
	if d := deposits[0]; d.State != bankdv1.DepositState_DEPOSIT_STATE_PENDING || d.Attempt != 1 {
		t.Fatalf("deposit after a reorg before finality: %v, want its first attempt still pending", d)
	}
	c.mine(1)
	_, deposits = c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_FINAL)
	if d := deposits[0]; d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED || d.Attempt != 1 || d.Reversals != 0 {
		t.Fatalf("deposit: %v, want credited once", d)
	}
	if b := c.balance("alice"); b.Posted != depositValue || b.CreditsPending != 0 || b.CreditsPosted != depositValue {
		t.Fatalf("alice: %v, want exactly one credit", b)
	}
	c.requireLedgerBalances("alice")
	c.requireReplicasAgree()
}

func TestClusterReorgAfterFinalityReversesAndCreditsAgain(t *testing.T) {
	c := startChainCluster(t, 3, "")
	c.setup("alice")
	addr := c.newAddress("alice", "a1")
	c.waitCaughtUp()
	tx := c.pay(depositValue, addr.Script)
	c.mine(3)
	_, deposits := c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_FINAL)
	if deposits[0].State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED {
		t.Fatalf("deposit before the reorg: %v", deposits[0])
	}

	// Replace the three blocks from the deposit's up by a four-block branch: the credited
	// deposit is reversed, confirmed again on the new branch and credited again at depth 3.
	if _, _, err := c.btcd.Reorg(testContext(t), 3, 4); err != nil {
		t.Fatal(err)
	}
	c.waitCaughtUp()
	_, deposits = c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_FINAL)
	d := deposits[0]
	if d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED || d.Reversals != 1 || d.Attempt != 2 {
		t.Fatalf("deposit after a reorg past finality: %v, want one reversal and a second credit", d)
	}
	b := c.balance("alice")
	if b.Posted != depositValue || b.CreditsPosted != 2*depositValue || b.DebitsPosted != depositValue || b.CreditsPending != 0 {
		t.Fatalf("alice: %v, want credit, reversal, credit", b)
	}
	if cl := c.balance(fsm.DepositClearingAccount); cl.Posted != depositValue {
		t.Fatalf("clearing account: %v, want %d", cl, depositValue)
	}
	c.requireLedgerBalances("alice")
	status, err := c.fsm().ChainStatus()
	if err != nil {
		t.Fatal(err)
	}
	if status.Utxos != 1 || status.UtxoValueSat != depositValue {
		t.Fatalf("chain status %v, want the one deposit as a UTXO", status)
	}
	c.requireReplicasAgree()
}

// strangerScript is a P2WPKH script no wallet of the cluster watches.
var strangerScript = append([]byte{0x00, 0x14}, []byte("not-ours-not-ours-12")...)

func TestClusterDoubleSpentDepositIsRejectedNeverCredited(t *testing.T) {
	c := startChainCluster(t, 3, "")
	c.setup("alice")
	c.waitCaughtUp()
	stranger := []*wire.TxOut{{Value: depositValue - 10_000, PkScript: strangerScript}}

	// Replaced while in the mempool.
	inMempool := c.pay(depositValue, c.newAddress("alice", "a1").Script)
	c.waitTx(inMempool.TxHash(), bankdv1.TxState_TX_STATE_PENDING)
	if _, err := c.btcd.Replace(testContext(t), inMempool, stranger, 0); err != nil {
		t.Fatal(err)
	}
	rec, deposits := c.waitTx(inMempool.TxHash(), bankdv1.TxState_TX_STATE_REJECTED)
	if deposits[0].State != bankdv1.DepositState_DEPOSIT_STATE_REJECTED {
		t.Fatalf("deposit of the replaced transaction: %v", deposits[0])
	}
	t.Logf("replaced in the mempool: rejected as %v", rec.RejectReason)

	// Double-spent after one confirmation: the block is reorged out by a branch holding the
	// replacement.
	confirmed := c.pay(depositValue, c.newAddress("alice", "a2").Script)
	c.mine(1)
	c.waitTx(confirmed.TxHash(), bankdv1.TxState_TX_STATE_CONFIRMED)
	replacement, err := c.btcd.DoubleSpend(testContext(t), confirmed, stranger, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.waitCaughtUp()
	rec, deposits = c.waitTx(confirmed.TxHash(), bankdv1.TxState_TX_STATE_REJECTED)
	if deposits[0].State != bankdv1.DepositState_DEPOSIT_STATE_REJECTED {
		t.Fatalf("deposit of the double-spent transaction: %v", deposits[0])
	}
	t.Logf("double-spent after a confirmation: rejected as %v (conflicting %q, replacement %s)", rec.RejectReason, rec.ConflictingTxid, replacement.TxHash())

	c.mine(4)
	c.waitCaughtUp()
	for _, tx := range []*wire.MsgTx{inMempool, confirmed} {
		rec, deposits, err := c.fsm().ChainTx(tx.TxHash().String())
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != bankdv1.TxState_TX_STATE_REJECTED || deposits[0].State != bankdv1.DepositState_DEPOSIT_STATE_REJECTED {
			t.Fatalf("%s ends %v with deposit %v", tx.TxHash(), rec.State, deposits[0])
		}
	}
	if b := c.balance("alice"); b.Posted != 0 || b.CreditsPending != 0 || b.CreditsPosted != 0 {
		t.Fatalf("alice: %v, want nothing credited", b)
	}
	c.requireReplicasAgree()
}

func TestCluster1000DepositsInOneBlock(t *testing.T) {
	c := startChainCluster(t, 3, "")
	const accounts, perAccount = 100, 10
	ids := make([]string, accounts)
	for i := range ids {
		ids[i] = fmt.Sprintf("cust-%03d", i)
	}
	c.setup(ids...)

	// Hand out 1,000 addresses, concurrently (Raft batches the proposals).
	scripts := make([][]byte, accounts*perAccount)
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(scripts); i += 10 {
				scripts[i] = c.newAddress(ids[i%accounts], fmt.Sprintf("req-%04d", i)).Script
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	c.waitCaughtUp()

	// Four transactions of 250 outputs each, amounts 10,000 + i.
	want := map[string]int64{}
	var total int64
	var txs []*wire.MsgTx
	for part := range 4 {
		outs := make([]*wire.TxOut, 0, 250)
		for i := part * 250; i < (part+1)*250; i++ {
			v := int64(10_000 + i)
			outs = append(outs, &wire.TxOut{Value: v, PkScript: scripts[i]})
			want[ids[i%accounts]] += v
			total += v
		}
		tx, err := c.btcd.Send(testContext(t), outs, 0)
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, tx)
	}
	blocks, err := c.btcd.Generate(testContext(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := c.btcd.Block(testContext(t), blocks[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(blk.Transactions) != 1+len(txs) {
		t.Fatalf("the block holds %d transactions, want the coinbase and %d", len(blk.Transactions), len(txs))
	}
	c.mine(2)
	c.waitCaughtUp()
	for _, tx := range txs {
		c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_FINAL)
	}

	f := c.fsm()
	for _, id := range ids {
		b := c.balance(id)
		if b.Posted != want[id] || b.CreditsPosted != want[id] || b.CreditsPending != 0 {
			t.Errorf("%s: %v, want %d credited once", id, b, want[id])
		}
		deposits, _, err := f.ListDeposits(id, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(deposits) != perAccount {
			t.Errorf("%s has %d deposits, want %d", id, len(deposits), perAccount)
		}
		for _, d := range deposits {
			if d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED || d.Attempt != 1 || d.Reversals != 0 {
				t.Errorf("%s: deposit %v", id, d)
			}
		}
	}
	status, err := f.ChainStatus()
	if err != nil {
		t.Fatal(err)
	}
	if status.Utxos != accounts*perAccount || status.UtxoValueSat != total {
		t.Fatalf("chain status %v, want %d UTXOs worth %d", status, accounts*perAccount, total)
	}
	if cl := c.balance(fsm.DepositClearingAccount); cl.Posted != total {
		t.Fatalf("clearing account %v, want %d", cl, total)
	}
	c.requireLedgerBalances(ids...)
	c.requireReplicasAgree()
}

func TestClusterOnTheWrongNetworkChangesNothing(t *testing.T) {
	c := startChainCluster(t, 1, "testnet")
	leader := c.leader()
	applied := leader.FSM().AppliedIndex()
	c.eventually("the watcher to report the wrong network twice", func() bool {
		return chainwatch.MetricValue(t, leader.Agent().API().Registry(), "bankd_chainwatch_errors_total", "kind", chainwatch.KindNetwork) >= 2
	})
	if !strings.Contains(c.Logs(), "wrong network") ||
		!strings.Contains(c.Logs(), "node is on network regtest") {
		t.Fatalf("no clear error in the log:\n%s", c.Logs())
	}
	if _, ok, err := leader.FSM().ChainTip(); ok || err != nil {
		t.Fatalf("the cluster followed a chain of the wrong network (err %v)", err)
	}
	if got := leader.FSM().AppliedIndex(); got != applied {
		t.Fatalf("applied index moved from %d to %d", applied, got)
	}
}
