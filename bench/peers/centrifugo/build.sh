#!/usr/bin/env bash
# build.sh: Centrifugo, the third peer, built from the Go module proxy into
# $BIN (default /tmp/roomchat-bench) with `go install module@version`, which
# ignores every go.mod around it: neither this repository's root module nor
# the bench/ module gains a requirement, and no Centrifugo source lands in
# the repository. The version is pinned here; a binary of that version
# already in $BIN is kept (the first build takes minutes of CPU, later ones
# come from Go's build cache).
#
#   bench/peers/centrifugo/build.sh          # prints the binary's path
set -euo pipefail

VERSION=6.9.1
MODULE=github.com/centrifugal/centrifugo/v6
BIN=${BIN:-/tmp/roomchat-bench}
mkdir -p "$BIN"

if [ -x "$BIN/centrifugo" ] && "$BIN/centrifugo" version 2>/dev/null | grep -q "Centrifugo v$VERSION "; then
	echo "$BIN/centrifugo"
	exit 0
fi
echo "# building Centrifugo v$VERSION into $BIN (the first time takes a few minutes)" >&2
# -X sets the version the binary reports (its releases get it the same way).
# -mod=mod overrides a -mod=vendor in the caller's GOFLAGS, which would
# refuse a module@version install.
(cd "$BIN" && GOBIN="$BIN" go install -mod=mod \
	-ldflags "-X $MODULE/internal/build.Version=$VERSION" "$MODULE@v$VERSION")
"$BIN/centrifugo" version | grep -q "Centrifugo v$VERSION " || {
	echo "build.sh: $BIN/centrifugo does not report v$VERSION" >&2
	exit 1
}
echo "$BIN/centrifugo"
