package node

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// metrics holds the node's Prometheus instruments. Gauges are read from Raft at scrape time, so
// nothing has to keep them up to date.
type metrics struct {
	n *Node

	applyLatency  *prometheus.HistogramVec
	leaderChanges prometheus.Counter
	// peerRefused counts peers refused by transport: "raft" (TLS or identity) and "gossip"
	// (not a member of cluster.hcl at its address).
	peerRefused *prometheus.CounterVec
	// coalescedRequests counts CreateTransfers requests per coalesced entry (coalesce.go).
	coalescedRequests prometheus.Histogram
	// logWrite, applyBatch and storeCommit time the two slow steps of every write on every
	// node (stages.go); writeStall adds up Pebble's write stalls.
	logWrite    prometheus.Histogram
	applyBatch  prometheus.Histogram
	storeCommit prometheus.Histogram
	writeStall  prometheus.Counter

	state        *prometheus.Desc
	term         *prometheus.Desc
	commitIndex  *prometheus.Desc
	appliedIndex *prometheus.Desc
	lastContact  *prometheus.Desc
	certExpiry   *prometheus.Desc
}

func newMetrics(n *Node) *metrics {
	labels := prometheus.Labels{"node": n.self.ID}
	return &metrics{
		n: n,
		applyLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   "bankd",
			Subsystem:   "raft",
			Name:        "apply_duration_seconds",
			Help:        "Time from proposing a command to its state machine result, by command type.",
			ConstLabels: labels,
			Buckets:     []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"type"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   "bankd",
			Subsystem:   "raft",
			Name:        "leadership_gained_total",
			Help:        "Times this node became leader.",
			ConstLabels: labels,
		}),
		peerRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   "bankd",
			Name:        "peer_refused_total",
			Help:        "Raft connections and gossip members refused: no or a wrong certificate, a certificate speaking for another node, a member not in cluster.hcl.",
			ConstLabels: labels,
		}, []string{"transport"}),
		coalescedRequests: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace:   "bankd",
			Subsystem:   "raft",
			Name:        "coalesced_requests",
			Help:        "CreateTransfers requests the leader put into one Raft entry, for entries of more than one.",
			ConstLabels: labels,
			Buckets:     []float64{2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
		logWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace:   "bankd",
			Subsystem:   "raft",
			Name:        "log_write_duration_seconds",
			Help:        "Time to append entries to the Raft log and fsync it, per write (the leader before it replicates, a follower before it acknowledges).",
			ConstLabels: labels,
			Buckets:     stageBuckets,
		}),
		applyBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace:   "bankd",
			Subsystem:   "fsm",
			Name:        "apply_batch_duration_seconds",
			Help:        "Time the state machine took to apply one batch of committed entries, its store commit included.",
			ConstLabels: labels,
			Buckets:     stageBuckets,
		}),
		storeCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace:   "bankd",
			Subsystem:   "fsm",
			Name:        "store_commit_duration_seconds",
			Help:        "Time of Pebble's commit of one applied batch (memtable and unsynced WAL write), write stalls included.",
			ConstLabels: labels,
			Buckets:     stageBuckets,
		}),
		writeStall: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   "bankd",
			Subsystem:   "fsm",
			Name:        "store_write_stall_seconds_total",
			Help:        "Time applies waited on Pebble's write stalls: memtables not flushed yet, or too many level-0 files.",
			ConstLabels: labels,
		}),
		certExpiry:   prometheus.NewDesc("bankd_tls_cert_not_after_seconds", "Unix time at which this node's TLS certificate expires.", nil, labels),
		state:        prometheus.NewDesc("bankd_raft_state", "1 for the Raft state this node is in, 0 for the others.", []string{"state"}, labels),
		term:         prometheus.NewDesc("bankd_raft_term", "Current Raft term.", nil, labels),
		commitIndex:  prometheus.NewDesc("bankd_raft_commit_index", "Highest Raft index known to be committed.", nil, labels),
		appliedIndex: prometheus.NewDesc("bankd_fsm_applied_index", "Highest Raft index applied by the state machine.", nil, labels),
		lastContact:  prometheus.NewDesc("bankd_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader).", nil, labels),
	}
}

// stageBuckets cover 0.25 ms to 8 s in powers of two, fine enough to read a p99 of an fsync.
var stageBuckets = prometheus.ExponentialBuckets(0.00025, 2, 16)

func (m *metrics) observeApplyBatch(took time.Duration, st fsm.ApplyStats) {
	m.applyBatch.Observe(took.Seconds())
	m.storeCommit.Observe(st.Commit.Seconds())
	if st.Stalled > 0 {
		m.writeStall.Add(st.Stalled.Seconds())
	}
}

func (m *metrics) observeCoalesced(requests int) { m.coalescedRequests.Observe(float64(requests)) }

func (m *metrics) observeApply(typ bankdv1.CommandType, d time.Duration) {
	m.applyLatency.WithLabelValues(typ.String()).Observe(d.Seconds())
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.applyLatency.Describe(ch)
	m.leaderChanges.Describe(ch)
	m.peerRefused.Describe(ch)
	m.coalescedRequests.Describe(ch)
	m.logWrite.Describe(ch)
	m.applyBatch.Describe(ch)
	m.storeCommit.Describe(ch)
	m.writeStall.Describe(ch)
	for _, d := range []*prometheus.Desc{m.certExpiry, m.state, m.term, m.commitIndex, m.appliedIndex, m.lastContact} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.applyLatency.Collect(ch)
	m.leaderChanges.Collect(ch)
	m.peerRefused.Collect(ch)
	m.coalescedRequests.Collect(ch)
	m.logWrite.Collect(ch)
	m.applyBatch.Collect(ch)
	m.storeCommit.Collect(ch)
	m.writeStall.Collect(ch)
	n := m.n
	if n.tls != nil {
		ch <- prometheus.MustNewConstMetric(m.certExpiry, prometheus.GaugeValue, float64(n.tls.NotAfter().Unix()))
	}
	current := raft.Shutdown
	if n.raft != nil {
		current = n.raft.State()
	}
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == current {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, v, s.String())
	}
	ch <- prometheus.MustNewConstMetric(m.appliedIndex, prometheus.GaugeValue, float64(n.fsm.AppliedIndex()))
	if n.raft == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.term, prometheus.GaugeValue, float64(n.raft.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(m.commitIndex, prometheus.GaugeValue, float64(n.raft.CommitIndex()))
	contact := 0.0
	if current != raft.Leader {
		if last := n.raft.LastContact(); !last.IsZero() {
			contact = time.Since(last).Seconds()
		}
	}
	ch <- prometheus.MustNewConstMetric(m.lastContact, prometheus.GaugeValue, contact)
}

// RegisterMetrics registers the node's metrics (labelled node=<id>) with reg.
func (n *Node) RegisterMetrics(reg prometheus.Registerer) error {
	return reg.Register(n.metrics)
}
