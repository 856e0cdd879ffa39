package systemtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/regtest"
)

// TestClientTokenCannotTouchWhatTheClusterOwns attacks a real three-process cluster following a
// real btcd with a client token, through the leader and a follower: a deposit's pending credit
// (posting it would credit at 0 confirmations, and once stopped every replica at final depth),
// the ids the chain driver will use, its clearing account, and an overdraft. Every attack is
// refused naming the field and changes nothing; the deposit is then credited once at final
// depth, no problem is recorded, and the cluster keeps serving with equal replicas.
func TestClientTokenCannotTouchWhatTheClusterOwns(t *testing.T) {
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

	leader, admin := leaderClient(t, c)
	follower := followerOf(c, leader)
	createAccount(t, admin, "alice", liability, true)
	createAccount(t, admin, "treasury", bankdv1.AccountKind_ACCOUNT_KIND_EQUITY, false)
	if _, err := walletClient(c, leader).CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
		WalletId: "deposits", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: testDescriptor(t),
	})); err != nil {
		t.Fatalf("create wallet: %v", err)
	}
	addr, err := clientWallets(c, follower).NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: "alice", RequestId: "r1"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := btcd.Send(ctx, []*wire.TxOut{{Value: 100_000, PkScript: addr.Msg.Address.Script}}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := btcd.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	credit := waitPendingDeposit(t, c, follower, "alice")

	type attack struct {
		name  string
		call  func(ctx context.Context, cl *apiclient.Clients, w bankdv1connect.WalletServiceClient) error
		field string
	}
	transfer := func(tr *bankdv1.Transfer) func(context.Context, *apiclient.Clients, bankdv1connect.WalletServiceClient) error {
		return func(ctx context.Context, cl *apiclient.Clients, _ bankdv1connect.WalletServiceClient) error {
			_, err := cl.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: tr}))
			return err
		}
	}
	owned := xfer("sneaky", "treasury", "alice", 1)
	owned.Owner = bankdv1.Owner_OWNER_CHAIN
	attacks := []attack{
		{"post the deposit's pending credit at 1 confirmation", transfer(&bankdv1.Transfer{Id: "early", PostPending: true, PendingId: credit}), "transfer.pending_id"},
		{"void it", func(ctx context.Context, cl *apiclient.Clients, _ bankdv1connect.WalletServiceClient) error {
			_, err := cl.Ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{
				xfer("cover", "treasury", "alice", 1), {Id: "undo", VoidPending: true, PendingId: credit},
			}}))
			return err
		}, "transfers[1].pending_id"},
		{"take the id of its post", transfer(xfer("p"+strings.TrimPrefix(credit, "d"), "treasury", "alice", 1)), "transfer.id"},
		{"take the id of a payment hold", transfer(xfer("lnp:100000", "treasury", "alice", 1)), "transfer.id"},
		{"debit the deposit clearing account", transfer(xfer("drain", fsm.DepositClearingAccount, "treasury", 1_000)), "transfer.debit_account_id"},
		{"credit it", transfer(xfer("fake", "treasury", fsm.DepositClearingAccount, 1_000)), "transfer.credit_account_id"},
		{"send an owner", transfer(owned), "transfer.owner"},
		{"create an account named like a pool node's", func(ctx context.Context, cl *apiclient.Clients, _ bankdv1connect.WalletServiceClient) error {
			_, err := cl.Ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: &bankdv1.Account{
				Id: fsm.LightningNodeAccount("x"), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}}))
			return err
		}, "account.id"},
		{"get a deposit address for the clearing account", func(ctx context.Context, _ *apiclient.Clients, w bankdv1connect.WalletServiceClient) error {
			_, err := w.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: fsm.DepositClearingAccount, RequestId: "r-attack"}))
			return err
		}, "account_id"},
		{"pay internally out of it", func(ctx context.Context, cl *apiclient.Clients, _ bankdv1connect.WalletServiceClient) error {
			_, err := cl.Lightning.PayInternal(ctx, connect.NewRequest(&bankdv1.PayInternalRequest{Id: "pi", FromAccountId: fsm.DepositClearingAccount, ToAccountId: "alice", AmountSat: 1}))
			return err
		}, "from_account_id"},
	}

	before, index, err := c.StateHashes(ctxFor(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range attacks {
		for _, i := range []int{leader, follower} {
			t.Run(fmt.Sprintf("%s via %s", at.name, c.Nodes[i].ID), func(t *testing.T) {
				err := at.call(ctxFor(t, 10*time.Second), c.Client(i, testcluster.ClientToken), clientWallets(c, i))
				var ce *connect.Error
				if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || !strings.HasPrefix(ce.Message(), at.field+":") {
					t.Fatalf("err %v, want invalid_argument naming %s", err, at.field)
				}
			})
		}
	}
	after, indexAfter, err := c.StateHashes(ctxFor(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if indexAfter != index || !maps.Equal(before, after) {
		t.Fatalf("refused attacks changed the state: index %d -> %d, hashes %v -> %v", index, indexAfter, before, after)
	}

	// An overdraft: alice has nothing posted yet (the deposit is pending), and cannot spend it.
	cl := c.Client(follower, testcluster.ClientToken)
	_, err = cl.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("overdraft", "alice", "treasury", 50_000)}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "available balance 0") {
		t.Fatalf("overdraft: %v", err)
	}
	if b := balance(t, cl, "alice"); b.Posted != 0 || b.CreditsPending != 100_000 {
		t.Fatalf("alice after the attacks: %v", b)
	}

	// The chain driver finds what it left: the deposit is credited once at final depth.
	if _, err := btcd.Generate(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitCredited(t, c, "alice", 100_000, time.Now().Add(time.Minute))
	problems, err := c.Client(leader, testcluster.AdminToken).Cluster.ListProblems(ctx, connect.NewRequest(&bankdv1.ListProblemsRequest{}))
	if err != nil || problems.Msg.Total != 0 {
		t.Fatalf("problems after the attacks: %v (%v)", problems.Msg.GetProblems(), err)
	}
	// And the cluster keeps serving.
	if _, err := cl.Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("spend", "alice", "treasury", 1_000)})); err != nil {
		t.Fatalf("a legitimate transfer after the attacks: %v", err)
	}
	for i := range c.Nodes {
		if !c.Running(i) {
			t.Fatalf("node %s stopped (exit %d)", c.Nodes[i].ID, c.ExitCode(i))
		}
	}
	requireSameStateHash(t, c)
}

// clientWallets is a WalletService client of node i with the client token.
func clientWallets(c *testcluster.ProcCluster, i int) bankdv1connect.WalletServiceClient {
	return c.Client(i, testcluster.ClientToken).Wallet
}

// waitPendingDeposit waits until node i reports a pending deposit for account and returns its
// pending transfer.
func waitPendingDeposit(t *testing.T, c *testcluster.ProcCluster, i int, account string) string {
	t.Helper()
	chain := c.Client(i, testcluster.ClientToken).Chain
	deadline := time.Now().Add(time.Minute)
	for {
		res, err := chain.ListDeposits(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.ListDepositsRequest{AccountId: account}))
		if err == nil && len(res.Msg.Deposits) == 1 && res.Msg.Deposits[0].State == bankdv1.DepositState_DEPOSIT_STATE_PENDING && res.Msg.Deposits[0].TransferId != "" {
			return res.Msg.Deposits[0].TransferId
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pending deposit for %s: %v %v", account, res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
