"""Benchmark: folded stacks -> interactive SVG flame graph, against FlameGraph's flamegraph.pl.

On the generated Node-like folded profiles of bench/gen_profiles.py (``small``:
1 M samples over 20 k distinct stacks; ``large``: 10 M samples over 200 k),
in the same run and on the same input file:

- ``flamegraph.pl IN > OUT``            whole process (perl), wall time and peak RSS
- ``nodeflame convert IN OUT.svg``      whole process (python start-up and imports included)
- in-process: ``nodeflame.read`` and the SVG writer alone (``render_svg``)

both sides interleaved, medians of the repeats (peak memory: the largest), the ratios
flamegraph.pl / nodeflame of wall and CPU time, and the load average before and after.  The
two SVGs are checked to draw the same frames: every frame's name and sample count, as their
tooltips say, the same in both once nodeflame's "other (N frames)" nodes are set aside (frames
narrower than 0.1 px, which flamegraph.pl leaves out and nodeflame merges per parent).  A
one-line conversion is timed beside them: the fixed cost of the job (imports), against which
the rest is the conversion's own.

FlameGraph is not part of nodeflame: fetch it yourself (``git clone
https://github.com/brendangregg/FlameGraph``) and pass the path of its flamegraph.pl.

Usage: python bench/bench_svg.py PATH/TO/flamegraph.pl [--size small|large|all] [--repeat 3]
       [--out DIR] [--keep]
"""
from __future__ import annotations

import collections
import html
import os
import re
import statistics
import sys
import time

import gen_profiles
from perltools import CONVERT, STARTUP, load_average, run, summarize, tool_main

_TITLE = re.compile(r"<title>(.*?) \(([\d,]+) samples?, [\d.]+%\)</title>")


def drawn_frames(path: str) -> collections.Counter:
    """(name, samples) of every frame an SVG draws, from the tooltips (the same form in both)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    return collections.Counter((html.unescape(m.group(1)), int(m.group(2).replace(",", "")))
                               for m in _TITLE.finditer(text))


def same_frames(fg_svg: str, nf_svg: str) -> tuple[bool, int, int]:
    fg, nf = drawn_frames(fg_svg), drawn_frames(nf_svg)
    others = collections.Counter({k: v for k, v in nf.items() if re.fullmatch(r"other \(\d+ frames\)", k[0])})
    return nf - others == fg, sum(fg.values()), sum(nf.values())


def bench_size(size: str, fg: str, repeat: int, out_dir: str, tmp: str) -> dict:
    src = gen_profiles.ensure(size, out_dir)
    mb = os.path.getsize(src) / 1e6
    load0 = load_average()
    print(f"\n== {size}: {os.path.basename(src)} ({mb:.1f} MB), load average {load0}", flush=True)
    res = {}
    fg_out, nf_out = os.path.join(tmp, f"fg-{size}.svg"), os.path.join(tmp, f"nf-{size}.svg")
    tiny, tiny_out = os.path.join(tmp, "one-line.folded"), os.path.join(tmp, "one-line.svg")
    with open(tiny, "w") as fh:
        fh.write("main;a 1\n")
    fg_runs, nf_runs, st_runs, one_runs = [], [], [], []
    for _ in range(repeat):  # interleaved: both sides see the same load
        fg_runs.append(run(["perl", fg, src], fg_out))
        nf_runs.append(run([sys.executable, "-c", CONVERT, "convert", src, nf_out]))
        # what no conversion can go below: the interpreter importing nodeflame.cli, and a whole
        # conversion of a one-line file (every import the job needs: numpy, pandas, pyarrow, ...)
        st_runs.append(run([sys.executable, "-c", STARTUP]))
        one_runs.append(run([sys.executable, "-c", CONVERT, "convert", tiny, tiny_out]))
    med = statistics.median
    res["fg_s"], res["fg_mb"], res["fg_cpu"] = summarize(fg_runs)
    res["nf_s"], res["nf_mb"], res["nf_cpu"] = summarize(nf_runs)
    res["start_s"], _, res["start_cpu"] = summarize(st_runs)
    res["one_s"], _, res["one_cpu"] = summarize(one_runs)
    res["same"], res["fg_frames"], res["nf_frames"] = same_frames(fg_out, nf_out)

    import nodeflame as nf
    from nodeflame.frames.formats import _bulk_memory
    from nodeflame.writers.svg import render_svg
    reads, rcpu, writes, wcpu = [], [], [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        p = nf.read(src)  # a fresh profile each time: no cached call tree
        reads.append(time.perf_counter() - t)
        rcpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        with _bulk_memory():  # as nodeflame convert writes
            svg = render_svg(p)
        writes.append(time.perf_counter() - t)
        wcpu.append(time.process_time() - c)
        del p
    res["read_s"], res["read_cpu"], res["svg_s"], res["svg_cpu"] = med(reads), med(rcpu), med(writes), med(wcpu)
    res["svg_bytes"], res["fg_bytes"] = len(svg.encode("utf-8")), os.path.getsize(fg_out)
    res["load"] = (load0, load_average())

    print(f"flamegraph.pl           {res['fg_s']:8.2f} s ({res['fg_cpu']:.2f} s cpu)  {res['fg_mb']:7.0f} MB peak  "
          f"{res['fg_bytes'] / 1e6:6.1f} MB svg, {res['fg_frames']} frames")
    print(f"nodeflame convert       {res['nf_s']:8.2f} s ({res['nf_cpu']:.2f} s cpu)  {res['nf_mb']:7.0f} MB peak  "
          f"{res['svg_bytes'] / 1e6:6.1f} MB svg, {res['nf_frames']} frames")
    print(f"  frames: {'the same names and counts' if res['same'] else 'DIFFERENT'} "
          "(nodeflame's 'other' nodes set aside)")
    print(f"  in-process: read {res['read_s']:.3f} s ({res['read_cpu']:.3f} s cpu), "
          f"svg writer {res['svg_s']:.3f} s ({res['svg_cpu']:.3f} s cpu)")
    print(f"  start-up alone (python -c 'import nodeflame.cli'): {res['start_s']:.2f} s ({res['start_cpu']:.2f} s cpu)"
          f"; a one-line file -> SVG: {res['one_s']:.2f} s ({res['one_cpu']:.2f} s cpu) = flamegraph.pl / "
          f"{res['fg_s'] / res['one_s']:.1f} wall, / {res['fg_cpu'] / max(res['one_cpu'], 1e-9):.1f} cpu; "
          f"beyond it: {res['nf_s'] - res['one_s']:.2f} s ({res['nf_cpu'] - res['one_cpu']:.2f} s cpu)")
    print(f"ratio (whole process, medians of {repeat}) {res['fg_s'] / res['nf_s']:6.1f}x faster wall, "
          f"{res['fg_cpu'] / res['nf_cpu']:.1f}x cpu, "
          f"peak memory {res['nf_mb'] / res['fg_mb']:.2f} of flamegraph.pl's; load average {load0} -> {res['load'][1]}")
    print(f"ratio (svg writer only) {res['fg_s'] / res['svg_s']:8.1f}x wall, {res['fg_cpu'] / res['svg_cpu']:.1f}x cpu "
          "(flamegraph.pl whole process vs the writer given a read Profile)")
    return res


def main(argv=None) -> int:
    return tool_main(argv, doc=__doc__, tool="flamegraph.pl", env="FLAMEGRAPH_PL", kept="SVGs",
                     prefix="nodeflame-bench-svg-", bench_size=bench_size, ok=lambda res: res["same"])


if __name__ == "__main__":
    sys.exit(main())
