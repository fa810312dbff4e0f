"""record --to --every: Ctrl-C or SIGTERM while a capture's session closes or while the capture is
being written loses nothing: the capture under way is finished and written atomically, then the
recorder stops (exit 0).  A live node process, a real recorder process and real signals; the
recorder is held at the moment in question (a marker file says when it is there) until the test has
sent its signals (a release file), so that they land inside it whatever the load of the machine."""
from __future__ import annotations

import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

import nodeflame as nf  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

# the recorder, with one moment of the first capture made slow and observable
_RECORDER = textwrap.dedent("""
    import pathlib, sys, time
    marker, where = pathlib.Path(sys.argv[1]), sys.argv[2]
    import nodeflame.capture as cap
    from nodeflame.dataset import store

    def mark_and_linger():
        if not marker.exists():          # the first capture only
            marker.write_text(where)
            release, deadline = marker.with_name("release"), time.monotonic() + 60
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.01)         # the test's signals arrive in here (their handlers run meanwhile)

    if where == "close":                 # inside session.close(), as the capture layer calls it
        real_close = cap._close
        def _close(session):
            orig = session.close
            def close():
                mark_and_linger()
                return orig()
            session.close = close
            return real_close(session)
        cap._close = _close
    elif where == "sample":              # the capture layer telling record --to that it samples
        real_capture = cap.capture
        def capture(*a, on_phase=None, **k):
            def tell(phase):
                on_phase(phase)
                if phase == "sampling" and not marker.exists():
                    marker.write_text(where)     # no lingering: the capture samples for its -d
            return real_capture(*a, on_phase=tell, **k)
        cap.capture = capture
    elif where == "write":               # between the table files and the commit record
        real_write = store.Store.write_atomic
        def write_atomic(self, path, data):
            if "/captures/" in path:
                mark_and_linger()
            return real_write(self, path, data)
        store.Store.write_atomic = write_atomic
    from nodeflame.cli import main
    sys.exit(main(sys.argv[3:]))
""")


@pytest.fixture(scope="module")
def hot_proc():
    """One hot.js for the module: each test's recorder captures it, one recorder at a time."""
    from hot_driver import HotJS
    h = HotJS("--no-worker")
    yield h
    h.kill()


@pytest.fixture
def hot(hot_proc):
    """The module's hot.js, running through the test and paused after it (asleep between two calls), so
    that the CPU goes elsewhere between the tests."""
    hot_proc.resume()
    yield hot_proc
    if hot_proc.proc.poll() is None:
        hot_proc.pause()


def _record(tmp_path, hot, where, *opts):
    ds_path, marker = tmp_path / "ds", tmp_path / "marker"
    rec = subprocess.Popen([sys.executable, "-c", _RECORDER, str(marker), where, "record", "--pid", str(hot.pid),
                            *opts, "--backend", "inspector", "--to", str(ds_path), "--label", "service=hot"],
                           stderr=subprocess.PIPE, text=True, cwd=ROOT)
    return rec, ds_path, marker


def _wait_for(pred, timeout, what, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the recorder ended (exit {proc.returncode}) before {what}: "
                                 f"{proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@needs_node
@pytest.mark.slow
@pytest.mark.parametrize("where,signals", [
    ("close", [signal.SIGINT]),
    ("close", [signal.SIGTERM]),
    ("close", [signal.SIGINT, signal.SIGINT]),
    ("write", [signal.SIGINT, signal.SIGINT]),
    ("write", [signal.SIGTERM]),
])
def test_a_signal_while_a_capture_closes_or_is_written_keeps_it(tmp_path, hot, where, signals):
    rec, ds_path, marker = _record(tmp_path, hot, where, "--every", "1", "-d", "0.5")
    try:
        _wait_for(marker.exists, 120, f"the recorder reached the capture's {where}", rec)
        for s in signals:
            rec.send_signal(s)
            time.sleep(0.2)
        (tmp_path / "release").write_text("")
        err = rec.communicate(timeout=60)[1]
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, err
    assert "stopping after the capture under way" in err, err
    assert "Traceback" not in err and "interrupted" not in err.splitlines()[-1], err
    ds = nf.dataset(ds_path)
    caps = ds.captures()
    assert len(caps) == 1, (len(caps), err)          # the capture under way is there, and no other began
    p = ds.profile(caps["capture_id"].iloc[0])
    p.validate()
    assert p.total > 0 and p.meta["pid"] == hot.pid
    assert "1 capture in" in err.splitlines()[-1], err
    assert [x for x in ds_path.rglob(".*") if x.is_file()] == []    # no temp file left behind


@needs_node
@pytest.mark.slow
def test_a_second_ctrl_c_while_sampling_cuts_the_capture_short_and_writes_it(tmp_path, hot):
    """The capture layer says when it samples (on_phase): there a second Ctrl-C ends the 60 s capture at
    once, and what it sampled is written."""
    rec, ds_path, marker = _record(tmp_path, hot, "sample", "-d", "60")
    try:
        _wait_for(marker.exists, 120, "the recorder's capture began sampling", rec)
        t0 = time.monotonic()
        lines = []                       # the recorder's stderr, read as it comes
        reader = threading.Thread(target=lambda: lines.extend(rec.stderr), daemon=True)
        reader.start()
        rec.send_signal(signal.SIGINT)
        # two signals close together would reach Python's handler once: the second after the first's note
        _wait_for(lambda: any("stopping after the capture under way" in x for x in lines), 30,
                  "the first Ctrl-C was noted", rec)
        rec.send_signal(signal.SIGINT)
        rec.wait(60)
        took = time.monotonic() - t0
        reader.join(10)
        err = "".join(lines)
    finally:
        if rec.poll() is None:
            rec.kill()
    assert rec.returncode == 0, err
    assert "Traceback" not in err and "1 capture in" in err.splitlines()[-1], err
    assert took < 40, (took, err)
    ds = nf.dataset(ds_path)
    caps = ds.captures()
    assert len(caps) == 1, (len(caps), err)
    p = ds.profile(caps["capture_id"].iloc[0])
    p.validate()
    assert p.meta["interrupted"] is True and p.total > 0 and p.meta["pid"] == hot.pid
