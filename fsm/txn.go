package fsm

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// txn buffers the writes of one command (or one linked chain inside a command) so that a
// refused command leaves nothing behind. Reads see the txn's own writes, then its parent's,
// then the Pebble batch. commit hands the writes to the parent; dropping a txn discards them.
type txn struct {
	parent *txn
	batch  *pebble.Batch
	writes map[string]pendingWrite
	order  []string // first-write order, so commit is independent of map iteration
	// Accounts are buffered as records, not bytes (accounts_resident.go).
	resident     *residentState
	accounts     map[string]*bankdv1.Account
	accountOrder []string
}

type pendingWrite struct {
	value   []byte
	deleted bool
}

func newRootTxn(b *pebble.Batch, resident *residentState) *txn {
	return &txn{batch: b, writes: make(map[string]pendingWrite), resident: resident}
}

func (t *txn) child() *txn {
	return &txn{parent: t, batch: t.batch, writes: make(map[string]pendingWrite), resident: t.resident}
}

// get returns the value of key, or ok=false if it does not exist. Accounts are read with
// account, not here.
func (t *txn) get(key []byte) (value []byte, ok bool, err error) {
	for cur := t; cur != nil; cur = cur.parent {
		if w, found := cur.writes[string(key)]; found {
			return w.value, !w.deleted, nil
		}
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

func (t *txn) set(key, value []byte) { t.put(string(key), pendingWrite{value: value}) }

func (t *txn) delete(key []byte) { t.put(string(key), pendingWrite{deleted: true}) }

func (t *txn) put(key string, w pendingWrite) {
	if _, seen := t.writes[key]; !seen {
		t.order = append(t.order, key)
	}
	t.writes[key] = w
}

// commit moves the writes into the parent txn, or into the Pebble batch for the root.
func (t *txn) commit() error {
	if err := t.commitAccounts(); err != nil {
		return err
	}
	for _, k := range t.order {
		w := t.writes[k]
		if t.parent != nil {
			t.parent.put(k, w)
			continue
		}
		var err error
		if w.deleted {
			err = t.batch.Delete([]byte(k), nil)
		} else {
			err = t.batch.Set([]byte(k), w.value, nil)
		}
		if err != nil {
			return fmt.Errorf("pebble batch write %q: %w", k, err)
		}
	}
	t.writes, t.order = nil, nil
	return nil
}

// scan calls fn, in key order, for every key in [lower, upper) as this txn sees it: the Pebble
// batch overlaid with the writes of this txn and its parents. It costs one pass over the
// buffered writes, so commands call it a bounded number of times.
func (t *txn) scan(lower, upper []byte, fn func(key, value []byte) (bool, error)) error {
	merged := map[string]pendingWrite{}
	iter, err := t.batch.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("iterate from %q: %w", lower, err)
	}
	for ok := iter.First(); ok; ok = iter.Next() {
		merged[string(iter.Key())] = pendingWrite{value: append([]byte(nil), iter.Value()...)}
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("iterate from %q: %w", lower, err)
	}
	var levels []*txn
	for cur := t; cur != nil; cur = cur.parent {
		levels = append(levels, cur)
	}
	lo, hi := string(lower), string(upper)
	for i := len(levels) - 1; i >= 0; i-- { // outermost first, so inner writes win
		for k, w := range levels[i].writes {
			if k >= lo && k < hi {
				merged[k] = w
			}
		}
	}
	keys := make([]string, 0, len(merged))
	for k, w := range merged {
		if !w.deleted {
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
