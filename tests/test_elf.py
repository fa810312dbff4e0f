"""capture/native/elf.py reads section headers and the build id itself (pyelftools' section objects parse
whole GNU hash tables in Python: seconds under an emulated CPU); what it reads must be what pyelftools'
own iteration gives, on the binaries the walker reads most."""
from __future__ import annotations

import glob
import os
import shutil

import pytest
from elftools.elf.elffile import ELFFile

from nodeflame.capture.native import elf

NODES = sorted({p for p in [shutil.which("node"), *glob.glob(os.path.expanduser("~/.cache/nodeflame/node-*/bin/node"))]
                if p})


def _mapped(prefix):
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].rsplit("/", 1)[-1].startswith(prefix):
                return parts[5]
    return None


@pytest.mark.parametrize("path", NODES + [p for p in (_mapped("libc.so"), _mapped("libm.so")) if p])
def test_sections_and_build_id_as_pyelftools_reads_them(path):
    info = elf.read_elf(path)
    with open(path, "rb") as f:
        ef = ELFFile(f)
        want = [(s.name, s["sh_type"], s["sh_addr"], s["sh_offset"], s["sh_size"], s["sh_flags"])
                for s in ef.iter_sections()]
        ids = [n["n_desc"] for s in ef.iter_sections() if s["sh_type"] == "SHT_NOTE"
               for n in s.iter_notes() if n["n_type"] == "NT_GNU_BUILD_ID"]
    assert [(s.name, s.type, s.addr, s.offset, s.size, s.flags) for s in info.sections] == want
    assert info.build_id == (ids[0] if ids else "") and len(info.build_id) >= 16
    assert len(info.syms) > 100


def test_a_file_cut_short_is_an_error_not_a_wrong_answer(tmp_path):
    src = NODES[0] if NODES else _mapped("libc.so")
    data = open(src, "rb").read()
    cut = tmp_path / "cut"
    cut.write_bytes(data[:len(data) // 2])    # the section headers are at the end of the file
    with pytest.raises(Exception) as e:
        elf.read_elf(str(cut))
    assert type(e.value).__name__ == "ELFParseError" and "past EOF" in str(e.value), repr(e.value)   # pyelftools' own
