// Package fakechain is a small regtest chain node for the jepsen payouts workload: an HTTP
// JSON-RPC 1.0 server (plain HTTP, basic auth) that answers the subset of btcd's and bitcoind's
// methods bankd's chain watcher and payout driver call (chainwatch/chainrpc), and mines blocks of
// its mempool on its own schedule.
//
// It starts at the regtest genesis block with a few empty blocks. sendrawtransaction accepts a
// transaction only when it decodes, every input spends an output the chain knows (a funding
// output, or an output of a transaction it accepted before), no other transaction in the
// mempool or a block spends it, and its scripts verify; a double spend is refused with a
// JSON-RPC error as btcd and bitcoind refuse one. There are no reorgs, no fee rules and no
// proof of work.
//
// The chain's record of every transaction it mined (Mined) is the ground truth the payouts
// checker compares bankd's withdrawals with.
package fakechain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/mining"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// JSON-RPC error codes, as bitcoind (and mostly btcd) use them.
const (
	codeMisc             = -1
	codeNotFound         = -5
	codeInvalidParameter = -8
	codeDeserialization  = -22
	codeVerifyError      = -25
	codeVerifyRejected   = -26
	codeAlreadyInChain   = -27
	codeMethodNotFound   = -32601
)

// Bounds of the chain.
const (
	// maxRequestBytes bounds one request body (a transaction in hex, with room to spare).
	maxRequestBytes = 4 << 20
	// DefaultMaxBlocks bounds the blocks the miner adds on its own.
	DefaultMaxBlocks = 20_000
	// maxMempool bounds the transactions waiting for a block.
	maxMempool = 10_000
)

// Config describes a chain.
type Config struct {
	// User and Pass are the RPC credentials (basic auth).
	User, Pass string
	// EmptyBlocks is the number of empty blocks above genesis at the start [5].
	EmptyBlocks int
	// BlockEvery is the miner's interval [500ms].
	BlockEvery time.Duration
	// MaxBlocks bounds the blocks the miner adds [DefaultMaxBlocks].
	MaxBlocks int
	Logger    *slog.Logger
}

// Output is one output of a mined transaction.
type Output struct {
	Vout   uint32 `json:"vout"`
	Value  int64  `json:"value"`
	Script string `json:"script"` // hex
}

// Tx is the chain's record of one mined transaction.
type Tx struct {
	Txid   string `json:"txid"`
	Height int64  `json:"height"`
	Block  string `json:"block"`
	// Funding is a transaction Fund made; Coinbase a block's first transaction.
	Funding  bool     `json:"funding,omitempty"`
	Coinbase bool     `json:"coinbase,omitempty"`
	Inputs   []string `json:"inputs,omitempty"` // outpoints txid:vout
	Outputs  []Output `json:"outputs"`
}

// Chain is a fake regtest node. It is safe for concurrent use.
type Chain struct {
	cfg Config
	log *slog.Logger
	net *chaincfg.Params

	mu      sync.Mutex
	blocks  []*wire.MsgBlock // by height
	byHash  map[chainhash.Hash]int64
	txs     map[chainhash.Hash]*wire.MsgTx // every accepted transaction, mempool and chain
	height  map[chainhash.Hash]int64       // mined transactions' heights
	mempool []*wire.MsgTx                  // in arrival order (parents before children)
	// outputs holds every output of an accepted transaction; spentBy the transaction that
	// spends an outpoint (mempool or chain).
	outputs map[wire.OutPoint]*wire.TxOut
	spentBy map[wire.OutPoint]chainhash.Hash
	funding map[chainhash.Hash]bool
	mined   []Tx
	fundSeq uint64
	mining  int // blocks the miner added

	srv      *http.Server
	listener net.Listener
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

// New builds a chain at regtest genesis plus cfg.EmptyBlocks empty blocks. It serves nothing
// until Listen and mines nothing until Start.
func New(cfg Config) *Chain {
	if cfg.EmptyBlocks == 0 {
		cfg.EmptyBlocks = 5
	}
	if cfg.BlockEvery == 0 {
		cfg.BlockEvery = 500 * time.Millisecond
	}
	if cfg.MaxBlocks == 0 {
		cfg.MaxBlocks = DefaultMaxBlocks
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Chain{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "fakechain"),
		net:     &chaincfg.RegressionNetParams,
		byHash:  map[chainhash.Hash]int64{},
		txs:     map[chainhash.Hash]*wire.MsgTx{},
		height:  map[chainhash.Hash]int64{},
		outputs: map[wire.OutPoint]*wire.TxOut{},
		spentBy: map[wire.OutPoint]chainhash.Hash{},
		funding: map[chainhash.Hash]bool{},
	}
	genesis := c.net.GenesisBlock
	c.blocks = append(c.blocks, genesis)
	c.byHash[genesis.BlockHash()] = 0
	for range cfg.EmptyBlocks {
		c.mineLocked()
	}
	return c
}

// Listen serves the RPC on addr (host:port; port 0 picks one).
func (c *Chain) Listen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("fakechain: listen on %s: %w", addr, err)
	}
	c.listener = l
	c.srv = &http.Server{Handler: c, ReadHeaderTimeout: 5 * time.Second}
	c.wg.Go(func() {
		if err := c.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error("rpc server stopped", "err", err)
		}
	})
	c.log.Info("rpc listening", "addr", l.Addr().String())
	return nil
}

// Addr is the address Listen serves on.
func (c *Chain) Addr() string {
	if c.listener == nil {
		return ""
	}
	return c.listener.Addr().String()
}

// Start runs the miner: a block every BlockEvery, mempool or not, until Stop, Close or
// MaxBlocks blocks.
func (c *Chain) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.stop != nil {
		c.mu.Unlock()
		cancel()
		return
	}
	c.stop = cancel
	c.mu.Unlock()
	c.wg.Go(func() {
		t := time.NewTicker(c.cfg.BlockEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			c.mu.Lock()
			if c.mining >= c.cfg.MaxBlocks {
				c.mu.Unlock()
				c.log.Warn("miner stopped: block limit reached", "max_blocks", c.cfg.MaxBlocks)
				return
			}
			c.mining++
			c.mineLocked()
			c.mu.Unlock()
		}
	})
}

// StopMining stops the miner; blocks can still be mined with Mine.
func (c *Chain) StopMining() {
	c.mu.Lock()
	stop := c.stop
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// Close stops the miner and the server.
func (c *Chain) Close() error {
	c.StopMining()
	var err error
	if c.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = c.srv.Shutdown(ctx)
		cancel()
	}
	c.wg.Wait()
	return err
}

// Height is the height of the best block.
func (c *Chain) Height() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(len(c.blocks) - 1)
}

// Mine mines n blocks now, each with the whole mempool (the first one), and returns the new
// height.
func (c *Chain) Mine(n int) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range n {
		c.mineLocked()
	}
	return int64(len(c.blocks) - 1)
}

// MempoolSize is the number of transactions waiting for a block.
func (c *Chain) MempoolSize() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mempool)
}

// Mined returns the record of every mined transaction, in chain order.
func (c *Chain) Mined() []Tx {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Tx, len(c.mined))
	copy(out, c.mined)
	return out
}

// Fund puts a transaction paying outs into the mempool, to be mined in the next block, and
// returns its txid. It spends a made-up outpoint of no transaction (it is not a coinbase, so
// its outputs need no maturity), and its outputs are spendable at once.
func (c *Chain) Fund(outs []*wire.TxOut) (chainhash.Hash, error) {
	if len(outs) == 0 {
		return chainhash.Hash{}, errors.New("fakechain: fund: no outputs")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fundSeq++
	var seed [16]byte
	copy(seed[:8], "fakefund")
	binary.BigEndian.PutUint64(seed[8:], c.fundSeq)
	prev := chainhash.Hash(sha256.Sum256(seed[:]))
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&prev, 0), nil, nil))
	for _, o := range outs {
		if o.Value <= 0 || o.Value > btcutil.MaxSatoshi {
			return chainhash.Hash{}, fmt.Errorf("fakechain: fund: value %d out of range", o.Value)
		}
		tx.AddTxOut(wire.NewTxOut(o.Value, bytes.Clone(o.PkScript)))
	}
	txid := tx.TxHash()
	c.funding[txid] = true
	c.acceptLocked(tx)
	c.log.Info("funding transaction", "txid", txid, "outputs", len(outs))
	return txid, nil
}

// acceptLocked adds a checked transaction to the mempool.
func (c *Chain) acceptLocked(tx *wire.MsgTx) {
	txid := tx.TxHash()
	c.txs[txid] = tx
	c.mempool = append(c.mempool, tx)
	if !c.funding[txid] {
		for _, in := range tx.TxIn {
			c.spentBy[in.PreviousOutPoint] = txid
		}
	}
	for i, o := range tx.TxOut {
		c.outputs[wire.OutPoint{Hash: txid, Index: uint32(i)}] = o
	}
}

// mineLocked adds one block holding the mempool.
func (c *Chain) mineLocked() {
	height := int64(len(c.blocks))
	prev := c.blocks[height-1]
	coinbase := wire.NewMsgTx(1)
	sigScript, err := txscript.NewScriptBuilder().AddInt64(height).AddData([]byte("fakechain")).Script()
	if err != nil {
		panic(fmt.Sprintf("fakechain: coinbase script: %v", err)) // a constant script cannot fail
	}
	coinbase.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{}, wire.MaxPrevOutIndex), sigScript, nil))
	coinbase.AddTxOut(wire.NewTxOut(50*btcutil.SatoshiPerBitcoin, []byte{txscript.OP_TRUE}))
	txs := append([]*wire.MsgTx{coinbase}, c.mempool...)
	utxs := make([]*btcutil.Tx, len(txs))
	for i, tx := range txs {
		utxs[i] = btcutil.NewTx(tx)
	}
	// The commitment goes into the coinbase, which changes its txid: the merkle root after.
	mining.AddWitnessCommitment(utxs[0], utxs)
	utxs[0] = btcutil.NewTx(coinbase)
	ts := prev.Header.Timestamp.Add(time.Second)
	if now := time.Now().Truncate(time.Second); now.After(ts) {
		ts = now
	}
	blk := &wire.MsgBlock{
		Header: wire.BlockHeader{
			Version:    0x20000000,
			PrevBlock:  prev.BlockHash(),
			MerkleRoot: blockchain.CalcMerkleRoot(utxs, false),
			Timestamp:  ts,
			Bits:       c.net.PowLimitBits,
			Nonce:      uint32(height),
		},
		Transactions: txs,
	}
	hash := blk.BlockHash()
	c.blocks = append(c.blocks, blk)
	c.byHash[hash] = height
	for i, tx := range txs {
		txid := tx.TxHash()
		c.height[txid] = height
		rec := Tx{Txid: txid.String(), Height: height, Block: hash.String(), Coinbase: i == 0, Funding: c.funding[txid]}
		if i > 0 && !rec.Funding {
			for _, in := range tx.TxIn {
				rec.Inputs = append(rec.Inputs, in.PreviousOutPoint.String())
			}
		}
		for v, o := range tx.TxOut {
			rec.Outputs = append(rec.Outputs, Output{Vout: uint32(v), Value: o.Value, Script: hex.EncodeToString(o.PkScript)})
		}
		c.mined = append(c.mined, rec)
	}
	if len(c.mempool) > 0 {
		c.log.Info("block mined", "height", height, "hash", hash, "txs", len(c.mempool))
	}
	c.mempool = nil
}

// rpcError is a JSON-RPC error reply.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *rpcError) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

func errorf(code int, format string, args ...any) *rpcError {
	return &rpcError{Code: code, Message: fmt.Sprintf(format, args...)}
}

type request struct {
	ID     json.RawMessage   `json:"id"`
	Method string            `json:"method"`
	Params []json.RawMessage `json:"params"`
}

type reply struct {
	Result any             `json:"result"`
	Error  *rpcError       `json:"error"`
	ID     json.RawMessage `json:"id"`
}

// ServeHTTP answers one JSON-RPC 1.0 request.
func (c *Chain) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != c.cfg.User || pass != c.cfg.Pass {
		w.Header().Set("WWW-Authenticate", `Basic realm="jsonrpc"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes+1))
	if err != nil || len(body) > maxRequestBytes {
		http.Error(w, "request too large or unreadable", http.StatusBadRequest)
		return
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		writeReply(w, reply{Error: errorf(-32700, "parse error: %v", err), ID: json.RawMessage("null")})
		return
	}
	result, rerr := c.call(req.Method, req.Params)
	if req.ID == nil {
		req.ID = json.RawMessage("null")
	}
	writeReply(w, reply{Result: result, Error: rerr, ID: req.ID})
}

func writeReply(w http.ResponseWriter, rep reply) {
	w.Header().Set("Content-Type", "application/json")
	if rep.Error != nil {
		// bitcoind answers errors with HTTP 500 (404 for an unknown method).
		status := http.StatusInternalServerError
		if rep.Error.Code == codeMethodNotFound {
			status = http.StatusNotFound
		}
		w.WriteHeader(status)
	}
	_ = json.NewEncoder(w).Encode(rep)
}

// call dispatches one method.
func (c *Chain) call(method string, params []json.RawMessage) (any, *rpcError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tip := int64(len(c.blocks) - 1)
	switch method {
	case "getblockchaininfo":
		return map[string]any{"chain": c.net.Name, "blocks": tip, "headers": tip,
			"bestblockhash": c.blocks[tip].BlockHash().String()}, nil
	case "getblockcount":
		return tip, nil
	case "getbestblockhash":
		return c.blocks[tip].BlockHash().String(), nil
	case "getblockhash":
		var h int64
		if err := param(params, 0, &h); err != nil {
			return nil, err
		}
		if h < 0 || h > tip {
			return nil, errorf(codeInvalidParameter, "Block height out of range")
		}
		return c.blocks[h].BlockHash().String(), nil
	case "getblock", "getblockheader":
		blk, rerr := c.blockParam(params)
		if rerr != nil {
			return nil, rerr
		}
		var (
			buf bytes.Buffer
			err error
		)
		if method == "getblock" {
			err = blk.Serialize(&buf)
		} else {
			err = blk.Header.Serialize(&buf)
		}
		if err != nil {
			return nil, errorf(codeMisc, "serialize: %v", err)
		}
		return hex.EncodeToString(buf.Bytes()), nil
	case "getrawmempool":
		ids := make([]string, 0, len(c.mempool))
		for _, tx := range c.mempool {
			ids = append(ids, tx.TxHash().String())
		}
		return ids, nil
	case "getrawtransaction":
		var s string
		if err := param(params, 0, &s); err != nil {
			return nil, err
		}
		txid, err := chainhash.NewHashFromStr(s)
		if err != nil {
			return nil, errorf(codeInvalidParameter, "txid must be hexadecimal: %v", err)
		}
		tx, ok := c.txs[*txid]
		if !ok {
			return nil, errorf(codeNotFound, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")
		}
		var buf bytes.Buffer
		if err := tx.Serialize(&buf); err != nil {
			return nil, errorf(codeMisc, "serialize: %v", err)
		}
		return hex.EncodeToString(buf.Bytes()), nil
	case "sendrawtransaction":
		var s string
		if err := param(params, 0, &s); err != nil {
			return nil, err
		}
		txid, err := c.sendLocked(s)
		if err != nil {
			return nil, err
		}
		return txid.String(), nil
	case "estimatesmartfee":
		// Regtest has no fee history: bitcoind answers like this, and the caller uses its floor.
		return map[string]any{"errors": []string{"Insufficient data or no feerate found"}, "blocks": 0}, nil
	case "estimatefee":
		return -1, nil
	}
	return nil, errorf(codeMethodNotFound, "Method not found")
}

// blockParam resolves the block hash of params[0].
func (c *Chain) blockParam(params []json.RawMessage) (*wire.MsgBlock, *rpcError) {
	var s string
	if err := param(params, 0, &s); err != nil {
		return nil, err
	}
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		return nil, errorf(codeInvalidParameter, "blockhash must be hexadecimal: %v", err)
	}
	height, ok := c.byHash[*h]
	if !ok {
		return nil, errorf(codeNotFound, "Block not found")
	}
	return c.blocks[height], nil
}

func param(params []json.RawMessage, i int, v any) *rpcError {
	if i >= len(params) {
		return errorf(codeMisc, "missing parameter %d", i+1)
	}
	if err := json.Unmarshal(params[i], v); err != nil {
		return errorf(codeMisc, "parameter %d: %v", i+1, err)
	}
	return nil
}

// sendLocked checks a raw transaction and puts it in the mempool.
func (c *Chain) sendLocked(rawHex string) (chainhash.Hash, *rpcError) {
	raw, err := hex.DecodeString(rawHex)
	if err != nil {
		return chainhash.Hash{}, errorf(codeDeserialization, "TX decode failed: %v", err)
	}
	tx := wire.NewMsgTx(2)
	r := bytes.NewReader(raw)
	if err := tx.Deserialize(r); err != nil || r.Len() != 0 {
		return chainhash.Hash{}, errorf(codeDeserialization, "TX decode failed. Make sure the tx has at least one input.")
	}
	txid := tx.TxHash()
	if _, known := c.txs[txid]; known {
		if _, mined := c.height[txid]; mined {
			return chainhash.Hash{}, errorf(codeAlreadyInChain, "Transaction already in block chain")
		}
		return chainhash.Hash{}, errorf(codeVerifyRejected, "txn-already-in-mempool")
	}
	if len(c.mempool) >= maxMempool {
		return chainhash.Hash{}, errorf(codeVerifyRejected, "mempool full")
	}
	if blockchain.IsCoinBaseTx(tx) || len(tx.TxIn) == 0 || len(tx.TxOut) == 0 {
		return chainhash.Hash{}, errorf(codeVerifyRejected, "bad-txns-vin-empty or coinbase")
	}
	prevOuts := txscript.NewMultiPrevOutFetcher(nil)
	var in, out int64
	seen := map[wire.OutPoint]bool{}
	for _, txIn := range tx.TxIn {
		op := txIn.PreviousOutPoint
		if seen[op] {
			return chainhash.Hash{}, errorf(codeVerifyRejected, "bad-txns-inputs-duplicate")
		}
		seen[op] = true
		prev, ok := c.outputs[op]
		if !ok {
			return chainhash.Hash{}, errorf(codeVerifyError, "bad-txns-inputs-missingorspent: %s is unknown", op)
		}
		if by, spent := c.spentBy[op]; spent {
			if _, mined := c.height[by]; mined {
				return chainhash.Hash{}, errorf(codeVerifyError, "bad-txns-inputs-missingorspent: %s already spent by transaction %s in block %d", op, by, c.height[by])
			}
			return chainhash.Hash{}, errorf(codeVerifyRejected, "txn-mempool-conflict: output %s already spent by transaction %s in the memory pool", op, by)
		}
		prevOuts.AddPrevOut(op, prev)
		in += prev.Value
	}
	for _, o := range tx.TxOut {
		if o.Value < 0 || o.Value > btcutil.MaxSatoshi {
			return chainhash.Hash{}, errorf(codeVerifyRejected, "bad-txns-vout-toolarge")
		}
		out += o.Value
	}
	if out > in {
		return chainhash.Hash{}, errorf(codeVerifyRejected, "bad-txns-in-belowout: pays %d from %d", out, in)
	}
	hashes := txscript.NewTxSigHashes(tx, prevOuts)
	for i, txIn := range tx.TxIn {
		prev := prevOuts.FetchPrevOutput(txIn.PreviousOutPoint)
		vm, err := txscript.NewEngine(prev.PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, prev.Value, prevOuts)
		if err == nil {
			err = vm.Execute()
		}
		if err != nil {
			return chainhash.Hash{}, errorf(codeVerifyRejected, "mandatory-script-verify-flag-failed (input %d: %v)", i, err)
		}
	}
	c.acceptLocked(tx)
	c.log.Info("transaction accepted", "txid", txid, "inputs", len(tx.TxIn), "outputs", len(tx.TxOut))
	return txid, nil
}
