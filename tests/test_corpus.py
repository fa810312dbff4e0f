"""Every file in ../shared/corpus loads, or (under invalid/) fails with our own error."""
import warnings

import pytest

import nodeflame as nf
from nodeflame.frames.errors import FormatError, FormatWarning, NodeflameError
from conftest import CORPUS

FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md"
               and "results" not in p.parts) if CORPUS.is_dir() else []
EXPECTED = {  # sniffed format by directory
    "stackcollapse": "folded", "linux-perf": "perf", "pprof": "pprof", "Chrome": "cpuprofile",
    "node": "cpuprofile", "speedscope": "speedscope", "flamegraph": None,
}


def _expected_format(path):
    if path.name.startswith("perf-"):
        return "perf"
    if path.name.startswith("example-dtrace"):
        return "raw"
    for part in reversed(path.relative_to(CORPUS).parts[:-1]):
        if part in EXPECTED:
            return EXPECTED[part]
    return None


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_file_loads_or_fails_cleanly(path):
    if "invalid" in path.parts:
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                p = nf.read(path)
        except FormatError as e:
            assert path.name in str(e)
            assert "expected" in str(e)
            return
        # repaired: it must say so
        assert any(issubclass(x.category, FormatWarning) for x in w), "repaired input must warn"
        assert p.meta["warnings"]
        p.validate()
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FormatWarning)
        p = nf.read(path)
    p.validate()
    assert p.total > 0
    want = _expected_format(path)
    if want:
        assert p.meta["source_format"] == want
    # every reader's output survives a folded round trip
    text = nf.frames.formats.render(p, "folded")
    again = nf.read(text.encode(), format="folded")
    assert nf.frames.formats.render(again, "folded") == text
    assert again.total == p.total


def test_garbage_is_refused_with_our_error(tmp_path):
    for name, data in {"bin.dat": bytes(range(256)) * 4, "empty.txt": b"", "words.txt": b"hello world\n",
                       "half.json": b'{"nodes": [', "array.json": b"[1, 2, 3]"}.items():
        f = tmp_path / name
        f.write_bytes(data)
        with pytest.raises(NodeflameError) as e:
            nf.read(f)
        assert name in str(e.value)
