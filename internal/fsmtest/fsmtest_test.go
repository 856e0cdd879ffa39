package fsmtest

import (
	"context"
	"errors"
	"testing"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/principal"
)

// TestProposerStampsThePrincipal: like node.Apply, the Proposer stamps the principal the
// context carries, so the state machine sees who asked (here: who holds a lock).
func TestProposerStampsThePrincipal(t *testing.T) {
	p := &Proposer{T: t, F: Open(t)}
	svcA := principal.With(context.Background(), "svc-a")
	res, err := p.Apply(svcA, bankdv1.CommandType_COMMAND_TYPE_ACQUIRE_LOCK, &bankdv1.AcquireLockRequest{Name: "l", Holder: "h", TtlMs: 60_000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lock := res.(*bankdv1.AcquireLockResponse).Lock
	if lock.Principal != "svc-a" {
		t.Fatalf("lock principal %q, want svc-a", lock.Principal)
	}
	renew := &bankdv1.RenewLockRequest{Name: "l", Holder: "h", Token: lock.Token, TtlMs: 60_000}
	_, err = p.Apply(principal.With(context.Background(), "svc-b"), bankdv1.CommandType_COMMAND_TYPE_RENEW_LOCK, renew, nil)
	var refused *fsm.Error
	if !errors.As(err, &refused) || refused.Code != bankdv1.ResultCode_RESULT_CODE_LOCK_HELD {
		t.Fatalf("renew by another principal: %v", err)
	}
	if _, err := p.Apply(svcA, bankdv1.CommandType_COMMAND_TYPE_RENEW_LOCK, renew, nil); err != nil {
		t.Fatalf("renew by its principal: %v", err)
	}
}
