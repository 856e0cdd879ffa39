package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
)

// Bounds of a multi-process cluster.
const (
	// procStartTimeout bounds StartProcs' wait for a first leader.
	procStartTimeout = 60 * time.Second
	// procStopTimeout bounds a graceful stop (SIGTERM) before the process is killed.
	procStopTimeout = 30 * time.Second
	// procKillTimeout bounds the wait for a process to die after SIGKILL.
	procKillTimeout = 10 * time.Second
	// procCallTimeout bounds one status call while waiting for a condition.
	procCallTimeout = time.Second
	// procPollInterval paces the status calls of a wait.
	procPollInterval = 50 * time.Millisecond
	// procLogTailLines of each node are shown when a test fails.
	procLogTailLines = 40
)

// ProcOptions are the parts of a multi-process cluster that are not in its Spec.
type ProcOptions struct {
	// Bin is the bankd binary; empty means BankdBin().
	Bin string
	// Dir holds cluster.hcl, data/<node> and logs/<node>.log. StartProcs uses the test's
	// TempDir; LaunchProcs requires it.
	Dir string
	// Pprof gives every node a -pprof-addr on a free loopback port (Proc.PprofAddr).
	Pprof bool
}

// ProcCluster is a bankd cluster of OS processes sharing one cluster.hcl.
type ProcCluster struct {
	// Spec is the spec the cluster was written from, its Raft defaults filled in.
	Spec       Spec
	ConfigPath string
	// CAFile is the cluster CA clients must trust ("" for a Plaintext spec).
	CAFile string
	Nodes  []*Proc

	bin    string
	hc     *http.Client
	scheme string
}

// Proc is one bankd process of a ProcCluster.
type Proc struct {
	ID         string
	APIAddr    string
	RaftAddr   string
	GossipAddr string
	DataDir    string
	LogPath    string
	PprofAddr  string

	mu sync.Mutex
	// bin is the bankd binary the next start runs ("" means the cluster's).
	bin      string
	cmd      *exec.Cmd
	done     chan struct{}
	exitCode int
}

// BankdBin finds the bankd binary: $BANKD_BIN, else bin/bankd in the nearest of the working
// dir and its parents (the repository's, after `make build`).
func BankdBin() string {
	if b := os.Getenv("BANKD_BIN"); b != "" {
		return b
	}
	dir, _ := os.Getwd()
	for range 6 {
		p := filepath.Join(dir, "bin", "bankd")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		dir = filepath.Dir(dir)
	}
	return "bin/bankd"
}

// PrevBankdBin finds the previous release's bankd (the rolling-upgrade tests start on it):
// $BANKD_PREV_BIN, else bin/bankd-prev beside BankdBin() (`make prev` builds it from the
// commit the Makefile names). It returns "" when neither exists.
func PrevBankdBin() string {
	if b := os.Getenv("BANKD_PREV_BIN"); b != "" {
		return b
	}
	p := filepath.Join(filepath.Dir(BankdBin()), "bankd-prev")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// StartProcs starts a cluster of bankd processes for spec in the test's TempDir (Raft fields
// the spec leaves zero take clusterhcl.ProcessRaft), waits for a leader, and registers with
// t.Cleanup the kill of every process and, if the test failed, the tail of each node's log.
// It skips the test with -short.
func StartProcs(t testing.TB, spec Spec, opts ProcOptions) *ProcCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process cluster test; skipped with -short")
	}
	opts.Dir = t.TempDir()
	c, err := LaunchProcs(spec, opts)
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for i, n := range c.Nodes {
				t.Logf("testcluster: last log lines of %s (%s):\n%s", n.ID, n.LogPath, c.LogTail(i, procLogTailLines))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), procStartTimeout)
	defer cancel()
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("testcluster: the cluster never elected a leader: %v", err)
	}
	return c
}

// LaunchProcs writes opts.Dir/cluster.hcl for spec on free loopback ports and starts every
// node. It does not wait for a leader. The caller owns the processes: Close kills them.
func LaunchProcs(spec Spec, opts ProcOptions) (*ProcCluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("testcluster: ProcOptions.Dir is required")
	}
	if opts.Bin == "" {
		opts.Bin = BankdBin()
	}
	if _, err := os.Stat(opts.Bin); err != nil {
		return nil, fmt.Errorf("bankd binary %s: %w (run `make build` or set BANKD_BIN)", opts.Bin, err)
	}
	spec.Raft = spec.Raft.Or(clusterhcl.ProcessRaft)
	logDir := filepath.Join(opts.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	layout, err := clusterhcl.WriteLoopback(opts.Dir, spec)
	if err != nil {
		return nil, err
	}
	c := &ProcCluster{Spec: spec, ConfigPath: layout.Path, bin: opts.Bin}
	if !spec.Plaintext {
		c.CAFile = filepath.Join(opts.Dir, clusterhcl.CAFile)
	}
	if c.hc, c.scheme, err = apiclient.ForCluster(c.CAFile); err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	var pprofPorts []int
	if opts.Pprof {
		if pprofPorts, err = clusterhcl.FreePorts(len(layout.Nodes), clusterhcl.NodePorts(layout.Nodes)...); err != nil {
			return nil, err
		}
	}
	for i, n := range layout.Nodes {
		p := &Proc{
			ID: n.ID, APIAddr: n.APIAddr, RaftAddr: n.RaftAddr, GossipAddr: n.GossipAddr,
			DataDir: n.DataDir, LogPath: filepath.Join(logDir, n.ID+".log"),
		}
		if opts.Pprof {
			p.PprofAddr = "127.0.0.1:" + strconv.Itoa(pprofPorts[i])
		}
		c.Nodes = append(c.Nodes, p)
	}
	for i := range c.Nodes {
		if err := c.Restart(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// SetBin makes node i run bin from its next Restart on (a rolling upgrade or a downgrade: the
// same data dir and cluster.hcl under another binary). The running process is left alone.
func (c *ProcCluster) SetBin(i int, bin string) {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	n.bin = bin
}

// Bin is the binary node i runs (or will run at its next Restart).
func (c *ProcCluster) Bin(i int) string {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.bin != "" {
		return n.bin
	}
	return c.bin
}

// Restart starts node i's process (again) with its binary (see SetBin), appending to its log.
// Starting a running node is an error.
func (c *ProcCluster) Restart(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("node %s is already running", n.ID)
	}
	bin := n.bin
	if bin == "" {
		bin = c.bin
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("start %s: bankd binary: %w", n.ID, err)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	args := []string{"agent", "-config", c.ConfigPath, "-node", n.ID, "-log-level", "info"}
	if n.PprofAddr != "" {
		args = append(args, "-pprof-addr", n.PprofAddr)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a harness that dies must not leave nodes running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}(cmd, n.done)
	return nil
}

// Running reports whether node i's process is alive (a paused one is).
func (c *ProcCluster) Running(i int) bool {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Pid returns the process id of node i's current process, or 0 if it has none.
func (c *ProcCluster) Pid(i int) int {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Kill sends SIGKILL to node i and waits for it to die.
func (c *ProcCluster) Kill(i int) error { return c.signal(i, syscall.SIGKILL, procKillTimeout) }

// Stop sends SIGTERM to node i and waits for a clean exit, killing it after a bound.
func (c *ProcCluster) Stop(i int) error { return c.signal(i, syscall.SIGTERM, procStopTimeout) }

// Pause stops node i with SIGSTOP: it keeps its sockets and state but does nothing until
// Resume (or Kill).
func (c *ProcCluster) Pause(i int) error { return c.send(i, syscall.SIGSTOP) }

// Resume continues node i after Pause.
func (c *ProcCluster) Resume(i int) error { return c.send(i, syscall.SIGCONT) }

// Reload sends SIGHUP to node i: it reads cluster.hcl's tokens, its certificate and the gossip
// keyring again. It does not wait; the node logs "configuration reloaded" when done.
func (c *ProcCluster) Reload(i int) error { return c.send(i, syscall.SIGHUP) }

func (c *ProcCluster) send(i int, sig syscall.Signal) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("node %s is not running", n.ID)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, n.ID, err)
	}
	return nil
}

func (c *ProcCluster) signal(i int, sig syscall.Signal, wait time.Duration) error {
	n := c.Nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	// A paused process would not act on SIGTERM until continued.
	_ = cmd.Process.Signal(syscall.SIGCONT)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case <-done:
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-done
		if sig != syscall.SIGKILL {
			err = fmt.Errorf("node %s did not exit within %s of %s; killed", n.ID, wait, sig)
		}
	}
	n.mu.Lock()
	n.exitCode = cmd.ProcessState.ExitCode()
	n.cmd = nil
	n.mu.Unlock()
	return err
}

// WaitExit waits until node i's process exits by itself (a fail-stop, say) and returns its exit
// status (-1 when a signal killed it), as ExitCode does afterwards. Unlike Stop it sends
// nothing: when ctx ends first, the node is left running and ctx's error returned.
func (c *ProcCluster) WaitExit(ctx context.Context, i int) (int, error) {
	n := c.Nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return 0, fmt.Errorf("node %s is not running", n.ID)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return 0, fmt.Errorf("node %s is still running: %w", n.ID, ctx.Err())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.exitCode = cmd.ProcessState.ExitCode()
	if n.cmd == cmd {
		n.cmd = nil
	}
	return n.exitCode, nil
}

// ExitCode reports the exit status of node i's last process after Stop, Kill or WaitExit (-1
// when a signal killed it).
func (c *ProcCluster) ExitCode(i int) int {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exitCode
}

// Wipe deletes node i's data dir; the node must be stopped.
func (c *ProcCluster) Wipe(i int) error {
	if c.Running(i) {
		return fmt.Errorf("node %s is running", c.Nodes[i].ID)
	}
	return os.RemoveAll(c.Nodes[i].DataDir)
}

// Close kills every node.
func (c *ProcCluster) Close() {
	for i := range c.Nodes {
		_ = c.Kill(i)
	}
	c.hc.CloseIdleConnections()
}

// LogTail returns the last lines of node i's log.
func (c *ProcCluster) LogTail(i, lines int) string {
	b, err := os.ReadFile(c.Nodes[i].LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail(string(b), lines)
}

// Client returns Connect clients of node i's API that send token.
func (c *ProcCluster) Client(i int, token string) *apiclient.Clients {
	return apiclient.New(c.hc, c.URL(i), token)
}

// URL is node i's API base URL: https://host:port, or http:// for a Plaintext spec.
func (c *ProcCluster) URL(i int) string { return c.scheme + "://" + c.Nodes[i].APIAddr }

// HTTPClient is an HTTP client that trusts the cluster CA.
func (c *ProcCluster) HTTPClient() *http.Client { return c.hc }

// status asks running node i for its status, bounded by procCallTimeout.
func (c *ProcCluster) status(ctx context.Context, i int) (*bankdv1.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, procCallTimeout)
	defer cancel()
	resp, err := c.Client(i, ClientToken).Cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// pause waits procPollInterval, or returns ctx's error.
func pause(ctx context.Context) error {
	timer := time.NewTimer(procPollInterval)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// WaitLeader waits until a running node reports itself leader, and returns its index in Nodes.
func (c *ProcCluster) WaitLeader(ctx context.Context) (int, error) {
	var lastErr error
	for {
		for i, n := range c.Nodes {
			if !c.Running(i) {
				continue
			}
			st, err := c.status(ctx, i)
			if err != nil {
				lastErr = err
				continue
			}
			if st.RaftState == "Leader" && st.NodeId == n.ID {
				return i, nil
			}
		}
		if err := pause(ctx); err != nil {
			return -1, fmt.Errorf("no leader: %w (last error: %v)", err, lastErr)
		}
	}
}

// WaitApplied waits until every running node has applied at least index.
func (c *ProcCluster) WaitApplied(ctx context.Context, index uint64) error {
	for {
		behind := ""
		for i, n := range c.Nodes {
			if !c.Running(i) {
				continue
			}
			st, err := c.status(ctx, i)
			if err != nil || st.AppliedIndex < index {
				behind = n.ID
				break
			}
		}
		if behind == "" {
			return nil
		}
		if err := pause(ctx); err != nil {
			return fmt.Errorf("node %s has not applied index %d: %w", behind, index, err)
		}
	}
}

// StateHashes waits until every running node reports the same applied index and returns
// their state hashes by node id, with that index.
func (c *ProcCluster) StateHashes(ctx context.Context) (map[string]string, uint64, error) {
	for {
		hashes := map[string]string{}
		var index uint64
		same := true
		for i, n := range c.Nodes {
			if !c.Running(i) {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 5*procCallTimeout)
			resp, err := c.Client(i, AdminToken).Cluster.StateHash(cctx, connect.NewRequest(&bankdv1.StateHashRequest{}))
			cancel()
			if err != nil {
				same = false
				break
			}
			if len(hashes) > 0 && resp.Msg.AppliedIndex != index {
				same = false
			}
			index = resp.Msg.AppliedIndex
			hashes[n.ID] = resp.Msg.Sha256
		}
		if same {
			return hashes, index, nil
		}
		if err := pause(ctx); err != nil {
			return nil, 0, fmt.Errorf("nodes never reached the same applied index: %w", err)
		}
	}
}
