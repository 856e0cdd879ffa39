package fsm

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// TestAccountTableBehavesLikeAMap drives the table and a map of resident records with the
// same random puts (new accounts, replaced balances, metadata coming and going, empty strings,
// no balance) and compares every account after each step. One round uses a hash under which
// most ids collide, so that long probe runs of ids with equal fingerprints (and the index's
// growth under them) are as well exercised as the common case; text chunks are crossed by ids long enough to fill them.
func TestAccountTableBehavesLikeAMap(t *testing.T) {
	hashes := map[string]func(maphash.Seed, string) uint64{
		"maphash":   maphash.String,
		"colliding": func(_ maphash.Seed, id string) uint64 { return uint64(len(id) % 3) },
	}
	for name, hash := range hashes {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(21, 22))
			g := recordGen{rng: rng}
			table := newAccountTable()
			table.hash = hash
			model := map[string]*residentAccount{}
			var ids []string
			for step := range 3000 {
				var id string
				if len(ids) == 0 || rng.IntN(3) == 0 {
					id = fmt.Sprintf("acc-%d-%s", step, g.str())
					if rng.IntN(50) == 0 {
						id = string(make([]byte, 300_000+rng.IntN(textChunk))) // spans chunk boundaries
					}
					ids = append(ids, id)
				} else {
					id = ids[rng.IntN(len(ids))]
				}
				acc := g.account()
				acc.Id = id
				if rng.IntN(4) == 0 {
					acc.Metadata = nil
				}
				r := newResidentAccount(acc)
				table.put(r)
				model[id] = r
				if table.len() != len(model) {
					t.Fatalf("step %d: %d accounts in the table, %d in the model", step, table.len(), len(model))
				}
				check := ids[rng.IntN(len(ids))]
				got, ok := table.copyTo(check, &accountAndBalance{})
				if want := model[check].copyTo(&accountAndBalance{}); !ok || !proto.Equal(got, want) {
					t.Fatalf("step %d: account %.40q:\n table %v, %v\n model %v", step, check, got, ok, want)
				}
				if _, ok := table.copyTo(fmt.Sprintf("missing-%d", step), &accountAndBalance{}); ok {
					t.Fatalf("step %d: the table found an account it never held", step)
				}
			}
			for id, r := range model {
				got, ok := table.copyTo(id, &accountAndBalance{})
				if want := r.copyTo(&accountAndBalance{}); !ok || !proto.Equal(got, want) {
					t.Fatalf("at the end: account %.40q:\n table %v, %v\n model %v", id, got, ok, want)
				}
			}
			if name == "colliding" && table.longestRun() < 100 {
				t.Fatalf("the longest probe run is %d slots: the colliding hash did not make ids share runs", table.longestRun())
			}
		})
	}
}

// TestAccountRecordsHoldNoPointers keeps the table's records and index free of pointers, which
// is what keeps the garbage collector out of them: a field that adds one must go elsewhere.
func TestAccountRecordsHoldNoPointers(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[accountRecord](), reflect.TypeFor[[]uint64]().Elem()} {
		if path, ok := pointerIn(typ, typ.Name()); ok {
			t.Errorf("%s holds a pointer at %s", typ, path)
		}
	}
}

func pointerIn(typ reflect.Type, path string) (string, bool) {
	switch typ.Kind() {
	case reflect.Struct:
		for i := range typ.NumField() {
			f := typ.Field(i)
			if p, ok := pointerIn(f.Type, path+"."+f.Name); ok {
				return p, true
			}
		}
		return "", false
	case reflect.Array:
		return pointerIn(typ.Elem(), path+"[]")
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "", false
	default:
		return path, true
	}
}

// TestAccountTableKeepsAFilledAccount round-trips an account with every field set.
func TestAccountTableKeepsAFilledAccount(t *testing.T) {
	acc := &bankdv1.Account{}
	fillEveryField(t, acc.ProtoReflect())
	table := newAccountTable()
	table.put(newResidentAccount(acc))
	if got, ok := table.copyTo(acc.Id, &accountAndBalance{}); !ok || !proto.Equal(got, acc) {
		t.Fatalf("the table lost a field:\n got %v\nwant %v", got, acc)
	}
}

// longestRun returns the length of the longest run of occupied slots in the index.
func (t *accountTable) longestRun() int {
	longest, run := 0, 0
	for _, s := range append(t.slots, t.slots...) { // twice round, for a run that wraps
		if s == 0 {
			run = 0
			continue
		}
		run++
		longest = max(longest, min(run, len(t.slots)))
	}
	return longest
}
