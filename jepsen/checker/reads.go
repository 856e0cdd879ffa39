package checker

import (
	"maps"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/bank"
	"github.com/bankd/bankd/jepsen/workload/ledger"
)

// NameFreshReads is the checker of the bank workload's linearizable reads against real time.
const NameFreshReads = "fresh-reads"

// floor is a lower bound on each account's posted totals, with what set it.
type floor struct {
	debits, credits map[string]int64
	// debitBy and creditBy name the read that set an account's floor; nil when acknowledged
	// transfers set it.
	debitBy, creditBy map[string]*history.Op
}

func newFloor() floor {
	return floor{map[string]int64{}, map[string]int64{}, map[string]*history.Op{}, map[string]*history.Op{}}
}

func (f floor) clone() floor {
	return floor{maps.Clone(f.debits), maps.Clone(f.credits), maps.Clone(f.debitBy), maps.Clone(f.creditBy)}
}

// FreshReads checks that every ok read of all balances is as new as real time demands of a
// linearizable read. The bank workload only posts transfers, so each account's debits_posted
// and credits_posted only grow, by the amounts of the transfers that apply. Hence a read must
// show, for every account, totals of at least (1) the sum of the distinct transfers
// acknowledged ok before the read was invoked, and (2) what any read that completed before it
// was invoked showed. Conservation cannot see a stale read (an old state is balanced too);
// this checker can.
func FreshReads(ops []history.Op) Result {
	c := newCollector(NameFreshReads)
	acked := newFloor() // the distinct transfers acknowledged so far
	seen := newFloor()  // the elementwise maximum of the reads completed so far
	ackedIDs := map[string]bool{}
	type floors struct{ acked, seen floor }
	open := map[int]floors{} // process -> the floors when its read was invoked
	for _, op := range ops {
		if op.Process == history.NemesisProcess {
			continue
		}
		switch {
		case op.F == bank.FTransfer && op.Type == history.OK:
			t, ok := op.Value.(bank.TransferValue)
			if !ok || ackedIDs[t.ID] {
				continue
			}
			ackedIDs[t.ID] = true
			acked.debits[t.From] += t.Amount
			acked.credits[t.To] += t.Amount
		case op.F == bank.FRead && op.Type == history.Invoke:
			open[op.Process] = floors{acked.clone(), seen.clone()}
		case op.F == bank.FRead && op.Type == history.OK:
			f, ok := open[op.Process]
			delete(open, op.Process)
			read, isRead := op.Value.(bank.ReadValue)
			if !ok || !isRead {
				continue
			}
			c.r.Checked++
			if !checkFloors(c, op, read, f.acked, f.seen) {
				continue
			}
			for id, b := range read {
				if b.DebitsPosted > seen.debits[id] {
					seen.debits[id], seen.debitBy[id] = b.DebitsPosted, &op
				}
				if b.CreditsPosted > seen.credits[id] {
					seen.credits[id], seen.creditBy[id] = b.CreditsPosted, &op
				}
			}
		case op.F == bank.FRead:
			delete(open, op.Process)
		}
	}
	return c.result()
}

// checkFloors reports the first account of read below a floor; it returns false if there was one.
func checkFloors(c *collector, op history.Op, read bank.ReadValue, acked, seen floor) bool {
	for _, id := range ledger.SortedIDs(read) {
		b := read[id]
		for _, side := range []struct {
			name     string
			got      int64
			ack, saw int64
			by       *history.Op
		}{
			{"debits_posted", b.DebitsPosted, acked.debits[id], seen.debits[id], seen.debitBy[id]},
			{"credits_posted", b.CreditsPosted, acked.credits[id], seen.credits[id], seen.creditBy[id]},
		} {
			switch {
			case side.got < side.ack:
				c.violation("stale read (%s): account %s %s is %d, but transfers acknowledged before the read began sum to %d",
					at(op), id, side.name, side.got, side.ack)
				return false
			case side.got < side.saw:
				c.violation("stale read (%s): account %s %s is %d, but an earlier read (%s) that completed before this one began showed %d",
					at(op), id, side.name, side.got, at(*side.by), side.saw)
				return false
			}
		}
	}
	return true
}
