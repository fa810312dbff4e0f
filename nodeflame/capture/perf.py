"""The ``perf`` backend: ``perf record -g`` plus the ``/tmp/perf-<pid>.map`` node writes.

How a capture of a live pid goes:

1. Checks that cost the target nothing (``available``): perf is installed and
   runs, we may open perf events (root, CAP_PERFMON/CAP_SYS_ADMIN, or
   ``/proc/sys/kernel/perf_event_paranoid`` <= 2), and the target names its
   JIT code for perf: it was started with ``--perf-basic-prof`` (command line
   or ``NODE_OPTIONS``) or a fresh ``/tmp/perf-<pid>.map`` exists.
2. ``perf record -e cpu-clock -F <hz> -g -p <pid> -o <tmp>/perf.data
   -k CLOCK_MONOTONIC -D -1 --control fd:...``: perf starts with its events
   disabled; we send ``enable`` on its control pipe and ``start()`` returns
   when perf acknowledges, i.e. once samples are being taken.  perf runs in
   its own session (a terminal's Ctrl-C reaches only us) and gets SIGINT
   should the Python thread that started it die (``PR_SET_PDEATHSIG``), so
   it is never left running.  ``threads="main"`` records the main thread
   only (``-t <pid> --no-inherit``).  Without the privilege to sample the
   kernel (``perf_event_paranoid`` 2 and not root) the event is
   ``cpu-clock:u``: user-space frames only, and a warning says so.  A rate in
   step with the kernel's tick (1000, 500, 100 Hz...) is asked for 1 Hz lower
   (:func:`off_the_tick`).
3. ``stop()``: SIGINT, perf writes its file and exits; ``perf script -F
   comm,pid,tid,time,period,event,ip,sym,dso --ns`` reads it, with perf
   itself resolving JIT addresses through ``/tmp/perf-<pid>.map``; the text
   goes through the perf reader (:mod:`nodeflame.frames.readers.perf`).
   When the target exits mid-capture perf ends by itself and its file still
   holds every sample, so ``target_exited()`` is True.
4. Threads: the main thread (tid == pid) is ``main``; node worker threads
   (found by ``node::worker::Worker::Run`` on their stacks, or named
   ``WorkerThread`` by node >= 24) are named like the inspector backend names
   them: by the name node >= 24 gives their thread (``new Worker(f, {name})``,
   cut to 15 characters by the kernel), else ``worker 1``, ``worker 2``, ...
   in the order they were created (tid order); other threads (libuv's pool,
   V8's platform workers, ``DelayedTaskScheduler``...) keep their comm.
   ``samples.tid`` keeps the thread id, ``samples.period_ns`` perf's period;
   each sample weighs 1 (``meta['period_ns']`` is the sampling period).
   ``samples.time_ns`` is CLOCK_MONOTONIC (``-k CLOCK_MONOTONIC``): the clock
   of node's ``process.hrtime`` and of V8's cpuprofile timestamps.
5. ``close()`` ends perf if it still runs (SIGINT, then SIGTERM, SIGKILL) and
   deletes the temporary directory.

Limits: a function TurboFan or Maglev inlined into its caller has no code
object, so no perf-map entry: its samples go to the caller (the inspector
backend still names it).  Functions interpreted by Ignition are named only
with ``--interpreted-frames-native-stack``.  cpu-clock samples running
threads only: an idle process gives an empty profile.

``spawn()`` (``nodeflame.run``) starts ``node --perf-basic-prof
--interpreted-frames-native-stack --no-logfile-per-isolate --logfile=+ ...``
(the last two keep V8's log, which --perf-basic-prof opens, from leaving
``isolate-*-v8.log`` files in the working directory) behind a small ``/bin/sh`` gate that
waits on a pipe: perf attaches to the gate's pid, is enabled, and only then
the gate execs node (same pid), so the profile starts with node's first
instruction.  A command that is not node itself (``npm start``) gets the two
flags through ``NODE_OPTIONS`` instead.
"""
from __future__ import annotations

import errno
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd

from . import procutil
from .base import Backend, BackendUnavailable, CaptureError, CaptureOptions, Session, Target, TargetError
from ..frames.ops import select_samples, stacks_containing, with_meta, with_samples

PARANOID = "/proc/sys/kernel/perf_event_paranoid"
MAX_RATE = "/proc/sys/kernel/perf_event_max_sample_rate"
NODE_FLAGS = ("--perf-basic-prof", "--interpreted-frames-native-stack")
MAP_FLAGS = ("--perf-basic-prof", "--perf-basic-prof-only-functions")
# --perf-basic-prof also opens V8's log, isolate-0x...-<pid>-v8.log in the program's working directory (one
# per isolate); '+' makes it an anonymous temporary file instead (not allowed in NODE_OPTIONS)
QUIET_LOG = ("--no-logfile-per-isolate", "--logfile=+")
START_TIMEOUT = 15.0    # s for perf record to attach and acknowledge 'enable'
STOP_TIMEOUT = 20.0     # s for perf record to write its file after SIGINT
SCRIPT_TIMEOUT = 300.0  # s for perf script
WORKER_FUNCS = re.compile(r"^node::worker::Worker::Run\b")
WORKER_COMMS = ("WorkerThread",)
SCRIPT_FIELDS = "comm,pid,tid,time,period,event,ip,sym,dso"
# /bin/sh gate for spawn(): wait for 'go' on the fifo $1, then become the command (same pid)
GATE = 'IFS= read -r go < "$1" && [ "$go" = go ] || exit 125; shift; exec "$@"'

_CAP_SYS_ADMIN, _CAP_SYS_PTRACE, _CAP_PERFMON = 21, 19, 38


# --------------------------------------------------------------------- machine checks
def perf_path() -> str | None:
    """The perf executable on PATH (None when not installed)."""
    return shutil.which("perf")


_VERSION: dict = {}


def perf_version(path: str) -> tuple[str | None, str | None]:
    """(version string, None) or (None, why perf does not run)."""
    if path not in _VERSION:
        try:
            r = subprocess.run([path, "version"], capture_output=True, text=True, timeout=10)
            out = (r.stdout or "").strip()
            if r.returncode == 0 and out:
                m = re.search(r"perf version (\S+)", out)
                _VERSION[path] = (m.group(1) if m else out.splitlines()[0], None)
            else:
                _VERSION[path] = (None, _last_line(r.stderr or r.stdout) or f"exit status {r.returncode}")
        except (OSError, subprocess.SubprocessError) as e:
            _VERSION[path] = (None, str(e))
    return _VERSION[path]


def _version_tuple(v: str | None) -> tuple:
    m = re.match(r"(\d+)\.(\d+)", v or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _has_cap(bit: int) -> bool:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def paranoid() -> int | None:
    try:
        with open(PARANOID) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def privileged() -> bool:
    """May open any perf event (root, CAP_PERFMON or CAP_SYS_ADMIN)."""
    return os.geteuid() == 0 or _has_cap(_CAP_PERFMON) or _has_cap(_CAP_SYS_ADMIN)


def permission() -> str | None:
    """None if perf events may be opened on our own processes, else why not (with the fix)."""
    if privileged():
        return None
    level = paranoid()
    if level is None:
        if not os.path.exists(PARANOID):
            return (f"this kernel has no perf events ({PARANOID} is missing): use a kernel with "
                    "CONFIG_PERF_EVENTS, or the inspector backend")
        return None
    if level > 2:
        return (f"perf is not permitted: {PARANOID} is {level}, it must be 2 or lower "
                "(sudo sysctl kernel.perf_event_paranoid=2; 1 also records kernel frames), or run as root")
    return None


def kernel_allowed() -> bool:
    """May sample kernel stacks (paranoid <= 1, or privileged)."""
    if privileged():
        return True
    level = paranoid()
    return level is not None and level <= 1


def _start_time(pid: int) -> float | None:
    """The process's start time, seconds since the epoch (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])
        with open("/proc/stat") as fh:
            btime = next(int(ln.split()[1]) for ln in fh if ln.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def perf_map(pid: int) -> str | None:
    """Path of pid's fresh perf map (written by this process, not a stale one of an earlier pid)."""
    cands = [f"/tmp/perf-{pid}.map"]
    nspid = procutil.status(pid).get("NSpid", "").split()
    if len(nspid) > 1:  # in a pid namespace (container): node names the file by its own pid
        cands.append(f"/proc/{pid}/root/tmp/perf-{nspid[-1]}.map")
    started = _start_time(pid)
    for path in cands:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if started is None or st.st_mtime >= started - 2:
            return path
    return None


def _no_map_reason(pid: int) -> str:
    return (f"process {pid} was not started with --perf-basic-prof (and there is no /tmp/perf-{pid}.map), "
            "so perf cannot name its JavaScript frames: restart it as node --perf-basic-prof "
            "--interpreted-frames-native-stack ..., or use the inspector backend (backend='inspector'), "
            "which needs no restart")


def _last_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    # perf's own progress lines say nothing about what went wrong
    useful = [ln for ln in lines if not ln.startswith("[ perf record:") and ln not in ("Events enabled",
                                                                                       "Events disabled")]
    return (useful or lines or [""])[-1]


# --------------------------------------------------------------------- backend
class PerfBackend(Backend):
    name = "perf"
    summary = "perf record -g with node's /tmp/perf-<pid>.map (--perf-basic-prof); JS, native and kernel frames"
    needs = "perf (linux-perf), perf_event_paranoid <= 2 or root, node started with --perf-basic-prof"
    default_hz = 999

    def _machine(self) -> tuple[str | None, str | None]:
        """(perf path, None) or (None, why perf cannot run here)."""
        path = perf_path()
        if path is None:
            return None, "perf is not installed: apt-get install linux-perf"
        ver, why = perf_version(path)
        if ver is None:
            return None, f"perf does not run here ({why}): apt-get install linux-perf"
        why = permission()
        if why:
            return None, why
        return path, None

    def available(self, pid: int | None = None) -> str | None:
        path, why = self._machine()
        if why:
            return why
        if pid is None:
            return None
        from . import locks
        return locks.busy(pid, "perf") or _target_reason(pid)

    # ------------------------------------------------------------- live pid
    def start(self, target: Target, opts: CaptureOptions) -> Session:
        path, why = self._machine()
        if why:
            raise BackendUnavailable(why)
        why = _target_reason(target.pid)
        if why:
            raise TargetError(why) if not procutil.exists(target.pid) else BackendUnavailable(why)
        from . import locks
        # one perf capture of a process at a time: two perf records would each sample it (twice the cost)
        lock = locks.take(target.pid, "perf", fix="use the walker or inspector backend")
        try:
            s = PerfSession(self, target, opts, path)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        s.lock = lock
        try:
            s.launch(target.pid)
        except BaseException:
            s.close()
            raise
        return s

    # ------------------------------------------------------------- run()
    def spawn(self, argv, opts: CaptureOptions, **popen_kwargs):
        path, why = self._machine()
        if why:
            raise BackendUnavailable(why)
        argv = list(argv)
        if procutil.looks_like_node(argv[0]):
            given = procutil.node_flags(argv)
            add = [f for f in NODE_FLAGS if not procutil.has_flag(given, f)]
            if not procutil.has_flag(given, "--logfile", "--prof", "--log", "--logfile-per-isolate"):
                add += QUIET_LOG
            full = [argv[0], *add, *argv[1:]]
        else:
            env = dict(popen_kwargs.get("env") or os.environ)
            env["NODE_OPTIONS"] = " ".join(x for x in (env.get("NODE_OPTIONS", ""),) + NODE_FLAGS if x)
            popen_kwargs["env"] = env
            full = argv
        session = PerfSession(self, Target(pid=0), opts, path)
        fifo = os.path.join(session.tmpdir, "gate")
        proc = None
        try:
            os.mkfifo(fifo, 0o600)
            proc = subprocess.Popen(["/bin/sh", "-c", GATE, "nodeflame-perf", fifo, *full], **popen_kwargs)
            session.target = Target(pid=proc.pid, proc=proc)
            session.launch(proc.pid)
            _open_gate(fifo, proc)
            if procutil.looks_like_node(argv[0]):
                procutil.wait_until_node(proc.pid, timeout=10.0, proc=proc)
            else:
                _wait_exec(proc)
            target = procutil.describe(proc.pid)
            target.proc = proc
            session.target = target
            return proc, session
        except BaseException:
            session.close()
            if proc is not None:
                procutil.terminate(proc)
            raise

    def spawned_ended(self, prof, since: float):
        """node never removes the /tmp/perf-PID.map that --perf-basic-prof makes it write: spawn() started
        them, so the maps of its node processes (the command and, through NODE_OPTIONS, its children: the
        pids of the samples) are removed once perf script has read them and the processes have ended.  A
        map older than the command, or of a pid that runs again, is not ours and stays."""
        pids = {int(prof.meta.get("pid") or 0)}
        if "pid" in prof.samples:
            pids |= set(np.unique(prof.samples["pid"].to_numpy()).tolist())
        removed = []
        for pid in sorted(p for p in pids if p > 0):
            path = f"/tmp/perf-{pid}.map"
            try:
                if os.stat(path).st_mtime < since - 1 or procutil.exists(pid):
                    continue
                os.unlink(path)
            except OSError:
                continue
            removed.append(path)
        return with_meta(prof, perf_maps_removed=removed) if removed else prof


def off_the_tick(hz: int) -> int:
    """The rate perf is asked for: ``hz``, or ``hz - 1`` when its period is a whole number of the
    kernel's ticks or a tick a whole number of periods (1000 % hz == 0 or hz % 1000 == 0; the tick is
    1, 4 or 10 ms).  For cpu-clock the kernel turns ``-F`` into a fixed period, and a period in step
    with the tick samples a program whose cycle the tick paces at the same points of that cycle (the
    walker's perf engine measured up to 5.6 points of skew so, and jitters its period); 999 Hz drifts 1 us
    a sample against a 1 ms tick, as perf's own 99 / 999 Hz habit intends."""
    hz = int(hz)
    return hz - 1 if hz > 1 and (1000 % hz == 0 or hz % 1000 == 0) else hz


def _open_gate(fifo: str, proc, timeout: float = 10.0):
    """Tell the gate to exec the command: write 'go' into its fifo once it reads it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:  # ENXIO: the gate has not opened it yet
            if e.errno != errno.ENXIO:
                raise CaptureError(f"cannot start the command: {e}") from None
        if proc.poll() is not None:
            raise TargetError(f"the command exited with status {proc.returncode} before it could be profiled")
        if time.monotonic() > deadline:
            raise CaptureError(f"the command did not start within {timeout:g} s")
        time.sleep(0.005)
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


def _wait_exec(proc, timeout: float = 10.0):
    """Wait until the gate has exec'd the command (its comm is no longer the gate's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetError(f"the command exited with status {proc.returncode} before it could be profiled")
        if procutil.cmdline(proc.pid)[:1] != ["/bin/sh"]:
            return
        time.sleep(0.01)


def _target_reason(pid: int) -> str | None:
    if not procutil.exists(pid):
        return f"no process {pid}"
    if procutil.is_node(pid) is False:
        return f"process {procutil.describe_pid_briefly(pid)} is not a node process"
    owner = procutil.uid_of(pid)
    if owner is not None and owner != os.geteuid() and not privileged() and not _has_cap(_CAP_SYS_PTRACE):
        return (f"no permission to profile process {pid} (owned by uid {owner}): run nodeflame as that user "
                "or as root")
    flags = procutil.node_flags(procutil.cmdline(pid), procutil.environ(pid))
    if not procutil.has_flag(flags, *MAP_FLAGS) and perf_map(pid) is None:
        return _no_map_reason(pid)
    return None


def _pdeathsig_setter():
    """A preexec_fn that makes the child get SIGINT when the thread that started it dies."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError, ImportError):
        return None
    parent = os.getpid()

    def set_it():
        prctl(1, int(signal.SIGINT), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: stop at once
            os.kill(os.getpid(), signal.SIGINT)
    return set_it


def _supports_control(version: str | None) -> bool:
    """perf record --control fd:... and -D -1 (perf >= 5.10)."""
    return _version_tuple(version) >= (5, 10)


# --------------------------------------------------------------------- session
class PerfSession(Session):
    def __init__(self, backend, target, opts, perf: str):
        super().__init__(backend, target, opts)
        self.perf = perf
        self.version = perf_version(perf)[0]
        self.tmpdir = tempfile.mkdtemp(prefix="nodeflame-perf-")
        self.data = os.path.join(self.tmpdir, "perf.data")
        self.errpath = os.path.join(self.tmpdir, "record.err")
        self.proc: subprocess.Popen | None = None
        self.fds: list[int] = []
        self.ack = -1
        self.ctl = -1
        self.warnings: list[str] = []
        self.event = "cpu-clock"
        self.hz = opts.hz or backend.default_hz
        self.main_only = opts.threads == "main"
        self.closed = False
        self.stopped = False
        self.argv: list[str] = []
        self.lock = None                 # the perf capture lock of the pid (locks.take), released by close()

    # ------------------------------------------------------------- start
    def launch(self, pid: int):
        if not kernel_allowed():
            self.event = "cpu-clock:u"
            self.warnings.append(f"kernel frames not recorded: {PARANOID} is {paranoid()} (1 or lower, or root, "
                                 "records them)")
        try:
            with open(MAX_RATE) as fh:
                cap = int(fh.read())
            if self.hz > cap:
                self.warnings.append(f"perf caps the rate at {cap} Hz ({MAX_RATE}); asked for {self.hz} Hz")
        except (OSError, ValueError):
            pass
        argv = [self.perf, "record", "-e", self.event, "-F", str(off_the_tick(self.hz)), "-g"]
        argv += ["-t", str(pid), "--no-inherit"] if self.main_only else ["-p", str(pid)]
        argv += ["-o", self.data, "-k", "CLOCK_MONOTONIC", "--no-buildid", "--no-buildid-cache"]
        if _version_tuple(self.version) >= (5, 1):
            argv.append("--no-bpf-event")  # its side-band thread makes perf take ~1 s to stop
        control = _supports_control(self.version)
        pass_fds = ()
        if control:
            ctl_r, self.ctl = os.pipe()
            self.ack, ack_w = os.pipe()
            self.fds += [self.ctl, self.ack]
            argv += ["-D", "-1", f"--control=fd:{ctl_r},{ack_w}"]
            pass_fds = (ctl_r, ack_w)
        self.argv = argv
        err = open(self.errpath, "wb")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         pass_fds=pass_fds, start_new_session=True,
                                         preexec_fn=_pdeathsig_setter())
        except OSError as e:
            raise CaptureError(f"cannot run perf ({e}): apt-get install linux-perf") from None
        finally:
            err.close()
            for fd in pass_fds:
                os.close(fd)
        if control:
            self._enable()
        else:  # older perf: no acknowledgement; wait until it has written its header
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and not (os.path.exists(self.data) and os.path.getsize(self.data)):
                self._check_running(pid)
                time.sleep(0.02)
            time.sleep(0.1)

    def _enable(self):
        os.write(self.ctl, b"enable\n")
        deadline = time.monotonic() + START_TIMEOUT
        buf = b""
        while b"ack" not in buf:
            self._check_running(self.target.pid)
            left = deadline - time.monotonic()
            if left <= 0:
                line = self._stderr_line()
                raise CaptureError(f"perf record did not start sampling within {START_TIMEOUT:g} s"
                                   + (f": {line}" if line else ""))
            r, _, _ = select.select([self.ack], [], [], min(left, 0.1))
            if r:
                chunk = os.read(self.ack, 64)
                if not chunk:
                    self._check_running(self.target.pid, wait=1.0)
                    raise CaptureError("perf record closed its control pipe before it started sampling")
                buf += chunk

    def _stderr_line(self) -> str:
        try:
            with open(self.errpath, "rb") as fh:
                return _last_line(fh.read())
        except OSError:
            return ""

    def _stderr(self) -> str:
        try:
            with open(self.errpath, "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _check_running(self, pid: int, wait: float = 0.0):
        if self.proc is None:
            return
        try:
            self.proc.wait(wait) if wait else None
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            if not procutil.exists(pid):
                raise TargetError(f"process {pid} exited before perf could attach")
            err = self._stderr()
            line = _last_line(err)
            if re.search(r"perf_event_paranoid|ermission|not permitted|EACCES|EPERM", err):
                level = paranoid()
                raise CaptureError(f"perf record is not permitted to sample process {pid} ({line}): "
                                   f"{PARANOID} is {level if level is not None else '?'}; set it to 2 or lower "
                                   "(sudo sysctl kernel.perf_event_paranoid=2), or run as root; in a container, "
                                   "perf_event_open must also be allowed by its seccomp profile")
            raise CaptureError(f"perf record exited (status {rc}) before sampling: {line or 'no message'}")

    # ------------------------------------------------------------- while waiting
    def poll(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None and not self.stopped:
            if procutil.exists(self.target.pid):
                raise CaptureError(f"perf record exited early (status {self.proc.returncode}): "
                                   f"{self._stderr_line() or 'no message'}")
        return None

    def target_exited(self) -> bool:
        return True  # perf.data still holds every sample

    # ------------------------------------------------------------- stop
    def _end_perf(self) -> int | None:
        p = self.proc
        if p is None:
            return None
        if not procutil.interrupt(p, STOP_TIMEOUT, kill_timeout=3.0):
            self.warnings.append(f"perf record did not finish within {STOP_TIMEOUT:g} s of SIGINT")
        return p.returncode

    def stop(self):
        self.stopped = True
        rc = self._end_perf()
        rec_err = self._stderr()
        if not os.path.exists(self.data) or os.path.getsize(self.data) == 0:
            raise CaptureError(f"perf record wrote no data (status {rc}): {_last_line(rec_err) or 'no message'}")
        cmd = [self.perf, "script", "-i", self.data, "-F", SCRIPT_FIELDS, "--ns"]
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=SCRIPT_TIMEOUT,
                               start_new_session=True)
        except subprocess.TimeoutExpired:
            raise CaptureError(f"perf script took longer than {SCRIPT_TIMEOUT:g} s") from None
        except OSError as e:
            raise CaptureError(f"cannot run perf script: {e}") from None
        script_err = r.stderr.decode("utf-8", "replace")
        if r.returncode != 0 and not r.stdout.strip():
            raise CaptureError(f"perf script failed (status {r.returncode}): {_last_line(script_err)}")
        prof = self._read(r.stdout)
        lost = _lost(rec_err + "\n" + script_err)
        meta = {
            "perf_version": self.version,
            "perf_event": self.event,
            "perf_record": " ".join(self.argv[:1] + [a for a in self.argv[1:] if not a.startswith("--control")]),
            "perf_map": perf_map(self.target.pid) or f"/tmp/perf-{self.target.pid}.map",
        }
        meta.update(lost)
        warnings = list(self.warnings)
        if lost:
            what = {"perf_lost_chunks": "{} chunks of events", "perf_lost_samples": "{} samples",
                    "perf_lost_samples_percent": "{} % of the samples"}
            warnings.append("perf lost " + ", ".join(what[k].format(v) for k, v in lost.items())
                            + " (it could not keep up: try a lower hz)")
        opt = _optimized_share(prof)
        if opt > 0:
            warnings.append(f"{opt:.0%} of the samples run in optimized (TurboFan/Maglev) code, which perf maps "
                            "name by its outermost function only: functions V8 inlined into it are not shown "
                            "(the walker backend expands them)")
        if not procutil.has_flag(self.target.node_options, "--interpreted-frames-native-stack") \
                and self.target.node_options:
            warnings.append("the target was started without --interpreted-frames-native-stack: interpreted "
                            "functions show as Builtins_InterpreterEntryTrampoline")
        return with_meta(prof, warnings=warnings, **meta)

    def _read(self, text: bytes):
        from ..frames.readers.perf import read_perf
        from ..frames.build import FrameTable, build_profile
        from ..frames.errors import FormatError
        pid = self.target.pid
        if not text.strip():
            prof = build_profile(FrameTable(), np.zeros(1, np.int64), np.zeros(0, np.int64),
                                 meta={"source_format": "perf", "unit": "samples",
                                       "warnings": [f"perf recorded no samples: process {pid} used no CPU "
                                                    "during the capture (cpu-clock samples running threads only)"]})
            return with_samples(prof, prof.samples.assign(tid=np.zeros(0, np.int64)))
        import warnings as _w
        with _w.catch_warnings():
            _w.simplefilter("ignore")
            try:
                prof = read_perf(text, f"<perf pid {pid}>", event="all")
            except FormatError as e:
                raise CaptureError(f"cannot read perf script's output: {e}") from None
        return self._threads(prof)

    def _threads(self, prof):
        s = prof.samples.copy()
        pid = self.target.pid
        tid = s["tid"].to_numpy().astype(np.int64)
        if "pid" in s:  # children the target forked (inherit) are other processes: keep them apart
            spid = s["pid"].to_numpy().astype(np.int64)
        else:
            spid = np.full(len(s), pid, np.int64)
        comm = s["thread"].astype(str).to_numpy(object)
        # worker threads: Worker::Run on some stack of theirs, or node's own name for them
        f = prof.funcs["name"].astype(str).to_numpy(object)
        is_w = np.fromiter((WORKER_FUNCS.match(x) is not None for x in f), bool, len(f))
        in_stack = stacks_containing(prof, is_w)
        wsample = in_stack[s["stack"].to_numpy()] | np.isin(comm, WORKER_COMMS)
        worker_tids = sorted(set(tid[wsample & (spid == pid)].tolist()))
        names = {pid: "main"}
        main_comm = set(comm[tid == pid].tolist())
        for i, t in enumerate(worker_tids):
            names[t] = procutil.worker_label(comm[tid == t].tolist(), i + 1, set(names.values()), main_comm)
        out = np.empty(len(s), dtype=object)
        for t in np.unique(tid).tolist():
            m = tid == t
            if t in names:
                out[m] = names[t]
            else:
                out[m] = comm[m]
        other = spid != pid
        if other.any():  # a child process: name it by pid so it is not mistaken for a thread of ours
            out[other] = np.array([f"{c} (pid {p})" for c, p in zip(comm[other], spid[other])], dtype=object)
        s["comm"] = pd.Categorical(comm)
        s["thread"] = pd.Categorical(out)
        if "period_ns" not in s:
            s["period_ns"] = s["weight"].to_numpy().astype(np.int64)
        period = int(np.median(s["period_ns"])) if len(s) else None
        s["weight"] = np.ones(len(s), np.int64)
        tids: dict = {}
        for t in np.unique(tid).tolist():
            tids.setdefault(str(out[tid == t][0]), []).append(int(t))
        md = {"unit": "samples", "period_ns": period if self.event.startswith("cpu-clock") else None,
              "thread_tids": tids}
        if times := prof.meta.get("duration_ns"):
            md["profile_duration_ns"] = int(times)
        prof = with_samples(prof, s, **md)
        if self.main_only:
            keep = (tid == pid) & (spid == pid)
            if not keep.all():
                prof = _filter(prof, keep)
        return prof

    # ------------------------------------------------------------- close
    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self._end_perf()
        except Exception:
            pass
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        if self.lock is not None and (self.proc is None or self.proc.poll() is not None):
            self.lock.release()          # (a perf record that would not end keeps it until this process exits)


def _filter(p, mask):
    return select_samples(p, mask)


_LOST = [
    (re.compile(r"lost (\d+) chunks"), "perf_lost_chunks"),
    (re.compile(r"(\d+) lost samples|lost (\d+) samples"), "perf_lost_samples"),
    (re.compile(r"lost ([0-9.]+)%\s+samples"), "perf_lost_samples_percent"),
]


def _lost(text: str) -> dict:
    """What perf said it lost, from record's and script's stderr."""
    out = {}
    for rx, key in _LOST:
        vals = [next(g for g in m.groups() if g) for m in rx.finditer(text)]
        if vals:
            v = max(float(x) for x in vals)
            if v > 0:
                out[key] = v if key.endswith("percent") else int(v)
    return out


BACKEND = PerfBackend()


def _optimized_share(prof) -> float:
    """Share of the samples (by weight) with a frame in optimized or Maglev code on their stack."""
    tier = prof.frames["tier"].astype(str).isin(["optimized", "maglev"]).to_numpy()
    if not tier.any():
        return 0.0
    has = stacks_containing(prof, frame_mask=tier)
    w = prof.samples["weight"].to_numpy()
    tot = w.sum()
    return float(w[has[prof.samples["stack"].to_numpy()]].sum() / tot) if tot else 0.0
