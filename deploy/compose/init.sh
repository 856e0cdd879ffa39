#!/usr/bin/env bash
# init.sh makes everything the compose cluster (docker-compose.yml beside this script) reads
# that must not be committed: the cluster's CA, node certificates and gossip keyring, bearer
# tokens, btcd's RPC password, and the bankd and lnd configuration files that carry them.
#
#   deploy/compose/init.sh [DIR]        (default deploy/compose/run, ignored by git)
#
# Then, from the repository root:
#
#   docker-compose --env-file DIR/.env -f deploy/compose/docker-compose.yml up -d
#
# Settings (environment):
#   BANKD_SUBNET_PREFIX  first three octets of the private network, default 172.30.84
#                        (btcd .10, bankd n1-n3 .11-.13, lnd pool-1..3 .21-.23)
#   BANKD_API_PORTS      the three host ports (127.0.0.1 only) of n1-n3's API,
#                        default "7201 7202 7203"
#   BANKD_TAG            the bankd/* image tag, default latest
#
# Secrets that exist (CA, certificates, keyring, tokens, RPC password) are kept and the files
# made from them rewritten; remove DIR to start afresh (after `docker-compose ... down -v`,
# which drops the nodes' state made with the old CA).
#
# The certificates are made by `bankd tls init` inside the bankd/bankd image, as the image's
# user (65532), so that the nodes, which run as that user, can read their keys while the keys
# stay mode 0600. The CA key stays in DIR/tls and is never mounted into a node.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/run}
prefix=${BANKD_SUBNET_PREFIX:-172.30.84}
read -r -a ports <<<"${BANKD_API_PORTS:-7201 7202 7203}"
tag=${BANKD_TAG:-latest}
image=bankd/bankd:$tag

[[ $prefix =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "init: BANKD_SUBNET_PREFIX $prefix is not three octets" >&2; exit 2; }
[[ ${#ports[@]} -eq 3 ]] || { echo "init: BANKD_API_PORTS must name three ports" >&2; exit 2; }
docker image inspect "$image" >/dev/null 2>&1 || { echo "init: image $image is missing; run make images" >&2; exit 1; }

mkdir -p "$dir/tls" "$dir/tokens"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir/tokens"

# secret: a random 32-byte value in hex.
secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# Bearer tokens: the secrets stay in DIR/tokens (for clients); the nodes get their SHA-256 only.
for name in admin client read; do
	f=$dir/tokens/$name.token
	[[ -s $f ]] || (umask 077; secret >"$f")
done
sha() { tr -d '\n' <"$dir/tokens/$1.token" | sha256sum | cut -d' ' -f1; }

[[ -s $dir/btcd.rpcpass ]] || (umask 077; secret >"$dir/btcd.rpcpass")
rpcpass=$(cat "$dir/btcd.rpcpass")

ip() { echo "$prefix.$1"; }

# The cluster configuration every node reads (mounted at /etc/bankd/cluster.hcl). It holds
# btcd's regtest RPC password, so it is not for a cluster with real money: there, use
# rpc_pass_file and token files owned by the nodes' user.
cat >"$dir/cluster.hcl" <<HCL
# Written by deploy/compose/init.sh for the compose cluster; see docs/CONTAINERS.md.
name = "compose"

tokens {
  token "admin" {
    scopes       = ["admin"]
    token_sha256 = "$(sha admin)"
  }
  token "client" {
    scopes       = ["write"]
    token_sha256 = "$(sha client)"
  }
  token "read" {
    scopes       = ["read"]
    token_sha256 = "$(sha read)"
  }
}

tls {
  ca_file = "/etc/bankd/tls/ca.crt"
  # Only init.sh's \`bankd tls init\` sees it; no node mounts it.
  ca_key_file = "/etc/bankd/tls/ca.key"
}

gossip {
  keyring_file = "/etc/bankd/tls/gossip.keyring"
}

chain {
  network  = "regtest"
  rpc_host = "btcd:18334"
  rpc_user = "bankd"
  rpc_pass = "$rpcpass"
  rpc_cert = "/var/lib/btcd/rpc.cert"
}

# Static addresses on the compose network: gossip admits a member only from the address its
# node block names, resolved when the node starts.
node "n1" {
  region      = "compose-a"
  raft_addr   = "$(ip 11):7001"
  gossip_addr = "$(ip 11):7101"
  api_addr    = "$(ip 11):7201"
  data_dir    = "/var/lib/bankd/n1"
}

node "n2" {
  region      = "compose-b"
  raft_addr   = "$(ip 12):7001"
  gossip_addr = "$(ip 12):7101"
  api_addr    = "$(ip 12):7201"
  data_dir    = "/var/lib/bankd/n2"
}

node "n3" {
  region      = "compose-c"
  raft_addr   = "$(ip 13):7001"
  gossip_addr = "$(ip 13):7101"
  api_addr    = "$(ip 13):7201"
  data_dir    = "/var/lib/bankd/n3"
}

lnd "pool-1" {
  address  = "lnd-1:10009"
  tls_cert = "/var/lib/lnd-pool-1/tls.cert"
  macaroon = "/var/lib/lnd-pool-1/data/chain/bitcoin/regtest/admin.macaroon"
}

lnd "pool-2" {
  address  = "lnd-2:10009"
  tls_cert = "/var/lib/lnd-pool-2/tls.cert"
  macaroon = "/var/lib/lnd-pool-2/data/chain/bitcoin/regtest/admin.macaroon"
}

lnd "pool-3" {
  address  = "lnd-3:10009"
  tls_cert = "/var/lib/lnd-pool-3/tls.cert"
  macaroon = "/var/lib/lnd-pool-3/data/chain/bitcoin/regtest/admin.macaroon"
}
HCL

# The same nodes as `bankd tls init` sees them, only to choose each certificate's host names:
# its address on the compose network, its service name (n1) for clients inside the network,
# and 127.0.0.1 for clients on the host, which reach the API through the published ports.
# Nodes check each other by the identity in the certificate, not by host name.
cat >"$dir/tls/tls-init.hcl" <<HCL
# Written by deploy/compose/init.sh: the certificate hosts of the compose nodes.
name = "compose"
tls {
  ca_file     = "/etc/bankd/tls/ca.crt"
  ca_key_file = "/etc/bankd/tls/ca.key"
}
gossip {
  keyring_file = "/etc/bankd/tls/gossip.keyring"
}
HCL
for i in 1 2 3; do
	cat >>"$dir/tls/tls-init.hcl" <<HCL
node "n$i" {
  region      = "compose"
  raft_addr   = "$(ip $((10 + i))):7001"
  gossip_addr = "n$i:7101"
  api_addr    = "127.0.0.1:$((7200 + i))"
  data_dir    = "/var/lib/bankd/n$i"
}
HCL
done
chmod 0777 "$dir/tls"
docker run --rm --network none --user 65532:65532 -v "$dir/tls:/etc/bankd/tls" "$image" \
	tls init -config /etc/bankd/tls/tls-init.hcl | sed 's/^/init: /'
chmod 0755 "$dir/tls"

# lnd's options shared by the pool nodes (mounted at /etc/lnd/lnd.conf); docker-compose.yml
# adds each node's own names. As in regtest/lnd.go.
cat >"$dir/lnd.conf" <<CONF
# Written by deploy/compose/init.sh for the compose cluster's lnd pool.
[Application Options]
lnddir=/var/lib/lnd
listen=0.0.0.0:9735
rpclisten=0.0.0.0:10009
norest=true
noseedbackup=true
nobootstrap=true
debuglevel=info
maxpendingchannels=10
trickledelay=50
maxbackoff=2s

[Bitcoin]
bitcoin.regtest=true
bitcoin.node=btcd
bitcoin.defaultchanconfs=1

[Btcd]
btcd.rpchost=btcd:18334
btcd.rpcuser=bankd
btcd.rpcpass=$rpcpass
btcd.rpccert=/var/lib/btcd/rpc.cert

[logging]
logging.file.disable=true

[healthcheck]
healthcheck.diskspace.attempts=0
CONF

# What docker-compose.yml substitutes (docker-compose --env-file DIR/.env).
cat >"$dir/.env" <<ENV
BANKD_COMPOSE_DIR=$dir
BANKD_TAG=$tag
BANKD_SUBNET_PREFIX=$prefix
BANKD_API_PORT_1=${ports[0]}
BANKD_API_PORT_2=${ports[1]}
BANKD_API_PORT_3=${ports[2]}
BTCD_RPCPASS=$rpcpass
ENV

cat <<TXT
init: the compose cluster's files are in $dir. Start it from the repository root with
  docker-compose --env-file $dir/.env -f deploy/compose/docker-compose.yml up -d
and talk to it with
  export BANKCTL_ADDR=https://127.0.0.1:${ports[0]},https://127.0.0.1:${ports[1]},https://127.0.0.1:${ports[2]}
  export BANKCTL_CA=$dir/tls/ca.crt BANKCTL_TOKEN=\$(cat $dir/tokens/admin.token)
  bin/bankctl cluster members
TXT
