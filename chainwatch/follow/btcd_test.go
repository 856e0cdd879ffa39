package follow

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bankd/bankd/chainwatch/chainrpc"
	"github.com/bankd/bankd/regtest"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// TestFollowRealBtcd follows a real btcd through a catch-up, a reorg to a
// longer branch and a reorg to a shorter one, with chainrpc.Client as the
// Remote (skipped when btcd has not been built, unless BANKD_REQUIRE_BTCD is
// set).
func TestFollowRealBtcd(t *testing.T) {
	node := regtest.StartTest(t, regtest.Options{InitialBlocks: 120})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := node.RPC()
	client, err := chainrpc.New(chainrpc.Config{Host: cfg.Host, User: cfg.User, Pass: cfg.Pass, CertPEM: cfg.Cert})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	const start = 100
	f, err := New(Config{StartHeight: start})
	if err != nil {
		t.Fatal(err)
	}
	local := newFakeLocal(start, 50)
	shallow := newFakeLocal(start, 3) // keeps too few hashes for a 4-block reorg

	// follow runs the follower until it is idle and counts the steps.
	follow := func(l *fakeLocal) (connects, disconnects int, err error) {
		for range 1000 {
			s, err := f.Next(ctx, client, l)
			if err != nil {
				return connects, disconnects, err
			}
			if err := l.apply(s); err != nil {
				t.Fatal(err)
			}
			switch s.(type) {
			case Connect:
				connects++
			case Disconnect:
				disconnects++
			case Idle:
				return connects, disconnects, nil
			}
		}
		t.Fatal("not idle after 1000 steps")
		return
	}
	// nodeChain returns the node's best chain from the start height.
	nodeChain := func() []chainhash.Hash {
		t.Helper()
		tip, err := node.Tip(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var hashes []chainhash.Hash
		for h := int64(start); h <= tip.Height; h++ {
			hash, err := client.BlockHash(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, hash)
		}
		return hashes
	}
	// expect follows the node with l and checks that the walk went
	// exactly down to the fork point and up the node's chain.
	expect := func(name string, l *fakeLocal) {
		t.Helper()
		want := nodeChain()
		fork := 0 // blocks shared from the start height
		for fork < len(l.chain) && fork < len(want) && l.chain[fork] == want[fork] {
			fork++
		}
		wantDisconnects, wantConnects := len(l.chain)-fork, len(want)-fork
		c, d, err := follow(l)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c != wantConnects || d != wantDisconnects {
			t.Fatalf("%s: %d connects and %d disconnects, want %d and %d", name, c, d, wantConnects, wantDisconnects)
		}
		if !equalHashes(l.chain, want) {
			t.Fatalf("%s: local chain of %d blocks is not the node's best chain of %d blocks from height %d",
				name, len(l.chain), len(want), start)
		}
		t.Logf("%s: %d disconnects, %d connects", name, d, c)
	}

	expect("catch-up", local)
	expect("catch-up (shallow)", shallow)

	// With no other branch to go back to, btcd's best chain becomes
	// shorter: 4 blocks replaced by 2.
	if _, _, err := node.Reorg(ctx, 4, 2); err != nil {
		t.Fatal(err)
	}
	expect("4-block reorg to a 2-block branch", local)
	if _, _, err := follow(shallow); !errors.Is(err, ErrReorgTooDeep) {
		t.Fatalf("4-block reorg with 3 hashes kept: %v, want ErrReorgTooDeep", err)
	}

	if _, _, err := node.Reorg(ctx, 3, 5); err != nil {
		t.Fatal(err)
	}
	expect("3-block reorg to a longer branch", local)

	if _, err := node.Generate(ctx, 2); err != nil {
		t.Fatal(err)
	}
	expect("new blocks", local)
}
