"""The capture command line against a real node process (tests/workloads/hot.js).

In-process through ``nodeflame.cli.main`` (and as subprocesses for the torch
form and for Ctrl-C).  Captures use the inspector backend, the one that works
everywhere, and last about a second.
"""
import json
import os
import pathlib
import selectors
import shutil
import subprocess
import sys
import time

import pytest

import nodeflame as nf
from nodeflame.cli import main
from nodeflame.frames import formats

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOT = ROOT / "tests" / "workloads" / "hot.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH (install nodejs)")


def _read_line(stream, timeout):
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
        return stream.readline()
    finally:
        sel.close()


class Hot:
    def __init__(self, tmp):
        self.err_path = tmp / "hot.stderr"
        self.err = open(self.err_path, "w")
        # --inspect-port=0: SIGUSR1 opens the inspector on a free port, so a busy 9229 (other
        # processes on a shared machine) cannot fail these tests.  --no-turbo-inlining: V8's
        # sampler now and then credits an inlined functionA to its caller `chunk`; these tests
        # are about the command line, not about that.
        self.proc = subprocess.Popen([NODE, "--inspect-port=0", "--no-turbo-inlining", str(HOT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, bufsize=1)
        line = _read_line(self.proc.stdout, 15)
        if not line:
            self.close()
            pytest.fail(f"hot.js did not print its ready line; stderr: {self.err_path.read_text()[-500:]}")
        self.pid = json.loads(line)["ready"]
        assert self.pid == self.proc.pid

    def ping(self) -> bool:
        """The target is alive and its event loop answers."""
        if self.proc.poll() is not None:
            return False
        self.proc.stdin.write("ping\n")
        self.proc.stdin.flush()
        line = _read_line(self.proc.stdout, 10)
        return bool(line) and "pong" in json.loads(line)

    def _command(self, cmd, key):
        """Send ``cmd``; True once hot.js answered with a ``key`` line, False if it has exited."""
        if self.proc.poll() is not None:
            return False
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = _read_line(self.proc.stdout, 10)
        assert line and key in json.loads(line), f"hot.js did not answer {cmd!r}: {line!r}"
        return True

    def pause(self):
        """Its main thread and worker stop between two calls and sleep (the CPU goes to others)."""
        return self._command("pause", "paused")

    def resume(self):
        """Both run again (acknowledged by hot.js once they do)."""
        return self._command("resume", "resumed")

    def stderr_text(self) -> str:
        return self.err_path.read_text(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.err.close()


@pytest.fixture(scope="module")
def hot_proc(tmp_path_factory):
    h = Hot(tmp_path_factory.mktemp("hot"))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def hot(hot_proc):
    """The module's hot.js, running through the test; paused after it (both threads asleep between two
    calls), so that the CPU goes elsewhere between the tests and during the tests that do not use it."""
    hot_proc.resume()
    yield hot_proc
    hot_proc.pause()


@pytest.fixture
def healthy(hot):
    """After the test the target still runs, answers, and is neither stopped nor traced."""
    yield hot
    from nodeflame.capture import procutil
    assert hot.ping(), (f"target stopped answering (exit status {hot.proc.poll()}); "
                        f"its stderr ends: {hot.stderr_text()[-600:]!r}")
    h = procutil.health(hot.pid)
    assert h["state"] not in ("T", "t", "Z", None) and h["tracer_pid"] == 0, h


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "60"])
    try:
        yield p.pid
    finally:
        p.kill()
        p.wait()


def _free_pid() -> int:
    try:
        top = int(pathlib.Path("/proc/sys/kernel/pid_max").read_text())
    except OSError:
        top = 32768
    for pid in range(top - 1, 1, -1):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    pytest.skip("no free pid")


def _summary(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("nodeflame: ") and " backend, " in ln]
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ torch form
def test_torch_text(healthy, capsys):
    assert main([str(healthy.pid), "text", "1", "--backend", "inspector"]) == 0
    cap = capsys.readouterr()
    first, rest = cap.out.split("\n", 1)
    assert first.startswith("Total samples: ") and int(first.split(": ")[1]) > 10
    assert "functionA" in rest and "functionB" in rest
    assert "nodeflame:" not in cap.out  # only data on stdout
    s = _summary(cap.err)
    assert "inspector backend" in s and " samples in " in s and "Hz achieved" in s


def test_torch_raw_parses_with_raw_reader(healthy, capsys):
    assert main([str(healthy.pid), "raw", "1", "--backend", "inspector", "--threads", "main"]) == 0
    out = capsys.readouterr().out
    p = nf.read(out.encode("utf-8"), format="raw")
    p.validate()
    assert p.total > 10
    names = set(p.funcs["name"].astype(str))
    assert "functionA" in names and "functionW" not in names  # --threads main: no worker samples
    assert nf.read(out.encode("utf-8")).total == p.total  # sniffed as raw too


def test_torch_flame(healthy, capsys):
    assert main([str(healthy.pid), "flame", "1", "--backend", "inspector", "--title", "hot <pid>"]) == 0
    out = capsys.readouterr().out
    assert out.lstrip().startswith(("<?xml", "<svg")) and out.rstrip().endswith("</svg>")
    assert "functionA" in out and "hot &lt;pid&gt;" in out


def test_torch_form_as_subprocess(healthy):
    r = subprocess.run([sys.executable, "-m", "nodeflame.cli", str(healthy.pid), "text", "1", "--backend", "inspector"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Total samples: ") and "functionA" in r.stdout, r.stdout
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [_summary(r.stderr)]  # no progress bar when stderr is not a terminal


def test_progress_bar_on_a_terminal(healthy):
    """A 2 s capture shows a tqdm bar on a terminal's stderr; stdout keeps only the data."""
    import threading
    import fcntl
    import struct
    import termios
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal has a size
    got = []

    def drain():
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:
                return
            if not b:
                return
            got.append(b)
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    try:
        r = subprocess.run([sys.executable, "-m", "nodeflame.cli", str(healthy.pid), "text", "2", "--backend", "inspector"],
                           stdout=subprocess.PIPE, stderr=slave, text=True, timeout=60, cwd=ROOT)
    finally:
        os.close(slave)
        t.join(5)
        os.close(master)
    err = b"".join(got).decode(errors="replace")
    assert r.returncode == 0, err
    assert r.stdout.startswith("Total samples: ") and "nodeflame" not in r.stdout
    assert "nodeflame inspector pid" in err and "/2.0 s" in err, err   # the bar
    assert "inspector backend, " in err                                # and the summary


# ------------------------------------------------------------------ record
def test_record_pid_to_cpuprofile(healthy, tmp_path, capsys):
    out = tmp_path / "x.cpuprofile"
    assert main(["record", "--pid", str(healthy.pid), "-d", "1", "--backend", "inspector", "-o", str(out)]) == 0
    p = nf.read(out)
    p.validate()
    assert p.meta["source_format"] == "cpuprofile" and p.total > 10
    assert {"functionA", "functionB"} <= set(p.funcs["name"].astype(str))
    s = _summary(capsys.readouterr().err)
    assert f"wrote {out}" in s


def test_record_pid_format_from_extension(healthy, tmp_path, capsys):
    out = tmp_path / "x.folded"
    assert main(["record", "--pid", str(healthy.pid), "-d", "1", "--backend", "inspector", "-o", str(out), "-q"]) == 0
    lines = out.read_text().splitlines()
    assert lines and all(ln.rsplit(" ", 1)[1].isdigit() for ln in lines)
    assert any("functionA" in ln for ln in lines)
    assert capsys.readouterr().err.strip() == ""  # -q: no summary


def test_record_command_until_it_exits(tmp_path, capsys):
    script = tmp_path / "spin.js"
    script.write_text("function spinHere(ms) { const end = Date.now() + ms; let x = 0;\n"
                      "  while (Date.now() < end) x += Math.sqrt(x + 1); return x; }\n"
                      "spinHere(1200);\n")
    out = tmp_path / "spin.txt"
    t = time.monotonic()
    assert main(["record", "--backend", "inspector", "-o", str(out), "--", NODE, str(script)]) == 0
    assert time.monotonic() - t < 30
    text = out.read_text()
    assert text.startswith("Total samples: ") and "spinHere" in text
    err = capsys.readouterr().err
    assert "until it exits" in err
    _summary(err)


def test_record_command_with_duration_stops_it(tmp_path, capsys):
    script = tmp_path / "long.js"
    pidfile = tmp_path / "long.pid"
    script.write_text(f"require('fs').writeFileSync({json.dumps(str(pidfile))}, String(process.pid));\n"
                      "function spinLong() { const end = Date.now() + 60000; let x = 0;\n"
                      "  while (Date.now() < end) x += Math.sqrt(x + 1); return x; }\n"
                      "spinLong();\n")
    out = tmp_path / "long.nfprof"
    t = time.monotonic()
    assert main(["record", "-d", "1", "--backend", "inspector", "-o", str(out), "--", NODE, str(script)]) == 0
    assert time.monotonic() - t < 30
    p = nf.read(out, format="nfprof")
    assert "spinLong" in set(p.funcs["name"].astype(str)) and p.meta["backend"] == "inspector"
    pid = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{pid}"), "the command must be stopped when the duration ends"
    _summary(capsys.readouterr().err)


# ------------------------------------------------------------------ backends, stap-script
def test_backends_table(hot, capsys):
    from nodeflame.capture.base import backend_names
    assert main(["backends"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["backend", "available", "reason"]
    rows = {ln.split()[0]: ln.split()[1] for ln in out[1:] if ln and not ln.startswith("auto picks")}
    assert set(rows) == set(backend_names()) and len(out) == len(backend_names()) + 2
    assert rows["inspector"] == "yes" and set(rows.values()) <= {"yes", "no"}
    for ln in out[1:-1]:
        if ln.split()[1] == "no":
            assert len(ln.split()) > 2, f"no reason given: {ln!r}"
    assert out[-1].startswith("auto picks: ")
    assert main(["backends", "--pid", str(hot.pid)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"process {hot.pid}: node v") and "inspector  yes" in out


def test_stap_script(hot, capsys):
    rc = main(["stap-script", "--pid", str(hot.pid)])
    cap = capsys.readouterr()
    try:
        import nodeflame.capture.stap  # noqa: F401
    except ImportError:
        assert rc == 2 and len(cap.err.strip().splitlines()) == 1 and "stap" in cap.err
        return
    if rc == 2:  # e.g. this node has no v8dbg symbols: a one-line reason
        assert len(cap.err.strip().splitlines()) == 1 and "Traceback" not in cap.err
        return
    assert rc == 0 and "probe" in cap.out and cap.out.endswith("\n") and cap.err == ""


# ------------------------------------------------------------------ user errors
@pytest.mark.parametrize("argv, msg", [
    (["{free}", "text", "1"], "no process"),
    (["{sleep}", "text", "1", "--backend", "inspector"], "not a node process"),
    (["{pid}", "txt", "1"], "mode must be one of text, flame, raw"),
    (["abc", "text", "1"], "pid must be a process id"),
    (["{pid}", "text", "soon"], "duration must be"),
    (["{pid}", "text", "-3"], "duration must be"),
    (["{pid}", "text"], "required: duration"),
    (["{pid}", "text", "1", "--hz", "many"], "invalid int value"),
    (["{pid}", "text", "1", "--backend", "nope"], "unknown backend"),
    (["record", "--pid", "{pid}", "-o", "{tmp}/x.unknownext"], "cannot tell the output format"),
    (["record", "--pid", "{pid}", "-o", "{tmp}/no/such/dir/x.cpuprofile"], "does not exist"),
    (["record", "-o", "{tmp}/x.cpuprofile"], "needs --pid PID or a command"),
    (["record", "--pid", "{pid}", "-o", "{tmp}/x.cpuprofile", "--", "node", "x.js"], "not both"),
    (["record", "--pid", "{pid}"], "record needs -o OUT"),
    (["record", "--pid", "{sleep}", "-d", "1", "-o", "{tmp}/x.cpuprofile"], "not a node process"),
    (["record", "-d", "1", "-o", "{tmp}/x.cpuprofile", "--", "/no/such/program"], "command not found"),
    (["backends", "--pid", "{free}"], "no process"),
    (["stap-script", "--pid", "{sleep}"], "not a node process"),
])
def test_user_errors_are_one_line_exit_2(argv, msg, healthy, sleeper, tmp_path, capsys):
    argv = [a.format(pid=healthy.pid, sleep=sleeper, free=_free_pid(), tmp=tmp_path) for a in argv]
    t = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - t < 10
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nodeflame"), cap.err
    assert msg in lines[0], lines[0]
    assert "Traceback" not in cap.err and cap.out == ""
    assert not list(tmp_path.glob("x.cpuprofile*"))


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_still_writes_the_output(healthy, tmp_path):
    out = tmp_path / "int.cpuprofile"
    from walker_helpers import cpu_grew, interrupt_cli
    attached = healthy.stderr_text().count("Debugger attached")
    # sampling runs: the capture attached and the target used CPU since (not a sleep); interrupt_cli checks
    # that record without -d still runs when the SIGINT is sent
    ready = cpu_grew(healthy.pid, 0.5, after=lambda cli: healthy.stderr_text().count("Debugger attached") > attached)
    rc, stdout, stderr, _ = interrupt_cli(["record", "--pid", healthy.pid, "--backend", "inspector", "-o", out],
                                          ready, cwd=ROOT, ready_timeout=30, exit_timeout=30)
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    assert "interrupted after" in stderr and f"wrote {out}" in stderr
    p = nf.read(out)
    p.validate()
    assert p.total > 10 and "functionA" in set(p.funcs["name"].astype(str))
