package node

import (
	"fmt"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// recordingIndex is a ScriptIndex that keeps every script it is given.
type recordingIndex struct {
	mu      sync.Mutex
	scripts map[string]bool
	loads   int
}

func newRecordingIndex() *recordingIndex { return &recordingIndex{scripts: map[string]bool{}} }

func (r *recordingIndex) AddScripts(scripts [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range scripts {
		r.scripts[string(s)] = true
	}
}

func (r *recordingIndex) Load(f *fsm.FSM) error {
	r.mu.Lock()
	r.loads++
	r.mu.Unlock()
	return f.ForEachWatchedScript(func(script []byte) error {
		r.AddScripts([][]byte{script})
		return nil
	})
}

// missing returns how many scripts of f's script table the index lacks.
func (r *recordingIndex) missing(t *testing.T, f *fsm.FSM) (missing, total int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	err := f.ForEachWatchedScript(func(script []byte) error {
		total++
		if !r.scripts[string(script)] {
			missing++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return missing, total
}

func testTpub(t *testing.T) string {
	t.Helper()
	seed := make([]byte, 32)
	seed[0] = 0x5c
	k, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []uint32{84, 1, 0} {
		if k, err = k.Derive(hdkeychain.HardenedKeyStart + step); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := k.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	return pub.String()
}

// The script index follows every apply on every node, is loaded when the store opens, and is
// loaded again after a snapshot install (which replaces the store without the apply hook).
func TestScriptIndexFollowsAppliesAndSnapshotInstalls(t *testing.T) {
	c := newTestCluster(t, 3, snapshotOften)
	var mu sync.Mutex
	indexes := map[string]*recordingIndex{}
	c.options = func(id string) Options {
		mu.Lock()
		defer mu.Unlock()
		indexes[id] = newRecordingIndex()
		return Options{ScriptIndex: indexes[id]}
	}
	index := func(id string) *recordingIndex {
		mu.Lock()
		defer mu.Unlock()
		return indexes[id]
	}
	for _, nc := range c.cfg.Nodes {
		c.start(nc.ID)
	}
	leader := c.leader()
	createAccount(t, leader, "alice", bankdv1.AccountKind_ACCOUNT_KIND_LIABILITY)
	_, err := leader.Apply(testCtx(t), bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET, &bankdv1.CreateWalletRequest{
		WalletId: "dep", Kind: bankdv1.WalletKind_WALLET_KIND_DEPOSIT, Network: "regtest", GapLimit: 3,
		Descriptor_: fmt.Sprintf("wpkh(%s/<0;1>/*)", testTpub(t)),
	}, nil)
	if err != nil {
		t.Fatalf("create wallet: %v", err)
	}
	newAddress := func(i int) {
		t.Helper()
		_, err := leader.Apply(testCtx(t), bankdv1.CommandType_COMMAND_TYPE_NEW_DEPOSIT_ADDRESS,
			&bankdv1.NewDepositAddressRequest{AccountId: "alice", RequestId: fmt.Sprintf("r%d", i)}, nil)
		if err != nil {
			t.Fatalf("new address %d: %v", i, err)
		}
	}
	for i := range 3 {
		newAddress(i)
	}
	c.waitConverged(leader.FSM().AppliedIndex())
	for _, n := range c.running() {
		if missing, total := index(n.ID()).missing(t, leader.FSM()); missing > 0 || total != 9 {
			t.Fatalf("node %s's index misses %d of %d scripts (want all of 9: 3 addresses, 3 look-ahead, 3 change)", n.ID(), missing, total)
		}
	}

	follower := c.followers()[0]
	id := follower.ID()
	behind := follower.raft.LastIndex()
	c.stop(id)
	for i := 3; i < 40; i++ {
		newAddress(i)
	}
	c.waitFor("the leader to compact its log past the stopped follower", func() bool {
		first, err := leader.logStore.FirstIndex()
		return err == nil && first > behind+1
	})
	c.start(id)
	c.waitConverged(leader.FSM().AppliedIndex())
	// Raft logs the install just after the restore returns, so it may come after convergence.
	c.waitFor("the follower to report a snapshot install", func() bool {
		return c.logs.has("Installed remote snapshot", "node="+id)
	})
	// The follower may be sent more than one snapshot (the leader snapshots often here), and
	// its state machine reaches the leader's index just before the index is reloaded: wait for
	// the index itself. Without the reload after a restore it would never hold the scripts
	// the snapshot brought.
	restarted := index(id)
	var missing, total int
	c.waitFor("the restarted follower's index to hold every script", func() bool {
		missing, total = restarted.missing(t, leader.FSM())
		return missing == 0
	})
	if total != 46 {
		t.Fatalf("%s's index holds %d scripts, want 46 (40 addresses, 3 look-ahead, 3 change)", id, total)
	}
	restarted.mu.Lock()
	defer restarted.mu.Unlock()
	if restarted.loads < 2 {
		t.Fatalf("the index was loaded %d times, want at open and after the restore", restarted.loads)
	}
}
