package fsm

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
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
	f, b := plannedRefill(t)
	f.mustOK(f.connect())
	f.mustOK(f.connect()) // the cold wallet's funding is final and booked
	refusal(t, f.decide("coldvault", "r1", true, ""), bankdv1.ResultCode_RESULT_CODE_PAYOUT_CONFLICT, "PROPOSED")

	// The plan: the cold coin into the hot wallet's next change index, change to the cold
	// wallet's change branch, sized for 2-of-3 witnesses.
	coldWallet, _ := f.Wallet("cold")
	hotIndex := b.Outputs[0].VaultIndex
	op := b.Inputs[0].Outpoint
	changeScript := must(descriptorBranch(t, coldWallet.Descriptor_, 1).Derive(0))
	recv, err := f.coldRecv.Expand(0)
	if err != nil {
		t.Fatal(err)
	}
	const fee = 1_000
	vsize := TxVSize(1, MultisigWitnessBytes(2, recv.WitnessScript), [][]byte{f.hotScript(1, hotIndex), changeScript})
	if b.SignaturesRequired != 2 || b.VaultWalletId != "hot" || b.Vsize != vsize || b.FeeSat != fee {
		t.Fatalf("cold batch %v, want %d vB", b, vsize)
	}
	if w, _ := f.Wallet("hot"); w.Branches[1].NextIndex != hotIndex+1 {
		t.Fatalf("the hot change index was not taken")
	}
	// What a hardware cosigner needs: every cosigner's derivation and the witness script on the
	// input and on the change, and the three global xpubs.
	packet, err := psbt.NewFromRawBytes(bytes.NewReader(b.Psbt), false)
	if err != nil {
		t.Fatal(err)
	}
	xpubs := 0
	for _, u := range packet.Unknowns {
		if len(u.Key) == 79 && u.Key[0] == byte(psbt.XpubType) {
			xpubs++
		}
	}
	if in, out := packet.Inputs[0], packet.Outputs[1]; len(in.Bip32Derivation) != 3 || len(in.WitnessScript) == 0 || in.WitnessUtxo == nil ||
		len(out.Bip32Derivation) != 3 || len(out.WitnessScript) == 0 || xpubs != 3 || len(packet.Outputs[0].Bip32Derivation) != 0 {
		t.Fatalf("the PSBT lacks what a cosigner needs: input %+v, change %+v, %d global xpubs", in, out, xpubs)
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

// FuzzColdSignatures feeds arbitrary PSBTs to a planned cold -> hot batch. Whatever the bytes,
// apply answers (a refusal or the batch), never panics, and the batch is signed only by a
// transaction that verifies with two cosigners' signatures.
func FuzzColdSignatures(f *testing.F) {
	f.Add([]byte("psbt\xff"), false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, raw []byte, seedValid bool) {
		vf, b := plannedRefill(t)
		if seedValid {
			raw = vf.cosign(b, 3, nil)
		}
		res := vf.submit(b.Id, raw)
		got := vf.batch(b.Id)
		switch r := res.(type) {
		case *Error:
			if got.State != bankdv1.BatchState_BATCH_STATE_PLANNED || got.Signatures != 0 {
				t.Fatalf("a refused PSBT changed the batch: %v", got)
			}
		case *bankdv1.SubmitPayoutSignatureResponse:
			if got.State == bankdv1.BatchState_BATCH_STATE_SIGNED {
				t.Fatalf("signed by one submission of %d bytes", len(raw))
			}
			if r.Batch.Signatures != 1 {
				t.Fatalf("signatures %d after one cosigner", r.Batch.Signatures)
			}
		default:
			t.Fatalf("unexpected answer %T", res)
		}
	})
}

// plannedRefill is a vault fixture whose cold wallet holds 1,000,000 sat and a planned,
// unsigned cold -> hot batch of 400,000 sat.
func plannedRefill(t *testing.T) (*vaultFixture, *bankdv1.PayoutBatch) {
	t.Helper()
	f := newVaultFixture(t)
	coldFunding := pay("cold-funding", f.coldScript(0), 1_000_000)
	f.mustOK(f.connect(coldFunding))
	f.mustOK(f.propose("coldvault", "r1", "cold", bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT, 400_000))
	f.mustOK(f.decide("ops", "r1", true, ""))
	coldWallet, _ := f.Wallet("cold")
	hot, _ := f.Wallet("hot")
	hotIndex := hot.Branches[1].NextIndex
	op := &bankdv1.Outpoint{Txid: coldFunding.Txid, Vout: 0}
	changeScript := must(descriptorBranch(t, coldWallet.Descriptor_, 1).Derive(0))
	raw, err := BuildPayoutPSBT(coldWallet.Descriptor_, "regtest", []*bankdv1.BatchInput{{Outpoint: op, ValueSat: 1_000_000, Script: f.coldScript(0)}},
		[]*bankdv1.BatchOutput{{ValueSat: 400_000, Script: f.hotScript(1, hotIndex), VaultIndex: hotIndex}, {ValueSat: 599_000, Script: changeScript, Change: true}})
	if err != nil {
		t.Fatal(err)
	}
	res, ok := f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: VaultQueue, WalletId: "cold", Inputs: []*bankdv1.Outpoint{op},
		ChangeSat: 599_000, Psbt: raw, VaultProposalId: "r1"}, nil).(*bankdv1.PayoutPlanResponse)
	if !ok {
		t.Fatalf("cold plan refused: %v", f.log[len(f.log)-1])
	}
	return f, res.Batch
}

func TestAColdPlanWithAWrongPreviousTransactionIsRefused(t *testing.T) {
	f := newVaultFixture(t)
	coldFunding := pay("cold-funding", f.coldScript(0), 1_000_000)
	f.mustOK(f.connect(coldFunding))
	f.mustOK(f.propose("coldvault", "r1", "cold", bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT, 400_000))
	f.mustOK(f.decide("ops", "r1", true, ""))
	coldWallet, _ := f.Wallet("cold")
	hot, _ := f.Wallet("hot")
	op := &bankdv1.Outpoint{Txid: coldFunding.Txid, Vout: 0}
	raw, err := BuildPayoutPSBT(coldWallet.Descriptor_, "regtest", []*bankdv1.BatchInput{{Outpoint: op, ValueSat: 1_000_000, Script: f.coldScript(0)}},
		[]*bankdv1.BatchOutput{{ValueSat: 400_000, Script: f.hotScript(1, hot.Branches[1].NextIndex)}, {ValueSat: 599_000, Script: must(descriptorBranch(t, coldWallet.Descriptor_, 1).Derive(0)), Change: true}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := psbt.NewFromRawBytes(bytes.NewReader(raw), false)
	if err != nil {
		t.Fatal(err)
	}
	// A previous transaction that pays the input's script and amount, but is another one.
	liar := wire.NewMsgTx(2)
	liar.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: 7}, nil, nil))
	liar.AddTxOut(wire.NewTxOut(1_000_000, f.coldScript(0)))
	p.Inputs[0].NonWitnessUtxo = liar
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	refusal(t, f.do(bankdv1.CommandType_COMMAND_TYPE_PAYOUT_PLAN, &bankdv1.PayoutPlan{Queue: VaultQueue, WalletId: "cold", Inputs: []*bankdv1.Outpoint{op},
		ChangeSat: 599_000, Psbt: buf.Bytes(), VaultProposalId: "r1"}, nil), bankdv1.ResultCode_RESULT_CODE_INVALID_ARGUMENT, "non_witness_utxo")
}

// BenchmarkColdRefillPSBT100 reports how large the PSBT of a refill spending 100 inputs of a
// 2-of-3 cold vault is, with what a hardware cosigner needs (derivations, witness scripts,
// global xpubs, and each input's previous transaction: here a one-input, two-output one).
func BenchmarkColdRefillPSBT100(b *testing.B) {
	origin := func(n uint32) string {
		return fmt.Sprintf("[%s/48h/1h/%dh/2h]%s", testMasterFingerprint(b), n, tpub(b, n))
	}
	desc := fmt.Sprintf("wsh(sortedmulti(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", origin(3), origin(4), origin(5))
	d, err := descriptor.Parse(desc, &chaincfg.RegressionNetParams)
	if err != nil {
		b.Fatal(err)
	}
	recv, change := d.Multipath()[0], d.Multipath()[1]
	var inputs []*bankdv1.BatchInput
	parents := map[string]*wire.MsgTx{}
	for i := range uint32(100) {
		script := must(recv.Derive(i))
		parent := wire.NewMsgTx(2)
		parent.AddTxIn(wire.NewTxIn(&wire.OutPoint{Index: i}, nil, [][]byte{make([]byte, 71), make([]byte, 33)}))
		parent.AddTxOut(wire.NewTxOut(100_000, script))
		parent.AddTxOut(wire.NewTxOut(500_000, make([]byte, 22)))
		txid := parent.TxHash().String()
		parents[txid] = parent
		inputs = append(inputs, &bankdv1.BatchInput{Outpoint: &bankdv1.Outpoint{Txid: txid}, ValueSat: 100_000, Script: script, Index: i})
	}
	outputs := []*bankdv1.BatchOutput{{ValueSat: 9_000_000, Script: make([]byte, 22)}, {ValueSat: 900_000, Script: must(change.Derive(0)), Change: true}}
	for b.Loop() {
		raw, err := BuildPayoutPSBT(d.String(), "regtest", inputs, outputs)
		if err != nil {
			b.Fatal(err)
		}
		p, err := psbt.NewFromRawBytes(bytes.NewReader(raw), false)
		if err != nil {
			b.Fatal(err)
		}
		for i, in := range p.UnsignedTx.TxIn {
			p.Inputs[i].NonWitnessUtxo = parents[in.PreviousOutPoint.Hash.String()]
		}
		var buf bytes.Buffer
		if err := p.Serialize(&buf); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(raw)), "psbt_bytes_without_parents")
		b.ReportMetric(float64(buf.Len()), "psbt_bytes")
	}
}
