"""Benchmark: what the walker costs its target, measured so that a busy machine does not hide it.

On a 2-CPU machine shared with other jobs, iterations per wall second swing by
+-30 % between windows (bench_capture.py prints them too).  This script
measures the two parts of the walker's cost separately, per node version and
rate, on tests/workloads/hot.js (main thread only, a loop that never sleeps):

* stopped: the fraction of the window the main thread spent neither on a CPU
  nor waiting for one -- wall - on-CPU - run-queue wait, from
  /proc/<pid>/task/<tid>/schedstat -- minus the same for an unprofiled window
  (for this loop that is the time ptrace kept it stopped);
* per CPU-s: 1 - (iterations per CPU second profiled / unprofiled): what the
  stops, the kernel's ptrace paths and cache pollution cost the target
  while it runs;
* slowdown estimate: 1 - (1 - stopped) * (1 - per CPU-s loss), what a quiet
  machine would show as lost throughput.

Windows alternate unprofiled / profiled (--pairs pairs of --seconds each);
medians are printed.  Also printed: achieved sample rate and the walker's own
stopped-time percentiles (meta['walker']).

With the perf_event engine (the default where the kernel allows it) nothing
is stopped: its cost is all in the per CPU-s column (the kernel's sampling
interrupt and stack copy are charged to the target's CPU time).

Usage: python bench/bench_walker.py [--majors 18,20,22,24] [--rates 100,1000] [--pairs 3] [--seconds 3]
       [--engine auto|perf|ptrace] [--realtime stops|on|off]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import nodeflame as nf  # noqa: E402
from bench_capture import Hot  # noqa: E402
from walker_helpers import node_for  # noqa: E402


def schedstat(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        run, wait, _ = (int(x) for x in f.read().split())
    return run, wait


def measure(w, seconds):
    """(iterations per CPU second, stopped fraction) of the main thread over a window."""
    s0 = w.stats()
    r0, q0 = schedstat(w.pid, w.pid)
    t0 = time.monotonic_ns()
    time.sleep(seconds)
    s1 = w.stats()
    r1, q1 = schedstat(w.pid, w.pid)
    t1 = time.monotonic_ns()
    iters = (s1["ai"] + s1["bi"]) - (s0["ai"] + s0["bi"])
    wall = t1 - t0
    run, wait = r1 - r0, q1 - q0
    return iters / max(run, 1) * 1e9, max(0, wall - run - wait) / wall


def profiled(w, hz, seconds, realtime, engine):
    box = {}

    def go():
        box["p"] = nf.capture(w.pid, seconds + 1.5, backend="walker", hz=hz, progress=False,
                              backend_options={"realtime": realtime, "engine": engine})
    th = threading.Thread(target=go)
    th.start()
    time.sleep(0.75)
    m = measure(w, seconds)
    th.join()
    return m, box["p"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--majors", default="18,20,22,24")
    ap.add_argument("--rates", default="100,1000")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--engine", default="auto", choices=("auto", "perf", "ptrace"))
    ap.add_argument("--realtime", default="stops", choices=("stops", "on", "off"),
                    help="ptrace engine: SCHED_RR while threads are stopped (default), throughout, or never")
    ap.add_argument("--no-realtime", action="store_true", help="the same as --realtime off")
    a = ap.parse_args(argv)
    realtime = {"stops": "stops", "on": True, "off": False}["off" if a.no_realtime else a.realtime]
    rows = []
    for major in a.majors.split(","):
        try:
            node = node_for(major)
        except BaseException as e:  # pytest.skip outside pytest
            print(f"node {major}: {e}")
            continue
        w = Hot(node, (), ["--no-worker"])
        try:
            measure(w, 1.0)  # warm up
            for hz in (int(x) for x in a.rates.split(",")):
                cpu_ratio, stop_delta, rates, p50, p90, engines = [], [], [], [], [], set()
                for _ in range(a.pairs):
                    (u_ips, u_stop) = measure(w, a.seconds)
                    (p_ips, p_stop), prof = profiled(w, hz, a.seconds, realtime, a.engine)
                    cpu_ratio.append(p_ips / u_ips)
                    stop_delta.append(p_stop - u_stop)
                    m = prof.meta["walker"]
                    rates.append(prof.meta.get("achieved_hz") or 0)
                    p50.append(m["stopped_us_p50"] or 0)
                    p90.append(m["stopped_us_p90"] or 0)
                    engines.add(m["engine"])
                loss = 1 - statistics.median(cpu_ratio)
                stop = statistics.median(stop_delta)
                est = 1 - (1 - stop) * (1 - loss)
                rows.append((major, hz, est, stop, loss, statistics.median(rates), statistics.median(p50),
                             statistics.median(p90), "/".join(sorted(engines))))
                print(f"node {major} {hz} Hz: per-CPU-s ratios {[round(x, 4) for x in cpu_ratio]} "
                      f"stopped deltas {[round(x, 4) for x in stop_delta]}", flush=True)
        finally:
            w.kill()
    print(f"\n# walker overhead on hot.js (main thread), {a.pairs} pairs of {a.seconds:g} s, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
          f"engine={a.engine}, realtime={realtime}\n")
    print("| node | engine | rate | slowdown estimate | stopped | per CPU-s | achieved Hz | stopped us p50 / p90 |")
    print("|---|---|---|---|---|---|---|---|")
    for major, hz, est, stop, loss, rate, s50, s90, eng in rows:
        stops = f"{s50:.0f} / {s90:.0f}" if s50 else "none"
        print(f"| {major} | {eng} | {hz} Hz | {100 * est:+.2f} % | {100 * stop:.2f} % | {100 * loss:+.2f} % | "
              f"{rate:.0f} | {stops} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
