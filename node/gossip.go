package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// nodeMeta is what every node advertises in memberlist. It must stay under
// memberlist.MetaMaxSize (512 bytes) as JSON; field lengths are bounded by the config limits.
type nodeMeta struct {
	RaftID     string `json:"raft_id"`
	RaftAddr   string `json:"raft_addr"`
	APIAddr    string `json:"api_addr"`
	Region     string `json:"region"`
	Version    string `json:"version"`
	HasState   bool   `json:"has_state"`
	CmdVersion uint32 `json:"cmd_version"`
	// CmdTypes is the set of command types this binary applies (fsm.CommandTypes); zero from a
	// binary that predates it, which applies fsm.BaselineCommandTypes.
	CmdTypes uint64 `json:"cmd_types,omitempty"`
	// Formats is the newest stored format this binary reads (fsm.LatestFormat); zero from a
	// binary that predates it (see readsFormat).
	Formats uint32 `json:"formats,omitempty"`
	// Removed is set by a node that saw itself leave the Raft configuration, so the leader does
	// not add it straight back.
	Removed bool `json:"removed,omitempty"`
	// Voters are the Raft ids of the voters in this node's latest configuration (nodes with
	// state only). A node with a wiped data dir reads them to learn whether its old identity
	// is still a voter.
	Voters []string `json:"voters,omitempty"`
	// Bootstrap names the voter set this node is ready to bootstrap with (or did bootstrap
	// with); nodes bootstrap only when all of them advertise the same one.
	Bootstrap string `json:"bootstrap,omitempty"`
}

// readsFormat is the newest stored format the node behind m reads. Binaries from before the
// formats field read format 2 if they apply SWITCH_FORMAT (the release that introduced it
// wrote format 2) and the baseline if not.
func (m nodeMeta) readsFormat() uint32 {
	switch {
	case m.Formats != 0:
		return m.Formats
	case m.CmdTypes&(1<<uint(bankdv1.CommandType_COMMAND_TYPE_SWITCH_FORMAT)) != 0:
		return fsm.FormatGroupedHistory
	default:
		return fsm.FormatBaseline
	}
}

// peer is one gossip member as this node sees it.
type peer struct {
	NodeID string
	// State is "alive" or "dead" (see gossip for why "suspect" and "left" are not reported).
	State  string
	Meta   nodeMeta
	MetaOK bool
}

// gossip wraps memberlist with the node's metadata and its own view of the members. The view is
// copied inside memberlist's event callbacks: the *memberlist.Node values Members returns are
// mutated by memberlist under its own lock, so reading them later would race. A consequence is
// that members are "alive" until declared dead or left; "suspect" is not observed.
type gossip struct {
	n    *Node
	list *memberlist.Memberlist
	log  *slog.Logger
	// keyring is memberlist's encryption keyring, nil under insecure_plaintext.
	keyring *memberlist.Keyring
	// expected maps each configured node id to the gossip address it must speak from.
	expected map[string]string

	mu      sync.Mutex
	meta    nodeMeta
	members map[string]peer
}

const (
	joinBackoffMin     = 100 * time.Millisecond
	joinBackoffMax     = 5 * time.Second
	rejoinInterval     = 5 * time.Second
	gossipUpdateBudget = 2 * time.Second
)

func startGossip(n *Node, hasState, removed bool) (*gossip, error) {
	g := &gossip{
		n:   n,
		log: n.log.With("component", "gossip"),
		meta: nodeMeta{
			RaftID:     n.raftID,
			RaftAddr:   n.self.RaftAddr,
			APIAddr:    n.self.APIAddr,
			Region:     n.self.Region,
			Version:    n.opts.Version,
			HasState:   hasState,
			CmdVersion: fsm.CommandVersion,
			CmdTypes:   fsm.CommandTypes(),
			Formats:    fsm.LatestFormat,
			Removed:    removed,
		},
		members: map[string]peer{},
	}
	if n.opts.advertisedTypes != 0 {
		g.meta.CmdTypes, g.meta.Formats = n.opts.advertisedTypes, 0
	}
	if b, err := json.Marshal(g.meta); err != nil || len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip metadata is %d bytes, more than memberlist's %d (version string too long?)", len(b), memberlist.MetaMaxSize)
	}
	host, portStr, err := net.SplitHostPort(n.self.GossipAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip_addr %q: %w", n.self.GossipAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gossip_addr %q: port: %w", n.self.GossipAddr, err)
	}
	ip, err := net.ResolveIPAddr("ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve gossip host %q: %w", host, err)
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = n.self.ID
	mc.BindAddr = ip.IP.String()
	mc.BindPort = port
	mc.AdvertiseAddr = ip.IP.String()
	mc.AdvertisePort = port
	mc.Delegate = g
	mc.Events = g
	mc.Alive = g
	mc.Merge = g
	mc.Logger = newStdLogger(n.log, "memberlist", n.opts.RaftLogLevel.Level())
	g.expected = expectedGossipAddrs(n.cfg)
	if !n.cfg.InsecurePlaintext {
		keys, err := readKeyring(n.cfg.Gossip.KeyringFile)
		if err != nil {
			return nil, err
		}
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring %s: %w", n.cfg.Gossip.KeyringFile, err)
		}
		g.keyring = kr
		mc.Keyring = kr
		// Both default to true; set them so that no later default change opens gossip up.
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	timing := n.cfg.Gossip.Timing.merge(ProfileGossipTiming(n.cfg.Profile, ip.IP.IsLoopback()))
	mc.ProbeInterval, mc.ProbeTimeout = timing.ProbeInterval, timing.ProbeTimeout
	mc.GossipInterval, mc.SuspicionMult = timing.GossipInterval, timing.SuspicionMult
	if n.cfg.Profile == ProfileWAN {
		wan := memberlist.DefaultWANConfig()
		mc.TCPTimeout, mc.PushPullInterval, mc.GossipNodes = wan.TCPTimeout, wan.PushPullInterval, wan.GossipNodes
	} else if ip.IP.IsLoopback() {
		mc.TCPTimeout = time.Second
		mc.PushPullInterval = 2 * time.Second
		mc.GossipToTheDeadTime = 5 * time.Second
	}
	list, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", n.self.GossipAddr, err)
	}
	g.list = list
	return g, nil
}

// joinLoop joins the other configured nodes: with backoff until the first join succeeds, then
// every rejoinInterval for any configured node missing from the live members (a healed
// partition, or a whole-cluster restart).
func (g *gossip) joinLoop(ctx context.Context) {
	backoff := joinBackoffMin
	joined := false
	for {
		missing := g.missingPeerAddrs()
		if len(missing) > 0 {
			count, err := g.list.Join(missing)
			switch {
			case count > 0:
				if !joined {
					g.log.Info("joined gossip", "contacted", count)
				}
				joined = true
			case !joined:
				g.log.Debug("gossip join failed; retrying", "err", err, "backoff", backoff)
			}
		} else {
			joined = true
		}
		wait := rejoinInterval
		if !joined {
			wait = backoff
			backoff = min(backoff*2, joinBackoffMax)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (g *gossip) missingPeerAddrs() []string {
	live := map[string]bool{}
	for _, p := range g.peers() {
		live[p.NodeID] = p.State == "alive"
	}
	var addrs []string
	for _, nc := range g.n.cfg.Nodes {
		if nc.ID != g.n.self.ID && !live[nc.ID] {
			addrs = append(addrs, nc.GossipAddr)
		}
	}
	return addrs
}

// readsFormat is the newest stored format this node advertises it reads.
func (g *gossip) readsFormat() uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.meta.readsFormat()
}

// setHasState advertises that this node now has Raft state.
func (g *gossip) setHasState() {
	g.mu.Lock()
	changed := !g.meta.HasState
	g.meta.HasState = true
	g.mu.Unlock()
	if changed {
		if err := g.list.UpdateNode(gossipUpdateBudget); err != nil {
			g.log.Warn("advertise has_state", "err", err)
		}
	}
}

// setRemoved advertises whether this node has been removed from the Raft configuration.
func (g *gossip) setRemoved(removed bool) {
	g.mu.Lock()
	changed := g.meta.Removed != removed
	g.meta.Removed = removed
	g.mu.Unlock()
	if changed {
		if err := g.list.UpdateNode(gossipUpdateBudget); err != nil {
			g.log.Warn("advertise removed", "removed", removed, "err", err)
		}
	}
}

// setBootstrapIntent advertises the voter set this node is ready to bootstrap with.
func (g *gossip) setBootstrapIntent(intent string) {
	g.mu.Lock()
	changed := g.meta.Bootstrap != intent
	g.meta.Bootstrap = intent
	g.mu.Unlock()
	if changed {
		if err := g.list.UpdateNode(gossipUpdateBudget); err != nil {
			g.log.Warn("advertise bootstrap intent", "err", err)
		}
	}
}

// setVoters advertises the voter set of this node's latest Raft configuration.
func (g *gossip) setVoters(voters []string) {
	sort.Strings(voters)
	g.mu.Lock()
	changed := !slices.Equal(g.meta.Voters, voters)
	old := g.meta.Voters
	g.meta.Voters = voters
	if b, err := json.Marshal(g.meta); err != nil || len(b) > memberlist.MetaMaxSize {
		g.meta.Voters = old
		changed = false
		g.log.Warn("voter list does not fit in gossip metadata; not advertised", "voters", len(voters))
	}
	g.mu.Unlock()
	if changed {
		if err := g.list.UpdateNode(gossipUpdateBudget); err != nil {
			g.log.Warn("advertise voters", "err", err)
		}
	}
}

// peers returns every member this node knows of, itself included, sorted by node id.
func (g *gossip) peers() []peer {
	g.mu.Lock()
	out := make([]peer, 0, len(g.members))
	for _, p := range g.members {
		out = append(out, p)
	}
	g.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

func toPeer(m *memberlist.Node) peer {
	p := peer{NodeID: m.Name}
	if err := json.Unmarshal(m.Meta, &p.Meta); err == nil && p.Meta.RaftID != "" {
		p.MetaOK = true
	}
	return p
}

func (g *gossip) stop(graceful bool) error {
	if graceful {
		if err := g.list.Leave(gossipLeaveTimeout); err != nil {
			g.log.Warn("leave gossip", "err", err)
		}
	}
	if err := g.list.Shutdown(); err != nil {
		return fmt.Errorf("stop gossip: %w", err)
	}
	return nil
}

// memberlist.Delegate: only metadata is used; no user messages or state exchange.

func (g *gossip) NodeMeta(limit int) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, err := json.Marshal(g.meta)
	if err != nil || len(b) > limit {
		g.log.Error("gossip metadata does not fit", "bytes", len(b), "limit", limit, "err", err)
		return nil
	}
	return b
}

func (g *gossip) NotifyMsg([]byte)                           {}
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (g *gossip) LocalState(join bool) []byte                { return nil }
func (g *gossip) MergeRemoteState(buf []byte, join bool)     {}

// memberlist.EventDelegate: called with memberlist's lock held, so the node is copied here.

func (g *gossip) record(m *memberlist.Node, departed bool) peer {
	p := toPeer(m)
	if departed {
		// memberlist does not update Node.State before NotifyLeave, and does not tell a
		// graceful leave from a failure here; both are reported as dead.
		p.State = "dead"
	} else {
		p.State = "alive"
	}
	g.mu.Lock()
	if _, known := g.members[m.Name]; known || len(g.members) < maxNodes*4 {
		g.members[m.Name] = p
	}
	g.mu.Unlock()
	return p
}

func (g *gossip) NotifyJoin(m *memberlist.Node) {
	g.record(m, false)
	g.log.Debug("member joined", "member", m.Name)
}

func (g *gossip) NotifyLeave(m *memberlist.Node) {
	g.record(m, true)
	g.log.Info("member departed", "member", m.Name)
}

func (g *gossip) NotifyUpdate(m *memberlist.Node) { g.record(m, false) }
