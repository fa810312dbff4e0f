"""Building Profiles from what readers parse.

Readers hand over frames as keys and stacks as root-first paths in CSR form
(``offsets`` + flat frame ids); everything else here is numpy.  The tables are made in numpy form
(``Profile.from_arrays``): building a Profile imports no pandas unless an input is a pandas object
(a reader's Categorical of thread names, a DataFrame of line ticks) or a value is not a string.
"""
from __future__ import annotations

import sys

import numpy as np

from .kinds import KINDS, classify_many, package_of
from .profile import Coded, Profile, _code_dtype, _nondecreasing, coded, default_meta
from .stacktable import paths_to_stacks, tree_to_stacks, unique_sorted

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
        """(funcs, frames) of the interned keys as :class:`Columns` (numpy form; frames not yet merged
        where equal: see frame_tables)."""
        n = len(self.keys)
        if n == 0:
            e32 = np.empty(0, np.int32)
            return (Columns(0, dict(name=[], file=[], line=e32, column=e32, kind=[], package=[])),
                    Columns(0, dict(func=np.empty(0, np.int64), line=e32, column=e32, tier=[], label=[])))
        names, files, lines, cols, hints, tiers, labels, flines, fcols = (list(c) for c in zip(*self.keys))
        names, files, labels = _no_lone_surrogates(names), _no_lone_surrogates(files), _no_lone_surrogates(labels)
        kinds = classify_many(names, files, hints)
        if not all(type(x) is str for x in (*names, *files, *labels, *tiers)):
            return self._tables_pandas(names, files, lines, cols, tiers, labels, flines, fcols, kinds)
        # functions: the distinct (name, file, line, column, kind) in order of first appearance
        # (what pd.factorize of their MultiIndex gives)
        index: dict = {}
        setdefault = index.setdefault
        func_codes = np.fromiter((setdefault(k, len(index)) for k in zip(names, files, flines, fcols, kinds.tolist())),
                                 np.int64, n)
        un, uf, ul, uc, uk = (list(c) for c in zip(*index))
        funcs = Columns(len(un), {
            "name": coded(un), "file": coded(uf),
            "line": np.array(ul, np.int64).astype(np.int32), "column": np.array(uc, np.int64).astype(np.int32),
            "kind": coded(uk, KINDS), "package": coded([package_of(x) for x in uf]),
        })
        frames = Columns(n, {"func": func_codes, "line": np.array(lines, np.int64), "column": np.array(cols, np.int64),
                             "tier": tiers, "label": labels})
        return funcs, frames

    @staticmethod
    def _tables_pandas(names, files, lines, cols, tiers, labels, flines, fcols, kinds):
        """tables() where a value is not a string: pandas factorises (and judges) them."""
        import pandas as pd
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
        return Columns.of_df(funcs), Columns.of_df(frames)


class Columns:
    """A table in numpy form, as ``Profile.from_arrays`` takes it: column name -> array, list or
    :class:`~nodeflame.frames.profile.Coded`; ``len()`` is its number of rows."""

    def __init__(self, n: int, cols: dict):
        self.n, self.cols = n, cols

    @classmethod
    def of_df(cls, df) -> "Columns":
        import pandas as pd
        cols = {}
        for k in df.columns:
            s = df[k]
            cols[k] = Coded(s.cat.codes.to_numpy(), s.cat.categories.to_numpy(object), s.dtype) \
                if isinstance(s.dtype, pd.CategoricalDtype) else s.to_numpy()
        return cls(len(df), cols)

    def __len__(self):
        return self.n

    def __getitem__(self, k):
        return self.cols[k]

    def __contains__(self, k):
        return k in self.cols

    def get(self, k, default=None):
        return self.cols.get(k, default)

    def items(self):
        return self.cols.items()


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


def dedupe_frames(frames):
    """Merge frames whose (func, line, column, tier, label) are equal.

    Returns (unique frames, old->new mapping array): a DataFrame of a DataFrame, :class:`Columns` of
    Columns."""
    if isinstance(frames, Columns):
        return _dedupe_columns(frames)
    import pandas as pd
    if len(frames) == 0:
        return frames.reset_index(drop=True), np.empty(0, _I64)
    key = pd.MultiIndex.from_frame(frames[["func", "line", "column", "tier", "label"]].astype(
        {"tier": str, "label": str}))
    codes, _ = pd.factorize(key)
    first = np.unique(codes, return_index=True)[1]
    uniq = frames.iloc[first].reset_index(drop=True)
    return uniq, codes.astype(_I64)


def _dedupe_columns(frames: Columns):
    """dedupe_frames of Columns: the distinct keys by a dict, in order of first appearance (as
    pd.factorize numbers them); pandas where a tier or label is not a string."""
    n = len(frames)
    if n == 0:
        return frames, np.empty(0, _I64)
    tiers, labels = frames["tier"], frames["label"]
    if not all(type(x) is str for x in (*tiers, *labels)):
        import pandas as pd
        df = pd.DataFrame({k: (v.categorical() if isinstance(v, Coded) else v) for k, v in frames.items()})
        uniq, codes = dedupe_frames(df)
        return Columns.of_df(uniq), codes
    func, line, col = (np.asarray(frames[k]) for k in ("func", "line", "column"))
    index: dict = {}
    setdefault = index.setdefault
    codes = np.fromiter((setdefault(k, len(index)) for k in zip(func.tolist(), line.tolist(), col.tolist(),
                                                                   tiers, labels)), _I64, n)
    if len(index) == n:
        return frames, codes
    prev = np.empty(n, _I64)
    prev[0] = -1
    np.maximum.accumulate(codes[:-1], out=prev[1:])
    first = np.flatnonzero(codes > prev)     # each key's first row, in the order of its code
    fl = first.tolist()
    return Columns(len(first), {"func": func[first], "line": line[first], "column": col[first],
                                "tier": [tiers[i] for i in fl], "label": [labels[i] for i in fl]}), codes


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
                    times=None, threads=None, meta=None, node_lines=None, group_node=None,
                    sample_line=None, node_depth=None) -> Profile:
    """Make a Profile from a node tree (cpuprofile, pprof-like inputs).

    ``node_frame[i] == -1`` marks a transparent node (an artificial root).
    ``sample_node`` gives each sample's node -- or, with ``group_node``, each sample's group, whose
    node is ``group_node[group]`` (the walker: a group is a distinct path).  ``node_lines`` (optional)
    is a DataFrame (node, line, ticks), or a dict of those arrays (non-empty); ``sample_line``
    (optional, instead) each sample's leaf line (0: none).  ``threads`` is per sample: names, a Categorical, or ``(codes, names)``.
    ``node_depth`` (optional): each node's depth, where the caller knows it (else found from the parents).

    The per-sample arrays are read in place, a chunk at a time: nothing per sample is copied whole
    or widened, and the samples table is made once, in its final dtypes (see _assemble)."""
    funcs, frames, fmap = frame_tables(frame_table)
    nf = np.asarray(node_frame, _I64)
    nf = np.where(nf >= 0, fmap[np.maximum(nf, 0)] if len(fmap) else -1, -1)
    prefix, frame, depth, node_stack = tree_to_stacks(node_parent, nf, len(frames), depth=node_depth)
    group_stack = node_stack if group_node is None else node_stack[np.asarray(group_node, _I64)]
    sn = np.asarray(sample_node)
    if not len(sn) or sn.dtype.kind not in "iu":
        sn = np.asarray(sample_node, _I64)
    lines = None
    if node_lines is not None and len(node_lines):
        st = node_stack[np.asarray(node_lines["node"], _I64)]
        ok = st >= 0
        lines = _sum_lines(st[ok], np.asarray(node_lines["line"])[ok], np.asarray(node_lines["ticks"])[ok])
    elif sample_line is not None:
        lines = _sample_lines(group_stack, sn, np.asarray(sample_line))
    return _assemble(funcs, frames, prefix, frame, depth, group_stack, len(sn), weights, times, threads, meta,
                     lines, lines_are_stacks=True, sample_group=sn)


def _sum_lines(stack, line, ticks) -> dict:
    """``DataFrame(stack, line, ticks).groupby(["stack", "line"], as_index=False, sort=True)["ticks"].sum()``
    (as a dict of its columns' arrays) for integer columns, in numpy: one sort of a combined key instead
    of pandas' group index."""
    stack, line, ticks = (np.asarray(a) for a in (stack, line, ticks))
    if not (len(stack) and stack.dtype.kind == line.dtype.kind == ticks.dtype.kind == "i"):
        return _sum_lines_pandas(stack, line, ticks)
    lmin, lmax, smax = int(line.min()), int(line.max()), int(stack.max())
    span = lmax - lmin + 1
    if stack.min() < 0 or smax >= (2**62) // max(span, 1):
        return _sum_lines_pandas(stack, line, ticks)
    key = stack.astype(_I64) * span + (line.astype(_I64) - lmin)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.concatenate(([True], ks[1:] != ks[:-1])))
    sums = np.add.reduceat(ticks[order], starts) if len(starts) else ticks[:0]
    first = order[starts]
    return {"stack": stack[first], "line": line[first], "ticks": sums.astype(ticks.dtype, copy=False)}


def _sum_lines_pandas(stack, line, ticks) -> dict:
    import pandas as pd
    df = pd.DataFrame({"stack": stack, "line": line, "ticks": ticks})
    df = df.groupby(["stack", "line"], as_index=False, sort=True)["ticks"].sum()
    return {k: df[k].to_numpy() for k in ("stack", "line", "ticks")}


def frame_tables(frame_table: FrameTable):
    """(funcs, frames, old->new frame id map) of ``frame_table``, frames merged where equal; the tables
    as :class:`Columns`."""
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
    if not unique:
        prefix = np.asarray(prefix, _I64)
        prefix, frame, depth, node_stack = tree_to_stacks(prefix, frame, len(frames), depth=depth)
        sn = np.asarray(sample_stack, _I64)
        sample_stack = np.where(sn >= 0, node_stack[np.maximum(sn, 0)], -1) if len(sn) else sn
    return _assemble(funcs, frames, prefix, frame, depth, sample_stack, len(sample_stack), weights, None, None,
                     meta, None, lines_are_stacks=True)


def _shared_with_previous(flat, nframes, off, span: int = 1 << 16) -> np.ndarray:
    """The number of leading frames each path shares with the path before it (0 for the first).

    The paths are compared where they lie in ``flat``, a run of lines covering about ``span`` frames
    at a time: each of a line's first ``min(its length, the previous one's)`` frames against the one
    at the same depth in the previous line, and the first mismatch of each line found by a binary
    search in the run's running count of mismatches.  Contiguous reads instead of one gather per
    depth level over every path (3-5x faster on sorted 10 M-sample inputs); the run's arrays are
    buffers made once (a fresh array per run would cost its pages again: tens of thousands of faults)."""
    n_lines = len(nframes)
    shared = np.zeros(n_lines, np.int64)
    if n_lines < 2:
        return shared
    nframes = np.asarray(nframes, np.int64)
    lim = np.zeros(n_lines, np.int64)
    np.minimum(nframes[1:], nframes[:-1], out=lim[1:])
    # where each line's frames start and where the previous line's frame of the same depth lies
    end = off + nframes
    cap = 0
    a = 1
    while a < n_lines:
        b = min(max(int(np.searchsorted(end, off[a] + span, "right")), a + 1), n_lines)
        ln = lim[a:b]
        first = np.cumsum(ln)
        total = int(first[-1])
        first -= ln                                     # each line's first compared frame in the run
        if total:
            if total > cap:
                cap = max(total, span)
                step, pos, fa, fb, miss = (np.empty(cap, np.int64) for _ in range(5))
            # pos: 1 a frame, each line's first (of those with frames to compare) at its start in flat
            k = np.flatnonzero(ln)
            st, fk = off[a:b][k], first[k]
            st_step = st.copy()
            st_step[1:] -= st[:-1] + ln[k][:-1] - 1
            step[:total] = 1
            step[fk] = st_step
            np.cumsum(step[:total], out=pos[:total])
            np.take(flat, pos[:total], out=fa[:total])
            # the previous line's frame: the line's start moved back by the previous line's length
            step[:total] = 0
            gap = nframes[a - 1:b - 1][k]
            gap_step = gap.copy()
            gap_step[1:] -= gap[:-1]
            step[fk] = gap_step
            np.cumsum(step[:total], out=miss[:total])
            np.subtract(pos[:total], miss[:total], out=pos[:total])
            np.take(flat, pos[:total], out=fb[:total])
            np.not_equal(fa[:total], fb[:total], out=fb[:total])
            np.cumsum(fb[:total], out=miss[:total])     # mismatches so far
            # a line's first mismatch: the first place the count passes its count before the line
            before = np.where(first > 0, miss[np.maximum(first - 1, 0)], 0)
            stop = np.searchsorted(miss[:total], before + 1)
            shared[a:b] = np.minimum(stop - first, ln)
        a = b
    return shared


def build_from_sorted_paths(funcs, frames, flat, nframes, counts, *, meta=None) -> Profile:
    """Profile of root-first paths (``flat`` frame ids in CSR form by ``nframes``)
    that mostly share long prefixes with the previous path, as sorted folded
    and raw files do: only the frames after the shared prefix become tree
    nodes.  ``funcs``/``frames`` come from frame_tables and ``flat`` is in its
    merged frame ids; ``counts`` is the weight of each path.  Any order of
    paths gives the same Profile (unsorted ones only cost more)."""
    n_lines = len(nframes)
    off = np.cumsum(nframes) - nframes
    shared = _shared_with_previous(flat, nframes, off)
    nframes = np.asarray(nframes, np.int64)
    ntail = nframes - shared
    total_nodes = int(ntail.sum())
    base = np.cumsum(ntail) - ntail
    has = ntail > 0
    h = np.flatnonzero(has)
    # the new frames of each line, in order: a node's depth and its frame's place in flat go up by one
    # along a line's tail and jump where the next tail starts (running sums of the steps, in place)
    it = np.int32 if max(total_nodes, len(flat)) < 2**31 - 1 else np.int64
    bh, sh = base[h], shared[h]
    node_depth = np.ones(total_nodes, it)
    step = sh.copy()
    step[1:] -= nframes[h[:-1]] - 1
    node_depth[bh] = step
    np.cumsum(node_depth, out=node_depth)
    where = np.ones(total_nodes, it)
    step = off[h] + sh
    step[1:] -= off[h[:-1]] + nframes[h[:-1]] - 1
    where[bh] = step
    np.cumsum(where, out=where)
    node_frame = np.empty(total_nodes, it)
    buf = np.empty(min(total_nodes, _CHUNK), flat.dtype)
    for s, e in _chunks(total_nodes):
        np.take(flat, where[s:e], out=buf[:e - s])
        node_frame[s:e] = buf[:e - s]
    del where, buf, step
    # the first new frame hangs under the previous line's node at depth shared-1,
    # found as the newest line j with shared[j] <= depth
    anchor = np.full(n_lines, -1, np.int64)
    want = shared - 1
    idx = np.arange(n_lines)
    for d in unique_sorted(want[want >= 0]).tolist():
        owner = np.maximum.accumulate(np.where(shared <= d, idx, -1))
        lines_d = np.flatnonzero(want == d)
        j = owner[lines_d - 1]
        anchor[lines_d] = base[j] + (d - shared[j])
    parent = np.arange(-1, total_nodes - 1, dtype=it)
    parent[bh] = anchor[h]
    sample_node = np.where(has, base + ntail - 1, anchor)
    # Equal paths can only be siblings under one node P: its children are P+1
    # (when that continues P's own line) and the first new nodes of lines
    # anchored at P.  The nodes are the stacks when no two of those agree.
    firsts = base[has]
    fp, ff = parent[firsts].astype(np.int64), node_frame[firsts].astype(np.int64)
    nfr = len(frames) + 1
    key = np.sort((fp + 1) * nfr + ff, kind="stable")
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


_CHUNK = 1 << 16   # samples handled at once where a whole-column temporary is avoided


def _chunks(n: int, size: int = _CHUNK):
    """(start, end) of each chunk of ``range(n)``."""
    for s in range(0, n, size):
        yield s, min(s + size, n)


def _sample_lines(group_stack, sample_group, sample_line) -> dict | None:
    """(stack, line, ticks) of the samples whose ``sample_line`` is not 0, the stack being
    ``group_stack[sample_group]``: counted per (group, line) key a chunk at a time (a sort of the chunk's
    keys; there are few distinct pairs), the chunks' counts added, then summed per stack as _sum_lines
    does."""
    if not len(sample_line):
        return None
    lo, hi = int(sample_line.min()), int(sample_line.max())
    span = hi - lo + 1
    if int(sample_group.max()) >= (2**62) // span or sample_group.min() < 0:   # keys would not fit: pandas
        g, ln = np.asarray(sample_group, _I64), np.asarray(sample_line)
        has = ln != 0
        if not has.any():
            return None
        per = _sum_lines(g[has], ln[has], np.ones(int(has.sum()), _I64))
        keys, ticks = None, per["ticks"]
        groups, lines = per["stack"], per["line"]
    else:
        keys = ticks = None          # the distinct keys so far, sorted, and their counts
        for s, e in _chunks(len(sample_line)):
            ln = sample_line[s:e]
            has = ln != 0
            if not has.any():
                continue
            ks = np.sort(sample_group[s:e][has].astype(_I64) * span + (ln[has].astype(_I64) - lo))
            starts = np.flatnonzero(np.concatenate(([True], ks[1:] != ks[:-1])))
            uk, cnt = ks[starts], np.diff(np.append(starts, len(ks)))
            del ks, starts
            if keys is not None:     # merged into what came before at once: never more than the distinct keys
                uk = np.concatenate((keys, uk))
                cnt = np.concatenate((ticks, cnt))
                order = np.argsort(uk, kind="stable")
                uk, cnt = uk[order], cnt[order]
                starts = np.flatnonzero(np.concatenate(([True], uk[1:] != uk[:-1])))
                uk, cnt = uk[starts], np.add.reduceat(cnt, starts)
            keys, ticks = uk, cnt
        if keys is None:
            return None
        ticks = ticks.astype(_I64, copy=False)
        groups, lines = keys // span, (keys % span + lo).astype(sample_line.dtype)
    st = np.asarray(group_stack, _I64)[groups]
    ok = st >= 0
    return _sum_lines(st[ok], lines[ok], ticks[ok])


def _gather(a, sel, n: int, dtype) -> np.ndarray:
    """``a[sel]`` (``sel`` None: all of ``a``) as a new array of ``dtype``, a chunk at a time."""
    out = np.empty(n, dtype)
    for s, e in _chunks(n):
        out[s:e] = a[s:e] if sel is None else a[sel[s:e]]
    return out


def _pd_categorical(x) -> bool:
    pd = sys.modules.get("pandas")   # a pandas object is only ever made where pandas is loaded
    return pd is not None and isinstance(x, pd.Categorical)


def _objects(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _thread_column(threads, sel, n: int) -> Coded:
    """The kept samples' (``sel``: their indices, None for all, in order) thread names as a categorical
    whose categories are the names used, sorted (what ``pd.Categorical(names)`` gives).  A categorical
    input, or ``(codes, names)``, is re-coded a chunk at a time, straight into the final codes: not
    turned into a million str, nor copied in between."""
    if threads is None:
        return Coded(np.zeros(n, np.int8), _objects(["main"]))
    if isinstance(threads, tuple):
        codes, cats, ordered = np.asarray(threads[0]), list(threads[1]), False
    elif _pd_categorical(threads):
        codes, cats, ordered = threads.codes, threads.categories, threads.ordered
    else:
        codes = None
    if codes is not None and codes.dtype.kind in "iu" and len(cats) and (not len(codes) or codes.min() >= 0):
        used = np.zeros(len(cats), bool)
        for s, e in _chunks(n):
            c = codes[s:e] if sel is None else codes[sel[s:e]]
            used |= np.bincount(c, minlength=len(cats)) > 0
        idx = np.flatnonzero(used)
        names = [cats[i] for i in idx.tolist()]
        if all(isinstance(x, str) for x in names):
            rank = sorted(range(len(names)), key=names.__getitem__)
            dtype = _code_dtype(len(rank))
            lut = np.full(len(cats), -1, dtype)
            lut[idx[rank]] = np.arange(len(rank))
            out = np.empty(n, dtype)
            for s, e in _chunks(n):
                out[s:e] = lut[codes[s:e] if sel is None else codes[sel[s:e]]]
            if isinstance(threads, tuple):
                return Coded(out, _objects([names[r] for r in rank]))
            import pandas as pd     # a pandas Categorical's categories keep their Index's dtype
            new_cats = cats.take(idx[rank]) if len(rank) else cats[:0]
            return Coded(out, new_cats.to_numpy(object), pd.CategoricalDtype(new_cats, ordered=ordered))
    if isinstance(threads, tuple):
        import pandas as pd
        threads = pd.Categorical.from_codes(threads[0], list(threads[1]))
    if _pd_categorical(threads):
        c = (threads if sel is None else threads[sel]).remove_unused_categories()
        cats = list(c.categories)
        if all(isinstance(x, str) for x in cats):
            c = c.reorder_categories(sorted(cats)) if cats != sorted(cats) else c
            return Coded(c.codes, c.categories.to_numpy(object), c.dtype)
    a = np.asarray(threads, object)
    return coded(a if sel is None else a[sel])


def _assemble(funcs, frames, prefix, frame, depth, sample_stack, n, weights, times, threads, meta,
              lines, lines_are_stacks=False, sample_group=None) -> Profile:
    """The Profile of the stack table and the samples.  ``sample_stack`` is each sample's stack or, with
    ``sample_group``, each group's (sample i's stack is ``sample_stack[sample_group[i]]``).

    Memory: each samples column is made once, in its final dtype, a chunk at a time from the inputs
    (which are read, never copied whole); the only full-size temporary is the time order when the
    samples are not in time order (8 bytes a sample), freed before the weights are made; the table is
    handed to the Profile as it is (``_adopt``), not copied again."""
    if sample_group is None:
        src, gst = np.asarray(sample_stack), None
        if not len(src) or src.dtype.kind not in "iu":
            src = np.asarray(sample_stack, _I64)
    else:
        src, gst = sample_group, np.asarray(sample_stack, _I64)
    n_all = len(src)

    def stacks_of(ix):
        return src[ix] if gst is None else gst[src[ix]]
    # a sample with no frames at all (stack -1) has nothing to attribute
    if gst is not None and not (gst < 0).any():
        every = True
    else:
        every = all((stacks_of(slice(s, e)) >= 0).all() for s, e in _chunks(n_all))
    sel = None if every else np.flatnonzero(np.concatenate(
        [stacks_of(slice(s, e)) >= 0 for s, e in _chunks(n_all)] or [np.empty(0, bool)]))
    n_keep = n_all if every else len(sel)
    md = default_meta()
    if meta:
        md.update(meta)
    if not every:
        md.setdefault("warnings", [])
        md["warnings"] = list(md["warnings"]) + [f"{n_all - n_keep} empty stack(s) set aside"]
    t = np.asarray(times, _I64) if times is not None else None
    if t is not None and (meta or {}).get("timed", True):
        md["timed"] = True
        # normalise: samples in time order within each thread (stable)
        tk = t if sel is None else t[sel]
        if not _nondecreasing(tk):
            order = np.argsort(tk, kind="stable")
            sel = order if sel is None else sel[order]
            del order
        del tk
    else:
        md["timed"] = False
    stack = np.empty(n_keep, np.int32)
    for s, e in _chunks(n_keep):
        stack[s:e] = stacks_of(slice(s, e) if sel is None else sel[s:e])
    time_ns = _gather(t, sel, n_keep, _I64) if t is not None else np.zeros(n_keep, _I64)
    thread = _thread_column(threads, sel, n_keep)
    weight = _gather(np.asarray(weights, _I64), sel, n_keep, _I64) if weights is not None else None
    del sel, t
    if weight is None:
        weight = np.ones(n_keep, _I64)
    samples = {"stack": stack, "time_ns": time_ns, "weight": weight, "thread": thread}
    del stack, time_ns, weight, thread
    if lines is not None and not lines_are_stacks and len(lines):
        import pandas as pd
        st = np.asarray(sample_stack, _I64)[np.asarray(lines["path"], _I64)]
        lines = pd.DataFrame({"stack": st, "line": lines["line"], "ticks": lines["ticks"]})
        lines = lines[lines["stack"] >= 0].groupby(["stack", "line"], as_index=False)["ticks"].sum()
    stacks = {"prefix": prefix, "frame": frame, "depth": depth}
    return Profile.from_arrays(funcs, frames, stacks, samples, md, lines)
