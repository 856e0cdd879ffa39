package console

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// templateFuncs format API values for the pages.
var templateFuncs = template.FuncMap{
	"amount": amountText,
	"ms":     msText,
	"enum":   enumText,
	"short":  shortText,
	"decisionForm": func(action, id, csrf string) decisionForm {
		return decisionForm{Action: action, ID: id, CSRF: csrf}
	},
}

// decisionForm is what the approve and reject forms of one row need.
type decisionForm struct{ Action, ID, CSRF string }

// amountText writes an amount in the currency's smallest unit with thousands separators.
func amountText(v int64) string {
	s := strconv.FormatInt(v, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// msText writes a Unix time in milliseconds as UTC; 0 is "—".
func msText(v int64) string {
	if v == 0 {
		return "—"
	}
	return time.UnixMilli(v).UTC().Format("2006-01-02 15:04:05Z")
}

// enumText writes an enum value without its type's prefix, in lower case:
// PAYOUT_STATE_AWAITING_APPROVAL is "awaiting approval".
func enumText(e protoreflect.Enum) string {
	values := e.Descriptor().Values()
	v := values.ByNumber(e.Number())
	if v == nil {
		return strconv.Itoa(int(e.Number()))
	}
	name := string(v.Name())
	if zero := values.ByNumber(0); zero != nil {
		name = strings.TrimPrefix(name, strings.TrimSuffix(string(zero.Name()), "UNSPECIFIED"))
	}
	return strings.ToLower(strings.ReplaceAll(name, "_", " "))
}

// shortText shortens a hash or txid for a table cell.
func shortText(s string) string {
	const keep = 16
	if len(s) <= keep {
		return s
	}
	return s[:keep] + "…"
}

// describeEvent writes one event item as a line of the live feed.
func describeEvent(it *bankdv1.EventItem) string {
	switch k := it.Kind.(type) {
	case *bankdv1.EventItem_AccountCreated:
		a := k.AccountCreated
		return fmt.Sprintf("account %s created (%s, %s)", a.Id, a.Currency, enumText(a.Kind))
	case *bankdv1.EventItem_Transfer:
		t := k.Transfer
		return fmt.Sprintf("transfer %s: %s → %s %s %s (%s)", t.Id, t.DebitAccountId, t.CreditAccountId, amountText(t.Amount), t.Currency, enumText(t.State))
	case *bankdv1.EventItem_TransferRejected:
		r := k.TransferRejected
		return fmt.Sprintf("transfer %s refused: %s %s", r.Id, enumText(r.Code), r.Message)
	case *bankdv1.EventItem_LockAcquired:
		return fmt.Sprintf("lock %s acquired by %s (token %d)", k.LockAcquired.Name, k.LockAcquired.Holder, k.LockAcquired.Token)
	case *bankdv1.EventItem_LockRenewed:
		return fmt.Sprintf("lock %s renewed by %s", k.LockRenewed.Name, k.LockRenewed.Holder)
	case *bankdv1.EventItem_LockReleased:
		return fmt.Sprintf("lock %s released by %s", k.LockReleased.Name, k.LockReleased.Holder)
	case *bankdv1.EventItem_PendingExpired:
		return fmt.Sprintf("pending transfer %s expired", k.PendingExpired.Id)
	case *bankdv1.EventItem_FenceRefused:
		return "write refused by its fence: " + k.FenceRefused
	case *bankdv1.EventItem_WalletCreated:
		return fmt.Sprintf("wallet %s created (%s)", k.WalletCreated.Id, enumText(k.WalletCreated.Kind))
	case *bankdv1.EventItem_DepositAddressCreated:
		return fmt.Sprintf("deposit address %s for account %s", k.DepositAddressCreated.Address, k.DepositAddressCreated.AccountId)
	case *bankdv1.EventItem_BlockConnected:
		return fmt.Sprintf("block %d connected (%s)", k.BlockConnected.Height, shortText(k.BlockConnected.Hash))
	case *bankdv1.EventItem_BlockDisconnected:
		return fmt.Sprintf("block %d disconnected (%s)", k.BlockDisconnected.Height, shortText(k.BlockDisconnected.Hash))
	case *bankdv1.EventItem_ChainTx:
		return fmt.Sprintf("transaction %s %s", shortText(k.ChainTx.Txid), enumText(k.ChainTx.State))
	case *bankdv1.EventItem_Deposit:
		d := k.Deposit
		return fmt.Sprintf("deposit %s:%d to %s, %s sat (%s)", shortText(d.GetOutpoint().GetTxid()), d.GetOutpoint().GetVout(), d.AccountId, amountText(d.ValueSat), enumText(d.State))
	case *bankdv1.EventItem_Rescan:
		return fmt.Sprintf("rescan at block %d of %d", k.Rescan.NextHeight, k.Rescan.TargetHeight)
	case *bankdv1.EventItem_LndNode:
		return fmt.Sprintf("lnd node %s %s (reachable %t)", k.LndNode.Id, enumText(k.LndNode.State), k.LndNode.Reachable)
	case *bankdv1.EventItem_Invoice:
		return fmt.Sprintf("invoice %s for %s, %s sat (%s)", shortText(k.Invoice.Hash), k.Invoice.AccountId, amountText(k.Invoice.AmountSat), enumText(k.Invoice.State))
	case *bankdv1.EventItem_Payment:
		return fmt.Sprintf("payment %s from %s, %s sat (%s)", k.Payment.Id, k.Payment.AccountId, amountText(k.Payment.AmountSat), enumText(k.Payment.State))
	case *bankdv1.EventItem_Problem:
		return fmt.Sprintf("problem: %s: %s", k.Problem.Subject, k.Problem.Message)
	case *bankdv1.EventItem_Payout:
		p := k.Payout
		return fmt.Sprintf("payout %s from %s, %s sat (%s)", p.Id, p.AccountId, amountText(p.AmountSat), enumText(p.State))
	case *bankdv1.EventItem_PayoutBatch:
		return fmt.Sprintf("payout batch %s (%s)", k.PayoutBatch.Id, enumText(k.PayoutBatch.State))
	case *bankdv1.EventItem_ChannelOpen:
		return fmt.Sprintf("channel open %s on %s (%s)", k.ChannelOpen.Id, k.ChannelOpen.NodeId, enumText(k.ChannelOpen.State))
	case *bankdv1.EventItem_VaultProposal:
		v := k.VaultProposal
		return fmt.Sprintf("vault proposal %s %s, %s sat (%s)", v.Id, enumText(v.Direction), amountText(v.AmountSat), enumText(v.State))
	case *bankdv1.EventItem_Compacted:
		return fmt.Sprintf("compaction: history kept from index %d", k.Compacted.HorizonIndex)
	case *bankdv1.EventItem_Adjustment:
		a := k.Adjustment
		return fmt.Sprintf("adjustment %s: %s sat on %s (%s) by %s: %s", a.Id, amountText(a.AmountSat), a.AccountId, enumText(a.Kind), a.DecidedBy, a.Reason)
	}
	return "event item of an unknown kind"
}
