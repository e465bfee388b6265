#!/usr/bin/env bash
# Installs what rsrunc's demo, tests and benchmarks need on a Debian 12 machine, without
# changing the version of any package the machine already has:
#
#   setup-host.sh demo    busybox-static, and containerd with runc when no containerd (1.6+)
#                         is installed: all from the machine's own release, only if missing
#   setup-host.sh bench   the demo's set, runc and crun (machine's release, only if missing),
#                         and under /opt/rsrunc-test (nothing installed over the host's):
#                         containerd 1.6, 1.7 and 2.x and Docker 26 as trees extracted with
#                         `dpkg -x`, links to the versions the tests run by default in
#                         /opt/rsrunc-test/bin, youki built from the crate registry
#   setup-host.sh test    the bench set (what `make test` needs)
#   setup-host.sh node    the test set, plus QEMU in a tree of its own (mmdebstrap) and the
#                         node-like test VM image (scripts/vm), for `make node`
#
# Newer releases' packages are only downloaded (through a private apt configuration under
# /opt/rsrunc-test/apt, never the machine's own), then extracted. Every package this script
# installs is listed in /opt/rsrunc-test/installed-packages, which `make clean-host` reads to
# remove them again. Idempotent: quick when everything is there.
# `make deb` (packaging/deb/build.sh) adds what it needs itself, by the same rules: cargo-deb
# built into /opt/rsrunc-test/cargo-deb, and lintian from the machine's release when that only
# adds packages (listed in installed-packages), else in a bookworm tree of its own made with
# mmdebstrap, /opt/rsrunc-test/lintian (bookworm's lintian needs a newer perl than this image's).
set -euo pipefail

mode=${1:-test}
case "$mode" in demo | bench | test | node) ;; *) echo "usage: setup-host.sh demo|bench|test|node" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "setup-host: run as root (apt-get, dpkg and mount need it)" >&2; exit 1; }

top=$(cd "$(dirname "$0")/.." && pwd)
opt=/opt/rsrunc-test
mkdir -p "$opt/bin"

# Earlier versions of this script added trixie and sid to the machine's own apt sources;
# those files are ours, and no longer wanted there.
rm -f /etc/apt/sources.list.d/rsrunc-extra.sources /etc/apt/preferences.d/rsrunc-extra

# --- Packages from the machine's own release, installed only when missing -------------------
apt_updated=""
install_missing() { # PACKAGE...
  local missing="" p
  for p in "$@"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  [ -n "$missing" ] || return 0
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  local before after
  before=$(dpkg-query -W -f '${Package}\n' | sort)
  echo "setup-host: installing from the machine's release:$missing"
  # No target release: the candidate is the machine's own (and its security updates).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  after=$(dpkg-query -W -f '${Package}\n' | sort)
  comm -13 <(echo "$before") <(echo "$after") >>"$opt/installed-packages"
}

install_missing busybox-static
if ! command -v containerd >/dev/null 2>&1; then
  install_missing containerd runc
fi
[ "$mode" = demo ] && exit 0

# e2fsprogs: mkfs.ext4 makes the images of the loop-mount tests (priority required, so
# normally there already).
install_missing runc libseccomp-dev pkg-config protobuf-compiler e2fsprogs
# criu: checkpoint and restore (tests/tests/checkpoint.rs), which runc runs as a tool;
# iptables: criu locks a network namespace with iptables-restore while it dumps.
install_missing criu iptables

# --- Newer releases, extracted under /opt/rsrunc-test ----------------------------------------
# A private apt configuration that knows bookworm, trixie and sid, used only to download.
apt_dir=$opt/apt
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uri=${uri:-http://deb.debian.org/debian}
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/empty"
for suite in bookworm trixie sid; do
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main"
done >"$apt_dir/sources.list"
xapt() { # apt-get or apt-cache ($1) on the private configuration
  local tool=$1
  shift
  "$tool" -q -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts="$apt_dir/empty" \
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache" \
    -o Dir::Etc::Preferences="$apt_dir/empty" -o Dir::Etc::PreferencesParts="$apt_dir/empty" \
    -o APT::Sandbox::User=root "$@"
}
private_lists_fresh=""
version_in() { # PACKAGE SUITE: the version of PACKAGE in that suite of Debian's archive
  local ver
  ver=$(xapt apt-cache madison "$1" | awk -v s="$2/main" '$0 ~ s {print $3; exit}')
  if [ -z "$ver" ] && [ -z "$private_lists_fresh" ]; then
    xapt apt-get update -qq >&2
    private_lists_fresh=1
    ver=$(xapt apt-cache madison "$1" | awk -v s="$2/main" '$0 ~ s {print $3; exit}')
  fi
  [ -n "$ver" ] || { echo "setup-host: no $1 in Debian $2" >&2; return 1; }
  echo "$ver"
}
upstream() { # DEBIAN-VERSION: the upstream part (1:2.75-10 -> 2.75, 1.7.24~ds1-6 -> 1.7.24)
  local v=${1#*:}
  echo "${v%%[~+-]*}"
}
extract() { # DIR SUITE PACKAGE...: extracts the packages of that suite into DIR, once
  local dir=$1 suite=$2 tmp p specs=""
  shift 2
  [ -e "$dir/.extracted" ] && return 0
  for p in "$@"; do specs="$specs $p=$(version_in "$p" "$suite")"; done
  tmp=$(mktemp -d)
  # shellcheck disable=SC2086 # one word per package
  (cd "$tmp" && xapt apt-get download -qq $specs >&2)
  mkdir -p "$dir"
  for p in "$tmp"/*.deb; do dpkg -x "$p" "$dir"; done
  rm -rf "$tmp"
  echo "$specs" >"$dir/.extracted"
}

# containerd from each release, each running from its own directory, where it also
# finds its own Go shim (tests/tests/versions.rs runs every containerd-* tree).
for suite in bookworm trixie sid; do
  v=$(upstream "$(version_in containerd $suite)")
  extract "$opt/containerd-$v" $suite containerd
  if [ $suite = trixie ]; then c17=$opt/containerd-$v; fi
done
# Docker 23+ hands dotted runtime names to containerd; the machine's release has 20.10.
d26=$opt/docker-$(upstream "$(version_in docker.io trixie)")
extract "$d26" trixie docker.io docker-cli
# crun 1.8 (bookworm) rejects the runtime-spec 1.1 configs that containerd 1.7 and Docker 26
# write. trixie's crun needs a newer C library: it runs with trixie's own libraries from
# its tree (interpreter and rpath pointed there), leaving the machine's libc alone.
crun_dir=$opt/crun-$(upstream "$(version_in crun trixie)")
if [ ! -e "$crun_dir/.extracted" ]; then
  install_missing patchelf
  extract "$crun_dir" trixie crun libc6 libyajl2 libseccomp2 libcap2 libsystemd0
  libs=$crun_dir/usr/lib/x86_64-linux-gnu
  patchelf --set-interpreter "$libs/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$libs" "$crun_dir/usr/bin/crun"
fi
ln -sfn "$crun_dir/usr/bin/crun" "$opt/bin/crun"
# criu 3.17 (bookworm) cannot dump on newer kernels (it fails to parse their vDSO:
# "Unexpected rt vDSO area bounds"); trixie's criu runs with trixie's C library and the
# libraries trixie renamed from its tree, the rest (installed with bookworm's criu above)
# from the machine. runc finds it first on the tests' PATH.
criu_dir=$opt/criu-$(upstream "$(version_in criu trixie)")
if [ ! -e "$criu_dir/.extracted" ]; then
  install_missing patchelf
  extract "$criu_dir" trixie criu libcompel1 libcriu2 libc6 libgnutls30t64 libnettle8t64 \
    libhogweed6t64 libidn2-0 libunistring5 libtasn1-6 libp11-kit0 libgmp10 libffi8
  libs=$criu_dir/usr/lib/x86_64-linux-gnu
  patchelf --set-interpreter "$libs/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$libs" "$criu_dir/usr/sbin/criu"
fi
ln -sfn "$criu_dir/usr/sbin/criu" "$opt/bin/criu"
# crun checkpoints through libcriu, which it loads when asked (from its own tree's rpath).
ln -sfn "$criu_dir/usr/lib/x86_64-linux-gnu/libcriu.so.2" "$crun_dir/usr/lib/x86_64-linux-gnu/libcriu.so.2"
# What the tests and benchmarks run by default (the Makefile puts this directory first on
# their PATH): containerd 1.7 with its Go shim, Docker 26.
for b in containerd ctr containerd-shim-runc-v2 containerd-shim-runc-v1 containerd-shim; do
  ln -sfn "$c17/usr/bin/$b" "$opt/bin/$b"
done
ln -sfn "$d26/usr/sbin/dockerd" "$opt/bin/dockerd"
for b in docker docker-init docker-proxy; do
  [ -e "$d26/usr/bin/$b" ] && ln -sfn "$d26/usr/bin/$b" "$opt/bin/$b"
done

# youki, the third runc-compatible runtime the shim drives, from the crate registry (Debian
# does not package it). cgroup v1 support is a feature of its own; this host is hybrid.
if [ ! -x "$opt/youki/bin/youki" ]; then
  echo "setup-host: building youki 0.7.0 (a few minutes, once)"
  cargo install --quiet --locked --root "$opt/youki" --version 0.7.0 --features v1 youki
fi
ln -sfn "$opt/youki/bin/youki" "$opt/bin/youki"

# crun refuses hybrid cgroups while a controller (hugetlb here) is left in the v2 hierarchy.
if [ -d /sys/fs/cgroup/cpu ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
  if grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
    mkdir -p /sys/fs/cgroup/hugetlb
    if ! mountpoint -q /sys/fs/cgroup/hugetlb; then
      mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
      touch "$opt/mounted-hugetlb"
    fi
  fi
fi

if [ "$mode" = node ]; then
  # The node-like test VM (scripts/vm). QEMU runs from a tree of its own, built with
  # mmdebstrap from the machine's release and started through that tree's loader:
  # installing qemu-system-x86 would replace a qemu-utils the machine may already have
  # (this image's comes from bookworm-backports, and apt removes it).
  install_missing mmdebstrap
  qemu_dir=$opt/qemu
  if [ ! -e "$qemu_dir/.built" ]; then
    rm -rf "$qemu_dir"
    echo "setup-host: building a QEMU tree in $qemu_dir (once)"
    mmdebstrap --quiet --variant=essential --include=qemu-system-x86 \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$qemu_dir" "$uri"
    touch "$qemu_dir/.built"
  fi
  cat >"$opt/bin/qemu-system-x86_64" <<QEMU
#!/bin/sh
# QEMU from $qemu_dir, with that tree's own loader, libraries, modules and firmware.
export QEMU_MODULE_DIR=$qemu_dir/usr/lib/x86_64-linux-gnu/qemu
exec $qemu_dir/lib64/ld-linux-x86-64.so.2 --library-path $qemu_dir/usr/lib/x86_64-linux-gnu \\
  $qemu_dir/usr/bin/qemu-system-x86_64 -L $qemu_dir/usr/share/qemu -L $qemu_dir/usr/share/seabios "\$@"
QEMU
  chmod +x "$opt/bin/qemu-system-x86_64"
  bash "$top/scripts/vm/build-image.sh" >/dev/null
fi

echo "setup-host: containerd $("$opt/bin/containerd" --version | awk '{print $3}') (and $(cd "$opt" && echo containerd-*)), dockerd $("$opt/bin/dockerd" --version | awk '{print $3}' | tr -d ,), runc $(runc --version | awk 'NR==1 {print $3}'), crun $("$opt/bin/crun" --version | awk 'NR==1 {print $3}'), criu $("$opt/bin/criu" --version | awk 'NR==1 {print $2}'), $("$opt/bin/youki" --version 2>/dev/null | sed -n 1p)"
