# coldvault.hcl: what the coldvault process reads (coldvault run -config coldvault.hcl).
# Relative paths are relative to this file.

# One bankd node's API, and the cluster CA that signs its certificate.
api_url = "https://127.0.0.1:7201"
ca_file = "ca.crt"

# A file (chmod 600) holding an operator-scope API token of coldvault's own identity: its
# proposals are approved by another operator's token.
token_file = "coldvault.token"

# The cluster's hot wallet (cluster.hcl payouts.wallet) and the COLD wallet, a
# wsh(sortedmulti(M, ...)) created with bankctl wallet create ... -kind cold.
hot_wallet_id  = "hot"
cold_wallet_id = "cold"

# How often it looks (100ms-1h, default 10s).
poll_interval = "10s"

# Where `coldvault run` serves GET /metrics for Prometheus (optional; none when absent): the hot
# wallet's books against its band, for the BankdHotWalletOutsideBand and BankdColdvaultBlind
# alerts in deploy/prometheus/alerts.yml. It tells the hot wallet's balance: keep it on loopback
# or a monitoring network.
metrics_addr = "127.0.0.1:9464"

# Where the hot wallet's books should stay. Above max_sat: a move hot -> cold down to
# target_sat; below min_sat: a move cold -> hot up to target_sat. Or give min_share,
# target_share and max_share instead: shares (0-1) of the customer liabilities.
band {
  min_sat    = 10000000  # 0.1 BTC
  target_sat = 50000000  # 0.5 BTC
  max_sat    = 100000000 # 1 BTC
}
