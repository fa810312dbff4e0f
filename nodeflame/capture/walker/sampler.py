"""The sampling loop: registers and stack of every JS thread, ``hz`` times a second, decoded later.

Two engines take the copies (``engine=``).  With ``"perf"`` (what ``"auto"``
takes when the kernel lets us open a perf_event on the thread) the kernel
samples each thread at every period of its CPU time and writes registers and a
``stack_dump``-byte stack dump to a ring buffer; this loop only drains the
rings (:mod:`.perf_engine`) and the thread is never stopped.  A dump whose
walk reaches past its end (a stack deeper than the dump) ends in a
``(truncated stack)`` root; its thread then gets the largest dump (64 KiB)
and, if that is still too small, moves to the ptrace engine.

With ``"ptrace"``, each round stops every sampled thread for a copy of its
registers and used stack and resumes it at once (:mod:`.ptrace_engine`).

Threads.  :class:`Sampler` runs on the **sampler thread** (``run()``, started
by the backend as ``nodeflame-walker-<pid>``), and so do both engines: thread
discovery, the loop, ring draining, ptrace stops, detaching.  ``stop()`` may be
called from any thread (it sets an Event).  The :class:`~.decoder.Decoder`
runs its own **decoder thread** (``nodeflame-decode-<pid>``); the sampler
thread hands it samples with ``Decoder.submit`` (see :mod:`.decoder` for its
lock and for the inline decoding when it lags).  ``profile()`` is called by
the session after ``run()`` ended.

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

When every CPU is busy, a sampler thread that competes like any other waits
for a CPU after each wake-up and gets one when a thread of the target (or
anything else) blocks or is preempted: its ptrace samples then fall at those
points of the program's cycle, not evenly in time -- the inspector's sampler
thread has the same fault (:mod:`..sampler_thread`).  Measured on
tests/workloads/http_phases.js on two busy CPUs: 44-75 us of waiting per
wake-up and render +12 to +17 points over the server's own wall-clock timing;
with a CPU to spare, 6 us and within 2 points.  So the loop reads its own
waits (``/proc/self/task/TID/schedstat``) every 64 rounds, and under
``"stops"`` a mean of ``LATE_US`` or more makes it SCHED_RR for the rest of the
capture (``meta["walker"]["realtime_from_s"]``; there, after ~70 ms, within
2 points).  Not while it forwards signals to the target (another profiler's
SIGPROF: its loop would then poll every 0.25 ms in real time; beside the
inspector on a loaded machine such captures were off by 10-20 points).
Under ``False``, where SCHED_RR is not allowed, or with signals, the capture
warns instead.  The perf engine is not exposed: the kernel takes its samples.

Every path out of :meth:`Sampler.run` detaches from every thread.
"""
from __future__ import annotations

import mmap
import os
import random
import sys
import threading
import time

import numpy as np

from . import ptrace
from .decoder import Decoder
from .heap import V8Heap
from .memory import Memory
from .perf_engine import PerfEngine
from .ptrace_engine import PtraceEngine
from .records import SamplerStats
from .. import procutil
from ..sampler_thread import LATE_US, mean_wait_us
from ..native.symbols import AddressSpace, kallsyms
from .unwind import Unwinder

_REG_NAMES = {0: "rax", 1: "rcx", 2: "rdx", 3: "rbx", 4: "rsp", 5: "rbp", 6: "rsi", 7: "rdi", 8: "r8", 9: "r9",
              10: "r10", 11: "r11", 12: "r12", 13: "r13", 14: "r14", 15: "r15"}
WORKER_RUN = "_ZN4node6worker6Worker3RunEv"


class _Thread:
    """One sampled thread of the target.  Owned by the sampler thread; the decoder thread writes
    ``samples``, ``idle`` and ``outgrown`` (see decoder.py)."""
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
    """Samples the JavaScript threads of ``pid`` at ``hz`` until ``stop()`` or ``duration``.

    Which thread runs what: ``run()`` is the sampler thread's body, and every other method here (and of
    ``self.ptrace``, ``self.perf``) runs on that thread, except ``stop()`` (any thread) and ``profile()`` /
    ``samples`` (the caller's thread, after ``run()`` ended).  ``self.decoder`` runs the decoder thread.
    ``self.stats`` is written by the sampler thread only."""

    def __init__(self, pid: int, lay, *, hz: int = 1000, threads: str = "all", duration: float | None = None,
                 max_stack: int = 2 << 20, consistent: bool = False, rescan_s: float = 0.5,
                 realtime: "bool | str" = "stops", engine: str = "auto", stack_dump: int = 32768,
                 ring_kb: int = 4096, max_lag_ns: int = 50_000_000, max_queue_bytes: int = 256 << 20):
        if engine not in ("auto", "perf", "ptrace"):
            raise ValueError(f'engine must be "auto", "perf" or "ptrace", got {engine!r}')
        self.pid = pid
        self.engine = "ptrace" if consistent else engine
        self.stack_dump = int(stack_dump)
        self.lay = lay
        self.hz = max(1, int(hz))
        self.threads_mode = threads
        self.duration = duration
        self.max_stack = max_stack
        self.consistent = consistent
        self.rescan_s = rescan_s
        self.realtime = realtime
        self.decoder: Decoder | None = None   # made by _setup; see decoder.py for its two threads
        self.max_queue_bytes = max_queue_bytes
        self.max_lag_ns = max_lag_ns
        self._stop = threading.Event()
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.threads: dict[int, _Thread] = {}
        self.known: dict[int, str] = {}      # tid -> 'main' | 'worker' | 'other'
        self.n_workers = 0
        self.stats = SamplerStats()          # the sampler thread's counts (engines included)
        self.t0 = 0
        self.exited = False
        self.mem = None
        self.space = None
        self.heap = None
        self.unwinder = None
        self._last_refresh = 0.0
        self._me = None                       # (pid, tid) of the sampler thread, set as its loop starts
        self._sched = None                    # its schedstat at the last _watch_waits
        regcode = lay.get("InterpreterBytecodeOffsetRegister", 9)
        self.bc_reg = _REG_NAMES.get(regcode, "r9")
        pages = max(8, int(ring_kb) * 1024 // mmap.PAGESIZE)
        self.perf = PerfEngine(pid, stats=self.stats, hz=self.hz, stack_dump=self.stack_dump,
                               ring_pages=1 << (pages.bit_length() - 1),   # a power of two, as the kernel wants
                               bc_reg=self.bc_reg, required=self.engine == "perf")
        self.ptrace = PtraceEngine(pid, stats=self.stats, hz=self.hz, max_stack=max_stack, consistent=consistent,
                                   realtime=realtime, bc_reg=self.bc_reg)

    @property
    def perf_error(self):
        """Why the perf engine could not sample a thread (None: it could, or was not asked to)."""
        return self.perf.error

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
            self._setup()
            self.ptrace.init_scheduling()
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
        self.perf.stop_and_read(list(self.threads.values()))
        if self.decoder is None:
            return
        end = time.monotonic() + timeout
        while self.decoder.busy():
            if time.monotonic() > end:
                break
            try:
                self.ptrace.service(list(self.threads.values()))
            except Exception:  # noqa: BLE001
                break
            time.sleep(0.001)

    def _setup(self):
        self.mem = Memory(self.pid)
        self.space = AddressSpace(self.pid)
        self.heap = V8Heap(self.mem, self.lay)
        self.unwinder = Unwinder(self.space, self.heap, self.lay)
        wr = self.space.node_elf.symbol_range(WORKER_RUN) if self.space.node_elf is not None else None
        self.worker_run = wr
        # names for the kernel call chains of perf samples: read now (0.1 s), not by the decoder in
        # the middle of the capture, where the wait makes the heap reads of queued samples late
        kernel_names = kallsyms() if self.engine != "ptrace" else None
        # parse libc's .eh_frame now rather than in the middle of the first idle sample
        from ..native.cfi import cfi_for
        for r in self.space.regions:
            if r.exec and r.path and os.path.basename(r.path).startswith("libc.so"):
                cfi_for(r.path)
                break
        self.t0 = time.monotonic_ns()
        self.decoder = Decoder(pid=self.pid, space=self.space, mem=self.mem, heap=self.heap, unwinder=self.unwinder,
                               t0=self.t0, kernel_names=kernel_names, max_lag_ns=self.max_lag_ns,
                               max_queue_bytes=self.max_queue_bytes)
        self.perf.attach(self.decoder)
        self.ptrace.attach(self.mem, self.space, self.decoder)

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
                names = procutil.threads(self.pid)   # its name, if node gave it one (node >= 24)
                t.label = procutil.worker_label([names.get(tid, "")], self.n_workers,
                                                {x.label for x in self.threads.values()}, {names.get(self.pid, "")})
            if self.engine != "ptrace" and self.perf.open_ring(t):
                self.threads[tid] = t
                self.stats.threads_seen += 1
                continue
            try:
                self.ptrace.seize(t)
            except ptrace.PtraceError as e:
                if tid == self.pid and first:
                    if procutil.gone_within(self.pid, 0.5):
                        # ptrace says EPERM (or ESRCH) to a process that is exiting: not a permission matter
                        raise ProcessLookupError(f"process {self.pid} exited as the walker attached to it "
                                                 f"(ptrace: {os.strerror(e.errno)})") from None
                    raise PermissionError(e.errno, f"cannot ptrace pid {self.pid}: {os.strerror(e.errno)}") from None
                continue
            self.threads[tid] = t
            self.stats.threads_seen += 1

    def _outgrown(self, t):
        """A thread whose stack outgrew its perf dump: a bigger dump, or, when it had the largest already,
        the ptrace engine from now on (a full stack copy while it is stopped)."""
        if self.perf.grow(t):
            return
        try:
            self.ptrace.seize(t)
            self.stats.switched_to_ptrace += 1
        except ptrace.PtraceError:
            t.gone = True

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
                regs = self.ptrace.stop_and_regs(tid)
                sp = regs[1] if regs else None
            finally:
                self.ptrace.detach_one(tid)
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

    # ------------------------------------------------------------- the loop
    def _loop(self):
        period = 1_000_000_000 // self.hz
        next_t = time.monotonic_ns()
        next_scan = time.monotonic() + self.rescan_s
        end = None if self.duration is None else self.t0 + int(self.duration * 1e9)
        rounds = 0
        self._me = (os.getpid(), threading.get_native_id())
        self._sched = procutil.schedstat(*self._me)
        while not self._stop.is_set() and not self.exited:
            # threads the kernel samples (perf rings) need no round of ours: only the ptrace ones do
            stoppable = [t for t in self.threads.values() if t.ring is None and not t.gone and not t.group_stopped]
            while True:
                self.ptrace.service(list(self.threads.values()))
                self.perf.read_rings(self.threads.values())
                now = time.monotonic_ns()
                if self._stop.is_set() or (end is not None and now >= end):
                    break
                if not stoppable:
                    if time.monotonic() >= next_scan or any((t.outgrown and t.ring is not None) or t.gone
                                                                for t in self.threads.values()):
                        break
                    wait = 0.01 if end is None else min(0.01, (end - now) / 1e9)
                    self.perf.wait(self.threads, wait)
                    continue
                rem = next_t - now
                if rem <= 0:
                    break
                # between samples, stops caused by signals are looked for every 0.25 ms while signals
                # are arriving (a thread waits stopped until its signal is forwarded: another profiler's
                # SIGPROF every ms must not stall it), else every 4 ms: each wake-up of this real-time
                # thread may preempt the target on its CPU
                poll = 250_000 if now - self.ptrace.last_signal_ns < 1_000_000_000 else 4_000_000
                self.perf.wait(self.threads, min(rem, poll) / 1e9)
            if self._stop.is_set():
                break
            if end is not None and now >= end:
                break
            if stoppable:
                self.ptrace.sample_round(stoppable)
                rounds += 1
                if rounds % 64 == 0:
                    self._watch_waits()
            for t in [t for t in self.threads.values() if t.outgrown and t.ring is not None and not t.gone]:
                self._outgrown(t)
            for tid in [tid for tid, t in self.threads.items() if t.gone]:
                t = self.threads.pop(tid)
                if t.ring is not None:
                    self.perf.read_ring(t)
                    self.perf.close_ring(t)
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
                        self.stats.missed += (now - next_t) // period
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

    def _watch_waits(self):
        """Add this thread's waits for a CPU since the last call (its schedstat) to the stats; under
        realtime="stops", long waits make it real-time for the rest of the capture."""
        cur, last = procutil.schedstat(*self._me), self._sched
        self._sched = cur
        if cur is None or last is None:
            return
        st = self.stats
        wait, runs = cur[1] - last[1], cur[2] - last[2]
        st.wait_ns += wait
        st.wait_runs += runs
        # not while signals are forwarded (another profiler's SIGPROF): a real-time loop polls for them
        # every 0.25 ms, and captures beside the inspector on a loaded machine went wrong by 10-20 points
        signals = time.monotonic_ns() - self.ptrace.last_signal_ns < 1_000_000_000
        if runs >= 32 and wait / runs >= LATE_US * 1e3 and not signals and self.ptrace.go_realtime():
            st.realtime_from_ns = time.monotonic_ns() - self.t0
            st.wait_before_rt = (st.wait_ns, st.wait_runs)
            st.wait_ns = st.wait_runs = 0

    # ------------------------------------------------------------- detach
    def _detach_all(self):
        for t in list(self.threads.values()):
            if t.ring is not None:
                self.perf.close_ring(t)
            if t.seized:
                self.ptrace.detach_one(t.tid)
                t.seized = False
        # reap leftover notifications of detached threads (none expected)
        self.threads.clear()

    # ------------------------------------------------------------- result
    @property
    def samples(self) -> int:
        """Samples decoded so far."""
        return self.decoder.stats.samples if self.decoder is not None else 0

    def profile(self, meta=None):
        """The Profile of everything sampled so far (call after the sampler thread ended): the decoder's
        frames, with the sampler's and the decoder's statistics in ``meta["walker"]``."""
        dec = self.decoder
        if dec is None:
            raise RuntimeError(f"the walker never started on pid {self.pid}: nothing was sampled")
        md = dict(meta or {})
        st = self.stats
        ds = dec.stats
        stopped = np.asarray(st.stopped_ns, np.int64)
        md.setdefault("backend", "walker")
        md["period_ns"] = 1_000_000_000 // self.hz
        md["walker"] = {
            "samples": ds.samples, "missed_periods": int(st.missed),
            "forwarded_signals": st.forwarded_signals, "invalid_js_frames": ds.invalid_js,
            "threads": sorted(dec.thread_labels),
            "stopped_us_p50": float(np.percentile(stopped, 50) / 1e3) if len(stopped) else None,
            "stopped_us_p90": float(np.percentile(stopped, 90) / 1e3) if len(stopped) else None,
            "stop_latency_us_p50": float(np.percentile(np.asarray(st.latency_ns, np.int64), 50) / 1e3)
            if len(st.latency_ns) else None,
            "walk_us_mean": (ds.walk_ns / ds.samples / 1e3) if ds.samples else None,
            "moved_objects": self.heap.moved if self.heap else 0,
            "stack_truncated": st.truncated, "signal_frames": self.unwinder.stats["signal_frames"]
            if self.unwinder else 0, "partial_frames": self.unwinder.stats["partial_frames"] if self.unwinder else 0,
            "consistent": self.consistent,
            "v8_version": self.lay.v8_version, "realtime": st.realtime,
            "sampler_wait_us_mean": mean_wait_us(st.wait_ns, st.wait_runs),
            "realtime_from_s": round(st.realtime_from_ns / 1e9, 3) if st.realtime_from_ns >= 0 else None,
            "sampler_wait_us_before_realtime": mean_wait_us(*st.wait_before_rt) if st.wait_before_rt else None,
            "idle_reused": st.idle_reused, "decode_errors": ds.decode_errors,
            "inline_decodes": ds.inline_decodes, "decode_lag_ms_max": ds.max_lag_ns / 1e6,
            "engine": "+".join(e for e, n in (("perf", ds.perf_samples), ("ptrace", ds.ptrace_samples)) if n)
            or self.engine,
            "perf_samples": ds.perf_samples, "ptrace_samples": ds.ptrace_samples,
            "perf_dump_bytes": self.stack_dump if ds.perf_samples else 0, "perf_dump_grown": st.dump_grown,
            "perf_dump_truncated": ds.dump_truncated, "perf_lost": st.perf_lost,
            "perf_bad_records": st.perf_bad, "perf_throttled": st.perf_throttled,
            "switched_to_ptrace": st.switched_to_ptrace, "perf_error": self.perf_error,
        }
        warns = list(md.get("warnings", []))
        if st.detach_errors:
            warns.append(f"walker: {st.detach_errors} thread(s) could not be detached cleanly")
        if st.perf_lost:
            warns.append(f"walker: the kernel dropped {st.perf_lost} sample(s) (ring buffer full)")
        if ds.invalid_js:
            warns.append(f"walker: {ds.invalid_js} JS frame(s) could not be decoded (shown as '(unknown JS)')")
        wait = mean_wait_us(st.wait_ns, st.wait_runs)
        if ds.ptrace_samples >= 100 and wait is not None and wait >= LATE_US:
            warns.append(f"walker: the sampler waited {wait:.0f} us for a CPU before each of its ptrace samples "
                         "(every CPU busy), so they fell where the target's threads blocked or were preempted "
                         "rather than evenly in time and the shares may be skewed; realtime=True (as root or "
                         "with CAP_SYS_NICE) or the perf engine keeps them on time")
        md["warnings"] = warns
        return dec.profile(md)

