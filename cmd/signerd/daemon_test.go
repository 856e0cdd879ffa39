package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/signer"
	"github.com/bankd/bankd/signer/signertest"
)

// fakeAPI is bankd's PayoutService as signerd sees it: planned batches listed a few per page,
// withdrawals by id, and SubmitSignature, which marks a batch SIGNED.
type fakeAPI struct {
	mu        sync.Mutex
	batches   []*bankdv1.PayoutBatch
	payouts   map[string]*bankdv1.Payout
	submitted map[string][]byte
	// listErrs and submitErrs are returned, first to last, by the next calls.
	listErrs, submitErrs []error
	getCalls             int
}

// fakePageSize is small so that the tests page.
const fakePageSize = 2

func newFakeAPI(batches ...*signertest.Batch) *fakeAPI {
	api := &fakeAPI{payouts: map[string]*bankdv1.Payout{}, submitted: map[string][]byte{}}
	for _, b := range batches {
		api.batches = append(api.batches, proto.Clone(b.Record).(*bankdv1.PayoutBatch))
		for _, po := range b.Payouts {
			api.payouts[po.Id] = proto.Clone(po).(*bankdv1.Payout)
		}
	}
	return api
}

func (a *fakeAPI) ListBatches(_ context.Context, req *connect.Request[bankdv1.ListPayoutBatchesRequest]) (*connect.Response[bankdv1.ListPayoutBatchesResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.listErrs) > 0 {
		err := a.listErrs[0]
		a.listErrs = a.listErrs[1:]
		return nil, err
	}
	var planned []*bankdv1.PayoutBatch
	for _, b := range a.batches {
		if b.State == req.Msg.State {
			planned = append(planned, b)
		}
	}
	// Like bankd's: the token is the last batch of the page, and a page starts after it.
	start := 0
	for i, b := range planned {
		if b.Id == req.Msg.PageToken {
			start = i + 1
		}
	}
	end := min(start+fakePageSize, len(planned))
	resp := &bankdv1.ListPayoutBatchesResponse{}
	for _, b := range planned[start:end] {
		resp.Batches = append(resp.Batches, proto.Clone(b).(*bankdv1.PayoutBatch))
	}
	if end < len(planned) {
		resp.NextPageToken = planned[end-1].Id
	}
	return connect.NewResponse(resp), nil
}

func (a *fakeAPI) GetPayout(_ context.Context, req *connect.Request[bankdv1.GetPayoutRequest]) (*connect.Response[bankdv1.GetPayoutResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.getCalls++
	po, ok := a.payouts[req.Msg.Id]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no such payout"))
	}
	return connect.NewResponse(&bankdv1.GetPayoutResponse{Payout: proto.Clone(po).(*bankdv1.Payout)}), nil
}

func (a *fakeAPI) SubmitSignature(_ context.Context, req *connect.Request[bankdv1.SubmitPayoutSignatureRequest]) (*connect.Response[bankdv1.SubmitPayoutSignatureResponse], error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.submitErrs) > 0 {
		err := a.submitErrs[0]
		a.submitErrs = a.submitErrs[1:]
		return nil, err
	}
	for _, b := range a.batches {
		if b.Id == req.Msg.BatchId {
			b.State = bankdv1.BatchState_BATCH_STATE_SIGNED
			a.submitted[b.Id] = req.Msg.Psbt
			return connect.NewResponse(&bankdv1.SubmitPayoutSignatureResponse{Batch: b}), nil
		}
	}
	return nil, connect.NewError(connect.CodeNotFound, errors.New("no such batch"))
}

func (a *fakeAPI) signed(id string) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.submitted[id]
}

// logBuffer collects log lines; safe for the goroutine of run.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// count is how many log lines contain s.
func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

// harness is a daemon of a generated wallet against a fakeAPI, with a clock the test moves.
type harness struct {
	wallet     *signertest.Wallet
	d          *daemon
	logs       *logBuffer
	now        time.Time
	ledgerPath string
}

var testLimits = signer.Limits{MaxFeeSat: 20_000, MaxFeeRateSatKvB: 50_000, DailyLimitSat: 1_000_000}

func newHarness(t *testing.T, w *signertest.Wallet, api payoutAPI, limits signer.Limits) *harness {
	t.Helper()
	h := &harness{
		wallet: w, logs: &logBuffer{}, now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		ledgerPath: filepath.Join(t.TempDir(), "signerd-state.json"),
	}
	wallet, err := signer.LoadWallet(w.KeyFile(t), w.Descriptor, w.Net)
	if err != nil {
		t.Fatal(err)
	}
	ledger, err := signer.OpenLedger(h.ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signer.New(signer.Config{Wallet: wallet, Ledger: ledger, Limits: limits, Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	h.d = newDaemon(api, nil, s, "hot", 10*time.Millisecond, slog.New(slog.NewTextHandler(h.logs, nil)))
	h.d.now = func() time.Time { return h.now }
	t.Cleanup(func() {
		if strings.Contains(h.logs.String(), w.Master.String()) {
			t.Error("the logs hold the master key")
		}
	})
	return h
}

func (h *harness) poll(t *testing.T) error {
	t.Helper()
	return h.d.poll(context.Background())
}

// plan is a valid batch of id paying one withdrawal named after it.
func plan(id string, amountSat int64) signertest.Plan {
	return signertest.Plan{
		BatchID:     id,
		Coins:       []signertest.Coin{{Branch: 0, Index: 1, ValueSat: amountSat + 12_000}},
		Withdrawals: []signertest.Withdrawal{{ID: "w-" + id, AmountSat: amountSat}},
		ChangeSat:   10_000, ChangeIndex: 1,
	}
}

func TestDaemonSignsPlannedBatches(t *testing.T) {
	w := signertest.NewWallet(t)
	var batches []*signertest.Batch
	for i := range 5 { // three pages of fakePageSize
		batches = append(batches, w.Batch(t, plan("b"+strconv.Itoa(10+i), 40_000)))
	}
	api := newFakeAPI(batches...)
	h := newHarness(t, w, api, testLimits)
	if err := h.poll(t); err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		raw := api.signed(b.Record.Id)
		if raw == nil {
			t.Fatalf("batch %s was not submitted", b.Record.Id)
		}
		p, err := psbt.NewFromRawBytes(bytes.NewReader(raw), false)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := psbt.Extract(p)
		if err != nil {
			t.Fatalf("batch %s: the submitted PSBT is not final: %v", b.Record.Id, err)
		}
		if tx.TxHash().String() != b.Record.Txid {
			t.Errorf("batch %s: submitted transaction %s, want %s", b.Record.Id, tx.TxHash(), b.Record.Txid)
		}
	}
	if got := h.logs.count(`msg="batch signed"`); got != len(batches) {
		t.Errorf("%d batch signed lines, want %d:\n%s", got, len(batches), h.logs)
	}
	if !strings.Contains(h.logs.String(), "outflow_sat=40000") {
		t.Errorf("the log does not give the outflow:\n%s", h.logs)
	}
}

func TestDaemonLeavesOtherWalletsAlone(t *testing.T) {
	w := signertest.NewWallet(t)
	b := w.Batch(t, plan("b1", 40_000))
	b.Record.WalletId = "cold"
	api := newFakeAPI(b)
	h := newHarness(t, w, api, testLimits)
	if err := h.poll(t); err != nil {
		t.Fatal(err)
	}
	if api.signed("b1") != nil || api.getCalls != 0 {
		t.Errorf("a batch of another wallet was looked at (%d GetPayout calls) or signed", api.getCalls)
	}
}

func TestDaemonLogsARefusedBatchOnce(t *testing.T) {
	w := signertest.NewWallet(t)
	forged := w.Batch(t, plan("b1", 40_000))
	forged.Payouts[0].AmountSat = 30_000 // bankd says the withdrawal is for less than the output pays
	good := w.Batch(t, plan("b2", 40_000))
	api := newFakeAPI(forged, good)
	h := newHarness(t, w, api, testLimits)
	for range 3 {
		if err := h.poll(t); err != nil {
			t.Fatal(err)
		}
	}
	if api.signed("b1") != nil {
		t.Fatal("the forged batch was signed")
	}
	if api.signed("b2") == nil {
		t.Fatal("a refused batch kept the next one from being signed")
	}
	if got := h.logs.count(`msg="batch refused"`); got != 1 {
		t.Errorf("%d refusals logged over three polls, want 1:\n%s", got, h.logs)
	}
	if !strings.Contains(h.logs.String(), "batch=b1") || !strings.Contains(h.logs.String(), "output does not pay its withdrawal") {
		t.Errorf("the refusal does not name the batch and the reason:\n%s", h.logs)
	}
	if api.getCalls != 2 {
		t.Errorf("%d GetPayout calls, want 2 (a refused batch is not fetched again)", api.getCalls)
	}
}

func TestDaemonTriesADailyLimitRefusalAgainTheNextDay(t *testing.T) {
	w := signertest.NewWallet(t)
	first, second := w.Batch(t, plan("b1", 60_000)), w.Batch(t, plan("b2", 60_000))
	api := newFakeAPI(first, second)
	limits := testLimits
	limits.DailyLimitSat = 100_000
	h := newHarness(t, w, api, limits)
	for range 2 {
		if err := h.poll(t); err != nil {
			t.Fatal(err)
		}
	}
	if api.signed("b1") == nil || api.signed("b2") != nil {
		t.Fatalf("b1 signed: %v, b2 signed: %v; want only b1 within the day's limit", api.signed("b1") != nil, api.signed("b2") != nil)
	}
	if got := h.logs.count("daily outflow limit"); got != 1 {
		t.Errorf("the daily limit refusal was logged %d times, want 1:\n%s", got, h.logs)
	}
	h.now = h.now.Add(24 * time.Hour)
	if err := h.poll(t); err != nil {
		t.Fatal(err)
	}
	if api.signed("b2") == nil {
		t.Error("b2 was not signed the next day")
	}
}

func TestDaemonRetriesAPIErrors(t *testing.T) {
	w := signertest.NewWallet(t)
	b := w.Batch(t, plan("b1", 40_000))
	api := newFakeAPI(b)
	unavailable := connect.NewError(connect.CodeUnavailable, errors.New("no leader"))
	api.listErrs = []error{unavailable}
	api.submitErrs = []error{unavailable}
	h := newHarness(t, w, api, testLimits)

	if err := h.poll(t); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("first poll = %v, want the list error", err)
	}
	if err := h.poll(t); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("second poll = %v, want the submit error", err)
	}
	if err := h.poll(t); err != nil {
		t.Fatalf("third poll: %v", err)
	}
	if api.signed("b1") == nil {
		t.Fatal("the batch was not submitted once the API answered")
	}
	// Signed on the second poll and again on the third, counted once.
	ledger, err := signer.OpenLedger(h.ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := ledger.OutflowSat(h.now); got != 40_000 {
		t.Errorf("the day's outflow is %d sat, want 40000", got)
	}
}

func TestDaemonRefusesABatchNamingAnUnknownWithdrawal(t *testing.T) {
	w := signertest.NewWallet(t)
	b := w.Batch(t, plan("b1", 40_000))
	api := newFakeAPI(b)
	delete(api.payouts, "w-b1")
	h := newHarness(t, w, api, testLimits)
	if err := h.poll(t); err != nil {
		t.Fatalf("poll = %v, want a refusal, not an API error", err)
	}
	if api.signed("b1") != nil || !strings.Contains(h.logs.String(), `withdrawal \"w-b1\" is unknown`) {
		t.Errorf("the batch was not refused for its unknown withdrawal:\n%s", h.logs)
	}
}

func TestDaemonSkipsABatchThatNoLongerWaits(t *testing.T) {
	w := signertest.NewWallet(t)
	b := w.Batch(t, plan("b1", 40_000))
	api := newFakeAPI(b)
	api.submitErrs = []error{connect.NewError(connect.CodeFailedPrecondition, errors.New("batch b1 is ABANDONED"))}
	h := newHarness(t, w, api, testLimits)
	for range 3 {
		if err := h.poll(t); err != nil {
			t.Fatalf("poll: %v", err)
		}
	}
	if got := h.logs.count("no longer waits for a signature"); got != 1 {
		t.Errorf("logged %d times, want once:\n%s", got, h.logs)
	}
	if api.signed("b1") != nil {
		t.Error("the batch was submitted again after bankd said it no longer waits")
	}
}

func TestDaemonRunStopsWithItsContext(t *testing.T) {
	w := signertest.NewWallet(t)
	api := newFakeAPI(w.Batch(t, plan("b1", 40_000)))
	h := newHarness(t, w, api, testLimits)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.d.run(ctx) }()

	deadline := time.Now().Add(10 * time.Second)
	for api.signed("b1") == nil {
		if time.Now().After(deadline) {
			t.Fatal("run did not sign the batch within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v, want nil after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestDaemonRunLogsARepeatedAPIErrorOnce(t *testing.T) {
	w := signertest.NewWallet(t)
	api := newFakeAPI()
	unavailable := connect.NewError(connect.CodeUnavailable, errors.New("no leader"))
	api.listErrs = []error{unavailable, unavailable, unavailable, unavailable}
	h := newHarness(t, w, api, testLimits)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.d.run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for h.logs.count("bankd API answers again") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("run did not recover within 10s:\n%s", h.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if got := h.logs.count("bankd API call failed"); got != 1 {
		t.Errorf("the same API error was logged %d times, want once:\n%s", got, h.logs)
	}
}
