package lnpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
	"github.com/bankd/bankd/lnpool/bolt11"
	"github.com/bankd/bankd/lnpool/lnd"
)

// ErrBadInvoice wraps every reason a payment request cannot be paid before anything is
// recorded: malformed, wrong network, expired, amount missing or not whole satoshis.
var ErrBadInvoice = errors.New("invoice cannot be paid")

// PayInvoice pays a BOLT11 invoice from an account, once. It records the payment (and holds
// amount + fee reserve) through Raft, then has the chosen node pay it; with wait > 0 it waits
// that long for the outcome. An invoice of our own pool settles inside the ledger.
func (p *Pool) PayInvoice(ctx context.Context, req *bankdv1.PayInvoiceRequest) (*bankdv1.LnPayment, error) {
	rs, err := p.running()
	if err != nil {
		return nil, err
	}
	if prev, err := p.state.Payment(req.Id); err == nil {
		if prev.AccountId != req.AccountId || prev.PaymentRequest != req.PaymentRequest {
			return nil, &fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS,
				Message: fmt.Sprintf("id: %q was already used for another payment", req.Id)}
		}
		p.track(rs, prev)
		return p.wait(ctx, prev, req.WaitMs)
	}
	if err := p.checkPayer(req.AccountId); err != nil {
		return nil, err
	}
	inv, amount, err := p.decode(req)
	if err != nil {
		return nil, err
	}
	start := &bankdv1.LnPaymentStart{
		Id: req.Id, AccountId: req.AccountId, Hash: inv.Hash, PaymentRequest: req.PaymentRequest,
		Destination: inv.Destination, AmountSat: amount, InvoiceExpiresUnixMs: inv.ExpiresAt().UnixMilli(),
	}
	if _, err := p.state.Invoice(inv.Hash); err != nil {
		// Not ours: choose the node and the fee reserve.
		node, reserve, err := p.route(ctx, inv.Destination, amount, req.MaxFeeSat)
		if err != nil {
			return nil, err
		}
		start.NodeId, start.FeeReserveSat = node, reserve
	}
	res, err := p.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_START, start)
	if err != nil {
		return nil, err
	}
	started := res.(*bankdv1.LnPaymentStartResponse)
	payment := started.Payment
	p.trackFrom(rs, payment, !started.Replayed)
	return p.wait(ctx, payment, req.WaitMs)
}

// checkPayer refuses, before any lnd call (a route-fee probe included), an account money may not
// leave from: the client gets the state machine's answer at once, and LN_PAYMENT_START checks it
// again when it applies.
func (p *Pool) checkPayer(id string) error {
	acc, err := p.state.Account(id)
	if errors.Is(err, fsm.ErrNotFound) {
		return &fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, Message: fmt.Sprintf("account_id: no account %q", id)}
	}
	if err != nil {
		return err
	}
	if fe := fsm.CheckPayer("account_id", acc); fe != nil {
		return fe
	}
	return nil
}

// decode checks a payment request and returns it with the amount to pay.
func (p *Pool) decode(req *bankdv1.PayInvoiceRequest) (bolt11.Invoice, int64, error) {
	inv, err := bolt11.Decode(req.PaymentRequest, p.params)
	if err != nil {
		return inv, 0, fmt.Errorf("%w: %v", ErrBadInvoice, err)
	}
	if inv.Expired(p.now()) {
		return inv, 0, fmt.Errorf("%w: it expired at %s", ErrBadInvoice, inv.ExpiresAt().UTC().Format(time.RFC3339))
	}
	amount := req.AmountSat
	switch {
	case inv.AmountMsat == 0 && amount == 0:
		return inv, 0, fmt.Errorf("%w: it has no amount and the request gives none (amount_sat)", ErrBadInvoice)
	case inv.AmountMsat != 0:
		sat, err := inv.AmountSat()
		if err != nil {
			return inv, 0, fmt.Errorf("%w: %v", ErrBadInvoice, err)
		}
		if amount != 0 && amount != sat {
			return inv, 0, fmt.Errorf("%w: it is for %d sat, the request says %d", ErrBadInvoice, sat, amount)
		}
		amount = sat
	}
	return inv, amount, nil
}

// route picks the node to pay from and the fee reserve: the usable node with the most in its
// ledger account that covers amount + reserve.
func (p *Pool) route(ctx context.Context, dest string, amount, maxFee int64) (string, int64, error) {
	nodes, avail, err := p.usableNodes()
	if err != nil {
		return "", 0, err
	}
	if len(nodes) == 0 {
		return "", 0, fmt.Errorf("%w: no pool node is healthy and active", ErrNoNode)
	}
	for _, n := range nodes {
		if n.Pubkey == dest {
			return "", 0, fmt.Errorf("%w: it is pool node %q's own invoice but not one the cluster issued", ErrBadInvoice, n.Id)
		}
	}
	n := nodes[0]
	reserve := maxFee
	if reserve <= 0 {
		reserve = max(p.cfg.MinFeeReserveSat, amount*p.cfg.FeeReservePPM/1_000_000, p.probeFee(ctx, n, dest, amount))
	}
	if avail[n.Id] < amount+reserve {
		return "", 0, fmt.Errorf("%w: the richest node, %q, holds %d sat, the payment needs %d with its fee reserve", ErrNoNode, n.Id, avail[n.Id], amount+reserve)
	}
	return n.Id, reserve, nil
}

// probeFee returns the route-fee estimate of node n for amount to dest (cached), or 0.
func (p *Pool) probeFee(ctx context.Context, n *bankdv1.LndNode, dest string, amount int64) int64 {
	key := feeKey(n.Id, dest, amount)
	if fee, ok := p.fees.get(key, p.now()); ok {
		return fee
	}
	c, err := p.client(ctx, n)
	if err != nil {
		return 0
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	fee, err := c.EstimateRouteFee(pctx, dest, amount)
	if err != nil {
		p.log.Debug("route fee probe", "lnd", n.Id, "dest", dest, "err", err)
		return 0
	}
	p.fees.put(key, fee, p.now())
	return fee
}

// wait returns the payment once it is final or waitMs has passed (0: at once).
func (p *Pool) wait(ctx context.Context, payment *bankdv1.LnPayment, waitMs int64) (*bankdv1.LnPayment, error) {
	if waitMs <= 0 || payment.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
		return payment, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(waitMs)*time.Millisecond)
	defer cancel()
	for {
		changed := p.state.Changed()
		cur, err := p.state.Payment(payment.Id)
		if err != nil {
			return nil, err
		}
		if cur.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
			return cur, nil
		}
		select {
		case <-ctx.Done():
			return cur, nil
		case <-changed:
		}
	}
}

// track starts a tracker for an in-flight payment unless one runs.
func (p *Pool) track(rs *runState, payment *bankdv1.LnPayment) { p.trackFrom(rs, payment, false) }

// trackFrom starts a tracker; fresh says this process just recorded the payment, so no node
// can know it yet and the tracker sends it without asking first.
func (p *Pool) trackFrom(rs *runState, payment *bankdv1.LnPayment, fresh bool) {
	if payment.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT || payment.Internal {
		return
	}
	p.mu.Lock()
	if rs.tracking[payment.Id] || rs.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	rs.tracking[payment.Id] = true
	rs.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer rs.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(rs.tracking, payment.Id)
			p.mu.Unlock()
		}()
		p.follow(rs.ctx, payment, fresh)
	}()
}

// follow drives one payment attempt to a final outcome on its node and records it. It never
// gives up while ctx lives: a node that is down or an error only delays it.
func (p *Pool) follow(ctx context.Context, payment *bankdv1.LnPayment, fresh bool) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		actx, cancel := ctx, context.CancelFunc(func() {})
		giveUp := failpoint.Enabled(failpoint.LnPayOnAnotherNode) || failpoint.Enabled(failpoint.LnFailOnTimeout)
		if giveUp {
			// failpoints LnPayOnAnotherNode, LnFailOnTimeout: a node gets 2 s per attempt.
			actx, cancel = context.WithTimeout(ctx, 2*time.Second)
		}
		done, err := p.attempt(actx, payment, fresh)
		cancel()
		fresh = false
		if done {
			return
		}
		if giveUp && ctx.Err() == nil && p.giveUp(ctx, payment) {
			return
		}
		p.log.Debug("payment not resolved yet", "payment", payment.Id, "lnd", payment.NodeId, "err", err, "retry_in", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// attempt asks the payment's node once: track it if the node knows it, send it if the node
// has never heard of it, and record a final outcome. done is true once the state machine holds
// one (or the payment is no longer in flight at this attempt).
func (p *Pool) attempt(ctx context.Context, payment *bankdv1.LnPayment, fresh bool) (done bool, err error) {
	cur, err := p.state.Payment(payment.Id)
	if err != nil {
		return false, err
	}
	if cur.State != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT || cur.Attempt != payment.Attempt {
		return true, nil
	}
	c, _, err := p.clientOf(ctx, payment.NodeId)
	if errors.Is(err, ErrNodeLost) {
		// Its node was declared lost: an admin resolves it from evidence, the tracker stops.
		p.log.Info("payment left to an admin: its node was declared lost", "payment", payment.Id, "lnd", payment.NodeId)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	var stream lnd.PaymentStream
	sent := false
	if !fresh {
		stream, err = c.TrackPayment(ctx, payment.Hash)
	}
	if fresh || errors.Is(err, lnd.ErrNotFound) {
		stream, err = p.sendOrTrack(ctx, c, payment)
		sent = true
	}
	for err == nil {
		var update lnd.Payment
		update, err = stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return false, errors.New("payment stream ended before a final status")
		case err != nil:
		case !update.Status.Final():
		case update.Status == lnd.PaymentFailed && !sent && staleFailure(update, cur):
			// The node's record is an earlier payment of the same hash that failed (a
			// payment of ours that failed before this one started): this one was never
			// sent. lnd lets a failed hash be paid again.
			stream, err = p.sendOrTrack(ctx, c, payment)
			sent = true
		default:
			return p.record(ctx, payment, update)
		}
	}
	if errors.Is(err, lnd.ErrRefused) {
		return p.refused(ctx, c, payment, err)
	}
	return false, err
}

// staleFailure reports whether a failed payment the node reports began before our payment
// was recorded. Clocks of the leader and the node may differ; a wrong guess either way is
// safe: sending again is refused by lnd while a payment of the hash is in flight or paid.
func staleFailure(update lnd.Payment, ours *bankdv1.LnPayment) bool {
	return update.CreationUnixNano > 0 && update.CreationUnixNano/int64(time.Millisecond) < ours.CreatedUnixMs
}

// sendOrTrack sends the payment; if the node says a payment of the hash is in flight or
// paid already, it tracks that one.
func (p *Pool) sendOrTrack(ctx context.Context, c lnd.Client, payment *bankdv1.LnPayment) (lnd.PaymentStream, error) {
	stream, err := p.send(ctx, c, payment)
	if errors.Is(err, lnd.ErrAlreadyPaid) || errors.Is(err, lnd.ErrInFlight) {
		return c.TrackPayment(ctx, payment.Hash)
	}
	return stream, err
}

// send starts paying on the payment's node. lnd refuses a second payment of a hash on one
// node, so sending again after a lost answer cannot pay twice.
func (p *Pool) send(ctx context.Context, c lnd.Client, payment *bankdv1.LnPayment) (lnd.PaymentStream, error) {
	// The request was decoded in full before the payment was recorded; the amount is all
	// that is needed here.
	invoiceMsat, err := bolt11.AmountMsat(payment.PaymentRequest, p.params)
	if err != nil {
		return nil, fmt.Errorf("%w: recorded payment request: %v", lnd.ErrRefused, err)
	}
	req := lnd.SendPaymentRequest{
		PaymentRequest: payment.PaymentRequest, FeeLimitSat: payment.FeeReserveSat,
		TimeoutSeconds: int32(p.cfg.PaymentTimeout / time.Second),
	}
	if invoiceMsat == 0 {
		req.AmountSat = payment.AmountSat
	}
	return c.SendPayment(ctx, req)
}

// refused handles a SendPayment the node refused. The payment failed for certain only if the
// node then confirms it has no record of it (none, or only an earlier failed payment of the
// hash); otherwise it is asked again later.
func (p *Pool) refused(ctx context.Context, c lnd.Client, payment *bankdv1.LnPayment, sendErr error) (bool, error) {
	stream, err := c.TrackPayment(ctx, payment.Hash)
	if err == nil {
		var update lnd.Payment
		if update, err = stream.Recv(); err == nil && !(update.Status == lnd.PaymentFailed && staleFailure(update, payment)) {
			err = fmt.Errorf("the node reports a payment of the hash %s", update.Status)
		}
	}
	if err != nil && !errors.Is(err, lnd.ErrNotFound) {
		return false, fmt.Errorf("send refused (%v) but the node may know the payment: %v", sendErr, err)
	}
	reason := sendErr.Error()
	if len(reason) > 500 {
		reason = reason[:500]
	}
	return p.record(ctx, payment, lnd.Payment{Hash: payment.Hash, Status: lnd.PaymentFailed, FailureReason: "refused by lnd: " + reason})
}

// record commits a final outcome of the payment's attempt.
func (p *Pool) record(ctx context.Context, payment *bankdv1.LnPayment, update lnd.Payment) (bool, error) {
	res := &bankdv1.LnPaymentResult{Id: payment.Id, Attempt: payment.Attempt}
	if update.Status == lnd.PaymentSucceeded {
		res.Succeeded, res.Preimage, res.FeeSat = true, update.Preimage, (update.FeeMsat+999)/1000
	} else {
		res.FailureReason = update.FailureReason
		if res.FailureReason == "" {
			res.FailureReason = "FAILED"
		}
	}
	_, err := p.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_LN_PAYMENT_RESULT, res)
	var refusal *fsm.Error
	if errors.As(err, &refusal) && refusal.Code == bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT {
		return true, nil // recorded already (another tracker, or a previous leader)
	}
	if err != nil {
		return false, fmt.Errorf("record payment outcome: %w", err)
	}
	if res.Succeeded {
		p.metrics.payments.WithLabelValues("succeeded").Inc()
	} else {
		p.metrics.payments.WithLabelValues("failed").Inc()
	}
	p.log.Info("payment resolved", "payment", payment.Id, "lnd", payment.NodeId, "succeeded", res.Succeeded, "fee_sat", res.FeeSat, "reason", res.FailureReason)
	return true, nil
}

// reconcileInFlight asks each reachable node about each of its payments in flight and records
// every final outcome; payments still in flight (or on nodes that are down) get a tracker.
func (p *Pool) reconcileInFlight(ctx context.Context, rs *runState) (int, error) {
	nodes, err := p.state.LndNodes()
	if err != nil {
		return 0, fmt.Errorf("lnpool: read pool nodes: %w", err)
	}
	n := 0
	for _, node := range nodes {
		if isLost(node) {
			continue // an admin resolves them (ListUnresolved lists them)
		}
		after := ""
		for ctx.Err() == nil {
			batch, err := p.state.InFlightPayments(node.Id, after, 500)
			if err != nil {
				return n, fmt.Errorf("lnpool: payments in flight on %q: %w", node.Id, err)
			}
			for _, payment := range batch {
				after = payment.Id
				n++
				p.reconcileOne(ctx, rs, payment)
			}
			if len(batch) < 500 {
				break
			}
		}
	}
	return n, ctx.Err()
}

// reconcileOne gives a payment's node a few seconds to tell its outcome (or to take a payment
// it never received); a payment still unresolved after that keeps a tracker.
func (p *Pool) reconcileOne(ctx context.Context, rs *runState, payment *bankdv1.LnPayment) {
	p.mu.Lock()
	tracked := rs.tracking[payment.Id]
	p.mu.Unlock()
	if !tracked {
		wait := reconcileWait
		giveUp := failpoint.Enabled(failpoint.LnPayOnAnotherNode) || failpoint.Enabled(failpoint.LnFailOnTimeout)
		if giveUp {
			wait = 2 * time.Second // failpoints LnPayOnAnotherNode, LnFailOnTimeout
		}
		actx, cancel := context.WithTimeout(ctx, wait)
		done, err := p.attempt(actx, payment, false)
		cancel()
		if !done {
			p.log.Info("payment still in flight after reconciliation", "payment", payment.Id, "lnd", payment.NodeId, "err", err)
			if giveUp && ctx.Err() == nil && p.giveUp(ctx, payment) {
				return
			}
		}
	}
	p.track(rs, payment)
}

// reconcileWait bounds how long reconciliation waits for one payment's node.
const reconcileWait = 5 * time.Second

// feeCache keeps route-fee probes for a while: node, destination and amount bucket.
type feeCache struct {
	mu      sync.Mutex
	entries map[string]feeEntry
}

type feeEntry struct {
	fee     int64
	expires time.Time
}

// feeTTL is how long a route-fee probe is believed.
const feeTTL = 10 * time.Minute

func newFeeCache() *feeCache { return &feeCache{entries: make(map[string]feeEntry)} }

// feeKey buckets amounts by powers of two: fees scale with the amount, and a probe for 1,000
// sat says little about 1,000,000.
func feeKey(node, dest string, amount int64) string {
	bucket := 0
	for a := amount; a > 1; a >>= 1 {
		bucket++
	}
	return fmt.Sprintf("%s|%s|%d", node, dest, bucket)
}

func (c *feeCache) get(key string, now time.Time) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || now.After(e.expires) {
		return 0, false
	}
	return e.fee, true
}

func (c *feeCache) put(key string, fee int64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) > 10_000 {
		clear(c.entries)
	}
	c.entries[key] = feeEntry{fee: fee, expires: now.Add(feeTTL)}
}

// giveUp is the failpoints' wrong answer to a payment its node did not resolve in time:
// LnFailOnTimeout records it FAILED (done), LnPayOnAnotherNode sends it again from another
// usable node without recording that, and goes on following the first.
func (p *Pool) giveUp(ctx context.Context, payment *bankdv1.LnPayment) bool {
	if failpoint.Enabled(failpoint.LnFailOnTimeout) {
		done, err := p.record(ctx, payment, lnd.Payment{Hash: payment.Hash, Status: lnd.PaymentFailed, FailureReason: "FAILURE_REASON_TIMEOUT"})
		return done && err == nil
	}
	if failpoint.Enabled(failpoint.LnPayOnAnotherNode) {
		nodes, _, err := p.usableNodes()
		if err != nil {
			return false
		}
		for _, n := range nodes {
			if n.Id == payment.NodeId {
				continue
			}
			c, err := p.client(ctx, n)
			if err != nil {
				continue
			}
			if _, err := p.send(ctx, c, payment); err == nil {
				p.log.Warn("failpoint: payment sent again from another node", "payment", payment.Id, "lnd", n.Id, "recorded_on", payment.NodeId)
				return false
			}
		}
	}
	return false
}
