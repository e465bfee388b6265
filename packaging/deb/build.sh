#!/usr/bin/env bash
# Builds target/rsrunc_<version>_<arch>.deb from a built shim binary (make deb).
set -euo pipefail
bin=${1:?usage: build.sh PATH-TO-containerd-shim-rsrunc-v2}
top=$(cd "$(dirname "$0")/../.." && pwd)
version=$(awk -F'"' '/^version/ {print $2; exit}' "$top/Cargo.toml")
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$bin" "$stage/usr/bin/containerd-shim-rsrunc-v2"
install -D -m 0644 "$top/packaging/rsrunc.toml" "$stage/usr/share/doc/rsrunc/examples/rsrunc.toml"
install -D -m 0644 "$top/packaging/crun.toml" "$stage/usr/share/doc/rsrunc/examples/crun.toml"
install -D -m 0644 "$top/packaging/containerd/config-1.x.toml" "$stage/usr/share/doc/rsrunc/examples/containerd-config-1.x.toml"
install -D -m 0644 "$top/packaging/containerd/config-2.x.toml" "$stage/usr/share/doc/rsrunc/examples/containerd-config-2.x.toml"
install -D -m 0644 "$top/packaging/docker/daemon.json" "$stage/usr/share/doc/rsrunc/examples/docker-daemon.json"
install -D -m 0644 "$top/packaging/docker/daemon-default-runtime.json" "$stage/usr/share/doc/rsrunc/examples/docker-daemon-default-runtime.json"
mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CTL
Package: rsrunc
Version: $version
Architecture: $arch
Maintainer: rsrunc developers <rsrunc@localhost>
Depends: runc | crun
Recommends: containerd
Section: admin
Priority: optional
Description: containerd shim v2 for runc-compatible runtimes, written in Rust
 containerd-shim-rsrunc-v2 serves containerd's Task API for the runtime
 io.containerd.rsrunc.v2 and drives runc, crun or youki.
CTL
mkdir -p "$top/target"
dpkg-deb --root-owner-group --build "$stage" "$top/target/rsrunc_${version}_${arch}.deb"
