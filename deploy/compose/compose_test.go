package compose

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
)

// Bounds of the test. The whole run takes about a minute on a 2-core machine once the images
// exist; clusterBudget bounds everything from `up` to the last check.
const (
	clusterBudget   = 4 * time.Minute
	teardownTimeout = 2 * time.Minute
	callTimeout     = 3 * time.Second
	pollInterval    = 250 * time.Millisecond
	// Blocks chain-setup mines (docker-compose.yml).
	setupBlocks  = 500
	logTailLines = "150"
)

var nodeIDs = []string{"n1", "n2", "n3"}

// The images docker-compose.yml runs, as `make images` tags them.
var images = []string{"bankd/bankd:latest", "bankd/btcd:latest", "bankd/lnd:latest"}

// TestComposeClusterElectsNewLeaderAfterLeaderContainerIsKilled brings docker-compose.yml up
// with fresh secrets, waits for a leader, for the leader to follow btcd and to reach every lnd
// of the pool, moves money through the API, kills the leader's container and checks that the
// other two elect a leader and keep serving: an earlier transfer replays, a new one posts, and
// the balances are what the transfers make them.
func TestComposeClusterElectsNewLeaderAfterLeaderContainerIsKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Docker compose cluster; not in -short")
	}
	compose := requireDocker(t)
	start := time.Now()
	c := upCluster(t, compose)
	ctx, cancel := context.WithTimeout(context.Background(), clusterBudget)
	defer cancel()

	leader := c.waitForLeader(ctx, nodeIDs)
	t.Logf("leader %s after %s", leader, time.Since(start).Round(time.Millisecond))
	follower := other(nodeIDs, leader)[0]

	// Writes through a follower are forwarded to the leader.
	for _, a := range []*bankdv1.Account{
		{Id: "reserve", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET},
		{Id: "alice", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true},
		{Id: "bob", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY, NonNegative: true},
	} {
		c.createAccount(ctx, follower, a)
	}
	c.transfer(ctx, follower, "t1", "reserve", "alice", 100_000)
	c.transfer(ctx, leader, "t2", "alice", "bob", 30_000)
	c.requirePosted(ctx, follower, map[string]int64{"reserve": 100_000, "alice": 70_000, "bob": 30_000})

	// The leader follows the compose btcd and drives the compose lnd pool.
	c.waitFor(ctx, fmt.Sprintf("the leader to follow btcd past height %d", setupBlocks), func(ctx context.Context) (bool, error) {
		r, err := c.clients[leader].Chain.GetChainStatus(ctx, connect.NewRequest(&bankdv1.GetChainStatusRequest{}))
		if err != nil {
			return false, err
		}
		return r.Msg.GetTip().GetHeight() >= setupBlocks, fmt.Errorf("tip %d", r.Msg.GetTip().GetHeight())
	})
	c.waitFor(ctx, "the leader to reach the three pool lnd, synced to the chain", func(ctx context.Context) (bool, error) {
		r, err := c.clients[leader].Lightning.ListNodes(ctx, connect.NewRequest(&bankdv1.ListLndNodesRequest{}))
		if err != nil {
			return false, err
		}
		var seen []string
		for _, n := range r.Msg.GetNodes() {
			if n.GetReachable() && n.GetSyncedToChain() && n.GetPubkey() != "" {
				seen = append(seen, n.GetId())
			}
		}
		return len(seen) == 3, fmt.Errorf("healthy: %v of %d", seen, len(r.Msg.GetNodes()))
	})
	t.Logf("chain and lnd pool followed after %s", time.Since(start).Round(time.Millisecond))

	killed := time.Now()
	c.kill(ctx, leader)
	survivors := other(nodeIDs, leader)
	next := c.waitForLeader(ctx, survivors)
	t.Logf("killed %s; %s leads %s later", leader, next, time.Since(killed).Round(time.Millisecond))

	// A retry of a transfer made before the kill is answered with its first result; a new one
	// posts; both survivors agree on the balances.
	if r := c.transfer(ctx, survivors[0], "t2", "alice", "bob", 30_000); !r.GetReplayed() {
		t.Errorf("transfer t2 sent again after the failover was applied again: %v", r)
	}
	c.transfer(ctx, survivors[1], "t3", "alice", "bob", 20_000)
	want := map[string]int64{"reserve": 100_000, "alice": 50_000, "bob": 50_000}
	for _, n := range survivors {
		c.requirePosted(ctx, n, want)
	}
	t.Logf("whole run %s", time.Since(start).Round(time.Millisecond))
}

// requireDocker returns the compose command (docker-compose, or the `docker compose` plugin),
// skipping the test when Docker or compose is missing, or failing it when
// BANKD_REQUIRE_DOCKER=1 (make test), as it does when the images are missing.
func requireDocker(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		skipOrFail(t, "docker info failed (is Docker running?): %v\n%s", err, out)
	}
	var compose []string
	if _, err := exec.LookPath("docker-compose"); err == nil {
		compose = []string{"docker-compose"}
	} else if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		compose = []string{"docker", "compose"}
	} else {
		skipOrFail(t, "neither docker-compose nor the docker compose plugin is installed")
	}
	for _, img := range images {
		if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", img).CombinedOutput(); err != nil {
			skipOrFail(t, "image %s is missing (make images builds it): %v\n%s", img, err, bytes.TrimSpace(out))
		}
	}
	return compose
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("BANKD_REQUIRE_DOCKER") == "1" {
		t.Fatalf("BANKD_REQUIRE_DOCKER=1: "+format, args...)
	}
	t.Skipf(format, args...)
}

// cluster is one compose project of docker-compose.yml.
type cluster struct {
	t       *testing.T
	compose []string // the compose command and its project flags
	clients map[string]*apiclient.Clients
}

// upCluster makes fresh secrets in a temporary directory, brings the compose file up under a
// project name of its own on a subnet and host ports of its own, and registers the teardown
// (logs first when the test failed, then `down -v`) before anything is started.
func upCluster(t *testing.T, compose []string) *cluster {
	t.Helper()
	dir := t.TempDir()
	suffix := randomHex(t, 4)
	project := "bankdtest" + suffix
	subnetOctet, _ := strconv.ParseUint(suffix[:2], 16, 8)
	ports, err := clusterhcl.FreePorts(len(nodeIDs))
	if err != nil {
		t.Fatal(err)
	}
	var portList []string
	for _, p := range ports {
		portList = append(portList, strconv.Itoa(p))
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	initCmd := exec.CommandContext(ctx, "./init.sh", dir)
	initCmd.Env = append(os.Environ(),
		fmt.Sprintf("BANKD_SUBNET_PREFIX=10.213.%d", subnetOctet),
		"BANKD_API_PORTS="+strings.Join(portList, " "))
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("init.sh: %v\n%s", err, out)
	}

	c := &cluster{
		t:       t,
		compose: append(append([]string(nil), compose...), "--env-file", filepath.Join(dir, ".env"), "-f", "docker-compose.yml", "-p", project),
		clients: map[string]*apiclient.Clients{},
	}
	t.Cleanup(c.teardown)

	hc, scheme, err := apiclient.ForCluster(filepath.Join(dir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(filepath.Join(dir, "tokens", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range nodeIDs {
		c.clients[id] = apiclient.New(hc, fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[i]), strings.TrimSpace(string(token)))
	}

	upCtx, upCancel := context.WithTimeout(context.Background(), clusterBudget)
	defer upCancel()
	started := time.Now()
	if out, err := c.run(upCtx, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	t.Logf("project %s up in %s", project, time.Since(started).Round(time.Millisecond))
	return c
}

// teardown prints the containers' logs when the test failed, then removes the project's
// containers, network and volumes, whatever happened before.
func (c *cluster) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
	defer cancel()
	if c.t.Failed() {
		if out, err := c.run(ctx, "ps", "-a"); err == nil {
			c.t.Logf("containers:\n%s", out)
		}
		out, err := c.run(ctx, "logs", "--no-color", "--tail", logTailLines)
		c.t.Logf("container logs (last %s lines each; err %v):\n%s", logTailLines, err, out)
	}
	// lnd ignores SIGTERM while its btcd is gone: a short stop timeout, then SIGKILL.
	if out, err := c.run(ctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		c.t.Errorf("compose down: %v\n%s", err, out)
	}
}

func (c *cluster) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.compose[0], append(c.compose[1:], args...)...)
	return cmd.CombinedOutput()
}

// kill SIGKILLs a node's container, as a crash of its machine would.
func (c *cluster) kill(ctx context.Context, node string) {
	c.t.Helper()
	out, err := c.run(ctx, "ps", "-q", node)
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" {
		c.t.Fatalf("container of %s: %v\n%s", node, err, out)
	}
	if out, err := exec.CommandContext(ctx, "docker", "kill", id).CombinedOutput(); err != nil {
		c.t.Fatalf("docker kill %s (%s): %v\n%s", node, id, err, out)
	}
}

// waitFor polls cond until it holds, failing the test with cond's last error when ctx ends.
func (c *cluster) waitFor(ctx context.Context, what string, cond func(context.Context) (bool, error)) {
	c.t.Helper()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		callCtx, cancel := context.WithTimeout(ctx, callTimeout)
		ok, err := cond(callCtx)
		cancel()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("gave up waiting for %s: %v (last: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// waitForLeader waits until every node of nodes names the same leader, one of nodes.
func (c *cluster) waitForLeader(ctx context.Context, nodes []string) string {
	c.t.Helper()
	var leader string
	c.waitFor(ctx, fmt.Sprintf("a leader among %v", nodes), func(ctx context.Context) (bool, error) {
		leader = ""
		for _, n := range nodes {
			r, err := c.clients[n].Cluster.Leader(ctx, connect.NewRequest(&bankdv1.LeaderRequest{}))
			if err != nil {
				return false, fmt.Errorf("%s: %w", n, err)
			}
			got := r.Msg.GetLeaderId()
			if got == "" || (leader != "" && got != leader) {
				return false, fmt.Errorf("%s says the leader is %q, another said %q", n, got, leader)
			}
			leader = got
		}
		for _, n := range nodes {
			if n == leader {
				return true, nil
			}
		}
		return false, fmt.Errorf("the nodes still name %s", leader)
	})
	return leader
}

// retryable reports whether a write may be sent again: the node could not be reached or had
// no leader to hand it to. Every write of this test is idempotent (transfers by id; accounts
// are checked for AlreadyExists).
func retryable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeAborted:
		return true
	}
	return false
}

func (c *cluster) createAccount(ctx context.Context, node string, a *bankdv1.Account) {
	c.t.Helper()
	tries := 0
	c.waitFor(ctx, "account "+a.Id+" created", func(ctx context.Context) (bool, error) {
		tries++
		_, err := c.clients[node].Ledger.CreateAccount(ctx, connect.NewRequest(&bankdv1.CreateAccountRequest{Account: a}))
		switch {
		case err == nil, tries > 1 && connect.CodeOf(err) == connect.CodeAlreadyExists:
			return true, nil
		case retryable(err):
			return false, err
		}
		c.t.Fatalf("create account %s through %s: %v", a.Id, node, err)
		return false, err
	})
}

func (c *cluster) transfer(ctx context.Context, node, id, from, to string, amount int64) *bankdv1.CreateTransferResponse {
	c.t.Helper()
	var resp *bankdv1.CreateTransferResponse
	c.waitFor(ctx, "transfer "+id, func(ctx context.Context) (bool, error) {
		r, err := c.clients[node].Ledger.CreateTransfer(ctx, connect.NewRequest(&bankdv1.CreateTransferRequest{
			Transfer: &bankdv1.Transfer{Id: id, DebitAccountId: from, CreditAccountId: to, Amount: amount, Currency: "BTC"},
		}))
		switch {
		case err == nil:
			resp = r.Msg
			return true, nil
		case retryable(err):
			return false, err
		}
		c.t.Fatalf("transfer %s through %s: %v", id, node, err)
		return false, err
	})
	return resp
}

// requirePosted checks posted balances with linearizable reads through node.
func (c *cluster) requirePosted(ctx context.Context, node string, want map[string]int64) {
	c.t.Helper()
	for id, posted := range want {
		var got int64
		c.waitFor(ctx, "a read of "+id+" through "+node, func(ctx context.Context) (bool, error) {
			r, err := c.clients[node].Ledger.GetAccount(ctx, connect.NewRequest(&bankdv1.GetAccountRequest{
				Id: id, Consistency: bankdv1.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE,
			}))
			if err != nil {
				if !retryable(err) {
					c.t.Fatalf("get account %s through %s: %v", id, node, err)
				}
				return false, err
			}
			got = r.Msg.GetAccount().GetBalance().GetPosted()
			return true, nil
		})
		if got != posted {
			c.t.Errorf("%s (read through %s): posted %d, want %d", id, node, got, posted)
		}
	}
}

func other(nodes []string, not string) []string {
	var out []string
	for _, n := range nodes {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
