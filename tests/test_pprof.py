"""pprof (gzipped profile.proto): schema, reader, writer, round trips, bad input."""
import gzip
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("google.protobuf", reason="protobuf not installed (pip install 'nodeflame[pprof]')")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import nodeflame as nf  # noqa: E402
from nodeflame.frames import pprof_schema  # noqa: E402
from nodeflame.frames.build import FrameTable, build_profile  # noqa: E402
from nodeflame.frames.errors import FormatError, FormatWarning, NodeflameError  # noqa: E402
from nodeflame.frames.ops import with_meta  # noqa: E402
from nodeflame.frames.formats import render, sniff  # noqa: E402
from conftest import CORPUS, ROOT  # noqa: E402

M = pprof_schema.messages()
SIMPLE = CORPUS / "speedscope" / "pprof" / "simple.prof"
CPUPROFILES = [CORPUS / "speedscope" / "node" / "10.11.0" / "example.cpuprofile",
               CORPUS / "speedscope" / "Chrome" / "65" / "simple.cpuprofile"]

# The field declarations of google/pprof proto/profile.proto, copied as facts (comments dropped).
PROFILE_PROTO = """
message Profile {
  repeated ValueType sample_type = 1;
  repeated Sample sample = 2;
  repeated Mapping mapping = 3;
  repeated Location location = 4;
  repeated Function function = 5;
  repeated string string_table = 6;
  int64 drop_frames = 7;
  int64 keep_frames = 8;
  int64 time_nanos = 9;
  int64 duration_nanos = 10;
  ValueType period_type = 11;
  int64 period = 12;
  repeated int64 comment = 13;
  int64 default_sample_type = 14;
  int64 doc_url = 15;
}
message ValueType {
  int64 type = 1;
  int64 unit = 2;
}
message Sample {
  repeated uint64 location_id = 1;
  repeated int64 value = 2;
  repeated Label label = 3;
}
message Label {
  int64 key = 1;
  int64 str = 2;
  int64 num = 3;
  int64 num_unit = 4;
}
message Mapping {
  uint64 id = 1;
  uint64 memory_start = 2;
  uint64 memory_limit = 3;
  uint64 file_offset = 4;
  int64 filename = 5;
  int64 build_id = 6;
  bool has_functions = 7;
  bool has_filenames = 8;
  bool has_line_numbers = 9;
  bool has_inline_frames = 10;
}
message Location {
  uint64 id = 1;
  uint64 mapping_id = 2;
  uint64 address = 3;
  repeated Line line = 4;
  bool is_folded = 5;
}
message Line {
  uint64 function_id = 1;
  int64 line = 2;
  int64 column = 3;
}
message Function {
  uint64 id = 1;
  int64 name = 2;
  int64 system_name = 3;
  int64 filename = 4;
  int64 start_line = 5;
}
"""

# speedscope's own import of simple.prof (src/import/__snapshots__/pprof.test.ts.snap): stacks, ms
SPEEDSCOPE_STACKS = {
    "runtime.main;main.main;main.delta;main.beta": 140,
    "runtime.main;main.main;main.alpha": 260,
    "runtime.main;main.main;main.gamma": 270,
    "runtime.morestack;runtime.newstack;runtime.duffcopy": 110,
    "runtime.main;main.main;main.beta": 250,
    "runtime.main;main.main;main.delta": 220,
    "runtime.main;main.main;main.delta;main.alpha": 220,
    "runtime.timerproc;runtime.goroutineReady;runtime.goready;runtime.systemstack;runtime.goready.func1;"
    "runtime.ready;runtime.wakep;runtime.startm;runtime.notewakeup;runtime.semawakeup;runtime.mach_semrelease;"
    "runtime.mach_semaphore_signal": 10,
    "runtime.mstart;runtime.mstart1;runtime.sysmon;runtime.usleep": 20,
}


def name_stacks(p, by_thread=False):
    """{'root;...;leaf' (function names) [or (thread, stack)]: summed weight}."""
    a = p.arrays()
    names = p.funcs["name"].astype(str).to_numpy(object)
    text = {}
    for s in range(len(a["prefix"])):  # test oracle: plain loop over stacks, parents first
        nm = names[a["stack_func"][s]]
        pre = a["prefix"][s]
        text[s] = nm if pre < 0 else text[pre] + ";" + nm
    out = {}
    for st_, w, th in zip(p.samples["stack"], p.samples["weight"], p.samples["thread"].astype(str)):
        k = (th, text[st_]) if by_thread else text[st_]
        out[k] = out.get(k, 0) + int(w)
    return out


def frames_with_funcs(p):
    """frames joined with their function's columns (function's line/column as line_f/column_f)."""
    return p.frames.merge(p.funcs, left_on="func", right_index=True, suffixes=("", "_f"))


def gz(msg) -> bytes:
    return gzip.compress(msg.SerializeToString())


def tiny(**over):
    """A small valid Profile message: main -> work (inlined helper) with 3 sample types."""
    strings = ["", "samples", "count", "cpu", "nanoseconds", "wall", "microseconds",
               "main", "app.js", "work", "helper", "thread_name", "worker-1", "pid"]
    S = {s: i for i, s in enumerate(strings)}
    prof = M.Profile(
        sample_type=[M.ValueType(type=S["samples"], unit=S["count"]), M.ValueType(type=S["cpu"], unit=S["nanoseconds"]),
                     M.ValueType(type=S["wall"], unit=S["microseconds"])],
        function=[M.Function(id=1, name=S["main"], system_name=S["main"], filename=S["app.js"], start_line=1),
                  M.Function(id=2, name=S["work"], filename=S["app.js"], start_line=10),
                  M.Function(id=3, name=S["helper"], filename=S["app.js"], start_line=20)],
        # location 2: helper inlined into work (leaf first)
        location=[M.Location(id=1, line=[M.Line(function_id=1, line=5, column=3)]),
                  M.Location(id=2, line=[M.Line(function_id=3, line=21, column=7), M.Line(function_id=2, line=12)])],
        sample=[M.Sample(location_id=[2, 1], value=[3, 30, 40],
                         label=[M.Label(key=S["thread_name"], str=S["worker-1"])]),
                M.Sample(location_id=[1], value=[1, 10, 20], label=[M.Label(key=S["pid"], num=42)]),
                M.Sample(location_id=[1], value=[2, 20, 5])],
        string_table=strings, period=10, time_nanos=1_700_000_000_000_000_000, duration_nanos=5_000,
    )
    prof.period_type.type = S["cpu"]
    prof.period_type.unit = S["nanoseconds"]
    for k, v in over.items():
        if isinstance(v, list):
            del getattr(prof, k)[:]
            getattr(prof, k).extend(v)
        else:
            setattr(prof, k, v)
    return prof


# ------------------------------------------------------------------ schema

def test_schema_field_numbers_and_types_match_profile_proto():
    want = {}
    for msg, body in re.findall(r"message (\w+) \{(.*?)\}", PROFILE_PROTO, re.S):
        for rep, typ, name, num in re.findall(r"(repeated )?(\w+) (\w+) = (\d+);", body):
            want[(msg, name)] = (int(num), typ, bool(rep))
    got = {}
    T = M.Profile.DESCRIPTOR.fields[0].__class__
    scalar = {T.TYPE_INT64: "int64", T.TYPE_UINT64: "uint64", T.TYPE_STRING: "string", T.TYPE_BOOL: "bool"}
    for msg, _ in pprof_schema.SCHEMA:
        for f in getattr(M, msg).DESCRIPTOR.fields:
            typ = f.message_type.name if f.message_type else scalar[f.type]
            repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == T.LABEL_REPEATED
            got[(msg, f.name)] = (f.number, typ, repeated)
            if repeated and typ in ("int64", "uint64") and hasattr(f, "is_packed"):
                assert f.is_packed, f.full_name  # proto3 packs repeated scalars, as pprof writes them
    assert len(want) == 47  # 15 + 2 + 3 + 4 + 10 + 5 + 3 + 5
    assert got == want


def test_wire_bytes_are_pprofs():
    # key = field number << 3 | wire type; proto3 packs repeated scalars
    assert M.Profile(time_nanos=1).SerializeToString() == b"\x48\x01"
    assert M.Profile(default_sample_type=3).SerializeToString() == b"\x70\x03"
    assert M.Sample(location_id=[1, 2]).SerializeToString() == b"\x0a\x02\x01\x02"
    assert M.Line(function_id=1, line=2, column=3).SerializeToString() == b"\x08\x01\x10\x02\x18\x03"
    assert M.Profile(string_table=["", "a"]).SerializeToString() == b"\x32\x00\x32\x01a"


def test_import_nodeflame_does_not_import_protobuf():
    code = ("import sys, nodeflame as nf; nf.frames.formats._ensure_readers(); "
            "print(any(m.startswith('google.protobuf') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_missing_protobuf_says_how_to_install(monkeypatch, corpus):
    monkeypatch.setattr(pprof_schema, "_MESSAGES", None)
    for mod in ("google.protobuf.descriptor_pb2", "google.protobuf.descriptor_pool",
                "google.protobuf.message_factory", "google.protobuf.message"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the import fail
    with pytest.raises(NodeflameError, match=re.escape("pip install 'nodeflame[pprof]'")):
        nf.read(gz(tiny()), format="pprof")
    p = nf.read(CPUPROFILES[1])
    with pytest.raises(NodeflameError, match=re.escape("pip install 'nodeflame[pprof]'")):
        render(p, "pprof")


# ------------------------------------------------------------------ corpus

def test_simple_prof_matches_speedscope_and_the_raw_message(corpus):
    data = SIMPLE.read_bytes()
    assert sniff(data, str(SIMPLE)) == "pprof"
    p = nf.read(SIMPLE)
    p.validate()
    assert p.meta["source_format"] == "pprof"
    assert p.meta["unit"] == "nanoseconds" and p.meta["sample_type"] == "cpu/nanoseconds"
    assert name_stacks(p) == {k: v * 1_000_000 for k, v in SPEEDSCOPE_STACKS.items()}
    assert p.total == 1_500_000_000
    # the message decoded directly: the reader's sums are the values' sums
    msg = M.Profile()
    msg.ParseFromString(gzip.decompress(data))
    assert sum(s.value[1] for s in msg.sample) == p.total
    assert sum(s.value[0] for s in msg.sample) == int(p.samples["count"].sum()) == 150
    assert len(p.samples) == len(msg.sample) == 9
    assert p.meta["period_ns"] == msg.period == 10_000_000
    assert p.meta["start_time"] == msg.time_nanos and p.meta["duration_ns"] == msg.duration_nanos
    # names are in the string table (found without protobuf), kinds and lines as written
    raw = gzip.decompress(data)
    for name in ("main.alpha", "main.beta", "runtime.mach_semaphore_signal"):
        assert name.encode() in raw
        assert name in set(p.funcs["name"].astype(str))
    assert set(p.funcs["kind"].astype(str)) == {"native"}  # Go: compiled code
    fr = frames_with_funcs(p)
    assert 198 in set(fr.loc[fr["name"] == "runtime.main", "line"])  # speedscope shows 198 too
    assert 18 in set(fr.loc[fr["name"] == "main.beta", "line"])
    top = p.top(None).set_index("name")
    assert top.loc["main.alpha", "self"] == 480_000_000 and top.loc["main.delta", "total"] == 580_000_000
    counts = nf.read(SIMPLE, sample_type="samples")
    assert counts.meta["unit"] == "samples" and counts.total == 150
    assert name_stacks(counts) == {k: v // 10 for k, v in SPEEDSCOPE_STACKS.items()}


# ------------------------------------------------------------------ round trips

@pytest.mark.parametrize("path", CPUPROFILES, ids=lambda p: p.parent.name)
def test_cpuprofile_round_trip(corpus, path, tmp_path):
    p = nf.read(path)
    out = tmp_path / "out.pb.gz"
    p.write(out)
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    back = nf.read(out)  # sniffed
    back.validate()
    assert back.meta["source_format"] == "pprof"
    # default: the last sample type, cpu time = count * period, counts kept
    assert back.meta["unit"] == "nanoseconds"
    assert back.total == p.total * p.meta["period_ns"]
    assert int(back.samples["count"].sum()) == p.total
    counts = nf.read(out, sample_type="samples")
    assert render(counts, "folded") == render(p, "folded")
    assert name_stacks(counts) == name_stacks(p)
    # functions keep kind, file and line
    key = ["name", "file", "line", "kind"]
    a = p.funcs[key].astype(str).drop_duplicates().sort_values(key).reset_index(drop=True)
    b = counts.funcs[key].astype(str).drop_duplicates().sort_values(key).reset_index(drop=True)
    assert a.equals(b)
    # the message: "" first, functions and locations deduplicated, one Line each, thread labels
    msg = nf.frames.readers.pprof.decode(out.read_bytes())
    strings = list(msg.string_table)
    assert strings[0] == ""
    assert [(strings[t.type], strings[t.unit]) for t in msg.sample_type] == [("samples", "count"),
                                                                              ("cpu", "nanoseconds")]
    assert (strings[msg.period_type.type], msg.period) == ("cpu", p.meta["period_ns"])
    assert len(msg.function) == len(p.funcs)
    assert len(msg.location) == len(p.frames[["func", "line", "column"]].drop_duplicates())
    assert all(len(loc.line) == 1 and loc.mapping_id for loc in msg.location)
    assert len({f.id for f in msg.function}) == len(msg.function)
    assert all(strings[s.label[0].key] == "thread" and strings[s.label[0].str] == "main" for s in msg.sample)
    assert len(msg.sample) == len(np.unique(p.samples["stack"]))


@pytest.mark.parametrize("ext", [".pprof", ".prof", ".pb.gz"])
def test_extensions_write_gzipped_pprof(tmp_path, ext):
    p = nf.read(gz(tiny()), format="pprof")
    f = tmp_path / f"x{ext}"
    p.write(f)
    assert f.read_bytes()[:2] == b"\x1f\x8b"
    assert nf.read(f).total == p.total


def test_reading_our_gzipped_pprof_warns_nothing(tmp_path):
    # the sniffer looks at the decompressed bytes as text too; a real capture's pprof has bytes that are
    # not UTF-8 there, and the format detection must not warn about them as if the file were text
    p = nf.read(ROOT / "tests" / "data" / "diff_demo" / "slow0.cpuprofile")
    f = tmp_path / "x.pb.gz"
    p.write(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = nf.read(f)
    assert set(q.funcs["name"].astype(str)) == set(p.funcs["name"].astype(str))


def test_pprof_round_trip_of_pprof(corpus):
    p = nf.read(SIMPLE)
    back = nf.read(render(p, "pprof"))
    assert name_stacks(back) == name_stacks(p)
    assert back.meta["unit"] == "nanoseconds" and back.meta["period_ns"] == p.meta["period_ns"]
    assert back.meta["start_time"] == p.meta["start_time"]
    assert int(back.samples["count"].sum()) == 150
    assert set(back.funcs["kind"].astype(str)) == {"native"}


def test_kinds_and_threads_survive(tmp_path):
    ft = FrameTable()
    root = ft.add("(root)", hint="program")
    js = ft.add("handler", hint="js")  # JavaScript with no file: kind from the hint only
    bi = ft.add("ArrayPrototypePush", hint="builtin")
    k = ft.add("do_syscall_64", hint="kernel")
    dep = ft.add("parse", "/app/node_modules/qs/lib/parse.js", 3, 9)
    paths = [[root, js, bi], [root, js, k], [root, dep], [root, js, bi]]
    offsets = np.cumsum([0] + [len(x) for x in paths])
    p = build_profile(ft, offsets, np.concatenate(paths), weights=[1, 2, 3, 4],
                      threads=["main", "worker 1", "main", "worker 1"], meta={"period_ns": 1000})
    back = nf.read(render(p, "pprof"), sample_type="samples")
    kinds = lambda q: dict(zip(q.funcs["name"].astype(str), q.funcs["kind"].astype(str)))  # noqa: E731
    assert kinds(back) == kinds(p)
    assert name_stacks(back, by_thread=True) == name_stacks(p, by_thread=True)
    assert set(back.threads) == {"main", "worker 1"}
    msg = nf.frames.readers.pprof.decode(render(p, "pprof"))
    assert "[kernel.kallsyms]" in list(msg.string_table)


def test_time_fields_written():
    p = nf.read(gz(tiny()), format="pprof")
    for start, want in ((1_700_000_000.5, 1_700_000_000_500_000_000), (1_700_000_000_000_000_123, 1_700_000_000_000_000_123),
                        (5_000_000_000_000, 0)):  # the last: a monotonic clock, not a wall-clock time
        q = with_meta(p, start_time=start)
        msg = nf.frames.readers.pprof.decode(render(q, "pprof"))
        assert msg.time_nanos == want
        assert msg.duration_nanos == 5_000


frame_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.lists(st.sampled_from(["a", "b", "c", "(idle)", "é/x", ""]) | frame_names,
                                   min_size=1, max_size=8),
                          st.integers(0, 50), st.sampled_from(["main", "worker", "w 2"])),
                min_size=1, max_size=30),
       st.sampled_from([None, 1_000_000]))
def test_random_stacks_round_trip(rows, period):
    ft = FrameTable()
    paths = [[ft.add(n, "f.js" if i % 2 else "", i) for i, n in enumerate(stack)] for stack, _, _ in rows]
    offsets = np.cumsum([0] + [len(x) for x in paths])
    p = build_profile(ft, offsets, np.concatenate(paths), weights=[w for _, w, _ in rows],
                      threads=[t for _, _, t in rows], meta={"period_ns": period})
    back = nf.read(render(p, "pprof"), format="pprof", sample_type="samples")
    back.validate()
    assert back.total == p.total
    want = {k: v for k, v in name_stacks(p, by_thread=True).items()}
    assert name_stacks(back, by_thread=True) == want
    assert render(back, "folded", thread_root=True) == render(p, "folded", thread_root=True)
    if period:
        assert nf.read(render(p, "pprof")).total == p.total * period


# ------------------------------------------------------------------ reading details

def test_inlined_lines_and_locations_become_root_first_frames():
    p = nf.read(gz(tiny()), format="pprof", sample_type="samples")
    assert name_stacks(p) == {"main;work;helper": 3, "main": 3}
    fr = frames_with_funcs(p).set_index("name")
    assert (fr.loc["helper", "line"], fr.loc["helper", "column"], fr.loc["helper", "line_f"]) == (21, 7, 20)
    assert (fr.loc["main", "line"], fr.loc["main", "column"], fr.loc["main", "line_f"]) == (5, 3, 1)
    assert fr.loc["work", "line"] == 12 and fr.loc["work", "file"] == "app.js"
    assert set(p.funcs["kind"].astype(str)) == {"js"}


def test_thread_labels():
    p = nf.read(gz(tiny()), format="pprof", sample_type="samples")
    assert name_stacks(p, by_thread=True) == {("worker-1", "main;work;helper"): 3, ("42", "main"): 1,
                                              ("main", "main"): 2}


def test_meta():
    p = nf.read(gz(tiny()), format="pprof")
    m = p.meta
    assert m["start_time"] == 1_700_000_000_000_000_000 and m["duration_ns"] == 5_000
    assert m["period_ns"] == 10 and m["period_type"] == "cpu/nanoseconds" and not m["timed"]


def test_sample_type_selection():
    data = gz(tiny())
    read = lambda **kw: nf.read(data, format="pprof", **kw)  # noqa: E731
    last = read()  # pprof's rule: the last type
    assert last.meta["sample_type"] == "wall/microseconds" and last.meta["unit"] == "nanoseconds"
    assert last.total == (40 + 20 + 5) * 1000
    assert list(last.samples["count"]) == [3, 1, 2]
    for kw, total, unit in (({"sample_type": "cpu"}, 60, "nanoseconds"), ({"sample_type": "samples"}, 6, "samples"),
                            ({"sample_type": "cpu/nanoseconds"}, 60, "nanoseconds"), ({"value_index": 0}, 6, "samples"),
                            ({"sample_type": 1}, 60, "nanoseconds"), ({"value_index": -1}, 65_000, "nanoseconds")):
        q = read(**kw)
        assert (q.total, q.meta["unit"]) == (total, unit), kw
    assert "count" not in read(sample_type="samples").samples.columns
    prof = tiny(default_sample_type=3)  # "cpu"
    assert nf.read(gz(prof), format="pprof").meta["sample_type"] == "cpu/nanoseconds"
    with pytest.raises(NodeflameError, match=r"no sample type 'alloc_space'.*samples/count, cpu/nanoseconds"):
        read(sample_type="alloc_space")
    with pytest.raises(NodeflameError, match="value_index=3 out of range"):
        read(value_index=3)
    with pytest.raises(NodeflameError, match="not both"):
        read(value_index=0, sample_type="cpu")


def test_other_units_and_negative_values():
    prof = tiny()
    prof.string_table.extend(["space", "bytes"])
    prof.sample_type[2].type, prof.sample_type[2].unit = len(prof.string_table) - 2, len(prof.string_table) - 1
    prof.sample[2].value[2] = -7  # a diff profile's negative value
    with pytest.warns(FormatWarning, match="negative"):
        p = nf.read(gz(prof), format="pprof")
    assert p.meta["unit"] == "bytes" and p.total == 60 and p.meta["warnings"]
    assert list(p.samples["count"]) == [3, 1]
    back = nf.read(render(p, "pprof"), sample_type="space")
    assert back.meta["unit"] == "bytes" and back.total == 60


def test_unsymbolized_and_kernel_locations():
    strings = ["", "samples", "count", "[kernel.kallsyms]", "/usr/bin/node", "do_sys_poll"]
    prof = M.Profile(sample_type=[M.ValueType(type=1, unit=2)], string_table=strings,
                     mapping=[M.Mapping(id=1, filename=3), M.Mapping(id=2, filename=4)],
                     function=[M.Function(id=1, name=5)],
                     location=[M.Location(id=1, mapping_id=1, line=[M.Line(function_id=1)]),
                               M.Location(id=2, mapping_id=2, address=0x4005D6)],
                     sample=[M.Sample(location_id=[1, 2], value=[4])])
    p = nf.read(gz(prof), format="pprof")
    assert name_stacks(p) == {"0x4005d6;do_sys_poll": 4}
    kinds = dict(zip(p.funcs["name"].astype(str), p.funcs["kind"].astype(str)))
    assert kinds == {"0x4005d6": "native", "do_sys_poll": "kernel"}


# ------------------------------------------------------------------ bad input

def _bad_messages():
    yield "string_table[0]", tiny(string_table=["x", "samples"])
    p = tiny()
    p.function[1].name = 99
    yield "function[1].name", p
    p = tiny()
    p.sample[1].location_id[0] = 7
    yield "sample[1].location_id", p
    p = tiny()
    p.location[1].line[0].function_id = 9
    yield "location[1].line[0].function_id", p
    p = tiny()
    p.location[0].mapping_id = 3
    yield "location[0].mapping_id", p
    p = tiny()
    del p.sample[0].value[2]
    yield "sample[0].value", p
    p = tiny()
    p.sample[0].label[0].str = 500
    yield "sample[0].label[0].str", p
    p = tiny()
    p.sample_type[1].unit = -1
    yield "sample_type[1].unit", p
    p = tiny()
    p.period_type.type = 1000
    yield "period_type.type", p


@pytest.mark.parametrize("where,msg", list(_bad_messages()), ids=lambda x: x if isinstance(x, str) else "")
def test_bad_messages_are_format_errors_naming_file_and_field(tmp_path, where, msg):
    f = tmp_path / "bad-profile.pb.gz"
    f.write_bytes(gz(msg))
    with pytest.raises(FormatError) as e:
        nf.read(f)
    text = str(e.value)
    assert "bad-profile.pb.gz" in text and where in text and "expected" in text


def test_broken_bytes_are_format_errors(tmp_path, corpus):
    good = SIMPLE.read_bytes()
    cases = {
        "truncated.pb.gz": good[: len(good) // 2],
        "notproto.pb.gz": gzip.compress(b"\xff" * 64),
        "json.pb.gz": gzip.compress(b'{"nodes": []}'),
        "empty.pb.gz": gzip.compress(b""),
        "garbage.pb.gz": b"\x1f\x8b" + bytes(range(200)),
    }
    for name, data in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        with pytest.raises(FormatError) as e:
            nf.read(f, format="pprof")
        assert name in str(e.value) and "expected" in str(e.value), str(e.value)
        assert not isinstance(e.value.__cause__, (IndexError, KeyError))
    # sniffed: a truncated file still goes to the pprof reader and fails cleanly
    f = tmp_path / "cut.prof"
    f.write_bytes(good[:-20])
    with pytest.raises(FormatError, match="cut.prof.*gzip"):
        nf.read(f)


def test_raw_protobuf_is_read_when_told():
    raw = tiny().SerializeToString()
    assert nf.read(raw, format="pprof").total == 65_000


def test_sniff_is_precise(corpus):
    raw = tiny().SerializeToString()
    reader = nf.frames.formats.READERS["pprof"]
    assert reader.sniff(gzip.compress(raw)[:65536], None)
    assert not reader.sniff(raw, None)  # raw protobuf only with format="pprof"
    for other in (gzip.compress(b'{"nodes": [{"id": 1}]}'), gzip.compress(b"a;b;c 1\n"),
                  gzip.compress(b"\n\n\nmain;x 3\n"), gzip.compress(b""), b"\x1f\x8bnot gzip at all",
                  gzip.compress(CPUPROFILES[0].read_bytes())):
        assert not reader.sniff(other[:65536], None), other[:20]
    big = M.Profile(string_table=[""] + [f"s{i}" for i in range(200_000)])
    head = gzip.compress(big.SerializeToString())[:65536]  # more than the head: judged by the first field
    assert reader.sniff(head, None)
