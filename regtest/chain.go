package regtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// generateBatch is how many blocks one `generate` call mines; btcd answers only when the whole
// batch is mined, so this bounds the time ctx cannot interrupt.
const generateBatch = 250

// ChainTip is the best block of the node's main chain.
type ChainTip struct {
	Hash   chainhash.Hash
	Height int64
}

// Generate mines n blocks on the current tip, including the mempool's transactions, and
// returns their hashes in chain order. The coinbases pay the faucet.
func (b *Btcd) Generate(ctx context.Context, n int) ([]chainhash.Hash, error) {
	if n <= 0 {
		return nil, fmt.Errorf("regtest: generate %d blocks: need at least one", n)
	}
	hashes := make([]chainhash.Hash, 0, n)
	for len(hashes) < n {
		if err := ctx.Err(); err != nil {
			return hashes, fmt.Errorf("regtest: generate: %w", err)
		}
		batch := min(n-len(hashes), generateBatch)
		var strs []string
		if err := b.Call(ctx, "generate", &strs, batch); err != nil {
			return hashes, fmt.Errorf("regtest: generate %d blocks: %w", batch, err)
		}
		for _, s := range strs {
			h, err := chainhash.NewHashFromStr(s)
			if err != nil {
				return hashes, fmt.Errorf("regtest: generate: block hash %q: %w", s, err)
			}
			hashes = append(hashes, *h)
		}
	}
	return hashes, nil
}

// BlockCount returns the height of the best block.
func (b *Btcd) BlockCount(ctx context.Context) (int64, error) {
	var n int64
	if err := b.Call(ctx, "getblockcount", &n); err != nil {
		return 0, fmt.Errorf("regtest: %w", err)
	}
	return n, nil
}

// Tip returns the best block's hash and height.
func (b *Btcd) Tip(ctx context.Context) (ChainTip, error) {
	// Both in one batch so that the answers describe the same chain state.
	var hashStr string
	var height int64
	calls := []rpcCall{
		{Method: "getbestblockhash", Result: &hashStr},
		{Method: "getblockcount", Result: &height},
	}
	if err := b.rpc.batch(ctx, calls); err != nil {
		return ChainTip{}, fmt.Errorf("regtest: tip: %w", err)
	}
	for _, c := range calls {
		if c.Err != nil {
			return ChainTip{}, fmt.Errorf("regtest: tip: %w", c.Err)
		}
	}
	h, err := chainhash.NewHashFromStr(hashStr)
	if err != nil {
		return ChainTip{}, fmt.Errorf("regtest: tip hash %q: %w", hashStr, err)
	}
	return ChainTip{Hash: *h, Height: height}, nil
}

// BlockHash returns the hash of the main-chain block at height.
func (b *Btcd) BlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	var s string
	if err := b.Call(ctx, "getblockhash", &s, height); err != nil {
		return chainhash.Hash{}, fmt.Errorf("regtest: block at height %d: %w", height, err)
	}
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("regtest: block hash %q: %w", s, err)
	}
	return *h, nil
}

// Block returns a block (main chain or not) by hash.
func (b *Btcd) Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, error) {
	var s string
	if err := b.Call(ctx, "getblock", &s, hash.String(), 0); err != nil {
		return nil, fmt.Errorf("regtest: block %v: %w", hash, err)
	}
	return decodeBlock(s)
}

func decodeBlock(s string) (*wire.MsgBlock, error) {
	raw, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("regtest: block hex: %w", err)
	}
	var blk wire.MsgBlock
	if err := blk.Deserialize(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("regtest: decoding block: %w", err)
	}
	return &blk, nil
}

// InvalidateBlock marks a block and its descendants invalid. If it is on the main chain, the
// node falls back to its parent (or to a valid side branch with more work) and returns the
// disconnected blocks' transactions to the mempool.
func (b *Btcd) InvalidateBlock(ctx context.Context, hash chainhash.Hash) error {
	if err := b.Call(ctx, "invalidateblock", nil, hash.String()); err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	return nil
}

// ReconsiderBlock removes the invalid mark that InvalidateBlock put on a block and its
// descendants; the node switches back to that branch if it then has the most work.
func (b *Btcd) ReconsiderBlock(ctx context.Context, hash chainhash.Hash) error {
	if err := b.Call(ctx, "reconsiderblock", nil, hash.String()); err != nil {
		return fmt.Errorf("regtest: %w", err)
	}
	return nil
}

// Reorg replaces the top depth blocks of the main chain by a competing branch of newLength
// blocks mined on their parent, and returns the old branch's and the new branch's hashes in
// chain order. Transactions of the old branch return to the mempool and are mined again in
// the new branch unless something has replaced them in between.
//
// When newLength > depth the old branch is reconsidered afterwards, so the node ends up as if
// it had seen both branches and followed the one with more work, as a real reorg would leave
// it. Otherwise the old branch stays marked invalid (the node cannot prefer a shorter chain).
func (b *Btcd) Reorg(ctx context.Context, depth, newLength int) (oldBranch, newBranch []chainhash.Hash, err error) {
	return b.reorg(ctx, depth, newLength, nil)
}

// reorg is Reorg with a hook that runs between invalidating the old branch and mining the new.
func (b *Btcd) reorg(ctx context.Context, depth, newLength int,
	between func(context.Context) error) (oldBranch, newBranch []chainhash.Hash, err error) {

	if depth < 1 || newLength < 1 {
		return nil, nil, fmt.Errorf("regtest: reorg depth %d, new length %d: both must be at least 1",
			depth, newLength)
	}
	tip, err := b.Tip(ctx)
	if err != nil {
		return nil, nil, err
	}
	if int64(depth) >= tip.Height {
		return nil, nil, fmt.Errorf("regtest: reorg of depth %d on a chain of height %d", depth, tip.Height)
	}
	forkHeight := tip.Height - int64(depth) // the last block both branches share
	oldBranch = make([]chainhash.Hash, 0, depth)
	for h := forkHeight + 1; h <= tip.Height; h++ {
		hash, err := b.BlockHash(ctx, h)
		if err != nil {
			return nil, nil, err
		}
		oldBranch = append(oldBranch, hash)
	}
	if err := b.InvalidateBlock(ctx, oldBranch[0]); err != nil {
		return nil, nil, err
	}
	if between != nil {
		if err := between(ctx); err != nil {
			return oldBranch, nil, err
		}
	}
	newBranch, err = b.Generate(ctx, newLength)
	if err != nil {
		return oldBranch, newBranch, err
	}
	if newLength > depth {
		if err := b.ReconsiderBlock(ctx, oldBranch[0]); err != nil {
			return oldBranch, newBranch, err
		}
		now, err := b.Tip(ctx)
		if err != nil {
			return oldBranch, newBranch, err
		}
		if now.Hash != newBranch[len(newBranch)-1] {
			return oldBranch, newBranch, fmt.Errorf("regtest: reorg: tip is %v after reconsidering the old branch, want %v",
				now.Hash, newBranch[len(newBranch)-1])
		}
	}
	b.log.Info("regtest: reorganised", "fork_height", forkHeight, "old_blocks", depth, "new_blocks", newLength)
	return oldBranch, newBranch, nil
}

// Mempool returns the ids of the transactions in the mempool.
func (b *Btcd) Mempool(ctx context.Context) ([]chainhash.Hash, error) {
	var strs []string
	if err := b.Call(ctx, "getrawmempool", &strs); err != nil {
		return nil, fmt.Errorf("regtest: %w", err)
	}
	ids := make([]chainhash.Hash, 0, len(strs))
	for _, s := range strs {
		h, err := chainhash.NewHashFromStr(s)
		if err != nil {
			return nil, fmt.Errorf("regtest: mempool txid %q: %w", s, err)
		}
		ids = append(ids, *h)
	}
	return ids, nil
}

// InMempool reports whether the transaction is in the mempool.
func (b *Btcd) InMempool(ctx context.Context, txid chainhash.Hash) (bool, error) {
	// btcd does not implement getmempoolentry.
	ids, err := b.Mempool(ctx)
	if err != nil {
		return false, err
	}
	return slices.Contains(ids, txid), nil
}

// TxStatus says where the node knows a transaction from.
type TxStatus struct {
	// Confirmations is 0 for a transaction in the mempool, else the depth of its block.
	Confirmations int64
	// BlockHash is the main-chain block holding the transaction (zero while unconfirmed).
	BlockHash chainhash.Hash
}

// ErrUnknownTx is returned by [Btcd.TxStatus] for a transaction that is neither in the mempool
// nor in a main-chain block.
var ErrUnknownTx = errors.New("regtest: transaction is neither in the mempool nor in the main chain")

// TxStatus looks a transaction up in the mempool and, through btcd's transaction index, in the
// main chain.
func (b *Btcd) TxStatus(ctx context.Context, txid chainhash.Hash) (TxStatus, error) {
	var res struct {
		BlockHash     string `json:"blockhash"`
		Confirmations int64  `json:"confirmations"`
	}
	err := b.Call(ctx, "getrawtransaction", &res, txid.String(), 1)
	var rpcErr *RPCError
	if errors.As(err, &rpcErr) {
		return TxStatus{}, fmt.Errorf("%w: %v: %v", ErrUnknownTx, txid, err)
	}
	if err != nil {
		return TxStatus{}, fmt.Errorf("regtest: %w", err)
	}
	st := TxStatus{Confirmations: res.Confirmations}
	if res.BlockHash != "" {
		h, err := chainhash.NewHashFromStr(res.BlockHash)
		if err != nil {
			return TxStatus{}, fmt.Errorf("regtest: block hash %q: %w", res.BlockHash, err)
		}
		st.BlockHash = *h
	}
	return st, nil
}

// SendRawTransaction hands a signed transaction to the node's mempool and returns its id.
func (b *Btcd) SendRawTransaction(ctx context.Context, tx *wire.MsgTx) (chainhash.Hash, error) {
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		return chainhash.Hash{}, fmt.Errorf("regtest: encoding transaction: %w", err)
	}
	var s string
	if err := b.Call(ctx, "sendrawtransaction", &s, hex.EncodeToString(buf.Bytes())); err != nil {
		return chainhash.Hash{}, fmt.Errorf("regtest: broadcasting %v: %w", tx.TxHash(), err)
	}
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("regtest: txid %q: %w", s, err)
	}
	return *h, nil
}
