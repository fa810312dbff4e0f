"""Reader of nodeflame's own ``.nfprof`` files (see nodeflame/writers/nfprof.py)."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd

from ..errors import FormatError
from ..formats import register_reader
from ..profile import Profile

FORMAT = "nodeflame-profile"
VERSION = 1
TABLES = ("funcs", "frames", "stacks", "samples", "lines")


def sniff(head: bytes, _text) -> bool:
    return head.startswith(b"PK\x03\x04") and b"nodeflame.json" in head[:128]


def read_nfprof(data: bytes, source: str = "<nfprof>", **_options) -> Profile:
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise FormatError(f"not a zip file: {e}", source=source, expected="a .nfprof zip") from None
    with z:
        try:
            manifest = json.loads(z.read("nodeflame.json").decode("utf-8"))
        except KeyError:
            raise FormatError("no nodeflame.json in the zip", source=source, expected="a .nfprof zip") from None
        except (ValueError, zipfile.BadZipFile) as e:
            raise FormatError(f"broken nodeflame.json: {e}", source=source, position="nodeflame.json") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise FormatError("not a nodeflame profile", source=source, position="nodeflame.json",
                              expected=f'"format": "{FORMAT}"')
        if manifest.get("version", 0) > VERSION:
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
                n = int(spec["rows"])
                columns = [(c["name"], c["type"], c) for c in spec["columns"]]
            except (KeyError, TypeError, ValueError) as e:
                raise FormatError(f"table {t}: broken description ({type(e).__name__}: {e})", source=source,
                                  position=f"nodeflame.json tables.{t}",
                                  expected='{"rows": n, "columns": [{"name": ..., "type": ...}]}') from None
            cols = {}
            for name, kind, c in columns:
                where = f"{t}/{name}"
                try:
                    if kind == "category":
                        codes = np.load(io.BytesIO(z.read(where + ".codes.npy")), allow_pickle=False)
                        values = pd.Categorical.from_codes(codes, categories=c["categories"], ordered=c.get("ordered", False))
                    elif kind == "array":
                        values = np.load(io.BytesIO(z.read(where + ".npy")), allow_pickle=False)
                    elif kind == "json":
                        values = np.asarray(c["values"], dtype=object)
                    else:
                        raise FormatError(f"unknown column type {kind!r}", source=source, position=where)
                except KeyError:
                    raise FormatError(f"column data missing for {where}", source=source, position=where) from None
                except (ValueError, TypeError) as e:
                    raise FormatError(f"bad column {where}: {e}", source=source, position=where) from None
                if len(values) != n:
                    raise FormatError(f"{where} has {len(values)} rows, the table {n}", source=source, position=where)
                cols[name] = values
            tables[t] = pd.DataFrame(cols, index=pd.RangeIndex(n))
    meta = manifest.get("meta") or {}
    return Profile(tables["funcs"], tables["frames"], tables["stacks"], tables["samples"], meta, tables["lines"])


register_reader("nfprof", read_nfprof, sniff, (".nfprof",))
