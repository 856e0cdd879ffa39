package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/principal"
)

// Limits a token cannot raise: every client token may be held by an attacker, so what one
// token may hold at once is bounded, and what one request may send is sized to the largest
// valid request of its procedure.
const (
	// DefaultMaxCallsPerToken bounds the unary calls one token has in flight on one node.
	DefaultMaxCallsPerToken = 512
	// DefaultMaxStreamsPerToken bounds the event streams one token holds open on one node.
	DefaultMaxStreamsPerToken = 64
	// DefaultBodyReadTimeout bounds how long a client may take to send a request body.
	DefaultBodyReadTimeout = 30 * time.Second

	// maxSmallRequestBytes bounds every request but a batch of transfers or accounts on the
	// wire. The largest such valid request is an account or transfer with 16 metadata entries
	// of 64 + 256 bytes (about 6 KiB) or a multisig descriptor of 20 keys with origins (a few
	// KiB).
	maxSmallRequestBytes = 64 << 10
)

// maxWireBytes is the most a request to procedure may send on the wire (before decompression;
// Connect's ReadMaxBytes bounds the decoded message as well).
func (s *Server) maxWireBytes(procedure string) int64 {
	switch procedure {
	case bankdv1connect.LedgerServiceCreateTransfersProcedure, bankdv1connect.LedgerServiceCreateAccountsProcedure:
		return int64(s.maxBytes)
	case bankdv1connect.ClusterServiceRestoreSnapshotProcedure:
		return maxRestoreBytes // an admin's upload of a whole state, in small messages
	}
	return maxSmallRequestBytes
}

// An upload of a snapshot (admin) may be as large as the state and take as long as it takes
// to send it; each of its messages is still bounded by the decoded-message limit.
const (
	maxRestoreBytes       = 1 << 40
	restoreBodyReadTimout = time.Hour
)

// bodyReadTimeoutFor is how long a client may take to send its whole request body.
func (s *Server) bodyReadTimeoutFor(procedure string) time.Duration {
	if procedure == bankdv1connect.ClusterServiceRestoreSnapshotProcedure {
		return restoreBodyReadTimout
	}
	return s.bodyReadTimeout
}

// limitRequests bounds the body of every bankd RPC: its size per procedure, and the time the
// client takes to send it (a body trickled a byte a minute would otherwise hold a handler
// forever). The deadline is lifted once the body is read, so long-lived response streams are
// not cut.
func (s *Server) limitRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, s.maxWireBytes(r.URL.Path))
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(s.bodyReadTimeoutFor(r.URL.Path))); err == nil {
			r.Body = &deadlineLiftingBody{ReadCloser: r.Body, rc: rc}
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineLiftingBody clears the connection's read deadline once the request body has been
// read to its end.
type deadlineLiftingBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineLiftingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.lifted {
		b.lifted = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// tokenLimits counts what each token holds at once on this node.
type tokenLimits struct {
	maxCalls, maxStreams int

	mu   sync.Mutex
	held map[string]*tokenUse
}

type tokenUse struct{ calls, streams int }

func newTokenLimits(maxCalls, maxStreams int) *tokenLimits {
	return &tokenLimits{maxCalls: maxCalls, maxStreams: maxStreams, held: map[string]*tokenUse{}}
}

// acquire takes a call (or a stream) for the token named in ctx and returns its release, or a
// ResourceExhausted error when the token holds its maximum already.
func (l *tokenLimits) acquire(ctx context.Context, stream bool) (release func(), err error) {
	name := principal.From(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.held[name]
	if u == nil {
		u = &tokenUse{}
		l.held[name] = u
	}
	switch {
	case stream && u.streams >= l.maxStreams:
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"token %q holds %d event streams on this node, the most one token may; close one or retry later", name, u.streams))
	case !stream && u.calls >= l.maxCalls:
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"token %q has %d calls in flight on this node, the most one token may; retry later", name, u.calls))
	}
	if stream {
		u.streams++
	} else {
		u.calls++
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if stream {
			u.streams--
		} else {
			u.calls--
		}
		if u.calls == 0 && u.streams == 0 {
			delete(l.held, name)
		}
	}, nil
}

// streamsOf reports how many streams the token named name holds.
func (l *tokenLimits) streamsOf(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u := l.held[name]; u != nil {
		return u.streams
	}
	return 0
}

// stateHashCache keeps the last state hash computed, so that repeated calls at one applied
// index cost one scan of the store. Its lock is held across a computation: concurrent callers
// wait for that one scan instead of starting their own.
type stateHashCache struct {
	mu    sync.Mutex
	valid bool
	index uint64
	sum   [32]byte
}

func (c *stateHashCache) get(st stateReader) (uint64, [32]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid && st.AppliedIndex() == c.index {
		return c.index, c.sum, nil
	}
	index, sum, err := st.StateHash()
	if err != nil {
		return 0, [32]byte{}, err
	}
	c.valid, c.index, c.sum = true, index, sum
	return index, sum, nil
}
