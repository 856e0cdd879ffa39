package fsm

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// BenchmarkRestore1GB measures a backup's way back: a state of BANKD_RESTORE_BENCH_MB MiB
// (default 1024) of 1 KiB records is saved to a file, checked whole (VerifySnapshot, as the
// leader does before restoring) and restored into another state machine (Restore, as every node
// does). It reports each step's seconds and MB/s; raft.Restore adds one copy of the file into
// the snapshot store and, on followers, the transfer over the network.
func BenchmarkRestore1GB(b *testing.B) {
	mb := 1024
	if v := os.Getenv("BANKD_RESTORE_BENCH_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("BANKD_RESTORE_BENCH_MB=%q: want a positive whole number", v)
		}
		mb = n
	}
	src, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	value := make([]byte, 1024)
	batch := src.db.NewBatch()
	for i := 0; i < mb*1024; i++ {
		rand.Read(value[:32]) // some entropy so the store does not compress to nothing
		if err := batch.Set([]byte(fmt.Sprintf("a bench-%09d", i)), value, nil); err != nil {
			b.Fatal(err)
		}
		if batch.Len() > 8<<20 {
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			batch = src.db.NewBatch()
		}
	}
	if err := batch.Set(keyApplied, encodeUint64(1), nil); err != nil {
		b.Fatal(err)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "state.snap")
	for i := 0; i < b.N; i++ {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		info, err := src.Backup(f)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
		saved := time.Since(start)

		start = time.Now()
		f, _ = os.Open(path)
		if _, err := VerifySnapshot(f); err != nil {
			b.Fatal(err)
		}
		f.Close()
		verified := time.Since(start)

		dst, err := Open(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		f, _ = os.Open(path)
		start = time.Now()
		if err := dst.Restore(f); err != nil {
			b.Fatal(err)
		}
		restored := time.Since(start)
		dst.Close()
		mbs := float64(info.Bytes) / (1 << 20)
		b.ReportMetric(mbs, "MiB")
		b.ReportMetric(saved.Seconds(), "save-s")
		b.ReportMetric(verified.Seconds(), "verify-s")
		b.ReportMetric(restored.Seconds(), "restore-s")
		b.ReportMetric(mbs/restored.Seconds(), "restore-MiB/s")
	}
}
