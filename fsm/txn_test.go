package fsm

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// modelTxn is what a txn must behave like: a stack of maps, each level's writes hiding the
// levels below, a commit copying a level into the one below and a rollback dropping it.
type modelTxn struct {
	levels []map[string]string // "" value: deleted
}

func (m *modelTxn) get(key string) (string, bool) {
	for i := len(m.levels) - 1; i >= 0; i-- {
		if v, ok := m.levels[i][key]; ok {
			return v, v != ""
		}
	}
	return "", false
}

// TestTxnBehavesLikeNestedMaps drives the undo-log txn and the model with the same random
// operations (writes, unindexed writes, deletes, account writes, children opened, committed
// and rolled back; now and then a command large enough that the next one clears the indexes) and
// compares every read and, at the end, what reached the Pebble batch.
func TestTxnBehavesLikeNestedMaps(t *testing.T) {
	tf := openTestFSM(t)
	log := newWriteLog() // one log for every round, as ApplyBatch reuses it
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		b := tf.db.NewIndexedBatch()
		resident := &residentState{committed: newAccountTable(), batch: map[string]*residentAccount{}}
		stack := []*txn{newRootTxn(b, resident, log)}
		model := &modelTxn{levels: []map[string]string{{}}}
		accounts := []map[string]int64{{}} // the model's accounts: id -> created index
		if seed%10 == 5 {
			// Enough writes that the next round empties the log's indexes with clear.
			for i := range clearIndexesAbove + 100 {
				key, v := fmt.Sprintf("z%04d", i), fmt.Sprintf("big%d", seed)
				stack[0].set([]byte(key), []byte(v))
				model.levels[0][key] = v
			}
		}
		for step := range 300 {
			top := stack[len(stack)-1]
			key := fmt.Sprintf("k%02d", rng.IntN(20))
			if rng.IntN(10) == 0 {
				key = fmt.Sprintf("z%04d", rng.IntN(clearIndexesAbove+100))
			}
			switch op := rng.IntN(11); {
			case op < 3:
				v := fmt.Sprintf("v%d-%d", seed, step)
				top.set([]byte(key), []byte(v))
				model.levels[len(model.levels)-1][key] = v
			case op < 4:
				top.delete([]byte(key))
				model.levels[len(model.levels)-1][key] = ""
			case op < 5:
				id := fmt.Sprintf("acc%d", rng.IntN(5))
				top.putAccount(&bankdv1.Account{Id: id, CreatedIndex: uint64(step)})
				accounts[len(accounts)-1][id] = int64(step)
			case op < 7 && len(stack) < 5:
				stack = append(stack, top.child())
				model.levels = append(model.levels, map[string]string{})
				accounts = append(accounts, map[string]int64{})
			case op < 8 && len(stack) > 1:
				if err := top.commit(); err != nil {
					t.Fatal(err)
				}
				n := len(model.levels)
				for k, v := range model.levels[n-1] {
					model.levels[n-2][k] = v
				}
				for k, v := range accounts[n-1] {
					accounts[n-2][k] = v
				}
				stack, model.levels, accounts = stack[:n-1], model.levels[:n-1], accounts[:n-1]
			case op < 9 && len(stack) > 1:
				top.rollback()
				n := len(model.levels)
				stack, model.levels, accounts = stack[:n-1], model.levels[:n-1], accounts[:n-1]
			case op == 10:
				// A key written once and never read back, as a history entry's.
				key, v := fmt.Sprintf("u%d-%d", seed, step), fmt.Sprintf("v%d-%d", seed, step)
				top.setUnique(key, []byte(v))
				model.levels[len(model.levels)-1][key] = v
			default:
				got, gotOK, err := top.get([]byte(key))
				if err != nil {
					t.Fatal(err)
				}
				want, wantOK := model.get(key)
				if gotOK != wantOK || string(got) != want {
					t.Fatalf("seed %d step %d: get %s = %q, %v; want %q, %v", seed, step, key, got, gotOK, want, wantOK)
				}
				id := fmt.Sprintf("acc%d", rng.IntN(5))
				acc, found := top.account(id)
				var wantIndex int64 = -1
				for i := len(accounts) - 1; i >= 0 && wantIndex < 0; i-- {
					if v, ok := accounts[i][id]; ok {
						wantIndex = v
					}
				}
				if found != (wantIndex >= 0) || (found && int64(acc.CreatedIndex) != wantIndex) {
					t.Fatalf("seed %d step %d: account %s = %v, %v; want created index %d", seed, step, id, acc, found, wantIndex)
				}
			}
		}
		for len(stack) > 1 { // what is left open is dropped, as a refused command's body is
			stack[1].rollback()
			stack, model.levels, accounts = stack[:1], model.levels[:1], accounts[:1]
		}
		if err := stack[0].commit(); err != nil {
			t.Fatal(err)
		}
		checkBatch(t, seed, b, model.levels[0], accounts[0], resident)
		b.Close()
	}
}

// checkBatch compares what the root wrote into the batch with the model's root level, and
// checks that it was written in key order.
func checkBatch(t *testing.T, seed uint64, b *pebble.Batch, want map[string]string, accounts map[string]int64, resident *residentState) {
	t.Helper()
	got := map[string]string{}
	last := ""
	r := b.Reader()
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if string(k) <= last {
			t.Fatalf("seed %d: batch key %q after %q: not in key order", seed, k, last)
		}
		last = string(k)
		if strings.HasPrefix(string(k), "a") {
			continue
		}
		if kind == pebble.InternalKeyKindDelete {
			got[string(k)] = ""
		} else {
			got[string(k)] = string(v)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("seed %d: batch holds %d keys, want %d: %v vs %v", seed, len(got), len(want), got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("seed %d: batch %s = %q, want %q", seed, k, got[k], v)
		}
	}
	if len(resident.batch) != len(accounts) {
		t.Fatalf("seed %d: %d accounts committed, want %d", seed, len(resident.batch), len(accounts))
	}
	for id, idx := range accounts {
		if acc := resident.batch[id]; acc == nil || int64(acc.createdIndex) != idx {
			t.Fatalf("seed %d: account %s = %v, want created index %d", seed, id, acc, idx)
		}
	}
}

// TestTxnRefusesUseOfAParentWithAChildOpen checks the rule the undo log depends on: a parent
// used while its child is open, or a txn used after it closed, is a bug and stops at once.
func TestTxnRefusesUseOfAParentWithAChildOpen(t *testing.T) {
	tf := openTestFSM(t)
	resident := &residentState{committed: newAccountTable(), batch: map[string]*residentAccount{}}
	b := tf.db.NewIndexedBatch()
	defer b.Close()
	for _, tc := range []struct {
		name   string
		misuse func(root *txn)
	}{
		{"write to the parent", func(root *txn) { root.child(); root.set([]byte("k"), nil) }},
		{"read the parent", func(root *txn) { root.child(); _, _, _ = root.get([]byte("k")) }},
		{"write after commit", func(root *txn) { c := root.child(); _ = c.commit(); c.set([]byte("k"), nil) }},
		{"write after rollback", func(root *txn) { c := root.child(); c.rollback(); c.set([]byte("k"), nil) }},
		{"roll back twice", func(root *txn) { c := root.child(); c.rollback(); c.rollback() }},
		{"roll back the root", func(root *txn) { root.rollback() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tc.misuse(newRootTxn(b, resident, nil))
		})
	}
}
