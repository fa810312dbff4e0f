"""What the explorer draws, computed from a Profile with numpy (no plotly, no widgets).

Everything here is a pure function of a profile and view options, so tests
can assert on it directly and the widget only moves the results to the
browser.  Loops run over functions (one entry per distinct function) or over
depth levels, never over samples or stacks.
"""
from __future__ import annotations

import functools
import re
import zlib

import numpy as np
import pandas as pd

from ..frames.kinds import KINDS
from ..frames.transforms import paths_through
from ..writers.palette import (DIFF_BLUE, DIFF_GREY, DIFF_RED, KIND_COLORS, OTHER_COLOR,  # noqa: F401
                               ROOT_COLOR, diff_shade, kind_colors)
from .fastviews import flame_layout, func_self_total, inverted_tree, tree_arrays

_I64 = np.int64

# one kind palette and one diff shading with the SVG writer (nodeflame/writers/palette.py):
# a hue range per kind, the spot in it by the function's name; red grew, blue shrank, grey unchanged

MATCH_COLOR = "#e040fb"   # search matches, magenta as in flamegraph.pl
# qualitative palette for packages and files (stable hash of the name)
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#86bcb6", "#d37295", "#a0cbe8", "#ffbe7d", "#8cd17d", "#b6992d", "#499894",
           "#f1ce63", "#d4a6c8", "#fabfd2", "#79706e", "#d7b5a6", "#bab0ac", "#e6c229", "#6a9f58")
COLOR_BY = ("kind", "package", "file")
AUTO_MINWIDTH = 1 / 2000    # frames narrower than this share of the whole merge into "other" nodes


# ------------------------------------------------------------------ layout

def auto_layout(p, *, inverted: bool = False, minwidth: float | None = None, max_nodes: int = 6000):
    """``flame_layout`` with a minimum width that keeps the node count under ``max_nodes``.

    ``minwidth=None`` means :data:`AUTO_MINWIDTH` of the whole (half a pixel of a
    1000 px chart: plotly's cost is per node drawn, and the browser draws every
    node, seen or not; the first chart of a live walker capture drew 833 nodes,
    505 of them wider than that); either way the width is raised, if needed, to the total of the
    ``max_nodes // 2``-th widest node, which bounds the drawn nodes (those at
    least that wide, plus at most one "other" node per drawn parent) by
    ``max_nodes`` in a single layout pass.  Narrow nodes become explicit
    "other" nodes; nothing is dropped.  Returns ``(layout, minwidth_used)``.

    The bottom-up tree is grown only under nodes of at least the minimum width less one sample
    (:func:`fastviews.inverted_tree`): the k-th largest total matters only when it is at least
    that, and then every node as heavy is there."""
    mw = AUTO_MINWIDTH if minwidth is None else float(minwidth)
    if inverted:   # grown only under nodes that can be drawn (or decide the k-th largest below)
        tree = inverted_tree(p, mw * float(p.total) - 1)
    else:
        tree = tree_arrays(p)
    tot = tree["total"]
    whole = float(tot[tree["depth"] == 0].sum()) if len(tot) else 0.0
    k = max(int(max_nodes) // 2, 1)
    if len(tot) > k and whole > 0:
        kth = np.partition(tot, len(tot) - k)[len(tot) - k]  # k-th largest total
        mw = max(mw, (float(kth) + 1) / whole)
    return flame_layout(p, minwidth=mw, tree=tree), mw


def short_labels(p) -> np.ndarray:
    """The function name to print inside a rectangle (file and line go to the hover)."""
    names = p.funcs["name"].astype(str).to_numpy(object)
    return np.where(names == "", "(anonymous)", names)


def func_where(p) -> np.ndarray:
    """``file:line`` of each function ('' when unknown)."""
    f = p.funcs
    files = f["file"].astype(str).to_numpy(object)
    lines = f["line"].to_numpy()
    out = np.empty(len(f), dtype=object)
    for i in range(len(f)):  # one entry per distinct function
        out[i] = (f"{files[i]}:{lines[i]}" if lines[i] else files[i]) if files[i] else ""
    return out


def _hash_color(values: np.ndarray) -> np.ndarray:
    cats, inv = np.unique(values.astype(str), return_inverse=True)
    pal = np.array([PALETTE[zlib.crc32(c.encode("utf-8")) % len(PALETTE)] for c in cats], dtype=object)
    return pal[inv] if len(values) else np.empty(0, object)


def func_colors(p, by: str = "kind", only: np.ndarray | None = None) -> np.ndarray:
    """One colour per function: by ``kind``, npm ``package`` or ``file``.

    Functions without a package (or file) keep their kind's colour.  ``only``: the functions whose
    colours are wanted (each colour depends on its function alone; the others are left grey)."""
    if by not in COLOR_BY:
        raise ValueError(f"color must be one of {', '.join(COLOR_BY)}, not {by!r}")
    if only is not None:
        out = np.full(len(p.funcs), OTHER_COLOR, dtype=object)
        if len(only):
            f = p.funcs.iloc[only]
            out[only] = _func_colors(f, by)
        return out
    return _func_colors(p.funcs, by)


def _func_colors(f: pd.DataFrame, by: str) -> np.ndarray:
    kinds = f["kind"].astype(str).to_numpy(object)
    col = kind_colors(f["name"].astype(str).to_numpy(object), kinds)
    if by == "kind":
        return col.astype(object)
    key = f[by].astype(str).to_numpy(object)
    has = key != ""
    out = col.astype(object).copy()
    if has.any():
        out[has] = _hash_color(key[has])
    return out


def legend(p, lay: pd.DataFrame, by: str = "kind", *, n: int = 8) -> list[tuple[str, str]]:
    """(label, colour) pairs for the colouring ``by`` of the drawn nodes: the kinds present, or
    the ``n`` packages/files with the most drawn self weight (functions without one keep their
    kind's colour), or the diff's three meanings."""
    if by == "diff":
        return [("slower (beyond noise)", DIFF_RED), ("faster (beyond noise)", DIFF_BLUE),
                ("unchanged / within noise", DIFF_GREY)]
    func = lay["func"].to_numpy()
    f = func[func >= 0].astype(_I64)
    selfw = lay["self"].to_numpy()[func >= 0]
    if by == "kind":
        kinds = p.funcs["kind"].astype(str).to_numpy(object)[f]
        present = [k for k in KINDS if k in set(kinds.tolist())]
        return [(k, KIND_COLORS.get(k, OTHER_COLOR)) for k in present]
    keys = p.funcs[by].astype(str).to_numpy(object)[f]
    has = keys != ""
    if not has.any():
        return [(f"no {by} known: colours by kind", OTHER_COLOR)]
    w = pd.Series(selfw[has]).groupby(keys[has]).sum().sort_values(ascending=False)
    top = w.index[:n].to_numpy(object)
    cols = _hash_color(top)
    out = [(str(k) if by == "package" else str(k).rsplit("/", 1)[-1], c) for k, c in zip(top, cols)]
    if len(w) > n:
        out.append((f"… {len(w) - n} more", OTHER_COLOR))
    return out


def legend_html(items) -> str:
    import html as _html
    sw = "".join(f"<span style='display:inline-block;margin-right:10px;white-space:nowrap'>"
                 f"<span style='display:inline-block;width:11px;height:11px;background:{c};"
                 f"border:1px solid #999;vertical-align:middle;margin-right:3px'></span>{_html.escape(lab)}</span>"
                 for lab, c in items)
    return f"<div style='font-size:11px;line-height:16px'>{sw}</div>"


def node_colors(lay: pd.DataFrame, fcolors: np.ndarray) -> np.ndarray:
    func = lay["func"].to_numpy()
    return np.where(func >= 0, fcolors[np.maximum(func, 0)] if len(fcolors) else OTHER_COLOR, OTHER_COLOR).astype(object)


# ------------------------------------------------------------------ search

def matching_funcs(p, pattern: str) -> np.ndarray:
    """Functions whose display name (``name file:line``) the regular expression finds."""
    rx = re.compile(pattern)
    labels = p.func_labels()
    return np.fromiter((rx.search(s) is not None for s in labels), bool, len(labels))


def matched_share(p, func_mask: np.ndarray) -> float:
    """Share (0..1) of the weight whose stack contains a matching function."""
    total = p.total
    if total <= 0 or not func_mask.any():
        return 0.0
    hit = paths_through(p, func_mask)
    sw = p.stack_weights()
    return float(sw[hit].sum()) / total


def exact_pattern(p, func: int) -> str:
    """A regular expression that matches exactly one function's display name."""
    return "^" + re.escape(str(p.func_labels()[func])) + "$"


# ------------------------------------------------------------------ icicle

_FNV = np.uint64(1099511628211)


@functools.lru_cache(maxsize=1 << 16)
def _label_hash(s: str) -> int:
    b = s.encode("utf-8")
    return (zlib.crc32(b) << 32) | zlib.adler32(b)


def node_ids(p, lay: pd.DataFrame) -> np.ndarray:
    """A plotly id per layout node that names its *path* (the functions from the root down,
    by ``name file:line``), not its row: the same frame keeps its id across re-layouts
    (transforms, min width, threads), and an id never names another frame afterwards, so a
    zoom level plotly keeps in the browser still points at the frame the user clicked.
    64-bit path hashes, ``"n" + 16 hex digits``."""
    n = len(lay)
    if n == 0:
        return np.empty(0, object)
    labels = p.func_labels()
    func = lay["func"].to_numpy()
    used, inv = np.unique(np.maximum(func, 0), return_inverse=True)   # hash the drawn functions only
    hf = np.array([_label_hash(str(labels[f])) for f in used.tolist()], dtype=np.uint64) \
        if len(labels) else np.zeros(len(used), np.uint64)
    own = np.where(func >= 0, hf[inv.reshape(-1)], np.uint64(0x6f74686572)).astype(np.uint64)   # "other"
    par = lay["parent"].to_numpy()
    depth = lay["depth"].to_numpy()
    h = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for d in range(int(depth.max()) + 1):
            idx = np.flatnonzero(depth == d)
            base = np.where(par[idx] >= 0, h[np.maximum(par[idx], 0)], np.uint64(14695981039346656037))
            h[idx] = (base * _FNV) ^ own[idx]
    return np.array([f"n{x:016x}" for x in h.tolist()], dtype=object)


def icicle_trace(p, lay: pd.DataFrame, colors: np.ndarray, *, orientation: str = "flame",
                 root_label: str = "all") -> dict:
    """A plotly ``icicle`` trace as a plain dict (JSON-ready lists).

    Node ``i`` of the layout has id ``str(i)``; a root ``r`` spans the whole
    profile (plotly needs one root; flamegraph.pl draws it as "all")."""
    total = int(p.total)
    n = len(lay)
    par = lay["parent"].to_numpy()
    func = lay["func"].to_numpy()
    nid = lay["nid"].to_numpy(object) if "nid" in lay.columns else node_ids(p, lay)
    ids = ["r"] + list(nid)
    parents = [""] + np.where(par >= 0, nid[np.maximum(par, 0)] if n else "", "r").tolist()
    values = [total] + lay["total"].astype(_I64).tolist()
    short = short_labels(p)
    other = lay["other"].to_numpy()
    lab = np.where(func >= 0, short[np.maximum(func, 0)] if len(short) else "", "")
    if (other > 0).any():
        lab = np.where(other > 0, np.char.add(np.char.add("other (", other.astype(str)), ")").astype(object), lab)
    where = func_where(p)
    wh = np.where(func >= 0, where[np.maximum(func, 0)] if len(where) else "", "narrow frames merged")
    whole = max(total, 1)
    selfw = lay["self"].to_numpy()
    self_txt = [f"{s:,} ({pc:.2f} %)" for s, pc in zip(selfw.tolist(), (100.0 * selfw / whole).tolist())]
    flame = orientation == "flame"
    return {
        "type": "icicle",
        "ids": ids,
        "parents": parents,
        "values": values,
        "labels": [root_label] + lab.tolist(),
        "text": [""] + wh.tolist(),
        "customdata": [f"{0:,} (0.00 %)"] + self_txt,
        "branchvalues": "total",
        "sort": False,
        "marker": {"colors": [ROOT_COLOR] + list(colors), "line": {"width": 0.5, "color": "#ffffff"}},
        "tiling": {"orientation": "v", "flip": "y" if flame else None, "pad": 0},
        "pathbar": {"visible": True, "side": "bottom" if flame else "top"},
        "textinfo": "label",
        "insidetextfont": {"size": 11},
        "hovertemplate": ("<b>%{label}</b><br>%{text}<br>self %{customdata}<br>"
                          "total %{value:,} (%{percentRoot:.2%})<extra></extra>"),
        "maxdepth": -1,
        # every redraw starts from the root; node ids name paths (node_ids), so a zoom level that
        # plotly keeps in the browser anyway still names the frame that was clicked
        "level": "r",
    }


ROW_PX = 20        # height of one flame row: plotly shows 11 px labels in rows of at least ~16 px
PATHBAR_PX = 26    # plotly's path bar under (flame) or over (icicle) the chart
SCROLL_PX = 900    # taller charts scroll inside the output


def flame_height(lay: pd.DataFrame, min_height: int = 560, *, row_px: int = ROW_PX, title: bool = False) -> int:
    """Figure height that gives every depth level (plus the root row) ``row_px`` pixels, at
    least ``min_height``: deep real stacks (45 frames of native scaffolding and JS) grow the
    chart, which then scrolls, instead of squeezing rows below the size plotly labels."""
    rows = (int(lay["depth"].max()) + 2) if len(lay) else 1
    return max(int(min_height), rows * int(row_px) + PATHBAR_PX + 8 + (28 if title else 4))


def icicle_layout(*, height: int = 560, title: str | None = None) -> dict:
    lay = {"height": height, "margin": {"l": 4, "r": 4, "t": 28 if title else 4, "b": 4},
           "uniformtext": {"minsize": 8, "mode": "hide"}}
    if title:
        lay["title"] = {"text": title, "font": {"size": 13}, "x": 0.01}
    return lay


def node_func(lay: pd.DataFrame, node_id) -> int:
    """Function of the node with plotly id ``node_id`` (a path id from :func:`node_ids`, or a
    layout row number), -1 for root/other/unknown."""
    if node_id in (None, "", "r"):
        return -1
    if isinstance(node_id, str) and node_id.startswith("n"):
        if "nid" not in lay.columns:
            return -1
        hit = np.flatnonzero(lay["nid"].to_numpy(object) == node_id)
        return int(lay["func"].iat[hit[0]]) if len(hit) else -1
    try:
        i = int(node_id)
    except (TypeError, ValueError):
        return -1
    if not 0 <= i < len(lay):
        return -1
    return int(lay["func"].iat[i])


# ------------------------------------------------------------------ details

def func_details(p, func: int, *, n: int = 10):
    """(summary dict, callers DataFrame, callees DataFrame) of one function.

    Callers and callees come from the top-down call tree: each caller's row is
    the weight of the calls it made to ``func`` (its node totals), each callee's
    the weight ``func`` spent in it."""
    self_f, total_f = func_self_total(p)
    whole = max(p.total, 1)
    f = p.funcs
    summary = {
        "name": str(short_labels(p)[func]),
        "where": str(func_where(p)[func]),
        "kind": str(f["kind"].iat[func]),
        "package": str(f["package"].iat[func]),
        "self": int(self_f[func]), "total": int(total_f[func]),
        "self_pct": 100.0 * self_f[func] / whole, "total_pct": 100.0 * total_f[func] / whole,
    }
    t = tree_arrays(p)     # the call tree's shape (the stack table itself where it can be)
    parent, tf, tot = t["parent"], t["func"], t["total"]
    here = tf == func
    labels = p.func_labels()

    def table(funcs, weights):
        if len(funcs) == 0:
            return pd.DataFrame({"function": [], "weight": [], "pct": []})
        s = pd.Series(weights).groupby(funcs).sum().sort_values(ascending=False).head(n)
        return pd.DataFrame({"function": labels[s.index.to_numpy()], "weight": s.to_numpy().astype(_I64),
                             "pct": 100.0 * s.to_numpy() / whole})

    callers_nodes = np.flatnonzero(here & (parent >= 0))
    callers = table(tf[parent[callers_nodes]], tot[callers_nodes])
    child = np.flatnonzero((parent >= 0) & here[np.maximum(parent, 0)])
    callees = table(tf[child], tot[child])
    return summary, callers, callees


# ------------------------------------------------------------------ timeline

def timeline(p, bins: int = 200, *, t0_ns: int | None = None, t1_ns: int | None = None) -> pd.DataFrame | None:
    """Sample weight over time, stacked by the kind of each sample's leaf.

    One row per bin: ``t0_ms`` (start of the bin, ms since ``t0_ns``, default
    the first sample), ``width_ms``, then one column per kind present.  None
    for untimed profiles."""
    if not p.meta.get("timed") or len(p.samples) == 0:
        return None
    s = p.samples
    return timeline_counts(s["time_ns"].to_numpy(), s["weight"].to_numpy(), leaf_kinds(p), bins,
                           t0_ns=t0_ns, t1_ns=t1_ns)


def leaf_kinds(p) -> np.ndarray:
    """Per sample row: the code (index in KINDS) of its leaf frame's kind."""
    a = p.arrays()
    kcode = p.funcs["kind"].cat.codes.to_numpy().astype(_I64)
    return kcode[a["stack_func"][p.samples["stack"].to_numpy()]]


def timeline_bins(t, bins: int, t0: int, t1: int) -> np.ndarray:
    """The timeline bin (0..bins-1) of each time ``t`` (ns) on the strip from ``t0`` to ``t1``."""
    span = max(t1 - t0, 1)
    b = np.subtract(np.asarray(t), t0, dtype=_I64)     # one array, worked on in place
    b *= bins
    b //= span + 1
    return np.clip(b, 0, bins - 1, out=b)


def timeline_counts(t, w, leafk, bins: int = 200, *, t0_ns=None, t1_ns=None, bin_of=None) -> pd.DataFrame:
    """``timeline`` from per-sample arrays: times (ns), weights and leaf kind codes (< 0: not counted);
    ``bin_of``: the samples' bins (:func:`timeline_bins`), when known."""
    t = np.asarray(t)
    t0 = int(t.min()) if t0_ns is None else int(t0_ns)
    t1 = int(t.max()) if t1_ns is None else int(t1_ns)
    span = max(t1 - t0, 1)
    b = timeline_bins(t, bins, t0, t1) if bin_of is None else bin_of
    nk = len(KINDS)
    # per sample: its bin's row and its kind code + 1, 0 for samples not counted (a column dropped)
    cell = b * (nk + 1)
    cell += leafk
    cell += 1
    m = np.bincount(cell, weights=w, minlength=bins * (nk + 1)).reshape(bins, nk + 1)[:, 1:]
    width = (span + 1) / bins / 1e6
    out = pd.DataFrame({"t0_ms": np.arange(bins) * width, "width_ms": np.full(bins, width)})
    for k in range(nk):
        if m[:, k].any():
            out[KINDS[k]] = m[:, k].astype(_I64)
    out.attrs["t0_ns"] = t0
    out.attrs["t1_ns"] = t1
    return out


def timeline_figure(tl: pd.DataFrame, *, height: int = 120, selected_ms=None) -> dict:
    data = []
    for k in KINDS:
        if k in tl.columns:
            data.append({"type": "bar", "name": k, "x": (tl["t0_ms"] + tl["width_ms"] / 2).round(3).tolist(),
                         "y": tl[k].tolist(), "width": float(tl["width_ms"].iat[0]),
                         "marker": {"color": KIND_COLORS[k], "line": {"width": 0}},
                         "hovertemplate": f"{k}: %{{y:,}} at %{{x:.0f}} ms<extra></extra>"})
    layout = {"barmode": "stack", "height": height, "bargap": 0,
              "margin": {"l": 40, "r": 4, "t": 4, "b": 28}, "dragmode": "select", "selectdirection": "h",
              "xaxis": {"title": {"text": "ms", "standoff": 2}, "fixedrange": True},
              "yaxis": {"fixedrange": True}, "showlegend": True,
              "legend": {"orientation": "h", "y": 1.15, "x": 0, "font": {"size": 10}}}
    if selected_ms is not None:
        a, b = selected_ms
        layout["shapes"] = [{"type": "rect", "xref": "x", "yref": "y domain", "x0": a, "x1": b, "y0": 0, "y1": 1,
                             "fillcolor": "rgba(40,120,255,0.12)", "line": {"width": 1, "color": "#2878ff"}}]
    return {"data": data, "layout": layout}


# ------------------------------------------------------------------ diffs

def diff_colors(d, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per function of ``p`` (the drawn side, possibly transformed): colour, the change in
    points that decided its row (``delta_pp``, whose sign is the status's) and significance, from the diff table joined on (name, file, line).

    Red grew, blue shrank (intensity by the size of the change), grey when the
    change is within sampling noise (``Diff.significant()``'s test)."""
    t = d.table()
    key = pd.MultiIndex.from_arrays([t["name"].astype(str), t["file"].astype(str), t["line"].to_numpy()])
    f = p.funcs
    idx = pd.MultiIndex.from_arrays([f["name"].astype(str), f["file"].astype(str), f["line"].to_numpy()])
    pos = key.get_indexer(idx)
    ok = pos >= 0
    delta = np.where(ok, t["delta_pp"].to_numpy()[np.maximum(pos, 0)], 0.0)
    sig = np.where(ok, t["significant"].to_numpy(bool)[np.maximum(pos, 0)], False)
    return shade(delta, sig), delta, sig


def diff_shape(d):
    """The shape a diff flame graph draws: both profiles merged, so that work which vanished is
    drawn too.  Each distinct stack is as wide as the larger of its after weight and its before
    weight scaled onto the after profile by the diff's normalisation (``d.scale``); stacks only
    in the before profile keep their (scaled) before width.  Untimed, one sample row per stack."""
    from ..frames.combine import concat
    b, a = d.before, d.after
    m = concat([b, a], threads=["before", "after"])
    s = m.samples
    nst = len(m.stacks)
    st = s["stack"].to_numpy().astype(_I64)
    w = s["weight"].to_numpy().astype(float)
    is_a = (s["thread"].astype(str) == "after").to_numpy()
    wa = np.bincount(st[is_a], weights=w[is_a], minlength=nst)
    scale = d.scale * (a.total / max(len(a.samples), 1)) / (b.total / max(len(b.samples), 1)) \
        if (a.meta.get("unit") or "samples") != "samples" else d.scale
    wb = np.bincount(st[~is_a], weights=w[~is_a], minlength=nst) * scale
    wt = np.maximum(wa, np.round(wb))
    keep = np.flatnonzero(wt > 0)
    thread = str(a.samples["thread"].cat.categories[0]) if len(a.samples) else "main"
    from ..frames.ops import with_new_meta, with_samples
    q = with_samples(m, pd.DataFrame({"stack": keep.astype(_I64), "time_ns": np.zeros(len(keep), _I64),
                                      "weight": wt[keep].astype(_I64),
                                      "thread": pd.Categorical([thread] * len(keep))}))
    return with_new_meta(q, dict(a.meta, timed=False, diff_shape=True))


def shade(delta: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """Colours for changes in points: grey when not significant, else red/blue from pale to full
    by |delta| relative to the largest significant change (the SVG writer's shading)."""
    return diff_shade(delta, sig).astype(object)


def code_for(name: str, transforms, view: dict) -> str:
    """Replayable code for a view: ``p.apply([...]).flame(...)``."""
    expr = name
    if transforms:
        expr += ".apply(" + repr([str(t) for t in transforms]) + ")"
    opts = ", ".join(f"{k}={v!r}" for k, v in view.items())
    return f"{expr}.flame({opts})"
