package follow

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bankd/bankd/chainwatch/chainrpc"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// The node's RPC client is a Remote.
var _ Remote = (*chainrpc.Client)(nil)

// TestNext runs the follower against a node until it is idle and compares the
// steps it took with the expected ones.
//
// Chains are written as in parseChain: "0 1 2 3a" is a chain of heights 0 to
// 3 whose block 3 is on branch a; "3b" on the same blocks 0 to 2 is another
// block at height 3. Steps are written "+3a" (connect 3a), "-3a" (disconnect
// 3a), "." (idle) and "!" followed by the error expected, which ends the run.
func TestNext(t *testing.T) {
	tests := []struct {
		name   string
		start  int64  // start height (birthday)
		keep   int64  // hashes the local chain keeps below its tip; 0 means 1000
		local  string // the local chain (from the start height on)
		remote string // the node's best chain
		// then, when set, replaces the node's chain after that many steps
		then      map[int]string
		wantSteps string
	}{
		{
			name:      "caught up",
			local:     "0 1 2",
			remote:    "0 1 2",
			wantSteps: ".",
		},
		{
			name:      "linear catch-up",
			local:     "0 1",
			remote:    "0 1 2 3 4",
			wantSteps: "+2 +3 +4 .",
		},
		{
			name:      "empty local chain starts at height 0",
			remote:    "0 1 2",
			wantSteps: "+0 +1 +2 .",
		},
		{
			name:      "empty local chain starts at the birthday height",
			start:     3,
			remote:    "0 1 2 3 4 5",
			wantSteps: "+3 +4 +5 .",
		},
		{
			name:      "empty local chain waits for the node to reach the birthday",
			start:     5,
			remote:    "0 1 2",
			wantSteps: ".",
		},
		{
			name:      "1-block reorg at the same height",
			local:     "0 1 2 3a",
			remote:    "0 1 2 3b",
			wantSteps: "-3a +3b .",
		},
		{
			name:      "1-block reorg to a longer branch",
			local:     "0 1 2 3a",
			remote:    "0 1 2 3b 4b",
			wantSteps: "-3a +3b +4b .",
		},
		{
			name:      "3-block reorg to a longer branch",
			local:     "0 1 2 3a 4a 5a",
			remote:    "0 1 2 3b 4b 5b 6b 7b",
			wantSteps: "-5a -4a -3a +3b +4b +5b +6b +7b .",
		},
		{
			name:      "reorg to a shorter branch the node reports as best (heavier)",
			local:     "0 1 2 3a 4a 5a",
			remote:    "0 1 2 3b 4b",
			wantSteps: "-5a -4a -3a +3b +4b .",
		},
		{
			name:      "reorg to a branch one block long, below the local tip",
			local:     "0 1 2 3a 4a 5a",
			remote:    "0 1 2 3b",
			wantSteps: "-5a -4a -3a +3b .",
		},
		{
			name:      "a lagging node is waited for, not followed backwards",
			local:     "0 1 2 3 4",
			remote:    "0 1 2",
			wantSteps: ".",
		},
		{
			name:      "a node far behind the kept hashes cannot be compared and is waited for",
			keep:      2,
			local:     "0 1 2 3 4 5 6",
			remote:    "0 1x",
			wantSteps: ".",
		},
		{
			name:      "reorg of exactly the kept depth is followed",
			keep:      3,
			local:     "0 1 2 3 4a 5a 6a",
			remote:    "0 1 2 3 4b 5b 6b 7b",
			wantSteps: "-6a -5a -4a +4b +5b +6b +7b .",
		},
		{
			name:      "reorg deeper than the kept hashes stops following",
			keep:      3,
			local:     "0 1 2 3a 4a 5a 6a",
			remote:    "0 1 2 3b 4b 5b 6b 7b",
			wantSteps: "-6a -5a -4a !" + ErrReorgTooDeep.Error(),
		},
		{
			name:      "reorg through the birthday block restarts at the birthday",
			start:     2,
			local:     "0 1 2a 3a",
			remote:    "0 1 2b 3b 4b",
			wantSteps: "-3a -2a +2b +3b +4b .",
		},
		{
			name:      "a small local chain reorgs below its birthday without complaint",
			start:     2,
			keep:      1,
			local:     "0 1 2 3",
			remote:    "0 1x 2x 3x",
			wantSteps: "-3 -2 +2x +3x .",
		},
		{
			name:      "node changes to a third branch in the middle of a reorg",
			local:     "0 1 2 3a 4a",
			remote:    "0 1 2 3b 4b",
			then:      map[int]string{1: "0 1 2 3c 4c 5c"},
			wantSteps: "-4a -3a +3c +4c +5c .",
		},
		{
			name:      "node returns to the original branch in the middle of a reorg",
			local:     "0 1 2 3a 4a",
			remote:    "0 1 2 3b 4b",
			then:      map[int]string{1: "0 1 2 3a 4a 5a"},
			wantSteps: "-4a +4a +5a .",
		},
		{
			name:      "node reorgs in the middle of a catch-up",
			local:     "0 1",
			remote:    "0 1 2a 3a 4a",
			then:      map[int]string{1: "0 1 2a 3b 4b"},
			wantSteps: "+2a +3b +4b .",
		},
		{
			name:      "node reorgs after a catch-up step connected a block it then drops",
			local:     "0 1",
			remote:    "0 1 2a 3a 4a",
			then:      map[int]string{2: "0 1 2b 3b"},
			wantSteps: "+2a +3a -3a -2a +2b +3b .",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keep := tc.keep
			if keep == 0 {
				keep = 1000
			}
			f, err := New(Config{StartHeight: tc.start})
			if err != nil {
				t.Fatal(err)
			}
			local := newFakeLocal(tc.start, keep)
			remoteChain := parseChain(tc.remote)
			remote := newFakeRemote(remoteChain)
			name := func(chain string) []*wire.MsgBlock {
				blocks := parseChain(chain)
				for i, w := range strings.Fields(chain) {
					local.names[blocks[i].BlockHash()] = w
				}
				return blocks
			}
			name(tc.remote)
			for _, c := range tc.then {
				name(c)
			}
			local.load(name(tc.local))

			var errText string
			for step := 0; step < 100; step++ {
				if c, ok := tc.then[step]; ok {
					remote.setChain(parseChain(c))
				}
				s, err := f.Next(context.Background(), remote, local)
				if err != nil {
					errText = err.Error()
					if errors.Is(err, ErrReorgTooDeep) {
						errText = ErrReorgTooDeep.Error()
					}
					local.log = append(local.log, "!"+errText)
					break
				}
				if err := local.apply(s); err != nil {
					t.Fatalf("steps %s: %v", strings.Join(local.log, " "), err)
				}
				if _, idle := s.(Idle); idle {
					break
				}
			}
			if got := strings.Join(local.log, " "); got != tc.wantSteps {
				t.Fatalf("steps:\n got  %s\n want %s", got, tc.wantSteps)
			}
			if errText != "" {
				return
			}
			// Unless the node is behind, idle means the local chain is
			// the node's best chain.
			want := remote.hashes()
			if int64(len(want)) <= tc.start {
				want = nil
			} else {
				want = want[tc.start:]
			}
			if len(want) >= len(local.chain) && !equalHashes(local.chain, want) {
				t.Fatalf("idle, but the local chain is not the node's best chain")
			}
		})
	}
}

func equalHashes(a, b []chainhash.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNextErrors(t *testing.T) {
	chain := parseChain("0 1 2 3 4")
	stray := parseChain("0 1 2x 3x")

	tests := []struct {
		name   string
		setup  func(r *fakeRemote)
		wantIs error
		text   string
	}{
		{
			name: "block that does not connect to the local tip",
			setup: func(r *fakeRemote) {
				// The node says block 3 is 3x, which builds on 2x, while
				// its block 2 is the local tip.
				c := append([]*wire.MsgBlock{}, chain...)
				c[3] = stray[3]
				r.setChain(c)
			},
			wantIs: ErrNotConnecting,
			text:   "not on the local tip",
		},
		{
			name: "node returns another block than the one asked for",
			setup: func(r *fakeRemote) {
				r.lie = func(chainhash.Hash) *wire.MsgBlock { return stray[3] }
			},
			text: "the node returned block " + stray[3].BlockHash().String(),
		},
		{
			name:   "node unreachable",
			setup:  func(r *fakeRemote) { r.fail = errBroken },
			wantIs: errBroken,
			text:   "best block",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := New(Config{})
			local := newFakeLocal(0, 1000)
			local.load(chain[:3])
			remote := newFakeRemote(chain)
			tc.setup(remote)
			s, err := f.Next(context.Background(), remote, local)
			if err == nil {
				t.Fatalf("Next = %#v, want an error", s)
			}
			t.Logf("error: %v", err)
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
			if errors.Is(err, ErrReorgTooDeep) {
				t.Errorf("error %v claims a deep reorg", err)
			}
		})
	}
}

var errBroken = errors.New("connection refused")

type brokenLocal struct{ tipErr, hashErr error }

func (b brokenLocal) Tip() (BlockID, bool, error) {
	return BlockID{Height: 4, Hash: parseChain("0 1 2 3 4a")[4].BlockHash()}, true, b.tipErr
}

func (b brokenLocal) HashAt(int64) (chainhash.Hash, bool, error) {
	return chainhash.Hash{}, false, b.hashErr
}

func TestNextLocalErrors(t *testing.T) {
	f, _ := New(Config{})
	remote := newFakeRemote(parseChain("0 1 2 3 4 5"))
	for _, local := range []brokenLocal{{tipErr: errBroken}, {hashErr: errBroken}} {
		if _, err := f.Next(context.Background(), remote, local); !errors.Is(err, errBroken) {
			t.Errorf("Next with %+v = %v, want the local error", local, err)
		}
	}
}

func TestNewRejectsNegativeStart(t *testing.T) {
	if _, err := New(Config{StartHeight: -1}); err == nil {
		t.Fatal("accepted")
	}
}

func TestLocalTipBelowStart(t *testing.T) {
	f, _ := New(Config{StartHeight: 3})
	local := newFakeLocal(0, 1000)
	local.load(parseChain("0 1"))
	if _, err := f.Next(context.Background(), newFakeRemote(parseChain("0 1 2 3")), local); err == nil {
		t.Fatal("no error for a local tip below the start height")
	}
}
