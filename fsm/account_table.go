package fsm

import (
	"hash/maphash"
	"unsafe"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// accountTable holds the resident accounts (accounts_resident.go) in memory that holds no
// pointers, so that the garbage collector has nothing in it to scan: records in fixed-size
// chunks, ids and currencies in append-only text chunks, and an index from a hash of the id to
// the record (slots). With the accounts as Go objects (a map of strings to records), every
// collection marked two or three objects per account: at four million accounts each mark
// phase took 3-6 s of CPU, much of it in assists taken from the apply path (docs/HOT_PATH.md,
// fourth round).
//
// Accounts are never deleted, and an account's id never changes, so records and text are only
// appended; put overwrites a record in place. Only the apply path uses the table, one batch at
// a time (FSM.mu held), like the rest of the resident state.
type accountTable struct {
	seed maphash.Seed
	hash func(seed maphash.Seed, id string) uint64 // maphash.String; tests substitute one that collides
	// slots is the index: open addressing with linear probing over a power-of-two array, at
	// most three quarters full. A slot is 0 (empty) or an id's fingerprint, the high 32 bits of
	// its hash, above the record number plus one. The fingerprint also picks the slot a probe
	// starts at, so growing moves slots without hashing ids again; ids with equal fingerprints
	// share a probe run and are told apart by their bytes. Eight bytes a slot, 11-21 per
	// account, where a Go map of the hashes took 30-55.
	slots   []uint64
	records [][]accountRecord
	count   int
	text    [][]byte
	// metadata holds the metadata maps of the few records that have one; they are shared with
	// the records they came from and never changed.
	metadata map[uint32]map[string]string
}

// accountRecord is a residentAccount without pointers.
type accountRecord struct {
	id, currency textRef
	accountFields
}

// textRef locates a string in the table's text chunks.
type textRef struct{ chunk, off, n uint32 }

const (
	accountRecordChunk = 4096      // records per chunk
	textChunk          = 1 << 20   // bytes per text chunk
	maxAccounts        = 1<<32 - 2 // a slot holds a record number plus one in 32 bits
	minAccountSlots    = 1024
)

func newAccountTable() *accountTable {
	return &accountTable{
		seed:     maphash.MakeSeed(),
		hash:     maphash.String,
		slots:    make([]uint64, minAccountSlots),
		metadata: make(map[uint32]map[string]string),
	}
}

func (t *accountTable) len() int { return t.count }

// find returns the number of the record of id.
func (t *accountTable) find(id string) (uint32, bool) {
	return t.findHashed(id, t.hash(t.seed, id))
}

// findHashed is find for an id whose hash h the caller has.
func (t *accountTable) findHashed(id string, h uint64) (uint32, bool) {
	fp := h >> 32
	mask := len(t.slots) - 1
	i := homeSlot(fp, len(t.slots))
	for range len(t.slots) { // the index is never full: a probe meets an empty slot
		s := t.slots[i]
		if s == 0 {
			return 0, false
		}
		if s>>32 == fp {
			if n := uint32(s) - 1; t.str(t.record(n).id) == id {
				return n, true
			}
		}
		i = (i + 1) & mask
	}
	return 0, false
}

// homeSlot is where the probes for fingerprint fp start among n slots: fp scaled to n by a
// multiplication rather than a division.
func homeSlot(fp uint64, n int) int { return int(fp * uint64(n) >> 32) }

// index adds record n, whose id has hash h, to the index, growing it first when it would be
// more than three quarters full. Growing reinserts every slot into an array twice the size
// from its fingerprint alone, in one step, once per doubling of the accounts: 73 ms on this
// project's machine when the three millionth account doubles it to 8M slots, twice that at six
// million.
func (t *accountTable) index(h uint64, n uint32) {
	if 4*(t.count+1) > 3*len(t.slots) {
		old := t.slots
		t.slots = make([]uint64, 2*len(old))
		for _, s := range old {
			if s != 0 {
				t.insertSlot(s)
			}
		}
	}
	t.insertSlot(h>>32<<32 | uint64(n+1))
}

// insertSlot puts slot s into the first empty slot from its home on.
func (t *accountTable) insertSlot(s uint64) {
	mask := len(t.slots) - 1
	i := homeSlot(s>>32, len(t.slots))
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

func (t *accountTable) record(n uint32) *accountRecord {
	return &t.records[n/accountRecordChunk][n%accountRecordChunk]
}

// copyTo writes account id into c and returns it as residentAccount.copyTo does.
func (t *accountTable) copyTo(id string, c *accountAndBalance) (*bankdv1.Account, bool) {
	n, ok := t.find(id)
	if !ok {
		return nil, false
	}
	r := t.record(n)
	var metadata map[string]string
	if len(t.metadata) > 0 {
		metadata = t.metadata[n]
	}
	return r.accountFields.copyTo(c, t.str(r.id), t.str(r.currency), metadata), true
}

// put stores acc as its account's record, replacing the one it had.
func (t *accountTable) put(acc *residentAccount) {
	h := t.hash(t.seed, acc.id)
	n, ok := t.findHashed(acc.id, h)
	if !ok {
		if t.count == maxAccounts {
			panic("fsm: more than 2^32-2 resident accounts")
		}
		n = uint32(t.count)
		if n%accountRecordChunk == 0 {
			t.records = append(t.records, make([]accountRecord, accountRecordChunk))
		}
		t.index(h, n)
		t.count++
		t.record(n).id = t.addText(acc.id)
	}
	r := t.record(n)
	if !ok || t.str(r.currency) != acc.currency {
		r.currency = t.addText(acc.currency)
	}
	r.accountFields = acc.accountFields
	if acc.metadata != nil {
		t.metadata[n] = acc.metadata
	} else {
		delete(t.metadata, n)
	}
}

// addText appends s to the text chunks.
func (t *accountTable) addText(s string) textRef {
	last := len(t.text) - 1
	if last < 0 || cap(t.text[last])-len(t.text[last]) < len(s) {
		t.text = append(t.text, make([]byte, 0, max(textChunk, len(s))))
		last++
	}
	off := len(t.text[last])
	t.text[last] = append(t.text[last], s...)
	return textRef{chunk: uint32(last), off: uint32(off), n: uint32(len(s))}
}

// str returns the string at ref. It shares the chunk's bytes, which are never changed once
// appended, so it is as immutable as any Go string.
func (t *accountTable) str(ref textRef) string {
	if ref.n == 0 {
		return ""
	}
	return unsafe.String(&t.text[ref.chunk][ref.off], ref.n)
}
