package checker

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/ledger"
	"github.com/bankd/bankd/jepsen/workload/payouts"
)

// NamePayouts is the payouts workload's checker.
const NamePayouts = "payouts"

// Payouts is the payouts workload's checker. A withdrawal is identified on the chain by its
// unique address and amount; the chain's own record of what it mined (final.Chain), not
// bankd's, says what was paid. It checks that:
//
//   - no withdrawal is paid by more than one mined output (never paid twice);
//   - every withdrawal acknowledged ok and not acknowledged cancelled is paid exactly once (none
//     lost), unless a cancel of unknown outcome took effect (the cluster says CANCELLED);
//   - no withdrawal refused with a result code, or acknowledged cancelled, is paid, and none the
//     cluster holds as CANCELLED, REJECTED or FAILED;
//   - every withdrawal the cluster holds as PAID is paid by the output it names; none is left
//     unsettled (not final) at the end;
//   - each customer's final posted balance is its funding less amount + fee of each of its
//     withdrawals paid on the chain, with no hold pending.
//
// Without a final state nothing can be judged: the verdict is unknown.
func Payouts(model payouts.Model, ops []history.Op, final *payouts.Final) Result {
	c := newCollector(NamePayouts)
	pairs, err := history.Pairs(ops)
	if err != nil {
		c.violation("malformed history: %v", err)
		return c.result()
	}
	type withdrawal struct {
		sent           payouts.Value
		acked, refused *history.Op
		cancelled      *history.Op // an ok cancel
		cancelInvoked  bool
		address        string
	}
	ws := map[string]*withdrawal{}
	var order []string
	get := func(id string) *withdrawal {
		w := ws[id]
		if w == nil {
			w = &withdrawal{}
			ws[id] = w
			order = append(order, id)
		}
		return w
	}
	for _, p := range pairs {
		v, ok := p.Invoke.Value.(payouts.Value)
		if !ok {
			c.violation("%s without a value (%s)", p.Invoke.F, at(p.Invoke))
			continue
		}
		w := get(v.ID)
		switch p.Invoke.F {
		case payouts.FRequest:
			if w.address == "" {
				w.sent, w.address = v, v.Address
			} else if w.sent.Address != v.Address || w.sent.Amount != v.Amount || w.sent.Account != v.Account {
				c.violation("withdrawal %s resent with another body (%s)", v.ID, at(p.Invoke))
			}
			switch p.Outcome() {
			case history.OK:
				if w.acked == nil {
					w.acked = p.Complete
				}
			case history.Fail:
				if cv, ok := p.Complete.Value.(payouts.Value); ok && cv.Code != "" && w.refused == nil {
					w.refused = p.Complete
				}
			}
		case payouts.FCancel:
			w.cancelInvoked = true
			if p.Outcome() == history.OK && w.cancelled == nil {
				w.cancelled = p.Complete
			}
		}
	}
	if final == nil {
		return Result{Name: NamePayouts, Verdict: Unknown, CounterExample: "no final state"}
	}

	// Every output of every mined transaction but coinbases and fundings, by script and amount.
	type paid struct {
		txid   string
		vout   uint32
		height int64
	}
	outputs := map[string][]paid{}
	key := func(script string, amount int64) string { return fmt.Sprintf("%s/%d", script, amount) }
	for _, tx := range final.Chain {
		if tx.Coinbase || tx.Funding {
			continue
		}
		for _, o := range tx.Outputs {
			k := key(o.Script, o.Value)
			outputs[k] = append(outputs[k], paid{tx.Txid, o.Vout, tx.Height})
		}
	}

	spent := map[string]int64{}
	for _, id := range order {
		w := ws[id]
		if w.address == "" {
			c.violation("withdrawal %s cancelled but never requested", id)
			continue
		}
		c.r.Checked++
		script, err := payoutScript(w.address)
		if err != nil {
			c.violation("withdrawal %s: address %s: %v", id, w.address, err)
			continue
		}
		pays := outputs[key(script, w.sent.Amount)]
		where := make([]string, len(pays))
		for i, p := range pays {
			where[i] = fmt.Sprintf("%s:%d (height %d)", p.txid, p.vout, p.height)
		}
		cp, known := final.Payouts[id]
		state := "absent"
		if known {
			state = strings.TrimPrefix(cp.State, "PAYOUT_STATE_")
		}
		switch {
		case len(pays) > 1:
			c.violation("withdrawal %s (%d sat to %s) paid %d times: %s", id, w.sent.Amount, w.address, len(pays), strings.Join(where, ", "))
		case len(pays) == 1 && w.cancelled != nil:
			c.violation("withdrawal %s acknowledged cancelled (%s) is paid by %s", id, at(*w.cancelled), where[0])
		case len(pays) == 1 && w.refused != nil && w.acked == nil:
			c.violation("withdrawal %s refused (%s: %s) is paid by %s", id, at(*w.refused), w.refused.Error, where[0])
		case len(pays) == 1 && known && cp.State != bankdv1.PayoutState_PAYOUT_STATE_PAID.String():
			c.violation("withdrawal %s is paid by %s but the cluster holds it as %s", id, where[0], state)
		case len(pays) == 1 && !known:
			c.violation("withdrawal %s is paid by %s but the cluster does not know it", id, where[0])
		case len(pays) == 0 && w.acked != nil && w.cancelled == nil &&
			!(w.cancelInvoked && cp.State == bankdv1.PayoutState_PAYOUT_STATE_CANCELLED.String()):
			c.violation("withdrawal %s acknowledged ok (%s) is not paid on the chain (the cluster holds it as %s)", id, at(*w.acked), state)
		}
		if known && cp.State == bankdv1.PayoutState_PAYOUT_STATE_PAID.String() {
			found := false
			for _, p := range pays {
				found = found || (p.txid == cp.Txid && p.vout == cp.Vout)
			}
			if !found {
				c.violation("withdrawal %s is PAID by %s:%d in the cluster, but no mined output there pays %d sat to %s", id, cp.Txid, cp.Vout, w.sent.Amount, w.address)
			}
		}
		if known && !final.Settled && !payoutFinal(cp.State) {
			c.violation("withdrawal %s still %s when the run ended", id, state)
		}
		if len(pays) > 0 {
			spent[w.sent.Account] += int64(len(pays)) * (w.sent.Amount + model.FeeSat)
		}
	}
	for _, id := range ledger.SortedIDs(final.Payouts) {
		if _, invoked := ws[id]; !invoked {
			c.violation("the cluster holds withdrawal %s that was never requested", id)
		}
	}
	for _, acc := range model.Customers {
		b, ok := final.Balances[acc]
		if !ok {
			c.violation("final balances lack customer %s", acc)
			continue
		}
		if want := model.Funding - spent[acc]; b.Posted != want || b.DebitsPending != 0 {
			c.violation("customer %s: posted %d with %d pending, want %d = funding %d - %d paid on the chain, none pending",
				acc, b.Posted, b.DebitsPending, want, model.Funding, spent[acc])
		}
	}
	return c.result()
}

func payoutFinal(state string) bool {
	switch state {
	case bankdv1.PayoutState_PAYOUT_STATE_PAID.String(), bankdv1.PayoutState_PAYOUT_STATE_CANCELLED.String(),
		bankdv1.PayoutState_PAYOUT_STATE_REJECTED.String(), bankdv1.PayoutState_PAYOUT_STATE_FAILED.String():
		return true
	}
	return false
}

// payoutScript is the output script, in hex, of a regtest address.
func payoutScript(address string) (string, error) {
	addr, err := btcutil.DecodeAddress(address, &chaincfg.RegressionNetParams)
	if err != nil {
		return "", err
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(script), nil
}
