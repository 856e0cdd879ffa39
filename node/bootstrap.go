package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

const bootstrapPollInterval = 100 * time.Millisecond

// bootstrapLoop waits until this node has Raft state. A node that starts without state
// bootstraps the cluster itself only when every node of cluster.hcl is alive in gossip and none
// of them has state; all of them then bootstrap the same voter set, which hashicorp/raft
// documents as safe. If any peer already has state, a cluster exists and this node waits for
// the leader to add it. Once the node has state it says so in gossip and the loop ends.
func (n *Node) bootstrapLoop(ctx context.Context) {
	ticker := time.NewTicker(bootstrapPollInterval)
	defer ticker.Stop()
	waitingOn := ""
	// offered is the voter set this node last advertised as ready to bootstrap with.
	var offered struct {
		intent  string
		servers []raft.Server
	}
	for {
		hasState, err := n.hasRaftLog()
		if err != nil {
			n.log.Error("check for raft state", "err", err)
		}
		if hasState {
			n.openRaftGate("this node has raft state")
			n.gossip.setHasState()
			return
		}
		if offered.intent != "" && n.clusterExists() && n.peersWithStateBootstrapped(offered.intent) {
			// The peers bootstrapped with exactly the set this node offered (which holds its
			// own Raft id) before this node saw their agreement: bootstrap the identical
			// configuration too, rather than sit out as a non-participant until they notice.
			n.bootstrap(offered.servers, "joining the bootstrap its peers agreed on")
		} else if n.clusterExists() {
			// Some peer has state: this node joins an existing cluster, once the leader adds
			// it. It may only listen for Raft once no old identity of it is still a voter.
			stale, known := n.oldIdentities()
			if !known {
				if reason := "waiting for peers with state to advertise their voters"; reason != waitingOn {
					n.log.Info("not joining yet", "reason", reason)
					waitingOn = reason
				}
			} else if len(stale) > 0 {
				reason := fmt.Sprintf("an old identity of this node, %s, is still a voter; run `bankctl cluster remove %s` (raft stays closed until then)", stale[0], stale[0])
				if reason != waitingOn {
					n.log.Warn("not joining yet", "reason", reason)
					waitingOn = reason
				}
			} else {
				n.openRaftGate("waiting for the leader to add this node")
			}
		} else if servers, intent, reason := n.agreedBootstrapServers(); reason != "" {
			if intent != "" {
				offered.intent, offered.servers = intent, servers
			}
			if reason != waitingOn {
				n.log.Info("not bootstrapping yet", "reason", reason)
				waitingOn = reason
			}
		} else {
			n.bootstrap(servers, "bootstrapping a new cluster")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// agreedBootstrapServers returns the voter set to bootstrap with once every configured node
// advertises the same set, or why it is not time yet.
//
// Agreement on the exact set (Raft ids and addresses) is what makes bootstrap safe against
// stale gossip: a node that bootstrapped keeps advertising the set it used, so a node that
// comes back with a wiped data dir — and so a new Raft id — computes a different set and can
// never reach agreement, even while it still sees its peers' old has_state=false.
func (n *Node) agreedBootstrapServers() (servers []raft.Server, intent, reason string) {
	servers, reason = n.bootstrapServers()
	if reason != "" {
		return nil, "", reason
	}
	intent = bootstrapIntent(servers)
	n.gossip.setBootstrapIntent(intent)
	byID := map[string]peer{}
	for _, p := range n.gossip.peers() {
		byID[p.NodeID] = p
	}
	for _, nc := range n.cfg.Nodes {
		if nc.ID == n.self.ID {
			continue
		}
		if byID[nc.ID].Meta.Bootstrap != intent {
			return servers, intent, "waiting for node " + nc.ID + " to agree on the bootstrap voter set"
		}
	}
	return servers, intent, ""
}

// bootstrap opens the Raft gate and bootstraps servers as the initial configuration.
func (n *Node) bootstrap(servers []raft.Server, why string) {
	n.openRaftGate(why)
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	switch {
	case err == nil:
		n.log.Info("bootstrapped cluster", "voters", len(servers), "reason", why)
	case errors.Is(err, raft.ErrCantBootstrap):
		n.log.Info("cluster already has state; not bootstrapping")
	default:
		n.log.Error("bootstrap cluster", "err", err)
	}
}

// peersWithStateBootstrapped reports whether every alive peer with Raft state advertises intent
// as the voter set it bootstrapped with. Bootstrapping the identical configuration on this node
// is then safe (hashicorp/raft allows every server to bootstrap the same configuration), and a
// node that comes back wiped cannot pass: its new Raft id makes its intent differ.
func (n *Node) peersWithStateBootstrapped(intent string) bool {
	seen := false
	for _, p := range n.gossip.peers() {
		if p.NodeID == n.self.ID || p.State != "alive" || !p.MetaOK || !p.Meta.HasState {
			continue
		}
		if p.Meta.Bootstrap != intent {
			return false
		}
		seen = true
	}
	return seen
}

// bootstrapIntent names a voter set: a hash of its sorted id@address pairs.
func bootstrapIntent(servers []raft.Server) string {
	pairs := make([]string, len(servers))
	for i, s := range servers {
		pairs[i] = string(s.ID) + "@" + string(s.Address)
	}
	sort.Strings(pairs)
	sum := sha256.Sum256([]byte(strings.Join(pairs, ",")))
	return hex.EncodeToString(sum[:8])
}

// suffrageOf is the Raft suffrage cluster.hcl gives a node.
func suffrageOf(nc NodeConfig) raft.ServerSuffrage {
	if nc.NonVoter {
		return raft.Nonvoter
	}
	return raft.Voter
}

// bootstrapServers returns the voter set to bootstrap with, or why it is not time yet.
func (n *Node) bootstrapServers() ([]raft.Server, string) {
	byID := map[string]peer{}
	for _, p := range n.gossip.peers() {
		byID[p.NodeID] = p
	}
	servers := make([]raft.Server, 0, len(n.cfg.Nodes))
	for _, nc := range n.cfg.Nodes {
		p, ok := byID[nc.ID]
		switch {
		case !ok || p.State != "alive":
			return nil, "waiting for node " + nc.ID + " to be alive in gossip"
		case !p.MetaOK:
			return nil, "waiting for node " + nc.ID + " to advertise its raft id"
		case p.Meta.HasState:
			return nil, "node " + nc.ID + " has raft state: waiting for the leader to add this node"
		case p.Meta.RaftAddr != nc.RaftAddr:
			return nil, "node " + nc.ID + " advertises raft_addr " + p.Meta.RaftAddr + ", cluster.hcl says " + nc.RaftAddr
		}
		servers = append(servers, raft.Server{
			Suffrage: suffrageOf(nc),
			ID:       raft.ServerID(p.Meta.RaftID),
			Address:  raft.ServerAddress(nc.RaftAddr),
		})
	}
	return servers, ""
}

// openRaftGate lets Raft connections in (once; later calls do nothing).
func (n *Node) openRaftGate(why string) {
	if n.raftGate.Open() {
		n.log.Info("raft transport open", "reason", why)
	}
}

// clusterExists reports whether any other alive node advertises Raft state.
func (n *Node) clusterExists() bool {
	for _, p := range n.gossip.peers() {
		if p.NodeID != n.self.ID && p.State == "alive" && p.MetaOK && p.Meta.HasState {
			return true
		}
	}
	return false
}

// oldIdentities returns the Raft ids of this node id, other than its current one, that an
// alive peer with state still lists as voters. known is false while such a peer has not yet
// advertised its voters: not knowing must not count as "none".
func (n *Node) oldIdentities() (stale []string, known bool) {
	seen := map[string]bool{}
	var out []string
	for _, p := range n.gossip.peers() {
		if p.NodeID == n.self.ID || p.State != "alive" || !p.MetaOK || !p.Meta.HasState {
			continue
		}
		if len(p.Meta.Voters) == 0 {
			return nil, false
		}
		for _, id := range p.Meta.Voters {
			if nodeIDOf(id) == n.self.ID && id != n.raftID && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	sort.Strings(out)
	return out, true
}

// hasRaftLog reports whether this node holds Raft log entries or a snapshot: whether it has
// ever been part of a cluster's replicated history. It is what gossip advertises as has_state.
// raft.HasExistingState is not used because it is also true for a node that merely recorded a
// term from an RPC, which a wiped node does as soon as its transport opens; that node must
// still count as fresh, or the leader would never add it.
func (n *Node) hasRaftLog() (bool, error) {
	last, err := n.logStore.LastIndex()
	if err != nil {
		return false, fmt.Errorf("read last log index: %w", err)
	}
	if last > 0 {
		return true, nil
	}
	snaps, err := n.snapshots.List()
	if err != nil {
		return false, fmt.Errorf("list snapshots: %w", err)
	}
	return len(snaps) > 0, nil
}
