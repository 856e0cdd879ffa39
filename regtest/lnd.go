package regtest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
	"google.golang.org/grpc"
)

// Defaults for [LndOptions] and limits of [Lnd]'s methods.
const (
	// DefaultLndStartTimeout bounds how long [StartLnd] and [Lnd.Restart] wait until lnd is
	// synced to the chain. A fresh lnd needs 20-40 s on a small machine, more when several
	// start at once.
	DefaultLndStartTimeout = 3 * time.Minute
	// DefaultLndStopTimeout bounds how long [Lnd.Stop] waits after SIGTERM before SIGKILL.
	DefaultLndStopTimeout = 15 * time.Second
	// PayFeeLimitSat is the largest routing fee [Lnd.PayInvoice] accepts.
	PayFeeLimitSat = 10_000
	// PayTimeout is how long [Lnd.PayInvoice] lets lnd look for a route.
	PayTimeout = time.Minute
)

// LndOptions configure [StartLnd].
type LndOptions struct {
	// Name identifies the node in logs and errors, e.g. "pool-1". Empty means "lnd".
	Name string
	// Dir is lnd's --lnddir; it also receives lnd's whole log, Dir/lnd.log. Required. A
	// directory left by an earlier lnd is reused (same wallet and channels), which only makes
	// sense against the same chain: btcd's regtest chain is new at every start.
	Dir string
	// LndPath is the lnd binary; empty means [LndPath]().
	LndPath string
	// StartTimeout bounds the wait until lnd is synced; 0 means DefaultLndStartTimeout.
	StartTimeout time.Duration
	// ExtraArgs are appended to lnd's command line; a flag given again here overrides it.
	ExtraArgs []string
	// Logger receives the harness's own log lines (not lnd's); nil means slog.Default().
	Logger *slog.Logger
}

// Lnd is a running lnd on a regtest [Btcd], reached over gRPC with its admin macaroon. The
// exported fields do not change after [StartLnd] returns; Client and Router keep working
// across [Lnd.Restart] (the connection reconnects by itself). Kill, Stop and Running are safe
// to call concurrently; Restart must not run concurrently with itself or with Stop.
type Lnd struct {
	// Name identifies the node, e.g. "pool-1".
	Name string
	// Dir is lnd's --lnddir.
	Dir string
	// RPCAddr is host:port of lnd's gRPC server (--rpclisten).
	RPCAddr string
	// P2PAddr is host:port of lnd's peer-to-peer listener (--listen), also announced.
	P2PAddr string
	// TLSCertPath is the certificate of the gRPC server, an absolute path.
	TLSCertPath string
	// MacaroonPath is the admin macaroon, an absolute path.
	MacaroonPath string
	// Pubkey is the node's identity key, hex-encoded (33 bytes compressed).
	Pubkey string
	// Client and Router are lnd's main and router services over the admin connection.
	Client lnrpc.LightningClient
	Router routerrpc.RouterClient

	log          *slog.Logger
	bin          string
	args         []string
	logPath      string
	startTimeout time.Duration
	conn         *grpc.ClientConn

	mu   sync.Mutex
	proc *lndProcess // the current (or last) lnd process; nil before the first start
}

// lndProcess is one run of the lnd binary.
type lndProcess struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // set before exited is closed
}

// StartLnd launches lnd on free loopback ports against btcd's RPC server and waits until it
// answers GetInfo and is synced to the chain. A new Dir gets a new wallet without a password
// or seed backup (--noseedbackup). The node runs until [Lnd.Stop] or [Lnd.Kill]; ctx bounds
// only the start itself.
func StartLnd(ctx context.Context, btcd *Btcd, opts LndOptions) (*Lnd, error) {
	if opts.Dir == "" {
		return nil, errors.New("regtest: lnd needs a directory (LndOptions.Dir)")
	}
	if opts.Name == "" {
		opts.Name = "lnd"
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	bin := opts.LndPath
	if bin == "" {
		var err error
		if bin, err = LndPath(); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("regtest: lnd directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("regtest: lnd directory: %w", err)
	}
	rpc := btcd.RPC()
	btcdCert, err := filepath.Abs(rpc.CertPath)
	if err != nil {
		return nil, fmt.Errorf("regtest: btcd certificate: %w", err)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultLndStartTimeout
	}

	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		l := &Lnd{
			Name:         opts.Name,
			Dir:          dir,
			RPCAddr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
			P2PAddr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
			TLSCertPath:  filepath.Join(dir, "tls.cert"),
			MacaroonPath: filepath.Join(dir, "data", "chain", "bitcoin", "regtest", "admin.macaroon"),
			log:          log.With("lnd", opts.Name),
			bin:          bin,
			logPath:      filepath.Join(dir, "lnd.log"),
			startTimeout: timeout,
		}
		l.args = append(lndArgs(l, rpc, btcdCert), opts.ExtraArgs...)
		info, err := l.start(ctx)
		if err == nil {
			l.Pubkey = info.IdentityPubkey
			return l, nil
		}
		l.closeConn()
		if !errors.Is(err, errPortInUse) || attempt == startAttempts {
			return nil, err
		}
		l.log.Warn("regtest: lnd lost a port race, retrying", "attempt", attempt, "err", err)
	}
}

// lndArgs is lnd's command line, apart from LndOptions.ExtraArgs.
func lndArgs(l *Lnd, rpc RPCConfig, btcdCert string) []string {
	return []string{
		"--lnddir=" + l.Dir,
		"--bitcoin.regtest",
		"--bitcoin.node=btcd",
		"--btcd.rpchost=" + rpc.Host,
		"--btcd.rpcuser=" + rpc.User,
		"--btcd.rpcpass=" + rpc.Pass,
		"--btcd.rpccert=" + btcdCert,
		"--listen=" + l.P2PAddr,
		// Announce the listener, so that peers find the node again after it restarts.
		"--externalip=" + l.P2PAddr,
		"--rpclisten=" + l.RPCAddr,
		"--norest",
		// A new wallet without a password, unlocked at every start.
		"--noseedbackup",
		"--nobootstrap",
		// lnd's console output is its log: it goes to Dir/lnd.log, once.
		"--debuglevel=info",
		"--logging.file.disable",
		// A channel is usable after one confirmation.
		"--bitcoin.defaultchanconfs=1",
		"--maxpendingchannels=10",
		// Gossip at once rather than in 90-second batches, as lnd's own integration tests do.
		"--trickledelay=50",
		"--gossip.sub-batch-delay=5ms",
		"--db.batch-commit-interval=10ms",
		"--caches.rpc-graph-cache-duration=100ms",
		// Take live graph updates from every peer, not only from the first three.
		"--numgraphsyncpeers=100",
		// Reconnect to a restarted channel peer within seconds, not after up to an hour.
		"--maxbackoff=2s",
		// Do not shut down when the test machine's disk is over 90% full.
		"--healthcheck.diskspace.attempts=0",
	}
}

// start launches one lnd process and waits until it is ready. On error no process is left.
func (l *Lnd) start(ctx context.Context) (*lnrpc.GetInfoResponse, error) {
	logFile, err := os.OpenFile(l.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("regtest: lnd log: %w", err)
	}
	var logStart int64
	if info, err := logFile.Stat(); err == nil {
		logStart = info.Size()
	}
	cmd := exec.Command(l.bin, l.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logFile.Close() // the child holds its own descriptor
	if err != nil {
		return nil, fmt.Errorf("regtest: starting %s: %w", l.bin, err)
	}
	p := &lndProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	l.mu.Lock()
	l.proc = p
	l.mu.Unlock()

	began := time.Now()
	info, err := l.waitReady(ctx, p)
	if err != nil {
		l.Kill()
		if strings.Contains(logSince(l.logPath, logStart), "address already in use") {
			return nil, fmt.Errorf("regtest: lnd %s: %w", l.Name, errPortInUse)
		}
		return nil, fmt.Errorf("regtest: lnd %s did not become ready: %w; last lines of %s:\n%s",
			l.Name, err, l.logPath, l.LogTail(20))
	}
	l.log.Info("regtest: lnd ready", "pid", cmd.Process.Pid, "rpc", l.RPCAddr, "p2p", l.P2PAddr,
		"height", info.BlockHeight, "took", time.Since(began).Round(time.Millisecond))
	return info, nil
}

// waitReady waits until lnd has written its certificate and macaroon, answers GetInfo and says
// it is synced to the chain. It dials the gRPC connection on the first start.
func (l *Lnd) waitReady(ctx context.Context, p *lndProcess) (*lnrpc.GetInfoResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, l.startTimeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("lnd exited: %v", p.waitErr)
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
			}
			return nil, ctx.Err()
		case <-tick.C:
		}
		if l.conn == nil {
			if !fileContains(l.TLSCertPath, "-----END CERTIFICATE-----") {
				lastErr = fmt.Errorf("waiting for %s", l.TLSCertPath)
				continue
			}
			if info, err := os.Stat(l.MacaroonPath); err != nil || info.Size() == 0 {
				lastErr = fmt.Errorf("waiting for %s", l.MacaroonPath)
				continue
			}
			conn, err := DialLnd(l.RPCAddr, l.TLSCertPath, l.MacaroonPath)
			if err != nil {
				return nil, err
			}
			l.conn = conn
			l.Client = lnrpc.NewLightningClient(conn)
			l.Router = routerrpc.NewRouterClient(conn)
		}
		callCtx, cancelCall := context.WithTimeout(ctx, 5*time.Second)
		info, err := l.Client.GetInfo(callCtx, &lnrpc.GetInfoRequest{})
		cancelCall()
		switch {
		case err != nil:
			lastErr = err
		case !info.SyncedToChain:
			lastErr = fmt.Errorf("not synced to the chain yet (height %d)", info.BlockHeight)
		default:
			return info, nil
		}
	}
}

func fileContains(path, s string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(data), s)
}

// process returns the current lnd process, nil before the first start.
func (l *Lnd) process() *lndProcess {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proc
}

// Running reports whether the lnd process is alive (it may not be ready yet, or any more).
func (l *Lnd) Running() bool {
	p := l.process()
	if p == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// PID is the process id of the current (or last) lnd process.
func (l *Lnd) PID() int {
	if p := l.process(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Kill stops lnd at once with SIGKILL and waits (bounded) until the process is reaped. It is
// safe to call at any time and more than once.
func (l *Lnd) Kill() {
	if p := l.process(); p != nil {
		if err := p.kill(); err != nil {
			l.log.Error("regtest: killing lnd", "err", err)
		}
	}
}

func (p *lndProcess) kill() error { return killAndReap("lnd", p.cmd, p.exited) }

// Stop asks lnd to shut down (SIGTERM), waits for it to exit, and kills it (SIGKILL) if it has
// not exited when ctx is done or after DefaultLndStopTimeout, whichever comes first. (lnd does
// not stop on SIGTERM while its btcd is gone.) The directory stays: Restart starts it again.
func (l *Lnd) Stop(ctx context.Context) error {
	p := l.process()
	if p == nil {
		return nil
	}
	return terminateAndReap(ctx, "lnd", p.cmd, p.exited, DefaultLndStopTimeout, l.log)
}

// Restart stops lnd if it is running (see Stop), starts it again on the same directory and
// ports, and waits until it is synced to the chain. Its channels become active again once
// their peers have reconnected; [Lnd.WaitActiveChannels] waits for that.
func (l *Lnd) Restart(ctx context.Context) error {
	if err := l.Stop(ctx); err != nil {
		return err
	}
	info, err := l.start(ctx)
	if err != nil {
		return err
	}
	if info.IdentityPubkey != l.Pubkey {
		l.Kill()
		return fmt.Errorf("regtest: lnd %s restarted with identity %s, want %s", l.Name, info.IdentityPubkey, l.Pubkey)
	}
	return nil
}

// Close stops lnd (see Stop) and closes its gRPC connection; the Lnd cannot be restarted
// afterwards. Its directory stays.
func (l *Lnd) Close(ctx context.Context) error {
	err := l.Stop(ctx)
	l.closeConn()
	return err
}

func (l *Lnd) closeConn() {
	if l.conn != nil {
		_ = l.conn.Close()
	}
}

// HCL describes the node for bankd's configuration, as one block ending in a newline:
//
//	lnd "pool-1" {
//	  address  = "127.0.0.1:PORT"
//	  tls_cert = "/abs/path/tls.cert"
//	  macaroon = "/abs/path/admin.macaroon"
//	}
func (l *Lnd) HCL() string {
	return fmt.Sprintf("lnd %q {\n  address  = %q\n  tls_cert = %q\n  macaroon = %q\n}\n",
		l.Name, l.RPCAddr, l.TLSCertPath, l.MacaroonPath)
}

// LogPath is the file that receives lnd's whole log (its standard output and error).
func (l *Lnd) LogPath() string { return l.logPath }

// LogTail returns up to the last n lines of lnd's log, for error messages.
func (l *Lnd) LogTail(n int) string { return logTail(l.logPath, n) }

// AddInvoice creates an invoice for sat satoshis and returns its BOLT11 payment request and
// its payment hash (hex).
func (l *Lnd) AddInvoice(ctx context.Context, sat int64, memo string) (bolt11, hashHex string, err error) {
	resp, err := l.Client.AddInvoice(ctx, &lnrpc.Invoice{Value: sat, Memo: memo})
	if err != nil {
		return "", "", fmt.Errorf("regtest: %s: adding an invoice: %w", l.Name, err)
	}
	return resp.PaymentRequest, hex.EncodeToString(resp.RHash), nil
}

// PayInvoice pays a BOLT11 payment request and waits until the payment has succeeded or
// failed (lnd gives up looking for a route after PayTimeout). It returns the preimage (hex)
// and the routing fee paid, in millisatoshis. The fee is limited to PayFeeLimitSat.
func (l *Lnd) PayInvoice(ctx context.Context, bolt11 string) (preimageHex string, feeMsat int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, PayTimeout+30*time.Second)
	defer cancel()
	stream, err := l.Router.SendPaymentV2(ctx, &routerrpc.SendPaymentRequest{
		PaymentRequest:    bolt11,
		TimeoutSeconds:    int32(PayTimeout / time.Second),
		FeeLimitSat:       PayFeeLimitSat,
		NoInflightUpdates: true,
	})
	if err != nil {
		return "", 0, fmt.Errorf("regtest: %s: paying: %w", l.Name, err)
	}
	for {
		p, err := stream.Recv()
		if err != nil {
			return "", 0, fmt.Errorf("regtest: %s: paying: %w", l.Name, err)
		}
		switch p.Status {
		case lnrpc.Payment_SUCCEEDED:
			return p.PaymentPreimage, p.FeeMsat, nil
		case lnrpc.Payment_FAILED:
			return "", 0, fmt.Errorf("regtest: %s: payment %s failed: %v", l.Name, p.PaymentHash, p.FailureReason)
		}
	}
}

// ChannelLocalBalanceMsat returns the node's spendable balance in its open channels, in
// millisatoshis.
func (l *Lnd) ChannelLocalBalanceMsat(ctx context.Context) (uint64, error) {
	resp, err := l.Client.ChannelBalance(ctx, &lnrpc.ChannelBalanceRequest{})
	if err != nil {
		return 0, fmt.Errorf("regtest: %s: channel balance: %w", l.Name, err)
	}
	return resp.GetLocalBalance().GetMsat(), nil
}

// WaitActiveChannels waits until the node has at least n active channels, polling until ctx
// is done or for at most a minute.
func (l *Lnd) WaitActiveChannels(ctx context.Context, n int) error {
	return poll(ctx, time.Minute, fmt.Sprintf("%s: %d active channels", l.Name, n), func(ctx context.Context) error {
		resp, err := l.Client.ListChannels(ctx, &lnrpc.ListChannelsRequest{ActiveOnly: true})
		if err != nil {
			return err
		}
		if len(resp.Channels) < n {
			return fmt.Errorf("%d active", len(resp.Channels))
		}
		return nil
	})
}

// newAddress returns a new address of the node's wallet.
func (l *Lnd) newAddress(ctx context.Context, typ lnrpc.AddressType) (string, error) {
	resp, err := l.Client.NewAddress(ctx, &lnrpc.NewAddressRequest{Type: typ})
	if err != nil {
		return "", fmt.Errorf("regtest: %s: new address: %w", l.Name, err)
	}
	return resp.Address, nil
}

// confirmedBalance returns the node's confirmed on-chain balance in satoshis.
func (l *Lnd) confirmedBalance(ctx context.Context) (int64, error) {
	resp, err := l.Client.WalletBalance(ctx, &lnrpc.WalletBalanceRequest{})
	if err != nil {
		return 0, fmt.Errorf("regtest: %s: wallet balance: %w", l.Name, err)
	}
	return resp.ConfirmedBalance, nil
}

// poll calls check every 200 ms until it returns nil, ctx is done or timeout has passed. The
// error names what was awaited and what check said last.
func poll(ctx context.Context, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		callCtx, cancelCall := context.WithTimeout(ctx, 10*time.Second)
		err := check(callCtx)
		cancelCall()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("regtest: waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// logTail returns up to the last n lines of a log file.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logSince returns what was appended to a log file after offset.
func logSince(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || offset > int64(len(data)) {
		return ""
	}
	return string(data[offset:])
}
