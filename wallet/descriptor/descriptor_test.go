package descriptor

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// Keys from the BIP 32 / BIP 380 vectors, reused by the specification tables.
const (
	xpubA = "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL" // depth 4
	xpubB = "xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y"
	xprvA = "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc"
	wif   = "L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1"
	pubC  = "03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd"
	pubU  = "04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c7709c02559e3aa73aa03918ba2d492eea75abea235"
	pubX  = "a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd"
	zpub  = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)

// tpubA is xpubA re-encoded for the test networks.
var tpubA = withVersion(xpubA, chaincfg.RegressionNetParams.HDPublicKeyID)

func withVersion(key string, v [4]byte) string {
	b := base58.Decode(key)
	payload := append(v[:], b[4:78]...)
	return base58.Encode(append(payload, chainhash.DoubleHashB(payload)[:4]...))
}

// compressed public keys from BIP 383's 16-of-16 vector.
var keys16 = strings.Split("03669b8afcec803a0d323e9a17f3ea8e68e8abe5a278020a929adbec52421adbd0,0260b2003c386519fc9eadf2b5cf124dd8eea4c4e68d5e154050a9346ea98ce600,0362a74e399c39ed5593852a30147f2959b56bb827dfa3e60e464b02ccf87dc5e8,0261345b53de74a4d721ef877c255429961b7e43714171ac06168d7e08c542a8b8,02da72e8b46901a65d4374fe6315538d8f368557dda3a1dcf9ea903f3afe7314c8,0318c82dd0b53fd3a932d16e0ba9e278fcc937c582d5781be626ff16e201f72286,0297ccef1ef99f9d73dec9ad37476ddb232f1238aff877af19e72ba04493361009,02e502cfd5c3f972fe9a3e2a18827820638f96b6f347e54d63deb839011fd5765d,03e687710f0e3ebe81c1037074da939d409c0025f17eb86adb9427d28f0f7ae0e9,02c04d3a5274952acdbc76987f3184b346a483d43be40874624b29e3692c1df5af,02ed06e0f418b5b43a7ec01d1d7d27290fa15f75771cb69b642a51471c29c84acd,036d46073cbb9ffee90473f3da429abc8de7f8751199da44485682a989a4bebb24,02f5d1ff7c9029a80a4e36b9a5497027ef7f3e73384a4a94fbfe7c4e9164eec8bc,02e41deffd1b7cce11cde209a781adcffdabd1b91c0ba0375857a2bfd9302419f3,02d76625f7956a7fc505ab02556c23ee72d832f1bac391bcd2d3abce5710a13d06,0399eb0a5487515802dc14544cf10b3666623762fbed2ec38a3975716e2c29c232", ",")

func keysN(n int, k string) string {
	var ks []string
	for i := range n {
		if k != "" {
			ks = append(ks, k)
		} else {
			ks = append(ks, keys16[i%len(keys16)])
		}
	}
	return strings.Join(ks, ",")
}

func noSum(s string) string { return s[:strings.IndexByte(s, '#')] }

// TestParseAccepts: what is accepted, and the normal form it is written back in.
func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, in, want string // want: normal form without checksum; "" = same as in
		net            *chaincfg.Params
	}{
		{"hex key is written in lower case", "pkh(" + strings.ToUpper(pubC) + ")", "pkh(" + pubC + ")", nil},
		{"uncompressed key in pkh", "pkh(" + pubU + ")", "", nil},
		{"uncompressed keys in sh(multi)", "sh(multi(1," + pubU + "," + pubC + "))", "", nil},
		{"origin with h and ' normalises to '", "wpkh([DEADBEEF/84h/0'/0h]" + xpubA + "/0/*)", "wpkh([deadbeef/84'/0'/0']" + xpubA + "/0/*)", nil},
		{"leading zeros are dropped", "wpkh(" + xpubA + "/007/*)", "wpkh(" + xpubA + "/7/*)", nil},
		{"threshold leading zero", "wsh(multi(02," + pubC + "," + keys16[0] + "))", "wsh(multi(2," + pubC + "," + keys16[0] + "))", nil},
		{"valid checksum is accepted", "pkh(" + pubC + ")#" + mustChecksum("pkh("+pubC+")"), "pkh(" + pubC + ")", nil},
		{"BIP 389 receive/change", "wpkh(" + xpubA + "/<0;1>/*)", "", nil},
		{"multipath anywhere in the path", "wpkh(" + xpubA + "/7/<2;5;9>/3/*)", "", nil},
		{"sh(wsh(sortedmulti)) multipath in lockstep", "sh(wsh(sortedmulti(2," + xpubA + "/<0;1>/*," + xpubB + "/<0;1>/*)))", "", nil},
		{"tr with compressed key", "tr(" + pubC + ")", "", nil},
		{"tr with x-only key", "tr(" + pubX + ")", "", nil},
		{"tr ranged", "tr([01234567/86'/0'/0']" + xpubA + "/0/*)", "", nil},
		{"wsh multi with 20 keys", "wsh(multi(20," + keysN(20, "") + "))", "", nil},
		{"sh multi with 15 compressed keys", "sh(multi(15," + keysN(15, "") + "))", "", nil},
		{"sh multi with 7 uncompressed keys", "sh(multi(1," + keysN(7, pubU) + "))", "", nil},
		{"bare multi with 3 keys", "multi(1," + keysN(3, "") + ")", "", nil},
		{"tpub on regtest", "wpkh(" + tpubA + "/0/*)", "", &chaincfg.RegressionNetParams},
		{"tpub on signet", "wpkh(" + tpubA + "/0/*)", "", &chaincfg.SigNetParams},
		{"hex keys fit any network", "wpkh(" + pubC + ")", "", &chaincfg.RegressionNetParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := tt.net
			if net == nil {
				net = mainnet
			}
			d, err := Parse(tt.in, net)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if got := noSum(d.String()); got != want {
				t.Errorf("String:\n got %s\nwant %s", got, want)
			}
			roundTrip(t, d)
		})
	}
}

func mustChecksum(s string) string {
	c, err := Checksum(s)
	if err != nil {
		panic(err)
	}
	return c
}

// TestParseRefuses: malformed or unsupported descriptors, each with the kind
// of error, and where useful the position and a phrase of the message.
func TestParseRefuses(t *testing.T) {
	good := "pkh(" + pubC + ")"
	tests := []struct {
		name string
		in   string
		net  *chaincfg.Params
		kind error
		pos  int    // -1: don't check
		msg  string // substring of Error()
	}{
		// Checksum.
		{"wrong checksum names both", good + "#aaaaaaaa", nil, ErrChecksum, len(good) + 1, "expected " + mustChecksum(good) + ", got aaaaaaaa"},
		{"empty checksum", good + "#", nil, ErrChecksum, -1, "missing checksum"},
		{"short checksum", good + "#abc", nil, ErrChecksum, -1, "must be 8 characters"},
		{"two checksums", good + "#" + mustChecksum(good) + "#" + mustChecksum(good), nil, ErrChecksum, -1, ""},
		{"character outside the set", "pkh(é)", nil, ErrSyntax, 4, "character set"},

		// Private keys: refused, and never echoed.
		{"WIF", "wpkh(" + wif + ")", nil, ErrPrivateKey, 5, "watch-only"},
		{"xprv", "wpkh(" + xprvA + "/0/*)", nil, ErrPrivateKey, 5, "watch-only"},
		{"xprv with origin", "wpkh([deadbeef/1]" + xprvA + ")", nil, ErrPrivateKey, 17, ""},
		{"zprv", "wpkh(" + withVersion(xprvA, [4]byte{0x04, 0xb2, 0x43, 0x0c}) + ")", nil, ErrPrivateKey, -1, ""},

		// Hardened steps after a public key.
		{"hardened step after xpub", "wpkh(" + xpubA + "/0/1h/*)", nil, ErrHardenedDerivation, 5 + len(xpubA) + 3, `"1h"`},
		{"hardened step with '", "wpkh(" + xpubA + "/1'/*)", nil, ErrHardenedDerivation, -1, ""},
		{"hardened wildcard", "wpkh(" + xpubA + "/0/*h)", nil, ErrHardenedDerivation, -1, `"*h"`},
		{"hardened multipath value", "wpkh(" + xpubA + "/<0h;1>/*)", nil, ErrHardenedDerivation, -1, ""},

		// Networks.
		{"mainnet xpub on regtest", "wpkh(" + xpubA + "/0/*)", &chaincfg.RegressionNetParams, ErrNetwork, 5, "is for mainnet, but the descriptor is parsed for regtest"},
		{"tpub on mainnet", "wpkh(" + tpubA + "/0/*)", nil, ErrNetwork, 5, "parsed for mainnet"},
		{"zpub", "wpkh(" + zpub + "/0/*)", nil, ErrInvalidKey, 5, "zpub (SLIP-132)"},

		// Key types.
		{"uncompressed in wpkh", "wpkh(" + pubU + ")", nil, ErrUncompressedKey, 5, "segwit v0"},
		{"uncompressed in sh(wpkh)", "sh(wpkh(" + pubU + "))", nil, ErrUncompressedKey, 8, ""},
		{"uncompressed under wsh", "wsh(multi(1," + pubU + "))", nil, ErrUncompressedKey, 12, ""},
		{"uncompressed under sh(wsh)", "sh(wsh(pkh(" + pubU + ")))", nil, ErrUncompressedKey, -1, ""},
		{"uncompressed in tr", "tr(" + pubU + ")", nil, ErrUncompressedKey, -1, "taproot"},
		{"x-only outside tr", "pkh(" + pubX + ")", nil, ErrUncompressedKey, -1, "only allowed in tr()"},
		{"hybrid key", "pkh(06" + pubU[2:] + ")", nil, ErrInvalidKey, -1, "hybrid"},
		{"key not on the curve", "pkh(02" + strings.Repeat("00", 32) + ")", nil, ErrInvalidKey, -1, "curve"},
		{"wrong hex length", "pkh(" + pubC + "00)", nil, ErrInvalidKey, -1, "33 bytes"},
		{"garbage key", "pkh(notakey)", nil, ErrInvalidKey, 4, "not a hex public key"},
		{"mistyped xpub", "pkh(" + xpubA[:len(xpubA)-1] + "M)", nil, ErrInvalidKey, -1, "checksum"},

		// Key expression syntax.
		{"derivation after hex key", "wpkh(" + pubC + "/0)", nil, ErrSyntax, -1, "only allowed after an extended"},
		{"index out of range", "wpkh(" + xpubA + "/2147483648)", nil, ErrSyntax, -1, "out of range"},
		{"H is not a hardened marker", "wpkh([deadbeef/0H]" + xpubA + ")", nil, ErrSyntax, -1, ""},
		{"wildcard not last", "wpkh(" + xpubA + "/*/0)", nil, ErrSyntax, -1, "last"},
		{"trailing slash", "wpkh(" + xpubA + "/0/)", nil, ErrSyntax, -1, "empty"},
		{"deeper than 255", "wpkh(" + xpubA + strings.Repeat("/0", 251) + "/*)", nil, ErrInvalidKey, -1, "255"},
		{"two origins", "wpkh([deadbeef][deadbeef]" + xpubA + ")", nil, ErrSyntax, -1, "one key origin"},

		// Multipath.
		{"two multipath steps", "wpkh(" + xpubA + "/<0;1>/<2;3>/*)", nil, ErrMultipath, -1, "only one"},
		{"multipath lengths differ", "wsh(multi(1," + xpubA + "/<0;1>/*," + xpubB + "/<0;1;2>/*))", nil, ErrMultipath, -1, "same number"},
		{"duplicate multipath value", "wpkh(" + xpubA + "/<1;1>/*)", nil, ErrMultipath, -1, "duplicate"},
		{"single multipath value", "wpkh(" + xpubA + "/<1>/*)", nil, ErrMultipath, -1, "at least two"},
		{"multipath in origin", "wpkh([deadbeef/<0;1>]" + xpubA + ")", nil, ErrMultipath, -1, ""},

		// multi / sortedmulti.
		{"threshold 0", "wsh(multi(0," + pubC + "))", nil, ErrThreshold, -1, ""},
		{"threshold above n", "wsh(sortedmulti(3," + keysN(2, "") + "))", nil, ErrThreshold, -1, "between 1 and"},
		{"threshold not a number", "wsh(multi(x," + pubC + "))", nil, ErrThreshold, 10, ""},
		{"bare multi over 3 keys", "multi(1," + keysN(4, "") + ")", nil, ErrTooManyKeys, -1, "at most 3"},
		{"wsh multi over 20 keys", "wsh(multi(1," + keysN(21, "") + "))", nil, ErrTooManyKeys, -1, "at most 20"},
		{"sh multi over 15 compressed keys", "sh(multi(1," + keysN(16, "") + "))", nil, ErrTooManyKeys, -1, "520"},
		{"sh multi over 7 uncompressed keys", "sh(multi(1," + keysN(8, pubU) + "))", nil, ErrTooManyKeys, -1, "520"},
		{"multi without keys", "wsh(multi(1))", nil, ErrSyntax, -1, ""},

		// Nesting.
		{"wpkh inside wsh", "wsh(wpkh(" + pubC + "))", nil, ErrNesting, 4, "wpkh()"},
		{"sh inside sh", "sh(sh(pkh(" + pubC + ")))", nil, ErrNesting, 3, "top level"},
		{"wsh inside wsh", "wsh(wsh(pkh(" + pubC + ")))", nil, ErrNesting, 4, ""},
		{"tr inside sh", "sh(tr(" + pubC + "))", nil, ErrNesting, -1, ""},
		{"tr inside wsh", "wsh(tr(" + pubC + "))", nil, ErrNesting, -1, ""},
		{"script inside wpkh", "wpkh(pkh(" + pubC + "))", nil, ErrNesting, 5, "key expression"},
		{"key inside sh", "sh(" + pubC + ")", nil, ErrNesting, 3, "script expression"},

		// Unsupported.
		{"taproot script tree", "tr(" + pubX + ",pk(" + pubC + "))", nil, ErrUnsupported, len("tr(" + pubX + ","), "script trees"},
		{"combo", "combo(" + pubC + ")", nil, ErrUnsupported, 0, ""},
		{"raw", "raw(deadbeef)", nil, ErrUnsupported, 0, ""},
		{"addr", "addr(bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu)", nil, ErrUnsupported, 0, ""},
		{"miniscript", "wsh(and_v(v:pk(" + pubC + "),older(10)))", nil, ErrUnsupported, 4, "miniscript"},
		{"multi_a", "tr(" + pubX + ",multi_a(1," + pubX + "))", nil, ErrUnsupported, -1, ""},

		// Overall syntax.
		{"empty", "", nil, ErrSyntax, 0, ""},
		{"unknown function", "foo(" + pubC + ")", nil, ErrSyntax, 0, "unknown"},
		{"upper-case function", "PKH(" + pubC + ")", nil, ErrSyntax, 0, ""},
		{"trailing text", good + "x", nil, ErrSyntax, len(good), "after"},
		{"missing )", "pkh(" + pubC, nil, ErrSyntax, -1, "closing"},
		{"extra )", good + ")", nil, ErrSyntax, -1, ""},
		{"two keys in pkh", "pkh(" + pubC + "," + pubC + ")", nil, ErrSyntax, -1, "exactly one"},
		{"empty pkh", "pkh()", nil, ErrSyntax, -1, ""},
		{"spaces", "pkh( " + pubC + ")", nil, ErrInvalidKey, -1, ""},
		{"nil network", good, nil, nil, -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := tt.net
			if net == nil && tt.kind != nil {
				net = mainnet
			}
			kind := tt.kind
			if kind == nil {
				kind = ErrNetwork
			}
			d, err := Parse(tt.in, net)
			if err == nil {
				t.Fatalf("accepted as %s", d)
			}
			if !errors.Is(err, kind) {
				t.Fatalf("want %v, got %v", kind, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not an *Error: %T", err)
			}
			if tt.pos >= 0 && e.Pos != tt.pos {
				t.Errorf("position %d, want %d: %v", e.Pos, tt.pos, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not contain %q", err.Error(), tt.msg)
			}
			for _, secret := range []string{wif, xprvA[4:40]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("message repeats a private key: %v", err)
				}
			}
		})
	}
}

// TestOutputs: each script expression gives the script and address form it
// should, with the redeem/witness scripts and key origins a PSBT needs.
func TestOutputs(t *testing.T) {
	h160 := hex.EncodeToString(btcutil.Hash160(mustHex(pubC)))
	tests := []struct {
		desc     string
		script   string // hex, or prefix of it ending in "..."
		addrType string
		redeem   bool
		witness  bool
	}{
		{"pk(" + pubC + ")", "21" + pubC + "ac", "", false, false},
		{"pkh(" + pubC + ")", "76a914" + h160 + "88ac", "*btcutil.AddressPubKeyHash", false, false},
		{"wpkh(" + pubC + ")", "0014" + h160, "*btcutil.AddressWitnessPubKeyHash", false, false},
		{"sh(wpkh(" + pubC + "))", "a914...", "*btcutil.AddressScriptHash", true, false},
		{"wsh(pkh(" + pubC + "))", "0020...", "*btcutil.AddressWitnessScriptHash", false, true},
		{"sh(wsh(pkh(" + pubC + ")))", "a914...", "*btcutil.AddressScriptHash", true, true},
		{"multi(1," + pubC + ")", "51" + "21" + pubC + "51ae", "", false, false},
		{"tr(" + pubX + ")", "5120...", "*btcutil.AddressTaproot", false, false},
	}
	for _, tt := range tests {
		d, err := Parse(tt.desc, mainnet)
		if err != nil {
			t.Fatal(err)
		}
		o, err := d.Expand(0)
		if err != nil {
			t.Fatal(err)
		}
		got := hex.EncodeToString(o.Script)
		if p, ok := strings.CutSuffix(tt.script, "..."); ok {
			if !strings.HasPrefix(got, p) {
				t.Errorf("%s: script %s, want prefix %s", tt.desc, got, p)
			}
		} else if got != tt.script {
			t.Errorf("%s: script %s, want %s", tt.desc, got, tt.script)
		}
		if (o.RedeemScript != nil) != tt.redeem || (o.WitnessScript != nil) != tt.witness {
			t.Errorf("%s: redeem %x witness %x", tt.desc, o.RedeemScript, o.WitnessScript)
		}
		addr, err := d.Address(0, nil)
		if tt.addrType == "" {
			if !errors.Is(err, ErrNoAddress) {
				t.Errorf("%s: want ErrNoAddress, got %v", tt.desc, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.desc, err)
			continue
		}
		if typeName(addr) != tt.addrType {
			t.Errorf("%s: address type %s, want %s", tt.desc, typeName(addr), tt.addrType)
		}
		if s, _ := hex.DecodeString(got); string(mustPayToAddr(t, addr)) != string(s) {
			t.Errorf("%s: address %s does not pay to the derived script", tt.desc, addr)
		}
	}
}

// TestExpandNested: sh(wsh(multi)) exposes both scripts and every key's full
// origin, lockstep-derived.
func TestExpandNested(t *testing.T) {
	d, err := Parse("sh(wsh(multi(1,[aabbccdd/48'/0'/0'/1']"+xpubA+"/0/*,"+xpubB+"/1/*)))", mainnet)
	if err != nil {
		t.Fatal(err)
	}
	o, err := d.Expand(7)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Keys) != 2 {
		t.Fatalf("%d keys", len(o.Keys))
	}
	k0 := o.Keys[0]
	if hex.EncodeToString(k0.Origin.Fingerprint[:]) != "aabbccdd" ||
		!slicesEqual(k0.Origin.Path, []uint32{48 + HardenedKeyStart, HardenedKeyStart, HardenedKeyStart, 1 + HardenedKeyStart, 0, 7}) {
		t.Errorf("key 0 origin %x %v", k0.Origin.Fingerprint, k0.Origin.Path)
	}
	// Without an origin, the key is its own origin (as in Bitcoin Core).
	k1 := o.Keys[1]
	fp := btcutil.Hash160(mustHex(extPub(t, xpubB)))[:4]
	if string(k1.Origin.Fingerprint[:]) != string(fp) || !slicesEqual(k1.Origin.Path, []uint32{1, 7}) {
		t.Errorf("key 1 origin %x %v", k1.Origin.Fingerprint, k1.Origin.Path)
	}
	if hex.EncodeToString(o.RedeemScript[:2]) != "0020" || o.WitnessScript[len(o.WitnessScript)-1] != opCheckMultiSig {
		t.Errorf("redeem %x witness %x", o.RedeemScript, o.WitnessScript)
	}
	// Different index, different keys.
	o8, _ := d.Expand(8)
	if string(o8.Script) == string(o.Script) {
		t.Error("index 7 and 8 give the same script")
	}
}

func TestDeriveRules(t *testing.T) {
	fixed, _ := Parse("wpkh("+xpubA+"/0/5)", mainnet)
	ranged, _ := Parse("wpkh("+xpubA+"/0/*)", mainnet)
	multi, _ := Parse("wpkh("+xpubA+"/<0;1>/*)", mainnet)
	if fixed.IsRange() || !ranged.IsRange() || !multi.IsRange() || !multi.IsMultipath() || ranged.IsMultipath() {
		t.Fatal("IsRange/IsMultipath")
	}
	if _, err := fixed.Derive(0); err != nil {
		t.Error(err)
	}
	if _, err := fixed.Derive(1); !errors.Is(err, ErrDerive) {
		t.Errorf("non-ranged index 1: %v", err)
	}
	if _, err := ranged.Derive(HardenedKeyStart); !errors.Is(err, ErrDerive) {
		t.Errorf("hardened index: %v", err)
	}
	if _, err := ranged.Derive(HardenedKeyStart - 1); err != nil {
		t.Errorf("largest index: %v", err)
	}
	if _, err := multi.Derive(0); !errors.Is(err, ErrDerive) {
		t.Errorf("multipath Derive: %v", err)
	}
	if got := ranged.Multipath(); len(got) != 1 || got[0] != ranged {
		t.Error("Multipath of a single-path descriptor must be itself")
	}
	// The receive branch of <0;1> is the /0 descriptor.
	recv, change := multi.Multipath()[0], multi.Multipath()[1]
	if recv.String() != ranged.String() {
		t.Errorf("receive %s, want %s", recv, ranged)
	}
	a, _ := recv.Derive(3)
	b, _ := ranged.Derive(3)
	c, _ := change.Derive(3)
	if string(a) != string(b) || string(a) == string(c) {
		t.Error("receive/change derivation")
	}
	if multi.Kind() != KindWPKH || multi.Kind().String() != "wpkh" {
		t.Error("Kind")
	}
}

func TestAddressNetworks(t *testing.T) {
	d, _ := Parse("wpkh("+xpubA+"/0/*)", mainnet)
	if _, err := d.Address(0, &chaincfg.RegressionNetParams); !errors.Is(err, ErrNetwork) {
		t.Errorf("mainnet xpub, regtest address: %v", err)
	}
	hexOnly, _ := Parse("wpkh("+pubC+")", mainnet)
	a, err := hexOnly.Address(0, &chaincfg.RegressionNetParams)
	if err != nil || !strings.HasPrefix(a.EncodeAddress(), "bcrt1q") {
		t.Errorf("hex key on regtest: %v %v", a, err)
	}
	tr, err := Parse("tr("+tpubA+"/<0;1>/*)", &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	a, err = tr.Multipath()[1].Address(4, nil)
	if err != nil || !strings.HasPrefix(a.EncodeAddress(), "bcrt1p") {
		t.Errorf("regtest taproot: %v %v", a, err)
	}
	if a2, err := tr.Multipath()[1].Address(4, &chaincfg.TestNet3Params); err != nil || !strings.HasPrefix(a2.EncodeAddress(), "tb1p") {
		t.Errorf("same tpub on testnet: %v %v", a2, err)
	}
}

func TestFormatAndChecksum(t *testing.T) {
	d, err := Parse("wpkh([deadbeef/84h/0h/0h]"+xpubA+"/<0;1>/*)", mainnet)
	if err != nil {
		t.Fatal(err)
	}
	ap, h := d.String(), d.Format(LetterH)
	if !strings.Contains(ap, "84'/0'/0'") || !strings.Contains(h, "84h/0h/0h") {
		t.Errorf("markers: %s / %s", ap, h)
	}
	if noSum(ap) == noSum(h) || ap[len(ap)-8:] == h[len(h)-8:] {
		t.Error("the checksum covers the marker")
	}
	if s, err := AddChecksum(ap); err != nil || s != ap {
		t.Errorf("AddChecksum of a checksummed descriptor: %q %v", s, err)
	}
	if s, err := AddChecksum(noSum(ap)); err != nil || s != ap {
		t.Errorf("AddChecksum: %q %v", s, err)
	}
	if _, err := AddChecksum(noSum(ap) + "#qqqqqqqq"); !errors.Is(err, ErrChecksum) {
		t.Errorf("AddChecksum with a wrong checksum: %v", err)
	}
	if _, err := Checksum(ap); !errors.Is(err, ErrSyntax) {
		t.Errorf("Checksum of a checksummed descriptor: %v", err)
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
