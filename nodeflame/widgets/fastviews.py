"""The explorer's hot paths over a call tree: the same results as :mod:`nodeflame.frames.views`,
computed with fewer passes.

The explorer redraws after every structural control (ignore, hide, merge recursion, thread, time
slice) on profiles of hundreds of thousands of stacks; there, two functions of ``frames.views``
were most of a control's cost:

* ``func_self_total`` (the top table) marks the nodes whose function recurs among their ancestors
  by walking every node towards the root (work = the sum of all depths, ~10 M steps for 350 k
  nodes of depth ~30).  :func:`recursive_in_tour` finds them from an Euler tour instead: a node
  recurs iff an earlier (pre-order) node of its function ends after it starts; one linear-time
  (radix) sort by function.  The flags are a fact of each path that the transforms keep, so a
  transform's result takes them from its input (``transforms.path_fact``).
* ``flame_layout`` walks every depth level over every node.  A node is drawn iff its total
  reaches the minimum width (a child never outweighs its parent, so its ancestors are drawn too);
  :func:`flame_layout` selects those at once, gathers the narrow children of drawn nodes into
  their "other" nodes, and walks the levels over the few thousand drawn nodes only.

Where the stacks' frames are of distinct functions (one frame per function: folded, cpuprofile and
most captures), the top-down call tree is the stack table itself (``views._func_tree`` keeps it
as it is), so :func:`tree_arrays` takes it from there, with subtree weights as prefix sums over
the table's Euler tour (``transforms.stack_tour``): no call tree is built.

Everything gives exactly what ``frames.views`` gives (tests/test_widgets_fastpaths.py compares
them on generated and real profiles).  Results are cached per profile (weakly: a profile that
goes, goes with its entries).
"""
from __future__ import annotations

import weakref

import numpy as np
import pandas as pd

from ..frames.stacktable import level_segments
from ..frames.transforms import euler_tour, known_tour, path_fact, stack_levels, stack_tour, unique_inverse
from ..frames.views import call_tree, top as views_top

_I64 = np.int64
_MEMO: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def memo(p, key, make):
    """``make()``, cached for the profile ``p`` under ``key`` (dropped with ``p``)."""
    try:
        d = _MEMO.get(p)
        if d is None:
            d = _MEMO[p] = {}
    except TypeError:  # not weakly referable: no cache
        return make()
    if key not in d:
        d[key] = make()
    return d[key]


def recursive_nodes(parent: np.ndarray, func: np.ndarray, depth: np.ndarray, nfuncs: int) -> np.ndarray:
    """Per node: does its function appear among its ancestors (``frames.views.recursive_nodes``)."""
    parent = np.asarray(parent, _I64)
    if len(parent) < 2:
        return np.zeros(len(parent), bool)
    return recursive_in_tour(euler_tour(parent, list(level_segments(np.asarray(depth)))), func, nfuncs)


def recursive_in_tour(tour, func: np.ndarray, nfuncs: int) -> np.ndarray:
    """Per node of a forest given by its Euler ``tour`` (pre-order index, subtree size): does its
    function (``func``, per node) appear among its ancestors.

    In pre-order, the nodes of one function that contain node v are the earlier ones whose subtree
    ends after v's start; so sorting the nodes by (function, pre-order) and keeping the running
    maximum of the subtree ends answers every node at once."""
    tin, size = tour
    func = np.asarray(func, _I64)
    n = len(tin)
    rec = np.zeros(n, bool)
    if n < 2:
        return rec
    order = np.empty(n, _I64)
    order[tin] = np.arange(n)                    # the nodes in pre-order
    f = func[order]
    key = f.astype(np.int16) if nfuncs < 32767 else f   # 16-bit keys: numpy sorts them by radix
    nodes = order[np.argsort(key, kind="stable")]   # by function, pre-order within one
    fs = func[nodes] * (n + 1)
    start = fs + tin[nodes]
    # a function's offset fs keeps the running maximum of earlier functions below its own starts
    run = np.maximum.accumulate(start + size[nodes])
    rec[nodes[1:]] = run[:-1] > start[1:]
    return rec


def _frozen(p) -> bool:
    return bool(p.__dict__.get("_frozen"))


def subtree_weights(p) -> np.ndarray:
    """Per stack of a validated profile: the weight of the samples at it or under it (prefix sums
    of the stack weights over the table's Euler tour when it is known, else summed up level by
    level)."""
    def make():
        sw = p.stack_weights()
        tour = known_tour(p)
        if tour is None:
            total = sw.astype(_I64).copy()
            prefix = p.arrays()["prefix"]
            for d, idx in reversed(stack_levels(p)):
                if d == 0:
                    break
                np.add.at(total, prefix[idx], total[idx])
            return total
        tin, size = tour
        w = np.zeros(len(tin) + 1, _I64)
        w[tin + 1] = sw
        np.cumsum(w, out=w)
        return w[tin + size] - w[tin]
    return memo(p, "subtree_weights", make)


def one_frame_per_function(p) -> bool:
    """Whether the frames the stacks use are of distinct functions: the function-level call tree is
    then the stack table itself (``frames.views._func_tree`` keeps it as it is)."""
    def make():
        a = p.arrays()
        used = np.zeros(len(a["frame_func"]), bool)
        used[a["frame"]] = True
        m = a["frame_func"][used]
        return len(np.unique(m)) == len(m)
    return memo(p, "one_frame_per_function", make)


def tree_arrays(p, inverted: bool = False) -> dict:
    """The call tree ``frames.views.call_tree(p, inverted)`` as arrays ``parent``, ``depth``,
    ``func``, ``self``, ``total`` (node ids may differ; its shape, functions and weights do not).
    Top-down over a validated profile with one frame per function it is the stack table with
    subtree weights from the tour: no pass per depth level."""
    if not inverted and _frozen(p) and len(p.stacks) and one_frame_per_function(p):
        a = p.arrays()
        return {"parent": a["prefix"], "depth": a["depth"], "func": a["stack_func"],
                "self": p.stack_weights(), "total": subtree_weights(p), "subtree_totals": True}
    t = call_tree(p, inverted=inverted)
    out = {k: t[k].to_numpy() for k in ("parent", "depth", "func", "self", "total")}
    out["subtree_totals"] = True
    return out


def func_self_total(p) -> tuple[np.ndarray, np.ndarray]:
    """(self, total) weight per function, total counting recursion once per sample: equal to
    ``frames.views.func_self_total(p)``.  A function's total is the weight under its outermost
    occurrences: over the stack table of a validated profile (stack-level recursion is
    function-level recursion: it is a fact of the path), else over the call tree."""
    def make():
        nf = len(p.funcs)
        a = p.arrays()
        sw = p.stack_weights()
        self_f = np.bincount(a["stack_func"], weights=sw, minlength=nf).astype(_I64) if len(sw) \
            else np.zeros(nf, _I64)
        if _frozen(p) and len(sw):
            func, total = a["stack_func"], subtree_weights(p)
            keep = ~path_fact(p, "recursive", lambda: recursive_in_tour(stack_tour(p), func, nf))
        else:
            t = call_tree(p)
            func, total = t["func"].to_numpy(), t["total"].to_numpy()
            keep = ~recursive_nodes(t["parent"].to_numpy(), func, t["depth"].to_numpy(), nf)
        total_f = np.bincount(func[keep], weights=total[keep], minlength=nf).astype(_I64)
        return self_f, total_f
    return memo(p, "func_self_total", make)


def top(p, n: int | None = 20, by: str = "self") -> pd.DataFrame:
    """``p.top(n, by)`` (``frames.views.top``) from :func:`func_self_total`."""
    return views_top(p, n, by, sums=func_self_total(p) if by in ("self", "total") else None)


def inverted_tree(p, min_total: float) -> dict:
    """The bottom-up call tree (``frames.views.call_tree(p, inverted=True)``) as :func:`tree_arrays`
    gives trees, grown only under nodes whose total reaches ``min_total``: every node at least that
    heavy, and every child of one, is there (which is all a flame layout with that minimum width,
    or a larger one, draws or sums into its "other" nodes); the rest is not built.

    Roots are the functions samples end in; a node's children are the callers of its path.  Each
    step moves every path still growing one frame towards the root and groups the paths by (node,
    calling function): one pass per depth, over the heavy part of the tree only (the whole inverted
    tree of a 350 k-stack profile has twice its nodes, nearly all of them below a pixel)."""
    a = p.arrays()
    prefix, sf = a["prefix"], a["stack_func"]
    sw = p.stack_weights()
    cur = np.flatnonzero(sw > 0)          # one growing path per leaf stack: the stack it has reached
    w = sw[cur].astype(_I64)
    nf = max(len(p.funcs), 1)
    parents, funcs, depths, totals = [], [], [], []
    count, d = 0, 0
    key = sf[cur].astype(_I64)            # roots: the leaf's function
    node_of = np.zeros(len(cur), _I64)
    while len(cur):
        uniq, grp = unique_inverse(key)
        tot = np.bincount(grp, weights=w, minlength=len(uniq)).astype(_I64)
        ids = count + np.arange(len(uniq))
        parents.append(uniq // nf - 1 if d else np.full(len(uniq), -1, _I64))
        funcs.append(uniq % nf)
        depths.append(np.full(len(uniq), d, _I64))
        totals.append(tot)
        count += len(uniq)
        # grow the paths under heavy nodes by one frame (towards the root of their stack)
        grow = tot[grp] >= min_total
        node_of = ids[grp[grow]]
        cur, w = prefix[cur[grow]], w[grow]
        alive = cur >= 0
        cur, w, node_of = cur[alive], w[alive], node_of[alive]
        key = (node_of + 1) * nf + sf[cur]
        d += 1
    if not count:
        z = np.empty(0, _I64)
        return {"parent": z, "depth": z, "func": z, "self": z, "total": z, "subtree_totals": True}
    depth = np.concatenate(depths)
    total = np.concatenate(totals)
    return {"parent": np.concatenate(parents), "depth": depth, "func": np.concatenate(funcs),
            "self": np.where(depth == 0, total, 0), "total": total, "subtree_totals": True}


def label_ranks(p) -> np.ndarray:
    """Alphabetical rank of each function's display name (the order of siblings in a flame graph)."""
    def make():
        labels = p.func_labels()
        order = np.argsort(labels.astype(str), kind="stable") if len(labels) else np.empty(0, _I64)
        rank = np.empty(len(labels), _I64)
        rank[order] = np.arange(len(labels))
        return rank
    return memo(p, "label_ranks", make)


def flame_layout(p, *, minwidth: float = 0.0, tree=None, inverted: bool = False) -> pd.DataFrame:
    """``frames.views.flame_layout(p, minwidth=..., tree=...)``: the same rows in the same order.
    ``tree``: a ``call_tree`` DataFrame or :func:`tree_arrays` (default: those of ``p``).

    Drawn: the nodes whose total reaches ``minwidth`` of the whole (all of them when it is 0),
    and per drawn parent (or at the root level) one "other" node for its narrower children.
    Siblings are of distinct functions, so the order of node ids never decides anything."""
    t = tree if tree is not None else tree_arrays(p, inverted=inverted)
    parent = np.asarray(t["parent"])
    depth = np.asarray(t["depth"]).astype(_I64)
    total = np.asarray(t["total"])
    selfw = np.asarray(t["self"])
    func = np.asarray(t["func"])
    n = len(parent)
    roots = depth == 0
    whole = float(total[roots].sum()) if n else 0.0
    thr = minwidth * whole
    labels = p.func_labels()
    if n == 0:
        return pd.DataFrame({"parent": [], "depth": [], "x0": [], "x1": [], "total": [], "self": [],
                             "func": [], "label": [], "kind": [], "other": []})
    has_parent = parent >= 0
    if not (isinstance(t, dict) and t.get("subtree_totals")) and \
            not (total[has_parent] <= total[parent[has_parent]]).all():   # not a tree of subtree totals
        from ..frames.views import flame_layout as slow
        return slow(p, minwidth=minwidth, tree=pd.DataFrame({k: np.asarray(t[k]) for k in
                                                            ("parent", "depth", "func", "self", "total")}))
    if thr > 0:
        big = total >= thr
        small = ~big & (roots | big[np.maximum(parent, 0)])
    else:
        big = np.ones(n, bool)
        small = np.zeros(n, bool)
    b_idx = np.flatnonzero(big)
    # one "other" node per parent of narrow drawn-level children (parent -1: the root level)
    s_idx = np.flatnonzero(small)
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
    e_rank = np.where(e_func >= 0, rank[np.maximum(e_func, 0)] if len(rank) else 0, len(labels))
    m = len(e_node)
    lay_of_node = np.full(n, -1, _I64)
    out_order = np.empty(m, _I64)     # layout row -> entry
    e_play = np.empty(m, _I64)        # layout row of the parent
    x0_row = np.empty(m, np.float64)
    count = 0
    for d, sub in level_segments(e_depth):
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
    func_o, other_o, tot_o = e_func[o], e_other[o], e_tot[o]
    fsafe = np.maximum(func_o, 0)
    kinds = p.funcs["kind"].astype(str).to_numpy(object)
    lab = np.where(func_o >= 0, labels[fsafe] if len(labels) else "", "other")
    lab = np.where(other_o > 0, np.char.add("other (", np.char.add(other_o.astype(str), " frames)")).astype(object),
                   lab)
    kind = np.where(func_o >= 0, kinds[fsafe] if len(kinds) else "", "other")
    x0 = x0_row
    return pd.DataFrame({
        "parent": e_play, "depth": e_depth[o].astype(np.int32),
        "x0": x0.astype(np.float64), "x1": (x0 + tot_o).astype(np.float64),
        "total": tot_o, "self": e_self[o], "func": func_o,
        "label": lab, "kind": kind, "other": other_o,
    })
