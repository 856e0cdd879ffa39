package rpc

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/rpc/wire"
)

// TestStaleReadsWaitForTheClientsMinIndex: a STALE read that names an index the node has not
// applied waits for it, answers Unavailable (ask another node) once the wait runs out, and
// refuses a header that is not an index. Linearizable reads and reads without the header are
// untouched.
func TestStaleReadsWaitForTheClientsMinIndex(t *testing.T) {
	n := newFakeNode("n4")
	n.state.putAccount(&bankdv1.Account{Id: "acc", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET})
	n.state.appendEvent(10)
	srv := startFakeServer(t, n, Options{})
	read := func(minIndex string) (*bankdv1.ReadMeta, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req := connect.NewRequest(&bankdv1.GetAccountRequest{Id: "acc", Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_STALE})
		if minIndex != "" {
			req.Header().Set(wire.MinIndexHeader, minIndex)
		}
		res, err := ledgerClient(srv.url, readToken).GetAccount(ctx, req)
		if err != nil {
			return nil, err
		}
		return res.Msg.Meta, nil
	}

	tests := []struct {
		name     string
		minIndex string
		want     connect.Code // 0: served
		wantText string
	}{
		{"no header", "", 0, ""},
		{"an index already applied", "10", 0, ""},
		{"an older index", "3", 0, ""},
		{"an index not applied yet", "11", connect.CodeUnavailable, "node n4 has applied index 10, behind the index 11 this client has already read"},
		{"not a number", "eleven", connect.CodeInvalidArgument, `Bankd-Min-Index header "eleven" is not an index`},
		{"a negative number", "-1", connect.CodeInvalidArgument, "is not an index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			meta, err := read(tt.minIndex)
			if connect.CodeOf(err) != tt.want && !(tt.want == 0 && err == nil) {
				t.Fatalf("read with %s %q: %v, want code %v", wire.MinIndexHeader, tt.minIndex, err, tt.want)
			}
			if tt.want == 0 && meta.GetAppliedIndex() != 10 {
				t.Fatalf("served at %v, want index 10", meta)
			}
			if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("error %q does not say %q", err, tt.wantText)
			}
		})
	}

	t.Run("a read waits for the index to be applied", func(t *testing.T) {
		before := n.state.waiters()
		done := make(chan error, 1)
		go func() {
			meta, err := read("12")
			if err == nil && meta.GetAppliedIndex() < 12 {
				t.Errorf("served at %v, want index >= 12", meta)
			}
			done <- err
		}()
		// Apply only once the read is waiting, so the test sees it wait.
		for deadline := time.Now().Add(5 * time.Second); n.state.waiters() == before; {
			if time.Now().After(deadline) {
				t.Fatal("the read never waited for the state machine")
			}
			time.Sleep(time.Millisecond)
		}
		n.state.appendEvent(11)
		n.state.appendEvent(12)
		if err := <-done; err != nil {
			t.Fatalf("read with min index 12 while 11 and 12 were applied: %v", err)
		}
	})
}
