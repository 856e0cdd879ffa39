package checker

import (
	"testing"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/idempotent"
	"github.com/bankd/bankd/jepsen/workload/ledger"
)

const idemAmount = 7

// idem writes hand-made idempotent histories.
type idem struct{ b builder }

// send records one attempt of id: ok with the answer's index and replayed, or another outcome.
func (h *idem) send(process int, id string, outcome history.Type, index uint64, replayed bool) *idem {
	v := idempotent.Value{ID: id, Amount: idemAmount, Attempt: 1}
	h.b.add(process, history.Invoke, idempotent.FTransfer, v)
	if outcome == history.OK {
		v.Index, v.Replayed = index, replayed
	}
	h.b.add(process, outcome, idempotent.FTransfer, v)
	return h
}

func (h *idem) refused(process int, id, code string) *idem {
	v := idempotent.Value{ID: id, Amount: idemAmount, Attempt: 1}
	h.b.add(process, history.Invoke, idempotent.FTransfer, v)
	v.Code = code
	h.b.add(process, history.Fail, idempotent.FTransfer, v)
	return h
}

// finalOf builds the final state in which the given ids exist at the given indexes, each once
// in both histories, with balances to match.
func finalOf(indexes map[string]uint64) *idempotent.Final {
	f := &idempotent.Final{Transfers: map[string]*ledger.Transfer{}, Balances: map[string]ledger.Balance{},
		Histories: map[string][]ledger.Entry{}}
	var n int64
	for _, id := range ledger.SortedIDs(indexes) {
		ix := indexes[id]
		if ix == 0 {
			f.Transfers[id] = nil
			continue
		}
		n++
		f.Transfers[id] = &ledger.Transfer{ID: id, From: idempotent.SrcID, To: idempotent.DstID, Amount: idemAmount, Index: ix}
		f.Histories[idempotent.SrcID] = append(f.Histories[idempotent.SrcID], ledger.Entry{TransferID: id, Index: ix, DebitsPostedDelta: idemAmount})
		f.Histories[idempotent.DstID] = append(f.Histories[idempotent.DstID], ledger.Entry{TransferID: id, Index: ix, CreditsPostedDelta: idemAmount})
	}
	f.Balances[idempotent.SrcID] = ledger.Balance{DebitsPosted: n * idemAmount, Posted: n * idemAmount}
	f.Balances[idempotent.DstID] = ledger.Balance{CreditsPosted: n * idemAmount, Posted: n * idemAmount}
	return f
}

func TestIdempotentAppliedOnce(t *testing.T) {
	retried := func() *idem {
		// a: unknown, not applied, then ok; b: unknown but applied, then ok replayed; both
		// resent later and replayed.
		return new(idem).
			send(0, "a", history.Info, 0, false).
			send(1, "a", history.Fail, 0, false).
			send(1, "a", history.OK, 10, false).
			send(2, "b", history.Info, 0, false).
			send(3, "b", history.OK, 11, true).
			send(1, "a", history.OK, 10, true).
			send(3, "b", history.OK, 11, true)
	}
	doubled := finalOf(map[string]uint64{"a": 10, "b": 11})
	doubled.Histories[idempotent.DstID] = append(doubled.Histories[idempotent.DstID],
		ledger.Entry{TransferID: "a", Index: 12, CreditsPostedDelta: idemAmount})
	doubled.Balances[idempotent.DstID] = ledger.Balance{CreditsPosted: 3 * idemAmount, Posted: 3 * idemAmount}
	tooMuch := finalOf(map[string]uint64{"a": 10, "b": 11})
	tooMuch.Balances[idempotent.SrcID] = ledger.Balance{DebitsPosted: 3 * idemAmount, Posted: 3 * idemAmount}
	foreign := finalOf(map[string]uint64{"a": 10, "b": 11})
	foreign.Transfers["z"] = &ledger.Transfer{ID: "z", From: idempotent.SrcID, To: idempotent.DstID, Amount: idemAmount, Index: 5}
	tests := []struct {
		name    string
		ops     []history.Op
		final   *idempotent.Final
		want    Verdict
		example string
	}{
		{"retries and replays of ids applied once", retried().b.ops, finalOf(map[string]uint64{"a": 10, "b": 11}), Valid, ""},
		{"answers alone, without a final state", retried().b.ops, nil, Valid, ""},
		{"an id whose outcome stayed unknown may exist or not", new(idem).
			send(0, "a", history.OK, 10, false).
			send(1, "u", history.Info, 0, false).
			send(2, "v", history.Info, 0, false).b.ops,
			finalOf(map[string]uint64{"a": 10, "u": 12, "v": 0}), Valid, ""},
		{"a second fresh apply of an acknowledged id", new(idem).
			send(0, "a", history.OK, 10, false).
			send(1, "a", history.OK, 14, false).b.ops, nil, Invalid, "transfer a applied again"},
		{"a replay with another index", new(idem).
			send(0, "a", history.OK, 10, false).
			send(1, "a", history.OK, 14, true).b.ops, nil, Invalid, "replayed with index 14"},
		{"a replayed first ok, then a fresh one", new(idem).
			send(0, "a", history.Info, 0, false).
			send(1, "a", history.OK, 10, true).
			send(2, "a", history.OK, 10, false).b.ops, nil, Invalid, "applied again"},
		{"an id applied twice at the end", retried().b.ops, doubled, Invalid, "transfer a applied twice to account idem-dst"},
		{"balances worth more ids than exist", retried().b.ops, tooMuch, Invalid, "account idem-src: balance debits/credits 21/0"},
		{"an acknowledged id is missing at the end", retried().b.ops, finalOf(map[string]uint64{"a": 10, "b": 0}), Invalid, "transfer b acknowledged ok"},
		{"an acknowledged id exists at another index", retried().b.ops, finalOf(map[string]uint64{"a": 10, "b": 12}), Invalid, "acknowledged at index 11"},
		{"an id no one sent exists", retried().b.ops, foreign, Invalid, "transfer z exists but was never invoked"},
		{"a refused id exists", new(idem).
			send(0, "a", history.Info, 0, false).
			refused(1, "a", "RESULT_CODE_ALREADY_EXISTS").b.ops,
			finalOf(map[string]uint64{"a": 10}), Invalid, "was refused"},
		{"a refused id also acknowledged", new(idem).
			send(0, "a", history.OK, 10, false).
			refused(1, "a", "RESULT_CODE_ALREADY_EXISTS").b.ops, nil, Invalid, "was refused"},
		{"an empty history proves nothing", nil, finalOf(nil), Unknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := IdempotentAppliedOnce(idemAmount, tt.ops, tt.final)
			t.Logf("%s: %s", r.Verdict, r.CounterExample)
			expect(t, r, tt.want, tt.example)
		})
	}
}
