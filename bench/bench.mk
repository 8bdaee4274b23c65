# Benchmarks (included by the top Makefile). See docs/benchmarks.md.
#
#   make bench            Switchboard alone: S1-S5, median of 3 runs each -> bench/results/*.md
#   make bench-compare    the same load against Janus and rtpengine (apt), side by side (S1 with
#                         WebRTC subscribers on Janus VideoRoom included), and
#                         against kernel-floor (the system calls alone, no server)
#   make bench-profile    perf profiles of the daemon under S1 and S2 -> bench/results/profile.md
#   make bench-quick      one short run of each scenario (smoke test of the harness)
#   make bench-janus-webrtc   S1 with WebRTC subscribers on Switchboard and on Janus VideoRoom, side by side
#   make bench-scale      one media worker against two: CPU per participant (S3, S4 in 4 rooms) and
#                         per packet (S1 in 2 rooms) -> bench/results/scaling-cost.md
#   make bench-capacity   the most participants held with one and with two workers (S3, S4)
#                         -> bench/results/scaling-capacity.md
#   make bench-ab BASE=<commit>   A/B probe: that commit's daemon against this tree's, alternating
#                         run by run (default S1 N=300 and S3 N=200, 5 runs each)
#
# BENCH_ARGS passes options to bench/run.py, e.g. BENCH_ARGS="--only s2,s5 --runs 5".

BENCH_LOADGEN := bench/loadgen/target/release/loadgen
BENCH_ARGS ?=

.PHONY: bench bench-compare bench-profile bench-quick bench-build bench-deps bench-peers bench-ab \
	bench-janus-webrtc bench-scale bench-capacity bench-kernel

bench-deps:
	@missing=""; \
	for p in ffmpeg util-linux python3 libopus0; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y $$missing; else sudo apt-get install -y $$missing; fi; \
	fi

# The load generator is its own crate (bench/loadgen, own workspace and target dir).
bench-build: bench-deps
	$(CARGO) build --release --bin switchboard
	$(CARGO) build --release --manifest-path bench/loadgen/Cargo.toml
	./bench/media.sh bench/media >/dev/null

bench: bench-build
	python3 bench/run.py bench $(BENCH_ARGS)
	@echo "results: bench/results/summary.md"

bench-quick: bench-build
	python3 bench/run.py bench --quick --duration 5 --results bench/run/quick $(BENCH_ARGS)

# Janus 1.1.2 and rtpengine (user space) from Debian; they are started by bench/run.py on loopback
# with the configs in bench/peers/, never as system services.
bench-peers:
	@missing=""; \
	for p in janus rtpengine-daemon; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y $$missing; else sudo apt-get install -y $$missing; fi; \
	fi

bench-compare: bench-build bench-peers
	python3 bench/run.py compare $(BENCH_ARGS)
	@echo "results: bench/results/compare-summary.md"

bench-janus-webrtc: bench-build bench-peers
	python3 bench/run.py compare --only s1janus $(BENCH_ARGS)
	@echo "results: bench/results/compare-s1janus.md"

bench-scale: bench-build
	python3 bench/scale.py cost $(BENCH_ARGS)

bench-capacity: bench-build
	python3 bench/scale.py capacity $(BENCH_ARGS)

bench-profile: bench-build
	@perf --version >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y linux-perf; else sudo apt-get install -y linux-perf; fi; }
	python3 bench/run.py profile $(BENCH_ARGS)

# The baseline is built in a detached worktree of BASE under bench/run/, with its own target dir.
BASE ?= HEAD~1
AB_ARGS ?= --only s1,s3 --case N=300,N=200 --runs 5
bench-ab: bench-build
	rm -rf bench/run/base-src && git worktree prune && git worktree add --detach bench/run/base-src $(BASE)
	cd bench/run/base-src && CARGO_TARGET_DIR=$(CURDIR)/bench/run/base-target $(CARGO) build --release --bin switchboard
	BENCH_BASELINE=bench/run/base-target/release/switchboard python3 bench/run.py ab $(AB_ARGS)
	git worktree remove --force bench/run/base-src

# S2 with in-kernel forwarding against rtpengine (user space), kernel-floor and the user-space
# path, on whole-machine CPU minus the load generator's (issue 24). Needs root for the TC program.
bench-kernel: bench-build bench-peers
	python3 bench/run.py compare --only s2k $(BENCH_ARGS)
