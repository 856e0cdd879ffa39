#!/usr/bin/env bash
# deps.sh builds the pinned btcd and lnd binaries that the regtest harness and `make run` use.
#
#   scripts/deps.sh btcd VERSION BINDIR   -> BINDIR/btcd, BINDIR/btcctl
#   scripts/deps.sh lnd  VERSION BINDIR   -> BINDIR/lnd,  BINDIR/lncli
#
# Each tool is rebuilt only when its version (or the way this script builds it) changes:
# BINDIR/.<tool>-version holds the version the binaries in BINDIR were built from on its first
# line and the build settings on its second, and the build is skipped when both match and the
# binaries exist. The stamp is written last, after the binaries are in place, so an interrupted
# build is redone.
#
# The binaries are static (CGO_ENABLED=0), like bankd's own, so that they run in the project's
# FROM-scratch container images too.
set -euo pipefail

usage() {
	echo "usage: $0 btcd|lnd VERSION BINDIR" >&2
	exit 2
}

[[ $# -eq 3 ]] || usage
tool=$1 version=$2 bindir=$3
[[ -n $version ]] || usage

GO=${GO:-go}
# The builds below happen outside this repository's module; a go.work must not leak into them.
export GOWORK=off
export CGO_ENABLED=0

# lnd's routing and RPC sub-servers the harness and bankd's lnd backend use (lnd's own release
# builds carry the same list plus a few that bankd does not need).
LND_TAGS="signrpc walletrpc chainrpc invoicesrpc routerrpc peersrpc"

case $tool in
btcd)
	binaries=(btcd btcctl)
	settings="CGO_ENABLED=0"
	;;
lnd)
	binaries=(lnd lncli)
	settings="CGO_ENABLED=0 -trimpath tags=$LND_TAGS"
	;;
*) usage ;;
esac
stamp_text=$(printf '%s\n%s' "$version" "$settings")

mkdir -p "$bindir"
bindir=$(cd "$bindir" && pwd)
stamp="$bindir/.$tool-version"

up_to_date() {
	[[ -f $stamp && "$(cat "$stamp")" == "$stamp_text" ]] || return 1
	local b
	for b in "${binaries[@]}"; do
		[[ -x $bindir/$b ]] || return 1
	done
}

# One build per tool at a time: two `make deps` running side by side wait for each other instead
# of racing on the same files.
exec 9>"$bindir/.$tool.lock"
if command -v flock >/dev/null; then
	flock 9
fi

if up_to_date; then
	echo "deps: $tool $version is up to date in $bindir"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bankd-deps-$tool.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/out"

start=$SECONDS
case $tool in
btcd)
	echo "deps: building btcd and btcctl $version (about a minute cold)..."
	GOBIN="$work/out" "$GO" install \
		"github.com/btcsuite/btcd@$version" \
		"github.com/btcsuite/btcd/cmd/btcctl@$version"
	;;
lnd)
	# `go install .../cmd/lnd@VERSION` is refused because lnd's go.mod has replace directives, so
	# build from a writable copy of the module source instead.
	echo "deps: downloading lnd $version source..."
	# Run outside any module so that this repository's go.mod and go.sum stay untouched.
	json=$(cd "$work" && "$GO" mod download -json "github.com/lightningnetwork/lnd@$version")
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
	if [[ -z $dir || ! -d $dir ]]; then
		echo "deps: go mod download did not report lnd's source directory:" >&2
		echo "$json" >&2
		exit 1
	fi
	cp -R "$dir" "$work/src"
	chmod -R u+w "$work/src"
	echo "deps: building lnd and lncli $version with tags '$LND_TAGS' (about 10 minutes cold)..."
	ldflags="-X github.com/lightningnetwork/lnd/build.Commit=$version"
	ldflags+=" -X github.com/lightningnetwork/lnd/build.RawTags=${LND_TAGS// /,}"
	(cd "$work/src" && "$GO" build -trimpath -tags "$LND_TAGS" -ldflags "$ldflags" \
		-o "$work/out/" ./cmd/lnd ./cmd/lncli)
	;;
esac

for b in "${binaries[@]}"; do
	if [[ ! -x $work/out/$b ]]; then
		echo "deps: the build did not produce $b" >&2
		exit 1
	fi
done
rm -f "$stamp"
for b in "${binaries[@]}"; do
	mv -f "$work/out/$b" "$bindir/$b"
done
echo "$stamp_text" >"$stamp"
echo "deps: $tool $version installed in $bindir ($((SECONDS - start)) s)"
