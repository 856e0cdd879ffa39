package jepsen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/jepsen/checker"
	"github.com/bankd/bankd/jepsen/hosts"
	"github.com/bankd/bankd/jepsen/nemesis"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/jepsen/workload/stream"
)

// An upgrade run (nemesis upgrade) starts the hosts on Config.PrevBin and lets the nemesis
// upgrade them to Config.Bin under load. The new release's first new command type is COMPACT,
// used through ClusterService.Compact; to make it drop something no checker reads, the harness
// writes two marks before the workload's setup: the grant of lock upgradeScratchLock, then,
// upgradeMarkGap later in cluster time, the grant of lock upgradeFenceLock (a grant's token is
// its index; no account or transfer is involved, so no workload's reads see them). Every
// Compact call drops the events and history older than the middle of that gap: the scratch
// mark's, never the fence's nor anything of the workload. The stream workload reads the event
// log from index 1 and cannot run with it. The run's "upgrade" result judges the nemesis's
// record.

// upgradeMarkGap separates the scratch and fence marks in cluster time. A Compact call's
// cutoff lands in the middle of the gap plus the call's own latency, so a call slower than half
// the gap could drop the fence (which the result then reports as unknown).
const upgradeMarkGap = 4 * time.Second

// Locks of the marks; no workload uses them.
const (
	upgradeScratchLock = "jepsen-upgrade-scratch"
	upgradeFenceLock   = "jepsen-upgrade-fence"
)

// upgradeMarks are the indexes and cluster times of the two mark grants.
type upgradeMarks struct {
	ScratchIndex uint64 `json:"scratch_index"`
	ScratchMs    int64  `json:"scratch_unix_ms"`
	FenceIndex   uint64 `json:"fence_index"`
	FenceMs      int64  `json:"fence_unix_ms"`
}

// writeUpgradeMarks takes the scratch lock, waits upgradeMarkGap and takes the fence lock.
func writeUpgradeMarks(ctx context.Context, cluster *hosts.Cluster) (upgradeMarks, error) {
	var m upgradeMarks
	mark := func(name string) (*bankdv1.Lock, error) {
		l, err := ledger.Retry(ctx, cluster, 5*time.Second, func(ctx context.Context, cl *apiclient.Clients) (*bankdv1.Lock, error) {
			resp, err := cl.Lock.Acquire(ctx, connect.NewRequest(&bankdv1.AcquireLockRequest{Name: name, Holder: "jepsen-harness", TtlMs: 1000}))
			if err != nil {
				return nil, err
			}
			return resp.Msg.Lock, nil
		})
		if err != nil {
			return nil, fmt.Errorf("upgrade mark %s: %w", name, err)
		}
		return l, nil
	}
	scratch, err := mark(upgradeScratchLock)
	if err != nil {
		return m, err
	}
	m.ScratchIndex, m.ScratchMs = scratch.Token, scratch.AcquiredAtUnixMs
	select {
	case <-ctx.Done():
		return m, ctx.Err()
	case <-time.After(upgradeMarkGap):
	}
	fence, err := mark(upgradeFenceLock)
	if err != nil {
		return m, err
	}
	m.FenceIndex, m.FenceMs = fence.Token, fence.AcquiredAtUnixMs
	if m.FenceMs-m.ScratchMs < upgradeMarkGap.Milliseconds() {
		return m, fmt.Errorf("upgrade marks only %d ms apart in cluster time, want %s", m.FenceMs-m.ScratchMs, upgradeMarkGap)
	}
	return m, nil
}

// compact is the upgrade nemesis's use of the new command type: ClusterService.Compact through
// host via with history_ms putting the cutoff in the middle of the marks' gap.
func (m upgradeMarks) compact(cluster *hosts.Cluster) func(context.Context, int) (*bankdv1.Compaction, error) {
	return func(ctx context.Context, via int) (*bankdv1.Compaction, error) {
		cutoff := m.ScratchMs + (m.FenceMs-m.ScratchMs)/2
		resp, err := cluster.AdminClient(via).Cluster.Compact(ctx, connect.NewRequest(&bankdv1.CompactClusterRequest{
			HistoryMs: time.Now().UnixMilli() - cutoff,
		}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.Compaction, nil
	}
}

// upgradeResult judges what the upgrade nemesis did and saw: every node stopped cleanly on
// SIGTERM and caught up on the new binary; the new command type was refused while any node
// ran (or had last run) the previous release, as documented (unimplemented from an old leader,
// failed_precondition naming exactly the old nodes from a new one), and applied after the last
// step, dropping the scratch mark and nothing past the fence.
func upgradeResult(rec *nemesis.UpgradeRecord, marks upgradeMarks, nodes int) checker.Result {
	r := checker.Result{Name: "upgrade", Verdict: checker.Valid}
	if rec == nil {
		r.Verdict, r.CounterExample = checker.Unknown, "no upgrade record"
		return r
	}
	r.Checked = len(rec.Steps) + len(rec.Gate)
	violate := func(format string, args ...any) {
		if r.Violations == 0 {
			r.CounterExample = fmt.Sprintf(format, args...)
		}
		r.Violations++
		r.Verdict = checker.Invalid
	}
	if len(rec.Steps) != nodes {
		violate("%d of %d nodes upgraded", len(rec.Steps), nodes)
	}
	for _, s := range rec.Steps {
		if s.Exit != 0 {
			violate("%s (%s) exited %d on SIGTERM, want 0", s.Node, s.Role, s.Exit)
		}
		if s.Error != "" {
			violate("upgrade of %s (%s): %s", s.Node, s.Role, s.Error)
		}
	}
	for _, a := range rec.Gate {
		switch {
		case a.Expected:
		case a.Code == "ok":
			violate("COMPACT applied at %s while %s ran the previous release", a.At.Round(time.Millisecond), strings.Join(a.Old, ", "))
		case len(a.Old) > 0:
			want := "failed_precondition naming " + strings.Join(a.Old, ", ")
			if a.LeaderOld {
				want = "unimplemented (the old leader has no Compact RPC)"
			}
			violate("compact through leader %s at %s: %s: %s; want %s", a.Leader, a.At.Round(time.Millisecond), a.Code, a.Message, want)
		}
	}
	if rec.Accepted == nil {
		last := "no answer"
		if n := len(rec.Gate); n > 0 {
			last = rec.Gate[n-1].Code + ": " + rec.Gate[n-1].Message
		}
		violate("compact never applied once every node ran the new binary (last answer %s)", last)
		return r
	}
	c := rec.Accepted.Compaction
	switch {
	case c.GetHorizonIndex() > marks.FenceIndex:
		// The harness's own cutoff went too far (a call slower than half the marks' gap): the
		// workload's records may be gone, so its checkers prove nothing.
		if r.Verdict == checker.Valid {
			r.Verdict = checker.Unknown
			r.CounterExample = fmt.Sprintf("the compaction's horizon %d is past the fence mark at %d: the harness's cutoff dropped workload records", c.GetHorizonIndex(), marks.FenceIndex)
		}
	case c.GetHorizonIndex() <= marks.ScratchIndex || c.GetEventsDeleted() == 0:
		violate("compact applied but dropped nothing before the fence (horizon %d, scratch mark at %d, %d events dropped)",
			c.GetHorizonIndex(), marks.ScratchIndex, c.GetEventsDeleted())
	}
	return r
}

// checkUpgradeConfig validates the binaries of an upgrade run.
func checkUpgradeConfig(c *Config) error {
	if c.PrevBin == "" {
		return errors.New("nemesis upgrade needs the previous release's bankd (-prev-bin; `make prev` builds bin/bankd-prev)")
	}
	if _, err := os.Stat(c.PrevBin); err != nil {
		return fmt.Errorf("previous release's bankd: %w (`make prev` builds it)", err)
	}
	if c.Failpoint != "" {
		return errors.New("nemesis upgrade cannot run with a failpoint: the previous release has none")
	}
	if c.Workload == stream.Name {
		return errors.New("nemesis upgrade drops old events (COMPACT): the stream workload reads the log from index 1")
	}
	return nil
}
