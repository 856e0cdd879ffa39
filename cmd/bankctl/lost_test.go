package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
)

// fakeLost answers the lost-node calls: a node with 3 payments in flight, listed one per page.
type fakeLost struct {
	bankdv1connect.UnimplementedLightningServiceHandler
	mu       sync.Mutex
	declared []*bankdv1.DeclareLndLostRequest
	resolved []*bankdv1.ResolveLostPaymentRequest
}

func (f *fakeLost) node() *bankdv1.LndNode {
	return &bankdv1.LndNode{Id: "lnd1", State: bankdv1.LndNodeState_LND_NODE_STATE_LOST, InflightPayments: 3, LostDecidedBy: "admin", LostReason: "disk lost", HealthCheckedUnixMs: testNowMs}
}

func (f *fakeLost) DeclareNodeLost(_ context.Context, req *connect.Request[bankdv1.DeclareLndLostRequest]) (*connect.Response[bankdv1.DeclareLndLostResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.declared = append(f.declared, req.Msg)
	return connect.NewResponse(&bankdv1.DeclareLndLostResponse{Node: f.node(), InvoicesCanceled: 2}), nil
}

func (f *fakeLost) ListUnresolved(_ context.Context, req *connect.Request[bankdv1.ListUnresolvedRequest]) (*connect.Response[bankdv1.ListUnresolvedResponse], error) {
	if req.Msg.PageSize == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("page_size"))
	}
	res := &bankdv1.ListUnresolvedResponse{Node: f.node()}
	next := map[string]string{"": "lp-1", "lp-1": "lp-2", "lp-2": "lp-3"}[req.Msg.PaymentsAfter]
	if next != "" {
		res.Payments = []*bankdv1.LnPayment{{Id: next, AccountId: "alice", AmountSat: 1_000, FeeReserveSat: 10, Hash: testHash}}
		if next != "lp-3" {
			res.NextPaymentsAfter = next
		}
	}
	return connect.NewResponse(res), nil
}

func (f *fakeLost) ResolveLostPayment(_ context.Context, req *connect.Request[bankdv1.ResolveLostPaymentRequest]) (*connect.Response[bankdv1.ResolveLostPaymentResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolved = append(f.resolved, req.Msg)
	m := req.Msg
	p := &bankdv1.LnPayment{Id: m.PaymentId, State: bankdv1.PaymentState_PAYMENT_STATE_SUCCEEDED, LostResolution: &bankdv1.LostPaymentResolution{
		Succeeded: m.Succeeded, Evidence: m.Evidence, Preimage: m.Preimage, FeeSat: m.FeeSat, Reference: m.Reference, DecidedBy: "admin"}}
	if !m.Succeeded {
		p.State = bankdv1.PaymentState_PAYMENT_STATE_FAILED
	}
	n := f.node()
	n.InflightPayments = 2
	return connect.NewResponse(&bankdv1.ResolveLostPaymentResponse{Payment: p, Node: n}), nil
}

func serveLost(t *testing.T, f *fakeLost) map[string]string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(bankdv1connect.NewLightningServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return map[string]string{envAddr: srv.URL, envToken: "admin-token"}
}

func TestLndLostCommands(t *testing.T) {
	f := &fakeLost{}
	env := serveLost(t, f)
	code, out, errOut := ctl(t, env, "lnd", "declare-lost", "lnd1", "-reason", "disk lost")
	if code != 0 || !strings.Contains(out, "2 open invoices canceled") || len(f.declared) != 1 || f.declared[0].Reason != "disk lost" {
		t.Fatalf("declare-lost: exit %d, stdout %q, stderr %q, sent %v", code, out, errOut, f.declared)
	}
	code, out, errOut = ctl(t, env, "lnd", "unresolved", "lnd1")
	if code != 0 || !strings.Contains(out, "lp-1") || !strings.Contains(out, "lp-3") || !strings.Contains(out, "declared lost by admin") {
		t.Fatalf("unresolved: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	pre := strings.Repeat("0A", 32)
	code, out, errOut = ctl(t, env, "lnd", "resolve", "lp-1", "-preimage", pre, "-fee-sat", "3")
	if code != 0 || !strings.Contains(out, "resolved by admin") || len(f.resolved) != 1 || !f.resolved[0].Succeeded ||
		f.resolved[0].Preimage != strings.ToLower(pre) || f.resolved[0].FeeSat != 3 || f.resolved[0].Evidence != bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PREIMAGE {
		t.Fatalf("resolve: exit %d, stdout %q, stderr %q, sent %v", code, out, errOut, f.resolved)
	}
	code, _, errOut = ctl(t, env, "lnd", "resolve", "lp-2", "-failed", "-evidence", "force-close", "-ref", "closing tx 8c1e")
	if code != 0 || len(f.resolved) != 2 || f.resolved[1].Succeeded || f.resolved[1].Evidence != bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_FORCE_CLOSE_RESOLUTION ||
		f.resolved[1].Reference != "closing tx 8c1e" {
		t.Fatalf("resolve failed: exit %d, stderr %q, sent %v", code, errOut, f.resolved)
	}
	for _, bad := range [][]string{
		{"lnd", "declare-lost", "lnd1"},
		{"lnd", "resolve", "lp-3"},
		{"lnd", "resolve", "lp-3", "-failed", "-ref", "x"},
		{"lnd", "resolve", "lp-3", "-failed", "-evidence", "payee"},
		{"lnd", "resolve", "lp-3", "-failed", "-evidence", "payee", "-ref", "x", "-preimage", pre},
		{"lnd", "resolve", "lp-3", "-preimage", pre, "-evidence", "payee"},
	} {
		if code, _, _ := ctl(t, env, bad...); code != 2 {
			t.Fatalf("%v: exit %d, want 2 (usage)", bad, code)
		}
	}
	if len(f.declared) != 1 || len(f.resolved) != 2 {
		t.Fatalf("usage errors reached the server: %v %v", f.declared, f.resolved)
	}
}
