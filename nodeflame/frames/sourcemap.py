"""Source maps (revision 3): decoding, lookup, and finding them beside generated files.

A map is decoded once into sorted numpy arrays, one entry per mapping
segment: generated line and column (0-based), source index, original line
and column (0-based) and name index (-1 where the segment has none).  The
``mappings`` string is decoded without a Python loop over its characters:
the base64 digits are turned into numbers with array operations, segments
and lines are found by counting separators, and the relative fields become
absolute by cumulative sums.

Index maps (``sections``, each with an ``offset`` and an embedded ``map``)
are flattened into one map.  ``sourceRoot`` is prefixed to every source and
sources are resolved against the map's own location, as Node and DevTools
do; ``sourcesContent`` and ``names`` are kept.

Bad maps raise :class:`SourceMapError` (a FormatError naming the map file and
the byte offset of a bad VLQ digit); callers that apply maps to a profile
turn it into a warning.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field

import numpy as np

from .errors import FormatError

_I64 = np.int64
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DIGIT = np.full(256, -1, np.int16)
for _i, _c in enumerate(_B64):
    _DIGIT[ord(_c)] = _i
_SEMI, _COMMA = ord(";"), ord(",")


class SourceMapError(FormatError):
    """A source map that cannot be used (broken JSON, bad VLQ, indices out of range)."""


# ------------------------------------------------------------------ mappings
def decode_mappings(mappings: str, source: str = "<source map>"):
    """Decode a ``mappings`` string.

    Returns a dict of int64 arrays, one entry per segment in the order
    written: ``gen_line``, ``gen_col``, ``src``, ``orig_line``, ``orig_col``,
    ``name`` (``src``/``orig_*`` are -1 for one-field segments, ``name`` -1
    where the segment has no name).  Raises SourceMapError naming the byte
    offset of the first bad digit."""
    b = np.frombuffer(mappings.encode("utf-8", "replace"), np.uint8)
    is_semi = b == _SEMI
    is_sep = is_semi | (b == _COMMA)
    dpos = np.flatnonzero(~is_sep)
    empty = {k: np.empty(0, _I64) for k in ("gen_line", "gen_col", "src", "orig_line", "orig_col", "name")}
    if len(dpos) == 0:
        return empty
    vals = _DIGIT[b[dpos]].astype(_I64)
    bad = np.flatnonzero(vals < 0)
    if len(bad):
        off = int(dpos[bad[0]])
        ch = mappings.encode("utf-8", "replace")[off:off + 1].decode("latin-1")
        raise SourceMapError(f"mappings: {ch!r} at offset {off} is not a base64 VLQ digit", source=source,
                             position=f"mappings offset {off}", expected="base64 digits, ',' and ';'")
    cont = (vals & 32) != 0
    # a digit with the continuation bit must be followed directly by another digit
    cont_idx = np.flatnonzero(cont)
    if len(cont_idx):
        nxt = cont_idx + 1
        broken = (nxt >= len(dpos))
        ok = ~broken
        broken[ok] = dpos[nxt[ok]] != dpos[cont_idx[ok]] + 1
        if broken.any():
            off = int(dpos[cont_idx[np.flatnonzero(broken)[0]]])
            raise SourceMapError(f"mappings: VLQ number cut short at offset {off} (continuation bit set before "
                                 f"a separator or the end)", source=source, position=f"mappings offset {off}")
    starts = np.ones(len(dpos), bool)
    starts[1:] = ~cont[:-1]
    start_idx = np.flatnonzero(starts)
    num_of = np.cumsum(starts) - 1
    k = np.arange(len(dpos)) - start_idx[num_of]
    if k.max() > 6:
        off = int(dpos[np.flatnonzero(k > 6)[0]])
        raise SourceMapError(f"mappings: VLQ number too long (over 32 bits) at offset {off}", source=source,
                             position=f"mappings offset {off}")
    num = np.add.reduceat((vals & 31) << (5 * k), start_idx)
    num = np.where(num & 1, -(num >> 1), num >> 1)
    npos = dpos[start_idx]                    # byte offset of each number
    sep_before = np.cumsum(is_sep)[npos]      # segments are runs of numbers between separators
    seg_start = np.ones(len(num), bool)
    seg_start[1:] = sep_before[1:] != sep_before[:-1]
    seg_first = np.flatnonzero(seg_start)
    nfields = np.diff(np.append(seg_first, len(num)))
    badf = np.flatnonzero((nfields != 1) & (nfields != 4) & (nfields != 5))
    if len(badf):
        off = int(npos[seg_first[badf[0]]])
        raise SourceMapError(f"mappings: a segment of {int(nfields[badf[0]])} fields at offset {off}",
                             source=source, position=f"mappings offset {off}", expected="1, 4 or 5 fields")
    nseg = len(seg_first)
    gen_line = np.cumsum(is_semi)[npos[seg_first]].astype(_I64)

    def field(i):
        out = np.zeros(nseg, _I64)
        has = nfields > i
        out[has] = num[seg_first[has] + i]
        return out

    dcol = field(0)
    cs = np.cumsum(dcol)
    line_first = np.ones(nseg, bool)
    line_first[1:] = gen_line[1:] != gen_line[:-1]
    first_idx = np.flatnonzero(line_first)
    owner = np.cumsum(line_first) - 1
    gen_col = cs - (cs[first_idx] - dcol[first_idx])[owner]   # the column restarts on every line
    src = np.cumsum(field(1))
    orig_line = np.cumsum(field(2))
    orig_col = np.cumsum(field(3))
    name = np.cumsum(field(4))
    one = nfields == 1
    src[one] = -1
    orig_line[one] = -1
    orig_col[one] = -1
    name[nfields < 5] = -1
    return {"gen_line": gen_line, "gen_col": gen_col, "src": src, "orig_line": orig_line,
            "orig_col": orig_col, "name": name}


# ------------------------------------------------------------------ the map
@dataclass
class SourceMap:
    """A decoded source map; segment arrays sorted by generated (line, column)."""

    path: str                       # where it came from (a file, or "FILE (inline)")
    sources: list                   # resolved source paths / URLs
    sources_content: list           # text or None per source
    names: list
    gen_line: np.ndarray
    gen_col: np.ndarray
    src: np.ndarray
    orig_line: np.ndarray
    orig_col: np.ndarray
    name: np.ndarray
    file: str | None = None
    _key: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        order = np.lexsort((self.gen_col, self.gen_line))
        if len(order) and not (order == np.arange(len(order))).all():
            for a in ("gen_line", "gen_col", "src", "orig_line", "orig_col", "name"):
                setattr(self, a, getattr(self, a)[order])
        self._key = (self.gen_line << 32) | self.gen_col

    def __len__(self):
        return len(self.gen_line)

    def segment(self, lines, cols, exact_line: bool = True) -> np.ndarray:
        """Index of the segment covering each 0-based generated (line, column): the last one at or
        before it on that line; a column before the line's first segment takes that first one.
        -1 where the line has no segment."""
        lines = np.asarray(lines, _I64)
        cols = np.maximum(np.asarray(cols, _I64), 0)
        key = self._key
        if len(key) == 0:
            return np.full(len(lines), -1, _I64)
        i = np.searchsorted(key, (lines << 32) | cols, side="right") - 1
        ok = (i >= 0) & (self.gen_line[np.maximum(i, 0)] == lines)
        j = np.searchsorted(key, lines << 32, side="left")
        j_ok = (j < len(key)) & (self.gen_line[np.minimum(j, len(key) - 1)] == lines)
        return np.where(ok, i, np.where(j_ok, j, -1))

    def spans_lines(self, lines) -> np.ndarray:
        """Whether each 0-based generated line maps to more than one original line (minified
        code), so that a line without a column cannot be placed."""
        c = getattr(self, "_multi", None)
        if c is None:
            ok = self.src >= 0
            gl, ol = self.gen_line[ok], self.orig_line[ok] + (self.src[ok] << 32)
            if len(gl):
                first = np.flatnonzero(np.r_[True, gl[1:] != gl[:-1]])
                multi = np.minimum.reduceat(ol, first) != np.maximum.reduceat(ol, first)
                c = (gl[first], multi)
            else:
                c = (np.empty(0, _I64), np.empty(0, bool))
            self._multi = c
        ul, multi = c
        lines = np.asarray(lines, _I64)
        i = np.searchsorted(ul, lines)
        hit = (i < len(ul)) & (ul[np.minimum(i, max(len(ul) - 1, 0))] == lines) if len(ul) else np.zeros(len(lines), bool)
        return hit & (multi[np.minimum(i, max(len(ul) - 1, 0))] if len(ul) else hit)

    def lookup(self, lines, cols):
        """Original (source index, line, column, name index) of 0-based generated positions;
        all -1 where unmapped.  Lines and columns returned are 0-based."""
        seg = self.segment(lines, cols)
        s = np.maximum(seg, 0)
        hit = seg >= 0
        src = np.where(hit, self.src[s], -1) if len(self) else np.full(len(seg), -1, _I64)
        mapped = src >= 0
        pick = lambda a: np.where(mapped, a[s], -1) if len(self) else np.full(len(seg), -1, _I64)  # noqa: E731
        return src, pick(self.orig_line), pick(self.orig_col), pick(self.name)


def _resolve_source(s: str, root: str, base: str | None) -> str:
    s = s or ""
    if root:
        if not (re.match(r"^[a-zA-Z][\w+.-]*:", s) or s.startswith("/")):
            s = root.rstrip("/") + "/" + s
    if s.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(s).path)
    if re.match(r"^[a-zA-Z][\w+.-]*:", s):   # webpack://, https://, ...: kept as written
        return s
    if os.path.isabs(s) or base is None:
        return os.path.normpath(s) if s else s
    return os.path.normpath(os.path.join(base, s))


def parse_source_map(data, source: str = "<source map>", base: str | None = None) -> SourceMap:
    """Parse a map from bytes, text or an already-loaded dict.  ``base`` is the directory that
    relative sources are resolved against (the map's own directory)."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data)
        if data.startswith(b")]}'"):   # XSSI guard some servers prepend
            data = data.split(b"\n", 1)[1] if b"\n" in data else b""
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise SourceMapError(f"not UTF-8 text (byte {e.start})", source=source, expected="a JSON source map") from None
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            cut = " (file truncated?)" if e.pos >= len(e.doc.rstrip()) or e.msg.startswith("Unterminated") else ""
            raise SourceMapError(f"invalid JSON: {e.msg}{cut}", source=source, line=e.lineno,
                                 position=f"column {e.colno}", expected="a JSON source map") from None
    if not isinstance(data, dict):
        raise SourceMapError(f"a JSON {type(data).__name__}, not an object", source=source,
                             expected='a source map {"version": 3, "mappings": ...}')
    if "sections" in data:
        return _parse_index_map(data, source, base)
    version = data.get("version", 3)
    if version != 3:
        raise SourceMapError(f"version {version!r}", source=source, expected="version 3")
    mappings = data.get("mappings")
    if not isinstance(mappings, str):
        raise SourceMapError("no mappings string", source=source, expected='"mappings": "AAAA,..."')
    sources = data.get("sources") or []
    names = data.get("names") or []
    content = data.get("sourcesContent") or []
    if not isinstance(sources, list) or not isinstance(names, list) or not isinstance(content, list):
        raise SourceMapError("sources, names and sourcesContent must be lists", source=source)
    root = data.get("sourceRoot") or ""
    if not isinstance(root, str):
        root = ""
    res = [_resolve_source(s if isinstance(s, str) else "", root, base) for s in sources]
    content = [c if isinstance(c, str) else None for c in content] + [None] * (len(sources) - len(content))
    names = [n if isinstance(n, str) else "" for n in names]
    m = decode_mappings(mappings, source)
    src, nm = m["src"], m["name"]
    if len(src) and (src.max() >= len(sources) or (src[src >= 0] < 0).any() or (src < -1).any()):
        bad = int(np.flatnonzero((src >= len(sources)) | (src < -1))[0])
        raise SourceMapError(f"mappings: segment {bad} names source {int(src[bad])}, but there are "
                             f"{len(sources)} sources", source=source, position="mappings")
    if len(nm) and (nm.max() >= len(names) or (nm < -1).any()):
        bad = int(np.flatnonzero((nm >= len(names)) | (nm < -1))[0])
        raise SourceMapError(f"mappings: segment {bad} names name {int(nm[bad])}, but there are "
                             f"{len(names)} names", source=source, position="mappings")
    if len(src) and ((m["gen_col"] < 0).any() or (m["orig_line"][src >= 0] < 0).any()
                     or (m["orig_col"][src >= 0] < 0).any()):
        raise SourceMapError("mappings: a negative line or column", source=source, position="mappings")
    return SourceMap(source, res, content[:len(sources)], names, m["gen_line"], m["gen_col"], src,
                     m["orig_line"], m["orig_col"], nm, data.get("file"))


def _parse_index_map(data: dict, source: str, base: str | None) -> SourceMap:
    secs = data.get("sections")
    if not isinstance(secs, list):
        raise SourceMapError("sections is not a list", source=source, expected='"sections": [{offset, map}]')
    sources, content, names = [], [], []
    parts = []
    for i, sec in enumerate(secs):
        where = f"sections[{i}]"
        if not isinstance(sec, dict) or not isinstance(sec.get("offset"), dict):
            raise SourceMapError(f"{where} has no offset", source=source, position=where,
                                 expected='{"offset": {"line": L, "column": C}, "map": {...}}')
        if "map" not in sec:
            raise SourceMapError(f"{where} refers to a map by url, which is not supported", source=source,
                                 position=where, expected="an embedded map")
        off = sec["offset"]
        line, col = off.get("line", 0), off.get("column", 0)
        if not (isinstance(line, int) and isinstance(col, int)) or line < 0 or col < 0:
            raise SourceMapError(f"{where}.offset is not two non-negative integers", source=source, position=where)
        sub = parse_source_map(sec["map"], f"{source} {where}", base)
        gl = sub.gen_line + line
        gc = np.where(sub.gen_line == 0, sub.gen_col + col, sub.gen_col)
        parts.append((gl, gc, np.where(sub.src >= 0, sub.src + len(sources), -1), sub.orig_line, sub.orig_col,
                      np.where(sub.name >= 0, sub.name + len(names), -1)))
        sources += sub.sources
        content += sub.sources_content
        names += sub.names
    if parts:
        cols = [np.concatenate(c) for c in zip(*parts)]
    else:
        cols = [np.empty(0, _I64)] * 6
    return SourceMap(source, sources, content, names, *cols, data.get("file"))


# ------------------------------------------------------------------ finding maps
_URL_LINE = re.compile(rb"[ \t]*(?://|/\*)[#@][ \t]+sourceMappingURL=[ \t]*([^\s'\"*]+)")


def mapping_url(text: bytes) -> str | None:
    """The URL of the last ``//# sourceMappingURL=`` comment line of a generated file, or None
    (a string literal that merely contains the words does not count)."""
    end = len(text)
    while True:
        i = text.rfind(b"sourceMappingURL=", 0, end)
        if i < 0:
            return None
        start = text.rfind(b"\n", 0, i) + 1
        m = _URL_LINE.match(text, start)
        if m is not None and m.start(1) > i:
            return m.group(1).decode("utf-8", "replace")
        end = i


def decode_data_url(url: str, source: str) -> bytes:
    """The bytes of a ``data:`` URL (base64 or percent-encoded)."""
    head, sep, body = url.partition(",")
    if not sep:
        raise SourceMapError("data: URL without a comma", source=source, expected="data:application/json;base64,...")
    if head.endswith(";base64"):
        try:
            return base64.b64decode(body + "=" * (-len(body) % 4), validate=False)
        except (binascii.Error, ValueError) as e:
            raise SourceMapError(f"inline map: bad base64 ({e})", source=source) from None
    return urllib.parse.unquote_to_bytes(body)


def file_path(file: str) -> str | None:
    """A generated file's local path from a profile's file column (``file://`` URLs decoded);
    None for what is not a file (``node:`` modules, eval'd code, http URLs)."""
    if not file:
        return None
    if file.startswith("file://"):
        return urllib.parse.unquote(urllib.parse.urlparse(file).path) or None
    if re.match(r"^[a-zA-Z][\w+.-]*:", file):
        return None
    return file if os.path.isabs(file) else None
