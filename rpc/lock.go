package rpc

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// lockService implements bankd.v1.LockService.
type lockService struct{ s *Server }

var _ bankdv1connect.LockServiceHandler = (*lockService)(nil)

func (l *lockService) Acquire(ctx context.Context, req *connect.Request[bankdv1.AcquireLockRequest]) (*connect.Response[bankdv1.AcquireLockResponse], error) {
	if err := validateAcquireLock(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.AcquireLockRequest) (*bankdv1.AcquireLockResponse, error) {
		return apply[*bankdv1.AcquireLockResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_ACQUIRE_LOCK, m, nil)
	})
}

func (l *lockService) Renew(ctx context.Context, req *connect.Request[bankdv1.RenewLockRequest]) (*connect.Response[bankdv1.RenewLockResponse], error) {
	if err := validateRenewLock(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.RenewLockRequest) (*bankdv1.RenewLockResponse, error) {
		return apply[*bankdv1.RenewLockResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_RENEW_LOCK, m, nil)
	})
}

func (l *lockService) Release(ctx context.Context, req *connect.Request[bankdv1.ReleaseLockRequest]) (*connect.Response[bankdv1.ReleaseLockResponse], error) {
	if err := validateReleaseLock(req.Msg); err != nil {
		return nil, err
	}
	return onLeader(ctx, l.s, req, func(ctx context.Context, m *bankdv1.ReleaseLockRequest) (*bankdv1.ReleaseLockResponse, error) {
		return apply[*bankdv1.ReleaseLockResponse](ctx, l.s, bankdv1.CommandType_COMMAND_TYPE_RELEASE_LOCK, m, nil)
	})
}

func (l *lockService) Get(ctx context.Context, req *connect.Request[bankdv1.GetLockRequest]) (*connect.Response[bankdv1.GetLockResponse], error) {
	if err := validateGetLock(req.Msg); err != nil {
		return nil, err
	}
	name := req.Msg.GetName()
	return read(ctx, l.s, req, req.Msg.GetConsistency(), func(st stateReader, meta *bankdv1.ReadMeta) (*bankdv1.GetLockResponse, error) {
		lock, err := st.Lock(name)
		if err != nil {
			return nil, fmt.Errorf("lock %q: %w", name, err)
		}
		return &bankdv1.GetLockResponse{Lock: lock, Meta: meta}, nil
	})
}
