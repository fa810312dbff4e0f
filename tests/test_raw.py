"""The raw reader's block-wise path (a file taken in blocks of whole lines) against its
line-by-line path, and SystemTap's thread markers (read_raw(threads=True))."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

import nodeflame as nf
from nodeflame.frames.errors import FormatError
from nodeflame.frames.formats import render
from nodeflame.frames.readers import lines as lines_mod, perf as perf_mod, raw as raw_mod

_FRAME = st.sampled_from(["main", "a", "b+0x12", "handle /app/x.js:12", "ß€", "計算", "node::Start(int, char**)",
                          "libc.so.1`malloc+0x12", "x->y", "L/java/Foo", "[thread 7]", "(anonymous)"])


def _raw_text(rows, crlf, final_newline, bom):
    blocks = ["\n".join(reversed(s)) + f"\n  {n}" for s, n in rows]
    nl = "\r\n" if crlf else "\n"
    text = (nl + nl).join(b.replace("\n", nl) for b in blocks) + (nl if final_newline else "")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(st.tuples(st.lists(_FRAME, min_size=1, max_size=6), st.integers(1, 10**6)),
                     min_size=1, max_size=20),
       crlf=st.booleans(), final_newline=st.booleans(), bom=st.booleans(), chunk=st.integers(1, 64))
def test_blocks_equal_line_by_line(tmp_path_factory, rows, crlf, final_newline, bom, chunk):
    """Blocks of any size (lines longer than a block, CRLF cut between its two bytes, a BOM, no
    final line feed) give what the line-by-line path gives, from a file and from bytes."""
    data = _raw_text(rows, crlf, final_newline, bom)
    path = tmp_path_factory.mktemp("raw") / "x.raw"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(lines_mod, "_CHUNK", chunk)
        m.setattr(lines_mod.blocks, "__defaults__", (chunk,))
        from_file = nf.read(str(path), format="raw")
        from_bytes = raw_mod.read_raw(data, "<t>")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(raw_mod, "intern_lines", lambda *a, **k: None)
        slow = raw_mod.read_raw(data, "<t>")
    for p in (from_file, from_bytes, slow):
        p.validate()
    assert render(from_file, "folded") == render(from_bytes, "folded") == render(slow, "folded")
    assert from_file.total == slow.total == sum(n for _, n in rows)
    assert list(from_file.frames["label"].astype(str)) == list(slow.frames["label"].astype(str))


@pytest.mark.parametrize("threads", [True, False])
def test_blocks_on_one_or_two_threads(tmp_path, monkeypatch, threads):
    """The blocks interned on two threads or on this one (as the load average decides): the same."""
    data = _raw_text([([f"f{i % 7}", "g", "ß"], i + 1) for i in range(300)], False, True, False)
    path = tmp_path / "x.raw"
    path.write_bytes(data)
    monkeypatch.setattr(lines_mod.blocks, "__defaults__", (97,))
    monkeypatch.setattr(lines_mod, "_THREADS", threads)
    a = nf.read(str(path), format="raw")
    monkeypatch.setattr(raw_mod, "intern_lines", lambda *a, **k: None)
    b = raw_mod.read_raw(data, "<t>")
    assert render(a, "folded") == render(b, "folded")


def test_blocks_without_pyarrow_equal_line_by_line(monkeypatch):
    data = _raw_text([(["a", "b"], 3), (["c", "ß"], 4), (["a", "b"], 5)], True, False, False)
    arrow = raw_mod.read_raw(data, "<t>")
    monkeypatch.setattr(raw_mod, "intern_lines", lines_mod._intern_lines_split)
    split = raw_mod.read_raw(data, "<t>")
    assert render(arrow, "folded") == render(split, "folded") == "a;b 8\nc;ß 4\n"


def test_error_line_counts_across_blocks(tmp_path, monkeypatch):
    """A stack without its count is named by its line, wherever the blocks were cut."""
    good = "".join(f"  f{i}\n  g\n  {i + 1}\n\n" for i in range(50))
    path = tmp_path / "bad.raw"
    path.write_text(good + "  lost\n\n  h\n  2\n")
    monkeypatch.setattr(lines_mod.blocks, "__defaults__", (37,))
    with pytest.raises(FormatError) as e:
        nf.read(str(path), format="raw")
    assert e.value.line == 201 and str(path) in str(e.value)


def test_invalid_utf8_falls_back_to_the_text_path(tmp_path):
    path = tmp_path / "x.raw"
    path.write_bytes(b"  a\xff\n  b\n  3\n")
    with pytest.warns(Warning, match="invalid UTF-8"):
        p = nf.read(str(path), format="raw")
    assert render(p, "folded") == "b;a\ufffd 3\n"


def test_perf_file_in_blocks_equals_bytes(tmp_path, monkeypatch):
    text = "".join(f"node 4242/{4242 + i % 2} [001] {100 + i}.000001: cpu-clock: \n"
                   f"\t    55d0a2000{i % 3} f{i % 3}+0x1 (/usr/bin/node)\n\t    55d0a20010 main (/usr/bin/node)\n\n"
                   for i in range(40))
    path = tmp_path / "x.perf"
    path.write_text(text)
    monkeypatch.setattr(lines_mod.blocks, "__defaults__", (53,))
    a = nf.read(str(path), format="perf")
    b = perf_mod.read_perf(text.encode(), "<t>")
    assert render(a, "folded", thread_root=True) == render(b, "folded", thread_root=True)
    assert list(a.samples["time_ns"]) == list(b.samples["time_ns"]) and list(a.samples["tid"]) == list(b.samples["tid"])


# ------------------------------------------------------------------ SystemTap's thread markers
STAP = """# nodeflame-stap samples 16 ids 9
# nodeflame-stap v1 build abc
# nodeflame-stap build-check ok faults 0
# one more comment
  leaf
  main
[thread 10]
5

[thread 11]
1

  other
  main
[thread 11]
7

  [thread 99]
  main
3
"""


def test_thread_markers():
    p = raw_mod.read_raw(STAP.encode(), "<stap>", threads=True, thread_names={10: "main 10", 11: "worker 11"})
    p.validate()
    rows = sorted(zip(p.samples["thread"].astype(str), p.samples["tid"], p.samples["weight"]))
    assert rows == [("main", -1, 3), ("main 10", 10, 5), ("worker 11", 11, 7)]  # the marker-only stack dropped
    # a marker that is not the stack's last line before the count is a frame, kept verbatim
    assert render(p, "folded") == "main;[thread 99] 3\nmain;leaf 5\nmain;other 7\n"
    q = raw_mod.read_raw(STAP.encode(), "<stap>", threads=True)
    assert set(q.samples["thread"].astype(str)) == {"main", "thread 10", "thread 11"}
    # two tids given one name are one thread (the tid column still tells them apart)
    r = raw_mod.read_raw(STAP.encode(), "<stap>", threads=True, thread_names={10: "main"})
    assert list(r.samples["thread"].cat.categories) == ["main", "thread 11"]
    assert sorted(r.samples["tid"]) == [-1, 10, 11]


def test_without_threads_markers_are_frames_and_header_is_three_lines():
    p = raw_mod.read_raw(STAP.encode(), "<raw>")
    assert "[thread 10];main;leaf;# one more comment 5\n" in render(p, "folded")
    assert set(p.samples["thread"].astype(str)) == {"main"}


def test_a_pipe_is_read_once_as_bytes(tmp_path):
    """A path that is no regular file (a FIFO, /dev/stdin) is not taken in blocks: it cannot be
    read twice, and a reader that needed its start again would find it gone."""
    import os
    import threading
    fifo = tmp_path / "in.raw"
    os.mkfifo(fifo)
    data = b"".join(b"  f%d\n  main\n  %d\n\n" % (i, i + 1) for i in range(2000))

    def feed():
        with open(fifo, "wb") as fh:
            fh.write(data)
    t = threading.Thread(target=feed)
    t.start()
    p = nf.read(str(fifo))
    t.join(10)
    assert p.total == sum(range(1, 2001)) and p.meta["source_format"] == "raw"
