"""Golden files: what every reader makes of every corpus input, and what every writer makes of one small
fixed profile, stored under tests/golden/ and compared byte for byte.

A reader that consistently misreads its input (a wrong line, a swapped kind, a lost frame) passes the
round-trip and invariant tests; here it fails.  When a change is intended, regenerate and review the diff:

    .venv/bin/python -m pytest tests/test_golden.py --update-golden && git diff tests/golden

The reader dump is one line per distinct stack, root first, each frame as
``name [kind tier] file:line:column``, then the stack's total weight; lines sorted; a header with the
sniffed format, unit, sample count, total weight and threads.
"""
from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.frames.build import FrameTable, build_profile
from nodeflame.frames.errors import FormatWarning, NodeflameError
from nodeflame.frames.formats import render

from conftest import CORPUS

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md"
               and "results" not in p.parts) if CORPUS.is_dir() else []
WRITER_FORMATS = ("text", "folded", "raw", "svg", "cpuprofile", "speedscope", "pprof", "nfprof")


def dump(p) -> str:
    """A deterministic text account of a Profile's four tables (see the module docstring)."""
    f, fr = p.funcs, p.frames
    names = f["name"].astype(str).to_numpy(object)
    files = f["file"].astype(str).to_numpy(object)
    kinds = f["kind"].astype(str).to_numpy(object)
    label = []
    for i in range(len(fr)):
        fu = int(fr["func"].iat[i])
        tier = str(fr["tier"].iat[i])
        label.append(f"{names[fu]} [{kinds[fu]}{' ' + tier if tier else ''}] "
                     f"{files[fu]}:{int(fr['line'].iat[i])}:{int(fr['column'].iat[i])}")
    prefix = p.stacks["prefix"].to_numpy()
    frame = p.stacks["frame"].to_numpy()
    paths: list = []
    for s in range(len(prefix)):
        paths.append((paths[prefix[s]] + ";" if prefix[s] >= 0 else "") + label[frame[s]])
    w = np.bincount(p.samples["stack"].to_numpy(), weights=p.samples["weight"].to_numpy(),
                    minlength=len(prefix))
    lines = sorted(f"{paths[s]} {int(w[s])}" for s in range(len(prefix)) if w[s])
    threads = ",".join(sorted(set(p.samples["thread"].astype(str))))
    head = (f"# format={p.meta.get('source_format')} unit={p.meta.get('unit')} samples={len(p.samples)} "
            f"total={int(p.samples['weight'].sum())} threads={threads}")
    return "\n".join([head, *lines]) + "\n"


def _check(request, path: pathlib.Path, got: bytes):
    if request.config.getoption("--update-golden"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(got)
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(GOLDEN.parent)}: run pytest tests/test_golden.py "
                    "--update-golden and review it")
    want = path.read_bytes()
    if got != want:
        import difflib
        try:
            diff = "".join(difflib.unified_diff(want.decode().splitlines(True), got.decode().splitlines(True),
                                                "golden", "now", n=1))
        except UnicodeDecodeError:
            diff = f"binary output differs ({len(want)} -> {len(got)} bytes)"
        pytest.fail(f"{path.relative_to(GOLDEN.parent)} differs:\n{diff[:4000]}")


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_reader_golden(request, path):
    rel = path.relative_to(CORPUS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FormatWarning)
            got = dump(nf.read(path))
    except NodeflameError as e:
        got = f"# error {type(e).__name__}: {str(e).replace(str(CORPUS) + '/', '')}\n"
    _check(request, GOLDEN / "corpus" / (str(rel) + ".dump"), got.encode())


def small_profile():
    """A fixed profile with what writers must get right: JS, deps, node internals, builtins, native and
    GC frames, names that need escaping, recursion, two threads and times."""
    ft = FrameTable()
    main = ft.add("main", "/app/server.js", 1, 1, hint="js", tier="optimized")
    handle = ft.add("handle<T> & co", "/app/server.js", 12, 3, hint="js", tier="baseline")
    parse = ft.add("parse", "/app/node_modules/fast-json/index.js", 40, 10, hint="js", tier="interpreted")
    inl = ft.add("tokenize", "/app/lexer.js", 7, 5, hint="js", tier="inlined", func_line=5, func_column=1)
    timers = ft.add("processTimers", "node:internal/timers", 512, 7, hint="js")
    json_parse = ft.add("JSON.parse", "", hint="builtin")
    memcpy = ft.add("__memmove_avx_unaligned_erms", "/usr/lib/x86_64-linux-gnu/libc.so.6", hint="native")
    gc = ft.add("(garbage collector)", "", hint="gc")
    anon = ft.add("(anonymous)", "/app/\"quoted\" dir/x.js", 3, 1, hint="js")
    paths = [
        [timers, main, handle, parse, json_parse, memcpy],
        [timers, main, handle, parse, inl],
        [timers, main, handle, handle, handle, parse],
        [timers, main, anon],
        [gc],
        [timers, main, handle, parse, json_parse],
    ]
    counts = [5, 3, 2, 1, 2, 4]
    flat, offsets, times, threads = [], [0], [], []
    t = 0
    for k, (path, n) in enumerate(zip(paths, counts)):
        for _ in range(n):
            flat.extend(path)
            offsets.append(len(flat))
            t += 1_000_000
            times.append(t)
            threads.append("main" if k != 3 else "worker 1")
    return build_profile(ft, np.asarray(offsets), np.asarray(flat), times=np.asarray(times), threads=threads,
                         meta={"period_ns": 1_000_000, "backend": None, "source_format": None})


@pytest.mark.parametrize("fmt", WRITER_FORMATS)
def test_writer_golden(request, fmt):
    out = render(small_profile(), fmt)
    got = out.encode() if isinstance(out, str) else out
    ext = {"text": "txt", "cpuprofile": "cpuprofile", "speedscope": "speedscope.json"}.get(fmt, fmt)
    if fmt != "nfprof":          # a zip with its members' times: compared through what it reads back as
        _check(request, GOLDEN / "writers" / f"small.{ext}", got)
    # and what our own reader makes of it again, where one exists
    if fmt not in ("text", "svg"):
        again = nf.read(got, format=fmt) if fmt != "nfprof" else nf.read(got)
        _check(request, GOLDEN / "writers" / f"small.{ext}.dump", dump(again).encode())
