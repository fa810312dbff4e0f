"""Benchmark: folded stacks -> interactive SVG flame graph, against FlameGraph's flamegraph.pl.

On the generated Node-like folded profiles of bench/gen_profiles.py (``small``:
1 M samples over 20 k distinct stacks; ``large``: 10 M samples over 200 k),
in the same run and on the same input file:

- ``flamegraph.pl IN > OUT``            whole process (perl), wall time and peak RSS
- ``nodeflame convert IN OUT.svg``      whole process (python start-up and imports included)
- in-process: ``nodeflame.read`` and the SVG writer alone (``render_svg``), best of the repeats

and the ratios flamegraph.pl / nodeflame.  FlameGraph is not part of nodeflame:
fetch it yourself (``git clone https://github.com/brendangregg/FlameGraph``) and pass
the path of its flamegraph.pl.

Usage: python bench/bench_svg.py PATH/TO/flamegraph.pl [--size small|large|all] [--repeat 3]
       [--out DIR] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import gen_profiles  # noqa: E402

CONVERT = "import sys; from nodeflame.cli import main; sys.exit(main(sys.argv[1:]))"
STARTUP = "import nodeflame.cli"


def run(cmd, stdout_path=None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one child process;
    raises on failure.  CPU time is the steadier figure on a busy machine."""
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    try:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    finally:
        if stdout_path:
            out.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err[-500:]}")
    return wall, ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime


def count_frames(path: str) -> int:
    with open(path, "rb") as fh:
        return fh.read().count(b"<title>")


def bench_size(size: str, fg: str, repeat: int, out_dir: str, tmp: str) -> dict:
    src = gen_profiles.ensure(size, out_dir)
    mb = os.path.getsize(src) / 1e6
    print(f"\n== {size}: {os.path.basename(src)} ({mb:.1f} MB)", flush=True)
    res = {}
    fg_out, nf_out = os.path.join(tmp, f"fg-{size}.svg"), os.path.join(tmp, f"nf-{size}.svg")
    fg_runs = [run(["perl", fg, src], fg_out) for _ in range(repeat)]
    nf_runs = [run([sys.executable, "-c", CONVERT, "convert", src, nf_out]) for _ in range(repeat)]
    res["fg_s"], res["fg_mb"] = min(r[0] for r in fg_runs), max(r[1] for r in fg_runs)
    res["nf_s"], res["nf_mb"] = min(r[0] for r in nf_runs), max(r[1] for r in nf_runs)
    res["fg_cpu"], res["nf_cpu"] = min(r[2] for r in fg_runs), min(r[2] for r in nf_runs)
    # what no conversion can go below: the interpreter importing nodeflame (numpy, pandas)
    st_runs = [run([sys.executable, "-c", STARTUP]) for _ in range(repeat)]
    res["start_s"], res["start_cpu"] = min(r[0] for r in st_runs), min(r[2] for r in st_runs)

    import nodeflame as nf
    from nodeflame.writers.svg import render_svg
    reads, writes, wcpu = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        p = nf.read(src)  # a fresh profile each time: no cached call tree
        reads.append(time.perf_counter() - t)
        t, c = time.perf_counter(), time.process_time()
        svg = render_svg(p)
        writes.append(time.perf_counter() - t)
        wcpu.append(time.process_time() - c)
    res["read_s"], res["svg_s"], res["svg_cpu"] = min(reads), min(writes), min(wcpu)
    res["svg_bytes"], res["fg_bytes"] = len(svg.encode("utf-8")), os.path.getsize(fg_out)
    res["nf_frames"], res["fg_frames"] = count_frames(nf_out), count_frames(fg_out)

    print(f"flamegraph.pl           {res['fg_s']:8.2f} s ({res['fg_cpu']:.2f} s cpu)  {res['fg_mb']:7.0f} MB peak  "
          f"{res['fg_bytes'] / 1e6:6.1f} MB svg, {res['fg_frames']} frames")
    print(f"nodeflame convert       {res['nf_s']:8.2f} s ({res['nf_cpu']:.2f} s cpu)  {res['nf_mb']:7.0f} MB peak  "
          f"{res['svg_bytes'] / 1e6:6.1f} MB svg, {res['nf_frames']} frames")
    print(f"  in-process: read {res['read_s']:.3f} s, svg writer {res['svg_s']:.3f} s ({res['svg_cpu']:.3f} s cpu)")
    print(f"  start-up alone (python -c 'import nodeflame.cli'): {res['start_s']:.2f} s ({res['start_cpu']:.2f} s cpu)"
          f" = flamegraph.pl / {res['fg_s'] / res['start_s']:.1f} wall, / {res['fg_cpu'] / max(res['start_cpu'], 1e-9):.1f} cpu")
    print(f"ratio (whole process)   {res['fg_s'] / res['nf_s']:8.1f}x faster wall, "
          f"{res['fg_cpu'] / res['nf_cpu']:.1f}x cpu, "
          f"peak memory {res['nf_mb'] / res['fg_mb']:.2f} of flamegraph.pl's")
    print(f"ratio (svg writer only) {res['fg_s'] / res['svg_s']:8.1f}x wall, {res['fg_cpu'] / res['svg_cpu']:.1f}x cpu "
          "(flamegraph.pl whole process vs the writer given a read Profile)")
    return res


def tool_main(argv, *, doc, tool, env, kept, prefix, bench_size, ok=lambda res: True) -> int:
    """The command line of a benchmark against one of FlameGraph's perl tools (bench_svg, bench_collapse):
    the tool's path, --size, --repeat, --out, --keep; ``bench_size`` runs one size, ``ok`` judges its
    result (exit status 1 when one is not ok)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("tool", nargs="?", default=os.environ.get(env, f"/tmp/{tool}"), metavar=tool,
                    help=f"path of FlameGraph's {tool} (default ${env} or /tmp/{tool})")
    ap.add_argument("--size", choices=("small", "large", "all"), default="small")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="where generated profiles are cached")
    ap.add_argument("--keep", action="store_true", help=f"keep the {kept} written (prints where)")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.tool):
        print(f"{tool} not found at {a.tool}: clone brendangregg/FlameGraph and pass its path", file=sys.stderr)
        return 2
    if shutil.which("perl") is None:
        print("perl not found", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix=prefix)
    good = True
    try:
        for size in (("small", "large") if a.size == "all" else (a.size,)):
            good &= bool(ok(bench_size(size, a.tool, max(a.repeat, 1), a.out, tmp)))
    finally:
        if a.keep:
            print(f"\n{kept} kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if good else 1


def main(argv=None) -> int:
    return tool_main(argv, doc=__doc__, tool="flamegraph.pl", env="FLAMEGRAPH_PL", kept="SVGs",
                     prefix="nodeflame-bench-svg-", bench_size=bench_size)


if __name__ == "__main__":
    sys.exit(main())
