package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Lost lnd nodes (docs/LOST_NODES.md): declare a node gone for good, list what is unresolved on
// it, resolve its payments in flight from evidence.

// lostEvidence maps -evidence to the kind a failure rests on.
var lostEvidence = map[string]bankdv1.LostPaymentEvidence{
	"force-close": bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_FORCE_CLOSE_RESOLUTION,
	"payee":       bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT,
}

func lndDeclareLost(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	reason := fs.String("reason", "", "why the node is gone for good (required)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "NODE"); err != nil {
			return err
		}
		if *reason == "" {
			return usageErrorf("-reason is required: say why the node is gone for good")
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.DeclareLndLostResponse, error) {
			r, err := c.lightning.DeclareNodeLost(ctx, connect.NewRequest(&bankdv1.DeclareLndLostRequest{NodeId: args[0], Reason: *reason}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("declare %s lost: %w", args[0], err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		if res.Replayed {
			fmt.Fprintf(a.stderr, "bankctl: node %s was declared lost already (by %s)\n", args[0], res.Node.GetLostDecidedBy())
		}
		a.printLndNodes([]*bankdv1.LndNode{res.Node})
		fmt.Fprintf(a.stdout, "%d open invoices canceled in the ledger; %d payments in flight left to resolve (bankctl lnd unresolved %s)\n",
			res.InvoicesCanceled, res.Node.GetInflightPayments(), args[0])
		return nil
	}
}

func lndUnresolved(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	limit := fs.Int("limit", 1000, "most invoices and most payments to show (pages are followed up to this)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "NODE"); err != nil {
			return err
		}
		if err := checkListLimit(*limit); err != nil {
			return err
		}
		// The two lists page on their own cursors; a list that is complete (or at -limit) is
		// no longer read, the other one goes on.
		all := &bankdv1.ListUnresolvedResponse{}
		var invoicesAfter, paymentsAfter string
		invoicesDone, paymentsDone := false, false
		for !invoicesDone || !paymentsDone {
			req := &bankdv1.ListUnresolvedRequest{NodeId: args[0], PageSize: uint32(min(*limit, listPageSize)),
				InvoicesAfter: invoicesAfter, PaymentsAfter: paymentsAfter, Consistency: a.consistency()}
			res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.ListUnresolvedResponse, error) {
				r, err := c.lightning.ListUnresolved(ctx, connect.NewRequest(req))
				if err != nil {
					return nil, err
				}
				return r.Msg, nil
			})
			if err != nil {
				return fmt.Errorf("unresolved on %s: %w", args[0], err)
			}
			all.Node, all.Meta = res.Node, res.Meta
			if !invoicesDone {
				all.Invoices, invoicesAfter = append(all.Invoices, res.Invoices...), res.NextInvoicesAfter
				invoicesDone = invoicesAfter == "" || len(all.Invoices) >= *limit
			}
			if !paymentsDone {
				all.Payments, paymentsAfter = append(all.Payments, res.Payments...), res.NextPaymentsAfter
				paymentsDone = paymentsAfter == "" || len(all.Payments) >= *limit
			}
		}
		all.NextInvoicesAfter, all.NextPaymentsAfter = invoicesAfter, paymentsAfter
		return a.printUnresolved(all, *limit)
	}
}

func (a *app) printUnresolved(all *bankdv1.ListUnresolvedResponse, limit int) error {
	if a.json() {
		return a.printJSON(all)
	}
	n := all.Node
	state := lndStateName(n.GetState())
	if n.GetLostDecidedBy() != "" {
		state += fmt.Sprintf(" (declared lost by %s at %s: %s)", n.GetLostDecidedBy(), formatMs(n.GetLostUnixMs()), n.GetLostReason())
	}
	fmt.Fprintf(a.stdout, "node %s: %s, healthy %s; %d open invoices, %d payments in flight\n\n", n.GetId(), state, lndHealth(n), n.GetOpenInvoices(), n.GetInflightPayments())
	rows := make([][]string, 0, len(all.Invoices))
	for _, inv := range all.Invoices {
		rows = append(rows, []string{inv.Hash, inv.AccountId, fmt.Sprint(inv.AmountSat), formatMs(inv.CreatedUnixMs), formatMs(inv.ExpiresUnixMs)})
	}
	fmt.Fprintln(a.stdout, "OPEN INVOICES")
	a.printTable([]string{"HASH", "ACCOUNT", "SAT", "CREATED", "EXPIRES"}, rows)
	rows = rows[:0]
	for _, p := range all.Payments {
		rows = append(rows, []string{p.Id, p.AccountId, fmt.Sprint(p.AmountSat), fmt.Sprint(p.FeeReserveSat), p.Hash, orDash(p.Destination), formatMs(p.CreatedUnixMs)})
	}
	fmt.Fprintln(a.stdout, "\nPAYMENTS IN FLIGHT")
	a.printTable([]string{"ID", "ACCOUNT", "SAT", "FEE RESERVE", "HASH", "DESTINATION", "CREATED"}, rows)
	if all.NextInvoicesAfter != "" || all.NextPaymentsAfter != "" {
		fmt.Fprintf(a.stderr, "bankctl: stopped at -limit %d; more exist\n", limit)
	}
	return nil
}

func lndResolve(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	preimage := fs.String("preimage", "", "the payment's preimage, hex: it succeeded (the cluster checks it hashes to the payment hash)")
	feeSat := fs.Int64("fee-sat", 0, "with -preimage: the routing fee the lost node paid, satoshis (at most the reserve is charged)")
	failed := fs.Bool("failed", false, "it failed: needs -evidence and -ref")
	evidence := fs.String("evidence", "", "with -failed: force-close (the HTLC timed out on chain) or payee (the payee says it was not paid)")
	ref := fs.String("ref", "", "where to check the evidence outside bankd: a closing txid, a ticket (required with -failed)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "PAYMENT"); err != nil {
			return err
		}
		req := &bankdv1.ResolveLostPaymentRequest{PaymentId: args[0], Reference: *ref}
		switch {
		case *failed && *preimage != "":
			return usageErrorf("-preimage proves the payment succeeded; it does not go with -failed")
		case *failed:
			kind, ok := lostEvidence[*evidence]
			if !ok {
				return usageErrorf("-failed needs -evidence force-close or -evidence payee, got %q", *evidence)
			}
			if *ref == "" {
				return usageErrorf("-ref is required with -failed: say where to check the evidence")
			}
			if *feeSat != 0 {
				return usageErrorf("-fee-sat goes with -preimage; a failed payment paid no fee")
			}
			req.Evidence = kind
		case *preimage != "":
			if *evidence != "" {
				return usageErrorf("-evidence goes with -failed; the preimage is the evidence of a success")
			}
			req.Succeeded, req.Evidence, req.Preimage, req.FeeSat = true, bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PREIMAGE, strings.ToLower(*preimage), *feeSat
		default:
			return usageErrorf("give -preimage HEX [-fee-sat N] (it succeeded) or -failed -evidence force-close|payee -ref REF")
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.ResolveLostPaymentResponse, error) {
			r, err := c.lightning.ResolveLostPayment(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("resolve payment %s: %w", args[0], err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		if res.Replayed {
			fmt.Fprintf(a.stderr, "bankctl: payment %s was resolved already with this evidence; this is the first resolution\n", args[0])
		}
		a.printPayment(res.Payment)
		if r := res.Payment.GetLostResolution(); r != nil {
			fmt.Fprintf(a.stdout, "resolved by %s at %s on %s evidence%s\n", r.DecidedBy, formatMs(r.DecidedUnixMs),
				enumName(r.Evidence.String(), "LOST_PAYMENT_EVIDENCE_"), map[bool]string{true: " (" + r.Reference + ")", false: ""}[r.Reference != ""])
		}
		fmt.Fprintf(a.stdout, "node %s is %s; %d payments in flight left\n", res.Node.GetId(), lndStateName(res.Node.GetState()), res.Node.GetInflightPayments())
		return nil
	}
}
