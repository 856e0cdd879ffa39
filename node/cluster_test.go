package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
)

// testCluster is an in-process cluster of real nodes (Raft over loopback TCP, raft-boltdb,
// Pebble, memberlist) in a temporary directory.
type testCluster struct {
	t     *testing.T
	cfg   *Config
	logs  *logCapture
	mu    sync.Mutex
	nodes map[string]*Node
	// options returns the Options for a node each time it starts; nil means defaults.
	options func(id string) Options
}

// testRaft is the test clusters' raft block: clusterhcl.InProcessRaft (fast elections that a
// loaded 2-core machine does not disturb), with proposals bounded at 2 s.
var testRaft = clusterhcl.Raft{ApplyTimeout: 2 * time.Second}.Or(clusterhcl.InProcessRaft)

// snapshotOften makes a leader snapshot and compact its log after a few entries, so that a
// follower kept down catches up only through a snapshot install.
var snapshotOften = clusterhcl.Raft{SnapshotInterval: 50 * time.Millisecond, SnapshotThreshold: 8, TrailingLogs: 4}

// newTestCluster writes a cluster.hcl for size nodes on free loopback ports with the shared
// writer (clusterhcl); raft's non-zero fields override testRaft. Nothing is started.
func newTestCluster(t *testing.T, size int, raft clusterhcl.Raft) *testCluster {
	t.Helper()
	layout, err := clusterhcl.WriteLoopback(t.TempDir(), clusterhcl.Spec{
		Size:   size,
		Raft:   raft.Or(testRaft),
		Tokens: clusterhcl.Tokens{Admin: []string{"a"}, Client: []string{"c"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(layout.Path)
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	c := &testCluster{t: t, cfg: cfg, logs: &logCapture{}, nodes: map[string]*Node{}}
	t.Cleanup(func() {
		c.mu.Lock()
		running := make([]*Node, 0, len(c.nodes))
		for _, n := range c.nodes {
			running = append(running, n)
		}
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, n := range running {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = n.Shutdown(ctx)
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.Logf("last log lines:\n%s", c.logs.tail(200))
		}
	})
	return c
}

// startTestCluster starts size nodes and waits for an established leader.
func startTestCluster(t *testing.T, size int, raft clusterhcl.Raft) *testCluster {
	t.Helper()
	c := newTestCluster(t, size, raft)
	for _, nc := range c.cfg.Nodes {
		c.start(nc.ID)
	}
	c.leader()
	return c
}

func (c *testCluster) start(id string) *Node {
	c.t.Helper()
	opts := Options{}
	if c.options != nil {
		opts = c.options(id)
	}
	opts.Logger = slog.New(c.logs).With("test", c.t.Name())
	opts.Version = "test"
	opts.RaftLogLevel = slog.LevelInfo
	opts.FSMFatal = func(err error) { c.t.Errorf("node %s: state machine stopped: %v", id, err) }
	n, err := New(c.cfg, id, opts)
	if err != nil {
		c.t.Fatalf("new node %s: %v", id, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		_ = n.Shutdown(ctx)
		c.t.Fatalf("start node %s: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return n
}

// stop shuts a node down gracefully.
func (c *testCluster) stop(id string) {
	c.t.Helper()
	n := c.take(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		c.t.Fatalf("shutdown %s: %v", id, err)
	}
}

// crash stops a node the hard way: no leadership transfer, no gossip leave.
func (c *testCluster) crash(id string) {
	c.t.Helper()
	n := c.take(id)
	n.mu.Lock()
	n.shutdownDone = make(chan struct{})
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.shutdownErr = n.shutdown(ctx, false)
	close(n.shutdownDone)
	if n.shutdownErr != nil {
		c.t.Fatalf("crash %s: %v", id, n.shutdownErr)
	}
}

func (c *testCluster) take(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[id]
	if !ok {
		c.t.Fatalf("node %s is not running", id)
	}
	delete(c.nodes, id)
	return n
}

func (c *testCluster) node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *testCluster) running() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, nc := range c.cfg.Nodes {
		if n, ok := c.nodes[nc.ID]; ok {
			out = append(out, n)
		}
	}
	return out
}

// leader waits for exactly one running node to be an established leader and returns it.
func (c *testCluster) leader() *Node {
	c.t.Helper()
	var leader *Node
	c.waitFor("an established leader", func() bool {
		leader = nil
		count := 0
		for _, n := range c.running() {
			if n.IsLeader() && n.ready.Load() {
				leader = n
				count++
			}
		}
		return count == 1
	})
	return leader
}

func (c *testCluster) followers() []*Node {
	var out []*Node
	for _, n := range c.running() {
		if !n.IsLeader() {
			out = append(out, n)
		}
	}
	return out
}

// waitFor polls cond until it holds or 15 seconds pass.
func (c *testCluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitConverged waits until every running node has applied the same index (at least min) and
// reports the same state hash.
func (c *testCluster) waitConverged(min uint64) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("all nodes to apply index %d and agree on the state hash", min), func() bool {
		var (
			index uint64
			sum   [32]byte
		)
		for i, n := range c.running() {
			idx, s, err := n.FSM().StateHash()
			if err != nil || idx < min {
				return false
			}
			if i == 0 {
				index, sum = idx, s
			} else if idx != index || s != sum {
				return false
			}
		}
		return true
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createAccount proposes an account through n and fails the test unless it is created.
func createAccount(t *testing.T, n *Node, id string, kind bankdv1.AccountKind) {
	t.Helper()
	_, err := n.Apply(testCtx(t), bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNT,
		&bankdv1.CreateAccountRequest{Account: &bankdv1.Account{Id: id, Currency: "BTC", Kind: kind}}, nil)
	if err != nil {
		t.Fatalf("create account %s: %v", id, err)
	}
}

// logCapture is a slog.Handler that keeps recent records for assertions and failure reports.
type logCapture struct {
	mu    sync.Mutex
	lines []string
	attrs []slog.Attr
	// root points at the shared buffer for handlers made by WithAttrs.
	root *logCapture
}

const logCaptureMax = 20000

func (l *logCapture) base() *logCapture {
	if l.root != nil {
		return l.root
	}
	return l
}

func (l *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (l *logCapture) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", r.Time.Format("15:04:05.000"), r.Level, r.Message)
	for _, a := range l.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	root := l.base()
	root.mu.Lock()
	defer root.mu.Unlock()
	if len(root.lines) >= logCaptureMax {
		root.lines = root.lines[logCaptureMax/2:]
	}
	root.lines = append(root.lines, b.String())
	return nil
}

func (l *logCapture) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logCapture{attrs: append(append([]slog.Attr(nil), l.attrs...), attrs...), root: l.base()}
}

func (l *logCapture) WithGroup(string) slog.Handler { return l }

// has reports whether a record contains every fragment.
func (l *logCapture) has(fragments ...string) bool {
	root := l.base()
	root.mu.Lock()
	defer root.mu.Unlock()
	for _, line := range root.lines {
		all := true
		for _, f := range fragments {
			if !strings.Contains(line, f) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (l *logCapture) tail(count int) string {
	root := l.base()
	root.mu.Lock()
	defer root.mu.Unlock()
	start := max(0, len(root.lines)-count)
	return strings.Join(root.lines[start:], "\n")
}

var errDriverTestFailure = errors.New("driver failed on purpose")
