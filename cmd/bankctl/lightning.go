package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// maxPayWait is the longest -wait of pay the server accepts.
const maxPayWait = 5 * time.Minute

// drainPollInterval is how often lnd drain -wait asks for the node's state.
var drainPollInterval = time.Second

// parseSats reads an amount of satoshis given as an argument: a whole number above zero.
func parseSats(name, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, usageErrorf("%s %q: want a whole number of satoshis above zero", name, s)
	}
	return v, nil
}

// --- the lnd pool ---

func (a *app) listLndNodes(ctx context.Context) (*bankdv1.ListLndNodesResponse, error) {
	return call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.ListLndNodesResponse, error) {
		r, err := c.lightning.ListNodes(ctx, connect.NewRequest(&bankdv1.ListLndNodesRequest{Consistency: a.consistency()}))
		if err != nil {
			return nil, err
		}
		return r.Msg, nil
	})
}

func lndNodes(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		res, err := a.listLndNodes(ctx)
		if err != nil {
			return err
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printLndNodes(res.Nodes)
		return nil
	}
}

func lndAdd(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	address := fs.String("address", "", "host:port of the node's gRPC listener (required)")
	tlsCert := fs.String("tls-cert", "", "the node's TLS certificate (required; made absolute here)")
	macaroon := fs.String("macaroon", "", "the macaroon bankd calls the node with (required; made absolute here)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		for _, f := range []struct{ name, value string }{{"-address", *address}, {"-tls-cert", *tlsCert}, {"-macaroon", *macaroon}} {
			if f.value == "" {
				return usageErrorf("%s is required", f.name)
			}
		}
		// The server wants absolute paths: every bankd node reads the files from there.
		certPath, err := filepath.Abs(*tlsCert)
		if err != nil {
			return fmt.Errorf("-tls-cert %s: %w", *tlsCert, err)
		}
		macaroonPath, err := filepath.Abs(*macaroon)
		if err != nil {
			return fmt.Errorf("-macaroon %s: %w", *macaroon, err)
		}
		req := &bankdv1.AddLndNodeRequest{Id: args[0], Address: *address, TlsCertPath: certPath, MacaroonPath: macaroonPath}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.AddLndNodeResponse, error) {
			r, err := c.lightning.AddNode(ctx, connect.NewRequest(req))
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
		if res.Created {
			fmt.Fprintf(a.stdout, "lnd node %s added to the pool\n", res.Node.GetId())
		} else {
			fmt.Fprintf(a.stdout, "lnd node %s was already in the pool; it is now reached as given\n", res.Node.GetId())
		}
		a.printLndNodes([]*bankdv1.LndNode{res.Node})
		return nil
	}
}

func lndDrain(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	undo := fs.Bool("undo", false, "make a draining node active again")
	wait := fs.Bool("wait", false, "poll until the node is retired, for at most -timeout")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		if *undo && *wait {
			return usageErrorf("-wait waits for a drain to finish; it does not go with -undo")
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.DrainLndNodeResponse, error) {
			r, err := c.lightning.DrainNode(ctx, connect.NewRequest(&bankdv1.DrainLndNodeRequest{Id: args[0], Undo: *undo}))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return err
		}
		if !*wait {
			if a.json() {
				return a.printJSON(res)
			}
			a.printLndNodes([]*bankdv1.LndNode{res.Node})
			return nil
		}
		if !a.json() {
			a.printLndNodes([]*bankdv1.LndNode{res.Node})
		}
		node, err := a.waitRetired(ctx, res.Node)
		if err != nil {
			return err
		}
		if a.json() {
			// One document: the node as it stands once retired.
			return a.printJSON(&bankdv1.DrainLndNodeResponse{Node: node})
		}
		fmt.Fprintf(a.stdout, "lnd node %s is retired\n", node.GetId())
		return nil
	}
}

// waitRetired polls the pool until node is retired, for at most -timeout, and reports its
// open invoices and payments in flight whenever they change.
func (a *app) waitRetired(ctx context.Context, node *bankdv1.LndNode) (*bankdv1.LndNode, error) {
	progress := a.stdout
	if a.json() {
		progress = a.stderr // stdout carries the one JSON document
	}
	id := node.GetId()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, a.opts.timeout)
	defer cancel()
	ticker := time.NewTicker(drainPollInterval)
	defer ticker.Stop()

	var last [2]uint32 // open invoices, payments in flight
	stillDraining := func() error {
		return fmt.Errorf("lnd node %s is still draining after %s (%d open invoice(s), %d payment(s) in flight); wait longer with a larger -timeout",
			id, time.Since(start).Round(time.Millisecond), last[0], last[1])
	}
	first := true
	for {
		switch node.GetState() {
		case bankdv1.LndNodeState_LND_NODE_STATE_RETIRED:
			return node, nil
		case bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE:
			return nil, fmt.Errorf("lnd node %s is active again (the drain was undone); stopped waiting", id)
		}
		if work := [2]uint32{node.GetOpenInvoices(), node.GetInflightPayments()}; first || work != last {
			fmt.Fprintf(progress, "draining %s: %d open invoice(s), %d payment(s) in flight\n", id, work[0], work[1])
			first, last = false, work
		}
		select {
		case <-ctx.Done():
			return nil, stillDraining()
		case <-ticker.C:
		}
		res, err := a.listLndNodes(ctx)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil, stillDraining()
			case connect.CodeOf(err) == connect.CodeUnavailable:
				fmt.Fprintf(a.stderr, "bankctl: lnd drain: %s; still waiting\n", describeError(err))
				continue
			}
			return nil, err
		}
		node = findLndNode(res.Nodes, id)
		if node == nil {
			return nil, fmt.Errorf("lnd node %s is no longer in the pool", id)
		}
	}
}

func findLndNode(nodes []*bankdv1.LndNode, id string) *bankdv1.LndNode {
	for _, n := range nodes {
		if n.GetId() == id {
			return n
		}
	}
	return nil
}

func lndReconcile(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 0, "no arguments"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.ReconcileLightningResponse, error) {
			r, err := c.lightning.Reconcile(ctx, connect.NewRequest(&bankdv1.ReconcileLightningRequest{}))
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
			a.printReconciliation(res.Nodes)
		}
		return reconcileProblems(res.Nodes)
	}
}

// reconcileProblems fails the command when a node's ledger account and lnd disagree, or when a
// node could not be asked.
func reconcileProblems(nodes []*bankdv1.NodeReconciliation) error {
	var problems []string
	for _, n := range nodes {
		switch {
		case n.GetError() != "":
			problems = append(problems, fmt.Sprintf("%s could not be asked", n.GetNodeId()))
		case n.GetDifferenceSat() != 0:
			problems = append(problems, fmt.Sprintf("%s differs by %s sat", n.GetNodeId(), signed(n.GetDifferenceSat())))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New("lightning does not reconcile: " + strings.Join(problems, ", "))
}

// --- invoices ---

func invoiceCreate(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	memo := fs.String("memo", "", "description the payer sees")
	expiry := fs.Duration("expiry", time.Hour, "how long the invoice can be paid (whole seconds)")
	requestID := fs.String("request-id", "", "idempotency key: a retry with it returns the same invoice (generated when empty)")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 2, "ACCOUNT SATS"); err != nil {
			return err
		}
		sats, err := parseSats("SATS", args[1])
		if err != nil {
			return err
		}
		if *expiry < time.Second {
			return usageErrorf("-expiry must be at least 1s, got %s", *expiry)
		}
		if err := a.ensureID(requestID, "request id", "request-id"); err != nil {
			return err
		}
		req := &bankdv1.CreateInvoiceRequest{
			AccountId: args[0], AmountSat: sats, Memo: *memo,
			ExpirySeconds: int64(*expiry / time.Second), RequestId: *requestID,
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.CreateInvoiceResponse, error) {
			r, err := c.lightning.CreateInvoice(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("invoice request %s: %w", *requestID, err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printInvoice(res.Invoice)
		return nil
	}
}

func invoiceGet(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "HASH"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetInvoiceResponse, error) {
			r, err := c.lightning.GetInvoice(ctx, connect.NewRequest(&bankdv1.GetInvoiceRequest{Hash: args[0], Consistency: a.consistency()}))
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
		a.printInvoice(res.Invoice)
		return nil
	}
}

// --- payments ---

func payCmd(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	id := fs.String("id", "", "payment id, the idempotency key (generated when empty)")
	amount := fs.Int64("amount", 0, "satoshis to pay; only for an invoice without an amount")
	maxFee := fs.Int64("max-fee", 0, "most satoshis to pay in routing fees; 0 means the cluster's default reserve")
	wait := fs.Duration("wait", 30*time.Second, "wait up to this long for the outcome (0: return once the payment is recorded); added to -timeout")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 2, "ACCOUNT BOLT11"); err != nil {
			return err
		}
		switch {
		case *amount < 0:
			return usageErrorf("-amount must be >= 0")
		case *maxFee < 0:
			return usageErrorf("-max-fee must be >= 0")
		case *wait < 0 || *wait > maxPayWait:
			return usageErrorf("-wait must be 0-%s, got %s", maxPayWait, *wait)
		}
		if err := a.ensureID(id, "payment id", "id"); err != nil {
			return err
		}
		req := &bankdv1.PayInvoiceRequest{
			Id: *id, AccountId: args[0], PaymentRequest: args[1],
			AmountSat: *amount, MaxFeeSat: *maxFee, WaitMs: wait.Milliseconds(),
		}
		// The server holds the call for up to -wait before it answers.
		a.opts.timeout += *wait
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.PayInvoiceResponse, error) {
			r, err := c.lightning.PayInvoice(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("payment %s: %w", *id, err)
		}
		if a.json() {
			if err := a.printJSON(res); err != nil {
				return err
			}
		} else {
			a.printPayment(res.Payment)
		}
		p := res.Payment
		switch p.GetState() {
		case bankdv1.PaymentState_PAYMENT_STATE_FAILED:
			return fmt.Errorf("payment %s failed: %s", p.GetId(), orDash(p.GetFailureReason()))
		case bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT:
			fmt.Fprintf(a.stderr, "payment %s is still in flight; follow it with bankctl payment get %s\n", p.GetId(), p.GetId())
		}
		return nil
	}
}

func paymentGet(a *app, _ *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 1, "ID"); err != nil {
			return err
		}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.GetPaymentResponse, error) {
			r, err := c.lightning.GetPayment(ctx, connect.NewRequest(&bankdv1.GetPaymentRequest{Id: args[0], Consistency: a.consistency()}))
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
		a.printPayment(res.Payment)
		return nil
	}
}

func payInternal(a *app, fs *flag.FlagSet) func(context.Context, []string) error {
	id := fs.String("id", "", "transfer id, the idempotency key (generated when empty)")
	memo := fs.String("memo", "", "note kept in the transfer's metadata")
	return func(ctx context.Context, args []string) error {
		if err := wantArgs(args, 3, "FROM TO SATS"); err != nil {
			return err
		}
		sats, err := parseSats("SATS", args[2])
		if err != nil {
			return err
		}
		if *id == "" {
			generated, err := newTransferID()
			if err != nil {
				return err
			}
			*id = generated
			// On stderr so that -o json output stays one document; the id is what a retry needs.
			fmt.Fprintf(a.stderr, "transfer id: %s (retry with -id %s)\n", generated, generated)
		}
		req := &bankdv1.PayInternalRequest{Id: *id, FromAccountId: args[0], ToAccountId: args[1], AmountSat: sats, Memo: *memo}
		res, err := call(ctx, a, func(ctx context.Context, c *clients) (*bankdv1.PayInternalResponse, error) {
			r, err := c.lightning.PayInternal(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			return r.Msg, nil
		})
		if err != nil {
			return fmt.Errorf("transfer %s: %w", *id, err)
		}
		if a.json() {
			return a.printJSON(res)
		}
		a.printTransfers([]*bankdv1.Transfer{res.Transfer})
		return nil
	}
}

// --- output ---

func lndStateName(s bankdv1.LndNodeState) string { return enumName(s.String(), "LND_NODE_STATE_") }

func invoiceStateName(s bankdv1.InvoiceState) string { return enumName(s.String(), "INVOICE_STATE_") }

func paymentStateName(s bankdv1.PaymentState) string { return enumName(s.String(), "PAYMENT_STATE_") }

// lndHealth sums up a node's last health check: healthy means reachable and synced to chain.
func lndHealth(n *bankdv1.LndNode) string {
	switch {
	case n.GetHealthCheckedUnixMs() == 0:
		return "unknown"
	case !n.GetReachable():
		return "no (unreachable)"
	case !n.GetSyncedToChain():
		return "no (not synced)"
	default:
		return "yes"
	}
}

// shortPubkey keeps the ends of a node's 66-character pubkey, enough to tell nodes apart.
func shortPubkey(pk string) string {
	if len(pk) <= 16 {
		return orDash(pk)
	}
	return pk[:10] + "..." + pk[len(pk)-6:]
}

func (a *app) printLndNodes(nodes []*bankdv1.LndNode) {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, []string{
			n.GetId(), lndStateName(n.GetState()), lndHealth(n), shortPubkey(n.GetPubkey()),
			fmt.Sprint(n.GetOpenInvoices()), fmt.Sprint(n.GetInflightPayments()), orDash(n.GetAccountId()), orDash(n.GetHealthError()),
		})
	}
	a.printTable([]string{"ID", "STATE", "HEALTHY", "PUBKEY", "OPEN INVOICES", "IN FLIGHT", "ACCOUNT", "ERROR"}, rows)
}

func (a *app) printReconciliation(nodes []*bankdv1.NodeReconciliation) {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		lnd, diff := fmt.Sprint(n.GetLndSat()), signed(n.GetDifferenceSat())
		if n.GetError() != "" {
			lnd, diff = "-", "-"
		}
		rows = append(rows, []string{n.GetNodeId(), fmt.Sprint(n.GetLedgerSat()), lnd, diff, orDash(n.GetError())})
	}
	a.printTable([]string{"NODE", "LEDGER", "LND", "DIFFERENCE", "ERROR"}, rows)
}

// printInvoice puts the payment request on a line of its own, to be copied whole, above the
// invoice's other fields.
func (a *app) printInvoice(inv *bankdv1.LnInvoice) {
	fmt.Fprintf(a.stdout, "%s\n\n", inv.GetPaymentRequest())
	fields := [][2]string{
		{"hash", inv.GetHash()},
		{"state", invoiceStateName(inv.GetState())},
		{"account", inv.GetAccountId()},
		{"amount", fmt.Sprintf("%d sat", inv.GetAmountSat())},
		{"memo", orDash(inv.GetMemo())},
		{"node", inv.GetNodeId()},
		{"created", formatMs(inv.GetCreatedUnixMs())},
		{"expires", formatMs(inv.GetExpiresUnixMs())},
		{"request id", orDash(inv.GetRequestId())},
	}
	if inv.GetState() == bankdv1.InvoiceState_INVOICE_STATE_SETTLED {
		settled := fmt.Sprintf("%s, %d sat paid", formatMs(inv.GetSettledUnixMs()), inv.GetAmountPaidSat())
		if inv.GetInternal() {
			settled += " inside the ledger"
		}
		fields = append(fields, [2]string{"settled", settled}, [2]string{"transfer", orDash(inv.GetTransferId())})
	}
	a.printFields(fields)
}

func (a *app) printPayment(p *bankdv1.LnPayment) {
	state := paymentStateName(p.GetState())
	if p.GetFailureReason() != "" {
		state += ": " + p.GetFailureReason()
	}
	node := p.GetNodeId()
	if p.GetInternal() {
		node = "- (paid inside the ledger)"
	}
	fields := [][2]string{
		{"id", p.GetId()},
		{"state", state},
		{"account", p.GetAccountId()},
		{"amount", fmt.Sprintf("%d sat", p.GetAmountSat())},
		{"fee", fmt.Sprintf("%d sat (reserve %d sat)", p.GetFeeSat(), p.GetFeeReserveSat())},
		{"hash", p.GetHash()},
		{"destination", orDash(p.GetDestination())},
		{"node", orDash(node)},
		{"attempt", fmt.Sprint(p.GetAttempt())},
		{"preimage", orDash(p.GetPreimage())},
		{"created", formatMs(p.GetCreatedUnixMs())},
		{"resolved", formatMs(p.GetResolvedUnixMs())},
		{"transfer", orDash(p.GetTransferId())},
	}
	a.printFields(fields)
}
