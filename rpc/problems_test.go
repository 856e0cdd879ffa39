package rpc

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// The fake state machine records no problems.
func (s *fakeState) ListProblems(string, int) ([]*bankdv1.Problem, string, error) {
	return nil, "", nil
}
func (s *fakeState) ProblemCount() (uint64, error) { return 0, nil }

// TestClientRequestsNamingWhatTheDriversOwnAreRefusedBeforeProposing: what needs no state is
// checked at the edge, as the other validators are: ids of the drivers' forms, and the
// drivers' accounts, in every client request. Nothing reaches the log.
func TestClientRequestsNamingWhatTheDriversOwnAreRefusedBeforeProposing(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = okTransfers
	srv := startFakeServer(t, n, Options{})
	ctx := context.Background()
	ledger := ledgerClient(srv.url, clientToken)
	wallets := bankdv1connect.NewWalletServiceClient(http.DefaultClient, srv.url, bearer(clientToken))
	lightning := bankdv1connect.NewLightningServiceClient(http.DefaultClient, srv.url, bearer(clientToken))
	hold := "lnp:17"
	deposit := "d:" + strings.Repeat("A", 43) + ":0:1"
	settlement := "lni:" + strings.Repeat("B", 43)
	transfers := func(ts ...*bankdv1.Transfer) func() error {
		return func() error {
			_, err := ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: ts}))
			return err
		}
	}
	with := func(id string, mut func(*bankdv1.Transfer)) *bankdv1.Transfer {
		tr := validTransfer(id)
		mut(tr)
		return tr
	}
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"void a payment's hold", transfers(validTransfer("ok"), validTransfer("ok2"), &bankdv1.Transfer{Id: "x", VoidPending: true, PendingId: hold}), "transfers[2].pending_id"},
		{"post a deposit's pending credit", transfers(&bankdv1.Transfer{Id: "x", PostPending: true, PendingId: deposit}), "transfers[0].pending_id"},
		{"squat a settlement id", transfers(with(settlement, func(*bankdv1.Transfer) {})), "transfers[0].id"},
		{"squat a deposit's post id", transfers(with("p"+deposit[1:], func(*bankdv1.Transfer) {})), "transfers[0].id"},
		{"debit ln-capital", transfers(with("x", func(t *bankdv1.Transfer) { t.DebitAccountId = fsm.LightningCapitalAccount })), "transfers[0].debit_account_id"},
		{"credit a pool node's account", transfers(with("x", func(t *bankdv1.Transfer) { t.CreditAccountId = "ln:pool-1" })), "transfers[0].credit_account_id"},
		{"send an owner", transfers(with("x", func(t *bankdv1.Transfer) { t.Owner = bankdv1.Owner_OWNER_CHAIN })), "transfers[0].owner"},
		{"single transfer into the deposit clearing account", func() error {
			_, err := ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: with("x", func(t *bankdv1.Transfer) { t.CreditAccountId = fsm.DepositClearingAccount })}))
			return err
		}, "transfer.credit_account_id"},
		{"create an account named like a pool node's", func() error {
			_, err := ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: &bankdv1.Account{Id: "ln:x", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}}))
			return err
		}, "account.id"},
		{"a deposit address for ln-unattributed", func() error {
			_, err := wallets.NewDepositAddress(ctx, connect.NewRequest(&bankdv1.NewDepositAddressRequest{AccountId: fsm.LightningUnattributedAccount, RequestId: "r1"}))
			return err
		}, "account_id"},
		{"an invoice for ln-unattributed", func() error {
			_, err := lightning.CreateInvoice(ctx, connect.NewRequest(&bankdv1.CreateInvoiceRequest{AccountId: fsm.LightningUnattributedAccount, AmountSat: 1_000, RequestId: "i1"}))
			return err
		}, "account_id"},
		{"pay from ln-capital", func() error {
			_, err := lightning.PayInvoice(ctx, connect.NewRequest(&bankdv1.PayInvoiceRequest{Id: "p1", AccountId: fsm.LightningCapitalAccount, PaymentRequest: "lnbcrt1"}))
			return err
		}, "account_id"},
		{"pay internally from a pool node's account", func() error {
			_, err := lightning.PayInternal(ctx, connect.NewRequest(&bankdv1.PayInternalRequest{Id: "x", FromAccountId: "ln:pool-1", ToAccountId: "alice", AmountSat: 5}))
			return err
		}, "from_account_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || !strings.HasPrefix(ce.Message(), tt.field+":") {
				t.Fatalf("err %v, want invalid_argument naming %s", err, tt.field)
			}
		})
	}
	if got := n.appliedTypes(); len(got) != 0 {
		t.Fatalf("refused requests were proposed: %v", got)
	}
}

func TestListProblemsIsForAdminsAndValidatesItsPage(t *testing.T) {
	n := newFakeNode("n1")
	srv := startFakeServer(t, n, Options{})
	ctx := context.Background()
	list := func(token string, req *bankdv1.ListProblemsRequest) error {
		_, err := clusterClient(srv.url, token).ListProblems(ctx, connect.NewRequest(req))
		return err
	}
	stale := bankdv1.ReadConsistency_READ_CONSISTENCY_STALE
	if err := list(clientToken, &bankdv1.ListProblemsRequest{Consistency: stale}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("client token: %v, want permission_denied", err)
	}
	if err := list(adminToken, &bankdv1.ListProblemsRequest{Consistency: stale}); err != nil {
		t.Fatalf("admin token: %v", err)
	}
	if err := list(adminToken, &bankdv1.ListProblemsRequest{PageSize: fsm.MaxPageSize + 1}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("oversized page: %v", err)
	}
}
