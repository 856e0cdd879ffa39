package fsm

import (
	"fmt"
	"hash/maphash"

	"github.com/cockroachdb/pebble/v2"
)

// Every new transfer is first looked up by id, to tell a retry from a new transfer, and nearly
// every lookup misses. A miss in Pebble searches the memtables and a table per level (about
// 3 µs with the filter and index blocks cached). transferFilter answers most misses from memory:
// a Bloom filter of every transfer id in the store, built when the store is opened or restored
// and added to by storeTransfer. "No" is certain and skips the lookup; "maybe" (every stored
// id, and about one new id in a thousand) does the lookup, whose answer is the truth. The filter
// is local to the replica and only decides whether to read: it cannot make replicas differ.
//
// An id stays in the filter when retention deletes its transfer or its command is refused:
// that only costs a lookup.

// The filter is blocked: an id's probes all fall in one block of 512 bits, one cache line, so
// an add or a lookup costs one cache miss where probes spread over the whole filter cost one
// each (at millions of ids, the filter is far larger than the CPU's caches). A block is chosen
// by the id's hash and the probes inside it by a sequence drawn from the same hash.
//
// Filter sizing: 16 bits and 8 probes per id give about 0.09% false positives per segment
// (blocking costs a little against an unblocked filter of the same size: 14 bits and 10 probes
// gave about 0.1% before; the extra bits win it back). A full segment is followed by one twice
// its size, so memory stays under 2 × 16 bits per id and the false-positive rate under 0.1% ×
// the number of segments (a few).
const (
	filterBitsPerID    = 16
	filterProbes       = 8
	filterFirstSegment = 1 << 20 // ids
	filterBlockWords   = 8       // 512 bits, a 64-byte cache line
)

type transferFilter struct {
	seed     maphash.Seed
	segments []*filterSegment
}

type filterSegment struct {
	bits     []uint64 // blocks of filterBlockWords words
	ids      int
	capacity int
}

func newTransferFilter(expected int) *transferFilter {
	f := &transferFilter{seed: maphash.MakeSeed()}
	f.grow(max(filterFirstSegment, expected))
	return f
}

func (f *transferFilter) grow(capacity int) {
	blocks := (capacity*filterBitsPerID + 511) / 512
	f.segments = append(f.segments, &filterSegment{bits: make([]uint64, blocks*filterBlockWords), capacity: capacity})
}

// hash returns id's 64-bit hash: its high half picks the block, and the probes inside the
// block come from the whole of it (filterProbe).
func (f *transferFilter) hash(id string) uint64 { return maphash.String(f.seed, id) }

// block returns the words of the block that h selects in s, mapping h's high half onto the
// blocks by multiplication rather than a division.
func (s *filterSegment) block(h uint64) []uint64 {
	blocks := uint64(len(s.bits) / filterBlockWords)
	i := int((h>>32)*blocks>>32) * filterBlockWords
	return s.bits[i : i+filterBlockWords : i+filterBlockWords]
}

// filterProbe advances a probe state (which starts as the id's hash) and returns the next
// probe's word and mask in the block: the top nine bits of the state multiplied by an odd
// constant (2^64 / the golden ratio). Double hashing inside a block this small repeats probe
// patterns, which measured four times the false positives of independent probes.
func filterProbe(state *uint64) (word int, mask uint64) {
	*state *= 0x9e3779b97f4a7c15
	bit := *state >> 55
	return int(bit / 64), 1 << (bit % 64)
}

func (f *transferFilter) add(id string) {
	s := f.segments[len(f.segments)-1]
	if s.ids >= s.capacity {
		f.grow(2 * s.capacity)
		s = f.segments[len(f.segments)-1]
	}
	h := f.hash(id)
	block, state := s.block(h), h
	for range filterProbes {
		w, m := filterProbe(&state)
		block[w] |= m
	}
	s.ids++
}

// mayContain reports false only for an id that was never added.
func (f *transferFilter) mayContain(id string) bool {
	h := f.hash(id)
	for _, s := range f.segments {
		block, state := s.block(h), h
		found := true
		for range filterProbes {
			if w, m := filterProbe(&state); block[w]&m == 0 {
				found = false
				break
			}
		}
		if found {
			return true
		}
	}
	return false
}

// ids returns how many ids were added.
func (f *transferFilter) ids() int {
	n := 0
	for _, s := range f.segments {
		n += s.ids
	}
	return n
}

// bytes is the filter's memory.
func (f *transferFilter) bytes() int {
	n := 0
	for _, s := range f.segments {
		n += len(s.bits) * 8
	}
	return n
}

// loadTransferFilter adds every transfer id of the store to a new filter.
func loadTransferFilter(r pebble.Reader) (*transferFilter, error) {
	f := newTransferFilter(0)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{tagTransfer}, UpperBound: []byte{tagTransfer + 1}})
	if err != nil {
		return nil, fmt.Errorf("iterate transfers: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		f.add(string(it.Key()[1:]))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("iterate transfers: %w", err)
	}
	return f, nil
}
