"""The on-disk layout of a dataset: Parquet files under one directory (or fsspec URL).

::

    DATASET/
      dataset.json                                    {"format": "nodeflame-dataset", "schema_version": 1,
                                                       "partition_by": ["service", "version"]}
      captures/service=api/version=1.3/date=2024-05-01/<capture_id>.parquet   one row: the commit record
      func_stats/service=api/version=1.3/date=2024-05-01/<capture_id>.parquet self/total per function
      funcs/...   frames/...   stacks/...   samples/...   lines/...            the Profile's own tables

Every file of a capture has the same partition path (Hive style ``key=value``,
values percent-encoded, a missing label ``__HIVE_DEFAULT_PARTITION__``) and the
same name.  A file is written under a temporary name starting with ``.tmp-`` in
its final directory, fsynced, then renamed (``os.replace``, atomic on POSIX);
the ``captures`` file is written last and is the commit: a capture exists once
its ``captures`` file does.  Readers list ``captures/`` only, skip names that
start with ``.`` or ``_``, and find the other files of a capture from its row,
so a writer killed at any point leaves nothing a reader sees.  Leftovers (temp
files of dead writers, tables of a capture never committed) are removed by the
next writer.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..frames.errors import NodeflameError
from ..frames.profile import Profile
from ..frames.readers.nfprof import jsonable
from ..frames.views import func_self_total

FORMAT = "nodeflame-dataset"
#: version of the layout and of the columns below; a reader reads every version <= this one
SCHEMA_VERSION = 1
PROFILE_TABLES = ("funcs", "frames", "stacks", "samples", "lines")
TABLES = ("captures", "func_stats") + PROFILE_TABLES
DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
TMP_PREFIX = ".tmp-"
#: a temp file or uncommitted table file this old is garbage even if its writer may be alive
STALE_S = 3600.0

#: columns of the captures table; labels may not take these names
RESERVED = {"capture_id", "schema_version", "start", "date", "duration_s", "samples", "rows", "backend", "pid",
            "node_version", "source_format", "unit", "command", "labels", "meta", "part", "bytes", "bucket",
            "group", "func", "name", "file", "line", "column", "kind", "package", "self", "total", "thread"}
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DatasetError(NodeflameError):
    pass


def check_labels(labels) -> dict:
    out = {}
    for k, v in dict(labels or {}).items():
        k = str(k)
        if not _LABEL_KEY.match(k):
            raise DatasetError(f"label name {k!r}: use letters, digits and _ (not starting with a digit), "
                               "so that it can be a column in where= and by=")
        if k in RESERVED:
            raise DatasetError(f"label name {k!r} is a column of every capture already; choose another "
                               f"(reserved: {', '.join(sorted(RESERVED))})")
        if v is None:
            raise DatasetError(f"label {k}: no value")
        out[k] = str(v)
    return out


def parse_labels(items) -> dict:
    """``["service=api", "version=1.3"]`` (the command line's ``--label KEY=VALUE``) -> checked labels."""
    out = {}
    for item in items or []:
        k, sep, v = str(item).partition("=")
        if not sep or not k:
            raise DatasetError(f"--label takes KEY=VALUE, got {item!r}")
        out[k.strip()] = v
    return check_labels(out)


def _quote(v: str) -> str:
    return urllib.parse.quote(v, safe="") if v != "" else DEFAULT_PARTITION


# ------------------------------------------------------------------ file system
class Store:
    """Files of one dataset: local paths through os (fsync), anything else through fsspec."""

    def __init__(self, path):
        path = os.fspath(path)
        self.url = path
        if "://" in path and not path.startswith("file://"):
            import fsspec
            self.fs, self.root = fsspec.core.url_to_fs(path)
            self.local = False
        else:
            self.fs = None
            self.root = os.path.abspath(path[len("file://"):] if path.startswith("file://") else path)
            self.local = True

    # -- paths
    def join(self, *parts) -> str:
        return (os.path.join if self.local else posixpath.join)(self.root, *parts)

    def for_duckdb(self, path: str) -> str:
        """The path as DuckDB names it (a registered fsspec filesystem is addressed by its protocol)."""
        if self.local:
            return path
        proto = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{proto}://{path}"

    # -- primitives
    def exists(self, path) -> bool:
        return os.path.exists(path) if self.local else self.fs.exists(path)

    def makedirs(self, path):
        if self.local:
            os.makedirs(path, exist_ok=True)
        else:
            self.fs.makedirs(path, exist_ok=True)

    def read_bytes(self, path) -> bytes:
        if self.local:
            with open(path, "rb") as fh:
                return fh.read()
        return self.fs.cat_file(path)

    def size(self, path) -> int:
        return os.path.getsize(path) if self.local else int(self.fs.size(path))

    def remove(self, path):
        try:
            if self.local:
                os.remove(path)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def write_atomic(self, path: str, data: bytes) -> int:
        """Write ``data`` to ``path``: a temp name in the same directory, fsync, rename, fsync the directory."""
        d = os.path.dirname(path) if self.local else posixpath.dirname(path)
        self.makedirs(d)
        base = os.path.basename(path) if self.local else posixpath.basename(path)
        tmp = (os.path.join if self.local else posixpath.join)(
            d, f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{base}")
        if self.local:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            _rename(tmp, path)
            _fsync_dir(d)
        else:  # object stores: the rename is a copy; good enough where no atomic rename exists
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, path)
        return len(data)

    def walk_files(self, top: str):
        """(directory, file name) of every visible file under ``top`` (names starting . or _ skipped)."""
        if self.local:
            for d, dirs, files in os.walk(top):
                dirs[:] = [x for x in dirs if not x.startswith((".", "_"))]
                for f in files:
                    if not f.startswith((".", "_")):
                        yield d, f
        else:
            if not self.fs.exists(top):
                return
            for p in self.fs.find(top):
                d, f = posixpath.split(p)
                if not f.startswith((".", "_")) and not any(s.startswith((".", "_")) for s in
                                                            posixpath.relpath(d, top).split("/") if s != "."):
                    yield d, f

    def walk_all(self, top: str):
        """(path, name, mtime) of every file under ``top``, hidden ones included (for cleaning up)."""
        if self.local:
            for d, _dirs, files in os.walk(top):
                for f in files:
                    p = os.path.join(d, f)
                    try:
                        yield p, f, os.path.getmtime(p)
                    except FileNotFoundError:
                        continue
        elif self.fs.exists(top):
            for p, info in self.fs.find(top, detail=True).items():
                m = info.get("mtime") or info.get("created") or time.time()
                yield p, posixpath.basename(p), float(m.timestamp() if hasattr(m, "timestamp") else m)


def _rename(tmp, path):
    """The commit of one file (a function of its own so tests can stop a writer right before it)."""
    os.replace(tmp, path)


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------ encoding one capture
def _parquet_bytes(df: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _with_id(df: pd.DataFrame, cid: str) -> pd.DataFrame:
    out = df.reset_index(drop=True)
    out.insert(0, "capture_id", pd.Categorical([cid] * len(out), categories=[cid]))
    return out


def capture_time(p: Profile, default: float | None = None) -> float:
    """Seconds since the epoch when the capture started: ``meta['start_time']`` when it is one
    (captures by nodeflame), else ``default`` (an ingested file's mtime), else now."""
    st = p.meta.get("start_time")
    if isinstance(st, (int, float, np.integer, np.floating)) and 1e9 <= float(st) < 1e10:
        return float(st)
    return float(default) if default is not None else time.time()


def new_capture_id(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + "-" + secrets.token_hex(5)


@dataclass
class Encoded:
    capture_id: str
    part: str
    tables: dict  # name -> parquet bytes (captures last)


def encode_capture(p: Profile, labels: dict, partition_by: list, t: float, capture_id: str | None = None) -> Encoded:
    cid = capture_id or new_capture_id(t)
    date = time.strftime("%Y-%m-%d", time.gmtime(t))
    part = "/".join([f"{k}={_quote(labels.get(k, ''))}" for k in partition_by] + [f"date={date}"])
    tables = {}
    for name in PROFILE_TABLES:
        tables[name] = _parquet_bytes(_with_id(getattr(p, name), cid))
    self_f, total_f = func_self_total(p)
    f = p.funcs
    used = (self_f > 0) | (total_f > 0)
    fs = pd.DataFrame({
        "func": np.flatnonzero(used).astype(np.int32),
        "name": f["name"].astype(str).to_numpy(object)[used], "file": f["file"].astype(str).to_numpy(object)[used],
        "line": f["line"].to_numpy()[used], "column": f["column"].to_numpy()[used],
        "kind": f["kind"].astype(str).to_numpy(object)[used],
        "package": f["package"].astype(str).to_numpy(object)[used],
        "self": self_f[used].astype(np.int64), "total": total_f[used].astype(np.int64)})
    tables["func_stats"] = _parquet_bytes(_with_id(fs, cid))
    nbytes = sum(len(b) for b in tables.values())
    m = p.meta
    row = {
        "capture_id": cid, "schema_version": SCHEMA_VERSION,
        "start": pd.Timestamp(t, unit="s").as_unit("us"),
        "duration_s": float(m["duration_ns"]) / 1e9 if m.get("duration_ns") else np.nan,
        "samples": int(p.total), "rows": len(p.samples),
        "backend": str(m["backend"]) if m.get("backend") is not None else None,
        "pid": int(m["pid"]) if isinstance(m.get("pid"), (int, np.integer)) else None,
        "node_version": str(m["node_version"]) if m.get("node_version") is not None else None,
        "source_format": str(m["source_format"]) if m.get("source_format") is not None else None,
        "unit": str(m.get("unit") or "samples"),
        "command": str(m["command"]) if m.get("command") is not None else None,
        "labels": json.dumps(labels, sort_keys=True, ensure_ascii=False),
        "meta": json.dumps(m, default=jsonable, ensure_ascii=False),
        "part": part,
        "bytes": nbytes,
    }
    cap = pd.DataFrame([row])
    cap = cap.astype({"pid": "Int64", "duration_s": "float64"})
    tables["captures"] = pa_bytes_captures(cap)
    return Encoded(cid, part, tables)


CAPTURE_SCHEMA = pa.schema([
    ("capture_id", pa.string()), ("schema_version", pa.int32()), ("start", pa.timestamp("us")),
    ("duration_s", pa.float64()), ("samples", pa.int64()), ("rows", pa.int64()), ("backend", pa.string()),
    ("pid", pa.int64()), ("node_version", pa.string()), ("source_format", pa.string()), ("unit", pa.string()),
    ("command", pa.string()), ("labels", pa.string()), ("meta", pa.string()), ("part", pa.string()),
    ("bytes", pa.int64()),
])


def pa_bytes_captures(cap: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(cap, schema=CAPTURE_SCHEMA, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def file_path(store: Store, table: str, part: str, cid: str) -> str:
    return store.join(table, *part.split("/"), f"{cid}.parquet")


def write_capture(store: Store, enc: Encoded) -> None:
    """Every table file, then the captures file (the commit)."""
    for name in TABLES[1:]:
        store.write_atomic(file_path(store, name, enc.part, enc.capture_id), enc.tables[name])
    store.write_atomic(file_path(store, "captures", enc.part, enc.capture_id), enc.tables["captures"])


def delete_capture(store: Store, part: str, cid: str) -> None:
    """The captures file first (readers stop seeing the capture at once), then the rest."""
    store.remove(file_path(store, "captures", part, cid))
    for name in TABLES[1:]:
        store.remove(file_path(store, name, part, cid))


def read_profile(store: Store, part: str, cid: str, meta: dict) -> Profile:
    t = {}
    for name in PROFILE_TABLES:
        path = file_path(store, name, part, cid)
        if store.local:
            df = pq.read_table(path).to_pandas()
        else:
            with store.fs.open(path, "rb") as fh:
                df = pq.read_table(fh).to_pandas()
        t[name] = df.drop(columns=["capture_id"])
    # the stored tables were a Profile's own, so the constructor gives back the same dtypes
    return Profile(t["funcs"], t["frames"], t["stacks"], t["samples"], meta, t["lines"], validate=False)


# ------------------------------------------------------------------ the manifest
def read_manifest(store: Store) -> dict | None:
    path = store.join("dataset.json")
    try:
        m = json.loads(store.read_bytes(path).decode("utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise DatasetError(f"{path}: broken dataset.json ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a nodeflame dataset")
    if int(m.get("schema_version", 0)) > SCHEMA_VERSION:
        raise DatasetError(f"{store.url}: written by a newer nodeflame (schema {m.get('schema_version')}, "
                           f"this one reads up to {SCHEMA_VERSION})")
    return m


def write_manifest(store: Store, partition_by: list) -> dict:
    m = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "partition_by": list(partition_by),
         "tables": list(TABLES)}
    store.write_atomic(store.join("dataset.json"), json.dumps(m, indent=1).encode())
    return m


def clean_leftovers(store: Store, known: set, now: float | None = None) -> int:
    """Remove temp files whose writer is gone (or that are older than STALE_S) and table files of
    captures never committed that are older than STALE_S.  ``known``: committed capture ids."""
    now = time.time() if now is None else now
    removed = 0
    for name in TABLES:
        for path, base, mtime in store.walk_all(store.join(name)):
            if base.startswith(TMP_PREFIX):
                pid = base[len(TMP_PREFIX):].split("-", 1)[0]
                gone = store.local and pid.isdigit() and not pid_alive(int(pid))
                if gone or now - mtime > STALE_S:
                    store.remove(path)
                    removed += 1
            elif name != "captures" and base.endswith(".parquet") and base[:-8] not in known \
                    and now - mtime > STALE_S:
                store.remove(path)
                removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Does process ``pid`` exist (one we may not signal counts as alive)?"""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
