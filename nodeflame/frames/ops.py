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
``stacks_containing``  per stack: is one of the given functions on its path from the root
``compact`` / ``replace_stacks``  (from :mod:`.build`) drop unused rows / swap the stack table
==================  ===========================================================================
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from .build import compact, replace_stacks
from .profile import Profile
from .stacktable import level_segments

__all__ = ["select_samples", "with_meta", "with_new_meta", "with_samples", "reweight", "aggregate", "stacks_containing", "compact",
           "replace_stacks"]

_I64 = np.int64


def _share(p: Profile, *, samples=None, meta=None, keep_cache=True) -> Profile:
    """A Profile over ``p``'s tables (``samples``/``meta`` replaced when given), without re-validation."""
    q = Profile.__new__(Profile)
    object.__setattr__(q, "funcs", p.funcs)
    object.__setattr__(q, "frames", p.frames)
    object.__setattr__(q, "stacks", p.stacks)
    object.__setattr__(q, "samples", p.samples if samples is None else samples)
    object.__setattr__(q, "lines", p.lines)
    object.__setattr__(q, "meta", copy.deepcopy(p.meta) if meta is None else meta)
    # the cache derives from the four tables: keep what does not depend on the samples
    cache = {}
    if keep_cache:
        cache = dict(p._cache) if samples is None else {k: v for k, v in p._cache.items()
                                                         if k in ("arrays", "func_labels", "frame_labels")}
    object.__setattr__(q, "_cache", cache)
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


def stacks_containing(p: Profile, func_mask) -> np.ndarray:
    """Per stack: does its path from the root hold a function where ``func_mask`` (bool per func) is true."""
    a = p.arrays()
    fm = np.asarray(func_mask, bool)
    out = fm[a["stack_func"]] if len(a["stack_func"]) else np.zeros(0, bool)
    out = out.copy()
    for _d, idx in level_segments(a["depth"]):
        par = a["prefix"][idx]
        ok = par >= 0
        out[idx[ok]] |= out[par[ok]]
    return out
