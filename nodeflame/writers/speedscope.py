"""speedscope JSON (https://www.speedscope.app/file-format-schema.json).

One ``sampled`` profile per thread, named after the thread, samples in time
order; ``shared.frames`` has one entry per frame (name, and file/line/col
when known, lines and columns 1-based).  Units: ``nanoseconds`` stays,
``samples``/``count`` become ``none``, ``bytes`` stays; anything else is
written as ``none``.  ``startValue`` is 0 and ``endValue`` the profile's total
weight, as speedscope's own exporter does.
"""
from __future__ import annotations

import json

import numpy as np

from ..frames.stacktable import stack_paths

SCHEMA = "https://www.speedscope.app/file-format-schema.json"
_UNITS = {"nanoseconds": "nanoseconds", "microseconds": "microseconds", "milliseconds": "milliseconds",
          "seconds": "seconds", "bytes": "bytes"}


def _exporter() -> str:
    try:
        from importlib.metadata import version
        return f"nodeflame@{version('nodeflame')}"
    except Exception:  # not installed as a distribution (running from a source tree)
        return "nodeflame"


def speedscope_dict(p, *, name: str | None = None) -> dict:
    f, fr = p.funcs, p.frames
    fnames = f["name"].astype(str).to_numpy(object)
    ffiles = f["file"].astype(str).to_numpy(object)
    frames = []
    for fu, ln, co in zip(fr["func"].tolist(), fr["line"].tolist(), fr["column"].tolist()):
        # an anonymous JS function as speedscope's own importers name it (read back as ""); an empty
        # name without a file stays empty, so that every name reads back as it was
        d = {"name": fnames[fu] or ("(anonymous)" if ffiles[fu] else "")}
        if ffiles[fu]:
            d["file"] = ffiles[fu]
        if ln > 0:
            d["line"] = ln
        if co > 0:
            d["col"] = co
        frames.append(d)
    a = p.arrays()
    s = p.samples
    stack = s["stack"].to_numpy().astype(np.int64)
    weight = s["weight"].to_numpy().astype(np.int64)
    # root-first frame lists, computed once per distinct stack
    ust, inv = np.unique(stack, return_inverse=True)
    offsets, flat = stack_paths(a["prefix"], ust, a["depth"])
    flat_frames = a["frame"][flat].tolist()
    ol = offsets.tolist()
    stack_lists = [flat_frames[ol[i]:ol[i + 1]] for i in range(len(ust))]
    unit = _UNITS.get(str(p.meta.get("unit")), "none")
    thread_codes = s["thread"].cat.codes.to_numpy()
    cats = [str(c) for c in s["thread"].cat.categories]
    order = np.argsort(s["time_ns"].to_numpy(), kind="stable") if p.meta.get("timed") else np.arange(len(s))
    profiles = []
    for code, tname in enumerate(cats):
        rows = order[thread_codes[order] == code]
        if not len(rows):
            continue
        w = weight[rows]
        profiles.append({
            "type": "sampled",
            "name": tname,
            "unit": unit,
            "startValue": 0,
            "endValue": int(w.sum()),
            "samples": [stack_lists[i] for i in inv[rows].tolist()],
            "weights": w.tolist(),
        })
    src = p.meta.get("source")
    return {
        "$schema": SCHEMA,
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": name or (str(src).rsplit("/", 1)[-1] if src else "nodeflame profile"),
        "activeProfileIndex": 0,
        "exporter": _exporter(),
    }


def write_speedscope(p, out, *, name: str | None = None, indent: int | None = None, **_):
    doc = speedscope_dict(p, name=name)
    out.write(json.dumps(doc, separators=(",", ":") if indent is None else None, indent=indent,
                         ensure_ascii=False).encode("utf-8"))
