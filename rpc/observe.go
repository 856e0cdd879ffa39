package rpc

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API's own collectors.
type metrics struct {
	duration    *prometheus.HistogramVec
	authRefused *prometheus.CounterVec
	forwarded   *prometheus.CounterVec
	streams     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "bankd",
			Subsystem: "rpc",
			Name:      "request_duration_seconds",
			Help:      "Time to answer an API call (for streams: the stream's lifetime), by procedure and Connect code.",
			Buckets:   []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"procedure", "code"}),
		authRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bankd",
			Subsystem: "rpc",
			Name:      "auth_refused_total",
			Help:      "API calls refused for a missing, invalid or under-scoped token.",
		}, []string{"procedure", "code"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bankd",
			Subsystem: "rpc",
			Name:      "forwarded_total",
			Help:      "API calls this node forwarded to the leader.",
		}, []string{"procedure"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "bankd",
			Subsystem: "rpc",
			Name:      "event_streams",
			Help:      "Open WatchEvents streams.",
		}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.authRefused, m.forwarded, m.streams} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("rpc: register metrics: %w", err)
		}
	}
	return m, nil
}

// codeLabel is the metrics label of an outcome: "ok" or the Connect code name.
func codeLabel(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// edgeInterceptor is the one interceptor of the bankd services. Around every call it maps the
// handler's error to a Connect error (toConnectError), records latency by procedure and code,
// and writes the access log: debug for successes, warn for errors.
type edgeInterceptor struct{ s *Server }

func (e *edgeInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		release, err := e.s.limits.acquire(ctx, false)
		if err != nil {
			return nil, e.finish(ctx, req.Spec(), req.Peer(), req.Header(), start, err)
		}
		defer release()
		res, err := next(ctx, req)
		cerr := e.finish(ctx, req.Spec(), req.Peer(), req.Header(), start, err)
		if cerr != nil {
			return nil, cerr
		}
		return res, nil
	}
}

func (e *edgeInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (e *edgeInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		release, err := e.s.limits.acquire(ctx, true)
		if err != nil {
			return e.finish(ctx, conn.Spec(), conn.Peer(), conn.RequestHeader(), start, err)
		}
		defer release()
		err = next(ctx, conn)
		if cerr := e.finish(ctx, conn.Spec(), conn.Peer(), conn.RequestHeader(), start, err); cerr != nil {
			return cerr
		}
		return nil
	}
}

// finish maps err, records the call and returns the error to send (nil on success).
func (e *edgeInterceptor) finish(ctx context.Context, spec connect.Spec, peer connect.Peer, h http.Header, start time.Time, err error) *connect.Error {
	cerr, internal := toConnectError(err)
	cerr = unlessCallerGaveUp(ctx, spec, cerr)
	elapsed := time.Since(start)
	code := "ok"
	if cerr != nil {
		code = cerr.Code().String()
	}
	e.s.metrics.duration.WithLabelValues(spec.Procedure, code).Observe(elapsed.Seconds())

	attrs := []slog.Attr{
		slog.String("procedure", spec.Procedure),
		slog.String("code", code),
		slog.Duration("duration", elapsed),
		slog.String("peer", peer.Addr),
		slog.String("protocol", peer.Protocol),
	}
	if isForwarded(h) {
		attrs = append(attrs, slog.Bool("forwarded", true))
	}
	switch {
	case cerr == nil:
		e.s.log.LogAttrs(ctx, slog.LevelDebug, "api call", attrs...)
	case cerr.Code() == connect.CodeCanceled:
		// The caller went away (e.g. closed an event stream): routine, not an error.
		e.s.log.LogAttrs(ctx, slog.LevelDebug, "api call canceled by the caller", attrs...)
	case internal:
		attrs = append(attrs, slog.String("err", err.Error()))
		e.s.log.LogAttrs(ctx, slog.LevelError, "api call failed", attrs...)
	default:
		attrs = append(attrs, slog.String("err", cerr.Message()))
		if rc := cerr.Meta().Get(ResultCodeHeader); rc != "" {
			attrs = append(attrs, slog.String("result_code", rc))
		}
		e.s.log.LogAttrs(ctx, slog.LevelWarn, "api call failed", attrs...)
	}
	return cerr
}

// unlessCallerGaveUp keeps Canceled and DeadlineExceeded for calls whose caller's own context
// ended. Any other context that ended on the way (a leader's connection reset by its death, a
// driver's context cancelled by a leadership change) means the cluster could not finish the
// call: that is Unavailable, with the advice a retrying client needs.
func unlessCallerGaveUp(ctx context.Context, spec connect.Spec, cerr *connect.Error) *connect.Error {
	if cerr == nil || callerGaveUp(ctx) {
		return cerr
	}
	if c := cerr.Code(); c != connect.CodeCanceled && c != connect.CodeDeadlineExceeded {
		return cerr
	}
	advice := msgOutcomeUnknown
	if spec.IdempotencyLevel == connect.IdempotencyNoSideEffects || spec.StreamType == connect.StreamTypeServer {
		advice = "safe to retry"
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s; %s", cerr.Message(), advice))
}

// mountOperations adds /metrics, /healthz and /readyz.
func (s *Server) mountOperations(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	// /healthz says the process is up and serving HTTP; it never depends on the cluster, so
	// a supervisor does not restart a node just because it lost its quorum.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	// /readyz says whether this node can serve calls now (node.Ready), for load balancers.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.node.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}
