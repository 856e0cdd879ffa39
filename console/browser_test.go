package console_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/chromedp/chromedp"

	"github.com/bankd/bankd/console/consoletest"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// approvalQueue is a payouts block whose only queue needs approval above 1,000,000 sat and is
// planned only when flushed, so an approved payout stays QUEUED: no chain is needed.
const approvalQueue = `
payouts {
  wallet        = "hot"
  default_queue = "vip"
  queue "vip" {
    trigger                = "manual"
    fee_sat                = 1000
    approval_threshold_sat = 1000000
  }
}
`

// consoleRig is an in-process cluster with an account, a payout awaiting approval, and a
// browser.
type consoleRig struct {
	t       *testing.T
	c       *testcluster.Cluster
	ctx     context.Context
	browser context.Context
	shots   *consoletest.Shots
	// url is the console's node (a follower, so every decision is forwarded to the leader).
	url  string
	node *testcluster.Node
}

func newConsoleRig(t *testing.T) *consoleRig {
	t.Helper()
	browser := consoletest.Browser(t)
	c := testcluster.Start(t, testcluster.Spec{Extra: approvalQueue})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := &consoleRig{t: t, c: c, ctx: ctx, browser: browser, shots: consoletest.NewShots(t)}
	r.node = c.Follower()
	r.url = r.node.URL

	r.retry("create the hot wallet", func(ctx context.Context) error {
		_, err := c.Leader().Clients(testcluster.AdminToken).Wallet.CreateWallet(ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
			WalletId: "hot", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: "wpkh(" + regtestXpub(t) + "/<0;1>/*)", GapLimit: 5}))
		if connect.CodeOf(err) == connect.CodeAlreadyExists {
			return nil // an earlier attempt whose answer was lost made it
		}
		return err
	})
	for _, a := range []*bankdv1.Account{
		{Id: "capital", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		{Id: "alice", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true},
	} {
		r.retry("create account "+a.Id, func(ctx context.Context) error {
			_, err := c.Leader().Clients(testcluster.AdminToken).Ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: a}))
			return err
		})
	}
	r.retry("fund alice", func(ctx context.Context) error {
		_, err := c.Leader().Clients(testcluster.AdminToken).Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: &bankdv1.Transfer{
			Id: "fund-alice", DebitAccountId: "capital", CreditAccountId: "alice", Amount: 5_000_000, Currency: "BTC"}}))
		return err
	})
	r.retry("request the payout", func(ctx context.Context) error {
		_, err := c.Leader().Clients(testcluster.ClientToken).Payout.RequestPayout(ctx, connect.NewRequest(&bankdv1.RequestPayoutRequest{
			Id: "whale-1", AccountId: "alice", Address: outsider(t), AmountSat: 2_000_000}))
		return err
	})
	if s := r.payoutState(); s != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL {
		t.Fatalf("payout is %v, want awaiting approval", s)
	}
	return r
}

// payoutState reads the payout through the API, as the state the console must not change
// behind an operator's back.
func (r *consoleRig) payoutState() bankdv1.PayoutState {
	r.t.Helper()
	var state bankdv1.PayoutState
	r.retry("read the payout", func(ctx context.Context) error {
		res, err := r.node.Clients(testcluster.AdminToken).Payout.GetPayout(ctx, connect.NewRequest(&bankdv1.GetPayoutRequest{Id: "whale-1"}))
		if err == nil {
			state = res.Msg.Payout.State
		}
		return err
	})
	return state
}

// Bounds of retry: a loaded two-core machine sees the odd election while a test runs.
const (
	retryAttempts = 50
	retryPause    = 100 * time.Millisecond
)

// retry runs call (idempotent: ids make writes safe to repeat) until it is not answered
// Unavailable, waiting for a leader between attempts.
func (r *consoleRig) retry(what string, call func(context.Context) error) {
	r.t.Helper()
	var err error
	for range retryAttempts {
		if err = call(r.ctx); connect.CodeOf(err) != connect.CodeUnavailable {
			break
		}
		r.c.WaitLeader()
		pause := time.NewTimer(retryPause)
		select {
		case <-pause.C:
		case <-r.ctx.Done():
			pause.Stop()
			r.t.Fatalf("%s: %v", what, r.ctx.Err())
		}
	}
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
}

// approve presses the approve button of whale-1 and returns the flash. An answer of
// Unavailable (an election in the middle) is what an operator would see and retry.
func (r *consoleRig) approve(tab context.Context) string {
	r.t.Helper()
	var flash string
	for range 5 {
		consoletest.Do(r.t, tab, "press approve",
			chromedp.Navigate(r.url+"/ui/approvals"),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-payout="whale-1"] button.approve`)),
			chromedp.Click(chromedp.CSS(`tr[data-payout="whale-1"] button.approve`)),
			chromedp.WaitVisible(chromedp.CSS("#flash")))
		flash = consoletest.Text(r.t, tab, "#flash")
		if !strings.Contains(flash, "(unavailable)") || r.payoutState() != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL {
			break
		}
		r.t.Logf("approval met an election, pressed again: %s", flash)
	}
	return flash
}

func regtestXpub(t *testing.T) string {
	t.Helper()
	seed := bytes.Repeat([]byte{9}, 32)
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

// outsider is a regtest address of a wallet the cluster does not watch.
func outsider(t *testing.T) string {
	t.Helper()
	addr, err := btcutil.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{7}, 20), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return addr.EncodeAddress()
}

// TestConsoleInABrowser walks the console as an operator would: log in, find an account, be
// refused an approval with a read token, see forged posts refused, approve with an operator
// token, follow the event feed and a leader change live.
func TestConsoleInABrowser(t *testing.T) {
	r := newConsoleRig(t)
	tab := r.browser

	t.Run("a request without a session lands on the login page", func(t *testing.T) {
		consoletest.Navigate(t, tab, r.url+"/ui/ledger?account=alice")
		consoletest.WaitFor(t, tab, consoletest.StepTimeout, "the login page", `document.querySelector("#token") !== null`)
		if loc := consoletest.Location(t, tab); !strings.HasSuffix(loc, "/ui/login?m=login") {
			t.Fatalf("at %s", loc)
		}
		r.shots.Take(t, tab, "login")
	})

	t.Run("a wrong token is refused at login", func(t *testing.T) {
		consoletest.Do(t, tab, "log in with a wrong token",
			chromedp.SendKeys(chromedp.CSS("#token"), "not-a-token"),
			chromedp.Click(chromedp.CSS("#login")),
			chromedp.WaitVisible(chromedp.CSS("#login-error")))
		if got := consoletest.Text(t, tab, "#login-error"); got != "That token is not accepted by this node." {
			t.Fatalf("login error %q", got)
		}
	})

	t.Run("pages carry the security headers", func(t *testing.T) {
		consoletest.Login(t, tab, r.url, testcluster.ReadToken)
		res := consoletest.Navigate(t, tab, r.url+"/ui/cluster")
		if res.Status != http.StatusOK {
			t.Fatalf("cluster page: %d", res.Status)
		}
		for name, want := range map[string]string{
			"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := consoletest.Header(res, name); !strings.Contains(got, want) {
				t.Errorf("%s = %q, want %q in it", name, got, want)
			}
		}
		consoletest.WaitFor(t, tab, consoletest.StepTimeout, "the live status", `document.querySelector("#cluster").getAttribute("data-updates") !== null`)
		r.shots.Take(t, tab, "cluster")
	})

	t.Run("an account is found with its balance", func(t *testing.T) {
		consoletest.Do(t, tab, "find alice",
			chromedp.Navigate(r.url+"/ui/ledger"),
			chromedp.WaitVisible(chromedp.CSS("#account")),
			chromedp.SendKeys(chromedp.CSS("#account"), "alice"),
			chromedp.Click(chromedp.CSS("#find-account")),
			chromedp.WaitVisible(chromedp.CSS("#account-card")))
		// 5,000,000 posted; 2,001,000 (amount and fee) held by the payout.
		if posted, available := consoletest.Text(t, tab, "#balance-posted"), consoletest.Text(t, tab, "#balance-available"); posted != "5,000,000" || available != "2,999,000" {
			t.Fatalf("alice: posted %q, available %q", posted, available)
		}
		r.shots.Take(t, tab, "account")
	})

	t.Run("an unknown account is not found", func(t *testing.T) {
		res := consoletest.Navigate(t, tab, r.url+"/ui/ledger?account=nobody")
		if got := consoletest.Text(t, tab, "#account-error"); res.Status != http.StatusNotFound || got != "Not found: there is no account with id “nobody”." {
			t.Fatalf("%d %q", res.Status, got)
		}
	})

	t.Run("a read token is refused the approval and nothing changes", func(t *testing.T) {
		flash := r.approve(tab)
		if !strings.Contains(flash, "Payout whale-1 was not approved. The API refused (permission_denied)") || !strings.Contains(flash, "operator scope") {
			t.Fatalf("flash %q", flash)
		}
		if s := r.payoutState(); s != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL {
			t.Fatalf("payout is %v after a refused approval", s)
		}
		r.shots.Take(t, tab, "approval-refused")
	})

	t.Run("the problems page shows the refusal of a read token", func(t *testing.T) {
		consoletest.Navigate(t, tab, r.url+"/ui/problems")
		if got := consoletest.Text(t, tab, "#problems-error"); !strings.Contains(got, "permission_denied") {
			t.Fatalf("problems page: %q", got)
		}
	})

	consoletest.Logout(t, tab)
	consoletest.Login(t, tab, r.url, testcluster.OperatorToken)

	t.Run("a post without the CSRF token is refused", func(t *testing.T) {
		status := consoletest.Eval[int](t, tab, "post without a CSRF token", `fetch("/ui/approvals/payout", {method: "POST",
			body: new URLSearchParams({id: "whale-1", decision: "approve"})}).then(function (r) { return r.status; })`)
		if status != http.StatusForbidden {
			t.Fatalf("forged same-origin post: %d", status)
		}
		if s := r.payoutState(); s != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL {
			t.Fatalf("payout is %v after a forged post", s)
		}
	})

	t.Run("a post from another site is refused", func(t *testing.T) {
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/ui/approvals/payout">
<input name="id" value="whale-1"><input name="decision" value="approve"></form>
<script>document.getElementById("f").submit();</script>`, r.url)
		}))
		defer evil.Close()
		attacker := consoletest.NewTab(t, r.browser)
		consoletest.Do(t, attacker, "open the attacker's page",
			chromedp.Navigate(evil.URL),
			chromedp.WaitVisible(chromedp.CSS("#error-heading")))
		if got := consoletest.Text(t, attacker, "#error-heading"); got != "Forbidden" {
			t.Fatalf("cross-site post answered %q", got)
		}
		r.shots.Take(t, attacker, "forged-post")
		if s := r.payoutState(); s != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL {
			t.Fatalf("payout is %v after a cross-site post", s)
		}
	})

	t.Run("the console cannot be framed", func(t *testing.T) {
		// Even its own pages may not frame it (frame-ancestors 'none', X-Frame-Options DENY): a
		// same-origin frame would show its document to the parent if it loaded.
		consoletest.Navigate(t, tab, r.url+"/ui/ledger")
		framed := consoletest.Eval[string](t, tab, "frame the approvals page", `new Promise(function (resolve) {
			var f = document.createElement("iframe");
			var check = function () {
				try { resolve(f.contentDocument && f.contentDocument.querySelector("main") ? "framed" : "blocked"); } catch (e) { resolve("blocked"); }
			};
			f.addEventListener("load", check);
			f.src = "/ui/approvals";
			document.body.appendChild(f);
		})`)
		if framed != "blocked" {
			t.Fatal("the console rendered inside a frame")
		}
	})

	t.Run("an operator token approves", func(t *testing.T) {
		if flash := r.approve(tab); flash != "Payout whale-1 approved; it is now queued." {
			t.Fatalf("flash %q", flash)
		}
		if s := r.payoutState(); s != bankdv1.PayoutState_PAYOUT_STATE_QUEUED {
			t.Fatalf("payout is %v after approval", s)
		}
		r.shots.Take(t, tab, "approved")
	})

	t.Run("the event feed shows the approval", func(t *testing.T) {
		consoletest.Navigate(t, tab, r.url+"/ui/events")
		consoletest.WaitFor(t, tab, consoletest.StepTimeout, "the approval in the feed",
			`Array.from(document.querySelectorAll("#feed li")).some(function (li) { return li.textContent.indexOf("payout whale-1 from alice, 2,000,000 sat (queued)") >= 0; })`)
		r.shots.Take(t, tab, "events")
	})

	t.Run("the cluster page follows a leader change live", func(t *testing.T) {
		consoletest.Navigate(t, tab, r.url+"/ui/cluster")
		consoletest.WaitFor(t, tab, consoletest.StepTimeout, "the live status naming a leader",
			`document.querySelector("#cluster").getAttribute("data-updates") !== null && document.querySelector("#leader").textContent !== "—"`)
		before := consoletest.Text(t, tab, "#leader")
		target := ""
		for _, n := range r.c.Nodes {
			if n.ID != before {
				target = n.ID
				break
			}
		}
		r.retry("transfer leadership to "+target, func(ctx context.Context) error {
			_, err := r.c.Leader().Clients(testcluster.AdminToken).Cluster.TransferLeadership(ctx, connect.NewRequest(&bankdv1.TransferLeadershipRequest{TargetNodeId: target}))
			return err
		})
		consoletest.WaitFor(t, tab, 30*time.Second, "another leader on the page",
			fmt.Sprintf(`(function () { var l = document.querySelector("#leader").textContent; return l !== %q && l !== "—"; })()`, before))
		if shown, leader := consoletest.Text(t, tab, "#leader"), r.c.Leader().ID; shown != leader {
			t.Fatalf("the page shows leader %s, the cluster has %s", shown, leader)
		}
		r.shots.Take(t, tab, "leader-changed")
	})
}

// TestSessionCookieIsOutOfScriptsReach checks that page script cannot read the session cookie
// and that a logged-out session opens nothing.
func TestSessionCookieIsOutOfScriptsReach(t *testing.T) {
	browser := consoletest.Browser(t)
	c := testcluster.Start(t, testcluster.Spec{})
	tab := consoletest.Incognito(t, browser)
	consoletest.Login(t, tab, c.Nodes[0].URL, testcluster.ReadToken)
	cookies := consoletest.Eval[string](t, tab, "read the cookies", `document.cookie`)
	if strings.Contains(cookies, "bankd_console") {
		t.Fatalf("script can read the session cookie: %q", cookies)
	}
	consoletest.Logout(t, tab)
	consoletest.Navigate(t, tab, c.Nodes[0].URL+"/ui/approvals")
	consoletest.WaitFor(t, tab, consoletest.StepTimeout, "the login page", `document.querySelector("#token") !== null`)
}
