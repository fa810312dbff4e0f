"""Folded stacks: the corpus variants, bad lines, annotations."""
import warnings

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
