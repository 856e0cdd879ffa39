package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// adjustmentKindNames are the -kind words of adjustments book, as the enum names them.
const adjustmentKindNames = "channel-opened-by-hand, channel-closed-by-hand, routing-fees, close-fees, fee-rounding or other"

func parseAdjustmentKind(s string) (bankdv1.AdjustmentKind, error) {
	v, ok := bankdv1.AdjustmentKind_value["ADJUSTMENT_KIND_"+strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
	if !ok || v == 0 {
		return 0, usageErrorf("-kind %q: want %s", s, adjustmentKindNames)
	}
	return bankdv1.AdjustmentKind(v), nil
}

func adjustmentKindName(k bankdv1.AdjustmentKind) string {
	return strings.ReplaceAll(enumName(k.String(), "ADJUSTMENT_KIND_"), "_", "-")
}

// adjustmentsBook books money that moved outside bankd into a pool node's or a wallet's account
// (docs/ADJUSTMENTS.md). The amount is a flag so that a negative one is not read as a flag.
func adjustmentsBook(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	id := fs.String("id", "", "adjustment id, the idempotency key (generated when empty)")
	kind := fs.String("kind", "", "why the money moved: "+adjustmentKindNames+" (required)")
	amount := fs.Int64("amount", 0, "satoshis, signed: > 0 the account holds more than its books, < 0 less (required)")
	reason := fs.String("reason", "", "why, in words (required)")
	ref := fs.String("ref", "", "where to check it outside bankd: a txid, a channel point, an lnd forwarding event (required)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ACCOUNT"); err != nil {
			return err
		}
		k, err := parseAdjustmentKind(*kind)
		if err != nil {
			return err
		}
		switch {
		case *amount == 0:
			return usageErrorf("-amount is required and not 0: > 0 the account holds more than its books, < 0 less")
		case *reason == "":
			return usageErrorf("-reason is required: say why the money moved")
		case *ref == "":
			return usageErrorf("-ref is required: say where to check it (a txid, a channel point, an lnd event)")
		}
		if err := a.ensureID(id, "adjustment id", "id"); err != nil {
			return err
		}
		req := &bankdv1.BookAdjustmentRequest{Id: *id, AccountId: args[0], AmountSat: *amount, Kind: k, Reason: *reason, ExternalReference: *ref}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.BookAdjustmentResponse, error) {
			r, err := c.ledger.BookAdjustment(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("adjustment %s: %w", *id, err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		if res.Replayed {
			fmt.Fprintf(a.stderr, "bankctl: adjustment %s was already booked; this is the first result\n", *id)
		}
		a.printAdjustment(res.Adjustment)
		return nil
	}
}

func adjustmentsGet(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetAdjustmentResponse, error) {
			r, err := c.ledger.GetAdjustment(ctx, connect.NewRequest(&bankdv1.GetAdjustmentRequest{Id: args[0], Consistency: a.consistency()}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("adjustment %s: %w", args[0], err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printAdjustment(res.Adjustment)
		return nil
	}
}

func adjustmentsList(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	account := fs.String("account", "", "only the adjustments of this account")
	limit := fs.Int("limit", 1000, "most adjustments to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "flags only"); err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		res := &bankdv1.ListAdjustmentsResponse{}
		var err error
		res.Adjustments, res.NextPageToken, res.Meta, err = collectPages(ctx, a, *limit, listPageSize,
			func(ctx context.Context, c *clients, size uint32, token string) ([]*bankdv1.Adjustment, string, *bankdv1.ReadMeta, error) {
				r, err := c.ledger.ListAdjustments(ctx, connect.NewRequest(&bankdv1.ListAdjustmentsRequest{
					AccountId: *account, PageSize: size, PageToken: token, Consistency: a.consistency()}))
				if err != nil {
					return nil, "", nil, err
				}
				return r.Msg.Adjustments, r.Msg.NextPageToken, r.Msg.Meta, nil
			})
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		rows := make([][]string, 0, len(res.Adjustments))
		for _, adj := range res.Adjustments {
			rows = append(rows, []string{adj.Id, formatMs(adj.DecidedUnixMs), adj.AccountId, fmt.Sprint(adj.AmountSat), adjustmentKindName(adj.Kind),
				adj.DecidedBy, adj.ExternalReference, adj.Reason})
		}
		a.printTable([]string{"ID", "AT", "ACCOUNT", "SAT", "KIND", "DECIDED BY", "REFERENCE", "REASON"}, rows)
		if res.NextPageToken != "" {
			fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more adjustments exist\n", *limit)
		}
		return nil
	}
}

func (a *app) printAdjustment(adj *bankdv1.Adjustment) {
	a.printFields([][2]string{
		{"id", adj.GetId()},
		{"account", adj.GetAccountId()},
		{"amount_sat", fmt.Sprint(adj.GetAmountSat())},
		{"kind", adjustmentKindName(adj.GetKind())},
		{"reason", adj.GetReason()},
		{"reference", adj.GetExternalReference()},
		{"decided_by", adj.GetDecidedBy()},
		{"decided_at", formatMs(adj.GetDecidedUnixMs())},
		{"index", fmt.Sprint(adj.GetIndex())},
		{"transfer", adj.GetTransferId()},
		{"counter_account", adj.GetCounterAccountId()},
	})
}
