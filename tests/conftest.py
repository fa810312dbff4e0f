import os
import pathlib

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
CORPUS = SHARED / "corpus"


@pytest.fixture(scope="session")
def corpus():
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set NODEFLAME_SHARED)")
    return CORPUS


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/ from what the readers and writers make now (review the diff)")
