// Package signertest builds hot wallets and payout batches for the tests of package signer and
// of cmd/signerd: a generated master key with its descriptor and key file, and batches whose
// records and PSBTs follow the format bankd's planner produces (version 2, locktime 0,
// sequences 0xfffffffd, witness UTXOs, SIGHASH_ALL, BIP 32 derivations of inputs and change).
//
// It derives every key and script itself, without package signer, so that a test never checks
// the signer against the signer's own arithmetic. It is for tests only: its keys are random
// and its failures call t.Fatal.
package signertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
)

// Sequence is the sequence of every input the planner builds.
const Sequence = 0xfffffffd

// Wallet is a generated regtest hot wallet: BIP 84 account 0 of a random master key.
type Wallet struct {
	Net         *chaincfg.Params
	Master      *hdkeychain.ExtendedKey
	Fingerprint [4]byte
	// Account is the origin path, m/84'/1'/0'.
	Account []uint32
	// Descriptor is wpkh([fp/84'/1'/0']tpub.../<0;1>/*)#checksum.
	Descriptor string
}

// NewWallet generates a wallet.
func NewWallet(t testing.TB) *Wallet {
	t.Helper()
	seed, err := hdkeychain.GenerateSeed(hdkeychain.RecommendedSeedLen)
	if err != nil {
		t.Fatal(err)
	}
	return walletFromSeed(t, seed)
}

// NewWalletFromSeed makes the wallet of a given seed (16 to 64 bytes), for reproducible tests.
func NewWalletFromSeed(t testing.TB, seed []byte) *Wallet {
	t.Helper()
	return walletFromSeed(t, seed)
}

func walletFromSeed(t testing.TB, seed []byte) *Wallet {
	t.Helper()
	net := &chaincfg.RegressionNetParams
	master, err := hdkeychain.NewMaster(seed, net)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := master.ECPubKey()
	if err != nil {
		t.Fatal(err)
	}
	w := &Wallet{Net: net, Master: master, Account: []uint32{hardened(84), hardened(1), hardened(0)}}
	copy(w.Fingerprint[:], btcutil.Hash160(pub.SerializeCompressed())[:4])
	account := derive(t, master, w.Account)
	xpub, err := account.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf("wpkh([%x/84'/1'/0']%s/<0;1>/*)", w.Fingerprint[:], xpub)
	if w.Descriptor, err = descriptor.AddChecksum(text); err != nil {
		t.Fatal(err)
	}
	return w
}

// KeyFile writes the master key to a file only its owner can read, in a temporary directory,
// and returns its path.
func (w *Wallet) KeyFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(w.Master.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Path is the full BIP 32 path of branch/index.
func (w *Wallet) Path(branch, index uint32) []uint32 {
	return append(append([]uint32(nil), w.Account...), branch, index)
}

// PubKey derives the compressed public key at branch/index.
func (w *Wallet) PubKey(t testing.TB, branch, index uint32) []byte {
	t.Helper()
	pub, err := derive(t, w.Master, w.Path(branch, index)).ECPubKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub.SerializeCompressed()
}

// Script is the P2WPKH script at branch/index.
func (w *Wallet) Script(t testing.TB, branch, index uint32) []byte {
	t.Helper()
	return P2WPKH(w.PubKey(t, branch, index))
}

// FingerprintUint32 is the fingerprint as btcutil/psbt stores it.
func (w *Wallet) FingerprintUint32() uint32 { return binary.LittleEndian.Uint32(w.Fingerprint[:]) }

// P2WPKH is OP_0 <HASH160(pub)>.
func P2WPKH(pub []byte) []byte {
	return append([]byte{txscript.OP_0, txscript.OP_DATA_20}, btcutil.Hash160(pub)...)
}

// WithdrawalScript is a P2WPKH script nobody in the test owns, fixed by name.
func WithdrawalScript(name string) []byte {
	h := sha256.Sum256([]byte("withdrawal script " + name))
	return append([]byte{txscript.OP_0, txscript.OP_DATA_20}, h[:20]...)
}

// Coin is a wallet UTXO a batch spends.
type Coin struct {
	Branch, Index uint32
	ValueSat      int64
}

// Withdrawal is a payout a batch pays, to WithdrawalScript(ID).
type Withdrawal struct {
	ID        string
	AmountSat int64
}

// Plan describes a batch. The fee is what the coins leave after the withdrawals and change.
type Plan struct {
	// BatchID defaults to "b7".
	BatchID     string
	Coins       []Coin
	Withdrawals []Withdrawal
	// ChangeSat 0 means no change output.
	ChangeSat   int64
	ChangeIndex uint32
	// Replaces names the batch whose coins (outpoints) this one spends, as a fee bump does;
	// empty spends coins of its own.
	Replaces string
}

// Batch is a planned batch as bankd's API returns it: the record and its withdrawals.
type Batch struct {
	Record  *bankdv1.PayoutBatch
	Payouts []*bankdv1.Payout
}

// Batch builds the record, PSBT and withdrawals of plan.
func (w *Wallet) Batch(t testing.TB, plan Plan) *Batch {
	t.Helper()
	id := plan.BatchID
	if id == "" {
		id = "b7"
	}
	rec := &bankdv1.PayoutBatch{Id: id, Queue: "default", WalletId: "hot", State: bankdv1.BatchState_BATCH_STATE_PLANNED}
	var outpoints []*wire.OutPoint
	var sequences []uint32
	var in int64
	coinsOf := id
	if plan.Replaces != "" {
		coinsOf = plan.Replaces
	}
	for i, c := range plan.Coins {
		op := &wire.OutPoint{Hash: chainhash.HashH(fmt.Appendf(nil, "prevout of %s %d", coinsOf, i)), Index: uint32(i)}
		outpoints = append(outpoints, op)
		sequences = append(sequences, Sequence)
		in += c.ValueSat
		rec.Inputs = append(rec.Inputs, &bankdv1.BatchInput{
			Outpoint: &bankdv1.Outpoint{Txid: op.Hash.String(), Vout: op.Index},
			ValueSat: c.ValueSat, Script: w.Script(t, c.Branch, c.Index), Branch: c.Branch, Index: c.Index,
		})
	}
	var outs []*wire.TxOut
	var out int64
	var payouts []*bankdv1.Payout
	for i, wd := range plan.Withdrawals {
		script := WithdrawalScript(wd.ID)
		outs = append(outs, wire.NewTxOut(wd.AmountSat, script))
		out += wd.AmountSat
		rec.Outputs = append(rec.Outputs, &bankdv1.BatchOutput{Vout: uint32(i), ValueSat: wd.AmountSat, Script: script, Address: address(t, script, w.Net), PayoutId: wd.ID})
		payouts = append(payouts, &bankdv1.Payout{
			Id: wd.ID, AccountId: "alice", Address: address(t, script, w.Net), Script: script, AmountSat: wd.AmountSat,
			FeeSat: 500, Queue: "default", State: bankdv1.PayoutState_PAYOUT_STATE_BATCHED, BatchId: id, Vout: uint32(i),
		})
	}
	if plan.ChangeSat > 0 {
		script := w.Script(t, 1, plan.ChangeIndex)
		outs = append(outs, wire.NewTxOut(plan.ChangeSat, script))
		out += plan.ChangeSat
		rec.Outputs = append(rec.Outputs, &bankdv1.BatchOutput{Vout: uint32(len(outs) - 1), ValueSat: plan.ChangeSat, Script: script, Address: address(t, script, w.Net), Change: true, ChangeIndex: plan.ChangeIndex})
	}
	p, err := psbt.New(outpoints, outs, 2, 0, sequences)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range plan.Coins {
		p.Inputs[i].WitnessUtxo = wire.NewTxOut(c.ValueSat, w.Script(t, c.Branch, c.Index))
		p.Inputs[i].SighashType = txscript.SigHashAll
		p.Inputs[i].Bip32Derivation = []*psbt.Bip32Derivation{{
			PubKey: w.PubKey(t, c.Branch, c.Index), MasterKeyFingerprint: w.FingerprintUint32(), Bip32Path: w.Path(c.Branch, c.Index),
		}}
	}
	if plan.ChangeSat > 0 {
		p.Outputs[len(outs)-1].Bip32Derivation = []*psbt.Bip32Derivation{{
			PubKey: w.PubKey(t, 1, plan.ChangeIndex), MasterKeyFingerprint: w.FingerprintUint32(), Bip32Path: w.Path(1, plan.ChangeIndex),
		}}
	}
	rec.FeeSat = in - out
	rec.Vsize = VSize(p.UnsignedTx)
	if rec.Vsize > 0 {
		rec.FeeRateSatKvb = rec.FeeSat * 1000 / rec.Vsize
	}
	b := &Batch{Record: rec, Payouts: payouts}
	b.setPSBT(t, p)
	b.SyncTxid(t)
	return b
}

// VSize is the planner's estimate of the signed size of a transaction of P2WPKH inputs
// (72-byte signatures).
func VSize(tx *wire.MsgTx) int64 {
	const witness = 1 + 1 + 72 + 1 + 33
	return (int64(4*tx.SerializeSizeStripped()) + 2 + int64(len(tx.TxIn))*witness + 3) / 4
}

// Packet decodes the record's PSBT.
func (b *Batch) Packet(t testing.TB) *psbt.Packet {
	t.Helper()
	p, err := psbt.NewFromRawBytes(bytes.NewReader(b.Record.Psbt), false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// EditPSBT decodes the record's PSBT, lets edit change it and encodes it back. The record's
// txid is left as it was (see SyncTxid).
func (b *Batch) EditPSBT(t testing.TB, edit func(p *psbt.Packet)) {
	t.Helper()
	p := b.Packet(t)
	edit(p)
	b.setPSBT(t, p)
}

// SyncTxid sets the record's txid, and the txid of its withdrawals, to the PSBT's: what a
// planner that forged the whole batch consistently would do.
func (b *Batch) SyncTxid(t testing.TB) {
	t.Helper()
	txid := b.Packet(t).UnsignedTx.TxHash().String()
	b.Record.Txid = txid
	for _, po := range b.Payouts {
		po.Txid = txid
	}
}

// PayoutIDs lists the withdrawals the record's outputs name, in output order.
func (b *Batch) PayoutIDs() []string {
	var ids []string
	for _, o := range b.Record.Outputs {
		if o.PayoutId != "" {
			ids = append(ids, o.PayoutId)
		}
	}
	return ids
}

func (b *Batch) setPSBT(t testing.TB, p *psbt.Packet) {
	t.Helper()
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	b.Record.Psbt = buf.Bytes()
}

func address(t testing.TB, script []byte, net *chaincfg.Params) string {
	t.Helper()
	_, addrs, _, err := txscript.ExtractPkScriptAddrs(script, net)
	if err != nil || len(addrs) != 1 {
		t.Fatalf("script %x has no address: %v", script, err)
	}
	return addrs[0].EncodeAddress()
}

func derive(t testing.TB, k *hdkeychain.ExtendedKey, path []uint32) *hdkeychain.ExtendedKey {
	t.Helper()
	for _, step := range path {
		var err error
		if k, err = k.Derive(step); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func hardened(i uint32) uint32 { return hdkeychain.HardenedKeyStart + i }
