"""The notebooks in notebooks/ run from top to bottom without an error (nbclient, a real kernel).

They start the demo node program themselves (notebooks/demo/app.js) and capture it with the
inspector backend; the demo exits when the kernel goes away (its stdin closes), so a failing
notebook leaves no node process behind.
"""
import glob
import importlib.util
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NB_DIR, "*.ipynb")))

# installed, not imported: the tests that use nbformat and nbclient import them (nbformat alone took
# ~1.2 CPU-s of every process that collects this file, each pytest-xdist worker); the kernel imports
# ipykernel and plotly in a process of its own
for _name, _why in (("nbformat", "nbformat (nodeflame[notebook]) is not installed"),
                    ("nbclient", "nbclient (nodeflame[test]) is not installed"),
                    ("ipykernel", "ipykernel (nodeflame[test]) is not installed"),
                    ("plotly", "plotly (nodeflame[notebook]) is not installed")):
    if importlib.util.find_spec(_name) is None:
        pytest.skip(_why, allow_module_level=True)


def _demo_pids(token):
    """The demo processes started by the kernel that had ``token`` in its environment (inherited by the
    demo): not another pytest worker's or another run's demos, which this test must neither count nor kill."""
    out = subprocess.run(["pgrep", "-f", "demo/app.js --seconds=120"], capture_output=True, text=True)
    mine = set()
    for x in out.stdout.split():
        try:
            with open(f"/proc/{x}/environ", "rb") as fh:
                if f"NODEFLAME_TEST_NOTEBOOK={token}".encode() in fh.read().split(b"\0"):
                    mine.add(int(x))
        except OSError:
            pass
    return mine


def test_the_three_notebooks_exist():
    names = [os.path.basename(p) for p in NOTEBOOKS]
    assert names[:3] == ["01-quickstart.ipynb", "02-pandas.ipynb", "03-diff.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_committed_without_outputs(path):
    nb = json.load(open(path, encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_executes(path, tmp_path):
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    import nbclient
    import nbformat
    token = f"{os.getpid()}-{tmp_path.name}"
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": NB_DIR}})
    try:
        # raises CellExecutionError on the first failing cell
        client.execute(env=dict(os.environ, NODEFLAME_TEST_NOTEBOOK=token))
    finally:
        left = _demo_pids(token)
        for pid in left:   # on a failure the kernel is gone and the demo exits on its own; make sure
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert not left, f"the notebook left demo processes running: {left}"
    # executed outputs are written to tmp only, never back over the committed notebook
    nbformat.write(nb, str(tmp_path / os.path.basename(path)))


def _capture_like_profile():
    """A small timed profile with capture metadata, as nf.capture returns one."""
    import numpy as np
    from nodeflame.frames.build import FrameTable, build_profile
    ft = FrameTable()
    a, b, c = ft.add("main", "/srv/app.js", 1), ft.add("handle", "/srv/app.js", 10), ft.add("(garbage collector)")
    paths = [[a, b]] * 60 + [[a, c]] * 20 + [[a]] * 20
    offsets = np.cumsum([0] + [len(x) for x in paths])
    meta = {"timed": True, "backend": "inspector", "pid": 4242, "command": "node /srv/app.js | tee log",
            "node_version": "v22.1.0", "start_time": 1764590000.0, "duration_ns": 100_000_000,
            "period_ns": 1_000_000, "warnings": ["1 sample lost"]}
    return build_profile(ft, offsets, np.concatenate(paths), times=np.arange(100) * 1_000_000 + 7,
                         meta=meta).validate()


def test_profile_write_ipynb_saves_the_profile_beside_a_notebook(tmp_path):
    import nbformat
    import nodeflame as nf
    p = _capture_like_profile()
    out = tmp_path / "inv" / "case.ipynb"
    out.parent.mkdir()
    p.write(out)
    saved = tmp_path / "inv" / "case.nfprof"
    assert saved.exists() and not (tmp_path / "inv" / "case.ipynb.tmp").exists()
    again = nf.read(saved)
    assert again.total == 100 and again.meta["pid"] == 4242
    nb = nbformat.read(str(out), as_version=4)
    nbformat.validate(nb)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    for fact in ("inspector", "4242", "node /srv/app.js \\| tee log", "v22.1.0", "2025-12-01", "0.10 s",
                 "100 samples", "1 sample lost"):
        assert fact in first.source, fact
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "nf.read('case.nfprof')" in code and "p.flame()" in code and "p.top(" in code and "timeline(p)" in code
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["nodeflame"]["meta"]["backend"] == "inspector"


@pytest.mark.slow
def test_written_notebook_runs_and_opens_the_explorer(tmp_path):
    import nbclient
    import nbformat
    p = _capture_like_profile()
    p.write(tmp_path / "x.ipynb")
    nb = nbformat.read(str(tmp_path / "x.ipynb"), as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    kinds = [set(o.get("data", {})) for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("application/vnd.jupyter.widget-view+json" in k and "text/plain" in k for k in kinds)
    assert any("application/vnd.plotly.v1+json" in k for k in kinds)           # the timeline
    tables = [o["data"]["text/plain"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "text/plain" in o.get("data", {})]
    assert any("handle" in t for t in tables)


def test_writing_a_notebook_to_an_anonymous_stream_needs_profile_path(tmp_path):
    import io
    from nodeflame.frames.errors import NodeflameError
    p = _capture_like_profile()
    with pytest.raises(NodeflameError, match="profile_path"):
        p.write(io.BytesIO(), format="ipynb")
    buf = io.BytesIO()
    p.write(buf, format="ipynb", profile_path=tmp_path / "p.nfprof")
    assert (tmp_path / "p.nfprof").exists() and b"p.nfprof" in buf.getvalue()
