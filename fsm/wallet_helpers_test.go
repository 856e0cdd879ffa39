package fsm

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"google.golang.org/protobuf/proto"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// testXKey returns the account key m/84'/1'/n' of a fixed seed, for net: private (tprv/xprv)
// and public (tpub/xpub). Tests never need a real wallet, only distinct, valid keys.
func testXKey(t testing.TB, n uint32, net *chaincfg.Params) (priv, pub string) {
	t.Helper()
	seed := make([]byte, 32)
	seed[0] = 0xba
	master, err := hdkeychain.NewMaster(seed, net)
	if err != nil {
		t.Fatal(err)
	}
	k := master
	for _, step := range []uint32{84, 1, n} {
		if k, err = k.Derive(hdkeychain.HardenedKeyStart + step); err != nil {
			t.Fatal(err)
		}
	}
	p, err := k.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	return k.String(), p.String()
}

// tpub returns the n-th regtest test account key.
func tpub(t testing.TB, n uint32) string {
	t.Helper()
	_, pub := testXKey(t, n, &chaincfg.RegressionNetParams)
	return pub
}

// depositDescriptor is a BIP 84 style receive/change descriptor of the n-th test key.
func depositDescriptor(t testing.TB, n uint32) string {
	return fmt.Sprintf("wpkh(%s/<0;1>/*)", tpub(t, n))
}

// bip84 holds the published BIP 84 test vectors (wallet/descriptor/testdata/bip84.json): the
// account key, re-encoded from its SLIP-132 zpub to an xpub, and the first addresses.
type bip84 struct {
	xpub                     string
	receive0, receive1, chg0 string
}

func loadBIP84(t testing.TB) bip84 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "wallet", "descriptor", "testdata", "bip84.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Records []map[string]string `json:"records"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	zpub, err := hdkeychain.NewKeyFromString(v.Records[1]["xpub"])
	if err != nil {
		t.Fatal(err)
	}
	xpub, err := zpub.CloneWithVersion(chaincfg.MainNetParams.HDPublicKeyID[:])
	if err != nil {
		t.Fatal(err)
	}
	return bip84{
		xpub:     xpub.String(),
		receive0: v.Records[2]["address"],
		receive1: v.Records[3]["address"],
		chg0:     v.Records[4]["address"],
	}
}

func (tf *testFSM) createWallet(req *bankdv1.CreateWalletRequest) any {
	tf.t.Helper()
	if req.Network == "" {
		req.Network = "regtest"
	}
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET, req, nil)
}

func (tf *testFSM) mustWallet(req *bankdv1.CreateWalletRequest) *bankdv1.Wallet {
	tf.t.Helper()
	res, ok := tf.createWallet(req).(*bankdv1.CreateWalletResponse)
	if !ok {
		tf.t.Fatalf("create wallet %s: %v", req.WalletId, tf.log[len(tf.log)-1])
	}
	return res.Wallet
}

func (tf *testFSM) newAddress(account, wallet, requestID string) any {
	tf.t.Helper()
	return tf.do(bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS,
		&bankdv1.NewDepositAddressRequest{AccountId: account, WalletId: wallet, RequestId: requestID}, nil)
}

func (tf *testFSM) mustAddress(account, wallet, requestID string) *bankdv1.DepositAddress {
	tf.t.Helper()
	res := tf.newAddress(account, wallet, requestID)
	r, ok := res.(*bankdv1.NewDepositAddressResponse)
	if !ok {
		tf.t.Fatalf("new address for %s (%s): %v", account, requestID, res)
	}
	return r.Address
}

// refusal asserts res is a refusal with code whose message contains msgPart.
func refusal(t testing.TB, res any, code bankdv1.ResultCode, msgPart string) *Error {
	t.Helper()
	e, ok := res.(*Error)
	if !ok {
		t.Fatalf("got %T %v, want a %s refusal", res, res, code)
	}
	if e.Code != code || !strings.Contains(e.Message, msgPart) {
		t.Fatalf("refusal %s %q, want %s mentioning %q", e.Code, e.Message, code, msgPart)
	}
	return e
}

// watchedScripts returns the script table, keyed by "wallet/branch/index".
func watchedScripts(t testing.TB, f *FSM) map[string]*bankdv1.WatchedScript {
	t.Helper()
	out := map[string]*bankdv1.WatchedScript{}
	err := f.scan([]byte{tagScript}, prefixEnd([]byte{tagScript}), func(k, v []byte) (bool, error) {
		rec := &bankdv1.WatchedScript{}
		if err := proto.Unmarshal(v, rec); err != nil {
			return false, err
		}
		if string(k) != string(scriptKey(rec.Script)) {
			return false, fmt.Errorf("script record %x is under key %x", rec.Script, k)
		}
		id := fmt.Sprintf("%s/%d/%d", rec.WalletId, rec.Branch, rec.Index)
		if out[id] != nil {
			return false, fmt.Errorf("two scripts for %s", id)
		}
		out[id] = rec
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// storeDump returns every key and value but the applied index and cluster time, which every
// command moves, refused or not.
func storeDump(t testing.TB, f *FSM) []string {
	t.Helper()
	var out []string
	err := f.scan(nil, nil, func(k, v []byte) (bool, error) {
		if string(k) != string(keyApplied) && string(k) != string(keyNow) {
			out = append(out, hex.EncodeToString(k)+"="+hex.EncodeToString(v))
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// checkWalletInvariants checks that every wallet's script table entries are exactly the
// indexes [0, watched_end) of each branch, that watched_end = min(next_index + gap_limit,
// indexes of the branch), and that every handed-out address is recorded as its account's.
func checkWalletInvariants(t failer, tf *testFSM) {
	t.Helper()
	scripts := watchedScripts(tf.t, tf.FSM)
	total := 0
	token := ""
	for {
		wallets, next, err := tf.ListWallets(token, MaxPageSize)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range wallets {
			ranged := strings.Contains(w.Descriptor_, "*")
			for _, b := range w.Branches {
				want := uint64(b.NextIndex) + uint64(w.GapLimit)
				if !ranged {
					want = 1
				}
				if uint64(b.WatchedEnd) != want {
					t.Fatalf("wallet %s branch %d: watched_end %d, want next %d + gap %d", w.Id, b.Branch, b.WatchedEnd, b.NextIndex, w.GapLimit)
				}
				for i := uint32(0); i < b.WatchedEnd; i++ {
					if scripts[fmt.Sprintf("%s/%d/%d", w.Id, b.Branch, i)] == nil {
						t.Fatalf("wallet %s branch %d index %d is not watched", w.Id, b.Branch, i)
					}
				}
				total += int(b.WatchedEnd)
			}
		}
		if next == "" {
			break
		}
		token = next
	}
	if total != len(scripts) {
		t.Fatalf("script table has %d scripts, the wallets' windows %d", len(scripts), total)
	}
	accs, _, err := tf.ListAccounts("", MaxPageSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accs {
		addrs, _, err := tf.ListDepositAddresses(a.Id, "", MaxPageSize)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range addrs {
			rec := scripts[fmt.Sprintf("%s/%d/%d", d.WalletId, d.Branch, d.Index)]
			if rec == nil || rec.AccountId != a.Id || rec.Address != d.Address {
				t.Fatalf("address %s of %s: script table says %v", d.Address, a.Id, rec)
			}
		}
	}
}
