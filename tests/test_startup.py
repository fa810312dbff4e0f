"""Start-up: `import nodeflame` and the command line's help load no numpy or pandas, and converting folded
stacks to SVG or folded loads no pandas (issue 12: a command imports only what it uses).  Each check runs in
a fresh interpreter and looks at ``sys.modules``; no timing.  Also: what makes those conversions pandas-free
gives what pandas gave (the lazy DataFrames, the colour hash, sniffing without every reader, the small-input
paths without pyarrow).
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
    if command is None:   # torch's form is not a sub-command: the help names it (a torch user looks for it)
        assert "nodeflame PID text|flame|raw SECONDS" in " ".join(res["stdout"].split()), res["stdout"]
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


# ------------------------------------------------------------ conversions without pandas (session 13)

ONE = "main;work;parse 1\n"
SMALL = ("main;server;handle;parse 30\nmain;server;handle;render 20\nmain;(idle) 5\nmain;gc;sweep 3\n"
         "main;caf\u00e9;x%{3B}y_[j] 2\nmain;a_[k];b 1\nroot;lib.so`f 4\n")


@pytest.mark.parametrize("text", [ONE, SMALL], ids=["one-line", "small"])
def test_convert_folded_to_svg_and_folded_loads_no_pandas(tmp_path, text):
    """``nodeflame convert`` of folded stacks to SVG and to folded, in a fresh process, never imports
    pandas; then, pandas imported, the same conversions write the same bytes."""
    src = tmp_path / "in.folded"
    src.write_text(text, encoding="utf-8")
    res = _run(f"""
        import sys
        from nodeflame.cli import main
        d = {str(tmp_path)!r}
        rcs = [main(["convert", {str(src)!r}, d + "/a.svg"]), main(["convert", {str(src)!r}, d + "/a.folded"]),
               main(["convert", {str(src)!r}, d + "/a.txt.folded", "--to", "folded", "--title", "t"])]
        before = "pandas" in sys.modules
        import pandas
        rcs += [main(["convert", {str(src)!r}, d + "/b.svg"]), main(["convert", {str(src)!r}, d + "/b.folded"])]
        out = {{"rcs": rcs, "pandas_before": before}}
        """)
    assert res["rcs"] == [0] * 5, res["stderr"]
    assert res["pandas_before"] is False
    for ext in ("svg", "folded"):
        a, b = (tmp_path / f"a.{ext}").read_bytes(), (tmp_path / f"b.{ext}").read_bytes()
        assert a == b and len(a) >= len("main;work;parse 1\n")
    if text == ONE:
        assert (tmp_path / "a.folded").read_text(encoding="utf-8") == ONE


def test_the_lazy_tables_equal_the_constructors(tmp_path):
    """A Profile built in numpy form (a reader's) gives the DataFrames the constructor makes of them:
    same values, dtypes, categories and index; validate() and the numpy form agree."""
    pd = pytest.importorskip("pandas")
    import numpy as np
    from nodeflame.frames.profile import Coded, Profile
    p = nf_read(SMALL.encode())
    assert p._t["samples"].df is None   # nothing asked for a DataFrame yet
    q = Profile(p.funcs, p.frames, p.stacks, p.samples, p.meta, p.lines)
    for name in ("funcs", "frames", "stacks", "samples", "lines"):
        a, b = getattr(p, name), getattr(q, name)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert list(a.dtypes.astype(str)) == list(b.dtypes.astype(str))
        for c in a.columns:
            if isinstance(a[c].dtype, pd.CategoricalDtype):
                assert a[c].dtype == b[c].dtype and a[c].cat.categories.dtype == b[c].cat.categories.dtype
        for c, v in p.arrays(name).items():
            assert not (v.codes if isinstance(v, Coded) else v).flags.writeable
    assert p.total == q.total == 65 and p.threads == q.threads == ["main"]
    assert list(p.func_labels()) == list(q.func_labels()) and list(p.frame_labels()) == list(q.frame_labels())
    # a column a reader adds to the made DataFrame (pprof's count) is in the numpy form and survives pickling
    import pickle
    p.samples["count"] = np.arange(len(p.samples), dtype=np.int64)
    assert list(p.arrays("samples")) == ["stack", "time_ns", "weight", "thread", "count"]
    r = pickle.loads(pickle.dumps(p))
    assert r.samples["count"].tolist() == list(range(len(p.samples))) and r.arrays("samples")["count"].tolist() == \
        r.samples["count"].tolist()
    p2 = nf_read(SMALL.encode())
    made = p2.samples                     # made, not edited: pickled as the numpy form, made again after
    r = pickle.loads(pickle.dumps(p2))
    assert r._t["samples"].df is None
    pd.testing.assert_frame_equal(r.samples, made, check_exact=True)


def nf_read(data: bytes, **kw):
    from nodeflame.frames.formats import read
    return read(data, format="folded", **kw)


def test_numpy_hash_is_pandas_hash_array():
    """The palette's colour hash (numpy SipHash) equals pd.util.hash_array on many names."""
    import random
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    from nodeflame.writers.palette import hash_strings
    rng = random.Random(12)
    names = ["", "a", "main", "1234567", "12345678", "123456789", "caf\u00e9", "\U0001f600" * 9, "x" * 255,
             "y" * 256, "z" * 1000, "(anonymous)", "\\ud800", "\x00\x01"]
    for _ in range(5000):
        n = rng.choice([rng.randint(0, 20), rng.randint(0, 300)])
        names.append("".join(chr(rng.choice([rng.randint(32, 126), rng.randint(160, 0xD7FF),
                                              rng.randint(0xE000, 0x10FFFF)])) for _ in range(n)))
    arr = np.empty(len(names), object)
    arr[:] = names
    assert (hash_strings(names) == pd.util.hash_array(arr).astype(np.uint64)).all()
    assert hash_strings([]).dtype == np.uint64 and len(hash_strings([])) == 0


def test_sniffing_imports_only_the_readers_it_needs():
    """Sniffing a folded file imports no other reader (a sniffer whose needs the window fails is not
    asked); every reader is imported when asked for by name."""
    res = _run("""
        import sys
        from nodeflame.frames import formats
        fmt = formats.sniff(b"main;work;parse 1\\n")
        mods = sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("nodeflame.frames.readers."))
        formats._ensure_readers()
        out = {"fmt": fmt, "mods": mods, "all": sorted(formats.READERS) == sorted(formats.READER_MODULES)}
        """)
    assert res["fmt"] == "folded" and res["mods"] == ["folded"] and res["all"]


def _windows_of_everything():
    """(name, data) of the corpus, the fuzz cases and seeds and tests/data."""
    import glob
    import os
    import warnings
    import test_fuzz_readers as fz
    seen = []
    for path in sorted(glob.glob(os.path.join(fz.CORPUS, "**", "*"), recursive=True)) + \
            sorted(glob.glob(os.path.join(os.path.dirname(__file__), "data", "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                seen.append((path, fh.read()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, name, data, fmt, how, mutated in fz._cases():
            seen.append((f"{name} {how}", mutated))
            if k < 60:
                seen.append((name, data))
    return seen


def test_what_a_sniffer_needs_holds_wherever_it_accepts():
    """formats.SNIFF_NEEDS is a necessary condition of each sniffer: no window that a sniffer accepts
    fails it, so skipping the sniffers it rules out sniffs every input as trying them all does."""
    from nodeflame.frames import formats
    from nodeflame.frames.errors import FormatError
    formats._ensure_readers()
    checked = 0
    for name, data in _windows_of_everything():
        want = None
        for head, text in formats._windows(data, name):
            for fmt in formats.SNIFF_ORDER:
                ok = formats.READERS[fmt].sniff(head, text)
                if ok:
                    need = formats.SNIFF_NEEDS.get(fmt)
                    assert need is None or need(head, text), (name, fmt)
                    checked += 1
                    want = want or fmt
            if want:
                break
        try:
            got = formats.sniff(data, name)
        except FormatError:
            got = None
        assert got == want, name
    assert checked > 100


@pytest.mark.parametrize("thread_root", [False, True])
def test_small_inputs_skip_arrow_with_the_same_results(monkeypatch, thread_root):
    """Below a size the folded reader and writer do not load pyarrow (their numpy paths); forced
    onto the Arrow paths the same inputs give the same Profile and bytes."""
    pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    import io
    from nodeflame.frames.readers import folded as rf
    from nodeflame.writers import folded as wf
    texts = [ONE, SMALL, SMALL.replace("\n", "\r\n"), "# c\n\n" + SMALL + "//x\n",
             "".join(f"t{i % 3};root;f{i % 37};g{i % 11};h{i % 5} {i % 7 + 1}\n" for i in range(5000))]

    def run():
        out = []
        for t in texts:
            p = nf_read(t.encode(), thread_root=thread_root)
            buf = io.BytesIO()
            wf.write_folded(p, buf, thread_root=thread_root, annotate=True)
            out.append((p, buf.getvalue()))
        return out
    plain = run()
    monkeypatch.setattr(rf, "_ARROW_MIN", 0)
    monkeypatch.setattr(wf, "_ARROW_MIN_LINES", 0)
    arrow = run()
    for (p, a), (q, b) in zip(plain, arrow):
        assert a == b
        for name in ("funcs", "frames", "stacks", "samples"):
            pd.testing.assert_frame_equal(getattr(p, name), getattr(q, name), check_exact=True)


def test_convert_raw_to_folded_loads_no_pandas(tmp_path):
    """raw (DTrace/SystemTap stacks) -> folded goes through the same builder and writer: no pandas either,
    and the same bytes as with pandas imported."""
    src = tmp_path / "in.raw"
    src.write_text("libc`f+0x1\nmain\n  3\n\nlibc`g\nmain\n  2\n")
    res = _run(f"""
        import sys
        from nodeflame.cli import main
        d = {str(tmp_path)!r}
        rcs = [main(["convert", {str(src)!r}, d + "/a.folded"])]
        before = "pandas" in sys.modules
        import pandas
        rcs.append(main(["convert", {str(src)!r}, d + "/b.folded"]))
        out = {{"rcs": rcs, "pandas_before": before}}
        """)
    assert res["rcs"] == [0, 0] and res["pandas_before"] is False, res["stderr"]
    a = (tmp_path / "a.folded").read_text()
    assert a == (tmp_path / "b.folded").read_text() == "main;libc`f 3\nmain;libc`g 2\n"


@pytest.mark.parametrize("command", ["convert", "record"])
def test_convert_runs_numpy_with_one_blas_thread_and_record_leaves_the_environment(tmp_path, command):
    """numpy's OpenBLAS starts a spinning thread per core at import (0.08-0.12 s of CPU, a third of a small
    conversion): convert (top, diff) ask for one, unless the user set OPENBLAS_NUM_THREADS; record, whose
    `--` command inherits the environment, changes nothing."""
    src = tmp_path / "in.folded"
    src.write_text("main;a;b 3\nmain;c 2\n")
    argv = ["convert", str(src), str(tmp_path / "out.svg")] if command == "convert" else ["record", "--help"]
    prog = textwrap.dedent(f"""
        import json, os, sys
        from nodeflame.cli import main
        try:
            rc = main({argv!r})
        except SystemExit as e:
            rc = e.code
        import numpy
        print(json.dumps({{"rc": rc, "env": os.environ.get("OPENBLAS_NUM_THREADS"),
                          "threads": len(os.listdir("/proc/self/task"))}}))
    """)
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0
    if command == "convert":
        assert got["env"] == "1" and got["threads"] == 1, got
    else:
        assert got["env"] is None, got
    # the user's own setting wins
    env["OPENBLAS_NUM_THREADS"] = "2"
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=120, env=env)
    assert json.loads(r.stdout.strip().splitlines()[-1])["env"] == "2"
