// Package clusterhcl writes the cluster.hcl of a test cluster: one Spec (size, Raft settings,
// tokens, chain block, extra blocks) and one writer, used by every harness — the in-process
// and multi-process clusters of internal/testcluster, node/'s in-package tests and the jepsen
// hosts — so that a change to what a cluster needs (certificates, token files) lands in one
// place.
//
// It imports nothing of bankd but the leaf package clustertls, so that package node's own tests
// can use it without an import cycle. It only writes files under the directory it is given and only picks loopback ports.
package clusterhcl

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bankd/bankd/clustertls"
)

// Tokens of every test cluster unless a Spec names others.
const (
	AdminToken    = "test-admin-token"
	ClientToken   = "test-client-token" // the write scope: a customer-facing service's
	ReadToken     = "test-read-token"
	OperatorToken = "test-operator-token"
	SignerToken   = "test-signer-token" // the signer scope: signerd's
)

// Spec describes a test cluster. Zero fields take the defaults named on each.
type Spec struct {
	// Name is the cluster name (default "test").
	Name string
	// Size is the number of nodes, n1..nN (default 3).
	Size int
	// Raft is the raft block. A harness fills its zero fields from its own defaults
	// (InProcessRaft, ProcessRaft) with Raft.Or; Render writes only non-zero fields.
	Raft Raft
	// Tokens is the tokens block; nil lists mean AdminToken, ClientToken, ReadToken,
	// OperatorToken and SignerToken.
	Tokens Tokens
	// Chain, when set, is the chain block.
	Chain *Chain
	// Extra is appended to cluster.hcl as it is, e.g. the `lnd "<id>" { }` blocks of a regtest
	// Lightning pool.
	Extra string
	// NonVoters makes the last NonVoters nodes read replicas (voter = false).
	NonVoters int
	// Regions, when set, gives node i the region Regions[i] (default r1..rN).
	Regions []string
	// Profile and LeaderRegion, when set, are the top-level profile and placement.leader_region.
	Profile      string
	LeaderRegion string
	// Plaintext writes insecure_plaintext = true: no TLS, no gossip encryption. By default
	// Write makes a CA, node certificates and a gossip keyring in tls/ beside cluster.hcl (the
	// node's default paths) and the cluster speaks mutual TLS.
	Plaintext bool
}

// Raft is the raft block. A zero field is left out, so the node's default applies (a zero
// TrailingLogs cannot be written).
type Raft struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	ApplyTimeout       time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	MaxAppendEntries   int
	MaxEntryBytes      int
	// CoalesceInFlight and CoalesceLinger set the leader's transfer coalescing (zero: the
	// node's defaults); NoCoalescing turns it off.
	CoalesceInFlight int
	CoalesceLinger   time.Duration
	NoCoalescing     bool
}

// InProcessRaft keeps elections fast on loopback, yet not so tight that a loaded 2-core machine
// (other test clusters, compilers) sees spurious ones: at 100 ms a stalled leader lost
// leadership in the middle of tests that wrote through it.
var InProcessRaft = Raft{
	HeartbeatTimeout:   250 * time.Millisecond,
	ElectionTimeout:    250 * time.Millisecond,
	LeaderLeaseTimeout: 125 * time.Millisecond,
	CommitTimeout:      5 * time.Millisecond,
	ApplyTimeout:       3 * time.Second,
}

// ProcessRaft is a little slower than InProcessRaft: separate processes (and jepsen's network
// namespaces on one bridge) compete for the same two cores.
var ProcessRaft = Raft{
	HeartbeatTimeout:   300 * time.Millisecond,
	ElectionTimeout:    300 * time.Millisecond,
	LeaderLeaseTimeout: 150 * time.Millisecond,
	CommitTimeout:      5 * time.Millisecond,
}

// Or returns r with every zero field taken from defaults.
func (r Raft) Or(defaults Raft) Raft {
	durations := []struct{ dst, def *time.Duration }{
		{&r.HeartbeatTimeout, &defaults.HeartbeatTimeout},
		{&r.ElectionTimeout, &defaults.ElectionTimeout},
		{&r.LeaderLeaseTimeout, &defaults.LeaderLeaseTimeout},
		{&r.CommitTimeout, &defaults.CommitTimeout},
		{&r.ApplyTimeout, &defaults.ApplyTimeout},
		{&r.SnapshotInterval, &defaults.SnapshotInterval},
	}
	for _, d := range durations {
		if *d.dst == 0 {
			*d.dst = *d.def
		}
	}
	if r.SnapshotThreshold == 0 {
		r.SnapshotThreshold = defaults.SnapshotThreshold
	}
	if r.TrailingLogs == 0 {
		r.TrailingLogs = defaults.TrailingLogs
	}
	if r.MaxAppendEntries == 0 {
		r.MaxAppendEntries = defaults.MaxAppendEntries
	}
	if r.MaxEntryBytes == 0 {
		r.MaxEntryBytes = defaults.MaxEntryBytes
	}
	if r.CoalesceInFlight == 0 {
		r.CoalesceInFlight = defaults.CoalesceInFlight
	}
	if r.CoalesceLinger == 0 {
		r.CoalesceLinger = defaults.CoalesceLinger
	}
	r.NoCoalescing = r.NoCoalescing || defaults.NoCoalescing
	return r
}

// Tokens is the tokens block.
type Tokens struct {
	// Admin, Client (the write scope), Read and Operator are the development tokens of each
	// scope (named dev-<scope>-<n> by the node); nil means the package's token of that scope.
	Admin    []string
	Client   []string
	Read     []string
	Operator []string
	Signer   []string
	// Blocks are named tokens whose secrets live in files.
	Blocks []TokenBlock
}

// TokenBlock is a `token "<name>" { scopes, token_file }` block.
type TokenBlock struct {
	Name   string
	Scopes []string
	// File holds the secret; relative paths are relative to cluster.hcl.
	File string
}

// Chain is the chain block. Zero fields are left out (the node's defaults apply).
type Chain struct {
	Network      string
	RPCHost      string
	RPCUser      string
	RPCPass      string
	RPCCert      string
	FinalDepth   uint32
	KeepHashes   uint32
	StartHeight  uint32
	PollInterval time.Duration
}

// Node is one node block: where a node listens and keeps its data.
type Node struct {
	ID         string
	Region     string
	RaftAddr   string
	GossipAddr string
	APIAddr    string
	DataDir    string
	// NonVoter writes voter = false: a read replica.
	NonVoter bool
}

// Shape applies spec's NonVoters and Regions to nodes (in place) and returns them.
func (s Spec) Shape(nodes []Node) []Node {
	for i := range nodes {
		if i < len(s.Regions) {
			nodes[i].Region = s.Regions[i]
		}
		if i >= len(nodes)-s.NonVoters {
			nodes[i].NonVoter = true
		}
	}
	return nodes
}

// Render returns the text of cluster.hcl for spec with nodes.
func Render(spec Spec, nodes []Node) []byte {
	var b strings.Builder
	name := spec.Name
	if name == "" {
		name = "test"
	}
	fmt.Fprintf(&b, "name = %s\n", hclString(name))
	if spec.Plaintext {
		b.WriteString("insecure_plaintext = true\n")
	}
	if spec.Profile != "" {
		fmt.Fprintf(&b, "profile = %s\n", hclString(spec.Profile))
	}
	if spec.LeaderRegion != "" {
		fmt.Fprintf(&b, "\nplacement {\n  leader_region        = %s\n  leader_region_settle = \"1s\"\n}\n", hclString(spec.LeaderRegion))
	}

	b.WriteString("\nraft {\n")
	r := spec.Raft
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"heartbeat_timeout", r.HeartbeatTimeout},
		{"election_timeout", r.ElectionTimeout},
		{"leader_lease_timeout", r.LeaderLeaseTimeout},
		{"commit_timeout", r.CommitTimeout},
		{"apply_timeout", r.ApplyTimeout},
		{"snapshot_interval", r.SnapshotInterval},
		{"coalesce_linger", r.CoalesceLinger},
	} {
		if d.v != 0 {
			fmt.Fprintf(&b, "  %-20s = %s\n", d.key, hclString(d.v.String()))
		}
	}
	for _, c := range []struct {
		key string
		v   uint64
	}{
		{"snapshot_threshold", r.SnapshotThreshold},
		{"trailing_logs", r.TrailingLogs},
		{"max_append_entries", uint64(r.MaxAppendEntries)},
		{"max_entry_bytes", uint64(r.MaxEntryBytes)},
	} {
		if c.v != 0 {
			fmt.Fprintf(&b, "  %-20s = %d\n", c.key, c.v)
		}
	}
	if r.NoCoalescing {
		fmt.Fprintf(&b, "  %-20s = 0\n", "coalesce_in_flight")
	} else if r.CoalesceInFlight != 0 {
		fmt.Fprintf(&b, "  %-20s = %d\n", "coalesce_in_flight", r.CoalesceInFlight)
	}
	b.WriteString("}\n")

	b.WriteString("\ntokens {\n")
	for _, l := range []struct {
		scope  string
		tokens []string
		def    string
	}{
		{"admin", spec.Tokens.Admin, AdminToken},
		{"write", spec.Tokens.Client, ClientToken},
		{"read", spec.Tokens.Read, ReadToken},
		{"operator", spec.Tokens.Operator, OperatorToken},
		{"signer", spec.Tokens.Signer, SignerToken},
	} {
		if l.tokens == nil {
			l.tokens = []string{l.def}
		}
		fmt.Fprintf(&b, "  %-8s = %s\n", l.scope, hclList(l.tokens))
	}
	for _, tb := range spec.Tokens.Blocks {
		fmt.Fprintf(&b, "  token %s {\n    scopes     = %s\n    token_file = %s\n  }\n", hclString(tb.Name), hclList(tb.Scopes), hclString(tb.File))
	}
	b.WriteString("}\n")

	if c := spec.Chain; c != nil {
		b.WriteString("\nchain {\n")
		for _, s := range []struct{ key, v string }{
			{"network", c.Network}, {"rpc_host", c.RPCHost}, {"rpc_user", c.RPCUser},
			{"rpc_pass", c.RPCPass}, {"rpc_cert", c.RPCCert},
		} {
			if s.v != "" {
				fmt.Fprintf(&b, "  %-13s = %s\n", s.key, hclString(s.v))
			}
		}
		for _, n := range []struct {
			key string
			v   uint32
		}{{"final_depth", c.FinalDepth}, {"keep_hashes", c.KeepHashes}, {"start_height", c.StartHeight}} {
			if n.v != 0 {
				fmt.Fprintf(&b, "  %-13s = %d\n", n.key, n.v)
			}
		}
		if c.PollInterval != 0 {
			fmt.Fprintf(&b, "  %-13s = %s\n", "poll_interval", hclString(c.PollInterval.String()))
		}
		b.WriteString("}\n")
	}

	if spec.Extra != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(spec.Extra, "\n"))
	}

	for _, n := range nodes {
		fmt.Fprintf(&b, "\nnode %s {\n  region      = %s\n  raft_addr   = %s\n  gossip_addr = %s\n  api_addr    = %s\n  data_dir    = %s\n",
			hclString(n.ID), hclString(n.Region), hclString(n.RaftAddr), hclString(n.GossipAddr), hclString(n.APIAddr), hclString(n.DataDir))
		if n.NonVoter {
			b.WriteString("  voter       = false\n")
		}
		b.WriteString("}\n")
	}
	return []byte(b.String())
}

func hclList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = hclString(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// hclString quotes s as an HCL string literal. Go's %q is not enough: HCL reads "${" and
// "%{" as template sequences, and knows no \x escapes.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			// "$${" and "%%{" are the literal "${" and "%{".
			b.WriteRune(r)
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Write writes cluster.hcl for spec with nodes to path (mode 0600: it holds tokens).
func Write(path string, spec Spec, nodes []Node) error {
	if len(nodes) == 0 {
		return errors.New("clusterhcl: no nodes")
	}
	if !spec.Plaintext {
		if err := WriteSecrets(filepath.Dir(path), spec.clusterName(), nodes); err != nil {
			return err
		}
	}
	if err := os.WriteFile(path, Render(spec, nodes), 0o600); err != nil {
		return fmt.Errorf("clusterhcl: write %s: %w", path, err)
	}
	return nil
}

func (s Spec) clusterName() string {
	if s.Name == "" {
		return "test"
	}
	return s.Name
}

// Where WriteSecrets puts a cluster's TLS files and gossip keyring, relative to cluster.hcl:
// the node's defaults (node.DefaultCAFile, node.DefaultKeyringFile).
const (
	CAFile      = "tls/ca.crt"
	CAKeyFile   = "tls/ca.key"
	KeyringFile = "tls/gossip.keyring"
)

// WriteSecrets makes what a TLS cluster in dir needs, unless it is there already: the CA, a
// certificate per node (for the hosts of its addresses) and a gossip keyring of one key.
func WriteSecrets(dir, cluster string, nodes []Node) error {
	var files []clustertls.NodeFiles
	for _, n := range nodes {
		files = append(files, clustertls.NodeFiles{
			ID:       n.ID,
			Hosts:    clustertls.HostsOf(n.RaftAddr, n.GossipAddr, n.APIAddr),
			CertFile: filepath.Join(dir, "tls", n.ID+".crt"),
			KeyFile:  filepath.Join(dir, "tls", n.ID+".key"),
		})
	}
	if _, err := clustertls.Init(cluster, filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile), files); err != nil {
		return fmt.Errorf("clusterhcl: %w", err)
	}
	if _, err := clustertls.InitKeyring(filepath.Join(dir, KeyringFile)); err != nil {
		return fmt.Errorf("clusterhcl: %w", err)
	}
	return nil
}

// Layout is a written cluster.hcl and the nodes it describes.
type Layout struct {
	// Path is the cluster.hcl file.
	Path  string
	Nodes []Node
}

// WriteLoopback writes dir/cluster.hcl for spec with spec.Size nodes on free loopback ports
// (LoopbackNodes) and returns what it wrote.
func WriteLoopback(dir string, spec Spec) (*Layout, error) {
	nodes, err := LoopbackNodes(dir, spec.Size)
	if err != nil {
		return nil, err
	}
	spec.Shape(nodes)
	l := &Layout{Path: filepath.Join(dir, "cluster.hcl"), Nodes: nodes}
	if err := Write(l.Path, spec, nodes); err != nil {
		return nil, err
	}
	return l, nil
}

// LoopbackNodes returns size nodes (default 3) n1..nN, regions r1..rN, on free 127.0.0.1
// ports, with data dirs dir/data/<id>. A caller that holds a listener of its own (an API port
// bound before the cluster starts) may replace APIAddr before Write.
func LoopbackNodes(dir string, size int) ([]Node, error) {
	if size == 0 {
		size = 3
	}
	if size < 0 {
		return nil, fmt.Errorf("clusterhcl: size %d", size)
	}
	ports, err := FreePorts(3 * size)
	if err != nil {
		return nil, err
	}
	nodes := make([]Node, size)
	for i := range nodes {
		id := fmt.Sprintf("n%d", i+1)
		nodes[i] = Node{
			ID:         id,
			Region:     fmt.Sprintf("r%d", i+1),
			RaftAddr:   loopback(ports[3*i]),
			GossipAddr: loopback(ports[3*i+1]),
			APIAddr:    loopback(ports[3*i+2]),
			DataDir:    filepath.Join(dir, "data", id),
		}
	}
	return nodes, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", fmt.Sprint(port)) }

// maxPortAttempts bounds the search for ports free for both TCP and UDP, per port wanted.
const maxPortAttempts = 100

// FreePorts returns count distinct loopback ports that were free for TCP and for UDP
// (memberlist uses both) a moment ago, none of them in avoid (ports already handed out, such as
// NodePorts of a cluster: the kernel may offer a port again once it is released). They are
// released before it returns, so another process may take one: callers that cannot retry hold
// a listener instead.
func FreePorts(count int, avoid ...int) ([]int, error) {
	taken := make(map[int]bool, len(avoid))
	for _, p := range avoid {
		taken[p] = true
	}
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for attempts := 0; len(ports) < count; attempts++ {
		if attempts > maxPortAttempts*count {
			return nil, fmt.Errorf("clusterhcl: found only %d of %d loopback ports free for TCP and UDP", len(ports), count)
		}
		// Every listener stays open until the end, and its port is taken, so none comes twice.
		l, err := ListenAvoiding(taken)
		if err != nil {
			return nil, err
		}
		closers = append(closers, l.Close)
		port := listenerPort(l)
		u, err := net.ListenPacket("udp", loopback(port))
		if err != nil {
			continue
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports, nil
}

// ListenAvoiding listens on a free loopback TCP port that is not in avoid, and adds it to avoid.
func ListenAvoiding(avoid map[int]bool) (net.Listener, error) {
	var rejected []net.Listener
	defer func() {
		for _, l := range rejected {
			_ = l.Close()
		}
	}()
	for range maxPortAttempts {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("clusterhcl: listen on a free port: %w", err)
		}
		if port := listenerPort(l); !avoid[port] {
			avoid[port] = true
			return l, nil
		}
		rejected = append(rejected, l) // held, so the kernel offers another port next
	}
	return nil, fmt.Errorf("clusterhcl: %d loopback ports in a row were already handed out", maxPortAttempts)
}

// NodePorts returns the ports of nodes' Raft, gossip and API addresses.
func NodePorts(nodes []Node) []int {
	var ports []int
	for _, n := range nodes {
		for _, addr := range []string{n.RaftAddr, n.GossipAddr, n.APIAddr} {
			if _, p, err := net.SplitHostPort(addr); err == nil {
				if port, err := strconv.Atoi(p); err == nil {
					ports = append(ports, port)
				}
			}
		}
	}
	return ports
}

func listenerPort(l net.Listener) int {
	if addr, ok := l.Addr().(*net.TCPAddr); ok {
		return addr.Port
	}
	return 0
}
