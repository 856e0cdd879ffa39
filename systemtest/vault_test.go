package systemtest

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"

	"github.com/bankd/bankd/coldvault"
	"github.com/bankd/bankd/fsm"
	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
	"github.com/bankd/bankd/internal/testcluster"
	"github.com/bankd/bankd/wallet/descriptor"
)

// cosignerMaster is the master key of test cosigner i (0-2 are the cold vault's; any other is
// a stranger's).
func cosignerMaster(t *testing.T, i int) *hdkeychain.ExtendedKey {
	t.Helper()
	seed := make([]byte, 32)
	seed[0], seed[1] = 0xc0, byte(i)
	master, err := hdkeychain.NewMaster(seed, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return master
}

// coldDescriptor is a 2-of-3 wsh(sortedmulti) of cosigners 0-2 at BIP 48 paths
// (m/48'/1'/0'/2'), with their key origins.
func coldDescriptor(t *testing.T) string {
	t.Helper()
	var keys []string
	for i := range 3 {
		master := cosignerMaster(t, i)
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
metrics_addr = "127.0.0.1:0"
band {
%s
}
`, r.c.URL(node), r.c.CAFile, token, band)
	if err := os.WriteFile(config, []byte(hcl), 0o600); err != nil {
		r.t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(testcluster.BankdBin()), "coldvault")
	logPath := filepath.Join(r.dir, "coldvault.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("coldvault: %v (run `make build`)", err)
	}
	r.coldvault = cmd
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

// coldvaultMetric reads one sample of the running coldvault's /metrics, e.g.
// `bankd_coldvault_hot_wallet_sat{wallet="hot"}`; ok is false until coldvault has exported it.
// The port is the one coldvault logged (metrics_addr asks for any free one).
func (r *payoutRig) coldvaultMetric(sample string) (v float64, ok bool) {
	r.t.Helper()
	log, err := os.ReadFile(filepath.Join(r.dir, "coldvault.log"))
	if err != nil {
		r.t.Fatal(err)
	}
	m := regexp.MustCompile(`msg="metrics serving" addr=(\S+)`).FindSubmatch(log)
	if m == nil {
		return 0, false
	}
	res, err := http.Get("http://" + string(m[1]) + "/metrics")
	if err != nil {
		r.t.Fatalf("coldvault /metrics: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, found := strings.CutPrefix(line, sample+" "); found {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				r.t.Fatalf("coldvault metric %q: %v", line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// killColdvault SIGKILLs the running coldvault.
func (r *payoutRig) killColdvault() {
	r.t.Helper()
	if err := r.coldvault.Process.Kill(); err != nil {
		r.t.Fatal(err)
	}
	_ = r.coldvault.Wait()
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
	// coldvault's metrics say the hot wallet is above its band (what BankdHotWalletOutsideBand
	// compares).
	const hotSample, maxSample = `bankd_coldvault_hot_wallet_sat{wallet="hot"}`, `bankd_coldvault_band_sat{bound="max",wallet="hot"}`
	if v, ok := r.coldvaultMetric(hotSample); !ok || v != 6_000_000 {
		t.Fatalf("coldvault exports the hot wallet at %v (exported: %v), want 6000000", v, ok)
	}
	if v, ok := r.coldvaultMetric(maxSample); !ok || v != 4_000_000 {
		t.Fatalf("coldvault exports the band's maximum at %v (exported: %v), want 4000000", v, ok)
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

	// Inside its band now, and coldvault's metrics say so.
	r.waitFor("coldvault's metrics to show the hot wallet inside its band", func() (bool, error) {
		v, _ := r.coldvaultMetric(hotSample)
		return v == float64(want["hot"]), nil
	})
	// coldvault proposes nothing more.
	out, err := exec.Command(filepath.Join(filepath.Dir(testcluster.BankdBin()), "coldvault"), "check", "-config", config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "no move proposed") {
		t.Fatalf("coldvault check: %v\n%s", err, out)
	}
	if n := len(r.vaultProposals()); n != 1 {
		t.Fatalf("%d proposals, want the one", n)
	}
	requireSameStateHash(t, r.c)
}

// TestTheHotWalletBelowItsBandIsRefilledByTwoOfThreeCosigners: coldvault proposes a refill
// from the 2-of-3 cold vault; once approved the cluster plans it with everything a cosigner
// needs in the PSBT; a stranger's key has nothing to sign, a signature over a tampered
// transaction is refused, one cosigner's signature leaves the move waiting (coldvault
// SIGKILLed and restarted meanwhile loses nothing: its state is the cluster's), the second
// one's completes it; the cluster broadcasts it and books it cold -> hot to the satoshi.
func TestTheHotWalletBelowItsBandIsRefilledByTwoOfThreeCosigners(t *testing.T) {
	r := newPayoutRig(t, 1, 1, 1_000_000)
	cold := coldDescriptor(t)
	if _, err := r.admin().Wallet.CreateWallet(r.ctx, connect.NewRequest(&bankdv1.CreateWalletRequest{
		WalletId: "cold", Kind: bankdv1.WalletKind_WALLET_KIND_COLD, Descriptor_: cold, GapLimit: 20})); err != nil {
		t.Fatalf("create cold wallet: %v", err)
	}
	d, err := descriptor.Parse(cold, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	coldScript, err := d.Multipath()[0].Derive(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.btcd.Send(r.ctx, []*wire.TxOut{{Value: 5_000_000, PkScript: coldScript}}, 0); err != nil {
		t.Fatal(err)
	}
	r.mine(3) // both wallets' funding final and booked
	config := r.startColdvault(followerOf(r.c, -1), "min_sat = 2000000\ntarget_sat = 3000000\nmax_sat = 10000000")
	var p *bankdv1.VaultProposal
	r.waitFor("coldvault's refill proposal", func() (bool, error) {
		ps := r.vaultProposals()
		if len(ps) > 0 {
			p = ps[0]
		}
		return len(ps) > 0, nil
	})
	began := time.Now()
	if p.Direction != bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT || p.AmountSat != 2_000_000 {
		t.Fatalf("proposal %v, want 2,000,000 sat to hot (1,000,000 up to 3,000,000)", p)
	}
	if _, err := r.any(testcluster.AdminToken).Vault.Approve(r.ctx, connect.NewRequest(&bankdv1.DecideVaultProposalRequest{Id: p.Id})); err != nil {
		t.Fatal(err)
	}
	var b *bankdv1.PayoutBatch
	r.waitFor("the refill planned", func() (bool, error) {
		res, err := r.admin().Vault.Get(r.ctx, connect.NewRequest(&bankdv1.GetVaultProposalRequest{Id: p.Id}))
		if err != nil {
			return false, err
		}
		b = res.Msg.Batch
		return b != nil, nil
	})
	if b.SignaturesRequired != 2 || b.WalletId != "cold" || b.VaultWalletId != "hot" {
		t.Fatalf("refill batch %v", b)
	}

	bin := filepath.Join(filepath.Dir(testcluster.BankdBin()), "coldvault")
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	// What the cosigners' wallets import.
	if out, err := run("export", "-config", config, "-format", "coldcard"); err != nil || !strings.Contains(out, "Policy: 2 of 3") || strings.Count(out, "Derivation: m/48'/1'/0'/2'") != 3 {
		t.Fatalf("coldvault export coldcard: %v\n%s", err, out)
	}
	addr, err := d.Multipath()[0].Address(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := run("export", "-config", config, "-format", "bsms"); err != nil || !strings.HasPrefix(out, "BSMS 1.0\n") || !strings.Contains(out, addr.EncodeAddress()) {
		t.Fatalf("coldvault export bsms: %v\n%s, want the first address %s", err, out, addr)
	}

	psbtFile := filepath.Join(r.dir, "refill.psbt")
	if out, err := run("psbt", "-config", config, "-out", psbtFile, p.Id); err != nil {
		t.Fatalf("coldvault psbt: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(psbtFile)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := func(i int) string {
		path := filepath.Join(r.dir, fmt.Sprintf("cosigner-%d.key", i))
		if err := os.WriteFile(path, []byte(cosignerMaster(t, i).String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sign := func(i int) string {
		out := filepath.Join(r.dir, fmt.Sprintf("refill-%d.psbt", i))
		if res, err := run("sign", "-key", keyFile(i), "-in", psbtFile, "-out", out); err != nil {
			t.Fatalf("coldvault sign as cosigner %d: %v\n%s", i, err, res)
		}
		return out
	}
	if out, err := run("sign", "-key", keyFile(9), "-in", psbtFile, "-out", filepath.Join(r.dir, "stranger.psbt")); err == nil || !strings.Contains(out, "no input") {
		t.Fatalf("a stranger's key signed: %v\n%s", err, out)
	}

	// A cosigner's signature over a tampered transaction (another amount to hot) is refused.
	packet, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	tampered, err := psbt.NewFromRawBytes(bytes.NewReader(packet), false)
	if err != nil {
		t.Fatal(err)
	}
	for i, in := range tampered.Inputs {
		if in.NonWitnessUtxo == nil || in.WitnessUtxo == nil || len(in.WitnessScript) == 0 || len(in.Bip32Derivation) != 3 {
			t.Fatalf("input %d lacks what a hardware cosigner needs: %+v", i, in)
		}
	}
	tampered.UnsignedTx.TxOut[0].Value += 100_000
	var buf bytes.Buffer
	if err := tampered.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	forged, _, err := coldvault.Sign(cosignerMaster(t, 1), buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.any(testcluster.OperatorToken).Vault.SubmitSignature(r.ctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: b.Id, Psbt: forged})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a signature over a tampered transaction: %v, want invalid argument", err)
	}
	if _, err := r.any(testcluster.SignerToken).Vault.SubmitSignature(r.ctx, connect.NewRequest(&bankdv1.SubmitPayoutSignatureRequest{BatchId: b.Id, Psbt: packet})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a signer token at the vault: %v, want permission denied", err)
	}

	// The first cosigner's PSBT through bankctl, the second's through coldvault.
	bankctl := exec.Command(filepath.Join(filepath.Dir(testcluster.BankdBin()), "bankctl"), "-addr", r.c.URL(followerOf(r.c, -1)), "-ca", r.c.CAFile,
		"-token", testcluster.OperatorToken, "vault", "sign-import", p.Id, sign(0))
	if out, err := bankctl.CombinedOutput(); err != nil || !strings.Contains(string(out), "1 of 2") {
		t.Fatalf("first cosigner through bankctl: %v\n%s", err, out)
	}
	r.killColdvault()
	r.startColdvault(followerOf(r.c, -1), "min_sat = 2000000\ntarget_sat = 3000000\nmax_sat = 10000000")
	if out, err := run("submit", "-config", config, p.Id, sign(2)); err != nil || !strings.Contains(out, "is signed") {
		t.Fatalf("second cosigner: %v\n%s", err, out)
	}
	// The leader is killed once the signed transaction is the cluster's: the next one
	// broadcasts it, once.
	leader, _ := leaderClient(t, r.c)
	t.Logf("SIGKILL leader %s with the refill signed", r.c.Nodes[leader].ID)
	if err := r.c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	if err := r.c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the refill final", func() (bool, error) {
		res, err := r.admin().Vault.Get(r.ctx, connect.NewRequest(&bankdv1.GetVaultProposalRequest{Id: p.Id}))
		if err != nil {
			return false, err
		}
		b = res.Msg.Batch
		switch res.Msg.Proposal.State {
		case bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_FINAL:
			return true, nil
		case bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_BROADCAST, bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_CONFIRMED:
			if in, err := r.btcd.InMempool(r.ctx, mustHash(t, b.Txid)); err != nil || in || res.Msg.Proposal.State == bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_CONFIRMED {
				r.mine(1)
			}
		}
		return false, nil
	})
	recon, err := r.admin().Payout.ReconcileWallets(r.ctx, connect.NewRequest(&bankdv1.ReconcileWalletsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"hot": 3_000_000, "cold": 3_000_000 - b.FeeSat}
	for _, w := range recon.Msg.Wallets {
		if w.LedgerSat != want[w.WalletId] || w.DifferenceSat != 0 {
			t.Fatalf("wallet %s: books %d, UTXOs %d; want %d and no difference", w.WalletId, w.LedgerSat, w.UtxoSat, want[w.WalletId])
		}
	}
	if n := countState(r.batches(), func(x *bankdv1.PayoutBatch) bool { return x.WalletId == "cold" }); n != 1 {
		t.Fatalf("%d transactions spend the cold vault, want 1", n)
	}
	t.Logf("refilled 2,000,000 sat cold -> hot in %s: fee %d sat (%d vB, 2-of-3), PSBT %d bytes; proposal to final in %s (cosigners at once, blocks mined on demand, a leader killed on the way)",
		b.Txid, b.FeeSat, b.Vsize, len(packet), time.Since(began).Round(time.Millisecond))
	requireSameStateHash(t, r.c)
}
