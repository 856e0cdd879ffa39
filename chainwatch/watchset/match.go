package watchset

import (
	"crypto/sha256"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// Matches is what Match found in one block.
type Matches struct {
	// Txs holds one entry for every transaction with at least one matched
	// input or output, in block order.
	Txs []TxMatch
}

// A TxMatch is one transaction of a block that touches the watched set.
// Applying a block means applying its TxMatches in order and, within each,
// the spends before the outputs (a transaction spends before it creates).
type TxMatch struct {
	Index int            // position in the block's Transactions
	TxID  chainhash.Hash // the transaction's txid (TxHash; never the wtxid)

	// Spends are the inputs spending an outpoint of the OutpointSet or an
	// output reported earlier in the same block, in input order.
	Spends []Spend
	// Outputs are the outputs whose script is a candidate member of the
	// ScriptSet, in output order.
	Outputs []Output
}

// A Spend is an input spending a watched outpoint.
type Spend struct {
	Input   uint32        // index of the input in the transaction
	PrevOut wire.OutPoint // the outpoint it spends
}

// An Output is an output paying a candidate watched script. It is a
// candidate only: confirm ScriptHash against the authoritative record before
// acting on it.
type Output struct {
	Vout       uint32            // index of the output in the transaction
	Value      int64             // satoshis
	PkScript   []byte            // shares memory with the block's output
	ScriptHash [sha256.Size]byte // SHA-256(PkScript), the record's key
}

// NumSpends returns the number of matched inputs in m.
func (m Matches) NumSpends() int {
	n := 0
	for _, tx := range m.Txs {
		n += len(tx.Spends)
	}
	return n
}

// NumOutputs returns the number of matched outputs in m.
func (m Matches) NumOutputs() int {
	n := 0
	for _, tx := range m.Txs {
		n += len(tx.Outputs)
	}
	return n
}

// Match finds, in block order, the outputs of block that pay a candidate
// member of scripts and the inputs that spend a member of utxos. It does not
// change either set; the caller applies the result.
//
// An output that pays a watched script and is spent by a later transaction
// of the same block is reported twice: as an Output of the transaction that
// creates it and as a Spend of the one that spends it (utxos cannot know
// about it yet). If the caller rejects such an output as a false positive, it
// must ignore that Spend too; a caller that checks each Spend against the
// outputs it has confirmed does so naturally.
//
// The txid of a transaction is computed once, and only for transactions that
// match. Both sets must be non-nil. Writers may update them concurrently:
// the inputs are looked up under one read lock of utxos, a consistent view
// that holds off its writers for the few milliseconds the inputs of a full
// block take; each output is looked up in the script set as it is at that
// moment.
func Match(block *wire.MsgBlock, scripts *ScriptSet, utxos *OutpointSet) Matches {
	// Look everything up first, in two tight loops over the whole block: a
	// lookup is dominated by cache and TLB misses in a table far larger than
	// the CPU caches, and independent lookups in a tight loop overlap their
	// misses. Interleaving them with hashing and assembling (or taking the
	// lock per lookup, which is a full memory barrier) makes them wait one
	// by one; this ordering halves the time of a full block.
	paid := lookupOutputs(block, scripts)
	spent := lookupInputs(block, utxos)

	// Then assemble the matches in block order.
	var m Matches
	// created holds the outputs matched so far in this block, so that later
	// transactions spending them are reported. Allocated on first use: most
	// blocks pay us nothing.
	var created map[wire.OutPoint]struct{}
	nextOut, nextIn := 0, 0 // indexes into paid and spent
	for i, tx := range block.Transactions {
		var spends []Spend
		for j, in := range tx.TxIn {
			_, inBlock := created[in.PreviousOutPoint]
			if inBlock || spent[nextIn] {
				spends = append(spends, Spend{Input: uint32(j), PrevOut: in.PreviousOutPoint})
			}
			nextIn++
		}
		var outputs []Output
		for j, out := range tx.TxOut {
			if paid[nextOut] {
				outputs = append(outputs, Output{
					Vout:       uint32(j),
					Value:      out.Value,
					PkScript:   out.PkScript,
					ScriptHash: sha256.Sum256(out.PkScript), // again, but only for hits
				})
			}
			nextOut++
		}
		if len(spends) == 0 && len(outputs) == 0 {
			continue
		}

		txid := tx.TxHash()
		for _, out := range outputs {
			if created == nil {
				created = make(map[wire.OutPoint]struct{})
			}
			created[wire.OutPoint{Hash: txid, Index: out.Vout}] = struct{}{}
		}
		m.Txs = append(m.Txs, TxMatch{Index: i, TxID: txid, Spends: spends, Outputs: outputs})
	}
	return m
}

// lookupOutputs reports, for each output of block in block order, whether
// its script is a candidate member of scripts.
func lookupOutputs(block *wire.MsgBlock, scripts *ScriptSet) []bool {
	n := 0
	for _, tx := range block.Transactions {
		n += len(tx.TxOut)
	}
	fps := make([]uint64, 0, n)
	for _, tx := range block.Transactions {
		for _, out := range tx.TxOut {
			fps = append(fps, slotValue(Fingerprint(out.PkScript)))
		}
	}
	paid := make([]bool, len(fps))
	t := scripts.tab.Load()
	if t == nil {
		return paid
	}
	for k, v := range fps {
		paid[k] = t.contains(v)
	}
	return paid
}

// lookupInputs reports, for each input of block in block order, whether it
// spends a member of utxos.
func lookupInputs(block *wire.MsgBlock, utxos *OutpointSet) []bool {
	n := 0
	for _, tx := range block.Transactions {
		n += len(tx.TxIn)
	}
	spent := make([]bool, 0, n)
	utxos.mu.RLock()
	defer utxos.mu.RUnlock()
	for _, tx := range block.Transactions {
		for _, in := range tx.TxIn {
			_, ok := utxos.m[in.PreviousOutPoint]
			spent = append(spent, ok)
		}
	}
	return spent
}
