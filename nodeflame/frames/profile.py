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

A Profile holds its tables in numpy form (columns as arrays, a categorical column as its codes and
categories: :class:`Coded`) and makes each DataFrame on its first access, so that a command that
never looks at a table as a DataFrame (``nodeflame convert`` of folded stacks to SVG or folded)
never imports pandas.  :meth:`Profile.arrays` gives the numpy form; the DataFrames view the same
data (pandas copies on write).
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .errors import InvariantError
from .kinds import KINDS

FORMAT_VERSION = 1

FUNC_COLUMNS = ("name", "file", "line", "column", "kind", "package")
FRAME_COLUMNS = ("func", "line", "column", "tier", "label")
STACK_COLUMNS = ("prefix", "frame", "depth")
SAMPLE_COLUMNS = ("stack", "time_ns", "weight", "thread")
TIERS = ("", "interpreted", "baseline", "maglev", "optimized", "native", "inlined")

_I32 = np.int32
_I64 = np.int64


def _cat(values, categories=None):
    import pandas as pd
    if isinstance(values, pd.Categorical) and categories is None:
        return values
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype) and categories is None:
        return values.array
    return pd.Categorical(values, categories=categories)


def _frame(columns: dict, n: int, copy: bool = True):
    import pandas as pd
    # copy=False (for fresh arrays only) also skips pandas' block consolidation, a copy
    df = pd.DataFrame(columns, index=pd.RangeIndex(n), copy=copy)
    return df


class Coded:
    """A categorical column in numpy form: ``codes`` (an integer array, -1 for a missing value) into
    ``categories`` (an object array of distinct values).  ``dtype``: pandas' CategoricalDtype when the
    column came from a DataFrame (its DataFrame column is made with it), else None (the categories
    are then those ``pd.Categorical`` gives the values: sorted, or the given list for ``kind``)."""

    def __init__(self, codes, categories, dtype=None):
        self.codes = codes
        self.categories = categories
        self.dtype = dtype

    def __len__(self):
        return len(self.codes)

    def strings(self) -> np.ndarray:
        """The values as an object array of str (a missing value is 'nan', as ``astype(str)`` writes it)."""
        cats = np.empty(len(self.categories) + 1, dtype=object)
        cats[:-1] = [str(c) for c in self.categories]
        cats[-1] = "nan"
        return cats[self.codes]

    def categorical(self):
        import pandas as pd
        if self.dtype is not None:
            return pd.Categorical.from_codes(self.codes, dtype=self.dtype, validate=False)
        if not len(self.categories) and not len(self.codes):
            return pd.Categorical([])
        return pd.Categorical.from_codes(self.codes, categories=self.categories, validate=False)


def strings(col) -> np.ndarray:
    """A column of :meth:`Profile.arrays` (an array or a :class:`Coded`) as an object array of str,
    as pandas' ``astype(str)`` writes its values."""
    if isinstance(col, Coded):
        return col.strings()
    out = np.empty(len(col), dtype=object)
    out[:] = [str(x) for x in np.asarray(col, dtype=object).tolist()]
    return out


def _code_dtype(ncats: int):
    """The codes' dtype pandas gives ``ncats`` categories."""
    for t in (np.int8, np.int16, np.int32):
        if ncats < np.iinfo(t).max:
            return t
    return np.int64


def coded(values, categories=None) -> Coded:
    """``pd.Categorical(values, categories)`` in numpy form: a list (or object array) of str is coded
    with a dict (categories sorted, as pandas sorts str); anything else by pandas."""
    if not isinstance(values, (list, tuple)):
        values = list(values) if not isinstance(values, np.ndarray) else values.tolist()
    if all(type(v) is str for v in values) and \
            (categories is None or all(type(c) is str for c in categories)):
        cats = sorted(set(values)) if categories is None else list(categories)
        lut = {c: i for i, c in enumerate(cats)}
        get = lut.get
        codes = np.fromiter((get(v, -1) for v in values), _code_dtype(len(cats)), len(values))
        arr = np.empty(len(cats), dtype=object)
        arr[:] = cats
        return Coded(codes, arr)
    import pandas as pd
    c = pd.Categorical(values, categories=categories)
    return Coded(c.codes, c.categories.to_numpy(object), c.dtype)


class _Table:
    """One table of a Profile: its numpy columns (name -> array or Coded, in order) and ``n`` rows,
    or its DataFrame (given, or made from the columns on first access), or both."""

    def __init__(self, n: int, cols: dict | None = None, df=None):
        self.n, self.cols, self.df = n, cols, df

    @classmethod
    def of_df(cls, df) -> "_Table":
        return cls(len(df), None, df)

    def col(self, name: str):
        """A column in numpy form (read-only).  A column added to the DataFrame after it was made (a
        reader's extra column, e.g. pprof's ``count``) is taken from the DataFrame."""
        if self.cols is not None and (name in self.cols or self.df is None):
            return self.cols[name]
        import pandas as pd
        s = self.df[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            return Coded(s.cat.codes.to_numpy(), s.cat.categories.to_numpy(object), s.dtype)
        return s.to_numpy()

    def names(self) -> list:
        if self.cols is None:
            return list(self.df.columns)
        return list(self.cols) + ([c for c in self.df.columns if c not in self.cols] if self.df is not None else [])

    def lean(self) -> "_Table":
        """This table without a DataFrame that only views its columns (what is pickled)."""
        if self.cols is not None and (self.df is None or list(self.df.columns) == list(self.cols)):
            return _Table(self.n, self.cols)
        return self

    def frame(self):
        if self.df is None:
            import pandas as pd
            data = {k: (v.categorical() if isinstance(v, Coded) else v) for k, v in self.cols.items()}
            self.df = pd.DataFrame(data, index=pd.RangeIndex(self.n), copy=False)
        return self.df


def _readonly(cols: dict) -> dict:
    for v in cols.values():
        a = v.codes if isinstance(v, Coded) else v
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return cols


def _table_property(name: str):
    def get(self):
        return self._t[name].frame()

    def set(self, df):
        # an unvalidated Profile's table replaced (Profile.__setattr__ refuses it once validated)
        self.__dict__.setdefault("_t", {})[name] = _Table.of_df(df)
    return property(get, set, doc=f"The {name} table as a DataFrame (made on first access).")


def _int_key_dups(parts: list) -> bool:
    """Whether two rows of the integer columns ``parts`` are equal."""
    n = len(parts[0]) if parts else 0
    if n < 2:
        return False
    key = np.zeros(n, np.int64)
    span = 1
    for a in parts:
        a = np.asarray(a)
        lo, hi = int(a.min()), int(a.max())
        w = hi - lo + 1
        if span * w >= 1 << 62:
            break
        key = key * w + (a.astype(np.int64) - lo)
        span *= w
    else:
        return bool((np.diff(np.sort(key)) == 0).any())   # np.sort: np.unique is slow in numpy 2.4
    order = np.lexsort([np.asarray(a) for a in reversed(parts)])
    same = np.ones(n - 1, bool)
    for a in parts:
        s = np.asarray(a)[order]
        same &= s[1:] == s[:-1]
    return bool(same.any())


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

    The tables are kept in numpy form (see the module docstring); each DataFrame is made on its
    first access, viewing the same arrays.  :meth:`from_arrays` makes a Profile of numpy tables
    without pandas.  The numpy form is what the Profile's own answers (``total``, :meth:`arrays`,
    the writers) read: a column replaced in a DataFrame obtained from it (``p.samples["weight"] =
    ...``) changes that DataFrame only, not the Profile; make a new Profile with :mod:`.ops`.
    """

    _GUARDED = frozenset(("funcs", "frames", "stacks", "samples", "lines", "meta", "_cache", "_t"))

    funcs = _table_property("funcs")
    frames = _table_property("frames")
    stacks = _table_property("stacks")
    samples = _table_property("samples")
    lines = _table_property("lines")

    def __init__(self, funcs, frames, stacks, samples, meta: dict | None = None, lines=None, *,
                 validate: bool = True, _adopt: bool = False):
        # _adopt (nodeflame.frames.build only): ``samples`` was made for this Profile and nobody else holds
        # it or its arrays; when its columns are already in their final dtypes it is taken as it is, not
        # copied (a long capture's samples table is most of its Profile)
        t = {
            "funcs": self._norm_funcs(funcs),
            "frames": self._norm_frames(frames),
            "stacks": self._norm_stacks(stacks),
            "samples": samples if _adopt and self._is_normal_samples(samples) else self._norm_samples(samples),
        }
        md = default_meta()
        if meta:
            md.update(copy.deepcopy(meta))
        t["lines"] = self._norm_lines(lines)
        self._init({k: _Table.of_df(v) for k, v in t.items()}, md, validate)

    def _init(self, tables: dict, meta: dict, validate: bool) -> None:
        object.__setattr__(self, "_t", tables)
        self.meta = meta
        self._cache: dict[str, Any] = {}
        if validate:
            self.validate()

    @classmethod
    def from_arrays(cls, funcs: dict, frames: dict, stacks: dict, samples: dict, meta: dict | None = None,
                    lines: dict | None = None, *, validate: bool = True) -> "Profile":
        """A Profile of tables in numpy form: each a dict of column name -> array, a categorical column
        (funcs' name, file, kind, package; frames' tier, label; samples' thread) a :class:`Coded` or
        the values (coded as ``pd.Categorical`` codes them).  The columns are those of the
        constructor (missing optional ones filled the same way); the arrays are taken, not copied,
        where they are in their dtypes already (the caller hands them over) and made read-only.  The
        DataFrames are made when first asked for, equal to what the constructor makes of the same
        columns."""
        def num(d, k, n, dtype, fill=0):
            v = d.get(k)
            return np.full(n, fill, dtype) if v is None else np.asarray(v, dtype)

        def cat(d, k, n, fill, categories=None):
            v = d.get(k)
            if v is None:
                v = [fill] * n
            if isinstance(v, Coded):
                if categories is None or (v.dtype is None and list(v.categories) == list(categories)):
                    return v
                v = v.strings() if (np.asarray(v.codes) >= 0).all() else v.categorical()
            return coded(v, categories)

        def length(d, k):
            v = d[k]
            return len(v)
        nf, nfr, nst, ns = length(funcs, "name"), length(frames, "func"), length(stacks, "frame"), \
            length(samples, "stack")
        fu = {"name": cat(funcs, "name", nf, ""), "file": cat(funcs, "file", nf, ""),
              "line": num(funcs, "line", nf, _I32), "column": num(funcs, "column", nf, _I32),
              "kind": cat(funcs, "kind", nf, "js", list(KINDS)), "package": cat(funcs, "package", nf, "")}
        fr = {"func": num(frames, "func", nfr, _I32), "line": num(frames, "line", nfr, _I32),
              "column": num(frames, "column", nfr, _I32), "tier": cat(frames, "tier", nfr, ""),
              "label": cat(frames, "label", nfr, "")}
        st = {k: np.asarray(stacks[k], _I32) for k in STACK_COLUMNS}
        sa = {"stack": num(samples, "stack", ns, _I32), "time_ns": num(samples, "time_ns", ns, _I64),
              "weight": num(samples, "weight", ns, _I64, 1), "thread": cat(samples, "thread", ns, "main")}
        for src, dst in ((funcs, fu), (frames, fr), (samples, sa)):
            for k, v in src.items():
                if k not in dst:
                    dst[k] = v if isinstance(v, Coded) else np.asarray(v)
        if lines is None:
            li = {"stack": np.empty(0, _I32), "line": np.empty(0, _I32), "ticks": np.empty(0, _I64)}
        else:
            li = {"stack": np.asarray(lines["stack"], _I32), "line": np.asarray(lines["line"], _I32),
                  "ticks": np.asarray(lines["ticks"], _I64)}
        md = default_meta()
        if meta:
            md.update(copy.deepcopy(meta))
        q = cls.__new__(cls)
        q._init({"funcs": _Table(nf, _readonly(fu)), "frames": _Table(nfr, _readonly(fr)),
                 "stacks": _Table(nst, _readonly(st)), "samples": _Table(ns, _readonly(sa)),
                 "lines": _Table(len(li["stack"]), _readonly(li))}, md, validate)
        return q

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

    def __getstate__(self):
        # the numpy form is what a Profile is; a DataFrame made from it is made again after unpickling
        state = dict(self.__dict__)
        state["_t"] = {k: t.lean() for k, t in state["_t"].items()}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for t in self._t.values():
            if t.cols is not None:
                _readonly(t.cols)

    # --------------------------------------------------------------- numpy form
    def _col(self, table: str, name: str):
        return self._t[table].col(name)

    def _nrows(self, table: str) -> int:
        return self._t[table].n

    def _strings(self, table: str, name: str) -> np.ndarray:
        """A column's values as an object array of str (``astype(str)``)."""
        v = self._col(table, name)
        if isinstance(v, Coded):
            return v.strings()
        return getattr(self, table)[name].astype(str).to_numpy(object)

    # ------------------------------------------------------------------ dtypes
    @staticmethod
    def _norm_funcs(df):
        import pandas as pd
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
    def _norm_frames(df):
        import pandas as pd
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
    def _norm_stacks(df):
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
        import pandas as pd
        return (isinstance(df, pd.DataFrame) and tuple(df.columns) == SAMPLE_COLUMNS
                and isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
                and tuple(str(t) for t in df.dtypes.iloc[:3]) == ("int32", "int64", "int64")
                and isinstance(df.dtypes.iloc[3], pd.CategoricalDtype))

    @staticmethod
    def _norm_samples(df):
        import pandas as pd
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
        import pandas as pd
        if df is None:
            return pd.DataFrame({"stack": np.empty(0, _I32), "line": np.empty(0, _I32),
                                 "ticks": np.empty(0, _I64)})
        return pd.DataFrame({"stack": np.asarray(df["stack"], _I32),
                             "line": np.asarray(df["line"], _I32),
                             "ticks": np.asarray(df["ticks"], _I64)}).reset_index(drop=True)

    # -------------------------------------------------------------- invariants
    def _duplicated(self, table: str, cols: tuple) -> bool:
        """Whether two rows agree in ``cols`` (``DataFrame.duplicated(cols).any()``), on codes and integers."""
        t = self._t[table]
        parts = []
        for c in cols:
            v = t.col(c)
            if isinstance(v, Coded):
                parts.append(v.codes)
            elif isinstance(v, np.ndarray) and v.dtype.kind in "iub":
                parts.append(v)
            else:  # a column not in its dtype (a table assigned before validate()): pandas judges
                return bool(t.frame().duplicated(list(cols)).any())
        return _int_key_dups(parts)

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
            df = self._t[name].df   # a table made from arrays has 0..n-1 by construction
            if df is not None:
                import pandas as pd
                if not df.index.equals(pd.RangeIndex(len(df))):
                    fail(f"{name}: index is not 0..{len(df) - 1}")
        col = self._col
        nf, nfr, nst = self._nrows("funcs"), self._nrows("frames"), self._nrows("stacks")
        kind = col("funcs", "kind")
        if (kind.codes < 0).any() if isinstance(kind, Coded) else self.funcs["kind"].isna().any():
            fail(f"funcs: kind not one of {KINDS}")
        for c in ("line", "column"):
            if (np.asarray(col("funcs", c)) < 0).any():
                fail(f"funcs.{c} negative")
            if (np.asarray(col("frames", c)) < 0).any():
                fail(f"frames.{c} negative")
        if self._duplicated("funcs", ("name", "file", "line", "column", "kind")):
            fail("funcs: duplicate (name, file, line, column, kind)")
        fu = np.asarray(col("frames", "func"))
        if nfr and (fu.min() < 0 or fu.max() >= nf):
            fail("frames.func out of range")
        if self._duplicated("frames", ("func", "line", "column", "tier", "label")):
            fail("frames: duplicate (func, line, column, tier, label)")
        pre = np.asarray(col("stacks", "prefix"))
        sfr = np.asarray(col("stacks", "frame"))
        dep = np.asarray(col("stacks", "depth"))
        if nst:
            if sfr.min() < 0 or sfr.max() >= nfr:
                fail("stacks.frame out of range")
            # a chunk at a time (the checks in the same order): no full-size temporaries but the key
            for s in range(0, nst, _CHUNK):
                p = pre[s:s + _CHUNK].astype(_I64)
                if (p < -1).any() or (p >= np.arange(s, s + len(p))).any():
                    fail("stacks.prefix must be -1 or an earlier stack (parents before children)")
            key = np.empty(nst, np.result_type(_I64, sfr.dtype))
            for s in range(0, nst, _CHUNK):
                p = pre[s:s + _CHUNK].astype(_I64)
                want = np.where(p >= 0, dep[np.maximum(p, 0)] + 1, 0)
                if not np.array_equal(want, dep[s:s + _CHUNK]):
                    fail("stacks.depth != depth(prefix) + 1")
                key[s:s + _CHUNK] = (p + 1) * (nfr + 1) + sfr[s:s + _CHUNK]
            # sorted in place by timsort ("stable"): a stack table's keys come in long runs (a tree's
            # chains, or a level's sorted keys), which it merges in a fraction of quicksort's time
            key.sort(kind="stable")
            if nst > 1 and (key[1:] == key[:-1]).any():
                fail("stacks: duplicate (prefix, frame)")
        s = np.asarray(col("samples", "stack"))
        if len(s) and (s.min() < 0 or s.max() >= nst):
            fail("samples.stack out of range")
        w = np.asarray(col("samples", "weight"))
        if len(w) and w.min() < 0:
            fail("samples.weight negative")
        if self.meta.get("timed") and len(s):
            # a chunk at a time, no full-size temporary: what a long capture's Profile costs to check
            t = np.asarray(col("samples", "time_ns"))
            if not _nondecreasing(t):
                th = col("samples", "thread")
                codes = th.codes if isinstance(th, Coded) else self.samples["thread"].cat.codes.to_numpy()
                if _decreases_within(codes, t):
                    fail("samples.time_ns decreases within a thread")
        if self._nrows("lines"):
            ls = np.asarray(col("lines", "stack"))
            if ls.min() < 0 or ls.max() >= nst:
                fail("lines.stack out of range")
            if (np.asarray(col("lines", "line")) < 1).any() or (np.asarray(col("lines", "ticks")) < 0).any():
                fail("lines: line must be >= 1 and ticks >= 0")
        object.__setattr__(self, "_frozen", True)
        return self

    # ---------------------------------------------------------------- basics
    def __repr__(self) -> str:
        src = self.meta.get("backend") or self.meta.get("source_format") or "?"
        return (f"<Profile {self.total:,} {self.meta.get('unit', 'samples')} in {self._nrows('samples'):,} rows, "
                f"{self._nrows('stacks'):,} stacks, {self._nrows('funcs'):,} functions, from {src}>")

    def _repr_html_(self) -> str:
        import html
        head = html.escape(repr(self))
        top = self.top(15)[["self", "self_pct", "total", "total_pct", "kind", "name", "file", "line"]]
        return f"<p><code>{head}</code></p>" + top.to_html(float_format=lambda x: f"{x:.1f}")

    @property
    def total(self) -> int:
        """Sum of sample weights."""
        w = self._col("samples", "weight")
        return int(w.sum()) if isinstance(w, np.ndarray) and w.dtype.kind in "iu" else int(self.samples["weight"].sum())

    @property
    def threads(self) -> list[str]:
        th = self._col("samples", "thread")
        if isinstance(th, Coded):
            c = np.asarray(th.codes)
            used = np.bincount(c[c >= 0].astype(_I64), minlength=len(th.categories)) > 0
            return [str(t) for t, u in zip(th.categories.tolist(), used.tolist()) if u]
        return [str(t) for t in self.samples["thread"].cat.categories if (self.samples["thread"] == t).any()]

    def copy(self) -> "Profile":
        """A deep copy (tables and metadata), validated (frozen) when this one is."""
        q = Profile(self.funcs.copy(), self.frames.copy(), self.stacks.copy(),
                    self.samples.copy(), copy.deepcopy(self.meta), self.lines.copy(), validate=False)
        if self.__dict__.get("_frozen"):
            object.__setattr__(q, "_frozen", True)
        return q

    def arrays(self, table: str | None = None) -> dict:
        """Cached numpy arrays every derived computation uses: ``prefix``, ``frame``, ``depth`` (per
        stack), ``frame_func`` (per frame) and ``stack_func`` (per stack), all int64.  Shared by every
        caller: read them, never write them (they are marked read-only).

        ``arrays(table)`` (``"funcs"``, ``"frames"``, ``"stacks"``, ``"samples"`` or ``"lines"``):
        that table's columns in numpy form, column name -> array in the table's dtype, a categorical
        column as a :class:`Coded` (codes and categories), without making the DataFrame."""
        if table is not None:
            t = self._t[table]
            return {k: t.col(k) for k in t.names()}
        c = self._cache.get("arrays")
        if c is None:
            col = self._col
            c = {
                "prefix": np.asarray(col("stacks", "prefix")).astype(_I64),
                "frame": np.asarray(col("stacks", "frame")).astype(_I64),
                "depth": np.asarray(col("stacks", "depth")).astype(_I64),
                "frame_func": np.asarray(col("frames", "func")).astype(_I64),
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
            w = np.bincount(np.asarray(self._col("samples", "stack")),
                            weights=np.asarray(self._col("samples", "weight")),
                            minlength=self._nrows("stacks")).astype(_I64)
            self._cache["stack_weights"] = w
        return w

    def func_labels(self) -> np.ndarray:
        """Display name of each function: ``name file:line`` (name alone when no file)."""
        lab = self._cache.get("func_labels")
        if lab is None:
            n = self._nrows("funcs")
            names = self._strings("funcs", "name")
            names = np.where(names == "", "(anonymous)", names)
            files = self._strings("funcs", "file")
            lines = np.asarray(self._col("funcs", "line"))
            lab = np.empty(n, dtype=object)
            for i in range(n):  # one entry per distinct function, not per sample
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
            fl = self._strings("frames", "label")
            fn = self.func_labels()[np.asarray(self._col("frames", "func"))] if self._nrows("frames") \
                else np.empty(0, object)
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
