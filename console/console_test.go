package console

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// harness is a console in front of the fake API, driven without a network, with a clock the
// test moves.
type harness struct {
	t   *testing.T
	api *fakeAPI
	c   *Console

	mu  sync.Mutex
	now time.Time
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, api: newFakeAPI(), now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	opts.API = h.api.handler()
	opts.NodeID = "n2"
	opts.Now = h.clock
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h.c = New(opts)
	return h
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
}

// call is one browser request: a form (for POST), the session cookie and extra headers.
type call struct {
	method, path string
	form         url.Values
	cookie       *http.Cookie
	header       map[string]string
	tls          bool
}

const host = "console.test"

func (h *harness) do(c call) *httptest.ResponseRecorder {
	h.t.Helper()
	scheme := "http"
	if c.tls {
		scheme = "https"
	}
	var body io.Reader
	if c.form != nil {
		body = strings.NewReader(c.form.Encode())
	}
	r := httptest.NewRequest(c.method, scheme+"://"+host+c.path, body)
	if c.form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.cookie != nil {
		r.AddCookie(c.cookie)
	}
	for k, v := range c.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.c.ServeHTTP(w, r)
	return w
}

// login logs in with token and returns the session cookie and the session's CSRF token.
func (h *harness) login(token string) (*http.Cookie, string) {
	h.t.Helper()
	w := h.do(call{method: "POST", path: "/ui/login", form: url.Values{"token": {token}}, header: map[string]string{"Origin": "http://" + host}})
	if w.Code != http.StatusSeeOther {
		h.t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	cookie := sessionCookieOf(h.t, w)
	page := h.do(call{method: "GET", path: "/ui/approvals", cookie: cookie})
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page.Body.String())
	if m == nil {
		h.t.Fatalf("no CSRF token on the approvals page: %s", page.Body)
	}
	return cookie, m[1]
}

func sessionCookieOf(t *testing.T, w *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range w.Result().Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", cookieName, w.Header()["Set-Cookie"])
	return nil
}

func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	h := newHarness(t, Options{})
	cookie, _ := h.login(readToken)
	for _, c := range []call{
		{method: "GET", path: "/ui/login"},
		{method: "GET", path: "/ui/cluster", cookie: cookie},
		{method: "GET", path: "/ui/cluster"},
		{method: "GET", path: "/ui/static/console.js"},
		{method: "GET", path: "/ui/no-such-page", cookie: cookie},
		{method: "POST", path: "/ui/approvals/payout", form: url.Values{"id": {"p1"}}, cookie: cookie},
	} {
		w := h.do(c)
		for name, want := range securityHeaders {
			if got := w.Header().Get(name); got != want {
				t.Errorf("%s %s: %s = %q, want %q", c.method, c.path, name, got, want)
			}
		}
	}
	csp := securityHeaders["Content-Security-Policy"]
	for _, part := range []string{"default-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, part) {
			t.Errorf("CSP %q lacks %q", csp, part)
		}
	}
}

func TestLogin(t *testing.T) {
	origin := map[string]string{"Origin": "http://" + host}
	for _, tc := range []struct {
		name   string
		token  string
		status int
		says   string
	}{
		{"an empty token is asked for again", "  ", http.StatusBadRequest, "Enter an API token."},
		{"a wrong token is refused", "not-a-token", http.StatusUnauthorized, "That token is not accepted by this node."},
		{"an overlong token is refused unread", strings.Repeat("x", maxTokenLen+1), http.StatusBadRequest, "longer than any the API accepts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			w := h.do(call{method: "POST", path: "/ui/login", form: url.Values{"token": {tc.token}}, header: origin})
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.says) {
				t.Fatalf("%d %s, want %d saying %q", w.Code, w.Body, tc.status, tc.says)
			}
			if len(w.Result().Cookies()) != 0 {
				t.Fatalf("a failed login set cookies: %v", w.Result().Cookies())
			}
			if h.c.sessions.count() != 0 {
				t.Fatal("a failed login made a session")
			}
		})
	}

	t.Run("a good token starts a session kept on the server", func(t *testing.T) {
		h := newHarness(t, Options{})
		w := h.do(call{method: "POST", path: "/ui/login", form: url.Values{"token": {operatorToken}}, header: map[string]string{"Origin": "https://" + host}, tls: true})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/cluster" {
			t.Fatalf("%d to %q", w.Code, w.Header().Get("Location"))
		}
		c := sessionCookieOf(t, w)
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/ui" {
			t.Fatalf("cookie %+v: want HttpOnly, Secure on TLS, SameSite=Strict, Path=/ui", c)
		}
		if strings.Contains(c.Value, operatorToken) || len(c.Value) < 40 {
			t.Fatalf("cookie value %q is not a random session id", c.Value)
		}
		// No page of the session shows the token.
		for _, path := range []string{"/ui/cluster", "/ui/ledger?account=alice", "/ui/approvals", "/ui/problems", "/ui/events"} {
			page := h.do(call{method: "GET", path: path, cookie: c, tls: true})
			if page.Code != http.StatusOK || strings.Contains(page.Body.String(), operatorToken) {
				t.Fatalf("%s: %d, token shown: %t", path, page.Code, strings.Contains(page.Body.String(), operatorToken))
			}
		}
	})

	t.Run("plaintext sessions are not marked Secure", func(t *testing.T) {
		h := newHarness(t, Options{})
		w := h.do(call{method: "POST", path: "/ui/login", form: url.Values{"token": {readToken}}, header: origin})
		if c := sessionCookieOf(t, w); c.Secure {
			t.Fatal("Secure cookie over plain HTTP: the browser would never send it back")
		}
	})

	t.Run("a login posted from another origin is refused", func(t *testing.T) {
		h := newHarness(t, Options{})
		w := h.do(call{method: "POST", path: "/ui/login", form: url.Values{"token": {readToken}}, header: map[string]string{"Origin": "https://evil.example"}})
		if w.Code != http.StatusForbidden || h.c.sessions.count() != 0 {
			t.Fatalf("%d with %d sessions", w.Code, h.c.sessions.count())
		}
	})
}

func TestRequestsWithoutASessionGoToLogin(t *testing.T) {
	h := newHarness(t, Options{})
	bogus := &http.Cookie{Name: cookieName, Value: "forged-session-id"}
	for _, c := range []call{
		{method: "GET", path: "/ui/cluster"},
		{method: "GET", path: "/ui/ledger?account=alice"},
		{method: "GET", path: "/ui/approvals", cookie: bogus},
		{method: "GET", path: "/ui/problems", cookie: &http.Cookie{Name: cookieName, Value: strings.Repeat("a", 5000)}},
	} {
		w := h.do(c)
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/login?m=login" {
			t.Errorf("%s: %d to %q, want a redirect to the login page", c.path, w.Code, w.Header().Get("Location"))
		}
	}
	if w := h.do(call{method: "GET", path: "/ui/live/cluster"}); w.Code != http.StatusUnauthorized {
		t.Errorf("live stream without a session: %d", w.Code)
	}
}

// TestForgedPostsChangeNothing tries every way an attacker might post a decision: each gets a
// 403 page and the API is never asked to approve.
func TestForgedPostsChangeNothing(t *testing.T) {
	h := newHarness(t, Options{})
	cookie, csrf := h.login(operatorToken)
	otherCookie, otherCSRF := h.login(operatorToken)
	_ = otherCookie
	same := map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"}
	form := func(csrf string) url.Values {
		return url.Values{"id": {"p1"}, "decision": {"approve"}, "csrf": {csrf}}
	}
	for _, tc := range []struct {
		name string
		c    call
	}{
		{"no CSRF token", call{form: url.Values{"id": {"p1"}, "decision": {"approve"}}, cookie: cookie, header: same}},
		{"a wrong CSRF token", call{form: form("AAAA" + csrf[4:]), cookie: cookie, header: same}},
		{"another session's CSRF token", call{form: form(otherCSRF), cookie: cookie, header: same}},
		{"a CSRF token in the query only", call{path: "/ui/approvals/payout?csrf=" + csrf, form: url.Values{"id": {"p1"}, "decision": {"approve"}}, cookie: cookie, header: same}},
		{"another origin", call{form: form(csrf), cookie: cookie, header: map[string]string{"Origin": "https://evil.example"}}},
		{"the null origin", call{form: form(csrf), cookie: cookie, header: map[string]string{"Origin": "null"}}},
		{"the null origin from another site", call{form: form(csrf), cookie: cookie, header: map[string]string{"Origin": "null", "Sec-Fetch-Site": "cross-site"}}},
		{"a cross-site fetch", call{form: form(csrf), cookie: cookie, header: map[string]string{"Sec-Fetch-Site": "cross-site"}}},
		{"a same-site but cross-origin fetch", call{form: form(csrf), cookie: cookie, header: map[string]string{"Sec-Fetch-Site": "same-site"}}},
		{"no session", call{form: form(csrf), header: same}},
		{"a forged session id", call{form: form(csrf), cookie: &http.Cookie{Name: cookieName, Value: csrf}, header: same}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			c.method = "POST"
			if c.path == "" {
				c.path = "/ui/approvals/payout"
			}
			w := h.do(c)
			if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "changed nothing") {
				t.Fatalf("%d %s, want a 403 page", w.Code, w.Body)
			}
			if got := h.api.approvals(); len(got) != 0 {
				t.Fatalf("the API was asked to approve %v", got)
			}
		})
	}

	t.Run("an oversized body", func(t *testing.T) {
		big := form(csrf)
		big.Set("reason", strings.Repeat("x", 2*maxFormBytes))
		w := h.do(call{method: "POST", path: "/ui/approvals/payout", form: big, cookie: cookie, header: same})
		if w.Code != http.StatusBadRequest {
			t.Fatalf("%d, want 400", w.Code)
		}
		if got := h.api.approvals(); len(got) != 0 {
			t.Fatalf("the API was asked to approve %v", got)
		}
	})

	t.Run("a GET never decides", func(t *testing.T) {
		w := h.do(call{method: "GET", path: "/ui/approvals/payout?id=p1&decision=approve&csrf=" + csrf, cookie: cookie})
		if w.Code == http.StatusSeeOther || len(h.api.approvals()) != 0 {
			t.Fatalf("GET decided: %d, approvals %v", w.Code, h.api.approvals())
		}
	})
	t.Run("the console's own form under no-referrer passes", func(t *testing.T) {
		// Chromium sends Origin: null with Sec-Fetch-Site: same-origin for the console's forms.
		w := h.do(call{method: "POST", path: "/ui/approvals/payout", form: form(csrf), cookie: cookie,
			header: map[string]string{"Origin": "null", "Sec-Fetch-Site": "same-origin"}})
		if w.Code != http.StatusSeeOther || len(h.api.approvals()) != 1 {
			t.Fatalf("%d, approvals %v", w.Code, h.api.approvals())
		}
	})
}

func TestDecisionsGoThroughTheAPIsScopes(t *testing.T) {
	same := map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"}
	approve := func(csrf string) url.Values {
		return url.Values{"id": {"p1"}, "decision": {"approve"}, "csrf": {csrf}}
	}

	t.Run("a read token is refused and the console says why", func(t *testing.T) {
		h := newHarness(t, Options{})
		cookie, csrf := h.login(readToken)
		w := h.do(call{method: "POST", path: "/ui/approvals/payout", form: approve(csrf), cookie: cookie, header: same})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/approvals" {
			t.Fatalf("%d to %q", w.Code, w.Header().Get("Location"))
		}
		if got := h.api.approvals(); len(got) != 0 {
			t.Fatalf("approved %v with a read token", got)
		}
		page := h.do(call{method: "GET", path: "/ui/approvals", cookie: cookie}).Body.String()
		if !strings.Contains(page, "Payout p1 was not approved. The API refused (permission_denied)") {
			t.Fatalf("the refusal is not shown: %s", page)
		}
		// The flash is shown once.
		if again := h.do(call{method: "GET", path: "/ui/approvals", cookie: cookie}).Body.String(); strings.Contains(again, "was not approved") {
			t.Fatal("the flash was shown twice")
		}
	})

	t.Run("an operator token approves", func(t *testing.T) {
		h := newHarness(t, Options{})
		cookie, csrf := h.login(operatorToken)
		w := h.do(call{method: "POST", path: "/ui/approvals/payout", form: approve(csrf), cookie: cookie, header: same})
		if w.Code != http.StatusSeeOther {
			t.Fatalf("%d", w.Code)
		}
		if got := h.api.approvals(); len(got) != 1 || got[0] != "p1" {
			t.Fatalf("approvals %v", got)
		}
		page := h.do(call{method: "GET", path: "/ui/approvals", cookie: cookie}).Body.String()
		if !strings.Contains(page, "Payout p1 approved; it is now queued.") || !strings.Contains(page, "No payout awaits approval.") {
			t.Fatalf("page after approval: %s", page)
		}
	})

	t.Run("a malformed decision is not sent", func(t *testing.T) {
		h := newHarness(t, Options{})
		cookie, csrf := h.login(operatorToken)
		form := url.Values{"id": {"p1"}, "decision": {"maybe"}, "csrf": {csrf}}
		h.do(call{method: "POST", path: "/ui/approvals/payout", form: form, cookie: cookie, header: same})
		if len(h.api.approvals()) != 0 {
			t.Fatal("a decision that is neither approve nor reject reached the API")
		}
	})
}

func TestSessionsEnd(t *testing.T) {
	t.Run("after the idle timeout", func(t *testing.T) {
		h := newHarness(t, Options{SessionIdle: time.Minute, SessionMax: time.Hour})
		cookie, _ := h.login(readToken)
		h.advance(59 * time.Second)
		if w := h.do(call{method: "GET", path: "/ui/cluster", cookie: cookie}); w.Code != http.StatusOK {
			t.Fatalf("a session used within its idle timeout: %d", w.Code)
		}
		h.advance(time.Minute)
		if w := h.do(call{method: "GET", path: "/ui/cluster", cookie: cookie}); w.Code != http.StatusSeeOther {
			t.Fatalf("an idle session still works: %d", w.Code)
		}
	})

	t.Run("after the maximum lifetime, however busy", func(t *testing.T) {
		h := newHarness(t, Options{SessionIdle: time.Minute, SessionMax: 3 * time.Minute})
		cookie, _ := h.login(readToken)
		for i := 0; i < 3; i++ {
			h.advance(50 * time.Second)
			if w := h.do(call{method: "GET", path: "/ui/cluster", cookie: cookie}); w.Code != http.StatusOK {
				t.Fatalf("use %d: %d", i, w.Code)
			}
		}
		h.advance(50 * time.Second)
		if w := h.do(call{method: "GET", path: "/ui/cluster", cookie: cookie}); w.Code != http.StatusSeeOther {
			t.Fatalf("a session past its maximum lifetime still works: %d", w.Code)
		}
	})

	t.Run("at logout", func(t *testing.T) {
		h := newHarness(t, Options{})
		cookie, csrf := h.login(readToken)
		w := h.do(call{method: "POST", path: "/ui/logout", form: url.Values{"csrf": {csrf}}, cookie: cookie, header: map[string]string{"Origin": "http://" + host}})
		if w.Code != http.StatusSeeOther || sessionCookieOf(t, w).MaxAge >= 0 {
			t.Fatalf("logout: %d, cookie not deleted", w.Code)
		}
		if w := h.do(call{method: "GET", path: "/ui/cluster", cookie: cookie}); w.Code != http.StatusSeeOther {
			t.Fatalf("the old cookie still works after logout: %d", w.Code)
		}
	})

	t.Run("when the API stops accepting the token", func(t *testing.T) {
		h := newHarness(t, Options{})
		cookie, _ := h.login(readToken)
		h.api.revoke(readToken)
		w := h.do(call{method: "GET", path: "/ui/cluster", cookie: cookie})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/ui/login?m=refused" {
			t.Fatalf("%d to %q", w.Code, w.Header().Get("Location"))
		}
		if h.c.sessions.count() != 0 {
			t.Fatal("the session of a refused token lives on")
		}
		login := h.do(call{method: "GET", path: "/ui/login?m=refused"}).Body.String()
		if !strings.Contains(login, loginMessages["refused"]) {
			t.Fatalf("login page: %s", login)
		}
	})

	t.Run("never beyond the session limit", func(t *testing.T) {
		h := newHarness(t, Options{MaxSessions: 2})
		h.login(readToken)
		h.login(readToken)
		w := h.do(call{method: "POST", path: "/ui/login", form: url.Values{"token": {readToken}}})
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("third session: %d", w.Code)
		}
	})
}

func TestLedgerPages(t *testing.T) {
	h := newHarness(t, Options{})
	cookie, _ := h.login(readToken)
	w := h.do(call{method: "GET", path: "/ui/ledger?account=alice", cookie: cookie})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<dd id="balance-posted">1,234,567</dd>`) {
		t.Fatalf("alice: %d %s", w.Code, w.Body)
	}
	w = h.do(call{method: "GET", path: "/ui/ledger?account=%3Cb%3Ebob", cookie: cookie})
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "Not found: there is no account with id “&lt;b&gt;bob”.") {
		t.Fatalf("unknown account: %d %s", w.Code, w.Body)
	}
	w = h.do(call{method: "GET", path: "/ui/ledger?account=" + strings.Repeat("a", maxIDLen+1), cookie: cookie})
	if w.Code != http.StatusBadRequest {
		t.Fatalf("overlong id: %d", w.Code)
	}
	w = h.do(call{method: "GET", path: "/ui/problems", cookie: cookie})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "The API refused (permission_denied)") {
		t.Fatalf("problems with a read token: %d %s", w.Code, w.Body)
	}
}

// sseReader reads server-sent events from a live stream.
type sseReader struct {
	t  *testing.T
	sc *bufio.Scanner
}

// next returns the next event's name and data.
func (r *sseReader) next() (string, string) {
	r.t.Helper()
	var name, data string
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case line == "" && name != "":
			return name, data
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
	r.t.Fatalf("stream ended: %v", r.sc.Err())
	return "", ""
}

func (h *harness) openLive(ctx context.Context, srv *httptest.Server, cookie *http.Cookie, path string) *sseReader {
	h.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.AddCookie(cookie)
	res, err := srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = res.Body.Close() })
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		h.t.Fatalf("%s: %d %s", path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	return &sseReader{t: h.t, sc: bufio.NewScanner(res.Body)}
}

func TestLiveStreams(t *testing.T) {
	h := newHarness(t, Options{StatusPollInterval: 5 * time.Millisecond})
	cookie, _ := h.login(readToken)
	srv := httptest.NewServer(h.c)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("the event feed relays WatchEvents, escaped", func(t *testing.T) {
		feed := h.openLive(ctx, srv, cookie, "/ui/live/events")
		for i := 0; i < 3; i++ {
			name, data := feed.next()
			var line eventLine
			if err := json.Unmarshal([]byte(data), &line); name != "event" || err != nil {
				t.Fatalf("event %d: %s %s (%v)", i, name, data, err)
			}
			if strings.Contains(data, "<script>") || len(line.Items) != 1 || !strings.Contains(line.Items[0], "transfer t<script>: reserve → alice 100 BTC") {
				t.Fatalf("event %d: %s", i, data)
			}
		}
	})

	t.Run("the cluster status follows a leader change", func(t *testing.T) {
		live := h.openLive(ctx, srv, cookie, "/ui/live/cluster")
		var snap clusterSnapshot
		name, data := live.next()
		if err := json.Unmarshal([]byte(data), &snap); name != "cluster" || err != nil || snap.LeaderID != "n1" {
			t.Fatalf("first snapshot: %s %s", name, data)
		}
		h.api.setLeader("n3", 3)
		for snap.LeaderID != "n3" {
			if _, data = live.next(); json.Unmarshal([]byte(data), &snap) != nil {
				t.Fatalf("snapshot %s", data)
			}
		}
		if snap.Term != 3 || len(snap.Members) != 3 || !snap.Members[2].Leader {
			t.Fatalf("snapshot after the change: %+v", snap)
		}
	})
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{amountText(0), "0"},
		{amountText(999), "999"},
		{amountText(1000), "1,000"},
		{amountText(-1234567), "-1,234,567"},
		{enumText(bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL), "awaiting approval"},
		{enumText(bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD), "to cold"},
		{enumText(bankdv1.PayoutState(99)), "99"},
		{msText(0), "—"},
		{msText(1767225600000), "2026-01-01 00:00:00Z"},
		{shortText("0123456789abcdef0123"), "0123456789abcdef…"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestReadsAreRetriedThroughAnElectionAndWritesAreNot(t *testing.T) {
	h := newHarness(t, Options{})
	cookie, csrf := h.login(operatorToken)
	h.api.failNext(2)
	w := h.do(call{method: "GET", path: "/ui/ledger?account=alice", cookie: cookie})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "1,234,567") {
		t.Fatalf("a read through two Unavailable answers: %d %s", w.Code, w.Body)
	}
	h.api.failNext(1)
	h.do(call{method: "POST", path: "/ui/approvals/payout", form: url.Values{"id": {"p1"}, "decision": {"approve"}, "csrf": {csrf}},
		cookie: cookie, header: map[string]string{"Origin": "http://" + host}})
	if got := h.api.approvals(); len(got) != 0 {
		t.Fatalf("an approval answered Unavailable was sent again: %v", got)
	}
	page := h.do(call{method: "GET", path: "/ui/approvals", cookie: cookie}).Body.String()
	if !strings.Contains(page, "Payout p1 was not approved. The API refused (unavailable)") {
		t.Fatalf("approvals page: %s", page)
	}
}
