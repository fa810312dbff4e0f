"""V8's CPU profiles as the DevTools protocol gives them (``Profiler.Profile``), made Profiles.

The work every reader of V8 profiles shares: one profile object (protocol form,
or the old tree form of V8's C++ API) checked and turned into columns
(:func:`protocol_part`, :func:`tree_part`, :func:`fast_protocol_part` for a
file's bytes decoded by msgspec), and the parts of one or more threads built
into one Profile (:func:`build_parts`).  The ``.cpuprofile`` reader
(:mod:`.cpuprofile`), the Chrome trace reader (:mod:`.chrometrace`) and the
inspector backend (:func:`read_protocol_profiles`, the parsed replies of
``Profiler.stop``) take it from here; what the columns mean and how bad input
is reported is in :mod:`.cpuprofile`'s docstring.
"""
from __future__ import annotations

import re
from itertools import chain, repeat
from operator import attrgetter, is_not, itemgetter

import numpy as np

from ..build import FrameTable, build_from_tree
from ..errors import FormatError
from .jsonutil import (all_ints as _all_ints, int_array, is_finite, is_int, is_num, join_texts, no_gc, num_array,
                       raw_int_lists, raw_line_ticks, raw_numbers, type_name)
from .lines import arrow_ints

_I64 = np.int64

# ------------------------------------------------------------------ kinds

_BUILTIN = re.compile(
    r"^(?:get |set )?(?:Array|ArrayBuffer|Atomics|BigInt|Boolean|DataView|Date|Error|Function|JSON|Map|Math|"
    r"Number|Object|Promise|Proxy|Reflect|RegExp|Set|String|Symbol|TypedArray|WeakMap|WeakRef|WeakSet|"
    r"Intl\.\w+|(?:Ui|I)nt(?:8|16|32)Array|Float(?:32|64)Array|Big(?:Ui|I)nt64Array|Uint8ClampedArray)"
    r"(?:\.prototype)?(?:\.[\w$]+|\[Symbol\.\w+\])$")


def _hint(name: str, url: str, script_id, script_ids_known: bool) -> str | None:
    if url:
        return None  # classify from the url: node:, node_modules, application
    if not script_ids_known or str(script_id) not in ("0", ""):
        return "js"
    if _BUILTIN.match(name):
        return "jit-builtin"
    return "native"


# ------------------------------------------------------------------ one profile -> arrays


class _Part:
    """One parsed profile, as arrays over its nodes (before frames are interned)."""

    __slots__ = ("keys", "codes", "parent", "transparent", "sample_node", "times", "weights", "weights_ones",
                 "line_node", "line_line", "line_ticks", "thread", "warnings", "start_ns",
                 "end_ns", "period_ns", "timed")


def _is_i32(v) -> bool:
    """A line or column as V8 records them (int32)."""
    return is_int(v) and -2**31 <= v < 2**31


def _is_i64(v) -> bool:
    return is_int(v) and -2**63 <= v < 2**63


def _desc(v) -> str:
    """What a bad JSON value is, for a message: an integer out of range by its value."""
    return f"{v} (out of range)"[:60] if is_int(v) else type_name(v)


def _where(path, i, key=None):
    return f"{path}[{i}]" + (f".{key}" if key else "")


def _diagnose_node(node, i, source, path="nodes", need_id=True):
    """Raise the FormatError that explains what is wrong with one node."""
    p = _where(path, i)
    if not isinstance(node, dict):
        raise FormatError(f"{p} is {type_name(node)}", source=source, position=p, expected="a node object")
    if need_id and not _is_i64(node.get("id")):
        raise FormatError(f"{p}.id is {'missing' if 'id' not in node else _desc(node['id'])}",
                          source=source, position=f"{p}.id", expected="an integer node id")
    cf = node.get("callFrame")
    if not isinstance(cf, dict):
        raise FormatError(f"{p}.callFrame is {'missing' if cf is None else type_name(cf)}", source=source,
                          position=f"{p}.callFrame",
                          expected="an object {functionName, scriptId, url, lineNumber, columnNumber}")
    for k, check, exp in (("functionName", lambda v: isinstance(v, str), "a string"),
                          ("url", lambda v: isinstance(v, str), "a string"),
                          ("lineNumber", _is_i32, "an integer (0-based, -1 unknown)"),
                          ("columnNumber", _is_i32, "an integer (0-based, -1 unknown)")):
        if k in cf or k in ("functionName",):
            if not check(cf.get(k)):
                raise FormatError(f"{p}.callFrame.{k} is {'missing' if k not in cf else _desc(cf[k])}",
                                  source=source, position=f"{p}.callFrame.{k}", expected=exp)
    sid = cf.get("scriptId", "0")
    if not isinstance(sid, (str, int)) or isinstance(sid, bool):
        raise FormatError(f"{p}.callFrame.scriptId is {type_name(sid)}", source=source,
                          position=f"{p}.callFrame.scriptId", expected="a string or integer")
    for k in ("children",):
        if k in node and node[k] is not None:
            v = node[k]
            if not isinstance(v, list):
                raise FormatError(f"{p}.{k} is {type_name(v)}", source=source, position=f"{p}.{k}",
                                  expected="a list of node ids")
            for j, c in enumerate(v):
                if not _is_i64(c):
                    raise FormatError(f"{p}.{k}[{j}] is {_desc(c)}", source=source,
                                      position=f"{p}.{k}[{j}]", expected="an integer node id")
    if "parent" in node and node["parent"] is not None and not _is_i64(node["parent"]):
        raise FormatError(f"{p}.parent is {_desc(node['parent'])}", source=source,
                          position=f"{p}.parent", expected="an integer node id")
    if "hitCount" in node and not is_int(node["hitCount"]):  # (its range matters only when it is used)
        raise FormatError(f"{p}.hitCount is {_desc(node['hitCount'])}", source=source,
                          position=f"{p}.hitCount", expected="an integer")
    pt = node.get("positionTicks")
    if pt is not None:
        if not isinstance(pt, list):
            raise FormatError(f"{p}.positionTicks is {type_name(pt)}", source=source,
                              position=f"{p}.positionTicks", expected="a list of {line, ticks}")
        for j, t in enumerate(pt):
            if not (isinstance(t, dict) and _is_i32(t.get("line")) and _is_i64(t.get("ticks"))):
                raise FormatError(f"{p}.positionTicks[{j}] is {type_name(t)} {t!r}"[:200], source=source,
                                  position=f"{p}.positionTicks[{j}]", expected="{line: int, ticks: int}")


class _IdIndex:
    """Node id -> node index lookups, vectorised."""

    def __init__(self, ids: np.ndarray, source: str, path: str):
        n = len(ids)
        self.n = n
        self.contiguous = bool(n and (ids[-1] - ids[0] == n - 1) and (np.diff(ids) == 1).all()) if n else True
        self.base = int(ids[0]) if n else 0
        if not self.contiguous:
            self.order = np.argsort(ids, kind="stable")
            self.sorted = ids[self.order]
            dup = np.flatnonzero(self.sorted[1:] == self.sorted[:-1])
            if len(dup):
                a, b = sorted((int(self.order[dup[0]]), int(self.order[dup[0] + 1])))
                raise FormatError(f"duplicate node id {int(self.sorted[dup[0]])} at {path}[{a}] and {path}[{b}]",
                                  source=source, position=f"{path}[{b}].id", expected="unique node ids")

    @classmethod
    def checked(cls, ids: np.ndarray) -> "_IdIndex":
        """The index of ``ids``, or _Fallback when two nodes share an id (the caller's slow path names them)."""
        try:
            return cls(ids, "", "")
        except FormatError:
            raise _Fallback from None

    def lookup(self, q: np.ndarray) -> np.ndarray:
        """Index of each id in q, -1 where unknown."""
        q = np.asarray(q, _I64)
        if self.contiguous:
            idx = q - self.base
            return np.where((idx >= 0) & (idx < self.n), idx, -1)
        if self.n == 0:
            return np.full(len(q), -1, _I64)
        pos = np.searchsorted(self.sorted, q)
        pos_c = np.minimum(pos, self.n - 1)
        ok = self.sorted[pos_c] == q
        return np.where(ok, self.order[pos_c], -1)


_KEY = itemgetter("functionName", "url", "lineNumber", "columnNumber", "scriptId")
_GET = dict.get


def _column(nodes, key, default=None):
    """``[node.get(key, default) for node in nodes]`` at C speed."""
    return list(map(_GET, nodes, repeat(key, len(nodes)), repeat(default, len(nodes))))


def _diagnose_all(nodes, source, path, which=None):
    for i in (range(len(nodes)) if which is None else which):
        _diagnose_node(nodes[i], i, source, path)


def _parse_nodes(nodes, source, path, need_hits=True):
    """Columns of a flat node list.

    Returns (distinct call-frame keys, node -> key code, ids, id index,
    parent index per node, hitCount per node, (line node, line, ticks),
    whether scriptIds were recorded).  Every pass over the nodes is a
    C-level ``map``; a failing pass re-walks the nodes in Python only to say
    exactly which one is wrong."""
    if not isinstance(nodes, list):
        raise FormatError(f"{path} is {type_name(nodes)}", source=source, position=path,
                          expected="a list of node objects")
    n = len(nodes)
    try:
        ids = list(map(itemgetter("id"), nodes))
        cfs = list(map(itemgetter("callFrame"), nodes))
    except (KeyError, TypeError):
        _diagnose_all(nodes, source, path)
        raise
    try:
        keys = list(map(_KEY, cfs))
    except (KeyError, TypeError):  # optional fields missing somewhere: the slow, lenient way
        try:
            keys = [(c["functionName"], c.get("url", ""), c.get("lineNumber", -1), c.get("columnNumber", -1),
                     c.get("scriptId", "0")) for c in cfs]
        except (KeyError, TypeError, AttributeError):
            _diagnose_all(nodes, source, path)
            raise
    del cfs
    # intern call frames in one hashing pass: each key maps to the index of its
    # first node; first indices ascend in insertion order, so searchsorted makes them dense
    pos: dict = {}
    try:
        first = np.fromiter(map(pos.setdefault, keys, range(n)), _I64, n)
    except TypeError:  # an unhashable value (a list or object) in a call frame
        _diagnose_all(nodes, source, path)
        raise
    ukeys = list(pos)
    codes = np.searchsorted(np.fromiter(pos.values(), _I64, len(pos)), first)
    # type checks on distinct call frames only
    for k in ukeys:
        if not (isinstance(k[0], str) and isinstance(k[1], str) and _is_i32(k[2]) and _is_i32(k[3])
                and isinstance(k[4], (str, int)) and not isinstance(k[4], bool)):
            i = keys.index(k)
            _diagnose_node(nodes[i], i, source, path)
    del keys, pos
    if not _all_ints(ids):
        _diagnose_all(nodes, source, path)
    try:
        id_arr = np.array(ids, _I64) if n else np.empty(0, _I64)
    except OverflowError:
        _diagnose_all(nodes, source, path)
        raise
    del ids
    idx = _IdIndex(id_arr, source, path)
    parent = np.full(n, -1, _I64)
    flat = ()
    # children lists (protocol form) and/or parent ids (trace-event chunks)
    ch = _column(nodes, "children", ())
    try:
        lens = np.fromiter(map(len, ch), _I64, n)
    except TypeError:
        _diagnose_all(nodes, source, path)
        ch = [() if c is None else c for c in ch]  # "children": null
        lens = np.fromiter(map(len, ch), _I64, n)
    flat_list = list(chain.from_iterable(ch))
    del ch
    if flat_list:
        if not _all_ints(flat_list):
            _diagnose_all(nodes, source, path)
        try:
            flat = np.array(flat_list, _I64)
        except OverflowError:
            _diagnose_all(nodes, source, path)
            raise
        del flat_list
        owner = np.repeat(np.arange(n, dtype=_I64), lens)
        cidx = idx.lookup(flat)
        bad = np.flatnonzero(cidx < 0)
        if len(bad):
            k = int(bad[0])
            i = int(owner[k])
            j = k - int(np.concatenate(([0], np.cumsum(lens)))[i])
            raise FormatError(f"{path}[{i}].children[{j}] is {int(flat[k])}, which is no node's id",
                              source=source, position=f"{path}[{i}].children[{j}]",
                              expected=f"the id of a node in {path}")
        seen = np.bincount(cidx, minlength=n)
        twice = np.flatnonzero(seen > 1)
        if len(twice):
            c = int(twice[0])
            where = np.flatnonzero(cidx == c)[:2]
            raise FormatError(f"node id {int(id_arr[c])} is a child of both {path}[{int(owner[where[0]])}] and "
                              f"{path}[{int(owner[where[1]])}]", source=source,
                              position=f"{path}[{int(owner[where[1]])}].children", expected="a tree")
        parent[cidx] = owner
    # parent ids are the trace-event chunks' form; files with children lists are not read for them
    pa = _column(nodes, "parent") if not len(flat) else [None] * n
    if pa.count(None) != n:
        has_pa = [i for i, v in enumerate(pa) if v is not None]
        vals = [pa[i] for i in has_pa]
        if not _all_ints(vals):
            _diagnose_all(nodes, source, path, has_pa)
        hp = np.asarray(has_pa, _I64)
        try:
            pidx = idx.lookup(np.asarray(vals, _I64))
        except OverflowError:
            _diagnose_all(nodes, source, path, has_pa)
            raise
        bad = np.flatnonzero(pidx < 0)
        if len(bad):
            i = int(hp[bad[0]])
            raise FormatError(f"{path}[{i}].parent is {vals[bad[0]]}, which is no node's id", source=source,
                              position=f"{path}[{i}].parent", expected=f"the id of a node in {path}")
        conflict = (parent[hp] >= 0) & (parent[hp] != pidx)
        if conflict.any():
            i = int(hp[np.flatnonzero(conflict)[0]])
            raise FormatError(f"{path}[{i}].parent disagrees with the children list naming it", source=source,
                              position=f"{path}[{i}].parent", expected="one consistent tree")
        parent[hp] = pidx
    del pa
    selfp = np.flatnonzero(parent == np.arange(n))
    if len(selfp):
        i = int(selfp[0])
        raise FormatError(f"{path}[{i}] is its own parent", source=source, position=f"{path}[{i}]",
                          expected="a tree")
    if need_hits:
        hit = _column(nodes, "hitCount", 0)
        if not _all_ints(hit):
            _diagnose_all(nodes, source, path)
        try:
            hit = np.array(hit, _I64) if n else np.empty(0, _I64)
        except OverflowError:
            i = next(i for i, v in enumerate(hit) if not _is_i64(v))
            raise FormatError(f"{path}[{i}].hitCount is {_desc(hit[i])}", source=source,
                              position=f"{path}[{i}].hitCount", expected="an integer") from None
    else:  # samples say it all; hitCount is their per-node count
        hit = None
    pts = _column(nodes, "positionTicks", ())
    try:
        if None in pts:
            pts = [() if t is None else t for t in pts]
        plen = np.fromiter(map(len, pts), _I64, n)
        flat_pt = list(chain.from_iterable(pts))
        ll = list(map(itemgetter("line"), flat_pt))
        lt = list(map(itemgetter("ticks"), flat_pt))
        if not (_all_ints(ll) and _all_ints(lt)):
            raise TypeError
    except (KeyError, TypeError):
        _diagnose_all(nodes, source, path)
        raise
    ln = np.repeat(np.arange(n, dtype=_I64), plen)
    try:
        ll = np.array(ll, _I64) if ll else np.empty(0, _I64)
        lt = np.array(lt, _I64) if lt else np.empty(0, _I64)
        if len(ll) and not ((ll >= -2**31) & (ll < 2**31)).all():
            raise OverflowError
    except OverflowError:
        _diagnose_all(nodes, source, path)
        raise
    return ukeys, codes, id_arr, idx, parent, hit, (ln, ll, lt), True  # V8 always records scriptIds


def _sample_nodes(idx, s, source, path, expected) -> np.ndarray:
    """The node row of each sample's node id ``s``; an id no node has is a FormatError at its JSON path."""
    node = idx.lookup(s)
    bad = np.flatnonzero(node < 0)
    if len(bad):
        k = int(bad[0])
        raise FormatError(f"{path}samples[{k}] is {int(s[k])}, which is no node's id", source=source,
                          position=f"{path}samples[{k}]", expected=expected)
    return node


def _samples_times(doc, source, path, idx, n_nodes, start_us, warns, arrays=None):
    """(sample_node, times_ns or None) of a protocol-form profile.  ``arrays``: samples (int64,
    non-empty) and timeDeltas (float64 or None) already parsed (the fast path's), else ``doc``'s."""
    if arrays is None:
        raw = doc.get("samples")
        if raw is None or (isinstance(raw, list) and not raw):
            return None, None
        s = int_array(raw, source, f"{path}samples", "node ids")
    else:
        s = arrays[0]
    node = _sample_nodes(idx, s, source, path, "the id of a node in nodes")
    deltas = doc.get("timeDeltas") if arrays is None else arrays[1]
    if deltas is None:
        warns.append("no timeDeltas: samples are untimed")
        return node, None
    d = num_array(deltas, source, f"{path}timeDeltas") if arrays is None else deltas
    if len(d) != len(s):
        warns.append(f"timeDeltas has {len(d)} entries for {len(s)} samples; "
                     + ("extra deltas ignored" if len(d) > len(s) else "missing ones taken as the median"))
        if len(d) > len(s):
            d = d[:len(s)]
        else:
            fill = float(np.median(d[1:])) if len(d) > 1 else 1000.0
            d = np.concatenate((d, np.full(len(s) - len(d), fill)))
    neg = int((d[1:] < 0).sum()) if len(d) > 1 else 0
    if neg:
        warns.append(f"{neg} negative timeDeltas: samples put back in time order")
    t_us = np.cumsum(d) + (start_us or 0)
    t_ns = t_us * 1000.0
    bad = np.flatnonzero(~(np.abs(t_ns) < 2.0**62))
    if len(bad):
        k = int(bad[0])
        raise FormatError(f"sample {k} falls at {t_us[k]:g} µs, beyond any clock", source=source,
                          position=f"{path}timeDeltas[{k}]",
                          expected="startTime and timeDeltas in microseconds (within ±146 years)")
    return node, np.rint(t_ns).astype(_I64)


def protocol_part(doc, source, path="", thread="main", start_us=None) -> _Part:
    """The part of one protocol-form CPU profile object ``doc`` (nodes, samples, timeDeltas: what
    ``Profiler.stop`` returns) for thread ``thread``; its errors name ``source`` and the JSON ``path``
    it lies at (the chrome-trace reader's profiles lie inside a trace).  ``start_us``: its start
    when the object has none."""
    if not isinstance(doc, dict):
        raise FormatError(f"{path or 'profile'} is {type_name(doc)}", source=source, position=path or None,
                          expected="a CPU profile object {nodes, samples, timeDeltas, startTime, endTime}")
    warns: list[str] = []
    raw = doc.get("samples")
    has_samples = isinstance(raw, list) and len(raw) > 0
    ukeys, codes, ids, idx, parent, hit, lines, known = _parse_nodes(doc["nodes"], source, f"{path}nodes",
                                                                     need_hits=not has_samples)
    if start_us is None:
        start_us = doc.get("startTime")
    end_us = doc.get("endTime")
    for k, v in (("startTime", start_us), ("endTime", end_us)):
        if v is not None and not is_num(v):
            raise FormatError(f"{path}{k} is {type_name(v)}", source=source, position=f"{path}{k}",
                              expected="a number of microseconds")
        if v is not None and not (is_finite(v) and abs(float(v)) < 2.0**62 / 1000):
            raise FormatError(f"{path}{k} is {str(v)[:40]}", source=source, position=f"{path}{k}",
                              expected="a finite number of microseconds (within ±146 years)")
    sample_node, times = _samples_times(doc, source, path, idx, len(codes), start_us, warns)
    return _finish_part(ukeys, codes, parent, hit, lines, known, sample_node, times, start_us, end_us, thread,
                        warns)


def _finish_part(ukeys, codes, parent, hit, lines, known, sample_node, times, start_us, end_us, thread, warns):
    part = _Part()
    part.keys = [(k[0], k[1], k[2], k[3], _hint(k[0], k[1], k[4], known)) for k in ukeys]
    part.codes = codes
    part.parent = parent
    # the artificial root is transparent: its children become root frames
    root_key = [i for i, k in enumerate(ukeys) if k[0] == "(root)"]
    part.transparent = (np.isin(codes, root_key) & (parent < 0)) if root_key else np.zeros(len(codes), bool)
    if sample_node is None:
        nz = np.flatnonzero(hit > 0)
        part.sample_node, part.weights, part.times = nz, hit[nz], None
        if len(nz):
            warns.append("no samples: weights are the nodes' hitCount, untimed")
    else:
        part.sample_node, part.weights, part.times = sample_node, np.ones(len(sample_node), _I64), times
    part.weights_ones = sample_node is not None
    ln, ll, lt = lines
    bad = ll < 1
    if bad.any():
        warns.append(f"{int(bad.sum())} positionTicks with line < 1 ignored")
        ln, ll, lt = ln[~bad], ll[~bad], lt[~bad]
    part.line_node, part.line_line, part.line_ticks = ln, ll, np.maximum(lt, 0)
    part.thread = thread
    part.warnings = warns
    part.start_ns = int(round(start_us * 1000)) if start_us is not None else None
    part.end_ns = int(round(end_us * 1000)) if end_us is not None else None
    part.timed = part.times is not None
    if part.timed and len(part.times) > 1:
        d = np.diff(part.times)
        if (d < 0).any():  # (already in order, as nearly always: the same array as sorted)
            d = np.diff(np.sort(part.times))
        part.period_ns = int(round(float(d.mean())))
    else:
        part.period_ns = None
    return part


def tree_part(doc, source, thread="main") -> _Part:
    """The pre-protocol tree form: ``head`` with nested children objects, ``timestamps``."""
    head = doc["head"]
    if not isinstance(head, dict):
        raise FormatError(f"head is {type_name(head)}", source=source, position="head", expected="a node object")
    flat, parents, paths = [], [], []
    todo = [(head, -1, "head")]
    while todo:
        nd, par, p = todo.pop()
        if not isinstance(nd, dict):
            raise FormatError(f"{p} is {type_name(nd)}", source=source, position=p, expected="a node object")
        i = len(flat)
        flat.append(nd)
        parents.append(par)
        paths.append(p)
        kids = nd.get("children") or []
        if not isinstance(kids, list):
            raise FormatError(f"{p}.children is {type_name(kids)}", source=source, position=f"{p}.children",
                              expected="a list of node objects")
        todo.extend((c, i, f"{p}.children[{j}]") for j, c in reversed(list(enumerate(kids))))
    keys = []
    for nd, p in zip(flat, paths):
        k = (nd.get("functionName", ""), nd.get("url", ""), nd.get("lineNumber", -1),
             nd.get("columnNumber", -1), nd.get("scriptId", 0))
        if not (isinstance(k[0], str) and isinstance(k[1], str) and _is_i32(k[2]) and _is_i32(k[3])):
            bad = next(n for n, v, ok in (("functionName", k[0], isinstance(k[0], str)),
                                          ("url", k[1], isinstance(k[1], str)),
                                          ("lineNumber", k[2], _is_i32(k[2])),
                                          ("columnNumber", k[3], _is_i32(k[3]))) if not ok)
            raise FormatError(f"{p}.{bad} is {_desc(nd.get(bad))}", source=source, position=f"{p}.{bad}",
                              expected="a string" if bad in ("functionName", "url") else "an integer")
        if not isinstance(k[4], (str, int)) or isinstance(k[4], bool):
            raise FormatError(f"{p}.scriptId is {type_name(k[4])}", source=source, position=f"{p}.scriptId",
                              expected="a string or integer")
        for key in ("id", "hitCount"):
            if not _is_i64(nd.get(key, 0)):
                raise FormatError(f"{p}.{key} is {_desc(nd.get(key))}", source=source, position=f"{p}.{key}",
                                  expected="an integer")
        keys.append(k)
    index: dict = {}
    codes = np.asarray([index.setdefault(k, len(index)) for k in keys], _I64)
    ids = np.asarray([nd.get("id", i + 1) for i, nd in enumerate(flat)], _I64)
    idx = _IdIndex(ids, source, "head")
    hit = np.asarray([nd.get("hitCount", 0) for nd in flat], _I64)
    known = any(str(k[4]) not in ("0", "") for k in index)
    warns: list[str] = []
    sample_node, times, start_us = None, None, None
    raw = doc.get("samples")
    if raw:
        s = int_array(raw, source, "samples", "node ids")
        sample_node = _sample_nodes(idx, s, source, "", "the id of a node under head")
        ts = doc.get("timestamps")
        if ts is not None:
            t = num_array(ts, source, "timestamps")
            if len(t) < len(s):
                warns.append(f"{len(t)} timestamps for {len(s)} samples: untimed")
            else:
                if len(t) == len(s) + 1:  # converted files put the start time first
                    start_us = float(t[0])
                    t = t[1:]
                t = t[:len(s)]
                if (np.diff(t) < 0).any():
                    warns.append(f"{int((np.diff(t) < 0).sum())} decreasing timestamps: samples put back in "
                                 "time order")
                times = np.rint(t * 1000.0).astype(_I64)
    end_us = None
    if times is not None and len(times):
        if start_us is None:
            start_us = float(times.min()) / 1000.0
        end_us = float(times.max()) / 1000.0
    empty = (np.empty(0, _I64),) * 3
    return _finish_part(list(index), codes, np.asarray(parents, _I64), hit, empty, known, sample_node, times,
                        start_us, end_us, thread, warns)


def _cat(arrays):
    """np.concatenate, without the copy of a single array (one profile, the usual case)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def build_parts(parts, source, source_format="cpuprofile"):
    """The Profile of ``parts`` (protocol_part's or the old form's, one per thread), its meta's
    source_format ``source_format``."""
    ft = FrameTable()
    node_parent, node_frame, sample_node, weights, times = [], [], [], [], []
    ln, ll, lt = [], [], []
    warns: list[str] = []
    offset = 0
    timed = all(p.timed for p in parts) and any(len(p.sample_node) for p in parts)
    one_main = len(parts) == 1 and parts[0].thread == "main"
    for p in parts:
        used = np.zeros(len(p.keys), bool)
        used[p.codes[~p.transparent]] = True  # the artificial root gets no frame
        kf = np.asarray([ft.add(k[0], k[1], k[2] + 1 if k[2] >= 0 else 0, k[3] + 1 if k[3] >= 0 else 0,
                                hint=k[4]) if u else -1 for k, u in zip(p.keys, used)], _I64)
        nf = kf[p.codes] if len(p.codes) else np.empty(0, _I64)
        nf[p.transparent] = -1
        node_frame.append(nf)
        # (parents are -1 or a node index: at offset 0 they are what the builder takes)
        node_parent.append(np.where(p.parent >= 0, p.parent + offset, -1) if offset else p.parent)
        sample_node.append(np.asarray(p.sample_node, _I64) + offset if offset else np.asarray(p.sample_node, _I64))
        weights.append(p.weights)
        if timed:
            times.append(p.times)
        ln.append(p.line_node + offset if offset else p.line_node)
        ll.append(p.line_line)
        lt.append(p.line_ticks)
        warns.extend(p.warnings if len(parts) == 1 else [f"{p.thread}: {w}" for w in p.warnings])
        offset += len(p.codes)
    # (the builder's node_lines as plain arrays: no pandas; None when there are none, as an empty table)
    node_lines = {"node": _cat(ln), "line": _cat(ll), "ticks": _cat(lt)}
    if not len(node_lines["node"]):
        node_lines = None
    starts = [p.start_ns for p in parts if p.start_ns is not None]
    ends = [p.end_ns for p in parts if p.end_ns is not None]
    periods = [p.period_ns for p in parts if p.period_ns]
    meta = {
        "source_format": source_format,
        "unit": "samples",
        "timed": timed,
        "start_time": min(starts) if starts else None,
        "duration_ns": (max(ends) - min(starts)) if starts and ends else None,
        "period_ns": int(round(float(np.mean(periods)))) if periods and timed else None,
        "warnings": warns,
    }
    thr = None if one_main else np.concatenate(
        [np.full(len(p.sample_node), p.thread, dtype=object) for p in parts])
    # a sampled profile weighs each sample 1: the builder's default, without a per-sample array here
    wts = None if all(p.weights_ones for p in parts) else _cat(weights)
    try:
        prof = build_from_tree(ft, _cat(node_parent), _cat(node_frame), _cat(sample_node), weights=wts,
                               times=_cat(times) if timed else None, threads=thr, meta=meta,
                               node_lines=node_lines)
    except ValueError as e:
        if "cycle" in str(e):
            raise FormatError("the node tree has a cycle (a node is its own ancestor)",
                              source=source, position="nodes", expected="a tree") from None
        raise
    return prof


# ------------------------------------------------------------------ fast path (msgspec)
# The protocol form decoded by msgspec straight into typed structs (no dict per
# node, call frames hashed by their fields), when msgspec is installed.  It
# takes only what it can read exactly as the path above does: any input that
# does not decode into the structs (another shape, a wrong type, NaN, a byte
# order mark, ...) or whose node tree has any fault goes to the path above,
# which gives the same Profile or the exact error.  ``nodeflame[fast]``.


class _Fallback(Exception):
    pass


_DECODER = None


def _decoder():
    """msgspec's decoder of the protocol form, or False without msgspec."""
    global _DECODER
    if _DECODER is None:
        try:
            import msgspec
        except ImportError:
            _DECODER = False
            return _DECODER
        from typing import List, Optional, Union
        struct = msgspec.defstruct
        call_frame = struct("CallFrame", [("functionName", str), ("url", str, ""), ("lineNumber", int, -1),
                                          ("columnNumber", int, -1), ("scriptId", Union[str, int], "0")],
                            gc=False)
        tick = struct("Tick", [("line", int), ("ticks", int)], gc=False)
        # call frames, children and positionTicks as their JSON text: call frames interned as
        # bytes, only the distinct ones decoded; children and positionTicks parsed in bulk by numpy
        # (absent children / positionTicks are the text "[]": one shared bytes object, no None to
        # sort out, and joined without a buffer request as a Raw would need)
        none = b"[]"
        fields = [("id", int), ("callFrame", msgspec.Raw), ("children", msgspec.Raw, none),
                  ("positionTicks", msgspec.Raw, none)]
        # hitCount (the weights when there are no samples) and parent (the tree when no node has
        # children) only where they are used: 8 % of the decoding otherwise
        full = fields + [("hitCount", int, 0), ("parent", Optional[int], None)]

        def doc(name, node_fields):
            # samples and timeDeltas as their JSON text, parsed by numpy in C (jsonutil.raw_numbers)
            # instead of 1.2 M Python numbers
            node = struct(name, node_fields, gc=False)
            return msgspec.json.Decoder(struct("Doc", [("nodes", List[node]), ("samples", msgspec.Raw, None),
                                                       ("timeDeltas", msgspec.Raw, None),
                                                       ("startTime", Optional[Union[int, float]], None),
                                                       ("endTime", Optional[Union[int, float]], None)],
                                               gc=False))
        _DECODER = ((doc("Node", fields), doc("FullNode", full)), (msgspec.DecodeError, msgspec.ValidationError),
                    msgspec.json.Decoder(call_frame), msgspec.json.Decoder(List[Optional[List[tick]]]))
    return _DECODER


def fast_protocol_part(data, source, thread):
    """The _Part of a protocol-form profile decoded by msgspec, or None (the path above decides)."""
    dec = _decoder() if isinstance(data, (bytes, bytearray, memoryview)) else False
    if not dec:
        return None
    (lean, full), errors, cf_decoder, pt_decoder = dec
    if not _utf8(data):
        return None  # the path above names the byte
    for decoder in (lean, full):
        try:
            doc = decoder.decode(data)
        except errors:
            return None
        try:
            return _struct_part(doc, source, thread, cf_decoder, pt_decoder, errors, decoder is lean)
        except _Fallback:
            return None
        except _NeedFull:
            del doc  # (and decode again with hitCount and parent)


class _NeedFull(Exception):
    """The lean decoding lacks what this profile needs: hitCount (no samples) or parent (no children)."""


_INTERN_CHUNK = 1 << 15


def _intern_texts(raws):
    """(code of each JSON text, the distinct texts), codes dense in order of first appearance.
    With pyarrow: the texts joined into a buffer per 32 k texts (a few MB, which the allocator
    hands back for the next one instead of faulting in 40 MB of fresh pages), their offsets from
    their lengths, each chunk hashed by Arrow's dictionary_encode and the chunks' dictionaries
    unified (first appearance order throughout), with no Python object per text; else a bytes
    object and a dict lookup per text."""
    n = len(raws)
    try:
        import pyarrow as pa
    except ImportError:
        pa = None
    if pa is not None and n:
        lens = np.fromiter(map(len, raws), _I64, n)
        chunks = []
        for s in range(0, n, _INTERN_CHUNK):
            part = raws[s:s + _INTERN_CHUNK]
            off = np.zeros(len(part) + 1, _I64)
            np.cumsum(lens[s:s + _INTERN_CHUNK], out=off[1:])
            arr = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(part),
                                                   [None, pa.py_buffer(off), pa.py_buffer(join_texts(part))])
            chunks.append(arr.dictionary_encode())  # (its dictionary holds copies: the chunk's buffer goes)
        enc = pa.chunked_array(chunks).unify_dictionaries().chunks
        codes = np.concatenate([arrow_ints(c.indices) for c in enc]).astype(_I64, copy=False)
        return codes, enc[0].dictionary.to_pylist()
    pos: dict = {}
    first = np.fromiter(map(pos.setdefault, map(bytes, raws), range(n)), _I64, n)
    return np.searchsorted(np.fromiter(pos.values(), _I64, len(pos)), first), list(pos)


def _utf8(data) -> bool:
    """Whether ``data`` is text the json module reads (UTF-8; encoded surrogates pass, as
    ``json.loads`` lets them).  msgspec checks only the strings it decodes, not those it skips
    (unknown keys, ``msgspec.Raw`` values), so the fast path asks this once for the whole file."""
    if data.isascii():
        return True
    import codecs
    dec = codecs.getincrementaldecoder("utf-8")("surrogatepass")
    view = memoryview(data)
    try:
        for i in range(0, len(view), 1 << 22):  # 4 MB at a time: no 69 MB str
            dec.decode(view[i:i + (1 << 22)])
        dec.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


_ID, _CF, _CH, _PT, _PA, _HIT = (attrgetter(k) for k in ("id", "callFrame", "children", "positionTicks",
                                                          "parent", "hitCount"))


def _present(values, n):
    """Which of ``values`` are not None (by identity: ``list.count(None)`` would call each
    msgspec.Raw's ``__eq__``)."""
    return np.fromiter(map(is_not, values, repeat(None, n)), bool, n)


def _position_ticks(pts, pt_decoder, errors):
    """(node of each entry, line, ticks) of the nodes' positionTicks texts.  V8's compact layout is
    parsed in bulk (jsonutil.raw_line_ticks); any other layout is decoded by msgspec, all texts in
    one call."""
    got = raw_line_ticks(pts)
    if got is not None:
        per, ll, lt = got
    else:
        try:
            lists = pt_decoder.decode(b"[" + b",".join(pts) + b"]")
        except errors:
            raise _Fallback from None
        lists = [() if t is None else t for t in lists]  # "positionTicks": null
        per = np.fromiter(map(len, lists), _I64, len(lists))
        flat = list(chain.from_iterable(lists))
        try:
            ll = np.fromiter(map(attrgetter("line"), flat), _I64, len(flat))
            lt = np.fromiter(map(attrgetter("ticks"), flat), _I64, len(flat))
        except OverflowError:
            raise _Fallback from None
    if len(ll) and not ((ll >= -2**31) & (ll < 2**31)).all():
        raise _Fallback
    return np.repeat(np.arange(len(pts), dtype=_I64), per), ll, lt


def _struct_part(doc, source, thread, cf_decoder, pt_decoder, errors, lean) -> _Part:
    nodes = doc.nodes
    n = len(nodes)
    samples = deltas = None
    if doc.samples is not None:
        samples = raw_numbers(doc.samples, True)
        if samples is None:
            raise _Fallback
    if doc.timeDeltas is not None:
        deltas = raw_numbers(doc.timeDeltas, False)
        if deltas is None:
            raise _Fallback
    has_samples = samples is not None and len(samples) > 0
    if lean and not has_samples:
        raise _NeedFull
    try:
        id_arr = np.fromiter(map(_ID, nodes), _I64, n)
    except OverflowError:
        raise _Fallback from None
    text_code, distinct = _intern_texts(list(map(_CF, nodes)))
    try:
        cfs = list(map(cf_decoder.decode, distinct))
    except errors:
        raise _Fallback from None
    del distinct
    # distinct texts of one call frame (other key order or spacing) are one key; keys in the
    # order of their first node, as the path above interns them
    keys: dict = {}
    text_key = np.fromiter(map(keys.setdefault, [(c.functionName, c.url, c.lineNumber, c.columnNumber, c.scriptId)
                                                 for c in cfs], range(len(cfs))), _I64, len(cfs))
    ukeys = list(keys)
    if not all(-2**31 <= k[2] < 2**31 and -2**31 <= k[3] < 2**31 for k in ukeys):
        raise _Fallback
    dense = np.searchsorted(np.fromiter(keys.values(), _I64, len(keys)), text_key)
    codes = dense[text_code]
    del text_code, cfs, keys
    idx = _IdIndex.checked(id_arr)
    parent = np.full(n, -1, _I64)
    ch = list(map(_CH, nodes))  # JSON texts, parsed in bulk (jsonutil.raw_int_lists)
    lens, flat = raw_int_lists(ch)
    if flat is None:  # "children": null somewhere (read as none), or something the path above names
        if lean:
            raise _NeedFull  # the path above then checks every node, hitCount and parent included
        lens, flat = raw_int_lists([b"[]" if bytes(c).strip() == b"null" else c for c in ch])
        pa = [v for v in map(_PA, nodes) if v is not None]
        if flat is None or pa and not -2**63 <= min(pa) <= max(pa) < 2**63:
            raise _Fallback
    del ch
    if len(flat):
        cidx = idx.lookup(flat)
        if (cidx < 0).any() or (np.bincount(cidx, minlength=n) > 1).any():
            raise _Fallback
        parent[cidx] = np.repeat(np.arange(n, dtype=_I64), lens)
    elif lean:
        raise _NeedFull  # no node has children: are there parent ids?
    elif _present(map(_PA, nodes), n).any():
        raise _Fallback  # trace-event chunks' parent ids: the path above
    if (parent == np.arange(n)).any():
        raise _Fallback
    hit = None
    if not has_samples:
        try:
            hit = np.fromiter(map(_HIT, nodes), _I64, n)
        except OverflowError:
            raise _Fallback from None
    ln, ll, lt = _position_ticks(list(map(_PT, nodes)), pt_decoder, errors)
    # the rest as the path above reads it (its checks and errors)
    start_us, end_us = doc.startTime, doc.endTime
    for v in (start_us, end_us):
        if v is not None and not (is_finite(v) and abs(float(v)) < 2.0**62 / 1000):
            raise _Fallback
    warns: list[str] = []
    try:
        sample_node, times = (_samples_times(None, source, "", idx, n, start_us, warns, (samples, deltas))
                              if has_samples else (None, None))
    except FormatError:
        raise _Fallback from None
    return _finish_part(ukeys, codes, parent, hit, (ln, ll, lt), True, sample_node, times, start_us, end_us,
                        thread, warns)


# ------------------------------------------------------------------ parsed protocol parts


def read_protocol_profiles(profiles, source: str = "<cpuprofile>"):
    """One Profile of several already parsed ``Profiler.Profile`` objects (dicts, as the
    DevTools protocol's ``Profiler.stop`` returns them): ``profiles`` is a sequence of
    (thread name, profile dict).  Checks, errors and results are those of reading each
    as a ``.cpuprofile`` file, with the threads in one Profile (``thread`` column; a
    single thread named ``main`` gives the same Profile as the file)."""
    with no_gc():
        parts = [protocol_part(doc, source, "", thread) for thread, doc in profiles]
        if not parts:
            raise FormatError("no profiles", source=source, expected="at least one Profiler.Profile")
        return build_parts(parts, source)
