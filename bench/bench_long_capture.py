"""Benchmark: memory of a long capture (issue 15: a 10-minute capture at 1 kHz holds at most 100 bytes per
sample, peaks under twice its steady size, and loses no samples or reports what it lost).

Runs tests/workloads/walker_main.js (main thread and a worker, both busy) and captures it for --minutes with
one backend, in this process, watching this process's resident memory (/proc/self/statm every 0.25 s, every
10 ms while the Profile is built, and ru_maxrss) against the samples taken so far:

* bytes/sample: (RSS at the end of sampling - RSS before the capture) / samples -- everything the capture
  holds, fixed costs (rings, code maps, frame table) included;
* slope: the growth of RSS per sample over the second half of the capture (a least-squares fit): what
  each further sample costs once the fixed costs are paid;
* peak / steady: the highest RSS growth while the Profile is built (stop()) over the growth at the end of
  sampling; also as whole-process RSS;
* lost: the capture's own counts (missed periods, the kernel's lost and throttled records, undecodable
  samples) and the samples against what the sampled threads' CPU time allows (perf engine: one per period
  of CPU time; schedstat of the main and worker thread);
* the target's RSS at the start and the end (an inspector capture's profiles are held by the target).

Usage: python bench/bench_long_capture.py [--minutes 10] [--backend walker] [--engine auto] [--hz 1000]
       [--node 20] [--tree DIR] [--cold]
       python bench/bench_long_capture.py --synthetic 1060000 [--repeat 3] [--tree DIR]
``--synthetic N`` captures nothing: it fills a walker Decoder with N synthetic samples of a long capture's
shape (tests/test_build_memory.py's ``synthetic_decoder``) and measures only the build of its Profile
(``Decoder.profile``): its CPU time (best of --repeat), the RSS the first build adds at its peak (this
process, sampled every 2 ms; later builds reuse the heap it grew) and tracemalloc's peak, against the decoder's arrays and the Profile's tables.
Before the baseline a tiny Profile is built (``--cold``: not), so that what the first Profile of a process
loads once (pandas' and Arrow's string code, ~12 MB) is not counted as the capture's.
``--tree DIR`` imports nodeflame from DIR instead (an older checkout, e.g. ``git archive`` of a commit), to
compare two versions on the same machine.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import resource
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(pid="self") -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


def run_ns(pid, tid) -> int:
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def warm():
    """Load what building a Profile loads the first time in a process (pandas' and Arrow's string code,
    the frame classifier, the demangler): ~12 MB of code and tables, once per process, not per sample."""
    import numpy as np
    import pandas as pd
    from nodeflame.capture.native.symbols import demangle
    from nodeflame.frames.build import FrameTable, build_from_tree
    ft = FrameTable()
    ft.add("warm", "/x.js", 1, 1, hint="js", tier="optimized")
    ft.add("_Z4warmv", "/lib/x.so", hint="native")
    demangle(["_Z4warmv"])
    p = build_from_tree(ft, np.array([-1, 0]), np.array([0, 1]), np.array([1, 1]), times=np.array([0, 1]),
                        threads=pd.Categorical.from_codes(np.zeros(2, np.int16), ["main"]),
                        node_lines=pd.DataFrame({"node": [1], "line": [1], "ticks": [1]}))
    p.validate()


def _malloc_trim():
    """glibc's malloc_trim(0): return the heap's free pages to the system (no-op elsewhere)."""
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def synthetic(a):
    """--synthetic: the build of a synthetic long capture's Profile, alone (see the module docstring)."""
    import nodeflame
    from test_build_memory import measure_build, synthetic_decoder, table_bytes
    print(f"nodeflame from {os.path.dirname(nodeflame.__file__)}", flush=True)
    warm()
    dec = synthetic_decoder(a.synthetic)
    meta = {"backend": "walker"}
    cpu, wall, rss_add = [], [], []
    # the first build's RSS is the one that counts (later builds reuse the heap the first one grew)
    for _ in range(max(a.repeat, 1)):
        gc.collect()
        _malloc_trim()          # give back what making the synthetic capture freed: the build must not reuse it
        r0 = rss()
        peak = [r0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                done.wait(0.002)
        th = threading.Thread(target=watch, daemon=True)
        th.start()
        c0, w0 = time.process_time(), time.perf_counter()
        p = dec.profile(dict(meta))
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        done.set()
        th.join()
        rss_add.append(max(peak[0], rss()) - r0)
        del p
    p, traced_peak, traced_kept = measure_build(dec, meta)
    n = a.synthetic
    held = dec.nbytes() + sum(sys.getsizeof(t) for t in dec._paths)
    tb = table_bytes(p)
    out = {"samples": n, "stacks": len(p.stacks), "decoder_arrays_mib": dec.nbytes() / 2**20,
           "decoder_held_mib": held / 2**20, "profile_tables_mib": tb / 2**20,
           "traced_peak_mib": traced_peak / 2**20, "traced_kept_mib": traced_kept / 2**20,
           "traced_peak_bytes_per_sample": traced_peak / n, "traced_peak_over_tables": traced_peak / tb,
           "rss_added_at_peak_mib_first_build": round(rss_add[0] / 2**20, 1),
           "build_cpu_s": [round(x, 3) for x in cpu], "build_wall_s": [round(x, 3) for x in wall],
           "build_cpu_s_best": min(cpu), "loadavg": os.getloadavg()}
    print(json.dumps(out, indent=1, default=str))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(out, indent=1, default=str))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--backend", default="walker")
    ap.add_argument("--engine", default="auto", help="walker engine: auto, perf or ptrace")
    ap.add_argument("--hz", type=int, default=1000)
    ap.add_argument("--node", default="20", help="node major version (tests/walker_helpers.node_for)")
    ap.add_argument("--tree", default=None, help="import nodeflame from this directory")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--cold", action="store_true",
                    help="do not build a tiny Profile before the baseline (its one-off ~12 MB then counts)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="measure only the build of a synthetic N-sample walker capture's Profile")
    ap.add_argument("--repeat", type=int, default=3, help="with --synthetic: builds timed (best CPU time)")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, a.tree or str(ROOT))
    import nodeflame  # noqa: F401
    if a.synthetic:
        return synthetic(a)
    from nodeflame.capture import procutil
    from nodeflame.capture.base import CaptureOptions, get_backend
    from walker_helpers import Workload, node_for
    print(f"nodeflame from {os.path.dirname(nodeflame.__file__)}", flush=True)

    node = node_for(a.node)
    if isinstance(node, tuple):
        node = node[0]
    seconds = a.minutes * 60
    # any free port for an inspector (two runs side by side must not both want 9229)
    w = Workload(node, str(int(seconds + 600)), extra_node_args=("--inspect-port=0",) if a.backend == "inspector"
                 else ())
    try:
        time.sleep(1.0)                               # the worker thread running
        tids = [int(t) for t in os.listdir(f"/proc/{w.pid}/task")]
        opts = CaptureOptions(hz=a.hz, duration=seconds,
                              extra={"engine": a.engine} if a.backend == "walker" else {})
        b = get_backend(a.backend)
        if not a.cold:
            warm()
        gc.collect()
        rss0, trss0 = rss(), rss(w.pid)
        cpu0 = {t: run_ns(w.pid, t) for t in tids}
        c0 = time.process_time()
        t0 = time.monotonic()
        sess = b.start(procutil.describe(w.pid), opts)
        sampler = getattr(sess, "sampler", None)
        sampled = (lambda: sampler.samples) if sampler is not None else (lambda: 0)
        trace = []                                    # (s, rss, samples)
        done = threading.Event()
        fast = threading.Event()

        def watch():
            while not done.is_set():
                trace.append((time.monotonic() - t0, rss(), sampled()))
                done.wait(0.01 if fast.is_set() else 0.25)
        th = threading.Thread(target=watch, daemon=True)
        th.start()
        last_print = 0.0
        while time.monotonic() - t0 < seconds:
            time.sleep(min(1.0, seconds - (time.monotonic() - t0)) if seconds > time.monotonic() - t0 else 0)
            if time.monotonic() - last_print >= 60:
                last_print = time.monotonic()
                n = sampled()
                print(f"  {time.monotonic() - t0:5.0f} s: {n} samples, RSS +{(rss() - rss0) / 2**20:.1f} MiB"
                      + (f" ({(rss() - rss0) / n:.0f} B/sample)" if n else "")
                      + f", target RSS +{(rss(w.pid) - trss0) / 2**20:.1f} MiB", flush=True)
        cpu1 = {t: run_ns(w.pid, t) for t in tids}
        trss1 = rss(w.pid)
        steady = rss()
        n_sampled = sampled()
        wall_sampling = time.monotonic() - t0
        fast.set()
        ts = time.monotonic()
        prof = sess.stop()
        stop_s = time.monotonic() - ts
        sess.close()
        done.set()
        th.join()
        cpu_s = time.process_time() - c0
        after = rss()
        peak_watch = max(r for _, r, _ in trace)
        peak_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = max(peak_watch, peak_max)
    finally:
        w.close()
    n = int(prof.samples["weight"].sum()) if len(prof.samples) else 0
    half = [(r, k) for s, r, k in trace if s >= wall_sampling / 2 and s <= wall_sampling and k > 0]
    slope = None
    if len(half) >= 3:
        import numpy as np
        r_, k_ = np.array(half, float).T
        if k_.max() > k_.min():
            slope = float(np.polyfit(k_, r_, 1)[0])
    md = prof.meta.get(a.backend, {}) if isinstance(prof.meta.get(a.backend), dict) else {}
    sampled_tids = [t for t in tids if t in cpu1]
    cpu_ns = {t: cpu1[t] - cpu0.get(t, 0) for t in sampled_tids}
    labels = set(prof.samples["thread"].astype(str))
    js_cpu = sum(sorted(cpu_ns.values(), reverse=True)[:len(labels)])     # the sampled (busiest) threads
    mem_prof = sum(int(t.memory_usage(deep=True).sum()) for t in (prof.funcs, prof.frames, prof.stacks,
                                                                   prof.samples))
    out = {
        "backend": a.backend, "engine": md.get("engine"), "hz": a.hz, "minutes": a.minutes, "node": node,
        "samples": n, "samples_at_end_of_sampling": n_sampled, "threads": sorted(labels),
        "stacks": len(prof.stacks), "frames": len(prof.frames),
        "rss_before_mib": rss0 / 2**20, "rss_steady_mib": steady / 2**20, "rss_peak_mib": peak / 2**20,
        "rss_after_mib": after / 2**20, "profile_tables_mib": mem_prof / 2**20,
        "bytes_per_sample": (steady - rss0) / n if n else None,
        "bytes_per_sample_slope": slope,
        "peak_over_steady_growth": (peak - rss0) / (steady - rss0) if steady > rss0 else None,
        "peak_over_steady_rss": peak / steady if steady else None,
        "stop_s": stop_s, "wall_s": wall_sampling, "capture_cpu_s": cpu_s,
        "target_rss_mib": [trss0 / 2**20, trss1 / 2**20],
        "target_bytes_per_sample": (trss1 - trss0) / n if n else None,
        "target_sampled_cpu_s": js_cpu / 1e9,
        "samples_per_cpu_period": (n / (js_cpu / 1e9 * a.hz)) if js_cpu else None,
        "lost": {k: md.get(k) for k in ("missed_periods", "perf_lost", "perf_throttled", "perf_bad_records",
                                        "decode_errors", "invalid_js_frames", "stack_truncated") if k in md},
        "warnings": [str(x) for x in prof.meta.get("warnings", [])],
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(out, indent=1, default=str))
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
