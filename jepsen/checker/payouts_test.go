package checker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/jepsen/fakechain"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/payouts"
)

// payoutCase is a synthetic payouts run: three withdrawals of customer c0 (w1 paid, w2 refused,
// w3 cancelled) and one of c1 (w4 paid after an unknown first attempt).
type payoutCase struct {
	model payouts.Model
	ops   []history.Op
	final *payouts.Final
	addr  map[string]string
	// script is the output script (hex) of a withdrawal's address.
	script func(id string) string
}

func testAddress(t *testing.T, b byte) string {
	t.Helper()
	h := make([]byte, 20)
	h[0] = b
	a, err := btcutil.NewAddressWitnessPubKeyHash(h, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return a.EncodeAddress()
}

func newPayoutCase(t *testing.T) *payoutCase {
	t.Helper()
	pc := &payoutCase{
		model: payouts.Model{Customers: []string{"c0", "c1"}, Funding: 100_000, FeeSat: 100},
		addr:  map[string]string{"w1": testAddress(t, 1), "w2": testAddress(t, 2), "w3": testAddress(t, 3), "w4": testAddress(t, 4)},
	}
	h, err := history.NewRecorder(time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	req := func(process int, id, acc string, amount int64, attempt int, typ history.Type, code string) {
		v := payouts.Value{ID: id, Account: acc, Address: pc.addr[id], Amount: amount, Attempt: attempt}
		inv := h.Invoke(process, payouts.FRequest, v, "n1")
		var err error
		switch typ {
		case history.OK:
			v.State = "PAYOUT_STATE_QUEUED"
		case history.Fail:
			v.Code, err = code, errors.New("refused")
		case history.Info:
			err = errors.New("timeout")
		}
		h.Complete(inv, typ, v, err)
	}
	req(0, "w1", "c0", 10_000, 1, history.OK, "")
	req(0, "w2", "c0", 500_000, 1, history.Fail, "RESULT_CODE_INSUFFICIENT_FUNDS")
	req(0, "w3", "c0", 20_000, 1, history.OK, "")
	inv := h.Invoke(0, payouts.FCancel, payouts.Value{ID: "w3", Attempt: 1}, "n2")
	h.Complete(inv, history.OK, payouts.Value{ID: "w3", Attempt: 1, State: "PAYOUT_STATE_CANCELLED"}, nil)
	req(1, "w4", "c1", 30_000, 1, history.Info, "")
	req(2, "w4", "c1", 30_000, 2, history.OK, "")
	pc.ops = h.Ops()

	script := func(id string) string {
		s, err := payoutScript(pc.addr[id])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pc.final = &payouts.Final{
		Settled: true,
		Payouts: map[string]payouts.Payout{
			"w1": {ID: "w1", Account: "c0", Amount: 10_000, Fee: 100, State: "PAYOUT_STATE_PAID", Txid: "aa", Vout: 0},
			"w3": {ID: "w3", Account: "c0", Amount: 20_000, Fee: 100, State: "PAYOUT_STATE_CANCELLED"},
			"w4": {ID: "w4", Account: "c1", Amount: 30_000, Fee: 100, State: "PAYOUT_STATE_PAID", Txid: "aa", Vout: 1},
		},
		Balances: map[string]payouts.Balance{"c0": {Posted: 100_000 - 10_100}, "c1": {Posted: 100_000 - 30_100}},
		Chain: []fakechain.Tx{
			{Txid: "cb", Height: 6, Coinbase: true, Outputs: []fakechain.Output{{Vout: 0, Value: 5_000_000_000, Script: "51"}}},
			{Txid: "ff", Height: 6, Funding: true, Outputs: []fakechain.Output{{Vout: 0, Value: 1_000_000, Script: "0014" + strings.Repeat("ee", 20)}}},
			{Txid: "aa", Height: 7, Outputs: []fakechain.Output{
				{Vout: 0, Value: 10_000, Script: script("w1")},
				{Vout: 1, Value: 30_000, Script: script("w4")},
				{Vout: 2, Value: 959_000, Script: "0014" + strings.Repeat("dd", 20)},
			}},
		},
	}
	pc.script = script
	return pc
}

func TestPayoutsChecker(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, pc *payoutCase)
		want   string // "" for valid
	}{
		{"every withdrawal paid once", func(*testing.T, *payoutCase) {}, ""},
		{"a withdrawal paid twice", func(t *testing.T, pc *payoutCase) {
			// A second transaction pays w1 again (as a broadcast of a second plan would).
			pc.final.Chain = append(pc.final.Chain, fakechain.Tx{Txid: "bb", Height: 8, Outputs: []fakechain.Output{
				{Vout: 0, Value: 10_000, Script: pc.script("w1")}}})
			pc.final.Balances["c0"] = payouts.Balance{Posted: 100_000 - 2*10_100}
		}, "withdrawal w1 (10000 sat to "},
		{"an acknowledged withdrawal never paid", func(t *testing.T, pc *payoutCase) {
			pc.final.Chain[2].Outputs = pc.final.Chain[2].Outputs[:1] // w4's output is gone
			p := pc.final.Payouts["w4"]
			p.State = "PAYOUT_STATE_FAILED"
			pc.final.Payouts["w4"] = p
			pc.final.Balances["c1"] = payouts.Balance{Posted: 100_000}
		}, "withdrawal w4 acknowledged ok"},
		{"the cluster says paid, the chain does not", func(t *testing.T, pc *payoutCase) {
			pc.final.Chain[2].Outputs = pc.final.Chain[2].Outputs[:1]
			pc.final.Balances["c1"] = payouts.Balance{Posted: 100_000}
		}, "withdrawal w4 acknowledged ok"},
		{"a cancelled withdrawal paid", func(t *testing.T, pc *payoutCase) {
			pc.final.Chain[2].Outputs = append(pc.final.Chain[2].Outputs, fakechain.Output{Vout: 3, Value: 20_000, Script: pc.script("w3")})
			pc.final.Balances["c0"] = payouts.Balance{Posted: 100_000 - 10_100 - 20_100}
		}, "withdrawal w3 acknowledged cancelled"},
		{"a refused withdrawal paid", func(t *testing.T, pc *payoutCase) {
			pc.final.Chain[2].Outputs = append(pc.final.Chain[2].Outputs, fakechain.Output{Vout: 3, Value: 500_000, Script: pc.script("w2")})
			pc.final.Balances["c0"] = payouts.Balance{Posted: 100_000 - 10_100 - 500_100}
		}, "withdrawal w2 refused"},
		{"a balance charged twice", func(t *testing.T, pc *payoutCase) {
			pc.final.Balances["c0"] = payouts.Balance{Posted: 100_000 - 2*10_100}
		}, "customer c0: posted 79800"},
		{"a hold left pending", func(t *testing.T, pc *payoutCase) {
			pc.final.Balances["c1"] = payouts.Balance{Posted: 100_000 - 30_100, DebitsPending: 500}
		}, "customer c1"},
		{"a withdrawal not settled", func(t *testing.T, pc *payoutCase) {
			pc.final.Settled = false
			p := pc.final.Payouts["w3"]
			p.State = "PAYOUT_STATE_BATCHED"
			pc.final.Payouts["w3"] = p
		}, "withdrawal w3 still BATCHED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc := newPayoutCase(t)
			tt.mutate(t, pc)
			r := Payouts(pc.model, pc.ops, pc.final)
			if tt.want == "" {
				if r.Verdict != Valid || r.Checked != 4 {
					t.Fatalf("got %+v, want valid with 4 withdrawals checked", r)
				}
				return
			}
			if r.Verdict != Invalid || !strings.HasPrefix(r.CounterExample, tt.want) {
				t.Fatalf("got %+v, want invalid starting %q", r, tt.want)
			}
		})
	}
}

func TestPayoutsCheckerWithoutFinalIsUnknown(t *testing.T) {
	pc := newPayoutCase(t)
	if r := Payouts(pc.model, pc.ops, nil); r.Verdict != Unknown {
		t.Fatalf("got %+v, want unknown", r)
	}
}
