package systemtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// BenchmarkBackupRestoreThroughTheCluster times a backup and a restore of a state of about 1 GiB
// (a backup file of BANKD_RESTORE_BENCH_MB, default 1024, give or take a few percent) end to end, on real processes: transfers carrying 16
// metadata entries of 320 random bytes each are written through Raft until the leader's store
// state machine holds the size asked (on disk, compressed); `bankctl cluster snapshot save` takes the backup; a new three-node
// cluster is restored from it with `bankctl cluster snapshot restore` (upload, check, raft.Restore
// on the leader, a snapshot install on each follower), and the time runs until every node
// reports the saved state hash. The figures go to the benchmark's metrics.
func BenchmarkBackupRestoreThroughTheCluster(b *testing.B) {
	mb := 1024
	if v := os.Getenv("BANKD_RESTORE_BENCH_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("BANKD_RESTORE_BENCH_MB=%q: want a positive whole number", v)
		}
		mb = n
	}
	// A large log per node is the point; snapshots are left to the defaults.
	src := startCluster(b, testcluster.Spec{})
	_, cl := leaderClient(b, src)
	createAccount(b, cl, "reserve", asset, false)
	createAccount(b, cl, "fat", liability, false)

	fill := time.Now()
	transfers := 0
	store := filepath.Join(src.Nodes[0].DataDir, "fsm")
	// The store on disk holds its write-ahead log and not yet compacted tables too: a backup is
	// about 0.77 of it here (801 MiB from 1035 MiB), so fill to 1.3 times the size asked.
	for dirSize(b, store) < int64(mb)<<20*13/10 {
		batch := make([]*bankdv1.Transfer, 0, 500)
		for range cap(batch) {
			t := xfer(uniqueID("fat", transfers), "reserve", "fat", 1)
			t.Metadata = randomMetadata(b)
			batch = append(batch, t)
			transfers++
		}
		if _, err := cl.Ledger.CreateTransfers(ctxFor(b, time.Minute), connect.NewRequest(&bankdv1.CreateTransfersRequest{Transfers: batch})); err != nil {
			b.Fatalf("write %d transfers: %v", transfers, err)
		}
	}
	fmt.Printf("filled: %d transfers of ~5 KiB in %s; n1's state machine %d MiB\n", transfers, time.Since(fill).Round(time.Second), dirSize(b, store)>>20)

	for i := 0; i < b.N; i++ {
		file := filepath.Join(b.TempDir(), "bench.backup")
		start := time.Now()
		if out, err := bankctlOn(src, 0, testcluster.AdminToken, "cluster", "snapshot", "save", file); err != nil {
			b.Fatalf("save: %v\n%s", err, out)
		}
		saved := time.Since(start)
		st, err := os.Stat(file)
		if err != nil {
			b.Fatal(err)
		}
		hash, err := src.Client(0, testcluster.AdminToken).Cluster.StateHash(ctxFor(b, time.Minute), connect.NewRequest(&bankdv1.StateHashRequest{}))
		if err != nil {
			b.Fatal(err)
		}

		dst := startCluster(b, testcluster.Spec{})
		start = time.Now()
		if out, err := bankctlOn(dst, 0, testcluster.AdminToken, "cluster", "snapshot", "restore", file); err != nil {
			b.Fatalf("restore: %v\n%s", err, out)
		}
		uploaded := time.Since(start)
		waitFor(b, 10*time.Minute, "every node of the new cluster to report the saved state hash", func() bool {
			for j := range dst.Nodes {
				resp, err := dst.Client(j, testcluster.AdminToken).Cluster.StateHash(ctxFor(b, time.Minute), connect.NewRequest(&bankdv1.StateHashRequest{}))
				if err != nil || resp.Msg.Sha256 != hash.Msg.Sha256 {
					return false
				}
			}
			return true
		})
		restored := time.Since(start)
		b.ReportMetric(float64(st.Size())/(1<<20), "MiB")
		b.ReportMetric(saved.Seconds(), "save-s")
		b.ReportMetric(uploaded.Seconds(), "leader-restore-s")
		b.ReportMetric(restored.Seconds(), "all-nodes-s")
		fmt.Printf("backup of %d MiB: save %s; restore on the leader %s; every node at the saved hash after %s\n",
			st.Size()>>20, saved.Round(100*time.Millisecond), uploaded.Round(100*time.Millisecond), restored.Round(100*time.Millisecond))
	}
}

// randomMetadata is 16 entries of a 64-byte key and a 256-byte value, hex of random bytes so that
// the store cannot compress them away: the largest metadata a transfer may carry.
func randomMetadata(b *testing.B) map[string]string {
	m := make(map[string]string, 16)
	buf := make([]byte, 160)
	for k := range 16 {
		if _, err := rand.Read(buf); err != nil {
			b.Fatal(err)
		}
		key := fmt.Sprintf("k%02d-", k) + hex.EncodeToString(buf[:30])
		m[key[:64]] = hex.EncodeToString(buf[32:160])
	}
	return m
}
