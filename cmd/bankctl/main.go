// Command bankctl is the command-line client of a bankd cluster: accounts, transfers, two-phase
// transfers, history, locks, wallets and deposit addresses, the chain, the Lightning pool with
// its invoices and payments, on-chain payouts and their transactions, the event stream and
// cluster operations.
//
//	bankctl [-addr URL[,URL...]] [-token T] [-o table|json] [-stale] [-timeout 10s] COMMAND ...
//
// The common flags may also follow the command. -addr may list several nodes: a call that finds
// a node unavailable (connection refused, no leader, shutting down) moves on to the next.
// Errors print "bankctl: <code>: <message>" and exit 1; usage errors exit 2.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/clustertls"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/rpc/bearer"
)

// Defaults of the common flags.
const (
	defaultAddr    = "https://127.0.0.1:7201"
	defaultToken   = "dev-admin-token"
	defaultTimeout = 10 * time.Second
	envAddr        = "BANKCTL_ADDR"
	envToken       = "BANKCTL_TOKEN"
	envCA          = "BANKCTL_CA"
	envRegion      = "BANKCTL_REGION"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks an error in how bankctl was called (exit 2).
var errUsage = errors.New("usage")

func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// run is bankctl without the process around it: tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	a.opts.addr = defaultAddr
	if v := getenv(envAddr); v != "" {
		a.opts.addr = v
	}
	a.opts.token = defaultToken
	if v := getenv(envToken); v != "" {
		a.opts.token = v
	}
	a.opts.ca = getenv(envCA)
	a.opts.region = getenv(envRegion)
	a.opts.output = "table"
	a.opts.timeout = defaultTimeout

	global := flag.NewFlagSet("bankctl", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	a.opts.register(global, true)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHelp(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "bankctl: %v\n\n", err)
		printHelp(stderr)
		return exitUsage
	}
	rest := global.Args()
	if len(rest) == 0 {
		printHelp(stderr)
		return exitUsage
	}
	err := a.dispatch(ctx, rest)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "bankctl: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "bankctl: %s\n", describeError(err))
		return exitFail
	}
}

// options are the flags every command accepts.
type options struct {
	addr    string
	token   string
	ca      string
	output  string
	stale   bool
	timeout time.Duration
	// region: stale reads go first to the nodes of this region (see preferRegion).
	region string
	// minIndex is sent as Bankd-Min-Index: a stale read answers from a state at least this new.
	minIndex uint64
}

// register adds the common flags to fs. withTimeout is false for commands that use -timeout
// for something else (transfer: the pending timeout).
func (o *options) register(fs *flag.FlagSet, withTimeout bool) {
	fs.StringVar(&o.addr, "addr", o.addr, "API base URLs, comma-separated (env "+envAddr+")")
	fs.StringVar(&o.token, "token", o.token, "bearer token (env "+envToken+")")
	fs.StringVar(&o.ca, "ca", o.ca, "cluster CA certificate (PEM) to verify the nodes with (env "+envCA+")")
	fs.StringVar(&o.output, "o", o.output, "output: table or json")
	fs.BoolVar(&o.stale, "stale", o.stale, "serve reads from the node asked, without a round trip to the leader")
	fs.StringVar(&o.region, "region", o.region, "with -stale, ask the nodes of this region first (env "+envRegion+")")
	fs.Uint64Var(&o.minIndex, "min-index", o.minIndex, "with -stale, answer from a state at least this new (an applied index read before)")
	if withTimeout {
		fs.DurationVar(&o.timeout, "timeout", o.timeout, "deadline of each call")
	}
}

// app is one bankctl invocation.
type app struct {
	opts   options
	stdout io.Writer
	stderr io.Writer

	addrs   []string
	hc      *http.Client
	clients map[string]*clients
	current int // index in addrs of the node that answered last
	// regionDone is set once preferRegion has ordered addrs.
	regionDone bool
}

type clients struct {
	ledger    bankdv1connect.LedgerServiceClient
	lock      bankdv1connect.LockServiceClient
	event     bankdv1connect.EventServiceClient
	cluster   bankdv1connect.ClusterServiceClient
	wallet    bankdv1connect.WalletServiceClient
	chain     bankdv1connect.ChainServiceClient
	lightning bankdv1connect.LightningServiceClient
	payout    bankdv1connect.PayoutServiceClient
	vault     bankdv1connect.VaultServiceClient
}

// prepare validates the common flags once the command's own flags are parsed.
func (a *app) prepare() error {
	switch a.opts.output {
	case "table", "json":
	default:
		return usageErrorf("-o %q: want table or json", a.opts.output)
	}
	if a.opts.timeout <= 0 {
		return usageErrorf("-timeout must be > 0")
	}
	a.addrs = a.addrs[:0]
	for _, s := range strings.Split(a.opts.addr, ",") {
		s = strings.TrimRight(strings.TrimSpace(s), "/")
		if s == "" {
			continue
		}
		if !strings.Contains(s, "://") {
			s = "https://" + s // explicit http:// reaches an insecure_plaintext cluster
		}
		a.addrs = append(a.addrs, s)
	}
	if len(a.addrs) == 0 {
		return usageErrorf("-addr is empty")
	}
	a.hc = http.DefaultClient
	if a.opts.ca != "" {
		roots, err := clustertls.LoadPool(a.opts.ca)
		if err != nil {
			return usageErrorf("-ca: %v", err)
		}
		a.hc = &http.Client{Transport: &http.Transport{
			Proxy:             http.ProxyFromEnvironment,
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13},
			ForceAttemptHTTP2: true,
		}}
	}
	a.clients = make(map[string]*clients)
	return nil
}

func (a *app) clientsFor(addr string) *clients {
	if c, ok := a.clients[addr]; ok {
		return c
	}
	opt := connect.WithInterceptors(bearer.Token(a.opts.token), minIndexHeader(a.opts.minIndex))
	hc := a.hc
	c := &clients{
		ledger:    bankdv1connect.NewLedgerServiceClient(hc, addr, opt),
		lock:      bankdv1connect.NewLockServiceClient(hc, addr, opt),
		event:     bankdv1connect.NewEventServiceClient(hc, addr, opt),
		cluster:   bankdv1connect.NewClusterServiceClient(hc, addr, opt),
		wallet:    bankdv1connect.NewWalletServiceClient(hc, addr, opt),
		chain:     bankdv1connect.NewChainServiceClient(hc, addr, opt),
		lightning: bankdv1connect.NewLightningServiceClient(hc, addr, opt),
		payout:    bankdv1connect.NewPayoutServiceClient(hc, addr, opt),
		vault:     bankdv1connect.NewVaultServiceClient(hc, addr, opt),
	}
	a.clients[addr] = c
	return c
}

// call runs fn against the nodes in -addr, starting with the one that answered last, and
// moves to the next one while a node is unavailable. Every bankd write is idempotent by its
// id, so trying the next node after an unknown outcome is safe. Each try has -timeout.
func call[T any](ctx context.Context, a *app, fn func(context.Context, *clients) (T, error)) (T, error) {
	var (
		zero T
		err  error
	)
	// A cluster between leaders answers that the request was not applied and may be retried:
	// bankctl does so, round after round over its addresses, until -timeout has passed.
	deadline := time.Now().Add(a.opts.timeout)
	backoff := 50 * time.Millisecond
	if a.opts.stale && a.opts.region != "" && !a.regionDone {
		a.regionDone = true
		a.preferRegion(ctx)
	}
	for {
		for i := 0; i < len(a.addrs); i++ {
			idx := (a.current + i) % len(a.addrs)
			cctx, cancel := context.WithTimeout(ctx, a.opts.timeout)
			var res T
			res, err = fn(cctx, a.clientsFor(a.addrs[idx]))
			cancel()
			if err == nil {
				a.current = idx
				return res, nil
			}
			if connect.CodeOf(err) != connect.CodeUnavailable || ctx.Err() != nil {
				return zero, err
			}
		}
		if !notApplied(err) || time.Now().Add(backoff).After(deadline) {
			return zero, err
		}
		select {
		case <-ctx.Done():
			return zero, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// notApplied reports the API's answer that a request was not applied and may be retried as
// it is (no leader known yet, or the node is not the leader): unlike "outcome unknown", nothing
// can have happened.
func notApplied(err error) bool {
	var ce *connect.Error
	return errors.As(err, &ce) && strings.Contains(ce.Message(), "the request was not applied")
}

// describeError renders an error as "<code>: <message>".
func describeError(err error) string {
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		return "unavailable: " + err.Error() + " (pass the cluster CA certificate with -ca or " + envCA + ")"
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg := ce.Message()
		if rc := ce.Meta().Get("Bankd-Result-Code"); rc != "" {
			msg += " (" + strings.TrimPrefix(rc, "RESULT_CODE_") + ")"
		}
		return ce.Code().String() + ": " + msg
	}
	if errors.Is(err, context.Canceled) {
		return "canceled: " + err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline_exceeded: " + err.Error()
	}
	return "error: " + err.Error()
}

// collectPages follows next-page tokens, asking for pages of at most pageSize, until limit items
// are read or the last page is; it returns the items, the token of what is left ("" when
// nothing is) and the last page's meta.
func collectPages[T any](ctx context.Context, a *app, limit, pageSize int,
	fetch func(ctx context.Context, c *clients, size uint32, token string) ([]T, string, *bankdv1.ReadMeta, error),
) ([]T, string, *bankdv1.ReadMeta, error) {
	var (
		items []T
		token string
		meta  *bankdv1.ReadMeta
	)
	for len(items) < limit {
		type page struct {
			items []T
			next  string
			meta  *bankdv1.ReadMeta
		}
		p, err := call(ctx, a, func(ctx context.Context, c *clients) (*page, error) {
			items, next, meta, err := fetch(ctx, c, uint32(min(pageSize, limit-len(items))), token)
			if err != nil {
				return nil, err
			}
			return &page{items, next, meta}, nil
		})
		if err != nil {
			return nil, "", nil, err
		}
		items, token, meta = append(items, p.items...), p.next, p.meta
		if token == "" {
			break
		}
	}
	return items, token, meta, nil
}
