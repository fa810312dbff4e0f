"""The sandwich view and the time-ordered stack chart (nodeflame/widgets/sidecharts.py).

Every table is checked against an answer computed independently, sample by sample in plain
Python, on hand-built profiles with a known answer (recursion, gaps, threads) and on real
captures (the demo's .cpuprofile files, node's example in the shared corpus).
"""
import functools
import glob
import pathlib
from collections import defaultdict

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.frames.build import FrameTable, build_profile
from nodeflame.widgets.sidecharts import resolve_func, sandwich_data, stack_chart_data, stack_chart_figure

HERE = pathlib.Path(__file__).parent
DEMO = sorted(glob.glob(str(HERE / "data" / "diff_demo" / "*.cpuprofile")))
CORPUS = pathlib.Path("/work/shared/corpus/speedscope/node/10.11.0/example.cpuprofile")
APP = "/srv/app/server.js"


def make(rows, period_ms=1.0):
    """rows: (root-first names, weight, thread, time_ms or None); one sample per row."""
    ft = FrameTable()
    offsets, flat, w, th, t = [0], [], [], [], []
    for names, weight, thread, time_ms in rows:
        flat += [ft.add(n, APP, 1 + sum(map(ord, n)) % 97) for n in names]
        offsets.append(len(flat))
        w.append(weight)
        th.append(thread)
        t.append(0 if time_ms is None else int(round(time_ms * 1e6)))
    timed = rows and rows[0][3] is not None
    return build_profile(ft, np.array(offsets), np.array(flat), weights=np.array(w), threads=th,
                         times=np.array(t) if timed else None,
                         meta={"period_ns": int(period_ms * 1e6)} if timed else None)


def sample_paths(p):
    """Root-first function ids of every sample, walked one sample at a time (the reference)."""
    st = p.stacks
    prefix, frame = st["prefix"].to_numpy(), st["frame"].to_numpy()
    ffunc = p.frames["func"].to_numpy()
    out = []
    for s in p.samples["stack"].to_numpy():
        path = []
        while s >= 0:
            path.append(int(ffunc[frame[s]]))
            s = prefix[s]
        out.append(path[::-1])
    return out


def node_paths(t):
    """{path of funcs from the root: value} of a sandwich node table."""
    par, fn, val = t["parent"].to_numpy(), t["func"].to_numpy(), t["value"].to_numpy()
    out = {}
    for i in range(len(t)):
        path, j = [], i
        while j >= 0:
            path.append(int(fn[j]))
            j = par[j]
        key = tuple(path[::-1])
        assert key not in out, "two nodes for one path"
        out[key] = int(val[i])
    return out


def reference_sandwich(p, fid):
    callers, callees = defaultdict(int), defaultdict(int)
    for path, w in zip(sample_paths(p), p.samples["weight"].to_numpy()):
        if fid not in path:
            continue
        k = path.index(fid)                  # the outermost occurrence: recursion counted once
        up, down = path[:k + 1][::-1], path[k:]
        for n in range(1, len(up) + 1):
            callers[tuple(up[:n])] += int(w)
        for n in range(1, len(down) + 1):
            callees[tuple(down[:n])] += int(w)
    return dict(callers), dict(callees)


def fid_of(p, name):
    return int(np.flatnonzero(p.funcs["name"].astype(str).to_numpy() == name)[0])


# ------------------------------------------------------------------ sandwich

REC = [
    (["main", "a", "F", "b"], 2, "main", None),
    (["main", "F", "F", "c"], 3, "main", None),       # direct recursion
    (["main", "x", "F", "G", "F", "b"], 1, "main", None),  # indirect recursion
    (["main", "F"], 4, "main", None),
    (["main", "d"], 5, "main", None),
]


def test_sandwich_known_answer_with_recursion():
    p = make(REC)
    F, b, c, G, a, x, main = (fid_of(p, n) for n in ("F", "b", "c", "G", "a", "x", "main"))
    callers, callees = sandwich_data(p, "F")
    up, down = node_paths(callers), node_paths(callees)
    # both roots: the function's total, each sample once however often F recurses in it
    assert up[(F,)] == down[(F,)] == 2 + 3 + 1 + 4 == int(p.top(None, by="total").loc[F, "total"])
    # who called the outermost F, then who called them
    assert up == {(F,): 10, (F, a): 2, (F, a, main): 2, (F, main): 7, (F, x): 1, (F, x, main): 1}
    # what F called, recursion kept below the cut
    assert down == {(F,): 10, (F, b): 2, (F, F): 3, (F, F, c): 3, (F, G): 1, (F, G, F): 1, (F, G, F, b): 1}
    assert callees.loc[0, "self"] == 4 and callees["self"].sum() == 10 == callers["self"].sum()
    assert (callers["func"].iloc[0], callees["func"].iloc[0]) == (F, F)


def test_sandwich_resolves_names_and_regexes():
    p = make(REC)
    F = fid_of(p, "F")
    assert resolve_func(p, "F") == resolve_func(p, "^F ") == resolve_func(p, F) == F
    with pytest.raises(ValueError, match="no function matches"):
        resolve_func(p, "nope")
    with pytest.raises(ValueError, match="regular expression"):
        resolve_func(p, "(")
    with pytest.raises(ValueError, match="no function with id"):
        resolve_func(p, 99)


@functools.cache
def read(path):
    """Each real capture read once for the module (a validated Profile is immutable: tests share it)."""
    return nf.read(path)


REAL = {"demo-first": DEMO[0], "demo-last": DEMO[-1], "corpus": CORPUS}


@pytest.fixture(params=list(REAL))
def real(request):
    """The demo's first and last .cpuprofile, and node's example in the shared corpus where it is."""
    path = REAL[request.param]
    if not pathlib.Path(path).exists():
        pytest.skip(f"{path} missing")
    return read(path)


def test_sandwich_equals_samples_on_real_captures(real):
    p = real
    top = p.top(None, by="total")
    # the five heaviest functions, and one from the middle
    for fid in list(top.index[:5]) + [top.index[len(top) // 2]]:
        callers, callees = sandwich_data(p, int(fid))
        ref_up, ref_down = reference_sandwich(p, int(fid))
        assert node_paths(callers) == ref_up
        assert node_paths(callees) == ref_down
        assert callers["value"].iloc[0] == callees["value"].iloc[0] == top.loc[fid, "total"]


def test_sandwich_figure():
    go = pytest.importorskip("plotly.graph_objects")
    from nodeflame import widgets as W
    p = read(DEMO[0])
    fig = W.sandwich(p, "handleRequest")
    assert isinstance(fig, go.Figure) and [t.type for t in fig.data] == ["icicle", "icicle"]
    up, down = fig.data
    tot = int(p.top(None, by="total").loc[fid_of(p, "handleRequest"), "total"])
    assert up.values[0] == down.values[0] == tot and up.labels[0] == down.labels[0] == "handleRequest"
    assert up.tiling.flip == "y" and down.tiling.flip is None        # callers drawn upwards
    assert min(up.domain.y) > max(down.domain.y)                      # and above the callees
    # every non-root node's parent exists in its trace, and a parent weighs at least its children
    for tr in fig.data:
        val = dict(zip(tr.ids, tr.values))
        kids = defaultdict(int)
        for i, par, v in zip(tr.ids, tr.parents, tr.values):
            if par:
                kids[par] += v
        assert all(kids[k] <= val[k] for k in kids)


# ------------------------------------------------------------------ stack chart

def check_bars(p, bars, gap_periods=4):
    """Every (sample, depth) of every thread is covered by exactly one bar whose path is the
    sample's path down to that depth; bars that could merge (same path, samples adjacent, no
    gap) are merged."""
    paths = sample_paths(p)
    s = p.samples
    t = s["time_ns"].to_numpy()
    th = s["thread"].astype(str).to_numpy()
    per = p.meta.get("period_ns")
    t0 = t.min()
    name = p.funcs["name"].astype(str).to_numpy()
    for thread in np.unique(bars["thread"]):
        rows = np.flatnonzero(th == thread)
        rows = rows[np.argsort(t[rows], kind="stable")]
        assert len(np.unique(t[rows])) == len(rows)
        tt = t[rows] - t0
        covered = defaultdict(int)
        b = bars[bars["thread"] == thread]
        for d, st, cnt, fn, node in zip(b["depth"], b["start_ns"], b["samples"], b["func"], b["node"]):
            i = int(np.searchsorted(tt, st))
            assert tt[i] == st
            ref = paths[rows[i]][:d + 1]
            for j in range(i, i + cnt):
                assert paths[rows[j]][:d + 1] == ref         # one path down to d across the bar
                assert name[paths[rows[j]][d]] == name[fn]
                covered[(j, d)] += 1
            if j + 1 < len(rows) and len(paths[rows[j + 1]]) > d and paths[rows[j + 1]][:d + 1] == ref:
                assert tt[j + 1] - tt[j] > gap_periods * per   # only a gap breaks equal frames
        want = {(j, d) for j in range(len(rows)) for d in range(len(paths[rows[j]]))}
        assert set(covered) == want and set(covered.values()) == {1}
        # the root level spans every sample of the thread
        assert b.loc[b["depth"] == 0, "samples"].sum() == len(rows)
        assert b.loc[b["depth"] == 0, "weight"].sum() == s["weight"].to_numpy()[rows].sum()


def test_stack_chart_known_answer():
    rows = [(["main", "a", "b"], 1, "main", 0), (["main", "a", "b"], 1, "main", 1),
            (["main", "a", "c"], 1, "main", 2), (["main", "x", "b"], 1, "main", 3),
            (["main", "x", "b"], 1, "main", 50),            # after a gap: new bars
            (["w", "k"], 1, "worker", 0.5), (["w", "k"], 1, "worker", 1.5)]
    p = make(rows)
    bars = stack_chart_data(p)
    check_bars(p, bars)
    m = bars[bars["thread"] == "main"]
    got = sorted(zip(m["depth"], m["name"], m["start_ns"] // 10**6, m["samples"]))
    assert got == sorted([(0, "main", 0, 4), (1, "a", 0, 3), (2, "b", 0, 2), (2, "c", 2, 1),
                          (1, "x", 3, 1), (2, "b", 3, 1), (0, "main", 50, 1), (1, "x", 50, 1), (2, "b", 50, 1)])
    # a bar lasts until the next sample, the last before a gap one period
    r = m[(m["depth"] == 0)].sort_values("start_ns")
    assert r["end_ns"].tolist() == [4 * 10**6, 51 * 10**6]
    assert list(stack_chart_data(p, thread="worker")["thread"].unique()) == ["worker"]
    with pytest.raises(ValueError, match="no samples of thread"):
        stack_chart_data(p, thread="nope")
    with pytest.raises(ValueError, match="sample times"):
        stack_chart_data(make([(r[0], r[1], r[2], None) for r in rows]))


def test_stack_chart_covers_samples_on_real_captures(real):
    p = real
    bars = stack_chart_data(p)
    check_bars(p, bars)
    assert len(bars) < sum(len(x) for x in sample_paths(p))          # something merged


def test_stack_chart_figure():
    go = pytest.importorskip("plotly.graph_objects")
    from nodeflame import widgets as W
    p = read(DEMO[0])
    fig = W.stack_chart(p)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    bar = fig.data[0]
    assert bar.type == "bar" and bar.orientation == "h"
    bars = stack_chart_data(p)
    assert 0 < len(bar.x) <= len(bars)
    assert min(bar.base) == 0 and max(np.add(bar.base, bar.x)) == pytest.approx(bars["end_ns"].max() / 1e6)
    # the cap: at most max_bars, the narrowest left out first and counted in the title
    small = stack_chart_figure(p, max_bars=50)
    kept = np.asarray(small["data"][0]["x"])
    assert len(kept) <= 50 and kept.min() >= np.sort((bars["end_ns"] - bars["start_ns"]).to_numpy() / 1e6)[-50:].min()
    assert "left out" in small["layout"]["title"]["text"]


# ------------------------------------------------------------------ in the explorer

def test_explorer_sandwich_and_stack_chart():
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget")
    from nodeflame.widgets.explorer import Explorer
    p = read(DEMO[0])
    ex = Explorer(p, defer_panes=False)
    assert ex.d_sandwich.disabled and not ex.b_stack.disabled
    with pytest.raises(ValueError, match="select a function"):
        ex.show_sandwich()
    F = fid_of(ex.profile, "scoreRows")
    ex.select(func=F)
    assert not ex.d_sandwich.disabled
    ex.d_sandwich.click()
    assert ex.extra_kind == "sandwich"
    from nodeflame.widgets.chart import FigureWidget
    shown = ex.extra.children[-1]
    assert isinstance(shown, FigureWidget) and [t.type for t in shown.data] == ["icicle", "icicle"]
    up, down = ex.extra_figure["data"]
    ref_up, ref_down = reference_sandwich(ex.profile, F)
    assert up["values"][0] == down["values"][0] == ref_up[(F,)]
    assert sorted(up["values"]) == sorted(ref_up.values()) and sorted(down["values"]) == sorted(ref_down.values())
    # the open sandwich follows the selection
    G = fid_of(ex.profile, "handleRequest")
    ex.select(func=G)
    assert ex.extra_figure["data"][0]["labels"][0] == "handleRequest"
    # the stack chart of the view: after focus=, only the samples through the focused function
    ex.b_stack.click()
    assert ex.extra_kind == "stack chart"
    n_all = ex.extra_figure["data"][0]["x"]
    ex.focus("^renderPage ")
    q = ex.profile
    assert len(q.samples) < len(p.samples)
    bars = stack_chart_data(p.apply(["focus=^renderPage "]))
    assert ex.extra_kind == "stack chart" and len(ex.extra_figure["data"][0]["x"]) <= len(bars) < len(n_all)
    ex.b_close_extra.click()
    assert ex.extra_kind == "" and ex.extra_figure is None and ex.extra.children == ()
    # untimed: no stack chart button
    ex2 = Explorer(make(REC), defer_panes=False)
    assert ex2.b_stack.disabled
    with pytest.raises(ValueError, match="sample times"):
        ex2.show_stack_chart()
