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
    big = b"".join(raws)
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
