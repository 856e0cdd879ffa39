package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/principal"
)

// The leader coalesces concurrent CreateTransfers commands into shared Raft entries.
//
// Every entry costs a log append, a replication round trip and a state-machine command on
// every replica, whatever it holds. A thousand clients that each send one transfer would
// otherwise make a thousand entries. The coalescer queues such proposals while earlier entries
// are still in flight (at most raft.coalesce_in_flight of them) and proposes what queued as
// one CREATE_TRANSFERS command, after waiting at most raft.coalesce_linger for more.
//
// A coalesced command is the concatenation of the requests' transfers, in arrival order. It
// applies exactly as the requests would one after another: the state machine applies a
// command's transfers in order, each linked chain ends inside its own request (a request
// cannot end with an open chain), and a transfer id used twice is a replay or a conflict
// whether the two uses share an entry or not. Each caller gets its own slice of the results.
//
// Requests with a fence, requests the state machine would refuse as a whole, and requests of
// different principals never share an entry (the command envelope holds one fence and one
// principal).

// coalesceHeadroom is what a command's envelope and its CreateTransfersRequest framing may
// add to the transfers' own bytes.
const coalesceHeadroom = 64 << 10

type transferProposal struct {
	ctx       context.Context
	principal string
	transfers []*bankdv1.Transfer
	bytes     int
	// done is buffered: the proposer never waits for a caller that has gone.
	done chan transferOutcome
}

type transferOutcome struct {
	results []*bankdv1.TransferResult
	err     error
}

type coalescer struct {
	n        *Node
	linger   time.Duration
	maxBytes int
	queue    chan *transferProposal
	// slots holds one token per entry in flight.
	slots chan struct{}
	// carry is a proposal taken from the queue that did not fit in the previous entry.
	carry *transferProposal
}

func newCoalescer(n *Node, rc RaftConfig) *coalescer {
	if rc.CoalesceInFlight == 0 {
		return nil
	}
	return &coalescer{
		n:        n,
		linger:   rc.CoalesceLinger,
		maxBytes: rc.MaxEntryBytes - coalesceHeadroom,
		queue:    make(chan *transferProposal, 4096),
		slots:    make(chan struct{}, rc.CoalesceInFlight),
	}
}

// apply queues req and waits for its share of the coalesced entry's response.
func (c *coalescer) apply(ctx context.Context, req *bankdv1.CreateTransfersRequest) (proto.Message, error) {
	const typ = bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS
	size := 0
	for _, t := range req.GetTransfers() {
		size += proto.Size(t) + 8 // field tag and length
	}
	if fsm.ValidateTransfers(req.GetTransfers()) != nil || size > c.maxBytes {
		// Refused as a whole, or too large to share an entry: alone, as before coalescing.
		return c.n.propose(ctx, typ, req, nil)
	}
	p := &transferProposal{ctx: ctx, principal: principal.From(ctx), transfers: req.GetTransfers(), bytes: size,
		done: make(chan transferOutcome, 1)}
	select {
	case c.queue <- p:
	case <-ctx.Done():
		return nil, fmt.Errorf("apply %s: %w", typ, ctx.Err()) // not queued, so not proposed
	case <-c.n.life.Done():
		return nil, ErrShutdown
	}
	select {
	case out := <-p.done:
		if out.err != nil {
			return nil, out.err
		}
		return &bankdv1.CreateTransfersResponse{Results: out.results}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("apply %s: %w: %w", typ, ErrOutcomeUnknown, ctx.Err())
	case <-c.n.life.Done():
		return nil, fmt.Errorf("apply %s: %w: %w", typ, ErrOutcomeUnknown, ErrShutdown)
	}
}

// run gathers queued proposals into entries until ctx ends; each entry is proposed on its own
// goroutine, at most cap(slots) at a time.
func (c *coalescer) run(ctx context.Context) {
	defer c.failQueued(ErrShutdown)
	for {
		first := c.carry
		c.carry = nil
		if first == nil {
			select {
			case first = <-c.queue:
			case <-ctx.Done():
				return
			}
		}
		// While every slot is busy, proposals keep queueing: they join this entry.
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			first.done <- transferOutcome{err: ErrShutdown}
			return
		}
		entry := c.gather(ctx, first)
		c.n.wg.Add(1)
		go func() {
			defer c.n.wg.Done()
			defer func() { <-c.slots }()
			c.propose(ctx, entry)
		}()
	}
}

// gather takes first and whatever else is queued, lingering for more up to c.linger, until the
// entry is full. A proposal that does not fit is carried to the next entry.
func (c *coalescer) gather(ctx context.Context, first *transferProposal) []*transferProposal {
	entry := []*transferProposal{first}
	count, size := len(first.transfers), first.bytes
	var linger <-chan time.Time
	if c.linger > 0 {
		timer := time.NewTimer(c.linger)
		defer timer.Stop()
		linger = timer.C
	}
	for {
		var p *transferProposal
		select {
		case p = <-c.queue:
		default:
			if linger == nil {
				return entry
			}
			select {
			case p = <-c.queue:
			case <-linger:
				return entry
			case <-ctx.Done():
				return entry
			}
		}
		if count+len(p.transfers) > fsm.MaxTransfersPerCommand || size+p.bytes > c.maxBytes {
			c.carry = p
			return entry
		}
		entry = append(entry, p)
		count, size = count+len(p.transfers), size+p.bytes
	}
}

// propose proposes one entry per principal among the proposals and hands each its results.
func (c *coalescer) propose(ctx context.Context, entry []*transferProposal) {
	var order []string
	groups := map[string][]*transferProposal{}
	for _, p := range entry {
		if p.ctx.Err() != nil {
			// Its caller has gone and was told the outcome is unknown; leaving it out keeps
			// that true and saves the work.
			p.done <- transferOutcome{err: p.ctx.Err()}
			continue
		}
		if _, seen := groups[p.principal]; !seen {
			order = append(order, p.principal)
		}
		groups[p.principal] = append(groups[p.principal], p)
	}
	for _, who := range order {
		c.proposeGroup(principal.With(ctx, who), groups[who])
	}
}

func (c *coalescer) proposeGroup(ctx context.Context, group []*transferProposal) {
	if len(group) == 1 {
		group[0].done <- c.proposeTransfers(ctx, group[0].transfers)
		return
	}
	var all []*bankdv1.Transfer
	for _, p := range group {
		all = append(all, p.transfers...)
	}
	out := c.proposeTransfers(ctx, all)
	var refusal *fsm.Error
	if errors.As(out.err, &refusal) {
		// The command was refused as a whole and changed nothing: that belongs to one of the
		// requests, so each goes again alone and gets its own answer.
		c.n.log.Warn("coalesced transfers refused as a whole; proposing each request alone", "requests", len(group), "err", out.err)
		for _, p := range group {
			p.done <- c.proposeTransfers(ctx, p.transfers)
		}
		return
	}
	if out.err != nil {
		for _, p := range group {
			p.done <- out
		}
		return
	}
	off := 0
	for _, p := range group {
		n := len(p.transfers)
		p.done <- transferOutcome{results: out.results[off : off+n]}
		off += n
	}
	c.n.metrics.observeCoalesced(len(group))
}

func (c *coalescer) proposeTransfers(ctx context.Context, ts []*bankdv1.Transfer) transferOutcome {
	res, err := c.n.propose(ctx, bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: ts}, nil)
	if err != nil {
		return transferOutcome{err: err}
	}
	resp, ok := res.(*bankdv1.CreateTransfersResponse)
	if !ok || len(resp.GetResults()) != len(ts) {
		return transferOutcome{err: fmt.Errorf("apply %s: %w: the state machine answered %T with %d results for %d transfers",
			bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, ErrOutcomeUnknown, res, len(resp.GetResults()), len(ts))}
	}
	return transferOutcome{results: resp.GetResults()}
}

// failQueued answers every proposal still queued (or carried) with err; none was proposed.
func (c *coalescer) failQueued(err error) {
	if c.carry != nil {
		c.carry.done <- transferOutcome{err: err}
		c.carry = nil
	}
	for {
		select {
		case p := <-c.queue:
			p.done <- transferOutcome{err: err}
		default:
			return
		}
	}
}
