package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
)

const (
	kindHot     = bankdv1.WalletKind_WALLET_KIND_HOT
	kindCold    = bankdv1.WalletKind_WALLET_KIND_COLD
	kindDeposit = bankdv1.WalletKind_WALLET_KIND_DEPOSIT
)

// depositBank is bank plus a DEPOSIT wallet "dep" of the given gap limit.
func depositBank(t *testing.T, gap uint32) *testFSM {
	t.Helper()
	tf := bank(t)
	tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep", Kind: kindDeposit, Descriptor_: depositDescriptor(t, 0), GapLimit: gap})
	return tf
}

func TestCreateWalletIsIdempotentAndRefusesAnotherDefinition(t *testing.T) {
	tf := openTestFSM(t)
	key := tpub(t, 0)
	req := &bankdv1.CreateWalletRequest{WalletId: "w1", Kind: kindDeposit, Descriptor_: "wpkh(" + key + "/<0;1>/*)", BirthdayHeight: 100}
	first := tf.createWallet(proto.Clone(req).(*bankdv1.CreateWalletRequest)).(*bankdv1.CreateWalletResponse)
	w := first.Wallet
	if first.Replayed || w.CreatedIndex != 1 || w.GapLimit != DefaultGapLimit || w.Network != "regtest" || w.BirthdayHeight != 100 {
		t.Fatalf("first create: %v", first)
	}
	normal, err := descriptor.Parse(req.Descriptor_, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	if w.Descriptor_ != normal.String() || !strings.Contains(w.Descriptor_, "#") {
		t.Fatalf("stored descriptor %q, want the normal form %q", w.Descriptor_, normal.String())
	}
	wantBranches := []*bankdv1.WalletBranch{{Branch: 0, WatchedEnd: 20}, {Branch: 1, WatchedEnd: 20}}
	if !slices.EqualFunc(w.Branches, wantBranches, func(a, b *bankdv1.WalletBranch) bool { return proto.Equal(a, b) }) {
		t.Fatalf("branches %v, want %v", w.Branches, wantBranches)
	}

	same := []struct {
		name string
		mut  func(*bankdv1.CreateWalletRequest)
	}{
		{"the same request", func(*bankdv1.CreateWalletRequest) {}},
		{"the descriptor in normal form with its checksum", func(r *bankdv1.CreateWalletRequest) { r.Descriptor_ = w.Descriptor_ }},
		{"the default gap limit spelled out", func(r *bankdv1.CreateWalletRequest) { r.GapLimit = DefaultGapLimit }},
	}
	for _, c := range same {
		t.Run("replay: "+c.name, func(t *testing.T) {
			r := proto.Clone(req).(*bankdv1.CreateWalletRequest)
			c.mut(r)
			res, ok := tf.createWallet(r).(*bankdv1.CreateWalletResponse)
			if !ok || !res.Replayed || res.Wallet.CreatedIndex != 1 {
				t.Fatalf("got %v, want the first wallet, replayed", res)
			}
		})
	}
	other := []struct {
		name string
		mut  func(*bankdv1.CreateWalletRequest)
	}{
		{"another kind", func(r *bankdv1.CreateWalletRequest) { r.Kind = kindHot }},
		{"another gap limit", func(r *bankdv1.CreateWalletRequest) { r.GapLimit = 21 }},
		{"another birthday", func(r *bankdv1.CreateWalletRequest) { r.BirthdayHeight = 101 }},
		{"another descriptor", func(r *bankdv1.CreateWalletRequest) { r.Descriptor_ = depositDescriptor(t, 1) }},
	}
	for _, c := range other {
		t.Run("conflict: "+c.name, func(t *testing.T) {
			before := storeDump(t, tf.FSM)
			r := proto.Clone(req).(*bankdv1.CreateWalletRequest)
			c.mut(r)
			refusal(t, tf.createWallet(r), codeExists, `wallet_id: wallet "w1" already exists with a different definition`)
			if !slices.Equal(before, storeDump(t, tf.FSM)) {
				t.Fatalf("a refused create changed the store")
			}
		})
	}
}

// TestCreateWalletRefusesBadDescriptors covers every class of error of the descriptor package
// that a wallet definition can meet, plus the rules of wallets themselves. Each refusal names
// the problem and changes nothing but the applied index.
func TestCreateWalletRefusesBadDescriptors(t *testing.T) {
	tprv, key := testXKey(t, 0, &chaincfg.RegressionNetParams)
	_, key2 := testXKey(t, 1, &chaincfg.RegressionNetParams)
	_, xpub := testXKey(t, 0, &chaincfg.MainNetParams)
	priv, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	uncompressed := fmt.Sprintf("%x", priv.PubKey().SerializeUncompressed())
	withChecksum := func(d string) string {
		s, err := descriptor.AddChecksum(d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := withChecksum("wpkh(" + key + "/0/*)")
	badChecksum := good[:len(good)-1] + map[bool]string{true: "q", false: "p"}[good[len(good)-1] != 'q']

	cases := []struct {
		name string
		kind bankdv1.WalletKind
		desc string
		want string // the message must start with "descriptor: " and contain this
	}{
		{"syntax: unbalanced parentheses", kindHot, "wpkh(" + key + "/0/*", descriptor.ErrSyntax.Error()},
		{"a wrong checksum", kindHot, badChecksum, descriptor.ErrChecksum.Error()},
		{"an invalid key", kindHot, "wpkh(02deadbeef)", descriptor.ErrInvalidKey.Error()},
		{"a private extended key", kindHot, "wpkh(" + tprv + "/0/*)", descriptor.ErrPrivateKey.Error()},
		{"a hardened step after the xpub", kindDeposit, "wpkh(" + key + "/0h/*)", descriptor.ErrHardenedDerivation.Error()},
		{"a hardened wildcard", kindDeposit, "wpkh(" + key + "/0/*h)", descriptor.ErrHardenedDerivation.Error()},
		{"a mainnet key on regtest", kindDeposit, "wpkh(" + xpub + "/0/*)", descriptor.ErrNetwork.Error()},
		{"an uncompressed key in segwit", kindHot, "wpkh(" + uncompressed + ")", descriptor.ErrUncompressedKey.Error()},
		{"a threshold above the keys", kindCold, "wsh(multi(3," + key + "/0/*," + key2 + "/0/*))", descriptor.ErrThreshold.Error()},
		{"too many keys in bare multi", kindCold, "multi(1," + key + "/0/*," + key + "/1/*," + key + "/2/*," + key2 + "/0/*)", descriptor.ErrTooManyKeys.Error()},
		{"wpkh inside wsh", kindHot, "wsh(wpkh(" + key + "/0/*))", descriptor.ErrNesting.Error()},
		{"two multipath steps in one key", kindDeposit, "wpkh(" + key + "/<0;1>/<2;3>/*)", descriptor.ErrMultipath.Error()},
		{"a taproot script tree", kindHot, "tr(" + key + "/0/*,pk(" + key2 + "/0/*))", descriptor.ErrUnsupported.Error()},
		{"combo", kindHot, "combo(" + key + "/0/*)", descriptor.ErrUnsupported.Error()},
		{"a bare pk without an address", kindHot, "pk(" + key + "/0/*)", "pk() outputs have no address"},
		{"a bare multisig without an address", kindCold, "multi(1," + key + "/0/*," + key2 + "/0/*)", "multi() outputs have no address"},
		{"a DEPOSIT wallet on one script", kindDeposit, "wpkh(" + key + "/0/7)", "a DEPOSIT wallet needs a ranged descriptor"},
		{"three multipath branches", kindDeposit, "wpkh(" + key + "/<0;1;2>/*)", "at most two multipath values"},
	}
	tf := openTestFSM(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := storeDump(t, tf.FSM)
			applied := tf.AppliedIndex()
			e := refusal(t, tf.createWallet(&bankdv1.CreateWalletRequest{WalletId: "w", Kind: c.kind, Descriptor_: c.desc}), codeInvalid, c.want)
			if !strings.HasPrefix(e.Message, "descriptor: ") {
				t.Fatalf("message %q does not name the descriptor field", e.Message)
			}
			if strings.Contains(e.Message, tprv) || strings.Contains(e.Message, tprv[4:40]) {
				t.Fatalf("message repeats the private key: %q", e.Message)
			}
			if !slices.Equal(before, storeDump(t, tf.FSM)) || tf.AppliedIndex() != applied+1 {
				t.Fatalf("a refused create changed more than the applied index")
			}
			if err := ValidateCreateWallet(&bankdv1.CreateWalletRequest{WalletId: "w", Kind: c.kind, Descriptor_: c.desc, Network: "regtest"}); err == nil || err.Message != e.Message {
				t.Fatalf("ValidateCreateWallet = %v, want the refusal apply gave", err)
			}
		})
	}
	if ws := watchedScripts(t, tf.FSM); len(ws) != 0 {
		t.Fatalf("refused wallets left %d scripts behind", len(ws))
	}
}

func TestCreateWalletValidationNamesTheField(t *testing.T) {
	key := tpub(t, 0)
	ok := func() *bankdv1.CreateWalletRequest {
		return &bankdv1.CreateWalletRequest{WalletId: "w", Kind: kindDeposit, Descriptor_: "wpkh(" + key + "/0/*)", Network: "regtest"}
	}
	threeKeys := "wsh(sortedmulti(2," + key + "/<0;1>/*," + tpub(t, 1) + "/<0;1>/*," + tpub(t, 2) + "/<0;1>/*))"
	cases := []struct {
		name  string
		mut   func(*bankdv1.CreateWalletRequest)
		field string
	}{
		{"empty id", func(r *bankdv1.CreateWalletRequest) { r.WalletId = "" }, "wallet_id: "},
		{"id with a space", func(r *bankdv1.CreateWalletRequest) { r.WalletId = "a b" }, "wallet_id: "},
		{"no kind", func(r *bankdv1.CreateWalletRequest) { r.Kind = 0 }, "kind: "},
		{"unknown kind", func(r *bankdv1.CreateWalletRequest) { r.Kind = 9 }, "kind: "},
		{"no network", func(r *bankdv1.CreateWalletRequest) { r.Network = "" }, "network: must be one of mainnet, testnet, signet, regtest"},
		{"unknown network", func(r *bankdv1.CreateWalletRequest) { r.Network = "testnet3" }, "network: "},
		{"gap limit over the bound", func(r *bankdv1.CreateWalletRequest) { r.GapLimit = MaxGapLimit + 1 }, "gap_limit: must be 0-10000"},
		{"no descriptor", func(r *bankdv1.CreateWalletRequest) { r.Descriptor_ = "" }, "descriptor: required"},
		{"descriptor too long", func(r *bankdv1.CreateWalletRequest) { r.Descriptor_ = strings.Repeat("x", MaxDescriptorLen+1) }, "descriptor: at most"},
		{"a window too costly to derive", func(r *bankdv1.CreateWalletRequest) {
			r.Kind, r.Descriptor_, r.GapLimit = kindCold, threeKeys, 5000
		}, "gap_limit: 5000 scripts on 2 branch(es) of 3 key(s) each need 30000 key derivations"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ok()
			c.mut(r)
			err := ValidateCreateWallet(r)
			if err == nil || err.Code != codeInvalid || !strings.HasPrefix(err.Message, c.field) {
				t.Fatalf("got %v, want INVALID_ARGUMENT starting %q", err, c.field)
			}
		})
	}
	if err := ValidateCreateWallet(ok()); err != nil {
		t.Fatalf("valid request refused: %v", err)
	}
	r := ok()
	r.Kind, r.Descriptor_, r.GapLimit = kindCold, threeKeys, 3333
	if err := ValidateCreateWallet(r); err != nil {
		t.Fatalf("3333 x 2 x 3 derivations are within the bound: %v", err)
	}
}

func TestOneScriptDescriptorWatchesOneScript(t *testing.T) {
	tf := openTestFSM(t)
	w := tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "hot", Kind: kindHot, Descriptor_: "wpkh(" + tpub(t, 0) + "/0/7)"})
	if len(w.Branches) != 1 || w.Branches[0].WatchedEnd != 1 {
		t.Fatalf("branches %v, want one with one script", w.Branches)
	}
	if n := len(watchedScripts(t, tf.FSM)); n != 1 {
		t.Fatalf("%d scripts watched, want 1", n)
	}
}

func TestTheFirstWalletSetsTheClusterNetwork(t *testing.T) {
	tf := openTestFSM(t)
	if n, err := tf.ChainNetwork(); err != nil || n != "" {
		t.Fatalf("network before any wallet: %q, %v", n, err)
	}
	tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "w1", Kind: kindDeposit, Descriptor_: depositDescriptor(t, 0)})
	if n, _ := tf.ChainNetwork(); n != "regtest" {
		t.Fatalf("network = %q, want regtest", n)
	}
	// tpub keys are valid on signet too: only the cluster's network refuses the wallet.
	before := storeDump(t, tf.FSM)
	res := tf.createWallet(&bankdv1.CreateWalletRequest{WalletId: "w2", Kind: kindDeposit, Descriptor_: depositDescriptor(t, 1), Network: "signet"})
	refusal(t, res, codeInvalid, "network: the cluster's chain network is regtest (set by its first wallet), not signet")
	if !slices.Equal(before, storeDump(t, tf.FSM)) {
		t.Fatalf("a refused create changed the store")
	}
}

// TestDepositAddressesAreHandedOutInOrderAndUniquely allocates 10 addresses to each of 100
// accounts, interleaved, and checks the order of indexes, their uniqueness and what every read
// says about them.
func TestDepositAddressesAreHandedOutInOrderAndUniquely(t *testing.T) {
	const accounts, perAccount = 100, 10
	tf := depositBank(t, 20)
	for i := 0; i < accounts; i++ {
		tf.mustAccount(fmt.Sprintf("cust%03d", i), "LIABILITY", true)
	}
	seen := map[string]string{}
	for round := 0; round < perAccount; round++ {
		for i := 0; i < accounts; i++ {
			acc := fmt.Sprintf("cust%03d", i)
			d := tf.mustAddress(acc, "", fmt.Sprintf("req-%s-%d", acc, round))
			if want := uint32(round*accounts + i); d.Index != want || d.WalletId != "dep" || d.Branch != 0 || d.AccountId != acc {
				t.Fatalf("address %d of %s: %v, want receive index %d of dep", round, acc, d, want)
			}
			if owner, dup := seen[d.Address]; dup {
				t.Fatalf("address %s handed out to %s and %s", d.Address, owner, acc)
			}
			seen[d.Address] = acc
		}
	}
	for i := 0; i < accounts; i++ {
		acc := fmt.Sprintf("cust%03d", i)
		var got []*bankdv1.DepositAddress
		for token := ""; ; {
			page, next, err := tf.ListDepositAddresses(acc, token, 3)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			token = next
		}
		if len(got) != perAccount {
			t.Fatalf("%s has %d addresses, want %d", acc, len(got), perAccount)
		}
		for round, d := range got {
			if d.Index != uint32(round*accounts+i) || d.RequestId != fmt.Sprintf("req-%s-%d", acc, round) {
				t.Fatalf("%s address %d: %v (not in allocation order)", acc, round, d)
			}
			rec, err := tf.LookupAddress(d.Address)
			if err != nil || rec.AccountId != acc || !slices.Equal(rec.Script, d.Script) {
				t.Fatalf("lookup %s: %v, %v", d.Address, rec, err)
			}
		}
	}
	w, err := tf.Wallet("dep")
	if err != nil {
		t.Fatal(err)
	}
	if w.Branches[0].NextIndex != accounts*perAccount || w.Branches[0].WatchedEnd != accounts*perAccount+20 || w.Branches[1].WatchedEnd != 20 {
		t.Fatalf("branches after %d addresses: %v", accounts*perAccount, w.Branches)
	}
	checkWalletInvariants(t, tf)
}

// TestLookAheadWindowIsExactlyNextPlusGapPerBranch: the script table holds exactly the indexes
// [0, next_index + gap_limit) of every branch, handed out or not.
func TestLookAheadWindowIsExactlyNextPlusGapPerBranch(t *testing.T) {
	tf := depositBank(t, 5)
	window := func() []string {
		var out []string
		for id, rec := range watchedScripts(t, tf.FSM) {
			owner := rec.AccountId
			if owner == "" {
				owner = "-"
			}
			out = append(out, id+":"+owner)
		}
		slices.Sort(out)
		return out
	}
	want := func(receive, change []string) []string {
		var out []string
		for i, o := range receive {
			out = append(out, fmt.Sprintf("dep/0/%d:%s", i, o))
		}
		for i, o := range change {
			out = append(out, fmt.Sprintf("dep/1/%d:%s", i, o))
		}
		slices.Sort(out)
		return out
	}
	free5 := []string{"-", "-", "-", "-", "-"}
	if got := window(); !slices.Equal(got, want(free5, free5)) {
		t.Fatalf("after create: %v", got)
	}
	tf.mustAddress("alice", "", "r1")
	tf.mustAddress("bob", "", "r2")
	tf.mustAddress("alice", "", "r3")
	receive := append([]string{"alice", "bob", "alice"}, free5...)
	if got := window(); !slices.Equal(got, want(receive, free5)) {
		t.Fatalf("after three addresses:\n got %v\nwant %v", got, want(receive, free5))
	}
	checkWalletInvariants(t, tf)
}

// applyInternal runs fn the way apply runs a command body, in a batch of its own, and returns
// the scripts it added to the script table.
func applyInternal(t *testing.T, tf *testFSM, fn func(a *applier, tx *txn) error) [][]byte {
	t.Helper()
	b := tf.db.NewIndexedBatch()
	defer b.Close()
	resident := &residentState{committed: tf.accounts, batch: map[string]*residentAccount{}}
	a := &applier{root: newRootTxn(b, resident, nil), index: tf.AppliedIndex() + 1, now: tf.NowUnixMs()}
	if err := fn(a, a.root); err != nil {
		t.Fatal(err)
	}
	if err := a.root.commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	for _, acc := range resident.batch {
		tf.accounts.put(acc)
	}
	return a.watched
}

func TestMarkScriptUsedExtendsTheLookAheadWindow(t *testing.T) {
	tf := depositBank(t, 5)
	markUsed := func(branch, index uint32) [][]byte {
		t.Helper()
		rec := watchedScripts(t, tf.FSM)[fmt.Sprintf("dep/%d/%d", branch, index)]
		if rec == nil {
			t.Fatalf("dep/%d/%d is not watched", branch, index)
		}
		return applyInternal(t, tf, func(a *applier, tx *txn) error { return a.markScriptUsed(tx, rec) })
	}
	branches := func() string {
		w, err := tf.Wallet("dep")
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d/%d %d/%d", w.Branches[0].NextIndex, w.Branches[0].WatchedEnd, w.Branches[1].NextIndex, w.Branches[1].WatchedEnd)
	}
	steps := []struct {
		name          string
		branch, index uint32
		added         int
		want          string // receive next/end, change next/end
	}{
		{"a payment to look-ahead receive index 3 moves next past it", 0, 3, 4, "4/9 0/5"},
		{"a payment below next changes nothing", 0, 1, 0, "4/9 0/5"},
		{"a payment to the last watched change index extends change by a whole gap", 1, 4, 5, "4/9 5/10"},
		{"a payment to the new end of receive", 0, 8, 5, "9/14 5/10"},
	}
	for _, s := range steps {
		added := markUsed(s.branch, s.index)
		if len(added) != s.added || branches() != s.want {
			t.Fatalf("%s: %d scripts added, branches %s; want %d, %s", s.name, len(added), branches(), s.added, s.want)
		}
		checkWalletInvariants(t, tf)
	}
	// Indexes 0-8 were skipped or seen paid: the next address is index 9.
	if d := tf.mustAddress("alice", "", "after-used"); d.Index != 9 {
		t.Fatalf("next address has index %d, want 9", d.Index)
	}
}

func TestNewDepositAddressIsIdempotentOnRequestID(t *testing.T) {
	tf := depositBank(t, 5)
	tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "hot", Kind: kindHot, Descriptor_: depositDescriptor(t, 1)})
	first := tf.mustAddress("alice", "", "r1")
	events := len(mustEvents(t, tf))
	for _, wallet := range []string{"", "dep"} {
		res := tf.newAddress("alice", wallet, "r1").(*bankdv1.NewDepositAddressResponse)
		if !res.Replayed || !proto.Equal(res.Address, first) {
			t.Fatalf("retry with wallet %q: %v, want the first address replayed", wallet, res)
		}
	}
	if n := len(mustEvents(t, tf)); n != events {
		t.Fatalf("a replay appended an event")
	}
	before := storeDump(t, tf.FSM)
	refusal(t, tf.newAddress("bob", "", "r1"), codeExists, `request_id: "r1" was already used for account "alice" and wallet "dep"`)
	refusal(t, tf.newAddress("alice", "hot", "r1"), codeExists, `request_id: "r1"`)
	if !slices.Equal(before, storeDump(t, tf.FSM)) {
		t.Fatalf("a refused request changed the store")
	}
	if second := tf.mustAddress("alice", "", "r2"); second.Index != first.Index+1 {
		t.Fatalf("a new request id got index %d, want %d", second.Index, first.Index+1)
	}
}

func mustEvents(t *testing.T, tf *testFSM) []*bankdv1.Event {
	t.Helper()
	evs, err := tf.Events(0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestNewDepositAddressRefusals(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(tf *testFSM)
		account string
		wallet  string
		request string
		code    bankdv1.ResultCode
		want    string
	}{
		{"no request id", nil, "alice", "", "", codeInvalid, "request_id: "},
		{"a malformed account id", nil, "a b", "", "r", codeInvalid, "account_id: "},
		{"a malformed wallet id", nil, "alice", "w w", "r", codeInvalid, "wallet_id: "},
		{"an unknown account", nil, "carol", "", "r", codeNotFound, `account_id: no account "carol"`},
		{"an asset account", nil, "reserve", "", "r", codeInvalid, `account_id: account "reserve" is ASSET; deposit addresses belong to LIABILITY accounts`},
		{"an account in another currency", func(tf *testFSM) {
			tf.createAccount(&bankdv1.Account{Id: "eur", Currency: "EUR", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY})
		}, "eur", "", "r", codeInvalid, "deposits are in BTC"},
		{"an unknown wallet", nil, "alice", "nope", "r", codeNotFound, `wallet_id: no wallet "nope"`},
		{"a HOT wallet", func(tf *testFSM) {
			tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "hot", Kind: kindHot, Descriptor_: depositDescriptor(tf.t, 1)})
		}, "alice", "hot", "r", codeInvalid, `wallet_id: wallet "hot" is a HOT wallet`},
		{"no wallet id while there are two DEPOSIT wallets", func(tf *testFSM) {
			tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep2", Kind: kindDeposit, Descriptor_: depositDescriptor(tf.t, 2)})
		}, "alice", "", "r", codeInvalid, "wallet_id: required: the cluster has several DEPOSIT wallets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tf := depositBank(t, 3)
			if c.setup != nil {
				c.setup(tf)
			}
			before := storeDump(t, tf.FSM)
			applied := tf.AppliedIndex()
			refusal(t, tf.newAddress(c.account, c.wallet, c.request), c.code, c.want)
			if !slices.Equal(before, storeDump(t, tf.FSM)) || tf.AppliedIndex() != applied+1 {
				t.Fatalf("a refused request changed more than the applied index")
			}
		})
	}
	t.Run("no DEPOSIT wallet at all", func(t *testing.T) {
		tf := bank(t)
		refusal(t, tf.newAddress("alice", "", "r"), codeNotFound, "wallet_id: the cluster has no DEPOSIT wallet")
	})
	t.Run("with two DEPOSIT wallets, naming one works", func(t *testing.T) {
		tf := depositBank(t, 3)
		tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep2", Kind: kindDeposit, Descriptor_: depositDescriptor(t, 2)})
		if d := tf.mustAddress("alice", "dep2", "r"); d.WalletId != "dep2" || d.Index != 0 {
			t.Fatalf("address %v", d)
		}
	})
}

// TestEveryScriptHasOneOwner: a wallet whose scripts another wallet already watches is
// refused, at creation or when its window grows into them, instead of taking them over.
func TestEveryScriptHasOneOwner(t *testing.T) {
	key := tpub(t, 0)
	t.Run("at creation", func(t *testing.T) {
		tf := bank(t)
		tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "a", Kind: kindDeposit, Descriptor_: "wpkh(" + key + "/0/*)", GapLimit: 3})
		before := storeDump(t, tf.FSM)
		res := tf.createWallet(&bankdv1.CreateWalletRequest{WalletId: "b", Kind: kindDeposit, Descriptor_: "wpkh(" + key + "/<1;0>/*)", GapLimit: 3})
		refusal(t, res, codeExists, `descriptor: the script of change index 0 (`)
		refusal(t, res, codeExists, `is already watched by wallet "a" (receive index 0)`)
		if !slices.Equal(before, storeDump(t, tf.FSM)) {
			t.Fatalf("a refused wallet changed the store")
		}
	})
	t.Run("when the window grows", func(t *testing.T) {
		tf := bank(t)
		tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "one", Kind: kindHot, Descriptor_: "wpkh(" + key + "/0/4)"})
		tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep", Kind: kindDeposit, Descriptor_: "wpkh(" + key + "/0/*)", GapLimit: 3})
		tf.mustAddress("alice", "", "r1") // watches 0-3
		before := storeDump(t, tf.FSM)
		refusal(t, tf.newAddress("alice", "", "r2"), codeExists, `receive index 4 (`)
		if !slices.Equal(before, storeDump(t, tf.FSM)) {
			t.Fatalf("a refused allocation changed the store")
		}
		rec, err := tf.LookupScript(watchedScripts(t, tf.FSM)["one/0/0"].Script)
		if err != nil || rec.WalletId != "one" {
			t.Fatalf("the first owner lost its script: %v, %v", rec, err)
		}
	})
}

// TestAddressesMatchTheBIP84Vectors hands out addresses from the BIP 84 test account on a
// mainnet cluster: they must be the published ones.
func TestAddressesMatchTheBIP84Vectors(t *testing.T) {
	v := loadBIP84(t)
	tf := bank(t)
	w := tf.mustWallet(&bankdv1.CreateWalletRequest{
		WalletId: "bip84", Kind: kindDeposit, Network: "mainnet",
		Descriptor_: "wpkh([73c5da0a/84h/0h/0h]" + v.xpub + "/<0;1>/*)",
	})
	if !strings.HasSuffix(w.Descriptor_, "#hpg6d6w2") {
		t.Fatalf("normal form %q, want the checksum of the descriptor package's example", w.Descriptor_)
	}
	for i, want := range []string{v.receive0, v.receive1} {
		if d := tf.mustAddress("alice", "", fmt.Sprintf("bip84-%d", i)); d.Address != want {
			t.Fatalf("receive address %d = %s, want %s", i, d.Address, want)
		}
	}
	rec, err := tf.LookupAddress(v.chg0)
	if err != nil || rec.WalletId != "bip84" || rec.Branch != 1 || rec.Index != 0 || rec.AccountId != "" {
		t.Fatalf("change address 0: %v, %v; want look-ahead change index 0", rec, err)
	}
}

func TestLookupAddress(t *testing.T) {
	tf := bank(t)
	if _, err := tf.LookupAddress("bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before any wallet: %v, want not found", err)
	}
	tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep", Kind: kindDeposit, Descriptor_: depositDescriptor(t, 0), GapLimit: 2})
	d := tf.mustAddress("alice", "", "r1")
	v := loadBIP84(t)
	cases := []struct {
		name    string
		address string
		check   func(*bankdv1.WatchedScript, error) bool
	}{
		{"a handed-out address", d.Address, func(r *bankdv1.WatchedScript, err error) bool { return err == nil && r.AccountId == "alice" }},
		{"upper-case bech32", strings.ToUpper(d.Address), func(r *bankdv1.WatchedScript, err error) bool { return err == nil && r.AccountId == "alice" }},
		{"an unknown address", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080", func(_ *bankdv1.WatchedScript, err error) bool { return errors.Is(err, ErrNotFound) }},
		{"a mainnet address", v.receive0, isInvalid("address: ")},
		{"garbage", "hello", isInvalid("address: ")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r, err := tf.LookupAddress(c.address); !c.check(r, err) {
				t.Fatalf("LookupAddress(%q) = %v, %v", c.address, r, err)
			}
		})
	}
}

func isInvalid(prefix string) func(*bankdv1.WatchedScript, error) bool {
	return func(_ *bankdv1.WatchedScript, err error) bool {
		var fe *Error
		return errors.As(err, &fe) && fe.Code == codeInvalid && strings.HasPrefix(fe.Message, prefix)
	}
}

func TestWalletCommandsAppendEvents(t *testing.T) {
	tf := depositBank(t, 2)
	d := tf.mustAddress("alice", "", "r1")
	evs := mustEvents(t, tf)
	var created *bankdv1.Wallet
	var allocated *bankdv1.DepositAddress
	for _, ev := range evs {
		for _, it := range ev.Items {
			if w := it.GetWalletCreated(); w != nil {
				created = w
			}
			if a := it.GetDepositAddressCreated(); a != nil {
				allocated = a
			}
		}
	}
	if created.GetId() != "dep" || len(created.GetBranches()) != 2 {
		t.Fatalf("wallet_created event: %v", created)
	}
	if !proto.Equal(allocated, d) {
		t.Fatalf("deposit_address_created event %v, want %v", allocated, d)
	}
}

func TestOnScriptsWatchedSeesWhatEachCommittedBatchAdded(t *testing.T) {
	var calls [][][]byte
	fatals := &fatalRecorder{}
	dir := t.TempDir()
	f, err := Open(dir, Options{Fatal: fatals.record, OnScriptsWatched: func(s [][]byte) { calls = append(calls, s) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tf := &testFSM{t: t, FSM: f, dir: dir, nowMs: 1_700_000_000_000, fatals: fatals}
	tf.mustAccount("alice", "LIABILITY", true)
	tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "dep", Kind: kindDeposit, Descriptor_: depositDescriptor(t, 0), GapLimit: 3})
	tf.createWallet(&bankdv1.CreateWalletRequest{WalletId: "bad", Kind: kindDeposit, Descriptor_: depositDescriptor(t, 0)}) // refused: taken scripts
	d := tf.mustAddress("alice", "", "r1")
	if len(calls) != 2 || len(calls[0]) != 6 || len(calls[1]) != 1 {
		t.Fatalf("hook calls of %d batches: %d, want 6 scripts then 1", len(calls), len(calls))
	}
	var all [][]byte
	if err := f.ForEachWatchedScript(func(s []byte) error { all = append(all, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Fatalf("ForEachWatchedScript saw %d scripts, want 7", len(all))
	}
	rec, err := f.LookupScript(calls[1][0])
	if err != nil || rec.Index != 3 || rec.AccountId != "" {
		t.Fatalf("the script added by handing out index 0 is look-ahead index 3: %v, %v", rec, err)
	}
	if rec, _ := f.LookupScript(d.Script); rec.GetAccountId() != "alice" {
		t.Fatalf("handed-out script: %v", rec)
	}
}

func TestListWalletsPages(t *testing.T) {
	tf := openTestFSM(t)
	for i := 0; i < 5; i++ {
		tf.mustWallet(&bankdv1.CreateWalletRequest{WalletId: fmt.Sprintf("w%d", i), Kind: kindHot, Descriptor_: depositDescriptor(t, uint32(i)), GapLimit: 1})
	}
	var ids []string
	for token := ""; ; {
		page, next, err := tf.ListWallets(token, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range page {
			ids = append(ids, w.Id)
			if len(w.Branches) != 2 {
				t.Fatalf("wallet %s listed without its branches", w.Id)
			}
		}
		if next == "" {
			break
		}
		token = next
	}
	if fmt.Sprint(ids) != "[w0 w1 w2 w3 w4]" {
		t.Fatalf("listed %v", ids)
	}
	if _, err := tf.Wallet("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown wallet: %v", err)
	}
}
