package chainwatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/fsmtest"
	"github.com/bankd/bankd/node"
)

const (
	cmdConnected    = bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED
	cmdDisconnected = bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_DISCONNECTED
	cmdMempool      = bankdv1.CommandType_COMMAND_TYPE_CHAIN_MEMPOOL
)

// fixture is a watcher over a fake chain node and a real state machine (applied directly, as a
// one-node Raft would), with one customer "alice" and one deposit address of hers.
type fixture struct {
	t     *testing.T
	f     *fsm.FSM
	p     *fsmtest.Proposer
	index *Index
	chain *fakeChain
	w     *Watcher
	s     *session
	reg   *prometheus.Registry
	logs  *logBuffer
	alice []byte // alice's deposit script
}

const fixtureStart = 10 // the fake chain's height at start, and the watcher's start height

func newFixture(t *testing.T) *fixture {
	t.Helper()
	index := NewIndex()
	f, err := fsm.Open(t.TempDir(), fsm.Options{
		OnScriptsWatched: index.AddScripts,
		Fatal:            func(err error) { t.Errorf("state machine stopped: %v", err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := index.Load(f); err != nil {
		t.Fatal(err)
	}
	p := &fsmtest.Proposer{T: t, F: f}
	p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT, &bankdv1.CreateAccountRequest{Account: &bankdv1.Account{
		Id: "alice", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true}})
	p.Must(bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET, &bankdv1.CreateWalletRequest{WalletId: "dep",
		Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: depositDescriptor(t, 1), Network: "regtest", GapLimit: 5})
	addr := p.Must(bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS,
		&bankdv1.NewDepositAddressRequest{AccountId: "alice", RequestId: "r1"}).(*bankdv1.NewDepositAddressResponse)

	chain := newFakeChain(fixtureStart)
	logs := &logBuffer{}
	cfg := Config{Network: "regtest", FinalDepth: 3, KeepHashes: 100, StartHeight: fixtureStart,
		PollInterval: 20 * time.Millisecond, Mempool: true}
	w, err := New(cfg, p, f, index, Options{Logger: newTestLogger(logs), NodeID: "t1", Remote: chain})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := w.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("watcher log:\n%s", logs.String())
		}
	})
	return &fixture{t: t, f: f, p: p, index: index, chain: chain, w: w, s: w.newSession(), reg: reg, logs: logs, alice: addr.Address.Script}
}

// settle steps the watcher until it is idle (caught up with the fake node, mempool polled).
func (fx *fixture) settle() {
	fx.t.Helper()
	for range 200 {
		wait, err := fx.s.next(context.Background())
		if err != nil {
			fx.t.Fatalf("watcher step: %v", err)
		}
		if wait > 0 {
			return
		}
	}
	fx.t.Fatal("the watcher never became idle")
}

func (fx *fixture) tx(tx *wire.MsgTx) *bankdv1.ChainTx {
	fx.t.Helper()
	rec, _, err := fx.f.ChainTx(tx.TxHash().String())
	if err != nil {
		fx.t.Fatalf("chain tx %s: %v", tx.TxHash(), err)
	}
	return rec
}

func (fx *fixture) deposit(tx *wire.MsgTx) *bankdv1.Deposit {
	fx.t.Helper()
	_, deposits, err := fx.f.ChainTx(tx.TxHash().String())
	if err != nil || len(deposits) != 1 {
		fx.t.Fatalf("deposits of %s: %v, %v", tx.TxHash(), deposits, err)
	}
	return deposits[0]
}

func (fx *fixture) balance(account string) *bankdv1.Balance {
	fx.t.Helper()
	acc, err := fx.f.Account(account)
	if err != nil {
		fx.t.Fatal(err)
	}
	return acc.Balance
}

func (fx *fixture) requireTip() {
	fx.t.Helper()
	height, hash := fx.chain.tip()
	tip, ok, err := fx.f.ChainTip()
	if err != nil || !ok || tip.Height != uint32(height) || tip.Hash != hash.String() {
		fx.t.Fatalf("state machine tip %v (ok %v, err %v), node tip %d/%s", tip, ok, err, height, hash)
	}
}

func (fx *fixture) metric(name string, labels ...string) float64 {
	fx.t.Helper()
	return metricValue(fx.t, fx.reg, name, labels...)
}

func TestWatcherFollowsADepositFromMempoolToCredit(t *testing.T) {
	fx := newFixture(t)
	fx.settle()
	fx.requireTip()

	tx := payTx(50_000, nil, fx.alice)
	fx.chain.send(tx)
	fx.settle()
	if st := fx.tx(tx).State; st != bankdv1.TxState_TX_STATE_PENDING {
		t.Fatalf("after the mempool poll the transaction is %v, want PENDING", st)
	}
	if b := fx.balance("alice"); b.CreditsPending != 50_000 || b.Posted != 0 {
		t.Fatalf("alice while pending: %v", b)
	}

	fx.chain.mineMempool()
	fx.settle()
	fx.requireTip()
	if st := fx.tx(tx).State; st != bankdv1.TxState_TX_STATE_CONFIRMED {
		t.Fatalf("after one block the transaction is %v, want CONFIRMED", st)
	}
	fx.chain.mine()
	fx.settle()
	if d := fx.deposit(tx); d.State != bankdv1.DepositState_DEPOSIT_STATE_PENDING {
		t.Fatalf("deposit at 2 confirmations of 3: %v", d.State)
	}
	fx.chain.mine()
	fx.settle()
	fx.requireTip()
	if d := fx.deposit(tx); d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED || d.Attempt != 1 {
		t.Fatalf("deposit at 3 confirmations: %v", d)
	}
	if b := fx.balance("alice"); b.Posted != 50_000 || b.CreditsPending != 0 {
		t.Fatalf("alice after the credit: %v", b)
	}
	if got := fx.metric("bankd_chainwatch_blocks_connected_total"); got != 4 {
		t.Errorf("blocks connected = %v, want 4 (start height and three more)", got)
	}
	if got := fx.metric("bankd_chainwatch_mempool_txs_added_total"); got != 1 {
		t.Errorf("mempool txs added = %v, want 1", got)
	}
	if got := fx.metric("bankd_chainwatch_tip_height"); got != fixtureStart+3 {
		t.Errorf("tip height metric = %v", got)
	}
}

// A script the index reports but the script table does not hold (a fingerprint collision, here
// forced by adding a script to the index alone) never reaches Raft.
func TestCandidateNotInTheScriptTableNeverReachesRaft(t *testing.T) {
	fx := newFixture(t)
	fx.settle()
	stranger := append([]byte{0x00, 0x14}, make([]byte, 20)...)
	fx.index.AddScripts([][]byte{stranger})

	tx := payTx(70_000, nil, stranger)
	fx.chain.send(tx)
	fx.settle()
	if n := fx.p.Count(cmdMempool); n != 0 {
		t.Fatalf("%d mempool commands proposed for a transaction that pays no watched script", n)
	}
	fx.chain.mineMempool()
	fx.settle()
	fx.requireTip()
	last := fx.p.Applied()[len(fx.p.Applied())-1]
	if last.Type != cmdConnected || len(last.Body.(*bankdv1.ChainBlockConnected).Txs) != 0 {
		t.Fatalf("last command %s %v, want a block without transactions", last.Type, last.Body)
	}
	if _, _, err := fx.f.ChainTx(tx.TxHash().String()); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("the state machine tracks the transaction: %v", err)
	}
	if got := fx.metric("bankd_chainwatch_candidates_rejected_total"); got != 2 {
		t.Errorf("candidates rejected = %v, want 2 (mempool and block)", got)
	}
}

// A block that pays us and spends one of our UTXOs is matched both ways; a transaction that only
// spends our UTXO (no output of ours) is included because the outpoint index knows the UTXO.
func TestSpendOfAUTXOIsMatched(t *testing.T) {
	fx := newFixture(t)
	fx.settle()
	deposit := payTx(80_000, nil, fx.alice)
	fx.chain.mine(deposit)
	fx.settle()
	utxo := wire.OutPoint{Hash: deposit.TxHash(), Index: 0}
	if !fx.s.outpoints.Contains(utxo) {
		t.Fatal("the new UTXO is not in the outpoint index")
	}
	spend := payTx(79_000, &utxo, []byte{0x51})
	fx.chain.mine(spend)
	fx.settle()
	if st := fx.tx(spend).State; st != bankdv1.TxState_TX_STATE_CONFIRMED {
		t.Fatalf("the spend is %v, want CONFIRMED", st)
	}
	status, err := fx.f.ChainStatus()
	if err != nil {
		t.Fatal(err)
	}
	if status.Utxos != 0 {
		t.Fatalf("%d UTXOs left after the spend", status.Utxos)
	}
}

func TestChainConflictIsReReadNotAnError(t *testing.T) {
	fx := newFixture(t)
	fx.settle()
	refused := 0
	fx.p.Intercept = func(typ bankdv1.CommandType, _ proto.Message) (bool, error) {
		if typ == cmdConnected && refused == 0 {
			refused++
			return false, &fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, Message: "another command applied first"}
		}
		return false, nil
	}
	tx := payTx(10_000, nil, fx.alice)
	fx.chain.mine(tx)
	fx.settle()
	fx.requireTip()
	if refused != 1 {
		t.Fatal("the conflict was never injected")
	}
	if got := fx.metric("bankd_chainwatch_chain_conflicts_total"); got != 1 {
		t.Errorf("conflicts = %v, want 1", got)
	}
	if st := fx.tx(tx).State; st != bankdv1.TxState_TX_STATE_CONFIRMED {
		t.Fatalf("transaction %v, want CONFIRMED", st)
	}
}

// A proposal whose outcome is unknown but that did apply is not repeated: the next step reads
// the state machine, which has moved.
func TestOutcomeUnknownIsNotRepeated(t *testing.T) {
	fx := newFixture(t)
	fx.settle()
	unknown := 0
	fx.p.Intercept = func(typ bankdv1.CommandType, _ proto.Message) (bool, error) {
		if typ == cmdConnected && unknown == 0 {
			unknown++
			return true, fmt.Errorf("apply: %w: leadership lost", node.ErrOutcomeUnknown)
		}
		return false, nil
	}
	before := fx.p.Count(cmdConnected)
	tx := payTx(10_000, nil, fx.alice)
	fx.chain.mine(tx)
	_, err := fx.s.next(context.Background())
	if !errors.Is(err, node.ErrOutcomeUnknown) || errorKind(err) != kindPropose {
		t.Fatalf("step error %v (kind %s), want an outcome-unknown propose error", err, errorKind(err))
	}
	fx.settle()
	fx.requireTip()
	if n := fx.p.Count(cmdConnected) - before; n != 1 {
		t.Fatalf("%d block commands reached the state machine, want exactly 1", n)
	}
	for _, a := range fx.p.Applied() {
		if e, ok := a.Result.(*fsm.Error); ok {
			t.Errorf("%s refused: %v", a.Type, e)
		}
	}
}

// A pending transaction missing from a mempool poll during which a block was mined (here: the
// block that confirms it) is not evicted: the round is skipped, the block comes first.
func TestMempoolRemovalOnlyWhenTheTipIsUnchanged(t *testing.T) {
	fx := newFixture(t)
	fx.settle()
	tx := payTx(20_000, nil, fx.alice)
	fx.chain.send(tx)
	fx.settle()
	if st := fx.tx(tx).State; st != bankdv1.TxState_TX_STATE_PENDING {
		t.Fatalf("transaction %v, want PENDING", st)
	}
	mempoolCommands := fx.p.Count(cmdMempool)

	mined := false
	fx.chain.beforeMempoolReply = func() {
		if !mined {
			mined = true
			fx.chain.mine(tx)
		}
	}
	wait, err := fx.s.next(context.Background())
	if err != nil || wait == 0 {
		t.Fatalf("step: wait %v, err %v; want an idle step with a mempool poll", wait, err)
	}
	if !mined {
		t.Fatal("the block was not mined during the poll")
	}
	if n := fx.p.Count(cmdMempool); n != mempoolCommands {
		t.Fatalf("a mempool command was proposed although the tip moved during the poll")
	}
	if st := fx.tx(tx).State; st != bankdv1.TxState_TX_STATE_PENDING {
		t.Fatalf("transaction %v after the skipped round, want still PENDING", st)
	}
	fx.settle()
	fx.requireTip()
	rec := fx.tx(tx)
	if rec.State != bankdv1.TxState_TX_STATE_CONFIRMED || rec.RejectReason != bankdv1.RejectReason_REJECT_REASON_UNSPECIFIED {
		t.Fatalf("transaction %v, want CONFIRMED and never rejected", rec)
	}
	if d := fx.deposit(tx); d.Attempt != 1 || d.State != bankdv1.DepositState_DEPOSIT_STATE_PENDING {
		t.Fatalf("deposit %v, want its first attempt still pending", d)
	}

	// With the tip unchanged, a pending transaction that left the mempool is evicted.
	evicted := payTx(30_000, nil, fx.alice)
	fx.chain.send(evicted)
	fx.settle()
	fx.chain.drop(evicted.TxHash())
	fx.settle()
	if rec := fx.tx(evicted); rec.State != bankdv1.TxState_TX_STATE_REJECTED || rec.RejectReason != bankdv1.RejectReason_REJECT_REASON_EVICTED {
		t.Fatalf("evicted transaction %v, want REJECTED/EVICTED", rec)
	}
	if d := fx.deposit(evicted); d.State != bankdv1.DepositState_DEPOSIT_STATE_REJECTED {
		t.Fatalf("deposit of the evicted transaction: %v", d.State)
	}
	if b := fx.balance("alice"); b.CreditsPending != 20_000 {
		t.Fatalf("alice's pending credits %d, want 20000 (the evicted deposit voided)", b.CreditsPending)
	}
}

// A new leader's watcher evicts what left the mempool while no watcher ran: removals come from
// the state machine's pending list, not from a previous poll.
func TestNewLeaderEvictsWhatLeftTheMempoolMeanwhile(t *testing.T) {
	fx := newFixture(t)
	fx.settle()
	stays, leaves := payTx(11_000, nil, fx.alice), payTx(12_000, nil, fx.alice)
	fx.chain.send(stays)
	fx.chain.send(leaves)
	fx.settle()
	fx.chain.drop(leaves.TxHash())

	fx.s = fx.w.newSession() // a new term: nothing remembered
	fx.settle()
	if st := fx.tx(leaves).State; st != bankdv1.TxState_TX_STATE_REJECTED {
		t.Fatalf("the transaction that left: %v, want REJECTED", st)
	}
	if st := fx.tx(stays).State; st != bankdv1.TxState_TX_STATE_PENDING {
		t.Fatalf("the transaction that stayed: %v, want PENDING", st)
	}
	if d := fx.deposit(stays); d.Attempt != 1 {
		t.Fatalf("the deposit that stayed started %d attempts, want 1", d.Attempt)
	}
}

func TestReorgIsFollowedBlockByBlock(t *testing.T) {
	fx := newFixture(t)
	fx.settle()
	tx := payTx(40_000, nil, fx.alice)
	fx.chain.mine(tx)
	fx.chain.mine()
	fx.settle()
	confirmedAt := fx.tx(tx).BlockHeight

	fx.chain.disconnect()
	fx.chain.disconnect() // tx is back in the mempool
	fx.chain.mine()
	fx.chain.mineMempool()
	fx.chain.mine()
	fx.settle()
	fx.requireTip()
	if got := fx.p.Count(cmdDisconnected); got != 2 {
		t.Fatalf("%d blocks disconnected, want 2", got)
	}
	rec := fx.tx(tx)
	if rec.State != bankdv1.TxState_TX_STATE_CONFIRMED || rec.BlockHeight != confirmedAt+1 {
		t.Fatalf("after the reorg: %v, want CONFIRMED one block higher than %d", rec, confirmedAt)
	}
	fx.chain.mine()
	fx.settle()
	if d := fx.deposit(tx); d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED || d.Attempt != 1 || d.Reversals != 0 {
		t.Fatalf("deposit %v, want credited once", d)
	}
	if b := fx.balance("alice"); b.Posted != 40_000 {
		t.Fatalf("alice %v", b)
	}
}

// A block with more matching transactions than one command may carry is neither truncated nor
// skipped: the watcher fails loudly and stays where it is.
func TestTooManyMatchesFailsLoudly(t *testing.T) {
	fx := newFixture(t)
	fx.w.maxTxs = 2
	fx.w.cfg.Mempool = false
	fx.settle()
	before, _, _ := fx.f.ChainTip()
	fx.chain.mine(payTx(1000, nil, fx.alice), payTx(2000, nil, fx.alice), payTx(3000, nil, fx.alice))

	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if err := fx.w.Run(ctx); err != nil {
		t.Fatalf("Run returned %v, want nil when its context ends", err)
	}
	after, _, _ := fx.f.ChainTip()
	if after.Hash != before.Hash {
		t.Fatalf("the tip moved from %v to %v past a block that was too large", before, after)
	}
	if got := fx.metric("bankd_chainwatch_errors_total", "kind", kindTooManyMatches); got < 2 {
		t.Errorf("too_many_matches errors = %v, want it retried and counted", got)
	}
	if !strings.Contains(fx.logs.String(), "3 transactions that concern the cluster, more than the 2 one command may carry") {
		t.Errorf("the log does not say why:\n%s", fx.logs.String())
	}
}

func TestWrongNetworkChangesNothing(t *testing.T) {
	fx := newFixture(t)
	fx.chain.network = &chaincfg.TestNet3Params
	applied := fx.f.AppliedIndex()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := fx.w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if fx.f.AppliedIndex() != applied {
		t.Fatalf("the state machine moved from %d to %d", applied, fx.f.AppliedIndex())
	}
	if got := fx.metric("bankd_chainwatch_errors_total", "kind", kindNetwork); got < 2 {
		t.Errorf("network errors = %v, want every retry counted", got)
	}
	if !strings.Contains(fx.logs.String(), "wrong network") || !strings.Contains(fx.logs.String(), "node is on network testnet3") {
		t.Errorf("no clear error in the log:\n%s", fx.logs.String())
	}
}
