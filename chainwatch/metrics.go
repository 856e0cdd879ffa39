package chainwatch

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Error kinds, the label of bankd_chainwatch_errors_total.
const (
	// kindNode: the chain node is unreachable, refused a call or sent something unusable.
	kindNode = "node"
	// kindNetwork: the node, or the cluster's wallets, are on another network than cluster.hcl.
	kindNetwork = "network"
	// kindReorgTooDeep: the node's chain forks below the block hashes the cluster keeps.
	kindReorgTooDeep = "reorg_too_deep"
	// kindTooManyMatches: a block concerns more transactions than one command may carry.
	kindTooManyMatches = "too_many_matches"
	// kindPropose: Raft or the state machine did not take a command (other than a conflict).
	kindPropose = "propose"
	// kindState: reading the local state machine failed.
	kindState = "state"
)

// metrics are the watcher's Prometheus instruments, labelled node=<id>. Every node registers
// them; only the leader's move.
type metrics struct {
	tipHeight          prometheus.GaugeFunc
	bestHeight         prometheus.Gauge
	blocksConnected    prometheus.Counter
	blocksDisconnected prometheus.Counter
	blocksRescanned    prometheus.Counter
	mempoolAdded       prometheus.Counter
	mempoolRemoved     prometheus.Counter
	candidatesRejected prometheus.Counter
	conflicts          prometheus.Counter
	errors             *prometheus.CounterVec
	outpoints          prometheus.Gauge
	indexScripts       prometheus.GaugeFunc
}

func newMetrics(nodeID string, index *Index, state State) *metrics {
	labels := prometheus.Labels{"node": nodeID}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "bankd", Subsystem: "chainwatch", Name: name, Help: help, ConstLabels: labels}
	}
	m := &metrics{
		tipHeight: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("tip_height",
			"Height of the chain tip the cluster has followed up to, in this node's state machine (-1 before the first block).")),
			func() float64 {
				tip, ok, err := state.ChainTip()
				if err != nil || !ok {
					return -1
				}
				return float64(tip.Height)
			}),
		bestHeight: prometheus.NewGauge(prometheus.GaugeOpts(opts("node_best_height", "Height of the chain node's best block, as the watcher last saw it."))),
		blocksConnected: prometheus.NewCounter(prometheus.CounterOpts(opts("blocks_connected_total",
			"Blocks this node's watcher connected through Raft."))),
		blocksDisconnected: prometheus.NewCounter(prometheus.CounterOpts(opts("blocks_disconnected_total",
			"Blocks this node's watcher disconnected through Raft (reorgs)."))),
		blocksRescanned: prometheus.NewCounter(prometheus.CounterOpts(opts("blocks_rescanned_total",
			"Old blocks this node's watcher matched again for a rescan."))),
		mempoolAdded: prometheus.NewCounter(prometheus.CounterOpts(opts("mempool_txs_added_total",
			"Mempool transactions that concern the cluster, proposed as seen."))),
		mempoolRemoved: prometheus.NewCounter(prometheus.CounterOpts(opts("mempool_txs_removed_total",
			"Tracked pending transactions proposed as gone from the mempool."))),
		candidatesRejected: prometheus.NewCounter(prometheus.CounterOpts(opts("candidates_rejected_total",
			"Outputs the script index matched that the script table does not hold (fingerprint collisions)."))),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts(opts("chain_conflicts_total",
			"Commands the state machine refused with CHAIN_CONFLICT (it had moved); the watcher re-reads and goes on."))),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts(opts("errors_total",
			"Failed watcher steps by kind: node, network, reorg_too_deep, too_many_matches, propose, state.")), []string{"kind"}),
		outpoints: prometheus.NewGauge(prometheus.GaugeOpts(opts("outpoints", "Outpoints in the leader's spend index (UTXOs and inputs of tracked transactions)."))),
		indexScripts: prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("index_scripts",
			"Script fingerprints in this node's in-memory script index.")), func() float64 { return float64(index.Len()) }),
	}
	for _, kind := range []string{kindNode, kindNetwork, kindReorgTooDeep, kindTooManyMatches, kindPropose, kindState} {
		m.errors.WithLabelValues(kind) // export zeros, so alerts can use rate() from the start
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.tipHeight, m.bestHeight, m.blocksConnected, m.blocksDisconnected, m.blocksRescanned,
		m.mempoolAdded, m.mempoolRemoved, m.candidatesRejected, m.conflicts, m.errors, m.outpoints, m.indexScripts}
}
