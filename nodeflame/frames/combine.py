"""Combining Profiles: ``concat(profiles, threads)``.

Used by the capture layer to put the per-thread profiles of one capture (the
main thread and each worker) into one Profile with a ``thread`` column; it
works for any profiles (several captures of one program, say).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .build import dedupe_frames
from .profile import Profile
from .stacktable import tree_to_stacks

_I = np.int64

_FUNC_KEY = ["name", "file", "line", "column", "kind"]


def _factorize_rows(df: pd.DataFrame, cols: list[str]):
    """(codes, index of the first row of each code) of df's rows keyed by cols."""
    if len(df) == 0:
        return np.empty(0, _I), np.empty(0, _I)
    key = pd.MultiIndex.from_arrays([df[c].astype(str) if df[c].dtype == object or
                                     isinstance(df[c].dtype, pd.CategoricalDtype) else df[c].to_numpy()
                                     for c in cols])
    codes, _ = pd.factorize(key)
    codes = codes.astype(_I)
    first = np.unique(codes, return_index=True)[1]
    return codes, first


def concat(profiles: Sequence[Profile], threads: Sequence[str] | None = None, *,
           meta: dict | None = None) -> Profile:
    """One Profile holding the samples of all ``profiles``.

    Functions, frames and stack prefixes that are equal across the inputs are
    merged.  When ``threads`` is given (one name per profile) every sample of
    ``profiles[i]`` gets thread ``threads[i]``; otherwise each keeps its own.
    ``meta`` defaults to the first profile's, with the warnings of all.
    Times are kept as they are: give profiles whose ``time_ns`` share a clock.
    """
    profiles = list(profiles)
    if not profiles:
        raise ValueError("concat needs at least one profile")
    if threads is not None and len(threads) != len(profiles):
        raise ValueError("threads must name one thread per profile")

    # functions
    funcs_all = pd.concat([p.funcs[["name", "file", "line", "column", "kind", "package"]].astype(
        {"name": str, "file": str, "kind": str, "package": str}) for p in profiles], ignore_index=True)
    fcodes, ffirst = _factorize_rows(funcs_all, _FUNC_KEY)
    funcs = funcs_all.iloc[ffirst].reset_index(drop=True)
    func_off = np.cumsum([0] + [len(p.funcs) for p in profiles])

    # frames
    fr_parts = []
    for i, p in enumerate(profiles):
        fr = p.frames[["func", "line", "column", "tier", "label"]].astype({"tier": str, "label": str})
        fr = fr.assign(func=fcodes[func_off[i] + fr["func"].to_numpy().astype(_I)] if len(fr) else fr["func"])
        fr_parts.append(fr)
    frames, frcodes = dedupe_frames(pd.concat(fr_parts, ignore_index=True))
    frame_off = np.cumsum([0] + [len(p.frames) for p in profiles])

    # stacks: one forest, identical paths merged
    parent_parts, frame_parts = [], []
    stack_off = np.cumsum([0] + [len(p.stacks) for p in profiles])
    for i, p in enumerate(profiles):
        pre = p.stacks["prefix"].to_numpy().astype(_I)
        parent_parts.append(np.where(pre >= 0, pre + stack_off[i], -1))
        frame_parts.append(frcodes[frame_off[i] + p.stacks["frame"].to_numpy().astype(_I)]
                           if len(p.stacks) else np.empty(0, _I))
    parent = np.concatenate(parent_parts) if parent_parts else np.empty(0, _I)
    frame = np.concatenate(frame_parts) if frame_parts else np.empty(0, _I)
    prefix, sframe, depth, node_stack = tree_to_stacks(parent, frame, len(frames))
    stacks = pd.DataFrame({"prefix": prefix, "frame": sframe, "depth": depth})

    # samples
    s_parts = []
    for i, p in enumerate(profiles):
        s = p.samples
        part = pd.DataFrame({
            "stack": node_stack[stack_off[i] + s["stack"].to_numpy().astype(_I)] if len(s) else np.empty(0, _I),
            "time_ns": s["time_ns"].to_numpy(),
            "weight": s["weight"].to_numpy(),
            "thread": np.full(len(s), threads[i], object) if threads is not None
            else s["thread"].astype(str).to_numpy(object),
        })
        s_parts.append(part)
    samples = pd.concat(s_parts, ignore_index=True)
    md = dict(meta) if meta is not None else dict(profiles[0].meta)
    timed = all(p.meta.get("timed") for p in profiles)
    md["timed"] = timed
    if timed and len(samples):
        order = np.argsort(samples["time_ns"].to_numpy(), kind="stable")
        samples = samples.iloc[order].reset_index(drop=True)
    if meta is None:
        warns = []
        for p in profiles:
            for w in p.meta.get("warnings") or []:
                if w not in warns:
                    warns.append(w)
        md["warnings"] = warns

    # per-line ticks
    l_parts = []
    for i, p in enumerate(profiles):
        if len(p.lines):
            l_parts.append(pd.DataFrame({
                "stack": node_stack[stack_off[i] + p.lines["stack"].to_numpy().astype(_I)],
                "line": p.lines["line"].to_numpy(), "ticks": p.lines["ticks"].to_numpy()}))
    lines = None
    if l_parts:
        lines = pd.concat(l_parts, ignore_index=True).groupby(["stack", "line"], as_index=False, sort=True)["ticks"].sum()
    return Profile(funcs, frames, stacks, samples, md, lines)
