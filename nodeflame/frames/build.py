"""Building Profiles from what readers parse.

Readers hand over frames as keys and stacks as root-first paths in CSR form
(``offsets`` + flat frame ids); everything else here is numpy.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .kinds import classify_many, package_of
from .profile import Profile, default_meta
from .stacktable import paths_to_stacks, tree_to_stacks

_I64 = np.int64


class FrameTable:
    """Interns frames described by key tuples.

    A frame key is ``(name, file, line, column, hint, tier, label)``.  ``hint``
    is what the reader knows about the kind (see kinds.classify); functions
    are (name, file, func_line, func_column, kind) where func_line defaults to
    the frame's line.
    """

    def __init__(self):
        self.index: dict = {}
        self.keys: list = []

    def add(self, name, file="", line=0, column=0, hint=None, tier="", label="", func_line=None, func_column=None) -> int:
        key = (name, file, int(line), int(column), hint, tier, label,
               int(line if func_line is None else func_line), int(column if func_column is None else func_column))
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.keys)
            self.keys.append(key)
        return i

    def __len__(self):
        return len(self.keys)

    def tables(self):
        """Return (funcs DataFrame, frames DataFrame) for the interned keys."""
        n = len(self.keys)
        if n == 0:
            cols = dict(name=[], file=[], line=[], column=[], kind=[], package=[])
            return pd.DataFrame(cols), pd.DataFrame(dict(func=[], line=[], column=[], tier=[], label=[]))
        names, files, lines, cols, hints, tiers, labels, flines, fcols = (list(c) for c in zip(*self.keys))
        names, files, labels = _no_lone_surrogates(names), _no_lone_surrogates(files), _no_lone_surrogates(labels)
        kinds = classify_many(names, files, hints)
        fkeys = pd.MultiIndex.from_arrays([names, files, flines, fcols, kinds])
        func_codes, uniq = pd.factorize(fkeys)
        fn = uniq.get_level_values
        ufiles = fn(1).tolist()  # .tolist(), not list(): no per-item boxing by pandas
        funcs = pd.DataFrame({
            "name": pd.Categorical(fn(0).tolist()),
            "file": pd.Categorical(ufiles),
            "line": np.asarray(fn(2), np.int32),
            "column": np.asarray(fn(3), np.int32),
            "kind": fn(4).tolist(),
            "package": pd.Categorical([package_of(x) for x in ufiles]),
        })
        frames = pd.DataFrame({"func": func_codes, "line": lines, "column": cols, "tier": tiers, "label": labels})
        return funcs, frames


def _no_lone_surrogates(texts: list) -> list:
    """``texts`` with each lone surrogate (a name decoded from broken UTF-16 or with surrogateescape)
    written out as the six characters ``\\udXXX``: Arrow-backed string columns (pandas 3 with pyarrow)
    cannot hold one, and every output format needs valid Unicode.  One pass over the joined text when
    there is none (the usual case)."""
    try:
        "\0".join(texts).encode("utf-8")
        return texts
    except UnicodeEncodeError:
        pass
    out = []
    for t in texts:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            t = "".join(f"\\u{ord(ch):04x}" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in t)
        except AttributeError:       # not a string (a reader's None): left to the model's checks
            pass
        out.append(t)
    return out


def dedupe_frames(frames: pd.DataFrame):
    """Merge frames whose (func, line, column, tier, label) are equal.

    Returns (unique frames DataFrame, old->new mapping array)."""
    if len(frames) == 0:
        return frames.reset_index(drop=True), np.empty(0, _I64)
    key = pd.MultiIndex.from_frame(frames[["func", "line", "column", "tier", "label"]].astype(
        {"tier": str, "label": str}))
    codes, _ = pd.factorize(key)
    first = np.unique(codes, return_index=True)[1]
    uniq = frames.iloc[first].reset_index(drop=True)
    return uniq, codes.astype(_I64)


def build_profile(frame_table: FrameTable, offsets, flat_frames, *, weights=None, times=None,
                  threads=None, meta=None, lines=None, path_lines=None) -> Profile:
    """Make a Profile from root-first paths over ``frame_table``'s frames.

    One sample row per path.  ``weights``/``times``/``threads`` are per path.
    ``lines`` (optional) is a DataFrame (path, line, ticks) of per-line ticks
    attributed to each path's leaf.
    """
    funcs, frames, fmap = frame_tables(frame_table)
    flat = fmap[np.asarray(flat_frames, _I64)] if len(flat_frames) else np.asarray(flat_frames, _I64)
    prefix, frame, depth, path_stack = paths_to_stacks(offsets, flat, len(frames))
    n = len(path_stack)
    return _assemble(funcs, frames, prefix, frame, depth, path_stack, n, weights, times, threads, meta, lines)


def build_from_tree(frame_table: FrameTable, node_parent, node_frame, sample_node, *, weights=None,
                    times=None, threads=None, meta=None, node_lines=None) -> Profile:
    """Make a Profile from a node tree (cpuprofile, pprof-like inputs).

    ``node_frame[i] == -1`` marks a transparent node (an artificial root).
    ``sample_node`` gives each sample's node.  ``node_lines`` (optional)
    is a DataFrame (node, line, ticks)."""
    funcs, frames, fmap = frame_tables(frame_table)
    nf = np.asarray(node_frame, _I64)
    nf = np.where(nf >= 0, fmap[np.maximum(nf, 0)] if len(fmap) else -1, -1)
    prefix, frame, depth, node_stack = tree_to_stacks(node_parent, nf, len(frames))
    sn = np.asarray(sample_node, _I64)
    sstack = node_stack[sn] if len(sn) else np.empty(0, _I64)
    lines = None
    if node_lines is not None and len(node_lines):
        st = node_stack[np.asarray(node_lines["node"], _I64)]
        ok = st >= 0
        lines = _sum_lines(st[ok], np.asarray(node_lines["line"])[ok], np.asarray(node_lines["ticks"])[ok])
    return _assemble(funcs, frames, prefix, frame, depth, sstack, len(sn), weights, times, threads, meta,
                     lines, lines_are_stacks=True)


def _sum_lines(stack, line, ticks) -> pd.DataFrame:
    """``DataFrame(stack, line, ticks).groupby(["stack", "line"], as_index=False, sort=True)["ticks"].sum()``
    for integer columns, in numpy: one sort of a combined key instead of pandas' group index."""
    stack, line, ticks = (np.asarray(a) for a in (stack, line, ticks))
    if not (len(stack) and stack.dtype.kind == line.dtype.kind == ticks.dtype.kind == "i"):
        df = pd.DataFrame({"stack": stack, "line": line, "ticks": ticks})
        return df.groupby(["stack", "line"], as_index=False, sort=True)["ticks"].sum()
    lmin, lmax, smax = int(line.min()), int(line.max()), int(stack.max())
    span = lmax - lmin + 1
    if stack.min() < 0 or smax >= (2**62) // max(span, 1):
        df = pd.DataFrame({"stack": stack, "line": line, "ticks": ticks})
        return df.groupby(["stack", "line"], as_index=False, sort=True)["ticks"].sum()
    key = stack.astype(_I64) * span + (line.astype(_I64) - lmin)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.concatenate(([True], ks[1:] != ks[:-1])))
    sums = np.add.reduceat(ticks[order], starts) if len(starts) else ticks[:0]
    first = order[starts]
    return pd.DataFrame({"stack": stack[first], "line": line[first], "ticks": sums.astype(ticks.dtype, copy=False)})


def frame_tables(frame_table: FrameTable):
    """(funcs, frames, old->new frame id map) of ``frame_table``, frames merged where equal."""
    funcs, frames = frame_table.tables()
    frames, fmap = dedupe_frames(frames)
    return funcs, frames, fmap


def build_from_nodes(funcs, frames, prefix, frame, depth, sample_stack, *, weights=None, meta=None,
                     unique=False) -> Profile:
    """Make a Profile from a node tree whose nodes are already in stack-table
    order (parents before children, ``depth`` given, frames from
    ``frame_tables``).  ``unique=True`` says the caller checked that no two
    nodes share (parent, frame), so the nodes are the stacks; otherwise equal
    paths are merged as in build_from_tree."""
    prefix = np.asarray(prefix, _I64)
    if not unique:
        prefix, frame, depth, node_stack = tree_to_stacks(prefix, frame, len(frames), depth=depth)
        sn = np.asarray(sample_stack, _I64)
        sample_stack = np.where(sn >= 0, node_stack[np.maximum(sn, 0)], -1) if len(sn) else sn
    return _assemble(funcs, frames, prefix, frame, depth, sample_stack, len(sample_stack), weights, None, None,
                     meta, None, lines_are_stacks=True)


def build_from_sorted_paths(funcs, frames, flat, nframes, counts, *, meta=None) -> Profile:
    """Profile of root-first paths (``flat`` frame ids in CSR form by ``nframes``)
    that mostly share long prefixes with the previous path, as sorted folded
    and raw files do: only the frames after the shared prefix become tree
    nodes.  ``funcs``/``frames`` come from frame_tables and ``flat`` is in its
    merged frame ids; ``counts`` is the weight of each path.  Any order of
    paths gives the same Profile (unsorted ones only cost more)."""
    n_lines = len(nframes)
    off = np.cumsum(nframes) - nframes
    # frames shared with the previous line, one depth level at a time
    shared = np.zeros(n_lines, np.int64)
    if n_lines > 1:
        lim = np.minimum(nframes[1:], nframes[:-1])
        cur, prev = off[1:].copy(), off[:-1].copy()
        act = np.flatnonzero(lim > 0)
        k = np.zeros(n_lines - 1, np.int64)
        while len(act):
            act = act[flat[cur[act]] == flat[prev[act]]]
            k[act] += 1
            cur[act] += 1
            prev[act] += 1
            act = act[k[act] < lim[act]]
        shared[1:] = k
    ntail = nframes - shared
    total_nodes = int(ntail.sum())
    base = np.cumsum(ntail) - ntail
    # the new frames of each line, in order
    line_of = np.repeat(np.arange(n_lines, dtype=np.int64), ntail)
    pos_in = np.arange(total_nodes, dtype=np.int64) - base[line_of]
    node_frame = flat[off[line_of] + shared[line_of] + pos_in]
    node_depth = shared[line_of] + pos_in
    del line_of, pos_in
    # the first new frame hangs under the previous line's node at depth shared-1,
    # found as the newest line j with shared[j] <= depth
    anchor = np.full(n_lines, -1, np.int64)
    want = shared - 1
    idx = np.arange(n_lines)
    for d in np.unique(want[want >= 0]).tolist():
        owner = np.maximum.accumulate(np.where(shared <= d, idx, -1))
        lines_d = np.flatnonzero(want == d)
        j = owner[lines_d - 1]
        anchor[lines_d] = base[j] + (d - shared[j])
    has = ntail > 0
    parent = np.arange(total_nodes, dtype=np.int64) - 1
    parent[base[has]] = anchor[has]
    sample_node = np.where(has, base + ntail - 1, anchor)
    # Equal paths can only be siblings under one node P: its children are P+1
    # (when that continues P's own line) and the first new nodes of lines
    # anchored at P.  The nodes are the stacks when no two of those agree.
    firsts = base[has]
    fp, ff = parent[firsts], node_frame[firsts]
    nfr = len(frames) + 1
    key = np.sort((fp + 1) * nfr + ff)
    unique = not (np.diff(key) == 0).any()
    if unique:
        nxt = fp + 1  # P+1 of each first node's parent P (fp >= 0 there, and P+1 <= the first node)
        real = fp >= 0
        cand = nxt[real]
        chain = parent[cand] == fp[real]  # P+1 continues P's line
        clash = chain & (cand != firsts[real]) & (node_frame[cand] == ff[real])
        unique = not clash.any()
    return build_from_nodes(funcs, frames, parent, node_frame, node_depth, sample_node, weights=counts, meta=meta,
                            unique=unique)


def _thread_column(threads, kept) -> pd.Categorical:
    """The samples' thread names as a categorical whose categories are the names used, sorted (what
    ``pd.Categorical(names)`` gives); a categorical input is re-coded, not turned into a million str."""
    if isinstance(threads, pd.Categorical):
        c = kept(threads).remove_unused_categories()
        cats = list(c.categories)
        if all(isinstance(x, str) for x in cats):
            return c.reorder_categories(sorted(cats)) if cats != sorted(cats) else c
    return pd.Categorical(kept(np.asarray(threads, object)))


def _assemble(funcs, frames, prefix, frame, depth, sample_stack, n, weights, times, threads, meta,
              lines, lines_are_stacks=False) -> Profile:
    sample_stack = np.asarray(sample_stack, _I64)
    keep = sample_stack >= 0  # a sample with no frames at all has nothing to attribute
    md = default_meta()
    if meta:
        md.update(meta)
    if not keep.all():
        md.setdefault("warnings", [])
        md["warnings"] = list(md["warnings"]) + [f"{int((~keep).sum())} empty stack(s) set aside"]
    every = bool(keep.all())  # the usual case: no per-sample copies

    def kept(a):
        return a if every else a[keep]
    samples = pd.DataFrame({
        "stack": kept(sample_stack),
        "time_ns": (kept(np.asarray(times, _I64)) if times is not None else np.zeros(int(keep.sum()), _I64)),
        "weight": (kept(np.asarray(weights, _I64)) if weights is not None else np.ones(int(keep.sum()), _I64)),
        "thread": (_thread_column(threads, kept) if threads is not None
                   else pd.Categorical.from_codes(np.zeros(int(keep.sum()), np.int8), ["main"])),
    })
    if times is not None and (meta or {}).get("timed", True):
        md["timed"] = True
        # normalise: samples in time order within each thread (stable)
        t = samples["time_ns"].to_numpy()
        if len(t) and (np.diff(t) < 0).any():
            samples = samples.iloc[np.argsort(t, kind="stable")].reset_index(drop=True)
    else:
        md["timed"] = False
    if lines is not None and not lines_are_stacks and len(lines):
        st = sample_stack[np.asarray(lines["path"], _I64)]
        lines = pd.DataFrame({"stack": st, "line": lines["line"], "ticks": lines["ticks"]})
        lines = lines[lines["stack"] >= 0].groupby(["stack", "line"], as_index=False)["ticks"].sum()
    stacks = pd.DataFrame({"prefix": prefix, "frame": frame, "depth": depth}, copy=False)
    return Profile(funcs, frames, stacks, samples, md, lines)

