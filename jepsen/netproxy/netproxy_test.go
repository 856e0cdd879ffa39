package netproxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// echoServer accepts connections on loopback and writes back whatever it reads, until the
// test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// newLink starts a server with one link to upstream, closed when the test ends.
func newLink(t *testing.T, upstream string, shape Shape) (*Server, *Link) {
	t.Helper()
	s := NewServer(nil)
	t.Cleanup(func() { s.Close() })
	l, err := s.Add("test", "127.0.0.1:0", upstream, shape)
	if err != nil {
		t.Fatal(err)
	}
	return s, l
}

// roundTrip writes msg on c, reads it back and returns how long that took.
func roundTrip(t *testing.T, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo through the link changed the bytes: %q, want %q", got, msg)
	}
	return took
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRoundTripTakesAtLeastTheLinksDelays(t *testing.T) {
	shape := Shape{Up: 20 * time.Millisecond, Down: 30 * time.Millisecond, Jitter: 2 * time.Millisecond}
	_, l := newLink(t, echoServer(t), shape)
	if l.Port() == 0 || !strings.HasPrefix(l.Addr(), "127.0.0.1:") {
		t.Fatalf("link listens on %q", l.Addr())
	}
	c := dial(t, l.Addr())
	// Each way may come in up to Jitter early.
	least := shape.RTT() - 2*shape.Jitter
	var took []time.Duration
	for i := range 5 {
		d := roundTrip(t, c, []byte("ping "+string(rune('a'+i))))
		if d < least {
			t.Fatalf("round trip %d took %s, less than the link's %s less its jitter", i, d, shape.RTT())
		}
		took = append(took, d)
	}
	slices.Sort(took)
	t.Logf("shape %s: round trips %v", shape, took)
}

func TestSetShapeAppliesToOpenConnections(t *testing.T) {
	_, l := newLink(t, echoServer(t), Shape{})
	c := dial(t, l.Addr())
	bare := roundTrip(t, c, []byte("before"))
	shape := Shape{Up: 10 * time.Millisecond, Down: 10 * time.Millisecond}
	if err := l.SetShape(shape); err != nil {
		t.Fatal(err)
	}
	if got := l.Shape(); got != shape {
		t.Fatalf("Shape() = %s, want %s", got, shape)
	}
	if d := roundTrip(t, c, []byte("after")); d < shape.RTT() {
		t.Fatalf("round trip after SetShape took %s, want at least %s", d, shape.RTT())
	}
	// Informative only: what the proxy hop costs a round trip on this machine.
	t.Logf("round trip through an unshaped link: %s", bare)
}

func TestBandwidthCapPassesEveryByte(t *testing.T) {
	_, l := newLink(t, echoServer(t), Shape{RateKBps: 2000})
	c := dial(t, l.Addr())
	msg := make([]byte, 256<<10)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	// Write and read concurrently: the echo cannot hold 256 KiB in the socket buffers alone.
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	start := time.Now()
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("bytes changed through a bandwidth-capped link")
	}
	t.Logf("256 KiB echoed through 2000 KB/s each way in %s", time.Since(start))
}

func TestShapesFinerThanAMillisecondAreRefused(t *testing.T) {
	tests := []struct {
		name  string
		shape Shape
		want  string
	}{
		{"sub-millisecond delay", Shape{Up: 250 * time.Microsecond}, "finer than"},
		{"negative delay", Shape{Down: -time.Millisecond}, "negative"},
		{"jitter above a delay", Shape{Up: 5 * time.Millisecond, Down: time.Millisecond, Jitter: 2 * time.Millisecond}, "jitter exceeds"},
		{"negative rate", Shape{RateKBps: -1}, "negative rate"},
	}
	s := NewServer(nil)
	defer s.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Add(tt.name, "127.0.0.1:0", "127.0.0.1:1", tt.shape)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Add with %s: %v, want an error containing %q", tt.shape, err, tt.want)
			}
		})
	}
}

func TestClosedServerStopsListeningAndRefusesLinks(t *testing.T) {
	s, l := newLink(t, echoServer(t), Shape{})
	if _, err := s.Add("test", "127.0.0.1:0", "127.0.0.1:1", Shape{}); err == nil {
		t.Fatal("a second link named test was accepted")
	}
	addr := l.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Close", addr)
	}
	if _, err := s.Add("other", "127.0.0.1:0", "127.0.0.1:1", Shape{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
