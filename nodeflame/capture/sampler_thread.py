"""V8's sampler thread in the target during an inspector capture: how long it waited for a CPU.

V8's CPU profiler samples from a thread of the target (``v8:ProfEvntProc``, one per profiled isolate,
started by ``Profiler.start``): each period it wakes, sends SIGPROF to the JS thread and records where
that thread is.  When every CPU is busy (a server under load; a container given fewer CPUs than it
has runnable threads) that thread first waits for a CPU, and gets one when another thread blocks or
is preempted -- at moments that follow the program's own cycle, so the samples lock onto phases of the
program instead of falling uniformly in its time.  Measured on an HTTP server and its load generator
on a 2-CPU machine (tests/workloads/http_phases.js, each phase timing itself): the inspector gave the
JSON.parse phase 9-14 % of the samples and the sort after it 37-44 %, where the server's own timing
said 24 % and 27 % and the walker (sampled by the kernel) 24-25 % and 26-27 %; ``perf record -e
signal:signal_deliver`` showed SIGPROF arriving in ``Builtins_ArrayTimSort`` 32 % of the times
against 13 % of the CPU samples.  Its sampler waited 22-44 us on average before each sample there
(61 us with three busy threads on two CPUs), 3-4 us with a CPU to spare.

Raising that thread's priority for the capture was tried and is not done: under SCHED_FIFO it ran on
time (waits under 1 us) and the samples locked onto the program the other way (JSON.parse 24-41 % over
19 captures at 500-1234 Hz, most of them 28-33: a strictly periodic sampler that preempts the load
generator sets the server's rhythm); at nice -20 the errors were 4-8 points.  So the capture reads the
thread's waits from the kernel (``/proc/PID/task/TID/schedstat``) and says when it was exposed; the
walker and perf backends sample from the kernel and are not.  A program with no cycle to lock onto is
warned about all the same (three busy threads on two CPUs, no requests: the inspector was within 1.5
points of the program's own timing): the wait says the capture was exposed, not that it went wrong.

Threads of that name that ran before the capture (another profiler's) are not counted.
"""
from __future__ import annotations

from . import procutil

THREAD_NAME = "v8:ProfEvntProc"
#: mean wait for a CPU before each sample (us) from which the capture warns (see above: 22-61 on a busy
#: machine, 3-4 with a CPU to spare)
LATE_US = 10.0


def mean_wait_us(wait_ns: int, runs: int):
    """Mean wait for a CPU per run (us, one decimal) from schedstat deltas; None without runs."""
    return round(wait_ns / runs / 1000, 1) if runs else None


def _task_stat(pid: int, tid: int):
    """(comm, starttime) of a thread, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.index("(") + 1:s.rindex(")")], int(s[s.rindex(")") + 2:].split()[19])


def sampler_tids(pid: int) -> dict:
    """{tid: starttime} of the target's V8 sampler threads now."""
    out = {}
    for tid, name in procutil.threads(pid).items():
        st = _task_stat(pid, tid) if name == THREAD_NAME else None
        if st is not None and st[0] == THREAD_NAME:
            out[tid] = st[1]
    return out


class SamplerThreads:
    """The sampler threads our ``Profiler.start`` calls created in ``pid`` and their waits for a CPU.

    ``adopt()`` after every Profiler.start (main thread and workers), ``read()`` now and then and
    before the last Profiler.stop (a thread ends with its profiler), ``report()`` for meta['sampler'],
    ``warning()`` when the waits were long."""

    def __init__(self, pid: int):
        self.pid = pid
        self.others = sampler_tids(pid)          # another profiler's, running before ours
        self.first: dict = {}                    # (tid, starttime) -> schedstat when adopted
        self.last: dict = {}                     # (tid, starttime) -> latest schedstat

    def adopt(self):
        """Take the sampler threads that appeared since the last call."""
        for tid, start in sampler_tids(self.pid).items():
            key = (tid, start)
            if self.others.get(tid) == start or key in self.first:
                continue
            st = procutil.schedstat(self.pid, tid)
            if st is not None:
                self.first[key] = self.last[key] = st

    def read(self):
        """Read the waits of the threads still running."""
        for key in self.first:
            tid, start = key
            if _task_stat(self.pid, tid) == (THREAD_NAME, start):
                self.last[key] = procutil.schedstat(self.pid, tid) or self.last[key]

    def report(self) -> dict:
        """threads, wakeups and the mean wait for a CPU before each (us), over the time they were watched."""
        wait = runs = 0
        for key, a in self.first.items():
            b = self.last[key]
            wait += b[1] - a[1]
            runs += b[2] - a[2]
        return {"threads": len(self.first), "wakeups": runs,
                "wait_us_mean": mean_wait_us(wait, runs)}

    def warning(self) -> str | None:
        r = self.report()
        if r["wait_us_mean"] is None or r["wakeups"] < 50 or r["wait_us_mean"] < LATE_US:
            return None
        return (f"V8's sampler thread in the target waited {r['wait_us_mean']:.0f} us on average for a CPU "
                f"before each of its {r['wakeups']} samples: the CPUs were busy, and a sampler that runs when "
                "a CPU frees up takes its samples in step with the program's own cycle (on a loaded HTTP "
                "server the inspector gave one phase 10-15 points less than its own timing); the walker and "
                "perf backends sample from the kernel and are not exposed to this")
