import os
import pathlib
import signal
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _shared() -> pathlib.Path:
    """../shared beside the checkout (as DESIGN.md lays it out), or NODEFLAME_SHARED, or /work/shared."""
    if os.environ.get("NODEFLAME_SHARED"):
        return pathlib.Path(os.environ["NODEFLAME_SHARED"])
    for cand in (ROOT.parent / "shared", pathlib.Path("/work/shared")):
        if (cand / "corpus").is_dir():
            return cand
    return ROOT.parent / "shared"


SHARED = _shared()

# On two pytest-xdist workers (`make test`'s first part) a node that a test's inspector capture signals opens
# its inspector on 9229 unless told otherwise, and the other worker's capture then finds 9229 taken (CI:
# "the inspector port 9229 that process ... would open is taken").  On a worker every node the tests start
# gets a free port instead (node's command-line flags still win; the backend reads NODE_OPTIONS from the
# target's environment, as for any user's node).  The tests of the default port itself are marked solo and
# run without workers.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["NODE_OPTIONS"] = (os.environ.get("NODE_OPTIONS", "") + " --inspect-port=0").strip()
CORPUS = SHARED / "corpus"


@pytest.fixture(autouse=True)
def _sigint_at_its_default():
    """Every test starts with SIGINT as a user's Python has it (KeyboardInterrupt; children started
    from it find SIGINT at its default).  On a pytest-xdist worker something earlier in the run left
    SIGINT ignored: in three two-worker runs under load the Ctrl-C tests ran their captures to the end
    and test_stap's `sleep 60` (a stand-in stap) outlived the SIGINT of StapSession.close() until its
    SIGTERM 10 s later; every one passes alone and with -n 1."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="session")
def corpus():
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set NODEFLAME_SHARED)")
    return CORPUS


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/ from what the readers and writers make now (review the diff)")


#: the files that take longest (seconds of wall and CPU measured in two-worker runs, session 16: per test,
#: summed per file; test_jupyterlab from CI's --durations): on two pytest-xdist workers (one file per worker
#: at a time) they run first, longest first, so the other worker takes the many short files meanwhile instead
#: of one long file ending the run alone.  A serial run keeps pytest's own order.
LONG_FIRST = ("test_jupyterlab.py", "test_walker_inline.py", "test_inspector_warm.py", "test_walker.py",
              "test_capture_faults.py", "test_capture_perf.py", "test_cli_capture.py", "test_notebooks.py",
              "test_dataset.py", "test_sourcemaps.py", "test_inspector.py", "test_capture.py",
              "test_dataset_record_signals.py", "test_inspector_gaps.py", "test_widgets_fastpaths.py",
              "test_walker_engines.py", "test_cpuprofile.py", "test_startup.py", "test_walker_decoder.py",
              "test_dataset_diff.py", "test_diff_real.py", "test_stap.py", "test_demo.py")


def pytest_configure(config):
    """On pytest-xdist >= 3.7 ``--dist loadfile`` hands out the files ordered by how many tests each has
    (its ``--loadscope-reorder``, on by default), not in collection order: LONG_FIRST below had no effect
    (in a two-worker run the 67 quick tests of test_widgets_fastpaths went first and test_walker_inline,
    the longest file, 13th on its worker).  Collection order it is, as sorted below."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None and hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(session, config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    # a stable sort: within a file, and among the files not listed, collection order is kept
    items.sort(key=lambda it: rank.get(it.path.name, len(LONG_FIRST)))
