"""Start-up: `import nodeflame` and the command line's help load no numpy or pandas (issue 12: a command
imports only what it uses).  Each check runs in a fresh interpreter and looks at ``sys.modules``; no timing.
"""
import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("numpy", "pandas", "pyarrow")
COMMANDS = ("convert", "top", "diff", "record", "backends", "stap-script", "ingest")


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it leaves its result in ``out`` and the loaded heavy modules
    are added as ``loaded``."""
    prog = textwrap.dedent(code) + textwrap.dedent(f"""
        import json as _json, sys as _sys
        out["loaded"] = [m for m in {HEAVY!r} if m in _sys.modules]
        print("RESULT " + _json.dumps(out))
        """)
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return {**json.loads(line[7:]), "stdout": r.stdout, "stderr": r.stderr}


def test_import_nodeflame_loads_no_numpy_or_pandas():
    res = _run("""
        import nodeflame as nf
        out = {"names": sorted(n for n in ("read", "diff", "Profile", "Transform", "capture") if n in dir(nf)),
               "errors": nf.NodeflameError.__name__}
        """)
    assert res["loaded"] == []
    assert res["names"] == ["Profile", "Transform", "capture", "diff", "read"]   # listed, loaded on use


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_loads_no_numpy_or_pandas(command):
    argv = [command, "--help"] if command else ["--help"]
    res = _run(f"""
        from nodeflame.cli import main
        try:
            rc = main({argv!r})
        except SystemExit as e:
            rc = e.code
        out = {{"rc": rc}}
        """)
    assert res["rc"] == 0
    assert f"usage: nodeflame {command or ''}".rstrip() in res["stdout"]
    assert res["loaded"] == [], f"nodeflame {' '.join(argv)} imported {res['loaded']}"


def test_the_lazy_names_are_the_real_ones_and_writers_register_on_first_write(tmp_path):
    out = tmp_path / "one.svg"
    res = _run(f"""
        import sys
        import nodeflame as nf
        from nodeflame.frames.profile import Profile
        from nodeflame.frames.formats import WRITERS
        before = sorted(WRITERS)
        p = nf.read(b"main;work;parse 3\\nmain;idle 1\\n", format="folded")
        p.write({str(out)!r})
        out = {{"before": before, "after": "svg" in WRITERS, "same": nf.Profile is Profile and isinstance(p, nf.Profile),
                "diff": nf.diff is sys.modules["nodeflame.frames.diff"].diff, "text": p.text()}}
        """)
    assert res["before"] == [] and res["after"] and res["same"] and res["diff"]
    assert res["text"].startswith("Total samples: 4\n4 main\n")
    assert out.read_text().rstrip().endswith("</svg>")
    assert "numpy" in res["loaded"] and "pandas" in res["loaded"]   # reading a profile does need them


def test_unknown_attribute_is_an_attribute_error():
    import nodeflame
    import nodeflame.frames
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nodeflame.nope
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nodeflame.frames.nope
