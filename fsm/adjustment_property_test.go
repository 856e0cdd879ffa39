package fsm

import (
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// adjustGen makes the adjustments of the random mix: operators booking money that moved outside
// bankd into the pool nodes' and the hot wallet's accounts, retries, reuses of an id, bad
// requests, customer accounts, overdrafts and commands that carry no principal.
type adjustGen struct {
	sent    []*bankdv1.BookAdjustmentRequest
	booked  []*bankdv1.BookAdjustmentRequest
	results map[string]int
}

func (g *commandGen) adjustStep() {
	ag := &g.adjust
	if ag.results == nil {
		ag.results = map[string]int{}
	}
	if len(ag.booked) > 0 && g.rng.IntN(5) == 0 {
		// A client aims at the ids adjustments use once they are in force: refused like any
		// attack on what the drivers own.
		if since, err := g.tf.readUint64(keyAdjustments); err != nil {
			g.tf.t.Fatal(err)
		} else if since != 0 {
			id := adjustmentTransferID([]string{LightningAdjustmentPrefix, WalletAdjustmentPrefix}[g.rng.IntN(2)], g.tf.AppliedIndex()+uint64(1+g.rng.IntN(3)))
			res := g.tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_TRANSFERS, &bankdv1.CreateTransfersRequest{Transfers: []*bankdv1.Transfer{xfer(id, g.account(), g.account(), 1)}}, nil)
			if r, ok := res.(*bankdv1.CreateTransfersResponse); ok && r.Results[0].Code == bankdv1.ResultCode_RESULT_CODE_OK {
				g.attack.results["applied"]++
			}
			return
		}
	}
	targets := []string{LightningNodeAccount("ln-a"), LightningNodeAccount("ln-b"), LightningNodeAccount("ln-c"), WalletAccount("hot1"), "acct1", LightningCapitalAccount}
	amounts := []int64{1, -1, 1_000, -1_000, 250_000, -600_000, -5_000_000, 0}
	req := &bankdv1.BookAdjustmentRequest{
		Id:        g.id("adj"),
		AccountId: targets[g.rng.IntN(len(targets))],
		AmountSat: amounts[g.rng.IntN(len(amounts))],
		Kind:      bankdv1.AdjustmentKind(g.rng.IntN(8)), // 0 and 7 are not kinds
		Reason:    "found by reconciliation", ExternalReference: "lnd-fwd-" + g.id(""),
	}
	if g.rng.IntN(8) == 0 {
		req.Reason = ""
	}
	switch {
	case len(ag.booked) > 0 && g.rng.IntN(3) == 0:
		req = ag.booked[g.rng.IntN(len(ag.booked))] // a retry
	case len(ag.sent) > 0 && g.rng.IntN(5) == 0:
		req.Id = ag.sent[g.rng.IntN(len(ag.sent))].Id // a reuse, with another body most likely
	}
	ag.sent = append(ag.sent, req)
	who := "ops"
	if g.rng.IntN(10) == 0 {
		who = "" // no one decided: refused
	}
	switch r := g.tf.asPrincipal(who, bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT, req).(type) {
	case *Error:
		ag.results["refused "+r.Code.String()]++
	case *bankdv1.BookAdjustmentResponse:
		if r.Replayed {
			ag.results["replayed"]++
		} else {
			ag.results["booked"]++
			ag.booked = append(ag.booked, req)
		}
	default:
		g.tf.t.Fatalf("adjustment answered %T %v", r, r)
	}
}
