"""Benchmark of the notebook explorer on a 1 M-sample profile with 20 k distinct stacks.

    .venv/bin/python bench/bench_widgets.py [--repeat 3] [--json out.json]
    .venv/bin/python bench/bench_widgets.py --compare OLD_TREE [--rounds 3]   # before/after, side by side

``--compare DIR`` measures the controls of this checkout and of the nodeflame in DIR (for instance
``git archive <commit> nodeflame | tar -x -C DIR``) in fresh interpreters one after the other, the
order alternating, and prints both; ``--tree DIR`` runs everything on DIR's nodeflame.

Goals (issue 5): first render < 2 s, a control change < 200 ms, < 2 MB sent to
the browser.  Last, the first explorer of a fresh interpreter (imports, read,
explorer and bundle; the number a new kernel's first ``p.flame()`` costs on the
kernel's side), with plotly's compressed front end cached and with an empty cache.  Two shapes of the same profile are measured:

- ``folded``: bench/gen_profiles.py's node-1m-20k (1,000,000 samples as
  20,000 weighted stack rows, ~349 k stack prefixes, 1,723 functions);
- ``timed``: the same stacks expanded to 1,000,000 timed sample rows over
  10 s of two threads (what a long cpuprofile or live capture gives),
  which also draws the timeline.

"First render" = ``p.flame()`` + the display bundle (``_repr_mimebundle_``)
from a profile just read (no derived views cached).  "Sent" = every byte the
widgets put on the comm channel (the comm_open states and messages, JSON plus
binary buffers, recorded by replacing ``comm.create_comm``) plus the display
bundle itself; plotly's FigureWidget front-end code (its anywidget ``_esm``,
~5 MB, identical for every FigureWidget of every library) is reported apart
as ``frontend_code_bytes``.  Each control change starts from cold caches for the new
transform list: its profile, layout, node colours, search matches and timeline are computed
afresh (the explorer caches earlier lists, so undo and breadcrumbs are cheaper than what is
measured here).  What the explorer keeps of the profile it was opened on (the unsliced
aggregate of a timed profile, the stack table's Euler tour and recursion flags, computed by
the first render) and of the view before the change (a timeline whose samples keep their leaf
kinds is reused) is kept, as in a live session.  "chart" is the time until the chart's
update has been sent (since session 18 with the timeline strip, which is in the same figure
and goes in the same message); "all panes" adds the details and top table,
which a live kernel computes after the chart has gone out; "cpu" is the
process CPU time of the whole change (the wall clock on a shared machine
is mostly waiting for a core).  "plotly messages" counts the chart's
``_py2js_*`` messages of a change: the browser redraws the whole figure for each.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


class Recorder:
    """Counts the bytes the widgets send to the front end."""

    def __init__(self):
        self.bytes = 0
        self.messages = 0
        self.bundle_bytes = 0   # front-end code (anywidget _esm/_css), counted apart from the data
        self.figure_messages = 0   # plotly messages (_py2js_restyle/relayout/update...): a browser draw each

    def install(self):
        import comm
        from comm import DummyComm
        rec = self

        class RecordingComm(DummyComm):
            def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
                rec.messages += 1
                data = dict(data or {})
                state = data.get("state")
                if isinstance(state, dict):
                    rec.figure_messages += sum(1 for k, v in state.items() if k.startswith("_py2js_") and v is not None)
                if isinstance(state, dict) and ("_esm" in state or "_css" in state):
                    state = dict(state)
                    for k in ("_esm", "_css"):
                        v = state.pop(k, None)
                        if isinstance(v, str):
                            rec.bundle_bytes += len(v.encode("utf-8"))
                    data["state"] = state
                rec.bytes += len(json.dumps(data, default=str, separators=(",", ":")))
                rec.bytes += sum(memoryview(b).nbytes for b in (buffers or []))

        comm.create_comm = lambda *a, **k: RecordingComm(*a, **k)
        import ipywidgets.widgets.widget as wmod
        if hasattr(wmod, "comm"):
            wmod.comm.create_comm = comm.create_comm

    def take(self):
        b, m = self.bytes, self.messages
        self.bytes = self.messages = 0
        return b, m

    def take_figure_messages(self):
        n, self.figure_messages = self.figure_messages, 0
        return n

    def take_bundle(self):
        b, self.bundle_bytes = self.bundle_bytes, 0
        return b


def load_profiles():
    import gen_profiles
    import nodeflame as nf
    from nodeflame.frames.profile import Profile
    path = gen_profiles.ensure("small", os.path.join(HERE, "out"))
    p = nf.read(path)
    # the same stacks as 1 M timed samples over 10 s of two threads
    rng = np.random.default_rng(1)
    w = p.samples["weight"].to_numpy()
    stacks = np.repeat(p.samples["stack"].to_numpy(), w)
    rng.shuffle(stacks)
    n = len(stacks)
    times = np.sort(rng.integers(0, 10_000_000_000, n)) + 1_000_000_000
    threads = np.where(rng.random(n) < 0.8, "main", "worker-1")
    import pandas as pd
    samples = pd.DataFrame({"stack": stacks, "time_ns": times, "weight": np.ones(n, np.int64),
                            "thread": pd.Categorical(threads)})
    meta = dict(p.meta, timed=True, source_format="bench")
    timed = Profile(p.funcs, p.frames, p.stacks, samples, meta, validate=False)
    return p, timed


def fresh(p):
    """The same profile with no derived views cached (as just read)."""
    return p.copy()   # a new Profile: nothing derived is cached yet


def timeit(fn, repeat):
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out), out


def bench_profile(label, p, repeat, rec):
    import nodeflame.widgets as wg
    res = {"profile": label, "samples": int(p.total), "rows": len(p.samples), "stacks": len(p.stacks),
           "funcs": len(p.funcs)}

    def first():
        q = fresh(p)
        rec.take()
        rec.take_bundle()
        e = wg.explorer(q)
        bundle = e._repr_mimebundle_()
        sent, _ = rec.take()
        sent += sum(len(v if isinstance(v, str) else json.dumps(v)) for v in bundle.values())
        first.result = (e, sent, bundle, rec.take_bundle())

    c0 = time.process_time()
    med, allt = timeit(first, repeat)
    res["first_render_cpu_s"] = round((time.process_time() - c0) / repeat, 3)
    e, sent, bundle, code_bytes = first.result
    res["first_render_s"] = round(med, 3)
    res["first_render_runs_s"] = [round(x, 3) for x in allt]
    res["first_sent_bytes"] = sent
    res["frontend_code_bytes"] = code_bytes
    res["static_html_bytes"] = len(bundle["text/html"])
    res["nodes"] = len(e.layout_table)
    heavy = e.profile.top(3).index[0]
    heavy_pat = "^" + __import__("re").escape(str(e.profile.func_labels()[heavy])) + "$"
    controls = [
        ("search", lambda: e.search("Builtins_"), lambda: e.search("")),
        # the same with the node colours recomputed, as before they were cached per view
        ("search, colours uncached", lambda: (e.state._ncolors.clear(), e.search("Builtins_")),
         lambda: e.search("")),
        ("colour by package", lambda: e.set_view(color="package"), lambda: e.set_view(color="kind")),
        ("icicle orientation", lambda: e.set_view(orientation="icicle"), lambda: e.set_view(orientation="flame")),
        ("click (details)", lambda: e.select("5"), lambda: e.select(func=-1)),
        ("min width 0.1 %", lambda: e.set_view(minwidth=1e-3), lambda: e.set_view(minwidth=None)),
        ("invert", lambda: e.set_view(inverted=True), lambda: e.set_view(inverted=False)),
        ("focus (heaviest function)", lambda: e.focus(heavy_pat), lambda: e.reset()),
        ("ignore regex", lambda: e.ignore("Builtins_JsonParse"), lambda: e.reset()),
        ("hide regex", lambda: e.hide("^Builtins_"), lambda: e.reset()),
        ("merge recursion", lambda: e.merge_recursion(True), lambda: e.reset()),
    ]
    if len(p.threads) > 1:
        controls.append(("thread", lambda: e.set_thread("worker-1"), lambda: e.reset()))
    if e.timeline_chart is not None:
        controls.append(("time slice", lambda: e.set_slice_ms(2000, 4000), lambda: e.reset()))
    controls.append(("undo to cached view", lambda: e.undo(), lambda: None))
    ctl = {}
    stamp = {}
    for chart in (e.chart,):
        for meth in ("set_flame", "restyle"):
            def stamped(*a, _orig=getattr(chart, meth), **k):
                _orig(*a, **k)
                stamp["t"] = time.perf_counter()
                stamp["c"] = time.process_time()
            setattr(chart, meth, stamped)
    for name, do, undo in controls:
        runs, sizes, charts, cpus, chart_cpus, figmsgs = [], [], [], [], [], []
        for _ in range(repeat):
            if name.startswith("undo"):
                e.set_transforms(["hide=^Builtins_"])
                e.set_transforms(["hide=^Builtins_", "ignore=JsonParse"])
            else:
                e._profiles.clear()
                e._layouts.clear()
                for k in [k for k in e._aggs if k]:   # slices; the unsliced aggregate is built once
                    del e._aggs[k]
                e._timelines.clear()
                e.state._ncolors.clear()     # node colours and search matches are per view too
                e.state._matches.clear()
            rec.take()
            rec.take_figure_messages()
            stamp.clear()
            t = time.perf_counter()
            c = time.process_time()
            do()
            runs.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
            chart_cpus.append(stamp.get("c", c) - c)
            charts.append(stamp.get("t", t) - t)
            sizes.append(rec.take()[0])
            figmsgs.append(rec.take_figure_messages())
            undo()
        ctl[name] = {"median_ms": round(1000 * statistics.median(runs), 1), "max_ms": round(1000 * max(runs), 1),
                     "chart_ms": round(1000 * statistics.median(charts), 1),
                     "cpu_ms": round(1000 * statistics.median(cpus), 1),
                     "max_cpu_ms": round(1000 * max(cpus), 1),
                     "chart_cpu_ms": round(1000 * statistics.median(chart_cpus), 1),
                     "sent_bytes": int(statistics.median(sizes)),
                     "figure_messages": int(statistics.median(figmsgs))}
    res["controls"] = ctl
    return res


FRESH_KERNEL = r"""
import resource, sys, time
t0 = time.perf_counter()
import nodeflame as nf
import nodeflame.widgets as wg
t1 = time.perf_counter()
p = nf.read(sys.argv[1])
t2 = time.perf_counter()
e = wg.explorer(p)
bundle = e._repr_mimebundle_()
t3 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "explorer_s": t3 - t2, "total_s": t3 - t0,
                  "cpu_s": ru.ru_utime + ru.ru_stime, "nodes": len(e.layout_table)}))
""".replace("import resource", "import json, resource")


def fresh_kernel(path, repeat, tree=None):
    """The first explorer of a fresh interpreter (what a new kernel's first ``p.flame()`` costs on
    the kernel's side): imports, reading the file, the explorer with plotly's front end (its gzip
    from ~/.cache/nodeflame, or compressed afresh with an empty cache) and the display bundle."""
    import subprocess
    import tempfile
    out = {}
    for label, cache in (("warm cache", None), ("empty cache", "empty")):
        runs = []
        for _ in range(repeat):
            env = dict(os.environ)
            if tree:
                env["PYTHONPATH"] = os.path.abspath(tree) + os.pathsep + env.get("PYTHONPATH", "")
            with tempfile.TemporaryDirectory() as tmp:
                if cache:
                    env["XDG_CACHE_HOME"] = tmp
                t = time.perf_counter()
                r = subprocess.run([sys.executable, "-c", FRESH_KERNEL, path], capture_output=True, text=True,
                                   env=env, check=True)
                wall = time.perf_counter() - t
            d = json.loads(r.stdout.strip().splitlines()[-1])
            d["process_s"] = wall
            runs.append(d)
        out[label] = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    return out


def compare(tree: str, rounds: int, repeat: int) -> list[dict]:
    """This checkout against the nodeflame in ``tree`` (e.g. ``git archive`` of an older commit),
    side by side: ``rounds`` rounds, each running both in fresh interpreters one after the other
    (the order alternating), the same controls from this script; medians over the rounds."""
    import subprocess
    import tempfile
    runs: dict[str, list] = {"before": [], "after": []}
    for i in range(rounds):
        for which in (("before", "after") if i % 2 == 0 else ("after", "before")):
            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                cmd = [sys.executable, os.path.abspath(__file__), "--repeat", str(repeat), "--controls-only",
                       "--json", tmp.name] + (["--tree", tree] if which == "before" else [])
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                runs[which].append(json.load(open(tmp.name)))
    print(f"\n== before ({tree}) -> after (this checkout): CPU ms of a change, all panes / chart (max: the "
          f"slowest of the {repeat} repeats, the first one usually); medians of {rounds} rounds")
    table = []
    for k, label in enumerate(("folded", "timed")):
        print(f"-- {label}")
        med = {w: (lambda key, j=None, w=w: statistics.median(
            (r[k][key] if j is None else r[k]["controls"][key][j]) for r in runs[w])) for w in runs}
        for key, unit in (("first_render_cpu_s", "s cpu"), ("first_render_s", "s wall")):
            print(f"  first render {unit:8s} {med['before'](key):8.2f} -> {med['after'](key):8.2f}")
            table.append({"profile": label, "what": f"first render ({unit})", "before": med["before"](key),
                          "after": med["after"](key)})
        for name in runs["after"][0][k]["controls"]:
            b = (med["before"](name, "cpu_ms"), med["before"](name, "chart_cpu_ms"),
                 med["before"](name, "max_cpu_ms"))
            a = (med["after"](name, "cpu_ms"), med["after"](name, "chart_cpu_ms"), med["after"](name, "max_cpu_ms"))
            fm = [med[w](name, "figure_messages") if "figure_messages" in runs[w][0][k]["controls"][name] else -1
                  for w in ("before", "after")]
            print(f"  {name:26s} {b[0]:6.1f} / {b[1]:6.1f} (max {b[2]:6.1f})  ->  {a[0]:6.1f} / {a[1]:6.1f} "
                  f"(max {a[2]:6.1f})   ({a[0] / b[0]:.2f}x)   plotly messages {fm[0]:g} -> {fm[1]:g}")
            table.append({"profile": label, "what": name, "before_cpu_ms": b[0], "before_chart_cpu_ms": b[1],
                          "before_max_cpu_ms": b[2], "after_cpu_ms": a[0], "after_chart_cpu_ms": a[1],
                          "after_max_cpu_ms": a[2], "before_figure_messages": fm[0], "after_figure_messages": fm[1]})
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--tree", help="import nodeflame from this directory (an older checkout) instead")
    ap.add_argument("--compare", metavar="DIR",
                    help="measure the controls of this checkout and of the nodeflame in DIR side by side")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of --compare (default 3)")
    ap.add_argument("--controls-only", action="store_true", help="no first explorer of a fresh interpreter")
    args = ap.parse_args(argv)
    if args.tree:
        sys.path.insert(0, os.path.abspath(args.tree))
    print("load average at the start: %.2f %.2f %.2f" % os.getloadavg())
    if args.compare:
        table = compare(args.compare, args.rounds, args.repeat)
        print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(table, fh, indent=1)
        return 0
    rec = Recorder()
    rec.install()
    t = time.perf_counter()
    folded, timed = load_profiles()
    print(f"loaded in {time.perf_counter() - t:.1f} s: {folded!r}")
    out = []
    for label, p in (("folded", folded), ("timed", timed)):
        r = bench_profile(label, p, args.repeat, rec)
        out.append(r)
        print(f"\n== {label}: {r['samples']:,} samples in {r['rows']:,} rows, {r['stacks']:,} stacks, "
              f"{r['funcs']:,} functions; {r['nodes']:,} nodes drawn")
        print(f"first render {r['first_render_s']:.2f} s (runs {r['first_render_runs_s']}, "
              f"cpu {r['first_render_cpu_s']:.2f} s), "
              f"sent {r['first_sent_bytes'] / 1e6:.2f} MB (static HTML {r['static_html_bytes'] / 1e6:.2f} MB; "
              f"plus plotly's FigureWidget front-end code {r['frontend_code_bytes'] / 1e6:.2f} MB, "
              f"the same for every figure widget)")
        for name, c in r["controls"].items():
            print(f"  {name:26s} chart {c['chart_ms']:6.1f} ms (cpu {c['chart_cpu_ms']:6.1f}), "
                  f"all panes {c['median_ms']:6.1f} ms (cpu {c['cpu_ms']:6.1f}, max wall {c['max_ms']:6.1f}, "
                  f"max cpu {c['max_cpu_ms']:6.1f})"
                  f"  sent {c['sent_bytes'] / 1e3:6.1f} kB in {c['figure_messages']} plotly message(s)")
    if not args.controls_only:
        import gen_profiles
        fk = fresh_kernel(gen_profiles.ensure("small", os.path.join(HERE, "out")), args.repeat,
                          args.tree)
        print("\n== first explorer of a fresh interpreter (folded 1 M samples; median of "
              f"{args.repeat} processes)")
        for label, d in fk.items():
            print(f"  {label:12s} imports {d['import_s']:.2f} s, read {d['read_s']:.2f} s, explorer + bundle "
                  f"{d['explorer_s']:.2f} s; total {d['total_s']:.2f} s (cpu {d['cpu_s']:.2f} s, process "
                  f"{d['process_s']:.2f} s)")
        out.append({"fresh_kernel": fk})
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
