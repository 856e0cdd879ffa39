package lnd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		// Transport and time.
		{"unavailable", status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:10009: connect: connection refused\""), ErrUnavailable},
		{"deadline status", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), ErrUnavailable},
		{"canceled status", status.Error(codes.Canceled, "context canceled"), ErrUnavailable},
		{"bare context deadline", context.DeadlineExceeded, ErrUnavailable},
		{"wrapped context deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), ErrUnavailable},
		{"not a status", io.ErrUnexpectedEOF, ErrUnavailable},
		{"internal", status.Error(codes.Internal, "grpc: error unmarshalling response"), ErrUnavailable},
		{"resource exhausted", status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), ErrUnavailable},
		{"unavailable wins over text", status.Error(codes.Unavailable, "permission denied"), ErrUnavailable},

		// Macaroons.
		{"permission code", status.Error(codes.PermissionDenied, "nope"), ErrPermission},
		{"unauthenticated code", status.Error(codes.Unauthenticated, "nope"), ErrPermission},
		{"bakery permission denied", status.Error(codes.Unknown, "permission denied"), ErrPermission},
		{"bakery verification failed", status.Error(codes.Unknown, "verification failed: signature mismatch after caveat verification"), ErrPermission},
		{"unknown root key", status.Error(codes.Unknown, "cannot get macaroon: root key with id 0 doesn't exist"), ErrPermission},
		{"no macaroon sent", status.Error(codes.Unknown, "expected 1 macaroon, got 0"), ErrPermission},
		{"old macaroon", status.Error(codes.Unknown, "unknown macaroon version: 1"), ErrPermission},
		{"ip locked", status.Error(codes.Unknown, "macaroon locked to different IP address"), ErrPermission},

		// Not found.
		{"lookup not found", status.Error(codes.NotFound, "unable to locate invoice"), ErrNotFound},
		{"cancel not found (plain error)", status.Error(codes.Unknown, "unable to locate invoice"), ErrNotFound},
		{"no invoices at all", status.Error(codes.NotFound, "there are no existing invoices"), ErrNotFound},
		{"track unknown payment", status.Error(codes.NotFound, "payment isn't initiated"), ErrNotFound},
		{"not found code", status.Error(codes.NotFound, "whatever"), ErrNotFound},

		// SendPaymentV2 refusals for an existing payment.
		{"already paid", status.Error(codes.AlreadyExists, "invoice is already paid"), ErrAlreadyPaid},
		{"in transition", status.Error(codes.AlreadyExists, "payment is in transition"), ErrInFlight},
		{"exists (initiated)", status.Error(codes.AlreadyExists, "payment already exists"), ErrInFlight},
		{"already exists, unknown text", status.Error(codes.AlreadyExists, "something"), ErrInFlight},

		// Other refusals.
		{"invoice expired", status.Error(codes.Unknown, "invoice expired. Valid until 2024-01-01 00:00:00 +0000 UTC"), ErrRefused},
		{"cancel settled", status.Error(codes.Unknown, "invoice already settled"), ErrRefused},
		{"invalid argument", status.Error(codes.InvalidArgument, "amount must be specified when paying a zero amount invoice"), ErrRefused},
		{"no route for estimate", status.Error(codes.Unknown, "unable to find a path to destination"), ErrRefused},
		{"unimplemented", status.Error(codes.Unimplemented, "unknown service routerrpc.Router"), ErrRefused},
		{"failed precondition", status.Error(codes.FailedPrecondition, "x"), ErrRefused},

		// Not ready or going away.
		{"wallet locked", status.Error(codes.Unknown, "wallet locked, unlock it to enable full RPC access"), ErrUnavailable},
		{"rpc starting", status.Error(codes.Unknown, "the RPC server is in the process of starting up, but not yet ready to accept calls"), ErrUnavailable},
		{"server starting", status.Error(codes.Unknown, "server is still in the process of starting"), ErrUnavailable},
		{"router shutting down", status.Error(codes.Unknown, "routerrpc server shutting down"), ErrUnavailable},
		{"waiting to start", status.Error(codes.Unknown, "waiting to start, RPC services not available"), ErrUnavailable},
		{"no wallet", status.Error(codes.Unknown, "wallet not created, create one to enable full RPC access"), ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.err); got != tt.want {
				t.Fatalf("classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestCallErrorWraps(t *testing.T) {
	st := status.Error(codes.NotFound, "unable to locate invoice")
	err := callError("127.0.0.1:10009", "LookupInvoice", st)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("%v is not ErrNotFound", err)
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("the gRPC status is lost: %v", err)
	}
	for _, want := range []string{"127.0.0.1:10009", "LookupInvoice", "unable to locate invoice"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
}
