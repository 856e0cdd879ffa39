// Package bearer is the client side of bankd's API authentication: a Connect interceptor that
// sends "Authorization: Bearer <token>" on every call, unary or streaming. bankctl, the test
// harnesses and any Go client use it; the server side lives in rpc/.
package bearer

import (
	"context"

	"connectrpc.com/connect"
)

// Token returns an interceptor that sends token with every call.
func Token(token string) connect.Interceptor { return interceptor("Bearer " + token) }

type interceptor string

func (h interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", string(h))
		return next(ctx, req)
	}
}

func (h interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", string(h))
		return conn
	}
}

// WrapStreamingHandler leaves handlers alone: the interceptor is for clients.
func (h interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
