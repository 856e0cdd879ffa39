package fsm

import (
	"encoding/hex"
	"fmt"
	"testing"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

// vaultFixture is a payout fixture with a 2-of-3 COLD wallet "cold".
type vaultFixture struct {
	*payoutFixture
	coldRecv *descriptor.Descriptor
}

func newVaultFixture(t *testing.T) *vaultFixture {
	t.Helper()
	f := newPayoutFixture(t)
	origin := func(n uint32) string {
		return fmt.Sprintf("[%s/84h/1h/%dh]%s", testMasterFingerprint(t), n, tpub(t, n))
	}
	desc := fmt.Sprintf("wsh(sortedmulti(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", origin(3), origin(4), origin(5))
	w := f.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "cold", Kind: bankdv1.WalletKind_WALLET_KIND_COLD, Descriptor_: desc, GapLimit: 5})
	d, err := descriptor.Parse(w.Descriptor_, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return &vaultFixture{payoutFixture: f, coldRecv: d.Multipath()[0]}
}

func (f *vaultFixture) propose(principal, id, cold string, dir bankdv1.VaultDirection, amount int64) any {
	f.t.Helper()
	f.principal = principal
	defer func() { f.principal = "app" }()
	return f.do(bankdv1.CommandType_COMMAND_TYPE_VAULT_PROPOSE, &bankdv1.VaultProposeCommand{
		Request:     &bankdv1.ProposeVaultTransferRequest{Id: id, Direction: dir, ColdWalletId: cold, AmountSat: amount, Reason: "hot wallet above its band"},
		HotWalletId: "hot",
	}, nil)
}

func (f *vaultFixture) decide(principal, id string, approve bool, reason string) any {
	f.t.Helper()
	f.principal = principal
	defer func() { f.principal = "app" }()
	return f.do(bankdv1.CommandType_COMMAND_TYPE_VAULT_DECIDE, &bankdv1.DecideVaultProposalRequest{Id: id, Approve: approve, Reason: reason}, nil)
}

func (f *vaultFixture) proposal(id string) *bankdv1.VaultProposal {
	f.t.Helper()
	p, err := f.VaultProposal(id)
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// planVault plans proposal id from the funding transaction's output vout: output 0 pays amount
// to script, the change is the rest less a 1,000 sat fee.
func (f *vaultFixture) planVault(id string, script []byte, amount int64, vout uint32) any {
	f.t.Helper()
	o := f.funding.Outputs[vout]
	op := &bankdv1.Outpoint{Txid: f.funding.Txid, Vout: vout}
	w, err := f.Wallet("hot")
	if err != nil {
		f.t.Fatal(err)
	}
	next := w.Branches[1].NextIndex
	change := o.ValueSat - amount - 1_000
	raw, err := BuildPayoutPSBT(f.hotDesc, "regtest", []*bankdv1.BatchInput{{Outpoint: op, ValueSat: o.ValueSat, Script: o.Script, Index: vout}},
		[]*bankdv1.BatchOutput{{ValueSat: amount, Script: script}, {ValueSat: change, Script: f.hotScript(1, next), Change: true, ChangeIndex: next}})
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{
		Queue: VaultQueue, WalletId: "hot", Inputs: []*bankdv1.Outpoint{op}, ChangeSat: change, Psbt: raw, VaultProposalId: id,
	}, nil)
}

func (f *vaultFixture) coldScript(index uint32) []byte {
	f.t.Helper()
	s, err := f.coldRecv.Derive(index)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func TestAHotToColdMoveIsApprovedPlannedSignedAndBooked(t *testing.T) {
	f := newVaultFixture(t)
	toCold := bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD
	res, ok := f.propose("coldvault", "v1", "cold", toCold, 300_000).(*bankdv1.ProposeVaultTransferResponse)
	if !ok || res.Proposal.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_PROPOSED || res.Proposal.ProposedBy != "coldvault" || res.Proposal.HotWalletId != "hot" {
		t.Fatalf("propose: %v", f.propose("coldvault", "v1", "cold", toCold, 300_000))
	}
	if again, ok := f.propose("coldvault", "v1", "cold", toCold, 300_000).(*bankdv1.ProposeVaultTransferResponse); !ok || !again.Replayed {
		t.Fatalf("a retried proposal is not replayed: %v", again)
	}
	refusal(t, f.propose("coldvault", "v1", "cold", toCold, 200_000), bankdv1.ResultCode_RESULT_CODE_ALREADY_EXISTS, "another vault proposal")
	refusal(t, f.propose("coldvault", "v2", "cold", toCold, 100_000), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "one move at a time")

	// Only another identity decides; only an approved proposal is planned.
	refusal(t, f.planVault("v1", f.coldScript(0), 300_000, 0), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "not APPROVED")
	refusal(t, f.decide("coldvault", "v1", true, ""), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "another identity")
	refusal(t, f.decide("", "v1", true, ""), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "another identity")
	f.mustOK(f.decide("ops", "v1", true, ""))
	if p := f.proposal("v1"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_APPROVED || p.DecidedBy != "ops" {
		t.Fatalf("approved: %v", p)
	}

	// A plan paying anywhere but the cold wallet's next receive address is refused.
	refusal(t, f.planVault("v1", f.hotScript(0, 4), 300_000, 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not the plan's")
	refusal(t, f.planVault("v1", f.coldScript(1), 300_000, 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not the plan's")
	planned, ok := f.planVault("v1", f.coldScript(0), 300_000, 0).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("vault plan refused: %v", f.planVault("v1", f.coldScript(0), 300_000, 0))
	}
	b := planned.Batch
	if p := f.proposal("v1"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_SIGNING || p.BatchId != b.Id || b.VaultWalletId != "cold" || b.Outputs[0].VaultIndex != 0 {
		t.Fatalf("after the plan: %v, batch %v", p, b)
	}
	if w, _ := f.Wallet("cold"); w.Branches[0].NextIndex != 1 {
		t.Fatalf("cold receive index %d after the plan, want 1", w.Branches[0].NextIndex)
	}
	b = f.signedBatch(b.Id)
	if p := f.proposal("v1"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_BROADCAST {
		t.Fatalf("after the signature: %v", p.State)
	}
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_VAULT_ABANDON, &bankdv1.AbandonVaultProposalRequest{Id: "v1", Reason: "late"}, nil),
		bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "may confirm")

	match := batchMatch(b)
	match.Outputs = append([]*bankdv1.TxOutputMatch{{Vout: 0, ValueSat: 300_000, Script: f.coldScript(0)}}, match.Outputs...)
	f.mustOK(f.connect(match))
	if p := f.proposal("v1"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_CONFIRMED {
		t.Fatalf("confirmed: %v", p.State)
	}
	for _, r := range must(f.WalletReconciliation()) {
		if r.DifferenceSat != 0 && r.UnsettledBatches == 0 {
			t.Fatalf("wallet %s differs by %d with nothing unsettled while the move is on its way", r.WalletId, r.DifferenceSat)
		}
	}
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	if p := f.proposal("v1"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_FINAL {
		t.Fatalf("final: %v", p.State)
	}
	if posted, _ := f.net(WalletAccount("cold")); posted != 300_000 {
		t.Fatalf("wallet:cold %d, want 300,000", posted)
	}
	if posted, _ := f.net(WalletAccount("hot")); posted != 499_000 {
		t.Fatalf("wallet:hot %d, want 800,000 less 300,000 and the 1,000 fee", posted)
	}
	for _, r := range must(f.WalletReconciliation()) {
		if r.DifferenceSat != 0 {
			t.Fatalf("reconciliation %v", r)
		}
	}
	if s, _ := f.Solvency(); s.WalletsSat != 799_000 {
		t.Fatalf("solvency %v", s)
	}

	// The slot is free again: a rejected proposal, then one abandoned after its plan.
	f.mustOK(f.propose("coldvault", "v3", "cold", toCold, 100_000))
	refusal(t, f.decide("ops", "v3", false, ""), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "reason")
	f.mustOK(f.decide("ops", "v3", false, "not this week"))
	if p := f.proposal("v3"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_REJECTED || p.EndReason != "not this week" {
		t.Fatalf("rejected: %v", p)
	}
	f.mustOK(f.propose("coldvault", "v4", "cold", toCold, 100_000))
	f.mustOK(f.decide("ops", "v4", true, ""))
	spendable := len(must(f.SpendableUtxos("hot")))
	refusal(t, f.planVault("v4", f.coldScript(1), 100_000, 0), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "is not a UTXO")
	vb, ok := f.planVault("v4", f.coldScript(1), 100_000, 1).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("plan v4: %v", f.planVault("v4", f.coldScript(1), 100_000, 1))
	}
	f.mustOK(f.do(bankdv1.CommandType_COMMAND_TYPE_VAULT_ABANDON, &bankdv1.AbandonVaultProposalRequest{Id: "v4", Reason: "wrong amount"}, nil))
	if p := f.proposal("v4"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_ABANDONED || f.batch(vb.Batch.Id).State != bankdv1.BatchState_BATCH_STATE_ABANDONED {
		t.Fatalf("abandoned: %v", p)
	}
	if n := len(must(f.SpendableUtxos("hot"))); n != spendable {
		t.Fatalf("%d spendable UTXOs after the abandon, want %d", n, spendable)
	}
	f.mustOK(f.propose("coldvault", "v5", "cold", toCold, 100_000)) // the slot is free again
}

func TestVaultProposalsThatAreRefused(t *testing.T) {
	f := newVaultFixture(t)
	f.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "single", Kind: bankdv1.WalletKind_WALLET_KIND_COLD, Descriptor_: depositDescriptor(t, 6), GapLimit: 2})
	f.mustWallet(&bankdv1.CreateWalletRequest{WalletId: "bare", Kind: bankdv1.WalletKind_WALLET_KIND_COLD, GapLimit: 2,
		Descriptor_: fmt.Sprintf("wsh(sortedmulti(2,%s/<0;1>/*,%s/<0;1>/*))", tpub(t, 7), tpub(t, 8))})
	toCold := bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD
	for _, tc := range []struct {
		name   string
		cold   string
		dir    bankdv1.VaultDirection
		amount int64
		code   bankdv1.ResultCode
		msg    string
	}{
		{"a cold wallet that is no multisig", "single", toCold, 1000, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "wsh(sortedmulti"},
		{"a multisig without key origins", "bare", toCold, 1000, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "key origin"},
		{"the hot wallet as the cold one", "hot", toCold, 1000, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not COLD"},
		{"a wallet that does not exist", "nope", toCold, 1000, bankdv1.ResultCode_RESULT_CODE_NOT_FOUND, "no wallet"},
		{"no direction", "cold", 0, 1000, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "direction"},
		{"a zero amount", "cold", toCold, 0, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "amount_sat"},
		{"a negative amount", "cold", toCold, -5, bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "amount_sat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusal(t, f.propose("coldvault", "x", tc.cold, tc.dir, tc.amount), tc.code, tc.msg)
		})
	}
	// A cold -> hot plan must spend the cold wallet.
	f.mustOK(f.propose("coldvault", "refill", "cold", bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT, 1000))
	f.mustOK(f.decide("ops", "refill", true, ""))
	refusal(t, f.planVault("refill", f.coldScript(0), 1000, 0), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not COLD")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// descriptorBranch parses a wallet descriptor and returns one of its multipath branches.
func descriptorBranch(t *testing.T, desc string, branch int) *descriptor.Descriptor {
	t.Helper()
	d, err := descriptor.Parse(desc, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return d.Multipath()[branch]
}

// testMasterFingerprint is the BIP 32 fingerprint of the master key testXKey derives from.
func testMasterFingerprint(t testing.TB) string {
	t.Helper()
	seed := make([]byte, 32)
	seed[0] = 0xba
	master, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := master.ECPubKey()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(btcutil.Hash160(pub.SerializeCompressed())[:4])
}
