package lndtest

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/bankd/bankd/lnpool/bolt11"
	"github.com/bankd/bankd/lnpool/lnd"
)

// maxMemoLength is lnd's limit on an invoice memo.
const maxMemoLength = 1024

// Node is one fake lnd. It implements lnd.Client, and its other methods are the test's
// knobs. All its state lives under the Network's lock.
type Node struct {
	net    *Network
	name   string
	key    *btcec.PrivateKey
	pubkey string

	invoices    map[string]*invoice // by hash
	addIndex    uint64
	settleIndex uint64
	events      []lnd.Invoice // every addition and settlement, for SubscribeInvoices

	payments   map[string]*payment // the latest attempt for each hash
	paymentSeq uint64

	balanceMsat int64
	feeMsat     int64
	hold        bool
	failReason  string
	unreachable bool
	epoch       uint64 // bumped to break the streams open so far
}

var _ lnd.Client = (*Node)(nil)

type invoice struct {
	lnd.Invoice
	preimage string
}

// payment is one attempt at paying a hash.
type payment struct {
	hash         string
	index        uint64
	dest         string
	amountMsat   int64
	feeMsat      int64
	reservedMsat int64 // taken from the balance while in flight
	held         bool
	created      time.Time
	history      []lnd.Payment // every state, oldest first
}

func (p *payment) current() lnd.Payment { return p.history[len(p.history)-1] }

func (p *payment) record(status lnd.PaymentStatus, preimage, reason string) {
	u := lnd.Payment{
		Hash:             p.hash,
		Status:           status,
		ValueMsat:        p.amountMsat,
		FailureReason:    reason,
		Preimage:         preimage,
		CreationUnixNano: p.created.UnixNano(),
	}
	if status == lnd.PaymentSucceeded {
		u.FeeMsat = p.feeMsat
	}
	p.history = append(p.history, u)
}

// Name is the name given to NewNode; GetInfo reports it as the alias.
func (n *Node) Name() string { return n.name }

// Pubkey is the node's id, 66 hex characters.
func (n *Node) Pubkey() string { return n.pubkey }

// SetUnreachable makes every call fail with lnd.ErrUnavailable and breaks the streams
// open, as if the node or the link to it went down; false brings it back (broken streams
// stay broken). An unreachable node cannot be paid either.
func (n *Node) SetUnreachable(down bool) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	n.unreachable = down
	if down {
		n.epoch++
	}
	n.net.notifyLocked()
}

// HoldPayments makes the payments sent from now on stay in flight until ReleasePayment or
// FailPayment; false stops holding new ones (held ones stay held).
func (n *Node) HoldPayments(hold bool) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	n.hold = hold
}

// HeldPayments lists the hashes of the payments held in flight, in the order sent.
func (n *Node) HeldPayments() []string {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	var held []*payment
	for _, p := range n.payments {
		if p.held {
			held = append(held, p)
		}
	}
	sort.Slice(held, func(i, j int) bool { return held[i].index < held[j].index })
	hashes := make([]string, len(held))
	for i, p := range held {
		hashes[i] = p.hash
	}
	return hashes
}

// ReleasePayment lets a held payment go on: it succeeds if its destination can still be
// paid, and fails as lnd would otherwise.
func (n *Node) ReleasePayment(hash string) error {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	p := n.payments[strings.ToLower(hash)]
	if p == nil || !p.held {
		return fmt.Errorf("lndtest %s: no payment of %s held", n.name, hash)
	}
	n.completeLocked(p)
	n.net.notifyLocked()
	return nil
}

// FailPayment fails a held payment with reason (one of the Fail* constants).
func (n *Node) FailPayment(hash, reason string) error {
	if !failureReasons[reason] {
		return fmt.Errorf("lndtest %s: unknown failure reason %q", n.name, reason)
	}
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	p := n.payments[strings.ToLower(hash)]
	if p == nil || !p.held {
		return fmt.Errorf("lndtest %s: no payment of %s held", n.name, hash)
	}
	n.failLocked(p, reason)
	n.net.notifyLocked()
	return nil
}

// FailPayments makes the payments sent from now on fail at once with reason (one of the
// Fail* constants); "" stops it.
func (n *Node) FailPayments(reason string) error {
	if reason != "" && !failureReasons[reason] {
		return fmt.Errorf("lndtest %s: unknown failure reason %q", n.name, reason)
	}
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	n.failReason = reason
	return nil
}

// SetFeeMsat sets the routing fee the node pays on each payment it sends, and reports from
// EstimateRouteFee. A payment whose fee limit is below it fails with FailNoRoute.
func (n *Node) SetFeeMsat(msat int64) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	n.feeMsat = msat
}

// SetBalanceSat sets the node's spendable Lightning balance.
func (n *Node) SetBalanceSat(sat int64) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	n.balanceMsat = sat * 1000
}

// Invoices lists every invoice the node made, in add index order, as they are now.
func (n *Node) Invoices() []lnd.Invoice {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	out := make([]lnd.Invoice, 0, len(n.invoices))
	for _, inv := range n.invoices {
		n.expireLocked(inv)
		out = append(out, inv.Invoice)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AddIndex < out[j].AddIndex })
	return out
}

// Unreachable reports whether SetUnreachable(true) is in force.
func (n *Node) Unreachable() bool {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	return n.unreachable
}

// errorf makes an error like the real client's: call and node named, kind wrapped.
func (n *Node) errorf(call string, kind error, format string, args ...any) error {
	return fmt.Errorf("lndtest %s %s: %w: %s", n.name, call, kind, fmt.Sprintf(format, args...))
}

// checkLocked fails a call to an unreachable node or with a finished context.
func (n *Node) checkLocked(ctx context.Context, call string) error {
	if err := ctx.Err(); err != nil {
		return n.errorf(call, lnd.ErrUnavailable, "%v", err)
	}
	if n.unreachable {
		return n.errorf(call, lnd.ErrUnavailable, "node unreachable")
	}
	return nil
}

func (n *Node) GetInfo(ctx context.Context) (lnd.Info, error) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, "GetInfo"); err != nil {
		return lnd.Info{}, err
	}
	return lnd.Info{
		Pubkey:        n.pubkey,
		Alias:         n.name,
		Version:       "0.20.0-beta lndtest",
		Network:       "regtest",
		SyncedToChain: true,
		BlockHeight:   1,
	}, nil
}

func (n *Node) AddInvoice(ctx context.Context, req lnd.AddInvoiceRequest) (lnd.Invoice, error) {
	const call = "AddInvoice"
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, call); err != nil {
		return lnd.Invoice{}, err
	}
	switch {
	case req.ValueSat <= 0 || req.ValueSat > bolt11.MaxAmountMsat/1000:
		return lnd.Invoice{}, n.errorf(call, lnd.ErrRefused, "value %d sat", req.ValueSat)
	case req.ExpirySeconds <= 0:
		return lnd.Invoice{}, n.errorf(call, lnd.ErrRefused, "expiry %d s", req.ExpirySeconds)
	case len(req.Memo) > maxMemoLength:
		return lnd.Invoice{}, n.errorf(call, lnd.ErrRefused, "memo of %d bytes", len(req.Memo))
	}
	preimage, hash := newPreimage()
	now := n.net.now().Truncate(time.Second)
	pr, err := encodeInvoice(n.net.params, n.key, hash, req.ValueSat*1000, req.Memo,
		time.Duration(req.ExpirySeconds)*time.Second, now)
	if err != nil {
		return lnd.Invoice{}, n.errorf(call, lnd.ErrRefused, "%v", err)
	}
	n.addIndex++
	inv := &invoice{
		Invoice: lnd.Invoice{
			Hash:           hex.EncodeToString(hash[:]),
			PaymentRequest: pr,
			Memo:           req.Memo,
			ValueMsat:      req.ValueSat * 1000,
			State:          lnd.InvoiceOpen,
			AddIndex:       n.addIndex,
			CreationUnix:   now.Unix(),
			ExpirySeconds:  req.ExpirySeconds,
		},
		preimage: hex.EncodeToString(preimage[:]),
	}
	n.invoices[inv.Hash] = inv
	n.events = append(n.events, inv.Invoice)
	n.net.notifyLocked()
	return inv.Invoice, nil
}

func (n *Node) LookupInvoice(ctx context.Context, hash string) (lnd.Invoice, error) {
	const call = "LookupInvoice"
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, call); err != nil {
		return lnd.Invoice{}, err
	}
	hash, err := normHash(hash)
	if err != nil {
		return lnd.Invoice{}, n.errorf(call, lnd.ErrRefused, "%v", err)
	}
	inv := n.invoices[hash]
	if inv == nil {
		return lnd.Invoice{}, n.errorf(call, lnd.ErrNotFound, "unable to locate invoice %s", hash)
	}
	n.expireLocked(inv)
	return inv.Invoice, nil
}

func (n *Node) CancelInvoice(ctx context.Context, hash string) error {
	const call = "CancelInvoice"
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, call); err != nil {
		return err
	}
	hash, err := normHash(hash)
	if err != nil {
		return n.errorf(call, lnd.ErrRefused, "%v", err)
	}
	inv := n.invoices[hash]
	if inv == nil {
		return n.errorf(call, lnd.ErrNotFound, "unable to locate invoice %s", hash)
	}
	switch inv.State {
	case lnd.InvoiceSettled:
		return n.errorf(call, lnd.ErrRefused, "invoice already settled")
	case lnd.InvoiceCanceled:
		return nil // lnd: canceling twice is fine
	}
	inv.State = lnd.InvoiceCanceled
	n.net.notifyLocked()
	return nil
}

// expireLocked cancels an open invoice past its expiry, as lnd's expiry watcher does.
func (n *Node) expireLocked(inv *invoice) {
	if inv.State != lnd.InvoiceOpen {
		return
	}
	if n.net.now().Unix() >= inv.CreationUnix+inv.ExpirySeconds {
		inv.State = lnd.InvoiceCanceled
	}
}

// settleLocked settles inv for amountMsat and credits the node.
func (n *Node) settleLocked(inv *invoice, amountMsat int64) {
	n.settleIndex++
	inv.State = lnd.InvoiceSettled
	inv.AmtPaidMsat = amountMsat
	inv.SettleIndex = n.settleIndex
	inv.SettleUnix = n.net.now().Unix()
	n.balanceMsat += amountMsat
	n.events = append(n.events, inv.Invoice)
}

func (n *Node) SubscribeInvoices(ctx context.Context, addIndex, settleIndex uint64) (lnd.InvoiceStream, error) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, "SubscribeInvoices"); err != nil {
		return nil, err
	}
	s := &invoiceStream{
		ctx:         ctx,
		node:        n,
		epoch:       n.epoch,
		addIndex:    addIndex,
		settleIndex: settleIndex,
		next:        len(n.events),
	}
	// Like lnd, an index of 0 asks for no replay of that kind; a replayed addition shows
	// the invoice as it is now.
	var added, settled []*invoice
	for _, inv := range n.invoices {
		n.expireLocked(inv)
		if addIndex > 0 && inv.AddIndex > addIndex {
			added = append(added, inv)
		}
		if settleIndex > 0 && inv.SettleIndex > settleIndex {
			settled = append(settled, inv)
		}
	}
	sort.Slice(added, func(i, j int) bool { return added[i].AddIndex < added[j].AddIndex })
	sort.Slice(settled, func(i, j int) bool { return settled[i].SettleIndex < settled[j].SettleIndex })
	for _, inv := range added {
		s.backlog = append(s.backlog, inv.Invoice)
	}
	for _, inv := range settled {
		s.backlog = append(s.backlog, inv.Invoice)
	}
	return s, nil
}

type invoiceStream struct {
	ctx                   context.Context
	node                  *Node
	epoch                 uint64
	backlog               []lnd.Invoice
	next                  int // next event of node.events to look at
	addIndex, settleIndex uint64
}

func (s *invoiceStream) Recv() (lnd.Invoice, error) {
	net := s.node.net
	for {
		net.mu.Lock()
		if err := s.node.streamErrLocked(s.ctx, "SubscribeInvoices", s.epoch); err != nil {
			net.mu.Unlock()
			return lnd.Invoice{}, err
		}
		if len(s.backlog) > 0 {
			inv := s.backlog[0]
			s.backlog = s.backlog[1:]
			net.mu.Unlock()
			return inv, nil
		}
		for s.next < len(s.node.events) {
			inv := s.node.events[s.next]
			s.next++
			if inv.State == lnd.InvoiceSettled {
				if inv.SettleIndex <= s.settleIndex {
					continue
				}
				s.settleIndex = inv.SettleIndex
			} else {
				if inv.AddIndex <= s.addIndex {
					continue
				}
				s.addIndex = inv.AddIndex
			}
			net.mu.Unlock()
			return inv, nil
		}
		changed := net.changed
		net.mu.Unlock()
		select {
		case <-changed:
		case <-s.ctx.Done():
		}
	}
}

// streamErrLocked is the error of a stream opened at epoch, if it is broken.
func (n *Node) streamErrLocked(ctx context.Context, call string, epoch uint64) error {
	if err := ctx.Err(); err != nil {
		return n.errorf(call, lnd.ErrUnavailable, "stream broke: %v", err)
	}
	if n.unreachable || n.epoch != epoch {
		return n.errorf(call, lnd.ErrUnavailable, "stream broke: node unreachable")
	}
	return nil
}

func (n *Node) SendPayment(ctx context.Context, req lnd.SendPaymentRequest) (lnd.PaymentStream, error) {
	const call = "SendPayment"
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, call); err != nil {
		return nil, err
	}
	dec, err := bolt11.Decode(req.PaymentRequest, n.net.params)
	if err != nil {
		return nil, n.errorf(call, lnd.ErrRefused, "%v", err)
	}
	amountMsat := dec.AmountMsat
	switch {
	case dec.AmountMsat == 0 && req.AmountSat <= 0:
		return nil, n.errorf(call, lnd.ErrRefused, "amount must be specified when paying a zero amount invoice")
	case dec.AmountMsat != 0 && req.AmountSat != 0:
		return nil, n.errorf(call, lnd.ErrRefused, "amount must not be specified when paying a non-zero amount invoice")
	case dec.AmountMsat == 0:
		if req.AmountSat > bolt11.MaxAmountMsat/1000 {
			return nil, n.errorf(call, lnd.ErrRefused, "amount %d sat", req.AmountSat)
		}
		amountMsat = req.AmountSat * 1000
	}
	if req.FeeLimitSat < 0 || req.TimeoutSeconds <= 0 {
		return nil, n.errorf(call, lnd.ErrRefused, "fee limit %d sat, timeout %d s", req.FeeLimitSat, req.TimeoutSeconds)
	}
	now := n.net.now()
	if dec.Expired(now) {
		return nil, n.errorf(call, lnd.ErrRefused, "invoice expired. Valid until %v", dec.ExpiresAt())
	}
	if prev := n.payments[dec.Hash]; prev != nil {
		switch prev.current().Status {
		case lnd.PaymentSucceeded:
			return nil, n.errorf(call, lnd.ErrAlreadyPaid, "invoice is already paid")
		case lnd.PaymentInitiated, lnd.PaymentInFlight:
			return nil, n.errorf(call, lnd.ErrInFlight, "payment is in transition")
		}
		// A failed payment may be tried again.
	}

	n.paymentSeq++
	p := &payment{
		hash:       dec.Hash,
		index:      n.paymentSeq,
		dest:       dec.Destination,
		amountMsat: amountMsat,
		feeMsat:    n.feeMsat,
		created:    now,
	}
	p.record(lnd.PaymentInFlight, "", "")
	n.payments[p.hash] = p

	switch {
	case n.failReason != "":
		p.record(lnd.PaymentFailed, "", n.failReason)
	case feeExceeds(p.feeMsat, req.FeeLimitSat):
		p.record(lnd.PaymentFailed, "", FailNoRoute)
	case n.balanceMsat < p.amountMsat+p.feeMsat:
		p.record(lnd.PaymentFailed, "", FailInsufficientBalance)
	default:
		p.reservedMsat = p.amountMsat + p.feeMsat
		n.balanceMsat -= p.reservedMsat
		if n.hold {
			p.held = true
		} else {
			n.completeLocked(p)
		}
	}
	n.net.notifyLocked()
	return &paymentStream{ctx: ctx, node: n, call: call, p: p, epoch: n.epoch}, nil
}

// completeLocked delivers an in-flight payment and records how it ended.
func (n *Node) completeLocked(p *payment) {
	p.held = false
	preimage, reason := n.net.deliverLocked(n, p.dest, p.hash, p.amountMsat)
	if reason != "" {
		n.failLocked(p, reason)
		return
	}
	p.reservedMsat = 0 // spent
	p.record(lnd.PaymentSucceeded, preimage, "")
}

// failLocked fails an in-flight payment and gives back what it reserved.
func (n *Node) failLocked(p *payment, reason string) {
	p.held = false
	n.balanceMsat += p.reservedMsat
	p.reservedMsat = 0
	p.record(lnd.PaymentFailed, "", reason)
}

func (n *Node) TrackPayment(ctx context.Context, hash string) (lnd.PaymentStream, error) {
	const call = "TrackPayment"
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, call); err != nil {
		return nil, err
	}
	hash, err := normHash(hash)
	if err != nil {
		return nil, n.errorf(call, lnd.ErrRefused, "%v", err)
	}
	p := n.payments[hash]
	if p == nil {
		return nil, n.errorf(call, lnd.ErrNotFound, "payment isn't initiated")
	}
	// lnd starts a subscription with the payment's current state.
	return &paymentStream{ctx: ctx, node: n, call: call, p: p, next: len(p.history) - 1, epoch: n.epoch}, nil
}

type paymentStream struct {
	ctx   context.Context
	node  *Node
	call  string
	p     *payment
	next  int // next entry of p.history to yield
	epoch uint64
}

func (s *paymentStream) Recv() (lnd.Payment, error) {
	net := s.node.net
	for {
		net.mu.Lock()
		if s.next == len(s.p.history) && s.p.current().Status.Final() {
			net.mu.Unlock()
			return lnd.Payment{}, io.EOF
		}
		if err := s.node.streamErrLocked(s.ctx, s.call, s.epoch); err != nil {
			net.mu.Unlock()
			return lnd.Payment{}, err
		}
		if s.next < len(s.p.history) {
			u := s.p.history[s.next]
			s.next++
			net.mu.Unlock()
			return u, nil
		}
		changed := net.changed
		net.mu.Unlock()
		select {
		case <-changed:
		case <-s.ctx.Done():
		}
	}
}

func (n *Node) ListPayments(ctx context.Context, inFlightOnly bool) ([]lnd.Payment, error) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, "ListPayments"); err != nil {
		return nil, err
	}
	all := make([]*payment, 0, len(n.payments))
	for _, p := range n.payments {
		all = append(all, p)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].index < all[j].index })
	var out []lnd.Payment
	for _, p := range all {
		cur := p.current()
		if inFlightOnly && cur.Status.Final() {
			continue
		}
		out = append(out, cur)
	}
	return out, nil
}

func (n *Node) EstimateRouteFee(ctx context.Context, destPubkey string, amountSat int64) (int64, error) {
	const call = "EstimateRouteFee"
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, call); err != nil {
		return 0, err
	}
	if b, err := hex.DecodeString(destPubkey); err != nil || len(b) != 33 {
		return 0, n.errorf(call, lnd.ErrRefused, "invalid length destination key")
	}
	if amountSat <= 0 {
		return 0, n.errorf(call, lnd.ErrRefused, "amount must be greater than 0")
	}
	dest := n.net.nodes[destPubkey]
	reachable := destPubkey == n.net.outsidePubkey || (dest != nil && dest != n && !dest.unreachable)
	if !reachable {
		return 0, n.errorf(call, lnd.ErrRefused, "unable to find a path to destination")
	}
	return (n.feeMsat + 999) / 1000, nil
}

func (n *Node) ChannelBalance(ctx context.Context) (lnd.ChannelBalance, error) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, "ChannelBalance"); err != nil {
		return lnd.ChannelBalance{}, err
	}
	b := lnd.ChannelBalance{LocalMsat: n.balanceMsat}
	for _, p := range n.payments {
		b.UnsettledLocalMsat += p.reservedMsat
	}
	return b, nil
}

func (n *Node) PendingHTLCs(ctx context.Context) (int, error) {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	if err := n.checkLocked(ctx, "PendingHTLCs"); err != nil {
		return 0, err
	}
	count := 0
	for _, p := range n.payments {
		if p.held {
			count++
		}
	}
	return count, nil
}

// Close breaks the streams opened so far, as closing a gRPC connection does. The node
// stays usable, as if dialed again.
func (n *Node) Close() error {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	n.epoch++
	n.net.notifyLocked()
	return nil
}

// normHash checks a payment hash is 64 hex characters and returns it in lower case, the
// form the fake stores.
func normHash(hash string) (string, error) {
	b, err := hex.DecodeString(hash)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("payment hash %q is not 64 hex characters", hash)
	}
	return hex.EncodeToString(b), nil
}

// feeExceeds reports whether feeMsat is above a limit of limitSat.
func feeExceeds(feeMsat, limitSat int64) bool {
	return limitSat <= math.MaxInt64/1000 && feeMsat > limitSat*1000
}
