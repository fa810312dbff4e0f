"""Source maps: the decoder, finding maps, Profile.with_source_maps, hot lines, and real toolchains.

Unit tests use hand-written maps whose every segment is checked by hand or
against a plain reference decoder written here.  The integration tests
compile a small TypeScript service with the real ``tsc`` and ``esbuild``
(installed from the npm registry into ~/.cache/nodeflame/npm-tools, skipped
with the reason when that is impossible), run it under node and capture it
live with the inspector backend.
"""
from __future__ import annotations

import base64
import io
import json
import os
import random
import shutil
import subprocess

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.frames.sourcemap import SourceMapError, decode_mappings, mapping_url, parse_source_map
from tests.vlq import B64, encode, vlq


# ------------------------------------------------------------------ a plain reference codec
def ref_decode(mappings: str):
    rows, prev = [], [0, 0, 0, 0, 0]
    for ln, line in enumerate(mappings.split(";")):
        prev[0] = 0
        for seg in filter(None, line.split(",")):
            vals, v, shift = [], 0, 0
            for ch in seg:
                d = B64.index(ch)
                v += (d & 31) << shift
                shift += 5
                if not d & 32:
                    vals.append(-(v >> 1) if v & 1 else v >> 1)
                    v, shift = 0, 0
            for i, x in enumerate(vals):
                prev[i] += x
            rows.append((ln, prev[0]) + (tuple(prev[1:4]) if len(vals) >= 4 else (-1, -1, -1))
                        + ((prev[4],) if len(vals) == 5 else (-1,)))
    return rows


# ------------------------------------------------------------------ decoder
def test_vlq_known_values():
    assert [vlq(n) for n in (0, 1, -1, 15, 16, -16, 1000, -(2 ** 31 - 1))] == \
        ["A", "C", "D", "e", "gB", "hB", "w+B", "//////D"]
    m = decode_mappings("AAAA,CAAC,gBAAgB;;AACA,D")
    assert m["gen_line"].tolist() == [0, 0, 0, 2, 2]
    assert m["gen_col"].tolist() == [0, 1, 17, 0, -1]
    assert m["orig_col"].tolist() == [0, 1, 17, 17, -1]
    assert m["orig_line"].tolist() == [0, 0, 0, 1, -1]
    assert m["name"].tolist() == [-1] * 5


def test_decoder_matches_reference_on_random_maps():
    rng = random.Random(7)
    for _ in range(30):
        lines, src, ol, oc, nm = [], 0, 0, 0, 0
        for _l in range(rng.randint(0, 30)):
            col, segs = 0, []
            for _s in range(rng.randint(0, 12)):
                col += rng.randint(0, 5000)
                kind = rng.choice((1, 4, 4, 5))
                src = max(0, src + rng.randint(-2, 2))
                ol = max(0, ol + rng.randint(-500, 500))
                oc = max(0, oc + rng.randint(-300, 300))
                nm = max(0, nm + rng.randint(-40, 40))
                segs.append((col,) if kind == 1 else (col, src, ol, oc) if kind == 4 else (col, src, ol, oc, nm))
            lines.append(segs)
        s = encode(lines)
        m = decode_mappings(s)
        got = list(zip(*(m[k].tolist() for k in ("gen_line", "gen_col", "src", "orig_line", "orig_col", "name"))))
        assert got == ref_decode(s), s


@pytest.mark.parametrize("mappings, what", [
    ("AAAA,CA!A", "'!' at offset 7"),
    ("AAAA;AAg", "cut short"),
    ("AA", "segment of 2 fields"),
    ("AAAAAAA", "segment of 7 fields"),
    ("gggggggggB", "too long"),
])
def test_bad_vlq_names_the_file_and_offset(mappings, what):
    with pytest.raises(SourceMapError) as e:
        parse_source_map({"version": 3, "sources": ["a.ts"], "names": [], "mappings": mappings}, "dist/x.js.map")
    assert "dist/x.js.map" in str(e.value) and what in str(e.value)


def test_bad_maps_name_the_file():
    for data, what in ((b'{"version": 3, "mappings": "AAAA', "truncated"), (b"[1]", "not an object"),
                       (b'{"version": 2, "mappings": ""}', "version"),
                       (b'{"version": 3, "sources": [], "mappings": "AAAA"}', "source 0"),
                       (b'{"version": 3, "sources": ["a"], "names": [], "mappings": "AAAAC"}', "name 1")):
        with pytest.raises(SourceMapError) as e:
            parse_source_map(data, "/app/x.js.map")
        assert str(e.value).startswith("/app/x.js.map") and what in str(e.value), str(e.value)


def test_lookup_sources_root_names_and_content():
    # generated line 0: col 0 -> a.ts 1:0; col 10 -> a.ts 3:4 name "compute"; col 20: unmapped; line 2: b.ts 7:2
    mappings = encode([[(0, 0, 0, 0), (10, 0, 2, 4, 0), (20,)], [], [(4, 1, 6, 2)]])
    sm = parse_source_map({"version": 3, "sourceRoot": "src", "sources": ["a.ts", "/abs/b.ts"],
                           "sourcesContent": ["A", None], "names": ["compute"], "mappings": mappings},
                          "/app/dist/x.js.map", "/app/dist")
    assert sm.sources == ["/app/dist/src/a.ts", "/abs/b.ts"]
    assert sm.sources_content == ["A", None]
    src, ol, oc, nm = sm.lookup([0, 0, 0, 0, 1, 2, 2, 5], [0, 9, 15, 25, 0, 0, 9, 0])
    assert src.tolist() == [0, 0, 0, -1, -1, 1, 1, -1]
    assert ol.tolist() == [0, 0, 2, -1, -1, 6, 6, -1]
    assert oc.tolist() == [0, 0, 4, -1, -1, 2, 2, -1]
    assert nm.tolist() == [-1, -1, 0, -1, -1, -1, -1, -1]


def test_index_map_sections():
    a = {"version": 3, "sources": ["a.ts"], "names": ["fa"], "mappings": encode([[(0, 0, 4, 0, 0)]])}
    b = {"version": 3, "sources": ["b.ts"], "names": ["fb"], "mappings": encode([[(2, 0, 9, 1, 0)], [(0, 0, 10, 0)]])}
    sm = parse_source_map({"version": 3, "sections": [{"offset": {"line": 0, "column": 0}, "map": a},
                                                      {"offset": {"line": 3, "column": 5}, "map": b}]},
                          "idx.map", "/w")
    assert sm.sources == ["/w/a.ts", "/w/b.ts"] and sm.names == ["fa", "fb"]
    src, ol, oc, nm = sm.lookup([0, 3, 4], [0, 7, 0])
    assert src.tolist() == [0, 1, 1] and ol.tolist() == [4, 9, 10] and oc.tolist() == [0, 1, 0]
    assert nm.tolist() == [0, 1, -1]


def test_mapping_url_comment_forms():
    assert mapping_url(b"x()\n//# sourceMappingURL=out.js.map\n") == "out.js.map"
    assert mapping_url(b"x()\n//@ sourceMappingURL=a.map") == "a.map"
    assert mapping_url(b"x()\n/*# sourceMappingURL=b.map */") == "b.map"
    assert mapping_url(b'var s = "//# sourceMappingURL=no.map";\n') is None
    assert mapping_url(b"//# sourceMappingURL=old.map\nx()\n//# sourceMappingURL=new.map\n") == "new.map"
    assert mapping_url(b"x()") is None


def test_decoding_a_big_map_is_vectorised():
    import time
    lines = [[(c * 7, c % 3, ln, c * 2, c % 50) for c in range(200)] for ln in range(2000)]  # 400k segments
    s = encode(lines)
    t = time.process_time()   # CPU time: a busy machine stretches the wall time, not this
    m = decode_mappings(s)
    dt = time.process_time() - t
    assert len(m["gen_line"]) == 400_000 and m["gen_col"][-1] == 199 * 7 and m["orig_line"][-1] == 1999
    assert dt < 2.0, f"{len(s) / 1e6:.1f} MB of mappings took {dt:.2f} s of CPU"


# ------------------------------------------------------------------ a profile of generated code, by hand
GEN_JS = "function a(){x()}function b(){a()}b();\n"   # cols: a( at 10, b( at 27
ORIG_TS = "function outer(): void {\n  inner();\n}\n\nfunction inner(): void {\n  work();\n}\n"


def hand_map():
    # b -> outer (line 1), a -> inner (line 5); names at the identifiers
    segs = [(0, 0, 4, 0), (9, 0, 4, 9, 1), (10, 0, 4, 14), (13, 0, 5, 2),
            (17, 0, 0, 0), (26, 0, 0, 9, 0), (27, 0, 0, 14), (30, 0, 1, 2)]
    return {"version": 3, "file": "out.js", "sources": ["../src/app.ts"], "sourcesContent": [ORIG_TS],
            "names": ["outer", "inner"], "mappings": encode([segs])}


def cpuprofile(url: str, *, with_cols: bool = True) -> bytes:
    def cf(name, line, col, u=url):
        return {"functionName": name, "scriptId": "7", "url": u, "lineNumber": line,
                "columnNumber": col if with_cols else -1}
    nodes = [{"id": 1, "callFrame": cf("(root)", -1, -1, ""), "children": [2]},
             {"id": 2, "callFrame": cf("b", 0, 27), "children": [3]},
             {"id": 3, "callFrame": cf("a", 0, 10), "children": [], "positionTicks": [{"line": 1, "ticks": 3}]}]
    return json.dumps({"nodes": nodes, "startTime": 0, "endTime": 4000, "samples": [3, 3, 3, 2],
                       "timeDeltas": [1000, 1000, 1000, 1000]}).encode()


@pytest.fixture
def app(tmp_path):
    d = tmp_path / "app"
    (d / "dist").mkdir(parents=True)
    (d / "src").mkdir()
    (d / "src" / "app.ts").write_text(ORIG_TS)
    (d / "dist" / "out.js").write_text(GEN_JS + "//# sourceMappingURL=out.js.map\n")
    (d / "dist" / "out.js.map").write_text(json.dumps(hand_map()))
    return d


def names_lines(p):
    f = p.funcs[p.funcs["kind"] == "js"]
    return sorted(zip(f["name"].astype(str), f["file"].astype(str), f["line"], f["column"]))


def test_with_source_maps_hand_checked(app):
    gen = str(app / "dist" / "out.js")
    p = nf.read(io.BytesIO(cpuprofile("file://" + gen)))
    q = p.with_source_maps()
    src = str(app / "src" / "app.ts")
    assert names_lines(q) == [("inner", src, 5, 15), ("outer", src, 1, 15)]
    f = q.funcs.set_index(q.funcs["name"].astype(str))
    assert f.loc["inner", "gen_name"] == "a" and f.loc["inner", "gen_file"] == "file://" + gen
    assert (f.loc["inner", "gen_line"], f.loc["inner", "gen_column"]) == (1, 11)
    assert q.meta["source_maps"] == [{"file": "file://" + gen, "map": gen + ".map", "functions": 2,
                                      "sources": [src]}]
    assert q.meta["transforms"][-1] == "source-maps"
    # positionTicks give lines only, and generated line 1 holds both functions
    (w,) = q.meta["warnings"]
    assert "3 per-line tick(s)" in w and "minified" in w
    assert q.meta["source_text"] == {src: ORIG_TS}
    # the original profile is untouched, shares are the same
    assert sorted(p.funcs["name"].astype(str)) == ["a", "b"]
    assert q.top(None)["self"].tolist() == p.top(None)["self"].tolist()
    # per-line ticks follow: generated line 1 at a's column -> app.ts line 5
    hl = q.hot_lines()
    assert hl.iloc[0][["file", "line", "name", "self", "total"]].tolist() == [src, 5, "inner", 3, 3]
    assert hl.iloc[0]["text"] == "function inner(): void {"
    # round trip through .nfprof keeps both positions and the meta
    buf = io.BytesIO()
    q.write(buf, format="nfprof")
    r = nf.read(io.BytesIO(buf.getvalue()))
    assert names_lines(r) == names_lines(q)
    for c in ("gen_name", "gen_file", "gen_line", "gen_column"):
        assert r.funcs[c].astype(str).tolist() == q.funcs[c].astype(str).tolist()
    assert r.frames["gen_line"].tolist() == q.frames["gen_line"].tolist()
    assert r.meta["source_maps"] == q.meta["source_maps"] and r.meta["source_text"] == q.meta["source_text"]


def test_inline_absolute_and_search(app, tmp_path):
    gen = app / "dist" / "out.js"
    m = hand_map()
    src = str(app / "src" / "app.ts")
    url = "file://" + str(gen)
    # inline data: URL
    data = base64.b64encode(json.dumps(m).encode()).decode()
    gen.write_text(GEN_JS + "//# sourceMappingURL=data:application/json;charset=utf-8;base64," + data + "\n")
    os.remove(str(gen) + ".map")
    q = nf.read(io.BytesIO(cpuprofile(url))).with_source_maps()
    assert names_lines(q)[0][:3] == ("inner", src, 5)
    assert q.meta["source_maps"][0]["map"] == f"{gen} (inline map)"
    # an absolute path elsewhere
    other = tmp_path / "maps" / "x.map"
    other.parent.mkdir()
    other.write_text(json.dumps(dict(m, sources=[src])))
    gen.write_text(GEN_JS + f"//# sourceMappingURL={other}\n")
    q = nf.read(io.BytesIO(cpuprofile(url))).with_source_maps()
    assert names_lines(q)[0][:3] == ("inner", src, 5)
    # no comment, no file beside: found through search= (recursively), sources resolved beside the map
    gen.write_text(GEN_JS)
    deep = tmp_path / "elsewhere" / "deep"
    deep.mkdir(parents=True)
    (deep / "out.js.map").write_text(json.dumps(dict(m, sources=["app.ts"])))
    p = nf.read(io.BytesIO(cpuprofile(url)))
    assert p.with_source_maps().meta["source_maps"] == []
    q = p.with_source_maps(search=[str(tmp_path / "elsewhere")])
    assert names_lines(q)[0][:3] == ("inner", str(deep / "app.ts"), 5)


def test_profile_read_elsewhere_finds_generated_file_and_map_in_search(app, tmp_path):
    # the profile names /srv/app/dist/out.js, which does not exist here
    q = nf.read(io.BytesIO(cpuprofile("file:///srv/app/dist/out.js"))).with_source_maps(search=str(app / "dist"))
    assert [n for n, *_ in names_lines(q)] == ["inner", "outer"]
    assert names_lines(q)[0][1] == str(app / "src" / "app.ts")


def test_root_prefix_reads_through_another_namespace(app, tmp_path):
    # as for /proc/PID/root: paths shown are the target's, files read below root
    q = nf.read(io.BytesIO(cpuprofile("file:///dist/out.js"))).with_source_maps(root=str(app))
    assert names_lines(q) == [("inner", "/src/app.ts", 5, 15), ("outer", "/src/app.ts", 1, 15)]


@pytest.mark.parametrize("content, what", [
    ('{"version": 3, "sources": ["a.ts"], "mappings": "AAAA,C', "truncated"),
    ('{"version": 3, "sources": ["a.ts"], "names": [], "mappings": "AA%A"}', "not a base64 VLQ digit"),
    ("not json at all", "invalid JSON"),
])
def test_broken_map_warns_and_keeps_the_profile(app, content, what):
    (app / "dist" / "out.js.map").write_text(content)
    gen = str(app / "dist" / "out.js")
    p = nf.read(io.BytesIO(cpuprofile("file://" + gen)))
    q = p.with_source_maps()
    assert names_lines(q) == names_lines(p)
    (w,) = q.meta["warnings"]
    assert gen in w and what in w, w


def test_missing_map_named_by_comment_warns(app):
    os.remove(app / "dist" / "out.js.map")
    gen = str(app / "dist" / "out.js")
    q = nf.read(io.BytesIO(cpuprofile("file://" + gen))).with_source_maps()
    assert names_lines(q)[0][0] == "a"
    assert any("not found" in w and gen in w for w in q.meta["warnings"])


def test_line_only_input_maps_function_start_and_warns(app):
    gen = str(app / "dist" / "out.js")
    q = nf.read(io.BytesIO(cpuprofile("file://" + gen, with_cols=False))).with_source_maps()
    # both functions are on generated line 1: without columns they land on its first mapping
    assert {ln for _n, _f, ln, _c in names_lines(q)} == {5}
    assert any("no column" in w for w in q.meta["warnings"])


def perf_script(gen: str, cols: bool) -> bytes:
    a, b = (f"JS:*a {gen}:1:11", f"JS:*b {gen}:1:28") if cols else (f"LazyCompile:*a {gen}:1", f"LazyCompile:*b {gen}:1")
    out = ""
    for i in range(5):
        out += (f"node 42/42 [000] {100 + i * 0.001:.6f}: 1000000 cpu-clock:\n"
                f"\t3a0000000001 {a} (/tmp/perf-42.map)\n\t3a0000000002 {b} (/tmp/perf-42.map)\n\n")
    return out.encode()


def test_perf_input_with_and_without_columns(app):
    gen = str(app / "dist" / "out.js")
    src = str(app / "src" / "app.ts")
    q = nf.read(io.BytesIO(perf_script(gen, True)), format="perf").with_source_maps()
    assert names_lines(q) == [("inner", src, 5, 15), ("outer", src, 1, 15)]
    assert not any("no column" in w for w in q.meta["warnings"])
    # node <= 18's perf map: a line, no column: the function start is mapped, with a warning
    q = nf.read(io.BytesIO(perf_script(gen, False)), format="perf").with_source_maps()
    assert q.meta["source_maps"] and len(q.samples) == 5
    assert any("no column" in w for w in q.meta["warnings"])


def test_functions_mapping_to_one_original_merge(app):
    # two generated copies of one function (two bundles sharing a source) become one function
    gen = app / "dist" / "out.js"
    (app / "dist" / "copy.js").write_text(gen.read_text().replace("out.js.map", "copy.js.map"))
    (app / "dist" / "copy.js.map").write_text((app / "dist" / "out.js.map").read_text())
    prof = json.loads(cpuprofile("file://" + str(gen)))
    prof["nodes"][0]["children"].append(4)
    prof["nodes"].append({"id": 4, "callFrame": {"functionName": "a", "scriptId": "8", "url": "file://" + str(
        app / "dist" / "copy.js"), "lineNumber": 0, "columnNumber": 10}, "children": []})
    prof["samples"].append(4)
    prof["timeDeltas"].append(1000)
    p = nf.read(io.BytesIO(json.dumps(prof).encode()))
    q = p.with_source_maps()
    q.validate()
    top = q.top(None)
    assert top.loc[top["name"] == "inner", "self"].tolist() == [4]
    assert len(q.meta["source_maps"]) == 2


# ------------------------------------------------------------------ real toolchains, live captures
NODE = shutil.which("node")
NPM = shutil.which("npm")
TOOLS = {"typescript": "5.9.3", "esbuild": "0.28.2"}
HERE = os.path.dirname(os.path.abspath(__file__))
TS_SRC = os.path.join(HERE, "workloads", "ts")


def _tools_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nodeflame", "npm-tools")


@pytest.fixture(scope="session")
def toolchain():
    """{name: path} of tsc and esbuild from the npm registry, cached in ~/.cache/nodeflame/npm-tools."""
    if NODE is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    d = _tools_dir()
    bins = {"tsc": os.path.join(d, "node_modules", ".bin", "tsc"),
            "esbuild": os.path.join(d, "node_modules", ".bin", "esbuild")}

    def installed():
        try:
            for name, want in TOOLS.items():
                with open(os.path.join(d, "node_modules", name, "package.json")) as fh:
                    if json.load(fh)["version"] != want:
                        return False
            return all(os.access(b, os.X_OK) for b in bins.values())
        except (OSError, ValueError, KeyError):
            return False

    if not installed():
        if NPM is None:
            pytest.skip("npm is not installed (apt-get install npm), so tsc and esbuild cannot be installed")
        os.makedirs(d, exist_ok=True)
        if not os.path.exists(os.path.join(d, "package.json")):
            with open(os.path.join(d, "package.json"), "w") as fh:
                json.dump({"name": "nodeflame-test-tools", "private": True}, fh)
        try:
            r = subprocess.run([NPM, "install", "--no-audit", "--no-fund", "--prefix", d]
                               + [f"{k}@{v}" for k, v in TOOLS.items()],
                               capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("npm install of typescript and esbuild took over 300 s (no registry access?)")
        if r.returncode != 0 or not installed():
            pytest.skip(f"npm install of typescript and esbuild failed: {(r.stderr or r.stdout)[-300:]}")
    try:
        subprocess.run([bins["esbuild"], "--version"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"esbuild from npm does not run here: {e}")
    return bins


def ts_line(rel: str, needle: str) -> int:
    with open(os.path.join(TS_SRC, rel)) as fh:
        for i, line in enumerate(fh, 1):
            if needle in line:
                return i
    raise AssertionError(needle)


# hot function -> (its TypeScript file, the line that declares it)
HOT = {"scoreOrders": ("service.ts", "scoreOrders(factor: number)"),
       "countPrimes": ("service.ts", "export function countPrimes("),
       "checksum": ("lib/hash.ts", "export function checksum(")}


def build(toolchain, tmp_path, how: str) -> str:
    """Copy the TypeScript service into tmp_path/src and compile it; returns the JS entry point."""
    src = tmp_path / "src"
    shutil.copytree(TS_SRC, src)
    out = tmp_path / "dist"
    if how == "tsc":
        cmd = [toolchain["tsc"], "--sourceMap", "--target", "es2020", "--module", "commonjs", "--strict",
               "--outDir", str(out), str(src / "service.ts"), str(src / "lib" / "hash.ts")]
    else:
        cmd = [toolchain["esbuild"], str(src / "service.ts"), "--bundle", "--minify", "--platform=node",
               f"--outfile={out / 'service.js'}", "--sourcemap=inline" if how == "esbuild-inline" else "--sourcemap"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return str(out / "service.js")


@pytest.fixture(scope="module")
def built(toolchain, tmp_path_factory):
    """``built(how)``: (JS entry, the directory holding its src/ and dist/), compiled once per module
    for each way (tsc takes seconds); the tests only read what it made (one that changes a build makes
    its own with :func:`build`)."""
    made = {}

    def get(how):
        if how not in made:
            root = tmp_path_factory.mktemp(f"ts-{how}")
            made[how] = (build(toolchain, root, how), root)
        return made[how]
    return get


NO_INLINING = ("--max-inlined-bytecode-size=0",)


class Service:
    def __init__(self, entry: str, tmp_path, node_args=NO_INLINING):
        self.err = open(tmp_path / "service.stderr", "w+")
        # no inlining by default: these tests are about names and places, and the small TypeScript
        # functions would all be inlined into serve(); test_live_walker_capture_of_inlined_typescript
        # is the realistic case beside them
        self.proc = subprocess.Popen([NODE, "--inspect-port=0", *node_args, entry],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.err.seek(0)
            raise AssertionError(f"the service did not start: {line!r} {self.err.read()[-500:]}")
        self.pid = self.proc.pid

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


@pytest.fixture
def service(tmp_path):
    made = []

    def start(entry, node_args=NO_INLINING):
        s = Service(entry, tmp_path, node_args)
        made.append(s)
        return s
    yield start
    for s in made:
        s.close()


def self_by(p, key_cols=("name",)):
    t = p.top(None)
    return t.groupby(list(key_cols), observed=True)["self"].sum()


def check_hot(q, root, gen_entry):
    """The hot functions appear with their TypeScript names, .ts files (under ``root``/src) and lines (within 1)."""
    top = q.top(None)
    found = {}
    for name, (rel, needle) in HOT.items():
        rows = top[top["name"].astype(str) == name]
        assert len(rows), f"{name} missing from {top.head(15)[['self', 'name', 'file', 'line']]}"
        r = rows.iloc[0]
        assert str(r["file"]) == str(root / "src" / rel), (name, r["file"])
        want = ts_line(rel, needle)
        assert abs(int(r["line"]) - want) <= 1, (name, int(r["line"]), want)
        found[name] = int(r["self"])
    assert sum(found.values()) > 0.5 * q.total, found
    mapped = {m["file"] for m in q.meta["source_maps"]}
    assert any(gen_entry in f for f in mapped), mapped
    return found


@pytest.mark.parametrize("how", ["tsc", "esbuild", "esbuild-inline"])
def test_live_inspector_capture_shows_typescript(built, service, how):
    entry, root = built(how)
    s = service(entry)
    raw = nf.capture(s.pid, 1.5, backend="inspector", hz=1000, source_maps=False)
    q = raw.with_source_maps(root=f"/proc/{s.pid}/root")
    found = check_hot(q, root, entry)
    # the maps change names and places, not time: each hot function has the self time its generated
    # function had in the unmapped capture
    assert q.total == raw.total
    rt, qt = raw.top(None), q.top(None)
    for name in HOT:
        g = q.funcs[q.funcs["name"].astype(str) == name].iloc[0]
        assert str(g["gen_file"]).endswith(".js") and g["gen_line"] > 0 and g["gen_column"] > 0
        orig = raw.funcs[(raw.funcs["name"].astype(str) == str(g["gen_name"]))
                         & (raw.funcs["file"].astype(str) == str(g["gen_file"]))
                         & (raw.funcs["line"] == g["gen_line"]) & (raw.funcs["column"] == g["gen_column"])]
        assert len(orig) == 1, (name, g)
        assert int(rt.loc[orig.index[0], "self"]) == int(qt.loc[qt["name"] == name, "self"].iloc[0]) == found[name]
    if how != "tsc":   # minified names come back from the map's names
        assert set(HOT) - set(raw.funcs["name"].astype(str)), "esbuild kept the names? then this proves nothing"
    # hot lines: positionTicks of tsc's output land on the TypeScript lines of the loop, with their text
    hl = q.hot_lines("countPrimes")
    first = ts_line("service.ts", "export function countPrimes(")
    src_lines = open(os.path.join(TS_SRC, "service.ts")).read().split("\n")
    for _, r in hl.iterrows():
        assert r["text"] == src_lines[r["line"] - 1].strip() and r["file"].endswith("service.ts")
    if how == "tsc":
        body = hl[(hl["line"] > first) & (hl["line"] < first + 14)]
        assert body["self"].sum() >= 0.5 * found["countPrimes"], hl
        assert not any("minified" in w for w in q.meta["warnings"])
        assert len(body) >= 2   # the ticks spread over the loop's lines, not one line
    else:   # minified: one generated line, and positionTicks carry no column
        assert any("minified" in w for w in q.meta["warnings"])
    # captured with maps applied by default
    p = nf.capture(s.pid, 1.0, backend="inspector", hz=1000)
    check_hot(p, root, entry)
    assert p.meta["transforms"][-1] == "source-maps"


def test_cpuprofile_of_bundle_with_maps_from_dir(toolchain, service, tmp_path, capsys):
    from nodeflame.cli import main
    entry = build(toolchain, tmp_path, "esbuild")
    s = service(entry)
    raw = nf.capture(s.pid, 1.5, backend="inspector", hz=1000, source_maps=False)
    prof = tmp_path / "bundle.cpuprofile"
    raw.write(str(prof))
    maps = tmp_path / "maps"
    maps.mkdir()
    shutil.move(entry + ".map", maps / "service.js.map")
    # without the map: a warning naming the file, the profile still loads
    q0 = nf.read(str(prof)).with_source_maps()
    assert any(entry in w and "not found" in w for w in q0.meta["warnings"])
    assert "countPrimes" not in set(q0.funcs["name"].astype(str))
    # with --source-maps DIR the same answer as live
    assert main(["top", str(prof), "--source-maps", str(maps), "-n", "40"]) == 0
    out = capsys.readouterr().out
    for name, (rel, _) in HOT.items():
        assert name in out and str(tmp_path / "src" / rel) in out
    q = nf.read(str(prof)).with_source_maps(search=[str(maps)])
    check_hot(q, tmp_path, entry)
    assert main(["top", str(prof), "--source-maps", str(maps), "--lines", "-n", "5"]) == 0
    assert "hottest lines" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["tsc", "esbuild"])
def test_live_walker_capture_shows_typescript(built, service, how):
    from nodeflame.capture.base import availability
    entry, root = built(how)
    s = service(entry)
    why = availability("walker", s.pid)
    if why:
        pytest.skip(f"walker backend unavailable: {why}")
    raw = nf.capture(s.pid, 1.5, backend="walker", source_maps=False)
    q = raw.with_source_maps(root=f"/proc/{s.pid}/root")
    check_hot(q, root, entry)
    assert q.total == raw.total


@pytest.mark.parametrize("how", ["tsc", "esbuild"])
def test_live_walker_capture_of_inlined_typescript(built, service, how):
    """The realistic case: TurboFan inlines the TypeScript helpers into serve() (minified, for esbuild);
    the walker expands them and the maps name them in the .ts files, executing lines included."""
    from nodeflame.capture.base import availability
    entry, root = built(how)
    s = service(entry, node_args=())
    why = availability("walker", s.pid)
    if why:
        pytest.skip(f"walker backend unavailable: {why}")
    nf.capture(s.pid, 2, backend="walker", source_maps=False)     # let TurboFan inline while we watch
    raw = nf.capture(s.pid, 2, backend="walker", source_maps=False)
    inl = raw.frames["tier"].astype(str) == "inlined"
    assert inl.any(), "nothing was inlined: this test would prove nothing"
    q = raw.with_source_maps(root=f"/proc/{s.pid}/root")
    check_hot(q, root, entry)
    # the inlined frames of the hot helpers carry TypeScript lines inside their function
    src = {rel: open(os.path.join(TS_SRC, rel)).read().split("\n") for rel, _ in HOT.values()}
    fr, fu = q.frames, q.funcs
    for name, (rel, needle) in HOT.items():
        ids = fu.index[(fu["name"].astype(str) == name)]
        lines = fr.loc[fr["func"].isin(ids) & (fr["line"] > 0), "line"]
        assert len(lines), name
        first = ts_line(rel, needle)
        assert ((lines >= first) & (lines <= first + 20)).all(), (name, sorted(set(lines)), first)
        assert all(src[rel][ln - 1].strip() for ln in lines), (name, sorted(set(lines)))


def test_run_and_cli_apply_maps_by_default(built, tmp_path, capsys):
    from nodeflame.cli import main
    entry, root = built("esbuild")
    # no inlining: this test is about run()/record applying maps, checked by name through the inspector;
    # inlining itself is covered by test_live_walker_capture_of_inlined_typescript (walker) and
    # tests/test_inspector_warm.py (the inspector's re-attribution on a warmed, inlined workload)
    argv = [NODE, *NO_INLINING, entry, "--seconds=5"]
    p = nf.run(argv, 1.5, backend="inspector", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    check_hot(p, root, entry)
    out = tmp_path / "raw.nfprof"
    assert main(["record", "-d", "1", "--backend", "inspector", "--no-source-maps", "-q", "-o", str(out),
                 "--"] + argv) == 0
    r = nf.read(str(out))
    minified = {"countPrimes", "checksum"}   # esbuild renames functions, not methods (scoreOrders)
    assert not minified & set(r.funcs["name"].astype(str)), minified & set(r.funcs["name"].astype(str))
    assert "source_maps" not in r.meta and r.funcs["file"].astype(str).str.endswith("service.js").any()
    out2 = tmp_path / "mapped.nfprof"
    assert main(["record", "-d", "1", "--backend", "inspector", "-q", "-o", str(out2), "--"] + argv) == 0
    check_hot(nf.read(str(out2)), root, entry)


def test_bundled_dependency_becomes_deps_with_its_package(app):
    m = hand_map()
    m["sources"] = ["../node_modules/@acme/fmt/lib/index.js"]
    (app / "dist" / "out.js.map").write_text(json.dumps(m))
    q = nf.read(io.BytesIO(cpuprofile("file://" + str(app / "dist" / "out.js")))).with_source_maps()
    f = q.funcs[q.funcs["name"].astype(str) == "inner"].iloc[0]
    assert f["kind"] == "deps" and f["package"] == "@acme/fmt"
    assert f["file"] == str(app / "node_modules" / "@acme" / "fmt" / "lib" / "index.js")


def test_cli_convert_with_source_maps(app, tmp_path, capsys):
    from nodeflame.cli import main
    prof = tmp_path / "p.cpuprofile"
    prof.write_bytes(cpuprofile("file://" + str(app / "dist" / "out.js")))
    maps = tmp_path / "m"
    maps.mkdir()
    shutil.move(str(app / "dist" / "out.js.map"), maps / "out.js.map")
    out = tmp_path / "o.folded"
    assert main(["convert", str(prof), str(out), "--source-maps", str(maps)]) == 0
    text = out.read_text()
    assert "inner" in text and "app.ts" in text and "out.js" not in text
    assert main(["convert", str(prof), str(out)]) == 0
    assert "inner" not in out.read_text()
    # a broken map: the conversion still happens, the warning names the file
    (maps / "out.js.map").write_text("{")
    assert main(["convert", str(prof), str(out), "--source-maps", str(maps)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and str(maps / "out.js.map") in err
