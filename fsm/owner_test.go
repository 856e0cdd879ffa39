package fsm

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// TestEveryDriverIDIsSystem checks the id table against the functions that make the drivers'
// ids, at the edges of their ranges: an id a driver makes that the table missed could be taken
// by a client before the driver needs it.
func TestEveryDriverIDIsSystem(t *testing.T) {
	// Deposit ids fit the id limit for vouts and attempts below 10^8 (a block holds far fewer
	// outputs); beyond that the credit is refused and recorded as a problem.
	op := &bankdv1.Outpoint{Txid: strings.Repeat("ff", 32), Vout: 99_999_999}
	op0 := &bankdv1.Outpoint{Txid: strings.Repeat("00", 32)}
	_, hash := preimageAndHash(7)
	node := strings.Repeat("n", MaxLndNodeIDLen)
	transfers := map[string]bankdv1.Owner{
		depositTransferID("d", op, 99_999_999):                   asChain,
		depositTransferID("p", op0, 1):                           asChain,
		depositTransferID("v", op, 2):                            asChain,
		depositTransferID("r", op, 3):                            asChain,
		hashTransferID("lni", hash):                              asLightning,
		hashTransferID("lnin", hash):                             asLightning,
		unattributedTransferID(node, 1<<64-1):                    asLightning,
		unattributedTransferID("a", 1):                           asLightning,
		paymentTransferID(1 << 63):                               asLightning,
		paymentResolutionID(paymentTransferID(9), true):          asLightning,
		paymentResolutionID(paymentTransferID(9), false):         asLightning,
		openingTransferID(node):                                  asLightning,
		payoutTransferID(1<<64-1, ""):                            asChain,
		payoutTransferID(1<<64-1, ":post"):                       asChain,
		payoutTransferID(1<<64-1, ":void"):                       asChain,
		payoutTransferID(1<<64-1, ":pay"):                        asChain,
		batchFeeTransferID(1<<64 - 1):                            asChain,
		adjustmentTransferID(LightningAdjustmentPrefix, 1<<64-1): asLightning,
		adjustmentTransferID(WalletAdjustmentPrefix, 1<<64-1):    asChain,
	}
	for id, want := range transfers {
		if len(id) > MaxIDLen {
			t.Errorf("driver transfer id %q is longer than %d", id, MaxIDLen)
		}
		if got, ok := SystemTransferOwner(id); !ok || got != want {
			t.Errorf("transfer id %q: owner %v, %v; want %v", id, got, ok, want)
		}
	}
	accounts := map[string]bankdv1.Owner{
		DepositClearingAccount:       asChain,
		LightningCapitalAccount:      asLightning,
		LightningUnattributedAccount: asLightning,
		LightningNodeAccount(node):   asLightning,
		PayoutClearingAccount:        asChain,
		PayoutFeeIncomeAccount:       asChain,
		PayoutFeeExpenseAccount:      asChain,
		WalletAccount(strings.Repeat("w", MaxIDLen-len(WalletAccountPrefix))): asChain,
	}
	for kind := range adjustmentKinds {
		for account, want := range map[string]bankdv1.Owner{LightningNodeAccount(node): asLightning, WalletAccount("hot"): asChain} {
			counter, ok := AdjustmentCounterAccount(account, kind)
			if !ok {
				t.Fatalf("no counter-account for %v of %s", kind, account)
			}
			accounts[counter] = want
		}
	}
	for id, want := range accounts {
		if got, ok := SystemAccountOwner(id); !ok || got != want {
			t.Errorf("account id %q: owner %v, %v; want %v", id, got, ok, want)
		}
	}
}

// TestClientIDsOutsideTheDriversFormsStayFree: the table reserves the drivers' exact forms, not
// whole prefixes, so ordinary client ids keep working.
func TestClientIDsOutsideTheDriversFormsStayFree(t *testing.T) {
	for _, id := range []string{"p:order-1", "d:2024-01-01", "lni:short", "lnp:abc", "lnp:12:refund", "lnu:node", "payment-1", "ln-open", "r:1:2:3"} {
		if o, ok := SystemTransferOwner(id); ok {
			t.Errorf("transfer id %q is reserved for %v", id, o)
		}
	}
	for _, id := range []string{"ln-capital2", "onchain-deposits-eu", "ln", "alice", "ln::x"} {
		if o, ok := SystemAccountOwner(id); ok {
			t.Errorf("account id %q is reserved for %v", id, o)
		}
	}
}

func TestStoredRecordsWithoutOwnerAreJudgedByTheirID(t *testing.T) {
	tests := []struct {
		acc  *bankdv1.Account
		want bankdv1.Owner
	}{
		{&bankdv1.Account{Id: "onchain-deposits"}, asChain},
		{&bankdv1.Account{Id: "ln:pool-1"}, asLightning},
		{&bankdv1.Account{Id: "alice"}, asClient},
		{&bankdv1.Account{Id: "ln:pool-1", Owner: asClient}, asClient}, // recorded owner wins
	}
	for _, tt := range tests {
		if got := accountOwner(tt.acc); got != tt.want {
			t.Errorf("accountOwner(%v) = %v, want %v", tt.acc, got, tt.want)
		}
	}
	if got := transferOwner(&bankdv1.Transfer{Id: paymentTransferID(5)}); got != asLightning {
		t.Errorf("legacy payment hold owned by %v", got)
	}
	if got := transferOwner(&bankdv1.Transfer{Id: "t1"}); got != asClient {
		t.Errorf("legacy client transfer owned by %v", got)
	}
}

// ownedFixture is a cluster where the drivers own things worth attacking: alice's deposit
// (50,000 sat, pending credit d:..., one block deep of three), a pool node holding 1,000,000
// sat, bob's open invoice (hash 1, 5,000 sat) and alice's payment in flight (hash 2, 1,000 sat
// + 10 reserve, hold lnp:<n>). treasury funds alice with 100,000 sat.
type ownedFixture struct {
	*chainFixture
	depositCredit string // the deposit's pending transfer
	hold          string // the payment's pending transfer
}

func newOwnedFixture(t *testing.T) *ownedFixture {
	t.Helper()
	c := newChainFixture(t)
	c.mustOK(c.upsertNode("pool-1"))
	c.mustOK(c.health("pool-1", true, testPubkey, 1_000_000))
	c.mustAccount("bob", "LIABILITY", true)
	c.mustAccount("treasury", "EQUITY", false)
	c.mustAccount("loose", "LIABILITY", false) // may go negative: a customer account that must not pay
	if r := c.transfer(xfer("fund-alice", "treasury", "alice", 100_000)); r.Code != bankdv1.ResultCode_RESULT_CODE_OK {
		t.Fatalf("fund alice: %v", r)
	}
	c.mustOK(c.connect(pay("dep1", c.script, 50_000)))
	_, deps := c.tx("dep1")
	c.mustOK(c.invoice(1, "bob", "pool-1", 5_000))
	started, ok := c.startPayment("pay-1", "alice", 2, 1_000, 10, "pool-1").(*bankdv1.LnPaymentStartResponse)
	if !ok {
		t.Fatalf("start payment failed")
	}
	return &ownedFixture{chainFixture: c, depositCredit: deps[0].TransferId, hold: started.Payment.TransferId}
}

// finish lets every driver do what it expected to: the deposit reaches final depth, the invoice
// settles, the payment succeeds. Each must find the state it left.
func (f *ownedFixture) finish() {
	f.t.Helper()
	for range 2 {
		f.mustOK(f.connect())
	}
	f.expect("dep1", final, depCredited)
	f.mustOK(f.settle("pool-1", true, settled(1, 1, 5_000)))
	if inv, err := f.Invoice(hashOf(1)); err != nil || inv.State != bankdv1.InvoiceState_INVOICE_STATE_SETTLED || inv.TransferId == "" {
		f.t.Fatalf("invoice after settling: %v %v", inv, err)
	}
	f.mustOK(f.paymentResult("pay-1", 1, 2, 4, ""))
	// alice: 100,000 funded + 50,000 deposited - 1,000 paid - 4 fee.
	if b := f.balance("alice"); b.Posted != 148_996 || b.Available != 148_996 {
		f.t.Fatalf("alice %v", b)
	}
	if b := f.balance("bob"); b.Posted != 5_000 {
		f.t.Fatalf("bob %v", b)
	}
	if n, err := f.ProblemCount(); err != nil || n != 0 {
		f.t.Fatalf("%d problems (%v) after the drivers met the state they expected", n, err)
	}
	if f.fatals.count() != 0 {
		f.t.Fatalf("state machine stopped: %v", f.fatals.errs)
	}
}

func hashOf(n int) string {
	_, h := preimageAndHash(n)
	return h
}

// ledgerDump is the state without what every command changes, refused or not: the applied
// index, cluster time and the event log (where a refused transfer is reported).
func ledgerDump(t testing.TB, f *FSM) []string {
	t.Helper()
	var out []string
	for _, kv := range storeDump(t, f) {
		if !strings.HasPrefix(kv, hex.EncodeToString([]byte{tagEvent})) {
			out = append(out, kv)
		}
	}
	return out
}

// refusedWith returns the code and message of a refused command, or of the only transfer of a
// CreateTransfers command.
func refusedWith(t *testing.T, res any) (bankdv1.ResultCode, string) {
	t.Helper()
	switch r := res.(type) {
	case *Error:
		return r.Code, r.Message
	case *bankdv1.CreateTransfersResponse:
		return r.Results[0].Code, r.Results[0].Message
	default:
		t.Fatalf("attack was not refused: %T %v", res, res)
		return 0, ""
	}
}

// TestClientCannotTouchWhatTheDriversOwn: each attack a client token could make on what the
// chain and Lightning drivers own is refused as invalid input naming the field, changes
// nothing, stops nothing, and afterwards every driver finds the state it expects.
func TestClientCannotTouchWhatTheDriversOwn(t *testing.T) {
	client := func(f *ownedFixture, ts ...*bankdv1.Transfer) any {
		return f.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: ts}, nil)
	}
	tests := []struct {
		name   string
		attack func(f *ownedFixture) any
		field  string // the refusal's message starts with it
	}{
		{"post a deposit's pending credit before final depth", func(f *ownedFixture) any {
			return client(f, &bankdv1.Transfer{Id: "early", PostPending: true, PendingId: f.depositCredit})
		}, "transfer.pending_id"},
		{"void a deposit's pending credit", func(f *ownedFixture) any {
			return client(f, &bankdv1.Transfer{Id: "undo", VoidPending: true, PendingId: f.depositCredit})
		}, "transfer.pending_id"},
		{"void a Lightning payment's hold to spend it twice", func(f *ownedFixture) any {
			return client(f, &bankdv1.Transfer{Id: "free-money", VoidPending: true, PendingId: f.hold})
		}, "transfer.pending_id"},
		{"post a Lightning payment's hold", func(f *ownedFixture) any {
			return client(f, &bankdv1.Transfer{Id: "post-hold", PostPending: true, PendingId: f.hold, Amount: 1})
		}, "transfer.pending_id"},
		{"squat the settlement id of an open invoice", func(f *ownedFixture) any {
			return client(f, xfer(hashTransferID("lni", hashOf(1)), "treasury", "bob", 1))
		}, "transfer.id"},
		{"squat the post id of a pending deposit", func(f *ownedFixture) any {
			return client(f, xfer(strings.Replace(f.depositCredit, "d:", "p:", 1), "treasury", "alice", 1))
		}, "transfer.id"},
		{"squat a future payment hold id", func(f *ownedFixture) any {
			return client(f, xfer(paymentTransferID(f.AppliedIndex()+5), "treasury", "alice", 1))
		}, "transfer.id"},
		{"create an account named like a pool node's", func(f *ownedFixture) any {
			return f.createAccount(&bankdv1.Account{Id: LightningNodeAccount("x"), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET})
		}, "account.id"},
		{"create the deposit clearing account again", func(f *ownedFixture) any {
			return f.createAccount(&bankdv1.Account{Id: DepositClearingAccount, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET})
		}, "account.id"},
		{"debit ln-capital", func(f *ownedFixture) any {
			return client(f, xfer("steal", LightningCapitalAccount, "alice", 1_000))
		}, "transfer.debit_account_id"},
		{"credit a pool node's account", func(f *ownedFixture) any {
			return client(f, xfer("inflate", "treasury", LightningNodeAccount("pool-1"), 1_000))
		}, "transfer.credit_account_id"},
		{"credit the deposit clearing account", func(f *ownedFixture) any {
			return client(f, xfer("fake-deposit", "treasury", DepositClearingAccount, 1_000))
		}, "transfer.credit_account_id"},
		{"hold money on ln-unattributed", func(f *ownedFixture) any {
			return client(f, &bankdv1.Transfer{Id: "grab", DebitAccountId: LightningUnattributedAccount, CreditAccountId: "alice", Amount: 1, Currency: "BTC", Pending: true})
		}, "transfer.debit_account_id"},
		{"get a deposit address for ln-unattributed", func(f *ownedFixture) any {
			return f.newAddress(LightningUnattributedAccount, "dep", "r-attack")
		}, "account_id"},
		{"have an invoice issued to ln-unattributed", func(f *ownedFixture) any {
			return f.invoice(3, LightningUnattributedAccount, "pool-1", 1_000)
		}, "invoice.account_id"},
		{"pay an invoice from ln-capital", func(f *ownedFixture) any {
			return f.startPayment("pay-capital", LightningCapitalAccount, 4, 1_000, 10, "pool-1")
		}, "account_id"},
		{"overdraw an account without non_negative through a payment", func(f *ownedFixture) any {
			return f.startPayment("pay-loose", "loose", 4, 1_000, 10, "pool-1")
		}, "account_id"},
		{"overdraw it through an invoice of our own pool", func(f *ownedFixture) any {
			return f.startPayment("pay-loose-own", "loose", 1, 5_000, 0, "")
		}, "account_id"},
		{"pay from a customer account of the bank's own side", func(f *ownedFixture) any {
			return f.startPayment("pay-treasury", "treasury", 4, 1_000, 10, "pool-1")
		}, "account_id"},
		{"send an owner with a transfer", func(f *ownedFixture) any {
			t := xfer("owned", "treasury", "alice", 1)
			t.Owner = asLightning
			return client(f, t)
		}, "transfer.owner"},
		{"send an owner with an account", func(f *ownedFixture) any {
			return f.createAccount(&bankdv1.Account{Id: "carol", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, Owner: asChain})
		}, "account.owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newOwnedFixture(t)
			before := ledgerDump(t, f.FSM)
			code, msg := refusedWith(t, tt.attack(f))
			if code != bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT || !strings.HasPrefix(msg, tt.field+":") {
				t.Fatalf("refused %s %q, want INVALID_ARGUMENT naming %s", code, msg, tt.field)
			}
			if after := ledgerDump(t, f.FSM); !slices.Equal(before, after) {
				t.Fatalf("a refused attack changed the state")
			}
			f.finish()
		})
	}
}

// TestRefusedCommandLeavesNoEventItems: events describe only what applied. A chain block
// refused after its first transaction was processed reports nothing of it.
func TestRefusedCommandLeavesNoEventItems(t *testing.T) {
	c := newChainFixture(t)
	c.mustOK(c.connect(pay("a", c.script, 1_000)))
	before := storeDump(t, c.FSM)
	// "b" is new; "a" is already in a block: the block is refused as a whole.
	res := c.connect(pay("b", c.script, 2_000), pay("a", c.script, 1_000))
	refusal(t, res, bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT, "already in block")
	if after := storeDump(t, c.FSM); !slices.Equal(before, after) {
		t.Fatalf("a refused block left records or events behind")
	}
}

// asPrincipal applies a command stamped with an authenticated principal, as the leader does.
func (tf *testFSM) asPrincipal(who string, typ bankdv1.CommandType, body proto.Message) any {
	tf.t.Helper()
	b, err := proto.Marshal(body)
	if err != nil {
		tf.t.Fatal(err)
	}
	data, err := proto.Marshal(&bankdv1.Command{Version: CommandVersion, Type: typ, LeaderTimeUnixMs: tf.nowMs, Body: b, Principal: who})
	if err != nil {
		tf.t.Fatal(err)
	}
	l := &raft.Log{Index: uint64(len(tf.log) + 1), Term: 1, Type: raft.LogCommand, Data: data}
	tf.log = append(tf.log, l)
	return tf.Apply(l)
}

// TestOnlyTheAcquiringPrincipalMayUseALock: holder names are the client's choice and can be
// guessed; the principal is proven by a token. Another principal naming the holder cannot
// extend, renew or release the lock.
func TestOnlyTheAcquiringPrincipalMayUseALock(t *testing.T) {
	const (
		acquire = bankdv1.CommandType_COMMAND_TYPE_ACQUIRE_LOCK
		renew   = bankdv1.CommandType_COMMAND_TYPE_RENEW_LOCK
		release = bankdv1.CommandType_COMMAND_TYPE_RELEASE_LOCK
	)
	tf := openTestFSM(t)
	got, ok := tf.asPrincipal("payments-svc", acquire, &bankdv1.AcquireLockRequest{Name: "acc/alice", Holder: "worker-1", TtlMs: 10_000}).(*bankdv1.AcquireLockResponse)
	if !ok || got.Lock.Principal != "payments-svc" {
		t.Fatalf("acquire: %v", got)
	}
	token := got.Lock.Token
	attacks := []struct {
		name string
		typ  bankdv1.CommandType
		body proto.Message
	}{
		{"extend it by acquiring as its holder", acquire, &bankdv1.AcquireLockRequest{Name: "acc/alice", Holder: "worker-1", TtlMs: 10_000}},
		{"renew it", renew, &bankdv1.RenewLockRequest{Name: "acc/alice", Holder: "worker-1", Token: token, TtlMs: 10_000}},
		{"release it", release, &bankdv1.ReleaseLockRequest{Name: "acc/alice", Holder: "worker-1", Token: token}},
	}
	for _, a := range attacks {
		t.Run("another principal cannot "+a.name, func(t *testing.T) {
			before := ledgerDump(t, tf.FSM)
			e := refusal(t, tf.asPrincipal("reports-svc", a.typ, a.body), bankdv1.ResultCode_RESULT_CODE_LOCK_HELD, "another principal")
			if strings.Contains(e.Message, "payments-svc") {
				t.Fatalf("refusal names the other principal: %q", e.Message)
			}
			if !slices.Equal(before, ledgerDump(t, tf.FSM)) {
				t.Fatalf("refused lock command changed the state")
			}
		})
	}
	t.Run("a driver, with no principal, cannot either", func(t *testing.T) {
		refusal(t, tf.asPrincipal("", release, attacks[2].body), bankdv1.ResultCode_RESULT_CODE_LOCK_HELD, "another principal")
	})
	t.Run("the acquiring principal renews and releases it", func(t *testing.T) {
		if _, ok := tf.asPrincipal("payments-svc", renew, attacks[1].body).(*bankdv1.RenewLockResponse); !ok {
			t.Fatalf("renew by its principal refused")
		}
		if _, ok := tf.asPrincipal("payments-svc", release, attacks[2].body).(*bankdv1.ReleaseLockResponse); !ok {
			t.Fatalf("release by its principal refused")
		}
		if l, _ := tf.Lock("acc/alice"); l != nil {
			t.Fatalf("lock still held: %v", l)
		}
	})
	t.Run("once free, another principal may acquire it", func(t *testing.T) {
		if _, ok := tf.asPrincipal("reports-svc", acquire, attacks[0].body).(*bankdv1.AcquireLockResponse); !ok {
			t.Fatalf("acquire of a free lock refused")
		}
	})
}

// TestPayersCannotGoNegative: a LIABILITY account created without non_negative cannot pay an
// invoice, whether it could cover it or not; before payers were checked it paid one it could
// not cover and went negative.
func TestPayersCannotGoNegative(t *testing.T) {
	tf := lightningFixture(t)
	tf.mustAccount("loose", "LIABILITY", false)
	tf.mustOK(tf.transfer(xfer("fund-loose", "treasury", "loose", 500)))
	tf.mustOK(tf.invoice(3, "bob", "pool-1", 1_000))
	for _, tt := range []struct {
		name string
		res  any
	}{
		{"an external invoice beyond its balance", tf.startPayment("p1", "loose", 1, 1_000, 10, "pool-1")},
		{"an external invoice it could cover", tf.startPayment("p2", "loose", 1, 100, 10, "pool-1")},
		{"an invoice of our own pool beyond its balance", tf.startPayment("p3", "loose", 3, 1_000, 0, "")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refusal(t, tt.res, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "non_negative")
		})
	}
	if b := tf.balance("loose"); b.Posted != 500 || b.Available != 500 {
		t.Fatalf("loose %v, want its 500 untouched", b)
	}
	if _, err := tf.Payment("p1"); err == nil {
		t.Fatalf("a refused payment was recorded")
	}
}

// TestCheckPayer names the reason an account cannot pay.
func TestCheckPayer(t *testing.T) {
	customer := &bankdv1.Account{Id: "alice", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true, Owner: asClient}
	with := func(mut func(a *bankdv1.Account)) *bankdv1.Account {
		a := proto.Clone(customer).(*bankdv1.Account)
		mut(a)
		return a
	}
	tests := []struct {
		acc  *bankdv1.Account
		want string // "" means it may pay
	}{
		{customer, ""},
		{with(func(a *bankdv1.Account) { a.Owner = asLightning }), "lightning driver"},
		{with(func(a *bankdv1.Account) { a.Id, a.Owner = LightningUnattributedAccount, 0 }), "lightning driver"},
		{with(func(a *bankdv1.Account) { a.Kind = bankdv1.AccountKind_ACCOUNT_KIND_ASSET }), "ASSET"},
		{with(func(a *bankdv1.Account) { a.NonNegative = false }), "non_negative"},
		{with(func(a *bankdv1.Account) { a.Currency = "EUR" }), "EUR"},
	}
	for _, tt := range tests {
		err := CheckPayer("account_id", tt.acc)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%v: refused %v", tt.acc, err)
		case tt.want != "" && (err == nil || !strings.HasPrefix(err.Message, "account_id: ") || !strings.Contains(err.Message, tt.want)):
			t.Errorf("%v: got %v, want a refusal naming account_id and %q", tt.acc, err, tt.want)
		}
	}
}

// withoutOwnershipChecks lets a test build the state an older binary (or a state machine
// without these checks) could have left behind.
func withoutOwnershipChecks(fn func()) {
	ownershipChecksOff = true
	defer func() { ownershipChecksOff = false }()
	fn()
}

// TestDriversMeetingUnexpectedStatesRecordProblemsAndGoOn: a driver's command that finds its
// transfer resolved by someone else or its id taken applies what it can, records a problem,
// and the state machine keeps running. The states are built with the ownership checks off, as
// a store written before them could hold.
func TestDriversMeetingUnexpectedStatesRecordProblemsAndGoOn(t *testing.T) {
	tests := []struct {
		name    string
		squat   func(f *ownedFixture) any
		then    func(f *ownedFixture)
		subject string
	}{
		{"a deposit's pending credit posted by a client", func(f *ownedFixture) any {
			return f.transfer(&bankdv1.Transfer{Id: "early", PostPending: true, PendingId: f.depositCredit})
		}, func(f *ownedFixture) {
			for range 2 {
				f.mustOK(f.connect())
			}
			f.expect("dep1", final, depPending) // not credited twice: the deposit keeps its state
		}, "deposit "},
		{"a deposit's post id taken", func(f *ownedFixture) any {
			return f.transfer(xfer(strings.Replace(f.depositCredit, "d:", "p:", 1), "treasury", "alice", 1))
		}, func(f *ownedFixture) {
			for range 2 {
				f.mustOK(f.connect())
			}
			f.expect("dep1", final, depPending)
			f.aliceIs(100_001, 50_000-1_010) // the credit stays pending (less the payment held), for an operator
		}, "deposit "},
		{"a payment's hold voided by a client", func(f *ownedFixture) any {
			return f.transfer(&bankdv1.Transfer{Id: "free-money", VoidPending: true, PendingId: f.hold})
		}, func(f *ownedFixture) {
			p := f.testFSM.mustOK(f.paymentResult("pay-1", 1, 2, 4, "")).(*bankdv1.LnPayment)
			if p.State != bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED || f.node("pool-1").InflightPayments != 0 {
				t.Fatalf("payment %v, node %v", p, f.node("pool-1"))
			}
		}, "payment pay-1"},
		{"an invoice's settlement id taken", func(f *ownedFixture) any {
			return f.transfer(xfer(hashTransferID("lni", hashOf(1)), "treasury", "bob", 1))
		}, func(f *ownedFixture) {
			res := f.testFSM.mustOK(f.settle("pool-1", true, settled(1, 1, 5_000))).(*bankdv1.LnInvoiceUpdatesResponse)
			if res.Settled != 1 || res.Unattributed != 1 || f.node("pool-1").SettleIndex != 1 {
				t.Fatalf("updates %v, node %v", res, f.node("pool-1"))
			}
			if b := f.balance(LightningUnattributedAccount); b.Posted != 5_000 {
				t.Fatalf("the settlement was not kept in %s: %v", LightningUnattributedAccount, b)
			}
			// Later settlements of the node are credited as usual.
			f.mustOK(f.invoice(5, "bob", "pool-1", 700))
			f.mustOK(f.settle("pool-1", true, settled(5, 2, 700)))
			if b := f.balance("bob"); b.Posted != 701 {
				t.Fatalf("bob %v, want 1 squatted + 700 credited", b)
			}
		}, "invoice "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newOwnedFixture(t)
			withoutOwnershipChecks(func() {
				if code, msg := refusedOrOK(tt.squat(f)); code != bankdv1.ResultCode_RESULT_CODE_OK {
					t.Fatalf("setting up: %s %s", code, msg)
				}
			})
			tt.then(f)
			if f.fatals.count() != 0 {
				t.Fatalf("state machine stopped: %v", f.fatals.errs)
			}
			ps, _, err := f.ListProblems("", 10)
			if err != nil || len(ps) != 1 || !strings.HasPrefix(ps[0].Subject, tt.subject) {
				t.Fatalf("problems %v (%v), want one about %q", ps, err, tt.subject)
			}
			if n, _ := f.ProblemCount(); n != 1 {
				t.Fatalf("problem count %d", n)
			}
			ev, err := f.Events(ps[0].Index, 1)
			if err != nil || len(ev) != 1 || !slices.ContainsFunc(ev[0].Items, func(it *bankdv1.EventItem) bool { return proto.Equal(it.GetProblem(), ps[0]) }) {
				t.Fatalf("the problem is not in its command's event: %v", ev)
			}
			checkInvariants(t, f.testFSM)
		})
	}
}

func refusedOrOK(res any) (bankdv1.ResultCode, string) {
	switch r := res.(type) {
	case *Error:
		return r.Code, r.Message
	case *bankdv1.TransferResult:
		return r.Code, r.Message
	case *bankdv1.CreateTransfersResponse:
		return r.Results[0].Code, r.Results[0].Message
	}
	return bankdv1.ResultCode_RESULT_CODE_OK, ""
}

// TestDepositToAnAccountTakenFromTheDriverRecordsAProblem: a clearing account a client created
// before owners were recorded is not the chain driver's; the deposit is kept without a credit
// and the block applies.
func TestDepositToAnAccountTakenFromTheDriverRecordsAProblem(t *testing.T) {
	c := newChainFixture(t)
	withoutOwnershipChecks(func() {
		c.mustAccount(DepositClearingAccount, "LIABILITY", false)
	})
	c.mustOK(c.connect(pay("dep1", c.script, 50_000)))
	_, deps := c.tx("dep1")
	if deps[0].State != depPending || deps[0].TransferId != "" || !strings.Contains(deps[0].Problem, "taken by an account of a client") {
		t.Fatalf("deposit %v", deps[0])
	}
	c.aliceIs(0, 0)
	ps, _, _ := c.ListProblems("", 10)
	if len(ps) != 1 || ps[0].Owner != asChain || ps[0].CommandType != bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED {
		t.Fatalf("problems %v", ps)
	}
}

// TestProblemsArePaged lists problems oldest first across pages.
func TestProblemsArePaged(t *testing.T) {
	c := newChainFixture(t)
	for i := range 5 {
		// A zero-value output cannot be credited: each is a problem.
		c.mustOK(c.connect(pay(fmt.Sprint("zero", i), c.script, 0)))
	}
	var all []*bankdv1.Problem
	token := ""
	for {
		page, next, err := c.ListProblems(token, 2)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		token = next
	}
	if len(all) != 5 || !slices.IsSortedFunc(all, func(a, b *bankdv1.Problem) int { return int(a.Index) - int(b.Index) }) {
		t.Fatalf("problems %v", all)
	}
	if n, _ := c.ProblemCount(); n != 5 {
		t.Fatalf("count %d", n)
	}
	if _, _, err := c.ListProblems("zz", 2); err == nil {
		t.Fatalf("a malformed page token was accepted")
	}
}

// TestEveryCommandTypeActsAsSomeone: every command type this binary knows names the owner it
// acts as, the drivers' types their driver; only a tick, retention and a format switch, which
// create nothing, act as no one, and an adjustment, which acts as the driver that owns the account it books
// (adjustment.go), starts as no one.
func TestEveryCommandTypeActsAsSomeone(t *testing.T) {
	for v, name := range bankdv1.CommandType_name {
		typ := bankdv1.CommandType(v)
		if typ == bankdv1.CommandType_COMMAND_TYPE_UNSPECIFIED {
			continue
		}
		h, ok := commandBodies[typ]
		if !ok {
			t.Errorf("%s is not in the command table", name)
			continue
		}
		want := asClient
		switch {
		case typ == bankdv1.CommandType_COMMAND_TYPE_TICK, typ == bankdv1.CommandType_COMMAND_TYPE_COMPACT,
			typ == bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT, typ == bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT:
			want = bankdv1.Owner_OWNER_UNSPECIFIED
		case strings.HasPrefix(name, "COMMAND_TYPE_CHAIN_"), strings.HasPrefix(name, "COMMAND_TYPE_PAYOUT_"), strings.HasPrefix(name, "COMMAND_TYPE_CHANNEL_"), strings.HasPrefix(name, "COMMAND_TYPE_VAULT_"):
			want = asChain
		case strings.HasPrefix(name, "COMMAND_TYPE_LND_"), strings.HasPrefix(name, "COMMAND_TYPE_LN_"),
			typ == bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST, typ == bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT:
			want = asLightning
		}
		if h.owner != want {
			t.Errorf("%s acts as %v, want %v", name, h.owner, want)
		}
	}
}

// TestWindowBlockedByAnotherWalletRecordsAProblem: when a wallet's look-ahead window must grow
// into a script another wallet watches (overlapping keys), the block that used the wallet still
// applies; the window stops short and a problem says where. Handing out an address that would
// need the window to grow is refused.
func TestWindowBlockedByAnotherWalletRecordsAProblem(t *testing.T) {
	tf := openTestFSM(t)
	tf.mustAccount("alice", "LIABILITY", true)
	key := tpub(t, 3)
	tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "a", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Descriptor_: "wpkh(" + key + "/0/*)", GapLimit: 5})
	tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "b", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: "wpkh(" + key + "/0/7)"})
	var script []byte
	for _, ws := range watchedScripts(t, tf.FSM) {
		if ws.WalletId == "a" && ws.Index == 3 {
			script = ws.Script
		}
	}
	c := &chainFixture{testFSM: tf, height: 99, depth: 3}
	c.mustOK(c.connect(pay("to-a3", script, 1_000)))
	w, err := tf.Wallet("a")
	if err != nil || w.Branches[0].NextIndex != 4 || w.Branches[0].WatchedEnd != 7 {
		t.Fatalf("wallet a %v (%v), want next 4, watched up to the other wallet's script at 7", w, err)
	}
	ps, _, _ := tf.ListProblems("", 10)
	if len(ps) != 1 || ps[0].Subject != "wallet a" || !strings.Contains(ps[0].Message, `wallet "b"`) {
		t.Fatalf("problems %v", ps)
	}
	refusal(t, tf.newAddress("alice", "a", "r1"), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, `wallet "b"`)
	if tf.fatals.count() != 0 {
		t.Fatalf("stopped: %v", tf.fatals.errs)
	}
}
