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

// Filter sizing: 14 bits and 10 probes per id give about 0.1% false positives per segment. A
// full segment is followed by one twice its size, so memory stays under 2 × 14 bits per id and
// the false-positive rate under 0.1% × the number of segments (a few).
const (
	filterBitsPerID    = 14
	filterProbes       = 10
	filterFirstSegment = 1 << 20 // ids
)

type transferFilter struct {
	seed     maphash.Seed
	segments []*filterSegment
}

type filterSegment struct {
	bits     []uint64
	ids      int
	capacity int
}

func newTransferFilter(expected int) *transferFilter {
	f := &transferFilter{seed: maphash.MakeSeed()}
	f.grow(max(filterFirstSegment, expected))
	return f
}

func (f *transferFilter) grow(capacity int) {
	words := (capacity*filterBitsPerID + 63) / 64
	f.segments = append(f.segments, &filterSegment{bits: make([]uint64, words), capacity: capacity})
}

// probes returns the two halves of id's hash; probe i is h1 + i*h2 (double hashing).
func (f *transferFilter) probes(id string) (h1, h2 uint32) {
	h := maphash.String(f.seed, id)
	return uint32(h), uint32(h>>32) | 1
}

func (f *transferFilter) add(id string) {
	s := f.segments[len(f.segments)-1]
	if s.ids >= s.capacity {
		f.grow(2 * s.capacity)
		s = f.segments[len(f.segments)-1]
	}
	h1, h2 := f.probes(id)
	m := uint32(len(s.bits) * 64)
	for i := uint32(0); i < filterProbes; i++ {
		bit := (h1 + i*h2) % m
		s.bits[bit/64] |= 1 << (bit % 64)
	}
	s.ids++
}

// mayContain reports false only for an id that was never added.
func (f *transferFilter) mayContain(id string) bool {
	h1, h2 := f.probes(id)
	for _, s := range f.segments {
		m := uint32(len(s.bits) * 64)
		found := true
		for i := uint32(0); i < filterProbes; i++ {
			bit := (h1 + i*h2) % m
			if s.bits[bit/64]&(1<<(bit%64)) == 0 {
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
