"""Stack samples taken by the kernel: perf_event_open with user registers and a user-stack dump.

A ``cpu-clock`` software event is opened on one thread (``pid=tid, cpu=-1``)
with ``PERF_SAMPLE_REGS_USER | PERF_SAMPLE_STACK_USER``: at every period of
the thread's CPU time the kernel's timer interrupt, on the thread's own CPU,
copies its user registers and the top ``stack_dump`` bytes of its stack
(from rsp up) into a ring buffer shared with us.  The thread is never stopped
and no signal or ptrace stop is involved; nothing of it changes but the time
the interrupt takes (about the time a ptrace stop's wake-up alone takes).

The walker decodes these dumps exactly as it decodes a stack it copied while
the thread was ptrace-stopped (:mod:`.sampler`).  What a dump cannot show is
the part of a deeper stack beyond its end: the sampler then marks the sample
truncated and samples that thread with ptrace from then on.

x86-64 Linux only (the register numbering below is the x86 perf_regs one).
"""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct

__all__ = ["Ring", "PerfEventError", "REG_INDEX", "open_ring"]

_NR_PERF_EVENT_OPEN = 298          # x86-64
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_CPU_CLOCK = 0
SAMPLE_IP, SAMPLE_TID, SAMPLE_TIME, SAMPLE_CALLCHAIN = 1 << 0, 1 << 1, 1 << 2, 1 << 5
SAMPLE_REGS_USER, SAMPLE_STACK_USER = 1 << 12, 1 << 13
# attr flag bits
F_DISABLED, F_EXCLUDE_KERNEL, F_EXCLUDE_HV = 1 << 0, 1 << 5, 1 << 6
F_WATERMARK, F_EXCLUDE_CALLCHAIN_USER, F_USE_CLOCKID = 1 << 14, 1 << 22, 1 << 25
CONTEXT_MARK = (1 << 64) - 4095     # callchain entries at or above this are PERF_CONTEXT_* markers
MAX_KERNEL_FRAMES = 64
PERF_FLAG_FD_CLOEXEC = 1 << 3
IOC_ENABLE, IOC_DISABLE = 0x2400, 0x2401
IOC_PERIOD = 0x40082404           # _IOW('$', 4, __u64)
CLOCK_MONOTONIC = 1
RECORD_LOST, RECORD_SAMPLE = 2, 9
RECORD_THROTTLE, RECORD_UNTHROTTLE = 5, 6
MISC_CPUMODE_MASK, MISC_KERNEL = 7, 1
REGS_ABI_NONE = 0

# x86 perf_regs numbering; the dump holds the registers of the mask in this (bit) order
REG_INDEX = {"rax": 0, "rbx": 1, "rcx": 2, "rdx": 3, "rsi": 4, "rdi": 5, "rbp": 6, "rsp": 7, "rip": 8,
             "r8": 16, "r9": 17, "r10": 18, "r11": 19, "r12": 20, "r13": 21, "r14": 22, "r15": 23}
_REG_BITS = sorted(REG_INDEX.values())
REG_MASK = sum(1 << b for b in _REG_BITS)
REG_POS = {name: _REG_BITS.index(bit) for name, bit in REG_INDEX.items()}   # position in the dumped array
_NREGS = len(_REG_BITS)
ATTR_SIZE = 128                    # PERF_ATTR_SIZE_VER7
MAX_DUMP = 65000 & ~7              # a sample record's size is 16 bits: its stack dump must stay below 64 KiB

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_ulong]
_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]
_ioctl.restype = ctypes.c_int

_HDR = struct.Struct("<IHH")
_HEAD = struct.Struct("<Q")
_FIXED = struct.Struct("<QIIQ")      # ip, pid, tid, time
_REGS = struct.Struct("<%dQ" % _NREGS)
_U64 = struct.Struct("<Q")


class PerfEventError(OSError):
    pass


def _sample_type(kernel: bool) -> int:
    # with kernel samples also the kernel's own call chain (the user part is what the dump is for)
    return SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_REGS_USER | SAMPLE_STACK_USER | \
        (SAMPLE_CALLCHAIN if kernel else 0)


def _attr(period_ns: int, stack_dump: int, kernel: bool, watermark: int) -> ctypes.Array:
    b = bytearray(ATTR_SIZE)
    flags = F_DISABLED | F_EXCLUDE_HV | F_USE_CLOCKID | F_WATERMARK
    if kernel:
        flags |= F_EXCLUDE_CALLCHAIN_USER
    else:
        flags |= F_EXCLUDE_KERNEL
    struct.pack_into("<IIQQQQQ", b, 0, PERF_TYPE_SOFTWARE, ATTR_SIZE, PERF_COUNT_SW_CPU_CLOCK, period_ns,
                     _sample_type(kernel), 0, flags)
    struct.pack_into("<I", b, 48, watermark)               # wakeup_watermark (bytes, with F_WATERMARK)
    struct.pack_into("<Q", b, 80, REG_MASK)                # sample_regs_user
    struct.pack_into("<Ii", b, 88, stack_dump, CLOCK_MONOTONIC)  # sample_stack_user, clockid
    struct.pack_into("<H", b, 108, MAX_KERNEL_FRAMES)      # sample_max_stack
    return (ctypes.c_char * ATTR_SIZE).from_buffer_copy(bytes(b))


class Ring:
    """One thread's sampling event and its mmapped ring buffer."""

    def __init__(self, tid: int, fd: int, mm: mmap.mmap, data_size: int, stack_dump: int, callchain: bool):
        self.tid = tid
        self.callchain = callchain
        self.fd = fd
        self.mm = mm
        self.data_size = data_size
        self.stack_dump = stack_dump
        self.lost = 0
        self.throttled = 0
        self.records = 0
        self.bad = 0                 # records that could not be parsed
        self._tail = 0
        self._period = ctypes.c_uint64(0)
        self.jitter = True           # its period is drawn anew now and then (perf_engine.py)
        self.since_draw = 0          # samples read since

    def enable(self):
        if _ioctl(self.fd, IOC_ENABLE, 0) != 0:
            e = ctypes.get_errno()
            raise PerfEventError(e, f"perf_event enable on thread {self.tid}: {os.strerror(e)}")

    def disable(self):
        if self.fd >= 0:
            _ioctl(self.fd, IOC_DISABLE, 0)

    def set_period(self, ns: int) -> bool:
        """Sample every ``ns`` of the thread's CPU time from now on (the period under way restarts);
        False when the kernel refused."""
        self._period.value = max(10_000, int(ns))
        return self.fd >= 0 and _ioctl(self.fd, IOC_PERIOD, ctypes.addressof(self._period)) == 0

    def pending(self) -> bool:
        return _HEAD.unpack_from(self.mm, 1024)[0] != self._tail

    def read(self):
        """The samples written since the last read: list of (time_ns, kernel_mode, regs tuple, stack bytes,
        kernel pcs).

        regs are in :data:`REG_POS` order; kernel pcs (leaf first, empty for a user-mode sample) are the
        kernel's own call chain.  Frees the space they took in the ring."""
        mm = self.mm
        head = _HEAD.unpack_from(mm, 1024)[0]          # data_head (x86: loads are not reordered)
        tail = self._tail
        if head == tail:
            return []
        size = self.data_size
        base = mmap.PAGESIZE
        out = []
        n = head - tail
        start = tail % size
        if start + n <= size:
            data = mm[base + start:base + start + n]
        else:
            data = mm[base + start:base + size] + mm[base:base + (start + n - size)]
        pos = 0
        while pos + 8 <= n:
            typ, misc, rsize = _HDR.unpack_from(data, pos)
            if rsize < 8:                                 # not a record: drop the rest, do not spin on it
                self.bad += 1
                pos = n
                break
            if pos + rsize > n:
                break
            self.records += 1
            if typ == RECORD_SAMPLE:
                try:
                    s = self._sample(data, pos + 8, misc)
                except struct.error:
                    s = None
                    self.bad += 1
                if s is not None:
                    out.append(s)
            elif typ == RECORD_LOST:
                self.lost += _U64.unpack_from(data, pos + 16)[0]
            elif typ == RECORD_THROTTLE:
                self.throttled += 1
            pos += rsize
        self._tail = tail + pos
        struct.pack_into("<Q", mm, 1032, self._tail)     # data_tail: the kernel may reuse the space
        return out

    def _sample(self, data, p, misc):
        ip, _pid, tid, when = _FIXED.unpack_from(data, p)
        p += _FIXED.size
        kpcs = ()
        if self.callchain:
            nr = _U64.unpack_from(data, p)[0]
            chain = struct.unpack_from("<%dQ" % nr, data, p + 8)
            p += 8 + 8 * nr
            kpcs = tuple(a for a in chain if a < CONTEXT_MARK)
        abi = _U64.unpack_from(data, p)[0]
        p += 8
        if abi == REGS_ABI_NONE:
            return None                                   # no user context (a kernel thread)
        regs = _REGS.unpack_from(data, p)
        p += _REGS.size
        size = _U64.unpack_from(data, p)[0]
        p += 8
        stack = b""
        if size:
            dyn = _U64.unpack_from(data, p + size)[0]
            stack = data[p:p + min(dyn, size)]
        return when, (misc & MISC_CPUMODE_MASK) == MISC_KERNEL, regs, stack, kpcs

    def close(self):
        try:
            self.disable()
        finally:
            try:
                self.mm.close()
            except (BufferError, ValueError):
                pass
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


def open_ring(tid: int, hz: int, stack_dump: int = 32768, pages: int = 256) -> Ring:
    """A disabled cpu-clock sampling event on thread ``tid`` (call ``enable()``).

    ``stack_dump`` bytes of user stack per sample (rounded down to 8; the kernel's limit is just under
    64 KiB); ``pages`` of ring buffer (a power of two, halved until the locked-memory limit allows it).
    Kernel-mode samples are asked for too (they give the user context of the system call), and dropped
    from the request when perf_event_paranoid forbids them."""
    stack_dump = max(1024, min(int(stack_dump), MAX_DUMP)) & ~7
    period = max(10_000, 1_000_000_000 // max(1, int(hz)))
    kernel = True
    err = None
    while True:
        size = pages * mmap.PAGESIZE
        attr = _attr(period, stack_dump, kernel, max(mmap.PAGESIZE, size // 2))
        fd = _syscall(_NR_PERF_EVENT_OPEN, ctypes.byref(attr), tid, -1, -1, PERF_FLAG_FD_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            if e in (errno.EACCES, errno.EPERM) and kernel:
                kernel = False                            # paranoid 2: user-mode samples only
                continue
            raise PerfEventError(e, f"perf_event_open on thread {tid}: {os.strerror(e)}")
        try:
            mm = mmap.mmap(fd, size + mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            os.close(fd)
            err = e
            if e.errno in (errno.EPERM, errno.ENOMEM) and pages > 8:
                pages //= 2                               # perf_event_mlock_kb for unprivileged users
                continue
            raise PerfEventError(err.errno, f"perf_event mmap on thread {tid}: {err.strerror}") from None
        return Ring(tid, fd, mm, size, stack_dump, kernel)


def unavailable(tid: int | None = None) -> str | None:
    """None when this process can open a sampling event on thread ``tid`` (default: its own main thread),
    else why not.  The event is closed again without being enabled."""
    try:
        r = open_ring(os.getpid() if tid is None else tid, 100, 1024, 8)
    except PerfEventError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            return ("perf_event_open is not permitted (kernel.perf_event_paranoid > 2, or no CAP_PERFMON "
                    "in a container)")
        return str(e)
    except (AttributeError, OSError) as e:
        return f"perf_event_open does not work here: {e}"
    r.close()
    return None
