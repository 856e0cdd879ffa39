package regtest

import (
	"bytes"
	"context"
	"crypto/rand"
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
	"syscall"
	"time"
)

// Defaults for [Options].
const (
	// SegwitHeight is the first height at which segwit is active on a fresh btcd regtest
	// chain (BIP9 with 144-block windows: defined, started, locked in, active).
	SegwitHeight = 432
	// DefaultInitialBlocks is how many blocks [Start] mines by default: past segwit
	// activation, which also leaves hundreds of mature coinbase outputs in the faucet.
	DefaultInitialBlocks = 500
	// DefaultStartTimeout bounds how long [Start] waits for btcd's RPC server.
	DefaultStartTimeout = 30 * time.Second
	// DefaultStopTimeout bounds how long [Btcd.Stop] waits after SIGTERM before SIGKILL.
	DefaultStopTimeout = 10 * time.Second
)

// Options configure [Start]. The zero value is ready to use.
type Options struct {
	// BtcdPath is the btcd binary; empty means [BtcdPath]().
	BtcdPath string
	// DataDir holds btcd's chain, logs and RPC certificate. Empty means a new temporary
	// directory that [Btcd.Stop] removes (unless KeepDataDir is set). Note that btcd deletes
	// its regtest chain at every start: a node started again on the same DataDir begins at
	// the genesis block (and keeps only its TLS certificate).
	DataDir string
	// KeepDataDir keeps a temporary DataDir after Stop, e.g. to read its log.
	KeepDataDir bool
	// InitialBlocks is how many blocks Start mines before returning; 0 means
	// DefaultInitialBlocks. SkipInitialBlocks mines none.
	InitialBlocks     int
	SkipInitialBlocks bool
	// StartTimeout bounds the wait for btcd's RPC server; 0 means DefaultStartTimeout.
	StartTimeout time.Duration
	// ExtraArgs are appended to btcd's command line (e.g. "--rejectreplacement").
	ExtraArgs []string
	// Logger receives the harness's own log lines (not btcd's); nil means slog.Default().
	Logger *slog.Logger
}

// Btcd is a running btcd regtest node with a faucet. Its methods are safe for concurrent use.
type Btcd struct {
	log      *slog.Logger
	dataDir  string
	ownsDir  bool
	keepDir  bool
	logPath  string
	p2pAddr  string
	rpcCfg   RPCConfig
	rpc      *rpcClient
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has been reaped
	waitErr  error         // set before exited is closed
	stopOnce sync.Once
	stopErr  error

	faucet *faucet
}

// startAttempts bounds retries when btcd loses a race for its free ports.
const startAttempts = 3

// Start launches btcd in regtest mode, waits until its RPC server answers and, unless opts
// says otherwise, mines opts.InitialBlocks blocks to the faucet. The node runs until
// [Btcd.Stop] or [Btcd.Kill]; ctx bounds only the start itself.
func Start(ctx context.Context, opts Options) (*Btcd, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	bin := opts.BtcdPath
	if bin == "" {
		var err error
		if bin, err = BtcdPath(); err != nil {
			return nil, err
		}
	}
	dir, ownsDir := opts.DataDir, false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "bankd-btcd-"); err != nil {
			return nil, fmt.Errorf("regtest: data directory: %w", err)
		}
		ownsDir = true
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("regtest: data directory: %w", err)
	}
	cleanupDir := func() {
		if ownsDir && !opts.KeepDataDir {
			_ = os.RemoveAll(dir)
		}
	}

	f, err := newFaucet()
	if err != nil {
		cleanupDir()
		return nil, err
	}

	var b *Btcd
	for attempt := 1; ; attempt++ {
		b, err = launch(ctx, log, bin, dir, f, opts)
		if err == nil {
			break
		}
		if !errors.Is(err, errPortInUse) || attempt == startAttempts {
			cleanupDir()
			return nil, err
		}
		log.Warn("regtest: btcd lost a port race, retrying", "attempt", attempt, "err", err)
	}
	b.ownsDir, b.keepDir = ownsDir, opts.KeepDataDir

	if !opts.SkipInitialBlocks {
		n := opts.InitialBlocks
		if n <= 0 {
			n = DefaultInitialBlocks
		}
		began := time.Now()
		if _, err := b.Generate(ctx, n); err != nil {
			err = fmt.Errorf("regtest: mining %d initial blocks: %w; last lines of btcd's log:\n%s",
				n, err, b.LogTail(20))
			b.Kill()
			cleanupDir()
			return nil, err
		}
		log.Info("regtest: mined initial blocks", "blocks", n, "took", time.Since(began).Round(time.Millisecond))
	}
	return b, nil
}

var errPortInUse = errors.New("address already in use")

// launch starts one btcd process and waits for its RPC server. On error no process is left.
func launch(ctx context.Context, log *slog.Logger, bin, dir string, f *faucet, opts Options) (*Btcd, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	user, err := randomHex(8)
	if err != nil {
		return nil, err
	}
	pass, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	rpcCfg := RPCConfig{
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		User:     user,
		Pass:     pass,
		CertPath: filepath.Join(dir, "rpc.cert"),
	}
	p2pAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	args := []string{
		"--regtest",
		"--datadir=" + filepath.Join(dir, "data"),
		"--logdir=" + filepath.Join(dir, "logs"),
		"--listen=" + p2pAddr,
		"--rpclisten=" + rpcCfg.Host,
		"--rpcuser=" + user,
		"--rpcpass=" + pass,
		"--rpccert=" + rpcCfg.CertPath,
		"--rpckey=" + filepath.Join(dir, "rpc.key"),
		"--txindex",
		"--rpcmaxwebsockets=50",
		// The default 250 MiB UTXO cache costs half a second to allocate at every start and
		// that much memory per node; a regtest chain needs a tiny fraction of it.
		"--utxocachemaxsize=16",
		"--nodnsseed",
		"--miningaddr=" + f.addr.EncodeAddress(),
		"--debuglevel=info",
	}
	args = append(args, opts.ExtraArgs...)

	logPath := filepath.Join(dir, "btcd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("regtest: btcd log: %w", err)
	}
	var logStart int64
	if info, err := logFile.Stat(); err == nil {
		logStart = info.Size()
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logFile.Close() // the child holds its own descriptor
	if err != nil {
		return nil, fmt.Errorf("regtest: starting %s: %w", bin, err)
	}
	b := &Btcd{
		log:     log.With("btcd_pid", cmd.Process.Pid),
		dataDir: dir,
		logPath: logPath,
		p2pAddr: p2pAddr,
		rpcCfg:  rpcCfg,
		cmd:     cmd,
		exited:  make(chan struct{}),
		faucet:  f,
	}
	go func() {
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()

	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	began := time.Now()
	if err := b.waitReady(ctx, timeout); err != nil {
		b.Kill()
		if strings.Contains(b.logSince(logStart), "address already in use") {
			return nil, fmt.Errorf("regtest: btcd: %w", errPortInUse)
		}
		return nil, fmt.Errorf("regtest: btcd did not start: %w; last log lines from %s:\n%s",
			err, logPath, b.LogTail(20))
	}
	b.log.Info("regtest: btcd ready", "rpc", rpcCfg.Host, "p2p", p2pAddr, "dir", dir,
		"took", time.Since(began).Round(time.Millisecond))
	return b, nil
}

// waitReady waits until btcd has written its TLS certificate and answers an RPC call.
func (b *Btcd) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-b.exited:
			return fmt.Errorf("btcd exited: %v", b.waitErr)
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-tick.C:
		}
		if b.rpc == nil {
			cert, err := os.ReadFile(b.rpcCfg.CertPath)
			if err != nil || !bytes.Contains(cert, []byte("-----END CERTIFICATE-----")) {
				lastErr = fmt.Errorf("waiting for %s", b.rpcCfg.CertPath)
				continue
			}
			b.rpcCfg.Cert = cert
			if b.rpc, err = newRPCClient(b.rpcCfg); err != nil {
				return err
			}
		}
		callCtx, cancelCall := context.WithTimeout(ctx, 2*time.Second)
		_, err := b.BlockCount(callCtx)
		cancelCall()
		if err == nil {
			return nil
		}
		lastErr = err
	}
}

// RPC describes the node's JSON-RPC endpoint, for lnd (--btcd.rpchost, --btcd.rpcuser,
// --btcd.rpcpass, --btcd.rpccert) and for bankd's own chain backend.
func (b *Btcd) RPC() RPCConfig {
	cfg := b.rpcCfg
	cfg.Cert = bytes.Clone(cfg.Cert)
	return cfg
}

// P2PAddr is host:port of btcd's peer-to-peer listener.
func (b *Btcd) P2PAddr() string { return b.p2pAddr }

// DataDir is the directory that holds btcd's chain, logs and RPC certificate.
func (b *Btcd) DataDir() string { return b.dataDir }

// LogPath is the file that receives btcd's standard output and error (its whole log).
func (b *Btcd) LogPath() string { return b.logPath }

// PID is the process id of btcd.
func (b *Btcd) PID() int { return b.cmd.Process.Pid }

// LogTail returns up to the last n lines of btcd's log, for error messages.
func (b *Btcd) LogTail(n int) string { return logTail(b.logPath, n) }

// logSince returns what btcd logged after offset (this launch's part of an appended log).
func (b *Btcd) logSince(offset int64) string { return logSince(b.logPath, offset) }

// Call performs any btcd JSON-RPC call and decodes its result into result (nil discards it).
func (b *Btcd) Call(ctx context.Context, method string, result any, params ...any) error {
	return b.rpc.call(ctx, method, result, params...)
}

// Stop asks btcd to shut down (SIGTERM), waits for it to exit, and kills it (SIGKILL) if it
// has not exited when ctx is done or after DefaultStopTimeout, whichever comes first. It then
// removes a temporary data directory. Stop is idempotent; later calls return the first result.
func (b *Btcd) Stop(ctx context.Context) error {
	b.stopOnce.Do(func() {
		b.stopErr = b.stop(ctx)
		if b.rpc != nil {
			b.rpc.close()
		}
		if b.ownsDir && !b.keepDir {
			if err := os.RemoveAll(b.dataDir); err != nil && b.stopErr == nil {
				b.stopErr = fmt.Errorf("regtest: removing %s: %w", b.dataDir, err)
			}
		}
	})
	return b.stopErr
}

func (b *Btcd) stop(ctx context.Context) error {
	return terminateAndReap(ctx, "btcd", b.cmd, b.exited, DefaultStopTimeout, b.log)
}

// terminateAndReap asks cmd's process to shut down (SIGTERM) and waits for it to exit, then
// kills it if it has not when ctx is done or after timeout. A process already reaped (exited
// closed) is left alone.
func terminateAndReap(ctx context.Context, name string, cmd *exec.Cmd, exited <-chan struct{}, timeout time.Duration, log *slog.Logger) error {
	select {
	case <-exited:
		return nil // already gone (killed, or crashed: its log says why)
	default:
	}
	began := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		log.Warn("regtest: SIGTERM failed", "err", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-exited:
		log.Info("regtest: "+name+" stopped", "took", time.Since(began).Round(time.Millisecond))
		return nil
	case <-ctx.Done():
	}
	log.Warn("regtest: "+name+" ignored SIGTERM, killing it", "waited", time.Since(began).Round(time.Millisecond))
	return killAndReap(name, cmd, exited)
}

// Kill stops btcd at once with SIGKILL and waits (bounded) until the process is reaped. It is
// safe to call at any time, more than once, and before or after Stop; a temporary data
// directory is only removed by Stop.
func (b *Btcd) Kill() {
	if err := b.kill(); err != nil {
		b.log.Error("regtest: killing btcd", "err", err)
	}
}

func (b *Btcd) kill() error { return killAndReap("btcd", b.cmd, b.exited) }

// killAndReap sends SIGKILL to cmd's process unless exited (closed once it is reaped) says it
// is gone, then waits at most 10 s for it to be reaped.
func killAndReap(name string, cmd *exec.Cmd, exited <-chan struct{}) error {
	select {
	case <-exited:
		return nil
	default:
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("regtest: SIGKILL %s: %w", name, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("regtest: %s (pid %d) not reaped 10s after SIGKILL", name, cmd.Process.Pid)
	}
}

// Exited is closed once the btcd process has exited and been reaped.
func (b *Btcd) Exited() <-chan struct{} { return b.exited }

func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("regtest: finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) (string, error) {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("regtest: random: %w", err)
	}
	return hex.EncodeToString(buf), nil
}
