package ledger

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/jepsen/history"
)

func refusal(code connect.Code, rc bankdv1.ResultCode) error {
	ce := connect.NewError(code, errors.New("refused"))
	ce.Meta().Set("Bankd-Result-Code", rc.String())
	return ce
}

func TestClassifyWrite(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	read := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	tests := []struct {
		name string
		err  error
		want history.Type
	}{
		{"success is ok", nil, history.OK},
		{"insufficient funds is fail", refusal(connect.CodeFailedPrecondition, bankdv1.ResultCode_RESULT_CODE_INSUFFICIENT_FUNDS), history.Fail},
		{"invalid argument is fail", refusal(connect.CodeInvalidArgument, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT), history.Fail},
		{"no leader, not applied, is fail", connect.NewError(connect.CodeUnavailable, errors.New("no known leader: retryable: the request was not applied, retry shortly")), history.Fail},
		{"forwarded to an ex-leader is fail", connect.NewError(connect.CodeUnavailable, errors.New("this node is no longer the leader (the call was forwarded here); not applied, safe to retry")), history.Fail},
		{"a connection never made is fail", connect.NewError(connect.CodeUnavailable, fmt.Errorf("post: %w", dial)), history.Fail},
		{"outcome unknown is info", connect.NewError(connect.CodeUnavailable, errors.New("outcome unknown: retry with the same id")), history.Info},
		{"a forward that could not dial the leader is info", connect.NewError(connect.CodeUnavailable, errors.New("cannot reach leader n2 at 10.213.0.12:7201: dial tcp: connection refused; outcome unknown: retry with the same id")), history.Info},
		{"a timeout is info", connect.NewError(connect.CodeDeadlineExceeded, context.DeadlineExceeded), history.Info},
		{"a reset connection is info", connect.NewError(connect.CodeUnavailable, fmt.Errorf("post: %w", read)), history.Info},
		{"failed precondition without a result code is info", connect.NewError(connect.CodeFailedPrecondition, errors.New("?")), history.Info},
		{"an internal error is info", connect.NewError(connect.CodeInternal, errors.New("internal error")), history.Info},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassifyWrite(tt.err); got != tt.want {
				t.Fatalf("ClassifyWrite(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
}

func TestCount(t *testing.T) {
	ops := []history.Op{
		{Process: 1, Type: history.Invoke}, {Process: 1, Type: history.OK},
		{Process: 2, Type: history.Invoke}, {Process: 2, Type: history.Info},
		{Process: history.NemesisProcess, Type: history.Info},
		{Process: 3, Type: history.Invoke}, {Process: 3, Type: history.Fail},
	}
	if got, want := Count(ops), (Counts{Invoked: 3, OK: 1, Fail: 1, Info: 1}); got != want {
		t.Fatalf("Count = %+v, want %+v", got, want)
	}
}

func TestConsistentReadRetriesUntilTheTotalsHold(t *testing.T) {
	tests := []struct {
		name    string
		totals  []int // what successive outer reads return
		want    int   // the inner read (the number of inner reads made) that is returned
		wantErr bool
	}{
		{"nothing applied during the reads", []int{5, 5}, 1, false},
		{"a late write between the first two outer reads", []int{5, 6, 6, 6}, 2, false},
		{"the state never settles", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outer, inner := 0, 0
			total, got, err := ConsistentRead(context.Background(),
				func(context.Context) (int, error) { outer++; return tt.totals[outer-1], nil },
				func(context.Context) (int, error) { inner++; return inner, nil })
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got inner read %d (totals %d), err %v; want read %d, error %v", got, total, err, tt.want, tt.wantErr)
			}
		})
	}
}
