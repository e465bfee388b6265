#!/usr/bin/env bash
# Runs a busybox container with the installed shim under a private containerd, prints its
# output, and removes everything it made. Needs root, containerd, ctr and busybox-static
# (`make demo` installs them first).
set -euo pipefail

shim=$(command -v containerd-shim-rsrunc-v2) || { echo "demo: containerd-shim-rsrunc-v2 is not on PATH; run make install" >&2; exit 1; }
work=$(mktemp -d /tmp/rsrunc-demo.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    ctr --address "$work/c.sock" -n demo task kill -s SIGKILL demo 2>/dev/null || true
    ctr --address "$work/c.sock" -n demo task rm -f demo 2>/dev/null || true
    ctr --address "$work/c.sock" -n demo containers rm demo 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  grep -o " $work[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A busybox root filesystem from Debian's busybox-static.
mkdir -p "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
for applet in $("$work/rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$work/rootfs/bin/$applet"
done

cat > "$work/config.toml" <<CFG
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/c.sock"
[ttrpc]
  address = "$work/c.sock.ttrpc"
[debug]
  address = "$work/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/opt"
CFG
containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do ctr --address "$work/c.sock" version >/dev/null 2>&1 && break; sleep 0.1; done

echo "demo: containerd $(containerd --version | awk '{print $3}') with $shim"
echo "demo: ctr run --rm --runtime io.containerd.rsrunc.v2 --rootfs $work/rootfs demo ..."
set +e
ctr --address "$work/c.sock" -n demo run --rm --runtime io.containerd.rsrunc.v2 \
  --rootfs "$work/rootfs" demo /bin/sh -c 'echo "hello from a container run by rsrunc"; uname -sr; echo "pid in container: $$"; exit 7'
code=$?
set -e
echo "demo: the container exited with status $code (expected 7)"
[ "$code" = 7 ]
