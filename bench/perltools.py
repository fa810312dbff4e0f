"""What the benchmarks against FlameGraph's perl tools share: timing a whole child process, the
command line (the tool's path, --size, --repeat, --out, --keep) and the scratch directory.

Imported by bench_svg, bench_collapse and bench_perf_script (run as scripts from bench/, so this
module is found beside them); importing it puts the repository root on sys.path for nodeflame.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

# a whole `nodeflame convert` in a child process, and what no conversion can go below: importing it
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


def summarize(runs) -> tuple[float, float, float]:
    """Several :func:`run` results as one, in its order: the median wall seconds, the largest peak RSS (MB)
    and the median CPU seconds."""
    import statistics
    return (statistics.median(r[0] for r in runs), max(r[1] for r in runs), statistics.median(r[2] for r in runs))


def load_average() -> str:
    """The 1-minute load average, for the printed results (a benchmark on a shared machine)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


@contextlib.contextmanager
def scratch(prefix: str, keep: bool, kept: str):
    """A temporary directory for the outputs, removed afterwards unless ``keep`` (then its path is
    printed, naming what is in it: ``kept``)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield tmp
    finally:
        if keep:
            print(f"\n{kept} kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


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
    good = True
    with scratch(prefix, a.keep, kept) as tmp:
        for size in (("small", "large") if a.size == "all" else (a.size,)):
            good &= bool(ok(bench_size(size, a.tool, max(a.repeat, 1), a.out, tmp)))
    return 0 if good else 1
