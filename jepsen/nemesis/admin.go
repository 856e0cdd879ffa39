package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// injectLoss puts packet loss on the plan's targets and, where tc netem exists, a delay as
// well. Without netem (this harness's usual kernel) the delay is skipped, once logged, and
// the fault's note says so.
func (n *Nemesis) injectLoss(ctx context.Context, p planned) (string, error) {
	if err := n.cluster.Loss(ctx, p.targets, p.probability); err != nil {
		return "", err
	}
	const noDelay = "no delay: tc netem is not available in this kernel, loss only"
	if n.netemBroken {
		return noDelay, nil
	}
	for _, i := range p.targets {
		err := n.cluster.Netem(ctx, i, p.delay, 0)
		if errors.Is(err, ErrNetemUnsupported) {
			n.netemBroken = true
			n.cfg.Logger.Warn("nemesis loss: " + noDelay)
			return noDelay, nil
		}
		if err != nil {
			return "", fmt.Errorf("netem delay on %s: %w", n.cluster.NodeID(i), err)
		}
		n.netemHosts = append(n.netemHosts, i)
	}
	return fmt.Sprintf("delay %s (netem)", p.delay), nil
}

// Bounds of a leader storm: the pause between two transfer requests, and one request.
const (
	stormMinGap  = 200 * time.Millisecond
	stormMaxGap  = 500 * time.Millisecond
	stormTimeout = 3 * time.Second
)

// startStorm starts asking the leader to transfer leadership every 200-500 ms, to a random
// voter or to Raft's choice, until the heal stops it. Its schedule has its own RNG, seeded
// from the nemesis's, so the storm does not disturb the next faults' plans.
func (n *Nemesis) startStorm() {
	rng := rand.New(rand.NewPCG(n.rng.Uint64(), 0x73746f726d))
	// Only a voter can take leadership over; a non-voter target would only be refused.
	var voters []int
	for i := range n.cluster.Size() {
		if n.cluster.Voter(i) {
			voters = append(voters, i)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg          sync.WaitGroup
		ok, refused int
		lastRefusal string
		leaders     = map[string]bool{}
	)
	wg.Go(func() {
		for {
			gap := stormMinGap + time.Duration(rng.Int64N(int64(stormMaxGap-stormMinGap)))
			if !sleep(ctx, gap) {
				return
			}
			target := ""
			if i := rng.IntN(len(voters) + 1); i < len(voters) {
				target = n.cluster.NodeID(voters[i])
			}
			tctx, tcancel := context.WithTimeout(ctx, stormTimeout)
			leader, err := n.cluster.TransferLeadership(tctx, target)
			tcancel()
			if err != nil {
				// Refusals are expected (no leader yet, a transfer already under way); they
				// are the storm, not a harness error.
				refused++
				lastRefusal = err.Error()
				continue
			}
			ok++
			leaders[leader] = true
		}
	})
	n.stopStorm = func() string {
		cancel()
		wg.Wait()
		note := fmt.Sprintf("%d transfers answered, %d refused or timed out; leaders seen %d", ok, refused, len(leaders))
		if lastRefusal != "" {
			n.cfg.Logger.Info("leader storm: last refusal", "err", lastRefusal)
		}
		return note
	}
}

// injectMembership removes node i's Raft identity from the configuration (through the
// leader, which hands leadership over first if it is the one removed), kills the node, wipes
// its data dir and restarts it: a new Raft identity with no state, which keeps its Raft port
// closed until the old identity is gone and which the leader then adds as a voter (or as a
// non-voter, if cluster.hcl makes it one).
func (n *Nemesis) injectMembership(ctx context.Context, i int) (string, error) {
	var (
		old string
		err error
	)
	for {
		if old, err = n.cluster.RaftID(ctx, i); err == nil {
			break
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return "", fmt.Errorf("raft id of %s: %w", n.cluster.NodeID(i), err)
		}
	}
	if err := n.cluster.RemoveServer(ctx, old); err != nil {
		return "", err
	}
	n.oldRaftID = old
	if err := n.cluster.Kill(i); err != nil {
		return "removed " + old, err
	}
	if err := n.cluster.Wipe(i); err != nil {
		return "removed " + old, err
	}
	return "removed " + old + ", wiped", n.cluster.Restart(i)
}

// healMembership makes sure node i runs and waits until the leader has made it a member
// again, with the suffrage cluster.hcl gives it, under its new identity.
func (n *Nemesis) healMembership(ctx context.Context, i int) (string, error) {
	err := n.cluster.Restart(i)
	old := n.oldRaftID
	n.oldRaftID = ""
	if old == "" {
		// The old identity was never removed: there is no new one to wait for.
		return "", err
	}
	id, werr := n.cluster.WaitMember(ctx, i, old)
	if werr != nil {
		return "", errors.Join(err, werr)
	}
	suffrage := "voter"
	if !n.cluster.Voter(i) {
		suffrage = "non-voter"
	}
	return suffrage + " again as " + id, err
}
