package follow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// mutableChain is a node's best chain that grows and reorgs at random.
type mutableChain struct {
	rnd    *rand.Rand
	remote *fakeRemote
	start  int64 // the chain never drops to or below the start height
	serial int   // makes every new block unique
}

func (m *mutableChain) extend(n int) {
	chain := append([]*wire.MsgBlock{}, m.remote.chain...)
	for range n {
		parent := chainhash.Hash{}
		if len(chain) > 0 {
			parent = chain[len(chain)-1].BlockHash()
		}
		m.serial++
		chain = append(chain, newBlock(parent, int64(len(chain)), fmt.Sprint("block", m.serial)))
	}
	m.remote.setChain(chain)
}

// reorg replaces the last depth blocks with a new branch of length blocks,
// which may be shorter than what it replaces (a heavier branch).
func (m *mutableChain) reorg(depth, length int) {
	m.remote.chain = m.remote.chain[:len(m.remote.chain)-depth]
	m.extend(length)
}

// mutate makes one random change that keeps the best block above the start
// height: extend by 1-4 blocks, or reorg the last 1-4 blocks (never below
// the start height) into a new branch of 1 to depth+3 blocks.
func (m *mutableChain) mutate() {
	best := int64(len(m.remote.chain) - 1)
	maxDepth := min(4, best-m.start)
	if maxDepth < 1 || m.rnd.IntN(2) == 0 {
		m.extend(1 + m.rnd.IntN(4))
		return
	}
	depth := 1 + m.rnd.IntN(int(maxDepth))
	m.reorg(depth, 1+m.rnd.IntN(depth+3))
}

// forkHeight returns the height of the highest block that the local chain
// and the node's best chain share, or start-1 when they share none.
func forkHeight(local *fakeLocal, remote []chainhash.Hash) int64 {
	h := local.start - 1
	for i, hash := range local.chain {
		height := local.start + int64(i)
		if height >= int64(len(remote)) || remote[height] != hash {
			break
		}
		h = height
	}
	return h
}

// lowestKept returns the lowest height whose hash the local chain keeps.
func lowestKept(local *fakeLocal) int64 {
	low := local.tip.Height
	for h := range local.hashes {
		low = min(low, h)
	}
	return low
}

// TestFollowRandomChains lets a node's chain grow and reorg at random, also
// in the middle of the follower's walk and in the middle of a call to Next,
// and applies the follower's steps to a local chain that refuses a skipped
// height, a repeated block or a block that does not connect. Once the node
// stops changing, the follower must bring the local chain to the node's best
// chain and go idle. A deep-reorg error is accepted only when the fork point
// really is below the hashes the local chain keeps.
func TestFollowRandomChains(t *testing.T) {
	rounds := 400
	if testing.Short() {
		rounds = 50
	}
	var deep, retried, steps, waited int
	for round := range rounds {
		rnd := rand.New(rand.NewPCG(uint64(round), 42))
		start := rnd.Int64N(4)
		keep := 2 + rnd.Int64N(10)
		m := &mutableChain{rnd: rnd, remote: newFakeRemote(nil), start: start}
		m.extend(int(start) + 1 + rnd.IntN(20))
		local := newFakeLocal(start, keep)
		f, err := New(Config{StartHeight: start})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()

		stopped := false
		for mutation := 0; mutation < 15 && !stopped; mutation++ {
			m.mutate()
			// Some steps, maybe not enough to catch up, with the chain
			// now and then changing under a call to Next.
			for range rnd.IntN(12) {
				midCall := rnd.IntN(8) == 0
				calls := 0
				callToMutate := 1 + rnd.IntN(3)
				before := m.remote.hashes()
				if midCall {
					m.remote.beforeCall = func() {
						calls++
						if calls == callToMutate {
							m.mutate()
						}
					}
				}
				s, err := f.Next(ctx, m.remote, local)
				m.remote.beforeCall = nil
				steps++
				switch {
				case errors.Is(err, ErrReorgTooDeep):
					checkDeep(t, round, local, before, m.remote.hashes())
					deep++
					stopped = true
				case err != nil && !midCall:
					t.Fatalf("round %d: error with a chain that held still: %v", round, err)
				case err != nil:
					retried++
				default:
					if err := local.apply(s); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
				}
				if stopped {
					break
				}
			}
		}
		if stopped {
			continue
		}

		// The node holds still now: the follower must catch up and idle.
		// A node left behind the local tip (by reorgs to shorter branches)
		// is waited for, so it then grows past the local tip, as a
		// lagging node would.
		for attempt := 0; ; attempt++ {
			deepNow := settle(t, round, f, m.remote, local)
			if deepNow {
				deep++
				break
			}
			best := int64(len(m.remote.chain) - 1)
			if local.has && best < local.tip.Height && attempt < 2 {
				// Idle with the node behind is right only when its
				// best block is ours or below the kept hashes.
				ours, kept, _ := local.HashAt(best)
				if kept && ours != m.remote.chain[best].BlockHash() {
					t.Fatalf("round %d: idle at local tip %s while the node's best chain has another block at height %d",
						round, local.tip, best)
				}
				waited++
				m.extend(int(local.tip.Height-best) + 1)
				continue
			}
			if want := m.remote.hashes()[start:]; !equalHashes(local.chain, want) {
				t.Fatalf("round %d: idle with local chain of %d blocks, node's best chain from the start height has %d",
					round, len(local.chain), len(want))
			}
			break
		}
	}
	t.Logf("%d rounds, %d steps, %d calls failed because the chain changed under them, %d deep reorgs refused, %d times waited for a node behind",
		rounds, steps, retried, deep, waited)
}

// settle runs the follower against a node that holds still until it is idle,
// and reports whether it stopped on a (justified) deep reorg instead.
func settle(t *testing.T, round int, f *Follower, remote *fakeRemote, local *fakeLocal) (deep bool) {
	t.Helper()
	for range 1000 {
		s, err := f.Next(context.Background(), remote, local)
		if errors.Is(err, ErrReorgTooDeep) {
			checkDeep(t, round, local, remote.hashes(), remote.hashes())
			return true
		}
		if err != nil {
			t.Fatalf("round %d: error with a chain that held still: %v", round, err)
		}
		if err := local.apply(s); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, ok := s.(Idle); ok {
			return false
		}
	}
	t.Fatalf("round %d: not idle after 1000 steps", round)
	return false
}

// checkDeep fails the test unless a deep-reorg error was due: the fork point
// between the local chain and the node's chain (before or after the call) is
// below the lowest hash the local chain keeps, which is above the start
// height.
func checkDeep(t *testing.T, round int, local *fakeLocal, before, after []chainhash.Hash) {
	t.Helper()
	low := lowestKept(local)
	for _, remote := range [][]chainhash.Hash{before, after} {
		if fork := forkHeight(local, remote); fork < low && low > local.start {
			return
		}
	}
	t.Fatalf("round %d: deep reorg refused, but the fork point is within the kept hashes (lowest kept %d, fork %d)",
		round, low, forkHeight(local, before))
}
