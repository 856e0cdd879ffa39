package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/node"
)

func refusal(code bankdv1.ResultCode) error {
	return &fsm.Error{Code: code, Message: "why: " + code.String()}
}

func TestToConnectErrorMapsEveryErrorToOneCode(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		code       connect.Code
		resultCode bankdv1.ResultCode
		message    string // substring
	}{
		{"invalid argument", refusal(bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT), connect.CodeInvalidArgument, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "why:"},
		{"not found refusal", refusal(bankdv1.ResultCode_RESULT_CODE_NOT_FOUND), connect.CodeNotFound, bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, ""},
		{"insufficient funds", refusal(bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS), connect.CodeFailedPrecondition, bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS, ""},
		{"limit exceeded", refusal(bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED), connect.CodeFailedPrecondition, bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED, ""},
		{"overflow", refusal(bankdv1.ResultCode_RESULT_CODE_OVERFLOW), connect.CodeFailedPrecondition, bankdv1.ResultCode_RESULT_CODE_OVERFLOW, ""},
		{"pending resolved", refusal(bankdv1.ResultCode_RESULT_CODE_PENDING_RESOLVED), connect.CodeFailedPrecondition, bankdv1.ResultCode_RESULT_CODE_PENDING_RESOLVED, ""},
		{"lock held", refusal(bankdv1.ResultCode_RESULT_CODE_LOCK_HELD), connect.CodeFailedPrecondition, bankdv1.ResultCode_RESULT_CODE_LOCK_HELD, ""},
		{"stale token", refusal(bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN), connect.CodeFailedPrecondition, bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN, ""},
		{"already exists", refusal(bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS), connect.CodeAlreadyExists, bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, ""},
		{"linked failed", refusal(bankdv1.ResultCode_RESULT_CODE_LINKED_FAILED), connect.CodeAborted, bankdv1.ResultCode_RESULT_CODE_LINKED_FAILED, ""},
		{"wrapped refusal", fmt.Errorf("apply: %w", refusal(bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS)), connect.CodeFailedPrecondition, bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS, ""},
		{"ok is not a refusal", refusal(bankdv1.ResultCode_RESULT_CODE_OK), connect.CodeInternal, bankdv1.ResultCode_RESULT_CODE_OK, ""},
		{"record not found", fmt.Errorf("account %q: %w", "x", fsm.ErrNotFound), connect.CodeNotFound, 0, `account "x"`},
		{"no leader", node.ErrNotLeader, connect.CodeUnavailable, 0, "retry"},
		{"wrapped no leader", fmt.Errorf("apply: %w", node.ErrNotLeader), connect.CodeUnavailable, 0, "retry"},
		{"no known leader", node.ErrNoLeader, connect.CodeUnavailable, 0, "retryable"},
		{"shut down", node.ErrShutdown, connect.CodeUnavailable, 0, "another node"},
		{"unknown node", fmt.Errorf("remove node: %w", node.ErrUnknownNode), connect.CodeNotFound, 0, "unknown node"},
		{"wrapped outcome unknown", fmt.Errorf("apply: %w: %w", node.ErrOutcomeUnknown, errors.New("leadership lost")), connect.CodeUnavailable, 0, "outcome unknown: retry with the same id"},
		{"outcome unknown", node.ErrOutcomeUnknown, connect.CodeUnavailable, 0, "outcome unknown: retry with the same id"},
		{"deadline", fmt.Errorf("barrier: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded, 0, ""},
		{"canceled", context.Canceled, connect.CodeCanceled, 0, ""},
		{"connect error kept", connect.NewError(connect.CodePermissionDenied, errors.New("no")), connect.CodePermissionDenied, 0, "no"},
		{"anything else is internal and hidden", errors.New("pebble: corrupt sstable /data/x"), connect.CodeInternal, 0, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce, _ := toConnectError(tt.err)
			if ce == nil {
				t.Fatal("got nil")
			}
			if ce.Code() != tt.code {
				t.Errorf("code = %v, want %v", ce.Code(), tt.code)
			}
			if got := ResultCodeOf(ce); tt.resultCode != 0 && got != tt.resultCode {
				t.Errorf("result code = %v, want %v", got, tt.resultCode)
			}
			if !strings.Contains(ce.Message(), tt.message) {
				t.Errorf("message %q does not contain %q", ce.Message(), tt.message)
			}
			if strings.Contains(ce.Message(), "/data/x") {
				t.Errorf("message leaks internals: %q", ce.Message())
			}
		})
	}
	if ce, _ := toConnectError(nil); ce != nil {
		t.Errorf("nil error mapped to %v", ce)
	}
}

func TestResultCodeOfReadsTheDetailWhenTheHeaderIsGone(t *testing.T) {
	ce := refusalError(&fsm.Error{Code: bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED, Message: "daily"})
	ce.Meta().Del(ResultCodeHeader)
	if got := ResultCodeOf(ce); got != bankdv1.ResultCode_RESULT_CODE_LIMIT_EXCEEDED {
		t.Fatalf("ResultCodeOf = %v", got)
	}
	if got := ResultCodeOf(errors.New("plain")); got != bankdv1.ResultCode_RESULT_CODE_UNSPECIFIED {
		t.Fatalf("ResultCodeOf(plain) = %v", got)
	}
}
