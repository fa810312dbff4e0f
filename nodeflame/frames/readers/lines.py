"""The lines of a text file, interned: one code per line and one string per distinct line.

What the raw and perf readers build on (both are files of many repeated lines: a frame per line).  A
file is read in blocks of whole lines (:func:`blocks`), never whole; with pyarrow each block's lines
are dictionary-encoded by Arrow (C++ hashing with the GIL released, on two threads where a second core
is idle) and the blocks' dictionaries merged by Arrow again, without it by ``bytes.split`` and a dict:
no Python object per line, only per distinct line.  ``arrow_ints`` / ``arrow_bools`` view Arrow
arrays as numpy without importing pandas.
"""
from __future__ import annotations

import itertools

import numpy as np


def factorize(lines):
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


def blocks(fh, chunk: int = _CHUNK, *, pool: list | None = None):
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


def intern_lines(fh):
    """(codes, distinct lines as str) of the lines of the UTF-8 binary file ``fh`` (CRLF taken
    as LF), in order of first appearance, read in blocks (bounded memory: the file is never
    whole in memory); None when the text path must decide (not UTF-8, UTF-16, nothing, a lone
    CR at the end).  With pyarrow the blocks are interned by Arrow on two threads and their
    distinct lines merged by Arrow again; without, by bytes.split and a dict."""
    r = intern_lines_arrow(fh)
    return r if r is None else r[:2]


def intern_lines_arrow(fh):
    """intern_lines, and the distinct lines as an Arrow large_string array too (None without
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
    gidx = arrow_ints(g.indices).astype(np.int32 if len(g.dictionary) < 2**31 else np.int64)
    n = sum(len(i) for i, _, _ in done)
    codes = np.empty(n, gidx.dtype)
    o = k = 0
    for idx, d, _ in done:
        codes[o:o + len(idx)] = gidx[k:k + len(d)][arrow_ints(idx)]
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


def arrow_ints(a) -> np.ndarray:
    """The values of an Arrow integer array without nulls, viewed as numpy (``to_numpy()`` imports
    pandas)."""
    dtype = np.dtype(f"{'u' if a.type.id in (2, 4, 6, 8) else 'i'}{a.type.bit_width // 8}")
    return np.frombuffer(a.buffers()[1], dtype, len(a), a.offset * dtype.itemsize)


def arrow_bools(a) -> np.ndarray:
    """An Arrow boolean array without nulls as numpy."""
    import pyarrow as pa
    import pyarrow.compute as pc
    return arrow_ints(pc.cast(a, pa.uint8())).astype(bool)

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
        for item in blocks(fh, pool=pool):
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
        for item in blocks(fh, pool=pool):
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
        sc, su = factorize(stripped)
        codes, uniq = sc[codes], list(su)
    return codes, uniq


def _intern_lines_split(fh):
    """intern_lines without pyarrow: bytes.split and dict interning per block."""
    index: dict = {}
    setdefault = index.setdefault
    pos = itertools.count()
    out = []
    for item in blocks(fh):
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
