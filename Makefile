# Switchboard. `make run` and `make test` install what is missing first (see scripts/install-deps.sh).
SHELL := /bin/bash
CARGO ?= cargo
CONFIG ?= config/switchboard.toml

.PHONY: run test deps test-deps build lint sizes fmt fuzz deb soak

deps:
	./scripts/install-deps.sh

test-deps:
	./scripts/install-deps.sh --test

build: deps
	$(CARGO) build --release --bin switchboard

# The Debian package, target/debian/switchboard_<version>_amd64.deb (cargo-deb; the install script
# builds cargo-deb if it is missing). docs/operations.md says what is in it.
deb: build
	./scripts/install-deps.sh --deb
	$(CARGO) deb --no-build

# Prints a link to the demo page (/demo) with a dev token for room `demo`, then starts the daemon.
run: build
	@./scripts/demo-link.sh ./target/release/switchboard $(CONFIG)
	./target/release/switchboard --config $(CONFIG)

# Every test, cheapest first so a slip fails in seconds rather than after the integration run:
# file sizes and rustfmt (no build), clippy, then the unit and simulation tests of the core and
# drivers, then the integration tests that start the real daemon and drive real peers (Chromium,
# GStreamer webrtcbin, RTP/SRTP senders). Clippy comes after test-deps: the mixer's build needs
# GStreamer's and libopus's development files.
test:
	./scripts/check-file-sizes.sh
	$(CARGO) fmt --all -- --check
	./scripts/install-deps.sh --test
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --bin switchboard
	$(CARGO) test --workspace --exclude switchboard-integration-tests
	$(CARGO) test -p switchboard-integration-tests -- --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every Rust file over its line limit (scripts/check-file-sizes.sh); `make test` runs it first.
sizes:
	./scripts/check-file-sizes.sh

fmt:
	$(CARGO) fmt --all

# Every fuzz target for FUZZ_SECONDS (default 60) each, on nightly; not part of `make test`.
fuzz:
	./scripts/fuzz.sh

# The soak (not part of `make test`): SOAK_PARTICIPANTS (200) participants of mixed kinds joining
# and leaving for SOAK_MINUTES (30), against a release build; it prints the daemon's descriptors,
# memory and CPU every 10 s and compares the start with the end (docs/reliability.md).
SOAK_MINUTES ?= 30
SOAK_PARTICIPANTS ?= 200
soak: test-deps
	$(CARGO) build --release --bin switchboard
	SWITCHBOARD_BIN=$${CARGO_TARGET_DIR:-target}/release/switchboard SOAK_MINUTES=$(SOAK_MINUTES) \
		SOAK_PARTICIPANTS=$(SOAK_PARTICIPANTS) $(CARGO) test -p switchboard-integration-tests --test soak -- --ignored --nocapture

# Benchmarks (make bench, make bench-compare) live in bench/bench.mk.
-include bench/bench.mk
