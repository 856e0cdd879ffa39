package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Bounds of the live streams.
const (
	// liveCheckInterval is how often a live stream checks that its session is still alive.
	liveCheckInterval = 2 * time.Second
	// heartbeatEvery sends a comment after this many quiet polls, so dead connections are found
	// (and proxies keep the stream); the event feed sends one every heartbeatInterval.
	heartbeatEvery    = 15
	heartbeatInterval = 15 * time.Second
	// eventBacklog is how many log indexes before the applied one a new event feed starts at.
	eventBacklog = 50
	// maxItemsPerEvent bounds the lines of one event (a batch of 8000 transfers is one event).
	maxItemsPerEvent = 20
	// sseRetryMs is how long a browser waits before reconnecting a dropped stream.
	sseRetryMs = 2000
)

// sse writes server-sent events; a heartbeat goroutine may write beside the stream's writer.
type sse struct {
	mu sync.Mutex
	w  http.ResponseWriter
	rc *http.ResponseController
}

// startSSE answers r with an event stream. It reads the request's (empty) body to its end
// first: the API edge lifts its body-read deadline then, which would otherwise cut a
// long-lived response.
func startSSE(w http.ResponseWriter, r *http.Request) (*sse, error) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxFormBytes))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", sseRetryMs); err != nil {
		return nil, err
	}
	return s, s.rc.Flush()
}

// send writes one event; data is JSON, which holds no raw newline.
func (s *sse) send(event, id string, data []byte) error {
	var b bytes.Buffer
	b.WriteString("event: " + event + "\n")
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sse) sendJSON(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.send(event, "", b)
}

func (s *sse) heartbeat() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := io.WriteString(s.w, ": ping\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// liveContext is the context of a live stream: it ends when the browser goes, the session
// ends (logout, expiry) or the server stops. The watcher goroutine ends with it.
func (c *Console) liveContext(q *request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(q.ctx())
	go func() {
		t := time.NewTicker(liveCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.stopped:
				cancel()
				return
			case <-t.C:
				if !c.sessions.alive(q.sess) {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}

// liveCluster polls this node's status and pushes the cluster snapshot whenever it changes,
// so the cluster page shows a new leader, term or index without a reload.
func (c *Console) liveCluster(q *request) {
	ctx, cancel := c.liveContext(q)
	defer cancel()
	out, err := startSSE(q.w, q.r)
	if err != nil {
		return
	}
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	var last []byte
	quiet := 0
	for {
		snap, err := c.clusterSnapshot(ctx)
		if ctx.Err() != nil {
			return
		}
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			_ = out.sendJSON("logout", "refused")
			return
		}
		b, err := json.Marshal(snap)
		if err != nil {
			return
		}
		if !bytes.Equal(b, last) {
			if out.send("cluster", "", b) != nil {
				return
			}
			last, quiet = b, 0
		} else if quiet++; quiet >= heartbeatEvery {
			if out.heartbeat() != nil {
				return
			}
			quiet = 0
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// eventLine is one event of the live feed.
type eventLine struct {
	Index uint64   `json:"index"`
	At    string   `json:"at"`
	Items []string `json:"items"`
}

// liveEvents relays EventService.WatchEvents: from the last event the browser saw when it
// reconnects (Last-Event-ID), else from a short backlog before the applied index.
func (c *Console) liveEvents(q *request) {
	ctx, cancel := c.liveContext(q)
	defer cancel()
	from, resuming := lastEventID(q.r)
	out, err := startSSE(q.w, q.r)
	if err != nil {
		return
	}
	if !resuming {
		if from, err = c.backlogStart(ctx); err != nil {
			c.endFeed(ctx, out, err)
			return
		}
	}
	err = c.relayEvents(ctx, out, from)
	if connect.CodeOf(err) == connect.CodeOutOfRange {
		// The events asked for were compacted away: follow from now on.
		if from, err = c.appliedNext(ctx); err == nil {
			_ = out.sendJSON("note", "Older events were compacted away; showing new ones.")
			err = c.relayEvents(ctx, out, from)
		}
	}
	c.endFeed(ctx, out, err)
}

// endFeed tells the browser why the feed ended (it reconnects by itself unless logged out).
func (c *Console) endFeed(ctx context.Context, out *sse, err error) {
	switch {
	case ctx.Err() != nil:
	case connect.CodeOf(err) == connect.CodeUnauthenticated:
		_ = out.sendJSON("logout", "refused")
	case err != nil:
		_ = out.sendJSON("refused", describeAPIError(err))
	}
}

func (c *Console) relayEvents(ctx context.Context, out *sse, from uint64) error {
	stream, err := c.api.event.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: from}))
	if err != nil {
		return err
	}
	defer func() { _ = stream.Close() }()
	// Events may not come for minutes: a comment now and then keeps the connection known alive.
	// It is joined before this returns: nothing may write to the response after the handler.
	done := make(chan struct{})
	var beats sync.WaitGroup
	defer func() {
		close(done)
		beats.Wait()
	}()
	beats.Add(1)
	go func() {
		defer beats.Done()
		t := time.NewTicker(heartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if out.heartbeat() != nil {
					return
				}
			}
		}
	}()
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		if ev == nil {
			continue
		}
		line := eventLine{Index: ev.Index, At: msText(ev.AtUnixMs)}
		for i, it := range ev.Items {
			if i == maxItemsPerEvent {
				line.Items = append(line.Items, fmt.Sprintf("… and %d more", len(ev.Items)-i))
				break
			}
			line.Items = append(line.Items, describeEvent(it))
		}
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		if err := out.send("event", strconv.FormatUint(ev.Index, 10), b); err != nil {
			return err
		}
	}
	return stream.Err()
}

func (c *Console) backlogStart(ctx context.Context) (uint64, error) {
	next, err := c.appliedNext(ctx)
	if err != nil {
		return 0, err
	}
	if next > eventBacklog {
		return next - eventBacklog, nil
	}
	return 1, nil
}

// appliedNext is the index after this node's applied one.
func (c *Console) appliedNext(ctx context.Context) (uint64, error) {
	st, err := c.api.cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
	if err != nil {
		return 0, err
	}
	return st.Msg.AppliedIndex + 1, nil
}

// lastEventID is the index after the last event a reconnecting browser saw.
func lastEventID(r *http.Request) (uint64, bool) {
	v := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return n + 1, true
}
