package hosts

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bankd/bankd/jepsen/netproxy"
)

func TestNewRegions(t *testing.T) {
	ms := time.Millisecond
	r, err := NewRegions(3, []time.Duration{30 * ms, 50 * ms, 80 * ms}, 0, ms)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		a, b int
		rtt  time.Duration
		want netproxy.Shape
	}{
		{0, 1, 30 * ms, netproxy.Shape{Up: 15 * ms, Down: 15 * ms, Jitter: ms}},
		{1, 0, 30 * ms, netproxy.Shape{Up: 15 * ms, Down: 15 * ms, Jitter: ms}},
		{0, 2, 50 * ms, netproxy.Shape{Up: 25 * ms, Down: 25 * ms, Jitter: ms}},
		{1, 2, 80 * ms, netproxy.Shape{Up: 40 * ms, Down: 40 * ms, Jitter: ms}},
		{4, 2, 80 * ms, netproxy.Shape{Up: 40 * ms, Down: 40 * ms, Jitter: ms}}, // host 4 is in region 1
		{3, 0, 0, netproxy.Shape{}}, // same region: no jitter either
	}
	for _, tt := range tests {
		if got := r.Between(tt.a, tt.b); got != tt.rtt {
			t.Errorf("Between(%d, %d) = %s, want %s", tt.a, tt.b, got, tt.rtt)
		}
		if got := r.Shape(tt.a, tt.b); got != tt.want {
			t.Errorf("Shape(%d, %d) = %s, want %s", tt.a, tt.b, got, tt.want)
		}
	}
	if s := (Regions{RTT: [][]time.Duration{{0, 31 * ms}, {31 * ms, 0}}}).Shape(0, 1); s.Up+s.Down != 31*ms || s.Up < s.Down {
		t.Errorf("an odd RTT of 31ms is split %s", s)
	}

	for _, bad := range []struct {
		name    string
		count   int
		between []time.Duration
	}{
		{"too few times", 3, []time.Duration{30 * ms}},
		{"no regions", 0, nil},
		{"negative", 2, []time.Duration{-ms}},
	} {
		if _, err := NewRegions(bad.count, bad.between, 0, 0); err == nil {
			t.Errorf("%s: accepted", bad.name)
		}
	}
	if _, err := DefaultRegions(4); err == nil {
		t.Error("DefaultRegions(4) made up round-trip times")
	}
	if d, err := DefaultRegions(3); err != nil || d.Between(1, 2) != 80*ms || d.Between(0, 0) != 0 {
		t.Errorf("DefaultRegions(3) = %s, %v", d, err)
	}
}

// inNetns runs f on an OS thread moved into namespace ns: sockets f opens belong to ns and stay
// there, whichever thread later uses them.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is released only once it is back home; otherwise it dies with the goroutine.
		self, e := os.Open("/proc/thread-self/ns/net")
		if e != nil {
			err = e
			return
		}
		defer self.Close()
		target, e := os.Open("/run/netns/" + ns)
		if e != nil {
			err = e
			return
		}
		defer target.Close()
		if e := setns(target); e != nil {
			err = fmt.Errorf("setns %s: %w", ns, e)
			return
		}
		f()
		if e := setns(self); e != nil {
			err = fmt.Errorf("setns back from %s: %w", ns, e)
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
	if err != nil {
		t.Fatal(err)
	}
}

func setns(f *os.File) error { return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET) }

// lineEcho is a line echo server inside a namespace that remembers each line it received and
// where the connection came from.
type lineEcho struct {
	mu      sync.Mutex
	lines   []string
	remotes []string
}

func (e *lineEcho) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		e.remotes = append(e.remotes, c.RemoteAddr().String())
		e.mu.Unlock()
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				e.mu.Lock()
				e.lines = append(e.lines, strings.TrimSpace(line))
				e.mu.Unlock()
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}()
	}
}

func (e *lineEcho) received(line string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.lines {
		if l == line {
			return true
		}
	}
	return false
}

// echoOnce sends line on c and waits up to wait for it to come back.
func echoOnce(c net.Conn, line string, wait time.Duration) (time.Duration, error) {
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return 0, err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	if strings.TrimSpace(got) != line {
		return 0, fmt.Errorf("echo %q, want %q", got, line)
	}
	return time.Since(start), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestLinksDelayAndPartitionNamespaceTraffic checks the plumbing of regions without bankd: a
// connection from one host's namespace to another's port crosses its Link (the server sees the
// bridge address) and takes at least the regions' RTT; a partition and one-way drops cut it
// where the address rules alone would not (the Link's leg has the bridge's address), and a heal
// lets it through again. No route_localnet is needed: the DNAT target is the bridge address,
// not loopback.
func TestLinksDelayAndPartitionNamespaceTraffic(t *testing.T) {
	requireHosts(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	regions, err := DefaultRegions(3)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 2*time.Minute)
	c, err := Create(ctx, Options{Nodes: 3, Bin: self, Dir: t.TempDir(), Regions: regions})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if got := len(c.proxies.Links()); got != 3*2*len(peerPorts) {
		t.Fatalf("%d links for 3 hosts, want %d", got, 3*2*len(peerPorts))
	}

	server := &lineEcho{}
	n2Raft := net.JoinHostPort(c.Hosts[1].IP, strconv.Itoa(raftPort))
	inNetns(t, c.Hosts[1].Netns, func() {
		ln, err := net.Listen("tcp", n2Raft)
		if err != nil {
			t.Errorf("listen in %s: %v", c.Hosts[1].Netns, err)
			return
		}
		t.Cleanup(func() { ln.Close() })
		go server.serve(ln)
	})
	dialFrom := func(i int) (net.Conn, error) {
		var conn net.Conn
		var err error
		inNetns(t, c.Hosts[i].Netns, func() { conn, err = net.DialTimeout("tcp", n2Raft, 2*time.Second) })
		if conn != nil {
			t.Cleanup(func() { conn.Close() })
		}
		return conn, err
	}

	// n1 (region 0) and n3 (region 2) each reach n2 (region 1) through their own Link.
	conns := map[int]net.Conn{}
	for _, i := range []int{0, 2} {
		conn, err := dialFrom(i)
		if err != nil {
			t.Fatalf("dial %s from %s: %v", n2Raft, c.Hosts[i].ID, err)
		}
		if conn.RemoteAddr().String() != n2Raft {
			t.Fatalf("%s's connection is to %s, want %s (the DNAT is invisible to the client)", c.Hosts[i].ID, conn.RemoteAddr(), n2Raft)
		}
		conns[i] = conn
		least := c.RTT(i, 1) - 2*regions.Jitter
		for k := range 3 {
			took, err := echoOnce(conn, fmt.Sprintf("%s-%d", c.Hosts[i].ID, k), 5*time.Second)
			if err != nil {
				t.Fatalf("echo from %s: %v", c.Hosts[i].ID, err)
			}
			if took < least {
				t.Fatalf("round trip %s->n2 took %s, less than the regions' %s", c.Hosts[i].ID, took, c.RTT(i, 1))
			}
			t.Logf("%s->n2 round trip %s (rtt %s)", c.Hosts[i].ID, took, c.RTT(i, 1))
		}
	}
	server.mu.Lock()
	for _, r := range server.remotes {
		if host, _, _ := net.SplitHostPort(r); host != c.GatewayIP {
			t.Errorf("n2 saw a connection from %s, want the Link's address %s", r, c.GatewayIP)
		}
	}
	server.mu.Unlock()

	// n1 cut off: its open connection and a new one fail, n3's still works.
	if err := c.Partition(ctx, [][]int{{0}}); err != nil {
		t.Fatal(err)
	}
	if _, err := echoOnce(conns[0], "n1-partitioned", time.Second); !isTimeout(err) {
		t.Fatalf("echo from n1 while partitioned: %v, want a timeout", err)
	}
	if server.received("n1-partitioned") {
		t.Fatal("n2 received n1's line through the partition")
	}
	if conn, err := dialFrom(0); err == nil {
		conn.Close()
		t.Fatal("n1 connected to n2 through the partition")
	}
	if _, err := echoOnce(conns[2], "n3-during", 5*time.Second); err != nil {
		t.Fatalf("n3 cut off by n1's partition: %v", err)
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}

	// One way: n2's packets to n1 dropped. n1's line reaches n2 over n1's connection, the echo
	// does not come back.
	if err := c.OneWay(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	conn, err := dialFrom(0)
	if err == nil {
		conn.Close()
		t.Fatal("n1 connected to n2 while n2's answers are dropped")
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err = dialFrom(0)
	if err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
	if err := c.OneWay(ctx, 1, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := echoOnce(conn, "n1-oneway-to", time.Second); !isTimeout(err) {
		t.Fatalf("echo while n2->n1 is dropped: %v, want a timeout", err)
	}
	if !server.received("n1-oneway-to") {
		t.Fatal("n1's line did not reach n2, though only n2->n1 is dropped")
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}

	// The other way: n1's packets to n2 dropped; nothing of n1's reaches n2.
	conn, err = dialFrom(0)
	if err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
	if err := c.OneWay(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := echoOnce(conn, "n1-oneway-from", time.Second); !isTimeout(err) {
		t.Fatalf("echo while n1->n2 is dropped: %v, want a timeout", err)
	}
	if server.received("n1-oneway-from") {
		t.Fatal("n1's line reached n2 though n1->n2 is dropped")
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err = dialFrom(0)
	if err != nil {
		t.Fatalf("dial after the last heal: %v", err)
	}
	if _, err := echoOnce(conn, "n1-healed", 5*time.Second); err != nil {
		t.Fatalf("echo after the last heal: %v", err)
	}
}
