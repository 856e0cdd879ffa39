package checker

import (
	"strings"
	"testing"

	"github.com/bankd/bankd/jepsen/fakelnd"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/lightning"
	"github.com/bankd/bankd/lnpool/lnd"
)

// lightningCase is a small run that ended well: pool-1 took an invoice of 5,000 sat for alice
// (credited once) and paid an outside invoice of 2,000 sat for her; pool-2 failed to pay
// another; an internal payment moved money inside the ledger. Every book agrees with the
// network's record.
func lightningCase() ([]history.Op, *lightning.Final) {
	ops := []history.Op{
		{Index: 0, Process: 1, Type: history.Invoke, F: lightning.FRead},
		{Index: 1, Process: 1, Type: history.OK, F: lightning.FRead, Value: lightning.ReadValue{Balances: map[string]lightning.Balance{
			"alice": {Posted: 5_000, Available: 5_000}, "bob": {Posted: 0, Available: 0}}}},
	}
	final := &lightning.Final{
		Settled: true,
		Payments: map[string]lightning.Payment{
			"pay-1": {ID: "pay-1", Account: "alice", Hash: "h2", Node: "pool-1", State: stateSucceeded, Amount: 2_000},
			"pay-2": {ID: "pay-2", Account: "alice", Hash: "h3", Node: "pool-2", State: stateFailed, Amount: 1_000},
			"pay-3": {ID: "pay-3", Account: "alice", Hash: "h4", State: stateSucceeded, Internal: true, Amount: 500},
		},
		Balances: map[string]lightning.Balance{"alice": {Posted: 2_500, Available: 2_500}, "bob": {Posted: 500, Available: 500}},
		Nodes: map[string]lightning.NodeBooks{
			"pool-1": {Posted: 1_003_000, Credits: []lightning.Credit{{TransferID: "lni:h1", Hash: "h1", Amount: 5_000}}},
			"pool-2": {Posted: 1_000_000},
		},
		Record: fakelnd.Record{
			Nodes: []fakelnd.NodeRecord{
				{Name: "pool-1", LocalMsat: 1_003_000_000,
					Payments: []lnd.Payment{{Hash: "h2", Status: lnd.PaymentSucceeded, ValueMsat: 2_000_000}},
					Invoices: []lnd.Invoice{{Hash: "h1", State: lnd.InvoiceSettled, AmtPaidMsat: 5_000_000, AddIndex: 1, SettleIndex: 1}}},
				{Name: "pool-2", LocalMsat: 1_000_000_000,
					Payments: []lnd.Payment{{Hash: "h3", Status: lnd.PaymentFailed, ValueMsat: 1_000_000}}},
			},
			Outside: []fakelnd.OutsideRecord{{Hash: "h2", Payments: 1, PaidMsat: 2_000_000}},
		},
	}
	return ops, final
}

func TestLightningCheckers(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(ops []history.Op, f *lightning.Final) []history.Op
		checker string // the checker that must find it ("" for a valid run)
		want    string // the start of its counter-example
	}{
		{"a run where every book agrees", nil, "", ""},

		{"a hash paid by two pool nodes", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Record.Nodes[1].Payments = append(f.Record.Nodes[1].Payments, lnd.Payment{Hash: "h2", Status: lnd.PaymentSucceeded})
			return ops
		}, NameLnPayOnce, "hash h2 paid by 2 pool nodes: pool-1, pool-2"},
		{"an outside invoice paid twice", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Record.Outside[0].Payments, f.Record.Outside[0].PaidMsat = 2, 4_000_000
			return ops
		}, NameLnPayOnce, "the outside invoice h2 took 2 payments"},
		{"a payment bankd holds succeeded that its node failed", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Record.Nodes[0].Payments[0].Status = lnd.PaymentFailed
			return ops
		}, NameLnPayOnce, "payment pay-1 is SUCCEEDED in bankd on pool-1"},

		{"a settlement credited twice", func(ops []history.Op, f *lightning.Final) []history.Op {
			b := f.Nodes["pool-1"]
			b.Credits = append(b.Credits, lightning.Credit{TransferID: "lnu:pool-1:1", Hash: "h1", Amount: 5_000})
			f.Nodes["pool-1"] = b
			return ops
		}, NameLnCreditOnce, "pool-1 settled invoice h1 once"},
		{"a settlement never credited", func(ops []history.Op, f *lightning.Final) []history.Op {
			b := f.Nodes["pool-1"]
			b.Credits = nil
			f.Nodes["pool-1"] = b
			return ops
		}, NameLnCreditOnce, "pool-1 settled invoice h1"},
		{"a settlement credited for the wrong amount", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Nodes["pool-1"].Credits[0].Amount = 4_999
			return ops
		}, NameLnCreditOnce, "pool-1 settled invoice h1 for 5000000 msat and bankd credited 4999 sat"},
		{"a credit for a hash the node never settled", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Record.Nodes[0].Invoices[0].State = lnd.InvoiceOpen
			return ops
		}, NameLnCreditOnce, "bankd credited lni:h1 5000 sat on pool-1, a hash that node never settled"},

		{"a payment failed while its node still has it in flight", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Record.Nodes[1].Payments[0].Status = lnd.PaymentInFlight
			return ops
		}, NameLnNoEarlyFailure, "payment pay-2 (hash h3) is FAILED in bankd"},
		{"a payment failed that its node paid", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Record.Nodes[1].Payments[0].Status = lnd.PaymentSucceeded
			return ops
		}, NameLnNoEarlyFailure, "payment pay-2 (hash h3) is FAILED in bankd"},

		{"a negative balance in a read", func(ops []history.Op, f *lightning.Final) []history.Op {
			ops[1].Value = lightning.ReadValue{Balances: map[string]lightning.Balance{"alice": {Posted: 100, Available: -1}}}
			return ops
		}, NameLnBalances, "alice has posted 100, available -1 (read"},
		{"a negative balance at the end", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Balances["bob"] = lightning.Balance{Posted: -500, Available: -500}
			return ops
		}, NameLnBalances, "bob has posted -500, available -500 (final)"},

		{"a node's books off by a satoshi", func(ops []history.Op, f *lightning.Final) []history.Op {
			b := f.Nodes["pool-2"]
			b.Posted--
			f.Nodes["pool-2"] = b
			return ops
		}, NameLnReconciliation, "pool-2: ledger 999999 sat posted"},
		{"a node's books still pending", func(ops []history.Op, f *lightning.Final) []history.Op {
			b := f.Nodes["pool-1"]
			b.Pending = 2_000
			f.Nodes["pool-1"] = b
			return ops
		}, NameLnReconciliation, "pool-1: ledger 1003000 sat posted (2000 pending)"},
		{"a pool node without an account", func(ops []history.Op, f *lightning.Final) []history.Op {
			delete(f.Nodes, "pool-2")
			return ops
		}, NameLnReconciliation, "bankd has no account for pool node pool-2"},
		{"a run that did not settle", func(ops []history.Op, f *lightning.Final) []history.Op {
			f.Settled = false
			return ops
		}, NameLnReconciliation, "not settled at the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops, final := lightningCase()
			if tt.mutate != nil {
				ops = tt.mutate(ops, final)
			}
			results := Lightning(ops, final)
			if len(results) != 5 {
				t.Fatalf("%d results, want one per checker", len(results))
			}
			for _, r := range results {
				switch {
				case r.Name == tt.checker:
					if r.Verdict != Invalid || !strings.HasPrefix(r.CounterExample, tt.want) {
						t.Errorf("%s: got %+v, want invalid starting %q", r.Name, r, tt.want)
					}
				case tt.checker == "":
					if r.Verdict != Valid || r.Checked == 0 {
						t.Errorf("%s: got %+v, want valid with something checked", r.Name, r)
					}
				}
			}
		})
	}
}

func TestLightningCheckersWithoutFinal(t *testing.T) {
	ops, _ := lightningCase()
	for _, r := range Lightning(ops, nil) {
		want := Unknown
		if r.Name == NameLnBalances {
			want = Valid // the reads alone are judged
		}
		if r.Verdict != want {
			t.Errorf("%s: got %+v, want %s", r.Name, r, want)
		}
	}
}
