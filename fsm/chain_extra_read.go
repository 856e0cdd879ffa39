package fsm

import (
	"crypto/sha256"
	"fmt"
)

// ForEachWatchedScriptDigest calls fn with the SHA-256 of every script in the script table, in
// digest order, stopping at the first error, which it returns. It reads the table's keys only
// (a script's key is its digest), so it is the cheap way to build the chain follower's
// fingerprint index (chainwatch/watchset.DigestFingerprint) of millions of scripts. Like
// ForEachWatchedScript it holds the store's read lock throughout.
func (f *FSM) ForEachWatchedScriptDigest(fn func(digest [sha256.Size]byte) error) error {
	return f.scan([]byte{tagScript}, prefixEnd([]byte{tagScript}), func(k, _ []byte) (bool, error) {
		if len(k) != 1+sha256.Size {
			return false, fmt.Errorf("corrupt script key %x", k)
		}
		if err := fn([sha256.Size]byte(k[1:])); err != nil {
			return false, err
		}
		return true, nil
	})
}
