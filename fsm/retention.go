package fsm

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Retention: what a steady workload adds for ever — events, account history, problems and the
// records of finished client transfers (their ids are the clients' idempotency keys) — is
// dropped once it is older than the cluster's retention window. The leader's retention driver
// proposes COMPACT with absolute bounds (an index and cluster times), so every replica drops
// exactly the same records; one command drops at most max_deletes records, and the driver
// proposes again while `more` is set.
//
// Only COMPACT writes anything for retention: a command of an older type applies exactly as it
// did before retention existed, so replicas that applied parts of the log under older binaries
// (a rolling upgrade) hold the same state. Finished client transfers are therefore found
// through the events that finished them, walked in index order behind a cursor:
//
//	m horizon       -> uint64: the oldest index whose event and history are kept
//	m idem-cursor   -> uint64: the next event index to look at for finished client transfers
//
// An event is dropped only once the transfer walk has passed it (when a transfer bound is
// given), so an idempotency window longer than the history window holds the history back.
//
// Kept for ever: accounts and their balances, every record a driver owns (its transfers are its
// own idempotency keys, and crediting exactly once depends on them), pending transfers, locks,
// wallets and chain, Lightning, payout and vault records.

var (
	keyHorizon    = []byte("mhorizon")
	keyIdemCursor = []byte("midem-cursor")
)

// MaxCompactDeletes bounds max_deletes of one COMPACT command.
const MaxCompactDeletes = 65536

// finalState reports whether a transfer in state s can no longer change.
func finalState(s bankdv1.TransferState) bool {
	switch s {
	case bankdv1.TransferState_TRANSFER_STATE_POSTED,
		bankdv1.TransferState_TRANSFER_STATE_PENDING_POSTED,
		bankdv1.TransferState_TRANSFER_STATE_PENDING_VOIDED,
		bankdv1.TransferState_TRANSFER_STATE_PENDING_EXPIRED,
		bankdv1.TransferState_TRANSFER_STATE_VOID:
		return true
	}
	return false
}

// compaction is the work of one COMPACT command.
type compaction struct {
	a      *applier
	tx     *txn
	budget int
	// initial is max_deletes: the budget before anything was dropped.
	initial int
	done    bankdv1.Compaction
	more    bool
}

func (a *applier) compact(tx *txn, req *bankdv1.CompactRequest) (proto.Message, error) {
	if req.MaxDeletes == 0 || req.MaxDeletes > MaxCompactDeletes {
		return nil, invalid("max_deletes: %d is not within 1-%d", req.MaxDeletes, MaxCompactDeletes)
	}
	if req.BeforeUnixMs < 0 || req.TransfersBeforeUnixMs < 0 {
		return nil, invalid("before_unix_ms and transfers_before_unix_ms must not be negative")
	}
	horizon, err := loadHorizon(tx)
	if err != nil {
		return nil, err
	}
	c := &compaction{a: a, tx: tx, budget: int(req.MaxDeletes), initial: int(req.MaxDeletes)}
	c.done.HorizonIndex = horizon
	// Nothing this command writes may be dropped by it: its own index and cluster time are
	// the upper bounds (expiries that ran before it wrote under both).
	beforeIndex, beforeMs := min(req.BeforeIndex, a.index), min(req.BeforeUnixMs, a.now)
	if t := min(req.TransfersBeforeUnixMs, a.now); t > 0 {
		cursor, err := c.transfers(horizon, t)
		if err != nil {
			return nil, err
		}
		// No event goes before the transfer walk has looked at it.
		beforeIndex = min(beforeIndex, cursor)
	}
	if beforeIndex > horizon && beforeMs > 0 && !c.more {
		if err := c.events(horizon, beforeIndex, beforeMs); err != nil {
			return nil, err
		}
		if err := c.problems(); err != nil {
			return nil, err
		}
	}
	if c.done.HorizonIndex != horizon {
		tx.set(keyHorizon, encodeUint64(c.done.HorizonIndex))
	}
	if c.done.EventsDeleted+c.done.HistoryDeleted+c.done.TransfersDeleted+c.done.ProblemsDeleted > 0 {
		a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_Compacted{Compacted: proto.Clone(&c.done).(*bankdv1.Compaction)}})
	}
	return &bankdv1.CompactResponse{Compaction: &c.done, More: c.more}, nil
}

// events drops the events in [from, beforeIndex) older than beforeMs, oldest first, with the
// history entries each wrote, and moves the horizon past them. It stops at the first event
// that is not old enough, which the horizon then names.
func (c *compaction) events(from, beforeIndex uint64, beforeMs int64) error {
	iter, err := c.tx.batch.NewIter(&pebble.IterOptions{LowerBound: eventKey(from), UpperBound: eventKey(beforeIndex)})
	if err != nil {
		return fmt.Errorf("compact: iterate events: %w", err)
	}
	defer iter.Close()
	// An index's history is under h up to the format switch and under G after it (history.go).
	_, switchedAt, err := loadFormat(c.tx)
	if err != nil {
		return err
	}
	horizon := beforeIndex // every index below the bound is gone unless the walk stops early
	for ok := iter.First(); ok; ok = iter.Next() {
		ev := &bankdv1.Event{}
		if err := proto.Unmarshal(iter.Value(), ev); err != nil {
			return fmt.Errorf("compact: corrupt event at %x: %w", iter.Key(), err)
		}
		if ev.AtUnixMs >= beforeMs {
			horizon = ev.Index
			break
		}
		if c.budget <= 0 {
			horizon, c.more = ev.Index, true
			break
		}
		tag := byte(tagHistory)
		if switchedAt > 0 && ev.Index > switchedAt {
			tag = tagHistoryGroup
		}
		for _, acc := range eventAccounts(ev) {
			n, err := c.dropRange(appendHistoryKey(nil, tag, acc, ev.Index, 0), appendHistoryKey(nil, tag, acc, ev.Index+1, 0))
			if err != nil {
				return err
			}
			c.done.HistoryDeleted += uint32(n)
		}
		if c.more { // the budget ran out inside this event's history: the next command goes on
			horizon = ev.Index
			break
		}
		c.tx.delete(iter.Key())
		c.budget--
		c.done.EventsDeleted++
	}
	if err := iter.Error(); err != nil {
		return fmt.Errorf("compact: iterate events: %w", err)
	}
	c.done.HorizonIndex = max(c.done.HorizonIndex, horizon)
	return nil
}

// problems drops the problems recorded below the horizon, as far as the budget goes.
func (c *compaction) problems() error {
	upper := binary.BigEndian.AppendUint64([]byte{tagProblem}, c.done.HorizonIndex)
	n, err := c.dropRange([]byte{tagProblem}, upper)
	c.done.ProblemsDeleted += uint32(n)
	return err
}

// dropRange deletes the keys in [lower, upper) as the store holds them before this command,
// at most the remaining budget (every range it is given was written by earlier commands).
func (c *compaction) dropRange(lower, upper []byte) (int, error) {
	iter, err := c.tx.batch.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("compact: iterate %q: %w", lower, err)
	}
	n := 0
	for ok := iter.First(); ok; ok = iter.Next() {
		if c.budget <= 0 {
			c.more = true
			break
		}
		c.tx.delete(iter.Key())
		c.budget--
		n++
	}
	if err := iter.Close(); err != nil {
		return n, fmt.Errorf("compact: iterate %q: %w", lower, err)
	}
	return n, nil
}

// transfers walks the events from the idem cursor (or the horizon, if events below the cursor
// were already dropped) and drops each client transfer an event finished before beforeMs, unless
// its id was since taken by a newer transfer. It returns the new cursor.
func (c *compaction) transfers(horizon uint64, beforeMs int64) (uint64, error) {
	cursor, err := loadUint64(c.tx, keyIdemCursor)
	if err != nil {
		return 0, err
	}
	cursor = max(cursor, horizon)
	iter, err := c.tx.batch.NewIter(&pebble.IterOptions{LowerBound: eventKey(cursor), UpperBound: eventKey(c.a.index)})
	if err != nil {
		return 0, fmt.Errorf("compact: iterate events: %w", err)
	}
	defer iter.Close()
	next := c.a.index // every event below this command's index was looked at, unless the walk stops early
	for ok := iter.First(); ok; ok = iter.Next() {
		ev := &bankdv1.Event{}
		if err := proto.Unmarshal(iter.Value(), ev); err != nil {
			return 0, fmt.Errorf("compact: corrupt event at %x: %w", iter.Key(), err)
		}
		if ev.AtUnixMs >= beforeMs {
			next = ev.Index
			break
		}
		finished := finishedClientTransfers(ev)
		// One event is taken whole, even past the budget when it is the first: a batch of
		// 8000 transfers must not stall the walk for ever.
		if len(finished) > c.budget && c.budget < c.initial {
			next, c.more = ev.Index, true
			break
		}
		for _, t := range finished {
			stored, _, found, err := loadTransfer(c.tx, t.Id)
			if err != nil {
				return 0, err
			}
			if found && stored.Index == t.Index && stored.Owner == bankdv1.Owner_OWNER_CLIENT && finalState(stored.State) {
				c.tx.delete(transferKey(t.Id))
				c.done.TransfersDeleted++
			}
			c.budget--
		}
	}
	if err := iter.Error(); err != nil {
		return 0, fmt.Errorf("compact: iterate events: %w", err)
	}
	if next > cursor {
		c.tx.set(keyIdemCursor, encodeUint64(next))
	}
	return next, nil
}

// eventTransfers lists the transfers an event shows applied or expired: every balance change of
// its command, so the accounts they name are those with history entries at its index.
func eventTransfers(ev *bankdv1.Event) []*bankdv1.Transfer {
	var out []*bankdv1.Transfer
	for _, it := range ev.Items {
		switch k := it.Kind.(type) {
		case *bankdv1.EventItem_Transfer:
			out = append(out, k.Transfer)
		case *bankdv1.EventItem_PendingExpired:
			out = append(out, k.PendingExpired)
		}
	}
	return out
}

// finishedClientTransfers lists the client transfers an event shows reaching a final state.
func finishedClientTransfers(ev *bankdv1.Event) []*bankdv1.Transfer {
	var out []*bankdv1.Transfer
	for _, t := range eventTransfers(ev) {
		if t.Owner == bankdv1.Owner_OWNER_CLIENT && finalState(t.State) {
			out = append(out, t)
		}
	}
	return out
}

// eventAccounts lists, once each, the accounts whose balance an event changed.
func eventAccounts(ev *bankdv1.Event) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range eventTransfers(ev) {
		for _, id := range []string{t.DebitAccountId, t.CreditAccountId} {
			if id != "" && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	return out
}

func loadHorizon(tx *txn) (uint64, error) { return loadUint64(tx, keyHorizon) }

func loadUint64(tx *txn, key []byte) (uint64, error) {
	v, ok, err := tx.get(key)
	if err != nil || !ok {
		return 0, err
	}
	return decodeUint64(v)
}

// Horizon is the oldest index whose event and account history are still kept (0 if nothing
// was ever compacted). Events below it are gone.
func (f *FSM) Horizon() (uint64, error) { return f.readUint64(keyHorizon) }

// CompactionDue reports whether req would drop anything now: the oldest event kept is below
// both of its bounds, or the oldest finished client transfer finished before its cutoff. The
// retention driver asks first, so an idle cluster logs no empty compactions.
func (f *FSM) CompactionDue(req *bankdv1.CompactRequest) (bool, error) {
	horizon, err := f.Horizon()
	if err != nil {
		return false, err
	}
	due := false
	if req.BeforeIndex > horizon && req.BeforeUnixMs > 0 {
		err := f.scan(eventKey(horizon), eventKey(req.BeforeIndex), func(_, v []byte) (bool, error) {
			ev := &bankdv1.Event{}
			if err := proto.Unmarshal(v, ev); err != nil {
				return false, fmt.Errorf("corrupt event: %w", err)
			}
			due = ev.AtUnixMs < req.BeforeUnixMs
			return false, nil
		})
		if err != nil || due {
			return due, err
		}
	}
	if req.TransfersBeforeUnixMs > 0 {
		cursor, err := f.readUint64(keyIdemCursor)
		if err != nil {
			return false, err
		}
		// The walk is due when an event it has not looked at is old enough.
		err = f.scan(eventKey(max(cursor, horizon)), []byte{tagEvent + 1}, func(_, v []byte) (bool, error) {
			ev := &bankdv1.Event{}
			if err := proto.Unmarshal(v, ev); err != nil {
				return false, fmt.Errorf("corrupt event: %w", err)
			}
			due = ev.AtUnixMs < req.TransfersBeforeUnixMs
			return false, nil
		})
		return due, err
	}
	return false, nil
}
