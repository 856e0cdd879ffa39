package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// TestRandomCommandSequencesKeepTheInvariants drives the state machine with random mixes of
// every command, including bad ones, and checks after each one the invariants every replica
// must keep (DESIGN.md section 10) and that the script table holds exactly every wallet's
// look-ahead windows. It then checks determinism three ways: a fresh replica
// that applies the same log, one restored from a snapshot taken midway and fed the rest, and
// one that applies the log in differently sized batches all reach the same state hash.
func TestRandomCommandSequencesKeepTheInvariants(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed*7919))
			tf := openTestFSM(t)
			gen := &commandGen{rng: rng, tf: tf}
			gen.setup()
			var midSnap []byte
			const steps = 500
			for step := 0; step < steps; step++ {
				// Even seeds switch to grouped history part way, so the replicas below meet
				// the switch in a replay, in a snapshot and inside a batch.
				if seed%2 == 0 && step == steps/4 {
					tf.switchFormat(FormatGroupedHistory)
				}
				gen.step()
				checkInvariants(t, tf)
				checkWalletInvariants(t, tf)
				checkChainInvariants(t, tf)
				checkLightningInvariants(t, tf)
				checkOwnershipInvariants(t, tf)
				if tf.fatals.count() != 0 {
					t.Fatalf("state machine stopped at step %d: %v", step, tf.fatals.errs)
				}
				if step == steps/2 {
					midSnap = snapshotBytes(t, tf.FSM)
				}
			}
			// The mix must exercise both sides: money that moves and refusals of every kind.
			if gen.outcomes[codeOK] < 100 || gen.outcomes[codeInsufficient] == 0 || gen.outcomes[codeLinked] == 0 || gen.outcomes[codeInvalid] == 0 {
				t.Fatalf("random mix too narrow to mean anything: %v", gen.outcomes)
			}
			if gen.walletOutcomes["address"] < 10 || gen.walletOutcomes["replayed"] == 0 || gen.walletOutcomes["refused"] == 0 {
				t.Fatalf("wallet commands too narrow to mean anything: %v", gen.walletOutcomes)
			}
			if gen.chain.results["COMMAND_TYPE_CHAIN_BLOCK_CONNECTED"] < 10 || gen.chain.results["COMMAND_TYPE_CHAIN_BLOCK_DISCONNECTED"] == 0 ||
				gen.chain.results["COMMAND_TYPE_CHAIN_MEMPOOL"] == 0 || gen.chain.results["refused RESULT_CODE_CHAIN_CONFLICT"] == 0 {
				t.Fatalf("chain commands too narrow to mean anything: %v", gen.chain.results)
			}
			lr := gen.lightning.results
			if lr["COMMAND_TYPE_LN_PAYMENT_START"] == 0 || lr["COMMAND_TYPE_LN_INVOICE_UPDATES"] == 0 || lr["COMMAND_TYPE_LN_PAYMENT_RESULT"] == 0 ||
				lr["refused RESULT_CODE_LIGHTNING_CONFLICT"] == 0 {
				t.Fatalf("lightning commands too narrow to mean anything: %v", lr)
			}
			ar := gen.attack.results
			if ar["applied"] != 0 {
				t.Fatalf("client attacks on what the drivers own got through: %v", ar)
			}
			if ar["refused RESULT_CODE_INVALID_ARGUMENT"] < 20 {
				t.Fatalf("attacks too few to mean anything: %v", ar)
			}
			if adj := gen.adjust.results; adj["booked"] == 0 || adj["replayed"] == 0 || adj["refused RESULT_CODE_INVALID_ARGUMENT"] == 0 {
				t.Fatalf("adjustments too narrow to mean anything: %v", adj)
			}
			if lost := gen.lost.results; lost["declared"] == 0 || lost["resolved"] == 0 || lost["refused RESULT_CODE_INVALID_ARGUMENT"]+lost["refused RESULT_CODE_LIGHTNING_CONFLICT"]+lost["refused RESULT_CODE_ALREADY_EXISTS"] == 0 {
				t.Fatalf("lost nodes too narrow to mean anything: %v", lost)
			}
			problems, _ := tf.ProblemCount()
			t.Logf("attacks %v; adjustments %v; lost nodes %v; problems recorded %d", ar, gen.adjust.results, gen.lost.results, problems)
			if want := map[bool]uint32{false: FormatBaseline, true: FormatGroupedHistory}[seed%2 == 0]; tf.Format() != want {
				t.Fatalf("the store is in format %d, want %d", tf.Format(), want)
			}
			checkReplicasAgree(t, tf, midSnap, rng, 64)
		})
	}
}

// checkReplicasAgree checks that three other replicas reach tf's state hash: one that applies
// tf's whole log, one restored from midSnap (a snapshot taken part way) that applies the rest,
// and one that applies the log in random batches of 1 to maxBatch entries.
func checkReplicasAgree(t *testing.T, tf *testFSM, midSnap []byte, rng *rand.Rand, maxBatch int) {
	t.Helper()
	_, want := tf.hash()
	replica := openTestFSM(t)
	replica.ApplyBatch(tf.log)
	if _, got := replica.hash(); got != want {
		t.Fatalf("replaying the log on a fresh replica gave another state")
	}
	restored := openTestFSM(t)
	if err := restored.Restore(readCloser(midSnap)); err != nil {
		t.Fatal(err)
	}
	restored.ApplyBatch(tf.log) // entries up to the snapshot are skipped
	if _, got := restored.hash(); got != want {
		t.Fatalf("a snapshot plus the rest of the log gave another state")
	}
	batched := openTestFSM(t)
	for i := 0; i < len(tf.log); {
		n := 1 + rng.IntN(maxBatch)
		batched.ApplyBatch(tf.log[i:min(i+n, len(tf.log))])
		i += n
	}
	if _, got := batched.hash(); got != want {
		t.Fatalf("applying in random batch sizes gave another state")
	}
}

type commandGen struct {
	rng      *rand.Rand
	tf       *testFSM
	accounts []string
	pending  []string
	locks    map[string]uint64
	nextID   int
	outcomes map[bankdv1.ResultCode]int

	// walletKeys are the regtest account keys wallets are made of; requests are the
	// NewDepositAddress requests sent so far.
	walletKeys     []string
	requests       []*bankdv1.NewDepositAddressRequest
	walletOutcomes map[string]int

	chain     chainGen
	lightning lightningGen
	attack    attackGen
	adjust    adjustGen
	lost      lostGen
}

func (g *commandGen) id(prefix string) string {
	g.nextID++
	return fmt.Sprintf("%s%d", prefix, g.nextID)
}

func (g *commandGen) setup() {
	g.locks = map[string]uint64{}
	g.outcomes = map[bankdv1.ResultCode]int{}
	kinds := []string{"ASSET", "LIABILITY", "LIABILITY", "LIABILITY", "EQUITY", "INCOME", "EXPENSE"}
	for i, k := range kinds {
		id := fmt.Sprintf("acct%d", i)
		g.tf.mustAccount(id, k, k == "LIABILITY")
		g.accounts = append(g.accounts, id)
	}
	g.tf.createAccount(&bankdv1.Account{Id: "eur", Currency: "EUR", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET})
	g.accounts = append(g.accounts, "eur")
	// A customer account that may go negative: transfers may overdraw it, payments must not.
	g.tf.mustAccount("loose", "LIABILITY", false)

	g.walletOutcomes = map[string]int{}
	for n := uint32(0); n < 4; n++ {
		g.walletKeys = append(g.walletKeys, tpub(g.tf.t, n))
	}
	g.tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep0", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT,
		Descriptor_: "wpkh(" + g.walletKeys[0] + "/<0;1>/*)", GapLimit: 3})
}

// createWallet proposes a wallet that is new, a retry, a reuse of an id, a taker of another
// wallet's scripts or not a descriptor at all.
func (g *commandGen) createWallet() {
	ids := []string{"dep0", "dep1", "dep2", "hot1"}
	id := ids[g.rng.IntN(len(ids))]
	kind := bankdv1.WalletKind_WALLET_KIND_DEPOSIT
	if id == "hot1" {
		kind = bankdv1.WalletKind_WALLET_KIND_HOT
	}
	desc := "wpkh(" + g.walletKeys[g.rng.IntN(len(g.walletKeys))] + "/<0;1>/*)"
	if g.rng.IntN(5) == 0 {
		desc = "wpkh(" + g.walletKeys[0] + "/0/*)#notachecksum"
	}
	g.recordWallet(g.tf.createWallet(&bankdv1.CreateWalletRequest{
		WalletId: id, Kind: kind, Descriptor_: desc, GapLimit: uint32(2 + g.rng.IntN(3)),
	}))
}

// newAddress asks for an address for any account (liability or not) of any wallet (or the
// default one), under a new request id or one that got an address before.
func (g *commandGen) newAddress() {
	wallets := []string{"", "dep0", "dep0", "dep0", "dep1", "hot1", "nope"}
	customers := []string{"acct1", "acct2", "acct3"} // the LIABILITY accounts of setup
	req := &bankdv1.NewDepositAddressRequest{
		AccountId: customers[g.rng.IntN(len(customers))], WalletId: wallets[g.rng.IntN(len(wallets))], RequestId: g.id("addr"),
	}
	if g.rng.IntN(4) == 0 {
		req.AccountId = g.account()
	}
	if len(g.requests) > 0 && g.rng.IntN(4) == 0 {
		prev := g.requests[g.rng.IntN(len(g.requests))]
		if g.rng.IntN(3) == 0 {
			req.RequestId = prev.RequestId // a reuse, with another account or wallet most likely
		} else {
			req = prev // a retry
		}
	}
	res := g.tf.do(bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS, req, nil)
	if r, ok := res.(*bankdv1.NewDepositAddressResponse); ok && !r.Replayed {
		g.requests = append(g.requests, req) // retried and reused later: a retry then replays
	}
	g.recordWallet(res)
}

func (g *commandGen) recordWallet(res any) {
	switch r := res.(type) {
	case *bankdv1.CreateWalletResponse:
		g.walletOutcomes[map[bool]string{true: "replayed", false: "wallet"}[r.Replayed]]++
	case *bankdv1.NewDepositAddressResponse:
		g.walletOutcomes[map[bool]string{true: "replayed", false: "address"}[r.Replayed]]++
	case *Error:
		g.walletOutcomes["refused"]++
	default:
		g.tf.t.Fatalf("wallet command answered %T %v", res, res)
	}
}

func (g *commandGen) account() string { return g.accounts[g.rng.IntN(len(g.accounts))] }

func (g *commandGen) transfer() *bankdv1.Transfer {
	amounts := []int64{1, 10, 1000, 100_000, -1, 0, 1 << 62}
	t := xfer(g.id("t"), g.account(), g.account(), amounts[g.rng.IntN(len(amounts))])
	switch g.rng.IntN(10) {
	case 0, 1:
		t.Pending = true
		if g.rng.IntN(2) == 0 {
			t.TimeoutMs = int64(1 + g.rng.IntN(3000))
		}
		g.pending = append(g.pending, t.Id)
	case 2:
		if len(g.pending) > 0 {
			pid := g.pending[g.rng.IntN(len(g.pending))]
			t = &bankdv1.Transfer{Id: g.id("post"), PostPending: true, PendingId: pid, Amount: int64(g.rng.IntN(3)) * 50}
		}
	case 3:
		if len(g.pending) > 0 {
			t = &bankdv1.Transfer{Id: g.id("void"), VoidPending: true, PendingId: g.pending[g.rng.IntN(len(g.pending))]}
		}
	case 4:
		t.Id = fmt.Sprintf("t%d", 1+g.rng.IntN(g.nextID)) // a retry or a reuse of an old id
	}
	if g.rng.IntN(5) == 0 {
		t.Linked = true
	}
	return t
}

func (g *commandGen) step() {
	// Lost nodes draw from their own generator, every third step, so the rest of the mix
	// stays the sequence it was before them.
	if g.lost.steps++; g.lost.steps%3 == 0 {
		g.lostStep()
	}
	g.tf.advance(int64(g.rng.IntN(500)) - 50) // leaders' clocks disagree a little
	switch g.rng.IntN(22) {
	case 21:
		g.adjustStep()
	case 19, 20:
		g.attackStep()
	case 16, 17, 18:
		g.lightningStep()
	case 13, 14, 15:
		g.chainStep()
	case 10, 11:
		g.newAddress()
	case 12:
		g.createWallet()
	case 0:
		name := fmt.Sprintf("lock%d", g.rng.IntN(3))
		res := g.tf.do(bankdv1.CommandType_COMMAND_TYPE_ACQUIRE_LOCK, &bankdv1.AcquireLockRequest{
			Name: name, Holder: fmt.Sprintf("h%d", g.rng.IntN(2)), TtlMs: int64(100 + g.rng.IntN(1000)),
		}, nil)
		if r, ok := res.(*bankdv1.AcquireLockResponse); ok {
			g.locks[name] = r.Lock.Token
		}
	case 1:
		g.tf.do(bankdv1.CommandType_COMMAND_TYPE_TICK, nil, nil)
	default:
		n := 1 + g.rng.IntN(8)
		ts := make([]*bankdv1.Transfer, n)
		for i := range ts {
			ts[i] = g.transfer()
		}
		ts[n-1].Linked = false
		var fence *bankdv1.Fence
		if g.rng.IntN(6) == 0 {
			name := fmt.Sprintf("lock%d", g.rng.IntN(3))
			fence = &bankdv1.Fence{LockName: name, Token: g.locks[name]}
		}
		res := g.tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: ts}, fence)
		if r, ok := res.(*bankdv1.CreateTransfersResponse); ok {
			for _, tr := range r.Results {
				g.outcomes[tr.Code]++
			}
		}
	}
}

// checkInvariants checks DESIGN.md invariants 1 and 2, and that every account's totals agree
// with its history.
func checkInvariants(t failer, tf *testFSM) {
	t.Helper()
	accs, _, err := tf.ListAccounts("", MaxPageSize)
	if err != nil {
		t.Fatal(err)
	}
	reversed := reversedDeposits(t, tf)
	type sums struct{ posted, pending int64 }
	byCurrency := map[string]*sums{}
	for _, a := range accs {
		s := byCurrency[a.Currency]
		if s == nil {
			s = &sums{}
			byCurrency[a.Currency] = s
		}
		b := a.Balance
		s.posted += b.DebitsPosted - b.CreditsPosted
		s.pending += b.DebitsPending - b.CreditsPending
		// The one exception to invariant 2: a reorg took back a credited deposit (fsm/chain.go's
		// policy), which may leave the customer below zero by at most what was reversed.
		if a.NonNegative && b.Available+reversed[a.Id] < 0 {
			t.Fatalf("invariant 2: non-negative account %s has available %d (%d of deposits reversed)", a.Id, b.Available, reversed[a.Id])
		}
		var hist [4]int64
		entries, _, err := tf.AccountHistory(a.Id, "", MaxPageSize)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			hist[0] += e.DebitsPostedDelta
			hist[1] += e.CreditsPostedDelta
			hist[2] += e.DebitsPendingDelta
			hist[3] += e.CreditsPendingDelta
		}
		if len(entries) < MaxPageSize && hist != [4]int64{b.DebitsPosted, b.CreditsPosted, b.DebitsPending, b.CreditsPending} {
			t.Fatalf("account %s: history sums %v disagree with balance %v", a.Id, hist, b)
		}
	}
	for cur, s := range byCurrency {
		if s.posted != 0 || s.pending != 0 {
			t.Fatalf("invariant 1: %s debits-credits is %d posted, %d pending", cur, s.posted, s.pending)
		}
	}
	checkResidentAccounts(t, tf.FSM)
}

// checkResidentAccounts checks that the accounts the apply path reads from memory are exactly
// the accounts in the store.
func checkResidentAccounts(t failer, f *FSM) {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	stored, err := loadResidentAccounts(f.db)
	if err != nil {
		t.Fatal(err)
	}
	if stored.len() != f.accounts.len() {
		t.Fatalf("resident accounts: %d in memory, %d in the store", f.accounts.len(), stored.len())
	}
	for n := range stored.len() {
		id := stored.str(stored.record(uint32(n)).id)
		got, ok := f.accounts.copyTo(id, &accountAndBalance{})
		if !ok {
			t.Fatalf("resident account %s is in the store, not in memory", id)
		}
		if want, _ := stored.copyTo(id, &accountAndBalance{}); !proto.Equal(got, want) {
			t.Fatalf("resident account %s:\n in memory %v\n in store  %v", id, got, want)
		}
	}
}

// TestOwnershipCheckerCatchesAStateMachineWithoutOwnershipChecks shows the property test
// can fail: with the client ownership checks switched off, the random attacks get through and
// checkOwnershipInvariants catches it within the run.
func TestOwnershipCheckerCatchesAStateMachineWithoutOwnershipChecks(t *testing.T) {
	ownershipChecksOff = true
	t.Cleanup(func() { ownershipChecksOff = false })
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed*7919))
			tf := openTestFSM(t)
			gen := &commandGen{rng: rng, tf: tf}
			gen.setup()
			ft := &recordingT{}
			for step := 0; step < 400 && !ft.failed; step++ {
				gen.step()
				func() {
					defer func() { _ = recover() }()
					checkOwnershipInvariants(ft, tf)
				}()
			}
			if !ft.failed {
				t.Fatalf("the checker passed a state machine that lets clients touch what the drivers own (attacks: %v)", gen.attack.results)
			}
		})
	}
}

// TestInvariantCheckerCatchesAnUnbalancedLedger shows checkInvariants can fail: a transfer
// that credits without a matching debit (written straight into the store) is caught.
func TestInvariantCheckerCatchesAnUnbalancedLedger(t *testing.T) {
	tf := bank(t)
	acc, _ := tf.Account("alice")
	acc.Balance.CreditsPosted += 5
	b := tf.db.NewBatch()
	v, _ := marshal.Marshal(acc)
	b.Set(accountKey("alice"), v, nil)
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	ft := &recordingT{}
	func() {
		defer func() { _ = recover() }()
		checkInvariants(ft, tf)
	}()
	if !ft.failed {
		t.Fatalf("checker passed a ledger whose credits exceed its debits")
	}
}

// failer is the part of testing.T the invariant checker uses, so a test can watch it fail.
type failer interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// recordingT records a failure and stops the checker by panicking.
type recordingT struct{ failed bool }

func (r *recordingT) Helper()               {}
func (r *recordingT) Fatal(args ...any)     { r.failed = true; panic("fatal") }
func (r *recordingT) Fatalf(string, ...any) { r.failed = true; panic("fatal") }
