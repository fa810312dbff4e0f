"""The DuckDB engine (embedded, the default): aggregations over the Parquet files, and ds.sql()."""
from __future__ import annotations

import re

import pandas as pd

from .store import PROFILE_TABLES, DatasetError

VIEWS = ("captures", "func_stats") + PROFILE_TABLES


def connect(store=None):
    import duckdb
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")   # a library does not draw on the caller's stdout
    if store is not None and not store.local:
        con.register_filesystem(store.fs)
    return con


def _list(store, files) -> str:
    paths = [store.for_duckdb(f) if store is not None else f for f in files]
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _scan(store, files, union=False) -> str:
    return (f"read_parquet({_list(store, files)}, hive_partitioning = false"
            f"{', union_by_name = true' if union else ''})")


def select_ids(view: pd.DataFrame, where: str) -> list[str]:
    """capture ids of the rows of the captures view that satisfy ``where`` (SQL)."""
    import duckdb
    con = connect()
    try:
        con.register("captures", view)
        return [r[0] for r in con.execute(f"SELECT capture_id FROM captures WHERE {where}").fetchall()]
    except duckdb.Error as e:
        raise DatasetError(f"where {where!r}: {e}") from None
    finally:
        con.close()


def _query(store, files, sql: str, empty, *, sel: pd.DataFrame | None = None, params=None) -> pd.DataFrame:
    """``sql`` run over the Parquet ``files`` (``{scan}`` in it stands for their read_parquet(...)), with
    ``sel`` registered as the table ``sel``; ``empty()`` (a frame of the result's columns) when no files."""
    if not files:
        return empty()
    con = connect(store)
    try:
        if sel is not None:
            con.register("sel", sel)
        return con.execute(sql.format(scan=_scan(store, files)), params).df()
    finally:
        con.close()


def _frame(**dtypes) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in dtypes.items()})


# the sums both aggregations end with, in this order
_SUM_COLUMNS = dict.fromkeys(("self", "total"), "int64") | dict.fromkeys(
    ("self_share_sum", "self_share_sq", "total_share_sum", "total_share_sq"), float)


def empty_sums() -> pd.DataFrame:
    """The per-function sums of no capture, with their columns' types (what every engine returns then)."""
    return _frame(group="int64", name=object, file=object, line="int64", column="int64", kind=object,
                  package=object, **_SUM_COLUMNS)


def empty_diff_sums() -> pd.DataFrame:
    """The two sides' per-function sums of no capture, with their columns' types."""
    return _frame(side="int64", name=object, file=object, line="int64", kind=object, **_SUM_COLUMNS)


_FUNC_SUMS = """
    SELECT s."group" AS "group", f.name, f.file, CAST(f.line AS BIGINT) AS line,
           CAST(f."column" AS BIGINT) AS "column", f.kind, min(f.package) AS package,
           CAST(sum(f.self) AS BIGINT) AS self, CAST(sum(f.total) AS BIGINT) AS total,
           sum(CAST(f.self AS DOUBLE) / greatest(s.samples, 1)) AS self_share_sum,
           sum(power(CAST(f.self AS DOUBLE) / greatest(s.samples, 1), 2)) AS self_share_sq,
           sum(CAST(f.total AS DOUBLE) / greatest(s.samples, 1)) AS total_share_sum,
           sum(power(CAST(f.total AS DOUBLE) / greatest(s.samples, 1), 2)) AS total_share_sq
    FROM {scan} AS f JOIN sel AS s ON f.capture_id = s.capture_id
    GROUP BY s."group", f.name, f.file, f.line, f."column", f.kind
"""


def func_sums(store, files, sel: pd.DataFrame, client=None) -> pd.DataFrame:
    """Per (group, function): summed self/total, and sums and sums of squares of each capture's shares."""
    return _query(store, files, _FUNC_SUMS, empty_sums, sel=sel)


_DIFF_SUMS = """
    WITH per_unit AS (
        -- a unit's share is linear in its rows (self / den * w summed), so one pass gives it even
        -- where a capture has several rows of one (name, file, line) (other column or kind)
        SELECT s.side, s.unit, f.name, f.file, CAST(f.line AS BIGINT) AS line, min(f.kind) AS kind,
               sum(f.self) AS self, sum(f.total) AS total,
               sum(CAST(f.self AS DOUBLE) / greatest(s.den, 1) * s.w) AS self_share,
               sum(CAST(f.total AS DOUBLE) / greatest(s.den, 1) * s.w) AS total_share
        FROM {scan} AS f JOIN sel AS s ON f.capture_id = s.capture_id
        GROUP BY s.side, s.unit, f.name, f.file, f.line
    )
    SELECT CAST(side AS BIGINT) AS side, name, file, line, min(kind) AS kind,
           CAST(sum(self) AS BIGINT) AS self, CAST(sum(total) AS BIGINT) AS total,
           sum(self_share) AS self_share_sum, sum(self_share * self_share) AS self_share_sq,
           sum(total_share) AS total_share_sum, sum(total_share * total_share) AS total_share_sq
    FROM per_unit GROUP BY side, name, file, line
    ORDER BY side, name, file, line
"""


def diff_sums(store, files, sel: pd.DataFrame, client=None) -> pd.DataFrame:
    """Per (side, name, file, line): summed self/total, and over the side's observation units the
    sums and sums of squares of each unit's share (see ``nodeflame.frames.diff.GroupDiff``).

    ``sel``: capture_id, side (0/1), unit (int: the observation unit of the capture on that side),
    w (1 / the number of captures of that unit: a unit's share is the mean of its captures'),
    den (the capture's samples: the denominator of its shares)."""
    return _query(store, files, _DIFF_SUMS, empty_diff_sums, sel=sel)


_FUNC_BY_CAPTURE = """
    SELECT CAST(capture_id AS VARCHAR) AS capture_id, CAST(sum(self) AS BIGINT) AS self,
           CAST(sum(total) AS BIGINT) AS total
    FROM {scan} WHERE name = ? GROUP BY capture_id
"""


def func_by_capture(store, files, func: str, client=None) -> pd.DataFrame:
    """capture_id, self, total of the functions named ``func`` in each capture that has one."""
    return _query(store, files, _FUNC_BY_CAPTURE, lambda: _frame(capture_id=object, self="int64", total="int64"),
                  params=[func])


def run_sql(ds, query: str) -> pd.DataFrame:
    import duckdb
    view = ds._view()
    con = connect(ds.store)
    try:
        con.register("captures", view.drop(columns=["part", "schema_version"]))
        for name in VIEWS[1:]:
            if re.search(rf"\b{name}\b", query, re.I):
                files = ds._files(name, view)
                if files:
                    con.execute(f"CREATE VIEW {name} AS SELECT * FROM {_scan(ds.store, files, union=True)}")
        try:
            return con.execute(query).df()
        except duckdb.Error as e:
            raise DatasetError(f"sql: {e}") from None
    finally:
        con.close()
