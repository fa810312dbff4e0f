"""Hot lines: self and total per source line, with the line's text where it can be read.

A sample's leaf line is its frame's executing line, or, where the reader
recorded per-line ticks (cpuprofile ``positionTicks``, the ``lines`` table),
those lines.  Callers' lines are their frames' lines (the call site where a
backend records it; V8's cpuprofile only gives a function's start line for
callers).  Total counts each sample once per line, however often the line
is on its stack.  After ``Profile.with_source_maps`` the lines are original
lines, and the text comes from the maps' ``sourcesContent`` when they embed
it (``meta['source_text']``), else from the file on disk.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .sourcemap import file_path
from .stacktable import stack_paths

_I64 = np.int64


def _func_mask(p, func) -> np.ndarray:
    n = len(p.funcs)
    if func is None:
        return np.ones(n, bool)
    if isinstance(func, (int, np.integer)):
        m = np.zeros(n, bool)
        if 0 <= int(func) < n:
            m[int(func)] = True
        return m
    rx = re.compile(str(func))
    return np.fromiter((rx.search(s) is not None for s in p.func_labels()), bool, n)


def hot_lines(p, func=None, text: bool = True) -> pd.DataFrame:
    """DataFrame (file, line, name, self, total, share, text) sorted by self then total;
    ``share`` is self in percent of the profile's total; ``text`` the stripped source line
    ('' where unknown).  ``func`` limits it to the lines of matching functions."""
    a = p.arrays()
    w = p.stack_weights()
    fmask = _func_mask(p, func)
    nst = len(a["prefix"])
    frame_line = p.frames["line"].to_numpy().astype(_I64)
    sline = frame_line[a["frame"]] if nst else np.empty(0, _I64)
    sfunc = a["stack_func"]
    L = p.lines
    has_lines = np.zeros(nst, bool)
    if len(L):
        has_lines[L["stack"].to_numpy()] = True
    # contributions: (stack whose sample it is, func, line, weight, is_leaf)
    live = np.flatnonzero(w > 0)
    off, flat = stack_paths(a["prefix"], live, a["depth"])
    owner = np.repeat(live, np.diff(off))
    is_leaf = np.zeros(len(flat), bool)
    if len(flat):
        is_leaf[off[1:] - 1] = True
    keep = ~(is_leaf & has_lines[flat])
    c_owner = owner[keep]
    c_func = sfunc[flat[keep]]
    c_line = sline[flat[keep]]
    c_w = w[owner[keep]]
    c_leaf = is_leaf[keep]
    if len(L):
        ls = L["stack"].to_numpy().astype(_I64)
        ok = w[ls] > 0
        ls = ls[ok]
        c_owner = np.concatenate([c_owner, ls])
        c_func = np.concatenate([c_func, sfunc[ls]])
        c_line = np.concatenate([c_line, L["line"].to_numpy().astype(_I64)[ok]])
        c_w = np.concatenate([c_w, np.minimum(L["ticks"].to_numpy().astype(_I64)[ok], w[ls])])
        c_leaf = np.concatenate([c_leaf, np.ones(len(ls), bool)])
    sel = fmask[c_func] & (c_line > 0) if len(c_func) else np.zeros(0, bool)
    cols = ["file", "line", "name", "self", "total", "share", "text"]
    if not sel.any():
        return pd.DataFrame({c: [] for c in cols})
    f = p.funcs
    file_codes = f["file"].cat.codes.to_numpy().astype(_I64)
    df = pd.DataFrame({"owner": c_owner[sel], "file": file_codes[c_func[sel]], "line": c_line[sel],
                       "func": c_func[sel], "w": c_w[sel], "leaf": c_leaf[sel]})
    self_df = df[df["leaf"]].groupby(["file", "line"])["w"].sum()
    # once per sample group (stack) and line: the largest contribution (the leaf's ticks <= the stack's weight)
    tot_df = df.groupby(["owner", "file", "line"])["w"].max().groupby(level=["file", "line"]).sum()
    name_df = df.sort_values("w", ascending=False, kind="stable").groupby(["file", "line"])["func"].first()
    out = pd.DataFrame({"total": tot_df})
    out["self"] = self_df.reindex(out.index).fillna(0).astype(_I64)
    out["func"] = name_df.reindex(out.index)
    out = out.reset_index()
    cats = f["file"].cat.categories
    out["file"] = np.asarray(cats, object)[out["file"].to_numpy()] if len(out) else []
    out["name"] = f["name"].astype(str).to_numpy(object)[out["func"].to_numpy()]
    out["share"] = 100.0 * out["self"] / max(p.total, 1)
    out = out.sort_values(["self", "total", "file", "line"], ascending=[False, False, True, True],
                          kind="stable").reset_index(drop=True)
    out["text"] = source_lines(p, out["file"].tolist(), out["line"].tolist()) if text else ""
    return out[cols]


def source_lines(p, files, lines) -> list[str]:
    """The stripped text of each (file, line) ('' where it cannot be read)."""
    embedded = p.meta.get("source_text") or {}
    cache: dict = {}
    out = []
    for fl, ln in zip(files, lines):
        if fl not in cache:
            cache[fl] = _load_lines(fl, embedded, p.meta.get("source_root"))
        ls = cache[fl]
        out.append(ls[ln - 1].strip() if ls is not None and 0 < ln <= len(ls) else "")
    return out


def source_text(p, file: str) -> str | None:
    """The whole text of a source file of the profile, from the maps' sourcesContent or disk."""
    ls = _load_lines(file, p.meta.get("source_text") or {}, p.meta.get("source_root"))
    return None if ls is None else "\n".join(ls)


def _load_lines(file: str, embedded: dict, root=None):
    t = embedded.get(file)
    if t is None:
        path = file_path(file)
        if path is None:
            return None
        for cand in ([root.rstrip("/") + path] if root else []) + [path]:
            try:
                with open(cand, "rb") as fh:
                    t = fh.read(64 << 20).decode("utf-8", "replace")
                break
            except OSError:
                continue
    return None if t is None else t.split("\n")
