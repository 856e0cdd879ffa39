package fakechain

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/chainwatch/chainrpc"
)

// key is a p2wpkh key of the tests.
type key struct {
	priv   *btcec.PrivateKey
	script []byte
}

func newKey(t *testing.T) key {
	t.Helper()
	priv, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(priv.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		t.Fatal(err)
	}
	return key{priv: priv, script: script}
}

// spend signs a transaction spending op (worth value, paying k) to outs.
func (k key) spend(t *testing.T, op wire.OutPoint, value int64, outs ...*wire.TxOut) *wire.MsgTx {
	t.Helper()
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&op, nil, nil))
	for _, o := range outs {
		tx.AddTxOut(o)
	}
	fetcher := txscript.NewCannedPrevOutputFetcher(k.script, value)
	w, err := txscript.WitnessSignature(tx, txscript.NewTxSigHashes(tx, fetcher), 0, value, k.script, txscript.SigHashAll, k.priv, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].Witness = w
	return tx
}

func startChain(t *testing.T) (*Chain, *chainrpc.Client) {
	t.Helper()
	c := New(Config{User: "u", Pass: "p", BlockEvery: time.Hour})
	if err := c.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl, err := chainrpc.New(chainrpc.Config{Host: c.Addr(), User: "u", Pass: "p", DisableTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	return c, cl
}

func TestChainServesWhatChainrpcChecks(t *testing.T) {
	c, cl := startChain(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.CheckNetwork(ctx, &chaincfg.RegressionNetParams); err != nil {
		t.Fatalf("check network: %v", err)
	}
	if h, err := cl.BlockCount(ctx); err != nil || h != 5 {
		t.Fatalf("block count %d, %v; want 5", h, err)
	}
	if _, err := cl.BlockHash(ctx, 6); !chainrpc.IsOutOfRange(err) {
		t.Fatalf("block hash above the tip: %v", err)
	}
	if _, ok, err := cl.EstimateFeeRate(ctx, 6); ok || err != nil {
		t.Fatalf("fee estimate: ok %v, %v", ok, err)
	}

	alice, bob := newKey(t), newKey(t)
	fund, err := c.Fund([]*wire.TxOut{{Value: 100_000, PkScript: alice.script}})
	if err != nil {
		t.Fatal(err)
	}
	op := wire.OutPoint{Hash: fund, Index: 0}
	pay := alice.spend(t, op, 100_000, wire.NewTxOut(60_000, bob.script), wire.NewTxOut(39_000, alice.script))
	txid, err := cl.SendRawTransaction(ctx, pay)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	pool, err := cl.RawMempool(ctx)
	if err != nil || len(pool) != 2 {
		t.Fatalf("mempool %v, %v; want the funding and the payment", pool, err)
	}
	if _, err := cl.RawTransaction(ctx, txid); err != nil {
		t.Fatalf("getrawtransaction: %v", err)
	}

	tests := []struct {
		name string
		tx   *wire.MsgTx
		want string
	}{
		{"the same transaction again", pay, "txn-already-in-mempool"},
		{"a double spend", alice.spend(t, op, 100_000, wire.NewTxOut(90_000, bob.script)), "txn-mempool-conflict"},
		{"an unknown output", alice.spend(t, wire.OutPoint{Hash: chainhash.Hash{1}}, 100_000, wire.NewTxOut(90_000, bob.script)), "missingorspent"},
		{"a bad signature", bob.spend(t, wire.OutPoint{Hash: txid, Index: 1}, 39_000, wire.NewTxOut(30_000, bob.script)), "script-verify"},
		{"more out than in", alice.spend(t, wire.OutPoint{Hash: txid, Index: 1}, 39_000, wire.NewTxOut(40_000, bob.script)), "belowout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cl.SendRawTransaction(ctx, tt.tx)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}

	height := c.Mine(1)
	hash, err := cl.BlockHash(ctx, height)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := cl.Block(ctx, hash) // checks the merkle root and the witness commitment
	if err != nil {
		t.Fatalf("getblock: %v", err)
	}
	if len(blk.Transactions) != 3 {
		t.Fatalf("block holds %d transactions, want coinbase, funding, payment", len(blk.Transactions))
	}
	if _, err := cl.BlockHeader(ctx, hash); err != nil {
		t.Fatalf("getblockheader: %v", err)
	}
	if _, err := cl.SendRawTransaction(ctx, pay); err == nil || !strings.Contains(err.Error(), "already in block chain") {
		t.Fatalf("resend of a mined transaction: %v", err)
	}
	if _, err := cl.SendRawTransaction(ctx, alice.spend(t, op, 100_000, wire.NewTxOut(90_000, bob.script))); err == nil || !strings.Contains(err.Error(), "in block") {
		t.Fatalf("double spend of a mined output: %v", err)
	}
	// The change of a mined transaction can be spent.
	if _, err := cl.SendRawTransaction(ctx, alice.spend(t, wire.OutPoint{Hash: txid, Index: 1}, 39_000, wire.NewTxOut(38_000, bob.script))); err != nil {
		t.Fatalf("spend mined change: %v", err)
	}

	var payments int
	for _, m := range c.Mined() {
		if m.Txid == txid.String() && m.Height == height && len(m.Outputs) == 2 && m.Outputs[0].Value == 60_000 {
			payments++
		}
	}
	if payments != 1 {
		t.Fatalf("record %+v lacks the payment", c.Mined())
	}
}

func TestChainRefusesWrongCredentials(t *testing.T) {
	c, _ := startChain(t)
	cl, err := chainrpc.New(chainrpc.Config{Host: c.Addr(), User: "u", Pass: "wrong", DisableTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cl.BlockCount(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestMinerIsBounded(t *testing.T) {
	c := New(Config{BlockEvery: time.Millisecond, MaxBlocks: 3})
	c.Start()
	deadline := time.Now().Add(5 * time.Second)
	for c.Height() < 8 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if h := c.Height(); h != 8 {
		t.Fatalf("height %d, want 5 empty blocks + 3 mined", h)
	}
}
