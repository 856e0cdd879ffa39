package node

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// leaderRegionDriver moves leadership back to placement.leader_region. It runs only on a leader
// outside that region: once a voter in the region has been alive in gossip, and in the Raft
// configuration, for leader_region_settle without a break, leadership is handed to it
// (hashicorp/raft brings the target up to date first and fails the transfer if it cannot).
// A failed transfer is retried only after another settle period, so a node that keeps
// failing does not bounce leadership around.
type leaderRegionDriver struct {
	n *Node
	// healthySince is when each candidate voter was first seen alive in this run.
	healthySince map[raft.ServerID]time.Time
}

func (d *leaderRegionDriver) Name() string { return "leader-region" }

// leaderRegionCheckInterval is how often the driver looks at the candidates.
const leaderRegionCheckInterval = 500 * time.Millisecond

func (d *leaderRegionDriver) Run(ctx context.Context) error {
	n := d.n
	region := n.cfg.Placement.LeaderRegion
	settle := n.cfg.Placement.LeaderRegionSettle
	d.healthySince = map[raft.ServerID]time.Time{}
	ticker := time.NewTicker(leaderRegionCheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		target, ok := d.candidate(region, settle, time.Now())
		if !ok {
			continue
		}
		n.log.Info("moving leadership to the preferred leader region", "region", region, "target", target)
		if _, err := n.TransferLeadership(ctx, target); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			n.log.Warn("leadership transfer to the preferred region failed; trying again after leader_region_settle", "target", target, "err", err)
			clear(d.healthySince)
			continue
		}
		return nil // no longer the leader: this run's context ends with the leadership
	}
}

// candidate returns the node id of a voter in region that has been healthy for settle, if any.
func (d *leaderRegionDriver) candidate(region string, settle time.Duration, now time.Time) (string, bool) {
	n := d.n
	servers, err := n.servers()
	if err != nil {
		return "", false
	}
	alive := map[string]bool{}
	for _, p := range n.gossip.peers() {
		if p.State == "alive" && p.MetaOK {
			alive[p.Meta.RaftID] = true
		}
	}
	best, bestSince := "", time.Time{}
	for _, s := range servers {
		nc, known := n.cfg.Node(nodeIDOf(string(s.ID)))
		if s.Suffrage != raft.Voter || !known || nc.Region != region || !alive[string(s.ID)] {
			delete(d.healthySince, s.ID)
			continue
		}
		since, seen := d.healthySince[s.ID]
		if !seen {
			d.healthySince[s.ID] = now
			continue
		}
		if now.Sub(since) >= settle && (best == "" || since.Before(bestSince)) {
			best, bestSince = nc.ID, since
		}
	}
	return best, best != ""
}
