package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/bankd/bankd/fsm"
)

// ErrNotEmpty refuses a restore into a cluster that already holds accounts or wallets.
var ErrNotEmpty = errors.New("the cluster already holds state")

// Backup writes a consistent snapshot of the replicated state to w, on the leader after a read
// barrier, so it holds every write acknowledged before the call.
func (n *Node) Backup(ctx context.Context, w io.Writer) (fsm.BackupInfo, error) {
	if err := n.ReadBarrier(ctx); err != nil {
		return fsm.BackupInfo{}, err
	}
	return n.fsm.Backup(w)
}

// RestoreBackup replaces the cluster's state with a snapshot stream that fsm.VerifySnapshot
// described as info; r must give the same bytes again. It runs on the leader through Raft's
// user restore: the snapshot becomes the newest one at an index past every entry of this log,
// the leader's state machine loads it and every follower installs it. The cluster keeps its own
// configuration. Unless force, a cluster that already holds accounts or wallets is refused.
func (n *Node) RestoreBackup(ctx context.Context, r io.Reader, info fsm.BackupInfo, force bool) (uint64, error) {
	if n.raft == nil {
		return 0, ErrShutdown
	}
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if want := n.cfg.Chain.Network; info.Network != "" && info.Network != want {
		return 0, fmt.Errorf("restore: the snapshot is of a %s cluster, this one is %s", info.Network, want)
	}
	if !force {
		if empty, err := n.fsm.Empty(); err != nil {
			return 0, err
		} else if !empty {
			return 0, fmt.Errorf("restore: %w (accounts or wallets); restore into a new cluster, or force it", ErrNotEmpty)
		}
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return 0, fmt.Errorf("restore: read the configuration: %w", err)
	}
	meta := &raft.SnapshotMeta{
		Version:       raft.SnapshotVersionMax,
		Index:         info.AppliedIndex,
		Size:          info.Bytes,
		Configuration: cf.Configuration(),
	}
	timeout := n.cfg.Raft.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	if err := n.raft.Restore(meta, r, timeout); err != nil {
		return 0, fmt.Errorf("restore: %w", err)
	}
	n.log.Info("state restored from a backup", "backup_applied_index", info.AppliedIndex, "raft_index", n.raft.LastIndex())
	return n.raft.LastIndex(), nil
}
