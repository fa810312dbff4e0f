"""Derived views of a Profile: call trees, top table, long view, flame layout.

All vectorised with numpy; loops run over depth levels, never over samples,
stacks or nodes.  pandas is imported by the functions that return DataFrames;
:func:`flame_layout_arrays` (the SVG writer's) needs only numpy.
"""
from __future__ import annotations

import numpy as np

from .stacktable import level_segments, paths_to_stacks, restack, stack_paths

_I64 = np.int64


def _func_tree(p):
    """Function-level top-down tree: stacks merged where the functions agree.

    Returns (prefix, func, depth, stack_to_node)."""
    c = p._cache.get("func_tree")
    if c is None:
        a = p.arrays()
        c = restack(a["prefix"], a["frame"], a["depth"], a["frame_func"])
        p._cache["func_tree"] = c
    return c


def _accumulate(prefix: np.ndarray, depth: np.ndarray, self_w: np.ndarray) -> np.ndarray:
    """Subtree totals: self plus all descendants, children before parents."""
    total = self_w.astype(_I64).copy()
    if len(total) == 0:
        return total
    levels = list(level_segments(depth))
    for _d, idx in reversed(levels):
        par = prefix[idx]
        ok = par >= 0
        if ok.any():
            np.add.at(total, par[ok], total[idx[ok]])  # cost proportional to the level, not the tree
    return total


def take_cat(col, idx: np.ndarray):
    """``col[idx]`` for a categorical column, by codes (no string round trip)."""
    import pandas as pd
    return pd.Categorical.from_codes(col.cat.codes.to_numpy()[idx], dtype=col.dtype)


def _tree_frame(p, prefix, func, depth, self_w, total):
    import pandas as pd
    f = p.funcs
    fi = func.astype(_I64)
    return pd.DataFrame({
        "parent": prefix.astype(_I64),
        "depth": depth.astype(np.int32),
        "func": fi,
        "name": take_cat(f["name"], fi),
        "file": take_cat(f["file"], fi),
        "line": f["line"].to_numpy()[fi],
        "kind": take_cat(f["kind"], fi),
        "self": self_w.astype(_I64),
        "total": total.astype(_I64),
    }, copy=False)  # fresh arrays: no consolidation copy


def call_tree(p, inverted: bool = False):
    """Call tree by function; index = node id, parents before children.

    Top-down: a node per distinct root-first path of functions.  Bottom-up
    (``inverted``): roots are the functions samples ended in, children their
    callers; ``total`` of a node is the weight of samples whose stack ends with
    that path, and ``self`` is non-zero only at the roots."""
    key = f"tree_{inverted}"
    if key in p._cache:
        return p._cache[key]
    t = _tree_arrays(p, inverted)
    out = _tree_frame(p, t["parent"], t["func"], t["depth"], t["self"], t["total"])
    p._cache[key] = out
    return out


def _tree_arrays(p, inverted: bool = False) -> dict:
    """call_tree's columns parent, depth, func, self, total as numpy arrays (cached)."""
    key = f"tree_arrays_{inverted}"
    if key in p._cache:
        return p._cache[key]
    if not inverted:
        prefix, func, depth, s2n = _func_tree(p)
        sw = p.stack_weights()
        self_w = np.bincount(s2n, weights=sw, minlength=len(prefix)).astype(_I64) if len(s2n) else np.zeros(len(prefix), _I64)
        total = _accumulate(prefix, depth, self_w)
    else:
        a = p.arrays()
        sw = p.stack_weights()
        leaves = np.flatnonzero(sw > 0)
        offsets, flat = stack_paths(a["prefix"], leaves, a["depth"])
        # reverse each path: leaf first
        n = len(leaves)
        lengths = np.diff(offsets)
        path_of = np.repeat(np.arange(n), lengths)
        pos = np.arange(len(flat)) - offsets[:-1][path_of]
        rev = offsets[:-1][path_of] + (lengths[path_of] - 1 - pos)
        funcs_flat = a["stack_func"][flat[rev]]
        prefix, func, depth, path_node = paths_to_stacks(offsets, funcs_flat, len(p.funcs))
        # a path's weight belongs to every node on it: deposit at its end, accumulate up
        dep = np.bincount(path_node, weights=sw[leaves], minlength=len(prefix)).astype(_I64)
        total = _accumulate(prefix, depth, dep)
        self_w = np.where(depth == 0, total, 0)
    out = {"parent": prefix, "depth": depth, "func": func, "self": self_w, "total": total}
    p._cache[key] = out
    return out


def recursive_nodes(prefix: np.ndarray, func: np.ndarray) -> np.ndarray:
    """Per node of a function tree: does its function appear among its ancestors (recursion, counted
    once in totals)."""
    rec = np.zeros(len(prefix), bool)
    idx = np.flatnonzero(prefix >= 0)
    cur = prefix[idx]
    while len(idx):
        hit = func[cur] == func[idx]
        rec[idx[hit]] = True
        cur = prefix[cur]
        alive = (~hit) & (cur >= 0)
        idx, cur = idx[alive], cur[alive]
    return rec


def func_self_total(p):
    """(self, total) weight per function; total counts recursion once per sample."""
    c = p._cache.get("func_self_total")
    if c is not None:
        return c
    nf = len(p.funcs)
    a = p.arrays()
    sw = p.stack_weights()
    self_f = np.bincount(a["stack_func"], weights=sw, minlength=nf).astype(_I64) if len(sw) else np.zeros(nf, _I64)
    prefix, func, depth, s2n = _func_tree(p)
    tw = np.bincount(s2n, weights=sw, minlength=len(prefix)).astype(_I64) if len(s2n) else np.zeros(0, _I64)
    total_node = _accumulate(prefix, depth, tw)
    keep = ~recursive_nodes(prefix, func)
    total_f = np.bincount(func[keep], weights=total_node[keep], minlength=nf).astype(_I64)
    c = (self_f, total_f)
    p._cache["func_self_total"] = c
    return c


def top(p, n: int | None = 20, by: str = "self", sums=None):
    """Self and total per function, heaviest first, with shares of the whole.  ``sums``: the
    (self, total) arrays per function when the caller has them (default :func:`func_self_total`)."""
    if by not in ("self", "total"):
        raise ValueError("by must be 'self' or 'total'")
    import pandas as pd
    self_f, total_f = func_self_total(p) if sums is None else sums
    whole = max(p.total, 1)
    f = p.funcs
    df = pd.DataFrame({
        "name": f["name"], "file": f["file"], "line": f["line"], "kind": f["kind"], "package": f["package"],
        "self": self_f, "total": total_f,
        "self_pct": 100.0 * self_f / whole, "total_pct": 100.0 * total_f / whole,
    })
    df.index.name = "func"
    other = "total" if by == "self" else "self"
    df = df[(df["self"] > 0) | (df["total"] > 0)]
    df = df.sort_values([by, other], ascending=False, kind="stable")
    return df if n is None else df.head(n)


def long_view(p):
    """One row per (sample, depth), root first."""
    import pandas as pd
    a = p.arrays()
    s = p.samples
    sst = s["stack"].to_numpy().astype(_I64)
    uniq, inv = np.unique(sst, return_inverse=True)
    off_u, flat_u = stack_paths(a["prefix"], uniq, a["depth"])
    len_u = np.diff(off_u)
    lens = len_u[inv]
    sample = np.repeat(np.arange(len(s)), lens)
    start = np.repeat(off_u[:-1][inv], lens)
    row_start = np.repeat(np.cumsum(lens) - lens, lens)
    depth = np.arange(len(sample)) - row_start
    stack = flat_u[start + depth]
    frame = a["frame"][stack]
    func = a["frame_func"][frame]
    f = p.funcs
    return pd.DataFrame({
        "sample": sample, "depth": depth.astype(np.int32), "stack": stack, "frame": frame, "func": func,
        "name": take_cat(f["name"], func), "file": take_cat(f["file"], func),
        "line": p.frames["line"].to_numpy()[frame], "kind": take_cat(f["kind"], func),
        "package": take_cat(f["package"], func),
        "thread": take_cat(s["thread"], sample), "time_ns": s["time_ns"].to_numpy()[sample],
        "weight": s["weight"].to_numpy()[sample],
    })


def flame_layout(p, *, minwidth: float = 0.0, inverted: bool = False, tree=None):
    """Flame-graph rectangles for the call tree.

    Returns one row per drawn node (parents before children): ``parent``
    (row of the parent, -1 at the root level), ``depth``, ``x0``/``x1`` in
    weight units (the root level spans 0..total), ``total``, ``self``,
    ``func`` (-1 for an "other" node), ``label``, ``kind``, ``other`` (number
    of nodes merged into an "other" node, 0 otherwise).

    Siblings are ordered alphabetically by label (as flamegraph.pl does), an
    "other" node last.  Nodes narrower than ``minwidth`` (a fraction of the
    whole, e.g. 0.1 px / 1200 px) are merged per parent into one explicit
    "other" node and their descendants are not drawn.
    """
    import pandas as pd
    out = flame_layout_arrays(p, minwidth=minwidth, inverted=inverted, tree=tree)
    if out is None:
        return pd.DataFrame({"parent": [], "depth": [], "x0": [], "x1": [], "total": [], "self": [],
                             "func": [], "label": [], "kind": [], "other": []})
    labels = p.func_labels()
    kinds = p._strings("funcs", "kind")
    fsafe = np.maximum(out["func"], 0)
    lab = np.where(out["func"] >= 0, labels[fsafe] if len(labels) else "", "other")
    lab = np.where(out["other"] > 0, np.char.add("other (", np.char.add(out["other"].astype(str), " frames)")).astype(object), lab)
    kind = np.where(out["func"] >= 0, kinds[fsafe] if len(kinds) else "", "other")
    return pd.DataFrame({
        "parent": out["parent"], "depth": out["depth"], "x0": out["x0"], "x1": out["x1"],
        "total": out["total"], "self": out["self"], "func": out["func"],
        "label": lab, "kind": kind, "other": out["other"],
    })


def flame_layout_arrays(p, *, minwidth: float = 0.0, inverted: bool = False, tree=None) -> dict | None:
    """:func:`flame_layout`'s columns but ``label`` and ``kind``, as numpy arrays (None when nothing is
    drawn); ``tree``: a call_tree DataFrame or a dict of its columns (default: ``p``'s)."""
    t = tree if tree is not None else _tree_arrays(p, inverted=inverted)
    parent = np.asarray(t["parent"])
    depth = np.asarray(t["depth"]).astype(_I64)
    total = np.asarray(t["total"])
    selfw = np.asarray(t["self"])
    func = np.asarray(t["func"])
    whole = float(total[depth == 0].sum()) if len(parent) else 0.0
    thr = minwidth * whole
    labels = p.func_labels()
    # alphabetical rank of each function's label, computed once
    order = np.argsort(labels.astype(str), kind="stable") if len(labels) else np.empty(0, _I64)
    rank = np.empty(len(labels), _I64)
    rank[order] = np.arange(len(labels))

    lay_of_node = np.full(len(parent), -1, _I64)
    cols = {k: [] for k in ("parent", "depth", "x0", "total", "self", "func", "other")}
    count = 0
    x0_arr = np.zeros(2 * len(parent) + 1, np.float64)  # by layout id; at most one 'other' per node
    for d, idx in level_segments(depth):
        par = parent[idx]
        if d == 0:
            play = np.full(len(idx), -1, _I64)
        else:
            play = lay_of_node[par]
            vis = play >= 0
            idx, play = idx[vis], play[vis]
        if len(idx) == 0:
            break
        big = total[idx] >= thr if thr > 0 else np.ones(len(idx), bool)
        b_idx, b_play = idx[big], play[big]
        # "other" per parent for the small ones
        s_play = play[~big]
        if len(s_play):
            o_par, o_inv = np.unique(s_play, return_inverse=True)
            o_tot = np.bincount(o_inv, weights=total[idx[~big]]).astype(_I64)
            o_self = np.bincount(o_inv, weights=selfw[idx[~big]]).astype(_I64)
            o_cnt = np.bincount(o_inv).astype(_I64)
        else:
            o_par = np.empty(0, _I64)
            o_tot = o_self = o_cnt = np.empty(0, _I64)
        e_par = np.concatenate([b_play, o_par])
        e_tot = np.concatenate([total[b_idx], o_tot]).astype(_I64)
        e_self = np.concatenate([selfw[b_idx], o_self]).astype(_I64)
        e_func = np.concatenate([func[b_idx], np.full(len(o_par), -1, _I64)])
        e_other = np.concatenate([np.zeros(len(b_idx), _I64), o_cnt])
        e_node = np.concatenate([b_idx, np.full(len(o_par), -1, _I64)])
        e_rank = np.where(e_func >= 0, rank[np.maximum(e_func, 0)], len(labels))
        srt = np.lexsort((e_rank, e_par))
        e_par, e_tot, e_self, e_func, e_other, e_node = (x[srt] for x in (e_par, e_tot, e_self, e_func, e_other, e_node))
        cs = np.cumsum(e_tot)
        excl = cs - e_tot
        new_group = np.ones(len(e_par), bool)
        new_group[1:] = e_par[1:] != e_par[:-1]
        gstart = np.maximum.accumulate(np.where(new_group, np.arange(len(e_par)), 0))
        within = excl - excl[gstart]
        base = np.where(e_par >= 0, x0_arr[np.maximum(e_par, 0)], 0.0)
        x0 = base + within
        ids = np.arange(count, count + len(e_par))
        has = e_node >= 0
        lay_of_node[e_node[has]] = ids[has]
        count += len(e_par)
        x0_arr[ids] = x0
        for k, v in (("parent", e_par), ("depth", np.full(len(e_par), d, _I64)), ("total", e_tot),
                     ("self", e_self), ("func", e_func), ("other", e_other)):
            cols[k].append(v)
        cols["x0"].append(x0)
    if count == 0:
        return None
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["x0"] = out["x0"].astype(np.float64)
    out["x1"] = (out["x0"] + out["total"]).astype(np.float64)
    out["depth"] = out["depth"].astype(np.int32)
    return out
