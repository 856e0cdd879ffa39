package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// Path is where the console is mounted on the API port.
const Path = "/ui/"

// Limits of the console's HTTP edge.
const (
	// maxFormBytes bounds a POST body (a login or a decision is a few hundred bytes).
	maxFormBytes = 16 << 10
	// maxTokenLen is the longest API token the login form takes (the API's own bound).
	maxTokenLen = 4096
	// maxIDLen bounds an id typed into a search form before it reaches the API.
	maxIDLen = 256
	// maxReasonLen bounds a rejection's reason.
	maxReasonLen = 512
	// DefaultMaxLiveStreams bounds the live (server-sent events) streams one node serves to
	// browsers at once; maxLiveStreamsPerSession what one session holds.
	DefaultMaxLiveStreams    = 64
	maxLiveStreamsPerSession = 4
	// DefaultStatusPollInterval is how often the live cluster status asks the node.
	DefaultStatusPollInterval = time.Second
	// pageSize is how many rows a list shows per page.
	pageSize = 50
)

// securityHeaders are sent with every /ui response: no framing (clickjacking), scripts and
// styles only from the console's own files (no inline script, so injected markup cannot run),
// no MIME sniffing, no Referer leaving the console, and no cached copies of balances.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
	"X-Frame-Options":         "DENY",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"Cache-Control":           "no-store",
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Console. API is required; the zero value of the rest is usable.
type Options struct {
	// API serves the node's Connect API; the console calls it in process with the operator's
	// token (see inProcessTransport).
	API http.Handler
	// NodeID names the node in every page's header.
	NodeID string
	// Logger receives logins, logouts and decisions; nil means slog.Default().
	Logger *slog.Logger
	// Stopped, when closed, ends the live streams (the API server is stopping).
	Stopped <-chan struct{}
	// SessionIdle, SessionMax and MaxSessions bound sessions; 0 means the defaults.
	SessionIdle time.Duration
	SessionMax  time.Duration
	MaxSessions int
	// MaxLiveStreams bounds concurrent live streams; 0 means DefaultMaxLiveStreams.
	MaxLiveStreams int
	// StatusPollInterval is how often the live cluster status polls; 0 means
	// DefaultStatusPollInterval.
	StatusPollInterval time.Duration
	// Now is the clock of session expiry; nil means time.Now.
	Now func() time.Time
}

// Console serves /ui. Create it with New and mount it at Path.
type Console struct {
	log      *slog.Logger
	nodeID   string
	stopped  <-chan struct{}
	poll     time.Duration
	sessions *sessionStore
	api      apiClients
	pages    map[string]*template.Template
	mux      *http.ServeMux
	// liveSlots holds one token per open live stream.
	liveSlots chan struct{}
}

// apiClients are the console's clients of its node's API.
type apiClients struct {
	ledger    bankdv1connect.LedgerServiceClient
	event     bankdv1connect.EventServiceClient
	cluster   bankdv1connect.ClusterServiceClient
	wallet    bankdv1connect.WalletServiceClient
	chain     bankdv1connect.ChainServiceClient
	lightning bankdv1connect.LightningServiceClient
	payout    bankdv1connect.PayoutServiceClient
	vault     bankdv1connect.VaultServiceClient
}

func newAPIClients(api http.Handler) apiClients {
	hc := &http.Client{Transport: inProcessTransport{api: api}}
	retry := connect.WithInterceptors(retryReads{})
	return apiClients{
		ledger:    bankdv1connect.NewLedgerServiceClient(hc, apiBaseURL, retry),
		event:     bankdv1connect.NewEventServiceClient(hc, apiBaseURL, retry),
		cluster:   bankdv1connect.NewClusterServiceClient(hc, apiBaseURL, retry),
		wallet:    bankdv1connect.NewWalletServiceClient(hc, apiBaseURL, retry),
		chain:     bankdv1connect.NewChainServiceClient(hc, apiBaseURL, retry),
		lightning: bankdv1connect.NewLightningServiceClient(hc, apiBaseURL, retry),
		payout:    bankdv1connect.NewPayoutServiceClient(hc, apiBaseURL, retry),
		vault:     bankdv1connect.NewVaultServiceClient(hc, apiBaseURL, retry),
	}
}

// pageNames are the templates under templates/, each rendered inside layout.html.
var pageNames = []string{"login", "cluster", "ledger", "lightning", "chain", "approvals", "problems", "events", "error"}

// New builds the console. It panics if opts.API is nil or an embedded template does not
// parse: both are programming errors, caught by any test that builds a console.
func New(opts Options) *Console {
	if opts.API == nil {
		panic("console: Options.API is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	idle, max, limit := opts.SessionIdle, opts.SessionMax, opts.MaxSessions
	if idle <= 0 {
		idle = DefaultSessionIdle
	}
	if max <= 0 {
		max = DefaultSessionMax
	}
	if limit <= 0 {
		limit = DefaultMaxSessions
	}
	live := opts.MaxLiveStreams
	if live <= 0 {
		live = DefaultMaxLiveStreams
	}
	poll := opts.StatusPollInterval
	if poll <= 0 {
		poll = DefaultStatusPollInterval
	}
	c := &Console{
		log:       opts.Logger,
		nodeID:    opts.NodeID,
		stopped:   opts.Stopped,
		poll:      poll,
		sessions:  newSessionStore(idle, max, limit, opts.Now),
		api:       newAPIClients(opts.API),
		pages:     map[string]*template.Template{},
		liveSlots: make(chan struct{}, live),
	}
	for _, name := range pageNames {
		c.pages[name] = template.Must(template.New(name).Funcs(templateFuncs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	c.mux = c.routes()
	return c
}

func (c *Console) routes() *http.ServeMux {
	mux := http.NewServeMux()
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/cluster", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /ui/login", c.loginPage)
	mux.HandleFunc("POST /ui/login", c.login)
	mux.HandleFunc("POST /ui/logout", c.post(c.logout))

	mux.HandleFunc("GET /ui/cluster", c.page(c.clusterPage))
	mux.HandleFunc("GET /ui/ledger", c.page(c.ledgerPage))
	mux.HandleFunc("GET /ui/lightning", c.page(c.lightningPage))
	mux.HandleFunc("GET /ui/chain", c.page(c.chainPage))
	mux.HandleFunc("GET /ui/approvals", c.page(c.approvalsPage))
	mux.HandleFunc("GET /ui/problems", c.page(c.problemsPage))
	mux.HandleFunc("GET /ui/events", c.page(c.eventsPage))
	mux.HandleFunc("POST /ui/approvals/payout", c.post(c.decidePayout))
	mux.HandleFunc("POST /ui/approvals/vault", c.post(c.decideVault))

	mux.HandleFunc("GET /ui/live/cluster", c.live(c.liveCluster))
	mux.HandleFunc("GET /ui/live/events", c.live(c.liveEvents))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		c.renderError(w, r, http.StatusNotFound, "Not found", "There is no console page at "+r.URL.Path+".")
	})
	return mux
}

// ServeHTTP serves every /ui request with the security headers set.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range securityHeaders {
		h.Set(k, v)
	}
	c.mux.ServeHTTP(w, r)
}

// page wraps a page handler: it needs a live session, else the browser goes to the login page.
func (c *Console) page(h func(*request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := c.session(r)
		if !ok {
			http.Redirect(w, r, "/ui/login?m=login", http.StatusSeeOther)
			return
		}
		h(c.newRequest(w, r, sess))
	}
}

// post wraps a state-changing handler: a bounded body from the console's own origin, with a
// live session and that session's CSRF token. Anything else is refused with 403 and changes
// nothing.
func (c *Console) post(h func(*request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := checkSameOrigin(r); err != nil {
			c.forbidden(w, r, err.Error())
			return
		}
		if err := r.ParseForm(); err != nil {
			c.renderError(w, r, http.StatusBadRequest, "Bad request", "The form could not be read: "+err.Error())
			return
		}
		sess, ok := c.session(r)
		if !ok {
			c.forbidden(w, r, "there is no console session (log in first)")
			return
		}
		if !validCSRF(sess, r.PostForm.Get("csrf")) {
			c.forbidden(w, r, "the form's CSRF token is missing or wrong")
			return
		}
		h(c.newRequest(w, r, sess))
	}
}

// live wraps a server-sent events handler: a session, and a free stream slot.
func (c *Console) live(h func(*request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, ok := c.session(r)
		if !ok {
			http.Error(w, "no console session: log in at /ui/login", http.StatusUnauthorized)
			return
		}
		select {
		case c.liveSlots <- struct{}{}:
			defer func() { <-c.liveSlots }()
		default:
			http.Error(w, "this node serves too many live streams; reload later", http.StatusServiceUnavailable)
			return
		}
		if !c.sessions.addStream(sess) {
			http.Error(w, "this session holds too many live streams; close a tab", http.StatusTooManyRequests)
			return
		}
		defer c.sessions.dropStream(sess)
		h(c.newRequest(w, r, sess))
	}
}

// session returns the live session of r's cookie.
func (c *Console) session(r *http.Request) (*session, bool) {
	cookie, err := r.Cookie(cookieName)
	if err != nil {
		return nil, false
	}
	return c.sessions.lookup(cookie.Value)
}

// forbidden answers 403 with a page saying why; nothing was changed.
func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, why string) {
	c.log.Warn("console request refused", "path", r.URL.Path, "peer", r.RemoteAddr, "reason", why)
	c.renderError(w, r, http.StatusForbidden, "Forbidden", "This request was refused and changed nothing: "+why+".")
}

// layout is what every page template gets: the page's own data in Data.
type layout struct {
	Title string
	// Nav is the current page's name, for the navigation bar.
	Nav  string
	Node string
	// CSRF is the session's token for the forms; empty on pages without a session.
	CSRF  string
	Flash *flash
	Data  any
}

// render writes page name with status.
func (c *Console) render(w http.ResponseWriter, status int, name string, l layout) {
	l.Node = c.nodeID
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", l); err != nil {
		c.log.Error("console template failed", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.Copy(w, &buf)
}

type errorPage struct{ Heading, Message string }

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, status int, heading, msg string) {
	l := layout{Title: heading, Data: errorPage{Heading: heading, Message: msg}}
	if sess, ok := c.session(r); ok {
		l.CSRF = sess.csrf
	}
	c.render(w, status, "error", l)
}

// request is one page request of a logged-in session.
type request struct {
	c    *Console
	w    http.ResponseWriter
	r    *http.Request
	sess *session
	// unauthenticated is set when the API refused the session's token: the page logs out.
	unauthenticated bool
}

func (c *Console) newRequest(w http.ResponseWriter, r *http.Request, sess *session) *request {
	return &request{c: c, w: w, r: r, sess: sess}
}

// ctx is the context of API calls for this request: the session's token, the browser's address.
func (q *request) ctx() context.Context {
	return withPeer(withToken(q.r.Context(), q.sess.token), q.r.RemoteAddr)
}

// refusal describes an API error for a page, and notes an Unauthenticated one.
func (q *request) refusal(err error) string {
	if err == nil {
		return ""
	}
	if connect.CodeOf(err) == connect.CodeUnauthenticated {
		q.unauthenticated = true
	}
	return describeAPIError(err)
}

// describeAPIError is how the console shows an API error: its code and the API's message.
func describeAPIError(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return fmt.Sprintf("The API refused (%s): %s", ce.Code(), ce.Message())
	}
	return "The API call failed: " + err.Error()
}

// show renders page name for the session, or logs out when the API no longer takes its token.
func (q *request) show(status int, name, title string, data any) {
	if q.unauthenticated {
		q.expire()
		return
	}
	q.c.render(q.w, status, name, layout{Title: title, Nav: name, CSRF: q.sess.csrf, Flash: q.c.sessions.takeFlash(q.sess), Data: data})
}

// expire ends a session whose token the API refused and sends the browser to log in again.
func (q *request) expire() {
	q.c.sessions.end(q.sess)
	http.SetCookie(q.w, expiredCookie(q.r))
	http.Redirect(q.w, q.r, "/ui/login?m=refused", http.StatusSeeOther)
}

// trimmedQuery is a query parameter, trimmed and bounded.
func (q *request) trimmedQuery(name string) (string, bool) {
	v := strings.TrimSpace(q.r.URL.Query().Get(name))
	return v, len(v) <= maxIDLen
}
