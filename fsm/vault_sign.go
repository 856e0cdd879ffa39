package fsm

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
)

// Signatures of a move out of the cold vault. Cosigners sign the batch's PSBT offline, each
// alone; their PSBTs come back one at a time (coldvault, or bankctl). Each partial signature is
// checked here against the cosigner key the cold descriptor derives for that input and the
// input's BIP 143 sighash (SIGHASH_ALL) before it is kept in the batch's PSBT; a PSBT of
// another transaction, or with one bad signature, is refused whole. Once every input holds M
// signatures the transaction is finalized, checked by the script engine, and the batch is
// SIGNED like any other.

// collectSignatures adds a cosigner's PSBT to a PLANNED cold batch.
func (a *applier) collectSignatures(tx *txn, b *bankdv1.PayoutBatch, raw []byte) (proto.Message, error) {
	cold, err := loadWalletState(tx, b.WalletId)
	if err != nil {
		return nil, err
	}
	if cold == nil {
		return nil, fmt.Errorf("batch %s spends wallet %q, which does not exist", b.Id, b.WalletId)
	}
	got, verr := decodePSBT(raw)
	if verr != nil {
		return nil, verr
	}
	want, verr := batchTx(b)
	if verr != nil {
		return nil, verr
	}
	if !sameTx(got.UnsignedTx, want) {
		return nil, invalid("psbt: its transaction is not batch %s's (txid %s, want %s)", b.Id, got.UnsignedTx.TxHash(), b.Txid)
	}
	held, verr := decodePSBT(b.Psbt)
	if verr != nil {
		return nil, fmt.Errorf("batch %s holds a PSBT that does not decode: %s", b.Id, verr.Message)
	}
	hashes := txscript.NewTxSigHashes(want, batchPrevOuts(b))
	added := 0
	for i, in := range b.Inputs {
		out, err := cold.descs[in.Branch].Expand(in.Index)
		if err != nil {
			return nil, fmt.Errorf("batch %s input %d: %w", b.Id, i, err)
		}
		sighash, err := txscript.CalcWitnessSigHash(out.WitnessScript, hashes, txscript.SigHashAll, want, i, in.ValueSat)
		if err != nil {
			return nil, fmt.Errorf("batch %s input %d: sighash: %w", b.Id, i, err)
		}
		for _, ps := range got.Inputs[i].PartialSigs {
			if !isCosigner(out.Keys, ps.PubKey) {
				return nil, invalid("psbt: input %d: a signature by %x, which is not a cosigner key of this input", i, ps.PubKey)
			}
			if err := checkSignature(ps, sighash); err != nil {
				return nil, invalid("psbt: input %d: the signature by %x: %v", i, ps.PubKey, err)
			}
			if hasSignature(held.Inputs[i].PartialSigs, ps.PubKey) {
				continue // submitted before
			}
			held.Inputs[i].PartialSigs = append(held.Inputs[i].PartialSigs, ps)
			added++
		}
	}
	if added == 0 {
		return nil, invalid("psbt: no signature that batch %s does not hold already", b.Id)
	}
	b.Signatures = fewestSignatures(held)
	if b.Signatures < b.SignaturesRequired {
		var buf bytes.Buffer
		if err := held.Serialize(&buf); err != nil {
			return nil, fmt.Errorf("serialize psbt: %w", err)
		}
		b.Psbt = buf.Bytes()
		return &bankdv1.SubmitPayoutSignatureResponse{Batch: b}, a.saveBatch(tx, b)
	}
	// M on every input: keep exactly M, in the script's key order, and finalize.
	for i := range held.Inputs {
		held.Inputs[i].PartialSigs = firstInKeyOrder(held.Inputs[i].PartialSigs, held.Inputs[i].WitnessScript, int(b.SignaturesRequired))
	}
	var buf bytes.Buffer
	if err := held.Serialize(&buf); err != nil {
		return nil, fmt.Errorf("serialize psbt: %w", err)
	}
	signed, verr := SignedBatchTx(b, buf.Bytes())
	if verr != nil {
		return nil, verr
	}
	return a.markSigned(tx, b, signed)
}

func isCosigner(keys []descriptor.DerivedKey, pub []byte) bool {
	for _, k := range keys {
		if bytes.Equal(k.PubKey, pub) {
			return true
		}
	}
	return false
}

func hasSignature(sigs []*psbt.PartialSig, pub []byte) bool {
	for _, s := range sigs {
		if bytes.Equal(s.PubKey, pub) {
			return true
		}
	}
	return false
}

// checkSignature verifies a DER signature with the SIGHASH_ALL byte against sighash.
func checkSignature(ps *psbt.PartialSig, sighash []byte) error {
	if len(ps.Signature) < 2 || ps.Signature[len(ps.Signature)-1] != byte(txscript.SigHashAll) {
		return fmt.Errorf("not a SIGHASH_ALL signature")
	}
	key, err := btcec.ParsePubKey(ps.PubKey)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	sig, err := ecdsa.ParseDERSignature(ps.Signature[:len(ps.Signature)-1])
	if err != nil {
		return fmt.Errorf("not a DER signature: %w", err)
	}
	if !sig.Verify(sighash, key) {
		return fmt.Errorf("does not verify against the input's sighash")
	}
	return nil
}

// fewestSignatures is the smallest number of signatures any input holds.
func fewestSignatures(p *psbt.Packet) uint32 {
	fewest := -1
	for _, in := range p.Inputs {
		if fewest < 0 || len(in.PartialSigs) < fewest {
			fewest = len(in.PartialSigs)
		}
	}
	return uint32(max(fewest, 0))
}

// firstInKeyOrder keeps the first m signatures in the order their keys appear in the witness
// script, which is the order CHECKMULTISIG needs.
func firstInKeyOrder(sigs []*psbt.PartialSig, witnessScript []byte, m int) []*psbt.PartialSig {
	pos := func(pub []byte) int {
		if i := bytes.Index(witnessScript, pub); i >= 0 {
			return i
		}
		return len(witnessScript)
	}
	sorted := append([]*psbt.PartialSig(nil), sigs...)
	sort.SliceStable(sorted, func(i, j int) bool { return pos(sorted[i].PubKey) < pos(sorted[j].PubKey) })
	return sorted[:min(m, len(sorted))]
}
