"""Benchmark: what expanding inlined frames costs the walker's decoder, per sample, per node version.

tests/workloads/inline.js (a warmed round() whose helpers TurboFan/Maglev inlined) is captured twice per
node version with the walker at 1 kHz: once as shipped, once with the code layout facts removed (frames
left unexpanded, as before inlined frames were expanded).  Printed per capture: samples, decode time per
sample (meta walker.walk_us_mean: the walk, the heap reads and the frame table, on the decoder thread, off
the target's path), inlined frames per sample and how code objects were found (JSFunction::code, scans
of instruction starts, cached entries re-validated per sample, stale entries dropped).

The target never waits for decoding (the perf engine never stops it; the ptrace engine decodes after the
thread runs again): what this costs is the decoder's CPU, on a machine the target shares.

Usage: python bench/bench_walker_decode.py [--majors 18,20,22,24] [--seconds 4]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import nodeflame as nf  # noqa: E402
from nodeflame.capture import v8layout  # noqa: E402
from walker_helpers import node_for  # noqa: E402

WL = ROOT / "tests" / "workloads" / "inline.js"


def one(node, seconds, expand):
    proc = subprocess.Popen([node, str(WL), "--warm-ms=3000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        proc.stdout.readline()
        lay = v8layout.layout_for_pid(proc.pid)
        saved = lay.facts.get("code")
        if not expand:
            lay.facts.pop("code", None)
        try:
            p = nf.capture(proc.pid, seconds, backend="walker", hz=1000, progress=False, source_maps=False)
        finally:
            if saved is not None:
                lay.facts["code"] = saved
    finally:
        proc.kill()
        proc.wait()
    w = p.meta["walker"]
    n = max(w["samples"], 1)
    return dict(samples=w["samples"], us=w["walk_us_mean"], inlined=w.get("inlined_frames", 0) / n,
                code=w.get("code", {}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--majors", default="18,20,22,24")
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args(argv)
    print(f"# decode cost per sample, inline.js, {a.seconds:g} s at 1 kHz; load {os.getloadavg()[0]:.1f}")
    print("| node | expanded: us/sample | inlined frames/sample | unexpanded: us/sample | ratio | "
          "code lookups (fast / scans / cached / stale / not found) |")
    print("|---|---|---|---|---|---|")
    for major in a.majors.split(","):
        node = node_for(major) if hasattr(node_for, "__call__") else None
        on = one(node, a.seconds, True)
        off = one(node, a.seconds, False)
        c = on["code"]
        print(f"| {major} | {on['us']:.0f} | {on['inlined']:.2f} | {off['us']:.0f} | {on['us'] / off['us']:.2f} | "
              f"{c.get('fast', 0)} / {c.get('scans', 0)} / {c.get('cached', 0)} / {c.get('stale', 0)} / "
              f"{c.get('scan_failed', 0)} |", flush=True)


if __name__ == "__main__":
    main()
