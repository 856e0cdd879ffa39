#!/usr/bin/env bash
# Starts every node of a cluster.hcl as a local bankd process, waits until the cluster has a
# leader, prints how to talk to it, and stops all nodes cleanly on Ctrl-C (SIGINT/SIGTERM go
# to each node, which hands off leadership and shuts down).
set -euo pipefail
config=${1:-cluster.hcl}
bin=${BIN:-$(dirname "$0")/../bin}
logs=data/logs
mkdir -p "$logs"

nodes=$(sed -n 's/^node *"\([^"]*\)".*/\1/p' "$config")
api_addrs=$(sed -n 's/^ *api_addr *= *"\([^"]*\)".*/\1/p' "$config")
[ -n "$nodes" ] || { echo "no node blocks in $config" >&2; exit 2; }

pids=()
stop() {
  trap - INT TERM
  echo; echo "stopping ${#pids[@]} nodes..."
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped."
}
trap stop INT TERM

for n in $nodes; do
  # Each node gets a session of its own, so Ctrl-C in the terminal reaches only this script,
  # which then sends every node exactly one SIGTERM (a second signal makes bankd stop at once).
  setsid "$bin/bankd" agent -config "$config" -node "$n" >"$logs/$n.log" 2>&1 &
  pids+=($!)
  echo "started $n (pid $!, log $logs/$n.log)"
done

addrs=$(for a in $api_addrs; do printf 'http://%s,' "$a"; done); addrs=${addrs%,}
export BANKCTL_ADDR=$addrs
for _ in $(seq 1 120); do
  if "$bin/bankctl" cluster leader >/dev/null 2>&1; then break; fi
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "a node exited; see $logs" >&2; stop; exit 1; }; done
  sleep 0.5
done
"$bin/bankctl" cluster members || true

cat <<TXT

bankd cluster is up. Talk to it with bankctl (dev-admin-token is the default token):

  export BANKCTL_ADDR=$addrs
  bin/bankctl accounts create reserve -currency BTC -kind asset
  bin/bankctl accounts create alice -currency BTC -kind liability -non-negative
  bin/bankctl transfer -from reserve -to alice -amount 100000
  bin/bankctl accounts balance alice
  bin/bankctl watch

or with any gRPC tool:  grpcurl -plaintext -H 'Authorization: Bearer dev-client-token' ${api_addrs%%$'\n'*} list

Logs are in $logs/. Press Ctrl-C to stop all nodes.
TXT
wait "${pids[@]}"
