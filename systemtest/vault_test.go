package systemtest

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
)

// coldDescriptor is a 2-of-3 wsh(sortedmulti) of three fixed test keys at BIP 48 paths
// (m/48'/1'/0'/2'), with their key origins.
func coldDescriptor(t *testing.T) string {
	t.Helper()
	var keys []string
	for i := range 3 {
		seed := make([]byte, 32)
		seed[0], seed[1] = 0xc0, byte(i)
		master, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
		if err != nil {
			t.Fatal(err)
		}
		fp, err := master.ECPubKey()
		if err != nil {
			t.Fatal(err)
		}
		k := master
		for _, step := range []uint32{48, 1, 0, 2} {
			if k, err = k.Derive(hdkeychain.HardenedKeyStart + step); err != nil {
				t.Fatal(err)
			}
		}
		pub, err := k.Neuter()
		if err != nil {
			t.Fatal(err)
		}
		fingerprint := hex.EncodeToString(btcutil.Hash160(fp.SerializeCompressed())[:4])
		keys = append(keys, fmt.Sprintf("[%s/48h/1h/0h/2h]%s/<0;1>/*", fingerprint, pub))
	}
	return fmt.Sprintf("wsh(sortedmulti(2,%s))", strings.Join(keys, ","))
}

// startColdvault runs coldvault with an operator token of its own against one node.
func (r *payoutRig) startColdvault(node int, band string) string {
	r.t.Helper()
	token := filepath.Join(r.dir, "coldvault.token")
	if err := os.WriteFile(token, []byte(testcluster.OperatorToken+"\n"), 0o600); err != nil {
		r.t.Fatal(err)
	}
	config := filepath.Join(r.dir, "coldvault.hcl")
	hcl := fmt.Sprintf(`api_url = %q
ca_file = %q
token_file = %q
hot_wallet_id = "hot"
cold_wallet_id = "cold"
poll_interval = "200ms"
band {
%s
}
`, r.c.URL(node), r.c.CAFile, token, band)
	if err := os.WriteFile(config, []byte(hcl), 0o600); err != nil {
		r.t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(testcluster.BankdBin()), "coldvault")
	logPath := filepath.Join(r.dir, "coldvault.log")
	logf, err := os.Create(logPath)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("coldvault: %v (run `make build`)", err)
	}
	r.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		if r.t.Failed() {
			b, _ := os.ReadFile(logPath)
			r.t.Logf("coldvault log:\n%s", b)
		}
	})
	return config
}

func (r *payoutRig) vaultProposals() []*bankdv1.VaultProposal {
	return retryUnavailable(r.t, func() ([]*bankdv1.VaultProposal, error) {
		res, err := r.admin().Vault.List(r.ctx, connect.NewRequest(&bankdv1.ListVaultProposalsRequest{}))
		if err != nil {
			return nil, err
		}
		return res.Msg.Proposals, nil
	})
}

// TestTheHotWalletAboveItsBandIsMovedToTheColdVault: coldvault (its own process and operator
// token) sees the hot wallet above its band and proposes a move down to the target; its own
// identity cannot approve it, nor can tokens without the operator scope; another operator
// approves; the payout driver plans it to the 2-of-3 cold wallet's next receive address; signerd,
// which knows the cold descriptor, signs; at final depth it is booked hot -> cold to the
// satoshi, and coldvault finds the hot wallet inside its band.
func TestTheHotWalletAboveItsBandIsMovedToTheColdVault(t *testing.T) {
	r := newPayoutRig(t, 1, 2, 3_000_000)
	r.mine(2) // the hot wallet's funding is final: its books hold it
	cold := coldDescriptor(t)
	if _, err := r.admin().Wallet.CreateWallet(r.ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
		WalletId: "cold", Kind: bankdv1.WalletKind_WALLET_KIND_COLD, Descriptor_: cold, GapLimit: 20})); err != nil {
		t.Fatalf("create cold wallet: %v", err)
	}
	config := r.startColdvault(followerOf(r.c, -1), "min_sat = 1000000\ntarget_sat = 2000000\nmax_sat = 4000000")
	var p *bankdv1.VaultProposal
	r.waitFor("coldvault's proposal", func() (bool, error) {
		ps := r.vaultProposals()
		if len(ps) > 0 {
			p = ps[0]
		}
		return len(ps) > 0, nil
	})
	if p.Direction != bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD || p.AmountSat != 4_000_000 || p.State != bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_PROPOSED {
		t.Fatalf("proposal %v, want 4,000,000 sat to cold (6,000,000 down to 2,000,000)", p)
	}

	// Attackers: coldvault's own identity, and tokens without the operator scope.
	approve := func(token string) error {
		_, err := r.any(token).Vault.Approve(r.ctx, connect.NewRequest(&bankdv1.DecideVaultProposalRequest{Id: p.Id}))
		return err
	}
	if err := approve(testcluster.OperatorToken); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("the proposer approving its own move: %v, want failed precondition", err)
	}
	for _, token := range []string{testcluster.ClientToken, testcluster.ReadToken, testcluster.SignerToken} {
		if err := approve(token); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("approve with the %s token: %v, want permission denied", token, err)
		}
		_, err := r.any(token).Vault.Propose(r.ctx, connect.NewRequest(&bankdv1.ProposeVaultTransferRequest{Id: "evil",
			Direction: bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD, ColdWalletId: "cold", AmountSat: 1, Reason: "x"}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Fatalf("propose with the %s token: %v, want permission denied", token, err)
		}
	}
	if err := approve(testcluster.AdminToken); err != nil {
		t.Fatalf("approve: %v", err)
	}

	r.startSignerFor(followerOf(r.c, -1), "signerd", "hot", r.desc, r.keyFile, fmt.Sprintf("cold_wallet_id = \"cold\"\ncold_descriptor = %q\n", cold))
	r.waitFor("the move final", func() (bool, error) {
		res, err := r.admin().Vault.Get(r.ctx, connect.NewRequest(&bankdv1.GetVaultProposalRequest{Id: p.Id}))
		if err != nil {
			return false, err
		}
		switch res.Msg.Proposal.State {
		case bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_FINAL:
			p = res.Msg.Proposal
			return true, nil
		case bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_BROADCAST, bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_CONFIRMED:
			if in, err := r.btcd.InMempool(r.ctx, mustHash(t, res.Msg.Proposal.Txid)); err != nil || in || res.Msg.Proposal.State == bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_CONFIRMED {
				r.mine(1)
			}
		}
		return false, nil
	})
	b := retryUnavailable(t, func() (*bankdv1.PayoutBatch, error) {
		res, err := r.admin().Payout.GetBatch(r.ctx, connect.NewRequest(&bankdv1.GetPayoutBatchRequest{BatchId: p.BatchId}))
		if err != nil {
			return nil, err
		}
		return res.Msg.Batch, nil
	})
	if b.Queue != fsm.VaultQueue || b.VaultWalletId != "cold" || b.Outputs[0].ValueSat != 4_000_000 || b.State != bankdv1.BatchState_BATCH_STATE_FINAL {
		t.Fatalf("vault batch %v", b)
	}

	// The books, to the satoshi.
	recon, err := r.admin().Payout.ReconcileWallets(r.ctx, connect.NewRequest(&bankdv1.ReconcileWalletsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"hot": r.funded - 4_000_000 - b.FeeSat, "cold": 4_000_000}
	for _, w := range recon.Msg.Wallets {
		if w.LedgerSat != want[w.WalletId] || w.DifferenceSat != 0 {
			t.Fatalf("wallet %s: books %d, UTXOs %d; want %d and no difference", w.WalletId, w.LedgerSat, w.UtxoSat, want[w.WalletId])
		}
	}
	if s := recon.Msg.Solvency; s.WalletsSat != r.funded-b.FeeSat {
		t.Fatalf("solvency %v", s)
	}
	t.Logf("moved 4,000,000 sat hot -> cold in %s for a fee of %d sat (%d vB)", b.Txid, b.FeeSat, b.Vsize)

	// Inside its band now: coldvault proposes nothing more.
	out, err := exec.Command(filepath.Join(filepath.Dir(testcluster.BankdBin()), "coldvault"), "check", "-config", config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "no move proposed") {
		t.Fatalf("coldvault check: %v\n%s", err, out)
	}
	if n := len(r.vaultProposals()); n != 1 {
		t.Fatalf("%d proposals, want the one", n)
	}
	requireSameStateHash(t, r.c)
}
