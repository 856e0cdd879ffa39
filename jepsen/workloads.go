package jepsen

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/fakechain"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/hosts"
	"github.com/bankd/bankd/jepsen/nemesis"
	"github.com/bankd/bankd/jepsen/workload/bank"
	"github.com/bankd/bankd/jepsen/workload/idempotent"
	"github.com/bankd/bankd/jepsen/workload/lightning"
	"github.com/bankd/bankd/jepsen/workload/locks"
	"github.com/bankd/bankd/jepsen/workload/payouts"
	"github.com/bankd/bankd/jepsen/workload/register"
	"github.com/bankd/bankd/jepsen/workload/stream"
)

// Workloads lists the workloads a run can drive.
var Workloads = []string{"bank", "register", "idempotent", locks.Name, stream.Name, payouts.Name, lightning.Name}

// workload is what a run drives.
type workload interface {
	Setup(ctx context.Context) error
	Run(ctx context.Context)
	// Check reads the final state of the healed cluster and runs the workload's checkers. An
	// error means the final reads failed; the results then hold what could still be judged.
	Check(ctx context.Context, log *slog.Logger, hist *history.Recorder, dir string) ([]checker.Result, error)
}

// newWorkload builds the workload cfg names (validated).
// chain is the payouts workload's chain node (nil for the others); its signer's ledger goes to
// dir.
// rig is the Lightning workload's simulated lnd network (nil for the others).
func newWorkload(cfg Config, cluster *hosts.Cluster, hist *history.Recorder, chain *fakechain.Chain, rig *lightningRig, log *slog.Logger, dir string) workload {
	switch cfg.Workload {
	case lightning.Name:
		return lightningWorkload{lightning.New(lightning.Config{Clients: cfg.Clients, Seed: cfg.Seed}, cluster, hist, rig.proc.Control, log)}
	case payouts.Name:
		return payoutsWorkload{payouts.New(payouts.Config{Clients: cfg.Clients, Seed: cfg.Seed, Dir: dir}, cluster, hist, chain, log)}
	case "register":
		rc := register.Config{Clients: cfg.Clients, Seed: cfg.Seed}
		if cfg.NonVoters > 0 {
			// Linearizable reads all go to the leader; only stale reads reach the non-voters.
			rc.StaleShare = nonVoterStaleShare
		}
		// The previous release that an upgrade run starts on predates Bankd-Min-Index (and took
		// a read's applied index before the read), so its stale reads may go back in time.
		return registerWorkload{Workload: register.New(rc, cluster, hist), monotonic: cfg.Nemesis != nemesis.Upgrade}
	case locks.Name:
		return locksWorkload{locks.New(locks.Config{Clients: cfg.Clients, Seed: cfg.Seed}, cluster, hist)}
	case stream.Name:
		return streamWorkload{stream.New(stream.Config{Seed: cfg.Seed}, cluster, hist)}
	case "idempotent":
		return idempotentWorkload{idempotent.New(idempotent.Config{Clients: cfg.Clients, Seed: cfg.Seed}, cluster, hist)}
	}
	return bankWorkload{bank.New(bank.Config{Clients: cfg.Clients, Seed: cfg.Seed}, cluster, hist)}
}

// noFinal is the result of a checker that needed the final state.
func noFinal(name string) checker.Result {
	return checker.Result{Name: name, Verdict: checker.Unknown, CounterExample: "no final state"}
}

type bankWorkload struct{ *bank.Workload }

func (w bankWorkload) Check(ctx context.Context, log *slog.Logger, hist *history.Recorder, dir string) ([]checker.Result, error) {
	ops := hist.Ops()
	model := w.Model()
	final, err := w.Final(ctx, ops)
	if err != nil {
		return []checker.Result{checker.Conservation(model, ops, nil),
			noFinal(checker.NameLostWrites), noFinal(checker.NameAppliedOnce), checker.FreshReads(ops)}, err
	}
	if err := writeJSON(filepath.Join(dir, "final.json"), final); err != nil {
		log.Warn("write final state", "err", err)
	}
	return []checker.Result{
		checker.Conservation(model, ops, final),
		checker.LostWrites(ops, final),
		checker.AppliedOnce(model, ops, final),
		checker.FreshReads(ops)}, nil
}

// nonVoterStaleShare is the share of the register workload's reads that are stale when the
// cluster has non-voters.
const nonVoterStaleShare = 0.5

type registerWorkload struct {
	*register.Workload
	// monotonic: run monotonic-reads (not under the upgrade nemesis, see newWorkload).
	monotonic bool
}

// Check resolves the unknown adds and reads every key a last time (into the history), then
// checks linearizability (porcupine's visualization goes to linearizability.html) and, except
// under the upgrade nemesis, that no process saw the state go back.
func (w registerWorkload) Check(ctx context.Context, log *slog.Logger, hist *history.Recorder, dir string) ([]checker.Result, error) {
	final, err := w.Final(ctx, hist.Ops())
	if err == nil {
		if err := writeJSON(filepath.Join(dir, "final.json"), final); err != nil {
			log.Warn("write final state", "err", err)
		}
	}
	// Without a final state the unknown adds stay open to the end; the reads are still judged.
	ops := hist.Ops()
	results := []checker.Result{checker.Linearizable(ops, final, filepath.Join(dir, "linearizability.html"))}
	if w.monotonic {
		results = append(results, checker.MonotonicReads(ops))
	}
	return results, err
}

type idempotentWorkload struct{ *idempotent.Workload }

func (w idempotentWorkload) Check(ctx context.Context, log *slog.Logger, hist *history.Recorder, dir string) ([]checker.Result, error) {
	ops := hist.Ops()
	final, err := w.Final(ctx, ops)
	if err != nil {
		// The answers alone can still show a second apply or a changed index.
		return []checker.Result{checker.IdempotentAppliedOnce(w.Amount(), ops, nil)}, err
	}
	if err := writeJSON(filepath.Join(dir, "final.json"), final); err != nil {
		log.Warn("write final state", "err", err)
	}
	return []checker.Result{checker.IdempotentAppliedOnce(w.Amount(), ops, final)}, nil
}

type streamWorkload struct{ *stream.Workload }

// Check reads the event log through the end marker and compares every watch session with it.
func (w streamWorkload) Check(ctx context.Context, log *slog.Logger, hist *history.Recorder, dir string) ([]checker.Result, error) {
	final, err := w.Final(ctx)
	if err != nil {
		// Duplicates and disorder inside a session can still be judged.
		return []checker.Result{checker.StreamOrder(hist.Ops(), nil)}, err
	}
	if err := writeJSON(filepath.Join(dir, "final.json"), final); err != nil {
		log.Warn("write final state", "err", err)
	}
	return []checker.Result{checker.StreamOrder(hist.Ops(), final)}, nil
}

type payoutsWorkload struct{ *payouts.Workload }

// Check waits until every withdrawal is final, stops the chain and the signer, and compares the
// withdrawals with the chain's record of what it mined.
func (w payoutsWorkload) Check(ctx context.Context, log *slog.Logger, hist *history.Recorder, dir string) ([]checker.Result, error) {
	final, err := w.Final(ctx)
	if err != nil {
		return []checker.Result{checker.Payouts(w.Model(), hist.Ops(), nil)}, err
	}
	if err := writeJSON(filepath.Join(dir, "final.json"), final); err != nil {
		log.Warn("write final state", "err", err)
	}
	return []checker.Result{checker.Payouts(w.Model(), hist.Ops(), final)}, nil
}

type lightningWorkload struct{ *lightning.Workload }

// Check heals the lnd network, waits until nothing is in flight and every settlement is
// followed, and compares bankd's books with the simulated network's own record.
func (w lightningWorkload) Check(ctx context.Context, log *slog.Logger, hist *history.Recorder, dir string) ([]checker.Result, error) {
	final, err := w.Final(ctx)
	if err != nil {
		return checker.Lightning(hist.Ops(), nil), err
	}
	if err := writeJSON(filepath.Join(dir, "final.json"), final); err != nil {
		log.Warn("write final state", "err", err)
	}
	return checker.Lightning(hist.Ops(), final), nil
}
