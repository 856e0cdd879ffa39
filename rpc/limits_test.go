package rpc

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

func TestOneTokenCannotHoldMoreThanItsShare(t *testing.T) {
	n := newFakeNode("n1")
	unblock := make(chan struct{})
	var started sync.WaitGroup
	n.applyFn = func(typ bankdv1.CommandType, body proto.Message, f *bankdv1.Fence) (proto.Message, error) {
		started.Done()
		<-unblock
		return okTransfers(typ, body, f)
	}
	srv := startFakeServer(t, n, Options{MaxCallsPerToken: 2, MaxStreamsPerToken: 1})
	ctx := context.Background()
	write := func(token, id string) error {
		_, err := ledgerClient(srv.url, token).CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: validTransfer(id)}))
		return err
	}

	started.Add(2)
	errs := make(chan error, 2)
	for i := range 2 {
		go func() { errs <- write(clientToken, fmt.Sprintf("held-%d", i)) }()
	}
	started.Wait() // both calls are inside the handler
	if err := write(clientToken, "third"); connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), `token "client"`) {
		t.Fatalf("a third call of a token at its limit: %v, want ResourceExhausted naming the token", err)
	}
	// Another token is not starved by the first.
	started.Add(1)
	go func() { errs <- write(adminToken, "other-token") }()
	started.Wait()
	close(unblock)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("a call within the limit failed: %v", err)
		}
	}
	started.Add(1)
	if err := write(clientToken, "after"); err != nil {
		t.Fatalf("after the calls ended the token is free again: %v", err)
	}

	// Streams: one per token here.
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	first, err := eventClient(srv.url, readToken).WatchEvents(streamCtx, connect.NewRequest(&bankdv1.WatchEventsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for deadline := time.Now().Add(10 * time.Second); srv.srv.limits.streamsOf("reader") != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first stream never took its slot")
		}
	}
	second, err := eventClient(srv.url, readToken).WatchEvents(streamCtx, connect.NewRequest(&bankdv1.WatchEventsRequest{}))
	if err == nil {
		for second.Receive() {
		}
		err = second.Err()
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a second stream of a token at its limit: %v, want ResourceExhausted", err)
	}
}

func TestRequestsAreBoundedByTheirProcedure(t *testing.T) {
	n := newFakeNode("n1")
	n.applyFn = okTransfers
	srv := startFakeServer(t, n, Options{})
	ctx := context.Background()
	client := ledgerClient(srv.url, clientToken)

	// A single account can never be valid at 100 KiB: refused by size, before it is decoded.
	_, err := client.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: &bankdv1.Account{
		Id: "big", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET,
		Metadata: map[string]string{"k": strings.Repeat("v", 100<<10)},
	}}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a 100 KiB CreateAccount: %v, want ResourceExhausted", err)
	}
	if got := n.appliedTypes(); len(got) != 0 {
		t.Fatalf("an oversized request was proposed: %v", got)
	}

	// A batch of transfers is allowed its size.
	var ts []*bankdv1.Transfer
	for i := range 2000 {
		tr := validTransfer(fmt.Sprintf("batch-%04d", i))
		tr.ExternalRef = strings.Repeat("r", 100)
		ts = append(ts, tr)
	}
	if size := proto.Size(&bankdv1.CreateTransfersRequest{Transfers: ts}); size <= maxSmallRequestBytes {
		t.Fatalf("the batch is only %d bytes; the test needs more than %d", size, maxSmallRequestBytes)
	}
	if _, err := client.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: ts})); err != nil {
		t.Fatalf("a large valid batch: %v", err)
	}
}

func TestASlowBodyIsCutOff(t *testing.T) {
	n := newFakeNode("n1")
	srv := startFakeServer(t, n, Options{BodyReadTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Announce a 1000-byte body, send 10 bytes and stall, as a slowloris client does.
	fmt.Fprintf(conn, "POST /bankd.v1.LedgerService/GetAccount HTTP/1.1\r\nHost: x\r\nContent-Type: application/proto\r\n"+
		"Authorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n0123456789", clientToken)
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // a bound on the test, not a timing claim
	resp, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && !isClosed(err) {
		t.Fatalf("waiting for the server to give up on the body: %v", err)
	}
	if err == nil && !strings.Contains(resp, " 4") && !strings.Contains(resp, " 5") {
		t.Fatalf("the server answered %q to a stalled body", resp)
	}
}

func isClosed(err error) bool {
	return strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset")
}

func TestStateHashIsComputedOncePerAppliedIndex(t *testing.T) {
	n := newFakeNode("n1")
	srv := startFakeServer(t, n, Options{})
	client := clusterClient(srv.url, operatorToken)
	hash := func() {
		t.Helper()
		if _, err := client.StateHash(context.Background(), connect.NewRequest(&bankdv1.StateHashRequest{})); err != nil {
			t.Fatal(err)
		}
	}
	n.state.setApplied(7)
	hash()
	hash()
	hash()
	if got := n.state.scans(); got != 1 {
		t.Fatalf("three calls at one applied index scanned the store %d times, want 1", got)
	}
	n.state.setApplied(8)
	hash()
	if got := n.state.scans(); got != 2 {
		t.Fatalf("a call after the index moved scanned %d times in all, want 2", got)
	}
}
