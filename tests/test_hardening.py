"""Issue 15 reproducers: hostile or damaged input gives a nodeflame error naming the
file, in time linear in the input, with bounded memory; writers escape what they embed."""
from __future__ import annotations

import gzip
import io
import json
import re
import time
import zipfile

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.frames.errors import FormatError, LimitError
from nodeflame.frames.ops import with_meta

HOSTILE = "<img src=x onerror=alert(1)>"


def _small_profile(**meta):
    return with_meta(nf.read(b"main;work;leaf 3\nmain;idle 1\n", format="folded"), **meta)


def _markdown_cells(path):
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def test_ipynb_escapes_source_command_and_warnings(tmp_path):
    p = _small_profile(source=f"/tmp/{HOSTILE}.cpuprofile", command=f"node app.js '{HOSTILE}' [x](javascript:alert(2))",
                       warnings=[f"bad {HOSTILE}", "<script>alert(3)</script>", "`code` *em* | cell"],
                       node_version="<b>v1</b>")
    out = tmp_path / "x.ipynb"
    p.write(out)
    md = "\n".join(_markdown_cells(out))
    assert "<" not in md and ">" not in md          # no tag can open, so none can run
    assert "](" not in md.replace("\\](", "")       # no markdown link or image
    assert "&lt;img src=x onerror=alert(1)&gt;" in md and "&lt;script&gt;" in md
    assert "\\`code\\` \\*em\\* \\| cell" in md


def test_ipynb_title_from_a_hostile_file_name(tmp_path):
    src = tmp_path / f"{HOSTILE}.folded"
    src.write_bytes(b"a;b 1\n")
    out = tmp_path / "y.ipynb"
    from nodeflame.cli import main
    assert main(["convert", str(src), str(out)]) == 0
    md = "\n".join(_markdown_cells(out))
    assert "<img" not in md and "&lt;img" in md


def test_text_output_is_linear_in_stack_depth():
    deep = (";".join(f"f{i}" for i in range(5000)) + " 1\n").encode()
    text = nf.read(deep, format="folded").text()
    assert len(text) < 300 * 5000                   # was 25 MB: quadratic in depth
    lines = text.splitlines()
    assert lines[1] == "1 f0" and lines[2] == "  1 f1"
    assert lines[102].startswith(" " * 200 + "[depth 101] 1 f101")


@pytest.mark.parametrize("text", [
    b";" * 65536 + b"\n",                                                         # raw sniffer: was 17 s
    b"node 123 1.000: 1 cycles:\n\t abc [unknown] (" + b"x" * 200_000 + b")\n",     # perf dso: was 12 s
    b"a" + b" " * 100_000 + b"x\n",
    b"a " + b"1" * 100_000 + b"x\n",
    b"a 1 :" + b" " * 50_000 + b":" * 50_000 + b"x\n",
    b"\t" + b"ab (" * 30_000 + b"\n",
    b"f" + b"::" * 50_000 + b"\n1\n",
    b"CPU ID FUNCTION:NAME\n 1 2 " + b":" * 100_000 + b" x\n",
])
@pytest.mark.parametrize("fmt", [None, "perf", "raw", "folded"])
def test_long_lines_are_read_in_linear_time(text, fmt):
    t = time.perf_counter()
    try:
        nf.read(text, format=fmt)
    except FormatError as e:
        assert "<bytes>" in str(e)
    # linear work on 200 KB is milliseconds; the old expressions took seconds to minutes
    assert time.perf_counter() - t < 2.0


def test_huge_counts_and_numbers_are_format_errors():
    for data, fmt in [(b"a;b 99999999999999999999\n", "folded"),
                      (b'{"nodes":[{"id":1,"callFrame":{"functionName":"a","url":"","scriptId":"0","lineNumber":0,'
                       b'"columnNumber":0},"children":[]}],"samples":[1,1],"timeDeltas":[0,NaN],"startTime":0}', None),
                      (b'{"nodes":[{"id":1,"callFrame":{"functionName":"a","url":"","scriptId":"0","lineNumber":0,'
                       b'"columnNumber":0},"children":[]}],"samples":[1,1],"timeDeltas":[0,Infinity],"startTime":0}', None),
                      (b'{"nodes":[{"id":1,"callFrame":{"functionName":"a","url":"","scriptId":"0","lineNumber":0,'
                       b'"columnNumber":0},"children":[]}],"samples":[1],"timeDeltas":[1e308],"startTime":1e308}', None)]:
        try:
            p = nf.read(data, format=fmt)
        except FormatError as e:
            assert "<bytes>" in str(e), str(e)
        else:
            p.validate()
            assert (p.samples["time_ns"].to_numpy() > -2**62).all()


def test_nan_time_delta_names_its_position():
    doc = (b'{"nodes":[{"id":1,"callFrame":{"functionName":"a","url":"","scriptId":"0","lineNumber":0,'
           b'"columnNumber":0},"children":[]}],"samples":[1,1],"timeDeltas":[0,NaN],"startTime":0}')
    with pytest.raises(FormatError, match=r"timeDeltas\[1\].*finite"):
        nf.read(doc)


def test_gzip_bomb_is_refused_quickly():
    bomb = gzip.compress(b"a;b 1\n" * (40 << 20), 9)   # 240 MB from ~240 KB
    t = time.perf_counter()
    with pytest.raises(LimitError, match="expands more than"):
        nf.read(bomb)
    assert time.perf_counter() - t < 5
    with pytest.raises(LimitError, match="max_decompressed"):
        nf.read(gzip.compress(b"a;b 1\n" * 1000), max_decompressed=1000)
    assert nf.read(gzip.compress(b"a;b 1\n" * 1000)).total == 1000


def _nfprof_bytes():
    buf = io.BytesIO()
    _small_profile().write(buf, format="nfprof")
    return buf.getvalue()


def test_nfprof_npy_header_asking_for_huge_array():
    src = zipfile.ZipFile(io.BytesIO(_nfprof_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "samples/weight.npy":
                header = "{'descr': '<i8', 'fortran_order': False, 'shape': (50000000000,), }"
                data = b"\x93NUMPY\x01\x00" + len(header.ljust(118) + "\n").to_bytes(2, "little") \
                    + (header.ljust(118) + "\n").encode()
            z.writestr(info.filename, data)
    with pytest.raises(FormatError, match="npy header says shape"):
        nf.read(out.getvalue(), format="nfprof")


def test_damaged_nfprof_is_a_format_error():
    good = _nfprof_bytes()
    rng = np.random.default_rng(5)
    for k in range(200):
        b = bytearray(good)
        for i in rng.integers(0, len(b), 3):
            b[i] ^= 1 << int(rng.integers(0, 8))
        try:
            nf.read(bytes(b), format="nfprof").validate()
        except FormatError as e:
            assert "<bytes>" in str(e)
