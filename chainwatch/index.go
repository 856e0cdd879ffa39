package chainwatch

import (
	"crypto/sha256"

	"github.com/bankd/bankd/chainwatch/watchset"
	"github.com/bankd/bankd/fsm"
)

// Index is the in-memory index of the state machine's script table that the watcher matches
// blocks and mempool transactions against. Every node keeps one, whether it leads or not: the
// node subscribes it to the state machine (AddScripts is fsm.Options.OnScriptsWatched) and loads
// it from the store when it opens and after every snapshot restore (node.ScriptIndex), so the
// watcher of a new leader finds it complete at once.
//
// It holds fingerprints only (watchset.ScriptSet): a hit is a candidate that the watcher
// confirms against the store before it reaches Raft. Scripts are never removed, as the state
// machine never stops watching one. All methods are safe for concurrent use.
type Index struct {
	scripts *watchset.ScriptSet
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{scripts: watchset.NewScriptSet(0)}
}

// AddScripts adds scripts the state machine started watching. It is the state machine's
// OnScriptsWatched hook, called on the apply goroutine, and it is quick (a SHA-256 and a table
// insert per script).
func (x *Index) AddScripts(scripts [][]byte) {
	for _, s := range scripts {
		x.scripts.Add(s)
	}
}

// Load adds every script of the state machine's script table, from the table's keys (the
// scripts' SHA-256) without reading the records. Scripts already present are skipped, so it may
// be called again at any time, e.g. after a snapshot restore.
func (x *Index) Load(f *fsm.FSM) error {
	return f.ForEachWatchedScriptDigest(func(digest [sha256.Size]byte) error {
		x.scripts.AddFingerprint(watchset.DigestFingerprint(digest))
		return nil
	})
}

// Scripts returns the fingerprint set, for matching.
func (x *Index) Scripts() *watchset.ScriptSet { return x.scripts }

// Len returns the number of distinct script fingerprints in the index.
func (x *Index) Len() int { return x.scripts.Len() }
