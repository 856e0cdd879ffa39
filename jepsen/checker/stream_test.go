package checker

import (
	"testing"

	"github.com/bankd/bankd/jepsen/history"
	"github.com/bankd/bankd/jepsen/workload/stream"
)

// ev is an event carrying one applied transfer.
func ev(index uint64, id string) stream.Event {
	return stream.Event{Index: index, Items: []string{"transfer " + id + " TRANSFER_STATE_POSTED"}}
}

// streamLog is the final log of the stream checker's tests: transfers a..e at 3, 4, 6, 7, 9.
var streamLog = &stream.Final{MarkerIndex: 9, Log: []stream.Event{ev(3, "a"), ev(4, "b"), ev(6, "c"), ev(7, "d"), ev(9, "e")}}

func (h *timed) session(process, watcher int, from uint64, events ...stream.Event) *timed {
	s := stream.Session{Watcher: watcher, From: from}
	h.op(0, process, history.Invoke, stream.FWatch, s)
	s.Events = events
	return h.op(0, process, history.OK, stream.FWatch, s)
}

func (h *timed) streamTransfer(call, ret, process int, id string, index uint64) *timed {
	h.op(call, process, history.Invoke, stream.FTransfer, stream.Transfer{ID: id})
	return h.op(ret, process, history.OK, stream.FTransfer, stream.Transfer{ID: id, Index: index})
}

func TestStreamOrder(t *testing.T) {
	tests := []struct {
		name    string
		hist    *timed
		final   *stream.Final
		want    Verdict
		example string
	}{
		{"sessions that resume at last+1 on other nodes and see everything are valid",
			new(timed).session(1, 0, 1, ev(3, "a"), ev(4, "b")).session(2, 0, 5, ev(6, "c")).session(3, 0, 7, ev(7, "d"), ev(9, "e")),
			streamLog, Valid, ""},
		{"a session that ends early (a lagging node) is valid",
			new(timed).session(1, 0, 1, ev(3, "a")), streamLog, Valid, ""},
		{"a resumed session that skips the first event it owes is a gap",
			new(timed).session(1, 0, 1, ev(3, "a"), ev(4, "b")).session(2, 0, 5, ev(7, "d")),
			streamLog, Invalid, "gap: event 6"},
		{"a gap inside a session",
			new(timed).session(1, 0, 1, ev(3, "a"), ev(6, "c")), streamLog, Invalid, "gap: event 4"},
		{"an event delivered twice",
			new(timed).session(1, 0, 1, ev(3, "a"), ev(4, "b"), ev(4, "b")), streamLog, Invalid, "event 4 delivered after 4"},
		{"a resumed session that repeats the last event",
			new(timed).session(1, 0, 1, ev(3, "a")).session(2, 0, 4, ev(3, "a"), ev(4, "b")), streamLog, Invalid, "event 3 delivered after 3"},
		{"events out of order",
			new(timed).session(1, 0, 4, ev(4, "b"), ev(3, "a")), streamLog, Invalid, "event 3 delivered after 4"},
		{"an event the log does not have",
			new(timed).session(1, 0, 5, ev(5, "x")), streamLog, Invalid, "event 5 (transfer x TRANSFER_STATE_POSTED) is not in the final log"},
		{"an event whose content differs from the log's",
			new(timed).session(1, 0, 1, ev(3, "a"), ev(4, "z")), streamLog, Invalid, "event 4 was delivered as [transfer z"},
		{"acknowledged transfers in real-time order are valid",
			new(timed).streamTransfer(0, 10, 1, "a", 3).streamTransfer(20, 30, 2, "c", 6).streamTransfer(25, 35, 3, "b", 4),
			streamLog, Valid, ""},
		{"an acknowledged transfer missing from the log",
			new(timed).streamTransfer(0, 10, 1, "q", 5), streamLog, Invalid, "transfer q was acknowledged at index 5"},
		{"a transfer invoked after another's ack but committed before it",
			new(timed).streamTransfer(0, 10, 1, "c", 6).streamTransfer(20, 30, 2, "b", 4),
			streamLog, Invalid, "transfer b was invoked at t=20ms, after c was acknowledged at index 6, yet committed at 4"},
		{"without a final log duplicates are still caught",
			new(timed).session(1, 0, 1, ev(3, "a"), ev(3, "a")), nil, Invalid, "event 3 delivered after 3"},
		{"nothing received and nothing acknowledged proves nothing",
			new(timed).session(1, 0, 1), streamLog, Unknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, StreamOrder(tt.hist.ops, tt.final), tt.want, tt.example)
		})
	}
}
