package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// raftIDSuffix matches the incarnation suffix a data dir adds to the node id.
var raftIDSuffix = regexp.MustCompile(`-[0-9a-f]{8}$`)

// nodeIDOf returns the node id a Raft id was made from ("n1-0a1b2c3d" -> "n1").
func nodeIDOf(raftID string) string {
	if loc := raftIDSuffix.FindStringIndex(raftID); loc != nil && loc[0] > 0 {
		return raftID[:loc[0]]
	}
	return raftID
}

// loadOrCreateRaftID returns the Raft id stored in dir, creating one for a fresh data dir. A data
// dir that already holds a Raft log but no id, or the id of another node, is refused: silently
// minting a new identity there would make two Raft servers out of one log.
func loadOrCreateRaftID(dir, nodeID string) (string, error) {
	path := filepath.Join(dir, raftIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if nodeIDOf(id) != nodeID || id == nodeID {
			return "", fmt.Errorf("%s holds raft id %q, which does not belong to node %q; is data_dir shared or copied?", path, id, nodeID)
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read raft id: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", "raft.db")); err == nil {
		return "", fmt.Errorf("%s is missing but %s has a Raft log; restore the file or wipe the data dir", path, dir)
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", fmt.Errorf("generate raft id: %w", err)
	}
	id := nodeID + "-" + hex.EncodeToString(suffix[:])
	if err := writeFileAtomic(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("write raft id: %w", err)
	}
	return id, nil
}

// writeFileAtomic writes data to path through a synced temporary file and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
