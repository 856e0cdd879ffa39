package node

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// Config is a parsed and validated cluster.hcl: the one file every node of a cluster shares.
type Config struct {
	// Path is the file the configuration was read from ("" when parsed from memory without one).
	Path string
	// Name is the cluster name.
	Name   string
	Raft   RaftConfig
	Tokens TokensConfig
	Chain  ChainConfig
	// Payouts is the payouts block: the hot wallet and the withdrawal queues.
	Payouts PayoutsConfig
	// Retention is the retention block: what old records the leader drops. Zero: none.
	Retention RetentionConfig
	// Profile is the deployment profile (ProfileLAN or ProfileWAN): the defaults of the Raft
	// and gossip timings.
	Profile string
	// Placement is the placement block: the preferred leader region.
	Placement PlacementConfig
	// HoldStoredFormat is hold_stored_format: the newest stored format the leader may switch
	// the store to, so nodes can still go back to a release that reads it. Zero: no hold, the
	// newest format this binary writes (node/format.go).
	HoldStoredFormat uint32
	// TLS is the tls block: the cluster CA every node trusts. Zero when InsecurePlaintext.
	TLS TLSConfig
	// Gossip is the gossip block: memberlist's encryption keyring. Zero when InsecurePlaintext.
	Gossip GossipConfig
	// InsecurePlaintext turns TLS and gossip encryption off: the development flag
	// insecure_plaintext. Refused on mainnet; a node running with it logs a warning at start.
	InsecurePlaintext bool
	// Lightning lists the `lnd "<id>"` blocks: the pool of lnd nodes the leader drives, in
	// file order. More can be added at runtime (bankctl lnd add).
	Lightning []LndConfig
	// Nodes in file order.
	Nodes []NodeConfig
}

// RaftConfig holds the Raft tuning knobs of the `raft` block.
type RaftConfig struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	// ApplyTimeout bounds how long a proposal may wait to be enqueued by Raft.
	ApplyTimeout     time.Duration
	MaxAppendEntries int
	// MaxEntryBytes bounds one command in the log; with MaxAppendEntries it bounds one
	// AppendEntries message (at most MaxAppendEntriesBytes).
	MaxEntryBytes int
	// CoalesceInFlight bounds the coalesced CreateTransfers entries in flight on the leader;
	// 0 turns coalescing off (node/coalesce.go).
	CoalesceInFlight int
	// CoalesceLinger is how long the leader waits for more transfers to join an entry once a
	// slot is free (0 to 1ms).
	CoalesceLinger time.Duration
}

// MaxAppendEntriesBytes bounds max_append_entries × max_entry_bytes: the most one AppendEntries
// (and one state-machine batch) may hold, and so what a follower may have to buffer at once.
const MaxAppendEntriesBytes = 256 << 20

// ChainConfig holds the `chain` block: which Bitcoin network the cluster's wallets are for and,
// when RPCHost is set, the node the leader's chain watcher follows.
type ChainConfig struct {
	// Network is "mainnet", "testnet", "signet" or "regtest".
	Network string

	// RPCHost is the host:port of the btcd or bitcoind JSON-RPC server. Empty means no chain
	// watcher: the cluster runs as a pure ledger and every other key below is unused.
	RPCHost string
	// RPCUser and RPCPass are the RPC credentials (RPCPass from rpc_pass or rpc_pass_file).
	RPCUser string
	RPCPass string
	// RPCCertPath is the rpc_cert file (absolute) and RPCCert its PEM contents, read when the
	// configuration is loaded. Both are empty when the system's roots are trusted or TLS is off.
	RPCCertPath string
	RPCCert     []byte
	// RPCTLS is false for a plain-HTTP RPC server (bitcoind).
	RPCTLS bool

	// FinalDepth is the number of confirmations at which a transaction becomes final and its
	// deposits are credited.
	FinalDepth uint32
	// KeepHashes is how many block hashes below the tip the state machine keeps; a reorg deeper
	// than that cannot be followed.
	KeepHashes uint32
	// StartHeight is the first block followed on an empty chain (the cluster's birthday).
	StartHeight uint32
	// PollInterval is how often the watcher asks the node for news when it is caught up.
	PollInterval time.Duration
	// Mempool turns polling of the node's mempool (pending deposits) on.
	Mempool bool
}

// LndConfig describes one `lnd "<id>"` block: how the leader reaches a pool lnd node. The
// paths must name the same files on every bankd node (any node may become the leader).
type LndConfig struct {
	ID string
	// Address is the host:port of lnd's gRPC listener.
	Address string
	// TLSCertPath and MacaroonPath are absolute (relative ones in the file are resolved
	// against the file's directory).
	TLSCertPath  string
	MacaroonPath string
}

// Watching reports whether the chain block names a node to follow, i.e. whether the leader
// runs a chain watcher.
func (c ChainConfig) Watching() bool { return c.RPCHost != "" }

// Defaults of the chain block.
const (
	// DefaultChainNetwork is the network of a cluster.hcl without a chain block.
	DefaultChainNetwork      = "regtest"
	DefaultFinalDepth        = 6
	DefaultKeepHashes        = 1000
	DefaultChainPollInterval = time.Second
)

// DefaultChainConfig returns the values used for keys the chain block leaves out.
func DefaultChainConfig() ChainConfig {
	return ChainConfig{
		Network:      DefaultChainNetwork,
		RPCTLS:       true,
		FinalDepth:   DefaultFinalDepth,
		KeepHashes:   DefaultKeepHashes,
		PollInterval: DefaultChainPollInterval,
		Mempool:      true,
	}
}

// NodeConfig describes one `node "<id>"` block.
type NodeConfig struct {
	ID     string
	Region string
	// NonVoter is voter = false: a read replica that receives the log and serves stale reads
	// but never votes, never leads and never counts for a quorum.
	NonVoter   bool
	RaftAddr   string
	GossipAddr string
	APIAddr    string
	// DataDir is absolute when the config was loaded from a file (relative paths in the file are
	// resolved against the file's directory).
	DataDir string
	// TLSCert and TLSKey are the node's certificate and key (absolute): tls_cert and tls_key,
	// by default <id>.crt and <id>.key beside the CA certificate. Empty when InsecurePlaintext.
	TLSCert string
	TLSKey  string
}

// TLSConfig is the tls block.
type TLSConfig struct {
	// CAFile is the cluster CA certificate (absolute), which every node and client trusts.
	CAFile string
	// CAKeyFile is where `bankd tls init` keeps the CA's key (absolute). Nodes never read it;
	// keep it off the nodes once their certificates are issued.
	CAKeyFile string
}

// GossipConfig is the gossip block.
type GossipConfig struct {
	// KeyringFile holds memberlist's encryption keys, one base64 key per line; the first is the
	// primary, used to encrypt. Read at start and on SIGHUP.
	KeyringFile string
	// Timing holds the failure-detection timings the block sets; zero fields take the
	// deployment profile's.
	Timing GossipTiming
}

// DefaultRaftConfig returns the values used for keys the raft block leaves out.
func DefaultRaftConfig() RaftConfig {
	return RaftConfig{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		ApplyTimeout:       5 * time.Second,
		MaxAppendEntries:   64,
		MaxEntryBytes:      4 << 20,
		CoalesceInFlight:   1,
		CoalesceLinger:     200 * time.Microsecond,
	}
}

// Node returns the configuration of node id.
func (c *Config) Node(id string) (NodeConfig, bool) {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return NodeConfig{}, false
}

// Limits on what cluster.hcl may hold.
const (
	maxConfigBytes = 1 << 20
	maxNodes       = 64
	maxFieldLen    = 256
)

// ConfigError lists every problem found in a configuration file, each with its position.
type ConfigError struct {
	Diagnostics hcl.Diagnostics
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, d := range e.Diagnostics {
		if i > 0 {
			b.WriteString("\n")
		}
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d,%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString(": ")
			b.WriteString(d.Detail)
		}
	}
	return b.String()
}

// LoadConfig reads and validates the cluster file at path.
func LoadConfig(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve config path %s: %w", path, err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat config %s: %w", abs, err)
	}
	if info.Size() > maxConfigBytes {
		return nil, fmt.Errorf("config %s is %d bytes, more than the %d allowed", abs, info.Size(), maxConfigBytes)
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(src, abs)
}

// ParseConfig parses and validates cluster.hcl source. filename is used in error positions and
// as the base for relative data_dir paths (relative to the working directory when it has no
// directory part).
func ParseConfig(src []byte, filename string) (*Config, error) {
	if filename == "" {
		filename = "cluster.hcl"
	}
	if len(src) > maxConfigBytes {
		return nil, fmt.Errorf("config %s is %d bytes, more than the %d allowed", filename, len(src), maxConfigBytes)
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, &ConfigError{Diagnostics: errorsOnly(diags)}
	}
	p := &configParser{baseDir: filepath.Dir(filename)}
	cfg := p.parse(file.Body)
	if p.diags.HasErrors() {
		return nil, &ConfigError{Diagnostics: errorsOnly(p.diags)}
	}
	cfg.Path = filename
	return cfg, nil
}

func errorsOnly(diags hcl.Diagnostics) hcl.Diagnostics {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			out = append(out, d)
		}
	}
	return out
}

var (
	topSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "name", Required: true}, {Name: "insecure_plaintext"}, {Name: "profile"}, {Name: "hold_stored_format"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "raft"},
			{Type: "tls"},
			{Type: "gossip"},
			{Type: "tokens"},
			{Type: "chain"},
			{Type: "payouts"},
			{Type: "retention"},
			{Type: "placement"},
			{Type: "node", LabelNames: []string{"id"}},
			{Type: "lnd", LabelNames: []string{"id"}},
		},
	}
	lndSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "address", Required: true},
		{Name: "tls_cert", Required: true},
		{Name: "macaroon", Required: true},
	}}
	raftSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "heartbeat_timeout"},
		{Name: "election_timeout"},
		{Name: "leader_lease_timeout"},
		{Name: "commit_timeout"},
		{Name: "snapshot_interval"},
		{Name: "snapshot_threshold"},
		{Name: "trailing_logs"},
		{Name: "apply_timeout"},
		{Name: "max_append_entries"},
		{Name: "max_entry_bytes"},
		{Name: "coalesce_in_flight"},
		{Name: "coalesce_linger"},
	}}
	chainSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "network"},
		{Name: "rpc_host"},
		{Name: "rpc_user"},
		{Name: "rpc_pass"},
		{Name: "rpc_pass_file"},
		{Name: "rpc_cert"},
		{Name: "rpc_tls"},
		{Name: "final_depth"},
		{Name: "keep_hashes"},
		{Name: "start_height"},
		{Name: "poll_interval"},
		{Name: "mempool"},
	}}
	nodeSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "region", Required: true},
		{Name: "raft_addr", Required: true},
		{Name: "gossip_addr", Required: true},
		{Name: "api_addr", Required: true},
		{Name: "data_dir", Required: true},
		{Name: "tls_cert"},
		{Name: "tls_key"},
		{Name: "voter"},
	}}
)

// idPattern restricts cluster and node ids to characters that are safe in paths, Raft ids and
// log lines.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

type configParser struct {
	baseDir string
	diags   hcl.Diagnostics
}

func (p *configParser) errorf(rng hcl.Range, summary, format string, args ...any) {
	r := rng
	p.diags = append(p.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  &r,
	})
}

func (p *configParser) parse(body hcl.Body) *Config {
	cfg := &Config{Profile: ProfileLAN, Raft: DefaultRaftConfig(), Chain: DefaultChainConfig(),
		Placement: PlacementConfig{LeaderRegionSettle: DefaultLeaderRegionSettle}}
	content, diags := body.Content(topSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return cfg
	}
	if attr, ok := content.Attributes["name"]; ok {
		if name, ok := p.str(attr); ok {
			if !idPattern.MatchString(name) {
				p.errorf(attr.Expr.Range(), "invalid name", "cluster name %q must be 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit", name)
			}
			cfg.Name = name
		}
	}
	if attr, ok := content.Attributes["insecure_plaintext"]; ok {
		if v, ok := p.boolean(attr); ok {
			cfg.InsecurePlaintext = v
		}
	}
	p.wholeNumbers(content.Attributes, []wholeNumber{
		{"hold_stored_format", int64(fsm.FormatBaseline), math.MaxUint16, func(v int64) { cfg.HoldStoredFormat = uint32(v) }},
	})
	// Before the blocks: the raft and gossip blocks override the profile's timings.
	if attr, ok := content.Attributes["profile"]; ok {
		p.parseProfile(attr, cfg)
	}
	// Blocks that may appear at most once, by type: the first one seen.
	seen := map[string]*hcl.Block{}
	for _, block := range content.Blocks {
		if first, dup := seen[block.Type]; dup && block.Type != "node" && block.Type != "lnd" {
			p.errorf(block.DefRange, "duplicate "+block.Type+" block", "the %s block is already defined at line %d", block.Type, first.DefRange.Start.Line)
			continue
		}
		seen[block.Type] = block
		switch block.Type {
		case "tls":
			p.parseTLS(block, &cfg.TLS)
		case "gossip":
			p.parseGossip(block, &cfg.Gossip)
		case "raft":
			p.parseRaft(block, &cfg.Raft)
		case "tokens":
			p.parseTokens(block, &cfg.Tokens)
		case "chain":
			p.parseChain(block, &cfg.Chain)
		case "payouts":
			p.parsePayouts(block, &cfg.Payouts)
		case "retention":
			p.parseRetention(block, &cfg.Retention)
		case "placement":
			p.parsePlacement(block, &cfg.Placement)
		case "node":
			p.parseNode(block, cfg)
		case "lnd":
			p.parseLnd(block, cfg)
		}
	}
	if len(cfg.Nodes) == 0 && !p.diags.HasErrors() {
		p.errorf(body.MissingItemRange(), "no nodes", "at least one node block is required")
	}
	p.checkPlacement(body, seen["placement"], cfg)
	p.checkTokensForNetwork(seen["tokens"], cfg)
	p.checkTransportSecurity(content, seen["tls"], seen["gossip"], cfg)
	return cfg
}

func (p *configParser) parseLnd(block *hcl.Block, cfg *Config) {
	id := block.Labels[0]
	if err := fsm.CheckLndNodeID("lnd", id); err != nil {
		p.errorf(block.LabelRanges[0], "invalid lnd id", "%s", err.Message)
		return
	}
	for _, l := range cfg.Lightning {
		if l.ID == id {
			p.errorf(block.DefRange, "duplicate lnd block", "lnd %q is defined twice", id)
			return
		}
	}
	content, diags := block.Body.Content(lndSchema)
	p.diags = append(p.diags, diags...)
	if content == nil || diags.HasErrors() {
		return
	}
	lc := LndConfig{ID: id}
	if attr := content.Attributes["address"]; attr != nil {
		v, ok := p.str(attr)
		if !ok {
			return
		}
		// The leader dials it: it needs a host and a numeric port, and no wildcard host.
		if _, err := normalizeHostPort(v, true); err != nil {
			p.errorf(attr.Expr.Range(), "invalid address", "lnd %q: address %q: %v", id, v, err)
			return
		}
		lc.Address = v
	}
	if v, ok := p.str(content.Attributes["tls_cert"]); ok && v != "" {
		lc.TLSCertPath = p.path(v)
	}
	if v, ok := p.str(content.Attributes["macaroon"]); ok && v != "" {
		lc.MacaroonPath = p.path(v)
	}
	if err := fsm.ValidateUpsertLndNode(&bankdv1.UpsertLndNodeRequest{Id: id, Address: lc.Address, TlsCertPath: lc.TLSCertPath, MacaroonPath: lc.MacaroonPath}); err != nil {
		p.errorf(block.DefRange, "invalid lnd block", "lnd %q: %s", id, err.Message)
		return
	}
	cfg.Lightning = append(cfg.Lightning, lc)
}

func (p *configParser) parseRaft(block *hcl.Block, rc *RaftConfig) {
	content, diags := block.Body.Content(raftSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	attrs := content.Attributes
	durations := []struct {
		name string
		dst  *time.Duration
		min  time.Duration
	}{
		{"heartbeat_timeout", &rc.HeartbeatTimeout, 5 * time.Millisecond},
		{"election_timeout", &rc.ElectionTimeout, 5 * time.Millisecond},
		{"leader_lease_timeout", &rc.LeaderLeaseTimeout, 5 * time.Millisecond},
		{"commit_timeout", &rc.CommitTimeout, time.Millisecond},
		{"snapshot_interval", &rc.SnapshotInterval, 5 * time.Millisecond},
		{"apply_timeout", &rc.ApplyTimeout, time.Millisecond},
	}
	if attr, ok := attrs["coalesce_linger"]; ok {
		if v, ok := p.duration(attr); ok {
			if v < 0 || v > time.Millisecond {
				p.errorf(attr.Expr.Range(), "invalid coalesce_linger", "coalesce_linger must be between 0s and 1ms, got %s", v)
			} else {
				rc.CoalesceLinger = v
			}
		}
	}
	for _, d := range durations {
		attr, ok := attrs[d.name]
		if !ok {
			continue
		}
		if v, ok := p.duration(attr); ok {
			if v < d.min || v > time.Hour {
				p.errorf(attr.Expr.Range(), "invalid "+d.name, "%s must be between %s and 1h, got %s", d.name, d.min, v)
				continue
			}
			*d.dst = v
		}
	}
	counts := []struct {
		name     string
		min, max int64
		set      func(int64)
	}{
		{"snapshot_threshold", 1, 1 << 40, func(v int64) { rc.SnapshotThreshold = uint64(v) }},
		{"trailing_logs", 0, 1 << 40, func(v int64) { rc.TrailingLogs = uint64(v) }},
		// hashicorp/raft refuses more than 1024 entries per AppendEntries.
		{"max_append_entries", 1, 1024, func(v int64) { rc.MaxAppendEntries = int(v) }},
		{"max_entry_bytes", 64 << 10, 64 << 20, func(v int64) { rc.MaxEntryBytes = int(v) }},
		{"coalesce_in_flight", 0, 64, func(v int64) { rc.CoalesceInFlight = int(v) }},
	}
	for _, c := range counts {
		attr, ok := attrs[c.name]
		if !ok {
			continue
		}
		var v int64
		if diags := gohcl.DecodeExpression(attr.Expr, nil, &v); diags.HasErrors() {
			p.errorf(attr.Expr.Range(), "invalid "+c.name, "%s must be a whole number: %s", c.name, firstDetail(diags))
			continue
		}
		if v < c.min || v > c.max {
			p.errorf(attr.Expr.Range(), "invalid "+c.name, "%s must be between %d and %d, got %d", c.name, c.min, c.max, v)
			continue
		}
		c.set(v)
	}
	if int64(rc.MaxAppendEntries)*int64(rc.MaxEntryBytes) > MaxAppendEntriesBytes {
		p.errorf(rangeOf(attrs, "max_append_entries", block.DefRange), "invalid max_append_entries",
			"max_append_entries (%d) × max_entry_bytes (%d) must not exceed %d bytes: it bounds what one AppendEntries carries",
			rc.MaxAppendEntries, rc.MaxEntryBytes, MaxAppendEntriesBytes)
	}
	// The relations hashicorp/raft's ValidateConfig insists on, reported where the user can fix them.
	if rc.ElectionTimeout < rc.HeartbeatTimeout {
		p.errorf(rangeOf(attrs, "election_timeout", block.DefRange), "invalid election_timeout", "election_timeout (%s) must be at least heartbeat_timeout (%s)", rc.ElectionTimeout, rc.HeartbeatTimeout)
	}
	if rc.LeaderLeaseTimeout > rc.HeartbeatTimeout {
		p.errorf(rangeOf(attrs, "leader_lease_timeout", block.DefRange), "invalid leader_lease_timeout", "leader_lease_timeout (%s) must not exceed heartbeat_timeout (%s)", rc.LeaderLeaseTimeout, rc.HeartbeatTimeout)
	}
}

func rangeOf(attrs hcl.Attributes, name string, fallback hcl.Range) hcl.Range {
	if a, ok := attrs[name]; ok {
		return a.Expr.Range()
	}
	return fallback
}

func (p *configParser) parseChain(block *hcl.Block, cc *ChainConfig) {
	content, diags := block.Body.Content(chainSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	attrs := content.Attributes
	if attr, ok := attrs["network"]; ok {
		if network, ok := p.str(attr); ok {
			if _, known := fsm.ChainParams(network); known {
				cc.Network = network
			} else {
				p.errorf(attr.Expr.Range(), "invalid network", "network must be one of %s, got %q", fsm.ChainNetworkNames, network)
			}
		}
	}
	p.parseChainRPC(block, attrs, cc)

	counts := []struct {
		name     string
		min, max int64
		set      func(int64)
	}{
		{"final_depth", 1, fsm.MaxFinalDepth, func(v int64) { cc.FinalDepth = uint32(v) }},
		{"keep_hashes", 1, fsm.MaxKeepHashes, func(v int64) { cc.KeepHashes = uint32(v) }},
		{"start_height", 0, math.MaxInt32, func(v int64) { cc.StartHeight = uint32(v) }},
	}
	for _, c := range counts {
		attr, ok := attrs[c.name]
		if !ok {
			continue
		}
		var v int64
		if diags := gohcl.DecodeExpression(attr.Expr, nil, &v); diags.HasErrors() {
			p.errorf(attr.Expr.Range(), "invalid "+c.name, "%s must be a whole number: %s", c.name, firstDetail(diags))
			continue
		}
		if v < c.min || v > c.max {
			p.errorf(attr.Expr.Range(), "invalid "+c.name, "%s must be between %d and %d, got %d", c.name, c.min, c.max, v)
			continue
		}
		c.set(v)
	}
	if cc.KeepHashes < cc.FinalDepth {
		p.errorf(rangeOf(attrs, "keep_hashes", block.DefRange), "invalid keep_hashes",
			"keep_hashes (%d) must be at least final_depth (%d): a block that is not final yet must stay disconnectable", cc.KeepHashes, cc.FinalDepth)
	}
	if attr, ok := attrs["poll_interval"]; ok {
		if v, ok := p.duration(attr); ok {
			if v < 10*time.Millisecond || v > time.Hour {
				p.errorf(attr.Expr.Range(), "invalid poll_interval", "poll_interval must be between 10ms and 1h, got %s", v)
			} else {
				cc.PollInterval = v
			}
		}
	}
	if attr, ok := attrs["mempool"]; ok {
		if v, ok := p.boolean(attr); ok {
			cc.Mempool = v
		}
	}
}

// parseChainRPC reads the rpc_* keys of the chain block: the node the chain watcher follows.
func (p *configParser) parseChainRPC(block *hcl.Block, attrs hcl.Attributes, cc *ChainConfig) {
	if attr, ok := attrs["rpc_tls"]; ok {
		if v, ok := p.boolean(attr); ok {
			cc.RPCTLS = v
		}
	}
	host, hasHost := attrs["rpc_host"]
	if !hasHost {
		for _, name := range []string{"rpc_user", "rpc_pass", "rpc_pass_file", "rpc_cert", "rpc_tls"} {
			if attr, ok := attrs[name]; ok {
				p.errorf(attr.NameRange, "missing rpc_host", "%s is set but rpc_host is not; give rpc_host to follow a node, or remove the rpc_ keys to run without a chain watcher", name)
			}
		}
		return
	}
	if v, ok := p.str(host); ok {
		norm, err := normalizeHostPort(v, true)
		if err != nil {
			p.errorf(host.Expr.Range(), "invalid rpc_host", "rpc_host %q: %v", v, err)
		} else {
			cc.RPCHost = norm
		}
	}
	if attr, ok := attrs["rpc_user"]; !ok {
		p.errorf(block.DefRange, "missing rpc_user", "rpc_user is required with rpc_host")
	} else if v, ok := p.str(attr); ok {
		if v == "" {
			p.errorf(attr.Expr.Range(), "empty rpc_user", "rpc_user must not be empty")
		}
		cc.RPCUser = v
	}
	pass, hasPass := attrs["rpc_pass"]
	passFile, hasPassFile := attrs["rpc_pass_file"]
	switch {
	case hasPass && hasPassFile:
		p.errorf(passFile.NameRange, "conflicting rpc_pass_file", "give either rpc_pass or rpc_pass_file, not both")
	case hasPass:
		if v, ok := p.str(pass); ok {
			if v == "" {
				p.errorf(pass.Expr.Range(), "empty rpc_pass", "rpc_pass must not be empty")
			}
			cc.RPCPass = v
		}
	case hasPassFile:
		if path, ok := p.str(passFile); ok {
			b, err := os.ReadFile(p.path(path))
			switch {
			case err != nil:
				p.errorf(passFile.Expr.Range(), "unreadable rpc_pass_file", "%v", err)
			case strings.TrimRight(string(b), "\r\n") == "":
				p.errorf(passFile.Expr.Range(), "empty rpc_pass_file", "%s is empty", p.path(path))
			default:
				cc.RPCPass = strings.TrimRight(string(b), "\r\n")
			}
		}
	default:
		p.errorf(block.DefRange, "missing rpc_pass", "rpc_pass or rpc_pass_file is required with rpc_host")
	}
	if attr, ok := attrs["rpc_cert"]; ok {
		path, ok := p.str(attr)
		if !ok {
			return
		}
		if !cc.RPCTLS {
			p.errorf(attr.Expr.Range(), "conflicting rpc_cert", "rpc_cert is set but rpc_tls is false; a plain-HTTP node has no certificate")
			return
		}
		full := p.path(path)
		pem, err := os.ReadFile(full)
		if err != nil {
			p.errorf(attr.Expr.Range(), "unreadable rpc_cert", "%v", err)
			return
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			p.errorf(attr.Expr.Range(), "invalid rpc_cert", "%s holds no PEM certificate", full)
			return
		}
		cc.RPCCertPath, cc.RPCCert = full, pem
	}
}

// path resolves a path from the file against the file's directory.
func (p *configParser) path(s string) string {
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.baseDir, s)
	}
	return filepath.Clean(s)
}

func (p *configParser) parseNode(block *hcl.Block, cfg *Config) {
	id := block.Labels[0]
	idRange := block.DefRange
	if len(block.LabelRanges) > 0 {
		idRange = block.LabelRanges[0]
	}
	if !idPattern.MatchString(id) {
		p.errorf(idRange, "invalid node id", "node id %q must be 1-64 characters from [A-Za-z0-9._-], starting with a letter or digit", id)
	}
	if len(cfg.Nodes) >= maxNodes {
		p.errorf(block.DefRange, "too many nodes", "at most %d node blocks are allowed", maxNodes)
		return
	}
	for _, other := range cfg.Nodes {
		if other.ID == id {
			p.errorf(idRange, "duplicate node id", "node %q is defined twice", id)
			return
		}
	}
	content, diags := block.Body.Content(nodeSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	nc := NodeConfig{ID: id}
	fields := []struct {
		name string
		dst  *string
		addr bool
	}{
		{"region", &nc.Region, false},
		{"raft_addr", &nc.RaftAddr, true},
		{"gossip_addr", &nc.GossipAddr, true},
		{"api_addr", &nc.APIAddr, true},
		{"data_dir", &nc.DataDir, false},
	}
	for _, f := range fields {
		attr, ok := content.Attributes[f.name]
		if !ok {
			continue // Content already reported the missing attribute.
		}
		v, ok := p.str(attr)
		if !ok {
			continue
		}
		switch {
		case strings.TrimSpace(v) == "":
			p.errorf(attr.Expr.Range(), "empty "+f.name, "node %q: %s must not be empty", id, f.name)
			continue
		case len(v) > maxFieldLen:
			p.errorf(attr.Expr.Range(), "invalid "+f.name, "node %q: %s is longer than %d bytes", id, f.name, maxFieldLen)
			continue
		}
		if f.addr {
			norm, err := normalizeHostPort(v, f.name != "api_addr")
			if err != nil {
				p.errorf(attr.Expr.Range(), "invalid "+f.name, "node %q: %s %q: %v", id, f.name, v, err)
				continue
			}
			if owner := p.addrOwner(cfg, nc, norm); owner != "" {
				p.errorf(attr.Expr.Range(), "duplicate address", "node %q: %s %s is already used by %s", id, f.name, v, owner)
				continue
			}
			v = norm
		}
		if f.name == "data_dir" {
			if !filepath.IsAbs(v) {
				v = filepath.Join(p.baseDir, v)
			}
			v = filepath.Clean(v)
			for _, other := range cfg.Nodes {
				if other.DataDir == v {
					p.errorf(attr.Expr.Range(), "duplicate data_dir", "node %q: data_dir %s is already used by node %q", id, v, other.ID)
				}
			}
		}
		*f.dst = v
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"tls_cert", &nc.TLSCert}, {"tls_key", &nc.TLSKey}} {
		if attr, ok := content.Attributes[f.name]; ok {
			if v, ok := p.str(attr); ok {
				if strings.TrimSpace(v) == "" {
					p.errorf(attr.Expr.Range(), "empty "+f.name, "node %q: %s must not be empty", id, f.name)
					continue
				}
				*f.dst = p.path(v)
			}
		}
	}
	if attr, ok := content.Attributes["voter"]; ok {
		if v, ok := p.boolean(attr); ok {
			nc.NonVoter = !v
		}
	}
	cfg.Nodes = append(cfg.Nodes, nc)
}

// addrOwner names the field that already claims addr, across every node and every address kind:
// raft and gossip listeners on one port would collide whatever their names.
func (p *configParser) addrOwner(cfg *Config, current NodeConfig, addr string) string {
	all := append(append([]NodeConfig(nil), cfg.Nodes...), current)
	for _, n := range all {
		for _, a := range []struct{ name, v string }{{"raft_addr", n.RaftAddr}, {"gossip_addr", n.GossipAddr}, {"api_addr", n.APIAddr}} {
			if a.v != "" && a.v == addr {
				return fmt.Sprintf("node %q %s", n.ID, a.name)
			}
		}
	}
	return ""
}

// normalizeHostPort checks a host:port and returns it with a lower-cased host. Peers dial raft
// and gossip addresses, so those may not be a wildcard such as 0.0.0.0.
func normalizeHostPort(s string, mustBeDialable bool) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", errors.New("host is empty")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number between 1 and 65535", port)
	}
	if ip := net.ParseIP(host); ip != nil {
		if mustBeDialable && ip.IsUnspecified() {
			return "", errors.New("peers dial this address, so it must not be a wildcard")
		}
		return net.JoinHostPort(ip.String(), strconv.Itoa(n)), nil
	}
	if strings.ContainsAny(host, " /\\@") {
		return "", fmt.Errorf("host %q is not a valid host name", host)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(n)), nil
}

func (p *configParser) str(attr *hcl.Attribute) (string, bool) {
	var s string
	if diags := gohcl.DecodeExpression(attr.Expr, nil, &s); diags.HasErrors() {
		p.errorf(attr.Expr.Range(), "invalid "+attr.Name, "%s must be a string: %s", attr.Name, firstDetail(diags))
		return "", false
	}
	return s, true
}

func (p *configParser) boolean(attr *hcl.Attribute) (bool, bool) {
	var v bool
	if diags := gohcl.DecodeExpression(attr.Expr, nil, &v); diags.HasErrors() {
		p.errorf(attr.Expr.Range(), "invalid "+attr.Name, "%s must be true or false: %s", attr.Name, firstDetail(diags))
		return false, false
	}
	return v, true
}

func (p *configParser) duration(attr *hcl.Attribute) (time.Duration, bool) {
	s, ok := p.str(attr)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errorf(attr.Expr.Range(), "invalid "+attr.Name, "%s %q is not a duration such as \"300ms\" or \"5s\"", attr.Name, s)
		return 0, false
	}
	return d, true
}

func firstDetail(diags hcl.Diagnostics) string {
	if len(diags) == 0 {
		return "invalid value"
	}
	if diags[0].Detail != "" {
		return diags[0].Detail
	}
	return diags[0].Summary
}
