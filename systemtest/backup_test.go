package systemtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// bankctlOn runs bin/bankctl against the nodes of c, node i first, with token and returns its
// combined output.
func bankctlOn(c *testcluster.ProcCluster, i int, token string, args ...string) (string, error) {
	urls := []string{c.URL(i)}
	for j := range c.Nodes {
		if j != i {
			urls = append(urls, c.URL(j))
		}
	}
	flags := []string{"-addr", strings.Join(urls, ","), "-ca", c.CAFile, "-token", token, "-timeout", "30s"}
	cmd := exec.Command(filepath.Join(filepath.Dir(testcluster.BankdBin()), "bankctl"), append(args, flags...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestBackupRestoresIntoANewClusterWithTheSameStateHash saves a snapshot of a running cluster
// with bankctl (through a follower, which hands it to the leader's answer), checks the file,
// refuses a damaged copy, restores it into a new cluster and requires every node of the new
// cluster to report the saved state hash; the restored cluster then takes writes, and a second
// restore over its state is refused unless forced.
func TestBackupRestoresIntoANewClusterWithTheSameStateHash(t *testing.T) {
	src := startCluster(t, testcluster.Spec{Name: "source"})
	_, cl := leaderClient(t, src)
	createAccount(t, cl, "reserve", asset, false)
	createAccount(t, cl, "alice", liability, true)
	for i := range 50 {
		if _, err := cl.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer(uniqueID("b", i), "reserve", "alice", 10)})); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "source.backup")
	if out, err := bankctlOn(src, 0, testcluster.ReadToken, "cluster", "snapshot", "save", file); err == nil || !strings.Contains(out, "permission_denied") {
		t.Fatalf("a read token saved a snapshot: %v\n%s", err, out)
	}
	out, err := bankctlOn(src, 0, testcluster.AdminToken, "cluster", "snapshot", "save", file)
	if err != nil {
		t.Fatalf("save: %v\n%s", err, out)
	}
	saved := &bankdv1.SnapshotInfo{}
	inspect, err := bankctlOn(src, 0, testcluster.AdminToken, "cluster", "snapshot", "inspect", "-o", "json", file)
	if err != nil || protojson.Unmarshal([]byte(inspect), saved) != nil || saved.AppliedIndex == 0 || saved.Cluster != "source" {
		t.Fatalf("inspect: %v\n%s", err, inspect)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v, want mode 0600", st, err)
	}
	// The saved state is the cluster's at the applied index it names.
	hashes, index, err := src.StateHashes(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if index == saved.AppliedIndex && hashes[src.Nodes[0].ID] != saved.StateHash {
		t.Fatalf("saved hash %s at %d, the cluster says %v", saved.StateHash, index, hashes)
	}

	// A damaged copy is refused before anything is sent.
	damaged := filepath.Join(t.TempDir(), "damaged.backup")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-40] ^= 0xff
	if err := os.WriteFile(damaged, b, 0o600); err != nil {
		t.Fatal(err)
	}

	dst := startCluster(t, testcluster.Spec{Name: "restored"})
	if out, err := bankctlOn(dst, 1, testcluster.AdminToken, "cluster", "snapshot", "restore", damaged); err == nil || !strings.Contains(out, "checksum") {
		t.Fatalf("restore of a damaged file: %v\n%s", err, out)
	}
	if out, err := bankctlOn(dst, 1, testcluster.AdminToken, "cluster", "snapshot", "restore", file); err != nil || !strings.Contains(out, "restored") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	waitFor(t, 30*time.Second, "every restored node to report the saved state hash", func() bool {
		for i := range dst.Nodes {
			resp, err := dst.Client(i, testcluster.AdminToken).Cluster.StateHash(ctxFor(t, 5*time.Second), connect.NewRequest(&bankdv1.StateHashRequest{}))
			if err != nil || resp.Msg.AppliedIndex != saved.AppliedIndex || resp.Msg.Sha256 != saved.StateHash {
				return false
			}
		}
		return true
	})

	_, dcl := leaderClient(t, dst)
	if b := balance(t, dcl, "alice"); b.Posted != 500 {
		t.Fatalf("alice holds %d in the restored cluster, want 500", b.Posted)
	}
	if _, err := dcl.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer("after-restore", "reserve", "alice", 1)})); err != nil {
		t.Fatalf("a write after the restore: %v", err)
	}
	// A retry of a transfer made before the backup is recognised: idempotency survived.
	if r, err := dcl.Ledger.CreateTransfer(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateTransferRequest{Transfer: xfer(uniqueID("b", 0), "reserve", "alice", 10)})); err != nil || !r.Msg.Replayed {
		t.Fatalf("a retry of a backed-up transfer: %v %v, want it replayed", r, err)
	}
	requireSameStateHash(t, dst)

	if out, err := bankctlOn(dst, 0, testcluster.AdminToken, "cluster", "snapshot", "restore", file); err == nil || !strings.Contains(out, "already holds state") {
		t.Fatalf("a restore over a cluster with state: %v\n%s", err, out)
	}
}
