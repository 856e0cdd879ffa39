package fsm

import (
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
)

// Withdrawal addresses. A withdrawal may pay any standard output type of the cluster's network:
// p2pkh, p2sh, p2wpkh, p2wsh and p2tr. Anything else (a bare public key, a witness version
// above 1, an address of another network) is refused before it reaches a transaction.

// MaxPayoutAmountSat bounds one withdrawal: every bitcoin there will ever be.
const MaxPayoutAmountSat = 21_000_000 * 100_000_000

// dustRelayFeeSatPerKvB is Bitcoin Core's default -dustrelayfee (3 sat/vB). An output is dust
// when spending it would cost more than its value at this rate (src/policy/policy.cpp,
// GetDustThreshold): (output size + the size of the input that spends it) × 3 sat/vB, where
// that input is 148 bytes for non-witness outputs and 32+4+1+107/4+4 = 67 vbytes for witness
// outputs.
const dustRelayFeeSatPerKvB = 3000

// PayoutAddress is a decoded withdrawal address.
type PayoutAddress struct {
	// Address is the address in its canonical encoding (bech32 lower case).
	Address string
	// Script is the output script it stands for.
	Script []byte
	// Type is "p2pkh", "p2sh", "p2wpkh", "p2wsh" or "p2tr".
	Type string
}

// ParsePayoutAddress decodes a withdrawal address for a chain network name (ChainNetworkNames).
// field names the request field in errors.
func ParsePayoutAddress(field, address, network string) (*PayoutAddress, *Error) {
	params, ok := ChainParams(network)
	if !ok {
		return nil, invalid("%s: the cluster has no chain network yet (create a wallet first)", field)
	}
	switch {
	case address == "":
		return nil, invalid("%s: required", field)
	case len(address) > MaxAddressLen:
		return nil, invalid("%s: at most %d characters, got %d", field, MaxAddressLen, len(address))
	}
	addr, err := btcutil.DecodeAddress(address, params)
	if err != nil {
		return nil, invalid("%s: not a %s address: %v", field, network, err)
	}
	if !addr.IsForNet(params) {
		return nil, invalid("%s: %q is not a %s address", field, truncate(address), network)
	}
	typ := addressType(addr)
	if typ == "" {
		return nil, invalid("%s: %q is not a standard output type (p2pkh, p2sh, p2wpkh, p2wsh, p2tr)", field, truncate(address))
	}
	script, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, invalid("%s: %v", field, err)
	}
	return &PayoutAddress{Address: addr.EncodeAddress(), Script: script, Type: typ}, nil
}

// addressType names the standard output type of addr, or "" for any other kind.
func addressType(addr btcutil.Address) string {
	switch addr.(type) {
	case *btcutil.AddressPubKeyHash:
		return "p2pkh"
	case *btcutil.AddressScriptHash:
		return "p2sh"
	case *btcutil.AddressWitnessPubKeyHash:
		return "p2wpkh"
	case *btcutil.AddressWitnessScriptHash:
		return "p2wsh"
	case *btcutil.AddressTaproot:
		return "p2tr"
	}
	return ""
}

// DustThreshold is the smallest value an output with this script may carry and still be
// relayed by default nodes.
func DustThreshold(script []byte) int64 {
	size := int64(8 + varIntLen(len(script)) + len(script))
	if txscript.IsWitnessProgram(script) {
		size += 32 + 4 + 1 + 107/4 + 4
	} else {
		size += 32 + 4 + 1 + 107 + 4
	}
	return size * dustRelayFeeSatPerKvB / 1000
}

// varIntLen is the length of Bitcoin's compact size encoding of n.
func varIntLen(n int) int {
	switch {
	case n < 0xfd:
		return 1
	case n <= 0xffff:
		return 3
	case n <= 0xffffffff:
		return 5
	}
	return 9
}
