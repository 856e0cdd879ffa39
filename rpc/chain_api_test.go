package rpc_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// TestChainAPI reads chain state that the leader's chain watcher would have proposed (here
// proposed directly on the leader) through ChainService on a follower.
func TestChainAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 3})
	follower := c.Follower()
	admin := follower.Clients(testcluster.AdminToken)
	client := follower.Clients(testcluster.ClientToken)
	ctx := context.Background()
	accounts := createAccounts(t, client, "c-")
	retryUnavailable(t, func() error {
		_, err := admin.Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
			WalletId: "deposits", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: "wpkh(" + regtestKey(t, 7) + "/<0;1>/*)", GapLimit: 5,
		}))
		return err
	})
	addr, err := client.Wallet.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: accounts.alice, RequestId: "a1"}))
	if err != nil {
		t.Fatal(err)
	}
	hash := func(n int) string { return fmt.Sprintf("%064x", n) }
	txid := hash(0xd1)
	block := &bankdv1.ChainBlockConnected{Height: 200, Hash: hash(200), PrevHash: hash(199), FinalDepth: 6, KeepHashes: 100,
		Txs: []*bankdv1.TxMatch{{Txid: txid, Inputs: []*bankdv1.Outpoint{{Txid: hash(1), Vout: 0}},
			Outputs: []*bankdv1.TxOutputMatch{{Vout: 1, ValueSat: 25_000, Script: addr.Msg.Address.Script}}}}}
	if _, err := c.ApplyOnLeader(bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, block); err != nil {
		t.Fatal(err)
	}

	t.Run("status counts the tip, the confirmed transaction and its UTXO", func(t *testing.T) {
		res, err := client.Chain.GetChainStatus(ctx, connect.NewRequest(&bankdv1.GetChainStatusRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		m := res.Msg
		if m.Tip.GetHeight() != 200 || m.Tip.GetHash() != hash(200) || m.Network != "regtest" ||
			m.ConfirmedTxs != 1 || m.Utxos != 1 || m.UtxoValueSat != 25_000 || m.Meta == nil {
			t.Fatalf("status = %v", m)
		}
	})
	t.Run("the transaction with one confirmation and its pending deposit", func(t *testing.T) {
		res, err := client.Chain.GetChainTx(ctx, connect.NewRequest(&bankdv1.GetChainTxRequest{Txid: txid}))
		if err != nil {
			t.Fatal(err)
		}
		tx, deps := res.Msg.Tx, res.Msg.Deposits
		if tx.State != bankdv1.TxState_TX_STATE_CONFIRMED || tx.Confirmations != 1 || len(deps) != 1 ||
			deps[0].State != bankdv1.DepositState_DEPOSIT_STATE_PENDING || deps[0].AccountId != accounts.alice {
			t.Fatalf("tx = %v, deposits = %v", tx, deps)
		}
	})
	t.Run("utxos by wallet and deposits by account", func(t *testing.T) {
		us, err := client.Chain.ListUtxos(ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{WalletId: "deposits"}))
		if err != nil || len(us.Msg.Utxos) != 1 || us.Msg.Utxos[0].Outpoint.Vout != 1 || us.Msg.Utxos[0].Address != addr.Msg.Address.Address {
			t.Fatalf("utxos = %v, %v", us, err)
		}
		none, err := client.Chain.ListUtxos(ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{WalletId: "other"}))
		if err != nil || len(none.Msg.Utxos) != 0 {
			t.Fatalf("utxos of another wallet = %v, %v", none, err)
		}
		ds, err := client.Chain.ListDeposits(ctx, connect.NewRequest(&bankdv1.ListDepositsRequest{AccountId: accounts.alice}))
		if err != nil || len(ds.Msg.Deposits) != 1 || ds.Msg.Deposits[0].ValueSat != 25_000 {
			t.Fatalf("deposits = %v, %v", ds, err)
		}
	})
	t.Run("bad requests name the field; unknown things are NotFound", func(t *testing.T) {
		tests := []struct {
			name string
			call func() error
			code connect.Code
		}{
			{"short txid", func() error {
				_, err := client.Chain.GetChainTx(ctx, connect.NewRequest(&bankdv1.GetChainTxRequest{Txid: "abc"}))
				return err
			}, connect.CodeInvalidArgument},
			{"unknown txid", func() error {
				_, err := client.Chain.GetChainTx(ctx, connect.NewRequest(&bankdv1.GetChainTxRequest{Txid: hash(0xeeee)}))
				return err
			}, connect.CodeNotFound},
			{"unknown account", func() error {
				_, err := client.Chain.ListDeposits(ctx, connect.NewRequest(&bankdv1.ListDepositsRequest{AccountId: "nobody"}))
				return err
			}, connect.CodeNotFound},
			{"page size too big", func() error {
				_, err := client.Chain.ListUtxos(ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{PageSize: 100_000}))
				return err
			}, connect.CodeInvalidArgument},
			{"malformed page token", func() error {
				_, err := client.Chain.ListUtxos(ctx, connect.NewRequest(&bankdv1.ListUtxosRequest{PageToken: "zz"}))
				return err
			}, connect.CodeInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := tt.call(); connect.CodeOf(err) != tt.code {
					t.Fatalf("got %v, want %v", err, tt.code)
				}
			})
		}
	})
}
