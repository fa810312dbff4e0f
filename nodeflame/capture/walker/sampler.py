"""The sampling loop: registers and stack of every JS thread, ``hz`` times a second, decoded later.

Two engines take the copies (``engine=``).  With ``"perf"`` (what ``"auto"``
takes when the kernel lets us open a perf_event on the thread) the kernel
samples each thread at every period of its CPU time and writes registers and a
``stack_dump``-byte stack dump to a ring buffer (:mod:`.perfevent`); this loop
only drains the rings (waking when one is half full) and the thread is never
stopped.  A dump whose walk reaches past its end (a stack deeper than the dump)
ends in a ``(truncated stack)`` root; its thread then gets the largest dump
(64 KiB) and, if that is still too small, moves to the ptrace engine.

With ``"ptrace"``, a round interrupts every sampled thread at once (PTRACE_INTERRUPT), then takes
each one as soon as it has stopped: PTRACE_GETREGS, one read of its used stack
(rsp up to the end of the stack mapping; ``pread`` on /proc/<pid>/mem, which
from Python costs a fifth of a ctypes ``process_vm_readv`` for the same bytes)
and PTRACE_CONT -- about 10-20 us stopped per thread and sample.  No thread
waits stopped while another is handled.

Frame walking and heap decoding happen after the thread runs again, in a
separate decoding thread, so the cost of decoding one sample (milliseconds for
a 3000-frame stack) never shifts the time of the next one: sampling times that
depended on what the last sample saw would bias the shares.  Objects a GC
moves meanwhile are found through their forwarding address and every decoded
object is validated (instance types; cached function info is re-checked
against the JSFunction's map and ``shared`` words).  With ``consistent=True``
the walk and the JSFunction -> SharedFunctionInfo reads happen before
resuming instead.

Scheduling of the sampler thread (``backend_options={"realtime": ...}``):
``"stops"`` (the default) makes it SCHED_RR only while target threads are
stopped, so it is never preempted with a thread of the target held stopped,
and between samples it competes like any thread instead of preempting the
target.  ``True`` keeps it SCHED_RR throughout (samples on time on a busy
machine, but bench/bench_capture.py measured the target 17.7 % slower at
1 kHz); ``False`` never (7.6 %, but a stopped thread can wait for the sampler
to be scheduled again).  Sample times are jittered by +-25 % of the period.

Signals that arrive while a thread is traced turn into signal-delivery stops;
they are re-injected at once (between samples they are found within ~1 ms).
Every path out of :meth:`Sampler.run` detaches from every thread.
"""
from __future__ import annotations

import mmap
import os
import random
import select
import sys
import threading
import time

import numpy as np

from . import perfevent, ptrace
from .decoder import _PERF_KERNEL, _PERF_USER, _PTRACE, SYSCALLS, Decoder  # noqa: F401 - SYSCALLS re-exported
from .heap import V8Heap
from .memory import Memory
from .symbols import AddressSpace, kallsyms
from .unwind import Unwinder

_REG_NAMES = {0: "rax", 1: "rcx", 2: "rdx", 3: "rbx", 4: "rsp", 5: "rbp", 6: "rsi", 7: "rdi", 8: "r8", 9: "r9",
              10: "r10", 11: "r11", 12: "r12", 13: "r13", 14: "r14", 15: "r15"}
WORKER_RUN = "_ZN4node6worker6Worker3RunEv"
_NO_SYSCALL = (1 << 64) - 1          # orig_rax of a sample not taken inside a system call


class _Thread:
    __slots__ = ("tid", "label", "seized", "group_stopped", "stack", "samples", "gone", "last_copy", "idle",
                 "blocked_key", "ring", "outgrown")

    def __init__(self, tid, label):
        self.tid, self.label = tid, label
        self.seized = False
        self.ring = None              # perf_event engine: the kernel's samples of this thread
        self.outgrown = False         # its stack outgrew its perf dump: a bigger dump, or ptrace
        self.group_stopped = False
        self.stack = None
        self.last_copy = None
        self.idle = None
        self.blocked_key = None
        self.samples = 0
        self.gone = False


class Sampler:
    """Samples the JavaScript threads of ``pid`` at ``hz`` until ``stop()`` or ``duration``."""

    def __init__(self, pid: int, lay, *, hz: int = 1000, threads: str = "all", duration: float | None = None,
                 max_stack: int = 2 << 20, consistent: bool = False, rescan_s: float = 0.5,
                 realtime: "bool | str" = "stops", engine: str = "auto", stack_dump: int = 32768,
                 ring_kb: int = 4096, max_lag_ns: int = 50_000_000, max_queue_bytes: int = 256 << 20):
        if engine not in ("auto", "perf", "ptrace"):
            raise ValueError(f'engine must be "auto", "perf" or "ptrace", got {engine!r}')
        self.pid = pid
        self.engine = "ptrace" if consistent else engine
        self.stack_dump = int(stack_dump)
        pages = max(8, int(ring_kb) * 1024 // mmap.PAGESIZE)
        self.ring_pages = 1 << (pages.bit_length() - 1)        # a power of two, as the kernel wants
        self.perf_error = None
        self._poll = None                    # ({ring fd: tid}, select.poll over them)
        self.lay = lay
        self.hz = max(1, int(hz))
        self.threads_mode = threads
        self.duration = duration
        self.max_stack = max_stack
        self.consistent = consistent
        self.rescan_s = rescan_s
        self.realtime = realtime
        self._rr_stops = False
        self._last_signal_ns = 0
        self.decoder: Decoder | None = None   # made by _setup; see decoder.py for its two threads
        self.max_queue_bytes = max_queue_bytes
        self.max_lag_ns = max_lag_ns
        self._stop = threading.Event()
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.threads: dict[int, _Thread] = {}
        self.known: dict[int, str] = {}      # tid -> 'main' | 'worker' | 'other'
        self.n_workers = 0
        self.stats = dict(missed=0, forwarded_signals=0, stopped_ns=[], latency_ns=[], threads_seen=0,
                          detach_errors=0, group_stops=0, truncated=0)
        self.t0 = 0
        self.exited = False
        self.mem = None
        self.space = None
        self.heap = None
        self.unwinder = None
        self._last_refresh = 0.0
        regcode = lay.get("InterpreterBytecodeOffsetRegister", 9)
        self.bc_reg = _REG_NAMES.get(regcode, "r9")

    # ------------------------------------------------------------- control
    def stop(self):
        self._stop.set()

    def run(self):
        """Sampler thread body.  Detaches on every path.

        Decoding runs in a second thread, so that the time a sample takes to decode (a 3000-frame stack
        takes milliseconds) never delays the next sample: sampling times that depend on what the last
        sample saw would bias the shares (fewer samples right after a deep stack)."""
        old_switch = sys.getswitchinterval()
        try:
            self._realtime()
            self._setup()
            self._discover(first=True)
            # the sampler must get the GIL back promptly from the decoder
            sys.setswitchinterval(min(old_switch, 0.0002))
            self.decoder.start()
            self.started.set()
            self._loop()
        except BaseException as e:  # noqa: BLE001 - reported to the caller through .error
            self.error = e
        finally:
            try:
                self._drain()
            finally:
                self._detach_all()
                sys.setswitchinterval(old_switch)
                if self.decoder is not None:
                    self.decoder.finish()
                self.started.set()
                if self.mem is not None:
                    self.mem.close()

    def _drain(self, timeout=60.0):
        """Wait for the decoder to catch up while still servicing the traced threads (a signal that
        arrives meanwhile must not leave a thread in signal-delivery-stop)."""
        rings = [t for t in self.threads.values() if t.ring is not None]
        for t in rings:
            t.ring.disable()
        for t in rings:
            try:
                self._read_ring(t)
            except Exception:  # noqa: BLE001 - what could not be read is lost, the detach must go on
                pass
        if self.decoder is None:
            return
        end = time.monotonic() + timeout
        while self.decoder.busy():
            if time.monotonic() > end:
                break
            try:
                self._service()
            except Exception:  # noqa: BLE001
                break
            time.sleep(0.001)

    def _realtime(self):
        """Run this (sampler) thread under SCHED_RR when allowed: on a busy machine a normal thread wakes
        up milliseconds late, so samples bunch up and miss whole stretches of the target's time.  It
        sleeps between samples and does bounded work per sample, so it cannot monopolise a CPU."""
        self.stats["realtime"] = False
        self._rr_stops = False
        if not self.realtime or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))  # 0 = this thread on Linux
        except (OSError, AttributeError):
            return
        if self.realtime == "stops":
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            self._rr_stops = True
            self.stats["realtime"] = "stops"
        else:
            self.stats["realtime"] = True

    def _boost(self, on: bool):
        """SCHED_RR while target threads are stopped (realtime="stops"), normal otherwise."""
        try:
            if on:
                os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
            else:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            self._rr_stops = False

    def _setup(self):
        self.mem = Memory(self.pid)
        self.space = AddressSpace(self.pid)
        self.heap = V8Heap(self.mem, self.lay)
        self.unwinder = Unwinder(self.space, self.heap, self.lay)
        wr = self.space.node_elf.symbol_range(WORKER_RUN) if self.space.node_elf is not None else None
        self.worker_run = wr
        self.regs = ptrace.Regs()
        self._perf_pos = perfevent.REG_POS
        # names for the kernel call chains of perf samples: read now (0.1 s), not by the decoder in
        # the middle of the capture, where the wait makes the heap reads of queued samples late
        kernel_names = kallsyms() if self.engine != "ptrace" else None
        # parse libc's .eh_frame now rather than in the middle of the first idle sample
        from .cfi import cfi_for
        for r in self.space.regions:
            if r.exec and r.path and os.path.basename(r.path).startswith("libc.so"):
                cfi_for(r.path)
                break
        self.t0 = time.monotonic_ns()
        self.decoder = Decoder(pid=self.pid, space=self.space, mem=self.mem, heap=self.heap, unwinder=self.unwinder,
                               t0=self.t0, kernel_names=kernel_names, max_lag_ns=self.max_lag_ns,
                               max_queue_bytes=self.max_queue_bytes)

    # ------------------------------------------------------------- threads
    def _tids(self):
        try:
            return sorted(int(x) for x in os.listdir(f"/proc/{self.pid}/task"))
        except OSError:
            return []

    def _discover(self, first=False):
        tids = self._tids()
        if not tids:
            if first:
                raise ProcessLookupError(f"process {self.pid} is gone")
            self.exited = True
            return
        for tid in tids:
            if tid in self.known:
                continue
            if tid == self.pid:
                kind = "main"
            elif self.threads_mode == "main":
                kind = "other"
            else:
                kind = self._classify_thread(tid)
            if kind is None:
                continue  # could not tell yet; retry at the next rescan
            self.known[tid] = kind
            if kind == "other":
                continue
            t = _Thread(tid, "main")
            if kind == "worker":
                self.n_workers += 1
                t.label = f"worker {self.n_workers}"
            if self.engine != "ptrace" and self._open_ring(t):
                self.threads[tid] = t
                self.stats["threads_seen"] += 1
                continue
            try:
                ptrace.seize(tid)
                t.seized = True
            except ptrace.PtraceError as e:
                if tid == self.pid and first:
                    raise PermissionError(e.errno, f"cannot ptrace pid {self.pid}: {os.strerror(e.errno)}") from None
                continue
            self.threads[tid] = t
            self.stats["threads_seen"] += 1

    def _open_ring(self, t, dump=None):
        """perf_event engine: have the kernel sample thread ``t`` with ``dump``-byte stack dumps (True),
        else say why in perf_error.  With engine="perf" the main thread must be sampled so."""
        ring = None
        try:
            ring = perfevent.open_ring(t.tid, self.hz, dump or self.stack_dump, self.ring_pages)
            ring.enable()
        except perfevent.PerfEventError as e:
            if ring is not None:
                ring.close()
            self.perf_error = str(e)
            if self.engine == "perf" and t.tid == self.pid and dump is None:
                raise PermissionError(e.errno, f"walker engine perf: {e}") from None
            return False
        t.ring = ring
        return True

    def _outgrown(self, t):
        """A thread whose stack outgrew the perf dump: read what its ring still holds, then give it the
        largest dump the kernel allows, or, when it had that already, sample it with ptrace from now on
        (a full stack copy while it is stopped)."""
        self._read_ring(t)
        dump = t.ring.stack_dump
        self._close_ring(t)
        t.outgrown = False
        if dump < perfevent.MAX_DUMP and self._open_ring(t, perfevent.MAX_DUMP):
            self.stats["dump_grown"] = self.stats.get("dump_grown", 0) + 1
            return
        try:
            ptrace.seize(t.tid)
            t.seized = True
            self.stats["switched_to_ptrace"] = self.stats.get("switched_to_ptrace", 0) + 1
        except ptrace.PtraceError:
            t.gone = True

    def _read_ring(self, t):
        ring = t.ring
        if ring is None or not ring.pending():
            return
        pos = self._perf_pos
        bc = pos[self.bc_reg]
        rip, rsp, rbp = pos["rip"], pos["rsp"], pos["rbp"]
        dump = ring.stack_dump
        for when, kmode, regs, stack, kpcs in ring.read():
            snap = (regs[rip], regs[rsp], regs[rbp], regs[bc], _NO_SYSCALL, 0, stack, when, None,
                    _PERF_KERNEL if kmode else _PERF_USER, dump, kpcs)
            self.decoder.submit(t, (snap, None, None))

    def _close_ring(self, t):
        r, t.ring = t.ring, None
        st = self.stats
        st["perf_lost"] = st.get("perf_lost", 0) + r.lost
        st["perf_throttled"] = st.get("perf_throttled", 0) + r.throttled
        st["perf_bad"] = st.get("perf_bad", 0) + r.bad
        try:
            r.close()
        except OSError:
            pass

    def _read_rings(self):
        for t in self.threads.values():
            if t.ring is not None:
                self._read_ring(t)

    def _wait(self, seconds):
        """Sleep up to ``seconds``, waking early when a perf ring is half full (its watermark)."""
        byfd = {t.ring.fd: t.tid for t in self.threads.values() if t.ring is not None}
        if not byfd:
            time.sleep(seconds)
            return
        if self._poll is None or self._poll[0] != byfd:   # the rings changed: a new poll set
            p = select.poll()
            for fd in byfd:
                p.register(fd, select.POLLIN)
            self._poll = (byfd, p)
        for fd, ev in self._poll[1].poll(max(0, int(seconds * 1000))):
            if ev & (select.POLLHUP | select.POLLERR):
                t = self.threads.get(byfd[fd])
                if t is not None:
                    self._read_ring(t)
                    t.gone = True        # the thread exited: its event sees no more time

    def _classify_thread(self, tid):
        """'worker' when node::worker::Worker::Run is on the thread's stack, else 'other' (None: unknown)."""
        if self.worker_run is None:
            return "other"
        sp = None
        try:
            with open(f"/proc/{self.pid}/task/{tid}/syscall") as f:
                parts = f.read().split()
            if parts and parts[0] not in ("running",) and len(parts) >= 8:
                sp = int(parts[-2], 16)
        except (OSError, ValueError):
            return "other"
        if sp is None:
            # running: stop it once to read rsp
            try:
                ptrace.seize(tid)
            except ptrace.PtraceError:
                return "other"
            try:
                regs = self._stop_and_regs(tid)
                sp = regs[1] if regs else None
            finally:
                self._detach_one(tid)
            if sp is None:
                return None
        r = self.space.region(sp)
        if r is None:
            self.space.refresh()
            r = self.space.region(sp)
            if r is None:
                return "other"
        data = self.mem.read(sp & ~7, min(r.end - (sp & ~7), 16 << 20))
        if not data:
            return "other"
        w = np.frombuffer(data[:len(data) // 8 * 8], np.uint64)
        lo, hi = self.worker_run
        return "worker" if bool(((w >= lo) & (w < hi)).any()) else "other"

    def _stop_and_regs(self, tid):
        """Interrupt a seized thread, read (rip, rsp), resume."""
        try:
            ptrace.interrupt(tid)
        except ptrace.PtraceError:
            return None
        got = None
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            st = ptrace.wait(tid, nohang=True)
            if st is None:
                time.sleep(0.0002)
                continue
            kind, sig = ptrace.classify(st)
            if kind == "exited":
                return None
            if got is None and kind in ("interrupt", "signal"):
                ptrace.getregs(tid, self.regs)
                got = (self.regs.rip, self.regs.rsp)
            if kind == "interrupt":
                ptrace.cont(tid, 0)
                return got
            if kind == "signal":
                ptrace.cont(tid, sig)
                self.stats["forwarded_signals"] += 1
                return got
            if kind == "group":
                ptrace.listen(tid)
                return got
            ptrace.cont(tid, 0)
        return got

    # ------------------------------------------------------------- the loop
    def _loop(self):
        period = 1_000_000_000 // self.hz
        next_t = time.monotonic_ns()
        next_scan = time.monotonic() + self.rescan_s
        end = None if self.duration is None else self.t0 + int(self.duration * 1e9)
        while not self._stop.is_set() and not self.exited:
            # threads the kernel samples (perf rings) need no round of ours: only the ptrace ones do
            stoppable = [t for t in self.threads.values() if t.ring is None and not t.gone and not t.group_stopped]
            while True:
                self._service()
                self._read_rings()
                now = time.monotonic_ns()
                if self._stop.is_set() or (end is not None and now >= end):
                    break
                if not stoppable:
                    if time.monotonic() >= next_scan or any((t.outgrown and t.ring is not None) or t.gone
                                                                for t in self.threads.values()):
                        break
                    wait = 0.01 if end is None else min(0.01, (end - now) / 1e9)
                    self._wait(wait)
                    continue
                rem = next_t - now
                if rem <= 0:
                    break
                # between samples, stops caused by signals are looked for every 0.25 ms while signals
                # are arriving (a thread waits stopped until its signal is forwarded: another profiler's
                # SIGPROF every ms must not stall it), else every 4 ms: each wake-up of this real-time
                # thread may preempt the target on its CPU
                poll = 250_000 if now - self._last_signal_ns < 1_000_000_000 else 4_000_000
                self._wait(min(rem, poll) / 1e9)
            if self._stop.is_set():
                break
            if end is not None and now >= end:
                break
            if stoppable:
                self._sample_round(stoppable)
            for t in [t for t in self.threads.values() if t.outgrown and t.ring is not None and not t.gone]:
                self._outgrown(t)
            for tid in [tid for tid, t in self.threads.items() if t.gone]:
                t = self.threads.pop(tid)
                if t.ring is not None:
                    self._read_ring(t)
                    self._close_ring(t)
            if not self.threads or self.threads.get(self.pid) is None and not os.path.exists(f"/proc/{self.pid}"):
                self.exited = not os.path.exists(f"/proc/{self.pid}/task")
                if self.exited or not self.threads:
                    self.exited = True
                    break
            if not stoppable:
                next_t = time.monotonic_ns()
            else:
                # the next sample one period on, jittered by +-25 % so that it cannot lock onto a periodic
                # workload; after a late wake-up (a busy machine) no burst of catch-up samples, which
                # would all land in the same function: at least half a period between two samples
                next_t += period + random.randint(-period // 4, period // 4)
                now = time.monotonic_ns()
                if next_t < now + period // 2:
                    if next_t < now:
                        self.stats["missed"] += (now - next_t) // period
                    next_t = now + period // 2
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + self.rescan_s
                if self.threads_mode != "main":
                    self._discover()
                for t in self.threads.values():
                    if t.ring is not None and not os.path.exists(f"/proc/{self.pid}/task/{t.tid}"):
                        t.gone = True
                if not os.path.exists(f"/proc/{self.pid}"):
                    self.exited = True

    def _service(self):
        """Reap stops that happened between samples: forward signals, keep group stops."""
        for t in list(self.threads.values()):
            if t.gone or not t.seized:
                continue
            st = ptrace.wait(t.tid, nohang=True)
            if st is None:
                continue
            self._handle_stray(t, st)

    def _handle_stray(self, t, st):
        kind, sig = ptrace.classify(st)
        try:
            if kind == "exited":
                t.gone = True
            elif kind == "signal":
                ptrace.cont(t.tid, sig)
                self.stats["forwarded_signals"] += 1
                self._last_signal_ns = time.monotonic_ns()
            elif kind == "group":
                ptrace.listen(t.tid)
                t.group_stopped = True
                self.stats["group_stops"] += 1
            else:
                if t.group_stopped and kind == "interrupt":
                    t.group_stopped = False  # resumed by SIGCONT while listening
                ptrace.cont(t.tid, 0)
        except ptrace.PtraceError:
            t.gone = not os.path.exists(f"/proc/{self.pid}/task/{t.tid}")

    def _sample_round(self, threads):
        """Interrupt every thread, then take each as soon as it has stopped (copy registers and stack,
        resume at once), so no thread waits stopped for another; decode after all run again."""
        if self.hz < 500:
            # at low rates the copy path is cold (caches, page-table walks) by the next sample: run it once
            # while the threads still run, so that the copy while stopped is as short as at high rates
            for t in threads:
                if t.last_copy is not None:
                    self.mem.read(*t.last_copy)
        stop = []
        for t in threads:
            key = self._blocked_at(t.tid)
            t.blocked_key = key
            if key is not None and t.idle is not None and t.idle[0] == key:
                # blocked in the same system call at the same stack pointer as at its last sample: the
                # same stack.  Interrupting it would only make the call return EINTR (waking an idle
                # event loop at every sample), so count that stack again instead
                self.stats["idle_reused"] = self.stats.get("idle_reused", 0) + 1
                self.decoder.submit(t, (None, ("reuse", t.idle[1], time.monotonic_ns()), None))
                continue
            stop.append(t)
        boost = self._rr_stops and bool(stop)
        if boost:
            self._boost(True)
        try:
            got = self._stop_and_collect(stop)
        finally:
            if boost:
                self._boost(False)
        for t, sampled in got:
            self.decoder.submit(t, sampled)

    def _stop_and_collect(self, stop):
        """Interrupt the threads of ``stop`` and collect each as soon as it has stopped."""
        live = []
        for t in stop:
            try:
                ptrace.interrupt(t.tid)
                live.append(t)
            except ptrace.PtraceError:
                t.gone = True
        t_int = time.perf_counter_ns()
        got = []
        pending = live
        # a thread running on another CPU stops within microseconds: poll briefly; one that is not
        # running stops only when it is scheduled, so then block (a spinning real-time sampler would keep
        # it off this CPU)
        spin_until = t_int + 60_000
        while pending:
            rest = []
            for t in pending:
                st = ptrace.wait(t.tid, nohang=True)
                if st is None:
                    rest.append(t)
                    continue
                sampled = self._collect(t, st, t_int)
                if sampled is not None:
                    got.append((t, sampled))
            pending = rest
            if pending and time.perf_counter_ns() > spin_until:
                t = pending.pop(0)
                sampled = self._collect(t, None, t_int)
                if sampled is not None:
                    got.append((t, sampled))
        return got

    def _blocked_at(self, tid):
        """(syscall nr, sp, pc) of a thread blocked in a system call, from /proc (no stop), else None."""
        try:
            with open(f"/proc/{self.pid}/task/{tid}/syscall", "rb") as f:
                parts = f.read().split()
        except OSError:
            return None
        if len(parts) < 3 or not parts[0].isdigit():
            return None      # running, or blocked outside a system call (-1)
        try:
            return int(parts[0]), int(parts[-2], 16), int(parts[-1], 16)
        except ValueError:
            return None

    def _collect(self, t, st=None, t_int=0):
        """Handle the stop of ``t`` (status ``st``, or wait for it): sample it and resume it."""
        tid = t.tid
        regs = self.regs
        sampled = None
        while True:
            if st is None:
                st = ptrace.wait(tid)
            if st is None:
                t.gone = True
                return None
            t_stopped = time.perf_counter_ns()
            kind, sig = ptrace.classify(st)
            st = None
            if kind == "exited":
                t.gone = True
                return None
            if kind in ("interrupt", "signal") and sampled is None:
                try:
                    ptrace.getregs(tid, regs)
                except ptrace.PtraceError:
                    t.gone = True
                    return None
                sampled = self._copy(t, regs)
            try:
                if kind == "interrupt":
                    ptrace.cont(tid, 0)
                    break
                if kind == "signal":
                    # a signal arrived first: sample here (the registers are the interrupted context), deliver
                    # it; the pending interrupt stop that follows is resumed by _service
                    ptrace.cont(tid, sig)
                    self.stats["forwarded_signals"] += 1
                    self._last_signal_ns = time.monotonic_ns()
                    self._resume_pending(t)
                    break
                if kind == "group":
                    ptrace.listen(tid)
                    t.group_stopped = True
                    break
                ptrace.cont(tid, 0)
            except ptrace.PtraceError:
                t.gone = True
                return None
        now = time.perf_counter_ns()
        self.stats["stopped_ns"].append(now - t_stopped)
        if t_int:
            self.stats["latency_ns"].append(t_stopped - t_int)
        return sampled

    def _resume_pending(self, t, budget_s=0.0003):
        """After delivering a signal the pending interrupt stops the thread again at once (at the handler's
        entry): resume it without waiting for the next service round."""
        end = time.perf_counter() + budget_s
        while time.perf_counter() < end:
            st = ptrace.wait(t.tid, nohang=True)
            if st is not None:
                self._handle_stray(t, st)
                return
            os.sched_yield()

    def _copy(self, t, regs):
        """Registers and the used stack, copied while the thread is stopped."""
        rsp = regs.rsp
        st = t.stack
        if st is None or not (st[0] <= rsp < st[1]):
            r = self.space.region(rsp)
            if r is None:
                self.space.refresh()
                r = self.space.region(rsp)
            st = t.stack = (r.start, r.end) if r is not None else (rsp, rsp + 65536)
        n = min(st[1] - rsp, self.max_stack)
        if st[1] - rsp > self.max_stack:
            self.stats["truncated"] += 1
        buf = self.mem.read(rsp, n)
        t.last_copy = (rsp, n)
        snap = (regs.rip, rsp, regs.rbp, getattr(regs, self.bc_reg), regs.orig_rax, regs.rax, buf,
                time.monotonic_ns(), t.blocked_key, _PTRACE, 0, ())
        if self.consistent:
            # walk now and resolve JSFunction -> SFI while the thread is still stopped
            toks, fns = self.decoder.prewalk(snap, self.mem)
            return snap, toks, fns
        return snap, None, None

    # ------------------------------------------------------------- detach
    def _detach_one(self, tid):
        """Stop (if needed) and detach one thread, delivering a pending signal."""
        try:
            ptrace.interrupt(tid)
        except ptrace.PtraceError:
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            st = ptrace.wait(tid, nohang=True)
            if st is None:
                time.sleep(0.0002)
                continue
            kind, sig = ptrace.classify(st)
            if kind == "exited":
                return
            try:
                ptrace.detach(tid, sig if kind == "signal" else 0)
                return
            except ptrace.PtraceError:
                return
        # not stopping (uninterruptible sleep): try a plain detach, which fails unless stopped
        try:
            ptrace.detach(tid, 0)
        except ptrace.PtraceError:
            self.stats["detach_errors"] += 1

    def _detach_all(self):
        for t in list(self.threads.values()):
            if t.ring is not None:
                self._close_ring(t)
            if t.seized:
                self._detach_one(t.tid)
                t.seized = False
        # reap leftover notifications of detached threads (none expected)
        self.threads.clear()

    # ------------------------------------------------------------- result
    @property
    def samples(self) -> int:
        """Samples decoded so far."""
        return self.decoder.stats["samples"] if self.decoder is not None else 0

    def profile(self, meta=None):
        """The Profile of everything sampled so far (call after the sampler thread ended): the decoder's
        frames, with the sampler's and the decoder's statistics in ``meta["walker"]``."""
        dec = self.decoder
        if dec is None:          # never set up: an empty profile
            dec = Decoder(pid=self.pid, space=None, mem=None, heap=None, unwinder=None, t0=self.t0)
        md = dict(meta or {})
        st = self.stats
        ds = dec.stats
        stopped = np.asarray(st["stopped_ns"], np.int64)
        md.setdefault("backend", "walker")
        md["period_ns"] = 1_000_000_000 // self.hz
        md["walker"] = {
            "samples": ds["samples"], "missed_periods": int(st["missed"]),
            "forwarded_signals": st["forwarded_signals"], "invalid_js_frames": ds["invalid_js"],
            "threads": sorted(set(dec.labels)),
            "stopped_us_p50": float(np.percentile(stopped, 50) / 1e3) if len(stopped) else None,
            "stopped_us_p90": float(np.percentile(stopped, 90) / 1e3) if len(stopped) else None,
            "stop_latency_us_p50": float(np.percentile(st["latency_ns"], 50) / 1e3) if st["latency_ns"] else None,
            "walk_us_mean": (ds["walk_ns"] / ds["samples"] / 1e3) if ds["samples"] else None,
            "moved_objects": self.heap.moved if self.heap else 0,
            "stack_truncated": st["truncated"], "signal_frames": self.unwinder.stats["signal_frames"]
            if self.unwinder else 0, "consistent": self.consistent,
            "v8_version": self.lay.v8_version, "realtime": st.get("realtime", False),
            "idle_reused": st.get("idle_reused", 0), "decode_errors": ds.get("decode_errors", 0),
            "inline_decodes": ds.get("inline_decodes", 0), "decode_lag_ms_max": ds.get("max_lag_ns", 0) / 1e6,
            "engine": "+".join(e for e, n in (("perf", ds["perf_samples"]), ("ptrace", ds["ptrace_samples"])) if n)
            or self.engine,
            "perf_samples": ds["perf_samples"], "ptrace_samples": ds["ptrace_samples"],
            "perf_dump_bytes": self.stack_dump if ds["perf_samples"] else 0, "perf_dump_grown": st.get("dump_grown", 0),
            "perf_dump_truncated": ds["dump_truncated"], "perf_lost": st.get("perf_lost", 0),
            "perf_bad_records": st.get("perf_bad", 0), "perf_throttled": st.get("perf_throttled", 0),
            "switched_to_ptrace": st.get("switched_to_ptrace", 0), "perf_error": self.perf_error,
        }
        warns = list(md.get("warnings", []))
        if st["detach_errors"]:
            warns.append(f"walker: {st['detach_errors']} thread(s) could not be detached cleanly")
        if st.get("perf_lost"):
            warns.append(f"walker: the kernel dropped {st['perf_lost']} sample(s) (ring buffer full)")
        if ds["invalid_js"]:
            warns.append(f"walker: {ds['invalid_js']} JS frame(s) could not be decoded (shown as '(unknown JS)')")
        md["warnings"] = warns
        return dec.profile(md)
