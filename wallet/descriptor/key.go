package descriptor

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

// HardenedKeyStart is the first hardened BIP 32 child index (2^31).
const HardenedKeyStart = hdkeychain.HardenedKeyStart

// maxDepth is the deepest BIP 32 level an extended key can encode.
const maxDepth = 255

// KeyOrigin is the "[fingerprint/path]" prefix of a key expression: the
// fingerprint of the master key and the derivation path from it to the key
// that follows. Hardened steps have HardenedKeyStart added.
type KeyOrigin struct {
	Fingerprint [4]byte
	Path        []uint32
}

// keyContext says which kinds of keys the enclosing script expression allows.
type keyContext int

const (
	ctxLegacy  keyContext = iota // pk/pkh/multi at top level or in sh(): any valid key
	ctxSegwit                    // wpkh, anything under wsh(): compressed keys only
	ctxTaproot                   // tr(): compressed or x-only keys
)

func (c keyContext) String() string {
	switch c {
	case ctxSegwit:
		return "segwit v0"
	case ctxTaproot:
		return "taproot"
	default:
		return "legacy"
	}
}

// key is one parsed key expression.
type key struct {
	pos    int // offset of the key expression in the input
	origin *KeyOrigin

	// Exactly one of pub and ext is set.
	pub   []byte // hex key as written: 33 (compressed), 65 (uncompressed) or 32 (x-only) bytes
	ext   *hdkeychain.ExtendedKey
	xonly bool

	// Derivation after ext. path holds the fixed unhardened steps; when the
	// key is multipath, multiAt is the position in path where the multipath
	// step goes (path[multiAt] is a placeholder) and multi holds its values.
	path     []uint32
	multiAt  int
	multi    []uint32
	wildcard bool

	// cache holds the key at the end of path (see base); nil for hex keys
	// and multipath keys.
	cache *baseCache
}

func (k *key) isMultipath() bool { return k.multi != nil }

// step is one syntactic derivation step after an extended key.
type step struct {
	pos      int
	text     string
	value    uint32 // including HardenedKeyStart when hardened
	hardened bool
	wildcard bool
	multi    []uint32 // set for <a;b;...>
	multiH   bool     // some multipath value is hardened
}

// parseIndex parses NUM, NUM' or NUMh. NUM must be decimal below 2^31.
func parseIndex(s string, pos int, allowHardened bool) (uint32, bool, error) {
	hardened := false
	num := s
	if strings.HasSuffix(s, "'") || strings.HasSuffix(s, "h") {
		hardened = true
		num = s[:len(s)-1]
	}
	if num == "" {
		return 0, false, errAt(ErrSyntax, pos, s, "empty derivation step")
	}
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return 0, false, errAt(ErrSyntax, pos, s,
				"derivation step must be a decimal number, optionally followed by ' or h for hardened")
		}
	}
	v, err := strconv.ParseUint(num, 10, 32)
	if err != nil || v >= HardenedKeyStart {
		return 0, false, errAt(ErrSyntax, pos, s,
			"derivation index out of range (must be below 2147483648; mark hardened steps with ' or h)")
	}
	if hardened {
		if !allowHardened {
			return 0, false, errAt(ErrHardenedDerivation, pos, s,
				"hardened step after an extended public key cannot be derived without the private key; "+
					"use the xpub at the last hardened step instead")
		}
		v += HardenedKeyStart
	}
	return uint32(v), hardened, nil
}

func parseOrigin(s string, pos int) (*KeyOrigin, error) {
	// s is the text between '[' and ']'; pos is the offset of '['.
	parts := strings.Split(s, "/")
	fp := parts[0]
	if len(fp) != 8 || !isHex(fp) {
		return nil, errAt(ErrSyntax, pos+1, fp, "key origin fingerprint must be exactly 8 hex characters")
	}
	o := &KeyOrigin{}
	hex.Decode(o.Fingerprint[:], []byte(fp))
	off := pos + 1 + len(fp)
	for _, p := range parts[1:] {
		off++ // the '/'
		switch {
		case strings.HasPrefix(p, "*"):
			return nil, errAt(ErrSyntax, off, p, "wildcard is not allowed in a key origin")
		case strings.ContainsAny(p, "<>;"):
			return nil, errAt(ErrMultipath, off, p, "multipath step is not allowed in a key origin")
		}
		v, _, err := parseIndex(p, off, true)
		if err != nil {
			return nil, err
		}
		o.Path = append(o.Path, v)
		off += len(p)
	}
	return o, nil
}

// parseSteps parses the "/..." derivation steps after a key.
func parseSteps(parts []string, pos int) ([]step, error) {
	var steps []step
	off := pos
	seenMulti := false
	for i, p := range parts {
		off++ // the '/'
		st := step{pos: off, text: p}
		switch {
		case p == "*" || p == "*'" || p == "*h":
			if i != len(parts)-1 {
				return nil, errAt(ErrSyntax, off, p, "wildcard must be the last derivation step")
			}
			st.wildcard, st.hardened = true, p != "*"
		case strings.HasPrefix(p, "<") || strings.HasSuffix(p, ">") || strings.Contains(p, ";"):
			if seenMulti {
				return nil, errAt(ErrMultipath, off, p, "only one multipath step <a;b;...> is allowed per key")
			}
			seenMulti = true
			if !strings.HasPrefix(p, "<") {
				return nil, errAt(ErrMultipath, off, p, "multipath step is missing its opening '<'")
			}
			if !strings.HasSuffix(p, ">") || len(p) < 2 {
				return nil, errAt(ErrMultipath, off, p, "multipath step is missing its closing '>'")
			}
			inner := p[1 : len(p)-1]
			elems := strings.Split(inner, ";")
			if len(elems) < 2 {
				return nil, errAt(ErrMultipath, off, p, "multipath step needs at least two values, as in <0;1>")
			}
			eoff := off + 1
			for _, e := range elems {
				if e == "" {
					return nil, errAt(ErrMultipath, eoff, p, "empty value in multipath step")
				}
				v, h, err := parseIndex(e, eoff, true)
				if err != nil {
					return nil, err
				}
				for _, prev := range st.multi {
					if prev == v {
						return nil, errAt(ErrMultipath, eoff, e, "duplicate value in multipath step")
					}
				}
				st.multi = append(st.multi, v)
				st.multiH = st.multiH || h
				eoff += len(e) + 1
			}
		default:
			v, h, err := parseIndex(p, off, true)
			if err != nil {
				return nil, err
			}
			st.value, st.hardened = v, h
		}
		steps = append(steps, st)
		off += len(p)
	}
	return steps, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// Known extended key versions, for precise error messages.
var (
	hdNetworks = []*chaincfg.Params{
		&chaincfg.MainNetParams, &chaincfg.TestNet3Params, &chaincfg.TestNet4Params,
		&chaincfg.RegressionNetParams, &chaincfg.SigNetParams, &chaincfg.SimNetParams,
	}
	// SLIP-132 versions (ypub, zpub, ...). Descriptors carry the script type
	// in the expression, so only plain xpub/tpub are valid inside them.
	slip132Public = map[[4]byte]string{
		{0x04, 0x9d, 0x7c, 0xb2}: "ypub", {0x04, 0xb2, 0x47, 0x46}: "zpub",
		{0x02, 0x95, 0xb4, 0x3f}: "Ypub", {0x02, 0xaa, 0x7e, 0xd3}: "Zpub",
		{0x04, 0x4a, 0x52, 0x62}: "upub", {0x04, 0x5f, 0x1c, 0xf6}: "vpub",
		{0x02, 0x42, 0x89, 0xef}: "Upub", {0x02, 0x57, 0x54, 0x83}: "Vpub",
	}
	slip132Private = map[[4]byte]string{
		{0x04, 0x9d, 0x78, 0x78}: "yprv", {0x04, 0xb2, 0x43, 0x0c}: "zprv",
		{0x02, 0x95, 0xb0, 0x05}: "Yprv", {0x02, 0xaa, 0x7a, 0x99}: "Zprv",
		{0x04, 0x4a, 0x4e, 0x28}: "uprv", {0x04, 0x5f, 0x18, 0xbc}: "vprv",
		{0x02, 0x42, 0x85, 0xb5}: "Uprv", {0x02, 0x57, 0x50, 0x48}: "Vprv",
	}
)

func netNames(version [4]byte, public bool) []string {
	var names []string
	for _, n := range hdNetworks {
		id := n.HDPrivateKeyID
		if public {
			id = n.HDPublicKeyID
		}
		if id == version {
			names = append(names, n.Name)
		}
	}
	return names
}

// decodeExtended decodes and validates a base58check serialized extended
// public key for net. It returns (nil, nil) when s is not an 82-byte base58
// string at all, so the caller can try other encodings.
func decodeExtended(s string, pos int, net *chaincfg.Params) (*hdkeychain.ExtendedKey, error) {
	b := base58.Decode(s)
	if len(b) != 82 {
		return nil, nil
	}
	payload, sum := b[:78], b[78:]
	first := sha256.Sum256(payload)
	second := sha256.Sum256(first[:])
	if !bytes.Equal(second[:4], sum) {
		return nil, errAt(ErrInvalidKey, pos, s, "extended key checksum mismatch (mistyped key?)")
	}
	var version [4]byte
	copy(version[:], payload[:4])
	depth := payload[4]
	parentFP := payload[5:9]
	child := binary.BigEndian.Uint32(payload[9:13])
	chainCode := payload[13:45]
	keyData := payload[45:78]

	if names := netNames(version, false); names != nil || slip132Private[version] != "" {
		return nil, &Error{Kind: ErrPrivateKey, Pos: pos,
			Msg: "extended private key: descriptors here are watch-only; give the xpub/tpub instead (the key is not repeated in this message)"}
	}
	if version != net.HDPublicKeyID {
		if name := slip132Public[version]; name != "" {
			return nil, errAt(ErrInvalidKey, pos, s,
				"%s (SLIP-132) keys are not valid in descriptors; the script type comes from the descriptor, re-encode the key as xpub/tpub", name)
		}
		if names := netNames(version, true); names != nil {
			return nil, errAt(ErrNetwork, pos, s,
				"extended public key is for %s, but the descriptor is parsed for %s", strings.Join(names, "/"), net.Name)
		}
		return nil, errAt(ErrInvalidKey, pos, s, "unknown extended key version %x", version)
	}
	if keyData[0] != 0x02 && keyData[0] != 0x03 {
		return nil, errAt(ErrInvalidKey, pos, s,
			"extended public key does not hold a compressed public key (prefix %02x)", keyData[0])
	}
	if _, err := btcec.ParsePubKey(keyData); err != nil {
		return nil, errAt(ErrInvalidKey, pos, s, "extended public key is not on the curve: %v", err)
	}
	if depth == 0 && (binary.BigEndian.Uint32(parentFP) != 0 || child != 0) {
		return nil, errAt(ErrInvalidKey, pos, s,
			"extended key of depth 0 must have a zero parent fingerprint and child number")
	}
	return hdkeychain.NewExtendedKey(version[:], keyData, chainCode, parentFP, depth, child, false), nil
}

// parseKey parses a key expression (BIP 380 KEY, with BIP 389 multipath).
func parseKey(s string, pos int, ctx keyContext, net *chaincfg.Params) (*key, error) {
	k := &key{pos: pos, multiAt: -1}
	rest, restPos := s, pos
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return nil, errAt(ErrSyntax, pos, s, "key origin '[' has no closing ']'")
		}
		o, err := parseOrigin(s[1:end], pos)
		if err != nil {
			return nil, err
		}
		k.origin = o
		rest, restPos = s[end+1:], pos+end+1
		if strings.HasPrefix(rest, "[") {
			return nil, errAt(ErrSyntax, restPos, rest, "a key can have only one key origin")
		}
	}
	if i := strings.IndexAny(rest, "[]"); i >= 0 {
		if rest[i] == ']' && k.origin == nil {
			return nil, errAt(ErrSyntax, restPos+i, rest, "']' without a key origin start '['")
		}
		return nil, errAt(ErrSyntax, restPos+i, rest, "unexpected %q in key expression", rest[i])
	}
	if rest == "" {
		return nil, errAt(ErrSyntax, restPos, s, "missing key (a key origin must be followed by a key)")
	}
	parts := strings.Split(rest, "/")
	keyStr := parts[0]
	if keyStr == "" {
		return nil, errAt(ErrSyntax, restPos, rest, "missing key before derivation steps")
	}
	steps, err := parseSteps(parts[1:], restPos+len(keyStr))
	if err != nil {
		return nil, err
	}

	// Hex public keys.
	if isHex(keyStr) && (len(keyStr) == 64 || len(keyStr) == 66 || len(keyStr) == 130) {
		b, _ := hex.DecodeString(keyStr)
		if err := k.setHexKey(b, keyStr, restPos, ctx); err != nil {
			return nil, err
		}
		if len(steps) > 0 {
			return nil, errAt(ErrSyntax, steps[0].pos, steps[0].text,
				"derivation steps are only allowed after an extended public key")
		}
		return k, nil
	}

	// Extended public keys.
	ext, err := decodeExtended(keyStr, restPos, net)
	if err != nil {
		return nil, err
	}
	if ext == nil {
		if _, werr := btcutil.DecodeWIF(keyStr); werr == nil {
			return nil, &Error{Kind: ErrPrivateKey, Pos: restPos,
				Msg: "WIF private key: descriptors here are watch-only; give the public key instead (the key is not repeated in this message)"}
		}
		if isHex(keyStr) {
			return nil, errAt(ErrInvalidKey, restPos, keyStr,
				"hex public key must be 33 bytes (compressed), 65 bytes (uncompressed) or, in tr(), 32 bytes (x-only); got %d hex characters", len(keyStr))
		}
		return nil, errAt(ErrInvalidKey, restPos, keyStr, "not a hex public key or an extended public key (xpub/tpub)")
	}
	k.ext = ext
	if int(ext.Depth())+len(steps) > maxDepth {
		return nil, errAt(ErrInvalidKey, restPos, rest, "derivation goes deeper than BIP 32's %d levels", maxDepth)
	}
	for _, st := range steps {
		switch {
		case st.hardened || st.multiH:
			return nil, errAt(ErrHardenedDerivation, st.pos, st.text,
				"hardened step after an extended public key cannot be derived without the private key; "+
					"use the xpub at the last hardened step instead")
		case st.wildcard:
			k.wildcard = true
		case st.multi != nil:
			k.multiAt = len(k.path)
			k.multi = st.multi
			k.path = append(k.path, 0)
		default:
			k.path = append(k.path, st.value)
		}
	}
	if !k.isMultipath() {
		k.cache = &baseCache{}
	}
	return k, nil
}

func (k *key) setHexKey(b []byte, text string, pos int, ctx keyContext) error {
	switch len(b) {
	case 32:
		if ctx != ctxTaproot {
			return errAt(ErrUncompressedKey, pos, text, "x-only (32-byte) public keys are only allowed in tr()")
		}
		if _, err := schnorr.ParsePubKey(b); err != nil {
			return errAt(ErrInvalidKey, pos, text, "x-only public key is not on the curve")
		}
		k.xonly = true
	case 33:
		if b[0] != 0x02 && b[0] != 0x03 {
			return errAt(ErrInvalidKey, pos, text, "compressed public key must start with 02 or 03")
		}
		if _, err := btcec.ParsePubKey(b); err != nil {
			return errAt(ErrInvalidKey, pos, text, "public key is not on the curve")
		}
	case 65:
		if b[0] != 0x04 {
			return errAt(ErrInvalidKey, pos, text, "uncompressed public key must start with 04 (hybrid keys are not allowed)")
		}
		if _, err := btcec.ParsePubKey(b); err != nil {
			return errAt(ErrInvalidKey, pos, text, "public key is not on the curve")
		}
		if ctx != ctxLegacy {
			return errAt(ErrUncompressedKey, pos, text, "uncompressed public keys are not allowed in %s scripts", ctx)
		}
	}
	k.pub = b
	return nil
}

// base returns ext derived along the fixed path (the parent of ranged
// children, or the final key without a wildcard). It is computed on first use
// and cached, so that Parse stays cheap (a hostile descriptor cannot make it
// do thousands of EC operations) and Derive only does the last step.
// k must not be multipath.
func (k *key) base() (*hdkeychain.ExtendedKey, error) {
	c := k.cache
	c.once.Do(func() {
		cur := k.ext
		for _, v := range k.path {
			next, err := cur.Derive(v)
			if err != nil {
				c.err = deriveErr("key at position %d, step %d: %v", k.pos, v, err)
				return
			}
			cur = next
		}
		c.key = cur
	})
	return c.key, c.err
}

type baseCache struct {
	once sync.Once
	key  *hdkeychain.ExtendedKey
	err  error
}

// withPath returns a copy of k with its multipath step replaced by the i-th
// value (BIP 389 expansion).
func (k *key) withPath(i int) *key {
	if !k.isMultipath() {
		return k
	}
	c := *k
	c.path = append([]uint32(nil), k.path...)
	c.path[k.multiAt] = k.multi[i]
	c.multi, c.multiAt = nil, -1
	c.cache = &baseCache{}
	return &c
}

// derivedKey is a key of an expanded output script.
type derivedKey struct {
	pub         []byte // 33 bytes compressed, 65 uncompressed or 32 x-only
	fingerprint [4]byte
	path        []uint32
}

// derive returns the key at child index (ignored unless k has a wildcard).
// k must not be multipath.
func (k *key) derive(index uint32) (*derivedKey, error) {
	d := &derivedKey{}
	if k.origin != nil {
		d.fingerprint = k.origin.Fingerprint
		d.path = append(d.path, k.origin.Path...)
	}
	if k.ext == nil {
		d.pub = k.pub
		if k.origin == nil {
			// As Bitcoin Core: a bare key is its own origin.
			copy(d.fingerprint[:], btcutil.Hash160(k.pub)[:4])
		}
		return d, nil
	}
	if k.origin == nil {
		pk, _ := k.ext.ECPubKey()
		copy(d.fingerprint[:], btcutil.Hash160(pk.SerializeCompressed())[:4])
	}
	d.path = append(d.path, k.path...)
	cur, err := k.base()
	if err != nil {
		return nil, err
	}
	if k.wildcard {
		child, err := cur.Derive(index)
		if err != nil {
			return nil, deriveErr("child %d of key at position %d: %v", index, k.pos, err)
		}
		cur = child
		d.path = append(d.path, index)
	}
	pk, err := cur.ECPubKey()
	if err != nil {
		return nil, deriveErr("key at position %d: %v", k.pos, err)
	}
	d.pub = pk.SerializeCompressed()
	return d, nil
}

// HardenedMarker selects how String-like methods write hardened steps.
type HardenedMarker byte

const (
	// Apostrophe writes hardened steps as 84'. It is the default, as in
	// Bitcoin Core's getdescriptorinfo output for descriptors written with '.
	Apostrophe HardenedMarker = '\''
	// LetterH writes hardened steps as 84h, which needs no shell quoting.
	LetterH HardenedMarker = 'h'
)

func writeIndex(b *strings.Builder, v uint32, m HardenedMarker) {
	if v >= HardenedKeyStart {
		b.WriteString(strconv.FormatUint(uint64(v-HardenedKeyStart), 10))
		b.WriteByte(byte(m))
		return
	}
	b.WriteString(strconv.FormatUint(uint64(v), 10))
}

func (k *key) write(b *strings.Builder, m HardenedMarker) {
	if k.origin != nil {
		b.WriteByte('[')
		b.WriteString(hex.EncodeToString(k.origin.Fingerprint[:]))
		for _, v := range k.origin.Path {
			b.WriteByte('/')
			writeIndex(b, v, m)
		}
		b.WriteByte(']')
	}
	if k.ext == nil {
		b.WriteString(hex.EncodeToString(k.pub))
		return
	}
	b.WriteString(k.ext.String())
	for i, v := range k.path {
		b.WriteByte('/')
		if i == k.multiAt {
			b.WriteByte('<')
			for j, mv := range k.multi {
				if j > 0 {
					b.WriteByte(';')
				}
				writeIndex(b, mv, m)
			}
			b.WriteByte('>')
			continue
		}
		writeIndex(b, v, m)
	}
	if k.wildcard {
		b.WriteString("/*")
	}
}
