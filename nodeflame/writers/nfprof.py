"""nodeflame's own lossless format (``.nfprof``): the tables and metadata in a zip.

Layout of the zip (first entry ``nodeflame.json`` so readers can sniff it)::

    nodeflame.json            {"format": "nodeflame-profile", "version": 1, "meta": {...},
                               "tables": {"funcs": {"rows": n, "columns": [...]}, ...}}
    funcs/line.npy            one .npy per numeric column (numpy's own format)
    funcs/name.codes.npy      categorical columns: codes here, categories in nodeflame.json
    ...

Every column of ``funcs``, ``frames``, ``stacks``, ``samples`` and ``lines``
(extra columns too), every dtype and every category survive a round trip;
``meta`` goes through JSON (numpy scalars become Python numbers).  Only numpy
and the standard library are used.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd

from ..frames.readers.nfprof import FORMAT, TABLES, VERSION, jsonable  # one definition of the layout, the reader's


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def write_nfprof(p, out, **_options) -> None:
    manifest = {"format": FORMAT, "version": VERSION, "meta": p.meta, "tables": {}}
    files = {}
    for t in TABLES:
        df = getattr(p, t)
        cols = []
        for c in df.columns:
            s = df[c]
            path = f"{t}/{c}"
            if isinstance(s.dtype, pd.CategoricalDtype):
                cats = s.cat.categories
                cols.append({"name": c, "type": "category", "categories": [jsonable(v) if not isinstance(v, str)
                                                                           else v for v in cats],
                             "ordered": bool(s.cat.ordered)})
                files[path + ".codes.npy"] = _npy(s.cat.codes.to_numpy())
            elif s.dtype.kind in "biufcmM":
                cols.append({"name": c, "type": "array"})
                files[path + ".npy"] = _npy(s.to_numpy())
            else:  # object or string columns: JSON values
                cols.append({"name": c, "type": "json", "values": [jsonable(v) if not isinstance(v, (str, int, float, bool, type(None))) else v
                                                                 for v in s.tolist()]})
        manifest["tables"][t] = {"rows": len(df), "columns": cols}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        z.writestr("nodeflame.json", json.dumps(manifest, default=jsonable, ensure_ascii=False))
        for name, data in files.items():
            z.writestr(name, data)


def to_bytes(p) -> bytes:
    buf = io.BytesIO()
    write_nfprof(p, buf)
    return buf.getvalue()
