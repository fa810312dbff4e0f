"""Address space of the target: /proc/<pid>/maps regions, code classification, native symbols.

A pc is one of:
  * ``JIT``     -- anonymous executable memory (V8's code space),
  * ``BUILTIN`` -- V8's embedded builtins, either inside node's text or in the
    second, file-backed copy V8 maps for short builtin calls (symbolised via
    the file offset),
  * ``NATIVE``  -- any other code of node or a shared library,
  * ``NONE``    -- not code.
"""
from __future__ import annotations

import bisect
import os
import re
import shutil
import subprocess
import time


from .elf import read_elf

JIT, BUILTIN, NATIVE, NONE = 1, 2, 3, 0

_RESTORE_RT = bytes.fromhex("48c7c00f0000000f05")  # mov $15,%rax; syscall  (x86-64 __restore_rt)
_elf_cache: dict = {}


class Region:
    __slots__ = ("start", "end", "perms", "offset", "path", "dev_ino", "elf", "is_node")

    def __init__(self, start, end, perms, offset, path, dev_ino):
        self.start, self.end, self.perms, self.offset, self.path, self.dev_ino = start, end, perms, offset, path, dev_ino
        self.elf = None
        self.is_node = False

    @property
    def exec(self):
        return "x" in self.perms

    def __repr__(self):
        return f"<{self.start:#x}-{self.end:#x} {self.perms} {self.offset:#x} {self.path}>"


def read_maps(pid: int) -> list[Region]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) < 5:
                continue
            a, b = parts[0].split("-")
            path = parts[5].rstrip("\n") if len(parts) > 5 else ""
            out.append(Region(int(a, 16), int(b, 16), parts[1], int(parts[2], 16), path, (parts[3], int(parts[4]))))
    return out


def _elf_for(path: str, pid: int):
    """ELF info for a mapped file, read through /proc/<pid>/map_files or the path itself."""
    try:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return None
    info = _elf_cache.get(key)
    if info is None:
        try:
            info = read_elf(path)
        except Exception:
            info = False
        _elf_cache[key] = info
    return info or None


class AddressSpace:
    """Classifies and symbolises code addresses of one process."""

    def __init__(self, pid: int, exe: str | None = None):
        self.pid = pid
        self.exe = exe or os.path.realpath(f"/proc/{pid}/exe")
        self._none_pages: dict = {}   # page -> when a re-read of the maps found it was not code
        self.refresh()

    def refresh(self):
        """Re-read /proc/<pid>/maps.  Everything is computed first and published at the end: the
        decoding thread may be classifying addresses meanwhile."""
        regions = read_maps(self.pid)
        exe_real = self.exe
        try:
            exe_id = os.stat(f"/proc/{self.pid}/exe")
            exe_key = (exe_id.st_dev, exe_id.st_ino)
        except OSError:
            exe_key = None
        node_elf = None
        for r in regions:
            if not r.path or r.path.startswith("["):
                continue
            if r.path.endswith(" (deleted)"):
                continue
            try:
                st = os.stat(r.path)
                r.is_node = exe_key is not None and (st.st_dev, st.st_ino) == exe_key or r.path == exe_real
            except OSError:
                r.is_node = r.path == exe_real
            if r.exec or r.is_node:
                r.elf = _elf_for(r.path, self.pid)
                if r.is_node and r.elf is not None:
                    node_elf = r.elf
        # embedded builtins: the range covered by Builtins_* symbols in node
        builtins = None
        if node_elf is not None:
            builtins = getattr(node_elf, "_builtins_range", 0)
            if builtins == 0:
                builtins = None
                ix = node_elf.symbols_with_prefix(b"Builtins_")
                if len(ix):
                    s = node_elf.syms[ix]
                    builtins = (int(s["value"].min()), int((s["value"] + s["size"]).max()))
                node_elf._builtins_range = builtins
        self.node_elf = node_elf
        self.builtins = builtins
        self.regions = regions
        self._maps = (regions, [r.start for r in regions])
        if not hasattr(self, "_restore_rt"):
            self._restore_rt = None
        self.cls_cache = {}
        self._fstart = {}
        self._refreshed = time.monotonic()

    # ------------------------------------------------------------------ lookup
    def region(self, addr: int):
        regions, starts = self._maps
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0:
            r = regions[i]
            if addr < r.end:
                return r
        return None

    def node_vaddr(self, r: Region, addr: int):
        """ELF vaddr of addr in region r (which maps a file)."""
        if r.elf is None:
            return None
        return r.elf.offset_to_vaddr(addr - r.start + r.offset)

    def classify(self, pc: int) -> int:
        c = self.cls_cache.get(pc)
        if c is not None:
            return c
        r = self.region(pc)
        if r is None or not r.exec:
            c = NONE
        elif not r.path or r.path.startswith("[anon"):
            c = JIT
        elif r.is_node and self.builtins is not None:
            va = self.node_vaddr(r, pc)
            c = BUILTIN if va is not None and self.builtins[0] <= va < self.builtins[1] else NATIVE
        else:
            c = NATIVE
        if len(self.cls_cache) < 200000:
            self.cls_cache[pc] = c
        return c

    # a pc the target really ran at (or returns to) that the maps call "not code" may be on a page the
    # target made executable after the maps were read: V8 commits code pages as it compiles (node 18
    # commits optimized code into a new page of its reserved code range), and addons are loaded late
    REREAD_S = 0.02        # at most one re-read of the maps per 20 ms
    PAGE_RECHECK_S = 1.0   # a page found not to be code is looked at again after a second

    def classify_live(self, pc: int) -> int:
        """``classify`` for a pc the thread was at or returns to: when the maps read say it is not code,
        they are read again first (bounded as above), so code mapped since the last read is found."""
        c = self.classify(pc)
        if c == NONE and pc and self._reread_for(pc):
            c = self.classify(pc)
        return c

    def _reread_for(self, pc: int) -> bool:
        """Re-read the maps because of ``pc``; True when they were re-read."""
        now = time.monotonic()
        checked = self._none_pages
        t = checked.get(pc >> 12)
        if t is not None and now - t < self.PAGE_RECHECK_S or now - self._refreshed < self.REREAD_S:
            return False
        try:
            self.refresh()
        except OSError:          # the target is gone: what was read stays
            self._refreshed = now
            return False
        if len(checked) > 4096:
            checked.clear()
        checked[pc >> 12] = now
        return True

    def symbolize(self, pc: int):
        """(name, module path, start vaddr) or (None, module, None)."""
        r = self.region(pc)
        if r is None:
            return None, "", None
        if r.elf is None:
            return None, r.path, None
        va = r.elf.offset_to_vaddr(pc - r.start + r.offset)
        if va is None:
            return None, r.path, None
        name, start = r.elf.lookup(va)
        return name, r.path, start

    def is_node_pc(self, pc: int) -> bool:
        r = self.region(pc)
        return r is not None and r.is_node

    def func_start(self, pc: int):
        """Process address of the start of the symbol containing pc (None when unknown), cached."""
        c = self._fstart.get(pc, -1)
        if c != -1:
            return c
        r = self.region(pc)
        res = None
        if r is not None and r.elf is not None:
            va = r.elf.offset_to_vaddr(pc - r.start + r.offset)
            if va is not None:
                _, start = r.elf.lookup(va)
                if start is not None:
                    res = pc - (va - start)
        if len(self._fstart) < 200000:
            self._fstart[pc] = res
        return res

    def builtin_name(self, pc: int):
        r = self.region(pc)
        if r is None or not r.is_node or r.elf is None:
            return None
        va = self.node_vaddr(r, pc)
        name, _ = r.elf.lookup(va) if va is not None else (None, None)
        return name

    def restore_rt(self):
        """Address of libc's __restore_rt in this process (found by its code bytes), or 0."""
        if self._restore_rt is not None:
            return self._restore_rt
        self._restore_rt = 0
        for r in self.regions:
            if not r.exec or "libc" not in os.path.basename(r.path):
                continue
            try:
                with open(f"/proc/{self.pid}/mem", "rb", buffering=0) as f:
                    f.seek(r.start)
                    data = f.read(r.end - r.start)
            except OSError:
                try:
                    with open(r.path, "rb") as f:
                        f.seek(r.offset)
                        data = f.read(r.end - r.start)
                except OSError:
                    continue
            k = data.find(_RESTORE_RT)
            if k >= 0:
                self._restore_rt = r.start + k
                break
        return self._restore_rt


_CXXFILT = None


def demangle(names: list[str]) -> dict:
    """{mangled: demangled without parameter lists}, via one c++filt run (identity if missing)."""
    global _CXXFILT
    todo = [n for n in names if n.startswith("_Z")]
    out = {n: n for n in names}
    if not todo:
        return out
    if _CXXFILT is None:
        _CXXFILT = shutil.which("c++filt") or ""
    if not _CXXFILT:
        return out
    try:
        res = subprocess.run([_CXXFILT, "-p"], input="\n".join(todo) + "\n", capture_output=True, text=True,
                             timeout=60)
        dem = res.stdout.split("\n")
        if len(dem) >= len(todo):
            for a, b in zip(todo, dem):
                out[a] = b or a
    except (OSError, subprocess.SubprocessError):
        pass
    return out


_CLONE_SUFFIX = re.compile(r"\.(?:constprop|isra|part|cold|lto_priv)\.\d+$|\.cold$")


def clean_native(name: str) -> str:
    return _CLONE_SUFFIX.sub("", name)


class _Names:
    """A read-only sequence of names kept as one NUL-separated blob and int32 offsets (kallsyms' 120 k
    names as Python strings took 17 MB of a capture's memory; this holds them in about 4)."""
    __slots__ = ("blob", "offsets")

    def __init__(self, blob: bytes, offsets):
        self.blob, self.offsets = blob, offsets

    def __len__(self):
        return len(self.offsets)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        off = self.offsets[i]
        return self.blob[off:self.blob.index(b"\0", off)].decode("utf-8", "replace")

    def __iter__(self):
        return (self[k] for k in range(len(self)))


def kallsyms(path="/proc/kallsyms"):
    """(sorted addresses, names) of the kernel's text symbols; empty when the addresses are hidden
    (kernel.kptr_restrict, or not root: they all read as 0).  The addresses are an ``array('Q')`` (bisect
    works on it), the names a compact sequence of str."""
    from array import array

    import numpy as np
    addrs = array("Q")
    offs = array("i")
    blob = bytearray()
    try:
        with open(path, "rb") as f:
            for line in f:
                parts = line.split(None, 3)
                if len(parts) >= 3 and len(parts[1]) == 1 and parts[1] in b"tTwW":
                    a = int(parts[0], 16)
                    if a:
                        addrs.append(a)
                        offs.append(len(blob))
                        blob += parts[2]
                        blob += b"\0"
    except OSError:
        return [], []
    if not addrs:
        return [], []
    a = np.frombuffer(addrs, np.uint64)
    if (a[1:] < a[:-1]).any():      # /proc/kallsyms is mostly sorted already: reorder only when not
        order = np.argsort(a, kind="stable")
        addrs = array("Q", a[order].tobytes())
        offs = array("i", np.frombuffer(offs, np.int32)[order].tobytes())
    del a
    return addrs, _Names(blob, offs)
