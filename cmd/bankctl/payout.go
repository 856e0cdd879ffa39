package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// psbtMagic starts every BIP 174 PSBT in its binary form; its base64 form starts "cHNidP8".
var psbtMagic = []byte("psbt\xff")

func parsePayoutState(s string) (bankdv1.PayoutState, error) {
	if s == "" {
		return bankdv1.PayoutState_PAYOUT_STATE_UNSPECIFIED, nil
	}
	v, ok := bankdv1.PayoutState_value["PAYOUT_STATE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageErrorf("-state %q: want queued, awaiting_approval, batched, paid, cancelled, rejected or failed", s)
	}
	return bankdv1.PayoutState(v), nil
}

func parseBatchState(s string) (bankdv1.BatchState, error) {
	if s == "" {
		return bankdv1.BatchState_BATCH_STATE_UNSPECIFIED, nil
	}
	v, ok := bankdv1.BatchState_value["BATCH_STATE_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageErrorf("-state %q: want planned, signed, confirmed, final or abandoned", s)
	}
	return bankdv1.BatchState(v), nil
}

// --- withdrawals ---

func payoutRequest(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	id := fs.String("id", "", "withdrawal id, the idempotency key (generated when empty)")
	queue := fs.String("queue", "", "payout queue; empty means the cluster's default")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 3, "ACCOUNT ADDRESS SATS"); err != nil {
			return err
		}
		sats, err := parseSats("SATS", args[2])
		if err != nil {
			return err
		}
		if err := a.ensureID(id, "payout id", "id"); err != nil {
			return err
		}
		req := &bankdv1.RequestPayoutRequest{Id: *id, AccountId: args[0], Address: args[1], AmountSat: sats, Queue: *queue}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.RequestPayoutResponse, error) {
			r, err := c.payout.RequestPayout(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("payout %s: %w", *id, err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		if res.Replayed {
			fmt.Fprintf(a.stdout, "payout %s was already requested; this is its first result\n", *id)
		}
		a.printPayout(res.Payout, nil, nil)
		return nil
	}
}

func payoutGet(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetPayoutResponse, error) {
			r, err := c.payout.GetPayout(ctx, connect.NewRequest(&bankdv1.GetPayoutRequest{Id: args[0], Consistency: a.consistency()}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printPayout(res.Payout, res.Batch, res.Meta)
		return nil
	}
}

func payoutList(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	account := fs.String("account", "", "only this account's withdrawals")
	state := fs.String("state", "", "only withdrawals in this state: queued, awaiting_approval, batched, paid, cancelled, rejected or failed")
	limit := fs.Int("limit", 1000, "most withdrawals to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		st, err := parsePayoutState(*state)
		if err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListPayoutsResponse{}
		res.Payouts, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.Payout, string, *bankdv1.ReadMeta, error) {
				r, err := c.payout.ListPayouts(ctx, connect.NewRequest(&bankdv1.ListPayoutsRequest{
					AccountId: *account, State: st, PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Payouts, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printPayouts(res.Payouts)
		if res.NextPageToken != "" {
			fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more withdrawals exist\n", *limit)
		}
		return nil
	}
}

func payoutCancel(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.CancelPayoutResponse, error) {
			r, err := c.payout.CancelPayout(ctx, connect.NewRequest(&bankdv1.CancelPayoutRequest{Id: args[0]}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printPayout(res.Payout, nil, nil)
		return nil
	}
}

// payoutDecide approves or rejects a withdrawal awaiting approval. The server refuses the
// token that requested it; its message says so.
func payoutDecide(approve bool) func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
		var reason *string
		if !approve {
			reason = fs.String("reason", "", "why the withdrawal is rejected (required)")
		}
		return func(ctx context.Context, args []string) error {
			if err := wantArgs(args, 1, "ID"); err != nil {
				return err
			}
			req := &bankdv1.DecidePayoutRequest{Id: args[0], Approve: approve}
			if !approve {
				if *reason == "" {
					return usageErrorf("-reason is required: say why the withdrawal is rejected")
				}
				req.Reason = *reason
			}
			res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.DecidePayoutResponse, error) {
				var (
					r   *connect.Response[bankdv1.DecidePayoutResponse]
					err error
				)
				if approve {
					r, err = c.payout.ApprovePayout(ctx, connect.NewRequest(req))
				} else {
					r, err = c.payout.RejectPayout(ctx, connect.NewRequest(req))
				}
				if err != nil {
					return nil, err
				}
				return r.Msg, nil
			})
			if err != nil {
				return err
			}
			if a.json() {
				return a.printJSON(res)
			}
			a.printPayout(res.Payout, nil, nil)
			return nil
		}
	}
}

// --- payout transactions ---

func (a *app) getPayoutBatch(ctx context.Context, id string) (*bankdv1.GetPayoutBatchResponse, error) {
	return call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetPayoutBatchResponse, error) {
		r, err := c.payout.GetBatch(ctx, connect.NewRequest(&bankdv1.GetPayoutBatchRequest{BatchId: id, Consistency: a.consistency()}))
		if err != nil {
			return nil, err
		}
		return r.Msg, nil
	})
}

func payoutBatches(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	state := fs.String("state", "", "only batches in this state: planned, signed, confirmed, final or abandoned")
	limit := fs.Int("limit", 1000, "most batches to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		st, err := parseBatchState(*state)
		if err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListPayoutBatchesResponse{}
		res.Batches, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.PayoutBatch, string, *bankdv1.ReadMeta, error) {
				r, err := c.payout.ListBatches(ctx, connect.NewRequest(&bankdv1.ListPayoutBatchesRequest{
					State: st, PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Batches, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printPayoutBatches(res.Batches)
		if res.NextPageToken != "" {
			fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more batches exist\n", *limit)
		}
		return nil
	}
}

func payoutBatch(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := a.getPayoutBatch(ctx, args[0])
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printPayoutBatch(res.Batch, res.Meta)
		return nil
	}
}

// payoutPSBT exports a batch's unsigned PSBT in base64, the form signers import. Its output is
// the PSBT whatever -o says.
func payoutPSBT(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	out := fs.String("out", "", "write the PSBT to this new file (mode 0600) instead of stdout")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		if *out != "" {
			// Checked before the call too, so that a wrong -out costs no round trip.
			if _, err := os.Lstat(*out); err == nil {
				return usageErrorf("-out %s: the file exists; bankctl does not overwrite it", *out)
			} else if !errors.Is(err, os.ErrNotExist) {
				return usageErrorf("-out %s: %v", *out, err)
			}
		}
		res, err := a.getPayoutBatch(ctx, args[0])
		if err != nil {
			return err
		}
		b := res.Batch
		if len(b.GetPsbt()) == 0 {
			return fmt.Errorf("batch %s has no PSBT", args[0])
		}
		if b.GetState() != bankdv1.BatchState_BATCH_STATE_PLANNED {
			fmt.Fprintf(a.stderr, "bankctl: batch %s is %s: it takes no signature\n", b.GetId(), batchStateName(b.GetState()))
		}
		text := base64.StdEncoding.EncodeToString(b.GetPsbt()) + "\n"
		if *out == "" {
			_, err := fmt.Fprint(a.stdout, text)
			return err
		}
		if err := writeNewFile(*out, []byte(text)); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "wrote the unsigned PSBT of batch %s (txid %s) to %s\n", b.GetId(), b.GetTxid(), *out)
		return nil
	}
}

// writeNewFile creates path with mode 0600 and writes data to it; it fails if path exists.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// decodePSBT returns a PSBT file's binary form: the file is either that, or its base64 text
// (line breaks and spaces allowed). ok is false when it is neither.
func decodePSBT(raw []byte) (psbt []byte, ok bool) {
	if bytes.HasPrefix(raw, psbtMagic) {
		return raw, true
	}
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	if err != nil || !bytes.HasPrefix(b, psbtMagic) {
		return nil, false
	}
	return b, true
}

func payoutSignImport(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 2, "ID FILE"); err != nil {
			return err
		}
		raw, err := os.ReadFile(args[1])
		if err != nil {
			return usageErrorf("%v", err)
		}
		psbt, ok := decodePSBT(raw)
		if !ok {
			return usageErrorf("%s is neither a base64 nor a binary PSBT (BIP 174: base64 starts with \"cHNidP8\", binary with \"psbt\\xff\")", args[1])
		}
		req := &bankdv1.SubmitPayoutSignatureRequest{BatchId: args[0], Psbt: psbt}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.SubmitPayoutSignatureResponse, error) {
			r, err := c.payout.SubmitSignature(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		if res.Replayed {
			fmt.Fprintf(a.stdout, "batch %s already held this transaction\n", args[0])
		}
		b := res.Batch
		a.printFields([][2]string{
			{"batch", b.GetId()},
			{"state", batchStateName(b.GetState())},
			{"txid", orDash(b.GetTxid())},
			{"signed by", orDash(b.GetSignedBy())},
			{"signed", formatMs(b.GetSignedUnixMs())},
		})
		return nil
	}
}

func payoutAbandon(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	reason := fs.String("reason", "", "why the batch is given up (required)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		if *reason == "" {
			return usageErrorf("-reason is required: say why the batch is abandoned")
		}
		req := &bankdv1.AbandonPayoutBatchRequest{BatchId: args[0], Reason: *reason}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.AbandonPayoutBatchResponse, error) {
			r, err := c.payout.AbandonBatch(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printPayoutBatch(res.Batch, nil)
		return nil
	}
}

// --- output ---

func payoutStateName(s bankdv1.PayoutState) string { return enumName(s.String(), "PAYOUT_STATE_") }

func batchStateName(s bankdv1.BatchState) string { return enumName(s.String(), "BATCH_STATE_") }

// formatFeeRate shows a rate in sat per 1000 vbytes as sat/vB with one decimal, rounded half up.
func formatFeeRate(satPerKvB int64) string {
	tenths := (satPerKvB + 50) / 100
	return fmt.Sprintf("%d.%d", tenths/10, tenths%10)
}

// batchPayouts counts the outputs of a batch that pay withdrawals (not change).
func batchPayouts(b *bankdv1.PayoutBatch) int {
	n := 0
	for _, o := range b.GetOutputs() {
		if o.GetPayoutId() != "" {
			n++
		}
	}
	return n
}

func formatOutpoint(o *bankdv1.Outpoint) string {
	return fmt.Sprintf("%s:%d", o.GetTxid(), o.GetVout())
}

func (a *app) printPayouts(ps []*bankdv1.Payout) {
	rows := make([][]string, 0, len(ps))
	for _, p := range ps {
		rows = append(rows, []string{
			p.GetId(), p.GetAccountId(), fmt.Sprint(p.GetAmountSat()), fmt.Sprint(p.GetFeeSat()), p.GetQueue(),
			payoutStateName(p.GetState()), orDash(p.GetBatchId()), orDash(p.GetTxid()),
		})
	}
	a.printTable([]string{"ID", "ACCOUNT", "AMOUNT", "FEE", "QUEUE", "STATE", "BATCH", "TXID"}, rows)
}

// printPayout shows one withdrawal and, when given, the batch it is in.
func (a *app) printPayout(p *bankdv1.Payout, b *bankdv1.PayoutBatch, meta *bankdv1.ReadMeta) {
	state := payoutStateName(p.GetState())
	if p.GetRejectReason() != "" {
		state += ": " + p.GetRejectReason()
	}
	approval := "not required"
	if p.GetApprovalRequired() {
		approval = "required"
	}
	if p.GetDecidedBy() != "" {
		approval += fmt.Sprintf(", decided by %s at %s", p.GetDecidedBy(), formatMs(p.GetDecidedUnixMs()))
	}
	fields := [][2]string{
		{"id", p.GetId()},
		{"state", state},
		{"account", p.GetAccountId()},
		{"address", p.GetAddress()},
		{"amount", fmt.Sprintf("%d sat", p.GetAmountSat())},
		{"fee charged", fmt.Sprintf("%d sat", p.GetFeeSat())},
		{"queue", p.GetQueue()},
		{"hold transfer", orDash(p.GetHoldTransferId())},
		{"approval", approval},
		{"requested", fmt.Sprintf("%s by %s (index %d)", formatMs(p.GetRequestedUnixMs()), orDash(p.GetRequestedBy()), p.GetIndex())},
	}
	if p.GetBatchId() != "" {
		fields = append(fields, [2]string{"batch", p.GetBatchId()}, [2]string{"output", fmt.Sprintf("%s:%d", p.GetTxid(), p.GetVout())})
	}
	if b != nil {
		fields = append(fields,
			[2]string{"batch state", batchStateName(b.GetState())},
			[2]string{"batch txid", orDash(b.GetTxid())},
			[2]string{"batch fee", fmt.Sprintf("%d sat at %s sat/vB", b.GetFeeSat(), formatFeeRate(b.GetFeeRateSatKvb()))},
		)
	}
	fields = append(fields, [2]string{"resolved", formatMs(p.GetResolvedUnixMs())})
	if meta != nil {
		fields = append(fields, [2]string{"served by", describeMeta(meta)})
	}
	a.printFields(fields)
}

func (a *app) printPayoutBatches(bs []*bankdv1.PayoutBatch) {
	rows := make([][]string, 0, len(bs))
	for _, b := range bs {
		rows = append(rows, []string{
			b.GetId(), b.GetQueue(), batchStateName(b.GetState()), fmt.Sprint(batchPayouts(b)), fmt.Sprint(len(b.GetInputs())),
			fmt.Sprint(b.GetFeeSat()), formatFeeRate(b.GetFeeRateSatKvb()), orDash(b.GetTxid()),
		})
	}
	a.printTable([]string{"ID", "QUEUE", "STATE", "PAYOUTS", "INPUTS", "FEE", "SAT/VB", "TXID"}, rows)
}

// printPayoutBatch shows a batch's fields, then its inputs and its outputs.
func (a *app) printPayoutBatch(b *bankdv1.PayoutBatch, meta *bankdv1.ReadMeta) {
	state := batchStateName(b.GetState())
	if b.GetAbandonReason() != "" {
		state += ": " + b.GetAbandonReason()
	}
	fields := [][2]string{
		{"id", b.GetId()},
		{"state", state},
		{"queue", b.GetQueue()},
		{"wallet", b.GetWalletId()},
		{"txid", orDash(b.GetTxid())},
		{"fee", fmt.Sprintf("%d sat at %s sat/vB, %d vB", b.GetFeeSat(), formatFeeRate(b.GetFeeRateSatKvb()), b.GetVsize())},
		{"fees charged", fmt.Sprintf("%d sat", b.GetChargedFeeSat())},
		{"signed by", orDash(b.GetSignedBy())},
		{"planned", formatMs(b.GetPlannedUnixMs())},
		{"signed", formatMs(b.GetSignedUnixMs())},
	}
	if b.GetBlockHeight() > 0 {
		fields = append(fields, [2]string{"block", fmt.Sprint(b.GetBlockHeight())})
	}
	fields = append(fields, [2]string{"final", formatMs(b.GetFinalUnixMs())})
	if meta != nil {
		fields = append(fields, [2]string{"served by", describeMeta(meta)})
	}
	a.printFields(fields)

	fmt.Fprintln(a.stdout)
	inputs := make([][]string, 0, len(b.GetInputs()))
	for _, in := range b.GetInputs() {
		inputs = append(inputs, []string{formatOutpoint(in.GetOutpoint()), fmt.Sprint(in.GetValueSat()),
			fmt.Sprintf("%s/%d", branchName(in.GetBranch()), in.GetIndex())})
	}
	a.printTable([]string{"INPUT", "SAT", "KEY"}, inputs)

	fmt.Fprintln(a.stdout)
	outputs := make([][]string, 0, len(b.GetOutputs()))
	for _, o := range b.GetOutputs() {
		pays := o.GetPayoutId()
		if o.GetChange() {
			pays = fmt.Sprintf("change #%d", o.GetChangeIndex())
		}
		outputs = append(outputs, []string{fmt.Sprint(o.GetVout()), o.GetAddress(), fmt.Sprint(o.GetValueSat()), orDash(pays)})
	}
	a.printTable([]string{"VOUT", "ADDRESS", "SAT", "PAYS"}, outputs)
}

func describePayout(p *bankdv1.Payout) string {
	desc := fmt.Sprintf("payout %s %s %d sat from %s to %s", p.GetId(), payoutStateName(p.GetState()),
		p.GetAmountSat(), p.GetAccountId(), p.GetAddress())
	if p.GetBatchId() != "" {
		desc += " in " + p.GetBatchId()
	}
	if p.GetRejectReason() != "" {
		desc += ": " + p.GetRejectReason()
	}
	return desc
}

func describePayoutBatch(b *bankdv1.PayoutBatch) string {
	desc := fmt.Sprintf("payout-batch %s %s %s, %d payout(s), fee %d sat", b.GetId(), batchStateName(b.GetState()),
		orDash(b.GetTxid()), batchPayouts(b), b.GetFeeSat())
	if b.GetBlockHeight() > 0 {
		desc += fmt.Sprintf(" in %d", b.GetBlockHeight())
	}
	if b.GetAbandonReason() != "" {
		desc += ": " + b.GetAbandonReason()
	}
	return desc
}

func payoutReconcile(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.ReconcileWalletsResponse, error) {
			r, err := c.payout.ReconcileWallets(ctx, connect.NewRequest(&bankdv1.ReconcileWalletsRequest{Consistency: a.consistency()}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			if err := a.printJSON(res); err != nil {
				return err
			}
		} else {
			rows := make([][]string, 0, len(res.Wallets))
			for _, w := range res.Wallets {
				rows = append(rows, []string{w.WalletId, enumName(w.Kind.String(), "WALLET_KIND_"), strconv.FormatInt(w.LedgerSat, 10),
					strconv.FormatInt(w.UtxoSat, 10), strconv.FormatUint(w.Utxos, 10), signed(w.DifferenceSat), strconv.FormatUint(w.UnsettledBatches, 10),
					strconv.FormatInt(w.UnsettledInflowSat, 10)})
			}
			a.printTable([]string{"WALLET", "KIND", "LEDGER", "UTXOS SAT", "UTXOS", "DIFFERENCE", "UNSETTLED BATCHES", "UNSETTLED INFLOW"}, rows)
			s := res.Solvency
			a.printFields([][2]string{
				{"customer liabilities", strconv.FormatInt(s.GetCustomerLiabilitiesSat(), 10)},
				{"wallets", strconv.FormatInt(s.GetWalletsSat(), 10)},
				{"deposits not swept", strconv.FormatInt(s.GetDepositsSat(), 10)},
				{"lightning", strconv.FormatInt(s.GetLightningSat(), 10)},
				{"assets", strconv.FormatInt(s.GetAssetsSat(), 10)},
				{"surplus", signed(s.GetSurplusSat())},
			})
		}
		var problems []string
		for _, w := range res.Wallets {
			if w.DifferenceSat != 0 && w.UnsettledBatches == 0 && w.UnsettledInflowSat == 0 {
				problems = append(problems, fmt.Sprintf("%s differs by %s sat with nothing unsettled", w.WalletId, signed(w.DifferenceSat)))
			}
		}
		if len(problems) > 0 {
			return fmt.Errorf("reconciliation: %s", strings.Join(problems, "; "))
		}
		return nil
	}
}

func payoutFlush(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) > 1 {
			return usageErrorf("want [QUEUE], got %d arguments", len(args))
		}
		req := &bankdv1.FlushQueueRequest{}
		if len(args) == 1 {
			req.Queue = args[0]
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.FlushQueueResponse, error) {
			r, err := c.payout.FlushQueue(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		fmt.Fprintf(a.stdout, "queue %s will be planned at the leader's next tick\n", res.Queue)
		return nil
	}
}
