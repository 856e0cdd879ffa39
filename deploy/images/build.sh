#!/usr/bin/env bash
# build.sh builds the project's container images FROM scratch out of static binaries, for
# `make images` (docs/CONTAINERS.md):
#
#   deploy/images/build.sh BINDIR VERSION BTCD_VERSION LND_VERSION
#
#   bankd/bankd, bankd/bankctl, bankd/signerd, bankd/coldvault   tags VERSION and latest
#   bankd/btcd (btcd + btcctl)                                     tags BTCD_VERSION and latest
#   bankd/lnd (lnd + lncli)                                        tags LND_VERSION and latest
#
# No registry is needed: each image is one Dockerfile of this folder applied to a temporary
# build context that holds only that image's binaries and an empty data directory, so the
# context sent to the engine is a few tens of MB at most. A binary that is not statically
# linked is refused (it would not start in an image without a libc).
set -euo pipefail

usage() {
	echo "usage: $0 BINDIR VERSION BTCD_VERSION LND_VERSION" >&2
	exit 2
}
[[ $# -eq 4 ]] || usage
bindir=$1 version=$2 btcd_version=$3 lnd_version=$4
here=$(cd "$(dirname "$0")" && pwd)

command -v docker >/dev/null || { echo "images: docker is not installed" >&2; exit 1; }

ctx_root=$(mktemp -d "${TMPDIR:-/tmp}/bankd-images.XXXXXX")
trap 'rm -rf "$ctx_root"' EXIT

# require_static refuses a binary with a program interpreter (a dynamically linked one).
require_static() {
	local bin=$1
	[[ -x $bin ]] || { echo "images: $bin is missing; run make build deps" >&2; exit 1; }
	if readelf -l "$bin" 2>/dev/null | grep -q 'Requesting program interpreter'; then
		echo "images: $bin is dynamically linked; build it with CGO_ENABLED=0" >&2
		exit 1
	fi
}

# build_image NAME TAG BINARY...: bankd/NAME:TAG and bankd/NAME:latest from NAME.Dockerfile.
build_image() {
	local name=$1 tag=$2
	shift 2
	local ctx=$ctx_root/$name b
	mkdir -p "$ctx/rootfs/tmp" "$ctx/rootfs/usr/local/bin" "$ctx/data"
	chmod 1777 "$ctx/rootfs/tmp"
	chmod 0700 "$ctx/data"
	for b in "$@"; do
		require_static "$bindir/$b"
		cp "$bindir/$b" "$ctx/rootfs/usr/local/bin/$b"
	done
	cp "$here/$name.Dockerfile" "$ctx/Dockerfile"
	echo "images: bankd/$name:$tag ($*)"
	# The engine's own output only when it fails (it warns about its legacy builder each time).
	local out
	if ! out=$(docker build --quiet --label "org.opencontainers.image.version=$tag" \
		-t "bankd/$name:$tag" -t "bankd/$name:latest" "$ctx" 2>&1); then
		echo "$out" >&2
		echo "images: building bankd/$name failed" >&2
		exit 1
	fi
}

for name in bankd bankctl signerd coldvault; do
	build_image "$name" "$version" "$name"
done
build_image btcd "$btcd_version" btcd btcctl
build_image lnd "$lnd_version" lnd lncli

docker image ls --filter 'reference=bankd/*' --format '{{.Repository}}:{{.Tag}}\t{{.Size}}'
