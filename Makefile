# ShipLog — everything CI checks is `make test`; the benchmark a user runs first is `make bench`.
# Both install what they need on a fresh Debian machine (as root) when it is missing.

SWIFT ?= swift
APT_PACKAGES := liblz4-dev pkg-config
RELEASE_BIN := .build/release/shiplog
# Long runs of the seeded and kill suites (`make soak`).
SOAK_SEEDS ?= 50000
SOAK_KILLS ?= 2000

.PHONY: all deps build release test unit-test bench soak fuzz fuzz-smoke clean

all: build

# liblz4-dev (headers + pkg-config file) and pkg-config itself.
deps:
	@if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists liblz4; then \
		echo "make: installing $(APT_PACKAGES)"; \
		if [ "$$(id -u)" != 0 ]; then echo "make: need root to apt-get install $(APT_PACKAGES)" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "make: swift toolchain not found on PATH" >&2; exit 1; }

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product shiplog

# Everything CI checks: unit, golden-format, storage, recovery (simulated power loss, corruption
# sweeps, fault injection), CLI and kill -9 tests, then each fuzz target for 30 s.
test: unit-test fuzz-smoke

unit-test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The benchmark scenario on embedded defaults, in release mode.
bench: release
	$(RELEASE_BIN) bench append
	$(RELEASE_BIN) bench recovery
	$(RELEASE_BIN) bench kv
	$(RELEASE_BIN) bench replicate

# Long soaks: many more simulated crashes and real SIGKILLs than `make test` runs.
soak: deps
	$(SWIFT) build --build-tests
	SHIPLOG_SEEDS=$(SOAK_SEEDS) $(SWIFT) test --skip-build --filter ShipLogRecoveryTests
	SHIPLOG_KILLS=$(SOAK_KILLS) $(SWIFT) test --skip-build --filter 'KillNineTests|KeyValueCLITests'

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
