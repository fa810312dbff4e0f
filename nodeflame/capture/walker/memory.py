"""Reading another process's memory: pread on /proc/<pid>/mem, process_vm_readv for batches."""
from __future__ import annotations

import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_pvr = _libc.process_vm_readv
_pvr.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                 ctypes.c_ulong]
_pvr.restype = ctypes.c_ssize_t
_U64 = struct.Struct("<Q")


class Memory:
    """Reads of one process's memory.  ``read`` returns b'' (or a short result) on failure."""

    def __init__(self, pid: int):
        self.pid = pid
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        self.reads = 0

    def close(self):
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def read(self, addr: int, n: int) -> bytes:
        self.reads += 1
        if addr <= 0 or addr >= 1 << 47:
            return b""
        try:
            return os.pread(self.fd, n, addr)
        except OSError:
            return b""

    def u64(self, addr: int):
        b = self.read(addr, 8)
        return _U64.unpack(b)[0] if len(b) == 8 else None

    def readv(self, reqs):
        """Read many (addr, n) ranges with one process_vm_readv; returns a list of bytes (b'' on failure)."""
        k = len(reqs)
        if k == 0:
            return []
        total = sum(n for _, n in reqs)
        buf = ctypes.create_string_buffer(total)
        local = _IOVec(ctypes.cast(buf, ctypes.c_void_p), total)
        remote = (_IOVec * k)()
        for i, (a, n) in enumerate(reqs):
            remote[i].base = a
            remote[i].len = n
        self.reads += 1
        got = _pvr(self.pid, ctypes.byref(local), 1, remote, k, 0)
        raw = buf.raw
        out = []
        pos = 0
        for a, n in reqs:
            if got >= pos + n:
                out.append(raw[pos:pos + n])
            else:
                out.append(self.read(a, n))  # the kernel stops at the first bad range: redo the rest one by one
            pos += n
        return out
