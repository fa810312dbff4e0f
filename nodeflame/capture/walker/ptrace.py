"""ptrace through ctypes: seize, interrupt, registers, continue, detach (x86-64 Linux).

Every request must come from the thread that seized the tracee, so the
sampler does all of its ptrace work on one thread.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform

PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_DETACH = 17
PTRACE_GETSIGINFO = 0x4202
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_EVENT_STOP = 128
WALL = 0x40000000  # __WALL: wait for threads (clone children) too

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86-64)."""
    _fields_ = [(n, ctypes.c_ulonglong) for n in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
        "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
        "es", "fs", "gs")]


class PtraceError(OSError):
    pass


def supported() -> str | None:
    """None when this machine can run the ptrace walker, else why not."""
    if platform.system() != "Linux":
        return "the walker needs Linux (ptrace, /proc)"
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"the walker supports x86-64 only (this is {platform.machine()})"
    return None


def _call(req, tid, addr=None, data=None):
    r = _ptrace(req, tid, addr, data)
    if r == -1:
        e = ctypes.get_errno()
        raise PtraceError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")
    return r


def seize(tid: int) -> None:
    _call(PTRACE_SEIZE, tid, None, None)


def interrupt(tid: int) -> None:
    _call(PTRACE_INTERRUPT, tid)


def cont(tid: int, sig: int = 0) -> None:
    _call(PTRACE_CONT, tid, None, sig)


def listen(tid: int) -> None:
    _call(PTRACE_LISTEN, tid)


def detach(tid: int, sig: int = 0) -> None:
    _call(PTRACE_DETACH, tid, None, sig)


def getregs(tid: int, regs: Regs) -> Regs:
    _call(PTRACE_GETREGS, tid, None, ctypes.addressof(regs))
    return regs


def wait(tid: int, nohang: bool = False):
    """waitpid(tid, __WALL[|WNOHANG]) -> status, or None (nothing yet / no such child)."""
    try:
        pid, status = os.waitpid(tid, WALL | (os.WNOHANG if nohang else 0))
    except ChildProcessError:
        return None
    if pid == 0:
        return None
    return status


def classify(status: int):
    """('interrupt'|'signal'|'group'|'exited'|'event', signal number)."""
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        return "exited", 0
    if not os.WIFSTOPPED(status):
        return "other", 0
    sig = os.WSTOPSIG(status)
    event = status >> 16
    if event == PTRACE_EVENT_STOP:
        import signal as _s
        if sig in (_s.SIGSTOP, _s.SIGTSTP, _s.SIGTTIN, _s.SIGTTOU):
            return "group", sig
        return "interrupt", sig
    if event:
        return "event", sig
    return "signal", sig


ESRCH = errno.ESRCH
