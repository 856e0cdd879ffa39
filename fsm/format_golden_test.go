package fsm

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
)

// goldenStateHash is the state hash after the random command sequence below, as the release
// binary of 2026-12-07 (1b72a2d) computed it. Every replica of a mixed-version cluster must
// store the same bytes for the same log, so a change to what a command stores must come with a
// version-gated switch (fsm.CommandTypes); a change that only makes applying faster must keep
// this hash.
const goldenStateHash = "67b4455bdc020b6837b4823225ece751d2e78810af987feb7f3575cb78989d86"

// goldenGroupedStateHash is the state hash after the same sequence with a switch to
// FormatGroupedHistory at step 100, as this binary computed it when the format was made: a
// change to how that format stores a command needs a format of its own too.
const goldenGroupedStateHash = "f4ad3a62beb3fde04f898c8d58ea35fbfff0152ddd9e6afa8a08c6ed195fcf90"

func TestStoredBytesMatchThePreviousRelease(t *testing.T) {
	for _, c := range []struct {
		format uint32
		want   string
	}{
		{FormatBaseline, goldenStateHash},
		{FormatGroupedHistory, goldenGroupedStateHash},
	} {
		t.Run(fmt.Sprintf("format=%d", c.format), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, 11*7919))
			tf := openTestFSM(t)
			gen := &commandGen{rng: rng, tf: tf}
			gen.setup()
			for step := range 400 {
				if step == 100 {
					tf.switchFormat(c.format)
				}
				gen.step()
			}
			if n := tf.fatals.count(); n != 0 {
				t.Fatalf("state machine stopped: %v", tf.fatals.errs)
			}
			_, got := tf.hash()
			if hex.EncodeToString(got[:]) != c.want {
				t.Fatalf("state hash %x, want %s: the stored bytes changed", got, c.want)
			}
		})
	}
}
