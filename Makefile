# ShipLog — everything CI checks is `make test`; the benchmark a user runs first is `make bench`.
# Both install what they need on a fresh Debian machine (as root) when it is missing.

SWIFT ?= swift
APT_PACKAGES := liblz4-dev pkg-config
# etcd (/usr/bin/etcd) and ZooKeeper (/usr/share/zookeeper/bin/zkServer.sh, with a JRE) for the
# failover election tests, which start them on loopback ports with temporary data directories.
# Installed without starting their system services (a policy-rc.d that refuses, while apt runs).
COORDINATION_PACKAGES := etcd-server zookeeper
# Headless Chromium renders the `shiplog bench --html` page in BenchScenarioTests.
BROWSER_PACKAGES := chromium fonts-dejavu-core
RELEASE_BIN := .build/release/shiplog
# Where `make bench` writes its JSON and HTML report, and extra flags (`make bench BENCH_FLAGS='--seconds 2'`).
BENCH_OUT := .build/bench
BENCH_FLAGS ?=
# Long runs of the seeded and kill suites (`make soak`).
SOAK_SEEDS ?= 50000
SOAK_KILLS ?= 2000
# Primary SIGKILLs per coordination service (etcd, ZooKeeper) in the failover soak.
SOAK_FAILOVER_KILLS ?= 200

.PHONY: all deps test-deps build release test unit-test bench bench-check soak fuzz fuzz-smoke clean

all: build

# liblz4-dev (headers + pkg-config file) and pkg-config itself: all the engine and `make bench` need.
deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists liblz4; then \
		echo "make: installing $(APT_PACKAGES)"; \
		if [ "$$(id -u)" != 0 ]; then echo "make: need root to apt-get install $(APT_PACKAGES)" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "make: swift toolchain not found on PATH" >&2; exit 1; }

# What the tests need beyond the engine: Chromium (bench report test) and the coordination
# services (election tests).
test-deps: deps
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
		echo "make: installing $(BROWSER_PACKAGES) (headless Chromium for the bench report test)"; \
		if [ "$$(id -u)" != 0 ]; then echo "make: need root to apt-get install $(BROWSER_PACKAGES); the Chromium test will be skipped" >&2; \
		else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null \
			|| echo "make: could not install $(BROWSER_PACKAGES); the Chromium test will be skipped" >&2; fi; \
	fi
	@if [ ! -x /usr/bin/etcd ] || [ ! -x /usr/share/zookeeper/bin/zkServer.sh ]; then \
		echo "make: installing $(COORDINATION_PACKAGES) (etcd and ZooKeeper for the failover election tests)"; \
		if [ "$$(id -u)" != 0 ]; then echo "make: need root to apt-get install $(COORDINATION_PACKAGES); the election tests will be skipped" >&2; \
		else \
			policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' >$$policy; chmod +x $$policy; fi; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(COORDINATION_PACKAGES) >/dev/null \
				|| echo "make: could not install $(COORDINATION_PACKAGES); the election tests will be skipped" >&2; \
			if [ -n "$$policy" ]; then rm -f $$policy; fi; \
		fi; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product shiplog

# Everything CI checks: unit, golden-format, storage, recovery (simulated power loss, corruption
# sweeps, fault injection), CLI and kill -9 tests, then each fuzz target for 30 s.
test: unit-test fuzz-smoke

unit-test: test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The benchmark scenario on embedded defaults, in release mode (about a minute): a report on
# standard output, every figure in $(BENCH_OUT)/bench.json and charts in $(BENCH_OUT)/bench.html.
# The single phases stay available as `shiplog bench append|recovery|kv|replicate`.
bench: release
	@mkdir -p $(BENCH_OUT)
	$(RELEASE_BIN) bench --json $(BENCH_OUT)/bench.json --html $(BENCH_OUT)/bench.html $(BENCH_FLAGS)
	@echo "make: wrote $(BENCH_OUT)/bench.json and $(BENCH_OUT)/bench.html (open it in a browser; it needs no network)"

# Micro-benchmarks (Benchmarks/, ordo-one/benchmark; release build in Benchmarks/.build): runs
# them and compares each one's p90 with the thresholds checked into Benchmarks/Thresholds/.
# Fails on a regression beyond the tolerances (README, "Micro-benchmarks"); a benchmark behind
# its thresholds is run again, up to 3 runs, before it counts.
bench-check: deps
	SWIFT=$(SWIFT) Benchmarks/check-thresholds.sh

# Long soaks: many more simulated crashes and real SIGKILLs than `make test` runs.
soak: test-deps
	$(SWIFT) build --build-tests
	SHIPLOG_SEEDS=$(SOAK_SEEDS) $(SWIFT) test --skip-build --filter ShipLogRecoveryTests
	SHIPLOG_KILLS=$(SOAK_KILLS) $(SWIFT) test --skip-build --filter 'KillNineTests|KeyValueCLITests'
	SHIPLOG_FAILOVER_KILLS=$(SOAK_FAILOVER_KILLS) $(SWIFT) test --skip-build --filter FailoverProcessTests

# Coverage-guided fuzzing: libFuzzer + ASan targets built outside SwiftPM (Fuzz/README.md).
# A crash, broken invariant, timeout or over-limit allocation fails the run and prints the
# reproducer (under .build-fuzz/findings/). Committed regressions replay before every run.
FUZZ_TARGETS := batch_decoder segment_scanner segment_scanner_big footer_decoder message_decoder
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 30

fuzz: deps
	Fuzz/build.sh
	@fail=0; for t in $(FUZZ_TARGETS); do Fuzz/run.sh $$t $(FUZZ_SECONDS) || fail=1; done; exit $$fail

fuzz-smoke: deps
	Fuzz/build.sh
	@fail=0; for t in $(FUZZ_TARGETS); do Fuzz/run.sh $$t $(FUZZ_SMOKE_SECONDS) || fail=1; done; exit $$fail

clean:
	rm -rf .build .build-fuzz
