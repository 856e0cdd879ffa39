package fsm

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

const (
	codeOK           = bankdv1.ResultCode_RESULT_CODE_OK
	codeInvalid      = bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT
	codeNotFound     = bankdv1.ResultCode_RESULT_CODE_NOT_FOUND
	codeInsufficient = bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS
	codeLimit        = bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED
	codeExists       = bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS
	codeOverflow     = bankdv1.ResultCode_RESULT_CODE_OVERFLOW
	codeLinked       = bankdv1.ResultCode_RESULT_CODE_LINKED_FAILED
	codeResolved     = bankdv1.ResultCode_RESULT_CODE_PENDING_RESOLVED
	codeHeld         = bankdv1.ResultCode_RESULT_CODE_LOCK_HELD
	codeStale        = bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN
)

// bank sets up the accounts most tests use: a bank asset account "reserve" that may go
// anywhere, and two customer liability accounts that must not go negative.
func bank(t *testing.T) *testFSM {
	tf := openTestFSM(t)
	tf.mustAccount("reserve", "ASSET", false)
	tf.mustAccount("alice", "LIABILITY", true)
	tf.mustAccount("bob", "LIABILITY", true)
	return tf
}

func wantCode(t *testing.T, r *bankdv1.TransferResult, code bankdv1.ResultCode, msgPart string) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("transfer %s: code %s (%s), want %s", r.Id, r.Code, r.Message, code)
	}
	if msgPart != "" && !strings.Contains(r.Message, msgPart) {
		t.Fatalf("transfer %s: message %q does not mention %q", r.Id, r.Message, msgPart)
	}
}

func TestAccountCreateIsIdempotentAndRefusesAnotherDefinition(t *testing.T) {
	tf := openTestFSM(t)
	acc := &bankdv1.Account{Id: "a1", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, Metadata: map[string]string{"user": "u1"}}
	first := tf.createAccount(acc).(*bankdv1.CreateAccountResponse)
	if first.Replayed || first.Account.CreatedIndex != 1 {
		t.Fatalf("first create: %v", first)
	}
	again := tf.createAccount(acc).(*bankdv1.CreateAccountResponse)
	if !again.Replayed || again.Account.CreatedIndex != 1 {
		t.Fatalf("retry should return the first result: %v", again)
	}
	other := &bankdv1.Account{Id: "a1", Currency: "EUR", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY}
	err, ok := tf.createAccount(other).(*Error)
	if !ok || err.Code != codeExists {
		t.Fatalf("another definition under the same id: got %v, want ALREADY_EXISTS", err)
	}
}

func TestAccountValidationNamesTheField(t *testing.T) {
	cases := []struct {
		name  string
		acc   *bankdv1.Account
		field string
	}{
		{"empty id", &bankdv1.Account{Currency: "BTC", Kind: 1}, "account.id"},
		{"id with space", &bankdv1.Account{Id: "a b", Currency: "BTC", Kind: 1}, "account.id"},
		{"id too long", &bankdv1.Account{Id: strings.Repeat("x", 65), Currency: "BTC", Kind: 1}, "account.id"},
		{"lower-case currency", &bankdv1.Account{Id: "a", Currency: "btc", Kind: 1}, "account.currency"},
		{"no kind", &bankdv1.Account{Id: "a", Currency: "BTC"}, "account.kind"},
		{"unknown kind", &bankdv1.Account{Id: "a", Currency: "BTC", Kind: 99}, "account.kind"},
		{"negative limit", &bankdv1.Account{Id: "a", Currency: "BTC", Kind: 1, DailyDebitLimit: -1}, "account.daily_debit_limit"},
		{"balance set by client", &bankdv1.Account{Id: "a", Currency: "BTC", Kind: 1, Balance: &bankdv1.Balance{}}, "account.balance"},
		{"too much metadata", &bankdv1.Account{Id: "a", Currency: "BTC", Kind: 1, Metadata: bigMetadata(17)}, "account.metadata"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateAccount(c.acc)
			if err == nil || err.Code != codeInvalid || !strings.HasPrefix(err.Message, c.field) {
				t.Fatalf("got %v, want INVALID_ARGUMENT on %s", err, c.field)
			}
		})
	}
}

func bigMetadata(n int) map[string]string {
	md := map[string]string{}
	for i := 0; i < n; i++ {
		md[strings.Repeat("k", i+1)] = "v"
	}
	return md
}

func TestTransferMovesMoneyAndKeepsBothSidesInBalance(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("t1", "reserve", "alice", 1000)), codeOK, "")
	wantCode(t, tf.transfer(xfer("t2", "alice", "bob", 300)), codeOK, "")

	if b := tf.balance("alice"); b.Posted != 700 || b.Available != 700 || b.DebitsPosted != 300 || b.CreditsPosted != 1000 {
		t.Fatalf("alice: %v", b)
	}
	if b := tf.balance("bob"); b.Posted != 300 {
		t.Fatalf("bob: %v", b)
	}
	if b := tf.balance("reserve"); b.Posted != 1000 {
		t.Fatalf("reserve (asset, debit-normal): %v", b)
	}
}

func TestTransferRefusals(t *testing.T) {
	tf := bank(t)
	tf.mustAccount("eur", "LIABILITY", false)
	tf.createAccount(&bankdv1.Account{Id: "euro", Currency: "EUR", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY})
	wantCode(t, tf.transfer(xfer("seed", "reserve", "alice", 100)), codeOK, "")

	cases := []struct {
		name string
		t    *bankdv1.Transfer
		code bankdv1.ResultCode
		msg  string
	}{
		{"more than the balance", xfer("x1", "alice", "bob", 101), codeInsufficient, "available balance 100"},
		{"unknown debit account", xfer("x2", "nobody", "bob", 1), codeNotFound, "transfer.debit_account_id"},
		{"unknown credit account", xfer("x3", "alice", "nobody", 1), codeNotFound, "transfer.credit_account_id"},
		{"wrong currency", xfer("x4", "alice", "euro", 1), codeInvalid, "transfer.currency"},
		{"zero amount", xfer("x5", "alice", "bob", 0), codeInvalid, "transfer.amount"},
		{"negative amount", xfer("x6", "alice", "bob", -5), codeInvalid, "transfer.amount"},
		{"same account twice", xfer("x7", "alice", "alice", 1), codeInvalid, "transfer.credit_account_id"},
		{"bad id", xfer("x 8", "alice", "bob", 1), codeInvalid, "transfer.id"},
		{"cluster field set", &bankdv1.Transfer{Id: "x9", DebitAccountId: "alice", CreditAccountId: "bob", Amount: 1, Currency: "BTC", Index: 7}, codeInvalid, "transfer.index"},
		{"timeout on a plain transfer", &bankdv1.Transfer{Id: "x10", DebitAccountId: "alice", CreditAccountId: "bob", Amount: 1, Currency: "BTC", TimeoutMs: 5}, codeInvalid, "transfer.timeout_ms"},
		{"two modes", &bankdv1.Transfer{Id: "x11", Pending: true, PostPending: true, PendingId: "p"}, codeInvalid, "at most one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, before := tf.hashWithoutMeta()
			wantCode(t, tf.transfer(c.t), c.code, c.msg)
			if _, after := tf.hashWithoutMeta(); after != before {
				t.Fatalf("a refused transfer changed the ledger")
			}
		})
	}
}

// hashWithoutMeta hashes accounts and transfers only: refusals do change the applied index and
// append rejection events, but must not touch money.
func (tf *testFSM) hashWithoutMeta() (int, [32]byte) {
	tf.t.Helper()
	accs, _, err := tf.ListAccounts("", MaxPageSize)
	if err != nil {
		tf.t.Fatal(err)
	}
	var all []byte
	for _, a := range accs {
		b, _ := marshal.Marshal(a)
		all = append(all, b...)
	}
	return len(accs), sha256Sum(all)
}

func TestTransferRetryReturnsFirstResultAndReuseIsRefused(t *testing.T) {
	tf := bank(t)
	first := tf.transfer(xfer("t1", "reserve", "alice", 50))
	wantCode(t, first, codeOK, "")
	retry := tf.transfer(xfer("t1", "reserve", "alice", 50))
	wantCode(t, retry, codeOK, "")
	if !retry.Replayed || retry.Transfer.Index != first.Transfer.Index {
		t.Fatalf("retry: %v, want the first result replayed", retry)
	}
	if b := tf.balance("alice"); b.Posted != 50 {
		t.Fatalf("retry applied twice: alice %v", b)
	}
	wantCode(t, tf.transfer(xfer("t1", "reserve", "alice", 51)), codeExists, "different body")
	// The same id twice in one request applies once.
	res := tf.transfers(nil, xfer("t2", "reserve", "bob", 5), xfer("t2", "reserve", "bob", 5))
	if res[0].Replayed || !res[1].Replayed {
		t.Fatalf("duplicate inside a request: %v", res)
	}
	if b := tf.balance("bob"); b.Posted != 5 {
		t.Fatalf("bob: %v", b)
	}
}

func TestLinkedChainAppliesAllOrNothing(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("seed", "reserve", "alice", 100)), codeOK, "")

	linked := func(tr *bankdv1.Transfer) *bankdv1.Transfer { tr.Linked = true; return tr }
	res := tf.transfers(nil,
		xfer("solo", "reserve", "bob", 1),          // its own chain: applies
		linked(xfer("c1", "alice", "bob", 60)),     // chain c1..c3
		linked(xfer("c2", "reserve", "alice", 10)), //
		xfer("c3", "alice", "bob", 60),             // fails: 100-60+10 < 60
		xfer("after", "reserve", "bob", 2),         // its own chain: applies
	)
	wantCode(t, res[0], codeOK, "")
	wantCode(t, res[1], codeLinked, `"c3"`)
	wantCode(t, res[2], codeLinked, "")
	wantCode(t, res[3], codeInsufficient, "")
	wantCode(t, res[4], codeOK, "")
	if b := tf.balance("alice"); b.Posted != 100 {
		t.Fatalf("failed chain left a trace on alice: %v", b)
	}
	if b := tf.balance("bob"); b.Posted != 3 {
		t.Fatalf("bob: %v", b)
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		if _, err := tf.Transfer(id); err == nil {
			t.Fatalf("transfer %s of a failed chain was recorded", id)
		}
	}

	open := tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{
		Transfers: []*bankdv1.Transfer{linked(xfer("o1", "reserve", "bob", 1))},
	}, nil)
	if err, ok := open.(*Error); !ok || err.Code != codeInvalid {
		t.Fatalf("request ending in an open chain: got %v", open)
	}
}

func TestTwoPhaseTransfers(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("seed", "reserve", "alice", 1000)), codeOK, "")
	pending := func(id string, amount, timeoutMs int64) *bankdv1.Transfer {
		tr := xfer(id, "alice", "bob", amount)
		tr.Pending, tr.TimeoutMs = true, timeoutMs
		return tr
	}
	post := func(id, pid string, amount int64) *bankdv1.Transfer {
		return &bankdv1.Transfer{Id: id, PostPending: true, PendingId: pid, Amount: amount}
	}
	void := func(id, pid string) *bankdv1.Transfer {
		return &bankdv1.Transfer{Id: id, VoidPending: true, PendingId: pid}
	}

	wantCode(t, tf.transfer(pending("p1", 600, 0)), codeOK, "")
	if b := tf.balance("alice"); b.Posted != 1000 || b.Available != 400 || b.DebitsPending != 600 {
		t.Fatalf("reserved: alice %v", b)
	}
	wantCode(t, tf.transfer(pending("p2", 500, 0)), codeInsufficient, "available balance 400")

	// Partial post: 250 of 600 moves, the other 350 is released.
	wantCode(t, tf.transfer(post("p1-post", "p1", 250)), codeOK, "")
	if b := tf.balance("alice"); b.Posted != 750 || b.Available != 750 || b.DebitsPending != 0 {
		t.Fatalf("after partial post: alice %v", b)
	}
	if b := tf.balance("bob"); b.Posted != 250 || b.CreditsPending != 0 {
		t.Fatalf("after partial post: bob %v", b)
	}
	p1, _ := tf.Transfer("p1")
	if p1.State != bankdv1.TransferState_TRANSFER_STATE_PENDING_POSTED || p1.PostedAmount != 250 {
		t.Fatalf("p1 after post: %v", p1)
	}
	wantCode(t, tf.transfer(post("p1-again", "p1", 0)), codeResolved, "already posted")
	wantCode(t, tf.transfer(void("p1-void", "p1")), codeResolved, "already posted")

	wantCode(t, tf.transfer(pending("p3", 100, 0)), codeOK, "")
	wantCode(t, tf.transfer(post("p3-over", "p3", 101)), codeInvalid, "exceeds the pending amount")
	wantCode(t, tf.transfer(void("p3-void", "p3")), codeOK, "")
	if b := tf.balance("alice"); b.Available != 750 {
		t.Fatalf("after void: alice %v", b)
	}
	wantCode(t, tf.transfer(post("p404", "missing", 0)), codeNotFound, "transfer.pending_id")
	wantCode(t, tf.transfer(post("p-plain", "seed", 0)), codeInvalid, "not a pending transfer")

	// A timeout runs in cluster time: the pending transfer expires once a later command's
	// stamp passes it, and can no longer be posted.
	wantCode(t, tf.transfer(pending("p4", 100, 5_000)), codeOK, "")
	if at, ok := tf.NextExpiryUnixMs(); !ok || at != tf.nowMs+5_000 {
		t.Fatalf("next expiry: %d %v", at, ok)
	}
	tf.advance(4_999)
	tf.do(bankdv1.CommandType_COMMAND_TYPE_TICK, nil, nil)
	if p4, _ := tf.Transfer("p4"); p4.State != bankdv1.TransferState_TRANSFER_STATE_PENDING {
		t.Fatalf("p4 expired early: %v", p4)
	}
	tf.advance(1)
	tf.do(bankdv1.CommandType_COMMAND_TYPE_TICK, nil, nil)
	if p4, _ := tf.Transfer("p4"); p4.State != bankdv1.TransferState_TRANSFER_STATE_PENDING_EXPIRED {
		t.Fatalf("p4 should have expired: %v", p4)
	}
	if _, ok := tf.NextExpiryUnixMs(); ok {
		t.Fatalf("expiry index not emptied")
	}
	if b := tf.balance("alice"); b.Available != 750 || b.DebitsPending != 0 {
		t.Fatalf("after expiry: alice %v", b)
	}
	wantCode(t, tf.transfer(post("p4-post", "p4", 0)), codeResolved, "already expired")
}

func TestClusterTimeNeverRunsBackwards(t *testing.T) {
	tf := bank(t)
	start := tf.NowUnixMs()
	tf.advance(-60_000) // a new leader whose clock is a minute behind
	tf.do(bankdv1.CommandType_COMMAND_TYPE_TICK, nil, nil)
	if tf.NowUnixMs() != start {
		t.Fatalf("cluster time went from %d to %d", start, tf.NowUnixMs())
	}
}

func TestBalancesNeverOverflow(t *testing.T) {
	tf := bank(t)
	wantCode(t, tf.transfer(xfer("big", "reserve", "bob", math.MaxInt64)), codeOK, "")
	wantCode(t, tf.transfer(xfer("one-more", "reserve", "bob", 1)), codeOverflow, `account "reserve"`)
	pending := xfer("p", "alice", "reserve", 1)
	pending.Pending = true
	tf.mustAccount("free", "LIABILITY", false)
	wantCode(t, tf.transfer(xfer("f1", "free", "alice", 1)), codeOK, "")
	// reserve has MaxInt64 debits posted; a pending credit is fine (different side) but a
	// pending debit on top would make debits exceed int64.
	wantCode(t, tf.transfer(pending), codeOK, "")
	p2 := xfer("p2", "reserve", "free", 1)
	p2.Pending = true
	wantCode(t, tf.transfer(p2), codeOverflow, "debits would exceed")
}

func TestDailyDebitLimit(t *testing.T) {
	tf := bank(t)
	tf.createAccount(&bankdv1.Account{Id: "capped", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, DailyDebitLimit: 100})
	wantCode(t, tf.transfer(xfer("fund", "reserve", "capped", 1000)), codeOK, "")
	wantCode(t, tf.transfer(xfer("w1", "capped", "bob", 60)), codeOK, "")
	wantCode(t, tf.transfer(xfer("w2", "capped", "bob", 41)), codeLimit, "60 used today")
	wantCode(t, tf.transfer(xfer("w3", "capped", "bob", 40)), codeOK, "")
	tf.advance(msPerDay)
	wantCode(t, tf.transfer(xfer("w4", "capped", "bob", 100)), codeOK, "")
}

func TestLocksAndFencing(t *testing.T) {
	tf := bank(t)
	acquire := func(holder string, ttl int64) any {
		return tf.do(bankdv1.CommandType_COMMAND_TYPE_ACQUIRE_LOCK, &bankdv1.AcquireLockRequest{Name: "acct/alice", Holder: holder, TtlMs: ttl}, nil)
	}
	first, ok := acquire("w1", 1_000).(*bankdv1.AcquireLockResponse)
	if !ok {
		t.Fatalf("acquire: %v", first)
	}
	token := first.Lock.Token
	if token != uint64(len(tf.log)) {
		t.Fatalf("token %d is not the Raft index of the grant (%d)", token, len(tf.log))
	}
	if err, ok := acquire("w2", 1_000).(*Error); !ok || err.Code != codeHeld {
		t.Fatalf("second holder: got %v, want LOCK_HELD", err)
	}
	fence := &bankdv1.Fence{LockName: "acct/alice", Token: token}
	wantCode(t, tf.transfers(fence, xfer("fenced-1", "reserve", "alice", 1))[0], codeOK, "")

	// The lease runs out in cluster time; another holder gets a larger token, and the old
	// holder's fenced write is refused as a whole.
	tf.advance(1_000)
	second, ok := acquire("w2", 1_000).(*bankdv1.AcquireLockResponse)
	if !ok || second.Lock.Token <= token {
		t.Fatalf("acquire after expiry: %v", second)
	}
	res := tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{xfer("fenced-2", "reserve", "alice", 1)}}, fence)
	if err, ok := res.(*Error); !ok || err.Code != codeStale {
		t.Fatalf("stale fence: got %v, want STALE_TOKEN", res)
	}
	if _, err := tf.Transfer("fenced-2"); err == nil {
		t.Fatalf("write with a stale token was applied")
	}
	renew := tf.do(bankdv1.CommandType_COMMAND_TYPE_RENEW_LOCK, &bankdv1.RenewLockRequest{Name: "acct/alice", Holder: "w1", Token: token, TtlMs: 1_000}, nil)
	if err, ok := renew.(*Error); !ok || err.Code != codeStale {
		t.Fatalf("renew by the old holder: got %v", renew)
	}
	release := func(holder string, tok uint64) any {
		return tf.do(bankdv1.CommandType_COMMAND_TYPE_RELEASE_LOCK, &bankdv1.ReleaseLockRequest{Name: "acct/alice", Holder: holder, Token: tok}, nil)
	}
	if err, ok := release("w1", token).(*Error); !ok || err.Code != codeStale {
		t.Fatalf("release by the old holder must not free the new grant")
	}
	if _, ok := release("w2", second.Lock.Token).(*bankdv1.ReleaseLockResponse); !ok {
		t.Fatalf("release by the holder failed")
	}
	if _, ok := release("w2", second.Lock.Token).(*bankdv1.ReleaseLockResponse); !ok {
		t.Fatalf("a retried release should succeed")
	}
	if l, _ := tf.Lock("acct/alice"); l != nil {
		t.Fatalf("lock still held after release: %v", l)
	}
}

func TestEventsAreKeyedByIndexInCommitOrder(t *testing.T) {
	tf := bank(t)
	tf.transfer(xfer("t1", "reserve", "alice", 5))
	tf.transfer(xfer("t2", "alice", "bob", 50)) // refused: still an event
	evs, err := tf.Events(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("got %d events, want 5 (3 accounts, 1 transfer, 1 refusal)", len(evs))
	}
	for i, e := range evs {
		if e.Index != uint64(i+1) {
			t.Fatalf("event %d has index %d", i, e.Index)
		}
	}
	if evs[4].Items[0].GetTransferRejected().GetCode() != codeInsufficient {
		t.Fatalf("last event: %v", evs[4])
	}
	tail, _ := tf.Events(4, 100)
	if len(tail) != 2 || tail[0].Index != 4 {
		t.Fatalf("resume from 4: %v", tail)
	}
}

func TestEventPagesAreBoundedInBytes(t *testing.T) {
	tf := bank(t)
	// Each command carries a batch with the most metadata a transfer may hold, so its event
	// is large; a page must stop near MaxEventPageBytes rather than at the count.
	md := map[string]string{}
	for i := range MaxMetadataEntries {
		md[fmt.Sprintf("key-%02d", i)] = strings.Repeat("v", MaxMetadataValueLen)
	}
	const commands, perCommand = 12, 40
	for c := range commands {
		var ts []*bankdv1.Transfer
		for i := range perCommand {
			tr := xfer(fmt.Sprintf("big-%d-%d", c, i), "reserve", "alice", 1)
			tr.Metadata = md
			ts = append(ts, tr)
		}
		tf.transfers(nil, ts...)
	}
	first, err := tf.Events(0, MaxPageSize)
	if err != nil {
		t.Fatal(err)
	}
	var seen []uint64
	for next := uint64(0); ; {
		page, err := tf.Events(next, MaxPageSize)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		bytes := 0
		for _, e := range page {
			bytes += proto.Size(e)
			seen = append(seen, e.Index)
		}
		if len(page) > 1 && bytes-proto.Size(page[len(page)-1]) >= MaxEventPageBytes {
			t.Fatalf("a page of %d events holds %d bytes: it went on past MaxEventPageBytes", len(page), bytes)
		}
		next = page[len(page)-1].Index + 1
	}
	if len(seen) != 3+commands {
		t.Fatalf("paging saw %d events, want %d (3 accounts and %d batches)", len(seen), 3+commands, commands)
	}
	if len(first) >= len(seen) {
		t.Fatalf("the first page held all %d events: the byte bound never applied", len(seen))
	}
}

func TestHistoryPagination(t *testing.T) {
	tf := bank(t)
	for i := 0; i < 25; i++ {
		wantCode(t, tf.transfer(xfer("h"+string(rune('a'+i)), "reserve", "alice", 1)), codeOK, "")
	}
	var all []*bankdv1.HistoryEntry
	token := ""
	for pages := 0; pages < 10; pages++ {
		page, next, err := tf.AccountHistory("alice", token, 10)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		token = next
	}
	if len(all) != 25 {
		t.Fatalf("got %d entries over pages, want 25", len(all))
	}
	for i, e := range all {
		if e.BalanceAfter.Posted != int64(i+1) {
			t.Fatalf("entry %d: balance after %d", i, e.BalanceAfter.Posted)
		}
	}
	if _, _, err := tf.AccountHistory("alice", "zz", 10); err == nil {
		t.Fatalf("malformed page token accepted")
	}
}
