"""The capture driver: nodeflame.capture() / run() / backends(), on real node processes.

Backend-specific behaviour of the inspector is in test_inspector.py, which also
uses the workload helpers defined here (``Workload``, ``workload``,
``assert_healthy``).  Every node process started here is killed on every path.
"""
from __future__ import annotations

import fcntl
import itertools
import json
import os
import pathlib
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest

import nodeflame as nf
from nodeflame.capture import base, procutil
from nodeflame.capture.base import CaptureError, TargetError

from hot_driver import HotJS, factory
from walker_helpers import thread_states

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
NODE = shutil.which("node")
PYTHON = sys.executable

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs)")


# ---------------------------------------------------------------------------- helpers
Workload = HotJS   # the name the tests here and in test_inspector.py use


@pytest.fixture
def workload(tmp_path):
    """Factory: workload(*hot.js args, node=, node_args=) -> a started Workload (killed at teardown)."""
    n = itertools.count()

    def make(*args, **kw):
        kw.setdefault("stderr_path", tmp_path / f"hot-{next(n)}.stderr")
        return Workload(*args, **kw)
    yield from factory(make)


def assert_healthy(w: Workload, ports=()):
    """The target still runs, is neither stopped nor traced, listens on exactly ``ports``
    (the debug ports it had before the capture) and answers ``ping``."""
    assert w.proc.poll() is None, f"the target exited (status {w.proc.returncode}); stderr: {w.stderr()[-800:]}"
    states = thread_states(w.pid)
    assert states, "no threads?"
    bad = {tid: st for tid, st in states.items() if st[0] in ("T", "t", "Z", "X") or st[1]}
    assert not bad, f"threads stopped or traced after the capture: {bad}"
    assert procutil.listening_ports(w.pid) == sorted(ports), \
        f"the target listens on {procutil.listening_ports(w.pid)}, before the capture on {sorted(ports)}"
    assert "pong" in w.ping()


def shares(prof, thread="main"):
    """Self share (percent of the thread's samples) per function name."""
    s = prof.samples
    s = s[s["thread"].astype(str) == thread]
    stacks = prof.stacks
    frame_of_stack = stacks["frame"].to_numpy()
    func_of_frame = prof.frames["func"].to_numpy()
    names = prof.funcs["name"].astype(str).to_numpy()
    leaf = names[func_of_frame[frame_of_stack[s["stack"].to_numpy()]]]
    w = s["weight"].to_numpy()
    tot = w.sum()
    out = {}
    for n, x in zip(leaf, w):
        out[n] = out.get(n, 0) + x
    return {n: 100.0 * x / tot for n, x in out.items()}, int(tot)


def funcs_in_thread(prof, thread):
    """Names of every function on any stack of the thread's samples."""
    s = prof.samples
    stacks = s[s["thread"].astype(str) == thread]["stack"].unique()
    pre = prof.stacks["prefix"].to_numpy()
    fr = prof.stacks["frame"].to_numpy()
    func_of_frame = prof.frames["func"].to_numpy()
    names = prof.funcs["name"].astype(str).to_numpy()
    seen, out = set(), set()
    for st in stacks:
        while st >= 0 and st not in seen:
            seen.add(st)
            out.add(names[func_of_frame[fr[st]]])
            st = pre[st]
    return out


def _sigint_default():
    """In the child before exec: SIGINT at its default, as a terminal's Ctrl-C finds it (a pytest-xdist
    worker's SIGINT disposition is not: twice there the Ctrl-C test's capture ran its full 30 s)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_python(code, *, timeout=60, user=None, stderr_tty=False, after_start=None):
    """Run ``code`` in a fresh Python (optionally as uid ``user`` via setpriv, optionally with its
    stderr on a pseudo-terminal); returns (returncode, stdout, stderr)."""
    argv = [PYTHON, "-c", code]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    master = None
    if stderr_tty:
        master, slave = pty.openpty()
        # a terminal of 100x30 (a fresh pty is 0x0, and tqdm draws nothing in 0 columns)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                                env=env, cwd=str(ROOT), preexec_fn=_sigint_default)
        os.close(slave)
    else:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, cwd=str(ROOT), preexec_fn=_sigint_default)
    err_chunks = []
    try:
        if after_start is not None:
            after_start(proc)
        if master is not None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                r, _, _ = select.select([master], [], [], 0.2)
                if r:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: the child closed the terminal
                        break
                    if not data:
                        break
                    err_chunks.append(data)
                elif proc.poll() is not None:
                    break
            out = proc.communicate(timeout=max(1, deadline - time.monotonic()))[0]
            err = b"".join(err_chunks)
        else:
            out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if master is not None:
            os.close(master)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# ---------------------------------------------------------------------------- backends()
@needs_node
def test_backends_table_says_why(workload):
    w = workload("--no-worker", node_args=["--inspect-port=0"])
    t = nf.backends()
    assert list(t.columns) == ["backend", "available", "reason", "note", "frames", "needs"]
    assert list(t["backend"])[:4] == list(base.AUTO_ORDER)[:4] == ["stap", "walker", "perf", "inspector"]
    for row in t.itertuples():
        # available XOR a reason, and a reason is one sentence with something to do about it
        assert row.available == (row.reason == ""), row
        if not row.available:
            assert len(row.reason) > 20 and "\n" not in row.reason, row
    insp = t.set_index("backend").loc["inspector"]
    assert insp["available"] and "DevTools" in insp["frames"] and "signal" in insp["needs"]

    tp = nf.backends(w.pid).set_index("backend")
    assert tp.loc["inspector", "available"], tp.loc["inspector", "reason"]
    assert (tp.loc[~tp["available"], "note"] == "").all()
    if tp.loc["walker", "available"] and os.geteuid() == 0:
        # root may always open perf events: the walker says it will not stop the target
        assert tp.loc["walker", "note"].startswith("perf engine") and "nothing is stopped" in tp.loc["walker", "note"]
    # a pid that does not catch SIGUSR1: the inspector says why it cannot, and what to do
    w2 = workload("--no-worker", "--no-sigusr1")
    r = nf.backends(w2.pid).set_index("backend").loc["inspector"]
    assert not r["available"]
    assert "SIGUSR1" in r["reason"] and "--inspect" in r["reason"], r["reason"]
    # no such process
    r = nf.backends(2 ** 22 + 12345).set_index("backend").loc["inspector"]
    assert not r["available"] and "no process" in r["reason"]
    # availability checks leave the targets alone
    assert_healthy(w)
    assert_healthy(w2)


def test_backends_unknown_and_bad_options():
    with pytest.raises(CaptureError, match="unknown backend 'nope'; known: auto, stap, walker, perf, inspector"):
        nf.capture(os.getpid(), 1, backend="nope")
    with pytest.raises(TargetError, match="no process"):
        nf.capture(2 ** 22 + 12345, 1, backend="inspector")
    with pytest.raises(CaptureError, match="duration must be positive"):
        nf.capture(os.getpid(), -1)
    with pytest.raises(CaptureError, match="hz must be between 1 and 100000"):
        nf.capture(os.getpid(), 1, hz=0)
    with pytest.raises(CaptureError, match="threads must be 'all' or 'main'"):
        nf.capture(os.getpid(), 1, threads="some")
    with pytest.raises(TargetError, match="pid must be a process id"):
        nf.capture("abc", 1)


# ---------------------------------------------------------------------------- auto
@needs_node
def test_auto_picks_a_backend_and_records_why_not_the_others(workload):
    w = workload(node_args=["--inspect-port=0"])
    table = nf.backends(w.pid).set_index("backend")
    prof = nf.capture(w.pid, 1.0, hz=500)
    m = prof.meta
    order = list(base.AUTO_ORDER)
    assert m["backend"] in order
    assert table.loc[m["backend"], "available"]
    # every backend auto preferred to the one it took is skipped, with a reason
    for name in order[:order.index(m["backend"])]:
        assert m["backends_skipped"].get(name), (name, m["backends_skipped"])
        if not table.loc[name, "available"]:
            assert m["backends_skipped"][name] == table.loc[name, "reason"]
    assert prof.total > 0
    assert m["pid"] == w.pid and m["requested_hz"] == 500
    assert_healthy(w)


def test_auto_tries_a_backend_registered_later(monkeypatch):
    """register_backend() rebinds base.AUTO_ORDER; auto must follow the live order, not a copy."""
    class Registered(base.Backend):
        name = "registered-later"
        summary = "test backend"
        needs = "nothing"

        def available(self, pid=None):
            return None

    monkeypatch.setattr(base, "AUTO_ORDER", tuple(base.AUTO_ORDER))
    monkeypatch.setitem(base._REGISTRY, "registered-later", Registered())
    base.register_backend(Registered(), auto_before="stap")
    from nodeflame.capture import _choose
    chosen, _ = _choose("auto", None)
    assert chosen[0].name == "registered-later"
    assert "registered-later" in list(nf.backends()["backend"])


# ---------------------------------------------------------------------------- phases
class _PhaseSession(base.Session):
    """Hands over a small fixed profile; its poll() runs ``during_poll`` (a signal handler's stand-in)."""
    during_poll = None

    def poll(self):
        if self.during_poll is not None:
            self.during_poll()
        return None

    def stop(self):
        from test_golden import small_profile
        return small_profile()


class _PhaseBackend(base.Backend):
    name = "phase-test"
    summary = "test backend"
    needs = "nothing"

    def available(self, pid=None):
        return None

    def start(self, target, opts):
        return _PhaseSession(self, target, opts)


@pytest.fixture
def phase_backend(monkeypatch):
    """The test backend registered, and this process described as a node target (nothing is attached)."""
    import nodeflame.capture as cap
    monkeypatch.setitem(base._REGISTRY, "phase-test", _PhaseBackend())
    monkeypatch.setattr(cap.procutil, "describe", lambda pid: base.Target(pid=pid, is_node=True))
    return cap


def test_capture_tells_its_phases_in_order(phase_backend):
    seen = []
    p = nf.capture(os.getpid(), 0.3, backend="phase-test", source_maps=False, on_phase=seen.append)
    assert seen == ["attaching", "sampling", "stopping", "building"] == list(phase_backend.PHASES)
    assert p.meta["interrupted"] is False and p.total > 0


def test_a_keyboard_interrupt_while_sampling_ends_the_capture_and_keeps_it(phase_backend, monkeypatch):
    """What record --to's second Ctrl-C relies on: in 'sampling' a KeyboardInterrupt (raised by a signal
    handler wherever the driver is in its wait) ends the wait, and the capture is still built."""
    seen = []

    def interrupt():
        assert seen[-1] == "sampling"
        raise KeyboardInterrupt

    monkeypatch.setattr(_PhaseSession, "during_poll", staticmethod(interrupt))
    t0 = time.monotonic()
    p = nf.capture(os.getpid(), 30, backend="phase-test", source_maps=False, on_phase=seen.append)
    assert time.monotonic() - t0 < 10
    assert seen == ["attaching", "sampling", "stopping", "building"]
    assert p.meta["interrupted"] is True and p.total > 0
    assert any("Ctrl-C" in w for w in p.meta["warnings"])


# ---------------------------------------------------------------------------- run()
SHORT_PROGRAM = textwrap.dedent("""\
    'use strict';
    function shortHot(ms) {
      const end = Date.now() + ms; let x = 1;
      while (Date.now() < end) { for (let i = 0; i < 1000; i++) x = (x * 69069 + i) & 0xffff; }
      return x;
    }
    shortHot(Number(process.argv[2] || 600));
    console.log('done');
""")


@needs_node
def test_run_short_program_that_exits_by_itself(tmp_path):
    prog = tmp_path / "short.js"
    prog.write_text(SHORT_PROGRAM)
    t0 = time.monotonic()
    prof = nf.run([NODE, str(prog), "600"], 20, backend="inspector", hz=1000,
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    assert took < 15, took  # it returned when the program ended, not after 20 s
    prof.validate()
    m = prof.meta
    assert m["backend"] == "inspector" and m["exit_code"] == 0
    sh, n = shares(prof)
    assert n > 100
    # profiled from the first line: the 600 ms loop is what ran most (idle is the wait at exit; the
    # rest is node loading the program, long on a loaded machine)
    busy = {k: v for k, v in sh.items() if k not in ("(idle)", "(program)", "(garbage collector)")}
    assert max(busy, key=busy.get) == "shortHot", sh
    assert busy["shortHot"] > 0.5 * sum(busy.values()), sh
    assert "shortHot" in set(prof.funcs["name"].astype(str))
    assert not any("terminated" in w for w in m["warnings"]), m["warnings"]
    assert m["command"] and "short.js" in m["command"]


@needs_node
def test_source_maps_of_a_target_that_exits_as_the_capture_ends(monkeypatch):
    """A capture applies the target's source maps through /proc/PID/root once sampling is over; a
    target that exits then (a capture of an exiting program ends that way) must not turn the capture
    into a FileNotFoundError (CI: the inspector's exit-mid-capture test, /proc/PID/root gone between
    the look and realpath).  The moment is made real with a zombie: its /proc/PID/root cannot be read;
    only the look that came just before, when it was alive, is stood in for."""
    from nodeflame.capture import _source_maps
    from nodeflame.frames.readers.folded import read_folded
    p = subprocess.Popen([NODE, "-e", "0"])
    try:
        deadline = time.monotonic() + 20
        while open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "node -e 0 did not exit"
            time.sleep(0.01)
        real_isdir = os.path.isdir
        monkeypatch.setattr(os.path, "isdir", lambda x: x == f"/proc/{p.pid}/root" or real_isdir(x))
        prof = read_folded(b"main app.js:1;work app.js:3 5\n", "<t>")
        got = _source_maps(prof, p.pid, True)
    finally:
        p.wait()
    got.validate()
    from nodeflame.frames.formats import render
    assert render(got, "folded") == render(prof, "folded") and got.total == 5


@needs_node
def test_run_ends_a_longer_program_after_the_duration(tmp_path):
    prog = tmp_path / "long.js"
    prog.write_text(SHORT_PROGRAM)
    t0 = time.monotonic()
    prof = nf.run(f"{NODE} {prog} 30000", 1.0, backend="inspector",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert time.monotonic() - t0 < 15
    assert prof.meta["exit_code"] is not None  # terminated, reaped
    assert any("terminated" in w for w in prof.meta["warnings"]), prof.meta["warnings"]
    assert shares(prof)[0].get("shortHot", 0) > 60
    assert not procutil.exists(prof.meta["pid"])


@needs_node
def test_run_leaves_a_program_running_without_debug_port(tmp_path):
    prog = tmp_path / "long.js"
    prog.write_text(SHORT_PROGRAM)
    prof = nf.run([NODE, str(prog), "30000"], 1.0, backend="inspector", terminate=False,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    pid = prof.meta["pid"]
    try:
        assert procutil.exists(pid)
        assert procutil.listening_ports(pid) == []     # the inspector run() opened is closed again
        assert procutil.state(pid) not in ("T", "t") and procutil.tracer_pid(pid) == 0
        assert prof.meta["exit_code"] is None
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_run_bad_command():
    with pytest.raises(CaptureError, match="command not found"):
        nf.run(["definitely-not-a-command-xyz", "a.js"], 1)
    with pytest.raises(CaptureError, match="needs a command"):
        nf.run([], 1)


# ---------------------------------------------------------------------------- Ctrl-C, progress
CAPTURE_SCRIPT = """
import json, sys, time
import nodeflame as nf
t0 = time.monotonic()
try:
    p = nf.capture({pid}, {duration}, backend="inspector", hz=1000,
                   on_phase=lambda ph: print(json.dumps({{"phase": ph}}), flush=True))
except Exception as e:
    print(json.dumps({{"error": type(e).__name__, "message": str(e)}}))
    sys.exit(3)
print(json.dumps({{"samples": int(p.total), "interrupted": p.meta["interrupted"], "took": time.monotonic() - t0,
                  "warnings": p.meta["warnings"], "threads": p.meta["threads"],
                  "functions": sorted(set(p.funcs["name"].astype(str)))}}))
"""


@needs_node
def test_ctrl_c_keeps_samples_and_shows_progress_on_a_terminal(workload):
    w = workload(node_args=["--inspect-port=0"])

    def interrupt(proc):
        # Ctrl-C 1.5 s into the sampling: the capture says when it samples (on a busy machine its attach
        # took longer than the 1.5 s once allowed after the port opened, and the Ctrl-C came before it)
        for line in proc.stdout:
            if json.loads(line).get("phase") == "sampling":
                break
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)

    rc, out, err = run_python(CAPTURE_SCRIPT.format(pid=w.pid, duration=30), stderr_tty=True,
                              after_start=interrupt, timeout=60)
    assert rc == 0, (out, err)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["interrupted"] is True, (res, err[-2000:])
    assert res["took"] < 20, res
    assert res["samples"] > 200
    assert {"functionA", "functionB", "functionW"} <= set(res["functions"])
    assert any("Ctrl-C" in x for x in res["warnings"])
    # the progress bar (tqdm) was drawn on the terminal
    assert "nodeflame inspector pid" in err and "/30.0 s" in err, err[-500:]
    assert_healthy(w)


@needs_node
def test_no_progress_bar_when_not_on_a_terminal(workload):
    w = workload("--no-worker", node_args=["--inspect-port=0"])
    rc, out, err = run_python(CAPTURE_SCRIPT.format(pid=w.pid, duration=2.0), timeout=60)
    assert rc == 0, (out, err)
    res = json.loads(out.strip().splitlines()[-1])
    assert res["interrupted"] is False and res["samples"] > 200
    assert err == "", err
    assert_healthy(w)


def _held_in_tracing_stops(pid, stop_s, run_s, until):
    """From one thread (ptrace's rule): seize pid, then stop it (PTRACE_INTERRUPT) and hold each stop
    ``stop_s`` s, letting it run ``run_s`` s in between, until ``until`` (a threading.Event) is set."""
    from nodeflame.capture.walker import ptrace
    ptrace.seize(pid)
    try:
        while not until.is_set():
            ptrace.interrupt(pid)
            ptrace.wait(pid)
            until.wait(stop_s)
            ptrace.cont(pid)
            until.wait(run_s)
    finally:
        ptrace.interrupt(pid)
        ptrace.wait(pid)
        ptrace.detach(pid)


def test_stopped_state_tells_a_tracers_long_stops_from_a_held_target():
    """A profiler's ptrace stop can last over 0.2 s on a loaded machine (the walker copying a deep stack
    while descheduled): the target is not stopped while a tracer lets it run between stops, nor for one
    stop shorter than TRACE_SETTLE; held in one tracing stop for longer it is ('t'), and SIGSTOP is 'T'
    after the short settle.  The stops are made by hand here to hold them for set times; the real case,
    the walker sampling a warmed node with inlined code while the inspector captures it, is
    test_walker.py's test_shares_match_the_inspector (which fails if the inspector takes it for stopped)."""
    import threading
    from nodeflame.capture.walker import ptrace
    if ptrace.supported():
        pytest.skip(ptrace.supported())
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for stop_s, run_s in ((0.4, 0.002), (0.8, 0.0)):
            until = threading.Event()
            th = threading.Thread(target=_held_in_tracing_stops, args=(child.pid, stop_s, run_s, until))
            th.start()
            try:
                deadline = time.monotonic() + 2
                seen = []
                while time.monotonic() < deadline:
                    if procutil.state(child.pid) == "t":
                        seen.append(procutil.stopped_state(child.pid))
                    time.sleep(0.005)
            finally:
                until.set()
                th.join(10)
            assert seen and set(seen) == {None}, (stop_s, run_s, seen)
        # held: one tracing stop that lasts
        until = threading.Event()
        th = threading.Thread(target=_held_in_tracing_stops, args=(child.pid, 30, 0, until))
        th.start()
        try:
            while procutil.state(child.pid) != "t":
                time.sleep(0.005)
            t0 = time.monotonic()
            assert procutil.stopped_state(child.pid) == "t"
            assert time.monotonic() - t0 >= procutil.TRACE_SETTLE
        finally:
            until.set()
            th.join(10)
        os.kill(child.pid, signal.SIGSTOP)
        while procutil.state(child.pid) != "T":
            time.sleep(0.005)
        t0 = time.monotonic()
        assert procutil.stopped_state(child.pid) == "T"
        assert time.monotonic() - t0 < procutil.TRACE_SETTLE
        os.kill(child.pid, signal.SIGCONT)
        while procutil.state(child.pid) in ("T", "t"):
            time.sleep(0.005)
        assert procutil.stopped_state(child.pid) is None
    finally:
        child.kill()
        child.wait()
