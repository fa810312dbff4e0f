"""Dataset layer: ingest rate, bytes per sample, ds.top(by=...) and ds.diff with DuckDB and Dask, against pandas.

    python bench/bench_dataset.py [--captures N] [--samples S] [--dir DIR] [--ingest-only]
                                  [--no-dask] [--pandas-captures N]

The issue's full size, one command (about 1 GB on disk; --dir keeps the dataset, and a second run
reuses the captures already there):

    python bench/bench_dataset.py --captures 1000 --samples 100000 --dir /var/tmp/nf-bench-ds/ds --pandas-captures 100

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
    """Run a snippet in a fresh interpreter; it prints one JSON line {wall, cpu[, worker_cpu]} per
    query; returns them with the interpreter's peak RSS and the load average before and after."""
    import json
    l0 = os.getloadavg()[0]
    r = subprocess.run([sys.executable, "-c", _PRELUDE + code, *map(str, args)], capture_output=True, text=True,
                       cwd=ROOT)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["rss_mb"] = [int(x.split()[1]) for x in r.stderr.splitlines() if x.startswith("maxrss ")][-1] / 1024
    out["load"] = (l0, os.getloadavg()[0])
    return out


_PRELUDE = """
import json, os, resource, sys, time
import nodeflame as nf
RES = {}
def timed(name, fn, workers=None):
    w0 = sum(workers().values()) if workers else 0.0
    t, c = time.perf_counter(), time.process_time()
    r = fn()
    RES[name] = {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}
    if workers:
        RES[name]["worker_cpu"] = sum(workers().values()) - w0
    return r
def done():
    print(json.dumps(RES))
    print("maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""

A, B = "version = '1.2'", "version = '1.3'"

DUCK = f"""
ds = nf.dataset(sys.argv[1]); ds.captures(where="true")  # warm: duckdb imported, the view built
w = sys.argv[2] if len(sys.argv) > 2 else "true"
timed("top", lambda: ds.top(by=["version"], where=f"service = 'api' AND {{w}}", n=20))
d = timed("diff", lambda: ds.diff(a=f"{A} AND {{w}}", b=f"{B} AND {{w}}").numbers())
print("flagged", int(d["significant"].sum()), "of", len(d), file=sys.stderr)
done()
"""

DASK = f"""
from distributed import Client, LocalCluster
c = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None))
cpu = lambda: c.run(time.process_time)
ds = nf.dataset(sys.argv[1], client=c); ds.captures(where="true")
w = sys.argv[2] if len(sys.argv) > 2 else "true"
timed("top", lambda: ds.top(by=["version"], where=f"service = 'api' AND {{w}}", n=20), cpu)
timed("diff", lambda: ds.diff(a=f"{A} AND {{w}}", b=f"{B} AND {{w}}").numbers(), cpu)
c.close()
done()
"""

PANDAS = f"""
from nodeflame.frames.combine import concat
ds = nf.dataset(sys.argv[1]); w = sys.argv[2]
ps = {{v: [ds.profile(c) for c in ds.captures(where=f"version = '{{v}}' AND {{w}}")["capture_id"]]
      for v in ("1.2", "1.3")}}
merged = timed("concat", lambda: {{v: concat(p) for v, p in ps.items()}})
RES["top"] = dict(RES["concat"])
t = timed("top_only", lambda: {{v: m.top(20) for v, m in merged.items()}})
for k in ("wall", "cpu"):
    RES["top"][k] += RES["top_only"][k]
d = timed("diff_only", lambda: nf.diff(merged["1.2"], merged["1.3"]).numbers())
RES["diff"] = {{k: RES["concat"][k] + RES["diff_only"][k] for k in ("wall", "cpu")}}
done()
"""


def _fmt(r, q):
    x = r[q]
    s = f"{x['wall']:.2f} s wall, {x['cpu']:.2f} s CPU"
    if "worker_cpu" in x:
        s += f" (+{x['worker_cpu']:.2f} s CPU in the workers)"
    return s


def queries(d, args):
    import nodeflame as nf
    caps = nf.dataset(d).captures()
    print(f"queries over {len(caps)} captures, {int(caps['samples'].sum()):,} samples")
    duck = measure(DUCK, d)
    for q in ("top", "diff"):
        print(f"{q} duckdb: {_fmt(duck, q)}; peak RSS {duck['rss_mb']:.0f} MB; load {duck['load'][0]:.1f}-{duck['load'][1]:.1f}")
    if not args.no_dask:
        dask = measure(DASK, d)
        for q in ("top", "diff"):
            print(f"{q} dask, 2-worker LocalCluster (processes): {_fmt(dask, q)}; driver peak RSS "
                  f"{dask['rss_mb']:.0f} MB; load {dask['load'][0]:.1f}-{dask['load'][1]:.1f}; "
                  f"wall {dask[q]['wall'] / duck[q]['wall']:.1f}x duckdb")
    n = args.pandas_captures or len(caps)
    first = caps.sort_values("start").iloc[:n]
    cut = first["start"].max()
    where = f"start <= TIMESTAMP '{cut}'"
    duck_n = duck if n == len(caps) else measure(DUCK, d, where)
    pan = measure(PANDAS, d, where)
    print(f"pandas path on {n} captures ({int(first['samples'].sum()):,} samples), profiles already read: "
          f"peak RSS {pan['rss_mb']:.0f} MB; load {pan['load'][0]:.1f}-{pan['load'][1]:.1f}")
    for q in ("top", "diff"):
        print(f"  {q}: pandas concat + {'Profile.top' if q == 'top' else 'nf.diff'} {_fmt(pan, q)} vs duckdb "
              f"{_fmt(duck_n, q)} on the same captures: {pan[q]['wall'] / duck_n[q]['wall']:.1f}x wall, "
              f"{pan[q]['cpu'] / max(duck_n[q]['cpu'], 1e-9):.1f}x CPU")


def ingest(d, captures, samples):
    import nodeflame as nf
    parts = shape()
    ds = nf.dataset(d)
    have = len(ds.captures())
    t_gen = t_add = 0.0
    c0, l0 = time.process_time(), os.getloadavg()[0]
    for i in range(have, captures):
        t = time.perf_counter()
        p = make_capture(parts, i, samples)
        t_gen += time.perf_counter() - t
        t = time.perf_counter()
        ds.add(p, labels={"service": "api", "version": "1.2" if i % 2 == 0 else "1.3", "host": f"h{i % 4}"})
        t_add += time.perf_counter() - t
        if (i + 1) % 50 == 0:
            print(f"  {i + 1} captures added ({t_add:.0f} s in add)", flush=True)
    n = captures - have
    total = captures * samples
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
    print(f"{captures} captures x {samples:,} samples = {total:,} samples in {d}")
    if n:
        print(f"ingest of {n}: {t_add:.1f} s wall in ds.add (+{t_gen:.1f} s generating), {n / t_add:.2f} captures/s, "
              f"{n * samples / t_add / 1e6:.2f} M samples/s; CPU {time.process_time() - c0:.1f} s incl. generating; "
              f"load {l0:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"on disk: {size / 1e6:.1f} MB, {size / total:.2f} bytes/sample")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--captures", type=int, default=100)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--dir", help="the dataset directory (kept; captures already there are reused)")
    ap.add_argument("--ingest-only", action="store_true")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--pandas-captures", type=int, default=None,
                    help="run the pandas path (and DuckDB again for the ratio) on the first N captures only")
    args = ap.parse_args()
    d = args.dir or os.path.join(tempfile.mkdtemp(prefix="nf-bench-ds-"), "ds")
    ingest(d, args.captures, args.samples)
    if args.ingest_only:
        return
    queries(d, args)


if __name__ == "__main__":
    main()
