// Package follow decides, one step at a time, how bankd's replicated view of
// the block chain catches up with a node's best chain.
//
// It does no I/O of its own. The leader's chain watcher calls
// Follower.Next with two views of the chain:
//
//   - Remote, the node (chainrpc.Client implements it), and
//   - Local, the chain as the replicated state machine has recorded it: its
//     tip and the hashes of the blocks just below it.
//
// Next returns the single next step to commit through Raft: Connect the block
// on top of the local tip, Disconnect the local tip, or Idle. The caller
// commits the step, waits until the state machine has applied it, and calls
// Next again. A reorg therefore becomes a sequence of Disconnects, tip first,
// down to the fork point, followed by Connects up the new branch, all in
// chain order; nothing is ever skipped and nothing is decided from memory
// kept between calls, so a new leader simply carries on.
//
// # The node's best chain is the truth
//
// The local chain follows whatever the node reports as its best chain,
// including a reorg to a branch with fewer but heavier blocks. The one
// exception is a node that is merely behind: when the node's best block is a
// block of the local chain (the node is lagging, restarting or re-syncing),
// Next returns Idle rather than disconnecting blocks the node has not seen
// yet. Only when the node's best chain contains, at some height the local
// chain also has, a different block is the local tip disconnected. A node
// whose best block is below the hashes the local chain still keeps cannot be
// compared and is treated as lagging as well.
//
// # Deep reorgs stop following
//
// The state machine keeps the hashes of its tip and of only the K blocks
// below it (K is the state machine's setting, e.g. 1,000), and does not get
// them back when it disconnects blocks. Disconnecting a block needs the hash
// of its parent, which becomes the new tip, so a reorg whose fork point is
// below the kept hashes cannot be followed: Next returns an error wrapping
// ErrReorgTooDeep, and following must stop until an operator has looked at
// the node and the chain (a reorg that deep on a real network means something
// is badly wrong). Reorgs of up to K blocks are followed. The one exception
// is the start height: disconnecting the block at the start height just
// empties the local chain, which then starts again at the start height.
//
// # Errors
//
// Any other error (the node is unreachable, it replied with something
// invalid, a block that does not connect to the local tip because the node's
// chain changed between two calls) means nothing was decided: the caller
// retries later, with backoff. A block that does not connect is never
// skipped silently.
package follow

import (
	"context"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// ErrReorgTooDeep is wrapped by the error Next returns when the node's best
// chain forks from the local chain below the block hashes the local chain
// keeps. Following must stop and an operator must decide what to do.
var ErrReorgTooDeep = errors.New("reorg deeper than the local chain's kept block hashes; operator action needed")

// ErrNotConnecting is wrapped by the error Next returns when the node's block
// at the height above the local tip does not build on the local tip. It
// happens when the node's chain changes between two calls, or when the node
// is inconsistent; the caller retries.
var ErrNotConnecting = errors.New("block does not connect to the local tip")

// Remote is the node's view of the chain. chainrpc.Client implements it.
type Remote interface {
	// BestBlock returns the height and hash of the node's best block.
	BestBlock(ctx context.Context) (height int64, hash chainhash.Hash, err error)
	// BlockHash returns the hash of the block at height on the node's best
	// chain.
	BlockHash(ctx context.Context, height int64) (chainhash.Hash, error)
	// Block returns the block with the given hash, which must hash to it.
	Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, error)
}

// Local is the chain as the replicated state machine has recorded it.
type Local interface {
	// Tip returns the local tip; ok is false while no block is connected.
	Tip() (tip BlockID, ok bool, err error)
	// HashAt returns the hash recorded for the block at height; ok is false
	// when height is above the tip or below the kept hashes.
	HashAt(height int64) (hash chainhash.Hash, ok bool, err error)
}

// BlockID names a block by height and hash.
type BlockID struct {
	Height int64
	Hash   chainhash.Hash
}

func (b BlockID) String() string { return fmt.Sprintf("%d/%s", b.Height, b.Hash) }

// Step is what to commit next: a Connect, a Disconnect or an Idle.
type Step interface {
	isStep()
}

// Connect says: connect Block at Height on top of the local tip. Block's
// PrevBlock is the local tip's hash (or, for the first block of an empty
// local chain, whatever the block at the start height builds on).
type Connect struct {
	Height int64
	Block  *wire.MsgBlock
}

// Disconnect says: disconnect the local tip, the block Hash at Height. The
// block at Height-1 becomes the tip (or the local chain becomes empty when
// Height is the start height).
type Disconnect struct {
	Height int64
	Hash   chainhash.Hash
}

// Idle says: nothing to do; the local chain is caught up with the node, or
// the node is behind it. Remote is the node's best block as last seen.
type Idle struct {
	Remote BlockID
}

func (Connect) isStep()    {}
func (Disconnect) isStep() {}
func (Idle) isStep()       {}

// Hash returns the hash of the block to connect.
func (c Connect) Hash() chainhash.Hash { return c.Block.BlockHash() }

// Config configures a Follower.
type Config struct {
	// StartHeight is the height of the first block an empty local chain
	// connects (the wallet birthday). Blocks below it are never looked at.
	// It must not change once blocks have been connected.
	StartHeight int64
}

// Follower decides the next step. It keeps no state between calls and is
// safe for concurrent use.
type Follower struct {
	cfg Config
}

// New returns a Follower.
func New(cfg Config) (*Follower, error) {
	if cfg.StartHeight < 0 {
		return nil, fmt.Errorf("follow: negative start height %d", cfg.StartHeight)
	}
	return &Follower{cfg: cfg}, nil
}

// Next returns the single next step that brings local closer to remote's
// best chain. See the package documentation for the rules.
func (f *Follower) Next(ctx context.Context, remote Remote, local Local) (Step, error) {
	tip, ok, err := local.Tip()
	if err != nil {
		return nil, fmt.Errorf("follow: reading the local tip: %w", err)
	}
	bestHeight, bestHash, err := remote.BestBlock(ctx)
	if err != nil {
		return nil, fmt.Errorf("follow: asking the node for its best block: %w", err)
	}
	best := BlockID{Height: bestHeight, Hash: bestHash}

	if !ok {
		return f.first(ctx, remote, best)
	}
	if tip.Height < f.cfg.StartHeight {
		return nil, fmt.Errorf("follow: local tip %s is below the start height %d", tip, f.cfg.StartHeight)
	}

	onBest, err := f.onBestChain(ctx, remote, local, tip, best)
	if err != nil {
		return nil, err
	}
	switch onBest {
	case lagging:
		return Idle{Remote: best}, nil
	case diverged:
		return f.disconnect(local, tip)
	}
	if best.Height == tip.Height {
		return Idle{Remote: best}, nil
	}
	return f.connect(ctx, remote, tip, best)
}

// first returns the step for an empty local chain: connect the node's block
// at the start height, once the node has it.
func (f *Follower) first(ctx context.Context, remote Remote, best BlockID) (Step, error) {
	if best.Height < f.cfg.StartHeight {
		return Idle{Remote: best}, nil
	}
	hash := best.Hash
	if best.Height != f.cfg.StartHeight {
		var err error
		hash, err = remote.BlockHash(ctx, f.cfg.StartHeight)
		if err != nil {
			return nil, fmt.Errorf("follow: asking the node for the block at start height %d: %w", f.cfg.StartHeight, err)
		}
	}
	blk, err := fetch(ctx, remote, f.cfg.StartHeight, hash)
	if err != nil {
		return nil, err
	}
	return Connect{Height: f.cfg.StartHeight, Block: blk}, nil
}

type position int

const (
	onChain  position = iota // the local tip is on the node's best chain
	diverged                 // the node's best chain has another block where the local chain has one
	lagging                  // the node's best block is in the local chain below the tip, or cannot be compared
)

// onBestChain tells whether the local tip is on the node's best chain.
func (f *Follower) onBestChain(ctx context.Context, remote Remote, local Local, tip, best BlockID) (position, error) {
	switch {
	case best.Height == tip.Height:
		if best.Hash == tip.Hash {
			return onChain, nil
		}
		return diverged, nil
	case best.Height > tip.Height:
		hash, err := remote.BlockHash(ctx, tip.Height)
		if err != nil {
			return 0, fmt.Errorf("follow: asking the node for the block at the local tip's height %d: %w", tip.Height, err)
		}
		if hash == tip.Hash {
			return onChain, nil
		}
		return diverged, nil
	}

	// The node's best chain is shorter than the local chain. If its best
	// block is ours, it is only behind: wait for it. If another block is
	// at that height, its best chain is another branch.
	if best.Height < f.cfg.StartHeight {
		// The node knows nothing at or above the start height: the node
		// is re-syncing, or was reset. Either way it is not evidence
		// against any local block.
		return lagging, nil
	}
	ours, ok, err := local.HashAt(best.Height)
	if err != nil {
		return 0, fmt.Errorf("follow: reading the local hash at height %d: %w", best.Height, err)
	}
	if !ok || ours == best.Hash {
		return lagging, nil
	}
	return diverged, nil
}

// disconnect returns the step that disconnects the local tip, after checking
// that the block below it is still known.
func (f *Follower) disconnect(local Local, tip BlockID) (Step, error) {
	if tip.Height > f.cfg.StartHeight {
		if _, ok, err := local.HashAt(tip.Height - 1); err != nil {
			return nil, fmt.Errorf("follow: reading the local hash at height %d: %w", tip.Height-1, err)
		} else if !ok {
			return nil, fmt.Errorf("follow: the node's best chain does not contain local block %s, and the local chain keeps no hash below it: %w", tip, ErrReorgTooDeep)
		}
	}
	return Disconnect(tip), nil
}

// connect returns the step that connects the node's block above the local
// tip, which is on the node's best chain and below its best block.
func (f *Follower) connect(ctx context.Context, remote Remote, tip, best BlockID) (Step, error) {
	height := tip.Height + 1
	hash := best.Hash
	if height != best.Height {
		var err error
		hash, err = remote.BlockHash(ctx, height)
		if err != nil {
			return nil, fmt.Errorf("follow: asking the node for the block at height %d: %w", height, err)
		}
	}
	blk, err := fetch(ctx, remote, height, hash)
	if err != nil {
		return nil, err
	}
	if blk.Header.PrevBlock != tip.Hash {
		return nil, fmt.Errorf("follow: block %d/%s builds on %s, not on the local tip %s: %w",
			height, hash, blk.Header.PrevBlock, tip, ErrNotConnecting)
	}
	return Connect{Height: height, Block: blk}, nil
}

// fetch gets a block from the node and checks that it is the one asked for,
// whatever the Remote implementation checked already.
func fetch(ctx context.Context, remote Remote, height int64, hash chainhash.Hash) (*wire.MsgBlock, error) {
	blk, err := remote.Block(ctx, hash)
	if err != nil {
		return nil, fmt.Errorf("follow: fetching block %d/%s: %w", height, hash, err)
	}
	if blk == nil {
		return nil, fmt.Errorf("follow: fetching block %d/%s: the node returned no block", height, hash)
	}
	if got := blk.BlockHash(); got != hash {
		return nil, fmt.Errorf("follow: fetching block %d/%s: the node returned block %s", height, hash, got)
	}
	return blk, nil
}
