package console

import (
	"context"
	"time"

	"connectrpc.com/connect"
)

// readRetryDelays are the pauses between attempts of a read the API answered Unavailable (no
// leader known during an election, a forward that met a leader stepping down): a page asked
// for during a failover shows the state a moment later instead of an error. Bounded: four
// attempts within about 0.7 s; after that the page shows the API's answer.
var readRetryDelays = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}

// retryReads retries unary calls declared free of side effects (NO_SIDE_EFFECTS in the
// .proto files) that were answered Unavailable. Writes are never retried: an approval whose
// outcome is unknown is for the operator to look at, not for the console to send again.
type retryReads struct{}

func (retryReads) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if req.Spec().IdempotencyLevel != connect.IdempotencyNoSideEffects {
			return res, err
		}
		for _, delay := range readRetryDelays {
			if connect.CodeOf(err) != connect.CodeUnavailable {
				return res, err
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return res, err
			case <-t.C:
			}
			res, err = next(ctx, req)
		}
		return res, err
	}
}

func (retryReads) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (retryReads) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
