package watchset

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// Fingerprint returns the 64-bit fingerprint of an output script: the first
// eight bytes of SHA-256(script), read big-endian. It is the same number as
// DigestFingerprint of the script's Pebble key digest, so a set can be built
// from the keys alone.
func Fingerprint(script []byte) uint64 {
	return DigestFingerprint(sha256.Sum256(script))
}

// DigestFingerprint returns the fingerprint of the script whose SHA-256 digest
// is digest: its first eight bytes, read big-endian.
func DigestFingerprint(digest [sha256.Size]byte) uint64 {
	return binary.BigEndian.Uint64(digest[:8])
}

// Table sizing: the slot count is a power of two, never below minSlots, and
// the table grows (doubles) before more than maxLoadNum/maxLoadDen of the
// slots are used.
const (
	minSlots   = 16
	maxLoadNum = 3
	maxLoadDen = 4
	// maxSizeHint keeps the slot arithmetic far away from overflow.
	maxSizeHint = 1 << 56
)

// A ScriptSet is a set of watched output scripts, stored as 64-bit
// fingerprints in an open-addressing hash table (linear probing, eight bytes
// a slot, at most three quarters full). See the package documentation for the
// false-positive contract.
//
// Scripts can be added but not removed: bankd never stops watching a script,
// and leaving removal out is what makes lock-free readers simple (a slot,
// once filled, never changes or empties again).
//
// Any number of goroutines may call Contains, ContainsFingerprint and Len
// concurrently with each other and with one or more writers (Add,
// AddFingerprint, Grow); writers are serialized by an internal mutex and
// readers never wait. A member whose Add returned before a Contains started
// is always found.
//
// The zero value is an empty set ready to use.
type ScriptSet struct {
	mu  sync.Mutex // serializes writers
	tab atomic.Pointer[table]
	n   atomic.Int64
}

// A table is one generation of the slot array. Writers fill empty slots in
// place; growing builds a new, larger table and publishes it with a single
// atomic pointer store, so readers holding the old table keep seeing a valid
// (if slightly older) set.
type table struct {
	slots []atomic.Uint64 // 0 is empty; see slotValue
	shift uint            // home slot of fp is fp >> shift
	limit int             // members the table may hold before it must grow
}

func newTable(slots int) *table {
	log2 := 0
	for 1<<log2 < slots {
		log2++
	}
	return &table{
		slots: make([]atomic.Uint64, slots),
		shift: uint(64 - log2),
		limit: slots / maxLoadDen * maxLoadNum,
	}
}

// slotsFor returns the slot count a table needs to hold n members.
func slotsFor(n int) int {
	if n < 0 || n > maxSizeHint {
		panic("watchset: size out of range")
	}
	slots := minSlots
	for slots/maxLoadDen*maxLoadNum < n {
		slots *= 2
	}
	return slots
}

// slotValue maps a fingerprint to the value stored in its slot. Zero marks an
// empty slot, so the fingerprint 0 is stored as 1: the two share a slot value
// and each is reported as a (false-positive) candidate for the other.
func slotValue(fp uint64) uint64 {
	if fp == 0 {
		return 1
	}
	return fp
}

// insert adds v (non-zero) and reports whether it was new. Only the writer
// holding ScriptSet.mu calls it, and the caller guarantees a free slot.
func (t *table) insert(v uint64) bool {
	mask := uint64(len(t.slots) - 1)
	// The home slot is taken from the high bits, so when the table doubles
	// a run of old slots maps to a run of new ones (see grow).
	for i := v >> t.shift; ; i = (i + 1) & mask {
		switch t.slots[i].Load() {
		case v:
			return false
		case 0:
			t.slots[i].Store(v)
			return true
		}
	}
}

// contains reports whether v (non-zero) is in the table. Because slots are
// never emptied, the probe sequence from v's home slot to v was full when v
// was inserted and is still full, so stopping at the first empty slot never
// misses a member.
func (t *table) contains(v uint64) bool {
	mask := uint64(len(t.slots) - 1)
	for i := v >> t.shift; ; i = (i + 1) & mask {
		switch t.slots[i].Load() {
		case v:
			return true
		case 0:
			return false
		}
	}
}

// NewScriptSet returns an empty set with room for sizeHint scripts before it
// has to grow. Building a set of known size (for example from the count of
// watched scripts in Pebble) this way avoids every intermediate table: for
// 10,000,000 scripts it allocates 2^24 slots (128 MiB) once. It panics if
// sizeHint is over 2^56.
func NewScriptSet(sizeHint int) *ScriptSet {
	s := new(ScriptSet)
	if sizeHint > 0 {
		s.tab.Store(newTable(slotsFor(sizeHint)))
	}
	return s
}

// Grow makes room for n more scripts, so that the next n additions do not
// resize the table. Like NewScriptSet, it panics on absurd sizes.
func (s *ScriptSet) Grow(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserve(int(s.n.Load()) + n)
}

// reserve makes the table able to hold total members. s.mu must be held.
func (s *ScriptSet) reserve(total int) {
	old := s.tab.Load()
	if old != nil && total <= old.limit {
		return
	}
	t := newTable(slotsFor(total))
	if old != nil {
		// Walking the old slots in order visits fingerprints in roughly
		// ascending order, which is also the new table's order: the copy
		// touches memory nearly sequentially.
		for i := range old.slots {
			if v := old.slots[i].Load(); v != 0 {
				t.insert(v)
			}
		}
	}
	s.tab.Store(t)
}

// Add adds script to the set and reports whether its fingerprint was new.
func (s *ScriptSet) Add(script []byte) bool {
	return s.AddFingerprint(Fingerprint(script))
}

// AddFingerprint adds the script whose fingerprint is fp (see Fingerprint and
// DigestFingerprint) and reports whether fp was new.
func (s *ScriptSet) AddFingerprint(fp uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int(s.n.Load())
	s.reserve(n + 1)
	if !s.tab.Load().insert(slotValue(fp)) {
		return false
	}
	s.n.Store(int64(n + 1))
	return true
}

// Contains reports whether script is a candidate member: true for every
// script that was added, and, with probability about Len()/2^64, for a
// script that was not. Callers confirm a hit against the authoritative
// record.
func (s *ScriptSet) Contains(script []byte) bool {
	return s.ContainsFingerprint(Fingerprint(script))
}

// ContainsFingerprint reports whether a script with fingerprint fp is a
// candidate member.
func (s *ScriptSet) ContainsFingerprint(fp uint64) bool {
	t := s.tab.Load()
	return t != nil && t.contains(slotValue(fp))
}

// Len returns the number of distinct fingerprints in the set.
func (s *ScriptSet) Len() int {
	return int(s.n.Load())
}
