"""Call-frame information (.eh_frame) of shared libraries, for frames without a frame pointer.

glibc does not keep the frame-pointer chain: a thread sampled inside
``epoll_pwait`` has ``%rbp`` holding an arbitrary value and the return
address somewhere above ``%rsp``.  The DWARF CFI of the library says exactly
where: the CFA (canonical frame address) as ``%rsp``/``%rbp`` + offset, the
return address at CFA-8, and where ``%rbp`` was saved.  Only those two
registers are tracked (enough to get back into frame-pointer code).

Parsing is done once per library file with pyelftools (libc: ~0.3 s), lazily,
after the thread has been resumed.  node itself is not parsed (its .eh_frame
is tens of MB); its few frameless functions are handled by the unwinder's
prologue check.
"""
from __future__ import annotations

import bisect
import os

RSP, RBP, RA = 7, 6, 16
MAX_EH_FRAME = 8 << 20          # bytes of .eh_frame we are willing to parse

_cache: dict = {}


class CFI:
    """FDE ranges of one ELF file and their decoded rows (rsp/rbp rules only)."""

    def __init__(self, path: str):
        self.path = path
        self.starts: list = []
        self.ends: list = []
        self.fdes: list = []
        self.rows: dict = {}
        self.ok = False
        try:
            self._load()
        except Exception:  # noqa: BLE001 - a library we cannot parse is just not unwound by CFI
            self.ok = False

    def _load(self):
        from elftools.dwarf.callframe import FDE
        from elftools.elf.elffile import ELFFile
        with open(self.path, "rb") as f:
            ef = ELFFile(f)
            sec = ef.get_section_by_name(".eh_frame")
            if sec is None or sec["sh_size"] > MAX_EH_FRAME:
                return
            dw = ef.get_dwarf_info(follow_links=False)
            ents = [e for e in dw.EH_CFI_entries() if isinstance(e, FDE)]
            # decode now: the FDE objects read the file lazily
            items = []
            for e in ents:
                lo = e["initial_location"]
                items.append((lo, lo + e["address_range"], e))
        items.sort(key=lambda t: t[0])
        self.starts = [a for a, _, _ in items]
        self.ends = [b for _, b, _ in items]
        self.fdes = [e for _, _, e in items]
        self.ok = bool(items)

    def rule(self, vaddr: int):
        """(cfa register, cfa offset, rbp offset from the CFA or None) at ``vaddr``, or None."""
        if not self.ok:
            return None
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0 or vaddr >= self.ends[i]:
            return None
        rows = self.rows.get(i)
        if rows is None:
            rows = self.rows[i] = self._decode(i)
        if not rows:
            return None
        k = bisect.bisect_right(rows[0], vaddr) - 1
        return rows[1][k] if k >= 0 else None

    def _decode(self, i):
        try:
            table = self.fdes[i].get_decoded().table
        except Exception:  # noqa: BLE001
            return ()
        pcs, rules = [], []
        for row in table:
            cfa = row.get("cfa")
            if cfa is None or cfa.expr is not None or cfa.reg not in (RSP, RBP):
                r = None
            else:
                rb = row.get(RBP)
                off = rb.arg if rb is not None and rb.type == "OFFSET" else None
                r = (cfa.reg, cfa.offset, off)
            pcs.append(row["pc"])
            rules.append(r)
        return pcs, rules


def cfi_for(path: str):
    """The CFI of a library file (cached by file identity), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    c = _cache.get(key)
    if c is None:
        c = _cache[key] = CFI(path)
    return c if c.ok else None
