package node

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// gatedStreamLayer is the Raft transport's TCP layer with a gate on incoming connections.
// While the gate is closed every incoming connection is dropped at once.
//
// Why: a node whose data dir was wiped comes back under a new Raft id but at its old address.
// Raft messages name their sender, not their target, so until an operator removes the old
// identity the leader keeps replicating to that address as if the old server were there, and
// the empty node would accept entries and grant votes in the old server's name — votes from a
// server that lost its log can elect a leader that misses committed entries. A node with no
// Raft state therefore keeps the gate closed until it knows no old identity of it is still a
// voter (see bootstrapLoop).
type gatedStreamLayer struct {
	listener net.Listener
	open     atomic.Bool
}

var _ raft.StreamLayer = (*gatedStreamLayer)(nil)

func listenGated(addr string, open bool) (*gatedStreamLayer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for raft on %s: %w", addr, err)
	}
	g := &gatedStreamLayer{listener: l}
	g.open.Store(open)
	return g, nil
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
		if g.open.Load() {
			return c, nil
		}
		_ = c.Close()
	}
}

func (g *gatedStreamLayer) Close() error   { return g.listener.Close() }
func (g *gatedStreamLayer) Addr() net.Addr { return g.listener.Addr() }

func (g *gatedStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}
