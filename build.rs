//! Builds the in-kernel forwarding program (bpf/rtp_forward.bpf.c) with clang, for
//! `runtime::kernel` to embed. Without clang or the libbpf headers (scripts/install-deps.sh
//! installs both) the daemon still builds: it embeds an empty object, and
//! `rtp.kernel_forwarding = "auto"` then falls back to user space, saying why.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/rtp_forward.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("rtp_forward.bpf.o");
    // The kernel's UAPI headers include <asm/types.h>, which Debian keeps under the multiarch
    // directory of the build machine's architecture.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    let built = Command::new(std::env::var("BPF_CLANG").unwrap_or_else(|_| "clang".into()))
        .args(["-O2", "-g", "-target", "bpf", "-Wall", &multiarch, "-c", src, "-o"])
        .arg(&out)
        .status();
    match built {
        Ok(s) if s.success() => {}
        other => {
            let why = match other {
                Ok(s) => format!("clang failed ({s})"),
                Err(e) => format!("clang could not run ({e})"),
            };
            println!("cargo:warning=in-kernel forwarding left out: {why}; run scripts/install-deps.sh");
            std::fs::write(&out, []).expect("OUT_DIR is writable");
        }
    }
}
