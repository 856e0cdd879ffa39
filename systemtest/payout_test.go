package systemtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/regtest"
	"github.com/bankd/bankd/wallet/descriptor"
)

// payoutRig is a 3-process cluster following a real btcd, with a funded p2wpkh hot wallet
// whose key only signerd (a separate process, started by startSigner) holds.
type payoutRig struct {
	t    testing.TB
	ctx  context.Context
	btcd *regtest.Btcd
	c    *testcluster.ProcCluster
	dir  string
	// keyFile and desc are what `signerd keygen` wrote and printed.
	keyFile, desc string
	receive       *descriptor.Descriptor
	funded        int64
	signer        *exec.Cmd
	signerLog     string
	coldvault     *exec.Cmd
}

// payoutQueues is the payouts block of the rig: a batched queue that plans once count
// withdrawals are due (or 3 s after the oldest), and a vip queue whose withdrawals above
// 1,000,000 sat need approval.
const payoutQueues = `
payouts {
  wallet        = "hot"
  default_queue = "batched"
  queue "batched" {
    trigger      = "count"
    count        = %d
    interval     = "3s"
    max_batch    = 100
    fee          = "flat"
    fee_sat      = 500
    min_fee_rate = 2
    max_fee_rate = 50
  }
  queue "vip" {
    trigger                = "count"
    count                  = 1
    fee_sat                = 1000
    approval_threshold_sat = 1000000
  }
  queue "manual" {
    trigger = "manual"
    fee_sat = 200
  }
  queue "slow" {
    trigger           = "count"
    count             = 1
    fee_sat           = 500
    min_fee_rate      = 1
    max_fee_rate      = 50
    bump_after_blocks = 1
  }
%s}
`

func newPayoutRig(t testing.TB, count int, fundOutputs int, each int64) *payoutRig {
	t.Helper()
	return newPayoutRigWith(t, count, fundOutputs, each, regtest.Options{}, "")
}

// newPayoutRigWith is newPayoutRig with btcd's options and more of the payouts block.
func newPayoutRigWith(t testing.TB, count int, fundOutputs int, each int64, btcdOpts regtest.Options, payoutsExtra string) *payoutRig {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process cluster test against btcd; skipped with -short")
	}
	btcd := regtest.StartTest(t, btcdOpts)
	ctx := ctxFor(t, 6*time.Minute)
	start, err := btcd.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rpc := btcd.RPC()
	c := startCluster(t, testcluster.Spec{
		Chain: &testcluster.Chain{Network: "regtest", RPCHost: rpc.Host, RPCUser: rpc.User, RPCPass: rpc.Pass, RPCCert: rpc.CertPath,
			FinalDepth: 3, StartHeight: uint32(start.Height), PollInterval: 100 * time.Millisecond},
		Extra: fmt.Sprintf(payoutQueues, count, payoutsExtra),
	})
	r := &payoutRig{t: t, ctx: ctx, btcd: btcd, c: c, dir: t.TempDir()}

	// The hot wallet's key is made by signerd and never given to bankd.
	r.keyFile = filepath.Join(r.dir, "master.key")
	out, err := exec.CommandContext(ctx, signerdBin(t), "keygen", "-network", "regtest", "-out", r.keyFile).Output()
	if err != nil {
		t.Fatalf("signerd keygen: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "wpkh(") {
			r.desc = strings.TrimSpace(line)
		}
	}
	if r.desc == "" {
		t.Fatalf("signerd keygen printed no descriptor: %q", out)
	}
	if _, err := r.admin().Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
		WalletId: "hot", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: r.desc, GapLimit: 50})); err != nil {
		t.Fatalf("create hot wallet: %v", err)
	}
	d, err := descriptor.Parse(r.desc, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	r.receive = d.Multipath()[0]

	var outs []*wire.TxOut
	for i := range fundOutputs {
		script, err := r.receive.Derive(uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, &wire.TxOut{Value: each, PkScript: script})
		r.funded += each
	}
	if _, err := btcd.Send(ctx, outs, 0); err != nil {
		t.Fatal(err)
	}
	r.mine(1)
	r.waitFor("the hot wallet's funding to be UTXOs", func() (bool, error) {
		us, err := r.admin().Chain.ListUtxos(ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{WalletId: "hot"}))
		if err != nil {
			return false, err
		}
		return len(us.Msg.Utxos) == fundOutputs, nil
	})
	return r
}

// signerdBin finds signerd beside the bankd binary the cluster runs (make build puts both in
// bin/), or at $BANKD_SIGNERD.
func signerdBin(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("BANKD_SIGNERD"); b != "" {
		return b
	}
	bin := filepath.Join(filepath.Dir(testcluster.BankdBin()), "signerd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("signerd binary: %v (run `make build` or set BANKD_SIGNERD)", err)
	}
	return bin
}

func (r *payoutRig) admin() *apiclient.Clients {
	i, err := r.c.WaitLeader(ctxFor(r.t, 30*time.Second))
	if err != nil {
		r.t.Fatal(err)
	}
	return r.c.Client(i, testcluster.AdminToken)
}

// any returns a client of a running node other than the leader when there is one, so that
// writes also go through forwarding.
func (r *payoutRig) any(token string) *apiclient.Clients {
	leader, err := r.c.WaitLeader(ctxFor(r.t, 30*time.Second))
	if err != nil {
		r.t.Fatal(err)
	}
	if f := followerOf(r.c, leader); f >= 0 {
		return r.c.Client(f, token)
	}
	return r.c.Client(leader, token)
}

func (r *payoutRig) mine(n int) {
	r.t.Helper()
	if _, err := r.btcd.Generate(r.ctx, n); err != nil {
		r.t.Fatal(err)
	}
}

// waitFor polls cond until it holds; errors that say a node is between leaders are retried.
func (r *payoutRig) waitFor(what string, cond func() (bool, error)) {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		switch {
		case err == nil && ok:
			return
		case err != nil && connect.CodeOf(err) != connect.CodeUnavailable:
			r.t.Fatalf("waiting for %s: %v", what, err)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	r.t.Fatalf("timed out waiting for %s (last error %v)", what, last)
}

// startSigner runs signerd for the hot wallet with a signer-scope token against one node's API.
func (r *payoutRig) startSigner(node int) {
	r.t.Helper()
	r.startSignerFor(node, "signerd", "hot", r.desc, r.keyFile, "")
}

// startSignerFor runs a signerd named name for a wallet, with more of its config in extra.
func (r *payoutRig) startSignerFor(node int, name, walletID, desc, keyFile, extra string) {
	r.t.Helper()
	token := filepath.Join(r.dir, name+".token")
	if err := os.WriteFile(token, []byte(testcluster.SignerToken+"\n"), 0o600); err != nil {
		r.t.Fatal(err)
	}
	config := filepath.Join(r.dir, name+".hcl")
	hcl := fmt.Sprintf(`network = "regtest"
api_url = %q
ca_file = %q
token_file = %q
wallet_id = %q
descriptor = %q
key_file = %q
max_fee_sat = 200000
max_fee_rate_sat_vb = 100
daily_limit_sat = 100000000
state_file = %q
poll_interval = "200ms"
%s`, r.c.URL(node), r.c.CAFile, token, walletID, desc, keyFile, filepath.Join(r.dir, name+"-state.json"), extra)
	if err := os.WriteFile(config, []byte(hcl), 0o600); err != nil {
		r.t.Fatal(err)
	}
	logPath := filepath.Join(r.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(signerdBin(r.t), "-config", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.signer, r.signerLog = cmd, logPath
	r.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		if r.t.Failed() {
			b, _ := os.ReadFile(logPath)
			r.t.Logf("%s log:\n%s", name, b)
		}
	})
}

// outsiderAddress is a fresh regtest address no wallet of the cluster watches: p2wpkh or p2tr.
func outsiderAddress(t testing.TB, taproot bool) string {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	var addr btcutil.Address
	var err error
	if taproot {
		addr, err = btcutil.NewAddressTaproot(raw, &chaincfg.RegressionNetParams)
	} else {
		addr, err = btcutil.NewAddressWitnessPubKeyHash(raw[:20], &chaincfg.RegressionNetParams)
	}
	if err != nil {
		t.Fatal(err)
	}
	return addr.EncodeAddress()
}

// batches returns every batch the cluster has planned.
func (r *payoutRig) batches() []*bankdv1.PayoutBatch {
	r.t.Helper()
	return retryUnavailable(r.t, func() ([]*bankdv1.PayoutBatch, error) {
		res, err := r.admin().Payout.ListBatches(r.ctx, connect.NewRequest(&bankdv1.ListPayoutBatchesRequest{PageSize: 1000}))
		if err != nil {
			return nil, err
		}
		return res.Msg.Batches, nil
	})
}

// payouts returns every withdrawal.
func (r *payoutRig) payouts() []*bankdv1.Payout {
	r.t.Helper()
	return retryUnavailable(r.t, func() ([]*bankdv1.Payout, error) {
		res, err := r.admin().Payout.ListPayouts(r.ctx, connect.NewRequest(&bankdv1.ListPayoutsRequest{PageSize: 1000}))
		if err != nil {
			return nil, err
		}
		return res.Msg.Payouts, nil
	})
}

// retryUnavailable calls read until it answers anything but Unavailable (a node between
// leaders says so, and that the read may be retried), for at most 30 s.
func retryUnavailable[T any](t testing.TB, read func() (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := read()
		if err == nil {
			return v
		}
		if connect.CodeOf(err) != connect.CodeUnavailable || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countState[T any](items []T, ok func(T) bool) int {
	n := 0
	for _, it := range items {
		if ok(it) {
			n++
		}
	}
	return n
}

// mineUntilPaid mines a block at a time until every withdrawal is PAID.
func (r *payoutRig) mineUntilPaid(total int) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%d withdrawals paid", total), func() (bool, error) {
		ps := r.payouts()
		paid := countState(ps, func(p *bankdv1.Payout) bool { return p.State == bankdv1.PayoutState_PAYOUT_STATE_PAID })
		if paid == total {
			return true, nil
		}
		// Mine only once every signed batch is in the mempool or a block.
		signed := countState(r.batches(), func(b *bankdv1.PayoutBatch) bool {
			return b.State == bankdv1.BatchState_BATCH_STATE_SIGNED || b.State == bankdv1.BatchState_BATCH_STATE_CONFIRMED
		})
		pool, err := r.btcd.Mempool(r.ctx)
		if err != nil {
			return false, err
		}
		if signed > 0 && len(pool) > 0 || paid < total && countState(r.batches(), func(b *bankdv1.PayoutBatch) bool { return b.State == bankdv1.BatchState_BATCH_STATE_CONFIRMED }) > 0 {
			r.mine(1)
		}
		return false, nil
	})
}

// checkBooks checks every paid withdrawal against the chain, the customers' balances and the
// hot wallet's books to the satoshi.
func (r *payoutRig) checkBooks(start map[string]int64) {
	r.t.Helper()
	bal := func(id string) *bankdv1.Balance {
		return retryUnavailable(r.t, func() (*bankdv1.Balance, error) { return tryBalance(r.t, r.admin(), id) })
	}
	var amounts, charged, fees int64
	byTx := map[string][]*bankdv1.Payout{}
	spent := map[string]int64{}
	for _, p := range r.payouts() {
		if p.State != bankdv1.PayoutState_PAYOUT_STATE_PAID {
			continue
		}
		byTx[p.Txid] = append(byTx[p.Txid], p)
		amounts += p.AmountSat
		charged += p.FeeSat
		spent[p.AccountId] += p.AmountSat + p.FeeSat
	}
	for _, b := range r.batches() {
		if b.State != bankdv1.BatchState_BATCH_STATE_FINAL {
			continue
		}
		fees += b.FeeSat
		var raw string
		if err := r.btcd.Call(r.ctx, "getrawtransaction", &raw, b.Txid, 0); err != nil {
			r.t.Fatalf("batch %s: getrawtransaction %s: %v", b.Id, b.Txid, err)
		}
		bs, err := hex.DecodeString(raw)
		if err != nil {
			r.t.Fatal(err)
		}
		tx := wire.NewMsgTx(2)
		if err := tx.Deserialize(bytes.NewReader(bs)); err != nil {
			r.t.Fatal(err)
		}
		for _, p := range byTx[b.Txid] {
			o := tx.TxOut[p.Vout]
			if o.Value != p.AmountSat || !bytes.Equal(o.PkScript, p.Script) {
				r.t.Errorf("withdrawal %s: output %d of %s pays %d to %x, want %d to %x", p.Id, p.Vout, b.Txid, o.Value, o.PkScript, p.AmountSat, p.Script)
			}
		}
		delete(byTx, b.Txid)
	}
	if len(byTx) != 0 {
		r.t.Errorf("withdrawals paid by transactions that are not final batches: %v", byTx)
	}
	for acc, before := range start {
		b := bal(acc)
		if b.Posted != before-spent[acc] || b.DebitsPending != 0 {
			r.t.Errorf("%s: %v, want %d posted and no holds (spent %d)", acc, b, before-spent[acc], spent[acc])
		}
	}
	// Without any withdrawal there is no clearing account.
	if len(r.payouts()) > 0 {
		if b := bal(fsm.PayoutClearingAccount); b.Posted != 0 || b.CreditsPending != 0 {
			r.t.Errorf("%s: %v, want zero", fsm.PayoutClearingAccount, b)
		}
	}
	// The hot wallet's book holds its funding less what left it: the withdrawals and the
	// network fees.
	hot := bal(fsm.WalletAccount("hot"))
	if got := hot.DebitsPosted - hot.CreditsPosted; got != r.funded-amounts-fees {
		r.t.Errorf("wallet:hot holds %d, want funding %d - withdrawals %d - fees %d", got, r.funded, amounts, fees)
	}
	rec := retryUnavailable(r.t, func() (*bankdv1.ReconcileWalletsResponse, error) {
		res, err := r.c.Client(followerOf(r.c, -1), testcluster.OperatorToken).Payout.ReconcileWallets(r.ctx, connect.NewRequest(&bankdv1.ReconcileWalletsRequest{}))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	})
	if len(rec.Wallets) != 1 || rec.Wallets[0].DifferenceSat != 0 || rec.Wallets[0].UnsettledBatches != 0 {
		r.t.Errorf("reconciliation %v, want the hot wallet settled with no difference", rec.Wallets)
	}
	us := retryUnavailable(r.t, func() (*bankdv1.ListUtxosResponse, error) {
		res, err := r.admin().Chain.ListUtxos(r.ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{WalletId: "hot", PageSize: 1000}))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	})
	var utxos int64
	for _, u := range us.Utxos {
		utxos += u.ValueSat
	}
	if utxos != r.funded-amounts-fees {
		r.t.Errorf("hot wallet UTXOs hold %d, want funding %d - withdrawals %d - fees %d", utxos, r.funded, amounts, fees)
	}
	r.t.Logf("books: %d withdrawals %d sat, charged %d, fees paid %d in %d batches; hot UTXOs %d", len(r.payouts()), amounts, charged, fees,
		countState(r.batches(), func(b *bankdv1.PayoutBatch) bool { return b.State == bankdv1.BatchState_BATCH_STATE_FINAL }), utxos)
}

// TestTwoHundredWithdrawalsAreBatchedSignedAndBookedOnce: 200 withdrawals from 50 accounts wait
// in PLANNED batches while signerd is down, are signed once it starts, broadcast, confirmed and
// booked to the satoshi; a withdrawal above the approval threshold waits for a second identity.
func TestTwoHundredWithdrawalsAreBatchedSignedAndBookedOnce(t *testing.T) {
	r := newPayoutRig(t, 100, 8, 1_500_000)
	cl := r.admin()
	createAccount(t, cl, "capital", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	start := map[string]int64{}
	for i := range 50 {
		id := fmt.Sprintf("cust-%02d", i)
		createAccount(t, cl, id, liability, true)
		if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund-"+id, "capital", id, 100_000)})); err != nil {
			t.Fatal(err)
		}
		start[id] = 100_000
	}

	// 200 withdrawals, 8 at a time, through followers and the leader alike.
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				req := &bankdv1.RequestPayoutRequest{Id: fmt.Sprintf("w-%03d", i), AccountId: fmt.Sprintf("cust-%02d", i%50),
					Address: outsiderAddress(t, i%3 == 0), AmountSat: 5_000 + int64(i)*50}
				cli := r.c.Client(i%len(r.c.Nodes), testcluster.ClientToken)
				for attempt := 0; ; attempt++ {
					_, err := cli.Payout.RequestPayout(r.ctx, connect.NewRequest(req))
					if err == nil || connect.CodeOf(err) != connect.CodeUnavailable || attempt == 20 {
						errs <- err
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	for i := range 200 {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("request: %v", err)
		}
	}

	// A request over the balance, to a mainnet address, or of dust changes nothing.
	for _, bad := range []struct {
		req  *bankdv1.RequestPayoutRequest
		code connect.Code
	}{
		{&bankdv1.RequestPayoutRequest{Id: "over", AccountId: "cust-00", Address: outsiderAddress(t, false), AmountSat: 1_000_000}, connect.CodeFailedPrecondition},
		{&bankdv1.RequestPayoutRequest{Id: "mainnet", AccountId: "cust-00", Address: "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", AmountSat: 10_000}, connect.CodeInvalidArgument},
		{&bankdv1.RequestPayoutRequest{Id: "dust", AccountId: "cust-00", Address: outsiderAddress(t, false), AmountSat: 100}, connect.CodeInvalidArgument},
	} {
		_, err := r.any(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(bad.req))
		if connect.CodeOf(err) != bad.code {
			t.Errorf("request %s: %v, want %v", bad.req.Id, err, bad.code)
		}
	}

	// With signerd down, the withdrawals are planned into batches that wait for a signature.
	r.waitFor("200 withdrawals in planned batches", func() (bool, error) {
		ps := r.payouts()
		return countState(ps, func(p *bankdv1.Payout) bool { return p.State == bankdv1.PayoutState_PAYOUT_STATE_BATCHED }) == 200, nil
	})
	planned := r.batches()
	if len(planned) < 2 || len(planned) > 4 {
		t.Fatalf("%d batches for 200 withdrawals of at most 100 each, want 2-4", len(planned))
	}
	for _, b := range planned {
		if b.State != bankdv1.BatchState_BATCH_STATE_PLANNED {
			t.Fatalf("batch %s is %v before any signer ran", b.Id, b.State)
		}
	}

	// A large withdrawal needs a second identity: not the requester, and an operator.
	createAccount(t, cl, "whale", liability, true)
	if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund-whale", "capital", "whale", 3_000_000)})); err != nil {
		t.Fatal(err)
	}
	start["whale"] = 3_000_000
	big, err := r.any(testcluster.AdminToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
		Id: "whale-1", AccountId: "whale", Address: outsiderAddress(t, true), AmountSat: 2_000_000, Queue: "vip"}))
	if err != nil {
		t.Fatal(err)
	}
	if big.Msg.Payout.State != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL {
		t.Fatalf("large withdrawal is %v", big.Msg.Payout.State)
	}
	if _, err := r.any(testcluster.AdminToken).Payout.ApprovePayout(r.ctx, connect.NewRequest(&bankdv1.DecidePayoutRequest{Id: "whale-1"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("the requester approving its own withdrawal: %v, want failed_precondition", err)
	}
	if _, err := r.any(testcluster.ClientToken).Payout.ApprovePayout(r.ctx, connect.NewRequest(&bankdv1.DecidePayoutRequest{Id: "whale-1"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a write token approving: %v, want permission_denied", err)
	}
	approved, err := r.any(testcluster.OperatorToken).Payout.ApprovePayout(r.ctx, connect.NewRequest(&bankdv1.DecidePayoutRequest{Id: "whale-1"}))
	if err != nil {
		t.Fatal(err)
	}
	if p := approved.Msg.Payout; p.DecidedBy != "dev-operator-1" || p.RequestedBy != "dev-admin-1" {
		t.Fatalf("approval recorded %q for a request by %q", p.DecidedBy, p.RequestedBy)
	}

	// signerd starts: every batch is signed, broadcast, mined and made final.
	r.startSigner(followerOf(r.c, -1))
	r.mineUntilPaid(201)
	r.checkBooks(start)
	requireSameStateHash(t, r.c)
}

// TestKilledLeaderPaysEachWithdrawalOnce SIGKILLs the leader after a batch is signed but while
// the chain node cannot be reached (so it cannot have broadcast it), and again after a batch is
// in the mempool: each batch is one transaction, broadcast by whichever leader can, and no
// withdrawal is planned twice.
func TestKilledLeaderPaysEachWithdrawalOnce(t *testing.T) {
	r := newPayoutRig(t, 5, 4, 1_000_000)
	cl := r.admin()
	createAccount(t, cl, "capital", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	createAccount(t, cl, "alice", liability, true)
	if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund", "capital", "alice", 1_000_000)})); err != nil {
		t.Fatal(err)
	}
	request := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := r.any(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
				Id: fmt.Sprintf("k-%d", i), AccountId: "alice", Address: outsiderAddress(t, false), AmountSat: 20_000})); err != nil {
				t.Fatal(err)
			}
		}
	}
	inState := func(state bankdv1.BatchState) int {
		return countState(r.batches(), func(b *bankdv1.PayoutBatch) bool { return b.State == state })
	}

	// Round 1: signed while btcd is stopped, then the leader is killed.
	request(0, 5)
	r.waitFor("the first batch planned", func() (bool, error) { return inState(bankdv1.BatchState_BATCH_STATE_PLANNED) == 1, nil })
	if err := syscall.Kill(r.btcd.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(r.btcd.PID(), syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(resume)
	leader, _ := leaderClient(t, r.c)
	r.startSigner(followerOf(r.c, leader))
	r.waitFor("the first batch signed", func() (bool, error) { return inState(bankdv1.BatchState_BATCH_STATE_SIGNED) == 1, nil })
	t.Logf("SIGKILL leader %s with batch signed and btcd stopped", r.c.Nodes[leader].ID)
	if err := r.c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	resume()
	if err := r.c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	r.mineUntilPaid(5)

	// Round 2: the leader is killed once the batch is in btcd's mempool.
	request(5, 10)
	r.waitFor("the second batch in the mempool", func() (bool, error) {
		for _, b := range r.batches() {
			if b.State == bankdv1.BatchState_BATCH_STATE_SIGNED {
				return r.btcd.InMempool(r.ctx, mustHash(t, b.Txid))
			}
		}
		return false, nil
	})
	leader, _ = leaderClient(t, r.c)
	t.Logf("SIGKILL leader %s with the second batch in the mempool", r.c.Nodes[leader].ID)
	if err := r.c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	r.mineUntilPaid(10)
	if err := r.c.Restart(leader); err != nil {
		t.Fatal(err)
	}

	// Each withdrawal is in exactly one batch; each batch is one final transaction.
	seen := map[string]string{}
	for _, b := range r.batches() {
		if b.State != bankdv1.BatchState_BATCH_STATE_FINAL {
			t.Errorf("batch %s is %v", b.Id, b.State)
		}
		for _, o := range b.Outputs {
			if o.PayoutId == "" {
				continue
			}
			if other, dup := seen[o.PayoutId]; dup {
				t.Errorf("withdrawal %s is in batches %s and %s", o.PayoutId, other, b.Id)
			}
			seen[o.PayoutId] = b.Id
		}
	}
	if len(seen) != 10 {
		t.Errorf("%d withdrawals in batches, want 10", len(seen))
	}
	r.checkBooks(map[string]int64{"alice": 1_000_000})
	r.waitFor("every node back", func() (bool, error) { _, err := r.c.WaitLeader(r.ctx); return err == nil, err })
	requireSameStateHash(t, r.c)
}

func mustHash(t *testing.T, txid string) chainhash.Hash {
	t.Helper()
	h, err := chainhash.NewHashFromStr(txid)
	if err != nil {
		t.Fatal(err)
	}
	return *h
}

// TestReorgedPayoutIsMinedAgainAndBookedOnce: a batch's block is reorganised away before final
// depth; btcd mines its transaction again in the new branch; the cluster follows it back to
// SIGNED and on to CONFIRMED in the new block, and books it once.
func TestReorgedPayoutIsMinedAgainAndBookedOnce(t *testing.T) {
	r := newPayoutRig(t, 3, 2, 1_000_000)
	cl := r.admin()
	createAccount(t, cl, "capital", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	createAccount(t, cl, "alice", liability, true)
	if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund", "capital", "alice", 500_000)})); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := r.any(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
			Id: fmt.Sprintf("r-%d", i), AccountId: "alice", Address: outsiderAddress(t, i == 0), AmountSat: 30_000})); err != nil {
			t.Fatal(err)
		}
	}
	r.startSigner(followerOf(r.c, -1))
	var batch *bankdv1.PayoutBatch
	r.waitFor("the batch in the mempool", func() (bool, error) {
		for _, b := range r.batches() {
			if b.State == bankdv1.BatchState_BATCH_STATE_SIGNED {
				batch = b
				return r.btcd.InMempool(r.ctx, mustHash(t, b.Txid))
			}
		}
		return false, nil
	})
	r.mine(1)
	r.waitFor("the batch confirmed", func() (bool, error) {
		return countState(r.batches(), func(b *bankdv1.PayoutBatch) bool { return b.State == bankdv1.BatchState_BATCH_STATE_CONFIRMED }) == 1, nil
	})
	oldBranch, newBranch, err := r.btcd.Reorg(r.ctx, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reorganised block %s away; new branch %v", oldBranch[0], newBranch)
	r.waitFor("the transaction followed into the new branch", func() (bool, error) {
		res, err := r.admin().Chain.GetChainTx(r.ctx, connect.NewRequest(&bankdv1.GetChainTxRequest{Txid: batch.Txid}))
		if err != nil {
			return false, err
		}
		return res.Msg.Tx.BlockHash == newBranch[0].String(), nil
	})
	r.mineUntilPaid(3)
	paid := r.batches()
	if len(paid) != 1 || paid[0].State != bankdv1.BatchState_BATCH_STATE_FINAL || paid[0].Txid != batch.Txid {
		t.Fatalf("batches after the reorg: %v", paid)
	}
	r.checkBooks(map[string]int64{"alice": 500_000})
	requireSameStateHash(t, r.c)
}

// TestStuckPayoutIsFeeBumped: btcd relays nothing under 1.5 sat/vB, so the slow queue's first
// transaction (1 sat/vB) never reaches a mempool. A block later the driver replaces it with a
// higher-fee version of the same transaction (same inputs and withdrawals), signerd signs it,
// it confirms, and the original is REPLACED; the withdrawal is paid and booked once, with the
// replacement's fee.
func TestStuckPayoutIsFeeBumped(t *testing.T) {
	r := newPayoutRigWith(t, 1, 2, 1_000_000, regtest.Options{ExtraArgs: []string{"--minrelaytxfee=0.000015"}}, "")
	cl := r.admin()
	createAccount(t, cl, "capital", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	createAccount(t, cl, "alice", liability, true)
	if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund", "capital", "alice", 500_000)})); err != nil {
		t.Fatal(err)
	}
	if _, err := r.any(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
		Id: "slow-1", AccountId: "alice", Address: outsiderAddress(t, false), AmountSat: 40_000, Queue: "slow"})); err != nil {
		t.Fatal(err)
	}
	r.startSigner(followerOf(r.c, -1))
	var first *bankdv1.PayoutBatch
	r.waitFor("the first transaction signed", func() (bool, error) {
		bs := r.batches()
		if len(bs) == 1 && bs[0].State == bankdv1.BatchState_BATCH_STATE_SIGNED {
			first = bs[0]
			return true, nil
		}
		return false, nil
	})
	if in, err := r.btcd.InMempool(r.ctx, mustHash(t, first.Txid)); err != nil || in {
		t.Fatalf("a 1 sat/vB transaction in a 1.5 sat/vB mempool: %v %v", in, err)
	}
	r.mine(1)
	var bump *bankdv1.PayoutBatch
	r.waitFor("the replacement in the mempool", func() (bool, error) {
		for _, b := range r.batches() {
			if b.Replaces == first.Id && b.State == bankdv1.BatchState_BATCH_STATE_SIGNED {
				bump = b
				return r.btcd.InMempool(r.ctx, mustHash(t, b.Txid))
			}
		}
		return false, nil
	})
	r.mineUntilPaid(1)
	for _, b := range r.batches() {
		switch b.Id {
		case first.Id:
			if b.State != bankdv1.BatchState_BATCH_STATE_REPLACED || b.ReplacedBy != bump.Id {
				t.Errorf("the original: %v replaced by %q", b.State, b.ReplacedBy)
			}
		case bump.Id:
			if b.State != bankdv1.BatchState_BATCH_STATE_FINAL || b.FeeSat <= first.FeeSat || b.FeeRateSatKvb < 1500 {
				t.Errorf("the replacement: %v, fee %d (%d sat/kvB) after %d", b.State, b.FeeSat, b.FeeRateSatKvb, first.FeeSat)
			}
		default:
			t.Errorf("unexpected batch %s", b.Id)
		}
	}
	if p := r.payouts()[0]; p.Txid != bump.Txid || p.State != bankdv1.PayoutState_PAYOUT_STATE_PAID {
		t.Errorf("withdrawal %v, want paid by %s", p, bump.Txid)
	}
	r.checkBooks(map[string]int64{"alice": 500_000})
	requireSameStateHash(t, r.c)
}

// TestPayoutAttacker: what each token must not do, and signatures that must not be taken.
// Every refusal leaves the batch waiting for a real signature and every node running.
func TestPayoutAttacker(t *testing.T) {
	r := newPayoutRig(t, 100, 1, 1_000_000)
	cl := r.admin()
	createAccount(t, cl, "capital", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	createAccount(t, cl, "alice", liability, true)
	createAccount(t, cl, "loose", liability, false)
	if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund", "capital", "alice", 500_000)})); err != nil {
		t.Fatal(err)
	}
	if _, err := r.any(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
		Id: "v-1", AccountId: "alice", Address: outsiderAddress(t, false), AmountSat: 30_000, Queue: "vip"})); err != nil {
		t.Fatal(err)
	}
	var batch *bankdv1.PayoutBatch
	r.waitFor("a planned batch", func() (bool, error) {
		bs := r.batches()
		if len(bs) == 1 {
			batch = bs[0]
		}
		return batch != nil, nil
	})
	as := func(token string) *apiclient.Clients { return r.any(token) }
	address := outsiderAddress(t, false)
	for _, c := range []struct {
		name string
		call func() error
		code connect.Code
	}{
		{"a read token requests a withdrawal", func() error {
			_, err := as(testcluster.ReadToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{Id: "x1", AccountId: "alice", Address: address, AmountSat: 10_000}))
			return err
		}, connect.CodePermissionDenied},
		{"the signer requests a withdrawal", func() error {
			_, err := as(testcluster.SignerToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{Id: "x2", AccountId: "alice", Address: address, AmountSat: 10_000}))
			return err
		}, connect.CodePermissionDenied},
		{"the signer cancels one", func() error {
			_, err := as(testcluster.SignerToken).Payout.CancelPayout(r.ctx, connect.NewRequest(&bankdv1.CancelPayoutRequest{Id: "v-1"}))
			return err
		}, connect.CodePermissionDenied},
		{"a write token signs", func() error {
			_, err := as(testcluster.ClientToken).Payout.SubmitSignature(r.ctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: batch.Id, Psbt: batch.Psbt}))
			return err
		}, connect.CodePermissionDenied},
		{"a write token abandons a batch", func() error {
			_, err := as(testcluster.ClientToken).Payout.AbandonBatch(r.ctx, connect.NewRequest(&bankdv1.AbandonPayoutBatchRequest{BatchId: batch.Id, Reason: "mine now"}))
			return err
		}, connect.CodePermissionDenied},
		{"the signer abandons a batch", func() error {
			_, err := as(testcluster.SignerToken).Payout.AbandonBatch(r.ctx, connect.NewRequest(&bankdv1.AbandonPayoutBatchRequest{BatchId: batch.Id, Reason: "mine now"}))
			return err
		}, connect.CodePermissionDenied},
		{"a withdrawal from the payout clearing account", func() error {
			_, err := as(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{Id: "x3", AccountId: fsm.PayoutClearingAccount, Address: address, AmountSat: 10_000}))
			return err
		}, connect.CodeInvalidArgument},
		{"a withdrawal from the hot wallet's books", func() error {
			_, err := as(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{Id: "x4", AccountId: fsm.WalletAccount("hot"), Address: address, AmountSat: 10_000}))
			return err
		}, connect.CodeInvalidArgument},
		{"a withdrawal from an equity account", func() error {
			_, err := as(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{Id: "x5", AccountId: "capital", Address: address, AmountSat: 10_000}))
			return err
		}, connect.CodeInvalidArgument},
		{"a withdrawal from an account that may go negative", func() error {
			_, err := as(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{Id: "x6", AccountId: "loose", Address: address, AmountSat: 10_000}))
			return err
		}, connect.CodeInvalidArgument},
		{"an unsigned PSBT", func() error {
			_, err := as(testcluster.SignerToken).Payout.SubmitSignature(r.ctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: batch.Id, Psbt: batch.Psbt}))
			return err
		}, connect.CodeInvalidArgument},
		{"garbage", func() error {
			_, err := as(testcluster.SignerToken).Payout.SubmitSignature(r.ctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: batch.Id, Psbt: []byte("psbt\xff\x01\x00garbage")}))
			return err
		}, connect.CodeInvalidArgument},
		{"a batch that does not exist", func() error {
			_, err := as(testcluster.SignerToken).Payout.SubmitSignature(r.ctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: "b999999", Psbt: batch.Psbt}))
			return err
		}, connect.CodeNotFound},
	} {
		if err := c.call(); connect.CodeOf(err) != c.code {
			t.Errorf("%s: %v, want %v", c.name, err, c.code)
		}
	}
	if b := r.batches(); len(b) != 1 || b[0].State != bankdv1.BatchState_BATCH_STATE_PLANNED {
		t.Fatalf("batches after the attacks: %v", b)
	}
	for i := range r.c.Nodes {
		if !r.c.Running(i) {
			t.Errorf("node %s exited", r.c.Nodes[i].ID)
		}
	}
	// The real signer still gets its way.
	r.startSigner(followerOf(r.c, -1))
	r.mineUntilPaid(1)
	r.checkBooks(map[string]int64{"alice": 500_000})
}

// TestSmallUTXOsAreConsolidated: with fees at the floor and twelve small coins in the hot
// wallet, the driver merges ten of them into one change output; signerd signs it; the books
// lose exactly the fee and still equal the UTXOs.
func TestSmallUTXOsAreConsolidated(t *testing.T) {
	r := newPayoutRigWith(t, 100, 12, 20_000, regtest.Options{}, "  consolidate {\n    below_fee_rate = 5\n    min_utxos = 10\n    max_inputs = 10\n  }\n")
	r.startSigner(followerOf(r.c, -1))
	var batch *bankdv1.PayoutBatch
	r.waitFor("a consolidation in the mempool", func() (bool, error) {
		for _, b := range r.batches() {
			if b.Queue == fsm.ConsolidationQueue && b.State == bankdv1.BatchState_BATCH_STATE_SIGNED {
				batch = b
				return r.btcd.InMempool(r.ctx, mustHash(t, b.Txid))
			}
		}
		return false, nil
	})
	if len(batch.Inputs) != 10 || len(batch.Outputs) != 1 || !batch.Outputs[0].Change {
		t.Fatalf("consolidation %d inputs, outputs %v", len(batch.Inputs), batch.Outputs)
	}
	r.waitFor("the consolidation final", func() (bool, error) {
		for _, b := range r.batches() {
			if b.Id == batch.Id && b.State == bankdv1.BatchState_BATCH_STATE_FINAL {
				return true, nil
			}
		}
		r.mine(1)
		return false, nil
	})
	r.checkBooks(nil)
	us := retryUnavailable(t, func() (*bankdv1.ListUtxosResponse, error) {
		res, err := r.admin().Chain.ListUtxos(r.ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{WalletId: "hot"}))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	})
	if len(us.Utxos) != 3 {
		t.Fatalf("%d UTXOs after consolidating 10 of 12, want 3", len(us.Utxos))
	}
	requireSameStateHash(t, r.c)
}

// TestDepositsAreSweptToTheHotWallet: coins credited at a DEPOSIT wallet's addresses are moved
// to the hot wallet by a sweep that the deposit wallet's own signerd signs; the deposits' books
// move to the hot wallet's, less the fee, and both wallets reconcile.
func TestDepositsAreSweptToTheHotWallet(t *testing.T) {
	r := newPayoutRigWith(t, 100, 1, 1_000_000, regtest.Options{}, "  sweep {\n    interval = \"500ms\"\n    min_sat = 50000\n  }\n")
	cl := r.admin()
	depKey := filepath.Join(r.dir, "deposit.key")
	out, err := exec.CommandContext(r.ctx, signerdBin(t), "keygen", "-network", "regtest", "-out", depKey).Output()
	if err != nil {
		t.Fatal(err)
	}
	depDesc := strings.TrimSpace(string(out))
	if _, err := cl.Wallet.CreateWallet(r.ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
		WalletId: "deposits", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: depDesc})); err != nil {
		t.Fatal(err)
	}
	createAccount(t, cl, "alice", liability, true)
	var total int64
	for i := range 3 {
		addr, err := cl.Wallet.NewDepositAddress(r.ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "alice", RequestId: fmt.Sprintf("a%d", i)}))
		if err != nil {
			t.Fatal(err)
		}
		value := int64(30_000 + 10_000*i)
		if _, err := r.btcd.Send(r.ctx, []*wire.TxOut{{Value: value, PkScript: addr.Msg.Address.Script}}, 0); err != nil {
			t.Fatal(err)
		}
		total += value
	}
	r.mine(3) // final_depth 3: credited, so sweepable
	r.startSignerFor(followerOf(r.c, -1), "deposit-signerd", "deposits", depDesc, depKey,
		fmt.Sprintf("sweep_to_wallet_id = \"hot\"\nsweep_to_descriptor = %q\n", r.desc))
	var sweep *bankdv1.PayoutBatch
	r.waitFor("the sweep final", func() (bool, error) {
		for _, b := range r.batches() {
			if b.ToWalletId == "hot" {
				sweep = b
				if b.State == bankdv1.BatchState_BATCH_STATE_FINAL {
					return true, nil
				}
				if b.State == bankdv1.BatchState_BATCH_STATE_SIGNED || b.State == bankdv1.BatchState_BATCH_STATE_CONFIRMED {
					r.mine(1)
				}
			}
		}
		return false, nil
	})
	if len(sweep.Inputs) != 3 || sweep.WalletId != "deposits" || sweep.Queue != fsm.SweepQueue {
		t.Fatalf("sweep %v", sweep)
	}
	bal := func(id string) int64 {
		b := retryUnavailable(t, func() (*bankdv1.Balance, error) { return tryBalance(t, r.admin(), id) })
		return b.DebitsPosted - b.CreditsPosted
	}
	if got := bal(fsm.WalletAccount("hot")); got != r.funded+total-sweep.FeeSat {
		t.Errorf("wallet:hot %d, want funding %d + swept %d - fee %d", got, r.funded, total, sweep.FeeSat)
	}
	if got := bal(fsm.DepositClearingAccount); got != 0 {
		t.Errorf("onchain-deposits %d after the sweep, want 0", got)
	}
	if got := -bal("alice"); got != total {
		t.Errorf("alice %d, want her deposits %d", got, total)
	}
	rec := retryUnavailable(t, func() (*bankdv1.ReconcileWalletsResponse, error) {
		res, err := r.admin().Payout.ReconcileWallets(r.ctx, connect.NewRequest(&bankdv1.ReconcileWalletsRequest{}))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	})
	if len(rec.Wallets) != 1 || rec.Wallets[0].DifferenceSat != 0 || rec.Solvency.SurplusSat != r.funded-sweep.FeeSat {
		t.Errorf("reconciliation %v, solvency %v", rec.Wallets, rec.Solvency)
	}
	requireSameStateHash(t, r.c)
}

// TestTheHotWalletIsSplitIntoItsTargetNumberOfCoins: a hot wallet with one coin and a target of
// four has it split into four change outputs, signed by signerd; the books lose only the fee.
func TestTheHotWalletIsSplitIntoItsTargetNumberOfCoins(t *testing.T) {
	r := newPayoutRigWith(t, 100, 1, 1_000_000, regtest.Options{}, "  split {\n    target_utxos = 4\n    min_sat = 100000\n  }\n")
	r.startSigner(followerOf(r.c, -1))
	r.waitFor("the split final", func() (bool, error) {
		for _, b := range r.batches() {
			if b.Queue != fsm.SplitQueue {
				continue
			}
			switch b.State {
			case bankdv1.BatchState_BATCH_STATE_FINAL:
				if len(b.Outputs) != 4 {
					t.Fatalf("split into %d outputs, want 4", len(b.Outputs))
				}
				return true, nil
			case bankdv1.BatchState_BATCH_STATE_SIGNED, bankdv1.BatchState_BATCH_STATE_CONFIRMED:
				r.mine(1)
			}
		}
		return false, nil
	})
	us := retryUnavailable(t, func() (*bankdv1.ListUtxosResponse, error) {
		res, err := r.admin().Chain.ListUtxos(r.ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{WalletId: "hot"}))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	})
	if len(us.Utxos) != 4 {
		t.Fatalf("%d hot UTXOs after the split, want 4", len(us.Utxos))
	}
	r.checkBooks(nil)
	if n := len(r.batches()); n != 1 {
		t.Fatalf("%d batches, want the one split (four coins meet the target)", n)
	}
	requireSameStateHash(t, r.c)
}

// TestAManualQueueWaitsForAFlush: a withdrawal in a manual queue stays QUEUED until an operator
// flushes the queue (a write token may not), then it is planned, signed and paid.
func TestAManualQueueWaitsForAFlush(t *testing.T) {
	r := newPayoutRig(t, 100, 1, 1_000_000)
	cl := r.admin()
	createAccount(t, cl, "capital", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	createAccount(t, cl, "alice", liability, true)
	if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund", "capital", "alice", 500_000)})); err != nil {
		t.Fatal(err)
	}
	if _, err := r.any(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
		Id: "m-1", AccountId: "alice", Address: outsiderAddress(t, false), AmountSat: 25_000, Queue: "manual"})); err != nil {
		t.Fatal(err)
	}
	r.startSigner(followerOf(r.c, -1))
	// Several of the leader's ticks pass: nothing is planned.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if b := r.batches(); len(b) != 0 {
			t.Fatalf("a manual queue was planned without a flush: %v", b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := r.any(testcluster.ClientToken).Payout.FlushQueue(r.ctx, connect.NewRequest(&bankdv1.FlushQueueRequest{Queue: "manual"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a write token flushing: %v, want permission_denied", err)
	}
	if _, err := r.any(testcluster.OperatorToken).Payout.FlushQueue(r.ctx, connect.NewRequest(&bankdv1.FlushQueueRequest{Queue: "nope"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("flushing an unknown queue: %v, want invalid_argument", err)
	}
	res, err := r.any(testcluster.OperatorToken).Payout.FlushQueue(r.ctx, connect.NewRequest(&bankdv1.FlushQueueRequest{Queue: "manual"}))
	if err != nil || res.Msg.Queue != "manual" {
		t.Fatalf("flush: %v %v", res, err)
	}
	r.mineUntilPaid(1)
	r.checkBooks(map[string]int64{"alice": 500_000})
}

// liftQueue is a queue whose stuck payouts are lifted by a child (CPFP) after one block; it is
// planned when flushed.
const liftQueue = `
  queue "lift" {
    trigger           = "manual"
    fee_sat           = 500
    min_fee_rate      = 1
    max_fee_rate      = 50
    bump_after_blocks = 1
    bump              = "cpfp"
  }
`

// TestAStuckPayoutIsLiftedByAChild: a 1 sat/vB payout sits in a mempool whose miner takes
// nothing under 1.5 sat/vB (btcd relays it as a free transaction, --norelaypriority); a block
// later the driver plans a child spending its change that pays the withdrawal queued since and
// makes the package pay 2 sat/vB; signerd signs it, btcd accepts it, and both confirm and are
// booked once.
//
// btcd's miner is not package-aware (it skips a low-fee parent and so its children), so here
// the parent gets into a block by btcd's coin-age priority rule once its 5 BTC input is old
// enough; on a miner that ranks by ancestor fee rate (Bitcoin Core) the child is what pulls it
// in. What this test proves is the bankd side: the child's plan, fee, signature, relay and
// books.
func TestAStuckPayoutIsLiftedByAChild(t *testing.T) {
	r := newPayoutRigWith(t, 1, 1, 500_000_000, regtest.Options{ExtraArgs: []string{"--minrelaytxfee=0.000015", "--norelaypriority"}}, liftQueue)
	cl := r.admin()
	createAccount(t, cl, "capital", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	createAccount(t, cl, "alice", liability, true)
	if _, err := cl.Ledger.CreateTransfer(r.ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("fund", "capital", "alice", 500_000)})); err != nil {
		t.Fatal(err)
	}
	request := func(id string) {
		t.Helper()
		if _, err := r.any(testcluster.ClientToken).Payout.RequestPayout(r.ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
			Id: id, AccountId: "alice", Address: outsiderAddress(t, false), AmountSat: 40_000, Queue: "lift"})); err != nil {
			t.Fatal(err)
		}
	}
	request("lift-1")
	if _, err := r.any(testcluster.OperatorToken).Payout.FlushQueue(r.ctx, connect.NewRequest(&bankdv1.FlushQueueRequest{Queue: "lift"})); err != nil {
		t.Fatal(err)
	}
	r.startSigner(followerOf(r.c, -1))
	var parent *bankdv1.PayoutBatch
	r.waitFor("the payout in the mempool", func() (bool, error) {
		bs := r.batches()
		if len(bs) != 1 || bs[0].State != bankdv1.BatchState_BATCH_STATE_SIGNED {
			return false, nil
		}
		parent = bs[0]
		return r.btcd.InMempool(r.ctx, mustHash(t, parent.Txid))
	})
	request("lift-2") // waits in the manual queue: the child pays it
	r.mine(1)
	if in, err := r.btcd.InMempool(r.ctx, mustHash(t, parent.Txid)); err != nil || !in {
		t.Fatalf("a 1 sat/vB payout was mined by a 1.5 sat/vB miner: %v %v", in, err)
	}
	var child *bankdv1.PayoutBatch
	r.waitFor("the child in the mempool", func() (bool, error) {
		for _, b := range r.batches() {
			if b.Lifts == parent.Id && b.State == bankdv1.BatchState_BATCH_STATE_SIGNED {
				child = b
				return r.btcd.InMempool(r.ctx, mustHash(t, b.Txid))
			}
		}
		return false, nil
	})
	if pkg := (parent.FeeSat + child.FeeSat) * 1000 / (parent.Vsize + child.Vsize); pkg < 2_000 || child.Queue != "lift" || child.Outputs[0].PayoutId != "lift-2" {
		t.Fatalf("package of %d+%d sat over %d+%d vB pays %d sat/kvB, want at least 2,000", parent.FeeSat, child.FeeSat, parent.Vsize, child.Vsize, pkg)
	}
	r.mineUntilPaid(2)
	var heights []uint32
	for _, b := range r.batches() {
		if b.State != bankdv1.BatchState_BATCH_STATE_FINAL {
			t.Errorf("batch %s is %v", b.Id, b.State)
		}
		heights = append(heights, b.BlockHeight)
	}
	if len(heights) != 2 || heights[0] != heights[1] {
		t.Errorf("parent and child confirmed at heights %v, want one block", heights)
	}
	for _, p := range r.payouts() {
		want := map[string]string{"lift-1": parent.Txid, "lift-2": child.Txid}[p.Id]
		if p.Txid != want || p.State != bankdv1.PayoutState_PAYOUT_STATE_PAID {
			t.Errorf("withdrawal %s %v paid by %s, want %s", p.Id, p.State, p.Txid, want)
		}
	}
	r.checkBooks(map[string]int64{"alice": 500_000})
	requireSameStateHash(t, r.c)
}
