package hosts

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
	"github.com/bankd/bankd/node"
)

func requireHosts(t *testing.T) {
	t.Helper()
	if err := Supported(); err != nil {
		t.Skipf("hosts unsupported here: %v", err)
	}
}

func bankdBin(t *testing.T) string {
	t.Helper()
	bin, _ := filepath.Abs(testcluster.BankdBin())
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no bankd binary at %s (run `make build` or set BANKD_BIN)", bin)
	}
	return bin
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func netnsExists(t *testing.T, name string) bool {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", name).Run() == nil
}

func TestCleanupRemovesEverythingTheRunMade(t *testing.T) {
	requireHosts(t)
	c, err := Create(ctxFor(t, time.Minute), Options{Nodes: 2, Bin: bankdBin(t), Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	ns, bridge := c.Hosts[0].Netns, c.Bridge
	if !netnsExists(t, ns) || !linkExists(bridge) {
		t.Fatalf("namespace %s or bridge %s missing after Create", ns, bridge)
	}
	if err := c.Cleanup(); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	if netnsExists(t, ns) || linkExists(bridge) || linkExists(c.Hosts[0].Veth) {
		t.Fatalf("namespace %s, bridge %s or veth still present after Cleanup", ns, bridge)
	}
	if err := c.Cleanup(); err != nil {
		t.Fatalf("second cleanup: %v", err)
	}
}

func TestCleanupStaleRemovesOnlyDeadRuns(t *testing.T) {
	requireHosts(t)
	bin := bankdBin(t)
	crashed, err := Create(ctxFor(t, time.Minute), Options{Nodes: 2, Bin: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = crashed.Cleanup() })
	alive, err := Create(ctxFor(t, time.Minute), Options{Nodes: 1, Bin: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = alive.Cleanup() })
	if crashed.GatewayIP == alive.GatewayIP {
		t.Fatalf("two live runs share subnet %s", crashed.GatewayIP)
	}

	// Pretend the first run's owner died: its owner file names a process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(ownerDir, crashed.RunID+".pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CleanupStale(ctxFor(t, time.Minute), nil); err != nil {
		t.Fatalf("cleanup stale: %v", err)
	}
	if netnsExists(t, crashed.Hosts[0].Netns) || linkExists(crashed.Bridge) {
		t.Errorf("stale run %s survived CleanupStale", crashed.RunID)
	}
	if _, err := os.Stat(pidFile); err == nil {
		t.Errorf("stale owner file %s survived", pidFile)
	}
	if !netnsExists(t, alive.Hosts[0].Netns) || !linkExists(alive.Bridge) {
		t.Errorf("CleanupStale removed live run %s", alive.RunID)
	}
}

// TestFaultsOnARealCluster starts three agents in namespaces and checks that the cluster
// elects a leader through the bridge, re-elects when the leader is isolated, heals, and
// survives kill, restart, pause and resume.
func TestFaultsOnARealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster; skipped with -short")
	}
	requireHosts(t)
	dir := t.TempDir()
	c, err := Create(ctxFor(t, time.Minute), Options{Nodes: 3, Bin: bankdBin(t), Dir: dir})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if t.Failed() {
			for _, h := range c.Hosts {
				b, _ := os.ReadFile(h.LogPath)
				t.Logf("--- log of %s:\n%s", h.ID, tail(string(b), 30))
			}
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatalf("start: %v", err)
	}
	ctx := ctxFor(t, 50*time.Second)
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatalf("first election: %v", err)
	}

	var rest []int
	for i := range c.Hosts {
		if i != leader {
			rest = append(rest, i)
		}
	}
	if err := c.Partition(ctx, [][]int{{leader}, rest}); err != nil {
		t.Fatalf("partition: %v", err)
	}
	newLeader := waitFor(t, ctx, "a leader in the majority", func() int {
		if l := c.Leader(ctx); l >= 0 && l != leader {
			return l
		}
		return -1
	})
	if err := c.Heal(ctx); err != nil {
		t.Fatalf("heal: %v", err)
	}

	if err := c.Pause(newLeader); err != nil {
		t.Fatalf("pause: %v", err)
	}
	waitFor(t, ctx, "a leader while the old one is paused", func() int {
		if l := c.Leader(ctx); l >= 0 && l != newLeader {
			return l
		}
		return -1
	})
	if err := c.Resume(newLeader); err != nil {
		t.Fatalf("resume: %v", err)
	}

	if err := c.Kill(0); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if c.Running(0) {
		t.Fatal("host 0 running after Kill")
	}
	if err := c.Restart(0); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatalf("leader after restart: %v", err)
	}
	if _, err := c.StateHashes(ctx); err != nil {
		t.Fatalf("state hashes after heal: %v", err)
	}
}

func TestNetemReportsMissingKernelSupport(t *testing.T) {
	requireHosts(t)
	c, err := Create(ctxFor(t, time.Minute), Options{Nodes: 1, Bin: bankdBin(t), Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = c.Cleanup() })
	err = c.Netem(ctxFor(t, 10*time.Second), 0, 20*time.Millisecond, 1)
	switch {
	case err == ErrNetemUnsupported:
		t.Skip("kernel has no netem")
	case err != nil:
		t.Fatalf("netem: %v", err)
	}
	if err := c.ClearNetem(ctxFor(t, 10*time.Second), 0); err != nil {
		t.Fatalf("clear netem: %v", err)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, f func() int) int {
	t.Helper()
	for {
		if v := f(); v >= 0 {
			return v
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Loss puts an iptables statistic drop on the namespace's egress (no netem needed), and Heal
// takes it away with the drop rules.
func TestLossRules(t *testing.T) {
	requireHosts(t)
	ctx := ctxFor(t, time.Minute)
	c, err := Create(ctx, Options{Nodes: 2, Bin: bankdBin(t), Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = c.Cleanup() })
	rules := func(i int) string {
		out, err := run(ctx, nil, "ip", "netns", "exec", c.Hosts[i].Netns, "iptables", "-w", "-S")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if err := c.Loss(ctx, []int{0}, 0.3); err != nil {
		t.Fatalf("loss: %v", err)
	}
	if err := c.DropPairs(ctx, [][2]int{{1, 0}}); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if r := rules(0); !strings.Contains(r, "-A OUTPUT -o eth0 -m statistic --mode random --probability 0.") ||
		!strings.Contains(r, "-A INPUT -s "+c.Hosts[1].IP) {
		t.Fatalf("rules of host 0:\n%s", r)
	}
	if r := rules(1); strings.Contains(r, "statistic") || strings.Contains(r, "-A INPUT") {
		t.Fatalf("rules of host 1:\n%s", r)
	}
	if err := c.Heal(ctx); err != nil {
		t.Fatalf("heal: %v", err)
	}
	if r := rules(0); strings.Contains(r, "-A ") {
		t.Fatalf("rules left after heal:\n%s", r)
	}
	if err := c.Loss(ctx, []int{0}, 1.5); err == nil {
		t.Fatal("probability 1.5 accepted")
	}
	if err := c.DropPairs(ctx, [][2]int{{0, 0}}); err == nil {
		t.Fatal("self drop accepted")
	}
}

// The non-voters' node blocks get voter = false, and bankd's own parser reads it so.
func TestNonVotersAreWrittenVoterFalse(t *testing.T) {
	for _, nonVoters := range [][]string{nil, {"n4", "n5"}} {
		var nodes []clusterhcl.Node
		for i := range 5 {
			id := fmt.Sprintf("n%d", i+1)
			nodes = append(nodes, clusterhcl.Node{ID: id, Region: "ns-" + id, RaftAddr: fmt.Sprintf("10.0.0.%d:7001", i+1),
				GossipAddr: fmt.Sprintf("10.0.0.%d:7101", i+1), APIAddr: fmt.Sprintf("10.0.0.%d:7201", i+1), DataDir: "/tmp/" + id,
				NonVoter: slices.Contains(nonVoters, id)})
		}
		out := clusterhcl.Render(clusterhcl.Spec{Name: "t", Plaintext: true}, nodes)
		cfg, err := node.ParseConfig(out, "cluster.hcl")
		if err != nil {
			t.Fatalf("bankd refuses the config: %v\n%s", err, out)
		}
		for _, nc := range cfg.Nodes {
			if want := slices.Contains(nonVoters, nc.ID); nc.NonVoter != want {
				t.Fatalf("%s: non-voter %v, want %v\n%s", nc.ID, nc.NonVoter, want, out)
			}
		}
	}
}
