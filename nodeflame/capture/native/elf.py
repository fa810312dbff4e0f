"""Fast ELF reading for the walker: headers via pyelftools, notes and symbol tables via numpy.

pyelftools iterates symbols in pure Python (seconds for node's 100k symbols);
here the raw ``Elf64_Sym`` array is mapped with numpy and names are decoded
only for the symbols someone asks about.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                 ("value", "<u8"), ("size", "<u8")])
STT_OBJECT, STT_FUNC = 1, 2
SHN_UNDEF = 0


@dataclass
class Section:
    name: str
    type: str
    addr: int
    offset: int
    size: int
    flags: int


@dataclass
class ElfInfo:
    """What the walker needs from one ELF file."""
    path: str
    etype: str                      # ET_EXEC / ET_DYN
    build_id: str
    sections: list[Section]
    loads: list[tuple[int, int, int, int]]   # PT_LOAD (vaddr, memsz, offset, filesz)
    syms: np.ndarray | None = None  # function symbols sorted by value (structured _SYM)
    strtab: "bytes | StrTab" = b""
    _names: dict = field(default_factory=dict)
    _vals: np.ndarray | None = None  # syms["value"] as its own contiguous array

    def values(self) -> np.ndarray:
        """The symbols' start addresses, contiguous: searchsorted on the strided ``syms["value"]`` view
        copies the whole column at every call (0.2 ms for node's symbols)."""
        if self._vals is None or len(self._vals) != len(self.syms):
            self._vals = np.ascontiguousarray(self.syms["value"])
        return self._vals

    def section(self, name):
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def offset_to_vaddr(self, off: int) -> int | None:
        for vaddr, memsz, foff, filesz in self.loads:
            if foff <= off < foff + filesz:
                return vaddr + (off - foff)
        return None

    def vaddr_to_offset(self, va: int) -> int | None:
        for vaddr, memsz, foff, filesz in self.loads:
            if vaddr <= va < vaddr + filesz:
                return foff + (va - vaddr)
        return None

    def name_at(self, str_off: int) -> str:
        n = self._names.get(str_off)
        if n is None:
            end = self.strtab.find(b"\0", str_off)
            n = self.strtab[str_off:end].decode("utf-8", "replace")
            self._names[str_off] = n
        return n

    def lookup(self, vaddr: int):
        """(symbol name, symbol start) containing vaddr, or (None, None)."""
        s = self.syms
        if s is None or not len(s):
            return None, None
        i = int(np.searchsorted(self.values(), vaddr, side="right")) - 1
        if i < 0:
            return None, None
        v = int(s["value"][i])
        size = int(s["size"][i])
        # a symbol with size 0 covers up to the next one (assembly stubs)
        if size and vaddr >= v + size:
            # symbols may nest (a small one inside a bigger one): look back a few
            for j in range(i - 1, max(i - 8, -1), -1):
                vj, sj = int(s["value"][j]), int(s["size"][j])
                if vj <= vaddr < vj + sj:
                    return self.name_at(int(s["name"][j])), vj
            return None, None
        return self.name_at(int(s["name"][i])), v

    def lookup_many(self, vaddrs: np.ndarray):
        """Vectorised: index into syms (or -1) for each vaddr."""
        s = self.syms
        va = np.asarray(vaddrs, np.uint64)
        if s is None or not len(s):
            return np.full(len(va), -1, np.int64)
        i = np.searchsorted(self.values(), va, side="right").astype(np.int64) - 1
        ok = i >= 0
        ii = np.maximum(i, 0)
        end = s["value"][ii] + np.where(s["size"][ii] > 0, s["size"][ii], np.uint64(1 << 62))
        ok &= va < end
        return np.where(ok, i, -1)

    def symbol_range(self, name: str):
        """(start, end) of the first function symbol called ``name`` (exact), or None."""
        key = name.encode() + b"\0"
        s = self.syms
        if s is None:
            return None
        pos = 0
        while True:
            k = self.strtab.find(key, pos)
            if k < 0:
                return None
            # string tables share suffixes: a name may start in the middle of a longer one
            hit = np.flatnonzero(s["name"] == k)
            if len(hit):
                j = hit[0]
                return int(s["value"][j]), int(s["value"][j] + max(int(s["size"][j]), 1))
            pos = k + 1

    def symbols_with_prefix(self, prefix: bytes, table="func"):
        """Indices into syms whose name starts with prefix."""
        offs = []
        pos = 0
        st = self.strtab
        while True:
            k = st.find(prefix, pos)
            if k < 0:
                break
            offs.append(k)  # suffix sharing: do not require a NUL before
            pos = k + 1
        if not offs or self.syms is None:
            return np.empty(0, np.int64)
        return np.flatnonzero(np.isin(self.syms["name"], np.asarray(offs, np.uint32)))


NT_GNU_BUILD_ID = 3


def _build_id(f, headers) -> str:
    """The GNU build id (hex) from the SHT_NOTE sections, read from their bytes: an Elf64_Nhdr (namesz,
    descsz, type) then the name and the description, each padded to 4 bytes."""
    for h in headers:
        if h["sh_type"] != "SHT_NOTE" or h["sh_size"] > 1 << 20:
            continue
        f.seek(h["sh_offset"])
        data = f.read(h["sh_size"])
        at = 0
        while at + 12 <= len(data):
            namesz, descsz, ntype = np.frombuffer(data, "<u4", 3, at).tolist()
            name_at = at + 12
            desc_at = name_at + (namesz + 3) // 4 * 4
            end = desc_at + (descsz + 3) // 4 * 4
            if desc_at + descsz > len(data):
                break
            if ntype == NT_GNU_BUILD_ID and data[name_at:name_at + namesz].rstrip(b"\0") == b"GNU":
                return data[desc_at:desc_at + descsz].hex()
            at = end
    return ""


def _section_headers(ef, f):
    """(name, header) of every section, without making pyelftools' section objects: iter_sections
    builds each one, and a GNU hash section parses its whole table in Python (0.1 s for node on this
    machine, 26 s of 35 under a guest's emulated CPU)."""
    n, size, shstrndx = ef.num_sections(), ef["e_shentsize"], ef["e_shstrndx"]
    f.seek(ef["e_shoff"])
    raw = f.read(n * size)
    if len(raw) < n * size or not isinstance(shstrndx, int) or not 0 <= shstrndx < n:
        # a short file, SHN_XINDEX and other rarities: pyelftools' own way (and its errors)
        return [(s.name, s.header) for s in ef.iter_sections()]
    parse = ef.structs.Elf_Shdr.parse
    headers = [parse(raw[i * size:(i + 1) * size]) for i in range(n)]
    st = headers[shstrndx]
    f.seek(st["sh_offset"])
    table = f.read(st["sh_size"])

    def name(h):
        a = h["sh_name"]
        b = table.find(b"\0", a)
        return table[a:b if b >= 0 else len(table)].decode("utf-8", "replace")
    return [(name(h), h) for h in headers]


class StrTab:
    """An ELF string table read from a read-only mapping of the file, not copied into memory: node's
    .strtab is 7.5 MB, which a capture would otherwise hold (twice: the layout's symbols and the address
    space's).  ``find`` and slicing take offsets into the table, as on ``bytes``.  After a search over
    more than 1 MiB the pages it touched are given back (they stay in the page cache)."""
    __slots__ = ("mm", "base", "size")

    def __init__(self, f, offset: int, size: int):
        import mmap
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        self.base = offset - start
        self.size = size
        self.mm = mmap.mmap(f.fileno(), self.base + size, access=mmap.ACCESS_READ, offset=start)

    def __len__(self):
        return self.size

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        end = self.size if end is None else min(end, self.size)
        k = self.mm.find(sub, self.base + max(start, 0), self.base + end)
        if end - start > 1 << 20:
            self._release()
        return k - self.base if k >= 0 else -1

    def _release(self):
        import mmap
        try:
            self.mm.madvise(mmap.MADV_DONTNEED)
        except (AttributeError, OSError, ValueError):
            pass

    def __getitem__(self, i):
        if isinstance(i, slice):
            a, b, step = i.indices(self.size)
            return self.mm[self.base + a:self.base + b:step]
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError("string table index out of range")
        return self.mm[self.base + i]


def read_elf(path: str, *, want_syms=True, kinds=(STT_FUNC,), all_syms=False) -> ElfInfo:
    """Read sections, load segments, build id and (optionally) the function symbols of an ELF file.

    Uses .symtab when present, else .dynsym.  With ``all_syms`` every defined
    symbol is kept (objects too), which v8layout uses for v8dbg_* constants.
    """
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        ef = ELFFile(f)
        if ef.elfclass != 64 or not ef.little_endian:
            raise ValueError(f"{path}: only 64-bit little-endian ELF is supported")
        named = _section_headers(ef, f)
        secs = [Section(n, h["sh_type"], h["sh_addr"], h["sh_offset"], h["sh_size"], h["sh_flags"])
                for n, h in named]
        loads = [(p["p_vaddr"], p["p_memsz"], p["p_offset"], p["p_filesz"]) for p in ef.iter_segments()
                 if p["p_type"] == "PT_LOAD"]
        info = ElfInfo(path, ef["e_type"], _build_id(f, [h for _, h in named]), secs, loads)
        if not want_syms:
            return info
        symsec = next((s for s in secs if s.type == "SHT_SYMTAB"), None) or \
            next((s for s in secs if s.type == "SHT_DYNSYM"), None)
        if symsec is None:
            info.syms = np.empty(0, _SYM)
            return info
        idx = secs.index(symsec)
        link = named[idx][1]["sh_link"]
        strsec = secs[link]
        f.seek(symsec.offset)
        raw = np.frombuffer(f.read(symsec.size), _SYM)
        try:
            info.strtab = StrTab(f, strsec.offset, strsec.size)
        except (OSError, ValueError):     # a file that cannot be mapped: read it
            f.seek(strsec.offset)
            info.strtab = f.read(strsec.size)
    typ = raw["info"] & 0xF
    keep = raw["shndx"] != SHN_UNDEF
    if not all_syms:
        keep &= np.isin(typ, np.asarray(kinds, np.uint8)) & (raw["value"] != 0)
    syms = raw[keep]
    order = np.argsort(syms["value"], kind="stable")
    info.syms = syms[order].copy()
    return info


def file_identity(path: str):
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
