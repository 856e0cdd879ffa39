package checker

import (
	"cmp"
	"slices"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/jepsen/workload/locks"
)

// NameLockExclusive is the lock workload's checker.
const NameLockExclusive = "lock-exclusive"

// LockExclusive checks the grants the lock workload was told about. A grant is identified by
// lock name and token (the Raft index of the grant); every ok acquire reports one, with its
// holder, acquired_at and expires_at in cluster time (an extension by the same holder keeps the
// token and moves expires_at). A lock may be granted anew only once the previous grant is over:
// its lease ran out in cluster time (expires_at <= the new grant's acquired_at) or it was
// released. So for every two grants a < b of one lock, a's latest known expires_at after b's
// acquired_at is a violation unless a release of a was invoked before b's grant was
// acknowledged. Two holders under one token are a violation too.
func LockExclusive(ops []history.Op) Result {
	c := newCollector(NameLockExclusive)
	pairs, err := history.Pairs(ops)
	if err != nil {
		c.violation("malformed history: %v", err)
		return c.result()
	}
	type key struct {
		name  string
		token uint64
	}
	type grant struct {
		locks.Grant
		ack history.Op // the first ok completion that reported it
	}
	grants := map[key]*grant{}
	released := map[key]int{} // earliest release invocation (op index)
	for _, p := range pairs {
		switch p.Invoke.F {
		case locks.FAcquire:
			if p.Outcome() != history.OK {
				continue
			}
			g, ok := p.Complete.Value.(locks.Grant)
			if !ok {
				c.violation("ok acquire without a grant (%s)", at(*p.Complete))
				continue
			}
			c.r.Checked++
			k := key{g.Name, g.Token}
			cur := grants[k]
			switch {
			case cur == nil:
				grants[k] = &grant{Grant: g, ack: *p.Complete}
			case cur.Holder != g.Holder:
				c.violation("lock %s token %d granted to both %s (%s) and %s (%s)", g.Name, g.Token, cur.Holder, at(cur.ack), g.Holder, at(*p.Complete))
			default:
				cur.ExpiresAt = max(cur.ExpiresAt, g.ExpiresAt)
			}
		case locks.FRelease:
			v, ok := p.Invoke.Value.(locks.ReleaseValue)
			if !ok {
				continue
			}
			k := key{v.Name, v.Token}
			if i, seen := released[k]; !seen || p.Invoke.Index < i {
				released[k] = p.Invoke.Index
			}
		}
	}
	byName := map[string][]*grant{}
	for _, g := range grants {
		byName[g.Name] = append(byName[g.Name], g)
	}
	for _, name := range sortedKeys(byName) {
		gs := byName[name]
		slices.SortFunc(gs, func(a, b *grant) int { return cmp.Compare(a.Token, b.Token) })
		for j, b := range gs {
			for _, a := range gs[:j] {
				if a.ExpiresAt <= b.AcquiredAt {
					continue
				}
				if r, ok := released[key{a.Name, a.Token}]; ok && r < b.ack.Index {
					continue
				}
				c.violation("lock %s granted to %s (token %d at %d, %s) while %s held it (token %d until %d) and had not released it",
					name, b.Holder, b.Token, b.AcquiredAt, at(b.ack), a.Holder, a.Token, a.ExpiresAt)
			}
		}
	}
	return c.result()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// NameFencedWrites is the lock workload's second checker.
const NameFencedWrites = "fenced-writes"

// FencedWrites checks what the holders did under their leases. Every fenced write that applied
// (final, in commit order) names the grant it was fenced with; tokens are the Raft indexes of
// grants. A write is a violation if it applied after a later grant of its lock that a client
// was told about (its index is past the next known token), or after a write fenced with a newer
// token of the same lock (tokens went backwards in commit order). An acknowledged write missing
// from the final state is a violation too.
func FencedWrites(ops []history.Op, final *locks.Final) Result {
	c := newCollector(NameFencedWrites)
	pairs, err := history.Pairs(ops)
	if err != nil {
		c.violation("malformed history: %v", err)
		return c.result()
	}
	writes := map[string]locks.WriteValue{}
	acked := map[string]bool{}
	grants := map[string][]uint64{} // lock -> tokens clients were granted
	for _, p := range pairs {
		switch p.Invoke.F {
		case locks.FWrite:
			if v, ok := p.Invoke.Value.(locks.WriteValue); ok {
				writes[v.ID] = v
				acked[v.ID] = p.Outcome() == history.OK
			}
		case locks.FAcquire:
			if g, ok := p.Complete.Value.(locks.Grant); ok && p.Outcome() == history.OK {
				grants[g.Name] = append(grants[g.Name], g.Token)
			}
		}
	}
	for name := range grants {
		slices.Sort(grants[name])
	}
	type last struct {
		id           string
		token, index uint64
	}
	latest := map[string]last{} // lock -> the applied write with the highest token so far
	applied := map[string]bool{}
	for _, a := range final.Applied {
		c.r.Checked++
		applied[a.ID] = true
		v, ok := writes[a.ID]
		if !ok {
			c.violation("transfer %s into the resource account at index %d was never invoked", a.ID, a.Index)
			continue
		}
		tokens := grants[v.Lock]
		if i, _ := slices.BinarySearch(tokens, v.Token+1); i < len(tokens) && tokens[i] < a.Index {
			c.violation("write %s fenced with %s token %d applied at index %d, after the lock was granted anew at %d",
				a.ID, v.Lock, v.Token, a.Index, tokens[i])
		}
		if l, ok := latest[v.Lock]; ok && v.Token < l.token {
			c.violation("write %s fenced with %s token %d applied at index %d, after write %s fenced with the newer token %d (index %d)",
				a.ID, v.Lock, v.Token, a.Index, l.id, l.token, l.index)
		}
		if v.Token > latest[v.Lock].token {
			latest[v.Lock] = last{id: a.ID, token: v.Token, index: a.Index}
		}
	}
	for _, id := range ledger.SortedIDs(acked) {
		if acked[id] && !applied[id] {
			c.violation("fenced write %s was acknowledged but is not in the resource account's history", id)
		}
	}
	return c.result()
}
