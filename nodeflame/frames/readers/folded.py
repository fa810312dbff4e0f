"""Brendan Gregg's folded stacks: ``root;frame;...;leaf count`` per line.

Accepts CRLF line ends, UTF-16 with a BOM, comment lines (``#``, ``//``) and
blank lines.  FlameGraph's ``_[j]``/``_[k]``/``_[i]``/``_[w]`` annotations are
set aside and become the frame's kind hint.  Lines that do not parse are
reported with their numbers: a file with some bad lines loads with a
FormatWarning listing them; a file with none valid is a FormatError.  A line
with two counts (difffolded.pl output) is read with its second ("after")
count as the weight.

Names are escaped reversibly where the format cannot hold them (nodeflame's
folded writer does it, this reader undoes it in every frame and thread name):
a character becomes ``%{HEX}``, its code point in upper-case hexadecimal
(``%{3B}`` is ``;``).  Only what would break the line is escaped, so ordinary
names are written as they are and FlameGraph, inferno and speedscope read the
output as before:

- anywhere in a name: ``;`` (``%{3B}``), line feed (``%{0A}``), carriage
  return (``%{0D}``), a lone surrogate (``%{D800}``: not UTF-8), and a ``%``
  followed by ``{`` (``%{25}``, so no name is read as an escape);
- at a name's end: the white-space character of a trailing white space, or of a
  white space followed by digits (``foo 12`` is written ``foo%{20}12``: else
  ``foo 12 5`` reads as a difffolded line with counts 12 and 5), and the
  ``_`` of a trailing FlameGraph annotation (``f_[j]`` is written
  ``f%{5F}[j]``: else it reads as ``f`` with a JIT mark);
- at the start of a line (the root frame, or the thread with ``thread_root``):
  a ``#`` (``%{23}``) or the first ``/`` of ``//`` (``%{2F}/``), which would make
  the line a comment, and a byte-order mark (``%{FEFF}``).

An empty name is written ``%{}``.  The reader decodes ``%{H}`` to
``%{HHHHHH}`` (1 to 6 hex digits, either case, at most U+10FFFF) and ``%{}``
everywhere; nothing else.  Percent-escapes of URLs
(``%20``) are never decoded: they are common in the file URLs of ES modules,
and decoding them would change names read from other tools' files.  The writer
writes frame labels, and the label of a function with an empty name is
``(anonymous)``, as every writer shows it.
"""
from __future__ import annotations

import io
import itertools
import os
import re
import warnings

import numpy as np

from ..build import FrameTable, build_from_sorted_paths, build_profile, frame_tables
from ..errors import FormatError, FormatWarning
from ..formats import decode_text, register_reader
from ..stacktable import unique_sorted

# a second count makes a difffolded.pl line, as flamegraph.pl decides it too
_LINE = re.compile(r"^(.*?\S)\s+(\d+)(?:\s+(\d+))?\s*$")
_ANNOT = {"_[j]": "js", "_[k]": "kernel", "_[i]": None, "_[w]": None}
_SNIFF = re.compile(r"^[^\n]*;[^\n]*\s\d+\s*$|^[^\s;][^\n]*\s\d+\s*$", re.M)


def sniff(head: bytes, text: str | None) -> bool:
    if text is None:
        return False
    lines = [ln for ln in text.replace("\r", "").split("\n")[:50]
             if ln.strip() and not ln.startswith(("#", "//"))]
    if not lines:
        return False
    good = sum(1 for ln in lines if _LINE.match(ln))
    return good >= max(1, len(lines) // 2)


_ESC = re.compile(r"%\{([0-9A-Fa-f]{0,6})\}")
_ANY = re.compile("[;\n\r\ud800-\udfff]|%(?=\\{)")  # escaped wherever they are in a name
_END = re.compile(r"\s\d*\Z|_\[[jkiw]\]\Z")  # at a name's end: white space [digits], an annotation
_HEAD = re.compile("#|//|\ufeff")  # at the start of a line


def _hex(ch: str) -> str:
    return "%{" + format(ord(ch), "02X") + "}"


def escape_name(name: str, *, head: bool = False) -> str:
    """``name`` as it is written in a folded line (see the module docstring); ``head``: the first
    name of the line.  Ordinary names come back unchanged (the same object)."""
    if not name:
        return "%{}"  # an empty line would not be a stack
    if _ANY.search(name):
        name = _ANY.sub(lambda m: _hex(m.group()), name)
    m = _END.search(name)
    if m is not None and (m.group()[0] != "_" or len(name) > 4):
        i = m.start()
        name = name[:i] + _hex(name[i]) + name[i + 1:]
    return escape_head(name) if head else name


def escape_head(text: str) -> str:
    """An escaped name (``escape_name``) as the first name of a line."""
    return _hex(text[0]) + text[1:] if _HEAD.match(text) else text


def _chr(m) -> str:
    if not m.group(1):
        return ""
    v = int(m.group(1), 16)
    return chr(v) if v <= 0x10FFFF else m.group()


def unescape_name(text: str) -> str:
    """The name a folded frame or thread text stands for: ``%{HEX}`` escapes decoded."""
    return _ESC.sub(_chr, text) if "%{" in text else text


def split_annotation(frame: str):
    """'foo_[j]' -> ('foo', 'js'); kinds only for annotations FlameGraph defines."""
    if len(frame) > 4 and frame[-4:] in _ANNOT and frame[-4] == "_":
        return frame[:-4], _ANNOT[frame[-4:]]
    return frame, None


def read_folded(data: bytes, source: str = "<folded>", *, thread_root: bool = False) -> "Profile":
    """Read folded stacks.  ``thread_root=True`` takes each line's first frame as
    the thread/process name (what stackcollapse-perf.pl puts there)."""
    if not thread_root:
        fast = _read_fast(data)
        if fast is not None:
            return fast
    return _read_lines(data, source, thread_root)


def _read_lines(data: bytes, source: str, thread_root: bool) -> "Profile":
    """The line-by-line reader: every line judged by the regular expression, bad lines reported."""
    text = decode_text(data, source)
    raw_lines = text.split("\n")
    stack_texts: list[str] = []
    counts: list[int] = []
    bad: list[int] = []
    first_bad = None
    for i, ln in enumerate(raw_lines, 1):
        if ln.endswith("\r"):
            ln = ln[:-1]
        if not ln.strip() or ln.startswith("#") or ln.startswith("//"):
            continue
        m = _LINE.match(ln)
        if m is None:
            bad.append(i)
            if first_bad is None:
                first_bad = (i, ln)
            continue
        stack_texts.append(m.group(1))
        counts.append(int(m.group(3) if m.group(3) is not None else m.group(2)))
    if not stack_texts:
        if first_bad:
            raise FormatError(f"no valid line; first bad line is {first_bad[1][:80]!r}", source=source,
                              line=first_bad[0], expected="'frame;frame;... count'")
        raise FormatError("no stacks", source=source, expected="lines of 'frame;frame;... count'")
    meta = {"source_format": "folded", "unit": "samples"}
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        msg = f"{source}: {len(bad)} line(s) not in 'frames count' form were skipped: line {shown}"
        warnings.warn(msg, FormatWarning, stacklevel=4)
        meta["warnings"] = [msg]
    return from_stack_strings(stack_texts, counts, meta=meta, thread_root=thread_root)


def from_stack_strings(stack_texts, counts, *, meta=None, thread_root=False, sep=";"):
    """Build a Profile from 'a;b;c' strings and counts, vectorised over frames."""
    parts = [s.split(sep) for s in stack_texts]
    threads = None
    if thread_root:
        threads = [unescape_name(p[0]) for p in parts]
        parts = [p[1:] for p in parts]
    lengths = np.fromiter((len(p) for p in parts), np.int64, len(parts))
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index: dict = {}  # distinct frame texts in order of first appearance (pd.factorize's order)
    setdefault = index.setdefault
    codes = np.fromiter((setdefault(f, len(index)) for p in parts for f in p), np.int64, int(lengths.sum()))
    ft, ids = _frame_table(list(index))
    return build_profile(ft, offsets, ids[codes] if len(codes) else codes, weights=np.asarray(counts, np.int64),
                         threads=threads, meta=meta)


def _frame_table(texts):
    """FrameTable of distinct frame texts and the frame id of each text.

    Texts differing only by an annotation FlameGraph gives no kind (``_[i]``,
    ``_[w]``) are the same frame, so ids can repeat (so are texts that differ only
    by escapes).  Annotations are set aside before the escapes are decoded."""
    ft = FrameTable()
    ids = np.empty(len(texts), np.int64)
    for i, name in enumerate(texts):  # one per distinct frame text, not per sample
        base, hint = split_annotation(name)
        base = unescape_name(base)
        ids[i] = ft.add(base, hint=hint, label=base)
    return ft, ids


# ---------------------------------------------------------------- fast path
# Whole-file parsing on bytes with numpy, for the common case: UTF-8 (or
# ASCII) text whose every line is a stack, a comment or blank.  Anything else
# (UTF-16, invalid UTF-8, a line that does not parse, non-ASCII characters next
# to the counts, counts beyond 18 digits) returns None and the line-by-line
# reader above decides, with its warnings and errors.  Both give the same
# Profile.
#
# Lines and ';' separators are found with numpy; the counts are read from the
# end of each line.  The frame texts are then interned by C-level
# ``bytes.split`` over blocks of lines in which every line end and the blank
# before each count became a ';' (so each stack line gives its frames and one
# count token, every other line one token, all set aside).  With each line's
# frame ids known, the number of leading frames it shares with the previous
# line is found one depth level at a time; the frames after that become a chain
# of new nodes hung under the previous line's node at that depth, and
# build_from_sorted_paths merges any equal paths left (unsorted files only make more of
# them).

_WS = np.zeros(256, bool)
_WS[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # ASCII characters str.isspace() accepts
_DIGIT = np.zeros(256, bool)
_DIGIT[48:58] = True
_CHUNK = 1 << 20
_BLOCK = 1 << 21  # bytes of text split per bytes.split call (its copy, bytes and token objects live at once:
#                   a 40 MB file's parse peaked at 37 MB of them with 8 MB, 16 MB with 2 MB, as fast)
_ARROW_BLOCK = 1 << 25  # bytes of text per dictionary_encode call
# a whole input below this is interned by bytes.split (the same ids), without pyarrow: importing it (0.08 s CPU,
# 55 MB) costs more than Arrow's hashing saves on small texts.  On 40 MB Arrow wins: the read 0.10 against
# 0.26 s (idle, in-process), though without pyarrow 40 MB -> SVG peaks at 92 MB instead of 156 (bench/README).
# A file is read in blocks (read_folded_file): of 8 MB up to 64 MB, else of 32 MB.
_ARROW_MIN = 1 << 22


def _positions(arr: np.ndarray, byte: int) -> np.ndarray:
    """Sorted positions of ``byte`` in ``arr``, scanned in chunks to bound temporaries."""
    out = []
    eq = np.empty(min(len(arr), _CHUNK), bool)  # one buffer, reused: no page faults per chunk
    for o in range(0, len(arr), _CHUNK):
        part = arr[o:o + _CHUNK]
        m = eq[:len(part)]
        np.equal(part, byte, out=m)
        idx = np.flatnonzero(m)
        out.append(idx + o if o else idx)
    return np.concatenate(out).astype(np.int64) if out else np.empty(0, np.int64)


def _skip_back(arr, p, lo, table):
    """Move each position in ``p`` left while it is >= ``lo`` and its byte is in ``table``."""
    p = p.copy()
    act = np.flatnonzero(p >= lo)
    while len(act):
        act = act[table[arr[p[act]]]]
        p[act] -= 1
        act = act[p[act] >= lo[act]]
    return p


def _digits_value(arr, first, n):
    """Integer value of the ASCII digit runs ``arr[first:first+n]`` (n <= 18)."""
    val = np.zeros(len(first), np.int64)
    for k in range(int(n.max()) if len(n) else 0):
        act = n > k
        val[act] = val[act] * 10 + (arr[first[act] + k].astype(np.int64) - 48)
    return val


def _intern_tokens(data: bytes, nl: np.ndarray, blank_at: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                   mark_at: np.ndarray | None = None):
    """Split ``data`` into tokens at ';', at line ends and at the positions ``blank_at``
    (one per line, -1 for none), with a line feed written at ``mark_at`` (one per line).

    Returns (first_pos, index): per token the global token number of the first
    token with the same bytes, and the dict of distinct token bytes (in order
    of first appearance) to that number."""
    index: dict = {}
    pos = itertools.count()
    setdefault = index.setdefault
    out = []
    n = len(starts)
    if n == 0:
        return np.empty(0, np.int64), index
    it = np.int32 if len(data) < 2**31 else np.int64  # token numbers: a token and its separator are 2 bytes or more
    for a, b in _block_cuts(starts, ends):  # blocks of whole lines of about _BLOCK bytes
        lo, hi = int(starts[a]), int(ends[b - 1])
        v = np.frombuffer(data, np.uint8, hi - lo, lo).copy()
        v[nl[np.searchsorted(nl, lo):np.searchsorted(nl, hi)] - lo] = 59
        ba = blank_at[a:b]
        v[ba[ba >= 0] - lo] = 59
        if mark_at is not None:
            v[mark_at[a:b] - lo] = 10
        toks = v.tobytes().split(b";")
        del v
        out.append(np.fromiter(map(setdefault, toks, pos), it, len(toks)))
        del toks
    return np.concatenate(out) if len(out) > 1 else out[0], index


def _block_cuts(starts: np.ndarray, ends: np.ndarray, block: int = _BLOCK):
    """(first line, end line) of blocks of whole lines of about ``block`` bytes."""
    n = len(starts)
    cuts = unique_sorted(np.searchsorted(starts, np.arange(0, int(ends[-1]) + 1, block), side="left"))
    cuts = unique_sorted(np.concatenate((cuts[(cuts > 0) & (cuts < n)], [0, n])))
    return zip(cuts[:-1].tolist(), cuts[1:].tolist())


def _tokens_dense(data: bytes, nl: np.ndarray, blank_at: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  mark_at: np.ndarray | None = None):
    """``(_dense(*_intern_tokens(...)), list(index))``: every token's dense id (in order of
    first appearance) and the distinct token bytes.  With pyarrow the tokens of each block
    are found by numpy and interned by Arrow's dictionary_encode (C++ hashing, no Python
    object per token); only each block's distinct tokens meet a Python dict.  A text of less than
    _ARROW_MIN bytes is split by bytes.split without loading pyarrow.

    Where every line is a stack ending with a line feed (``mark_at`` given, the text ends with one),
    Arrow reads the tokens where they are in ``data``, each with the byte after it (a ';', the blank
    before the count, or the line feed after the count): the tokens ending with a line feed are the
    counts, all given the one key ``b"\n"``, the others' keys are their bytes less the last one, so
    the frames' keys and their order are those of the copy with the separators rewritten, which
    the other texts are interned from."""
    try:
        if len(starts) and int(ends[-1]) - int(starts[0]) < _ARROW_MIN:
            raise ImportError("small: not worth importing pyarrow")
        pa, call_function = _arrow()
    except ImportError:
        first_pos, index = _intern_tokens(data, nl, blank_at, starts, ends, mark_at)
        return _dense(first_pos, index), list(index)
    from .lines import arrow_ints  # (with Arrow only: sniffing a folded file imports no other module)
    n = len(starts)
    if n == 0:
        return np.empty(0, np.int32), []
    index: dict = {}
    setdefault = index.setdefault
    out = []
    in_place = mark_at is not None and data[-1:] == b"\n"
    arr = np.frombuffer(data, np.uint8) if in_place else None
    for a, b in _block_cuts(starts, ends, _ARROW_BLOCK):  # larger: fewer distinct tokens met again per block
        lo, hi = int(starts[a]), int(ends[b - 1])
        if in_place:
            # the token ends: every ';', each line's blank before its count and its line feed
            semi = _delimiters(arr, lo, hi + 1, np.column_stack((blank_at[a:b], ends[a:b])).ravel())
            off = np.empty(len(semi) + 1, np.int64)
            off[0] = lo
            np.add(semi, 1, out=off[1:])
            del semi
            enc = call_function("dictionary_encode", [pa.LargeBinaryArray.from_buffers(
                pa.large_binary(), len(off) - 1, [None, pa.py_buffer(off), pa.py_buffer(data)])])
            del off
            lut = np.fromiter((setdefault(b"\n" if k[-1:] == b"\n" else k[:-1], len(index))
                               for k in enc.dictionary.to_pylist()), np.int32)
            out.append(lut[arrow_ints(enc.indices)])
            del enc
            continue
        v = np.empty(hi - lo + 1, np.uint8)
        v[:-1] = np.frombuffer(data, np.uint8, hi - lo, lo)
        v[-1] = 59  # every token ends with its ';', the last one too
        v[nl[np.searchsorted(nl, lo):np.searchsorted(nl, hi)] - lo] = 59
        ba = blank_at[a:b]
        v[ba[ba >= 0] - lo] = 59
        if mark_at is not None:
            v[mark_at[a:b] - lo] = 10
        semi = _positions(v, 59)
        off = np.empty(len(semi) + 1, np.int64)
        off[0] = 0
        off[1:] = semi + 1
        del semi
        enc = call_function("dictionary_encode", [pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(off) - 1, [None, pa.py_buffer(off), pa.py_buffer(v)])])
        del off
        lut = np.fromiter((setdefault(k[:-1], len(index)) for k in enc.dictionary.to_pylist()), np.int32)
        out.append(lut[arrow_ints(enc.indices)])
        del enc, v
    return np.concatenate(out), list(index)


def _arrow():
    """pyarrow and ``pyarrow.compute.call_function``, taken from the compiled module that defines it:
    importing ``pyarrow.compute`` wraps every kernel in a Python function with a docstring (about
    70 ms of a short conversion's CPU), and the readers call one kernel by name."""
    import pyarrow as pa
    try:
        from pyarrow._compute import call_function
    except ImportError:  # another layout of pyarrow: the public module
        from pyarrow.compute import call_function
    return pa, call_function


def _delimiters(arr: np.ndarray, lo: int, hi: int, extra: np.ndarray) -> np.ndarray:
    """Sorted positions in ``arr[lo:hi]`` of the ';' bytes and of the sorted positions ``extra``,
    scanned in chunks (one reused buffer) as :func:`_positions` does."""
    out = []
    eq = np.empty(min(hi - lo, _CHUNK), bool)
    bounds = np.searchsorted(extra, np.arange(lo, hi + _CHUNK, _CHUNK)).tolist()
    for k, o in enumerate(range(lo, hi, _CHUNK)):
        part = arr[o:min(o + _CHUNK, hi)]
        m = eq[:len(part)]
        np.equal(part, 59, out=m)
        m[extra[bounds[k]:bounds[k + 1]] - o] = True
        idx = np.flatnonzero(m)
        idx += o
        out.append(idx)
    return np.concatenate(out) if out else np.empty(0, np.int64)


def _dense(first_pos: np.ndarray, index: dict) -> np.ndarray:
    """Token numbers ``first_pos`` (from _intern_tokens) as dense ids 0..len(index)-1,
    in the order of ``index``."""
    uniq_pos = np.fromiter(index.values(), np.int64, len(index))
    lut = np.zeros(int(uniq_pos[-1]) + 1 if len(uniq_pos) else 0, np.int32)
    lut[uniq_pos] = np.arange(len(uniq_pos), dtype=np.int32)
    return lut[first_pos]


_EMPTY = (np.empty(0, np.int32), [], np.empty(0, np.int64), np.empty(0, np.int64))


def _read_fast(data) -> "Profile | None":
    m = _merge_fast(data)
    return m.profile() if m is not None else None


def _merge_fast(data) -> "_Merge | None":
    """The parsed ``data`` (bytes, or a memoryview of bytes; to build with ``profile()``), or None when
    the line-by-line reader must read it."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or bytes(data[:2]) in (b"\xff\xfe", b"\xfe\xff"):
        return None
    if bytes(data[:3]) == b"\xef\xbb\xbf":
        data = memoryview(data)[3:] if isinstance(data, memoryview) else data[3:]
    m = _Merge()
    if not m.add(_parse_block(data if isinstance(data, memoryview) else bytes(data))):
        return None
    return m


def read_folded_file(fh, source: str = "<folded>", *, thread_root: bool = False) -> "Profile":
    """read_folded of the binary file ``fh`` (from where it stands), taken in blocks of whole lines: the
    whole text is never in memory at once, and only one block's buffer is (re-used from block to block).
    A file of up to two large blocks is read in small ones: 40 MB folded (1 M samples / 20 k stacks)
    peaked at 116 MB read whole (the text beside the parse) and at 84 MB in 8 MB blocks, in the same
    CPU time; a large file keeps large blocks, in which fewer distinct frames are met again (10 M
    samples / 200 k stacks: 1.1-1.2 s CPU in 32 MB blocks, 1.5-2.2 s in 8 MB ones).  Anything the fast
    path leaves to the line-by-line reader (UTF-16, bad lines, ``thread_root``) reads it whole, from where
    it stood; so does a file that cannot go back there (a pipe).  ``nodeflame.read`` hands only regular
    files to this reader."""
    try:
        pos = fh.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):  # a pipe: nothing to go back to
        return read_folded(fh.read(), source, thread_root=thread_root)
    if not thread_root:
        try:
            size = os.fstat(fh.fileno()).st_size - pos
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            size = -1
        m = _merge_blocks(fh, _SMALL_FILE_BLOCK if 0 <= size <= 2 * _FILE_BLOCK else _FILE_BLOCK)
        if m is not None and not m.empty():
            return m.profile()
        fh.seek(pos)
    return read_folded(fh.read(), source, thread_root=thread_root)


def _merge_blocks(fh, block: int) -> "_Merge | None":
    """The fast path's parse of the rest of ``fh``, read into one buffer of ``block`` bytes (and what is
    left of a line cut at its end) block after block; None when a block's text (UTF-16, a bad line)
    needs the line-by-line reader."""
    head = fh.read(3)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    m = _Merge()
    rest = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    buf = bytearray(block)
    while True:
        # the line cut at the end of the last block, then the file read into place after it (the same
        # buffer each time: a new one per block was 8 MB more heap per block, as the freed ones did not
        # fit what came next)
        if 2 * len(rest) > len(buf):  # a line longer than half a block: room for as much after it
            buf = bytearray(2 * len(rest))
        buf[:len(rest)] = rest
        with memoryview(buf) as mv, mv[len(rest):] as tail:
            n = fh.readinto(tail)
        end = len(rest) + n
        if not n:
            if end and not m.add(_parse_block(bytes(buf[:end]))):
                return None
            return m
        cut = buf.rfind(b"\n", 0, end) + 1
        if cut == 0:  # no line end yet: read on
            rest = bytes(buf[:end])
            continue
        rest = bytes(buf[cut:end])
        with memoryview(buf) as mv, mv[:cut] as lines:
            ok = m.add(_parse_block(lines))
        if not ok:
            return None


_FILE_BLOCK = 1 << 25  # bytes per block of read_folded_file (a file of more than two)
_SMALL_FILE_BLOCK = 1 << 23  # bytes per block of a file of up to two large blocks


class _Merge:
    """The blocks' frame tokens numbered over the whole file in order of first appearance (as one
    block of all of it would number them), their lines' frame counts and sample counts."""

    def __init__(self):
        self.index: dict = {}
        self.dense, self.nframes, self.counts = [], [], []

    def add(self, part) -> bool:
        if part is None:
            return False
        dense, keys, nframes, counts = part
        if len(dense):
            used = np.flatnonzero(np.bincount(dense, minlength=len(keys)))
            lut = np.full(len(keys), -1, np.int32)
            setdefault, index = self.index.setdefault, self.index
            lut[used] = np.fromiter((setdefault(keys[k], len(index)) for k in used.tolist()), np.int32, len(used))
            self.dense.append(lut[dense])
        self.nframes.append(nframes)
        self.counts.append(counts)
        return True

    def empty(self) -> bool:
        """No stack line was added (then profile() is None)."""
        return not any(len(c) for c in self.counts)

    def profile(self) -> "Profile | None":
        counts = np.concatenate(self.counts) if self.counts else np.empty(0, np.int64)
        if len(counts) == 0:
            return None
        dense = np.concatenate(self.dense) if len(self.dense) != 1 else self.dense[0]
        self.dense = None
        texts = [k.decode("utf-8") for k in self.index]  # one per distinct frame text
        self.index = None
        ft, ids = _frame_table(texts)
        funcs, frames, fmap = frame_tables(ft)
        flat = fmap[ids][dense]  # frame id of every frame of every stack line, root first
        del dense
        return build_from_sorted_paths(funcs, frames, flat, np.concatenate(self.nframes), counts,
                                       meta={"source_format": "folded", "unit": "samples"})


def _parse_block(data: bytes):
    """(frame token ids, distinct tokens, frames per stack line, count per stack line) of the whole
    lines ``data`` (bytes or a memoryview of them), UTF-8 without a BOM; None when a line needs the
    line-by-line reader."""
    arr = np.frombuffer(data, np.uint8)
    if not (data.isascii() if isinstance(data, (bytes, bytearray)) else int(arr.max(initial=0)) < 0x80):
        try:
            str(data, "utf-8")
        except UnicodeDecodeError:
            return None
    size = len(arr)
    if size == 0:
        return _EMPTY
    nl = _positions(arr, 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [size]))
    if starts[-1] == size:  # text ends with a newline
        starts, ends = starts[:-1], ends[:-1]
    # the counts, read from the end of each line: [ws] digits ws+ [digits ws+] stack
    last = _skip_back(arr, ends - 1, starts, _WS)
    d2 = _skip_back(arr, last, starts, _DIGIT)
    w2 = _skip_back(arr, d2, starts, _WS)
    d1 = _skip_back(arr, w2, starts, _DIGIT)
    w1 = _skip_back(arr, d1, starts, _WS)
    safe = lambda p: arr[np.maximum(p, 0)]  # noqa: E731
    one = (last > d2) & (d2 > w2) & (w2 >= starts)
    two = one & (w2 > d1) & (d1 > w1) & (w1 >= starts)
    stack_last = np.where(two, w1, w2)  # index of the stack text's last byte
    ok = one & (safe(stack_last) < 0x80)
    first = arr[starts]
    comment = (first == 35) | ((first == 47) & (arr[np.minimum(starts + 1, size - 1)] == 47) & (starts + 1 < ends))
    keep = ok & ~comment
    if not keep.all():
        skip = comment | (last < starts)  # comments and blank lines
        if (~ok & ~skip).any():
            return None  # a bad line, or a character next to the counts only str methods can judge
        if not keep.any():
            return _EMPTY
    ndig = (last - d2)[keep]
    if ndig.max() > 18:
        return None
    counts = _digits_value(arr, d2[keep] + 1, ndig)
    if keep.all():
        # every line is a stack: its count token is marked by a line feed put on its
        # first byte (no frame holds one), so no pass over the ';'s is needed
        dense, keys = _tokens_dense(data, nl, stack_last + 1, starts, ends, mark_at=stack_last + 2)
        count_key = np.fromiter((k[:1] == b"\n" for k in keys), bool, len(keys))
        is_count = count_key[dense]
        cpos = np.flatnonzero(is_count)
        if len(cpos) != len(starts):
            return None  # cannot happen; be safe rather than wrong
        nframes_all = np.diff(cpos, prepend=-1) - 1
        dense = dense[~is_count]
        del is_count, cpos
    else:
        # frames: the ';' separators of each stack text (of every line, for the token count)
        sep = _positions(arr, 59)
        t = np.where(keep, stack_last + 1, ends)
        nsep = np.searchsorted(sep, t) - np.searchsorted(sep, starts)
        nframes_all = np.where(keep, nsep + 1, 0)
        # tokens per line: a stack line's frames and its count; another line's ';'-pieces and its end
        ntok = np.where(keep, nsep + 2, np.searchsorted(sep, ends) - np.searchsorted(sep, starts) + 1)
        dense, keys = _tokens_dense(data, nl, np.where(keep, stack_last + 1, -1), starts, ends)
        if len(dense) != int(ntok.sum()):
            return None  # cannot happen; be safe rather than wrong
        del sep
        tok0 = np.cumsum(ntok) - ntok
        # which tokens are frames: the first nframes of each kept line
        is_frame = np.zeros(len(dense) + 1, np.int8)
        kl = np.flatnonzero(keep)
        np.add.at(is_frame, tok0[kl], 1)
        np.add.at(is_frame, tok0[kl] + nframes_all[kl], -1)
        is_frame = np.cumsum(is_frame[:-1]).astype(bool)
        dense = dense[is_frame]
        del is_frame
    return dense, keys, nframes_all[keep], counts


register_reader("folded", read_folded, sniff, (".folded", ".collapsed", ".txt"), read_file=read_folded_file)
