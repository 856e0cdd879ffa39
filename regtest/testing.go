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
