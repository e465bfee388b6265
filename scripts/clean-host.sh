#!/usr/bin/env bash
# Undoes scripts/setup-host.sh: purges the packages it installed (listed, as it installed
# them, in /opt/rsrunc-test/installed-packages) and removes /opt/rsrunc-test (extracted
# containerd, Docker and crun trees, youki, the test VM image, the private apt lists).
# Packages that were on the machine before the set-up are not in that list and stay.
# The shim itself is removed by `make uninstall`.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "clean-host: run as root" >&2; exit 1; }
opt=/opt/rsrunc-test
if [ -s "$opt/installed-packages" ]; then
  mapfile -t pkgs < <(sort -u "$opt/installed-packages")
  installed=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && installed+=("$p")
  done
  if [ ${#installed[@]} -gt 0 ]; then
    echo "clean-host: purging ${installed[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${installed[@]}" >/dev/null
  fi
fi
# A v1 hugetlb hierarchy the set-up mounted for crun on hybrid cgroup hosts.
if mountpoint -q /sys/fs/cgroup/hugetlb 2>/dev/null && [ -e "$opt/mounted-hugetlb" ]; then
  umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb || true
fi
rm -rf "$opt"
echo "clean-host: done"
