# rsrunc: build, install, demo, test, bench.
#   make demo        set up a fresh machine, build and install the shim, run a container with it
#   make test        set up what the tests need, then check, the Debian package, the end-to-end
#                    tests on this host and the node tests in the VM
#   make check       fmt, clippy, unit tests and docs: no root, no daemon, no network (the
#                    unit tests that mount run as root in make test: make unit-root)
#   make deb         the Debian package in target/debian (cargo-deb, checked with lintian)
#   make node        the node tests alone: both shims in a QEMU VM (systemd, cgroup v2)
#   make clean-host  remove what the set-up installed (scripts/clean-host.sh)
# The set-up (scripts/setup-host.sh) never changes the version of an installed package.

SHELL := /bin/bash
PREFIX ?= /usr/local
BIN := containerd-shim-rsrunc-v2
export RSRUNC_REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The binary every end-to-end test and benchmark runs.
export RSRUNC_SHIM_BIN := $(CURDIR)/target/release/$(BIN)
E2E_THREADS ?= 2

.PHONY: all build setup install uninstall demo test check lint unit unit-root doc e2e e2e-ours e2e-go node bench deb clean clean-host

all: build

# The shim is linked statically and position-dependent: no shared libraries to map and
# no relocations to apply at start, which keeps each shim's resident memory small.
SHIM_RUSTFLAGS := -C target-feature=+crt-static -C relocation-model=static

build:
	cargo rustc --release --locked -p rsrunc-shim --bin $(BIN) -- $(SHIM_RUSTFLAGS)

# The node mode sets up everything `test` needs, the VM's image and QEMU included.
setup:
	bash scripts/setup-host.sh node

install: build
	install -D -m 0755 target/release/$(BIN) $(DESTDIR)$(PREFIX)/bin/$(BIN)

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/$(BIN)

demo: install
	bash scripts/setup-host.sh demo
	bash scripts/demo.sh

test: setup check unit-root deb e2e node

check: lint unit doc

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

unit:
	cargo test --locked --workspace --exclude rsrunc-e2e

# The unit tests that mount (bind, overlay, loop, idmapped): ignored in `make check`, which
# needs no root; run as root by `make test`.
unit-root:
	cargo test --locked --workspace --exclude rsrunc-e2e -- --ignored

doc:
	RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps

# The same end-to-end suite against our shim and against containerd's Go shim. The tests
# are compiled for one runtime (tests/build.rs): under the Go shim those of what only rsrunc
# does are ignored, with their reason. So each switch of runtime recompiles the test crate
# (not its dependencies): about 40 s of CPU.
e2e: build e2e-ours e2e-go

e2e-ours:
	RSRUNC_E2E_RUNTIME=io.containerd.rsrunc.v2 cargo test --locked -p rsrunc-e2e -- --test-threads $(E2E_THREADS)

e2e-go:
	RSRUNC_E2E_RUNTIME=io.containerd.runc.v2 cargo test --locked -p rsrunc-e2e -- --test-threads $(E2E_THREADS)

# The node tests (tests/tests/node.rs, node_cri.rs) boot the test VM once per test binary and
# shim (four boots, about 15 minutes under QEMU's emulator); they are ignored in `make e2e`
# and run here, where RSRUNC_E2E_NODE=1 compiles them in (tests/build.rs). The package test among them installs the .deb `make deb` built.
node: build deb
	bash scripts/setup-host.sh node
	RSRUNC_E2E_NODE=1 RSRUNC_E2E_RUNTIME=io.containerd.rsrunc.v2 cargo test --locked -p rsrunc-e2e --test node --test node_cri
	RSRUNC_E2E_NODE=1 RSRUNC_E2E_RUNTIME=io.containerd.runc.v2 cargo test --locked -p rsrunc-e2e --test node --test node_cri

# The Debian package target/debian/rsrunc_<version>-1_<arch>.deb: cargo-deb (installed once into
# /opt/rsrunc-test/cargo-deb) packages the static binary as built, then lintian checks it.
deb: build
	bash packaging/deb/build.sh

clean:
	cargo clean

clean-host:
	bash scripts/clean-host.sh

# Benchmarks: our shim against containerd's Go shim in one run (see README.md).
# BENCH_ARGS=--quick for a short run while developing.
BENCH_ARGS ?=
bench: build
	bash scripts/setup-host.sh bench
	cargo build --release --locked -p rsrunc-e2e --bin rsrunc-bench
	target/release/rsrunc-bench $(BENCH_ARGS) --out target/bench/results.json --markdown target/bench/results.md
