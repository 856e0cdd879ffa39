// Package rpctest starts real in-process bankd clusters with their API servers for tests of
// the API and of its clients (bankctl). Every node is a real node.Node (Raft over loopback TCP,
// raft-boltdb, Pebble, memberlist) behind a real rpc.Server on its configured api_addr.
//
// It is test support only: nothing in the product imports it.
package rpctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/node"
	"github.com/bankd/bankd/rpc"
	"github.com/bankd/bankd/rpc/bearer"
)

// Tokens of every test cluster.
const (
	AdminToken  = "rpctest-admin"
	ClientToken = "rpctest-client"
)

// raftBlock has timings short enough for fast elections, yet long enough that a loaded
// 2-core machine does not see spurious ones.
const raftBlock = `
raft {
  heartbeat_timeout    = "250ms"
  election_timeout     = "250ms"
  leader_lease_timeout = "125ms"
  commit_timeout       = "5ms"
  apply_timeout        = "3s"
}
`

// waitTimeout bounds every wait of this package.
const waitTimeout = 20 * time.Second

// Cluster is a running test cluster.
type Cluster struct {
	t      testing.TB
	Config *node.Config
	Nodes  []*Node
	logs   *logBuffer
}

// Node is one member: the node, its API server and the API's base URL.
type Node struct {
	ID     string
	Node   *node.Node
	Server *rpc.Server
	// URL is the API base URL, e.g. http://127.0.0.1:40123.
	URL string

	stopAPI context.CancelFunc
	apiDone chan error
}

// Start writes a cluster.hcl for size nodes on free loopback ports, starts every node and its
// API, waits for a leader that every node knows and registers the teardown with t.Cleanup.
func Start(t testing.TB, size int) *Cluster {
	t.Helper()
	dir := t.TempDir()
	c := &Cluster{t: t, logs: &logBuffer{}}

	// API listeners stay open from here on, so their ports cannot be taken by anyone else.
	apiListeners := make([]net.Listener, size)
	for i := range apiListeners {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("rpctest: api listener: %v", err)
		}
		apiListeners[i] = ln
	}
	ports := freePorts(t, 2*size)
	var b strings.Builder
	b.WriteString("name = \"rpctest\"\n")
	b.WriteString(raftBlock)
	fmt.Fprintf(&b, "tokens {\n  admin = [%q]\n  write = [%q]\n}\n", AdminToken, ClientToken)
	for i := 0; i < size; i++ {
		fmt.Fprintf(&b, "node \"n%d\" {\n  region = \"r1\"\n  raft_addr = \"127.0.0.1:%d\"\n  gossip_addr = \"127.0.0.1:%d\"\n  api_addr = %q\n  data_dir = \"n%d\"\n}\n",
			i+1, ports[2*i], ports[2*i+1], apiListeners[i].Addr().String(), i+1)
	}
	path := filepath.Join(dir, "cluster.hcl")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("rpctest: write config: %v", err)
	}
	cfg, err := node.LoadConfig(path)
	if err != nil {
		t.Fatalf("rpctest: load config: %v", err)
	}
	c.Config = cfg
	t.Cleanup(c.stop)

	log := slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for i, nc := range cfg.Nodes {
		n, err := node.New(cfg, nc.ID, node.Options{
			Logger:   log,
			Version:  "rpctest",
			FSMFatal: func(err error) { t.Errorf("rpctest: node %s: state machine stopped: %v", nc.ID, err) },
		})
		if err != nil {
			t.Fatalf("rpctest: new node %s: %v", nc.ID, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		err = n.Start(ctx)
		cancel()
		if err != nil {
			t.Fatalf("rpctest: start node %s: %v", nc.ID, err)
		}
		srv, err := rpc.New(n, cfg, rpc.Options{Logger: log, ShutdownTimeout: 2 * time.Second})
		if err != nil {
			t.Fatalf("rpctest: api of %s: %v", nc.ID, err)
		}
		apiCtx, stopAPI := context.WithCancel(context.Background())
		tn := &Node{ID: nc.ID, Node: n, Server: srv, URL: "http://" + nc.APIAddr, stopAPI: stopAPI, apiDone: make(chan error, 1)}
		go func(ln net.Listener) { tn.apiDone <- srv.Serve(apiCtx, ln) }(apiListeners[i])
		c.Nodes = append(c.Nodes, tn)
	}
	c.WaitLeader()
	return c
}

func (c *Cluster) stop() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.stopAPI()
			<-n.apiDone
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = n.Node.Shutdown(ctx)
		}()
	}
	wg.Wait()
	if c.t.Failed() {
		c.t.Logf("rpctest: last log lines:\n%s", c.logs.tail(150))
	}
}

// WaitLeader waits until one node leads, is ready, and every node knows it; it returns the
// leader.
func (c *Cluster) WaitLeader() *Node {
	c.t.Helper()
	var leader *Node
	c.Eventually("a leader known to every node", func() bool {
		leader = nil
		for _, n := range c.Nodes {
			if n.Node.IsLeader() {
				leader = n
			}
		}
		if leader == nil {
			return false
		}
		for _, n := range c.Nodes {
			l, ok := n.Node.Leader()
			if !ok || l.NodeID != leader.ID || l.APIAddr == "" || n.Node.Ready() != nil {
				return false
			}
		}
		return true
	})
	return leader
}

// Leader returns the current leader, waiting for one.
func (c *Cluster) Leader() *Node { return c.WaitLeader() }

// Follower returns a node that is not the leader.
func (c *Cluster) Follower() *Node {
	c.t.Helper()
	leader := c.WaitLeader()
	for _, n := range c.Nodes {
		if n != leader {
			return n
		}
	}
	c.t.Fatal("rpctest: no follower in a one-node cluster")
	return nil
}

// WaitApplied waits until every node has applied index.
func (c *Cluster) WaitApplied(index uint64) {
	c.t.Helper()
	c.Eventually(fmt.Sprintf("every node applied index %d", index), func() bool {
		for _, n := range c.Nodes {
			if n.Node.FSM().AppliedIndex() < index {
				return false
			}
		}
		return true
	})
}

// URLs returns every node's API base URL, leader or not, in node order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.URL
	}
	return out
}

// Eventually polls cond until it holds, failing the test after a bound.
func (c *Cluster) Eventually(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("rpctest: timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Clients are Connect clients of one node's API.
type Clients struct {
	Ledger  bankdv1connect.LedgerServiceClient
	Lock    bankdv1connect.LockServiceClient
	Event   bankdv1connect.EventServiceClient
	Cluster bankdv1connect.ClusterServiceClient
	Wallet  bankdv1connect.WalletServiceClient
	Chain   bankdv1connect.ChainServiceClient
}

// Clients returns clients of n that send token; opts add e.g. connect.WithGRPC().
func (n *Node) Clients(token string, opts ...connect.ClientOption) Clients {
	opts = append(opts, connect.WithInterceptors(BearerInterceptor(token)))
	hc := http.DefaultClient
	return Clients{
		Ledger:  bankdv1connect.NewLedgerServiceClient(hc, n.URL, opts...),
		Lock:    bankdv1connect.NewLockServiceClient(hc, n.URL, opts...),
		Event:   bankdv1connect.NewEventServiceClient(hc, n.URL, opts...),
		Cluster: bankdv1connect.NewClusterServiceClient(hc, n.URL, opts...),
		Wallet:  bankdv1connect.NewWalletServiceClient(hc, n.URL, opts...),
		Chain:   bankdv1connect.NewChainServiceClient(hc, n.URL, opts...),
	}
}

// BearerInterceptor sends "Authorization: Bearer token" on every call, unary or streaming.
func BearerInterceptor(token string) connect.Interceptor { return bearer.Token(token) }

// freePorts finds count loopback ports free for both TCP and UDP (memberlist uses both).
func freePorts(t testing.TB, count int) []int {
	t.Helper()
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for attempts := 0; len(ports) < count; attempts++ {
		if attempts > 100*count {
			t.Fatal("rpctest: no free ports")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("rpctest: free port: %v", err)
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports
}

// logBuffer keeps the cluster's logs, shown when a test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// maxLogBytes bounds the kept logs; older lines are dropped.
const maxLogBytes = 4 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len()+len(p) > maxLogBytes {
		keep := l.buf.Bytes()[l.buf.Len()/2:]
		rest := append([]byte(nil), keep...)
		l.buf.Reset()
		l.buf.Write(rest)
	}
	return l.buf.Write(p)
}

func (l *logBuffer) tail(lines int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := strings.Split(strings.TrimRight(l.buf.String(), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// ApplyOnLeader proposes a command on whichever node leads, retrying while leadership moves
// (tests under load see elections), and returns the state machine's answer. Only for commands
// that are safe to repeat: an attempt whose outcome was unknown may have applied.
func (c *Cluster) ApplyOnLeader(typ bankdv1.CommandType, body proto.Message) (proto.Message, error) {
	c.t.Helper()
	var err error
	for range 50 {
		var res proto.Message
		res, err = c.WaitLeader().Node.Apply(context.Background(), typ, body, nil)
		if err == nil {
			return res, nil
		}
		var refused *fsm.Error
		if errors.As(err, &refused) {
			return nil, err // the state machine's answer, not a leadership change
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}
