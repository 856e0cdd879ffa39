package fsm

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

func (tf *testFSM) createAccounts(accs ...*bankdv1.Account) any {
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS, &bankdv1.CreateAccountsRequest{Accounts: accs}, nil)
}

func liabilityAccount(id string) *bankdv1.Account {
	return &bankdv1.Account{Id: id, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true}
}

// accountResultWant is what one account's result must be: its code, and for a refusal the start
// of its message; replayed for an OK result.
type accountResultWant struct {
	code     bankdv1.ResultCode
	message  string
	replayed bool
}

var (
	accCreated  = accountResultWant{code: codeOK}
	accReplayed = accountResultWant{code: codeOK, replayed: true}
)

func refusedAccount(code bankdv1.ResultCode, message string) accountResultWant {
	return accountResultWant{code: code, message: message}
}

// TestCreateAccountsAppliesEachAccountAsCreateAccountWould: every account of a batch gets the
// result a CREATE_ACCOUNT of it would get, independently of the others.
func TestCreateAccountsAppliesEachAccountAsCreateAccountWould(t *testing.T) {
	withMeta := liabilityAccount("meta")
	withMeta.Metadata = map[string]string{"tier": "gold", "source": "import"}
	tests := []struct {
		name  string
		setup func(tf *testFSM)
		batch []*bankdv1.Account
		want  []accountResultWant
	}{
		{"all created", nil,
			[]*bankdv1.Account{liabilityAccount("a1"), liabilityAccount("a2"), withMeta},
			[]accountResultWant{accCreated, accCreated, accCreated}},
		{"the same batch again is replayed", func(tf *testFSM) {
			mustCreateAccounts(tf, liabilityAccount("a1"), withMeta)
		}, []*bankdv1.Account{liabilityAccount("a1"), withMeta},
			[]accountResultWant{accReplayed, accReplayed}},
		{"an account made by CREATE_ACCOUNT is replayed", func(tf *testFSM) {
			tf.createAccount(liabilityAccount("a1"))
		}, []*bankdv1.Account{liabilityAccount("a1"), liabilityAccount("a2")},
			[]accountResultWant{accReplayed, accCreated}},
		{"another definition is refused for that account only", func(tf *testFSM) {
			mustCreateAccounts(tf, liabilityAccount("a1"), liabilityAccount("a2"))
		}, []*bankdv1.Account{
			liabilityAccount("a1"),
			{Id: "a2", Currency: "EUR", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true},
			liabilityAccount("a3"),
		}, []accountResultWant{accReplayed, refusedAccount(codeExists, "account.id: account \"a2\" already exists with a different definition"), accCreated}},
		{"an invalid account is refused for itself only", nil, []*bankdv1.Account{
			liabilityAccount("a1"),
			{Id: "bad", Currency: "btc", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY},
			{Id: "a b", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY},
			{Id: "nokind", Currency: "BTC"},
			nil,
			{Id: "owned", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, Owner: asChain},
			{Id: "balance", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, Balance: &bankdv1.Balance{Posted: 5}},
			liabilityAccount("a2"),
		}, []accountResultWant{
			accCreated,
			refusedAccount(codeInvalid, "account.currency"),
			refusedAccount(codeInvalid, "account.id"),
			refusedAccount(codeInvalid, "account.kind"),
			refusedAccount(codeInvalid, "account.id"), // a nil account travels as an empty one
			refusedAccount(codeInvalid, "account.owner"),
			refusedAccount(codeInvalid, "account.balance"),
			accCreated,
		}},
		{"a client cannot take the ids of the drivers' accounts", nil, []*bankdv1.Account{
			{Id: DepositClearingAccount, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
			{Id: LightningNodeAccount("pool-1"), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
			{Id: WalletAccount("hot"), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
			{Id: PayoutClearingAccount, Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY},
			liabilityAccount("customer"),
		}, []accountResultWant{
			refusedAccount(codeInvalid, "account.id: \"onchain-deposits\" has the form of the accounts the cluster's chain driver creates"),
			refusedAccount(codeInvalid, "account.id: \"ln:pool-1\" has the form of the accounts the cluster's lightning driver creates"),
			refusedAccount(codeInvalid, "account.id"),
			refusedAccount(codeInvalid, "account.id"),
			accCreated,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf := openTestFSM(t)
			if tt.setup != nil {
				tt.setup(tf)
			}
			before := map[string]*bankdv1.Account{}
			for _, acc := range tt.batch {
				if stored, err := tf.Account(acc.GetId()); err == nil {
					before[acc.GetId()] = stored
				}
			}
			resp, ok := tf.createAccounts(tt.batch...).(*bankdv1.CreateAccountsResponse)
			if !ok {
				t.Fatalf("the batch was refused as a whole")
			}
			if len(resp.Results) != len(tt.batch) {
				t.Fatalf("%d results for %d accounts", len(resp.Results), len(tt.batch))
			}
			index := uint64(len(tf.log))
			var wantCreated []string
			for i, res := range resp.Results {
				acc, want := tt.batch[i], tt.want[i]
				if res.Id != acc.GetId() || res.Code != want.code || res.Replayed != want.replayed || !strings.HasPrefix(res.Message, want.message) {
					t.Fatalf("accounts[%d]: got %v, want code %v replayed %v message %q...", i, res, want.code, want.replayed, want.message)
				}
				stored, err := tf.Account(acc.GetId())
				switch {
				case want.code != codeOK:
					if res.Account != nil {
						t.Fatalf("accounts[%d]: a refusal carries an account", i)
					}
					if prev := before[acc.GetId()]; prev != nil && !proto.Equal(stored, prev) {
						t.Fatalf("accounts[%d]: a refused definition changed the stored account", i)
					}
					if before[acc.GetId()] == nil && err == nil {
						t.Fatalf("accounts[%d]: a refused account was stored: %v", i, stored)
					}
				case want.replayed:
					if !proto.Equal(res.Account, before[acc.GetId()]) || !proto.Equal(stored, before[acc.GetId()]) {
						t.Fatalf("accounts[%d]: a replay answered %v, stored %v; want the first %v", i, res.Account, stored, before[acc.GetId()])
					}
				default:
					wantCreated = append(wantCreated, acc.GetId())
					if err != nil || !proto.Equal(res.Account, stored) {
						t.Fatalf("accounts[%d]: answered %v, stored %v (%v)", i, res.Account, stored, err)
					}
					if stored.Owner != asClient || stored.CreatedIndex != index || !sameAccountDefinition(stored, acc) {
						t.Fatalf("accounts[%d]: stored %v, want the definition owned by a client created at %d", i, stored, index)
					}
				}
			}
			// One event at the index, one AccountCreated per account created, in request order;
			// replays and refusals add nothing.
			var gotCreated []string
			events, err := tf.Events(index, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range events {
				if ev.Index != index {
					continue
				}
				for _, it := range ev.Items {
					gotCreated = append(gotCreated, it.GetAccountCreated().GetId())
				}
			}
			if !slices.Equal(gotCreated, wantCreated) {
				t.Fatalf("event items %q, want %q", gotCreated, wantCreated)
			}
			checkInvariants(t, tf)
			checkOwnershipInvariants(t, tf)
		})
	}
}

// TestCreateAccountsRefusesABadlyShapedRequestWhole: no accounts, more than 8,000 or an id
// twice refuse the whole command, which then changes nothing.
func TestCreateAccountsRefusesABadlyShapedRequestWhole(t *testing.T) {
	many := func(n int) []*bankdv1.Account {
		accs := make([]*bankdv1.Account, n)
		for i := range accs {
			accs[i] = liabilityAccount(fmt.Sprintf("c%d", i))
		}
		return accs
	}
	tests := []struct {
		name    string
		batch   []*bankdv1.Account
		message string
	}{
		{"no accounts", nil, "accounts: at least one account"},
		{"8001 accounts", many(MaxAccountsPerCommand + 1), "accounts: at most 8000 per request, got 8001"},
		{"an id twice", []*bankdv1.Account{liabilityAccount("a"), liabilityAccount("b"), liabilityAccount("a")},
			`accounts[2].id: "a" is also accounts[0].id; ids must be distinct within one request`},
		{"an id twice with different definitions", []*bankdv1.Account{
			liabilityAccount("a"), {Id: "a", Currency: "EUR", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		}, `accounts[1].id: "a" is also accounts[0].id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tf := openTestFSM(t)
			tf.mustAccount("existing", "LIABILITY", true)
			before := storeDump(t, tf.FSM)
			res := tf.createAccounts(tt.batch...)
			refusal, ok := res.(*Error)
			if !ok || refusal.Code != codeInvalid || !strings.HasPrefix(refusal.Message, tt.message) {
				t.Fatalf("got %T %v, want INVALID_ARGUMENT %q", res, res, tt.message)
			}
			if after := storeDump(t, tf.FSM); !slices.Equal(before, after) {
				t.Fatalf("a refused batch changed the state")
			}
			if tf.fatals.count() != 0 {
				t.Fatalf("the state machine stopped: %v", tf.fatals.errs)
			}
		})
	}
}

// TestCreateAccountsTakesEightThousandInOneEntry: the largest batch applies in one command.
func TestCreateAccountsTakesEightThousandInOneEntry(t *testing.T) {
	tf := openTestFSM(t)
	accs := make([]*bankdv1.Account, MaxAccountsPerCommand)
	for i := range accs {
		accs[i] = liabilityAccount(fmt.Sprintf("c%d", i))
	}
	resp := mustCreateAccounts(tf, accs...)
	for i, r := range resp.Results {
		if r.Code != codeOK || r.Replayed {
			t.Fatalf("accounts[%d]: %v", i, r)
		}
	}
	got, _, err := tf.ListAccounts("", MaxPageSize)
	if err != nil || len(got) != MaxPageSize {
		t.Fatalf("list: %d accounts, %v", len(got), err)
	}
	last, err := tf.Account(fmt.Sprintf("c%d", MaxAccountsPerCommand-1))
	if err != nil || last.CreatedIndex != 1 {
		t.Fatalf("the last account: %v, %v", last, err)
	}
	// The whole batch again: every account replayed, nothing written but the applied index.
	before := storeDump(t, tf.FSM)
	for i, r := range mustCreateAccounts(tf, accs...).Results {
		if r.Code != codeOK || !r.Replayed {
			t.Fatalf("replay of accounts[%d]: %v", i, r)
		}
	}
	if after := storeDump(t, tf.FSM); !slices.Equal(before, after) {
		t.Fatalf("a replayed batch changed the state")
	}
}

// TestCreateAccountsIsNewerThanTheBaseline: the binary advertises CREATE_ACCOUNTS, and it is not
// a baseline type, so the leader proposes it only once every server applies it.
func TestCreateAccountsIsNewerThanTheBaseline(t *testing.T) {
	bit := uint64(1) << uint(bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS)
	if CommandTypes()&bit == 0 {
		t.Fatalf("CommandTypes() %#x lacks CREATE_ACCOUNTS", CommandTypes())
	}
	if BaselineCommandTypes&bit != 0 {
		t.Fatalf("CREATE_ACCOUNTS is in BaselineCommandTypes: it would be proposed to binaries that stop at it")
	}
}

// TestCreateAccountsBatchesAreDeterministic applies random batches (new, replayed, conflicting,
// invalid and drivers' ids, badly shaped requests) between transfers, checks the invariants and
// the ownership table after each, and requires a fresh replica, one restored from a snapshot
// taken midway and one fed the log in random batch sizes to reach the same state hash.
func TestCreateAccountsBatchesAreDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 31))
			tf := bank(t)
			var known []*bankdv1.Account
			outcomes := map[string]int{}
			next := 0
			const steps = 120
			var midSnap []byte
			for step := range steps {
				if step == steps/2 {
					midSnap = snapshotBytes(t, tf.FSM)
				}
				tf.advance(int64(rng.IntN(100)))
				if rng.IntN(4) == 0 {
					tf.transfers(nil, xfer(fmt.Sprintf("t%d", step), "reserve", "alice", int64(1+rng.IntN(100))))
					continue
				}
				n := 1 + rng.IntN(12)
				batch := make([]*bankdv1.Account, 0, n)
				for range n {
					var acc *bankdv1.Account
					switch r := rng.IntN(10); {
					case r < 5 || len(known) == 0:
						next++
						acc = &bankdv1.Account{Id: fmt.Sprintf("r%d", next), Currency: []string{"BTC", "EUR"}[rng.IntN(2)],
							Kind: bankdv1.AccountKind(1 + rng.IntN(5)), NonNegative: rng.IntN(2) == 0, DailyDebitLimit: int64(rng.IntN(3) * 1000)}
						if rng.IntN(3) == 0 {
							acc.Metadata = map[string]string{"k": fmt.Sprint(rng.IntN(3)), "z": "v"}
						}
					case r < 7:
						acc = proto.Clone(known[rng.IntN(len(known))]).(*bankdv1.Account) // a replay
					case r < 8:
						acc = proto.Clone(known[rng.IntN(len(known))]).(*bankdv1.Account)
						acc.DailyDebitLimit++ // a conflict
					case r < 9:
						acc = &bankdv1.Account{Id: LightningNodeAccount(fmt.Sprint(rng.IntN(3))), Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET}
					default:
						next++
						acc = &bankdv1.Account{Id: fmt.Sprintf("r%d", next), Currency: "bitcoin", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET}
					}
					batch = append(batch, acc)
				}
				if rng.IntN(15) == 0 {
					batch = append(batch, proto.Clone(batch[0]).(*bankdv1.Account)) // an id twice
				}
				switch res := tf.createAccounts(batch...).(type) {
				case *Error:
					outcomes["refused "+res.Code.String()]++
				case *bankdv1.CreateAccountsResponse:
					for i, r := range res.Results {
						key := r.Code.String()
						if r.Replayed {
							key = "replayed"
						}
						outcomes[key]++
						if r.Code == codeOK && !r.Replayed {
							known = append(known, batch[i])
						}
					}
				default:
					t.Fatalf("step %d: %T %v", step, res, res)
				}
				checkInvariants(t, tf)
				checkOwnershipInvariants(t, tf)
				if tf.fatals.count() != 0 {
					t.Fatalf("state machine stopped at step %d: %v", step, tf.fatals.errs)
				}
			}
			for _, k := range []string{"RESULT_CODE_OK", "replayed", "RESULT_CODE_ALREADY_EXISTS", "RESULT_CODE_INVALID_ARGUMENT", "refused RESULT_CODE_INVALID_ARGUMENT"} {
				if outcomes[k] == 0 {
					t.Fatalf("random batches too narrow to mean anything: %v", outcomes)
				}
			}
			checkReplicasAgree(t, tf, midSnap, rng, 16)
		})
	}
}

func mustCreateAccounts(tf *testFSM, accs ...*bankdv1.Account) *bankdv1.CreateAccountsResponse {
	tf.t.Helper()
	resp, ok := tf.createAccounts(accs...).(*bankdv1.CreateAccountsResponse)
	if !ok {
		tf.t.Fatalf("create accounts refused")
	}
	for i, r := range resp.Results {
		if r.Code != codeOK {
			tf.t.Fatalf("accounts[%d]: %v", i, r)
		}
	}
	return resp
}
