package chainrpc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// The functions in this file turn reply bytes into values. They do no I/O, so
// that they can be tested, and fuzzed, on their own.

// maxErrorMessage bounds the message of an RPCError kept from a reply.
const maxErrorMessage = 1000

type envelope struct {
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	ID     json.RawMessage `json:"id"`
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// decodeReply checks the JSON-RPC framing of a reply to the request with id
// wantID and returns its "result" member, which is never null. A JSON-RPC
// error in the reply is returned as an *RPCError (without Method).
func decodeReply(body []byte, wantID uint64) (json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, badReply("not a JSON-RPC reply object: %q", snippet(body))
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, badReply("not a JSON-RPC reply: %v", err)
	}
	// A node that could not parse the request cannot know its id and
	// answers with a null id; any other id must be ours.
	if !isNull(env.ID) {
		var id uint64
		if err := json.Unmarshal(env.ID, &id); err != nil || id != wantID {
			return nil, badReply("reply id %s does not match request id %d", snippet(env.ID), wantID)
		}
	}
	if !isNull(env.Error) {
		var e struct {
			Code    *int    `json:"code"`
			Message *string `json:"message"`
		}
		if err := json.Unmarshal(env.Error, &e); err != nil || e.Code == nil {
			return nil, badReply("malformed error member: %s", snippet(env.Error))
		}
		re := &RPCError{Code: *e.Code}
		if e.Message != nil {
			re.Message = *e.Message
			if len(re.Message) > maxErrorMessage {
				re.Message = re.Message[:maxErrorMessage] + "..."
			}
		}
		return nil, re
	}
	if isNull(env.ID) {
		return nil, badReply("reply has no id")
	}
	if isNull(env.Result) {
		return nil, badReply("reply has neither a result nor an error")
	}
	return env.Result, nil
}

// decodeHeight decodes a block height or count: an integer in [0, MaxInt32].
func decodeHeight(raw json.RawMessage) (int64, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, badReply("want an integer height, got %s", snippet(raw))
	}
	if n < 0 || n > math.MaxInt32 {
		return 0, badReply("height %d out of range", n)
	}
	return n, nil
}

// parseHash parses a hash in the usual byte-reversed hex form. Unlike
// chainhash.NewHashFromStr it accepts exactly 64 hex digits and nothing else.
func parseHash(s string) (chainhash.Hash, error) {
	if len(s) != 2*chainhash.HashSize {
		return chainhash.Hash{}, badReply("hash %q is not %d hex digits", snippet([]byte(s)), 2*chainhash.HashSize)
	}
	var h chainhash.Hash
	if err := chainhash.Decode(&h, s); err != nil {
		return chainhash.Hash{}, badReply("hash %q: %v", s, err)
	}
	return h, nil
}

// decodeHash decodes a JSON string holding a hash.
func decodeHash(raw json.RawMessage) (chainhash.Hash, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return chainhash.Hash{}, badReply("want a hash string, got %s", snippet(raw))
	}
	return parseHash(s)
}

// decodeHashList decodes a JSON array of distinct hashes.
func decodeHashList(raw json.RawMessage) ([]chainhash.Hash, error) {
	var ss []string
	if err := json.Unmarshal(raw, &ss); err != nil {
		return nil, badReply("want an array of hash strings, got %s", snippet(raw))
	}
	hashes := make([]chainhash.Hash, 0, len(ss))
	seen := make(map[chainhash.Hash]struct{}, len(ss))
	for _, s := range ss {
		h, err := parseHash(s)
		if err != nil {
			return nil, err
		}
		if _, dup := seen[h]; dup {
			return nil, badReply("hash %s listed twice", h)
		}
		seen[h] = struct{}{}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

// decodeHex decodes a JSON string of hex digits holding at most maxBytes
// bytes.
func decodeHex(raw json.RawMessage, maxBytes int) ([]byte, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, badReply("want a hex string, got %s", snippet(raw))
	}
	if s == "" {
		return nil, badReply("empty hex string")
	}
	if len(s) > 2*maxBytes {
		return nil, badReply("hex string holds %d bytes, more than the limit of %d", len(s)/2, maxBytes)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, badReply("bad hex: %v", err)
	}
	return b, nil
}

// decodeBlock decodes a raw block that must hash to want and pass checkBlock.
func decodeBlock(raw json.RawMessage, want chainhash.Hash, maxBytes int) (*wire.MsgBlock, error) {
	b, err := decodeHex(raw, maxBytes)
	if err != nil {
		return nil, err
	}
	var blk wire.MsgBlock
	r := bytes.NewReader(b)
	if err := blk.Deserialize(r); err != nil {
		return nil, badReply("block does not decode: %v", err)
	}
	if r.Len() != 0 {
		return nil, badReply("block is followed by %d stray bytes", r.Len())
	}
	if err := checkBlock(&blk, want); err != nil {
		return nil, err
	}
	return &blk, nil
}

// checkBlock verifies that blk is the block with hash want: its header hashes
// to want, the merkle root in the header commits to its transactions (which
// are distinct, so the merkle tree is not malleated, CVE-2012-2459), the first
// is a coinbase, and the coinbase's witness commitment, if any, commits to the
// transactions' witnesses.
func checkBlock(blk *wire.MsgBlock, want chainhash.Hash) error {
	if got := blk.BlockHash(); got != want {
		return badReply("node returned a block that does not hash to %s (it hashes to %s)", want, got)
	}
	if len(blk.Transactions) == 0 {
		return badReply("block has no transactions")
	}
	if !blockchain.IsCoinBaseTx(blk.Transactions[0]) {
		return badReply("first transaction of the block is not a coinbase")
	}
	txs := make([]*btcutil.Tx, len(blk.Transactions))
	seen := make(map[chainhash.Hash]struct{}, len(blk.Transactions))
	for i, mtx := range blk.Transactions {
		tx := btcutil.NewTx(mtx)
		if _, dup := seen[*tx.Hash()]; dup {
			return badReply("block lists transaction %s twice", tx.Hash())
		}
		seen[*tx.Hash()] = struct{}{}
		txs[i] = tx
	}
	if root := blockchain.CalcMerkleRoot(txs, false); root != blk.Header.MerkleRoot {
		return badReply("merkle root of the block's transactions is %s, its header says %s", root, blk.Header.MerkleRoot)
	}
	if err := blockchain.ValidateWitnessCommitment(btcutil.NewBlock(blk)); err != nil {
		return badReply("block's witness commitment does not match its transactions: %v", err)
	}
	return nil
}

// decodeHeader decodes a raw 80-byte block header that must hash to want.
func decodeHeader(raw json.RawMessage, want chainhash.Hash) (*wire.BlockHeader, error) {
	b, err := decodeHex(raw, wire.MaxBlockHeaderPayload)
	if err != nil {
		return nil, err
	}
	if len(b) != wire.MaxBlockHeaderPayload {
		return nil, badReply("block header is %d bytes, want %d", len(b), wire.MaxBlockHeaderPayload)
	}
	var hdr wire.BlockHeader
	if err := hdr.Deserialize(bytes.NewReader(b)); err != nil {
		return nil, badReply("block header does not decode: %v", err)
	}
	if got := hdr.BlockHash(); got != want {
		return nil, badReply("node returned a block header that does not hash to %s (it hashes to %s)", want, got)
	}
	return &hdr, nil
}

// decodeTx decodes a raw transaction whose txid must be want.
func decodeTx(raw json.RawMessage, want chainhash.Hash, maxBytes int) (*wire.MsgTx, error) {
	b, err := decodeHex(raw, maxBytes)
	if err != nil {
		return nil, err
	}
	var tx wire.MsgTx
	r := bytes.NewReader(b)
	if err := tx.Deserialize(r); err != nil {
		return nil, badReply("transaction does not decode: %v", err)
	}
	if r.Len() != 0 {
		return nil, badReply("transaction is followed by %d stray bytes", r.Len())
	}
	if got := tx.TxHash(); got != want {
		return nil, badReply("node returned a transaction whose txid is %s, not %s", got, want)
	}
	return &tx, nil
}

// ChainInfo is the part of getblockchaininfo that bankd uses.
type ChainInfo struct {
	// Chain is the node's name for its network: btcd says "mainnet",
	// "testnet3", "regtest", ...; bitcoind says "main", "test", "regtest",
	// "signet", "testnet4".
	Chain string
	// Blocks is the height of the best block.
	Blocks int64
	// BestBlockHash is the hash of the best block.
	BestBlockHash chainhash.Hash
}

func decodeChainInfo(raw json.RawMessage) (ChainInfo, error) {
	var v struct {
		Chain         *string          `json:"chain"`
		Blocks        *json.RawMessage `json:"blocks"`
		BestBlockHash *json.RawMessage `json:"bestblockhash"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return ChainInfo{}, badReply("%v", err)
	}
	if v.Chain == nil || *v.Chain == "" || v.Blocks == nil || v.BestBlockHash == nil {
		return ChainInfo{}, badReply("reply lacks chain, blocks or bestblockhash")
	}
	blocks, err := decodeHeight(*v.Blocks)
	if err != nil {
		return ChainInfo{}, fmt.Errorf("blocks: %w", err)
	}
	best, err := decodeHash(*v.BestBlockHash)
	if err != nil {
		return ChainInfo{}, fmt.Errorf("bestblockhash: %w", err)
	}
	return ChainInfo{Chain: *v.Chain, Blocks: blocks, BestBlockHash: best}, nil
}
