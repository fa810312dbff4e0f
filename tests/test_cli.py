"""The command line, in-process through main(argv)."""
import subprocess
import sys

import pytest

from nodeflame.cli import main

FOLDED = "main;work;parse 3\nmain;work;gc 1\nmain;idle 2\n"


@pytest.fixture
def folded_file(tmp_path):
    f = tmp_path / "in.folded"
    f.write_text(FOLDED)
    return f


def test_convert_folded_to_text(folded_file, tmp_path, capsys):
    out = tmp_path / "tree.txt"
    assert main(["convert", str(folded_file), str(out)]) == 0
    assert out.read_text().splitlines()[:3] == ["Total samples: 6", "6 main", "  4 work"]


def test_convert_with_explicit_formats(folded_file, tmp_path):
    out = tmp_path / "out.weird"
    assert main(["convert", str(folded_file), str(out), "--from", "folded", "--to", "folded"]) == 0
    assert out.read_text() == "main;idle 2\nmain;work;gc 1\nmain;work;parse 3\n"


def test_top(folded_file, capsys):
    assert main(["top", str(folded_file), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "parse" in out and "idle" in out and "gc" not in out.split("\n", 1)[1]


@pytest.mark.parametrize("argv, msg", [
    (["convert", "/nonexistent.folded", "x.txt"], "no such file"),
    (["convert", "{in}", "out.unknownext"], "cannot tell the output format"),
    (["convert", "{in}", "x.txt", "--from", "nope"], "unknown input format"),
    (["top", "{bad}"], "expected"),
    (["convert"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_are_one_line_and_exit_2(argv, msg, folded_file, tmp_path, capsys):
    bad = tmp_path / "bad.folded"
    bad.write_text("nothing here\n")
    argv = [a.format(**{"in": folded_file, "bad": bad}) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_console_script_runs(folded_file):
    r = subprocess.run([sys.executable, "-m", "nodeflame.cli", "top", str(folded_file)], capture_output=True, text=True)
    assert r.returncode == 0 and "parse" in r.stdout


def test_diff_prints_the_table_and_writes_folded(tmp_path, capsys):
    a, b = tmp_path / "a.folded", tmp_path / "b.folded"
    a.write_text("main;fast 500\nmain;slow 500\n")
    b.write_text("main;fast 300\nmain;slow 700\n")
    assert main(["diff", str(a), str(b), "-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "slow" in out.splitlines()[2] or "fast" in out.splitlines()[2]
    assert "changed beyond sampling noise" in out
    out_f = tmp_path / "d.folded"
    assert main(["diff", str(a), str(b), "-o", str(out_f)]) == 0
    assert "main;slow 500 700" in out_f.read_text().splitlines()
