package testcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/agent"
	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
	"github.com/bankd/bankd/node"
)

// The Spec of both modes and its parts; see clusterhcl.
type (
	Spec   = clusterhcl.Spec
	Raft   = clusterhcl.Raft
	Tokens = clusterhcl.Tokens
	// TokenBlock is a named token whose secret lives in a file.
	TokenBlock = clusterhcl.TokenBlock
	Chain      = clusterhcl.Chain
)

// Tokens of a Spec that names none.
const (
	AdminToken    = clusterhcl.AdminToken
	ClientToken   = clusterhcl.ClientToken
	ReadToken     = clusterhcl.ReadToken
	OperatorToken = clusterhcl.OperatorToken
	SignerToken   = clusterhcl.SignerToken
)

// Bounds of an in-process cluster.
const (
	// WaitTimeout bounds every wait (leader, applied index, state hashes, a node's start).
	WaitTimeout = 30 * time.Second
	// shutdownTimeout bounds a node's graceful stop (its API gets half).
	shutdownTimeout = 10 * time.Second
	// pollInterval is how often a condition that has no channel to wait on is checked again.
	pollInterval = 10 * time.Millisecond
	// logTailLines are shown when a test fails.
	logTailLines = 150
	// applyAttempts bounds ApplyOnLeader's retries while leadership moves, applyBackoff paces
	// them.
	applyAttempts = 50
	applyBackoff  = 100 * time.Millisecond
)

// Cluster is an in-process cluster of real agents. Create it with Start; t.Cleanup stops it.
type Cluster struct {
	t testing.TB
	// Spec is the spec the cluster was written from, its Raft defaults filled in.
	Spec Spec
	// Dir holds cluster.hcl and data/<node>.
	Dir    string
	Config *node.Config
	Nodes  []*Node

	logs   *logBuffer
	logger *slog.Logger
	hc     *http.Client
}

// Node is one member of an in-process cluster: an agent while running, its data dir always.
type Node struct {
	c *Cluster
	// ID is the node id in cluster.hcl (n1, n2, ...).
	ID string
	// APIAddr is the API's host:port and URL its base URL (https://host:port, or http:// for a
	// Plaintext spec).
	APIAddr string
	URL     string
	DataDir string

	mu    sync.Mutex
	agent *agent.Agent // nil while stopped
}

// Start writes cluster.hcl for spec on free loopback ports (Raft fields the spec leaves zero
// take clusterhcl.InProcessRaft), starts every node, waits for a leader that every node knows,
// and registers the cluster's teardown (and, if the test failed, a report of its logs) with
// t.Cleanup.
func Start(t testing.TB, spec Spec) *Cluster {
	t.Helper()
	spec.Raft = spec.Raft.Or(clusterhcl.InProcessRaft)
	logs := &logBuffer{}
	c := &Cluster{
		t: t, Spec: spec, Dir: t.TempDir(), logs: logs,
		logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	nodes, err := clusterhcl.LoopbackNodes(c.Dir, spec.Size)
	spec.Shape(nodes)
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	// The API listeners stay open from here on, so that nobody takes their ports before the
	// agents serve on them. They avoid the Raft and gossip ports LoopbackNodes chose, which are
	// free again and which the kernel may offer.
	listeners := make([]net.Listener, len(nodes))
	avoid := map[int]bool{}
	for _, p := range clusterhcl.NodePorts(nodes) {
		avoid[p] = true
	}
	for i := range nodes {
		ln, err := clusterhcl.ListenAvoiding(avoid)
		if err != nil {
			closeAll(listeners)
			t.Fatalf("testcluster: api listener: %v", err)
		}
		listeners[i] = ln
		nodes[i].APIAddr = ln.Addr().String()
	}
	path := c.Dir + "/cluster.hcl"
	if err := clusterhcl.Write(path, spec, nodes); err != nil {
		closeAll(listeners)
		t.Fatalf("testcluster: %v", err)
	}
	cfg, err := node.LoadConfig(path)
	if err != nil {
		closeAll(listeners)
		t.Fatalf("testcluster: load %s: %v", path, err)
	}
	c.Config = cfg
	scheme := ""
	if c.hc, scheme, err = apiclient.ForCluster(cfg.TLS.CAFile); err != nil {
		closeAll(listeners)
		t.Fatalf("testcluster: %v", err)
	}
	for _, nc := range cfg.Nodes {
		c.Nodes = append(c.Nodes, &Node{c: c, ID: nc.ID, APIAddr: nc.APIAddr, URL: scheme + "://" + nc.APIAddr, DataDir: nc.DataDir})
	}
	t.Cleanup(c.close)
	for i, n := range c.Nodes {
		if err := n.start(listeners[i]); err != nil {
			closeAll(listeners[i+1:])
			t.Fatalf("testcluster: %v", err)
		}
	}
	c.WaitLeader()
	return c
}

func closeAll(listeners []net.Listener) {
	for _, ln := range listeners {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// start runs a new agent for n on its data dir; ln is its API listener, nil to bind api_addr.
func (n *Node) start(ln net.Listener) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.agent != nil {
		closeAll([]net.Listener{ln})
		return fmt.Errorf("node %s is already running", n.ID)
	}
	t := n.c.t
	a, err := agent.New(n.c.Config, n.ID, agent.Options{
		Logger:          n.c.logger,
		Version:         "test",
		FSMFatal:        func(err error) { t.Errorf("testcluster: node %s: state machine stopped: %v", n.ID, err) },
		APIListener:     ln,
		ShutdownTimeout: shutdownTimeout,
	})
	if err != nil {
		return fmt.Errorf("new agent %s: %w", n.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		return errors.Join(fmt.Errorf("start %s: %w", n.ID, err), a.Shutdown(ctx))
	}
	n.agent = a
	return nil
}

// close stops every running node at once and reports the logs of a failed test.
func (c *Cluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Go(func() { _ = n.stop() })
	}
	wg.Wait()
	c.hc.CloseIdleConnections()
	if c.t.Failed() {
		c.t.Logf("testcluster: last log lines of the cluster (%s):\n%s", c.Dir, tail(c.logs.String(), logTailLines))
	}
}

// stop shuts n's agent down gracefully; stopping a stopped node does nothing.
func (n *Node) stop() error {
	n.mu.Lock()
	a := n.agent
	n.agent = nil
	n.mu.Unlock()
	if a == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*shutdownTimeout)
	defer cancel()
	return a.Shutdown(ctx)
}

// Logs returns every node's logs so far (the newest 4 MiB).
func (c *Cluster) Logs() string { return c.logs.String() }

// Agent returns n's running agent, or nil while it is stopped.
func (n *Node) Agent() *agent.Agent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.agent
}

// Running reports whether n has a running agent.
func (n *Node) Running() bool { return n.Agent() != nil }

// Node returns n's running node, failing the test when n is stopped.
func (n *Node) Node() *node.Node {
	a := n.Agent()
	if a == nil {
		n.c.t.Fatalf("testcluster: node %s is not running", n.ID)
	}
	return a.Node()
}

// FSM returns n's state machine, failing the test when n is stopped.
func (n *Node) FSM() *fsm.FSM { return n.Node().FSM() }

// Clients returns Connect clients of n's API that send token; opts add e.g.
// connect.WithGRPC().
func (n *Node) Clients(token string, opts ...connect.ClientOption) *apiclient.Clients {
	return apiclient.New(n.c.hc, n.URL, token, opts...)
}

// Stop shuts node n down gracefully: its API first, then the node, which hands leadership
// over if it leads.
func (n *Node) Stop() {
	n.c.t.Helper()
	if !n.Running() {
		n.c.t.Fatalf("testcluster: stop %s: not running", n.ID)
	}
	if err := n.stop(); err != nil {
		n.c.t.Fatalf("testcluster: stop %s: %v", n.ID, err)
	}
}

// Restart starts a stopped node again on its data dir (as it was, or wiped).
func (n *Node) Restart() {
	n.c.t.Helper()
	if err := n.start(nil); err != nil {
		n.c.t.Fatalf("testcluster: restart: %v", err)
	}
}

// Wipe deletes a stopped node's data dir: it comes back as a new Raft server.
func (n *Node) Wipe() {
	n.c.t.Helper()
	if n.Running() {
		n.c.t.Fatalf("testcluster: wipe %s: stop it first", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		n.c.t.Fatalf("testcluster: wipe %s: %v", n.ID, err)
	}
}

// running returns the nodes with a running agent, in node order, with their nodes.
func (c *Cluster) running() (nodes []*Node, agents []*agent.Agent) {
	for _, n := range c.Nodes {
		if a := n.Agent(); a != nil {
			nodes, agents = append(nodes, n), append(agents, a)
		}
	}
	return nodes, agents
}

// WaitLeader waits until one running node leads and every running node knows it (with its API
// address) and is ready; it returns the leader.
func (c *Cluster) WaitLeader() *Node {
	c.t.Helper()
	var leader *Node
	c.Eventually("a leader known to every running node", func() bool {
		leader = nil
		nodes, agents := c.running()
		for i, a := range agents {
			if a.Node().IsLeader() {
				leader = nodes[i]
			}
		}
		if leader == nil {
			return false
		}
		for _, a := range agents {
			l, ok := a.Node().Leader()
			if !ok || l.NodeID != leader.ID || l.APIAddr == "" || a.Node().Ready() != nil {
				return false
			}
		}
		return true
	})
	return leader
}

// Leader returns the current leader, waiting for one (WaitLeader).
func (c *Cluster) Leader() *Node { return c.WaitLeader() }

// Follower returns a running node that is not the leader.
func (c *Cluster) Follower() *Node {
	c.t.Helper()
	followers := c.Followers()
	if len(followers) == 0 {
		c.t.Fatal("testcluster: no running follower")
	}
	return followers[0]
}

// Followers returns the running nodes that do not lead, once a leader is known to all.
func (c *Cluster) Followers() []*Node {
	c.t.Helper()
	leader := c.WaitLeader()
	var out []*Node
	nodes, _ := c.running()
	for _, n := range nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// WaitApplied waits until every running node has applied index, on each state machine's
// change notification.
func (c *Cluster) WaitApplied(index uint64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	nodes, agents := c.running()
	for i, a := range agents {
		if err := a.Node().FSM().WaitApplied(ctx, index); err != nil {
			c.t.Fatalf("testcluster: node %s: %v", nodes[i].ID, err)
		}
	}
}

// WaitSameState waits until every running node has applied the same index with the same state
// hash, and returns them.
func (c *Cluster) WaitSameState() (index uint64, sum [32]byte) {
	c.t.Helper()
	c.Eventually("every running replica at the same applied index with the same state hash", func() bool {
		_, agents := c.running()
		for i, a := range agents {
			idx, s, err := a.Node().FSM().StateHash()
			if err != nil {
				return false
			}
			if i == 0 {
				index, sum = idx, s
			} else if idx != index || s != sum {
				return false
			}
		}
		return len(agents) > 0
	})
	return index, sum
}

// HTTPClient is an HTTP client that trusts the cluster CA (for calls apiclient does not make).
func (c *Cluster) HTTPClient() *http.Client { return c.hc }

// URLs returns every node's API base URL, running or not, in node order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.URL
	}
	return out
}

// Eventually checks cond every few milliseconds until it holds, failing the test after
// WaitTimeout. cond must only read: it is the condition waited for, not a retry loop.
func (c *Cluster) Eventually(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("testcluster: timed out after %s waiting for %s", WaitTimeout, what)
		}
		time.Sleep(pollInterval)
	}
}

// ApplyOnLeader proposes a command on whichever node leads, trying again on the next leader
// while leadership moves (tests under load see elections), and returns the state machine's
// answer: its refusal as an *fsm.Error, or the last failure after a bounded number of tries.
// Only for commands that are safe to repeat: an attempt whose outcome was unknown may have
// applied.
func (c *Cluster) ApplyOnLeader(typ bankdv1.CommandType, body proto.Message) (proto.Message, error) {
	c.t.Helper()
	var err error
	for range applyAttempts {
		var res proto.Message
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		res, err = c.WaitLeader().Node().Apply(ctx, typ, body, nil)
		cancel()
		var refused *fsm.Error
		if err == nil || errors.As(err, &refused) {
			return res, err
		}
		c.logger.Warn("testcluster: apply on the leader failed; trying the next leader", "type", typ, "err", err)
		// A backoff, not a wait for a condition: the next leader needs an election and its
		// Barrier, which no accessor of the node reports.
		time.Sleep(applyBackoff)
	}
	return nil, fmt.Errorf("testcluster: %s: %d attempts: %w", typ, applyAttempts, err)
}
