"""V8 / Chrome DevTools CPU profiles (``.cpuprofile``).

Accepted shapes:

- the DevTools protocol's ``Profiler.Profile`` (what ``node --cpu-prof``,
  the inspector and Chrome's "Save profile" write): ``nodes`` (each with
  ``id``, ``callFrame`` {functionName, scriptId, url, lineNumber,
  columnNumber}, ``hitCount``, ``children`` or ``parent``,
  ``positionTicks``), ``samples`` (node ids), ``timeDeltas`` (µs, the first
  one from ``startTime``), ``startTime``/``endTime`` (µs);
- the old tree form of V8's C++ API (v8-profiler): ``head`` with nested
  ``children`` objects, ``samples`` and absolute ``timestamps`` (µs).  Its
  ``lineNumber`` is taken as 0-based like the protocol's, as speedscope does;
- Chrome trace files (``[...]`` or ``{"traceEvents": [...]}``) have their own
  reader and format name, ``chrome-trace`` (:mod:`.chrometrace`); given one
  with ``format="cpuprofile"`` this reader hands it over (same Profile,
  ``meta['source_format'] == 'chrome-trace'``).

Normalisation: callFrame lines/columns are 0-based and become 1-based (0 =
unknown, V8's -1); ``positionTicks`` lines are already 1-based and become
the ``lines`` table.  The artificial ``(root)`` node is transparent;
``(program)``, ``(idle)`` and ``(garbage collector)`` stay as frames.  A
function with no url and scriptId 0 is V8-internal: ``builtin`` when its name
looks like a JavaScript builtin (``Array.prototype.sort``, ``JSON.parse``),
``native`` otherwise (C++ bindings such as ``writeUtf8String``); with a
scriptId but no url it is ``js`` (eval'd code).  In the old tree form, when
every scriptId is 0 (converted files that never recorded them) functions
are taken as ``js``.

Sample times are ``startTime`` + cumulative ``timeDeltas`` in ns.  Negative
deltas are tolerated: samples are put in time order (stable) and
``meta['warnings']`` says so.  A profile without samples falls back to each
node's ``hitCount`` as weights, untimed.

Bad input raises FormatError naming the file and the JSON path
(``nodes[12].children[0]``) or the line/column of a JSON syntax error.

Performance: the per-node work is a handful of list comprehensions plus
interning of call frames; everything per sample is numpy.
"""
from __future__ import annotations

import re

from ..errors import FormatError
from ..formats import register_reader
from . import chrometrace
from .jsonutil import head_text, load_json, no_gc, type_name
from .v8protocol import build_parts, fast_protocol_part, protocol_part, read_protocol_profiles, tree_part

__all__ = ["read_cpuprofile", "sniff", "build_parts", "protocol_part", "read_protocol_profiles"]

# ------------------------------------------------------------------ reader


def read_cpuprofile(data: bytes, source: str = "<cpuprofile>", *, thread: str | None = None):
    """Read a ``.cpuprofile`` (protocol or old tree form; a Chrome trace goes to its reader).

    ``thread`` names the thread of a single-profile file (default ``main``)."""
    with no_gc():
        return _read(data, source, thread)


def _read(data, source, thread):
    fast = fast_protocol_part(data, source, thread or "main")
    if fast is not None:
        return build_parts([fast], source)
    doc = load_json(data, source, "a V8 CPU profile (JSON)")
    if isinstance(doc, dict) and "nodes" in doc:
        parts = [protocol_part(doc, source, "", thread or "main")]
    elif isinstance(doc, dict) and "head" in doc:
        parts = [tree_part(doc, source, thread or "main")]
    elif chrometrace.is_trace(doc):  # a Chrome trace read as format="cpuprofile": its own reader's work
        return build_parts(chrometrace.parts_of(doc, source), source, "chrome-trace")
    else:
        got = type_name(doc) if not isinstance(doc, dict) else "an object with keys " + ", ".join(
            repr(k) for k in list(doc)[:6])
        raise FormatError(f"not a CPU profile: top level is {got}", source=source,
                          expected="an object with 'nodes' (and samples, timeDeltas, startTime, endTime)")
    return build_parts(parts, source)


# ------------------------------------------------------------------ sniffing

_NODES = re.compile(r'"nodes"\s*:\s*\[')
_HEAD = re.compile(r'"head"\s*:\s*\{')


def sniff(head: bytes, text: str | None) -> bool:
    """A JSON object with ``nodes`` of call frames (protocol form) or a ``head`` node (tree form).
    Chrome traces (whose chunks have ``nodes`` too) are sniffed before this, as ``chrome-trace``."""
    t = head_text(head, text)
    if t is None:
        return False
    s = t.lstrip("\ufeff \t\r\n")
    if s.startswith("{"):
        if _NODES.search(s) and '"callFrame"' in s:
            return True
        if _HEAD.search(s) and '"functionName"' in s:
            return True
    return False


register_reader("cpuprofile", read_cpuprofile, sniff, (".cpuprofile",))
