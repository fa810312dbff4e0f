"""pprof: a gzipped ``perftools.profiles.Profile`` (google/pprof ``proto/profile.proto``).

What ``go tool pprof`` and other pprof readers get:

- ``sample_type``: ``samples/count`` and, for a profile with a period or in a
  time unit, ``cpu/nanoseconds`` last (pprof shows the last by default, as for
  Go's own CPU profiles; ``default_sample_type`` is left unset).  A profile in
  samples with ``period_ns`` gets cpu = count * period; one in nanoseconds
  writes its weights as cpu and its ``samples.count`` column (else the number
  of sample rows) as the count.  Other units (``bytes``) are written as
  ``<type>/<unit>`` after the count.
- Samples are aggregated by (stack, thread): pprof has no per-sample times, so
  time order is not kept.  Each carries a ``thread`` string label.
- One ``Function`` per function (name, system_name = name, filename,
  start_line = the function's line); one ``Location`` per distinct (function,
  line, column) of the frames, with one ``Line`` (the frame's line and
  column), so each frame stays its own location (no inlining).  Locations
  point at a mapping with ``has_functions``/``has_filenames``/
  ``has_line_numbers`` set (nothing to symbolize); kernel frames at a mapping
  named ``[kernel.kallsyms]``, as perf_to_profile writes them, and functions
  whose kind their name and file do not tell (JavaScript without a file,
  builtins, native code in a .js file) at mappings named ``[jit]``,
  ``[v8 builtins]``, ``[native]``, which our reader turns back into kinds.
- ``string_table[0]`` is ``""``; ``time_nanos`` is the start time when
  ``meta['start_time']`` is a wall-clock time (epoch seconds or epoch
  nanoseconds), ``duration_nanos`` ``meta['duration_ns']``, ``period_type``
  ``cpu/nanoseconds`` with ``period`` = ``meta['period_ns']``.

Lost on the way: frame labels and tiers, function columns, sample times.
"""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd

from ..frames.kinds import classify
from ..frames.pprof_schema import messages
from ..frames.readers.pprof import kind_hint
from ..frames.stacktable import stack_paths

_I64 = np.int64
_TIME_UNITS = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000, "seconds": 1_000_000_000}
_COUNT_UNITS = ("samples", "count", "none", "")
# mappings tried in turn for a function's kind (see the reader's MAPPING_HINTS)
_MAPPINGS = ("", "[kernel.kallsyms]", "[jit]", "[v8 builtins]", "[native]")


class _Strings:
    def __init__(self):
        self.index = {"": 0}
        self.table = [""]

    def __call__(self, s) -> int:
        s = "" if s is None else str(s)
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def _epoch_ns(start):
    """``meta['start_time']`` as nanoseconds since the epoch, or 0 when it is not a wall-clock time."""
    if start is None or isinstance(start, bool):
        return 0
    try:
        v = float(start)
    except (TypeError, ValueError):
        return 0
    if 1e8 < v < 1e11:  # seconds since the epoch (capture backends)
        return int(round(v * 1e9))
    if 1e17 < v < 1e19:  # nanoseconds since the epoch
        return int(start)
    return 0  # a monotonic clock (V8's timestamps): not a time of collection


def _mapping_for(name: str, file: str, kind: str) -> str:
    """Name of the mapping a function's locations point at: "" (the program) unless the
    reader could not tell the function's kind from its name and file alone."""
    for m in _MAPPINGS:
        if classify(name, file, kind_hint(file, m)) == kind:
            return m
    return ""


def _leaf_first_paths(p, stacks, loc_of_frame):
    """Leaf-first location ids of each stack in ``stacks``, as lists."""
    a = p.arrays()
    off, flat = stack_paths(a["prefix"], stacks, a["depth"])
    # reversed, the root-first CSR holds the stacks in reverse order, each leaf first
    rev = loc_of_frame[a["frame"][flat]][::-1].tolist()
    t = len(rev)
    bounds = off.tolist()
    return [rev[t - bounds[i + 1]:t - bounds[i]] for i in range(len(stacks))]


def pprof_message(p):
    """The profile as a ``perftools.profiles.Profile`` message (not yet serialised)."""
    M = messages()
    S = _Strings()
    prof = M.Profile()
    meta = p.meta
    unit = str(meta.get("unit") or "samples")
    period = meta.get("period_ns")
    period = int(period) if period and period > 0 else 0

    # ---- aggregate by (thread, stack)
    s = p.samples
    nst = len(p.stacks)
    st = s["stack"].to_numpy().astype(_I64)
    th = s["thread"].cat.codes.to_numpy().astype(_I64)
    key = th * (nst + 1) + st
    uk, inv = np.unique(key, return_inverse=True)
    w = np.bincount(inv, weights=s["weight"].to_numpy(), minlength=len(uk))
    rows = np.bincount(inv, minlength=len(uk)).astype(_I64)
    has_count = "count" in s.columns
    cnt = np.bincount(inv, weights=s["count"].to_numpy(), minlength=len(uk)) if has_count else None
    g_stack, g_thread = uk % (nst + 1), uk // (nst + 1)

    # ---- sample types and values (columns)
    stype = str(meta.get("sample_type") or "")
    tname = stype.split("/", 1)[0] if stype else ""
    if unit in _COUNT_UNITS:
        types = [("samples", "count")]
        cols = [np.rint(w).astype(_I64)]
        if period:
            types.append(("cpu", "nanoseconds"))
            cols.append(cols[0] * period)
    else:
        types = [("samples", "count")]
        cols = [np.rint(cnt).astype(_I64) if has_count else rows]
        if unit in _TIME_UNITS:
            types.append((tname if tname and tname != "samples" else "cpu", "nanoseconds"))
            cols.append(np.rint(w * _TIME_UNITS[unit]).astype(_I64))
        else:
            types.append((tname if tname and tname != "samples" else "value", unit))
            cols.append(np.rint(w).astype(_I64))
    for t, u in types:
        prof.sample_type.add(type=S(t), unit=S(u))
    values = np.stack(cols, axis=1).tolist() if len(uk) else []

    # ---- functions, mappings, locations
    f, fr = p.funcs, p.frames
    ff = fr["func"].to_numpy().astype(_I64)
    loc_key = pd.MultiIndex.from_arrays([ff, fr["line"].to_numpy(), fr["column"].to_numpy()])
    loc_codes, loc_uniq = pd.factorize(loc_key)
    loc_of_frame = loc_codes.astype(_I64) + 1  # location ids start at 1
    loc_func = np.asarray(loc_uniq.get_level_values(0), _I64)
    loc_line = np.asarray(loc_uniq.get_level_values(1), _I64).tolist()
    loc_col = np.asarray(loc_uniq.get_level_values(2), _I64).tolist()
    used_funcs = np.unique(loc_func)
    names = f["name"].astype(str).to_numpy(object)
    files = f["file"].astype(str).to_numpy(object)
    kinds = f["kind"].astype(str).to_numpy(object)
    flines = f["line"].to_numpy().astype(_I64)
    mapping_ids: dict[str, int] = {}
    func_mapping = np.ones(len(f), _I64)
    for i in used_funcs.tolist():  # one per function
        nm = S(names[i])
        prof.function.add(id=i + 1, name=nm, system_name=nm, filename=S(files[i]), start_line=int(flines[i]))
        m = _mapping_for(names[i], files[i], kinds[i])
        if m not in mapping_ids:
            mapping_ids[m] = len(mapping_ids) + 1
            prof.mapping.add(id=mapping_ids[m], filename=S(m), has_functions=True, has_filenames=True,
                             has_line_numbers=True)
        func_mapping[i] = mapping_ids[m]
    Line = M.Line
    for j, (fn, line, col) in enumerate(zip(loc_func.tolist(), loc_line, loc_col)):  # one per location
        prof.location.add(id=j + 1, mapping_id=int(func_mapping[fn]),
                          line=[Line(function_id=fn + 1, line=line, column=col)])

    # ---- samples
    paths = _leaf_first_paths(p, g_stack, loc_of_frame)
    thread_key = S("thread")
    cats = s["thread"].cat.categories.astype(str).tolist()
    thread_str = [S(c) for c in cats]
    Sample, Label = M.Sample, M.Label
    labels = [Label(key=thread_key, str=x) for x in thread_str]
    prof.sample.extend(Sample(location_id=path, value=v, label=[labels[t]])
                       for path, v, t in zip(paths, values, g_thread.tolist()))

    # ---- profile-wide fields
    t0 = _epoch_ns(meta.get("start_time"))
    if t0:
        prof.time_nanos = t0
    dur = meta.get("duration_ns")
    if dur:
        prof.duration_nanos = int(dur)
    if period:
        prof.period_type.type = S("cpu")
        prof.period_type.unit = S("nanoseconds")
        prof.period = period
    for c in meta.get("comments") or []:
        prof.comment.append(S(c))
    for k in ("drop_frames", "keep_frames"):
        if meta.get(k):
            setattr(prof, k, S(meta[k]))
    prof.string_table.extend(S.table)
    return prof


def write_pprof(p, out, **_):
    data = pprof_message(p).SerializeToString()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(data)
