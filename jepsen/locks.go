package jepsen

import (
	"context"
	"log/slog"

	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/locks"
)

// locksWorkload adapts the lock workload: nothing to set up, and no final state to read (the
// grants the clients were told about are the evidence).
type locksWorkload struct{ *locks.Workload }

func (locksWorkload) Setup(context.Context) error { return nil }

func (locksWorkload) Check(_ context.Context, _ *slog.Logger, hist *history.Recorder, _ string) ([]checker.Result, error) {
	return []checker.Result{checker.LockExclusive(hist.Ops())}, nil
}
