"""The Dask engine: the same aggregations as nodeflame.dataset.duck, as Dask DataFrames.

The captures view (one row per capture) is small and filtered in the driver (``where`` is SQL,
evaluated by DuckDB on that table); the per-function tables, which grow with the captures, are
read and reduced by Dask, on a ``dask.distributed`` cluster when a ``client`` is given.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .store import PROFILE_TABLES

_KEY = ["group", "name", "file", "line", "column", "kind"]


class _ReadCapture:
    """Read one capture's file of a table as a pandas DataFrame (a Dask ``DataFrameIOFunction``:
    Dask projects columns into it).  Categorical columns come back as strings: each file has its
    own categories (a capture_id column holds one), so one dtype across partitions is a string."""

    def __init__(self, store, columns=None):
        self.store = store
        self._columns = None if columns is None else list(columns)

    @property
    def columns(self):
        return self._columns

    def project_columns(self, columns):
        return _ReadCapture(self.store, columns)

    def __call__(self, path, columns=None):   # columns=: how dask-expr projects columns into it
        import pyarrow.parquet as pq
        cols = list(columns) if columns is not None else self._columns
        if self.store.local:
            t = pq.read_table(path, columns=cols)
        else:
            with self.store.fs.open(path, "rb") as fh:
                t = pq.read_table(fh, columns=cols)
        return _plain(t.to_pandas())


def _plain(df):
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype) or df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            df[c] = df[c].astype("string")
    return df


def _read(store, files, columns=None):
    """One partition per file, i.e. per capture (``dd.from_map`` over the files: Dask's
    read_parquet fuses small files into one partition once columns are projected).  The
    directory names (service=api/...) are not columns: labels live in the captures view, as
    with DuckDB (hive_partitioning = false).  (The ``captures`` table of :func:`to_dask` is the
    captures view, one row per capture, in one partition.)"""
    import dask.dataframe as dd
    import pyarrow.parquet as pq
    if store.local:
        schema = pq.read_schema(files[0])
    else:
        with store.fs.open(files[0], "rb") as fh:
            schema = pq.read_schema(fh)
    meta = _plain(schema.empty_table().to_pandas())
    if columns is not None:
        meta = meta[list(columns)]
    return dd.from_map(_ReadCapture(store, columns), list(files), meta=meta, enforce_metadata=False)


def _compute(obj, client):
    if client is not None:
        return client.compute(obj).result()
    return obj.compute()


def _strings(df, cols):
    for c in cols:
        df[c] = df[c].astype("string")
    return df


def func_sums(store, files, sel: pd.DataFrame, client=None) -> pd.DataFrame:
    from .duck import empty_sums
    if not files:
        return empty_sums()
    f = _read(store, files, ["capture_id", "name", "file", "line", "column", "kind", "package", "self", "total"])
    s = sel[["capture_id", "group", "samples"]].copy()
    s["capture_id"] = s["capture_id"].astype("string")

    def shares(df):
        # the selection is small: joined inside each partition, not as a Dask merge
        df = df.merge(s, on="capture_id", how="inner")
        den = df["samples"].clip(lower=1).astype(float)
        out = df[["group", "name", "file", "line", "column", "kind", "package", "self", "total"]].copy()
        out["line"] = out["line"].astype(np.int64)
        out["column"] = out["column"].astype(np.int64)
        out["self_share_sum"] = df["self"] / den
        out["self_share_sq"] = out["self_share_sum"] ** 2
        out["total_share_sum"] = df["total"] / den
        out["total_share_sq"] = out["total_share_sum"] ** 2
        return out
    meta = pd.DataFrame({"group": pd.Series(dtype="int64"), "name": pd.Series(dtype="string"),
                         "file": pd.Series(dtype="string"), "line": pd.Series(dtype="int64"),
                         "column": pd.Series(dtype="int64"), "kind": pd.Series(dtype="string"),
                         "package": pd.Series(dtype="string"), "self": pd.Series(dtype="int64"),
                         "total": pd.Series(dtype="int64"), "self_share_sum": pd.Series(dtype=float),
                         "self_share_sq": pd.Series(dtype=float), "total_share_sum": pd.Series(dtype=float),
                         "total_share_sq": pd.Series(dtype=float)})
    f = f.map_partitions(shares, meta=meta)
    # one output partition, reduced as a tree: the result is one row per (group, function), small;
    # Dask's default for many groups is a shuffle, which cost minutes over 1,000 partitions
    agg = f.groupby(_KEY).agg({"package": "min", "self": "sum", "total": "sum", "self_share_sum": "sum",
                               "self_share_sq": "sum", "total_share_sum": "sum", "total_share_sq": "sum"},
                              split_out=1)
    out = _compute(agg, client).reset_index()
    return out.astype({"self": np.int64, "total": np.int64})


def diff_sums(store, files, sel: pd.DataFrame, client=None) -> pd.DataFrame:
    """As nodeflame.dataset.duck.diff_sums: per (side, name, file, line) the sums GroupDiff needs."""
    from .duck import empty_diff_sums
    if not files:
        return empty_diff_sums()
    f = _read(store, files, ["capture_id", "name", "file", "line", "kind", "self", "total"])
    f = f.map_partitions(_strings, ["capture_id", "name", "file", "kind"])
    s = sel[["capture_id", "side", "unit", "w", "den"]].copy()
    s["capture_id"] = s["capture_id"].astype("string")

    def per_capture(df):
        # each row's part of its unit's share (self / den * w): a unit's share is their sum, so rows of
        # one (name, file, line) that differ in column or kind need no grouping first
        df = df.merge(s, on="capture_id", how="inner")
        df["line"] = df["line"].astype(np.int64)
        den = df["den"].clip(lower=1).astype(float)
        df["self_share"] = df["self"] / den * df["w"]
        df["total_share"] = df["total"] / den * df["w"]
        return df[["side", "unit", "name", "file", "line", "kind", "self", "total", "self_share", "total_share"]]

    meta = pd.DataFrame({"side": pd.Series(dtype="int64"), "unit": pd.Series(dtype="int64"),
                         "name": pd.Series(dtype="string"), "file": pd.Series(dtype="string"),
                         "line": pd.Series(dtype="int64"), "kind": pd.Series(dtype="string"),
                         "self": pd.Series(dtype="int64"), "total": pd.Series(dtype="int64"),
                         "self_share": pd.Series(dtype=float), "total_share": pd.Series(dtype=float)})
    f = f.map_partitions(per_capture, meta=meta)
    u = f.groupby(["side", "unit", "name", "file", "line"]).agg(
        {"kind": "min", "self": "sum", "total": "sum", "self_share": "sum", "total_share": "sum"},
        split_out=1).reset_index()

    def squares(df):
        df = df.copy()
        df["self_share_sq"] = df["self_share"] ** 2
        df["total_share_sq"] = df["total_share"] ** 2
        return df
    u = u.map_partitions(squares)
    agg = u.groupby(["side", "name", "file", "line"]).agg(
        {"kind": "min", "self": "sum", "total": "sum", "self_share": "sum", "self_share_sq": "sum",
         "total_share": "sum", "total_share_sq": "sum"}, split_out=1)
    out = _compute(agg, client).reset_index()
    out = out.rename(columns={"self_share": "self_share_sum", "total_share": "total_share_sum"})
    out = out.astype({"side": np.int64, "line": np.int64, "self": np.int64, "total": np.int64})
    for c in ("name", "file", "kind"):
        out[c] = out[c].astype(object)
    cols = ["side", "name", "file", "line", "kind", "self", "total", "self_share_sum", "self_share_sq",
            "total_share_sum", "total_share_sq"]
    return out[cols].sort_values(["side", "name", "file", "line"]).reset_index(drop=True)


def func_by_capture(store, files, func: str, client=None) -> pd.DataFrame:
    if not files:
        return pd.DataFrame({"capture_id": pd.Series(dtype=object), "self": pd.Series(dtype="int64"),
                             "total": pd.Series(dtype="int64")})
    f = _read(store, files, ["capture_id", "name", "self", "total"])
    f = f.map_partitions(_strings, ["capture_id", "name"])
    f = f[f["name"] == func]
    out = _compute(f.groupby("capture_id")[["self", "total"]].sum(), client).reset_index()
    return out.astype({"self": np.int64, "total": np.int64})


def to_dask(ds) -> dict:
    import dask.dataframe as dd
    view = ds._view()
    out = {"captures": dd.from_pandas(view.drop(columns=["part", "schema_version"]), npartitions=1)}
    for name in ("func_stats",) + PROFILE_TABLES:
        files = ds._files(name, view)
        if files:
            out[name] = _read(ds.store, files)
    return out
