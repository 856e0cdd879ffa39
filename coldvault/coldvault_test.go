package coldvault

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	bankdv1 "github.com/bankd/bankd/gen/bankdv1"
)

var (
	toCold = bankdv1.VaultDirection_VAULT_DIRECTION_TO_COLD
	toHot  = bankdv1.VaultDirection_VAULT_DIRECTION_TO_HOT
	none   = bankdv1.VaultDirection_VAULT_DIRECTION_UNSPECIFIED
)

func TestBandDecide(t *testing.T) {
	sats := Band{MinSat: 1_000_000, TargetSat: 5_000_000, MaxSat: 10_000_000}
	shares := Band{MinShare: 0.05, TargetShare: 0.1, MaxShare: 0.2}
	for _, tc := range []struct {
		name       string
		band       Band
		hot, liab  int64
		wantDir    bankdv1.VaultDirection
		wantAmount int64
	}{
		{"inside the band: nothing", sats, 7_000_000, 0, none, 0},
		{"at the maximum: nothing", sats, 10_000_000, 0, none, 0},
		{"above the maximum: down to the target", sats, 12_000_000, 0, toCold, 7_000_000},
		{"below the minimum: up to the target", sats, 400_000, 0, toHot, 4_600_000},
		{"shares of the liabilities", shares, 30_000_000, 100_000_000, toCold, 20_000_000},
		{"shares, below", shares, 1_000_000, 100_000_000, toHot, 9_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.band.Validate(); err != nil {
				t.Fatal(err)
			}
			dir, amount := tc.band.Decide(tc.hot, tc.liab)
			if dir != tc.wantDir || amount != tc.wantAmount {
				t.Fatalf("Decide(%d, %d) = %v %d, want %v %d", tc.hot, tc.liab, dir, amount, tc.wantDir, tc.wantAmount)
			}
		})
	}
}

func TestBandsThatMakeNoSense(t *testing.T) {
	for name, b := range map[string]Band{
		"min above max":      {MinSat: 10, TargetSat: 5, MaxSat: 1},
		"target outside":     {MinSat: 1, TargetSat: 20, MaxSat: 10},
		"nothing":            {},
		"both styles":        {MinSat: 1, TargetSat: 2, MaxSat: 3, MinShare: 0.1, TargetShare: 0.2, MaxShare: 0.3},
		"a share above one":  {MinShare: 0.1, TargetShare: 0.5, MaxShare: 1.5},
		"a negative minimum": {MinSat: -1, TargetSat: 2, MaxSat: 3},
		"more than 21M BTC":  {MinSat: 1, TargetSat: 2, MaxSat: 21_000_000*100_000_000 + 1},
	} {
		t.Run(name, func(t *testing.T) {
			if err := b.Validate(); !errors.Is(err, ErrBadBand) {
				t.Fatalf("Validate() = %v, want ErrBadBand", err)
			}
		})
	}
}

const goodConfig = `
api_url        = "https://127.0.0.1:7201"
ca_file        = "ca.crt"
token_file     = "coldvault.token"
hot_wallet_id  = "hot"
cold_wallet_id = "cold"
poll_interval  = "2s"
band {
  min_sat    = 1000000
  target_sat = 5000000
  max_sat    = 10000000
}
`

func TestConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(goodConfig), "/etc/bankd/coldvault.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TokenFile != "/etc/bankd/coldvault.token" || cfg.CAFile != "/etc/bankd/ca.crt" || cfg.Band.MaxSat != 10_000_000 || cfg.PollInterval.Seconds() != 2 {
		t.Fatalf("config %+v", cfg)
	}
	for _, tc := range []struct{ name, from, to, want string }{
		{"a band with min above max", "min_sat    = 1000000", "min_sat    = 20000000", "band"},
		{"plain http", "https://127.0.0.1:7201", "http://127.0.0.1:7201", "api_url"},
		{"the hot wallet as the cold one", `cold_wallet_id = "cold"`, `cold_wallet_id = "hot"`, "is the hot wallet"},
		{"no token", `token_file     = "coldvault.token"`, `token_file     = ""`, "token_file"},
		{"a poll too fast", `"2s"`, `"1ms"`, "poll_interval"},
		{"a metrics address without a port", `poll_interval  = "2s"`, `poll_interval  = "2s"` + "\nmetrics_addr = \"127.0.0.1\"", "metrics_addr"},
		{"a metrics port that is not a number", `poll_interval  = "2s"`, `poll_interval  = "2s"` + "\nmetrics_addr = \"127.0.0.1:http\"", "not a port number"},
		{"a metrics port out of range", `poll_interval  = "2s"`, `poll_interval  = "2s"` + "\nmetrics_addr = \":70000\"", "not a port number"},
		{"an unknown key", `poll_interval  = "2s"`, `poll_interval  = "2s"` + "\nkey_file = \"k\"", "key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(strings.Replace(goodConfig, tc.from, tc.to, 1)), "/etc/bankd/coldvault.hcl")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// fakeAPI answers like the cluster: one hot wallet, the proposals it holds.
type fakeAPI struct {
	hot       *bankdv1.WalletReconciliation
	liab      int64
	proposals []*bankdv1.VaultProposal
	proposed  []*bankdv1.ProposeVaultTransferRequest
}

func (f *fakeAPI) ReconcileWallets(context.Context, *connect.Request[bankdv1.ReconcileWalletsRequest]) (*connect.Response[bankdv1.ReconcileWalletsResponse], error) {
	return connect.NewResponse(&bankdv1.ReconcileWalletsResponse{Wallets: []*bankdv1.WalletReconciliation{f.hot},
		Solvency: &bankdv1.Solvency{CustomerLiabilitiesSat: f.liab}}), nil
}

func (f *fakeAPI) ListVaultProposals(_ context.Context, r *connect.Request[bankdv1.ListVaultProposalsRequest]) (*connect.Response[bankdv1.ListVaultProposalsResponse], error) {
	var out []*bankdv1.VaultProposal
	for _, p := range f.proposals {
		if p.State == r.Msg.State {
			out = append(out, p)
		}
	}
	return connect.NewResponse(&bankdv1.ListVaultProposalsResponse{Proposals: out}), nil
}

func (f *fakeAPI) ProposeVaultTransfer(_ context.Context, r *connect.Request[bankdv1.ProposeVaultTransferRequest]) (*connect.Response[bankdv1.ProposeVaultTransferResponse], error) {
	f.proposed = append(f.proposed, r.Msg)
	p := &bankdv1.VaultProposal{Id: r.Msg.Id, Direction: r.Msg.Direction, ColdWalletId: r.Msg.ColdWalletId, AmountSat: r.Msg.AmountSat,
		State: bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_PROPOSED}
	f.proposals = append(f.proposals, p)
	return connect.NewResponse(&bankdv1.ProposeVaultTransferResponse{Proposal: p}), nil
}

func TestThePollProposesOnceOutsideTheBand(t *testing.T) {
	cfg, err := ParseConfig([]byte(goodConfig), "/etc/bankd/coldvault.hcl")
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{hot: &bankdv1.WalletReconciliation{WalletId: "hot", LedgerSat: 12_000_000, UnsettledBatches: 1}}
	d := NewDaemon(cfg, api, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	if p, err := d.Poll(ctx); err != nil || p != nil {
		t.Fatalf("proposed %v (%v) while the hot wallet's books move", p, err)
	}
	api.hot.UnsettledBatches = 0
	p, err := d.Poll(ctx)
	if err != nil || p == nil || p.Direction != toCold || p.AmountSat != 7_000_000 || !strings.Contains(api.proposed[0].Reason, "12000000") {
		t.Fatalf("poll: %v %v", p, err)
	}
	// The proposal is under way (whatever its state short of final): no second one.
	for _, s := range activeStates {
		api.proposals[0].State = s
		if p, err := d.Poll(ctx); err != nil || p != nil {
			t.Fatalf("proposed again while the first is %v: %v %v", s, p, err)
		}
	}
	api.proposals[0].State = bankdv1.VaultProposalState_VAULT_PROPOSAL_STATE_FINAL
	api.hot.LedgerSat = 5_000_000
	if p, err := d.Poll(ctx); err != nil || p != nil {
		t.Fatalf("proposed %v inside the band (%v)", p, err)
	}
	api.hot.LedgerSat = 100
	if p, err := d.Poll(ctx); err != nil || p == nil || p.Direction != toHot || p.AmountSat != 4_999_900 {
		t.Fatalf("below the band: %v %v", p, err)
	}
}

func TestTheExampleConfigLoads(t *testing.T) {
	cfg, err := LoadConfig("coldvault.example.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Band.MaxSat != 100_000_000 || cfg.ColdWalletID != "cold" {
		t.Fatalf("example config %+v", cfg)
	}
}

func TestExports(t *testing.T) {
	// A 2-of-3 of BIP 48 account keys of three test seeds (the key-origin fingerprints are
	// made up).
	master := func(seed byte) *hdkeychain.ExtendedKey {
		k, err := hdkeychain.NewMaster(bytes.Repeat([]byte{seed}, 32), &chaincfg.RegressionNetParams)
		if err != nil {
			t.Fatal(err)
		}
		for _, step := range []uint32{48, 1, 0, 2} {
			if k, err = k.Derive(hdkeychain.HardenedKeyStart + step); err != nil {
				t.Fatal(err)
			}
		}
		if k, err = k.Neuter(); err != nil {
			t.Fatal(err)
		}
		return k
	}
	var keys []string
	for i, fp := range []string{"aabbccdd", "11223344", "deadbeef"} {
		keys = append(keys, "["+fp+"/48h/1h/0h/2h]"+master(byte(i+1)).String()+"/<0;1>/*")
	}
	ms, err := ParseMultisig("wsh(sortedmulti(2,"+strings.Join(keys, ",")+"))", &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	cc := ms.Coldcard("bankd-cold")
	for _, want := range []string{"Name: bankd-cold", "Policy: 2 of 3", "Format: P2WSH", "Derivation: m/48'/1'/0'/2'", "DEADBEEF: tpub"} {
		if !strings.Contains(cc, want) {
			t.Fatalf("Coldcard file lacks %q:\n%s", want, cc)
		}
	}
	bsms, err := ms.BSMS()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(bsms), "\n")
	if len(lines) != 4 || lines[0] != "BSMS 1.0" || !strings.Contains(lines[1], "#") || lines[2] != "/0/*,/1/*" || !strings.HasPrefix(lines[3], "bcrt1q") {
		t.Fatalf("BSMS record:\n%s", bsms)
	}
	if _, err := ParseMultisig("wpkh("+master(9).String()+"/<0;1>/*)", &chaincfg.RegressionNetParams); err == nil {
		t.Fatal("a single-key descriptor was taken for a multisig")
	}
}

func TestTheMetricsSayWhereTheHotWalletStands(t *testing.T) {
	cfg, err := ParseConfig([]byte(goodConfig), "/etc/bankd/coldvault.hcl")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{hot: &bankdv1.WalletReconciliation{WalletId: "hot", LedgerSat: 12_000_000}}
	d := NewDaemon(cfg, api, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d.SetMetrics(m)
	d.now = func() time.Time { return time.Unix(1_800_000_000, 0) }
	if _, err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A move is under way now; the books are still read and reported at every look.
	api.hot.LedgerSat = 11_000_000
	if p, err := d.Poll(context.Background()); err != nil || p != nil {
		t.Fatalf("second poll: %v %v", p, err)
	}
	for _, c := range []struct {
		name string
		got  prometheus.Collector
		want float64
	}{
		{"hot wallet", m.hotSat.WithLabelValues("hot"), 11_000_000},
		{"band min", m.bandSat.WithLabelValues("hot", "min"), 1_000_000},
		{"band target", m.bandSat.WithLabelValues("hot", "target"), 5_000_000},
		{"band max", m.bandSat.WithLabelValues("hot", "max"), 10_000_000},
		{"polls ok", m.polls.WithLabelValues("ok"), 2},
		{"last poll", m.lastPoll, 1_800_000_000},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	// The cluster without the hot wallet: an error is counted, the last good look stays.
	api.hot.WalletId = "other"
	if _, err := d.Poll(context.Background()); err == nil {
		t.Fatal("poll without the hot wallet succeeded")
	}
	if got := testutil.ToFloat64(m.polls.WithLabelValues("error")); got != 1 {
		t.Errorf("error polls = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.lastPoll); got != 1_800_000_000 {
		t.Errorf("last poll moved to %v on an error", got)
	}

	// The endpoint serves them.
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := ListenMetrics(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeMetrics(ctx, ln, reg) }()
	res, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `bankd_coldvault_band_sat{bound="max",wallet="hot"} 1e+07`) {
		t.Errorf("/metrics lacks the band:\n%s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}
