package coldvault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is what coldvault exports on metrics_addr: where the hot wallet stands against its
// band, and whether coldvault can still see it. The band lives in coldvault.hcl, not in the
// cluster, so only coldvault can say the hot wallet is outside it; the alert rules in
// deploy/prometheus compare these gauges.
type Metrics struct {
	hotSat   *prometheus.GaugeVec
	bandSat  *prometheus.GaugeVec
	polls    *prometheus.CounterVec
	lastPoll prometheus.Gauge
}

// NewMetrics registers coldvault's collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		hotSat: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bankd_coldvault_hot_wallet_sat",
			Help: "The hot wallet's books (ledger satoshis) at coldvault's last successful look.",
		}, []string{"wallet"}),
		bandSat: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bankd_coldvault_band_sat",
			Help: "The hot wallet's band in satoshis (bound min, target or max), from coldvault.hcl and the customer liabilities.",
		}, []string{"wallet", "bound"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bankd_coldvault_polls_total",
			Help: "coldvault's looks at the hot wallet, by result (ok or error).",
		}, []string{"result"}),
		lastPoll: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bankd_coldvault_last_poll_ok_timestamp_seconds",
			Help: "Unix time of coldvault's last successful look at the hot wallet.",
		}),
	}
	for _, c := range []prometheus.Collector{m.hotSat, m.bandSat, m.polls, m.lastPoll} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("coldvault: register metrics: %w", err)
		}
	}
	return m, nil
}

// observe records the hot wallet's books and its band. A nil Metrics records nothing.
func (m *Metrics) observe(wallet string, hotSat, minSat, targetSat, maxSat int64) {
	if m == nil {
		return
	}
	m.hotSat.WithLabelValues(wallet).Set(float64(hotSat))
	m.bandSat.WithLabelValues(wallet, "min").Set(float64(minSat))
	m.bandSat.WithLabelValues(wallet, "target").Set(float64(targetSat))
	m.bandSat.WithLabelValues(wallet, "max").Set(float64(maxSat))
}

// polled counts one look, ok or not.
func (m *Metrics) polled(err error, now time.Time) {
	if m == nil {
		return
	}
	if err != nil {
		m.polls.WithLabelValues("error").Inc()
		return
	}
	m.polls.WithLabelValues("ok").Inc()
	m.lastPoll.Set(float64(now.UnixMilli()) / 1000)
}

// ListenMetrics opens the metrics port addr.
func ListenMetrics(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_addr: %w", err)
	}
	return ln, nil
}

// ServeMetrics serves reg's metrics as GET /metrics on ln until ctx ends. The endpoint is
// read-only but tells the hot wallet's balance: bind it to loopback or a monitoring network.
func ServeMetrics(ctx context.Context, ln net.Listener, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("coldvault: serve metrics: %w", err)
	}
	return nil
}
