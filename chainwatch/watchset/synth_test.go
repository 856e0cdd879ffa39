package watchset

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// This file generates deterministic synthetic data for the tests and
// benchmarks: the watched scripts and unspent outpoints of a wallet, and
// blocks that pay and spend some of them among many that do not.

// mix64 is the SplitMix64 finalizer: a bijection on uint64 that scatters
// consecutive inputs, used to derive payloads from indexes.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Script shapes of the synthetic data.
const (
	kindP2WPKH = iota // OP_0 <20 bytes>
	kindP2TR          // OP_1 <32 bytes>
	kindP2PKH         // OP_DUP OP_HASH160 <20 bytes> OP_EQUALVERIFY OP_CHECKSIG
	numKinds
)

// appendScript appends an output script of the given kind whose payload
// (key hash or output key) is taken from payload, which must hold at least 32
// bytes.
func appendScript(dst []byte, kind int, payload []byte) []byte {
	switch kind {
	case kindP2WPKH:
		dst = append(dst, txscript.OP_0, txscript.OP_DATA_20)
		return append(dst, payload[:20]...)
	case kindP2TR:
		dst = append(dst, txscript.OP_1, txscript.OP_DATA_32)
		return append(dst, payload[:32]...)
	default:
		dst = append(dst, txscript.OP_DUP, txscript.OP_HASH160, txscript.OP_DATA_20)
		dst = append(dst, payload[:20]...)
		return append(dst, txscript.OP_EQUALVERIFY, txscript.OP_CHECKSIG)
	}
}

// watchedScript appends the i-th script of the synthetic watched set to dst.
// Its shape cycles through P2WPKH, P2TR and P2PKH; its payload is derived
// from i through mix64, so distinct indexes give distinct scripts.
func watchedScript(dst []byte, i uint64) []byte {
	var payload [32]byte
	for k := range 4 {
		binary.LittleEndian.PutUint64(payload[8*k:], mix64(i*4+uint64(k)))
	}
	return appendScript(dst, int(i%numKinds), payload[:])
}

// utxoOutpoint returns the j-th outpoint of the synthetic unspent set.
func utxoOutpoint(j uint64) wire.OutPoint {
	var op wire.OutPoint
	for k := range 4 {
		binary.LittleEndian.PutUint64(op.Hash[8*k:], mix64(^(j*4 + uint64(k))))
	}
	op.Index = uint32(j % 4)
	return op
}

// synthParams describes a synthetic block.
type synthParams struct {
	seed uint64
	txs  int // transactions after the coinbase; each has 1-3 inputs and 2 outputs

	watched uint64 // the block pays watchedScript(i) only for i < watched
	utxos   uint64 // and spends utxoOutpoint(j) only for j < utxos

	payRate   float64 // fraction of outputs paying a watched script
	spendRate float64 // fraction of inputs spending a watched outpoint
	chainRate float64 // fraction of inputs spending an earlier output of the block
}

// txRef names an output (tx, vout) or an input (tx, input) of a block.
type txRef struct{ tx, n int }

// synthBlock is a generated block and what Match must find in it.
type synthBlock struct {
	block       *wire.MsgBlock
	wantOutputs map[txRef]bool // outputs paying a watched script
	wantSpends  map[txRef]bool // inputs spending a watched outpoint or one of the above
	chainedOurs int            // how many of wantSpends spend an output of the same block
}

// genBlock builds a block from p deterministically: the same p gives the
// same block. Every input spends a distinct outpoint.
func genBlock(p synthParams) synthBlock {
	r := rand.New(rand.NewPCG(p.seed, 0x5eed))
	sb := synthBlock{
		block:       &wire.MsgBlock{Header: wire.BlockHeader{Version: 0x20000000, Timestamp: timeOf(p.seed)}},
		wantOutputs: make(map[txRef]bool),
		wantSpends:  make(map[txRef]bool),
	}
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := 0; i < n; i += 8 {
			var w [8]byte
			binary.LittleEndian.PutUint64(w[:], r.Uint64())
			copy(b[i:], w[:])
		}
		return b
	}

	// Coinbase: pays a stranger, as a real one pays the miner.
	coinbase := wire.NewMsgTx(2)
	coinbase.AddTxIn(&wire.TxIn{
		PreviousOutPoint: wire.OutPoint{Index: wire.MaxPrevOutIndex},
		SignatureScript:  randBytes(12),
		Sequence:         wire.MaxTxInSequenceNum,
	})
	coinbase.AddTxOut(wire.NewTxOut(312_500_000, appendScript(nil, kindP2WPKH, randBytes(32))))
	sb.block.AddTransaction(coinbase)

	// Outputs of this block not yet spent, split by whether they pay us.
	var oursCreated, othersCreated []wire.OutPoint
	ours := make(map[wire.OutPoint]bool)
	take := func(pool *[]wire.OutPoint) wire.OutPoint {
		k := r.IntN(len(*pool))
		op := (*pool)[k]
		(*pool)[k] = (*pool)[len(*pool)-1]
		*pool = (*pool)[:len(*pool)-1]
		return op
	}
	spentUTXO := make(map[uint64]bool)

	for t := 1; t <= p.txs; t++ {
		tx := wire.NewMsgTx(2)
		for in := range 1 + r.IntN(3) {
			var prev wire.OutPoint
			x := r.Float64()
			switch {
			case x < p.spendRate && p.utxos > 0 && uint64(len(spentUTXO)) < p.utxos:
				j := r.Uint64N(p.utxos)
				for spentUTXO[j] {
					j = (j + 1) % p.utxos
				}
				spentUTXO[j] = true
				prev = utxoOutpoint(j)
				sb.wantSpends[txRef{t, in}] = true
			case x < p.spendRate+p.chainRate && len(oursCreated)+len(othersCreated) > 0:
				if len(othersCreated) == 0 || (len(oursCreated) > 0 && r.IntN(2) == 0) {
					prev = take(&oursCreated)
				} else {
					prev = take(&othersCreated)
				}
				if ours[prev] {
					sb.wantSpends[txRef{t, in}] = true
					sb.chainedOurs++
				}
			default:
				copy(prev.Hash[:], randBytes(32))
				prev.Index = uint32(r.IntN(4))
			}
			txIn := &wire.TxIn{PreviousOutPoint: prev, Sequence: wire.MaxTxInSequenceNum - 2}
			switch r.IntN(numKinds) {
			case kindP2WPKH:
				txIn.Witness = wire.TxWitness{randBytes(71), randBytes(33)}
			case kindP2TR:
				txIn.Witness = wire.TxWitness{randBytes(64)}
			default:
				txIn.SignatureScript = randBytes(106)
			}
			tx.AddTxIn(txIn)
		}
		var paysUs [2]bool
		for out := range 2 {
			var script []byte
			if p.watched > 0 && r.Float64() < p.payRate {
				script = watchedScript(nil, r.Uint64N(p.watched))
				paysUs[out] = true
				sb.wantOutputs[txRef{t, out}] = true
			} else {
				script = appendScript(nil, r.IntN(numKinds), randBytes(32))
			}
			tx.AddTxOut(wire.NewTxOut(int64(1_000+r.IntN(100_000_000)), script))
		}
		sb.block.AddTransaction(tx)

		if p.chainRate > 0 {
			txid := tx.TxHash()
			for out, us := range paysUs {
				op := wire.OutPoint{Hash: txid, Index: uint32(out)}
				if us {
					ours[op] = true
					oursCreated = append(oursCreated, op)
				} else {
					othersCreated = append(othersCreated, op)
				}
			}
		}
	}
	return sb
}

// matchRefs flattens m into the same shape as synthBlock's expectations.
func matchRefs(m Matches) (outputs, spends map[txRef]bool) {
	outputs, spends = make(map[txRef]bool), make(map[txRef]bool)
	for _, tx := range m.Txs {
		for _, o := range tx.Outputs {
			outputs[txRef{tx.Index, int(o.Vout)}] = true
		}
		for _, s := range tx.Spends {
			spends[txRef{tx.Index, int(s.Input)}] = true
		}
	}
	return outputs, spends
}

// newSynthSets returns a script set holding watchedScript(i) for i < watched
// and an outpoint set holding utxoOutpoint(j) for j < utxos.
func newSynthSets(watched, utxos uint64) (*ScriptSet, *OutpointSet) {
	scripts := NewScriptSet(int(watched))
	var buf []byte
	for i := range watched {
		buf = watchedScript(buf[:0], i)
		scripts.Add(buf)
	}
	outpoints := NewOutpointSet(int(utxos))
	for j := range utxos {
		outpoints.Add(utxoOutpoint(j))
	}
	return scripts, outpoints
}

// timeOf gives each seed its own block timestamp.
func timeOf(seed uint64) time.Time {
	return time.Unix(1_700_000_000+int64(seed%1_000_000)*600, 0)
}
