"""Dataset layer: ingest rate, bytes per sample, ds.top(by=...) with DuckDB and Dask, against pandas.

    python bench/bench_dataset.py [--captures N] [--samples S] [--dir DIR] [--seed K]

Generates N captures of S samples each (one row per sample, as a live capture has), all of one
realistic shape: 2,000 functions (app, deps, node internals, natives), 6,000 distinct stacks of
depth ~20 with recursion, heavy-tailed stack weights that differ per capture; half the captures
labelled version=1.2, half 1.3, over 4 hosts.  Each measurement of a query runs in a fresh
subprocess so that its peak RSS (ru_maxrss) is its own.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def shape(seed=0, nfuncs=2000, nstacks=6000):
    from nodeflame.frames.profile import Profile
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["js", "deps", "node", "native"], nfuncs, p=[0.5, 0.3, 0.15, 0.05])
    funcs = pd.DataFrame({"name": [f"fn{i}" for i in range(nfuncs)],
                          "file": [f"/app/src/m{i % 97}.js" if k == "js" else f"/app/node_modules/p{i % 31}/i.js"
                                   if k == "deps" else f"node:internal/x{i % 13}" if k == "node" else ""
                                   for i, k in enumerate(kinds)],
                          "line": rng.integers(1, 500, nfuncs), "column": rng.integers(1, 80, nfuncs), "kind": kinds})
    frames = pd.DataFrame({"func": np.arange(nfuncs)})
    prefix, frame, depth = [-1], [0], [0]
    for s in range(1, nstacks):
        parent = int(rng.integers(max(0, s - 400), s))
        if depth[parent] >= 30:
            parent = 0
        f = int(frame[parent]) if rng.random() < 0.05 else int(rng.integers(1, nfuncs))  # some recursion
        prefix.append(parent)
        frame.append(f)
        depth.append(depth[parent] + 1)
    stacks = pd.DataFrame({"prefix": prefix, "frame": frame, "depth": depth})
    base = rng.pareto(1.2, nstacks) + 1e-3
    return Profile, funcs, frames, stacks, base


def make_capture(parts, i, n):
    Profile, funcs, frames, stacks, base = parts
    rng = np.random.default_rng(1000 + i)
    w = base * rng.lognormal(0, 0.3, len(base))
    if i % 2:  # version 1.3: some functions heavier
        w[::50] *= 1.2
    st = rng.choice(len(base), n, p=w / w.sum()).astype(np.int32)
    samples = pd.DataFrame({"stack": st, "time_ns": np.arange(n, dtype=np.int64) * 1_000_000})
    meta = {"backend": "walker", "pid": 1000 + i % 8, "start_time": 1_700_000_000.0 + 60 * i,
            "duration_ns": n * 1_000_000, "timed": True}
    return Profile(funcs, frames, stacks, samples, meta, validate=False)


def measure(code: str, *args) -> dict:
    """Run a snippet in a fresh interpreter; it prints seconds; returns seconds and peak RSS."""
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    secs = float(r.stdout.strip().splitlines()[-1])
    return {"s": secs, "rss_mb": int(r.stderr.strip().splitlines()[-1]) / 1024}


_RUSAGE = "import resource,sys; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"

DUCK = f"""
import sys, time, nodeflame as nf
ds = nf.dataset(sys.argv[1]); ds.captures()
t = time.perf_counter(); r = ds.top(by=["version"], where="service = 'api'", n=20); print(time.perf_counter() - t)
{_RUSAGE}
"""
DASK = f"""
import sys, time, nodeflame as nf
from distributed import Client, LocalCluster
c = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
ds = nf.dataset(sys.argv[1], client=c); ds.captures()
t = time.perf_counter(); r = ds.top(by=["version"], where="service = 'api'", n=20); print(time.perf_counter() - t)
{_RUSAGE}
"""
PANDAS = f"""
import sys, time, nodeflame as nf
from nodeflame.frames.combine import concat
ds = nf.dataset(sys.argv[1]); caps = ds.captures()
ps = {{}}
t0 = time.perf_counter()
for v, ids in caps.groupby("version")["capture_id"]:
    ps[v] = [ds.profile(c) for c in ids]
t = time.perf_counter()
tops = {{v: concat(p).top(20) for v, p in ps.items()}}
print(time.perf_counter() - t)
print("read", time.perf_counter() - t0, file=sys.stderr)
{_RUSAGE}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captures", type=int, default=100)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--dir")
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()
    import nodeflame as nf
    d = args.dir or tempfile.mkdtemp(prefix="nf-bench-ds-")
    parts = shape()
    ds = nf.dataset(os.path.join(d, "ds"))
    t_gen = t_add = 0.0
    for i in range(args.captures):
        t = time.perf_counter()
        p = make_capture(parts, i, args.samples)
        t_gen += time.perf_counter() - t
        t = time.perf_counter()
        ds.add(p, labels={"service": "api", "version": "1.2" if i % 2 == 0 else "1.3", "host": f"h{i % 4}"})
        t_add += time.perf_counter() - t
    total = args.captures * args.samples
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(d, "ds")) for f in fs)
    print(f"{args.captures} captures x {args.samples:,} samples = {total:,} samples")
    print(f"ingest: {t_add:.1f} s, {args.captures / t_add:.1f} captures/s, {total / t_add / 1e6:.2f} M samples/s")
    print(f"on disk: {size / 1e6:.1f} MB, {size / total:.2f} bytes/sample")
    path = os.path.join(d, "ds")
    duck = measure(DUCK, path)
    print(f"top(by=version) duckdb: {duck['s']:.2f} s, peak RSS {duck['rss_mb']:.0f} MB")
    if not args.no_dask:
        dask = measure(DASK, path)
        print(f"top(by=version) dask 2-worker LocalCluster: {dask['s']:.2f} s, driver peak RSS {dask['rss_mb']:.0f} MB")
    pan = measure(PANDAS, path)
    print(f"pandas concat + Profile.top per version (profiles already in memory): {pan['s']:.2f} s, "
          f"peak RSS {pan['rss_mb']:.0f} MB; ratio pandas/duckdb {pan['s'] / duck['s']:.1f}x")


if __name__ == "__main__":
    main()
