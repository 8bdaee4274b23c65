#!/usr/bin/env python3
"""Scaling figures (issue 20, item 4): the same load on Switchboard with one media worker and with
two, run by run alternating, and the most participants each holds.

  bench/scale.py cost        CPU per participant (S3, S4 over R rooms) and per packet (S1 in two
                             rooms), switchboard-w1 against switchboard-w2, median of --runs
  bench/scale.py capacity    S3 and S4 over R rooms at growing N, one run a step, per worker
                             count; the most participants held (the largest step) with at most
                             0.1 % (and 1 %) of the mixer's ticks over 10 ms late. A worker count
                             stops climbing past 5 % late, or below 99 % of the mix arriving

Pinning (bench/run.py): one worker runs on CPU 1 as every other bench run does, the load
generator on CPU 0; two workers run on CPUs 0 and 1, so one of them shares CPU 0 with the load
generator. Results go to bench/results/scaling-*.md, raw JSON to bench/results/raw/.
"""

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

# Capacity needs the daemon's own tick lateness, not the run-queue waits other tenants cause:
# SCHED_FIFO for its runs (bench/run.py, BENCH_RT), unless BENCH_RT=0.
if len(sys.argv) > 1 and sys.argv[1] == "capacity":
    os.environ.setdefault("BENCH_RT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the runner's processes, runs and medians)

TARGETS = ["switchboard-w1", "switchboard-w2"]
ROOMS = 4
# (scenario, label, loadgen args): spread over ROOMS rooms, so two workers hold two rooms each.
COST = [
    ("s3", f"N=200 R={ROOMS}", ["s3", "--legs", "200", "--rooms", str(ROOMS)]),
    ("s4", f"N=100 R={ROOMS}", ["s4", "--legs", "100", "--rooms", str(ROOMS)]),
    ("s1", "N=500 R=2", ["s1", "--subs", "500", "--rooms", "2"]),
]
# Capacity steps (participants); the leg port range (bench/switchboard-bench.toml) holds 2,000.
STEPS = {"s3": [400, 600, 800, 1000, 1200, 1400, 1600, 1800], "s4": [100, 200, 300, 400, 500, 600, 700, 800]}
MISS_PCT = (0.1, 1.0)
# Past these a step is plain overload, and the larger steps are not run.
STOP_LATE_PCT = 5.0
STOP_MIX_PCT = 99.0


def cost(opts, raw):
    rows = []
    for scn, label, args in COST:
        runs = {t: [] for t in TARGETS}
        for i in range(opts.runs):
            for t in TARGETS:
                run.log(f"{scn} {label} {t} run {i + 1}/{opts.runs}")
                r = run.one_run(t, f"{opts.stamp}-{scn}-{t}-{i}", args, opts)
                runs[t].append(r)
                (raw / f"cost-{scn}-{t}-{i}.json").write_text(json.dumps(r, indent=1))
        med = {t: run.median_figures(runs[t]) for t in TARGETS}
        key = "cpu_us_per_pkt" if scn == "s1" else "cpu_pct_per_participant"
        a, b = med[TARGETS[0]].get(key), med[TARGETS[1]].get(key)
        ratio = b / a if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else None
        pairs = [(x.get("figures", {}).get(key), y.get("figures", {}).get(key)) for x, y in
                 zip(runs[TARGETS[0]], runs[TARGETS[1]])]
        rows.append((scn, label, key, med, ratio, pairs))
    lines = ["| case | figure | 1 worker | 2 workers | 2 / 1 | pairs (1 → 2) | 2 workers: core % | "
             "rooms' workers | late ticks > 10 ms (1; 2) |", "|---|---|---|---|---|---|---|---|---|"]
    for scn, label, key, med, ratio, pairs in rows:
        w1, w2 = med[TARGETS[0]], med[TARGETS[1]]
        ps = "; ".join(f"{run.fmt(x)} → {run.fmt(y)}" for x, y in pairs)
        where = w2.get("room_workers") or [n for n in w2.get("notes", []) if "workers" in n]
        lines.append(f"| {scn.upper()} {label} | {key} | {run.fmt(w1.get(key))} | {run.fmt(w2.get(key))} | "
                     f"{run.fmt(ratio, 3) if ratio else '–'} | {ps} | {run.fmt(w2.get('core_pct'))} | {where} | "
                     f"{run.fmt(w1.get('tick_late_10ms_pct'))}; {run.fmt(w2.get('tick_late_10ms_pct'))} |")
    return "\n".join(lines) + "\n"


def capacity(opts, raw):
    lines = ["| scenario | workers | N | CPU % / participant | core % | generator core % | ticks > 10 ms % | "
             "ticks > 20 ms % | mix pkts % | held |", "|---|---|---|---|---|---|---|---|---|---|"]
    held = {}
    for scn in opts.scenarios:
        for t in TARGETS:
            for n in STEPS[scn]:
                run.log(f"capacity {scn} N={n} {t}")
                args = [scn, "--legs", str(n), "--rooms", str(ROOMS)]
                r = run.one_run(t, f"{opts.stamp}-cap-{scn}-{n}-{t}", args, opts)
                (raw / f"cap-{scn}-{n}-{t}.json").write_text(json.dumps(r, indent=1))
                f = r.get("figures", {})
                late, mix = f.get("tick_late_10ms_pct"), f.get("mix_received_pct")
                ok = "error" not in r and late is not None
                marks = []
                # Held: the largest step within the threshold. One run a step, so a smaller step
                # over it (a stall of the machine's) shows in the table but does not end the climb.
                for th in MISS_PCT:
                    if ok and late <= th:
                        held[(scn, t, th)] = n
                        marks.append(f"≤ {th} %")
                verdict = "error: " + r["error"][:80] if "error" in r else (", ".join(marks) or "no")
                lines.append(f"| {scn.upper()} | {t[-1]} | {n} | {run.fmt(f.get('cpu_pct_per_participant'))} | "
                             f"{run.fmt(f.get('core_pct'))} | {run.fmt(f.get('gen_core_pct'))} | {run.fmt(late)} | "
                             f"{run.fmt(f.get('tick_late_20ms_pct'))} | {run.fmt(mix)} | {verdict} |")
                if not ok or late > STOP_LATE_PCT or (mix is not None and mix < STOP_MIX_PCT):
                    break
    lines += ["", "| scenario | late ticks at most | held, 1 worker | held, 2 workers | 2 / 1 |",
              "|---|---|---|---|---|"]
    for scn in opts.scenarios:
        for th in MISS_PCT:
            a, b = held.get((scn, TARGETS[0], th)), held.get((scn, TARGETS[1], th))
            lines.append(f"| {scn.upper()} | {th} % | {a or 'none'} | {b or 'none'} | "
                         f"{run.fmt(b / a, 2) if a and b else '–'} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["cost", "capacity"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scenarios", default="s3,s4", help="capacity: which of s3,s4")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    opts = ap.parse_args()
    opts.scenarios = [s for s in opts.scenarios.split(",") if s]
    for exe in (run.LOADGEN, run.SWITCHBOARD):
        if not exe.exists():
            sys.exit(f"{exe} is missing: run `make bench-build`")
    run.RUNDIR.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run.SWITCHBOARD, run.SUT)
    opts.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw = run.RESULTS / "raw" / f"scale-{opts.mode}-{opts.stamp}"
    raw.mkdir(parents=True, exist_ok=True)
    m = run.machine()
    t0 = time.time()
    body = cost(opts, raw) if opts.mode == "cost" else capacity(opts, raw)
    load = os.getloadavg()
    head = (f"# Scaling: {opts.mode}\n\n{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}, "
            f"{run.git_desc()}, {m['nproc']} cores ({m['cpu']}), load average {m['load_at_start']} at the start and "
            f"{load[0]:.2f} at the end ({time.time() - t0:.0f} s). One worker on CPU {run.DUT_CPU}, two on "
            f"CPUs {run.WIDE_CPUS}; the load generator on CPU {run.GEN_CPU}; "
            f"{'SCHED_FIFO (daemon 10, load generator 11)' if run.RT else 'nice ' + run.NICE}.\n\n"
            f"Command: `bench/scale.py {' '.join(sys.argv[1:])}`\n\n")
    out = run.RESULTS / f"scaling-{opts.mode}.md"
    out.write_text(head + body)
    print(head + body)


if __name__ == "__main__":
    main()
