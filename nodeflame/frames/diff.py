"""Diffs of two profiles: exact function matching, shares, and sampling noise.

Functions are matched by (name, file, line) exactly, never fuzzily.  Both
profiles are normalised by their totals, so each function has a *share* of
its profile before and after.  Captures are samples: a share measured from n
samples moves by chance alone (a function at 5 % of 1,000 samples by about
±1.4 points), so every row carries a 95 % interval for the change and a flag
saying whether the change is distinguishable from that noise.

The interval is Agresti–Caffo's for a difference of two proportions (add one
success and one failure to each side), which behaves at shares of 0 and 100 %
where the plain Wald interval collapses to zero width.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import NodeflameError
from .views import func_self_total

KEY = ["name", "file", "line"]
Z95 = 1.959963984540054


def _per_func(p) -> pd.DataFrame:
    self_f, total_f = func_self_total(p)
    f = p.funcs
    df = pd.DataFrame({"name": f["name"].astype(str), "file": f["file"].astype(str), "line": f["line"].to_numpy(),
                       "kind": f["kind"].astype(str), "self": self_f, "total": total_f})
    # several funcs can share (name, file, line) when they differ in column or kind: sum them
    g = df.groupby(KEY, as_index=False, sort=False)
    return g.agg({"kind": "first", "self": "sum", "total": "sum"})


def _n_samples(p) -> int:
    """How many independent samples the shares rest on."""
    if (p.meta.get("unit") or "samples") == "samples":
        return int(p.total)
    return int(len(p.samples))


def change_interval(x1, n1, x2, n2, z: float = Z95):
    """Agresti–Caffo interval for p2 - p1 (proportions x/n); returns (low, high) in share units."""
    x1, x2 = np.asarray(x1, float), np.asarray(x2, float)
    p1 = (x1 + 1) / (n1 + 2)
    p2 = (x2 + 1) / (n2 + 2)
    se = np.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2))
    d = p2 - p1
    return d - z * se, d + z * se


class Diff:
    """The difference between two profiles; see :func:`diff`."""

    def __init__(self, before, after):
        if before.total <= 0 or after.total <= 0:
            raise NodeflameError("cannot diff an empty profile (no samples on one side)")
        self.before = before
        self.after = after
        self._table = None

    def table(self, n: int | None = None) -> pd.DataFrame:
        """One row per function of either profile, sorted by impact.

        Columns: name, file, line, kind; self and total weight before/after;
        shares in percent (``self_before_pct`` ...); ``self_delta_pp`` and
        ``total_delta_pp`` (percentage points); ``self_ratio``/``total_ratio``
        (after/before share; inf when new, 0 when gone); ``self_low_pp`` /
        ``self_high_pp`` (95 % interval of the self change) and the same for
        total; ``significant`` (either interval excludes 0); ``status`` (new,
        gone, changed, same).  Impact = the larger of |self change| and
        |total change|.
        """
        if self._table is None:
            self._table = self._compute()
        return self._table if n is None else self._table.head(n)

    def _compute(self) -> pd.DataFrame:
        b, a = _per_func(self.before), _per_func(self.after)
        m = b.merge(a, on=KEY, how="outer", suffixes=("_before", "_after"))
        m["kind"] = m["kind_after"].fillna(m["kind_before"])
        m = m.drop(columns=["kind_before", "kind_after"])
        for c in ("self_before", "total_before", "self_after", "total_after"):
            m[c] = m[c].fillna(0).astype(np.int64)
        tb, ta = float(self.before.total), float(self.after.total)
        nb, na = _n_samples(self.before), _n_samples(self.after)
        out = m[KEY + ["kind", "self_before", "self_after", "total_before", "total_after"]].copy()
        for what in ("self", "total"):
            sb = m[f"{what}_before"].to_numpy() / tb
            sa = m[f"{what}_after"].to_numpy() / ta
            out[f"{what}_before_pct"] = 100 * sb
            out[f"{what}_after_pct"] = 100 * sa
            out[f"{what}_delta_pp"] = 100 * (sa - sb)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"{what}_ratio"] = np.where(sb > 0, sa / np.where(sb > 0, sb, 1), np.where(sa > 0, np.inf, 1.0))
            lo, hi = change_interval(sb * nb, nb, sa * na, na)
            out[f"{what}_low_pp"] = 100 * lo
            out[f"{what}_high_pp"] = 100 * hi
        sig = ((out["self_low_pp"] > 0) | (out["self_high_pp"] < 0) |
               (out["total_low_pp"] > 0) | (out["total_high_pp"] < 0))
        out["significant"] = sig.to_numpy()
        status = np.where(m["total_before"].to_numpy() == 0, "new",
                          np.where(m["total_after"].to_numpy() == 0, "gone",
                                   np.where(sig, "changed", "same")))
        out["status"] = pd.Categorical(status, categories=["new", "gone", "changed", "same"])
        impact = np.maximum(out["self_delta_pp"].abs(), out["total_delta_pp"].abs())
        out = out.assign(_impact=impact.to_numpy()).sort_values(["_impact", "name"], ascending=[False, True],
                                                                kind="stable")
        return out.drop(columns="_impact").reset_index(drop=True)

    def deltas(self) -> np.ndarray:
        """Per function of the *after* profile: change of its self share in points (for colouring)."""
        t = self.table().set_index(KEY)["self_delta_pp"]
        f = self.after.funcs
        idx = pd.MultiIndex.from_arrays([f["name"].astype(str), f["file"].astype(str), f["line"].to_numpy()])
        return t.reindex(idx).fillna(0.0).to_numpy()

    def significant(self) -> np.ndarray:
        """Per function of the after profile: is its change distinguishable from noise?"""
        t = self.table().set_index(KEY)["significant"]
        f = self.after.funcs
        idx = pd.MultiIndex.from_arrays([f["name"].astype(str), f["file"].astype(str), f["line"].to_numpy()])
        return t.reindex(idx).fillna(False).to_numpy(bool)

    def write(self, path, format: str | None = None, **options) -> None:
        """``x.svg``: differential flame graph of the after profile (red grew, blue shrank);
        ``x.folded``: two-count folded lines as FlameGraph's difffolded.pl writes them."""
        from .formats import write_diff
        write_diff(self, path, format=format, **options)

    def flame(self, **options):
        """Interactive explorer of the after profile coloured by change (needs nodeflame[notebook])."""
        from .formats import lazy_module
        return lazy_module("widgets").diff_explorer(self, **options)

    def __repr__(self) -> str:
        t = self.table()
        return (f"<Diff {self.before.total:,} -> {self.after.total:,} samples, {len(t)} functions, "
                f"{int(t['significant'].sum())} changed beyond noise>")

    def _repr_html_(self):
        return self.table(20).to_html(float_format=lambda x: f"{x:.2f}")


def diff(before, after) -> Diff:
    """Compare two profiles: ``nf.diff(before, after).table()``."""
    return Diff(before, after)
