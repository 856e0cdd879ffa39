package rpc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/node"
)

// ResultCodeHeader carries the fsm result code (a bankd.v1.ResultCode name such as
// RESULT_CODE_INSUFFICIENT_FUNDS) of a refused write, so clients can tell refusals that share
// a Connect code apart. The same name is the Reason of an ErrorInfo detail.
const ResultCodeHeader = "Bankd-Result-Code"

// errorDomain is the ErrorInfo domain of bankd refusals.
const errorDomain = "bankd.v1"

// Messages of the retryable Unavailable errors; clients and operators grep for them.
const (
	msgNoLeader       = "retryable: the request was not applied, retry shortly (any node forwards to the leader)"
	msgOutcomeUnknown = "outcome unknown: retry with the same id"
)

// resultCodeToConnect maps an fsm refusal to the Connect code the API answers with.
func resultCodeToConnect(code bankdv1.ResultCode) connect.Code {
	switch code {
	case bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT:
		return connect.CodeInvalidArgument
	case bankdv1.ResultCode_RESULT_CODE_NOT_FOUND:
		return connect.CodeNotFound
	case bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS,
		bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED,
		bankdv1.ResultCode_RESULT_CODE_OVERFLOW,
		bankdv1.ResultCode_RESULT_CODE_PENDING_RESOLVED,
		bankdv1.ResultCode_RESULT_CODE_LOCK_HELD,
		bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN,
		bankdv1.ResultCode_RESULT_CODE_CHAIN_CONFLICT,
		bankdv1.ResultCode_RESULT_CODE_LIGHTNING_CONFLICT,
		bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT:
		return connect.CodeFailedPrecondition
	case bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS:
		return connect.CodeAlreadyExists
	case bankdv1.ResultCode_RESULT_CODE_LINKED_FAILED:
		return connect.CodeAborted
	default:
		// OK or UNSPECIFIED as a refusal is a bug in the state machine, not the caller's fault.
		return connect.CodeInternal
	}
}

// toConnectError is the one place where errors become Connect errors. Handlers return plain
// errors (fsm refusals, node errors, context errors); the edge interceptor passes them here.
// It reports whether the error is the server's fault (logged louder by the caller).
func toConnectError(err error) (cerr *connect.Error, internal bool) {
	if err == nil {
		return nil, false
	}
	var (
		ce *connect.Error
		fe *fsm.Error
	)
	switch {
	case errors.As(err, &ce):
		return ce, ce.Code() == connect.CodeInternal || ce.Code() == connect.CodeUnknown
	case errors.As(err, &fe):
		return refusalError(fe), resultCodeToConnect(fe.Code) == connect.CodeInternal
	case errors.Is(err, fsm.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err), false
	case errors.Is(err, node.ErrOutcomeUnknown):
		return connect.NewError(connect.CodeUnavailable, errors.New(msgOutcomeUnknown)), false
	case errors.Is(err, node.ErrNotLeader), errors.Is(err, node.ErrNoLeader):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%v: %s", err, msgNoLeader)), false
	case errors.Is(err, node.ErrShutdown):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%v: try another node", err)), false
	case errors.Is(err, node.ErrTooLarge):
		return connect.NewError(connect.CodeResourceExhausted, err), false
	case errors.Is(err, node.ErrNotUpgraded):
		return connect.NewError(connect.CodeFailedPrecondition, err), false
	case errors.Is(err, node.ErrUnknownNode):
		return connect.NewError(connect.CodeNotFound, err), false
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err), false
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err), false
	default:
		// Do not leak internals (paths, Pebble errors) to callers; the edge logs err itself.
		return connect.NewError(connect.CodeInternal, errors.New("internal error")), true
	}
}

// refusalError builds the error for an fsm refusal: its code, its message (which names the
// field or rule), and the result code name as header and ErrorInfo detail.
func refusalError(fe *fsm.Error) *connect.Error {
	ce := connect.NewError(resultCodeToConnect(fe.Code), errors.New(fe.Message))
	attachResultCode(ce, fe.Code.String())
	return ce
}

func attachResultCode(ce *connect.Error, name string) {
	ce.Meta().Set(ResultCodeHeader, name)
	detail, err := connect.NewErrorDetail(&errdetails.ErrorInfo{Reason: name, Domain: errorDomain})
	if err == nil {
		ce.AddDetail(detail)
	}
}

// ResultCodeOf returns the fsm result code a bankd error carries, or RESULT_CODE_UNSPECIFIED.
// Clients use it to tell, say, INSUFFICIENT_FUNDS from LIMIT_EXCEEDED.
func ResultCodeOf(err error) bankdv1.ResultCode {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return bankdv1.ResultCode_RESULT_CODE_UNSPECIFIED
	}
	if v, ok := bankdv1.ResultCode_value[ce.Meta().Get(ResultCodeHeader)]; ok {
		return bankdv1.ResultCode(v)
	}
	for _, d := range ce.Details() {
		msg, err := d.Value()
		if err != nil {
			continue
		}
		if info, ok := msg.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			if v, ok := bankdv1.ResultCode_value[info.GetReason()]; ok {
				return bankdv1.ResultCode(v)
			}
		}
	}
	return bankdv1.ResultCode_RESULT_CODE_UNSPECIFIED
}

// invalidArgument is a validation failure of field (a path such as "transfer.amount").
func invalidArgument(field, format string, args ...any) *connect.Error {
	ce := connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	attachResultCode(ce, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT.String())
	return ce
}
