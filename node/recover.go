package node

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
)

// Recover rewrites, offline, the Raft configuration of this node's data dir to the servers of
// the configuration it last held whose node ids are in survivors: what hashicorp/raft's
// peers.json does, for a cluster that lost its quorum for good. Run it with the node stopped,
// on every survivor, with the same list; start them and they elect a leader among themselves.
// Raft addresses come from cluster.hcl. It returns the new configuration.
//
// The danger is Raft's own: entries a survivor holds that the lost quorum never committed are
// applied as if committed, and entries only the lost servers held are gone. Recover the
// survivor with the longest log first, and compare the state hashes afterwards.
func (n *Node) Recover(survivors []string) (raft.Configuration, error) {
	if n.started {
		return raft.Configuration{}, errors.New("recover: the node is running; stop it first")
	}
	if !slices.Contains(survivors, n.self.ID) {
		return raft.Configuration{}, fmt.Errorf("recover: this node, %s, is not among the survivors %v", n.self.ID, survivors)
	}
	hasState, err := n.hasRaftLog()
	if err != nil {
		return raft.Configuration{}, err
	}
	if !hasState {
		return raft.Configuration{}, errors.New("recover: this data dir holds no Raft state; there is nothing to recover")
	}
	old, err := n.lastConfiguration()
	if err != nil {
		return raft.Configuration{}, err
	}
	var next raft.Configuration
	for _, s := range old.Servers {
		id := nodeIDOf(string(s.ID))
		if !slices.Contains(survivors, id) {
			continue
		}
		nc, ok := n.cfg.Node(id)
		if !ok {
			return raft.Configuration{}, fmt.Errorf("recover: survivor %s is not in %s", id, n.cfg.Path)
		}
		next.Servers = append(next.Servers, raft.Server{Suffrage: raft.Voter, ID: s.ID, Address: raft.ServerAddress(nc.RaftAddr)})
	}
	for _, id := range survivors {
		if !slices.ContainsFunc(next.Servers, func(s raft.Server) bool { return nodeIDOf(string(s.ID)) == id }) {
			return raft.Configuration{}, fmt.Errorf("recover: %s is not a server of this node's last configuration (%s)", id, describeConfiguration(old))
		}
	}
	// RecoverCluster asks the transport only to encode addresses into the snapshot it writes.
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	if err := raft.RecoverCluster(n.raftConfig(), releasingFSM{raftFSM{FSM: n.fsm, n: n}}, n.logStore, n.logStore, n.snapshots, trans, next); err != nil {
		return raft.Configuration{}, fmt.Errorf("recover: %w", err)
	}
	n.log.Warn("raft configuration recovered", "was", describeConfiguration(old), "now", describeConfiguration(next))
	return next, nil
}

// lastConfiguration reads the newest configuration this data dir holds (log or snapshot).
func (n *Node) lastConfiguration() (raft.Configuration, error) {
	var (
		conf    raft.Configuration
		found   bool
		snapIdx uint64
	)
	if list, err := n.snapshots.List(); err != nil {
		return conf, fmt.Errorf("list snapshots: %w", err)
	} else if len(list) > 0 {
		conf, found, snapIdx = list[0].Configuration, true, list[0].Index
	}
	first, err := n.logStore.FirstIndex()
	if err != nil {
		return conf, err
	}
	last, err := n.logStore.LastIndex()
	if err != nil {
		return conf, err
	}
	// A configuration entry after the snapshot is newer than the snapshot's.
	for idx := last; idx >= max(first, snapIdx+1) && idx > 0; idx-- {
		var l raft.Log
		if err := n.logStore.GetLog(idx, &l); err != nil {
			return conf, fmt.Errorf("read log entry %d: %w", idx, err)
		}
		if l.Type == raft.LogConfiguration {
			return raft.DecodeConfiguration(l.Data), nil
		}
	}
	if !found {
		return conf, errors.New("no configuration in the log or snapshots")
	}
	return conf, nil
}

func describeConfiguration(c raft.Configuration) string {
	var parts []string
	for _, s := range c.Servers {
		parts = append(parts, fmt.Sprintf("%s@%s (%s)", s.ID, s.Address, s.Suffrage))
	}
	return strings.Join(parts, ", ")
}

// releasingFSM releases each snapshot once it is persisted: RecoverCluster (raft v1.7.3)
// persists the snapshot it takes but never releases it, which would hold the store open.
type releasingFSM struct{ raftFSM }

func (f releasingFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.raftFSM.Snapshot()
	if err != nil {
		return nil, err
	}
	return releasingSnapshot{s}, nil
}

type releasingSnapshot struct{ raft.FSMSnapshot }

func (s releasingSnapshot) Persist(sink raft.SnapshotSink) error {
	defer s.Release()
	return s.FSMSnapshot.Persist(sink)
}
