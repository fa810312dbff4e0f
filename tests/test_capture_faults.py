"""Capture faults on real node processes (issue 15): a target stopped before or during a capture,
killed or exiting mid-capture, a zombie, a non-node pid, two captures of one pid at once, Ctrl-C,
and a node in its own pid, mount and network namespaces (``unshare``).

Every test checks what the capture said, what it kept, how long it took, and the target's state
afterwards (stopped as found, not traced, no inspector port left listening).  Built to hold on a
busy 2-core machine: they wait on observable events (a line on the target's stderr, a process
state in /proc, a pending signal, a collection made), every wait is bounded, and no sleep is used
to order two things.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

import nodeflame as nf
from nodeflame.capture import inspector, procutil
from nodeflame.capture.base import BackendUnavailable, CaptureError, TargetError, TargetExited

from hot_driver import HOT, HotJS
from test_capture import NODE, ROOT, assert_healthy, needs_node, shares, workload  # noqa: F401

pytestmark = needs_node

USR1 = 1 << (signal.SIGUSR1 - 1)


# ---------------------------------------------------------------------------- helpers
def wait_for(cond, timeout, what):
    """Poll ``cond()`` until truthy (returned) or ``timeout`` s pass (AssertionError naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def stop(pid):
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: procutil.state(pid) == "T", 10, f"process {pid} to be stopped")


def cont(pid):
    os.kill(pid, signal.SIGCONT)
    wait_for(lambda: procutil.state(pid) not in ("T", "t"), 10, f"process {pid} to run again")


def attached_now(w, n=1):
    """The target printed 'Debugger attached' ``n`` times (a capture is connected)."""
    return w.stderr().count("Debugger attached") >= n


def attached(w, cap, n=1):
    """Wait until the target printed 'Debugger attached' ``n`` times (a capture is connected); a
    capture that ended first fails the wait with what it raised."""
    wait_for(lambda: attached_now(w, n) or not cap.is_alive(), 60, "the capture to connect")
    assert attached_now(w, n), f"the capture ended before it connected: {cap.error!r}"


def closed_after_resume(w, timeout=30):
    """After SIGCONT: every inspector a capture caused is closed again.  Waits for node's own
    'Debugger ending' for each 'Debugger listening' it printed, then checks the sockets."""
    def ended():
        # node before nodejs/node#64209 died here (SIGSEGV, status -11) when the capture had closed its
        # connection while the target was stopped and still owed it replies
        assert w.proc.poll() is None, f"the target died after it was continued (status {w.proc.returncode})"
        return w.stderr().count("Debugger ending") >= w.stderr().count("Debugger listening")
    wait_for(ended, timeout, "node to say the inspector ends after the target was continued")
    wait_for(lambda: procutil.listening_ports(w.pid) == [], 10, "the inspector port to be closed")


class Capture(threading.Thread):
    """nf.capture(...) in a thread: .result (Profile) or .error, .seconds it took."""

    def __init__(self, *args, **kw):
        super().__init__(daemon=True)
        self.args, self.kw = args, kw
        self.result = self.error = None
        self.seconds = None
        self.start()

    def run(self):
        t0 = time.monotonic()
        try:
            self.result = nf.capture(*self.args, **self.kw)
        except BaseException as e:  # noqa: BLE001 - inspected by the test
            self.error = e
        self.seconds = time.monotonic() - t0

    def outcome(self, timeout):
        self.join(timeout)
        assert not self.is_alive(), f"the capture still runs after {timeout:g} s"
        return self.result, self.error


@pytest.fixture
def collections(monkeypatch):
    """An Event set once an inspector capture has collected part of its profile (a chunk)."""
    ev = threading.Event()
    real = inspector.InspectorSession._collect

    def collect(self):
        real(self)
        if self.main.chunks:
            ev.set()
    monkeypatch.setattr(inspector.InspectorSession, "_collect", collect)
    return ev


# ---------------------------------------------------------------------------- inspector, stopped
def test_inspector_refuses_a_stopped_target_and_sends_nothing(workload):
    w = workload("--no-worker")
    stop(w.pid)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match=rf"process {w.pid} is stopped \(state T.*nothing was sent; "
                                                 rf"continue it \(kill -CONT {w.pid}\)"):
        nf.capture(w.pid, 2, backend="inspector")
    assert time.monotonic() - t0 < 5
    assert procutil.state(w.pid) == "T"                   # left stopped, as found
    assert not procutil.pending_signals(w.pid) & USR1    # no SIGUSR1 waiting to open a port
    cont(w.pid)
    assert "pong" in w.ping()                             # it ran again and handled stdin ...
    assert "Debugger listening" not in w.stderr()         # ... without ever opening an inspector
    assert_healthy(w)


def test_auto_says_why_the_inspector_was_skipped_for_a_stopped_target(workload):
    w = workload("--no-worker")
    stop(w.pid)
    try:
        table = nf.backends(w.pid).set_index("backend")
        assert "is stopped (state T" in table.loc["inspector", "reason"]
    finally:
        cont(w.pid)


def test_inspector_target_stopped_between_check_and_sigusr1(workload, monkeypatch):
    # the race the up-front check cannot close: the target is stopped just before SIGUSR1 lands
    w = workload("--no-worker")
    real = procutil.send_signal

    def stop_then_signal(pid, sig):
        if sig == signal.SIGUSR1:
            stop(pid)
        return real(pid, sig)
    monkeypatch.setattr(procutil, "send_signal", stop_then_signal)
    t0 = time.monotonic()
    with pytest.raises(CaptureError, match=rf"process {w.pid} was stopped \(state T\) just after SIGUSR1.*"
                                           r"a watcher \(pid \d+\) will close") as ei:
        nf.capture(w.pid, 2, backend="inspector")
    assert time.monotonic() - t0 < inspector.OPEN_TIMEOUT
    assert procutil.state(w.pid) == "T"
    assert procutil.pending_signals(w.pid) & USR1        # the port opens when it is continued ...
    # ... while no second capture can take the process meanwhile
    watcher = int(str(ei.value).split("a watcher (pid ")[1].split(")")[0])
    cont(w.pid)
    wait_for(lambda: "Debugger listening" in w.stderr(), 30, "node to open the inspector on SIGCONT")
    closed_after_resume(w)                               # ... and the watcher closed it
    wait_for(lambda: not procutil.exists(watcher), 30, "the watcher to end")
    assert_healthy(w)


def test_inspector_target_stopped_during_capture_keeps_what_was_collected(workload, collections):
    w = workload("--no-worker")
    cap = Capture(w.pid, 60, backend="inspector", hz=500, backend_options={"collect_every": 0.5})
    attached(w, cap)
    assert collections.wait(30), "no collection in 30 s"
    stop(w.pid)
    t_stop = time.monotonic()
    prof, err = cap.outcome(30)
    assert err is None, err
    assert time.monotonic() - t_stop < 10                 # not 60 s, not hung
    warnings = " | ".join(prof.meta["warnings"])
    assert f"process {w.pid} was stopped (state T)" in warnings and "kept the profile collected" in warnings
    assert shares(prof)[1] > 0 and "functionA" in shares(prof)[0]
    prof.validate()
    assert procutil.state(w.pid) == "T"                   # still stopped: we never continue it
    assert procutil.tracer_pid(w.pid) == 0
    cont(w.pid)
    closed_after_resume(w)
    assert_healthy(w)


def test_inspector_target_stopped_before_first_collection(workload):
    w = workload("--no-worker")
    cap = Capture(w.pid, 60, backend="inspector", backend_options={"collect_every": 50})
    attached(w, cap)
    stop(w.pid)
    t_stop = time.monotonic()
    prof, err = cap.outcome(30)
    assert time.monotonic() - t_stop < 10
    # stopped as the capture was setting up, or after: either way a clear error, nothing kept
    assert isinstance(err, CaptureError), err
    assert re.search(rf"process {w.pid} was stopped \(state T\) (before any of its profile was collected"
                     r"|while the capture was starting, so nothing was sampled)", str(err)), err
    assert procutil.state(w.pid) == "T"
    cont(w.pid)
    closed_after_resume(w)
    assert_healthy(w)


# ---------------------------------------------------------------------------- inspector, other faults
def test_inspector_target_killed_mid_capture_keeps_what_was_collected(workload, collections):
    w = workload("--no-worker")
    cap = Capture(w.pid, 60, backend="inspector", hz=500, backend_options={"collect_every": 0.5})
    attached(w, cap)
    assert collections.wait(30)
    w.proc.kill()
    t_kill = time.monotonic()
    prof, err = cap.outcome(30)
    assert err is None, err
    assert time.monotonic() - t_kill < 10
    warnings = " | ".join(prof.meta["warnings"])
    assert f"process {w.pid} went away during the capture" in warnings, warnings
    assert "kept the profile collected" in warnings
    assert shares(prof)[1] > 0
    prof.validate()


def test_inspector_target_that_exits_between_the_checks_and_sigusr1(workload, monkeypatch):
    w = workload("--no-worker")
    real = procutil.send_signal

    def die_then_signal(pid, sig):
        if sig == signal.SIGUSR1:
            w.proc.kill()
            wait_for(lambda: procutil.state(pid) in ("Z", None), 10, "the target to exit")
        return real(pid, sig)
    monkeypatch.setattr(procutil, "send_signal", die_then_signal)
    with pytest.raises(TargetExited, match=rf"process {w.pid} exited while the inspector backend was attaching "
                                           r"to it \((it is a zombie now|it is gone now|right after SIGUSR1)\); "
                                           r"nothing was sampled"):
        nf.capture(w.pid, 2, backend="inspector")


def test_two_inspector_captures_of_one_pid(workload):
    w = workload("--no-worker")
    first = Capture(w.pid, 4, backend="inspector", hz=200)
    attached(w, first)
    t0 = time.monotonic()
    with pytest.raises(CaptureError, match=rf"pid {w.pid} is already being captured by the inspector backend of "
                                           rf"nodeflame \(pid {os.getpid()}: "):
        nf.capture(w.pid, 1, backend="inspector")
    assert time.monotonic() - t0 < 5
    assert w.stderr().count("Debugger attached") == 1     # the second never connected
    prof, err = first.outcome(60)                         # the first goes on and ends normally
    assert err is None, err
    assert shares(prof)[1] > 0
    assert_healthy(w)


def test_zombie_and_non_node_pids():
    zombie = subprocess.Popen([NODE, "-e", "0"])
    wait_for(lambda: procutil.state(zombie.pid) == "Z", 30, "the node process to become a zombie")
    try:
        for backend in ("auto", "inspector", "walker"):
            with pytest.raises(TargetError, match=rf"process {zombie.pid} has exited \(zombie\)"):
                nf.capture(zombie.pid, 1, backend=backend)
    finally:
        zombie.wait()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # Popen returns once exec has begun (its error pipe closes at exec); the new program's arguments are
        # in /proc/PID/cmdline only a little later, when the ELF loader has laid out the stack
        wait_for(lambda: procutil.cmdline(sleeper.pid) == ["sleep", "60"], 10, "sleep's command line in /proc")
        for backend in ("auto", "inspector", "walker"):
            with pytest.raises(TargetError, match=rf"process {sleeper.pid} \(sleep 60\) is not a node process"):
                nf.capture(sleeper.pid, 1, backend=backend)
        assert procutil.pending_signals(sleeper.pid) == 0 and sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()

# ---------------------------------------------------------------------------- walker
@pytest.fixture
def walker_ok(workload):
    from nodeflame.capture.base import availability
    w = workload("--no-worker")
    why = availability("walker", w.pid)
    if why:
        pytest.skip(f"walker backend unavailable here: {why}")
    return w


def test_walker_target_that_exits_as_it_attaches_is_said_to_have_exited(walker_ok, monkeypatch):
    # the process ends between the checks and PTRACE_SEIZE: ptrace answers EPERM, which used to be
    # reported as "cannot ptrace pid N: Operation not permitted"
    from nodeflame.capture.walker import ptrace
    w = walker_ok
    real = ptrace.seize

    def die_then_seize(tid):
        if tid == w.pid and w.proc.poll() is None:
            os.kill(w.pid, signal.SIGKILL)
            wait_for(lambda: procutil.state(w.pid) in ("Z", None), 10, "the target to be a zombie")
        return real(tid)
    monkeypatch.setattr(ptrace, "seize", die_then_seize)
    t0 = time.monotonic()
    with pytest.raises(TargetExited) as ei:
        nf.capture(w.pid, 2, backend="walker", backend_options={"engine": "ptrace"})
    assert time.monotonic() - t0 < 30
    msg = str(ei.value)
    assert f"process {w.pid} exited while the walker backend was attaching to it" in msg, msg
    assert "not permitted" not in msg and "permission" not in msg


def test_walker_stopped_target_is_left_stopped_and_the_capture_says_why_it_is_empty(walker_ok):
    w = walker_ok
    stop(w.pid)
    t0 = time.monotonic()
    prof = nf.capture(w.pid, 1.5, backend="walker")
    assert time.monotonic() - t0 < 30
    warnings = " | ".join(prof.meta["warnings"])
    assert f"process {w.pid} was stopped (SIGSTOP, Ctrl-Z or a debugger) for the whole capture" in warnings, warnings
    assert procutil.state(w.pid) == "T" and procutil.tracer_pid(w.pid) == 0
    cont(w.pid)
    assert_healthy(w)


# ---------------------------------------------------------------------------- Ctrl-C
def perf_events(pid):
    """Whether pid holds a perf_event fd (the walker's perf engine sampling)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]":
                return True
        except OSError:
            pass
    return False


@pytest.mark.parametrize("backend", ["inspector", "walker"])
def test_ctrl_c_keeps_what_was_sampled_and_leaves_the_target_as_found(workload, backend):
    from nodeflame.capture.base import availability
    w = workload("--no-worker")
    why = availability(backend, w.pid)
    if why:
        pytest.skip(why)
    from walker_helpers import cpu_grew, interrupt_cli
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # sampling runs: the capture attached and the target used CPU since (not a sleep)
    ready = cpu_grew(w.pid, 0.3, after=lambda cli: attached_now(w) if backend == "inspector" else
                     (procutil.tracer_pid(w.pid) or perf_events(cli.pid)))
    rc, out, err, seconds = interrupt_cli([w.pid, "text", "120", "--backend", backend, "--hz", "200"], ready,
                                          cwd=ROOT, env=env)
    assert seconds < 30
    assert rc == 0, err
    assert "Traceback" not in err
    assert out.startswith("Total samples: ") and int(out.split()[2]) > 0, out[:200]
    assert "functionA" in out
    assert_healthy(w)


# ---------------------------------------------------------------------------- containers
UNSHARE = shutil.which("unshare")
IP = shutil.which("ip")


@pytest.fixture
def contained(tmp_path):
    """hot.js as PID 1 of its own pid, mount and network namespaces (loopback up, as a container
    runtime does): the HotJS driver and the node's pid on the host."""
    if os.geteuid() != 0 or UNSHARE is None or IP is None:
        pytest.skip("needs root, unshare and ip")
    w = HotJS("--no-worker", node=UNSHARE, stderr_path=tmp_path / "contained.stderr",
              node_args=["--pid", "--mount", "--net", "--fork", "--kill-child", "sh", "-c",
                         'ip link set lo up && exec "$0" "$@"', NODE])
    host_pid = None
    try:
        with open(f"/proc/{w.pid}/task/{w.pid}/children") as fh:
            host_pid = int(fh.read().split()[0])
        assert w.info["ready"] == 1                       # PID 1 inside
        assert procutil.netns_id(host_pid) != procutil.netns_id("self")
        yield w, host_pid
    finally:
        if host_pid and procutil.exists(host_pid):
            os.kill(host_pid, signal.SIGKILL)             # PID 1 of a namespace ignores SIGTERM
        w.kill()


@pytest.mark.solo   # the default port in its own network namespace: run where NODE_OPTIONS names none (conftest)
def test_inspector_captures_a_node_in_its_own_namespaces(contained):
    w, pid = contained
    t0 = time.monotonic()
    prof = nf.capture(pid, 1.5, backend="inspector", hz=500)
    assert time.monotonic() - t0 < 30
    assert prof.meta["inspector_url"].startswith("ws://127.0.0.1:9229/")   # its own loopback, its own 9229
    assert "functionA" in shares(prof)[0]
    hot = [f for f in prof.funcs.itertuples() if f.name == "functionA"][0]
    assert hot.file.endswith("hot.js") and hot.line > 0
    # closed again, inside the namespace
    wait_for(lambda: "Debugger ending" in w.stderr(), 10, "node to close the inspector")
    assert procutil.listening_ports(pid) == []
    assert procutil.state(pid) not in ("T", "t") and procutil.tracer_pid(pid) == 0
    assert "pong" in w.ping()


def test_walker_captures_a_node_in_its_own_namespaces(contained):
    w, pid = contained
    from nodeflame.capture.base import availability
    why = availability("walker", pid)
    if why:
        pytest.skip(why)
    prof = nf.capture(pid, 1.5, backend="walker")
    assert "functionA" in shares(prof)[0]
    assert procutil.state(pid) not in ("T", "t") and procutil.tracer_pid(pid) == 0
    assert "pong" in w.ping()


# ---------------------------------------------------------------------------- two captures of one pid
CAPTURE_IN_CHILD = r"""
import json, sys
import nodeflame as nf
from test_capture import shares
pid, backend, engine = int(sys.argv[1]), sys.argv[2], sys.argv[3]
opts = {"engine": engine} if engine != "-" else None
def phase(ph):
    print(json.dumps({"phase": ph}), flush=True)
# a long capture that the test ends with a Ctrl-C once it has checked the refusals (KeyboardInterrupt while
# sampling ends it and keeps what was sampled): the lock is held for as long as the checks take, whatever
# the machine's load, and the test does not wait out a fixed duration after them
p = nf.capture(pid, float(sys.argv[4]), backend=backend, hz=200, backend_options=opts, progress=False,
               on_phase=phase)
p.validate()
print(json.dumps({"samples": int(p.samples["weight"].sum()), "warnings": [str(w) for w in p.meta["warnings"]],
                  "shares": shares(p)[0]}))
"""


def _usable(backend, pid, engine):
    from nodeflame.capture.base import availability
    why = availability(backend, pid)
    if why:
        pytest.skip(f"{backend} backend unavailable here: {why}")
    if engine == "perf":
        from nodeflame.capture.walker import perfevent
        why = perfevent.unavailable(pid)
        if why:
            pytest.skip(f"the walker's perf engine cannot run here: {why}")


@pytest.mark.parametrize("backend,first,second", [
    ("walker", "ptrace", "ptrace"), ("walker", "perf", "perf"), ("walker", "ptrace", "perf"),
    ("perf", "-", "-"), ("inspector", "-", "-")])
def test_a_second_capture_of_a_pid_from_another_process_is_refused(workload, backend, first, second):
    from nodeflame.capture import locks
    from nodeflame.capture.base import CaptureOptions, get_backend
    node_args = ["--perf-basic-prof", "--interpreted-frames-native-stack"] if backend == "perf" else []
    if backend == "inspector":
        node_args = ["--inspect-port=0"]   # the lock is under test, not the port: another node on 9229 is not
    w = workload("--no-worker", node_args=node_args)
    _usable(backend, w.pid, first)
    _usable(backend, w.pid, second)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    from test_capture import _sigint_default
    a = subprocess.Popen([sys.executable, "-c", CAPTURE_IN_CHILD, str(w.pid), backend, first, "120"], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_sigint_default)
    lines, errs = [], []                                  # its stdout (phases, then its result) and stderr
    readers = [threading.Thread(target=lambda: lines.extend(a.stdout), daemon=True),
               threading.Thread(target=lambda: errs.extend(a.stderr), daemon=True)]
    for r in readers:
        r.start()
    try:
        held = wait_for(lambda: locks.holder(w.pid, backend) or a.poll() is not None, 60,
                        f"the first {backend} capture to take its lock")
        assert held is not True and a.poll() is None, (lines, "".join(errs)[-2000:])
        assert held["pid"] == a.pid and held["backend"] == backend, held
        opts = {"engine": second} if second != "-" else None
        want = (rf"pid {w.pid} is already being captured by the {backend} backend of nodeflame \(pid {a.pid}: "
                rf"\S*python\S* -c .*, since \d\d:\d\d:\d\d\)")
        # through the driver: available() says so, before anything is done to the target
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailable, match=want):
            nf.capture(w.pid, 1, backend=backend, hz=200, backend_options=opts)
        # straight to start() (a race past the check): the lock itself refuses
        with pytest.raises(CaptureError, match=want + rf"; one {backend} capture of a process at a time"):
            get_backend(backend).start(procutil.describe(w.pid), CaptureOptions(hz=200, duration=1,
                                                                                extra=opts or {}))
        assert time.monotonic() - t0 < 20
        # auto is served by another backend meanwhile
        if backend == "walker":
            prof = nf.capture(w.pid, 1, hz=200, backend_options=None, progress=False)
            assert prof.meta["backend"] != "walker"
            assert "already being captured" in prof.meta["backends_skipped"]["walker"]
        # the refusals are checked: the first capture is ended by a Ctrl-C once it has said it samples and
        # the target has run 0.5 s of CPU since (the checks may all be done before it samples: perf's were)
        wait_for(lambda: '{"phase": "sampling"}\n' in lines or a.poll() is not None, 60,
                 "the first capture to say it samples")
        cpu0 = procutil.cpu_seconds(w.pid)
        wait_for(lambda: procutil.cpu_seconds(w.pid) - cpu0 >= 0.5 or a.poll() is not None, 60,
                 "the target to run 0.5 s of CPU while the first capture samples")
        assert a.poll() is None, (lines, "".join(errs)[-2000:])
        a.send_signal(signal.SIGINT)
        a.wait(120)
        for r in readers:
            r.join(10)
        err = "".join(errs)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        for r in readers:
            r.join(10)
        a.stdout.close()
        a.stderr.close()
    assert a.returncode == 0, err[-2000:]
    got = json.loads(lines[-1])
    assert [x for x in got["warnings"] if x.startswith("interrupted (Ctrl-C)")], got["warnings"]
    # the first capture was not disturbed: samples, its hot function, no warning of trouble
    assert got["samples"] > 0 and "functionA" in got["shares"], got
    # (an undecodable JS frame now and then is the walker's usual, not the second capture's doing)
    assert not [x for x in got["warnings"] if re.search(r"detached|lost|dropped|exited|stopped", x)], got["warnings"]
    assert locks.holder(w.pid, backend) is None           # released with the capture
    assert procutil.state(w.pid) not in ("T", "t") and procutil.tracer_pid(w.pid) == 0
    assert not perf_events(a.pid)
    from test_capture_perf import perf_processes
    assert perf_processes(w.pid) == []
    assert_healthy(w)
    # and a capture after it runs normally
    prof = nf.capture(w.pid, 1, backend=backend, hz=200, backend_options=opts, progress=False)
    assert len(prof.samples) > 0
    assert_healthy(w)


# ---------------------------------------------------------------------------- perf backend: stopped, contained
PERF_FLAGS = ["--perf-basic-prof", "--interpreted-frames-native-stack"]


def _perf_ready(pid):
    from nodeflame.capture.base import availability
    why = availability("perf", pid)
    if why:
        pytest.skip(f"perf backend unavailable here: {why}")


def _no_perf_left(pid):
    from test_capture_perf import perf_processes
    wait_for(lambda: perf_processes(pid) == [], 10, "perf record to end")


def test_perf_stopped_target_is_left_stopped_and_the_capture_says_why_it_is_empty(workload):
    w = workload("--no-worker", node_args=PERF_FLAGS)
    _perf_ready(w.pid)
    stop(w.pid)
    t0 = time.monotonic()
    prof = nf.capture(w.pid, 1.5, backend="perf")
    assert time.monotonic() - t0 < 30
    warnings = " | ".join(prof.meta["warnings"])
    assert f"process {w.pid} was stopped (SIGSTOP, Ctrl-Z or a debugger) for the whole capture" in warnings, warnings
    assert "nothing was sampled" in warnings and "it was left stopped" in warnings, warnings
    assert len(prof.samples) == 0
    assert procutil.state(w.pid) == "T" and procutil.tracer_pid(w.pid) == 0
    _no_perf_left(w.pid)
    cont(w.pid)
    assert_healthy(w)


def test_perf_target_stopped_during_the_capture_keeps_what_was_sampled(workload):
    w = workload("--no-worker", node_args=PERF_FLAGS)
    _perf_ready(w.pid)
    # the target runs 0.3 s of CPU once perf samples (it acknowledged 'enable': the capture says 'sampling'),
    # not once a perf process exists: beside stress-ng, perf took long enough to start that the target was
    # stopped before its first sample, and the capture rightly said "stopped for the whole capture"
    sampling = threading.Event()
    c = Capture(w.pid, 4, backend="perf", on_phase=lambda ph: ph == "sampling" and sampling.set())
    wait_for(lambda: sampling.is_set() or not c.is_alive(), 30, "perf record to sample")
    cpu0 = procutil.cpu_seconds(w.pid)
    wait_for(lambda: procutil.cpu_seconds(w.pid) - cpu0 > 0.3, 60, "the target to run 0.3 s of CPU")
    stop(w.pid)
    prof, err = c.outcome(60)
    assert err is None, err
    assert c.seconds < 30
    warnings = " | ".join(prof.meta["warnings"])
    assert re.search(rf"process {w.pid} was stopped \(SIGSTOP, Ctrl-Z or a debugger\) for [\d.]+ s of the "
                     r"[\d.]+ s capture", warnings), warnings
    assert "it was left stopped" in warnings
    assert shares(prof)[1] > 0 and "functionA" in shares(prof)[0]     # what ran before the stop is kept
    assert procutil.state(w.pid) == "T" and procutil.tracer_pid(w.pid) == 0
    _no_perf_left(w.pid)
    cont(w.pid)
    assert_healthy(w)


def test_perf_captures_a_node_in_its_own_namespaces(tmp_path):
    if os.geteuid() != 0 or UNSHARE is None or IP is None:
        pytest.skip("needs root, unshare and ip")
    w = HotJS("--no-worker", node=UNSHARE, stderr_path=tmp_path / "contained.stderr",
              node_args=["--pid", "--mount", "--net", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
                         # its own /tmp, as a container has: the host cannot see the map there but through
                         # /proc/PID/root; the workloads' directory is bound back in, for a checkout under /tmp
                         f'd={shlex.quote(str(HOT.parent))} && mount --bind "$d" /mnt && mount -t tmpfs tmpfs /tmp '
                         '&& mkdir -p "$d" && mount --bind /mnt "$d" && ip link set lo up && exec "$0" "$@"',
                         NODE, *PERF_FLAGS])
    pid = None
    try:
        with open(f"/proc/{w.pid}/task/{w.pid}/children") as fh:
            pid = int(fh.read().split()[0])
        assert w.info["ready"] == 1                       # PID 1 inside
        nspid = procutil.status(pid)["NSpid"].split()
        assert nspid[-1] == "1" and procutil.netns_id(pid) != procutil.netns_id("self")
        # the target wrote its map in its own /tmp (its own mount namespace), named by its own pid
        inner = f"/proc/{pid}/root/tmp/perf-1.map"
        wait_for(lambda: os.path.exists(inner), 10, "the target's perf map")
        assert not os.path.exists("/tmp/perf-1.map") or not os.path.samefile("/tmp/perf-1.map", inner)
        _perf_ready(pid)
        from nodeflame.capture.perf import perf_map
        assert perf_map(pid) in (inner, f"/tmp/perf-{pid}.map")
        prof = nf.capture(pid, 2, backend="perf")
        got, n = shares(prof)
        assert n > 0 and "functionA" in got, sorted(got.items(), key=lambda kv: -kv[1])[:8]
        assert prof.meta["perf_map"] == inner
        assert procutil.state(pid) not in ("T", "t") and procutil.tracer_pid(pid) == 0
        _no_perf_left(pid)
        assert "pong" in w.ping()
    finally:
        if pid and procutil.exists(pid):
            os.kill(pid, signal.SIGKILL)                  # PID 1 of a namespace ignores SIGTERM
        w.kill()


def test_stap_on_a_stopped_target_says_why_it_cannot_run_and_leaves_it_stopped(workload):
    # this kernel loads no modules, so stap refuses before it starts anything; where it can run, the
    # driver's stopped-target warning covers it as for the other backends (not testable here)
    from nodeflame.capture.base import availability
    w = workload("--no-worker")
    stop(w.pid)
    why = availability("stap", w.pid)
    if why is None:
        cont(w.pid)
        pytest.skip("stap can run here: its refusal is not what this machine can test")
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable) as ei:
        nf.capture(w.pid, 1, backend="stap")
    assert time.monotonic() - t0 < 10
    assert str(ei.value) == f"stap backend: {why}"
    assert re.search(r"systemtap is not installed|SystemTap cannot load its kernel module|staprun|root", why), why
    table = nf.backends(w.pid).set_index("backend")
    assert table.loc["stap", "reason"] == why and not table.loc["stap", "available"]
    assert procutil.state(w.pid) == "T" and procutil.tracer_pid(w.pid) == 0
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _comm(p) in ("stap", "staprun", "stapio")
                and _ppid(p) == os.getpid()]                 # no stap helper of ours
    cont(w.pid)
    assert_healthy(w)


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        return int(st[st.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


# ---------------------------------------------------------------------------- long captures
def test_inspector_keepalive_profile_holds_one_collection_at_a_time(workload, monkeypatch):
    # V8 adds every sample to every running profile: the console.profile that keeps its CpuProfiler alive
    # between collections must be restarted with them, or it holds the whole capture in the target
    w = workload("--no-worker")
    finished = []
    real = inspector.InspectorSession._event

    def event(self, sid, method, params):
        if method == "Profiler.consoleProfileFinished" and (params or {}).get("title") == inspector.KEEPALIVE_TITLE:
            p = params["profile"]
            finished.append(((p["endTime"] - p["startTime"]) / 1e6, len(p.get("samples") or ())))
        return real(self, sid, method, params)
    monkeypatch.setattr(inspector.InspectorSession, "_event", event)
    prof = nf.capture(w.pid, 5, backend="inspector", hz=1000, backend_options={"collect_every": 0.5})
    assert shares(prof)[1] > 0
    # restarted at (nearly) every collection: the capture's 5 s at one collection per 0.5 s (the
    # last ones may end with the capture), each holding about one collection's time
    assert len(finished) >= 4, finished
    assert max(s for s, _ in finished) < 3.0, finished
    total = shares(prof)[1]
    assert max(n for _, n in finished) < 0.7 * total, (finished, total)
    assert_healthy(w)


def test_a_stap_capture_of_a_pid_holds_the_stap_lock(workload):
    # two stap modules on one process would each sample it; stap cannot run on every machine, so the
    # lock is held here by another process as a stap capture holds it, and the backend must refuse
    # first (before any other reason it has), naming the holder
    from nodeflame.capture.base import availability
    w = workload("--no-worker")
    code = ("import sys, time; from nodeflame.capture import locks; l = locks.take(int(sys.argv[1]), 'stap'); "
            "print('held' if l else 'none', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(w.pid)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == "held"
        want = rf"pid {w.pid} is already being captured by the stap backend of nodeflame \(pid {holder.pid}: "
        with pytest.raises(BackendUnavailable, match=want):
            nf.capture(w.pid, 1, backend="stap")
    finally:
        holder.kill()
        holder.wait(10)
    assert not re.search(r"already being captured", availability("stap", w.pid) or "")
    assert_healthy(w)


def test_a_capture_lock_is_released_when_its_holder_is_killed(tmp_path):
    from nodeflame.capture import locks
    target = subprocess.Popen(["sleep", "120"])
    holder = None
    try:
        code = ("import sys, time; from nodeflame.capture import locks; l = locks.take(int(sys.argv[1]), 'walker'); "
                "print('held' if l else 'none', flush=True); time.sleep(120)")
        holder = subprocess.Popen([sys.executable, "-c", code, str(target.pid)], cwd=ROOT, stdout=subprocess.PIPE,
                                  text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert holder.stdout.readline().strip() == "held"
        info = locks.holder(target.pid, "walker")
        assert info["pid"] == holder.pid and info["backend"] == "walker", info
        with pytest.raises(CaptureError, match=rf"pid {target.pid} is already being captured by the walker backend "
                                               rf"of nodeflame \(pid {holder.pid}: "):
            locks.take(target.pid, "walker")
        other = locks.take(target.pid, "perf")                    # another backend's lock is another lock
        assert other is not None
        other.release()
        holder.kill()                                             # no chance to clean up: the kernel releases it
        holder.wait(10)
        assert locks.holder(target.pid, "walker") is None
        lk = locks.take(target.pid, "walker")
        assert lk is not None and locks.holder(target.pid, "walker")["pid"] == os.getpid()
        path = lk.path
        lk.release()
        assert not os.path.exists(path) and locks.holder(target.pid, "walker") is None
    finally:
        for p in (holder, target):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    # once the target is gone, its stale lock files are swept by the next take()
    stale = locks.lock_path(os.getpid(), "walker")
    d = os.path.dirname(stale)
    fake = os.path.join(d, f"capture-{target.pid}-1-walker.lock")
    open(fake, "w").close()
    lk = locks.take(os.getpid(), "walker")
    try:
        assert not os.path.exists(fake)
    finally:
        lk.release()


def test_a_lock_planted_by_another_user_does_not_block_captures():
    # the lock directory is world-writable: a user who cannot capture the target (here: nobody, against a
    # root process) may create and hold its lock file, but that blocks nothing and words no refusal
    from nodeflame.capture import locks
    if os.geteuid() != 0:
        pytest.skip("needs root (to run the planting process as another user)")
    target = subprocess.Popen(["sleep", "120"])
    planter = None
    try:
        path = locks.lock_path(target.pid, "walker")
        code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666); "
                "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'{\"pid\": 1, \"command\": \"fake\"}'); "
                "print('held', flush=True); time.sleep(120)")
        planter = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)
        assert planter.stdout.readline().strip() == "held"
        assert locks.holder(target.pid, "walker") is None      # not a capture: nobody cannot capture root's
        assert locks.take(target.pid, "walker") is None        # goes on unlocked, no false refusal
        # the same lock held by a process of root's (one that could capture) is respected
        planter.kill()
        planter.wait(10)
        holder = subprocess.Popen([sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(CaptureError, match=rf"pid {target.pid} is already being captured"):
                locks.take(target.pid, "walker")
        finally:
            holder.kill()
            holder.wait(10)
    finally:
        for p in (planter, target):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
