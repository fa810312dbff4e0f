"""Typed records the walker's sampler, engines and decoder pass between them.

* :class:`Snapshot` -- one copy of a thread's registers and stack, made by an engine on the sampler
  thread and decoded (perhaps later, on the decoder thread) by :class:`~.decoder.Decoder`.  It is a
  NamedTuple: immutable, and the decoder may still unpack it positionally.
* :class:`SamplerStats` -- what the sampler thread counts (the loop and both engines).  Written by the
  sampler thread only; read for ``meta["walker"]`` after it ended.
* :class:`DecodeStats` -- what decoding counts.  Fields say which thread writes them.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import NamedTuple

# Snapshot.source: where a snapshot came from
PTRACE = 0          # a ptrace stop: the live stack can still be read beyond the copy
PERF_USER = 1       # a perf_event dump taken in user mode: the dump is all there is
PERF_KERNEL = 2     # a perf_event dump taken in kernel mode: plus the kernel's call chain


class Snapshot(NamedTuple):
    """A thread's registers and stack at one sample."""
    rip: int
    rsp: int
    rbp: int
    bc_reg: int                 # V8's bytecode-offset register (InterpreterBytecodeOffsetRegister)
    orig_rax: int               # the system call the thread is in ((1 << 64) - 1: none)
    rax: int
    stack: bytes                # the stack from rsp up
    time_ns: int                # time.monotonic_ns() of the copy
    blocked: tuple | None       # (syscall nr, sp, pc) from /proc when it was blocked in a system call
    source: int                 # PTRACE, PERF_USER or PERF_KERNEL
    dump_size: int              # perf: the dump size asked for (a shorter dump ended at the stack's end)
    kernel_pcs: tuple           # perf, kernel mode: the kernel's call chain, innermost first


@dataclass
class SamplerStats:
    """Counts of the sampler thread (the loop, the ptrace and the perf engine)."""
    missed: int = 0                 # sampling periods skipped (the sampler woke up late)
    threads_seen: int = 0
    # ptrace engine
    forwarded_signals: int = 0
    group_stops: int = 0
    detach_errors: int = 0
    truncated: int = 0              # stacks longer than max_stack, copied in part
    idle_reused: int = 0            # samples of a thread still blocked where it was: its last stack again
    stopped_ns: array = field(default_factory=lambda: array("q"))   # per stop: how long the thread was held
    latency_ns: array = field(default_factory=lambda: array("q"))   # per stop: interrupt to stop
    realtime: "bool | str" = False  # the sampler thread's SCHED_RR: False, True or "stops"
    wait_ns: int = 0                # the sampler thread's time waiting for a CPU while ptrace rounds ran
    wait_runs: int = 0              # ... over this many wake-ups (its schedstat)
    realtime_from_ns: int = -1      # "stops" that went real-time for good (its waits were long): when
    wait_before_rt: tuple = ()      # (wait_ns, wait_runs) up to then
    # perf engine
    dump_grown: int = 0             # threads given the largest dump
    switched_to_ptrace: int = 0     # threads whose stack outgrew the largest dump
    perf_lost: int = 0              # records the kernel dropped (ring full)
    perf_throttled: int = 0
    perf_bad: int = 0               # records that could not be parsed


@dataclass
class DecodeStats:
    """Counts of decoding.  Written under the decoder's lock (by either thread): all but two fields;
    by the sampler thread only: inline_decodes; by the decoder thread only: max_lag_ns."""
    samples: int = 0
    walk_ns: int = 0
    invalid_js: int = 0             # JS frames that could not be decoded ('(unknown JS)')
    dump_truncated: int = 0         # perf dumps shorter than the stack
    perf_samples: int = 0
    ptrace_samples: int = 0
    decode_errors: int = 0          # samples dropped because decoding raised
    decode_error: str = ""          # the last such error
    inline_decodes: int = 0         # samples decoded on the sampler thread (the decoder lagged)
    max_lag_ns: int = 0             # the longest a queued sample waited for the decoder thread
    # JIT code (jitcode.CodeMap), under the lock
    inlined_frames: int = 0         # frames added for functions V8 inlined
    code_unknown: int = 0           # JIT frames whose code object was not found or not JS code
    inline_unresolved: int = 0      # optimized frames whose inlining tables could not be read
