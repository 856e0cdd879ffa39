package watchset

import (
	"sync"

	"github.com/btcsuite/btcd/wire"
)

// An OutpointSet is an exact set of transaction outputs, meant for the
// wallets' unspent outputs: Match reports every input that spends one.
//
// It is a Go map keyed by wire.OutPoint itself (a fixed-size, comparable
// 36-byte value: txid and output index), so there are no false positives or
// negatives. A Go map does not give memory back when members are removed; a
// set that has shrunk a lot can be rebuilt with NewOutpointSet.
//
// All methods may be called from any number of goroutines; an internal
// RWMutex lets lookups run in parallel with each other but not with Add or
// Remove.
//
// The zero value is an empty set ready to use.
type OutpointSet struct {
	mu sync.RWMutex
	m  map[wire.OutPoint]struct{}
}

// NewOutpointSet returns an empty set with room for sizeHint outpoints.
func NewOutpointSet(sizeHint int) *OutpointSet {
	return &OutpointSet{m: make(map[wire.OutPoint]struct{}, max(sizeHint, 0))}
}

// Add adds op and reports whether it was new.
func (s *OutpointSet) Add(op wire.OutPoint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[op]; ok {
		return false
	}
	if s.m == nil {
		s.m = make(map[wire.OutPoint]struct{})
	}
	s.m[op] = struct{}{}
	return true
}

// Remove removes op and reports whether it was present.
func (s *OutpointSet) Remove(op wire.OutPoint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[op]; !ok {
		return false
	}
	delete(s.m, op)
	return true
}

// Contains reports whether op is in the set.
func (s *OutpointSet) Contains(op wire.OutPoint) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[op]
	return ok
}

// Len returns the number of outpoints in the set.
func (s *OutpointSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}
