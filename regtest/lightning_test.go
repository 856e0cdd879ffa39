package regtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

// pay has payer pay a new invoice of payee and checks the preimage and, when direct, that no
// routing fee was paid. It returns the fee in millisatoshis.
func pay(t *testing.T, ctx context.Context, payer, payee *Lnd, sat int64, direct bool) int64 {
	t.Helper()
	bolt11, hashHex, err := payee.AddInvoice(ctx, sat, fmt.Sprintf("%s pays %s", payer.Name, payee.Name))
	if err != nil {
		t.Fatal(err)
	}
	before, err := payee.ChannelLocalBalanceMsat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	preimageHex, feeMsat, err := payer.PayInvoice(ctx, bolt11)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s paid %d sat to %s in %v, fee %d msat", payer.Name, sat, payee.Name,
		time.Since(began).Round(time.Millisecond), feeMsat)
	preimage, err := hex.DecodeString(preimageHex)
	if err != nil {
		t.Fatalf("preimage %q: %v", preimageHex, err)
	}
	if hash := sha256.Sum256(preimage); hex.EncodeToString(hash[:]) != hashHex {
		t.Fatalf("preimage %s does not hash to the invoice's payment hash %s", preimageHex, hashHex)
	}
	if direct && feeMsat != 0 {
		t.Fatalf("a payment over a direct channel paid a fee of %d msat", feeMsat)
	}
	if !direct && feeMsat <= 0 {
		t.Fatalf("a payment through the external node paid no fee (%d msat)", feeMsat)
	}
	// The payer learns the preimage before the payee has settled the HTLC in its channel.
	want := before + uint64(sat*1000)
	err = poll(ctx, 10*time.Second, payee.Name+"'s channel balance", func(ctx context.Context) error {
		after, err := payee.ChannelLocalBalanceMsat(ctx)
		if err == nil && after != want {
			err = fmt.Errorf("grew by %d msat, want %d", int64(after-before), sat*1000)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return feeMsat
}

// TestLightning shares one btcd and one Lightning network between its subtests.
func TestLightning(t *testing.T) {
	RequireLnd(t) // before starting btcd, so that a missing lnd skips at once
	btcd := StartTest(t, Options{})
	began := time.Now()
	lg := StartLightningTest(t, btcd, LightningOptions{})
	t.Logf("lightning stack (btcd + %d pool lnd + external lnd, channels announced) ready in %v",
		len(lg.Pool), time.Since(began).Round(time.Millisecond))

	t.Run("stack is up", func(t *testing.T) {
		ctx := testContext(t)
		if len(lg.Pool) != DefaultPoolSize {
			t.Fatalf("%d pool nodes, want %d", len(lg.Pool), DefaultPoolSize)
		}
		for i, n := range lg.Nodes() {
			want := fmt.Sprintf("pool-%d", i+1)
			if n == lg.External {
				want = "external"
			}
			if n.Name != want || !n.Running() || len(n.Pubkey) != 66 {
				t.Fatalf("node %d: name %q, running %v, pubkey %q", i, n.Name, n.Running(), n.Pubkey)
			}
			msat, err := n.ChannelLocalBalanceMsat(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if msat == 0 {
				t.Fatalf("%s has nothing to spend in its channels", n.Name)
			}
		}
		hcl := lg.PoolHCL()
		for _, n := range lg.Pool {
			block := fmt.Sprintf("lnd %q {\n  address  = %q\n  tls_cert = %q\n  macaroon = %q\n}\n",
				n.Name, n.RPCAddr, n.TLSCertPath, n.MacaroonPath)
			if !strings.Contains(hcl, block) {
				t.Fatalf("PoolHCL lacks\n%s\nin\n%s", block, hcl)
			}
		}
	})

	t.Run("external pays every pool node", func(t *testing.T) {
		ctx := testContext(t)
		for _, n := range lg.Pool {
			pay(t, ctx, lg.External, n, 10_000, true)
		}
	})

	t.Run("pool node pays external", func(t *testing.T) {
		pay(t, testContext(t), lg.Pool[0], lg.External, 7_000, true)
	})

	t.Run("pool node pays another pool node", func(t *testing.T) {
		pay(t, testContext(t), lg.Pool[0], lg.Pool[1], 5_000, false)
	})

	t.Run("killed node restarts with its channels", func(t *testing.T) {
		ctx := testContext(t)
		n := lg.Pool[1]
		n.Kill()
		if n.Running() {
			t.Fatalf("%s still running after Kill", n.Name)
		}
		began := time.Now()
		if err := n.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitActiveChannels(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if err := lg.External.WaitActiveChannels(ctx, len(lg.Pool)); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s ready with its channel active %v after SIGKILL", n.Name, time.Since(began).Round(time.Millisecond))
		pay(t, ctx, lg.External, n, 3_000, true)
		pay(t, ctx, n, lg.Pool[2], 2_000, false)
	})

	t.Run("pool node added at runtime", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), DefaultLightningTimeout)
		defer cancel()
		began := time.Now()
		n, err := lg.AddPoolNode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s added in %v", n.Name, time.Since(began).Round(time.Millisecond))
		if want := fmt.Sprintf("pool-%d", DefaultPoolSize+1); n.Name != want || len(lg.Pool) != DefaultPoolSize+1 {
			t.Fatalf("added %s, pool of %d; want %s, pool of %d", n.Name, len(lg.Pool), want, DefaultPoolSize+1)
		}
		if !strings.Contains(lg.PoolHCL(), fmt.Sprintf("lnd %q {", n.Name)) {
			t.Fatalf("PoolHCL lacks %s:\n%s", n.Name, lg.PoolHCL())
		}
		pay(t, ctx, lg.External, n, 4_000, true)
		pay(t, ctx, n, lg.Pool[0], 1_000, false)
	})
}
