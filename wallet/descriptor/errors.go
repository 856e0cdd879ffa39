package descriptor

import (
	"errors"
	"fmt"
)

// Error kinds. Every error returned by this package is an *Error whose Kind is
// one of these, so callers can classify failures with errors.Is:
//
//	if errors.Is(err, descriptor.ErrPrivateKey) { ... }
var (
	// ErrSyntax: the text does not follow the descriptor grammar (unknown
	// character, unbalanced parentheses, bad number, missing argument...).
	ErrSyntax = errors.New("syntax error")
	// ErrChecksum: the "#checksum" suffix is missing, malformed or wrong.
	ErrChecksum = errors.New("bad checksum")
	// ErrInvalidKey: a key expression is not a valid public key or extended
	// public key (bad encoding, not on the curve, invalid BIP 32 metadata...).
	ErrInvalidKey = errors.New("invalid key")
	// ErrPrivateKey: the descriptor contains a private key (WIF or
	// xprv/tprv). This package is watch-only and never accepts secrets.
	ErrPrivateKey = errors.New("private key not accepted")
	// ErrHardenedDerivation: a hardened derivation step follows an extended
	// public key, which cannot be derived without the private key.
	ErrHardenedDerivation = errors.New("hardened derivation after public key")
	// ErrNetwork: an extended key belongs to another network than the one
	// requested (an xpub on regtest, a tpub on mainnet...).
	ErrNetwork = errors.New("wrong network")
	// ErrUncompressedKey: an uncompressed public key where only compressed
	// keys are allowed (segwit v0) or an uncompressed/x-only key where it is
	// not allowed (taproot; x-only outside taproot).
	ErrUncompressedKey = errors.New("key type not allowed here")
	// ErrThreshold: multi/sortedmulti threshold is not within 1..n.
	ErrThreshold = errors.New("bad multisig threshold")
	// ErrTooManyKeys: more keys than BIP 383 allows in that context.
	ErrTooManyKeys = errors.New("too many keys")
	// ErrNesting: a script expression appears where it may not (wpkh inside
	// wsh, sh inside sh, tr inside anything, a key where a script belongs...).
	ErrNesting = errors.New("expression not allowed here")
	// ErrMultipath: a BIP 389 multipath step is malformed or misused.
	ErrMultipath = errors.New("bad multipath expression")
	// ErrUnsupported: valid descriptor syntax that this package does not
	// implement (taproot script trees, combo, raw, addr, miniscript...).
	ErrUnsupported = errors.New("not supported")
	// ErrDerive: a derivation request that cannot be satisfied (index out of
	// range, index on a non-ranged descriptor, multipath not split...).
	ErrDerive = errors.New("cannot derive")
	// ErrNoAddress: the output script has no address form (bare pk, bare
	// multisig).
	ErrNoAddress = errors.New("no address form")
)

// Error describes why a descriptor was refused or could not be derived.
type Error struct {
	// Kind is one of the Err* sentinels above; errors.Is matches it.
	Kind error
	// Pos is the byte offset in the input where the problem was found, or -1
	// when the error is not tied to a position (derivation errors).
	Pos int
	// Token is the offending piece of text. It is empty for private keys:
	// secrets are never copied into error messages.
	Token string
	// Msg is a human-readable explanation.
	Msg string
}

func (e *Error) Error() string {
	const maxToken = 72
	tok := e.Token
	if len(tok) > maxToken {
		tok = tok[:maxToken] + "..."
	}
	switch {
	case e.Pos >= 0 && tok != "":
		return fmt.Sprintf("descriptor: %v at position %d (%q): %s", e.Kind, e.Pos, tok, e.Msg)
	case e.Pos >= 0:
		return fmt.Sprintf("descriptor: %v at position %d: %s", e.Kind, e.Pos, e.Msg)
	default:
		return fmt.Sprintf("descriptor: %v: %s", e.Kind, e.Msg)
	}
}

// Unwrap returns Kind so that errors.Is(err, ErrXxx) works.
func (e *Error) Unwrap() error { return e.Kind }

func errAt(kind error, pos int, token, format string, args ...any) *Error {
	return &Error{Kind: kind, Pos: pos, Token: token, Msg: fmt.Sprintf(format, args...)}
}

func deriveErr(format string, args ...any) *Error {
	return &Error{Kind: ErrDerive, Pos: -1, Msg: fmt.Sprintf(format, args...)}
}
