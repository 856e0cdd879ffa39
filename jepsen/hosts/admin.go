package hosts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Administrative faults: what an operator does with the admin token (leadership transfers,
// removing a server) and what only the host can do (wiping a data dir). Each call goes to the
// current leader; bankd forwards the others anyway.

// adminCallTimeout bounds one admin call.
const adminCallTimeout = 5 * time.Second

// TransferLeadership asks the current leader to hand leadership to target (a node id; empty
// lets Raft choose) and returns the new leader's node id.
func (c *Cluster) TransferLeadership(ctx context.Context, target string) (string, error) {
	l := c.Leader(ctx)
	if l < 0 {
		return "", errors.New("transfer leadership: no leader")
	}
	cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	resp, err := c.AdminClient(l).Cluster.TransferLeadership(cctx, connect.NewRequest(&bankdv1.TransferLeadershipRequest{TargetNodeId: target}))
	if err != nil {
		return "", fmt.Errorf("transfer leadership %s -> %q: %w", c.Hosts[l].ID, target, err)
	}
	c.log.Info("leadership transferred", "from", c.Hosts[l].ID, "target", target, "new_leader", resp.Msg.NewLeaderId)
	return resp.Msg.NewLeaderId, nil
}

// RaftID returns the Raft id host i reports (its node id and the incarnation of its data dir).
func (c *Cluster) RaftID(ctx context.Context, i int) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	resp, err := c.Client(i).Cluster.Status(cctx, connect.NewRequest(&bankdv1.StatusRequest{}))
	if err != nil {
		return "", fmt.Errorf("status of %s: %w", c.Hosts[i].ID, err)
	}
	return resp.Msg.RaftId, nil
}

// Members returns the members as the current leader sees them: gossip and the Raft
// configuration (Suffrage is "" for a member not in the configuration).
func (c *Cluster) Members(ctx context.Context) ([]*bankdv1.Member, error) {
	l := c.Leader(ctx)
	if l < 0 {
		return nil, errors.New("members: no leader")
	}
	cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	resp, err := c.AdminClient(l).Cluster.Members(cctx, connect.NewRequest(&bankdv1.MembersRequest{}))
	if err != nil {
		return nil, fmt.Errorf("members from %s: %w", c.Hosts[l].ID, err)
	}
	return resp.Msg.Members, nil
}

// RemoveServer removes the Raft server raftID from the configuration through the leader, and
// retries (leadership moving, a leader asked to remove itself handing over first, a lost
// answer) until the leader's configuration no longer holds it or ctx ends.
func (c *Cluster) RemoveServer(ctx context.Context, raftID string) error {
	var last error
	for {
		members, err := c.Members(ctx)
		if err == nil && !inConfiguration(members, raftID) {
			c.log.Info("server removed", "raft_id", raftID)
			return nil
		}
		if err != nil {
			last = err
		} else if l := c.Leader(ctx); l >= 0 {
			cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
			_, err := c.AdminClient(l).Cluster.RemoveNode(cctx, connect.NewRequest(&bankdv1.RemoveNodeRequest{Id: raftID}))
			cancel()
			if err != nil {
				last = fmt.Errorf("remove %s via %s: %w", raftID, c.Hosts[l].ID, err)
				c.log.Info("remove server: retrying", "err", last)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove server %s: %w (last: %v)", raftID, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func inConfiguration(members []*bankdv1.Member, raftID string) bool {
	for _, m := range members {
		if m.RaftId == raftID && m.Suffrage != "" {
			return true
		}
	}
	return false
}

// Wipe removes host i's data dir, as a replaced disk would. The host must be stopped.
func (c *Cluster) Wipe(i int) error {
	if c.Running(i) {
		return fmt.Errorf("wipe %s: still running", c.Hosts[i].ID)
	}
	if err := os.RemoveAll(c.Hosts[i].DataDir); err != nil {
		return fmt.Errorf("wipe %s: %w", c.Hosts[i].ID, err)
	}
	c.log.Info("data dir wiped", "node", c.Hosts[i].ID, "dir", c.Hosts[i].DataDir)
	return nil
}

// suffrage is the Raft suffrage cluster.hcl gives host i, as the Members API names it:
// "voter" or "nonvoter".
func (c *Cluster) suffrage(i int) string {
	if c.Hosts[i].NonVoter {
		return "nonvoter"
	}
	return "voter"
}

// WaitMember polls the leader until host i is in the Raft configuration with the suffrage
// cluster.hcl gives it (a voter, or a non-voter) under a Raft id other than oldRaftID (its
// identity before a wipe; "" accepts any), and returns that Raft id.
func (c *Cluster) WaitMember(ctx context.Context, i int, oldRaftID string) (string, error) {
	id, want := c.Hosts[i].ID, c.suffrage(i)
	var last string
	for {
		if members, err := c.Members(ctx); err == nil {
			last = "not in the configuration"
			for _, m := range members {
				if m.NodeId != id || m.RaftId == "" || m.RaftId == oldRaftID || m.Suffrage == "" {
					continue
				}
				if m.Suffrage == want {
					c.log.Info("member again", "node", id, "raft_id", m.RaftId, "suffrage", m.Suffrage)
					return m.RaftId, nil
				}
				last = fmt.Sprintf("a %s as %s", m.Suffrage, m.RaftId)
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s is not a %s under a new identity (last seen: %s): %w", id, want, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// WaitCaughtUp waits until host i has applied every command the leader had applied when the
// wait began (the leader's own applied index: a no-op entry at its commit index would never
// reach a state machine).
func (c *Cluster) WaitCaughtUp(ctx context.Context, i int) error {
	var target uint64
	for target == 0 {
		if l := c.Leader(ctx); l >= 0 {
			cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
			resp, err := c.Client(l).Cluster.Status(cctx, connect.NewRequest(&bankdv1.StatusRequest{}))
			cancel()
			if err == nil {
				target = resp.Msg.AppliedIndex
				break
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s catching up: no leader: %w", c.Hosts[i].ID, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	var applied uint64
	for {
		cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
		resp, err := c.Client(i).Cluster.Status(cctx, connect.NewRequest(&bankdv1.StatusRequest{}))
		cancel()
		if err == nil {
			applied = resp.Msg.AppliedIndex
			if applied >= target {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s has applied index %d, the leader had %d: %w", c.Hosts[i].ID, applied, target, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
