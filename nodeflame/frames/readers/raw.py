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
whitespace removed).
"""
from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pandas as pd

from ..build import FrameTable, build_from_sorted_paths, frame_tables
from ..errors import FormatError, FormatWarning
from ..formats import decode_text, register_reader
from ..symbols import parse_dtrace
from .folded import _positions

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

BLANK, COUNT, FRAME = 0, 1, 2


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


def header_length(lines) -> int:
    """Number of leading header lines (at most 3): blank, '#', DTrace's column and probe lines."""
    h = 0
    while h < min(3, len(lines)):
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
    arr = np.empty(len(lines), dtype=object)
    arr[:] = lines
    codes, uniq = pd.factorize(arr, sort=False)
    return codes.astype(np.int64, copy=False), uniq


_BLOCK = 1 << 24  # bytes split per bytes.split call


def _intern_lines(data: bytes):
    """(codes, unique lines as str) of the lines of UTF-8 ``data``, CRLF taken as LF,
    by C-level bytes.split and dict interning over blocks; None when ``data`` is
    not plain UTF-8 (the text path decides then, with its warnings)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    size = len(data) - 1 if data.endswith(b"\n") else len(data)  # no line after the last line end
    if size <= 0 or (data.endswith(b"\r") and not data.endswith(b"\n")):
        return None  # nothing, or a lone CR at the very end: the text path's rules
    index: dict = {}
    pos = itertools.count()
    setdefault = index.setdefault
    out = []
    lo = 0
    while lo < size:
        hi = data.find(b"\n", min(lo + _BLOCK, size))
        hi = size if hi < 0 else hi
        lines = data[lo:hi].split(b"\n")
        out.append(np.fromiter(map(setdefault, lines, pos), np.int64, len(lines)))
        del lines
        lo = hi + 1
    first_pos = np.concatenate(out) if out else np.empty(0, np.int64)
    uniq_pos = np.fromiter(index.values(), np.int64, len(index))
    keys = list(index)
    del index
    try:
        uniq = [k.decode("utf-8") for k in keys]  # one per distinct line
    except UnicodeDecodeError:
        return None
    lut = np.zeros(int(uniq_pos[-1]) + 1 if len(uniq_pos) else 0, np.int64)
    lut[uniq_pos] = np.arange(len(uniq_pos))
    codes = lut[first_pos]
    # CRLF: lines differing only by a final '\r' are the same line
    if any(u.endswith("\r") for u in uniq):
        stripped = [u[:-1] if u.endswith("\r") else u for u in uniq]
        sc, su = _factorize(stripped)
        codes, uniq = sc[codes], list(su)
    return codes, uniq


def _intern_lines_arrow(data: bytes):
    """What _intern_lines returns, with the lines found by numpy and interned by Arrow's
    dictionary_encode (C++ hashing, no Python object per line); None without pyarrow
    or where _intern_lines would say None."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return _intern_lines(data)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    data = bytes(data)
    size = len(data) - 1 if data.endswith(b"\n") else len(data)
    if size <= 0 or (data.endswith(b"\r") and not data.endswith(b"\n")):
        return None
    nl = _positions(np.frombuffer(data, np.uint8, size), 10)
    n = len(nl) + 1
    # each line with its line feed (the last one without, when the data has none at its end)
    off = np.empty(n + 1, np.int64)
    off[0] = 0
    off[1:n] = nl + 1
    off[n] = len(data)
    del nl
    lines = pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(off), pa.py_buffer(data)])
    enc = pc.dictionary_encode(lines)  # distinct lines in order of first appearance
    del lines, off
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    keys = enc.dictionary.to_pylist()
    del enc
    try:
        uniq = [k.decode("utf-8") for k in keys]
    except UnicodeDecodeError:
        return None
    del keys
    uniq = [u[:-1] if u.endswith("\n") else u for u in uniq]
    if any(u.endswith("\r") for u in uniq) or len(set(uniq)) < len(uniq):
        # the line without a line feed at the very end, and CRLF: lines equal once those go are one line
        stripped = [u[:-1] if u.endswith("\r") else u for u in uniq]
        sc, su = _factorize(stripped)
        codes, uniq = sc[codes], list(su)
    return codes, uniq


def read_raw(data: bytes, source: str = "<raw>", *, stackcollapse: bool = True) -> "Profile":
    fast = _intern_lines_arrow(data) if isinstance(data, (bytes, bytearray)) else None
    if fast is not None:
        codes, uniq = fast
        first = [uniq[c] for c in codes[:3].tolist()]
        h = header_length(first)
        codes = codes[h:]
    else:
        lines = _split_lines(data, source)
        h = header_length(lines)
        body = lines[h:] if h else lines
        codes, uniq = _factorize(body)
    nu = len(uniq)
    utype = np.empty(nu, np.int8)
    ucount = np.zeros(nu, np.int64)
    ustart = np.zeros(nu, np.int64)   # into ids: frames of the line, leaf first
    ulen = np.zeros(nu, np.int64)
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
    is_frame = t == FRAME
    cpos = np.flatnonzero(is_count)
    fpos = np.flatnonzero(is_frame)
    # a stack must end with its count: a frame followed by a blank line with more input after it is an error
    if len(fpos):
        nonblank = t != BLANK
        last_nonblank = n - 1 - int(np.argmax(nonblank[::-1]))
        badm = is_frame[:-1] & ~nonblank[1:]
        badm[max(last_nonblank - 1, 0):] = False  # only with more input after the blank line
        bad = np.flatnonzero(badm)
        if len(bad):
            i = int(bad[0])
            raise FormatError(f"stack has no count: {uniq[codes[i]].strip()[:80]!r} is not a count",
                              source=source, line=h + i + 1,
                              expected="a line with the stack's count (a whole number) after its frames")
    # index of the count line that ends each frame's stack: the counts before it
    blk = np.cumsum(is_count)[fpos] if len(fpos) else np.empty(0, np.int64)
    meta = {"source_format": "raw", "unit": "samples"}
    tail = blk == len(cpos)
    if tail.any():
        first = int(fpos[np.argmax(tail)])
        msg = (f"{source}:{h + first + 1}: {int(tail.sum())} frame line(s) at the end have no count line; "
               "that stack was set aside")
        warnings.warn(msg, FormatWarning, stacklevel=3)
        meta["warnings"] = [msg]
        fpos, blk = fpos[~tail], blk[~tail]
    if not len(cpos):
        raise FormatError("no stacks", source=source, line=h + 1 if n else None,
                          expected="frames one per line, leaf first, then a line with the count")
    fcode = codes[fpos]
    nparts = ulen[fcode]
    ids_arr = np.asarray(ids, np.int64)
    if len(nparts) and (nparts == 1).all():
        leaf_first = ids_arr[ustart[fcode]]
        fblk = blk
    else:
        fblk = np.repeat(blk, nparts)
        starts = np.repeat(ustart[fcode], nparts)
        within = np.arange(len(fblk)) - np.repeat(np.cumsum(nparts) - nparts, nparts)
        leaf_first = ids_arr[starts + within]
    nstack = len(cpos)
    lengths = np.bincount(fblk, minlength=nstack)
    offsets = np.zeros(nstack + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # frames come leaf first: the j-th frame line of stack b goes to offsets[b] + offsets[b+1] - 1 - j
    flat = np.empty(len(fblk), np.int64)
    flat[(offsets[:-1] + offsets[1:] - 1)[fblk] - np.arange(len(fblk))] = leaf_first
    counts = ucount[codes[cpos]]
    funcs, frames, fmap = frame_tables(ft)
    return build_from_sorted_paths(funcs, frames, fmap[flat] if len(flat) else flat, lengths, counts, meta=meta)


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

register_reader("raw", read_raw, sniff, (".raw", ".stacks"))
