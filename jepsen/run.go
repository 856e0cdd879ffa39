// Package jepsen runs bankd under real faults and checks what its clients saw. One run builds
// N hosts (network namespaces on a private bridge, see hosts), starts a bankd agent in each,
// drives a workload that records a history, lets a nemesis kill, pause and partition nodes on
// a seeded schedule, heals, reads the final state, and runs the checkers. It leaves a report
// directory: history.jsonl, faults.json, final.json, verdict.json, node logs, harness.log, and
// the data dirs when the verdict is not valid.
//
// Subpackages: hosts (namespaces, processes, faults, regions), netproxy (the delaying TCP
// proxies regions use), history (the record), workload/bank, workload/register,
// workload/idempotent (workload/ledger holds their shared calls), workload/payouts (with
// fakechain, a regtest chain node the harness runs on the bridge), nemesis (the fault
// schedule), checker (verdicts). cmd/jepsen is the command line. BenchRegions measures write
// latency and region failover with the nodes in regions.
package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/fakechain"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/hosts"
	"github.com/bankd/bankd/jepsen/nemesis"
	"github.com/bankd/bankd/jepsen/report"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/jepsen/workload/lightning"
	"github.com/bankd/bankd/jepsen/workload/payouts"
)

// Config describes one run.
type Config struct {
	Workload string // one of Workloads
	Nemesis  nemesis.Kind
	Nodes    int // 3 or 5
	// NonVoters is how many of the nodes, the last ones, are Raft non-voters (read replicas,
	// `voter = false` in cluster.hcl); at least one node stays a voter. With any, the register
	// workload makes half its reads stale, so that they reach the non-voters.
	NonVoters int
	Duration  time.Duration // of the workload, faults included
	Seed      uint64
	// ReportDir is created if needed and must not hold an earlier run.
	ReportDir string
	Bin       string
	// PrevBin is the previous release's bankd, which an upgrade run starts on (nemesis upgrade).
	PrevBin string
	Clients int // concurrent clients [5]
	// FaultWindow and RecoveryWindow shape the nemesis [5s each].
	FaultWindow, RecoveryWindow time.Duration
	// Progress receives a progress line every ProgressEvery [5s]; nil for none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Failpoint, when set, is put in every agent's BANKD_FAILPOINTS; Bin must then be a
	// failpoints build (see BuildFailpoints), so that the run shows a checker catching the bug.
	Failpoint string
	// Regions, when it has any, puts the nodes in regions (round-robin) with the round-trip
	// times between them on every Raft and API connection between nodes (see hosts.Regions).
	Regions hosts.Regions
}

// Bounds of the phases around the workload.
const (
	startTimeout    = 60 * time.Second
	setupTimeout    = 60 * time.Second
	recoveryTimeout = 60 * time.Second
	finalTimeout    = 120 * time.Second
)

// Report is the outcome of a run.
type Report struct {
	Verdict checker.Verdict   `json:"verdict"`
	Results []checker.Result  `json:"results"`
	Counts  ledger.Counts     `json:"counts"`
	Faults  []nemesis.Fault   `json:"faults"`
	Config  map[string]string `json:"config"`
	RunID   string            `json:"run_id"`
	Dir     string            `json:"dir"`
	Elapsed time.Duration     `json:"elapsed_ns"`
}

// Line is the one-line verdict: VALID, UNKNOWN <checker>: <why> or INVALID <checker>: <first
// counter-example>, then a summary in parentheses.
func (r *Report) Line() string {
	v, first := checker.Overall(r.Results)
	head := strings.ToUpper(string(v))
	if first != nil {
		head += " " + first.Name + ": " + first.CounterExample
	}
	workload := r.Config["workload"]
	if fp := r.Config["failpoint"]; fp != "" {
		workload += " failpoint=" + fp
	}
	nodes := r.Config["nodes"]
	if nv := r.Config["nonvoters"]; nv != "" && nv != "0" {
		nodes += " nonvoters=" + nv
	}
	if regions := r.Config["regions"]; regions != "" {
		nodes += " regions=" + strings.Fields(regions)[0]
	}
	return fmt.Sprintf("%s  (%s/%s nodes=%s seed=%s: %d ops, %d ok, %d fail, %d info; %d faults; report %s)",
		head, workload, r.Config["nemesis"], nodes, r.Config["seed"],
		r.Counts.Invoked, r.Counts.OK, r.Counts.Fail, r.Counts.Info, len(r.Faults), r.Dir)
}

func (c *Config) validate() error {
	if !slices.Contains(Workloads, c.Workload) {
		return fmt.Errorf("workload %q: want one of %s", c.Workload, strings.Join(Workloads, ", "))
	}
	if _, err := nemesis.ParseKind(string(c.Nemesis)); err != nil {
		return err
	}
	if c.Nodes != 3 && c.Nodes != 5 {
		return fmt.Errorf("nodes %d: want 3 or 5", c.Nodes)
	}
	if err := c.checkNonVoters(); err != nil {
		return err
	}
	if c.Duration <= 0 || c.Duration > time.Hour {
		return fmt.Errorf("duration %s: want (0, 1h]", c.Duration)
	}
	if c.ReportDir == "" {
		return errors.New("no report dir")
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 5 * time.Second
	}
	if slices.ContainsFunc(c.Nemesis.Split(), nemesis.IsLnd) && c.Workload != lightning.Name {
		return fmt.Errorf("nemesis %s: the lnd faults hit the simulated lnd nodes of the %s workload only", c.Nemesis, lightning.Name)
	}
	if slices.Contains(c.Nemesis.Split(), nemesis.RegionPartition) && c.Regions.Count() < 2 {
		return fmt.Errorf("nemesis %s needs at least 2 regions (-regions)", nemesis.RegionPartition)
	}
	if c.Nemesis == nemesis.Upgrade {
		if err := checkUpgradeConfig(c); err != nil {
			return err
		}
	}
	if c.Failpoint != "" {
		return checkFailpoint(c.Failpoint, c.Bin)
	}
	return nil
}

// checkNonVoters refuses non-voters that would leave no voter, or that a nemesis cannot work
// with.
func (c *Config) checkNonVoters() error {
	if c.NonVoters == 0 {
		return nil
	}
	voters := c.Nodes - c.NonVoters
	if c.NonVoters < 0 || voters < 1 {
		return fmt.Errorf("nonvoters %d of %d nodes: want 0-%d (at least one voter)", c.NonVoters, c.Nodes, c.Nodes-1)
	}
	if c.Nemesis == nemesis.Upgrade {
		// Its cluster starts on the previous release, whose cluster.hcl has no voter attribute.
		return fmt.Errorf("nonvoters with nemesis %s: the previous release does not know voter = false", nemesis.Upgrade)
	}
	if slices.Contains(c.Nemesis.Split(), nemesis.Membership) && voters < 2 {
		// bankd refuses to remove its last voter.
		return fmt.Errorf("nonvoters %d of %d nodes with nemesis %s: it may remove any node, and bankd refuses to remove the only voter; want at least 2 voters",
			c.NonVoters, c.Nodes, nemesis.Membership)
	}
	return nil
}

// Run performs one run. The error is a harness error (the run proves nothing); bankd's faults
// show up in the report's verdict instead.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	began := time.Now()
	dir, err := filepath.Abs(cfg.ReportDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("report dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "history.jsonl")); err == nil {
		return nil, fmt.Errorf("report dir %s holds an earlier run", dir)
	}
	logFile, err := os.Create(filepath.Join(dir, "harness.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, nil))

	if err := hosts.CleanupStale(ctx, log); err != nil {
		log.Warn("stale cleanup", "err", err)
	}
	upgrade := cfg.Nemesis == nemesis.Upgrade
	opts := hosts.Options{Nodes: cfg.Nodes, NonVoters: cfg.NonVoters, Bin: cfg.Bin, Dir: dir, Logger: log, Env: failpointEnv(cfg.Failpoint), Regions: cfg.Regions}
	if upgrade {
		// The cluster starts on the previous release; the nemesis moves it to cfg.Bin.
		opts.Bin = cfg.PrevBin
	}
	var chain *fakechain.Chain
	if cfg.Workload == payouts.Name {
		// The payouts workload's chain node serves on the bridge, named in cluster.hcl.
		chain = payouts.NewChain(log)
		defer func() {
			if err := chain.Close(); err != nil {
				log.Warn("close the fake chain", "err", err)
			}
		}()
		opts.Extra = func(gatewayIP string) (string, error) { return payouts.ClusterConfig(chain, gatewayIP) }
	}
	var rig *lightningRig
	if cfg.Workload == lightning.Name {
		// The Lightning workload's simulated lnd nodes: a process of their own on the bridge.
		if rig, err = newLightningRig(ctx, dir, cfg.Seed, log); err != nil {
			return nil, fmt.Errorf("lightning: %w", err)
		}
		defer rig.Close()
		opts.Extra = rig.clusterConfig
	}
	cluster, cleanup, err := startHosts(ctx, opts, log)
	defer cleanup()
	if err != nil {
		return nil, err
	}

	hist, err := history.NewRecorder(time.Now(), filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	defer hist.Close()
	if rig != nil {
		rig.cluster = cluster
	}
	work := newWorkload(cfg, cluster, hist, chain, rig, log, dir)
	if c, ok := work.(interface{ Close() }); ok {
		defer c.Close()
	}
	nemCfg := nemesis.Config{Kind: cfg.Nemesis, Seed: cfg.Seed, FaultWindow: cfg.FaultWindow,
		RecoveryWindow: cfg.RecoveryWindow, Logger: log}
	if rig != nil {
		nemCfg.Lnd = rig
	}
	var marks upgradeMarks
	if upgrade {
		sctx, cancel := context.WithTimeout(ctx, setupTimeout)
		marks, err = writeUpgradeMarks(sctx, cluster)
		cancel()
		if err != nil {
			return nil, err
		}
		log.Info("upgrade marks written", "scratch_index", marks.ScratchIndex, "fence_index", marks.FenceIndex)
		bin, err := filepath.Abs(cfg.Bin)
		if err != nil {
			return nil, err
		}
		nemCfg.Upgrade = &nemesis.UpgradeConfig{Bin: bin, Compact: marks.compact(cluster)}
	}
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	err = work.Setup(sctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%s setup: %w", cfg.Workload, err)
	}

	nem := nemesis.New(nemCfg, cluster, hist)
	runCtx, stopRun := context.WithTimeout(ctx, cfg.Duration)
	defer stopRun()
	var (
		wg     sync.WaitGroup
		nemErr error
	)
	wg.Go(func() { nemErr = nem.Run(runCtx) })
	if cfg.Progress != nil {
		runStart := time.Now()
		wg.Go(func() { progress(runCtx, cfg, runStart, hist, nem) })
	}
	work.Run(runCtx)
	stopRun()
	wg.Wait()
	if nemErr != nil {
		return nil, fmt.Errorf("nemesis: %w", nemErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("run interrupted: %w", err)
	}

	results := finish(ctx, log, cluster, work, hist, dir)
	if rec := nem.Upgrade(); rec != nil {
		results = append(results, upgradeResult(rec, marks, cfg.Nodes))
		if err := writeJSON(filepath.Join(dir, "upgrade.json"), map[string]any{"marks": marks, "record": rec}); err != nil {
			log.Warn("write upgrade record", "err", err)
		}
	}
	ops := hist.Ops()
	report := &Report{
		Results: results,
		Counts:  ledger.Count(ops),
		Faults:  nem.Faults(),
		RunID:   cluster.RunID,
		Dir:     dir,
		Elapsed: time.Since(began),
		Config: map[string]string{
			"workload": cfg.Workload, "nemesis": string(cfg.Nemesis), "nodes": fmt.Sprint(cfg.Nodes), "nonvoters": fmt.Sprint(cfg.NonVoters),
			"duration": cfg.Duration.String(), "seed": fmt.Sprint(cfg.Seed), "bin": cfg.Bin, "failpoint": cfg.Failpoint,
		},
	}
	if cfg.Regions.Count() > 0 {
		report.Config["regions"] = cfg.Regions.String()
	}
	if upgrade {
		report.Config["prev_bin"] = cfg.PrevBin
	}
	report.Verdict, _ = checker.Overall(results)
	if err := writeJSON(filepath.Join(dir, "faults.json"), report.Faults); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(dir, "verdict.json"), report); err != nil {
		return nil, err
	}
	if report.Verdict == checker.Valid {
		// Data dirs are kept only as evidence of a problem.
		if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
			log.Warn("remove data dirs", "err", err)
		}
	}
	writePages(log, report, ops)
	log.Info("run done", "verdict", report.Verdict, "line", report.Line())
	return report, nil
}

// writePages draws latency.svg, throughput.svg and index.html into the report dir (see
// package report). A failure is logged; it never fails the run.
func writePages(log *slog.Logger, r *Report, ops []history.Op) {
	err := report.Write(r.Dir, report.Run{Config: r.Config, RunID: r.RunID, Verdict: r.Verdict,
		Results: r.Results, Ops: ops, Faults: r.Faults, Elapsed: r.Elapsed})
	if err != nil {
		log.Warn("report pages", "err", err)
	}
}

// finish heals everything, waits for the cluster to recover, reads the final state and runs
// every checker. A cluster that does not recover or answer is itself a verdict.
func finish(ctx context.Context, log *slog.Logger, cluster *hosts.Cluster, work workload, hist *history.Recorder, dir string) []checker.Result {
	ctx, cancel := context.WithTimeout(ctx, recoveryTimeout+finalTimeout)
	defer cancel()
	recovery := checker.Result{Name: checker.NameRecovery, Verdict: checker.Valid, Checked: 1}
	fail := func(format string, args ...any) {
		if recovery.Violations == 0 {
			recovery.CounterExample = fmt.Sprintf(format, args...)
		}
		recovery.Violations++
		recovery.Verdict = checker.Invalid
	}
	if err := cluster.Heal(ctx); err != nil {
		fail("heal network: %v", err)
	}
	for i := range cluster.Hosts {
		// The nemesis restarts what it kills, so a host that is down now died on its own.
		if !cluster.Running(i) {
			fail("%s exited by itself during the run (see logs/%s.log)", cluster.NodeID(i), cluster.NodeID(i))
		}
		if err := cluster.Restart(i); err != nil {
			fail("restart %s: %v", cluster.NodeID(i), err)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, recoveryTimeout)
	_, err := cluster.WaitLeader(rctx)
	rcancel()
	if err != nil {
		fail("no leader %s after healing: %v", recoveryTimeout, err)
	}

	// The healed cluster must commit a write. That write also commits whatever still sits in
	// the leader's log from before the heal; requests still in flight on the network can apply
	// later, which the workloads' final reads allow for (ledger.ConsistentRead).
	qctx, qcancel := context.WithTimeout(ctx, recoveryTimeout)
	err = quiesce(qctx, cluster)
	qcancel()
	if err != nil {
		fail("no write committed after healing: %v", err)
	}

	fctx, fcancel := context.WithTimeout(ctx, finalTimeout)
	checks, err := work.Check(fctx, log, hist, dir)
	fcancel()
	if err != nil {
		fail("final reads: %v", err)
	}
	results := append([]checker.Result{recovery}, checks...)
	hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
	hashes, err := cluster.StateHashes(hctx)
	hcancel()
	var rh []checker.ReplicaHash
	for _, h := range hashes {
		rh = append(rh, checker.ReplicaHash{Node: h.Node, AppliedIndex: h.AppliedIndex, SHA256: h.SHA256})
	}
	results = append(results, checker.Replicas(rh, cluster.Size(), err))
	return results
}

// quiesceLock is the lock the harness acquires after healing; no workload uses it.
const quiesceLock = "jepsen-quiesce"

// quiesce commits one write (a lock grant to the harness) through any node that can.
func quiesce(ctx context.Context, cluster *hosts.Cluster) error {
	_, err := ledger.Retry(ctx, cluster, 5*time.Second, func(ctx context.Context, cl *apiclient.Clients) (struct{}, error) {
		_, err := cl.Lock.Acquire(ctx, connect.NewRequest(&bankdv1.AcquireLockRequest{Name: quiesceLock, Holder: "jepsen-harness", TtlMs: 1000}))
		return struct{}{}, err
	})
	return err
}

func progress(ctx context.Context, cfg Config, start time.Time, hist *history.Recorder, nem *nemesis.Nemesis) {
	t := time.NewTicker(cfg.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c := ledger.Count(hist.Ops())
		fault := nem.Active()
		if fault == "" {
			fault = "none"
		}
		fmt.Fprintf(cfg.Progress, "jepsen %s/%s [%4s/%s] %d ops: %d ok, %d fail, %d info; fault: %s\n",
			cfg.Workload, cfg.Nemesis, time.Since(start).Round(time.Second), cfg.Duration, c.Invoked, c.OK, c.Fail, c.Info, fault)
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// startHosts creates the hosts, starts every agent and waits for the first election. cleanup
// removes what the run made; it is set whenever the hosts were created, even if err is not nil.
func startHosts(ctx context.Context, opts hosts.Options, log *slog.Logger) (*hosts.Cluster, func(), error) {
	cluster, err := hosts.Create(ctx, opts)
	if err != nil {
		return nil, func() {}, err
	}
	// The closure keeps its own reference: the cluster it cleans up is the one created here,
	// whatever this function returns.
	cleanup := func() {
		if err := cluster.Cleanup(); err != nil {
			log.Error("cleanup", "err", err)
		}
	}
	if err := cluster.StartAll(); err != nil {
		return nil, cleanup, err
	}
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if _, err := cluster.WaitLeader(sctx); err != nil {
		return nil, cleanup, fmt.Errorf("first election: %w", err)
	}
	return cluster, cleanup, nil
}
