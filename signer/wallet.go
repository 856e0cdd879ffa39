package signer

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/wallet/descriptor"
)

// Wallet branches: the first and second values of the descriptor's <0;1> multipath step.
const (
	BranchReceive = 0
	BranchChange  = 1
)

// maxKeyFileBytes bounds the key file: one base58 extended key (111 characters) and a newline,
// with room for a comment-free line ending or two.
const maxKeyFileBytes = 512

// Wallet is the hot wallet as the signer holds it: the private keys of its receive and change
// branches, derived from the master key, and the public descriptor they were checked against.
// It does not keep the master key itself.
type Wallet struct {
	net         *chaincfg.Params
	fingerprint [4]byte
	// originPath leads from the master to the key whose children are the branches.
	originPath []uint32
	// branchKeys are the private extended keys at originPath/0 and originPath/1.
	branchKeys [2]*hdkeychain.ExtendedKey
	// branches are the descriptor's receive and change descriptors.
	branches   [2]*descriptor.Descriptor
	descriptor string
}

// LoadWallet reads the master extended private key from keyFile (see ReadKeyFile) and checks
// that descriptorText, the hot wallet's public descriptor, is derived from it (see NewWallet).
func LoadWallet(keyFile, descriptorText string, net *chaincfg.Params) (*Wallet, error) {
	master, err := ReadKeyFile(keyFile, net)
	if err != nil {
		return nil, err
	}
	defer master.Zero()
	return NewWallet(master, descriptorText, net)
}

// ReadKeyFile reads a master extended private key (xprv on mainnet, tprv elsewhere; a BIP 32
// root of depth 0) written on the file's one line. The file must be a regular file that only
// its owner can read or write: a key file open to the group or to others is refused. No error
// repeats the file's contents.
func ReadKeyFile(path string, net *chaincfg.Params) (*hdkeychain.ExtendedKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFile, path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is open to other users (mode %04o); make it private with chmod 600", ErrKeyFile, path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrKeyFile, path, err)
	}
	defer clear(b)
	if len(b) > maxKeyFileBytes {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes; it must hold one extended private key", ErrKeyFile, path, maxKeyFileBytes)
	}
	text := strings.TrimSpace(string(b))
	if text == "" || strings.ContainsAny(text, " \t\r\n") {
		return nil, fmt.Errorf("%w: %s must hold one extended private key on one line", ErrKeyFile, path)
	}
	// hdkeychain's errors name what is wrong, never the key.
	master, err := hdkeychain.NewKeyFromString(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not hold an extended key: %w", ErrKeyFile, path, err)
	}
	if err := checkMaster(master, net); err != nil {
		master.Zero()
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	return master, nil
}

func checkMaster(master *hdkeychain.ExtendedKey, net *chaincfg.Params) error {
	switch {
	case !master.IsPrivate():
		return errors.New("the key is an extended public key; the signer needs the master private key")
	case !master.IsForNet(net):
		return fmt.Errorf("the key is not for %s", net.Name)
	case master.Depth() != 0 || master.ParentFingerprint() != 0 || master.ChildIndex() != 0:
		return fmt.Errorf("the key is at depth %d; the signer needs the BIP 32 master (depth 0)", master.Depth())
	}
	return nil
}

// Fingerprint is the BIP 32 fingerprint of a master key: the first four bytes of HASH160 of its
// compressed public key, as descriptors and PSBTs name it.
func Fingerprint(master *hdkeychain.ExtendedKey) ([4]byte, error) {
	var fp [4]byte
	pub, err := master.ECPubKey()
	if err != nil {
		return fp, err
	}
	copy(fp[:], btcutil.Hash160(pub.SerializeCompressed())[:4])
	return fp, nil
}

// NewWallet checks that descriptorText is the public descriptor of a hot wallet derived from
// master and returns the wallet. The descriptor must be wpkh(KEY/<0;1>/*) for the network,
// with a key origin naming master's fingerprint, and deriving that origin path from master
// must give the descriptor's extended public key: the first receive and change scripts
// derived both ways are compared. master is not kept; the caller may Zero it.
func NewWallet(master *hdkeychain.ExtendedKey, descriptorText string, net *chaincfg.Params) (*Wallet, error) {
	if err := checkMaster(master, net); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	d, err := descriptor.Parse(descriptorText, net)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyMismatch, err)
	}
	if d.Kind() != descriptor.KindWPKH {
		return nil, fmt.Errorf("%w: a %s descriptor; only wpkh(...) hot wallets are supported", ErrKeyMismatch, d.Kind())
	}
	branches := d.Multipath()
	if len(branches) != 2 || !d.IsRange() {
		return nil, fmt.Errorf("%w: the descriptor must end in /<0;1>/* (a receive and a change branch)", ErrKeyMismatch)
	}
	fp, err := Fingerprint(master)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFile, err)
	}
	w := &Wallet{net: net, fingerprint: fp, branches: [2]*descriptor.Descriptor(branches), descriptor: d.String()}

	first, err := branches[BranchReceive].Expand(0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyMismatch, err)
	}
	origin := first.Keys[0].Origin
	if origin.Fingerprint != fp {
		return nil, fmt.Errorf("%w: the descriptor's key origin fingerprint is %x, the master key's is %x", ErrKeyMismatch, origin.Fingerprint[:], fp[:])
	}
	// The expanded path is origin/branch/index: what precedes the last two steps is where the
	// branches hang from the master.
	path := origin.Path
	if len(path) < 2 || path[len(path)-2] != BranchReceive || path[len(path)-1] != 0 {
		return nil, fmt.Errorf("%w: the descriptor's receive branch derives at %s, not <origin>/0/0", ErrKeyMismatch, FormatPath(path))
	}
	w.originPath = append([]uint32(nil), path[:len(path)-2]...)

	for branch := range uint32(2) {
		k, err := derivePath(master, w.Path(branch, 0)[:len(w.originPath)+1])
		if err != nil {
			w.Zero()
			return nil, fmt.Errorf("%w: derive branch %d from the master key: %w", ErrKeyMismatch, branch, err)
		}
		w.branchKeys[branch] = k
	}
	for branch := range uint32(2) {
		if err := w.compareFirstScript(branch); err != nil {
			w.Zero()
			return nil, err
		}
	}
	return w, nil
}

// compareFirstScript derives index 0 of a branch from the private key and from the descriptor
// and compares the two.
func (w *Wallet) compareFirstScript(branch uint32) error {
	out, err := w.branches[branch].Expand(0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeyMismatch, err)
	}
	pub, err := w.pubKey(branch, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeyMismatch, err)
	}
	want := w.Path(branch, 0)
	got := out.Keys[0].Origin.Path
	if !slices.Equal(got, want) {
		return fmt.Errorf("%w: the descriptor's branch %d derives at %s, expected %s", ErrKeyMismatch, branch, FormatPath(got), FormatPath(want))
	}
	if !bytes.Equal(out.Keys[0].PubKey, pub) || !bytes.Equal(out.Script, p2wpkhScript(pub)) {
		return fmt.Errorf("%w: the master key derives another key at %s than the descriptor's extended public key", ErrKeyMismatch, FormatPath(want))
	}
	return nil
}

// Zero wipes the wallet's private keys; the wallet cannot sign afterwards.
func (w *Wallet) Zero() {
	for i, k := range w.branchKeys {
		if k != nil {
			k.Zero()
			w.branchKeys[i] = nil
		}
	}
}

// Fingerprint returns the master key's fingerprint.
func (w *Wallet) Fingerprint() [4]byte { return w.fingerprint }

// Descriptor returns the wallet's public descriptor in normal form, with its checksum.
func (w *Wallet) Descriptor() string { return w.descriptor }

// Network returns the network the wallet is for.
func (w *Wallet) Network() *chaincfg.Params { return w.net }

// Path returns the full BIP 32 path from the master of the key at branch/index.
func (w *Wallet) Path(branch, index uint32) []uint32 {
	p := make([]uint32, 0, len(w.originPath)+2)
	return append(append(p, w.originPath...), branch, index)
}

// Script returns the descriptor's output script at branch/index.
func (w *Wallet) Script(branch, index uint32) ([]byte, error) {
	if branch > BranchChange {
		return nil, fmt.Errorf("branch %d: the wallet has branches 0 (receive) and 1 (change)", branch)
	}
	return w.branches[branch].Derive(index)
}

// privKey derives the private key at branch/index. The caller zeroes it.
func (w *Wallet) privKey(branch, index uint32) (*btcec.PrivateKey, error) {
	if branch > BranchChange {
		return nil, fmt.Errorf("branch %d: the wallet has branches 0 (receive) and 1 (change)", branch)
	}
	if index >= hdkeychain.HardenedKeyStart {
		return nil, fmt.Errorf("index %d is hardened; wallet addresses are unhardened", index)
	}
	k := w.branchKeys[branch]
	if k == nil {
		return nil, errors.New("the wallet's keys were zeroed")
	}
	child, err := k.Derive(index)
	if err != nil {
		return nil, fmt.Errorf("derive %s: %w", FormatPath(w.Path(branch, index)), err)
	}
	defer child.Zero()
	return child.ECPrivKey()
}

// pubKey derives the compressed public key at branch/index from the private key.
func (w *Wallet) pubKey(branch, index uint32) ([]byte, error) {
	priv, err := w.privKey(branch, index)
	if err != nil {
		return nil, err
	}
	defer priv.Zero()
	return priv.PubKey().SerializeCompressed(), nil
}

// derivePath derives path (at least one step) from k, zeroing the intermediate keys.
func derivePath(k *hdkeychain.ExtendedKey, path []uint32) (*hdkeychain.ExtendedKey, error) {
	if len(path) == 0 {
		return nil, errors.New("empty derivation path")
	}
	cur := k
	for _, step := range path {
		next, err := cur.Derive(step)
		if cur != k {
			cur.Zero()
		}
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// p2wpkhScript is OP_0 <HASH160(pub)>.
func p2wpkhScript(pub []byte) []byte {
	return append([]byte{0x00, 0x14}, btcutil.Hash160(pub)...)
}

// FormatPath writes a BIP 32 path as m/84'/1'/0'/0/5.
func FormatPath(path []uint32) string {
	var b strings.Builder
	b.WriteString("m")
	for _, step := range path {
		b.WriteByte('/')
		if step >= hdkeychain.HardenedKeyStart {
			fmt.Fprintf(&b, "%d'", step-hdkeychain.HardenedKeyStart)
		} else {
			fmt.Fprintf(&b, "%d", step)
		}
	}
	return b.String()
}

// fingerprintHex is how errors name a fingerprint.
func fingerprintHex(fp [4]byte) string { return hex.EncodeToString(fp[:]) }
