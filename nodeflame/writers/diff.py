"""Writers for a Diff: two-count folded lines and a differential SVG flame graph."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..frames.formats import WRITERS
from .folded import folded_lines


def diff_folded_lines(d, **options) -> list[str]:
    """``stack before after`` for every stack of either profile, as difffolded.pl prints them
    (raw counts; difffolded.pl's ``-n`` normalisation is ``normalize=True``)."""
    lb, cb = folded_lines(d.before, **options)
    la, ca = folded_lines(d.after, **options)
    b = pd.Series(cb, index=pd.Index(lb.astype(str))).groupby(level=0).sum()
    a = pd.Series(ca, index=pd.Index(la.astype(str))).groupby(level=0).sum()
    m = pd.concat([b.rename("before"), a.rename("after")], axis=1).fillna(0).astype(np.int64).sort_index()
    return [f"{k} {int(x)} {int(y)}" for k, x, y in zip(m.index, m["before"], m["after"])]


def write_diff_folded(d, out, *, normalize: bool = False, **options):
    lines = diff_folded_lines(d, **options)
    if normalize:  # scale before-counts to the after total, like difffolded.pl -n
        scale = d.after.total / max(d.before.total, 1)
        fixed = []
        for ln in lines:
            head, x, y = ln.rsplit(" ", 2)
            fixed.append(f"{head} {int(round(int(x) * scale))} {y}")
        lines = fixed
    out.write(("\n".join(lines) + "\n").encode("utf-8"))


def write_diff_svg(d, out, *, noise: bool = False, **options):
    """The after profile's flame graph coloured by the change of each function's self share:
    red grew, blue shrank, grey unchanged.  Changes within sampling noise (the diff's 95 %
    test) are drawn grey too unless ``noise=True`` (then every change is tinted, as
    difffolded.pl + flamegraph.pl do)."""
    svg = WRITERS.get("svg")
    if svg is None:
        from ..frames.errors import NodeflameError
        raise NodeflameError("the SVG writer is not available")
    deltas = d.deltas()
    if not noise:
        deltas = np.where(d.significant(), deltas, 0.0)
    options.setdefault("title", "Differential flame graph (red grew, blue shrank)")
    options.setdefault("subtitle", f"{d.before.total:,} -> {d.after.total:,} samples; change of self share in "
                                   "points" + ("" if noise else ", grey within sampling noise (95 %)"))
    svg.write(d.after, out, deltas=deltas, **options)
