package fsm

import (
	"fmt"
	"testing"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// TestTransferFilterNeverForgetsAnID adds ids across several segments and checks every one is
// still reported, and that few ids never added are.
func TestTransferFilterNeverForgetsAnID(t *testing.T) {
	f := newTransferFilter(0)
	const n = 3 * filterFirstSegment // three segments: 1M, 2M (not full)
	for i := range n {
		f.add(fmt.Sprintf("transfer-%d", i))
	}
	if len(f.segments) != 2 {
		t.Fatalf("%d segments for %d ids, want 2", len(f.segments), n)
	}
	for i := range n {
		if !f.mayContain(fmt.Sprintf("transfer-%d", i)) {
			t.Fatalf("transfer-%d was added but the filter says it never was", i)
		}
	}
	falsePositives := 0
	const probes = 200_000
	for i := range probes {
		if f.mayContain(fmt.Sprintf("other-%d", i)) {
			falsePositives++
		}
	}
	if rate := float64(falsePositives) / probes; rate > 0.005 {
		t.Fatalf("false-positive rate %.4f, want below 0.5%%", rate)
	}
	t.Logf("%d ids in %d bytes (%.1f bits each); %d of %d absent ids reported", n, f.bytes(), float64(f.bytes()*8)/n, falsePositives, probes)
}

// TestRetriesStayReplaysAfterReopenAndRestore checks that a replica that rebuilt its transfer
// filter, by reopening its store or restoring a snapshot, still recognises a retry: were the
// filter missing an id, the retry would apply a second time.
func TestRetriesStayReplaysAfterReopenAndRestore(t *testing.T) {
	tf := openTestFSM(t)
	tf.mustAccount("reserve", "ASSET", false)
	tf.mustAccount("alice", "LIABILITY", true)
	first := tf.transfer(xfer("pay-1", "reserve", "alice", 10))
	if first.Code != bankdv1.ResultCode_RESULT_CODE_OK || first.Replayed {
		t.Fatalf("first: %v", first)
	}
	other := openTestFSM(t)
	if err := other.Restore(readCloser(snapshotBytes(t, tf.FSM))); err != nil {
		t.Fatal(err)
	}
	other.nowMs, other.log = tf.nowMs, tf.log

	tf.FSM = tf.reopen()

	for name, f := range map[string]*testFSM{"reopened": tf, "restored": other} {
		r := f.transfer(xfer("pay-1", "reserve", "alice", 10))
		if r.Code != bankdv1.ResultCode_RESULT_CODE_OK || !r.Replayed {
			t.Fatalf("%s: retry of pay-1 gave %v, want a replay", name, r)
		}
		if got := f.balance("alice").Posted; got != 10 {
			t.Fatalf("%s: alice holds %d after the retry, want 10", name, got)
		}
	}
}

// BenchmarkTransferFilter measures an add and a lookup of an absent id in a filter of four
// million ids (8 MiB, beyond the CPU's caches, as on a replica with millions of transfers).
func BenchmarkTransferFilter(b *testing.B) {
	ids, absent := make([]string, 4<<20), make([]string, 1<<20)
	for i := range ids {
		ids[i] = fmt.Sprintf("transfer-%010d", i)
	}
	for i := range absent {
		absent[i] = fmt.Sprintf("absent-%010d", i)
	}
	b.Run("add", func(b *testing.B) {
		var f *transferFilter
		for i := range b.N {
			if i%len(ids) == 0 { // a new filter for each pass, so that it never grows
				b.StopTimer()
				f = newTransferFilter(len(ids))
				b.StartTimer()
			}
			f.add(ids[i%len(ids)])
		}
	})
	b.Run("lookup", func(b *testing.B) {
		f := newTransferFilter(len(ids))
		for _, id := range ids {
			f.add(id)
		}
		b.ResetTimer()
		for i := range b.N {
			f.mayContain(absent[i%len(absent)])
		}
	})
}
