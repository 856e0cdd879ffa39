package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/bankd/bankd/internal/testcluster"
)

// The write stages every node times (node/stages.go): the Raft log's append and fsync, the
// state machine's apply of a batch of entries, and Pebble's commit inside it.
const (
	metricLogWrite    = "bankd_raft_log_write_duration_seconds"
	metricApplyBatch  = "bankd_fsm_apply_batch_duration_seconds"
	metricStoreCommit = "bankd_fsm_store_commit_duration_seconds"
	metricWriteStall  = "bankd_fsm_store_write_stall_seconds_total"
)

// histogram is a Prometheus histogram as scraped: cumulative counts at upper bounds.
type histogram struct {
	count  uint64
	bounds []float64
	cum    []uint64
}

// stages is one node's stage metrics at one moment.
type stages struct {
	logWrite, applyBatch, storeCommit histogram
	stalledSeconds                    float64
}

// scrapeStages reads every node's stage metrics from its /metrics. A node that cannot be read
// gets zero figures and a line saying why; the run goes on.
func scrapeStages(c *testcluster.ProcCluster) []stages {
	out := make([]stages, len(c.Nodes))
	for i := range c.Nodes {
		s, err := scrapeNodeStages(c, i)
		if err != nil {
			fmt.Printf("  (stage metrics of %s: %v)\n", c.Nodes[i].ID, err)
			continue
		}
		out[i] = s
	}
	return out
}

func scrapeNodeStages(c *testcluster.ProcCluster, i int) (stages, error) {
	resp, err := c.HTTPClient().Get(c.URL(i) + "/metrics")
	if err != nil {
		return stages{}, err
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return stages{}, fmt.Errorf("parse /metrics: %w", err)
	}
	var s stages
	s.logWrite = histogramOf(families[metricLogWrite])
	s.applyBatch = histogramOf(families[metricApplyBatch])
	s.storeCommit = histogramOf(families[metricStoreCommit])
	if f := families[metricWriteStall]; f != nil && len(f.Metric) > 0 {
		s.stalledSeconds = f.Metric[0].GetCounter().GetValue()
	}
	return s, nil
}

func histogramOf(f *dto.MetricFamily) histogram {
	if f == nil || len(f.Metric) == 0 || f.Metric[0].Histogram == nil {
		return histogram{}
	}
	h := f.Metric[0].Histogram
	out := histogram{count: h.GetSampleCount()}
	for _, b := range h.Bucket {
		out.bounds = append(out.bounds, b.GetUpperBound())
		out.cum = append(out.cum, b.GetCumulativeCount())
	}
	return out
}

// since is what was observed between an earlier scrape and h.
func (h histogram) since(earlier histogram) histogram {
	d := histogram{count: h.count - earlier.count, bounds: h.bounds, cum: make([]uint64, len(h.cum))}
	for i := range h.cum {
		d.cum[i] = h.cum[i]
		if i < len(earlier.cum) {
			d.cum[i] -= earlier.cum[i]
		}
	}
	return d
}

// quantile estimates the q-quantile the way Prometheus's histogram_quantile does: linearly
// within the bucket that holds it. Past the last bound it returns +Inf.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := q * float64(h.count)
	lower, below := 0.0, uint64(0)
	for i, upper := range h.bounds {
		if float64(h.cum[i]) >= rank {
			inBucket := h.cum[i] - below
			if inBucket == 0 {
				return upper
			}
			return lower + (upper-lower)*(rank-float64(below))/float64(inBucket)
		}
		lower, below = upper, h.cum[i]
	}
	return math.Inf(1)
}

func (h histogram) summary() string {
	if h.count == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %s p99 %s (%d)", seconds(h.quantile(0.5)), seconds(h.quantile(0.99)), h.count)
}

func seconds(s float64) string {
	if math.IsInf(s, 1) {
		return "over 8s"
	}
	return ms(time.Duration(s * float64(time.Second)))
}

// printStages prints, per node, what its write stages took during a run.
func printStages(c *testcluster.ProcCluster, leader int, before, after []stages) {
	for i := range c.Nodes {
		role := "follower"
		if i == leader {
			role = "leader"
		}
		b, a := before[i], after[i]
		var line strings.Builder
		fmt.Fprintf(&line, "  %s (%s): log write %s; apply %s; store commit %s",
			c.Nodes[i].ID, role, a.logWrite.since(b.logWrite).summary(), a.applyBatch.since(b.applyBatch).summary(),
			a.storeCommit.since(b.storeCommit).summary())
		if stalled := a.stalledSeconds - b.stalledSeconds; stalled > 0 {
			fmt.Fprintf(&line, "; write stalls %s", seconds(stalled))
		}
		fmt.Println(line.String())
	}
}
