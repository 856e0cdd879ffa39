package fsm

import (
	"fmt"
	"math/rand/v2"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// lostGen makes the lost-node commands of the random mix: pool nodes that get invoices and
// payments, stop answering and are declared lost (by an admin, without a principal, while still
// answering, twice with another reason), then resolutions of their payments from evidence of
// every kind: right and wrong preimages, failures, replays, other evidence and preimages of
// payments failed by hand. Each node the generator loses is its own (ln-lost-<k>), so the
// nodes the rest of the mix pays from stay in the pool.
type lostGen struct {
	rng      *rand.Rand
	steps    int
	results  map[string]int
	node     string // the node being lost, "" before the next one is registered
	k        int
	items    int // invoices and payments tried on it
	down     bool
	payments []string // payment ids of nodes lost so far, with their hash numbers
	hashes   map[string]int
	nextHash int
}

func (g *commandGen) lostStep() {
	lg := &g.lost
	if lg.results == nil {
		lg.results, lg.hashes, lg.nextHash = map[string]int{}, map[string]int{}, 1000
		lg.rng = rand.New(rand.NewPCG(g.tf.AppliedIndex(), uint64(g.tf.nowMs))) // differs with the seed of the mix
	}
	count := func(what string, res any) {
		switch r := res.(type) {
		case *Error:
			lg.results["refused "+r.Code.String()]++
		case *bankdv1.DeclareLndLostResponse:
			if r.Replayed {
				lg.results["declared again"]++
			} else {
				lg.results["declared"]++
			}
		case *bankdv1.ResolveLostPaymentResponse:
			switch {
			case r.Problem != "":
				lg.results["contradicted"]++
			case r.Replayed:
				lg.results["replayed"]++
			default:
				lg.results["resolved"]++
			}
		default:
			lg.results[what]++
		}
	}
	who := "admin"
	if lg.rng.IntN(12) == 0 {
		who = "" // no one decided: refused
	}
	if lg.node == "" {
		lg.k++
		lg.node, lg.down, lg.items = fmt.Sprintf("ln-lost-%d", lg.k), false, 0
		g.tf.upsertNode(lg.node)
		count("healthy", g.tf.health(lg.node, true, fmt.Sprintf("02%064x", 0xd000+lg.k), 100_000))
		return
	}
	n, err := g.tf.LndNode(lg.node)
	if err != nil {
		g.tf.t.Fatal(err)
	}
	switch {
	case n.State == bankdv1.LndNodeState_LND_NODE_STATE_RETIRED:
		lg.node = ""
	case !lg.down && lg.items < 3:
		lg.items++
		hash := lg.nextHash
		lg.nextHash++
		account := "acct" + fmt.Sprint(1+lg.rng.IntN(3))
		if lg.rng.IntN(2) == 0 {
			count("invoice", g.tf.invoice(hash, account, lg.node, int64(1+lg.rng.IntN(300))))
			return
		}
		id := g.id("lost-p")
		res := g.tf.startPayment(id, account, hash, int64(1+lg.rng.IntN(300)), int64(lg.rng.IntN(20)), lg.node)
		if _, ok := res.(*bankdv1.LnPaymentStartResponse); ok {
			lg.payments, lg.hashes[id] = append(lg.payments, id), hash
		}
		count("payment", res)
	case !lg.down && lg.rng.IntN(3) == 0:
		// Declared while it still answers: refused.
		count("", g.tf.asPrincipal(who, bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST, &bankdv1.DeclareLndLostRequest{NodeId: lg.node, Reason: "gone"}))
	case !lg.down:
		lg.down = true
		count("down", g.tf.health(lg.node, false, "", 0))
	case n.State != bankdv1.LndNodeState_LND_NODE_STATE_LOST || lg.rng.IntN(6) == 0:
		reason := []string{"disk lost", "host decommissioned"}[lg.rng.IntN(4)/3] // mostly the first, sometimes another reason
		count("", g.tf.asPrincipal(who, bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST, &bankdv1.DeclareLndLostRequest{NodeId: lg.node, Reason: reason}))
	default:
		if len(lg.payments) == 0 {
			return
		}
		id := lg.payments[lg.rng.IntN(len(lg.payments))]
		hash := lg.hashes[id]
		var req *bankdv1.ResolveLostPaymentRequest
		switch lg.rng.IntN(5) {
		case 0, 1:
			if lg.rng.IntN(6) == 0 {
				hash++ // a preimage of another hash
			}
			pre, _ := preimageAndHash(hash)
			req = &bankdv1.ResolveLostPaymentRequest{PaymentId: id, Succeeded: true, Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PREIMAGE,
				Preimage: pre, FeeSat: int64(lg.rng.IntN(3) * 10)}
		case 2, 3:
			req = &bankdv1.ResolveLostPaymentRequest{PaymentId: id, Evidence: bankdv1.LostPaymentEvidence(2 + lg.rng.IntN(2)),
				Reference: "ticket " + fmt.Sprint(lg.rng.IntN(2))}
		default:
			req = &bankdv1.ResolveLostPaymentRequest{PaymentId: id, Evidence: bankdv1.LostPaymentEvidence(lg.rng.IntN(4))} // mostly malformed
		}
		count("", g.tf.asPrincipal(who, bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT, req))
	}
}
