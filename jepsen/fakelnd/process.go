package fakelnd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/bankd/bankd/jepsen/gobuild"
)

// Ready is what a fakelnd process writes, once it serves, to the file its -ready flag names.
type Ready struct {
	Control string     `json:"control"` // host:port of the control endpoint
	Nodes   []NodeInfo `json:"nodes"`
}

// ProcessConfig starts a fakelnd process.
type ProcessConfig struct {
	Bin   string // the fakelnd binary (jepsen/cmd/fakelnd)
	IP    string // where the nodes and the control endpoint listen
	Dir   string // certificates, macaroons, ready.json and fakelnd.log go here
	Nodes int
	Seed  uint64
}

// readyTimeout bounds the wait for a started process to serve.
const readyTimeout = 30 * time.Second

// Process is a running fakelnd process.
type Process struct {
	Ready
	Control *Client // the control endpoint's client
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start runs the simulated network as its own process and waits until it serves.
func Start(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	readyPath := filepath.Join(cfg.Dir, "ready.json")
	_ = os.Remove(readyPath)
	logf, err := os.Create(filepath.Join(cfg.Dir, "fakelnd.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Bin, "-ip", cfg.IP, "-dir", cfg.Dir, "-nodes", strconv.Itoa(cfg.Nodes),
		"-seed", strconv.FormatUint(cfg.Seed, 10), "-ready", readyPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A harness that dies must not leave the network running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start fakelnd: %w", err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	deadline := time.Now().Add(readyTimeout)
	for {
		b, err := os.ReadFile(readyPath)
		if err == nil && json.Unmarshal(b, &p.Ready) == nil && p.Ready.Control != "" {
			p.Control = NewClient(p.Ready.Control)
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("fakelnd exited before it served (see %s)", filepath.Join(cfg.Dir, "fakelnd.log"))
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("fakelnd did not serve within %s", readyTimeout)
		}
	}
}

// Stop ends the process (SIGTERM, then SIGKILL after 5 s).
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// Build builds cmd/fakelnd into out, from the module the harness runs in. It needs the go tool.
func Build(ctx context.Context, out string) error {
	return gobuild.Build(ctx, out, "./jepsen/cmd/fakelnd")
}
