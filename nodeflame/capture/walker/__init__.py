"""The ``walker`` backend: V8 stack walking from user space.

Every thread that runs JavaScript (the main thread and worker threads) has its
registers and stack copied ``hz`` times a second, by one of two engines
(``backend_options={"engine": "auto" | "perf" | "ptrace"}``):

* ``perf`` (what ``auto`` takes where the kernel allows it): a cpu-clock
  perf_event per thread whose samples carry the user registers and a 32 KiB
  dump of the stack (:mod:`.perfevent`).  Nothing is stopped or traced; it
  samples CPU time (a blocked thread has no samples; time in the kernel is the
  kernel's call chain, named from /proc/kallsyms).  A thread whose stack outgrows the dump gets a 64 KiB
  dump, then the ptrace engine.
* ``ptrace``: PTRACE_SEIZE + PTRACE_INTERRUPT (the process is never
  group-stopped, no SIGSTOP is sent), registers and the used stack copied,
  resumed.  A wall-clock sampler: a thread blocked in a syscall is sampled
  too, with the syscall as a ``kernel`` leaf frame.

The frame-pointer chain is then walked over the copy; JS frames are named by
reading the V8 heap (JSFunction -> SharedFunctionInfo -> ScopeInfo / Script)
with offsets from the binary's own ``v8dbg_*`` symbols
(:mod:`nodeflame.capture.v8layout`); native frames from the ELF symbol tables
of node and the shared libraries.

Inside, :class:`.sampler.Sampler` runs the loop on the sampler thread with the
engines of :mod:`.ptrace_engine` and :mod:`.perf_engine`; :class:`.decoder.Decoder`
names the frames on its own thread and builds the Profile.

>>> import nodeflame as nf
>>> p = nf.capture(4242, 5, backend="walker", hz=1000)
"""
from __future__ import annotations

import os
import threading

from ..base import Backend, CaptureError, CaptureOptions, Session, Target, TargetError, TargetExited
from . import ptrace

__all__ = ["BACKEND", "WalkerBackend", "ptrace_permission"]


def ptrace_permission(pid: int) -> str | None:
    """None when this process may ptrace ``pid``, else why not (one sentence with the fix)."""
    try:
        st = os.stat(f"/proc/{pid}")
    except FileNotFoundError:
        return f"no process {pid}"
    except OSError as e:
        return f"cannot inspect /proc/{pid}: {e.strerror}"
    euid = os.geteuid()
    cap = _has_cap_sys_ptrace()
    if euid != 0 and not cap and st.st_uid != euid:
        return (f"process {pid} belongs to uid {st.st_uid}: run as that user or as root "
                "(or give python CAP_SYS_PTRACE)")
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read().strip() or 0)
    except (OSError, ValueError):
        scope = 0
    if scope >= 3:
        return "ptrace is disabled on this machine (kernel.yama.ptrace_scope=3)"
    if scope >= 1 and euid != 0 and not cap:
        return ("kernel.yama.ptrace_scope is %d: run as root, give python CAP_SYS_PTRACE, or "
                "`sysctl kernel.yama.ptrace_scope=0`" % scope)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    tp = int(line.split()[1])
                    if tp:
                        return f"process {pid} is already traced by pid {tp} (a debugger or another profiler)"
    except OSError:
        pass
    return None


def _has_cap_sys_ptrace() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 19 & 1)
    except (OSError, ValueError):
        pass
    return False


class WalkerSession(Session):
    def __init__(self, backend, target, opts, sampler, thread, lock=None):
        super().__init__(backend, target, opts)
        self.sampler = sampler
        self.thread = thread
        self.lock = lock                  # the walker's capture lock of the pid (locks.take)
        self._closed = False
        self._profile = None

    def poll(self):
        s = self.sampler
        if s.error is not None and not isinstance(s.error, (ProcessLookupError,)):
            raise CaptureError(f"walker: sampling failed: {type(s.error).__name__}: {s.error}")

    def target_exited(self) -> bool:
        return True  # what was sampled is kept

    def stop(self):
        self.sampler.stop()
        self.thread.join()
        s = self.sampler
        if s.error is not None and s.samples == 0:
            if isinstance(s.error, ProcessLookupError):
                # ptrace answers EPERM to a process in the middle of exiting: say what happened
                from .. import procutil
                how = "is a zombie" if procutil.state(self.target.pid) == "Z" else "is gone"
                raise TargetExited(f"process {self.target.pid} exited while the walker backend was attaching "
                                   f"to it (it {how} now); nothing was sampled")
            raise CaptureError(f"walker: sampling failed: {type(s.error).__name__}: {s.error}")
        meta = {"backend": "walker", "pid": self.target.pid, "node_version": s.lay.node_version,
                "unit": "samples"}
        self._profile = s.profile(meta)
        return self._profile

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            self.sampler.stop()
            self.thread.join(30)
        except BaseException:  # noqa: BLE001 - close must never raise
            pass
        if self.lock is not None and not self.thread.is_alive():
            self.lock.release()           # (a sampler still attached keeps it: the process exit drops it)


def _realtime_option(value):
    if value in ("stops", True, False):
        return value
    raise CaptureError(f'walker backend option realtime must be "stops", True or False, got {value!r}')


def _engine_option(value):
    if value in ("auto", "perf", "ptrace"):
        return value
    raise CaptureError(f'walker backend option engine must be "auto", "perf" or "ptrace", got {value!r}')


class WalkerBackend(Backend):
    name = "walker"
    summary = ("V8 frame walk from user space (perf_event stack dumps or ptrace, v8dbg metadata): JS and native "
               "frames, all threads")
    needs = ("ptrace permission (root, CAP_SYS_PTRACE or ptrace_scope 0) and a node with v8dbg_* symbols; "
             "perf_event_open (perf_event_paranoid <= 2) for the engine that never stops the target")
    default_hz = 1000

    def available(self, pid: int | None = None) -> str | None:
        if pid is not None and ptrace.supported() is None:
            from .. import locks
            why = locks.busy(pid, "walker")   # (before ptrace's "already traced": that tracer is the capture)
            if why:
                return why
        return self._available(pid)

    def _available(self, pid: int | None = None) -> str | None:
        """available() but for the capture lock (start() holds it when it asks)."""
        why = ptrace.supported()
        if why:
            return why
        if pid is None:
            return None
        why = ptrace_permission(pid)
        if why:
            return why
        from ..v8layout import LayoutError, layout_for_pid
        try:
            layout_for_pid(pid).check_supported()
        except LayoutError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 - available() reports, never raises
            return f"cannot read the V8 layout of pid {pid}: {type(e).__name__}: {e}"
        return None

    def note(self, pid: int | None = None) -> str | None:
        from . import perfevent
        why = perfevent.unavailable(pid)
        if why is None:
            return ("perf engine: the kernel copies each JS thread's registers and stack at every period of "
                    "its CPU time; nothing is stopped (blocked threads get no samples)")
        return (f"ptrace engine: each sample stops the thread for tens of microseconds (wall-clock, blocked "
                f"threads included); no perf engine because {why}")

    def start(self, target: Target, opts: CaptureOptions) -> Session:
        from .. import locks
        # one walker capture of a process at a time (either engine): before anything touches the target, so
        # a second capture never meets the first's ptrace stops or rings ("already traced" would be its error)
        lock = locks.take(target.pid, "walker", fix="use the perf or inspector backend")
        try:
            return self._start(target, opts, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    def _start(self, target: Target, opts: CaptureOptions, lock) -> Session:
        from ..v8layout import LayoutError, layout_for_pid
        from .sampler import Sampler
        why = self._available(target.pid)
        if why:
            raise CaptureError(f"walker: {why}")
        try:
            lay = layout_for_pid(target.pid).check_supported()
        except LayoutError as e:
            raise TargetError(str(e)) from None
        ex = dict(opts.extra or {})
        sampler = Sampler(target.pid, lay, hz=opts.hz or self.default_hz, threads=opts.threads or "all",
                          duration=None, max_stack=int(ex.get("max_stack", 2 << 20)),
                          consistent=bool(ex.get("consistent", False)),
                          realtime=_realtime_option(ex.get("realtime", "stops")),
                          engine=_engine_option(ex.get("engine", "auto")),
                          stack_dump=int(ex.get("stack_dump", 32768)), ring_kb=int(ex.get("ring_kb", 4096)))
        th = threading.Thread(target=sampler.run, name=f"nodeflame-walker-{target.pid}", daemon=True)
        th.start()
        sampler.started.wait(30)
        if sampler.error is not None and sampler.samples == 0 and not th.is_alive():
            e = sampler.error
            if isinstance(e, PermissionError):
                raise CaptureError(f"walker: {e.strerror or e}") from None
            raise CaptureError(f"walker: cannot start: {type(e).__name__}: {e}") from None
        return WalkerSession(self, target, opts, sampler, th, lock)


BACKEND = WalkerBackend()
