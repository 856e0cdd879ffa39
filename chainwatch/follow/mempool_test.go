package follow

import (
	"slices"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

func set(hs ...chainhash.Hash) map[chainhash.Hash]struct{} {
	m := map[chainhash.Hash]struct{}{}
	for _, h := range hs {
		m[h] = struct{}{}
	}
	return m
}

func TestMempoolDiff(t *testing.T) {
	h := func(b byte) chainhash.Hash { return chainhash.Hash{b} }
	tests := []struct {
		name               string
		prev, cur          map[chainhash.Hash]struct{}
		wantAdded, wantRem []chainhash.Hash
	}{
		{"both empty", nil, nil, nil, nil},
		{"first snapshot", nil, set(h(3), h(1), h(2)), []chainhash.Hash{h(1), h(2), h(3)}, nil},
		{"all gone (mined)", set(h(2), h(1)), set(), nil, []chainhash.Hash{h(1), h(2)}},
		{"unchanged", set(h(1), h(2)), set(h(2), h(1)), nil, nil},
		{"some in, some out", set(h(1), h(2), h(5)), set(h(2), h(9), h(4)), []chainhash.Hash{h(4), h(9)}, []chainhash.Hash{h(1), h(5)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 { // map order varies; the result must not
				added, removed := MempoolDiff(tc.prev, tc.cur)
				if !slices.Equal(added, tc.wantAdded) || !slices.Equal(removed, tc.wantRem) {
					t.Fatalf("MempoolDiff = %v, %v; want %v, %v", added, removed, tc.wantAdded, tc.wantRem)
				}
			}
		})
	}
}

func TestMempoolDiffSortsByBytes(t *testing.T) {
	// The order is that of the hashes' bytes, not of their usual
	// (byte-reversed) hex form: a's hex starts with "02", b's with "01".
	a := chainhash.Hash{31: 2}
	b := chainhash.Hash{0: 1, 31: 1}
	added, _ := MempoolDiff(nil, set(a, b))
	if !slices.Equal(added, []chainhash.Hash{a, b}) {
		t.Fatalf("added = %v", added)
	}
}
