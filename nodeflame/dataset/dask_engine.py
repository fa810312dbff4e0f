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


def _read(store, files, columns=None):
    import dask.dataframe as dd
    kw = {} if store.local else {"storage_options": store.fs.storage_options}
    paths = files if store.local else [store.for_duckdb(f) for f in files]
    df = dd.read_parquet(paths, columns=columns, **kw)
    return df


def _compute(obj, client):
    if client is not None:
        return client.compute(obj).result()
    return obj.compute()


def _strings(df, cols):
    for c in cols:
        df[c] = df[c].astype("string")
    return df


def func_sums(store, files, sel: pd.DataFrame, client=None) -> pd.DataFrame:
    from .duck import _empty_sums
    if not files:
        return _empty_sums()
    f = _read(store, files, ["capture_id", "name", "file", "line", "column", "kind", "package", "self", "total"])
    f = f.map_partitions(_strings, ["capture_id", "name", "file", "kind", "package"])
    s = sel[["capture_id", "group", "samples"]].copy()
    s["capture_id"] = s["capture_id"].astype("string")
    f = f.merge(s, on="capture_id", how="inner")

    def shares(df):
        den = df["samples"].clip(lower=1).astype(float)
        out = df[["group", "name", "file", "line", "column", "kind", "package", "self", "total"]].copy()
        out["line"] = out["line"].astype(np.int64)
        out["column"] = out["column"].astype(np.int64)
        out["self_share_sum"] = df["self"] / den
        out["self_share_sq"] = out["self_share_sum"] ** 2
        out["total_share_sum"] = df["total"] / den
        out["total_share_sq"] = out["total_share_sum"] ** 2
        return out
    f = f.map_partitions(shares)
    agg = f.groupby(_KEY).agg({"package": "min", "self": "sum", "total": "sum", "self_share_sum": "sum",
                               "self_share_sq": "sum", "total_share_sum": "sum", "total_share_sq": "sum"})
    out = _compute(agg, client).reset_index()
    return out.astype({"self": np.int64, "total": np.int64})


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
