"""Folded stacks: ``root;...;leaf count`` — FlameGraph's interchange format."""
from __future__ import annotations

import numpy as np

from ..frames.formats import register_writer


def folded_lines(p, *, thread_root: bool = False, annotate: bool = False):
    """(stack text, count) pairs, one per distinct (thread, stack), in stack order.

    ``thread_root`` puts the sample's thread/process name first, as
    stackcollapse-perf.pl does; ``annotate`` appends FlameGraph's ``_[j]`` to
    JIT (js/deps/node) frames and ``_[k]`` to kernel frames."""
    a = p._arrays()
    s = p.samples
    st = s["stack"].to_numpy().astype(np.int64)
    w = s["weight"].to_numpy()
    if thread_root:
        th = s["thread"].cat.codes.to_numpy().astype(np.int64)
        key = th * (len(p.stacks) + 1) + st
    else:
        key = st
    uk, inv = np.unique(key, return_inverse=True)
    counts = np.bincount(inv, weights=w).astype(np.int64)
    ust = uk % (len(p.stacks) + 1) if thread_root else uk
    labels = p.frame_labels().astype(object)
    if annotate:
        kinds = p.funcs["kind"].astype(str).to_numpy(object)[p.frames["func"].to_numpy()]
        suffix = np.where(np.isin(kinds, ["js", "deps", "node", "builtin"]), "_[j]",
                          np.where(kinds == "kernel", "_[k]", ""))
        labels = np.array([l + sfx for l, sfx in zip(labels, suffix)], dtype=object)
    # text per distinct stack, built parent-first so each prefix is joined once
    text = _stack_texts(p, labels)
    lines = text[ust]
    if thread_root:
        cats = s["thread"].cat.categories.astype(str).to_numpy(object)
        names = cats[(uk // (len(p.stacks) + 1))]
        lines = np.array([f"{n};{t}" if t else n for n, t in zip(names, lines)], dtype=object)
    return lines, counts


def _stack_texts(p, labels):
    """'a;b;c' for every stack, built one depth level at a time from the parent's text."""
    from ..frames.stacktable import _level_segments
    a = p._arrays()
    out = np.empty(len(a["prefix"]), dtype=object)
    sep_labels = np.array([";" + x for x in labels], dtype=object)
    for d, idx in _level_segments(a["depth"]):
        if d == 0:
            out[idx] = labels[a["frame"][idx]]
        else:
            out[idx] = out[a["prefix"][idx]] + sep_labels[a["frame"][idx]]
    return out


def write_folded(p, out, *, thread_root: bool = False, annotate: bool = False, sort: bool = True, **_):
    lines, counts = folded_lines(p, thread_root=thread_root, annotate=annotate)
    order = np.argsort(lines.astype(str), kind="stable") if sort else np.arange(len(lines))
    buf = "".join(f"{lines[i]} {counts[i]}\n" for i in order if counts[i] > 0)
    out.write(buf.encode("utf-8"))


register_writer("folded", write_folded, (".folded", ".collapsed"))
