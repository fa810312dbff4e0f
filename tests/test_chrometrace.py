"""Chrome trace files (format ``chrome-trace``): Profile/ProfileChunk and CpuProfile events,
sniffing wherever the profile events are, errors naming the JSON path in the file."""
import gzip
import json
import subprocess

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.frames.formats import sniff
from nodeflame.frames.readers.chrometrace import read_chrome_trace
from nodeflame.frames.readers.cpuprofile import read_cpuprofile
from test_cpuprofile import read_doc, small_doc


def folded(p):
    """Each sample's stack (root first: name, file, line, kind) and weight, in sample order: what
    two reads of one profile must agree on (independent of the writers; threads and times are
    compared apart)."""
    L = p.long()
    frame = (L["name"].astype(str) + " " + L["file"].astype(str) + ":" + L["line"].astype(str) + " "
             + L["kind"].astype(str))
    paths = frame.groupby(L["sample"]).agg(";".join)
    return [(paths.get(i, ""), int(w)) for i, w in enumerate(p.samples["weight"])]


def trace_events(doc, pid=1, tid=2, pid_id="0x1", name="CrRendererMain"):
    """``doc`` as Chrome writes it into a trace: a Profile event, then two ProfileChunks whose
    nodes carry parent ids and whose samples/timeDeltas are split between them."""
    nodes = []
    for n in doc["nodes"]:
        m = {k: v for k, v in n.items() if k not in ("children", "hitCount", "positionTicks")}
        nodes.append(m)
    for n in doc["nodes"]:
        for c in n.get("children", ()):
            next(m for m in nodes if m["id"] == c)["parent"] = n["id"]
    half = len(doc["samples"]) // 2
    return [
        {"pid": pid, "tid": tid, "ph": "M", "name": "thread_name", "args": {"name": name}},
        {"pid": pid, "tid": tid, "ph": "P", "name": "Profile", "id": pid_id, "ts": 0,
         "args": {"data": {"startTime": doc["startTime"]}}},
        {"pid": pid, "tid": tid, "ph": "P", "name": "ProfileChunk", "id": pid_id, "ts": 1,
         "args": {"data": {"cpuProfile": {"nodes": nodes[:3], "samples": doc["samples"][:half]},
                           "timeDeltas": doc["timeDeltas"][:half]}}},
        {"pid": pid, "tid": tid, "ph": "P", "name": "ProfileChunk", "id": pid_id, "ts": 2,
         "args": {"data": {"cpuProfile": {"nodes": nodes[3:], "samples": doc["samples"][half:]},
                           "timeDeltas": doc["timeDeltas"][half:]}}},
    ]


def test_trace_event_forms():
    doc = small_doc()
    ref = read_doc(doc)
    ev = trace_events(doc)
    for wrapped in (ev, {"traceEvents": ev, "metadata": {}}, {"metadata": {"source": "x"}, "traceEvents": ev}):
        data = json.dumps(wrapped).encode()
        assert sniff(data) == "chrome-trace"
        for p in (nf.read(data), nf.read(gzip.compress(data)), read_chrome_trace(data, "t.json")):
            assert p.threads == ["CrRendererMain"]
            assert folded(p) == folded(ref)
            assert np.array_equal(p.samples["time_ns"].to_numpy(), ref.samples["time_ns"].to_numpy())
            assert p.meta["source_format"] == "chrome-trace"
            assert p.meta["start_time"] == ref.meta["start_time"]
            p.validate()
    two = trace_events(doc) + trace_events(doc, pid=1, tid=3, pid_id="0x2", name="Worker")
    p = nf.read(json.dumps(two).encode())
    assert sorted(p.threads) == ["CrRendererMain", "Worker"] and p.total == 2 * ref.total
    p.validate()


def test_format_cpuprofile_on_a_trace_still_reads_it():
    """Before the chrome-trace reader existed the cpuprofile reader took traces: it still does
    (by handing them over), with the same Profile."""
    ev = trace_events(small_doc())
    data = json.dumps({"traceEvents": ev}).encode()
    want = nf.read(data)
    for p in (nf.read(data, format="cpuprofile"), read_cpuprofile(data, "t.cpuprofile")):
        assert folded(p) == folded(want)
        assert np.array_equal(p.samples["time_ns"].to_numpy(), want.samples["time_ns"].to_numpy())
        assert p.meta["source_format"] == "chrome-trace"
    # and the other way round: a .cpuprofile given to the trace reader says what it is not
    with pytest.raises(nf.FormatError, match=r"t\.json.*not a Chrome trace.*'nodes'.*traceEvents"):
        read_chrome_trace(json.dumps(small_doc()).encode(), "t.json")


def test_cpuprofile_events():
    doc = small_doc()
    ev = [{"pid": 5, "tid": 6, "ph": "M", "name": "thread_name", "args": {"name": "main"}},
          {"pid": 5, "tid": 6, "ph": "I", "name": "CpuProfile", "ts": 9, "args": {"data": {"cpuProfile": doc}}}]
    p = nf.read(json.dumps(ev).encode())
    assert p.meta["source_format"] == "chrome-trace"
    assert folded(p) == folded(read_doc(doc))


def _node_trace_events(tmp_path) -> list:
    """The trace events a real node writes with the v8 and node categories (no profile events)."""
    script = "let s = 0; for (let i = 0; i < 200; i++) { JSON.parse(JSON.stringify({a: [i, i]})); s += i }"
    subprocess.run(["node", "--trace-event-categories", "v8,node,node.async_hooks",
                    "--trace-event-file-pattern", str(tmp_path / "node_trace.log"), "-e", script],
                   check=True, timeout=120, cwd=tmp_path)
    events = json.loads((tmp_path / "node_trace.log").read_text())["traceEvents"]
    assert events and all("ph" in e for e in events)
    return events


def test_profile_events_after_64kb_of_other_events(tmp_path):
    """A long trace has megabytes of other events before the profile's: detection does not
    depend on where they are."""
    real = _node_trace_events(tmp_path)
    other = []
    while len(json.dumps(other)) < 3 * 65536:
        other.extend(real)
    doc = small_doc()
    ref = read_doc(doc)
    for wrapped in (other + trace_events(doc), {"traceEvents": other + trace_events(doc)}):
        for indent in (None, 1):  # one line (Chrome's own) or an event per line
            data = json.dumps(wrapped, indent=indent).encode()
            assert data.find(b'"ProfileChunk"') > 3 * 65536
            assert sniff(data) == "chrome-trace"
            p = nf.read(data)
            assert folded(p) == folded(ref) and p.threads == ["CrRendererMain"]


def test_trace_without_profile_events_says_which_category(tmp_path):
    path = tmp_path / "node_trace.json"
    path.write_text(json.dumps({"traceEvents": _node_trace_events(tmp_path)}))
    with pytest.raises(nf.FormatError, match=r"node_trace\.json.*no Profile/ProfileChunk.*v8\.cpu_profiler"):
        nf.read(path)


# ------------------------------------------------------------------ errors name the JSON path in the file


def bad(events, wrap=True):
    data = json.dumps({"traceEvents": events} if wrap else events).encode()
    with pytest.raises(nf.FormatError) as ei:
        read_chrome_trace(data, "bad.json")
    msg = str(ei.value)
    assert msg.startswith("bad.json")
    # the same error through the registry and sniffing
    with pytest.raises(nf.FormatError) as e2:
        nf.read(data)
    assert e2.value.position == ei.value.position
    return ei.value


def mutated(fn):
    ev = trace_events(small_doc())
    fn(ev)
    return ev


@pytest.mark.parametrize("mutate, position, what", [
    # the second chunk (event 3) holds nodes 4..6: the fault is in its nodes[1]
    (lambda ev: ev[3]["args"]["data"]["cpuProfile"]["nodes"][1]["callFrame"].pop("functionName"),
     "traceEvents[3].args.data.cpuProfile.nodes[1].callFrame.functionName", "is missing"),
    (lambda ev: ev[2]["args"]["data"]["cpuProfile"]["nodes"][2].update(parent=77),
     "traceEvents[2].args.data.cpuProfile.nodes[2].parent", "no node's id"),
    (lambda ev: ev[3]["args"]["data"]["cpuProfile"]["samples"].__setitem__(2, 99),
     "traceEvents[3].args.data.cpuProfile.samples[2]", "no node's id"),
    (lambda ev: ev[3]["args"]["data"]["timeDeltas"].__setitem__(1, "x"),
     "traceEvents[3].args.data.timeDeltas[1]", "a string"),
    (lambda ev: ev[3]["args"]["data"]["cpuProfile"].update(nodes={"a": 1}),
     "traceEvents[3].args.data.cpuProfile.nodes", "an object"),
    (lambda ev: ev[2]["args"]["data"].update(cpuProfile=[1]),
     "traceEvents[2].args.data.cpuProfile", "a list"),
    (lambda ev: ev[2]["args"].update(data=3),
     "traceEvents[2].args.data", "a number"),
    (lambda ev: ev[1]["args"]["data"].update(startTime="soon"),
     "traceEvents[1].args.data.startTime", "a string"),
    (lambda ev: ev[3]["args"]["data"]["cpuProfile"]["nodes"][0].update(id=2),
     "traceEvents[3].args.data.cpuProfile.nodes[0].id", "duplicate node id 2 at "
                                                        "traceEvents[2].args.data.cpuProfile.nodes[1]"),
])
def test_errors_name_the_json_path_in_the_file(mutate, position, what):
    e = bad(mutated(mutate))
    assert e.position == position
    assert what in str(e)


def test_cpuprofile_event_errors_name_their_path():
    doc = small_doc()
    doc["nodes"][2]["callFrame"]["lineNumber"] = "7"
    ev = [{"pid": 5, "tid": 6, "ph": "I", "name": "CpuProfile", "args": {"data": {"cpuProfile": doc}}}]
    e = bad(ev, wrap=False)
    assert e.position == "[0].args.data.cpuProfile.nodes[2].callFrame.lineNumber"


def test_odd_identifiers_and_top_level():
    ev = trace_events(small_doc(), pid=[1], tid={"t": 2}, pid_id=[3])
    p = nf.read(json.dumps(ev).encode())
    assert p.total == 6 and p.threads == ["CrRendererMain"]
    for data, what in ((b'{"traceEvents": 3}', "traceEvents is a number"),
                       (b'{"traceEvents": []}', "no Profile/ProfileChunk"),
                       (b'[{"ph": "X", "name": "a"}]', "no Profile/ProfileChunk")):
        with pytest.raises(nf.FormatError, match=r"^bad\.json.*" + what):
            read_chrome_trace(data, "bad.json")
