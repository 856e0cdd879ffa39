package rpc

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/node"
)

// testTpub is a regtest account key of a fixed seed.
func testTpub(t *testing.T) string {
	t.Helper()
	seed := make([]byte, 32)
	seed[0] = 0x5e
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

func walletClient(url, token string) bankdv1connect.WalletServiceClient {
	return bankdv1connect.NewWalletServiceClient(http.DefaultClient, url, bearer(token))
}

// walletApplier records the bodies proposed and answers wallet commands as if applied.
type walletApplier struct {
	mu     sync.Mutex
	bodies []proto.Message
}

func (w *walletApplier) apply(typ bankdv1.CommandType, body proto.Message, _ *bankdv1.Fence) (proto.Message, error) {
	w.mu.Lock()
	w.bodies = append(w.bodies, body)
	w.mu.Unlock()
	switch typ {
	case bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET:
		r := body.(*bankdv1.CreateWalletRequest)
		return &bankdv1.CreateWalletResponse{Wallet: &bankdv1.Wallet{Id: r.WalletId, Network: r.Network}}, nil
	case bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS:
		r := body.(*bankdv1.NewDepositAddressRequest)
		return &bankdv1.NewDepositAddressResponse{Address: &bankdv1.DepositAddress{AccountId: r.AccountId, RequestId: r.RequestId}}, nil
	}
	return nil, &fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, Message: "unexpected command"}
}

func (w *walletApplier) last() proto.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bodies[len(w.bodies)-1]
}

func TestWalletValidationRefusesBadRequestsBeforeProposing(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = (&walletApplier{}).apply
	srv := startFakeServer(t, n, Options{})
	ctx := context.Background()
	wallets := walletClient(srv.url, adminToken)
	desc := "wpkh(" + testTpub(t) + "/<0;1>/*)"
	create := func(mut func(*bankdv1.CreateWalletRequest)) func() error {
		return func() error {
			r := &bankdv1.CreateWalletRequest{WalletId: "w", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: desc}
			mut(r)
			_, err := wallets.CreateWallet(ctx, connect.NewRequest(r))
			return err
		}
	}
	tests := []struct {
		name  string
		call  func() error
		field string // the message must start with it
	}{
		{"wallet id is required", create(func(r *bankdv1.CreateWalletRequest) { r.WalletId = "" }), "wallet_id: "},
		{"kind is required", create(func(r *bankdv1.CreateWalletRequest) { r.Kind = 0 }), "kind: "},
		{"descriptor is required", create(func(r *bankdv1.CreateWalletRequest) { r.Descriptor_ = "" }), "descriptor: required"},
		{"a bad checksum", create(func(r *bankdv1.CreateWalletRequest) { r.Descriptor_ = desc + "#aaaaaaaa" }), "descriptor: bad checksum"},
		{"a private key", create(func(r *bankdv1.CreateWalletRequest) { r.Descriptor_ = "wpkh(tprv8ZgxMBicQKsPd/0/*)" }), "descriptor: "},
		{"a deposit wallet on one script", create(func(r *bankdv1.CreateWalletRequest) { r.Descriptor_ = "wpkh(" + testTpub(t) + "/0/1)" }), "descriptor: a DEPOSIT wallet needs a ranged descriptor"},
		{"a gap limit over the bound", create(func(r *bankdv1.CreateWalletRequest) { r.GapLimit = fsm.MaxGapLimit + 1 }), "gap_limit: "},
		{"another network than the node's", create(func(r *bankdv1.CreateWalletRequest) { r.Network = "mainnet" }), "network: this cluster is for regtest"},
		{"get wallet needs an id", func() error {
			_, err := wallets.GetWallet(ctx, connect.NewRequest(&bankdv1.GetWalletRequest{}))
			return err
		}, "wallet_id: required"},
		{"list wallets page size is bounded", func() error {
			_, err := wallets.ListWallets(ctx, connect.NewRequest(&bankdv1.ListWalletsRequest{PageSize: fsm.MaxPageSize + 1}))
			return err
		}, "page_size"},
		{"a deposit address needs a request id", func() error {
			_, err := wallets.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "alice"}))
			return err
		}, "request_id: "},
		{"a deposit address needs an account", func() error {
			_, err := wallets.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{RequestId: "r"}))
			return err
		}, "account_id: "},
		{"a malformed wallet id", func() error {
			_, err := wallets.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "a", WalletId: "a b", RequestId: "r"}))
			return err
		}, "wallet_id: "},
		{"listing addresses needs an account", func() error {
			_, err := wallets.ListDepositAddresses(ctx, connect.NewRequest(&bankdv1.ListDepositAddressesRequest{}))
			return err
		}, "account_id: required"},
		{"lookup needs an address", func() error {
			_, err := wallets.LookupAddress(ctx, connect.NewRequest(&bankdv1.LookupAddressRequest{}))
			return err
		}, "address: required"},
		{"lookup consistency must be known", func() error {
			_, err := wallets.LookupAddress(ctx, connect.NewRequest(&bankdv1.LookupAddressRequest{Address: "x", Consistency: 7}))
			return err
		}, "consistency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			requireInvalidField(t, err, tt.field)
		})
	}
	if got := n.appliedTypes(); len(got) != 0 {
		t.Fatalf("invalid requests were proposed: %v", got)
	}
}

func TestCreateWalletNeedsAdminAndGetsTheNodesNetwork(t *testing.T) {
	n := newFakeNode("n1")
	applier := &walletApplier{}
	n.applyFn = applier.apply
	srv := startFakeServer(t, n, Options{})
	ctx := context.Background()
	req := &bankdv1.CreateWalletRequest{WalletId: "w", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: "wpkh(" + testTpub(t) + "/<0;1>/*)"}

	_, err := walletClient(srv.url, clientToken).CreateWallet(ctx, connect.NewRequest(req))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("client token: %v, want permission_denied", err)
	}
	res, err := walletClient(srv.url, adminToken).CreateWallet(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatalf("admin token: %v", err)
	}
	if body := applier.last().(*bankdv1.CreateWalletRequest); body.Network != node.DefaultChainNetwork || res.Msg.Wallet.GetNetwork() != "regtest" {
		t.Fatalf("proposed network %q, want the node's %q", body.Network, node.DefaultChainNetwork)
	}
	// Client tokens may hand out addresses.
	if _, err := walletClient(srv.url, clientToken).NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "alice", RequestId: "r1"})); err != nil {
		t.Fatalf("client token, new address: %v", err)
	}
}

func TestWalletWritesAndReadsAreForwardedFromAFollower(t *testing.T) {
	leader := newFakeNode("n1")
	leader.applyFn = (&walletApplier{}).apply
	leaderSrv := startFakeServer(t, leader, Options{})
	follower := newFakeNode("n2")
	follower.setLeader(false, node.LeaderInfo{NodeID: "n1", APIAddr: strings.TrimPrefix(leaderSrv.url, "http://")}, true)
	followerSrv := startFakeServer(t, follower, Options{})
	ctx := context.Background()
	client := walletClient(followerSrv.url, adminToken)

	if _, err := client.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
		WalletId: "w", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: "wpkh(" + testTpub(t) + "/<0;1>/*)",
	})); err != nil {
		t.Fatalf("forwarded create: %v", err)
	}
	if _, err := client.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "alice", RequestId: "r1"})); err != nil {
		t.Fatalf("forwarded new address: %v", err)
	}
	want := []bankdv1.CommandType{bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET, bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS}
	if got := leader.appliedTypes(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("leader applied %v, want %v", got, want)
	}
	if got := follower.appliedTypes(); len(got) != 0 {
		t.Fatalf("follower applied %v", got)
	}
	// A linearizable read is answered by the leader (here: its empty state), a stale one locally.
	if _, err := client.GetWallet(ctx, connect.NewRequest(&bankdv1.GetWalletRequest{WalletId: "w"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("forwarded get wallet: %v, want not_found from the leader", err)
	}
	list, err := client.ListWallets(ctx, connect.NewRequest(&bankdv1.ListWalletsRequest{Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE}))
	if err != nil || list.Msg.Meta.GetServedBy() != "n2" {
		t.Fatalf("stale list on the follower: %v, %v", list, err)
	}
}
