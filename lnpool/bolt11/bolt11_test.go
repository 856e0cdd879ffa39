package bolt11

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil/bech32"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/lightningnetwork/lnd/lnwire"
	"github.com/lightningnetwork/lnd/zpay32"
)

// The vectors below are the examples of BOLT 11 ("Invoice Protocol for Lightning
// Payments"), https://github.com/lightning/bolts/blob/master/11-payment-encoding.md, section
// "Examples" and "Examples of Invalid Invoices", as of commit
// 0028ac9bf455298a4d32c3eb772b3821d31a5d08. All are signed with the private key
// e126f68f7eafcc8b74f54d269fe206be715000f94dac067d1c04a8ca3b2db734.
const (
	specPubkey    = "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad"
	specHash      = "0001020304050607080900010203040506070809000102030405060708090102"
	specTimestamp = 1496314658

	specDonation      = "lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq8rkx3yf5tcsyz3d73gafnh3cax9rn449d9p5uxz9ezhhypd0elx87sjle52x86fux2ypatgddc6k63n7erqz25le42c4u4ecky03ylcqca784w"
	specCoffee        = "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpuaztrnwngzn3kdzw5hydlzf03qdgm2hdq27cqv3agm2awhz5se903vruatfhq77w3ls4evs3ch9zw97j25emudupq63nyw24cg27h2rspfj9srp"
	specNonsense      = "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrny"
	specHashedDesc    = "lnbc20m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqscc6gd6ql3jrc5yzme8v4ntcewwz5cnw92tz0pc8qcuufvq7khhr8wpald05e92xw006sq94mg8v2ndf4sefvf9sygkshp5zfem29trqq2yxxz7"
	specTestnet       = "lntb20m1pvjluezhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfpp3x9et2e20v6pu37c5d9vax37wxq72un98kmzzhznpurw9sgl2v0nklu2g4d0keph5t7tj9tcqd8rexnd07ux4uv2cjvcqwaxgj7v4uwn5wmypjd5n69z2xm3xgksg28nwht7f6zspwp3f9t"
	specRouteHints    = "lnbc20m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqsfpp3qjmp7lwpagxun9pygexvgpjdc4jdj85fr9yq20q82gphp2nflc7jtzrcazrra7wwgzxqc8u7754cdlpfrmccae92qgzqvzq2ps8pqqqqqqpqqqqq9qqqvpeuqafqxu92d8lr6fvg0r5gv0heeeqgcrqlnm6jhphu9y00rrhy4grqszsvpcgpy9qqqqqqgqqqqq7qqzqj9n4evl6mr5aj9f58zp6fyjzup6ywn3x6sk8akg5v4tgn2q8g4fhx05wf6juaxu9760yp46454gpg5mtzgerlzezqcqvjnhjh8z3g2qqdhhwkj"
	specP2SH          = "lnbc20m1pvjluezhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfppj3a24vwu6r8ejrss3axul8rxldph2q7z9kmrgvr7xlaqm47apw3d48zm203kzcq357a4ls9al2ea73r8jcceyjtya6fu5wzzpe50zrge6ulk4nvjcpxlekvmxl6qcs9j3tz0469gq5g658y"
	specP2WPKH        = "lnbc20m1pvjluezhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfppqw508d6qejxtdg4y5r3zarvary0c5xw7kepvrhrm9s57hejg0p662ur5j5cr03890fa7k2pypgttmh4897d3raaq85a293e9jpuqwl0rnfuwzam7yr8e690nd2ypcq9hlkdwdvycqa0qza8"
	specP2WSH         = "lnbc20m1pvjluezhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfp4qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q28j0v3rwgy9pvjnd48ee2pl8xrpxysd5g44td63g6xcjcu003j3qe8878hluqlvl3km8rm92f5stamd3jw763n3hck0ct7p8wwj463cql26ava"
	specPico          = "lnbc9678785340p1pwmna7lpp5gc3xfm08u9qy06djf8dfflhugl6p7lgza6dsjxq454gxhj9t7a0sd8dgfkx7cmtwd68yetpd5s9xar0wfjn5gpc8qhrsdfq24f5ggrxdaezqsnvda3kkum5wfjkzmfqf3jkgem9wgsyuctwdus9xgrcyqcjcgpzgfskx6eqf9hzqnteypzxz7fzypfhg6trddjhygrcyqezcgpzfysywmm5ypxxjemgw3hxjmn8yptk7untd9hxwg3q2d6xjcmtv4ezq7pqxgsxzmnyyqcjqmt0wfjjq6t5v4khxxqyjw5qcqp2rzjq0gxwkzc8w6323m55m4jyxcjwmy7stt9hwkwe2qxmy8zpsgg7jcuwz87fcqqeuqqqyqqqqlgqqqqn3qq9qn07ytgrxxzad9hc4xt3mawjjt8znfv8xzscs7007v9gh9j569lencxa8xeujzkxs0uamak9aln6ez02uunw6rd2ht2sqe4hz8thcdagpleym0j"
	specFeatures      = "lnbc25m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5vdhkven9v5sxyetpdeessp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9q5sqqqqqqqqqqqqqqqpqsq67gye39hfg3zd8rgc80k32tvy9xk2xunwm5lzexnvpx6fd77en8qaq424dxgt56cag2dpt359k3ssyhetktkpqh24jqnjyw6uqd08sgptq44qu"
	specIgnoredFields = "lnbc25m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5vdhkven9v5sxyetpdeessp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9q5sqqqqqqqqqqqqqqqpqsq2qrqqqfppnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqppnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqpp4qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqhpnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqhp4qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqspnqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqsp4qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnp5qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnpkqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq2jxxfsnucm4jf4zwtznpaxphce606fvhvje5x7d4gw7n73994hgs7nteqvenq8a4ml8aqtchv5d9pf7l558889hp4yyrqv6a7zpq9fgpskqhza"

	specUnknownFeature = "lnbc25m1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5vdhkven9v5sxyetpdeessp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9q4psqqqqqqqqqqqqqqqpqsqq40wa3khl49yue3zsgm26jrepqr2eghqlx86rttutve3ugd05em86nsefzh4pfurpd9ek9w2vp95zxqnfe2u7ckudyahsa52q66tgzcp6t2dyk"
	specBadChecksum    = "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrnt"
	specNoSeparator    = "pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrny"
	specMixedCase      = "LNBC2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrny"
	specUnrecoverable  = "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpuaxtrnwngzn3kdzw5hydlzf03qdgm2hdq27cqv3agm2awhz5se903vruatfhq77w3ls4evs3ch9zw97j25emudupq63nyw24cg27h2rspk28uwq"
	specTooShort       = "lnbc1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6na6hlh"
	specBadMultiplier  = "lnbc2500x1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpujr6jxr9gq9pv6g46y7d20jfkegkg4gljz2ea2a3m9lmvvr95tq2s0kvu70u3axgelz3kyvtp2ywwt0y8hkx2869zq5dll9nelr83zzqqpgl2zg"
	specSubMsat        = "lnbc2500000001p1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu7hqtk93pkf7sw55rdv4k9z2vj050rxdr6za9ekfs3nlt5lr89jqpdmxsmlj9urqumg0h9wzpqecw7th56tdms40p2ny9q4ddvjsedzcplva53s"
)

// The description the "hashed" vectors commit to.
const specLongDescription = "One piece of chocolate cake, one icecream cone, one pickle, one slice of swiss cheese, one slice of salami, one lollypop, one piece of cherry pie, one sausage, one cupcake, and one slice of watermelon"

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestDecodeSpecVectors(t *testing.T) {
	spec := func(msat int64, expiry time.Duration, desc, descHash string) Invoice {
		return Invoice{
			Hash: specHash, AmountMsat: msat, Destination: specPubkey,
			CreatedAt: time.Unix(specTimestamp, 0), Expiry: expiry,
			Description: desc, DescriptionHash: descHash,
		}
	}
	hashed := sha256Hex(specLongDescription)
	tests := []struct {
		name    string
		invoice string
		net     *chaincfg.Params
		want    Invoice
	}{
		{"donation of any amount", specDonation, &chaincfg.MainNetParams,
			spec(0, time.Hour, "Please consider supporting this project", "")},
		{"coffee within one minute", specCoffee, &chaincfg.MainNetParams,
			spec(250_000_000, time.Minute, "1 cup coffee", "")},
		{"nonsense in UTF-8", specNonsense, &chaincfg.MainNetParams,
			spec(250_000_000, time.Minute, "ナンセンス 1杯", "")},
		{"hashed description", specHashedDesc, &chaincfg.MainNetParams,
			spec(2_000_000_000, time.Hour, "", hashed)},
		{"testnet with fallback", specTestnet, &chaincfg.TestNet3Params,
			spec(2_000_000_000, time.Hour, "", hashed)},
		{"testnet invoice on testnet4", specTestnet, &chaincfg.TestNet4Params,
			spec(2_000_000_000, time.Hour, "", hashed)},
		{"route hints", specRouteHints, &chaincfg.MainNetParams,
			spec(2_000_000_000, time.Hour, "", hashed)},
		{"P2SH fallback", specP2SH, &chaincfg.MainNetParams,
			spec(2_000_000_000, time.Hour, "", hashed)},
		{"P2WPKH fallback", specP2WPKH, &chaincfg.MainNetParams,
			spec(2_000_000_000, time.Hour, "", hashed)},
		{"P2WSH fallback", specP2WSH, &chaincfg.MainNetParams,
			spec(2_000_000_000, time.Hour, "", hashed)},
		{"pico-bitcoin amount", specPico, &chaincfg.MainNetParams, Invoice{
			Hash:        "462264ede7e14047e9b249da94fefc47f41f7d02ee9b091815a5506bc8abf75f",
			AmountMsat:  967_878_534,
			Destination: specPubkey,
			CreatedAt:   time.Unix(1572468703, 0),
			Expiry:      604800 * time.Second,
			Description: "Blockstream Store: 88.85 USD for Blockstream Ledger Nano S x 1, \"Back In My Day\" Sticker x 2, \"I Got Lightning Working\" Sticker x 2 and 1 more items",
		}},
		{"features 9, 15 and 99", specFeatures, &chaincfg.MainNetParams,
			spec(2_500_000_000, time.Hour, "coffee beans", "")},
		{"all upper case", strings.ToUpper(specFeatures), &chaincfg.MainNetParams,
			spec(2_500_000_000, time.Hour, "coffee beans", "")},
		{"fields which must be ignored", specIgnoredFields, &chaincfg.MainNetParams,
			spec(2_500_000_000, time.Hour, "coffee beans", "")},
		{"lightning: URI", "lightning:" + specCoffee, &chaincfg.MainNetParams,
			spec(250_000_000, time.Minute, "1 cup coffee", "")},
		{"LIGHTNING: URI, upper case", "LIGHTNING:" + strings.ToUpper(specCoffee), &chaincfg.MainNetParams,
			spec(250_000_000, time.Minute, "1 cup coffee", "")},
		{"surrounding white space", "  " + specCoffee + "\n", &chaincfg.MainNetParams,
			spec(250_000_000, time.Minute, "1 cup coffee", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.invoice, tt.net)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		invoice string
		net     *chaincfg.Params
		want    error
		mention string // the message must name this
	}{
		// BOLT 11's invalid examples.
		{"spec: unknown required feature 100", specUnknownFeature, &chaincfg.MainNetParams, ErrUnknownFeature, "100"},
		{"spec: bad checksum", specBadChecksum, &chaincfg.MainNetParams, ErrChecksum, ""},
		{"spec: no separator", specNoSeparator, &chaincfg.MainNetParams, ErrNotBech32, ""},
		{"spec: mixed case", specMixedCase, &chaincfg.MainNetParams, ErrNotBech32, ""},
		{"spec: signature not recoverable", specUnrecoverable, &chaincfg.MainNetParams, ErrInvalid, ""},
		{"spec: too short", specTooShort, &chaincfg.MainNetParams, ErrInvalid, ""},
		{"spec: invalid multiplier", specBadMultiplier, &chaincfg.MainNetParams, ErrBadAmount, "multiplier"},
		{"spec: sub-millisatoshi precision", specSubMsat, &chaincfg.MainNetParams, ErrBadAmount, "sub-millisatoshi"},

		// Our own.
		{"empty", "", &chaincfg.MainNetParams, ErrEmpty, ""},
		{"only white space", "  \t", &chaincfg.MainNetParams, ErrEmpty, ""},
		{"only the URI scheme", "lightning:", &chaincfg.MainNetParams, ErrEmpty, ""},
		{"too long", "lnbc1" + strings.Repeat("q", MaxLength), &chaincfg.MainNetParams, ErrTooLong, ""},
		{"mainnet invoice on regtest", specCoffee, &chaincfg.RegressionNetParams, ErrWrongNetwork, "invoice is for mainnet (lnbc), we are on regtest"},
		{"testnet invoice on mainnet", specTestnet, &chaincfg.MainNetParams, ErrWrongNetwork, "testnet"},
		{"testnet invoice on signet", specTestnet, &chaincfg.SigNetParams, ErrWrongNetwork, "we are on signet"},
		{"bitcoin address", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", &chaincfg.MainNetParams, ErrNotLightning, ""},
		{"unknown network", rawInvoice(t, "lnxy", fieldP()), &chaincfg.MainNetParams, ErrUnknownNetwork, "lnxy"},
		{"no payment hash", rawInvoice(t, "lnbcrt", field(13, 4)), &chaincfg.RegressionNetParams, ErrMissingHash, ""},
		{"payment hash of the wrong length only", rawInvoice(t, "lnbcrt", field(1, 51)), &chaincfg.RegressionNetParams, ErrMissingHash, ""},
		{"truncated field", rawInvoice(t, "lnbcrt", fieldP(), []byte{13, 0}), &chaincfg.RegressionNetParams, ErrInvalid, "truncated"},
		{"field longer than the invoice", rawInvoice(t, "lnbcrt", fieldP(), []byte{13, 31, 31}), &chaincfg.RegressionNetParams, ErrInvalid, "longer"},
		{"amount above 21 million bitcoin", rawInvoice(t, "lnbcrt21000001", fieldP()), &chaincfg.RegressionNetParams, ErrAmountTooLarge, ""},
		{"amount overflowing 64 bits", rawInvoice(t, "lnbcrt99999999999999999999999p", fieldP()), &chaincfg.RegressionNetParams, ErrAmountTooLarge, ""},
		{"explicit zero amount", rawInvoice(t, "lnbcrt0m", fieldP()), &chaincfg.RegressionNetParams, ErrBadAmount, "zero"},
		{"expiry beyond a time.Duration", rawInvoice(t, "lnbcrt", fieldP(), fieldAll(6, 13, 31)), &chaincfg.RegressionNetParams, ErrInvalid, "expiry"},
		{"bad signature on a well-formed invoice", rawInvoice(t, "lnbcrt", fieldP(), field(13, 0)), &chaincfg.RegressionNetParams, ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.invoice, tt.net)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want %v", got, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("%q does not mention %q", err, tt.mention)
			}
		})
	}
}

// field is a tagged field of n zero groups.
func field(typ byte, n int) []byte { return fieldAll(typ, n, 0) }

// fieldAll is a tagged field of n groups of value v.
func fieldAll(typ byte, n int, v byte) []byte {
	f := []byte{typ, byte(n >> 5), byte(n & 31)}
	for i := 0; i < n; i++ {
		f = append(f, v)
	}
	return f
}

// fieldP is a payment hash field.
func fieldP() []byte { return field(1, 52) }

// rawInvoice builds a bech32 string with a valid checksum but a zero timestamp and
// signature, to reach the checks that come before the signature's.
func rawInvoice(t *testing.T, hrp string, fields ...[]byte) string {
	t.Helper()
	data := make([]byte, timestampGroups)
	for _, f := range fields {
		data = append(data, f...)
	}
	data = append(data, make([]byte, signatureGroups)...)
	s, err := bech32.Encode(hrp, data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// regtestInvoice makes a signed regtest invoice as lnd would.
func regtestInvoice(t testing.TB, key *btcec.PrivateKey, hash [32]byte, msat int64, created time.Time, opts ...func(*zpay32.Invoice)) string {
	t.Helper()
	if msat > 0 {
		opts = append(opts, zpay32.Amount(lnwire.MilliSatoshi(msat)))
	}
	inv, err := zpay32.NewInvoice(&chaincfg.RegressionNetParams, hash, created, opts...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := inv.Encode(zpay32.MessageSigner{SignCompact: func(msg []byte) ([]byte, error) {
		digest := sha256.Sum256(msg)
		return ecdsa.SignCompact(key, digest[:], true), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDecodeRegtest(t *testing.T) {
	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := hex.EncodeToString(key.PubKey().SerializeCompressed())
	hash := sha256.Sum256([]byte("preimage"))
	created := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name      string
		msat      int64
		opts      []func(*zpay32.Invoice)
		wantSat   int64
		subSat    bool
		wantDesc  string
		wantHash  string
		wantExpir time.Duration
	}{
		{name: "whole satoshis", msat: 1_234_000, opts: []func(*zpay32.Invoice){zpay32.Description("deposit"), zpay32.Expiry(10 * time.Minute)},
			wantSat: 1234, wantDesc: "deposit", wantExpir: 10 * time.Minute},
		{name: "millisatoshi amount", msat: 1_234_567, opts: []func(*zpay32.Invoice){zpay32.Description("")},
			subSat: true, wantExpir: time.Hour},
		{name: "no amount", opts: []func(*zpay32.Invoice){zpay32.Description("tip")},
			wantSat: 0, wantDesc: "tip", wantExpir: time.Hour},
		{name: "one satoshi", msat: 1000, opts: []func(*zpay32.Invoice){zpay32.Description("")},
			wantSat: 1, wantExpir: time.Hour},
		{name: "description hash", msat: 5_000, opts: []func(*zpay32.Invoice){zpay32.DescriptionHash(sha256.Sum256([]byte("x")))},
			wantSat: 5, wantHash: sha256Hex("x"), wantExpir: time.Hour},
		{name: "all of bitcoin", msat: MaxAmountMsat, opts: []func(*zpay32.Invoice){zpay32.Description("")},
			wantSat: MaxAmountMsat / 1000, wantExpir: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := regtestInvoice(t, key, hash, tt.msat, created, tt.opts...)
			for _, variant := range []string{s, strings.ToUpper(s), "lightning:" + s} {
				inv, err := Decode(variant, &chaincfg.RegressionNetParams)
				if err != nil {
					t.Fatal(err)
				}
				want := Invoice{
					Hash: hex.EncodeToString(hash[:]), AmountMsat: tt.msat, Destination: pub,
					CreatedAt: created, Expiry: tt.wantExpir, Description: tt.wantDesc,
					DescriptionHash: tt.wantHash,
				}
				if inv != want {
					t.Fatalf("got  %+v\nwant %+v", inv, want)
				}
				sat, err := inv.AmountSat()
				if tt.subSat {
					if !errors.Is(err, ErrSubSatoshi) {
						t.Fatalf("AmountSat = %d, %v; want ErrSubSatoshi", sat, err)
					}
					continue
				}
				if err != nil || sat != tt.wantSat {
					t.Fatalf("AmountSat = %d, %v; want %d", sat, err, tt.wantSat)
				}
			}
			if _, err := Decode(s, &chaincfg.MainNetParams); !errors.Is(err, ErrWrongNetwork) ||
				!strings.Contains(err.Error(), "invoice is for regtest (lnbcrt), we are on mainnet") {
				t.Fatalf("regtest invoice on mainnet: %v", err)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	created := time.Unix(1_700_000_000, 0)
	inv := Invoice{CreatedAt: created, Expiry: 10 * time.Minute}
	tests := []struct {
		name string
		now  time.Time
		want bool
	}{
		{"at creation", created, false},
		{"a second before", created.Add(10*time.Minute - time.Second), false},
		{"at expiry", created.Add(10 * time.Minute), true},
		{"after", created.Add(time.Hour), true},
	}
	if got, want := inv.ExpiresAt(), created.Add(10*time.Minute); !got.Equal(want) {
		t.Fatalf("ExpiresAt = %v, want %v", got, want)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inv.Expired(tt.now); got != tt.want {
				t.Fatalf("Expired(%v) = %t, want %t", tt.now, got, tt.want)
			}
		})
	}
}

func TestParseAmount(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  error
	}{
		{"", 0, nil},
		{"1", 100_000_000_000, nil},
		{"21000000", MaxAmountMsat, nil},
		{"21000001", 0, ErrAmountTooLarge},
		{"21000000001m", 0, ErrAmountTooLarge},
		{"2500u", 250_000_000, nil},
		{"20m", 2_000_000_000, nil},
		{"3n", 300, nil},
		{"10p", 1, nil},
		{"9678785340p", 967_878_534, nil},
		{"1p", 0, ErrBadAmount},
		{"0m", 0, ErrBadAmount},
		{"m", 0, ErrBadAmount},
		{"1x", 0, ErrBadAmount},
		{"1.5m", 0, ErrBadAmount},
		{"-1m", 0, ErrBadAmount},
		{"18446744073709551616", 0, ErrAmountTooLarge},
		{"99999999999999999999p", 0, ErrAmountTooLarge},
		{"210000000000000000000p", 0, ErrAmountTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseAmount(tt.in)
			if !errors.Is(err, tt.err) || (err == nil && got != tt.want) {
				t.Fatalf("parseAmount(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestNetwork(t *testing.T) {
	tests := []struct {
		in   string
		want *chaincfg.Params
		err  error
	}{
		{specCoffee, &chaincfg.MainNetParams, nil},
		{"LIGHTNING:" + strings.ToUpper(specTestnet), &chaincfg.TestNet3Params, nil},
		{"lnbcrt1xyz", &chaincfg.RegressionNetParams, nil},
		{"lntbs1xyz", &chaincfg.SigNetParams, nil},
		{"lnsb1xyz", &chaincfg.SimNetParams, nil},
		{"lnxy1xyz", nil, ErrUnknownNetwork},
		{"bc1qxyz", nil, ErrNotLightning},
		{"", nil, ErrEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Network(tt.in)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Fatalf("Network = %v, %v; want %v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		specDonation, specCoffee, specNonsense, specHashedDesc, specTestnet, specRouteHints,
		specP2SH, specP2WPKH, specP2WSH, specPico, specFeatures, specIgnoredFields,
		specUnknownFeature, specBadChecksum, specNoSeparator, specMixedCase, specUnrecoverable,
		specTooShort, specBadMultiplier, specSubMsat, "", "lightning:", "lnbcrt1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, net := range []*chaincfg.Params{&chaincfg.MainNetParams, &chaincfg.RegressionNetParams} {
			inv, err := Decode(s, net)
			if err != nil {
				continue
			}
			if len(inv.Hash) != 64 || len(inv.Destination) != 66 {
				t.Fatalf("accepted %+v", inv)
			}
			// AmountMsat, the cheap read of an accepted invoice, agrees with Decode.
			if msat, err := AmountMsat(s, net); err != nil || msat != inv.AmountMsat {
				t.Fatalf("AmountMsat %d, %v; Decode read %d", msat, err, inv.AmountMsat)
			}
			if inv.AmountMsat < 0 || inv.AmountMsat > MaxAmountMsat || inv.Expiry < 0 {
				t.Fatalf("accepted %+v", inv)
			}
			_ = inv.ExpiresAt()
		}
		_, _ = Network(s)
	})
}
