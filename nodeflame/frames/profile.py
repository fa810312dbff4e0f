"""The Profile: four columnar tables and metadata.

=========  =======================  ==========================================
table      one row per              columns
=========  =======================  ==========================================
funcs      distinct function        name, file, line, column, kind, package
frames     distinct frame           func, line, column, tier, label
stacks     distinct stack prefix    prefix (-1 = root), frame, depth
samples    sample (or aggregate)    stack, time_ns, weight, thread
=========  =======================  ==========================================

Every table is a DataFrame whose index is its integer id (0..n-1); string
columns are ``category``.  Stacks are root-first prefix trees with parents
before children.  Lines and columns are 1-based, 0 meaning unknown.  A sample
row may stand for several identical samples (``weight``), as folded files do.

``frames.label`` is the text the source tool printed for the frame (perf's
``LazyCompile:*foo /app.js:3``, a folded line's frame); it lets folded and raw
output reproduce their input exactly.  It is '' when the reader had none.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .errors import InvariantError, NodeflameError
from .kinds import KINDS

FORMAT_VERSION = 1

FUNC_COLUMNS = ("name", "file", "line", "column", "kind", "package")
FRAME_COLUMNS = ("func", "line", "column", "tier", "label")
STACK_COLUMNS = ("prefix", "frame", "depth")
SAMPLE_COLUMNS = ("stack", "time_ns", "weight", "thread")
TIERS = ("", "interpreted", "baseline", "maglev", "optimized", "native", "inlined")

_I32 = np.int32
_I64 = np.int64


def _cat(values, categories=None) -> pd.Categorical:
    if isinstance(values, pd.Categorical) and categories is None:
        return values
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype) and categories is None:
        return values.array
    return pd.Categorical(values, categories=categories)


def _frame(columns: dict, n: int, copy: bool = True) -> pd.DataFrame:
    # copy=False (for fresh arrays only) also skips pandas' block consolidation, a copy
    df = pd.DataFrame(columns, index=pd.RangeIndex(n), copy=copy)
    return df


_CHUNK = 1 << 16   # rows validate() looks at at once in the samples table


def _nondecreasing(t) -> bool:
    """Whether ``t`` never decreases (checked a chunk at a time)."""
    n = len(t)
    for s in range(0, n, _CHUNK):
        seg = t[s:min(s + _CHUNK + 1, n)]
        if (seg[1:] < seg[:-1]).any():
            return False
    return True


def _decreases_within(codes, t) -> bool:
    """Whether ``t`` decreases somewhere within one value of ``codes`` (a thread): each chunk is ordered
    by code (stable) and checked within, and each code's first time in it against its last time before."""
    codes = np.asarray(codes)
    lo = int(codes.min())
    last = np.full(int(codes.max()) - lo + 1, np.iinfo(_I64).min, _I64)
    for s in range(0, len(t), _CHUNK):
        c = codes[s:s + _CHUNK].astype(_I64) - lo
        order = np.argsort(c, kind="stable")
        cs, ts = c[order], t[s:s + _CHUNK][order]
        same = cs[1:] == cs[:-1]
        if (same & (ts[1:] < ts[:-1])).any():
            return True
        first = np.flatnonzero(np.concatenate(([True], ~same)))
        if (ts[first] < last[cs[first]]).any():
            return True
        lastpos = np.concatenate((first[1:] - 1, [len(cs) - 1]))
        last[cs[lastpos]] = ts[lastpos]
    return False


def default_meta(**kw) -> dict:
    meta = {
        "format_version": FORMAT_VERSION,
        "source_format": None,
        "backend": None,
        "pid": None,
        "node_version": None,
        "start_time": None,
        "duration_ns": None,
        "period_ns": None,
        "unit": "samples",
        "timed": False,
        "command": None,
        "warnings": [],
        "transforms": [],
    }
    meta.update(kw)
    return meta


class Profile:
    """A profile: ``funcs``, ``frames``, ``stacks``, ``samples`` and ``meta``.

    Construct with :func:`nodeflame.frames.build.build_profile` or a reader;
    the constructor normalises dtypes and (by default) validates.

    A Profile is immutable once validated (by the constructor, or by calling :meth:`validate`):
    its tables, ``lines`` and ``meta`` cannot be replaced, since everything derived from them is
    cached.  A Profile with other samples, weights, metadata or stacks is a new Profile, made by
    :mod:`nodeflame.frames.ops` (``with_samples``, ``with_meta``, ``select_samples``,
    ``reweight``, ``aggregate``, ``compact``, ``replace_stacks``) or a transform.  Each Profile
    holds DataFrame objects of its own (shared data is copied on write by pandas), so an edit of
    one Profile's table in place never reaches another's; the arrays of :meth:`arrays` and
    pandas' ``to_numpy()`` views are read-only.  ``Profile(..., validate=False)`` builds a
    Profile that is not checked (nor frozen until :meth:`validate` is called): the way to make a
    deliberately broken one, in tests of the invariants.
    """

    _GUARDED = frozenset(("funcs", "frames", "stacks", "samples", "lines", "meta", "_cache"))

    def __init__(self, funcs: pd.DataFrame, frames: pd.DataFrame, stacks: pd.DataFrame,
                 samples: pd.DataFrame, meta: dict | None = None,
                 lines: pd.DataFrame | None = None, *, validate: bool = True, _adopt: bool = False):
        # _adopt (nodeflame.frames.build only): ``samples`` was made for this Profile and nobody else holds
        # it or its arrays; when its columns are already in their final dtypes it is taken as it is, not
        # copied (a long capture's samples table is most of its Profile)
        self.funcs = self._norm_funcs(funcs)
        self.frames = self._norm_frames(frames)
        self.stacks = self._norm_stacks(stacks)
        self.samples = samples if _adopt and self._is_normal_samples(samples) else self._norm_samples(samples)
        self.meta = default_meta()
        if meta:
            self.meta.update(copy.deepcopy(meta))
        self.lines = self._norm_lines(lines)
        self._cache: dict[str, Any] = {}
        if validate:
            self.validate()

    def __setattr__(self, name, value):
        if name in Profile._GUARDED and self.__dict__.get("_frozen"):
            raise AttributeError(
                f"cannot assign Profile.{name}: a validated Profile is immutable (its derived data is cached); "
                "make a new Profile with nodeflame.frames.ops (with_samples, with_meta, select_samples, "
                "reweight, aggregate, compact, replace_stacks)")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if name in Profile._GUARDED and self.__dict__.get("_frozen"):
            raise AttributeError(f"cannot delete Profile.{name}: a validated Profile is immutable")
        object.__delattr__(self, name)

    # ------------------------------------------------------------------ dtypes
    @staticmethod
    def _norm_funcs(df: pd.DataFrame) -> pd.DataFrame:
        n = len(df)
        out = _frame({
            "name": _cat(df["name"].astype(str) if not isinstance(df["name"].dtype, pd.CategoricalDtype) else df["name"]),
            "file": _cat(df["file"] if "file" in df else [""] * n),
            "line": np.asarray(df["line"] if "line" in df else np.zeros(n), _I32),
            "column": np.asarray(df["column"] if "column" in df else np.zeros(n), _I32),
            "kind": _cat(np.asarray(df["kind"] if "kind" in df else ["js"] * n, object), list(KINDS)),
            "package": _cat(df["package"] if "package" in df else [""] * n),
        }, n)
        for extra in df.columns:  # categorical extras stay categorical (as in frames)
            if extra not in out.columns:
                out[extra] = np.asarray(df[extra]) if not isinstance(df[extra].dtype, pd.CategoricalDtype) \
                    else df[extra].array
        return out

    @staticmethod
    def _norm_frames(df: pd.DataFrame) -> pd.DataFrame:
        n = len(df)
        out = _frame({
            "func": np.asarray(df["func"], _I32),
            "line": np.asarray(df["line"] if "line" in df else np.zeros(n), _I32),
            "column": np.asarray(df["column"] if "column" in df else np.zeros(n), _I32),
            "tier": _cat(df["tier"] if "tier" in df else [""] * n),
            "label": _cat(df["label"] if "label" in df else [""] * n),
        }, n)
        for extra in df.columns:  # e.g. gen_line/gen_column after source maps
            if extra not in out.columns:
                out[extra] = np.asarray(df[extra]) if not isinstance(df[extra].dtype, pd.CategoricalDtype) \
                    else df[extra].array
        return out

    @staticmethod
    def _norm_stacks(df: pd.DataFrame) -> pd.DataFrame:
        n = len(df)
        return _frame({  # np.array: fresh arrays, owned by the new table
            "prefix": np.array(df["prefix"], _I32),
            "frame": np.array(df["frame"], _I32),
            "depth": np.array(df["depth"], _I32),
        }, n, copy=False)

    @staticmethod
    def _is_normal_samples(df) -> bool:
        """Whether ``df`` is a samples table as _norm_samples makes one: its four columns in their dtypes,
        in order, nothing else, index 0..n-1."""
        return (isinstance(df, pd.DataFrame) and tuple(df.columns) == SAMPLE_COLUMNS
                and isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
                and tuple(str(t) for t in df.dtypes.iloc[:3]) == ("int32", "int64", "int64")
                and isinstance(df.dtypes.iloc[3], pd.CategoricalDtype))

    @staticmethod
    def _norm_samples(df: pd.DataFrame) -> pd.DataFrame:
        n = len(df)
        out = _frame({
            "stack": np.asarray(df["stack"], _I32),
            "time_ns": np.asarray(df["time_ns"] if "time_ns" in df else np.zeros(n), _I64),
            "weight": np.asarray(df["weight"] if "weight" in df else np.ones(n), _I64),
            "thread": _cat(df["thread"] if "thread" in df else ["main"] * n),
        }, n)
        for extra in df.columns:  # categorical extras stay categorical (as in frames)
            if extra not in out.columns:
                out[extra] = np.asarray(df[extra]) if not isinstance(df[extra].dtype, pd.CategoricalDtype) \
                    else df[extra].array
        return out

    @staticmethod
    def _norm_lines(df):
        if df is None:
            return pd.DataFrame({"stack": np.empty(0, _I32), "line": np.empty(0, _I32),
                                 "ticks": np.empty(0, _I64)})
        return pd.DataFrame({"stack": np.asarray(df["stack"], _I32),
                             "line": np.asarray(df["line"], _I32),
                             "ticks": np.asarray(df["ticks"], _I64)}).reset_index(drop=True)

    # -------------------------------------------------------------- invariants
    def validate(self) -> "Profile":
        """Check every invariant of the model; raise InvariantError naming the first broken one.

        - each table's index is 0..n-1;
        - funcs: kind is one of KINDS, line/column >= 0, (name, file, line,
          column, kind) unique;
        - frames: func in range, line/column >= 0, (func, line, column, tier,
          label) unique;
        - stacks: frame in range, -1 <= prefix < own id (parents first),
          depth = depth(prefix) + 1 (0 at roots), (prefix, frame) unique;
        - samples: stack in range, weight >= 0; when ``meta['timed']``,
          time_ns is non-decreasing within each thread;
        - lines: stack in range, line >= 1, ticks >= 0.
        """
        def fail(msg):
            raise InvariantError(msg)

        for name in ("funcs", "frames", "stacks", "samples"):
            df = getattr(self, name)
            if not df.index.equals(pd.RangeIndex(len(df))):
                fail(f"{name}: index is not 0..{len(df) - 1}")
        f, fr, st, sa = self.funcs, self.frames, self.stacks, self.samples
        nf, nfr, nst = len(f), len(fr), len(st)
        if f["kind"].isna().any():
            fail(f"funcs: kind not one of {KINDS}")
        for col in ("line", "column"):
            if (f[col].to_numpy() < 0).any():
                fail(f"funcs.{col} negative")
            if (fr[col].to_numpy() < 0).any():
                fail(f"frames.{col} negative")
        if f.duplicated(["name", "file", "line", "column", "kind"]).any():
            fail("funcs: duplicate (name, file, line, column, kind)")
        fu = fr["func"].to_numpy()
        if nfr and (fu.min() < 0 or fu.max() >= nf):
            fail("frames.func out of range")
        if fr.duplicated(["func", "line", "column", "tier", "label"]).any():
            fail("frames: duplicate (func, line, column, tier, label)")
        pre = st["prefix"].to_numpy().astype(_I64)
        sfr = st["frame"].to_numpy()
        dep = st["depth"].to_numpy()
        if nst:
            if sfr.min() < 0 or sfr.max() >= nfr:
                fail("stacks.frame out of range")
            ids = np.arange(nst)
            if (pre < -1).any() or (pre >= ids).any():
                fail("stacks.prefix must be -1 or an earlier stack (parents before children)")
            want = np.where(pre >= 0, dep[np.maximum(pre, 0)] + 1, 0)
            if not np.array_equal(want, dep):
                fail("stacks.depth != depth(prefix) + 1")
            key = (pre + 1) * (nfr + 1) + sfr
            if nst > 1 and (np.diff(np.sort(key)) == 0).any():  # np.sort: np.unique is slow in numpy 2.4
                fail("stacks: duplicate (prefix, frame)")
        s = sa["stack"].to_numpy()
        if len(s) and (s.min() < 0 or s.max() >= nst):
            fail("samples.stack out of range")
        w = sa["weight"].to_numpy()
        if len(w) and w.min() < 0:
            fail("samples.weight negative")
        if self.meta.get("timed") and len(sa):
            # a chunk at a time, no full-size temporary: what a long capture's Profile costs to check
            t = sa["time_ns"].to_numpy()
            if not _nondecreasing(t) and _decreases_within(sa["thread"].cat.codes.to_numpy(), t):
                fail("samples.time_ns decreases within a thread")
        if len(self.lines):
            ls = self.lines["stack"].to_numpy()
            if ls.min() < 0 or ls.max() >= nst:
                fail("lines.stack out of range")
            if (self.lines["line"].to_numpy() < 1).any() or (self.lines["ticks"].to_numpy() < 0).any():
                fail("lines: line must be >= 1 and ticks >= 0")
        object.__setattr__(self, "_frozen", True)
        return self

    # ---------------------------------------------------------------- basics
    def __repr__(self) -> str:
        src = self.meta.get("backend") or self.meta.get("source_format") or "?"
        return (f"<Profile {self.total:,} {self.meta.get('unit', 'samples')} in {len(self.samples):,} rows, "
                f"{len(self.stacks):,} stacks, {len(self.funcs):,} functions, from {src}>")

    def _repr_html_(self) -> str:
        import html
        head = html.escape(repr(self))
        top = self.top(15)[["self", "self_pct", "total", "total_pct", "kind", "name", "file", "line"]]
        return f"<p><code>{head}</code></p>" + top.to_html(float_format=lambda x: f"{x:.1f}")

    @property
    def total(self) -> int:
        """Sum of sample weights."""
        return int(self.samples["weight"].sum())

    @property
    def threads(self) -> list[str]:
        return [str(t) for t in self.samples["thread"].cat.categories if (self.samples["thread"] == t).any()]

    def copy(self) -> "Profile":
        """A deep copy (tables and metadata), validated (frozen) when this one is."""
        q = Profile(self.funcs.copy(), self.frames.copy(), self.stacks.copy(),
                    self.samples.copy(), copy.deepcopy(self.meta), self.lines.copy(), validate=False)
        if self.__dict__.get("_frozen"):
            object.__setattr__(q, "_frozen", True)
        return q

    def arrays(self) -> dict:
        """Cached numpy arrays every derived computation uses: ``prefix``, ``frame``, ``depth`` (per
        stack), ``frame_func`` (per frame) and ``stack_func`` (per stack), all int64.  Shared by every
        caller: read them, never write them (they are marked read-only)."""
        c = self._cache.get("arrays")
        if c is None:
            st, fr = self.stacks, self.frames
            c = {
                "prefix": st["prefix"].to_numpy().astype(_I64),
                "frame": st["frame"].to_numpy().astype(_I64),
                "depth": st["depth"].to_numpy().astype(_I64),
                "frame_func": fr["func"].to_numpy().astype(_I64),
            }
            c["stack_func"] = c["frame_func"][c["frame"]] if len(c["frame"]) else np.empty(0, _I64)
            for a in c.values():
                a.flags.writeable = False
            self._cache["arrays"] = c
        return c

    def stack_weights(self) -> np.ndarray:
        """Self weight of every stack (sum of the weights of samples whose leaf it is)."""
        w = self._cache.get("stack_weights")
        if w is None:
            w = np.bincount(self.samples["stack"].to_numpy(), weights=self.samples["weight"].to_numpy(),
                            minlength=len(self.stacks)).astype(_I64)
            self._cache["stack_weights"] = w
        return w

    def func_labels(self) -> np.ndarray:
        """Display name of each function: ``name file:line`` (name alone when no file)."""
        lab = self._cache.get("func_labels")
        if lab is None:
            f = self.funcs
            names = f["name"].astype(str).to_numpy(object)
            names = np.where(names == "", "(anonymous)", names)
            files = f["file"].astype(str).to_numpy(object)
            lines = f["line"].to_numpy()
            lab = np.empty(len(f), dtype=object)
            for i in range(len(f)):  # one entry per distinct function, not per sample
                if files[i]:
                    lab[i] = f"{names[i]} {files[i]}:{lines[i]}" if lines[i] else f"{names[i]} {files[i]}"
                else:
                    lab[i] = names[i]
            self._cache["func_labels"] = lab
        return lab

    def frame_labels(self) -> np.ndarray:
        """Text of each frame for folded/raw output: its label, else its function's display name."""
        lab = self._cache.get("frame_labels")
        if lab is None:
            fl = self.frames["label"].astype(str).to_numpy(object)
            fn = self.func_labels()[self.frames["func"].to_numpy()] if len(self.frames) else np.empty(0, object)
            lab = np.where(fl != "", fl, fn)
            self._cache["frame_labels"] = lab
        return lab

    # ------------------------------------------------------------- derived
    def long(self) -> pd.DataFrame:
        """One row per (sample, depth): the frames of every sample, root first.

        Columns: sample, depth, stack, frame, func, name, file, line, kind,
        package, thread, time_ns, weight.  Computed on demand.
        """
        from .views import long_view
        return long_view(self)

    def tree(self, inverted: bool = False) -> pd.DataFrame:
        """Call tree by function: top-down, or bottom-up when ``inverted``.

        One row per node with parent, depth, func, name, self, total."""
        from .views import call_tree
        return call_tree(self, inverted=inverted)

    def top(self, n: int | None = 20, by: str = "self") -> pd.DataFrame:
        """Self and total per function (recursion counted once per sample), heaviest first."""
        from .views import top
        return top(self, n=n, by=by)

    def text(self, **options) -> str:
        """torch's text tree (see nodeflame.writers.text)."""
        from .formats import render
        return render(self, "text", **options)

    def write(self, path, format: str | None = None, **options) -> None:
        """Write to ``path`` (or a file object) in a format taken from the extension."""
        from .formats import write
        write(self, path, format=format, **options)

    def flame(self, **options):
        """Interactive flame/icicle explorer for Jupyter (needs ``nodeflame[notebook]``)."""
        from .formats import lazy_module
        return lazy_module("widgets").explorer(self, **options)

    # ----------------------------------------------------------- transforms
    def apply(self, transforms) -> "Profile":
        """Apply a transform, its string form, or a list of either, in order."""
        from .transforms import apply
        return apply(self, transforms)

    def focus(self, pattern: str) -> "Profile":
        return self.apply(("focus", pattern))

    def ignore(self, pattern: str) -> "Profile":
        return self.apply(("ignore", pattern))

    def hide(self, pattern: str) -> "Profile":
        return self.apply(("hide", pattern))

    def merge_recursion(self) -> "Profile":
        return self.apply(("merge-recursion", ""))

    def slice(self, start_ns: int | None = None, end_ns: int | None = None) -> "Profile":
        return self.apply(("slice", f"{'' if start_ns is None else start_ns}:{'' if end_ns is None else end_ns}"))

    def thread(self, pattern: str) -> "Profile":
        return self.apply(("thread", pattern))

    def with_source_maps(self, search=None, *, root: str | None = None) -> "Profile":
        """A new Profile with JS frames shown in their original source (TypeScript, unbundled files).

        Maps are found like Node's ``--enable-source-maps``: the generated file's
        ``//# sourceMappingURL=`` (relative, absolute or inline ``data:``), else ``FILE.map``
        beside it; ``search`` adds directories (searched recursively) for profiles read on
        another machine; ``root`` prefixes paths read (``/proc/PID/root``).  Generated
        positions stay in ``funcs.gen_*`` and ``frames.gen_line/gen_column``; ``meta['source_maps']``
        lists the maps applied; missing or broken maps become ``meta['warnings']``."""
        from .remap import apply_source_maps
        return apply_source_maps(self, search=search, root=root)

    def hot_lines(self, func=None) -> pd.DataFrame:
        """Self and total ticks per source line (file, line, self, total, share), hottest first,
        from the frames' executing lines and the ``lines`` table (see nodeflame.frames.hotlines).
        ``func``: a function id, or a regular expression matched against function labels."""
        from .hotlines import hot_lines
        return hot_lines(self, func)

    def compact(self) -> "Profile":
        """Drop funcs, frames and stacks no sample uses; renumber."""
        from .ops import compact
        return compact(self)
