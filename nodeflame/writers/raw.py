"""Raw stacks, the input of FlameGraph's ``stackcollapse.pl`` (and of torch users' pipelines).

::

    # nodeflame raw stacks, leaf first, each followed by its count
    # 1234 samples in 56 stacks

      parse /app/x.js:3
      main /app/x.js:10
      12

For each distinct stack: its frames one per line, leaf first, indented two
spaces; then its count; then a blank line.  The three header lines are there
because ``stackcollapse.pl`` skips the first three lines of its input.

``stackcollapse.pl`` rewrites frame text (it strips a trailing ``+...``
offset, C++ arguments after ``::``, a leading ``L``; takes a digits-only line
for a count and skips blank ones).  Frames are written so that it, and
nodeflame's own raw reader, get each label back exactly: a label containing
``+`` gets ``+0`` appended, one with ``::`` followed by ``(`` or ``<`` gets
``(`` appended, and one that starts with ``L`` or whitespace, is empty, or
is all digits gets an ``L`` put in front.

Not representable (changed on the way through ``stackcollapse.pl`` and the
raw reader): ``;`` (becomes ``:``; folded text cannot hold it either), ``->``
(read as an inlined frame), line breaks (written as spaces) and lone
surrogates (written as ``?``).

Options: ``thread_root=True`` adds the sample's thread as the outermost frame
(what stackcollapse-perf.pl does with process names); ``header=False`` leaves
the header out (then stackcollapse.pl loses the first stack's first frames).
"""
from __future__ import annotations

import re

import numpy as np

from ..frames.stacktable import stack_paths

_CPP = re.compile(r"::.*[(<]")
_COUNTLIKE = re.compile(r"[ \t\f\v]*[0-9]+[ \t\f\v]*\Z")
_WS = " \t\n\r\f\v"


def encode_frame(label: str) -> str:
    """The line text that stackcollapse.pl (and the raw reader) turn back into ``label``."""
    t = label.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    if _CPP.search(t):
        t += "("
    if "+" in t:
        t += "+0"
    if t[:1] == "L" or t[:1] in _WS or not t.strip(_WS) or _COUNTLIKE.match(t):
        t = "L" + t
    return t


def raw_stacks(p, *, thread_root: bool = False):
    """(leaf-first list of labels, count) per distinct (thread, stack), ordered by root-first text."""
    a = p.arrays()
    s = p.samples
    nst = len(p.stacks)
    st = s["stack"].to_numpy().astype(np.int64)
    w = s["weight"].to_numpy().astype(np.int64)
    if thread_root:
        th = s["thread"].cat.codes.to_numpy().astype(np.int64)
        key = th * (nst + 1) + st
    else:
        key = st
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]]) if len(ks) else np.empty(0, np.int64)
    uk = ks[first]
    counts = np.add.reduceat(w[order], first) if len(first) else np.empty(0, np.int64)
    ust = uk % (nst + 1) if thread_root else uk
    off, flat = stack_paths(a["prefix"], ust, a["depth"])
    labels = np.array([encode_frame(x) for x in p.frame_labels()], dtype=object)
    lab = labels[a["frame"][flat]].tolist() if len(flat) else []
    o = off.tolist()
    names = None
    if thread_root:
        cats = [encode_frame(str(c)) for c in s["thread"].cat.categories]
        names = [cats[int(k // (nst + 1))] for k in uk]
    out = []
    for i in range(len(uk)):
        fr = lab[o[i]:o[i + 1]]
        if names is not None:
            fr = [names[i]] + fr
        out.append((fr, int(counts[i])))
    out.sort(key=lambda fc: ";".join(fc[0]))
    return out


def write_raw(p, out, *, thread_root: bool = False, header: bool = True, **_):
    stacks = raw_stacks(p, thread_root=thread_root)
    parts = []
    if header:
        parts.append("# nodeflame raw stacks, leaf first, each followed by its count\n"
                     f"# {p.total} {p.meta.get('unit') or 'samples'} in {len(stacks)} stacks\n\n")
    for frames, count in stacks:
        if count <= 0 or not frames:
            continue
        parts.append("".join(f"  {f}\n" for f in reversed(frames)))
        parts.append(f"  {count}\n\n")
    out.write("".join(parts).encode("utf-8", errors="replace"))
