package descriptor

// Tests against the published vectors of BIP 32, 67, 84, 86 and 380-389.
// The vectors live in testdata/*.json, copied verbatim from the BIP texts;
// each file names its source. The code here is ours.
//
// This package is watch-only and refuses private keys, but many BIP 380-389
// vectors are written with WIF or xprv keys. For those the tests check
// both that the vector as published is refused with ErrPrivateKey and that its
// watch-only equivalent, built by watchOnly below (WIF -> hex public key;
// xprv -> the xpub at its last hardened step, as BIP 380 "Normalization of Key
// Expressions with Hardened Derivation" describes), produces the published
// scripts. Vectors whose wildcard or multipath step is itself hardened have
// no watch-only equivalent and are counted as such.

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

var mainnet = &chaincfg.MainNetParams

func loadJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// keyToken matches a base58 key (and the derivation after it) where a key
// expression starts: after '(', ',' or a key origin's ']'.
var keyToken = regexp.MustCompile(`([(,\]])([1-9A-HJ-NP-Za-km-z]{50,})((?:/[^,(){}]*)?)`)

// watchOnly rewrites the private keys of a published vector into their public
// equivalents. ok is false when that is impossible (hardened wildcard or
// hardened multipath value after the last private step).
func watchOnly(t testing.TB, desc string) (out string, changed, ok bool) {
	t.Helper()
	ok = true
	out = keyToken.ReplaceAllStringFunc(desc, func(m string) string {
		sm := keyToken.FindStringSubmatch(m)
		lead, tok, path := sm[1], sm[2], sm[3]
		if w, err := btcutil.DecodeWIF(tok); err == nil {
			changed = true
			if w.CompressPubKey {
				return lead + hex.EncodeToString(w.PrivKey.PubKey().SerializeCompressed()) + path
			}
			return lead + hex.EncodeToString(w.PrivKey.PubKey().SerializeUncompressed()) + path
		}
		ext, err := hdkeychain.NewKeyFromString(tok)
		if err != nil || !ext.IsPrivate() {
			return m
		}
		changed = true
		var steps []string
		if path != "" {
			steps = strings.Split(path[1:], "/")
		}
		last := -1
		for i, s := range steps {
			hardened := strings.HasSuffix(s, "'") || strings.HasSuffix(s, "h")
			if hardened && (strings.HasPrefix(s, "*") || strings.HasPrefix(s, "<")) {
				ok = false
				return m
			}
			if strings.HasPrefix(s, "<") && strings.ContainsAny(s, "'h") {
				ok = false
				return m
			}
			if hardened {
				last = i
			}
		}
		for _, s := range steps[:last+1] {
			num := strings.TrimRight(s, "'h")
			var v uint32
			for _, c := range num {
				v = v*10 + uint32(c-'0')
			}
			ext, err = ext.Derive(v + hdkeychain.HardenedKeyStart)
			if err != nil {
				t.Fatalf("deriving %s: %v", s, err)
			}
		}
		pub, err := ext.Neuter()
		if err != nil {
			t.Fatal(err)
		}
		rest := ""
		if last+1 < len(steps) {
			rest = "/" + strings.Join(steps[last+1:], "/")
		}
		return lead + pub.String() + rest
	})
	return out, changed, ok
}

// usesUnsupported reports whether a vector uses a script expression this
// package deliberately does not implement.
func usesUnsupported(desc string) bool {
	for _, f := range []string{"combo(", "raw(", "addr("} {
		if strings.Contains(desc, f) {
			return true
		}
	}
	// tr(KEY,TREE): a comma at depth 1 of tr(...).
	if strings.HasPrefix(desc, "tr(") {
		depth := 0
		for _, c := range desc {
			switch c {
			case '(', '{':
				depth++
			case ')', '}':
				depth--
			case ',':
				if depth == 1 {
					return true
				}
			}
		}
	}
	return false
}

type descriptorVectors struct {
	Source string `json:"source"`
	Valid  []struct {
		Descriptor string     `json:"descriptor"`
		Scripts    []string   `json:"scripts"`
		Children   [][]string `json:"children"`
	} `json:"valid"`
	Invalid []struct {
		Description string `json:"description"`
		Descriptor  string `json:"descriptor"`
	} `json:"invalid"`
}

// tally counts how the vectors of one file fared, for the test log.
type tally struct{ checked, privateOnly, hardenedXpub, unsupported, invalid int }

func (c tally) String() string {
	return "valid vectors matched: " + itoa(c.checked) +
		", need a private key (refused, no watch-only equivalent): " + itoa(c.privateOnly) +
		", hardened step after an xpub (refused on purpose): " + itoa(c.hardenedXpub) +
		", unsupported expression (refused with ErrUnsupported): " + itoa(c.unsupported) +
		", invalid vectors refused: " + itoa(c.invalid)
}

func itoa(i int) string { return strconv.Itoa(i) }

// checkValid runs one valid vector: the published text, then its watch-only
// equivalent, must give the published scripts for children 0, 1, 2...
func checkValid(t *testing.T, c *tally, desc string, scripts []string) {
	t.Helper()
	_, err := Parse(desc, mainnet)
	if usesUnsupported(desc) {
		if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrPrivateKey) {
			t.Errorf("%s: want ErrUnsupported, got %v", desc, err)
		}
		c.unsupported++
		return
	}
	wo, changed, ok := watchOnly(t, desc)
	if changed {
		if !errors.Is(err, ErrPrivateKey) {
			t.Errorf("%s: private key accepted or wrong error: %v", desc, err)
		}
		if err != nil && strings.Contains(err.Error(), "prv") {
			t.Errorf("error message repeats the private key: %v", err)
		}
	} else if err != nil {
		t.Errorf("%s: %v", desc, err)
		return
	}
	if !ok {
		c.privateOnly++
		return
	}
	d, err := Parse(wo, mainnet)
	if err != nil {
		t.Errorf("watch-only %s (from %s): %v", wo, desc, err)
		return
	}
	for i, want := range scripts {
		got, err := d.Derive(uint32(i))
		if err != nil {
			t.Errorf("%s child %d: %v", wo, i, err)
			continue
		}
		if hex.EncodeToString(got) != want {
			t.Errorf("%s child %d:\n got %x\nwant %s", wo, i, got, want)
		}
	}
	roundTrip(t, d)
	c.checked++
}

func roundTrip(t testing.TB, d *Descriptor) {
	t.Helper()
	s := d.String()
	d2, err := Parse(s, d.Network())
	if err != nil {
		t.Fatalf("Parse(String()) of %s: %v", s, err)
	}
	if d2.String() != s {
		t.Fatalf("round trip changed %s into %s", s, d2.String())
	}
	h, err := Parse(d.Format(LetterH), d.Network())
	if err != nil || h.String() != s {
		t.Fatalf("h form %s does not parse back to %s: %v", d.Format(LetterH), s, err)
	}
}

// checkInvalid: the vector must be refused with the kind the BIP's
// description implies; when it holds private keys, the published text may be
// refused for that first, and its watch-only equivalent must then be refused
// for the described reason.
func checkInvalid(t *testing.T, c *tally, desc, why string, want error) {
	t.Helper()
	_, err := Parse(desc, mainnet)
	if err == nil {
		t.Errorf("%s (%s): accepted", desc, why)
		return
	}
	c.invalid++
	unsup := usesUnsupported(desc)
	if unsup && errors.Is(err, ErrUnsupported) {
		return
	}
	wo, changed, ok := watchOnly(t, desc)
	if changed {
		if !errors.Is(err, want) && !errors.Is(err, ErrPrivateKey) {
			t.Errorf("%s (%s): want %v or %v, got %v", desc, why, want, ErrPrivateKey, err)
		}
		if !ok {
			return
		}
		_, err = Parse(wo, mainnet)
		if unsup && errors.Is(err, ErrUnsupported) {
			return
		}
	}
	if !errors.Is(err, want) {
		t.Errorf("%s (%s): want %v, got %v", wo, why, want, err)
	}
}

func runDescriptorBIP(t *testing.T, file string, invalidKinds map[string]error) {
	var v descriptorVectors
	loadJSON(t, file, &v)
	var c tally
	for _, vec := range v.Valid {
		scripts := vec.Scripts
		if len(vec.Children) > 0 { // combo(): several scripts per child
			for _, ch := range vec.Children {
				scripts = append(scripts, ch[0])
			}
		}
		checkValid(t, &c, vec.Descriptor, scripts)
	}
	for _, vec := range v.Invalid {
		want, ok := invalidKinds[vec.Description]
		if !ok {
			t.Fatalf("no expected error kind for %q", vec.Description)
		}
		checkInvalid(t, &c, vec.Descriptor, vec.Description, want)
	}
	t.Logf("%s (%s): %v", file, v.Source, c)
}

func TestBIP381(t *testing.T) {
	runDescriptorBIP(t, "bip381.json", map[string]error{
		"pk() only accepts key expressions":    ErrNesting,
		"pkh() only accepts key expressions":   ErrNesting,
		"sh() only accepts script expressions": ErrNesting,
		"sh() is top level only":               ErrNesting,
	})
}

func TestBIP382(t *testing.T) {
	runDescriptorBIP(t, "bip382.json", map[string]error{
		"Uncompressed public key in wpkh()":    ErrUncompressedKey,
		"Uncompressed public keys under wsh()": ErrUncompressedKey,
		"wpkh() nested in wsh()":               ErrNesting,
		"wsh() nested in wsh()":                ErrNesting,
		"Script in wpkh()":                     ErrNesting,
		"Key in wsh()":                         ErrNesting,
	})
}

func TestBIP383(t *testing.T) {
	runDescriptorBIP(t, "bip383.json", map[string]error{
		"More than 15 keys in P2SH multisig": ErrTooManyKeys,
		"Invalid threshold":                  ErrThreshold,
		"Threshold of 0":                     ErrThreshold,
		"Threshold larger than keys":         ErrThreshold,
	})
}

func TestBIP384(t *testing.T) {
	// combo() is not supported: every vector must be refused.
	runDescriptorBIP(t, "bip384.json", map[string]error{
		"combo() in sh":     ErrUnsupported,
		"combo() in wsh":    ErrUnsupported,
		"Script in combo()": ErrUnsupported,
	})
}

func TestBIP385(t *testing.T) {
	// raw() and addr() are not supported: every vector must be refused.
	runDescriptorBIP(t, "bip385.json", map[string]error{
		"Non-hex script":     ErrUnsupported,
		"Invalid address":    ErrUnsupported,
		"raw nested in sh":   ErrUnsupported,
		"raw nested in wsh":  ErrUnsupported,
		"addr nested in sh":  ErrUnsupported,
		"addr nested in wsh": ErrUnsupported,
	})
}

func TestBIP386(t *testing.T) {
	runDescriptorBIP(t, "bip386.json", map[string]error{
		"Uncompressed private key": ErrUncompressedKey,
		"Uncompressed public key":  ErrUncompressedKey,
		"tr() nested in wsh":       ErrNesting,
		"tr() nested in sh":        ErrNesting,
	})
}

func TestBIP389(t *testing.T) {
	var v struct {
		Source string `json:"source"`
		Valid  []struct {
			Descriptor string   `json:"descriptor"`
			Expansions []string `json:"expansions"`
		} `json:"valid"`
		Invalid []struct {
			Description string `json:"description"`
			Descriptor  string `json:"descriptor"`
		} `json:"invalid"`
	}
	loadJSON(t, "bip389.json", &v)
	var c tally
	for _, vec := range v.Valid {
		wo, changed, ok := watchOnly(t, vec.Descriptor)
		_, err := Parse(vec.Descriptor, mainnet)
		if changed != errors.Is(err, ErrPrivateKey) || (!changed && err != nil) {
			t.Errorf("%s: %v", vec.Descriptor, err)
		}
		if !ok {
			c.privateOnly++
			continue
		}
		d, err := Parse(wo, mainnet)
		if err != nil {
			t.Errorf("%s: %v", wo, err)
			continue
		}
		if !d.IsMultipath() {
			t.Errorf("%s: IsMultipath false", wo)
		}
		if _, err := d.Derive(0); !errors.Is(err, ErrDerive) {
			t.Errorf("%s: Derive on a multipath descriptor: want ErrDerive, got %v", wo, err)
		}
		got := d.Multipath()
		if len(got) != len(vec.Expansions) {
			t.Errorf("%s: %d expansions, want %d", wo, len(got), len(vec.Expansions))
			continue
		}
		for i, e := range vec.Expansions {
			ewo, _, _ := watchOnly(t, e)
			want, err := Parse(ewo, mainnet)
			if err != nil {
				t.Errorf("expansion %s: %v", ewo, err)
				continue
			}
			if got[i].String() != want.String() {
				t.Errorf("%s expansion %d:\n got %s\nwant %s", wo, i, got[i], want)
			}
			if got[i].IsMultipath() {
				t.Errorf("expansion %s still multipath", got[i])
			}
		}
		roundTrip(t, d)
		c.checked++
	}
	kinds := map[string]error{
		"Multiple multipath specifiers":              ErrMultipath,
		"Multipath specifier in origin":              ErrMultipath,
		"Multipath specifiers of mismatched lengths": ErrMultipath,
		"Empty multipath specifier":                  ErrMultipath,
		"Missing multipath start":                    ErrMultipath,
		"Missing multipath end":                      ErrMultipath,
		"Missing index in multipath specifier":       ErrMultipath,
	}
	for _, vec := range v.Invalid {
		want, ok := kinds[vec.Description]
		if !ok {
			t.Fatalf("no expected error kind for %q", vec.Description)
		}
		checkInvalid(t, &c, vec.Descriptor, vec.Description, want)
	}
	t.Logf("bip389.json (%s): %v", v.Source, c)
}

func TestBIP380Checksum(t *testing.T) {
	var v struct {
		Source   string `json:"source"`
		Checksum []struct {
			Description string `json:"description"`
			Descriptor  string `json:"descriptor"`
		} `json:"checksum"`
	}
	loadJSON(t, "bip380.json", &v)
	// The BIP lists these without verdicts; the descriptions imply them.
	want := map[string]error{
		"Valid checksum":                nil,
		"No checksum":                   nil,
		"Missing checksum":              ErrChecksum,
		"Too long checksum (9 chars)":   ErrChecksum,
		"Too short checksum (7 chars)":  ErrChecksum,
		"Error in payload":              ErrChecksum,
		"Error in checksum":             ErrChecksum,
		"Invalid characters in payload": ErrSyntax,
	}
	for _, vec := range v.Checksum {
		w, ok := want[vec.Description]
		if !ok {
			t.Fatalf("no expectation for %q", vec.Description)
		}
		_, _, err := SplitChecksum(vec.Descriptor)
		if !errors.Is(err, w) || (w == nil && err != nil) {
			t.Errorf("SplitChecksum(%q) (%s): want %v, got %v", vec.Descriptor, vec.Description, w, err)
		}
		// Parse checks the checksum before anything else; raw() itself is
		// not supported.
		_, err = Parse(vec.Descriptor, mainnet)
		if w == nil {
			w = ErrUnsupported
		}
		if !errors.Is(err, w) {
			t.Errorf("Parse(%q) (%s): want %v, got %v", vec.Descriptor, vec.Description, w, err)
		}
	}
	if got, err := Checksum("raw(deadbeef)"); err != nil || got != "89f8spxm" {
		t.Errorf("Checksum(raw(deadbeef)) = %q, %v; want 89f8spxm", got, err)
	}
	t.Logf("bip380.json checksum vectors: %d (%s)", len(v.Checksum), v.Source)
}

func TestBIP380KeyExpressions(t *testing.T) {
	var v struct {
		Source    string `json:"source"`
		ValidKeys []struct {
			Description string `json:"description"`
			Key         string `json:"key"`
		} `json:"valid_keys"`
		InvalidKeys []struct {
			Description string `json:"description"`
			Key         string `json:"key"`
		} `json:"invalid_keys"`
	}
	loadJSON(t, "bip380.json", &v)
	var c tally
	for _, vec := range v.ValidKeys {
		desc := "pkh(" + vec.Key + ")"
		_, err := Parse(desc, mainnet)
		wo, changed, ok := watchOnly(t, desc)
		switch {
		case changed:
			if !errors.Is(err, ErrPrivateKey) {
				t.Errorf("%s: want ErrPrivateKey, got %v", desc, err)
			}
		case strings.HasPrefix(vec.Description, "Extended public key") && strings.Contains(vec.Description, "hardened derivation"):
			// Valid BIP 380 syntax, but a watch-only parser can never derive
			// it: refused on purpose.
			if !errors.Is(err, ErrHardenedDerivation) {
				t.Errorf("%s: want ErrHardenedDerivation, got %v", desc, err)
			}
			c.hardenedXpub++
			continue
		case err != nil:
			t.Errorf("%s (%s): %v", desc, vec.Description, err)
			continue
		}
		if !ok {
			c.privateOnly++
			continue
		}
		d, err := Parse(wo, mainnet)
		if err != nil {
			t.Errorf("watch-only %s: %v", wo, err)
			continue
		}
		roundTrip(t, d)
		c.checked++
	}
	kinds := map[string]error{
		"Children indicator in key origin":     ErrSyntax,
		"Trailing slash in key origin":         ErrSyntax,
		"Too short fingerprint":                ErrSyntax,
		"Too long fingerprint":                 ErrSyntax,
		"Invalid hardened indicators":          ErrSyntax,
		"Private key with derivation":          ErrSyntax,
		"Private key with derivation children": ErrSyntax,
		"Derivation index out of range":        ErrSyntax,
		"Invalid derivation index":             ErrSyntax,
		"Multiple key origins":                 ErrSyntax,
		"Missing key origin start":             ErrSyntax,
		"Non hex fingerprint":                  ErrSyntax,
		"Key origin with no public key":        ErrSyntax,
	}
	for _, vec := range v.InvalidKeys {
		want, ok := kinds[vec.Description]
		if !ok {
			t.Fatalf("no expected error kind for %q", vec.Description)
		}
		checkInvalid(t, &c, "pkh("+vec.Key+")", vec.Description, want)
	}
	t.Logf("bip380.json key expressions (%s): %v", v.Source, c)
}

type bip32Vectors struct {
	Source  string `json:"source"`
	Vectors []struct {
		Vector int `json:"vector"`
		Chains []struct {
			Chain string `json:"chain"`
			XPub  string `json:"xpub"`
			XPrv  string `json:"xprv"`
		} `json:"chains"`
	} `json:"vectors"`
	InvalidKeys []struct {
		Key         string `json:"key"`
		Description string `json:"description"`
	} `json:"invalid_keys"`
}

// TestBIP32 checks that every published xpub parses and that each unhardened
// step between consecutive published chains is derived to the published
// child's public key; hardened steps must be refused.
func TestBIP32(t *testing.T) {
	var v bip32Vectors
	loadJSON(t, "bip32.json", &v)
	pubSteps, hardSteps, keys := 0, 0, 0
	for _, vec := range v.Vectors {
		for i, ch := range vec.Chains {
			d, err := Parse("pkh("+ch.XPub+")", mainnet)
			if err != nil {
				t.Errorf("vector %d %s: %v", vec.Vector, ch.Chain, err)
				continue
			}
			keys++
			if _, err := Parse("pkh("+ch.XPrv+")", mainnet); !errors.Is(err, ErrPrivateKey) {
				t.Errorf("vector %d %s xprv: want ErrPrivateKey, got %v", vec.Vector, ch.Chain, err)
			}
			wantPub := extPub(t, ch.XPub)
			o, err := d.Expand(0)
			if err != nil || hex.EncodeToString(o.Keys[0].PubKey) != wantPub {
				t.Errorf("vector %d %s: key %x, %v; want %s", vec.Vector, ch.Chain, o.Keys[0].PubKey, err, wantPub)
			}
			if i+1 == len(vec.Chains) {
				continue
			}
			next := vec.Chains[i+1]
			stepText := strings.TrimPrefix(next.Chain, ch.Chain+"/")
			if strings.HasSuffix(stepText, "H") {
				_, err := Parse("pkh("+ch.XPub+"/"+strings.TrimSuffix(stepText, "H")+"h)", mainnet)
				if !errors.Is(err, ErrHardenedDerivation) {
					t.Errorf("vector %d %s: want ErrHardenedDerivation, got %v", vec.Vector, next.Chain, err)
				}
				hardSteps++
				continue
			}
			// Fixed step, and the same step as a wildcard index.
			for _, desc := range []string{"pkh(" + ch.XPub + "/" + stepText + ")", "pkh(" + ch.XPub + "/*)"} {
				d, err := Parse(desc, mainnet)
				if err != nil {
					t.Fatal(err)
				}
				idx := uint32(0)
				if d.IsRange() {
					idx = uint32(atoi(t, stepText))
				}
				o, err := d.Expand(idx)
				if err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(o.Keys[0].PubKey); got != extPub(t, next.XPub) {
					t.Errorf("vector %d %s via %s[%d]: got %s", vec.Vector, next.Chain, desc, idx, got)
				}
			}
			pubSteps++
		}
	}
	for _, vec := range v.InvalidKeys {
		want := ErrInvalidKey
		// This package refuses any private key before looking further.
		if strings.HasPrefix(vec.Key, "xprv") && vec.Description != "invalid checksum" {
			want = ErrPrivateKey
		}
		if _, err := Parse("pkh("+vec.Key+")", mainnet); !errors.Is(err, want) {
			t.Errorf("%s (%s): want %v, got %v", vec.Key, vec.Description, want, err)
		}
	}
	t.Logf("bip32.json (%s): %d xpubs parsed, %d public derivation steps matched, %d hardened steps refused, %d invalid keys refused",
		v.Source, keys, pubSteps, hardSteps, len(v.InvalidKeys))
}

func extPub(t testing.TB, xpub string) string {
	t.Helper()
	k, err := hdkeychain.NewKeyFromString(xpub)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := k.ECPubKey()
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(pk.SerializeCompressed())
}

func atoi(t testing.TB, s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// reencode swaps the version bytes of a serialized extended key (SLIP-132
// zpub -> xpub), keeping everything else.
func reencode(t testing.TB, key string, version [4]byte) string {
	t.Helper()
	b := base58.Decode(key)
	if len(b) != 82 {
		t.Fatalf("not an extended key: %s", key)
	}
	payload := append(version[:], b[4:78]...)
	return base58.Encode(append(payload, chainhashDouble(payload)[:4]...))
}

type bipRecords struct {
	Source  string              `json:"source"`
	Records []map[string]string `json:"records"`
}

// TestBIP84 derives the published P2WPKH addresses from the published
// account key, as wpkh(xpub/<0;1>/*).
func TestBIP84(t *testing.T) {
	var v bipRecords
	loadJSON(t, "bip84.json", &v)
	zpub := v.Records[1]["xpub"]
	// Descriptors carry the script type themselves; SLIP-132 zpubs are refused.
	if _, err := Parse("wpkh("+zpub+"/0/*)", mainnet); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "zpub") {
		t.Errorf("zpub: want ErrInvalidKey naming zpub, got %v", err)
	}
	xpub := reencode(t, zpub, chaincfg.MainNetParams.HDPublicKeyID)
	d, err := Parse("wpkh([73c5da0a/84h/0h/0h]"+xpub+"/<0;1>/*)", mainnet)
	if err != nil {
		t.Fatal(err)
	}
	recv, change := d.Multipath()[0], d.Multipath()[1]
	cases := []struct {
		rec  map[string]string
		d    *Descriptor
		idx  uint32
		path string
	}{
		{v.Records[2], recv, 0, "0/0"},
		{v.Records[3], recv, 1, "0/1"},
		{v.Records[4], change, 0, "1/0"},
	}
	for _, c := range cases {
		if !strings.HasSuffix(c.rec["comment"], c.path) {
			t.Fatalf("record %q is not for %s", c.rec["comment"], c.path)
		}
		addr, err := c.d.Address(c.idx, nil)
		if err != nil || addr.EncodeAddress() != c.rec["address"] {
			t.Errorf("%s: address %v, %v; want %s", c.rec["comment"], addr, err, c.rec["address"])
		}
		o, _ := c.d.Expand(c.idx)
		if got := hex.EncodeToString(o.Keys[0].PubKey); got != c.rec["pubkey"] {
			t.Errorf("%s: pubkey %s, want %s", c.rec["comment"], got, c.rec["pubkey"])
		}
		wantPath := []uint32{84 + HardenedKeyStart, HardenedKeyStart, HardenedKeyStart, uint32(atoi(t, c.path[:1])), c.idx}
		if !slicesEqual(o.Keys[0].Origin.Path, wantPath) || hex.EncodeToString(o.Keys[0].Origin.Fingerprint[:]) != "73c5da0a" {
			t.Errorf("%s: origin %x %v", c.rec["comment"], o.Keys[0].Origin.Fingerprint, o.Keys[0].Origin.Path)
		}
	}
	t.Logf("bip84.json (%s): 3 addresses matched", v.Source)
}

// TestBIP86 derives the published taproot key-path outputs from the published
// account xpub (tr(xpub/<0;1>/*)) and from each address's own xpub (tr(xpub)).
func TestBIP86(t *testing.T) {
	var v bipRecords
	loadJSON(t, "bip86.json", &v)
	d, err := Parse("tr("+v.Records[1]["xpub"]+"/<0;1>/*)", mainnet)
	if err != nil {
		t.Fatal(err)
	}
	recv, change := d.Multipath()[0], d.Multipath()[1]
	n := 0
	for _, c := range []struct {
		rec map[string]string
		d   *Descriptor
		idx uint32
	}{{v.Records[2], recv, 0}, {v.Records[3], recv, 1}, {v.Records[4], change, 0}} {
		single, err := Parse("tr("+c.rec["xpub"]+")", mainnet)
		if err != nil {
			t.Fatal(err)
		}
		for _, dd := range []struct {
			d   *Descriptor
			idx uint32
		}{{c.d, c.idx}, {single, 0}} {
			o, err := dd.d.Expand(dd.idx)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(o.Script); got != c.rec["scriptPubKey"] {
				t.Errorf("%s: script %s, want %s", c.rec["comment"], got, c.rec["scriptPubKey"])
			}
			if got := hex.EncodeToString(o.Script[2:]); got != c.rec["output_key"] {
				t.Errorf("%s: output key %s, want %s", c.rec["comment"], got, c.rec["output_key"])
			}
			if got := hex.EncodeToString(o.Keys[0].PubKey); got != c.rec["internal_key"] {
				t.Errorf("%s: internal key %s, want %s", c.rec["comment"], got, c.rec["internal_key"])
			}
			addr, err := dd.d.Address(dd.idx, nil)
			if err != nil || addr.EncodeAddress() != c.rec["address"] {
				t.Errorf("%s: address %v, %v; want %s", c.rec["comment"], addr, err, c.rec["address"])
			}
		}
		n++
	}
	t.Logf("bip86.json (%s): %d outputs matched (ranged and single-key forms)", v.Source, n)
}

// TestBIP67 checks sortedmulti() against the published sorted multisig
// vectors: key order, redeem script and P2SH address.
func TestBIP67(t *testing.T) {
	var v struct {
		Source  string `json:"source"`
		Vectors []struct {
			Vector  int      `json:"vector"`
			List    []string `json:"list"`
			Sorted  []string `json:"sorted"`
			Script  string   `json:"script"`
			Address string   `json:"address"`
		} `json:"vectors"`
	}
	loadJSON(t, "bip67.json", &v)
	for _, vec := range v.Vectors {
		pubs := make([][]byte, len(vec.List))
		for i, k := range vec.List {
			pubs[i], _ = hex.DecodeString(k)
		}
		SortKeys(pubs)
		for i := range pubs {
			if hex.EncodeToString(pubs[i]) != vec.Sorted[i] {
				t.Errorf("vector %d: SortKeys position %d = %x, want %s", vec.Vector, i, pubs[i], vec.Sorted[i])
			}
		}
		sorted, err := Parse("sh(sortedmulti(2,"+strings.Join(vec.List, ",")+"))", mainnet)
		if err != nil {
			t.Errorf("vector %d: %v", vec.Vector, err)
			continue
		}
		o, err := sorted.Expand(0)
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(o.RedeemScript) != vec.Script {
			t.Errorf("vector %d: redeem script %x, want %s", vec.Vector, o.RedeemScript, vec.Script)
		}
		addr, err := sorted.Address(0, nil)
		if err != nil || addr.EncodeAddress() != vec.Address {
			t.Errorf("vector %d: address %v, %v; want %s", vec.Vector, addr, err, vec.Address)
		}
		// multi() keeps the written order: with the sorted list it is the same script.
		plain, err := Parse("sh(multi(2,"+strings.Join(vec.Sorted, ",")+"))", mainnet)
		if err != nil {
			t.Fatal(err)
		}
		if a, _ := plain.Address(0, nil); a == nil || a.EncodeAddress() != vec.Address {
			t.Errorf("vector %d: multi() with sorted keys gives %v", vec.Vector, a)
		}
	}
	t.Logf("bip67.json (%s): %d vectors matched", v.Source, len(v.Vectors))
}
