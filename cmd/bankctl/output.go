package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

var (
	jsonDoc  = protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: false}
	jsonLine = protojson.MarshalOptions{}
)

func (a *app) json() bool { return a.opts.output == "json" }

// printJSON prints one response as indented protojson.
func (a *app) printJSON(m proto.Message) error {
	b, err := jsonDoc.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}

// printJSONLine prints one message as protojson on one line (streams, several nodes).
func (a *app) printJSONLine(m proto.Message) error {
	b, err := jsonLine.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	// protojson may add random spaces between tokens; one line per object is the contract.
	_, err = fmt.Fprintf(a.stdout, "%s\n", strings.ReplaceAll(string(b), "\n", " "))
	return err
}

// printTable writes rows under header, aligned for people.
func (a *app) printTable(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// printFields writes name/value pairs, one per line.
func (a *app) printFields(fields [][2]string) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], f[1])
	}
	_ = tw.Flush()
}

func kindName(k bankdv1.AccountKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "ACCOUNT_KIND_"))
}

func stateName(s bankdv1.TransferState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TRANSFER_STATE_"))
}

func formatMs(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func formatMeta(md map[string]string) string {
	if len(md) == 0 {
		return "-"
	}
	return metaFlag(md).String()
}

func (a *app) printAccounts(accs []*bankdv1.Account) {
	rows := make([][]string, 0, len(accs))
	for _, acc := range accs {
		b := acc.GetBalance()
		flags := "-"
		if acc.GetNonNegative() {
			flags = "non-negative"
		}
		limit := "-"
		if acc.GetDailyDebitLimit() > 0 {
			limit = fmt.Sprint(acc.GetDailyDebitLimit())
		}
		rows = append(rows, []string{
			acc.GetId(), acc.GetCurrency(), kindName(acc.GetKind()),
			fmt.Sprint(b.GetPosted()), fmt.Sprint(b.GetAvailable()),
			fmt.Sprint(b.GetDebitsPending()), fmt.Sprint(b.GetCreditsPending()),
			flags, limit,
		})
	}
	a.printTable([]string{"ID", "CURRENCY", "KIND", "POSTED", "AVAILABLE", "DEBITS PENDING", "CREDITS PENDING", "FLAGS", "DAILY LIMIT"}, rows)
}

func (a *app) printAccountDetail(acc *bankdv1.Account, meta *bankdv1.ReadMeta) {
	b := acc.GetBalance()
	a.printFields([][2]string{
		{"id", acc.GetId()},
		{"currency", acc.GetCurrency()},
		{"kind", kindName(acc.GetKind())},
		{"non-negative", fmt.Sprint(acc.GetNonNegative())},
		{"daily debit limit", fmt.Sprint(acc.GetDailyDebitLimit())},
		{"metadata", formatMeta(acc.GetMetadata())},
		{"posted", fmt.Sprint(b.GetPosted())},
		{"available", fmt.Sprint(b.GetAvailable())},
		{"debits posted", fmt.Sprint(b.GetDebitsPosted())},
		{"credits posted", fmt.Sprint(b.GetCreditsPosted())},
		{"debits pending", fmt.Sprint(b.GetDebitsPending())},
		{"credits pending", fmt.Sprint(b.GetCreditsPending())},
		{"created", fmt.Sprintf("%s (index %d)", formatMs(acc.GetCreatedAtUnixMs()), acc.GetCreatedIndex())},
		{"served by", describeMeta(meta)},
	})
}

func (a *app) printBalance(acc *bankdv1.Account) {
	b := acc.GetBalance()
	a.printTable([]string{"ACCOUNT", "CURRENCY", "POSTED", "AVAILABLE", "DEBITS POSTED", "CREDITS POSTED", "DEBITS PENDING", "CREDITS PENDING"},
		[][]string{{
			acc.GetId(), acc.GetCurrency(), fmt.Sprint(b.GetPosted()), fmt.Sprint(b.GetAvailable()),
			fmt.Sprint(b.GetDebitsPosted()), fmt.Sprint(b.GetCreditsPosted()),
			fmt.Sprint(b.GetDebitsPending()), fmt.Sprint(b.GetCreditsPending()),
		}})
}

func describeMeta(m *bankdv1.ReadMeta) string {
	if m == nil {
		return "-"
	}
	s := fmt.Sprintf("%s at index %d", m.GetServedBy(), m.GetAppliedIndex())
	if m.GetLagEntries() > 0 || m.GetLagMs() > 0 {
		s += fmt.Sprintf(" (stale: %d entries, %d ms behind)", m.GetLagEntries(), m.GetLagMs())
	}
	return s
}

func (a *app) printTransfers(ts []*bankdv1.Transfer) {
	rows := make([][]string, 0, len(ts))
	for _, t := range ts {
		amount := fmt.Sprint(t.GetAmount())
		if t.GetPostedAmount() != 0 {
			amount += fmt.Sprintf(" (posted %d)", t.GetPostedAmount())
		}
		ref := t.GetExternalRef()
		if t.GetPendingId() != "" {
			ref = "pending " + t.GetPendingId()
		}
		if ref == "" {
			ref = "-"
		}
		rows = append(rows, []string{
			t.GetId(), stateName(t.GetState()), t.GetDebitAccountId(), t.GetCreditAccountId(),
			amount, t.GetCurrency(), fmt.Sprint(t.GetIndex()), formatMs(t.GetCreatedAtUnixMs()), ref,
		})
	}
	a.printTable([]string{"ID", "STATE", "FROM", "TO", "AMOUNT", "CURRENCY", "INDEX", "CREATED", "REF"}, rows)
}

func (a *app) printHistory(entries []*bankdv1.HistoryEntry) {
	rows := make([][]string, 0, len(entries))
	for _, e := range entries {
		rows = append(rows, []string{
			fmt.Sprint(e.GetIndex()), formatMs(e.GetAtUnixMs()), e.GetTransferId(), stateName(e.GetCause()),
			signed(e.GetDebitsPostedDelta()), signed(e.GetCreditsPostedDelta()),
			signed(e.GetDebitsPendingDelta()), signed(e.GetCreditsPendingDelta()),
			fmt.Sprint(e.GetBalanceAfter().GetPosted()), fmt.Sprint(e.GetBalanceAfter().GetAvailable()),
		})
	}
	a.printTable([]string{"INDEX", "AT", "TRANSFER", "CAUSE", "DR POSTED", "CR POSTED", "DR PENDING", "CR PENDING", "POSTED AFTER", "AVAILABLE AFTER"}, rows)
}

func signed(v int64) string {
	if v == 0 {
		return "0"
	}
	return fmt.Sprintf("%+d", v)
}

func (a *app) printLock(name string, l *bankdv1.Lock) {
	if l == nil {
		fmt.Fprintf(a.stdout, "lock %s is free\n", name)
		return
	}
	a.printTable([]string{"NAME", "HOLDER", "PRINCIPAL", "TOKEN", "ACQUIRED", "EXPIRES"},
		[][]string{{l.GetName(), l.GetHolder(), orDash(l.GetPrincipal()), fmt.Sprint(l.GetToken()), formatMs(l.GetAcquiredAtUnixMs()), formatMs(l.GetExpiresAtUnixMs())}})
}

func (a *app) printStatus(s *bankdv1.StatusResponse) {
	a.printFields([][2]string{
		{"node", s.GetNodeId()},
		{"raft id", s.GetRaftId()},
		{"state", s.GetRaftState()},
		{"term", fmt.Sprint(s.GetTerm())},
		{"leader", fmt.Sprintf("%s (%s)", orDash(s.GetLeaderId()), orDash(s.GetLeaderApiAddr()))},
		{"commit index", fmt.Sprint(s.GetCommitIndex())},
		{"applied index", fmt.Sprint(s.GetAppliedIndex())},
		{"last log index", fmt.Sprint(s.GetLastLogIndex())},
		{"cluster time", formatMs(s.GetFsmTimeUnixMs())},
		{"stored format", fmt.Sprint(s.GetStoredFormat())},
		{"version", s.GetVersion()},
	})
}

func (a *app) printMembers(ms []*bankdv1.Member) {
	sorted := append([]*bankdv1.Member(nil), ms...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].GetNodeId() < sorted[j].GetNodeId() })
	rows := make([][]string, 0, len(sorted))
	for _, m := range sorted {
		leader := "-"
		if m.GetLeader() {
			leader = "yes"
		}
		rows = append(rows, []string{
			m.GetNodeId(), orDash(m.GetRaftId()), orDash(m.GetRegion()), orDash(m.GetSuffrage()), orDash(m.GetGossipState()),
			orDash(m.GetApiAddr()), orDash(m.GetRaftAddr()), orDash(m.GetVersion()), leader,
		})
	}
	a.printTable([]string{"NODE", "RAFT ID", "REGION", "SUFFRAGE", "GOSSIP", "API", "RAFT", "VERSION", "LEADER"}, rows)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printEvent prints one event on one line.
func (a *app) printEvent(ev *bankdv1.Event) error {
	if a.json() {
		return a.printJSONLine(ev)
	}
	items := make([]string, 0, len(ev.GetItems()))
	for _, it := range ev.GetItems() {
		items = append(items, describeItem(it))
	}
	_, err := fmt.Fprintf(a.stdout, "%d %s %s\n", ev.GetIndex(), formatMs(ev.GetAtUnixMs()), strings.Join(items, "; "))
	return err
}

func describeItem(it *bankdv1.EventItem) string {
	switch k := it.GetKind().(type) {
	case *bankdv1.EventItem_AccountCreated:
		acc := k.AccountCreated
		return fmt.Sprintf("account-created %s %s %s", acc.GetId(), acc.GetCurrency(), kindName(acc.GetKind()))
	case *bankdv1.EventItem_Transfer:
		t := k.Transfer
		return fmt.Sprintf("transfer %s %s %s->%s %d %s", t.GetId(), stateName(t.GetState()),
			t.GetDebitAccountId(), t.GetCreditAccountId(), t.GetAmount(), t.GetCurrency())
	case *bankdv1.EventItem_TransferRejected:
		r := k.TransferRejected
		return fmt.Sprintf("transfer-rejected %s %s: %s", r.GetId(), strings.TrimPrefix(r.GetCode().String(), "RESULT_CODE_"), r.GetMessage())
	case *bankdv1.EventItem_LockAcquired:
		return fmt.Sprintf("lock-acquired %s by %s token %d", k.LockAcquired.GetName(), k.LockAcquired.GetHolder(), k.LockAcquired.GetToken())
	case *bankdv1.EventItem_LockRenewed:
		return fmt.Sprintf("lock-renewed %s by %s token %d", k.LockRenewed.GetName(), k.LockRenewed.GetHolder(), k.LockRenewed.GetToken())
	case *bankdv1.EventItem_LockReleased:
		return fmt.Sprintf("lock-released %s by %s token %d", k.LockReleased.GetName(), k.LockReleased.GetHolder(), k.LockReleased.GetToken())
	case *bankdv1.EventItem_PendingExpired:
		return fmt.Sprintf("pending-expired %s %d", k.PendingExpired.GetId(), k.PendingExpired.GetAmount())
	case *bankdv1.EventItem_FenceRefused:
		return "fence-refused " + k.FenceRefused
	case *bankdv1.EventItem_WalletCreated:
		w := k.WalletCreated
		return fmt.Sprintf("wallet-created %s %s %s", w.GetId(), walletKindName(w.GetKind()), w.GetNetwork())
	case *bankdv1.EventItem_DepositAddressCreated:
		d := k.DepositAddressCreated
		return fmt.Sprintf("deposit-address %s for %s (%s receive %d)", d.GetAddress(), d.GetAccountId(), d.GetWalletId(), d.GetIndex())
	case *bankdv1.EventItem_BlockConnected:
		return fmt.Sprintf("block-connected %d %s", k.BlockConnected.GetHeight(), k.BlockConnected.GetHash())
	case *bankdv1.EventItem_BlockDisconnected:
		return fmt.Sprintf("block-disconnected %d %s", k.BlockDisconnected.GetHeight(), k.BlockDisconnected.GetHash())
	case *bankdv1.EventItem_ChainTx:
		tx := k.ChainTx
		desc := fmt.Sprintf("chain-tx %s %s", tx.GetTxid(), enumName(tx.GetState().String(), "TX_STATE_"))
		if tx.GetBlockHash() != "" {
			desc += fmt.Sprintf(" in %d", tx.GetBlockHeight())
		}
		if r := tx.GetRejectReason(); r != bankdv1.RejectReason_REJECT_REASON_UNSPECIFIED {
			desc += " " + enumName(r.String(), "REJECT_REASON_")
		}
		return desc
	case *bankdv1.EventItem_Deposit:
		d := k.Deposit
		return fmt.Sprintf("deposit %s:%d %s %d sat for %s", d.GetOutpoint().GetTxid(), d.GetOutpoint().GetVout(),
			enumName(d.GetState().String(), "DEPOSIT_STATE_"), d.GetValueSat(), d.GetAccountId())
	case *bankdv1.EventItem_Rescan:
		return "rescan " + describeRescan(k.Rescan)
	case *bankdv1.EventItem_LndNode:
		n := k.LndNode
		desc := fmt.Sprintf("lnd-node %s %s", n.GetId(), lndStateName(n.GetState()))
		switch {
		case n.GetHealthCheckedUnixMs() == 0:
		case !n.GetReachable():
			desc += " unreachable"
		case !n.GetSyncedToChain():
			desc += " not-synced"
		default:
			desc += " healthy"
		}
		if n.GetHealthError() != "" {
			desc += ": " + n.GetHealthError()
		}
		return desc
	case *bankdv1.EventItem_Invoice:
		inv := k.Invoice
		return fmt.Sprintf("invoice %s %s %d sat for %s on %s", inv.GetHash(), invoiceStateName(inv.GetState()),
			inv.GetAmountSat(), inv.GetAccountId(), orDash(inv.GetNodeId()))
	case *bankdv1.EventItem_Payment:
		p := k.Payment
		desc := fmt.Sprintf("payment %s %s %d sat from %s", p.GetId(), paymentStateName(p.GetState()), p.GetAmountSat(), p.GetAccountId())
		switch {
		case p.GetState() == bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED:
			desc += fmt.Sprintf(" fee %d sat", p.GetFeeSat())
		case p.GetFailureReason() != "":
			desc += ": " + p.GetFailureReason()
		}
		return desc
	case *bankdv1.EventItem_Payout:
		return describePayout(k.Payout)
	case *bankdv1.EventItem_PayoutBatch:
		return describePayoutBatch(k.PayoutBatch)
	case *bankdv1.EventItem_Problem:
		return describeProblem(k.Problem)
	default:
		return "unknown-item"
	}
}

func walletKindName(k bankdv1.WalletKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "WALLET_KIND_"))
}

func branchName(b uint32) string {
	switch b {
	case 0:
		return "receive"
	case 1:
		return "change"
	default:
		return fmt.Sprint(b)
	}
}

// formatBranch shows a branch as "next N, watched 0-M".
func formatBranch(b *bankdv1.WalletBranch) string {
	if b == nil {
		return "-"
	}
	return fmt.Sprintf("next %d, watched 0-%d", b.GetNextIndex(), int64(b.GetWatchedEnd())-1)
}

func walletBranch(w *bankdv1.Wallet, i int) *bankdv1.WalletBranch {
	if i < len(w.GetBranches()) {
		return w.GetBranches()[i]
	}
	return nil
}

func (a *app) printWallets(ws []*bankdv1.Wallet) {
	rows := make([][]string, 0, len(ws))
	for _, w := range ws {
		rows = append(rows, []string{
			w.GetId(), walletKindName(w.GetKind()), w.GetNetwork(), fmt.Sprint(w.GetGapLimit()),
			formatBranch(walletBranch(w, 0)), formatBranch(walletBranch(w, 1)), fmt.Sprint(w.GetCreatedIndex()),
		})
	}
	a.printTable([]string{"ID", "KIND", "NETWORK", "GAP", "RECEIVE", "CHANGE", "INDEX"}, rows)
}

func (a *app) printWalletDetail(w *bankdv1.Wallet, meta *bankdv1.ReadMeta) {
	fields := [][2]string{
		{"id", w.GetId()},
		{"kind", walletKindName(w.GetKind())},
		{"descriptor", w.GetDescriptor_()},
		{"network", w.GetNetwork()},
		{"gap limit", fmt.Sprint(w.GetGapLimit())},
		{"birthday height", fmt.Sprint(w.GetBirthdayHeight())},
	}
	for _, b := range w.GetBranches() {
		fields = append(fields, [2]string{branchName(b.GetBranch()), formatBranch(b)})
	}
	fields = append(fields, [2]string{"created", fmt.Sprintf("%s (index %d)", formatMs(w.GetCreatedAtUnixMs()), w.GetCreatedIndex())})
	if meta != nil {
		fields = append(fields, [2]string{"served by", describeMeta(meta)})
	}
	a.printFields(fields)
}

func (a *app) printDepositAddresses(ds []*bankdv1.DepositAddress) {
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		rows = append(rows, []string{
			d.GetAddress(), d.GetAccountId(), d.GetWalletId(), fmt.Sprint(d.GetIndex()), d.GetRequestId(),
			fmt.Sprint(d.GetCreatedIndex()), formatMs(d.GetCreatedAtUnixMs()),
		})
	}
	a.printTable([]string{"ADDRESS", "ACCOUNT", "WALLET", "INDEX", "REQUEST", "CREATED INDEX", "CREATED"}, rows)
}
