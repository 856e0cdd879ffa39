package signer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"slices"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// The transactions bankd's planner builds.
const (
	txVersion  = 2
	txLockTime = 0
	// txSequence signals replaceability (BIP 125) and leaves the locktime enforced.
	txSequence = wire.MaxTxInSequenceNum - 2
)

// Bounds on what Check accepts.
const (
	// maxPSBTBytes bounds a batch's PSBT before it is decoded.
	maxPSBTBytes = 4_000_000
	// maxStandardTxVSize is the largest transaction bitcoind relays (400,000 weight units).
	maxStandardTxVSize = 100_000
	// p2wpkhWitnessBytes is the largest witness of a P2WPKH input: item count, a 73-byte
	// signature with its sighash byte, a 33-byte key, and their lengths.
	p2wpkhWitnessBytes = 1 + 1 + 73 + 1 + 33
)

// CheckedBatch is a batch Check found fit to sign. Only Check makes one, and Sign signs only
// what Check returned.
type CheckedBatch struct {
	batchID string
	txid    string
	psbt    []byte
	// keys are where each input's key derives (branch, index), in input order.
	keys         []keyRef
	outflowSat   int64
	feeSat       int64
	changeSat    int64
	vsize        int64
	inputsSHA256 string
}

type keyRef struct{ branch, index uint32 }

// BatchID returns the batch's id.
func (c *CheckedBatch) BatchID() string { return c.batchID }

// Txid returns the transaction's id.
func (c *CheckedBatch) Txid() string { return c.txid }

// OutflowSat returns what the batch pays out: its withdrawal outputs, change excluded.
func (c *CheckedBatch) OutflowSat() int64 { return c.outflowSat }

// FeeSat returns the fee the transaction pays.
func (c *CheckedBatch) FeeSat() int64 { return c.feeSat }

// ChangeSat returns the change output's value (0 without change).
func (c *CheckedBatch) ChangeSat() int64 { return c.changeSat }

// VSize returns the virtual size the fee rate cap was checked with: the record's, or the
// largest the signed transaction can have when the record claims more.
func (c *CheckedBatch) VSize() int64 { return c.vsize }

func (c *CheckedBatch) ledgerEntry(signedUnixMs int64) ledgerEntry {
	return ledgerEntry{BatchID: c.batchID, Txid: c.txid, OutflowSat: c.outflowSat, InputsSHA256: c.inputsSHA256, SignedUnixMs: signedUnixMs}
}

// Check verifies a batch before it is signed (see the package documentation for the list) and
// returns it ready for Sign, or a *CheckError saying why it is refused. payouts are the
// batch's withdrawals as bankd reports them, fetched by the ids its outputs name; every one
// must be paid by exactly one output. open is the channel open a channel funding batch names
// (nil for any other batch): its funding output must be exactly the one lnd asked for. Check
// changes nothing, not even the ledger: a batch checked but never signed is not counted.
func (s *Signer) Check(batch *bankdv1.PayoutBatch, payouts []*bankdv1.Payout, open *bankdv1.ChannelOpen) (*CheckedBatch, error) {
	if batch == nil {
		return nil, batchErr("", ErrMalformed, "no batch")
	}
	id := batch.GetId()
	switch {
	case id == "":
		return nil, batchErr(id, ErrMalformed, "the batch has no id")
	case batch.GetState() != bankdv1.BatchState_BATCH_STATE_PLANNED:
		return nil, batchErr(id, ErrMalformed, "state %s; only PLANNED batches are signed", batch.GetState())
	}
	p, err := decodePSBT(id, batch.GetPsbt())
	if err != nil {
		return nil, err
	}
	if err := checkTx(batch, p.UnsignedTx); err != nil {
		return nil, err
	}
	c := &CheckedBatch{batchID: id, txid: batch.GetTxid(), psbt: bytes.Clone(batch.GetPsbt())}
	if c.keys, err = s.checkInputs(batch, p); err != nil {
		return nil, err
	}
	if c.changeSat, err = s.checkChange(batch, p); err != nil {
		return nil, err
	}
	if c.outflowSat, err = checkPayouts(batch, p.UnsignedTx, payouts); err != nil {
		return nil, err
	}
	funding, err := checkChannel(batch, p.UnsignedTx, open)
	if err != nil {
		return nil, err
	}
	c.outflowSat += funding
	if err := s.checkVault(batch, p.UnsignedTx); err != nil {
		return nil, err
	}
	if c.feeSat, c.vsize, err = s.checkFee(batch, p); err != nil {
		return nil, err
	}
	c.inputsSHA256 = inputsDigest(p)
	if err := s.ledger.admit(c.ledgerEntry(0), s.now(), s.limits.DailyLimitSat); err != nil {
		return nil, err
	}
	return c, nil
}

func decodePSBT(id string, b []byte) (*psbt.Packet, error) {
	switch {
	case len(b) == 0:
		return nil, batchErr(id, ErrMalformed, "the batch has no PSBT")
	case len(b) > maxPSBTBytes:
		return nil, batchErr(id, ErrMalformed, "the PSBT is %d bytes, more than %d", len(b), maxPSBTBytes)
	}
	r := bytes.NewReader(b)
	p, err := parsePSBT(r)
	if err != nil {
		return nil, batchErr(id, ErrMalformed, "the PSBT does not decode: %v", err)
	}
	if r.Len() != 0 {
		return nil, batchErr(id, ErrMalformed, "%d bytes follow the PSBT", r.Len())
	}
	if err := p.SanityCheck(); err != nil {
		return nil, batchErr(id, ErrMalformed, "the PSBT is not sane: %v", err)
	}
	if len(p.Inputs) != len(p.UnsignedTx.TxIn) || len(p.Outputs) != len(p.UnsignedTx.TxOut) {
		return nil, batchErr(id, ErrMalformed, "the PSBT's input and output maps do not match its transaction")
	}
	return p, nil
}

// parsePSBT is psbt.NewFromRawBytes turning a panic into an error. btcutil/psbt panics on some
// malformed key-value pairs (btcsuite/btcd#2351, fixed after v1.1.8; #2372, open), and a PSBT
// comes from the network: it must be refused, not crash the signer.
func parsePSBT(r io.Reader) (p *psbt.Packet, err error) {
	defer func() {
		if v := recover(); v != nil {
			p, err = nil, fmt.Errorf("the parser failed: %v", v)
		}
	}()
	return psbt.NewFromRawBytes(r, false)
}

// checkTx compares the unsigned transaction with the batch record, field by field.
func checkTx(batch *bankdv1.PayoutBatch, tx *wire.MsgTx) error {
	id := batch.GetId()
	switch {
	case tx.Version != txVersion:
		return batchErr(id, ErrTxMismatch, "version %d, want %d", tx.Version, txVersion)
	case tx.LockTime != txLockTime:
		return batchErr(id, ErrTxMismatch, "locktime %d, want %d", tx.LockTime, txLockTime)
	case len(batch.GetInputs()) == 0 || len(batch.GetOutputs()) == 0:
		return batchErr(id, ErrMalformed, "the record lists %d inputs and %d outputs; a batch has at least one of each", len(batch.GetInputs()), len(batch.GetOutputs()))
	case len(tx.TxIn) != len(batch.GetInputs()):
		return batchErr(id, ErrTxMismatch, "the transaction has %d inputs, the record %d", len(tx.TxIn), len(batch.GetInputs()))
	case len(tx.TxOut) != len(batch.GetOutputs()):
		return batchErr(id, ErrTxMismatch, "the transaction has %d outputs, the record %d", len(tx.TxOut), len(batch.GetOutputs()))
	}
	seen := make(map[wire.OutPoint]int, len(tx.TxIn))
	for i, in := range tx.TxIn {
		rec := batch.GetInputs()[i]
		txid := rec.GetOutpoint().GetTxid()
		hash, err := chainhash.NewHashFromStr(txid)
		if len(txid) != 2*chainhash.HashSize || err != nil {
			return inputErr(id, i, ErrMalformed, "the record's outpoint txid %q is not 64 hex digits", txid)
		}
		want := wire.OutPoint{Hash: *hash, Index: rec.GetOutpoint().GetVout()}
		if in.PreviousOutPoint != want {
			return inputErr(id, i, ErrTxMismatch, "spends %s, the record %s", in.PreviousOutPoint, want)
		}
		if j, dup := seen[want]; dup {
			return inputErr(id, i, ErrMalformed, "spends %s, as input %d does", want, j)
		}
		seen[want] = i
		if in.Sequence != txSequence {
			return inputErr(id, i, ErrTxMismatch, "sequence %#x, want %#x", in.Sequence, uint32(txSequence))
		}
	}
	for i, out := range tx.TxOut {
		rec := batch.GetOutputs()[i]
		switch {
		case rec.GetVout() != uint32(i):
			return outputErr(id, i, ErrMalformed, "the record lists vout %d at position %d", rec.GetVout(), i)
		case out.Value != rec.GetValueSat():
			return outputErr(id, i, ErrTxMismatch, "pays %d sat, the record %d sat", out.Value, rec.GetValueSat())
		case !bytes.Equal(out.PkScript, rec.GetScript()):
			return outputErr(id, i, ErrTxMismatch, "pays script %x, the record script %x", out.PkScript, rec.GetScript())
		case out.Value <= 0 || out.Value > btcutil.MaxSatoshi:
			return outputErr(id, i, ErrMalformed, "value %d sat is out of range", out.Value)
		}
	}
	if got := tx.TxHash().String(); got != batch.GetTxid() {
		return batchErr(id, ErrTxMismatch, "the transaction's id is %s, the record's %s", got, batch.GetTxid())
	}
	if v := maxVSize(tx); v > maxStandardTxVSize {
		return batchErr(id, ErrMalformed, "the signed transaction can be %d vB, above the standard limit of %d vB", v, maxStandardTxVSize)
	}
	return nil
}

// checkInputs proves every input the wallet's and returns where each input's key derives.
func (s *Signer) checkInputs(batch *bankdv1.PayoutBatch, p *psbt.Packet) ([]keyRef, error) {
	id := batch.GetId()
	w := s.wallet
	keys := make([]keyRef, len(p.Inputs))
	for i := range p.Inputs {
		pin := &p.Inputs[i]
		rec := batch.GetInputs()[i]
		utxo := pin.WitnessUtxo
		switch {
		case utxo == nil:
			return nil, inputErr(id, i, ErrMalformed, "no witness UTXO")
		case utxo.Value <= 0 || utxo.Value > btcutil.MaxSatoshi:
			return nil, inputErr(id, i, ErrMalformed, "witness UTXO value %d sat is out of range", utxo.Value)
		case utxo.Value != rec.GetValueSat():
			return nil, inputErr(id, i, ErrTxMismatch, "the witness UTXO is worth %d sat, the record says %d sat", utxo.Value, rec.GetValueSat())
		case pin.SighashType != txscript.SigHashAll:
			return nil, inputErr(id, i, ErrMalformed, "sighash type %#x, want SIGHASH_ALL", uint32(pin.SighashType))
		case len(pin.PartialSigs) > 0 || pin.FinalScriptSig != nil || pin.FinalScriptWitness != nil ||
			pin.TaprootKeySpendSig != nil || len(pin.TaprootScriptSpendSig) > 0:
			return nil, inputErr(id, i, ErrMalformed, "the input already carries a signature")
		case pin.RedeemScript != nil || pin.WitnessScript != nil:
			return nil, inputErr(id, i, ErrForeignInput, "a redeem or witness script; a wpkh input has neither")
		case len(pin.Bip32Derivation) != 1:
			return nil, inputErr(id, i, ErrForeignInput, "%d BIP 32 derivations, want the wallet's one", len(pin.Bip32Derivation))
		}
		if pin.NonWitnessUtxo != nil {
			if err := checkNonWitnessUtxo(id, i, p.UnsignedTx.TxIn[i].PreviousOutPoint, pin); err != nil {
				return nil, err
			}
		}
		ref, err := s.checkDerivation(pin.Bip32Derivation[0])
		if err != nil {
			return nil, inputErr(id, i, ErrForeignInput, "%v", err)
		}
		if rec.GetBranch() != ref.branch || rec.GetIndex() != ref.index {
			return nil, inputErr(id, i, ErrTxMismatch, "the PSBT derives it at %d/%d, the record at %d/%d", ref.branch, ref.index, rec.GetBranch(), rec.GetIndex())
		}
		script, err := w.Script(ref.branch, ref.index)
		if err != nil {
			return nil, inputErr(id, i, ErrForeignInput, "derive the descriptor at %d/%d: %v", ref.branch, ref.index, err)
		}
		if !bytes.Equal(utxo.PkScript, script) {
			return nil, inputErr(id, i, ErrForeignInput, "spends script %x; the wallet's script at %s is %x", utxo.PkScript, FormatPath(w.Path(ref.branch, ref.index)), script)
		}
		if !bytes.Equal(rec.GetScript(), utxo.PkScript) {
			return nil, inputErr(id, i, ErrTxMismatch, "the witness UTXO's script is %x, the record's %x", utxo.PkScript, rec.GetScript())
		}
		keys[i] = ref
	}
	return keys, nil
}

// checkNonWitnessUtxo accepts a full previous transaction only when it is the one spent and
// agrees with the witness UTXO.
func checkNonWitnessUtxo(id string, i int, op wire.OutPoint, pin *psbt.PInput) error {
	prev := pin.NonWitnessUtxo
	if prev.TxHash() != op.Hash || int(op.Index) >= len(prev.TxOut) {
		return inputErr(id, i, ErrTxMismatch, "the non-witness UTXO is not the transaction %s spends", op)
	}
	out := prev.TxOut[op.Index]
	if out.Value != pin.WitnessUtxo.Value || !bytes.Equal(out.PkScript, pin.WitnessUtxo.PkScript) {
		return inputErr(id, i, ErrTxMismatch, "the non-witness UTXO and the witness UTXO disagree")
	}
	return nil
}

// checkDerivation proves a BIP 32 derivation the wallet's: its fingerprint is the master's, its
// path is origin/branch/index, and the key the master derives there is the one named.
func (s *Signer) checkDerivation(d *psbt.Bip32Derivation) (keyRef, error) {
	w := s.wallet
	var fp [4]byte
	binary.LittleEndian.PutUint32(fp[:], d.MasterKeyFingerprint)
	if fp != w.fingerprint {
		return keyRef{}, fmt.Errorf("BIP 32 fingerprint %s is not the wallet's %s", fingerprintHex(fp), fingerprintHex(w.fingerprint))
	}
	path := d.Bip32Path
	n := len(w.originPath)
	if len(path) != n+2 || !slices.Equal(path[:n], w.originPath) {
		return keyRef{}, fmt.Errorf("BIP 32 path %s is not %s/<branch>/<index>", FormatPath(path), FormatPath(w.originPath))
	}
	ref := keyRef{branch: path[n], index: path[n+1]}
	if ref.branch > BranchChange || ref.index >= hdkeychain.HardenedKeyStart {
		return keyRef{}, fmt.Errorf("BIP 32 path %s is not on the receive (0) or change (1) branch at an unhardened index", FormatPath(path))
	}
	pub, err := w.pubKey(ref.branch, ref.index)
	if err != nil {
		return keyRef{}, err
	}
	if !bytes.Equal(pub, d.PubKey) {
		return keyRef{}, fmt.Errorf("the key at %s is %x, not the named %x", FormatPath(path), pub, d.PubKey)
	}
	return ref, nil
}

// checkSweep proves a sweep's one output the configured hot wallet's change at its index. The
// coins stay the bank's: a sweep has no outflow, and its value is returned as change.
func (s *Signer) checkSweep(batch *bankdv1.PayoutBatch, p *psbt.Packet) (int64, error) {
	id := batch.GetId()
	outs := batch.GetOutputs()
	switch {
	case s.sweep == nil:
		return 0, batchErr(id, ErrChange, "a sweep to wallet %q, and this signer has no sweep destination configured", batch.GetToWalletId())
	case batch.GetToWalletId() != s.sweep.WalletID:
		return 0, batchErr(id, ErrChange, "a sweep to wallet %q; this signer sweeps only to %q", batch.GetToWalletId(), s.sweep.WalletID)
	case len(outs) != 1 || !outs[0].GetChange() || outs[0].GetPayoutId() != "":
		return 0, batchErr(id, ErrChange, "a sweep has exactly one output, to the destination's change branch")
	}
	script, err := s.sweep.Change.Derive(outs[0].GetChangeIndex())
	if err != nil {
		return 0, outputErr(id, 0, ErrChange, "derive the destination's change script at index %d: %v", outs[0].GetChangeIndex(), err)
	}
	if got := p.UnsignedTx.TxOut[0].PkScript; !bytes.Equal(got, script) {
		return 0, outputErr(id, 0, ErrChange, "pays script %x; wallet %q's change script at index %d is %x", got, s.sweep.WalletID, outs[0].GetChangeIndex(), script)
	}
	return p.UnsignedTx.TxOut[0].Value, nil
}

// checkChange finds the change outputs, if any (after every withdrawal, at distinct change
// indexes: one, or several when the batch splits its change), proves each the wallet's change
// and returns their value.
func (s *Signer) checkChange(batch *bankdv1.PayoutBatch, p *psbt.Packet) (int64, error) {
	id := batch.GetId()
	if batch.GetToWalletId() != "" {
		return s.checkSweep(batch, p)
	}
	w := s.wallet
	outs := batch.GetOutputs()
	var changeSat int64
	firstChange := -1
	indexes := map[uint32]bool{}
	for i, rec := range outs {
		if i == 0 && batch.GetChannelOpenId() != "" {
			continue // the funding output, checked by checkChannel
		}
		if i == 0 && batch.GetVaultProposalId() != "" {
			continue // the cold vault's output, checked by checkVault
		}
		if rec.GetPayoutId() != "" {
			if rec.GetChange() {
				return 0, outputErr(id, i, ErrChange, "marked change but pays withdrawal %q", rec.GetPayoutId())
			}
			if firstChange >= 0 {
				// Change comes after every withdrawal.
				return 0, outputErr(id, firstChange, ErrChange, "change must come after every withdrawal, not before output %d", i)
			}
			continue
		}
		switch {
		case !rec.GetChange():
			return 0, outputErr(id, i, ErrChange, "pays no withdrawal and is not marked change")
		case indexes[rec.GetChangeIndex()]:
			return 0, outputErr(id, i, ErrChange, "change index %d is paid twice", rec.GetChangeIndex())
		}
		indexes[rec.GetChangeIndex()] = true
		if firstChange < 0 {
			firstChange = i
		}
		changeSat += p.UnsignedTx.TxOut[i].Value
		script, err := w.Script(BranchChange, rec.GetChangeIndex())
		if err != nil {
			return 0, outputErr(id, i, ErrChange, "derive the change script at index %d: %v", rec.GetChangeIndex(), err)
		}
		if got := p.UnsignedTx.TxOut[i].PkScript; !bytes.Equal(got, script) {
			return 0, outputErr(id, i, ErrChange, "pays script %x; the wallet's change script at index %d is %x", got, rec.GetChangeIndex(), script)
		}
		pout := &p.Outputs[i]
		if pout.RedeemScript != nil || pout.WitnessScript != nil || len(pout.Bip32Derivation) > 1 {
			return 0, outputErr(id, i, ErrChange, "the PSBT describes it as another kind of output than the wallet's wpkh change")
		}
		if len(pout.Bip32Derivation) == 1 {
			ref, err := s.checkDerivation(pout.Bip32Derivation[0])
			if err != nil {
				return 0, outputErr(id, i, ErrChange, "%v", err)
			}
			if ref != (keyRef{branch: BranchChange, index: rec.GetChangeIndex()}) {
				return 0, outputErr(id, i, ErrChange, "the PSBT derives it at %d/%d, the record at change index %d", ref.branch, ref.index, rec.GetChangeIndex())
			}
		}
	}
	return changeSat, nil
}

// checkPayouts proves every other output the payment of one withdrawal of this batch, exactly,
// and returns their sum.
func checkPayouts(batch *bankdv1.PayoutBatch, tx *wire.MsgTx, payouts []*bankdv1.Payout) (int64, error) {
	id := batch.GetId()
	byID := make(map[string]*bankdv1.Payout, len(payouts))
	for _, po := range payouts {
		if po == nil || po.GetId() == "" {
			return 0, batchErr(id, ErrMalformed, "a withdrawal without an id was given")
		}
		if _, dup := byID[po.GetId()]; dup {
			return 0, batchErr(id, ErrPayout, "withdrawal %q was given twice", po.GetId())
		}
		byID[po.GetId()] = po
	}
	paidBy := make(map[string]int, len(payouts))
	var outflow int64
	for i, rec := range batch.GetOutputs() {
		pid := rec.GetPayoutId()
		if pid == "" {
			continue // change, checked by checkChange
		}
		out := tx.TxOut[i]
		po, ok := byID[pid]
		if !ok {
			return 0, outputErr(id, i, ErrPayout, "withdrawal %q is unknown (not among the withdrawals given)", pid)
		}
		if j, dup := paidBy[pid]; dup {
			return 0, outputErr(id, i, ErrPayout, "pays withdrawal %q a second time (output %d pays it)", pid, j)
		}
		paidBy[pid] = i
		switch {
		case po.GetState() != bankdv1.PayoutState_PAYOUT_STATE_BATCHED:
			return 0, outputErr(id, i, ErrPayout, "withdrawal %q is %s, not BATCHED", pid, po.GetState())
		case po.GetBatchId() != id:
			return 0, outputErr(id, i, ErrPayout, "withdrawal %q is in batch %q", pid, po.GetBatchId())
		case !bytes.Equal(out.PkScript, po.GetScript()):
			return 0, outputErr(id, i, ErrPayout, "pays script %x; withdrawal %q is to script %x", out.PkScript, pid, po.GetScript())
		case out.Value != po.GetAmountSat():
			return 0, outputErr(id, i, ErrPayout, "pays %d sat; withdrawal %q is for %d sat", out.Value, pid, po.GetAmountSat())
		case po.GetTxid() != "" && (po.GetTxid() != batch.GetTxid() || po.GetVout() != uint32(i)):
			return 0, outputErr(id, i, ErrPayout, "withdrawal %q names output %s:%d", pid, po.GetTxid(), po.GetVout())
		}
		outflow += out.Value
		if outflow > btcutil.MaxSatoshi {
			return 0, outputErr(id, i, ErrMalformed, "the withdrawals add up to more than %d sat", int64(btcutil.MaxSatoshi))
		}
	}
	for _, po := range payouts {
		if _, ok := paidBy[po.GetId()]; !ok {
			return 0, batchErr(id, ErrPayout, "withdrawal %q was given but no output pays it", po.GetId())
		}
	}
	return outflow, nil
}

// checkFee proves the fee the record's, positive and within the caps, and returns it with the
// virtual size the rate was checked with.
func (s *Signer) checkFee(batch *bankdv1.PayoutBatch, p *psbt.Packet) (fee, vsize int64, err error) {
	id := batch.GetId()
	var in, out int64
	for i := range p.Inputs {
		in += p.Inputs[i].WitnessUtxo.Value
		if in > btcutil.MaxSatoshi {
			return 0, 0, inputErr(id, i, ErrMalformed, "the inputs add up to more than %d sat", int64(btcutil.MaxSatoshi))
		}
	}
	for i, o := range p.UnsignedTx.TxOut {
		out += o.Value
		if out > btcutil.MaxSatoshi {
			return 0, 0, outputErr(id, i, ErrMalformed, "the outputs add up to more than %d sat", int64(btcutil.MaxSatoshi))
		}
	}
	fee = in - out
	switch {
	case fee != batch.GetFeeSat():
		return 0, 0, batchErr(id, ErrFee, "inputs %d sat - outputs %d sat = %d sat, the record says %d sat", in, out, fee, batch.GetFeeSat())
	case fee <= 0:
		return 0, 0, batchErr(id, ErrFee, "the fee is %d sat; it must be above zero", fee)
	case fee > s.limits.MaxFeeSat:
		return 0, 0, batchErr(id, ErrFeeCap, "fee %d sat is above the cap of %d sat", fee, s.limits.MaxFeeSat)
	case batch.GetVsize() <= 0:
		return 0, 0, batchErr(id, ErrMalformed, "the record's vsize is %d", batch.GetVsize())
	}
	// A record that claims a larger transaction than can exist would lower the rate: use the
	// largest size the signed transaction can have instead.
	vsize = min(batch.GetVsize(), maxVSize(p.UnsignedTx))
	if fee*1000 > s.limits.MaxFeeRateSatKvB*vsize {
		return 0, 0, batchErr(id, ErrFeeCap, "fee %d sat over %d vB is %s sat/vB, above the cap of %s sat/vB",
			fee, vsize, formatRate(fee*1000/vsize), formatRate(s.limits.MaxFeeRateSatKvB))
	}
	return fee, vsize, nil
}

// maxVSize is the largest virtual size tx can have once every input carries a P2WPKH witness.
func maxVSize(tx *wire.MsgTx) int64 {
	weight := int64(4*tx.SerializeSizeStripped()) + 2 + int64(len(tx.TxIn))*p2wpkhWitnessBytes
	return (weight + 3) / 4
}

// formatRate writes a rate in sat/kvB as sat/vB with three decimals.
func formatRate(satKvB int64) string {
	return fmt.Sprintf("%d.%03d", satKvB/1000, satKvB%1000)
}

// inputsDigest is SHA-256 over each input's outpoint and value: what a signature commits to
// besides the transaction.
func inputsDigest(p *psbt.Packet) string {
	h := sha256.New()
	var buf [8]byte
	for i, in := range p.UnsignedTx.TxIn {
		h.Write(in.PreviousOutPoint.Hash[:])
		binary.LittleEndian.PutUint32(buf[:4], in.PreviousOutPoint.Index)
		h.Write(buf[:4])
		binary.LittleEndian.PutUint64(buf[:], uint64(p.Inputs[i].WitnessUtxo.Value))
		h.Write(buf[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkChannel proves a channel funding batch's output 0 the funding output of its open,
// exactly as lnd asked for it, and returns its value (0 for any other batch).
func checkChannel(batch *bankdv1.PayoutBatch, tx *wire.MsgTx, open *bankdv1.ChannelOpen) (int64, error) {
	id := batch.GetId()
	if batch.GetChannelOpenId() == "" {
		if open != nil {
			return 0, batchErr(id, ErrPayout, "channel open %q given for a batch that funds no channel", open.GetId())
		}
		return 0, nil
	}
	rec := batch.GetOutputs()[0]
	switch {
	case open == nil || open.GetId() != batch.GetChannelOpenId():
		return 0, batchErr(id, ErrPayout, "funds channel open %q, which bankd did not report", batch.GetChannelOpenId())
	case open.GetBatchId() != id || open.GetTxid() != batch.GetTxid():
		return 0, batchErr(id, ErrPayout, "channel open %q is funded by batch %q (%s)", open.GetId(), open.GetBatchId(), open.GetTxid())
	case open.GetState() != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_PLANNED && open.GetState() != bankdv1.ChannelOpenState_CHANNEL_OPEN_STATE_VERIFIED:
		return 0, batchErr(id, ErrPayout, "channel open %q is %s, not waiting for its funding transaction", open.GetId(), open.GetState())
	case rec.GetPayoutId() != "" || rec.GetChange():
		return 0, outputErr(id, 0, ErrPayout, "a channel funding's output 0 is its funding output, not a withdrawal or change")
	case !bytes.Equal(tx.TxOut[0].PkScript, open.GetFundingScript()):
		return 0, outputErr(id, 0, ErrPayout, "pays script %x; channel open %q's funding script is %x", tx.TxOut[0].PkScript, open.GetId(), open.GetFundingScript())
	case tx.TxOut[0].Value != open.GetAmountSat():
		return 0, outputErr(id, 0, ErrPayout, "pays %d sat; channel open %q is for %d sat", tx.TxOut[0].Value, open.GetId(), open.GetAmountSat())
	}
	return tx.TxOut[0].Value, nil
}

// checkVault proves a vault batch's output 0 the cold vault's receive script at the index the
// record names, derived from the vault descriptor this signer was configured with (so a
// cluster that lies about the cold wallet cannot make it pay anyone else). A move to the
// bank's own cold vault is not outflow: it does not count against the daily limit.
func (s *Signer) checkVault(batch *bankdv1.PayoutBatch, tx *wire.MsgTx) error {
	id := batch.GetId()
	if batch.GetVaultProposalId() == "" {
		return nil
	}
	rec := batch.GetOutputs()[0]
	switch {
	case s.vault == nil:
		return batchErr(id, ErrPayout, "a vault move to wallet %q, and this signer has no cold vault configured", batch.GetVaultWalletId())
	case batch.GetVaultWalletId() != s.vault.WalletID:
		return batchErr(id, ErrPayout, "a vault move to wallet %q; this signer's cold vault is %q", batch.GetVaultWalletId(), s.vault.WalletID)
	case rec.GetPayoutId() != "" || rec.GetChange():
		return outputErr(id, 0, ErrPayout, "a vault move's output 0 pays the cold vault, not a withdrawal or change")
	}
	script, err := s.vault.Receive.Derive(rec.GetVaultIndex())
	if err != nil {
		return outputErr(id, 0, ErrPayout, "derive the cold vault's receive script at index %d: %v", rec.GetVaultIndex(), err)
	}
	if got := tx.TxOut[0].PkScript; !bytes.Equal(got, script) {
		return outputErr(id, 0, ErrPayout, "pays script %x; the cold vault's receive script at index %d is %x", got, rec.GetVaultIndex(), script)
	}
	return nil
}
