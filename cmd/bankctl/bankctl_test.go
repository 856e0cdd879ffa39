package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// ctl runs one bankctl command line in-process with env and returns its status and output.
func ctl(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustCtl(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	code, out, errOut := ctl(t, env, args...)
	if code != exitOK {
		t.Fatalf("bankctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestBankctlAgainstACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	c := testcluster.Start(t, testcluster.Spec{Size: 3})
	// A dead node first: bankctl must move on to the next address.
	env := map[string]string{
		envAddr:  "https://127.0.0.1:1," + strings.Join(c.URLs(), ","),
		envToken: testcluster.AdminToken,
		envCA:    c.Config.TLS.CAFile,
	}

	out := mustCtl(t, env, "accounts", "create", "reserve", "-currency", "BTC", "-kind", "asset")
	if !strings.Contains(out, "reserve") || !strings.Contains(out, "asset") {
		t.Fatalf("create reserve:\n%s", out)
	}
	mustCtl(t, env, "accounts", "create", "alice", "-kind", "liability", "-non-negative", "-meta", "tier=gold")

	// Without -id, a generated id is printed so the user can retry.
	code, out, errOut := ctl(t, env, "transfer", "-from", "reserve", "-to", "alice", "-amount", "1500")
	if code != exitOK || !strings.Contains(errOut, "transfer id: ctl-") || !strings.Contains(out, "posted") {
		t.Fatalf("transfer: exit %d\n%s\n%s", code, out, errOut)
	}

	out = mustCtl(t, env, "balance", "alice")
	if fields := strings.Fields(strings.Split(out, "\n")[1]); fields[0] != "alice" || fields[2] != "1500" {
		t.Fatalf("balance alice:\n%s", out)
	}

	out = mustCtl(t, env, "-o", "json", "accounts", "get", "alice")
	var got bankdv1.GetAccountResponse
	if err := protojson.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if got.Account.GetBalance().GetAvailable() != 1500 || got.Account.GetMetadata()["tier"] != "gold" {
		t.Fatalf("alice = %v", got.Account)
	}

	// -region: a stale read goes to the node of that region (n3 is in r3), found through the
	// cluster's members although -addr starts elsewhere.
	out = mustCtl(t, env, "-o", "json", "-stale", "-region", "r3", "accounts", "get", "alice")
	var stale bankdv1.GetAccountResponse
	if err := protojson.Unmarshal([]byte(out), &stale); err != nil || stale.Meta.GetServedBy() != "n3" {
		t.Fatalf("stale read with -region r3: %v, served by %q\n%s", err, stale.Meta.GetServedBy(), out)
	}
	// -min-index past anything applied: the node waits, then answers unavailable, and so does
	// every other node bankctl moves on to.
	code, _, errOut = ctl(t, env, "-stale", "-min-index", "1000000", "-timeout", "3s", "accounts", "get", "alice")
	if code != exitFail || !strings.Contains(errOut, "behind the index 1000000 this client has already read") {
		t.Fatalf("stale read with an unreached -min-index: exit %d, %q", code, errOut)
	}
	mustCtl(t, env, "-stale", "-min-index", fmt.Sprint(stale.Meta.GetAppliedIndex()), "accounts", "get", "alice")

	code, _, errOut = ctl(t, env, "transfer", "-id", "too-much", "-from", "alice", "-to", "reserve", "-amount", "2000")
	if code != exitFail || !strings.HasPrefix(errOut, "bankctl: failed_precondition: ") || !strings.Contains(errOut, "INSUFFICIENT_FUNDS") {
		t.Fatalf("insufficient funds: exit %d, stderr %q", code, errOut)
	}

	mustCtl(t, env, "transfer", "-id", "hold-1", "-from", "alice", "-to", "reserve", "-amount", "500", "-pending", "-timeout", "1m")
	mustCtl(t, env, "pending", "post", "hold-1", "-id", "hold-1-post", "-amount", "200")
	out = mustCtl(t, env, "history", "alice", "-limit", "10")
	for _, want := range []string{"hold-1", "hold-1-post", "pending"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history lacks %q:\n%s", want, out)
		}
	}

	out = mustCtl(t, env, "-o", "json", "lock", "acquire", "acct/alice", "-holder", "w1", "-ttl", "10s")
	var acquired bankdv1.AcquireLockResponse
	if err := protojson.Unmarshal([]byte(out), &acquired); err != nil || acquired.Lock.GetHolder() != "w1" {
		t.Fatalf("lock acquire: %v\n%s", err, out)
	}
	token := fmt.Sprint(acquired.Lock.Token)
	out = mustCtl(t, env, "lock", "renew", "acct/alice", "-holder", "w1", "-lock-token", token, "-ttl", "20s")
	if !strings.Contains(out, "w1") {
		t.Fatalf("lock renew:\n%s", out)
	}
	code, _, errOut = ctl(t, env, "lock", "release", "acct/alice", "-holder", "w2", "-lock-token", token)
	if code != exitFail || !strings.Contains(errOut, "failed_precondition") {
		t.Fatalf("release by another holder: exit %d, %q", code, errOut)
	}
	mustCtl(t, env, "lock", "release", "acct/alice", "-holder", "w1", "-lock-token", token)
	if out = mustCtl(t, env, "lock", "get", "acct/alice"); strings.Contains(out, "w1") {
		t.Fatalf("lock still held after release:\n%s", out)
	}

	out = mustCtl(t, env, "-o", "json", "watch", "-from", "0", "-count", "3")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("watch printed %d lines:\n%s", len(lines), out)
	}
	var prev uint64
	for _, l := range lines {
		var ev bankdv1.Event
		if err := protojson.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("watch line %q: %v", l, err)
		}
		if ev.Index <= prev {
			t.Fatalf("event %d after %d", ev.Index, prev)
		}
		prev = ev.Index
	}

	leader := c.Leader()
	c.WaitApplied(leader.FSM().AppliedIndex())
	env2 := map[string]string{envAddr: strings.Join(c.URLs(), ","), envCA: c.Config.TLS.CAFile, envToken: testcluster.ClientToken}
	if code, _, errOut := ctl(t, env2, "cluster", "hash"); code == 0 || !strings.Contains(errOut, "operator scope") {
		t.Fatalf("cluster hash with a write token: exit %d, %q", code, errOut)
	}
	out = mustCtl(t, map[string]string{envAddr: strings.Join(c.URLs(), ","), envCA: c.Config.TLS.CAFile, envToken: testcluster.AdminToken}, "cluster", "hash")
	if n := strings.Count(out, "\n"); n != 4 {
		t.Fatalf("cluster hash printed %d lines:\n%s", n, out)
	}
	out = mustCtl(t, env2, "cluster", "leader")
	if !strings.Contains(out, leader.ID) {
		t.Fatalf("cluster leader:\n%s", out)
	}
	// Every node runs this binary: every command type is usable (once gossip has them all).
	for deadline := time.Now().Add(15 * time.Second); ; {
		out = mustCtl(t, env2, "cluster", "upgrade-status")
		if strings.Contains(out, "the cluster may use them all") && strings.Count(out, "voter") == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster upgrade-status:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Compaction is an admin's: a write token is refused, an admin drops what is older.
	if code, _, errOut := ctl(t, env2, "cluster", "compact", "-history", "1h"); code != exitFail || !strings.Contains(errOut, "permission_denied") {
		t.Fatalf("cluster compact with a write token: exit %d, %q", code, errOut)
	}
	envAdmin := map[string]string{envAddr: strings.Join(c.URLs(), ","), envCA: c.Config.TLS.CAFile, envToken: testcluster.AdminToken}
	if code, _, errOut := ctl(t, envAdmin, "cluster", "compact"); code == 0 || !strings.Contains(errOut, "nothing to drop") {
		t.Fatalf("cluster compact without a window: exit %d, %q", code, errOut)
	}
	// Only an index bound: an idempotency window would hold back events younger than it, and
	// this cluster is a second old.
	out = mustCtl(t, envAdmin, "cluster", "compact", "-keep-indexes", "1")
	if !strings.Contains(out, "dropped ") || strings.Contains(out, "dropped 0 events") {
		t.Fatalf("cluster compact:\n%s", out)
	}
	code, _, errOut = ctl(t, env2, "cluster", "remove", "n3")
	if code != exitFail || !strings.HasPrefix(errOut, "bankctl: permission_denied: ") {
		t.Fatalf("client token remove: exit %d, %q", code, errOut)
	}

	// The nodes serve TLS only: without the cluster CA bankctl cannot verify them and says how
	// to fix it, and plaintext HTTP gets no answer from the API port.
	noCA := map[string]string{envAddr: c.URLs()[0], envToken: testcluster.AdminToken}
	if code, _, errOut := ctl(t, noCA, "cluster", "status"); code != exitFail || !strings.Contains(errOut, "-ca or BANKCTL_CA") {
		t.Fatalf("bankctl without the CA: exit %d, %q", code, errOut)
	}
	plain := map[string]string{envAddr: strings.Replace(c.URLs()[0], "https://", "http://", 1), envToken: testcluster.AdminToken}
	if code, _, errOut := ctl(t, plain, "-timeout", "3s", "cluster", "status"); code != exitFail {
		t.Fatalf("bankctl over plaintext HTTP to a TLS node: exit %d, %q", code, errOut)
	}
}

func TestBankctlUsage(t *testing.T) {
	env := map[string]string{envAddr: "http://127.0.0.1:1"}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"help"}, exitOK, "accounts create"},
		{[]string{}, exitUsage, "Commands:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"accounts", "create", "x", "-kind", "weird"}, exitUsage, "-kind"},
		{[]string{"accounts", "get"}, exitUsage, "want ID"},
		{[]string{"-o", "yaml", "cluster", "status"}, exitUsage, "-o"},
		{[]string{"transfer", "-from", "a", "-to", "b", "-amount", "1", "-timeout", "5s"}, exitUsage, "needs -pending"},
		{[]string{"cluster", "status"}, exitFail, "bankctl: unavailable: "},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := ctl(t, env, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s\nwant %q", code, tt.code, out, errOut, tt.want)
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		kind string
	}{
		{[]string{"alice", "-kind", "asset"}, []string{"alice"}, "asset"},
		{[]string{"-kind", "asset", "alice"}, []string{"alice"}, "asset"},
		{[]string{"a", "-kind", "x", "b"}, []string{"a", "b"}, "x"},
		{[]string{"-kind", "x", "--", "-y", "z"}, []string{"-y", "z"}, "x"},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		kind := fs.String("kind", "", "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || fmt.Sprint(pos) != fmt.Sprint(tt.pos) || *kind != tt.kind {
			t.Errorf("parseInterspersed(%q) = %q, kind %q, %v", tt.args, pos, *kind, err)
		}
	}
}
