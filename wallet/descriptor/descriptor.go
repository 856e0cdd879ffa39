package descriptor

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"strconv"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
)

// Kind is the type of a script expression.
type Kind int

// Script expression kinds.
const (
	KindPK          Kind = iota + 1 // pk(KEY): bare pay-to-pubkey
	KindPKH                         // pkh(KEY): P2PKH
	KindWPKH                        // wpkh(KEY): P2WPKH
	KindSH                          // sh(SCRIPT): P2SH
	KindWSH                         // wsh(SCRIPT): P2WSH
	KindMulti                       // multi(k,KEY,...): k-of-n CHECKMULTISIG, keys in the given order
	KindSortedMulti                 // sortedmulti(k,KEY,...): keys sorted as BIP 67
	KindTR                          // tr(KEY): taproot, key path only (BIP 86 tweak)
)

var kindNames = map[Kind]string{
	KindPK: "pk", KindPKH: "pkh", KindWPKH: "wpkh", KindSH: "sh", KindWSH: "wsh",
	KindMulti: "multi", KindSortedMulti: "sortedmulti", KindTR: "tr",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Script expressions that exist in BIP 380-390 or Bitcoin Core but are not
// implemented here; they get ErrUnsupported rather than "unknown".
var unsupported = map[string]string{
	"combo":         "combo() (BIP 384) is not supported; write the pkh/wpkh/sh(wpkh) descriptors you need",
	"raw":           "raw() (BIP 385) is not supported",
	"addr":          "addr() (BIP 385) is not supported",
	"rawtr":         "rawtr() is not supported",
	"multi_a":       "multi_a() (BIP 387) is not supported: taproot script paths are not supported",
	"sortedmulti_a": "sortedmulti_a() (BIP 387) is not supported: taproot script paths are not supported",
	"musig":         "musig() (BIP 390) is not supported",
	"sp":            "sp() (BIP 392) is not supported",
}

// Miniscript fragment names (BIP 379), refused as unsupported.
var miniscript = []string{
	"pk_k", "pk_h", "older", "after", "sha256", "hash256", "ripemd160", "hash160",
	"andor", "and_v", "and_b", "and_n", "or_b", "or_c", "or_d", "or_i", "thresh",
	"a", "s", "c", "t", "d", "v", "j", "n", "l", "u",
}

// scriptContext is where a script expression appears.
type scriptContext int

const (
	sctxTop scriptContext = iota
	sctxSH                // directly inside sh()
	sctxWSH               // inside wsh() (itself at top level or inside sh())
)

type node struct {
	kind      Kind
	pos       int
	threshold int
	keys      []*key
	sub       *node
}

// Descriptor is a parsed, validated, watch-only output script descriptor.
// It is immutable and safe for concurrent use.
type Descriptor struct {
	root *node
	net  *chaincfg.Params
}

// call is a parsed "name(arg,arg,...)".
type call struct {
	name    string
	args    []string
	argPos  []int
	isCall  bool // false: s has no parentheses at all (a key, a number...)
	openPos int
}

// splitCall splits s (at offset pos) into a function name and its top-level
// comma-separated arguments. Parentheses and braces must balance and the
// closing parenthesis must end s.
func splitCall(s string, pos int) (*call, error) {
	open := strings.IndexByte(s, '(')
	if open < 0 {
		if i := strings.IndexAny(s, "){}"); i >= 0 {
			return nil, errAt(ErrSyntax, pos+i, s[i:i+1], "unbalanced %q", s[i])
		}
		return &call{isCall: false}, nil
	}
	c := &call{name: s[:open], isCall: true, openPos: pos + open}
	if c.name == "" {
		return nil, errAt(ErrSyntax, pos, s, "missing script expression name before '('")
	}
	for i := 0; i < len(c.name); i++ {
		ch := c.name[i]
		if !('a' <= ch && ch <= 'z' || ch == '_' || '0' <= ch && ch <= '9') {
			return nil, errAt(ErrSyntax, pos, c.name, "not a script expression name")
		}
	}
	depth := 0
	argStart := open + 1
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(', '{':
			depth++
		case ')', '}':
			depth--
			if depth < 0 {
				return nil, errAt(ErrSyntax, pos+i, s[i:i+1], "unbalanced %q", s[i])
			}
			if depth == 0 {
				if s[i] != ')' {
					return nil, errAt(ErrSyntax, pos+i, "}", "unbalanced '}'")
				}
				if i != len(s)-1 {
					return nil, errAt(ErrSyntax, pos+i+1, s[i+1:], "unexpected text after %s(...)", c.name)
				}
				c.args = append(c.args, s[argStart:i])
				c.argPos = append(c.argPos, pos+argStart)
				return c, nil
			}
		case ',':
			if depth == 1 {
				c.args = append(c.args, s[argStart:i])
				c.argPos = append(c.argPos, pos+argStart)
				argStart = i + 1
			}
		}
	}
	return nil, errAt(ErrSyntax, pos+open, c.name+"(", "missing closing ')'")
}

// Parse parses and validates a descriptor for the network net. A "#checksum"
// suffix is verified when present and optional otherwise.
//
// Supported: pk, pkh, wpkh, sh, wsh, multi, sortedmulti and key-path tr, with
// hex public keys, xpub/tpub keys with key origins, unhardened derivation
// steps, a final /* and at most one BIP 389 <a;b;...> step per key. Private
// keys, hardened steps after an xpub, taproot script trees and the other
// script expressions are refused; every error is an *Error (see the Err*
// kinds).
func Parse(s string, net *chaincfg.Params) (*Descriptor, error) {
	if net == nil {
		return nil, &Error{Kind: ErrNetwork, Pos: -1, Msg: "no network given"}
	}
	payload, _, err := SplitChecksum(s)
	if err != nil {
		return nil, err
	}
	p := &parser{net: net}
	root, err := p.script(payload, 0, sctxTop)
	if err != nil {
		return nil, err
	}
	d := &Descriptor{root: root, net: net}
	if err := d.checkMultipath(); err != nil {
		return nil, err
	}
	return d, nil
}

type parser struct {
	net *chaincfg.Params
}

func (p *parser) script(s string, pos int, ctx scriptContext) (*node, error) {
	c, err := splitCall(s, pos)
	if err != nil {
		return nil, err
	}
	if !c.isCall {
		if s == "" {
			return nil, errAt(ErrSyntax, pos, "", "missing script expression")
		}
		return nil, errAt(ErrNesting, pos, s, "a key (or other value) where a script expression is expected%s", ctxHint(ctx))
	}
	n := &node{pos: pos}
	switch c.name {
	case "pk":
		n.kind = KindPK
	case "pkh":
		n.kind = KindPKH
	case "wpkh":
		n.kind = KindWPKH
	case "sh":
		n.kind = KindSH
	case "wsh":
		n.kind = KindWSH
	case "multi":
		n.kind = KindMulti
	case "sortedmulti":
		n.kind = KindSortedMulti
	case "tr":
		n.kind = KindTR
	default:
		if msg, ok := unsupported[c.name]; ok {
			return nil, errAt(ErrUnsupported, pos, c.name+"(", "%s", msg)
		}
		if slices.Contains(miniscript, c.name) {
			return nil, errAt(ErrUnsupported, pos, c.name+"(", "miniscript (BIP 379) is not supported")
		}
		return nil, errAt(ErrSyntax, pos, c.name+"(", "unknown script expression %s()", c.name)
	}

	// Where each expression may appear (BIP 381, 382, 383, 386).
	switch {
	case n.kind == KindSH && ctx != sctxTop:
		return nil, errAt(ErrNesting, pos, "sh(", "sh() is only allowed at the top level")
	case n.kind == KindWSH && ctx == sctxWSH:
		return nil, errAt(ErrNesting, pos, "wsh(", "wsh() cannot be nested inside wsh()")
	case n.kind == KindWPKH && ctx == sctxWSH:
		return nil, errAt(ErrNesting, pos, "wpkh(", "wpkh() is only allowed at the top level or inside sh(), not inside wsh()")
	case n.kind == KindTR && ctx != sctxTop:
		return nil, errAt(ErrNesting, pos, "tr(", "tr() is only allowed at the top level")
	}

	keyCtx := ctxLegacy
	if ctx == sctxWSH || n.kind == KindWPKH {
		keyCtx = ctxSegwit
	}
	if n.kind == KindTR {
		keyCtx = ctxTaproot
	}

	switch n.kind {
	case KindPK, KindPKH, KindWPKH, KindTR:
		if n.kind == KindTR && len(c.args) > 1 {
			return nil, errAt(ErrUnsupported, c.argPos[1], c.args[1],
				"taproot script trees, tr(KEY,TREE), are not supported; only key-path tr(KEY) (BIP 86)")
		}
		if len(c.args) != 1 {
			return nil, errAt(ErrSyntax, c.argPos[1]-1, ",", "%s() takes exactly one key expression", c.name)
		}
		if strings.ContainsAny(c.args[0], "(){}") {
			return nil, errAt(ErrNesting, c.argPos[0], c.args[0], "%s() takes a key expression, not a script expression", c.name)
		}
		if c.args[0] == "" {
			return nil, errAt(ErrSyntax, c.argPos[0], "", "%s() is missing its key expression", c.name)
		}
		k, err := parseKey(c.args[0], c.argPos[0], keyCtx, p.net)
		if err != nil {
			return nil, err
		}
		n.keys = []*key{k}
	case KindSH, KindWSH:
		if len(c.args) != 1 {
			return nil, errAt(ErrSyntax, c.argPos[1]-1, ",", "%s() takes exactly one script expression", c.name)
		}
		sub := sctxSH
		if n.kind == KindWSH {
			sub = sctxWSH
		}
		inner, err := p.script(c.args[0], c.argPos[0], sub)
		if err != nil {
			return nil, err
		}
		n.sub = inner
	case KindMulti, KindSortedMulti:
		if err := p.multi(n, c, ctx, keyCtx); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func ctxHint(ctx scriptContext) string {
	switch ctx {
	case sctxSH:
		return " inside sh()"
	case sctxWSH:
		return " inside wsh()"
	}
	return ""
}

// Limits of BIP 383.
const (
	maxBareMultisigKeys = 3   // multi() at the top level
	maxMultisigKeys     = 20  // MAX_PUBKEYS_PER_MULTISIG
	maxScriptElement    = 520 // sh(): the redeem script is one push
)

func (p *parser) multi(n *node, c *call, ctx scriptContext, keyCtx keyContext) error {
	thr := c.args[0]
	if thr == "" || strings.Trim(thr, "0123456789") != "" {
		return errAt(ErrThreshold, c.argPos[0], thr, "%s() threshold must be a decimal number", c.name)
	}
	if len(c.args) < 2 {
		return errAt(ErrSyntax, c.openPos, c.name+"(", "%s() needs at least one key", c.name)
	}
	nkeys := len(c.args) - 1
	if nkeys > maxMultisigKeys {
		return errAt(ErrTooManyKeys, c.argPos[maxMultisigKeys+1], c.args[maxMultisigKeys+1],
			"%s() allows at most %d keys, got %d", c.name, maxMultisigKeys, nkeys)
	}
	if ctx == sctxTop && nkeys > maxBareMultisigKeys {
		return errAt(ErrTooManyKeys, c.argPos[maxBareMultisigKeys+1], c.args[maxBareMultisigKeys+1],
			"bare %s() allows at most %d keys, got %d; wrap it in sh() or wsh()", c.name, maxBareMultisigKeys, nkeys)
	}
	k, err := strconv.Atoi(strings.TrimLeft(thr, "0"))
	if strings.TrimLeft(thr, "0") == "" {
		k, err = 0, nil
	}
	if err != nil || k < 1 || k > nkeys {
		return errAt(ErrThreshold, c.argPos[0], thr, "%s() threshold must be between 1 and the number of keys (%d)", c.name, nkeys)
	}
	n.threshold = k
	scriptSize := 3 // k, n, OP_CHECKMULTISIG
	for i, a := range c.args[1:] {
		if strings.ContainsAny(a, "(){}") {
			return errAt(ErrNesting, c.argPos[i+1], a, "%s() takes key expressions, not script expressions", c.name)
		}
		if a == "" {
			return errAt(ErrSyntax, c.argPos[i+1], "", "empty key expression in %s()", c.name)
		}
		key, err := parseKey(a, c.argPos[i+1], keyCtx, p.net)
		if err != nil {
			return err
		}
		n.keys = append(n.keys, key)
		scriptSize += 1 + key.size()
	}
	if ctx == sctxSH && scriptSize > maxScriptElement {
		return errAt(ErrTooManyKeys, n.pos, c.name+"(",
			"sh(%s()) redeem script would be %d bytes, more than the %d-byte limit (at most 15 compressed keys)",
			c.name, scriptSize, maxScriptElement)
	}
	return nil
}

// size is the serialized size of the key in a script.
func (k *key) size() int {
	if k.ext != nil {
		return 33
	}
	return len(k.pub)
}

func (n *node) walkKeys(f func(*key) error) error {
	for _, k := range n.keys {
		if err := f(k); err != nil {
			return err
		}
	}
	if n.sub != nil {
		return n.sub.walkKeys(f)
	}
	return nil
}

// checkMultipath enforces BIP 389: every multipath step in a descriptor has
// the same number of values.
func (d *Descriptor) checkMultipath() error {
	want := 0
	return d.root.walkKeys(func(k *key) error {
		if !k.isMultipath() {
			return nil
		}
		if want == 0 {
			want = len(k.multi)
			return nil
		}
		if len(k.multi) != want {
			return errAt(ErrMultipath, k.pos, "", "multipath steps in one descriptor must have the same number of values (%d here, %d before)", len(k.multi), want)
		}
		return nil
	})
}

// Kind returns the top-level script expression type.
func (d *Descriptor) Kind() Kind { return d.root.kind }

// Network returns the network the descriptor was parsed for.
func (d *Descriptor) Network() *chaincfg.Params { return d.net }

// IsRange reports whether the descriptor has a wildcard (/*) and so describes
// a sequence of scripts indexed by the child number.
func (d *Descriptor) IsRange() bool {
	r := false
	d.root.walkKeys(func(k *key) error {
		r = r || k.wildcard
		return nil
	})
	return r
}

// IsMultipath reports whether the descriptor has BIP 389 <a;b;...> steps and
// so stands for several descriptors (see Multipath).
func (d *Descriptor) IsMultipath() bool { return d.multipathLen() > 0 }

func (d *Descriptor) multipathLen() int {
	n := 0
	d.root.walkKeys(func(k *key) error {
		if k.isMultipath() {
			n = len(k.multi)
		}
		return nil
	})
	return n
}

// Multipath expands a BIP 389 multipath descriptor into the descriptors it
// stands for, in order: for the usual <0;1>, the first is the receive
// descriptor and the second the change descriptor. A descriptor without
// multipath steps is returned as a one-element slice holding itself.
func (d *Descriptor) Multipath() []*Descriptor {
	n := d.multipathLen()
	if n == 0 {
		return []*Descriptor{d}
	}
	out := make([]*Descriptor, n)
	for i := range n {
		out[i] = &Descriptor{root: d.root.withPath(i), net: d.net}
	}
	return out
}

func (n *node) withPath(i int) *node {
	c := *n
	c.keys = make([]*key, len(n.keys))
	for j, k := range n.keys {
		c.keys[j] = k.withPath(i)
	}
	if n.sub != nil {
		c.sub = n.sub.withPath(i)
	}
	return &c
}

// String returns the normalised descriptor with its checksum: lower-case hex,
// hardened steps written with ', numbers without leading zeros, no spaces.
// Parse(d.String()) yields a descriptor with the same String.
func (d *Descriptor) String() string { return d.Format(Apostrophe) }

// Format is String with a choice of hardened marker. The checksum covers the
// marker, so the same descriptor has different checksums with ' and h.
func (d *Descriptor) Format(m HardenedMarker) string {
	if m != LetterH {
		m = Apostrophe
	}
	var b strings.Builder
	d.root.write(&b, m)
	s, _ := AddChecksum(b.String())
	return s
}

func (n *node) write(b *strings.Builder, m HardenedMarker) {
	b.WriteString(n.kind.String())
	b.WriteByte('(')
	switch n.kind {
	case KindSH, KindWSH:
		n.sub.write(b, m)
	case KindMulti, KindSortedMulti:
		b.WriteString(strconv.Itoa(n.threshold))
		for _, k := range n.keys {
			b.WriteByte(',')
			k.write(b, m)
		}
	default:
		n.keys[0].write(b, m)
	}
	b.WriteByte(')')
}

// DerivedKey is a public key of an expanded output, with its full BIP 32
// origin (as needed for PSBT BIP32_DERIVATION fields). For a key without a
// key origin the fingerprint is that of the key itself, as in Bitcoin Core.
type DerivedKey struct {
	// PubKey is 33 bytes (compressed), 65 bytes (uncompressed, legacy
	// scripts only) or, for tr(), the 32-byte x-only internal key.
	PubKey []byte
	Origin KeyOrigin
}

// Output is one expanded output of a descriptor.
type Output struct {
	// Script is the scriptPubKey.
	Script []byte
	// RedeemScript is the script committed to by P2SH (sh(...)), else nil.
	RedeemScript []byte
	// WitnessScript is the script committed to by P2WSH (wsh(...)), else nil.
	WitnessScript []byte
	// Keys are the keys in the order they appear in the descriptor.
	Keys []DerivedKey
}

// Expand derives the output at child index. For a ranged descriptor index is
// the child number of the /* step and must be below 2^31 (hardened children
// cannot be derived from public keys). A descriptor without /* has exactly
// one output, index 0. A multipath descriptor must first be split with
// Multipath.
func (d *Descriptor) Expand(index uint32) (*Output, error) {
	if d.IsMultipath() {
		return nil, deriveErr("descriptor has BIP 389 multipath steps; split it with Multipath() first")
	}
	if !d.IsRange() && index != 0 {
		return nil, deriveErr("descriptor is not ranged (no /*): only index 0 exists, got %d", index)
	}
	if index >= HardenedKeyStart {
		return nil, deriveErr("index %d is a hardened child index; ranged descriptors derive unhardened children below 2^31", index)
	}
	out := &Output{}
	script, err := d.root.expand(index, out)
	if err != nil {
		return nil, err
	}
	out.Script = script
	return out, nil
}

// Derive returns the scriptPubKey at child index (see Expand).
func (d *Descriptor) Derive(index uint32) ([]byte, error) {
	o, err := d.Expand(index)
	if err != nil {
		return nil, err
	}
	return o.Script, nil
}

// Opcodes used below.
const (
	op0             = txscript.OP_0
	op1             = txscript.OP_1
	opDup           = txscript.OP_DUP
	opHash160       = txscript.OP_HASH160
	opEqual         = txscript.OP_EQUAL
	opEqualVerify   = txscript.OP_EQUALVERIFY
	opCheckSig      = txscript.OP_CHECKSIG
	opCheckMultiSig = txscript.OP_CHECKMULTISIG
)

// pushSmallInt appends a minimally encoded integer 1..20 (BIP 383).
func pushSmallInt(s []byte, v int) []byte {
	if v <= 16 {
		return append(s, byte(op1-1+v))
	}
	return append(s, 1, byte(v))
}

func (n *node) expand(index uint32, out *Output) ([]byte, error) {
	var keys []*derivedKey
	for _, k := range n.keys {
		dk, err := k.derive(index)
		if err != nil {
			return nil, err
		}
		keys = append(keys, dk)
	}
	switch n.kind {
	case KindPK:
		out.addKeys(keys)
		pk := keys[0].pub
		s := append([]byte{byte(len(pk))}, pk...)
		return append(s, opCheckSig), nil
	case KindPKH:
		out.addKeys(keys)
		s := []byte{opDup, opHash160, 20}
		s = append(s, btcutil.Hash160(keys[0].pub)...)
		return append(s, opEqualVerify, opCheckSig), nil
	case KindWPKH:
		out.addKeys(keys)
		return append([]byte{op0, 20}, btcutil.Hash160(keys[0].pub)...), nil
	case KindMulti, KindSortedMulti:
		out.addKeys(keys)
		pubs := make([][]byte, len(keys))
		for i, k := range keys {
			pubs[i] = k.pub
		}
		if n.kind == KindSortedMulti {
			SortKeys(pubs)
		}
		s := pushSmallInt(nil, n.threshold)
		for _, pk := range pubs {
			s = append(s, byte(len(pk)))
			s = append(s, pk...)
		}
		s = pushSmallInt(s, len(pubs))
		return append(s, opCheckMultiSig), nil
	case KindSH:
		inner, err := n.sub.expand(index, out)
		if err != nil {
			return nil, err
		}
		out.RedeemScript = inner
		s := []byte{opHash160, 20}
		s = append(s, btcutil.Hash160(inner)...)
		return append(s, opEqual), nil
	case KindWSH:
		inner, err := n.sub.expand(index, out)
		if err != nil {
			return nil, err
		}
		out.WitnessScript = inner
		h := sha256.Sum256(inner)
		return append([]byte{op0, 32}, h[:]...), nil
	case KindTR:
		k := keys[0]
		xonly := k.pub
		if len(xonly) == 33 {
			xonly = xonly[1:]
		}
		internal, err := schnorr.ParsePubKey(xonly)
		if err != nil {
			return nil, deriveErr("taproot internal key: %v", err)
		}
		k.pub = xonly
		out.addKeys(keys)
		// BIP 86: no script tree, the output key commits to an empty merkle root.
		outKey := txscript.ComputeTaprootKeyNoScript(internal)
		return append([]byte{op1, 32}, schnorr.SerializePubKey(outKey)...), nil
	}
	return nil, deriveErr("unknown script expression kind %v", n.kind)
}

func (o *Output) addKeys(keys []*derivedKey) {
	for _, k := range keys {
		o.Keys = append(o.Keys, DerivedKey{PubKey: slices.Clone(k.pub), Origin: KeyOrigin{Fingerprint: k.fingerprint, Path: k.path}})
	}
}

// SortKeys sorts serialized public keys in place in BIP 67 order: ascending
// lexicographic order of their bytes. This is the order sortedmulti() uses.
func SortKeys(pubs [][]byte) {
	slices.SortFunc(pubs, bytes.Compare)
}

func (d *Descriptor) hasExtendedKeys() bool {
	has := false
	d.root.walkKeys(func(k *key) error {
		has = has || k.ext != nil
		return nil
	})
	return has
}

// Address returns the address of the output at child index (see Expand) on
// net; a nil net means the network the descriptor was parsed for. A net whose
// extended keys differ from the descriptor's (mainnet vs test networks) is
// refused with ErrNetwork when the descriptor has extended keys. Bare pk()
// and multi() outputs have no address (ErrNoAddress).
func (d *Descriptor) Address(index uint32, net *chaincfg.Params) (btcutil.Address, error) {
	if net == nil {
		net = d.net
	}
	if net.HDPublicKeyID != d.net.HDPublicKeyID && d.hasExtendedKeys() {
		return nil, &Error{Kind: ErrNetwork, Pos: -1,
			Msg: "descriptor was parsed for " + d.net.Name + ", its extended keys are not valid on " + net.Name}
	}
	switch d.root.kind {
	case KindPK, KindMulti, KindSortedMulti:
		return nil, &Error{Kind: ErrNoAddress, Pos: -1, Msg: "bare " + d.root.kind.String() + "() outputs have no address"}
	}
	script, err := d.Derive(index)
	if err != nil {
		return nil, err
	}
	var addr btcutil.Address
	switch d.root.kind {
	case KindPKH:
		addr, err = btcutil.NewAddressPubKeyHash(script[3:23], net)
	case KindSH:
		addr, err = btcutil.NewAddressScriptHashFromHash(script[2:22], net)
	case KindWPKH:
		addr, err = btcutil.NewAddressWitnessPubKeyHash(script[2:], net)
	case KindWSH:
		addr, err = btcutil.NewAddressWitnessScriptHash(script[2:], net)
	case KindTR:
		addr, err = btcutil.NewAddressTaproot(script[2:], net)
	}
	if err != nil {
		return nil, deriveErr("address: %v", err)
	}
	return addr, nil
}

// ExtendedKey is an extended public key of a descriptor with its origin: the master
// fingerprint and the path to the key (for PSBT global xpubs and wallet registration files).
// Without a key origin in the descriptor, the fingerprint is the key's own and the path empty.
type ExtendedKey struct {
	Key    *hdkeychain.ExtendedKey
	Origin KeyOrigin
}

// ExtendedKeys returns the descriptor's extended keys in the order they appear.
func (d *Descriptor) ExtendedKeys() []ExtendedKey {
	var out []ExtendedKey
	_ = d.root.walkKeys(func(k *key) error {
		if k.ext == nil {
			return nil
		}
		e := ExtendedKey{Key: k.ext}
		if k.origin != nil {
			e.Origin = KeyOrigin{Fingerprint: k.origin.Fingerprint, Path: append([]uint32(nil), k.origin.Path...)}
		} else if pk, err := k.ext.ECPubKey(); err == nil {
			copy(e.Origin.Fingerprint[:], btcutil.Hash160(pk.SerializeCompressed())[:4])
		}
		out = append(out, e)
		return nil
	})
	return out
}

// Threshold is the number of signatures a multi/sortedmulti output's script requires (its M),
// read from the script (WitnessScript or RedeemScript); 0 for an output of any other kind.
func (o *Output) Threshold() int {
	script := o.WitnessScript
	if script == nil {
		script = o.RedeemScript
	}
	if len(script) < 2 || script[len(script)-1] != opCheckMultiSig {
		return 0
	}
	switch op := script[0]; {
	case op >= op1 && op <= txscript.OP_16:
		return int(op-op1) + 1
	case op == txscript.OP_DATA_1:
		return int(script[1])
	}
	return 0
}
