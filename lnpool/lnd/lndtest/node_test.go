package lndtest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/bankd/bankd/lnpool/bolt11"
	"github.com/bankd/bankd/lnpool/lnd"
	"github.com/bankd/bankd/lnpool/lnd/lndtest"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func addInvoice(t *testing.T, n *lndtest.Node, sat int64) lnd.Invoice {
	t.Helper()
	inv, err := n.AddInvoice(testCtx(t), lnd.AddInvoiceRequest{ValueSat: sat, Memo: "test", ExpirySeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func pay(t *testing.T, n *lndtest.Node, pr string) lnd.PaymentStream {
	t.Helper()
	s, err := n.SendPayment(testCtx(t), lnd.SendPaymentRequest{PaymentRequest: pr, FeeLimitSat: 10, TimeoutSeconds: 60})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// statuses reads a payment stream to its end.
func statuses(t *testing.T, s lnd.PaymentStream) []lnd.Payment {
	t.Helper()
	var out []lnd.Payment
	for {
		p, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
}

func balance(t *testing.T, n *lndtest.Node) lnd.ChannelBalance {
	t.Helper()
	b, err := n.ChannelBalance(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPayBetweenNodes(t *testing.T) {
	net := lndtest.NewNetwork()
	alice, bob := net.NewNode("alice"), net.NewNode("bob")
	bob.SetFeeMsat(1_500)

	inv := addInvoice(t, alice, 5_000)
	dec, err := bolt11.Decode(inv.PaymentRequest, net.Params())
	if err != nil {
		t.Fatalf("the bolt11 decoder refuses the fake's invoice: %v", err)
	}
	if dec.Destination != alice.Pubkey() || dec.Hash != inv.Hash || dec.AmountMsat != 5_000_000 || dec.Description != "test" {
		t.Fatalf("decoded %+v from %+v", dec, inv)
	}

	ups := statuses(t, pay(t, bob, inv.PaymentRequest))
	if len(ups) != 2 || ups[0].Status != lnd.PaymentInFlight || ups[1].Status != lnd.PaymentSucceeded {
		t.Fatalf("updates %+v, want IN_FLIGHT then SUCCEEDED", ups)
	}
	done := ups[1]
	pre, _ := hex.DecodeString(done.Preimage)
	if sum := sha256.Sum256(pre); hex.EncodeToString(sum[:]) != inv.Hash {
		t.Fatalf("preimage %s does not hash to %s", done.Preimage, inv.Hash)
	}
	if done.FeeMsat != 1_500 || done.ValueMsat != 5_000_000 {
		t.Fatalf("payment %+v", done)
	}

	got, err := alice.LookupInvoice(testCtx(t), inv.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != lnd.InvoiceSettled || got.SettleIndex != 1 || got.AmtPaidMsat != 5_000_000 {
		t.Fatalf("invoice after payment: %+v", got)
	}
	if b := balance(t, alice); b.LocalMsat != lndtest.DefaultBalanceSat*1000+5_000_000 {
		t.Fatalf("alice balance %+v", b)
	}
	if b := balance(t, bob); b.LocalMsat != lndtest.DefaultBalanceSat*1000-5_001_500 || b.UnsettledLocalMsat != 0 {
		t.Fatalf("bob balance %+v", b)
	}

	// lnd pays a hash once.
	if _, err := bob.SendPayment(testCtx(t), lnd.SendPaymentRequest{PaymentRequest: inv.PaymentRequest, FeeLimitSat: 10, TimeoutSeconds: 60}); !errors.Is(err, lnd.ErrAlreadyPaid) {
		t.Fatalf("second payment: %v, want ErrAlreadyPaid", err)
	}
	// Another node paying the settled invoice fails at the payee.
	carol := net.NewNode("carol")
	ups = statuses(t, pay(t, carol, inv.PaymentRequest))
	if last := ups[len(ups)-1]; last.Status != lnd.PaymentFailed || last.FailureReason != lndtest.FailIncorrectDetails {
		t.Fatalf("paying a settled invoice: %+v", last)
	}

	list, err := bob.ListPayments(testCtx(t), false)
	if err != nil || len(list) != 1 || list[0].Status != lnd.PaymentSucceeded {
		t.Fatalf("ListPayments = %+v, %v", list, err)
	}
}

func TestHoldReleaseAndTrack(t *testing.T) {
	net := lndtest.NewNetwork()
	alice, bob := net.NewNode("alice"), net.NewNode("bob")
	inv := addInvoice(t, alice, 1_000)

	bob.HoldPayments(true)
	s := pay(t, bob, inv.PaymentRequest)
	if p, err := s.Recv(); err != nil || p.Status != lnd.PaymentInFlight {
		t.Fatalf("first update %+v, %v", p, err)
	}
	if held := bob.HeldPayments(); len(held) != 1 || held[0] != inv.Hash {
		t.Fatalf("held %v", held)
	}
	if _, err := bob.SendPayment(testCtx(t), lnd.SendPaymentRequest{PaymentRequest: inv.PaymentRequest, FeeLimitSat: 10, TimeoutSeconds: 60}); !errors.Is(err, lnd.ErrInFlight) {
		t.Fatalf("paying again while in flight: %v, want ErrInFlight", err)
	}
	if n, err := bob.PendingHTLCs(testCtx(t)); err != nil || n != 1 {
		t.Fatalf("PendingHTLCs = %d, %v", n, err)
	}
	if b := balance(t, bob); b.UnsettledLocalMsat != 1_000_000 {
		t.Fatalf("bob balance while in flight %+v", b)
	}
	inFlight, err := bob.ListPayments(testCtx(t), true)
	if err != nil || len(inFlight) != 1 {
		t.Fatalf("ListPayments(in flight) = %+v, %v", inFlight, err)
	}

	tracked, err := bob.TrackPayment(testCtx(t), inv.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := tracked.Recv(); err != nil || p.Status != lnd.PaymentInFlight {
		t.Fatalf("tracked first update %+v, %v", p, err)
	}
	if got, _ := alice.LookupInvoice(testCtx(t), inv.Hash); got.State != lnd.InvoiceOpen {
		t.Fatalf("invoice settled while the payment is held: %+v", got)
	}

	if err := bob.ReleasePayment(inv.Hash); err != nil {
		t.Fatal(err)
	}
	for name, stream := range map[string]lnd.PaymentStream{"sent": s, "tracked": tracked} {
		ups := statuses(t, stream)
		if len(ups) != 1 || ups[0].Status != lnd.PaymentSucceeded {
			t.Fatalf("%s stream after release: %+v", name, ups)
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("%s stream after the end: %v, want io.EOF", name, err)
		}
	}
	if _, err := bob.TrackPayment(testCtx(t), hex.EncodeToString(make([]byte, 32))); !errors.Is(err, lnd.ErrNotFound) {
		t.Fatalf("TrackPayment of an unknown hash: %v, want ErrNotFound", err)
	}
}

func TestFailures(t *testing.T) {
	net := lndtest.NewNetwork()
	alice, bob := net.NewNode("alice"), net.NewNode("bob")
	inv := addInvoice(t, alice, 1_000)

	// Held, then failed: the reserve comes back and the hash may be paid again.
	bob.HoldPayments(true)
	s := pay(t, bob, inv.PaymentRequest)
	if err := bob.FailPayment(inv.Hash, lndtest.FailTimeout); err != nil {
		t.Fatal(err)
	}
	ups := statuses(t, s)
	if last := ups[len(ups)-1]; last.Status != lnd.PaymentFailed || last.FailureReason != lndtest.FailTimeout {
		t.Fatalf("updates %+v", ups)
	}
	if b := balance(t, bob); b.LocalMsat != lndtest.DefaultBalanceSat*1000 || b.UnsettledLocalMsat != 0 {
		t.Fatalf("balance after failure %+v", b)
	}
	bob.HoldPayments(false)

	// Every payment fails while FailPayments is set.
	if err := bob.FailPayments(lndtest.FailNoRoute); err != nil {
		t.Fatal(err)
	}
	ups = statuses(t, pay(t, bob, inv.PaymentRequest))
	if last := ups[len(ups)-1]; last.Status != lnd.PaymentFailed || last.FailureReason != lndtest.FailNoRoute {
		t.Fatalf("updates %+v", ups)
	}
	if err := bob.FailPayments(""); err != nil {
		t.Fatal(err)
	}

	// A fee above the limit: no route.
	bob.SetFeeMsat(20_000)
	ups = statuses(t, pay(t, bob, inv.PaymentRequest))
	if last := ups[len(ups)-1]; last.FailureReason != lndtest.FailNoRoute {
		t.Fatalf("fee above limit: %+v", ups)
	}
	if fee, err := bob.EstimateRouteFee(testCtx(t), alice.Pubkey(), 1_000); err != nil || fee != 20 {
		t.Fatalf("EstimateRouteFee = %d, %v", fee, err)
	}
	bob.SetFeeMsat(0)

	// Not enough balance.
	bob.SetBalanceSat(999)
	ups = statuses(t, pay(t, bob, inv.PaymentRequest))
	if last := ups[len(ups)-1]; last.FailureReason != lndtest.FailInsufficientBalance {
		t.Fatalf("insufficient balance: %+v", ups)
	}
	bob.SetBalanceSat(10_000)

	// After all the failures the payment goes through.
	ups = statuses(t, pay(t, bob, inv.PaymentRequest))
	if last := ups[len(ups)-1]; last.Status != lnd.PaymentSucceeded {
		t.Fatalf("retry: %+v", ups)
	}
	if err := bob.FailPayments("FAILURE_REASON_BOGUS"); err == nil {
		t.Fatal("an unknown failure reason was accepted")
	}
}

func TestUnreachable(t *testing.T) {
	net := lndtest.NewNetwork()
	alice, bob := net.NewNode("alice"), net.NewNode("bob")
	inv := addInvoice(t, alice, 1_000)
	ctx := testCtx(t)
	sub, err := alice.SubscribeInvoices(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	bob.HoldPayments(true)
	held := pay(t, bob, inv.PaymentRequest)
	if _, err := held.Recv(); err != nil {
		t.Fatal(err)
	}

	alice.SetUnreachable(true)
	bob.SetUnreachable(true)
	if _, err := alice.GetInfo(ctx); !errors.Is(err, lnd.ErrUnavailable) {
		t.Fatalf("GetInfo: %v, want ErrUnavailable", err)
	}
	if _, err := alice.AddInvoice(ctx, lnd.AddInvoiceRequest{ValueSat: 1, ExpirySeconds: 60}); !errors.Is(err, lnd.ErrUnavailable) {
		t.Fatalf("AddInvoice: %v, want ErrUnavailable", err)
	}
	if _, err := sub.Recv(); !errors.Is(err, lnd.ErrUnavailable) {
		t.Fatalf("invoice stream: %v, want ErrUnavailable", err)
	}
	if _, err := held.Recv(); !errors.Is(err, lnd.ErrUnavailable) {
		t.Fatalf("payment stream: %v, want ErrUnavailable", err)
	}
	if err := net.PayFromOutside(inv.PaymentRequest); !errors.Is(err, lnd.ErrUnavailable) {
		t.Fatalf("PayFromOutside: %v, want ErrUnavailable", err)
	}

	// Back up: broken streams stay broken; a released payment to the node that is still
	// unreachable finds no route.
	bob.SetUnreachable(false)
	if _, err := held.Recv(); !errors.Is(err, lnd.ErrUnavailable) {
		t.Fatalf("payment stream after the outage: %v, want ErrUnavailable", err)
	}
	if err := bob.ReleasePayment(inv.Hash); err != nil {
		t.Fatal(err)
	}
	tracked, err := bob.TrackPayment(ctx, inv.Hash)
	if err != nil {
		t.Fatal(err)
	}
	ups := statuses(t, tracked)
	if len(ups) != 1 || ups[0].FailureReason != lndtest.FailNoRoute {
		t.Fatalf("payment to an unreachable node: %+v", ups)
	}
}

func TestSubscribeInvoices(t *testing.T) {
	net := lndtest.NewNetwork()
	alice := net.NewNode("alice")
	ctx := testCtx(t)
	a1 := addInvoice(t, alice, 1_000)
	a2 := addInvoice(t, alice, 2_000)
	if err := net.PayFromOutside(a1.PaymentRequest); err != nil {
		t.Fatal(err)
	}

	live, err := alice.SubscribeInvoices(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := alice.SubscribeInvoices(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	a3 := addInvoice(t, alice, 3_000)
	if err := net.PayFromOutside(a2.PaymentRequest); err != nil {
		t.Fatal(err)
	}
	if err := net.PayFromOutside(a2.PaymentRequest); err == nil {
		t.Fatal("an invoice was settled twice")
	}

	type event struct {
		hash   string
		state  lnd.InvoiceState
		add    uint64
		settle uint64
	}
	read := func(s lnd.InvoiceStream, n int) []event {
		var out []event
		for i := 0; i < n; i++ {
			inv, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, event{inv.Hash, inv.State, inv.AddIndex, inv.SettleIndex})
		}
		return out
	}
	wantLive := []event{
		{a3.Hash, lnd.InvoiceOpen, 3, 0},
		{a2.Hash, lnd.InvoiceSettled, 2, 2},
	}
	if got := read(live, 2); !equal(got, wantLive) {
		t.Fatalf("live events %+v, want %+v", got, wantLive)
	}
	// The replay of additions after index 1 shows a2 as it was at subscription time, then
	// the live events.
	wantReplay := []event{
		{a2.Hash, lnd.InvoiceOpen, 2, 0},
		{a3.Hash, lnd.InvoiceOpen, 3, 0},
		{a2.Hash, lnd.InvoiceSettled, 2, 2},
	}
	if got := read(replay, 3); !equal(got, wantReplay) {
		t.Fatalf("replayed events %+v, want %+v", got, wantReplay)
	}

	settled, err := alice.SubscribeInvoices(ctx, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := read(settled, 1), []event{{a2.Hash, lnd.InvoiceSettled, 2, 2}}; !equal(got, want) {
		t.Fatalf("settlements after index 1: %+v, want %+v", got, want)
	}

	// Cancellation is not streamed; Recv waits until the context ends.
	if err := alice.CancelInvoice(ctx, a3.Hash); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	quiet, err := alice.SubscribeInvoices(short, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if inv, err := quiet.Recv(); !errors.Is(err, lnd.ErrUnavailable) {
		t.Fatalf("Recv = %+v, %v; want nothing until the context ends", inv, err)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestInvoiceLifecycle(t *testing.T) {
	net := lndtest.NewNetwork()
	now := time.Unix(1_700_000_000, 0)
	net.SetClock(func() time.Time { return now })
	alice, bob := net.NewNode("alice"), net.NewNode("bob")
	ctx := testCtx(t)

	open := addInvoice(t, alice, 1_000)
	toCancel := addInvoice(t, alice, 1_000)
	if open.AddIndex != 1 || toCancel.AddIndex != 2 || open.CreationUnix != now.Unix() {
		t.Fatalf("invoices %+v %+v", open, toCancel)
	}

	if err := alice.CancelInvoice(ctx, toCancel.Hash); err != nil {
		t.Fatal(err)
	}
	if err := alice.CancelInvoice(ctx, toCancel.Hash); err != nil {
		t.Fatalf("canceling twice: %v", err)
	}
	ups := statuses(t, pay(t, bob, toCancel.PaymentRequest))
	if last := ups[len(ups)-1]; last.FailureReason != lndtest.FailIncorrectDetails {
		t.Fatalf("paying a canceled invoice: %+v", ups)
	}
	if err := alice.CancelInvoice(ctx, hex.EncodeToString(make([]byte, 32))); !errors.Is(err, lnd.ErrNotFound) {
		t.Fatalf("canceling an unknown invoice: %v", err)
	}
	if _, err := alice.LookupInvoice(ctx, hex.EncodeToString(make([]byte, 32))); !errors.Is(err, lnd.ErrNotFound) {
		t.Fatalf("looking up an unknown invoice: %v", err)
	}

	// Expiry cancels an open invoice; paying it is refused before anything is sent.
	now = now.Add(2 * time.Hour)
	got, err := alice.LookupInvoice(ctx, open.Hash)
	if err != nil || got.State != lnd.InvoiceCanceled {
		t.Fatalf("expired invoice: %+v, %v", got, err)
	}
	if _, err := bob.SendPayment(ctx, lnd.SendPaymentRequest{PaymentRequest: open.PaymentRequest, FeeLimitSat: 1, TimeoutSeconds: 60}); !errors.Is(err, lnd.ErrRefused) {
		t.Fatalf("paying an expired invoice: %v, want ErrRefused", err)
	}

	// A settled invoice cannot be canceled.
	fresh := addInvoice(t, alice, 1_000)
	if err := net.PayFromOutside(fresh.PaymentRequest); err != nil {
		t.Fatal(err)
	}
	if err := alice.CancelInvoice(ctx, fresh.Hash); !errors.Is(err, lnd.ErrRefused) {
		t.Fatalf("canceling a settled invoice: %v, want ErrRefused", err)
	}
	if _, err := alice.AddInvoice(ctx, lnd.AddInvoiceRequest{ValueSat: 0, ExpirySeconds: 60}); !errors.Is(err, lnd.ErrRefused) {
		t.Fatalf("amount-less invoice: %v, want ErrRefused", err)
	}
}

func TestPayOutside(t *testing.T) {
	net := lndtest.NewNetwork()
	bob := net.NewNode("bob")
	pr := net.OutsideInvoice(2_000)
	dec, err := bolt11.Decode(pr, net.Params())
	if err != nil {
		t.Fatal(err)
	}
	if dec.Destination != net.OutsidePubkey() {
		t.Fatalf("outside invoice destination %s", dec.Destination)
	}
	if fee, err := bob.EstimateRouteFee(testCtx(t), dec.Destination, 2_000); err != nil || fee != 0 {
		t.Fatalf("EstimateRouteFee = %d, %v", fee, err)
	}
	ups := statuses(t, pay(t, bob, pr))
	if last := ups[len(ups)-1]; last.Status != lnd.PaymentSucceeded {
		t.Fatalf("updates %+v", ups)
	}
	if got := net.OutsidePaidMsat(dec.Hash); got != 2_000_000 {
		t.Fatalf("outside received %d msat", got)
	}
	other := net.NewNode("carol")
	ups = statuses(t, pay(t, other, pr))
	if last := ups[len(ups)-1]; last.FailureReason != lndtest.FailIncorrectDetails {
		t.Fatalf("paying an outside invoice twice: %+v", ups)
	}
	if _, err := bob.EstimateRouteFee(testCtx(t), bob.Pubkey(), 1); !errors.Is(err, lnd.ErrRefused) {
		t.Fatalf("EstimateRouteFee to itself: %v, want ErrRefused", err)
	}
}
