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

HOSTILE = "<img src=x onerror=alert(1)>"


def _small_profile(**meta):
    p = nf.read(b"main;work;leaf 3\nmain;idle 1\n", format="folded")
    p.meta.update(meta)
    return p


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
