package follow

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// newBlock returns a block at height on top of parent. label tells blocks
// at the same height and on the same parent apart (branches).
func newBlock(parent chainhash.Hash, height int64, label string) *wire.MsgBlock {
	return &wire.MsgBlock{Header: wire.BlockHeader{
		Version:    4,
		PrevBlock:  parent,
		MerkleRoot: sha256.Sum256([]byte(label)),
		Timestamp:  time.Unix(1_700_000_000+height*600, 0),
		Bits:       0x207fffff,
		Nonce:      uint32(height),
	}}
}

// parseChain turns a chain written as "0 1 2 3a 4a" into blocks by height,
// from height 0. Each word is a height followed by an optional branch label;
// each block builds on the previous word's block, so two chains that share
// their first words share those blocks.
func parseChain(s string) []*wire.MsgBlock {
	var blocks []*wire.MsgBlock
	parent := chainhash.Hash{}
	for i, word := range strings.Fields(s) {
		digits := strings.TrimRight(word, "abcdefghijklmnopqrstuvwxyz")
		h, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || h != int64(i) {
			panic(fmt.Sprintf("chain %q: word %q is not height %d", s, word, i))
		}
		b := newBlock(parent, h, word)
		blocks = append(blocks, b)
		parent = b.BlockHash()
	}
	return blocks
}

// fakeRemote is a node: a best chain, and every block it ever had (a node
// still serves blocks of branches it left).
type fakeRemote struct {
	chain  []*wire.MsgBlock
	blocks map[chainhash.Hash]*wire.MsgBlock
	// beforeCall, when set, runs before every call (to change the chain
	// in the middle of Next).
	beforeCall func()
	// lie, when set, replaces the reply of Block.
	lie func(hash chainhash.Hash) *wire.MsgBlock
	// fail, when set, is returned by every call.
	fail error
}

func newFakeRemote(chain []*wire.MsgBlock) *fakeRemote {
	r := &fakeRemote{blocks: map[chainhash.Hash]*wire.MsgBlock{}}
	r.setChain(chain)
	return r
}

func (r *fakeRemote) setChain(chain []*wire.MsgBlock) {
	r.chain = chain
	for _, b := range chain {
		r.blocks[b.BlockHash()] = b
	}
}

func (r *fakeRemote) hashes() []chainhash.Hash {
	hs := make([]chainhash.Hash, len(r.chain))
	for i, b := range r.chain {
		hs[i] = b.BlockHash()
	}
	return hs
}

func (r *fakeRemote) enter() error {
	if r.beforeCall != nil {
		r.beforeCall()
	}
	return r.fail
}

func (r *fakeRemote) BestBlock(ctx context.Context) (int64, chainhash.Hash, error) {
	if err := r.enter(); err != nil {
		return 0, chainhash.Hash{}, err
	}
	if len(r.chain) == 0 {
		return 0, chainhash.Hash{}, errors.New("fake node has no blocks")
	}
	tip := len(r.chain) - 1
	return int64(tip), r.chain[tip].BlockHash(), nil
}

func (r *fakeRemote) BlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	if err := r.enter(); err != nil {
		return chainhash.Hash{}, err
	}
	if height < 0 || height >= int64(len(r.chain)) {
		return chainhash.Hash{}, fmt.Errorf("fake node: height %d out of range", height)
	}
	return r.chain[height].BlockHash(), nil
}

func (r *fakeRemote) Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	if r.lie != nil {
		return r.lie(hash), nil
	}
	b, ok := r.blocks[hash]
	if !ok {
		return nil, fmt.Errorf("fake node: block %s not found", hash)
	}
	return b, nil
}

// fakeLocal is the replicated state machine's view: a tip and the hashes of
// at most keep blocks below it. Like the real one, it forgets hashes that
// fall out of the window and does not get them back on a disconnect.
type fakeLocal struct {
	start  int64
	keep   int64
	tip    BlockID
	has    bool
	hashes map[int64]chainhash.Hash
	// chain is every block on the local chain from start, kept in full
	// for the tests' comparisons (the follower cannot see it).
	chain []chainhash.Hash
	// log is the steps applied, written as in the table tests.
	log []string
	// names maps hashes to the words of parseChain, for the log.
	names map[chainhash.Hash]string
}

func newFakeLocal(start, keep int64) *fakeLocal {
	return &fakeLocal{start: start, keep: keep, hashes: map[int64]chainhash.Hash{}, names: map[chainhash.Hash]string{}}
}

func (l *fakeLocal) Tip() (BlockID, bool, error) { return l.tip, l.has, nil }

func (l *fakeLocal) HashAt(height int64) (chainhash.Hash, bool, error) {
	if !l.has || height > l.tip.Height {
		return chainhash.Hash{}, false, nil
	}
	h, ok := l.hashes[height]
	return h, ok, nil
}

func (l *fakeLocal) name(h chainhash.Hash) string {
	if n, ok := l.names[h]; ok {
		return n
	}
	return h.String()[:8]
}

// apply applies a step the way the state machine would, refusing any step
// that skips a height, connects a block twice or does not connect.
func (l *fakeLocal) apply(step Step) error {
	switch s := step.(type) {
	case Connect:
		hash := s.Block.BlockHash()
		if l.has {
			if s.Height != l.tip.Height+1 {
				return fmt.Errorf("connect at height %d on tip %s skips or repeats a height", s.Height, l.tip)
			}
			if s.Block.Header.PrevBlock != l.tip.Hash {
				return fmt.Errorf("connect of %d/%s does not build on tip %s", s.Height, hash, l.tip)
			}
		} else if s.Height != l.start {
			return fmt.Errorf("first connect at height %d, want start height %d", s.Height, l.start)
		}
		for _, h := range l.chain {
			if h == hash {
				return fmt.Errorf("block %s connected twice", hash)
			}
		}
		l.tip, l.has = BlockID{Height: s.Height, Hash: hash}, true
		l.hashes[s.Height] = hash
		delete(l.hashes, s.Height-l.keep-1)
		l.chain = append(l.chain, hash)
		l.log = append(l.log, "+"+l.name(hash))
	case Disconnect:
		if !l.has || s.Height != l.tip.Height || s.Hash != l.tip.Hash {
			return fmt.Errorf("disconnect of %d/%s, but the tip is %s", s.Height, s.Hash, l.tip)
		}
		delete(l.hashes, s.Height)
		l.chain = l.chain[:len(l.chain)-1]
		l.log = append(l.log, "-"+l.name(s.Hash))
		if s.Height == l.start {
			l.tip, l.has = BlockID{}, false
			break
		}
		parent, ok := l.hashes[s.Height-1]
		if !ok {
			return fmt.Errorf("disconnect of %d/%s leaves a tip whose hash is forgotten", s.Height, s.Hash)
		}
		l.tip = BlockID{Height: s.Height - 1, Hash: parent}
	case Idle:
		l.log = append(l.log, ".")
	default:
		return fmt.Errorf("unknown step %T", step)
	}
	return nil
}

// load sets the local chain to the blocks of chain from the start height on.
func (l *fakeLocal) load(chain []*wire.MsgBlock) {
	for h := l.start; h < int64(len(chain)); h++ {
		if err := l.apply(Connect{Height: h, Block: chain[h]}); err != nil {
			panic(err)
		}
	}
	l.log = nil
}
