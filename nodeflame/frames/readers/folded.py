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

import re
import warnings

import numpy as np
import pandas as pd

from ..build import FrameTable, build_profile
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
    ft = FrameTable()
    for name in uniq:  # one per distinct frame text, not per sample
        base, hint = split_annotation(name)
        ft.add(base, hint=hint, label=base)
    return build_profile(ft, offsets, codes, weights=np.asarray(counts, np.int64),
                         threads=threads, meta=meta)


register_reader("folded", read_folded, sniff, (".folded", ".collapsed", ".txt"))
