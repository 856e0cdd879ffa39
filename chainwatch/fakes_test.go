package chainwatch

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bankd/bankd/chainwatch/chainrpc"
)

// testTpub returns the regtest account key m/84'/1'/n' of a fixed seed: distinct, valid keys
// for test wallets.
func testTpub(t testing.TB, n uint32) string {
	t.Helper()
	seed := make([]byte, 32)
	seed[0] = 0xc4
	master, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	k := master
	for _, step := range []uint32{84, 1, n} {
		if k, err = k.Derive(hdkeychain.HardenedKeyStart + step); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := k.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	return pub.String()
}

// depositDescriptor is a receive/change descriptor of the n-th test key.
func depositDescriptor(t testing.TB, n uint32) string {
	return fmt.Sprintf("wpkh(%s/<0;1>/*)", testTpub(t, n))
}

// fakeChain is an in-memory chain node: a main chain of blocks and a mempool.
type fakeChain struct {
	mu      sync.Mutex
	blocks  []*wire.MsgBlock
	mempool []*wire.MsgTx
	network *chaincfg.Params
	salt    uint32
	// beforeMempoolReply, when set, runs while RawMempool is being answered, before the
	// mempool is read: a block mined there is mined "during" the poll.
	beforeMempoolReply func()
}

// newFakeChain returns a regtest chain of height blocks above a genesis block.
func newFakeChain(height int) *fakeChain {
	c := &fakeChain{network: &chaincfg.RegressionNetParams}
	c.blocks = []*wire.MsgBlock{c.newBlock(chainhash.Hash{}, 0, nil)}
	for range height {
		c.mine()
	}
	return c
}

func (c *fakeChain) newBlock(prev chainhash.Hash, height int, txs []*wire.MsgTx) *wire.MsgBlock {
	c.salt++
	coinbase := wire.NewMsgTx(2)
	sig := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(height)), c.salt)
	coinbase.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: wire.MaxPrevOutIndex}, SignatureScript: sig})
	coinbase.AddTxOut(&wire.TxOut{Value: 50e8, PkScript: []byte{0x51}})
	blk := &wire.MsgBlock{Header: wire.BlockHeader{
		Version: 4, PrevBlock: prev, Timestamp: time.Unix(1_700_000_000+int64(height)*600, 0), Nonce: c.salt,
	}}
	blk.Transactions = append([]*wire.MsgTx{coinbase}, txs...)
	return blk
}

// mine mines a block holding txs (which leave the mempool) on the tip.
func (c *fakeChain) mine(txs ...*wire.MsgTx) *wire.MsgBlock {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mineLocked(txs...)
}

func (c *fakeChain) mineLocked(txs ...*wire.MsgTx) *wire.MsgBlock {
	if len(c.blocks) > 0 {
		tip := c.blocks[len(c.blocks)-1]
		blk := c.newBlock(tip.BlockHash(), len(c.blocks), txs)
		c.blocks = append(c.blocks, blk)
	}
	for _, tx := range txs {
		c.dropLocked(tx.TxHash())
	}
	return c.blocks[len(c.blocks)-1]
}

// mineMempool mines the whole mempool into one block.
func (c *fakeChain) mineMempool() *wire.MsgBlock {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mineLocked(append([]*wire.MsgTx(nil), c.mempool...)...)
}

// disconnect removes the top block; its transactions go back to the mempool.
func (c *fakeChain) disconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	top := c.blocks[len(c.blocks)-1]
	c.blocks = c.blocks[:len(c.blocks)-1]
	c.mempool = append(c.mempool, top.Transactions[1:]...)
}

func (c *fakeChain) send(tx *wire.MsgTx) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mempool = append(c.mempool, tx)
}

func (c *fakeChain) drop(txid chainhash.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(txid)
}

func (c *fakeChain) dropLocked(txid chainhash.Hash) {
	for i, tx := range c.mempool {
		if tx.TxHash() == txid {
			c.mempool = append(c.mempool[:i], c.mempool[i+1:]...)
			return
		}
	}
}

func (c *fakeChain) tip() (int64, chainhash.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(len(c.blocks) - 1), c.blocks[len(c.blocks)-1].BlockHash()
}

func (c *fakeChain) BestBlock(context.Context) (int64, chainhash.Hash, error) {
	h, hash := c.tip()
	return h, hash, nil
}

func (c *fakeChain) BlockHash(_ context.Context, height int64) (chainhash.Hash, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if height < 0 || height >= int64(len(c.blocks)) {
		return chainhash.Hash{}, &chainrpc.RPCError{Method: "getblockhash", Code: chainrpc.CodeMisc, Message: "Block number out of range"}
	}
	return c.blocks[height].BlockHash(), nil
}

func (c *fakeChain) Block(_ context.Context, hash chainhash.Hash) (*wire.MsgBlock, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.blocks {
		if b.BlockHash() == hash {
			return b, nil
		}
	}
	return nil, &chainrpc.RPCError{Method: "getblock", Code: chainrpc.CodeNotFound, Message: "Block not found"}
}

func (c *fakeChain) RawMempool(context.Context) ([]chainhash.Hash, error) {
	if c.beforeMempoolReply != nil {
		c.beforeMempoolReply()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]chainhash.Hash, len(c.mempool))
	for i, tx := range c.mempool {
		ids[i] = tx.TxHash()
	}
	return ids, nil
}

func (c *fakeChain) RawTransaction(_ context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tx := range c.mempool {
		if tx.TxHash() == txid {
			return tx, nil
		}
	}
	return nil, &chainrpc.RPCError{Method: "getrawtransaction", Code: chainrpc.CodeNotFound, Message: "No information available about transaction"}
}

func (c *fakeChain) CheckNetwork(ctx context.Context, params *chaincfg.Params) error {
	if params.Name == c.network.Name {
		return nil
	}
	genesis, _ := c.BlockHash(ctx, 0)
	return &chainrpc.NetworkMismatchError{NodeNetwork: c.network.Name, NodeChain: c.network.Name, NodeGenesis: genesis,
		WantNetwork: params.Name, WantGenesis: *params.GenesisHash}
}

var fundingSeq uint32

// payTx is a transaction paying value to each script, spending a made-up outpoint (or spend).
func payTx(value int64, spend *wire.OutPoint, scripts ...[]byte) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	op := wire.OutPoint{Index: 0}
	if spend != nil {
		op = *spend
	} else {
		fundingSeq++
		binary.BigEndian.PutUint32(op.Hash[:4], fundingSeq)
		op.Hash[31] = 0xfa
	}
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: op, Sequence: wire.MaxTxInSequenceNum - 2})
	for _, s := range scripts {
		tx.AddTxOut(&wire.TxOut{Value: value, PkScript: s})
	}
	return tx
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestLogger(buf *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// metricValue returns the value of a counter or gauge (with the given label pairs) in reg.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}
