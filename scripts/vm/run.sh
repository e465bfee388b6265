#!/usr/bin/env bash
# Boots the node-like test VM (built by build-image.sh) once: the guest runs SHARE_DIR/run.sh
# as root after boot, appends its output to SHARE_DIR/guest.log and powers off.
#
#   run.sh SHARE_DIR [TIMEOUT_SECONDS]
#
# SHARE_DIR is the guest's /host (9p); the serial console goes to SHARE_DIR/console.log.
# The image is booted with snapshot=on: every boot starts from the same clean disk.
# Exits with the guest script's exit code (SHARE_DIR/exit-code), 124 when QEMU was still
# running after TIMEOUT_SECONDS (default 1200; QEMU is then killed), 125 when the guest never
# wrote an exit code, 1 when the image is not built. SIGINT and SIGTERM kill QEMU too.
set -euo pipefail

usage() {
  echo "usage: run.sh SHARE_DIR [TIMEOUT_SECONDS]" >&2
  exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
share=$(readlink -f "$1")
timeout=${2:-1200}
[ -d "$share" ] || { echo "run.sh: $1 is not a directory" >&2; exit 2; }
[[ "$timeout" =~ ^[0-9]+$ ]] || usage

here=$(dirname "$(readlink -f "$0")")
key=$(sha256sum "$here/build-image.sh" | cut -c1-12)
image=/opt/rsrunc-test/vm/$key
if [ ! -e "$image/ready" ]; then
  echo "run.sh: the test VM image is not built (no $image/ready): run scripts/vm/build-image.sh as root" >&2
  exit 1
fi
# QEMU from its own tree (scripts/setup-host.sh test): installing Debian's qemu-system-x86
# on the host would replace a qemu-utils the machine may have from another suite.
qemu_bin=/opt/rsrunc-test/bin/qemu-system-x86_64
[ -x "$qemu_bin" ] || {
  echo "run.sh: $qemu_bin is missing: run scripts/setup-host.sh test, which builds it" >&2
  exit 1
}

# KVM only with real hardware virtualisation: /dev/kvm from kvm_pvm needs a special guest
# kernel, and Debian's dies under it.
accel="-accel tcg,thread=multi"
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -e /sys/module/kvm_pvm ] && [ -w /dev/kvm ]; then
  accel="-accel kvm"
fi

rm -f "$share/exit-code" "$share/console.log"
# shellcheck disable=SC2086 # $accel is two words
"$qemu_bin" $accel -cpu max -M q35 -m 3072 -smp 2 \
  -nodefaults -display none -no-reboot \
  -serial "file:$share/console.log" \
  -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
  -append "console=ttyS0 root=/dev/vda rw panic=-1" \
  -drive "file=$image/root.img,format=raw,if=virtio,snapshot=on" \
  -virtfs "local,path=$share,mount_tag=host,security_model=none,id=host" \
  -device virtio-rng-pci \
  </dev/null &
qemu=$!

stop_qemu() {
  kill "$qemu" 2>/dev/null || true
  wait "$qemu" 2>/dev/null || true
}
interrupted() { # SIGNAL-NAME EXIT-CODE
  echo "run.sh: $1, killing QEMU ($qemu)" >&2
  stop_qemu
  exit "$2"
}
trap 'interrupted SIGINT 130' INT
trap 'interrupted SIGTERM 143' TERM

deadline=$((SECONDS + timeout))
while kill -0 "$qemu" 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "run.sh: the VM was still running after ${timeout} s: killing QEMU ($qemu)" >&2
    stop_qemu
    exit 124
  fi
  sleep 1
done
qemu_status=0
wait "$qemu" || qemu_status=$?
trap - INT TERM

if [ ! -s "$share/exit-code" ]; then
  echo "run.sh: the guest wrote no exit code (QEMU exited with $qemu_status); see $share/console.log" >&2
  exit 125
fi
exit "$(cat "$share/exit-code")"
