"""The walker's ptrace engine: stop a thread, copy its registers and used stack, resume it.

A round interrupts every sampled thread at once (PTRACE_INTERRUPT), then takes each one as soon as it
has stopped: PTRACE_GETREGS, one read of its used stack (rsp up to the end of the stack mapping;
``pread`` on /proc/<pid>/mem, which from Python costs a fifth of a ctypes ``process_vm_readv`` for the
same bytes) and PTRACE_CONT -- about 10-20 us stopped per thread and sample.  No thread waits stopped
while another is handled.  The copies go to the :class:`~.decoder.Decoder`.

Signals that arrive while a thread is traced turn into signal-delivery stops; they are re-injected at
once (between samples :meth:`PtraceEngine.service` finds them within ~1 ms).

Threads: everything here runs on the **sampler thread** (``nodeflame-walker-<pid>``); ptrace requests
must come from the thread that seized the tracee.  The only call into another thread's data is
``Decoder.submit`` / ``Decoder.prewalk``, which take the decoder's lock as needed.
"""
from __future__ import annotations

import os
import time

from . import ptrace
from .records import PTRACE, SamplerStats, Snapshot


def wait_stop(tid, timeout_s, *, interrupt=True, pause=lambda: time.sleep(0.0002)):
    """PTRACE_INTERRUPT the seized thread ``tid`` (unless ``interrupt=False``: a stop is already due) and
    wait, polling and calling ``pause`` in between, up to ``timeout_s`` for its next stop.

    Returns the wait status, or None when no stop came in time.  Raises :class:`ptrace.PtraceError` when
    the thread cannot be interrupted (it is gone, or not ours)."""
    if interrupt:
        ptrace.interrupt(tid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        st = ptrace.wait(tid, nohang=True)
        if st is not None:
            return st
        pause()
    return None


class PtraceEngine:
    """Samples seized threads by stopping them (see the module docstring).  Sampler thread only."""

    def __init__(self, pid, *, stats: SamplerStats, hz, max_stack, consistent, realtime, bc_reg):
        self.pid = pid
        self.stats = stats
        self.hz = hz
        self.max_stack = max_stack
        self.consistent = consistent
        self.realtime = realtime
        self.bc_reg = bc_reg
        self.regs = ptrace.Regs()
        self.mem = self.space = self.decoder = None     # set by attach()
        self._rr_stops = False
        self.last_signal_ns = 0          # when a signal was last forwarded (the loop polls faster then)

    def attach(self, mem, space, decoder):
        """The target's memory and address space, and where the copies go (set up by the sampler)."""
        self.mem, self.space, self.decoder = mem, space, decoder

    # ------------------------------------------------------------- scheduling of the sampler thread
    def init_scheduling(self):
        """Run this (sampler) thread under SCHED_RR when allowed: on a busy machine a normal thread wakes
        up milliseconds late, so samples bunch up and miss whole stretches of the target's time.  It
        sleeps between samples and does bounded work per sample, so it cannot monopolise a CPU."""
        self.stats.realtime = False
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
            self.stats.realtime = "stops"
        else:
            self.stats.realtime = True

    def go_realtime(self) -> bool:
        """From "stops" to SCHED_RR for the rest of the capture (the sampler's waits for a CPU were long:
        see sampler.py); False when not allowed."""
        if not self._rr_stops:
            return False
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        except OSError:
            return False
        self._rr_stops = False
        self.stats.realtime = True
        return True

    def _boost(self, on: bool):
        """SCHED_RR while target threads are stopped (realtime="stops"), normal otherwise."""
        try:
            if on:
                os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
            else:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        except OSError:
            self._rr_stops = False

    # ------------------------------------------------------------- seize, detach
    def seize(self, t):
        """PTRACE_SEIZE thread record ``t`` (the process is never group-stopped, no SIGSTOP is sent); raises
        :class:`ptrace.PtraceError` when it cannot."""
        ptrace.seize(t.tid)
        t.seized = True

    def detach_one(self, tid):
        """Stop (if needed) and detach one thread, delivering a pending signal."""
        try:
            st = wait_stop(tid, 2.0)
        except ptrace.PtraceError:
            return
        if st is not None:
            kind, sig = ptrace.classify(st)
            if kind == "exited":
                return
            try:
                ptrace.detach(tid, sig if kind == "signal" else 0)
            except ptrace.PtraceError:
                pass
            return
        # not stopping (uninterruptible sleep): try a plain detach, which fails unless stopped
        try:
            ptrace.detach(tid, 0)
        except ptrace.PtraceError:
            self.stats.detach_errors += 1

    def stop_and_regs(self, tid):
        """Interrupt a seized thread, read (rip, rsp), resume.  None when it did not stop within 1 s."""
        deadline = time.monotonic() + 1.0
        try:
            st = wait_stop(tid, 1.0)
        except ptrace.PtraceError:
            return None
        got = None
        while st is not None:
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
                self.stats.forwarded_signals += 1
                return got
            if kind == "group":
                ptrace.listen(tid)
                return got
            ptrace.cont(tid, 0)
            st = wait_stop(tid, deadline - time.monotonic(), interrupt=False)
        return got

    # ------------------------------------------------------------- between samples
    def service(self, threads):
        """Reap stops that happened between samples: forward signals, keep group stops."""
        for t in threads:
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
                self.stats.forwarded_signals += 1
                self.last_signal_ns = time.monotonic_ns()
            elif kind == "group":
                ptrace.listen(t.tid)
                t.group_stopped = True
                self.stats.group_stops += 1
            else:
                if t.group_stopped and kind == "interrupt":
                    t.group_stopped = False  # resumed by SIGCONT while listening
                ptrace.cont(t.tid, 0)
        except ptrace.PtraceError:
            t.gone = not os.path.exists(f"/proc/{self.pid}/task/{t.tid}")

    # ------------------------------------------------------------- a sample
    def sample_round(self, threads):
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
                self.stats.idle_reused += 1
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
                    # it; the pending interrupt stop that follows is resumed by service()
                    ptrace.cont(tid, sig)
                    self.stats.forwarded_signals += 1
                    self.last_signal_ns = time.monotonic_ns()
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
        self.stats.stopped_ns.append(now - t_stopped)
        if t_int:
            self.stats.latency_ns.append(t_stopped - t_int)
        return sampled

    def _resume_pending(self, t, budget_s=0.0003):
        """After delivering a signal the pending interrupt stops the thread again at once (at the handler's
        entry): resume it without waiting for the next service round."""
        st = wait_stop(t.tid, budget_s, interrupt=False, pause=os.sched_yield)
        if st is not None:
            self._handle_stray(t, st)

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
            self.stats.truncated += 1
        buf = self.mem.read(rsp, n)
        t.last_copy = (rsp, n)
        snap = Snapshot(regs.rip, rsp, regs.rbp, getattr(regs, self.bc_reg), regs.orig_rax, regs.rax, buf,
                        time.monotonic_ns(), t.blocked_key, PTRACE, 0, ())
        if self.consistent:
            # walk now and resolve JSFunction -> SFI while the thread is still stopped
            toks, fns = self.decoder.prewalk(snap, self.mem)
            return snap, toks, fns
        return snap, None, None
