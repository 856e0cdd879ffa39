package fakelnd

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/lnpool/lnd"
)

// newTestNetwork serves a network of n nodes on 127.0.0.1 and its control endpoint.
func newTestNetwork(t *testing.T, n int) (*Network, *Client) {
	t.Helper()
	net, err := New(Config{Nodes: n, Dir: t.TempDir(), Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(net.Close)
	srv := httptest.NewServer(net.Handler())
	t.Cleanup(srv.Close)
	return net, NewClient(strings.TrimPrefix(srv.URL, "http://"))
}

// dial connects bankd's own lnd client to a node, as cluster.hcl's lnd block would.
func dial(t *testing.T, info NodeInfo) lnd.Client {
	t.Helper()
	c, err := lnd.Dial(context.Background(), lnd.Config{Address: info.Address, TLSCertPath: info.TLSCertPath,
		MacaroonPath: info.MacaroonPath, CallTimeout: 2 * time.Second, Network: &chaincfg.RegressionNetParams})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// finalOf reads a payment stream to its final update.
func finalOf(t *testing.T, s lnd.PaymentStream) lnd.Payment {
	t.Helper()
	var last lnd.Payment
	for {
		p, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return last
		}
		if err != nil {
			t.Fatalf("payment stream: %v", err)
		}
		last = p
	}
}

func TestThroughBankdsLndClient(t *testing.T) {
	net, ctl := newTestNetwork(t, 2)
	nodes := net.Nodes()
	c := dial(t, nodes[0])
	ctx := ctxT(t)

	t.Run("GetInfo names the node and regtest", func(t *testing.T) {
		info, err := c.GetInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Pubkey != nodes[0].Pubkey || info.Network != "regtest" || !info.SyncedToChain || info.Alias != "ln1" {
			t.Fatalf("info %+v", info)
		}
	})

	t.Run("a payment is paid once, then ErrAlreadyPaid", func(t *testing.T) {
		out, err := ctl.OutsideInvoice(ctx, 5000)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.SendPayment(ctx, lnd.SendPaymentRequest{PaymentRequest: out.PaymentRequest, FeeLimitSat: 10, TimeoutSeconds: 30})
		if err != nil {
			t.Fatal(err)
		}
		if p := finalOf(t, s); p.Status != lnd.PaymentSucceeded || p.FeeMsat != FeeMsat || p.ValueMsat != 5_000_000 {
			t.Fatalf("payment %+v", p)
		}
		_, err = c.SendPayment(ctx, lnd.SendPaymentRequest{PaymentRequest: out.PaymentRequest, FeeLimitSat: 10, TimeoutSeconds: 30})
		if !errors.Is(err, lnd.ErrAlreadyPaid) {
			t.Fatalf("second send: %v, want ErrAlreadyPaid", err)
		}
		rec, err := ctl.Record(ctx, []string{out.Hash})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Outside[0].Payments != 1 || rec.Outside[0].PaidMsat != 5_000_000 {
			t.Fatalf("outside record %+v", rec.Outside)
		}
	})

	t.Run("a held payment is in flight until released", func(t *testing.T) {
		if err := ctl.SetKnobs(ctx, "ln1", Knobs{Hold: true}); err != nil {
			t.Fatal(err)
		}
		out, _ := ctl.OutsideInvoice(ctx, 1000)
		s, err := c.SendPayment(ctx, lnd.SendPaymentRequest{PaymentRequest: out.PaymentRequest, FeeLimitSat: 10, TimeoutSeconds: 30})
		if err != nil {
			t.Fatal(err)
		}
		if p, err := s.Recv(); err != nil || p.Status != lnd.PaymentInFlight {
			t.Fatalf("first update %+v %v", p, err)
		}
		if _, err := c.SendPayment(ctx, lnd.SendPaymentRequest{PaymentRequest: out.PaymentRequest, FeeLimitSat: 10, TimeoutSeconds: 30}); !errors.Is(err, lnd.ErrInFlight) {
			t.Fatalf("send while in flight: %v, want ErrInFlight", err)
		}
		b, err := c.ChannelBalance(ctx)
		if err != nil || b.UnsettledLocalMsat != 1_000_000+FeeMsat {
			t.Fatalf("balance %+v %v: want the held payment unsettled", b, err)
		}
		if n, err := c.PendingHTLCs(ctx); err != nil || n != 1 {
			t.Fatalf("pending HTLCs %d %v", n, err)
		}
		inflight, err := c.ListPayments(ctx, true)
		if err != nil || len(inflight) != 1 || inflight[0].Hash != out.Hash {
			t.Fatalf("in flight %+v %v", inflight, err)
		}
		if err := ctl.SetKnobs(ctx, "ln1", Knobs{}); err != nil {
			t.Fatal(err)
		}
		if p := finalOf(t, s); p.Status != lnd.PaymentSucceeded {
			t.Fatalf("released payment %+v", p)
		}
		tr, err := c.TrackPayment(ctx, out.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if p := finalOf(t, tr); p.Status != lnd.PaymentSucceeded || p.Preimage == "" {
			t.Fatalf("tracked %+v", p)
		}
	})

	t.Run("invoices settle from outside and replay from the indexes given", func(t *testing.T) {
		var hashes []string
		for range 3 {
			inv, err := c.AddInvoice(ctx, lnd.AddInvoiceRequest{ValueSat: 2000, Memo: "m", ExpirySeconds: 3600})
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, inv.Hash)
			if err := ctl.Pay(ctx, inv.PaymentRequest); err != nil {
				t.Fatal(err)
			}
			if err := ctl.Pay(ctx, inv.PaymentRequest); !errors.Is(err, ErrRefused) {
				t.Fatalf("paying a settled invoice again: %v, want ErrRefused", err)
			}
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		// Settle index 1 seen: settlements 2 and 3 come back.
		s, err := c.SubscribeInvoices(sctx, 3, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range hashes[1:] {
			inv, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if inv.Hash != want || inv.State != lnd.InvoiceSettled || inv.AmtPaidMsat != 2_000_000 {
				t.Fatalf("replayed %+v, want settlement of %s", inv, want)
			}
		}
		got, err := c.LookupInvoice(ctx, hashes[0])
		if err != nil || got.State != lnd.InvoiceSettled || got.SettleIndex != 1 {
			t.Fatalf("lookup %+v %v", got, err)
		}
		if err := c.CancelInvoice(ctx, hashes[0]); !errors.Is(err, lnd.ErrRefused) {
			t.Fatalf("cancel settled: %v, want ErrRefused", err)
		}
	})

	t.Run("bad input is refused as lnd refuses it", func(t *testing.T) {
		if _, err := c.TrackPayment(ctx, strings.Repeat("ab", 32)); !errors.Is(err, lnd.ErrNotFound) {
			t.Fatalf("track unknown: %v, want ErrNotFound", err)
		}
		if _, err := c.LookupInvoice(ctx, strings.Repeat("cd", 32)); !errors.Is(err, lnd.ErrNotFound) {
			t.Fatalf("lookup unknown: %v, want ErrNotFound", err)
		}
		if err := c.CancelInvoice(ctx, strings.Repeat("cd", 32)); !errors.Is(err, lnd.ErrNotFound) {
			t.Fatalf("cancel unknown: %v, want ErrNotFound", err)
		}
		// Another node's macaroon.
		wrong := nodes[0]
		wrong.MacaroonPath = nodes[1].MacaroonPath
		if _, err := dial(t, wrong).GetInfo(ctx); !errors.Is(err, lnd.ErrPermission) {
			t.Fatalf("wrong macaroon: %v, want ErrPermission", err)
		}
		if err := ctl.Pay(ctx, "lnbcrt1garbage"); !errors.Is(err, ErrRefused) {
			t.Fatalf("pay garbage: %v", err)
		}
		if _, err := ctl.OutsideInvoice(ctx, 0); err == nil {
			t.Fatal("outside invoice of 0 sat accepted")
		}
		if err := ctl.SetKnobs(ctx, "ln9", Knobs{}); err == nil || !strings.Contains(err.Error(), "404") {
			t.Fatalf("knobs of an unknown node: %v", err)
		}
		if err := ctl.SetKnobs(ctx, "ln1", Knobs{DelayMs: -1}); err == nil {
			t.Fatal("negative delay accepted")
		}
		res, err := http.Post(ctl.base+"/pay", "application/json", strings.NewReader(`{"payment_request": 7}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("bad body: %s", res.Status)
		}
	})

	t.Run("a killed node is unavailable and keeps its books across a restart", func(t *testing.T) {
		before, err := c.ChannelBalance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ctl.Kill(ctx, "ln1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetInfo(ctx); !errors.Is(err, lnd.ErrUnavailable) {
			t.Fatalf("killed node: %v, want ErrUnavailable", err)
		}
		rec, err := ctl.Record(ctx, nil)
		if err != nil || !rec.Nodes[0].Killed || rec.Nodes[0].LocalMsat != before.LocalMsat {
			t.Fatalf("record of a killed node %+v %v", rec.Nodes[0], err)
		}
		if err := ctl.Restart(ctx, "ln1"); err != nil {
			t.Fatal(err)
		}
		var after lnd.ChannelBalance
		deadline := time.Now().Add(10 * time.Second)
		for {
			if after, err = c.ChannelBalance(ctx); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || after != before {
			t.Fatalf("after restart %+v %v, before %+v", after, err, before)
		}
	})

	t.Run("the error knob answers unavailable, the delay knob slowly", func(t *testing.T) {
		if err := ctl.SetKnobs(ctx, "ln2", Knobs{Errors: true}); err != nil {
			t.Fatal(err)
		}
		c2 := dial(t, nodes[1])
		for range 5 {
			if _, err := c2.GetInfo(ctx); !errors.Is(err, lnd.ErrUnavailable) {
				t.Fatalf("erroring node: %v, want ErrUnavailable", err)
			}
		}
		if err := ctl.SetKnobs(ctx, "ln2", Knobs{DelayMs: 300}); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if _, err := c2.GetInfo(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(began); d < 300*time.Millisecond {
			t.Fatalf("slow node answered in %v", d)
		}
		if err := ctl.Heal(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestProcessServes starts the fakelnd command as its own process, as the harness does.
func TestProcessServes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/fakelnd")
	}
	bin := t.TempDir() + "/fakelnd"
	if err := Build(context.Background(), bin); err != nil {
		t.Fatal(err)
	}
	p, err := Start(ctxT(t), ProcessConfig{Bin: bin, IP: "127.0.0.1", Dir: t.TempDir(), Nodes: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if len(p.Nodes) != 3 {
		t.Fatalf("nodes %+v", p.Nodes)
	}
	info, err := dial(t, p.Nodes[2]).GetInfo(ctxT(t))
	if err != nil || info.Pubkey != p.Nodes[2].Pubkey {
		t.Fatalf("GetInfo %+v %v", info, err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.Nodes[0].TLSCertPath); err != nil {
		t.Fatal(err)
	}
}
