"""``perf script`` output (after ``perf record -g``).

One sample is a header line, its frames leaf first, then a blank line::

    node 4242/4243 [001] 184694.229089:     250000 cycles:
            7f26dc479340 __write_nocancel+0x10 (/lib/x86_64-linux-gnu/libpthread-2.19.so)
            3a8e1c2f0e12 LazyCompile:*main /app/x.js:3 (/tmp/perf-4242.map)
            ffffffff8173186d system_call_fastpath ([kernel.kallsyms])

The header's fields vary with perf's version and ``-F``: ``comm`` (may hold
spaces), ``tid`` or ``pid/tid``, optional ``[cpu]``, optional ``seconds.micro:``
timestamp, optional period, optional ``event:``.  Comment lines (``#``, perf's
``--header``) may appear anywhere.

Each frame's label is what FlameGraph's ``stackcollapse-perf.pl`` makes of
it (offset ``+0x..`` removed, ``[unknown]`` replaced by ``[<dso basename>]``,
everything from the first ``(`` removed except in Go method names and
``(anonymous namespace)``, quotes removed, ``;`` -> ``:``, Java's leading
``L`` removed in processes named ``java*``, ``a->b`` split into ``a`` and the
inlined ``b_[i]``), so that the folded writer with ``thread_root=True``
prints exactly what ``stackcollapse-perf.pl`` prints.  The function behind
the label is parsed from the verbatim symbol: V8 perf-map names (see
:mod:`nodeflame.frames.symbols`) give name, file, line, column and tier; the
DSO gives the kind (``[kernel.kallsyms]``, kernel modules and ``vmlinux`` ->
kernel, ``/tmp/perf-<pid>.map`` and ``[JIT] tid N`` -> JIT code, a ``.so`` or
the node binary -> native, ``Builtins_*`` -> builtin) and native functions
keep their DSO as their file.

Samples: ``thread`` is the comm; ``tid`` always, ``pid`` (``pid/tid`` form),
``cpu`` and ``event`` when the input has them, are extra columns; ``time_ns``
is the timestamp in nanoseconds (``meta['timed']`` when every sample has one);
``weight`` is the period when perf printed one, else 1 (as stackcollapse-perf.pl
counts).  Like stackcollapse-perf.pl only the first event type is read by
default (adding cycles to instructions means nothing); the others are set
aside with a FormatWarning: pass ``event='cycles'`` to pick one or
``event='all'`` to keep every sample.  A sample without frames keeps its
comm as its only frame (kind ``program``), as stackcollapse-perf.pl does.

Where this reader differs from stackcollapse-perf.pl: the last sample is kept
even when the file does not end with a blank line; a header line always
starts a new sample; spaces in the comm are kept (stackcollapse-perf.pl
writes ``_``); a frame line after a blank line (outside any sample) or a
line that is neither header nor frame is a FormatError naming the line.
"""
from __future__ import annotations

import re
import warnings

import numpy as np

from ..build import FrameTable, build_from_tree, build_profile
from ..errors import FormatError, FormatWarning
from ..formats import decode_text, register_reader
from ..symbols import parse_symbol
from .lines import arrow_bools, arrow_ints, factorize, intern_lines_arrow

_WS = " \t\n\r\f\v"
# stackcollapse-perf.pl's own patterns (ASCII classes: Perl reads bytes)
# Every pattern here runs in time linear in the line: what the regular
# expressions of stackcollapse-perf.pl do by backtracking (quadratic, or worse,
# on a long line of blanks, digits, ':' or ' (') is done by the functions below.
_WORD = re.compile(r"[A-Za-z0-9_]+")
_HEADER_TAIL = re.compile(r"(?<![ \t])[ \t]+([0-9]+)(?:/+([0-9]+)?)?[ \t]+")
_SPACE = " \t\n\r\f\v"
_OFFSET = re.compile(r"\+0x[0-9a-f]+\Z")
_ARGS = re.compile(r"\((?!anonymous namespace\)).*")
_CPU = re.compile(r"[ \t]\[([0-9]+)\][ \t]")
_TIME = re.compile(r"[ \t]([0-9]+)\.([0-9]+):(?:[ \t]|\Z)")
_JITMAP = re.compile(r"perf-[0-9]+\.map")
_KERNEL_NOT = ("[unknown]", "[vdso]", "[vsyscall]", "[vvar]", "[heap]", "[stack]", "[anon]", "[uprobes]")

HEADER, FRAME, BLANK, COMMENT = 0, 1, 2, 3


def dso_kind(mod: str) -> str:
    """'kernel', 'jit' or 'native' for perf's DSO column."""
    if _JITMAP.search(mod) or mod.startswith("[JIT]"):
        return "jit"
    if mod.startswith("[kernel.") or mod.endswith("vmlinux"):
        return "kernel"
    if mod.startswith("[") and mod.endswith("]") and mod not in _KERNEL_NOT and not mod.startswith("[anon"):
        return "kernel"  # a kernel module: [nf_conntrack_ipv4]
    return "native"


def collapse_symbol(rawfunc: str, mod: str, java: bool = False):
    """stackcollapse-perf.pl's frames for one symbol: a list of (label, verbatim part), outermost first."""
    rawfunc = _OFFSET.sub("", rawfunc, count=1)
    if rawfunc.startswith("("):
        return []  # perf's "(process name)" pseudo frames are skipped
    parts = rawfunc.split("->")
    while parts and parts[-1] == "":
        parts.pop()
    out = []
    for i, verb in enumerate(parts):
        func = verb
        if func == "[unknown]":
            func = "[" + (mod.rpartition("/")[2] if mod != "[unknown]" else "unknown") + "]"
            verb = func
        func = func.replace(";", ":")
        if not _go_method(func):
            func = _ARGS.sub("", func, count=1)
        func = func.replace('"', "").replace("'", "")
        if java and "/" in func and func.startswith("L"):
            func = func[1:]
        if i and "_[i]" not in func:
            func += "_[i]"
        out.append((func, verb))
    return out


def _go_method(func: str) -> bool:
    r"""What r"\.\(.*\)\." finds: a '.(' with a ').' after it."""
    i = func.find(".(")
    return i >= 0 and func.find(").", i + 2) >= 0


def _trailing_digits(s: str) -> int:
    """Start of the run of ASCII digits that ends ``s``."""
    i = len(s)
    while i and "0" <= s[i - 1] <= "9":
        i -= 1
    return i


def _header_match(line: str):
    r"""What r"([^ \t\n\r\f\v].*?)[ \t]+([0-9]+)/*([0-9]+)?[ \t]+" matches at the start of
    ``line``: (comm, first number, second number or None, end), or None."""
    if not line or line[0] in _SPACE:
        return None
    m = _HEADER_TAIL.search(line, 1)
    if m is None:
        return None
    return line[:m.start()], m.group(1), m.group(2), m.end()


def _event_match(line: str):
    r"""What r":[ \t]*([0-9]+)?[ \t]+([^ \t]+):[ \t]*\Z" finds: (period digits or None, event) or None."""
    s = line.rstrip(" \t")
    if not s.endswith(":"):
        return None
    body = s[:-1]
    j = max(body.rfind(" "), body.rfind("\t"))
    event = body[j + 1:]
    if j < 0 or not event:
        return None
    p = body[:j].rstrip(" \t")
    if p.endswith(":"):
        return None, event
    d = _trailing_digits(p)
    if d == len(p) or not p[:d].rstrip(" \t").endswith(":"):
        return None
    return p[d:], event


def _frame_match(ln: str):
    r"""What r"[ \t\n\r\f\v]*([A-Za-z0-9_]+)[ \t\n\r\f\v]*(.+) \((.*)\)" matches:
    (address, symbol, dso) or None.  Lines it finds no way to read by the
    greedy path (address, blanks, symbol to the last ' (' before the last ')')
    are left to the expression itself only when short."""
    s = ln.lstrip(_SPACE)
    w = _WORD.match(s)
    if w is not None and "\n" not in s:
        rest = s[w.end():].lstrip(_SPACE)
        close = rest.rfind(")")
        k = rest.rfind(" (", 1, close) if close > 0 else -1
        if k >= 1:
            return w.group(), rest[:k], rest[k + 2:close]
    if len(ln) > 200:
        return None
    m = _FRAME_SHORT.match(ln)
    return (m.group(1), m.group(2), m.group(3)) if m is not None else None


_FRAME_SHORT = re.compile(r"[ \t\n\r\f\v]*([A-Za-z0-9_]+)[ \t\n\r\f\v]*(.+) \((.*)\)")


# The layout perf script prints by default, with a comm of one word without digits: where it
# matches, every rule of _parse_header below gives what its groups hold (the comm is the text
# before the first blank, which is followed by 'pid/tid '; '[cpu]' and 'secs.frac:' are the first
# of their patterns after it; the event is the last word, the period the digits before it).
_STRICT = re.compile(r"([^ \t\n\r\f\v0-9:\[\]/]+) ([0-9]{1,18})/([0-9]{1,18}) \[([0-9]{1,9})\] "
                     r"([0-9]{1,9})\.([0-9]{1,9}): +(?:([0-9]{1,18}) +)?([^ \t\n\r\f\v:]+):[ \t]*\Z")


def _parse_header(line: str):
    """(comm, pid|None, tid, cpu|None, time_ns|None, period|None, event|None) or None."""
    m = _STRICT.match(line)
    if m is not None:
        comm, pid, tid, cpu, sec, frac, period, event = m.groups()
        return (comm, int(pid), int(tid), int(cpu), int(sec) * 1_000_000_000 + int((frac + "000000000")[:9]),
                int(period) if period is not None else None, event)
    m = _header_match(line)
    if m is None:
        return None
    comm, a, b, end = m
    if len(a) > 18 or (b and len(b) > 18):
        return None  # no pid or tid has 19 digits: not a header
    pid, tid = (int(a), int(b)) if b else (None, int(a))
    period = event = None
    e = _event_match(line)
    if e is not None:
        event = e[1]
        if e[0]:
            if len(e[0]) > 18:
                return None
            period = int(e[0])
    c = _CPU.search(line, end - 1)
    cpu = int(c.group(1)) if c else None
    t = _TIME.search(line, end - 1)
    time_ns = None
    if t is not None and len(t.group(1)) <= 9:
        frac = t.group(2)
        time_ns = int(t.group(1)) * 1_000_000_000 + int((frac + "000000000")[:9])
    return comm, pid, tid, cpu, time_ns, period, event


def _lines(data: bytes, source: str):
    text = decode_text(data, source)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class _Lines:
    """``lines[i]`` of interned lines (codes, distinct lines)."""

    def __init__(self, codes, uniq):
        self.codes, self.uniq = codes, uniq

    def __getitem__(self, i):
        return self.uniq[int(self.codes[i])]

    def __len__(self):
        return len(self.codes)


def read_perf(data: bytes, source: str = "<perf>", *, event: str | None = None) -> "Profile":
    import io
    fast = intern_lines_arrow(io.BytesIO(data)) if isinstance(data, (bytes, bytearray)) else None
    return _read_perf(fast, data, source, event)


def read_perf_file(fh, source: str = "<perf>", *, event: str | None = None) -> "Profile":
    """read_perf of the binary file ``fh``, taken in blocks: the whole file is never in memory."""
    fast = intern_lines_arrow(fh)
    data = None
    if fast is None:
        fh.seek(0)
        data = fh.read()
    return _read_perf(fast, data, source, event)


# _STRICT for Arrow's extract_regex (RE2: '$' is the end of the text, as \Z; classes on code points),
# for a line that is no comment ('#' first)
_STRICT_RE2 = (r"^(?P<comm>[^# \t\n\r\f\v0-9:\[\]/][^ \t\n\r\f\v0-9:\[\]/]*) (?P<pid>[0-9]{1,18})/(?P<tid>[0-9]{1,18}) "
               r"\[(?P<cpu>[0-9]{1,9})\] (?P<sec>[0-9]{1,9})\.(?P<frac>[0-9]{1,9}): +"
               r"(?:(?P<period>[0-9]{1,18}) +)?(?P<event>[^ \t\n\r\f\v:]+):[ \t]*$")


class _Headers:
    """The parsed header of each distinct line (a header's fields at its line code): numpy arrays,
    names as codes into ``comms`` and ``events``; ``has_*`` says where perf printed the field."""

    def __init__(self, nu: int):
        self.comm = np.full(nu, -1, np.int64)
        self.event = np.full(nu, -1, np.int64)
        self.pid, self.tid, self.cpu, self.time, self.period = (np.zeros(nu, np.int64) for _ in range(5))
        self.has_pid, self.has_cpu, self.has_time, self.has_period = (np.zeros(nu, bool) for _ in range(4))
        self.comms: list = []
        self.events: list = []
        self._ci: dict = {}
        self._ei: dict = {}

    def names(self, table: list, index: dict, values) -> np.ndarray:
        out = np.empty(len(values), np.int64)
        for i, v in enumerate(values):
            c = index.get(v)
            if c is None:
                c = index[v] = len(table)
                table.append(v)
            out[i] = c
        return out

    def set_one(self, k: int, h) -> None:
        comm, pid, tid, cpu, time_ns, period, event = h
        self.comm[k] = self.names(self.comms, self._ci, [comm])[0]
        if event is not None:
            self.event[k] = self.names(self.events, self._ei, [event])[0]
        self.tid[k] = tid
        for has, arr, v in ((self.has_pid, self.pid, pid), (self.has_cpu, self.cpu, cpu),
                            (self.has_time, self.time, time_ns), (self.has_period, self.period, period)):
            if v is not None:
                has[k] = True
                arr[k] = v

    def set_strict(self, rows: np.ndarray, m) -> None:
        """The rows ``rows`` matched by _STRICT_RE2, ``m`` the matches' struct array."""
        import pyarrow as pa
        import pyarrow.compute as pc

        def num(name):
            return arrow_ints(pc.cast(m.field(name), pa.int64()))
        for name, table, index, out in (("comm", self.comms, self._ci, self.comm),
                                        ("event", self.events, self._ei, self.event)):
            enc = pc.dictionary_encode(m.field(name))
            out[rows] = self.names(table, index, enc.dictionary.to_pylist())[arrow_ints(enc.indices)]
        self.pid[rows], self.tid[rows], self.cpu[rows] = num("pid"), num("tid"), num("cpu")
        self.has_pid[rows] = self.has_cpu[rows] = self.has_time[rows] = True
        frac = arrow_ints(pc.cast(pc.utf8_rpad(m.field("frac"), 9, "0"), pa.int64()))
        self.time[rows] = num("sec") * 1_000_000_000 + frac
        per = m.field("period")
        has = arrow_ints(pc.binary_length(per)) != 0   # (pc.not_equal(.., 0) makes a scalar: imports pandas)
        if has.any():
            at = np.flatnonzero(has)
            self.has_period[rows[at]] = True
            idx = pa.Array.from_buffers(pa.int64(), len(at), [None, pa.py_buffer(at.astype(np.int64))])
            self.period[rows[at]] = arrow_ints(pc.cast(per.take(idx), pa.int64()))


def _classify(uniq, arr):
    """Each distinct line's type, its header's fields (_Headers), frames' (pc, rawfunc, mod), perf's
    '# key : value' header and the unrecognised lines.  Lines in perf script's default layout are
    parsed by Arrow in bulk (``arr``: the distinct lines as an Arrow array) with _STRICT_RE2, the
    rest one by one (_parse_header, whose first expression is the same _STRICT)."""
    nu = len(uniq)
    utype = np.full(nu, BLANK, np.int8)
    hdr = _Headers(nu)
    frame_of: dict[int, tuple] = {}    # unique line -> (pc, rawfunc, mod)
    perf_header: dict[str, str] = {}
    bad_u = []
    rest = range(nu)
    if arr is not None and nu:
        import pyarrow.compute as pc
        m = pc.extract_regex(arr, _STRICT_RE2)
        ok_arr = m.is_valid()
        ok = arrow_bools(ok_arr)
        if ok.any():
            rows = np.flatnonzero(ok)
            hdr.set_strict(rows, m.filter(ok_arr))
            utype[rows] = HEADER
            rest = np.flatnonzero(~ok).tolist()
        del m, ok
    for k in rest:
        ln = uniq[k]
        c = ln[:1]
        if c == "#":
            utype[k] = COMMENT
            if ln.startswith("# ") and " : " in ln:
                key, _, val = ln[2:].partition(" : ")
                perf_header.setdefault(key.strip(), val.strip())
            continue
        if not ln.strip(_WS):
            continue  # BLANK
        if c not in _WS:
            h = _parse_header(ln)
            if h is not None:
                utype[k] = HEADER
                hdr.set_one(k, h)
                continue
        m = _frame_match(ln)
        if m is not None:
            utype[k] = FRAME
            frame_of[k] = m
            continue
        utype[k] = BLANK
        bad_u.append(k)
    return utype, hdr, frame_of, perf_header, bad_u


# the samples' paths made per distinct run of frame lines (see _sample_paths); off: always line by line
_SAMPLE_PATHS = True


def _read_perf(fast, data, source, event):
    if fast is not None:  # interned in bulk; the lines themselves are only wanted for an error
        codes, uniq, arr = fast
        lines = _Lines(codes, uniq)
    else:
        lines = _lines(data, source)
        codes, uniq = factorize(lines)
        arr = None
    n = len(codes)
    utype, hdr, frame_of, perf_header, bad_u = _classify(uniq, arr)
    del arr
    t = utype[codes]
    if bad_u:
        first = int(np.flatnonzero(np.isin(codes, bad_u))[0])
        ln = lines[first]
        exp = ("a sample header 'comm [pid/]tid [cpu] time: [period] event:'" if ln[:1] not in _WS
               else "a frame line 'address symbol (dso)'")
        raise FormatError(f"unrecognised line {ln.strip()[:80]!r}", source=source, line=first + 1, expected=exp)
    hpos = np.flatnonzero(t == HEADER)
    if not len(hpos):
        fpos = np.flatnonzero(t == FRAME)
        if len(fpos):
            raise FormatError("frame line outside a sample", source=source, line=int(fpos[0]) + 1,
                              expected="a sample header 'comm [pid/]tid [cpu] time: [period] event:' first")
        raise FormatError("no samples", source=source, expected="perf script output (perf record -g; perf script)")
    # every frame belongs to the last header before it, unless a blank line came in between.
    # Without comments among the samples (perf script prints its header's comments first), the
    # frames after each header or blank line are the lines up to the next one: counted from the
    # positions of those lines alone (each sample's frames are then the run of lines after its
    # header: hgap of them); else one pass each over the lines (the number of headers so far, the
    # last header or blank line so far), which also names a frame outside a sample.
    fsample = hgap = None
    nb = np.flatnonzero((t == HEADER) | (t == BLANK))
    if not (t[nb[0]:] == COMMENT).any() and not (t[:nb[0]] == FRAME).any():
        tb = t[nb]
        gaps = np.diff(nb, append=n) - 1
        if not gaps[tb == BLANK].any():
            hgap = gaps[tb == HEADER]
        del tb, gaps
    del nb

    # per-sample header fields
    hc = codes[hpos]
    ns = len(hc)
    comm = hdr.comm[hc]
    ev = hdr.event[hc]
    ecount = np.bincount(ev[ev >= 0], minlength=len(hdr.events))
    if (ev >= 0).any():  # events in order of first appearance
        used = np.flatnonzero(ecount)
        firsts = np.unique(ev[ev >= 0], return_index=True)[1]
        seen_codes = used[np.argsort(firsts, kind="stable")].tolist()
    else:
        seen_codes = []
    seen_events = [hdr.events[c] for c in seen_codes]
    meta_warn = []
    if event is None or event == "first":
        chosen = seen_events[0] if seen_events else None
    elif event == "all":
        chosen = None
    else:
        if event not in seen_events:
            raise FormatError(f"no samples of event {event!r}", source=source,
                              expected="one of " + (", ".join(seen_events) or "(no event names in the file)"))
        chosen = event
    if chosen is not None:
        chosen_code = seen_codes[seen_events.index(chosen)]
        keep = (ev < 0) | (ev == chosen_code)
    else:
        keep = np.ones(ns, bool)
    if not keep.all():
        others = ", ".join(f"{e} ({ecount[c]} samples)" for c, e in zip(seen_codes, seen_events) if e != chosen)
        msg = (f"{source}: read the samples of event {chosen!r} ({int(ecount[chosen_code])}) only; set aside "
               f"{others}. Pass event='<name>' to read another or event='all' for every sample")
        warnings.warn(msg, FormatWarning, stacklevel=3)
        meta_warn.append(msg)
    java_comm = np.fromiter((c.startswith("java") for c in hdr.comms), bool, len(hdr.comms))
    java = java_comm[comm] if len(hdr.comms) else np.zeros(ns, bool)

    kept = np.flatnonzero(keep)
    nk = len(kept)
    ft = FrameTable()
    res = None
    if hgap is not None and _SAMPLE_PATHS and nk and _have_arrow():
        res = _sample_paths(codes, hpos[kept], hgap[kept], java[kept], comm[kept], hdr.comms, utype, frame_of, ft)
    if res is None:
        ft = FrameTable()
        if hgap is not None:
            fpos = np.flatnonzero(t == FRAME)
            fsample = np.repeat(np.arange(ns, dtype=np.int64), hgap)
        else:
            fpos, fsample = _frames_of_samples(t, source, lines)
        del t
        offsets, flat = _line_paths(codes, fpos, fsample, keep, java, comm[kept], hdr.comms, frame_of, ft, len(uniq))
        sample_path = None
    else:
        del t
        offsets, flat, sample_path = res
    del codes

    # samples kept
    hk = hc[kept]
    threads = comm[kept]
    tid = hdr.tid[hk]
    weights = np.where(hdr.has_period[hk], hdr.period[hk], 1)
    timed = nk > 0 and bool(hdr.has_time[hk].all())
    tarr = hdr.time[hk] if timed else None
    extras = {"tid": tid}
    has_pid = hdr.has_pid[hk]
    if has_pid.any():
        extras["pid"] = np.where(has_pid, hdr.pid[hk], -1)
    if hdr.has_cpu[hk].any():
        extras["cpu"] = np.where(hdr.has_cpu[hk], hdr.cpu[hk], -1).astype(np.int32)
    evk = ev[kept]
    if (evk >= 0).any():  # what pd.Categorical(["" if e is None else e ...]) codes: the names used, sorted
        used_ev = np.unique(evk).tolist()
        names = ["" if c < 0 else hdr.events[c] for c in used_ev]
        cats = sorted(set(names))
        lut = np.empty(len(hdr.events) + 1, np.int64)
        for c, name in zip(used_ev, names):
            lut[c] = cats.index(name)
        extras["event"] = (lut[evk], cats)
    if timed and len(tarr) > 1 and (np.diff(tarr) < 0).any():
        # perf script prints in time order; if not, order here so the extra columns stay aligned
        order = np.argsort(tarr, kind="stable")
        if sample_path is not None:
            sample_path = sample_path[order]
        else:
            lengths = np.diff(offsets)
            paths = [flat[offsets[i]:offsets[i + 1]] for i in order]
            lengths = lengths[order]
            offsets = np.zeros(nk + 1, np.int64)
            np.cumsum(lengths, out=offsets[1:])
            flat = np.concatenate(paths) if paths else flat
        tarr, weights, threads = tarr[order], weights[order], threads[order]
        extras = {k: (v[order] if isinstance(v, np.ndarray) else (v[0][order], v[1])) for k, v in extras.items()}

    chosen_ev = chosen if chosen is not None else (seen_events[0] if len(seen_events) == 1 else None)
    has_period = bool(hdr.has_period[hk].any())
    if not has_period:
        unit = "samples"
    elif chosen_ev in ("cpu-clock", "task-clock") or (chosen_ev or "").startswith(("cpu-clock:", "task-clock:")):
        unit = "nanoseconds"
    else:
        unit = chosen_ev or "events"
    meta = {"source_format": "perf", "backend": None, "unit": unit, "warnings": meta_warn,
            "event": chosen_ev, "events": {e: int(ecount[c]) for c, e in zip(seen_codes, seen_events)}}
    if perf_header:
        meta["perf_header"] = perf_header
        if "cmdline" in perf_header:
            meta["command"] = perf_header["cmdline"]
    upids = np.unique(hdr.pid[hk][has_pid])
    if len(upids) == 1:
        meta["pid"] = int(upids[0])
    if timed and nk:
        meta["duration_ns"] = int(tarr.max() - tarr.min())
    if unit == "nanoseconds":
        meta["period_ns"] = int(np.median(weights)) if nk else None
    thread_arg = (threads, list(hdr.comms))
    if sample_path is None:
        prof = _build(ft, offsets, flat, weights, tarr, thread_arg, meta)
    else:
        prof = _build_paths(ft, offsets, flat, sample_path, weights, tarr, thread_arg, meta)
    if len(prof.arrays("samples")["stack"]) != nk:  # cannot happen: every sample has a frame
        raise FormatError("internal: samples lost while building", source=source)
    return _with_columns(prof, extras)


def _with_columns(prof, extras: dict):
    """``prof`` with more samples columns: numpy arrays, or (codes, sorted names) for a categorical."""
    from ..profile import Coded, Profile, _code_dtype
    t = {k: prof.arrays(k) for k in ("funcs", "frames", "stacks", "samples", "lines")}
    samples = dict(t["samples"])
    for k, v in extras.items():
        if isinstance(v, tuple):
            codes, cats = v
            arr = np.empty(len(cats), dtype=object)
            arr[:] = cats
            v = Coded(codes.astype(_code_dtype(len(cats))), arr)
        samples[k] = v
    return Profile.from_arrays(t["funcs"], t["frames"], t["stacks"], samples, prof.meta, t["lines"])


def _have_arrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.compute  # noqa: F401
    except ImportError:
        return False
    return True


def _frames_of_samples(t, source, lines):
    """(frame line positions, each one's sample) by one pass each over the lines; a frame outside a
    sample is a FormatError naming it."""
    n = len(t)
    fpos = np.flatnonzero(t == FRAME)
    fsample = np.cumsum(t == HEADER, dtype=np.int64)[fpos] - 1
    sep = np.where((t == HEADER) | (t == BLANK), np.arange(n, dtype=np.int64), -1)
    last = np.maximum.accumulate(sep)[fpos]
    del sep
    outside = (last < 0) | (t[np.maximum(last, 0)] == BLANK)
    del last
    if outside.any():
        i = int(fpos[np.argmax(outside)])
        raise FormatError(f"frame line outside a sample: {lines[i].strip()[:80]!r}", source=source, line=i + 1,
                          expected="frame lines directly after a sample header, before the blank line ending it")
    return fpos, fsample


def _frame_ids(ukey, frame_of, ft):
    """The frames of each distinct (line, java-process) key ``line * 2 + java``, in the order of
    ``ukey`` (sorted), leaf first, added to ``ft``: (ids, start of each key's ids, their count)."""
    cache: dict = {}
    ids: list[int] = []
    kstart = np.zeros(len(ukey), np.int64)
    klen = np.zeros(len(ukey), np.int64)
    for j, key in enumerate(ukey.tolist()):
        pc, rawfunc, mod = frame_of[key >> 1]
        parts = collapse_symbol(rawfunc, mod, bool(key & 1))
        kstart[j] = len(ids)
        klen[j] = len(parts)
        dk = None
        for label, verb in reversed(parts):  # leaf first, like the lines
            ck = (label, verb, mod)
            fid = cache.get(ck)
            if fid is None:
                if dk is None:
                    dk = dso_kind(mod)
                sym = verb[:-4] if verb.endswith("_[i]") else verb
                if dk == "kernel":
                    s = parse_symbol(sym, kernel=True)
                elif dk == "jit":
                    s = parse_symbol(sym, jit=True)
                else:
                    s = parse_symbol(sym, module="" if mod == "[unknown]" else mod)
                fid = cache[ck] = ft.add(s.name, s.file, s.line, s.column, s.hint, s.tier, label=label)
            ids.append(fid)
    return np.asarray(ids, np.int64), kstart, klen


def _expand(fkey, nu, frame_of, ft, group, ngroups):
    """Root-first paths of frame ids, one per group, from frame keys ``fkey`` (line * 2 + java, leaf
    first within each group; ``group`` each key's group, nondecreasing): (offsets, flat)."""
    # np.unique(fkey, return_inverse=True) without a sort: keys are below 2 * distinct lines
    present = np.zeros(2 * nu + 2, bool)
    present[fkey] = True
    ukey = np.flatnonzero(present)
    kinv = (np.cumsum(present) - 1)[fkey]
    del present
    ids_arr, kstart, klen = _frame_ids(ukey, frame_of, ft)
    nparts = klen[kinv]
    if len(nparts) and (nparts == 1).all():
        fs = group
        leaf_first = ids_arr[kstart[kinv]]
    else:  # 'a->b' symbols are two frames, '(process)' ones none
        fs = np.repeat(group, nparts)
        starts = np.repeat(kstart[kinv], nparts)
        starts += np.arange(len(fs), dtype=np.int64)
        starts -= np.repeat(np.cumsum(nparts) - nparts, nparts)
        leaf_first = ids_arr[starts] if len(fs) else np.empty(0, np.int64)
        del starts
    del kinv, nparts
    lengths = np.bincount(fs, minlength=ngroups)
    return fs, leaf_first, lengths


def _reverse(leaf_first, lengths):
    """(offsets, root-first flat) of paths given leaf first."""
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # frames come leaf first: the j-th frame of path b goes to offsets[b] + offsets[b+1] - 1 - j
    # (a reversal within each path: the same index takes them back)
    rev = np.repeat(offsets[:-1] + offsets[1:] - 1, lengths)
    rev -= np.arange(len(rev), dtype=np.int64)
    return offsets, leaf_first[rev]


def _line_paths(codes, fpos, fsample, keep, java, kept_comm, comms, frame_of, ft, nu):
    """(offsets, flat): each kept sample's root-first path, from every frame line."""
    fkeep = keep[fsample]
    if not fkeep.all():
        fpos, fsample = fpos[fkeep], fsample[fkeep]
    del fkeep
    fkey = codes[fpos].astype(np.int64)
    del fpos
    fkey *= 2
    fkey += java[fsample]
    nk = int(keep.sum())
    if nk < len(keep):
        fsample = (np.cumsum(keep) - 1)[fsample]
    fs, leaf_first, lengths = _expand(fkey, nu, frame_of, ft, fsample, nk)
    del fkey, fsample
    # a sample without frames keeps its comm as its only frame (stackcollapse-perf.pl prints 'comm count')
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        extra = np.asarray([ft.add(comms[kept_comm[i]], hint="program", label=comms[kept_comm[i]])
                            for i in empty.tolist()], np.int64)
        fs = np.concatenate([fs, empty])
        leaf_first = np.concatenate([leaf_first, extra])
        order = np.argsort(fs, kind="stable")
        fs, leaf_first = fs[order], leaf_first[order]
        lengths = np.bincount(fs, minlength=nk)
    del fs
    return _reverse(leaf_first, lengths)


def _sample_paths(codes, hpos, hgap, java, kcomm, comms, utype, frame_of, ft):
    """Each kept sample's path where every sample's frames are the run of lines after its header
    (positions ``hpos``, ``hgap`` lines): the runs are interned as a whole first (Arrow hashes each
    run of line codes as one binary value; 100 k samples repeat 20 k runs in the benchmark), so
    that only the distinct (run, java-process) pairs are taken line by line.  (offsets, flat) of the
    paths and each sample's path (a sample without frames has its comm as its one frame, a path of
    its own).  The same frame table and paths as _line_paths."""
    import pyarrow as pa
    import pyarrow.compute as pc
    ns = len(hpos)
    codes = np.ascontiguousarray(codes)
    isz = codes.itemsize
    # values tiling the codes: [before run 0][run 0][between run 0 and run 1][run 1]...[after]
    bnd = np.empty(2 * ns + 2, np.int64)
    bnd[0] = 0
    bnd[1:-1:2] = hpos + 1
    bnd[2:-1:2] = hpos + 1 + hgap
    bnd[-1] = len(codes)
    bnd *= isz
    vals = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 2 * ns + 1,
                                            [None, pa.py_buffer(bnd), pa.py_buffer(codes.view(np.uint8))])
    enc = pc.dictionary_encode(vals)
    run = arrow_ints(enc.indices)[1::2].astype(np.int64)
    d = enc.dictionary
    del vals, enc, bnd
    _, doff, ddata = d.buffers()
    doff = np.frombuffer(doff, np.int64)[d.offset:d.offset + len(d) + 1] // isz
    dcodes = np.frombuffer(ddata, codes.dtype, int(doff[-1]))
    # distinct (run, java) pairs, in order of the key (any order gives the same Profile)
    gk = run * 2 + java
    present = np.zeros(2 * len(d) + 2, bool)
    present[gk] = True
    ug = np.flatnonzero(present)
    ginv = (np.cumsum(present) - 1)[gk]
    del present, gk, run
    gr, gj = ug >> 1, (ug & 1).astype(np.int64)
    glen = doff[gr + 1] - doff[gr]
    ng = len(ug)
    group = np.repeat(np.arange(ng, dtype=np.int64), glen)
    pos = np.repeat(doff[gr] - np.cumsum(glen) + glen, glen) + np.arange(int(glen.sum()), dtype=np.int64)
    line = dcodes[pos].astype(np.int64)
    del pos, d, ddata, dcodes
    if (utype[line] != FRAME).any():  # cannot happen: the runs are frame lines
        return None
    fkey = line * 2 + np.repeat(gj, glen)
    del line
    fs, leaf_first, lengths = _expand(fkey, len(utype), frame_of, ft, group, ng)
    del fs, fkey, group
    offsets, flat = _reverse(leaf_first, lengths)
    empty = lengths == 0
    if empty.any():  # each such sample's comm as its only frame, added in the order of the samples
        es = np.flatnonzero(empty[ginv])
        fid = np.asarray([ft.add(comms[c], hint="program", label=comms[c]) for c in kcomm[es].tolist()], np.int64)
        ufid, inv = np.unique(fid, return_inverse=True)
        ginv = ginv.copy()
        ginv[es] = ng + inv.reshape(-1)
        offsets = np.concatenate([offsets, offsets[-1] + 1 + np.arange(len(ufid), dtype=np.int64)])
        flat = np.concatenate([flat, ufid])
    return offsets, flat, ginv


def _tree(offsets, flat):
    """A chain of nodes per distinct path (Arrow hashes each path's frame ids as one binary value):
    (node_parent, node_frame, each path's distinct path, each distinct path's leaf node, each node's
    depth: its place in its chain)."""
    import pyarrow as pa
    n = len(offsets) - 1
    flat = np.ascontiguousarray(flat, np.int64)
    paths = pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets * 8),
                                                                    pa.py_buffer(flat.view(np.uint8))])
    enc = paths.dictionary_encode()
    group = arrow_ints(enc.indices).astype(np.int64, copy=False)
    d = enc.dictionary
    _, doff, ddata = d.buffers()
    doff = np.frombuffer(doff, np.int64)[d.offset:d.offset + len(d) + 1]
    node_frame = np.frombuffer(ddata, np.int64)[doff[0] // 8:doff[-1] // 8]
    start = (doff[:-1] - doff[0]) // 8
    node_parent = np.arange(-1, len(node_frame) - 1, dtype=np.int64)
    node_parent[start] = -1  # each distinct path a chain from its root frame
    leaf = (doff[1:] - doff[0]) // 8 - 1
    # depth: 1 a node, each chain's root back to 0 (the chains are not empty), summed
    node_depth = np.ones(len(node_frame), np.int64)
    if len(start):
        node_depth[start[0]] = 0
        node_depth[start[1:]] = start[:-1] - start[1:] + 1
    np.cumsum(node_depth, out=node_depth)
    return node_parent, node_frame, group, leaf, node_depth


def _build_paths(ft, offsets, flat, sample_path, weights, times, threads, meta):
    """The Profile of samples given as paths (``offsets``/``flat``, each non-empty) and each sample's
    path: a chain of nodes per distinct path, each sample pointing at its path's leaf (paths no
    sample has are left out)."""
    lengths = np.diff(offsets)
    if not lengths.all():
        has = lengths > 0
        sample_path = (np.cumsum(has) - 1)[sample_path]
        offsets = np.zeros(int(has.sum()) + 1, np.int64)
        np.cumsum(lengths[has], out=offsets[1:])
    node_parent, node_frame, group, leaf, node_depth = _tree(offsets, flat)
    return build_from_tree(ft, node_parent, node_frame, group[sample_path], group_node=leaf, weights=weights,
                           times=times, threads=threads, meta=meta, node_depth=node_depth)


def _build(ft, offsets, flat, weights, times, threads, meta):
    """build_profile(ft, offsets, flat, ...) -- one sample per root-first path -- made from the
    distinct paths: samples repeat a few stacks many times (100 k samples of 20 k stacks in the
    benchmark), so the paths are interned first (Arrow hashes each path's frame ids as one binary
    value) and the builder gets a tree of the distinct ones, each sample pointing at its path's leaf
    (build_from_tree's groups).  The stack table is made level by level from the same (parent,
    frame) keys either way, so the Profile is the same."""
    n = len(offsets) - 1
    try:
        import pyarrow as pa  # noqa: F401
    except ImportError:
        pa = None
    lengths = np.diff(offsets)
    if pa is None or not n or not lengths.min() > 0:
        return build_profile(ft, offsets, flat, weights=weights, times=times, threads=threads, meta=meta)
    node_parent, node_frame, group, leaf, node_depth = _tree(offsets, flat)
    return build_from_tree(ft, node_parent, node_frame, group, group_node=leaf, weights=weights, times=times,
                           threads=threads, meta=meta, node_depth=node_depth)



_SNIFF_TAIL = re.compile(r"(?<![ \t])[ \t]+[0-9]+(?:/[0-9]+)?[ \t]")
_SNIFF_ADDR = re.compile(r"[ \t]+[0-9a-fA-F]+[ \t]+")


def looks_like_header(ln: str, first_not: str = " \t#") -> bool:
    r"""What r"[^ \t#].*?[ \t]+[0-9]+(?:/[0-9]+)?[ \t]+.*:[ \t]*\Z" matches, in linear time."""
    if not ln or ln[0] in first_not or "\n" in ln:
        return False
    s = ln.rstrip(" \t")
    if not s.endswith(":"):
        return False
    return _SNIFF_TAIL.search(s, 1, len(s) - 1) is not None


def _looks_like_frame(ln: str) -> bool:
    r"""What r"[ \t]+[0-9a-fA-F]+[ \t]+.*\(.*\)[ \t]*\Z" matches, in linear time."""
    m = _SNIFF_ADDR.match(ln)
    if m is None or "\n" in ln:
        return False
    rest = ln[m.end():].rstrip(" \t")
    return rest.endswith(")") and "(" in rest[:-1]


def sniff(head: bytes, text: str | None) -> bool:
    """A sample header line directly followed by an indented 'hex symbol (dso)' line."""
    if text is None:
        return False
    lines = text.replace("\r\n", "\n").split("\n")[:2000]
    frames = indented = pairs = 0
    prev_header = False
    for ln in lines:
        if not ln.strip() or ln.startswith("#"):
            prev_header = False
            continue
        if ln[0] in " \t":
            indented += 1
            if _looks_like_frame(ln):
                frames += 1
                if prev_header:
                    pairs += 1
            prev_header = False
        else:
            prev_header = looks_like_header(ln) or _looks_like_bare_header(ln)
    return pairs >= 1 and frames * 2 >= indented


def _looks_like_bare_header(ln: str) -> bool:
    r"""A header with neither time nor event (``perf script -F comm,pid,tid,ip,sym,dso``):
    what r"[^ \t#].*?[ \t]+[0-9]+(?:/[0-9]+)?[ \t]*\Z" matches, in linear time."""
    if not ln or ln[0] in " \t#" or "\n" in ln:
        return False
    s = ln.rstrip(" \t")
    t = s.rstrip("0123456789")
    if len(t) == len(s):
        return False
    if t.endswith("/"):
        u = t[:-1].rstrip("0123456789")
        if len(u) == len(t) - 1:
            return False
        t = u
    return len(t) > 1 and t[-1] in " \t" and bool(t.strip(" \t"))


register_reader("perf", read_perf, sniff, (".perf", ".perf-script", ".perf.txt"), read_file=read_perf_file)
