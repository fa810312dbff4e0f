"""Transforms: functions from Profile to a new Profile, with a stable string form.

Each transform is written ``name=argument`` (``merge-recursion`` takes none;
``collapse-package`` alone collapses every package), so a list of them can be
saved, printed and replayed::

    p2 = p.apply(["focus=^handle", "hide=^node:internal", "merge-recursion"])
    p2.meta["transforms"]   # ['focus=^handle', 'hide=^node:internal', 'merge-recursion']

Patterns are Python regular expressions searched in a function's display
name, ``name file:line`` (so ``node_modules/express`` or ``:42$`` work too).

The examples below are doctests (the test suite runs them); each transform's
example starts from this profile ``p``:

>>> import nodeflame as nf
>>> p = nf.read(b"main;work;parse 3\\nmain;work;gc 1\\nmain;idle 2\\n", format="folded")
>>> print(p.text())
Total samples: 6
6 main
  4 work
    3 parse
    1 gc
  2 idle
"""
from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .ops import with_meta
from .errors import TransformError
from .profile import Profile
from .stacktable import level_segments, restack, unique_inverse  # noqa: F401  (unique_inverse: public here too)

NAMES = ("focus", "ignore", "hide", "merge-recursion", "collapse-package", "slice", "thread")
# transforms whose argument may be empty, written without '=' then
_BARE = ("merge-recursion", "collapse-package")
NODE_INTERNALS = "node internals"   # the package name collapse-package gives node's own JS (node:...)


@dataclass(frozen=True)
class Transform:
    name: str
    arg: str = ""

    def __str__(self) -> str:
        return self.name if self.name in _BARE and not self.arg else f"{self.name}={self.arg}"

    @classmethod
    def parse(cls, spec) -> "Transform":
        if isinstance(spec, Transform):
            return spec
        if isinstance(spec, tuple) and len(spec) == 2:
            name, arg = spec
        elif isinstance(spec, str):
            name, _, arg = spec.partition("=")
        else:
            raise TransformError(f"cannot read {spec!r} as a transform; expected 'name=argument'")
        name = name.strip()
        if name not in NAMES:
            raise TransformError(f"unknown transform {name!r}; expected one of {', '.join(NAMES)}")
        t = cls(name, str(arg))
        if name in ("focus", "ignore", "hide", "thread", "collapse-package"):
            try:
                re.compile(t.arg)
            except re.error as e:
                raise TransformError(f"{t}: invalid regular expression: {e}") from None
        if name == "slice":
            parse_slice(t.arg)
        return t

    def __call__(self, p):
        return _APPLY[self.name](p, self.arg)


def parse_list(specs) -> list[Transform]:
    if isinstance(specs, (str, tuple, Transform)):
        specs = [specs]
    try:
        items = list(specs)
    except TypeError:
        raise TransformError(f"cannot read {specs!r} as a transform; expected 'name=argument' or a list of them") from None
    return [Transform.parse(s) for s in items]


def apply(p, specs):
    """Apply transforms in order; the result's ``meta['transforms']`` records them."""
    out = p
    for t in parse_list(specs):
        done = list(out.meta.get("transforms", []))
        out = with_meta(t(out), transforms=done + [str(t)])
    return out


# ---------------------------------------------------------------- helpers

def _matching_funcs(p, pattern: str) -> np.ndarray:
    rx = re.compile(pattern)
    labels = p.func_labels()
    return np.fromiter((rx.search(s) is not None for s in labels), bool, len(labels))


# ------------------------------------------------- the stack table: levels and Euler tour
#
# The transforms work on stack tables of hundreds of thousands of stacks, one after another in the
# explorer.  Two facts of a table make their passes cheap: its depth levels, and its Euler tour
# (each stack's pre-order index ``tin`` and subtree size: the stacks under s are those with
# ``tin[s] <= tin[t] < tin[s] + size[s]``).  With the tour, "is a matching function on the path"
# and "does a kept sample reach this stack" are prefix sums over the pre-order, with no pass per
# depth level; and the tour of a transform's result follows from its input's (a compacted table
# keeps the pre-order of the stacks it keeps; so does a restack in which no stacks merged).  The
# facts are kept with the table's arrays (``Profile.arrays()``, which every Profile made from
# another over the same stacks shares: with_meta, with_samples, an aggregate), as long as they live.

_FACTS: dict = {}   # id(prefix array) -> (weak reference to it, {fact: value})


def _facts(p) -> dict:
    """The cached facts of ``p``'s stack table (a dict to read and fill)."""
    arr = p.arrays()["prefix"]
    k = id(arr)
    hit = _FACTS.get(k)
    if hit is not None and hit[0]() is arr:
        return hit[1]
    d: dict = {}
    _FACTS[k] = (weakref.ref(arr, lambda _r, k=k: _FACTS.pop(k, None)), d)
    return d


def _levels_of(depth) -> list:
    """``level_segments(depth)`` as a list, shallowest first.  A table interned level by level
    (every reader's, every transform's) has its depths in order: its levels are runs then, found
    without sorting and given as slices (no index arrays to make or keep)."""
    depth = np.asarray(depth)
    if len(depth) == 0:
        return []
    if len(depth) > 1 and (depth[1:] < depth[:-1]).any():
        return list(level_segments(depth))
    bounds = np.flatnonzero(depth[1:] != depth[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(depth)]))
    return [(int(depth[s]), slice(s, e)) for s, e in zip(starts.tolist(), ends.tolist())]


def stack_levels(p) -> list:
    """The depth levels of ``p``'s stack table: [(depth, stack ids as an index array or a slice)],
    shallowest first (cached)."""
    f = _facts(p)
    if "levels" not in f:
        f["levels"] = _levels_of(p.arrays()["depth"])
    return f["levels"]


def euler_tour(parent, levels) -> tuple[np.ndarray, np.ndarray]:
    """(pre-order index, subtree size) of every node of the forest ``parent`` (-1 at roots; its depth
    ``levels`` as :func:`stack_levels` gives them): one pass per level up for the sizes, one down."""
    parent = np.asarray(parent, np.int64)
    n = len(parent)
    size = np.ones(n, np.int64)
    for d, idx in reversed(levels):
        if d == 0:
            break
        np.add.at(size, parent[idx], size[idx])
    tin = np.empty(n, np.int64)
    for d, idx in levels:
        par = parent[idx]
        if len(par) > 1 and (par[1:] < par[:-1]).any():   # siblings together (interned tables have them so)
            if isinstance(idx, slice):
                idx = np.arange(idx.start, idx.stop)
            o = np.argsort(par, kind="stable")
            idx, par = idx[o], par[o]
        sz = size[idx]
        excl = np.cumsum(sz) - sz
        if d == 0:
            tin[idx] = excl
            continue
        start = np.empty(len(par), bool)
        start[0] = True
        np.not_equal(par[1:], par[:-1], out=start[1:])
        first = np.maximum.accumulate(np.where(start, np.arange(len(par)), 0))
        tin[idx] = tin[par] + 1 + (excl - excl[first])
    return tin, size


def stack_tour(p) -> tuple[np.ndarray, np.ndarray]:
    """(pre-order index, subtree size) of every stack of ``p`` (a validated profile), cached; a
    transform's result inherits it from its input where it can (see above)."""
    f = _facts(p)
    if "tour" not in f:
        f["tour"] = euler_tour(p.arrays()["prefix"], stack_levels(p))
    return f["tour"]


def known_tour(p):
    """``p``'s tour if it is known already (inherited from a transform's input), else None."""
    return _facts(p).get("tour")


def path_fact(p, name: str, make):
    """A per-stack fact of ``p``'s table, cached with it (``make()`` computes it), that transforms keep:
    one that asks only about the stack's own function and which functions are above it, such as
    "its function recurs above it".  Filters keep every path; hide removes frames of other functions
    only; merge-recursion removes a frame only below one of the same function.  So the result of
    those (not collapse-package, which brings new functions) takes the fact from its input's table by
    indexing, when that one has it."""
    f = _facts(p)
    if name not in f:
        v = _inherited(f, name)
        f[name] = make() if v is None else v
    return f[name]


def _inherited(f: dict, name: str):
    o = f.get("origin")
    if o is None:
        return None
    src, idx = o
    v = src.get(name)
    if v is None:
        v = _inherited(src, name)
        if v is None:
            return None
        src[name] = v
    return v[idx]


def _under(tour, nodes, n) -> np.ndarray:
    """Per node of a table of ``n``: is it ``nodes`` or under one of them (prefix sums over the tour)."""
    tin, size = tour
    if not len(nodes):
        return np.zeros(n, bool)
    c = np.bincount(tin[nodes], minlength=n + 1) - np.bincount(tin[nodes] + size[nodes], minlength=n + 1)
    return np.cumsum(c)[tin] > 0


def _reaching(tour, marked, n) -> np.ndarray:
    """Per node: is one of the ``marked`` nodes (bool per node) it or under it."""
    tin, size = tour
    pre = np.zeros(n + 1, np.int64)
    pre[tin[marked] + 1] = 1
    np.cumsum(pre, out=pre)
    return pre[tin + size] > pre[tin]


def _kept_tour(tour, kept, n):
    """The tour of the table made of the ``kept`` nodes (ascending ids, closed under nearest kept
    ancestors), numbered 0..len(kept)-1 in their order: the old pre-order, restricted."""
    tin, size = tour
    pre = np.zeros(n + 1, np.int64)
    pre[tin[kept] + 1] = 1
    np.cumsum(pre, out=pre)
    t = tin[kept]
    return pre[t], pre[t + size[kept]] - pre[t]


def _frozen(p) -> bool:
    return bool(p.__dict__.get("_frozen"))


def paths_through(p, func_mask: np.ndarray) -> np.ndarray:
    """Per stack of ``p``: does the path from the root to it hold a function where ``func_mask``
    (bool per function) is true (``ops.stacks_containing``; from the table's tour when ``p`` is
    validated)."""
    return _stacks_containing(p, func_mask)


def _stacks_containing(p, func_mask: np.ndarray) -> np.ndarray:
    """Per stack: does the path from the root to it contain a matching function?
    (``ops.stacks_containing``, from the table's tour.)"""
    if not _frozen(p):
        from .ops import stacks_containing
        return stacks_containing(p, func_mask)
    a = p.arrays()
    fm = np.asarray(func_mask, bool)
    n = len(a["prefix"])
    if not n:
        return np.zeros(0, bool)
    return _under(stack_tour(p), np.flatnonzero(fm[a["stack_func"]]), n)


def _filter_samples(p, mask, label):
    """``ops.select_samples(p, mask)``: the samples where ``mask`` is true, what they no longer reach
    dropped (:func:`_compact`)."""
    mask = np.asarray(mask, bool)
    if mask.all():
        return p
    a = p.arrays()
    tour = stack_tour(p) if _frozen(p) and len(a["prefix"]) else None
    return _compact(p, a["prefix"], a["frame"], a["depth"], p.samples[mask], p.lines, p.meta, tour, True)


def _replace_stacks(p, prefix, frame, depth, old_to_new, tour=None, rep=None):
    """``ops.replace_stacks(p, prefix, frame, depth, old_to_new)``: ``p``'s samples and line ticks moved
    onto a transform's new stack table (whose tour is ``tour`` when known; ``rep``: a stack of ``p``
    behind each new one, when the transform kept the functions along every path), then compacted."""
    samples = p.samples
    new_stack = old_to_new[samples["stack"].to_numpy()]
    keep = new_stack >= 0
    samples = samples[keep] if not keep.all() else samples.copy(deep=False)
    samples["stack"] = new_stack[keep]
    lines = p.lines
    if len(lines):
        ls = old_to_new[lines["stack"].to_numpy()]
        lines = pd.DataFrame({"stack": ls, "line": lines["line"].to_numpy(), "ticks": lines["ticks"].to_numpy()})
        lines = lines[lines["stack"] >= 0].groupby(["stack", "line"], as_index=False)["ticks"].sum()
    return _compact(p, np.asarray(prefix, np.int64), np.asarray(frame, np.int64), np.asarray(depth, np.int64),
                    samples, lines, p.meta, tour, rep)


def _compact(p, prefix, frame, depth, samples, lines, meta, tour, origin=None):
    """``ops.compact(Profile(p.funcs, p.frames, <the stack table>, samples, meta, lines))``: stacks no
    sample (or line tick) reaches dropped, then the frames and functions no stack uses; everything
    renumbered keeping its order.  ``tour``: the table's Euler tour, when known (the result's is then
    known too); ``origin``: True when the table is ``p``'s own, or a stack of ``p``'s behind each of
    its stacks, when the functions along every path are ``p``'s (the result then inherits the path
    facts of ``p``'s table, see :func:`path_fact`).

    The same tables as ``ops.compact``; a transform's result of a validated profile is valid by
    construction (a subset of its stacks closed under prefixes, or a table interned by a restack),
    so it is not validated again, only frozen as validated Profiles are.  An unvalidated input's
    result is validated, as before."""
    n = len(prefix)
    used = np.zeros(n, bool)
    used[samples["stack"].to_numpy()] = True
    if len(lines):
        used[lines["stack"].to_numpy()] = True
    if tour is not None:
        used = _reaching(tour, used, n)
    else:
        for d, idx in reversed(_levels_of(depth)):   # every ancestor of a used stack, deepest first
            if d == 0:
                break
            par = prefix[idx][used[idx]]
            used[par[par >= 0]] = True
    kept = np.flatnonzero(used)
    new_id = np.empty(n + 1, np.int64)     # new_id[old + 1]; new_id[0] = -1 for "no prefix"
    new_id[0] = -1
    np.cumsum(used, out=new_id[1:])
    new_id[1:] -= 1
    pre = new_id[prefix[kept] + 1]
    new_id = new_id[1:]
    fr = frame[kept]
    fr_used = np.zeros(len(p.frames), bool)
    fr_used[fr] = True
    frames = p.frames[fr_used].reset_index(drop=True)
    fr = (np.cumsum(fr_used) - 1)[fr]
    fu = frames["func"].to_numpy()
    fu_used = np.zeros(len(p.funcs), bool)
    fu_used[fu] = True
    funcs = p.funcs[fu_used].reset_index(drop=True)
    frames["func"] = (np.cumsum(fu_used) - 1)[fu]
    for c in ("name", "file", "package"):
        funcs[c] = funcs[c].cat.remove_unused_categories()
    stacks = pd.DataFrame({"prefix": pre, "frame": fr, "depth": depth[kept]}, copy=False)
    samples = samples.reset_index(drop=True)
    samples["stack"] = new_id[samples["stack"].to_numpy()]
    if len(lines):
        lines = lines.reset_index(drop=True)
        lines["stack"] = new_id[lines["stack"].to_numpy()]
    q = Profile(funcs, frames, stacks, samples, meta, lines, validate=False)
    if not _frozen(p):
        return q.validate()
    object.__setattr__(q, "_frozen", True)
    facts = _facts(q)
    if tour is not None:
        facts["tour"] = _kept_tour(tour, kept, n) if len(kept) < n else tour
    if origin is not None:
        facts["origin"] = (_facts(p), kept if origin is True else origin[kept])
    return q


def resample(p, samples: pd.DataFrame, meta: dict | None = None):
    """``p``'s stacks under another samples table (its ``stack`` column names stacks of ``p``; extra
    columns kept), what those samples (and ``p``'s line ticks) no longer reach dropped: the tables
    ``ops.compact(ops.with_samples(p, samples))`` gives, under ``meta`` (default ``p``'s).  From a
    validated ``p`` its result is frozen without a second validation and keeps ``p``'s tour."""
    a = p.arrays()
    tour = stack_tour(p) if _frozen(p) and len(a["prefix"]) else None
    return _compact(p, a["prefix"], a["frame"], a["depth"], samples, p.lines, p.meta if meta is None else meta,
                    tour, True)


def _restack(p, frame, frame_map, collapse_same=None):
    """``stacktable.restack(prefix, frame, depth, frame_map, collapse_same)`` of ``p``'s stack table
    (``frame``: each stack's frame, ``p``'s or a per-stack stand-in), the same result, the new
    table's tour when no stacks merged (else None), and an old stack behind each new one.

    Which stacks are kept, and the new depth of each, come from the tour: a frame is dropped when the
    map drops it, or (``collapse_same``) when its key is its caller's (a dropped caller's key is the
    key of the nearest kept one above it, so the caller's own key decides); the new depth is the
    depth less the dropped frames above, a prefix sum.  The kept stacks are then interned by new depth
    level, in the order ``restack`` gives (a level already in order is taken as it is)."""
    a = p.arrays()
    prefix, depth = a["prefix"], a["depth"]
    frame = np.asarray(frame, np.int64)
    frame_map = np.asarray(frame_map, np.int64)
    n = len(prefix)
    nf_all = frame_map[frame] if n else np.empty(0, np.int64)
    keep = nf_all >= 0
    if not _frozen(p) or not n or (collapse_same is not None and not keep.all()):
        return (*restack(prefix, frame, depth, frame_map, collapse_same=collapse_same), None, None)
    if collapse_same is None and keep.all():
        used = np.zeros(len(frame_map), bool)
        used[frame] = True
        m = frame_map[used]
        if len(np.unique(m)) == len(m):   # distinct frames stay distinct: only frame ids change
            ident = np.arange(n, dtype=np.int64)
            return prefix.copy(), nf_all, depth.copy(), ident, stack_tour(p), ident
    if collapse_same is not None:
        key = np.asarray(collapse_same)[nf_all]
        keep = ~((prefix >= 0) & (key == key[np.maximum(prefix, 0)]))
    drop = np.flatnonzero(~keep)
    tour = stack_tour(p)
    # nearest kept stack on the path, self included: pointer jumping over the dropped ones
    anc = np.arange(n, dtype=np.int64)
    anc[drop] = prefix[drop]
    todo = drop
    while len(todo):
        up = anc[todo]
        todo = todo[(up >= 0) & ~keep[np.maximum(up, 0)]]
        anc[todo] = anc[anc[todo]]
    tin = tour[0]
    above = np.cumsum(np.bincount(tin[drop], minlength=n + 1) - np.bincount(tin[drop] + tour[1][drop],
                                                                             minlength=n + 1))
    kept = np.flatnonzero(keep)
    nd = depth[kept] - above[tin[kept]]
    nframes = int(frame_map.max()) + 1 if len(frame_map) else 1
    par_old = np.where(prefix[kept] >= 0, anc[np.maximum(prefix[kept], 0)], -1)   # kept stack above
    old_to_new = np.full(n, -1, np.int64)
    out_p = np.empty(len(kept), np.int64)
    out_f = np.empty(len(kept), np.int64)
    out_d = np.empty(len(kept), np.int64)
    # the kept stacks by new depth (radix sort of 16-bit depths), each level a run
    order = np.argsort(nd.astype(np.int16) if len(nd) and nd.max() < 32767 else nd, kind="stable")
    nd_l, kept_l, par_l = nd[order], kept[order], par_old[order]
    f_l = nf_all[kept_l]
    bounds = np.flatnonzero(nd_l[1:] != nd_l[:-1]) + 1
    c = 0
    for s, e in zip([0] + bounds.tolist(), bounds.tolist() + [len(nd_l)]) if len(nd_l) else ():
        d = int(nd_l[s])
        newp = old_to_new[par_l[s:e]] if d else np.full(e - s, -1, np.int64)   # (only roots lack one)
        key = (newp + 1) * nframes + f_l[s:e]
        if len(key) < 2 or (key[1:] > key[:-1]).all():
            uniq, ids = key, np.arange(c, c + len(key))
        else:
            uniq, ids = unique_inverse(key)
            ids += c
        k = len(uniq)
        out_p[c:c + k] = uniq // nframes - 1
        out_f[c:c + k] = uniq % nframes
        out_d[c:c + k] = d
        old_to_new[kept_l[s:e]] = ids
        c += k
    dropped = np.flatnonzero(~keep)
    ad = anc[dropped]
    old_to_new[dropped] = np.where(ad >= 0, old_to_new[np.maximum(ad, 0)], -1)
    new_tour = None
    if c == len(kept):   # nothing merged: the kept stacks in their old pre-order
        t_tin, t_size = _kept_tour(tour, kept, n)
        new_tour = (np.empty(c, np.int64), np.empty(c, np.int64))
        new_tour[0][old_to_new[kept]] = t_tin
        new_tour[1][old_to_new[kept]] = t_size
    behind = np.empty(c, np.int64)
    behind[old_to_new[kept]] = kept
    return out_p[:c].copy(), out_f[:c].copy(), out_d[:c].copy(), old_to_new, new_tour, behind


# ---------------------------------------------------------------- transforms

def focus(p, pattern: str):
    """Keep only samples whose stack contains a function matching ``pattern``.

    >>> print(p.focus("parse").text())
    Total samples: 3
    3 main
      3 work
        3 parse
    """
    keep = _stacks_containing(p, _matching_funcs(p, pattern))
    return _filter_samples(p, keep[p.samples["stack"].to_numpy()], "focus")


def ignore(p, pattern: str):
    """Drop samples whose stack contains a function matching ``pattern``.

    >>> print(p.ignore("work").text())
    Total samples: 2
    2 main
      2 idle
    """
    drop = _stacks_containing(p, _matching_funcs(p, pattern))
    return _filter_samples(p, ~drop[p.samples["stack"].to_numpy()], "ignore")


def hide(p, pattern: str):
    """Remove frames of functions matching ``pattern`` from every stack; their
    callees move up to the caller and stacks that become equal merge.  A sample
    left with no frame at all is dropped.

    >>> print(p.hide("^work$").text())
    Total samples: 6
    6 main
      3 parse
      2 idle
      1 gc
    """
    fm = _matching_funcs(p, pattern)
    a = p.arrays()
    frame_map = np.where(fm[a["frame_func"]], -1, np.arange(len(a["frame_func"])))
    return _replace_stacks(p, *_restack(p, a["frame"], frame_map))


def merge_recursion(p, _arg: str = ""):
    """Collapse direct recursion: a frame whose function is its caller's merges into the caller.

    >>> r = nf.read(b"main;fib;fib;fib 2\\nmain;fib 1\\n", format="folded")
    >>> print(r.merge_recursion().text())
    Total samples: 3
    3 main
      3 fib
    """
    a = p.arrays()
    return _replace_stacks(p, *_restack(p, a["frame"], np.arange(len(a["frame_func"])),
                                        collapse_same=a["frame_func"]))


def parse_slice(arg: str):
    """(start, end) in ns of a ``slice`` transform's argument 'START:END' (None where a side is
    empty); TransformError for anything else."""
    start, sep, end = arg.partition(":")
    if not sep:
        raise TransformError(f"slice={arg}: expected 'START:END' in nanoseconds (either may be empty)")
    try:
        s = int(start) if start.strip() else None
        e = int(end) if end.strip() else None
    except ValueError:
        raise TransformError(f"slice={arg}: START and END must be integers (nanoseconds)") from None
    return s, e


def time_slice(p, arg: str):
    """Keep samples with ``START <= time_ns < END`` (``slice=START:END``, either end open).

    Needs a timed profile (``meta['timed']``); folded and raw files carry no times.
    """
    if not p.meta.get("timed"):
        raise TransformError("slice: this profile has no sample times (folded/raw input); nothing to slice by")
    s, e = parse_slice(arg)
    t = p.samples["time_ns"].to_numpy()
    keep = np.ones(len(t), bool)
    if s is not None:
        keep &= t >= s
    if e is not None:
        keep &= t < e
    return _filter_samples(p, keep, "slice")


def thread(p, pattern: str):
    """Keep samples of threads whose name matches ``pattern``."""
    rx = re.compile(pattern)
    cats = p.samples["thread"].cat.categories
    ok = np.fromiter((rx.search(str(c)) is not None for c in cats), bool, len(cats))
    codes = p.samples["thread"].cat.codes.to_numpy()
    return _filter_samples(p, ok[codes] & (codes >= 0), "thread")


def _package_groups(p, pattern: str):
    """(group of each function or -1, group names): a function's package (node_modules/<pkg>) or,
    for node's own JavaScript (kind ``node``), :data:`NODE_INTERNALS`; only groups whose name the
    regular expression ``pattern`` searches ('' = every group)."""
    f = p.funcs
    pkg = f["package"].astype(str).to_numpy(object)
    kind = f["kind"].astype(str).to_numpy(object)
    key = np.where(pkg != "", pkg, np.where(kind == "node", NODE_INTERNALS, ""))
    names, inv = np.unique(key.astype(str), return_inverse=True)
    rx = re.compile(pattern) if pattern else None
    ok = np.array([n != "" and (rx is None or rx.search(n) is not None) for n in names], bool)
    kept = np.flatnonzero(ok)
    gid = np.full(len(names), -1, np.int64)
    gid[kept] = np.arange(len(kept))
    return gid[inv] if len(f) else np.empty(0, np.int64), [str(names[i]) for i in kept]


def collapse_package(p, pattern: str = ""):
    """Collapse each run of consecutive frames of one package into one frame named after it (the
    Firefox Profiler's "collapse library"): frames of ``node_modules/<pkg>`` become one frame
    ``<pkg>``, node's own JavaScript (``node:`` internals) one frame ``node internals``.  What the
    package calls outside itself (a callback into the application) stays above that frame; the
    time spent inside the package is its self time.  ``pattern`` (a regular expression over the
    package names, e.g. ``collapse-package=^express$``) limits it to some packages; written without
    an argument, ``collapse-package`` collapses every package and node's internals.  Line ticks of
    collapsed frames are dropped (their lines are in many files).

    >>> from nodeflame.frames.build import FrameTable, build_profile
    >>> ft = FrameTable()
    >>> main, cb = ft.add("main", "/app/main.js", 1), ft.add("cb", "/app/main.js", 5)
    >>> f, g = ft.add("f", "/app/node_modules/express/a.js", 3), ft.add("g", "/app/node_modules/express/b.js", 9)
    >>> tick = ft.add("processTicks", "node:internal/process/task_queues", 95)
    >>> d = build_profile(ft, [0, 4, 6, 10], [main, f, g, cb,  main, f,  tick, cb, f, g], weights=[2, 1, 4])
    >>> print(d.apply(["collapse-package"]).text())
    Total samples: 7
    4 node internals
      4 cb /app/main.js:5
        4 express node_modules/express
    3 main /app/main.js:1
      3 express node_modules/express
        2 cb /app/main.js:5
    <BLANKLINE>
    """
    group, names = _package_groups(p, pattern)
    if not names:
        return p
    a = p.arrays()
    prefix, frame = a["prefix"], a["frame"]
    n = len(prefix)
    f = p.funcs
    # one function and one frame per package, after the profile's own (reusing an equal function)
    new_funcs = pd.DataFrame({
        "name": names,
        "file": ["" if g == NODE_INTERNALS else f"node_modules/{g}" for g in names],
        "line": 0, "column": 0,
        "kind": ["node" if g == NODE_INTERNALS else "deps" for g in names],
        "package": ["" if g == NODE_INTERNALS else g for g in names]})
    old_key = pd.MultiIndex.from_frame(f[["name", "file", "line", "column", "kind"]].astype(
        {"name": str, "file": str, "kind": str}))
    new_key = pd.MultiIndex.from_frame(new_funcs[["name", "file", "line", "column", "kind"]])
    found = old_key.get_indexer(new_key)
    add = found < 0
    gfunc = np.where(add, len(f) + np.cumsum(add) - 1, found)
    funcs = pd.concat([f.astype({c: object for c in ("name", "file", "kind", "package")}),
                       new_funcs[add]], ignore_index=True)
    fr = p.frames
    new_frames = pd.DataFrame({"func": gfunc, "line": 0, "column": 0, "tier": "", "label": ""})
    for c in fr.columns:
        if c not in new_frames:
            new_frames[c] = fr[c].iloc[:0].reindex(range(len(names))).to_numpy() if len(fr) else None
    old_fkey = pd.MultiIndex.from_frame(fr[["func", "line", "column"]].astype(np.int64).assign(
        tier=fr["tier"].astype(str), label=fr["label"].astype(str)))
    new_fkey = pd.MultiIndex.from_frame(new_frames[["func", "line", "column", "tier", "label"]].astype(
        {"func": np.int64, "line": np.int64, "column": np.int64}))
    ffound = old_fkey.get_indexer(new_fkey)
    fadd = ffound < 0
    gframe = np.where(fadd, len(fr) + np.cumsum(fadd) - 1, ffound)
    frames = pd.concat([fr.astype({c: object for c in ("tier", "label")}), new_frames[fadd]],
                       ignore_index=True)
    # per stack: its package group, its new frame, and whether it continues its caller's run
    sg = group[a["frame_func"][frame]] if n else np.empty(0, np.int64)
    par_g = np.where(prefix >= 0, sg[np.maximum(prefix, 0)], -1)
    drop = (sg >= 0) & (par_g == sg)
    per_stack = np.where(drop, -1, np.where(sg >= 0, gframe[np.maximum(sg, 0)], frame))
    lines = p.lines
    if len(lines):
        lines = lines[sg[lines["stack"].to_numpy()] < 0]
    q = Profile(funcs, frames, p.stacks, p.samples, p.meta, lines, validate=False)
    pr, fr2, de, o2n, tour, _behind = _restack(p, np.arange(n), per_stack)
    return _replace_stacks(q, pr, fr2, de, o2n, tour)   # new functions on the paths: no path facts


_APPLY = {"focus": focus, "ignore": ignore, "hide": hide, "merge-recursion": merge_recursion,
          "collapse-package": collapse_package, "slice": time_slice, "thread": thread}
