package rpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/rpc"
)

// regtestKey is a regtest account key of a fixed seed.
func regtestKey(t *testing.T, n byte) string {
	t.Helper()
	seed := make([]byte, 32)
	seed[0] = n
	master, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := master.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	return pub.String()
}

// TestWalletAPI runs WalletService against a real three-node cluster, every call made on a
// follower.
func TestWalletAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 3})
	leader, follower := c.Leader(), c.Follower()
	admin := follower.Clients(testcluster.AdminToken)
	client := follower.Clients(testcluster.ClientToken)
	ctx := context.Background()
	createAccounts(t, client, "w-")
	desc := "wpkh(" + regtestKey(t, 1) + "/<0;1>/*)"

	var wallet *bankdv1.Wallet
	t.Run("an admin creates a wallet through a follower; the network comes from cluster.hcl", func(t *testing.T) {
		var res *connect.Response[bankdv1.CreateWalletResponse]
		retryUnavailable(t, func() (err error) {
			res, err = admin.Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
				WalletId: "deposits", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: desc, GapLimit: 5,
			}))
			return err
		})
		wallet = res.Msg.Wallet
		if wallet.Network != "regtest" || wallet.GapLimit != 5 || len(wallet.Branches) != 2 || !strings.Contains(wallet.Descriptor_, "#") {
			t.Fatalf("wallet = %v", wallet)
		}
	})

	t.Run("a retry returns the wallet; another definition under its id is AlreadyExists", func(t *testing.T) {
		res, err := admin.Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
			WalletId: "deposits", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: wallet.Descriptor_, GapLimit: 5,
		}))
		if err != nil || !res.Msg.Replayed || res.Msg.Wallet.CreatedIndex != wallet.CreatedIndex {
			t.Fatalf("retry = %v, %v", res, err)
		}
		_, err = admin.Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
			WalletId: "deposits", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: desc,
		}))
		if connect.CodeOf(err) != connect.CodeAlreadyExists || rpc.ResultCodeOf(err) != bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS {
			t.Fatalf("conflict = %v", err)
		}
	})

	t.Run("refusals: client scope, bad descriptors, taken scripts", func(t *testing.T) {
		_, err := client.Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
			WalletId: "w2", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: desc,
		}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("client token: %v", err)
		}
		_, err = admin.Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
			WalletId: "w2", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: desc + "#qqqqqqqq",
		}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "descriptor: bad checksum") {
			t.Fatalf("bad checksum: %v", err)
		}
		_, err = admin.Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
			WalletId: "w2", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: "wpkh(" + regtestKey(t, 1) + "/0/*)",
		}))
		if connect.CodeOf(err) != connect.CodeAlreadyExists || !strings.Contains(err.Error(), `already watched by wallet "deposits"`) {
			t.Fatalf("taken scripts: %v", err)
		}
	})

	var first *bankdv1.DepositAddress
	t.Run("a client hands out addresses through a follower, idempotently", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			var res *connect.Response[bankdv1.NewDepositAddressResponse]
			retryUnavailable(t, func() (err error) {
				res, err = client.Wallet.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{
					AccountId: "w-alice", RequestId: fmt.Sprintf("addr-%d", i),
				}))
				return err
			})
			if a := res.Msg.Address; a.Index != uint32(i) || a.WalletId != "deposits" || !strings.HasPrefix(a.Address, "bcrt1q") {
				t.Fatalf("address %d = %v", i, a)
			}
			if i == 0 {
				first = res.Msg.Address
			}
		}
		again, err := client.Wallet.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "w-alice", RequestId: "addr-0"}))
		if err != nil || !again.Msg.Replayed || again.Msg.Address.Address != first.Address {
			t.Fatalf("retry = %v, %v", again, err)
		}
		_, err = client.Wallet.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "w-bob", RequestId: "addr-0"}))
		if connect.CodeOf(err) != connect.CodeAlreadyExists {
			t.Fatalf("request id reused for another account: %v", err)
		}
		_, err = client.Wallet.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "w-cash", RequestId: "addr-cash"}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "LIABILITY") {
			t.Fatalf("address for an asset account: %v", err)
		}
	})

	t.Run("linearizable reads on a follower are served by the leader and see the writes", func(t *testing.T) {
		list, err := client.Wallet.ListDepositAddresses(ctx, connect.NewRequest(&bankdv1.ListDepositAddressesRequest{AccountId: "w-alice"}))
		if err != nil || len(list.Msg.Addresses) != 3 || list.Msg.Meta.GetServedBy() != leader.ID {
			t.Fatalf("list = %v, %v", list, err)
		}
		look, err := client.Wallet.LookupAddress(ctx, connect.NewRequest(&bankdv1.LookupAddressRequest{Address: first.Address}))
		if err != nil || look.Msg.Script.GetAccountId() != "w-alice" || look.Msg.Script.GetIndex() != 0 {
			t.Fatalf("lookup = %v, %v", look, err)
		}
		got, err := client.Wallet.GetWallet(ctx, connect.NewRequest(&bankdv1.GetWalletRequest{WalletId: "deposits"}))
		if err != nil || got.Msg.Wallet.Branches[0].NextIndex != 3 || got.Msg.Wallet.Branches[0].WatchedEnd != 8 {
			t.Fatalf("get wallet = %v, %v", got, err)
		}
		wallets, err := client.Wallet.ListWallets(ctx, connect.NewRequest(&bankdv1.ListWalletsRequest{}))
		if err != nil || len(wallets.Msg.Wallets) != 1 {
			t.Fatalf("list wallets = %v, %v", wallets, err)
		}
		_, err = client.Wallet.LookupAddress(ctx, connect.NewRequest(&bankdv1.LookupAddressRequest{Address: "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Fatalf("mainnet address on a regtest cluster: %v", err)
		}
		_, err = client.Wallet.GetWallet(ctx, connect.NewRequest(&bankdv1.GetWalletRequest{WalletId: "nope"}))
		if connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("unknown wallet: %v", err)
		}
	})

	t.Run("a stale read answers on the follower once it caught up", func(t *testing.T) {
		c.WaitApplied(leader.FSM().AppliedIndex())
		look, err := client.Wallet.LookupAddress(ctx, connect.NewRequest(&bankdv1.LookupAddressRequest{
			Address: first.Address, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE,
		}))
		if err != nil || look.Msg.Meta.GetServedBy() != follower.ID || look.Msg.Script.GetAccountId() != "w-alice" {
			t.Fatalf("stale lookup = %v, %v", look, err)
		}
	})

	t.Run("replicas agree on the state hash and the events show wallets and addresses", func(t *testing.T) {
		index := leader.FSM().AppliedIndex()
		c.WaitApplied(index)
		hashes := map[[32]byte]bool{}
		for _, n := range c.Nodes {
			_, sum, err := n.FSM().StateHash()
			if err != nil {
				t.Fatal(err)
			}
			hashes[sum] = true
		}
		if len(hashes) != 1 {
			t.Fatalf("replicas disagree after wallet commands")
		}
		events, err := follower.FSM().Events(0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var wallets, addresses int
		for _, ev := range events {
			for _, it := range ev.Items {
				if it.GetWalletCreated() != nil {
					wallets++
				}
				if it.GetDepositAddressCreated() != nil {
					addresses++
				}
			}
		}
		if wallets != 1 || addresses != 3 {
			t.Fatalf("events show %d wallets and %d addresses, want 1 and 3", wallets, addresses)
		}
	})
}
