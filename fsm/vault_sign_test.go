package fsm

import (
	"bytes"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// cosign signs every input of a cold batch's PSBT with the account key of test key n (one of
// the 2-of-3 cosigners 3, 4, 5, or any other), as a cosigner's wallet would; tamper edits the
// transaction before signing.
func (f *vaultFixture) cosign(b *bankdv1.PayoutBatch, n uint32, tamper func(*psbt.Packet)) []byte {
	f.t.Helper()
	p, err := psbt.NewFromRawBytes(bytes.NewReader(b.Psbt), false)
	if err != nil {
		f.t.Fatal(err)
	}
	if tamper != nil {
		tamper(p)
	}
	priv, _ := testXKey(f.t, n, &chaincfg.RegressionNetParams)
	account, err := hdkeychain.NewKeyFromString(priv)
	if err != nil {
		f.t.Fatal(err)
	}
	fetcher := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range p.UnsignedTx.TxIn {
		fetcher.AddPrevOut(in.PreviousOutPoint, p.Inputs[i].WitnessUtxo)
	}
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, fetcher)
	for i, in := range b.Inputs {
		k, err := account.Derive(in.Branch)
		if err == nil {
			k, err = k.Derive(in.Index)
		}
		if err != nil {
			f.t.Fatal(err)
		}
		key, err := k.ECPrivKey()
		if err != nil {
			f.t.Fatal(err)
		}
		sig, err := txscript.RawTxInWitnessSignature(p.UnsignedTx, hashes, i, p.Inputs[i].WitnessUtxo.Value, p.Inputs[i].WitnessScript, txscript.SigHashAll, key)
		if err != nil {
			f.t.Fatal(err)
		}
		p.Inputs[i].PartialSigs = append(p.Inputs[i].PartialSigs, &psbt.PartialSig{PubKey: key.PubKey().SerializeCompressed(), Signature: sig})
	}
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		f.t.Fatal(err)
	}
	return buf.Bytes()
}

func TestAColdToHotMoveCollectsMSignaturesThenIsBooked(t *testing.T) {
	f := newVaultFixture(t)
	coldFunding := pay("cold-funding", f.coldScript(0), 1_000_000)
	f.mustOK(f.connect(coldFunding))
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	f.mustOK(f.propose("coldvault", "r1", "cold", bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT, 400_000))
	refusal(t, f.decide("coldvault", "r1", true, ""), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "another identity")
	f.mustOK(f.decide("ops", "r1", true, ""))

	// The plan: the cold coin into the hot wallet's next change index, change to the cold
	// wallet's change branch, with every cosigner's derivation and the witness script.
	coldWallet, _ := f.Wallet("cold")
	hot, _ := f.Wallet("hot")
	hotIndex := hot.Branches[1].NextIndex
	op := &bankdv1.Outpoint{Txid: coldFunding.Txid, Vout: 0}
	in := &bankdv1.BatchInput{Outpoint: op, ValueSat: 1_000_000, Script: f.coldScript(0)}
	coldChange, err := f.coldRecv.Expand(0) // for the witness size only
	if err != nil {
		t.Fatal(err)
	}
	changeScript := must(descriptorBranch(t, coldWallet.Descriptor_, 1).Derive(0))
	vsize := TxVSize(1, MultisigWitnessBytes(2, coldChange.WitnessScript), [][]byte{f.hotScript(1, hotIndex), changeScript})
	fee := vsize * 2
	raw, err := BuildPayoutPSBT(coldWallet.Descriptor_, "regtest", []*bankdv1.BatchInput{in}, []*bankdv1.BatchOutput{
		{ValueSat: 400_000, Script: f.hotScript(1, hotIndex), VaultIndex: hotIndex},
		{ValueSat: 600_000 - fee, Script: changeScript, Change: true, ChangeIndex: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, ok := f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: VaultQueue, WalletId: "cold", Inputs: []*bankdv1.Outpoint{op},
		ChangeSat: 600_000 - fee, Psbt: raw, VaultProposalId: "r1"}, nil).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("cold plan refused: %v", f.log[len(f.log)-1])
	}
	b := res.Batch
	if b.SignaturesRequired != 2 || b.VaultWalletId != "hot" || b.Vsize != vsize {
		t.Fatalf("cold batch %v", b)
	}
	if w, _ := f.Wallet("hot"); w.Branches[1].NextIndex != hotIndex+1 {
		t.Fatalf("the hot change index was not taken")
	}
	submit := func(raw []byte) any { return f.submit(b.Id, raw) }

	// Bad signatures, each refused whole.
	refusal(t, submit(b.Psbt), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "no signature")
	refusal(t, submit(f.cosign(b, 6, nil)), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not a cosigner")
	refusal(t, submit(f.cosign(b, 3, func(p *psbt.Packet) { p.UnsignedTx.TxOut[0].Value += 1000 })), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "not batch")
	forged := f.cosign(b, 3, func(p *psbt.Packet) { p.Inputs[0].WitnessUtxo.Value += 1 }) // signs another amount
	refusal(t, submit(forged), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "does not verify")

	// One signature: still collecting; the same one again adds nothing.
	first, ok := submit(f.cosign(b, 3, nil)).(*bankdv1.SubmitPayoutSignatureResponse)
	if !ok || first.Batch.State != bankdv1.BatchState_BATCH_STATE_PLANNED || first.Batch.Signatures != 1 {
		t.Fatalf("after one signature: %v", first)
	}
	refusal(t, submit(f.cosign(b, 3, nil)), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "no signature that")
	if p := f.proposal("r1"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_SIGNING {
		t.Fatalf("proposal %v", p.State)
	}
	// The second cosigner signs the PSBT the cluster holds now (with the first signature).
	b = f.batch(b.Id)
	second, ok := submit(f.cosign(b, 5, nil)).(*bankdv1.SubmitPayoutSignatureResponse)
	if !ok || second.Batch.State != bankdv1.BatchState_BATCH_STATE_SIGNED || len(second.Batch.SignedTx) == 0 {
		t.Fatalf("after two signatures: %v", second)
	}
	if p := f.proposal("r1"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_BROADCAST {
		t.Fatalf("proposal %v", p.State)
	}

	b = second.Batch
	match := &bankdv1.TxMatch{Txid: b.Txid, Inputs: []*bankdv1.Outpoint{op}, Outputs: []*bankdv1.TxOutputMatch{
		{Vout: 0, ValueSat: 400_000, Script: f.hotScript(1, hotIndex)}, {Vout: 1, ValueSat: 600_000 - fee, Script: changeScript}}}
	f.mustOK(f.connect(match))
	f.mustOK(f.connect())
	f.mustOK(f.connect())
	if p := f.proposal("r1"); p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_FINAL {
		t.Fatalf("proposal %v", p.State)
	}
	if posted, _ := f.net(WalletAccount("hot")); posted != 800_000+400_000 {
		t.Fatalf("wallet:hot %d, want 1,200,000", posted)
	}
	if posted, _ := f.net(WalletAccount("cold")); posted != 600_000-fee {
		t.Fatalf("wallet:cold %d, want %d", posted, 600_000-fee)
	}
	for _, r := range must(f.WalletReconciliation()) {
		if r.DifferenceSat != 0 {
			t.Fatalf("reconciliation %v", r)
		}
	}
}
