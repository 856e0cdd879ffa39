package node

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/hashicorp/memberlist"
)

// Gossip admits only the nodes of cluster.hcl, each speaking from its configured gossip address
// and advertising its configured Raft and API addresses. A member that fails the check is
// ignored by memberlist (its alive message and push-pull state are dropped), so it never shows
// up in the members this node acts on.

var (
	_ memberlist.AliveDelegate = (*gossip)(nil)
	_ memberlist.MergeDelegate = (*gossip)(nil)
)

// expectedGossipAddrs resolves each configured node's gossip address to the ip:port memberlist
// reports for it. A name that does not resolve now is kept as written and so matches nothing
// until a restart resolves it.
func expectedGossipAddrs(cfg *Config) map[string]string {
	out := make(map[string]string, len(cfg.Nodes))
	for _, nc := range cfg.Nodes {
		out[nc.ID] = nc.GossipAddr
		host, port, err := net.SplitHostPort(nc.GossipAddr)
		if err != nil {
			continue
		}
		if ip, err := net.ResolveIPAddr("ip", host); err == nil {
			out[nc.ID] = net.JoinHostPort(ip.IP.String(), port)
		}
	}
	return out
}

// admit checks one member against cluster.hcl.
func (g *gossip) admit(m *memberlist.Node) error {
	nc, ok := g.n.cfg.Node(m.Name)
	if !ok {
		return fmt.Errorf("member %q is not a node of cluster.hcl", m.Name)
	}
	if got := net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))); got != g.expected[m.Name] {
		return fmt.Errorf("member %q speaks from %s, but its gossip_addr is %s", m.Name, got, nc.GossipAddr)
	}
	p := toPeer(m)
	if !p.MetaOK {
		return fmt.Errorf("member %q: unreadable metadata or no raft id", m.Name)
	}
	meta := p.Meta
	switch {
	case nodeIDOf(meta.RaftID) != m.Name || meta.RaftID == m.Name:
		return fmt.Errorf("member %q advertises raft id %q, which is not one of its own", m.Name, meta.RaftID)
	case meta.RaftAddr != nc.RaftAddr:
		return fmt.Errorf("member %q advertises raft address %q, but its raft_addr is %s", m.Name, meta.RaftAddr, nc.RaftAddr)
	case meta.APIAddr != nc.APIAddr:
		return fmt.Errorf("member %q advertises api address %q, but its api_addr is %s", m.Name, meta.APIAddr, nc.APIAddr)
	}
	return nil
}

// NotifyAlive is memberlist's check of every alive message, this node's own included.
func (g *gossip) NotifyAlive(m *memberlist.Node) error {
	if err := g.admit(m); err != nil {
		g.refused(err)
		return err
	}
	return nil
}

// NotifyMerge checks the members another node's state would add; one stranger refuses the
// whole merge, as memberlist cannot take part of it.
func (g *gossip) NotifyMerge(peers []*memberlist.Node) error {
	for _, m := range peers {
		if err := g.admit(m); err != nil {
			g.refused(err)
			return err
		}
	}
	return nil
}

func (g *gossip) refused(err error) {
	g.n.metrics.peerRefused.WithLabelValues("gossip").Inc()
	g.log.Warn("gossip member refused", "err", err)
}

// reloadKeyring installs the keys of the keyring file: new keys are added, the first becomes
// the primary, and keys no longer listed are removed. This is `consul keyring`'s rotation, one
// file edit per step: add the new key on every node (second line) and reload; move it first and
// reload; remove the old one and reload.
func (g *gossip) reloadKeyring() error {
	if g.keyring == nil {
		return nil
	}
	keys, err := readKeyring(g.n.cfg.Gossip.KeyringFile)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := g.keyring.AddKey(k); err != nil {
			return fmt.Errorf("gossip keyring: add key: %w", err)
		}
	}
	if err := g.keyring.UseKey(keys[0]); err != nil {
		return fmt.Errorf("gossip keyring: use primary key: %w", err)
	}
	for _, old := range g.keyring.GetKeys() {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, old) }) {
			if err := g.keyring.RemoveKey(old); err != nil {
				return fmt.Errorf("gossip keyring: remove key: %w", err)
			}
		}
	}
	g.log.Info("gossip keyring reloaded", "keys", len(keys))
	return nil
}
