package lnpool

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Reconcile compares, per node that is not retired, the posted balance of its ledger account
// with what lnd holds: local channel balance plus outgoing HTLCs not yet resolved. While a
// payment is in flight both sides still count it (the ledger holds it pending, lnd in an HTLC),
// so the difference reads zero at any time unless money moved outside bankd (channels opened or
// closed by hand, routing fees earned, fees with a fraction of a satoshi).
func (p *Pool) Reconcile(ctx context.Context) ([]*bankdv1.NodeReconciliation, error) {
	if _, err := p.running(); err != nil {
		return nil, err
	}
	return p.reconcile(ctx)
}

func (p *Pool) reconcile(ctx context.Context) ([]*bankdv1.NodeReconciliation, error) {
	nodes, err := p.state.LndNodes()
	if err != nil {
		return nil, err
	}
	var out []*bankdv1.NodeReconciliation
	for _, n := range nodes {
		if n.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED || isLost(n) || n.Pubkey == "" {
			continue
		}
		r := &bankdv1.NodeReconciliation{NodeId: n.Id}
		out = append(out, r)
		acc, err := p.state.Account(n.AccountId)
		if err != nil {
			return nil, fmt.Errorf("ledger account of lnd %q: %w", n.Id, err)
		}
		r.LedgerSat = acc.GetBalance().GetPosted()
		c, err := p.client(ctx, n)
		if err != nil {
			r.Error = err.Error()
			continue
		}
		bctx, cancel := context.WithTimeout(ctx, healthTimeout)
		bal, err := c.ChannelBalance(bctx)
		cancel()
		if err != nil {
			r.Error = err.Error()
			continue
		}
		r.LndSat = (bal.LocalMsat + bal.UnsettledLocalMsat) / 1000
		r.DifferenceSat = r.LndSat - r.LedgerSat
	}
	return out, nil
}

// updateReconciliationMetric refreshes the per-node difference gauge.
func (p *Pool) updateReconciliationMetric(ctx context.Context) {
	rs, err := p.reconcile(ctx)
	if err != nil {
		return
	}
	for _, r := range rs {
		if r.Error == "" {
			p.metrics.difference.WithLabelValues(r.NodeId).Set(float64(r.DifferenceSat))
		}
	}
}

// metrics of the pool, registered by RegisterMetrics.
type metrics struct {
	healthy     *prometheus.GaugeVec
	difference  *prometheus.GaugeVec
	payments    *prometheus.CounterVec
	settlements prometheus.Counter
	invoices    prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "bankd", Subsystem: "lnpool", Name: "node_healthy",
			Help: "1 when the pool node answered from the right network and is synced to the chain (leader only)."}, []string{"lnd"}),
		difference: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "bankd", Subsystem: "lnpool", Name: "reconciliation_difference_sat",
			Help: "lnd's local balance plus outgoing HTLCs less the node's ledger account; should read zero (leader only)."}, []string{"lnd"}),
		payments: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "bankd", Subsystem: "lnpool", Name: "payments_resolved_total",
			Help: "Payments this node, as leader, recorded as succeeded or failed."}, []string{"outcome"}),
		settlements: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "bankd", Subsystem: "lnpool", Name: "invoice_settlements_total",
			Help: "Invoice settlements this node, as leader, credited."}),
		invoices: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "bankd", Subsystem: "lnpool", Name: "invoices_created_total",
			Help: "Invoices this node, as leader, issued."}),
	}
}

// RegisterMetrics adds the pool's metrics to r.
func (p *Pool) RegisterMetrics(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{p.metrics.healthy, p.metrics.difference, p.metrics.payments, p.metrics.settlements, p.metrics.invoices} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("lnpool: register metrics: %w", err)
		}
	}
	return nil
}
