#!/usr/bin/env bash
# build-prev.sh builds bankd as it was at an earlier commit, for the rolling-upgrade tests: the
# cluster starts on that binary and is upgraded node by node to the current one.
#
#   scripts/build-prev.sh REV OUT      e.g. scripts/build-prev.sh 27b4134... bin/bankd-prev
#
# The Makefile names the commit (PREVIOUS_RELEASE) and nothing else does. The source comes from
# `git archive REV` unpacked into build/prev-<full hash>/ (the work tree and the index are never
# touched), built there as `make build` builds bankd (static, -X main.version=<git describe of
# REV>), and removed again. It is rebuilt only when REV changes: OUT.version holds the full hash and
# the build settings, written after OUT is in place, so an interrupted build is redone.
set -euo pipefail

usage() {
	echo "usage: $0 REV OUT" >&2
	exit 2
}

[[ $# -eq 2 && -n $1 && -n $2 ]] || usage
rev=$1 out=$2

GO=${GO:-go}
# The old source is a module of its own; a go.work must not leak into its build.
export GOWORK=off
export CGO_ENABLED=0

root=$(git rev-parse --show-toplevel)
if ! hash=$(git -C "$root" rev-parse --verify --quiet "$rev^{commit}"); then
	echo "build-prev: commit $rev (PREVIOUS_RELEASE in the Makefile) is not in this clone." >&2
	echo "build-prev: the upgrade tests need the full history: git fetch --unshallow (or git fetch origin $rev)." >&2
	exit 1
fi
version=$(git -C "$root" describe --always "$hash")
settings="CGO_ENABLED=0 -ldflags=-X main.version=$version"
stamp_text=$(printf '%s\n%s' "$hash" "$settings")

mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
stamp="$out.version"

if [[ -x $out && -f $stamp && "$(cat "$stamp")" == "$stamp_text" ]]; then
	echo "build-prev: bankd $version is up to date in $out"
	exit 0
fi

src="$root/build/prev-$hash"
start=$SECONDS
echo "build-prev: building bankd $version into $out..."
rm -rf "$src"
mkdir -p "$src"
git -C "$root" archive "$hash" | tar -x -C "$src"
(cd "$src" && "$GO" build -ldflags "-X main.version=$version" -o "$out.tmp" ./cmd/bankd)
rm -f "$stamp"
mv -f "$out.tmp" "$out"
rm -rf "$src"
echo "$stamp_text" >"$stamp"
echo "build-prev: bankd $version built in $((SECONDS - start)) s"
