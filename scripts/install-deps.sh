#!/usr/bin/env bash
# Installs what building and testing Switchboard needs on Debian 12, and only what is missing.
# Runs apt-get as root, or through sudo when available; otherwise it names what is missing.
set -euo pipefail

PKGS=(
  pkg-config libssl-dev libopus-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice gstreamer1.0-tools
  python3-gi gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0 python3-numpy python3-cryptography
  # The in-kernel forwarding program (bpf/rtp_forward.bpf.c, built by build.rs): clang for the
  # BPF target, libbpf's helper headers, and the kernel's UAPI headers (linux-libc-dev). The
  # loader (aya) is pure Rust and links no libbpf, libelf or zlib.
  clang libbpf-dev linux-libc-dev
)
if [ "${1:-}" = "--test" ]; then
  # prometheus: the server and promtool for tests/monitoring.rs; systemd: systemd-analyze for
  # tests/package.rs; kamailio (its main package ships the rtpengine module) and sip-tester
  # (sipp) for tests/ng_kamailio.rs; redis-server for tests/cluster.rs; nginx with
  # libnginx-mod-rtmp: the RTMP server of tests/egress_rtmp.rs.
  PKGS+=(chromium ffmpeg sip-tester kamailio prometheus systemd python3-venv redis-server libnginx-mod-rtmp)
fi
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--deb" ]; then
  # dpkg-shlibdeps, which cargo-deb runs for the package's library dependencies.
  PKGS+=(dpkg-dev)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: missing packages and no root/sudo: ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" = "--test" ]; then
  # playwright-core drives Debian's Chromium; it never downloads a browser of its own.
  if [ ! -d integration-tests/node_modules/playwright-core ]; then
    (cd integration-tests && npm install --no-audit --no-fund --silent)
  fi
  # schemathesis (PyPI) for tests/schemathesis.rs, in a venv of its own: pinned, and kept apart
  # from Debian's python3 packages that the peers import.
  SCHEMATHESIS_VERSION=4.32.5
  venv=integration-tests/.venv-schemathesis
  if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "install-deps: installing schemathesis $SCHEMATHESIS_VERSION in $venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
fi

if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--deb" ]; then
  # cargo-deb builds the Debian package (make deb, tests/package.rs). It compiles for a few
  # minutes, once; its build directory is removed afterwards.
  if ! cargo deb --version >/dev/null 2>&1; then
    echo "install-deps: installing cargo-deb"
    build_dir=$(mktemp -d)
    CARGO_TARGET_DIR="$build_dir" cargo install cargo-deb --locked --quiet
    rm -rf "$build_dir"
  fi
fi
