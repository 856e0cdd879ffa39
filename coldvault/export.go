package coldvault

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/wallet/descriptor"
)

// Exports of the cold wallet for its cosigners' wallets: the descriptor with its checksum
// (Bitcoin Core, Sparrow, Specter), a Coldcard multisig registration file, and a BSMS
// descriptor record (BIP 129).

// Multisig is a cold wallet descriptor taken apart for its exports.
type Multisig struct {
	Descriptor *descriptor.Descriptor
	M          int
	Keys       []descriptor.ExtendedKey
}

// ParseMultisig checks a cold wallet descriptor: wsh(sortedmulti|multi) of extended keys with a
// receive and a change branch.
func ParseMultisig(desc string, net *chaincfg.Params) (*Multisig, error) {
	d, err := descriptor.Parse(desc, net)
	if err != nil {
		return nil, err
	}
	text := d.String()
	if !strings.HasPrefix(text, "wsh(sortedmulti(") && !strings.HasPrefix(text, "wsh(multi(") {
		return nil, fmt.Errorf("coldvault: %s is not a wsh(sortedmulti(M, ...)) multisig", text)
	}
	branches := d.Multipath()
	if len(branches) != 2 {
		return nil, errors.New("coldvault: the cold descriptor needs a receive and a change branch (/<0;1>/*)")
	}
	out, err := branches[0].Expand(0)
	if err != nil {
		return nil, err
	}
	m := out.Threshold()
	keys := d.ExtendedKeys()
	if len(keys) != len(out.Keys) {
		return nil, errors.New("coldvault: every cosigner key must be an extended key")
	}
	return &Multisig{Descriptor: d, M: m, Keys: keys}, nil
}

// Coldcard is the multisig registration file a Coldcard imports (its "Multisig setup file"
// format: name, policy, derivation, format, then fingerprint: xpub lines).
func (ms *Multisig) Coldcard(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Coldcard Multisig setup file (bankd coldvault)\n#\nName: %s\nPolicy: %d of %d\nFormat: P2WSH\n", name, ms.M, len(ms.Keys))
	for _, k := range ms.Keys {
		fmt.Fprintf(&b, "\nDerivation: %s\n%s: %s\n", pathString(k.Origin.Path), strings.ToUpper(hex.EncodeToString(k.Origin.Fingerprint[:])), k.Key.String())
	}
	return b.String()
}

// BSMS is the descriptor record of BIP 129 (BSMS 1.0): the descriptor, the branches it may use
// and its first receive address, which a cosigner checks against its own.
func (ms *Multisig) BSMS() (string, error) {
	addr, err := ms.Descriptor.Multipath()[0].Address(0, nil)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("BSMS 1.0\n%s\n/0/*,/1/*\n%s\n", ms.Descriptor.String(), addr.EncodeAddress()), nil
}

func pathString(path []uint32) string {
	var b strings.Builder
	b.WriteString("m")
	for _, step := range path {
		if step >= descriptor.HardenedKeyStart {
			fmt.Fprintf(&b, "/%d'", step-descriptor.HardenedKeyStart)
		} else {
			fmt.Fprintf(&b, "/%d", step)
		}
	}
	return b.String()
}
