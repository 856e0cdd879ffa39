package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

const leaderPollInterval = 20 * time.Millisecond

func (n *Node) peers() []peer {
	if n.gossip == nil {
		return nil
	}
	return n.gossip.peers()
}

// Status describes this node as it sees itself.
func (n *Node) Status() *bankdv1.StatusResponse {
	st := &bankdv1.StatusResponse{
		NodeId:        n.self.ID,
		RaftId:        n.raftID,
		RaftState:     raft.Shutdown.String(),
		AppliedIndex:  n.fsm.AppliedIndex(),
		Version:       n.opts.Version,
		FsmTimeUnixMs: n.fsm.NowUnixMs(),
		StoredFormat:  n.fsm.Format(),
	}
	if n.raft == nil {
		return st
	}
	st.RaftState = n.raft.State().String()
	st.Term = n.raft.CurrentTerm()
	st.CommitIndex = n.raft.CommitIndex()
	st.LastLogIndex = n.raft.LastIndex()
	if l, ok := n.Leader(); ok {
		st.LeaderId = l.NodeID
		st.LeaderApiAddr = l.APIAddr
	}
	return st
}

// Members lists the union of gossip members and Raft servers, joined on Raft id. A node whose
// data dir was wiped shows twice until its old Raft id is removed: once as the gossiping new
// incarnation (no suffrage) and once as the old server (gossip state "unknown").
func (n *Node) Members() []*bankdv1.Member {
	var servers []raft.Server
	leaderID := raft.ServerID("")
	if n.raft != nil {
		if f := n.raft.GetConfiguration(); f.Error() == nil {
			servers = f.Configuration().Servers
		}
		_, leaderID = n.raft.LeaderWithID()
	}
	suffrage := map[string]string{}
	address := map[string]string{}
	for _, s := range servers {
		suffrage[string(s.ID)] = suffrageName(s.Suffrage)
		address[string(s.ID)] = string(s.Address)
	}
	var out []*bankdv1.Member
	seen := map[string]bool{}
	for _, p := range n.peers() {
		m := &bankdv1.Member{NodeId: p.NodeID, GossipState: p.State}
		if p.MetaOK {
			m.RaftId = p.Meta.RaftID
			m.Region = p.Meta.Region
			m.RaftAddr = p.Meta.RaftAddr
			if nc, ok := n.cfg.Node(p.NodeID); ok {
				m.ApiAddr = nc.APIAddr // from cluster.hcl, like Leader's
			}
			m.Version = p.Meta.Version
			m.CommandVersion, m.CommandTypes = p.Meta.CmdVersion, p.Meta.CmdTypes
			m.ReadsFormat = p.Meta.readsFormat()
			m.Suffrage = suffrage[p.Meta.RaftID]
			m.Leader = leaderID != "" && p.Meta.RaftID == string(leaderID)
			seen[p.Meta.RaftID] = true
		}
		out = append(out, m)
	}
	for _, s := range servers {
		id := string(s.ID)
		if seen[id] {
			continue
		}
		m := &bankdv1.Member{
			NodeId:      nodeIDOf(id),
			RaftId:      id,
			RaftAddr:    address[id],
			Suffrage:    suffrage[id],
			GossipState: "unknown",
			Leader:      s.ID == leaderID,
		}
		if nc, ok := n.cfg.Node(m.NodeId); ok {
			m.Region = nc.Region
			if nc.RaftAddr == m.RaftAddr {
				m.ApiAddr = nc.APIAddr
			}
		}
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].NodeId != out[j].NodeId {
			return out[i].NodeId < out[j].NodeId
		}
		return out[i].RaftId < out[j].RaftId
	})
	return out
}

func suffrageName(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	default:
		return "staging"
	}
}

// TransferLeadership hands leadership to targetNodeID (empty: Raft picks the most up-to-date
// voter) and returns the node id of the new leader once it is known.
func (n *Node) TransferLeadership(ctx context.Context, targetNodeID string) (string, error) {
	if !n.IsLeader() {
		return "", ErrNotLeader
	}
	term := n.raft.CurrentTerm()
	var future raft.Future
	if targetNodeID == "" {
		future = n.raft.LeadershipTransfer()
	} else {
		if targetNodeID == n.self.ID {
			return n.self.ID, nil
		}
		target, err := n.findServer(targetNodeID)
		if err != nil {
			return "", fmt.Errorf("transfer leadership: %w", err)
		}
		if target.Suffrage != raft.Voter {
			return "", fmt.Errorf("transfer leadership: %s is not a voter", targetNodeID)
		}
		future = n.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	n.log.Info("transferring leadership", "term", term, "target", targetNodeID)
	if err := awaitFuture(ctx, future); err != nil {
		return "", fmt.Errorf("transfer leadership to %q: %w", targetNodeID, err)
	}
	ticker := time.NewTicker(leaderPollInterval)
	defer ticker.Stop()
	for {
		if l, ok := n.Leader(); ok && l.RaftID != n.raftID {
			n.log.Info("leadership transferred", "term", term, "new_leader", l.NodeID)
			return l.NodeID, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("transfer leadership: waiting for the new leader: %w", ctx.Err())
		case <-ticker.C:
		}
	}
}

// RemoveNode removes a server from the Raft configuration. id is a node id from cluster.hcl or
// a Raft id. It refuses to remove the last voter. A leader asked to remove itself hands
// leadership over first and returns ErrNotLeader (wrapped, naming the new leader) so the caller
// retries there.
func (n *Node) RemoveNode(ctx context.Context, id string) (string, error) {
	if !n.IsLeader() {
		return "", ErrNotLeader
	}
	target, err := n.findServer(id)
	if err != nil {
		return "", fmt.Errorf("remove node: %w", err)
	}
	servers, err := n.servers()
	if err != nil {
		return "", fmt.Errorf("remove node: %w", err)
	}
	if target.Suffrage == raft.Voter && countVoters(servers) <= 1 {
		return "", fmt.Errorf("remove node: %s is the last voter", target.ID)
	}
	if string(target.ID) == n.raftID {
		newLeader, err := n.TransferLeadership(ctx, "")
		if err != nil {
			return "", fmt.Errorf("remove node: hand leadership over before removing this node: %w", err)
		}
		return "", fmt.Errorf("%w: leadership moved to %s; retry `bankctl cluster remove %s` there", ErrNotLeader, newLeader, id)
	}
	n.log.Info("removing server", "raft_id", string(target.ID), "term", n.raft.CurrentTerm())
	if err := awaitFuture(ctx, n.raft.RemoveServer(target.ID, 0, n.cfg.Raft.ApplyTimeout)); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return "", fmt.Errorf("remove node %s: %w: %w", id, ErrNotLeader, err)
		}
		return "", fmt.Errorf("remove node %s: %w", id, err)
	}
	n.log.Info("removed server", "raft_id", string(target.ID))
	return string(target.ID), nil
}

func (n *Node) servers() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

// findServer resolves a Raft id, or a node id naming exactly one Raft server.
func (n *Node) findServer(id string) (raft.Server, error) {
	servers, err := n.servers()
	if err != nil {
		return raft.Server{}, err
	}
	var byNode []raft.Server
	for _, s := range servers {
		if string(s.ID) == id {
			return s, nil
		}
		if nodeIDOf(string(s.ID)) == id {
			byNode = append(byNode, s)
		}
	}
	switch len(byNode) {
	case 0:
		return raft.Server{}, fmt.Errorf("%w: %q is not in the Raft configuration", ErrUnknownNode, id)
	case 1:
		return byNode[0], nil
	default:
		ids := ""
		for i, s := range byNode {
			if i > 0 {
				ids += ", "
			}
			ids += strconv.Quote(string(s.ID))
		}
		return raft.Server{}, fmt.Errorf("node id %q matches several Raft servers (%s); name one by Raft id", id, ids)
	}
}
