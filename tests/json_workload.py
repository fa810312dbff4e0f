"""A node workload that prints one JSON object per line (read by a thread) and takes commands on stdin:
the harness of tests/workloads/inline.js, osr.js, http_phases.js and wasm.js."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import threading
import time

WORKLOADS = pathlib.Path(__file__).resolve().parent / "workloads"


class JsonWorkload:
    """``node --inspect-port=0 workloads/<script> args`` (SIGUSR1 then opens the inspector on a free port:
    other tests may hold 9229); ``cpus``: the CPUs it (and what it starts) may run on."""

    def __init__(self, node, script, *args, cpus=None):
        pre = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen([node, "--inspect-port=0", str(WORKLOADS / script), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0, preexec_fn=pre)
        self.pid = self.proc.pid
        self.msgs: list = []          # (monotonic ns at receipt, message); (ns, None) once it exited
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            with self.cv:
                self.msgs.append((time.monotonic_ns(), msg))
                self.cv.notify_all()
        with self.cv:
            self.msgs.append((time.monotonic_ns(), None))
            self.cv.notify_all()

    def wait_for(self, pred, timeout, after=0):
        """Index of the first message from ``after`` on for which ``pred`` holds."""
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                for i in range(after, len(self.msgs)):
                    m = self.msgs[i][1]
                    if m is None:
                        raise AssertionError(f"the workload exited ({self.proc.poll()})")
                    if pred(m):
                        return i
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("the workload did not answer in time")
                self.cv.wait(left)

    def send(self, cmd):
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, cmd, key, timeout=10):
        """Send ``cmd`` and return the first message after it that has ``key``."""
        n = len(self.msgs)
        self.send(cmd)
        return self.msgs[self.wait_for(lambda m: key in m, timeout, after=n)][1]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
