"""%load_ext nodeflame / %nodeflame PID [SECONDS] / %nodeflame --run "node app.js" [SECONDS]."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "notebooks", "demo", "app.js")
NODE = shutil.which("node")

pytest.importorskip("IPython", reason="IPython (nodeflame[notebook]) is not installed")
pytest.importorskip("plotly", reason="plotly (nodeflame[notebook]) is not installed")

from nodeflame.magic import parse  # noqa: E402


@pytest.fixture(scope="module")
def ip():
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nodeflame")
    yield shell


@pytest.fixture
def demo():
    if NODE is None:
        pytest.skip("node is not on PATH")
    proc = subprocess.Popen([NODE, "--inspect-port=0", DEMO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        assert b"ready" in proc.stdout.readline()
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_parse_pid_seconds_and_run_forms():
    a = parse("4242 3")
    assert (a.pid, a.seconds, a.command) == (4242, 3.0, None)
    assert parse("4242").seconds == 10.0
    b = parse('--run "node app.js --x" 2 --backend inspector')
    assert (b.pid, b.command, b.seconds, b.backend) == (None, "node app.js --x", 2.0, "inspector")
    for bad, msg in (("", "give a pid"), ("abc", "process id"), ("12 -1", "positive"),
                     ('--run "node a.js" 1 2', "not a pid too"), ("12 --bogus", "unrecognized")):
        with pytest.raises(ValueError, match=msg):
            parse(bad)


def test_magic_is_registered_and_reports_usage_errors(ip):
    from IPython.core.error import UsageError
    assert "nodeflame" in ip.magics_manager.magics["line"]
    with pytest.raises(UsageError, match="process id"):
        ip.run_line_magic("nodeflame", "not-a-pid")
    # a pid that is not a node process: the capture layer's clear error, as a UsageError
    with pytest.raises(UsageError, match="nodeflame"):
        ip.run_line_magic("nodeflame", f"{os.getpid()} 1 --backend inspector")


def test_magic_captures_a_pid_and_shows_the_explorer(ip, demo):
    from nodeflame.widgets import Explorer
    e = ip.run_line_magic("nodeflame", f"{demo.pid} 1 --backend inspector --as prof")
    assert isinstance(e, Explorer)
    p = ip.user_ns["prof"]
    assert p is e.base and p.total > 100 and p.meta["backend"] == "inspector"
    names = set(p.funcs["name"].astype(str))
    assert {"handleRequest", "renderPage"} <= names
    assert e.widget.data[0].type == "icicle" and len(e.widget.data[0].ids) > 5
    assert demo.poll() is None  # the target is left running


def test_magic_runs_a_command(ip, tmp_path):
    if NODE is None:
        pytest.skip("node is not on PATH")
    out = tmp_path / "run.folded"
    p = ip.run_line_magic("nodeflame", f'--run "{NODE} {DEMO} --seconds=3" 1.5 --backend inspector '
                                       f'--no-show -o {out}')
    assert p.total > 0 and p.meta["backend"] == "inspector"
    assert out.exists() and out.read_text().strip()
