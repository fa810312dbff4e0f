"""The live demo: ``python -m nodeflame.demo --out DIR`` (what ``make demo`` runs)."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import nodeflame as nf

ROOT = pathlib.Path(__file__).resolve().parent.parent
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on PATH (install nodejs)")

DEMO_FUNCS = {"handleRequest", "parseRequest", "matchRoute", "searchProducts", "renderProductPage",
              "escapeHtml", "computeEtag", "serve", "work", "resizeImage", "encodeThumbnail"}


def _demo_pid(out: str) -> int:
    m = re.search(r"Started the demo program: pid (\d+)", out)
    assert m, out
    return int(m.group(1))


def _runs_demo(pid: int) -> bool:
    try:
        return "demo.js" in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _assert_profile_names_demo(p):
    p.validate()
    names = set(p.funcs["name"].astype(str))
    assert names & {"resizeImage", "encodeThumbnail"}, sorted(names)[:50]   # worker thread
    assert len(names & DEMO_FUNCS) >= 4, sorted(names)[:50]


def test_demo_end_to_end(tmp_path):
    out_dir = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "nodeflame.demo", "--out", str(out_dir), "-d", "1.5"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    pid = _demo_pid(r.stdout)
    assert not _runs_demo(pid), "the demo node program was left running"
    assert r.returncode == 0, r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    out = r.stdout
    # the text tree (its top part) and the top-10 table
    assert re.search(r"^Total samples: \d+$", out, re.M)
    assert "Top 10 functions by self time:" in out
    table = out.split("Top 10 functions by self time:", 1)[1].split("\n\n", 1)[0].strip().splitlines()
    assert table[0].split()[:2] == ["self", "%"] and 2 <= len(table) <= 11
    assert set(" ".join(table).split()) & DEMO_FUNCS
    tree = out.split("Total samples:", 1)[1].split("Top 10", 1)[0]
    assert len(tree.splitlines()) <= 45 and set(re.findall(r"\w+", tree)) & DEMO_FUNCS
    # the files, and where they are
    cp = out_dir / "demo.cpuprofile"
    assert str(cp) in out
    _assert_profile_names_demo(nf.read(cp))
    txt = out_dir / "demo.txt"
    assert txt.read_text().startswith("Total samples: ")
    svg = out_dir / "demo.svg"
    assert svg.exists(), out
    data = svg.read_text()
    assert str(svg) in out
    assert data.lstrip().startswith(("<?xml", "<svg")) and data.rstrip().endswith("</svg>")
    assert "encodeThumbnail" in data or "resizeImage" in data
    assert not list(tmp_path.glob("demo.*")), "files go to --out, not the current directory"


def test_demo_bad_duration_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "nodeflame.demo", "-d", "0"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "duration must be positive" in r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())


class _LosesSamples:
    """A backend that auto picks first and that starts fine but fails when it stops."""
    name = "loses-samples"
    summary = "test backend"
    needs = "nothing"
    default_hz = 1000

    def available(self, pid=None):
        return None

    def start(self, target, opts):
        from nodeflame.capture.base import CaptureError, Session

        class S(Session):
            def stop(self):
                raise CaptureError("loses-samples backend: lost its samples")
        return S(self, target, opts)


def test_demo_falls_back_when_autos_choice_fails(tmp_path, monkeypatch, capsys):
    import nodeflame.capture as capmod
    from nodeflame.capture import base
    from nodeflame.demo import main
    b = _LosesSamples()
    monkeypatch.setitem(base._REGISTRY, b.name, b)
    monkeypatch.setattr(base, "AUTO_ORDER", (b.name,) + tuple(base.AUTO_ORDER))
    monkeypatch.setattr(capmod, "AUTO_ORDER", (b.name,) + tuple(capmod.AUTO_ORDER))
    assert main(["--out", str(tmp_path), "-d", "1"]) == 0
    cap = capsys.readouterr()
    assert "lost its samples" in cap.err and "trying the inspector backend" in cap.err
    assert "with the inspector backend" in cap.out
    assert not _runs_demo(_demo_pid(cap.out))
    _assert_profile_names_demo(nf.read(tmp_path / "demo.cpuprofile"))


def test_demo_stops_the_program_when_the_capture_fails(tmp_path, capsys):
    from nodeflame.demo import main
    assert main(["--out", str(tmp_path), "-d", "1", "--backend", "nope"]) == 2
    cap = capsys.readouterr()
    assert "unknown backend" in cap.err and len(cap.err.strip().splitlines()) == 1
    assert not _runs_demo(_demo_pid(cap.out))
    assert not list(tmp_path.iterdir())
