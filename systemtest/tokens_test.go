package systemtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// TestTokenFilesRotateOnSIGHUP runs real processes with a named token whose secret lives in a
// file: the secret is rotated by rewriting the file and sending SIGHUP, after which the old
// secret is refused everywhere (also through a follower's forwarding); a file made readable by
// other users is refused at reload, and the tokens in force stay.
func TestTokenFilesRotateOnSIGHUP(t *testing.T) {
	file := filepath.Join(t.TempDir(), "payments.token")
	writeSecret := func(secret string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, mode); err != nil {
			t.Fatal(err)
		}
	}
	const first, second, third = "payments-secret-one-0123456789", "payments-secret-two-0123456789", "payments-secret-three-012345678"
	writeSecret(first, 0o600)
	c := startCluster(t, testcluster.Spec{Tokens: testcluster.Tokens{
		Blocks: []testcluster.TokenBlock{{Name: "payments", Scopes: []string{"write"}, File: file}},
	}})
	leader, admin := leaderClient(t, c)
	follower := followerOf(c, leader)
	createAccount(t, admin, "reserve", asset, false)

	accounts := 0
	write := func(i int, secret string) error {
		accounts++
		_, err := c.Client(i, secret).Ledger.CreateAccount(ctxFor(t, 10*time.Second), connect.NewRequest(&bankdv1.CreateAccountRequest{
			Account: &bankdv1.Account{Id: fmt.Sprintf("acct-%d", accounts), Currency: "BTC", Kind: liability, NonNegative: true},
		}))
		return err
	}
	// waitAll waits until every node answers secret with want (nil: success).
	waitAll := func(what, secret string, want connect.Code) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for i := range c.Nodes {
			for {
				err := write(i, secret)
				if (want == 0 && err == nil) || (want != 0 && connect.CodeOf(err) == want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s on %s: %v", what, c.Nodes[i].ID, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}

	waitAll("the file's secret", first, 0)
	if err := write(follower, first); err != nil {
		t.Fatalf("a write through a follower: %v", err)
	}
	if _, err := c.Client(leader, first).Cluster.StateHash(context.Background(), connect.NewRequest(&bankdv1.StateHashRequest{})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a write token asking for the state hash: %v, want PermissionDenied", err)
	}

	writeSecret(second, 0o600)
	for i := range c.Nodes {
		if err := c.Reload(i); err != nil {
			t.Fatal(err)
		}
	}
	waitAll("the rotated secret", second, 0)
	waitAll("the old secret after rotation", first, connect.CodeUnauthenticated)

	writeSecret(third, 0o644)
	if err := c.Reload(leader); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.LogTail(leader, 50), "open to other users") {
		if time.Now().After(deadline) {
			t.Fatalf("the leader never refused the world-readable token file; log:\n%s", c.LogTail(leader, 50))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := write(leader, second); err != nil {
		t.Fatalf("after a refused reload the tokens in force stay: %v", err)
	}
	if err := write(leader, third); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("the secret of a refused file: %v, want Unauthenticated", err)
	}
	for i := range c.Nodes {
		if !c.Running(i) {
			t.Fatalf("node %s stopped", c.Nodes[i].ID)
		}
	}
}
