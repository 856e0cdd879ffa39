package systemtest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/regtest"
)

// TestKilledLeaderNeitherDoublesNorMissesChainWork runs the chain watcher in real bankd processes
// against a real btcd, SIGKILLs the leader while its watcher is connecting blocks that pay
// deposits, keeps paying and mining while a new leader takes over, and checks that every
// deposit is credited exactly once, that every replica agrees, and that the chain the cluster
// recorded is btcd's, block for block.
func TestKilledLeaderNeitherDoublesNorMissesChainWork(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test; skipped with -short")
	}
	btcd := regtest.StartTest(t, regtest.Options{})
	ctx := ctxFor(t, 3*time.Minute)
	start, err := btcd.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rpc := btcd.RPC()
	c := startCluster(t, testcluster.Spec{Chain: &testcluster.Chain{
		Network: "regtest", RPCHost: rpc.Host, RPCUser: rpc.User, RPCPass: rpc.Pass, RPCCert: rpc.CertPath,
		FinalDepth: 3, StartHeight: uint32(start.Height), PollInterval: 100 * time.Millisecond,
	}})

	leader, cl := leaderClient(t, c)
	customers := []string{"c1", "c2", "c3", "c4", "c5", "c6"}
	for _, id := range customers {
		createAccount(t, cl, id, liability, true)
	}
	wallets := walletClient(c, leader)
	if _, err := wallets.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
		WalletId: "deposits", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: testDescriptor(t),
	})); err != nil {
		t.Fatalf("create wallet: %v", err)
	}
	type address struct {
		account string
		script  []byte
	}
	var addrs []address
	for i := range 12 {
		account := customers[i%len(customers)]
		res, err := walletClient(c, followerOf(c, leader)).NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{
			AccountId: account, RequestId: fmt.Sprintf("addr-%d", i)}))
		if err != nil {
			t.Fatalf("new address %d: %v", i, err)
		}
		addrs = append(addrs, address{account: account, script: res.Msg.Address.Script})
	}

	want := map[string]int64{}
	var txs []*wire.MsgTx
	pay := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			value := int64(100_000 + 1_000*i)
			tx, err := btcd.Send(ctx, []*wire.TxOut{{Value: value, PkScript: addrs[i].script}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			want[addrs[i].account] += value
			txs = append(txs, tx)
		}
	}
	mine := func(n int) []int64 {
		t.Helper()
		hashes, err := btcd.Generate(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		tip, err := btcd.Tip(ctx)
		if err != nil {
			t.Fatal(err)
		}
		heights := make([]int64, len(hashes))
		for i := range hashes {
			heights[i] = tip.Height - int64(len(hashes)-1-i)
		}
		return heights
	}

	// Round 1: five deposits in a block, two more blocks, and the leader killed as soon as
	// the cluster has connected the first of the three.
	pay(0, 5)
	heights := mine(3)
	waitForBlock(t, c, followerOf(c, leader), uint32(heights[0]))
	t.Logf("SIGKILL leader %s after it connected block %d of %d-%d", c.Nodes[leader].ID, heights[0], heights[0], heights[2])
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}

	// Round 2: while a new leader takes over, five more deposits and two blocks.
	pay(5, 10)
	mine(2)
	newLeader, _ := leaderClient(t, c)
	if newLeader == leader {
		t.Fatal("the killed node is still reported as leader")
	}
	t.Logf("new leader %s; restarting %s", c.Nodes[newLeader].ID, c.Nodes[leader].ID)
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}

	// Round 3: two last deposits, mined three deep: they are credited exactly when the cluster
	// reaches btcd's tip.
	pay(10, 12)
	mine(3)
	final, err := btcd.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(60 * time.Second)
	for _, id := range customers {
		waitCredited(t, c, id, want[id], deadline)
	}
	requireSameStateHash(t, c)

	// Stop every node cleanly and read their state machines directly.
	for i := range c.Nodes {
		if err := c.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes {
		checkChainState(t, ctx, btcd, n, uint32(start.Height), final, want, len(txs))
	}
}

// waitCredited polls any running node (a linearizable read) until account id has exactly want
// posted and nothing pending. A node just restarted answers Unavailable until it has heard from
// the leader; that is retried. More than want posted fails at once: a deposit was credited twice.
func waitCredited(t *testing.T, c *testcluster.ProcCluster, id string, want int64, deadline time.Time) {
	t.Helper()
	for {
		b, err := tryBalance(t, c.Client(followerOf(c, -1), testcluster.ClientToken), id)
		switch {
		case err != nil && connect.CodeOf(err) != connect.CodeUnavailable:
			t.Fatal(err)
		case err == nil && b.Posted == want && b.CreditsPending == 0:
			return
		case err == nil && b.Posted > want:
			t.Fatalf("%s: %v, want %d posted once", id, b, want)
		case time.Now().After(deadline):
			t.Fatalf("%s: %v (last error %v), want %d posted once", id, b, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkChainState opens a stopped node's state machine and checks it against btcd: the tip and
// every block hash from the start height, and every deposit credited exactly once.
func checkChainState(t *testing.T, ctx context.Context, btcd *regtest.Btcd, n *testcluster.Proc, start uint32, final regtest.ChainTip, want map[string]int64, payments int) {
	t.Helper()
	f, err := fsm.Open(filepath.Join(n.DataDir, "fsm"), fsm.Options{Fatal: func(err error) { t.Errorf("%s: state machine: %v", n.ID, err) }})
	if err != nil {
		t.Fatalf("open %s's state machine: %v", n.ID, err)
	}
	defer f.Close()
	tip, ok, err := f.ChainTip()
	if err != nil || !ok || tip.Height != uint32(final.Height) || tip.Hash != final.Hash.String() {
		t.Fatalf("%s: tip %v (ok %v, err %v), btcd's is %d/%s", n.ID, tip, ok, err, final.Height, final.Hash)
	}
	for h := start; h <= tip.Height; h++ {
		ours, ok, err := f.ChainBlockHash(h)
		if err != nil || !ok {
			t.Fatalf("%s: no block record at %d (err %v)", n.ID, h, err)
		}
		theirs, err := btcd.BlockHash(ctx, int64(h))
		if err != nil {
			t.Fatal(err)
		}
		if ours != theirs.String() {
			t.Fatalf("%s: block %d is %s, btcd's is %s", n.ID, h, ours, theirs)
		}
	}
	deposits := 0
	for account, value := range want {
		acc, err := f.Account(account)
		if err != nil {
			t.Fatal(err)
		}
		if b := acc.Balance; b.Posted != value || b.CreditsPosted != value || b.DebitsPosted != 0 || b.CreditsPending != 0 {
			t.Fatalf("%s: %s has %v, want exactly %d credited once", n.ID, account, b, value)
		}
		list, _, err := f.ListDeposits(account, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if d.State != bankdv1.DepositState_DEPOSIT_STATE_CREDITED || d.Attempt != 1 || d.Reversals != 0 {
				t.Fatalf("%s: deposit %v", n.ID, d)
			}
		}
		deposits += len(list)
	}
	if deposits != payments {
		t.Fatalf("%s: %d deposits recorded, %d paid", n.ID, deposits, payments)
	}
	t.Logf("%s: tip %d/%s, %d blocks from %d match btcd, %d deposits credited once", n.ID, tip.Height, tip.Hash[:16], tip.Height-start+1, start, deposits)
}

// waitForBlock follows node i's event stream until it reports block height connected.
func waitForBlock(t *testing.T, c *testcluster.ProcCluster, i int, height uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.Client(i, testcluster.ClientToken).Event.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: 1}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for stream.Receive() {
		for _, item := range stream.Msg().Event.Items {
			if b := item.GetBlockConnected(); b != nil && b.Height == height {
				return
			}
		}
	}
	t.Fatalf("event stream of %s ended before block %d was connected: %v", c.Nodes[i].ID, height, stream.Err())
}

func walletClient(c *testcluster.ProcCluster, i int) bankdv1connect.WalletServiceClient {
	return c.Client(i, testcluster.AdminToken).Wallet
}

// testDescriptor is a regtest deposit descriptor (receive and change) of a fixed test key.
func testDescriptor(t *testing.T) string {
	t.Helper()
	seed := make([]byte, 32)
	seed[0] = 0x57
	k, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []uint32{84, 1, 0} {
		if k, err = k.Derive(hdkeychain.HardenedKeyStart + step); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := k.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("wpkh(%s/<0;1>/*)", pub)
}
