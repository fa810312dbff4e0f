"""Benchmark: ``perf script`` output -> folded, against FlameGraph's stackcollapse-perf.pl.

The input is generated from the stacks of bench/gen_profiles.py's ``small``
profile (20 k distinct Node-like stacks, mean depth about 40): ``--samples``
samples (default 100 k) drawn with the profile's counts as weights, each
written as ``perf script`` prints a sample of ``perf record -g`` on a node
started with ``--perf-basic-prof``: a header without a period (``node
4242/4242 [001] 12.345678: cpu-clock:``), its frames leaf first (JS frames in
``/tmp/perf-4242.map`` as ``JS:*name file:line``, V8 builtins and C++ in the
node binary, kernel frames in ``[kernel.kallsyms]``), a blank line.  In the
same run and on the same file:

- ``stackcollapse-perf.pl --jit IN > OUT``                    whole process (perl)
- ``nodeflame.read(IN).write(OUT, format='folded', thread_root=True)``  whole process
- ``nodeflame.read IN`` alone in a process (the reader's share: wall, CPU, peak RSS)
- in-process: ``nodeflame.read`` and the folded writer alone (writing the file)
- ``python -c 'import numpy, pyarrow, pyarrow.compute'``: the memory floor of any process reading this way

Both outputs are checked to hold the same stacks with the same counts once
stackcollapse-perf.pl's ``_[j]``/``_[k]`` marks are taken off (the folded
writer puts the thread's comm first, as stackcollapse-perf.pl does).

Usage: python bench/bench_perf_script.py PATH/TO/stackcollapse-perf.pl [--samples 100000] [--repeat 3]
       [--out DIR] [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time

import numpy as np

from perltools import HERE, run, scratch, summarize  # puts the repository root on sys.path
import gen_profiles  # after perltools
from bench_collapse import folded_counts

TO_FOLDED = ("import sys, warnings; warnings.simplefilter('ignore'); import nodeflame as nf; "
             "nf.read(sys.argv[1], format='perf').write(sys.argv[2], format='folded', thread_root=True)")
READ_ONLY = ("import sys, warnings; warnings.simplefilter('ignore'); import nodeflame as nf; "
             "nf.read(sys.argv[1], format='perf')")
FLOOR = "import numpy, pyarrow, pyarrow.compute"   # what reading perf script output loads
KERNEL = {f for tail in gen_profiles.KERNEL_TAILS for f in tail}
_JS = re.compile(r"^\S+ (?:node:|/)\S*:\d+$")


def _frame_line(name: str, i: int) -> str:
    if name.startswith("("):  # V8's (garbage collector), (idle), (program): perf sees C++ there
        name = "v8_" + name.strip("()").replace(" ", "_")
    if name in KERNEL:
        return f"\tffffffff81{i:06x} {name}+0x1f ([kernel.kallsyms])\n"
    if _JS.match(name):
        return f"\t    3a8e1c{i:06x} JS:*{name} (/tmp/perf-4242.map)\n"
    return f"\t    55d0a2{i:06x} {name}+0x{(i * 7) % 4096:x} (/usr/bin/node)\n"


def ensure_perf(samples: int, out_dir: str, seed: int = 1) -> str:
    """Path of the generated perf script (cached)."""
    src = gen_profiles.ensure("small", out_dir)
    path = os.path.join(out_dir, f"node-perf-{samples // 1000}k-s{seed}.perf")
    if os.path.exists(path):
        return path
    stacks, counts = [], []
    with open(src, encoding="utf-8") as fh:
        for ln in fh:
            st, _, c = ln.rstrip("\n").rpartition(" ")
            stacks.append(st.split(";"))
            counts.append(int(c))
    ids: dict = {}
    blocks = []
    for st in stacks:  # leaf first
        blocks.append("".join(_frame_line(f, ids.setdefault(f, len(ids))) for f in reversed(st)))
    rng = np.random.default_rng(seed)
    w = np.asarray(counts, np.float64)
    pick = rng.choice(len(stacks), size=samples, p=w / w.sum())
    tids = rng.choice([4242, 4242, 4242, 4251, 4252], size=samples)
    tmp = path + ".part"
    t = 184694.0
    with open(tmp, "w", encoding="utf-8") as out:
        for k, (s, tid) in enumerate(zip(pick.tolist(), tids.tolist())):
            t += 0.001
            out.write(f"node {4242}/{tid} [{k % 2:03d}] {t:.6f}: cpu-clock: \n")
            out.write(blocks[s])
            out.write("\n")
    os.replace(tmp, path)
    return path


def strip_marks(path: str) -> str:
    out = path + ".plain"
    with open(path, "rb") as fh, open(out, "wb") as o:
        for ln in fh:
            o.write(re.sub(rb"_\[[jk]\]", b"", ln))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tool", nargs="?", default=os.environ.get("STACKCOLLAPSE_PERF_PL", "/tmp/stackcollapse-perf.pl"))
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.tool) or shutil.which("perl") is None:
        print(f"stackcollapse-perf.pl not found at {a.tool} (or no perl): clone brendangregg/FlameGraph",
              file=sys.stderr)
        return 2
    src = ensure_perf(a.samples, a.out)
    print(f"== {os.path.basename(src)} ({os.path.getsize(src) / 1e6:.1f} MB, {a.samples} samples), "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with scratch("nodeflame-bench-perf-", a.keep, "outputs") as tmp:
        sc_out, nf_out = os.path.join(tmp, "sc.folded"), os.path.join(tmp, "nf.folded")
        sc_runs, nf_runs = [], []
        for _ in range(max(a.repeat, 1)):  # interleaved: both see the same load
            sc_runs.append(run(["perl", a.tool, "--jit", src], sc_out))
            nf_runs.append(run([sys.executable, "-c", TO_FOLDED, src, nf_out]))
        med = lambda xs: float(np.median(xs))  # noqa: E731
        sc_s, sc_mb, sc_cpu = summarize(sc_runs)
        nf_s, nf_mb, nf_cpu = summarize(nf_runs)
        same = folded_counts(strip_marks(sc_out)) == folded_counts(nf_out)
        ro = [run([sys.executable, "-c", READ_ONLY, src]) for _ in range(max(a.repeat, 1))]
        ro_s, ro_mb, ro_cpu = summarize(ro)

        # the memory floor: an interpreter with the libraries the reader and writer load, doing nothing
        fl = [run([sys.executable, "-c", FLOOR]) for _ in range(max(a.repeat, 1))]
        fl_s, fl_mb, fl_cpu = summarize(fl)

        import warnings
        import nodeflame as nf
        reads, writes = [], []
        for _ in range(max(a.repeat, 1)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c = time.process_time()
                p = nf.read(src, format="perf")
                reads.append(time.process_time() - c)
            c = time.process_time()
            p.write(nf_out, format="folded", thread_root=True)  # into a file, as the whole process does
            writes.append(time.process_time() - c)
        print(f"  runs (wall s, peak MB, cpu s): perl {[tuple(round(x, 2) for x in r) for r in sc_runs]}")
        print(f"                                 nodeflame {[tuple(round(x, 2) for x in r) for r in nf_runs]}")
        print(f"  load average after: {os.getloadavg()[0]:.1f}")
        print(f"stackcollapse-perf.pl --jit {sc_s:8.2f} s ({sc_cpu:.2f} s cpu)  {sc_mb:7.0f} MB peak")
        print(f"nodeflame read+write        {nf_s:8.2f} s ({nf_cpu:.2f} s cpu)  {nf_mb:7.0f} MB peak")
        print(f"  a process that only reads: {ro_s:.2f} s ({ro_cpu:.2f} s cpu), {ro_mb:.0f} MB peak")
        print(f"  in-process (cpu, median): read {med(reads):.3f} s, folded writer {med(writes):.3f} s")
        print(f"  floor: python -c '{FLOOR}': {fl_mb:.0f} MB peak ({fl_cpu:.2f} s cpu) = "
              f"{fl_mb / sc_mb:.2f} of stackcollapse-perf.pl's")
        print(f"  outputs: {'the same stacks and counts' if same else 'DIFFERENT'}")
        print(f"ratio (whole process, medians of {max(a.repeat, 1)}) {sc_s / nf_s:6.1f}x faster wall, "
              f"{sc_cpu / nf_cpu:.1f}x cpu, peak memory {nf_mb / sc_mb:.2f} of stackcollapse-perf.pl's")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
