package checker

import (
	"fmt"
	"strings"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/jepsen/fakelnd"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/lightning"
	"github.com/bankd/bankd/lnpool/lnd"
)

// Names of the Lightning workload's checkers.
const (
	NameLnPayOnce        = "ln-pay-once"
	NameLnCreditOnce     = "ln-credit-once"
	NameLnNoEarlyFailure = "ln-no-early-failure"
	NameLnBalances       = "ln-balances"
	NameLnReconciliation = "ln-reconciliation"
)

// Lightning runs every checker of the Lightning workload. final may be nil (the final reads
// failed): only what the history alone shows is judged then.
func Lightning(ops []history.Op, final *lightning.Final) []Result {
	if final == nil {
		nf := func(name string) Result {
			return Result{Name: name, Verdict: Unknown, CounterExample: "no final state"}
		}
		return []Result{nf(NameLnPayOnce), nf(NameLnCreditOnce), nf(NameLnNoEarlyFailure), LnBalances(ops, nil), nf(NameLnReconciliation)}
	}
	return []Result{LnPayOnce(final), LnCreditOnce(final), LnNoEarlyFailure(final), LnBalances(ops, final), LnReconciliation(final)}
}

var (
	stateSucceeded = bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED.String()
	stateFailed    = bankdv1.PaymentState_PAYMENT_STATE_FAILED.String()
)

// nodePayment finds a node's record of a hash in the network's record.
func nodePayment(n fakelnd.NodeRecord, hash string) (lnd.Payment, bool) {
	for _, p := range n.Payments {
		if p.Hash == hash {
			return p, true
		}
	}
	return lnd.Payment{}, false
}

// LnPayOnce checks, from the simulated network's own record (not bankd's), that no payment
// hash was paid by more than one pool node nor taken more than once by the outside world,
// and that every payment bankd holds SUCCEEDED on a node was made by that node.
func LnPayOnce(final *lightning.Final) Result {
	c := newCollector(NameLnPayOnce)
	payers := map[string][]string{} // hash -> nodes whose payment of it succeeded
	for _, n := range final.Record.Nodes {
		for _, p := range n.Payments {
			if p.Status == lnd.PaymentSucceeded {
				payers[p.Hash] = append(payers[p.Hash], n.Name)
			}
		}
	}
	for _, hash := range sortedKeys(payers) {
		c.r.Checked++
		if nodes := payers[hash]; len(nodes) > 1 {
			c.violation("hash %s paid by %d pool nodes: %s%s", hash, len(nodes), strings.Join(nodes, ", "), payersOf(final, hash))
		}
	}
	for _, o := range final.Record.Outside {
		if o.Payments > 1 {
			c.violation("the outside invoice %s took %d payments (%d msat)%s", o.Hash, o.Payments, o.PaidMsat, payersOf(final, o.Hash))
		}
	}
	for _, id := range sortedKeys(final.Payments) {
		p := final.Payments[id]
		if p.Internal || p.State != stateSucceeded {
			continue
		}
		c.r.Checked++
		n, ok := recordOf(final, p.Node)
		np, found := nodePayment(n, p.Hash)
		if !ok || !found || np.Status != lnd.PaymentSucceeded {
			c.violation("payment %s is SUCCEEDED in bankd on %s, but that node's record of hash %s is %v", id, p.Node, p.Hash, np.Status)
		}
	}
	return c.result()
}

// payersOf names the bankd payments of a hash, for a counter-example.
func payersOf(final *lightning.Final, hash string) string {
	var ids []string
	for _, id := range sortedKeys(final.Payments) {
		if p := final.Payments[id]; p.Hash == hash {
			ids = append(ids, fmt.Sprintf("%s (bankd: %s on %s)", id, p.State, p.Node))
		}
	}
	if len(ids) == 0 {
		return ""
	}
	return "; bankd's payments of it: " + strings.Join(ids, ", ")
}

func recordOf(final *lightning.Final, node string) (fakelnd.NodeRecord, bool) {
	for _, n := range final.Record.Nodes {
		if n.Name == node {
			return n, true
		}
	}
	return fakelnd.NodeRecord{}, false
}

// LnCreditOnce checks that every invoice the network settled (its record of each node's
// invoices) is booked exactly once on that node's ledger account (lni:<hash> to the customer,
// or lnu:<node>:<settle index> as unattributed money), and that nothing is booked for a hash
// the node never settled.
func LnCreditOnce(final *lightning.Final) Result {
	c := newCollector(NameLnCreditOnce)
	for _, n := range final.Record.Nodes {
		books := final.Nodes[n.Name]
		credits := map[string][]lightning.Credit{}
		for _, cr := range books.Credits {
			credits[cr.Hash] = append(credits[cr.Hash], cr)
		}
		settled := map[string]bool{}
		for _, inv := range n.Invoices {
			if inv.State != lnd.InvoiceSettled {
				continue
			}
			settled[inv.Hash] = true
			c.r.Checked++
			got := credits[inv.Hash]
			switch {
			case len(got) == 0:
				c.violation("%s settled invoice %s (settle index %d, %d msat) and bankd never credited it", n.Name, inv.Hash, inv.SettleIndex, inv.AmtPaidMsat)
			case len(got) > 1:
				c.violation("%s settled invoice %s once (settle index %d, %d msat) and bankd credited it %d times: %s", n.Name, inv.Hash, inv.SettleIndex, inv.AmtPaidMsat, len(got), describeCredits(got))
			case got[0].Amount*1000 != inv.AmtPaidMsat:
				c.violation("%s settled invoice %s for %d msat and bankd credited %d sat (%s)", n.Name, inv.Hash, inv.AmtPaidMsat, got[0].Amount, got[0].TransferID)
			}
		}
		for _, hash := range sortedKeys(credits) {
			if !settled[hash] {
				c.violation("bankd credited %s on %s, a hash that node never settled", describeCredits(credits[hash]), n.Name)
			}
		}
	}
	return c.result()
}

func describeCredits(cs []lightning.Credit) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %d sat", c.TransferID, c.Amount))
	}
	return strings.Join(parts, ", ")
}

// LnNoEarlyFailure checks that no payment bankd holds FAILED could still complete, or did: its
// node's record of the hash must be failed (or absent: never sent), never succeeded or still in
// flight.
func LnNoEarlyFailure(final *lightning.Final) Result {
	c := newCollector(NameLnNoEarlyFailure)
	for _, id := range sortedKeys(final.Payments) {
		p := final.Payments[id]
		if p.Internal {
			continue
		}
		c.r.Checked++
		if p.State != stateFailed {
			continue
		}
		n, _ := recordOf(final, p.Node)
		np, found := nodePayment(n, p.Hash)
		if found && (np.Status == lnd.PaymentSucceeded || !np.Status.Final()) {
			c.violation("payment %s (hash %s) is FAILED in bankd, but %s's payment of it is %s: the customer got the money back and the node paid", id, p.Hash, p.Node, np.Status)
		}
	}
	return c.result()
}

// LnBalances checks that no customer balance is ever negative: neither posted nor available
// (posted less what is held for payments in flight), in every ok read and at the end.
func LnBalances(ops []history.Op, final *lightning.Final) Result {
	c := newCollector(NameLnBalances)
	check := func(bs map[string]lightning.Balance, where string) {
		c.r.Checked++
		for _, acc := range sortedKeys(bs) {
			if b := bs[acc]; b.Posted < 0 || b.Available < 0 {
				c.violation("%s has posted %d, available %d (%s)", acc, b.Posted, b.Available, where)
			}
		}
	}
	for _, op := range ops {
		if op.Type != history.OK || op.F != lightning.FRead {
			continue
		}
		if v, ok := op.Value.(lightning.ReadValue); ok {
			check(v.Balances, "read "+at(op))
		}
	}
	if final != nil {
		check(final.Balances, "final")
	}
	return c.result()
}

// LnReconciliation checks, once the faults are healed and nothing is in flight, that each pool
// node's ledger account equals the channel balance the network holds for it (spendable plus
// outgoing HTLCs), to the millisatoshi, with nothing pending.
func LnReconciliation(final *lightning.Final) Result {
	c := newCollector(NameLnReconciliation)
	if !final.Settled {
		c.violation("not settled at the end: a payment still in flight or a settlement not followed after the settle timeout")
	}
	for _, n := range final.Record.Nodes {
		c.r.Checked++
		books, ok := final.Nodes[n.Name]
		if !ok {
			c.violation("bankd has no account for pool node %s", n.Name)
			continue
		}
		channels := n.LocalMsat + n.UnsettledMsat
		if books.Posted*1000 != channels || books.Pending != 0 {
			c.violation("%s: ledger %d sat posted (%d pending), channels %d msat (difference %d msat)", n.Name, books.Posted, books.Pending, channels, books.Posted*1000-channels)
		}
	}
	return c.result()
}
