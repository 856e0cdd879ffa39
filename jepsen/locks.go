package jepsen

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/locks"
)

// locksWorkload adapts the lock workload: the grants the clients were told about are the
// evidence for lock-exclusive; the fenced writes that applied, for fenced-writes.
type locksWorkload struct{ *locks.Workload }

func (w locksWorkload) Check(ctx context.Context, log *slog.Logger, hist *history.Recorder, dir string) ([]checker.Result, error) {
	ops := hist.Ops()
	final, err := w.Final(ctx)
	if err != nil {
		return []checker.Result{checker.LockExclusive(ops), noFinal(checker.NameFencedWrites)}, err
	}
	if err := writeJSON(filepath.Join(dir, "final.json"), final); err != nil {
		log.Warn("write final state", "err", err)
	}
	return []checker.Result{checker.LockExclusive(ops), checker.FencedWrites(ops, final)}, nil
}
