package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// txn buffers the writes of one command (or one linked chain inside a command) so that a
// refused command leaves nothing behind. Reads see the txn's own writes, then its parents',
// then the Pebble batch. A child txn either commits, handing its writes to its parent, or rolls
// back, dropping them; until it does, its parent must not be used. The root's commit writes
// everything into the Pebble batch, in key order.
//
// The txns of one command share a writeLog, an undo log, rather than a map each: a command of
// 8,000 transfers opens a child per chain and writes three to four keys in each, and copying
// every child's map into its parent cost more than applying the transfers.
type txn struct {
	log      *writeLog
	batch    *pebble.Batch
	resident *residentState
	depth    int // 0 for the root
	mark     int // len(log.entries) when this txn began: the entries from there on are its own
	closed   bool
}

// writeLog holds the buffered writes of one command's txns in the order they were made. Each
// open txn has at most one entry per key; an entry points (prev) at the outer txn's entry it
// hides, which a rollback brings back.
type writeLog struct {
	entries []logEntry
	// latest and latestAccount index the newest entry of each store key and of each account.
	latest        map[string]int
	latestAccount map[string]int
	// marks holds the mark of each open txn, the root's first: the innermost is the last.
	marks []int
	// order is the root's entries in key order, while it writes them into the batch. It holds
	// each entry's key beside its position, so that sorting compares keys without loading the
	// entries.
	order []orderedKey
	// group holds the entries of one history group while writeBatch joins them.
	group []*logEntry
	// values is where the commands' values and keys are encoded (valueBuf, taggedKey).
	values byteArena
}

// logEntry is one buffered write: a value (or a deletion) for a store key, or an account's new
// record, which is marshalled only when the root commits.
type logEntry struct {
	key     string // the store key; for an account, accountKey(id)
	value   []byte
	deleted bool
	account *bankdv1.Account
	prev    int // the entry this one hides, or -1
	// unindexed marks a key the command writes once and never reads back (setUnique): it is
	// in no index, and only scan and the batch see it.
	unindexed bool
	// grouped marks a grouped history entry (addHistory): writeBatch joins it with the
	// entries of the same account and command that follow it in key order.
	grouped bool
}

func newWriteLog() *writeLog {
	return &writeLog{latest: make(map[string]int), latestAccount: make(map[string]int)}
}

// newRootTxn starts a command's txn. log is emptied and reused (the previous command's, so that
// its memory is kept); nil makes a new one.
func newRootTxn(b *pebble.Batch, resident *residentState, log *writeLog) *txn {
	if log == nil {
		log = newWriteLog()
	}
	if len(log.entries) >= clearIndexesAbove {
		clear(log.latest)
		clear(log.latestAccount)
	} else {
		for i := range log.entries {
			log.unindex(&log.entries[i])
		}
	}
	clear(log.entries)
	log.entries, log.marks = log.entries[:0], append(log.marks[:0], 0)
	t := resident.txns.new()
	t.log, t.batch, t.resident = log, b, resident
	return t
}

// clearIndexesAbove is the number of a command's writes above which the next command empties
// the log's indexes with clear, whose cost is their capacity, rather than by a delete per
// write: a command of one transfer after one of thousands would otherwise pay for the
// thousands.
const clearIndexesAbove = 1024

// valueBuf returns an empty buffer with room for n bytes for a value t is about to write. The
// buffers of many values share one allocation; appending past n moves the value to a buffer of
// its own rather than into the next one.
func (t *txn) valueBuf(n int) []byte { return t.log.values.buf(n) }

// taggedKey returns the store key tag+s (keys.go) as a string carved from the same chunks as
// the values: the keys a transfer writes cost no allocation of their own. The bytes are never
// written again, so the string may outlive the command.
func (t *txn) taggedKey(tag byte, s string) string {
	k := append(t.log.values.buf(1+len(s)), tag)
	return arenaString(append(k, s...))
}

// historyKey returns the key of a history entry under tag (history.go) as a string, like
// taggedKey.
func (t *txn) historyKey(tag byte, id string, index uint64, seq uint32) string {
	k := appendHistoryKey(t.log.values.buf(historyKeyLen(id)), tag, id, index, seq)
	return arenaString(k)
}

// arenaString returns b as a string without a copy. b must be a byteArena buffer its caller
// has finished writing: arena bytes are never written again.
func arenaString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// byteArena carves buffers out of chunks. A chunk is never reused: when it is full the next
// buffer comes from a new one, and the old stays alive as long as a value in it is referenced.
type byteArena struct{ chunk []byte }

const byteArenaChunk = 32 << 10

func (a *byteArena) buf(n int) []byte {
	if cap(a.chunk)-len(a.chunk) < n {
		if n > byteArenaChunk/4 {
			return make([]byte, 0, n) // a large value gets its own
		}
		a.chunk = make([]byte, 0, byteArenaChunk)
	}
	start := len(a.chunk)
	a.chunk = a.chunk[:start+n]
	return a.chunk[start : start : start+n]
}

// child opens a txn inside t. t must not be used until the child commits or rolls back.
func (t *txn) child() *txn {
	t.mustBeInnermost()
	mark := len(t.log.entries)
	t.log.marks = append(t.log.marks, mark)
	c := t.resident.txns.new()
	c.log, c.batch, c.resident, c.depth, c.mark = t.log, t.batch, t.resident, t.depth+1, mark
	return c
}

// mustBeInnermost panics when t is used while a child of it is open, or after it closed: that
// would mix the child's writes into t's. It is a bug in a command's code, never in its input.
func (t *txn) mustBeInnermost() {
	if t.closed || len(t.log.marks)-1 != t.depth {
		panic(fmt.Sprintf("fsm: txn at depth %d used while the innermost open txn is at depth %d (closed: %v)",
			t.depth, len(t.log.marks)-1, t.closed))
	}
}

// get returns the value of key, or ok=false if it does not exist. Accounts are read with
// account, not here.
func (t *txn) get(key []byte) (value []byte, ok bool, err error) {
	t.mustBeInnermost()
	if i, found := t.log.latest[string(key)]; found {
		e := &t.log.entries[i]
		return e.value, !e.deleted, nil
	}
	v, closer, err := t.batch.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pebble get %q: %w", key, err)
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

func (t *txn) set(key, value []byte) { t.put(logEntry{key: string(key), value: value}) }

// setString is set for a key already held as a string, which the log keeps without a copy.
func (t *txn) setString(key string, value []byte) { t.put(logEntry{key: key, value: value}) }

// setUnique is setString for a key that no other write of the command has and that the command
// never reads back with get, such as a history entry's (its key holds the command's index and
// a sequence number the command advances): the write is buffered but not indexed, which saves
// two map operations of the four a key costs. scan still sees it.
func (t *txn) setUnique(key string, value []byte) {
	t.mustBeInnermost()
	t.log.entries = append(t.log.entries, logEntry{key: key, value: value, prev: -1, unindexed: true})
}

// addHistory buffers a history entry under key (history.go), like setUnique. Entries under
// tagHistoryGroup are joined per account into one store key when the root commits.
func (t *txn) addHistory(key string, value []byte) {
	t.mustBeInnermost()
	t.log.entries = append(t.log.entries, logEntry{key: key, value: value, prev: -1, unindexed: true,
		grouped: key[0] == tagHistoryGroup})
}

func (t *txn) delete(key []byte) { t.put(logEntry{key: string(key), deleted: true}) }

// putAccount records acc as the account's new record. acc must not be changed afterwards.
func (t *txn) putAccount(acc *bankdv1.Account) {
	t.put(logEntry{key: t.taggedKey(tagAccount, acc.Id), account: acc})
}

// account returns a copy of the account as this txn sees it (the writes of this txn and its
// parents, the batch's earlier commands, then the resident state), with a copy of its balance:
// the caller may change both, and write the account back with putAccount.
func (t *txn) account(id string) (*bankdv1.Account, bool) {
	t.mustBeInnermost()
	if i, found := t.log.latestAccount[id]; found {
		return copyAccountTo(t.resident.copies.new(), t.log.entries[i].account), true
	}
	return t.resident.account(id)
}

func (t *txn) put(e logEntry) {
	t.mustBeInnermost()
	l := t.log
	prev, found := l.indexOf(&e)
	if found && prev >= t.mark {
		// This txn wrote the key already, and nothing outside it has seen that entry.
		e.prev = l.entries[prev].prev
		l.entries[prev] = e
		return
	}
	e.prev = -1
	if found {
		e.prev = prev
	}
	l.entries = append(l.entries, e)
	l.index(&e, len(l.entries)-1)
}

// commit hands a child's writes to its parent, or writes the root's into the Pebble batch.
func (t *txn) commit() error {
	t.mustBeInnermost()
	t.closed = true
	l := t.log
	l.marks = l.marks[:t.depth]
	if t.depth == 0 {
		return t.writeBatch()
	}
	// The parent keeps one entry per key: a child's entry that hides one of the parent's own
	// replaces it in place; the others stay, as the parent's now.
	parentMark := l.marks[t.depth-1]
	kept := t.mark
	for i := t.mark; i < len(l.entries); i++ {
		e := l.entries[i]
		if e.prev >= parentMark {
			at := e.prev
			e.prev = l.entries[at].prev
			l.entries[at] = e
			l.index(&e, at)
			continue
		}
		l.entries[kept] = e
		l.index(&e, kept)
		kept++
	}
	clear(l.entries[kept:])
	l.entries = l.entries[:kept]
	return nil
}

// rollback drops a child's writes (and those of any child of it left open), bringing back
// what they hid.
func (t *txn) rollback() {
	l := t.log
	if t.closed || t.depth == 0 || len(l.marks)-1 < t.depth {
		panic(fmt.Sprintf("fsm: rollback of a txn at depth %d that is not open (innermost %d, closed: %v)",
			t.depth, len(l.marks)-1, t.closed))
	}
	for i := len(l.entries) - 1; i >= t.mark; i-- {
		e := &l.entries[i]
		if e.prev >= 0 {
			l.index(e, e.prev)
		} else {
			l.unindex(e)
		}
	}
	clear(l.entries[t.mark:])
	l.entries, l.marks = l.entries[:t.mark], l.marks[:t.depth]
	t.closed = true
}

// writeBatch writes the root's entries, one per key, into the Pebble batch in key order: Pebble
// inserts a batch into its memtable skiplist in the batch's order, starting each search where
// the last one ended, so keys in order make those searches short. Accounts are marshalled here
// and become visible to the batch's later commands.
func (t *txn) writeBatch() error {
	l := t.log
	l.order = l.order[:0]
	for i := range l.entries {
		l.order = append(l.order, orderedKey{key: l.entries[i].key, at: i})
	}
	slices.SortFunc(l.order, func(a, b orderedKey) int { return strings.Compare(a.key, b.key) })
	for k := 0; k < len(l.order); k++ {
		e := &l.entries[l.order[k].at]
		var err error
		switch {
		case e.grouped:
			group := append(l.group[:0], e)
			for k+1 < len(l.order) {
				next := &l.entries[l.order[k+1].at]
				if !next.grouped || historyGroupKeyPrefix(next.key) != historyGroupKeyPrefix(e.key) {
					break
				}
				group = append(group, next)
				k++
			}
			l.group = group
			v := groupHistory(l.values.buf(groupSize(group)), group)
			err = t.batch.Set(keyBytes(e.key), v, nil)
		case e.account != nil:
			var v []byte
			if v, err = appendAccount(make([]byte, 0, 128), e.account); err != nil {
				return fmt.Errorf("marshal account %q: %w", e.account.Id, err)
			}
			err = t.batch.Set(keyBytes(e.key), v, nil)
			t.resident.batch[e.account.Id] = t.resident.newRecord(e.account)
		case e.deleted:
			err = t.batch.Delete(keyBytes(e.key), nil)
		default:
			err = t.batch.Set(keyBytes(e.key), e.value, nil)
		}
		if err != nil {
			return fmt.Errorf("pebble batch write %q: %w", e.key, err)
		}
	}
	return nil
}

// orderedKey is a log entry's key and its position in the log, for writeBatch's sort.
type orderedKey struct {
	key string
	at  int
}

// keyBytes returns a log key's bytes without a copy, for the Pebble batch, which copies them
// and never writes them.
func keyBytes(key string) []byte { return unsafe.Slice(unsafe.StringData(key), len(key)) }

func (l *writeLog) indexOf(e *logEntry) (int, bool) {
	if e.account != nil {
		i, ok := l.latestAccount[e.account.Id]
		return i, ok
	}
	i, ok := l.latest[e.key]
	return i, ok
}

func (l *writeLog) index(e *logEntry, at int) {
	switch {
	case e.unindexed: // in no index
	case e.account != nil:
		l.latestAccount[e.account.Id] = at
	default:
		l.latest[e.key] = at
	}
}

func (l *writeLog) unindex(e *logEntry) {
	switch {
	case e.unindexed: // in no index
	case e.account != nil:
		delete(l.latestAccount, e.account.Id)
	default:
		delete(l.latest, e.key)
	}
}

// scan calls fn, in key order, for every key in [lower, upper) as this txn sees it: the Pebble
// batch overlaid with the writes of this txn and its parents. Buffered accounts are not
// included (no command scans accounts). It costs one pass over the buffered writes, so commands
// call it a bounded number of times.
func (t *txn) scan(lower, upper []byte, fn func(key, value []byte) (bool, error)) error {
	t.mustBeInnermost()
	merged := map[string]logEntry{}
	iter, err := t.batch.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("iterate from %q: %w", lower, err)
	}
	for ok := iter.First(); ok; ok = iter.Next() {
		merged[string(iter.Key())] = logEntry{value: append([]byte(nil), iter.Value()...)}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("iterate from %q: %w", lower, err)
	}
	lo, hi := string(lower), string(upper)
	for _, e := range t.log.entries { // outermost first, so inner writes win
		if e.account == nil && e.key >= lo && e.key < hi {
			merged[e.key] = e
		}
	}
	keys := make([]string, 0, len(merged))
	for k, e := range merged {
		if !e.deleted {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		more, err := fn([]byte(k), merged[k].value)
		if err != nil || !more {
			return err
		}
	}
	return nil
}
