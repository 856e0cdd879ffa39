package fsm

import (
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// goldenStateHash is the state hash after the random command sequence below, as the release
// binary of 2026-12-07 (1b72a2d) computed it. Every replica of a mixed-version cluster must
// store the same bytes for the same log, so a change to what a command stores must come with a
// version-gated switch (fsm.CommandTypes); a change that only makes applying faster must keep
// this hash.
const goldenStateHash = "67b4455bdc020b6837b4823225ece751d2e78810af987feb7f3575cb78989d86"

func TestStoredBytesMatchThePreviousRelease(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11*7919))
	tf := openTestFSM(t)
	gen := &commandGen{rng: rng, tf: tf}
	gen.setup()
	for range 400 {
		gen.step()
	}
	if n := tf.fatals.count(); n != 0 {
		t.Fatalf("state machine stopped: %v", tf.fatals.errs)
	}
	_, got := tf.hash()
	if hex.EncodeToString(got[:]) != goldenStateHash {
		t.Fatalf("state hash %x, want %s: the stored bytes changed", got, goldenStateHash)
	}
}
