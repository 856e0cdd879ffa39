package checker

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/register"
)

// NameLinearizable is the register workload's checker.
const NameLinearizable = "linearizable"

// LinearizableTimeout bounds porcupine's search; past it the verdict is unknown.
var LinearizableTimeout = 2 * time.Minute

// maxVisualizedOps bounds the histories whose visualization is written even when valid.
const maxVisualizedOps = 50000

// regInput is a porcupine operation's input: an add of Amount to Key, or a read of Key.
type regInput struct {
	Key    string
	Add    bool
	Amount int64
	ID     string
}

// regOutput is a porcupine operation's output: a read's value, or for an add whether its
// outcome is known.
type regOutput struct {
	Value   int64
	Unknown bool
}

// registerModel is a per-key counter: add(v) moves the state from s to s+v, read returns s.
//
// An add whose outcome is unknown (info) is given a return time at the end of the history (or
// at the moment the final state showed it applied), and the model always applies it. That is
// exactly "it may or may not have happened" (as in Knossos): a linearization in which it did
// not happen can move it to the very end, after every other operation — its interval allows
// that — where its effect is seen by no one. Adds known not to have applied (fail, or info
// whose id does not exist at the end) are left out.
var registerModel = porcupine.Model{
	Partition: partitionByKey,
	Init:      func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(int64), input.(regInput)
		if in.Add {
			return true, s + in.Amount
		}
		return output.(regOutput).Value == s, s
	},
	Equal: func(a, b any) bool { return a.(int64) == b.(int64) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		switch {
		case in.Add && out.Unknown:
			return fmt.Sprintf("add(%s, %d) %s ?", in.Key, in.Amount, in.ID)
		case in.Add:
			return fmt.Sprintf("add(%s, %d) %s", in.Key, in.Amount, in.ID)
		}
		return fmt.Sprintf("read(%s) -> %d", in.Key, out.Value)
	},
	DescribeState:             func(state any) string { return fmt.Sprint(state.(int64)) },
	DescribeOperationMetadata: func(info any) string { return fmt.Sprintf("history op %v", info) },
}

// partitionByKey splits a history per key, in key order.
func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range ops {
		k := op.Input.(regInput).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	slices.Sort(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// Linearizable checks a register history with porcupine: every ok linearizable read (the final
// reads included) and every add that applied or may have must fit one total order, per key,
// that respects real time. Stale reads are not checked. final, when not nil, resolves the adds
// whose outcome was unknown; an add that failed but exists at the end is a violation of its
// own. When htmlPath is not empty porcupine's visualization is written there if the history
// is not linearizable, or if it is small.
func Linearizable(ops []history.Op, final *register.Final, htmlPath string) Result {
	c := newCollector(NameLinearizable)
	pairs, err := history.Pairs(ops)
	if err != nil {
		c.violation("malformed history: %v", err)
		return c.result()
	}
	var end time.Duration
	for _, op := range ops {
		end = max(end, op.Time)
	}
	end++
	byIndex := map[int]history.Pair{}
	var pops []porcupine.Operation
	clients := map[int]int{} // process -> dense client id, for the visualization
	add := func(p history.Pair, in regInput, out regOutput, ret time.Duration) {
		cl, ok := clients[p.Invoke.Process]
		if !ok {
			cl = len(clients)
			clients[p.Invoke.Process] = cl
		}
		byIndex[p.Invoke.Index] = p
		pops = append(pops, porcupine.Operation{ClientId: cl, Input: in, Call: int64(p.Invoke.Time),
			Output: out, Return: int64(ret), Metadata: p.Invoke.Index})
	}
	for _, p := range pairs {
		switch p.Invoke.F {
		case register.FAdd:
			a, ok := p.Invoke.Value.(register.AddValue)
			if !ok {
				c.violation("add without a value (%s)", at(p.Invoke))
				continue
			}
			in := regInput{Key: a.Key, Add: true, Amount: a.Amount, ID: a.ID}
			if p.Outcome() == history.OK {
				add(p, in, regOutput{}, p.Complete.Time)
				continue
			}
			exists, known := false, false
			if final != nil {
				exists, known = final.Transfers[a.ID]
			}
			switch {
			case known && !exists:
				// Never applied, and never will: the cluster is healed and it is not there.
			case p.Outcome() == history.Fail && known:
				c.violation("add %s reported failed (%s: %s) exists at the end", a.ID, at(*p.Complete), p.Complete.Error)
				add(p, in, regOutput{Unknown: true}, final.ResolvedAt)
			case p.Outcome() == history.Fail:
				// Certainly not applied.
			case known:
				add(p, in, regOutput{Unknown: true}, final.ResolvedAt)
			default:
				add(p, in, regOutput{Unknown: true}, end)
			}
		case register.FRead:
			if p.Outcome() != history.OK {
				continue // a read that failed saw nothing
			}
			r, ok := p.Complete.Value.(register.ReadValue)
			if !ok {
				c.violation("ok read without a value (%s)", at(*p.Complete))
				continue
			}
			c.r.Checked++
			add(p, regInput{Key: r.Key}, regOutput{Value: r.Value}, p.Complete.Time)
		}
	}
	if c.r.Checked == 0 {
		return c.result()
	}
	res, info := porcupine.CheckOperationsVerbose(registerModel, pops, LinearizableTimeout)
	switch res {
	case porcupine.Unknown:
		c.r.Verdict = Unknown
		c.r.CounterExample = fmt.Sprintf("porcupine found no verdict within %s (%d operations)", LinearizableTimeout, len(pops))
		return c.r
	case porcupine.Illegal:
		c.violation("%s", explainIllegal(pops, info, byIndex))
	}
	if htmlPath != "" && (res == porcupine.Illegal || len(pops) <= maxVisualizedOps) {
		if err := porcupine.VisualizePath(registerModel, info, htmlPath); err != nil {
			c.violation("writing %s: %v", htmlPath, err)
			os.Remove(htmlPath)
		}
	}
	return c.result()
}

// explainIllegal names the first key that has no linearization, how far the longest
// linearizable prefix got, and the operation it could not place.
func explainIllegal(pops []porcupine.Operation, info porcupine.LinearizationInfo, byIndex map[int]history.Pair) string {
	parts := partitionByKey(pops)
	partials := info.PartialLinearizationsOperations()
	for i, part := range parts {
		if i >= len(partials) {
			break
		}
		var longest []porcupine.Operation
		for _, l := range partials[i] {
			if len(l) > len(longest) {
				longest = l
			}
		}
		if len(longest) == len(part) {
			continue
		}
		in := map[int]bool{}
		for _, op := range longest {
			in[op.Metadata.(int)] = true
		}
		var stuck *porcupine.Operation
		for j := range part {
			if !in[part[j].Metadata.(int)] && (stuck == nil || part[j].Return < stuck.Return) {
				stuck = &part[j]
			}
		}
		key := part[0].Input.(regInput).Key
		msg := fmt.Sprintf("key %s: its %d operations have no linearization; the longest linearizable prefix holds %d",
			key, len(part), len(longest))
		if len(longest) > 0 {
			msg += fmt.Sprintf(" and ends in state %d", prefixState(longest))
		}
		if stuck != nil {
			p := byIndex[stuck.Metadata.(int)]
			where := at(p.Invoke)
			if p.Complete != nil {
				where = at(*p.Complete)
			}
			msg += fmt.Sprintf("; it cannot place %s (%s)", registerModel.DescribeOperation(stuck.Input, stuck.Output), where)
		}
		return msg + "; see linearizability.html"
	}
	return "porcupine found no linearization"
}

// prefixState replays a linearized prefix from the initial state.
func prefixState(ops []porcupine.Operation) int64 {
	var s any = registerModel.Init()
	for _, op := range ops {
		_, s = registerModel.Step(s, op.Input, op.Output)
	}
	return s.(int64)
}
