package regtest

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
	"sync/atomic"
)

// RPCConfig describes how to reach a btcd's JSON-RPC server. btcd serves RPC over TLS only,
// with a self-signed certificate that it generated at first start.
type RPCConfig struct {
	// Host is host:port of the RPC listener (a loopback address).
	Host string
	// User and Pass are the RPC credentials.
	User, Pass string
	// CertPath is the file that holds Cert; lnd takes it as --btcd.rpccert.
	CertPath string
	// Cert is the PEM-encoded certificate of the RPC server.
	Cert []byte
}

// TLSConfig returns a client TLS configuration that trusts exactly the server's certificate.
func (c RPCConfig) TLSConfig() (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.Cert) {
		return nil, fmt.Errorf("regtest: no PEM certificate in the RPC certificate %s", c.CertPath)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// RPCError is an error returned by btcd for one JSON-RPC call.
type RPCError struct {
	Method  string `json:"-"`
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("btcd %s: %s (code %d)", e.Method, e.Message, e.Code)
}

// rpcClient is a minimal JSON-RPC client for btcd's HTTP POST interface, with a context on
// every call and support for batches.
type rpcClient struct {
	cfg    RPCConfig
	http   *http.Client
	nextID atomic.Uint64
}

func newRPCClient(cfg RPCConfig) (*rpcClient, error) {
	tlsConfig, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	// btcd closes the connection after every response, so each call is a new TLS connection;
	// resuming sessions spares the expensive part of the handshake (btcd's certificate has a
	// P-521 key).
	tlsConfig.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	transport := &http.Transport{
		TLSClientConfig:   tlsConfig,
		DisableKeepAlives: true,
	}
	return &rpcClient{cfg: cfg, http: &http.Client{Transport: transport}}, nil
}

func (c *rpcClient) close() {
	c.http.CloseIdleConnections()
}

type rpcRequest struct {
	JSONRPC string `json:"jsonrpc"`
	ID      uint64 `json:"id"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
}

type rpcResponse struct {
	ID     uint64          `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *RPCError       `json:"error"`
}

// rpcCall is one call of a batch; Err is set per call.
type rpcCall struct {
	Method string
	Params []any
	Result any // pointer to decode the result into; nil to discard it
	Err    error
}

// call performs one JSON-RPC call and decodes its result into result (unless nil).
func (c *rpcClient) call(ctx context.Context, method string, result any, params ...any) error {
	calls := []rpcCall{{Method: method, Params: params, Result: result}}
	if err := c.batch(ctx, calls); err != nil {
		return err
	}
	return calls[0].Err
}

// batch sends all calls in one HTTP request. The returned error is for the request as a
// whole; each call's own outcome is in its Err field.
func (c *rpcClient) batch(ctx context.Context, calls []rpcCall) error {
	if len(calls) == 0 {
		return nil
	}
	reqs := make([]rpcRequest, len(calls))
	byID := make(map[uint64]int, len(calls))
	for i, call := range calls {
		params := call.Params
		if params == nil {
			params = []any{}
		}
		id := c.nextID.Add(1)
		reqs[i] = rpcRequest{JSONRPC: "1.0", ID: id, Method: call.Method, Params: params}
		byID[id] = i
	}
	var body any = reqs[0]
	if len(reqs) > 1 {
		body = reqs
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("btcd %s: encoding request: %w", calls[0].Method, err)
	}
	httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+c.cfg.Host,
		bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("btcd %s: %w", calls[0].Method, err)
	}
	httpReq.SetBasicAuth(c.cfg.User, c.cfg.Pass)
	httpReq.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(httpReq)
	if err != nil {
		return fmt.Errorf("btcd %s: %w", calls[0].Method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("btcd %s: reading response: %w", calls[0].Method, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("btcd %s: HTTP %s: %s", calls[0].Method, resp.Status,
			bytes.TrimSpace(raw))
	}

	var resps []rpcResponse
	if len(reqs) > 1 {
		err = json.Unmarshal(raw, &resps)
	} else {
		resps = make([]rpcResponse, 1)
		err = json.Unmarshal(raw, &resps[0])
	}
	if err != nil {
		return fmt.Errorf("btcd %s: decoding response: %w", calls[0].Method, err)
	}

	answered := 0
	for _, r := range resps {
		i, ok := byID[r.ID]
		if !ok {
			continue
		}
		answered++
		call := &calls[i]
		switch {
		case r.Error != nil:
			r.Error.Method = call.Method
			call.Err = r.Error
		case call.Result != nil:
			if err := json.Unmarshal(r.Result, call.Result); err != nil {
				call.Err = fmt.Errorf("btcd %s: decoding result: %w", call.Method, err)
			}
		}
	}
	if answered != len(calls) {
		return errors.New("btcd " + calls[0].Method + ": response is missing answers")
	}
	return nil
}
