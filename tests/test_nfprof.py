"""nodeflame's own .nfprof: a lossless round trip, and damaged files refused with our error."""
import io
import json
import zipfile

import pandas as pd
import pytest

import nodeflame as nf
from nodeflame.frames.errors import FormatError


@pytest.fixture
def saved(corpus, tmp_path):
    p = nf.read(corpus / "speedscope" / "node" / "10.11.0" / "example.cpuprofile")
    out = tmp_path / "p.nfprof"
    p.write(out)
    return p, out


def test_round_trip_keeps_every_table(saved):
    p, out = saved
    q = nf.read(out)  # sniffed
    q.validate()
    for t in ("funcs", "frames", "stacks", "samples"):
        pd.testing.assert_frame_equal(getattr(p, t), getattr(q, t), check_categorical=False)
    assert q.meta["source_format"] == p.meta["source_format"]


def _rewrite_manifest(path, change):
    with zipfile.ZipFile(path) as z:
        items = {n: z.read(n) for n in z.namelist()}
    m = json.loads(items["nodeflame.json"])
    change(m)
    items["nodeflame.json"] = json.dumps(m).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("nodeflame.json", items.pop("nodeflame.json"))  # first, as the writer puts it
        for n, b in items.items():
            z.writestr(n, b)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("change, message", [
    (lambda m: m.__setitem__("tables", []), "no table list"),
    (lambda m: m["tables"]["frames"].pop("rows"), "table frames: broken description"),
    (lambda m: m["tables"]["funcs"].__setitem__("columns", 3), "table funcs: broken description"),
    (lambda m: m["tables"]["stacks"]["columns"][0].pop("type"), "table stacks: broken description"),
    (lambda m: m["tables"].pop("samples"), "table samples missing"),
])
def test_damaged_manifest_is_our_error_naming_the_file(saved, change, message):
    _, out = saved
    _rewrite_manifest(out, change)
    with pytest.raises(FormatError, match=message) as e:
        nf.read(out, format="nfprof")
    assert "p.nfprof" in str(e.value)
