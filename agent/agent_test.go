package agent_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bankd/bankd/agent"
	"github.com/bankd/bankd/clustertls"
	"github.com/bankd/bankd/internal/apiclient"
	"github.com/bankd/bankd/internal/testcluster/clusterhcl"
	"github.com/bankd/bankd/node"
)

// waitBound bounds every wait of these tests.
const waitBound = 20 * time.Second

// oneNodeConfig writes a one-node cluster.hcl on free loopback ports.
func oneNodeConfig(t *testing.T) *node.Config {
	t.Helper()
	layout, err := clusterhcl.WriteLoopback(t.TempDir(), clusterhcl.Spec{Size: 1, Raft: clusterhcl.InProcessRaft})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := node.LoadConfig(layout.Path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func quietOptions(t *testing.T) agent.Options {
	return agent.Options{
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		Version:         "test",
		FSMFatal:        func(err error) { t.Errorf("state machine stopped: %v", err) },
		ShutdownTimeout: 5 * time.Second,
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	t.Cleanup(cancel)
	return ctx
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// waitFor checks cond until it holds, failing after waitBound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgentServesOnAHandedOverListenerAndStopsOnce(t *testing.T) {
	cfg := oneNodeConfig(t)
	ln := listen(t)
	opts := quietOptions(t)
	opts.APIListener = ln
	a, err := agent.New(cfg, "n1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.APIAddr(); got != ln.Addr().String() {
		t.Fatalf("APIAddr %s, want the handed-over listener's %s", got, ln.Addr())
	}
	if err := a.Start(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the single node to lead", a.Node().IsLeader)
	hc, scheme, err := apiclient.ForCluster(cfg.TLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(scheme + "://" + a.APIAddr() + "/healthz")
	if err != nil {
		t.Fatalf("the API does not serve: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}
	if err := a.Start(ctxFor(t)); err == nil {
		t.Fatal("a second Start succeeded")
	}

	if err := a.Shutdown(ctxFor(t)); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := a.Shutdown(ctxFor(t)); err != nil {
		t.Fatalf("second shutdown: %v, want the first's result", err)
	}
	hc.CloseIdleConnections()
	if _, err := hc.Get(scheme + "://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Fatal("the API still answers after Shutdown")
	}
	if err := a.Start(ctxFor(t)); !errors.Is(err, agent.ErrShutdown) {
		t.Fatalf("Start after Shutdown: %v, want ErrShutdown", err)
	}
	select {
	case <-a.Failed():
		t.Fatal("a requested stop was reported as a failure")
	default:
	}
}

// A taken API port fails the start before the node joins anyone, and Shutdown releases the
// node's storage: another agent opens the same data dir.
func TestTakenAPIPortFailsTheStart(t *testing.T) {
	cfg := oneNodeConfig(t)
	taken, err := net.Listen("tcp", cfg.Nodes[0].APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	a, err := agent.New(cfg, "n1", quietOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(ctxFor(t))
	if err == nil || !strings.Contains(err.Error(), "listen for the api on "+cfg.Nodes[0].APIAddr) {
		t.Fatalf("start on a taken port: %v", err)
	}
	if a.Node().IsLeader() {
		t.Fatal("the node started although its API could not listen")
	}
	if err := a.Shutdown(ctxFor(t)); err != nil {
		t.Fatalf("shutdown after a failed start: %v", err)
	}
	again, err := agent.New(cfg, "n1", quietOptions(t))
	if err != nil {
		t.Fatalf("the data dir is still held after Shutdown: %v", err)
	}
	if err := again.Shutdown(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
}

func TestNewRefusesAnUnknownNodeAndClosesTheListener(t *testing.T) {
	cfg := oneNodeConfig(t)
	ln := listen(t)
	opts := quietOptions(t)
	opts.APIListener = ln
	_, err := agent.New(cfg, "n9", opts)
	if err == nil || !strings.Contains(err.Error(), `node "n9" is not in`) {
		t.Fatalf("New for n9: %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the handed-over listener is still open")
	}
}

// An API that stops on its own (its listener broke) is reported on Failed, and Shutdown
// returns the cause.
func TestAnAPIFailureIsReported(t *testing.T) {
	cfg := oneNodeConfig(t)
	ln := listen(t)
	opts := quietOptions(t)
	opts.APIListener = ln
	a, err := agent.New(cfg, "n1", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	select {
	case <-a.Failed():
	case <-time.After(waitBound):
		t.Fatal("a broken listener was not reported")
	}
	if err := a.Shutdown(ctxFor(t)); err == nil {
		t.Fatal("Shutdown after an API failure returned nil")
	}
}

// Certificates reload without a restart: Reload installs a new certificate for the next
// connections, and a certificate that does not load (another node's, garbage) is refused with
// the old one kept.
func TestReloadRotatesTheNodeCertificate(t *testing.T) {
	cfg := oneNodeConfig(t)
	a, err := agent.New(cfg, "n1", quietOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Shutdown(context.Background()) })
	if err := a.Start(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	hc, _, err := apiclient.ForCluster(cfg.TLS.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		t.Helper()
		hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + a.APIAddr() + "/healthz")
		if err != nil {
			t.Fatalf("the API does not serve: %v", err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	self, _ := cfg.Node("n1")
	before := serial()

	ca, err := clustertls.LoadCA(cfg.TLS.CAFile, cfg.TLS.CAKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	wrongNode, err := ca.IssueNode(cfg.Name, "n2", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	oldCert, _ := os.ReadFile(self.TLSCert)
	oldKey, _ := os.ReadFile(self.TLSKey)
	for _, bad := range []struct {
		name string
		leaf clustertls.Leaf
		want string
	}{
		{"another node's certificate", wrongNode, "names bankd://" + cfg.Name + "/node/n2, not this node"},
		{"garbage", clustertls.Leaf{CertPEM: []byte("not a certificate"), KeyPEM: oldKey}, "load certificate"},
	} {
		if err := bad.leaf.Write(self.TLSCert, self.TLSKey); err != nil {
			t.Fatal(err)
		}
		if err := a.Reload(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("reload with %s: %v, want an error mentioning %q", bad.name, err, bad.want)
		}
		if got := serial(); got != before {
			t.Fatalf("a refused reload (%s) changed the certificate served", bad.name)
		}
	}
	if err := (clustertls.Leaf{CertPEM: oldCert, KeyPEM: oldKey}).Write(self.TLSCert, self.TLSKey); err != nil {
		t.Fatal(err)
	}

	renewed, err := ca.IssueNode(cfg.Name, "n1", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := renewed.Write(self.TLSCert, self.TLSKey); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatalf("reload with a renewed certificate: %v", err)
	}
	if after := serial(); after == before {
		t.Fatal("the renewed certificate is not served after Reload")
	}
}
