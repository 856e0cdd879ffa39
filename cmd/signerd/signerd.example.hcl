# signerd.hcl: the hot wallet signer of a bankd cluster. Relative paths are relative to this file.

# The chain the hot wallet is on: mainnet, testnet, signet or regtest.
network = "regtest"

# One bankd node's API (https only) and the cluster CA that signs its certificate; leave ca_file
# out to trust the system's roots.
api_url = "https://127.0.0.1:7201"
ca_file = "data/tls/ca.crt"

# The API bearer token, one line, chmod 600: a token of cluster.hcl with the "signer" scope
# (it reads batches and withdrawals and submits signatures, nothing else).
token_file = "signer.token"

# The bankd wallet whose batches this signer signs, and its public descriptor, as
# `signerd keygen` printed it.
wallet_id  = "hot"
descriptor = "wpkh([d34db33f/84'/1'/0']tpub.../<0;1>/*)#checksum"

# The master extended private key `signerd keygen` wrote (chmod 600; never on a bankd node).
key_file = "master.key"

# The signer's own caps: the most fee one transaction may pay, in sat and in sat per vbyte, and
# the most its withdrawals may add up to within one UTC day.
max_fee_sat         = 100000
max_fee_rate_sat_vb = 200
daily_limit_sat     = 100000000

# The ledger of signed batches that keeps the daily limit across restarts (JSON, rewritten
# atomically).
state_file = "signerd-state.json"

# How often to look for planned batches.
poll_interval = "2s"

# Only for the signer of a DEPOSIT wallet: the hot wallet its sweeps may pay (bankd's id and its
# public descriptor). Without these, sweeps are refused.
# sweep_to_wallet_id  = "hot"
# sweep_to_descriptor = "wpkh([d34db33f/84'/1'/0']tpub.../<0;1>/*)#checksum"

# Only for the signer of the HOT wallet, when there is a cold vault: its bankd id and public
# multisig descriptor. A move to the vault is signed only when it pays this descriptor's next
# receive address; without these, vault moves are refused.
# cold_wallet_id  = "cold"
# cold_descriptor = "wsh(sortedmulti(2,[fp1/48'/1'/0'/2']tpub.../<0;1>/*,[fp2/...]tpub.../<0;1>/*,[fp3/...]tpub.../<0;1>/*))"
