"""Applying source maps to a big profile of a minified bundle (issue 10).

    python bench/bench_sourcemaps.py [--samples 1000000] [--funcs 20000] [--map-mb 5] [--repeat 3]

Writes a generated minified bundle (one line) and a source map of about
--map-mb MB (--funcs functions from 200 sources, each mapped with a dozen
segments, names for the function identifiers) into a temporary directory, a
Profile of --samples samples over stacks of those functions, then times
``Profile.with_source_maps()`` (decoding the map included) and the decode
alone.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nodeflame.frames.profile import Profile  # noqa: E402
from nodeflame.frames.sourcemap import decode_mappings  # noqa: E402
from tests.vlq import encode  # noqa: E402

def make_bundle(d: str, nfuncs: int, map_mb: float, seed: int = 1):
    """(bundle path, function columns (0-based, at the '(' of each function))."""
    rng = random.Random(seed)
    nsrc = 200
    segs_per_func = max(4, int(map_mb * 1e6 / nfuncs / 5.4))
    parts, cols = [], []
    pos = 0
    segments = []  # all on the bundle's one line
    names = []
    for i in range(nfuncs):
        gname = f"f{i:x}"
        text = f"function {gname}(a,b){{" + "a=a*b+1;" * segs_per_func + "return a}"
        src, oline = i % nsrc, 10 + (i // nsrc) * 12
        names.append(f"originalFunction{i}")
        # the identifier (named), the '(' and one segment per statement
        seg = [(pos + 9, src, oline, 9, len(names) - 1), (pos + 9 + len(gname), src, oline, 9 + len(gname) + 7)]
        cols.append(pos + 9 + len(gname))
        for k in range(segs_per_func):
            seg.append((pos + 9 + len(gname) + 6 + 8 * k, src, oline + 1 + k % 10, 4 + rng.randint(0, 30)))
        segments.extend(seg)
        parts.append(text)
        pos += len(text)
    bundle = os.path.join(d, "bundle.js")
    with open(bundle, "w") as fh:
        fh.write("".join(parts) + "\n//# sourceMappingURL=bundle.js.map\n")
    m = {"version": 3, "file": "bundle.js", "sources": [f"../src/mod{i}.ts" for i in range(nsrc)],
         "names": names, "mappings": encode([segments])}
    with open(bundle + ".map", "w") as fh:
        json.dump(m, fh)
    return bundle, cols, m["mappings"]


def make_profile(bundle: str, cols, nsamples: int, seed: int = 2) -> Profile:
    rng = np.random.default_rng(seed)
    nf = len(cols)
    funcs = pd.DataFrame({"name": [f"f{i:x}" for i in range(nf)], "file": ["file://" + bundle] * nf,
                          "line": np.ones(nf, np.int32), "column": np.asarray(cols, np.int32) + 1,
                          "kind": ["js"] * nf, "package": [""] * nf})
    frames = pd.DataFrame({"func": np.arange(nf), "line": np.ones(nf), "column": np.asarray(cols) + 1})
    # a random tree of 50 k stacks, depth up to ~30
    nst = 50_000
    prefix = np.full(nst, -1, np.int64)
    depth = np.zeros(nst, np.int64)
    frame = np.zeros(nst, np.int64)
    seen = set()
    for i in range(nst):
        p = int(rng.integers(max(0, i - 200), i)) if i and rng.random() < 0.97 else -1
        f = int(rng.integers(0, nf))
        while (p, f) in seen:
            f = (f + 1) % nf
        seen.add((p, f))
        prefix[i], frame[i] = p, f
        depth[i] = depth[p] + 1 if p >= 0 else 0
    stacks = pd.DataFrame({"prefix": prefix, "frame": frame, "depth": depth})
    samples = pd.DataFrame({"stack": rng.integers(0, nst, nsamples), "time_ns": np.arange(nsamples) * 1_000_000})
    return Profile(funcs, frames, stacks, samples, {"timed": True})


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--funcs", type=int, default=20_000)
    ap.add_argument("--map-mb", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        bundle, cols, mappings = make_bundle(d, args.funcs, args.map_mb)
        size = os.path.getsize(bundle + ".map")
        p = make_profile(bundle, cols, args.samples)
        print(f"map {size / 1e6:.1f} MB ({len(mappings) / 1e6:.1f} MB of mappings), {args.funcs} functions, "
              f"{len(p.samples):,} samples, {len(p.stacks):,} stacks")
        dec, app = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            m = decode_mappings(mappings)
            dec.append(time.perf_counter() - t)
            t = time.perf_counter()
            q = p.with_source_maps()
            app.append(time.perf_counter() - t)
        print(f"segments {len(m['gen_line']):,}")
        print(f"decode mappings: best {min(dec):.3f} s of {args.repeat}")
        print(f"with_source_maps (read + decode + apply): best {min(app):.3f} s of {args.repeat}")
        top = q.top(3)
        assert top["name"].astype(str).str.startswith("originalFunction").all(), top
        assert not q.meta["warnings"], q.meta["warnings"]


if __name__ == "__main__":
    main()
