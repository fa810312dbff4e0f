"""The live demo (``python -m nodeflame.demo``, what ``make demo`` runs).

Starts the bundled demo node program (``demo.js``: a request handler serving
fake requests in a loop, and a worker thread making thumbnails), captures it
live for a few seconds with the best backend that can run here (falling back
to the inspector when that one fails), prints a readable top of the text tree
and the ten functions with the most self time, writes ``demo.svg``, ``demo.cpuprofile`` and ``demo.txt`` into
the current directory (or ``--out DIR``), and always kills the demo program.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time

from ..frames.errors import NodeflameError

DEMO_JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.js")
TREE_LINES = 40          # lines of the text tree printed
TREE_MIN_SHARE = 0.01    # nodes below this share of the samples are left out of the printed tree
HIDDEN_KINDS = ("native", "kernel", "builtin")   # hidden in the printed tree only


def _say(msg: str = "") -> None:
    print(msg, flush=True)


def _note(msg: str) -> None:
    print(f"nodeflame demo: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the demo program
def start_demo(node: str | None = None, timeout: float = 15.0):
    """Start demo.js; returns (Popen, ready dict).  The program exits when its stdin closes."""
    node = node or shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise NodeflameError("node is not on PATH: install Node.js (apt-get install nodejs) to run the demo")
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen([node, DEMO_JS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                break
            if sel.select(min(left, 0.2)):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                line += chunk
        sel.close()
        try:
            ready = json.loads(line.decode("utf-8", "replace").splitlines()[0]) if line.strip() else None
        except ValueError:
            ready = None
        if not ready or "ready" not in ready:
            err.seek(0)
            tail = err.read().decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            raise NodeflameError(f"the demo program did not start ({node} {DEMO_JS}): {tail[0]}")
        proc._nodeflame_stderr = err
        return proc, ready
    except BaseException:
        stop_demo(proc)
        err.close()
        raise


def stop_demo(proc) -> None:
    """End the demo program on every path: close its stdin, SIGTERM, SIGKILL; reap it."""
    if proc is None:
        return
    try:
        if proc.stdin:
            proc.stdin.close()
    except OSError:
        pass
    from ..capture import procutil
    procutil.terminate(proc, 3.0)
    for f in (proc.stdout, getattr(proc, "_nodeflame_stderr", None)):
        try:
            if f:
                f.close()
        except OSError:
            pass


# ------------------------------------------------------------------ capturing
def capture_demo(pid: int, duration: float, backend: str = "auto", hz: int | None = None):
    """Capture pid with ``backend``; when auto's choice fails (or samples nothing), try the inspector."""
    from ..capture import capture
    from ..capture.base import CaptureError, TargetError, TargetExited
    try:
        p = capture(pid, duration, backend=backend, hz=hz, progress=None)
    except (TargetError, TargetExited):
        raise
    except CaptureError as e:
        if backend != "auto":
            raise
        _note(f"auto's backend failed ({e}); trying the inspector backend")
        return capture(pid, duration, backend="inspector", hz=hz, progress=None)
    if backend == "auto" and p.total == 0 and p.meta.get("backend") != "inspector":
        _note(f"the {p.meta.get('backend')} backend took no samples; trying the inspector backend")
        return capture(pid, duration, backend="inspector", hz=hz, progress=None)
    return p


# ------------------------------------------------------------------ printing
def readable_tree(p, max_lines: int = TREE_LINES, min_share: float = TREE_MIN_SHARE) -> tuple[str, list[str]]:
    """The top of the text tree: native frames hidden (they are in the files), nodes under
    ``min_share`` left out, at most ``max_lines`` lines.  Returns (text, notes)."""
    notes = []
    q = p
    kinds = p.funcs["kind"].astype(str)
    hidden = kinds.isin(HIDDEN_KINDS).to_numpy()
    if hidden.any() and not hidden.all():
        labels = sorted(set(p.func_labels()[hidden]) - set(p.func_labels()[~hidden]))
        if labels:
            q = p.hide("^(?:" + "|".join(re.escape(str(x)) for x in labels) + ")$")
            notes.append("native and V8 builtin frames hidden")
    min_count = max(1, math.ceil(p.total * min_share))
    text = q.text(min_count=min_count)
    lines = text.splitlines()
    if min_count > 1:
        notes.append(f"nodes under {min_share:.0%} left out")
    if len(lines) > max_lines:
        notes.append(f"{len(lines) - max_lines} more lines")
        lines = lines[:max_lines] + ["  ..."]
    return "\n".join(lines), notes


def top_table(p, n: int = 10) -> str:
    import pandas as pd
    t = p.top(n)
    rows = pd.DataFrame({
        "self %": t["self_pct"].round(1),
        "total %": t["total_pct"].round(1),
        "kind": t["kind"].astype(str),
        "function": t["name"].astype(str).str.slice(0, 50),
        "where": [_where(f, ln) for f, ln in zip(t["file"].astype(str), t["line"])],
    })
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        return rows.to_string(index=False)


def _where(file: str, line) -> str:
    if not file:
        return ""
    base = file.rsplit("/", 1)[-1] or file
    return f"{base}:{int(line)}" if line else base


# ------------------------------------------------------------------ main
def write_outputs(p, out_dir: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Write demo.svg / demo.cpuprofile / demo.txt; returns ([(path, what)], notes)."""
    import warnings
    wrote, notes = [], []
    plan = [("demo.cpuprofile", "cpuprofile", "open in Chrome DevTools (Performance > Load profile) or speedscope"),
            ("demo.txt", "text", "the whole text tree"),
            ("demo.svg", "svg", "flame graph: open in a browser (hover, click to zoom, search)")]
    for name, fmt, what in plan:
        path = os.path.join(out_dir, name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # e.g. cpuprofile merging threads: said below instead
                p.write(path, format=fmt)
        except Exception as e:  # one failing writer must not cost the other files
            notes.append(f"{name} not written: the {fmt} writer failed: {type(e).__name__}: {e}")
            continue
        wrote.append((path, what))
    return wrote, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nodeflame.demo",
                                 description="Profile nodeflame's bundled demo node program live and show the result.")
    ap.add_argument("--out", default=".", help="directory for demo.svg, demo.cpuprofile, demo.txt (default: .)")
    ap.add_argument("-d", "--duration", type=float, default=4.0, help="seconds to capture (default 4)")
    ap.add_argument("--backend", default="auto", help="capture backend (default auto: the best that can run)")
    ap.add_argument("--hz", type=int, default=None, help="samples per second (default: the backend's)")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except NodeflameError as e:
        print(f"nodeflame demo: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nodeflame demo: interrupted", file=sys.stderr)
        return 130


def _run(args) -> int:
    import nodeflame  # noqa: F401  (registers the writers)
    if not args.duration > 0:
        raise NodeflameError(f"duration must be positive, got {args.duration:g}")
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    proc, ready = start_demo()
    try:
        pid = ready["ready"]
        _say(f"Started the demo program: pid {pid}, node {ready.get('node', '?')} ({DEMO_JS})")
        _say(f"Capturing it live for {args.duration:g} s (backend: {args.backend}) ...")
        p = capture_demo(pid, args.duration, args.backend, args.hz)
    finally:
        stop_demo(proc)
    m = p.meta
    threads = m.get("threads") or []
    _say(f"Captured {p.total} samples in {(m.get('duration_ns') or 0) / 1e9:.1f} s with the {m.get('backend')} "
         f"backend ({m.get('achieved_hz') or '?'} Hz), threads: {', '.join(threads) or 'main'}")
    skipped = {k: v for k, v in (m.get("backends_skipped") or {}).items()}
    if skipped:
        _say("Backends not used (nodeflame backends --pid PID says more):")
        for k, v in skipped.items():
            v = str(v)
            _say(f"  {k}: {v if len(v) <= 110 else v[:107] + '...'}")
    for w in m.get("warnings") or []:
        _say(f"Warning: {w}")
    tree, notes = readable_tree(p)
    _say()
    _say("Call tree (samples per function" + (", " + ", ".join(notes) if notes else "") + "):")
    _say(tree)
    _say()
    _say("Top 10 functions by self time:")
    _say(top_table(p, 10))
    _say()
    wrote, notes = write_outputs(p, out_dir)
    _say("Wrote:")
    for path, what in wrote:
        _say(f"  {path}  - {what}")
    for n in notes:
        _say(f"  ({n})")
    if len(threads) > 1 and any(path.endswith(".cpuprofile") for path, _ in wrote):
        _say("  (the .cpuprofile format holds one thread: its samples of all threads are merged)")
    _say()
    _say(f"The demo program (pid {pid}) has been stopped.  Try it on your own program:")
    _say("  nodeflame PID text 10          # torch's text tree")
    _say("  nodeflame record --pid PID -d 10 -o profile.cpuprofile")
    _say("  nodeflame backends --pid PID   # what can capture it here")
    return 0


__all__ = ["main", "start_demo", "stop_demo", "capture_demo", "readable_tree", "top_table", "DEMO_JS"]
