"""Brendan Gregg's folded stacks: ``root;frame;...;leaf count`` per line.

Accepts CRLF line ends, UTF-16 with a BOM, comment lines (``#``, ``//``) and
blank lines.  FlameGraph's ``_[j]``/``_[k]``/``_[i]``/``_[w]`` annotations are
set aside and become the frame's kind hint.  Lines that do not parse are
reported with their numbers: a file with some bad lines loads with a
FormatWarning listing them; a file with none valid is a FormatError.  A line
with two counts (difffolded.pl output) is read with its second ("after")
count as the weight.
"""
from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pandas as pd

from ..build import FrameTable, build_from_tree, build_profile
from ..errors import FormatError, FormatWarning
from ..formats import decode_text, register_reader

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
        warnings.warn(msg, FormatWarning, stacklevel=3)
        meta["warnings"] = [msg]
    return from_stack_strings(stack_texts, counts, meta=meta, thread_root=thread_root)


def from_stack_strings(stack_texts, counts, *, meta=None, thread_root=False, sep=";"):
    """Build a Profile from 'a;b;c' strings and counts, vectorised over frames."""
    parts = [s.split(sep) for s in stack_texts]
    threads = None
    if thread_root:
        threads = [p[0] for p in parts]
        parts = [p[1:] for p in parts]
    lengths = np.fromiter((len(p) for p in parts), np.int64, len(parts))
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = [f for p in parts for f in p]
    codes, uniq = pd.factorize(pd.Series(flat, dtype=object), sort=False)
    ft, ids = _frame_table(uniq)
    return build_profile(ft, offsets, ids[codes] if len(codes) else codes, weights=np.asarray(counts, np.int64),
                         threads=threads, meta=meta)


def _frame_table(texts):
    """FrameTable of distinct frame texts and the frame id of each text.

    Texts differing only by an annotation FlameGraph gives no kind (``_[i]``,
    ``_[w]``) are the same frame, so ids can repeat."""
    ft = FrameTable()
    ids = np.empty(len(texts), np.int64)
    for i, name in enumerate(texts):  # one per distinct frame text, not per sample
        base, hint = split_annotation(name)
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
# Consecutive lines of folded files share long prefixes (stackcollapse*.pl
# sorts its output), so each line's bytes are compared with the previous
# line's, 8 at a time, and only the frames after the common prefix are split
# and interned: the line's new frames become a chain of nodes hung under the
# previous line's node at that depth, and build_from_tree merges equal paths
# (so unsorted files give the same result, only more slowly).

_WS = np.zeros(256, bool)
_WS[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True  # ASCII characters str.isspace() accepts
_DIGIT = np.zeros(256, bool)
_DIGIT[48:58] = True
_CHUNK = 1 << 24


def _positions(arr: np.ndarray, byte: int) -> np.ndarray:
    """Sorted positions of ``byte`` in ``arr``, scanned in chunks to bound temporaries."""
    out = []
    for o in range(0, len(arr), _CHUNK):
        idx = np.flatnonzero(arr[o:o + _CHUNK] == byte)
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


def _common_prefix(data: bytes, arr, s, ln):
    """Length of the common prefix of stack text i and stack text i-1 (0 for the first)."""
    n = len(s)
    out = np.zeros(n, np.int64)
    if n < 2:
        return out
    a, b = s[1:], s[:-1]
    lim = np.minimum(ln[1:], ln[:-1])
    k = np.zeros(n - 1, np.int64)
    if len(data) >= 8:
        words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
        act = np.flatnonzero(lim >= 8)
        while len(act):
            ka = k[act]
            act = act[words[a[act] + ka] == words[b[act] + ka]]
            k[act] += 8
            act = act[k[act] + 8 <= lim[act]]
    act = np.flatnonzero(k < lim)
    while len(act):
        ka = k[act]
        act = act[arr[a[act] + ka] == arr[b[act] + ka]]
        k[act] += 1
        act = act[k[act] < lim[act]]
    out[1:] = k
    return out


def _read_fast(data) -> "Profile | None":
    if not isinstance(data, (bytes, bytearray)) or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    data = bytes(data)
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    arr = np.frombuffer(data, np.uint8)
    size = len(arr)
    if size == 0:
        return None
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
    if not ok.all() or comment.any():
        skip = comment | (last < starts)  # comments and blank lines
        if (~ok & ~skip).any():
            return None  # a bad line, or a character next to the counts only str methods can judge
        keep = ok & ~skip
        if not keep.any():
            return None
        starts, stack_last, last, d2, two = starts[keep], stack_last[keep], last[keep], d2[keep], two[keep]
    ndig = last - d2
    if ndig.max() > 18:
        return None
    counts = _digits_value(arr, d2 + 1, ndig)
    s = starts
    t = stack_last + 1
    ln = t - s
    n_lines = len(s)
    # frames: the ';' separators of each stack text
    sep = _positions(arr, 59)
    sep_lo = np.searchsorted(sep, s)
    nframes = np.searchsorted(sep, t) - sep_lo + 1
    lcp = _common_prefix(data, arr, s, ln)
    shared = np.searchsorted(sep, s + lcp) - sep_lo
    if n_lines > 1:
        # the frame ending exactly at the common prefix is shared when it ends there in both lines
        prev_ln = np.concatenate(([0], ln[:-1]))
        prev_s = np.concatenate(([0], s[:-1]))
        at = np.minimum(lcp, ln - 1)
        ends_here = (lcp == ln) | (arr[s + at] == 59)
        prev_ends = (lcp == prev_ln) | (arr[np.minimum(prev_s + lcp, size - 1)] == 59)
        bonus = ends_here & prev_ends & (np.arange(n_lines) > 0)
        shared = shared + bonus
    shared[0] = 0
    ntail = nframes - shared
    sep_x = np.append(sep, size)  # a sentinel: identical lines index one past their last ';'
    tail_start = np.where(shared > 0, sep_x[np.minimum(sep_lo + shared - 1, len(sep))] + 1, s)
    # intern the new frames' texts, in order of first appearance
    index: dict = {}
    pos = itertools.count()
    setdefault = index.setdefault
    has = np.flatnonzero(ntail > 0)
    ts, te = tail_start[has].tolist(), t[has].tolist()
    first_pos = []
    step = 4096
    for c in range(0, len(ts), step):
        toks = b";".join([data[x:y] for x, y in zip(ts[c:c + step], te[c:c + step])]).split(b";")
        first_pos.append(np.fromiter(map(setdefault, toks, pos), np.int64, len(toks)))
    first_pos = np.concatenate(first_pos) if first_pos else np.empty(0, np.int64)
    uniq_pos = np.fromiter(index.values(), np.int64, len(index))
    dense = np.searchsorted(uniq_pos, first_pos)
    texts = [b.decode("utf-8") for b in index]
    del index
    ft, ids = _frame_table(texts)
    node_frame = ids[dense]
    # nodes: each line's new frames, chained; the first hangs under the previous
    # line's node at depth shared-1, found as the newest line j with shared[j] <= depth
    total_nodes = int(ntail.sum())
    if len(node_frame) != total_nodes:
        return None  # cannot happen; be safe rather than wrong
    base = np.cumsum(ntail) - ntail
    anchor = np.full(n_lines, -1, np.int64)
    want = shared - 1
    idx = np.arange(n_lines)
    for d in np.unique(want[want >= 0]):
        owner = np.maximum.accumulate(np.where(shared <= d, idx, -1))
        lines_d = np.flatnonzero(want == d)
        j = owner[lines_d - 1]
        anchor[lines_d] = base[j] + (d - shared[j])
    parent = np.arange(total_nodes, dtype=np.int64) - 1
    parent[base[has]] = anchor[has]
    sample_node = np.where(ntail > 0, base + ntail - 1, anchor)
    meta = {"source_format": "folded", "unit": "samples"}
    return build_from_tree(ft, parent, node_frame, sample_node, weights=counts, meta=meta)


register_reader("folded", read_folded, sniff, (".folded", ".collapsed", ".txt"))
