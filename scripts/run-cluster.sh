#!/usr/bin/env bash
# Starts a regtest btcd (bin/regtestd) and every node of a cluster.hcl as a local bankd process
# following it, waits until the cluster has a leader, prints how to talk to both, and stops
# everything cleanly on Ctrl-C (SIGINT/SIGTERM go to each node, which hands off leadership and
# shuts down, then to regtestd, which stops btcd).
#
# The nodes run with a derived config, data/cluster.run.hcl: the given file with its data_dir
# paths made absolute and the chain block pointed at the btcd that regtestd started (rpc_host,
# rpc_user, rpc_pass, rpc_cert, start_height). No btcd is started when the file's chain block
# already names a node (rpc_host), or with BTCD=off (a pure ledger, no chain watcher).
# MINE_EVERY=10s makes regtestd mine a block every 10 seconds. Unless LND=off, regtestd also
# starts three pool lnd nodes and one external lnd with channels, and their lnd blocks are
# appended to the derived config (skipped when the file already has lnd blocks).
set -euo pipefail
config=${1:-cluster.hcl}
bin=${BIN:-$(dirname "$0")/../bin}
logs=data/logs
mkdir -p "$logs"

pids=()
regtestd_pid=
stopped=
stop() {
  [ -z "$stopped" ] || return 0
  stopped=1
  trap - INT TERM
  echo; echo "stopping ${#pids[@]} nodes..."
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  if [ -n "$regtestd_pid" ]; then
    echo "stopping btcd..."
    kill -TERM "$regtestd_pid" 2>/dev/null || true
    wait "$regtestd_pid" 2>/dev/null || true
  fi
  echo "stopped."
}
trap stop INT TERM

# Without a btcd to point at, the nodes still run with data/cluster.run.hcl: the given file with
# its data_dir paths made absolute, so that its relative tls/ paths land in data/ too.
run_config=data/cluster.run.hcl
confdir=$(cd "$(dirname "$config")" && pwd)
(umask 077; awk -v dir="$confdir" '
  /^[[:space:]]*data_dir[[:space:]]*=[[:space:]]*"[^\/]/ { sub(/"/, "\"" dir "/"); print; next }
  { print }
' "$config" >"$run_config")
chain_note=
if grep -q '^[[:space:]]*rpc_host[[:space:]]*=' "$config"; then
  chain_note="The leader follows the chain node named in $config."
elif [ "${BTCD:-on}" = off ]; then
  chain_note="BTCD=off: no chain node, no chain watcher (a pure ledger)."
else
  # btcd resets its regtest chain at every start: a cluster kept from an earlier run sees the
  # old chain reorganised away (its deposits are reversed); `make clean` starts afresh.
  initial_blocks=500
  env_file=data/btcd/env
  mkdir -p data/btcd
  rm -f "$env_file"
  lnd_args=()
  lnd_hcl=
  if [ "${LND:-on}" != off ] && ! grep -q '^lnd[[:space:]]*"' "$config"; then
    lnd_hcl=data/lnd.hcl
    rm -f "$lnd_hcl"
    lnd_args=(-lnd -pool "${POOL:-3}" -lnd-dir data/lnd -lnd-hcl "$lnd_hcl")
  fi
  setsid "$bin/regtestd" -datadir data/btcd -env "$env_file" -blocks "$initial_blocks" \
    -mine-every "${MINE_EVERY:-0}" "${lnd_args[@]}" >"$logs/regtestd.log" 2>&1 &
  regtestd_pid=$!
  echo "started regtestd (pid $regtestd_pid, log $logs/regtestd.log)"
  for _ in $(seq 1 480); do
    [ -s "$env_file" ] && break
    kill -0 "$regtestd_pid" 2>/dev/null || { echo "regtestd exited; see $logs/regtestd.log" >&2; regtestd_pid=; exit 1; }
    sleep 0.5
  done
  [ -s "$env_file" ] || { echo "btcd did not start in time; see $logs/regtestd.log" >&2; stop; exit 1; }
  # shellcheck disable=SC1090
  . "$env_file"

  start_height=$initial_blocks
  grep -q '^[[:space:]]*start_height[[:space:]]*=' "$config" && start_height=
  (umask 077; awk -v dir="$confdir" -v host="$BTCD_RPCHOST" -v user="$BTCD_RPCUSER" \
      -v pass="$BTCD_RPCPASS" -v cert="$BTCD_RPCCERT" -v start="$start_height" '
    function chain_keys() {
      print "  # Added by scripts/run-cluster.sh: the regtest btcd that regtestd started."
      printf "  rpc_host = \"%s\"\n  rpc_user = \"%s\"\n  rpc_pass = \"%s\"\n  rpc_cert = \"%s\"\n", host, user, pass, cert
      if (start != "") printf "  start_height = %s\n", start
    }
    /^chain[[:space:]]*\{/ { print; chain_keys(); chained = 1; next }
    /^[[:space:]]*data_dir[[:space:]]*=[[:space:]]*"[^\/]/ { sub(/"/, "\"" dir "/"); print; next }
    { print }
    END { if (!chained) { print "chain {"; chain_keys(); print "}" } }
  ' "$config" >"$run_config")
  if [ -n "$lnd_hcl" ]; then
    { echo; echo "# Added by scripts/run-cluster.sh: the regtest lnd pool regtestd started."; cat "$lnd_hcl"; } >>"$run_config"
  fi
  chain_note="The leader follows btcd regtest at $BTCD_RPCHOST (log $BTCD_LOG).
Pay a deposit address from btcd's faucet and mine blocks with:

  bin/regtestd pay ADDRESS SATS
  bin/regtestd mine [N]"
  if [ -n "$lnd_hcl" ]; then
    chain_note="$chain_note

The lnd pool ($(grep -c '^lnd' "$lnd_hcl") nodes) is in $run_config; an external lnd plays the
outside world:

  bin/bankctl invoice create alice 5000        # then pay it from outside:
  bin/regtestd lnpay BOLT11
  bin/regtestd lninvoice 2000                  # an outside invoice; pay it from alice:
  bin/bankctl pay alice BOLT11 -wait 30s
  bin/bankctl lnd nodes
  bin/bankctl lnd reconcile"
  fi
fi

nodes=$(sed -n 's/^node *"\([^"]*\)".*/\1/p' "$run_config")
api_addrs=$(sed -n 's/^ *api_addr *= *"\([^"]*\)".*/\1/p' "$run_config")
[ -n "$nodes" ] || { echo "no node blocks in $config" >&2; stop; exit 2; }

# The nodes speak mutual TLS: make the CA, their certificates and the gossip keyring beside the
# config they run with, unless they are there already (or the config is insecure_plaintext).
scheme=http
ca=
grpc_tls=-plaintext
if ! grep -q '^[[:space:]]*insecure_plaintext[[:space:]]*=[[:space:]]*true' "$run_config"; then
  "$bin/bankd" tls init -config "$run_config" | sed 's/^/  /'
  scheme=https
  ca=$(sed -n 's/^ *ca_file *= *"\([^"]*\)".*/\1/p' "$run_config")
  ca=${ca:-tls/ca.crt}
  case $ca in /*) ;; *) ca=$(cd "$(dirname "$run_config")" && pwd)/$ca ;; esac
  export BANKCTL_CA=$ca
  grpc_tls="-cacert $ca"
fi

for n in $nodes; do
  # Each node gets a session of its own, so Ctrl-C in the terminal reaches only this script,
  # which then sends every node exactly one SIGTERM (a second signal makes bankd stop at once).
  setsid "$bin/bankd" agent -config "$run_config" -node "$n" >"$logs/$n.log" 2>&1 &
  pids+=($!)
  echo "started $n (pid $!, log $logs/$n.log)"
done

addrs=$(for a in $api_addrs; do printf '%s://%s,' "$scheme" "$a"; done); addrs=${addrs%,}
export BANKCTL_ADDR=$addrs
for _ in $(seq 1 120); do
  if "$bin/bankctl" cluster leader >/dev/null 2>&1; then break; fi
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a node exited; see $logs" >&2; stop; exit 1; }; done
  sleep 0.5
done
"$bin/bankctl" cluster members || true

# Payouts: with a chain and a payouts block, make the hot wallet's key (signerd keygen, kept in
# data/signerd across runs), create the wallet in the cluster and start signerd, which signs the
# batches the leader plans. The key never goes near a bankd node's files.
payout_note=
if [ -n "${BTCD_RPCHOST:-}" ] && grep -q '^payouts' "$run_config"; then
  sdir=data/signerd
  mkdir -p "$sdir"; chmod 700 "$sdir"
  if [ ! -f "$sdir/master.key" ]; then
    "$bin/signerd" keygen -network regtest -out "$sdir/master.key" | grep '^wpkh(' >"$sdir/descriptor"
  fi
  desc=$(cat "$sdir/descriptor")
  first_api=${api_addrs%%$'\n'*}
  "$bin/bankctl" wallet create hot -kind hot -descriptor "$desc" >/dev/null
  (umask 077; echo dev-signer-token >"$sdir/signer.token")
  (umask 077; cat >"$sdir/signerd.hcl" <<HCL
network             = "regtest"
api_url             = "$scheme://$first_api"
${ca:+ca_file             = "$ca"}
token_file          = "signer.token"
wallet_id           = "hot"
descriptor          = "$desc"
key_file            = "master.key"
max_fee_sat         = 100000
max_fee_rate_sat_vb = 200
daily_limit_sat     = 100000000
state_file          = "signerd-state.json"
poll_interval       = "1s"
HCL
)
  setsid "$bin/signerd" -config "$sdir/signerd.hcl" >"$logs/signerd.log" 2>&1 &
  pids+=($!)
  hot0=$("$bin/signerd" address -network regtest -descriptor "$desc")
  echo "started signerd (pid $!, log $logs/signerd.log) for the hot wallet; fund it at $hot0"
  payout_note="Withdrawals (cluster.hcl payouts block): fund the hot wallet, then pay out from alice:

  bin/regtestd pay $hot0 5000000 && bin/regtestd mine 1
  bin/bankctl payout request alice ADDRESS 20000 -queue instant
  bin/regtestd mine 6                          # once signerd signed it and the leader broadcast it
  bin/bankctl payout list
  bin/bankctl payout reconcile"
fi

cat <<TXT

bankd cluster is up. Talk to it with bankctl (dev-admin-token is the default token):

  export BANKCTL_ADDR=$addrs${ca:+
  export BANKCTL_CA=$ca}
  bin/bankctl accounts create reserve -currency BTC -kind asset
  bin/bankctl accounts create alice -currency BTC -kind liability -non-negative
  bin/bankctl transfer -from reserve -to alice -amount 100000
  bin/bankctl balance alice
  bin/bankctl watch

or with any gRPC tool:  grpcurl $grpc_tls -H 'Authorization: Bearer dev-client-token' ${api_addrs%%$'\n'*} list

$chain_note

$payout_note

Logs are in $logs/. Press Ctrl-C to stop everything.
TXT
wait "${pids[@]}" || true
stop
