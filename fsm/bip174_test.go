package fsm

import (
	"bufio"
	"encoding/base64"
	"os"
	"strings"
	"testing"
)

// bip174Vector is one PSBT of BIP 174's test vectors.
type bip174Vector struct {
	name  string
	valid bool
	raw   []byte
}

func loadBIP174Vectors(t *testing.T) []bip174Vector {
	t.Helper()
	f, err := os.Open("testdata/bip174_vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []bip174Vector
	var cur *bip174Vector
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "invalid: "), strings.HasPrefix(line, "valid: "):
			kind, name, _ := strings.Cut(line, ": ")
			out = append(out, bip174Vector{name: name, valid: kind == "valid"})
			cur = &out[len(out)-1]
		case cur != nil && line != "":
			raw, err := base64.StdEncoding.DecodeString(line)
			if err != nil {
				t.Fatalf("vector %q: %v", cur.name, err)
			}
			cur.raw = raw
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBIP174Vectors runs the PSBT decoder every signature and plan goes through over BIP 174's
// test vectors: each invalid PSBT is refused (never a panic), each valid one decodes, but for
// the valid ones whose transaction has no input, which decodePSBT refuses on purpose: no batch
// has none, and without inputs the serialization is ambiguous (btcutil/psbt reads BIP 174's
// "value of the wrong stated size" vector as a transaction without inputs and would take it).
func TestBIP174Vectors(t *testing.T) {
	noInputs := map[string]bool{
		"PSBT with global unsigned tx that has 0 inputs and 0 outputs": true,
		"PSBT with 0 inputs": true,
	}
	vectors := loadBIP174Vectors(t)
	if len(vectors) != 30 {
		t.Fatalf("%d vectors, want BIP 174's 20 invalid and 10 valid", len(vectors))
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			_, verr := decodePSBT(v.raw)
			switch {
			case !v.valid && verr == nil:
				t.Errorf("an invalid PSBT decoded")
			case v.valid && noInputs[v.name] && (verr == nil || !strings.Contains(verr.Message, "no inputs")):
				t.Errorf("a PSBT without inputs was not refused for it: %v", verr)
			case v.valid && !noInputs[v.name] && verr != nil:
				t.Errorf("a valid PSBT was refused: %s", verr.Message)
			}
		})
	}
}
