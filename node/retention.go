package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// retentionDeletesPerCommand bounds the records one COMPACT drops, so a compaction never
// holds up the log for long; the driver proposes again while more are due.
const retentionDeletesPerCommand = 4096

// retentionCommandsPerRound bounds one round of compaction; the next round goes on.
const retentionCommandsPerRound = 256

// retentionDriver proposes COMPACT on the leader every retention.interval with the bounds the
// retention block gives, measured from the leader's clock and the applied index (the state
// machine never drops beyond its own cluster time and index).
type retentionDriver struct {
	n *Node
	// warned is set once the driver has said it waits for an upgrade, so the log says it once.
	warned bool
}

func (r *retentionDriver) Name() string { return "retention" }

func (r *retentionDriver) Run(ctx context.Context) error {
	ticker := time.NewTicker(r.n.cfg.Retention.Interval)
	defer ticker.Stop()
	for {
		if err := r.round(ctx); err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrNotLeader) {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// compactRequest is what the retention block asks for now, or nil if nothing of it applies.
func compactRequest(rc RetentionConfig, applied uint64, now time.Time) *bankdv1.CompactRequest {
	req := &bankdv1.CompactRequest{MaxDeletes: retentionDeletesPerCommand}
	if rc.History > 0 || rc.KeepIndexes > 0 {
		req.BeforeIndex, req.BeforeUnixMs = applied, now.UnixMilli()
		if rc.KeepIndexes > 0 {
			req.BeforeIndex = applied - min(applied, rc.KeepIndexes)
		}
		if rc.History > 0 {
			req.BeforeUnixMs = now.Add(-rc.History).UnixMilli()
		}
	}
	if rc.IdempotencyWindow > 0 {
		req.TransfersBeforeUnixMs = now.Add(-rc.IdempotencyWindow).UnixMilli()
	}
	if req.BeforeIndex == 0 && req.TransfersBeforeUnixMs <= 0 {
		return nil
	}
	return req
}

// round runs one compaction with the retention block, saying once per term that it waits while
// some node cannot apply COMPACT yet.
func (r *retentionDriver) round(ctx context.Context) error {
	total, err := r.n.Compact(ctx, r.n.cfg.Retention)
	if errors.Is(err, ErrNotUpgraded) {
		if !r.warned {
			r.warned = true
			r.n.log.Warn("retention waits until every node applies COMPACT", "err", err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if total.EventsDeleted+total.HistoryDeleted+total.TransfersDeleted+total.ProblemsDeleted > 0 {
		r.n.log.Info("retention dropped old records", slog.Uint64("horizon_index", total.HorizonIndex),
			slog.Uint64("events", uint64(total.EventsDeleted)), slog.Uint64("history", uint64(total.HistoryDeleted)),
			slog.Uint64("transfers", uint64(total.TransfersDeleted)), slog.Uint64("problems", uint64(total.ProblemsDeleted)))
	}
	return nil
}

// Compact drops, on the leader, what rc's windows let go now: COMPACT commands until nothing
// more is due (at most retentionCommandsPerRound of them). It returns the sum of what they
// dropped and the horizon after them. ErrNotUpgraded while some server cannot apply COMPACT.
func (n *Node) Compact(ctx context.Context, rc RetentionConfig) (*bankdv1.Compaction, error) {
	// Asked first, not only when something is due, so the answer does not depend on the data.
	if err := n.checkUpgraded(bankdv1.CommandType_COMMAND_TYPE_COMPACT); err != nil {
		return nil, err
	}
	total := &bankdv1.Compaction{}
	if h, err := n.fsm.Horizon(); err == nil {
		total.HorizonIndex = h
	}
	for range retentionCommandsPerRound {
		req := compactRequest(rc, n.fsm.AppliedIndex(), time.Now())
		if req == nil {
			return total, nil
		}
		if due, err := n.fsm.CompactionDue(req); err != nil || !due {
			return total, err
		}
		res, err := n.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_COMPACT, req, nil)
		if err != nil {
			return total, fmt.Errorf("propose compact: %w", err)
		}
		resp, ok := res.(*bankdv1.CompactResponse)
		if !ok {
			return total, fmt.Errorf("compact: the state machine answered %T", res)
		}
		c := resp.GetCompaction()
		total.HorizonIndex = c.GetHorizonIndex()
		total.EventsDeleted += c.GetEventsDeleted()
		total.HistoryDeleted += c.GetHistoryDeleted()
		total.TransfersDeleted += c.GetTransfersDeleted()
		total.ProblemsDeleted += c.GetProblemsDeleted()
		if !resp.More {
			break
		}
	}
	return total, nil
}
