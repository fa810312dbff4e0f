"""Derived views of a Profile: call trees, top table, long view, flame layout.

All vectorised with numpy; loops run over depth levels, never over samples,
stacks or nodes.  pandas is imported by the functions that return DataFrames;
:func:`flame_layout_arrays` (the SVG writer's) needs only numpy.
"""
from __future__ import annotations

import numpy as np

from .stacktable import level_segments, paths_to_stacks, restack, stack_paths, unique_sorted

_I64 = np.int64


def func_tree(p):
    """Function-level top-down tree: stacks merged where the functions agree.

    Returns (prefix, func, depth, stack_to_node)."""
    c = p._cache.get("func_tree")
    if c is None:
        a = p.arrays()
        c = restack(a["prefix"], a["frame"], a["depth"], a["frame_func"])
        p._cache["func_tree"] = c
    return c


def accumulate_subtrees(prefix: np.ndarray, depth: np.ndarray, self_w: np.ndarray) -> np.ndarray:
    """Subtree totals: self plus all descendants, children before parents."""
    total = self_w.astype(_I64)  # a copy: the caller's weights are not written
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
        prefix, func, depth, s2n = func_tree(p)
        sw = p.stack_weights()
        self_w = np.bincount(s2n, weights=sw, minlength=len(prefix)).astype(_I64) if len(s2n) else np.zeros(len(prefix), _I64)
        total = accumulate_subtrees(prefix, depth, self_w)
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
        total = accumulate_subtrees(prefix, depth, dep)
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
    prefix, func, depth, s2n = func_tree(p)
    tw = np.bincount(s2n, weights=sw, minlength=len(prefix)).astype(_I64) if len(s2n) else np.zeros(0, _I64)
    total_node = accumulate_subtrees(prefix, depth, tw)
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
    "other" node and their descendants are not drawn.  ``tree``: a
    ``call_tree`` DataFrame or a dict of its columns (default: :func:`layout_tree`
    of ``p``); see :func:`flame_layout_arrays`.
    """
    return layout_frame(p, flame_layout_arrays(p, minwidth=minwidth, inverted=inverted, tree=tree))


def layout_frame(p, out: dict | None):
    """:func:`flame_layout`'s DataFrame of :func:`flame_layout_arrays`' columns ``out`` (``label`` and
    ``kind`` added)."""
    import pandas as pd
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


def _frozen(p) -> bool:
    return bool(p.__dict__.get("_frozen"))


def one_frame_per_function(p) -> bool:
    """Whether the frames the stacks use are of distinct functions (folded, cpuprofile and most
    captures): the function-level call tree is then the stack table itself (:func:`func_tree`
    keeps it as it is)."""
    c = p._cache.get("one_frame_per_function")
    if c is None:
        frame_func = p.arrays("frames")["func"]
        used = np.zeros(len(frame_func), bool)
        used[p.arrays("stacks")["frame"]] = True
        m = frame_func[used]
        c = p._cache["one_frame_per_function"] = len(unique_sorted(m)) == len(m)
    return c


def stack_subtree_totals(p) -> np.ndarray:
    """Per stack of ``p``: the weight of the samples at it or under it (cached)."""
    c = p._cache.get("stack_subtree_totals")
    if c is None:
        a = p.arrays("stacks")
        c = p._cache["stack_subtree_totals"] = accumulate_subtrees(a["prefix"], a["depth"], p.stack_weights())
    return c


def stack_tree_is_call_tree(p, inverted: bool = False) -> bool:
    """Whether the top-down call tree of ``p`` is its stack table (a validated profile with one frame
    per function)."""
    return not inverted and _frozen(p) and p._nrows("stacks") > 0 and one_frame_per_function(p)


def layout_tree(p, inverted: bool = False, totals=None) -> dict:
    """The call tree ``call_tree(p, inverted)`` as arrays ``parent``, ``depth``, ``func``, ``self``,
    ``total`` and ``subtree_totals`` (True: every total is its subtree's); node ids may differ from
    call_tree's, its shape, functions and weights do not.  Where :func:`stack_tree_is_call_tree`, it is
    the stack table with its subtree weights (``totals()`` when given, else
    :func:`stack_subtree_totals`): no call tree is built."""
    if stack_tree_is_call_tree(p, inverted):
        # the stack table's own columns (``arrays()`` would add int64 copies of them: 11 MB for 350 k stacks)
        a = p.arrays("stacks")
        func = p.arrays("frames")["func"][a["frame"]]
        return {"parent": a["prefix"], "depth": a["depth"], "func": func,
                "self": p.stack_weights(), "total": stack_subtree_totals(p) if totals is None else totals(),
                "subtree_totals": True}
    return dict(_tree_arrays(p, inverted=inverted), subtree_totals=True)


def label_ranks(p) -> np.ndarray:
    """Alphabetical rank of each function's display name (the order of siblings in a flame graph)."""
    c = p._cache.get("label_ranks")
    if c is None:
        labels = p.func_labels()
        order = np.argsort(labels.astype(str), kind="stable") if len(labels) else np.empty(0, _I64)
        c = np.empty(len(labels), _I64)
        c[order] = np.arange(len(labels))
        p._cache["label_ranks"] = c
    return c


def flame_layout_arrays(p, *, minwidth: float = 0.0, inverted: bool = False, tree=None) -> dict | None:
    """:func:`flame_layout`'s columns but ``label`` and ``kind``, as numpy arrays (None when nothing is
    drawn); ``tree``: a call_tree DataFrame or a dict of its columns (default: :func:`layout_tree`).

    Drawn: the nodes whose total reaches ``minwidth`` of the whole (all of them when it is 0) under
    drawn parents, and per drawn parent (or at the root level) one "other" node for its narrower
    children.  In a tree of subtree totals a child never outweighs its parent, so the drawn nodes
    are those wide enough, selected at once; then the levels are walked over the drawn nodes only
    (a few thousand, of millions of stacks).  Siblings are of distinct functions, so the order of
    node ids never decides anything."""
    t = tree if tree is not None else layout_tree(p, inverted=inverted)
    parent = np.asarray(t["parent"])
    depth = np.asarray(t["depth"]).astype(_I64, copy=False)  # read only
    total = np.asarray(t["total"])
    selfw = np.asarray(t["self"])
    func = np.asarray(t["func"])
    n = len(parent)
    if n == 0:
        return None
    roots = depth == 0
    whole = float(total[roots].sum())
    thr = minwidth * whole
    nlabels = len(p.func_labels())
    if thr > 0:
        big = total >= thr
        has_parent = parent >= 0
        if not (isinstance(t, dict) and t.get("subtree_totals")) and \
                not (total[has_parent] <= total[parent[has_parent]]).all():
            # a child may outweigh its parent: drawn are the wide nodes under drawn parents
            for d, idx in level_segments(depth):
                if d:
                    big[idx] &= big[parent[idx]]
        small = ~big & (roots | big[np.maximum(parent, 0)])
        b_idx = np.flatnonzero(big)
        s_idx = np.flatnonzero(small)
    else:
        b_idx = np.arange(n)
        s_idx = np.empty(0, _I64)
    # one "other" node per parent of narrow children of drawn nodes (parent -1: the root level)
    if len(s_idx):
        sp = parent[s_idx]
        o = np.argsort(sp, kind="stable")
        sp, s_idx = sp[o], s_idx[o]
        first = np.flatnonzero(np.concatenate(([True], sp[1:] != sp[:-1])))
        o_cnt = np.diff(np.append(first, len(sp))).astype(_I64)
        o_tot = np.add.reduceat(total[s_idx].astype(_I64), first)
        o_self = np.add.reduceat(selfw[s_idx].astype(_I64), first)
        o_par = sp[first]                       # tree node of the parent, -1 at the root level
        o_depth = np.where(o_par >= 0, depth[np.maximum(o_par, 0)] + 1, 0)
    else:
        o_par = o_depth = o_cnt = o_tot = o_self = np.empty(0, _I64)
    # the drawn entries: tree node (-1 for "other"), parent tree node, depth, sort rank
    e_node = np.concatenate([b_idx, np.full(len(o_par), -1, _I64)])
    e_ptree = np.concatenate([parent[b_idx], o_par])
    e_depth = np.concatenate([depth[b_idx], o_depth])
    e_func = np.concatenate([func[b_idx].astype(_I64), np.full(len(o_par), -1, _I64)])
    e_tot = np.concatenate([total[b_idx], o_tot]).astype(_I64)
    e_self = np.concatenate([selfw[b_idx], o_self]).astype(_I64)
    e_other = np.concatenate([np.zeros(len(b_idx), _I64), o_cnt])
    rank = label_ranks(p)
    e_rank = np.where(e_func >= 0, rank[np.maximum(e_func, 0)] if len(rank) else 0, nlabels)
    m = len(e_node)
    lay_of_node = np.full(n, -1, _I64)
    out_order = np.empty(m, _I64)     # layout row -> entry
    e_play = np.empty(m, _I64)        # layout row of the parent
    x0_row = np.empty(m, np.float64)
    count = 0
    for _d, sub in level_segments(e_depth):
        pt = e_ptree[sub]
        play = np.where(pt >= 0, lay_of_node[np.maximum(pt, 0)], -1)
        srt = np.lexsort((e_rank[sub], play))
        sub, play = sub[srt], play[srt]
        tot = e_tot[sub]
        excl = np.cumsum(tot) - tot
        start = np.ones(len(sub), bool)
        start[1:] = play[1:] != play[:-1]
        first = np.maximum.accumulate(np.where(start, np.arange(len(sub)), 0))
        base = np.where(play >= 0, x0_row[np.maximum(play, 0)], 0.0)
        rows = np.arange(count, count + len(sub))
        x0_row[rows] = base + (excl - excl[first])
        e_play[rows] = play
        out_order[rows] = sub
        node = e_node[sub]
        has = node >= 0
        lay_of_node[node[has]] = rows[has]
        count += len(sub)
    o = out_order
    tot_o = e_tot[o]
    return {"parent": e_play, "depth": e_depth[o].astype(np.int32), "x0": x0_row.astype(np.float64),
            "x1": (x0_row + tot_o).astype(np.float64), "total": tot_o, "self": e_self[o], "func": e_func[o],
            "other": e_other[o]}
