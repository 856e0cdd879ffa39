package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/bankd/bankd/clustertls"
)

// gatedStreamLayer is the Raft transport's stream layer: mutual TLS 1.3 between the nodes of
// cluster.hcl (unless insecure_plaintext), a check that every Raft message speaks for the node
// its certificate names, and a gate on incoming connections. While the gate is closed every
// incoming connection is dropped at once.
//
// Why the gate: a node whose data dir was wiped comes back under a new Raft id but at its old
// address. Raft messages name their sender, not their target, so until an operator removes the
// old identity the leader keeps replicating to that address as if the old server were there,
// and the empty node would accept entries and grant votes in the old server's name — votes
// from a server that lost its log can elect a leader that misses committed entries. A node with
// no Raft state therefore keeps the gate closed until it knows no old identity of it is still a
// voter (see bootstrapLoop).
//
// Why the message check: TLS proves which node is on the other end, but hashicorp/raft takes the
// sender's id and address from each message's header. Without the check, n2's certificate could
// carry messages signed "n3" — votes, or AppendEntries as a leader n3 that never was.
type gatedStreamLayer struct {
	listener net.Listener
	open     atomic.Bool

	cfg     *Config
	tls     *clustertls.Store // nil: plain TCP (insecure_plaintext)
	server  *tls.Config
	log     *slog.Logger
	refused func()
}

var _ raft.StreamLayer = (*gatedStreamLayer)(nil)

// Bounds of the Raft stream layer.
const (
	// raftHandshakeTimeout bounds a TLS handshake, so a peer that connects and stays silent
	// holds a goroutine for no longer.
	raftHandshakeTimeout = 10 * time.Second
	// maxRaftMessageBytes bounds one Raft message (AppendEntries is the largest) as received:
	// what max_append_entries × max_entry_bytes allows, plus room for the entries' framing.
	maxRaftMessageBytes = MaxAppendEntriesBytes + 16<<20
)

func listenGated(n *Node, open bool) (*gatedStreamLayer, error) {
	l, err := net.Listen("tcp", n.self.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", n.self.RaftAddr, err)
	}
	g := &gatedStreamLayer{
		listener: l,
		cfg:      n.cfg,
		tls:      n.tls,
		log:      n.log.With("component", "raft-tls"),
		refused:  func() { n.metrics.peerRefused.WithLabelValues("raft").Inc() },
	}
	if g.tls != nil {
		g.server = g.tls.ServerConfig(true, g.configuredNode, nil)
	}
	g.open.Store(open)
	return g, nil
}

// configuredNode allows node certificates of the nodes in cluster.hcl only.
func (g *gatedStreamLayer) configuredNode(id clustertls.Identity) error {
	if err := clustertls.RequireNode(id); err != nil {
		return err
	}
	if _, ok := g.cfg.Node(id.Name); !ok {
		return fmt.Errorf("%s is not a node of cluster.hcl", id)
	}
	return nil
}

// Open lets incoming Raft connections through from now on.
func (g *gatedStreamLayer) Open() bool { return !g.open.Swap(true) }

func (g *gatedStreamLayer) IsOpen() bool { return g.open.Load() }

func (g *gatedStreamLayer) Accept() (net.Conn, error) {
	for {
		c, err := g.listener.Accept()
		if err != nil {
			return nil, err
		}
		if !g.open.Load() {
			_ = c.Close()
			continue
		}
		if g.tls == nil {
			return c, nil
		}
		// The handshake runs on the first Read, in Raft's goroutine for this connection, so a
		// slow or silent peer never holds up Accept.
		return newCheckedConn(tls.Server(c, g.server), g), nil
	}
}

func (g *gatedStreamLayer) Close() error   { return g.listener.Close() }
func (g *gatedStreamLayer) Addr() net.Addr { return g.listener.Addr() }

// Dial connects to the Raft address of a node of cluster.hcl and, with TLS, accepts only the
// certificate of the node configured at that address.
func (g *gatedStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if g.tls == nil {
		return net.DialTimeout("tcp", string(address), timeout)
	}
	want := ""
	for _, nc := range g.cfg.Nodes {
		if nc.RaftAddr == string(address) {
			want = nc.ID
		}
	}
	if want == "" {
		return nil, fmt.Errorf("dial raft %s: no node of cluster.hcl has this raft_addr", address)
	}
	cfg := g.tls.ClientConfig(func(id clustertls.Identity) error {
		if id.Name != want {
			return fmt.Errorf("%s answered at %s, the raft_addr of node %q", id, address, want)
		}
		return nil
	}, nil)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
	if err != nil {
		g.refused()
		return nil, fmt.Errorf("dial raft %s (node %s): %w", address, want, err)
	}
	return conn, nil
}

// checkedConn is an incoming Raft connection over TLS: after the handshake it hands Raft only
// what a raftStream for the certificate's node lets through, and closes the connection at the
// first message refused.
type checkedConn struct {
	*tls.Conn
	g      *gatedStreamLayer
	stream *raftStream // nil until the handshake
	err    error
}

func newCheckedConn(c *tls.Conn, g *gatedStreamLayer) *checkedConn {
	return &checkedConn{Conn: c, g: g}
}

func (c *checkedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.stream == nil {
		peer, err := c.handshake()
		if err != nil {
			return 0, c.refuse(err)
		}
		c.stream = newRaftStream(c.Conn, peer)
	}
	n, err := c.stream.read(p)
	if errors.Is(err, errRaftRefused) {
		return 0, c.refuse(err)
	}
	return n, err
}

func (c *checkedConn) refuse(err error) error {
	c.err = err
	c.g.refused()
	peer := ""
	if c.stream != nil {
		peer = c.stream.peer.ID
	}
	c.g.log.Warn("raft connection refused", "remote", c.RemoteAddr().String(), "peer", peer, "err", err)
	_ = c.Conn.Close()
	return err
}

// errRaftRefused marks a Raft message (or handshake) that must not reach Raft.
var errRaftRefused = errors.New("raft connection refused")

// raftStream reads Raft requests from a peer known to be node peer, and lets a message through
// only if its header names that node and its configured raft_addr. It reads one whole message
// ahead (bounded by limit), decoding only the header, then serves the same bytes to Raft; an
// InstallSnapshot's snapshot bytes that follow pass through as they are.
type raftStream struct {
	peer    NodeConfig
	rec     recorder
	dec     *codec.Decoder
	limit   int
	pending []byte // checked bytes Raft has not read yet
	rawLeft int64  // snapshot bytes still to pass through
}

func newRaftStream(r io.Reader, peer NodeConfig) *raftStream {
	s := &raftStream{peer: peer, limit: maxRaftMessageBytes}
	s.rec.r = bufio.NewReaderSize(r, 64<<10)
	s.dec = codec.NewDecoder(&s.rec, &codec.MsgpackHandle{})
	return s
}

// rpcPrefix is what the check decodes of a Raft request: the header every request embeds and,
// for InstallSnapshot, the size of the snapshot that follows. Other fields are skipped.
type rpcPrefix struct {
	raft.RPCHeader
	Size int64
}

// Raft's message types on the wire (hashicorp/raft net_transport.go).
const (
	rpcAppendEntries uint8 = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

// read serves checked bytes, reading and checking the next message when none are left. A
// refusal wraps errRaftRefused; io.EOF between messages is the peer closing.
func (s *raftStream) read(p []byte) (int, error) {
	for {
		switch {
		case len(s.pending) > 0:
			n := copy(p, s.pending)
			s.pending = s.pending[n:]
			return n, nil
		case s.rawLeft > 0:
			if int64(len(p)) > s.rawLeft {
				p = p[:s.rawLeft]
			}
			n, err := s.rec.r.Read(p)
			s.rawLeft -= int64(n)
			return n, err
		}
		if err := s.next(); err != nil {
			return 0, err
		}
	}
}

// next reads, checks and stages the next message.
func (s *raftStream) next() error {
	s.rec.buf = s.rec.buf[:0]
	s.rec.limit = s.limit
	typ, err := s.rec.ReadByte()
	if err != nil {
		return err // io.EOF: the peer closed between messages
	}
	if typ > rpcRequestPreVote {
		return fmt.Errorf("%w: unknown raft message type %d", errRaftRefused, typ)
	}
	var m rpcPrefix
	if err := s.dec.Decode(&m); err != nil {
		return fmt.Errorf("%w: decode raft message: %w", errRaftRefused, err)
	}
	if err := s.checkHeader(m.RPCHeader); err != nil {
		return fmt.Errorf("%w: %w", errRaftRefused, err)
	}
	if typ == rpcInstallSnapshot {
		if m.Size < 0 {
			return fmt.Errorf("%w: install snapshot of negative size %d", errRaftRefused, m.Size)
		}
		s.rawLeft = m.Size
	}
	s.pending = s.rec.buf
	return nil
}

// handshake runs the TLS handshake (bounded by raftHandshakeTimeout) and returns the node the
// verified certificate names.
func (c *checkedConn) handshake() (NodeConfig, error) {
	ctx, cancel := context.WithTimeout(context.Background(), raftHandshakeTimeout)
	defer cancel()
	if err := c.Conn.HandshakeContext(ctx); err != nil {
		return NodeConfig{}, fmt.Errorf("%w: tls handshake: %w", errRaftRefused, err)
	}
	id, ok := clustertls.PeerIdentity(c.ConnectionState())
	if !ok {
		return NodeConfig{}, fmt.Errorf("%w: the peer presented no bankd node certificate", errRaftRefused)
	}
	nc, ok := c.g.cfg.Node(id.Name)
	if !ok {
		return NodeConfig{}, fmt.Errorf("%w: %s is not a node of cluster.hcl", errRaftRefused, id)
	}
	return nc, nil
}

// checkHeader refuses a message that speaks for another node than the certificate's.
func (s *raftStream) checkHeader(h raft.RPCHeader) error {
	id := string(h.ID)
	switch {
	case id == "" || len(h.Addr) == 0:
		return fmt.Errorf("node %s sent a raft message without a sender id and address", s.peer.ID)
	case nodeIDOf(id) != s.peer.ID || id == s.peer.ID:
		return fmt.Errorf("node %s sent a raft message as %q", s.peer.ID, id)
	case string(h.Addr) != s.peer.RaftAddr:
		return fmt.Errorf("node %s sent a raft message from address %q; its raft_addr is %s", s.peer.ID, h.Addr, s.peer.RaftAddr)
	}
	return nil
}

// recorder is an io.ByteScanner over the connection that keeps every byte the decoder takes,
// so they can be handed to Raft after the check, and refuses a message longer than limit.
type recorder struct {
	r     *bufio.Reader
	buf   []byte
	limit int
}

var errRaftMessageTooLarge = errors.New("raft message larger than max_append_entries × max_entry_bytes allows")

func (r *recorder) Read(p []byte) (int, error) {
	if room := r.limit - len(r.buf); len(p) > room {
		if room <= 0 {
			return 0, errRaftMessageTooLarge
		}
		p = p[:room]
	}
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

func (r *recorder) ReadByte() (byte, error) {
	if len(r.buf) >= r.limit {
		return 0, errRaftMessageTooLarge
	}
	b, err := r.r.ReadByte()
	if err == nil {
		r.buf = append(r.buf, b)
	}
	return b, err
}

func (r *recorder) UnreadByte() error {
	if err := r.r.UnreadByte(); err != nil {
		return err
	}
	r.buf = r.buf[:len(r.buf)-1]
	return nil
}
