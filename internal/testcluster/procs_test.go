package testcluster_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/internal/testcluster"
)

// fakeBankd writes an executable that logs its name and arguments and exits with code.
func fakeBankd(t *testing.T, name, code string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	script := "#!/bin/sh\necho \"" + name + " $*\"\nexit " + code + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A node restarts on the binary SetBin gave it, with the same config and node id; WaitExit
// reports the exit status of a process that stopped by itself.
func TestSetBinAndWaitExit(t *testing.T) {
	oldBin, newBin := fakeBankd(t, "bankd-old", "3"), fakeBankd(t, "bankd-new", "2")
	c, err := testcluster.LaunchProcs(testcluster.Spec{Size: 1, Plaintext: true}, testcluster.ProcOptions{Bin: oldBin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code, err := c.WaitExit(ctx, 0); err != nil || code != 3 {
		t.Fatalf("old binary: exit %d, %v; want 3", code, err)
	}
	if c.Running(0) || c.ExitCode(0) != 3 {
		t.Fatalf("after WaitExit: running %v, exit code %d", c.Running(0), c.ExitCode(0))
	}
	c.SetBin(0, newBin)
	if c.Bin(0) != newBin {
		t.Fatalf("Bin(0) = %s, want %s", c.Bin(0), newBin)
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	if code, err := c.WaitExit(ctx, 0); err != nil || code != 2 {
		t.Fatalf("new binary: exit %d, %v; want 2", code, err)
	}
	log := c.LogTail(0, 10)
	want := "bankd-new agent -config " + c.ConfigPath + " -node " + c.Nodes[0].ID
	if !strings.Contains(log, "bankd-old agent") || !strings.Contains(log, want) {
		t.Fatalf("log %q, want the old binary's start and then %q", log, want)
	}
	if _, err := c.WaitExit(ctx, 0); err == nil {
		t.Fatal("WaitExit on a stopped node succeeded")
	}
}
