package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
	"github.com/bankd/bankd/internal/principal"
)

// Apply proposes one command on the leader and returns the state machine's response.
//
// Errors: ErrNotLeader when nothing was proposed (retry on the leader); *fsm.Error when the
// state machine refused the command (it committed and changed nothing but the applied index);
// ErrOutcomeUnknown (wrapped) when the command reached Raft but its fate is unknown.
//
// Transfers without a fence are coalesced with other concurrent ones into shared entries
// (coalesce.go); each caller still gets only its own results.
func (n *Node) Apply(ctx context.Context, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error) {
	if n.raft == nil {
		return nil, ErrShutdown
	}
	if n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("apply %s: %w", typ, err)
	}
	if req, ok := body.(*bankdv1.CreateTransfersRequest); ok && typ == bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS && fence == nil && n.coalescer != nil {
		return n.coalescer.apply(ctx, req)
	}
	return n.propose(ctx, typ, body, fence)
}

// propose puts one command in the log and waits for the state machine's response; see Apply.
func (n *Node) propose(ctx context.Context, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error) {
	if err := n.checkUpgraded(typ); err != nil {
		return nil, err
	}
	var data []byte
	if body != nil {
		var err error
		if data, err = proto.Marshal(body); err != nil {
			return nil, fmt.Errorf("apply %s: encode body: %w", typ, err)
		}
	}
	cmd, err := proto.Marshal(&bankdv1.Command{
		Version:          fsm.CommandVersion,
		Type:             typ,
		LeaderTimeUnixMs: time.Now().UnixMilli(),
		Fence:            fence,
		Body:             data,
		// The authenticated caller (rpc/ put it in ctx); empty for a driver's own commands.
		Principal: principal.From(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("apply %s: encode command: %w", typ, err)
	}
	if len(cmd) > n.cfg.Raft.MaxEntryBytes {
		return nil, fmt.Errorf("apply %s: %w: %d bytes, raft.max_entry_bytes is %d; split it", typ, ErrTooLarge, len(cmd), n.cfg.Raft.MaxEntryBytes)
	}

	timeout := n.cfg.Raft.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(dl)), time.Millisecond)
	}
	started := time.Now()
	future := n.raft.Apply(cmd, timeout)
	// failpoint ack-before-commit: answer OK without waiting for the commit or the FSM's verdict.
	if typ == bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS && failpoint.Enabled(failpoint.AckBeforeCommit) {
		return failpoint.AckTransfers(body), nil
	}
	err = awaitFuture(ctx, future)
	n.metrics.observeApply(typ, time.Since(started))
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return nil, ErrNotLeader
		}
		n.log.Warn("apply outcome unknown", "type", typ.String(), "term", n.raft.CurrentTerm(),
			"index", n.raft.LastIndex(), "err", err)
		return nil, fmt.Errorf("apply %s: %w: %w", typ, ErrOutcomeUnknown, err)
	}
	switch resp := future.Response().(type) {
	case *fsm.Error:
		return nil, resp
	case proto.Message:
		return resp, nil
	case error:
		return nil, fmt.Errorf("apply %s at index %d: %w", typ, future.Index(), resp)
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("apply %s at index %d: unexpected state machine response %T", typ, future.Index(), resp)
	}
}

// ReadBarrier makes the next read of FSM() linearizable: it returns once this node has confirmed
// it is still the leader and its state machine has applied everything committed when the call
// began (Raft's read-index protocol). Followers and leaders that have not completed their
// Barrier in this term get ErrNotLeader.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if n.raft == nil {
		return ErrShutdown
	}
	// failpoint stale-linearizable-read: neither confirm leadership nor wait for the apply.
	if failpoint.Enabled(failpoint.StaleLinearizableRead) {
		return nil
	}
	if n.raft.State() != raft.Leader || !n.ready.Load() || n.readyTerm.Load() != n.raft.CurrentTerm() {
		return ErrNotLeader
	}
	readIndex := n.raft.CommitIndex()
	if err := awaitFuture(ctx, n.raft.VerifyLeader()); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("read barrier: %w", ctx.Err())
		}
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	target, err := n.stateIndexAtOrBelow(ctx, readIndex)
	if err != nil {
		return fmt.Errorf("read barrier: %w", err)
	}
	if err := n.fsm.WaitApplied(ctx, target); err != nil {
		return fmt.Errorf("read barrier: wait for index %d: %w", target, err)
	}
	return nil
}

// stateIndexAtOrBelow returns the index the FSM must reach for everything up to index to be
// applied. Raft never hands no-op and barrier entries to the FSM, so waiting for the commit
// index itself could block forever when the newest entries are of that kind; the answer is the
// last command at or below index.
func (n *Node) stateIndexAtOrBelow(ctx context.Context, index uint64) (uint64, error) {
	applied := n.fsm.AppliedIndex()
	for idx, steps := index, 0; idx > applied; idx, steps = idx-1, steps+1 {
		if steps >= readIndexMaxScan {
			// A long run of non-commands: let a Barrier flush the FSM instead.
			if err := awaitFuture(ctx, n.raft.Barrier(n.cfg.Raft.ApplyTimeout)); err != nil {
				return 0, fmt.Errorf("barrier: %w", err)
			}
			return n.fsm.AppliedIndex(), nil
		}
		var l raft.Log
		if err := n.logStore.GetLog(idx, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				// Compacted into a snapshot, which the FSM was taken from: applied already.
				return applied, nil
			}
			return 0, fmt.Errorf("read log entry %d: %w", idx, err)
		}
		if l.Type == raft.LogCommand {
			return idx, nil
		}
	}
	return applied, nil
}

// ReadMeta describes the state a read is being served from. stale marks a read served without
// ReadBarrier; for linearizable reads the lag fields are zero.
func (n *Node) ReadMeta(stale bool) *bankdv1.ReadMeta {
	meta := &bankdv1.ReadMeta{AppliedIndex: n.fsm.AppliedIndex(), ServedBy: n.self.ID}
	if !stale || n.raft == nil {
		return meta
	}
	meta.LagEntries = n.unappliedEntries(n.raft.CommitIndex(), meta.AppliedIndex)
	if n.raft.State() != raft.Leader {
		meta.LagMs = time.Since(n.raft.LastContact()).Milliseconds()
	}
	return meta
}

// Ready returns nil when the node can serve: a leader is known and this node's state machine is
// within a few entries of the commit index.
func (n *Node) Ready() error {
	if n.raft == nil || n.raft.State() == raft.Shutdown {
		return ErrShutdown
	}
	if _, id := n.raft.LeaderWithID(); id == "" {
		return ErrNoLeader
	}
	commit, applied := n.raft.CommitIndex(), n.fsm.AppliedIndex()
	if lag := n.unappliedEntries(commit, applied); lag > readyMaxLagEntries {
		return fmt.Errorf("catching up: %d committed entries not applied yet (applied index %d, commit index %d)", lag, applied, commit)
	}
	return nil
}

// unappliedEntries counts the committed entries above applied that the state machine still has
// to apply. No-op and barrier entries (one or two per leader change) never reach it, so
// commit-applied alone would report an idle, caught-up node as lagging forever. The scan is
// bounded: past readIndexMaxScan entries the plain difference is returned.
func (n *Node) unappliedEntries(commit, applied uint64) uint64 {
	if commit <= applied {
		return 0
	}
	if commit-applied > readIndexMaxScan {
		return commit - applied
	}
	var count uint64
	for idx := commit; idx > applied; idx-- {
		var l raft.Log
		if err := n.logStore.GetLog(idx, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				break // compacted into a snapshot the state machine already holds
			}
			return commit - applied // cannot tell: assume the worst
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			count++
		}
	}
	return count
}

// LeaderInfo names the current leader.
type LeaderInfo struct {
	NodeID  string
	RaftID  string
	APIAddr string
	Term    uint64
}

// Leader returns the leader as this node knows it; false while there is none.
func (n *Node) Leader() (LeaderInfo, bool) {
	if n.raft == nil {
		return LeaderInfo{}, false
	}
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return LeaderInfo{}, false
	}
	info := LeaderInfo{NodeID: nodeIDOf(string(id)), RaftID: string(id), Term: n.raft.CurrentTerm()}
	// The API address comes from cluster.hcl only, never from gossip: forwarded calls carry
	// the caller's token, so where they go must not be something a peer can claim.
	if nc, ok := n.cfg.Node(info.NodeID); ok && nc.RaftAddr == string(addr) {
		info.APIAddr = nc.APIAddr
	}
	return info, true
}

// checkUpgraded refuses a command type some server of the Raft configuration may not apply:
// proposing it would stop that node (fail-stop on an unknown command), and two old voters of
// three would lose the quorum. Baseline types need no check; a newer type needs every server,
// voter or not, to advertise it in gossip.
func (n *Node) checkUpgraded(typ bankdv1.CommandType) error {
	bit := uint64(1) << uint(typ)
	if typ <= 0 || typ >= 64 || fsm.BaselineCommandTypes&bit != 0 {
		return nil
	}
	ids, metas, err := n.serverMetas()
	if err != nil {
		return fmt.Errorf("apply %s: %w", typ, err)
	}
	return refuseUnless("apply "+typ.String(), ids, metas, func(m nodeMeta) bool { return m.CmdTypes&bit != 0 }, nodeIDOf)
}

// serverMetas returns the Raft ids of the configuration's servers other than this one (this
// binary applies every type it proposes and reads every format it writes), and the gossip
// metadata of every member, by Raft id.
func (n *Node) serverMetas() ([]string, map[string]nodeMeta, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, nil, fmt.Errorf("read the configuration: %w", err)
	}
	metas := n.peerMetas(func(p peer) string { return p.Meta.RaftID })
	var ids []string
	for _, s := range f.Configuration().Servers {
		if id := string(s.ID); id != n.raftID {
			ids = append(ids, id)
		}
	}
	return ids, metas, nil
}

// refuseUnless returns ErrNotUpgraded for what, naming each of ids whose gossip metadata (metas,
// by the same ids) is missing or fails ok, or nil if none; nodeID names an id in the message.
func refuseUnless(what string, ids []string, metas map[string]nodeMeta, ok func(nodeMeta) bool, nodeID func(id string) string) error {
	var behind []string
	for _, id := range ids {
		m, seen := metas[id]
		switch {
		case !seen:
			behind = append(behind, nodeID(id)+" (not seen in gossip)")
		case !ok(m):
			behind = append(behind, fmt.Sprintf("%s (version %s)", nodeID(id), orUnknown(m.Version)))
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("%s: %w: upgrade %s first", what, ErrNotUpgraded, strings.Join(behind, ", "))
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
