"""V8 .cpuprofile reader and writer: corpus files, known facts, bad input, round trips."""
import copy
import gzip
import io
import json

import numpy as np
import pandas as pd
import pytest

import nodeflame as nf
from nodeflame.frames.build import FrameTable, build_profile
from nodeflame.frames.formats import render, sniff
from nodeflame.frames.readers.cpuprofile import read_cpuprofile
from nodeflame.frames.readers.cpuprofile import sniff as sniff_cpuprofile

CHROME = "speedscope/Chrome/65/simple.cpuprofile"
OLD = "speedscope/node/10.11.0/example.cpuprofile"


def folded(p):
    return render(p, "folded")


def to_bytes(p, fmt="cpuprofile", **opts):
    buf = io.BytesIO()
    p.write(buf, format=fmt, **opts)
    return buf.getvalue()


def node(i, name, children=(), url="", line=0, col=0, sid="1", **kw):
    n = {"id": i, "callFrame": {"functionName": name, "scriptId": sid, "url": url, "lineNumber": line,
                                "columnNumber": col}, "hitCount": 0}
    if children:
        n["children"] = list(children)
    n.update(kw)
    return n


def small_doc():
    """(root) -> main -> {work, (garbage collector)}; work -> writeUtf8String."""
    return {
        "nodes": [node(1, "(root)", [2, 5, 6], line=-1, col=-1, sid="0"),
                  node(2, "main", [3], url="file:///app/main.js", line=0, col=9),
                  node(3, "work", [4], url="file:///app/main.js", line=4, col=13,
                       positionTicks=[{"line": 6, "ticks": 2}]),
                  node(4, "writeUtf8String", line=-1, col=-1, sid="0"),
                  node(5, "(garbage collector)", line=-1, col=-1, sid="0"),
                  node(6, "(program)", line=-1, col=-1, sid="0")],
        "startTime": 1000, "endTime": 9000,
        "samples": [3, 3, 4, 5, 6, 2],
        "timeDeltas": [100, 1000, 1000, 1000, 1000, 1000],
    }


def read_doc(doc):
    return read_cpuprofile(json.dumps(doc).encode(), "t.cpuprofile")


# ------------------------------------------------------------------ corpus


@pytest.mark.parametrize("rel", [CHROME, OLD])
def test_corpus_loads_and_validates(corpus, rel):
    p = nf.read(corpus / rel)
    p.validate()
    assert p.meta["source_format"] == "cpuprofile"
    assert p.meta["timed"] is True and p.meta["unit"] == "samples"
    assert p.total == 29 and len(p.samples) == 29
    assert "(root)" not in set(p.funcs["name"].astype(str))


def test_chrome_simple_facts(corpus):
    raw = json.loads((corpus / CHROME).read_text())
    p = nf.read(corpus / CHROME)
    top = p.top(None)
    d = top[top["name"] == "d"]
    assert len(d) == 1 and int(d["self"].iloc[0]) == 28 and int(d["total"].iloc[0]) == 28
    # the 28 self samples of d are split 14/14 between a;b;d and a;c;d
    assert folded(p).splitlines() == ["(anonymous) 1", "(anonymous);a;b;d 14", "(anonymous);a;c;d 14"]
    by_leaf = p.stack_weights()
    by_leaf = {st: int(w) for st, w in enumerate(by_leaf) if w}
    d_stacks = [st for st in by_leaf if p.funcs["name"].iloc[p.frames["func"].iloc[p.stacks["frame"].iloc[st]]] == "d"]
    assert sorted(by_leaf[s] for s in d_stacks) == [14, 14]
    # callFrame lineNumber 13 (0-based) -> 14; positionTicks lines are already 1-based
    f = p.funcs.set_index("name")
    assert int(f.loc["d", "line"]) == 14 and int(f.loc["d", "column"]) == 11
    assert int(f.loc["a", "line"]) == 1 and int(f.loc["a", "column"]) == 11
    assert f.loc["d", "kind"] == "js"  # scriptId 164, no url
    L = p.lines
    assert int(L.loc[L["line"] == 16, "ticks"].sum()) == 27
    assert int(L.loc[L["line"] == 14, "ticks"].sum()) == 1
    assert set(L["stack"]) == set(d_stacks)
    # times: startTime + cumulative timeDeltas, in ns
    want = (raw["startTime"] + np.cumsum(raw["timeDeltas"])) * 1000
    assert np.array_equal(p.samples["time_ns"].to_numpy(), want)
    assert p.meta["start_time"] == raw["startTime"] * 1000
    assert p.meta["duration_ns"] == (raw["endTime"] - raw["startTime"]) * 1000
    assert p.meta["period_ns"] == round(np.diff(want).mean())


def test_old_tree_form_equals_protocol_form(corpus):
    new = nf.read(corpus / CHROME)
    old = nf.read(corpus / OLD)
    assert folded(old) == folded(new)
    assert np.array_equal(old.samples["time_ns"].to_numpy(), new.samples["time_ns"].to_numpy())


def test_sniff_corpus(corpus):
    for rel in (CHROME, OLD):
        assert sniff((corpus / rel).read_bytes()) == "cpuprofile"
    for rel in ("speedscope/speedscope/0.1.2/simple-sampled.speedscope.json",
                "speedscope/stackcollapse/simple.txt"):
        data = (corpus / rel).read_bytes()
        assert not sniff_cpuprofile(data, data.decode())


def test_sniff_uses_only_the_head_and_handles_gzip(corpus):
    data = (corpus / CHROME).read_bytes()
    assert sniff_cpuprofile(data[:200], data[:200].decode())
    gz = gzip.compress(data)
    assert sniff_cpuprofile(gz[:65536], None)
    assert sniff(gz) == "cpuprofile"
    assert folded(nf.read(gz)) == folded(nf.read(data))
    assert not sniff_cpuprofile(b'{"foo": 1}', '{"foo": 1}')
    assert not sniff_cpuprofile(b"a;b 1\n", "a;b 1\n")


# ------------------------------------------------------------------ kinds, lines, times


def test_kinds_and_root():
    doc = small_doc()
    doc["nodes"].append(node(7, "JSON.parse", line=-1, col=-1, sid="0"))
    doc["nodes"].append(node(8, "evald", line=2, col=0, sid="77"))
    doc["nodes"].append(node(9, "emit", url="node:events", line=10, col=1, sid="3"))
    doc["nodes"].append(node(10, "get", url="file:///app/node_modules/lodash/get.js", line=1, col=1, sid="4"))
    doc["nodes"].append(node(11, "(idle)", line=-1, col=-1, sid="0"))
    doc["nodes"][1]["children"] += [7, 8, 9, 10]
    doc["nodes"][0]["children"].append(11)
    doc["samples"] += [7, 8, 9, 10, 11]
    doc["timeDeltas"] += [10] * 5
    p = read_doc(doc)
    kinds = dict(zip(p.funcs["name"].astype(str), p.funcs["kind"].astype(str)))
    assert kinds == {"main": "js", "work": "js", "writeUtf8String": "native", "(garbage collector)": "gc",
                     "(program)": "program", "JSON.parse": "builtin", "evald": "js", "emit": "node",
                     "get": "deps", "(idle)": "idle"}
    assert dict(zip(p.funcs["name"].astype(str), p.funcs["package"].astype(str)))["get"] == "lodash"
    # (root) is transparent: gc, program and idle are root frames
    roots = p.stacks[p.stacks["prefix"] == -1]
    root_names = {p.funcs["name"].iloc[p.frames["func"].iloc[f]] for f in roots["frame"]}
    assert root_names == {"main", "(garbage collector)", "(program)", "(idle)"}
    # unknown line/column (-1) -> 0
    f = p.funcs.set_index("name")
    assert int(f.loc["writeUtf8String", "line"]) == 0 and int(f.loc["main", "column"]) == 10


def test_negative_time_deltas_are_sorted_and_noted():
    doc = small_doc()
    doc["timeDeltas"] = [100, 1000, -500, 1000, 1000, 1000]
    p = read_doc(doc)
    p.validate()
    t = p.samples["time_ns"].to_numpy()
    assert (np.diff(t) >= 0).all()
    want = sorted(((1000 + np.cumsum(doc["timeDeltas"])) * 1000).tolist())
    assert t.tolist() == want
    assert any("negative timeDeltas" in w for w in p.meta["warnings"])


def test_profile_without_samples_uses_hit_counts():
    doc = small_doc()
    del doc["samples"], doc["timeDeltas"]
    doc["nodes"][2]["hitCount"] = 5
    doc["nodes"][3]["hitCount"] = 2
    p = read_doc(doc)
    p.validate()
    assert p.meta["timed"] is False and p.total == 7
    assert any("hitCount" in w for w in p.meta["warnings"])
    assert sorted(folded(p).splitlines()) == [
        "main file:///app/main.js:1;work file:///app/main.js:5 5",
        "main file:///app/main.js:1;work file:///app/main.js:5;writeUtf8String 2"]


def test_parent_form_and_non_contiguous_ids():
    doc = small_doc()
    for n in doc["nodes"]:
        n.pop("children", None)
    parents = {2: 1, 3: 2, 4: 3, 5: 1, 6: 1}
    remap = {1: 100, 2: 7, 3: 55, 4: 3, 5: 9, 6: 1000}
    for n in doc["nodes"]:
        if n["id"] in parents:
            n["parent"] = remap[parents[n["id"]]]
        n["id"] = remap[n["id"]]
    doc["samples"] = [remap[s] for s in doc["samples"]]
    p = read_doc(doc)
    assert folded(p) == folded(read_doc(small_doc()))


# ------------------------------------------------------------------ bad input


def bad(doc_or_bytes):
    data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else json.dumps(doc_or_bytes).encode()
    with pytest.raises(nf.FormatError) as ei:
        read_cpuprofile(data, "bad.cpuprofile")
    msg = str(ei.value)
    assert msg.startswith("bad.cpuprofile")
    return msg


def test_truncated_json_names_line_and_column(corpus):
    data = (corpus / CHROME).read_bytes()
    msg = bad(data[:700])
    assert "invalid JSON" in msg and "column" in msg and "truncated" in msg
    e = pytest.raises(nf.FormatError, read_cpuprofile, data[:700], "x").value
    assert e.line == data[:700].rstrip().count(b"\n") + 1


def test_nodes_not_a_list():
    doc = small_doc()
    doc["nodes"] = {"1": doc["nodes"][0]}
    msg = bad(doc)
    assert "nodes is an object" in msg and "a list of node objects" in msg


def test_child_id_that_does_not_exist():
    doc = small_doc()
    doc["nodes"][2]["children"] = [4, 99]
    msg = bad(doc)
    assert "nodes[2].children[1]" in msg and "99" in msg


def test_sample_referencing_unknown_node():
    doc = small_doc()
    doc["samples"][4] = 42
    msg = bad(doc)
    assert "samples[4]" in msg and "42" in msg


@pytest.mark.parametrize("mutate,where,expected", [
    (lambda d: d["nodes"][3].pop("callFrame"), "nodes[3].callFrame", "functionName"),
    (lambda d: d["nodes"][3]["callFrame"].__setitem__("lineNumber", "7"), "nodes[3].callFrame.lineNumber",
     "integer"),
    (lambda d: d["nodes"][1]["callFrame"].__setitem__("functionName", None), "nodes[1].callFrame.functionName",
     "string"),
    (lambda d: d["nodes"][4].pop("id"), "nodes[4].id", "node id"),
    (lambda d: d["nodes"][2].__setitem__("children", 4), "nodes[2].children", "list of node ids"),
    (lambda d: d["nodes"][2].__setitem__("children", ["4"]), "nodes[2].children[0]", "integer"),
    (lambda d: d["nodes"][4].__setitem__("id", 2), "nodes[4].id", "unique"),
    (lambda d: d["nodes"][2].__setitem__("positionTicks", [{"line": 3}]), "nodes[2].positionTicks[0]", "ticks"),
    (lambda d: d.__setitem__("samples", [3, "x"]), "samples[1]", "integer"),
    (lambda d: d.__setitem__("timeDeltas", [1, None, 3, 4, 5, 6]), "timeDeltas[1]", "number"),
    (lambda d: d["nodes"][5].__setitem__("children", [3]), "nodes[5].children", "tree"),
    (lambda d: d["nodes"][0].__setitem__("children", [1, 5]), "nodes[0]", "tree"),
    (lambda d: d.__setitem__("startTime", "soon"), "startTime", "microseconds"),
    # integers beyond what V8 records (int32 lines, int64 ids): our error at their path
    (lambda d: d["nodes"][3]["callFrame"].__setitem__("lineNumber", 2**40), "nodes[3].callFrame.lineNumber",
     "integer"),
    (lambda d: d["nodes"][3]["callFrame"].__setitem__("columnNumber", -2**70), "nodes[3].callFrame.columnNumber",
     "integer"),
    (lambda d: d["nodes"][2].__setitem__("children", [2**70]), "nodes[2].children[0]", "integer"),
    (lambda d: d["nodes"][4].__setitem__("id", 2**64), "nodes[4].id", "node id"),
    (lambda d: d["nodes"][2].__setitem__("positionTicks", [{"line": 2**63 - 1, "ticks": 1}]),
     "nodes[2].positionTicks[0]", "ticks"),
    (lambda d: d["nodes"][2].__setitem__("positionTicks", [{"line": 3, "ticks": 2**64}]),
     "nodes[2].positionTicks[0]", "ticks"),
])
def test_wrong_types_name_the_json_path(mutate, where, expected):
    doc = small_doc()
    mutate(doc)
    msg = bad(doc)
    assert where in msg and expected in msg


@pytest.mark.parametrize("key, value", [("scriptId", []), ("scriptId", {"a": 1}), ("id", 2**70),
                                        ("hitCount", 2**64), ("lineNumber", 2**40)])
def test_old_tree_form_errors_name_the_node(corpus, key, value):
    doc = json.loads((corpus / OLD).read_text())
    doc["head"]["children"][0][key] = value
    e = pytest.raises(nf.FormatError, read_cpuprofile, json.dumps(doc).encode(), "old.cpuprofile").value
    assert e.position == f"head.children[0].{key}" and str(e).startswith("old.cpuprofile")


def test_cycle_and_wrong_top_level():
    doc = small_doc()
    doc["nodes"][3]["children"] = [2]  # 2 -> 3 -> 4 -> 2
    doc["nodes"][0]["children"] = [5]
    msg = bad(doc)
    assert "cycle" in msg
    assert "not a CPU profile" in bad({"foo": 1})
    assert "not a CPU profile" in bad(b"42")


def test_nothing_escapes_as_keyerror_or_indexerror():
    """Randomly damaged documents raise FormatError (or load), never another exception."""
    rng = np.random.default_rng(0)
    base = small_doc()
    victims = [None, "x", -1, [], {}, 3.5, True]
    for _ in range(300):
        doc = copy.deepcopy(base)
        n = doc["nodes"][int(rng.integers(len(doc["nodes"])))]
        target = n if rng.random() < 0.5 else n["callFrame"]
        key = list(target)[int(rng.integers(len(target)))]
        if rng.random() < 0.3:
            del target[key]
        else:
            target[key] = victims[int(rng.integers(len(victims)))]
        try:
            read_cpuprofile(json.dumps(doc).encode(), "fuzz")
        except nf.FormatError:
            pass


# ------------------------------------------------------------------ writer and round trips


def test_round_trip_corpus(corpus):
    for rel in (CHROME, OLD):
        p = nf.read(corpus / rel)
        data = to_bytes(p)
        doc = json.loads(data)
        assert doc["nodes"][0]["callFrame"]["functionName"] == "(root)"
        assert sum(n["hitCount"] for n in doc["nodes"]) == len(doc["samples"]) == 29
        q = nf.read(data)
        q.validate()
        assert folded(q) == folded(p)
        assert np.array_equal(q.samples["time_ns"].to_numpy(), p.samples["time_ns"].to_numpy())
        pd.testing.assert_frame_equal(q.lines, p.lines)
        for k in ("start_time", "duration_ns", "period_ns", "timed"):
            assert q.meta[k] == p.meta[k], k
        cols = ["name", "file", "line", "column", "kind"]
        key = lambda f: sorted(map(tuple, f[cols].astype(str).to_numpy().tolist()))  # noqa: E731
        assert key(q.funcs) == key(p.funcs)


def test_written_file_matches_v8_conventions(corpus):
    raw = json.loads((corpus / CHROME).read_text())
    doc = json.loads(to_bytes(nf.read(corpus / CHROME)))
    assert set(doc) == {"nodes", "startTime", "endTime", "samples", "timeDeltas"}
    assert doc["startTime"] == raw["startTime"] and doc["endTime"] == raw["endTime"]
    assert doc["timeDeltas"] == raw["timeDeltas"]
    by_name = {n["callFrame"]["functionName"]: n for n in doc["nodes"]}
    assert by_name["d"]["callFrame"]["lineNumber"] == 13 and by_name["d"]["callFrame"]["columnNumber"] == 10
    ids = {n["id"] for n in doc["nodes"]}
    assert all(c in ids for n in doc["nodes"] for c in n["children"])
    pt = sorted((t["line"], t["ticks"]) for n in doc["nodes"] for t in n.get("positionTicks", ()))
    assert pt == sorted((t["line"], t["ticks"]) for n in raw["nodes"] for t in n.get("positionTicks", ()))


def test_untimed_profile_gets_1ms_samples(corpus):
    p = nf.read(corpus / "speedscope/stackcollapse/simple.txt")
    assert not p.meta["timed"]
    doc = json.loads(to_bytes(p))
    assert len(doc["samples"]) == p.total
    assert set(doc["timeDeltas"]) == {1000}
    q = nf.read(json.dumps(doc).encode())
    assert sorted(folded(q).splitlines()) == sorted(folded(p).splitlines())
    kinds = lambda x: sorted(map(tuple, x.funcs[["name", "kind"]].astype(str).to_numpy().tolist()))  # noqa
    assert kinds(q) == kinds(p)


def test_time_weighted_profile_spends_weights_as_intervals():
    ft = FrameTable()
    a, b = ft.add("a", "/x.js", 1), ft.add("b", "/x.js", 5)
    p = build_profile(ft, np.array([0, 1, 3]), np.array([a, a, b]), weights=np.array([3000, 5000]),
                      meta={"unit": "nanoseconds"})
    doc = json.loads(to_bytes(p))
    assert doc["timeDeltas"] == [0, 3] and doc["endTime"] - doc["startTime"] == 8


def test_thread_selection_and_merge_warning():
    ft = FrameTable()
    a, b = ft.add("a", "/x.js", 1), ft.add("b", "/x.js", 5)
    p = build_profile(ft, np.array([0, 1, 2, 3]), np.array([a, b, a]), times=np.array([1, 2, 3]) * 1000,
                      threads=["t1", "t2", "t1"])
    with pytest.warns(nf.FormatWarning, match="merged"):
        doc = json.loads(to_bytes(p))
    assert len(doc["samples"]) == 3
    one = json.loads(to_bytes(p, thread="t1"))
    assert len(one["samples"]) == 2
    with pytest.raises(nf.NodeflameError, match="no thread"):
        to_bytes(p, thread="nope")


@pytest.mark.parametrize("rel", [CHROME, OLD])
def test_folded_round_trip(corpus, rel, tmp_path):
    p = nf.read(corpus / rel)
    p.write(tmp_path / "x.folded")
    q = nf.read(tmp_path / "x.folded")
    assert sorted(folded(q).splitlines()) == sorted(folded(p).splitlines())


# ------------------------------------------------------------------ property test

hyp = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

# (name, file, line, kind hint): kinds a cpuprofile can carry (builtin/native via scriptId 0 and the name)
FUNCS = [("main", "file:///app/main.js", 1, None), ("work", "file:///app/lib.js", 10, None),
         ("get", "file:///app/node_modules/lodash/get.js", 3, None), ("emit", "node:events", 40, None),
         ("writeUtf8String", "", 0, "native"), ("(garbage collector)", "", 0, None),
         ("", "file:///app/main.js", 1, None), ("JSON.parse", "", 0, "jit-builtin"),
         ("work", "file:///app/lib.js", 20, None), ("evald", "", 3, "js")]


@st.composite
def profiles(draw):
    n = draw(st.integers(1, 25))
    paths = [draw(st.lists(st.integers(0, len(FUNCS) - 1), min_size=1, max_size=8)) for _ in range(n)]
    weights = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    timed = draw(st.booleans())
    times = None
    if timed:
        gaps = draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n))
        times = (10_000 + np.cumsum(gaps)) * 1000  # whole µs: a cpuprofile's resolution
    ft = FrameTable()
    ids = [ft.add(nm, fl, ln, 1 if fl else 0, hint=h) for nm, fl, ln, h in FUNCS]
    offsets = np.concatenate(([0], np.cumsum([len(x) for x in paths])))
    flat = np.array([ids[i] for x in paths for i in x])
    with_lines = draw(st.booleans())
    lines = None
    if with_lines:
        lines = pd.DataFrame({"path": np.arange(n), "line": np.arange(n) % 7 + 1, "ticks": weights})
    return build_profile(ft, offsets, flat, weights=np.array(weights), times=times, lines=lines,
                         meta={"start_time": 9_000_000 if timed else None})


@settings(max_examples=60, deadline=None)
@given(profiles())
def test_property_cpuprofile_round_trip(p):
    q = nf.read(to_bytes(p))
    q.validate()
    assert sorted(folded(q).splitlines()) == sorted(folded(p).splitlines())
    assert q.total == p.total
    if p.meta["timed"]:
        w = p.samples["weight"].to_numpy()
        assert np.array_equal(q.samples["time_ns"].to_numpy(), np.repeat(p.samples["time_ns"].to_numpy(), w))
    kinds = lambda x: sorted(set(map(tuple, x.funcs[["name", "kind"]].astype(str).to_numpy().tolist())))  # noqa
    assert kinds(q) == kinds(p.compact())
    # per-line ticks survive, attached to the same stacks (compared by stack text)
    def line_set(x):
        from nodeflame.writers.folded import _stack_texts
        txt = _stack_texts(x, x.frame_labels())
        return sorted(zip(txt[x.lines["stack"].to_numpy()], x.lines["line"], x.lines["ticks"]))
    assert line_set(q) == line_set(p)


# ------------------------------------------------------------------ fast path (msgspec) == careful path

from nodeflame.frames.readers import v8protocol as cp_reader  # noqa: E402

_CALL_FRAMES = [{"functionName": "(root)", "scriptId": "0", "url": "", "lineNumber": -1, "columnNumber": -1},
                {"functionName": "main", "scriptId": "3", "url": "file:///app/main.js", "lineNumber": 0,
                 "columnNumber": 9},
                {"functionName": "work", "scriptId": 3, "url": "file:///app/main.js", "lineNumber": 4},
                {"functionName": "JSON.parse", "scriptId": "0", "url": "", "lineNumber": -1, "columnNumber": -1},
                {"functionName": "", "scriptId": "7", "url": "node:internal/timers", "lineNumber": 511,
                 "columnNumber": 17},
                {"functionName": "(garbage collector)", "scriptId": "0"}]
# values the fast path must refuse (and the careful path then accepts or names)
_ODD = [None, 2**63, -2**63 - 1, 2**64 + 5, 1.5, -0.0, "7", [1], {}, True, 2**31, -2**40, 1e300]


def _shuffled(obj, rnd):
    """The same JSON value with every object's keys in another order."""
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(obj, list):
        return [_shuffled(v, rnd) for v in obj]
    return obj


@st.composite
def protocol_docs(draw):
    n = draw(st.integers(1, 30))
    nodes = []
    for i in range(n):
        cf = dict(_CALL_FRAMES[0 if i == 0 else draw(st.integers(1, len(_CALL_FRAMES) - 1))])
        node = {"id": i + 1, "callFrame": cf}
        if draw(st.booleans()):
            node["hitCount"] = draw(st.integers(0, 5))
        nodes.append(node)
    for i in range(1, n):  # a random tree: each node below an earlier one
        par = nodes[draw(st.integers(0, i - 1))]
        par.setdefault("children", []).append(i + 1)
    for node in nodes:
        if "children" not in node and draw(st.integers(0, 3)) == 0:
            node["children"] = [] if draw(st.booleans()) else None
        if draw(st.integers(0, 2)) == 0:
            node["positionTicks"] = [{"line": draw(st.integers(-1, 40)), "ticks": draw(st.integers(0, 9))}
                                     for _ in range(draw(st.integers(0, 3)))]
    k = draw(st.integers(0, 40))
    doc = {"nodes": nodes, "startTime": draw(st.sampled_from([0, 1000, 1.5e6, 80_000_000_000])),
           "endTime": 90_000_000_000,
           "samples": [draw(st.integers(1, n)) for _ in range(k)]}
    if draw(st.integers(0, 4)):
        doc["timeDeltas"] = [draw(st.one_of(st.integers(-50, 5000), st.floats(-10, 5000, allow_nan=False)))
                             for _ in range(k + draw(st.integers(-1, 1)) if k else 0)]
    damage = draw(st.integers(0, 3)) == 0
    if damage:  # one odd value at a random place
        v = draw(st.sampled_from(_ODD))
        where = draw(st.sampled_from(["samples", "timeDeltas", "children", "id", "line", "column", "tick",
                                      "startTime", "hitCount"]))
        node = nodes[draw(st.integers(0, n - 1))]
        if where in ("samples", "timeDeltas") and doc.get(where):
            doc[where][draw(st.integers(0, len(doc[where]) - 1))] = v
        elif where == "children" and node.get("children"):
            node["children"][0] = v
        elif where == "id":
            node["id"] = v
        elif where in ("line", "column"):
            node["callFrame"]["lineNumber" if where == "line" else "columnNumber"] = v
        elif where == "tick" and node.get("positionTicks"):
            node["positionTicks"][0]["ticks"] = v
        elif where in ("startTime",):
            doc["startTime"] = v
        elif where == "hitCount":
            node["hitCount"] = v
    rnd = __import__("random").Random(draw(st.integers(0, 2**32)))
    doc = _shuffled(doc, rnd)
    indent = draw(st.sampled_from([None, 0, 1]))
    seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    return json.dumps(doc, indent=indent, separators=seps).encode(), damage


def _read_both(data):
    """(fast result, careful result): each a Profile or the FormatError's text."""
    out = []
    for fast in (True, False):
        saved = cp_reader._DECODER
        if not fast:
            cp_reader._DECODER = False
        try:
            out.append(read_cpuprofile(data, "t.cpuprofile"))
        except nf.FormatError as e:
            out.append(str(e))
        finally:
            cp_reader._DECODER = saved
    return out


def _assert_same(a, b):
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    for t in ("funcs", "frames", "stacks", "samples", "lines"):
        pd.testing.assert_frame_equal(getattr(a, t), getattr(b, t))
    assert a.meta == b.meta


@settings(max_examples=150, deadline=None)
@given(protocol_docs())
def test_fast_path_reads_what_the_careful_path_reads(case):
    """msgspec with samples, timeDeltas, children and call frames taken as JSON text and parsed
    in C gives exactly the Profile (or the error) of the json-module path, whatever the key
    order, spacing, missing/null/empty fields, and with one odd value anywhere."""
    data, damaged = case
    fast, careful = _read_both(data)
    _assert_same(fast, careful)
    if not damaged and cp_reader._decoder():
        # a sound file is read by the fast path itself (else this test would prove nothing)
        assert cp_reader.fast_protocol_part(data, "t.cpuprofile", "main") is not None


def test_hit_count_out_of_range_matters_only_where_it_is_used():
    """hitCount is each node's sample count: beyond int64 it is an error without samples, and
    ignored with them, whether or not another node has "children": null (found by the test above)."""
    for null_children in (False, True):
        doc = small_doc()
        doc["nodes"][0]["hitCount"] = 2**63
        if null_children:
            doc["nodes"][3]["children"] = None
        fast, careful = _read_both(json.dumps(doc).encode())
        _assert_same(fast, careful)
        assert not isinstance(fast, str) and fast.total == 6
        del doc["samples"]
        fast, careful = _read_both(json.dumps(doc).encode())
        _assert_same(fast, careful)
        assert "(nodes[0].hitCount)" in fast and "out of range" in fast


def test_fast_path_on_the_corpus_and_a_generated_profile(corpus):
    import importlib.util
    import pathlib
    for rel in (CHROME,):
        data = (corpus / rel).read_bytes()
        assert cp_reader.fast_protocol_part(data, "x", "main") is not None
        _assert_same(*_read_both(data))
    spec = importlib.util.spec_from_file_location(
        "bench_cpuprofile", pathlib.Path(__file__).parent.parent / "bench" / "bench_cpuprofile.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = json.dumps(bench.generate(3000, 6000), separators=(",", ":")).encode()
    assert cp_reader.fast_protocol_part(data, "x", "main") is not None
    _assert_same(*_read_both(data))


def test_call_frame_interning_with_and_without_pyarrow(monkeypatch):
    """Arrow's dictionary_encode and the dict fallback give the same codes and texts."""
    texts = [b'{"a":1}', b'{"b":2}', b'{"a":1}', b'{"c":"\\u0000"}', b'{"b":2}', b'{"a": 1}']
    with_arrow = cp_reader._intern_texts(texts)
    for chunk in (1, 2, 4):  # texts hashed a chunk at a time, the chunks' dictionaries unified
        monkeypatch.setattr(cp_reader, "_INTERN_CHUNK", chunk)
        got = cp_reader._intern_texts(texts)
        assert got[0].tolist() == with_arrow[0].tolist() and got[1] == with_arrow[1]
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    without = cp_reader._intern_texts(texts)
    assert with_arrow[0].tolist() == without[0].tolist() == [0, 1, 0, 2, 1, 3]
    assert with_arrow[1] == without[1] == [b'{"a":1}', b'{"b":2}', b'{"c":"\\u0000"}', b'{"a": 1}']
    fast, careful = _read_both(json.dumps(small_doc()).encode())
    _assert_same(fast, careful)


def test_fast_path_refuses_what_the_json_module_cannot_decode():
    """msgspec checks the text of the strings it decodes, not of those it skips (an unknown key,
    a value kept as JSON text): a byte that is not UTF-8 anywhere is the careful path's error."""
    doc = small_doc()
    doc["nodes"][1]["deoptReason"] = "XX"
    doc["zzz"] = "YY"
    for mark in (b'"XX"', b'"YY"'):
        data = json.dumps(doc).encode().replace(mark, b'"\xff\xfe"')
        assert cp_reader.fast_protocol_part(data, "t.cpuprofile", "main") is None
        fast, careful = _read_both(data)
        assert fast == careful and "invalid text encoding" in fast
    # UTF-8 beyond ASCII and an encoded lone surrogate (which json.loads lets through) are read alike
    doc["nodes"][1]["callFrame"]["functionName"] = "gr\u00fc\u00dfe \u4e16\u754c"
    fast, careful = _read_both(json.dumps(doc, ensure_ascii=False).encode())
    _assert_same(fast, careful)
    assert "gr\u00fc\u00dfe \u4e16\u754c" in set(fast.funcs["name"])
    data = json.dumps(doc, ensure_ascii=False).encode().replace(b'"YY"', b'"\xed\xa0\x80"')
    _assert_same(*_read_both(data))


_PT_ENTRIES = st.lists(st.fixed_dictionaries({"line": st.integers(-2**31, 2**31 - 1),
                                              "ticks": st.integers(-10**9, 2**63 - 1)}), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _PT_ENTRIES), min_size=1, max_size=8),
       st.lists(st.one_of(st.none(), st.lists(st.integers(-2**63, 2**63 - 1), max_size=5)), min_size=1, max_size=8),
       st.sampled_from([(",", ":"), (", ", ": ")]), st.booleans())
def test_bulk_parsers_read_what_json_reads(pts, lists, seps, swap):
    """positionTicks and integer lists as JSON texts, parsed in bulk, give what json.loads gives,
    or None (then the caller decodes them another way): V8's compact layout is taken, any other
    (blanks, keys in another order, null, numbers of more than 8 digits) may be refused."""
    from nodeflame.frames.readers.jsonutil import raw_int_lists, raw_line_ticks

    def text(v):
        if isinstance(v, list) and v and isinstance(v[0], dict):
            v = [{"ticks": e["ticks"], "line": e["line"]} if swap else {"line": e["line"], "ticks": e["ticks"]}
                 for e in v]
        return json.dumps(v, separators=seps).encode()
    got = raw_line_ticks([text(v) for v in pts])
    compact = seps == (",", ":") and not swap and all(v is not None for v in pts) and all(
        abs(e[k]) < 10**8 for v in pts for e in v for k in ("line", "ticks"))
    if got is None:
        assert not compact
    else:
        per, line, ticks = got
        assert per.tolist() == [len(v) for v in pts]
        assert line.tolist() == [e["line"] for v in pts for e in v]
        assert ticks.tolist() == [e["ticks"] for v in pts for e in v]
    lens, flat = raw_int_lists([text(v) for v in lists])
    if flat is None:  # null, or an int64 edge (strtoll saturates there: maybe beyond int64)
        assert any(v is None or {2**63 - 1, -2**63} & set(v) for v in lists)
    else:
        assert lens.tolist() == [len(v) for v in lists] and flat.tolist() == [x for v in lists for x in v]


def test_fields_read_only_where_used_are_still_checked_where_the_careful_path_checks_them():
    """The fast path decodes hitCount and parent only when the profile needs them (no samples, no
    children lists) -- and when a "children": null makes the careful path look at every node, where
    a null hitCount or a parent beyond int64 is an error (found by the property test above)."""
    for key, value in (("hitCount", None), ("parent", 2**63), ("parent", "x")):
        doc = small_doc()
        doc["nodes"][0][key] = value
        fast, careful = _read_both(json.dumps(doc).encode())
        _assert_same(fast, careful)
        assert not isinstance(fast, str)  # ignored: samples and children say it all
        doc["nodes"][3]["children"] = None
        fast, careful = _read_both(json.dumps(doc).encode())
        _assert_same(fast, careful)
        assert isinstance(fast, str) and f"nodes[0].{key}" in fast


def test_classify_many_caches_by_file_and_name_and_gives_what_classify_gives():
    """classify_many works out each file's facts and each name's builtin match once; every (name,
    file, hint) still gets classify's kind, odd values (None, a non-string) included."""
    import itertools
    import random
    from nodeflame.frames.kinds import classify, classify_many
    names = ["(garbage collector)", "(idle)", "(program)", "(root)", "Builtins_Foo", "Stub:y", "foo", "",
             None, "RegExp:a", "JSON.parse"]
    files = ["", None, "node:fs", "internal/x", "fs.js", "a/node_modules/x/y.js", "libc.so.6", "/usr/bin/node",
             "[vdso]", "[kernel.kallsyms]", "x.ko", "a.cc", "app.js", "file:///x", "//anon", "weird"]
    hints = [None, "js", "jit-builtin", "native", "builtin", "kernel", "gc", "program", "other", ""]
    trip = list(itertools.product(names, files, hints))
    random.Random(1).shuffle(trip)
    n, f, h = (list(c) for c in zip(*trip))
    assert classify_many(n, f, h).tolist() == [classify(*t) for t in trip]
    with pytest.raises(AttributeError):   # a file that is not text fails as in classify
        classify_many(["x"], [5], ["js"])


def test_reading_a_cpuprofile_imports_no_pandas(tmp_path):
    """`nodeflame convert x.cpuprofile y.folded` needs no pandas (import time)."""
    import subprocess
    import sys
    src = tmp_path / "a.cpuprofile"
    src.write_text(json.dumps(small_doc()))
    code = ("import sys; from nodeflame.frames.readers.cpuprofile import read_cpuprofile; "
            f"p = read_cpuprofile(open({str(src)!r}, 'rb').read(), 'a'); "
            "from nodeflame.cli import main_entry; "
            f"sys.argv = ['nodeflame', 'convert', {str(src)!r}, {str(tmp_path / 'a.folded')!r}]; "
            "\ntry:\n    rc = main_entry()\nexcept SystemExit as e:\n    rc = e.code\n"
            "print(rc or 0, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "False"]
    assert (tmp_path / "a.folded").read_text()


def test_benchmark_phases_run_on_a_small_profile(tmp_path, capsys):
    """bench_cpuprofile.py --phases reaches into the reader's fast path (its decoder, fast_protocol_part,
    build_parts): it still runs, and names every phase."""
    import importlib.util
    import pathlib
    spec = importlib.util.spec_from_file_location(
        "bench_cpuprofile", pathlib.Path(__file__).parent.parent / "bench" / "bench_cpuprofile.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "small.cpuprofile"
    path.write_text(json.dumps(bench.generate(2000, 4000), separators=(",", ":")))
    pytest.importorskip("msgspec")
    bench.phases(str(path), 1)
    out = capsys.readouterr().out
    for phase in ("file read", "msgspec decode alone", "fast path", "build_parts", "whole nodeflame.read"):
        assert phase in out
