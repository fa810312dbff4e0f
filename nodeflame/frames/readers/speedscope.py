"""speedscope's own file format (https://www.speedscope.app/file-format-schema.json).

``shared.frames`` holds ``{name, file?, line?, col?}`` (a frame named
``(anonymous)`` with a file is an anonymous JS function: name ``""``, as V8
gives it and as our writer writes it back); ``profiles`` holds
profiles of two types:

- ``sampled``: ``samples`` (lists of frame indices, root first) and
  ``weights``.  One sample row per entry.  When the unit is a time, sample i
  is placed at startValue + the weights before it (speedscope's time-order
  view does the same) and the profile is timed;
- ``evented``: ``O``/``C`` events with ``at`` values.  Each interval during
  which the open stack is constant becomes one sample row: weight = its
  duration, time = its start.  Intervals with nothing open are not samples.

Values in a time unit become nanoseconds (``meta['unit'] = 'nanoseconds'``);
``none`` and ``bytes`` keep their unit (a sampled profile in ``none`` counts
samples).  Several profiles in one file become several threads named after
the profiles (``profile=`` picks one by index or name).

Lines and columns are taken as 1-based, as the exporters that write them
(py-spy, rbspy, pyinstrument, 0x, this package) do; files that speedscope
itself exported from a Chrome profile carry V8's 0-based numbers.

Evented profiles are checked like speedscope checks them: a close event
whose frame is not the innermost open one is a FormatError naming the event
index; frames still open at the end are closed at ``endValue`` with a
FormatWarning (speedscope closes them the same way).  The matching of
open and close events is vectorised (per nesting level), not a Python loop
over events.
"""
from __future__ import annotations

import re
import warnings
from itertools import chain
from operator import itemgetter

import numpy as np

from ..build import FrameTable, build_profile
from ..errors import FormatError, FormatWarning
from ..formats import register_reader
from ..stacktable import stack_paths
from .jsonutil import head_text, is_finite, is_int, is_num, load_json, no_gc, num_array, type_name

_I64 = np.int64
TIME_UNITS = {"nanoseconds": 1, "microseconds": 1_000, "milliseconds": 1_000_000, "seconds": 1_000_000_000}
UNITS = tuple(TIME_UNITS) + ("none", "bytes")
_GET = dict.get


def _err(what, source, where, expected):
    return FormatError(what, source=source, position=where, expected=expected)


def _frames(doc, source) -> tuple[FrameTable, np.ndarray]:
    shared = doc.get("shared")
    if not isinstance(shared, dict):
        raise _err(f"shared is {'missing' if shared is None else type_name(shared)}", source, "shared",
                   "an object {frames: [...]}")
    frames = shared.get("frames")
    if not isinstance(frames, list):
        raise _err(f"shared.frames is {'missing' if frames is None else type_name(frames)}", source,
                   "shared.frames", "a list of {name, file?, line?, col?}")
    ft = FrameTable()
    ids = np.empty(len(frames), _I64)
    for i, fr in enumerate(frames):  # one per distinct frame, not per sample
        p = f"shared.frames[{i}]"
        if not isinstance(fr, dict):
            raise _err(f"{p} is {type_name(fr)}", source, p, "an object {name, file?, line?, col?}")
        name = fr.get("name")
        if not isinstance(name, str):
            raise _err(f"{p}.name is {'missing' if 'name' not in fr else type_name(name)}", source, f"{p}.name",
                       "a string")
        file = fr.get("file")
        if file is None:
            file = ""
        elif not isinstance(file, str):
            raise _err(f"{p}.file is {type_name(file)}", source, f"{p}.file", "a string")
        pos = []
        for k in ("line", "col"):
            v = fr.get(k)
            if v is None:
                pos.append(0)
            elif is_num(v) and v == v:
                pos.append(max(int(v), 0))
            else:
                raise _err(f"{p}.{k} is {type_name(v)}", source, f"{p}.{k}", "a number (1-based)")
        if name == "(anonymous)" and file:
            name = ""    # what V8 calls an anonymous function (functionName ""), as speedscope shows it
        ids[i] = ft.add(name, file, pos[0], pos[1])
    return ft, ids


def _number(prof, key, source, where, default=None, factor=None):
    v = prof.get(key, default)
    if not is_num(v):
        raise _err(f"{where}.{key} is {'missing' if key not in prof else type_name(v)}", source, f"{where}.{key}",
                   "a number")
    if not is_finite(v) or (factor and abs(float(v)) * factor >= _LIMIT):
        raise _err(f"{where}.{key} is {str(v)[:40]}", source, f"{where}.{key}",
                   "a finite number" + (" within ±146 years" if factor else ""))
    return v


_LIMIT = 2.0 ** 62  # any weight or time in ns must fit int64 with room for sums


def _check_range(values, source, path, what, expected):
    """FormatError at ``path(k)`` for the first value that is not finite or beyond ±2**62."""
    bad = np.flatnonzero(~(np.abs(values) < _LIMIT))
    if len(bad):
        k = int(bad[0])
        raise _err(f"{what(k)} is beyond any clock or count ({float(values[k]):g})", source, path(k), expected)


def _sampled(prof, source, where, nframes, factor, warns):
    """(offsets, flat frame indices, weights as float, times or None)."""
    samples = prof.get("samples")
    if not isinstance(samples, list):
        raise _err(f"{where}.samples is {'missing' if samples is None else type_name(samples)}", source,
                   f"{where}.samples", "a list of stacks (lists of frame indices, root first)")
    n = len(samples)
    try:
        lens = np.fromiter(map(len, samples), _I64, n)
        if not all(map(list.__instancecheck__, samples)):
            raise TypeError
    except TypeError:
        i = next(i for i, s in enumerate(samples) if not isinstance(s, list))
        raise _err(f"{where}.samples[{i}] is {type_name(samples[i])}", source, f"{where}.samples[{i}]",
                   "a list of frame indices") from None
    flat_l = list(chain.from_iterable(samples))
    offsets = np.zeros(n + 1, _I64)
    np.cumsum(lens, out=offsets[1:])
    if not set(map(type, flat_l)) <= {int}:
        k = next(k for k, v in enumerate(flat_l) if not is_int(v))
        i = int(np.searchsorted(offsets, k, side="right") - 1)
        raise _err(f"{where}.samples[{i}][{k - offsets[i]}] is {type_name(flat_l[k])}", source,
                   f"{where}.samples[{i}][{k - offsets[i]}]", "an integer index into shared.frames")
    try:
        flat = np.array(flat_l, _I64) if flat_l else np.empty(0, _I64)
    except OverflowError:  # an index beyond int64: out of range like any other
        flat = np.array([v if -1 <= v <= nframes else -1 for v in flat_l], _I64)
    bad = np.flatnonzero((flat < 0) | (flat >= nframes))
    if len(bad):
        k = int(bad[0])
        i = int(np.searchsorted(offsets, k, side="right") - 1)
        raise _err(f"{where}.samples[{i}][{k - offsets[i]}] is {flat_l[k]}, out of range"[:200], source,
                   f"{where}.samples[{i}][{k - offsets[i]}]",
                   f"an index into shared.frames (0..{nframes - 1})" if nframes else "no index: shared.frames is empty")
    w = prof.get("weights")
    if w is None:
        warns.append(f"{where}: no weights, each sample counts 1")
        weights = np.ones(n)
    else:
        weights = num_array(w, source, f"{where}.weights")
        if len(weights) != n:
            raise _err(f"{where}.weights has {len(weights)} entries for {n} samples", source, f"{where}.weights",
                       "one weight per sample")
        neg = np.flatnonzero(weights < 0)
        if len(neg):
            raise _err(f"{where}.weights[{int(neg[0])}] is negative", source, f"{where}.weights[{int(neg[0])}]",
                       "a weight >= 0")
    times = None
    if factor:
        start = float(prof.get("startValue", 0) or 0)
        with np.errstate(over="ignore"):
            t = (start + np.concatenate(([0.0], np.cumsum(weights)[:-1]))) * factor if n else np.empty(0)
        _check_range(t, source, lambda k: f"{where}.weights[{max(k - 1, 0)}]", lambda k: f"sample {k}'s time",
                     "startValue plus the weights before a sample within ±146 years")
        times = np.rint(t).astype(_I64)
    return offsets, flat, weights, times


def _evented(prof, source, where, nframes, frame_names, warns):
    """(offsets, flat frame indices, durations, starts) of an evented profile, in the file's value unit."""
    events = prof.get("events")
    if not isinstance(events, list):
        raise _err(f"{where}.events is {'missing' if events is None else type_name(events)}", source,
                   f"{where}.events", "a list of {type: 'O'|'C', frame, at}")
    n = len(events)
    try:
        typ = list(map(itemgetter("type"), events))
        frm = list(map(itemgetter("frame"), events))
        at_l = list(map(itemgetter("at"), events))
    except (KeyError, TypeError):
        for i, ev in enumerate(events):
            if not isinstance(ev, dict):
                raise _err(f"{where}.events[{i}] is {type_name(ev)}", source, f"{where}.events[{i}]",
                           "an object {type, frame, at}") from None
            for k in ("type", "frame", "at"):
                if k not in ev:
                    raise _err(f"{where}.events[{i}].{k} is missing", source, f"{where}.events[{i}].{k}",
                               "an object {type: 'O'|'C', frame, at}") from None
        raise
    is_open = np.fromiter(map("O".__eq__, typ), bool, n)
    is_close = np.fromiter(map("C".__eq__, typ), bool, n)
    bad = np.flatnonzero(~(is_open | is_close))
    if len(bad):
        i = int(bad[0])
        raise _err(f"{where}.events[{i}].type is {typ[i]!r}", source, f"{where}.events[{i}].type", "'O' or 'C'")
    if not set(map(type, frm)) <= {int}:
        i = next(i for i, v in enumerate(frm) if not is_int(v))
        raise _err(f"{where}.events[{i}].frame is {type_name(frm[i])}", source, f"{where}.events[{i}].frame",
                   "an integer index into shared.frames")
    try:
        frame = np.array(frm, _I64) if n else np.empty(0, _I64)
    except OverflowError:  # an index beyond int64: out of range like any other
        frame = np.array([v if -1 <= v <= nframes else -1 for v in frm], _I64)
    bad = np.flatnonzero((frame < 0) | (frame >= nframes))
    if len(bad):
        i = int(bad[0])
        raise _err(f"{where}.events[{i}].frame is {frm[i]}, out of range"[:200], source,
                   f"{where}.events[{i}].frame", f"an index into shared.frames (0..{nframes - 1})")
    try:
        at = num_array(at_l, source, f"{where}.events[].at") if set(map(type, at_l)) <= {int, float} else None
    except FormatError:  # NaN, ±Infinity or beyond a float: say which event
        i = next(i for i, v in enumerate(at_l) if not is_finite(v))
        raise _err(f"{where}.events[{i}].at is {str(at_l[i])[:40]}", source, f"{where}.events[{i}].at",
                   "a finite number") from None
    if at is None:
        i = next(i for i, v in enumerate(at_l) if not is_num(v))
        raise _err(f"{where}.events[{i}].at is {type_name(at_l[i])}", source, f"{where}.events[{i}].at", "a number")
    dec = np.flatnonzero(np.diff(at) < 0)
    if len(dec):
        i = int(dec[0]) + 1
        raise _err(f"{where}.events[{i}].at is {at_l[i]}, before the previous event's {at_l[i - 1]}", source,
                   f"{where}.events[{i}].at", "non-decreasing 'at' values")
    depth = np.cumsum(np.where(is_open, 1, -1)) if n else np.empty(0, _I64)
    under = np.flatnonzero(depth < 0)
    if len(under):
        i = int(under[0])
        raise _err(f"{where}.events[{i}] closes frame {int(frame[i])} ({frame_names(frame[i])!r}) but no frame is "
                   "open", source, f"{where}.events[{i}]", "every close to match an earlier open")
    open_left = int(depth[-1]) if n else 0
    end_value = prof.get("endValue")
    if open_left:
        # speedscope closes frames still open at the end; do the same at endValue and say so
        end_at = max(float(end_value) if is_num(end_value) else float(at[-1]), float(at[-1]))
        level = np.where(is_open, depth - 1, depth)
        # the innermost open frame of each level still open: the last open of that level
        still = []
        for lv in range(open_left - 1, -1, -1):
            still.append(int(np.flatnonzero(is_open & (level == lv))[-1]))
        msg = (f"{source}: {where}: {open_left} frame(s) still open at the end (opened at events "
               f"{', '.join(map(str, sorted(still)[:10]))}); closed at {end_at:g} as speedscope does")
        warnings.warn(msg, FormatWarning, stacklevel=5)
        warns.append(msg)
        frame = np.concatenate((frame, frame[still]))
        at = np.concatenate((at, np.full(open_left, end_at)))
        is_open = np.concatenate((is_open, np.zeros(open_left, bool)))
        depth = np.cumsum(np.where(is_open, 1, -1))
        n = len(frame)
    if n == 0:
        return np.zeros(1, _I64), np.empty(0, _I64), np.empty(0), np.empty(0)
    idx = np.arange(n, dtype=_I64)
    level = np.where(is_open, depth - 1, depth)
    # Within one nesting level, events alternate open, close, open, close...: after a stable
    # sort by (level, index) every close sits right after the open it matches.
    order = np.lexsort((idx, level))
    closes_sorted = np.flatnonzero(~is_open[order])
    close_ev = order[closes_sorted]
    open_ev = order[closes_sorted - 1]
    mism = np.flatnonzero(frame[close_ev] != frame[open_ev])
    if len(mism):
        k = mism[np.argmin(close_ev[mism])]
        i, j = int(close_ev[k]), int(open_ev[k])
        raise _err(f"{where}.events[{i}] closes frame {int(frame[i])} ({frame_names(frame[i])!r}) but the innermost "
                   f"open frame is {int(frame[j])} ({frame_names(frame[j])!r}), opened at events[{j}]", source,
                   f"{where}.events[{i}]", "close events in the reverse order of their opens")
    match = np.full(n, -1, _I64)
    match[close_ev] = open_ev
    # parent of an open at level L: the last open at level L-1 before it
    op = np.flatnonzero(is_open)
    key_open = level[op] * (n + 1) + op
    srt = np.sort(key_open)
    lv = level[op]
    parent_of_open = np.full(n, -1, _I64)
    deep = lv > 0
    q = (lv[deep] - 1) * (n + 1) + op[deep]
    pos = np.searchsorted(srt, q) - 1
    parent_of_open[op[deep]] = srt[pos] % (n + 1)
    # innermost open event after each event: the event itself for an open, else the parent of what it closed
    cur = np.where(is_open, idx, parent_of_open[np.maximum(match, 0)])
    cur = np.where(is_open | (match >= 0), cur, -1)
    dur = np.diff(at)
    keep = np.flatnonzero((cur[:-1] >= 0) & (dur > 0))
    nodes = cur[keep]
    # root-first paths of the open events, mapped to frames
    offsets, flat_nodes = stack_paths(parent_of_open, nodes)
    return offsets, frame[flat_nodes], dur[keep], at[keep]


def read_speedscope(data: bytes, source: str = "<speedscope>", *, profile=None):
    """Read a speedscope JSON file.  ``profile`` (index or name) reads one profile only."""
    with no_gc():
        doc = load_json(data, source, "a speedscope file (JSON)")
        return _read(doc, source, profile)


def _read(doc, source, only):
    if not isinstance(doc, dict):
        raise _err(f"top level is {type_name(doc)}", source, None,
                   "a speedscope object {$schema, shared: {frames}, profiles}")
    profiles = doc.get("profiles")
    if not isinstance(profiles, list):
        raise _err(f"profiles is {'missing' if profiles is None else type_name(profiles)}", source, "profiles",
                   "a list of sampled or evented profiles")
    ft, frame_ids = _frames(doc, source)
    nframes = len(frame_ids)
    names_tab = doc["shared"]["frames"]

    def frame_name(i):
        return names_tab[int(i)].get("name")

    chosen = list(range(len(profiles)))
    if only is not None:
        if isinstance(only, int):
            if not -len(profiles) <= only < len(profiles):
                raise FormatError(f"no profile {only}: the file has {len(profiles)}", source=source)
            chosen = [only % len(profiles)]
        else:
            chosen = [j for j, pr in enumerate(profiles) if isinstance(pr, dict) and pr.get("name") == only]
            if not chosen:
                raise FormatError(f"no profile named {only!r}", source=source, expected="one of " + ", ".join(
                    repr(pr.get("name")) for pr in profiles if isinstance(pr, dict)))
    warns: list[str] = []
    offs, flats, weights, times, threads = [], [], [], [], []
    units, seen_names = [], {}
    all_timed = True
    start_vals, end_vals = [], []
    for j in chosen:
        pr = profiles[j]
        where = f"profiles[{j}]"
        if not isinstance(pr, dict):
            raise _err(f"{where} is {type_name(pr)}", source, where, "a sampled or evented profile object")
        typ = pr.get("type", "evented" if "events" in pr else "sampled" if "samples" in pr else None)
        unit = pr.get("unit", "none")
        if unit not in UNITS:
            raise _err(f"{where}.unit is {unit!r}", source, f"{where}.unit", "one of " + ", ".join(UNITS))
        factor = TIME_UNITS.get(unit)
        start_v = _number(pr, "startValue", source, where, 0, factor)
        end_v = _number(pr, "endValue", source, where, start_v, factor)
        name = pr.get("name")
        thread = name if isinstance(name, str) and name else f"profile {j}"
        k = seen_names.get(thread, 0)
        seen_names[thread] = k + 1
        if k:
            thread = f"{thread} ({k + 1})"
        if typ == "sampled":
            o, f, w, t = _sampled(pr, source, where, nframes, factor, warns)
            units.append("samples" if unit == "none" else unit)
        elif typ == "evented":
            o, f, w, t = _evented(pr, source, where, nframes, frame_name, warns)
            units.append(unit)
            if factor:
                with np.errstate(over="ignore"):
                    t = t * factor
                _check_range(t, source, lambda k: f"{where}.events", lambda k: f"an 'at' value of {where}.events",
                             "'at' values within ±146 years")
            t = np.rint(t).astype(_I64) if factor else None
        else:
            raise _err(f"{where}.type is {typ!r}", source, f"{where}.type", "'sampled' or 'evented'")
        if factor:
            with np.errstate(over="ignore"):  # beyond any clock: _check_range says where
                w = w * factor
            start_vals.append(start_v * factor)
            end_vals.append(end_v * factor)
        if typ == "sampled":
            _check_range(w, source, lambda k: f"{where}.weights[{k}]", lambda k: f"{where}.weights[{k}]",
                         "a weight below 2**62 (ns, if a time)")
        else:  # an interval between two events' 'at' values
            _check_range(w, source, lambda k: f"{where}.events", lambda k: f"an interval of {where}.events",
                         "'at' values within ±146 years")
        wi = np.rint(w).astype(_I64)
        if len(w) and not factor and (np.abs(w - wi) > 1e-9).any():
            warns.append(f"{where}: fractional {unit!r} weights rounded to integers")
        all_timed &= t is not None
        offs.append(o)
        flats.append(f)
        weights.append(wi)
        times.append(t)
        threads.append(np.full(len(wi), thread, dtype=object))
    # one CSR over all profiles
    flat = np.concatenate(flats) if flats else np.empty(0, _I64)
    shift = np.cumsum([0] + [len(f) for f in flats[:-1]])
    offsets = np.concatenate([np.zeros(1, _I64)] + [o[1:] + s for o, s in zip(offs, shift)])
    w = np.concatenate(weights) if weights else np.empty(0, _I64)
    kinds = {"nanoseconds" if u in TIME_UNITS else u for u in units}
    if len(kinds) > 1:
        warns.append(f"profiles mix units ({', '.join(sorted(kinds))}); weights are not comparable")
    unit = "nanoseconds" if kinds == {"nanoseconds"} else (units[0] if units else "samples")
    if unit in TIME_UNITS:
        unit = "nanoseconds"
    timed = bool(all_timed and chosen)
    meta = {"source_format": "speedscope", "unit": unit, "timed": timed, "warnings": warns}
    if start_vals:
        meta["start_time"] = int(round(min(start_vals)))
        meta["duration_ns"] = int(round(max(end_vals) - min(start_vals)))
    thr = np.concatenate(threads) if threads else np.empty(0, object)
    return build_profile(ft, offsets, frame_ids[flat] if len(flat) else flat, weights=w,
                         times=np.concatenate(times) if timed else None,
                         threads=thr if len(set(thr.tolist())) > 1 or (len(thr) and thr[0] != "main") else None,
                         meta=meta)


_SCHEMA = re.compile(r'"\$schema"\s*:\s*"[^"]*speedscope')
_SHARED = re.compile(r'"shared"\s*:\s*\{')
_PROFILES = re.compile(r'"profiles"\s*:\s*\[')


def sniff(head: bytes, text: str | None) -> bool:
    t = head_text(head, text)
    if t is None:
        return False
    s = t.lstrip("\ufeff \t\r\n")
    if not s.startswith("{"):
        return False
    return bool(_SCHEMA.search(s)) or bool(_SHARED.search(s) and _PROFILES.search(s))


register_reader("speedscope", read_speedscope, sniff, (".speedscope.json",))
