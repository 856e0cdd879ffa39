package fakelnd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bankd/bankd/lnpool/bolt11"
)

// maxControlBody bounds a control request's body.
const maxControlBody = 1 << 20

// Handler is the HTTP control endpoint of a Network (plain HTTP: it listens where only the
// harness reaches it).
func (n *Network) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, r *http.Request) { reply(w, n.Nodes(), nil) })
	mux.HandleFunc("POST /nodes/{name}/kill", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, n.Kill(r.PathValue("name")))
	})
	mux.HandleFunc("POST /nodes/{name}/restart", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, n.Restart(r.PathValue("name")))
	})
	mux.HandleFunc("POST /nodes/{name}/knobs", func(w http.ResponseWriter, r *http.Request) {
		var k Knobs
		if err := decode(r, &k); err != nil {
			badRequest(w, err)
			return
		}
		reply(w, struct{}{}, n.SetKnobs(r.PathValue("name"), k))
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, r *http.Request) { reply(w, struct{}{}, n.HealAll()) })
	mux.HandleFunc("POST /outside-invoice", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Sat int64 `json:"sat"`
		}
		if err := decode(r, &req); err != nil {
			badRequest(w, err)
			return
		}
		pr, err := n.OutsideInvoice(req.Sat)
		if err != nil {
			badRequest(w, err)
			return
		}
		inv, err := bolt11.Decode(pr, n.sim.Params())
		reply(w, Invoice{PaymentRequest: pr, Hash: inv.Hash}, err)
	})
	mux.HandleFunc("POST /pay", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			PaymentRequest string `json:"payment_request"`
		}
		if err := decode(r, &req); err != nil {
			badRequest(w, err)
			return
		}
		if err := n.PayFromOutside(req.PaymentRequest); err != nil {
			// Refused: the invoice is not payable (or its node is down). Nothing was paid.
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		reply(w, struct{}{}, nil)
	})
	mux.HandleFunc("POST /record", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OutsideHashes []string `json:"outside_hashes"`
		}
		if err := decode(r, &req); err != nil {
			badRequest(w, err)
			return
		}
		reply(w, n.Record(req.OutsideHashes), nil)
	})
	return mux
}

// Invoice is an outside invoice the control endpoint made.
type Invoice struct {
	PaymentRequest string `json:"payment_request"`
	Hash           string `json:"hash"`
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func badRequest(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusBadRequest) }

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		status := http.StatusInternalServerError
		if strings.Contains(err.Error(), "no node") {
			status = http.StatusNotFound
		}
		http.Error(w, err.Error(), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ErrRefused is what Client.Pay returns when the network refused to pay (nothing was paid).
var ErrRefused = fmt.Errorf("fakelnd refused the payment")

// Client calls a control endpoint.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient is a client of the control endpoint at addr (host:port).
func NewClient(addr string) *Client {
	return &Client{base: "http://" + addr, hc: &http.Client{Timeout: 30 * time.Second}}
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("fakelnd %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("fakelnd %s %s: %w", method, path, err)
	}
	switch {
	case res.StatusCode == http.StatusConflict:
		return fmt.Errorf("%w: %s", ErrRefused, strings.TrimSpace(string(b)))
	case res.StatusCode != http.StatusOK:
		return fmt.Errorf("fakelnd %s %s: %s: %s", method, path, res.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Nodes lists the simulated nodes.
func (c *Client) Nodes(ctx context.Context) ([]NodeInfo, error) {
	var out []NodeInfo
	return out, c.call(ctx, http.MethodGet, "/nodes", nil, &out)
}

// Kill kills a node (see Network.Kill).
func (c *Client) Kill(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodPost, "/nodes/"+name+"/kill", nil, nil)
}

// Restart serves a killed node again.
func (c *Client) Restart(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodPost, "/nodes/"+name+"/restart", nil, nil)
}

// SetKnobs sets a node's faults.
func (c *Client) SetKnobs(ctx context.Context, name string, k Knobs) error {
	return c.call(ctx, http.MethodPost, "/nodes/"+name+"/knobs", k, nil)
}

// Heal restarts every node and clears every knob.
func (c *Client) Heal(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/heal", nil, nil)
}

// OutsideInvoice makes an invoice of the outside world for sat.
func (c *Client) OutsideInvoice(ctx context.Context, sat int64) (Invoice, error) {
	var out Invoice
	return out, c.call(ctx, http.MethodPost, "/outside-invoice", map[string]int64{"sat": sat}, &out)
}

// Pay pays a pool node's invoice from outside; ErrRefused when the network would not.
func (c *Client) Pay(ctx context.Context, paymentRequest string) error {
	return c.call(ctx, http.MethodPost, "/pay", map[string]string{"payment_request": paymentRequest}, nil)
}

// Record reads the network's ground truth.
func (c *Client) Record(ctx context.Context, outsideHashes []string) (Record, error) {
	var out Record
	if outsideHashes == nil {
		outsideHashes = []string{}
	}
	return out, c.call(ctx, http.MethodPost, "/record", map[string][]string{"outside_hashes": outsideHashes}, &out)
}
