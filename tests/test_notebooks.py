"""The notebooks in notebooks/ run from top to bottom without an error (nbclient, a real kernel).

They start the demo node program themselves (notebooks/demo/app.js) and capture it with the
inspector backend; the demo exits when the kernel goes away (its stdin closes), so a failing
notebook leaves no node process behind.
"""
import glob
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NB_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NB_DIR, "*.ipynb")))

nbformat = pytest.importorskip("nbformat", reason="nbformat (nodeflame[notebook]) is not installed")
nbclient = pytest.importorskip("nbclient", reason="nbclient (nodeflame[test]) is not installed")
pytest.importorskip("ipykernel", reason="ipykernel (nodeflame[test]) is not installed")
pytest.importorskip("plotly", reason="plotly (nodeflame[notebook]) is not installed")


def _demo_pids():
    out = subprocess.run(["pgrep", "-f", "demo/app.js --seconds=120"], capture_output=True, text=True)
    return {int(x) for x in out.stdout.split()}


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
    before = _demo_pids()
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": NB_DIR}})
    try:
        client.execute()   # raises CellExecutionError on the first failing cell
    finally:
        left = _demo_pids() - before
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
