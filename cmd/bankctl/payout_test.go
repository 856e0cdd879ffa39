package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/gen/bankdv1/bankdv1connect"
	"github.com/bankd/bankd/internal/testcluster"
)

// fakePayouts is a PayoutService that answers from what the test put in it and records the
// requests it was sent.
type fakePayouts struct {
	bankdv1connect.UnimplementedPayoutServiceHandler

	mu sync.Mutex
	// payout answers GetPayout for its id and ListPayouts; batch answers GetBatch for its id
	// and ListBatches.
	payout *bankdv1.Payout
	batch  *bankdv1.PayoutBatch
	// selfDecision makes Approve and Reject refuse the caller as the requester.
	selfDecision bool

	requested *bankdv1.RequestPayoutRequest
	listed    *bankdv1.ListPayoutsRequest
	cancelled *bankdv1.CancelPayoutRequest
	decided   *bankdv1.DecidePayoutRequest
	batchList *bankdv1.ListPayoutBatchesRequest
	submitted *bankdv1.SubmitPayoutSignatureRequest
	abandoned *bankdv1.AbandonPayoutBatchRequest
}

func (f *fakePayouts) RequestPayout(_ context.Context, req *connect.Request[bankdv1.RequestPayoutRequest]) (*connect.Response[bankdv1.RequestPayoutResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requested = req.Msg
	m := req.Msg
	p := &bankdv1.Payout{
		Id: m.Id, AccountId: m.AccountId, Address: m.Address, AmountSat: m.AmountSat, FeeSat: 700, Queue: "default",
		State: bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL, ApprovalRequired: true, RequestedBy: "dev-write-1",
		RequestedUnixMs: testNowMs, HoldTransferId: "payout:" + m.Id, Index: 17,
	}
	if m.Queue != "" {
		p.Queue = m.Queue
	}
	return connect.NewResponse(&bankdv1.RequestPayoutResponse{Payout: p, Replayed: m.Id == "w-again"}), nil
}

func (f *fakePayouts) GetPayout(_ context.Context, req *connect.Request[bankdv1.GetPayoutRequest]) (*connect.Response[bankdv1.GetPayoutResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.payout == nil || f.payout.Id != req.Msg.Id {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("withdrawal %q: not found", req.Msg.Id))
	}
	res := &bankdv1.GetPayoutResponse{Payout: f.payout, Meta: &bankdv1.ReadMeta{ServedBy: "n1", AppliedIndex: 99}}
	if f.payout.BatchId != "" {
		res.Batch = f.batch
	}
	return connect.NewResponse(res), nil
}

func (f *fakePayouts) ListPayouts(_ context.Context, req *connect.Request[bankdv1.ListPayoutsRequest]) (*connect.Response[bankdv1.ListPayoutsResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = req.Msg
	res := &bankdv1.ListPayoutsResponse{}
	if f.payout != nil {
		res.Payouts = []*bankdv1.Payout{f.payout}
	}
	return connect.NewResponse(res), nil
}

func (f *fakePayouts) CancelPayout(_ context.Context, req *connect.Request[bankdv1.CancelPayoutRequest]) (*connect.Response[bankdv1.CancelPayoutResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = req.Msg
	p := proto.Clone(f.payout).(*bankdv1.Payout)
	p.State, p.ResolvedUnixMs = bankdv1.PayoutState_PAYOUT_STATE_CANCELLED, testNowMs+5000
	return connect.NewResponse(&bankdv1.CancelPayoutResponse{Payout: p}), nil
}

func (f *fakePayouts) decide(req *bankdv1.DecidePayoutRequest, approve bool) (*connect.Response[bankdv1.DecidePayoutResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decided = proto.Clone(req).(*bankdv1.DecidePayoutRequest)
	f.decided.Approve = approve // what the server does with the request
	if f.selfDecision {
		err := connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("approver: %q requested withdrawal %q; another identity must approve or reject it", "dev-admin-1", req.Id))
		err.Meta().Set("Bankd-Result-Code", "RESULT_CODE_PAYOUT_CONFLICT")
		return nil, err
	}
	p := proto.Clone(f.payout).(*bankdv1.Payout)
	p.DecidedBy, p.DecidedUnixMs = "dev-operator-1", testNowMs+1000
	if approve {
		p.State = bankdv1.PayoutState_PAYOUT_STATE_QUEUED
	} else {
		p.State, p.RejectReason = bankdv1.PayoutState_PAYOUT_STATE_REJECTED, req.Reason
	}
	return connect.NewResponse(&bankdv1.DecidePayoutResponse{Payout: p}), nil
}

func (f *fakePayouts) ApprovePayout(_ context.Context, req *connect.Request[bankdv1.DecidePayoutRequest]) (*connect.Response[bankdv1.DecidePayoutResponse], error) {
	return f.decide(req.Msg, true)
}

func (f *fakePayouts) RejectPayout(_ context.Context, req *connect.Request[bankdv1.DecidePayoutRequest]) (*connect.Response[bankdv1.DecidePayoutResponse], error) {
	return f.decide(req.Msg, false)
}

func (f *fakePayouts) GetBatch(_ context.Context, req *connect.Request[bankdv1.GetPayoutBatchRequest]) (*connect.Response[bankdv1.GetPayoutBatchResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.batch == nil || f.batch.Id != req.Msg.BatchId {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("batch %q: not found", req.Msg.BatchId))
	}
	return connect.NewResponse(&bankdv1.GetPayoutBatchResponse{Batch: f.batch, Meta: &bankdv1.ReadMeta{ServedBy: "n1", AppliedIndex: 99}}), nil
}

func (f *fakePayouts) ListBatches(_ context.Context, req *connect.Request[bankdv1.ListPayoutBatchesRequest]) (*connect.Response[bankdv1.ListPayoutBatchesResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batchList = req.Msg
	res := &bankdv1.ListPayoutBatchesResponse{}
	if f.batch != nil {
		res.Batches = []*bankdv1.PayoutBatch{f.batch}
	}
	return connect.NewResponse(res), nil
}

func (f *fakePayouts) SubmitSignature(_ context.Context, req *connect.Request[bankdv1.SubmitPayoutSignatureRequest]) (*connect.Response[bankdv1.SubmitPayoutSignatureResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted = req.Msg
	b := proto.Clone(f.batch).(*bankdv1.PayoutBatch)
	b.State, b.SignedBy, b.SignedUnixMs = bankdv1.BatchState_BATCH_STATE_SIGNED, "dev-signer-1", testNowMs+2000
	return connect.NewResponse(&bankdv1.SubmitPayoutSignatureResponse{Batch: b}), nil
}

func (f *fakePayouts) AbandonBatch(_ context.Context, req *connect.Request[bankdv1.AbandonPayoutBatchRequest]) (*connect.Response[bankdv1.AbandonPayoutBatchResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.abandoned = req.Msg
	b := proto.Clone(f.batch).(*bankdv1.PayoutBatch)
	b.State, b.AbandonReason = bankdv1.BatchState_BATCH_STATE_ABANDONED, req.Msg.Reason
	return connect.NewResponse(&bankdv1.AbandonPayoutBatchResponse{Batch: b}), nil
}

// servePayouts starts f behind an HTTP server and returns bankctl's environment for it.
func servePayouts(t *testing.T, f *fakePayouts) map[string]string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(bankdv1connect.NewPayoutServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return map[string]string{envAddr: srv.URL, envToken: "admin-token"}
}

const (
	testPayoutAddr = "bcrt1qpayoutdestinationaddressxxxxxxxxxxxxx"
	testChangeAddr = "bcrt1qchangeaddressxxxxxxxxxxxxxxxxxxxxxxx"
)

var (
	testTxid = strings.Repeat("7e", 32)
	// testPSBT is enough of a PSBT for bankctl, which only tells binary from base64.
	testPSBT = append([]byte("psbt\xff"), 0x01, 0x00, 0x52, 0x02, 0x00, 0x00, 0x00)
)

func testBatchedPayout() *bankdv1.Payout {
	return &bankdv1.Payout{
		Id: "w1", AccountId: "alice", Address: testPayoutAddr, AmountSat: 50_000, FeeSat: 700, Queue: "default",
		State: bankdv1.PayoutState_PAYOUT_STATE_BATCHED, RequestedBy: "dev-write-1", RequestedUnixMs: testNowMs,
		HoldTransferId: "payout:w1", BatchId: "b42", Txid: testTxid, Vout: 0, Index: 17,
	}
}

func testAwaitingPayout() *bankdv1.Payout {
	return &bankdv1.Payout{
		Id: "w1", AccountId: "alice", Address: testPayoutAddr, AmountSat: 5_000_000, FeeSat: 700, Queue: "default",
		State: bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL, ApprovalRequired: true, RequestedBy: "dev-write-1",
		RequestedUnixMs: testNowMs, HoldTransferId: "payout:w1", Index: 17,
	}
}

func testBatch() *bankdv1.PayoutBatch {
	return &bankdv1.PayoutBatch{
		Id: "b42", Queue: "default", WalletId: "hot", State: bankdv1.BatchState_BATCH_STATE_PLANNED,
		Inputs: []*bankdv1.BatchInput{
			{Outpoint: &bankdv1.Outpoint{Txid: strings.Repeat("01", 32), Vout: 1}, ValueSat: 80_000, Branch: 0, Index: 4},
			{Outpoint: &bankdv1.Outpoint{Txid: strings.Repeat("02", 32), Vout: 0}, ValueSat: 30_000, Branch: 1, Index: 2},
		},
		Outputs: []*bankdv1.BatchOutput{
			{Vout: 0, ValueSat: 50_000, Address: testPayoutAddr, PayoutId: "w1"},
			{Vout: 1, ValueSat: 20_000, Address: "bcrt1qsecondpayout", PayoutId: "w2"},
			{Vout: 2, ValueSat: 39_581, Address: testChangeAddr, Change: true, ChangeIndex: 3},
		},
		FeeSat: 419, FeeRateSatKvb: 2_450, Vsize: 171, Psbt: testPSBT, Txid: testTxid,
		PlannedUnixMs: testNowMs + 60_000, ChargedFeeSat: 1400,
	}
}

func TestBankctlPayouts(t *testing.T) {
	dir := t.TempDir()
	b64File := filepath.Join(dir, "signed.psbt.txt")
	// Wrapped at 4 characters with a trailing newline, as some tools write it.
	wrapped := ""
	for s := base64.StdEncoding.EncodeToString(testPSBT); s != ""; {
		n := min(4, len(s))
		wrapped, s = wrapped+s[:n]+"\n", s[n:]
	}
	if err := os.WriteFile(b64File, []byte(wrapped), 0o600); err != nil {
		t.Fatal(err)
	}
	binFile := filepath.Join(dir, "signed.psbt")
	if err := os.WriteFile(binFile, testPSBT, 0o600); err != nil {
		t.Fatal(err)
	}
	outFile := filepath.Join(dir, "unsigned.psbt")

	tests := []struct {
		name   string
		setup  func(f *fakePayouts)
		args   []string
		code   int
		stdout []string // each must appear on stdout
		stderr []string // each must appear on stderr
		check  func(t *testing.T, f *fakePayouts, stdout, stderr string)
	}{
		{
			name:   "payout request",
			args:   []string{"payout", "request", "alice", testPayoutAddr, "50000"},
			stdout: []string{"awaiting_approval", "payout:ctl-", "700 sat", "50000 sat", "required", "default"},
			stderr: []string{"payout id: ctl-", "(retry with -id ctl-"},
			check: func(t *testing.T, f *fakePayouts, _, _ string) {
				m := f.requested
				if m.GetAccountId() != "alice" || m.GetAddress() != testPayoutAddr || m.GetAmountSat() != 50_000 ||
					m.GetQueue() != "" || !strings.HasPrefix(m.GetId(), "ctl-") {
					t.Errorf("RequestPayout got %v", m)
				}
			},
		},
		{
			name: "payout request json with an id and a queue",
			args: []string{"-o", "json", "payout", "request", "alice", testPayoutAddr, "1000", "-id", "w1", "-queue", "slow"},
			check: func(t *testing.T, f *fakePayouts, out, errOut string) {
				want := &bankdv1.RequestPayoutRequest{Id: "w1", AccountId: "alice", Address: testPayoutAddr, AmountSat: 1000, Queue: "slow"}
				if !proto.Equal(f.requested, want) {
					t.Errorf("RequestPayout got %v, want %v", f.requested, want)
				}
				var res bankdv1.RequestPayoutResponse
				decodeJSON(t, out, &res)
				if res.Payout.GetHoldTransferId() != "payout:w1" || res.Payout.GetQueue() != "slow" || errOut != "" {
					t.Errorf("payout = %v, stderr %q", res.Payout, errOut)
				}
			},
		},
		{
			name:   "payout request replayed",
			args:   []string{"payout", "request", "alice", testPayoutAddr, "1000", "-id", "w-again"},
			stdout: []string{"payout w-again was already requested; this is its first result"},
		},
		{
			name:  "payout get with its batch",
			setup: func(f *fakePayouts) { f.payout, f.batch = testBatchedPayout(), testBatch() },
			args:  []string{"payout", "get", "w1"},
			stdout: []string{"batched", "b42", testTxid + ":0", "batch state:", "planned", "batch txid:",
				"419 sat at 2.5 sat/vB", "payout:w1", "n1 at index 99"},
		},
		{
			name:   "payout get of an unknown id",
			args:   []string{"payout", "get", "nope"},
			code:   exitFail,
			stderr: []string{`bankctl: not_found: withdrawal "nope": not found`},
		},
		{
			name:  "payout list",
			setup: func(f *fakePayouts) { f.payout = testBatchedPayout() },
			args:  []string{"payout", "list", "-account", "alice", "-state", "batched", "-limit", "5"},
			check: func(t *testing.T, f *fakePayouts, out, _ string) {
				if got := strings.Fields(strings.SplitN(out, "\n", 2)[0]); fmt.Sprint(got) != "[ID ACCOUNT AMOUNT FEE QUEUE STATE BATCH TXID]" {
					t.Errorf("header = %q", got)
				}
				want := []string{"w1", "alice", "50000", "700", "default", "batched", "b42", testTxid}
				if got := tableRow(out, "w1"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("w1 row = %q, want %q", got, want)
				}
				m := f.listed
				if m.GetAccountId() != "alice" || m.GetState() != bankdv1.PayoutState_PAYOUT_STATE_BATCHED || m.GetPageSize() != 5 {
					t.Errorf("ListPayouts got %v", m)
				}
			},
		},
		{
			name: "payout list awaiting approval",
			args: []string{"payout", "list", "-state", "awaiting_approval"},
			check: func(t *testing.T, f *fakePayouts, _, _ string) {
				if f.listed.GetState() != bankdv1.PayoutState_PAYOUT_STATE_AWAITING_APPROVAL || f.listed.GetAccountId() != "" {
					t.Errorf("ListPayouts got %v", f.listed)
				}
			},
		},
		{
			name:   "payout cancel",
			setup:  func(f *fakePayouts) { f.payout = testBatchedPayout() },
			args:   []string{"payout", "cancel", "w1"},
			stdout: []string{"cancelled"},
			check: func(t *testing.T, f *fakePayouts, _, _ string) {
				if f.cancelled.GetId() != "w1" {
					t.Errorf("CancelPayout got %v", f.cancelled)
				}
			},
		},
		{
			name:   "payout approve",
			setup:  func(f *fakePayouts) { f.payout = testAwaitingPayout() },
			args:   []string{"payout", "approve", "w1"},
			stdout: []string{"queued", "required, decided by dev-operator-1 at 2023-11-14T22:13:21.000Z"},
			check: func(t *testing.T, f *fakePayouts, _, _ string) {
				if !f.decided.GetApprove() || f.decided.GetId() != "w1" {
					t.Errorf("decision %v", f.decided)
				}
			},
		},
		{
			name:   "payout approve by the requester",
			setup:  func(f *fakePayouts) { f.payout, f.selfDecision = testAwaitingPayout(), true },
			args:   []string{"payout", "approve", "w1"},
			code:   exitFail,
			stderr: []string{`bankctl: failed_precondition: approver: "dev-admin-1" requested withdrawal "w1"; another identity must approve or reject it (PAYOUT_CONFLICT)`},
		},
		{
			name:   "payout reject",
			setup:  func(f *fakePayouts) { f.payout = testAwaitingPayout() },
			args:   []string{"payout", "reject", "w1", "-reason", "address on a sanctions list"},
			stdout: []string{"rejected: address on a sanctions list"},
			check: func(t *testing.T, f *fakePayouts, _, _ string) {
				if f.decided.GetApprove() || f.decided.GetReason() != "address on a sanctions list" {
					t.Errorf("decision %v", f.decided)
				}
			},
		},
		{
			name:  "payout batches",
			setup: func(f *fakePayouts) { f.batch = testBatch() },
			args:  []string{"payout", "batches", "-state", "planned"},
			check: func(t *testing.T, f *fakePayouts, out, _ string) {
				want := []string{"b42", "default", "planned", "2", "2", "419", "2.5", testTxid}
				if got := tableRow(out, "b42"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("b42 row = %q, want %q", got, want)
				}
				if f.batchList.GetState() != bankdv1.BatchState_BATCH_STATE_PLANNED {
					t.Errorf("ListBatches got %v", f.batchList)
				}
			},
		},
		{
			name: "payout batch",
			setup: func(f *fakePayouts) {
				f.batch = testBatch()
				f.batch.State, f.batch.AbandonReason = bankdv1.BatchState_BATCH_STATE_ABANDONED, "inputs spent elsewhere"
			},
			args: []string{"payout", "batch", "b42"},
			stdout: []string{"abandoned: inputs spent elsewhere", "419 sat at 2.5 sat/vB, 171 vB", "1400 sat", "hot",
				"INPUT", strings.Repeat("01", 32) + ":1", "receive/4", "change/2", "VOUT", "change #3"},
			check: func(t *testing.T, _ *fakePayouts, out, _ string) {
				want := []string{"1", "bcrt1qsecondpayout", "20000", "w2"}
				if got := tableRow(out, "1"); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("vout 1 row = %q, want %q", got, want)
				}
				if got := tableRow(out, "2"); len(got) != 5 || got[2] != "39581" || got[4] != "#3" {
					t.Errorf("change row = %q", got)
				}
			},
		},
		{
			name:   "payout psbt to stdout",
			setup:  func(f *fakePayouts) { f.batch = testBatch() },
			args:   []string{"payout", "psbt", "b42"},
			stdout: []string{base64.StdEncoding.EncodeToString(testPSBT) + "\n"},
			check: func(t *testing.T, _ *fakePayouts, out, errOut string) {
				if out != base64.StdEncoding.EncodeToString(testPSBT)+"\n" || errOut != "" {
					t.Errorf("stdout %q, stderr %q; want the PSBT alone", out, errOut)
				}
			},
		},
		{
			name: "payout psbt of a signed batch warns",
			setup: func(f *fakePayouts) {
				f.batch = testBatch()
				f.batch.State = bankdv1.BatchState_BATCH_STATE_SIGNED
			},
			args:   []string{"payout", "psbt", "b42"},
			stdout: []string{"cHNidP8"},
			stderr: []string{"batch b42 is signed: it takes no signature"},
		},
		{
			name:   "payout psbt -out",
			setup:  func(f *fakePayouts) { f.batch = testBatch() },
			args:   []string{"payout", "psbt", "b42", "-out", outFile},
			stdout: []string{"wrote the unsigned PSBT of batch b42 (txid " + testTxid + ") to " + outFile},
			check: func(t *testing.T, _ *fakePayouts, _, _ string) {
				b, err := os.ReadFile(outFile)
				if err != nil || string(b) != base64.StdEncoding.EncodeToString(testPSBT)+"\n" {
					t.Errorf("%s = %q, %v", outFile, b, err)
				}
				if fi, err := os.Stat(outFile); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v, %v; want 0600", outFile, fi.Mode(), err)
				}
			},
		},
		{
			name:   "payout psbt of an unknown batch writes no file",
			args:   []string{"payout", "psbt", "b7", "-out", filepath.Join(dir, "none.psbt")},
			code:   exitFail,
			stderr: []string{`bankctl: not_found: batch "b7"`},
			check: func(t *testing.T, _ *fakePayouts, _, _ string) {
				if _, err := os.Stat(filepath.Join(dir, "none.psbt")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("none.psbt: %v; want no file", err)
				}
			},
		},
		{
			name:   "payout sign-import of base64",
			setup:  func(f *fakePayouts) { f.batch = testBatch() },
			args:   []string{"payout", "sign-import", "b42", b64File},
			stdout: []string{"signed", testTxid, "dev-signer-1"},
			check: func(t *testing.T, f *fakePayouts, _, _ string) {
				if f.submitted.GetBatchId() != "b42" || !bytes.Equal(f.submitted.GetPsbt(), testPSBT) {
					t.Errorf("SubmitSignature got %v", f.submitted)
				}
			},
		},
		{
			name:  "payout sign-import of binary",
			setup: func(f *fakePayouts) { f.batch = testBatch() },
			args:  []string{"-o", "json", "payout", "sign-import", "b42", binFile},
			check: func(t *testing.T, f *fakePayouts, out, _ string) {
				if !bytes.Equal(f.submitted.GetPsbt(), testPSBT) {
					t.Errorf("SubmitSignature got %x", f.submitted.GetPsbt())
				}
				var res bankdv1.SubmitPayoutSignatureResponse
				decodeJSON(t, out, &res)
				if res.Batch.GetState() != bankdv1.BatchState_BATCH_STATE_SIGNED {
					t.Errorf("batch = %v", res.Batch)
				}
			},
		},
		{
			name:   "payout abandon",
			setup:  func(f *fakePayouts) { f.batch = testBatch() },
			args:   []string{"payout", "abandon", "b42", "-reason", "fee too low"},
			stdout: []string{"abandoned: fee too low"},
			check: func(t *testing.T, f *fakePayouts, _, _ string) {
				want := &bankdv1.AbandonPayoutBatchRequest{BatchId: "b42", Reason: "fee too low"}
				if !proto.Equal(f.abandoned, want) {
					t.Errorf("AbandonBatch got %v, want %v", f.abandoned, want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakePayouts{}
			if tt.setup != nil {
				tt.setup(f)
			}
			code, out, errOut := ctl(t, servePayouts(t, f), tt.args...)
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

func TestBankctlPayoutUsage(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.psbt")
	garbage := filepath.Join(dir, "garbage")
	notPSBT := filepath.Join(dir, "not-a-psbt.b64")
	for path, content := range map[string]string{
		existing: "keep me",
		garbage:  "this is not a PSBT at all\n",
		notPSBT:  base64.StdEncoding.EncodeToString([]byte("a transaction, not a PSBT")),
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	env := map[string]string{envAddr: "http://127.0.0.1:1"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"payout"}, `unknown command "payout"`},
		{[]string{"payout", "frobnicate"}, `unknown command "payout frobnicate"`},
		{[]string{"payout", "request", "alice", "bcrt1q"}, "want ACCOUNT ADDRESS SATS, got 2"},
		{[]string{"payout", "request", "alice", "bcrt1q", "5", "6"}, "want ACCOUNT ADDRESS SATS, got 4"},
		{[]string{"payout", "request", "alice", "bcrt1q", "0"}, `SATS "0": want a whole number of satoshis above zero`},
		{[]string{"payout", "request", "alice", "bcrt1q", "--", "-5"}, `SATS "-5"`},
		{[]string{"payout", "request", "alice", "bcrt1q", "-5"}, "flag provided but not defined: -5"},
		{[]string{"payout", "request", "alice", "bcrt1q", "ten"}, `SATS "ten"`},
		{[]string{"payout", "request", "alice", "bcrt1q", "0.001"}, `SATS "0.001"`},
		{[]string{"payout", "request", "alice", "bcrt1q", "1e5"}, `SATS "1e5"`},
		{[]string{"payout", "request", "alice", "bcrt1q", "1_000"}, `SATS "1_000"`},
		{[]string{"payout", "request", "alice", "bcrt1q", "99999999999999999999"}, `SATS "99999999999999999999"`},
		{[]string{"payout", "get"}, "want ID, got 0"},
		{[]string{"payout", "get", "a", "b"}, "want ID, got 2"},
		{[]string{"payout", "list", "extra"}, "want flags only"},
		{[]string{"payout", "list", "-state", "pending"}, `-state "pending": want queued, awaiting_approval, batched, paid, cancelled, rejected or failed`},
		{[]string{"payout", "list", "-state", "unspecified"}, `-state "unspecified"`},
		{[]string{"payout", "list", "-state", "planned"}, `-state "planned"`},
		{[]string{"payout", "list", "-limit", "0"}, "-limit must be 1-"},
		{[]string{"payout", "list", "-limit", "-3"}, "-limit must be 1-"},
		{[]string{"payout", "cancel"}, "want ID"},
		{[]string{"payout", "cancel", "a", "b"}, "want ID, got 2"},
		{[]string{"payout", "approve"}, "want ID"},
		{[]string{"payout", "approve", "w1", "-reason", "ok"}, "flag provided but not defined: -reason"},
		{[]string{"payout", "reject", "w1"}, "-reason is required"},
		{[]string{"payout", "reject", "w1", "-reason", ""}, "-reason is required"},
		{[]string{"payout", "reject", "-reason", "no"}, "want ID, got 0"},
		{[]string{"payout", "batches", "b1"}, "want flags only"},
		{[]string{"payout", "batches", "-state", "queued"}, `-state "queued": want planned, signed, confirmed, final or abandoned`},
		{[]string{"payout", "batches", "-limit", "0"}, "-limit must be 1-"},
		{[]string{"payout", "batch"}, "want ID"},
		{[]string{"payout", "batch", "b1", "b2"}, "want ID, got 2"},
		{[]string{"payout", "psbt"}, "want ID"},
		{[]string{"payout", "psbt", "b1", "-out", existing}, "-out " + existing + ": the file exists; bankctl does not overwrite it"},
		{[]string{"payout", "psbt", "b1", "-out", dir}, "the file exists"},
		{[]string{"payout", "sign-import", "b1"}, "want ID FILE, got 1"},
		{[]string{"payout", "sign-import", "b1", garbage, "x"}, "want ID FILE, got 3"},
		{[]string{"payout", "sign-import", "b1", filepath.Join(dir, "missing")}, "no such file or directory"},
		{[]string{"payout", "sign-import", "b1", garbage}, garbage + " is neither a base64 nor a binary PSBT"},
		{[]string{"payout", "sign-import", "b1", notPSBT}, notPSBT + " is neither a base64 nor a binary PSBT"},
		{[]string{"payout", "abandon", "b1"}, "-reason is required"},
		{[]string{"payout", "abandon", "-reason", "x"}, "want ID, got 0"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := ctl(t, env, tt.args...)
			if code != exitUsage || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, exitUsage, out, errOut, tt.want)
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "keep me" {
		t.Errorf("%s = %q, %v; psbt -out must leave it alone", existing, b, err)
	}
}

func TestBankctlPayoutsOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a one-node cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 1})
	client := map[string]string{envAddr: strings.Join(c.URLs(), ","), envCA: c.Config.TLS.CAFile, envToken: testcluster.ClientToken}

	out := mustCtl(t, client, "payout", "list")
	if strings.TrimSpace(out) != "ID  ACCOUNT  AMOUNT  FEE  QUEUE  STATE  BATCH  TXID" {
		t.Fatalf("payout list on a cluster without withdrawals:\n%s", out)
	}
	out = mustCtl(t, client, "payout", "batches", "-state", "planned")
	if strings.TrimSpace(out) != "ID  QUEUE  STATE  PAYOUTS  INPUTS  FEE  SAT/VB  TXID" {
		t.Fatalf("payout batches on a cluster without batches:\n%s", out)
	}
	code, _, errOut := ctl(t, client, "payout", "get", "w1")
	if code != exitFail || !strings.HasPrefix(errOut, "bankctl: not_found: ") {
		t.Fatalf("payout get of an unknown id: exit %d, %q", code, errOut)
	}

	addr, err := btcutil.NewAddressWitnessPubKeyHash(make([]byte, 20), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = ctl(t, client, "payout", "request", "alice", addr.EncodeAddress(), "50000", "-id", "w1")
	if code != exitFail || !strings.Contains(errOut, "bankctl: failed_precondition: the cluster takes no withdrawals: cluster.hcl has no payouts block") {
		t.Fatalf("payout request without a payouts block: exit %d, %q", code, errOut)
	}
	code, _, errOut = ctl(t, client, "payout", "approve", "w1")
	if code != exitFail || !strings.HasPrefix(errOut, "bankctl: permission_denied: ") {
		t.Fatalf("payout approve with a client token: exit %d, %q", code, errOut)
	}
}

func TestBankctlHelpListsThePayoutCommands(t *testing.T) {
	_, out, _ := ctl(t, nil, "help")
	for _, want := range []string{
		"  payout request ACCOUNT ADDRESS SATS [-queue Q] [-id ID]\n",
		"  payout get ID\n",
		"  payout list [-account A] [-state queued|awaiting_approval|batched|paid|cancelled|rejected|failed] [-limit N]\n",
		"  payout cancel ID\n",
		"  payout approve ID\n",
		"  payout reject ID -reason R\n",
		"  payout batches [-state planned|signed|confirmed|final|abandoned] [-limit N]\n",
		"  payout batch ID\n",
		"  payout psbt ID [-out FILE]\n",
		"  payout sign-import ID FILE\n",
		"  payout abandon ID -reason R\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestDescribePayoutItems(t *testing.T) {
	rejected := testBatchedPayout()
	rejected.State, rejected.BatchId, rejected.RejectReason = bankdv1.PayoutState_PAYOUT_STATE_REJECTED, "", "too large"
	final := testBatch()
	final.State, final.BlockHeight = bankdv1.BatchState_BATCH_STATE_FINAL, 300
	abandoned := testBatch()
	abandoned.State, abandoned.AbandonReason = bankdv1.BatchState_BATCH_STATE_ABANDONED, "fee too low"
	tests := []struct {
		name string
		item *bankdv1.EventItem
		want string
	}{
		{"a batched payout", &bankdv1.EventItem{Kind: &bankdv1.EventItem_Payout{Payout: testBatchedPayout()}},
			"payout w1 batched 50000 sat from alice to " + testPayoutAddr + " in b42"},
		{"a rejected payout", &bankdv1.EventItem{Kind: &bankdv1.EventItem_Payout{Payout: rejected}},
			"payout w1 rejected 50000 sat from alice to " + testPayoutAddr + ": too large"},
		{"a planned batch", &bankdv1.EventItem{Kind: &bankdv1.EventItem_PayoutBatch{PayoutBatch: testBatch()}},
			"payout-batch b42 planned " + testTxid + ", 2 payout(s), fee 419 sat"},
		{"a final batch", &bankdv1.EventItem{Kind: &bankdv1.EventItem_PayoutBatch{PayoutBatch: final}},
			"payout-batch b42 final " + testTxid + ", 2 payout(s), fee 419 sat in 300"},
		{"an abandoned batch", &bankdv1.EventItem{Kind: &bankdv1.EventItem_PayoutBatch{PayoutBatch: abandoned}},
			"payout-batch b42 abandoned " + testTxid + ", 2 payout(s), fee 419 sat: fee too low"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeItem(tt.item); got != tt.want {
				t.Errorf("describeItem = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFormatFeeRate(t *testing.T) {
	tests := []struct {
		kvb  int64
		want string
	}{
		{0, "0.0"}, {1000, "1.0"}, {1001, "1.0"}, {1049, "1.0"}, {1050, "1.1"}, {2450, "2.5"}, {12_345, "12.3"}, {99_960, "100.0"},
	}
	for _, tt := range tests {
		if got := formatFeeRate(tt.kvb); got != tt.want {
			t.Errorf("formatFeeRate(%d) = %q, want %q", tt.kvb, got, tt.want)
		}
	}
}

func TestDecodePSBT(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString(testPSBT)
	tests := []struct {
		name string
		raw  string
		ok   bool
	}{
		{"binary", string(testPSBT), true},
		{"base64", b64, true},
		{"base64 with a newline", b64 + "\n", true},
		{"base64 wrapped", b64[:8] + "\r\n" + b64[8:] + "\n", true},
		{"empty", "", false},
		{"text", "hello", false},
		{"base64 of something else", base64.StdEncoding.EncodeToString([]byte("hello world")), false},
		{"hex", fmt.Sprintf("%x", testPSBT), false},
		{"truncated magic", "psbt", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := decodePSBT([]byte(tt.raw))
			if ok != tt.ok || (ok && !bytes.Equal(got, testPSBT)) {
				t.Errorf("decodePSBT = %x, %v; want ok %v", got, ok, tt.ok)
			}
		})
	}
}
