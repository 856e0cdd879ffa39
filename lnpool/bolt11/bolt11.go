// Package bolt11 decodes BOLT 11 Lightning invoices into the few facts bankd acts on, with
// specific errors for the ways a user-supplied invoice goes wrong (wrong network, bad
// checksum, an amount that cannot be right...).
//
// Decoding (signature check included) is done by lnd's zpay32; this package adds the checks
// zpay32 leaves out or reports only as free text: which network an invoice is really for
// (zpay32 takes "lnbcrt" for a mainnet "lnbc" prefix followed by an amount), amounts that
// overflow or exceed the 21 million bitcoin supply, and required features nobody knows.
package bolt11

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcutil/bech32"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/zpay32"
)

// MaxLength is the longest invoice accepted, in characters (as in zpay32: what fits in one
// QR code).
const MaxLength = 7089

// MaxAmountMsat is the largest amount an invoice may ask for: 21 million bitcoin.
const MaxAmountMsat = 21_000_000 * 100_000_000 * 1000

// Errors Decode and AmountSat return, wrapped with details. Test with errors.Is.
var (
	ErrEmpty          = errors.New("empty invoice")
	ErrTooLong        = fmt.Errorf("invoice longer than %d characters", MaxLength)
	ErrNotBech32      = errors.New("invoice is not a bech32 string")
	ErrChecksum       = errors.New("invoice has a bad bech32 checksum")
	ErrNotLightning   = errors.New("not a lightning invoice")
	ErrUnknownNetwork = errors.New("invoice is for an unknown network")
	ErrWrongNetwork   = errors.New("invoice is for another network")
	ErrBadAmount      = errors.New("invalid invoice amount")
	ErrAmountTooLarge = errors.New("invoice amount above 21 million bitcoin")
	ErrSubSatoshi     = errors.New("invoice amount is not a whole number of satoshis")
	ErrMissingHash    = errors.New("invoice has no payment hash")
	ErrUnknownFeature = errors.New("invoice requires features we do not know")
	// ErrInvalid is anything else that makes an invoice unusable: a bad signature, a
	// malformed field, an expiry too large to represent.
	ErrInvalid = errors.New("invalid invoice")
)

// Invoice is what bankd needs from a BOLT 11 invoice.
type Invoice struct {
	Hash            string // payment hash, 64 hex characters
	AmountMsat      int64  // 0 when the invoice does not name an amount
	Destination     string // payee node's public key, 66 hex characters (compressed)
	CreatedAt       time.Time
	Expiry          time.Duration // 1 hour when the invoice does not say
	Description     string        // empty when the invoice commits to a description by hash
	DescriptionHash string        // 64 hex characters, or empty
}

// ExpiresAt is when the payee stops accepting payments for the invoice.
func (inv Invoice) ExpiresAt() time.Time { return inv.CreatedAt.Add(inv.Expiry) }

// Expired reports whether the invoice has expired at now.
func (inv Invoice) Expired(now time.Time) bool { return !now.Before(inv.ExpiresAt()) }

// AmountSat is the amount in satoshis (0 for an amount-less invoice). It fails with
// ErrSubSatoshi when the amount has a millisatoshi part, which bankd cannot pay exactly.
func (inv Invoice) AmountSat() (int64, error) {
	if inv.AmountMsat%1000 != 0 {
		return 0, fmt.Errorf("%w: %d msat", ErrSubSatoshi, inv.AmountMsat)
	}
	return inv.AmountMsat / 1000, nil
}

// hrpNetworks maps the currency prefix after "ln" to a network. Longer prefixes come first:
// "bc" is a prefix of "bcrt" and "tb" of "tbs".
var hrpNetworks = []struct {
	prefix string
	name   string
	params *chaincfg.Params
}{
	{"bcrt", "regtest", &chaincfg.RegressionNetParams},
	{"bc", "mainnet", &chaincfg.MainNetParams},
	{"tbs", "signet", &chaincfg.SigNetParams},
	{"tb", "testnet", &chaincfg.TestNet3Params}, // testnet4 invoices use "tb" too
	{"sb", "simnet", &chaincfg.SimNetParams},
}

// Bech32 data lengths, in 5-bit groups (BOLT 11).
const (
	timestampGroups = 7
	signatureGroups = 104
	hashGroups      = 52 // a 'p' field of any other length is skipped by readers
	fieldTypeP      = 1
	fieldTypeX      = 6
	maxUint64Groups = 13
)

// maxExpirySeconds is the longest expiry a time.Duration holds.
const maxExpirySeconds = math.MaxInt64 / int64(time.Second)

// Decode parses and checks invoice s for network net. Surrounding white space and a
// "lightning:" URI prefix are ignored; all-lowercase and all-uppercase are both accepted.
func Decode(s string, net *chaincfg.Params) (Invoice, error) {
	s = trim(s)
	if s == "" {
		return Invoice{}, ErrEmpty
	}
	if len(s) > MaxLength {
		return Invoice{}, fmt.Errorf("%w: %d characters", ErrTooLong, len(s))
	}

	hrp, data, err := bech32.DecodeNoLimit(s)
	if err != nil {
		var checksum bech32.ErrInvalidChecksum
		if errors.As(err, &checksum) {
			return Invoice{}, fmt.Errorf("%w: %v", ErrChecksum, err)
		}
		return Invoice{}, fmt.Errorf("%w: %v", ErrNotBech32, err)
	}

	if !strings.HasPrefix(hrp, "ln") {
		return Invoice{}, fmt.Errorf("%w: prefix %q does not start with \"ln\"", ErrNotLightning, hrp)
	}
	amountPart, err := checkNetwork(hrp[2:], net)
	if err != nil {
		return Invoice{}, err
	}
	amountMsat, err := parseAmount(amountPart)
	if err != nil {
		return Invoice{}, err
	}

	fields, err := scanFields(data)
	if err != nil {
		return Invoice{}, err
	}
	if !fields.hasHash {
		return Invoice{}, ErrMissingHash
	}
	if fields.expirySeconds > uint64(maxExpirySeconds) {
		return Invoice{}, fmt.Errorf("%w: expiry of %d seconds", ErrInvalid, fields.expirySeconds)
	}

	// zpay32 wants the bare invoice; it lowercases it itself.
	decoded, err := zpay32.Decode(s, net)
	if err != nil {
		return Invoice{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if unknown := decoded.Features.UnknownRequiredFeatures(); len(unknown) > 0 {
		return Invoice{}, fmt.Errorf("%w: feature bits %v", ErrUnknownFeature, unknown)
	}
	// zpay32 parsed the same amount; a difference would be a bug on one side.
	var decodedMsat int64
	if decoded.MilliSat != nil {
		decodedMsat = int64(*decoded.MilliSat)
	}
	if decodedMsat != amountMsat {
		return Invoice{}, fmt.Errorf("%w: amount read as %d msat and as %d msat",
			ErrInvalid, amountMsat, decodedMsat)
	}
	if decoded.PaymentHash == nil || decoded.Destination == nil {
		return Invoice{}, fmt.Errorf("%w: no payment hash or destination", ErrInvalid)
	}

	inv := Invoice{
		Hash:        hex.EncodeToString(decoded.PaymentHash[:]),
		AmountMsat:  amountMsat,
		Destination: hex.EncodeToString(decoded.Destination.SerializeCompressed()),
		CreatedAt:   decoded.Timestamp,
		Expiry:      decoded.Expiry(),
	}
	if decoded.Description != nil {
		inv.Description = *decoded.Description
	}
	if decoded.DescriptionHash != nil {
		inv.DescriptionHash = hex.EncodeToString(decoded.DescriptionHash[:])
	}
	return inv, nil
}

// AmountMsat reads the amount of invoice s for network net from its human-readable part
// alone (0 for an amount-less invoice). It checks neither the checksum nor the signature: it
// is for invoices Decode already accepted, where a full decode (a public key recovery) would
// be wasted.
func AmountMsat(s string, net *chaincfg.Params) (int64, error) {
	s = strings.ToLower(trim(s))
	sep := strings.LastIndexByte(s, '1')
	if sep < 2 || !strings.HasPrefix(s, "ln") {
		return 0, ErrNotLightning
	}
	amountPart, err := checkNetwork(s[2:sep], net)
	if err != nil {
		return 0, err
	}
	return parseAmount(amountPart)
}

// Network returns the parameters of the network invoice s is for, read from its prefix
// alone; nothing else is checked. "lntb" invoices get TestNet3Params (testnet4 shares the
// prefix) and "lntbs" the default SigNetParams.
func Network(s string) (*chaincfg.Params, error) {
	s = strings.ToLower(trim(s))
	if s == "" {
		return nil, ErrEmpty
	}
	if !strings.HasPrefix(s, "ln") {
		return nil, ErrNotLightning
	}
	for _, n := range hrpNetworks {
		if strings.HasPrefix(s[2:], n.prefix) {
			return n.params, nil
		}
	}
	return nil, ErrUnknownNetwork
}

// trim removes surrounding white space and a "lightning:" URI scheme.
func trim(s string) string {
	s = strings.TrimSpace(s)
	const scheme = "lightning:"
	if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
		s = s[len(scheme):]
	}
	return s
}

// checkNetwork finds the network rest (the human-readable part after "ln") names, checks it
// is net, and returns what follows the network prefix: the amount, if any.
func checkNetwork(rest string, net *chaincfg.Params) (string, error) {
	want := expectedPrefix(net)
	for _, n := range hrpNetworks {
		if !strings.HasPrefix(rest, n.prefix) {
			continue
		}
		if n.prefix != want {
			return "", fmt.Errorf("%w: invoice is for %s (ln%s), we are on %s",
				ErrWrongNetwork, n.name, n.prefix, net.Name)
		}
		return rest[len(n.prefix):], nil
	}
	// A network the table does not know can still be ours (custom parameters).
	if want != "" && strings.HasPrefix(rest, want) {
		return rest[len(want):], nil
	}
	return "", fmt.Errorf("%w: prefix \"ln%s\"", ErrUnknownNetwork, rest)
}

// expectedPrefix is the invoice currency prefix of net. Signet shares "tb" with testnet for
// addresses, but invoices use "tbs".
func expectedPrefix(net *chaincfg.Params) string {
	if net.Name == chaincfg.SigNetParams.Name {
		return "tbs"
	}
	return net.Bech32HRPSegwit
}

// Msat per unit of each BOLT 11 amount multiplier; 'p' (pico-bitcoin) is a tenth of a msat
// and handled apart.
var multiplierMsat = map[byte]uint64{
	'm': 100_000_000,
	'u': 100_000,
	'n': 100,
}

const msatPerBitcoin = 100_000_000_000

// parseAmount reads the amount part of the human-readable part: digits followed by an
// optional multiplier. An empty string is an invoice without an amount (0).
func parseAmount(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	digits := s
	unit := uint64(msatPerBitcoin)
	pico := false
	switch last := s[len(s)-1]; {
	case last == 'p':
		pico = true
		digits = s[:len(s)-1]
	case last >= '0' && last <= '9':
	default:
		m, ok := multiplierMsat[last]
		if !ok {
			return 0, fmt.Errorf("%w: unknown multiplier %q in %q", ErrBadAmount, last, s)
		}
		unit = m
		digits = s[:len(s)-1]
	}
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, fmt.Errorf("%w: %q is not a number followed by a multiplier", ErrBadAmount, s)
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		// Only digits are left, so the number is too large for 64 bits.
		return 0, fmt.Errorf("%w: %q", ErrAmountTooLarge, s)
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: explicit amount of zero", ErrBadAmount)
	}

	var msat uint64
	if pico {
		if n%10 != 0 {
			return 0, fmt.Errorf("%w: %q has sub-millisatoshi precision", ErrBadAmount, s)
		}
		msat = n / 10
	} else {
		if n > MaxAmountMsat/unit {
			return 0, fmt.Errorf("%w: %q", ErrAmountTooLarge, s)
		}
		msat = n * unit
	}
	if msat > MaxAmountMsat {
		return 0, fmt.Errorf("%w: %q", ErrAmountTooLarge, s)
	}
	return int64(msat), nil
}

type scannedFields struct {
	hasHash       bool
	expirySeconds uint64
}

// scanFields walks the tagged fields of the data part (5-bit groups, checksum removed) far
// enough to tell whether a payment hash is present and how long the expiry is. Everything
// else is left to zpay32.
func scanFields(data []byte) (scannedFields, error) {
	var f scannedFields
	if len(data) < timestampGroups+signatureGroups {
		return f, fmt.Errorf("%w: data part too short (%d groups)", ErrInvalid, len(data))
	}
	fields := data[timestampGroups : len(data)-signatureGroups]
	seenExpiry := false
	for len(fields) > 0 {
		if len(fields) < 3 {
			return f, fmt.Errorf("%w: truncated tagged field", ErrInvalid)
		}
		typ := fields[0]
		length := int(fields[1])<<5 | int(fields[2])
		if len(fields) < 3+length {
			return f, fmt.Errorf("%w: tagged field %d longer than the invoice", ErrInvalid, typ)
		}
		value := fields[3 : 3+length]
		fields = fields[3+length:]

		switch {
		case typ == fieldTypeP && length == hashGroups:
			f.hasHash = true
		case typ == fieldTypeX && !seenExpiry:
			// Readers use the first expiry field, as zpay32 does; an overlong one is
			// zpay32's to reject.
			seenExpiry = true
			if length <= maxUint64Groups {
				for _, g := range value {
					if f.expirySeconds > math.MaxUint64>>5 {
						f.expirySeconds = math.MaxUint64
						break
					}
					f.expirySeconds = f.expirySeconds<<5 | uint64(g)
				}
			}
		}
	}
	return f, nil
}
