package watchset

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestFingerprint(t *testing.T) {
	// SHA-256("") = e3b0c442 98fc1c14 9afbf4c8 ...
	if got, want := Fingerprint(nil), uint64(0xe3b0c44298fc1c14); got != want {
		t.Errorf("Fingerprint(nil) = %#x, want %#x", got, want)
	}
	script := watchedScript(nil, 7)
	if got, want := Fingerprint(script), DigestFingerprint(sha256.Sum256(script)); got != want {
		t.Errorf("Fingerprint(script) = %#x, DigestFingerprint(SHA-256(script)) = %#x; want equal", got, want)
	}
}

// scripts returns watchedScript(i) for i in [from, to).
func scripts(from, to uint64) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, watchedScript(nil, i))
	}
	return out
}

func TestScriptSet(t *testing.T) {
	tests := []struct {
		name      string
		set       func() *ScriptSet
		add       [][]byte // added in order
		addFP     []uint64 // then these fingerprints
		want      [][]byte // must be members
		wantFP    []uint64 // must be members
		notWant   [][]byte // must not be members
		notWantFP []uint64 // must not be members
		wantLen   int
	}{
		{
			name:    "an empty set contains nothing",
			set:     func() *ScriptSet { return new(ScriptSet) },
			notWant: scripts(0, 3),
			wantLen: 0,
		},
		{
			name:    "a pre-sized empty set contains nothing",
			set:     func() *ScriptSet { return NewScriptSet(1000) },
			notWant: scripts(0, 3),
			wantLen: 0,
		},
		{
			name:    "an added script is a member",
			set:     func() *ScriptSet { return new(ScriptSet) },
			add:     scripts(0, 1),
			want:    scripts(0, 1),
			notWant: scripts(1, 4),
			wantLen: 1,
		},
		{
			name:    "the empty script can be watched",
			set:     func() *ScriptSet { return new(ScriptSet) },
			add:     [][]byte{{}},
			want:    [][]byte{nil, {}},
			notWant: [][]byte{{0}},
			wantLen: 1,
		},
		{
			name:    "a script differing in one byte is not a member",
			set:     func() *ScriptSet { return new(ScriptSet) },
			add:     [][]byte{{0x00, 0x14, 1, 2, 3}},
			want:    [][]byte{{0x00, 0x14, 1, 2, 3}},
			notWant: [][]byte{{0x00, 0x14, 1, 2, 4}, {0x00, 0x14, 1, 2}, {0x00, 0x14, 1, 2, 3, 0}},
			wantLen: 1,
		},
		{
			name:    "adding a script twice keeps one member",
			set:     func() *ScriptSet { return new(ScriptSet) },
			add:     append(scripts(0, 5), scripts(0, 5)...),
			want:    scripts(0, 5),
			notWant: scripts(5, 10),
			wantLen: 5,
		},
		{
			name:    "many scripts in a pre-sized set are all members",
			set:     func() *ScriptSet { return NewScriptSet(5000) },
			add:     scripts(0, 5000),
			want:    scripts(0, 5000),
			notWant: scripts(5000, 10000),
			wantLen: 5000,
		},
		{
			name:    "growth past several resizes keeps every member",
			set:     func() *ScriptSet { return new(ScriptSet) },
			add:     scripts(0, 20000), // 16 slots to 32768: 11 resizes
			want:    scripts(0, 20000),
			notWant: scripts(20000, 40000),
			wantLen: 20000,
		},
		{
			name:    "an undersized set grows",
			set:     func() *ScriptSet { return NewScriptSet(10) },
			add:     scripts(0, 1000),
			want:    scripts(0, 1000),
			notWant: scripts(1000, 2000),
			wantLen: 1000,
		},
		{
			name:    "a fingerprint added directly matches its script",
			set:     func() *ScriptSet { return new(ScriptSet) },
			addFP:   []uint64{Fingerprint(watchedScript(nil, 1))},
			want:    scripts(1, 2),
			notWant: scripts(2, 3),
			wantLen: 1,
		},
		{
			name:    "fingerprint zero is a member once added",
			set:     func() *ScriptSet { return new(ScriptSet) },
			addFP:   []uint64{0},
			wantFP:  []uint64{0, 1}, // 1 shares 0's slot value: a documented false positive
			wantLen: 1,
		},
		{
			name:    "fingerprints zero and one count once",
			set:     func() *ScriptSet { return new(ScriptSet) },
			addFP:   []uint64{0, 1, 0},
			wantFP:  []uint64{0, 1},
			wantLen: 1,
		},
		{
			name:      "fingerprint zero is not a member of a set without it",
			set:       func() *ScriptSet { return NewScriptSet(10) },
			addFP:     []uint64{2, 1 << 63, ^uint64(0)},
			wantFP:    []uint64{2, 1 << 63, ^uint64(0)},
			notWantFP: []uint64{0, 1, 3},
			wantLen:   3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.set()
			for _, script := range tt.add {
				s.Add(script)
			}
			for _, fp := range tt.addFP {
				s.AddFingerprint(fp)
			}
			for _, script := range tt.want {
				if !s.Contains(script) {
					t.Errorf("Contains(%x) = false, want true", script)
				}
			}
			for _, fp := range tt.wantFP {
				if !s.ContainsFingerprint(fp) {
					t.Errorf("ContainsFingerprint(%#x) = false, want true", fp)
				}
			}
			for _, script := range tt.notWant {
				if s.Contains(script) {
					t.Errorf("Contains(%x) = true, want false", script)
				}
			}
			for _, fp := range tt.notWantFP {
				if s.ContainsFingerprint(fp) {
					t.Errorf("ContainsFingerprint(%#x) = true, want false", fp)
				}
			}
			if got := s.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestScriptSetAddReportsNew(t *testing.T) {
	s := new(ScriptSet)
	script := watchedScript(nil, 42)
	if !s.Add(script) {
		t.Error("first Add = false, want true")
	}
	if s.Add(bytes.Clone(script)) {
		t.Error("second Add of an equal script = true, want false")
	}
	if s.AddFingerprint(Fingerprint(script)) {
		t.Error("AddFingerprint of a member's fingerprint = true, want false")
	}
}

func TestScriptSetSizing(t *testing.T) {
	tests := []struct {
		name      string
		sizeHint  int
		add       int
		wantSlots int
	}{
		{"a hint of 10,000,000 allocates 2^24 slots", 10_000_000, 0, 1 << 24},
		{"a pre-sized set does not grow while filled to its hint", 1000, 1000, 2048},
		{"a set grows once it is three quarters full", 12, 13, 32},
		{"the smallest table has 16 slots", 1, 1, 16},
		{"a zero-value set allocates on first add", 0, 1, 16},
		{"a zero-value set stays unallocated", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScriptSet(tt.sizeHint)
			for i := range uint64(tt.add) {
				s.Add(watchedScript(nil, i))
			}
			got := 0
			if tab := s.tab.Load(); tab != nil {
				got = len(tab.slots)
			}
			if got != tt.wantSlots {
				t.Errorf("slots = %d, want %d", got, tt.wantSlots)
			}
		})
	}
}

func TestScriptSetGrow(t *testing.T) {
	s := new(ScriptSet)
	s.Add(watchedScript(nil, 0))
	s.Grow(999)
	before := s.tab.Load()
	for i := range uint64(1000) {
		s.Add(watchedScript(nil, i))
	}
	if s.tab.Load() != before {
		t.Error("adding the 999 scripts Grow made room for resized the table")
	}
	if got := s.Len(); got != 1000 {
		t.Errorf("Len() = %d, want 1000", got)
	}
}

// TestScriptSetAgainstMap checks a ScriptSet against a map[string]bool
// reference under random scripts of random lengths, duplicates included.
func TestScriptSetAgainstMap(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			randScript := func() []byte {
				b := make([]byte, r.IntN(80))
				for i := range b {
					b[i] = byte(r.Uint32())
				}
				return b
			}
			var s ScriptSet
			if seed%2 == 1 {
				s.Grow(r.IntN(3000))
			}
			ref := make(map[string]bool)
			var added [][]byte
			for range 3000 {
				switch x := r.IntN(10); {
				case x < 5: // add a new script
					b := randScript()
					if got, want := s.Add(b), !ref[string(b)]; got != want {
						t.Fatalf("Add(%x) = %v, want %v", b, got, want)
					}
					ref[string(b)] = true
					added = append(added, b)
				case x < 6 && len(added) > 0: // add one again
					b := added[r.IntN(len(added))]
					if s.Add(b) {
						t.Fatalf("Add(%x) of a member = true", b)
					}
				case x < 8 && len(added) > 0: // look up a member
					b := added[r.IntN(len(added))]
					if !s.Contains(b) {
						t.Fatalf("Contains(%x) = false for a member", b)
					}
				default: // look up a random script
					b := randScript()
					if got, want := s.Contains(b), ref[string(b)]; got != want {
						t.Fatalf("Contains(%x) = %v, want %v", b, got, want)
					}
				}
				if s.Len() != len(ref) {
					t.Fatalf("Len() = %d, want %d", s.Len(), len(ref))
				}
			}
			for b := range ref {
				if !s.Contains([]byte(b)) {
					t.Fatalf("Contains(%x) = false at the end", b)
				}
			}
		})
	}
}
