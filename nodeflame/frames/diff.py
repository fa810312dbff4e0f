"""Diffs of two profiles: exact function matching, a stable normalisation, and honest noise.

Functions are matched by (name, file, line) exactly, never fuzzily.

Why not shares
--------------
Shares are compositional: when one function gets faster, every other
function's share of the profile rises although its own work did not change
(``notebooks/03-diff``: ``renderPage`` got six times faster and the untouched
``scoreRows`` went from 18 % to 36 %).  Testing shares therefore flags
functions that did not change.  The question a diff answers is "does this
function take more time *per unit of the same work*?", so each side's counts
are compared after dividing by a measure of the work done, the
*normalisation* (``Diff.normalize``, also in ``table().attrs``):

``"reference"`` (the default when no work counts are given)
    The median of the after/before ratios of the functions' self samples, over
    the functions with enough samples on both sides (at least 5 each; idle and
    ``(program)`` excluded).  This is the median-of-ratios normalisation that
    RNA-seq uses for the same compositional problem (DESeq): it assumes that
    most functions' own work did not change, and then a function whose work
    did not change has the same ratio as the median and is not flagged, however
    much the shares moved.  With fewer than 3 such functions it falls back to
    ``"total"``.
    ``diff(before, after, reference="^makePayload ")`` names the work known not to have
    changed instead: the reference is then those functions' self samples.  A profile alone
    cannot tell "A got faster" from "everything but A got slower" when about as many functions
    are on each side; naming the reference (or the work) settles it.
``"work"``
    ``diff(before, after, work=(requests_before, requests_after))``: time per
    unit of work the user counted (requests, iterations).
``"duration"``
    Samples per second of capture (both profiles timed): absolute CPU time per
    second.  Right for a process whose load is fixed from outside.
``"total"``
    Shares of each profile's total (the classic flame-graph diff).

Every change is also given in percent of the function's own before value
(``*_change_pct``) and in points of the before profile (``*_delta_pp``:
``*_after_pct`` is the after count normalised onto the before profile's scale,
so ``after - before = delta``; the raw share of the after profile is
``*_after_share_pct``).

The test
--------
Counts are in samples (a weighted profile's weights are converted to samples
at its own mean weight).  For a function with ``x_b`` samples before and
``x_a`` after, and the normalisation's expected ratio ``s`` (after/before), the
null hypothesis "same work per unit" says ``x_a`` given ``n = x_a + x_b`` is
binomial with ``pi0 = s / (1 + s)`` (the conditional test of two Poisson
rates).  Two corrections make it honest on real captures:

* *Autocorrelation.*  Consecutive samples are not independent (a function
  that runs for 20 ms fills 20 consecutive 1 ms samples), so the counts vary
  more than Poisson says.  For timed profiles the samples are cut into 10
  consecutive blocks and the dispersion ``phi`` (Pearson chi-square over the
  blocks / degrees of freedom, the batch-means idea) is measured per function
  and pooled over functions; each row's variance is multiplied by
  ``max(1, (phi_function + phi_pooled) / 2)``.  Untimed profiles (folded, raw)
  carry no order, so ``phi = 1`` there.  Blocks (rather than the lag-1
  autocorrelation alone) also count slow wandering and phases within a
  capture as noise: on 90 A/A pairs of real demo captures the lag-1 estimate
  let 18 pairs flag something, the blocks 6.  The price is power for functions
  that run in one phase of a capture only.
* *The normalisation's own noise.*  The variance of ``log s`` (the median's,
  ``pi/2 * sigma^2 / k``) is added.

The score statistic (with a continuity correction) gives a two-sided p-value
for self and for total; the row's p-value is the smaller of the two doubled
(Bonferroni over the pair), and ``significant`` is decided by the
Benjamini–Hochberg procedure over all rows at a false discovery rate of 5 %
(``q`` is the BH-adjusted p-value), so a diff with hundreds of rows does not
flag a few of them by chance alone.  ``*_low_pp``/``*_high_pp`` are the
(unadjusted) 95 % intervals of the change in points, with the same variance.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .errors import NodeflameError
from .views import _accumulate, _func_tree, func_self_total, recursive_nodes

KEY = ["name", "file", "line"]
Z95 = 1.959963984540054
ALPHA = 0.05
BLOCKS = 10
MIN_REF = 5
NORMALIZATIONS = ("auto", "reference", "work", "duration", "total")
_NO_REF_KINDS = ("idle", "program")


def change_interval(x1, n1, x2, n2, z: float = Z95):
    """Agresti–Caffo interval for p2 - p1 (proportions x/n); returns (low, high) in share units."""
    x1, x2 = np.asarray(x1, float), np.asarray(x2, float)
    p1 = (x1 + 1) / (n1 + 2)
    p2 = (x2 + 1) / (n2 + 2)
    se = np.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2))
    d = p2 - p1
    return d - z * se, d + z * se


_erfc = np.vectorize(math.erfc, otypes=[float])


def two_sided_p(z) -> np.ndarray:
    """Two-sided normal p-value of |z|."""
    z = np.abs(np.asarray(z, float))
    return _erfc(z / math.sqrt(2)) if z.size else z


def bh_adjust(p) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) of a vector of p-values."""
    p = np.asarray(p, float)
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    q = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def _self_total_from(p, sw: np.ndarray, keep: np.ndarray):
    """Per-function (self, total) weights of ``p`` for stack weights ``sw`` (see func_self_total)."""
    nf = len(p.funcs)
    a = p._arrays()
    self_f = np.bincount(a["stack_func"], weights=sw, minlength=nf)
    prefix, func, depth, s2n = _func_tree(p)
    tw = np.bincount(s2n, weights=sw, minlength=len(prefix)) if len(s2n) else np.zeros(0)
    total_node = _accumulate(prefix, depth, tw.round().astype(np.int64)).astype(float)
    total_f = np.bincount(func[keep], weights=total_node[keep], minlength=nf)
    return self_f, total_f


def _recursion_keep(p) -> np.ndarray:
    prefix, func, _depth, _s2n = _func_tree(p)
    return ~recursive_nodes(prefix, func)


def _dispersion(p, blocks: int = BLOCKS):
    """Per-function dispersion of (self, total) counts over consecutive time blocks, and the pooled
    value of each; NaN where not measurable (untimed profiles, too few samples)."""
    nf = len(p.funcs)
    nan = np.full(nf, np.nan)
    s = p.samples
    if not p.meta.get("timed") or len(s) < 20 * blocks:
        return (nan, nan), (np.nan, np.nan)
    order = np.argsort(s["time_ns"].to_numpy(), kind="stable")
    stack = s["stack"].to_numpy()[order]
    w = s["weight"].to_numpy().astype(float)[order]
    w = w * (len(w) / w.sum())          # in samples
    n_st = len(p.stacks)
    keep = _recursion_keep(p)
    cuts = np.linspace(0, len(stack), blocks + 1).round().astype(int)
    S = np.empty((blocks, nf))
    T = np.empty((blocks, nf))
    m = np.empty(blocks)
    for k in range(blocks):
        sl = slice(cuts[k], cuts[k + 1])
        sw = np.bincount(stack[sl], weights=w[sl], minlength=n_st)
        S[k], T[k] = _self_total_from(p, sw, keep)
        m[k] = w[sl].sum()
    out, pooled = [], []
    for C in (S, T):
        x = C.sum(0)
        share = x / m.sum()
        e = m[:, None] * share[None, :]
        var = e * (1 - share[None, :])
        ok = (e.min(0) >= 5) & (var.min(0) > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            chi = ((C - e) ** 2 / np.where(var > 0, var, 1)).sum(0)
        phi = np.where(ok, chi / (blocks - 1), np.nan)
        out.append(phi)
        pooled.append(float(chi[ok].sum() / ((blocks - 1) * ok.sum())) if ok.any() else np.nan)
    return tuple(out), tuple(pooled)


def _duration_s(p) -> float:
    t = p.samples["time_ns"].to_numpy()
    if not p.meta.get("timed") or len(t) < 2:
        raise NodeflameError("normalize='duration' needs two timed profiles")
    period = p.meta.get("period_ns") or float(np.median(np.diff(np.sort(t))))
    return (float(t.max() - t.min()) + float(period)) / 1e9


def _per_func(p) -> pd.DataFrame:
    self_f, total_f = func_self_total(p)
    (dself, dtotal), _ = _dispersion(p)
    f = p.funcs
    df = pd.DataFrame({"name": f["name"].astype(str), "file": f["file"].astype(str), "line": f["line"].to_numpy(),
                       "kind": f["kind"].astype(str), "self": self_f, "total": total_f,
                       "phi_self": dself, "phi_total": dtotal})
    # several funcs can share (name, file, line) when they differ in column or kind: sum them
    g = df.groupby(KEY, as_index=False, sort=False)
    return g.agg({"kind": "first", "self": "sum", "total": "sum", "phi_self": "max", "phi_total": "max"})


def _n_samples(p) -> int:
    """How many samples the profile rests on."""
    if (p.meta.get("unit") or "samples") == "samples":
        return int(p.total)
    return int(len(p.samples))


def _reference_scale(m):
    """(s, var(log s), s of a rival group or None) from the largest group of functions whose self samples changed by one
    common factor, or None when fewer than 3 functions have enough samples on both sides.

    Each function with at least ``MIN_REF`` self samples on both sides (idle and
    ``(program)`` excluded) has a log ratio ``r = log(x_a / x_b)`` with standard error
    ``se = sqrt(phi (1/x_a + 1/x_b))``.  For every candidate ratio (each function's own), the
    functions consistent with it are those within ``1.96 se + log(1.25)`` (sampling noise plus
    the 25 % that separate processes of the same program differ by); the candidate with the
    most consistent functions (ties: the most samples) wins, and ``s`` is the median ratio of
    its group.  When a second group outside it is at least half as large, the profiles cannot
    tell which group changed: var(log s) is widened by (log s - log s_rival)^2 / 4 and
    ``Diff.warnings`` says so.  With most functions unchanged this is the median-of-ratios normalisation; when
    one group of functions changed together (a renderer and its helpers) and the rest did not,
    the larger group is the reference, whatever its share of the samples."""
    xb, xa = m["self_before_n"].to_numpy(float), m["self_after_n"].to_numpy(float)
    ok = (xb >= MIN_REF) & (xa >= MIN_REF) & ~m["kind"].isin(_NO_REF_KINDS).to_numpy()
    if ok.sum() < 3:
        return None
    xb, xa = xb[ok], xa[ok]
    r = np.log(xa / xb)
    v = m["phi_self"].to_numpy(float)[ok] * (1 / xa + 1 / xb)
    tol = Z95 * np.sqrt(v)[None, :] + math.log(1.25)
    fits = np.abs(r[None, :] - r[:, None]) <= tol            # fits[j, i]: function i fits candidate j
    count = fits.sum(1)
    mass = (fits * (xa + xb)[None, :]).sum(1)
    best = np.lexsort((-mass, -count))[0]
    g = fits[best]
    s = float(np.median(r[g]))
    vlog = float(np.pi / 2 * v[g].mean() / g.sum())
    # another group, outside the chosen one and at least half its size: the profile cannot tell
    # which of the two changed; widen log s to cover both, so neither is flagged on a guess
    alt = (~g) & (count >= max(2, count[best] / 2))
    alt_s = None
    if alt.any():
        j = np.flatnonzero(alt)[np.lexsort((-mass[alt], -count[alt]))[0]]
        alt_s = float(np.median(r[fits[j] & ~g])) if (fits[j] & ~g).any() else float(r[j])
        vlog += (s - alt_s) ** 2 / 4
    return float(np.exp(s)), vlog, (None if alt_s is None else float(np.exp(alt_s)))


class Diff:
    """The difference between two profiles; see :func:`diff` and the module's docstring."""

    def __init__(self, before, after, *, normalize: str = "auto", work=None, reference: str | None = None,
                 alpha: float = ALPHA):
        if before.total <= 0 or after.total <= 0:
            raise NodeflameError("cannot diff an empty profile (no samples on one side)")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, not {normalize!r}")
        if normalize == "work" and work is None:
            raise ValueError("normalize='work' needs work=(units_before, units_after)")
        if work is not None:
            work = (float(work[0]), float(work[1]))
            if min(work) <= 0:
                raise ValueError("work counts must be positive")
        self.before = before
        self.after = after
        if normalize == "duration":
            _duration_s(before), _duration_s(after)
        self.work = work
        self.reference = reference
        if reference is not None:
            import re
            re.compile(reference)
        self.alpha = float(alpha)
        self.requested = normalize
        self._norm = None
        self.warnings: list[str] = []
        self._full = None
        self._table = None

    @property
    def normalize(self) -> str:
        """The normalisation used: 'reference', 'work', 'duration' or 'total'."""
        self.numbers()
        return self._norm[0]

    @property
    def scale(self) -> float:
        """The after/before ratio of a function's samples expected when its work did not change."""
        self.numbers()
        return self._norm[1]

    # ------------------------------------------------------------ tables
    def numbers(self) -> pd.DataFrame:
        """The full table, unrounded, every column (what :meth:`table` rounds)."""
        if self._full is None:
            self._full = self._compute()
        return self._full

    def table(self, n: int | None = None) -> pd.DataFrame:
        """One row per function of either profile, sorted by impact, read left to right:

        ``significant`` (beyond noise after Benjamini–Hochberg at 5 %), ``status``
        (slower, faster, unchanged, new, gone: "slower" = more samples per unit
        of the normalisation), name, file, line, kind; ``self_before_pct``,
        ``self_after_pct`` (normalised onto the before scale), ``self_delta_pp``
        and its 95 % interval ``self_low_pp``/``self_high_pp``; the same for
        total; ``self_change_pct``/``total_change_pct`` (relative change of the
        function's own work, inf when new); ``q``; then counts, raw shares of
        the after profile (``*_after_share_pct``), ratios and p-values.  Percent
        columns are rounded to 2 decimals, relative changes to 1; the
        unrounded table is :meth:`numbers`.  ``attrs['normalize']`` says which
        normalisation was used.  Impact = the larger of |self change| and
        |total change| in points."""
        if self._table is None:
            full = self.numbers()
            t = full.copy()
            for c in t.columns:
                if c.endswith(("_pct", "_pp")) and not c.endswith("change_pct"):
                    t[c] = t[c].round(2)
                elif c.endswith("change_pct"):
                    t[c] = t[c].round(1)
                elif c.endswith("ratio"):
                    t[c] = t[c].round(3)
            t["q"] = t["q"].round(4)
            t.attrs = dict(full.attrs)
            self._table = t
        return self._table if n is None else self._table.head(n)

    # ------------------------------------------------------------ compute
    def _scale(self, m, nb, na):
        """(name, s, var(log s)): the expected after/before ratio of a function's samples if its
        work per unit did not change."""
        how = self.requested
        if how == "auto":
            how = "work" if self.work is not None else "reference"
        if how == "work":
            return "work", self.work[1] / self.work[0], 0.0
        if how == "duration":
            return "duration", _duration_s(self.after) / _duration_s(self.before), 0.0
        if how == "reference" and self.reference is not None:
            import re
            rx = re.compile(self.reference)
            hit = np.array([rx.search(f"{n} {f}:{ln}" if f else n) is not None
                            for n, f, ln in zip(m["name"], m["file"], m["line"])], bool)
            xb, xa = m["self_before_n"].to_numpy(float)[hit].sum(), m["self_after_n"].to_numpy(float)[hit].sum()
            if xb <= 0 or xa <= 0:
                raise NodeflameError(f"reference={self.reference!r}: no self samples on one side to normalise by")
            phi = float(np.average(m["phi_self"].to_numpy(float)[hit],
                                   weights=m["self_before_n"].to_numpy(float)[hit] + m["self_after_n"].to_numpy(float)[hit] + 1e-9))
            return "reference", xa / xb, phi * (1 / xa + 1 / xb)
        if how == "reference":
            ref = _reference_scale(m)
            if ref is not None:
                if ref[2] is not None:
                    self.warnings.append(
                        f"ambiguous reference: one group of functions changed by x{ref[0]:.3g}, another by "
                        f"x{ref[2]:.3g}; the profiles cannot tell which group stayed the same, so changes of "
                        "that size are not flagged. Name the unchanged work (reference='regex') or the work "
                        "done (work=(before, after)).")
                return "reference", ref[0], ref[1]
            how = "total"
        return "total", na / nb, 0.0

    def _compute(self) -> pd.DataFrame:
        b, a = _per_func(self.before), _per_func(self.after)
        m = b.merge(a, on=KEY, how="outer", suffixes=("_before", "_after"))
        m["kind"] = m["kind_after"].fillna(m["kind_before"])
        for c in ("self_before", "total_before", "self_after", "total_after"):
            m[c] = m[c].fillna(0).astype(np.int64)
        tb, ta = float(self.before.total), float(self.after.total)
        nb, na = _n_samples(self.before), _n_samples(self.after)
        # counts in samples
        for c, t, n in (("self_before", tb, nb), ("total_before", tb, nb), ("self_after", ta, na),
                        ("total_after", ta, na)):
            m[c + "_n"] = m[c].to_numpy() * (n / t)
        # dispersion per row: the function's own (mean of the sides that measured it) shrunk to the pooled
        _, pool_b = _dispersion(self.before)
        _, pool_a = _dispersion(self.after)
        for i, what in enumerate(("self", "total")):
            both = np.array([pool_b[i], pool_a[i]])
            pooled = float(both[~np.isnan(both)].mean()) if (~np.isnan(both)).any() else 1.0
            sides = np.vstack([m[f"phi_{what}_before"].to_numpy(float), m[f"phi_{what}_after"].to_numpy(float)])
            seen = (~np.isnan(sides)).sum(0)
            own = np.where(seen > 0, np.nansum(sides, 0) / np.maximum(seen, 1), pooled)
            m[f"phi_{what}"] = np.maximum(1.0, (own + pooled) / 2)
        name, s, vlog = self._scale(m, nb, na)
        self._norm = (name, s)

        out = m[KEY + ["kind", "self_before", "self_after", "total_before", "total_after"]].copy()
        pvals = []
        cols = {}
        for what in ("self", "total"):
            xb = m[f"{what}_before_n"].to_numpy(float)
            xa = m[f"{what}_after_n"].to_numpy(float)
            phi = m[f"phi_{what}"].to_numpy(float)
            xa_n = xa / s                                    # after, on the before scale
            cols[f"{what}_before_pct"] = 100 * xb / nb
            cols[f"{what}_after_pct"] = 100 * xa_n / nb
            cols[f"{what}_delta_pp"] = 100 * (xa_n - xb) / nb
            var_d = phi * ((xa + 0.5) / s ** 2 + (xb + 0.5)) + (xa_n ** 2) * vlog
            half = Z95 * np.sqrt(var_d)
            cols[f"{what}_low_pp"] = 100 * (xa_n - xb - half) / nb
            cols[f"{what}_high_pp"] = 100 * (xa_n - xb + half) / nb
            with np.errstate(divide="ignore", invalid="ignore"):
                cols[f"{what}_change_pct"] = np.where(xb > 0, 100 * (xa_n / np.where(xb > 0, xb, 1) - 1),
                                                      np.where(xa > 0, np.inf, 0.0))
                cols[f"{what}_ratio"] = np.where(xb > 0, xa_n / np.where(xb > 0, xb, 1),
                                                 np.where(xa > 0, np.inf, 1.0))
            cols[f"{what}_after_share_pct"] = 100 * xa / na
            # conditional binomial score test of x_a | n ~ Bin(n, pi0), overdispersed by phi
            n = xa + xb
            pi0 = s / (1 + s)
            var = phi * n * pi0 * (1 - pi0) + (n * pi0 * (1 - pi0)) ** 2 * vlog
            dev = np.maximum(np.abs(xa - n * pi0) - 0.5, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = np.where(var > 0, dev / np.sqrt(np.where(var > 0, var, 1)), 0.0)
            pv = np.where(n > 0, two_sided_p(z), 1.0)
            cols[f"{what}_p"] = pv
            cols[f"{what}_z"] = np.sign(xa - n * pi0) * z
            pvals.append(pv)
        p_row = np.minimum(1.0, 2 * np.minimum(pvals[0], pvals[1]))
        q = bh_adjust(p_row)
        sig = q <= self.alpha
        # direction: the more significant of self and total
        zdir = np.where(np.abs(cols["self_z"]) >= np.abs(cols["total_z"]), cols["self_z"], cols["total_z"])
        status = np.where(m["total_before"].to_numpy() == 0, "new",
                          np.where(m["total_after"].to_numpy() == 0, "gone",
                                   np.where(~sig, "unchanged", np.where(zdir > 0, "slower", "faster"))))
        for k, v in cols.items():
            if not k.endswith("_z"):
                out[k] = v
        # the change that decided the row (self or total, whichever is further beyond noise):
        # what colours a diff flame graph, so that colour and status always agree
        out["delta_pp"] = np.where(np.abs(cols["self_z"]) >= np.abs(cols["total_z"]), cols["self_delta_pp"],
                                   cols["total_delta_pp"])
        out["q"] = q
        out["phi_self"] = m["phi_self"].to_numpy()
        out["phi_total"] = m["phi_total"].to_numpy()
        out.insert(0, "status", pd.Categorical(status, categories=["slower", "faster", "new", "gone", "unchanged"]))
        out.insert(0, "significant", sig)
        front = ["significant", "status"] + KEY + ["kind"]
        for what in ("self", "total"):
            front += [f"{what}_before_pct", f"{what}_after_pct", f"{what}_delta_pp", f"{what}_low_pp",
                      f"{what}_high_pp"]
        front += ["self_change_pct", "total_change_pct", "q"]
        out = out[front + [c for c in out.columns if c not in front]]
        impact = np.maximum(out["self_delta_pp"].abs(), out["total_delta_pp"].abs())
        out = out.assign(_impact=impact.to_numpy()).sort_values(["_impact", "name"], ascending=[False, True],
                                                                kind="stable")
        out = out.drop(columns="_impact").reset_index(drop=True)
        out.attrs["normalize"] = name
        out.attrs["scale"] = s
        return out

    # ---------------------------------------------------- per function of after
    def _after_index(self):
        f = self.after.funcs
        return pd.MultiIndex.from_arrays([f["name"].astype(str), f["file"].astype(str), f["line"].to_numpy()])

    def deltas(self) -> np.ndarray:
        """Per function of the *after* profile: the change in points that decided its row (``delta_pp``:
        self or total, whichever is further beyond noise; its sign is the status's), for colouring."""
        t = self.numbers().set_index(KEY)["delta_pp"]
        return t.reindex(self._after_index()).fillna(0.0).to_numpy()

    def significant(self) -> np.ndarray:
        """Per function of the after profile: is its change distinguishable from noise?"""
        t = self.numbers().set_index(KEY)["significant"]
        return t.reindex(self._after_index()).fillna(False).to_numpy(bool)

    def write(self, path, format: str | None = None, **options) -> None:
        """``x.svg``: differential flame graph of the after profile (red grew, blue shrank);
        ``x.folded``: two-count folded lines as FlameGraph's difffolded.pl writes them."""
        from .formats import write_diff
        write_diff(self, path, format=format, **options)

    def flame(self, **options):
        """Interactive explorer of both profiles' merged shape coloured by change (needs nodeflame[notebook])."""
        from .formats import lazy_module
        return lazy_module("widgets").diff_explorer(self, **options)

    def describe(self) -> str:
        """One line: the normalisation used and how many rows changed beyond noise."""
        t = self.numbers()
        what = {"reference": (f"the self samples of {self.reference!r} (taken as unchanged)" if self.reference else
                              "the largest group of functions whose samples changed by one factor (taken as unchanged)"),
                "work": "per unit of work ({:g} before, {:g} after)".format(*(self.work or (0, 0))),
                "duration": "per second of capture", "total": "shares of each profile's total"}[self.normalize]
        return (f"{self.before.total:,} -> {self.after.total:,} samples, {len(t)} functions; normalised by "
                f"{what}, expected after/before = {self.scale:.3g}; {int(t['significant'].sum())} changed beyond "
                f"noise (Benjamini-Hochberg, FDR {100 * self.alpha:g} %)"
                + "".join(f"\nwarning: {w}" for w in self.warnings))

    def __repr__(self) -> str:
        t = self.numbers()
        return (f"<Diff {self.before.total:,} -> {self.after.total:,} samples, {len(t)} functions, "
                f"normalised by {self.normalize}, {int(t['significant'].sum())} changed beyond noise>")

    def _repr_html_(self):
        cols = ["significant", "status", "name", "file", "line", "self_before_pct", "self_after_pct",
                "self_delta_pp", "total_before_pct", "total_after_pct", "total_delta_pp", "total_low_pp",
                "total_high_pp", "total_change_pct"]
        return (f"<div><small>{self.describe()}</small></div>"
                + self.table(20)[cols].to_html(index=False, float_format=lambda x: f"{x:.2f}"))


def diff(before, after, *, normalize: str = "auto", work=None, reference: str | None = None,
         alpha: float = ALPHA) -> Diff:
    """Compare two profiles: ``nf.diff(before, after).table()``.

    ``normalize``: 'auto' (per unit of ``work`` when given, else 'reference'),
    'reference', 'work', 'duration' or 'total' (see the module docstring);
    ``work=(units_before, units_after)``: requests or iterations each capture
    covered; ``reference``: a regular expression over ``name file:line`` naming work you know did
    not change (the reference is then those functions' self samples, like a housekeeping gene);
    ``alpha``: the false discovery rate of ``significant``."""
    return Diff(before, after, normalize=normalize, work=work, reference=reference, alpha=alpha)
