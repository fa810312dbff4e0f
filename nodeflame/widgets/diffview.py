"""The diff explorer: both profiles' merged shape, coloured by change.

The drawn shape is :func:`model.diff_shape`: every stack of either profile,
as wide as the larger of its after weight and its (normalised) before weight,
so work that vanished is drawn too.  Red slower, blue faster (by each
function's normalised change of self work, in points), grey when the change is
within sampling noise (``Diff.significant``: Benjamini–Hochberg over the rows).  The explorer's transforms apply to both sides and the diff is taken
again, so ``focus=...`` compares like with like; a time slice applies to the
after profile only (the two captures have different clocks).
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..frames.diff import diff as make_diff
from . import model as M
from .explorer import Explorer, _LRU


class DiffExplorer(Explorer):
    """Explorer of a :class:`nodeflame.Diff`; ``diff`` is the diff of the transformed sides."""

    def __init__(self, d, *, color: str = "diff", name: str = "d", title: str | None = None, **options):
        self.source_diff = d
        self._diffs = _LRU()
        self._befores = _LRU()
        self._shapes = _LRU()
        super().__init__(d.after, color=color, name=name,
                         title=title or "after vs before: red slower, blue faster, grey unchanged or within noise", **options)

    @staticmethod
    def _color_choices():
        return ("diff",) + M.COLOR_BY

    # ------------------------------------------------------------ the model
    @staticmethod
    def _both_key(key):
        return tuple(t for t in key if not t.startswith("slice="))

    def _before_for(self, key):
        key = self._both_key(key)
        if not key:
            return self.source_diff.before
        return self._befores.get_or(key, lambda: self._before_for(key[:-1]).apply([key[-1]]))

    def _after_for(self, key):
        return Explorer._profile_for(self, key)

    def _profile_for(self, key):
        """The drawn profile: the merged before/after shape of the diff under ``key``."""
        return self._shapes.get_or(tuple(key), lambda: M.diff_shape(self.diff_for(tuple(key))))

    def _timeline_for(self, key):
        rest = tuple(t for t in key if not t.startswith("slice="))
        if self._aggregate:
            return super()._timeline_for(key)
        return M.timeline(self._after_for(rest), t0_ns=self._t0, t1_ns=self._t1)

    def diff_for(self, key):
        if not key:
            return self.source_diff
        d0 = self.source_diff
        return self._diffs.get_or(key, lambda: make_diff(self._before_for(key), self._after_for(key),
                                                         normalize=d0.requested, work=d0.work,
                                                         reference=d0.reference, alpha=d0.alpha))

    @property
    def diff(self):
        """The diff of the two profiles as transformed now."""
        return self.diff_for(tuple(self.transforms))

    def set_transforms(self, specs):
        from ..frames.transforms import Transform
        key = tuple(str(Transform.parse(s)) for s in specs)
        self.diff_for(key)  # an empty side raises here, before anything changes
        return super().set_transforms(specs)

    # -------------------------------------------------------------- drawing
    def _colors(self, p, lay):
        if self.view["color"] != "diff":
            return super()._colors(p, lay)
        col, _delta, _sig = M.diff_colors(self.diff, p)
        return M.node_colors(lay, col)

    def _extra_trace(self, trace, p, lay):
        _col, delta, sig = M.diff_colors(self.diff, p)
        fmt = np.array([f"{d:+.2f} pp" + ("" if s else " (within noise)") for d, s in zip(np.round(delta, 2) + 0.0, sig)],
                       dtype=object)
        func = lay["func"].to_numpy()
        per_node = np.where(func >= 0, fmt[np.maximum(func, 0)] if len(fmt) else "", "")
        trace["customdata"] = [trace["customdata"][0]] + [c + " · change " + x for c, x in
                                                          zip(trace["customdata"][1:], per_node.tolist())]

    def _svg_deltas(self, p):
        _col, delta, sig = M.diff_colors(self.diff, p)
        return np.where(sig, delta, 0.0)

    def diff_table(self, n: int = 12) -> pd.DataFrame:
        t = self.diff.table(n)
        return pd.DataFrame({
            "significant": t["significant"], "status": t["status"].astype(str),
            "function": [f"{a} {b}:{c}" if b else a for a, b, c in zip(t["name"], t["file"], t["line"])],
            "self_before_pct": t["self_before_pct"].round(2), "self_after_pct": t["self_after_pct"].round(2),
            "self_delta_pp": t["self_delta_pp"].round(2), "total_delta_pp": t["total_delta_pp"].round(2)})

    def _render_side(self):
        t = self.diff_table(12)
        rows = "".join(
            f"<tr><td style='text-align:left'>{html.escape(str(f))}</td><td>{b:.2f}</td><td>{a:.2f}</td>"
            f"<td style='color:{'#c00' if s and d > 0 else '#00c' if s and d < 0 else '#666'}'>{'<b>' if s else ''}{d:+.2f}{'</b>' if s else ''}</td>"
            f"<td>{st}</td></tr>"
            for f, b, a, d, s, st in zip(t["function"], t["self_before_pct"], t["self_after_pct"], t["self_delta_pp"],
                                         t["significant"], t["status"]))
        self.side.value = ("<div style='font-size:12px'><b>largest changes</b> (self, in points of the before "
                           f"profile, normalised by {html.escape(self.diff.normalize)}; bold = beyond noise)"
                           "<table style='font-size:11px'><tr><th>function</th><th>before %</th><th>after %</th>"
                           f"<th>change pp</th><th>status</th></tr>{rows}</table></div>")

    def _details_html(self, p, func):
        # p is the merged drawing shape, whose weights are neither side's: show the after
        # profile's callers and callees (the function matched by name, file and line)
        after = self._after_for(tuple(self.transforms))
        hit = np.flatnonzero(after.func_labels() == p.func_labels()[func])
        if len(hit):
            out = "<div style='font-size:11px;color:#666'>after profile:</div>" + super()._details_html(after, int(hit[0]))
        else:
            out = (f"<div style='font-size:12px'><b>{html.escape(str(M.short_labels(p)[func]))}</b> "
                   f"<span style='color:#666'>{html.escape(str(M.func_where(p)[func]))}</span>"
                   " — not in the after profile (its work vanished)</div>")
        t = self.diff.numbers()
        f = p.funcs
        row = t[(t["name"] == str(f["name"].iat[func])) & (t["file"] == str(f["file"].iat[func]))
                & (t["line"] == int(f["line"].iat[func]))]
        if len(row):
            r = row.iloc[0]
            out += (f"<div style='font-size:12px'>self {r['self_before_pct']:.2f} % → {r['self_after_pct']:.2f} % "
                    f"({r['self_delta_pp']:+.2f} pp, 95 % interval {r['self_low_pp']:+.2f} .. {r['self_high_pp']:+.2f});"
                    f" total {r['total_before_pct']:.2f} % → {r['total_after_pct']:.2f} %;"
                    f" <b>{r['status']}</b> ({'beyond sampling noise' if r['significant'] else 'within sampling noise'},"
                    f" q = {r['q']:.3g}, normalised by {html.escape(self.diff.normalize)})</div>")
        return out

    def text_table(self) -> str:
        t = self.diff_table(20)
        head = (f"diff: {self.diff.before.total:,} -> {self.diff.after.total:,} samples"
                + (f" after {self.transforms}" if self.transforms else ""))
        with pd.option_context("display.max_colwidth", 70, "display.width", 200):
            return head + "\n" + t.to_string(index=False)

    @property
    def code(self) -> str:
        view = {k: v for k, v in self.view.items()
                if v != {"inverted": False, "orientation": "flame", "color": "diff", "minwidth": None}[k]}
        if self.pattern:
            view["search"] = self.pattern
        opts = ", ".join(f"{k}={v!r}" for k, v in view.items())
        if not self.transforms:
            return f"{self.name}.flame({opts})"
        both = list(self._both_key(tuple(self.transforms)))
        before = f"{self.name}.before" + (f".apply({both!r})" if both else "")
        after = f"{self.name}.after.apply({list(self.transforms)!r})"
        return f"nf.diff({before}, {after}).flame({opts})"

    def __repr__(self):
        return f"<nodeflame DiffExplorer: {self.code}>"
