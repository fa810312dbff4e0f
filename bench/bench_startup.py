"""Start-up of the command line (issue 12: ``nodeflame convert --help`` and a 1-line conversion <= 0.3 s).

    python bench/bench_startup.py [--repeat 5] [--before DIR]

Runs each command ``--repeat`` times, interleaved (one round = every command once, so a change in the
machine's load hits all of them alike), each a fresh process, and prints the median and minimum wall
and CPU (user + system, from the children's rusage) time per command, with the load average before
and after.  The baselines (the interpreter alone, + numpy, + pandas) say what the imports cost on this
machine in the same run.  ``--before DIR`` also runs the nodeflame commands on another copy of the
package (``DIR/nodeflame``, e.g. ``git archive COMMIT nodeflame | tar -x -C DIR``) through
``PYTHONPATH``, in the same rounds, and prints the ratios.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time



# a 1-line conversion in-process, then pandas imported: the process's CPU beyond the conversion's is what
# pandas would cost the conversion (and pandas must not have been loaded by it)
_THEN_PANDAS = """import sys
from nodeflame.cli import main
main(["convert", sys.argv[1], sys.argv[2]])
assert "pandas" not in sys.modules, "the conversion imported pandas"
import pandas
"""


def _cli() -> list[str]:
    exe = pathlib.Path(sys.executable).with_name("nodeflame")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nodeflame.cli"]


def run_once(argv: list[str], env: dict | None = None, cwd=None) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {r.stderr.decode(errors='replace')}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--before", metavar="DIR", help="a directory holding another nodeflame package to compare")
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="nodeflame-startup-"))
    one = tmp / "one-line.folded"
    one.write_text("main;work;parse 1\n")
    py, cli = sys.executable, _cli()
    mod = [py, "-m", "nodeflame.cli"]  # not the installed script: --before must reach its own package
    jobs = [
        ("python -c pass", [py, "-c", "pass"], None),
        ("python -c 'import numpy'", [py, "-c", "import numpy"], None),
        ("python -c 'import pandas'", [py, "-c", "import pandas"], None),
        ("python -c 'import nodeflame'", [py, "-c", "import nodeflame"], None),
        ("nodeflame convert --help", [*cli, "convert", "--help"], None),
        ("nodeflame convert one-line.folded out.svg", [*cli, "convert", str(one), str(tmp / "out.svg")], None),
        ("nodeflame convert one-line.folded out.folded", [*cli, "convert", str(one), str(tmp / "out.folded")], None),
        ("  the same, then import pandas (CPU of pandas)", [py, "-c", _THEN_PANDAS, str(one), str(tmp / "p.svg")],
         None),
    ]
    if args.before:
        before = os.path.abspath(args.before)
        if not os.path.isfile(os.path.join(before, "nodeflame", "__init__.py")):
            raise SystemExit(f"--before {before}: no nodeflame package there")
        env = dict(os.environ, PYTHONPATH=before)
        jobs += [
            ("python -m nodeflame.cli convert --help", [*mod, "convert", "--help"], None),
            ("  the same, --before (help)", [*mod, "convert", "--help"], env),
            ("python -m nodeflame.cli convert 1 line", [*mod, "convert", str(one), str(tmp / "m.svg")], None),
            ("  the same, --before (1 line)", [*mod, "convert", str(one), str(tmp / "b.svg")], env),
        ]
    times: dict[str, list[tuple[float, float]]] = {}
    load0 = os.getloadavg()
    for _ in range(args.repeat):
        for name, argv, env in jobs:
            times.setdefault(name, []).append(run_once(argv, env, cwd=tmp))  # outside the tree: -m looks in cwd
    load1 = os.getloadavg()
    print(f"load average {load0[0]:.1f} before, {load1[0]:.1f} after; {args.repeat} runs each, interleaved")
    print(f"{'':44s} {'wall median':>11s} {'(min)':>7s} {'CPU median':>11s} {'(min)':>7s}")
    med = {}
    for name, _, _ in jobs:
        w = [x[0] for x in times[name]]
        c = [x[1] for x in times[name]]
        med[name] = (statistics.median(w), statistics.median(c))
        print(f"{name:44s} {med[name][0]:10.3f}s {min(w):6.3f}s {med[name][1]:10.3f}s {min(c):6.3f}s")
    if args.before:
        for now, then in (("python -m nodeflame.cli convert --help", "  the same, --before (help)"),
                          ("python -m nodeflame.cli convert 1 line", "  the same, --before (1 line)")):
            b, a = med[then], med[now]
            print(f"{now}: --before / now = {b[0] / a[0]:.2f}x wall, {b[1] / a[1]:.2f}x CPU")
    svg = (tmp / "out.svg").read_text()
    assert svg.rstrip().endswith("</svg>") and "parse" in svg, "the conversion wrote no flame graph"


if __name__ == "__main__":
    main()
