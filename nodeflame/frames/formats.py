"""Format registry: readers (here, in ``frames``) and writers (registered by
``nodeflame.writers`` so that ``frames`` never imports the layer above it).

``read(path_or_file, format=None)`` sniffs the format from the content;
``write(profile, path, format=None)`` takes it from the extension.
"""
from __future__ import annotations

import io
import os
import re
import zlib
from typing import Callable

from .errors import FormatError, LimitError, NodeflameError

# Limits on compressed input (gzip files, .nfprof zip members).  A real profile
# compresses 5-50x; deflate cannot exceed ~1032x.  Both limits are adjustable per
# call (``read(..., max_decompressed=..., max_ratio=...)``) or here, module-wide.
MAX_DECOMPRESSED = 4 << 30      # bytes of decompressed input, whatever the ratio
MAX_RATIO = 200                 # decompressed / compressed, checked once past RATIO_FLOOR
RATIO_FLOOR = 64 << 20          # small inputs may expand by any ratio up to this size


class _Record:
    """A plain record (what a dataclass would make; dataclasses imports inspect, a start-up cost)."""
    __slots__ = ()

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"

    def __eq__(self, other):
        return type(other) is type(self) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None


class Reader(_Record):
    """``read``: (data: bytes, source: str, **options) -> Profile; ``sniff``: (head: bytes, text_head:
    str | None) -> bool; ``read_file``: (binary file object at 0, source, **options) -> Profile, reads a
    plain file in chunks instead of as one bytes object (read() passes it a file it opened itself)."""
    __slots__ = ("name", "read", "sniff", "extensions", "read_file")

    def __init__(self, name: str, read: Callable, sniff: Callable, extensions: tuple = (),
                 read_file: Callable | None = None):
        self.name, self.read, self.sniff, self.extensions, self.read_file = name, read, sniff, extensions, read_file


class Writer(_Record):
    """``write``: (profile, out: binary file, **options) -> None."""
    __slots__ = ("name", "write", "extensions", "binary")

    def __init__(self, name: str, write: Callable, extensions: tuple = (), binary: bool = False):
        self.name, self.write, self.extensions, self.binary = name, write, extensions, binary


READERS: dict[str, Reader] = {}
WRITERS: dict[str, Writer] = {}
DIFF_WRITERS: dict[str, Writer] = {}
# modules of higher layers that frames may reach only through a loader the
# package registers (``nodeflame/__init__.py``), e.g. "widgets" for .flame()
_LAZY: dict[str, Callable] = {}
ALIASES = {"flame": "svg", "collapsed": "folded", "perf-script": "perf", "prof": "pprof",
           "pb": "pprof", "json": "speedscope", "txt": "text", "stacks": "raw", "trace": "chrome-trace",
           "chrometrace": "chrome-trace"}
# order in which sniffers are tried: most specific first
SNIFF_ORDER = ["nfprof", "pprof", "chrome-trace", "cpuprofile", "speedscope", "perf", "raw", "folded"]
# format -> the module of nodeflame.frames.readers that registers its reader, imported when the format
# is first needed (reading folded stacks loads no other reader, nor pandas)
READER_MODULES = {"folded": "folded", "raw": "raw", "perf": "perf", "chrome-trace": "chrometrace",
                  "cpuprofile": "cpuprofile", "speedscope": "speedscope", "pprof": "pprof", "nfprof": "nfprof"}


def register_reader(name, read, sniff, extensions=(), read_file=None):
    READERS[name] = Reader(name, read, sniff, tuple(extensions), read_file)


def register_writer(name, write, extensions=(), binary=False):
    WRITERS[name] = Writer(name, write, tuple(extensions), binary)


def register_diff_writer(name, write, extensions=(), binary=False):
    DIFF_WRITERS[name] = Writer(name, write, tuple(extensions), binary)


def register_lazy(name: str, loader: Callable) -> None:
    _LAZY[name] = loader


def lazy_module(name: str):
    """A higher layer's module, loaded on first use through its registered loader."""
    loader = _LAZY.get(name)
    if loader is None:
        raise NodeflameError(f"{name} are not available: import nodeflame (not only nodeflame.frames)")
    try:
        return loader()
    except ModuleNotFoundError as e:
        raise NodeflameError(f"{name} need a package that is not installed ({e.name}): "
                             f"pip install 'nodeflame[notebook]'") from e


def _canon(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    return ALIASES.get(fmt, fmt)


def _load(path_or_file):
    if isinstance(path_or_file, (bytes, bytearray)):
        return bytes(path_or_file), "<bytes>"
    if hasattr(path_or_file, "read"):
        data = path_or_file.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        return data, getattr(path_or_file, "name", "<stream>")
    path = os.fspath(path_or_file)
    try:
        with open(path, "rb") as fh:
            return fh.read(), path
    except FileNotFoundError:
        raise NodeflameError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NodeflameError(f"{path}: is a directory, expected a profile file") from None
    except PermissionError:
        raise NodeflameError(f"{path}: permission denied") from None


def decode_text(data: bytes, source: str) -> str:
    """Bytes to text: UTF-8 (with or without BOM) or UTF-16 with a BOM; CRLF kept for readers to strip."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise FormatError(f"invalid UTF-16 at byte {e.start}", source=source,
                              expected="text in UTF-8 or UTF-16 with a byte-order mark") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        # tolerate stray bytes (perf output of binary symbol names) but say where
        text = data.decode("utf-8", errors="replace")
        import warnings
        from .errors import FormatWarning
        warnings.warn(f"{source}:{line}: invalid UTF-8 at byte {e.start}, replaced", FormatWarning, stacklevel=3)
        return text


def check_expansion(out_size: int, in_size: int, source: str, what: str = "gzip stream", *,
                    max_decompressed: int | None = None, max_ratio: float | None = None) -> None:
    """LimitError when ``in_size`` compressed bytes expanding to ``out_size`` breaks a limit."""
    cap = MAX_DECOMPRESSED if max_decompressed is None else max_decompressed
    ratio = MAX_RATIO if max_ratio is None else max_ratio
    if out_size > cap:
        raise LimitError(f"{what} expands to more than {cap:,} bytes", source=source,
                         expected="a smaller input, or read(..., max_decompressed=N) to allow more")
    if out_size > RATIO_FLOOR and out_size > ratio * max(in_size, 1):
        raise LimitError(f"{what} expands more than {ratio:g} times ({in_size:,} bytes to over "
                         f"{out_size:,})", source=source,
                         expected="a real profile, or read(..., max_ratio=N) to allow more")


def gunzip(data: bytes, source: str, *, max_decompressed: int | None = None,
           max_ratio: float | None = None, expected: str | None = None) -> bytes:
    """Decompress gzip ``data`` (concatenated members too) within the size and ratio limits."""
    cap = MAX_DECOMPRESSED if max_decompressed is None else max_decompressed
    out = []
    size = 0
    rest = bytes(data)
    step = 1 << 24
    try:
        while rest:
            d = zlib.decompressobj(wbits=31)
            chunk = d.decompress(rest, step)
            while True:
                out.append(chunk)
                size += len(chunk)
                check_expansion(size, len(data), source, max_decompressed=cap, max_ratio=max_ratio)
                if d.eof or not d.unconsumed_tail and not chunk:
                    break
                chunk = d.decompress(d.unconsumed_tail, step)
            if not d.eof:
                raise FormatError("broken gzip stream: compressed file ended before the end-of-stream marker",
                                  source=source, expected=expected)
            rest = d.unused_data.lstrip(b"\0")  # gzip -c a b > x.gz; and zero padding, as gzip allows
            if rest and not rest.startswith(b"\x1f\x8b"):
                raise FormatError("broken gzip stream: trailing garbage after the compressed data",
                                  source=source, expected=expected)
    except zlib.error as e:
        raise FormatError(f"broken gzip stream: {e}", source=source, expected=expected) from None
    return b"".join(out)


# Sniffing looks at a window of the input: its first 64 KB (SNIFF_HEAD).  When no
# sniffer knows that window and the input goes on, the window is widened so that
# where the evidence starts does not decide: a leading block of '#' comment lines
# (perf --header) does not count towards it, and a line the window cut is followed
# to its end (a folded line of 10 000 frames or a very long name; a one-line JSON
# file), within SNIFF_MAX bytes.  Every sniffer is linear in its window, and a
# gzip input is decompressed only as far as the window reaches.
SNIFF_HEAD = 65536
SNIFF_MAX = 64 << 20
_COMMENTS = re.compile(rb"(?:[ \t]*#[^\n]*\n)*")


def _utf16(data: bytes) -> bool:
    return data.startswith((b"\xff\xfe", b"\xfe\xff"))


def _text(data: bytes, source: str) -> str | None:
    """The text of a window of a text file, or None (not text)."""
    if data.startswith((b"\x1f\x8b", b"PK\x03\x04")):
        return None
    if _utf16(data):
        data = data[:len(data) - len(data) % 2]
    else:  # a multi-byte character cut by the window's end is not an encoding error
        cut = len(data)
        while cut > max(0, len(data) - 3) and 0x80 <= data[cut - 1] < 0xC0:
            cut -= 1
        if cut and data[cut - 1] >= 0xC0:
            data = data[:cut - 1]
    import warnings
    from .errors import FormatWarning
    try:
        with warnings.catch_warnings():
            # a window of binary data (a gzip'd pprof) is looked at as text too: its stray bytes are the
            # reader's to warn about when the file is text, never the sniffer's
            warnings.simplefilter("ignore", FormatWarning)
            return decode_text(data, source)
    except FormatError:
        return None


def _inner(data: bytes, limit: int, line_end_after: int | None = None) -> bytes:
    """The decompressed start of gzip ``data``: ``limit`` bytes, or with ``line_end_after`` as far
    as the first line end at or after that offset (within ``limit``)."""
    d = zlib.decompressobj(wbits=31)
    out = []
    size = 0
    pos = 0
    step = 1 << 20
    end = None
    try:
        while pos < len(data) and size < limit and end is None and not d.eof:
            chunk = d.decompress(data[pos:pos + step], limit - size)
            pos += step
            while True:
                if line_end_after is not None and size + len(chunk) > line_end_after:
                    j = chunk.find(b"\n", max(0, line_end_after - size))
                    if j >= 0:
                        end = size + j + 1
                out.append(chunk)
                size += len(chunk)
                if end is not None or size >= limit or not d.unconsumed_tail:
                    break
                chunk = d.decompress(d.unconsumed_tail, limit - size)
    except zlib.error:
        pass
    raw = b"".join(out)
    return raw[:end if end is not None else limit]


def _windows(data: bytes, source: str, limits: dict | None = None):
    """(head bytes, head text or None) of the first window, then, lazily, of the widened one.

    A gzip input is widened within the read's ``limits`` (max_decompressed, max_ratio): a window
    that already breaks one is refused here (LimitError) as the read would refuse the whole, not
    decompressed and searched further (a bomb of 32 MB of one line: 1 s to sniff up to SNIFF_MAX)."""
    limits = limits or {}
    cap = limits.get("max_decompressed")
    gz_max = min(SNIFF_MAX, (MAX_DECOMPRESSED if cap is None else cap) + 1)

    def inner(limit, line_end_after=None):
        out = _inner(data, min(limit, gz_max), line_end_after)
        check_expansion(len(out), len(data), source, **limits)
        return out
    head = data[:SNIFF_HEAD]
    gz = head.startswith(b"\x1f\x8b")
    plain = _inner(data, SNIFF_HEAD) if gz else head
    yield head, (_text(plain, source) if plain else None)
    if not plain or plain.startswith((b"\x1f\x8b", b"PK\x03\x04")) or _utf16(plain):
        return
    if len(plain) < SNIFF_HEAD:
        return  # the whole input was seen
    body = _COMMENTS.match(plain).end()
    rest = plain[body:]
    if b"\n" not in rest and rest.lstrip(b" \t")[:1] in (b"#", b""):  # comments to the window's end
        # (the last one cut by it): how far do they go, within SNIFF_MAX
        whole = inner(SNIFF_MAX) if gz else data[:SNIFF_MAX]
        body = _COMMENTS.match(whole).end()
        del whole
    want = body + SNIFF_HEAD - 1  # the window after the comments, to the end of its last line
    if gz:
        wide = inner(SNIFF_MAX, want)
    else:
        end = data.find(b"\n", want, SNIFF_MAX)
        wide = data[:end + 1 if end >= 0 else SNIFF_MAX]
    if len(wide) <= len(plain) and not body:
        return  # nothing more to see
    wide = wide[body:]
    yield (head if gz else wide), _text(wide, source)


# What each sniffer needs at the least, judged without importing its reader: a window that fails it
# is one the sniffer would refuse too, so its module is not imported for it.  (JSON formats: an object
# or array, or a gzip head the sniffer decompresses; perf: an indented line (a frame under a sample
# header); raw: a line that is a count alone.)  tests/test_startup.py checks that no window of the
# corpus or the fuzz seeds that a sniffer accepts fails its condition.
_RAW_COUNT = re.compile(r"^[ \t\f\v]*[0-9]+[ \t\f\v]*\r?$", re.M)


def _json_window(head: bytes, text: str | None) -> bool:
    if text is None:
        return head.startswith(b"\x1f\x8b")
    return text.lstrip("\ufeff \t\r\n")[:1] in ("{", "[")


SNIFF_NEEDS: dict[str, Callable] = {
    "nfprof": lambda head, text: head.startswith(b"PK\x03\x04"),
    "pprof": lambda head, text: head.startswith(b"\x1f\x8b"),
    "chrome-trace": _json_window,
    "cpuprofile": _json_window,
    "speedscope": _json_window,
    "perf": lambda head, text: text is not None and (text[:1] in (" ", "\t") or "\n " in text or "\n\t" in text),
    "raw": lambda head, text: text is not None and _RAW_COUNT.search(text) is not None,
}


def _reader(name: str) -> "Reader | None":
    """The reader of format ``name``, its module imported on first use."""
    r = READERS.get(name)
    if r is None and name in READER_MODULES:
        import importlib
        importlib.import_module(f"{__package__}.readers.{READER_MODULES[name]}")  # registers it
        r = READERS.get(name)
    return r


def sniff(data: bytes, source: str = "<input>", **limits) -> str:
    """Name of the format of ``data``, decided from its content (see SNIFF_HEAD); ``limits``: the
    read's max_decompressed and max_ratio, which a gzip input's window keeps within."""
    for head, text_head in _windows(data, source, limits):
        for name in SNIFF_ORDER:
            need = SNIFF_NEEDS.get(name)
            if need is not None and not need(head, text_head):
                continue
            r = _reader(name)
            if r is not None and r.sniff(head, text_head):
                return name
    if not data.strip():
        raise FormatError("file is empty", source=source, expected="a profile")
    raise FormatError("format not recognised", source=source, line=1,
                      expected="one of " + ", ".join(SNIFF_ORDER) + " (use format=... to force one)")


class _bulk_memory:
    """Memory settings for a reader or writer that fills GBs of fresh arrays once.

    - No transparent-huge-page advice from numpy: numpy advises huge pages
      (madvise MADV_HUGEPAGE) for every array of 4 MB or more, and where the
      kernel then compacts memory synchronously on a page fault (THP defrag
      ``madvise``, a common default) the process spends more time in the
      kernel than in its own work (folded 10 M -> SVG: 2.9-9.6 s of system
      time with the advice, 0.6 s without; bench/README.md).
    - Arrow's allocations (pyarrow, when pandas or a reader loaded it) from
      the system allocator instead of mimalloc, which handed pages back and
      faulted them in again (raw 10 M -> folded: 8.9-11.4 s of system time and
      a 2.4 GB peak, against 1.9-2.8 s and 1.8 GB).

    Re-entrant; the previous settings are restored on exit."""

    def __enter__(self):
        import sys
        self.set_advice = self.pa = None
        try:
            import numpy as np
            mod = getattr(np, "_core", None) or np.core
            self.set_advice = getattr(mod.multiarray, "_set_madvise_hugepage", None)
        except (ImportError, AttributeError):
            pass
        if self.set_advice is not None:
            self.advice = self.set_advice(False)
        pa = sys.modules.get("pyarrow")
        if pa is not None and hasattr(pa, "system_memory_pool"):
            self.pa, self.pool = pa, pa.default_memory_pool()
            pa.set_memory_pool(pa.system_memory_pool())
        return self

    def __exit__(self, *exc):
        if self.set_advice is not None:
            self.set_advice(self.advice)
        if self.pa is not None:
            self.pa.set_memory_pool(self.pool)


def read(path_or_file, format: str | None = None, **options):
    """Read a profile in any supported format; the format is sniffed from the content."""
    limits = {k: options.pop(k) for k in ("max_decompressed", "max_ratio") if k in options}
    if isinstance(path_or_file, (str, os.PathLike)):
        prof = _read_file(os.fspath(path_or_file), format, options)
        if prof is not None:
            return prof
    data, source = _load(path_or_file)
    fmt = format or "any format"

    def run():
        nonlocal fmt, data
        fmt = _canon(format) if format else sniff(data, source, **limits)
        r = _reader(fmt)
        if r is None:
            _ensure_readers()
            r = READERS.get(fmt)
        if r is None:
            raise NodeflameError(f"unknown input format {format!r}; known: {', '.join(sorted(READERS))}")
        if fmt != "pprof" and data.startswith(b"\x1f\x8b"):
            data = gunzip(data, source, **limits)
        elif fmt in ("pprof", "nfprof") and limits:
            options.update(limits)
        with _bulk_memory():
            return r.read(data, source, **options)
    return _guarded(run, lambda: fmt, source)


_READER_BUGS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, NotImplementedError,
                RecursionError, EOFError, zlib.error, SyntaxError)


def _guarded(run, fmt, source):
    """``run()`` (sniff and read) with every failure a nodeflame error naming ``source``, and the Profile
    stamped with its source format (``fmt()``, known once ``run`` sniffed it) and source.  None stays None."""
    try:
        prof = run()
    except FormatError as e:
        raise e.with_source(source)
    except (NodeflameError, MemoryError, KeyboardInterrupt):
        raise
    except _READER_BUGS as e:
        # last line of defence: whatever a reader missed must still name the file
        # (OverflowError from huge numbers, zipfile/zlib errors from damaged archives, ...)
        raise FormatError(f"cannot read as {fmt()}: {type(e).__name__}: {e}"[:500], source=source) from e
    if prof is None:
        return None
    if prof.meta.get("source_format") is None:
        prof.meta["source_format"] = fmt()
    if prof.meta.get("source") is None:
        prof.meta["source"] = source
    return prof


def _read_file(path: str, format: str | None, options: dict):
    """The Profile of the file at ``path`` read by its reader's ``read_file`` (in chunks, never
    the whole file in memory at once), or None where that does not apply (another reader, gzip,
    a head no sniffer knows, not a regular file): read() then loads the file as bytes."""
    import stat
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a pipe or device (/dev/stdin): read once, by _load
        fh = open(path, "rb")
    except OSError:
        return None  # _load says why
    with fh:
        head = fh.read(65536)
        if head.startswith(b"\x1f\x8b"):
            return None
        fmt = format or "any format"

        def run():
            nonlocal fmt
            try:
                fmt = _canon(format) if format else sniff(head, path)
            except FormatError:
                return None
            r = _reader(fmt)
            if r is None or r.read_file is None:
                return None
            fh.seek(0)
            with _bulk_memory():
                return r.read_file(fh, path, **options)
        return _guarded(run, lambda: fmt, path)


def format_for_path(path, format: str | None) -> str:
    _ensure_writers()
    if format:
        fmt = _canon(format)
    else:
        name = os.fspath(path) if not hasattr(path, "write") else getattr(path, "name", "")
        base = os.path.basename(str(name)).lower()
        fmt = None
        for w in WRITERS.values():
            for ext in w.extensions:
                if base.endswith(ext):
                    fmt = w.name if fmt is None or len(ext) > len(_ext_of(fmt)) else fmt
        if fmt is None:
            raise NodeflameError(f"cannot tell the output format from {name!r}; pass format= "
                                 f"(one of {', '.join(sorted(WRITERS))})")
    if fmt not in WRITERS:
        raise NodeflameError(f"unknown output format {format!r}; known: {', '.join(sorted(WRITERS))}")
    return fmt


def _ext_of(fmt):
    w = WRITERS[fmt]
    return max(w.extensions, key=len) if w.extensions else ""


def write(profile, path, format: str | None = None, **options) -> None:
    fmt = format_for_path(path, format)
    w = WRITERS[fmt]
    with _bulk_memory():
        _write(w, profile, path, **options)


def _write(w, profile, path, **options) -> None:
    if hasattr(path, "write"):
        if isinstance(path, io.TextIOBase):
            buf = io.BytesIO()
            w.write(profile, buf, **options)
            path.write(buf.getvalue().decode("utf-8"))
        else:
            w.write(profile, path, **options)
        return
    tmp = os.fspath(path) + ".tmp"
    try:
        with open(tmp, "wb") as fh:
            w.write(profile, fh, **options)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_diff(d, path, format: str | None = None, **options) -> None:
    """Write a Diff: format from the extension among the registered diff writers."""
    _ensure_writers()
    if format:
        fmt = _canon(format)
    else:
        base = os.path.basename(str(os.fspath(path) if not hasattr(path, "write") else getattr(path, "name", ""))).lower()
        fmt = next((w.name for w in DIFF_WRITERS.values() if any(base.endswith(e) for e in w.extensions)), None)
    if fmt not in DIFF_WRITERS:
        raise NodeflameError(f"cannot write a diff as {format or path!r}; diff formats: "
                             f"{', '.join(sorted(DIFF_WRITERS))}")
    w = DIFF_WRITERS[fmt]
    if hasattr(path, "write"):
        w.write(d, path, **options)
        return
    with open(path, "wb") as fh:
        w.write(d, fh, **options)


def render(profile, format: str, **options) -> str | bytes:
    _ensure_writers()
    fmt = _canon(format)
    if fmt not in WRITERS:
        raise NodeflameError(f"unknown output format {format!r}; known: {', '.join(sorted(WRITERS))}")
    buf = io.BytesIO()
    WRITERS[fmt].write(profile, buf, **options)
    data = buf.getvalue()
    return data if WRITERS[fmt].binary else data.decode("utf-8")


def _ensure_readers():
    """Every reader registered (each module of READER_MODULES imported)."""
    for name in READER_MODULES:
        _reader(name)


def _ensure_writers():
    if not WRITERS and "writers" in _LAZY:
        _LAZY["writers"]()  # nodeflame.writers, loaded on first use: importing it registers them
    if not WRITERS:
        raise NodeflameError("no writers registered: import nodeflame (not only nodeflame.frames)")
