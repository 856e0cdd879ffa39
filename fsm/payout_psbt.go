package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
)

// BuildPayoutPSBT returns the unsigned PSBT of a plan (BIP 174): the transaction apply expects
// (batchTx) with, for a signer, every input's witness UTXO, SIGHASH_ALL and the BIP 32
// derivation of its key, and the change output's derivation. walletDescriptor is the spending
// wallet's (multipath) descriptor in normal form, as the state machine stores it. A sweep's
// change goes to another wallet: its output carries no derivation (the signer checks its script
// against the destination it is configured with).
func BuildPayoutPSBT(walletDescriptor, network string, inputs []*bankdv1.BatchInput, outputs []*bankdv1.BatchOutput) ([]byte, error) {
	return buildPSBT(walletDescriptor, network, inputs, outputs, true)
}

// BuildSweepPSBT is BuildPayoutPSBT for a sweep, whose one output pays another wallet.
func BuildSweepPSBT(walletDescriptor, network string, inputs []*bankdv1.BatchInput, outputs []*bankdv1.BatchOutput) ([]byte, error) {
	return buildPSBT(walletDescriptor, network, inputs, outputs, false)
}

func buildPSBT(walletDescriptor, network string, inputs []*bankdv1.BatchInput, outputs []*bankdv1.BatchOutput, ownChange bool) ([]byte, error) {
	params, ok := ChainParams(network)
	if !ok {
		return nil, fmt.Errorf("unknown chain network %q", network)
	}
	d, err := descriptor.Parse(walletDescriptor, params)
	if err != nil {
		return nil, err
	}
	branches := d.Multipath()
	if len(branches) != 2 {
		return nil, fmt.Errorf("wallet descriptor has %d branches, want receive and change", len(branches))
	}
	tx, verr := batchTx(&bankdv1.PayoutBatch{Inputs: inputs, Outputs: outputs})
	if verr != nil {
		return nil, verr
	}
	p, err := psbt.NewFromUnsignedTx(tx)
	if err != nil {
		return nil, fmt.Errorf("new psbt: %w", err)
	}
	for i, in := range inputs {
		if in.Branch > 1 {
			return nil, fmt.Errorf("input %d: branch %d", i, in.Branch)
		}
		ders, script, witnessScript, err := derivations(branches[in.Branch], in.Index)
		if err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
		if !bytes.Equal(script, in.Script) {
			return nil, fmt.Errorf("input %d: the wallet's script at branch %d index %d is not the UTXO's", i, in.Branch, in.Index)
		}
		p.Inputs[i].WitnessUtxo = wire.NewTxOut(in.ValueSat, in.Script)
		p.Inputs[i].WitnessScript = witnessScript
		p.Inputs[i].SighashType = txscript.SigHashAll
		p.Inputs[i].Bip32Derivation = ders
	}
	for i, o := range outputs {
		if !o.Change || !ownChange {
			continue
		}
		ders, script, witnessScript, err := derivations(branches[branchChange], o.ChangeIndex)
		if err != nil {
			return nil, fmt.Errorf("change output: %w", err)
		}
		if !bytes.Equal(script, o.Script) {
			return nil, fmt.Errorf("change output pays another script than the wallet's change index %d", o.ChangeIndex)
		}
		p.Outputs[i].WitnessScript = witnessScript
		p.Outputs[i].Bip32Derivation = ders
	}
	if strings.HasPrefix(walletDescriptor, "wsh(") {
		// A multisig: every cosigner's extended key, so that a hardware signer can check that
		// the change is the same multisig (BIP 174 PSBT_GLOBAL_XPUB).
		for _, k := range d.ExtendedKeys() {
			p.Unknowns = append(p.Unknowns, globalXpub(k))
		}
	}
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		return nil, fmt.Errorf("serialize psbt: %w", err)
	}
	return buf.Bytes(), nil
}

// globalXpub is the PSBT_GLOBAL_XPUB record of an extended key: key 0x01 || the 78-byte
// serialized key, value the master fingerprint || the path (little-endian uint32s).
func globalXpub(k descriptor.ExtendedKey) *psbt.Unknown {
	ser := base58.Decode(k.Key.String())[:78] // the base58check payload, without its checksum
	value := append([]byte(nil), k.Origin.Fingerprint[:]...)
	for _, step := range k.Origin.Path {
		value = binary.LittleEndian.AppendUint32(value, step)
	}
	return &psbt.Unknown{Key: append([]byte{byte(psbt.XpubType)}, ser...), Value: value}
}

// derivations are the BIP 32 derivations of every key of a wallet branch at index (one for
// wpkh, every cosigner's for a wsh multisig), the script there and its witness script (nil for
// wpkh).
func derivations(branch *descriptor.Descriptor, index uint32) ([]*psbt.Bip32Derivation, []byte, []byte, error) {
	out, err := branch.Expand(index)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(out.Keys) == 0 {
		return nil, nil, nil, fmt.Errorf("the output at index %d has no key", index)
	}
	ders := make([]*psbt.Bip32Derivation, 0, len(out.Keys))
	for _, k := range out.Keys {
		ders = append(ders, &psbt.Bip32Derivation{
			PubKey:               k.PubKey,
			MasterKeyFingerprint: binary.LittleEndian.Uint32(k.Origin.Fingerprint[:]),
			Bip32Path:            k.Origin.Path,
		})
	}
	return ders, out.Script, out.WitnessScript, nil
}
