"""Vectorised construction and rewriting of prefix stack tables.

A stack table is three parallel arrays ``prefix`` (-1 for a root frame),
``frame`` and ``depth`` in which every parent comes before its children.  All
functions here work one depth level at a time with numpy: the loop is over
levels, never over stacks or samples.
"""
from __future__ import annotations

import numpy as np

_I = np.int64


def unique_sorted(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` of a 1-d array: sorted, each value once (numpy 2.4's np.unique imports numpy.ma,
    tens of ms of a short command's start-up)."""
    s = np.sort(np.asarray(a))
    if len(s) < 2:
        return s
    keep = np.empty(len(s), bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def unique_inverse(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)`` by hand for int64 keys (numpy 2.4's takes 2-3x an
    argsort; keys that are nearly sorted make the stable sort, timsort, cheap): (sorted unique keys,
    each key's index among them)."""
    o = np.argsort(key, kind="stable")
    ks = key[o]
    first = np.empty(len(ks), bool)
    if len(ks):
        first[0] = True
    np.not_equal(ks[1:], ks[:-1], out=first[1:])
    inv = np.empty(len(key), np.int64)
    inv[o] = np.cumsum(first) - 1
    return ks[first], inv


def level_segments(depth: np.ndarray):
    """Yield (d, indices) for each depth level, shallowest first."""
    if len(depth) == 0:
        return
    if depth.min() >= 0 and depth.max() < 32767:
        order = np.argsort(depth.astype(np.int16), kind="stable")  # radix sort: linear time
    else:
        order = np.argsort(depth, kind="stable")
    d_sorted = depth[order]
    bounds = np.flatnonzero(np.diff(d_sorted)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(order)]))
    for s, e in zip(starts, ends):
        yield int(d_sorted[s]), order[s:e]


class _Interner:
    """Assigns stack ids to (prefix, frame) keys, level by level.

    Storage is preallocated for ``capacity`` stacks (an upper bound the caller
    knows), so reading back a parent's frame or depth is O(1)."""

    def __init__(self, nframes: int, capacity: int):
        self.nframes = max(int(nframes), 1)
        self.prefix = np.empty(capacity, _I)
        self.frame = np.empty(capacity, _I)
        self.depth = np.empty(capacity, _I)
        self.count = 0

    def add_level(self, parent: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """Intern keys (parent, frame); returns the stack id of each key."""
        if len(parent) == 0:
            return np.empty(0, _I)
        key = parent.astype(_I)            # (parent + 1) * nframes + frame, in place
        key += 1
        key *= self.nframes
        key += frame
        # the key itself gives (parent, frame); unique_inverse: a stable sort (timsort), fast on a
        # level's keys, which come in runs (children of one parent together), and no np.unique overhead
        uniq, inv = unique_inverse(key)
        k = len(uniq)
        c = self.count
        up = uniq // self.nframes - 1
        self.prefix[c:c + k] = up
        self.frame[c:c + k] = uniq % self.nframes
        self.depth[c:c + k] = np.where(up >= 0, self.depth[np.maximum(up, 0)] + 1, 0)
        self.count = c + k
        inv += c
        return inv

    def result(self):
        c = self.count
        return self.prefix[:c].copy(), self.frame[:c].copy(), self.depth[:c].copy()


def paths_to_stacks(offsets: np.ndarray, flat_frames: np.ndarray, nframes: int):
    """Intern root-first paths given in CSR form.

    ``offsets`` has n+1 entries; path i is ``flat_frames[offsets[i]:offsets[i+1]]``
    (root first).  Returns ``(prefix, frame, depth, path_stack)`` where
    ``path_stack[i]`` is the stack id of path i's leaf (-1 for an empty path).
    """
    offsets = np.asarray(offsets, _I)
    flat_frames = np.asarray(flat_frames, _I)
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    path_of = np.repeat(np.arange(n, dtype=_I), lengths)
    depth_flat = np.arange(len(flat_frames), dtype=_I) - offsets[:-1][path_of]
    cur = np.full(n, -1, _I)
    it = _Interner(nframes, len(flat_frames))
    for _d, idx in level_segments(depth_flat):
        paths = path_of[idx]
        cur[paths] = it.add_level(cur[paths], flat_frames[idx])
    prefix, frame, depth = it.result()
    return prefix, frame, depth, cur


def node_depths(parent: np.ndarray) -> np.ndarray:
    """Depth of every node of a parent-pointer tree, by pointer doubling."""
    parent = np.asarray(parent, _I)
    n = len(parent)
    if n == 0:
        return np.empty(0, _I)
    if np.any(parent >= n) or np.any(parent < -1):
        raise ValueError("parent index out of range")
    jump = parent.copy()
    dist = (jump >= 0).astype(_I)
    act = np.flatnonzero(jump >= 0)       # the nodes whose jump has not reached a root yet
    for _ in range(70):
        if not len(act):
            return dist
        j = jump[act]
        dist[act] += dist[j]              # (the right side is read whole before it is stored)
        j = jump[j]
        jump[act] = j
        act = act[j >= 0]
    raise ValueError("cycle in the node tree")


def tree_to_stacks(parent: np.ndarray, frame: np.ndarray, nframes: int, depth: np.ndarray | None = None):
    """Intern a node tree (``parent[i]`` = index of i's parent, -1 for roots).

    Nodes may come in any order; nodes with the same path of frames merge.
    A node whose frame is -1 is transparent: its children attach to its parent
    (used for artificial roots such as V8's ``(root)``).
    ``depth`` (optional) is each node's depth, if the caller knows it.
    Returns ``(prefix, frame, depth, node_stack)``.
    """
    parent = np.asarray(parent, _I)
    frame = np.asarray(frame, _I)
    n = len(parent)
    depth = node_depths(parent) if depth is None else np.asarray(depth, _I)
    cur1 = np.full(n + 1, -1, _I)    # cur1[i + 1]: node i's stack; cur1[0] = -1 (no parent)
    it = _Interner(nframes, n)
    for _d, idx in level_segments(depth):
        p = parent[idx]
        if len(p) and p.min() >= -1:
            p += 1
            pst = cur1[p]
        else:
            pst = np.where(p >= 0, cur1[np.maximum(p, 0) + 1], -1)
        f = frame[idx]
        if len(f) and f.min() >= 0:     # no transparent node on this level
            res = it.add_level(pst, f)
        else:
            keep = f >= 0
            res = pst.copy()
            if keep.any():
                res[keep] = it.add_level(pst[keep], f[keep])
        idx += 1
        cur1[idx] = res
    pr, fr, de = it.result()
    return pr, fr, de, cur1[1:]


def _injective(frame_map: np.ndarray, frame: np.ndarray) -> bool:
    """Whether ``frame_map`` sends the frames used in ``frame`` to distinct ids."""
    used = np.zeros(len(frame_map), bool)
    used[frame] = True
    m = frame_map[used]
    if len(m) < 2:
        return True
    seen = np.zeros(int(m.max()) + 1, np.int32)
    np.add.at(seen, m[m >= 0], 1)
    return bool(seen.max() <= 1)


def restack(prefix: np.ndarray, frame: np.ndarray, depth: np.ndarray,
            frame_map: np.ndarray, collapse_same=None):
    """Rewrite a stack table through a frame mapping.

    ``frame_map[f]`` is the new frame id of old frame f, or -1 to drop the frame
    (its children attach to its parent; what becomes equal merges).  If
    ``collapse_same`` is given (an array mapping *new* frame ids to a key such as
    the function), a frame whose key equals its nearest kept ancestor's key is
    dropped too, so direct recursion merges into one level.

    Returns ``(new_prefix, new_frame, new_depth, old_to_new)`` where
    ``old_to_new[s]`` is the new stack of old stack s (-1 if every frame of s
    was dropped).

    Two passes: over old depth levels, decide which stacks keep a frame and
    their new depth; then intern the kept ones by new depth level, so keys
    that become equal always meet in the same batch.
    """
    prefix = np.asarray(prefix, _I)
    frame = np.asarray(frame, _I)
    depth = np.asarray(depth, _I)
    frame_map = np.asarray(frame_map, _I)
    n = len(prefix)
    nframes = int(frame_map.max()) + 1 if len(frame_map) else 1
    nf_all = frame_map[frame] if n else np.empty(0, _I)
    keep = nf_all >= 0
    if collapse_same is None and n and keep.all() and _injective(frame_map, frame):
        # distinct frames stay distinct: the table keeps its shape, only frame ids change
        return prefix.copy(), nf_all, depth.copy(), np.arange(n, dtype=_I)
    anc = np.full(n, -1, _I)     # nearest kept stack on the path, self included
    nd = np.full(n, -1, _I)      # new depth of that stack
    for _d, idx in level_segments(depth):
        p = prefix[idx]
        pa = np.where(p >= 0, anc[np.maximum(p, 0)], -1)
        k = keep[idx]
        if collapse_same is not None:
            pf = np.where(pa >= 0, nf_all[np.maximum(pa, 0)], -1)
            same = (pa >= 0) & k & (collapse_same[np.maximum(pf, 0)] == collapse_same[np.maximum(nf_all[idx], 0)])
            k = k & ~same
            keep[idx] = k
        pnd = np.where(pa >= 0, nd[np.maximum(pa, 0)], -1)
        anc[idx] = np.where(k, idx, pa)
        nd[idx] = np.where(k, pnd + 1, pnd)
    old_to_new = np.full(n, -1, _I)
    kept = np.flatnonzero(keep)
    it = _Interner(nframes, len(kept))
    for _d, sub in level_segments(nd[kept]):
        idx = kept[sub]
        p = prefix[idx]
        pa = np.where(p >= 0, anc[np.maximum(p, 0)], -1)
        newp = np.where(pa >= 0, old_to_new[np.maximum(pa, 0)], -1)
        old_to_new[idx] = it.add_level(newp, nf_all[idx])
    dropped = ~keep
    old_to_new[dropped] = np.where(anc[dropped] >= 0, old_to_new[np.maximum(anc[dropped], 0)], -1)
    pr, fr, de = it.result()
    return pr, fr, de, old_to_new


def stack_paths(prefix: np.ndarray, stacks: np.ndarray, values: np.ndarray | None = None):
    """Root-first paths of ``stacks`` in CSR form: ``(offsets, flat_stack_ids)``.

    Walks all requested stacks towards the root together, one level per step.
    """
    prefix = np.asarray(prefix, _I)
    stacks = np.asarray(stacks, _I)
    depth = node_depths(prefix) if values is None else values
    lengths = np.where(stacks >= 0, depth[np.maximum(stacks, 0)] + 1, 0)
    offsets = np.zeros(len(stacks) + 1, _I)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), _I)
    pos = offsets[1:] - 1  # leaf goes last
    cur = stacks.copy()
    idx = np.flatnonzero(cur >= 0)
    while len(idx):
        flat[pos[idx]] = cur[idx]
        pos[idx] -= 1
        cur[idx] = prefix[cur[idx]]
        idx = idx[cur[idx] >= 0]
    return offsets, flat
