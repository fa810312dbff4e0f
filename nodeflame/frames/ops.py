"""Profile -> Profile operations: the one place new Profiles are made from existing ones.

A Profile is not edited in place outside ``frames/``: a backend, a transform or the explorer that
needs fewer samples, other weights, merged samples or other metadata calls one of these and gets a
new Profile.  Tables are shared where they do not change (tables are never written in place, so
sharing is safe) and the derived cache is carried over only when what it derives from is unchanged.

==================  ===========================================================================
``select_samples``  the samples of a boolean mask, unused funcs/frames/stacks dropped
``with_meta``       the same tables under new metadata (``warnings=`` appends, others replace)
``with_new_meta``   the same tables under other metadata as a whole
``reweight``        other sample weights (a unit change, a perf event's period)
``with_samples``    a new samples table over the same stacks (extra columns, thread names), validated
``aggregate``       one row per (stack, thread): weights summed, times dropped
``stacks_containing``  per stack: is one of the given functions (or frames) on its path from the root
``compact``         funcs, frames and stacks no sample (or line tick) reaches dropped; renumbered
``replace_stacks``  a new stack table (a transform's), samples and line ticks moved onto it
==================  ===========================================================================
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from .profile import Profile
from .stacktable import level_segments

__all__ = ["select_samples", "with_meta", "with_new_meta", "with_samples", "reweight", "aggregate", "stacks_containing", "compact",
           "replace_stacks"]

_I64 = np.int64


def _share(p: Profile, *, samples=None, meta=None, keep_cache=True) -> Profile:
    """A Profile over ``p``'s tables (``samples``/``meta`` replaced when given), without re-validation;
    frozen when ``p`` is.  Its DataFrame objects are its own (shallow copies: the data is shared until
    written, when pandas copies it), so an edit in place of one Profile's table never reaches the other."""
    q = Profile.__new__(Profile)
    object.__setattr__(q, "funcs", p.funcs.copy(deep=False))
    object.__setattr__(q, "frames", p.frames.copy(deep=False))
    object.__setattr__(q, "stacks", p.stacks.copy(deep=False))
    object.__setattr__(q, "samples", (p.samples if samples is None else samples).copy(deep=False))
    object.__setattr__(q, "lines", p.lines.copy(deep=False))
    object.__setattr__(q, "meta", copy.deepcopy(p.meta) if meta is None else meta)
    # the cache derives from the four tables: keep what does not depend on the samples
    cache = {}
    if keep_cache:
        cache = dict(p._cache) if samples is None else {k: v for k, v in p._cache.items()
                                                         if k in ("arrays", "func_labels", "frame_labels")}
    object.__setattr__(q, "_cache", cache)
    if p.__dict__.get("_frozen"):
        object.__setattr__(q, "_frozen", True)
    return q


def with_meta(p: Profile, warnings=(), **updates) -> Profile:
    """``p`` with ``meta`` updated: keyword arguments replace keys, ``warnings`` are appended."""
    md = copy.deepcopy(p.meta)
    md.update(copy.deepcopy(updates))
    if warnings:
        md["warnings"] = list(md.get("warnings") or []) + [str(w) for w in warnings]
    return _share(p, meta=md)


def with_new_meta(p: Profile, meta: dict) -> Profile:
    """``p`` under ``meta`` as a whole (nodeflame's defaults fill what it lacks), instead of ``p.meta``."""
    from .profile import default_meta
    md = default_meta()
    md.update(copy.deepcopy(meta))
    return _share(p, meta=md)


def select_samples(p: Profile, mask, *, meta: dict | None = None) -> Profile:
    """The samples where ``mask`` (bool per sample row) is true; unused funcs, frames and stacks dropped."""
    mask = np.asarray(mask, bool)
    if len(mask) != len(p.samples):
        raise ValueError(f"select_samples: mask has {len(mask)} entries for {len(p.samples)} samples")
    if mask.all() and meta is None:
        return p
    q = _share(p, samples=p.samples[mask].reset_index(drop=True),
               meta=copy.deepcopy(p.meta if meta is None else meta))
    return compact(q)


def reweight(p: Profile, weights, *, unit: str | None = None) -> Profile:
    """``p`` with sample weights ``weights`` (int per sample row); ``unit`` names what they count."""
    w = np.asarray(weights, _I64)
    if len(w) != len(p.samples):
        raise ValueError(f"reweight: {len(w)} weights for {len(p.samples)} samples")
    if (w < 0).any():
        raise ValueError("reweight: negative weights")
    s = p.samples.copy()
    s["weight"] = w
    md = copy.deepcopy(p.meta)
    if unit is not None:
        md["unit"] = unit
    q = _share(p, samples=s, meta=md)
    q.validate()
    return q


def with_samples(p: Profile, samples: pd.DataFrame, warnings=(), **meta) -> Profile:
    """``p`` with its samples table replaced by ``samples`` (same stacks; columns beyond the four kept) and
    ``meta`` updated as :func:`with_meta` does; validated."""
    md = copy.deepcopy(p.meta)
    md.update(copy.deepcopy(meta))
    if warnings:
        md["warnings"] = list(md.get("warnings") or []) + [str(w) for w in warnings]
    q = _share(p, samples=Profile._norm_samples(samples.reset_index(drop=True)), meta=md)
    q.validate()
    return q


def aggregate(p: Profile) -> Profile:
    """One sample row per (stack, thread) with the weights summed; times are dropped (``timed`` False)."""
    s = p.samples
    if not len(s):
        return p
    g = s.groupby(["stack", "thread"], observed=True, sort=True)["weight"].sum().reset_index()
    g = g[g["weight"] > 0]
    samples = pd.DataFrame({"stack": g["stack"].to_numpy(_I64), "time_ns": np.zeros(len(g), _I64),
                            "weight": g["weight"].to_numpy(_I64),
                            "thread": pd.Categorical(g["thread"].astype(str))})
    md = copy.deepcopy(p.meta)
    md["timed"] = False
    return _share(p, samples=samples, meta=md)


def stacks_containing(p: Profile, func_mask=None, *, frame_mask=None) -> np.ndarray:
    """Per stack: does its path from the root hold a function where ``func_mask`` (bool per func) is true,
    or, given ``frame_mask`` (bool per frame) instead, a frame where it is true (a frame's own facts, such as
    its tier, which other frames of the same function need not share)."""
    if (func_mask is None) == (frame_mask is None):
        raise TypeError("stacks_containing: give func_mask or frame_mask, not both or neither")
    a = p.arrays()
    if frame_mask is not None:
        mask, per_stack = np.asarray(frame_mask, bool), a["frame"]
    else:
        mask, per_stack = np.asarray(func_mask, bool), a["stack_func"]
    out = mask[per_stack] if len(per_stack) else np.zeros(0, bool)
    out = out.copy()
    for _d, idx in level_segments(a["depth"]):
        par = a["prefix"][idx]
        ok = par >= 0
        out[idx[ok]] |= out[par[ok]]
    return out


def _renumber(table: pd.DataFrame, used: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of ``table`` where ``used`` (bool per row) is true, a copy indexed 0..n-1 in the old order,
    and the map old id -> new id (meaningless where ``used`` is false: only kept ids are looked up)."""
    kept = table[used].copy()
    kept.index = pd.RangeIndex(len(kept))
    return kept, np.cumsum(used) - 1


def compact(p: Profile) -> Profile:
    """Drop funcs, frames and stacks that no sample reaches; renumber keeping order."""
    prefix = p.stacks["prefix"].to_numpy().astype(_I64)
    n = len(prefix)
    used = np.zeros(n, bool)
    used[p.samples["stack"].to_numpy()] = True
    if len(p.lines):
        used[p.lines["stack"].to_numpy()] = True
    # mark every ancestor of a used stack, deepest level first (parents are on the level above)
    if n:
        for _d, idx in reversed(list(level_segments(p.stacks["depth"].to_numpy()))):
            u = idx[used[idx]]
            par = prefix[u]
            used[par[par >= 0]] = True
    st, new_id = _renumber(p.stacks, used)
    st["prefix"] = np.where(st["prefix"] >= 0, new_id[np.maximum(st["prefix"].to_numpy(), 0)], -1)
    fr_used = np.zeros(len(p.frames), bool)
    fr_used[st["frame"].to_numpy()] = True
    frames, fr_new = _renumber(p.frames, fr_used)
    st["frame"] = fr_new[st["frame"].to_numpy()]
    fu_used = np.zeros(len(p.funcs), bool)
    fu_used[frames["func"].to_numpy()] = True
    funcs, fu_new = _renumber(p.funcs, fu_used)
    frames["func"] = fu_new[frames["func"].to_numpy()]
    for c in ("name", "file", "package"):
        funcs[c] = funcs[c].cat.remove_unused_categories()
    samples = p.samples.copy()
    samples["stack"] = new_id[samples["stack"].to_numpy()]
    lines = p.lines.copy()
    if len(lines):
        lines["stack"] = new_id[lines["stack"].to_numpy()]
    return Profile(funcs, frames, st, samples, p.meta, lines)


def replace_stacks(p: Profile, prefix, frame, depth, old_to_new, *, sample_mask=None, meta=None) -> Profile:
    """A new Profile over the stack table (``prefix``, ``frame``, ``depth``) a transform made from ``p``'s:
    ``old_to_new`` maps each old stack id to a new one (-1: its samples and line ticks go), ``sample_mask``
    keeps only some samples first; funcs, frames and stacks left unused are then dropped (:func:`compact`)."""
    samples = p.samples if sample_mask is None else p.samples[sample_mask]
    new_stack = old_to_new[samples["stack"].to_numpy()]
    keep = new_stack >= 0
    samples = samples[keep].copy()
    samples["stack"] = new_stack[keep]
    samples.index = pd.RangeIndex(len(samples))
    lines = p.lines
    if len(lines):
        ls = old_to_new[lines["stack"].to_numpy()]
        lines = pd.DataFrame({"stack": ls, "line": lines["line"].to_numpy(), "ticks": lines["ticks"].to_numpy()})
        lines = lines[lines["stack"] >= 0].groupby(["stack", "line"], as_index=False)["ticks"].sum()
    stacks = pd.DataFrame({"prefix": prefix, "frame": frame, "depth": depth})
    return compact(Profile(p.funcs, p.frames, stacks, samples, meta if meta is not None else p.meta, lines))
