package systemtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster"
)

// TestRetentionDropsOldRecordsOnEveryReplica runs a steady writer against a cluster whose
// retention window is two seconds: old events are answered out_of_range naming the horizon,
// old transfer ids are gone (a resend is a new transfer), the books are untouched, and every
// replica drops the same records.
func TestRetentionDropsOldRecordsOnEveryReplica(t *testing.T) {
	c := startCluster(t, testcluster.Spec{Extra: `
retention {
  history            = "2s"
  idempotency_window = "2s"
  interval           = "200ms"
}
`})
	_, cl := leaderClient(t, c)
	createAccount(t, cl, "reserve", asset, false)
	createAccount(t, cl, "steady", liability, false)

	write := func(id string) *bankdv1.CreateTransferResponse {
		t.Helper()
		resp, err := cl.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer(id, "reserve", "steady", 1)}))
		if err != nil {
			t.Fatalf("transfer %s: %v", id, err)
		}
		return resp.Msg
	}
	first := write("first")
	sizeBefore := dirSize(t, c.Nodes[0].DataDir)

	// A steady workload for twice the window: the store stops growing once the window is full.
	n := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); n++ {
		write(uniqueID("steady", n))
	}

	// The first transfer's event is gone; the stream names where history now starts.
	var horizon uint64
	waitFor(t, 20*time.Second, "the first event to be dropped", func() bool {
		h, err := watchFrom(c.Client(1, testcluster.ReadToken), first.Transfer.Index)
		horizon = h
		return err == nil && h > first.Transfer.Index
	})
	if _, err := watchFrom(c.Client(0, testcluster.ReadToken), horizon); err != nil {
		t.Fatalf("watch from the horizon %d: %v", horizon, err)
	}
	waitFor(t, 20*time.Second, "the first transfer's id to be dropped", func() bool {
		_, err := cl.Ledger.GetTransfer(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.GetTransferRequest{Id: "first"}))
		return connect.CodeOf(err) == connect.CodeNotFound
	})
	if again := write("first"); again.Replayed || again.Transfer.Index == first.Transfer.Index {
		t.Fatalf("a resend after the idempotency window was %v, want a new transfer", again)
	}
	if b := balance(t, cl, "steady"); b.Posted != int64(n+2) {
		t.Fatalf("steady holds %d, want %d: retention changed the books", b.Posted, n+2)
	}
	requireSameStateHash(t, c)
	t.Logf("%d transfers; horizon at index %d; n1's data dir %d KiB before the workload, %d KiB after",
		n+2, horizon, sizeBefore>>10, dirSize(t, c.Nodes[0].DataDir)>>10)
}

// watchFrom opens a stream at from. It returns the horizon an out_of_range answer names (0 if
// the stream opened and delivered an event), or the error of anything else.
func watchFrom(cl *apiclient.Clients, from uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := cl.Event.WatchEvents(ctx, connect.NewRequest(&bankdv1.WatchEventsRequest{FromIndex: from}))
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	if stream.Receive() {
		return 0, nil
	}
	err = stream.Err()
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		return 0, fmt.Errorf("watch from %d: %w", from, err)
	}
	var h uint64
	msg := err.Error()
	i := strings.LastIndex(msg, "the oldest index still kept is ")
	if i < 0 {
		return 0, fmt.Errorf("out_of_range without the horizon: %w", err)
	}
	if _, serr := fmt.Sscan(msg[i+len("the oldest index still kept is "):], &h); serr != nil {
		return 0, errors.Join(err, serr)
	}
	return h, nil
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, ierr := d.Info(); ierr == nil && !d.IsDir() {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("size of %s: %v", dir, err)
	}
	return total
}
