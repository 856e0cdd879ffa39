// Package chainrpc is a small, strict JSON-RPC client for the subset of the
// Bitcoin node RPC interface that btcd and bitcoind share.
//
// Every call takes a context, every reply is bounded in size and validated
// before it is returned: JSON types, hash and hex lengths, and for blocks,
// headers and transactions the hash of what the node sent must be the hash
// that was asked for (a block's merkle root and witness commitment are checked
// too). A node that sends anything else gets an error wrapping ErrBadReply
// naming what was wrong; nothing it sent is returned.
//
// Errors come in four kinds:
//
//   - *RPCError: the node answered with a JSON-RPC error (IsNotFound and
//     IsOutOfRange classify the common ones);
//   - *HTTPError: a non-200 HTTP status without a JSON-RPC error, e.g. 401
//     for a wrong password;
//   - ErrBadReply (and ErrReplyTooLarge): the node's reply is not acceptable;
//   - anything else is a transport error (connection refused, TLS, the
//     context's deadline), wrapped with the method name.
//
// btcd serves its RPC over TLS with a self-signed certificate (rpc.cert),
// which is passed as Config.CertPEM; bitcoind serves plain HTTP
// (Config.DisableTLS). Requests use JSON-RPC 1.0 framing, which both accept.
package chainrpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/btcsuite/btcd/wire"
)

// DefaultMaxReplyBytes bounds a reply body unless Config.MaxReplyBytes says
// otherwise. A largest possible block is 4 MB, 8 MB in hex.
const DefaultMaxReplyBytes = 64 << 20

// DefaultMaxBlockBytes bounds the serialized size of a block (and of a
// transaction) unless Config.MaxBlockBytes says otherwise. It is the largest
// serialized size a block can have under the 4M weight limit.
const DefaultMaxBlockBytes = wire.MaxBlockPayload

// Config says how to reach a node.
type Config struct {
	// Host is the node's RPC address, host:port (btcd regtest listens on
	// 18334 by default, bitcoind regtest on 18443).
	Host string
	// User and Pass are the RPC credentials, sent with HTTP basic auth.
	// For bitcoind's cookie authentication, User is "__cookie__" and Pass
	// the rest of the cookie file.
	User string
	Pass string
	// CertPEM holds the PEM certificate(s) to trust for TLS, e.g. the
	// contents of btcd's rpc.cert. Empty means the system's roots.
	CertPEM []byte
	// DisableTLS makes the client speak plain HTTP (bitcoind's RPC).
	DisableTLS bool
	// MaxReplyBytes bounds a reply body; 0 means DefaultMaxReplyBytes.
	MaxReplyBytes int64
	// MaxBlockBytes bounds the serialized size of a block or transaction;
	// 0 means DefaultMaxBlockBytes.
	MaxBlockBytes int
}

// Client is a JSON-RPC client for one node. It is safe for concurrent use.
type Client struct {
	url           string
	user, pass    string
	maxReply      int64
	maxBlockBytes int
	http          *http.Client
	lastID        atomic.Uint64
}

// New returns a client for the node described by cfg. It does not connect;
// the first call does.
func New(cfg Config) (*Client, error) {
	if cfg.Host == "" {
		return nil, errors.New("chainrpc: no host given")
	}
	if strings.Contains(cfg.Host, "://") || strings.ContainsAny(cfg.Host, "/?#@ ") {
		return nil, fmt.Errorf("chainrpc: host %q must be host:port, without scheme or path", cfg.Host)
	}
	if cfg.MaxReplyBytes < 0 || cfg.MaxBlockBytes < 0 {
		return nil, errors.New("chainrpc: negative size limit")
	}
	c := &Client{
		user:          cfg.User,
		pass:          cfg.Pass,
		maxReply:      cfg.MaxReplyBytes,
		maxBlockBytes: cfg.MaxBlockBytes,
	}
	if c.maxReply == 0 {
		c.maxReply = DefaultMaxReplyBytes
	}
	if c.maxBlockBytes == 0 {
		c.maxBlockBytes = DefaultMaxBlockBytes
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	// A node's RPC is never reached through the environment's proxy: that
	// would hand the RPC password to the proxy.
	transport.Proxy = nil
	transport.MaxIdleConnsPerHost = 4
	if cfg.DisableTLS {
		if len(cfg.CertPEM) > 0 {
			return nil, errors.New("chainrpc: a TLS certificate was given but TLS is disabled")
		}
		c.url = "http://" + cfg.Host + "/"
	} else {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if len(cfg.CertPEM) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(cfg.CertPEM) {
				return nil, errors.New("chainrpc: no certificate found in the given PEM")
			}
			tlsCfg.RootCAs = pool
		}
		transport.TLSClientConfig = tlsCfg
		c.url = "https://" + cfg.Host + "/"
	}
	c.http = &http.Client{
		Transport: transport,
		// A node does not redirect; following one would resend the
		// credentials somewhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return c, nil
}

// Close releases the client's idle connections. The client stays usable.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

type request struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

// call sends one request and returns the raw, non-null "result" member of
// the reply. Errors are wrapped with what, which names the call for a reader
// (e.g. "getblock 0f9188f1...").
func (c *Client) call(ctx context.Context, what, method string, params ...any) (json.RawMessage, error) {
	raw, err := c.roundTrip(ctx, method, params)
	if err != nil {
		return nil, fmt.Errorf("chainrpc: %s: %w", what, err)
	}
	return raw, nil
}

func (c *Client) roundTrip(ctx context.Context, method string, params []any) (json.RawMessage, error) {
	if params == nil {
		params = []any{}
	}
	id := c.lastID.Add(1)
	body, err := json.Marshal(request{JSONRPC: "1.0", ID: id, Method: method, Params: params})
	if err != nil {
		return nil, fmt.Errorf("encoding request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/json")

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	if resp.ContentLength > c.maxReply {
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrReplyTooLarge, resp.ContentLength, c.maxReply)
	}
	reply, err := io.ReadAll(io.LimitReader(resp.Body, c.maxReply+1))
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if int64(len(reply)) > c.maxReply {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrReplyTooLarge, c.maxReply)
	}

	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, &HTTPError{Method: method, StatusCode: resp.StatusCode, Body: snippet(reply)}
	}
	result, err := decodeReply(reply, id)
	var rpcErr *RPCError
	switch {
	case errors.As(err, &rpcErr):
		// bitcoind sends JSON-RPC 1.0 errors with HTTP 500 or 404.
		rpcErr.Method = method
		return nil, rpcErr
	case resp.StatusCode != http.StatusOK:
		return nil, &HTTPError{Method: method, StatusCode: resp.StatusCode, Body: snippet(reply)}
	case err != nil:
		return nil, err
	}
	return result, nil
}

// snippet returns the start of a reply body, fit for an error message.
func snippet(b []byte) string {
	const limit = 200
	s := strings.TrimSpace(string(b))
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
