package fsm

import (
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/failpoint"
)

// A lock is granted to one holder for a lease measured in cluster time. Its token is the Raft
// index of the grant, so a later grant always has a larger token, and any command fenced with an
// older one is refused.
//
// A lock also records the principal that acquired it: the name of the API token the leader
// stamped on the command (Command.principal). Holder names are chosen by clients and may be
// guessed; the principal is proven by the token. Only that principal may extend (acquire
// again), renew or release the lock, so one client service cannot take over or free another's
// lock by naming its holder. A lock granted before principals were recorded (principal empty)
// is judged by holder and token alone.

func (a *applier) acquireLock(tx *txn, req *bankdv1.AcquireLockRequest) (proto.Message, error) {
	if err := firstRefusal(ValidateLockName(req.Name), ValidateLockHolder(req.Holder), ValidateLockTTL(req.TtlMs)); err != nil {
		return nil, err
	}
	cur, err := a.liveLock(tx, req.Name)
	if err != nil {
		return nil, err
	}
	// failpoint lock-granted-twice: ignore the current holder and grant the lock anew.
	if cur != nil && cur.Holder != req.Holder && failpoint.Enabled(failpoint.LockGrantedTwice) {
		cur = nil
	}
	if cur != nil && cur.Holder != req.Holder {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_LOCK_HELD, "lock %q is held by %q until %d", req.Name, cur.Holder, cur.ExpiresAtUnixMs)
	}
	if err := a.checkLockPrincipal(cur); err != nil {
		return nil, err
	}
	lock := cur
	if lock == nil {
		lock = &bankdv1.Lock{Name: req.Name, Holder: req.Holder, Token: a.index, AcquiredAtUnixMs: a.now, Principal: a.principal}
	}
	lock.ExpiresAtUnixMs = a.now + req.TtlMs
	if err := putProto(tx, lockKey(req.Name), lock); err != nil {
		return nil, err
	}
	if cur == nil {
		a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_LockAcquired{LockAcquired: lock}})
	} else {
		a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_LockRenewed{LockRenewed: lock}})
	}
	return &bankdv1.AcquireLockResponse{Lock: lock}, nil
}

func (a *applier) renewLock(tx *txn, req *bankdv1.RenewLockRequest) (proto.Message, error) {
	if err := firstRefusal(ValidateLockName(req.Name), ValidateLockHolder(req.Holder), ValidateLockTTL(req.TtlMs)); err != nil {
		return nil, err
	}
	lock, err := a.heldLock(tx, req.Name, req.Holder, req.Token)
	if err != nil {
		return nil, err
	}
	lock.ExpiresAtUnixMs = a.now + req.TtlMs
	if err := putProto(tx, lockKey(req.Name), lock); err != nil {
		return nil, err
	}
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_LockRenewed{LockRenewed: lock}})
	return &bankdv1.RenewLockResponse{Lock: lock}, nil
}

// releaseLock frees a lock held under token. Releasing a lock that is already free succeeds,
// so a retried release is harmless; releasing one that someone else now holds is refused.
func (a *applier) releaseLock(tx *txn, req *bankdv1.ReleaseLockRequest) (proto.Message, error) {
	if err := firstRefusal(ValidateLockName(req.Name), ValidateLockHolder(req.Holder)); err != nil {
		return nil, err
	}
	cur, err := a.liveLock(tx, req.Name)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		tx.delete(lockKey(req.Name))
		return &bankdv1.ReleaseLockResponse{}, nil
	}
	if _, err := a.heldLock(tx, req.Name, req.Holder, req.Token); err != nil {
		return nil, err
	}
	tx.delete(lockKey(req.Name))
	a.emit(&bankdv1.EventItem{Kind: &bankdv1.EventItem_LockReleased{LockReleased: cur}})
	return &bankdv1.ReleaseLockResponse{}, nil
}

// checkFence refuses a command whose fence does not name the current, unexpired grant.
func (a *applier) checkFence(tx *txn, f *bankdv1.Fence) error {
	if err := ValidateLockName(f.LockName); err != nil {
		return invalid("fence.lock_name: %s", err.Message)
	}
	lock, err := a.liveLock(tx, f.LockName)
	if err != nil {
		return err
	}
	if lock == nil || lock.Token != f.Token {
		return refuse(bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN, "fence: lock %q is not held under token %d", f.LockName, f.Token)
	}
	return nil
}

// heldLock returns the lock if holder holds it under token right now.
func (a *applier) heldLock(tx *txn, name, holder string, token uint64) (*bankdv1.Lock, error) {
	lock, err := a.liveLock(tx, name)
	if err != nil {
		return nil, err
	}
	if lock == nil || lock.Token != token || lock.Holder != holder {
		return nil, refuse(bankdv1.ResultCode_RESULT_CODE_STALE_TOKEN, "lock %q is not held by %q under token %d", name, holder, token)
	}
	if err := a.checkLockPrincipal(lock); err != nil {
		return nil, err
	}
	return lock, nil
}

// checkLockPrincipal refuses a command on a held lock from another principal than the one
// that acquired it. The other principal's name is not repeated: it is another client's.
func (a *applier) checkLockPrincipal(lock *bankdv1.Lock) error {
	if lock == nil || lock.Principal == "" || lock.Principal == a.principal {
		return nil
	}
	return refuse(bankdv1.ResultCode_RESULT_CODE_LOCK_HELD,
		"lock %q is held under another principal's token; only the principal that acquired it may extend, renew or release it", lock.Name)
}

// liveLock returns the lock's current grant, or nil if it is free or its lease has run out.
func (a *applier) liveLock(tx *txn, name string) (*bankdv1.Lock, error) {
	lock := &bankdv1.Lock{}
	found, err := getProto(tx, lockKey(name), lock)
	if err != nil || !found {
		return nil, err
	}
	if lock.ExpiresAtUnixMs <= a.now {
		return nil, nil
	}
	return lock, nil
}

func firstRefusal(errs ...*Error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
