#!/usr/bin/env bash
# Builds the node-like test VM once and caches it: Debian trixie with Debian's kernel,
# systemd as PID 1, pure cgroup v2, containerd 1.7 and Docker 26 started by their systemd
# units, runc, crun, busybox-static, and sid's containerd 2.1.9 extracted (not started) at
# /opt/containerd-2.1.9.
#
#   build-image.sh     prints the image directory, /opt/rsrunc-test/vm/<key>, holding
#                      vmlinuz, initrd.img, root.img and a `ready` marker (written last)
#
# <key> is a hash of this script, so editing it builds a new image (older ones are removed).
# The guest runs /host/run.sh from a 9p share once it is up (rsrunc-test.service), appends
# its output to /host/guest.log, writes its exit code to /host/exit-code and powers off;
# scripts/vm/run.sh boots it with the QEMU that scripts/setup-host.sh puts in a tree of its
# own. Only mmdebstrap and e2fsprogs are installed on the host, from the machine's own
# release and only when missing; the guest's packages
# come from the mirror the machine already uses. Progress goes to stderr, the directory to
# stdout. Idempotent: instant when the image is there.
set -euo pipefail

self=$(readlink -f "$0")

# --- Setup hook: mmdebstrap runs `build-image.sh setup ROOT` before installing anything ----
if [ "${1:-}" = setup ]; then
  root=$2
  # sid is known to the build only for one download (see below), never preferred.
  mkdir -p "$root/etc/apt/preferences.d"
  printf 'Package: *\nPin: release n=sid\nPin-Priority: 50\n' >"$root/etc/apt/preferences.d/rsrunc-sid"
  # A small initramfs (quicker to boot under emulation): the disk driver and the root file
  # system's module, the only ones Debian's kernel has as modules that the boot needs.
  mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/etc/initramfs-tools/hooks"
  echo MODULES=list >"$root/etc/initramfs-tools/conf.d/rsrunc-vm"
  cat >"$root/etc/initramfs-tools/hooks/rsrunc-vm" <<'EOF'
#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
force_load virtio_blk
force_load ext4
EOF
  chmod 0755 "$root/etc/initramfs-tools/hooks/rsrunc-vm"
  exit 0
fi

# --- Customize hook: mmdebstrap runs `build-image.sh customize ROOT` on the guest tree -----
if [ "${1:-}" = customize ]; then
  root=$2
  cat >"$root/etc/fstab" <<'EOF'
/dev/vda / ext4 rw,errors=remount-ro 0 0
host /host 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0
EOF
  mkdir -p "$root/host"
  echo rsrunc-node >"$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 rsrunc-node\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  # Nobody logs in: root stays locked, no autologin, no first-boot questions. Nothing
  # runs on a timer while tests do.
  chroot "$root" systemctl mask systemd-firstboot.service apt-daily.timer \
    apt-daily-upgrade.timer dpkg-db-backup.timer fstrim.timer e2scrub_all.timer >/dev/null 2>&1
  # The 9p share's modules are in the root file system; load them early.
  printf '9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/rsrunc-9p.conf"

  # The test unit: runs the host's script once the node is up, then powers off.
  cat >"$root/usr/local/sbin/rsrunc-test-run" <<'EOF'
#!/bin/sh
# Run by rsrunc-test.service: the host's /host/run.sh, its output appended to
# /host/guest.log, its exit code to /host/exit-code; then power off.
echo "rsrunc-test: running /host/run.sh" >/dev/console
/bin/sh /host/run.sh >>/host/guest.log 2>&1
code=$?
echo "$code" >/host/exit-code
sync
echo "rsrunc-test: /host/run.sh exited $code" >/dev/console
systemctl poweroff --no-block
EOF
  chmod 0755 "$root/usr/local/sbin/rsrunc-test-run"
  cat >"$root/etc/systemd/system/rsrunc-test.service" <<'EOF'
[Unit]
Description=rsrunc end-to-end tests from the host share
Wants=containerd.service docker.service
After=multi-user.target containerd.service docker.service
RequiresMountsFor=/host
ConditionPathExists=/host/run.sh

[Service]
Type=oneshot
Environment=HOME=/root
ExecStart=/usr/local/sbin/rsrunc-test-run
TimeoutStartSec=infinity
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
  chroot "$root" systemctl enable rsrunc-test.service containerd.service docker.service >/dev/null 2>&1

  # sid's containerd 2.1.9, extracted beside the installed 1.7 (the build knows sid only
  # for this download, pinned below trixie so that nothing else comes from it).
  ver=$(chroot "$root" apt-cache madison containerd | awk '{ if (index($3, "2.1.9") == 1) { print $3; exit } }')
  [ -n "$ver" ] || { echo "build-image: no containerd 2.1.9 in sid" >&2; exit 1; }
  chroot "$root" sh -c "cd /tmp && apt-get download -q containerd=$ver" >&2
  mkdir -p "$root/opt/containerd-2.1.9"
  dpkg -x "$root"/tmp/containerd_*.deb "$root/opt/containerd-2.1.9"
  rm -f "$root"/tmp/containerd_*.deb
  sed -i '/ sid /d' "$root/etc/apt/sources.list"
  rm -f "$root/etc/apt/preferences.d/rsrunc-sid" "$root"/var/lib/apt/lists/*_sid_*

  # Debian's kernel has virtio_blk and ext4 as modules: the initramfs must carry them
  # (virtio_pci is built in).
  initrd=$(ls "$root"/boot/initrd.img-* | head -1)
  mods=$(chroot "$root" lsinitramfs "/boot/$(basename "$initrd")"; cat "$root"/lib/modules/*/modules.builtin)
  for m in virtio_pci virtio_blk ext4; do
    grep -q "/$m\.ko" <<<"$mods" || { echo "build-image: $m is neither built in nor in the initramfs" >&2; exit 1; }
  done
  exit 0
fi

# --- The build ---------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || { echo "build-image: run as root (mmdebstrap and apt-get need it)" >&2; exit 1; }

key=$(sha256sum "$self" | cut -c1-12)
base=/opt/rsrunc-test/vm
dir=$base/$key
if [ -e "$dir/ready" ]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$base"
exec 9>"$base/.lock"
flock 9 # one build at a time; a second caller waits and then finds the image
if [ -e "$dir/ready" ]; then
  echo "$dir"
  exit 0
fi

# Host tools, from the machine's own release (no target release), only when missing.
missing=""
for p in mmdebstrap e2fsprogs; do
  dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "build-image: installing from the machine's release:$missing" >&2
  before=$(dpkg-query -W -f '${Package}\n' | sort)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
  fi
  # Listed with what scripts/setup-host.sh installs, so that the host can be cleaned.
  comm -13 <(echo "$before") <(dpkg-query -W -f '${Package}\n' | sort) >>/opt/rsrunc-test/installed-packages
fi

uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uri=${uri:-http://deb.debian.org/debian}

echo "build-image: building the test VM image in $dir (a few minutes, once)" >&2
start=$(date +%s)
for old in "$base"/*/; do # images of earlier versions of this script
  [ "${old%/}" = "$dir" ] || rm -rf "$old"
done
rm -rf "$dir"
mkdir -p "$dir"
tree=$dir/tree

packages=systemd,systemd-sysv,udev,dbus,kmod,procps,iproute2,iptables,containerd,runc,crun,docker.io,docker-cli,busybox-static,linux-image-amd64,initramfs-tools
# The mirror may be a dated snapshot whose Release files have expired.
mmdebstrap --variant=apt --include="$packages" \
  --dpkgopt=force-unsafe-io \
  --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
  --setup-hook="bash '$self' setup \"\$1\"" \
  --customize-hook="bash '$self' customize \"\$1\"" \
  trixie "$tree" \
  "deb $uri trixie main" \
  "deb $uri sid main" >&2

# A fixed machine id (mmdebstrap leaves none): with snapshot=on every boot would otherwise
# be a first boot.
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$tree/etc/machine-id"
echo >>"$tree/etc/machine-id"
cp "$(ls "$tree"/boot/vmlinuz-* | head -1)" "$dir/vmlinuz"
cp "$(ls "$tree"/boot/initrd.img-* | head -1)" "$dir/initrd.img"
# Room for images and containers; the file is sparse and the VM writes to a snapshot.
echo "build-image: guest tree built in $(($(date +%s) - start)) s, making root.img" >&2
mkfs.ext4 -q -F -L rsrunc-node -d "$tree" "$dir/root.img" 8G >&2
rm -rf "$tree"
touch "$dir/ready"
echo "build-image: done in $(($(date +%s) - start)) s" >&2
echo "$dir"
