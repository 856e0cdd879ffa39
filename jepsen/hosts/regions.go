package hosts

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/bankd/bankd/jepsen/netproxy"
)

// Regions puts the hosts in regions, round-robin (host i in region i mod the count), and
// delays the TCP connections between every two hosts by the round-trip time between their
// regions. This kernel has no tc netem, so the delay is made above TCP: for every ordered pair
// of hosts (a, b) and every TCP port b serves its peers on (Raft and API), a netproxy Link in
// the harness listens on the bridge address and forwards to b's address and port, delaying
// each direction by half the pair's RTT (plus jitter), and a DNAT rule in a's namespace sends
// a's connections to b's port to that Link instead. Nothing changes for bankd: cluster.hcl
// still names b's own address, and mutual TLS still proves b's identity (the certificate is
// checked, not the address the connection came from).
//
// Not delayed: gossip (memberlist speaks UDP, which a TCP proxy cannot carry, and its TCP
// port is left direct so that probes and state syncs see the same network), and the harness's
// own clients, which talk to every host straight over the bridge as a client next to it would.
type Regions struct {
	// RTT[r][s] is the round-trip time between regions r and s, RTT[r][r] the one within
	// region r. Square, symmetric, in whole milliseconds (a Link's resolution). A zero RTT adds
	// nothing: the connection still crosses a Link, whose hop alone costs a fraction of a
	// millisecond.
	RTT [][]time.Duration
	// Jitter widens each direction's delay between two regions to [d-Jitter, d+Jitter); links
	// within a region get none.
	Jitter time.Duration
}

// DefaultRegionRTTs are the round-trip times between three regions, in the order of the pairs
// NewRegions takes: r0-r1, r0-r2, r1-r2. Two regions take the first.
var DefaultRegionRTTs = []time.Duration{30 * time.Millisecond, 50 * time.Millisecond, 80 * time.Millisecond}

// DefaultRegionJitter is the jitter of DefaultRegions' links between regions, each way.
const DefaultRegionJitter = time.Millisecond

// maxRegions bounds the regions; every host may be a region of its own.
const maxRegions = maxNodes

// NewRegions returns count regions whose round-trip times between each other are between, in
// the order of the pairs (0,1), (0,2), ..., (0,count-1), (1,2), ...; within is the RTT inside
// every region. Every time is rounded to whole milliseconds.
func NewRegions(count int, between []time.Duration, within, jitter time.Duration) (Regions, error) {
	if count < 1 || count > maxRegions {
		return Regions{}, fmt.Errorf("regions: %d, want 1-%d", count, maxRegions)
	}
	if pairs := count * (count - 1) / 2; len(between) != pairs {
		return Regions{}, fmt.Errorf("regions: %d regions need %d round-trip times between them (r0-r1, r0-r2, ..., r1-r2, ...), got %d",
			count, pairs, len(between))
	}
	r := Regions{RTT: make([][]time.Duration, count), Jitter: jitter.Round(time.Millisecond)}
	for i := range r.RTT {
		r.RTT[i] = make([]time.Duration, count)
		r.RTT[i][i] = within.Round(time.Millisecond)
	}
	k := 0
	for i := range count {
		for j := i + 1; j < count; j++ {
			r.RTT[i][j] = between[k].Round(time.Millisecond)
			r.RTT[j][i] = r.RTT[i][j]
			k++
		}
	}
	return r, r.validate()
}

// DefaultRegions returns count (2 or 3) regions with DefaultRegionRTTs between them, nothing
// added within a region, and DefaultRegionJitter.
func DefaultRegions(count int) (Regions, error) {
	switch count {
	case 2:
		return NewRegions(2, DefaultRegionRTTs[:1], 0, DefaultRegionJitter)
	case 3:
		return NewRegions(3, DefaultRegionRTTs, 0, DefaultRegionJitter)
	}
	return Regions{}, fmt.Errorf("regions: no default round-trip times for %d regions; give them (r0-r1, r0-r2, ..., r1-r2, ...)", count)
}

// Count is the number of regions; 0 means none (no delay, no Links).
func (r Regions) Count() int { return len(r.RTT) }

// Of returns the region of host i.
func (r Regions) Of(i int) int {
	if r.Count() == 0 {
		return 0
	}
	return i % r.Count()
}

// Between returns the round-trip time between hosts a and b.
func (r Regions) Between(a, b int) time.Duration {
	if r.Count() == 0 {
		return 0
	}
	return r.RTT[r.Of(a)][r.Of(b)]
}

// Shape is the Link shape of host a's connections to host b: half the RTT each way (the odd
// millisecond upstream), with jitter between regions.
func (r Regions) Shape(a, b int) netproxy.Shape {
	rtt := r.Between(a, b)
	down := (rtt / 2).Truncate(time.Millisecond)
	s := netproxy.Shape{Up: rtt - down, Down: down}
	if r.Of(a) != r.Of(b) {
		s.Jitter = min(r.Jitter, s.Down)
	}
	return s
}

func (r Regions) validate() error {
	n := r.Count()
	if n > maxRegions {
		return fmt.Errorf("regions: %d, want at most %d", n, maxRegions)
	}
	if r.Jitter < 0 || r.Jitter%time.Millisecond != 0 {
		return fmt.Errorf("regions: jitter %s, want whole milliseconds, not negative", r.Jitter)
	}
	for i, row := range r.RTT {
		if len(row) != n {
			return fmt.Errorf("regions: RTT row %d has %d columns, want %d", i, len(row), n)
		}
		for j, d := range row {
			if d < 0 || d%time.Millisecond != 0 {
				return fmt.Errorf("regions: RTT r%d-r%d %s, want whole milliseconds, not negative", i, j, d)
			}
			if d != r.RTT[j][i] {
				return fmt.Errorf("regions: RTT r%d-r%d is %s but r%d-r%d is %s", i, j, d, j, i, r.RTT[j][i])
			}
		}
	}
	return nil
}

// String describes the regions, e.g. "3 regions, rtt r0-r1 30ms r0-r2 50ms r1-r2 80ms, within
// 0s, jitter 1ms".
func (r Regions) String() string {
	if r.Count() == 0 {
		return "no regions"
	}
	var pairs []string
	for i := range r.Count() {
		for j := i + 1; j < r.Count(); j++ {
			pairs = append(pairs, fmt.Sprintf("r%d-r%d %s", i, j, r.RTT[i][j]))
		}
	}
	within := r.RTT[0][0].String()
	for i := range r.Count() {
		if r.RTT[i][i] != r.RTT[0][0] {
			within = "varies"
		}
	}
	return fmt.Sprintf("%d regions, rtt %s, within %s, jitter %s", r.Count(), strings.Join(pairs, " "), within, r.Jitter)
}

// peerPorts are the TCP ports a host serves its peers on, each carried by a Link per peer.
// The gossip port is not among them (see Regions).
var peerPorts = []struct {
	name string
	port int
}{{"raft", raftPort}, {"api", apiPort}}

// Regions returns the hosts of each region (nil without regions).
func (c *Cluster) Regions() [][]int {
	n := c.regions.Count()
	if n == 0 {
		return nil
	}
	out := make([][]int, n)
	for i := range c.Hosts {
		r := c.regions.Of(i)
		out[r] = append(out[r], i)
	}
	return out
}

// RegionOf returns host i's region (0 without regions).
func (c *Cluster) RegionOf(i int) int { return c.regions.Of(i) }

// RTT returns the round-trip time the Links add between hosts a and b (0 without regions).
func (c *Cluster) RTT(a, b int) time.Duration { return c.regions.Between(a, b) }

// startLinks starts one Link per ordered pair of hosts and peer port and points each host's
// connections to its peers at them. Cleanup closes the Links; the DNAT rules go with the
// namespaces.
func (c *Cluster) startLinks(ctx context.Context) error {
	c.proxies = netproxy.NewServer(c.log)
	n := len(c.Hosts)
	c.links = make([][]map[int]int, n)
	for a, from := range c.Hosts {
		c.links[a] = make([]map[int]int, n)
		var nat strings.Builder
		nat.WriteString("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n")
		for b, to := range c.Hosts {
			if a == b {
				continue
			}
			c.links[a][b] = map[int]int{}
			for _, p := range peerPorts {
				name := fmt.Sprintf("%s->%s:%s", from.ID, to.ID, p.name)
				upstream := net.JoinHostPort(to.IP, strconv.Itoa(p.port))
				l, err := c.proxies.Add(name, net.JoinHostPort(c.GatewayIP, "0"), upstream, c.regions.Shape(a, b))
				if err != nil {
					return err
				}
				c.links[a][b][p.port] = l.Port()
				fmt.Fprintf(&nat, "-A OUTPUT -d %s/32 -p tcp -m tcp --dport %d -m comment --comment %s -j DNAT --to-destination %s:%d\n",
					to.IP, p.port, c.marker(), c.GatewayIP, l.Port())
			}
		}
		nat.WriteString("COMMIT\n")
		if _, err := run(ctx, []byte(nat.String()), "ip", "netns", "exec", from.Netns, "iptables-restore", "-w"); err != nil {
			return fmt.Errorf("links of %s: %w", from.ID, err)
		}
	}
	c.log.Info("links started", "regions", c.regions.String(), "links", len(c.proxies.Links()))
	return nil
}

// marker is the iptables comment on every rule of this run.
func (c *Cluster) marker() string { return prefix + ":" + c.RunID }

// linkDropRules returns the filter rules of host i's namespace that carry the drops between i
// and peer j over the Links, beside the address rules for direct traffic. A connection i makes
// to j crosses the Link on port P of the bridge address, so both its directions can be cut in
// i's namespace: i's bytes leave to P, j's come back from P. The connections j makes to i are
// cut in j's namespace the same way.
func (c *Cluster) linkDropRules(i, j int) []string {
	if c.links == nil {
		return nil
	}
	var rules []string
	for _, p := range peerPorts {
		port := c.links[i][j][p.port]
		if c.drops[i][j] {
			rules = append(rules, fmt.Sprintf("-A OUTPUT -d %s/32 -p tcp -m tcp --dport %d -j DROP", c.GatewayIP, port))
		}
		if c.drops[j][i] {
			rules = append(rules, fmt.Sprintf("-A INPUT -s %s/32 -p tcp -m tcp --sport %d -j DROP", c.GatewayIP, port))
		}
	}
	return rules
}

// closeLinks stops every Link (their connections drop).
func (c *Cluster) closeLinks() error {
	if c.proxies == nil {
		return nil
	}
	err := c.proxies.Close()
	if err != nil {
		err = fmt.Errorf("close links: %w", err)
	}
	return err
}
