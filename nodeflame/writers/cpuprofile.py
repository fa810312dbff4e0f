"""V8 ``.cpuprofile`` (the DevTools protocol's ``Profiler.Profile``), as Chrome
DevTools, VS Code, speedscope and ``nodeflame.read`` open it.

- one node per stack (id = stack id + 2) under an artificial ``(root)`` node
  (id 1); ``children`` lists, ``hitCount`` = samples whose leaf the node is,
  ``positionTicks`` from ``profile.lines``;
- ``callFrame`` lines and columns are 0-based (-1 when unknown), as V8 writes
  them; ``scriptId`` is ``"0"`` for V8-internal functions (no file and kind
  builtin/native/gc/idle/program) and one id per distinct file otherwise;
- ``samples`` + ``timeDeltas`` in µs, ``startTime``/``endTime`` in µs.

Weights: a cpuprofile has one sample per tick, so a row of weight w in a
profile counted in samples becomes w samples.  A profile whose unit is a time
(``nanoseconds`` &c., e.g. read from an evented speedscope file) writes one
sample per row and spends its weight as that sample's time interval, which is
how DevTools measures a sample's duration (time to the next sample).

Several threads cannot be told apart in one cpuprofile: their samples are
merged in time order (pass ``thread=`` to write one) and a FormatWarning says so.
"""
from __future__ import annotations

import json
import warnings

import numpy as np

from ..frames.errors import FormatWarning, NodeflameError

_I64 = np.int64
_TIME_UNITS = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000, "seconds": 1_000_000_000}
_COUNT_UNITS = ("samples", "count", "none", "")
SYNTH_INTERVAL_US = 1000


def _select_thread(p, thread):
    s = p.samples
    if thread is not None:
        mask = (s["thread"].astype(str) == str(thread)).to_numpy()
        if not mask.any():
            raise NodeflameError(f"no thread {thread!r} in the profile; threads: {', '.join(p.threads)}")
        return s[mask]
    if len(p.threads) > 1:
        warnings.warn(f"cpuprofile holds one thread: samples of {len(p.threads)} threads "
                      f"({', '.join(p.threads[:5])}{', ...' if len(p.threads) > 5 else ''}) are merged; "
                      "pass thread= to write one", FormatWarning, stacklevel=4)
    return s


def cpuprofile_dict(p, *, thread: str | None = None, max_samples: int = 50_000_000) -> dict:
    """The profile as a ``Profiler.Profile`` dict (see the module docstring)."""
    s = _select_thread(p, thread)
    timed = bool(p.meta.get("timed"))
    unit = str(p.meta.get("unit") or "samples")
    stack = s["stack"].to_numpy().astype(_I64)
    weight = s["weight"].to_numpy().astype(_I64)
    t_ns = s["time_ns"].to_numpy().astype(_I64)
    if timed and len(t_ns) and (np.diff(t_ns) < 0).any():  # merged threads: back in time order
        order = np.argsort(t_ns, kind="stable")
        stack, weight, t_ns = stack[order], weight[order], t_ns[order]
    start_ns = p.meta.get("start_time")
    if unit in _TIME_UNITS:
        # one sample per row; its weight is its duration (converted to ns)
        dur_ns = weight * _TIME_UNITS[unit]
        keep = dur_ns > 0
        stack, dur_ns, t_ns = stack[keep], dur_ns[keep], t_ns[keep]
        if not timed:
            # untimed: lay the samples end to end, each lasting its weight
            base = int(start_ns or 0)
            t_ns = base + np.concatenate(([0], np.cumsum(dur_ns)[:-1])) if len(dur_ns) else dur_ns
        end_ns = int(t_ns[-1] + dur_ns[-1]) if len(t_ns) else int(start_ns or 0)
        t_us = np.rint(t_ns / 1000.0).astype(_I64)
        first_us = int(t_us[0]) if len(t_us) else int(round((start_ns or 0) / 1000))
        start_us = first_us if start_ns is None or not timed else min(int(round(start_ns / 1000)), first_us)
        end_us = max(int(round(end_ns / 1000)), int(t_us[-1]) if len(t_us) else start_us)
    else:
        if unit not in _COUNT_UNITS:
            warnings.warn(f"weights in {unit!r} written as sample counts", FormatWarning, stacklevel=3)
        total = int(weight.sum())
        if total > max_samples:
            raise NodeflameError(f"the profile has {total:,} samples, more than max_samples={max_samples:,}; "
                                 "a cpuprofile lists every sample")
        stack = np.repeat(stack, weight)
        t_ns = np.repeat(t_ns, weight)
        if timed:
            t_us = np.rint(t_ns / 1000.0).astype(_I64)
            first = int(t_us[0]) if len(t_us) else 0
            start_us = first if start_ns is None else min(int(round(start_ns / 1000)), first)
            dur = p.meta.get("duration_ns")
            end_us = int(t_us[-1]) if len(t_us) else start_us
            if start_ns is not None and dur is not None:
                end_us = max(end_us, int(round((start_ns + dur) / 1000)))
        else:
            # An untimed profile (folded, pprof aggregates, hitCount-only cpuprofiles) has
            # no sample times: synthesize evenly spaced samples, SYNTH_INTERVAL_US (1 ms)
            # apart, so that DevTools shows each sample as 1 ms of time.
            start_us = int(round(start_ns / 1000)) if start_ns is not None else 0
            t_us = start_us + SYNTH_INTERVAL_US * np.arange(1, len(stack) + 1, dtype=_I64)
            end_us = int(t_us[-1]) + SYNTH_INTERVAL_US if len(t_us) else start_us
    deltas = np.diff(np.concatenate(([start_us], t_us))) if len(t_us) else np.empty(0, _I64)

    # ---- nodes: (root) = id 1, stack s = id s + 2
    a = p.arrays()
    prefix, frame = a["prefix"], a["frame"]
    nst = len(prefix)
    node_id = np.arange(nst, dtype=_I64) + 2
    hits = np.bincount(stack, minlength=nst) if nst else np.empty(0, _I64)
    par_id = np.where(prefix >= 0, prefix + 2, 1)
    order = np.argsort(par_id, kind="stable")
    child_ids = node_id[order].tolist()
    bounds = np.searchsorted(par_id[order], np.arange(1, nst + 3)).tolist()  # children of id k: bounds[k-1]:bounds[k]

    f, fr = p.funcs, p.frames
    fnames = f["name"].astype(str).to_numpy(object)
    ffiles = f["file"].astype(str).to_numpy(object)
    fkinds = f["kind"].astype(str).to_numpy(object)
    script = {}
    sid = []
    for name, file, kind in zip(fnames, ffiles, fkinds):  # one per distinct function
        if file:
            sid.append(script.setdefault(file, str(len(script) + 1)))
        elif kind in ("js", "deps", "node"):
            sid.append(script.setdefault("", str(len(script) + 1)))  # code without a url (eval)
        else:
            sid.append("0")
    ffunc = fr["func"].to_numpy()
    flines = fr["line"].to_numpy().astype(_I64) - 1
    fcols = fr["column"].to_numpy().astype(_I64) - 1
    call_frames = [{"functionName": fnames[fu], "scriptId": sid[fu], "url": ffiles[fu],
                    "lineNumber": int(ln), "columnNumber": int(co)}
                   for fu, ln, co in zip(ffunc.tolist(), flines.tolist(), fcols.tolist())]
    ticks: dict = {}
    if len(p.lines):
        for st, ln, tk in zip(p.lines["stack"].tolist(), p.lines["line"].tolist(), p.lines["ticks"].tolist()):
            ticks.setdefault(st, []).append({"line": ln, "ticks": tk})
    nodes = [{"id": 1, "callFrame": {"functionName": "(root)", "scriptId": "0", "url": "",
                                     "lineNumber": -1, "columnNumber": -1},
              "hitCount": 0, "children": child_ids[bounds[0]:bounds[1]]}]
    hl = hits.tolist()
    frl = frame.tolist()
    for s_ in range(nst):
        nd = {"id": s_ + 2, "callFrame": call_frames[frl[s_]], "hitCount": hl[s_],
              "children": child_ids[bounds[s_ + 1]:bounds[s_ + 2]]}
        pt = ticks.get(s_)
        if pt:
            nd["positionTicks"] = pt
        nodes.append(nd)
    return {"nodes": nodes, "startTime": int(start_us), "endTime": int(end_us),
            "samples": (stack + 2).tolist(), "timeDeltas": deltas.astype(_I64).tolist()}


def write_cpuprofile(p, out, *, thread: str | None = None, indent: int | None = None, **_):
    doc = cpuprofile_dict(p, thread=thread)
    text = json.dumps(doc, separators=(",", ":") if indent is None else None, indent=indent,
                      ensure_ascii=False)
    out.write(text.encode("utf-8"))
