#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each (default 60), one after another.
# Needs a nightly toolchain (cargo-fuzz builds with sanitizers); installs cargo-fuzz if missing.
# A crash leaves its input in fuzz/artifacts/<target>/ and stops the run with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# Seeds: a fuzzer that starts from a real offer or a real call gets past the parsers in seconds.
for dir in seeds/*/; do
    target=$(basename "$dir")
    mkdir -p "corpus/$target"
    cp -n "$dir"* "corpus/$target/"
done
mkdir -p corpus/webrtc_offer
for f in ../integration-tests/tests/fixtures/*_offer.sdp; do
    cp -n "$f" "corpus/webrtc_offer/$(basename "$f")"
done

for target in $(cargo +nightly fuzz list); do
    leaks=1
    # GStreamer and GLib keep process-lifetime allocations that LeakSanitizer reports at exit.
    [[ "$target" == mixer_inputs || "$target" == room_legs ]] && leaks=0
    echo "== $target: ${seconds}s"
    ASAN_OPTIONS="detect_leaks=$leaks" cargo +nightly fuzz run -O "$target" -- \
        -max_total_time="$seconds" -max_len=16384 -detect_leaks="$leaks"
done
