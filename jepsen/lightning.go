package jepsen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/bankd/bankd/jepsen/fakelnd"
	"github.com/bankd/bankd/jepsen/hosts"
	"github.com/bankd/bankd/jepsen/nemesis"
)

// lndNodes is how many simulated lnd nodes the Lightning workload's pool has.
const lndNodes = 3

// fakelndBin is the fakelnd command, built once per harness process.
var fakelndBin struct {
	once sync.Once
	path string
	err  error
}

func buildFakelnd(ctx context.Context) (string, error) {
	fakelndBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "bkj-fakelnd-")
		if err != nil {
			fakelndBin.err = err
			return
		}
		fakelndBin.path = filepath.Join(dir, "fakelnd")
		fakelndBin.err = fakelnd.Build(ctx, fakelndBin.path)
	})
	return fakelndBin.path, fakelndBin.err
}

// lightningRig is the Lightning workload's simulated lnd network: its own process on the
// bridge, named in cluster.hcl's lnd blocks, and the lnd nemesis's faults on it.
type lightningRig struct {
	log     *slog.Logger
	dir     string
	seed    uint64
	bin     string
	proc    *fakelnd.Process
	cluster *hosts.Cluster // set once the hosts exist

	mu        sync.Mutex
	partition []string // the iptables rule (namespace and arguments) cutting a node off, if any
}

func newLightningRig(ctx context.Context, dir string, seed uint64, log *slog.Logger) (*lightningRig, error) {
	bin, err := buildFakelnd(ctx)
	if err != nil {
		return nil, err
	}
	return &lightningRig{log: log, dir: filepath.Join(dir, "lnd"), seed: seed, bin: bin}, nil
}

// clusterConfig starts the network on the bridge address and returns the lnd blocks.
func (r *lightningRig) clusterConfig(gatewayIP string) (string, error) {
	p, err := fakelnd.Start(context.Background(), fakelnd.ProcessConfig{Bin: r.bin, IP: gatewayIP, Dir: r.dir, Nodes: lndNodes, Seed: r.seed})
	if err != nil {
		return "", err
	}
	r.proc = p
	var b strings.Builder
	for _, n := range p.Nodes {
		fmt.Fprintf(&b, "lnd %q {\n  address  = %q\n  tls_cert = %q\n  macaroon = %q\n}\n\n", n.Name, n.Address, n.TLSCertPath, n.MacaroonPath)
	}
	return b.String(), nil
}

func (r *lightningRig) Close() {
	if r.proc == nil {
		return
	}
	if err := r.proc.Stop(); err != nil {
		r.log.Warn("stop fakelnd", "err", err)
	}
}

// LndNodes implements nemesis.LndFaults.
func (r *lightningRig) LndNodes() []string {
	var names []string
	for _, n := range r.proc.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// InjectLnd implements nemesis.LndFaults.
func (r *lightningRig) InjectLnd(ctx context.Context, variant, node string, leader int) (string, error) {
	c := r.proc.Control
	switch variant {
	case nemesis.LndKill:
		return "", c.Kill(ctx, node)
	case nemesis.LndSlow:
		delay := int64(1000 + 1000*(r.seed%3))
		return fmt.Sprintf("delay %d ms", delay), c.SetKnobs(ctx, node, fakelnd.Knobs{DelayMs: delay})
	case nemesis.LndErrors:
		return "", c.SetKnobs(ctx, node, fakelnd.Knobs{Errors: true})
	case nemesis.LndHold, nemesis.LndHoldLeaderChange:
		return "", c.SetKnobs(ctx, node, fakelnd.Knobs{Hold: true})
	case nemesis.LndPartitionLeader:
		if leader < 0 || r.cluster == nil {
			return "no leader known: nothing cut", nil
		}
		return r.cutOff(ctx, node, leader)
	}
	return "", fmt.Errorf("unknown lnd fault %q", variant)
}

// cutOff drops, in the leader's namespace, every packet to the node's gRPC port.
func (r *lightningRig) cutOff(ctx context.Context, node string, leader int) (string, error) {
	var addr string
	for _, n := range r.proc.Nodes {
		if n.Name == node {
			addr = n.Address
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("lnd %s address %q: %w", node, addr, err)
	}
	h := r.cluster.Hosts[leader]
	rule := []string{"netns", "exec", h.Netns, "iptables", "-w", "-A", "OUTPUT", "-d", host, "-p", "tcp", "--dport", port, "-j", "DROP"}
	if out, err := exec.CommandContext(ctx, "ip", rule...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cut %s off from %s: %w: %s", node, h.ID, err, out)
	}
	r.mu.Lock()
	r.partition = rule
	r.mu.Unlock()
	return fmt.Sprintf("%s cut off from leader %s", node, h.ID), nil
}

// HealLnd implements nemesis.LndFaults.
func (r *lightningRig) HealLnd(ctx context.Context) error {
	r.mu.Lock()
	rule := r.partition
	r.partition = nil
	r.mu.Unlock()
	var errs []error
	if rule != nil {
		del := append([]string(nil), rule...)
		for i, a := range del {
			if a == "-A" {
				del[i] = "-D"
			}
		}
		// The hosts' own heal may have replaced the table already: a missing rule is fine.
		if out, err := exec.CommandContext(ctx, "ip", del...).CombinedOutput(); err != nil && !strings.Contains(string(out), "does a matching rule exist") && !strings.Contains(string(out), "Bad rule") {
			errs = append(errs, fmt.Errorf("remove lnd partition: %w: %s", err, out))
		}
	}
	errs = append(errs, r.proc.Control.Heal(ctx))
	return errors.Join(errs...)
}
