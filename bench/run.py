#!/usr/bin/env python3
"""Benchmark runner: starts the process under test pinned to one core, runs bench/loadgen pinned to
the other, repeats each scenario, and writes the medians as markdown under bench/results/.

  bench/run.py bench              Switchboard alone (make bench)
  bench/run.py compare            Switchboard and Janus / rtpengine side by side (make bench-compare)
  bench/run.py profile            perf profiles of Switchboard under S1 and S2 (make bench-profile)

Options: --runs N (default 3), --only s1,s2,... , --targets switchboard,floor,... , --quick (smaller N,
1 run), --duration S.
Only processes this script started are ever stopped, by their own PID.
"""

import argparse
import datetime
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
RUNDIR = BENCH / "run"
LOADGEN = BENCH / "loadgen/target/release/loadgen"
KERNEL_FLOOR = BENCH / "loadgen/target/release/kernel-floor"
# kernel-floor's legs: below Switchboard's (20000-23999) and the peers' port ranges.
FLOOR_BASE = 16000
SWITCHBOARD = ROOT / "target/release/switchboard"
# An A/B probe: BENCH_BASELINE names another build of the daemon (an earlier commit's). It runs as
# target "baseline" beside "switchboard", alternating run by run, so both see the same background
# load; `mode ab` prints the two medians and their ratio.
BASELINE = os.environ.get("BENCH_BASELINE")
SB_CONFIG = BENCH / "switchboard-bench.toml"
JANUS_API = "http://127.0.0.1:18088/janus"
NG = ("127.0.0.1", 22222)
GEN_CPU = os.environ.get("BENCH_GEN_CPU", "0")
DUT_CPU = os.environ.get("BENCH_DUT_CPU", "1")
# A daemon with more than one media worker runs on these (the load generator stays on GEN_CPU).
WIDE_CPUS = os.environ.get("BENCH_WIDE_CPUS", "0,1")
# Both the process under test and the load generator run at this nice level, so that other work on
# a shared machine (builds) disturbs the measurement less. BENCH_NICE=0 turns it off.
NICE = os.environ.get("BENCH_NICE", "-10")


# BENCH_RT=1: the process under test and the load generator run SCHED_FIFO (the generator one
# priority above, so it keeps its schedule on the core it may share with a worker) instead of
# at nice -10. On a machine whose other tenants keep both cores busy, a nice -10 thread still
# waits in the run queue for milliseconds, which makes the mixer's ticks late whatever the
# daemon does; bench/scale.py's capacity runs need the daemon's own lateness.
RT = os.environ.get("BENCH_RT") == "1"


def pinned(cpu, gen=False):
    if RT:
        return ["chrt", "-f", "11" if gen else "10", "taskset", "-c", cpu]
    return ["nice", "-n", NICE, "taskset", "-c", cpu]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- processes under test


def no_core_files():
    # A crashing peer (Janus AudioBridge did, in opus_decode while a big room was torn down) would
    # otherwise drop a multi-GB core file into the repository root.
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Daemon:
    """One process under test, started by us, pinned to DUT_CPU (or to `cpus`)."""

    def __init__(self, name, cmd, ready, env=None, cpus=None):
        self.name = name
        # What the load generator needs in its environment to drive this process (a token).
        self.env = {}
        RUNDIR.mkdir(parents=True, exist_ok=True)
        self.logf = open(RUNDIR / f"{name}.log", "ab")
        self.args = []
        self.proc = subprocess.Popen(
            pinned(cpus or DUT_CPU) + cmd, cwd=ROOT, stdout=self.logf, stderr=self.logf, start_new_session=True,
            preexec_fn=no_core_files, env={**os.environ, **(env or {})},
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}; see {RUNDIR / (name + '.log')}")
            if ready():
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited; see {RUNDIR / (name + '.log')}")
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{name} did not become ready in 30 s")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        """Stops the process; returns its exit code (negative: killed by that signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode


def http_ok(url, data=None):
    try:
        req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=1) as r:
            return 200 <= r.status < 300
    except Exception:
        return False


def ng_ping():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    try:
        s.sendto(b"rp d7:command4:pinge", NG)
        return b"pong" in s.recv(1000)
    except OSError:
        return False
    finally:
        s.close()


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_busy(kind, port):
    s = socket.socket(socket.AF_INET, kind)
    # As servers bind: a port left in TIME_WAIT by the previous run is free.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def start(target, args=()):
    """Starts the process under test. Switchboard gets free ports of its own (another daemon may be
    running on this machine); the peers' fixed ports must be free, or this fails rather than
    measuring someone else's process."""
    if target in ("switchboard", "baseline", "switchboard-kernel") or target.startswith("switchboard-w"):
        http = free_port(socket.SOCK_STREAM)
        api = f"http://127.0.0.1:{http}"
        exe = str(BASE_SUT if target == "baseline" else SUT)
        # BENCH_BASELINE_AUTH=off: the baseline runs with auth.enabled = false, so `ab` measures
        # what checking tokens costs (the same binary as BENCH_BASELINE).
        noauth = target == "baseline" and os.environ.get("BENCH_BASELINE_AUTH") == "off"
        env = {"SWITCHBOARD_AUTH__ENABLED": "false"} if noauth else {}
        if target == "switchboard-kernel":
            # Two-party plain calls forwarded by the TC program (docs/sip-gateway.md); needs root.
            env["SWITCHBOARD_RTP__KERNEL_FORWARDING"] = "auto"
        # switchboard-wK: K media workers (the scaling figures). One worker keeps the daemon's
        # core to itself; more than one run on both cores, the load generator's included.
        cpus = None
        if target.startswith("switchboard-w"):
            k = int(target[len("switchboard-w"):])
            env["SWITCHBOARD_MEDIA__WORKERS"] = str(k)
            cpus = DUT_CPU if k == 1 else WIDE_CPUS
        d = Daemon(
            "switchboard",
            # Port 0: each media worker binds a free WebRTC port of its own (a fixed port would
            # need the next media.workers - 1 free too); the answers carry it to the peers.
            [exe, "--config", str(SB_CONFIG), "--http-listen", f"127.0.0.1:{http}", "--webrtc-listen", "127.0.0.1:0"],
            lambda: http_ok(api + "/healthz"),
            env=env, cpus=cpus,
        )
        d.args = ["--api", api]
        if not noauth:
            tok = subprocess.run([exe, "--config", str(SB_CONFIG), "token", "--room", "*", "--identity", "bench",
                                  "--grant", "admin", "--ttl", "1d"], cwd=ROOT, capture_output=True, text=True)
            if tok.returncode != 0:
                d.stop()
                raise RuntimeError(f"switchboard token failed: {tok.stderr.strip()[-300:]}")
            d.env = {"SB_API_TOKEN": tok.stdout.strip()}
        return d
    if target == "floor":
        return start_floor(args)
    # janus-elK: Janus with `event_loops = K` (K shared threads for every PeerConnection).
    loops = target[len("janus-el"):] if target.startswith("janus-el") else None
    target = "janus" if loops else target
    busy = {"rtpengine": [(socket.SOCK_DGRAM, NG[1])], "janus": [(socket.SOCK_STREAM, 18088)]}[target]
    for kind, port in busy:
        if port_busy(kind, port):
            raise RuntimeError(f"port {port} is already in use: another {target}? (bench/peers/ configures it)")
    if target == "rtpengine":
        return Daemon(
            "rtpengine",
            ["rtpengine", "--config-file=bench/peers/rtpengine.conf", "--config-section=bench"],
            ng_ping,
        )
    if target == "janus":
        return Daemon(
            "janus",
            ["janus", "-C", janus_config(loops), "-F", "bench/peers/janus"],
            lambda: http_ok(JANUS_API, b'{"janus":"info","transaction":"ready"}'),
        )
    raise ValueError(target)


def janus_config(loops=None):
    """Janus's core config. With `loops` (target janus-elK, or BENCH_JANUS_EVENT_LOOPS=K for every
    Janus run): a copy with `event_loops = K`, so K shared threads serve every PeerConnection
    instead of Janus's default of one thread per handle."""
    loops = loops or os.environ.get("BENCH_JANUS_EVENT_LOOPS")
    if not loops:
        return "bench/peers/janus/janus.jcfg"
    text = (BENCH / "peers/janus/janus.jcfg").read_text()
    path = RUNDIR / f"janus-event-loops-{int(loops)}.jcfg"
    path.write_text(text.replace("general: {", f"general: {{\n\tevent_loops = {int(loops)}", 1))
    return str(path)


def start_floor(args):
    """kernel-floor, in the shape of the scenario: S2's rooms relayed, or S3's legs served."""
    mode, count = {"s1": ("fanout", "--subs"), "s2": ("relay", "--rooms"), "s3": ("mixer", "--legs")}[args[0]]
    n = int(args[args.index(count) + 1])
    legs = {"fanout": 2, "relay": n * 2, "mixer": n}[mode]
    for port in (FLOOR_BASE, FLOOR_BASE + legs - 1):
        if port_busy(socket.SOCK_DGRAM, port):
            raise RuntimeError(f"port {port} is already in use: kernel-floor needs {FLOOR_BASE}-{FLOOR_BASE + legs - 1}")
    d = Daemon("kernel-floor", [str(KERNEL_FLOOR), mode, count, str(n), "--base", str(FLOOR_BASE)],
               lambda: port_busy(socket.SOCK_DGRAM, FLOOR_BASE + legs - 1))
    d.args = ["--floor-base", str(FLOOR_BASE)]
    return d


# The daemon under test is a copy of target/release/switchboard taken when the run starts, so a
# rebuild by someone else during the run does not mix two versions in one set of medians.
SUT = RUNDIR / "switchboard-under-test"
BASE_SUT = RUNDIR / "switchboard-baseline"


# ----------------------------------------------------------------------------- one run


def loadgen(target, daemon, tag, args, opts, timeout=600):
    # The baseline and switchboard-wK are Switchboards too: the load generator drives them the same way.
    lg_target = "switchboard" if target in ("baseline", "switchboard-kernel") or target.startswith("switchboard-w") else target
    lg_target = "janus" if target.startswith("janus-el") else lg_target
    cmd = pinned(GEN_CPU, gen=True) + [str(LOADGEN), "--target", lg_target, "--pid", str(daemon.pid), "--tag", tag] + daemon.args + [
           "--media", str(BENCH / "media"), "--duration", str(opts.duration), "--warmup", str(opts.warmup)] + args
    log("  $", " ".join(cmd[6:]))
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **getattr(daemon, "env", {})})
    except subprocess.TimeoutExpired:
        return {"error": f"loadgen timed out after {timeout} s"}
    if p.returncode != 0:
        # The first line is the error; a backtrace may follow it.
        text = (p.stderr or p.stdout).strip()
        return {"error": text if len(text) <= 800 else text[:400] + " … " + text[-400:]}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no JSON from loadgen: " + p.stdout[-300:] + p.stderr[-300:]}


def one_run(target, tag, args, opts, profile=None):
    try:
        d = start(target, args)
    except RuntimeError as e:
        return {"error": str(e)}
    perf = None
    try:
        if profile:
            perf = subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-F", "299", "--call-graph", "dwarf,8192", "-p", str(d.pid),
                 "-o", str(profile)],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        r = loadgen(target, d, tag, args, opts)
        if d.proc.poll() is not None:
            r = {"error": f"{target} exited during the run (code {d.proc.returncode}); see {RUNDIR / (target + '.log')}"}
    finally:
        if perf:
            perf.send_signal(signal.SIGINT)
            try:
                perf.wait(timeout=60)
            except subprocess.TimeoutExpired:
                perf.kill()
        code = d.stop()
    if code not in (0, None) and "error" not in r:
        # The figures were taken; the process failed only on the way out. Keep both.
        r.setdefault("notes", []).append(f"{target} exited with {code} when stopped")
    if "error" in r:
        log("   error:", r["error"][-300:])
    else:
        f = r.get("figures", {})
        log("   ", ", ".join(f"{k}={fmt(v)}" for k, v in f.items() if not isinstance(v, (dict, list))))
    return r


# ----------------------------------------------------------------------------- plan

S3_N = [25, 50, 100, 200]


def plan(mode, quick):
    """(scenario, label, loadgen args, targets)."""
    sub_ns = [100, 300, 500] if not quick else [100]
    cases = []
    if mode == "bench":
        # WebRTC fan-out has no counterpart among the peers (Janus needs a WebRTC publisher and
        # subscribers of its own): Switchboard only, in `bench`.
        for n in sub_ns:
            cases.append(("s1", f"N={n}", ["s1", "--subs", str(n)], ["switchboard"]))
        for n in ([50, 100] if not quick else [50]):
            cases.append(("s1v", f"N={n}", ["s1", "--subs", str(n), "--video"], ["switchboard"]))
    if mode == "compare":
        # WebRTC on both sides (ICE, DTLS-SRTP): str0m clients on Switchboard and on Janus
        # VideoRoom, the legs on the machine's own address since Janus gathers no loopback
        # candidates (bench/peers/janus/janus.jcfg).
        for n in ([100, 300, 500] if not quick else [100]):
            # janus-el1: the same Janus with one shared event loop instead of a thread per handle.
            cases.append(("s1janus", f"N={n}", ["--bind-ip", host_ip(), "s1", "--subs", str(n)],
                          ["switchboard", "janus", "janus-el1"]))
        # Plain-RTP subscribers on both sides: Janus's fan-out is VideoRoom rtp_forward.
        for n in ([100, 500] if not quick else [100]):
            cases.append(("s1rtp", f"N={n}", ["s1", "--subs", str(n), "--subs-kind", "rtp", "--janus-ssrc", "__JSSRC__"],
                          ["switchboard", "janus", "floor"]))
    for m in ([100, 500] if not quick else [100]):
        # "floor": kernel-floor, the same system calls with no server behind them (what the
        # kernel alone costs; docs/benchmarks.md).
        cases.append(("s2", f"M={m}", ["s2", "--rooms", str(m)],
                      ["switchboard", "rtpengine", "floor"] if mode == "compare" else ["switchboard"]))
    if mode == "compare":
        # Kernel forwarding against rtpengine in user space, the kernel floor and the user-space
        # path, on whole-machine CPU (issue 24): the kernel's work is billed to softirq and to the
        # sender, not to the daemon.
        for m in ([100, 500] if not quick else [100]):
            cases.append(("s2k", f"M={m}", ["s2", "--rooms", str(m)],
                          ["switchboard-kernel", "switchboard", "rtpengine", "floor"]))
    for codec in ("s3", "s4"):
        for n in (S3_N if not quick else [25]):
            peers = ["janus", "floor"] if codec == "s3" else ["janus"]
            cases.append((codec, f"N={n}", [codec, "--legs", str(n)],
                          ["switchboard"] + peers if mode == "compare" else ["switchboard"]))
    if mode == "bench":
        cases.append(("s5", "200 joins", ["s5", "--joins", "200", "--webrtc-joins", "200"], ["switchboard"]))
    return cases


# ----------------------------------------------------------------------------- medians and tables


def fmt(v, nd=None):
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if nd is not None:
            return f"{v:,.{nd}f}"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        return f"{v:.3g}"
    return str(v)


def median_figures(runs):
    ok = [r for r in runs if "error" not in r]
    out = {"runs_ok": len(ok), "runs": len(runs)}
    if not ok:
        out["error"] = runs[-1].get("error") if runs else "no runs"
        return out
    keys = []
    for r in ok:
        for k in r.get("figures", {}):
            if k not in keys:
                keys.append(k)
    for k in keys:
        vals = [r["figures"].get(k) for r in ok]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None]
        if nums:
            out[k] = statistics.median(nums)
        elif all(isinstance(v, bool) for v in vals):
            out[k] = all(vals)
        else:
            out[k] = vals[-1]
    notes = []
    for r in ok:
        for n in r.get("notes", []):
            if n not in notes:
                notes.append(n)
    out["notes"] = notes
    # Load generator health: its own send lateness and CPU context.
    # A target that used nearly all of its core is saturated: its per-unit CPU figures are a
    # floor, and its loss and delay describe overload rather than normal work.
    if isinstance(out.get("core_pct"), (int, float)):
        out["saturated"] = out["core_pct"] >= 85.0
    other = []
    for r in ok:
        busy = r.get("cpus_busy_pct") or []
        if len(busy) > int(DUT_CPU) and r.get("cpu"):
            other.append(max(0.0, busy[int(DUT_CPU)] - 100 * r["cpu"].get("core_share", 0)))
    if other:
        out["dut_core_other_pct"] = statistics.median(other)
    lat = [r.get("report", {}).get("send_lateness", {}).get("p99_ms") for r in ok]
    lat = [x for x in lat if x is not None]
    if lat:
        out["gen_lateness_p99_ms"] = statistics.median(lat)
    return out


COLUMNS = {
    "s1": [("pkts_per_cpu_s", "fwd pkts / CPU-s"), ("cpu_us_per_pkt", "CPU µs / pkt"), ("core_pct", "core %"),
           ("loss_pct", "loss %"), ("delay_p50_ms", "delay p50 ms"), ("delay_p99_ms", "delay p99 ms"),
           ("target_rcvbuf_drops", "rcvbuf drops (daemon)"), ("gen_lateness_p99_ms", "gen lateness p99 ms"), ("gen_core_pct", "generator core %"), ("dut_core_other_pct", "other load on daemon core %"), ("saturated", "saturated")],
    "s2": [("cpu_us_per_pkt", "CPU µs / relayed pkt"), ("pkts_per_cpu_s", "pkts / CPU-s"), ("core_pct", "core %"),
           ("loss_pct", "loss %"), ("delay_p50_ms", "delay p50 ms"), ("delay_p99_ms", "delay p99 ms"),
           ("answer_p99_ms", "answer p99 ms"), ("target_rcvbuf_drops", "rcvbuf drops (daemon)"), ("gen_core_pct", "generator core %"), ("dut_core_other_pct", "other load on daemon core %"), ("saturated", "saturated")],
    "s3": [("cpu_pct_per_participant", "CPU % / participant"), ("core_pct", "core %"), ("mix_arrived", "mix arrived"),
           ("mix_received_pct", "mix pkts %"), ("mix_delay_p50_ms", "mix delay p50 ms"),
           ("mix_delay_p99_ms", "mix delay p99 ms"), ("onsets_heard", "onsets heard"), ("gen_core_pct", "generator core %"), ("dut_core_other_pct", "other load on daemon core %"), ("saturated", "saturated")],
    "s5": [("phone_answer_p50_ms", "rtp answer p50 ms"), ("phone_answer_p99_ms", "rtp answer p99 ms"),
           ("webrtc_answer_p50_ms", "webrtc answer p50 ms"), ("webrtc_answer_p99_ms", "webrtc answer p99 ms"),
           ("first_media_p50_ms", "first media p50 ms"), ("first_media_p99_ms", "first media p99 ms"),
           ("rss_kib_per_phone_leg", "RSS KiB / rtp leg")],
}
COLUMNS["s1v"] = COLUMNS["s1"]
COLUMNS["s1rtp"] = COLUMNS["s1"]
COLUMNS["s1janus"] = COLUMNS["s1"]
COLUMNS["s4"] = COLUMNS["s3"]
COLUMNS["s2k"] = [("machine_cpu_us_per_pkt", "machine CPU µs / relayed pkt (minus generator)")] + COLUMNS["s2"]

TITLES = {
    "s1": "S1 WebRTC audio fan-out (one Opus publisher, N WebRTC subscribers)",
    "s1v": "S1 WebRTC video fan-out (one VP8 publisher ~1 Mbit/s, N WebRTC subscribers)",
    "s1janus": "S1 WebRTC audio fan-out (one str0m Opus publisher, N str0m subscribers) vs Janus VideoRoom WebRTC subscribers",
    "s1rtp": "S1 plain-RTP fan-out (one Opus publisher, N plain RTP subscribers) vs Janus VideoRoom rtp_forward",
    "s2": "S2 1:1 phone relay (M rooms of two PCMU legs, every leg sending)",
    "s2k": "S2 1:1 phone relay with kernel forwarding, on whole-machine CPU minus the load generator's",
    "s3": "S3 audio MCU, PCMU legs (one room of N legs, three talking)",
    "s4": "S4 audio MCU, Opus legs (one room of N legs, three talking)",
    "s5": "S5 joins (200 sequential rtp joins, 200 sequential WebRTC subscriber joins)",
}


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "load_at_start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"}


def table(scn, rows):
    cols = COLUMNS[scn]
    head = "| case | target | runs ok | " + " | ".join(c[1] for c in cols) + " |"
    sep = "|---|---|---|" + "---|" * len(cols)
    lines = [head, sep]
    for label, target, med in rows:
        vals = [fmt(med.get(k)) for k, _ in cols]
        lines.append(f"| {label} | {target} | {med.get('runs_ok', 0)}/{med.get('runs', 0)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def ratio(a, b):
    if a is None or b is None or not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return None
    return a / b


def summary(mode, results, meta):
    """The headline figures against the issue's targets."""
    def get(scn, label, target, key):
        for (s, l, t), med in results.items():
            if s == scn and l == label and t == target:
                return med.get(key)
        return None

    L = []
    L.append(f"# Switchboard benchmark summary ({mode})\n")
    L.append(f"- date: {meta['date']}")
    L.append(f"- machine: {meta['machine']['nproc']} cores, {meta['machine']['cpu']}, kernel {meta['machine']['kernel']}, "
             f"load average at start {meta['machine']['load_at_start']}")
    L.append(f"- switchboard: {meta.get('git', '?')}")
    L.append(f"- each figure is the median of {meta['runs']} runs of {meta['duration']} s (after {meta['warmup']} s warm-up); "
             f"daemon on CPU {DUT_CPU}, load generator on CPU {GEN_CPU}, both at nice {NICE}")
    L.append(f"- command: `{meta['command']}`\n")
    L.append("| scenario | figure | switchboard | peer | peer figure | ratio (sb / peer) | target | met |")
    L.append("|---|---|---|---|---|---|---|---|")

    def row(scn, label, fig, key, target_text, ok_fn, peer=None, lower_better=True, who="switchboard"):
        if not any(s == scn and l == label and t == who for (s, l, t) in results):
            return
        sb = get(scn, label, who, key)
        pv = get(scn, label, peer, key) if peer else None
        r = ratio(sb, pv)
        met = ok_fn(sb, pv, r)
        name = f"{scn.upper()} {label}" + ("" if who == "switchboard" else f" **{who}**")
        L.append(f"| {name} | {fig} | {fmt(sb)} | {peer or '–'} | {fmt(pv)} | "
                 f"{fmt(r, 2) if r is not None else '–'} | {target_text} | {met} |")

    def yn(x):
        return "–" if x is None else ("yes" if x else "**no**")

    for n in ("N=100", "N=300", "N=500"):
        row("s1", n, "forwarded pkts / CPU-s", "pkts_per_cpu_s", "≥ 200,000 (N=500)",
            lambda s, p, r: yn(None if s is None else s >= 200_000) if n == "N=500" else "–")
        row("s1", n, "loss %", "loss_pct", "< 0.1 % (N=500)",
            lambda s, p, r: yn(None if s is None else s < 0.1) if n == "N=500" else "–")
        row("s1", n, "delay p99 ms", "delay_p99_ms", "< 2 ms", lambda s, p, r: yn(None if s is None else s < 2))
    for n in ("N=50", "N=100"):
        row("s1v", n, "forwarded pkts / CPU-s", "pkts_per_cpu_s", "–", lambda s, p, r: "–")
        row("s1v", n, "delay p99 ms", "delay_p99_ms", "< 2 ms", lambda s, p, r: yn(None if s is None else s < 2))
    if mode == "compare":
        for n in ("N=100", "N=300", "N=500"):
            row("s1janus", n, "WebRTC subscribers, CPU µs / forwarded pkt", "cpu_us_per_pkt", "≤ 1/3 of Janus",
                lambda s, p, r: yn(None if r is None else r <= 1 / 3), peer="janus")
            row("s1janus", n, "WebRTC subscribers, delay p99 ms", "delay_p99_ms", "–", lambda s, p, r: "–", peer="janus")
            row("s1janus", n, "WebRTC subscribers, loss %", "loss_pct", "–", lambda s, p, r: "–", peer="janus")
            row("s1janus", n, "WebRTC subscribers, CPU µs / forwarded pkt", "cpu_us_per_pkt", "≤ 1/3 of Janus",
                lambda s, p, r: yn(None if r is None else r <= 1 / 3), peer="janus-el1")
        for n in ("N=100", "N=500"):
            row("s1rtp", n, "CPU µs / forwarded pkt", "cpu_us_per_pkt", "–", lambda s, p, r: "–", peer="janus")
            # One socket for every subscriber, as WebRTC's fan-out has: the least S1 could cost.
            row("s1rtp", n, "CPU µs / forwarded pkt, the kernel alone (one socket, 32 per sendmmsg)", "cpu_us_per_pkt",
                "–", lambda s, p, r: "–", peer="janus", who="floor")
            row("s1rtp", n, "forwarded pkts / CPU-s, the kernel alone", "pkts_per_cpu_s", "S1: ≥ 200,000 (N=500)",
                lambda s, p, r: "–", who="floor")
            row("s1rtp", n, "delay p99 ms, the kernel alone", "delay_p99_ms", "S1: < 2 ms", lambda s, p, r: "–",
                who="floor")
    for m in ("M=100", "M=500"):
        row("s2", m, "CPU µs / relayed pkt", "cpu_us_per_pkt", "≤ 1/3 of rtpengine",
            lambda s, p, r: yn(None if r is None else r <= 1 / 3), peer="rtpengine" if mode == "compare" else None)
        row("s2", m, "delay p99 ms", "delay_p99_ms", "–", lambda s, p, r: "–",
            peer="rtpengine" if mode == "compare" else None)
        # The floor's row: its ratio to rtpengine is the least any relay on the kernel's UDP
        # path could reach, so a target below it cannot be met that way.
        row("s2", m, "CPU µs / relayed pkt, the kernel alone", "cpu_us_per_pkt", "–", lambda s, p, r: "–",
            peer="rtpengine", who="floor")
    for scn, frac, txt in (("s3", 1 / 5, "≤ 1/5 of Janus"), ("s4", 1 / 3, "≤ 1/3 of Janus")):
        for n in S3_N:
            label = f"N={n}"
            arrived = get(scn, label, "switchboard", "mix_arrived")
            pending = arrived is False
            sat = [t for t in ("switchboard", "janus") if get(scn, label, t, "saturated")]

            def cpu_ok(s, p, r, pending=pending, sat=sat, frac=frac):
                if pending:
                    return "pending (no mixed media)"
                if sat:
                    return "n/a: " + " and ".join(sat) + " saturated"
                return yn(None if r is None else r <= frac)
            row(scn, label, "CPU % / participant" + (" (no mix yet)" if pending else ""), "cpu_pct_per_participant", txt,
                cpu_ok, peer="janus" if mode == "compare" else None)
            if scn == "s3":
                row(scn, label, "CPU % / participant, the kernel alone", "cpu_pct_per_participant", "–",
                    lambda s, p, r: "–", peer="janus", who="floor")
            row(scn, label, "mix delay p99 ms", "mix_delay_p99_ms", "≤ 60 ms",
                lambda s, p, r: "pending (no mixed media)" if pending else yn(None if s is None else s <= 60),
                peer="janus" if mode == "compare" else None)
    # The largest N of S1 (WebRTC audio) that met the loss target.
    ok_ns = [int(l[2:]) for (s_, l, t), m in results.items()
             if s_ == "s1" and t == "switchboard" and isinstance(m.get("loss_pct"), (int, float)) and m["loss_pct"] < 0.1]
    if any(s_ == "s1" for (s_, _l, _t) in results):
        L.append(f"| S1 | largest N with loss < 0.1 % | {max(ok_ns) if ok_ns else 'none'} | – | – | – | 500 | "
                 f"{yn(bool(ok_ns) and max(ok_ns) >= 500)} |")
    row("s5", "200 joins", "rtp answer p99 ms", "phone_answer_p99_ms", "< 20 ms",
        lambda s, p, r: yn(None if s is None else s < 20))
    row("s5", "200 joins", "WebRTC answer p99 ms", "webrtc_answer_p99_ms", "< 20 ms",
        lambda s, p, r: yn(None if s is None else s < 20))
    row("s5", "200 joins", "first media p99 ms (WebRTC)", "first_media_p99_ms", "–", lambda s, p, r: "–")
    row("s5", "200 joins", "RSS KiB / rtp leg", "rss_kib_per_phone_leg", "< 300 KiB",
        lambda s, p, r: yn(None if s is None else s < 300))
    return "\n".join(L) + "\n"


def git_desc():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return f"git {rev}" + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "?"


def host_ip():
    """The machine's first global IPv4 (BENCH_HOST_IP overrides): where Janus gathers ICE candidates."""
    if os.environ.get("BENCH_HOST_IP"):
        return os.environ["BENCH_HOST_IP"]
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        return line.split()[3].split("/")[0]
    sys.exit("no global IPv4 address for the WebRTC comparison with Janus: set BENCH_HOST_IP")


def janus_ssrc_probe():
    return os.environ.get("BENCH_JANUS_SSRC", "1000")


def main():
    global RESULTS
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bench", "compare", "profile", "ab"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--case", default="", help="run only the cases with these labels, e.g. N=300,N=200")
    ap.add_argument("--targets", default="", help="run only these targets, e.g. floor,switchboard")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--results", default=None, help="where the markdown goes (default bench/results)")
    opts = ap.parse_args()
    if opts.results:
        RESULTS = Path(opts.results).resolve()
    if opts.quick:
        opts.runs = 1
    for exe in (LOADGEN, KERNEL_FLOOR, SWITCHBOARD):
        if not exe.exists():
            sys.exit(f"{exe} is missing: run `make bench` (it builds it)")
    RUNDIR.mkdir(parents=True, exist_ok=True)
    import shutil
    shutil.copy2(SWITCHBOARD, SUT)
    if opts.mode == "ab":
        if not BASELINE or not Path(BASELINE).exists():
            sys.exit("mode ab needs BENCH_BASELINE=<another switchboard binary>")
        shutil.copy2(BASELINE, BASE_SUT)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw = RESULTS / "raw" / f"{opts.mode}-{stamp}"
    raw.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
            "git": git_desc(), "runs": opts.runs, "duration": opts.duration, "warmup": opts.warmup,
            "command": "bench/run.py " + " ".join(sys.argv[1:])}
    log("machine:", meta["machine"])

    if opts.mode == "profile":
        return profile(opts, raw)

    only = set(x for x in opts.only.split(",") if x)
    cases = [c for c in plan("bench" if opts.mode == "ab" else opts.mode, opts.quick) if not only or c[0] in only]
    if opts.case:
        cases = [c for c in cases if c[1] in opts.case.split(",")]
    if opts.mode == "ab":
        cases = [(s, l, a, ["baseline", "switchboard"]) for s, l, a, _ in cases]
    if opts.targets:
        keep = set(opts.targets.split(","))
        cases = [(s, l, a, [t for t in ts if t in keep]) for s, l, a, ts in cases]
        cases = [c for c in cases if c[3]]
    results = {}
    t_all = time.time()
    for scn, label, args, targets in cases:
        args = [janus_ssrc_probe() if a == "__JSSRC__" else a for a in args]
        runs = {t: [] for t in targets}
        for i in range(opts.runs):
            for t in targets:  # alternate targets, so both see the same background load
                log(f"{scn} {label} {t} run {i + 1}/{opts.runs}")
                tag = f"{stamp}-{scn}-{label.replace('=', '').replace(' ', '')}-{t}-{i}"
                r = one_run(t, tag, args, opts)
                runs[t].append(r)
                (raw / f"{scn}-{label.replace('=', '').replace(' ', '')}-{t}-{i}.json").write_text(json.dumps(r, indent=1))
        for t in targets:
            results[(scn, label, t)] = median_figures(runs[t])
    log(f"all cases took {time.time() - t_all:.0f} s")

    if opts.mode == "ab":
        return ab_report(results, meta, raw)
    prefix = "" if opts.mode == "bench" else "compare-"
    by_scn = {}
    for (scn, label, t), med in results.items():
        by_scn.setdefault(scn, []).append((label, t, med))
    for scn, rows in by_scn.items():
        notes = []
        for label, t, med in rows:
            for n in med.get("notes", []):
                notes.append(f"- {label} {t}: {n}")
            if med.get("error"):
                notes.append(f"- {label} {t}: error: {med['error']}")
        text = f"# {TITLES[scn]}\n\n{meta['date']}, {meta['git']}, median of {opts.runs} runs\n\n{table(scn, rows)}\n"
        if notes:
            text += "\nNotes:\n" + "\n".join(notes) + "\n"
        (RESULTS / f"{prefix}{scn}.md").write_text(text)
    if not only:
        (RESULTS / f"{prefix}summary.md").write_text(summary(opts.mode, results, meta))
    (raw / "medians.json").write_text(json.dumps({"meta": meta, "results": [
        {"scenario": s, "case": l, "target": t, "median": m} for (s, l, t), m in results.items()]}, indent=1))
    log("wrote", RESULTS)


def ab_report(results, meta, raw):
    """Baseline against this build, per case: the medians of each scenario's headline figures."""
    lines = [f"# A/B: {meta['git']} against BENCH_BASELINE={BASELINE}", "",
             f"{meta['date']}, median of {meta['runs']} alternating runs each", "",
             "| case | figure | baseline | this build | this / baseline |", "|---|---|---|---|---|"]
    for (scn, label, t), med in results.items():
        if t != "switchboard":
            continue
        base = results.get((scn, label, "baseline"), {})
        for key, name in COLUMNS.get(scn, [])[:2]:
            a, b = base.get(key), med.get(key)
            ratio = f"{b / a:.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else "–"
            lines.append(f"| {scn.upper()} {label} | {name} | {fmt(a)} | {fmt(b)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    (raw / "ab.md").write_text(text)
    print(text)
    (raw / "medians.json").write_text(json.dumps({"meta": meta, "results": [
        {"scenario": s, "case": l, "target": t, "median": m} for (s, l, t), m in results.items()]}, indent=1))


def perf_top(data, children, limit):
    """Top symbols of a perf.data file: self time (children=False) or inclusive time."""
    args = ["perf", "report", "-i", str(data), "--sort", "dso,symbol", "--stdio", "-g", "none",
            "--percent-limit", str(limit), "--children" if children else "--no-children"]
    rep = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    lines = []
    for l in rep.stdout.splitlines():
        if not l.strip() or l.startswith("#"):
            continue
        lines.append(l.rstrip()[:190])
    return lines


def profile(opts, raw):
    """perf record (cpu-clock: this VM exposes no hardware counters) of the daemon during S1 and S2."""
    out = []
    cases = (("s1-webrtc-N300", ["s1", "--subs", "300"]), ("s2-M500", ["s2", "--rooms", "500"]),
             ("s4-opus-N100", ["s4", "--legs", "100"]))
    for name, args in cases:
        data = raw / f"perf-{name}.data"
        log(f"profile {name}")
        r = one_run("switchboard", f"prof-{name}", args, opts, profile=data)
        figs = {k: v for k, v in r.get("figures", {}).items() if not isinstance(v, (dict, list))}
        self_lines = perf_top(data, False, 1.0)
        child_lines = perf_top(data, True, 5.0)
        (raw / f"perf-{name}-self.txt").write_text("\n".join(self_lines) + "\n")
        (raw / f"perf-{name}-children.txt").write_text("\n".join(child_lines) + "\n")
        out.append(f"## {name}\n\n`loadgen {' '.join(args)}`: " + ", ".join(f"{k}={fmt(v)}" for k, v in figs.items())
                   + "\n\nSelf time (share of the daemon's samples, symbols over 1 %):\n\n```\n" + "\n".join(self_lines[:40])
                   + "\n```\n\nInclusive time (children included, over 5 %):\n\n```\n" + "\n".join(child_lines[:60]) + "\n```\n")
    (RESULTS / "profile.md").write_text(
        "# Switchboard profiles\n\n`perf record -e cpu-clock -F 299 --call-graph dwarf` of the daemon for a whole run "
        "(setup, warm-up and window); the VM has no hardware counters (`perf stat -e instructions` is not supported).\n\n"
        + "\n".join(out))
    log("wrote", RESULTS / "profile.md")


if __name__ == "__main__":
    main()
