"""Chrome trace files holding V8 CPU profiles (format name ``chrome-trace``).

What Chrome's Performance panel, ``chrome://tracing``, Perfetto's JSON export
and ``node --trace-events-enabled`` with the ``disabled-by-default-v8.cpu_profiler``
category write: the Trace Event Format's JSON array (``[{...}, ...]``) or
object form (``{"traceEvents": [...], ...}``).  Read from it:

- ``Profile`` (start time) and ``ProfileChunk`` events (``args.data.cpuProfile``
  with ``nodes`` carrying ``parent`` ids, ``samples``, and ``args.data.timeDeltas``),
  one profile per (pid, id), its chunks concatenated in file order;
- ``CpuProfile`` events (``args.data.cpuProfile``: a whole protocol-form profile);
- ``thread_name`` metadata events (``ph: "M"``) naming each profile's thread
  (else ``pid:tid``; a second profile of one thread gets `` (2)``).

Each profile is read exactly as the cpuprofile reader reads a protocol-form
profile (same normalisation, checks and warnings), the threads in one Profile.
Errors name the JSON path in the file: a fault in the third node of the
second chunk is ``traceEvents[7].args.data.cpuProfile.nodes[2]``.  Every
other trace event is ignored; a trace with no profile events is a
FormatError saying which category records them.

``read(path, format="cpuprofile")`` on a trace file reads it here too (the
reader of a ``.cpuprofile`` accepted traces before this module existed).
"""
from __future__ import annotations

import re

from ..errors import FormatError
from ..formats import register_reader
from .jsonutil import head_text, load_json, no_gc, type_name

EXPECTED = 'a Chrome trace: a list of trace events, or an object {"traceEvents": [...]}'
NO_PROFILE = "a Chrome trace recorded with the disabled-by-default-v8.cpu_profiler category"


def read_chrome_trace(data: bytes, source: str = "<trace>"):
    """Read the CPU profiles of a Chrome trace file as one Profile (a thread per profile)."""
    from .v8protocol import build_parts
    with no_gc():
        doc = load_json(data, source, "a Chrome trace (JSON)")
        return build_parts(parts_of(doc, source), source, "chrome-trace")


def is_trace(doc) -> bool:
    """Whether a parsed JSON document has a trace's shape (what this reader takes)."""
    return isinstance(doc, list) or (isinstance(doc, dict) and "traceEvents" in doc and "nodes" not in doc)


def parts_of(doc, source: str) -> list:
    """The protocol parts (:mod:`.v8protocol`, one per profile) of a parsed trace document."""
    if isinstance(doc, dict) and "traceEvents" in doc:
        return trace_parts(doc["traceEvents"], source, "traceEvents")
    if isinstance(doc, list):
        return trace_parts(doc, source, "")
    got = type_name(doc) if not isinstance(doc, dict) else "an object with keys " + ", ".join(
        repr(k) for k in list(doc)[:6])
    raise FormatError(f"not a Chrome trace: top level is {got}"[:300], source=source, expected=EXPECTED)


def _key(v):
    """A hashable stand-in for a JSON value used as an identifier (pid, tid, id)."""
    return v if isinstance(v, (str, int, float, type(None))) else repr(v)


def _obj(v, path, source, what="an object"):
    if not isinstance(v, dict):
        raise FormatError(f"{path} is {type_name(v)}", source=source, position=path, expected=what)
    return v


def _list(v, path, source, what):
    if v is None:
        return []
    if not isinstance(v, list):
        raise FormatError(f"{path} is {type_name(v)}", source=source, position=path, expected=what)
    return v


class _Chunks:
    """Where each merged node, sample and delta of one profile sits in the file."""

    def __init__(self, profile_path):
        self.profile_path = profile_path
        self.spans = {"nodes": [], "samples": [], "timeDeltas": []}  # (start, count, file path)

    def add(self, kind, start, count, path):
        self.spans[kind].append((start, count, path))

    _REF = re.compile(r"(?<![\w.\]])(nodes|samples|timeDeltas|startTime)(\[(\d+)\])?")

    def file_path(self, m) -> str:
        kind, idx = m.group(1), m.group(3)
        if kind == "startTime":
            return f"{self.profile_path}.startTime" if self.profile_path else m.group(0)
        if idx is None:
            return m.group(0)
        i = int(idx)
        for start, count, path in self.spans[kind]:
            if start <= i < start + count:
                return f"{path}[{i - start}]"
        return m.group(0)

    def relocate(self, e: FormatError, source) -> FormatError:
        """The error of the merged profile, naming positions in the file."""
        what = self._REF.sub(self.file_path, e.what)
        pos = self._REF.sub(self.file_path, e.position) if e.position else e.position
        return FormatError(what, source=e.source or source, line=e.line, position=pos, expected=e.expected)


def trace_parts(events, source, path) -> list:
    """One cpuprofile part per profile in a list of trace events at JSON path ``path``."""
    from .v8protocol import protocol_part
    if not isinstance(events, list):
        raise FormatError(f"{path or 'top level'} is {type_name(events)}", source=source,
                          position=path or None, expected="a list of trace events")
    names: dict = {}
    profiles: dict = {}  # (pid, id) -> {"tid", "start", "chunks": [...]}
    full: list = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            continue
        name = ev.get("name")
        if name == "thread_name" and ev.get("ph") == "M":
            args = ev.get("args")
            nm = args.get("name") if isinstance(args, dict) else None
            if isinstance(nm, str):
                names[(_key(ev.get("pid")), _key(ev.get("tid")))] = nm
        elif name in ("Profile", "ProfileChunk"):
            p = f"{path}[{i}]"
            args = _obj(ev.get("args"), f"{p}.args", source, "an object {data: {...}}")
            data = _obj(args.get("data"), f"{p}.args.data", source)
            key = (_key(ev.get("pid")), _key(ev.get("id")))
            pr = profiles.setdefault(key, {"tid": ev.get("tid"), "start": None, "start_path": "",
                                           "chunks": []})
            if name == "Profile":
                pr["start"] = data.get("startTime")
                pr["start_path"] = f"{p}.args.data"
                pr["tid"] = ev.get("tid")
            else:
                pr["chunks"].append((p, data))
        elif name == "CpuProfile":
            args = ev.get("args")
            data = args.get("data") if isinstance(args, dict) else None
            cp = data.get("cpuProfile") if isinstance(data, dict) else None
            if isinstance(cp, dict):
                full.append((f"{path}[{i}].args.data.cpuProfile.", ev, cp))
    docs = []
    for (pid, _pid_id), pr in profiles.items():
        nodes, samples, deltas = [], [], []
        where = _Chunks(pr["start_path"])
        for p, data in pr["chunks"]:
            cp = data.get("cpuProfile")
            cp = {} if cp is None else _obj(cp, f"{p}.args.data.cpuProfile", source,
                                            "an object {nodes, samples}")
            cpp = f"{p}.args.data.cpuProfile"
            for kind, lst, v, vp, what in (
                    ("nodes", nodes, cp.get("nodes"), f"{cpp}.nodes", "a list of node objects"),
                    ("samples", samples, cp.get("samples"), f"{cpp}.samples", "a list of node ids"),
                    ("timeDeltas", deltas, data.get("timeDeltas"), f"{p}.args.data.timeDeltas",
                     "a list of numbers")):
                v = _list(v, vp, source, what)
                where.add(kind, len(lst), len(v), vp)
                lst.extend(v)
        thread = names.get((pid, _key(pr["tid"]))) or f"{pid}:{pr['tid']}"
        docs.append(({"nodes": nodes, "samples": samples, "timeDeltas": deltas}, pr["start"], thread, where, ""))
    for p, ev, cp in full:
        pid, tid = ev.get("pid"), ev.get("tid")
        thread = names.get((_key(pid), _key(tid))) or f"{pid}:{tid}"
        docs.append((cp, cp.get("startTime"), thread, None, p))
    if not docs:
        raise FormatError("trace has no Profile/ProfileChunk or CpuProfile events", source=source,
                          expected=NO_PROFILE)
    used: dict = {}
    parts = []
    for doc, start, thread, where, prefix in docs:
        k = used.get(thread, 0)
        used[thread] = k + 1
        name = thread if not k else f"{thread} ({k + 1})"
        if "nodes" not in doc:
            raise FormatError(f"{prefix}nodes is missing", source=source, position=f"{prefix}nodes",
                              expected="a list of node objects")
        try:
            parts.append(protocol_part(doc, source, prefix, name, start_us=start))
        except FormatError as e:
            if where is None:
                raise
            raise where.relocate(e, source) from None
    return parts


# ------------------------------------------------------------------ sniffing
# Decided from the trace's structure at its start, not from where its profile
# events are (after megabytes of other events, in a long capture): a JSON array
# whose first element is an event object (``"ph"``), or an object with a
# ``"traceEvents": [`` member (an unescaped quote before a colon is a key).

_EVENTS_KEY = re.compile(r'"traceEvents"\s*:\s*\[')
_FIRST_EVENT = re.compile(r'\[\s*\{')
_PH = re.compile(r'"ph"\s*:\s*"')


def sniff(head: bytes, text: str | None) -> bool:
    t = head_text(head, text)
    if t is None:
        return False
    s = t.lstrip("\ufeff \t\r\n")
    if s.startswith("{"):
        return _EVENTS_KEY.search(s) is not None
    if s.startswith("["):
        return _FIRST_EVENT.match(s) is not None and _PH.search(s, 0, 1 << 16) is not None
    return False


register_reader("chrome-trace", read_chrome_trace, sniff, (".trace.json",))
