package node

import (
	"context"
	"errors"
	"github.com/hashicorp/raft"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

const (
	removedMarkerFile  = "removed"
	membershipInterval = time.Second
	// removedAfter is how long this node must stay out of the configuration it once belonged to
	// before it calls itself removed; an uncommitted removal that gets rolled back is shorter.
	removedAfter = 5 * time.Second
)

func removedMarkerExists(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, removedMarkerFile))
	return err == nil
}

// watchOwnMembership notices when this node, having been a Raft server, is no longer in the
// configuration. It then persists a marker and advertises removed=true in gossip, so the
// leader's reconciliation does not add a deliberately removed node straight back. A node
// whose data dir was wiped is a new Raft id that never was a member, so it is never marked
// and is added once its old id is removed. Seeing itself in the configuration again clears
// the mark.
func (n *Node) watchOwnMembership(ctx context.Context) {
	ticker := time.NewTicker(membershipInterval)
	defer ticker.Stop()
	marker := filepath.Join(n.self.DataDir, removedMarkerFile)
	wasMember := false
	var outSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		servers, err := n.servers()
		if err != nil || len(servers) == 0 {
			continue
		}
		var voters []string
		for _, s := range servers {
			if s.Suffrage == raft.Voter {
				voters = append(voters, string(s.ID))
			}
		}
		n.gossip.setVoters(voters)
		if inConfiguration(servers, n.raftID) {
			wasMember, outSince = true, time.Time{}
			if removedMarkerExists(n.self.DataDir) {
				if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
					n.log.Error("clear removed marker", "err", err)
				}
				n.log.Info("this node is a Raft server again")
			}
			n.gossip.setRemoved(false)
			continue
		}
		if !wasMember {
			continue
		}
		if outSince.IsZero() {
			outSince = time.Now()
			continue
		}
		if time.Since(outSince) < removedAfter || removedMarkerExists(n.self.DataDir) {
			continue
		}
		if err := writeFileAtomic(marker, []byte(n.raftID+"\n")); err != nil {
			n.log.Error("persist removed marker", "err", err)
		}
		n.log.Warn("this node was removed from the Raft configuration; wipe its data dir and restart it to rejoin")
		n.gossip.setRemoved(true)
	}
}
