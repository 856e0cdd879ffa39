package watchset

import (
	"testing"

	"github.com/btcsuite/btcd/wire"
)

func TestOutpointSet(t *testing.T) {
	a, b := utxoOutpoint(1), utxoOutpoint(2)
	aOther := a
	aOther.Index++ // same txid, another output

	type step struct {
		op   string // "add", "remove"
		arg  wire.OutPoint
		want bool // the call's result
	}
	tests := []struct {
		name    string
		set     func() *OutpointSet
		steps   []step
		in      []wire.OutPoint
		notIn   []wire.OutPoint
		wantLen int
	}{
		{
			name:  "an empty set contains nothing",
			set:   func() *OutpointSet { return new(OutpointSet) },
			notIn: []wire.OutPoint{a, b, {}},
		},
		{
			name:    "an added outpoint is a member",
			set:     func() *OutpointSet { return NewOutpointSet(10) },
			steps:   []step{{"add", a, true}},
			in:      []wire.OutPoint{a},
			notIn:   []wire.OutPoint{b, aOther},
			wantLen: 1,
		},
		{
			name:    "a zero-value set accepts adds",
			set:     func() *OutpointSet { return new(OutpointSet) },
			steps:   []step{{"add", a, true}, {"add", b, true}},
			in:      []wire.OutPoint{a, b},
			wantLen: 2,
		},
		{
			name:    "adding twice keeps one member",
			set:     func() *OutpointSet { return new(OutpointSet) },
			steps:   []step{{"add", a, true}, {"add", a, false}},
			in:      []wire.OutPoint{a},
			wantLen: 1,
		},
		{
			name:    "outputs of one transaction are distinct members",
			set:     func() *OutpointSet { return new(OutpointSet) },
			steps:   []step{{"add", a, true}, {"add", aOther, true}, {"remove", a, true}},
			in:      []wire.OutPoint{aOther},
			notIn:   []wire.OutPoint{a},
			wantLen: 1,
		},
		{
			name:    "a removed outpoint is no longer a member",
			set:     func() *OutpointSet { return new(OutpointSet) },
			steps:   []step{{"add", a, true}, {"add", b, true}, {"remove", a, true}},
			in:      []wire.OutPoint{b},
			notIn:   []wire.OutPoint{a},
			wantLen: 1,
		},
		{
			name:  "removing an absent outpoint does nothing",
			set:   func() *OutpointSet { return new(OutpointSet) },
			steps: []step{{"remove", a, false}, {"add", a, true}, {"remove", a, true}, {"remove", a, false}},
			notIn: []wire.OutPoint{a},
		},
		{
			name:    "a removed outpoint can be added again",
			set:     func() *OutpointSet { return new(OutpointSet) },
			steps:   []step{{"add", a, true}, {"remove", a, true}, {"add", a, true}},
			in:      []wire.OutPoint{a},
			wantLen: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.set()
			for _, st := range tt.steps {
				var got bool
				switch st.op {
				case "add":
					got = s.Add(st.arg)
				case "remove":
					got = s.Remove(st.arg)
				}
				if got != st.want {
					t.Errorf("%s(%v) = %v, want %v", st.op, st.arg, got, st.want)
				}
			}
			for _, op := range tt.in {
				if !s.Contains(op) {
					t.Errorf("Contains(%v) = false, want true", op)
				}
			}
			for _, op := range tt.notIn {
				if s.Contains(op) {
					t.Errorf("Contains(%v) = true, want false", op)
				}
			}
			if got := s.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestOutpointSetMany(t *testing.T) {
	s := NewOutpointSet(0)
	const n = 10_000
	for j := range uint64(n) {
		s.Add(utxoOutpoint(j))
	}
	for j := uint64(0); j < n; j += 2 {
		s.Remove(utxoOutpoint(j))
	}
	for j := range uint64(n) {
		if got, want := s.Contains(utxoOutpoint(j)), j%2 == 1; got != want {
			t.Fatalf("Contains(utxo %d) = %v, want %v", j, got, want)
		}
	}
	if got := s.Len(); got != n/2 {
		t.Errorf("Len() = %d, want %d", got, n/2)
	}
}
