"""``Dataset``: add captures, list them, get Profiles back, and ask questions through an engine."""
from __future__ import annotations

import json
import math
import re
import threading
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..frames.profile import Profile, default_meta
from . import store as _st
from .store import DatasetError, Store

ENGINES = ("duckdb", "dask")
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.I)
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_seconds(value) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"``, ``"2w"`` -> seconds."""
    if isinstance(value, (int, float)):
        s = float(value)
    else:
        m = _EVERY.match(str(value))
        if not m:
            raise DatasetError(f"not a length of time: {value!r} (use e.g. 90s, 15m, 1h, 7d)")
        s = float(m.group(1)) * _UNITS[(m.group(2) or "").lower() or None]
    if not (s > 0 and math.isfinite(s)):
        raise DatasetError(f"a length of time must be positive, got {value!r}")
    return s


def dataset(path, *, engine: str = "duckdb", client=None, partition_by=None) -> "Dataset":
    """Open (or, on the first ``add``, create) the dataset at ``path``: a directory or fsspec URL."""
    return Dataset(path, engine=engine, client=client, partition_by=partition_by)


class Dataset:
    """Captures with labels as Parquet under one directory; see nodeflame/dataset/store.py for the layout.

    ``engine``: ``"duckdb"`` (default, embedded) or ``"dask"`` (``client``: a
    ``dask.distributed.Client``; None: Dask's default scheduler).  Both give the same answers.
    ``partition_by``: the label names in the directory layout; default: those of the first
    capture added (kept in ``dataset.json``).
    """

    def __init__(self, path, *, engine: str = "duckdb", client=None, partition_by=None):
        if engine not in ENGINES:
            raise DatasetError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.store = Store(path)
        self.path = self.store.url
        self.engine = "dask" if client is not None else engine
        self.client = client
        self._partition_by = list(partition_by) if partition_by is not None else None
        self._rows: dict[str, pd.DataFrame] = {}   # captures file -> its row (cache)
        self._concat = None                         # all of them as one table (cache)
        self._view_cache = None                     # (that table, its view)
        self._lock = threading.Lock()
        self._cleaned = False
        self._manifest = _st.read_manifest(self.store)

    def __repr__(self):
        return f"<nodeflame Dataset {self.path}: {len(self._table())} captures>"

    # ------------------------------------------------------------------ writing
    def add(self, profile: Profile, labels: dict | None = None, *, time: float | None = None) -> str:
        """Store one capture atomically; returns its capture id.  ``time``: when it started (seconds
        since the epoch); default ``meta['start_time']`` when the profile has one, else now."""
        labels = _st.check_labels(labels)
        with self._lock:
            if self._manifest is None:
                self._manifest = _st.read_manifest(self.store) or _st.write_manifest(
                    self.store, self._partition_by if self._partition_by is not None else sorted(labels))
            part_by = self._manifest.get("partition_by") or []
        enc = _st.encode_capture(profile, labels, part_by, _st.capture_time(profile, time))
        if not self._cleaned:
            self._cleaned = True
            try:
                _st.clean_leftovers(self.store, set(self._table()["capture_id"]))
            except OSError:
                pass
        _st.write_capture(self.store, enc)
        return enc.capture_id

    def remove(self, capture_ids) -> int:
        """Delete captures (their commit record first, so readers never see half of one)."""
        if isinstance(capture_ids, str):
            capture_ids = [capture_ids]
        t = self._table().set_index("capture_id")
        n = 0
        for cid in capture_ids:
            if cid in t.index:
                _st.delete_capture(self.store, t.at[cid, "part"], cid)
                n += 1
        return n

    def prune(self, keep=None, max_bytes: int | None = None, *, now: float | None = None) -> list[str]:
        """Retention: delete captures older than ``keep`` (seconds or ``"7d"``), then, oldest first,
        until the dataset holds at most ``max_bytes``.  Returns the ids deleted."""
        t = self._table().sort_values(["start", "capture_id"], kind="stable")
        now = _time_now() if now is None else now
        drop = []
        if keep is not None:
            cutoff = pd.Timestamp(now - parse_seconds(keep), unit="s")
            drop += list(t.loc[t["start"] < cutoff, "capture_id"])
        if max_bytes is not None:
            rest = t[~t["capture_id"].isin(drop)]
            over = int(rest["bytes"].sum()) - int(max_bytes)
            if over > 0:
                cum = rest["bytes"].cumsum().to_numpy()
                k = int(np.searchsorted(cum, over, side="left")) + 1
                drop += list(rest["capture_id"].iloc[:k])
        self.remove(drop)
        return drop

    # ------------------------------------------------------------------ reading
    def _table(self) -> pd.DataFrame:
        """Every committed capture: one row each (cached; new files read as they appear)."""
        files = {}
        for d, f in self.store.walk_files(self.store.join("captures")):
            if f.endswith(".parquet"):
                files[d.rstrip("/") + "/" + f] = None
        with self._lock:
            gone = set(self._rows) - set(files)
            for g in gone:
                del self._rows[g]
            new = [p for p in files if p not in self._rows]
            if not gone and not new and self._concat is not None:
                return self._concat   # nothing changed since the last look (never edited in place)
            for p in new:
                try:
                    if self.store.local:
                        row = pq.read_table(p).to_pandas()
                    else:
                        with self.store.fs.open(p, "rb") as fh:
                            row = pq.read_table(fh).to_pandas()
                except FileNotFoundError:  # deleted meanwhile
                    continue
                if int(row["schema_version"].iloc[0]) > _st.SCHEMA_VERSION:
                    raise DatasetError(f"{p}: written by a newer nodeflame (schema "
                                       f"{int(row['schema_version'].iloc[0])})")
                self._rows[p] = row
            rows = [self._rows[p] for p in sorted(self._rows)]
            if not rows:
                out = pd.DataFrame({c.name: pd.Series(dtype=c.type.to_pandas_dtype()) for c in _st.CAPTURE_SCHEMA})
            else:
                out = pd.concat(rows, ignore_index=True)
            self._concat, self._view_cache = out, None
            return out

    def _view(self) -> pd.DataFrame:
        """The ``captures`` view: the table with one column per label (None where a capture lacks it)
        and ``date``; sorted by start."""
        t = self._table()
        cached = self._view_cache
        if cached is not None and cached[0] is t:
            return cached[1].copy()
        labels = [json.loads(s) for s in t["labels"]]
        keys = sorted({k for lab in labels for k in lab})
        out = pd.DataFrame({"capture_id": t["capture_id"].astype(str)})
        for k in keys:
            out[k] = pd.array([lab.get(k) for lab in labels], dtype=object)
        out["backend"] = t["backend"]
        out["pid"] = t["pid"].astype("Int64")
        out["start"] = pd.to_datetime(t["start"]).astype("datetime64[us]")
        out["date"] = out["start"].dt.strftime("%Y-%m-%d")
        out["duration_s"] = t["duration_s"].astype(float)
        out["samples"] = t["samples"].astype(np.int64)
        out["rows"] = t["rows"].astype(np.int64)
        for c in ("unit", "source_format", "node_version", "command"):
            out[c] = t[c]
        out["bytes"] = t["bytes"].astype(np.int64)
        out["labels"] = t["labels"]
        out["meta"] = t["meta"]
        out["part"] = t["part"]
        out["schema_version"] = t["schema_version"]
        out = out.sort_values(["start", "capture_id"], kind="stable").reset_index(drop=True)
        self._view_cache = (t, out)
        return out.copy()

    def label_names(self) -> list[str]:
        v = self._view()
        fixed = set(_st.RESERVED)
        return [c for c in v.columns if c not in fixed]

    def captures(self, where: str | None = None) -> pd.DataFrame:
        """One row per capture: capture_id, its labels, backend, pid, start, date, duration_s, samples,
        rows, unit, source_format, node_version, command, bytes; oldest first."""
        v = self._select(where)
        return v.drop(columns=["labels", "meta", "part", "schema_version"]).reset_index(drop=True)

    def _select(self, where: str | None) -> pd.DataFrame:
        v = self._view()
        if where is None or not len(v):
            return v
        from .duck import select_ids
        ids = set(select_ids(v, where))
        return v[v["capture_id"].isin(ids)].reset_index(drop=True)

    def profile(self, capture_id: str | None = None, *, where: str | None = None) -> Profile:
        """The Profile of one capture, exactly as it was added; or (``where=``, SQL over the captures
        view) one merged Profile of every matching capture (``meta['captures']`` lists them)."""
        if capture_id is not None and where is not None:
            raise DatasetError("give a capture id or where=, not both")
        v = self._view()
        if capture_id is not None:
            row = v[v["capture_id"] == capture_id]
            if not len(row):
                raise DatasetError(f"no capture {capture_id!r} in {self.path}")
            r = row.iloc[0]
            return _st.read_profile(self.store, r["part"], capture_id, json.loads(r["meta"]))
        sel = self._select(where) if where is not None else v
        if not len(sel):
            raise DatasetError(f"no capture in {self.path} matches {where!r}" if where else f"{self.path} is empty")
        profiles = [_st.read_profile(self.store, r.part, r.capture_id, json.loads(r.meta))
                    for r in sel.itertuples(index=False)]
        if len(profiles) == 1:
            return profiles[0]
        from ..frames.combine import concat
        first = profiles[0].meta
        warns = []
        for p in profiles:
            for w in p.meta.get("warnings") or []:
                if w not in warns:
                    warns.append(w)
        units = {p.meta.get("unit") for p in profiles}
        meta = default_meta(source_format="nodeflame-dataset", unit=first.get("unit") if len(units) == 1 else "mixed",
                            period_ns=first.get("period_ns"), warnings=warns,
                            captures=list(sel["capture_id"]), where=where,
                            duration_ns=int(np.nansum(sel["duration_s"].to_numpy(float)) * 1e9))
        return concat(profiles, meta=meta)

    # ------------------------------------------------------------------ questions
    def _engine(self, engine, client):
        if client is not None:
            return "dask", client
        eng = engine or self.engine
        if eng not in ENGINES:
            raise DatasetError(f"engine must be one of {', '.join(ENGINES)}, got {eng!r}")
        return eng, (self.client if eng == "dask" else None)

    def _groups(self, by, where):
        by = [by] if isinstance(by, str) else list(by or [])
        sel = self._select(where)
        for c in by:
            if c not in sel.columns:
                raise DatasetError(f"by: no column {c!r} in the captures view (columns: "
                                   f"{', '.join(self._view().columns)})")
        sel = sel.copy()
        if by:
            key = sel[by].astype(object).where(sel[by].notna(), None)
            sel["group"] = pd.MultiIndex.from_frame(key.astype(str).where(key.notna(), "\0")).factorize()[0] \
                if len(sel) else np.empty(0, np.int64)
        else:
            sel["group"] = 0
        return by, sel

    def top(self, by=(), where: str | None = None, n: int | None = 20, *, sort: str = "self",
            engine: str | None = None, client=None) -> pd.DataFrame:
        """Self and total per function and group of captures, heaviest first within each group.

        ``by``: columns of the captures view (labels, backend, pid, date, ...); ``where``: SQL over
        it.  ``self``/``total`` are summed weights (recursion counted once per sample, as
        ``Profile.top``) and ``self_pct``/``total_pct`` their share of the group's samples: the
        numbers ``Profile.top`` gives for ``profile(where=...)`` of the group.  Treating each
        capture as one observation: ``captures`` (in the group), ``self_mean_pct``/``self_sd_pct``
        and ``total_mean_pct``/``total_sd_pct``, the mean and standard deviation across captures of
        each capture's own share (0 in a capture without the function)."""
        if sort not in ("self", "total"):
            raise DatasetError("sort must be 'self' or 'total'")
        by, sel = self._groups(by, where)
        eng, client = self._engine(engine, client)
        files = self._files("func_stats", sel)
        if eng == "dask":
            from .dask_engine import func_sums
        else:
            from .duck import func_sums
        agg = func_sums(self.store, files, sel[["capture_id", "group", "samples"]], client=client)
        return _finish_top(agg, sel, by, n, sort)

    def diff(self, a: str, b: str, *, unit="capture_id", normalize: str = "auto", alpha: float = 0.05,
             engine: str | None = None, client=None):
        """Compare two groups of captures: ``ds.diff(a="version = '1.2'", b="version = '1.3'")``
        (``a``, ``b``: SQL over the captures view) -> a :class:`nodeflame.frames.diff.Diff`
        (a ``GroupDiff``) with the columns of ``nf.diff(...).table()`` and more.

        Each capture is one observation of every function's share of it (0 where the function
        is absent), so the intervals hold the variation between processes and between captures,
        not only sampling noise: per function, Welch's t-test on the per-capture shares of the
        two groups (after dividing group b's by the normalisation, see below), Student's t with
        Welch–Satterthwaite degrees of freedom, the row's p-value the smaller of self's and
        total's doubled, and ``significant`` decided by Benjamini–Hochberg at ``alpha`` over all
        rows, as ``nf.diff`` does.  ``unit``: what one observation is: ``"capture_id"`` (each
        capture) or columns of the captures view such as ``["host", "pid"]`` (each process: the
        mean share of its captures, so that many captures of one process do not count as many
        independent processes).  ``normalize``: ``"auto"``/``"reference"`` (the largest group of
        functions whose mean shares changed by one common factor is taken as unchanged, as
        ``nf.diff`` does; shares are compositional) or ``"total"`` (plain shares).  Needs at least
        two units on each side.  ``before``/``after`` of the result (for ``write``/``flame``) are
        the merged Profiles of the two groups, loaded when first used.  Both engines give the
        same table."""
        from ..frames.diff import GroupDiff
        v = self._view()
        units = [unit] if isinstance(unit, str) else list(unit)
        for c in units:
            if c not in v.columns:
                raise DatasetError(f"unit: no column {c!r} in the captures view (columns: {', '.join(v.columns)})")
        sides = []
        for side, where in enumerate((a, b)):
            s = self._select(where)
            if not len(s):
                raise DatasetError(f"diff: no capture in {self.path} matches {where!r}")
            s = s.copy()
            s["side"] = side
            key = s[units].astype(object).where(s[units].notna(), None).astype(str)
            s["unit"] = pd.MultiIndex.from_frame(key).factorize()[0] if len(units) > 1 else key[units[0]].factorize()[0]
            s["w"] = 1.0 / s.groupby("unit")["unit"].transform("size").to_numpy(float)
            s["den"] = s["samples"].astype(np.int64)
            sides.append(s)
        n_units = [int(s["unit"].nunique()) for s in sides]
        sel = pd.concat(sides, ignore_index=True)
        eng, client = self._engine(engine, client)
        files = self._files("func_stats", sel.drop_duplicates("capture_id"))
        if eng == "dask":
            from .dask_engine import diff_sums
        else:
            from .duck import diff_sums
        stats = diff_sums(self.store, files, sel[["capture_id", "side", "unit", "w", "den"]], client=client)
        for c in ("name", "file", "kind"):
            stats[c] = stats[c].astype(object)
        stats = stats.astype({"side": np.int64, "line": np.int64, "self": np.int64, "total": np.int64})
        uname = "capture" if units == ["capture_id"] else "/".join(units)
        try:
            return GroupDiff(stats, n_units, before=lambda: self.profile(where=a), after=lambda: self.profile(where=b),
                             normalize=normalize, alpha=alpha, labels=(a, b), unit_name=uname)
        except (ValueError, _st.NodeflameError) as e:
            raise DatasetError(f"diff: {e}") from None

    def trend(self, func: str, by=(), every="1h", where: str | None = None, *, engine: str | None = None,
              client=None) -> pd.DataFrame:
        """The share of function(s) named ``func`` over time: per group and time bucket of
        ``every`` (captures bucketed by start), self and total summed over the bucket's captures
        and as a share of its samples, and the mean and sd of the per-capture shares.  (Two
        different functions of the same name on one stack count twice in ``total``.)"""
        step = parse_seconds(every)
        by, sel = self._groups(by, where)
        eng, client = self._engine(engine, client)
        files = self._files("func_stats", sel)
        if eng == "dask":
            from .dask_engine import func_by_capture
        else:
            from .duck import func_by_capture
        per = func_by_capture(self.store, files, str(func), client=client)
        return _finish_trend(per, sel, by, step)

    def sql(self, query: str) -> pd.DataFrame:
        """Run SQL (DuckDB) over the views ``captures``, ``func_stats``, ``funcs``, ``frames``,
        ``stacks``, ``samples`` and ``lines`` (see the README for their columns)."""
        from .duck import run_sql
        return run_sql(self, query)

    def to_dask(self) -> dict:
        """Dask DataFrames over the same files: ``{"captures": ..., "func_stats": ..., "funcs": ...,
        "frames": ..., "stacks": ..., "samples": ..., "lines": ...}`` (every table has ``capture_id``)."""
        from .dask_engine import to_dask
        return to_dask(self)

    # ------------------------------------------------------------------ helpers
    def _files(self, table: str, sel: pd.DataFrame) -> list[str]:
        return [_st.file_path(self.store, table, part, cid) for cid, part in zip(sel["capture_id"], sel["part"])]


def _time_now() -> float:
    return time.time()


def _finish_top(agg: pd.DataFrame, sel: pd.DataFrame, by: list, n, sort: str) -> pd.DataFrame:
    """The shared last step of both engines: shares, per-capture statistics, order, top n per group."""
    g = sel.groupby("group").agg(captures=("capture_id", "size"), group_samples=("samples", "sum"))
    keys = sel.drop_duplicates("group").set_index("group")[by] if by else None
    df = agg.join(g, on="group")
    whole = df["group_samples"].clip(lower=1).to_numpy(float)
    ncap = df["captures"].to_numpy(float)
    df["self_pct"] = 100.0 * df["self"].to_numpy(float) / whole
    df["total_pct"] = 100.0 * df["total"].to_numpy(float) / whole
    for what in ("self", "total"):
        s, sq = df[f"{what}_share_sum"].to_numpy(float), df[f"{what}_share_sq"].to_numpy(float)
        mean = s / ncap
        var = np.where(ncap > 1, np.maximum(sq - ncap * mean * mean, 0.0) / np.maximum(ncap - 1, 1), np.nan)
        df[f"{what}_mean_pct"] = 100.0 * mean
        df[f"{what}_sd_pct"] = 100.0 * np.sqrt(var)
    other = "total" if sort == "self" else "self"
    df = df.sort_values(["group", sort, other, "name", "file", "line", "column", "kind"],
                        ascending=[True, False, False, True, True, True, True, True], kind="stable")
    if n is not None:
        df = df.groupby("group", sort=False).head(n)
    if by:
        df = df.join(keys, on="group")
    cols = by + ["name", "file", "line", "column", "kind", "package", "self", "total", "self_pct", "total_pct",
                 "captures", "self_mean_pct", "self_sd_pct", "total_mean_pct", "total_sd_pct"]
    out = df[cols].reset_index(drop=True)
    for c in ("name", "file", "kind", "package"):  # one dtype whichever engine summed
        out[c] = out[c].astype(object)
    return out.astype({"line": np.int64, "column": np.int64, "self": np.int64, "total": np.int64,
                       "captures": np.int64})


def _finish_trend(per: pd.DataFrame, sel: pd.DataFrame, by: list, step: float) -> pd.DataFrame:
    """per: capture_id, self, total of the function in each capture that has it."""
    s = sel[["capture_id", "group", "samples", "start"] + by].merge(per, on="capture_id", how="left")
    s[["self", "total"]] = s[["self", "total"]].fillna(0).astype(np.int64)
    epoch = s["start"].astype("datetime64[us]").astype(np.int64).to_numpy() / 1e6
    s["bucket"] = pd.to_datetime(np.floor(epoch / step) * step, unit="s").astype("datetime64[us]")
    denom = s["samples"].clip(lower=1).to_numpy(float)
    s["self_share"] = s["self"] / denom
    s["total_share"] = s["total"] / denom
    g = s.groupby(["group", "bucket"], sort=True)
    out = g.agg(captures=("capture_id", "size"), samples=("samples", "sum"), self_=("self", "sum"),
                total=("total", "sum"), self_mean=("self_share", "mean"), self_sd=("self_share", "std"),
                total_mean=("total_share", "mean"), total_sd=("total_share", "std")).reset_index()
    out = out.rename(columns={"self_": "self"})
    whole = out["samples"].clip(lower=1).to_numpy(float)
    out["self_pct"] = 100.0 * out["self"] / whole
    out["total_pct"] = 100.0 * out["total"] / whole
    for c in ("self_mean", "self_sd", "total_mean", "total_sd"):
        out[c + "_pct"] = 100.0 * out.pop(c)
    if by:
        out = out.join(sel.drop_duplicates("group").set_index("group")[by], on="group")
    cols = by + ["bucket", "captures", "samples", "self", "total", "self_pct", "total_pct",
                 "self_mean_pct", "self_sd_pct", "total_mean_pct", "total_sd_pct"]
    return out.sort_values(by + ["bucket"] if by else ["bucket"], kind="stable")[cols].reset_index(drop=True)
