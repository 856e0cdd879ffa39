package payout

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the driver's counters; they count on the node that led when it acted.
type metrics struct {
	planned    *prometheus.CounterVec
	bumps      *prometheus.CounterVec
	broadcasts *prometheus.CounterVec
	queued     *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		planned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bankd", Subsystem: "payout", Name: "batches_planned_total",
			Help: "Transactions this node's payout driver planned, by queue (consolidation, sweep, split and channel are the driver's own).",
		}, []string{"queue"}),
		bumps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bankd", Subsystem: "payout", Name: "fee_bumps_total",
			Help: "Stuck transactions this node's payout driver bumped, by how: rbf (replaced by a higher-fee version) or cpfp (lifted by a child spending its change).",
		}, []string{"how"}),
		broadcasts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "bankd", Subsystem: "payout", Name: "broadcasts_total",
			Help: "Signed transactions sent to the chain node, by result: ok (accepted or already known) or refused.",
		}, []string{"result"}),
		queued: prometheus.NewDesc("bankd_payout_queued",
			"Withdrawals waiting in each queue for a transaction, as this node's state machine holds them (counted up to max_batch × 10).", []string{"queue"}, nil),
	}
}

// RegisterMetrics adds the driver's metrics to r.
func (d *Driver) RegisterMetrics(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{d.metrics.planned, d.metrics.bumps, d.metrics.broadcasts, queuedCollector{d}} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("payout: register metrics: %w", err)
		}
	}
	return nil
}

// queuedCollector reads the queues' lengths from the state machine at scrape time.
type queuedCollector struct{ d *Driver }

func (c queuedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.d.metrics.queued }

func (c queuedCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.d.cfg.Queues {
		queued, err := c.d.state.QueuedPayouts(q.Name, q.MaxBatch*10)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.d.metrics.queued, prometheus.GaugeValue, float64(len(queued)), q.Name)
	}
}
