package lnd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lndErrorTexts sorts lnd's refusals by the text of the error. lnd returns most of its
// errors as plain Go errors, which reach us as gRPC status codes.Unknown with the error's
// text as the message, so the text is all there is to go on. Texts are matched as
// substrings of the status message, first match wins. All are from lnd v0.20.0-beta.
var lndErrorTexts = []struct {
	text string
	kind error
}{
	// payments/db/errors.go (paymentsdb), returned by SendPaymentV2 through
	// PaymentStatus.initializable (payments/db/payment_status.go); routerrpc's SendPaymentV2
	// turns all three into codes.AlreadyExists.
	{"invoice is already paid", ErrAlreadyPaid}, // ErrAlreadyPaid: a SUCCEEDED payment exists
	{"payment is in transition", ErrInFlight},   // ErrPaymentInFlight: HTLCs are out
	{"payment already exists", ErrInFlight},     // ErrPaymentExists: INITIATED, HTLCs may follow
	// payments/db/errors.go ErrPaymentNotInitiated: TrackPaymentV2 of a hash never paid
	// (routerrpc's subscribePayment makes it codes.NotFound).
	{"payment isn't initiated", ErrNotFound},

	// invoices/errors.go: ErrInvoiceNotFound from LookupInvoice (codes.NotFound there) and
	// from invoicesrpc CancelInvoice (codes.Unknown); ErrNoInvoicesCreated when the node has
	// never made an invoice.
	{"unable to locate invoice", ErrNotFound},
	{"there are no existing invoices", ErrNotFound},
	// invoices/errors.go ErrInvoiceAlreadySettled: CancelInvoice of a settled invoice.
	{"invoice already settled", ErrRefused},

	// Macaroon checks (rpcperms interceptor -> macaroons.Service.ValidateMacaroon):
	// gopkg.in/macaroon-bakery.v2 bakery/error.go ErrPermissionDenied and VerificationError
	// ("verification failed: ..."), bakery/oven.go ("cannot get macaroon: ..." for an unknown
	// root key); macaroons/service.go RawMacaroonFromContext ("expected 1 macaroon, got 0")
	// and ErrUnknownVersion; macaroons/constraints.go IP lock.
	{"verification failed", ErrPermission},
	{"permission denied", ErrPermission},
	{"cannot get macaroon", ErrPermission},
	{"expected 1 macaroon", ErrPermission},
	{"unknown macaroon version", ErrPermission},
	{"macaroon locked to different IP", ErrPermission},

	// The node is up but not serving yet, or going away: rpcperms/interceptor.go
	// ErrWaitingToStart, ErrNoWallet, ErrWalletLocked, ErrRPCStarting; server.go
	// ErrServerNotActive and ErrServerShuttingDown; routerrpc errServerShuttingDown and
	// invoicesrpc ErrServerShuttingDown ("... shutting down").
	{"waiting to start, RPC services not available", ErrUnavailable},
	{"wallet not created, create one to enable full RPC access", ErrUnavailable},
	{"wallet locked, unlock it to enable full RPC access", ErrUnavailable},
	{"the RPC server is in the process of starting up", ErrUnavailable},
	{"server is still in the process of starting", ErrUnavailable},
	{"shutting down", ErrUnavailable},
}

// classify sorts an error from a gRPC call to lnd into one of the package's sentinel errors.
// Whatever cannot be shown to be a refusal by lnd counts as ErrUnavailable: for a call with
// effects that means "outcome unknown", the safe reading.
func classify(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ErrUnavailable
	}
	st, ok := status.FromError(err)
	if !ok {
		// Not a status from the server: a transport or local failure.
		return ErrUnavailable
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return ErrUnavailable
	}
	msg := st.Message()
	for _, e := range lndErrorTexts {
		if strings.Contains(msg, e.text) {
			return e.kind
		}
	}
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated:
		return ErrPermission
	case codes.NotFound:
		return ErrNotFound
	case codes.AlreadyExists:
		// routerrpc uses AlreadyExists only for a payment of the hash that exists; without
		// a known text it is safest to assume it may still be going.
		return ErrInFlight
	case codes.Unknown, codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange,
		codes.Unimplemented, codes.Aborted:
		return ErrRefused
	}
	// codes.Internal, ResourceExhausted, DataLoss and codes this package does not know:
	// gRPC itself or the link failed, nothing says lnd refused.
	return ErrUnavailable
}

// callError wraps err from call on the node at addr with its kind.
func callError(addr, call string, err error) error {
	return fmt.Errorf("lnd %s %s: %w: %w", addr, call, classify(err), err)
}

// replyError wraps err, which already wraps ErrInvalidReply, with the call and node.
func replyError(addr, call string, err error) error {
	return fmt.Errorf("lnd %s %s: %w", addr, call, err)
}

// invalid reports a reply field that cannot be right.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidReply, field, fmt.Sprintf(format, args...))
}
