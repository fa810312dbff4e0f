"""JSON helpers shared by the JSON readers (cpuprofile, chrome-trace, speedscope).

Parsing with positions in errors (``load_json``), type names for messages,
lists of numbers to arrays with the first bad element named by its JSON path
(``int_array``, ``num_array``), a pause of the cyclic GC while millions of
parsed objects are alive (``no_gc``), and the text of a sniffing head that may
be gzip (``head_text``)."""
from __future__ import annotations

import gc
import json
import math
import warnings
import zlib
from itertools import chain

import numpy as np

from ..errors import FormatError

_I64 = np.int64


class no_gc:
    """Pause the cyclic garbage collector (re-entrant; restores the previous state).

    A large profile parses into millions of dicts and lists; while they are
    alive every allocation-triggered collection rescans them, which more than
    doubles the time of parsing and of the per-node passes after it.  Nothing
    built here is cyclic, so reference counting frees it all."""

    def __enter__(self):
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


def load_json(data: bytes, source: str, what: str = "JSON"):
    """Parse JSON bytes; syntax errors become FormatError with line and column."""
    try:
        with no_gc():
            return json.loads(data)
    except json.JSONDecodeError as e:
        # "Unterminated string" means no closing quote before the end of the text
        truncated = e.msg.startswith("Unterminated string") or (
            isinstance(e.doc, str) and e.pos >= len(e.doc.rstrip()))
        msg = e.msg + (" (file truncated?)" if truncated else "")
        raise FormatError(f"invalid JSON: {msg}", source=source, line=e.lineno,
                          position=f"column {e.colno}", expected=what) from None
    except UnicodeDecodeError as e:
        raise FormatError(f"invalid text encoding at byte {e.start}", source=source,
                          expected=f"{what} in UTF-8") from None
    except RecursionError:
        raise FormatError("JSON nested too deeply", source=source, expected=what) from None


def type_name(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def int_array(values, source: str, path: str, what: str = "integers") -> np.ndarray:
    """A JSON list of integers as int64, or FormatError naming the first bad element."""
    if not isinstance(values, list):
        raise FormatError(f"{path} is {type_name(values)}", source=source, position=path,
                          expected=f"a list of {what}")
    if all_ints(values):
        try:
            return np.array(values, dtype=_I64) if values else np.empty(0, _I64)
        except OverflowError:
            pass
    for i, v in enumerate(values):
        if not is_int(v) or not -2**63 <= v < 2**63:
            raise FormatError(f"{path}[{i}] is {type_name(v)} {v!r}"[:200], source=source,
                              position=f"{path}[{i}]", expected="an integer")
    raise AssertionError("unreachable")


def num_array(values, source: str, path: str) -> np.ndarray:
    """A JSON list of numbers as float64, or FormatError naming the first bad element."""
    if not isinstance(values, list):
        raise FormatError(f"{path} is {type_name(values)}", source=source, position=path,
                          expected="a list of numbers")
    if set(map(type, values)) <= {int, float}:
        try:
            arr = np.array(values, dtype=np.float64) if values else np.empty(0, np.float64)
        except OverflowError:  # an integer beyond any float
            arr = None
        if arr is not None and np.isfinite(arr).all():
            return arr
    for i, v in enumerate(values):
        if not is_num(v):
            raise FormatError(f"{path}[{i}] is {type_name(v)} {v!r}"[:200], source=source,
                              position=f"{path}[{i}]", expected="a number")
        if not is_finite(v):
            raise FormatError(f"{path}[{i}] is {str(v)[:40]}", source=source, position=f"{path}[{i}]",
                              expected="a finite number")
    raise AssertionError("unreachable")


def is_finite(v) -> bool:
    """A JSON number that is not NaN or ±Infinity (Python's json accepts those) and fits a float."""
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def all_ints(values) -> bool:
    # type() is exact: bool is a subclass of int and must not pass
    return set(map(type, values)) <= {int}


def head_text(head: bytes, text: str | None) -> str | None:
    """The text of a sniffing head, decompressing a gzip head partially."""
    if text is not None:
        return text
    if head.startswith(b"\x1f\x8b"):
        try:
            raw = zlib.decompressobj(wbits=31).decompress(head, 65536)
        except zlib.error:
            return None
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError as e:
            if e.start >= len(raw) - 4:  # cut in the middle of a character
                return raw[:e.start].decode("utf-8")
            return None
    return None


_INT_CHARS = b"0123456789-, \t\r\n"
_NUM_CHARS = _INT_CHARS + b".eE+"
_I64_EDGES = (np.iinfo(np.int64).max, np.iinfo(np.int64).min)


_PAD = b"\0" * 8  # after joined texts: _digits reads a whole word at the last number
_JOIN_CHUNK = 4096


def join_texts(texts, tail: bytes = b"") -> bytes:
    """``b"".join(texts) + tail``, joined 4096 texts at a time: ``bytes.join`` holds a Py_buffer (80
    bytes) per item that is not bytes (a ``msgspec.Raw``), 24 MB of fresh pages for 300 k of them in
    one call, a few hundred kB reused per chunk here."""
    if not isinstance(texts, list):
        texts = list(texts)
    if len(texts) <= _JOIN_CHUNK:
        return b"".join(chain(texts, (tail,)))
    return b"".join([b"".join(texts[i:i + _JOIN_CHUNK]) for i in range(0, len(texts), _JOIN_CHUNK)] + [tail])


def _compact_int_lists(u: np.ndarray, size: int, count: int):
    """``count`` JSON arrays of integers written one after the other in ``u[:size]`` (the texts of
    syntactically valid JSON values, followed by at least 8 more bytes), in the compact layout
    ``[1,2,3][][4]`` -- no blanks, integers of at most 8 digits -- as (length of each, elements)
    int64, in a few numpy passes.  None for anything else (the caller's general parser decides)."""
    d = np.flatnonzero((u[:size] == 44) | (u[:size] == 91) | (u[:size] == 93))  # , [ ]
    if not len(d) or d[0] != 0 or d[-1] != size - 1:
        return None
    k = u[d]
    a, b, ka, kb = d[:-1], d[1:], k[:-1], k[1:]
    num = (ka != 93) & (kb != 91)                # "[1", ",2", ... up to the next "," or "]"
    empty = (ka == 91) & (kb == 93) & (b == a + 1)
    num &= ~empty
    # between two numbers only "," ; between arrays only "][" ; an empty array is "[]"
    if not ((num | empty | ((ka == 93) & (kb == 91) & (b == a + 1))).all()):
        return None
    opens = k == 91
    if int(opens.sum()) != count:
        return None
    vals = _digits(u, a[num] + 1, b[num])
    if vals is None:
        return None
    owner = np.cumsum(opens)[:-1][num] - 1
    return np.bincount(owner, minlength=count).astype(np.int64), vals


def raw_numbers(raw, integers: bool):
    """A JSON array of numbers, given as the bytes of a syntactically valid JSON value
    (``msgspec.Raw``), parsed in C: int64 when ``integers`` (every element an integer within
    int64), else float64 (finite).  None for anything else -- ``null``, another type, an
    element that is not a number, a value out of range -- so that the caller takes the
    careful path, which says what is wrong.  Integers only and integers within ±2**53 give
    the values ``json.loads`` + ``np.array`` give (floats: both round correctly)."""
    s = bytes(raw).strip()
    if not (s.startswith(b"[") and s.endswith(b"]")):
        return None
    body = s[1:-1]
    if not body.strip():
        return np.empty(0, np.int64 if integers else np.float64)
    all_ints = not body.translate(None, _INT_CHARS)
    if integers and not all_ints or not all_ints and body.translate(None, _NUM_CHARS):
        return None  # strings, null, true, objects, nested arrays; or fractions where integers are wanted
    n = body.count(b",") + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (and stops) where the text does not parse
        try:
            arr = np.fromstring(body, dtype=np.int64 if all_ints else np.float64, sep=",")
        except (ValueError, DeprecationWarning):
            return None
    if len(arr) != n:
        return None
    if all_ints:
        if n and (arr.max() == _I64_EDGES[0] or arr.min() == _I64_EDGES[1]):
            return None  # strtoll saturates: maybe beyond int64 (the careful path decides)
        if not integers:
            if n and (np.abs(arr).max() > 2**53):
                return None  # exact as float only below 2**53 (the careful path rounds the same way)
            arr = arr.astype(np.float64)
    elif not np.isfinite(arr).all():
        return None
    return arr


_LIST_CHARS = _INT_CHARS + b"[]"
_BRACKETS = bytes.maketrans(b"[],", b"   ")


def raw_int_lists(raws):
    """Many JSON arrays of integers (the bytes of syntactically valid JSON values, e.g. one
    ``msgspec.Raw`` per node's ``children``) as (length of each, all their elements as int64),
    parsed in C.  (None, None) when any holds anything else (the caller takes the careful path)."""
    big = join_texts(raws, _PAD)
    got = _compact_int_lists(np.frombuffer(big, np.uint8), len(big) - len(_PAD), len(raws))
    if got is not None:
        return got
    big = big[:-len(_PAD)]
    if big.translate(None, _LIST_CHARS):
        return None, None  # null, fractions, strings, objects
    u = np.frombuffer(big, np.uint8)
    op = np.flatnonzero(u == 91)
    cl = np.flatnonzero(u == 93)
    n = len(raws)
    if len(op) != n or len(cl) != n or n and not ((op < cl).all() and (cl[:-1] < op[1:]).all()):
        return None, None  # a value that is not one flat array
    commas = np.flatnonzero(u == 44)
    if any(c in big for c in (b" ", b"\t", b"\r", b"\n")):  # "[ ]" is empty: look for digits
        digits = np.flatnonzero((u >= 48) & (u <= 57))
        full = np.searchsorted(digits, cl) > np.searchsorted(digits, op)
    else:
        full = (cl - op) > 1
    lens = (np.searchsorted(commas, cl) - np.searchsorted(commas, op)) + full
    if not full.any():
        return lens.astype(np.int64), np.empty(0, np.int64)  # all empty
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            vals = np.fromstring(big.translate(_BRACKETS), dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None, None
    if len(vals) != int(lens.sum()):
        return None, None
    if len(vals) and (vals.max() == _I64_EDGES[0] or vals.min() == _I64_EDGES[1]):
        return None, None
    return lens.astype(np.int64), vals


def _u64_at(u: np.ndarray) -> np.ndarray:
    """The 8 bytes starting at each position of ``u`` as one little-endian uint64 (an unaligned
    view, no copy); defined for the first ``len(u) - 7`` positions."""
    return np.ndarray(shape=(max(len(u) - 7, 0),), dtype="<u8", buffer=u, strides=(1,))


_ZEROS = np.uint64(0x3030303030303030)


def _digits(u: np.ndarray, start: np.ndarray, stop: np.ndarray):
    """The integers written in ``u[start[i]:stop[i]]`` (``-?[0-9]{1,8}``), or None when any span is
    something else.  Eight digits at a time from one unaligned word: padded with '0' in front,
    checked as digits and combined by multiplications (Lemire's SWAR digit parsing)."""
    if not len(start):
        return np.empty(0, np.int64)
    neg = u[start] == 45
    first = start + neg
    size = stop - first
    if size.min() < 1 or size.max() > 8 or first.max() + 8 > len(u):
        return None
    w = _u64_at(u)[first]
    pad = (np.uint64(8) - size.astype(np.uint64)) * np.uint64(8)
    w = (w << pad) | (_ZEROS & ((np.uint64(1) << pad) - np.uint64(1)))  # shifts of 64 do not occur
    if ((w + np.uint64(0x4646464646464646)) | (w - _ZEROS)) .__and__(np.uint64(0x8080808080808080)).any():
        return None  # a byte that is not a digit
    v = w - _ZEROS
    v = ((v * np.uint64(10)) + (v >> np.uint64(8)))
    v = (((v & np.uint64(0x000000FF000000FF)) * np.uint64(100 + (1000000 << 32))
          + (((v >> np.uint64(16)) & np.uint64(0x000000FF000000FF)) * np.uint64(1 + (10000 << 32))))
         >> np.uint64(32))
    v = v.astype(np.int64)
    return np.where(neg, -v, v)


_LINE = int.from_bytes(b'{"line":', "little")
_TICKS = int.from_bytes(b',"ticks"', "little")


def raw_line_ticks(texts):
    """positionTicks arrays (the bytes of syntactically valid JSON values, e.g. one ``msgspec.Raw``
    per node) in V8's compact layout ``[{"line":L,"ticks":T},...]`` as (entries of each array,
    lines, ticks), int64, in a few numpy passes over their joined bytes.  None when any array is in
    another layout (other key order, blanks, more keys, null, ...) or holds a number of more than
    8 digits or not an integer: the caller decodes those another way."""
    count = len(texts)
    big = join_texts(texts, b"\0" * 8)  # 8 NULs after the last number: a word to read there
    u = np.frombuffer(big, np.uint8)
    # '[' only where an array starts: the layout checked below leaves no room for another
    opens = np.flatnonzero(u == 91)
    if not count or len(opens) != count or opens[0] != 0:
        return None
    off = np.append(opens, len(u) - 8)
    colon = np.flatnonzero(u == 58)
    close = np.flatnonzero(u == 125)
    c0, c1 = colon[0::2], colon[1::2]
    if not (len(c0) == len(c1) == len(close) and (u[off[1:] - 1] == 93).all()):
        return None
    if not len(c0):
        return (off[1:] - off[:-1] == 2).all() and (np.zeros(count, np.int64), c0, c0) or None
    if c0[0] < 7 or not ((c1 > c0) & (close > c1)).all():
        return None
    # each entry {"line":L,"ticks":T}: the text before its two colons, the number after each
    w = _u64_at(u)
    if not ((w[c0 - 7] == _LINE).all() and (w[c1 - 8] == _TICKS).all()):
        return None
    line = _digits(u, c0 + 1, c1 - 8)
    ticks = _digits(u, c1 + 1, close) if line is not None else None
    if ticks is None:
        return None
    # the entries fill the arrays: '[' entry (',' entry)* ']' or '[]'.  An entry is an array's
    # first where '[' is before it, its last where ']' is after it, else ',' joins it to the next
    start = c0 - 7
    first = u[start - 1] == 91
    last = u[close + 1] == 93
    full = u[opens + 1] == 123  # '[{' ; else '[]'
    inner = ~last
    if not ((first[1:] == last[:-1]).all() and first[0] and last[-1]
            and (u[close[inner] + 1] == 44).all() and (start[1:][inner[:-1]] == close[inner] + 2).all()
            and int(first.sum()) == int(full.sum()) and (start[first] == opens[full] + 1).all()
            and (close[last] + 2 == off[1:][full]).all() and (off[1:][~full] - opens[~full] == 2).all()):
        return None
    per = np.zeros(count, np.int64)
    firsts = np.flatnonzero(first)
    per[full] = np.diff(firsts, append=len(first))
    return per.astype(np.int64), line, ticks


_NUM_BYTES = b"0123456789-"
_IS_NUM = np.zeros(256, bool)
_IS_NUM[np.frombuffer(_NUM_BYTES, np.uint8)] = True
