//! Insists on the system libopus (Debian's `libopus-dev`), found through pkg-config.
//!
//! `audiopus_sys` (under the `opus` crate) links whatever pkg-config finds, but when it finds
//! nothing it quietly builds its bundled copy of libopus with CMake instead. We want the system
//! library, shared with GStreamer and kept up to date by the distribution, so a missing
//! `libopus-dev` fails the build here with a clear message rather than changing what is linked.

#![forbid(unsafe_code)]

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    for var in ["LIBOPUS_STATIC", "OPUS_STATIC", "LIBOPUS_NO_PKG", "OPUS_NO_PKG"] {
        println!("cargo:rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some() {
            panic!("{var} is set: switchboard-mixer links the system libopus dynamically; unset it");
        }
    }
    if let Err(e) = pkg_config::Config::new().atleast_version("1.3").cargo_metadata(false).probe("opus") {
        panic!(
            "switchboard-mixer needs the system libopus (>= 1.3) found through pkg-config: install \
             libopus-dev (scripts/install-deps.sh does). pkg-config said: {e}"
        );
    }
}
