"""Reader of nodeflame's own ``.nfprof`` files (see nodeflame/writers/nfprof.py)."""
from __future__ import annotations

import io
import json
import zipfile
import zlib

import numpy as np
import pandas as pd

from ..errors import FormatError, InvariantError
from .. import formats
from ..formats import register_reader
from ..profile import Profile

FORMAT = "nodeflame-profile"
VERSION = 1
TABLES = ("funcs", "frames", "stacks", "samples", "lines")


def sniff(head: bytes, _text) -> bool:
    return head.startswith(b"PK\x03\x04") and b"nodeflame.json" in head[:128]


# what a damaged zip can raise from zipfile, zlib and numpy's header parser
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, NotImplementedError, EOFError, OSError,
               RuntimeError, SyntaxError, ValueError, TypeError, OverflowError)


def _member(z: zipfile.ZipFile, name: str, source: str, limits: dict) -> bytes:
    """The bytes of zip member ``name`` within the decompression limits (KeyError if absent)."""
    info = z.getinfo(name)
    formats.check_expansion(info.file_size, max(info.compress_size, 1), source, f"zip member {name}", **limits)
    try:
        return z.read(info)
    except _ZIP_ERRORS as e:
        raise FormatError(f"damaged zip member {name}: {type(e).__name__}: {e}"[:300], source=source,
                          position=name, expected="a .nfprof zip") from None


def _npy(raw: bytes, source: str, where: str) -> np.ndarray:
    """A .npy array whose header is checked against the bytes that follow it before
    numpy allocates anything (a 100-byte header can ask for any shape)."""
    f = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy version {version}")
    except Exception as e:  # ValueError, tokenize/SyntaxError from numpy's header parser
        raise FormatError(f"bad .npy header: {type(e).__name__}: {e}"[:300], source=source, position=where,
                          expected="a numpy .npy array") from None
    if dtype.hasobject:
        raise FormatError("object arrays are not allowed", source=source, position=where,
                          expected="a numeric .npy array")
    count = 1
    for n in shape:
        count *= int(n)
    body = len(raw) - f.tell()
    if len(shape) != 1 or count * dtype.itemsize != body:
        raise FormatError(f".npy header says shape {shape} of {dtype} ({count * dtype.itemsize:,} bytes) "
                          f"but {body:,} bytes follow", source=source, position=where,
                          expected="a one-dimensional array matching its data")
    return np.load(io.BytesIO(raw), allow_pickle=False)


def read_nfprof(data: bytes, source: str = "<nfprof>", *, max_decompressed=None, max_ratio=None,
                **_options) -> Profile:
    limits = {"max_decompressed": max_decompressed, "max_ratio": max_ratio}
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as e:
        raise FormatError(f"not a zip file: {type(e).__name__}: {e}"[:300], source=source,
                          expected="a .nfprof zip") from None
    with z:
        try:
            manifest = json.loads(_member(z, "nodeflame.json", source, limits).decode("utf-8"))
        except KeyError:
            raise FormatError("no nodeflame.json in the zip", source=source, expected="a .nfprof zip") from None
        except (ValueError, RecursionError) as e:
            raise FormatError(f"broken nodeflame.json: {type(e).__name__}: {e}"[:300], source=source, position="nodeflame.json") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise FormatError("not a nodeflame profile", source=source, position="nodeflame.json",
                              expected=f'"format": "{FORMAT}"')
        version = manifest.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise FormatError(f"version is {version!r}"[:100], source=source, position="nodeflame.json version",
                              expected="an integer")
        if version > VERSION:
            raise FormatError(f"written by a newer nodeflame (version {manifest.get('version')})", source=source,
                              expected=f"version <= {VERSION}")
        specs = manifest.get("tables")
        if not isinstance(specs, dict):
            raise FormatError("no table list", source=source, position="nodeflame.json",
                              expected='"tables": {name: {"rows": n, "columns": [...]}}')
        tables = {}
        for t in TABLES:
            spec = specs.get(t)
            if spec is None:
                if t == "lines":
                    tables[t] = None
                    continue
                raise FormatError(f"table {t} missing", source=source, position="nodeflame.json")
            try:
                n = spec["rows"]
                if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 2**40:
                    raise ValueError(f"rows is {n!r}"[:100])
                columns = [(c["name"], c["type"], c) for c in spec["columns"]]
                if not all(isinstance(c[0], str) and isinstance(c[1], str) for c in columns):
                    raise TypeError("column name and type must be strings")
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise FormatError(f"table {t}: broken description ({type(e).__name__}: {e})", source=source,
                                  position=f"nodeflame.json tables.{t}",
                                  expected='{"rows": n, "columns": [{"name": ..., "type": ...}]}') from None
            cols = {}
            for name, kind, c in columns:
                where = f"{t}/{name}"
                try:
                    if kind == "category":
                        codes = _npy(_member(z, where + ".codes.npy", source, limits), source, where)
                        cats = c["categories"]
                        if not isinstance(cats, list) or not all(isinstance(v, (str, int, float, bool)) for v in cats):
                            raise TypeError("categories must be a list of strings or numbers")
                        values = pd.Categorical.from_codes(codes, categories=cats, ordered=bool(c.get("ordered", False)))
                    elif kind == "array":
                        values = _npy(_member(z, where + ".npy", source, limits), source, where)
                    elif kind == "json":
                        if not isinstance(c["values"], list):
                            raise TypeError("values must be a list")
                        values = np.empty(len(c["values"]), dtype=object)
                        values[:] = c["values"]
                    else:
                        raise FormatError(f"unknown column type {kind!r}", source=source, position=where)
                except KeyError:
                    raise FormatError(f"column data missing for {where}", source=source, position=where) from None
                except (ValueError, TypeError, OverflowError) as e:
                    raise FormatError(f"bad column {where}: {type(e).__name__}: {e}"[:300], source=source, position=where) from None
                if len(values) != n:
                    raise FormatError(f"{where} has {len(values)} rows, the table {n}", source=source, position=where)
                cols[name] = values
            tables[t] = pd.DataFrame(cols, index=pd.RangeIndex(n))
    meta = manifest.get("meta") or {}
    if not isinstance(meta, dict):
        raise FormatError(f"meta is {type(meta).__name__}", source=source, position="nodeflame.json meta",
                          expected="an object")
    try:
        prof = Profile(tables["funcs"], tables["frames"], tables["stacks"], tables["samples"], meta, tables["lines"])
        # the tables come as stored, not rebuilt: a damaged (or hand-made) file must not
        # give a Profile that breaks the model's invariants
        prof.validate()
    except InvariantError as e:
        raise FormatError(f"the tables break the model: {e}", source=source,
                          expected="a .nfprof written by nodeflame") from None
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, OverflowError) as e:
        raise FormatError(f"the tables do not form a profile: {type(e).__name__}: {e}"[:300], source=source,
                          expected="a .nfprof written by nodeflame") from None
    return prof


register_reader("nfprof", read_nfprof, sniff, (".nfprof",))


def jsonable(x):
    """A JSON value for what json cannot write (numpy scalars and arrays, sets, tuples; else str):
    the one encoding of metadata and object columns, shared by the nfprof writer and the dataset store."""
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)
