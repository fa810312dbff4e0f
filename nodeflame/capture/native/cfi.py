"""Call-frame information (.eh_frame) of shared libraries, for frames without a frame pointer.

glibc does not keep the frame-pointer chain: a thread sampled inside
``epoll_pwait`` has ``%rbp`` holding an arbitrary value and the return
address somewhere above ``%rsp``.  The DWARF CFI of the library says exactly
where: the CFA (canonical frame address) as ``%rsp``/``%rbp`` + offset, the
return address at CFA-8, and where ``%rbp`` was saved.  Only those two
registers are tracked (enough to get back into frame-pointer code).

A library's FDEs are found through its ``.eh_frame_hdr`` search table (the
one the C++ runtime's own unwinder uses): only the FDE that covers a looked-up
address is parsed (with pyelftools), so a library costs a few milliseconds
when first seen instead of the seconds a whole-section parse of libstdc++
takes.  Without a usable table the whole section is parsed.  node itself is
not looked up (its .eh_frame is tens of MB); its few frameless functions are
handled by the unwinder's prologue check.
"""
from __future__ import annotations

import bisect
import io
import os
import struct

import numpy as np

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
        self._cfi = None          # lazy mode: pyelftools' parser over .eh_frame, and the search table
        self._eh_addr = 0
        self._tab_lo = self._tab_fde = None
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
            if self._load_table(ef, sec, dw):
                return
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

    def _load_table(self, ef, sec, dw) -> bool:
        """Lazy mode from .eh_frame_hdr (version 1, table of datarel sdata4 pairs: what GNU ld and lld
        write); False when the file has no such table."""
        from elftools.dwarf.callframe import CallFrameInfo
        hdr = ef.get_section_by_name(".eh_frame_hdr")
        if hdr is None:
            return False
        data = hdr.data()
        if len(data) < 12 or data[0] != 1 or data[3] != 0x3B:
            return False
        if data[1] & 0x0F in (0x03, 0x0B):      # eh_frame_ptr: (u|s)data4 or (u|s)data8, any base
            ptr_size = 4
        elif data[1] & 0x0F in (0x04, 0x0C):
            ptr_size = 8
        else:
            return False
        if data[2] != 0x03:            # fde_count as udata4
            return False
        n = struct.unpack_from("<I", data, 4 + ptr_size)[0]
        start = 8 + ptr_size
        if start + 8 * n > len(data):
            return False
        tab = np.frombuffer(data, "<i4", 2 * n, start).reshape(n, 2).astype(np.int64) + hdr["sh_addr"]
        self._tab_lo, self._tab_fde = tab[:, 0], tab[:, 1]
        self._eh_addr = sec["sh_addr"]
        self._cfi = CallFrameInfo(io.BytesIO(sec.data()), sec["sh_size"], sec["sh_addr"], dw.structs,
                                  for_eh_frame=True)
        self.ok = n > 0
        return True

    def _lazy_rule(self, vaddr):
        i = int(np.searchsorted(self._tab_lo, vaddr, "right")) - 1
        if i < 0:
            return None
        rows = self.rows.get(i)
        if rows is None:
            rows = self.rows[i] = self._decode_at(int(self._tab_fde[i]) - self._eh_addr)
        if not rows or not rows[2] <= vaddr < rows[3]:
            return None          # in no FDE (a gap after FDE i's range)
        k = bisect.bisect_right(rows[0], vaddr) - 1
        return rows[1][k] if k >= 0 else None

    def _decode_at(self, offset):
        """(pcs, rules, start, end) of the FDE at ``offset`` in .eh_frame, or () when it cannot be parsed."""
        try:
            fde = self._cfi._parse_entry_at(offset)
            lo = fde["initial_location"]
            pcs, rules = self._rows(fde)
        except Exception:  # noqa: BLE001 - an FDE we cannot parse is just not unwound by CFI
            return ()
        return pcs, rules, lo, lo + fde["address_range"]

    def rule(self, vaddr: int):
        """(cfa register, cfa offset, rbp offset from the CFA or None) at ``vaddr``, or None."""
        if not self.ok:
            return None
        if self._cfi is not None:
            return self._lazy_rule(vaddr)
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
            return self._rows(self.fdes[i])
        except Exception:  # noqa: BLE001
            return ()

    @staticmethod
    def _rows(fde):
        table = fde.get_decoded().table
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
