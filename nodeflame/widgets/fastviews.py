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
* The flame layout is ``frames.views.flame_layout`` (re-exported here), the one the SVG writer
  draws with: it selects the drawn nodes at once and walks the levels over those only.

Where the stacks' frames are of distinct functions (one frame per function: folded, cpuprofile and
most captures), the top-down call tree is the stack table itself (``views.func_tree`` keeps it
as it is), so :func:`tree_arrays` takes it from there (``views.layout_tree``), with subtree weights
as prefix sums over the table's Euler tour when a transform kept it (``transforms.known_tour``): no
call tree is built.

Everything gives exactly what ``frames.views`` gives (tests/test_widgets_fastpaths.py compares
them on generated and real profiles).  Results are cached per profile (weakly: a profile that
goes, goes with its entries).
"""
from __future__ import annotations

import weakref

import numpy as np
import pandas as pd

from ..frames.stacktable import level_segments
from ..frames.transforms import euler_tour, known_tour, path_fact, stack_tour, unique_inverse
from ..frames.views import (call_tree, flame_layout, layout_tree, one_frame_per_function,  # noqa: F401
                            stack_subtree_totals, stack_tree_is_call_tree, top as views_top)

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
    of the stack weights over the table's Euler tour when it is known, else
    ``frames.views.stack_subtree_totals``, summed up level by level)."""
    def make():
        tour = known_tour(p)
        if tour is None:
            return stack_subtree_totals(p)
        sw = p.stack_weights()
        tin, size = tour
        w = np.zeros(len(tin) + 1, _I64)
        w[tin + 1] = sw
        np.cumsum(w, out=w)
        return w[tin + size] - w[tin]
    return memo(p, "subtree_weights", make)


def tree_arrays(p, inverted: bool = False) -> dict:
    """The call tree ``frames.views.call_tree(p, inverted)`` as arrays ``parent``, ``depth``,
    ``func``, ``self``, ``total`` (node ids may differ; its shape, functions and weights do not).
    Top-down over a validated profile with one frame per function it is the stack table
    (``frames.views.layout_tree``) with subtree weights from the tour: no pass per depth level."""
    if stack_tree_is_call_tree(p, inverted):
        return layout_tree(p, totals=lambda: subtree_weights(p))
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
