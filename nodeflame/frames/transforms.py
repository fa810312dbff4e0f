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
from .stacktable import level_segments, restack

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
            _parse_slice(t.arg)
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


def _stacks_containing(p, func_mask: np.ndarray) -> np.ndarray:
    """Per stack: does the path from the root to it contain a matching function?
    (``ops.stacks_containing``, over the profile's cached depth levels.)"""
    if not p.__dict__.get("_frozen"):
        from .ops import stacks_containing
        return stacks_containing(p, func_mask)
    a = p.arrays()
    fm = np.asarray(func_mask, bool)
    out = fm[a["stack_func"]] if len(a["stack_func"]) else np.zeros(0, bool)
    prefix = a["prefix"]
    for d, idx in _levels(p):
        if d > 0:     # a validated table: depth > 0 has a prefix
            out[idx] |= out[prefix[idx]]
    return out


def _filter_samples(p, mask, label):
    """``ops.select_samples(p, mask)``: the samples where ``mask`` is true, what they no longer reach
    dropped (:func:`_compact`)."""
    mask = np.asarray(mask, bool)
    if mask.all():
        return p
    a = p.arrays()
    return _compact(p, a["prefix"], a["frame"], a["depth"], p.samples[mask], p.lines, p.meta, _levels(p))


def _replace_stacks(p, prefix, frame, depth, old_to_new):
    """``ops.replace_stacks(p, prefix, frame, depth, old_to_new)``: ``p``'s samples and line ticks moved
    onto a transform's new stack table, then compacted (:func:`_compact`)."""
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
                    samples, lines, p.meta, None)


# Derived data of a profile the transforms reuse (its depth levels), kept as long as the profile is.
_MEMO: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _levels(p, depth=None) -> list:
    """``level_segments`` of ``p``'s stack depths (or of ``depth``) as a list, shallowest first.  A
    table interned level by level (every reader's, every transform's) has its depths in order:
    its levels are then runs, found without sorting."""
    if depth is None:
        try:
            hit = _MEMO.get(p)
        except TypeError:
            hit = None
        if hit is not None:
            return hit
        out = _levels(None, p.arrays()["depth"])
        try:
            _MEMO[p] = out
        except TypeError:
            pass
        return out
    depth = np.asarray(depth)
    if len(depth) == 0:
        return []
    if len(depth) > 1 and (depth[1:] < depth[:-1]).any():
        return list(level_segments(depth))
    bounds = np.flatnonzero(depth[1:] != depth[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(depth)]))
    return [(int(depth[s]), np.arange(s, e)) for s, e in zip(starts.tolist(), ends.tolist())]


def _compact(p, prefix, frame, depth, samples, lines, meta, lv):
    """``ops.compact(Profile(p.funcs, p.frames, <the stack table>, samples, meta, lines))``: stacks no
    sample (or line tick) reaches dropped, then the frames and functions no stack uses; everything
    renumbered keeping its order.  ``lv``: the table's depth levels (None: found here).

    The same tables as ``ops.compact``; a transform's result of a validated profile is valid by
    construction (a subset of its stacks closed under prefixes, or a table interned by ``restack``),
    so it is not validated again, only frozen as validated Profiles are.  An unvalidated input's
    result is validated, as before."""
    n = len(prefix)
    used = np.zeros(n, bool)
    used[samples["stack"].to_numpy()] = True
    if len(lines):
        used[lines["stack"].to_numpy()] = True
    if lv is None:
        lv = _levels(None, depth)
    for d, idx in reversed(lv):       # every ancestor of a used stack, deepest level first
        if d == 0:
            break
        par = prefix[idx[used[idx]]]
        used[par[par >= 0]] = True
    kept = np.flatnonzero(used)
    new_id = np.cumsum(used) - 1
    pre = prefix[kept]
    pre = np.where(pre >= 0, new_id[np.maximum(pre, 0)], -1)
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
    if p.__dict__.get("_frozen"):
        object.__setattr__(q, "_frozen", True)
    else:
        q.validate()
    return q


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
    pr, fr, de, o2n = restack(a["prefix"], a["frame"], a["depth"], frame_map)
    return _replace_stacks(p, pr, fr, de, o2n)


def merge_recursion(p, _arg: str = ""):
    """Collapse direct recursion: a frame whose function is its caller's merges into the caller.

    >>> r = nf.read(b"main;fib;fib;fib 2\\nmain;fib 1\\n", format="folded")
    >>> print(r.merge_recursion().text())
    Total samples: 3
    3 main
      3 fib
    """
    a = p.arrays()
    pr, fr, de, o2n = restack(a["prefix"], a["frame"], a["depth"], np.arange(len(a["frame_func"])),
                              collapse_same=a["frame_func"])
    return _replace_stacks(p, pr, fr, de, o2n)


def _parse_slice(arg: str):
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
    s, e = _parse_slice(arg)
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
    pr, fr2, de, o2n = restack(prefix, np.arange(n), a["depth"], per_stack)
    return _replace_stacks(q, pr, fr2, de, o2n)


_APPLY = {"focus": focus, "ignore": ignore, "hide": hide, "merge-recursion": merge_recursion,
          "collapse-package": collapse_package, "slice": time_slice, "thread": thread}
