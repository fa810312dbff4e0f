"""The walker's .eh_frame rules: the lazy lookup through .eh_frame_hdr against a whole-section parse.

libc is the library the walker unwinds most (every thread blocked in a system call is inside it); the
rules found per address must not depend on how they were found, nor on the order of the lookups.
"""
from __future__ import annotations

import random

import pytest

from nodeflame.capture.native import cfi


def _libc():
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].rsplit("/", 1)[-1].startswith("libc.so"):
                return parts[5]
    pytest.skip("libc.so is not mapped in this process (not a glibc system)")


class _WholeSection(cfi.CFI):
    """The same file parsed the old way: every FDE up front."""

    def _load_table(self, ef, sec, dw):
        return False


def test_lazy_lookup_gives_the_whole_parse_rules_in_any_order():
    path = _libc()
    lazy, full = cfi.CFI(path), _WholeSection(path)
    assert lazy.ok and full.ok and lazy._cfi is not None and full._cfi is None
    rnd = random.Random(7)
    picks = rnd.sample(range(len(full.starts) - 1), 300)
    addrs = []
    gaps = 0
    for i in picks:
        lo, hi, nxt = full.starts[i], full.ends[i], full.starts[i + 1]
        if hi < nxt:
            addrs.append(hi)             # between two FDEs: first looked up, it must not hide FDE i
            gaps += 1
        addrs += [lo, (lo + hi) // 2, max(lo, hi - 1)]
    assert gaps >= 10, "libc has almost no gaps between FDEs: the order check checks nothing"
    for a in addrs:                      # gap addresses come before the FDE's own ones
        assert lazy.rule(a) == full.rule(a), hex(a)
    rnd.shuffle(addrs)
    fresh = cfi.CFI(path)
    for a in addrs:
        assert fresh.rule(a) == full.rule(a), hex(a)
    # only the FDEs asked about were parsed
    assert len(lazy.rows) <= len(picks) + gaps < len(full.starts)


def test_addresses_outside_every_fde_have_no_rule():
    path = _libc()
    lazy = cfi.CFI(path)
    lo = int(lazy._tab_lo[0])
    assert lazy.rule(lo - 1) is None and lazy.rule(0) is None
    assert lazy.rule(1 << 46) is None
