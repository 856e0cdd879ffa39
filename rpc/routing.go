package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/clustertls"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
	"github.com/bankd/bankd/node"
	"github.com/bankd/bankd/rpc/wire"
)

// ForwardedHeader marks a call that a follower forwarded to the leader. A node that receives
// a forwarded call while it is not the leader answers Unavailable instead of forwarding it
// again, so a call crosses at most one hop even while leadership moves.
const ForwardedHeader = "Bankd-Forwarded"

// MinIndexHeader is wire.MinIndexHeader: on a STALE read, the applied index the client has
// already read; the node waits (up to minIndexWait) until it has applied it.
const MinIndexHeader = wire.MinIndexHeader

// minIndexWait bounds how long a STALE read waits for this node to reach the client's
// Bankd-Min-Index before answering Unavailable.
const minIndexWait = time.Second

// waitMinIndex waits until st has applied the index in the request's Bankd-Min-Index header.
func waitMinIndex(ctx context.Context, st stateReader, nodeID string, h http.Header) error {
	v := h.Get(MinIndexHeader)
	if v == "" {
		return nil
	}
	want, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s header %q is not an index (a whole number)", MinIndexHeader, v))
	}
	// failpoint ignore-min-index: answer from whatever this node has applied.
	if failpoint.Enabled(failpoint.IgnoreMinIndex) {
		return nil
	}
	timer := time.NewTimer(minIndexWait)
	defer timer.Stop()
	for {
		changed := st.Changed() // before the check, so an apply between the two is not missed
		applied := st.AppliedIndex()
		if applied >= want {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return connect.NewError(connect.CodeUnavailable, fmt.Errorf(
				"node %s has applied index %d, behind the index %d this client has already read (waited %s); ask another node", nodeID, applied, want, minIndexWait))
		}
	}
}

// forwarder holds one Connect client per (leader address, procedure). Addresses come from
// the cluster configuration, so the cache is bounded by nodes × procedures.
type forwarder struct {
	http    *http.Client
	scheme  string // "https" or, under insecure_plaintext, "http"
	mu      sync.Mutex
	clients map[string]any // baseURL+procedure → *connect.Client[Req, Res]
}

func newForwarder(c *http.Client, store *clustertls.Store) *forwarder {
	scheme := "https"
	switch {
	case store == nil && c == nil:
		c, scheme = newH2CClient(), "http"
	case store == nil:
		scheme = "http"
	case c == nil:
		c = newMTLSClient(store)
	}
	return &forwarder{http: c, scheme: scheme, clients: make(map[string]any)}
}

// newMTLSClient speaks HTTP/2 over mutual TLS: it presents this node's certificate (the leader
// takes the Bankd-Forwarded header only from a node) and accepts only a node of the cluster.
func newMTLSClient(store *clustertls.Store) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           &protocols,
		TLSClientConfig:     store.ClientConfig(nil, []string{"h2"}),
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// newH2CClient speaks HTTP/2 without TLS, like the API port, so forwarded calls share a few
// multiplexed connections per leader.
func newH2CClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{
		Protocols:           &protocols,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}}
}

func (f *forwarder) closeIdle() { f.http.CloseIdleConnections() }

// clientFor returns the cached client for procedure at baseURL.
func clientFor[Req, Res any](f *forwarder, baseURL, procedure string) *connect.Client[Req, Res] {
	key := baseURL + procedure
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.clients[key].(*connect.Client[Req, Res]); ok {
		return c
	}
	c := connect.NewClient[Req, Res](f.http, key)
	f.clients[key] = c
	return c
}

// baseURL turns a configured api_addr ("host:port" or a URL) into a base URL.
func (f *forwarder) baseURL(apiAddr string) string {
	if strings.Contains(apiAddr, "://") {
		return strings.TrimRight(apiAddr, "/")
	}
	return f.scheme + "://" + apiAddr
}

func isForwarded(h http.Header) bool { return h.Get(ForwardedHeader) != "" }

// onLeader runs local on the leader; on a follower it forwards the very same call to the
// leader. Every write and every linearizable read goes through here: it is the only place that
// decides where a call runs.
func onLeader[Req, Res any](
	ctx context.Context,
	s *Server,
	req *connect.Request[Req],
	local func(context.Context, *Req) (*Res, error),
) (*connect.Response[Res], error) {
	if s.node.IsLeader() {
		res, err := local(ctx, req.Msg)
		if err == nil {
			return connect.NewResponse(res), nil
		}
		// ErrNotLeader means nothing was proposed (leadership moved before we could act), so
		// following the new leader is safe. Any other error is the answer.
		if !errors.Is(err, node.ErrNotLeader) {
			return nil, err
		}
	}
	if isForwarded(req.Header()) {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New(
			"this node is no longer the leader (the call was forwarded here); not applied, safe to retry"))
	}
	leader, ok := s.node.Leader()
	if !ok || leader.APIAddr == "" || leader.NodeID == s.node.ID() {
		return nil, node.ErrNoLeader
	}
	return forward[Req, Res](ctx, s, leader, req)
}

// apply proposes one command on the leader and returns its typed response. Refusals come back
// as *fsm.Error and are mapped by the edge interceptor.
func apply[T proto.Message](ctx context.Context, s *Server, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (T, error) {
	var zero T
	res, err := s.node.Apply(ctx, typ, body, fence)
	if err != nil {
		return zero, err
	}
	out, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("apply %s: unexpected response type %T", typ, res)
	}
	return out, nil
}

// read serves a read at the consistency the request asks for. STALE reads answer from the
// local state machine at once. Linearizable reads run on the leader (a follower forwards
// them) after a read barrier, which confirms leadership and waits for the state machine to
// apply everything committed before the read began.
func read[Req, Res any](
	ctx context.Context,
	s *Server,
	req *connect.Request[Req],
	consistency bankdv1.ReadConsistency,
	local func(st stateReader, meta *bankdv1.ReadMeta) (*Res, error),
) (*connect.Response[Res], error) {
	// failpoint stale-linearizable-read: serve every read locally, on any node, as if STALE.
	if failpoint.Enabled(failpoint.StaleLinearizableRead) {
		consistency = bankdv1.ReadConsistency_READ_CONSISTENCY_STALE
	}
	if consistency == bankdv1.ReadConsistency_READ_CONSISTENCY_STALE {
		if err := waitMinIndex(ctx, s.node.State(), s.node.ID(), req.Header()); err != nil {
			return nil, err
		}
		// Meta first: it then describes a state no newer than the one read, so the lag it
		// reports is an upper bound.
		meta := s.node.ReadMeta(true)
		res, err := local(s.node.State(), meta)
		if err != nil {
			return nil, err
		}
		meta.AppliedIndex = appliedAfterRead(s.node.State(), meta)
		return connect.NewResponse(res), nil
	}
	return onLeader(ctx, s, req, func(ctx context.Context, _ *Req) (*Res, error) {
		if err := s.node.ReadBarrier(ctx); err != nil {
			return nil, err
		}
		meta := s.node.ReadMeta(false)
		res, err := local(s.node.State(), meta)
		if err == nil {
			meta.AppliedIndex = appliedAfterRead(s.node.State(), meta)
		}
		return res, err
	})
}

// appliedAfterRead is the applied index a read answer reports: the state machine's index once
// the read is done. Entries may be applied while a read runs, and the answer may include them,
// so only an index taken after the read bounds the state it saw from above; a client that sends
// it back as Bankd-Min-Index then never reads an older state (an index taken before the read
// let jepsen's monotonic-reads checker see a value go back at one reported index).
func appliedAfterRead(st stateReader, meta *bankdv1.ReadMeta) uint64 {
	return max(meta.GetAppliedIndex(), st.AppliedIndex())
}

// forward sends req to the leader's API with the caller's credentials and returns the
// leader's answer as ours.
func forward[Req, Res any](ctx context.Context, s *Server, leader node.LeaderInfo, req *connect.Request[Req]) (*connect.Response[Res], error) {
	procedure := req.Spec().Procedure
	client := clientFor[Req, Res](s.fwd, s.fwd.baseURL(leader.APIAddr), procedure)
	out := connect.NewRequest(req.Msg)
	if auth := req.Header().Get("Authorization"); auth != "" {
		out.Header().Set("Authorization", auth)
	}
	out.Header().Set(ForwardedHeader, "1")
	s.metrics.forwarded.WithLabelValues(procedure).Inc()
	res, err := client.CallUnary(ctx, out)
	if err != nil {
		return nil, forwardError(ctx, err, leader, req.Spec().IdempotencyLevel == connect.IdempotencyNoSideEffects)
	}
	return connect.NewResponse(res.Msg), nil
}

// forwardError turns the error of a forwarded call into ours. The leader's own answers keep
// their code, message, details and result code; failures to reach the leader become
// Unavailable, saying whether a write may have been applied. Canceled and DeadlineExceeded are
// kept only when the caller's own context ended: connect-go also reports a connection reset by
// a leader that died as Canceled, and a caller that retries Unavailable must see Unavailable.
func forwardError(ctx context.Context, err error, leader node.LeaderInfo, read bool) error {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("forward to leader %s: %w", leader.NodeID, err)
	}
	if connect.IsWireError(ce) {
		// Recreate the error: handlers drop the metadata of wire errors, and we want the
		// result code to reach the caller.
		out := connect.NewError(ce.Code(), errors.New(ce.Message()))
		for _, d := range ce.Details() {
			out.AddDetail(d)
		}
		if rc := ce.Meta().Get(ResultCodeHeader); rc != "" {
			out.Meta().Set(ResultCodeHeader, rc)
		}
		return out
	}
	if ce.Code() == connect.CodeUnimplemented {
		// The leader's HTTP server has no such procedure (a 404): it runs an older binary, and
		// nothing was applied.
		return connect.NewError(connect.CodeUnimplemented, fmt.Errorf(
			"the leader, %s, does not serve this call: it runs an older bankd; upgrade it (not applied)", leader.NodeID))
	}
	if callerGaveUp(ctx) {
		code := connect.CodeCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || deadlinePassed(ctx) {
			code = connect.CodeDeadlineExceeded
		}
		if read {
			return connect.NewError(code, fmt.Errorf("forward to leader %s: %s", leader.NodeID, ce.Message()))
		}
		return connect.NewError(code, fmt.Errorf("forward to leader %s: %s; %s", leader.NodeID, ce.Message(), msgOutcomeUnknown))
	}
	advice := "safe to retry"
	switch {
	case !read && neverSent(err):
		advice = "not applied (the leader was never reached), safe to retry"
	case !read:
		advice = msgOutcomeUnknown
	}
	return connect.NewError(connect.CodeUnavailable,
		fmt.Errorf("cannot reach leader %s at %s: %s; %s", leader.NodeID, leader.APIAddr, ce.Message(), advice))
}

// callerGaveUp reports whether the caller's own context has ended (cancelled, or its deadline
// passed even if the timer has not fired yet).
func callerGaveUp(ctx context.Context) bool { return ctx.Err() != nil || deadlinePassed(ctx) }

func deadlinePassed(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// neverSent reports whether a forwarded call failed before any byte reached the leader: the
// connection could not even be made. Only then can a follower promise a write was not applied.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
