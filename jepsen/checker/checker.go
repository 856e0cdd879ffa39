// Package checker decides whether a jepsen history (and what the cluster held at the end) is
// valid. Each checker is a pure function of its inputs that returns a Result with the first
// counter-example it found; none talks to a cluster, so each can be tested with hand-made
// histories that must be flagged invalid.
package checker

import (
	"fmt"
	"strings"
	"time"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/bank"
	"github.com/bankd/bankd/jepsen/workload/ledger"
)

// Verdict of a checker.
type Verdict string

const (
	Valid   Verdict = "valid"
	Invalid Verdict = "invalid"
	// Unknown: the checker had nothing to examine (e.g. no read succeeded), so it proves nothing.
	Unknown Verdict = "unknown"
)

// Result is one checker's verdict.
type Result struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	// CounterExample describes the first violation found.
	CounterExample string `json:"counter_example,omitempty"`
	// Violations counts every violation found (the first is the counter-example).
	Violations int `json:"violations"`
	// Checked counts what was examined (reads, transfers, replicas).
	Checked int `json:"checked"`
}

// Names of the checkers.
const (
	NameConservation = "conservation"
	NameLostWrites   = "no-lost-writes"
	NameAppliedOnce  = "applied-once"
	NameReplicas     = "replicas-equal"
	// NameRecovery is the harness's own verdict on the healed cluster: every node still
	// running, a leader elected, the final reads answered.
	NameRecovery = "recovery"
)

// collector builds a Result: it keeps the first violation and counts the rest.
type collector struct {
	r Result
}

func newCollector(name string) *collector { return &collector{r: Result{Name: name}} }

func (c *collector) violation(format string, args ...any) {
	if c.r.Violations == 0 {
		c.r.CounterExample = fmt.Sprintf(format, args...)
	}
	c.r.Violations++
}

func (c *collector) result() Result {
	switch {
	case c.r.Violations > 0:
		c.r.Verdict = Invalid
	case c.r.Checked == 0:
		c.r.Verdict = Unknown
	default:
		c.r.Verdict = Valid
	}
	return c.r
}

// Overall is Invalid if any result is, else Unknown if any is, else Valid; first names the
// first result carrying the overall verdict (nil when Valid).
func Overall(results []Result) (Verdict, *Result) {
	for _, v := range []Verdict{Invalid, Unknown} {
		for i := range results {
			if results[i].Verdict == v {
				return v, &results[i]
			}
		}
	}
	return Valid, nil
}

func at(op history.Op) string {
	return fmt.Sprintf("op %d, process %d, node %s, t=%s", op.Index, op.Process, op.Node, op.Time.Round(time.Millisecond))
}

// Conservation checks every ok read of all balances, and the final balances when final is not
// nil: the read shows exactly the model's accounts, debits equal credits over the ledger, the
// reserve equals the sum of customer balances, and no customer (non-negative) is negative.
func Conservation(model bank.Model, ops []history.Op, final *bank.Final) Result {
	c := newCollector(NameConservation)
	for _, op := range ops {
		if op.Type != history.OK || op.F != bank.FRead {
			continue
		}
		read, ok := op.Value.(bank.ReadValue)
		if !ok {
			c.violation("ok read without balances (%s)", at(op))
			continue
		}
		c.r.Checked++
		checkBalances(c, model, read, "read ("+at(op)+")")
	}
	if final != nil {
		c.r.Checked++
		checkBalances(c, model, final.Balances, "final read")
	}
	return c.result()
}

func checkBalances(c *collector, model bank.Model, read bank.ReadValue, where string) {
	accounts := model.Accounts()
	if len(read) != len(accounts) {
		c.violation("%s shows %d accounts, want %d", where, len(read), len(accounts))
		return
	}
	var net, customers int64
	for _, id := range accounts {
		b, ok := read[id]
		if !ok {
			c.violation("%s lacks account %s", where, id)
			return
		}
		net += b.DebitsPosted - b.CreditsPosted
	}
	for _, id := range model.Customers {
		b := read[id]
		customers += b.Posted
		if b.Posted < 0 || b.Available < 0 {
			c.violation("%s: non-negative account %s is negative (posted %d, available %d)", where, id, b.Posted, b.Available)
			return
		}
	}
	if net != 0 {
		c.violation("%s: debits minus credits over all accounts is %d, want 0", where, net)
		return
	}
	if r := read[model.Reserve].Posted; r != customers {
		c.violation("%s: reserve holds %d but customers hold %d", where, r, customers)
	}
}

// LostWrites checks that every transfer acknowledged ok exists at the end with the body that
// was sent, and that every transfer that failed does not exist. A transfer whose id was also
// invoked again (a retry) is judged on all its outcomes: it must exist if any was ok.
func LostWrites(ops []history.Op, final *bank.Final) Result {
	c := newCollector(NameLostWrites)
	pairs, err := history.Pairs(ops)
	if err != nil {
		c.violation("malformed history: %v", err)
		return c.result()
	}
	type outcome struct {
		ok, fail *history.Pair
		sent     bank.TransferValue
	}
	byID := map[string]*outcome{}
	var order []string
	for i := range pairs {
		p := &pairs[i]
		if p.Invoke.F != bank.FTransfer {
			continue
		}
		t, ok := p.Invoke.Value.(bank.TransferValue)
		if !ok {
			c.violation("transfer without a value (%s)", at(p.Invoke))
			continue
		}
		o := byID[t.ID]
		if o == nil {
			o = &outcome{sent: t}
			byID[t.ID] = o
			order = append(order, t.ID)
		}
		switch p.Outcome() {
		case history.OK:
			if o.ok == nil {
				o.ok = p
			}
		case history.Fail:
			if o.fail == nil {
				o.fail = p
			}
		}
	}
	for _, id := range order {
		o := byID[id]
		got, known := final.Transfers[id]
		if !known {
			c.violation("transfer %s was not read at the end", id)
			continue
		}
		switch {
		case o.ok != nil:
			c.r.Checked++
			if got == nil {
				c.violation("transfer %s acknowledged ok (%s) is missing at the end", id, at(*o.ok.Complete))
			} else if *got != o.sent {
				c.violation("transfer %s acknowledged ok (%s) as %+v is recorded as %+v", id, at(*o.ok.Complete), o.sent, *got)
			}
		case o.fail != nil:
			c.r.Checked++
			if got != nil {
				c.violation("transfer %s reported failed (%s: %s) exists at the end", id, at(*o.fail.Complete), o.fail.Complete.Error)
			}
		}
	}
	return c.result()
}

// AppliedOnce checks the final state against the transfers that exist: every existing
// transfer was invoked with that body and appears exactly once in the history of each of its
// two accounts and nowhere else; no history holds an id twice or an unknown id; each account's
// history sums to its final balance, and that balance equals the sum of the existing transfers.
func AppliedOnce(model bank.Model, ops []history.Op, final *bank.Final) Result {
	c := newCollector(NameAppliedOnce)
	sent := map[string]bank.TransferValue{}
	for _, op := range ops {
		if t, ok := op.Value.(bank.TransferValue); ok && op.Type == history.Invoke {
			sent[t.ID] = t
		}
	}
	wantDebits, wantCredits := map[string]int64{}, map[string]int64{}
	for _, id := range ledger.SortedIDs(final.Transfers) {
		t := final.Transfers[id]
		if t == nil {
			continue
		}
		c.r.Checked++
		if s, ok := sent[id]; !ok {
			c.violation("transfer %s exists but was never invoked", id)
		} else if s != *t {
			c.violation("transfer %s was invoked as %+v but exists as %+v", id, s, *t)
		}
		wantDebits[t.From] += t.Amount
		wantCredits[t.To] += t.Amount
	}
	for _, acc := range model.Accounts() {
		seen := map[string]bool{}
		var debits, credits int64
		for _, e := range final.Histories[acc] {
			debits += e.DebitsPostedDelta
			credits += e.CreditsPostedDelta
			if seen[e.TransferID] {
				c.violation("transfer %s applied twice to account %s (again at index %d)", e.TransferID, acc, e.Index)
				continue
			}
			seen[e.TransferID] = true
			t, known := final.Transfers[e.TransferID]
			switch {
			case !known:
				c.violation("account %s history holds transfer %s that no client invoked", acc, e.TransferID)
			case t == nil:
				c.violation("account %s history holds transfer %s that does not exist", acc, e.TransferID)
			case t.From != acc && t.To != acc:
				c.violation("account %s history holds transfer %s between %s and %s", acc, e.TransferID, t.From, t.To)
			}
		}
		for _, id := range ledger.SortedIDs(final.Transfers) {
			if t := final.Transfers[id]; t != nil && (t.From == acc || t.To == acc) && !seen[id] {
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
		if b.DebitsPosted != wantDebits[acc] || b.CreditsPosted != wantCredits[acc] {
			c.violation("account %s: balance debits/credits %d/%d but its existing transfers sum to %d/%d", acc, b.DebitsPosted, b.CreditsPosted, wantDebits[acc], wantCredits[acc])
		}
	}
	return c.result()
}

// ReplicaHash is one replica's state hash at the end of a run.
type ReplicaHash struct {
	Node         string `json:"node"`
	AppliedIndex uint64 `json:"applied_index"`
	SHA256       string `json:"sha256"`
}

// Replicas checks that all want replicas answered, at one applied index, with one hash. err is
// the error of collecting the hashes, if any.
func Replicas(hashes []ReplicaHash, want int, err error) Result {
	c := newCollector(NameReplicas)
	c.r.Checked = len(hashes)
	if err != nil {
		c.violation("collecting state hashes: %v", err)
	}
	if len(hashes) != want {
		var got []string
		for _, h := range hashes {
			got = append(got, h.Node)
		}
		c.violation("%d of %d replicas answered (%s)", len(hashes), want, strings.Join(got, ","))
	}
	for _, h := range hashes[min(1, len(hashes)):] {
		first := hashes[0]
		switch {
		case h.AppliedIndex != first.AppliedIndex:
			c.violation("%s applied %d but %s applied %d", h.Node, h.AppliedIndex, first.Node, first.AppliedIndex)
		case h.SHA256 != first.SHA256:
			c.violation("%s and %s differ at applied index %d: %s vs %s", h.Node, first.Node, h.AppliedIndex, h.SHA256, first.SHA256)
		}
	}
	return c.result()
}
