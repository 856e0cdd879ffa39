package checker

import (
	"errors"
	"strings"
	"testing"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/bank"
	"github.com/bankd/bankd/jepsen/workload/ledger"
)

var model = bank.Model{Reserve: bank.ReserveID, Customers: []string{"c0", "c1"}}

// builder writes hand-made histories.
type builder struct{ ops []history.Op }

func (b *builder) add(process int, typ history.Type, f string, v any) {
	b.ops = append(b.ops, history.Op{Index: len(b.ops), Process: process, Type: typ, F: f, Value: v, Node: "n1"})
}

func (b *builder) transfer(process int, outcome history.Type, t bank.TransferValue) *builder {
	b.add(process, history.Invoke, bank.FTransfer, t)
	b.add(process, outcome, bank.FTransfer, t)
	return b
}

func (b *builder) read(process int, v bank.ReadValue) *builder {
	b.add(process, history.Invoke, bank.FRead, nil)
	b.add(process, history.OK, bank.FRead, v)
	return b
}

func xfer(id, from, to string, amount int64) bank.TransferValue {
	return bank.TransferValue{ID: id, From: from, To: to, Amount: amount}
}

// balances builds a read: reserve funded both customers with the given posted amounts.
func balances(c0, c1 int64) bank.ReadValue {
	return bank.ReadValue{
		bank.ReserveID: {DebitsPosted: c0 + c1, Posted: c0 + c1},
		"c0":           {CreditsPosted: c0, Posted: c0, Available: c0, NonNegative: true},
		"c1":           {CreditsPosted: c1, Posted: c1, Available: c1, NonNegative: true},
	}
}

func expect(t *testing.T, r Result, want Verdict, wantInExample string) {
	t.Helper()
	if r.Verdict != want {
		t.Fatalf("verdict %s, want %s (counter-example: %q)", r.Verdict, want, r.CounterExample)
	}
	if !strings.Contains(r.CounterExample, wantInExample) {
		t.Fatalf("counter-example %q does not mention %q", r.CounterExample, wantInExample)
	}
}

func TestConservation(t *testing.T) {
	negative := balances(10, 5)
	negative["c1"] = ledger.Balance{CreditsPosted: 5, DebitsPosted: 6, Posted: -1, Available: -1, NonNegative: true}
	negative["c0"] = ledger.Balance{CreditsPosted: 16, Posted: 16, Available: 16, NonNegative: true}
	created := balances(10, 5)
	created["c0"] = ledger.Balance{CreditsPosted: 11, Posted: 11, Available: 11, NonNegative: true}
	reserveOff := balances(10, 5)
	reserveOff[bank.ReserveID] = ledger.Balance{DebitsPosted: 15, Posted: 14} // posted disagrees with its own totals
	missing := balances(10, 5)
	delete(missing, "c1")
	tests := []struct {
		name    string
		ops     []history.Op
		final   *bank.Final
		want    Verdict
		example string
	}{
		{name: "balanced reads are valid", ops: new(builder).read(1, balances(10, 5)).read(2, balances(7, 8)).ops, want: Valid},
		{name: "no ok read proves nothing", ops: new(builder).transfer(1, history.OK, xfer("a", "c0", "c1", 1)).ops, want: Unknown},
		{name: "a negative customer is invalid", ops: new(builder).read(1, balances(10, 5)).read(1, negative).ops, want: Invalid, example: "c1 is negative"},
		{name: "money from nowhere is invalid", ops: new(builder).read(1, created).ops, want: Invalid, example: "debits minus credits"},
		{name: "a reserve that disagrees with customers is invalid", ops: new(builder).read(1, reserveOff).ops, want: Invalid, example: "reserve holds 14"},
		{name: "a read missing an account is invalid", ops: new(builder).read(1, missing).ops, want: Invalid, example: "shows 2 accounts"},
		{name: "bad final balances are invalid", ops: new(builder).read(1, balances(1, 1)).ops, final: &bank.Final{Balances: created}, want: Invalid, example: "final read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, Conservation(model, tt.ops, tt.final), tt.want, tt.example)
		})
	}
}

func TestLostWrites(t *testing.T) {
	a, b := xfer("a", "c0", "c1", 1), xfer("b", "c1", "c0", 2)
	found := func(ts ...bank.TransferValue) map[string]*bank.TransferValue {
		m := map[string]*bank.TransferValue{"a": nil, "b": nil}
		for _, t := range ts {
			m[t.ID] = &t
		}
		return m
	}
	tests := []struct {
		name      string
		ops       []history.Op
		transfers map[string]*bank.TransferValue
		want      Verdict
		example   string
	}{
		{name: "ok exists and fail is absent", ops: new(builder).transfer(1, history.OK, a).transfer(2, history.Fail, b).ops, transfers: found(a), want: Valid},
		{name: "info may go either way", ops: new(builder).transfer(1, history.Info, a).transfer(2, history.Info, b).transfer(3, history.OK, xfer("c", "c0", "c1", 1)).ops,
			transfers: map[string]*bank.TransferValue{"a": &a, "b": nil, "c": {ID: "c", From: "c0", To: "c1", Amount: 1}}, want: Valid},
		{name: "a retry that succeeded after a fail must exist", ops: new(builder).transfer(1, history.Fail, a).transfer(1, history.OK, a).ops, transfers: found(a), want: Valid},
		{name: "an acknowledged transfer that vanished is invalid", ops: new(builder).transfer(1, history.OK, a).ops, transfers: found(), want: Invalid, example: "transfer a acknowledged ok"},
		{name: "a failed transfer that exists is invalid", ops: new(builder).transfer(1, history.Fail, a).ops, transfers: found(a), want: Invalid, example: "reported failed"},
		{name: "an acknowledged transfer with another body is invalid", ops: new(builder).transfer(1, history.OK, a).ops, transfers: found(xfer("a", "c0", "c1", 9)), want: Invalid, example: "is recorded as"},
		{name: "a transfer not read at the end is invalid", ops: new(builder).transfer(1, history.OK, xfer("z", "c0", "c1", 1)).ops, transfers: found(), want: Invalid, example: "not read"},
		{name: "a malformed history is invalid", ops: []history.Op{{Process: 1, Type: history.OK, F: bank.FTransfer, Value: a}}, transfers: found(a), want: Invalid, example: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, LostWrites(tt.ops, &bank.Final{Transfers: tt.transfers}), tt.want, tt.example)
		})
	}
}

func TestAppliedOnce(t *testing.T) {
	fund0, fund1, move := xfer("f0", bank.ReserveID, "c0", 10), xfer("f1", bank.ReserveID, "c1", 5), xfer("m", "c0", "c1", 3)
	ops := new(builder).transfer(1, history.OK, fund0).transfer(1, history.OK, fund1).transfer(2, history.Info, move).ops
	entry := func(id string, index uint64, debit, credit int64) ledger.Entry {
		return ledger.Entry{TransferID: id, Index: index, DebitsPostedDelta: debit, CreditsPostedDelta: credit}
	}
	// good is the consistent final state: all three transfers applied once.
	good := func() *bank.Final {
		return &bank.Final{
			Transfers: map[string]*bank.TransferValue{"f0": &fund0, "f1": &fund1, "m": &move},
			Histories: map[string][]ledger.Entry{
				bank.ReserveID: {entry("f0", 1, 10, 0), entry("f1", 2, 5, 0)},
				"c0":           {entry("f0", 1, 0, 10), entry("m", 3, 3, 0)},
				"c1":           {entry("f1", 2, 0, 5), entry("m", 3, 0, 3)},
			},
			Balances: bank.ReadValue{
				bank.ReserveID: {DebitsPosted: 15, Posted: 15},
				"c0":           {DebitsPosted: 3, CreditsPosted: 10, Posted: 7, Available: 7},
				"c1":           {CreditsPosted: 8, Posted: 8, Available: 8},
			},
		}
	}
	tests := []struct {
		name    string
		mutate  func(f *bank.Final)
		want    Verdict
		example string
	}{
		{name: "a consistent final state is valid", mutate: func(*bank.Final) {}, want: Valid},
		{name: "a transfer applied twice to an account is invalid", mutate: func(f *bank.Final) {
			f.Histories["c1"] = append(f.Histories["c1"], entry("m", 4, 0, 3))
			f.Balances["c1"] = ledger.Balance{CreditsPosted: 11, Posted: 11, Available: 11}
		}, want: Invalid, example: "applied twice"},
		{name: "a balance that disagrees with the transfers is invalid", mutate: func(f *bank.Final) {
			f.Balances["c1"] = ledger.Balance{CreditsPosted: 11, Posted: 11, Available: 11}
		}, want: Invalid, example: "account c1"},
		{name: "a history entry of an unknown transfer is invalid", mutate: func(f *bank.Final) {
			f.Histories["c0"] = append(f.Histories["c0"], entry("ghost", 9, 0, 0))
		}, want: Invalid, example: "no client invoked"},
		{name: "an existing transfer missing from a history is invalid", mutate: func(f *bank.Final) {
			f.Histories["c1"] = f.Histories["c1"][:1]
		}, want: Invalid, example: "not in the history of account c1"},
		{name: "an existing transfer that was never invoked is invalid", mutate: func(f *bank.Final) {
			f.Transfers["x"] = &bank.TransferValue{ID: "x", From: "c1", To: "c0", Amount: 1}
		}, want: Invalid, example: "never invoked"},
		{name: "a transfer recorded with another body is invalid", mutate: func(f *bank.Final) {
			f.Transfers["m"] = &bank.TransferValue{ID: "m", From: "c0", To: "c1", Amount: 4}
		}, want: Invalid, example: "invoked as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good()
			tt.mutate(f)
			expect(t, AppliedOnce(model, ops, f), tt.want, tt.example)
		})
	}
}

func TestReplicas(t *testing.T) {
	h := func(node string, index uint64, sum string) ReplicaHash {
		return ReplicaHash{Node: node, AppliedIndex: index, SHA256: sum}
	}
	tests := []struct {
		name    string
		hashes  []ReplicaHash
		err     error
		want    Verdict
		example string
	}{
		{name: "equal hashes at one index are valid", hashes: []ReplicaHash{h("n1", 9, "aa"), h("n2", 9, "aa"), h("n3", 9, "aa")}, want: Valid},
		{name: "different hashes are invalid", hashes: []ReplicaHash{h("n1", 9, "aa"), h("n2", 9, "aa"), h("n3", 9, "bb")}, want: Invalid, example: "n3 and n1 differ"},
		{name: "different indexes are invalid", hashes: []ReplicaHash{h("n1", 9, "aa"), h("n2", 8, "aa"), h("n3", 9, "aa")}, want: Invalid, example: "n2 applied 8"},
		{name: "a missing replica is invalid", hashes: []ReplicaHash{h("n1", 9, "aa"), h("n2", 9, "aa")}, want: Invalid, example: "2 of 3"},
		{name: "an error collecting is invalid", hashes: []ReplicaHash{h("n1", 9, "aa"), h("n2", 9, "aa"), h("n3", 9, "aa")}, err: errors.New("timeout"), want: Invalid, example: "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, Replicas(tt.hashes, 3, tt.err), tt.want, tt.example)
		})
	}
}

func TestOverall(t *testing.T) {
	v, first := Overall([]Result{{Name: "a", Verdict: Valid}, {Name: "b", Verdict: Unknown}, {Name: "c", Verdict: Invalid}})
	if v != Invalid || first.Name != "c" {
		t.Fatalf("overall %s %v, want invalid c", v, first)
	}
	if v, _ := Overall([]Result{{Verdict: Valid}, {Verdict: Unknown}}); v != Unknown {
		t.Fatalf("overall %s, want unknown", v)
	}
	if v, first := Overall([]Result{{Verdict: Valid}}); v != Valid || first != nil {
		t.Fatalf("overall %s %v, want valid", v, first)
	}
}
