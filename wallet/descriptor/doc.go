// Package descriptor parses, normalises and derives watch-only Bitcoin output
// script descriptors (BIP 380-386 and BIP 389).
//
// A descriptor names a set of output scripts, for example
//
//	wpkh([73c5da0a/84h/0h/0h]xpub6Cat.../<0;1>/*)#hpg6d6w2
//
// is "P2WPKH outputs of the BIP 84 account whose key is this xpub, receive
// (/0/i) and change (/1/i) branches". Parse validates such a string for one
// network and returns a *Descriptor, which derives scripts (Derive, Expand)
// and addresses (Address) and writes itself back in a normal form (String).
//
// # What is supported
//
//   - Checksums (BIP 380): verified when present, optional on input, always
//     written by String. Checksum, AddChecksum and SplitChecksum work on any
//     descriptor text, including expressions this package does not parse.
//   - Key expressions (BIP 380): hex public keys (compressed; uncompressed
//     only in legacy pk/pkh/multi and sh(...) scripts; 32-byte x-only only in
//     tr); xpub/tpub extended public keys followed by unhardened /NUM steps
//     and an optional final /*; key origins [fingerprint/path] with ' or h
//     hardened markers.
//   - BIP 389 multipath steps /<a;b;...>: at most one per key, the same
//     number of values in every key of a descriptor. IsMultipath reports them,
//     Multipath expands them (for <0;1>: receive, then change).
//   - Script expressions: pk, pkh, wpkh, sh, wsh, multi and sortedmulti
//     (BIP 381-383), with sh(wpkh), sh(wsh(...)), wsh(multi) and the other
//     nestings the BIPs allow, and key-path-only tr(KEY) (BIP 386), whose
//     output key is the BIP 86 tweak of the internal key
//     (txscript.ComputeTaprootKeyNoScript).
//   - sortedmulti sorts the derived keys in BIP 67 order (SortKeys).
//   - Multisig limits of BIP 383: at most 3 keys in bare multi, a redeem
//     script of at most 520 bytes in sh (15 compressed or 7 uncompressed
//     keys), at most 20 keys otherwise.
//
// # What is refused
//
// bankd nodes never hold keys, so this package is watch-only: WIF private
// keys and xprv/tprv (and SLIP-132 private) keys are refused with
// ErrPrivateKey, and the error message does not repeat the secret. A
// hardened step after an extended public key (xpub/1h, xpub/*h) can never be
// derived without the private key and is refused with ErrHardenedDerivation
// at parse time, even though BIP 380 calls such key expressions valid
// syntax; export the xpub at the last hardened step instead. SLIP-132
// ypub/zpub keys are refused: the script type comes from the descriptor, so
// give the same key as xpub/tpub.
//
// Not supported, refused with ErrUnsupported: taproot script trees
// tr(KEY,TREE), combo(), raw(), addr(), rawtr(), multi_a(), sortedmulti_a(),
// musig(), sp() and miniscript.
//
// # Networks
//
// Parse takes the network the descriptor is for. Extended keys must carry that
// network's version (xpub for mainnet; tpub for testnet3, testnet4, signet
// and regtest, which share it); otherwise Parse fails with ErrNetwork. Hex
// keys fit any network. Address defaults to the parse network and accepts
// another one only when the descriptor's extended keys are valid there.
//
// # Normal form
//
// String writes hex in lower case, numbers without leading zeros, hardened
// steps with ' (as Bitcoin Core's getdescriptorinfo does for descriptors
// written with ') and the checksum. Format(LetterH) writes h instead, which
// needs no quoting in shells and JSON; the checksum covers the marker, so
// compare descriptors by their String, not by the text they were given in.
// Parse(d.String()) always gives a descriptor with the same String.
//
// # Derivation
//
// Derive(i) and Expand(i) derive the output at child index i of the /*
// step (i < 2^31); every key of a multisig is derived at the same index.
// A descriptor without /* has exactly one output, index 0; other indexes are
// refused rather than silently giving the same script again, and a multipath
// descriptor must be split with Multipath first. Expand also returns the
// redeem and witness scripts and each key with its full origin (fingerprint
// and path), which is what a PSBT updater needs. Parse does no key
// derivation; the fixed part of each key's path is derived on first use and
// cached, so the cost of a descriptor is paid only by the caller who derives
// from it, in proportion to its path lengths.
//
// # Errors
//
// Every error is an *Error with a Kind (ErrSyntax, ErrChecksum,
// ErrInvalidKey, ErrPrivateKey, ErrHardenedDerivation, ErrNetwork,
// ErrUncompressedKey, ErrThreshold, ErrTooManyKeys, ErrNesting,
// ErrMultipath, ErrUnsupported, ErrDerive, ErrNoAddress) for errors.Is, the
// byte position in the input and the offending token; for
// "wpkh(03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd)#aaaaaaaa":
//
//	descriptor: bad checksum at position 73 ("aaaaaaaa"): checksum mismatch: expected ah7klf29, got aaaaaaaa
//
// # Test vectors
//
// testdata/ holds the published test vectors of BIP 32, 67, 84, 86, 380-386
// and 389, copied verbatim from github.com/bitcoin/bips with the source named
// in each file. Vectors written with private keys are checked both ways: the
// published text must be refused, and its watch-only equivalent must give the
// published scripts.
package descriptor
