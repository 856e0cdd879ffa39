package coldvault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
)

// The software cosigner: one cosigner's key signing a cold vault PSBT, for tests and small
// setups. A real vault keeps each key on its own hardware signer; this is the same job done
// with the key in a file.

// ErrNothingToSign is returned by Sign when no input names the key.
var ErrNothingToSign = errors.New("coldvault: no input of the PSBT is this key's to sign")

// Sign adds master's signature (SIGHASH_ALL, BIP 143) to every input of a PSBT whose BIP 32
// derivations name master's fingerprint, after checking that the path derives the key the PSBT
// names and that the input carries its witness UTXO and a witness script paying it. It returns
// the PSBT and how many inputs it signed.
func Sign(master *hdkeychain.ExtendedKey, raw []byte) ([]byte, int, error) {
	if !master.IsPrivate() {
		return nil, 0, errors.New("coldvault: the key is public; a cosigner signs with its private key")
	}
	pub, err := master.ECPubKey()
	if err != nil {
		return nil, 0, err
	}
	fp := binary.LittleEndian.Uint32(btcutil.Hash160(pub.SerializeCompressed())[:4])
	p, err := decodePSBT(raw)
	if err != nil {
		return nil, 0, err
	}
	fetcher := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range p.UnsignedTx.TxIn {
		if p.Inputs[i].WitnessUtxo == nil {
			return nil, 0, fmt.Errorf("coldvault: input %d has no witness UTXO", i)
		}
		fetcher.AddPrevOut(in.PreviousOutPoint, p.Inputs[i].WitnessUtxo)
	}
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, fetcher)
	signed := 0
	for i := range p.Inputs {
		in := &p.Inputs[i]
		for _, der := range in.Bip32Derivation {
			if der.MasterKeyFingerprint != fp {
				continue
			}
			k := master
			for _, step := range der.Bip32Path {
				if k, err = k.Derive(step); err != nil {
					return nil, 0, fmt.Errorf("coldvault: input %d: derive: %w", i, err)
				}
			}
			key, err := k.ECPrivKey()
			if err != nil {
				return nil, 0, err
			}
			if !bytes.Equal(key.PubKey().SerializeCompressed(), der.PubKey) {
				return nil, 0, fmt.Errorf("coldvault: input %d: the path derives another key than the PSBT names", i)
			}
			if len(in.WitnessScript) == 0 || !bytes.Contains(in.WitnessScript, der.PubKey) {
				return nil, 0, fmt.Errorf("coldvault: input %d: no witness script with this key", i)
			}
			wsh, err := p2wsh(in.WitnessScript)
			if err != nil {
				return nil, 0, err
			}
			if !bytes.Equal(wsh, in.WitnessUtxo.PkScript) {
				return nil, 0, fmt.Errorf("coldvault: input %d: the witness script is not the one the UTXO pays", i)
			}
			sig, err := txscript.RawTxInWitnessSignature(p.UnsignedTx, hashes, i, in.WitnessUtxo.Value, in.WitnessScript, txscript.SigHashAll, key)
			if err != nil {
				return nil, 0, fmt.Errorf("coldvault: input %d: sign: %w", i, err)
			}
			in.PartialSigs = append(in.PartialSigs, &psbt.PartialSig{PubKey: der.PubKey, Signature: sig})
			signed++
		}
	}
	if signed == 0 {
		return nil, 0, ErrNothingToSign
	}
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), signed, nil
}

// decodePSBT decodes a PSBT from a file: whole (no trailing bytes), with inputs, and without
// letting btcutil/psbt's panics on some malformed input (btcsuite/btcd#2351) stop the program.
func decodePSBT(raw []byte) (p *psbt.Packet, err error) {
	defer func() {
		if v := recover(); v != nil {
			p, err = nil, fmt.Errorf("coldvault: the PSBT does not decode: the parser failed: %v", v)
		}
	}()
	r := bytes.NewReader(raw)
	if p, err = psbt.NewFromRawBytes(r, false); err != nil {
		return nil, fmt.Errorf("coldvault: the PSBT does not decode: %w", err)
	}
	switch {
	case r.Len() != 0:
		return nil, fmt.Errorf("coldvault: %d bytes follow the PSBT", r.Len())
	case len(p.UnsignedTx.TxIn) == 0 || len(p.Inputs) != len(p.UnsignedTx.TxIn) || len(p.Outputs) != len(p.UnsignedTx.TxOut):
		return nil, errors.New("coldvault: the PSBT's transaction has no inputs, or its maps do not match it")
	}
	return p, nil
}
