#!/usr/bin/env bash
# Installs what rsrunc's demo, tests and benchmarks need on a fresh Debian 12 machine:
# containerd 1.7 and Docker 26 (Debian trixie), runc, crun, busybox-static, and the cgroup
# fix crun needs on hybrid hosts. Idempotent: safe to run before every `make test`.
set -euo pipefail

need_root() { [ "$(id -u)" = 0 ] || { echo "setup-host: run as root (apt-get and mount need it)" >&2; exit 1; }; }
need_root

# Same mirror as the machine's own bookworm source, with trixie and sid pinned low so that
# nothing else on the machine moves unless a package is asked for from that suite by name.
if [ ! -f /etc/apt/sources.list.d/rsrunc-extra.sources ]; then
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  uri=${uri:-http://deb.debian.org/debian}
  cat > /etc/apt/sources.list.d/rsrunc-extra.sources <<SRC
Types: deb
URIs: $uri
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat > /etc/apt/preferences.d/rsrunc-extra <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=sid
Pin-Priority: 50
PIN
  rm -f /var/lib/rsrunc-setup.done
fi

want="containerd runc crun busybox-static docker.io"
missing=""
for p in $want; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
ctr_ver=$(dpkg-query -W -f '${Version}' containerd 2>/dev/null || true)
case "$ctr_ver" in 1.7.*) ;; *) missing="$missing containerd" ;; esac
# Docker 23+ hands dotted runtime names to containerd; bookworm's docker.io is 20.10.
docker_ver=$(dpkg-query -W -f '${Version}' docker.io 2>/dev/null || true)
case "$docker_ver" in 2[3-9].*) ;; *) missing="$missing docker.io" ;; esac
if [ -n "$missing" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie $want >/dev/null
fi
# Debian's packages may start a system containerd and dockerd; tests never use them, and
# they are not ours to stop.

# containerd 1.6 and 2.x beside the installed 1.7, for the protocol tests across daemon
# versions: each runs from its own directory, where it also finds its own Go shim.
extract_containerd() { # $1: version prefix (1.6, 2.)
  local ver dir tmp
  ver=$(apt-cache madison containerd | awk -v p="$1" 'index($3, p) == 1 {print $3; exit}')
  [ -n "$ver" ] || { echo "setup-host: no containerd $1* in apt" >&2; return 1; }
  dir=/opt/rsrunc-test/containerd-${ver%%~*}
  dir=${dir%%+*}
  [ -x "$dir/usr/bin/containerd" ] && return 0
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "containerd=$ver" 2>/dev/null) || { apt-get update -qq; (cd "$tmp" && apt-get download -qq "containerd=$ver"); }
  mkdir -p "$dir"
  dpkg -x "$tmp"/containerd_*.deb "$dir"
  rm -rf "$tmp"
}
extract_containerd 1.6
extract_containerd 2.

# youki, the third runc-compatible runtime the shim drives, from the crate registry (Debian
# does not package it). cgroup v1 support is a feature of its own; this host is hybrid.
youki_dir=/opt/rsrunc-test/youki
if [ ! -x "$youki_dir/bin/youki" ]; then
  dpkg -s libseccomp-dev pkg-config >/dev/null 2>&1 || apt-get install -y -qq libseccomp-dev pkg-config >/dev/null
  echo "setup-host: building youki 0.7.0 (a few minutes, once)"
  cargo install --quiet --root "$youki_dir" --version 0.7.0 --features v1 youki
fi

# crun refuses hybrid cgroups while a controller (hugetlb here) is left in the v2 hierarchy.
if [ -d /sys/fs/cgroup/cpu ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
  if grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mountpoint -q /sys/fs/cgroup/hugetlb || mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
  fi
fi
echo "setup-host: containerd $(dpkg-query -W -f '${Version}' containerd), docker.io $(dpkg-query -W -f '${Version}' docker.io), runc $(dpkg-query -W -f '${Version}' runc), crun $(dpkg-query -W -f '${Version}' crun), $("$youki_dir/bin/youki" --version | head -1)"
