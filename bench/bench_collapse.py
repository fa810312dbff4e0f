"""Benchmark: raw stacks -> folded, against FlameGraph's stackcollapse.pl.

The raw inputs are the generated Node-like profiles of bench/gen_profiles.py
(``small``: 1 M samples over 20 k distinct stacks; ``large``: 10 M samples over
200 k, mean depth about 40) written with nodeflame's own raw writer (frames
one per line, leaf first, a count line, a blank line between stacks: what
torch and DTrace/SystemTap ``ustack()`` aggregations print).  In the same run
and on the same input file:

- ``stackcollapse.pl IN > OUT``           whole process (perl): wall, CPU (user + system), peak RSS
- ``nodeflame convert IN OUT.folded``     whole process (python start-up and imports included)
- ``nodeflame.read IN`` alone in a process (the reader's share of the whole: wall, CPU, peak RSS)
- in-process: ``nodeflame.read`` of the raw file and the folded writer alone (writing the file)

and the ratios stackcollapse.pl / nodeflame (medians of the runs, the two sides
interleaved; peak memory the largest of the runs; the load average is printed).  Both outputs are checked to hold
the same stacks with the same counts.  FlameGraph is not part of nodeflame:
fetch it yourself (``git clone https://github.com/brendangregg/FlameGraph``) and
pass the path of its stackcollapse.pl.

Usage: python bench/bench_collapse.py PATH/TO/stackcollapse.pl [--size small|large|all] [--repeat 3]
       [--out DIR] [--keep]
"""
from __future__ import annotations

import os
import sys
import time

from perltools import CONVERT, STARTUP, run, summarize, tool_main  # puts the repository root on sys.path
import gen_profiles  # after perltools


READ_ONLY = "import sys, warnings; warnings.simplefilter('ignore'); import nodeflame as nf; nf.read(sys.argv[1])"


def _med(xs) -> float:
    import statistics
    return statistics.median(list(xs))


def ensure_raw(size: str, out_dir: str) -> str:
    """The raw file of the generated profile ``size`` (written by nodeflame's raw writer), cached."""
    src = gen_profiles.ensure(size, out_dir)
    path = os.path.splitext(src)[0] + ".raw"
    if not os.path.exists(path):
        import nodeflame as nf
        tmp = path + ".part"
        nf.read(src).write(tmp, format="raw")
        os.replace(tmp, path)
    return path


def folded_counts(path: str) -> dict:
    """stack text -> count of a folded file (lines with the same stack summed)."""
    out: dict = {}
    with open(path, "rb") as fh:
        for ln in fh:
            st, _, c = ln.rstrip(b"\r\n").rpartition(b" ")
            out[st] = out.get(st, 0) + int(c)
    return out


def bench_size(size: str, sc: str, repeat: int, out_dir: str, tmp: str) -> dict:
    src = ensure_raw(size, out_dir)
    mb = os.path.getsize(src) / 1e6
    print(f"\n== {size}: {os.path.basename(src)} ({mb:.1f} MB), load average {os.getloadavg()[0]:.1f}", flush=True)
    res = {}
    sc_out, nf_out = os.path.join(tmp, f"sc-{size}.folded"), os.path.join(tmp, f"nf-{size}.folded")
    sc_runs, nf_runs = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine load
        # each writes a new file: stackcollapse.pl's output is opened (truncated) by this process,
        # so nodeflame's previous 400 MB output is removed here too, not truncated on its clock
        for f in (sc_out, nf_out):
            if os.path.exists(f):
                os.unlink(f)
        sc_runs.append(run(["perl", sc, src], sc_out))
        nf_runs.append(run([sys.executable, "-c", CONVERT, "convert", src, nf_out]))
    # medians of the runs (peak memory: the largest)
    res["sc_s"], res["sc_mb"], res["sc_cpu"] = summarize(sc_runs)
    res["nf_s"], res["nf_mb"], res["nf_cpu"] = summarize(nf_runs)
    # the reader's share of the whole process: a process that only reads (imports included)
    rd_runs = [run([sys.executable, "-c", READ_ONLY, src]) for _ in range(repeat)]
    res["ro_s"], res["ro_mb"], res["ro_cpu"] = summarize(rd_runs)
    st_runs = [run([sys.executable, "-c", STARTUP]) for _ in range(repeat)]  # the floor: importing nodeflame
    res["start_s"], _, res["start_cpu"] = summarize(st_runs)
    a, b = folded_counts(sc_out), folded_counts(nf_out)
    res["same"] = a == b
    res["stacks"] = len(a)

    import nodeflame as nf
    reads, rcpu, writes, wcpu = [], [], [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        p = nf.read(src)
        reads.append(time.perf_counter() - t)
        rcpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        p.write(nf_out, format="folded")  # into a file, as `nodeflame convert` does (not a str in memory)
        writes.append(time.perf_counter() - t)
        wcpu.append(time.process_time() - c)
    res["read_s"], res["read_cpu"], res["write_s"], res["write_cpu"] = _med(reads), _med(rcpu), _med(writes), _med(wcpu)

    print(f"  runs (wall s, peak MB, cpu s): stackcollapse.pl {[tuple(round(x, 2) for x in r) for r in sc_runs]}")
    print(f"                                 nodeflame        {[tuple(round(x, 2) for x in r) for r in nf_runs]}")
    print(f"  load average after: {os.getloadavg()[0]:.1f}; medians of {repeat}:")
    print(f"stackcollapse.pl        {res['sc_s']:8.2f} s ({res['sc_cpu']:.2f} s cpu)  {res['sc_mb']:7.0f} MB peak")
    print(f"nodeflame convert       {res['nf_s']:8.2f} s ({res['nf_cpu']:.2f} s cpu)  {res['nf_mb']:7.0f} MB peak")
    print(f"  a process that only reads: {res['ro_s']:.2f} s ({res['ro_cpu']:.2f} s cpu), {res['ro_mb']:.0f} MB peak")
    print(f"  in-process: read {res['read_s']:.3f} s ({res['read_cpu']:.3f} s cpu), "
          f"folded writer {res['write_s']:.3f} s ({res['write_cpu']:.3f} s cpu)")
    print(f"  start-up alone (python -c 'import nodeflame.cli'): {res['start_s']:.2f} s ({res['start_cpu']:.2f} s cpu)"
          f" = stackcollapse.pl / {res['sc_s'] / res['start_s']:.1f} wall, / {res['sc_cpu'] / max(res['start_cpu'], 1e-9):.1f} cpu")
    print(f"  outputs: {res['stacks']} stacks, {'the same stacks and counts' if res['same'] else 'DIFFERENT'}")
    print(f"ratio (whole process)   {res['sc_s'] / res['nf_s']:8.1f}x faster wall, "
          f"{res['sc_cpu'] / res['nf_cpu']:.1f}x cpu, peak memory {res['nf_mb'] / res['sc_mb']:.2f} of "
          "stackcollapse.pl's")
    return res


def main(argv=None) -> int:
    return tool_main(argv, doc=__doc__, tool="stackcollapse.pl", env="STACKCOLLAPSE_PL", kept="folded files",
                     prefix="nodeflame-bench-collapse-", bench_size=bench_size, ok=lambda res: res["same"])


if __name__ == "__main__":
    sys.exit(main())
