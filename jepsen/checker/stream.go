package checker

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/stream"
)

// NameStreamOrder is the stream workload's checker.
const NameStreamOrder = "stream-order"

// StreamOrder checks the event streams watchers received against the final event log:
//
//   - every session delivers strictly increasing indexes from where it asked to start (no
//     duplicate, nothing out of order), each event identical to the log's event at that index
//     (nothing invented or changed), and every event of the log between two it delivered
//     (no gap);
//   - every acknowledged transfer is in the log at the index its acknowledgement named;
//   - commit order follows real time: a transfer invoked after another was acknowledged has
//     the higher index.
//
// Without a final log only the first clause's ordering part can be judged.
func StreamOrder(ops []history.Op, final *stream.Final) Result {
	c := newCollector(NameStreamOrder)
	var log []stream.Event
	if final != nil {
		log = final.Log
		for i := 1; i < len(log); i++ {
			if log[i].Index <= log[i-1].Index {
				c.violation("the final log is out of order: event %d after %d", log[i].Index, log[i-1].Index)
			}
		}
	}
	pos := func(index uint64) int { // first log position with Index >= index
		return sort.Search(len(log), func(i int) bool { return log[i].Index >= index })
	}
	pairs, err := history.Pairs(ops)
	if err != nil {
		c.violation("malformed history: %v", err)
		return c.result()
	}
	for _, p := range pairs {
		if p.Invoke.F != stream.FWatch || p.Outcome() != history.OK {
			continue
		}
		s, ok := p.Complete.Value.(stream.Session)
		if !ok {
			continue
		}
		where := fmt.Sprintf("watcher %d's session from %d (%s)", s.Watcher, s.From, at(p.Invoke))
		prev := s.From - 1 // From is at least 1
		for _, e := range s.Events {
			c.r.Checked++
			if e.Index <= prev {
				c.violation("%s: event %d delivered after %d (a duplicate or out of order)", where, e.Index, prev)
				continue
			}
			if final == nil {
				prev = e.Index
				continue
			}
			if e.Index > final.MarkerIndex {
				c.violation("%s: event %d is past the end of the log (%d)", where, e.Index, final.MarkerIndex)
				break
			}
			// The log's events strictly between prev and e must have been delivered too.
			i := pos(prev + 1)
			if i < len(log) && log[i].Index < e.Index {
				c.violation("%s: gap: event %d (%s) was never delivered; the stream went from %d to %d",
					where, log[i].Index, strings.Join(log[i].Items, "; "), prev, e.Index)
			}
			j := pos(e.Index)
			switch {
			case j == len(log) || log[j].Index != e.Index:
				c.violation("%s: event %d (%s) is not in the final log", where, e.Index, strings.Join(e.Items, "; "))
			case !slices.Equal(log[j].Items, e.Items):
				c.violation("%s: event %d was delivered as [%s] but the log has [%s]",
					where, e.Index, strings.Join(e.Items, "; "), strings.Join(log[j].Items, "; "))
			}
			prev = e.Index
		}
	}
	if final != nil {
		checkTransferOrder(c, pairs, log, pos)
	}
	return c.result()
}

// checkTransferOrder checks that acknowledged transfers are in the log where their answer
// said, and that a transfer invoked after another was acknowledged committed after it.
func checkTransferOrder(c *collector, pairs []history.Pair, log []stream.Event, pos func(uint64) int) {
	type acked struct {
		id                    string
		index                 uint64
		invoked, acknowledged time.Duration
	}
	var oks []acked
	for _, p := range pairs {
		if p.Invoke.F != stream.FTransfer || p.Outcome() != history.OK {
			continue
		}
		t, ok := p.Complete.Value.(stream.Transfer)
		if !ok {
			continue
		}
		c.r.Checked++
		oks = append(oks, acked{id: t.ID, index: t.Index, invoked: p.Invoke.Time, acknowledged: p.Complete.Time})
		j := pos(t.Index)
		if j == len(log) || log[j].Index != t.Index || !hasTransfer(log[j].Items, t.ID) {
			c.violation("transfer %s was acknowledged at index %d, but the log has no such event there", t.ID, t.Index)
		}
	}
	// Sweep in invocation order over the acknowledgements made before each invocation.
	byAck := slices.Clone(oks)
	slices.SortFunc(byAck, func(a, b acked) int { return cmp.Compare(a.acknowledged, b.acknowledged) })
	slices.SortFunc(oks, func(a, b acked) int { return cmp.Compare(a.invoked, b.invoked) })
	var latest acked // the highest index acknowledged so far
	k := 0
	for _, b := range oks {
		for ; k < len(byAck) && byAck[k].acknowledged < b.invoked; k++ {
			if byAck[k].index > latest.index {
				latest = byAck[k]
			}
		}
		if latest.id != "" && b.index <= latest.index {
			c.violation("transfer %s was invoked at t=%s, after %s was acknowledged at index %d, yet committed at %d",
				b.id, b.invoked.Round(time.Millisecond), latest.id, latest.index, b.index)
		}
	}
}

func hasTransfer(items []string, id string) bool {
	for _, it := range items {
		if strings.HasPrefix(it, "transfer "+id+" ") {
			return true
		}
	}
	return false
}
