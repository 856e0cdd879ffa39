package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// formatCheckInterval is how often the format driver asks again whether every server reads the
// newest stored format.
const formatCheckInterval = 2 * time.Second

// formatDriver moves the store to the newest format this binary writes (fsm/format.go) once
// every server of the Raft configuration advertises SWITCH_FORMAT, that is, reads that format.
// Until then it waits, saying so once; after the switch it is done. From the switch on, a
// node cannot go back to a release that predates the format (OPERATIONS.md).
type formatDriver struct {
	n      *Node
	warned bool
}

func (d *formatDriver) Name() string { return "format" }

func (d *formatDriver) Run(ctx context.Context) error {
	ticker := time.NewTicker(formatCheckInterval)
	defer ticker.Stop()
	for {
		done, err := d.n.SwitchFormat(ctx)
		switch {
		case errors.Is(err, ErrNotUpgraded):
			if !d.warned {
				d.warned = true
				d.n.log.Info("the stored format switch waits until every node runs this release", "err", err)
			}
		case ctx.Err() != nil || errors.Is(err, ErrNotLeader):
			return nil
		case err != nil:
			return err
		case done:
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// SwitchFormat proposes, on the leader, the switch to fsm.LatestFormat. It reports done once
// the store is in that format (at once when it already was), and ErrNotUpgraded while some
// server cannot apply the switch.
func (n *Node) SwitchFormat(ctx context.Context) (done bool, err error) {
	if n.fsm.Format() >= fsm.LatestFormat {
		return true, nil
	}
	typ := bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT
	if err := n.checkUpgraded(typ); err != nil {
		return false, err
	}
	// The switch is for ever, so it also waits for the nodes cluster.hcl names that are not in
	// the Raft configuration yet: at a bootstrap, one that has not joined would otherwise meet
	// it in the log on an older binary.
	if err := n.checkConfiguredNodesUpgraded(typ); err != nil {
		return false, err
	}
	res, err := n.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT, &bankdv1.SwitchFormatRequest{Format: fsm.LatestFormat}, nil)
	if err != nil {
		return false, fmt.Errorf("propose the switch to stored format %d: %w", fsm.LatestFormat, err)
	}
	resp, ok := res.(*bankdv1.SwitchFormatResponse)
	if !ok {
		return false, fmt.Errorf("switch format: the state machine answered %T", res)
	}
	n.log.Info("stored format switched", "format", resp.Format, "at_index", resp.SwitchedAtIndex)
	return resp.Format >= fsm.LatestFormat, nil
}

// checkConfiguredNodesUpgraded is checkUpgraded for the nodes of cluster.hcl: each must
// advertise typ in gossip, whether or not it is a Raft server yet.
func (n *Node) checkConfiguredNodesUpgraded(typ bankdv1.CommandType) error {
	metas := map[string]nodeMeta{}
	for _, p := range n.peers() {
		if p.MetaOK {
			metas[p.NodeID] = p.Meta
		}
	}
	var ids []string
	for _, nc := range n.cfg.Nodes {
		if nc.ID != n.self.ID {
			ids = append(ids, nc.ID)
		}
	}
	return refuseUnlessAdvertised(typ, ids, metas, func(id string) string { return id })
}
