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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

# a whole `nodeflame convert` in a child process, and what no conversion can go below: importing it
CONVERT = "import sys; from nodeflame.cli import main; sys.exit(main(sys.argv[1:]))"
STARTUP = "import nodeflame.cli"


# Runs one command and reports its own rusage.  A child's ru_maxrss is not its own peak alone: Linux
# carries the high-water mark of the memory a process had before exec() into what wait4() reports, and a
# child made by fork/vfork starts from its parent's.  Spawned straight from a benchmark that has generated
# a 400 MB input in-process (gen_profiles.ensure), every tool measured ~1.7 GB, perl and nodeflame alike.
# This small interpreter (python -S, ~10 MB, a fresh address space after its own exec) spawns the command
# instead, so the peak reported is the command's (at least the launcher's own ~9.5 MB: `perl -e 1` reads 9.45).
_MEASURE = r"""
import json, os, sys, time
cmd, out = json.loads(sys.argv[1]), sys.argv[2]
fd = os.open(out or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, fd, 1)])
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t
print(json.dumps([wall, ru.ru_maxrss, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status)]))
"""


def run(cmd, stdout_path=None) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (user + system) of one child process;
    raises on failure.  CPU time is the steadier figure on a busy machine.  The output file is
    opened (and truncated) off the command's clock."""
    import json
    proc = subprocess.run([sys.executable, "-S", "-c", _MEASURE, json.dumps(list(cmd)), stdout_path or ""],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {cmd[0]} failed ({proc.returncode}): {err[-500:]}")
    wall, maxrss_kb, cpu, rc = json.loads(proc.stdout.decode().splitlines()[-1])
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} failed ({rc}): {err[-500:]}")
    return wall, maxrss_kb / 1024.0, cpu


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
