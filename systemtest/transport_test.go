package systemtest

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/bankd/bankd/clustertls"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
	"github.com/bankd/bankd/node"
)

// TestRogueRaftPeersAreRefused attacks the Raft ports of a real three-process TLS cluster with
// hashicorp/raft's own transport, the way a host on the network would: without a certificate,
// with a certificate from another CA, with an expired one from the cluster CA, with a client
// certificate, and with n2's real certificate speaking as n3. Each sends a RequestVote and an
// AppendEntries whose term is far ahead: had any got through, every node would have jumped to
// that term. None does: every attempt fails, terms stay put, the refusals are counted, and the
// cluster keeps serving with equal replicas. A control — n2's certificate speaking as n2 with a
// stale term — gets an answer, so the refusals are the identity checks at work, not a broken
// attacker.
func TestRogueRaftPeersAreRefused(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	ctx := ctxFor(t, 2*time.Minute)
	cfg, err := node.LoadConfig(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	leader, admin := leaderClient(t, c)
	createAccount(t, admin, "reserve", bankdv1.AccountKind_ACCOUNT_KIND_ASSET, false)
	createAccount(t, admin, "alice", liability, true)
	if _, err := admin.Ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{
		Transfers: []*bankdv1.Transfer{xfer("t-before", "reserve", "alice", 500)},
	})); err != nil {
		t.Fatal(err)
	}
	statuses := clusterStatus(t, c)
	var maxTerm uint64
	for _, st := range statuses {
		maxTerm = max(maxTerm, st.Term)
	}
	forgedTerm := maxTerm + 1000

	dir := filepath.Dir(c.ConfigPath)
	ca, err := clustertls.LoadCA(filepath.Join(dir, clusterhcl.CAFile), filepath.Join(dir, clusterhcl.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	hosts := []string{"127.0.0.1"}
	otherCA, _, err := clustertls.NewCA(cfg.Name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := otherCA.IssueNode(cfg.Name, "n2", hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.IssueNodeAt(cfg.Name, "n2", hosts, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueClient(cfg.Name, "n2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stolenN2, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls", "n2.crt"), filepath.Join(dir, "tls", "n2.key"))
	if err != nil {
		t.Fatal(err)
	}
	n2, _ := cfg.Node("n2")
	n3, _ := cfg.Node("n3")
	n2RaftID := statuses[1].RaftId
	n3RaftID := statuses[2].RaftId

	attackers := []struct {
		name string
		cert *tls.Certificate // nil: plain TCP
		id   string
		addr string
	}{
		{"no certificate (plain TCP)", nil, n3RaftID, n3.RaftAddr},
		{"another CA's certificate", pair(t, foreign), n2RaftID, n2.RaftAddr},
		{"an expired certificate", pair(t, expired), n2RaftID, n2.RaftAddr},
		{"a client certificate", pair(t, client), n2RaftID, n2.RaftAddr},
		{"n2's certificate speaking as n3", &stolenN2, n3RaftID, n3.RaftAddr},
		{"n2's certificate with n3's address", &stolenN2, n2RaftID, n3.RaftAddr},
	}
	for _, a := range attackers {
		t.Run(a.name, func(t *testing.T) {
			trans := attackTransport(t, a.cert)
			for i, target := range cfg.Nodes {
				header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(a.id), Addr: []byte(a.addr)}
				var vote raft.RequestVoteResponse
				err := trans.RequestVote(raft.ServerID(statuses[i].RaftId), raft.ServerAddress(target.RaftAddr), &raft.RequestVoteRequest{
					RPCHeader: header, Term: forgedTerm, LastLogIndex: 1 << 40, LastLogTerm: forgedTerm,
				}, &vote)
				if err == nil {
					t.Errorf("%s answered a forged RequestVote: %+v", target.ID, vote)
				}
				var app raft.AppendEntriesResponse
				err = trans.AppendEntries(raft.ServerID(statuses[i].RaftId), raft.ServerAddress(target.RaftAddr), &raft.AppendEntriesRequest{
					RPCHeader: header, Term: forgedTerm, LeaderCommitIndex: 1 << 40,
				}, &app)
				if err == nil {
					t.Errorf("%s answered a forged AppendEntries: %+v", target.ID, app)
				}
			}
		})
	}

	t.Run("control: n2's certificate as n2 is heard", func(t *testing.T) {
		trans := attackTransport(t, &stolenN2)
		var vote raft.RequestVoteResponse
		// Term 0 is stale: the node answers "no" and changes nothing.
		if err := trans.RequestVote(raft.ServerID(statuses[0].RaftId), raft.ServerAddress(cfg.Nodes[0].RaftAddr), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(n2RaftID), Addr: []byte(n2.RaftAddr)},
		}, &vote); err != nil {
			t.Fatalf("a genuine peer was not heard: %v", err)
		}
		if vote.Granted || vote.Term < maxTerm {
			t.Fatalf("stale vote request answered %+v", vote)
		}
	})

	for i, st := range clusterStatus(t, c) {
		if st.Term >= forgedTerm {
			t.Errorf("%s is at term %d: a forged message got through", c.Nodes[i].ID, st.Term)
		}
		if refused := peerRefused(t, c, i, "raft"); refused == 0 {
			t.Errorf("%s counted no refused raft peers", c.Nodes[i].ID)
		}
	}
	if _, err := admin.Ledger.CreateTransfers(ctx, connect.NewRequest(&bankdv1.CreateTransfersRequest{
		Transfers: []*bankdv1.Transfer{xfer("t-after", "reserve", "alice", 700)},
	})); err != nil {
		t.Fatalf("the cluster stopped serving: %v", err)
	}
	if got := balance(t, c.Client(leader, testcluster.AdminToken), "alice").Posted; got != 1200 {
		t.Errorf("alice holds %d, want 1200", got)
	}
	requireSameStateHash(t, c)
}

// TestGossipIntruderCannotRedirectForwardedCalls runs a gossip member next to a real
// three-process cluster that holds the cluster's gossip key, names itself after no node of
// cluster.hcl (and, in a second life, after n3 from the wrong address), and advertises its own
// HTTP server as the API of a leader. Another member without the key cannot even join. No
// node lists the intruder, every write sent to a follower still reaches the real leader, and
// the intruder's server never sees a call or a token.
func TestGossipIntruderCannotRedirectForwardedCalls(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	ctx := ctxFor(t, 2*time.Minute)
	cfg, err := node.LoadConfig(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var stolen atomic.Int64
	trap := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}), ReadHeaderTimeout: 5 * time.Second}
	trapLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = trap.Serve(trapLn) }()
	t.Cleanup(func() { _ = trap.Close() })

	keyLine, err := os.ReadFile(cfg.Gossip.KeyringFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(keyLine)))
	if err != nil {
		t.Fatal(err)
	}
	n1, _ := cfg.Node("n1")
	seeds := []string{n1.GossipAddr}

	// Without the key nothing gets in.
	wrongKey := make([]byte, 32)
	outsider := gossipIntruder(t, "n9", wrongKey, trapLn.Addr().String())
	if n, err := outsider.Join(seeds); err == nil && n > 0 {
		t.Errorf("a member with the wrong key joined %d nodes", n)
	}
	_ = outsider.Shutdown()

	// With the key: a stranger's name, then a real node's name from the wrong address.
	for _, name := range []string{"evil", "n3"} {
		intruder := gossipIntruder(t, name, key, trapLn.Addr().String())
		_, _ = intruder.Join(seeds) // the push-pull may be refused; its alive message is dropped either way
		leader, _ := leaderClient(t, c)
		follower := followerOf(c, leader)
		cl := c.Client(follower, testcluster.AdminToken)
		for i := range 5 {
			createAccount(t, cl, fmt.Sprintf("acct-%s-%d", name, i), liability, true)
		}
		for i := range c.Nodes {
			members, err := c.Client(i, testcluster.AdminToken).Cluster.Members(ctx, connect.NewRequest(&bankdv1.MembersRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range members.Msg.Members {
				if m.ApiAddr == trapLn.Addr().String() || (m.NodeId == "evil") {
					t.Errorf("%s lists the intruder: %+v", c.Nodes[i].ID, m)
				}
			}
		}
		_ = intruder.Shutdown()
	}
	if n := stolen.Load(); n != 0 {
		t.Fatalf("the intruder received %d forwarded calls", n)
	}
	refused := 0
	for i := range c.Nodes {
		refused += peerRefused(t, c, i, "gossip")
	}
	if refused == 0 {
		t.Error("no node counted a refused gossip member")
	}
	requireSameStateHash(t, c)
}

// gossipIntruder starts a memberlist member on loopback that advertises itself as a leader
// whose API is at apiAddr.
func gossipIntruder(t *testing.T, name string, key []byte, apiAddr string) *memberlist.Memberlist {
	t.Helper()
	ports, err := clusterhcl.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(map[string]any{
		"raft_id": name + "-0badc0de", "raft_addr": apiAddr, "api_addr": apiAddr,
		"region": "r1", "version": "evil", "has_state": true, "cmd_version": 1,
	})
	mc := memberlist.DefaultLANConfig()
	mc.Name = name
	mc.BindAddr, mc.AdvertiseAddr = "127.0.0.1", "127.0.0.1"
	mc.BindPort, mc.AdvertisePort = ports[0], ports[0]
	mc.SecretKey = key
	mc.Delegate = staticMeta(meta)
	mc.LogOutput = io.Discard
	mc.TCPTimeout = time.Second
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	return ml
}

type staticMeta []byte

func (m staticMeta) NodeMeta(int) []byte                  { return m }
func (staticMeta) NotifyMsg([]byte)                       {}
func (staticMeta) GetBroadcasts(int, int) [][]byte        { return nil }
func (staticMeta) LocalState(bool) []byte                 { return nil }
func (staticMeta) MergeRemoteState(buf []byte, join bool) {}

// attackTransport is hashicorp/raft's network transport dialling with cert (nil: plain TCP),
// accepting any server certificate: the attacker only wants to be heard.
func attackTransport(t *testing.T, cert *tls.Certificate) *raft.NetworkTransport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &attackStream{Listener: ln, cert: cert}, MaxPool: 1, Timeout: 3 * time.Second,
	})
	t.Cleanup(func() { _ = trans.Close() })
	return trans
}

type attackStream struct {
	net.Listener
	cert *tls.Certificate
}

func (s *attackStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	if s.cert == nil {
		return d.Dial("tcp", string(addr))
	}
	return tls.DialWithDialer(d, "tcp", string(addr), &tls.Config{
		Certificates:       []tls.Certificate{*s.cert},
		InsecureSkipVerify: true, // the attacker does not care who answers
		MinVersion:         tls.VersionTLS13,
	})
}

func pair(t *testing.T, l clustertls.Leaf) *tls.Certificate {
	t.Helper()
	p, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

func clusterStatus(t *testing.T, c *testcluster.ProcCluster) []*bankdv1.StatusResponse {
	t.Helper()
	out := make([]*bankdv1.StatusResponse, len(c.Nodes))
	for i := range c.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := c.Client(i, testcluster.AdminToken).Cluster.Status(ctx, connect.NewRequest(&bankdv1.StatusRequest{}))
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", c.Nodes[i].ID, err)
		}
		out[i] = res.Msg
	}
	return out
}

var refusedLine = regexp.MustCompile(`(?m)^bankd_peer_refused_total\{[^}]*transport="(\w+)"[^}]*\} (\d+)`)

// peerRefused reads node i's bankd_peer_refused_total for transport from /metrics.
func peerRefused(t *testing.T, c *testcluster.ProcCluster, i int, transport string) int {
	t.Helper()
	resp, err := c.HTTPClient().Get(c.URL(i) + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", c.Nodes[i].ID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, m := range refusedLine.FindAllStringSubmatch(string(body), -1) {
		if m[1] == transport {
			n, _ := strconv.Atoi(m[2])
			total += n
		}
	}
	return total
}

// TestGossipKeyRotatesWithoutARestart rotates the gossip key of a real three-process cluster the
// way the operations guide says — add the new key, make it primary, drop the old one, a SIGHUP
// to every node after each edit — and then restarts n3, which now holds only the new key. It
// rejoins and every node sees all three alive: the running nodes took the new key without a
// restart, and the cluster kept serving throughout.
func TestGossipKeyRotatesWithoutARestart(t *testing.T) {
	c := startCluster(t, testcluster.Spec{})
	ctx := ctxFor(t, 2*time.Minute)
	cfg, err := node.LoadConfig(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(cfg.Gossip.KeyringFile)
	if err != nil {
		t.Fatal(err)
	}
	oldKey := strings.TrimSpace(string(old))
	newKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	_, admin := leaderClient(t, c)
	createAccount(t, admin, "reserve", bankdv1.AccountKind_ACCOUNT_KIND_ASSET, false)

	reloads := 0
	for i, keyring := range []string{oldKey + "\n" + newKey, newKey + "\n" + oldKey, newKey} {
		if err := os.WriteFile(cfg.Gossip.KeyringFile, []byte(keyring+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		reloads++
		for n := range c.Nodes {
			if err := c.Reload(n); err != nil {
				t.Fatal(err)
			}
			waitLog(t, c, n, "gossip keyring reloaded", reloads)
		}
		_, cl := leaderClient(t, c)
		createAccount(t, cl, fmt.Sprintf("step-%d", i), liability, true)
	}

	if err := c.Kill(2); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(2); err != nil {
		t.Fatal(err)
	}
	for n := range c.Nodes {
		waitAllAlive(t, ctx, c, n)
	}
	leader, _ := leaderClient(t, c)
	if err := c.WaitApplied(ctx, appliedIndex(t, c.Client(leader, testcluster.AdminToken))); err != nil {
		t.Fatal(err)
	}
	createAccount(t, c.Client(2, testcluster.AdminToken), "after-restart", liability, true)
	requireSameStateHash(t, c)
}

// waitLog waits until node i's log holds what at least count times.
func waitLog(t *testing.T, c *testcluster.ProcCluster, i int, what string, count int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(c.Nodes[i].LogPath)
		if err == nil && strings.Count(string(b), what) >= count {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q %d times:\n%s", c.Nodes[i].ID, what, count, c.LogTail(i, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAllAlive waits until node i's gossip sees every node of the cluster alive.
func waitAllAlive(t *testing.T, ctx context.Context, c *testcluster.ProcCluster, i int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		alive := 0
		res, err := c.Client(i, testcluster.AdminToken).Cluster.Members(ctx, connect.NewRequest(&bankdv1.MembersRequest{}))
		if err == nil {
			for _, m := range res.Msg.Members {
				if m.GossipState == "alive" {
					alive++
				}
			}
		}
		if alive == len(c.Nodes) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s sees %d of %d nodes alive (err %v):\n%s", c.Nodes[i].ID, alive, len(c.Nodes), err, c.LogTail(i, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
