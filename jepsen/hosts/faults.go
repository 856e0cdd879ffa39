package hosts

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// StartAll starts every host's agent.
func (c *Cluster) StartAll() error {
	for i := range c.Hosts {
		if err := c.Start(i); err != nil {
			return err
		}
	}
	return nil
}

// Start starts host i's agent inside its namespace with its binary (see SetBin), appending to
// its log. Starting a running host is an error.
func (c *Cluster) Start(i int) error {
	h := c.Hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		return fmt.Errorf("host %s is already running", h.ID)
	}
	bin := h.bin
	if bin == "" {
		bin = c.bin
	}
	logf, err := os.OpenFile(h.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// `ip netns exec` enters the namespace and execs bankd, so the pid we hold is bankd's.
	cmd := exec.Command("ip", "netns", "exec", h.Netns, bin,
		"agent", "-config", c.ConfigPath, "-node", h.ID, "-log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(c.env) > 0 {
		cmd.Env = append(os.Environ(), c.env...)
	}
	// Pdeathsig: a harness that dies must not leave agents running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", h.ID, err)
	}
	h.cmd, h.done, h.paused = cmd, make(chan struct{}), false
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}(cmd, h.done)
	c.log.Info("host started", "node", h.ID, "pid", cmd.Process.Pid, "bin", bin)
	return nil
}

// SetBin makes host i run bin from its next start on: an upgrade (or a downgrade) keeps the
// data dir and cluster.hcl and changes the binary. The running agent is left alone.
func (c *Cluster) SetBin(i int, bin string) {
	h := c.Hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	h.bin = bin
}

// Bin is the binary host i runs (or runs at its next start).
func (c *Cluster) Bin(i int) string {
	h := c.Hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bin != "" {
		return h.bin
	}
	return c.bin
}

// stopTimeout bounds a graceful stop before the agent is killed.
const stopTimeout = 30 * time.Second

// Stop sends SIGTERM to host i's agent (continuing it first if paused), waits for it to exit
// and returns its exit status: 0 for a clean stop. An agent still running stopTimeout later is
// killed and reported as an error. A host that is not running returns -1 and no error.
func (c *Cluster) Stop(i int) (int, error) {
	h := c.Hosts[i]
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil {
		return -1, nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	var err error
	select {
	case <-done:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("host %s did not exit within %s of SIGTERM; killed", h.ID, stopTimeout)
	}
	h.mu.Lock()
	h.cmd, h.paused = nil, false
	h.mu.Unlock()
	code := cmd.ProcessState.ExitCode()
	c.log.Info("host stopped", "node", h.ID, "exit", code)
	return code, err
}

// Running reports whether host i's agent is alive (paused counts as alive).
func (c *Cluster) Running(i int) bool {
	h := c.Hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// Paused reports whether host i's agent is stopped by SIGSTOP.
func (c *Cluster) Paused(i int) bool {
	h := c.Hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.paused
}

// Kill sends SIGKILL to host i's agent (paused or not) and waits until it is gone.
func (c *Cluster) Kill(i int) error {
	h := c.Hosts[i]
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("host %s did not die within 10s of SIGKILL", h.ID)
	}
	h.mu.Lock()
	h.cmd, h.paused = nil, false
	h.mu.Unlock()
	c.log.Info("host killed", "node", h.ID)
	return nil
}

// Restart starts host i's agent again if it is not running; a paused agent is resumed.
func (c *Cluster) Restart(i int) error {
	if c.Running(i) {
		return c.Resume(i)
	}
	h := c.Hosts[i]
	h.mu.Lock()
	h.cmd = nil
	h.mu.Unlock()
	return c.Start(i)
}

// Pause stops host i's agent with SIGSTOP.
func (c *Cluster) Pause(i int) error { return c.stopCont(i, syscall.SIGSTOP, "SIGSTOP", true) }

// Resume continues host i's agent with SIGCONT.
func (c *Cluster) Resume(i int) error { return c.stopCont(i, syscall.SIGCONT, "SIGCONT", false) }

func (c *Cluster) stopCont(i int, sig syscall.Signal, name string, paused bool) error {
	h := c.Hosts[i]
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return fmt.Errorf("host %s is not running", h.ID)
	}
	if h.paused == paused {
		return nil
	}
	if err := h.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s %s: %w", name, h.ID, err)
	}
	h.paused = paused
	c.log.Info("host signalled", "node", h.ID, "signal", name)
	return nil
}

// Partition cuts the hosts into groups: packets between hosts of different groups are dropped
// both ways. Hosts in no group form one more group. It adds to the faults already in place.
func (c *Cluster) Partition(ctx context.Context, groups [][]int) error {
	group := make([]int, len(c.Hosts))
	for i := range group {
		group[i] = -1
	}
	for g, hs := range groups {
		for _, i := range hs {
			if i < 0 || i >= len(c.Hosts) {
				return fmt.Errorf("partition: no host %d", i)
			}
			group[i] = g
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for a := range c.Hosts {
		for b := range c.Hosts {
			if group[a] != group[b] {
				c.drops[a][b] = true
			}
		}
	}
	return c.applyRulesLocked(ctx)
}

// OneWay drops the packets from host from to host to, and not the other way. It adds to the
// faults already in place.
func (c *Cluster) OneWay(ctx context.Context, from, to int) error {
	return c.DropPairs(ctx, [][2]int{{from, to}})
}

// DropPairs drops the packets from host p[0] to host p[1] for every pair p, each one way only,
// in one update of the rules (a ring of one-way drops is put in place at once). It adds to the
// faults already in place.
func (c *Cluster) DropPairs(ctx context.Context, pairs [][2]int) error {
	for _, p := range pairs {
		from, to := p[0], p[1]
		if from == to || from < 0 || to < 0 || from >= len(c.Hosts) || to >= len(c.Hosts) {
			return fmt.Errorf("one-way drop %d->%d: bad hosts", from, to)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range pairs {
		c.drops[p[0]][p[1]] = true
	}
	return c.applyRulesLocked(ctx)
}

// Loss drops each packet leaving each of the hosts (to peers and to the harness alike) with
// the given probability, in (0, 1]: iptables' statistic match, which needs no netem. It adds
// to the faults already in place; Heal removes it.
func (c *Cluster) Loss(ctx context.Context, hosts []int, probability float64) error {
	if probability <= 0 || probability > 1 {
		return fmt.Errorf("loss probability %v: want (0, 1]", probability)
	}
	for _, i := range hosts {
		if i < 0 || i >= len(c.Hosts) {
			return fmt.Errorf("loss: no host %d", i)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loss == nil {
		c.loss = make([]float64, len(c.Hosts))
	}
	for _, i := range hosts {
		c.loss[i] = probability
	}
	return c.applyRulesLocked(ctx)
}

// Heal removes every drop and loss rule.
func (c *Cluster) Heal(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a := range c.drops {
		clear(c.drops[a])
	}
	clear(c.loss)
	return c.applyRulesLocked(ctx)
}

// applyRulesLocked replaces the filter table of every namespace with the drops in c.drops:
// OUTPUT drops at the sender and INPUT drops at the receiver, so a packet already in flight
// is dropped too; with regions, the same drops on the connections that cross the Links (see
// linkDropRules). Each namespace's table is replaced atomically by iptables-restore; the
// namespaces belong to this run alone, so replacing the whole table is safe.
func (c *Cluster) applyRulesLocked(ctx context.Context) error {
	for i, h := range c.Hosts {
		var b strings.Builder
		b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
		for j, peer := range c.Hosts {
			if c.drops[j][i] {
				fmt.Fprintf(&b, "-A INPUT -s %s/32 -j DROP\n", peer.IP)
			}
			if c.drops[i][j] {
				fmt.Fprintf(&b, "-A OUTPUT -d %s/32 -j DROP\n", peer.IP)
			}
			if i != j {
				for _, r := range c.linkDropRules(i, j) {
					b.WriteString(r + "\n")
				}
			}
		}
		if i < len(c.loss) && c.loss[i] > 0 {
			fmt.Fprintf(&b, "-A OUTPUT -o %s -m statistic --mode random --probability %.4f -j DROP\n", nsVeth, c.loss[i])
		}
		b.WriteString("COMMIT\n")
		if _, err := run(ctx, []byte(b.String()), "ip", "netns", "exec", h.Netns, "iptables-restore", "-w"); err != nil {
			return fmt.Errorf("rules of %s: %w", h.ID, err)
		}
	}
	c.log.Info("drop rules applied", "drops", c.describeDropsLocked())
	return nil
}

func (c *Cluster) describeDropsLocked() string {
	var parts []string
	for a := range c.drops {
		for b := range c.drops[a] {
			if c.drops[a][b] {
				parts = append(parts, c.Hosts[a].ID+"->"+c.Hosts[b].ID)
			}
		}
	}
	for i, p := range c.loss {
		if p > 0 {
			parts = append(parts, fmt.Sprintf("%s-loss-%.0f%%", c.Hosts[i].ID, p*100))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// Netem delays (and, with loss > 0, drops a share of) every packet leaving host i.
func (c *Cluster) Netem(ctx context.Context, i int, delay time.Duration, lossPercent float64) error {
	h := c.Hosts[i]
	args := []string{"netns", "exec", h.Netns, "tc", "qdisc", "replace", "dev", nsVeth, "root", "netem",
		"delay", fmt.Sprintf("%dms", delay.Milliseconds())}
	if lossPercent > 0 {
		args = append(args, "loss", fmt.Sprintf("%.2f%%", lossPercent))
	}
	if out, err := run(ctx, nil, "ip", args...); err != nil {
		if strings.Contains(out, "qdisc kind is unknown") {
			return ErrNetemUnsupported
		}
		return err
	}
	c.log.Info("netem set", "node", h.ID, "delay", delay, "loss_percent", lossPercent)
	return nil
}

// ClearNetem removes host i's netem qdisc, if any.
func (c *Cluster) ClearNetem(ctx context.Context, i int) error {
	h := c.Hosts[i]
	out, err := run(ctx, nil, "ip", "netns", "exec", h.Netns, "tc", "qdisc", "del", "dev", nsVeth, "root")
	if err != nil && !strings.Contains(out, "handle of zero") && !strings.Contains(out, "No such file") {
		return err
	}
	return nil
}
