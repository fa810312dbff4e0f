"""The walker's perf engine: the kernel samples each thread into a ring; we only drain the rings.

A cpu-clock perf_event per thread (:mod:`.perfevent`) samples it at every period of its CPU time and
writes its user registers and a ``stack_dump``-byte dump of its stack into the thread's ring buffer.
Nothing is stopped or traced.

A ring's period is drawn within +-25 % of 1/hz when it opens, and again every 16 or more samples (when the
ring is read just after one; the ptrace engine jitters its rounds alike).  A fixed period of 1 ms runs
in step with the kernel's 1000 Hz tick, and a program whose cycle the tick paces (a server whose client
gets a CPU at the tick) is then sampled at the same points of that cycle.  Measured on
tests/workloads/http_phases.js with the server and its client on two CPUs, the largest error of a
phase's share against the server's own CPU timing, 16 captures each: at a fixed 1 ms 0.8-5.6 points
(mean 2.3-3.4 per run of 5-6; JSON.parse short in most), jittered 0.2-2.1 (mean 1.0-1.3).  Beside
the walker, ``perf record -c 1000000`` saw what it saw; ``-c 1013000`` saw more of JSON.parse.

The engine reads the rings (waking when one is half full, its
watermark) and hands each record to the :class:`~.decoder.Decoder` as a snapshot.  A dump whose walk
reaches past its end (a stack deeper than the dump) marks its thread ``outgrown``: the sampler then
calls :meth:`PerfEngine.grow`, which gives the thread the largest dump (64 KiB) or says it must move to
the ptrace engine.

Threads: everything here runs on the **sampler thread** (``nodeflame-walker-<pid>``).  The decoder
thread only sets ``t.outgrown`` on a thread record (a flag this engine's caller reads).
"""
from __future__ import annotations

import random
import select
import time

from . import perfevent
from .records import PERF_KERNEL, PERF_USER, SamplerStats, Snapshot

_NO_SYSCALL = (1 << 64) - 1          # orig_rax of a sample not taken inside a system call


class PerfEngine:
    """The perf_event rings of the sampled threads (see the module docstring).  Sampler thread only."""

    def __init__(self, pid, *, stats: SamplerStats, hz, stack_dump, ring_pages, bc_reg, required):
        self.pid = pid
        self.stats = stats
        self.hz = hz
        self.stack_dump = stack_dump
        self.ring_pages = ring_pages
        self.required = required             # engine="perf": the main thread must be sampled so
        self.error = None                    # why the last ring could not be opened
        self.decoder = None                  # set by attach()
        self._poll = None                    # ({ring fd: tid}, select.poll over them)
        self.period = max(10_000, 1_000_000_000 // max(1, int(hz)))
        self._rng = random.Random()
        pos = perfevent.REG_POS
        self._pos = (pos["rip"], pos["rsp"], pos["rbp"], pos[bc_reg])

    def attach(self, decoder):
        """Where the snapshots go (set up by the sampler)."""
        self.decoder = decoder

    def open_ring(self, t, dump=None) -> bool:
        """Have the kernel sample thread ``t`` with ``dump``-byte stack dumps (True), else say why in
        ``error``.  With engine="perf" the main thread must be sampled so (PermissionError)."""
        ring = None
        try:
            ring = perfevent.open_ring(t.tid, self.hz, dump or self.stack_dump, self.ring_pages)
            ring.enable()
            self._jitter(ring)
        except perfevent.PerfEventError as e:
            if ring is not None:
                ring.close()
            self.error = str(e)
            if self.required and t.tid == self.pid and dump is None:
                raise PermissionError(e.errno, f"walker engine perf: {e}") from None
            return False
        t.ring = ring
        return True

    def grow(self, t) -> bool:
        """A thread whose stack outgrew its dump: read what its ring still holds, close it, and give it the
        largest dump the kernel allows (True); False when it had that already or the kernel refused (the
        caller samples it with ptrace from now on)."""
        self.read_ring(t)
        dump = t.ring.stack_dump
        self.close_ring(t)
        t.outgrown = False
        if dump < perfevent.MAX_DUMP and self.open_ring(t, perfevent.MAX_DUMP):
            self.stats.dump_grown += 1
            return True
        return False

    def read_ring(self, t):
        """Hand every record waiting in ``t``'s ring to the decoder."""
        ring = t.ring
        if ring is None or not ring.pending():
            return
        rip, rsp, rbp, bc = self._pos
        dump = ring.stack_dump
        submit = self.decoder.submit
        now = time.monotonic_ns()
        records = ring.read()
        # a new period restarts the one under way, whose elapsed part is lost: so only just after a
        # sample, and not before 16 more (the loop reads the rings every round when ptrace threads set
        # its pace; at the end of its 10 ms poll otherwise): 16-40 samples a period, <1 % lost
        ring.since_draw += len(records)
        if records and ring.jitter and ring.since_draw >= 16 and now - records[-1][0] < self.period // 4:
            self._jitter(ring)
        for when, kmode, regs, stack, kpcs in records:
            snap = Snapshot(regs[rip], regs[rsp], regs[rbp], regs[bc], _NO_SYSCALL, 0, stack, when, None,
                            PERF_KERNEL if kmode else PERF_USER, dump, kpcs)
            submit(t, (snap, None, None))

    def _jitter(self, ring):
        p = self.period
        ring.jitter = ring.set_period(p + self._rng.randint(-p // 4, p // 4))
        ring.since_draw = 0

    def read_rings(self, threads):
        for t in threads:
            if t.ring is not None:
                self.read_ring(t)

    def close_ring(self, t):
        """Close ``t``'s ring, counting what the kernel lost, throttled or wrote unreadably."""
        r, t.ring = t.ring, None
        st = self.stats
        st.perf_lost += r.lost
        st.perf_throttled += r.throttled
        st.perf_bad += r.bad
        try:
            r.close()
        except OSError:
            pass

    def stop_and_read(self, threads):
        """At the end: disable every ring, then read what they hold (what cannot be read is lost)."""
        rings = [t for t in threads if t.ring is not None]
        for t in rings:
            t.ring.disable()
        for t in rings:
            try:
                self.read_ring(t)
            except Exception:  # noqa: BLE001 - what could not be read is lost, the detach must go on
                pass

    def wait(self, threads: dict, seconds):
        """Sleep up to ``seconds``, waking early when a ring of ``threads`` ({tid: record}) is half full
        (its watermark).  A thread whose event hangs up has exited: its ring is read and it is ``gone``."""
        byfd = {t.ring.fd: t.tid for t in threads.values() if t.ring is not None}
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
                t = threads.get(byfd[fd])
                if t is not None:
                    self.read_ring(t)
                    t.gone = True        # the thread exited: its event sees no more time
