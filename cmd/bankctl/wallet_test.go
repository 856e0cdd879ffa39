package main

import (
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"google.golang.org/protobuf/encoding/protojson"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

func TestBankctlWalletsAndAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 3})
	admin := map[string]string{envAddr: strings.Join(c.URLs(), ","), envCA: c.Config.TLS.CAFile, envToken: testcluster.AdminToken}
	client := map[string]string{envAddr: strings.Join(c.URLs(), ","), envCA: c.Config.TLS.CAFile, envToken: testcluster.ClientToken}

	seed := make([]byte, 32)
	master, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	tpub, err := master.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	desc := "wpkh(" + tpub.String() + "/<0;1>/*)"

	code, _, errOut := ctl(t, client, "wallet", "create", "-id", "dep", "-kind", "deposit", "-descriptor", desc)
	if code != exitFail || !strings.HasPrefix(errOut, "bankctl: permission_denied: ") {
		t.Fatalf("wallet create with a client token: exit %d, %q", code, errOut)
	}
	out := mustCtl(t, admin, "wallet", "create", "-id", "dep", "-kind", "deposit", "-descriptor", desc, "-gap-limit", "4")
	for _, want := range []string{"dep", "deposit", "regtest", "#", "next 0, watched 0-3"} {
		if !strings.Contains(out, want) {
			t.Fatalf("wallet create lacks %q:\n%s", want, out)
		}
	}
	out = mustCtl(t, admin, "wallet", "create", "dep", "-kind", "deposit", "-descriptor", desc, "-gap-limit", "4")
	if !strings.Contains(out, "already exists with this definition") {
		t.Fatalf("wallet create retry:\n%s", out)
	}
	code, _, errOut = ctl(t, admin, "wallet", "create", "-id", "bad", "-kind", "hot", "-descriptor", "wpkh("+tpub.String()+"/0h/*)")
	if code != exitFail || !strings.Contains(errOut, "invalid_argument: descriptor: hardened derivation") {
		t.Fatalf("bad descriptor: exit %d, %q", code, errOut)
	}

	mustCtl(t, admin, "accounts", "create", "alice", "-kind", "liability", "-non-negative")
	code, out, errOut = ctl(t, client, "address", "new", "-account", "alice")
	if code != exitOK || !strings.Contains(errOut, "request id: ctl-") || !strings.Contains(out, "bcrt1q") {
		t.Fatalf("address new: exit %d\n%s\n%s", code, out, errOut)
	}
	out = mustCtl(t, client, "-o", "json", "address", "new", "-account", "alice", "-request-id", "r2")
	var res bankdv1.NewDepositAddressResponse
	if err := protojson.Unmarshal([]byte(out), &res); err != nil || res.Address.GetIndex() != 1 {
		t.Fatalf("address new -o json: %v\n%s", err, out)
	}
	again := mustCtl(t, client, "address", "new", "-account", "alice", "-request-id", "r2")
	if !strings.Contains(again, "already applied") || !strings.Contains(again, res.Address.Address) {
		t.Fatalf("address new retry:\n%s", again)
	}

	out = mustCtl(t, client, "address", "list", "-account", "alice")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[2], res.Address.Address) {
		t.Fatalf("address list:\n%s", out)
	}
	out = mustCtl(t, client, "address", "lookup", res.Address.Address)
	if !strings.Contains(out, "alice") || !strings.Contains(out, "receive") {
		t.Fatalf("address lookup:\n%s", out)
	}
	out = mustCtl(t, client, "wallet", "list")
	if !strings.Contains(out, "next 2, watched 0-5") || !strings.Contains(out, "next 0, watched 0-3") {
		t.Fatalf("wallet list:\n%s", out)
	}
	out = mustCtl(t, client, "wallet", "get", "dep")
	if !strings.Contains(out, desc[:20]) || !strings.Contains(out, "served by") {
		t.Fatalf("wallet get:\n%s", out)
	}
	out = mustCtl(t, client, "watch", "-from", "0", "-count", "4")
	if !strings.Contains(out, "wallet-created dep deposit regtest") || !strings.Contains(out, "deposit-address bcrt1q") {
		t.Fatalf("watch:\n%s", out)
	}
}

func TestBankctlWalletUsage(t *testing.T) {
	env := map[string]string{envAddr: "http://127.0.0.1:1"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"wallet", "create", "-kind", "deposit"}, "want the wallet id"},
		{[]string{"wallet", "create", "w", "-kind", "warm"}, `-kind "warm"`},
		{[]string{"wallet", "create", "a", "-id", "b", "-kind", "hot"}, "name different wallets"},
		{[]string{"wallet", "get"}, "want ID"},
		{[]string{"address", "lookup"}, "want ADDRESS"},
		{[]string{"address", "list", "-account", "a", "-limit", "0"}, "-limit"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := ctl(t, env, tt.args...)
			if code != exitUsage || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, exitUsage, out, errOut, tt.want)
			}
		})
	}
}
