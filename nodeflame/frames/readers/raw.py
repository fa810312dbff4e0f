"""Raw stacks: what DTrace/SystemTap ``ustack()`` aggregations and torch print.

::

    CPU     ID                    FUNCTION:NAME        <- optional header (up to 3 lines)
      0  64091                        :tick-60s

                  libc.so.1`malloc+0x12                 <- frames, leaf first, any indentation
                  node`uv_run+0x1f
                  LazyCompile:*main /app/x.js:3
                   42                                   <- the stack's count

                  ...

Frames are turned into names exactly as FlameGraph's ``stackcollapse.pl``
does, so that ``raw -> folded`` prints what ``stackcollapse.pl`` prints:
leading whitespace goes; the last ``+...`` (the ``+0x12`` offset) goes; C++
arguments go (from the first ``::`` to the last ``(`` or ``<``); an empty
frame becomes ``-``; ``a->b`` is the frame ``a`` with ``b_[i]`` inlined into
it; ``;`` becomes ``:``; a leading ``L`` goes (stackcollapse.pl's Java
rule).  That text is each frame's ``label``; the function's name, file and
kind come from parsing it (``module`func``, V8 perf-map names).

Differences from stackcollapse.pl, all on input it mishandles: it drops the
first three lines whatever they hold, this reader drops only recognisable
header lines (blank, ``#`` comments, DTrace's ``CPU ID FUNCTION:NAME`` and
probe line) among the first three; CRLF line ends and spaces after a count
are accepted; a stack whose frames are followed by a blank line instead of a
count is an error (FormatError naming the line), and frames at the very end
of the file without a count are set aside with a FormatWarning.

Pass ``stackcollapse=False`` to keep every frame verbatim (only surrounding
whitespace removed), ``threads=True`` to read SystemTap's ``[thread TID]``
markers (see :func:`read_raw`).

A file is read in blocks of whole lines (:func:`read_raw_file`, what
``nodeflame.read`` uses for a plain file): the lines of each block are
interned by Arrow on two threads when pyarrow is installed, by ``bytes.split``
and a dict when not, so that the whole file is never in memory and no Python
object is made per line, only per distinct line.
"""
from __future__ import annotations

import itertools
import re
import warnings

import numpy as np

from ..build import FrameTable, build_from_sorted_paths, frame_tables
from ..errors import FormatError, FormatWarning
from ..formats import decode_text, register_reader
from ..symbols import parse_dtrace

_WS = " \t\n\r\f\v"  # Perl's \s on bytes: ASCII whitespace only
_COUNT = re.compile(r"[ \t\f\v]*([0-9]+)[ \t\f\v]*\Z")
_OFFSET = re.compile(r"\+[^+]*\Z")
_DT_HEAD = re.compile(r"[ \t]*CPU[ \t]+ID[ \t]+FUNCTION:NAME[ \t]*\Z")
_DT_PROBE_HEAD = re.compile(r"[ \t]*[0-9]+[ \t]+[0-9]+[ \t]+")


def _dt_probe(ln: str) -> bool:
    r"""What r"[ \t]*[0-9]+[ \t]+[0-9]+[ \t]+[^ \t]*:[^ \t]*[ \t]*\Z" matches, in linear time."""
    m = _DT_PROBE_HEAD.match(ln)
    if m is None or "\n" in ln:
        return False
    rest = ln[m.end():].rstrip(" \t")
    return ":" in rest and " " not in rest and "\t" not in rest


def _cpp_args(f: str) -> str:
    """What re.sub(r"(::.*)[(<].*", r"\1", f, count=1) gives: after the first '::', everything
    from the last '(' or '<' on is cut (linear; the expression is quadratic on '::::...')."""
    i = f.find("::")
    if i < 0 or "\n" in f:
        return f if i < 0 else _CPP_ARGS_RE.sub(r"\1", f, count=1)
    j = max(f.rfind("(", i + 2), f.rfind("<", i + 2))
    return f[:j] if j >= 0 else f


_CPP_ARGS_RE = re.compile(r"(::.*)[(<].*")
_INLINE = "_[i]"

BLANK, COUNT, FRAME, MARK = 0, 1, 2, 3


def collapse_frame(line: str) -> list[str]:
    """The frame(s) stackcollapse.pl makes of one input line, outermost first.

    Usually one; ``a->b`` gives ``['a', 'b_[i]']``; ``->`` alone gives none."""
    f = line.lstrip(_WS)
    f = _OFFSET.sub("", f, count=1)
    f = _cpp_args(f)
    if f == "":
        f = "-"
    parts = f.split("->")
    while parts and parts[-1] == "":  # Perl's split drops trailing empty fields
        parts.pop()
    out = []
    for i, p in enumerate(parts):
        p = p.replace(";", ":")
        if p.startswith("L"):
            p = p[1:]
        if i:
            p += _INLINE
        out.append(p)
    return out


def header_length(lines, limit: int = 3) -> int:
    """Number of leading header lines (at most ``limit``): blank, '#', DTrace's column and probe lines."""
    h = 0
    while h < min(limit, len(lines)):
        ln = lines[h]
        if (not ln.strip(_WS) or ln.startswith("#") or _DT_HEAD.match(ln)
                or (h and _DT_HEAD.match(lines[h - 1]) and _dt_probe(ln))):
            h += 1
        else:
            break
    return h


def _split_lines(data: bytes, source: str):
    text = decode_text(data, source)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _factorize(lines):
    """(codes array, unique list) in order of first appearance."""
    index: dict = {}
    setdefault = index.setdefault
    codes = np.fromiter(map(setdefault, lines, itertools.count()), np.int64, len(lines))
    first = np.fromiter(index.values(), np.int64, len(index))   # first position of each distinct line
    lut = np.empty(len(lines), np.int64)
    lut[first] = np.arange(len(first))
    return lut[codes], list(index)


_CHUNK = 1 << 24  # bytes of whole lines taken from the input at a time
_NL_STEP = 1 << 20  # bytes searched for line feeds at a time


def _blocks(fh, chunk: int = _CHUNK, *, pool: list | None = None):
    """Blocks of whole lines of the binary file ``fh``, about ``chunk`` bytes each, as
    (buffer, end): the lines are ``buffer[:end]``, each ending in a line feed (one is added
    after a last line without it); a UTF-8 byte-order mark at the start goes.  Each block is
    read straight into its own buffer (the start of the line the last block cut copied in
    front): a bytearray the caller put back in ``pool`` when done with it, if one is large
    enough (fresh memory costs a page fault per 4 kB), else a new one.  Yields ("bom16",) or
    ("cr",) and stops where the text path must decide (UTF-16, a lone CR at the very end)."""
    first = True
    carry = b""
    want = max(chunk, 4)
    while True:
        # a block's buffer holds the cut line and then the file up to ``want`` bytes in all (the pool's
        # buffers fit again: with ``len(carry) + want`` none did once a line was cut, and every block
        # faulted in a fresh 16 MB), or twice the cut line when it is longer than half of that
        need = max(want, 2 * len(carry))
        buf = None
        while pool and buf is None:
            b = pool.pop()
            if len(b) >= need:
                buf = b
        if buf is None:
            buf = bytearray(need)
        with memoryview(buf) as mv:
            mv[:len(carry)] = carry
            got = fh.readinto(mv[len(carry):need])
        size = len(carry) + got
        if first:
            first = False
            if buf.startswith((b"\xff\xfe", b"\xfe\xff")):
                yield ("bom16",)
                return
            if buf.startswith(b"\xef\xbb\xbf"):
                del buf[:3]
                size -= 3
        if not got:
            break
        cut = buf.rfind(b"\n", 0, size) + 1
        if cut == 0:  # a line longer than a block: read on, twice as much each time (linear)
            carry = bytes(memoryview(buf)[:size])
            continue
        carry = bytes(memoryview(buf)[cut:size])
        yield (buf, cut)
        del buf
    if carry:
        if carry.endswith(b"\r"):
            yield ("cr",)
            return
        carry += b"\n"
        yield (carry, len(carry))


def _encode_arrow(b: bytes, end: int):
    """Arrow's dictionary_encode of the lines of ``b[:end]`` (each with its line feed), the
    line ends found by numpy a MB at a time (the comparison's bool array stays in cache and is
    used again): C++ hashing with the GIL released, no Python object per line."""
    import pyarrow as pa
    import pyarrow.compute as pc
    a = np.frombuffer(b, np.uint8, end)
    step = min(_NL_STEP, max(end, 1))
    eq = np.empty(step, bool)
    ends = []
    for s in range(0, end, step):
        e = min(s + step, end)
        ends.append((s, np.flatnonzero(np.equal(a[s:e], 10, out=eq[:e - s]))))
    del a, eq
    n = sum(len(q) for _, q in ends)
    off = np.empty(n + 1, np.int32 if end < 2**31 else np.int64)
    off[0] = 0
    o = 1
    for s, q in ends:
        off[o:o + len(q)] = q
        off[o:o + len(q)] += s + 1
        o += len(q)
    del ends
    typ = pa.binary() if off.dtype == np.int32 else pa.large_binary()
    lines = pa.Array.from_buffers(typ, n, [None, pa.py_buffer(off), pa.py_buffer(b)])
    enc = pc.dictionary_encode(lines)
    del lines  # (the dictionary holds copies: the block's buffer is free again)
    dic = enc.dictionary
    cr = b.find(b"\r", 0, end) >= 0
    return enc.indices, dic.cast(pa.large_binary()) if dic.type != pa.large_binary() else dic, cr


def _intern_lines(fh):
    """(codes, distinct lines as str) of the lines of the UTF-8 binary file ``fh`` (CRLF taken
    as LF), in order of first appearance, read in blocks (bounded memory: the file is never
    whole in memory); None when the text path must decide (not UTF-8, UTF-16, nothing, a lone
    CR at the end).  With pyarrow the blocks are interned by Arrow on two threads and their
    distinct lines merged by Arrow again; without, by bytes.split and a dict."""
    r = _intern_lines_arrow(fh)
    return r if r is None else r[:2]


def _intern_lines_arrow(fh):
    """_intern_lines, and the distinct lines as an Arrow large_string array too (None without
    pyarrow, or where CRLF line ends were merged): (codes, uniq, array) or None."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        r = _intern_lines_split(fh)
        return r if r is None else (r[0], r[1], None)
    done = _encode_blocks(fh)
    if not done:
        return None
    # the distinct lines of all blocks, interned once more: block dictionaries are in order of first
    # appearance, so the merged one is too
    any_cr = any(cr for _, _, cr in done)
    dicts = pa.chunked_array([d for _, d, _ in done])
    g = pc.dictionary_encode(dicts.combine_chunks() if dicts.num_chunks > 1 else dicts.chunk(0))
    gidx = _ints(g.indices).astype(np.int32 if len(g.dictionary) < 2**31 else np.int64)
    n = sum(len(i) for i, _, _ in done)
    codes = np.empty(n, gidx.dtype)
    o = k = 0
    for idx, d, _ in done:
        codes[o:o + len(idx)] = gidx[k:k + len(d)][_ints(idx)]
        o += len(idx)
        k += len(d)
    del done, dicts, gidx
    try:  # one str per distinct line, without its line feed: UTF-8 checked and cut by Arrow
        arr = pc.binary_slice(g.dictionary, 0, -1).cast(pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    del g
    uniq = arr.to_pylist()
    if any_cr:
        codes, uniq = _crlf(codes, uniq)
        arr = None
    return codes, uniq, arr


def _ints(a) -> np.ndarray:
    """The values of an Arrow integer array without nulls, viewed as numpy (``to_numpy()`` imports
    pandas)."""
    dtype = np.dtype(f"{'u' if a.type.id in (2, 4, 6, 8) else 'i'}{a.type.bit_width // 8}")
    return np.frombuffer(a.buffers()[1], dtype, len(a), a.offset * dtype.itemsize)


def _bools(a) -> np.ndarray:
    """An Arrow boolean array without nulls as numpy."""
    import pyarrow as pa
    import pyarrow.compute as pc
    return _ints(pc.cast(a, pa.uint8())).astype(bool)


def _last_not(t, value) -> int:
    """Index of the last entry of ``t`` other than ``value`` (len(t) - 1 if there is none), looking
    at the end first."""
    n = len(t)
    k = 4096
    while True:
        tail = t[max(n - k, 0):]
        hit = np.flatnonzero(tail != value)
        if len(hit):
            return max(n - k, 0) + int(hit[-1])
        if k >= n:
            return n - 1
        k *= 8


# two threads intern the blocks (numpy and Arrow release the GIL) where a second core is idle: the
# 1-minute load average below the cores usable less one; on a busy machine the second thread only adds
# CPU time (its own allocations fault in fresh pages: perf input 1.38 s against 1.20 s CPU, 88 k against
# 52 k page faults, at load 4 on 2 cores).  None: decide so; True/False: always / never.
_THREADS = None


def _use_threads() -> bool:
    if _THREADS is not None:
        return bool(_THREADS)
    import os
    try:
        ncpu = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        ncpu = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return ncpu > 1
    return ncpu > 1 and load < ncpu - 1


def _encode_blocks(fh):
    """_encode_arrow of each block of ``fh``, in order (None where the text path must decide): on two
    threads (at most 3 blocks in memory) or on this one (_use_threads)."""
    done: list = []
    pool: list = []      # block buffers done with, read into again
    if not _use_threads():  # no second thread's allocations (page faults) or hand-overs
        for item in _blocks(fh, pool=pool):
            if len(item) == 1:
                return None
            b, end = item
            del item
            done.append(_encode_arrow(b, end))
            if isinstance(b, bytearray):
                pool.append(b)
            del b
        return done
    from concurrent.futures import ThreadPoolExecutor
    pending: list = []
    with ThreadPoolExecutor(2, thread_name_prefix="nodeflame-read") as ex:
        for item in _blocks(fh, pool=pool):
            if len(item) == 1:
                return None
            b, end = item
            del item
            pending.append((ex.submit(_encode_arrow, b, end), b))
            del b
            while len(pending) > 2:  # at most 3 blocks in memory
                _finish(pending.pop(0), done, pool)
        while pending:
            _finish(pending.pop(0), done, pool)
    return done


def _finish(job, done: list, pool: list) -> None:
    """A block's interning done: its result to ``done``, its buffer back to the pool."""
    fut, b = job
    done.append(fut.result())
    if isinstance(b, bytearray):
        pool.append(b)


def _crlf(codes, uniq):
    """CRLF: lines differing only by a final '\r' are the same line."""
    if any(u.endswith("\r") for u in uniq):
        stripped = [u[:-1] if u.endswith("\r") else u for u in uniq]
        sc, su = _factorize(stripped)
        codes, uniq = sc[codes], list(su)
    return codes, uniq


def _intern_lines_split(fh):
    """_intern_lines without pyarrow: bytes.split and dict interning per block."""
    index: dict = {}
    setdefault = index.setdefault
    pos = itertools.count()
    out = []
    for item in _blocks(fh):
        if len(item) == 1:
            return None
        b, end = item
        lines = bytes(memoryview(b)[:end]).split(b"\n")
        del b, item
        lines.pop()  # after the last line feed
        out.append(np.fromiter(map(setdefault, lines, pos), np.int64, len(lines)))
        del lines
    if not out:
        return None
    first_pos = np.concatenate(out) if len(out) > 1 else out[0]
    del out
    uniq_pos = np.fromiter(index.values(), np.int64, len(index))
    keys = list(index)
    del index
    try:
        uniq = [k.decode("utf-8") for k in keys]
    except UnicodeDecodeError:
        return None
    del keys
    lut = np.zeros(int(uniq_pos.max()) + 1, np.int32 if len(uniq) < 2**31 else np.int64)
    lut[uniq_pos] = np.arange(len(uniq_pos))
    return _crlf(lut[first_pos], uniq)


def read_raw(data: bytes, source: str = "<raw>", *, stackcollapse: bool = True, threads: bool = False,
             thread_names: dict | None = None) -> "Profile":
    """The Profile of raw stacks ``data`` (see the module's doc).

    ``threads=True`` reads SystemTap's thread markers (what nodeflame's stap
    script prints): a stack whose root-most line is ``[thread TID]`` belongs to
    thread TID (named ``thread_names[TID]``, else ``thread TID``; stacks with no
    marker go to ``main``), the marker is no frame, a stack of nothing but its
    marker is dropped, and any number of ``#`` lines may lead the file.  The
    samples then get the threads and a ``tid`` column (-1 where unmarked)."""
    import io
    fast = _intern_lines(io.BytesIO(data)) if isinstance(data, (bytes, bytearray)) else None
    return _read(fast, data, source, stackcollapse, threads, thread_names)


def read_raw_file(fh, source: str = "<raw>", *, stackcollapse: bool = True, threads: bool = False,
                  thread_names: dict | None = None) -> "Profile":
    """read_raw of the binary file ``fh``, taken in blocks: the whole file is never in memory."""
    fast = _intern_lines(fh)
    data = None
    if fast is None:
        fh.seek(0)
        data = fh.read()
    return _read(fast, data, source, stackcollapse, threads, thread_names)


_THREAD = re.compile(r"\[thread ([0-9]{1,18})\]")


def _read(fast, data, source, stackcollapse, threads, thread_names):
    if fast is not None:
        codes, uniq = fast
        line = lambda i: uniq[codes[i]]  # noqa: E731
        n = len(codes)
    else:
        lines = _split_lines(data, source)
        line = lines.__getitem__
        n = len(lines)
    h = header_length([line(i) for i in range(min(3, n))])
    while threads and h < n and (line(h).startswith("#") or not line(h).strip(_WS)):
        h += 1  # stap's own header lines, as many as it prints
    if fast is not None:
        codes = codes[h:]
    else:
        codes, uniq = _factorize(lines[h:] if h else lines)
        del lines
    nu = len(uniq)
    utype = np.empty(nu, np.int8)
    ucount = np.zeros(nu, np.int64)
    ustart = np.zeros(nu, np.int64)   # into ids: frames of the line, leaf first
    ulen = np.zeros(nu, np.int64)
    utid = np.full(nu, -1, np.int64) if threads else None
    ids: list[int] = []
    ft = FrameTable()
    by_label: dict[str, int] = {}
    used = np.zeros(nu, bool)
    used[codes] = True
    for k, ln in enumerate(uniq):
        if not used[k]:  # a header line only
            utype[k] = BLANK
            continue
        m = _COUNT.match(ln)
        if m is not None:
            utype[k] = COUNT
            v = int(m.group(1))
            if v >= 2 ** 63:
                raise FormatError(f"count {v} too large", source=source,
                                  line=h + int(np.flatnonzero(codes == k)[0]) + 1,
                                  expected="a count below 2**63")
            ucount[k] = v
            continue
        if not ln.strip(_WS):
            utype[k] = BLANK
            continue
        utype[k] = FRAME
        if threads:
            m = _THREAD.fullmatch(ln.strip(_WS))
            if m is not None:
                utype[k] = MARK  # a frame unless it is the line before a count
                utid[k] = int(m.group(1))
        parts = collapse_frame(ln) if stackcollapse else [ln.strip(_WS)]
        ustart[k] = len(ids)
        ulen[k] = len(parts)
        for p in reversed(parts):  # leaf first, like the lines
            fid = by_label.get(p)
            if fid is None:
                base = p[:-len(_INLINE)] if p.endswith(_INLINE) else p
                s = parse_dtrace(base)
                fid = by_label[p] = ft.add(s.name, s.file, s.line, s.column, s.hint, s.tier, label=p)
            ids.append(fid)
    t = utype[codes]
    n = len(codes)
    is_count = t == COUNT
    tid = None
    if threads:
        mark = t == MARK
        if mark.any():
            marker = np.zeros(n, bool)  # a marker is the line right before a count
            marker[:-1] = mark[:-1] & is_count[1:]
            t[mark & ~marker] = FRAME
            t[marker] = COUNT + 8  # neither frame nor blank
            tid = np.full(int(is_count.sum()), -1, np.int64)
            at = np.flatnonzero(marker)
            tid[np.cumsum(is_count)[at]] = utid[codes[at]]
            del marker, at
        del mark
    cpos = np.flatnonzero(is_count)
    del is_count
    fpos = np.flatnonzero(t == FRAME)
    # a stack must end with its count: a frame followed by a blank line with more input after it is an error
    if len(fpos):
        last_nonblank = _last_not(t, BLANK)
        bpos = np.flatnonzero(t == BLANK)
        bpos = bpos[(bpos > 0) & (bpos < last_nonblank)]
        bad = bpos[t[bpos - 1] == FRAME] - 1
        del bpos
        if len(bad):
            i = int(bad[0])
            raise FormatError(f"stack has no count: {uniq[codes[i]].strip()[:80]!r} is not a count",
                              source=source, line=h + i + 1,
                              expected="a line with the stack's count (a whole number) after its frames")
    # the frame lines before each count line; those after the last one have no count
    nbefore = np.searchsorted(fpos, cpos)
    meta = {"source_format": "raw", "unit": "samples"}
    ntail = len(fpos) - (int(nbefore[-1]) if len(cpos) else 0)
    if ntail:
        first = int(fpos[len(fpos) - ntail])
        msg = (f"{source}:{h + first + 1}: {ntail} frame line(s) at the end have no count line; "
               "that stack was set aside")
        warnings.warn(msg, FormatWarning, stacklevel=3)
        meta["warnings"] = [msg]
        fpos = fpos[:len(fpos) - ntail]
    if not len(cpos):
        raise FormatError("no stacks", source=source, line=h + 1 if n else None,
                          expected="frames one per line, leaf first, then a line with the count")
    funcs, frames, fmap = frame_tables(ft)
    ids_arr = fmap[np.asarray(ids, np.int64)] if ids else np.empty(0, np.int64)  # merged frame ids
    nlines = np.diff(nbefore, prepend=0)   # frame lines of each stack
    del nbefore
    fcode = codes[fpos]
    del fpos
    framey = used & ((utype == FRAME) | (utype == MARK))  # every line that can be a frame here
    if (ulen[framey] == 1).all():   # one frame per line: each line's frame id at its code
        lut = np.full(nu, -1, np.int64)
        lut[framey] = ids_arr[ustart[framey]]
        leaf_first = lut[fcode]
        lengths = nlines
        del lut
    else:  # a line 'a->b' is two frames
        nparts = ulen[fcode]
        lengths = np.bincount(np.repeat(np.arange(len(cpos), dtype=np.int64), nlines), weights=nparts,
                              minlength=len(cpos)).astype(np.int64)
        starts = np.repeat(ustart[fcode], nparts)
        starts += np.arange(len(starts), dtype=np.int64)
        starts -= np.repeat(np.cumsum(nparts) - nparts, nparts)
        leaf_first = ids_arr[starts]
        del starts, nparts
    del fcode, t
    nstack = len(cpos)
    offsets = np.zeros(nstack + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # frames come leaf first: the j-th frame of stack b goes to offsets[b] + offsets[b+1] - 1 - j
    # (a reversal within each stack: the same index takes them back)
    rev = np.repeat(offsets[:-1] + offsets[1:] - 1, lengths)
    rev -= np.arange(len(rev), dtype=np.int64)
    flat = leaf_first[rev]
    del rev, leaf_first
    counts = ucount[codes[cpos]]
    del codes
    if not threads:
        return build_from_sorted_paths(funcs, frames, flat, lengths, counts, meta=meta)
    # stap: a stack of nothing but its thread marker is dropped; each sample gets its thread
    if tid is None:
        tid = np.full(nstack, -1, np.int64)
    has = lengths > 0
    if not has.all():
        lengths, counts, tid = lengths[has], counts[has], tid[has]
    prof = build_from_sorted_paths(funcs, frames, flat, lengths, counts, meta=meta)
    names = dict(thread_names or {})
    utids, inv = np.unique(tid, return_inverse=True)
    cats = [names.get(x, f"thread {x}" if x >= 0 else "main") for x in utids.tolist()]
    import pandas as pd
    from ..ops import with_samples
    cat_codes, cats = _factorize(cats)  # threads given one name are one thread
    samples = prof.samples.copy()
    samples["thread"] = pd.Categorical.from_codes(cat_codes[inv.reshape(-1)], list(cats))
    samples["tid"] = tid
    return with_samples(prof, samples)


def sniff(head: bytes, text: str | None) -> bool:
    """Blocks of frame lines each ending in a count-only line."""
    if text is None:
        return False
    lines = text.replace("\r\n", "\n").split("\n")[:400]
    if len(text) >= 65536 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    h = header_length(lines)
    body = lines[h:]
    counts = frames = 0
    prev = BLANK
    for ln in body:
        if not ln.strip(_WS):
            if prev == FRAME:
                return False  # frames must end with a count before a blank line
            prev = BLANK
            continue
        if _COUNT.match(ln):
            if prev != FRAME:
                return False
            counts += 1
            prev = COUNT
            continue
        if _folded_like(ln) or (not ln[:1].isspace() and looks_like_header(ln, first_not="")):
            return False
        frames += 1
        prev = FRAME
    return counts >= 1


def _folded_like(ln: str) -> bool:
    r"""A folded line ('a;b 12'): what r".*;.*[ \t][0-9]+[ \t]*\Z" matches, in linear time
    (the expression takes seconds on a long line of ';')."""
    if "\n" in ln:
        return False
    s = ln.rstrip(" \t")
    i = len(s)
    while i and "0" <= s[i - 1] <= "9":
        i -= 1
    return i < len(s) and i > 0 and s[i - 1] in " \t" and ";" in s[:i - 1]


# a perf script sample header ('comm 123 ... cycles:') is told by perf's own test
from .perf import looks_like_header  # noqa: E402

register_reader("raw", read_raw, sniff, (".raw", ".stacks"), read_file=read_raw_file)
