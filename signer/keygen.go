package signer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/wallet/descriptor"
)

// seedBytes is the length of a generated master seed (256 bits, as BIP 32 recommends).
const seedBytes = 32

// GenerateMaster returns a new master extended private key for net from a random seed.
func GenerateMaster(net *chaincfg.Params) (*hdkeychain.ExtendedKey, error) {
	seed, err := hdkeychain.GenerateSeed(seedBytes)
	if err != nil {
		return nil, fmt.Errorf("generate seed: %w", err)
	}
	defer clear(seed)
	master, err := hdkeychain.NewMaster(seed, net)
	if err != nil {
		return nil, fmt.Errorf("derive master key: %w", err)
	}
	return master, nil
}

// AccountPath is the BIP 84 account 0 of net: m/84'/0'/0' on mainnet, m/84'/1'/0' on the
// test networks.
func AccountPath(net *chaincfg.Params) []uint32 {
	coin := uint32(1)
	if net.Net == wire.MainNet {
		coin = 0
	}
	h := uint32(hdkeychain.HardenedKeyStart)
	return []uint32{h + 84, h + coin, h + 0}
}

// AccountDescriptor returns the hot wallet descriptor of master's BIP 84 account 0:
// wpkh([fingerprint/84'/coin'/0']xpub/<0;1>/*)#checksum, in normal form.
func AccountDescriptor(master *hdkeychain.ExtendedKey, net *chaincfg.Params) (string, error) {
	if err := checkMaster(master, net); err != nil {
		return "", err
	}
	fp, err := Fingerprint(master)
	if err != nil {
		return "", err
	}
	path := AccountPath(net)
	account, err := derivePath(master, path)
	if err != nil {
		return "", fmt.Errorf("derive %s: %w", FormatPath(path), err)
	}
	defer account.Zero()
	xpub, err := account.Neuter()
	if err != nil {
		return "", err
	}
	text := fmt.Sprintf("wpkh([%s%s]%s/<0;1>/*)", fingerprintHex(fp), FormatPath(path)[1:], xpub.String())
	d, err := descriptor.Parse(text, net)
	if err != nil {
		return "", fmt.Errorf("the generated descriptor does not parse: %w", err)
	}
	return d.String(), nil
}

// WriteKeyFile writes master to a new file at path, readable by its owner only. It refuses to
// overwrite an existing file, and syncs the file and its directory before returning.
func WriteKeyFile(path string, master *hdkeychain.ExtendedKey) error {
	if !master.IsPrivate() {
		return errors.New("write key file: not a private key")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	line := []byte(master.String() + "\n")
	defer clear(line)
	_, err = f.Write(line)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename or creation in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
