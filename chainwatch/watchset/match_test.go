package watchset

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/btcsuite/btcd/wire"
)

// Fixtures of the hand-written Match specifications.
var (
	ours1    = watchedScript(nil, 1)
	ours2    = watchedScript(nil, 2)
	stranger = watchedScript(nil, 1000) // never added to the set
	utxoU    = utxoOutpoint(1)          // in the outpoint set
	utxoV    = utxoOutpoint(2)          // not in it
)

// newTx returns a transaction spending ins (with a witness, so that its txid
// and wtxid differ) and paying outs, output k worth 1000*(k+1) satoshis.
func newTx(ins []wire.OutPoint, outs ...[]byte) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	for _, op := range ins {
		tx.AddTxIn(&wire.TxIn{
			PreviousOutPoint: op,
			Witness:          wire.TxWitness{bytes.Repeat([]byte{0x30}, 71), bytes.Repeat([]byte{0x02}, 33)},
			Sequence:         wire.MaxTxInSequenceNum,
		})
	}
	for k, script := range outs {
		tx.AddTxOut(wire.NewTxOut(int64(1000*(k+1)), script))
	}
	return tx
}

func outpointOf(tx *wire.MsgTx, vout uint32) wire.OutPoint {
	return wire.OutPoint{Hash: tx.TxHash(), Index: vout}
}

// blockOf returns a block of a coinbase (tx0, paying a stranger) and txs
// (tx1, tx2, ...).
func blockOf(txs ...*wire.MsgTx) *wire.MsgBlock {
	coinbase := newTx([]wire.OutPoint{{Index: wire.MaxPrevOutIndex}}, stranger)
	coinbase.TxIn[0].Witness = nil
	b := &wire.MsgBlock{}
	b.AddTransaction(coinbase)
	for _, tx := range txs {
		b.AddTransaction(tx)
	}
	return b
}

// describe renders m as one line per matched input or output, naming a
// spent outpoint "txK:v" if block tx K created it, or "U"/"V" for utxoU and
// utxoV. It also checks the fields the lines leave out against the block.
func describe(t *testing.T, block *wire.MsgBlock, m Matches) []string {
	t.Helper()
	names := map[wire.OutPoint]string{utxoU: "U", utxoV: "V"}
	for k, tx := range block.Transactions {
		for v := range tx.TxOut {
			names[outpointOf(tx, uint32(v))] = fmt.Sprintf("tx%d:%d", k, v)
		}
	}
	var lines []string
	for _, tm := range m.Txs {
		tx := block.Transactions[tm.Index]
		if tm.TxID != tx.TxHash() {
			t.Errorf("tx%d: TxID = %v, want TxHash %v", tm.Index, tm.TxID, tx.TxHash())
		}
		for _, s := range tm.Spends {
			if s.PrevOut != tx.TxIn[s.Input].PreviousOutPoint {
				t.Errorf("tx%d in%d: PrevOut = %v, want the input's %v", tm.Index, s.Input, s.PrevOut, tx.TxIn[s.Input].PreviousOutPoint)
			}
			lines = append(lines, fmt.Sprintf("tx%d in%d spends %s", tm.Index, s.Input, names[s.PrevOut]))
		}
		for _, o := range tm.Outputs {
			out := tx.TxOut[o.Vout]
			if o.Value != out.Value || !bytes.Equal(o.PkScript, out.PkScript) || o.ScriptHash != sha256.Sum256(out.PkScript) {
				t.Errorf("tx%d out%d: got %d %x %x, want the output's %d %x and its SHA-256",
					tm.Index, o.Vout, o.Value, o.PkScript, o.ScriptHash, out.Value, out.PkScript)
			}
			lines = append(lines, fmt.Sprintf("tx%d out%d pays %d", tm.Index, o.Vout, o.Value))
		}
	}
	return lines
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name  string
		block func() *wire.MsgBlock
		want  []string
	}{
		{
			name:  "a block paying strangers from strangers matches nothing",
			block: func() *wire.MsgBlock { return blockOf(newTx([]wire.OutPoint{utxoV}, stranger, stranger)) },
		},
		{
			name:  "an empty block matches nothing",
			block: func() *wire.MsgBlock { return &wire.MsgBlock{} },
		},
		{
			name:  "an output paying a watched script is reported",
			block: func() *wire.MsgBlock { return blockOf(newTx([]wire.OutPoint{utxoV}, stranger, ours1)) },
			want:  []string{"tx1 out1 pays 2000"},
		},
		{
			name:  "every output paying a watched script is reported, in order",
			block: func() *wire.MsgBlock { return blockOf(newTx([]wire.OutPoint{utxoV}, ours2, stranger, ours1, ours1)) },
			want:  []string{"tx1 out0 pays 1000", "tx1 out2 pays 3000", "tx1 out3 pays 4000"},
		},
		{
			name:  "an input spending a watched outpoint is reported",
			block: func() *wire.MsgBlock { return blockOf(newTx([]wire.OutPoint{utxoV, utxoU}, stranger)) },
			want:  []string{"tx1 in1 spends U"},
		},
		{
			name: "a transaction spending from and paying to us is one entry, spends first",
			block: func() *wire.MsgBlock {
				return blockOf(newTx([]wire.OutPoint{utxoU}, stranger, ours1))
			},
			want: []string{"tx1 in0 spends U", "tx1 out1 pays 2000"},
		},
		{
			name: "an output paid and spent in the same block is reported both ways",
			block: func() *wire.MsgBlock {
				pay := newTx([]wire.OutPoint{utxoV}, ours1, stranger)
				spend := newTx([]wire.OutPoint{outpointOf(pay, 1), outpointOf(pay, 0)}, stranger)
				return blockOf(pay, newTx(nil, stranger), spend)
			},
			want: []string{"tx1 out0 pays 1000", "tx3 in1 spends tx1:0"},
		},
		{
			name: "a chain of our outputs within a block is followed",
			block: func() *wire.MsgBlock {
				a := newTx([]wire.OutPoint{utxoU}, ours1)
				b := newTx([]wire.OutPoint{outpointOf(a, 0)}, ours2)
				c := newTx([]wire.OutPoint{outpointOf(b, 0)}, stranger)
				return blockOf(a, b, c)
			},
			want: []string{
				"tx1 in0 spends U", "tx1 out0 pays 1000",
				"tx2 in0 spends tx1:0", "tx2 out0 pays 1000",
				"tx3 in0 spends tx2:0",
			},
		},
		{
			name: "a stranger's output spent in the same block is not reported",
			block: func() *wire.MsgBlock {
				pay := newTx([]wire.OutPoint{utxoV}, stranger)
				return blockOf(pay, newTx([]wire.OutPoint{outpointOf(pay, 0)}, stranger))
			},
		},
		{
			name: "matching follows block order: a spend listed before its output is not matched",
			block: func() *wire.MsgBlock {
				pay := newTx([]wire.OutPoint{utxoV}, ours1)
				return blockOf(newTx([]wire.OutPoint{outpointOf(pay, 0)}, stranger), pay)
			},
			want: []string{"tx2 out0 pays 1000"},
		},
		{
			name: "the coinbase can pay us",
			block: func() *wire.MsgBlock {
				b := blockOf()
				b.Transactions[0].TxOut[0].PkScript = ours2
				return b
			},
			want: []string{"tx0 out0 pays 1000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scripts := new(ScriptSet)
			scripts.Add(ours1)
			scripts.Add(ours2)
			utxos := new(OutpointSet)
			utxos.Add(utxoU)

			block := tt.block()
			got := describe(t, block, Match(block, scripts, utxos))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Match found\n\t%q\nwant\n\t%q", got, tt.want)
			}
			if scripts.Len() != 2 || utxos.Len() != 1 {
				t.Errorf("Match changed the sets: %d scripts, %d outpoints", scripts.Len(), utxos.Len())
			}
		})
	}
}

func TestMatchTxIDIsNotWitnessHash(t *testing.T) {
	tx := newTx([]wire.OutPoint{utxoV}, ours1)
	if tx.TxHash() == tx.WitnessHash() {
		t.Fatal("test transaction has no witness")
	}
	scripts := new(ScriptSet)
	scripts.Add(ours1)
	m := Match(blockOf(tx), scripts, new(OutpointSet))
	if len(m.Txs) != 1 || m.Txs[0].TxID != tx.TxHash() {
		t.Fatalf("Match = %+v, want one entry with TxID %v", m, tx.TxHash())
	}
}

// TestMatchSynthetic: in generated blocks, Match finds every planted output
// and spend (including spends of outputs created earlier in the same block)
// and nothing else, in block order, deterministically, and the same after a
// serialization round trip.
func TestMatchSynthetic(t *testing.T) {
	scripts, utxos := newSynthSets(5000, 5000)
	tests := []synthParams{
		{seed: 1, txs: 300, watched: 5000, utxos: 5000, payRate: 0.05, spendRate: 0.05, chainRate: 0.2},
		{seed: 2, txs: 300, watched: 5000, utxos: 5000, payRate: 0.3, spendRate: 0.3, chainRate: 0.3},
		{seed: 3, txs: 1000, watched: 5000, utxos: 5000, payRate: 0.01, spendRate: 0.01, chainRate: 0.05},
		{seed: 4, txs: 200, watched: 5000, utxos: 5000, payRate: 0.5, chainRate: 0.5},
		{seed: 5, txs: 200}, // pays and spends nothing of ours
		{seed: 6, txs: 50, watched: 5000, utxos: 5000, payRate: 1, spendRate: 0.5, chainRate: 0.5},
	}
	totalChained := 0
	for _, p := range tests {
		t.Run(fmt.Sprintf("seed%d", p.seed), func(t *testing.T) {
			sb := genBlock(p)
			m := Match(sb.block, scripts, utxos)

			gotOut, gotSpend := matchRefs(m)
			if !reflect.DeepEqual(gotOut, sb.wantOutputs) {
				t.Errorf("outputs: got %d, want %d planted; missing %v, extra %v",
					len(gotOut), len(sb.wantOutputs), diff(sb.wantOutputs, gotOut), diff(gotOut, sb.wantOutputs))
			}
			if !reflect.DeepEqual(gotSpend, sb.wantSpends) {
				t.Errorf("spends: got %d, want %d planted; missing %v, extra %v",
					len(gotSpend), len(sb.wantSpends), diff(sb.wantSpends, gotSpend), diff(gotSpend, sb.wantSpends))
			}
			checkOrder(t, m)
			describe(t, sb.block, m) // checks TxID, values, scripts, prevouts
			totalChained += sb.chainedOurs

			if again := Match(sb.block, scripts, utxos); !reflect.DeepEqual(again, m) {
				t.Error("a second Match of the same block gave a different result")
			}
			var buf bytes.Buffer
			if err := sb.block.Serialize(&buf); err != nil {
				t.Fatal(err)
			}
			var decoded wire.MsgBlock
			if err := decoded.Deserialize(&buf); err != nil {
				t.Fatal(err)
			}
			if fromBytes := Match(&decoded, scripts, utxos); !reflect.DeepEqual(fromBytes, m) {
				t.Error("Match of the deserialized block differs")
			}
		})
	}
	if totalChained == 0 {
		t.Error("no generated block spent one of our outputs created in the same block")
	}
}

func diff(a, b map[txRef]bool) []txRef {
	var d []txRef
	for r := range a {
		if !b[r] {
			d = append(d, r)
		}
	}
	slices.SortFunc(d, func(x, y txRef) int { return (x.tx-y.tx)*1000 + x.n - y.n })
	return d
}

// checkOrder checks that m is in block order: transactions ascending and,
// within each, inputs and outputs ascending, and no empty entries.
func checkOrder(t *testing.T, m Matches) {
	t.Helper()
	for k, tm := range m.Txs {
		if k > 0 && tm.Index <= m.Txs[k-1].Index {
			t.Errorf("entry %d: tx%d after tx%d", k, tm.Index, m.Txs[k-1].Index)
		}
		if len(tm.Spends) == 0 && len(tm.Outputs) == 0 {
			t.Errorf("tx%d: empty entry", tm.Index)
		}
		if !slices.IsSortedFunc(tm.Spends, func(a, b Spend) int { return int(a.Input) - int(b.Input) }) {
			t.Errorf("tx%d: spends out of order", tm.Index)
		}
		if !slices.IsSortedFunc(tm.Outputs, func(a, b Output) int { return int(a.Vout) - int(b.Vout) }) {
			t.Errorf("tx%d: outputs out of order", tm.Index)
		}
	}
}

// FuzzMatch builds a ScriptSet and a block from arbitrary bytes and checks
// Add, Contains and Match against a plain map reference. The input is read
// as records: a flags byte, a length byte n, then n bytes of output script.
// Each record is a transaction with one input and one output paying the
// script. Flags bit 0: the script is watched. Bit 1: the input spends the
// output of an earlier record (chosen by the bits above). Bit 2: the input
// spends a watched outpoint. Bit 3: the script is added as a fingerprint.
func FuzzMatch(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 3, 0, 1, 2, 0, 0, 2, 0, 0, 4, 1, 0xff})
	f.Add(append(append([]byte{1, 22}, ours1...), append([]byte{0b110, 34}, watchedScript(nil, 4)...)...))
	f.Add([]byte{9, 0, 1, 0, 0, 0, 3, 1, 0x51, 6, 0, 7, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		scripts := new(ScriptSet)
		utxos := new(OutpointSet)
		watched := make(map[string]bool)
		watchedOPs := make(map[wire.OutPoint]bool)
		var created []wire.OutPoint // outputs of earlier records

		block := blockOf()
		for rec := 0; len(data) >= 2; rec++ {
			flags, n := data[0], int(data[1])
			data = data[2:]
			n = min(n, len(data))
			script := data[:n:n]
			data = data[n:]

			if flags&1 != 0 {
				fresh := !watched[string(script)]
				var added bool
				if flags&8 != 0 {
					added = scripts.AddFingerprint(Fingerprint(script))
				} else {
					added = scripts.Add(script)
				}
				if added != fresh {
					t.Fatalf("adding %x: got new=%v, want %v", script, added, fresh)
				}
				watched[string(script)] = true
			}
			prev := utxoOutpoint(uint64(1000 + rec))
			switch {
			case flags&2 != 0 && len(created) > 0:
				prev = created[int(flags>>4)%len(created)]
			case flags&4 != 0:
				utxos.Add(prev)
				watchedOPs[prev] = true
			}
			tx := newTx([]wire.OutPoint{prev}, script)
			block.AddTransaction(tx)
			created = append(created, outpointOf(tx, 0))
		}
		if scripts.Len() != len(watched) {
			t.Fatalf("Len() = %d, want %d", scripts.Len(), len(watched))
		}

		// The reference: a straight reading of Match's contract with exact
		// sets. (A fingerprint collision between distinct scripts would make
		// this fail; its probability is negligible.)
		wantOut, wantSpend := make(map[txRef]bool), make(map[txRef]bool)
		ours := make(map[wire.OutPoint]bool)
		for k, tx := range block.Transactions {
			for i, in := range tx.TxIn {
				if watchedOPs[in.PreviousOutPoint] || ours[in.PreviousOutPoint] {
					wantSpend[txRef{k, i}] = true
				}
			}
			for v, out := range tx.TxOut {
				if scripts.Contains(out.PkScript) != watched[string(out.PkScript)] {
					t.Fatalf("Contains(%x) = %v, want %v", out.PkScript, !watched[string(out.PkScript)], watched[string(out.PkScript)])
				}
				if watched[string(out.PkScript)] {
					wantOut[txRef{k, v}] = true
					ours[outpointOf(tx, uint32(v))] = true
				}
			}
		}

		m := Match(block, scripts, utxos)
		gotOut, gotSpend := matchRefs(m)
		if !reflect.DeepEqual(gotOut, wantOut) || !reflect.DeepEqual(gotSpend, wantSpend) {
			t.Fatalf("Match: outputs %v spends %v, want %v and %v", gotOut, gotSpend, wantOut, wantSpend)
		}
		checkOrder(t, m)
	})
}
