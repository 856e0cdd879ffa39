// Package fsmtest helps tests drive a real state machine without Raft: a Proposer applies each
// command straight to an fsm.FSM, as a one-node cluster would, and can intercept proposals to
// simulate a lost answer or a refusal.
package fsmtest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/principal"
)

// Open opens a state machine in a temporary directory of t, closed when t ends. A fatal state
// machine error fails the test.
func Open(t testing.TB) *fsm.FSM {
	t.Helper()
	f, err := fsm.Open(filepath.Join(t.TempDir(), "fsm"), fsm.Options{Fatal: func(err error) { t.Errorf("state machine: %v", err) }})
	if err != nil {
		t.Fatalf("open state machine: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Proposer applies commands straight to a real state machine. It implements the Proposer
// interfaces of the leader drivers (Apply, as *node.Node does).
type Proposer struct {
	T testing.TB
	F *fsm.FSM
	// Intercept, when set, sees every proposal first; a non-nil error is returned instead of
	// the answer (apply reports whether to apply the command anyway, as when an answer is lost).
	Intercept func(typ bankdv1.CommandType, body proto.Message) (apply bool, err error)

	mu    sync.Mutex
	index uint64 // the last Raft index used
	// applied lists the commands that reached the state machine, refused or not.
	applied []Proposal
}

// Proposal is one command that reached the state machine and its result.
type Proposal struct {
	Type   bankdv1.CommandType
	Body   proto.Message
	Result any
}

// Apply applies one command and returns the state machine's answer; a refusal is the
// *fsm.Error. Like node.Apply, it stamps the command with the principal ctx carries
// (principal.With), so tests can act as an authenticated client or, with none, as a driver.
func (p *Proposer) Apply(ctx context.Context, typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence) (proto.Message, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	who := principal.From(ctx)
	if p.Intercept != nil {
		apply, err := p.Intercept(typ, body)
		if err != nil {
			if apply {
				p.apply(typ, body, fence, who)
			}
			return nil, err
		}
	}
	switch res := p.apply(typ, body, fence, who).(type) {
	case *fsm.Error:
		return nil, res
	case proto.Message:
		return res, nil
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("unexpected result %T", res)
	}
}

func (p *Proposer) apply(typ bankdv1.CommandType, body proto.Message, fence *bankdv1.Fence, who string) any {
	b, err := proto.Marshal(body)
	if err != nil {
		p.T.Fatalf("marshal %s: %v", typ, err)
	}
	data, err := proto.Marshal(&bankdv1.Command{Version: fsm.CommandVersion, Type: typ, LeaderTimeUnixMs: time.Now().UnixMilli(), Fence: fence, Body: b, Principal: who})
	if err != nil {
		p.T.Fatalf("marshal command: %v", err)
	}
	p.index++
	res := p.F.Apply(&raft.Log{Index: p.index, Term: 1, Type: raft.LogCommand, Data: data})
	p.applied = append(p.applied, Proposal{Type: typ, Body: body, Result: res})
	return res
}

// Applied returns the commands that reached the state machine so far.
func (p *Proposer) Applied() []Proposal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Proposal(nil), p.applied...)
}

// Count returns how many commands of typ reached the state machine.
func (p *Proposer) Count(typ bankdv1.CommandType) int {
	n := 0
	for _, a := range p.Applied() {
		if a.Type == typ {
			n++
		}
	}
	return n
}

// Must applies a command that must succeed.
func (p *Proposer) Must(typ bankdv1.CommandType, body proto.Message) proto.Message {
	p.T.Helper()
	res, err := p.Apply(context.Background(), typ, body, nil)
	if err != nil {
		p.T.Fatalf("%s: %v", typ, err)
	}
	return res
}
