package fsm

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Reads see the store as of the last committed batch. They never block an apply for long: they
// share mu with it, and only Restore takes mu exclusively.

func (f *FSM) get(key []byte, m proto.Message) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return errors.New("state machine is closed")
	}
	v, closer, err := f.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read %q: %w", key, err)
	}
	defer closer.Close()
	if err := proto.Unmarshal(v, m); err != nil {
		return fmt.Errorf("corrupt record at %q: %w", key, err)
	}
	return nil
}

// scan calls fn for each key in [lower, upper) until fn returns false.
func (f *FSM) scan(lower, upper []byte, fn func(key, value []byte) (bool, error)) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return errors.New("state machine is closed")
	}
	iter, err := f.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("iterate from %q: %w", lower, err)
	}
	for ok := iter.First(); ok; ok = iter.Next() {
		more, err := fn(iter.Key(), iter.Value())
		if err != nil {
			iter.Close()
			return err
		}
		if !more {
			break
		}
	}
	return iter.Close()
}

// Account returns an account with its balance, or ErrNotFound.
func (f *FSM) Account(id string) (*bankdv1.Account, error) {
	acc := &bankdv1.Account{}
	if err := f.get(accountKey(id), acc); err != nil {
		return nil, fmt.Errorf("account %q: %w", id, err)
	}
	return acc, nil
}

func clampPageSize(n int) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	default:
		return n
	}
}

// readPage reads one page of the records under prefix, in key order. A page token is the hex of
// the last key's bytes after prefix (posLen of them), so a page resumes just after it. keep, when
// not nil, skips records (they do not count towards the page). what names the records in errors.
func readPage[T proto.Message](f *FSM, prefix []byte, posLen int, pageToken string, pageSize int,
	newRecord func() T, what string, keep func(T) bool) ([]T, string, error) {
	lower := prefix
	if pageToken != "" {
		pos, err := hex.DecodeString(pageToken)
		if err != nil || len(pos) != posLen {
			return nil, "", invalid("page_token: malformed")
		}
		lower = append(append(append([]byte(nil), prefix...), pos...), 0)
	}
	limit := clampPageSize(pageSize)
	var out []T
	var lastKey []byte
	more := false
	err := f.scan(lower, prefixEnd(prefix), func(k, v []byte) (bool, error) {
		rec := newRecord()
		if err := proto.Unmarshal(v, rec); err != nil {
			return false, fmt.Errorf("corrupt %s at %x: %w", what, k, err)
		}
		if keep != nil && !keep(rec) {
			return true, nil
		}
		if len(out) == limit {
			more = true
			return false, nil
		}
		out = append(out, rec)
		lastKey = append(lastKey[:0], k...)
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = hex.EncodeToString(lastKey[len(prefix):])
	}
	return out, next, nil
}

// ListAccounts returns accounts in id order after pageToken, and the token of the next page
// ("" on the last page).
func (f *FSM) ListAccounts(pageToken string, pageSize int) ([]*bankdv1.Account, string, error) {
	if pageToken != "" && !validID(pageToken) {
		return nil, "", invalid("page_token: malformed")
	}
	limit := clampPageSize(pageSize)
	lower := accountKey(pageToken)
	if pageToken != "" {
		lower = append(lower, 0) // first key after the token's id
	}
	var out []*bankdv1.Account
	more := false
	err := f.scan(lower, prefixEnd([]byte{tagAccount}), func(_, v []byte) (bool, error) {
		if len(out) == limit {
			more = true
			return false, nil
		}
		acc := &bankdv1.Account{}
		if err := proto.Unmarshal(v, acc); err != nil {
			return false, fmt.Errorf("corrupt account record: %w", err)
		}
		out = append(out, acc)
		return true, nil
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if more {
		next = out[len(out)-1].Id
	}
	return out, next, nil
}

// Transfer returns a transfer as recorded, or ErrNotFound.
func (f *FSM) Transfer(id string) (*bankdv1.Transfer, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return nil, errors.New("state machine is closed")
	}
	v, closer, err := f.db.Get(transferKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("transfer %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read transfer %q: %w", id, err)
	}
	defer closer.Close()
	t, _, err := decodeStoredTransfer(v)
	if err != nil {
		return nil, fmt.Errorf("transfer %q: %w", id, err)
	}
	return t, nil
}

// Lock returns the current grant of a lock, or nil if it is free or its lease ran out in
// cluster time.
func (f *FSM) Lock(name string) (*bankdv1.Lock, error) {
	lock := &bankdv1.Lock{}
	err := f.get(lockKey(name), lock)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if lock.ExpiresAtUnixMs <= f.NowUnixMs() {
		return nil, nil
	}
	return lock, nil
}

// Events returns up to max events with index >= fromIndex, in index order, stopping once the
// page holds MaxEventPageBytes of encoded events (always at least one event): one event can be a
// whole batch of transfers, and a reader must not hold hundreds of them at once.
func (f *FSM) Events(fromIndex uint64, max int) ([]*bankdv1.Event, error) {
	if max <= 0 {
		max = DefaultPageSize
	}
	var out []*bankdv1.Event
	size := 0
	err := f.scan(eventKey(fromIndex), prefixEnd([]byte{tagEvent}), func(_, v []byte) (bool, error) {
		e := &bankdv1.Event{}
		if err := proto.Unmarshal(v, e); err != nil {
			return false, fmt.Errorf("corrupt event: %w", err)
		}
		out = append(out, e)
		size += len(v)
		return len(out) < max && size < MaxEventPageBytes, nil
	})
	if err != nil {
		return nil, err
	}
	// Read after the events: a compaction that dropped some of them between fromIndex and
	// what the scan found has moved the horizon by now.
	horizon, err := f.Horizon()
	if err != nil {
		return nil, fmt.Errorf("read the retention horizon: %w", err)
	}
	if fromIndex < horizon {
		return nil, &CompactedError{From: fromIndex, Horizon: horizon}
	}
	return out, nil
}

// CompactedError is a read of events that retention has dropped.
type CompactedError struct {
	From, Horizon uint64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("events before index %d were dropped by retention (asked from %d); the oldest index still kept is %d", e.Horizon, e.From, e.Horizon)
}

// NextExpiryUnixMs returns the earliest expiry of a pending transfer, if any is pending with a
// timeout. The leader proposes a tick once cluster time should have passed it.
func (f *FSM) NextExpiryUnixMs() (int64, bool) {
	var at int64
	found := false
	err := f.scan([]byte{tagExpiry}, prefixEnd([]byte{tagExpiry}), func(k, _ []byte) (bool, error) {
		var err error
		at, _, err = parseExpiryKey(k)
		found = err == nil
		return false, err
	})
	if err != nil {
		return 0, false
	}
	return at, found
}
