// Package proccluster runs a bankd cluster as real OS processes on 127.0.0.1: it writes a
// cluster.hcl with free ports, starts one `bankd agent` per node, and lets a test or benchmark
// kill, stop, restart and wipe nodes and talk to them with Connect clients.
//
// It is for tests and benchmarks only; it never touches anything outside its own directory.
package proccluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/rpc/bearer"
)

// Tokens written into every generated cluster.hcl.
const (
	AdminToken  = "test-admin-token"
	ClientToken = "test-client-token"
)

// Options describe a cluster to start.
type Options struct {
	// Nodes is the number of nodes (default 3).
	Nodes int
	// Bin is the bankd binary (default $BANKD_BIN, else bin/bankd above the working dir).
	Bin string
	// Dir holds the config, data dirs and logs.
	Dir string
	// RaftBlock is the body of the raft { } block; empty uses settings tuned for loopback.
	RaftBlock string
	// Pprof gives every node a -pprof-addr (Node.PprofAddr).
	Pprof bool
	// ChainBlock, when set, is the body of the chain { } block (e.g. the rpc_* settings of a
	// regtest btcd, so that the leader runs the chain watcher).
	ChainBlock string
	// Extra is appended to cluster.hcl as is (e.g. lnd "<id>" { } blocks of a regtest pool).
	Extra string
}

// DefaultRaftBlock keeps elections fast on loopback while tolerating a loaded 2-core machine.
const DefaultRaftBlock = `
  heartbeat_timeout    = "300ms"
  election_timeout     = "300ms"
  leader_lease_timeout = "150ms"
  commit_timeout       = "5ms"
`

// Node is one bankd process.
type Node struct {
	ID         string
	APIAddr    string
	RaftAddr   string
	GossipAddr string
	DataDir    string
	LogPath    string
	PprofAddr  string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	exitCode int
}

// Cluster is a set of bankd processes sharing one cluster.hcl.
type Cluster struct {
	opts       Options
	ConfigPath string
	Nodes      []*Node
	httpClient *http.Client
}

// Start writes the config and starts every node. It does not wait for a leader.
func Start(opts Options) (*Cluster, error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Bin == "" {
		opts.Bin = DefaultBin()
	}
	if _, err := os.Stat(opts.Bin); err != nil {
		return nil, fmt.Errorf("bankd binary %s: %w (run `make build` or set BANKD_BIN)", opts.Bin, err)
	}
	if opts.RaftBlock == "" {
		opts.RaftBlock = DefaultRaftBlock
	}
	c := &Cluster{opts: opts, ConfigPath: filepath.Join(opts.Dir, "cluster.hcl"), httpClient: newHTTPClient()}
	ports, err := freePorts(4 * opts.Nodes)
	if err != nil {
		return nil, err
	}
	var hcl strings.Builder
	fmt.Fprintf(&hcl, "name = \"proccluster\"\n\nraft {%s}\n\ntokens {\n  admin = [%q]\n  write = [%q]\n}\n", opts.RaftBlock, AdminToken, ClientToken)
	if opts.ChainBlock != "" {
		fmt.Fprintf(&hcl, "\nchain {\n%s\n}\n", opts.ChainBlock)
	}
	if opts.Extra != "" {
		fmt.Fprintf(&hcl, "\n%s\n", opts.Extra)
	}
	for i := 0; i < opts.Nodes; i++ {
		n := &Node{
			ID:         fmt.Sprintf("n%d", i+1),
			RaftAddr:   fmt.Sprintf("127.0.0.1:%d", ports[4*i]),
			GossipAddr: fmt.Sprintf("127.0.0.1:%d", ports[4*i+1]),
			APIAddr:    fmt.Sprintf("127.0.0.1:%d", ports[4*i+2]),
		}
		if opts.Pprof {
			n.PprofAddr = fmt.Sprintf("127.0.0.1:%d", ports[4*i+3])
		}
		n.DataDir = filepath.Join(opts.Dir, "data", n.ID)
		n.LogPath = filepath.Join(opts.Dir, "logs", n.ID+".log")
		fmt.Fprintf(&hcl, "\nnode %q {\n  region      = \"local-%c\"\n  raft_addr   = %q\n  gossip_addr = %q\n  api_addr    = %q\n  data_dir    = %q\n}\n",
			n.ID, 'a'+i, n.RaftAddr, n.GossipAddr, n.APIAddr, n.DataDir)
		c.Nodes = append(c.Nodes, n)
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.ConfigPath, []byte(hcl.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	for i := range c.Nodes {
		if err := c.StartNode(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// DefaultBin finds the bankd binary: $BANKD_BIN, else bin/bankd in the nearest parent dir.
func DefaultBin() string {
	if b := os.Getenv("BANKD_BIN"); b != "" {
		return b
	}
	dir, _ := os.Getwd()
	for i := 0; i < 6; i++ {
		p := filepath.Join(dir, "bin", "bankd")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		dir = filepath.Dir(dir)
	}
	return "bin/bankd"
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, l)
		port := l.Addr().(*net.TCPAddr).Port
		// memberlist also needs the UDP port.
		if u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			u.Close()
			ports = append(ports, port)
		}
	}
	return ports, nil
}

// StartNode starts node i (again), appending to its log.
func (c *Cluster) StartNode(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("node %s is already running", n.ID)
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"agent", "-config", c.ConfigPath, "-node", n.ID, "-log-level", "info"}
	if n.PprofAddr != "" {
		args = append(args, "-pprof-addr", n.PprofAddr)
	}
	cmd := exec.Command(c.opts.Bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
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

// Running reports whether node i's process is alive.
func (c *Cluster) Running(i int) bool {
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

// Kill sends SIGKILL to node i and waits for it to die.
func (c *Cluster) Kill(i int) error { return c.signal(i, syscall.SIGKILL, 10*time.Second) }

// Pause stops node i with SIGSTOP: it keeps its sockets and state but does nothing until
// Resume (or Kill).
func (c *Cluster) Pause(i int) error { return c.send(i, syscall.SIGSTOP) }

// Resume continues node i after Pause.
func (c *Cluster) Resume(i int) error { return c.send(i, syscall.SIGCONT) }

func (c *Cluster) send(i int, sig syscall.Signal) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("node %s is not running", n.ID)
	}
	return n.cmd.Process.Signal(sig)
}

// Stop sends SIGTERM to node i and waits up to 30 s for a clean exit.
func (c *Cluster) Stop(i int) error { return c.signal(i, syscall.SIGTERM, 30*time.Second) }

func (c *Cluster) signal(i int, sig syscall.Signal, wait time.Duration) error {
	n := c.Nodes[i]
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		if sig != syscall.SIGKILL {
			return fmt.Errorf("node %s did not exit within %s of %s; killed", n.ID, wait, sig)
		}
	}
	n.mu.Lock()
	n.exitCode = cmd.ProcessState.ExitCode()
	n.cmd = nil
	n.mu.Unlock()
	return nil
}

// ExitCode reports the exit status of node i's last process after Stop or Kill (-1 when it
// was killed by a signal).
func (c *Cluster) ExitCode(i int) int {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exitCode
}

// Wipe deletes node i's data dir (the node must be stopped).
func (c *Cluster) Wipe(i int) error {
	if c.Running(i) {
		return fmt.Errorf("node %s is running", c.Nodes[i].ID)
	}
	return os.RemoveAll(c.Nodes[i].DataDir)
}

// Close kills every node.
func (c *Cluster) Close() {
	for i := range c.Nodes {
		_ = c.Kill(i)
	}
}

// Clients for one node.
type Clients struct {
	Ledger    bankdv1connect.LedgerServiceClient
	Locks     bankdv1connect.LockServiceClient
	Events    bankdv1connect.EventServiceClient
	Cluster   bankdv1connect.ClusterServiceClient
	Lightning bankdv1connect.LightningServiceClient
}

// Client returns Connect clients for node i using token.
func (c *Cluster) Client(i int, token string) *Clients {
	return NewClients(c.httpClient, "http://"+c.Nodes[i].APIAddr, token)
}

// NewClients builds Connect clients for baseURL that send token as a bearer token.
func NewClients(hc *http.Client, baseURL, token string) *Clients {
	opt := connect.WithInterceptors(bearer.Token(token))
	return &Clients{
		Ledger:    bankdv1connect.NewLedgerServiceClient(hc, baseURL, opt),
		Locks:     bankdv1connect.NewLockServiceClient(hc, baseURL, opt),
		Events:    bankdv1connect.NewEventServiceClient(hc, baseURL, opt),
		Cluster:   bankdv1connect.NewClusterServiceClient(hc, baseURL, opt),
		Lightning: bankdv1connect.NewLightningServiceClient(hc, baseURL, opt),
	}
}

func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: t}
}

// WaitLeader polls the running nodes until one reports a leader that is itself running, and
// returns that leader's index in Nodes.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	var lastErr error
	for {
		for i, n := range c.Nodes {
			if !c.Running(i) {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := c.Client(i, ClientToken).Cluster.Status(cctx, connect.NewRequest(&bankdv1.StatusRequest{}))
			cancel()
			if err != nil {
				lastErr = err
				continue
			}
			if resp.Msg.RaftState == "Leader" && resp.Msg.NodeId == n.ID {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no leader: %w (last error: %v)", ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitApplied waits until every running node has applied at least index.
func (c *Cluster) WaitApplied(ctx context.Context, index uint64) error {
	for {
		behind := ""
		for i, n := range c.Nodes {
			if !c.Running(i) {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := c.Client(i, ClientToken).Cluster.Status(cctx, connect.NewRequest(&bankdv1.StatusRequest{}))
			cancel()
			if err != nil || resp.Msg.AppliedIndex < index {
				behind = n.ID
				break
			}
		}
		if behind == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s has not applied index %d: %w", behind, index, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StateHashes returns the state hash of every running node once they all report the same
// applied index (polling until ctx ends).
func (c *Cluster) StateHashes(ctx context.Context) (map[string]string, uint64, error) {
	for {
		hashes := map[string]string{}
		var index uint64
		same := true
		for i, n := range c.Nodes {
			if !c.Running(i) {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
		select {
		case <-ctx.Done():
			return nil, 0, errors.New("nodes never reached the same applied index")
		case <-time.After(100 * time.Millisecond):
		}
	}
}
