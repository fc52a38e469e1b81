# ShipLog — everything CI checks is `make test`; the benchmark a user runs first is `make bench`.
# Both install what they need on a fresh Debian machine (as root) when it is missing.

SWIFT ?= swift
APT_PACKAGES := liblz4-dev pkg-config
RELEASE_BIN := .build/release/shiplog

.PHONY: all deps build release test bench soak clean

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

# Unit, golden-format, storage, recovery and CLI tests (the CLI tests run the built binary).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# The benchmark scenario on embedded defaults, in release mode.
bench: release
	$(RELEASE_BIN) bench append

clean:
	rm -rf .build
