#!/usr/bin/env bash
# Builds the container image from the repository's Dockerfile without a Docker engine or
# an image registry, for tests/deploy/test_image.py:
#
#   1. a base image made from Debian's own packages (debootstrap minbase + python3 +
#      python3-venv, a virtualenv at /opt/python on PATH so `pip` and `python` work as in
#      the python:3.11-slim image), cached as a tarball keyed by the Debian release and
#      this recipe, and imported into a local container storage;
#   2. `buildah build --isolation chroot` (daemonless, as root; overlay storage, or vfs
#      where overlay mounts are refused) of the Dockerfile with BASE_IMAGE pointing at
#      that base. pip inside the build fetches the dependencies from PyPI.
#
# Needs root (debootstrap, chroot isolation). Debian's buildah, podman, runc and
# debootstrap are installed with apt-get when missing. Everything is cached under
# ~/.cache/canary-bot/image (CANARY_BOT_CACHE overrides the root): the first run pays
# about a minute for debootstrap, each change to the sources one to three minutes of pip;
# unchanged inputs reuse the last image at once.
#
# Prints, as its last lines of stdout, key=value lines the test reads:
#   image=<name of the built image>
#   storage_conf=<containers-storage.conf to pass as CONTAINERS_STORAGE_CONF>
#   containers_conf=<containers.conf to pass as CONTAINERS_CONF>
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

release="${IMAGE_BASE_DEBIAN_RELEASE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${CANARY_BOT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/canary-bot}/image"
tag="${IMAGE_TAG:-localhost/canary-bot:test}"

log() { echo "[image] $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "error: building the image needs root (debootstrap and buildah's chroot isolation)" >&2
  exit 2
fi

missing=()
for tool in buildah podman debootstrap runc; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]} from Debian packages"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    buildah podman debootstrap runc uidmap >&2
fi

# A private container storage. overlay where the kernel lets us mount it (each container
# and build step is then a thin layer), else vfs, which needs no mounts at all but copies
# the whole file system for every step and container. IMAGE_STORAGE_DRIVER overrides.
driver="${IMAGE_STORAGE_DRIVER:-}"
if [ -z "$driver" ]; then
  probe="$(mktemp -d)"
  mkdir "$probe"/{lower,upper,work,merged}
  if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
    "$probe/merged" 2>/dev/null; then
    umount "$probe/merged"
    driver=overlay
  else
    driver=vfs
  fi
  rm -rf "$probe"
fi
# Engine settings that work without systemd: cgroupfs, file events, and runc (Debian's
# crun refuses hybrid cgroup hierarchies, which some hosts have).
mkdir -p "$cache/storage-$driver" "$cache/run-$driver" "$cache/base"
export CONTAINERS_STORAGE_CONF="$cache/storage-$driver.conf" CONTAINERS_CONF="$cache/containers.conf"
cat >"$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "$driver"
graphroot = "$cache/storage-$driver"
runroot = "$cache/run-$driver"
CONF
cat >"$CONTAINERS_CONF" <<'CONF'
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
log "container storage: $driver in $cache/storage-$driver"

# One build at a time on this cache.
exec 9>"$cache/.lock"
flock 9

# --- the base image ---------------------------------------------------------------------
# The recipe is part of the key: change the package list or the venv and it is rebuilt.
packages="python3,python3-venv"
venv=/opt/python
recipe="release=$release packages=$packages venv=$venv"
key="$(printf '%s\n' "$recipe" | sha256sum | cut -c1-12)"
tarball="$cache/base/$release-$key.tar"
start=$(date +%s)

if [ ! -f "$tarball" ]; then
  log "making the base from Debian $release packages (debootstrap minbase + $packages; about a minute)"
  rootfs="$(mktemp -d "$cache/base/rootfs.XXXXXX")"
  chmod 0755 "$rootfs"   # the image's / (mktemp makes it 0700: no one else could enter)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include="$packages" "$release" "$rootfs" "$mirror" >&2
  # pip and python on PATH as in the python image, without touching Debian's own python.
  chroot "$rootfs" python3 -m venv "$venv" >&2
  rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log
  tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
  trap - EXIT
  log "base rootfs cached in $tarball ($(( $(date +%s) - start ))s)"
fi
raw="localhost/canary-bot-base-raw:$release-$key"
if ! podman image exists "$raw"; then
  log "importing $raw"
  podman import \
    --change "ENV PATH=$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change 'CMD ["python3"]' \
    "$tarball" "$raw" >&2
fi
# pip in the build trusts what this host trusts (its CA bundle, e.g. a proxy's CA on a
# network that inspects TLS). Only this local base carries it, never the Dockerfile.
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ -f "$ca_bundle" ]; then
  ca_key="$(sha256sum <"$ca_bundle" | cut -c1-12)"
else
  ca_key=none
fi
base="localhost/canary-bot-base:$release-$key-$ca_key"
if ! podman image exists "$base"; then
  ctr="$(buildah from --pull-never "$raw")"
  if [ -f "$ca_bundle" ]; then
    buildah copy --chmod 0644 "$ctr" "$ca_bundle" /etc/ssl/certs/ca-certificates.crt >/dev/null
    buildah config --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
      --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "$ctr"
  fi
  buildah commit --rm "$ctr" "$base" >&2
fi

# --- the image --------------------------------------------------------------------------
# The image is keyed by what it is built from: the Dockerfile, the files .dockerignore
# lets into the context (pyproject.toml, README.md, bot/, rollout/) and the base. Same
# inputs: the image from the last build is reused as it is. (buildah 1.28's layer cache
# is not used: it cannot bind-mount `from=build` when that stage comes from the cache.)
inputs="$(cd "$repo" && {
  echo "$base"
  find Dockerfile .dockerignore pyproject.toml README.md bot rollout -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-12)"
keyed="${tag%%:*}:inputs-$inputs"
if podman image exists "$keyed"; then
  log "reusing $keyed: the Dockerfile, its context and the base are unchanged"
  podman tag "$keyed" "$tag" >&2
else
  log "building $tag from Dockerfile with BASE_IMAGE=$base ($(( $(date +%s) - start ))s elapsed)"
  buildah build --isolation chroot --build-arg "BASE_IMAGE=$base" \
    -f "$repo/Dockerfile" -t "$tag" -t "$keyed" "$repo" >&2
  # Earlier builds go (with vfs storage each is a full copy of the file system).
  podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=${tag%%:*}:inputs-*" |
    grep -- ":inputs-" | grep -vx "$keyed" | xargs -r podman rmi >/dev/null 2>&1 || true
  podman image prune -f >/dev/null
fi
log "built $tag in $(( $(date +%s) - start ))s"
echo "image=$tag"
echo "storage_conf=$CONTAINERS_STORAGE_CONF"
echo "containers_conf=$CONTAINERS_CONF"
