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

// formatDriver moves the store to the newest format this binary writes (fsm/format.go), or to
// the one cluster.hcl's hold_stored_format holds it at, once every node reads that format: every
// server of the Raft configuration and every node cluster.hcl names says so in gossip. Until
// then it waits, saying so once; after the switch it is done. From the switch on, a node cannot
// go back to a release that does not read the format (OPERATIONS.md).
type formatDriver struct {
	n      *Node
	warned bool
}

func (d *formatDriver) Name() string { return "format" }

func (d *formatDriver) Run(ctx context.Context) error {
	if hold, stored := d.n.cfg.HoldStoredFormat, d.n.fsm.Format(); hold != 0 && stored > hold {
		d.n.log.Warn("hold_stored_format is below the store's format; a switch is never undone, so nodes cannot go back to a release that reads only the held format",
			"hold_stored_format", hold, "stored_format", stored)
	}
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
			if hold := d.n.cfg.HoldStoredFormat; hold < fsm.LatestFormat && hold == d.n.fsm.Format() {
				d.n.log.Info("stored format held by hold_stored_format", "stored_format", d.n.fsm.Format(), "newest_format", fsm.LatestFormat)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// targetFormat is the format the leader moves the store to: the newest this node reads (the
// newest this binary writes, unless a test makes it advertise an older binary's), or
// hold_stored_format when that is older.
func (n *Node) targetFormat() uint32 {
	target := min(fsm.LatestFormat, n.gossip.readsFormat())
	if hold := n.cfg.HoldStoredFormat; hold != 0 {
		target = min(target, hold)
	}
	return target
}

// SwitchFormat proposes, on the leader, the switch to the target format (targetFormat). It
// reports done once the store is in that format or a newer one (at once when it already was),
// and ErrNotUpgraded while some node does not read it.
func (n *Node) SwitchFormat(ctx context.Context) (done bool, err error) {
	target := n.targetFormat()
	if n.fsm.Format() >= target {
		return true, nil
	}
	what := fmt.Sprintf("switch to stored format %d", target)
	reads := func(m nodeMeta) bool { return m.readsFormat() >= target }
	ids, metas, err := n.serverMetas()
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	if err := refuseUnless(what, ids, metas, reads, nodeIDOf); err != nil {
		return false, err
	}
	// The switch is for ever, so it also waits for the nodes cluster.hcl names that are not in
	// the Raft configuration yet: at a bootstrap, one that has not joined would otherwise meet
	// it in the log on an older binary.
	if err := refuseUnless(what, n.configuredPeers(), n.peerMetas(func(p peer) string { return p.NodeID }), reads, func(id string) string { return id }); err != nil {
		return false, err
	}
	res, err := n.Apply(ctx, bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT, &bankdv1.SwitchFormatRequest{Format: target}, nil)
	if err != nil {
		return false, fmt.Errorf("propose the switch to stored format %d: %w", target, err)
	}
	resp, ok := res.(*bankdv1.SwitchFormatResponse)
	if !ok {
		return false, fmt.Errorf("switch format: the state machine answered %T", res)
	}
	n.log.Info("stored format switched", "format", resp.Format, "at_index", resp.SwitchedAtIndex)
	return resp.Format >= target, nil
}

// configuredPeers returns the ids of the nodes cluster.hcl names, other than this one.
func (n *Node) configuredPeers() []string {
	var ids []string
	for _, nc := range n.cfg.Nodes {
		if nc.ID != n.self.ID {
			ids = append(ids, nc.ID)
		}
	}
	return ids
}

// peerMetas returns the gossip metadata of every member that has advertised some, by key(p):
// its Raft id or its node id.
func (n *Node) peerMetas(key func(p peer) string) map[string]nodeMeta {
	metas := map[string]nodeMeta{}
	for _, p := range n.peers() {
		if p.MetaOK {
			metas[key(p)] = p.Meta
		}
	}
	return metas
}
