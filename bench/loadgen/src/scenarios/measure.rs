//! The measurement every scenario shares: warm-up, window, drain, report and CPU, and the one JSON
//! result a forwarding or mixing scenario prints.

use crate::engine::{self, Cmd, Report};
use crate::util::{self, CpuUse};
use crate::Common;
use serde_json::{json, Value};
use std::time::Duration;

/// The measurement part shared by every scenario: warm-up, window, drain, report, CPU.
pub(super) struct Measured {
    pub(super) report: Report,
    pub(super) cpu: CpuUse,
    /// The load generator's own CPU over the window (it must not be the bottleneck).
    pub(super) gen_cpu: CpuUse,
    /// Busy % of every CPU in the window (all processes): the background load of a shared machine.
    cpus_busy_pct: Vec<f64>,
    /// CPU-seconds every core was busy in the window, all processes and the kernel's softirq work
    /// included: what a relay costs the machine when the kernel does the relaying.
    machine_busy_s: f64,
    /// Receive-buffer drops on the target's own UDP sockets in the window, and on ours.
    target_udp_drops: Option<u64>,
    gen_udp_drops: Option<u64>,
    pub(super) rss_kib: Option<u64>,
}

pub(super) fn measure(c: &Common, eng: &engine::Handle) -> Measured {
    measure_with(c, eng, &mut |_| {})
}

/// [`measure`], calling `edge(false)` as the window opens and `edge(true)` as it closes (for
/// readings of the target's own, such as its metrics).
pub(super) fn measure_with(c: &Common, eng: &engine::Handle, edge: &mut dyn FnMut(bool)) -> Measured {
    std::thread::sleep(Duration::from_secs_f64(c.warmup));
    let start = util::now_ns() + 5_000_000;
    let end = start + (c.duration * 1e9) as u64;
    eng.send(Cmd::Window { start_ns: start, end_ns: end });
    std::thread::sleep(Duration::from_nanos(start.saturating_sub(util::now_ns())));
    let me = [std::process::id()];
    let drops = || (c.pid.and_then(util::udp_drops), util::udp_drops(std::process::id()));
    edge(false);
    let (a, ga, ja, da) = (util::cpu_mark(&c.pids()), util::cpu_mark(&me), util::cpu_jiffies(), drops());
    std::thread::sleep(Duration::from_nanos(end.saturating_sub(util::now_ns())));
    let (b, gb, jb, db) = (util::cpu_mark(&c.pids()), util::cpu_mark(&me), util::cpu_jiffies(), drops());
    edge(true);
    let diff = |x: Option<u64>, y: Option<u64>| Some(y?.saturating_sub(x?));
    let rss_kib = c.pid.and_then(util::rss_kib);
    // Late packets of the window still count.
    std::thread::sleep(Duration::from_millis(500));
    let report = eng.report();
    Measured {
        report,
        cpu: util::cpu_between(a, b),
        gen_cpu: util::cpu_between(ga, gb),
        cpus_busy_pct: util::cpu_busy_pct(&ja, &jb),
        machine_busy_s: util::cpu_busy_pct(&ja, &jb).iter().sum::<f64>() / 100.0 * util::cpu_between(a, b).wall_s,
        target_udp_drops: diff(da.0, db.0),
        gen_udp_drops: diff(da.1, db.1),
        rss_kib,
    }
}

pub(super) fn pct(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| 100.0 * num as f64 / den as f64)
}

/// Loss of stamped packets: expected deliveries against deliveries of packets sent in the window.
fn loss_pct(r: &Report) -> Option<f64> {
    pct(r.expected_window.saturating_sub(r.recv_stamped_window), r.expected_window)
}

pub(super) fn forwarding_figures(m: &Measured) -> Value {
    let r = &m.report;
    let pkts = r.recv_stamped_window as f64;
    let cpu = m.cpu.cpu_s;
    json!({
        "forwarded_pkts": r.recv_stamped_window,
        "pkts_per_cpu_s": (cpu > 0.0).then(|| pkts / cpu),
        "pkts_per_sched_cpu_s": (m.cpu.sched_cpu_s > 0.0).then(|| pkts / m.cpu.sched_cpu_s),
        "cpu_us_per_pkt": (pkts > 0.0).then(|| cpu * 1e6 / pkts),
        // The whole machine minus the load generator: only meaningful on an otherwise idle
        // machine, which the run's other-load figures show.
        "machine_cpu_us_per_pkt": (pkts > 0.0).then(|| (m.machine_busy_s - m.gen_cpu.cpu_s).max(0.0) * 1e6 / pkts),
        "sched_cpu_us_per_pkt": (pkts > 0.0).then(|| m.cpu.sched_cpu_s * 1e6 / pkts),
        "core_pct": m.cpu.core_share * 100.0,
        "loss_pct": loss_pct(r),
        "delay_p50_ms": r.delay.p50_ms,
        "delay_p99_ms": r.delay.p99_ms,
        "send_lateness_p99_ms": r.send_lateness.p99_ms,
        "gen_core_pct": m.gen_cpu.core_share * 100.0,
        "target_rcvbuf_drops": m.target_udp_drops,
        "gen_rcvbuf_drops": m.gen_udp_drops,
    })
}

pub(super) fn result(
    c: &Common,
    scenario: &str,
    params: Value,
    setup_s: f64,
    m: &Measured,
    figures: Value,
    notes: Vec<String>,
) -> Value {
    json!({
        "scenario": scenario,
        "target": c.target,
        "params": params,
        "setup_s": setup_s,
        "cpu": m.cpu,
        "gen_cpu": m.gen_cpu,
        "cpus_busy_pct": m.cpus_busy_pct,
        "target_udp_drops": m.target_udp_drops,
        "gen_udp_drops": m.gen_udp_drops,
        "rss_kib": m.rss_kib,
        "report": m.report,
        "figures": figures,
        "notes": notes,
    })
}
