package signer

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// Sign signs every input of a batch Check returned, finalizes the PSBT and returns it
// serialized. Before it returns, it runs every input of the signed transaction through
// txscript's script engine, and records the batch in the ledger (checking the daily limit
// again, now, under the ledger's lock). When either fails, it returns an error and no bytes.
// Signing is deterministic (RFC 6979), so signing a batch again gives the same PSBT and does
// not count its outflow twice.
func (s *Signer) Sign(c *CheckedBatch) ([]byte, error) {
	if c == nil || c.psbt == nil {
		return nil, errors.New("signer: sign: the batch was not checked")
	}
	// Decode afresh: signing never mutates what Check returned, so a failed or repeated Sign
	// starts over from the checked bytes.
	p, err := parsePSBT(bytes.NewReader(c.psbt))
	if err != nil {
		return nil, fmt.Errorf("signer: batch %s: decode the checked PSBT: %w", c.batchID, err)
	}
	tx := p.UnsignedTx
	prevOuts := make([]*wire.TxOut, len(tx.TxIn))
	fetch := make(map[wire.OutPoint]*wire.TxOut, len(tx.TxIn))
	for i, in := range tx.TxIn {
		prevOuts[i] = p.Inputs[i].WitnessUtxo
		fetch[in.PreviousOutPoint] = prevOuts[i]
	}
	fetcher := txscript.NewMultiPrevOutFetcher(fetch)
	sigHashes := txscript.NewTxSigHashes(tx, fetcher)

	u, err := psbt.NewUpdater(p)
	if err != nil {
		return nil, fmt.Errorf("signer: batch %s: %w", c.batchID, err)
	}
	for i, ref := range c.keys {
		if err := s.signInput(u, sigHashes, i, ref, prevOuts[i]); err != nil {
			return nil, fmt.Errorf("signer: batch %s: input %d: %w", c.batchID, i, err)
		}
	}
	if err := psbt.MaybeFinalizeAll(p); err != nil {
		return nil, fmt.Errorf("signer: batch %s: finalize: %w", c.batchID, err)
	}
	if err := verify(p, c.txid, prevOuts, fetcher, sigHashes); err != nil {
		return nil, fmt.Errorf("signer: batch %s: %w", c.batchID, err)
	}
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		return nil, fmt.Errorf("signer: batch %s: serialize: %w", c.batchID, err)
	}
	now := s.now()
	if err := s.ledger.record(c.ledgerEntry(now.UnixMilli()), now, s.limits.DailyLimitSat); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// signInput adds the BIP 143 SIGHASH_ALL signature of input i as a partial signature.
func (s *Signer) signInput(u *psbt.Updater, sigHashes *txscript.TxSigHashes, i int, ref keyRef, prevOut *wire.TxOut) error {
	priv, err := s.wallet.privKey(ref.branch, ref.index)
	if err != nil {
		return err
	}
	defer priv.Zero()
	sig, err := txscript.RawTxInWitnessSignature(u.Upsbt.UnsignedTx, sigHashes, i, prevOut.Value, prevOut.PkScript, txscript.SigHashAll, priv)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	outcome, err := u.Sign(i, sig, priv.PubKey().SerializeCompressed(), nil, nil)
	if err != nil {
		return fmt.Errorf("add the signature: %w", err)
	}
	if outcome != psbt.SignSuccesful {
		return fmt.Errorf("add the signature: outcome %d", outcome)
	}
	return nil
}

// verify extracts the finalized transaction and runs every input through the script engine.
func verify(p *psbt.Packet, txid string, prevOuts []*wire.TxOut, fetcher txscript.PrevOutputFetcher, sigHashes *txscript.TxSigHashes) error {
	tx, err := psbt.Extract(p)
	if err != nil {
		return fmt.Errorf("%w: extract the signed transaction: %w", ErrSignature, err)
	}
	if got := tx.TxHash().String(); got != txid {
		return fmt.Errorf("%w: the signed transaction's id is %s, not %s", ErrSignature, got, txid)
	}
	for i := range tx.TxIn {
		vm, err := txscript.NewEngine(prevOuts[i].PkScript, tx, i, txscript.StandardVerifyFlags, nil, sigHashes, prevOuts[i].Value, fetcher)
		if err != nil {
			return fmt.Errorf("%w: input %d: %w", ErrSignature, i, err)
		}
		if err := vm.Execute(); err != nil {
			return fmt.Errorf("%w: input %d: %w", ErrSignature, i, err)
		}
	}
	return nil
}
