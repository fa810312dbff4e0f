"""Folded stacks: ``root;...;leaf count`` — FlameGraph's interchange format.

One line per distinct stack (per thread and stack with ``thread_root``), sorted
bytewise, frames written as their labels (``name file:line``).  Names the format
cannot hold (a ``;``, a line break, a trailing `` 12``, ...) are escaped
reversibly as ``%{HEX}``; the folded reader undoes it.  The rules are in
``nodeflame.frames.readers.folded``; ordinary names are written unchanged.
"""
from __future__ import annotations

import re

import numpy as np

from ..frames.profile import strings
from ..frames.readers.folded import escape_head, escape_name
from ..frames.readers.lines import arrow_ints
from ..frames.stacktable import unique_inverse


def _key_and_counts(p, thread_root: bool):
    """Distinct (thread, stack) keys of the samples, their stacks, counts and thread names (or None)."""
    s = p.arrays("samples")   # the numpy form: no DataFrame made
    nst = len(p.arrays()["prefix"])
    st = np.asarray(s["stack"]).astype(np.int64)
    w = np.asarray(s["weight"])
    if thread_root:
        th = _thread_codes(p, s["thread"])
        key = th * (nst + 1) + st
    else:
        key = st
    uk, inv = unique_inverse(key)
    counts = np.bincount(inv, weights=w, minlength=len(uk)).astype(np.int64)
    ust = uk % (nst + 1) if thread_root else uk
    names = None
    if thread_root:
        cats = _thread_names(p, s["thread"])
        cats = np.array([escape_name(x, head=True) for x in cats] + [""], dtype=object)[:-1]
        names = cats[uk // (nst + 1)]
    return ust, counts, names


def _thread_codes(p, th) -> np.ndarray:
    if hasattr(th, "codes"):
        return np.asarray(th.codes).astype(np.int64)
    return p.samples["thread"].cat.codes.to_numpy().astype(np.int64)


def _thread_names(p, th) -> np.ndarray:
    if hasattr(th, "categories"):
        return strings(th.categories)
    return p.samples["thread"].cat.categories.astype(str).to_numpy(object)


_MARK = re.compile(r"_\[[jkiw]\]\Z")


def _escape_label(label: str, name: str) -> str:
    """A frame's label escaped for a folded line.  A FlameGraph mark the source tool put on the label
    (perf's inlined ``inner_[i]`` for the function ``inner``) is an annotation and stays one; a mark
    that is part of the function's own name is escaped (see the reader's docstring)."""
    m = _MARK.search(label)
    if m is not None and not name.endswith(m.group()):
        return escape_name(label[:m.start()]) + m.group()
    return escape_name(label)


def _labels(p, annotate: bool):
    """The text of every frame as written in a line, escaped (and annotated): (anywhere but first,
    first in a line)."""
    raw = p.frame_labels()
    frame_func = p.arrays()["frame_func"]
    fcols = p.arrays("funcs")
    names = strings(fcols["name"])[frame_func]
    labels = np.empty(len(raw), dtype=object)
    labels[:] = [_escape_label(x, n) for x, n in zip(raw, names)]
    first = labels.copy()
    first[:] = [escape_head(x) for x in labels]
    if annotate:
        kinds = strings(fcols["kind"])[frame_func]
        suffix = np.where(np.isin(kinds, ["js", "deps", "node", "builtin"]), "_[j]",
                          np.where(kinds == "kernel", "_[k]", ""))
        labels = np.array([l + sfx for l, sfx in zip(labels, suffix)] + [""], dtype=object)[:-1]
        first = np.array([l + sfx for l, sfx in zip(first, suffix)] + [""], dtype=object)[:-1]
    return labels, first


def _join_paths(p, labels, stacks, ends, heads=None, sep=";", first=None):
    """One string (or bytes, if ``labels`` are bytes and ``sep`` is b";"): for
    each stack of ``stacks``, [its head + sep] its root-first labels joined by
    sep, then its entry of ``ends`` (e.g. ' 12\n').  ``first``: the labels of a
    line's first frame (without ``heads``), default ``labels``.

    Built with numpy indexing into one token array and a single join: no
    Python loop per stack or frame."""
    from ..frames.stacktable import stack_paths
    a = p.arrays()
    off, flat = stack_paths(a["prefix"], np.asarray(stacks, np.int64), a["depth"])
    n = len(stacks)
    nfr = np.diff(off)
    extra = 2 if heads is not None else 1
    tok = np.empty(len(flat) + extra * n, dtype=object)
    line_of = np.repeat(np.arange(n, dtype=np.int64), nfr)
    pos = np.arange(len(flat), dtype=np.int64) + line_of * extra + (1 if heads is not None else 0)
    del line_of
    fr = a["frame"][flat]
    sep_labels = np.empty(len(labels), dtype=object)
    sep_labels[:] = [sep + x for x in labels]
    tok[pos] = sep_labels[fr]
    if heads is not None:
        tok[off[:-1] + np.arange(n) * extra] = heads
    else:
        has = nfr > 0
        tok[pos[off[:-1][has]]] = (labels if first is None else first)[fr[off[:-1][has]]]  # no separator
    tok[off[1:] + np.arange(1, n + 1) * extra - 1] = ends
    return sep[:0].join(tok.tolist())


def folded_lines(p, *, thread_root: bool = False, annotate: bool = False):
    """(stack text, count) pairs, one per distinct (thread, stack), in stack order.

    ``thread_root`` puts the sample's thread/process name first, as
    stackcollapse-perf.pl does; ``annotate`` appends FlameGraph's ``_[j]`` to
    JIT (js/deps/node) frames and ``_[k]`` to kernel frames."""
    ust, counts, names = _key_and_counts(p, thread_root)
    labels, first = _labels(p, annotate)
    text = _join_paths(p, labels, ust, np.full(len(ust), "\n", dtype=object), heads=names, first=first)
    lines = text.split("\n")
    lines.pop()  # after the last "\n"
    out = np.empty(len(lines), dtype=object)
    out[:] = lines
    return out, counts


def _stack_texts(p, labels):
    """'a;b;c' for every stack, built one depth level at a time from the parent's text."""
    from ..frames.stacktable import level_segments
    a = p.arrays()
    out = np.empty(len(a["prefix"]), dtype=object)
    sep_labels = np.array([";" + x for x in labels], dtype=object)
    for d, idx in level_segments(a["depth"]):
        if d == 0:
            out[idx] = labels[a["frame"][idx]]
        else:
            out[idx] = out[a["prefix"][idx]] + sep_labels[a["frame"][idx]]
    return out


_LOW = re.compile("[\x00-\x1f]")


def write_folded(p, out, *, thread_root: bool = False, annotate: bool = False, sort: bool = True, **_):
    ust, counts, names = _key_and_counts(p, thread_root)
    pos = counts > 0
    ust, counts = ust[pos], counts[pos]
    names = names[pos] if names is not None else None
    labels, first = _labels(p, annotate)
    # lines are sorted by their stack text; the ' ' before a count sorts below every
    # character of a label unless a label holds a control character (then by key)
    low = sort and (any(_LOW.search(x) for x in labels) or
                    (names is not None and any(_LOW.search(x) for x in names)))
    # in UTF-8 bytes throughout (their order is the text's order): no str copy to encode
    blabels = np.empty(len(labels), dtype=object)
    blabels[:] = [x.encode("utf-8") for x in labels]
    bfirst = blabels.copy()
    ch = np.flatnonzero(first != labels)
    bfirst[ch] = [x.encode("utf-8") for x in first[ch]]
    bnames = None
    if names is not None:
        bnames = np.empty(len(names), dtype=object)
        bnames[:] = [x.encode("utf-8") for x in names]
    if not low and (_write_ordered(p, out, blabels, bfirst, ust, counts, bnames, sort)
                    or _write_arrow(p, out, blabels, bfirst, ust, counts, bnames, sort)):
        return
    ends = np.char.add(np.char.add(b" ", counts.astype("S")), b"\n").astype(object)
    text = _join_paths(p, blabels, ust, ends, heads=bnames, sep=b";", first=bfirst)
    if not (sort and len(ust) > 1):
        out.write(text)
        return
    lines = text.split(b"\n")
    del text
    lines.pop()
    if low:
        lines.sort(key=lambda ln: ln.rpartition(b" ")[0])
    else:
        lines.sort()
    step = 1 << 14
    for i in range(0, len(lines), step):  # in pieces: no second copy of the whole text
        out.write(b"\n".join(lines[i:i + step]) + b"\n")


class _Pieces:
    """Writes the pieces a writer hands it on a second thread, in order.  The kernel's copy of a
    piece into the page cache (a ``write`` releases the GIL) then runs while the next piece is
    built: 0.4-1.1 s of system time for the 400 MB of a 10 M-sample profile, as long as the
    building.  The thread allocates nothing (the pieces are made here), so no second malloc arena
    or page faults of its own; at most ``depth`` pieces wait.  An error of the thread's ``write``
    is raised here, at the next piece or at the end; on any way out the thread is stopped."""

    def __init__(self, out, depth: int = 2):
        import queue
        import threading
        self._out, self._q, self._err = out, queue.Queue(depth), None
        self._t = threading.Thread(target=self._run, name="nodeflame-write", daemon=True)
        self._t.start()

    def _run(self):
        while True:
            piece = self._q.get()
            if piece is None:
                return
            if self._err is None:
                try:
                    self._out.write(piece)
                except BaseException as e:  # noqa: BLE001 - handed to the writing thread
                    self._err = e
            del piece

    def write(self, piece) -> None:
        if self._err is not None:
            raise self._err
        self._q.put(piece)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._q.put(None)
        self._t.join()
        if self._err is not None and exc[0] is None:
            raise self._err
        return False


_SLICE = 1 << 14  # lines per write of the Arrow writer
_ARROW_MIN_LINES = 4096  # fewer lines are written by numpy (the same bytes): importing pyarrow costs more


def _ints(pa, a):
    """An Arrow int64 array of the numpy array ``a``, over its buffer."""
    a = np.ascontiguousarray(a, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(a), [None, pa.py_buffer(a)])


def _binary(pa, items: list):
    """An Arrow large_binary array of the bytes ``items``."""
    off = np.zeros(len(items) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, items), np.int64, len(items)), out=off[1:])
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(items),
                                            [None, pa.py_buffer(off), pa.py_buffer(b"".join(items))])


def _same(pa, item: bytes, n: int):
    """An Arrow large_binary array of ``n`` times ``item``."""
    off = np.arange(n + 1, dtype=np.int64) * len(item)
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(off), pa.py_buffer(item * n)])


def _write_arrow(p, out, blabels, bfirst, ust, counts, bnames, sort) -> bool:
    """The lines of write_folded built, sorted and written by Arrow compute kernels: no Python
    object per frame or line.  False without pyarrow (nodeflame[fast]); the caller then does it
    with numpy.

    Every piece of every line is an entry of one token table (a line's first label, ';' + label,
    a thread name, ' ' + count + line feed), so a ``take`` of the lines' token numbers writes the
    text, line after line (a slice of lines at a time, into one buffer).  The lines are then an
    array over that same buffer (no copy), sorted by Arrow's ``sort_indices`` and written slice
    by slice.
    A line feed sorts below every byte a line holds on this path (no control characters), so
    the lines sort as the text without it did."""
    if len(ust) < _ARROW_MIN_LINES:
        return False
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return False
    from ..frames.stacktable import stack_paths
    a = p.arrays()
    LB = pa.large_binary()
    n = len(ust)
    nlab = len(blabels)
    heads = bnames is not None
    ust = np.asarray(ust, np.int64)
    nfr = a["depth"][ust] + 1  # frames per line
    # the token table: [first labels | ';' + labels | thread names | ' ' + count + '\n'] (per line)
    # (arrays made from buffers: pa.array() and pa.scalar() import pandas)
    cnt = pc.binary_join_element_wise(_same(pa, b" ", n), _ints(pa, counts).cast(pa.large_string()).cast(LB),
                                      _same(pa, b"\n", n), _same(pa, b"", n))
    table = pa.concat_arrays([_binary(pa, bfirst.tolist()),
                              _binary(pa, [b";" + x for x in blabels.tolist()]),
                              _binary(pa, bnames.tolist() if heads else []), cnt])
    del cnt
    extra = 2 if heads else 1  # tokens of a line besides its frames
    line_tok = np.zeros(n, np.int64)  # the first token of each line
    np.cumsum(nfr[:-1] + extra, out=line_tok[1:])
    idx = np.empty(int(nfr.sum()) + extra * n, np.int64)
    for lo in range(0, n, _SLICE):  # the frames' tokens a slice of lines at a time: small temporaries
        off, flat = stack_paths(a["prefix"], ust[lo:lo + _SLICE], a["depth"])
        pos = np.arange(len(flat), dtype=np.int64)
        pos += np.repeat(line_tok[lo:lo + _SLICE] - off[:-1] + (1 if heads else 0), np.diff(off))
        idx[pos] = a["frame"][flat] + nlab
        del off, flat, pos
    if heads:
        idx[line_tok] = 2 * nlab + np.arange(n)
    else:
        idx[line_tok] -= nlab  # no separator before the first frame (a stack has at least one)
    idx[line_tok + nfr + extra - 1] = 2 * nlab + (n if heads else 0) + np.arange(n)
    # the text, taken a slice of lines at a time into one buffer of its exact size (one take of it
    # all grows Arrow's output buffer by doubling: 1.3 GB at the peak for 400 MB of text)
    toff = np.frombuffer(table.buffers()[1], np.int64, len(table) + 1, table.offset * 8)
    size = int((toff[1:] - toff[:-1])[idx].sum()) if len(idx) else 0
    data = np.empty(size, np.uint8)
    line_off = np.empty(n + 1, np.int64)
    line_end = np.append(line_tok[1:], len(idx))
    at = 0
    for lo in range(0, n, _SLICE):
        hi = min(lo + _SLICE, n)
        t0, t1 = int(line_tok[lo]), int(line_end[hi - 1])
        part = table.take(_ints(pa, idx[t0:t1]))
        po = np.frombuffer(part.buffers()[1], np.int64, len(part) + 1, part.offset * 8)
        ln = int(po[-1] - po[0])
        data[at:at + ln] = np.frombuffer(part.buffers()[2], np.uint8, ln, int(po[0]))
        line_off[lo:hi] = at + po[line_tok[lo:hi] - t0] - po[0]
        at += ln
        del part, po
    line_off[n] = at
    del table, idx
    if not (sort and n > 1):
        out.write(memoryview(data))
        return True
    lines = pa.LargeBinaryArray.from_buffers(LB, n, [None, pa.py_buffer(line_off), pa.py_buffer(data)])
    order = pc.sort_indices(lines)  # bytewise, as bytes sort
    with _Pieces(out) as w:
        for lo in range(0, n, _SLICE):
            part = lines.take(order[lo:lo + _SLICE])
            o = np.frombuffer(part.buffers()[1], np.int64, len(part) + 1, part.offset * 8)
            w.write(memoryview(part.buffers()[2])[int(o[0]):int(o[-1])])
            del part
    return True


_TOKENS_PER_TAKE = 1 << 17  # frames (and heads, counts) per take of the ordered writer: a few MB of text


def _arrow_ranks(pc, arr) -> np.ndarray:
    """Dense ranks (equal bytes, equal rank) of an Arrow binary array, bytewise order."""
    return arrow_ints(pc.rank(arr, tiebreaker="dense")).astype(np.int64)


def _line_order(off, vflat, nv, vpar, vkey, vleaf, ekey, roots=None):
    """The position of each line in the sorted output, from its path in a tree, without its text.

    Line i's path is ``vflat[off[i]:off[i+1]]`` (tree nodes, root first, ending at its own node
    ``vleaf[i]``; ``roots``: an extra root node of each line not in ``vflat``), ``vpar`` each node's
    parent (-1 at a root) and ``vkey`` the rank of its text as a line goes on past it ("label;"),
    ``ekey[i]`` the rank of line i's last token as the line ends there ("label count\n").  A line's
    text is the concatenation of these tokens, and no token is a prefix of another (no label holds
    ';' or a line feed), so the lines sort as the sequences of their tokens' ranks: a walk of the
    tree visiting under each node its children's subtrees and the lines ending at its children,
    by rank.  So each line's position is, summed over its path, the number of lines in the
    subtrees and ends that sort before its own step under the same parent.  None when two
    siblings have the same rank (the same text: the tree's order is then not the text's)."""
    n = len(vleaf)
    below = np.bincount(vflat, minlength=nv)       # lines through each node ...
    if roots is not None:
        below += np.bincount(roots, minlength=nv)
    below[vleaf] -= 1                              # ... strictly below it (the lines are distinct)
    par_c = vpar + 1                                # 0: under no node
    par_e = vpar[vleaf] + 1
    has = below > 0
    # only a step with a sibling needs ordering: the only step under its parent is first there
    steps = np.bincount(par_c[has], minlength=nv + 1)
    steps += np.bincount(par_e, minlength=nv + 1)
    cn = np.flatnonzero(has & (steps[par_c] > 1))
    el = np.flatnonzero(steps[par_e] > 1)
    del has, steps
    rmax = int(max(int(vkey.max()) if len(vkey) else 0, int(ekey.max()) if n else 0)) + 1
    par = np.concatenate((par_c[cn], par_e[el]))
    key = par * rmax + np.concatenate((vkey[cn], ekey[el]))
    w = np.concatenate((below[cn], np.ones(len(el), np.int64)))
    del par_c, par_e, below
    o = np.argsort(key)
    ks = key[o]
    if len(ks) > 1 and not (ks[1:] != ks[:-1]).all():
        return None
    del key, ks
    ws = w[o]
    before = np.cumsum(ws)
    before -= ws                                    # lines before each step, all parents together
    ps = par[o]
    if len(ps):
        gstart = np.flatnonzero(np.concatenate(([True], ps[1:] != ps[:-1])))
        before -= np.repeat(before[gstart], np.diff(np.append(gstart, len(ps))))   # ... under its parent
    off_step = np.empty(len(o), np.int64)
    off_step[o] = before
    del ws, ps, before, o, w, par
    coff = np.zeros(nv, np.int64)
    coff[cn] = off_step[:len(cn)]
    pos = np.zeros(n, np.int64)
    pos[el] = off_step[len(cn):]
    if len(vflat):
        pos += _path_sums(coff, vflat, off)
    if roots is not None:
        pos += coff[roots]
    pos -= coff[vleaf]
    return pos


def _path_sums(vals, flat, off, span: int = 1 << 20) -> np.ndarray:
    """Each path's sum of ``vals`` over its nodes (path i is ``flat[off[i]:off[i+1]]``): the values
    gathered about ``span`` nodes at a time into one buffer, not into a temporary as long as ``flat``
    (8 M nodes: 64 MB of fresh pages)."""
    n = len(off) - 1
    out = np.zeros(n, vals.dtype)
    buf = np.empty(0, vals.dtype)
    a = 0
    while a < n:
        b = min(max(int(np.searchsorted(off, off[a] + span, "right")) - 1, a + 1), n)
        s, e = int(off[a]), int(off[b])
        if e > s:
            if e - s > len(buf):
                buf = np.empty(max(e - s, min(span, len(flat))), vals.dtype)
            np.take(vals, flat[s:e], out=buf[:e - s])
            nz = np.flatnonzero(off[a + 1:b + 1] > off[a:b])
            out[a + nz] = np.add.reduceat(buf[:e - s], off[a:b][nz] - s)
        a = b
    return out


def _paths(prefix, depth, stacks):
    """``stack_paths(prefix, stacks, depth)`` (root-first paths in CSR form) walked with the stacks
    taken deepest first, so that the stacks still walking are always the first k: slices where
    stack_paths selects them (about a third of its time on 200 k stacks, 8 M frames)."""
    stacks = np.asarray(stacks, np.int64)
    lengths = depth[stacks].astype(np.int64) + 1
    off = np.zeros(len(stacks) + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    # (stack ids as int32 where they fit: half the pages of an 8 M-frame table)
    flat = np.empty(int(off[-1]), np.int32 if len(prefix) < 2**31 - 1 else np.int64)
    if not len(stacks):
        return off, flat
    by = np.argsort(-lengths, kind="stable")
    cur = stacks[by]
    at = off[1:][by] - 1                 # where each one's frame of this step goes: leaf last
    left = np.cumsum(np.bincount(lengths, minlength=int(lengths.max()) + 1)[::-1])[::-1]  # stacks with >= j frames
    for j in range(int(lengths[by[0]])):
        k = int(left[j + 1])
        flat[at[:k]] = cur[:k]
        at[:k] -= 1
        cur[:k] = prefix[cur[:k]]
    return off, flat


def _write_ordered(p, out, blabels, bfirst, ust, counts, bnames, sort) -> bool:
    """The lines of write_folded put in order from the stack table (no text sorted), then written a
    few MB at a time, each piece built by one Arrow ``take`` of a token table: no Python object per
    line or frame, and no copy of the whole text in memory.  False (the caller then writes with
    _write_arrow) without pyarrow, for few lines, or when two frames' (threads') texts are equal or
    hold what makes the tree's order differ from the text's (see _line_order)."""
    n = len(ust)
    if n < _ARROW_MIN_LINES:
        return False
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return False
    heads = bnames is not None
    lab, fst = blabels.tolist(), bfirst.tolist()
    nlab = len(lab)
    names, hcode = None, None
    if heads:  # each line's thread, as a code into its distinct names
        uniq_names: dict = {}
        hcode = np.fromiter((uniq_names.setdefault(x, len(uniq_names)) for x in bnames.tolist()), np.int64, n)
        names = list(uniq_names)
    if sort:
        for group in (lab, fst) + ((names,) if heads else ()):
            if len(set(group)) != len(group):
                return False
            joined = b"".join(group)
            if b";" in joined or b"\n" in joined:
                return False
    a = p.arrays()
    prefix, frame, depth = a["prefix"], a["frame"], a["depth"]
    from ..frames.stacktable import unique_inverse
    ust = np.asarray(ust, np.int64)
    if ust.min() < 0:
        return False
    off, flat = _paths(prefix, depth, ust)
    nfr = np.diff(off)
    LB = pa.large_binary()
    cnt = pc.binary_join_element_wise(_same(pa, b" ", n), _ints(pa, counts).cast(pa.large_string()).cast(LB),
                                      _same(pa, b"\n", n), _same(pa, b"", n))
    # the token table: [first labels | ';' + labels | thread names | ' ' + count + '\n' per line]
    semi = [b";" + x for x in lab]
    nh = len(names) if heads else 0
    table = pa.concat_arrays([_binary(pa, fst), _binary(pa, semi), _binary(pa, names if heads else []), cnt])
    if sort:
        # ranks of every token a line can go on past (label + ';') or end with (label + count + '\n')
        leaf_tok = frame[ust] + nlab
        if not heads:
            leaf_tok[depth[ust] == 0] -= nlab  # a line of one frame: its first label
        goes_on = [x + b";" for x in fst] + [x + b";" for x in semi] + ([x + b";" for x in names] if heads else [])
        # an end 'label count\n' sorts among its siblings' tokens as 'label ' does, unless a label of
        # its class (first labels, the others) starts with another's 'label ' (then the counts decide:
        # the whole ends are ranked, one per line)
        spaced = [[x + b" " for x in fst], [x + b" " for x in semi]]
        whole = any(b.startswith(a) for c in spaced for a, b in zip(*(lambda z: (z, z[1:]))(sorted(c))))
        if whole:
            ends = pc.binary_join_element_wise(table.take(_ints(pa, leaf_tok)), cnt, _same(pa, b"", n))
            rank = _arrow_ranks(pc, pa.concat_arrays([_binary(pa, goes_on), ends]))
            del ends
            r_first, r_semi, r_head, r_end = np.split(rank, [nlab, 2 * nlab, 2 * nlab + nh])
        else:
            rank = _arrow_ranks(pc, _binary(pa, goes_on + spaced[0] + spaced[1]))
            r_first, r_semi, r_head, r_ends = np.split(rank, [nlab, 2 * nlab, 2 * nlab + nh])
            r_end = r_ends[leaf_tok]
        del leaf_tok, goes_on, spaced
        if not heads:
            vkey = np.where(depth == 0, r_first[frame], r_semi[frame])
            order_pos = _line_order(off, flat, len(prefix), prefix, vkey, ust, r_end)
        else:
            # the tree of (thread, stack) nodes under one root per thread: nodes 0..nh-1 the roots
            line_of = np.repeat(np.arange(n, dtype=np.int64), nfr)
            _, inv = unique_inverse(hcode[line_of] * (len(prefix) + 1) + flat)
            inv += nh
            nv = int(inv.max()) + 1 if len(inv) else nh
            vpar = np.empty(nv, np.int64)
            vpar[:nh] = -1
            prev = np.empty(len(inv), np.int64)
            prev[1:] = inv[:-1]
            starts = off[:-1][nfr > 0]
            prev[starts] = hcode[nfr > 0]
            vpar[inv] = prev
            vkey = np.empty(nv, np.int64)
            vkey[:nh] = r_head
            vkey[inv] = r_semi[frame[flat]]
            del prev, line_of
            order_pos = _line_order(off, inv, nv, vpar, vkey, inv[off[1:] - 1], r_end, roots=hcode)
            del inv, vpar, vkey
        if order_pos is None:
            return False
        order = np.empty(n, np.int64)
        order[order_pos] = np.arange(n, dtype=np.int64)
        del order_pos
    else:
        order = np.arange(n, dtype=np.int64)
    # the text in that order, a piece at a time: each line's tokens are its head (or first label),
    # ';' + its other labels, its count
    extra = 2 if heads else 1
    ntok = np.cumsum(nfr[order] + extra)
    cuts = np.searchsorted(ntok, np.arange(_TOKENS_PER_TAKE, int(ntok[-1]), _TOKENS_PER_TAKE), "right")
    bounds = np.unique(np.concatenate(([0], cuts, [n])))
    with _Pieces(out) as w:
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            li = order[lo:hi]
            lens = nfr[li]
            m = len(li)
            tot = int(lens.sum())
            lstart = np.zeros(m, np.int64)          # each line's first token in the piece
            np.cumsum(lens[:-1] + extra, out=lstart[1:])
            fstart = np.cumsum(lens) - lens         # each line's first frame among the piece's frames
            src = np.repeat(off[li] - fstart, lens)
            src += np.arange(tot, dtype=np.int64)   # the frames' places in flat
            dst = np.repeat(lstart - fstart + (1 if heads else 0), lens)
            dst += np.arange(tot, dtype=np.int64)
            idx = np.empty(tot + extra * m, np.int64)
            idx[dst] = frame[flat[src]] + nlab
            del src, dst
            if heads:
                idx[lstart] = 2 * nlab + hcode[li]
            else:
                idx[lstart] -= nlab                 # no separator before the first frame
            idx[lstart + lens + extra - 1] = 2 * nlab + nh + li
            part = table.take(_ints(pa, idx))
            po = np.frombuffer(part.buffers()[1], np.int64, len(part) + 1, part.offset * 8)
            w.write(memoryview(part.buffers()[2])[int(po[0]):int(po[-1])])
            del part, po, idx
    return True
