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
``nodeflame.read`` uses for a plain file), its lines interned by
:mod:`.lines`: the whole file is never in memory and no Python object is made
per line, only per distinct line.
"""
from __future__ import annotations

import re
import warnings

import numpy as np

from ..build import FrameTable, build_from_sorted_paths, frame_tables
from ..errors import FormatError, FormatWarning
from ..formats import decode_text, register_reader
from ..symbols import parse_dtrace
from .lines import factorize, intern_lines

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
    fast = intern_lines(io.BytesIO(data)) if isinstance(data, (bytes, bytearray)) else None
    return _read(fast, data, source, stackcollapse, threads, thread_names)


def read_raw_file(fh, source: str = "<raw>", *, stackcollapse: bool = True, threads: bool = False,
                  thread_names: dict | None = None) -> "Profile":
    """read_raw of the binary file ``fh``, taken in blocks: the whole file is never in memory."""
    fast = intern_lines(fh)
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
        codes, uniq = factorize(lines[h:] if h else lines)
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
    cat_codes, cats = factorize(cats)  # threads given one name are one thread
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
