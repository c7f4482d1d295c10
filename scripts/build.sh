#!/usr/bin/env bash
# Build iotnode for the Raspberry Pi family and for PCs: static binaries
# (CGO_ENABLED=0), stripped, with the version stamped in, into dist/.
#
#   scripts/build.sh                 # every target, version from git
#   VERSION=v1.2.0 scripts/build.sh  # a given version
#   scripts/build.sh linux/arm64     # only some targets
#   TAGS=noplugin scripts/build.sh   # without vendor plugins (about 7 MB smaller)
#
# Targets: linux/armv6 (Pi Zero, Pi 1), linux/armv7 (Pi 2, 32-bit OS on
# Pi 3/4/5), linux/arm64 (64-bit OS on Pi 3/4/5), linux/amd64.
set -Eeuo pipefail
trap 'echo "build failed at line $LINENO: $BASH_COMMAND" >&2' ERR

cd "$(dirname "$0")/.."
command -v go >/dev/null 2>&1 || { echo "go is not installed: this project needs Go 1.26 (https://go.dev/dl/)" >&2; exit 1; }

VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
TAGS="${TAGS:-}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(linux/armv6 linux/armv7 linux/arm64 linux/amd64)
fi

mkdir -p dist
for t in "${targets[@]}"; do
  os="${t%%/*}" arch="${t#*/}" goarm=""
  case "$arch" in
    armv6) goarch=arm goarm=6 ;;
    armv7) goarch=arm goarm=7 ;;
    arm64|amd64) goarch="$arch" ;;
    *) echo "unknown target $t (expected linux/armv6, linux/armv7, linux/arm64 or linux/amd64)" >&2; exit 2 ;;
  esac
  out="dist/iotnode_${os}_${arch}"
  CGO_ENABLED=0 GOOS="$os" GOARCH="$goarch" GOARM="$goarm" \
    go build -trimpath -tags "$TAGS" -ldflags "-s -w -X main.version=${VERSION}" -o "$out" ./cmd/iotnode
  printf '%-28s %6.1f MB\n' "$out" "$(echo "$(stat -c %s "$out") / 1000000" | bc -l 2>/dev/null || stat -c %s "$out")"
done
(cd dist && sha256sum iotnode_* > SHA256SUMS)
echo "version ${VERSION}; checksums in dist/SHA256SUMS"
