package node

import (
	"strings"
	"testing"
	"time"
)

func TestPayoutsBlock(t *testing.T) {
	n1 := nodeBlock("n1", 1, nil)
	src := `name = "c"
payouts {
  wallet = "hot"
  default_queue = "batched"
  queue "instant" {
    trigger = "count"
    count = 1
    fee = "estimate"
    fee_sat = 5000
  }
  queue "batched" {
    interval = "10m"
    min_fee_rate = 3
    max_fee_rate = 80
    approval_threshold_sat = 1000000
    bump_after_blocks = 0
  }
}
` + n1
	cfg, err := ParseConfig([]byte(src), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Payouts
	if !p.Enabled() || p.Wallet != "hot" || p.DefaultQueue != "batched" || len(p.Queues) != 2 {
		t.Fatalf("payouts %+v", p)
	}
	want := PayoutQueueConfig{Name: "instant", Trigger: TriggerCount, Interval: DefaultPayoutInterval, Count: 1, ConfTarget: DefaultPayoutConfTarget,
		MinFeeRate: DefaultPayoutMinFeeRate, MaxFeeRate: DefaultPayoutMaxFeeRate, Fee: FeeEstimate, FeeSat: 5000, MaxBatch: DefaultPayoutMaxBatch,
		BumpAfterBlocks: DefaultPayoutBumpAfter, Bump: BumpRBF}
	if p.Queues[0] != want {
		t.Errorf("instant = %+v, want %+v", p.Queues[0], want)
	}
	if q, ok := p.Queue(""); !ok || q.Name != "batched" || q.Interval != 10*time.Minute || q.MinFeeRate != 3 || q.MaxFeeRate != 80 ||
		q.ApprovalThresholdSat != 1_000_000 || q.BumpAfterBlocks != 0 || q.Fee != FeeFlat {
		t.Errorf("default queue = %+v, %v", q, ok)
	}
	if _, ok := p.Queue("nope"); ok {
		t.Error("an unknown queue was found")
	}
	noBlock, err := ParseConfig([]byte("name = \"c\"\n"+n1), "c.hcl")
	if err != nil || noBlock.Payouts.Enabled() {
		t.Fatalf("without a payouts block: %+v %v", noBlock.Payouts, err)
	}
}

func TestPayoutsBlockRejects(t *testing.T) {
	n1 := nodeBlock("n1", 1, nil)
	for _, c := range []struct{ name, block, want string }{
		{"no wallet", "payouts {\n queue \"a\" {}\n}", `"wallet" is required`},
		{"no queue", `payouts { wallet = "hot" }`, "at least one queue block"},
		{"an unknown default queue", "payouts {\n wallet = \"hot\"\n default_queue = \"b\"\n queue \"a\" {}\n}", `default_queue "b" names no queue`},
		{"a queue twice", "payouts {\n wallet = \"hot\"\n queue \"a\" {}\n queue \"a\" {}\n}", `queue "a" is defined twice`},
		{"a bad queue name", "payouts {\n wallet = \"hot\"\n queue \"a b\" {}\n}", "queue: must be"},
		{"an unknown trigger", "payouts {\n wallet = \"hot\"\n queue \"a\" {\n trigger = \"sometimes\"\n }\n}", "trigger must be one of"},
		{"an unknown fee policy", "payouts {\n wallet = \"hot\"\n queue \"a\" {\n fee = \"free\"\n }\n}", "fee must be one of"},
		{"estimate without a cap", "payouts {\n wallet = \"hot\"\n queue \"a\" {\n fee = \"estimate\"\n }\n}", "needs fee_sat"},
		{"min above max", "payouts {\n wallet = \"hot\"\n queue \"a\" {\n min_fee_rate = 10\n max_fee_rate = 5\n }\n}", "is above max_fee_rate"},
		{"a fee rate above 2000 sat/vB", "payouts {\n wallet = \"hot\"\n queue \"a\" {\n max_fee_rate = 5000\n }\n}", "max_fee_rate must be between 1 and 2000"},
		{"a batch too big", "payouts {\n wallet = \"hot\"\n queue \"a\" {\n max_batch = 5000\n }\n}", "max_batch must be between"},
		{"a tiny interval", "payouts {\n wallet = \"hot\"\n queue \"a\" {\n interval = \"1ms\"\n }\n}", "interval must be between"},
		{"an unknown queue key", "payouts {\n wallet = \"hot\"\n queue \"a\" {\n colour = 1\n }\n}", "colour"},
		{"a wallet id too long for its books", "payouts {\n wallet = \"" + strings.Repeat("w", 60) + "\"\n queue \"a\" {}\n}", "invalid wallet"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte("name = \"c\"\n"+c.block+"\n"+n1), "c.hcl")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestConsolidateBlock(t *testing.T) {
	n1 := nodeBlock("n1", 1, nil)
	cfg, err := ParseConfig([]byte("name = \"c\"\npayouts {\n wallet = \"hot\"\n queue \"a\" {}\n consolidate {\n below_fee_rate = 3\n min_utxos = 50\n }\n}\n"+n1), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Payouts.Consolidate; c != (ConsolidateConfig{BelowFeeRate: 3, MinUtxos: 50, MaxInputs: 200}) {
		t.Fatalf("consolidate = %+v", c)
	}
	for _, c := range []struct{ block, want string }{
		{"queue \"consolidation\" {}", "reserved queue name"},
		{"queue \"a\" {}\n consolidate {\n below_fee_rate = 3\n }", `"min_utxos" is required`},
		{"queue \"a\" {}\n consolidate {\n below_fee_rate = 3\n min_utxos = 1\n }", "min_utxos must be between 2"},
	} {
		_, err := ParseConfig([]byte("name = \"c\"\npayouts {\n wallet = \"hot\"\n "+c.block+"\n}\n"+n1), "c.hcl")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.block, err, c.want)
		}
	}
}

func TestSweepBlock(t *testing.T) {
	n1 := nodeBlock("n1", 1, nil)
	cfg, err := ParseConfig([]byte("name = \"c\"\npayouts {\n wallet = \"hot\"\n queue \"a\" {}\n sweep {\n interval = \"5m\"\n min_sat = 20000\n }\n}\n"+n1), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Payouts.Sweep; s != (SweepConfig{Interval: 5 * time.Minute, MinSat: 20_000, MaxInputs: 500}) {
		t.Fatalf("sweep = %+v", s)
	}
	for _, c := range []struct{ block, want string }{
		{"queue \"sweep\" {}", "reserved queue name"},
		{"queue \"a\" {}\n sweep {\n min_sat = 0\n }", "min_sat must be between 1"},
		{"queue \"a\" {}\n sweep {\n interval = \"1ms\"\n }", "interval must be between"},
	} {
		_, err := ParseConfig([]byte("name = \"c\"\npayouts {\n wallet = \"hot\"\n "+c.block+"\n}\n"+n1), "c.hcl")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.block, err, c.want)
		}
	}
}

func TestSplitBlock(t *testing.T) {
	n1 := nodeBlock("n1", 1, nil)
	cfg, err := ParseConfig([]byte("name = \"c\"\npayouts {\n wallet = \"hot\"\n queue \"a\" {}\n split {\n target_utxos = 20\n min_sat = 500000\n }\n}\n"+n1), "c.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Payouts.Split; s != (SplitConfig{TargetUtxos: 20, MinSat: 500_000}) {
		t.Fatalf("split = %+v", s)
	}
	_, err = ParseConfig([]byte("name = \"c\"\npayouts {\n wallet = \"hot\"\n queue \"a\" {}\n split {\n target_utxos = 1\n min_sat = 500000\n }\n}\n"+n1), "c.hcl")
	if err == nil || !strings.Contains(err.Error(), "target_utxos must be between 2") {
		t.Fatalf("target_utxos 1: %v", err)
	}
}
