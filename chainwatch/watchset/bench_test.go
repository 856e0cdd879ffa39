package watchset

import (
	"bytes"
	"hash/maphash"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"
)

// The benchmarks print figures and assert nothing. Each iteration does a
// fixed, large amount of work and reports per-item metrics, so
//
//	go test -run '^$' -bench . -benchtime 1x ./chainwatch/watchset/
//
// gives meaningful numbers from a single iteration.

const (
	benchScripts  = 10_000_000 // watched scripts
	benchUTXOs    = 1_000_000  // unspent outpoints
	benchBlockTxs = 4_000      // transactions per block, after the coinbase
	benchBlocks   = 10         // distinct synthetic blocks
)

// heapAlloc returns the live heap after a full collection.
func heapAlloc() (live, total uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.TotalAlloc
}

// reportHeap reports the live heap grown since before (bytes and bytes per
// item) and everything allocated on the way.
func reportHeap(b *testing.B, beforeLive, beforeTotal uint64, items int) {
	live, total := heapAlloc()
	grown := float64(live) - float64(beforeLive)
	b.ReportMetric(grown, "heap-B")
	b.ReportMetric(grown/float64(items), "heap-B/item")
	b.ReportMetric(float64(total-beforeTotal)/float64(b.N), "alloc-B/op")
}

// BenchmarkFingerprint compares the cost of hashing a typical output script
// (P2WPKH, P2TR, P2PKH in turn) with SHA-256, the fingerprint the set uses,
// and with hash/maphash, the fastest hash in the standard library.
func BenchmarkFingerprint(b *testing.B) {
	const n = 1_000_000
	scripts := make([][]byte, 3)
	for i := range scripts {
		scripts[i] = watchedScript(nil, uint64(i))
	}
	b.Run("sha256", func(b *testing.B) {
		var sink uint64
		for b.Loop() {
			for i := range n {
				sink += Fingerprint(scripts[i%3])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/script")
		_ = sink
	})
	b.Run("maphash", func(b *testing.B) {
		seed := maphash.MakeSeed()
		var sink uint64
		for b.Loop() {
			for i := range n {
				sink += maphash.Bytes(seed, scripts[i%3])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/script")
		_ = sink
	})
}

// BenchmarkLoadScripts builds a 10,000,000-script set and reports the time
// per script and the set's memory: the live heap it adds (after a GC) and
// all it allocated, which for a growing set includes the discarded tables.
//
//   - presized: NewScriptSet(10M), then Add of each script (SHA-256 included).
//   - growing: a zero ScriptSet grown by doubling, then Add of each script.
//   - key-order: NewScriptSet(10M), then AddFingerprint of ascending
//     fingerprints, as when loading from Pebble keys (SHA-256 of the script)
//     in key order without reading the scripts.
//
// Generating each synthetic script costs a few ns and is included.
func BenchmarkLoadScripts(b *testing.B) {
	load := func(b *testing.B, newSet func() *ScriptSet, add func(s *ScriptSet, i uint64, buf []byte) []byte) {
		beforeLive, beforeTotal := heapAlloc()
		var s *ScriptSet
		for b.Loop() {
			s = newSet()
			var buf []byte
			for i := range uint64(benchScripts) {
				buf = add(s, i, buf)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchScripts), "ns/script")
		reportHeap(b, beforeLive, beforeTotal, benchScripts)
		if s.Len() != benchScripts {
			b.Fatalf("Len() = %d", s.Len())
		}
	}
	addScript := func(s *ScriptSet, i uint64, buf []byte) []byte {
		buf = watchedScript(buf[:0], i)
		s.Add(buf)
		return buf
	}
	b.Run("presized", func(b *testing.B) {
		load(b, func() *ScriptSet { return NewScriptSet(benchScripts) }, addScript)
	})
	b.Run("growing", func(b *testing.B) {
		load(b, func() *ScriptSet { return new(ScriptSet) }, addScript)
	})
	b.Run("key-order", func(b *testing.B) {
		// Fingerprints i*step + (mix64(i) mod step): ascending, distinct and
		// spread over the whole range like sorted SHA-256 prefixes.
		const step = ^uint64(0) / benchScripts
		load(b, func() *ScriptSet { return NewScriptSet(benchScripts) }, func(s *ScriptSet, i uint64, buf []byte) []byte {
			s.AddFingerprint(i*step + mix64(i)%step)
			return buf
		})
	})
}

// BenchmarkLoadOutpoints builds a 1,000,000-outpoint set, pre-sized or
// grown from empty, and reports its memory per outpoint.
func BenchmarkLoadOutpoints(b *testing.B) {
	for _, tt := range []struct {
		name string
		hint int
	}{{"presized", benchUTXOs}, {"growing", 0}} {
		b.Run(tt.name, func(b *testing.B) {
			beforeLive, beforeTotal := heapAlloc()
			var s *OutpointSet
			for b.Loop() {
				s = NewOutpointSet(tt.hint)
				for j := range uint64(benchUTXOs) {
					s.Add(utxoOutpoint(j))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchUTXOs), "ns/outpoint")
			reportHeap(b, beforeLive, beforeTotal, benchUTXOs)
			runtime.KeepAlive(s)
		})
	}
}

// benchSets is the wallet of the block benchmarks: 10M watched scripts and
// 1M unspent outpoints, built once.
var benchSets = sync.OnceValues(func() (*ScriptSet, *OutpointSet) {
	return newSynthSets(benchScripts, benchUTXOs)
})

// benchData is the block benchmarks' chain: benchBlocks distinct blocks of
// benchBlockTxs transactions (1-3 inputs, 2 outputs each; about 1.5 MB
// serialized, the size of a full mainnet block) with different seeds. About
// 1% of outputs pay the wallet, 1% of inputs spend its outpoints and 5% of
// inputs spend an earlier output of the same block.
type benchData struct {
	blocks []*wire.MsgBlock
	raw    [][]byte // blocks[i] serialized
}

var benchChain = sync.OnceValue(func() benchData {
	var d benchData
	for i := range benchBlocks {
		sb := genBlock(synthParams{
			seed: uint64(100 + i), txs: benchBlockTxs,
			watched: benchScripts, utxos: benchUTXOs,
			payRate: 0.01, spendRate: 0.01, chainRate: 0.05,
		})
		var buf bytes.Buffer
		if err := sb.block.Serialize(&buf); err != nil {
			panic(err)
		}
		d.blocks = append(d.blocks, sb.block)
		d.raw = append(d.raw, buf.Bytes())
	}
	return d
})

// BenchmarkMatchBlock matches full-size blocks (4,001 transactions, 8,002
// outputs, about 8,000 inputs) against 10M watched scripts and 1M unspent
// outpoints. One iteration matches each of the 10 distinct blocks 5 times;
// ns/block is the mean.
func BenchmarkMatchBlock(b *testing.B) {
	scripts, utxos := benchSets()
	chain := benchChain()
	const rounds = 5
	var outputs, inputs, matched int
	for _, blk := range chain.blocks {
		for _, tx := range blk.Transactions {
			outputs += len(tx.TxOut)
			inputs += len(tx.TxIn)
		}
		m := Match(blk, scripts, utxos)
		matched += m.NumOutputs() + m.NumSpends()
	}

	for b.Loop() {
		for range rounds {
			for _, blk := range chain.blocks {
				Match(blk, scripts, utxos)
			}
		}
	}
	n := float64(b.N * rounds * len(chain.blocks))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/block")
	b.ReportMetric(float64(outputs)/float64(len(chain.blocks)), "outputs/block")
	b.ReportMetric(float64(inputs)/float64(len(chain.blocks)), "inputs/block")
	b.ReportMetric(float64(matched)/float64(len(chain.blocks)), "matches/block")
}

// BenchmarkRescan decodes and matches 1,000 serialized blocks, as a rescan
// from a node's raw blocks does: the 10 distinct full-size blocks of
// BenchmarkMatchBlock (about 1.5 MB each), each 100 times, so the input
// stays at about 15 MB instead of 1.5 GB. It reports blocks/s and the decode
// and match shares of the time.
func BenchmarkRescan(b *testing.B) {
	scripts, utxos := benchSets()
	chain := benchChain()
	const total = 1000
	var rawBytes int
	for i := range total {
		rawBytes += len(chain.raw[i%len(chain.raw)])
	}

	var decode, match time.Duration
	for b.Loop() {
		decode, match = 0, 0
		for i := range total {
			t0 := time.Now()
			var blk wire.MsgBlock
			if err := blk.Deserialize(bytes.NewReader(chain.raw[i%len(chain.raw)])); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			Match(&blk, scripts, utxos)
			match += time.Since(t1)
			decode += t1.Sub(t0)
		}
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(total/sec, "blocks/s")
	b.ReportMetric(float64(rawBytes)/sec/1e6, "MB/s")
	b.ReportMetric(float64(decode.Nanoseconds())/total, "decode-ns/block")
	b.ReportMetric(float64(match.Nanoseconds())/total, "match-ns/block")
}

// BenchmarkContains is the cost of one lookup of a missing script (the
// common case) in the 10M set, SHA-256 included.
func BenchmarkContains(b *testing.B) {
	scripts, _ := benchSets()
	const n = 1_000_000
	var buf []byte
	hits := 0
	for b.Loop() {
		for i := range uint64(n) {
			buf = watchedScript(buf[:0], benchScripts+i)
			if scripts.Contains(buf) {
				hits++
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/lookup")
	b.ReportMetric(float64(hits), "false-positives")
}
