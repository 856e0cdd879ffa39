package fsm

import (
	"bytes"
	"testing"
)

// TestByteArenaBuffersNeverOverlap fills buffers past the room they asked for, which must move
// the overflowing one rather than write into its neighbour, and across chunk boundaries.
func TestByteArenaBuffersNeverOverlap(t *testing.T) {
	var a byteArena
	var bufs [][]byte
	for i := range 3 * byteArenaChunk / 16 {
		b := a.buf(16)
		if len(b) != 0 || cap(b) != 16 {
			t.Fatalf("buf(16) = len %d cap %d", len(b), cap(b))
		}
		n := 16
		if i%3 == 0 {
			n = 40 // past its room
		}
		bufs = append(bufs, append(b, bytes.Repeat([]byte{byte(i)}, n)...))
	}
	for i, b := range bufs {
		if !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, len(b))) {
			t.Fatalf("buffer %d was overwritten: %v", i, b)
		}
	}
	if big := a.buf(byteArenaChunk); cap(big) != byteArenaChunk {
		t.Fatalf("a large buffer has cap %d", cap(big))
	}
}

// TestSlabHandsOutDistinctZeroValues takes more values than several chunks hold.
func TestSlabHandsOutDistinctZeroValues(t *testing.T) {
	var s slab[transferItem]
	seen := map[*transferItem]bool{}
	for i := range 3 * slabMaxChunk {
		p := s.new()
		if seen[p] {
			t.Fatalf("value %d handed out twice", i)
		}
		seen[p] = true
		if p.kind.Transfer != nil || p.item.Kind != nil {
			t.Fatalf("value %d is not zero", i)
		}
		p.kind.Transfer = xfer("t", "a", "b", 1)
	}
}
