package node

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Deployment profiles: the Raft and gossip timings for the links between a cluster's nodes.
// Keys given in the raft or gossip block override the profile's values.
const (
	// ProfileLAN is for nodes one network hop apart (one machine, one data centre, zones of one
	// region: round trips under a few milliseconds). The default.
	ProfileLAN = "lan"
	// ProfileWAN is for voters in different regions (round trips of 30-150 ms): heartbeats and
	// failure detection tolerate a lost packet and a retransmission without an election.
	ProfileWAN = "wan"
)

// Profiles lists the deployment profiles in the order docs show them.
var Profiles = []string{ProfileLAN, ProfileWAN}

// PlacementConfig is the `placement` block: where leadership should live.
type PlacementConfig struct {
	// LeaderRegion is the region leadership is moved back to once a voter there is healthy
	// (empty: wherever Raft elects it).
	LeaderRegion string
	// LeaderRegionSettle is how long a voter in LeaderRegion must be alive and caught up
	// before leadership is handed to it, so a flapping node does not bounce leadership.
	LeaderRegionSettle time.Duration
}

// DefaultLeaderRegionSettle is the placement block's leader_region_settle when it is left out.
const DefaultLeaderRegionSettle = 10 * time.Second

// GossipTiming holds memberlist's failure-detection timings.
type GossipTiming struct {
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
}

// ProfileRaftConfig returns the raft block's defaults for a deployment profile.
func ProfileRaftConfig(profile string) RaftConfig {
	rc := DefaultRaftConfig()
	if profile == ProfileWAN {
		// Heartbeats go every heartbeat_timeout/10 (100 ms); a follower waits 1-2 s without one
		// before it calls an election: several round trips and a TCP retransmission.
		rc.HeartbeatTimeout = time.Second
		rc.ElectionTimeout = time.Second
		rc.LeaderLeaseTimeout = 500 * time.Millisecond
		rc.CommitTimeout = 50 * time.Millisecond
	}
	return rc
}

// ProfileGossipTiming returns the gossip timings of a deployment profile: memberlist's WAN
// configuration for ProfileWAN; for ProfileLAN memberlist's LAN one, or, when the nodes share
// one machine (loopback addresses), timings that notice a dead process in well under a second.
func ProfileGossipTiming(profile string, loopback bool) GossipTiming {
	switch {
	case profile == ProfileWAN:
		return GossipTiming{ProbeInterval: 5 * time.Second, ProbeTimeout: 3 * time.Second, GossipInterval: 500 * time.Millisecond, SuspicionMult: 6}
	case loopback:
		return GossipTiming{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond, GossipInterval: 50 * time.Millisecond, SuspicionMult: 3}
	default:
		return GossipTiming{ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond, GossipInterval: 200 * time.Millisecond, SuspicionMult: 4}
	}
}

// merge returns t with the zero fields taken from defaults.
func (t GossipTiming) merge(defaults GossipTiming) GossipTiming {
	if t.ProbeInterval == 0 {
		t.ProbeInterval = defaults.ProbeInterval
	}
	if t.ProbeTimeout == 0 {
		t.ProbeTimeout = defaults.ProbeTimeout
	}
	if t.GossipInterval == 0 {
		t.GossipInterval = defaults.GossipInterval
	}
	if t.SuspicionMult == 0 {
		t.SuspicionMult = defaults.SuspicionMult
	}
	return t
}

var placementSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "leader_region"}, {Name: "leader_region_settle"},
}}

func (p *configParser) parseProfile(attr *hcl.Attribute, cfg *Config) {
	v, ok := p.str(attr)
	if !ok {
		return
	}
	if !slices.Contains(Profiles, v) {
		p.errorf(attr.Expr.Range(), "invalid profile", "profile must be one of %s, got %q", strings.Join(Profiles, ", "), v)
		return
	}
	cfg.Profile = v
	cfg.Raft = ProfileRaftConfig(v)
}

func (p *configParser) parsePlacement(block *hcl.Block, pc *PlacementConfig) {
	content, diags := block.Body.Content(placementSchema)
	p.diags = append(p.diags, diags...)
	if content == nil {
		return
	}
	if attr, ok := content.Attributes["leader_region"]; ok {
		if v, ok := p.nonEmptyStr(attr); ok {
			pc.LeaderRegion = v
		}
	}
	if attr, ok := content.Attributes["leader_region_settle"]; ok {
		if v, ok := p.duration(attr); ok {
			if v < 100*time.Millisecond || v > time.Hour {
				p.errorf(attr.Expr.Range(), "invalid leader_region_settle", "leader_region_settle must be between 100ms and 1h, got %s", v)
			} else {
				pc.LeaderRegionSettle = v
			}
		}
	}
}

// checkPlacement checks what needs every node block: at least one voter, and a leader_region
// that holds one.
func (p *configParser) checkPlacement(body hcl.Body, block *hcl.Block, cfg *Config) {
	if len(cfg.Nodes) > 0 && len(cfg.Voters()) == 0 {
		p.errorf(body.MissingItemRange(), "no voters", "every node has voter = false; at least one node must vote")
	}
	if block == nil || cfg.Placement.LeaderRegion == "" {
		return
	}
	for _, n := range cfg.Voters() {
		if n.Region == cfg.Placement.LeaderRegion {
			return
		}
	}
	p.errorf(block.DefRange, "invalid leader_region", "leader_region %q holds no voter; voters are in %s", cfg.Placement.LeaderRegion, strings.Join(cfg.voterRegions(), ", "))
}

// Voters returns the node blocks without voter = false, in file order.
func (c *Config) Voters() []NodeConfig {
	var out []NodeConfig
	for _, n := range c.Nodes {
		if !n.NonVoter {
			out = append(out, n)
		}
	}
	return out
}

func (c *Config) voterRegions() []string {
	var out []string
	for _, n := range c.Voters() {
		if !slices.Contains(out, n.Region) {
			out = append(out, n.Region)
		}
	}
	sort.Strings(out)
	return out
}

// PlacementWarnings describes what in the layout of voters across regions an operator should
// know before running it: a region that holds a quorum of the voters (losing it stops writes;
// a partition that isolates it leaves the others without a quorum), and an even number of
// voters (one more voter tolerates no more failures). Every node logs them at start.
func (c *Config) PlacementWarnings() []string {
	voters := c.Voters()
	if len(voters) <= 1 {
		return nil
	}
	quorum := len(voters)/2 + 1
	count := map[string][]string{}
	for _, n := range voters {
		count[n.Region] = append(count[n.Region], n.ID)
	}
	var out []string
	for _, region := range c.voterRegions() {
		ids := count[region]
		if len(ids) < quorum {
			continue
		}
		if len(count) == 1 {
			out = append(out, fmt.Sprintf("all %d voters are in region %q: losing that region loses the cluster", len(voters), region))
			continue
		}
		out = append(out, fmt.Sprintf("region %q holds %d of %d voters (%s), a quorum: losing it stops writes everywhere; spread the voters so that no region holds %d", region, len(ids), len(voters), strings.Join(ids, ", "), quorum))
	}
	if len(voters)%2 == 0 {
		out = append(out, fmt.Sprintf("%d voters tolerate no more failures than %d; make one a non-voter (voter = false) or add one", len(voters), len(voters)-1))
	}
	return out
}
