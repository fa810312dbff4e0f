"""Format detection does not depend on where in the file the evidence starts (issue 15), stays
linear in the input and reads a bounded window of it."""
import gzip
import json
import shutil
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.frames import formats
from nodeflame.frames.build import FrameTable, build_profile
from nodeflame.frames.formats import SNIFF_HEAD, SNIFF_MAX, render, sniff


def _profile(paths, weights):
    """A Profile of root-first paths of (name, file, line) frames."""
    ft = FrameTable()
    flat, offsets = [], [0]
    for path in paths:
        flat.extend(ft.add(n, f, ln, 1) for n, f, ln in path)
        offsets.append(len(flat))
    return build_profile(ft, np.asarray(offsets), np.asarray(flat), weights=np.asarray(weights))


def _same_stacks(a, b):
    assert a.total == b.total
    assert render(a, "folded") == render(b, "folded")


# ------------------------------------------------------------------ folded


@pytest.mark.parametrize("case", ["long-name", "deep"])
def test_folded_first_line_longer_than_the_window(case):
    """Our own folded writer's output of a very long function name, or of 10 000 frames."""
    if case == "long-name":
        paths = [[("main", "app.js", 1), ("f" + "x" * (3 * SNIFF_HEAD), "app.js", 2)], [("zz", "z.js", 1)]]
    else:
        paths = [[(f"fn{i}", "lib/deep.js", i + 1) for i in range(10_000)], [("zz", "z.js", 1)]]
    p = _profile(paths, [7, 2])
    data = render(p, "folded").encode()
    assert data.index(b"\n") > SNIFF_HEAD  # the evidence (the count) is past the first window
    for blob in (data, gzip.compress(data)):
        assert sniff(blob) == "folded"
        _same_stacks(nf.read(blob), p)


def test_comment_header_longer_than_the_window():
    """A block of '#' lines (perf --header, notes) does not count towards the window."""
    p = _profile([[("main", "app.js", 1), ("work", "app.js", 5)]], [3])
    data = b"".join(b"# note %d: %s\n" % (i, b"-" * 60) for i in range(3000)) + render(p, "folded").encode()
    assert len(data) > 2 * SNIFF_HEAD
    assert sniff(data) == "folded"
    _same_stacks(nf.read(data), p)


# ------------------------------------------------------------------ perf script


@pytest.fixture(scope="module")
def perf_data(tmp_path_factory):
    """A real ``perf record -g`` of node, or skip where perf cannot record here."""
    if not shutil.which("perf"):
        pytest.skip("no perf")
    d = tmp_path_factory.mktemp("perf")
    script = "function hot(n){let s=0;for(let i=0;i<n;i++)s+=Math.sqrt(i)%7;return s}" \
             "let t=Date.now();while(Date.now()-t<400)hot(1e5)"
    r = subprocess.run(["perf", "record", "-q", "-g", "-F", "999", "-o", str(d / "p.data"), "--", "node", "-e",
                        script], capture_output=True, timeout=120)
    if r.returncode != 0 or not (d / "p.data").exists():
        pytest.skip(f"perf record failed: {r.stderr[-300:]!r}")
    return d / "p.data"


def _perf_script(data, *fields):
    args = ["perf", "script", "-i", str(data)] + (["-F", ",".join(fields)] if fields else [])
    return subprocess.run(args, capture_output=True, check=True, timeout=120).stdout


@pytest.mark.parametrize("fields", [("comm", "pid", "tid", "ip", "sym", "dso"), ("comm", "tid", "ip", "sym", "dso")])
def test_perf_script_without_timestamps(perf_data, fields):
    bare = _perf_script(perf_data, *fields)
    full = _perf_script(perf_data, "comm", "pid", "tid", "time", "ip", "sym", "dso")
    assert b":" not in bare.split(b"\n", 1)[0]  # no time, no event: a header without a colon
    assert sniff(bare) == "perf"
    a, b = nf.read(bare), nf.read(full, format="perf")
    assert len(a.samples) == len(b.samples) > 0
    assert not a.meta["timed"]
    _same_stacks(a, b)
    # and behind a comment block longer than the window
    big = b"".join(b"# cmdline : %d %s\n" % (i, b"x" * 70) for i in range(2000)) + bare
    assert sniff(big) == "perf"


# ------------------------------------------------------------------ hostile lines: time and memory bounded

_MEASURE = textwrap.dedent(r"""
    import json, re, sys, time, tracemalloc, zlib
    from nodeflame.frames import formats
    from nodeflame.frames.errors import FormatError
    out = {}
    for name, expr in json.loads(sys.argv[1]).items():
        data = eval(expr)
        gz = data.startswith(b"\x1f\x8b")
        plain = zlib.decompressobj(wbits=31).decompress(data, formats.SNIFF_MAX) if gz else data
        t0 = time.process_time()  # a linear scan of what sniffing may look at: decode, split, count
        text = plain.decode("utf-8", "replace"); text.split("\n"); text.count(";"); re.search(r"x\Z", text)
        base = time.process_time() - t0
        del text, plain
        tracemalloc.start()
        t0 = time.process_time()
        try:
            got = formats.sniff(data, "hostile")
        except FormatError as e:
            got = str(e)
        t = time.process_time() - t0
        grew = tracemalloc.get_traced_memory()[1]  # the peak of what sniffing allocated
        tracemalloc.stop()
        out[name] = {"bytes": len(data), "base": base, "sniff": t, "grew": grew, "got": got[:200]}
        del data
    print(json.dumps(out))
""")

# 8 MB, not 50: the linear passes it is compared with take ~10 ms, a quadratic sniffer hours
# (a `[;\t"]*#` regex over the line: 4.8 s at 64 KB, 23 s at 128 KB, so ~20 h at 8 MB)
N = 8 << 20
# the gzip's bound as it was when the lines were 50 MB (its content is 256 MiB whatever N is)
GZIP_LOOKED_AT = min(SNIFF_MAX, 50 << 20)
# each a single line (no newline) of 8 MB that no format accepts, built in the measuring process
HOSTILE = {
    "semicolons": f"b';' * {N}",  # the raw sniffer's old 17 s case, at 128 times the size
    "blank-run": f"b'x ' + b'\\t' * {N} + b':'",  # a perf header's blanks before a colon, no pid
    "json-quotes": f"b'{{' + b'\"' * {N}",  # an object opening, then quotes for the JSON sniffers
    # 256 MiB of ';' in 1.2 MB of gzip: only SNIFF_MAX of it may be decompressed to decide
    "gzip-256MiB": "(lambda c: b''.join([c.compress(b';' * (64 << 20)) for _ in range(4)] + [c.flush()]))"
                   "(zlib.compressobj(1, wbits=31))",
}


def test_detection_on_hostile_lines_is_linear_and_bounded():
    """Every sniffer may see a whole long line (the window follows a cut line), so each must be
    linear: sniffing an 8 MB hostile line costs at most a fixed multiple of a few linear passes
    over the same bytes (one quadratic expression on 8 MB would take hours: the timeout stops
    it), and memory grows by a small multiple of what is looked at, never of a gzip's content."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(HOSTILE)], capture_output=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    for name, m in res.items():
        assert "format not recognised" in m["got"], (name, m)
        assert m["sniff"] <= 150 * m["base"], (name, m)
        looked_at = GZIP_LOOKED_AT if name.startswith("gzip") else m["bytes"]
        assert m["grew"] <= 4 * looked_at, (name, m)
    assert res["gzip-256MiB"]["bytes"] < 2 << 20


def test_first_window_decides_what_it_can():
    """The widened window is only looked at when the first says nothing: a plain profile is
    sniffed from its first 64 KB whatever follows."""
    calls = []
    real = formats._text

    def spy(data, source):
        calls.append(len(data))
        return real(data, source)

    p = _profile([[("main", "app.js", 1)]], [1])
    data = render(p, "folded").encode() + b"main app.js:1 1\n" * 50_000
    formats._text, saved = spy, formats._text
    try:
        assert sniff(data) == "folded"
    finally:
        formats._text = saved
    assert calls == [SNIFF_HEAD]


def test_gzip_window_keeps_within_the_reads_limits():
    """A gzip bomb of one long line is refused by the read's own limit while it is sniffed, as the
    read would refuse it, instead of being decompressed to SNIFF_MAX and searched (it took 1 s to
    say "format not recognised" about 32 MB of ';' read with max_decompressed=16 MB)."""
    import io
    from nodeflame.frames.errors import FormatError, LimitError
    data = gzip.compress(b";" * (32 << 20), 9)
    with pytest.raises(LimitError, match="more than 16,777,216 bytes"):
        sniff(data, "bomb.gz", max_decompressed=16 << 20)
    f = io.BytesIO(data)
    f.name = "bomb.gz"
    with pytest.raises(LimitError, match="bomb.gz"):
        nf.read(f, max_decompressed=16 << 20)
    # within the limit, the same window is sniffed as before
    assert "format not recognised" in str(pytest.raises(FormatError, sniff, data, "bomb.gz",
                                                        max_decompressed=64 << 20).value)
    ok = gzip.compress(b"main;work 3\n" * 1000)
    assert sniff(ok, "ok.gz", max_decompressed=1 << 20) == "folded"
