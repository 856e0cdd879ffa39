package regtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// p2wpkhScript returns the output script of a fresh random key's P2WPKH address.
func p2wpkhScript(t *testing.T) []byte {
	t.Helper()
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := btcutil.NewAddressWitnessPubKeyHash(
		btcutil.Hash160(key.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		t.Fatal(err)
	}
	return script
}

// p2wshScript returns the output script of a P2WSH address for a 1-of-2 multisig.
func p2wshScript(t *testing.T) []byte {
	t.Helper()
	builder := txscript.NewScriptBuilder().AddOp(txscript.OP_1)
	for range 2 {
		key, err := btcec.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		builder.AddData(key.PubKey().SerializeCompressed())
	}
	witnessScript, err := builder.AddOp(txscript.OP_2).AddOp(txscript.OP_CHECKMULTISIG).Script()
	if err != nil {
		t.Fatal(err)
	}
	hash := chainhash.HashB(witnessScript)
	addr, err := btcutil.NewAddressWitnessScriptHash(hash, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		t.Fatal(err)
	}
	return script
}

func mustInMempool(t *testing.T, ctx context.Context, b *Btcd, txid chainhash.Hash, want bool) {
	t.Helper()
	in, err := b.InMempool(ctx, txid)
	if err != nil {
		t.Fatal(err)
	}
	if in != want {
		t.Fatalf("transaction %v in mempool: %v, want %v", txid, in, want)
	}
}

func mustConfirmations(t *testing.T, ctx context.Context, b *Btcd, txid chainhash.Hash, want int64) TxStatus {
	t.Helper()
	st, err := b.TxStatus(ctx, txid)
	if err != nil {
		t.Fatal(err)
	}
	if st.Confirmations != want {
		t.Fatalf("transaction %v has %d confirmations, want %d", txid, st.Confirmations, want)
	}
	return st
}

func mustBeUnknown(t *testing.T, ctx context.Context, b *Btcd, txid chainhash.Hash) {
	t.Helper()
	if st, err := b.TxStatus(ctx, txid); !errors.Is(err, ErrUnknownTx) {
		t.Fatalf("transaction %v: status %+v, error %v; want it gone", txid, st, err)
	}
}

// TestBtcd shares one node between subtests that each leave it with an empty mempool.
func TestBtcd(t *testing.T) {
	began := time.Now()
	b := StartTest(t, Options{})
	t.Logf("btcd started and mined %d blocks in %v", DefaultInitialBlocks, time.Since(began).Round(time.Millisecond))

	t.Run("started past segwit", func(t *testing.T) {
		ctx := testContext(t)
		tip, err := b.Tip(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tip.Height != DefaultInitialBlocks || tip.Height < SegwitHeight {
			t.Fatalf("tip height %d, want %d", tip.Height, DefaultInitialBlocks)
		}
		var info struct {
			Bip9 map[string]struct {
				Status string `json:"status"`
			} `json:"bip9_softforks"`
		}
		if err := b.Call(ctx, "getblockchaininfo", &info); err != nil {
			t.Fatal(err)
		}
		if got := info.Bip9["segwit"].Status; got != "active" {
			t.Logf("getblockchaininfo softforks: %+v", info)
			t.Errorf("segwit is %q, want active", got)
		}
		cfg := b.RPC()
		if cfg.Host == "" || cfg.User == "" || cfg.Pass == "" || len(cfg.Cert) == 0 {
			t.Errorf("incomplete RPC config %+v", cfg)
		}
		if pem, err := os.ReadFile(cfg.CertPath); err != nil || string(pem) != string(cfg.Cert) {
			t.Errorf("certificate file %s does not hold the certificate: %v", cfg.CertPath, err)
		}
	})

	t.Run("send to P2WPKH and P2WSH", func(t *testing.T) {
		ctx := testContext(t)
		outputs := []*wire.TxOut{
			{Value: 1_000_000, PkScript: p2wpkhScript(t)},
			{Value: 2_000_000, PkScript: p2wshScript(t)},
		}
		tx, err := b.Send(ctx, outputs, 0)
		if err != nil {
			t.Fatal(err)
		}
		txid := tx.TxHash()
		mustInMempool(t, ctx, b, txid, true)
		mustConfirmations(t, ctx, b, txid, 0)
		pooled, err := b.mempoolConflicts(ctx, txid)
		if err != nil {
			t.Fatal(err)
		}
		if rate := pooled.fee * 1000 / VirtualSize(tx); rate < int64(DefaultFeeRate) || rate > 2*int64(DefaultFeeRate) {
			t.Errorf("fee %d sat for %d vbytes: %d sat/kvB, want about %d", pooled.fee, VirtualSize(tx), rate, DefaultFeeRate)
		}

		hashes, err := b.Generate(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		mustInMempool(t, ctx, b, txid, false)
		if st := mustConfirmations(t, ctx, b, txid, 1); st.BlockHash != hashes[0] {
			t.Fatalf("transaction in block %v, want %v", st.BlockHash, hashes[0])
		}
		blk, err := b.Block(ctx, hashes[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(blk.Transactions) != 2 || blk.Transactions[1].TxHash() != txid {
			t.Fatalf("block holds %d transactions, want the coinbase and %v", len(blk.Transactions), txid)
		}
		for i, want := range outputs {
			got := blk.Transactions[1].TxOut[i]
			if got.Value != want.Value || string(got.PkScript) != string(want.PkScript) {
				t.Errorf("output %d is %d to %x, want %d to %x", i, got.Value, got.PkScript, want.Value, want.PkScript)
			}
		}
	})

	t.Run("1000 outputs in one transaction", func(t *testing.T) {
		ctx := testContext(t)
		outputs := make([]*wire.TxOut, 1000)
		for i := range outputs {
			outputs[i] = &wire.TxOut{Value: 10_000 + int64(i), PkScript: p2wpkhScript(t)}
		}
		tx, err := b.Send(ctx, outputs, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("1000-output transaction: %d inputs, %d vbytes", len(tx.TxIn), VirtualSize(tx))
		hashes, err := b.Generate(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		blk, err := b.Block(ctx, hashes[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(blk.Transactions) != 2 || blk.Transactions[1].TxHash() != tx.TxHash() {
			t.Fatalf("block holds %d transactions, want the coinbase and %v", len(blk.Transactions), tx.TxHash())
		}
		if n := len(blk.Transactions[1].TxOut); n < 1000 {
			t.Fatalf("transaction has %d outputs", n)
		}
	})

	t.Run("many sends before a block", func(t *testing.T) {
		// Each send must pick coins the previous ones left unspent in the mempool.
		ctx := testContext(t)
		var txids []chainhash.Hash
		for range 20 {
			tx, err := b.Send(ctx, []*wire.TxOut{{Value: 50_000, PkScript: p2wpkhScript(t)}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			txids = append(txids, tx.TxHash())
		}
		if _, err := b.Generate(ctx, 1); err != nil {
			t.Fatal(err)
		}
		for _, id := range txids {
			mustConfirmations(t, ctx, b, id, 1)
		}
	})

	t.Run("replace in the mempool", func(t *testing.T) {
		ctx := testContext(t)
		orig, err := b.Send(ctx, []*wire.TxOut{{Value: 5_000_000, PkScript: p2wpkhScript(t)}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Pay more to somewhere else: the fee must rise as BIP125 demands.
		repl, err := b.Replace(ctx, orig, []*wire.TxOut{{Value: 7_000_000, PkScript: p2wshScript(t)}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		mustInMempool(t, ctx, b, orig.TxHash(), false)
		mustInMempool(t, ctx, b, repl.TxHash(), true)
		for _, in := range orig.TxIn {
			if !slices.ContainsFunc(repl.TxIn, func(r *wire.TxIn) bool { return r.PreviousOutPoint == in.PreviousOutPoint }) {
				t.Fatalf("replacement does not spend %v", in.PreviousOutPoint)
			}
		}
		// And replace the replacement, at an explicit higher rate.
		repl2, err := b.Replace(ctx, repl, []*wire.TxOut{{Value: 1_000_000, PkScript: p2wpkhScript(t)}}, 20_000)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Generate(ctx, 1); err != nil {
			t.Fatal(err)
		}
		mustConfirmations(t, ctx, b, repl2.TxHash(), 1)
		mustBeUnknown(t, ctx, b, orig.TxHash())
		mustBeUnknown(t, ctx, b, repl.TxHash())
	})

	t.Run("double spend of a confirmed transaction", func(t *testing.T) {
		ctx := testContext(t)
		orig, err := b.Send(ctx, []*wire.TxOut{{Value: 3_000_000, PkScript: p2wpkhScript(t)}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Generate(ctx, 2); err != nil {
			t.Fatal(err)
		}
		before, err := b.Tip(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mustConfirmations(t, ctx, b, orig.TxHash(), 2)

		repl, err := b.DoubleSpend(ctx, orig, []*wire.TxOut{{Value: 3_000_000, PkScript: p2wpkhScript(t)}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		mustBeUnknown(t, ctx, b, orig.TxHash())
		mustConfirmations(t, ctx, b, repl.TxHash(), 3)
		after, err := b.Tip(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.Height != before.Height+1 {
			t.Fatalf("tip height %d after the double spend, want %d", after.Height, before.Height+1)
		}
		// The faucet still works on the new branch.
		if _, err := b.Send(ctx, []*wire.TxOut{{Value: 10_000, PkScript: p2wpkhScript(t)}}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Generate(ctx, 1); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("reorg", func(t *testing.T) {
		ctx := testContext(t)
		tx, err := b.Send(ctx, []*wire.TxOut{{Value: 20_000, PkScript: p2wpkhScript(t)}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Generate(ctx, 3); err != nil {
			t.Fatal(err)
		}
		before, err := b.Tip(ctx)
		if err != nil {
			t.Fatal(err)
		}
		oldBranch, newBranch, err := b.Reorg(ctx, 3, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(oldBranch) != 3 || len(newBranch) != 4 || oldBranch[2] != before.Hash {
			t.Fatalf("old branch %v (tip was %v), new branch %v", oldBranch, before.Hash, newBranch)
		}
		after, err := b.Tip(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.Hash != newBranch[3] || after.Height != before.Height+1 {
			t.Fatalf("tip %v at %d, want %v at %d", after.Hash, after.Height, newBranch[3], before.Height+1)
		}
		forkHeight := before.Height - 3
		if h, err := b.BlockHash(ctx, forkHeight+1); err != nil || h != newBranch[0] {
			t.Fatalf("block at %d is %v (%v), want %v", forkHeight+1, h, err, newBranch[0])
		}
		// The old branch's transaction was mined again, in the new branch's first block.
		if st := mustConfirmations(t, ctx, b, tx.TxHash(), 4); st.BlockHash != newBranch[0] {
			t.Fatalf("transaction in %v, want %v", st.BlockHash, newBranch[0])
		}
		// The old branch is a valid side branch with less work: reconsidering changed nothing.
		var tips []struct {
			Hash   string `json:"hash"`
			Status string `json:"status"`
		}
		if err := b.Call(ctx, "getchaintips", &tips); err == nil {
			t.Logf("chain tips: %+v", tips)
		}
	})

	t.Run("mempool empty", func(t *testing.T) {
		ids, err := b.Mempool(testContext(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 0 {
			t.Fatalf("mempool holds %d transactions", len(ids))
		}
	})
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestStopLeavesNothing(t *testing.T) {
	bin := RequireBtcd(t)
	ctx := testContext(t)

	b, err := Start(ctx, Options{BtcdPath: bin, SkipInitialBlocks: true})
	if err != nil {
		t.Fatal(err)
	}
	pid, dir := b.PID(), b.DataDir()
	if processGone(pid) {
		t.Fatal("btcd is not running after Start")
	}
	if _, err := b.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if !processGone(pid) {
		t.Fatalf("btcd (pid %d) still runs after Stop", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary data directory %s still exists (%v)", dir, err)
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	b.Kill() // after Stop: a no-op

	// Kill, then Stop, then start again on the same data directory.
	dir = t.TempDir()
	b2, err := Start(ctx, Options{BtcdPath: bin, DataDir: dir, InitialBlocks: 10})
	if err != nil {
		t.Fatal(err)
	}
	b2.Kill()
	if !processGone(b2.PID()) {
		t.Fatalf("btcd (pid %d) still runs after Kill", b2.PID())
	}
	if err := b2.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b2.LogPath()); err != nil {
		t.Fatalf("a given data directory must be kept: %v", err)
	}
	b3, err := Start(ctx, Options{BtcdPath: bin, DataDir: dir, SkipInitialBlocks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Stop(ctx)
	if string(b3.RPC().Cert) != string(b2.RPC().Cert) {
		t.Error("btcd made a new certificate although the old one was there")
	}
	// btcd deletes its regtest chain at every start (btcd.go, removeRegressionDB). If this
	// fails, btcd has changed: update the DataDir documentation.
	if tip, err := b3.Tip(ctx); err != nil || tip.Height != 0 {
		t.Fatalf("tip after a restart on the same data directory: %+v, %v; want the genesis block", tip, err)
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	bin := RequireBtcd(t)
	ctx := testContext(t)
	_, err := Start(ctx, Options{BtcdPath: bin, ExtraArgs: []string{"--no-such-flag"}, SkipInitialBlocks: true})
	if err == nil {
		t.Fatal("Start succeeded with a bad flag")
	}
	if !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("error does not quote btcd's complaint: %v", err)
	}
}

func TestBtcdPath(t *testing.T) {
	t.Setenv(EnvBtcd, filepath.Join(t.TempDir(), "btcd"))
	_, err := BtcdPath()
	if err == nil || !strings.Contains(err.Error(), EnvBtcd) {
		t.Fatalf("BtcdPath with a missing %s: %v", EnvBtcd, err)
	}

	t.Setenv(EnvBtcd, "")
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	path, err := BtcdPath()
	switch {
	case err == nil && path != filepath.Join(root, "bin", "btcd"):
		t.Fatalf("BtcdPath = %s, want bin/btcd under %s", path, root)
	case err != nil && !strings.Contains(err.Error(), "make deps-btcd"):
		t.Fatalf("error does not say how to build btcd: %v", err)
	}
}

func TestEstimateVsizeBoundsSignedSize(t *testing.T) {
	f, err := newFaucet()
	if err != nil {
		t.Fatal(err)
	}
	for _, nIn := range []int{1, 2, 7} {
		tx := wire.NewMsgTx(2)
		for i := range nIn {
			op := wire.OutPoint{Index: uint32(i)}
			f.coins[op] = coin{value: 100_000}
			tx.AddTxIn(wire.NewTxIn(&op, nil, nil))
		}
		tx.AddTxOut(&wire.TxOut{Value: 1000, PkScript: p2wshScript(t)})
		tx.AddTxOut(&wire.TxOut{Value: 1000, PkScript: f.pkScript})
		if err := f.sign(tx); err != nil {
			t.Fatal(err)
		}
		est, got := estimateVsize(nIn, tx.TxOut), VirtualSize(tx)
		if est < got || est > got+int64(nIn) {
			t.Errorf("%d inputs: estimated %d vbytes, signed transaction has %d", nIn, est, got)
		}
		// The signatures verify.
		prevOuts := txscript.NewMultiPrevOutFetcher(nil)
		for _, in := range tx.TxIn {
			prevOuts.AddPrevOut(in.PreviousOutPoint, &wire.TxOut{Value: 100_000, PkScript: f.pkScript})
		}
		hashes := txscript.NewTxSigHashes(tx, prevOuts)
		for i := range tx.TxIn {
			vm, err := txscript.NewEngine(f.pkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, 100_000, prevOuts)
			if err != nil {
				t.Fatal(err)
			}
			if err := vm.Execute(); err != nil {
				t.Fatalf("input %d does not verify: %v", i, err)
			}
		}
	}
}
