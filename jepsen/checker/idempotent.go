package checker

import (
	"cmp"
	"math"
	"slices"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/idempotent"
	"github.com/bankd/bankd/jepsen/workload/ledger"
)

// IdempotentAppliedOnce is the idempotent workload's applied-once checker. From the answers:
// every ok of one id carries one transfer index, only the first ok of an id may say
// replayed=false (a later fresh apply is a second apply), and no id that applied is refused
// with a result code. From final, when not nil: every acknowledged id exists at the index it
// was acknowledged with and with the body sent; each existing id appears exactly once in the
// history of each account and no other id does; and both accounts hold exactly (number of
// existing ids) × amount, which their histories also sum to.
func IdempotentAppliedOnce(amount int64, ops []history.Op, final *idempotent.Final) Result {
	c := newCollector(NameAppliedOnce)
	pairs, err := history.Pairs(ops)
	if err != nil {
		c.violation("malformed history: %v", err)
		return c.result()
	}
	// Completions in the order they happened.
	slices.SortStableFunc(pairs, func(a, b history.Pair) int { return cmp.Compare(completedAt(a), completedAt(b)) })
	type idState struct {
		firstOK *history.Op
		first   idempotent.Value
		refused *history.Op
	}
	ids := map[string]*idState{}
	var order []string
	for _, p := range pairs {
		if p.Invoke.F != idempotent.FTransfer {
			continue
		}
		sent, ok := p.Invoke.Value.(idempotent.Value)
		if !ok {
			c.violation("transfer without a value (%s)", at(p.Invoke))
			continue
		}
		s := ids[sent.ID]
		if s == nil {
			s = &idState{}
			ids[sent.ID] = s
			order = append(order, sent.ID)
		}
		if sent.Amount != amount {
			c.violation("transfer %s sent with amount %d, want %d (%s)", sent.ID, sent.Amount, amount, at(p.Invoke))
		}
		switch p.Outcome() {
		case history.OK:
			got, ok := p.Complete.Value.(idempotent.Value)
			switch {
			case !ok:
				c.violation("ok transfer %s without a value (%s)", sent.ID, at(*p.Complete))
			case got.Index == 0:
				c.violation("transfer %s acknowledged without an index (%s)", sent.ID, at(*p.Complete))
			case s.firstOK == nil:
				s.firstOK, s.first = p.Complete, got
			case !got.Replayed:
				c.violation("transfer %s applied again: answer replayed=false at index %d (%s) after the ok at index %d (%s)",
					sent.ID, got.Index, at(*p.Complete), s.first.Index, at(*s.firstOK))
			case got.Index != s.first.Index:
				c.violation("transfer %s replayed with index %d (%s) but first acknowledged at index %d (%s)",
					sent.ID, got.Index, at(*p.Complete), s.first.Index, at(*s.firstOK))
			}
		case history.Fail:
			if v, ok := p.Complete.Value.(idempotent.Value); ok && v.Code != "" && s.refused == nil {
				s.refused = p.Complete
			}
		}
	}
	c.r.Checked = len(order)
	for _, id := range order {
		s := ids[id]
		if s.refused != nil && s.firstOK != nil {
			c.violation("transfer %s was refused (%s: %s) but also acknowledged (%s)", id, at(*s.refused), s.refused.Error, at(*s.firstOK))
		}
	}
	if final == nil {
		return c.result()
	}

	var existing int64
	for _, id := range order {
		s := ids[id]
		t, known := final.Transfers[id]
		switch {
		case !known:
			c.violation("transfer %s was not read at the end", id)
			continue
		case t == nil:
			if s.firstOK != nil {
				c.violation("transfer %s acknowledged ok (%s) is missing at the end", id, at(*s.firstOK))
			}
			continue
		}
		existing++
		if t.From != idempotent.SrcID || t.To != idempotent.DstID || t.Amount != amount {
			c.violation("transfer %s exists as %s->%s %d, sent as %s->%s %d", id, t.From, t.To, t.Amount, idempotent.SrcID, idempotent.DstID, amount)
		}
		if s.firstOK != nil && t.Index != s.first.Index {
			c.violation("transfer %s acknowledged at index %d (%s) exists at index %d", id, s.first.Index, at(*s.firstOK), t.Index)
		}
		if s.refused != nil {
			c.violation("transfer %s was refused (%s: %s) but exists at the end", id, at(*s.refused), s.refused.Error)
		}
	}
	for _, id := range ledger.SortedIDs(final.Transfers) {
		if _, invoked := ids[id]; !invoked && final.Transfers[id] != nil {
			c.violation("transfer %s exists but was never invoked", id)
		}
	}
	for _, acc := range idempotent.Accounts() {
		seen := map[string]bool{}
		var debits, credits int64
		for _, e := range final.Histories[acc] {
			debits += e.DebitsPostedDelta
			credits += e.CreditsPostedDelta
			switch t := final.Transfers[e.TransferID]; {
			case seen[e.TransferID]:
				c.violation("transfer %s applied twice to account %s (again at index %d)", e.TransferID, acc, e.Index)
			case t == nil:
				c.violation("account %s history holds transfer %s that does not exist or was never invoked", acc, e.TransferID)
			case t.Index != e.Index:
				c.violation("account %s history holds transfer %s at index %d, the transfer says %d", acc, e.TransferID, e.Index, t.Index)
			}
			seen[e.TransferID] = true
		}
		for _, id := range order {
			if final.Transfers[id] != nil && !seen[id] {
				c.violation("transfer %s exists but is not in the history of account %s", id, acc)
			}
		}
		b, ok := final.Balances[acc]
		if !ok {
			c.violation("final balances lack account %s", acc)
			continue
		}
		if b.DebitsPosted != debits || b.CreditsPosted != credits {
			c.violation("account %s: balance debits/credits %d/%d but its history sums to %d/%d", acc, b.DebitsPosted, b.CreditsPosted, debits, credits)
		}
		want := existing * amount
		wantDebits, wantCredits := want, int64(0)
		if acc == idempotent.DstID {
			wantDebits, wantCredits = 0, want
		}
		if b.DebitsPosted != wantDebits || b.CreditsPosted != wantCredits {
			c.violation("account %s: debits/credits %d/%d, want %d/%d (%d distinct ids exist × %d)",
				acc, b.DebitsPosted, b.CreditsPosted, wantDebits, wantCredits, existing, amount)
		}
	}
	return c.result()
}

// completedAt orders pairs by completion; an operation that never completed sorts last.
func completedAt(p history.Pair) int {
	if p.Complete == nil {
		return math.MaxInt
	}
	return p.Complete.Index
}
