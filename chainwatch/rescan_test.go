package chainwatch_test

import (
	"testing"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/chainwatch"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/wallet/descriptor"
)

// receiveScript derives the receive script at index of a test descriptor.
func receiveScript(t *testing.T, desc string, index uint32) []byte {
	t.Helper()
	d, err := descriptor.Parse(desc, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := d.Multipath()[0].Derive(index)
	if err != nil {
		t.Fatal(err)
	}
	return script
}

// A block whose first output uses the last look-ahead script and whose second pays the script
// that use brings into the window: the block is matched again after it applied and rescanned,
// so both outputs are found.
func TestClusterBlockPayingItsOwnNewLookAheadIsRematched(t *testing.T) {
	c := startChainCluster(t, 3, "")
	c.setup("alice")
	c.waitCaughtUp()
	desc := chainwatch.DepositDescriptor(c.t, 7)
	// No address handed out: the receive window is [0, 20). Index 19 is watched, 20 is not yet.
	last, beyond := receiveScript(t, desc, 19), receiveScript(t, desc, 20)
	tx := c.pay(depositValue, last, beyond)
	c.mine(1)
	c.waitCaughtUp()
	c.eventually("both outputs of the transaction to be UTXOs", func() bool {
		rec, _, err := c.fsm().ChainTx(tx.TxHash().String())
		if err != nil || len(rec.Outputs) != 2 {
			return false
		}
		st, err := c.fsm().ChainStatus()
		return err == nil && st.Utxos == 2 && st.UtxoValueSat == 2*depositValue && st.Rescan == nil
	})
	c.requireReplicasAgree()
}

// A hot wallet created after it was paid is found by a rescan from the payment's height.
func TestClusterRescanFindsPaymentsToAWalletCreatedLater(t *testing.T) {
	c := startChainCluster(t, 3, "")
	c.setup("alice")
	c.waitCaughtUp()
	hotDesc := "wpkh(" + chainwatch.AccountTpub(t, 11) + "/0/*)"
	d, err := descriptor.Parse(hotDesc, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := d.Derive(3)
	if err != nil {
		t.Fatal(err)
	}
	tx := c.pay(70_000, script)
	c.mine(1)
	c.waitCaughtUp()
	paidAt, _, err := c.fsm().ChainTip()
	if err != nil {
		t.Fatal(err)
	}
	c.mine(4)
	c.waitCaughtUp()
	if _, _, err := c.fsm().ChainTx(tx.TxHash().String()); err == nil {
		t.Fatal("a payment to a wallet nobody had created was tracked")
	}
	c.apply(bankdv1.CommandType_COMMAND_TYPE_CREATE_WALLET, &bankdv1.CreateWalletRequest{WalletId: "hot",
		Kind: bankdv1.WalletKind_WALLET_KIND_HOT, Descriptor_: hotDesc, Network: "regtest", BirthdayHeight: paidAt.Height})
	c.apply(bankdv1.CommandType_COMMAND_TYPE_CHAIN_RESCAN, &bankdv1.RescanChainRequest{FromHeight: paidAt.Height})
	rec, _ := c.waitTx(tx.TxHash(), bankdv1.TxState_TX_STATE_FINAL) // 5 deep, final depth 3
	if rec.BlockHeight != paidAt.Height || len(rec.Outputs) != 1 {
		t.Fatalf("rescanned transaction %v", rec)
	}
	c.eventually("the rescan to end", func() bool {
		_, running, err := c.fsm().ChainRescan()
		return err == nil && !running
	})
	us, _, err := c.fsm().ListUtxos("hot", "", 10)
	if err != nil || len(us) != 1 || us[0].ValueSat != 70_000 {
		t.Fatalf("hot wallet utxos %v, %v", us, err)
	}
	// The chain is followed again after the rescan.
	c.mine(1)
	c.waitCaughtUp()
	c.requireReplicasAgree()
}
