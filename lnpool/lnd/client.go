// Package lnd is bankd's narrow, strict view of one lnd node: the calls the Lightning pool
// makes, with every reply checked before it is believed and every failure sorted into the few
// kinds the pool acts on (unreachable, not permitted, not found, garbage).
//
// Nothing here decides anything about money. The pool (package lnpool) records its intent
// through Raft before it calls a method that has an effect (AddInvoice, SendPayment,
// CancelInvoice) and treats every error from such a call as "outcome unknown" unless the error
// says otherwise.
package lnd

import (
	"context"
	"errors"
)

// Errors a Client returns, wrapped with the call and node they came from. Test with errors.Is.
var (
	// ErrUnavailable: the node could not be reached or did not answer in time. The outcome of
	// a call with effects is unknown.
	ErrUnavailable = errors.New("lnd unavailable")
	// ErrPermission: the macaroon does not allow the call.
	ErrPermission = errors.New("lnd refused the macaroon")
	// ErrNotFound: the node does not know the invoice or payment asked for.
	ErrNotFound = errors.New("not found on lnd")
	// ErrInvalidReply: the node answered with something that cannot be right (a hash of the
	// wrong length, a negative amount, a settled invoice without a settle index...).
	ErrInvalidReply = errors.New("invalid reply from lnd")
	// ErrAlreadyPaid: SendPayment was refused because this node already paid the hash.
	ErrAlreadyPaid = errors.New("invoice already paid by this node")
	// ErrInFlight: SendPayment was refused because a payment of the hash is in flight on this
	// node.
	ErrInFlight = errors.New("payment already in flight on this node")
	// ErrRefused: the node refused the request itself (a bad invoice, no route, insufficient
	// balance known before anything was sent). For SendPayment this means nothing was sent.
	ErrRefused = errors.New("lnd refused the request")
)

// Info is the part of GetInfo the pool uses.
type Info struct {
	Pubkey        string // 66 hex characters
	Alias         string
	Version       string
	Network       string // "mainnet", "testnet", "regtest", "signet", "simnet"
	SyncedToChain bool
	BlockHeight   uint32
}

// InvoiceState mirrors lnrpc.Invoice_InvoiceState.
type InvoiceState int

const (
	InvoiceOpen InvoiceState = iota + 1
	InvoiceSettled
	InvoiceCanceled
	InvoiceAccepted // HTLCs held, not settled yet (hold invoices; treated as open)
)

func (s InvoiceState) String() string {
	switch s {
	case InvoiceOpen:
		return "OPEN"
	case InvoiceSettled:
		return "SETTLED"
	case InvoiceCanceled:
		return "CANCELED"
	case InvoiceAccepted:
		return "ACCEPTED"
	}
	return "UNKNOWN"
}

// Invoice is an invoice as the node reports it.
type Invoice struct {
	Hash           string // payment hash, 64 hex characters
	PaymentRequest string // BOLT11
	Memo           string
	ValueMsat      int64 // 0 for an amount-less invoice
	AmtPaidMsat    int64 // what was received, once settled
	State          InvoiceState
	AddIndex       uint64 // > 0
	SettleIndex    uint64 // > 0 exactly when State is InvoiceSettled
	CreationUnix   int64
	SettleUnix     int64
	ExpirySeconds  int64
}

// AddInvoiceRequest asks for a new invoice.
type AddInvoiceRequest struct {
	ValueSat      int64 // > 0; bankd does not issue amount-less invoices
	Memo          string
	ExpirySeconds int64 // > 0
}

// PaymentStatus mirrors lnrpc.Payment_PaymentStatus.
type PaymentStatus int

const (
	PaymentInitiated PaymentStatus = iota + 1 // created, no HTLC sent yet
	PaymentInFlight
	PaymentSucceeded
	PaymentFailed
)

func (s PaymentStatus) String() string {
	switch s {
	case PaymentInitiated:
		return "INITIATED"
	case PaymentInFlight:
		return "IN_FLIGHT"
	case PaymentSucceeded:
		return "SUCCEEDED"
	case PaymentFailed:
		return "FAILED"
	}
	return "UNKNOWN"
}

// Final reports whether the status can no longer change.
func (s PaymentStatus) Final() bool { return s == PaymentSucceeded || s == PaymentFailed }

// Payment is a payment as the node reports it.
type Payment struct {
	Hash             string // 64 hex characters
	Status           PaymentStatus
	ValueMsat        int64
	FeeMsat          int64  // set when Status is PaymentSucceeded
	Preimage         string // 64 hex characters, set when Status is PaymentSucceeded
	FailureReason    string // set when Status is PaymentFailed, e.g. "FAILURE_REASON_NO_ROUTE"
	CreationUnixNano int64
}

// SendPaymentRequest pays a BOLT11 invoice.
type SendPaymentRequest struct {
	PaymentRequest string
	AmountSat      int64 // only for amount-less invoices; 0 otherwise
	FeeLimitSat    int64 // >= 0; the node never pays more in fees
	TimeoutSeconds int32 // > 0; how long the node keeps trying routes before it fails the payment
}

// PaymentStream yields the updates of one payment until it is final. Recv returns the next
// update; after a final one it returns io.EOF. Errors other than io.EOF mean the stream broke,
// not that the payment failed. Cancel the context given to SendPayment or TrackPayment to
// abandon a stream before its end. Not safe for concurrent use.
type PaymentStream interface {
	Recv() (Payment, error)
}

// InvoiceStream yields invoice additions and settlements in the node's order, starting after
// the indexes given to SubscribeInvoices. lnd does not stream cancellations (nor ACCEPTED
// hold invoices): learn those with LookupInvoice. A replayed addition carries the invoice's
// current state, so it may already be settled. Errors mean the stream broke
// (ErrUnavailable) or lnd sent garbage (ErrInvalidReply); subscribe again from the last
// indexes seen. Cancel the context given to SubscribeInvoices to end the stream.
type InvoiceStream interface {
	Recv() (Invoice, error)
}

// ChannelBalance is the node's Lightning balance, in millisatoshis.
type ChannelBalance struct {
	LocalMsat            int64 // spendable now, across open channels
	UnsettledLocalMsat   int64 // in outgoing HTLCs not resolved yet
	PendingOpenLocalMsat int64
}

// Client is one lnd node. Implementations are safe for concurrent use.
type Client interface {
	GetInfo(ctx context.Context) (Info, error)
	AddInvoice(ctx context.Context, req AddInvoiceRequest) (Invoice, error)
	LookupInvoice(ctx context.Context, hash string) (Invoice, error)
	// CancelInvoice cancels an open invoice (invoicesrpc). Canceling a settled invoice is
	// ErrRefused; an unknown one ErrNotFound.
	CancelInvoice(ctx context.Context, hash string) error
	// SubscribeInvoices streams invoices added after addIndex and settled after settleIndex.
	SubscribeInvoices(ctx context.Context, addIndex, settleIndex uint64) (InvoiceStream, error)
	// SendPayment starts paying (routerrpc.SendPaymentV2) and streams its updates. It waits
	// for the first update, so lnd's refusals (ErrAlreadyPaid, ErrInFlight, ErrRefused) come
	// from SendPayment itself.
	SendPayment(ctx context.Context, req SendPaymentRequest) (PaymentStream, error)
	// TrackPayment streams the updates of a payment this node knows (routerrpc.TrackPaymentV2),
	// starting with its current state; ErrNotFound if the node never started paying the hash.
	TrackPayment(ctx context.Context, hash string) (PaymentStream, error)
	// ListPayments returns the node's payments, in flight ones only if inFlightOnly.
	ListPayments(ctx context.Context, inFlightOnly bool) ([]Payment, error)
	// EstimateRouteFee probes (routerrpc.EstimateRouteFee) the fee to pay amountSat to dest.
	EstimateRouteFee(ctx context.Context, destPubkey string, amountSat int64) (feeSat int64, err error)
	ChannelBalance(ctx context.Context) (ChannelBalance, error)
	// PendingHTLCs counts HTLCs not yet resolved across the node's channels.
	PendingHTLCs(ctx context.Context) (int, error)
	Close() error
}
