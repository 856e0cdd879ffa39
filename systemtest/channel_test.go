package systemtest

import (
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/lightningnetwork/lnd/lnrpc"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/regtest"
)

// anchorReserveSat is what a pool lnd keeps on chain for one anchor channel (lnd's
// anchorChanReservedValue, 10,000 sat per channel).
const anchorReserveSat = 10_000

// TestAChannelIsFundedFromTheHotWalletThroughAPSBT opens a channel from a real pool lnd to a
// real peer lnd, funded from the hot wallet through lnd's PSBT flow and signed by signerd, with
// the leader SIGKILLed between lnd's check of the unsigned transaction and the signature; a
// first open, cancelled while it waits for its signature, releases its coins; tokens without
// the operator scope cannot open channels. The commitment fee and anchors lnd reserves show as
// a reconciliation difference, which an operator's adjustment brings back to zero.
func TestAChannelIsFundedFromTheHotWalletThroughAPSBT(t *testing.T) {
	lndPath := regtest.RequireLnd(t)
	r := newPayoutRig(t, 1, 2, 3_000_000)
	if h, err := r.btcd.BlockCount(r.ctx); err != nil {
		t.Fatal(err)
	} else if h < regtest.SegwitHeight {
		r.mine(int(regtest.SegwitHeight - h))
	}
	var pool, peer *regtest.Lnd
	for i, name := range []string{"pool-1", "peer"} {
		n, err := regtest.StartLnd(r.ctx, r.btcd, regtest.LndOptions{Name: name, Dir: filepath.Join(r.dir, name), LndPath: lndPath})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close(r.ctx) })
		if i == 0 {
			pool = n
		} else {
			peer = n
		}
	}
	// lnd keeps an on-chain reserve for fee bumping the closes of anchor channels, and refuses
	// a funding transaction while its wallet lacks it, even one it does not pay for.
	addr, err := pool.Client.NewAddress(r.ctx, &lnrpc.NewAddressRequest{Type: lnrpc.AddressType_WITNESS_PUBKEY_HASH})
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := btcutil.DecodeAddress(addr.Address, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(decoded)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.btcd.Send(r.ctx, []*wire.TxOut{{Value: anchorReserveSat, PkScript: script}}, 0); err != nil {
		t.Fatal(err)
	}
	r.mine(1)
	r.waitFor("pool-1's anchor reserve to confirm", func() (bool, error) {
		bal, err := pool.Client.WalletBalance(r.ctx, &lnrpc.WalletBalanceRequest{})
		return err == nil && bal.ConfirmedBalance == anchorReserveSat, err
	})
	if _, err := r.admin().Lightning.AddNode(r.ctx, connect.NewRequest(&bankdv1.AddLndNodeRequest{
		Id: "pool-1", Address: pool.RPCAddr, TlsCertPath: pool.TLSCertPath, MacaroonPath: pool.MacaroonPath})); err != nil {
		t.Fatalf("add pool node: %v", err)
	}
	r.waitFor("pool-1 to answer", func() (bool, error) {
		res, err := r.admin().Lightning.ListNodes(r.ctx, connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
		if err != nil {
			return false, err
		}
		for _, n := range res.Msg.Nodes {
			if n.Id == "pool-1" && n.Pubkey == pool.Pubkey {
				return true, nil
			}
		}
		return false, nil
	})
	peerAddr := peer.Pubkey + "@" + peer.P2PAddr
	const amount = 1_000_000

	// Attackers: tokens without the operator scope.
	for _, token := range []string{testcluster.ClientToken, testcluster.ReadToken, testcluster.SignerToken} {
		_, err := r.any(token).Lightning.OpenChannel(r.ctx, connect.NewRequest(&bankdv1.OpenChannelRequest{Id: "evil", NodeId: "pool-1", Peer: peerAddr, AmountSat: amount}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("open with the %s token: %v, want permission denied", token, err)
		}
	}
	open := func(id string) *bankdv1.ChannelOpen {
		t.Helper()
		res, err := r.any(testcluster.OperatorToken).Lightning.OpenChannel(r.ctx, connect.NewRequest(&bankdv1.OpenChannelRequest{
			Id: id, NodeId: "pool-1", Peer: peerAddr, AmountSat: amount}))
		if err != nil {
			t.Fatalf("open %s: %v", id, err)
		}
		return res.Msg.Open
	}
	get := func(id string) (*bankdv1.ChannelOpen, *bankdv1.PayoutBatch, error) {
		res, err := r.admin().Lightning.GetChannelOpen(r.ctx, connect.NewRequest(&bankdv1.GetChannelOpenRequest{Id: id}))
		if err != nil {
			return nil, nil, err
		}
		return res.Msg.Open, res.Msg.Batch, nil
	}
	spendable := func() int {
		us, err := r.admin().Chain.ListUtxos(r.ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{WalletId: "hot"}))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, u := range us.Msg.Utxos {
			if u.SpendingTxid == "" {
				n++
			}
		}
		return n
	}

	// No signer yet: the first open negotiates, plans and is verified by lnd, then waits.
	first := open("ch-cancelled")
	r.waitFor("the first open to be verified by lnd", func() (bool, error) {
		o, _, err := get(first.Id)
		if err == nil && o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED {
			t.Fatalf("open failed: %s", o.FailReason)
		}
		return err == nil && o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED, err
	})
	o, b, err := get(first.Id)
	if err != nil || b == nil || b.State != bankdv1.BatchState_BATCH_STATE_PLANNED || b.Queue != fsm.ChannelQueue || b.Outputs[0].ValueSat != amount {
		t.Fatalf("first open's batch: %v %v", b, err)
	}
	if _, err := r.any(testcluster.OperatorToken).Lightning.CancelChannelOpen(r.ctx, connect.NewRequest(&bankdv1.CancelChannelOpenRequest{Id: o.Id, Reason: "test: wrong peer"})); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if o, b, err = get(first.Id); err != nil || o.State != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED || b.State != bankdv1.BatchState_BATCH_STATE_ABANDONED {
		t.Fatalf("cancelled open: %v %v %v", o, b, err)
	}
	r.waitFor("the cancelled open's coins to be spendable", func() (bool, error) { return spendable() == 2, nil })

	// The second open is verified by lnd on one leader, and signed, finalized and booked under
	// the next: lnd's flow outlives the stream of the leader that started it.
	second := open("ch-1")
	r.waitFor("the second open to be verified by lnd", func() (bool, error) {
		o, _, err := get(second.Id)
		if err == nil && o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED {
			t.Fatalf("open failed: %s", o.FailReason)
		}
		return err == nil && o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED, err
	})
	leader, _ := leaderClient(t, r.c)
	t.Logf("SIGKILL leader %s with the open VERIFIED and unsigned", r.c.Nodes[leader].ID)
	if err := r.c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	r.startSigner(followerOf(r.c, leader))
	r.waitFor("lnd to publish the funding transaction", func() (bool, error) {
		o, _, err := get(second.Id)
		if err == nil && o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_FAILED {
			t.Fatalf("open failed: %s", o.FailReason)
		}
		return err == nil && o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PENDING, err
	})
	o, b, err = get(second.Id)
	if err != nil {
		t.Fatal(err)
	}
	r.waitFor("the funding transaction in btcd's mempool", func() (bool, error) {
		res, err := r.admin().Chain.GetChainTx(r.ctx, connect.NewRequest(&bankdv1.GetChainTxRequest{Txid: b.Txid}))
		if connect.CodeOf(err) == connect.CodeNotFound {
			return false, nil
		}
		return err == nil && res.Msg.Tx.State == bankdv1.TxState_TX_STATE_PENDING, err
	})
	r.mine(3)
	r.waitFor("the open to be final and booked", func() (bool, error) {
		o, _, err := get(second.Id)
		return err == nil && o.State == bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_OPEN, err
	})
	if err := pool.WaitActiveChannels(r.ctx, 1); err != nil {
		t.Fatal(err)
	}
	chans, err := pool.Client.ListChannels(r.ctx, &lnrpc.ListChannelsRequest{})
	if err != nil || len(chans.Channels) != 1 || chans.Channels[0].ChannelPoint != b.Txid+":0" || chans.Channels[0].Capacity != amount {
		t.Fatalf("pool-1's channels: %v %v, want one of %d sat at %s:0", chans, err, amount, b.Txid)
	}

	// The books: the channel left the hot wallet for ln:pool-1, the fee is an expense.
	admin := r.admin()
	if bal := balance(t, admin, fsm.LightningNodeAccount("pool-1")); bal.DebitsPosted-bal.CreditsPosted != amount {
		t.Fatalf("ln:pool-1 %v, want %d posted", bal, amount)
	}
	recon, err := admin.Payout.ReconcileWallets(r.ctx, connect.NewRequest(&bankdv1.ReconcileWalletsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range recon.Msg.Wallets {
		if w.DifferenceSat != 0 {
			t.Fatalf("wallet %s differs from its books by %d sat", w.WalletId, w.DifferenceSat)
		}
	}
	if s := recon.Msg.Solvency; s.LightningSat != amount || s.WalletsSat != r.funded-amount-b.FeeSat {
		t.Fatalf("solvency %v, want %d in Lightning and %d in the wallet", s, amount, r.funded-amount-b.FeeSat)
	}
	lnRecon, err := admin.Lightning.Reconcile(r.ctx, connect.NewRequest(&bankdv1.ReconcileLightningRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("channel %s:0 of %d sat, fee %d sat; lnd reconciliation after the open: %v", b.Txid, amount, b.FeeSat, lnRecon.Msg)

	// lnd keeps the commitment fee and the anchors out of pool-1's local balance, so its
	// reconciliation reads a difference that no bankd command made. An operator books it with
	// an adjustment, and the difference is zero; a write token cannot book one.
	var diff int64
	for _, n := range lnRecon.Msg.Nodes {
		if n.NodeId == "pool-1" {
			diff = n.DifferenceSat
		}
	}
	if diff >= 0 {
		t.Fatalf("pool-1 reconciles at %+d sat after the open, want lnd's commitment fee and anchors as a negative difference", diff)
	}
	adj := &bankdv1.BookAdjustmentRequest{Id: "adj-open-" + o.Id, AccountId: fsm.LightningNodeAccount("pool-1"), AmountSat: diff,
		Kind: bankdv1.AdjustmentKind_ADJUSTMENT_KIND_OTHER, Reason: "commitment fee and anchors lnd reserves in the channel it opened",
		ExternalReference: b.Txid + ":0"}
	if _, err := r.any(testcluster.ClientToken).Ledger.BookAdjustment(r.ctx, connect.NewRequest(adj)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("an adjustment booked with a write token: %v, want permission denied", err)
	}
	booked, err := r.any(testcluster.OperatorToken).Ledger.BookAdjustment(r.ctx, connect.NewRequest(adj))
	if err != nil {
		t.Fatalf("book the adjustment: %v", err)
	}
	if a := booked.Msg.Adjustment; a.AmountSat != diff || !strings.Contains(a.DecidedBy, "operator") || a.CounterAccountId != "ln-adjust:other" {
		t.Fatalf("adjustment %v", a)
	}
	r.waitFor("pool-1 reconciled after the adjustment", func() (bool, error) {
		res, err := admin.Lightning.Reconcile(r.ctx, connect.NewRequest(&bankdv1.ReconcileLightningRequest{}))
		if err != nil {
			return false, err
		}
		for _, n := range res.Msg.Nodes {
			if n.NodeId == "pool-1" {
				return n.Error == "" && n.DifferenceSat == 0, nil
			}
		}
		return false, nil
	})
	if bal := balance(t, admin, fsm.LightningNodeAccount("pool-1")); bal.DebitsPosted-bal.CreditsPosted != amount+diff {
		t.Fatalf("ln:pool-1 %v after the adjustment, want %d posted", bal, amount+diff)
	}
	if _, err := r.any(testcluster.OperatorToken).Lightning.CancelChannelOpen(r.ctx, connect.NewRequest(&bankdv1.CancelChannelOpenRequest{Id: o.Id, Reason: "too late"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("cancelling an open channel: %v, want failed precondition", err)
	}
}
