"""tests/workloads/hot.js as a child process, driven over stdin/stdout (one JSON object per line).

Shared by the capture tests and the benchmarks (bench/ puts tests/ on sys.path).
"""
from __future__ import annotations

import json
import os
import pathlib
import queue
import shutil
import subprocess
import tempfile
import threading
import time

HOT = pathlib.Path(__file__).resolve().parent / "workloads" / "hot.js"
NODE = shutil.which("node")


class HotJS:
    """tests/workloads/hot.js as a child process, driven over stdin/stdout."""

    def __init__(self, *args, node=None, node_args=(), env=None, stderr_path=None, ready=True, cwd=None,
                 ready_timeout=20):
        node = node or NODE
        if node is None:
            raise RuntimeError("node is not installed (apt-get install nodejs)")
        self.argv = [node, *node_args, str(HOT), *args]
        self.stderr_path = stderr_path
        self._own_cwd = None
        if cwd is None and "--perf-basic-prof" in node_args:
            # --perf-basic-prof opens V8's log, isolate-*-v8.log in the working directory: not the checkout's
            cwd = self._own_cwd = tempfile.mkdtemp(prefix="nodeflame-hot-")
        self._err = open(stderr_path, "w+b") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, env=env, bufsize=0, cwd=cwd)
        self.pid = self.proc.pid
        self.lines: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.info = self.expect("ready", ready_timeout) if ready else None

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            try:
                self.lines.put(json.loads(raw))
            except ValueError:
                pass
        self.lines.put(None)

    def expect(self, key, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"hot.js (pid {self.pid}) gave no {key!r} line within {timeout:g} s")
            try:
                msg = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if msg is None:
                raise AssertionError(f"hot.js (pid {self.pid}) closed its stdout (exit {self.proc.poll()}) "
                                     f"while we waited for {key!r}; stderr: {self.stderr()[-500:]!r}")
            if key in msg:
                return msg

    def send(self, cmd):
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()

    def stats(self):
        self.send("stats")
        return self.expect("t")

    def ping(self, timeout=10.0):
        self.send("ping")
        return self.expect("pong", timeout)

    def pause(self, timeout=10.0):
        """Stop the main thread's and the worker's loops between two calls (the CPU goes to others); returns
        once hot.js says both stopped.  The event loop still answers every command."""
        self.send("pause")
        return self.expect("paused", timeout)

    def resume(self, timeout=10.0):
        """Undo pause(); returns once hot.js says both loops run again."""
        self.send("resume")
        return self.expect("resumed", timeout)

    def stderr(self) -> str:
        if not self.stderr_path:
            return ""
        with open(self.stderr_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def exit(self, timeout=30):
        """Ask hot.js to exit (it writes its profile when started with --cpu-prof); kill it if it does not."""
        try:
            self.send("exit")
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self._own_cwd:
            shutil.rmtree(self._own_cwd, ignore_errors=True)
        if any(a.startswith("--perf-basic-prof") or a == "--perf-prof" for a in self.argv):
            forget_perf_map(self.pid)
        if self.stderr_path:
            self._err.close()


def factory(make):
    """Body of a pytest factory fixture: yields ``start(*args, **kw)``, which starts a process with
    ``make`` and returns it; every process started is killed at teardown."""
    started = []

    def start(*args, **kw):
        proc = make(*args, **kw)
        started.append(proc)
        return proc
    try:
        yield start
    finally:
        for proc in started:
            proc.kill()


def forget_perf_map(pid: int) -> None:
    """Remove the /tmp/perf-PID.map a node started with --perf-basic-prof left behind (node never does;
    a later process given the same pid would find it)."""
    try:
        os.unlink(f"/tmp/perf-{pid}.map")
    except OSError:
        pass
