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
from .views import accumulate_subtrees, func_tree, func_self_total, recursive_nodes

KEY = ["name", "file", "line"]
Z95 = 1.959963984540054
ALPHA = 0.05
BLOCKS = 10
MIN_REF = 5
MAX_CANDIDATES = 1000   # common_ratio: candidate factors tried (the heaviest functions' own)
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
    a = p.arrays()
    self_f = np.bincount(a["stack_func"], weights=sw, minlength=nf)
    prefix, func, depth, s2n = func_tree(p)
    tw = np.bincount(s2n, weights=sw, minlength=len(prefix)) if len(s2n) else np.zeros(0)
    total_node = accumulate_subtrees(prefix, depth, tw.round().astype(np.int64)).astype(float)
    total_f = np.bincount(func[keep], weights=total_node[keep], minlength=nf)
    return self_f, total_f


def _recursion_keep(p) -> np.ndarray:
    prefix, func, _depth, _s2n = func_tree(p)
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
    return common_ratio(r, v, xa + xb)


def common_ratio(r, v, mass, slack: float = math.log(1.25), pairwise: bool = False):
    """(s, var(log s), s of a rival group or None): the common factor of the largest group of
    log ratios ``r`` (variances ``v``, weights ``mass`` for ties) consistent with one another
    within ``1.96 sqrt(v) + slack``; see :func:`_reference_scale`.  ``pairwise`` (when ``v``
    already holds all the variation expected between equal functions): consistent within
    ``1.96 sqrt(v_i + v_j) + slack``, and ``s`` is the inverse-variance weighted mean of the
    group's log ratios (variance ``1 / sum(1 / v)``) instead of their median."""
    r, v, mass = np.asarray(r, float), np.asarray(v, float), np.asarray(mass, float)
    # candidates: every function, or the MAX_CANDIDATES heaviest (the matrix is candidates x functions)
    cand = (np.arange(len(r)) if len(r) <= MAX_CANDIDATES
            else np.sort(np.argsort(-mass, kind="stable")[:MAX_CANDIDATES]))
    tol = Z95 * np.sqrt(v[None, :] + v[cand][:, None] if pairwise else v[None, :]) + slack
    fits = np.abs(r[None, :] - r[cand][:, None]) <= tol       # fits[j, i]: function i fits candidate j
    count = fits.sum(1)
    wmass = fits @ mass
    best = np.lexsort((-wmass, -count))[0]
    g = fits[best]
    if pairwise and (v[g] > 0).all():
        wt = 1 / v[g]
        s = float((wt * r[g]).sum() / wt.sum())
        vlog = float(1 / wt.sum())
    else:
        s = float(np.median(r[g]))
        vlog = float(np.pi / 2 * v[g].mean() / g.sum())
    # another group, outside the chosen one and at least half its size: the profile cannot tell
    # which of the two changed; widen log s to cover both, so neither is flagged on a guess
    alt = (~g[cand]) & (count >= max(2, count[best] / 2))
    alt_s = None
    if alt.any():
        j = np.flatnonzero(alt)[np.lexsort((-wmass[alt], -count[alt]))[0]]
        alt_s = float(np.median(r[fits[j] & ~g])) if (fits[j] & ~g).any() else float(r[cand[j]])
        vlog += (s - alt_s) ** 2 / 4
    return float(np.exp(s)), vlog, (None if alt_s is None else float(np.exp(alt_s)))


def _arrange(out: pd.DataFrame, sig, status, ties: list) -> pd.DataFrame:
    """The table's first columns (significant, status, key, the changes and their intervals, q),
    then the rest; rows by impact (the larger of |self change| and |total change| in points),
    ``ties`` ascending."""
    out.insert(0, "status", pd.Categorical(status, categories=["slower", "faster", "new", "gone", "unchanged"]))
    out.insert(0, "significant", sig)
    front = ["significant", "status"] + KEY + ["kind"]
    for what in ("self", "total"):
        front += [f"{what}_before_pct", f"{what}_after_pct", f"{what}_delta_pp", f"{what}_low_pp",
                  f"{what}_high_pp"]
    front += ["self_change_pct", "total_change_pct", "q"]
    out = out[front + [c for c in out.columns if c not in front]]
    impact = np.maximum(out["self_delta_pp"].abs(), out["total_delta_pp"].abs())
    out = out.assign(_impact=impact.to_numpy()).sort_values(["_impact"] + list(ties),
                                                            ascending=[False] + [True] * len(ties), kind="stable")
    return out.drop(columns="_impact").reset_index(drop=True)


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
        out = _arrange(out, sig, status, ["name"])
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


# ---------------------------------------------------------------- groups of captures
_lgamma = np.vectorize(math.lgamma, otypes=[float])


def _betainc(a, b, x):
    """Regularised incomplete beta I_x(a, b), elementwise (continued fraction, Lentz's method)."""
    a, b, x = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(x, float))
    out = np.where(x <= 0, 0.0, 1.0)
    inner = (x > 0) & (x < 1)
    if not inner.any():
        return out
    a, b, x = a[inner], b[inner], x[inner]
    flip = x > (a + 1) / (a + b + 2)
    a2, b2, x2 = np.where(flip, b, a), np.where(flip, a, b), np.where(flip, 1 - x, x)
    tiny = 1e-300
    qab, qap, qam = a2 + b2, a2 + 1, a2 - 1
    c = np.ones_like(x2)
    d = 1 - qab * x2 / qap
    d = 1 / np.where(np.abs(d) < tiny, tiny, d)
    h = d.copy()
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b2 - m) * x2 / ((qam + m2) * (a2 + m2))
        d = 1 + aa * d
        d = 1 / np.where(np.abs(d) < tiny, tiny, d)
        c = 1 + aa / np.where(np.abs(c) < tiny, tiny, c)
        h *= d * c
        aa = -(a2 + m) * (qab + m) * x2 / ((a2 + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / np.where(np.abs(d) < tiny, tiny, d)
        c = 1 + aa / np.where(np.abs(c) < tiny, tiny, c)
        delta = d * c
        h *= delta
        if np.all(np.abs(delta - 1) < 1e-14):
            break
    front = np.exp(_lgamma(qab) - _lgamma(a2) - _lgamma(b2) + a2 * np.log(x2) + b2 * np.log1p(-x2))
    val = front * h / a2
    out[inner] = np.where(flip, 1 - val, val)
    return out


def t_two_sided_p(t, df) -> np.ndarray:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom (non-integer allowed)."""
    t, df = np.broadcast_arrays(np.abs(np.asarray(t, float)), np.asarray(df, float))
    if not t.size:
        return t.astype(float)
    return np.clip(_betainc(df / 2, 0.5, df / (df + t * t)), 0.0, 1.0)


def t_quantile_975(df) -> np.ndarray:
    """The 97.5 % quantile of Student's t (``df`` >= 1, non-integer allowed): the normal quantile
    refined by Newton steps on :func:`t_two_sided_p`."""
    df = np.maximum(np.asarray(df, float), 1.0)
    z = Z95
    # Cornish-Fisher start (Abramowitz & Stegun 26.7.5), then Newton on the density
    q = (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
         + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))
    for _ in range(6):
        f = t_two_sided_p(q, df) - 0.05
        dens = np.exp(_lgamma((df + 1) / 2) - _lgamma(df / 2) - 0.5 * np.log(df * np.pi)
                      - (df + 1) / 2 * np.log1p(q * q / df))
        q = q + f / (2 * dens)
    return q


GROUP_KEY = KEY + ["kind"]


class GroupDiff(Diff):
    """The difference between two groups of captures (``Dataset.diff``), each capture (or each
    process, with ``unit=``) one observation of every function's share.

    ``stats``: one row per (side, name, file, line) with ``side`` 0 (before) or 1 (after),
    ``kind``, ``self``/``total`` (weights summed over the side's captures) and, over the
    side's observation units, ``self_share_sum``/``self_share_sq`` and
    ``total_share_sum``/``total_share_sq`` (sums of each unit's share and of its square);
    ``units``: the number of observation units on each side (a unit without the function
    counts with share 0).  ``before``/``after``: the merged Profiles of each side, or
    callables that load them (only :meth:`write`, :meth:`flame`, :meth:`deltas` need them).

    The method (Welch's t on per-unit shares, normalised, Benjamini–Hochberg): for each
    function the mean share ``m`` and the sample variance ``v`` of the per-unit shares on
    each side; the after mean is divided by the normalisation's factor ``s`` (``"reference"``:
    the largest group of functions whose mean shares changed by one common factor, as
    :func:`diff` finds it, from the log ratios of the means with their delta-method
    variances, two functions consistent when their log ratios differ by less than 1.96 standard
    errors of the difference plus 5 % (not the 25 % of a single diff: the variances already hold
    the variation between units), and the factor their inverse-variance weighted mean; ``"total"``: s = 1, plain shares); the change
    ``d = m_after / s - m_before`` has variance ``v_b / n_b + v_a / (n_a s^2) +
    (m_after / s)^2 var(log s)`` and Welch–Satterthwaite degrees of freedom; its p-value is
    Student's t.  The variance between units holds everything that makes two captures of
    the same code differ (processes, inputs, machines, sampling noise), so no dispersion
    model of sampling is needed.  The row's p-value is the smaller of self's and total's
    doubled (not doubled when they are the same observations: a function that calls nothing),
    ``significant`` is Benjamini–Hochberg at ``alpha``, and the intervals are the
    95 % t intervals of the change in points of the before group's mean share."""

    def __init__(self, stats: pd.DataFrame, units, *, before=None, after=None, normalize: str = "auto",
                 alpha: float = ALPHA, labels=("before", "after"), unit_name: str = "capture"):
        if normalize not in ("auto", "reference", "total"):
            raise ValueError(f"a group diff's normalize must be 'auto', 'reference' or 'total', not {normalize!r}")
        nb, na = int(units[0]), int(units[1])
        if nb < 2 or na < 2:
            raise NodeflameError(f"a group diff needs at least 2 {unit_name}s on each side (has {nb} before, "
                                 f"{na} after); for one capture, diff the Profiles (nf.diff)")
        self.stats = stats
        self.units = (nb, na)
        self._before_src, self._after_src = before, after
        self.work = None
        self.reference = None
        self.alpha = float(alpha)
        self.requested = normalize
        self.labels = tuple(labels)
        self.unit_name = unit_name
        self._norm = None
        self.warnings: list[str] = []
        self._full = None
        self._table = None

    @property
    def before(self):
        if callable(self._before_src):
            self._before_src = self._before_src()
        return self._before_src

    @property
    def after(self):
        if callable(self._after_src):
            self._after_src = self._after_src()
        return self._after_src

    def _side(self, side: int) -> pd.DataFrame:
        st = self.stats
        return st[st["side"] == side].drop(columns="side")

    def _compute(self) -> pd.DataFrame:
        nb, na = self.units
        b, a = self._side(0), self._side(1)
        m = b.merge(a, on=KEY, how="outer", suffixes=("_before", "_after"))
        m["kind"] = m["kind_after"].fillna(m["kind_before"])
        for c in m.columns:
            if c.startswith(("self", "total")):
                m[c] = m[c].fillna(0)
        stats = {}
        for what in ("self", "total"):
            for side, n in (("before", nb), ("after", na)):
                ssum = m[f"{what}_share_sum_{side}"].to_numpy(float)
                ssq = m[f"{what}_share_sq_{side}"].to_numpy(float)
                mean = ssum / n
                var = np.maximum(ssq - n * mean * mean, 0.0) / (n - 1)
                stats[what, side] = (mean, var)
        # the normalisation: expected after/before ratio of a function's mean share if its work did not change
        how = "reference" if self.requested in ("auto", "reference") else "total"
        s, vlog = 1.0, 0.0
        if how == "reference":
            mb, vb = stats["self", "before"]
            ma, va = stats["self", "after"]
            cb, ca = m["self_before"].to_numpy(float), m["self_after"].to_numpy(float)
            ok = ((mb > 0) & (ma > 0) & (cb >= MIN_REF * nb) & (ca >= MIN_REF * na)
                  & ~m["kind"].isin(_NO_REF_KINDS).to_numpy())
            if ok.sum() >= 3:
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = np.log(ma[ok] / mb[ok])
                    v = vb[ok] / (nb * mb[ok] ** 2) + va[ok] / (na * ma[ok] ** 2)
                s, vlog, alt = common_ratio(r, v, ma[ok] + mb[ok], slack=math.log(1.05), pairwise=True)
                if alt is not None:
                    self.warnings.append(
                        f"ambiguous reference: one group of functions changed by x{s:.3g}, another by x{alt:.3g}; "
                        "the captures cannot tell which group stayed the same, so changes of that size are not "
                        "flagged.")
            else:
                how = "total"
        self._norm = (how, s)

        out = m[KEY + ["kind"]].copy()
        for c in ("self_before", "self_after", "total_before", "total_after"):
            out[c] = m[c].to_numpy().astype(np.int64)
        cols, pvals, tvals = {}, [], []
        for what in ("self", "total"):
            mb, vb = stats[what, "before"]
            ma, va = stats[what, "after"]
            ma_n = ma / s
            vb_n, va_n = vb / nb, va / (na * s * s)
            var_d = vb_n + va_n + ma_n * ma_n * vlog
            d = ma_n - mb
            with np.errstate(divide="ignore", invalid="ignore"):
                den = vb_n ** 2 / (nb - 1) + va_n ** 2 / (na - 1)
                dfw = np.where(den > 0, (vb_n + va_n) ** 2 / np.where(den > 0, den, 1), nb + na - 2.0)
            dfw = np.clip(dfw, min(nb, na) - 1, nb + na - 2)
            se = np.sqrt(var_d)
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(se > 0, d / np.where(se > 0, se, 1), 0.0)
            pv = np.where(se > 0, t_two_sided_p(t, dfw), 1.0)
            half = t_quantile_975(dfw) * se
            cols[f"{what}_before_pct"] = 100 * mb
            cols[f"{what}_after_pct"] = 100 * ma_n
            cols[f"{what}_delta_pp"] = 100 * d
            cols[f"{what}_low_pp"] = 100 * (d - half)
            cols[f"{what}_high_pp"] = 100 * (d + half)
            with np.errstate(divide="ignore", invalid="ignore"):
                cols[f"{what}_change_pct"] = np.where(mb > 0, 100 * (ma_n / np.where(mb > 0, mb, 1) - 1),
                                                      np.where(ma > 0, np.inf, 0.0))
                cols[f"{what}_ratio"] = np.where(mb > 0, ma_n / np.where(mb > 0, mb, 1),
                                                 np.where(ma > 0, np.inf, 1.0))
            cols[f"{what}_after_share_pct"] = 100 * ma
            cols[f"{what}_before_sd_pct"] = 100 * np.sqrt(vb)
            cols[f"{what}_after_sd_pct"] = 100 * np.sqrt(va)
            cols[f"{what}_df"] = dfw
            cols[f"{what}_p"] = pv
            pvals.append(pv)
            tvals.append(t)
        # two tests per row (Bonferroni), one where self and total are the same observations (a
        # function that never calls another: its total is its self in every capture)
        same = np.ones(len(m), bool)
        for side in ("before", "after"):
            for c in ("share_sum", "share_sq"):
                same &= np.isclose(m[f"self_{c}_{side}"].to_numpy(float), m[f"total_{c}_{side}"].to_numpy(float),
                                   rtol=1e-12, atol=0.0)
        p_row = np.minimum(1.0, np.where(same, 1, 2) * np.minimum(pvals[0], pvals[1]))
        q = bh_adjust(p_row)
        sig = q <= self.alpha
        use_self = np.abs(tvals[0]) >= np.abs(tvals[1])
        tdir = np.where(use_self, tvals[0], tvals[1])
        status = np.where(out["total_before"].to_numpy() == 0, "new",
                          np.where(out["total_after"].to_numpy() == 0, "gone",
                                   np.where(~sig, "unchanged", np.where(tdir > 0, "slower", "faster"))))
        for k, v in cols.items():
            out[k] = v
        out["delta_pp"] = np.where(use_self, cols["self_delta_pp"], cols["total_delta_pp"])
        out["q"] = q
        out["captures_before"] = nb
        out["captures_after"] = na
        out = _arrange(out, sig, status, KEY)
        out.attrs.update(normalize=how, scale=s, method="welch", units=self.units, unit=self.unit_name)
        return out

    def describe(self) -> str:
        t = self.numbers()
        nb, na = self.units
        what = ("the largest group of functions whose mean share changed by one factor (taken as unchanged)"
                if self.normalize == "reference" else "shares of each capture's total")
        return (f"{self.labels[0]} ({nb} {self.unit_name}s) -> {self.labels[1]} ({na} {self.unit_name}s), "
                f"{len(t)} functions; each {self.unit_name} one observation of a function's share (Welch's t); "
                f"normalised by {what}, expected after/before = {self.scale:.3g}; {int(t['significant'].sum())} "
                f"changed beyond the variation between {self.unit_name}s (Benjamini-Hochberg, FDR "
                f"{100 * self.alpha:g} %)" + "".join(f"\nwarning: {w}" for w in self.warnings))

    def __repr__(self) -> str:
        t = self.numbers()
        nb, na = self.units
        return (f"<GroupDiff {nb} -> {na} {self.unit_name}s, {len(t)} functions, normalised by {self.normalize}, "
                f"{int(t['significant'].sum())} changed beyond noise>")
