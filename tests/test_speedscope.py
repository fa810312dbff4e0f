"""speedscope reader and writer: corpus, evented -> samples, repairs and errors, schema of the output."""
import io
import json
import random

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.frames.build import FrameTable, build_profile
from nodeflame.frames.formats import render, sniff
from nodeflame.frames.readers.speedscope import read_speedscope

SS = "speedscope/speedscope"
CORPUS_FILES = ["0.0.1/simple.speedscope.json", "0.1.2/simple-sampled.speedscope.json",
                "0.6.0/two-sampled.speedscope.json"]


def folded(p):
    return render(p, "folded")


def to_doc(p, **opts):
    buf = io.BytesIO()
    p.write(buf, format="speedscope", **opts)
    return json.loads(buf.getvalue())


def rd(doc, **opts):
    return read_speedscope(json.dumps(doc).encode(), "t.speedscope.json", **opts)


def evented(events, frames=("a", "b", "c", "d"), unit="none", end=None, start=0):
    return {"$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": [{"name": f} for f in frames]},
            "profiles": [{"type": "evented", "name": "p", "unit": unit, "startValue": start,
                          "endValue": end if end is not None else (events[-1]["at"] if events else 0),
                          "events": events}]}


def ev(t, f, at):
    return {"type": t, "frame": f, "at": at}


# ------------------------------------------------------------------ corpus


@pytest.mark.parametrize("rel", CORPUS_FILES)
def test_corpus_loads_and_validates(corpus, rel):
    data = (corpus / SS / rel).read_bytes()
    assert sniff(data) == "speedscope"
    p = nf.read(corpus / SS / rel)
    p.validate()
    assert p.meta["source_format"] == "speedscope"


def test_evented_corpus_intervals(corpus):
    p = nf.read(corpus / SS / "0.0.1/simple.speedscope.json")
    # a,b open 0..14; c 0..2, d 2..6, c 6..9; then b alone 9..14
    assert sorted(folded(p).splitlines()) == ["a;b 5", "a;b;c 5", "a;b;d 4"]
    assert p.meta["unit"] == "none" and p.meta["timed"] is False
    assert p.threads == ["simple.txt"]
    # one row per constant-stack interval, in order
    assert p.samples["weight"].tolist() == [2, 4, 3, 5]


def test_sampled_corpus_seconds_become_ns(corpus):
    p = nf.read(corpus / SS / "0.1.2/simple-sampled.speedscope.json")
    assert p.meta["unit"] == "nanoseconds" and p.meta["timed"] is True
    assert p.samples["weight"].tolist() == [s * 10**9 for s in (1, 1, 4, 3, 5)]
    assert p.samples["time_ns"].tolist() == [s * 10**9 for s in (0, 1, 2, 6, 9)]
    assert sorted(folded(p).splitlines()) == ["a;b 5000000000", "a;b;c 5000000000", "a;b;d 4000000000"]
    assert p.meta["duration_ns"] == 14 * 10**9


def test_two_profiles_become_two_threads(corpus):
    p = nf.read(corpus / SS / "0.6.0/two-sampled.speedscope.json")
    assert sorted(p.threads) == ["one", "two"]
    for t in ("one", "two"):
        assert p.thread(t).total == 14 * 10**9
    q = read_speedscope((corpus / SS / "0.6.0/two-sampled.speedscope.json").read_bytes(), "x", profile="two")
    assert q.threads == ["two"] and q.total == 14 * 10**9
    q = read_speedscope((corpus / SS / "0.6.0/two-sampled.speedscope.json").read_bytes(), "x", profile=0)
    assert q.threads == ["one"]
    with pytest.raises(nf.FormatError, match="no profile named"):
        read_speedscope((corpus / SS / "0.6.0/two-sampled.speedscope.json").read_bytes(), "x", profile="three")


def test_incomplete_trace_is_repaired_with_a_warning(corpus):
    path = corpus / SS / "invalid/incomplete-trace.json"
    with pytest.warns(nf.FormatWarning, match=r"still open at the end.*events 0") as rec:
        p = nf.read(path)
    assert str(path) in str(rec[0].message)
    p.validate()
    assert folded(p).splitlines() == ["A 100"]
    assert any("still open" in w for w in p.meta["warnings"])


@pytest.mark.parametrize("rel", CORPUS_FILES + ["invalid/incomplete-trace.json"])
def test_folded_round_trip(corpus, rel, tmp_path):
    with _maybe_warns(rel):
        p = nf.read(corpus / SS / rel)
    p.write(tmp_path / "x.folded")
    q = nf.read(tmp_path / "x.folded")
    assert sorted(folded(q).splitlines()) == sorted(folded(p).splitlines())


def _maybe_warns(rel):
    import contextlib
    return pytest.warns(nf.FormatWarning) if "invalid" in rel else contextlib.nullcontext()


# ------------------------------------------------------------------ evented semantics


def test_time_units_and_absolute_times():
    doc = evented([ev("O", 0, 10), ev("O", 1, 11), ev("C", 1, 12.5), ev("C", 0, 20)], unit="milliseconds",
                  start=10, end=20)
    p = rd(doc)
    assert p.meta["unit"] == "nanoseconds" and p.meta["timed"]
    assert p.samples["time_ns"].tolist() == [10_000_000, 11_000_000, 12_500_000]
    assert p.samples["weight"].tolist() == [1_000_000, 1_500_000, 7_500_000]
    assert p.meta["start_time"] == 10_000_000 and p.meta["duration_ns"] == 10_000_000


def test_zero_length_and_empty_intervals_are_not_samples():
    doc = evented([ev("O", 0, 0), ev("C", 0, 0), ev("O", 1, 5), ev("O", 2, 5), ev("C", 2, 7), ev("C", 1, 7)])
    p = rd(doc)
    assert folded(p).splitlines() == ["b;c 2"]


def simulate(events):
    """Reference: a plain Python stack machine (what speedscope does)."""
    stack, out = [], {}
    for i, e in enumerate(events):
        if e["type"] == "O":
            stack.append(e["frame"])
        else:
            assert stack[-1] == e["frame"]
            stack.pop()
        if i + 1 < len(events) and stack:
            d = events[i + 1]["at"] - e["at"]
            if d > 0:
                key = ";".join("abcdefgh"[f] for f in stack)
                out[key] = out.get(key, 0) + d
    return out


def random_events(rng, n_ops):
    events, stack, t = [], [], 0
    for _ in range(n_ops):
        t += rng.choice([0, 0, 1, 2, 5])
        if stack and (rng.random() < 0.45 or len(stack) > 6):
            events.append(ev("C", stack.pop(), t))
        else:
            f = rng.randrange(8)
            stack.append(f)
            events.append(ev("O", f, t))
    while stack:
        t += rng.choice([0, 1, 3])
        events.append(ev("C", stack.pop(), t))
    return events


def test_vectorised_matching_agrees_with_a_stack_machine():
    rng = random.Random(7)
    for _ in range(200):
        events = random_events(rng, rng.randrange(1, 60))
        doc = evented(events, frames="abcdefgh")
        p = rd(doc)
        got = {}
        for line in folded(p).splitlines():
            k, v = line.rsplit(" ", 1)
            got[k] = int(v)
        assert got == simulate(events)


# ------------------------------------------------------------------ errors


def bad(doc_or_bytes, **opts):
    data = doc_or_bytes if isinstance(doc_or_bytes, bytes) else json.dumps(doc_or_bytes).encode()
    with pytest.raises(nf.FormatError) as ei:
        read_speedscope(data, "bad.json", **opts)
    assert str(ei.value).startswith("bad.json")
    return str(ei.value)


def test_mismatched_close_names_the_event():
    msg = bad(evented([ev("O", 0, 0), ev("O", 1, 1), ev("C", 0, 2), ev("C", 1, 3)]))
    assert "profiles[0].events[2]" in msg and "'a'" in msg and "'b'" in msg and "events[1]" in msg


def test_close_without_open():
    msg = bad(evented([ev("O", 0, 0), ev("C", 0, 1), ev("C", 1, 2)]))
    assert "profiles[0].events[2]" in msg and "no frame is open" in msg


def test_frame_index_out_of_range():
    msg = bad(evented([ev("O", 0, 0), ev("O", 9, 1), ev("C", 9, 2), ev("C", 0, 3)]))
    assert "profiles[0].events[1].frame" in msg and "0..3" in msg
    doc = {"shared": {"frames": [{"name": "a"}, {"name": "b"}]},
           "profiles": [{"type": "sampled", "name": "s", "unit": "none", "startValue": 0, "endValue": 3,
                         "samples": [[0], [0, 1, 2]], "weights": [1, 2]}]}
    msg = bad(doc)
    assert "profiles[0].samples[1][2]" in msg and "is 2" in msg and "0..1" in msg


@pytest.mark.parametrize("mutate,where", [
    (lambda d: d["profiles"][0].__setitem__("weights", [1]), "profiles[0].weights"),
    (lambda d: d["profiles"][0].__setitem__("weights", [1, "x"]), "profiles[0].weights[1]"),
    (lambda d: d["profiles"][0].__setitem__("weights", [1, -2]), "profiles[0].weights[1]"),
    (lambda d: d["profiles"][0].__setitem__("samples", {"0": [0]}), "profiles[0].samples"),
    (lambda d: d["profiles"][0]["samples"].__setitem__(1, 0), "profiles[0].samples[1]"),
    (lambda d: d["profiles"][0]["samples"].__setitem__(1, [0, "b"]), "profiles[0].samples[1][1]"),
    (lambda d: d["profiles"][0].__setitem__("unit", "parsecs"), "profiles[0].unit"),
    (lambda d: d["profiles"][0].__setitem__("type", "flat"), "profiles[0].type"),
    (lambda d: d["profiles"][0].__setitem__("startValue", "0"), "profiles[0].startValue"),
    (lambda d: d.__setitem__("profiles", {}), "profiles"),
    (lambda d: d.pop("shared"), "shared"),
    (lambda d: d["shared"]["frames"].__setitem__(1, {"file": "x.js"}), "shared.frames[1].name"),
    (lambda d: d["shared"]["frames"].__setitem__(1, {"name": "b", "line": "7"}), "shared.frames[1].line"),
    (lambda d: d["profiles"].__setitem__(0, []), "profiles[0]"),
    # numbers beyond int64 or any clock: our error at their path, not an OverflowError
    (lambda d: d["profiles"][0].__setitem__("weights", [1, 2**70]), "profiles[0].weights[1]"),
    (lambda d: d["profiles"][0].__setitem__("weights", [1, 1e300]), "profiles[0].weights[1]"),
    (lambda d: d["profiles"][0]["samples"].__setitem__(1, [0, 2**70]), "profiles[0].samples[1][1]"),
    (lambda d: d["profiles"][0].update(unit="seconds", endValue=1e300), "profiles[0].endValue"),
    (lambda d: d["profiles"][0].update(unit="seconds", startValue=2**70), "profiles[0].startValue"),
    (lambda d: d["profiles"][0].update(unit="seconds", weights=[1, 1e300]), "profiles[0].weights[1]"),
])
def test_wrong_types_name_the_json_path(mutate, where):
    doc = {"shared": {"frames": [{"name": "a"}, {"name": "b"}]},
           "profiles": [{"type": "sampled", "name": "s", "unit": "none", "startValue": 0, "endValue": 3,
                         "samples": [[0], [0, 1]], "weights": [1, 2]}]}
    mutate(doc)
    assert f"({where})" in bad(doc)


@pytest.mark.parametrize("mutate,where", [
    (lambda evs: evs.__setitem__(1, ev("X", 1, 1)), "profiles[0].events[1].type"),
    (lambda evs: evs.__setitem__(1, {"type": "O", "at": 1}), "profiles[0].events[1].frame"),
    (lambda evs: evs.__setitem__(1, ev("O", 1, "1")), "profiles[0].events[1].at"),
    (lambda evs: evs.__setitem__(1, ev("O", 1.5, 1)), "profiles[0].events[1].frame"),
    (lambda evs: evs.__setitem__(2, ev("C", 1, 0)), "profiles[0].events[2].at"),
    (lambda evs: evs.__setitem__(2, 7), "profiles[0].events[2]"),
    (lambda evs: evs.__setitem__(1, ev("O", 2**70, 1)), "profiles[0].events[1].frame"),
    (lambda evs: evs.__setitem__(3, ev("C", 0, 1e300)), "profiles[0].events"),
    (lambda evs: evs.__setitem__(1, ev("O", 1, float("nan"))), "profiles[0].events[1].at"),
])
def test_bad_events(mutate, where):
    evs = [ev("O", 0, 0), ev("O", 1, 1), ev("C", 1, 2), ev("C", 0, 3)]
    mutate(evs)
    assert f"({where})" in bad(evented(evs))


def test_truncated_and_not_speedscope(corpus):
    data = (corpus / SS / "0.1.2/simple-sampled.speedscope.json").read_bytes()
    msg = bad(data[:150])
    assert "invalid JSON" in msg and "column" in msg
    assert "top level is a list" in bad(b"[1, 2]")


# ------------------------------------------------------------------ writer

# The schema of a sampled file, written from speedscope's src/lib/file-format-spec.ts.
SCHEMA = {
    "type": "object",
    "required": ["$schema", "shared", "profiles"],
    "properties": {
        "$schema": {"const": "https://www.speedscope.app/file-format-schema.json"},
        "name": {"type": "string"},
        "activeProfileIndex": {"type": "number"},
        "exporter": {"type": "string"},
        "shared": {"type": "object", "required": ["frames"], "properties": {"frames": {
            "type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "file": {"type": "string"},
                "line": {"type": "number"}, "col": {"type": "number"}}}}}},
        "profiles": {"type": "array", "items": {
            "type": "object",
            "required": ["type", "name", "unit", "startValue", "endValue", "samples", "weights"],
            "properties": {
                "type": {"const": "sampled"},
                "name": {"type": "string"},
                "unit": {"enum": ["none", "nanoseconds", "microseconds", "milliseconds", "seconds", "bytes"]},
                "startValue": {"type": "number"}, "endValue": {"type": "number"},
                "samples": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
                "weights": {"type": "array", "items": {"type": "number"}}}}},
    },
}


def check_schema(doc):
    """Structural check (always), and jsonschema when it is installed."""
    assert set(SCHEMA["required"]) <= set(doc)
    assert doc["$schema"] == SCHEMA["properties"]["$schema"]["const"]
    frames = doc["shared"]["frames"]
    assert isinstance(frames, list)
    for f in frames:
        assert isinstance(f["name"], str)
        assert isinstance(f.get("file", ""), str)
        assert isinstance(f.get("line", 1), int) and isinstance(f.get("col", 1), int)
    for pr in doc["profiles"]:
        assert set(SCHEMA["properties"]["profiles"]["items"]["required"]) <= set(pr)
        assert pr["type"] == "sampled" and isinstance(pr["name"], str)
        assert pr["unit"] in SCHEMA["properties"]["profiles"]["items"]["properties"]["unit"]["enum"]
        assert pr["startValue"] <= pr["endValue"] == sum(pr["weights"])
        assert len(pr["samples"]) == len(pr["weights"])
        assert all(isinstance(i, int) and 0 <= i < len(frames) for s in pr["samples"] for i in s)
        assert all(isinstance(w, (int, float)) and w >= 0 for w in pr["weights"])
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(doc, SCHEMA)


def test_writer_output_is_valid_and_round_trips(corpus):
    for rel in CORPUS_FILES + ["../Chrome/65/simple.cpuprofile", "../stackcollapse/recursion.txt"]:
        p = nf.read(corpus / SS / rel)
        doc = to_doc(p)
        check_schema(doc)
        q = rd(doc)
        q.validate()
        assert sorted(folded(q).splitlines()) == sorted(folded(p).splitlines()), rel
        assert sorted(q.threads) == sorted(p.threads)
        if p.meta["unit"] == "nanoseconds":
            assert q.meta["unit"] == "nanoseconds"
            assert np.array_equal(np.sort(q.samples["time_ns"]), np.sort(p.samples["time_ns"] - p.samples["time_ns"].min()))


def test_writer_frames_and_threads():
    ft = FrameTable()
    a = ft.add("main", "/app/x.js", 3, 7)
    b = ft.add("", "/app/y.js", 0, 0)
    c = ft.add("native", "")
    p = build_profile(ft, np.array([0, 2, 3, 5]), np.array([a, b, c, a, c]), weights=np.array([2, 1, 4]),
                      times=np.array([30, 10, 20]), threads=["t1", "t2", "t1"])
    doc = to_doc(p, name="demo")
    check_schema(doc)
    assert doc["name"] == "demo"
    frames = doc["shared"]["frames"]
    assert {"name": "main", "file": "/app/x.js", "line": 3, "col": 7} in frames
    assert {"name": "(anonymous)", "file": "/app/y.js"} in frames and {"name": "native"} in frames
    by = {pr["name"]: pr for pr in doc["profiles"]}
    assert set(by) == {"t1", "t2"}
    names = [f["name"] for f in frames]
    # t1 in time order: t=20 (main;native, w 4) then t=30 (main;(anonymous), w 2)
    assert [[names[i] for i in s] for s in by["t1"]["samples"]] == [["main", "native"], ["main", "(anonymous)"]]
    assert by["t1"]["weights"] == [4, 2] and by["t1"]["unit"] == "none"


def test_names_read_back_exactly():
    # an anonymous JS function is written as speedscope names it and read back as V8 names it (""); a
    # nameless frame without a file stays nameless; a native frame called "(anonymous)" keeps that name
    ft = FrameTable()
    a = ft.add("", "/app/y.js", 4, 2)
    b = ft.add("", "")
    c = ft.add("(anonymous)", "")
    p = build_profile(ft, np.array([0, 2, 4]), np.array([a, b, a, c]), weights=np.array([1, 2]))
    doc = to_doc(p)
    assert {"name": "(anonymous)", "file": "/app/y.js", "line": 4, "col": 2} in doc["shared"]["frames"]
    q = rd(doc)
    assert folded(q) == folded(p)
    assert sorted(q.funcs["name"].astype(str)) == sorted(p.funcs["name"].astype(str)) == ["", "", "(anonymous)"]
