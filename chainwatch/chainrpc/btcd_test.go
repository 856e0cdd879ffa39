package chainrpc_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bankd/bankd/chainwatch/chainrpc"
	"github.com/bankd/bankd/regtest"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// p2wshTrue is the output script paying to the witness script OP_TRUE, which
// anyone can spend with a witness holding just that script.
func p2wshTrue() []byte {
	h := sha256.Sum256([]byte{txscript.OP_TRUE})
	return append([]byte{txscript.OP_0, txscript.OP_DATA_32}, h[:]...)
}

// TestRealBtcd runs every method against a real btcd on regtest (skipped when
// btcd has not been built, unless BANKD_REQUIRE_BTCD is set).
func TestRealBtcd(t *testing.T) {
	node := regtest.StartTest(t, regtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cfg := node.RPC()
	c, err := chainrpc.New(chainrpc.Config{Host: cfg.Host, User: cfg.User, Pass: cfg.Pass, CertPEM: cfg.Cert})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := c.CheckNetwork(ctx, &chaincfg.RegressionNetParams); err != nil {
		t.Fatalf("CheckNetwork(regtest): %v", err)
	}
	err = c.CheckNetwork(ctx, &chaincfg.MainNetParams)
	var mismatch *chainrpc.NetworkMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("CheckNetwork(mainnet) = %v, want a mismatch", err)
	}
	t.Logf("on the wrong network: %v", err)

	tip, err := node.Tip(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.ChainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Chain != "regtest" || info.Blocks != tip.Height || info.BestBlockHash != tip.Hash {
		t.Fatalf("ChainInfo = %+v, node tip %+v", info, tip)
	}
	if n, err := c.BlockCount(ctx); err != nil || n != tip.Height {
		t.Fatalf("BlockCount = %d, %v", n, err)
	}
	if h, err := c.BestBlockHash(ctx); err != nil || h != tip.Hash {
		t.Fatalf("BestBlockHash = %s, %v", h, err)
	}

	// Blocks pass the checks, before and after segwit activation. (btcd
	// closes the connection after every request, so each call costs a TLS
	// handshake; a sample of the chain keeps the test quick.)
	for _, height := range []int64{0, 1, 2, regtest.SegwitHeight - 1, regtest.SegwitHeight, regtest.SegwitHeight + 1, tip.Height - 1, tip.Height} {
		hash, err := c.BlockHash(ctx, height)
		if err != nil {
			t.Fatal(err)
		}
		blk, err := c.Block(ctx, hash)
		if err != nil {
			t.Fatalf("Block at height %d: %v", height, err)
		}
		if height > 0 {
			parent, err := c.BlockHash(ctx, height-1)
			if err != nil || blk.Header.PrevBlock != parent {
				t.Fatalf("block %d does not build on block %d (%v)", height, height-1, err)
			}
		}
	}
	hdr, err := c.BlockHeader(ctx, tip.Hash)
	if err != nil || hdr.BlockHash() != tip.Hash {
		t.Fatalf("BlockHeader(tip): %v", err)
	}

	// A faucet payment to an anyone-can-spend witness output, and our own
	// transaction spending it, sent with SendRawTransaction.
	fund, err := node.Send(ctx, []*wire.TxOut{wire.NewTxOut(1_000_000, p2wshTrue())}, 0)
	if err != nil {
		t.Fatal(err)
	}
	vout := slices.IndexFunc(fund.TxOut, func(o *wire.TxOut) bool { return string(o.PkScript) == string(p2wshTrue()) })
	spend := wire.NewMsgTx(2)
	in := wire.NewTxIn(wire.NewOutPoint(ptr(fund.TxHash()), uint32(vout)), nil, wire.TxWitness{{txscript.OP_TRUE}})
	spend.AddTxIn(in)
	spend.AddTxOut(wire.NewTxOut(990_000, p2wshTrue()))
	txid, err := c.SendRawTransaction(ctx, spend)
	if err != nil {
		t.Fatalf("SendRawTransaction: %v", err)
	}
	if txid != spend.TxHash() {
		t.Fatalf("SendRawTransaction = %s, want %s", txid, spend.TxHash())
	}

	pool, err := c.RawMempool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []chainhash.Hash{fund.TxHash(), spend.TxHash()} {
		if !slices.Contains(pool, id) {
			t.Fatalf("mempool %v lacks %s", pool, id)
		}
		tx, err := c.RawTransaction(ctx, id)
		if err != nil || !tx.HasWitness() || tx.TxHash() != id {
			t.Fatalf("RawTransaction(%s): %v", id, err)
		}
	}

	// Mined: the block's witness commitment covers our witness.
	mined, err := node.Generate(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := c.Block(ctx, mined[0])
	if err != nil {
		t.Fatalf("Block with witness transactions: %v", err)
	}
	if !slices.ContainsFunc(blk.Transactions, func(tx *wire.MsgTx) bool { return tx.TxHash() == spend.TxHash() }) {
		t.Fatal("mined block lacks our transaction")
	}
	if tx, err := c.RawTransaction(ctx, spend.TxHash()); err != nil || tx.TxHash() != spend.TxHash() {
		t.Fatalf("RawTransaction(mined): %v", err)
	}

	// Sending it again is refused by the node, not mistaken for a broken node.
	_, err = c.SendRawTransaction(ctx, spend)
	var rpcErr *chainrpc.RPCError
	if !errors.As(err, &rpcErr) || errors.Is(err, chainrpc.ErrBadReply) {
		t.Fatalf("resending a mined transaction: %v, want an RPC error", err)
	}
	t.Logf("resending a mined transaction: %v", err)

	// Not found and out of range, as btcd says them.
	if _, err := c.Block(ctx, chainhash.Hash{1}); !chainrpc.IsNotFound(err) {
		t.Fatalf("Block(unknown) = %v, want not found", err)
	}
	if _, err := c.BlockHeader(ctx, chainhash.Hash{1}); !chainrpc.IsNotFound(err) {
		t.Fatalf("BlockHeader(unknown) = %v, want not found", err)
	}
	if _, err := c.RawTransaction(ctx, chainhash.Hash{1}); !chainrpc.IsNotFound(err) {
		t.Fatalf("RawTransaction(unknown) = %v, want not found", err)
	}
	if _, err := c.BlockHash(ctx, tip.Height+100); !chainrpc.IsOutOfRange(err) {
		t.Fatalf("BlockHash(beyond the tip) = %v, want out of range", err)
	}

	// Wrong password.
	bad, err := chainrpc.New(chainrpc.Config{Host: cfg.Host, User: cfg.User, Pass: "wrong", CertPEM: cfg.Cert})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	var httpErr *chainrpc.HTTPError
	if _, err := bad.BlockCount(ctx); !errors.As(err, &httpErr) || httpErr.StatusCode != 401 {
		t.Fatalf("wrong password: %v, want HTTP 401", err)
	}
}

func ptr[T any](v T) *T { return &v }
