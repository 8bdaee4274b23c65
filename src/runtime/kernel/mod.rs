//! In-kernel forwarding of two-party plain-RTP calls: loads `bpf/rtp_forward.bpf.c` (built by
//! build.rs, embedded here) with aya, attaches it to the ingress of the legs' interface, and
//! holds its two maps, which the media workers fill (`worker::kernel`).
//!
//! Attaching: a TCX link where the kernel has them (6.6 on). A TCX link belongs to the file
//! descriptor that made it, so the kernel detaches the program when the daemon exits, however it
//! exits: a crashed run leaves nothing behind, and several daemons on one host (the integration
//! tests) each have their own link. On older kernels: a `clsact` qdisc and a `cls_bpf`
//! direct-action filter through netlink; such a filter outlives its process, so a filter of the
//! program's name left by a crashed run is removed first (which is why only one daemon per host
//! may use kernel forwarding on those kernels). Either way the program returns `TC_ACT_UNSPEC`
//! (TCX_NEXT) for everything it does not forward, so what follows it sees every other packet.
//!
//! Nothing here may panic on what the kernel answers: every failure is an `Error`, logged once
//! and counted, and the daemon carries on in user space.

mod entry;

pub use entry::{build, first_stats, Key, Rule, Stats};

use crate::config::{Config, KernelForwarding};
use crate::metrics::Metrics;
use aya::maps::{HashMap as BpfMap, MapData};
use aya::programs::tc::{self, NlOptions, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::{Ebpf, EbpfLoader};
use std::sync::{Arc, Mutex, PoisonError};
use tracing::{info, warn};

/// The program, as build.rs compiled it; empty when clang was missing at build time. Aligned:
/// the ELF parser reads its headers in place.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rtp_forward.bpf.o"));
const PROGRAM: &str = "sb_rtp_fwd";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("this build has no forwarding program (clang was missing when it was built)")]
    NotBuilt,
    #[error("no interface to attach to: set rtp.kernel_interface (rtp.bind_ip is not a loopback address)")]
    NoInterface,
    #[error("the kernel refused the program: {0}")]
    Load(String),
    #[error("could not attach to {interface}'s ingress: {why}")]
    Attach { interface: String, why: String },
    #[error("the program's map {0} is missing or of another shape")]
    Map(&'static str),
    #[error("the kernel refused a map update: {0}")]
    Update(String),
}

/// The loaded, attached program and its maps. Dropping it detaches the program.
pub struct KernelForwarder {
    interface: String,
    /// False on loopback: the stack delivers the rewritten packet (see the program).
    redirect: bool,
    rules: Mutex<BpfMap<MapData, Key, Rule>>,
    stats: Mutex<BpfMap<MapData, Key, Stats>>,
    /// Holds the program and its link; declared last, so the maps above close first.
    _ebpf: Ebpf,
}

impl KernelForwarder {
    /// Loads and attaches the program when the configuration asks for it. With `auto`, a
    /// failure is one log line and one count of `kernel_forwarding_fallbacks_total`, and the
    /// daemon runs in user space.
    pub fn start(cfg: &Config, metrics: &Metrics) -> Option<Arc<KernelForwarder>> {
        if cfg.rtp.kernel_forwarding == KernelForwarding::Off {
            return None;
        }
        // aya asserts on a few kernel answers; a panic there must cost only the fast path.
        let loaded = std::panic::catch_unwind(|| KernelForwarder::load(cfg))
            .unwrap_or_else(|_| Err(Error::Load("the loader panicked".into())));
        match loaded {
            Ok(k) => {
                info!(interface = %k.interface, redirect = k.redirect, "in-kernel forwarding on");
                metrics.kernel_active.set(1);
                Some(Arc::new(k))
            }
            Err(e) => {
                warn!(error = %e, "in-kernel forwarding unavailable: two-party calls are forwarded in user space");
                metrics.kernel_fallbacks.inc();
                None
            }
        }
    }

    fn load(cfg: &Config) -> Result<KernelForwarder, Error> {
        if OBJECT.is_empty() {
            return Err(Error::NotBuilt);
        }
        let interface = interface(cfg).ok_or(Error::NoInterface)?;
        let mut ebpf = EbpfLoader::new().load(OBJECT).map_err(|e| Error::Load(e.to_string()))?;
        let prog: &mut SchedClassifier = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| Error::Load(format!("no program {PROGRAM} in the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| Error::Load(e.to_string()))?;
        prog.load().map_err(|e| Error::Load(e.to_string()))?;
        attach(prog, &interface)?;
        let rules = ebpf.take_map("sb_rules").ok_or(Error::Map("sb_rules"))?;
        let stats = ebpf.take_map("sb_stats").ok_or(Error::Map("sb_stats"))?;
        let rules = BpfMap::try_from(rules).map_err(|_| Error::Map("sb_rules"))?;
        let stats = BpfMap::try_from(stats).map_err(|_| Error::Map("sb_stats"))?;
        Ok(KernelForwarder {
            redirect: interface != "lo",
            interface,
            rules: Mutex::new(rules),
            stats: Mutex::new(stats),
            _ebpf: ebpf,
        })
    }

    pub fn redirect(&self) -> bool {
        self.redirect
    }

    /// Installs (or replaces) a rule. A new rule starts its stats entry first, so the program
    /// never forwards a packet it cannot count.
    pub fn install(&self, key: &Key, rule: &Rule, stats: Option<&Stats>) -> Result<(), Error> {
        if let Some(s) = stats {
            let mut map = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            map.insert(key, s, 0).map_err(|e| Error::Update(e.to_string()))?;
        }
        let mut map = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(key, rule, 0).map_err(|e| Error::Update(e.to_string()))
    }

    /// Removes a rule, then reads and removes its stats: removed in this order, no packet is
    /// forwarded after the last count is read, but for one already inside the program.
    pub fn remove(&self, key: &Key) -> Option<Stats> {
        let _ = self.rules.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
        let mut map = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let last = map.get(key, 0).ok();
        let _ = map.remove(key);
        last
    }

    /// The counts of a rule's stats entry now.
    pub fn read(&self, key: &Key) -> Option<Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).get(key, 0).ok()
    }
}

/// The interface the program attaches to: `rtp.kernel_interface`, else `lo` when the legs bind
/// a loopback address; elsewhere the operator must name it.
fn interface(cfg: &Config) -> Option<String> {
    match cfg.rtp.kernel_interface.trim() {
        "" if cfg.rtp.bind_ip.is_loopback() => Some("lo".into()),
        "" => None,
        name => Some(name.into()),
    }
}

/// TCX first; on a kernel without it, `clsact` and a netlink filter (see the module docs).
fn attach(prog: &mut SchedClassifier, interface: &str) -> Result<(), Error> {
    // A netlink filter of ours that a crashed run left would go on forwarding its dead calls'
    // ports with their stale rules. Only the netlink fallback makes such filters, so on a kernel
    // with TCX there is none and this finds nothing.
    if tc::qdisc_detach_program(interface, TcAttachType::Ingress, PROGRAM).is_ok() {
        warn!(interface, "removed a forwarding filter left by an earlier run");
    }
    let tcx =
        prog.attach_with_options(interface, TcAttachType::Ingress, TcAttachOptions::TcxOrder(LinkOrder::default()));
    let Err(tcx_err) = tcx else { return Ok(()) };
    let failed = |why: String| Error::Attach { interface: interface.into(), why };
    if let Err(e) = tc::qdisc_add_clsact(interface) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(failed(format!("TCX: {tcx_err}; clsact: {e}")));
        }
    }
    prog.attach_with_options(interface, TcAttachType::Ingress, TcAttachOptions::Netlink(NlOptions::default()))
        .map(|_| ())
        .map_err(|e| failed(format!("TCX: {tcx_err}; netlink: {e}")))
}
