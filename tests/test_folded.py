"""Folded stacks: the corpus variants, bad lines, annotations."""

import os

import pytest

import nodeflame as nf
from nodeflame.frames.errors import FormatError, FormatWarning
from nodeflame.frames.formats import render

SIMPLE = "a;b 5\na;b;c 5\na;b;d 4\n"


@pytest.mark.parametrize("name", ["simple.txt", "simple-crlf.txt", "simple-utf16-le.txt", "simple-utf16-be.txt"])
def test_encodings_and_line_ends_read_the_same(corpus, name):
    p = nf.read(corpus / "speedscope" / "stackcollapse" / name)
    assert p.meta["source_format"] == "folded"
    assert render(p, "folded") == SIMPLE
    assert p.total == 14


def test_bad_lines_load_with_a_warning_naming_them(corpus):
    path = corpus / "speedscope" / "stackcollapse" / "simple-with-invalids.txt"
    with pytest.warns(FormatWarning, match=r"simple-with-invalids.txt: 1 line\(s\).*line 8"):
        p = nf.read(path)
    assert render(p, "folded") == SIMPLE
    assert any("line 8" in w for w in p.meta["warnings"])


def test_a_file_with_no_valid_line_is_an_error(tmp_path):
    f = tmp_path / "bad.folded"
    f.write_text("# header\nnot a stack\nneither\n")
    with pytest.raises(FormatError) as e:
        nf.read(f, format="folded")
    assert "bad.folded:2" in str(e.value) and "expected" in str(e.value)


def test_recursion_and_tall_corpus_files(corpus):
    rec = nf.read(corpus / "speedscope" / "stackcollapse" / "recursion.txt")
    t = rec.top(None).set_index("name")
    assert t.loc["a", "total"] <= rec.total and t.loc["b", "total"] <= rec.total
    tall = nf.read(corpus / "speedscope" / "stackcollapse" / "tall.txt")
    assert tall.stacks["depth"].max() + 1 == max(len(l.split(" ")[0].split(";"))
                                                 for l in (corpus / "speedscope" / "stackcollapse" / "tall.txt").read_text().split("\n") if l.strip())


def test_flamegraph_annotations_become_kinds():
    p = nf.read(b"proc;main_[k];foo_[j];bar 3\n", format="folded")
    kinds = dict(zip(p.funcs["name"].astype(str), p.funcs["kind"].astype(str)))
    assert kinds["main"] == "kernel" and kinds["foo"] == "js"
    assert render(p, "folded") == "proc;main;foo;bar 3\n"
    assert render(p, "folded", annotate=True) == "proc;main_[k];foo_[j];bar 3\n"


def test_thread_root_moves_first_frame_to_thread():
    p = nf.read(b"node;main;a 2\nworker;main;b 1\n", format="folded", thread_root=True)
    assert sorted(p.threads) == ["node", "worker"]
    assert render(p, "folded") == "main;a 2\nmain;b 1\n"
    assert render(p, "folded", thread_root=True) == "node;main;a 2\nworker;main;b 1\n"


def test_difffolded_lines_read_the_after_count():
    p = nf.read(b"a;b 3 5\na;c 2 0\n", format="folded")
    assert render(p, "folded") == "a;b 5\n"


# ------------------------------------------------------------ fast paths against the line-by-line readers
from hypothesis import given, settings, strategies as st  # noqa: E402

from nodeflame.frames.readers import folded as folded_mod, raw as raw_mod  # noqa: E402

_FRAME = st.sampled_from(["main", "a", "b", "c", "handle /app/x.js:12", "ß€", "計算", "f_[j]", "k_[k]",
                          "x y", "node::Start", "(anonymous)"])
_STACK = st.lists(_FRAME, min_size=1, max_size=6)


def _same_both_ways(read, data, module, fast_name, total):
    """Read ``data`` with the reader's fast path and with it turned off (``fast_name`` returning None);
    both must give the same stacks, counts and total.  Returns (fast, slow)."""
    fast = read(data)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(module, fast_name, lambda *a, **k: None)
        slow = read(data)
    fast.validate()
    slow.validate()
    assert render(fast, "folded") == render(slow, "folded")
    assert fast.total == slow.total == total
    return fast, slow


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(_STACK, st.integers(1, 10**6)), min_size=1, max_size=25),
       crlf=st.booleans(), comments=st.booleans(), blank=st.booleans(), shuffle=st.randoms())
def test_folded_fast_path_equals_line_by_line(rows, crlf, comments, blank, shuffle):
    lines = [";".join(s) + f" {n}" for s, n in rows]
    if comments:
        lines.insert(0, "# comment line")
    if blank:
        lines.insert(len(lines) // 2, "")
    shuffle.shuffle(lines)
    data = (("\r\n" if crlf else "\n").join(lines) + "\n").encode()
    fast, slow = _same_both_ways(lambda d: folded_mod.read_folded(d, "<t>"), data, folded_mod, "_read_fast",
                                 sum(n for _, n in rows))
    assert list(fast.funcs["kind"].astype(str)) == list(slow.funcs["kind"].astype(str))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(_STACK, st.integers(1, 10**6)), min_size=1, max_size=25), crlf=st.booleans())
def test_raw_fast_path_equals_line_by_line(rows, crlf):
    blocks = ["\n".join(reversed(s)) + f"\n  {n}" for s, n in rows]  # leaf first, then the count
    nl = "\r\n" if crlf else "\n"
    data = (nl + nl).join(b.replace("\n", nl) for b in blocks).encode() + nl.encode()
    _same_both_ways(lambda d: raw_mod.read_raw(d, "<t>"), data, raw_mod, "intern_lines", sum(n for _, n in rows))


# ------------------------------------------------------------ names the format cannot hold: escaped reversibly
import numpy as np  # noqa: E402

from nodeflame.frames.build import FrameTable, build_profile  # noqa: E402
from nodeflame.frames.readers.folded import escape_name, unescape_name  # noqa: E402
from nodeflame.writers import folded as folded_writer  # noqa: E402

HOSTILE = ["a;b", ";", ";;", "foo 12", "foo  12", "t 1 2", "x\ny", "\n", "c\r", "\r\n", "", " ", "  ", "\t",
           "#hash", "//sl", "/", "\ufeffbom", "p%{3B}q", "r%{", "%{}", "%{", "%", "100%", "%20", "s_[j]", "s_[k]",
           "s_[i]", "s_[w]", "_[j]", "u\t", "v\u3000\u0661\u0662", "w\u00a0", "lone \ud800 surrogate", "\udfff",
           "z%{25}", "é;ß 7", "(anonymous)", "12", "a 1_[j]", "\x00", "\x1f 3", "x\u2028y", "end%"]
ORDINARY = ["main", "(anonymous) /app/x.js:3", "handle<T> & co /app/server.js:12", "file:///a%20b/m.mjs",
            "#privateMethod /app/c.js:9", "node::Start", "JSON.parse", "计算 /a.js:1", "100%", "x_[y]", "f 12 /a.js:4",
            "__memmove_avx_unaligned_erms /usr/lib/x86_64-linux-gnu/libc.so.6", "(garbage collector)", "a b"]


def _profile(paths, weights, threads=None):
    ft = FrameTable()
    offsets = np.zeros(len(paths) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in paths])
    flat = [ft.add(n) for p in paths for n in p]
    return build_profile(ft, offsets, np.asarray(flat, np.int64), weights=np.asarray(weights, np.int64),
                         threads=threads).validate()


def _by_path(p, thread=False):
    """{(thread?, root-first names...): weight} of a Profile."""
    names = p.funcs["name"].astype(str).to_numpy(object)[p.frames["func"].to_numpy()]
    a = p.arrays()
    out = {}
    th = p.samples["thread"].astype(str).to_numpy(object)
    for s, w, t in zip(p.samples["stack"].to_numpy(), p.samples["weight"].to_numpy(), th):
        path = []
        while s >= 0:
            path.append(names[a["frame"][s]])
            s = a["prefix"][s]
        key = ((t,) if thread else ()) + tuple(reversed(path))
        out[key] = out.get(key, 0) + int(w)
    return out


def _written_names(p, thread=False):
    """What the folded writer keeps of the names: all of them, but a function's label (what is written)
    is '(anonymous)' when its name is empty, as in every writer."""
    out = {}
    for k, w in _by_path(p, thread).items():
        k = k[:int(thread)] + tuple(n or "(anonymous)" for n in k[int(thread):])
        out[k] = out.get(k, 0) + w
    return out


@pytest.mark.parametrize("path", [["main", "x"], ["x"], ["x", "main"], ["#r", "x"]])
def test_each_hostile_name_round_trips_in_every_position(path):
    rows = [[h if n == "x" else n for n in path] for h in HOSTILE]
    p = _profile(rows, list(range(1, len(rows) + 1)))
    for kw in ({}, {"annotate": True}):
        text = render(p, "folded", **kw).encode("utf-8")  # valid UTF-8: no lone surrogate leaked
        q = nf.read(text, format="folded").validate()
        assert _by_path(q) == _written_names(p), kw
        assert len(text.split(b"\n")) - 1 == len(_by_path(p))  # one line per stack


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.lists(st.text(max_size=6) | st.sampled_from(HOSTILE), min_size=1, max_size=5),
                               st.integers(1, 10**9), st.sampled_from(["main", "", "w;1", "#t", "t 5", "\n"])),
                     min_size=1, max_size=12),
       annotate=st.booleans())
def test_every_name_round_trips_through_write_and_read(rows, annotate):
    p = _profile([r[0] for r in rows], [r[1] for r in rows], threads=[r[2] for r in rows])
    want = _written_names(p)
    text = render(p, "folded", annotate=annotate)
    text.encode("utf-8")
    q = nf.read(text.encode("utf-8"), format="folded").validate()
    assert _by_path(q) == want
    # with the thread first (stackcollapse-perf.pl's form): threads round-trip too
    text = render(p, "folded", thread_root=True, annotate=annotate)
    q = nf.read(text.encode("utf-8"), format="folded", thread_root=True).validate()
    assert _by_path(q, thread=True) == _written_names(p, thread=True)
    # the numpy writer (no pyarrow) writes the same bytes
    arrow = render(p, "folded", annotate=annotate, thread_root=True)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(folded_writer, "_write_arrow", lambda *a, **k: False)
        assert render(p, "folded", annotate=annotate, thread_root=True) == arrow


@settings(max_examples=300, deadline=None)
@given(name=st.text() | st.sampled_from(HOSTILE), head=st.booleans())
def test_escape_is_undone_and_leaves_no_breaking_character(name, head):
    esc = escape_name(name, head=head)
    assert unescape_name(esc) == name
    assert not any(c in esc for c in ";\n\r") and esc == esc.rstrip() and esc
    esc.encode("utf-8")
    if head:
        assert not esc.startswith(("#", "//", "\ufeff"))


def test_ordinary_names_are_written_as_they_are():
    for n in ORDINARY:
        assert escape_name(n) is n, n
        assert (escape_name(n, head=True) == "%{23}" + n[1:]) if n[0] == "#" else (escape_name(n, head=True) is n)
    p = _profile([ORDINARY, ORDINARY[::-1]], [3, 4])
    text = render(p, "folded")
    assert text == "".join(sorted(";".join(r) + f" {w}\n" for r, w in ((ORDINARY, 3), (ORDINARY[::-1], 4))))


def test_the_escapes_of_issue_15():
    p = _profile([["main", "a;b"], ["main", "foo 12"]], [5, 7])
    assert render(p, "folded") == "main;a%{3B}b 5\nmain;foo%{20}12 7\n"
    q = nf.read(render(p, "folded").encode(), format="folded")
    assert _by_path(q) == {("main", "a;b"): 5, ("main", "foo 12"): 7}


def test_foreign_percent_escapes_are_not_decoded():
    p = nf.read(b"file:///a%20b/m.mjs;x%3By;100%;%{zz} 3\n", format="folded")
    assert list(_by_path(p)) == [("file:///a%20b/m.mjs", "x%3By", "100%", "%{zz}")]


# ------------------------------------------------------------ a file read in blocks: the same Profile
import io  # noqa: E402


def _same_profile(a, b):
    for t in ("funcs", "frames", "stacks", "samples"):
        x, y = getattr(a, t), getattr(b, t)
        assert list(x.columns) == list(y.columns), t
        for c in x.columns:
            assert list(x[c].astype(str) if x[c].dtype.name == "category" else x[c]) == \
                list(y[c].astype(str) if y[c].dtype.name == "category" else y[c]), (t, c)


def _folded_text(rows, crlf, comments, bad, last_nl) -> str:
    """Folded lines of (stack, count) ``rows``, with a comment and a blank line, a bad line, CRLF."""
    lines = [";".join(s) + f" {n}" for s, n in rows]
    if comments:
        lines.insert(len(lines) // 2, "# comment line")
        lines.insert(0, "")
    if bad:
        lines.insert(len(lines) // 2, "not a stack line")
    nl = "\r\n" if crlf else "\n"
    return nl.join(lines) + (nl if last_nl else "")


def _reads_as_its_bytes(data: bytes, read) -> None:
    """``read()`` (a file reader) gives read_folded(data)'s Profile and warnings, or its error."""
    try:
        want = folded_mod.read_folded(data, "<t>")
    except FormatError as e:
        with pytest.raises(FormatError) as got:
            read()
        assert str(got.value) == str(e)
        return
    got = read()
    _same_profile(got, want)
    assert got.meta.get("warnings") == want.meta.get("warnings")


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(_STACK, st.integers(1, 10**6)), min_size=0, max_size=25),
       crlf=st.booleans(), comments=st.booleans(), bom=st.booleans(), last_nl=st.booleans(),
       bad=st.booleans(), block=st.sampled_from([1, 7, 64, 1 << 20]))
def test_a_file_read_in_blocks_gives_the_profile_of_its_bytes(rows, crlf, comments, bom, last_nl, bad, block):
    data = (b"\xef\xbb\xbf" if bom else b"") + _folded_text(rows, crlf, comments, bad, last_nl).encode()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(folded_mod, "_FILE_BLOCK", block)
        _reads_as_its_bytes(data, lambda: folded_mod.read_folded_file(io.BytesIO(data), "<t>"))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(_STACK, st.integers(1, 10**6)), min_size=0, max_size=25),
       crlf=st.booleans(), comments=st.booleans(), bom=st.booleans(), last_nl=st.booleans(),
       bad=st.booleans(), utf16=st.booleans(), skip=st.sampled_from([0, 3]), arrow=st.booleans(),
       block=st.sampled_from([1, 7, 64, 1 << 23]))
def test_a_regular_file_read_in_small_blocks_gives_the_profile_of_its_bytes(rows, crlf, comments, bom, last_nl, bad,
                                                                           utf16, skip, arrow, block):
    """A regular file of up to two large blocks is read in small ones (_SMALL_FILE_BLOCK, one buffer re-used):
    the Profile, warnings and errors of read_folded on its bytes, from wherever the file was left (``skip``
    bytes already read, where a file left to the line reader is read from too), BOMs, bad lines and UTF-16
    (left to the line reader) included, interned by bytes.split or (``arrow``, as blocks of 4 MB and more
    are) by Arrow over the block's buffer."""
    import tempfile
    text = _folded_text(rows, crlf, comments, bad, last_nl)
    data = text.encode("utf-16") if utf16 else (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    with tempfile.NamedTemporaryFile(suffix=".folded") as tf:
        tf.write(b"x" * skip + data)
        tf.flush()
        with open(tf.name, "rb") as fh, pytest.MonkeyPatch.context() as m:
            fh.read(skip)
            m.setattr(folded_mod, "_SMALL_FILE_BLOCK", block)
            if arrow:
                m.setattr(folded_mod, "_ARROW_MIN", 0)
            _reads_as_its_bytes(data, lambda: folded_mod.read_folded_file(fh, "<t>"))


def test_a_small_file_is_read_in_small_blocks_and_a_pipe_whole():
    """A regular file of up to two large blocks goes through the block reader with the small block (its text
    is never whole in memory); a pipe, which cannot be read again if a block needs the line reader, is read
    whole; both give the same Profile."""
    import tempfile
    import threading
    data = b"".join(b"main;f%d;g 3\n" % i for i in range(5000))
    calls = []
    real = folded_mod._parse_block
    with pytest.MonkeyPatch.context() as m:
        m.setattr(folded_mod, "_SMALL_FILE_BLOCK", 4096)
        m.setattr(folded_mod, "_parse_block", lambda d: calls.append(len(d)) or real(d))
        with tempfile.NamedTemporaryFile(suffix=".folded") as tf:
            tf.write(data)
            tf.flush()
            with open(tf.name, "rb") as fh:
                p = folded_mod.read_folded_file(fh, "<t>")
        assert len(calls) > 10 and max(calls) <= 4096 + 20, calls
        del calls[:]
        r, w = os.pipe()
        t = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))
        t.start()
        with open(r, "rb") as fh:
            q = folded_mod.read_folded_file(fh, "<pipe>")
        t.join()
        assert calls == [len(data)]
    assert p.total == q.total == 15000
    _same_profile(p, q)


def test_a_folded_file_is_read_in_blocks(tmp_path, monkeypatch):
    """nodeflame.read hands a folded file to the block reader (the whole file is never one bytes object)."""
    f = tmp_path / "x.folded"
    f.write_bytes(b"".join(b"main;f%d;g 3\n" % i for i in range(5000)))
    calls = []
    real = folded_mod._parse_block
    monkeypatch.setattr(folded_mod, "_FILE_BLOCK", 4096)
    monkeypatch.setattr(folded_mod, "_parse_block", lambda d: calls.append(len(d)) or real(d))
    p = nf.read(f)
    assert p.total == 15000 and len(calls) > 10 and max(calls) <= 4096 + 20
    _same_profile(p, nf.read(f.read_bytes(), format="folded"))


# ------------------------------------------------------------ the writer's line order taken from the stack table
# names whose labels are prefixes of others followed by bytes below and above ';' and ' ' (':242' sorts
# after ':2428;' but before ':242 5'; 'a 5' after 'a 1x;', 'a 1' before: by the count), equal counts, one-frame lines,
# hostile names, threads alike
_ORDER_NAMES = ["f /a.js:242", "f /a.js:2428", "f /a.js:24", "g", "g 1", "g:1", "g1", "g!", "g-", "g;x", "h",
                "h_[j]", "#h", "", " ", "a b", "é", "\x7f", "\x00", "x\ny", "(anonymous)", "a", "a b 1x", "a 1x"]


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.lists(st.sampled_from(_ORDER_NAMES), min_size=1, max_size=5),
                               st.sampled_from([1, 2, 5, 12, 120, 7, 10**9]),
                               st.sampled_from(["main", "t", "t 1", "t;", "#t", "worker"])),
                     min_size=1, max_size=30),
       annotate=st.booleans(), thread_root=st.booleans(), sort=st.booleans())
def test_lines_ordered_from_the_stack_table_are_the_sorted_lines(rows, annotate, thread_root, sort):
    """The writer's ordered path (the line order from the stack table, the text a piece at a time)
    writes the bytes of its Arrow path that sorts the whole text, and of the numpy path."""
    import io
    p = _profile([r[0] for r in rows], [r[1] for r in rows], threads=[r[2] for r in rows])
    taken = []

    def write(ordered=True, arrow=True):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(folded_writer, "_ARROW_MIN_LINES", 0)
            m.setattr(folded_writer, "_TOKENS_PER_TAKE", 7)  # several pieces even for a few lines
            real = folded_writer._write_ordered
            m.setattr(folded_writer, "_write_ordered",
                      (lambda *a, **k: taken.append(real(*a, **k)) or taken[-1]) if ordered else (lambda *a, **k: False))
            if not arrow:
                m.setattr(folded_writer, "_write_arrow", lambda *a, **k: False)
            buf = io.BytesIO()
            folded_writer.write_folded(p, buf, annotate=annotate, thread_root=thread_root, sort=sort)
            return buf.getvalue()

    got = write()
    used = {n for r in rows for n in r[0]}
    if taken and not {"", "(anonymous)"} <= used:  # (both are written '(anonymous)': one text, the text sorted)
        assert taken == [True]
    assert got == write(ordered=False)
    assert got == write(ordered=False, arrow=False)
    if sort:
        lines = got.split(b"\n")[:-1]
        assert lines == sorted(lines) or any(ch < 32 for ch in got if ch != 10)


def test_lines_ordered_from_the_stack_table_with_equal_labels():
    """Two frames with one label (a column apart): the tree's order is not the text's, so the writer
    sorts the text; and where the labels differ the ordered path is taken."""
    import io
    ft = FrameTable()
    a1 = ft.add("f", "/a.js", 1, 1, label="f /a.js:1")
    a2 = ft.add("f", "/a.js", 1, 9, label="f /a.js:1")
    b = ft.add("b", label="b")
    c = ft.add("c", label="c")
    paths = [[a1, b], [a2, c], [a1, c], [a2, b], [a1], [a2]]
    offsets = np.zeros(len(paths) + 1, np.int64)
    offsets[1:] = np.cumsum([len(x) for x in paths])
    p = build_profile(ft, offsets, np.asarray([f for x in paths for f in x], np.int64),
                      weights=np.asarray([3, 1, 2, 5, 7, 4], np.int64)).validate()
    taken = []
    with pytest.MonkeyPatch.context() as m:
        m.setattr(folded_writer, "_ARROW_MIN_LINES", 0)
        real = folded_writer._write_ordered
        m.setattr(folded_writer, "_write_ordered", lambda *a, **k: taken.append(real(*a, **k)) or taken[-1])
        buf = io.BytesIO()
        folded_writer.write_folded(p, buf)
        assert taken == [False]
        assert buf.getvalue() == (b"f /a.js:1 4\nf /a.js:1 7\nf /a.js:1;b 3\nf /a.js:1;b 5\nf /a.js:1;c 1\n"
                                  b"f /a.js:1;c 2\n")
        q = _profile([["f /a.js:1", "b"], ["f /a.js:10", "c"], ["f /a.js:1"]], [1, 2, 3])
        buf = io.BytesIO()
        folded_writer.write_folded(q, buf)
        assert taken == [False, True]
        assert buf.getvalue() == b"f /a.js:1 3\nf /a.js:10;c 2\nf /a.js:1;b 1\n"
        # 'a 5' sorts after 'a 1x' (its count decides), 'a 1' before: the ends ranked whole
        q = _profile([["a"], ["a 1x"], ["m", "a"], ["m", "a 1x", "z"], ["m", "a", "y"]], [5, 3, 1, 2, 4])
        buf = io.BytesIO()
        folded_writer.write_folded(q, buf)
        assert taken == [False, True, True]
        assert buf.getvalue() == b"a 1x 3\na 5\nm;a 1\nm;a 1x;z 2\nm;a;y 4\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 29), max_size=5), min_size=1, max_size=20),
       st.sampled_from([1, 2, 3, 1 << 20]))
def test_ordered_writer_path_sums_match_a_plain_loop(paths, span):
    """The ordered writer's per-line sums over its path (gathered a run of lines at a time into one
    buffer) are the plain sums, empty paths 0."""
    from nodeflame.writers.folded import _path_sums
    vals = np.arange(30, dtype=np.int64) * 7 - 40
    off = np.r_[0, np.cumsum([len(x) for x in paths])].astype(np.int64)
    flat = np.array([v for x in paths for v in x], np.int32)
    assert _path_sums(vals, flat, off, span).tolist() == [int(vals[x].sum()) if x else 0 for x in paths]


def _many_lines(n=6000):
    """A Profile with ``n`` distinct stacks (the Arrow paths, written in several pieces)."""
    return _profile([[f"f{i % 37}", f"g{i}", "leaf"] for i in range(n)], [1 + i % 5 for i in range(n)])


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("sort", [True, False])
def test_a_full_device_raises_its_error_and_leaves_no_writer_thread(sort, ordered):
    """The pieces are written on a second thread: a write that fails there (ENOSPC from /dev/full, a real
    device) is raised to the caller, and the thread is gone when write_folded returns."""
    import errno
    import threading
    p = _many_lines()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(folded_writer, "_TOKENS_PER_TAKE", 1000)   # many pieces: the error comes mid-way
        m.setattr(folded_writer, "_SLICE", 500)
        if not ordered:   # the Arrow path that sorts the text
            m.setattr(folded_writer, "_write_ordered", lambda *a, **k: False)
        with open("/dev/full", "wb", buffering=0) as f, pytest.raises(OSError) as e:
            folded_writer.write_folded(p, f, sort=sort)
    assert e.value.errno == errno.ENOSPC
    assert not [t for t in threading.enumerate() if t.name == "nodeflame-write"]


def test_a_reader_that_goes_away_gives_a_broken_pipe_and_no_writer_thread():
    """`nodeflame convert ... | head`: the reader of a pipe closes it after the first bytes; the writer's
    thread ends and the caller sees BrokenPipeError (which the CLI turns into a quiet exit)."""
    import os
    import threading
    p = _many_lines()
    r, w = os.pipe()
    got = []
    reader = threading.Thread(target=lambda: (got.append(os.read(r, 4096)), os.close(r)))
    reader.start()
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(folded_writer, "_TOKENS_PER_TAKE", 1000)
            # unbuffered: every piece goes to the pipe from the writer's thread (a buffered file would keep
            # the last bytes and raise again when closed); the text (~120 kB) is more than the pipe holds
            with open(w, "wb", buffering=0) as f, pytest.raises(BrokenPipeError):
                folded_writer.write_folded(p, f)
    finally:
        reader.join()
    assert got and got[0]
    assert not [t for t in threading.enumerate() if t.name == "nodeflame-write"]


def test_pieces_written_on_the_thread_are_the_bytes_written_on_this_one():
    """The same bytes whether the pieces go through the writer's thread or straight to the file."""
    import io
    p = _many_lines()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(folded_writer, "_TOKENS_PER_TAKE", 1000)
        m.setattr(folded_writer, "_SLICE", 500)
        a = io.BytesIO()
        folded_writer.write_folded(p, a)
        b = io.BytesIO()
        folded_writer.write_folded(p, b, sort=False)

        class Direct:
            def __init__(self, out):
                self.out = out

            def __enter__(self):
                return self.out

            def __exit__(self, *exc):
                return False
        m.setattr(folded_writer, "_Pieces", Direct)
        c = io.BytesIO()
        folded_writer.write_folded(p, c)
        d = io.BytesIO()
        folded_writer.write_folded(p, d, sort=False)
    assert a.getvalue() == c.getvalue() and b.getvalue() == d.getvalue()
    assert len(a.getvalue().splitlines()) == 6000
