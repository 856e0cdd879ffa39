package descriptor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
)

// FuzzParse: Parse never panics; whatever it accepts is written back by
// String in a form that parses to the same String (also in the h form and
// after BIP 389 expansion), and can be derived without panicking.
func FuzzParse(f *testing.F) {
	// Seeds: every descriptor and key in the checked-in vectors, plus the
	// specification tables' shapes.
	files, _ := filepath.Glob("testdata/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			f.Fatal(err)
		}
		walkStrings(v, func(s string) {
			if len(s) < 2000 {
				f.Add(s)
				f.Add("wpkh(" + s + ")")
			}
		})
	}
	for _, s := range []string{
		"wpkh(" + xpubA + "/<0;1>/*)",
		"sh(wsh(sortedmulti(2,[deadbeef/48h/0h/0h/2h]" + xpubA + "/<0;1>/*," + xpubB + "/<0;1>/*)))",
		"tr(" + pubX + ")",
		"wsh(multi(1," + pubC + "))#" + mustChecksum("wsh(multi(1,"+pubC+"))"),
		"wpkh(" + tpubA + "/0/*)",
	} {
		f.Add(s)
	}
	nets := []*chaincfg.Params{&chaincfg.MainNetParams, &chaincfg.RegressionNetParams}
	f.Fuzz(func(t *testing.T, s string) {
		for _, net := range nets {
			d, err := Parse(s, net)
			if err != nil {
				if _, ok := err.(*Error); !ok {
					t.Fatalf("error is %T, not *Error: %v", err, err)
				}
				_ = err.Error()
				continue
			}
			roundTrip(t, d)
			for _, e := range d.Multipath() {
				roundTrip(t, e)
				if d.IsMultipath() && e.IsMultipath() {
					t.Fatalf("expansion %s of %s is still multipath", e, d)
				}
				for _, idx := range []uint32{0, 1, HardenedKeyStart - 1} {
					if _, err := e.Expand(idx); err != nil && idx == 0 {
						t.Fatalf("%s: Expand(0): %v", e, err)
					}
					_, _ = e.Address(idx, nil)
				}
			}
		}
	})
}

func walkStrings(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case []any:
		for _, e := range x {
			walkStrings(e, f)
		}
	case map[string]any:
		for _, e := range x {
			walkStrings(e, f)
		}
	}
}
