package rpc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/node"
)

// clusterService implements bankd.v1.ClusterService. Status, Members, Leader and StateHash
// describe this node as it sees the cluster; TransferLeadership and RemoveNode change the
// Raft configuration and therefore run on the leader.
type clusterService struct{ s *Server }

var _ bankdv1connect.ClusterServiceHandler = (*clusterService)(nil)

func (c *clusterService) Status(context.Context, *connect.Request[bankdv1.StatusRequest]) (*connect.Response[bankdv1.StatusResponse], error) {
	return connect.NewResponse(c.s.node.Status()), nil
}

func (c *clusterService) Members(context.Context, *connect.Request[bankdv1.MembersRequest]) (*connect.Response[bankdv1.MembersResponse], error) {
	return connect.NewResponse(&bankdv1.MembersResponse{Members: c.s.node.Members()}), nil
}

func (c *clusterService) Leader(context.Context, *connect.Request[bankdv1.LeaderRequest]) (*connect.Response[bankdv1.LeaderResponse], error) {
	res := &bankdv1.LeaderResponse{}
	if l, ok := c.s.node.Leader(); ok {
		res.LeaderId, res.LeaderRaftId, res.LeaderApiAddr, res.Term = l.NodeID, l.RaftID, l.APIAddr, l.Term
	}
	return connect.NewResponse(res), nil
}

func (c *clusterService) TransferLeadership(ctx context.Context, req *connect.Request[bankdv1.TransferLeadershipRequest]) (*connect.Response[bankdv1.TransferLeadershipResponse], error) {
	if err := validateTransferLeadership(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, c.s, req, func(ctx context.Context, m *bankdv1.TransferLeadershipRequest) (*bankdv1.TransferLeadershipResponse, error) {
		id, err := c.s.node.TransferLeadership(ctx, m.GetTargetNodeId())
		if err != nil {
			return nil, membershipError(err)
		}
		c.s.log.Info("leadership transferred", "to", id)
		return &bankdv1.TransferLeadershipResponse{NewLeaderId: id}, nil
	})
}

func (c *clusterService) RemoveNode(ctx context.Context, req *connect.Request[bankdv1.RemoveNodeRequest]) (*connect.Response[bankdv1.RemoveNodeResponse], error) {
	if err := validateRemoveNode(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, c.s, req, func(ctx context.Context, m *bankdv1.RemoveNodeRequest) (*bankdv1.RemoveNodeResponse, error) {
		raftID, err := c.s.node.RemoveNode(ctx, m.GetId())
		if err != nil {
			return nil, membershipError(err)
		}
		c.s.log.Info("node removed", "id", m.GetId(), "raft_id", raftID)
		return &bankdv1.RemoveNodeResponse{RemovedRaftId: raftID}, nil
	})
}

// Compact drops what the request's windows let go, now, through the leader (admin).
func (c *clusterService) Compact(ctx context.Context, req *connect.Request[bankdv1.CompactClusterRequest]) (*connect.Response[bankdv1.CompactClusterResponse], error) {
	m := req.Msg
	if m.GetHistoryMs() < 0 || m.GetIdempotencyWindowMs() < 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("history_ms and idempotency_window_ms must not be negative"))
	}
	rc := node.RetentionConfig{
		History:           time.Duration(m.GetHistoryMs()) * time.Millisecond,
		KeepIndexes:       m.GetKeepIndexes(),
		IdempotencyWindow: time.Duration(m.GetIdempotencyWindowMs()) * time.Millisecond,
	}
	if !rc.Enabled() {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("set history_ms, keep_indexes or idempotency_window_ms: nothing to drop"))
	}
	return onLeader(ctx, c.s, req, func(ctx context.Context, _ *bankdv1.CompactClusterRequest) (*bankdv1.CompactClusterResponse, error) {
		done, err := c.s.node.Compact(ctx, rc)
		if err != nil {
			return nil, err
		}
		c.s.log.Info("compacted on request", "horizon_index", done.GetHorizonIndex(), "events", done.GetEventsDeleted(), "transfers", done.GetTransfersDeleted())
		return &bankdv1.CompactClusterResponse{Compaction: done}, nil
	})
}

// membershipError keeps the node's explanation of a refused membership change ("the last
// voter", "not a voter") as FailedPrecondition for the operator, who holds an admin token.
// Errors the edge knows (not leader, unknown node, context) keep their own mapping.
func membershipError(err error) error {
	for _, known := range []error{
		node.ErrNotLeader, node.ErrNoLeader, node.ErrShutdown, node.ErrUnknownNode, node.ErrOutcomeUnknown,
		context.Canceled, context.DeadlineExceeded,
	} {
		if errors.Is(err, known) {
			return err
		}
	}
	return connect.NewError(connect.CodeFailedPrecondition, err)
}

func (c *clusterService) StateHash(context.Context, *connect.Request[bankdv1.StateHashRequest]) (*connect.Response[bankdv1.StateHashResponse], error) {
	// A full scan of the store: only operators may ask, and a repeat at the same applied index
	// is answered from the cache.
	index, sum, err := c.s.stateHashes.get(c.s.node.State())
	if err != nil {
		return nil, fmt.Errorf("state hash: %w", err)
	}
	return connect.NewResponse(&bankdv1.StateHashResponse{
		NodeId:       c.s.node.ID(),
		AppliedIndex: index,
		Sha256:       hex.EncodeToString(sum[:]),
	}), nil
}
