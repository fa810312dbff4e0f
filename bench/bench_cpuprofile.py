"""Benchmark: reading a large V8 .cpuprofile (600k samples, 300k nodes).

Generates a node-like profile (call depth around 40, function names and urls
from node: internals, node_modules packages and application files, the
(program)/(idle)/(garbage collector) nodes V8 emits, positionTicks on
sampled nodes), then times, in the same run and on the same file:

- ``json.load``               -- what a user would otherwise start from
                                 (parsing only: no tree, no stacks);
- ``json.load`` + a plain-Python conversion to one root-first stack per
  sample (dict id -> node, parent walk per node, Counter of stacks), the
  usual hand-written script;
- ``nodeflame.read``          -- the full Profile (tables, kinds, lines);
- ``nodeflame.read`` without msgspec -- the json-module path (no ``[fast]`` extra);
- ``nodeflame.read`` + ``p.top(20)``;
- then ``json.load`` and ``nodeflame.read`` alternated ``--alternate`` times (and, with ``--before
  DIR``, the reader of another copy of the package -- ``git archive REV nodeflame | tar -x -C DIR``
  -- in the same process and the same rotation: the A/B of a change on a loaded machine).

speedscope's importer is JavaScript running in a browser; it is not run here.

Usage: python bench/bench_cpuprofile.py [--nodes 300000] [--samples 600000]
       [--repeat 3] [--alternate N] [--before DIR] [--only-alternate] [--keep PATH]
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time

import numpy as np

FUNCS_APP = ["handleRequest", "parseBody", "renderTemplate", "computeHash", "validate", "serialize",
             "loadUser", "queryDb", "formatRow", "compress", "", "route", "authorize", "mapItems"]
FUNCS_DEP = ["emit", "next", "handle", "dispatch", "compile", "stringify", "parse", "resolve",
             "walk", "visit", "transform", "encode", "decode", "Layer.handle", "trim_prefix"]
PKGS = ["express", "lodash", "@babel/core", "body-parser", "mongoose", "ws", "fastify", "pino",
        "react-dom", "acorn", "semver", "debug", "qs", "iconv-lite", "@fastify/ajv-compiler"]
NODE_INTERNALS = [("processTicksAndRejections", "node:internal/process/task_queues"),
                  ("listOnTimeout", "node:internal/timers"), ("processTimers", "node:internal/timers"),
                  ("emit", "node:events"), ("onStreamRead", "node:internal/stream_base_commons"),
                  ("Module._compile", "node:internal/modules/cjs/loader"),
                  ("readFileSync", "node:fs"), ("parserOnIncoming", "node:_http_server")]
NATIVES = ["writeUtf8String", "compileFunction", "JSON.parse", "JSON.stringify", "Array.prototype.sort",
           "RegExp.prototype.exec", "read", "writev"]


def make_functions(rng: random.Random, n: int):
    """Pool of (functionName, url, lineNumber, columnNumber, scriptId)."""
    out = []
    scripts = {}
    for i in range(n):
        r = rng.random()
        if r < 0.45:
            url = f"file:///srv/app/src/{rng.choice(['api', 'lib', 'db', 'views'])}/mod{i % 400}.js"
            name = rng.choice(FUNCS_APP) + (str(i) if rng.random() < 0.5 else "")
        elif r < 0.9:
            pkg = rng.choice(PKGS)
            url = f"file:///srv/app/node_modules/{pkg}/lib/file{i % 97}.js"
            name = rng.choice(FUNCS_DEP) + (str(i) if rng.random() < 0.5 else "")
        elif r < 0.97:
            name, url = rng.choice(NODE_INTERNALS)
        else:
            out.append((rng.choice(NATIVES), "", -1, -1, "0"))
            continue
        sid = scripts.setdefault(url, str(len(scripts) + 10))
        out.append((name, url, rng.randrange(0, 3000), rng.randrange(0, 80), sid))
    return out


def generate(n_nodes: int, n_samples: int, seed: int = 1) -> dict:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    funcs = make_functions(rng, 6000)
    special = [("(root)", "", -1, -1, "0"), ("(program)", "", -1, -1, "0"), ("(idle)", "", -1, -1, "0"),
               ("(garbage collector)", "", -1, -1, "0")]
    parent = [-1, 0, 0, 0]
    fn = list(special)
    depth = [0, 1, 1, 1]
    # a random walk in depth, biased towards ~40, each step adds one node below the current one
    cur = 0
    while len(parent) < n_nodes:
        d = depth[cur]
        if d < 40 and rng.random() < 0.6 or d < 3:
            pass  # go deeper from cur
        else:
            for _ in range(rng.randrange(1, 6)):
                if parent[cur] > 0:
                    cur = parent[cur]
        parent.append(cur)
        fn.append(funcs[int(rng.paretovariate(1.1) * 7) % len(funcs)] if depth[cur] > 2
                  else rng.choice(funcs))
        depth.append(depth[cur] + 1)
        cur = len(parent) - 1
    n = len(parent)
    children = [[] for _ in range(n)]
    for i in range(1, n):
        children[parent[i]].append(i + 1)  # ids are 1-based
    # samples: mostly on leaves and deep nodes, some program/idle/gc
    dep = np.asarray(depth)
    w = np.where(dep > 5, dep.astype(float), 0.0)
    w[1], w[2], w[3] = w.sum() * 0.03, w.sum() * 0.05, w.sum() * 0.02
    w /= w.sum()
    sample_idx = nprng.choice(n, size=n_samples, p=w)
    hit = np.bincount(sample_idx, minlength=n)
    deltas = nprng.normal(1000, 120, n_samples).clip(50).astype(np.int64)
    deltas[0] = 2500
    nodes = []
    for i in range(n):
        name, url, line, col, sid = fn[i]
        node = {"id": i + 1, "callFrame": {"functionName": name, "scriptId": sid, "url": url,
                                            "lineNumber": line, "columnNumber": col},
                "hitCount": int(hit[i])}
        if children[i]:
            node["children"] = children[i]
        if hit[i] and line >= 0:
            a = int(hit[i]) // 2
            node["positionTicks"] = ([{"line": line + 2, "ticks": a}] if a else []) + \
                [{"line": line + 3, "ticks": int(hit[i]) - a}]
        nodes.append(node)
    start = 80_000_000_000
    return {"nodes": nodes, "startTime": start, "endTime": start + int(deltas.sum()) + 500,
            "samples": (sample_idx + 1).tolist(), "timeDeltas": deltas.tolist()}


def naive_stacks(path: str):
    """What a hand-written script does: json.load, then one stack per sample."""
    with open(path) as fh:
        prof = json.load(fh)
    by_id = {n["id"]: n for n in prof["nodes"]}
    parent = {}
    for n in prof["nodes"]:
        for c in n.get("children", ()):
            parent[c] = n["id"]
    stack_of = {}

    def stack(nid):
        s = stack_of.get(nid)
        if s is None:
            frames = []
            x = nid
            while x in by_id:
                cf = by_id[x]["callFrame"]
                frames.append(cf["functionName"] or "(anonymous)")
                x = parent.get(x)
            s = stack_of[nid] = ";".join(reversed(frames))
        return s

    return collections.Counter(stack(s) for s in prof["samples"])


def timeit(fn, repeat):
    """Median wall and median CPU (process) seconds of ``repeat`` calls; CPU is the
    steadier figure on a busy machine."""
    walls, cpus = [], []
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        del out
    return statistics.median(walls), statistics.median(cpus)


def _other_reader(root: str, path: str):
    """``nodeflame.read(path)`` of the package under ``root``, loaded beside this one: each call puts
    that package's modules in sys.modules for its duration (its lazy imports must find their own)."""
    root = os.path.abspath(root)
    if not os.path.isfile(os.path.join(root, "nodeflame", "__init__.py")):
        raise SystemExit(f"{root}: no nodeflame package there")

    def ours():
        return {m: mod for m, mod in sys.modules.items() if m == "nodeflame" or m.startswith("nodeflame.")}
    mine = ours()
    for m in mine:
        del sys.modules[m]
    sys.path.insert(0, root)
    try:
        import nodeflame as other
        other.read(path)  # its readers imported
        theirs = ours()
    finally:
        sys.path.remove(root)
        for m in theirs if "theirs" in locals() else ours():
            sys.modules.pop(m, None)
        sys.modules.update(mine)

    def read():
        for m in mine:
            sys.modules.pop(m, None)
        sys.modules.update(theirs)
        try:
            return other.read(path)
        finally:
            for m in theirs:
                sys.modules.pop(m, None)
            sys.modules.update(mine)
    return read


def phases(path: str, rounds: int):
    """Medians over ``rounds`` of the user and system CPU and minor page faults of each phase of
    ``nodeflame.read(path)`` on the msgspec path, run as the reader runs them (GC paused, the
    formats' memory settings): the file's read, msgspec's decode alone (and freeing what it made),
    the fast path (the decode and the per-node columns), the Profile's build, the whole read."""
    import resource

    import nodeflame as nf
    from nodeflame.frames import formats
    from nodeflame.frames.readers import v8protocol as cp
    from nodeflame.frames.readers.jsonutil import no_gc
    decoder = cp._decoder()[0][0]

    def usage():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime, r.ru_stime, r.ru_minflt

    got: dict = {}

    def timed(name, fn):
        a = usage()
        out = fn()
        b = usage()
        got.setdefault(name, []).append([y - x for x, y in zip(a, b)])
        return out

    def read_bytes():
        with open(path, "rb") as fh:
            return fh.read()
    for _ in range(rounds):
        gc.collect()
        with formats._bulk_memory(), no_gc():
            data = timed("file read", read_bytes)
            held = [timed("msgspec decode alone", lambda: decoder.decode(data))]
            timed("  freeing what it decoded", held.clear)
            part = timed("fast path: decode + node columns", lambda: cp.fast_protocol_part(data, path, "main"))
            timed("build_parts (frames, stacks, tables)", lambda: cp.build_parts([part], path))
            del part, data
        timed("whole nodeflame.read", lambda: nf.read(path))
    print(f"where the CPU goes, medians of {rounds} rounds:")
    print(f"{'phase':40s} {'user':>8s} {'system':>8s} {'faults':>8s}")
    for name, v in got.items():
        u, s_, f = (statistics.median(x[i] for x in v) for i in range(3))
        print(f"{name:40s} {u:8.3f} {s_:8.3f} {f:8.0f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=300_000)
    ap.add_argument("--samples", type=int, default=600_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="write the generated file here and keep it (reused when it exists)")
    ap.add_argument("--alternate", type=int, help="rounds of the alternating comparison (default: --repeat)")
    ap.add_argument("--before", metavar="DIR", help="a directory holding another nodeflame package: its "
                    "nodeflame.read joins the alternating rounds")
    ap.add_argument("--only-alternate", action="store_true",
                    help="skip the table of single timings: only the alternating rounds (a quicker A/B)")
    ap.add_argument("--phases", type=int, metavar="N",
                    help="then N rounds of where nodeflame.read's CPU goes (user, system, page faults per phase)")
    args = ap.parse_args(argv)

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import nodeflame as nf

    t0 = time.perf_counter()
    path = args.keep or os.path.join(tempfile.mkdtemp(prefix="nf-bench-"), "big.cpuprofile")
    if not (args.keep and os.path.exists(path)):  # --keep: generated once, then reused
        prof = generate(args.nodes, args.samples)
        with open(path, "w") as fh:
            json.dump(prof, fh, separators=(",", ":"))
        del prof
    gen = time.perf_counter() - t0
    size = os.path.getsize(path)
    p = nf.read(path)
    depth_mean = float(p.stacks["depth"].to_numpy()[p.samples["stack"].to_numpy()].mean()) + 1
    print(f"file: {path}  {size / 1e6:.1f} MB  nodes={args.nodes:,} samples={args.samples:,}  "
          f"mean stack depth={depth_mean:.1f}  ({len(p.stacks):,} stacks, {len(p.funcs):,} funcs; "
          f"generated in {gen:.1f} s)")
    del p

    def load():
        with open(path, "rb") as fh:
            return json.load(fh)

    from nodeflame.frames.readers import v8protocol as cp_reader

    def read_plain():
        """nodeflame.read without msgspec (the json module path, what an install without [fast] runs)."""
        saved = cp_reader._DECODER
        cp_reader._DECODER = False
        try:
            return nf.read(path)
        finally:
            cp_reader._DECODER = saved

    rows = [
        ("json.load (parse only)", lambda: load()),
        ("json.load + naive per-sample stacks", lambda: naive_stacks(path)),
        ("nodeflame.read", lambda: nf.read(path)),
        ("nodeflame.read without msgspec", read_plain),
        ("nodeflame.read + top(20)", lambda: nf.read(path).top(20)),
    ]
    # json.load and nodeflame.read alternate, so that both see the same load
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'what':40s} {'median of ' + str(args.repeat):>12s} {'cpu':>10s}")
    res = {}
    for name, fn in rows if not args.only_alternate else ():
        res[name] = timeit(fn, args.repeat)
        print(f"{name:40s} {res[name][0]:10.3f} s {res[name][1]:8.3f} s", flush=True)
    fns = {"json.load (parse only)": load, "nodeflame.read": lambda: nf.read(path)}
    if args.before:
        fns["nodeflame.read (before)"] = _other_reader(args.before, path)
    pair = {name: [] for name in fns}
    rounds = args.alternate or args.repeat
    for _ in range(rounds):
        for name, fn in fns.items():
            pair[name].append(timeit(fn, 1))
    med = {k: [statistics.median(x[i] for x in v) for i in (0, 1)] for k, v in pair.items()}
    (jw, jc), (nw, nc) = med["json.load (parse only)"], med["nodeflame.read"]
    print(f"alternating, median of {rounds}: json.load {jw:.3f} s ({jc:.3f} s CPU), nodeflame.read "
          f"{nw:.3f} s ({nc:.3f} s CPU): nodeflame.read is {jw / nw:.2f}x faster by wall, {jc / nc:.2f}x by CPU")
    if args.before:
        bw, bc = med["nodeflame.read (before)"]
        print(f"  nodeflame.read of {args.before}: {bw:.3f} s ({bc:.3f} s CPU): {jw / bw:.2f}x / {jc / bc:.2f}x "
              f"json.load's; this tree's reader takes {nc / bc:.2f} of its CPU")
    if args.phases:
        phases(path, args.phases)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.keep:
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


if __name__ == "__main__":
    main()
