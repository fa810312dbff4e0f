"""Folded stacks: the corpus variants, bad lines, annotations."""

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
    _same_both_ways(lambda d: raw_mod.read_raw(d, "<t>"), data, raw_mod, "_intern_lines", sum(n for _, n in rows))
