// Package consoletest drives the operator console (console/) in a real browser — Debian's
// Chromium, headless, through chromedp — for the browser tests of console/ and systemtest/.
//
// Without Chromium a test skips with a message saying how to install it (`make deps-chromium`);
// with BANKD_REQUIRE_CHROMIUM=1 (make test) it fails instead. Every wait is on a DOM condition
// with a bound, never a sleep. Screenshots go to a folder that outlives the test:
// $BANKD_TEST_OUTPUT/console-shots/<test>, else /tmp/bankd-console-shots/<test>.
//
// It is test support: bankd never imports it. It starts no browser outside a test and talks
// only to the URLs a test gives it.
package consoletest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// RequireEnv, set to 1, makes a missing Chromium fail the test instead of skipping it.
const RequireEnv = "BANKD_REQUIRE_CHROMIUM"

// Bounds of a browser test.
const (
	// StepTimeout bounds one step: a navigation, a click and the page it leads to.
	StepTimeout = 20 * time.Second
	// pollInterval is how often a DOM condition is checked.
	pollInterval = 50 * time.Millisecond
)

// browsers are the names Chromium goes by, in the order they are looked for.
var browsers = []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"}

// FindChromium returns the path of a Chromium binary, or "".
func FindChromium() string {
	for _, name := range browsers {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Browser starts headless Chromium for t and returns its first tab's context; t.Cleanup
// closes it. It skips t when no Chromium is installed (fails it under RequireEnv=1) and with
// -short. The browser trusts any certificate: the cluster's own CA signs the node's.
func Browser(t testing.TB) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test; skipped with -short")
	}
	path := FindChromium()
	if path == "" {
		msg := "no Chromium found (looked for " + strings.Join(browsers, ", ") + "); `make deps-chromium` installs Debian's"
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(msg + " (" + RequireEnv + "=1)")
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // headless as root needs it
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser on a context without a deadline: it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// NewTab opens another tab of the same browser (cookies shared), closed at t.Cleanup.
func NewTab(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	return ctx
}

// Incognito opens a tab in a fresh browser context: no cookies of the other tabs.
func Incognito(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open incognito tab: %v", err)
	}
	return ctx
}

// Do runs steps within StepTimeout, failing t with what was being done.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	Run(t, ctx, StepTimeout, what, chromedp.Steps(steps...))
}

// Run runs an action within bound and returns its value, failing t with what was being done.
func Run[T any](t testing.TB, ctx context.Context, bound time.Duration, what string, action chromedp.Action[T]) T {
	t.Helper()
	stepCtx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	v, err := chromedp.Run(stepCtx, action)
	if err != nil {
		t.Fatalf("browser: %s: %v (page: %s)", what, err, pageSummary(ctx))
	}
	return v
}

// Navigate opens url and returns the main document's response (status, headers).
func Navigate(t testing.TB, ctx context.Context, url string) *network.Response {
	t.Helper()
	stepCtx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	res, err := chromedp.RunResponse(stepCtx, chromedp.Navigate(url))
	if err != nil {
		t.Fatalf("browser: open %s: %v", url, err)
	}
	return res
}

// Header returns a response header by name, whatever its case (HTTP/2 lower-cases them).
func Header(res *network.Response, name string) string {
	for k, v := range res.Headers {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// WaitFor waits until the JavaScript expression cond is true on the page, within bound.
func WaitFor(t testing.TB, ctx context.Context, bound time.Duration, what, cond string) {
	t.Helper()
	Run(t, ctx, bound+time.Second, "wait for "+what,
		chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingTimeout(bound), chromedp.WithPollingInterval(pollInterval)))
}

// Text returns the text of the first element matching the CSS selector sel ("" when none),
// without waiting.
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	return Eval[string](t, ctx, "read "+sel, fmt.Sprintf(`(function(){var e=document.querySelector(%q);return e?e.textContent.trim():"";})()`, sel))
}

// Eval evaluates a JavaScript expression, awaiting it when it is a promise.
func Eval[T any](t testing.TB, ctx context.Context, what, expr string) T {
	t.Helper()
	return Run(t, ctx, StepTimeout, what, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// Location returns the page's URL.
func Location(t testing.TB, ctx context.Context) string {
	t.Helper()
	return Run(t, ctx, StepTimeout, "read location", chromedp.Location())
}

// Login logs in at baseURL's console with token and waits for the cluster page.
func Login(t testing.TB, ctx context.Context, baseURL, token string) {
	t.Helper()
	Do(t, ctx, "log in",
		chromedp.Navigate(baseURL+"/ui/login"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#cluster")),
	)
}

// Logout presses the header's logout button and waits for the login page.
func Logout(t testing.TB, ctx context.Context) {
	t.Helper()
	Do(t, ctx, "log out",
		chromedp.Click(chromedp.CSS("#logout")),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	)
}

// pageSummary is the URL and the start of the text of the page, for failure messages.
func pageSummary(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "unreadable: " + err.Error()
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return loc + ": unreadable: " + err.Error()
	}
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 600 {
		text = text[:600] + "…"
	}
	return loc + ": " + text
}

// Shots writes a test's screenshots, numbered in the order taken.
type Shots struct {
	mu  sync.Mutex
	dir string
	n   int
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// NewShots makes (and empties) the screenshot folder of t.
func NewShots(t testing.TB) *Shots {
	t.Helper()
	root := filepath.Join(os.TempDir(), "bankd-console-shots")
	if out := os.Getenv("BANKD_TEST_OUTPUT"); out != "" {
		root = filepath.Join(out, "console-shots")
	}
	dir := filepath.Join(root, unsafeName.ReplaceAllString(t.Name(), "_"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &Shots{dir: dir}
}

// Take writes a full-page PNG of the tab as <n>-<name>.png and returns its path.
func (s *Shots) Take(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	png := Run(t, ctx, StepTimeout, "screenshot "+name, chromedp.FullScreenshot(100))
	s.mu.Lock()
	s.n++
	path := filepath.Join(s.dir, fmt.Sprintf("%02d-%s.png", s.n, unsafeName.ReplaceAllString(name, "_")))
	s.mu.Unlock()
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
	return path
}
