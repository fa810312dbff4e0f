"""The perf capture backend on real node processes (tests/workloads/hot.js).

Attribution is checked against the workload's own truth: hot.js times every
call of functionA/functionB with process.hrtime and prints its counters every
50 ms (``--print-ms``); perf's timestamps are CLOCK_MONOTONIC (``-k``), like
node's hrtime and Python's time.monotonic_ns, so the two readings that bracket
the main thread's samples give the truth over exactly the capture window.
After every test the target (when still running) is alive, not stopped, not
traced, and no perf process is left behind.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.capture import procutil
from nodeflame.capture.base import BackendUnavailable, CaptureError

from hot_driver import HOT, factory, forget_perf_map

FLAGS = ("--perf-basic-prof", "--interpreted-frames-native-stack")
QUIET = ("--no-logfile-per-isolate", "--logfile=+")   # no isolate-*-v8.log files (see nodeflame/capture/perf.py)
# After a few seconds of CPU, TurboFan (or early on, Maglev on node 24) re-optimises hot.js's chunk() with functionB inlined into it (node 20),
# and code inlined into its caller has no perf-map entry of its own, so perf (like any perf-map profiler)
# then sees chunk where functionB runs.  The workloads here keep functions as frames.
NO_INLINE = ("--no-turbo-inlining", "--no-maglev-inlining")
NODE = shutil.which("node")
TOLERANCE = 3.0   # percentage points


_V8_OPTIONS: dict = {}


def no_inline(node):
    """The NO_INLINE flags this node's V8 knows (node 18 has no Maglev)."""
    if node not in _V8_OPTIONS:
        _V8_OPTIONS[node] = subprocess.run([node, "--v8-options"], capture_output=True, text=True,
                                           timeout=60).stdout
    return [f for f in NO_INLINE if f"--{f[5:]} " in _V8_OPTIONS[node] or f"--{f[5:]}\n" in _V8_OPTIONS[node]]


def line_of(fn):
    """1-based line of ``function fn(`` in hot.js."""
    for i, ln in enumerate(HOT.read_text().splitlines(), 1):
        if ln.startswith(f"function {fn}("):
            return i
    raise AssertionError(f"{fn} not in {HOT}")


def worker_name(p):
    """The thread name hot.js's worker gets: its Worker name on node >= 24, else 'worker 1'."""
    names = set(p.samples["thread"].astype(str))
    return "hot-worker" if "hot-worker" in names else "worker 1"


def _perf_reason():
    from nodeflame.capture.perf import BACKEND
    if NODE is None:
        return "node is not installed"
    return BACKEND.available()


@pytest.fixture(scope="module")
def perf_ok():
    why = _perf_reason()
    if why:
        pytest.skip(f"perf backend cannot run here: {why}")


def perf_processes(pid):
    """pids of perf processes recording ``pid``."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"perf" and b"record" in argv and str(pid).encode() in argv:
            out.append(int(d))
    return out


def assert_healthy(pid):
    """Alive, running (not stopped), not traced, every thread; no perf left recording it."""
    h = procutil.health(pid)
    assert h["state"] not in (None, "Z", "X", "T", "t"), h
    assert h["tracer_pid"] == 0, h
    for tid in procutil.threads(pid):
        st = procutil.state(f"{pid}/task/{tid}")
        assert st not in ("T", "t"), (tid, st)
        assert procutil.tracer_pid(f"{pid}/task/{tid}") == 0, tid
    deadline = time.monotonic() + 3
    while perf_processes(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert perf_processes(pid) == [], "perf left running"


class Hot:
    """hot.js with its stats lines collected, each with the monotonic time it arrived."""

    def __init__(self, *args, flags=FLAGS, node=None):
        node = node or NODE
        self.proc = subprocess.Popen([node, *flags, *QUIET, *no_inline(node), str(HOT), "--print-ms=50", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while True:  # periodic stats lines may come before 'ready' (the worker starting)
            line = self.proc.stdout.readline()
            if '"ready"' in line:
                break
            if not line or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"hot.js did not start: {line!r}")
        self.readings = []   # (arrival ns, stats dict)
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            now = time.monotonic_ns()
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if "t" in d:
                with self.lock:
                    self.readings.append((now, d))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        forget_perf_map(self.pid)

    def truth(self, t_first, t_last, wait=True):
        """Shares of functionA/functionB (and functionW of the worker) between two monotonic times, in %,
        from the readings that bracket them."""
        deadline = time.monotonic() + 2
        while wait and time.monotonic() < deadline:
            with self.lock:
                if self.readings and self.readings[-1][0] > t_last + 60e6:
                    break
            time.sleep(0.05)
        with self.lock:
            rs = list(self.readings)
        # node's hrtime origin in monotonic ns: the smallest arrival delay is the best estimate
        origin = min(arr - d["t"] for arr, d in rs)
        ts = np.array([origin + d["t"] for _, d in rs])
        i0 = max(int(np.searchsorted(ts, t_first, side="right")) - 1, 0)
        i1 = min(int(np.searchsorted(ts, t_last, side="left")), len(rs) - 1)
        a, b = rs[i0][1], rs[i1][1]
        dt = b["t"] - a["t"]
        out = {"functionA": 100 * (b["a"] - a["a"]) / dt, "functionB": 100 * (b["b"] - a["b"]) / dt,
               "window_s": dt / 1e9, "edge_ms": max(t_first - ts[i0], ts[i1] - t_last) / 1e6}
        wt = b["wt"] - a["wt"]
        if wt > 0:
            out["functionW"] = 100 * (b["w"] - a["w"]) / wt
        return out


@pytest.fixture
def hot(perf_ok):
    yield from factory(Hot)


def schedstat(pid, tid=None):
    """(ns on CPU, ns waiting for a CPU, timeslices) of one thread (the main thread by default)."""
    with open(f"/proc/{pid}/task/{tid or pid}/schedstat") as fh:
        return tuple(int(x) for x in fh.read().split()[:3])


def capture_timed(pid, seconds, **kw):
    """nf.capture with the perf backend; (profile, seconds of the main thread's CPU time while perf recorded,
    seconds of wall time it recorded): schedstat read as the capture enters 'sampling' (perf record has
    acknowledged that it is enabled) and 'stopping'.  Over the whole call, perf's start and the build add
    CPU time of the target that no sample could see (at load 8 that made a share of 0.45-0.2 of the periods)."""
    at = {}

    def phase(name):
        if name in ("sampling", "stopping"):
            at[name] = (schedstat(pid)[0], time.monotonic_ns())
    p = nf.capture(pid, seconds, backend="perf", on_phase=phase, **kw)
    (c0, t0), (c1, t1) = at["sampling"], at["stopping"]
    return p, (c1 - c0) / 1e9, (t1 - t0) / 1e9


def shares(p, thread):
    """% of ``thread``'s samples whose stack holds each function (by name), and the sample count."""
    s = p.samples
    sel = (s["thread"].astype(str) == thread).to_numpy()
    stacks = s["stack"].to_numpy()[sel]
    w = s["weight"].to_numpy()[sel]
    prefix = p.stacks["prefix"].to_numpy()
    sframe = p.stacks["frame"].to_numpy()
    ffunc = p.frames["func"].to_numpy()
    names = p.funcs["name"].astype(str).to_numpy()
    per_stack = {}
    for st in np.unique(stacks).tolist():
        seen, k = set(), st
        while k >= 0:
            seen.add(names[ffunc[sframe[k]]])
            k = prefix[k]
        per_stack[st] = seen
    total = w.sum()
    out = {}
    for fn in ("functionA", "functionB", "functionW"):
        hit = np.fromiter((fn in per_stack[x] for x in stacks.tolist()), bool, len(stacks))
        out[fn] = 100 * w[hit].sum() / total if total else 0.0
    return out, int(total)


# ------------------------------------------------------------------ capture of a live pid

def test_backends_lists_perf_available(hot):
    h = hot()
    row = nf.backends(h.pid).set_index("backend").loc["perf"]
    assert row["available"], row["reason"]
    assert "perf-basic-prof" in row["needs"]
    assert_healthy(h.pid)


def _capture_and_compare(h, hz=3999, duration=3):
    """Capture h with perf; (profile, captured shares, truth, main-thread CPU fraction, lines to print)."""
    time.sleep(1.0)   # past start-up: functions optimised, steady state
    t0 = time.monotonic_ns()
    p, main_cpu_s, wall_s = capture_timed(h.pid, duration, hz=hz)
    t1 = time.monotonic_ns()
    p.validate()
    assert_healthy(h.pid)
    got, n_main = shares(p, "main")
    tm = p.samples[p.samples["thread"].astype(str) == "main"]["time_ns"]
    cpu = main_cpu_s / wall_s
    # perf samples the thread's CPU time: at least half its periods in the CPU time it really got while recorded
    assert n_main >= max(50, 0.5 * hz * main_cpu_s), \
        f"too few main-thread samples ({n_main}) for {main_cpu_s:.2f} s of its CPU at {hz} Hz"
    truth = h.truth(int(tm.min()), int(tm.max()))
    w, n_w = shares(p, worker_name(p))
    lines = [f"perf attribution at {hz} Hz, main thread: {n_main} samples; truth over "
             f"{truth['window_s']:.2f} s; main thread on CPU {100 * cpu:.0f} % of the capture"]
    for fn in ("functionA", "functionB"):
        lines.append(f"  {fn}: captured {got[fn]:.2f} %, truth {truth[fn]:.2f} %, error {got[fn] - truth[fn]:+.2f} pp")
    lines.append(f"  functionW, {worker_name(p)} ({n_w} samples): captured {w['functionW']:.2f} %, "
                 f"truth {truth.get('functionW', float('nan')):.2f} %")
    print("\n" + "\n".join(lines))
    assert got["functionW"] == 0  # functionW only ever runs in the worker
    assert n_w > 0 and w["functionW"] > 50 and w["functionA"] == w["functionB"] == 0
    return p, got, w, truth, cpu, t0, t1


@pytest.mark.solo   # its truth needs the main thread on a CPU: with a second test worker beside it, it was
# on one only 62 % of the time (idle machine) and the comparison skipped
def test_capture_names_js_kinds_threads_and_shares_match_truth(hot):
    """Names, kinds, threads and meta of a capture, and functionA/functionB's shares of the main thread
    against hot.js's own truth: within TOLERANCE points when the main thread had its CPU.

    hot.js's truth is wall time (hrtime around each call) and perf samples CPU time: a gap in which the
    thread waits for a CPU counts as wall time of the function it was in.  On a machine so busy that the
    main thread runs less than 80 % of the time (2 cores, a dozen runnable tasks: 5-20 %) those gaps are
    most of the window and, landing in lumps of 1-100 ms (all involuntary preemptions), move the truth by
    10-20 points from one 3-second window to the next with no profiler attached, while perf's shares stay
    within 1-2 points of each other; there the truth is printed, not compared.  A CPU-time truth is no
    way out: node's per-thread CPU clock (process.threadCpuUsage, getrusage) moves in scheduler ticks,
    so it is itself a 250 Hz sampler."""
    h = hot()
    p, got, w, truth, cpu, t0, t1 = _capture_and_compare(h)
    m = p.meta
    assert m["backend"] == "perf" and m["pid"] == h.pid and m["perf_version"] and m["perf_event"].startswith("cpu-clock")
    assert m["period_ns"] == pytest.approx(1e9 / 3999, rel=0.01)
    assert m["unit"] == "samples" and (p.samples["weight"] == 1).all()
    # time_ns is CLOCK_MONOTONIC: every sample inside the capture call
    assert t0 <= p.samples["time_ns"].min() <= p.samples["time_ns"].max() <= t1
    threads = set(p.samples["thread"].astype(str))
    assert {"main", worker_name(p)} <= threads, threads
    assert m["thread_tids"]["main"] == [h.pid]
    f = p.funcs.set_index("name")
    for fn in ("functionA", "functionB", "functionW"):
        assert fn in f.index, fn
        assert f.loc[fn, "kind"] == "js" and f.loc[fn, "file"] == str(HOT) and f.loc[fn, "line"] == line_of(fn)
    kinds = dict(zip(p.funcs["name"].astype(str), p.funcs["kind"].astype(str)))
    assert kinds.get("uv_run") == "native"
    assert any(n.startswith("Builtins_") and k == "builtin" for n, k in kinds.items())
    assert any(n.startswith("node::") and k == "native" for n, k in kinds.items())
    assert got["functionA"] > got["functionB"] > 15 and got["functionA"] + got["functionB"] > 80
    if cpu < 0.8:  # everything above was checked; only the comparison with the truth cannot be made
        pytest.skip(f"main thread on CPU only {100 * cpu:.0f} % of the time: the workload's wall-time truth "
                    "is not a measure of CPU shares on a machine this loaded, so shares were not compared")
    for fn in ("functionA", "functionB"):
        assert abs(got[fn] - truth[fn]) <= TOLERANCE, (fn, got[fn], truth[fn])
    assert abs(w["functionW"] - truth["functionW"]) <= TOLERANCE, (w["functionW"], truth["functionW"])


@pytest.mark.solo   # its truth needs the main thread on a CPU: with a second test worker beside it, it was
# on one only 62 % of the time (idle machine) and the comparison skipped
def test_shares_match_truth_with_the_main_thread_alone(hot):
    """The same comparison with no worker thread, so the main thread has a CPU of its own on a 2-core
    machine and the wall-time truth measures its CPU shares: here it is compared, not skipped."""
    h = hot("--no-worker")
    time.sleep(1.0)
    p, main_cpu_s, wall_s = capture_timed(h.pid, 3, hz=999)
    cpu = main_cpu_s / wall_s
    assert_healthy(h.pid)
    got, n_main = shares(p, "main")
    # perf samples CPU time: at least half the 999 Hz periods of the CPU time the thread really got (a
    # fixed 1500 failed at load 12 with 778 samples for a thread that ran a third of the time)
    assert n_main >= max(50, 0.5 * 999 * main_cpu_s), (n_main, main_cpu_s)
    tm = p.samples[p.samples["thread"].astype(str) == "main"]["time_ns"]
    truth = h.truth(int(tm.min()), int(tm.max()))
    if cpu < 0.8:
        pytest.skip(f"main thread on CPU only {100 * cpu:.0f} % even without the worker: the machine is overloaded")
    for fn in ("functionA", "functionB"):
        assert abs(got[fn] - truth[fn]) <= TOLERANCE, (fn, got[fn], truth[fn], cpu)


def _other_nodes():
    """Official node builds already unpacked under ~/.cache/nodeflame (tests/walker_helpers.py fetches them)."""
    from walker_helpers import NODES
    system = os.path.realpath(NODE) if NODE else None
    return [pytest.param(path, id=name) for name, path in NODES if name != "system" and path != system]


@pytest.mark.parametrize("node", _other_nodes() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no other node builds under ~/.cache/nodeflame (the walker tests fetch them)"))])
def test_capture_on_other_node_versions(hot, node):
    """Perf-map names and thread names change with node: 'LazyCompile:*f' (18), 'JS:*f' (20), "JS:*'f" (24);
    threads all 'node' (20), 'MainThread'/'WorkerThread'/'V8Worker' (24)."""
    h = hot(node=node)
    time.sleep(0.5)
    p = nf.capture(h.pid, 1.5, backend="perf", hz=1999)
    p.validate()
    assert_healthy(h.pid)
    main, _ = shares(p, "main")
    wk, n_w = shares(p, worker_name(p))
    if main["functionA"] == 0 and p.meta.get("node_version", "").startswith("v18."):
        with open(f"/tmp/perf-{h.pid}.map", encoding="utf-8", errors="replace") as fh:
            if "functionA" not in fh.read():
                # known, unexplained: node 18 (V8 10.2) writes no perf-map entry for hot.js's main-thread
                # functionA/functionB since hot.js warms them through a megamorphic call site (a31ba5f),
                # while functionW in the worker is written; perf then sees only '[perf-PID.map]'
                pytest.xfail("node 18 wrote no perf-map entry for functionA (V8 10.2 perf-basic-prof gap)")
    assert main["functionA"] > main["functionB"] > 10 and main["functionW"] == 0, main
    assert n_w and wk["functionW"] > 50 and wk["functionA"] == 0, wk
    f = p.funcs.set_index("name")
    assert f.loc["functionA", "file"] == str(HOT) and f.loc["functionA", "line"] == line_of("functionA")
    assert not any(n.startswith("'") for n in f.index)


def test_rates_in_step_with_the_tick_are_moved_off_it():
    from nodeflame.capture.perf import off_the_tick
    assert [off_the_tick(h) for h in (1000, 500, 100, 99, 999, 997, 2000, 1234, 1)] == \
        [999, 499, 99, 99, 999, 997, 1999, 1234, 1]


def test_capture_main_thread_only(hot):
    h = hot()
    p = nf.capture(h.pid, 2, backend="perf", threads="main", hz=1000)
    assert " -F 999 " in p.meta["perf_record"], p.meta["perf_record"]
    p.validate()
    assert_healthy(h.pid)
    assert set(p.samples["thread"].astype(str)) == {"main"}
    assert (p.samples["tid"] == h.pid).all()
    names = set(p.funcs["name"].astype(str))
    assert {"functionA", "functionB"} <= names and "functionW" not in names
    assert "--no-inherit" in p.meta["perf_record"] and f"-t {h.pid}" in p.meta["perf_record"]


def test_target_exits_mid_capture_keeps_samples(hot):
    h = hot("--exit-after-ms=1500")
    t0 = time.monotonic()
    p = nf.capture(h.pid, 3, backend="perf")
    assert time.monotonic() - t0 < 3 + 10
    p.validate()
    assert h.proc.wait(5) == 0
    assert perf_processes(h.pid) == []
    assert {"functionA", "functionB"} <= set(p.funcs["name"].astype(str))
    main = p.samples[p.samples["thread"].astype(str) == "main"]
    assert len(main) > 20
    # samples up to the end: the last ones come from the moment node exited (its exit path on the stack)
    assert (main["time_ns"].max() - main["time_ns"].min()) / 1e9 > 0.3
    assert any("exited" in w for w in p.meta["warnings"]), p.meta["warnings"]


def test_ctrl_c_ends_early_and_keeps_samples(hot):
    h = hot()
    # Ctrl-C 1 s into the sampling (timed from the 'sampling' phase: on a busy machine perf's start took
    # longer than a timer started with the call, and the Ctrl-C came before there was anything to keep)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    # Ctrl-C raises KeyboardInterrupt here, as in a user's Python (on a pytest-xdist worker something
    # before this test left SIGINT handled otherwise: twice the capture ran its full 10 s)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    t0 = time.monotonic()
    try:
        p = nf.capture(h.pid, 10, backend="perf", on_phase=lambda ph: ph == "sampling" and timer.start())
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    assert p.meta["interrupted"] is True
    # ended early: the sampling lasted about the 1 s before Ctrl-C, not the 10 s asked for (perf's own stop
    # and `perf script` come after; on a loaded machine they take seconds, so the wall time says less)
    assert p.meta["duration_ns"] < 5e9, p.meta["duration_ns"]
    assert time.monotonic() - t0 < 30
    assert "functionA" in set(p.funcs["name"].astype(str))
    assert_healthy(h.pid)


def test_perf_dying_mid_capture_is_a_clear_error(hot):
    h = hot()
    killed = []

    def kill_perf():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not killed:
            found = perf_processes(h.pid)
            if found:
                time.sleep(1.0)  # sampling by now: the capture is under way
                for pp in found:
                    os.kill(pp, signal.SIGKILL)
                    killed.append(pp)
            time.sleep(0.05)
    t = threading.Thread(target=kill_perf)
    t.start()
    try:
        with pytest.raises(CaptureError, match=r"perf record exited early \(status -9\)"):
            nf.capture(h.pid, 5, backend="perf")
    finally:
        t.join()
    assert killed
    assert_healthy(h.pid)


# ------------------------------------------------------------------ run()

def test_run_starts_node_with_the_flags(perf_ok, tmp_path):
    p = nf.run([NODE, *no_inline(NODE), str(HOT)], 2, backend="perf", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
               cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no isolate-*-v8.log left in the program's directory
    p.validate()
    assert p.meta["backend"] == "perf"
    cmd = p.meta["command"]
    assert cmd.startswith(f"{NODE} --perf-basic-prof --interpreted-frames-native-stack {' '.join(QUIET)} "), cmd
    pid = p.meta["pid"]
    assert not procutil.exists(pid) and perf_processes(pid) == []
    # node never removes the perf map the flag makes it write: the run that added the flag does, once
    # perf has read it and node has ended
    assert p.meta["perf_maps_removed"] == [f"/tmp/perf-{pid}.map"], p.meta.get("perf_maps_removed")
    assert not os.path.exists(f"/tmp/perf-{pid}.map")
    names = set(p.funcs["name"].astype(str))
    assert {"functionA", "functionB", "functionW"} <= names
    assert {"main", worker_name(p)} <= set(p.samples["thread"].astype(str))
    # perf was sampling before node ran its first instruction: node's start-up (its bootstrap, tens of ms
    # of CPU) is in the profile
    assert "node::Realm::RunBootstrapping" in names or \
        any(f.startswith("node:internal/bootstrap/") for f in p.funcs["file"].astype(str)), sorted(names)[:40]


# ------------------------------------------------------------------ faults

def _file_state(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def test_target_without_perf_map(hot):
    h = hot(flags=())
    # an earlier node given this pid may have left its perf map (node never removes it): the capture
    # must neither make one nor touch one
    perf_map = f"/tmp/perf-{h.pid}.map"
    before = _file_state(perf_map)
    why = nf.backends(h.pid).set_index("backend").loc["perf", "reason"]
    assert "--perf-basic-prof" in why and "inspector" in why, why
    with pytest.raises(BackendUnavailable, match="--perf-basic-prof") as ei:
        nf.capture(h.pid, 1, backend="perf")
    assert "inspector" in str(ei.value)
    assert_healthy(h.pid)
    assert _file_state(perf_map) == before, (perf_map, before)


def test_perf_not_installed(hot, monkeypatch, tmp_path):
    h = hot()
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.path.exists(os.path.join(d, "perf"))]
    monkeypatch.setenv("PATH", os.pathsep.join(path + [str(tmp_path)]))
    assert shutil.which("perf") is None
    with pytest.raises(BackendUnavailable) as ei:
        nf.capture(h.pid, 1, backend="perf")
    assert "perf is not installed: apt-get install linux-perf" in str(ei.value)
    assert nf.backends(h.pid).set_index("backend").loc["perf", "reason"] == \
        "perf is not installed: apt-get install linux-perf"
    with pytest.raises(BackendUnavailable, match="linux-perf"):
        nf.run([NODE, str(HOT)], 1, backend="perf", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert_healthy(h.pid)


def test_not_permitted_names_perf_event_paranoid(monkeypatch, tmp_path):
    """perf_event_paranoid 3 (Debian's default) for a user without CAP_PERFMON: injected through the
    module's path to the sysctl and its privilege check, since the machine's own must not be changed."""
    from nodeflame.capture import perf as P
    f = tmp_path / "perf_event_paranoid"
    f.write_text("3\n")
    monkeypatch.setattr(P, "PARANOID", str(f))
    monkeypatch.setattr(P, "privileged", lambda: False)
    if P.perf_path() is None:
        pytest.skip("perf is not installed")
    why = P.BACKEND.available()
    assert "perf_event_paranoid" in why and str(f) in why and "3" in why and "2 or lower" in why, why
    f.write_text("2\n")
    assert P.BACKEND.available() is None
    assert not P.kernel_allowed()   # 2: user space only, the session then records cpu-clock:u
    f.write_text("1\n")
    assert P.kernel_allowed()


# ------------------------------------------------------------------ thread names and perf's messages (no perf run)

def _sample(comm, pid, tid, t, frames):
    lines = [f"{comm} {pid}/{tid} {t:.9f}:    1001001 cpu-clock: "]
    lines += [f"\t{i + 1:x} {f} (/usr/bin/node)" for i, f in enumerate(frames)]
    return "\n".join(lines) + "\n\n"


def test_thread_names_from_perf_script_text():
    """main = the pid; node workers (Worker::Run on a stack, or node 24's WorkerThread comm) by the name node 24
    gives their thread, else numbered in tid order; other threads keep their comm; a forked child is named by
    its pid; threads='main' keeps the pid."""
    from nodeflame.capture import perf as P
    from nodeflame.capture.base import CaptureOptions, Target
    loop = ["uv_run", "node::Start", "__libc_start_main"]
    text = (_sample("node", 100, 100, 1.0, ["JS:*f /a.js:1:1"] + loop)
            + _sample("node", 100, 107, 1.1, ["JS:*w /w.js:1:1", "uv_run", "node::worker::Worker::Run", "start_thread"])
            + _sample("node", 100, 103, 1.2, ["epoll_wait", "uv_run", "node::worker::Worker::Run", "start_thread"])
            + _sample("WorkerThread", 100, 109, 1.3, ["__schedule"])
            + _sample("node", 100, 101, 1.4, ["uv__work_done", "worker", "start_thread"])
            + _sample("V8Worker", 100, 102, 1.5, ["v8::internal::ScavengerCollector::JobTask::Run", "start_thread"])
            + _sample("hot-worker", 100, 111, 1.55, ["JS:*w /w.js:1:1", "node::worker::Worker::Run"])
            + _sample("hot-worker", 100, 112, 1.56, ["JS:*w /w.js:1:1", "node::worker::Worker::Run"])
            + _sample("sh", 120, 120, 1.6, ["execve"])).encode()
    for threads, want in (("all", {100: "main", 103: "worker 1", 107: "worker 2", 109: "worker 3", 101: "node",
                                   102: "V8Worker", 111: "hot-worker", 112: "hot-worker (worker 5)",
                                   120: "sh (pid 120)"}),
                          ("main", {100: "main"})):
        s = P.PerfSession(P.BACKEND, Target(pid=100), CaptureOptions(threads=threads), "perf")
        try:
            p = s._read(text)
        finally:
            s.close()
        assert not os.path.exists(s.tmpdir)
        p.validate()
        got = dict(zip(p.samples["tid"].tolist(), p.samples["thread"].astype(str)))
        assert got == want
        assert (p.samples["weight"] == 1).all() and p.meta["period_ns"] == 1001001
        assert p.meta["thread_tids"]["main"] == [100]


def test_lost_events_from_perf_messages():
    from nodeflame.capture.perf import _lost
    assert _lost("[ perf record: Captured and wrote 0.6 MB perf.data (3416 samples) ]") == {}
    msg = ("Warning:\nProcessed 51234 events and lost 7 chunks!\n\nCheck IO/CPU overload!\n\n"
           "Warning:\nProcessed 4000 samples and lost 2.50%  samples!\n")
    assert _lost(msg) == {"perf_lost_chunks": 7, "perf_lost_samples_percent": 2.5}


def test_capture_leaves_no_temporary_files(hot, tmp_path, monkeypatch):
    import glob
    import tempfile
    # a private temporary directory, so that other captures on the machine cannot make this fail
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    pattern = os.path.join(str(private), "nodeflame-perf-*")
    h = hot("--no-worker")
    seen = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: seen.append(real_mkdtemp(*a, **k)) or seen[-1])
    p = nf.capture(h.pid, 0.5, backend="perf")
    assert len(p.samples)
    assert seen and all(d.startswith(str(private)) for d in seen)   # the capture did use a temporary dir
    assert glob.glob(pattern) == [] and not any(os.path.exists(d) for d in seen)
    assert_healthy(h.pid)


def test_run_of_a_command_that_is_not_node_gets_the_flags_through_node_options(perf_ok, tmp_path):
    cmd = ["/bin/sh", "-c", f'exec "{NODE}" {" ".join(no_inline(NODE))} "{HOT}" --no-worker']
    p = nf.run(cmd, 1.5, backend="perf", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=tmp_path)
    p.validate()
    f = p.funcs.set_index("name")
    assert "functionA" in f.index and f.loc["functionA", "file"] == str(HOT)  # the perf map was written
    assert perf_processes(p.meta["pid"]) == []
    assert not os.path.exists(f"/tmp/perf-{p.meta['pid']}.map")             # and removed once node ended


# ------------------------------------------------------------------ measuring by hand
# .venv/bin/python tests/test_capture_perf.py [SECONDS [HZ [RUNS]]]: the attribution errors of the perf backend
# against hot.js's truth, one line per run (the main thread's CPU share says how far the truth can be trusted).
if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(HOT.parent.parent))
    secs, hz, runs = (float(sys.argv[1]) if len(sys.argv) > 1 else 10.0, int(sys.argv[2]) if len(sys.argv) > 2
                      else 999, int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    why = _perf_reason()
    if why:
        sys.exit(f"perf backend cannot run here: {why}")
    for run in range(runs):
        h = Hot()
        try:
            _capture_and_compare(h, hz=hz, duration=secs)
        finally:
            h.kill()


def test_optimized_code_with_inlined_helpers_gets_the_warning(perf_ok):
    """The realistic case beside the NO_INLINE workloads: a warmed process whose helpers TurboFan inlined.
    perf maps name only the outermost function of optimized code, so perf cannot show parseToken or norm;
    the capture must say so, with the share of samples it concerns."""
    wl = os.path.join(os.path.dirname(__file__), "workloads", "inline.js")
    proc = subprocess.Popen([NODE, *FLAGS, *QUIET, wl, "--warm-ms=3000"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert b'"ready"' in proc.stdout.readline()
        p = nf.capture(proc.pid, 2, backend="perf")
    finally:
        proc.kill()
        proc.wait(10)
    names = set(p.funcs["name"].astype(str))
    assert "round" in names or "chunk" in names, sorted(names)[:40]
    warn = [w for w in p.meta["warnings"] if "inlined" in w]
    assert warn, p.meta["warnings"]
    share = float(warn[0].split("%")[0]) / 100
    assert share > 0.5, warn
