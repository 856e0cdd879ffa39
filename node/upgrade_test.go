package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

// TestANewCommandTypeWaitsForEveryNode: while one node advertises only the baseline command
// types (an older binary), the leader refuses a newer type, naming that node, and still takes
// baseline ones, and keeps the baseline stored format; once the node runs a binary that applies
// the type, the leader proposes it, and switches the stored format.
func TestANewCommandTypeWaitsForEveryNode(t *testing.T) {
	c := newTestCluster(t, 3, testRaft)
	c.options = func(id string) Options {
		if id == c.cfg.Nodes[2].ID {
			return Options{advertisedTypes: fsm.BaselineCommandTypes}
		}
		return Options{}
	}
	for _, nc := range c.cfg.Nodes {
		c.start(nc.ID)
	}
	old := c.cfg.Nodes[2].ID
	newType := bankdv1.CommandType_COMMAND_TYPE_VAULT_PROPOSE
	body := &bankdv1.VaultProposeCommand{Request: &bankdv1.ProposeVaultTransferRequest{Id: "v1"}, HotWalletId: "hot"}
	var err error
	// The leader must be a current binary (an old one would not know the type at all).
	c.waitFor("the leader to refuse the new type because of "+old, func() bool {
		leader := c.leader()
		if leader.ID() == old {
			_, _ = leader.TransferLeadership(context.Background(), c.cfg.Nodes[0].ID)
			return false
		}
		_, err = leader.Apply(context.Background(), newType, body, nil)
		return errors.Is(err, ErrNotUpgraded)
	})
	if !strings.Contains(err.Error(), old) || strings.Contains(err.Error(), c.cfg.Nodes[0].ID+" ") {
		t.Fatalf("refusal %q, want it to name %s only", err, old)
	}
	// Baseline types go on.
	if _, err := c.leader().Apply(context.Background(), bankdv1.CommandType_COMMAND_TYPE_TICK, nil, nil); err != nil {
		t.Fatalf("a baseline command: %v", err)
	}
	// So does retention: COMPACT is newer than the baseline too, and is refused whether or not
	// anything is due.
	if _, err := c.leader().Compact(context.Background(), RetentionConfig{KeepIndexes: 1 << 40}); !errors.Is(err, ErrNotUpgraded) {
		t.Fatalf("compact with an old node: %v, want ErrNotUpgraded", err)
	}
	// So is CREATE_ACCOUNTS (the batch behind LedgerService.CreateAccounts).
	accounts := &bankdv1.CreateAccountsRequest{Accounts: []*bankdv1.Account{{Id: "a1", Currency: "BTC", Kind: bankdv1.AccountKind_ACCOUNT_KIND_ASSET}}}
	if _, err := c.leader().Apply(context.Background(), bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS, accounts, nil); !errors.Is(err, ErrNotUpgraded) || !strings.Contains(err.Error(), old) {
		t.Fatalf("create accounts with an old node: %v, want ErrNotUpgraded naming %s", err, old)
	}
	// So is BOOK_ADJUSTMENT (LedgerService.BookAdjustment).
	adjustment := &bankdv1.BookAdjustmentRequest{Id: "adj-1", AccountId: "ln:pool-1", AmountSat: 1, Kind: bankdv1.AdjustmentKind_ADJUSTMENT_KIND_OTHER,
		Reason: "gate", ExternalReference: "gate"}
	if _, err := c.leader().Apply(context.Background(), bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT, adjustment, nil); !errors.Is(err, ErrNotUpgraded) || !strings.Contains(err.Error(), old) {
		t.Fatalf("book adjustment with an old node: %v, want ErrNotUpgraded naming %s", err, old)
	}
	// So are DECLARE_LND_LOST and RESOLVE_LOST_PAYMENT (LightningService.DeclareNodeLost,
	// ResolveLostPayment).
	lost := []struct {
		typ  bankdv1.CommandType
		body proto.Message
	}{
		{bankdv1.CommandType_COMMAND_TYPE_DECLARE_LND_LOST, &bankdv1.DeclareLndLostRequest{NodeId: "pool-1", Reason: "gate"}},
		{bankdv1.CommandType_COMMAND_TYPE_RESOLVE_LOST_PAYMENT, &bankdv1.ResolveLostPaymentRequest{PaymentId: "p1",
			Evidence: bankdv1.LostPaymentEvidence_LOST_PAYMENT_EVIDENCE_PAYEE_STATEMENT, Reference: "gate"}},
	}
	for _, l := range lost {
		if _, err := c.leader().Apply(context.Background(), l.typ, l.body, nil); !errors.Is(err, ErrNotUpgraded) || !strings.Contains(err.Error(), old) {
			t.Fatalf("%s with an old node: %v, want ErrNotUpgraded naming %s", l.typ, err, old)
		}
	}
	// Nor does the leader switch the stored format, which the old node would not read.
	for _, n := range c.running() {
		if f := n.fsm.Format(); f != fsm.FormatBaseline {
			t.Fatalf("%s is in stored format %d with an old node in the cluster", n.ID(), f)
		}
	}
	if _, err := c.leader().SwitchFormat(context.Background()); !errors.Is(err, ErrNotUpgraded) || !strings.Contains(err.Error(), old) {
		t.Fatalf("format switch with an old node: %v, want ErrNotUpgraded naming %s", err, old)
	}
	// The old node is upgraded: restarted with this binary's set.
	c.options = nil
	c.stop(old)
	c.start(old)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = c.leader().Apply(context.Background(), newType, body, nil)
		if !errors.Is(err, ErrNotUpgraded) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after the upgrade: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var refusal *fsm.Error
	if err != nil && !errors.As(err, &refusal) {
		t.Fatalf("after the upgrade: %v, want the state machine's answer", err)
	}
	res, err := c.leader().Apply(context.Background(), bankdv1.CommandType_COMMAND_TYPE_CREATE_ACCOUNTS, accounts, nil)
	if created, ok := res.(*bankdv1.CreateAccountsResponse); err != nil || !ok || created.Results[0].GetCode() != bankdv1.ResultCode_RESULT_CODE_OK {
		t.Fatalf("create accounts after the upgrade: %v, %v", res, err)
	}
	// Proposed now, the state machine answers (no such node account here, and no principal).
	if _, err := c.leader().Apply(context.Background(), bankdv1.CommandType_COMMAND_TYPE_BOOK_ADJUSTMENT, adjustment, nil); !errors.As(err, &refusal) {
		t.Fatalf("book adjustment after the upgrade: %v, want the state machine's answer", err)
	}
	for _, l := range lost {
		if _, err := c.leader().Apply(context.Background(), l.typ, l.body, nil); !errors.As(err, &refusal) {
			t.Fatalf("%s after the upgrade: %v, want the state machine's answer", l.typ, err)
		}
	}
	// And the leader's format driver switches every replica to the newest stored format.
	c.waitFor("every node to switch to the newest stored format", func() bool {
		for _, n := range c.running() {
			if n.fsm.Format() != fsm.LatestFormat {
				return false
			}
		}
		return true
	})

	// A member that goes back to the older binary with its data dir cannot be refused; the
	// leader says what its stale reads miss.
	c.stop(old)
	c.options = func(string) Options { return Options{advertisedTypes: fsm.BaselineCommandTypes} }
	c.start(old)
	c.waitFor("the leader to warn of the member on the older binary", func() bool {
		return c.logs.has(fmt.Sprintf("member reads stored formats up to %d but the store is in format %d", fsm.FormatBaseline, fsm.LatestFormat), "member="+old)
	})

	// From now on a node on the older binary may not join, even with a fresh data dir: it
	// would take the grouped history in its snapshot as missing.
	if _, err := c.leader().RemoveNode(testCtx(t), old); err != nil {
		t.Fatalf("remove %s: %v", old, err)
	}
	nc, _ := c.cfg.Node(old)
	c.stop(old)
	if err := os.RemoveAll(nc.DataDir); err != nil {
		t.Fatal(err)
	}
	downgraded := c.start(old)
	leader := c.leader()
	c.waitFor("the leader to refuse to add the node on the older binary", func() bool {
		return c.logs.has(fmt.Sprintf("node reads stored formats up to %d but the store is in format %d", fsm.FormatBaseline, fsm.LatestFormat), "node="+leader.ID(), "member="+old)
	})
	if servers, err := leader.servers(); err != nil || inConfiguration(servers, downgraded.RaftID()) {
		t.Fatalf("the node on the older binary is in the configuration (%v)", err)
	}
	// Upgraded, it joins.
	c.options = nil
	c.stop(old)
	if err := os.RemoveAll(nc.DataDir); err != nil {
		t.Fatal(err)
	}
	rejoined := c.start(old)
	c.waitFor("the upgraded node to join and reach the stored format", func() bool {
		servers, err := c.leader().servers()
		return err == nil && inConfiguration(servers, rejoined.RaftID()) && rejoined.fsm.Format() == fsm.LatestFormat
	})
}

// TestHoldStoredFormat: with hold_stored_format at the baseline the leader never switches the
// store, though every node reads the newest format, and says the store is held.
func TestHoldStoredFormat(t *testing.T) {
	c := newTestCluster(t, 3, testRaft)
	c.cfg.HoldStoredFormat = fsm.FormatBaseline
	for _, nc := range c.cfg.Nodes {
		c.start(nc.ID)
	}
	leader := c.leader()
	c.waitFor("the leader to say the format is held", func() bool {
		return c.logs.has("stored format held by hold_stored_format", "node="+leader.ID())
	})
	done, err := leader.SwitchFormat(testCtx(t))
	if err != nil || !done {
		t.Fatalf("SwitchFormat with a hold: done %v, %v; want done at once", done, err)
	}
	for _, n := range c.running() {
		if f := n.fsm.Format(); f != fsm.FormatBaseline {
			t.Fatalf("%s switched to format %d under a hold at %d", n.ID(), f, fsm.FormatBaseline)
		}
	}
}
