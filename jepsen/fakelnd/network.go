package fakelnd

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/bankd/bankd/lnpool/lnd"
	"github.com/bankd/bankd/lnpool/lnd/lndtest"
)

// Limits of a simulated network.
const (
	MaxNodes = 16
	// FeeMsat is the routing fee every node pays per payment: a whole satoshi, so that the
	// ledger (which charges fees rounded up) and the channels agree to the satoshi.
	FeeMsat = 1000
)

// NodeInfo says where one simulated node serves and how to reach it: what a cluster.hcl `lnd`
// block needs.
type NodeInfo struct {
	Name         string `json:"name"`
	Pubkey       string `json:"pubkey"`
	Address      string `json:"address"`
	TLSCertPath  string `json:"tls_cert"`
	MacaroonPath string `json:"macaroon"`
}

// Config shapes a Network.
type Config struct {
	Nodes int    // simulated pool nodes, named ln1..lnN [3]
	IP    string // the address every node listens on, each on its own free port [127.0.0.1]
	Dir   string // where each node's tls.cert and admin.macaroon go (Dir/<name>/)
	Seed  uint64 // of the error knob's draws
	// BalanceSat is each node's opening channel balance [lndtest.DefaultBalanceSat].
	BalanceSat int64
	Logger     *slog.Logger
}

// Network is the simulated network with one gRPC server per node. Safe for concurrent use.
type Network struct {
	cfg   Config
	sim   *lndtest.Network
	nodes []*simNode
	log   *slog.Logger
}

type simNode struct {
	info  NodeInfo
	node  *lndtest.Node
	svc   *service
	creds credentials.TransportCredentials

	mu     sync.Mutex
	server *grpc.Server // nil while killed
	killed bool
}

// New builds the network, writes each node's certificate and macaroon and starts serving.
func New(cfg Config) (*Network, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 1 || cfg.Nodes > MaxNodes {
		return nil, fmt.Errorf("fakelnd: %d nodes, want 1-%d", cfg.Nodes, MaxNodes)
	}
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if net.ParseIP(cfg.IP) == nil {
		return nil, fmt.Errorf("fakelnd: listen IP %q is not an IP address", cfg.IP)
	}
	if cfg.Dir == "" {
		return nil, errors.New("fakelnd: no directory for certificates and macaroons")
	}
	if cfg.BalanceSat == 0 {
		cfg.BalanceSat = lndtest.DefaultBalanceSat
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Network{cfg: cfg, sim: lndtest.NewNetwork(), log: cfg.Logger}
	// A receiver outside that keeps every payment: a hash the pool pays twice costs twice.
	n.sim.SetOutsideTakesRepeats(true)
	for i := range cfg.Nodes {
		sn, err := n.newNode(fmt.Sprintf("ln%d", i+1), mrand.New(mrand.NewPCG(cfg.Seed, uint64(i))))
		if err != nil {
			n.Close()
			return nil, err
		}
		n.nodes = append(n.nodes, sn)
	}
	return n, nil
}

func (n *Network) newNode(name string, rng *mrand.Rand) (*simNode, error) {
	dir := filepath.Join(n.cfg.Dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fakelnd %s: %w", name, err)
	}
	cert, err := writeCert(filepath.Join(dir, "tls.cert"), n.cfg.IP)
	if err != nil {
		return nil, fmt.Errorf("fakelnd %s: %w", name, err)
	}
	mac, err := writeMacaroon(filepath.Join(dir, "admin.macaroon"))
	if err != nil {
		return nil, fmt.Errorf("fakelnd %s: %w", name, err)
	}
	node := n.sim.NewNode(name)
	node.SetBalanceSat(n.cfg.BalanceSat)
	node.SetFeeMsat(FeeMsat)
	lis, err := net.Listen("tcp", net.JoinHostPort(n.cfg.IP, "0"))
	if err != nil {
		return nil, fmt.Errorf("fakelnd %s: listen: %w", name, err)
	}
	sn := &simNode{
		info: NodeInfo{Name: name, Pubkey: node.Pubkey(), Address: lis.Addr().String(),
			TLSCertPath: filepath.Join(dir, "tls.cert"), MacaroonPath: filepath.Join(dir, "admin.macaroon")},
		node:  node,
		svc:   &service{node: node, macaroon: mac, knobs: &knobs{rng: rng}},
		creds: credentials.NewServerTLSFromCert(&cert),
	}
	sn.serve(lis)
	return sn, nil
}

func (sn *simNode) serve(lis net.Listener) {
	sn.server = newGRPCServer(sn.svc, grpc.Creds(sn.creds))
	go func(s *grpc.Server) { _ = s.Serve(lis) }(sn.server)
}

// Nodes lists the nodes.
func (n *Network) Nodes() []NodeInfo {
	out := make([]NodeInfo, len(n.nodes))
	for i, sn := range n.nodes {
		out[i] = sn.info
	}
	return out
}

func (n *Network) node(name string) (*simNode, error) {
	for _, sn := range n.nodes {
		if sn.info.Name == name {
			return sn, nil
		}
	}
	return nil, fmt.Errorf("fakelnd: no node %q", name)
}

// Kill stops a node's gRPC server (connections refused, streams broken) and makes it
// unreachable to the rest of the network, keeping its state as lnd keeps its database.
func (n *Network) Kill(name string) error {
	sn, err := n.node(name)
	if err != nil {
		return err
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.killed {
		return nil
	}
	sn.killed = true
	sn.node.SetUnreachable(true)
	sn.server.Stop()
	sn.server = nil
	n.log.Info("node killed", "node", name)
	return nil
}

// Restart serves a killed node again on its address.
func (n *Network) Restart(name string) error {
	sn, err := n.node(name)
	if err != nil {
		return err
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if !sn.killed {
		return nil
	}
	var lis net.Listener
	// The port was just closed; the kernel may take a moment to let it be bound again.
	for attempt := 0; ; attempt++ {
		lis, err = net.Listen("tcp", sn.info.Address)
		if err == nil || attempt == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("fakelnd %s: listen again on %s: %w", name, sn.info.Address, err)
	}
	sn.node.SetUnreachable(false)
	sn.serve(lis)
	sn.killed = false
	n.log.Info("node restarted", "node", name)
	return nil
}

// SetKnobs sets a node's faults. Turning Hold off releases every payment held.
func (n *Network) SetKnobs(name string, k Knobs) error {
	sn, err := n.node(name)
	if err != nil {
		return err
	}
	if k.DelayMs < 0 || k.DelayMs > 60_000 {
		return fmt.Errorf("fakelnd %s: delay %d ms, want 0-60000", name, k.DelayMs)
	}
	sn.svc.knobs.mu.Lock()
	sn.svc.knobs.k = k
	sn.svc.knobs.mu.Unlock()
	sn.node.HoldPayments(k.Hold)
	if !k.Hold {
		for _, h := range sn.node.HeldPayments() {
			if err := sn.node.ReleasePayment(h); err != nil {
				return err
			}
		}
	}
	n.log.Info("knobs set", "node", name, "delay_ms", k.DelayMs, "errors", k.Errors, "hold", k.Hold)
	return nil
}

// HealAll restarts every killed node and clears every knob, releasing held payments.
func (n *Network) HealAll() error {
	var errs []error
	for _, sn := range n.nodes {
		errs = append(errs, n.Restart(sn.info.Name), n.SetKnobs(sn.info.Name, Knobs{}))
	}
	return errors.Join(errs...)
}

// OutsideInvoice makes an invoice of the world outside the pool.
func (n *Network) OutsideInvoice(sat int64) (string, error) {
	if sat <= 0 || sat > 21_000_000*100_000_000 {
		return "", fmt.Errorf("fakelnd: outside invoice of %d sat", sat)
	}
	return n.sim.OutsideInvoice(sat), nil
}

// PayFromOutside pays a pool node's invoice from outside.
func (n *Network) PayFromOutside(paymentRequest string) error {
	return n.sim.PayFromOutside(paymentRequest)
}

// NodeRecord is the network's own record of one node.
type NodeRecord struct {
	Name   string `json:"name"`
	Pubkey string `json:"pubkey"`
	Killed bool   `json:"killed"`
	// LocalMsat and UnsettledMsat are the channel balance: spendable, and in outgoing HTLCs.
	LocalMsat     int64         `json:"local_msat"`
	UnsettledMsat int64         `json:"unsettled_msat"`
	Payments      []lnd.Payment `json:"payments"` // the latest attempt of each hash, in order
	Invoices      []lnd.Invoice `json:"invoices"` // in add index order
	Held          []string      `json:"held"`     // hashes held in flight
}

// OutsideRecord is what the outside world received for one of its invoices.
type OutsideRecord struct {
	Hash     string `json:"hash"`
	Payments int    `json:"payments"`
	PaidMsat int64  `json:"paid_msat"`
}

// Record is the network's ground truth at one moment.
type Record struct {
	Nodes   []NodeRecord    `json:"nodes"`
	Outside []OutsideRecord `json:"outside"`
}

// Record reads every node's books (whether killed or not) and what the outside received for
// the hashes given.
func (n *Network) Record(outsideHashes []string) Record {
	var r Record
	ctx := context.Background()
	for _, sn := range n.nodes {
		sn.mu.Lock()
		killed := sn.killed
		// The node's own calls refuse while it is unreachable; read its books as lnd's
		// database would show them.
		if killed {
			sn.node.SetUnreachable(false)
		}
		nr := NodeRecord{Name: sn.info.Name, Pubkey: sn.info.Pubkey, Killed: killed, Invoices: sn.node.Invoices(), Held: sn.node.HeldPayments()}
		if b, err := sn.node.ChannelBalance(ctx); err == nil {
			nr.LocalMsat, nr.UnsettledMsat = b.LocalMsat, b.UnsettledLocalMsat
		}
		nr.Payments, _ = sn.node.ListPayments(ctx, false)
		if killed {
			sn.node.SetUnreachable(true)
		}
		sn.mu.Unlock()
		r.Nodes = append(r.Nodes, nr)
	}
	for _, h := range outsideHashes {
		count, paid := n.sim.OutsidePayments(h)
		r.Outside = append(r.Outside, OutsideRecord{Hash: h, Payments: count, PaidMsat: paid})
	}
	return r
}

// Close stops every server.
func (n *Network) Close() {
	for _, sn := range n.nodes {
		sn.mu.Lock()
		if sn.server != nil {
			sn.server.Stop()
			sn.server = nil
		}
		sn.mu.Unlock()
	}
}

// writeCert writes a self-signed certificate for ip, as lnd makes its tls.cert.
func writeCert(path, ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Organization: []string{"fakelnd autogenerated cert"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// writeMacaroon writes random bytes in the shape of a version 2 macaroon (lnd's clients only
// check the leading 0x02) and returns them in hex, as they travel in metadata.
func writeMacaroon(path string) (string, error) {
	raw := make([]byte, 64)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	raw[0] = 0x02
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return "", err
	}
	return hex.EncodeToString(raw), nil
}
