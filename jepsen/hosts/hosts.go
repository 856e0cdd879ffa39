package hosts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/bankd/bankd/clustertls"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
	"github.com/bankd/bankd/jepsen/netproxy"
)

// Tokens written into every generated cluster.hcl.
const (
	AdminToken  = "jepsen-admin-token"
	ClientToken = "jepsen-client-token"
	// SignerToken has the signer scope (PayoutService.SubmitSignature).
	SignerToken = "jepsen-signer-token"
)

const (
	prefix = "bkj"
	// ownerDir holds one <run id>.pid file per live run; CleanupStale spares runs whose owner
	// process is still alive.
	ownerDir = "/run/bkj"
	// nsVeth is the name of the veth end inside every namespace.
	nsVeth = "eth0"
	// Every host listens on its own IP, so all hosts can use the same ports.
	raftPort   = 7001
	gossipPort = 7101
	apiPort    = 7201
	// maxNodes bounds the cluster; addresses are 10.213.x.(10+I).
	maxNodes = 9
	// cmdTimeout bounds every ip/iptables/tc invocation.
	cmdTimeout = 15 * time.Second
)

// ErrNetemUnsupported is returned by Netem when the kernel has no netem qdisc.
var ErrNetemUnsupported = errors.New("tc netem is not available in this kernel (CONFIG_NET_SCH_NETEM)")

// Supported returns nil when this process can build hosts: it runs as root and finds ip,
// iptables, iptables-restore and tc.
func Supported() error {
	if os.Geteuid() != 0 {
		return errors.New("hosts need root (network namespaces, veth, iptables)")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("hosts need %s: %w", tool, err)
		}
	}
	return nil
}

// Options describe the hosts to build.
type Options struct {
	// Nodes is the number of hosts, 1-9 (default 3).
	Nodes int
	// NonVoters is how many of the hosts, the last ones, are Raft non-voters (read replicas:
	// `voter = false` in cluster.hcl). At least one host stays a voter.
	NonVoters int
	// Bin is the bankd binary.
	Bin string
	// Dir holds cluster.hcl, data/<node> and logs/<node>.log.
	Dir string
	// Raft is the raft block; zero fields take clusterhcl.ProcessRaft (the multi-process test
	// clusters' settings, which also suit a bridge on one loaded machine).
	Raft clusterhcl.Raft
	// Logger receives one line per fault and process event (default slog.Default()).
	Logger *slog.Logger
	// Env is added to the environment of every agent ("KEY=value"), e.g. BANKD_FAILPOINTS.
	Env []string
	// Regions, when it has any, puts the hosts in regions with delays between them (see
	// Regions); zero means one flat bridge.
	Regions Regions
	// Extra, when set, is called once the bridge is up with the bridge's address (where the
	// nodes reach the harness); what it returns is appended to cluster.hcl, e.g. a chain block
	// naming a server the harness runs on that address.
	Extra func(gatewayIP string) (string, error)
}

// Host is one network namespace running (at most) one bankd agent.
type Host struct {
	Index      int
	ID         string // node id in cluster.hcl: n1, n2, ...
	Netns      string
	Veth       string // host-side veth in the root namespace
	IP         string
	APIAddr    string
	RaftAddr   string
	GossipAddr string
	DataDir    string
	LogPath    string
	// NonVoter: cluster.hcl says voter = false; the host replicates the log and serves stale
	// reads but never votes, leads or counts for a quorum.
	NonVoter bool

	mu sync.Mutex
	// bin is the bankd binary the next start runs ("" means the cluster's, Options.Bin).
	bin    string
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// Cluster is the bridge, the hosts and their processes of one run.
type Cluster struct {
	RunID      string
	Bridge     string
	GatewayIP  string // the bridge's address, where the harness's traffic comes from
	ConfigPath string
	Hosts      []*Host

	bin        string
	env        []string
	log        *slog.Logger
	httpClient *http.Client

	mu sync.Mutex
	// drops[a][b]: packets from host a to host b are dropped.
	drops [][]bool
	// loss[i] is the probability with which packets leaving host i are dropped (0: none).
	loss []float64
	// regions, the Links that delay the traffic between hosts (nil without regions), and
	// links[a][b][port]: the port on GatewayIP of the Link carrying a's connections to b's port.
	regions Regions
	proxies *netproxy.Server
	links   [][]map[int]int
	// made records what Create built, so Cleanup removes exactly that.
	madeOwner, madeBridge, madeForward bool
	madeNetns                          []string
}

// Create builds the bridge and one namespace per host and writes cluster.hcl. It starts no
// process (see StartAll). On error, whatever it built is removed again.
func Create(ctx context.Context, opts Options) (c *Cluster, err error) {
	if err := Supported(); err != nil {
		return nil, err
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 || opts.Nodes > maxNodes {
		return nil, fmt.Errorf("hosts: %d nodes, want 1-%d", opts.Nodes, maxNodes)
	}
	if opts.NonVoters < 0 || opts.NonVoters >= opts.Nodes {
		return nil, fmt.Errorf("hosts: %d non-voters of %d nodes, want 0-%d (at least one voter)", opts.NonVoters, opts.Nodes, opts.Nodes-1)
	}
	if _, err := os.Stat(opts.Bin); err != nil {
		return nil, fmt.Errorf("bankd binary %q: %w (run `make build`)", opts.Bin, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := opts.Regions.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(opts.Bin)
	if err != nil {
		return nil, err
	}
	id, err := newRunID()
	if err != nil {
		return nil, err
	}
	subnet, err := freeSubnet(ctx)
	if err != nil {
		return nil, err
	}
	c = &Cluster{
		RunID:      id,
		Bridge:     prefix + id,
		GatewayIP:  subnet + ".1",
		ConfigPath: filepath.Join(dir, "cluster.hcl"),
		bin:        bin,
		env:        slices.Clone(opts.Env),
		log:        opts.Logger.With("run", id),
		httpClient: newHTTPClient(nil),
		regions:    opts.Regions,
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Cleanup())
			c = nil
		}
	}()
	if err := c.writeOwner(); err != nil {
		return c, err
	}
	if err := c.buildNetwork(ctx, subnet, opts.Nodes); err != nil {
		return c, err
	}
	c.drops = make([][]bool, opts.Nodes)
	for i := range c.drops {
		c.drops[i] = make([]bool, opts.Nodes)
	}
	if c.regions.Count() > 0 {
		if err := c.startLinks(ctx); err != nil {
			return c, err
		}
	}
	for _, h := range c.Hosts {
		h.DataDir = filepath.Join(dir, "data", h.ID)
		h.LogPath = filepath.Join(dir, "logs", h.ID+".log")
		h.NonVoter = h.Index >= opts.Nodes-opts.NonVoters
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return c, err
	}
	extra := ""
	if opts.Extra != nil {
		if extra, err = opts.Extra(c.GatewayIP); err != nil {
			return c, fmt.Errorf("extra configuration: %w", err)
		}
	}
	if err := c.writeConfig(opts.Raft.Or(clusterhcl.ProcessRaft), extra); err != nil {
		return c, err
	}
	c.log.Info("hosts created", "bridge", c.Bridge, "subnet", subnet+".0/24", "nodes", opts.Nodes, "non_voters", opts.NonVoters, "regions", c.regions.String())
	return c, nil
}

func newRunID() (string, error) {
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

var subnetRE = regexp.MustCompile(`inet 10\.213\.(\d+)\.`)

// freeSubnet returns the first "10.213.x" whose /24 no interface of this machine uses, so
// that parallel runs get separate networks.
func freeSubnet(ctx context.Context) (string, error) {
	out, err := run(ctx, nil, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		return "", err
	}
	used := map[int]bool{}
	for _, m := range subnetRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		used[n] = true
	}
	for n := 0; n < 255; n++ {
		if !used[n] {
			return fmt.Sprintf("10.213.%d", n), nil
		}
	}
	return "", errors.New("no free 10.213.x.0/24 subnet")
}

func (c *Cluster) writeOwner() error {
	if err := os.MkdirAll(ownerDir, 0o755); err != nil {
		return err
	}
	c.madeOwner = true
	return os.WriteFile(filepath.Join(ownerDir, c.RunID+".pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
}

func (c *Cluster) buildNetwork(ctx context.Context, subnet string, nodes int) error {
	steps := [][]string{
		{"ip", "link", "add", c.Bridge, "type", "bridge"},
	}
	if err := runAll(ctx, steps); err != nil {
		return err
	}
	c.madeBridge = true
	steps = [][]string{
		{"ip", "addr", "add", c.GatewayIP + "/24", "dev", c.Bridge},
		{"ip", "link", "set", c.Bridge, "up"},
	}
	if err := runAll(ctx, steps); err != nil {
		return err
	}
	// With br_netfilter loaded (Docker loads it) bridged frames traverse the root FORWARD
	// chain, whose policy may be DROP; accept what stays on our bridge, and nothing else.
	if _, err := run(ctx, nil, "iptables", append([]string{"-w", "-I", "FORWARD"}, c.forwardRule()...)...); err != nil {
		return err
	}
	c.madeForward = true
	for i := range nodes {
		h := &Host{
			Index: i,
			ID:    fmt.Sprintf("n%d", i+1),
			Netns: fmt.Sprintf("%s-n%d", c.Bridge, i+1),
			Veth:  fmt.Sprintf("%s-v%d", c.Bridge, i+1),
			IP:    fmt.Sprintf("%s.%d", subnet, 10+i+1),
		}
		h.RaftAddr = net.JoinHostPort(h.IP, strconv.Itoa(raftPort))
		h.GossipAddr = net.JoinHostPort(h.IP, strconv.Itoa(gossipPort))
		h.APIAddr = net.JoinHostPort(h.IP, strconv.Itoa(apiPort))
		if _, err := run(ctx, nil, "ip", "netns", "add", h.Netns); err != nil {
			return err
		}
		c.madeNetns = append(c.madeNetns, h.Netns)
		c.Hosts = append(c.Hosts, h)
		steps := [][]string{
			{"ip", "link", "add", h.Veth, "type", "veth", "peer", "name", nsVeth, "netns", h.Netns},
			{"ip", "link", "set", h.Veth, "master", c.Bridge, "up"},
			{"ip", "-n", h.Netns, "addr", "add", h.IP + "/24", "dev", nsVeth},
			{"ip", "-n", h.Netns, "link", "set", nsVeth, "up"},
			{"ip", "-n", h.Netns, "link", "set", "lo", "up"},
		}
		if err := runAll(ctx, steps); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) forwardRule() []string {
	return []string{"-i", c.Bridge, "-o", c.Bridge, "-m", "comment", "--comment", c.marker(), "-j", "ACCEPT"}
}

// writeConfig writes cluster.hcl with the shared renderer: every host at its own address on
// the bridge, the non-voters' node blocks with voter = false.
func (c *Cluster) writeConfig(raft clusterhcl.Raft, extra string) error {
	spec := clusterhcl.Spec{
		Name:   "jepsen-" + c.RunID,
		Raft:   raft,
		Tokens: clusterhcl.Tokens{Admin: []string{AdminToken}, Client: []string{ClientToken}, Signer: []string{SignerToken}},
		Extra:  extra,
	}
	nodes := make([]clusterhcl.Node, len(c.Hosts))
	for i, h := range c.Hosts {
		nodes[i] = clusterhcl.Node{ID: h.ID, Region: "ns-" + h.ID, RaftAddr: h.RaftAddr, GossipAddr: h.GossipAddr, APIAddr: h.APIAddr, DataDir: h.DataDir, NonVoter: h.NonVoter}
	}
	if err := clusterhcl.Write(c.ConfigPath, spec, nodes); err != nil {
		return err
	}
	// The cluster speaks TLS with the CA just written: the harness's client trusts it.
	roots, err := clustertls.LoadPool(filepath.Join(filepath.Dir(c.ConfigPath), clusterhcl.CAFile))
	if err != nil {
		return err
	}
	c.httpClient = newHTTPClient(roots)
	return nil
}

// Voter reports whether host i is a Raft voter in cluster.hcl.
func (c *Cluster) Voter(i int) bool { return !c.Hosts[i].NonVoter }

// hostOfNetns returns the host living in namespace ns, if any.
func (c *Cluster) hostOfNetns(ns string) *Host {
	for _, h := range c.Hosts {
		if h.Netns == ns {
			return h
		}
	}
	return nil
}

// Cleanup kills every process and removes every namespace, link, rule and file this run made.
// It is safe to call more than once.
func (c *Cluster) Cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for i := range c.Hosts {
		errs = append(errs, c.Kill(i))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	errs = append(errs, c.closeLinks())
	for len(c.madeNetns) > 0 {
		ns := c.madeNetns[len(c.madeNetns)-1]
		// The kernel tears a deleted namespace down in the background, and its veth pair with
		// it; deleting our end first removes the pair at once.
		if h := c.hostOfNetns(ns); h != nil {
			errs = append(errs, ignoreMissing(run(ctx, nil, "ip", "link", "del", h.Veth)))
		}
		errs = append(errs, ignoreMissing(run(ctx, nil, "ip", "netns", "del", ns)))
		c.madeNetns = c.madeNetns[:len(c.madeNetns)-1]
	}
	if c.madeForward {
		_, err := run(ctx, nil, "iptables", append([]string{"-w", "-D", "FORWARD"}, c.forwardRule()...)...)
		errs = append(errs, ignoreMissing("", err))
		c.madeForward = false
	}
	if c.madeBridge {
		errs = append(errs, ignoreMissing(run(ctx, nil, "ip", "link", "del", c.Bridge)))
		c.madeBridge = false
	}
	if c.madeOwner {
		if err := os.Remove(filepath.Join(ownerDir, c.RunID+".pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		c.madeOwner = false
	}
	c.httpClient.CloseIdleConnections()
	return errors.Join(errs...)
}

func ignoreMissing(_ string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range []string{"No such file", "Cannot find device", "does not exist", "Bad rule", "No chain/target/match"} {
		if strings.Contains(msg, s) {
			return nil
		}
	}
	return err
}

var staleNameRE = regexp.MustCompile(`^` + prefix + `([0-9a-f]{4})(?:-[nv][0-9]+)?$`)

// CleanupStale removes namespaces (killing their processes), links, FORWARD rules and owner
// files of earlier runs of this harness whose owner process is gone. It touches nothing
// without the bkj<4 hex digits> prefix and nothing of a run that is still alive.
func CleanupStale(ctx context.Context, log *slog.Logger) error {
	if err := Supported(); err != nil {
		return err
	}
	if log == nil {
		log = slog.Default()
	}
	live := liveRuns()
	stale := func(name string) (string, bool) {
		m := staleNameRE.FindStringSubmatch(name)
		if m == nil || live[m[1]] {
			return "", false
		}
		return m[1], true
	}
	var errs []error
	out, err := run(ctx, nil, "ip", "netns", "list")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		ns := fields[0]
		if _, ok := stale(ns); !ok {
			continue
		}
		pids, _ := run(ctx, nil, "ip", "netns", "pids", ns)
		for _, p := range strings.Fields(pids) {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		log.Info("removing stale namespace", "netns", ns)
		errs = append(errs, ignoreMissing(run(ctx, nil, "ip", "netns", "del", ns)))
	}
	out, err = run(ctx, nil, "ip", "-o", "link", "show")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		// "7: bkj3f2a-v1@if2: <...>"
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(fields[1], ":"), "@")
		if _, ok := stale(name); !ok {
			continue
		}
		log.Info("removing stale link", "link", name)
		errs = append(errs, ignoreMissing(run(ctx, nil, "ip", "link", "del", name)))
	}
	out, err = run(ctx, nil, "iptables", "-w", "-S", "FORWARD")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(strings.ReplaceAll(line, `"`, ""))
		if len(fields) < 2 || fields[0] != "-A" {
			continue
		}
		i := slices.Index(fields, "--comment")
		if i < 0 || i+1 >= len(fields) {
			continue
		}
		id, ok := strings.CutPrefix(fields[i+1], prefix+":")
		if !ok || live[id] || staleNameRE.FindStringSubmatch(prefix+id) == nil {
			continue
		}
		log.Info("removing stale FORWARD rule", "rule", line)
		_, err := run(ctx, nil, "iptables", append([]string{"-w", "-D"}, fields[1:]...)...)
		errs = append(errs, ignoreMissing("", err))
	}
	entries, _ := os.ReadDir(ownerDir)
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".pid")
		if ok && !live[id] {
			errs = append(errs, os.Remove(filepath.Join(ownerDir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// liveRuns returns the run ids whose owner process is alive.
func liveRuns() map[string]bool {
	live := map[string]bool{}
	entries, _ := os.ReadDir(ownerDir)
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(ownerDir, e.Name()))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			live[id] = true
		}
	}
	return live
}

// run executes one command with a timeout and returns its combined output; the error names
// the command and carries its output.
func run(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func runAll(ctx context.Context, steps [][]string) error {
	for _, s := range steps {
		if _, err := run(ctx, nil, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

func newHTTPClient(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	t.Proxy = nil // never route the harness's traffic anywhere but the bridge
	t.DialContext = (&net.Dialer{Timeout: time.Second}).DialContext
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// Client returns Connect clients for host i with the client token.
func (c *Cluster) Client(i int) *apiclient.Clients {
	return apiclient.New(c.httpClient, "https://"+c.Hosts[i].APIAddr, ClientToken)
}

// AdminClient returns Connect clients for host i with the admin token.
func (c *Cluster) AdminClient(i int) *apiclient.Clients {
	return apiclient.New(c.httpClient, "https://"+c.Hosts[i].APIAddr, AdminToken)
}

// SignerClient returns Connect clients for host i with the signer token.
func (c *Cluster) SignerClient(i int) *apiclient.Clients {
	return apiclient.New(c.httpClient, "https://"+c.Hosts[i].APIAddr, SignerToken)
}

// Leader returns the index of the host that reports itself leader in the highest term among
// the running, unpaused hosts, or -1 when none does.
func (c *Cluster) Leader(ctx context.Context) int {
	leader, term := -1, uint64(0)
	for i := range c.Hosts {
		if !c.Running(i) || c.Paused(i) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := c.Client(i).Cluster.Status(cctx, connect.NewRequest(&bankdv1.StatusRequest{}))
		cancel()
		if err != nil {
			continue
		}
		if resp.Msg.RaftState == "Leader" && resp.Msg.NodeId == c.Hosts[i].ID && resp.Msg.Term >= term {
			leader, term = i, resp.Msg.Term
		}
	}
	return leader
}

// WaitLeader polls until some running, unpaused host reports itself leader.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	for {
		if l := c.Leader(ctx); l >= 0 {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// NodeHash is one host's state hash.
type NodeHash struct {
	Node         string
	AppliedIndex uint64
	SHA256       string
}

// StateHashes polls every running host until they all report the same applied index and
// returns their hashes; on timeout it returns the last (unequal-index) answers and an error.
func (c *Cluster) StateHashes(ctx context.Context) ([]NodeHash, error) {
	var last []NodeHash
	var lastErr error
	for {
		last, lastErr = nil, nil
		for i, h := range c.Hosts {
			if !c.Running(i) {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := c.AdminClient(i).Cluster.StateHash(cctx, connect.NewRequest(&bankdv1.StateHashRequest{}))
			cancel()
			if err != nil {
				lastErr = fmt.Errorf("state hash of %s: %w", h.ID, err)
				break
			}
			last = append(last, NodeHash{Node: h.ID, AppliedIndex: resp.Msg.AppliedIndex, SHA256: resp.Msg.Sha256})
		}
		if lastErr == nil && len(last) > 0 && sameIndex(last) {
			return last, nil
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = errors.New("hosts never reached the same applied index")
			}
			return last, fmt.Errorf("%w: %w", lastErr, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func sameIndex(hs []NodeHash) bool {
	for _, h := range hs[1:] {
		if h.AppliedIndex != hs[0].AppliedIndex {
			return false
		}
	}
	return true
}

// Size is the number of hosts.
func (c *Cluster) Size() int { return len(c.Hosts) }

// NodeID is host i's node id.
func (c *Cluster) NodeID(i int) string { return c.Hosts[i].ID }
