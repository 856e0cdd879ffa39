package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// fakeLightning is a LightningService that answers from what the test put in it and records
// the requests it was sent.
type fakeLightning struct {
	bankdv1connect.UnimplementedLightningServiceHandler

	mu sync.Mutex
	// nodes is the pool. Once DrainNode drained a node, each ListNodes moves it one step towards
	// retirement (one open invoice, then one payment in flight, then retired) unless
	// stuckDraining.
	nodes         []*bankdv1.LndNode
	stuckDraining bool
	reconcile     []*bankdv1.NodeReconciliation
	// invoice answers GetInvoice for its hash.
	invoice *bankdv1.LnInvoice
	// payment answers GetPayment for its id, and PayInvoice with the request's id and account.
	payment *bankdv1.LnPayment

	auth           string
	added          *bankdv1.AddLndNodeRequest
	drained        *bankdv1.DrainLndNodeRequest
	created        *bankdv1.CreateInvoiceRequest
	paid           *bankdv1.PayInvoiceRequest
	paidInternally *bankdv1.PayInternalRequest
}

func (f *fakeLightning) node(id string) *bankdv1.LndNode {
	for _, n := range f.nodes {
		if n.Id == id {
			return n
		}
	}
	return nil
}

func (f *fakeLightning) ListNodes(_ context.Context, _ *connect.Request[bankdv1.ListLndNodesRequest]) (*connect.Response[bankdv1.ListLndNodesResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := &bankdv1.ListLndNodesResponse{}
	for _, n := range f.nodes {
		if n.State == bankdv1.LndNodeState_LND_NODE_STATE_DRAINING && n.Id == f.drained.GetId() && !f.stuckDraining {
			switch {
			case n.OpenInvoices > 0:
				n.OpenInvoices--
			case n.InflightPayments > 0:
				n.InflightPayments--
			default:
				n.State = bankdv1.LndNodeState_LND_NODE_STATE_RETIRED
			}
		}
		res.Nodes = append(res.Nodes, proto.Clone(n).(*bankdv1.LndNode))
	}
	return connect.NewResponse(res), nil
}

func (f *fakeLightning) AddNode(_ context.Context, req *connect.Request[bankdv1.AddLndNodeRequest]) (*connect.Response[bankdv1.AddLndNodeResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth, f.added = req.Header().Get("Authorization"), req.Msg
	m := req.Msg
	n := &bankdv1.LndNode{Id: m.Id, Address: m.Address, TlsCertPath: m.TlsCertPath, MacaroonPath: m.MacaroonPath,
		State: bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE, AccountId: "ln:" + m.Id}
	return connect.NewResponse(&bankdv1.AddLndNodeResponse{Node: n, Created: f.node(m.Id) == nil}), nil
}

func (f *fakeLightning) DrainNode(_ context.Context, req *connect.Request[bankdv1.DrainLndNodeRequest]) (*connect.Response[bankdv1.DrainLndNodeResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drained = req.Msg
	n := f.node(req.Msg.Id)
	if n == nil {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("lnd node %q: not found", req.Msg.Id))
	}
	n.State = bankdv1.LndNodeState_LND_NODE_STATE_DRAINING
	if req.Msg.Undo {
		n.State = bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE
	}
	return connect.NewResponse(&bankdv1.DrainLndNodeResponse{Node: proto.Clone(n).(*bankdv1.LndNode)}), nil
}

func (f *fakeLightning) Reconcile(context.Context, *connect.Request[bankdv1.ReconcileLightningRequest]) (*connect.Response[bankdv1.ReconcileLightningResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return connect.NewResponse(&bankdv1.ReconcileLightningResponse{Nodes: f.reconcile}), nil
}

func (f *fakeLightning) CreateInvoice(_ context.Context, req *connect.Request[bankdv1.CreateInvoiceRequest]) (*connect.Response[bankdv1.CreateInvoiceResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = req.Msg
	m := req.Msg
	inv := &bankdv1.LnInvoice{
		Hash: testHash, AccountId: m.AccountId, NodeId: "lnd1", AmountSat: m.AmountSat, Memo: m.Memo,
		PaymentRequest: testBolt11, State: bankdv1.InvoiceState_INVOICE_STATE_OPEN, RequestId: m.RequestId,
		CreatedUnixMs: testNowMs, ExpiresUnixMs: testNowMs + m.ExpirySeconds*1000,
	}
	return connect.NewResponse(&bankdv1.CreateInvoiceResponse{Invoice: inv}), nil
}

func (f *fakeLightning) GetInvoice(_ context.Context, req *connect.Request[bankdv1.GetInvoiceRequest]) (*connect.Response[bankdv1.GetInvoiceResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.invoice == nil || f.invoice.Hash != req.Msg.Hash {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("invoice %s: not found", req.Msg.Hash))
	}
	return connect.NewResponse(&bankdv1.GetInvoiceResponse{Invoice: f.invoice}), nil
}

func (f *fakeLightning) PayInvoice(_ context.Context, req *connect.Request[bankdv1.PayInvoiceRequest]) (*connect.Response[bankdv1.PayInvoiceResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paid = req.Msg
	p := proto.Clone(f.payment).(*bankdv1.LnPayment)
	p.Id, p.AccountId, p.PaymentRequest = req.Msg.Id, req.Msg.AccountId, req.Msg.PaymentRequest
	return connect.NewResponse(&bankdv1.PayInvoiceResponse{Payment: p}), nil
}

func (f *fakeLightning) GetPayment(_ context.Context, req *connect.Request[bankdv1.GetPaymentRequest]) (*connect.Response[bankdv1.GetPaymentResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.payment == nil || f.payment.Id != req.Msg.Id {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("payment %q: not found", req.Msg.Id))
	}
	return connect.NewResponse(&bankdv1.GetPaymentResponse{Payment: f.payment}), nil
}

func (f *fakeLightning) PayInternal(_ context.Context, req *connect.Request[bankdv1.PayInternalRequest]) (*connect.Response[bankdv1.PayInternalResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paidInternally = req.Msg
	m := req.Msg
	t := &bankdv1.Transfer{Id: m.Id, DebitAccountId: m.FromAccountId, CreditAccountId: m.ToAccountId, Amount: m.AmountSat,
		Currency: "BTC", Code: 7001, State: bankdv1.TransferState_TRANSFER_STATE_POSTED, Index: 42}
	return connect.NewResponse(&bankdv1.PayInternalResponse{Transfer: t}), nil
}

// serveLightning starts f behind an HTTP server and returns bankctl's environment for it.
func serveLightning(t *testing.T, f *fakeLightning) map[string]string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(bankdv1connect.NewLightningServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return map[string]string{envAddr: srv.URL, envToken: "admin-token"}
}

const (
	testNowMs  = int64(1_700_000_000_000)
	testBolt11 = "lnbcrt15u1pjfaketestinvoice"
)

var (
	testHash   = strings.Repeat("ab", 32)
	testPubkey = "02" + strings.Repeat("cd", 32)
)

func testPool() []*bankdv1.LndNode {
	return []*bankdv1.LndNode{
		{Id: "lnd1", State: bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE, Pubkey: testPubkey, AccountId: "ln:lnd1",
			Reachable: true, SyncedToChain: true, HealthCheckedUnixMs: testNowMs, OpenInvoices: 2, InflightPayments: 1},
		{Id: "lnd2", State: bankdv1.LndNodeState_LND_NODE_STATE_DRAINING, AccountId: "ln:lnd2",
			HealthCheckedUnixMs: testNowMs, HealthError: "connection refused"},
		{Id: "lnd3", State: bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE, Pubkey: "03" + strings.Repeat("ef", 32), AccountId: "ln:lnd3",
			Reachable: true, HealthCheckedUnixMs: testNowMs},
	}
}

func testPayment(state bankdv1.PaymentState) *bankdv1.LnPayment {
	p := &bankdv1.LnPayment{
		Id: "p1", AccountId: "alice", Hash: testHash, PaymentRequest: testBolt11, Destination: testPubkey,
		AmountSat: 1500, FeeReserveSat: 20, NodeId: "lnd1", Attempt: 1, State: state,
		CreatedUnixMs: testNowMs, TransferId: "lnpay:p1",
	}
	switch state {
	case bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED:
		p.FeeSat, p.Preimage, p.ResolvedUnixMs = 3, strings.Repeat("0f", 32), testNowMs+800
	case bankdv1.PaymentState_PAYMENT_STATE_FAILED:
		p.FailureReason, p.ResolvedUnixMs = "no_route", testNowMs+800
	}
	return p
}

// tableRow returns the fields of the output line whose first field is key.
func tableRow(out, key string) []string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == key {
			return f
		}
	}
	return nil
}

func decodeJSON(t *testing.T, out string, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("stdout is not one %T document: %v\n%s", m, err, out)
	}
}

func TestBankctlLightning(t *testing.T) {
	defer func(d time.Duration) { drainPollInterval = d }(drainPollInterval)
	drainPollInterval = 5 * time.Millisecond
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		setup  func(f *fakeLightning)
		args   []string
		code   int
		stdout []string // each must appear on stdout
		stderr []string // each must appear on stderr
		check  func(t *testing.T, f *fakeLightning, stdout, stderr string)
	}{
		{
			name: "lnd nodes",
			args: []string{"lnd", "nodes"},
			stdout: []string{"ID", "STATE", "HEALTHY", "PUBKEY", "OPEN INVOICES", "IN FLIGHT", "ACCOUNT", "ERROR",
				"no (unreachable)", "connection refused", "no (not synced)"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				want := []string{"lnd1", "active", "yes", "02cdcdcdcd...cdcdcd", "2", "1", "ln:lnd1", "-"}
				if got := tableRow(out, "lnd1"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("lnd1 row = %q, want %q", got, want)
				}
				// HEALTHY is "no (unreachable)": two fields.
				if got := tableRow(out, "lnd2"); len(got) < 5 || got[1] != "draining" || got[4] != "-" {
					t.Errorf("lnd2 row = %q, want draining with no pubkey", got)
				}
			},
		},
		{
			name: "lnd nodes json",
			args: []string{"lnd", "nodes", "-o", "json"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				var res bankdv1.ListLndNodesResponse
				decodeJSON(t, out, &res)
				if len(res.Nodes) != 3 || res.Nodes[0].Pubkey != testPubkey || res.Nodes[1].HealthError != "connection refused" {
					t.Errorf("nodes = %v", res.Nodes)
				}
			},
		},
		{
			name:   "lnd add makes the paths absolute",
			args:   []string{"lnd", "add", "lnd4", "-address", "10.0.0.4:10009", "-tls-cert", "certs/tls.cert", "-macaroon", "/etc/lnd/bankd.macaroon"},
			stdout: []string{"lnd node lnd4 added to the pool", "ln:lnd4"},
			check: func(t *testing.T, f *fakeLightning, _, _ string) {
				want := &bankdv1.AddLndNodeRequest{Id: "lnd4", Address: "10.0.0.4:10009",
					TlsCertPath: filepath.Join(wd, "certs", "tls.cert"), MacaroonPath: "/etc/lnd/bankd.macaroon"}
				if !proto.Equal(f.added, want) {
					t.Errorf("AddNode got %v, want %v", f.added, want)
				}
				if f.auth != "Bearer admin-token" {
					t.Errorf("Authorization = %q", f.auth)
				}
			},
		},
		{
			name:   "lnd add of a known node",
			args:   []string{"lnd", "add", "lnd1", "-address", "h:1", "-tls-cert", "/c", "-macaroon", "/m"},
			stdout: []string{"lnd node lnd1 was already in the pool"},
		},
		{
			name: "lnd add json",
			args: []string{"-o", "json", "lnd", "add", "lnd4", "-address", "h:1", "-tls-cert", "/c", "-macaroon", "/m"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				var res bankdv1.AddLndNodeResponse
				decodeJSON(t, out, &res)
				if !res.Created || res.Node.GetId() != "lnd4" {
					t.Errorf("response = %v", &res)
				}
			},
		},
		{
			name: "lnd drain",
			args: []string{"lnd", "drain", "lnd1"},
			check: func(t *testing.T, f *fakeLightning, out, _ string) {
				if f.drained.GetUndo() {
					t.Error("drain sent undo")
				}
				if row := tableRow(out, "lnd1"); len(row) < 2 || row[1] != "draining" {
					t.Errorf("lnd1 row = %q\n%s", row, out)
				}
			},
		},
		{
			name: "lnd drain -undo",
			args: []string{"lnd", "drain", "lnd2", "-undo"},
			check: func(t *testing.T, f *fakeLightning, out, _ string) {
				if !f.drained.GetUndo() {
					t.Error("drain -undo did not send undo")
				}
				if row := tableRow(out, "lnd2"); len(row) < 2 || row[1] != "active" {
					t.Errorf("lnd2 row = %q\n%s", row, out)
				}
			},
		},
		{
			name: "lnd drain json",
			args: []string{"lnd", "drain", "lnd1", "-o", "json"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				var res bankdv1.DrainLndNodeResponse
				decodeJSON(t, out, &res)
				if res.Node.GetState() != bankdv1.LndNodeState_LND_NODE_STATE_DRAINING {
					t.Errorf("node = %v", res.Node)
				}
			},
		},
		{
			name: "lnd drain -wait reaches retired",
			args: []string{"lnd", "drain", "lnd1", "-wait"},
			stdout: []string{
				"draining lnd1: 2 open invoice(s), 1 payment(s) in flight\n" +
					"draining lnd1: 1 open invoice(s), 1 payment(s) in flight\n" +
					"draining lnd1: 0 open invoice(s), 1 payment(s) in flight\n" +
					"draining lnd1: 0 open invoice(s), 0 payment(s) in flight\n" +
					"lnd node lnd1 is retired\n",
			},
		},
		{
			name:   "lnd drain -wait json",
			args:   []string{"lnd", "drain", "lnd1", "-wait", "-o", "json"},
			stderr: []string{"draining lnd1: 2 open invoice(s)", "draining lnd1: 0 open invoice(s), 0 payment(s) in flight"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				var res bankdv1.DrainLndNodeResponse
				decodeJSON(t, out, &res)
				if res.Node.GetState() != bankdv1.LndNodeState_LND_NODE_STATE_RETIRED {
					t.Errorf("node = %v", res.Node)
				}
			},
		},
		{
			name:   "lnd drain -wait gives up at -timeout",
			setup:  func(f *fakeLightning) { f.stuckDraining = true },
			args:   []string{"lnd", "drain", "lnd1", "-wait", "-timeout", "100ms"},
			code:   exitFail,
			stdout: []string{"draining lnd1: 2 open invoice(s), 1 payment(s) in flight"},
			stderr: []string{"lnd node lnd1 is still draining after", "larger -timeout"},
		},
		{
			name:   "lnd drain of an unknown node",
			args:   []string{"lnd", "drain", "lnd9", "-wait"},
			code:   exitFail,
			stderr: []string{`bankctl: not_found: lnd node "lnd9": not found`},
		},
		{
			name: "lnd reconcile balanced",
			setup: func(f *fakeLightning) {
				f.reconcile = []*bankdv1.NodeReconciliation{{NodeId: "lnd1", LedgerSat: 500_000, LndSat: 500_000}}
			},
			args:   []string{"lnd", "reconcile"},
			stdout: []string{"NODE", "LEDGER", "LND", "DIFFERENCE", "ERROR"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				want := []string{"lnd1", "500000", "500000", "0", "-"}
				if got := tableRow(out, "lnd1"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("lnd1 row = %q, want %q", got, want)
				}
			},
		},
		{
			name: "lnd reconcile with a difference",
			setup: func(f *fakeLightning) {
				f.reconcile = []*bankdv1.NodeReconciliation{
					{NodeId: "lnd1", LedgerSat: 500_000, LndSat: 500_000},
					{NodeId: "lnd2", LedgerSat: 100, LndSat: 105, DifferenceSat: 5},
				}
			},
			args:   []string{"lnd", "reconcile"},
			code:   exitFail,
			stderr: []string{"bankctl: error: lightning does not reconcile: lnd2 differs by +5 sat\n"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				want := []string{"lnd2", "100", "105", "+5", "-"}
				if got := tableRow(out, "lnd2"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("lnd2 row = %q, want %q", got, want)
				}
			},
		},
		{
			name: "lnd reconcile with a node that could not be asked",
			setup: func(f *fakeLightning) {
				f.reconcile = []*bankdv1.NodeReconciliation{
					{NodeId: "lnd1", LedgerSat: 7, LndSat: 5, DifferenceSat: -2},
					{NodeId: "lnd3", LedgerSat: 900, Error: "lnd unavailable"},
				}
			},
			args:   []string{"lnd", "reconcile"},
			code:   exitFail,
			stdout: []string{"lnd unavailable"},
			stderr: []string{"lightning does not reconcile: lnd1 differs by -2 sat, lnd3 could not be asked"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				want := []string{"lnd3", "900", "-", "-", "lnd", "unavailable"}
				if got := tableRow(out, "lnd3"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("lnd3 row = %q, want %q", got, want)
				}
			},
		},
		{
			name: "lnd reconcile json with a difference",
			setup: func(f *fakeLightning) {
				f.reconcile = []*bankdv1.NodeReconciliation{{NodeId: "lnd2", LedgerSat: 100, LndSat: 90, DifferenceSat: -10}}
			},
			args:   []string{"-o", "json", "lnd", "reconcile"},
			code:   exitFail,
			stderr: []string{"lnd2 differs by -10 sat"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				var res bankdv1.ReconcileLightningResponse
				decodeJSON(t, out, &res)
				if len(res.Nodes) != 1 || res.Nodes[0].DifferenceSat != -10 {
					t.Errorf("nodes = %v", res.Nodes)
				}
			},
		},
		{
			name:   "invoice create",
			args:   []string{"invoice", "create", "alice", "1500", "-memo", "coffee", "-expiry", "90m"},
			stdout: []string{"hash:", testHash, "node:", "lnd1", "expires:", "2023-11-14T23:43:20.000Z", "1500 sat", "coffee"},
			stderr: []string{"request id: ctl-", "(retry with -request-id ctl-"},
			check: func(t *testing.T, f *fakeLightning, out, _ string) {
				if first := strings.SplitN(out, "\n", 2)[0]; first != testBolt11 {
					t.Errorf("first line = %q, want the payment request alone", first)
				}
				m := f.created
				if m.GetAccountId() != "alice" || m.GetAmountSat() != 1500 || m.GetMemo() != "coffee" || m.GetExpirySeconds() != 5400 ||
					!strings.HasPrefix(m.GetRequestId(), "ctl-") {
					t.Errorf("CreateInvoice got %v", m)
				}
			},
		},
		{
			name: "invoice create json with a request id",
			args: []string{"-o", "json", "invoice", "create", "alice", "1500", "-request-id", "r1"},
			check: func(t *testing.T, f *fakeLightning, out, errOut string) {
				var res bankdv1.CreateInvoiceResponse
				decodeJSON(t, out, &res)
				if res.Invoice.GetPaymentRequest() != testBolt11 || res.Invoice.GetRequestId() != "r1" {
					t.Errorf("invoice = %v", res.Invoice)
				}
				if f.created.GetExpirySeconds() != 3600 || errOut != "" {
					t.Errorf("expiry %d s, stderr %q; want the one hour default and no generated id", f.created.GetExpirySeconds(), errOut)
				}
			},
		},
		{
			name: "invoice get",
			setup: func(f *fakeLightning) {
				f.invoice = &bankdv1.LnInvoice{Hash: testHash, AccountId: "alice", NodeId: "lnd1", AmountSat: 1500,
					PaymentRequest: testBolt11, State: bankdv1.InvoiceState_INVOICE_STATE_SETTLED, AmountPaidSat: 1500,
					SettledUnixMs: testNowMs, Internal: true, TransferId: "lninv:" + testHash}
			},
			args:   []string{"invoice", "get", testHash},
			stdout: []string{testBolt11 + "\n\n", "settled", "1500 sat paid inside the ledger", "lninv:" + testHash},
		},
		{
			name:   "invoice get of an unknown hash",
			args:   []string{"invoice", "get", testHash},
			code:   exitFail,
			stderr: []string{"bankctl: not_found: invoice " + testHash},
		},
		{
			name:   "pay waits 30s by default",
			setup:  func(f *fakeLightning) { f.payment = testPayment(bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED) },
			args:   []string{"pay", "alice", testBolt11},
			stdout: []string{"succeeded", "3 sat (reserve 20 sat)", strings.Repeat("0f", 32), "lnd1"},
			stderr: []string{"payment id: ctl-", "(retry with -id ctl-"},
			check: func(t *testing.T, f *fakeLightning, _, _ string) {
				m := f.paid
				if m.GetAccountId() != "alice" || m.GetPaymentRequest() != testBolt11 || m.GetWaitMs() != 30_000 ||
					m.GetAmountSat() != 0 || m.GetMaxFeeSat() != 0 || !strings.HasPrefix(m.GetId(), "ctl-") {
					t.Errorf("PayInvoice got %v", m)
				}
			},
		},
		{
			name:   "pay still in flight",
			setup:  func(f *fakeLightning) { f.payment = testPayment(bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT) },
			args:   []string{"-o", "json", "pay", "alice", testBolt11, "-id", "p1", "-amount", "1500", "-max-fee", "20", "-wait", "0"},
			stderr: []string{"payment p1 is still in flight; follow it with bankctl payment get p1"},
			check: func(t *testing.T, f *fakeLightning, out, _ string) {
				want := &bankdv1.PayInvoiceRequest{Id: "p1", AccountId: "alice", PaymentRequest: testBolt11, AmountSat: 1500, MaxFeeSat: 20}
				if !proto.Equal(f.paid, want) {
					t.Errorf("PayInvoice got %v, want %v", f.paid, want)
				}
				var res bankdv1.PayInvoiceResponse
				decodeJSON(t, out, &res)
				if res.Payment.GetState() != bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT {
					t.Errorf("payment = %v", res.Payment)
				}
			},
		},
		{
			name:   "pay that fails exits 1",
			setup:  func(f *fakeLightning) { f.payment = testPayment(bankdv1.PaymentState_PAYMENT_STATE_FAILED) },
			args:   []string{"pay", "alice", testBolt11, "-id", "p2", "-wait", "5s"},
			code:   exitFail,
			stdout: []string{"failed: no_route"},
			stderr: []string{"bankctl: error: payment p2 failed: no_route"},
			check: func(t *testing.T, f *fakeLightning, _, _ string) {
				if f.paid.GetWaitMs() != 5000 {
					t.Errorf("wait_ms = %d, want 5000", f.paid.GetWaitMs())
				}
			},
		},
		{
			name:   "payment get",
			setup:  func(f *fakeLightning) { f.payment = testPayment(bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED) },
			args:   []string{"payment", "get", "p1"},
			stdout: []string{"id:", "p1", "succeeded", "alice", "1500 sat", "lnpay:p1"},
		},
		{
			name:  "payment get json",
			setup: func(f *fakeLightning) { f.payment = testPayment(bankdv1.PaymentState_PAYMENT_STATE_FAILED) },
			args:  []string{"payment", "get", "p1", "-o", "json"},
			check: func(t *testing.T, _ *fakeLightning, out, _ string) {
				var res bankdv1.GetPaymentResponse
				decodeJSON(t, out, &res)
				if res.Payment.GetFailureReason() != "no_route" {
					t.Errorf("payment = %v", res.Payment)
				}
			},
		},
		{
			name:   "payment get of an unknown id",
			args:   []string{"payment", "get", "nope"},
			code:   exitFail,
			stderr: []string{`bankctl: not_found: payment "nope"`},
		},
		{
			name:   "pay-internal",
			args:   []string{"pay-internal", "alice", "bob", "250", "-memo", "lunch"},
			stderr: []string{"transfer id: ctl-"},
			check: func(t *testing.T, f *fakeLightning, out, _ string) {
				m := f.paidInternally
				if m.GetFromAccountId() != "alice" || m.GetToAccountId() != "bob" || m.GetAmountSat() != 250 || m.GetMemo() != "lunch" ||
					!strings.HasPrefix(m.GetId(), "ctl-") {
					t.Errorf("PayInternal got %v", m)
				}
				if row := tableRow(out, m.GetId()); len(row) < 6 || row[1] != "posted" || row[2] != "alice" || row[3] != "bob" || row[4] != "250" {
					t.Errorf("transfer row = %q\n%s", row, out)
				}
			},
		},
		{
			name: "pay-internal json",
			args: []string{"-o", "json", "pay-internal", "alice", "bob", "250", "-id", "t1"},
			check: func(t *testing.T, _ *fakeLightning, out, errOut string) {
				var res bankdv1.PayInternalResponse
				decodeJSON(t, out, &res)
				if res.Transfer.GetId() != "t1" || res.Transfer.GetAmount() != 250 || errOut != "" {
					t.Errorf("transfer = %v, stderr %q", res.Transfer, errOut)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeLightning{nodes: testPool()}
			if tt.setup != nil {
				tt.setup(f)
			}
			code, out, errOut := ctl(t, serveLightning(t, f), tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tt.check != nil {
				f.mu.Lock()
				defer f.mu.Unlock()
				tt.check(t, f, out, errOut)
			}
		})
	}
}

func TestBankctlLightningUsage(t *testing.T) {
	env := map[string]string{envAddr: "http://127.0.0.1:1"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"lnd", "nodes", "extra"}, "want no arguments"},
		{[]string{"lnd", "add", "-address", "h:1", "-tls-cert", "/c", "-macaroon", "/m"}, "want ID"},
		{[]string{"lnd", "add", "n", "-tls-cert", "/c", "-macaroon", "/m"}, "-address is required"},
		{[]string{"lnd", "add", "n", "-address", "h:1", "-macaroon", "/m"}, "-tls-cert is required"},
		{[]string{"lnd", "add", "n", "-address", "h:1", "-tls-cert", "/c"}, "-macaroon is required"},
		{[]string{"lnd", "drain"}, "want ID"},
		{[]string{"lnd", "drain", "a", "b"}, "want ID, got 2"},
		{[]string{"lnd", "drain", "n", "-undo", "-wait"}, "does not go with -undo"},
		{[]string{"lnd", "drain", "n", "-wait", "-timeout", "soon"}, `invalid value "soon" for flag -timeout`},
		{[]string{"lnd", "reconcile", "now"}, "want no arguments"},
		{[]string{"invoice", "create", "alice"}, "want ACCOUNT SATS"},
		{[]string{"invoice", "create", "alice", "ten"}, `SATS "ten": want a whole number of satoshis above zero`},
		{[]string{"invoice", "create", "alice", "0"}, `SATS "0"`},
		{[]string{"invoice", "create", "alice", "1.5"}, `SATS "1.5"`},
		{[]string{"invoice", "create", "alice", "99999999999999999999"}, `SATS "99999999999999999999"`},
		{[]string{"invoice", "create", "alice", "-5"}, "flag provided but not defined: -5"},
		{[]string{"invoice", "create", "alice", "100", "-expiry", "soon"}, `invalid value "soon" for flag -expiry`},
		{[]string{"invoice", "create", "alice", "100", "-expiry", "500ms"}, "-expiry must be at least 1s"},
		{[]string{"invoice", "create", "alice", "100", "-expiry", "-1h"}, "-expiry must be at least 1s"},
		{[]string{"invoice", "get"}, "want HASH"},
		{[]string{"pay", "alice"}, "want ACCOUNT BOLT11"},
		{[]string{"pay", "alice", "lnbc1", "-amount", "x"}, `invalid value "x" for flag -amount`},
		{[]string{"pay", "alice", "lnbc1", "-amount", "-1"}, "-amount must be >= 0"},
		{[]string{"pay", "alice", "lnbc1", "-max-fee", "-1"}, "-max-fee must be >= 0"},
		{[]string{"pay", "alice", "lnbc1", "-wait", "forever"}, `invalid value "forever" for flag -wait`},
		{[]string{"pay", "alice", "lnbc1", "-wait", "10m"}, "-wait must be 0-5m0s, got 10m0s"},
		{[]string{"pay", "alice", "lnbc1", "-wait", "-1s"}, "-wait must be 0-5m0s"},
		{[]string{"payment", "get"}, "want ID"},
		{[]string{"pay-internal", "alice", "bob"}, "want FROM TO SATS"},
		{[]string{"pay-internal", "alice", "bob", "1e3"}, `SATS "1e3"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := ctl(t, env, tt.args...)
			if code != exitUsage || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, exitUsage, out, errOut, tt.want)
			}
		})
	}
}

func TestBankctlHelpListsTheLightningCommands(t *testing.T) {
	_, out, _ := ctl(t, nil, "help")
	for _, want := range []string{
		"  lnd nodes \n",
		"  lnd add ID -address HOST:PORT -tls-cert FILE -macaroon FILE\n",
		"  lnd drain ID [-undo] [-wait]\n",
		"  lnd reconcile \n",
		"  invoice create ACCOUNT SATS [-memo M] [-expiry 1h] [-request-id ID]\n",
		"  invoice get HASH\n",
		"  pay ACCOUNT BOLT11 [-amount SATS] [-max-fee SATS] [-wait 30s] [-id ID]\n",
		"  payment get ID\n",
		"  pay-internal FROM TO SATS [-memo M] [-id ID]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestDescribeLightningItems(t *testing.T) {
	tests := []struct {
		name string
		item *bankdv1.EventItem
		want string
	}{
		{"a healthy node", &bankdv1.EventItem{Kind: &bankdv1.EventItem_LndNode{LndNode: &bankdv1.LndNode{
			Id: "lnd1", State: bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE, Reachable: true, SyncedToChain: true, HealthCheckedUnixMs: 1}}},
			"lnd-node lnd1 active healthy"},
		{"an unreachable node", &bankdv1.EventItem{Kind: &bankdv1.EventItem_LndNode{LndNode: &bankdv1.LndNode{
			Id: "lnd2", State: bankdv1.LndNodeState_LND_NODE_STATE_DRAINING, HealthCheckedUnixMs: 1, HealthError: "connection refused"}}},
			"lnd-node lnd2 draining unreachable: connection refused"},
		{"a node never checked", &bankdv1.EventItem{Kind: &bankdv1.EventItem_LndNode{LndNode: &bankdv1.LndNode{
			Id: "lnd3", State: bankdv1.LndNodeState_LND_NODE_STATE_ACTIVE}}},
			"lnd-node lnd3 active"},
		{"an invoice", &bankdv1.EventItem{Kind: &bankdv1.EventItem_Invoice{Invoice: &bankdv1.LnInvoice{
			Hash: testHash, State: bankdv1.InvoiceState_INVOICE_STATE_SETTLED, AmountSat: 1500, AccountId: "alice", NodeId: "lnd1"}}},
			"invoice " + testHash + " settled 1500 sat for alice on lnd1"},
		{"a payment that succeeded", &bankdv1.EventItem{Kind: &bankdv1.EventItem_Payment{Payment: testPayment(bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED)}},
			"payment p1 succeeded 1500 sat from alice fee 3 sat"},
		{"a payment that failed", &bankdv1.EventItem{Kind: &bankdv1.EventItem_Payment{Payment: testPayment(bankdv1.PaymentState_PAYMENT_STATE_FAILED)}},
			"payment p1 failed 1500 sat from alice: no_route"},
		{"a payment in flight", &bankdv1.EventItem{Kind: &bankdv1.EventItem_Payment{Payment: testPayment(bankdv1.PaymentState_PAYMENT_STATE_IN_FLIGHT)}},
			"payment p1 in_flight 1500 sat from alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeItem(tt.item); got != tt.want {
				t.Errorf("describeItem = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReconcileProblems(t *testing.T) {
	tests := []struct {
		name  string
		nodes []*bankdv1.NodeReconciliation
		want  string // "" for no error
	}{
		{"no nodes", nil, ""},
		{"balanced", []*bankdv1.NodeReconciliation{{NodeId: "a", LedgerSat: 5, LndSat: 5}}, ""},
		{"a difference", []*bankdv1.NodeReconciliation{{NodeId: "a", DifferenceSat: 3}}, "lightning does not reconcile: a differs by +3 sat"},
		{"an error", []*bankdv1.NodeReconciliation{{NodeId: "a"}, {NodeId: "b", Error: "x"}}, "lightning does not reconcile: b could not be asked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reconcileProblems(tt.nodes)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want || errors.Is(err, errUsage) {
				t.Errorf("reconcileProblems = %v, want %q", err, tt.want)
			}
		})
	}
}
