package payout

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/node"
	"github.com/bankd/bankd/wallet/descriptor"
)

// planState is a State holding a hot wallet, its UTXOs and queued withdrawals in memory.
type planState struct {
	wallet  *bankdv1.Wallet
	utxos   []*bankdv1.Utxo
	queued  []*bankdv1.Payout
	scripts map[string]*bankdv1.WatchedScript
	tip     *bankdv1.ChainTip
}

func (s *planState) Wallet(string) (*bankdv1.Wallet, error) { return s.wallet, nil }
func (s *planState) QueuedPayouts(_ string, max int) ([]*bankdv1.Payout, error) {
	return s.queued[:min(max, len(s.queued))], nil
}
func (s *planState) SpendableUtxos(string) ([]*bankdv1.Utxo, error) { return s.utxos, nil }
func (s *planState) ListPayoutBatches(bankdv1.BatchState, string, int) ([]*bankdv1.PayoutBatch, string, error) {
	return nil, "", nil
}
func (s *planState) ChainTx(string) (*bankdv1.ChainTx, []*bankdv1.Deposit, error) {
	return nil, nil, fsm.ErrNotFound
}
func (s *planState) LookupAddress(a string) (*bankdv1.WatchedScript, error) {
	if ws, ok := s.scripts[a]; ok {
		return ws, nil
	}
	return nil, fsm.ErrNotFound
}

// capture is a Proposer that keeps the plan and answers like the state machine would.
type capture struct{ plan *bankdv1.PayoutPlan }

func (c *capture) Apply(_ context.Context, _ bankdv1.CommandType, body proto.Message, _ *bankdv1.Fence) (proto.Message, error) {
	c.plan = body.(*bankdv1.PayoutPlan)
	return &bankdv1.PayoutPlanResponse{Batch: &bankdv1.PayoutBatch{Id: "b1"}}, nil
}

// newPlanState makes a wpkh hot wallet with nUtxos UTXOs on distinct receive indexes and
// nPayouts queued withdrawals to p2wpkh addresses.
func newPlanState(tb testing.TB, nUtxos, nPayouts int) *planState {
	tb.Helper()
	seed := sha256.Sum256([]byte("payout bench"))
	master, err := hdkeychain.NewMaster(seed[:], &chaincfg.RegressionNetParams)
	if err != nil {
		tb.Fatal(err)
	}
	k := master
	for _, step := range []uint32{84, 1, 0} {
		if k, err = k.Derive(hdkeychain.HardenedKeyStart + step); err != nil {
			tb.Fatal(err)
		}
	}
	pub, err := k.Neuter()
	if err != nil {
		tb.Fatal(err)
	}
	d, err := descriptor.Parse(fmt.Sprintf("wpkh(%s/<0;1>/*)", pub), &chaincfg.RegressionNetParams)
	if err != nil {
		tb.Fatal(err)
	}
	s := &planState{
		wallet:  &bankdv1.Wallet{Id: "hot", Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: d.String(), Branches: []*bankdv1.WalletBranch{{Branch: 0}, {Branch: 1}}},
		scripts: map[string]*bankdv1.WatchedScript{},
	}
	receive := d.Multipath()[0]
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range nUtxos {
		// Deriving 100,000 scripts takes seconds; the planner only needs distinct entries, so
		// the UTXOs share a few hundred scripts.
		index := uint32(i % 500)
		addr, err := receive.Address(index, nil)
		if err != nil {
			tb.Fatal(err)
		}
		script, err := receive.Derive(index)
		if err != nil {
			tb.Fatal(err)
		}
		txid := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		s.utxos = append(s.utxos, &bankdv1.Utxo{Outpoint: &bankdv1.Outpoint{Txid: hex.EncodeToString(txid[:]), Vout: 0},
			ValueSat: 10_000 + rng.Int64N(1_000_000), Script: script, Address: addr.EncodeAddress(), WalletId: "hot"})
		s.scripts[addr.EncodeAddress()] = &bankdv1.WatchedScript{WalletId: "hot", Branch: 0, Index: index}
	}
	for i := range nPayouts {
		h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("payee"), uint64(i)))
		s.queued = append(s.queued, &bankdv1.Payout{Id: fmt.Sprintf("w%d", i), Script: append([]byte{0, 20}, h[:20]...), AmountSat: 20_000 + int64(i)})
	}
	return s
}

// BenchmarkPlan1000OutputsFrom100kUTXOs times the leader's planning of one 1,000-output payout
// from a hot wallet of 100,000 UTXOs: coin selection, the PSBT with every derivation, and the
// proposal (captured, not applied). -benchmem reports its memory.
func BenchmarkPlan1000OutputsFrom100kUTXOs(b *testing.B) {
	s := newPlanState(b, 100_000, 1000)
	cfg := node.PayoutsConfig{Wallet: "hot", Queues: []node.PayoutQueueConfig{{Name: "batched", MinFeeRate: 5, MaxFeeRate: 50, MaxBatch: 1000}}}
	c := &capture{}
	d := New(cfg, "regtest", c, s, nil, Options{})
	b.ReportAllocs()
	for b.Loop() {
		batch, err := d.plan(context.Background(), cfg.Queues[0], s.queued)
		if err != nil || batch == nil {
			b.Fatalf("plan: %v", err)
		}
	}
	b.ReportMetric(float64(len(c.plan.Inputs)), "inputs")
	b.ReportMetric(float64(len(c.plan.Psbt))/1024, "psbt-KiB")
}

func (s *planState) PayoutBatch(string) (*bankdv1.PayoutBatch, error) { return nil, fsm.ErrNotFound }

func (s *planState) ChainTip() (*bankdv1.ChainTip, bool, error) { return s.tip, s.tip != nil, nil }

func (s *planState) ListWallets(string, int) ([]*bankdv1.Wallet, string, error) {
	return []*bankdv1.Wallet{s.wallet}, "", nil
}

func (s *planState) SweepableUtxos(string) ([]*bankdv1.Utxo, error) { return nil, nil }
