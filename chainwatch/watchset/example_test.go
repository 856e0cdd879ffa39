package watchset_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/bankd/bankd/chainwatch/watchset"
	"github.com/btcsuite/btcd/wire"
)

func Example() {
	// A deposit address of ours (P2WPKH) and an unspent output of ours.
	deposit := append([]byte{0x00, 0x14}, bytes.Repeat([]byte{0xab}, 20)...)
	ours := wire.OutPoint{Hash: [32]byte{1}, Index: 0}

	// At start-up, size the sets from the counts in Pebble and fill them.
	// Pebble keys scripts by SHA-256(script): the fingerprint is the key's
	// first eight bytes, so the scripts need not be read.
	key := sha256.Sum256(deposit)
	scripts := watchset.NewScriptSet(1)
	scripts.AddFingerprint(watchset.DigestFingerprint(key))
	utxos := watchset.NewOutpointSet(1)
	utxos.Add(ours)

	// A block in which a customer pays the deposit address and we spend our
	// output.
	pay := wire.NewMsgTx(2)
	pay.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: [32]byte{9}}})
	pay.AddTxOut(wire.NewTxOut(50_000, deposit))
	spend := wire.NewMsgTx(2)
	spend.AddTxIn(&wire.TxIn{PreviousOutPoint: ours})
	spend.AddTxOut(wire.NewTxOut(40_000, []byte{0x51, 0x20, 7}))
	block := &wire.MsgBlock{Transactions: []*wire.MsgTx{pay, spend}}

	for _, tx := range watchset.Match(block, scripts, utxos).Txs {
		for _, s := range tx.Spends {
			fmt.Printf("tx %d input %d spends ours %v\n", tx.Index, s.Input, s.PrevOut == ours)
		}
		for _, out := range tx.Outputs {
			// A candidate: confirm it against the record keyed by
			// out.ScriptHash before crediting anyone.
			fmt.Printf("tx %d output %d pays %d sat to candidate key %x...\n",
				tx.Index, out.Vout, out.Value, out.ScriptHash[:4])
		}
	}
	// Output:
	// tx 0 output 0 pays 50000 sat to candidate key c01d1f01...
	// tx 1 input 0 spends ours true
}
