"""pprof: a ``perftools.profiles.Profile`` protobuf message, usually gzipped.

What is read (field names as in google/pprof ``proto/profile.proto``):

- ``sample.location_id`` lists a sample's locations leaf first, and a
  location's ``line`` entries list its inlined frames leaf first (the last is
  the caller the others were inlined into).  Both are turned round: every
  ``Line`` becomes one frame, stacks root first.
- A ``Line`` gives the frame's line and column; its ``Function`` gives the
  function's name (``system_name`` when the name is empty), file and
  ``start_line``.  A location without lines (not symbolized) becomes a frame
  named by its address (``0x4005d6``) in its mapping's file.  Frames of a
  mapping named ``[kernel.kallsyms]`` are kernel frames; of ``[jit]``,
  ``[v8 builtins]`` or ``[native]`` (the mappings nodeflame's writer uses when
  name and file do not tell the kind) JavaScript, builtin or native frames;
  functions in C, C++, Go, Rust... source files are native; the rest is up to
  :func:`nodeflame.frames.kinds.classify`.
- The weight is one of the sample values: ``sample_type=`` (a type name such
  as ``"cpu"`` or ``"samples"``, ``"type/unit"``, or an index) or
  ``value_index=`` picks it; otherwise ``default_sample_type`` when set, else
  the last value (pprof's own rule).  Time units become nanoseconds
  (``meta['unit'] = 'nanoseconds'``), ``count`` becomes ``samples``, other
  units (``bytes``) are kept.  When the chosen value is not a count and the
  profile has a ``count`` value too, it is kept as the ``samples.count``
  column.  Samples with a negative value (pprof diff profiles) are set aside
  with a warning: a Profile's weights are never negative.
- The label ``thread_name``, else ``thread``, else ``pid`` (string or number)
  becomes the sample's thread; samples without one are ``main``.
- ``time_nanos`` becomes ``meta['start_time']`` (ns since the epoch),
  ``duration_nanos`` ``meta['duration_ns']``, ``period``/``period_type``
  ``meta['period_ns']`` when the period is a time (and ``meta['period']``,
  ``meta['period_type']`` as written), ``comment`` ``meta['comments']``.
  pprof samples carry no times: the profile is not timed.

Broken input — a truncated gzip stream, bytes that are not a Profile message,
a string index outside ``string_table``, an id of a location, function or
mapping that does not exist, a sample with the wrong number of values — is a
FormatError naming the file, the field and what was expected.

Sniffing: gzip magic, then the decompressed head must start with a field of
the Profile message (and, when the whole file is in the head, parse as one
with a string table and sample types or samples).  Uncompressed protobuf is read when the
format is given (``format="pprof"``); it is not sniffed from content.
"""
from __future__ import annotations

import re
import warnings
import zlib
from itertools import chain

import numpy as np

from ..build import FrameTable, build_profile
from ..errors import FormatError, FormatWarning, NodeflameError
from ..formats import gunzip, register_reader
from ..pprof_schema import messages

_I64 = np.int64
GZIP_MAGIC = b"\x1f\x8b"
TIME_UNITS = {"nanoseconds": 1, "nanosecond": 1, "ns": 1, "microseconds": 1_000, "microsecond": 1_000,
              "us": 1_000, "milliseconds": 1_000_000, "millisecond": 1_000_000, "ms": 1_000_000,
              "seconds": 1_000_000_000, "second": 1_000_000_000, "s": 1_000_000_000}
COUNT_UNITS = ("count", "samples", "sample", "")
THREAD_LABELS = ("thread_name", "thread", "pid")  # in order of preference
# mappings whose name says what their code is: the kernel's (as perf_to_profile names it),
# and the ones nodeflame's writer uses for kinds a name and file alone do not tell
MAPPING_HINTS = {"[kernel.kallsyms]": "kernel", "[kernel]": "kernel", "[vmlinux]": "kernel",
                 "[jit]": "js", "[v8 builtins]": "builtin", "[native]": "native"}
# source files of compiled code (pprof comes from Go, C++ and Rust as often as from node):
# their functions are native, not application JavaScript
NATIVE_FILE = re.compile(r"\.(?:c|cc|cpp|cxx|c\+\+|h|hh|hpp|hxx|inl|s|asm|go|rs|zig|m|mm|swift|d)$", re.I)


def kind_hint(file: str, mapping_file: str = "") -> str | None:
    """The hint for kinds.classify of a function in ``file``, located in ``mapping_file``."""
    h = MAPPING_HINTS.get(mapping_file)
    if h is None and NATIVE_FILE.search(file):
        h = "native"
    return h
EXPECTED = "a gzipped perftools.profiles.Profile protobuf (pprof)"

# Profile fields: number -> wire types allowed (2 = length-delimited, 0 = varint)
_FIELD_WIRE = {1: (2,), 2: (2,), 3: (2,), 4: (2,), 5: (2,), 6: (2,), 7: (0,), 8: (0,), 9: (0,), 10: (0,),
               11: (2,), 12: (0,), 13: (0, 2), 14: (0,), 15: (0,)}


# ------------------------------------------------------------------ sniffing

def _starts_like_profile(raw: bytes) -> bool:
    """Does ``raw`` begin with a key of a Profile field with its wire type?"""
    if not raw:
        return False
    key = raw[0]
    if key & 0x80:  # field numbers above 15 need two bytes: not a Profile field
        return False
    wire = _FIELD_WIRE.get(key >> 3)
    return wire is not None and (key & 7) in wire


def _plausible(prof) -> bool:
    # a string table and sample types or samples; the reader checks the rest (string_table[0] == ""
    # and every index) and says what is wrong, which "format not recognised" would not
    return len(prof.string_table) > 0 and (len(prof.sample_type) > 0 or len(prof.sample) > 0)


def sniff(head: bytes, text: str | None) -> bool:
    if not head.startswith(GZIP_MAGIC):
        return False
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = d.decompress(head, 1 << 20)  # a bomb's head must not expand without bound
    except zlib.error:
        return False
    if not _starts_like_profile(raw):
        return False
    if not d.eof:
        return True  # more than the head holds: the first field is all we can judge
    try:
        M = messages()
    except NodeflameError:
        return True  # no protobuf: let the reader say how to install it
    prof = M.Profile()
    try:
        prof.ParseFromString(raw)
    except Exception:  # DecodeError; anything else protobuf raises on garbage
        return False
    return _plausible(prof)


# ------------------------------------------------------------------ decoding

def _err(what, source, position=None, expected=None):
    return FormatError(what, source=source, position=position, expected=expected)


def decode(data: bytes, source: str = "<pprof>", **limits):
    """The Profile message in ``data`` (gzipped or not), checked to have a string table.
    ``limits``: ``max_decompressed``, ``max_ratio`` (see formats.gunzip)."""
    if data[:2] == GZIP_MAGIC:
        data = gunzip(data, source, expected=EXPECTED, **limits)
    M = messages()
    prof = M.Profile()
    try:
        prof.ParseFromString(data)
    except M.DecodeError as e:
        raise _err(f"not a profile.proto message ({e})", source, expected=EXPECTED) from None
    if not data:
        raise _err("the profile is empty", source, expected=EXPECTED)
    st = prof.string_table
    if len(st) == 0:
        raise _err("string_table is empty", source, "string_table",
                   'a string table whose first entry is "" (pprof requires it)')
    if st[0] != "":
        raise _err(f"string_table[0] is {st[0][:40]!r}", source, "string_table[0]",
                   '"" (pprof requires the empty string first)')
    return prof


class _Strings:
    """Index -> string with range checks that name the field."""

    def __init__(self, table, source):
        self.table = list(table)
        self.n = len(self.table)
        self.source = source

    def __call__(self, i: int, where: str) -> str:
        if 0 <= i < self.n:
            return self.table[i]
        raise _err(f"{where} is {i}, outside the string table ({self.n} strings)", self.source, where,
                   f"an index into string_table (0..{self.n - 1})")


def _choose_type(types, prof, S, source, sample_type, value_index, warns) -> int:
    names = [f"{t}/{u}" for t, u in types]
    listing = ", ".join(names) or "none"
    if sample_type is not None and value_index is not None:
        raise NodeflameError("pass sample_type= or value_index=, not both")
    if value_index is not None:
        if isinstance(value_index, bool) or not isinstance(value_index, (int, np.integer)) \
                or not -len(types) <= value_index < len(types):
            raise NodeflameError(f"{source}: value_index={value_index!r} out of range; "
                                 f"the profile's sample types are {listing}")
        return int(value_index) % len(types)
    if sample_type is not None:
        if isinstance(sample_type, (int, np.integer)) and not isinstance(sample_type, bool):
            return _choose_type(types, prof, S, source, None, int(sample_type), warns)
        want = str(sample_type)
        for i, (t, u) in enumerate(types):
            if want in (t, names[i]):
                return i
        raise NodeflameError(f"{source}: no sample type {want!r}; the profile's sample types are {listing}")
    if prof.default_sample_type:
        want = S(prof.default_sample_type, "default_sample_type")
        for i, (t, _) in enumerate(types):
            if t == want:
                return i
        warns.append(f"default_sample_type {want!r} is not among the sample types ({listing}); "
                     "using the last")
    return len(types) - 1


def _threads(samples, S, source):
    """Thread name per sample from its labels, or None when no sample has one."""
    rank_of = {name: rank for rank, name in enumerate(THREAD_LABELS)}
    keys = {i: rank_of[s] for i, s in enumerate(S.table) if s in rank_of}  # string index -> rank, one pass
    if not keys or not any(len(s.label) for s in samples):
        return None
    out = np.full(len(samples), "main", dtype=object)
    found = False
    for i, s in enumerate(samples):  # a Python loop only for labelled profiles
        best = None
        for j, lab in enumerate(s.label):
            rank = keys.get(lab.key)
            if rank is not None and (best is None or rank < best[0]):
                best = (rank, j, lab)
        if best is not None:
            lab = best[2]
            where = f"sample[{i}].label[{best[1]}]"
            out[i] = S(lab.str, where + ".str") if lab.str else str(lab.num)
            found = True
    return out if found else None


def read_pprof(data: bytes, source: str = "<pprof>", *, sample_type=None, value_index=None,
               max_decompressed=None, max_ratio=None):
    """Read a pprof profile.  ``sample_type`` ("cpu", "samples", "cpu/nanoseconds" or an
    index) or ``value_index`` picks the value used as the weight."""
    prof = decode(data, source, max_decompressed=max_decompressed, max_ratio=max_ratio)
    S = _Strings(prof.string_table, source)
    warns: list[str] = []

    # ---- mappings and functions
    mappings = {}
    for i, m in enumerate(prof.mapping):
        mappings[m.id] = S(m.filename, f"mapping[{i}].filename")
    functions = {}
    for i, f in enumerate(prof.function):
        name = S(f.name, f"function[{i}].name") or S(f.system_name, f"function[{i}].system_name")
        functions[f.id] = (name, S(f.filename, f"function[{i}].filename"), max(int(f.start_line), 0))

    # ---- locations: frames root first (inlined lines reversed)
    ft = FrameTable()
    nloc = len(prof.location)
    loc_ids = np.empty(nloc, np.uint64)
    loc_len = np.empty(nloc, _I64)
    loc_frames: list[int] = []
    for i, loc in enumerate(prof.location):  # one per distinct location, not per sample
        loc_ids[i] = loc.id
        mfile = ""
        if loc.mapping_id:
            if loc.mapping_id not in mappings:
                raise _err(f"location[{i}] (id {loc.id}) has mapping_id {loc.mapping_id}, which no mapping has",
                           source, f"location[{i}].mapping_id", "the id of a mapping in the profile")
            mfile = mappings[loc.mapping_id]
        lines = loc.line
        if not len(lines):
            loc_frames.append(ft.add(f"0x{loc.address:x}", mfile, hint=MAPPING_HINTS.get(mfile, "native")))
            loc_len[i] = 1
            continue
        for j in range(len(lines) - 1, -1, -1):
            ln = lines[j]
            fid = ln.function_id
            if fid == 0:
                name, file, start = f"0x{loc.address:x}", mfile, 0
            else:
                fn = functions.get(fid)
                if fn is None:
                    raise _err(f"location[{i}] (id {loc.id}).line[{j}] has function_id {fid}, which no function has",
                               source, f"location[{i}].line[{j}].function_id", "the id of a function in the profile")
                name, file, start = fn
            loc_frames.append(ft.add(name, file, max(int(ln.line), 0), max(int(ln.column), 0),
                                     hint=kind_hint(file, mfile),
                                     func_line=start, func_column=0))
        loc_len[i] = len(lines)
    loc_off = np.zeros(nloc + 1, _I64)
    np.cumsum(loc_len, out=loc_off[1:])
    loc_frames_a = np.asarray(loc_frames, _I64)

    # ---- samples: location ids -> dense location indices, root first
    samples = prof.sample
    n = len(samples)
    id_lists = [s.location_id for s in samples]
    lens = np.fromiter(map(len, id_lists), _I64, n)
    total = int(lens.sum())
    flat_ids = np.fromiter(chain.from_iterable(id_lists), np.uint64, total)
    order = np.argsort(loc_ids, kind="stable")
    sorted_ids = loc_ids[order]
    pos = np.searchsorted(sorted_ids, flat_ids)
    found = pos < nloc
    found[found] = sorted_ids[pos[found]] == flat_ids[found]
    offsets = np.zeros(n + 1, _I64)
    np.cumsum(lens, out=offsets[1:])
    if not found.all():
        k = int(np.flatnonzero(~found)[0])
        i = int(np.searchsorted(offsets, k, side="right") - 1)
        raise _err(f"sample[{i}] has location_id {int(flat_ids[k])}, which no location has", source,
                   f"sample[{i}].location_id[{k - offsets[i]}]", "the id of a location in the profile")
    dense = order[pos] if total else np.empty(0, _I64)
    # reverse each sample's list (leaf first -> root first)
    seg = np.repeat(np.arange(n, dtype=_I64), lens)
    rev = offsets[seg] + offsets[seg + 1] - 1 - np.arange(total, dtype=_I64)
    locs = dense[rev].astype(_I64) if total else np.empty(0, _I64)
    # expand every location into its frames
    per = loc_len[locs]
    flen = np.bincount(seg, weights=per, minlength=n).astype(_I64) if total else np.zeros(n, _I64)
    starts = np.repeat(loc_off[locs], per)
    within = np.arange(int(per.sum()), dtype=_I64) - np.repeat(np.cumsum(per) - per, per)
    flat_frames = loc_frames_a[starts + within] if len(starts) else np.empty(0, _I64)
    frame_off = np.zeros(n + 1, _I64)
    np.cumsum(flen, out=frame_off[1:])

    # ---- values
    types = [(S(vt.type, f"sample_type[{i}].type"), S(vt.unit, f"sample_type[{i}].unit"))
             for i, vt in enumerate(prof.sample_type)]
    ntypes = len(types)
    value_lists = [s.value for s in samples]
    vlen = np.fromiter(map(len, value_lists), _I64, n)
    bad = np.flatnonzero(vlen != ntypes)
    if len(bad) and not (ntypes == 0 and vlen.max() == 0):
        i = int(bad[0])
        raise _err(f"sample[{i}] has {int(vlen[i])} value(s) for {ntypes} sample type(s)", source,
                   f"sample[{i}].value", "one value per sample_type")
    count_col = None
    if ntypes == 0:
        if sample_type is not None or value_index is not None:
            raise NodeflameError(f"{source}: the profile has no sample types to choose from")
        if n:
            warns.append("no sample_type: each sample counts 1")
        weights = np.ones(n, _I64)
        unit, chosen = "samples", None
    else:
        values = np.fromiter(chain.from_iterable(value_lists), _I64, n * ntypes).reshape(n, ntypes)
        idx = _choose_type(types, prof, S, source, sample_type, value_index, warns)
        chosen = types[idx]
        weights = values[:, idx]
        u = chosen[1]
        if u in TIME_UNITS:
            weights = weights * TIME_UNITS[u]
            unit = "nanoseconds"
        elif u in COUNT_UNITS:
            unit = "samples"
        else:
            unit = u
        if unit != "samples":
            counts = [i for i, (t, u) in enumerate(types) if u == "count"]
            if counts:
                c = next((i for i in counts if types[i][0] == "samples"), counts[0])
                count_col = values[:, c]
    threads = _threads(samples, S, source)

    # ---- what cannot be a sample row
    keep = np.ones(n, bool)
    neg = weights < 0
    if neg.any():
        warns.append(f"{int(neg.sum())} sample(s) with a negative value (a diff profile?) set aside")
        keep &= ~neg
    if not keep.all():
        sel = np.flatnonzero(keep)
        fl = flen[sel]
        fo = np.zeros(len(sel) + 1, _I64)
        np.cumsum(fl, out=fo[1:])
        take = np.repeat(frame_off[sel], fl) + (np.arange(int(fl.sum()), dtype=_I64) - np.repeat(fo[:-1], fl))
        flat_frames, frame_off = flat_frames[take], fo
        weights = weights[sel]
        threads = threads[sel] if threads is not None else None
        count_col = count_col[sel] if count_col is not None else None
        flen = fl
    nonempty = flen > 0

    # ---- metadata
    meta = {"source_format": "pprof", "unit": unit, "timed": False, "warnings": warns}
    if chosen is not None:
        meta["sample_type"] = f"{chosen[0]}/{chosen[1]}"
    if prof.time_nanos:
        meta["start_time"] = int(prof.time_nanos)
    if prof.duration_nanos:
        meta["duration_ns"] = int(prof.duration_nanos)
    if prof.HasField("period_type") or prof.period:
        pt = (S(prof.period_type.type, "period_type.type"), S(prof.period_type.unit, "period_type.unit"))
        meta["period"] = int(prof.period)
        meta["period_type"] = f"{pt[0]}/{pt[1]}"
        if pt[1] in TIME_UNITS and prof.period > 0:
            meta["period_ns"] = int(prof.period) * TIME_UNITS[pt[1]]
    comments = [S(c, f"comment[{i}]") for i, c in enumerate(prof.comment)]
    if comments:
        meta["comments"] = comments
    for key in ("drop_frames", "keep_frames"):
        v = getattr(prof, key)
        if v:
            meta[key] = S(v, key)
    for w in warns:
        warnings.warn(f"{source}: {w}", FormatWarning, stacklevel=3)

    p = build_profile(ft, frame_off, flat_frames, weights=weights, threads=threads, meta=meta)
    if count_col is not None:
        p.samples["count"] = np.asarray(count_col[nonempty], _I64)
    return p


register_reader("pprof", read_pprof, sniff, (".pb.gz", ".pprof", ".prof", ".pb"))
