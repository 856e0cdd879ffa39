package netproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// Shape is what a Link does to the bytes it carries.
type Shape struct {
	// Up delays the bytes from the client to the upstream, Down the bytes coming back; a
	// request answered at once takes Up + Down longer than without the Link.
	Up, Down time.Duration
	// Jitter spreads each delay uniformly over [delay-Jitter, delay+Jitter), drawn per chunk
	// read. The bytes of a stream stay in order. It may not exceed Up or Down.
	Jitter time.Duration
	// RateKBps caps each direction at that many kilobytes a second; 0 is no cap.
	RateKBps int64
}

// RTT is the round-trip time the Link adds.
func (s Shape) RTT() time.Duration { return s.Up + s.Down }

// String describes the shape, e.g. "15ms/15ms±1ms".
func (s Shape) String() string {
	out := s.Up.String() + "/" + s.Down.String()
	if s.Jitter > 0 {
		out += "±" + s.Jitter.String()
	}
	if s.RateKBps > 0 {
		out += " " + strconv.FormatInt(s.RateKBps, 10) + "KB/s"
	}
	return out
}

func (s Shape) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"up", s.Up}, {"down", s.Down}, {"jitter", s.Jitter}} {
		if d.v < 0 {
			return fmt.Errorf("shape %s: negative %s delay %s", s, d.name, d.v)
		}
		if d.v%time.Millisecond != 0 {
			return fmt.Errorf("shape %s: %s delay %s is finer than toxiproxy's millisecond", s, d.name, d.v)
		}
	}
	if s.Jitter > s.Up || s.Jitter > s.Down {
		return fmt.Errorf("shape %s: jitter exceeds a delay (a delay cannot go below zero)", s)
	}
	if s.RateKBps < 0 {
		return fmt.Errorf("shape %s: negative rate", s)
	}
	return nil
}

// Server holds the Links of one process. Its zero value is not usable; see NewServer.
type Server struct {
	api *toxiproxy.ApiServer

	mu     sync.Mutex
	links  map[string]*Link
	closed bool
}

// NewServer returns a Server with no Links. toxiproxy's warnings and errors go to log (nil:
// slog.Default()).
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	zl := zerolog.New(slogWriter{log: log.With("component", "toxiproxy")}).Level(zerolog.WarnLevel)
	return &Server{
		api:   toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zl),
		links: map[string]*Link{},
	}
}

// Link is one proxy: it listens on Addr and forwards each connection to Upstream.
type Link struct {
	Name     string
	Upstream string
	proxy    *toxiproxy.Proxy

	mu    sync.Mutex
	shape Shape
}

// Add starts a Link named name (unique in s) listening on listen ("host:0" picks a free port)
// and forwarding to upstream, shaped by shape from its first connection on.
func (s *Server) Add(name, listen, upstream string, shape Shape) (*Link, error) {
	if err := shape.validate(); err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("link %s: %w", name, ErrClosed)
	}
	if _, ok := s.links[name]; ok {
		return nil, fmt.Errorf("link %s: name already used", name)
	}
	l := &Link{Name: name, Upstream: upstream, proxy: toxiproxy.NewProxy(s.api, name, listen, upstream)}
	// The toxics go in before the proxy listens, so no connection ever passes unshaped.
	if err := l.setToxics(shape); err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	if err := s.api.Collection.Add(l.proxy, true); err != nil {
		return nil, fmt.Errorf("link %s: listen on %s: %w", name, listen, err)
	}
	s.links[name] = l
	return l, nil
}

// Addr is the address the Link listens on, its port resolved.
func (l *Link) Addr() string {
	l.proxy.Lock()
	defer l.proxy.Unlock()
	return l.proxy.Listen
}

// Port is the port the Link listens on.
func (l *Link) Port() int {
	_, p, err := net.SplitHostPort(l.Addr())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Shape is the Link's current shape.
func (l *Link) Shape() Shape {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shape
}

// SetShape replaces the Link's shape, for its open connections as for new ones. Bytes already
// waiting out a delay are let through at once.
func (l *Link) SetShape(shape Shape) error {
	if err := shape.validate(); err != nil {
		return fmt.Errorf("link %s: %w", l.Name, err)
	}
	return l.setToxics(shape)
}

// toxic is the JSON toxiproxy's ToxicCollection takes (the same as its HTTP API's).
type toxic struct {
	Name       string  `json:"name"`
	Type       string  `json:"type"`
	Stream     string  `json:"stream"`
	Toxicity   float32 `json:"toxicity"`
	Attributes any     `json:"attributes"`
}

type latencyAttributes struct {
	LatencyMs int64 `json:"latency"`
	JitterMs  int64 `json:"jitter"`
}

type bandwidthAttributes struct {
	RateKBps int64 `json:"rate"`
}

func (l *Link) setToxics(shape Shape) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.proxy.Toxics.ResetToxics(context.Background())
	var toxics []toxic
	for _, d := range []struct {
		stream string
		delay  time.Duration
	}{{"upstream", shape.Up}, {"downstream", shape.Down}} {
		if d.delay > 0 {
			toxics = append(toxics, toxic{Name: "latency-" + d.stream, Type: "latency", Stream: d.stream, Toxicity: 1,
				Attributes: latencyAttributes{LatencyMs: d.delay.Milliseconds(), JitterMs: shape.Jitter.Milliseconds()}})
		}
		if shape.RateKBps > 0 {
			toxics = append(toxics, toxic{Name: "bandwidth-" + d.stream, Type: "bandwidth", Stream: d.stream, Toxicity: 1,
				Attributes: bandwidthAttributes{RateKBps: shape.RateKBps}})
		}
	}
	for _, t := range toxics {
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		if _, err := l.proxy.Toxics.AddToxicJson(bytes.NewReader(b)); err != nil {
			l.proxy.Toxics.ResetToxics(context.Background())
			l.shape = Shape{}
			return fmt.Errorf("add toxic %s: %w", t.Name, err)
		}
	}
	l.shape = shape
	return nil
}

// Links returns the Links of s.
func (s *Server) Links() []*Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Link, 0, len(s.links))
	for _, l := range s.links {
		out = append(out, l)
	}
	return out
}

// Close stops every Link, closing its listener and its connections. It is safe to call more
// than once.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	clear(s.links)
	return s.api.Collection.Clear()
}

// slogWriter receives toxiproxy's zerolog lines (one JSON object each) and logs each as one
// slog record at the line's level.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	var line struct {
		Level   string `json:"level"`
		Message string `json:"message"`
		Error   string `json:"error"`
		Proxy   string `json:"name"`
	}
	if err := json.Unmarshal(p, &line); err != nil {
		w.log.Warn(string(bytes.TrimSpace(p)))
		return len(p), nil
	}
	if strings.Contains(line.Error, net.ErrClosed.Error()) {
		// A Link closed by Close or by its peer's end: nothing went wrong.
		return len(p), nil
	}
	level := slog.LevelWarn
	if l, err := zerolog.ParseLevel(line.Level); err == nil && l >= zerolog.ErrorLevel {
		level = slog.LevelError
	}
	w.log.Log(context.Background(), level, line.Message, "link", line.Proxy, "err", line.Error)
	return len(p), nil
}

// ErrClosed is returned when a Link is added to a closed Server.
var ErrClosed = errors.New("netproxy: server closed")
