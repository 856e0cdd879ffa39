package watchset

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestScriptSetConcurrentReaders: while one goroutine adds scripts to a set
// that starts empty (so the table is replaced many times), readers never
// miss a script whose Add has returned, and Len never runs behind it. Run
// with -race.
func TestScriptSetConcurrentReaders(t *testing.T) {
	const n = 30_000
	s := new(ScriptSet)
	var added atomic.Uint64 // scripts [0, added) have been added
	var wg sync.WaitGroup
	for reader := range 3 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(reader), 0))
			var buf []byte
			for {
				k := added.Load()
				if k == n {
					return
				}
				if k == 0 {
					continue
				}
				j := r.Uint64N(k)
				buf = watchedScript(buf[:0], j)
				if !s.Contains(buf) {
					t.Errorf("Contains(script %d) = false after its Add returned (%d added)", j, k)
					return
				}
				if got := s.Len(); uint64(got) < k {
					t.Errorf("Len() = %d after %d adds returned", got, k)
					return
				}
			}
		})
	}
	// A second writer adds the same scripts, so the mutex is contended too.
	wg.Go(func() {
		for i := uint64(0); i < n; i += 3 {
			s.Add(watchedScript(nil, i))
		}
	})
	for i := range uint64(n) {
		s.Add(watchedScript(nil, i))
		added.Store(i + 1)
	}
	wg.Wait()
	if s.Len() != n {
		t.Errorf("Len() = %d, want %d", s.Len(), n)
	}
}

// TestMatchConcurrentWithWriters: Match runs while the state machine's
// goroutine adds scripts and adds and removes outpoints. Only data races (run
// with -race) and the invariants of each result are checked: what a block
// matches depends on how far the writers have got.
func TestMatchConcurrentWithWriters(t *testing.T) {
	const watched, utxos = 2000, 2000
	sb := genBlock(synthParams{seed: 9, txs: 200, watched: watched, utxos: utxos, payRate: 0.2, spendRate: 0.2, chainRate: 0.2})
	scripts, outpoints := new(ScriptSet), new(OutpointSet)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range uint64(watched) {
			scripts.Add(watchedScript(nil, i))
			outpoints.Add(utxoOutpoint(i))
			if i%3 == 0 {
				outpoints.Remove(utxoOutpoint(i / 2))
			}
		}
	})
	for reader := range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				m := Match(sb.block, scripts, outpoints)
				gotOut, gotSpend := matchRefs(m)
				for ref := range gotOut {
					if !sb.wantOutputs[ref] {
						t.Errorf("reader %d: unexpected output %v", reader, ref)
						return
					}
				}
				for ref := range gotSpend {
					if !sb.wantSpends[ref] {
						t.Errorf("reader %d: unexpected spend %v", reader, ref)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestOutpointSetConcurrent: adds, removes and lookups from several
// goroutines. Run with -race.
func TestOutpointSetConcurrent(t *testing.T) {
	s := new(OutpointSet)
	var wg sync.WaitGroup
	for w := range uint64(4) {
		wg.Go(func() {
			for j := range uint64(2000) {
				op := utxoOutpoint(w<<32 | j)
				if !s.Add(op) {
					t.Errorf("Add(%v) = false for a fresh outpoint", op)
				}
				if !s.Contains(op) {
					t.Errorf("Contains(%v) = false after Add", op)
				}
				if j%2 == 0 && !s.Remove(op) {
					t.Errorf("Remove(%v) = false after Add", op)
				}
				_ = s.Len()
			}
		})
	}
	wg.Wait()
	if got := s.Len(); got != 4*1000 {
		t.Errorf("Len() = %d, want %d", got, 4*1000)
	}
}
