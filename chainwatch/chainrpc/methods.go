package chainrpc

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// ChainInfo returns the node's network name and best block (getblockchaininfo).
func (c *Client) ChainInfo(ctx context.Context) (ChainInfo, error) {
	raw, err := c.call(ctx, "getblockchaininfo", "getblockchaininfo")
	if err != nil {
		return ChainInfo{}, err
	}
	info, err := decodeChainInfo(raw)
	if err != nil {
		return ChainInfo{}, fmt.Errorf("chainrpc: getblockchaininfo: %w", err)
	}
	return info, nil
}

// BestBlock returns the height and hash of the node's best block. Both come
// from one getblockchaininfo reply, so they belong together even while the
// node's tip moves.
func (c *Client) BestBlock(ctx context.Context) (int64, chainhash.Hash, error) {
	info, err := c.ChainInfo(ctx)
	if err != nil {
		return 0, chainhash.Hash{}, err
	}
	return info.Blocks, info.BestBlockHash, nil
}

// BlockCount returns the height of the node's best block (getblockcount).
func (c *Client) BlockCount(ctx context.Context) (int64, error) {
	raw, err := c.call(ctx, "getblockcount", "getblockcount")
	if err != nil {
		return 0, err
	}
	n, err := decodeHeight(raw)
	if err != nil {
		return 0, fmt.Errorf("chainrpc: getblockcount: %w", err)
	}
	return n, nil
}

// BestBlockHash returns the hash of the node's best block (getbestblockhash).
func (c *Client) BestBlockHash(ctx context.Context) (chainhash.Hash, error) {
	raw, err := c.call(ctx, "getbestblockhash", "getbestblockhash")
	if err != nil {
		return chainhash.Hash{}, err
	}
	h, err := decodeHash(raw)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("chainrpc: getbestblockhash: %w", err)
	}
	return h, nil
}

// BlockHash returns the hash of the block at height on the node's best chain
// (getblockhash). A height above the best block gives an error for which
// IsOutOfRange is true.
func (c *Client) BlockHash(ctx context.Context, height int64) (chainhash.Hash, error) {
	if height < 0 {
		return chainhash.Hash{}, fmt.Errorf("chainrpc: getblockhash: negative height %d", height)
	}
	what := fmt.Sprintf("getblockhash %d", height)
	raw, err := c.call(ctx, what, "getblockhash", height)
	if err != nil {
		return chainhash.Hash{}, err
	}
	h, err := decodeHash(raw)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("chainrpc: %s: %w", what, err)
	}
	return h, nil
}

// Block returns the block with the given hash (getblock with verbosity 0, the
// raw block, which both btcd and bitcoind accept as the integer 0; btcd
// refuses the boolean false). The block is verified: it hashes to hash, its
// merkle root and witness commitment match its transactions, and it is no
// larger than Config.MaxBlockBytes. An unknown block gives an error for which
// IsNotFound is true.
func (c *Client) Block(ctx context.Context, hash chainhash.Hash) (*wire.MsgBlock, error) {
	what := "getblock " + hash.String()
	raw, err := c.call(ctx, what, "getblock", hash.String(), 0)
	if err != nil {
		return nil, err
	}
	blk, err := decodeBlock(raw, hash, c.maxBlockBytes)
	if err != nil {
		return nil, fmt.Errorf("chainrpc: %s: %w", what, err)
	}
	return blk, nil
}

// BlockHeader returns the header of the block with the given hash
// (getblockheader, verbose false), verified to hash to hash.
func (c *Client) BlockHeader(ctx context.Context, hash chainhash.Hash) (*wire.BlockHeader, error) {
	what := "getblockheader " + hash.String()
	raw, err := c.call(ctx, what, "getblockheader", hash.String(), false)
	if err != nil {
		return nil, err
	}
	hdr, err := decodeHeader(raw, hash)
	if err != nil {
		return nil, fmt.Errorf("chainrpc: %s: %w", what, err)
	}
	return hdr, nil
}

// RawMempool returns the txids in the node's mempool (getrawmempool), in the
// node's order.
func (c *Client) RawMempool(ctx context.Context) ([]chainhash.Hash, error) {
	raw, err := c.call(ctx, "getrawmempool", "getrawmempool")
	if err != nil {
		return nil, err
	}
	ids, err := decodeHashList(raw)
	if err != nil {
		return nil, fmt.Errorf("chainrpc: getrawmempool: %w", err)
	}
	return ids, nil
}

// RawTransaction returns the transaction with the given txid
// (getrawtransaction, verbose 0), verified to have that txid. Outside the
// mempool, btcd needs --txindex and bitcoind -txindex (or the block) to find
// it; otherwise the error is one for which IsNotFound is true.
func (c *Client) RawTransaction(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	what := "getrawtransaction " + txid.String()
	raw, err := c.call(ctx, what, "getrawtransaction", txid.String(), 0)
	if err != nil {
		return nil, err
	}
	tx, err := decodeTx(raw, txid, c.maxBlockBytes)
	if err != nil {
		return nil, fmt.Errorf("chainrpc: %s: %w", what, err)
	}
	return tx, nil
}

// SendRawTransaction submits tx to the node's mempool (sendrawtransaction,
// with the node's default fee checks) and returns its txid, verified to be
// tx's.
func (c *Client) SendRawTransaction(ctx context.Context, tx *wire.MsgTx) (chainhash.Hash, error) {
	var buf bytes.Buffer
	buf.Grow(tx.SerializeSize())
	if err := tx.Serialize(&buf); err != nil {
		return chainhash.Hash{}, fmt.Errorf("chainrpc: sendrawtransaction: encoding transaction: %w", err)
	}
	want := tx.TxHash()
	what := "sendrawtransaction " + want.String()
	raw, err := c.call(ctx, what, "sendrawtransaction", hex.EncodeToString(buf.Bytes()))
	if err != nil {
		return chainhash.Hash{}, err
	}
	got, err := decodeHash(raw)
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("chainrpc: %s: %w", what, err)
	}
	if got != want {
		return chainhash.Hash{}, fmt.Errorf("chainrpc: %s: %w", what,
			badReply("node says it accepted transaction %s", got))
	}
	return got, nil
}

// knownNetworks are the networks CheckNetwork can name from a genesis hash.
var knownNetworks = []*chaincfg.Params{
	&chaincfg.MainNetParams,
	&chaincfg.TestNet3Params,
	&chaincfg.TestNet4Params,
	&chaincfg.RegressionNetParams,
	&chaincfg.SigNetParams,
	&chaincfg.SimNetParams,
}

// chainNames returns the names btcd and bitcoind give the network of params
// in getblockchaininfo.
func chainNames(params *chaincfg.Params) []string {
	switch params.Name {
	case chaincfg.MainNetParams.Name:
		return []string{"mainnet", "main"}
	case chaincfg.TestNet3Params.Name:
		return []string{"testnet3", "test"}
	default:
		return []string{params.Name}
	}
}

// CheckNetwork verifies that the node follows the network of params: its
// genesis block (getblockhash 0) must be params.GenesisHash and the chain
// name it reports must be that network's. On a mismatch it returns a
// *NetworkMismatchError. All signets share one genesis block, so a custom
// signet cannot be told from the default one.
func (c *Client) CheckNetwork(ctx context.Context, params *chaincfg.Params) error {
	if params == nil || params.GenesisHash == nil {
		return fmt.Errorf("chainrpc: CheckNetwork: no network parameters given")
	}
	genesis, err := c.BlockHash(ctx, 0)
	if err != nil {
		return err
	}
	info, err := c.ChainInfo(ctx)
	if err != nil {
		return err
	}
	nameOK := false
	for _, n := range chainNames(params) {
		if info.Chain == n {
			nameOK = true
		}
	}
	if genesis == *params.GenesisHash && nameOK {
		return nil
	}
	nodeNet := info.Chain
	for _, p := range knownNetworks {
		if *p.GenesisHash == genesis {
			nodeNet = p.Name
			break
		}
	}
	return &NetworkMismatchError{
		NodeNetwork: nodeNet,
		NodeChain:   info.Chain,
		NodeGenesis: genesis,
		WantNetwork: params.Name,
		WantGenesis: *params.GenesisHash,
	}
}

// maxFeeRateBTCPerKvB bounds a fee rate the node may report (1 BTC per kvB is 100,000 sat/vB:
// anything above it is a wrong reply, not a market).
const maxFeeRateBTCPerKvB = 1.0

// EstimateFeeRate asks the node for the fee rate that confirms within target blocks, in
// satoshis per 1,000 virtual bytes: bitcoind's estimatesmartfee, else btcd's estimatefee. ok
// is false when the node has no estimate (too little data, as on regtest); the caller then
// uses its own floor.
func (c *Client) EstimateFeeRate(ctx context.Context, target int) (satPerKvB int64, ok bool, err error) {
	if target < 1 || target > 1008 {
		return 0, false, fmt.Errorf("chainrpc: EstimateFeeRate: target %d outside 1-1008", target)
	}
	raw, smartErr := c.call(ctx, "estimatesmartfee", "estimatesmartfee", target)
	var rate float64
	if smartErr == nil {
		var reply struct {
			FeeRate *float64 `json:"feerate"`
		}
		if err := json.Unmarshal(raw, &reply); err != nil {
			return 0, false, fmt.Errorf("chainrpc: estimatesmartfee: %w", badReply("%v", err))
		}
		if reply.FeeRate == nil {
			return 0, false, nil
		}
		rate = *reply.FeeRate
	} else {
		var rpcErr *RPCError
		if !errors.As(smartErr, &rpcErr) {
			return 0, false, smartErr
		}
		// btcd has no estimatesmartfee; its estimatefee answers -1 without an estimate.
		raw, err := c.call(ctx, "estimatefee", "estimatefee", target)
		if err != nil {
			if errors.As(err, &rpcErr) {
				return 0, false, nil
			}
			return 0, false, err
		}
		if err := json.Unmarshal(raw, &rate); err != nil {
			return 0, false, fmt.Errorf("chainrpc: estimatefee: %w", badReply("%v", err))
		}
	}
	switch {
	case rate <= 0:
		return 0, false, nil
	case rate > maxFeeRateBTCPerKvB || math.IsNaN(rate):
		return 0, false, fmt.Errorf("chainrpc: fee estimate: %w", badReply("%v BTC/kvB", rate))
	}
	return int64(math.Round(rate * 1e8)), true, nil
}
