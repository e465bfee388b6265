#!/usr/bin/env bash
# Builds the Debian package target/debian/rsrunc_<version>-<revision>_<arch>.deb with
# cargo-deb, from the static binary `make build` leaves in target/release, and checks it
# with lintian (`make deb` runs both steps):
#
#   make build && bash packaging/deb/build.sh [CARGO-DEB-OPTION...]
#
# What goes into the package is [package.metadata.deb] in shim/Cargo.toml. The package is
# made by `cargo deb -p rsrunc-shim --no-build --no-strip`: the binary is packaged as
# `make build` made it (statically linked, stripped by Cargo), byte for byte, which this
# script checks, and cargo-deb does not build or strip anything itself.
#
# What it may install, once, when missing (root needed only then), nothing of it over a
# package the machine has:
# - cargo-deb $CARGO_DEB_VERSION, built from crates.io into /opt/rsrunc-test/cargo-deb
#   (cargo install --locked; about six minutes on 2 cores). 3.8.0 needs rustc 1.85 or later
#   and builds with the toolchain here (rustc 1.95).
# - lintian, from the machine's own release (bookworm): with a plain
#   `apt-get install --no-install-recommends lintian` when that only adds packages (they are
#   then listed in /opt/rsrunc-test/installed-packages, as scripts/setup-host.sh lists what
#   it installs, for `make clean-host`). When it would upgrade or remove an installed
#   package instead (on a bookworm host with an older perl than the archive's, lintian's
#   dependencies need the newer perl), lintian goes into a bookworm tree of its own,
#   /opt/rsrunc-test/lintian, made with mmdebstrap, and runs there with chroot.
# `make clean-host` removes both with /opt/rsrunc-test.
#
# lintian must report no errors; its warnings and notes are printed. The overrides shipped
# in the package (packaging/deb/lintian-overrides) say why each is expected.
set -euo pipefail

CARGO_DEB_VERSION=3.8.0
opt=/opt/rsrunc-test
cargo_deb_root=$opt/cargo-deb
lintian_tree=$opt/lintian
bin_name=containerd-shim-rsrunc-v2
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

say() { echo "deb: $*" >&2; }
die() { echo "deb: error: $*" >&2; exit 1; }

# Earlier callers (`make deb`) passed the binary's path; it can only be the one cargo-deb
# packages, target/release/containerd-shim-rsrunc-v2.
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  [ "$(realpath -m "$1")" = "$(realpath -m "$top/target/release/$bin_name")" ] ||
    die "cargo-deb packages target/release/$bin_name (make build), not $1"
  shift
fi

# --- What to package ----------------------------------------------------------------------
meta=$(cargo metadata --format-version 1 --no-deps --offline --locked)
target_dir=$(printf '%s' "$meta" | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
shim_meta=$(printf '%s' "$meta" | sed 's/{"name":/\n{"name":/g' | grep '^{"name":"rsrunc-shim",')
version=$(printf '%s' "$shim_meta" | grep -o '"version":"[^"]*"' | head -1 | cut -d'"' -f4)
revision=$(sed -n '/^\[package\.metadata\.deb\]/,/^\[/ s/^revision *= *"\([^"]*\)".*/\1/p' shim/Cargo.toml)
deb_version=$version${revision:+-$revision}
bin=$target_dir/release/$bin_name

[ -x "$bin" ] || die "$bin is missing: run \`make build\` first"
# make build links it statically and position-dependent: no program interpreter and no
# dynamic section. A plain `cargo build` binary is dynamic, and not what we ship.
elf=$(LC_ALL=C readelf -lW "$bin")
if ! grep -q 'Elf file type is EXEC' <<<"$elf" || grep -q 'INTERP' <<<"$elf"; then
  die "$bin is not the static binary \`make build\` makes (it has a program interpreter or is PIE): run \`make build\`"
fi
if [ -n "$(find shim/src runc-driver/src protos -newer "$bin" -name '*.rs' -print -quit 2>/dev/null)" ]; then
  say "warning: sources changed after $bin was built; \`make deb\` rebuilds it first"
fi

# The changelog's latest entry is this package's version: dpkg and lintian read it.
changelog_version=$(sed -n '1 s/^rsrunc (\([^)]*\)).*/\1/p' packaging/deb/changelog)
[ "$changelog_version" = "$deb_version" ] ||
  die "packaging/deb/changelog starts with version '$changelog_version', the package is $deb_version: add an entry on top (dch -v $deb_version, or by hand in that format)"
grep -q "^\.TH .* \"rsrunc $version\"" packaging/man/$bin_name.8 ||
  say "warning: packaging/man/$bin_name.8 does not say rsrunc $version in its .TH line"

# Every crate linked into the binary must be named in the copyright file, under a license
# that file carries; a new dependency fails here until it is added there.
crates=$(cargo tree --locked --offline -p rsrunc-shim -e normal,no-proc-macro --prefix none -f '{l}|{p}')
crates=$(sed 's/ v[0-9][^ ]*.*$//' <<<"$crates" | grep -v '|rsrunc-\||runc-driver$' | sort -u)
copyright_ok=1
while IFS='|' read -r license crate; do
  case "$license" in
    'Apache-2.0' | 'MIT' | 'Zlib' | 'MIT OR Apache-2.0' | 'Apache-2.0 OR MIT' | 'MIT/Apache-2.0' | \
      'Apache-2.0 / MIT' | 'Unlicense OR MIT' | '(MIT OR Apache-2.0) AND Unicode-3.0' | \
      'Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT') ;;
    *) say "crate $crate has license '$license', which packaging/deb/copyright does not carry"; copyright_ok="" ;;
  esac
  grep -qE "(^| )$crate([ ,.;)]|$)" packaging/deb/copyright ||
    { say "crate $crate ($license) is not named in packaging/deb/copyright"; copyright_ok=""; }
done <<<"$crates"
[ -n "$copyright_ok" ] || die "update packaging/deb/copyright for the crates above"

# --- cargo-deb ----------------------------------------------------------------------------
if [ "$("$cargo_deb_root/bin/cargo-deb" --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  say "installing cargo-deb $CARGO_DEB_VERSION into $cargo_deb_root (once, a few minutes)"
  mkdir -p "$cargo_deb_root"
  cargo install --locked --quiet --root "$cargo_deb_root" --version "$CARGO_DEB_VERSION" cargo-deb
fi

# --- The package ----------------------------------------------------------------------------
out_dir=$target_dir/debian
mkdir -p "$out_dir"
rm -f "$out_dir"/rsrunc_*.deb
say "cargo deb -p rsrunc-shim --no-build --no-strip ($bin)"
deb=$(PATH=$cargo_deb_root/bin:$PATH cargo deb -p rsrunc-shim --no-build --no-strip --locked \
  --output "$out_dir/" "$@" | tail -n 1)
[ -f "$deb" ] || die "cargo deb made no package"

# cargo-deb takes the one-line Description from [package] description in shim/Cargo.toml.
# Until that line is there, the control file gets this one (and a warning says so).
summary="containerd runtime v2 shim for runc, crun and youki, written in Rust"
if grep -q '"description":null' <<<"$shim_meta"; then
  say "warning: shim/Cargo.toml [package] has no description; setting the package's summary here"
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  dpkg-deb -R "$deb" "$stage/root"
  sed -i "s|^Description: .*|Description: $summary|" "$stage/root/DEBIAN/control"
  dpkg-deb --root-owner-group -Zxz -b "$stage/root" "$deb" >/dev/null
fi

# The binary in the package is the one make build made.
cmp -s "$bin" <(dpkg-deb --fsys-tarfile "$deb" | tar -xOf - ./usr/bin/$bin_name) ||
  die "usr/bin/$bin_name in $deb differs from $bin"

echo "== $deb"
dpkg-deb -I "$deb"
dpkg-deb -c "$deb"

# --- lintian --------------------------------------------------------------------------------
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uri=${uri:-http://deb.debian.org/debian}
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
apt_updated=""

# Installs packages from the machine's release if that only adds packages; records them.
add_packages() { # PACKAGE...
  [ "$(id -u)" = 0 ] || { say "not root: cannot install $*"; return 1; }
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  local plan
  plan=$(DEBIAN_FRONTEND=noninteractive apt-get install -s -y --no-install-recommends "$@" 2>&1) ||
    { say "apt cannot install $*"; return 1; }
  if grep -qE '^(Inst [^ ]+ \[|Remv )' <<<"$plan"; then
    say "installing $* would change packages the machine has:"
    grep -E '^(Inst [^ ]+ \[|Remv )' <<<"$plan" | sed 's/^/deb:   /' >&2
    return 1
  fi
  local before after
  before=$(dpkg-query -W -f '${Package}\n' | sort)
  say "installing from the machine's release: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  after=$(dpkg-query -W -f '${Package}\n' | sort)
  mkdir -p "$opt"
  comm -13 <(echo "$before") <(echo "$after") >>"$opt/installed-packages"
}

lintian_args=(--display-info --pedantic --fail-on error)
if command -v lintian >/dev/null 2>&1; then
  run_lintian() { lintian "${lintian_args[@]}" "$deb"; }
  run_mandoc() { ! command -v mandoc >/dev/null || mandoc -Tlint -W warning "packaging/man/$bin_name.8"; }
elif [ -e "$lintian_tree/.built" ] || ! add_packages lintian; then
  if [ ! -e "$lintian_tree/.built" ]; then
    command -v mmdebstrap >/dev/null 2>&1 || add_packages mmdebstrap ||
      die "lintian is missing and can be installed neither on the machine nor in a tree of its own (no mmdebstrap)"
    say "building a $suite tree with lintian in $lintian_tree (once), leaving the machine's packages alone"
    rm -rf "$lintian_tree"
    mmdebstrap --quiet --variant=essential --include=lintian,mandoc \
      --dpkgopt='path-exclude=/usr/share/locale/*' "$suite" "$lintian_tree" "$uri"
    touch "$lintian_tree/.built"
  fi
  # Not as root, which lintian advises against: the tree's nobody reads the copy in /tmp.
  in_tree() {
    chroot --userspec=nobody:nogroup "$lintian_tree" \
      /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp TMPDIR=/tmp LC_ALL=C.UTF-8 "$@"
  }
  run_lintian() {
    local name
    name=$(basename "$deb")
    local rc=0
    install -m 0644 "$deb" "$lintian_tree/tmp/$name"
    in_tree lintian "${lintian_args[@]}" "/tmp/$name" || rc=$?
    rm -f "$lintian_tree/tmp/$name"
    return $rc
  }
  run_mandoc() {
    local rc=0
    install -m 0644 "packaging/man/$bin_name.8" "$lintian_tree/tmp/$bin_name.8"
    in_tree mandoc -Tlint -W warning "/tmp/$bin_name.8" || rc=$?
    rm -f "$lintian_tree/tmp/$bin_name.8"
    return $rc
  }
else
  run_lintian() { lintian "${lintian_args[@]}" "$deb"; }
  run_mandoc() { ! command -v mandoc >/dev/null || mandoc -Tlint -W warning "packaging/man/$bin_name.8"; }
fi

echo "== man page: groff -man -ww, mandoc -Tlint"
groff_out=$(groff -man -Tutf8 -ww -z "packaging/man/$bin_name.8" 2>&1)
[ -z "$groff_out" ] || { echo "$groff_out" >&2; die "groff warns about packaging/man/$bin_name.8"; }
run_mandoc || die "mandoc -Tlint warns about packaging/man/$bin_name.8"
echo "== lintian $(basename "$deb")"
run_lintian || die "lintian reports errors in $deb"
say "built $deb"
