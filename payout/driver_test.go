package payout

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/node"
)

type fakeChain struct {
	rate int64
	ok   bool
	err  error
	sent []*wire.MsgTx
}

func (c *fakeChain) RawTransaction(context.Context, chainhash.Hash) (*wire.MsgTx, error) {
	return nil, errors.New("fake chain: no transactions")
}

func (c *fakeChain) EstimateFeeRate(context.Context, int) (int64, bool, error) {
	return c.rate, c.ok, c.err
}

func (c *fakeChain) SendRawTransaction(_ context.Context, tx *wire.MsgTx) (chainhash.Hash, error) {
	c.sent = append(c.sent, tx)
	return tx.TxHash(), nil
}

func queues() node.PayoutsConfig {
	return node.PayoutsConfig{Wallet: "hot", DefaultQueue: "flat", Queues: []node.PayoutQueueConfig{
		{Name: "flat", Fee: node.FeeFlat, FeeSat: 700, MinFeeRate: 2, MaxFeeRate: 20, ApprovalThresholdSat: 5_000_000, MaxBatch: 100},
		{Name: "est", Fee: node.FeeEstimate, FeeSat: 3_000, MinFeeRate: 2, MaxFeeRate: 20, MaxBatch: 100},
	}}
}

func TestPolicyChargesWhatTheQueueSays(t *testing.T) {
	p2wpkh := make([]byte, 22)
	for _, c := range []struct {
		name        string
		chain       *fakeChain
		queue       string
		wantQueue   string
		wantFee     int64
		wantApprove int64
	}{
		{"flat fee, default queue", &fakeChain{}, "", "flat", 700, 5_000_000},
		{"estimate below the floor pays the floor", &fakeChain{rate: 1_000, ok: true}, "est", "est", (99*2_000 + 999) / 1000, 0},
		{"estimate within the bounds", &fakeChain{rate: 10_000, ok: true}, "est", "est", 990, 0},
		{"estimate above the ceiling is clamped, then capped", &fakeChain{rate: 900_000, ok: true}, "est", "est", 1_980, 0},
		{"no estimate pays the floor", &fakeChain{ok: false}, "est", "est", 198, 0},
		{"a failing node pays the floor", &fakeChain{err: errors.New("down")}, "est", "est", 198, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := New(queues(), "regtest", nil, nil, c.chain, Options{})
			d.refreshRates(context.Background())
			q, pol, err := d.Policy(c.queue, p2wpkh)
			if err != nil || q != c.wantQueue || pol.FeeSat != c.wantFee || pol.ApprovalThresholdSat != c.wantApprove {
				t.Fatalf("Policy = %q %v %v, want %q fee %d threshold %d", q, pol, err, c.wantQueue, c.wantFee, c.wantApprove)
			}
		})
	}
	d := New(queues(), "regtest", nil, nil, nil, Options{})
	if _, _, err := d.Policy("nope", p2wpkh); !errors.Is(err, ErrUnknownQueue) {
		t.Fatalf("unknown queue: %v", err)
	}
	if _, _, err := New(node.PayoutsConfig{}, "regtest", nil, nil, nil, Options{}).Policy("", p2wpkh); !errors.Is(err, ErrNoPayouts) {
		t.Fatalf("no payouts block: %v", err)
	}
}

func TestPlanPaysTheOldestWithdrawalsTheWalletCanAfford(t *testing.T) {
	s := newPlanState(t, 3, 5) // three UTXOs, five withdrawals of ~20,000 each
	for i, u := range s.utxos {
		u.ValueSat = []int64{30_000, 25_000, 15_000}[i]
	}
	c := &capture{}
	d := New(queues(), "regtest", c, s, nil, Options{})
	b, err := d.plan(context.Background(), queues().Queues[0], s.queued)
	if err != nil || b == nil {
		t.Fatalf("plan: %v", err)
	}
	if got := c.plan.PayoutIds; len(got) != 3 || got[0] != "w0" || got[2] != "w2" {
		t.Fatalf("planned %v, want the three oldest", got)
	}
	var in int64
	for _, op := range c.plan.Inputs {
		for _, u := range s.utxos {
			if u.Outpoint.Txid == op.Txid {
				in += u.ValueSat
			}
		}
	}
	if fee := in - (20_000 + 20_001 + 20_002) - c.plan.ChangeSat; fee <= 0 {
		t.Fatalf("fee %d", fee)
	}

	// A wallet that cannot pay even the oldest plans nothing and says so.
	s.utxos = s.utxos[2:]
	c.plan = nil
	if b, err := d.plan(context.Background(), queues().Queues[0], s.queued); err != nil || b != nil || c.plan != nil {
		t.Fatalf("plan from a poor wallet: %v %v %v", b, err, c.plan)
	}
}

func TestBroadcastSkipsWhatTheChainAlreadyShows(t *testing.T) {
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{1}, 0), nil, nil))
	tx.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
	raw := serialize(t, tx)
	chain := &fakeChain{}
	d := New(queues(), "regtest", nil, &batchesState{batch: &bankdv1.PayoutBatch{Id: "b1", State: bankdv1.BatchState_BATCH_STATE_SIGNED, Txid: tx.TxHash().String(), SignedTx: raw}}, chain, Options{})
	d.broadcastSigned(context.Background())
	d.broadcastSigned(context.Background()) // within RebroadcastEvery: not sent again
	if len(chain.sent) != 1 || chain.sent[0].TxHash() != tx.TxHash() {
		t.Fatalf("sent %d transactions", len(chain.sent))
	}
	if got := testutil.ToFloat64(d.metrics.broadcasts.WithLabelValues("ok")); got != 1 {
		t.Fatalf("bankd_payout_broadcasts_total{result=ok} = %v, want 1", got)
	}
	d2 := New(queues(), "regtest", nil, &batchesState{batch: &bankdv1.PayoutBatch{Id: "b1", State: bankdv1.BatchState_BATCH_STATE_SIGNED, Txid: tx.TxHash().String(), SignedTx: raw},
		seen: &bankdv1.ChainTx{State: bankdv1.TxState_TX_STATE_PENDING}}, chain, Options{})
	d2.broadcastSigned(context.Background())
	if len(chain.sent) != 1 {
		t.Fatal("a transaction the chain watcher sees in the mempool was sent again")
	}
}

type batchesState struct {
	planState
	batch *bankdv1.PayoutBatch
	seen  *bankdv1.ChainTx
}

func (s *batchesState) ListPayoutBatches(state bankdv1.BatchState, _ string, _ int) ([]*bankdv1.PayoutBatch, string, error) {
	if s.batch == nil || s.batch.State != state {
		return nil, "", nil
	}
	return []*bankdv1.PayoutBatch{s.batch}, "", nil
}

func (s *batchesState) ChainTx(string) (*bankdv1.ChainTx, []*bankdv1.Deposit, error) {
	if s.seen == nil {
		return nil, nil, fsm.ErrNotFound
	}
	return s.seen, nil, nil
}

func serialize(t *testing.T, tx *wire.MsgTx) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bumpProposer records the commands the driver proposes.
type bumpProposer struct {
	typ   []bankdv1.CommandType
	plans []*bankdv1.PayoutPlan
}

func (p *bumpProposer) Apply(_ context.Context, typ bankdv1.CommandType, body proto.Message, _ *bankdv1.Fence) (proto.Message, error) {
	p.typ = append(p.typ, typ)
	p.plans = append(p.plans, body.(*bankdv1.PayoutPlan))
	return &bankdv1.PayoutPlanResponse{Batch: &bankdv1.PayoutBatch{Id: "b9"}}, nil
}

// signedBatch is a SIGNED batch "b5" of queue "flat", signed at height 100, paying the plan
// state's queued withdrawal w0 20,000 sat from its one UTXO (500,000 sat) at satPerVB, with
// change to index 0; it returns the batch, the change script, its vsize and fee.
func signedBatch(t *testing.T, s *planState, satPerVB int64) (*bankdv1.PayoutBatch, []byte, int64, int64) {
	t.Helper()
	u := s.utxos[0]
	u.ValueSat = 500_000
	change, err := changeScript(s.wallet.Descriptor_, "regtest", 0)
	if err != nil {
		t.Fatal(err)
	}
	outs := [][]byte{s.queued[0].Script, change}
	vsize := fsm.PayoutTxVSize(1, outs)
	fee := vsize * satPerVB
	b := &bankdv1.PayoutBatch{Id: "b5", Queue: "flat", WalletId: "hot", State: bankdv1.BatchState_BATCH_STATE_SIGNED, SignedAtHeight: 100,
		Inputs:  []*bankdv1.BatchInput{{Outpoint: u.Outpoint, ValueSat: u.ValueSat, Script: u.Script}},
		Outputs: []*bankdv1.BatchOutput{{Vout: 0, ValueSat: 20_000, Script: outs[0], PayoutId: "w0"}, {Vout: 1, ValueSat: 480_000 - fee, Script: change, Change: true}},
		FeeSat:  fee, Vsize: vsize, FeeRateSatKvb: satPerVB * 1000, Txid: strings.Repeat("ab", 32)}
	return b, change, vsize, fee
}

func TestAnUnconfirmedBatchIsBumpedAfterItsBlocks(t *testing.T) {
	s := newPlanState(t, 1, 1)
	u := s.utxos[0]
	b, _, vsize, fee := signedBatch(t, s, 2)
	st := &batchesState{planState: *s, batch: b, seen: &bankdv1.ChainTx{State: bankdv1.TxState_TX_STATE_PENDING}}
	p := &bumpProposer{}
	cfg := queues()
	cfg.Queues[0].BumpAfterBlocks = 3
	d := New(cfg, "regtest", p, st, &fakeChain{}, Options{})

	st.tip = &bankdv1.ChainTip{Height: 102}
	d.broadcastSigned(context.Background())
	if len(p.plans) != 0 {
		t.Fatalf("bumped after 2 of 3 blocks: %v", p.plans)
	}
	st.tip = &bankdv1.ChainTip{Height: 103}
	d.broadcastSigned(context.Background())
	if len(p.plans) != 1 || p.typ[0] != bankdv1.CommandType_COMMAND_TYPE_PAYOUT_BUMP {
		t.Fatalf("proposed %v", p.typ)
	}
	if got := testutil.ToFloat64(d.metrics.bumps.WithLabelValues(node.BumpRBF)); got != 1 {
		t.Fatalf("bankd_payout_fee_bumps_total = %v, want 1", got)
	}
	plan := p.plans[0]
	newFee := 500_000 - 20_000 - plan.ChangeSat
	if plan.Replaces != "b5" || plan.FeeRateSatKvb != 3_000 || newFee < fee+vsize || newFee*1000 < vsize*3_000 {
		t.Fatalf("bump %v: fee %d (old %d, %d vB)", plan, newFee, fee, vsize)
	}
	if len(plan.Inputs) != 1 || plan.Inputs[0].Txid != u.Outpoint.Txid || len(plan.PayoutIds) != 1 || plan.PayoutIds[0] != "w0" {
		t.Fatalf("bump does not keep the inputs and withdrawals: %v", plan)
	}

	// Already replaced, or at the queue's ceiling: no bump.
	p.plans = nil
	b.FeeRateSatKvb = cfg.Queues[0].MaxFeeRate * 1000
	d.broadcastSigned(context.Background())
	b.FeeRateSatKvb, b.ReplacedBy = 2_000, "b9"
	d.broadcastSigned(context.Background())
	if len(p.plans) != 0 {
		t.Fatalf("bumped a batch at the ceiling or already replaced: %v", p.plans)
	}
}

func TestSmallUTXOsAreConsolidatedWhileFeesAreLow(t *testing.T) {
	s := newPlanState(t, 8, 0)
	for i, u := range s.utxos {
		u.ValueSat = int64(10_000 * (i + 1))
	}
	p := &bumpProposer{}
	cfg := queues()
	cfg.Consolidate = node.ConsolidateConfig{BelowFeeRate: 3, MinUtxos: 6, MaxInputs: 5}
	st := &batchesState{planState: *s}
	run := func(chain *fakeChain) {
		d := New(cfg, "regtest", p, st, chain, Options{})
		d.refreshRates(context.Background())
		if err := d.maybeConsolidate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	run(&fakeChain{rate: 10_000, ok: true}) // 10 sat/vB: too dear
	if len(p.plans) != 0 {
		t.Fatalf("consolidated at 10 sat/vB: %v", p.plans)
	}
	run(&fakeChain{rate: 2_000, ok: true})
	if len(p.plans) != 1 {
		t.Fatalf("no consolidation at 2 sat/vB")
	}
	plan := p.plans[0]
	if plan.Queue != fsm.ConsolidationQueue || len(plan.PayoutIds) != 0 || len(plan.Inputs) != 5 {
		t.Fatalf("consolidation %v", plan)
	}
	fee := 150_000 - plan.ChangeSat // the five smallest: 10k..50k
	if vsize := fsm.PayoutTxVSize(5, [][]byte{make([]byte, 22)}); fee < vsize*2 || fee > vsize*2+1 {
		t.Fatalf("fee %d for %d vB at 2 sat/vB", fee, vsize)
	}
	// One at a time: with a consolidation in flight, nothing more.
	st.batch = &bankdv1.PayoutBatch{Id: "b3", Queue: fsm.ConsolidationQueue, State: bankdv1.BatchState_BATCH_STATE_SIGNED}
	p.plans = nil
	run(&fakeChain{rate: 2_000, ok: true})
	if len(p.plans) != 0 {
		t.Fatalf("a second consolidation while one is in flight: %v", p.plans)
	}
}

func TestTheHotWalletKeepsItsTargetNumberOfCoins(t *testing.T) {
	s := newPlanState(t, 2, 0)
	s.utxos[0].ValueSat, s.utxos[1].ValueSat = 50_000, 1_000_000
	p := &bumpProposer{}
	cfg := queues()
	cfg.Split = node.SplitConfig{TargetUtxos: 5, MinSat: 100_000}
	st := &batchesState{planState: *s}
	d := New(cfg, "regtest", p, st, &fakeChain{}, Options{})
	if err := d.maybeSplit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(p.plans) != 1 {
		t.Fatal("no split with 2 of 5 coins")
	}
	plan := p.plans[0]
	// Three coins are missing: the largest becomes four.
	if plan.Queue != fsm.SplitQueue || len(plan.Inputs) != 1 || plan.Inputs[0].Txid != s.utxos[1].Outpoint.Txid || len(plan.SplitSat) != 3 {
		t.Fatalf("split %v", plan)
	}
	total := plan.ChangeSat
	for _, v := range plan.SplitSat {
		total += v
		if v < 100_000 {
			t.Fatalf("split output %d below min_sat", v)
		}
	}
	if fee := 1_000_000 - total; fee <= 0 || fee > 1_000 {
		t.Fatalf("fee %d", fee)
	}
	// Enough coins, or one split in flight: nothing.
	p.plans = nil
	st.batch = &bankdv1.PayoutBatch{Id: "b4", Queue: fsm.SplitQueue, State: bankdv1.BatchState_BATCH_STATE_SIGNED}
	if err := d.maybeSplit(context.Background()); err != nil || len(p.plans) != 0 {
		t.Fatalf("a second split while one is in flight: %v %v", p.plans, err)
	}
	st.batch = nil
	cfg.Split.TargetUtxos = 2
	if err := New(cfg, "regtest", p, st, &fakeChain{}, Options{}).maybeSplit(context.Background()); err != nil || len(p.plans) != 0 {
		t.Fatalf("a split with enough coins: %v %v", p.plans, err)
	}
}

func TestAManualQueueIsPlannedOnlyWhenFlushed(t *testing.T) {
	s := newPlanState(t, 3, 2)
	cfg := queues()
	cfg.Queues[0].Trigger = node.TriggerManual
	c := &capture{}
	d := New(cfg, "regtest", c, s, nil, Options{})
	q := cfg.Queues[0]
	d.lastPlan[q.Name] = time.Now().Add(-time.Hour)
	if err := d.maybePlan(context.Background(), q); err != nil || c.plan != nil {
		t.Fatalf("a manual queue planned without a flush: %v %v", c.plan, err)
	}
	if _, err := d.Flush("nope"); !errors.Is(err, ErrUnknownQueue) {
		t.Fatalf("flush of an unknown queue: %v", err)
	}
	if name, err := d.Flush(""); err != nil || name != "flat" {
		t.Fatalf("flush of the default queue: %q %v", name, err)
	}
	if err := d.maybePlan(context.Background(), q); err != nil || c.plan == nil || len(c.plan.PayoutIds) != 2 {
		t.Fatalf("a flushed manual queue: %v %v", c.plan, err)
	}
	c.plan = nil
	if err := d.maybePlan(context.Background(), q); err != nil || c.plan != nil {
		t.Fatalf("planned again without another flush: %v %v", c.plan, err)
	}
}

func TestACPFPQueueLiftsAStuckBatchWithAChild(t *testing.T) {
	s := newPlanState(t, 1, 1)
	b, change, vsize, fee := signedBatch(t, s, 1)
	st := &batchesState{planState: *s, batch: b, seen: &bankdv1.ChainTx{State: bankdv1.TxState_TX_STATE_PENDING}}
	st.tip = &bankdv1.ChainTip{Height: 101}
	st.wallet.Branches[1].NextIndex = 1
	next := st.queued[0]
	st.queued = nil // w0 is in b5; nothing else waits
	p := &bumpProposer{}
	cfg := queues()
	cfg.Queues[0].BumpAfterBlocks, cfg.Queues[0].Bump = 1, node.BumpCPFP
	d := New(cfg, "regtest", p, st, &fakeChain{}, Options{})
	d.broadcastSigned(context.Background())
	if len(p.plans) != 1 || p.typ[0] != bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN {
		t.Fatalf("proposed %v", p.typ)
	}
	plan := p.plans[0]
	childVSize := fsm.PayoutTxVSize(1, [][]byte{change})
	childFee := b.Outputs[1].ValueSat - plan.ChangeSat
	// The queue's floor is 1 sat/vB: the new rate is 1 sat/vB more than the parent's, 2 sat/vB.
	if plan.Lifts != "b5" || plan.Queue != fsm.ConsolidationQueue || len(plan.Inputs) != 1 || plan.Inputs[0].Txid != b.Txid || plan.Inputs[0].Vout != 1 {
		t.Fatalf("child %v", plan)
	}
	if pkg := (fee + childFee) * 1000 / (vsize + childVSize); pkg < 2_000 || childFee != (vsize+childVSize)*2-fee {
		t.Fatalf("child fee %d: package %d sat/kvB over %d+%d vB, want 2,000", childFee, pkg, vsize, childVSize)
	}
	if got := testutil.ToFloat64(d.metrics.bumps.WithLabelValues(node.BumpCPFP)); got != 1 {
		t.Fatalf("bankd_payout_fee_bumps_total{how=cpfp} = %v, want 1", got)
	}
	// With a withdrawal waiting in its queue, the child is that queue's next payout.
	p.plans, st.queued = nil, []*bankdv1.Payout{{Id: "w1", AmountSat: 30_000, Script: next.Script, Queue: "flat"}}
	d.metrics.bumps.Reset()
	d.broadcastSigned(context.Background())
	if len(p.plans) != 1 || p.plans[0].Queue != "flat" || len(p.plans[0].PayoutIds) != 1 || p.plans[0].PayoutIds[0] != "w1" {
		t.Fatalf("child with a withdrawal: %v", p.plans)
	}
	withW1 := fsm.PayoutTxVSize(1, [][]byte{next.Script, change})
	childFee = b.Outputs[1].ValueSat - 30_000 - p.plans[0].ChangeSat
	if pkg := (fee + childFee) * 1000 / (vsize + withW1); pkg < 2_000 {
		t.Fatalf("child with a withdrawal pays %d: package %d sat/kvB", childFee, pkg)
	}

	// Once lifted, it is not lifted again; nor is a child lifted in turn.
	p.plans, b.LiftedBy = nil, "b9"
	d.broadcastSigned(context.Background())
	b.LiftedBy, b.Lifts = "", "b4"
	d.broadcastSigned(context.Background())
	if len(p.plans) != 0 {
		t.Fatalf("lifted twice, or a child lifted: %v", p.plans)
	}
}

func TestLiftFee(t *testing.T) {
	for _, tc := range []struct {
		name                                  string
		parentVSize, parentFee, childVSize, r int64
		wantFee                               int64
	}{
		{"the child pays what the parent lacks", 200, 200, 110, 5_000, 5*310 - 200},
		{"a parent that pays enough still needs a relayable child", 200, 2_000, 110, 5_000, 110},
		{"rounding up, never down", 141, 141, 110, 1_500, 377 - 141},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fee, value := LiftFee(tc.parentVSize, tc.parentFee, tc.childVSize, tc.r, 100_000)
			if fee != tc.wantFee || value != 100_000-tc.wantFee {
				t.Fatalf("LiftFee = %d, %d; want %d", fee, value, tc.wantFee)
			}
		})
	}
}
