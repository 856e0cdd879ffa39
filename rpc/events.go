package rpc

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/failpoint"
)

// eventPageSize is how many events one read of the state machine returns to a stream.
const eventPageSize = 256

// eventService implements bankd.v1.EventService.
type eventService struct{ s *Server }

var _ bankdv1connect.EventServiceHandler = (*eventService)(nil)

// WatchEvents streams this node's committed events from from_index on, then follows new ones.
// Any node serves it from its own state machine: events are keyed by Raft index, so a client
// that resumes at last+1 on another node sees neither a gap nor a duplicate.
func (e *eventService) WatchEvents(ctx context.Context, req *connect.Request[bankdv1.WatchEventsRequest], stream *connect.ServerStream[bankdv1.WatchEventsResponse]) error {
	s := e.s
	select {
	case s.streamSlots <- struct{}{}:
		defer func() { <-s.streamSlots }()
	default:
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"this node already serves %d event streams; retry later or on another node", cap(s.streamSlots)))
	}
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	// Send the headers now, so the client knows the stream is open even while no event comes.
	if err := stream.Send(nil); err != nil {
		return fmt.Errorf("open event stream: %w", err)
	}
	next := req.Msg.GetFromIndex()
	if next > 1 && failpoint.Enabled(failpoint.StreamResumeSkip) {
		next++ // failpoint StreamResumeSkip
	}
	st := s.node.State()
	for {
		// Take the channel before reading, so an apply that lands between the read and the
		// wait still wakes us.
		changed := st.Changed()
		events, err := st.Events(next, eventPageSize)
		var compacted *fsm.CompactedError
		if errors.As(err, &compacted) {
			return connect.NewError(connect.CodeOutOfRange, compacted)
		}
		if err != nil {
			return fmt.Errorf("read events from %d: %w", next, err)
		}
		for _, ev := range events {
			if ev.GetIndex() < next {
				// Never send an index twice or out of order, whatever the store returns.
				continue
			}
			if err := stream.Send(&bankdv1.WatchEventsResponse{Event: ev}); err != nil {
				if ctx.Err() != nil {
					return ctx.Err() // the client went away
				}
				return fmt.Errorf("send event %d: %w", ev.GetIndex(), err)
			}
			next = ev.GetIndex() + 1
		}
		if len(events) > 0 {
			// Pages are bounded in count and bytes, so a short page does not mean the end:
			// read again until a read comes back empty, then wait.
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.streamsDone:
			return connect.NewError(connect.CodeUnavailable,
				fmt.Errorf("node is shutting down; resume with from_index %d on another node", next))
		}
	}
}
