package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// apiBaseURL is the base URL of the console's API clients. inProcessTransport never dials it:
// the host only names the requests in the API's access log.
const apiBaseURL = "http://console.in-process"

// tokenKey carries the logged-in operator's API token in a request's context, from the page
// handler to inProcessTransport, which sends it as a bearer token.
type tokenKey struct{}

func withToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// peerKey carries the browser's address, so the API's access log names the real peer.
type peerKey struct{}

func withPeer(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, peerKey{}, addr)
}

// inProcessTransport serves each request of the console's API clients with the API's own
// handler, in process: the same authentication, scope gate, validation, limits and leader
// forwarding as a call from outside, without a socket, a certificate or a second copy of the
// API. Response bodies stream (through a pipe), so WatchEvents works; the stream ends when the
// caller closes the body or cancels the request's context.
type inProcessTransport struct {
	api http.Handler
}

var errNoToken = errors.New("console: API call without a token")

func (t inProcessTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	token, _ := req.Context().Value(tokenKey{}).(string)
	if token == "" {
		// Every console call is made for a logged-in operator; a call without one is a bug.
		closeBody(req)
		return nil, errNoToken
	}
	sreq := req.Clone(req.Context())
	sreq.Header.Set("Authorization", "Bearer "+token)
	sreq.RequestURI = req.URL.RequestURI()
	sreq.Host = req.URL.Host
	sreq.RemoteAddr = "console"
	if peer, ok := req.Context().Value(peerKey{}).(string); ok {
		sreq.RemoteAddr = peer
	}
	sreq.Proto, sreq.ProtoMajor, sreq.ProtoMinor = "HTTP/1.1", 1, 1
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}

	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, body: pw, headerSent: make(chan struct{})}
	go func() {
		defer func() {
			if v := recover(); v != nil {
				w.finish(fmt.Errorf("console: api handler panicked: %v", v))
				return
			}
			w.finish(nil)
		}()
		t.api.ServeHTTP(w, sreq)
	}()
	select {
	case <-w.headerSent:
	case <-req.Context().Done():
		_ = pr.CloseWithError(req.Context().Err())
		return nil, req.Context().Err()
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sent,
		Body:          pr,
		ContentLength: -1,
		Request:       req,
	}, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// pipeWriter is the http.ResponseWriter the API's handler writes to: headers are handed over
// once (at the first WriteHeader, Write or Flush, or when the handler returns), the body goes
// through a pipe to the client, and Flush is a no-op beyond that since the pipe does not buffer.
type pipeWriter struct {
	header     http.Header
	body       *io.PipeWriter
	headerSent chan struct{}

	once   sync.Once
	status int
	sent   http.Header
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(status int) {
	w.once.Do(func() {
		w.status = status
		w.sent = w.header.Clone()
		close(w.headerSent)
	})
}

func (w *pipeWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// Flush sends the headers; the body is never buffered.
func (w *pipeWriter) Flush() { w.WriteHeader(http.StatusOK) }

// finish ends the response when the handler returns.
func (w *pipeWriter) finish(err error) {
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
	}
	w.WriteHeader(http.StatusOK)
	_ = w.body.CloseWithError(err)
}
