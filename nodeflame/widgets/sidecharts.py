"""Two more views of a Profile, as data (numpy/pandas) and as plotly figures.

* The **sandwich** of one function (speedscope's sandwich view): its callers above, as an
  inverted tree with the function at the root and who called it above, and its callees below,
  the tree rooted at the function.  Every occurrence of the function merges into one root, and a
  sample is cut at the *outermost* occurrence of the function on its stack, so recursion is
  counted once: both roots weigh the function's total (``top(by='total')``), the callers tree
  shows the calls from outside the recursion, the callees tree keeps the recursion below the cut.
* The **stack chart** of a timed capture (Chrome DevTools' flame chart, speedscope's "time
  order"): x is time, y is depth; consecutive samples of a thread with the same function-level
  path down to a depth share one bar there; a gap between samples longer than a few sampling
  periods ends every bar.

:func:`sandwich_data` and :func:`stack_chart_data` are plain functions of a Profile (no plotly);
:func:`sandwich_figure` and :func:`stack_chart_figure` draw them.  Loops run over depth levels,
never over samples or stacks.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..frames.ops import stacks_containing
from ..frames.stacktable import level_segments, paths_to_stacks, stack_paths
from ..frames.views import accumulate_subtrees, func_tree
from . import model as M
from .fastviews import func_self_total

_I64 = np.int64

__all__ = ["resolve_func", "sandwich_data", "sandwich_figure", "stack_chart_data", "stack_chart_figure"]


# ------------------------------------------------------------------ which function

def resolve_func(p, func) -> int:
    """A function id from an id, an exact name or display name (``name file:line``), or a regular
    expression searched in display names; among several matches the one with the largest total."""
    nf = len(p.funcs)
    if isinstance(func, (int, np.integer)) and not isinstance(func, bool):
        if not 0 <= int(func) < nf:
            raise ValueError(f"nodeflame: no function with id {func} (the profile has {nf})")
        return int(func)
    pat = str(func)
    labels = p.func_labels().astype(str)
    names = p.funcs["name"].astype(str).to_numpy(object)
    _self, total = func_self_total(p)
    cand = np.flatnonzero((labels == pat) | (names == pat))
    if not len(cand):
        try:
            cand = np.flatnonzero(M.matching_funcs(p, pat))
        except re.error as e:
            raise ValueError(f"nodeflame: {pat!r} is neither a function name nor a valid regular expression: {e}") from None
    if not len(cand):
        raise ValueError(f"nodeflame: no function matches {pat!r}")
    return int(cand[np.argmax(total[cand])])


# ------------------------------------------------------------------ sandwich

def _tree_table(p, prefix, func, depth, dep) -> pd.DataFrame:
    total = accumulate_subtrees(prefix, depth, dep)
    f = p.funcs
    fi = func.astype(_I64)
    return pd.DataFrame({
        "parent": prefix.astype(_I64), "depth": depth.astype(np.int32), "func": fi,
        "name": M.short_labels(p)[fi] if len(fi) else np.empty(0, object),
        "label": p.func_labels()[fi] if len(fi) else np.empty(0, object),
        "kind": f["kind"].astype(str).to_numpy(object)[fi] if len(fi) else np.empty(0, object),
        "self": dep.astype(_I64), "value": total.astype(_I64),
    })


def sandwich_data(p, func) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(callers, callees)`` of function ``func`` (an id, name or regex: :func:`resolve_func`).

    Each is a node table, parents before children, node 0 the function itself (when any sample
    holds it): ``parent`` (-1 at the root), ``depth``, ``func``, ``name``, ``label``, ``kind``,
    ``self`` (weight of samples whose cut path ends here) and ``value`` (weight of the subtree).
    ``callers``: depth 1 are the direct callers of the function's outermost occurrence, depth 2
    their callers...; a node's value is the weight of the samples whose stack, read upwards from
    that occurrence, starts with the node's path.  ``callees``: the function-level call tree
    below the outermost occurrence, all occurrences merged.  Both roots weigh the function's
    total, recursion counted once."""
    fid = resolve_func(p, func)
    a = p.arrays()
    sw = p.stack_weights()
    fm = np.zeros(len(p.funcs), bool)
    fm[fid] = True
    holds = stacks_containing(p, fm)                       # what the focus= transform keeps
    leaves = np.flatnonzero((sw > 0) & holds)
    offsets, flat = stack_paths(a["prefix"], leaves, a["depth"])
    funcs_flat = a["stack_func"][flat] if len(flat) else np.empty(0, _I64)
    n = len(leaves)
    lengths = np.diff(offsets)
    path_of = np.repeat(np.arange(n, dtype=_I64), lengths)
    pos = np.arange(len(flat), dtype=_I64) - offsets[:-1][path_of]
    first = np.full(n, np.iinfo(_I64).max, _I64)           # position of the outermost occurrence
    hit = funcs_flat == fid
    np.minimum.at(first, path_of[hit], pos[hit])
    k = first[path_of]
    w = sw[leaves]
    nf = len(p.funcs)
    # callees: the path from the outermost occurrence down to the leaf
    below = pos >= k
    c_len = lengths - first
    c_off = np.zeros(n + 1, _I64)
    np.cumsum(c_len, out=c_off[1:])
    pr, fu, de, end = paths_to_stacks(c_off, funcs_flat[below], nf)
    callees = _tree_table(p, pr, fu, de, np.bincount(end, weights=w, minlength=len(pr)).astype(_I64))
    # callers: the path from the root to the outermost occurrence, reversed (the function first)
    upto = pos <= k
    u_len = first + 1
    u_off = np.zeros(n + 1, _I64)
    np.cumsum(u_len, out=u_off[1:])
    src = np.flatnonzero(upto)
    rev = u_off[:-1][path_of[src]] + (k[src] - pos[src])    # new position of each kept entry
    u_flat = np.empty(len(src), _I64)
    u_flat[rev] = funcs_flat[src]
    pr, fu, de, end = paths_to_stacks(u_off, u_flat, nf)
    callers = _tree_table(p, pr, fu, de, np.bincount(end, weights=w, minlength=len(pr)).astype(_I64))
    return callers, callees


def _icicle(p, t: pd.DataFrame, colors, *, upward: bool, domain, max_nodes: int) -> dict:
    if len(t) > max_nodes:   # keep the heaviest nodes (a parent weighs at least its children)
        keep = np.zeros(len(t), bool)
        keep[np.argsort(-t["value"].to_numpy(), kind="stable")[:max_nodes]] = True
        par = t["parent"].to_numpy()
        keep &= (par < 0) | keep[np.maximum(par, 0)]
        for _d, idx in level_segments(t["depth"].to_numpy().astype(_I64)):  # drop orphans level by level
            pi = par[idx]
            keep[idx] &= (pi < 0) | keep[np.maximum(pi, 0)]
        t = t[keep]
    ids = t.index.astype(str).tolist()
    par = t["parent"].to_numpy()
    return {
        "type": "icicle", "ids": ids,
        "parents": np.where(par >= 0, par.astype(str), "").tolist(),
        "values": t["value"].astype(_I64).tolist(), "labels": t["name"].tolist(), "text": t["label"].tolist(),
        "branchvalues": "total", "sort": False,
        "marker": {"colors": list(colors[t["func"].to_numpy()]) if len(t) else [],
                   "line": {"width": 0.5, "color": "#ffffff"}},
        "tiling": {"orientation": "v", "flip": "y" if upward else None, "pad": 0},
        "pathbar": {"visible": False}, "textinfo": "label", "insidetextfont": {"size": 11},
        "hovertemplate": "<b>%{text}</b><br>%{value:,} (%{percentRoot:.2%})<extra></extra>",
        "domain": {"x": [0, 1], "y": list(domain)}, "maxdepth": -1,
    }


def sandwich_figure(p, func, *, color: str = "kind", height: int | None = None, max_nodes: int = 4000) -> dict:
    """The sandwich as a plotly figure dict: the callers icicle on top, drawn upwards from the
    function, and the callees icicle below, drawn downwards; each trace's root is the function."""
    fid = resolve_func(p, func)
    callers, callees = sandwich_data(p, fid)
    colors = M.func_colors(p, color)
    rows_up = int(callers["depth"].max()) + 1 if len(callers) else 1
    rows_down = int(callees["depth"].max()) + 1 if len(callees) else 1
    if height is None:
        height = max(240, (rows_up + rows_down) * M.ROW_PX + 50)
    split = rows_down / (rows_up + rows_down)   # rows of one height: each tree gets its share
    _s, total = func_self_total(p)
    name = str(M.short_labels(p)[fid])
    title = (f"sandwich of {name}: {int(total[fid]):,} of {int(p.total):,} "
             f"({100.0 * total[fid] / max(p.total, 1):.1f} %) — callers above, callees below")
    traces = [_icicle(p, callers, colors, upward=True, domain=(min(split + 0.005, 1.0), 1.0), max_nodes=max_nodes),
              _icicle(p, callees, colors, upward=False, domain=(0.0, max(split - 0.005, 0.0)), max_nodes=max_nodes)]
    layout = M.icicle_layout(height=int(height), title=title)
    return {"data": traces, "layout": layout}


# ------------------------------------------------------------------ stack chart

GAP_PERIODS = 4   # a gap longer than this many sampling periods ends every bar


def _period_ns(p, t: np.ndarray, th: np.ndarray) -> float:
    per = p.meta.get("period_ns")
    if per:
        return float(per)
    same = th[1:] == th[:-1]
    d = np.diff(t)[same] if len(t) > 1 else np.empty(0)
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1e6


def stack_chart_data(p, *, thread=None, min_ns: float = 0.0, gap_periods: float = GAP_PERIODS) -> pd.DataFrame:
    """Bars of the time-ordered stack chart, one row per bar: ``thread``, ``depth``, ``node``
    (function-level call-tree node: the path from the root), ``func``, ``name``, ``start_ns``,
    ``end_ns`` (relative to the first sample), ``samples`` (how many samples it spans),
    ``weight``.  A sample lasts until the next sample of its thread, or one sampling period
    before a gap (longer than ``gap_periods`` periods) and at the end.  ``thread`` selects one
    thread's bars (None: all).  Bars shorter than ``min_ns`` are left out (0: none).
    Raises ValueError for an untimed profile (folded, raw: no sample times)."""
    if not p.meta.get("timed"):
        raise ValueError("nodeflame: the stack chart needs sample times; this profile has none "
                         "(folded, raw and aggregated profiles are untimed)")
    s = p.samples
    th_cat = s["thread"].astype("category")
    th_all = th_cat.cat.codes.to_numpy().astype(_I64)
    th_names = np.asarray(th_cat.cat.categories.astype(str), dtype=object)
    sel = np.ones(len(s), bool)
    if thread is not None:
        sel = th_cat.astype(str).to_numpy(object) == str(thread)
        if not sel.any():
            raise ValueError(f"nodeflame: no samples of thread {thread!r} (threads: {', '.join(th_names)})")
    t_all = s["time_ns"].to_numpy().astype(_I64)
    rows = np.flatnonzero(sel)
    order = rows[np.lexsort((t_all[rows], th_all[rows]))]
    th, t = th_all[order], t_all[order]
    t0 = int(t.min()) if len(t) else 0
    per = _period_ns(p, t, th)
    prefix, func, depth, s2n = func_tree(p)
    node = s2n[s["stack"].to_numpy().astype(_I64)[order]]
    wts = s["weight"].to_numpy().astype(_I64)[order]
    n = len(order)
    # how long each sample lasts; where a run must break regardless of the frame
    nxt = np.empty(n, _I64)
    if n:
        nxt[:-1] = t[1:]
        nxt[-1] = t[-1]
    brk = np.ones(n, bool)                       # True: sample i starts a new segment
    if n > 1:
        gap = t[1:] - t[:-1]
        brk[1:] = (th[1:] != th[:-1]) | (gap > gap_periods * per)
    last = np.ones(n, bool)
    last[:-1] = brk[1:]
    end = np.where(last, t + int(round(per)), nxt)
    cols = {k: [] for k in ("thread", "depth", "node", "start_ns", "end_ns", "samples", "weight")}
    ndepth = depth[node] if n else np.empty(0, _I64)
    maxd = int(ndepth.max()) if n else -1
    # root-first path of every distinct leaf node: the ancestor at depth d is entry d of its path
    uniq, uinv = np.unique(node, return_inverse=True)
    u_off, u_flat = stack_paths(prefix, uniq, depth)
    s_off = u_off[:-1][uinv.reshape(-1)]
    for d in range(maxd + 1):
        has = ndepth >= d
        a = np.where(has, u_flat[np.where(has, s_off + d, 0)] if len(u_flat) else -1, -1)
        start = brk.copy()
        if n > 1:
            start[1:] |= a[1:] != a[:-1]
        bstart = np.flatnonzero(start & has)
        if not len(bstart):
            continue
        # a bar runs from its start to just before the next start (of any kind)
        seg_id = np.cumsum(start) - 1
        allstarts = np.flatnonzero(start)
        seg_end = np.append(allstarts[1:], n) - 1           # last sample of each segment
        cnt = np.bincount(seg_id, minlength=len(allstarts))
        wsum = np.bincount(seg_id, weights=wts, minlength=len(allstarts)).astype(_I64)
        sid = seg_id[bstart]
        if min_ns > 0:   # leave the short bars out here: no table rows for them at all
            long_ = (end[seg_end[sid]] - t[bstart]) >= min_ns
            bstart, sid = bstart[long_], sid[long_]
        cols["thread"].append(th[bstart])
        cols["depth"].append(np.full(len(bstart), d, _I64))
        cols["node"].append(a[bstart])
        cols["start_ns"].append(t[bstart] - t0)
        cols["end_ns"].append(end[seg_end[sid]] - t0)
        cols["samples"].append(cnt[sid].astype(_I64))
        cols["weight"].append(wsum[sid])
    if not cols["depth"]:
        return pd.DataFrame({"thread": [], "depth": [], "node": [], "func": [], "name": [], "label": [], "kind": [],
                             "start_ns": [], "end_ns": [], "samples": [], "weight": []})
    out = {k: np.concatenate(v) for k, v in cols.items()}
    fn = func[out["node"]].astype(_I64)
    df = pd.DataFrame({
        "thread": th_names[out["thread"]], "depth": out["depth"].astype(np.int32), "node": out["node"],
        "func": fn, "name": M.short_labels(p)[fn], "label": p.func_labels()[fn],
        "kind": p.funcs["kind"].astype(str).to_numpy(object)[fn],
        "start_ns": out["start_ns"], "end_ns": out["end_ns"], "samples": out["samples"], "weight": out["weight"],
    })
    return df


def stack_chart_figure(p, *, thread=None, color: str = "kind", width_px: int = 2000, max_bars: int = 20000,
                       height: int | None = None) -> dict:
    """The stack chart of one thread (None: the one with the most samples) as a plotly figure dict:
    horizontal ``bar`` trace with ``base`` = start (ms), depth 0 at the top.  Bars narrower than
    a pixel of a ``width_px`` chart (of the whole capture's span) are left out, and more of the
    narrowest if needed to stay under ``max_bars``; the title says below which duration."""
    if thread is None:
        s = p.samples
        thread = str(s["thread"].astype(str).value_counts().idxmax()) if len(s) else None
    t = p.samples["time_ns"].to_numpy()
    span = float(t.max() - t.min()) if len(t) else 0.0
    thr = span / max(int(width_px), 1)   # a pixel of the chart
    bars = stack_chart_data(p, thread=thread, min_ns=thr)
    n_all = len(bars)
    if n_all > max_bars:
        dur = (bars["end_ns"] - bars["start_ns"]).to_numpy()
        thr = max(thr, float(np.partition(dur, n_all - max_bars)[n_all - max_bars]) + 1)
        bars = bars[dur >= thr]
    colors = M.func_colors(p, color)
    start_ms = bars["start_ns"].to_numpy() / 1e6
    dur_ms = (bars["end_ns"] - bars["start_ns"]).to_numpy() / 1e6
    rows = int(bars["depth"].max()) + 1 if len(bars) else 1
    if height is None:
        height = max(300, rows * M.ROW_PX + 90)
    title = f"stack chart of thread {thread}" + (f", bars narrower than {thr / 1e6:.3g} ms left out" if thr > 0 else "")
    trace = {
        "type": "bar", "orientation": "h", "base": start_ms.tolist(), "x": dur_ms.tolist(),
        "y": bars["depth"].astype(int).tolist(), "width": 0.95,
        "marker": {"color": list(colors[bars["func"].to_numpy()]) if len(bars) else [],
                   "line": {"width": 0}},
        "text": bars["name"].tolist(), "textposition": "inside", "insidetextanchor": "start",
        "textfont": {"size": 11}, "textangle": 0, "constraintext": "both",
        "customdata": np.column_stack([bars["label"].to_numpy(object), bars["samples"].to_numpy()]).tolist()
        if len(bars) else [],
        "hovertemplate": "<b>%{customdata[0]}</b><br>%{base:.3f} ms + %{x:.3f} ms<br>%{customdata[1]} samples"
                         "<extra></extra>",
    }
    layout = {"height": int(height), "margin": {"l": 40, "r": 4, "t": 28, "b": 30},
              "title": {"text": title, "font": {"size": 13}, "x": 0.01}, "bargap": 0,
              "uniformtext": {"minsize": 10, "mode": "hide"}, "dragmode": "zoom",
              "xaxis": {"title": {"text": "ms"}}, "yaxis": {"autorange": "reversed", "title": {"text": "depth"},
                                                            "dtick": 5},
              "showlegend": False}
    return {"data": [trace], "layout": layout}
