package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"google.golang.org/protobuf/encoding/protojson"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

func TestBankctlChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 3})
	admin := map[string]string{envAddr: strings.Join(c.URLs(), ","), envCA: c.Config.TLS.CAFile, envToken: testcluster.AdminToken}
	client := map[string]string{envAddr: strings.Join(c.URLs(), ","), envCA: c.Config.TLS.CAFile, envToken: testcluster.ClientToken}

	out := mustCtl(t, client, "chain", "status")
	if !strings.Contains(out, "none (no block followed yet)") {
		t.Fatalf("chain status on an empty chain:\n%s", out)
	}
	seed := make([]byte, 32)
	seed[0] = 9
	master, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	tpub, err := master.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	mustCtl(t, admin, "wallet", "create", "-id", "dep", "-kind", "deposit", "-descriptor", "wpkh("+tpub.String()+"/<0;1>/*)")
	mustCtl(t, admin, "accounts", "create", "alice", "-kind", "liability", "-non-negative")
	mustCtl(t, client, "address", "new", "-account", "alice", "-request-id", "r1")
	leader := c.Leader()
	addrs, _, err := leader.FSM().ListDepositAddresses("alice", "", 10)
	if err != nil || len(addrs) != 1 {
		t.Fatalf("addresses %v, %v", addrs, err)
	}
	hash := func(n int) string { return fmt.Sprintf("%064x", n) }
	txid := hash(0xd1)
	_, err = c.ApplyOnLeader(bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, &bankdv1.ChainBlockConnected{
		Height: 300, Hash: hash(300), PrevHash: hash(299), FinalDepth: 1, KeepHashes: 10,
		Txs: []*bankdv1.TxMatch{{Txid: txid, Inputs: []*bankdv1.Outpoint{{Txid: hash(1)}},
			Outputs: []*bankdv1.TxOutputMatch{{Vout: 0, ValueSat: 12_345, Script: addrs[0].Script}}}},
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"chain", "status"}, []string{"300 " + hash(300), "utxos", "1, 12345 sat"}},
		{[]string{"chain", "tx", txid}, []string{"final", "300 " + hash(300) + ", 1 confirmations", "alice", "credited"}},
		{[]string{"chain", "utxos", "-wallet", "dep"}, []string{txid + ":0", "12345", addrs[0].Address}},
		{[]string{"chain", "deposits", "-account", "alice"}, []string{txid + ":0", "credited", "d:"}},
	} {
		out := mustCtl(t, client, tt.args...)
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Fatalf("bankctl %s lacks %q:\n%s", strings.Join(tt.args, " "), w, out)
			}
		}
	}
	code, _, errOut := ctl(t, client, "chain", "rescan", "-from", "300")
	if code != exitFail || !strings.Contains(errOut, "permission_denied") {
		t.Fatalf("rescan with a client token: exit %d, %q", code, errOut)
	}
	out = mustCtl(t, admin, "chain", "rescan", "-from", "300")
	if !strings.Contains(out, "rescan from 300 to 300; next block 300") {
		t.Fatalf("rescan:\n%s", out)
	}
	if out := mustCtl(t, client, "chain", "status"); !strings.Contains(out, "from 300 to 300, next 300") {
		t.Fatalf("status during a rescan:\n%s", out)
	}
	code, _, errOut = ctl(t, client, "chain", "tx", "nothex")
	if code != exitFail || !strings.Contains(errOut, "invalid_argument: txid") {
		t.Fatalf("bad txid: exit %d, %q", code, errOut)
	}
	code, _, errOut = ctl(t, client, "chain", "deposits")
	if code != exitFail || !strings.Contains(errOut, "account_id") {
		t.Fatalf("deposits without -account: exit %d, %q", code, errOut)
	}

	// A client token cannot post a deposit's pending credit: the chain driver owns it.
	deposits, _, err := leader.FSM().ListDeposits("alice", "", 10)
	if err != nil || len(deposits) != 1 {
		t.Fatalf("deposits %v, %v", deposits, err)
	}
	code, _, errOut = ctl(t, client, "pending", "post", deposits[0].TransferId, "-id", "early")
	if code != exitFail || !strings.Contains(errOut, "invalid_argument: transfer.pending_id") || !strings.Contains(errOut, "chain driver") {
		t.Fatalf("client post of a deposit's credit: exit %d, %q", code, errOut)
	}

	// An output of 0 sat paying alice cannot be credited: the block applies and a problem is
	// recorded, which operators list.
	zero := hash(0xd2)
	_, err = c.ApplyOnLeader(bankdv1.CommandType_COMMAND_TYPE_CHAIN_BLOCK_CONNECTED, &bankdv1.ChainBlockConnected{
		Height: 301, Hash: hash(301), PrevHash: hash(300), FinalDepth: 1, KeepHashes: 10,
		Txs: []*bankdv1.TxMatch{{Txid: zero, Inputs: []*bankdv1.Outpoint{{Txid: hash(2)}},
			Outputs: []*bankdv1.TxOutputMatch{{Vout: 0, ValueSat: 0, Script: addrs[0].Script}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = ctl(t, client, "problems")
	if code != exitFail || !strings.Contains(errOut, "permission_denied") {
		t.Fatalf("problems with a client token: exit %d, %q", code, errOut)
	}
	code, out, errOut = ctl(t, admin, "problems")
	if code != exitOK || !strings.Contains(out, "deposit "+zero+":0") || !strings.Contains(out, "chain_block_connected") ||
		!strings.Contains(out, "transfer.amount") || !strings.Contains(errOut, "1 problems recorded") {
		t.Fatalf("problems: exit %d\n%s\n%s", code, out, errOut)
	}
	out = mustCtl(t, admin, "-o", "json", "problems")
	var listed bankdv1.ListProblemsResponse
	if err := protojson.Unmarshal([]byte(out), &listed); err != nil || listed.Total != 1 || len(listed.Problems) != 1 || listed.Problems[0].Owner != bankdv1.Owner_OWNER_CHAIN {
		t.Fatalf("problems as json %q: %v", out, err)
	}
}
