package follow

import (
	"bytes"
	"slices"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// MempoolDiff compares two snapshots of a node's mempool and returns the
// txids that are in cur but not in prev (added) and those in prev but not in
// cur (removed). Both lists are sorted by the hashes' bytes, so the same two
// snapshots always give the same commands.
func MempoolDiff(prev, cur map[chainhash.Hash]struct{}) (added, removed []chainhash.Hash) {
	for h := range cur {
		if _, ok := prev[h]; !ok {
			added = append(added, h)
		}
	}
	for h := range prev {
		if _, ok := cur[h]; !ok {
			removed = append(removed, h)
		}
	}
	slices.SortFunc(added, compareHash)
	slices.SortFunc(removed, compareHash)
	return added, removed
}

func compareHash(a, b chainhash.Hash) int { return bytes.Compare(a[:], b[:]) }
