package regtest

import (
	"context"
	"os"
	"testing"
	"time"
)

// RequireBtcd returns the btcd binary for a test. When there is none, it skips the test,
// unless BANKD_REQUIRE_BTCD is set, in which case it fails it. It also skips in -short mode:
// these tests run a real node.
func RequireBtcd(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("regtest: starts a real btcd; skipped in -short mode")
	}
	path, err := BtcdPath()
	if err != nil {
		if os.Getenv(EnvRequireBtcd) != "" {
			t.Fatalf("%v (%s is set, so this is a failure)", err, EnvRequireBtcd)
		}
		t.Skipf("%v (set %s=1 to fail instead of skipping)", err, EnvRequireBtcd)
	}
	return path
}

// StartTest starts btcd for a test (see [RequireBtcd] for when it skips instead) and stops it
// when the test ends. Empty opts.DataDir means t.TempDir(); when the test fails, the end of
// btcd's log is written to the test log.
func StartTest(t testing.TB, opts Options) *Btcd {
	t.Helper()
	if opts.BtcdPath == "" {
		opts.BtcdPath = RequireBtcd(t)
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("regtest: last lines of %s:\n%s", b.LogPath(), b.LogTail(40))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.Stop(ctx); err != nil {
			t.Errorf("regtest: stopping btcd: %v", err)
		}
	})
	return b
}

// RequireLnd returns the lnd binary for a test. When there is none, it skips the test, unless
// BANKD_REQUIRE_LND is set, in which case it fails it. It also skips in -short mode: these
// tests run real nodes.
func RequireLnd(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("regtest: starts real lnd nodes; skipped in -short mode")
	}
	path, err := LndPath()
	if err != nil {
		if os.Getenv(EnvRequireLnd) != "" {
			t.Fatalf("%v (%s is set, so this is a failure)", err, EnvRequireLnd)
		}
		t.Skipf("%v (set %s=1 to fail instead of skipping)", err, EnvRequireLnd)
	}
	return path
}

// StartLightningTest starts a Lightning network on btcd for a test (see [RequireLnd] for when
// it skips instead) and stops it when the test ends, before btcd if btcd was started first.
// Empty opts.Dir means t.TempDir(); when the test fails, the end of every node's log is
// written to the test log.
func StartLightningTest(t testing.TB, btcd *Btcd, opts LightningOptions) *Lightning {
	t.Helper()
	if opts.LndPath == "" {
		opts.LndPath = RequireLnd(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultLightningTimeout)
	defer cancel()
	lg, err := StartLightning(ctx, btcd, opts)
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range lg.Nodes() {
				t.Logf("regtest: last lines of %s:\n%s", n.LogPath(), n.LogTail(30))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := lg.Stop(ctx); err != nil {
			t.Errorf("regtest: stopping lightning: %v", err)
		}
	})
	return lg
}
