package lnpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
	"github.com/bankd/bankd/lnpool/lnd"
)

// Invoice limits.
const (
	MaxInvoiceExpiry = 30 * 24 * time.Hour
	// sweepBatch bounds the open invoices looked up per node and sweep.
	sweepBatch = 1000
	// cancelBatch bounds the internally settled invoices canceled on their nodes per sweep.
	cancelBatch = 1000
)

// CreateInvoice issues an invoice for an account on a usable node and records it. A retried
// request_id answers with the invoice the first request recorded.
func (p *Pool) CreateInvoice(ctx context.Context, req *bankdv1.CreateInvoiceRequest) (*bankdv1.LnInvoice, error) {
	if _, err := p.running(); err != nil {
		return nil, err
	}
	if inv, err := p.state.InvoiceByRequest(req.RequestId); err == nil {
		if inv.AccountId != req.AccountId || inv.AmountSat != req.AmountSat {
			return nil, &fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS,
				Message: fmt.Sprintf("request_id: %q was already used for another invoice", req.RequestId)}
		}
		return inv, nil
	}
	expiry := time.Duration(req.ExpirySeconds) * time.Second
	if expiry == 0 {
		expiry = p.cfg.DefaultInvoiceExpiry
	}
	nodes, _, err := p.usableNodes()
	if err != nil {
		return nil, err
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("%w: no pool node is healthy and active", ErrNoNode)
	}
	// Spread invoices: the node with the least in its ledger account receives (it has the
	// most inbound room in a pool funded evenly).
	n := nodes[len(nodes)-1]
	c, err := p.client(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoNode, err)
	}
	li, err := c.AddInvoice(ctx, lnd.AddInvoiceRequest{ValueSat: req.AmountSat, Memo: req.Memo, ExpirySeconds: int64(expiry / time.Second)})
	if err != nil {
		return nil, fmt.Errorf("lnd %q: add invoice: %w", n.Id, err)
	}
	created := li.CreationUnix
	if created <= 0 {
		created = p.now().Unix()
	}
	res, err := p.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CREATED, &bankdv1.LnInvoiceCreated{Invoice: &bankdv1.LnInvoice{
		Hash: li.Hash, AccountId: req.AccountId, NodeId: n.Id, AmountSat: req.AmountSat, Memo: req.Memo,
		PaymentRequest: li.PaymentRequest, ExpiresUnixMs: (created + int64(expiry/time.Second)) * 1000,
		AddIndex: li.AddIndex, RequestId: req.RequestId,
	}})
	var refusal *fsm.Error
	if errors.As(err, &refusal) {
		// Certainly not recorded, so never handed out: cancel it so it cannot be paid. (When
		// the outcome is unknown it may be recorded, and a retry of the request returns it:
		// it must stay payable.)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthTimeout)
		defer cancel()
		if cerr := c.CancelInvoice(cctx, li.Hash); cerr != nil {
			p.log.Warn("cancel unrecorded invoice", "lnd", n.Id, "hash", li.Hash, "err", cerr)
		}
	}
	if err != nil {
		return nil, err
	}
	p.metrics.invoices.Inc()
	return res.(*bankdv1.CreateInvoiceResponse).Invoice, nil
}

// ErrNoNode: no pool node can take the work now.
var ErrNoNode = errors.New("no lightning node available")

// startSubscriptions starts an invoice subscription for every node that is not retired and
// has none running.
func (p *Pool) startSubscriptions(ctx context.Context, wg *sync.WaitGroup, running map[string]bool) {
	nodes, err := p.state.LndNodes()
	if err != nil {
		return
	}
	for _, n := range nodes {
		if running[n.Id] || n.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED || isLost(n) {
			continue
		}
		running[n.Id] = true
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			p.subscribe(ctx, id)
		}(n.Id)
	}
}

// subscribe follows one node's invoice settlements from the cursors in the state machine,
// resubscribing after any break, until ctx ends or the node is retired.
func (p *Pool) subscribe(ctx context.Context, id string) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := p.followInvoices(ctx, id)
		if errors.Is(err, errRetired) || errors.Is(err, ErrNodeLost) || ctx.Err() != nil {
			return
		}
		p.log.Debug("invoice subscription broke; resubscribing", "lnd", id, "err", err, "after", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

var errRetired = errors.New("node retired")

func (p *Pool) followInvoices(ctx context.Context, id string) error {
	c, n, err := p.clientOf(ctx, id)
	if err != nil {
		return err
	}
	if n.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED {
		return errRetired
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.SubscribeInvoices(sctx, n.AddIndex, n.SettleIndex)
	if err != nil {
		return err
	}
	for {
		inv, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("stream ended")
		}
		if err != nil {
			return err
		}
		u, ok := invoiceUpdate(inv)
		if !ok {
			continue
		}
		if err := p.applyUpdates(ctx, id, true, []*bankdv1.LnInvoiceUpdate{u}); err != nil {
			return err
		}
	}
}

// invoiceUpdate turns what lnd reported into an update of the state machine; ok is false for
// states that change nothing (open, accepted).
func invoiceUpdate(inv lnd.Invoice) (*bankdv1.LnInvoiceUpdate, bool) {
	switch inv.State {
	case lnd.InvoiceSettled:
		return &bankdv1.LnInvoiceUpdate{Hash: inv.Hash, State: bankdv1.InvoiceState_INVOICE_STATE_SETTLED,
			AddIndex: inv.AddIndex, SettleIndex: inv.SettleIndex, AmountPaidSat: inv.AmtPaidMsat / 1000}, true
	case lnd.InvoiceCanceled:
		return &bankdv1.LnInvoiceUpdate{Hash: inv.Hash, State: bankdv1.InvoiceState_INVOICE_STATE_EXPIRED, AddIndex: inv.AddIndex}, true
	}
	return nil, false
}

func (p *Pool) applyUpdates(ctx context.Context, id string, fromSubscription bool, updates []*bankdv1.LnInvoiceUpdate) error {
	res, err := p.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_UPDATES, &bankdv1.LnInvoiceUpdates{
		NodeId: id, Updates: updates, FromSubscription: fromSubscription,
	})
	if err != nil {
		return fmt.Errorf("record invoice updates of lnd %q: %w", id, err)
	}
	r := res.(*bankdv1.LnInvoiceUpdatesResponse)
	if failpoint.Enabled(failpoint.LnCreditTwice) && fromSubscription {
		p.creditAgain(ctx, id, updates)
	}
	p.metrics.settlements.Add(float64(r.Settled))
	if r.Settled+r.Expired+r.Unattributed > 0 {
		p.log.Info("invoices updated", "lnd", id, "settled", r.Settled, "expired", r.Expired, "unattributed", r.Unattributed, "from_subscription", fromSubscription)
	}
	return nil
}

// sweepAll looks up every open invoice on its node (catching anything a subscription missed,
// and expiries) and cancels on their nodes the invoices settled inside the ledger.
func (p *Pool) sweepAll(ctx context.Context) {
	nodes, err := p.state.LndNodes()
	if err != nil {
		return
	}
	for _, n := range nodes {
		if n.OpenInvoices == 0 || isLost(n) || ctx.Err() != nil {
			continue
		}
		if err := p.sweep(ctx, n); err != nil {
			p.log.Debug("invoice sweep", "lnd", n.Id, "err", err)
		}
	}
	p.cancelInternallySettled(ctx)
}

func (p *Pool) sweep(ctx context.Context, n *bankdv1.LndNode) error {
	c, err := p.client(ctx, n)
	if err != nil {
		return err
	}
	after := ""
	for ctx.Err() == nil {
		open, err := p.state.OpenInvoices(n.Id, after, sweepBatch)
		if err != nil || len(open) == 0 {
			return err
		}
		var updates []*bankdv1.LnInvoiceUpdate
		for _, inv := range open {
			after = inv.Hash
			lctx, cancel := context.WithTimeout(ctx, healthTimeout)
			li, err := c.LookupInvoice(lctx, inv.Hash)
			cancel()
			if err != nil {
				if errors.Is(err, lnd.ErrNotFound) {
					p.log.Error("lnd does not know an open invoice of its own", "lnd", n.Id, "hash", inv.Hash)
					continue
				}
				return err
			}
			if u, ok := invoiceUpdate(li); ok {
				updates = append(updates, u)
			}
		}
		if len(updates) > 0 {
			if err := p.applyUpdates(ctx, n.Id, false, updates); err != nil {
				return err
			}
		}
		if len(open) < sweepBatch {
			return nil
		}
	}
	return ctx.Err()
}

// cancelInternallySettled cancels, on their nodes, invoices paid inside the ledger.
func (p *Pool) cancelInternallySettled(ctx context.Context) {
	invs, err := p.state.InvoicesToCancel(cancelBatch)
	if err != nil {
		return
	}
	for _, inv := range invs {
		c, _, err := p.clientOf(ctx, inv.NodeId)
		switch {
		case errors.Is(err, ErrNodeLost):
			// The node is gone for good: nothing can pay the invoice there any more.
		case err != nil:
			continue
		default:
			cctx, cancel := context.WithTimeout(ctx, healthTimeout)
			err = c.CancelInvoice(cctx, inv.Hash)
			cancel()
			// Refused means settled or canceled already; not found means lnd forgot it: either
			// way it can no longer be paid there.
			if err != nil && !errors.Is(err, lnd.ErrRefused) && !errors.Is(err, lnd.ErrNotFound) {
				continue
			}
		}
		if _, err := p.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_CANCELED_ON_NODE, &bankdv1.LnInvoiceCanceledOnNode{Hash: inv.Hash}); err != nil {
			var refusal *fsm.Error
			if !errors.As(err, &refusal) {
				p.log.Warn("record invoice canceled on node", "hash", inv.Hash, "err", err)
			}
		}
	}
}

// creditAgain is failpoint LnCreditTwice: it books each settlement again, under a settle index
// the node never used, as a second settlement of the same invoice.
func (p *Pool) creditAgain(ctx context.Context, id string, updates []*bankdv1.LnInvoiceUpdate) {
	var again []*bankdv1.LnInvoiceUpdate
	for _, u := range updates {
		if u.State == bankdv1.InvoiceState_INVOICE_STATE_SETTLED {
			dup := proto.Clone(u).(*bankdv1.LnInvoiceUpdate)
			dup.SettleIndex += 1 << 40
			again = append(again, dup)
		}
	}
	if len(again) == 0 {
		return
	}
	if _, err := p.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_LN_INVOICE_UPDATES, &bankdv1.LnInvoiceUpdates{NodeId: id, Updates: again}); err != nil {
		p.log.Warn("failpoint: credit again", "lnd", id, "err", err)
	}
}
