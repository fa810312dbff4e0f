"""The interactive SVG flame graph writer: XML safety, options, corpus, and behaviour in headless Chromium."""
from __future__ import annotations

import colorsys
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import nodeflame as nf
from nodeflame.cli import main as cli_main
from nodeflame.frames.build import FrameTable, build_profile
from nodeflame.writers import svg as svgw

from browser import Browser, chromium_path

NS = {"s": "http://www.w3.org/2000/svg"}
S = "{http://www.w3.org/2000/svg}"

HOSTILE = [
    "<script>alert(1)</script>",
    "<script>window.__pwned=1</script>",
    "]]><script>window.__pwned=2</script><![CDATA[",
    "</title></g><script>window.__pwned=3</script>",
    '<img src=x onerror="window.__pwned=4">',
    "a & b &amp; \"dq\" 'sq' <!-- c -->",
    "ctl\x00\x01\x08\x0b\x1b\x7f\x85 end",
    "tab\tnl\ncr\r",
    "lone \ud800 high, lone \udfff low",
    "\ufffe\uffff",
    "]]>",
]


def build(paths) -> nf.Profile:
    """Profile from [(path, weight)], each path a list of names or (name, file, line) tuples, root first."""
    ft = FrameTable()
    offsets, flat, weights = [0], [], []
    for path, w in paths:
        for fr in path:
            flat.append(ft.add(*fr) if isinstance(fr, tuple) else ft.add(fr))
        offsets.append(len(flat))
        weights.append(w)
    return build_profile(ft, np.array(offsets), np.array(flat, np.int64), weights=np.array(weights, np.int64))


def folded(text: str) -> nf.Profile:
    return nf.read(text.encode(), format="folded")


def render(p, **opts) -> bytes:
    buf = io.BytesIO()
    p.write(buf, format="svg", **opts)
    return buf.getvalue()


def frames_of(data: bytes):
    """[(title, x, y, width, fill, text)] of the drawn frames, in document order."""
    root = ET.fromstring(data)
    g = root.find(".//s:g[@id='frames']", NS)
    out = []
    for f in g.findall("s:g", NS):
        r = f.find("s:rect", NS)
        t = f.find("s:text", NS)
        out.append((f.find("s:title", NS).text, float(r.get("x")), float(r.get("y")), float(r.get("width")),
                    r.get("fill"), None if t is None else (t.text or "")))
    return out


def label_of(title: str) -> str:
    return re.sub(r" \([^()]*\)$", "", title)


RECURSIVE = {"main;foo;bar;foo": 10, "main;foo": 5, "main;baz": 5, "main;baz;foo": 3, "main;qux;quux": 7}


def recursive_profile():
    return folded("".join(f"{k} {v}\n" for k, v in RECURSIVE.items()))


# --------------------------------------------------------------- static
def test_hostile_names_are_text_and_xml_stays_well_formed():
    paths = [([("main", "/app/<main>.js", 1), (name, f"/app/{name}.js", i + 1)], i + 1) for i, name in enumerate(HOSTILE)]
    p = build(paths)
    data = render(p, title="<b>t</b> & ]]>", subtitle="\x01<sub>")
    data.decode("utf-8")  # strict: no lone surrogates leaked into the bytes
    root = ET.fromstring(data)  # well-formed
    assert len(root.findall(".//s:script", NS)) == 1  # only ours
    assert not root.findall(".//s:img", NS) and not root.findall(".//{*}img")
    assert root.find(".//s:text[@id='title']", NS).text == "<b>t</b> & ]]>"
    assert root.find(".//s:text[@id='subtitle']", NS).text == "\\x01<sub>"
    titles = [t for t, *_ in frames_of(data)]
    for name in HOSTILE:
        shown = svgw.sanitize(name)
        assert any(t.startswith(shown + " /app/") for t in titles), name
    assert any(t.startswith("<script>alert(1)</script> /app/<script>alert(1)</script>.js:1 (") for t in titles)
    assert any("ctl\\x00\\x01\\x08\\x0b\\x1b\\x7f\\x85 end" in t for t in titles)
    assert any("lone \\ud800 high, lone \\udfff low" in t for t in titles)
    assert any(t.startswith("main /app/<main>.js:1 ") for t in titles)
    # the script section holds no names at all
    script = root.find(".//s:script", NS).text
    assert "pwned" not in script and "alert(1)" not in script


def test_sanitize_covers_what_xml_cannot_hold():
    for cp in list(range(0x20)) + [0xD800, 0xDBFF, 0xDC00, 0xDFFF, 0xFFFE, 0xFFFF]:
        s = svgw.xml_escape("x" + chr(cp) + "y")
        assert chr(cp) not in s and s.startswith("x\\") and s.endswith("y")
        ET.fromstring(f"<a b=\"{s}\">{s}</a>".encode("utf-8"))
    assert svgw.xml_escape("<&>\"'") == "&lt;&amp;&gt;&quot;&#39;"
    assert svgw.sanitize("é漢字🔥") == "é漢字🔥"


def test_geometry_titles_and_data_agree():
    p = recursive_profile()
    data = render(p, minwidth=0)
    fr = frames_of(data)
    total = p.total
    assert fr[0][0] == f"all ({total} samples, 100.00%)"
    assert fr[0][1] == 10 and fr[0][3] == 1180
    by_label = {}
    for t, x, y, w, fill, txt in fr:
        by_label.setdefault(label_of(t), []).append((t, x, y, w))
    # main spans all samples; foo under main has 15 of 30 (10 + 5)
    t, x, y, w = by_label["main"][0]
    assert t == "main (30 samples, 100.00%)" and w == 1180
    foo = sorted(by_label["foo"], key=lambda r: r[2], reverse=True)
    assert foo[0][0] == "foo (15 samples, 50.00%)" and foo[0][3] == pytest.approx(590, abs=0.01)
    # flame: root at the bottom, each level one frame height up
    ys = sorted({y for _, _, y, *_ in fr}, reverse=True)
    assert ys == [ys[0] - 16 * i for i in range(len(ys))]
    # the script's integer intervals match the rectangles
    script = ET.fromstring(data).find(".//s:script", NS).text
    d = re.search(r'"x0":\[([^\]]*)\],"n":\[([^\]]*)\],"d":\[([^\]]*)\]', script)
    x0 = [int(v) for v in d.group(1).split(",")]
    n = [int(v) for v in d.group(2).split(",")]
    assert len(x0) == len(fr)
    for (t, x, y, w, *_), a, b in zip(fr, x0, n):
        assert x == pytest.approx(10 + a * 1180 / total, abs=0.006)
        assert w == pytest.approx(b * 1180 / total, abs=0.006)
        assert f"({b} samples" in t


def test_options_title_width_inverted_subtitle():
    p = recursive_profile()
    base = render(p)
    root = ET.fromstring(base)
    assert root.get("width") == "1200"
    assert root.find(".//s:text[@id='title']", NS).text == "Flame Graph"
    assert root.find(".//s:text[@id='subtitle']", NS) is None

    d = render(p, title="My <title>", subtitle="sub", width=800)
    r = ET.fromstring(d)
    assert r.get("width") == "800" and r.get("viewBox").split()[2] == "800"
    assert r.find(".//s:text[@id='title']", NS).text == "My <title>"
    assert r.find(".//s:text[@id='subtitle']", NS).text == "sub"
    assert frames_of(d)[0][3] == 780

    flame, icicle = frames_of(base), frames_of(render(p, inverted=True))
    assert ET.fromstring(render(p, inverted=True)).find(".//s:text[@id='title']", NS).text == "Icicle Graph"
    # root: bottom-most in a flame graph, top-most in an icicle graph
    assert flame[0][2] == max(f[2] for f in flame)
    assert icicle[0][2] == min(f[2] for f in icicle)
    assert [f[0] for f in flame] == [f[0] for f in icicle]


def test_reverse_draws_the_bottom_up_tree():
    p = recursive_profile()
    fr = frames_of(render(p, reverse=True, minwidth=0))
    bottom = max(f[2] for f in fr[1:])
    roots = {label_of(f[0]): f[0] for f in fr if f[2] == bottom}
    # the first level above "all" is where samples ended: foo (10 + 5 + 3), baz (5), quux (7)
    assert set(roots) == {"foo", "baz", "quux"}
    assert roots["foo"] == "foo (18 samples, 60.00%)"


def test_every_corpus_profile_renders_well_formed(corpus):
    import warnings
    n = 0
    for f in sorted(corpus.rglob("*")):
        if not f.is_file() or "invalid" in f.parts or f.suffix == ".md":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                p = nf.read(f)
            except nf.NodeflameError:
                continue  # readers are tested elsewhere
        fr = frames_of(render(p))
        assert fr[0][0].startswith(f"all ({p.total:,} "), f
        n += 1
    assert n >= 10


def test_minwidth_merges_narrow_frames_into_other():
    paths = [(["main", "hot"], 100000)] + [(["main", f"tiny{i:03d}", "leaf"], 1) for i in range(300)]
    p = build(paths)
    full = frames_of(render(p, minwidth=0))
    assert not any(label_of(t).startswith("other") for t, *_ in full)
    assert len(full) == 1 + 2 + 600  # all, main, hot + 300 x (tiny, leaf)
    pruned = frames_of(render(p, minwidth=1))  # each tiny frame is ~0.01 px wide
    others = [f for f in pruned if label_of(f[0]).startswith("other")]
    assert len(others) == 1
    assert others[0][0] == "other (300 frames) (300 samples, 0.30%)"
    assert len(pruned) == 4 and not any("leaf" in f[0] for f in pruned)
    # the default (0.1 px) prunes too, and a share works as in flamegraph.pl
    assert len(frames_of(render(p))) == 4
    assert len(frames_of(render(p, minwidth="0.5%"))) == 4
    # nothing drawn but "other" is narrower than minwidth
    assert all(w >= 1 for t, x, y, w, *_ in pruned if not label_of(t).startswith("other"))


def test_colours_by_kind_distinct_and_deterministic():
    paths = [([("main", "/app/index.js", 1), ("handler", "/app/src/h.js", 3)], 10),
             ([("main", "/app/index.js", 1), ("lodash.map", "/app/node_modules/lodash/map.js", 5)], 10),
             ([("main", "/app/index.js", 1), ("emit", "node:events", 517)], 10),
             ([("main", "/app/index.js", 1), ("(garbage collector)", "", 0)], 10),
             ([("(idle)", "", 0)], 10), ([("(program)", "", 0)], 10)]
    p = build(paths)
    kinds = dict(zip(p.funcs["name"].astype(str), p.funcs["kind"].astype(str)))
    assert kinds["lodash.map"] == "deps" and kinds["emit"] == "node" and kinds["(idle)"] == "idle"
    fr = frames_of(render(p))
    fill = {label_of(t).split(" ")[0]: f for t, x, y, w, f, _ in fr}
    for name in ("handler", "lodash.map", "emit", "(garbage", "(idle)", "(program)"):
        kind = kinds[next(k for k in kinds if k.startswith(name))]
        h0, h1, s0, s1, l0, l1 = svgw.PALETTES[kind]
        rgb = [int(fill[name][i:i + 2], 16) / 255 for i in (1, 3, 5)]
        h, l, s = colorsys.rgb_to_hls(*rgb)
        assert l0 - 0.01 <= l <= l1 + 0.01, (name, kind, fill[name])
        if s1 > 0.3:
            assert h0 - 1.5 <= h * 360 <= h1 + 1.5, (name, kind, fill[name])
    assert len({fill[k] for k in ("handler", "lodash.map", "emit", "(garbage", "(idle)")}) == 5
    # same name and kind -> same colour, in another profile too; another name -> (almost surely) another
    c = svgw.kind_colors(np.array(["handler", "handler", "other_fn"], object), np.array(["js"] * 3, object))
    assert c[0] == c[1] == fill["handler"] and c[2] != c[0]


def test_deltas_colour_red_grew_blue_shrank_grey_same():
    before = folded("main;a 100\nmain;b 100\nmain;c 100\n")
    after = folded("main;a 200\nmain;b 50\nmain;c 100\n")
    d = nf.diff(before, after, normalize="total")   # shares: what this test's pp figures are
    buf = io.BytesIO()
    d.write(buf, format="svg", noise=True)  # every change tinted, also those within sampling noise
    fr = frames_of(buf.getvalue())
    fill = {label_of(t): f for t, x, y, w, f, _ in fr}
    tips = {label_of(t): t for t, *_ in fr}
    rgb = {k: tuple(int(v[i:i + 2], 16) for i in (1, 3, 5)) for k, v in fill.items()}
    assert rgb["a"][0] == 255 and rgb["a"][2] < 200          # grew: red
    assert rgb["b"][2] == 255 and rgb["b"][0] < 200          # shrank: blue
    assert rgb["c"][2] == 255 and rgb["c"][0] > rgb["b"][0]  # c's share fell less (-4.8 pp): paler blue
    assert rgb["main"] == (220, 220, 220)                    # main's self share did not change: grey
    deltas = d.deltas()
    names = list(after.funcs["name"].astype(str))
    assert tips["a"].endswith(f"; +{deltas[names.index('a')]:.2f} pp)")
    # explicit deltas: zero is grey, the largest change is the most intense
    p = folded("main;a 1\nmain;b 1\nmain;c 1\n")
    names = list(p.funcs["name"].astype(str))
    dl = np.zeros(len(names))
    dl[names.index("a")], dl[names.index("b")] = 5.0, -0.5
    fr = frames_of(render(p, deltas=dl))
    rgb = {label_of(t): tuple(int(f[i:i + 2], 16) for i in (1, 3, 5)) for t, x, y, w, f, _ in fr}
    assert rgb["c"] == (220, 220, 220) and rgb["main"] == (220, 220, 220)
    assert rgb["a"][0] == 255 and rgb["a"][1] < 40
    assert rgb["b"][2] == 255 and 150 < rgb["b"][0] < 220
    with pytest.raises(ValueError):
        render(p, deltas=[1.0])


def test_empty_profile_renders():
    p = folded("main 0\n") if False else build([])
    data = render(p)
    fr = frames_of(data)
    assert len(fr) == 1 and fr[0][0].startswith("all (0 samples")


def test_corpus_cpuprofile_and_folded_render(corpus, tmp_path):
    for src, expect in ((corpus / "speedscope/node/10.11.0/example.cpuprofile", None),
                        (corpus / "flamegraph/results/perf-js-stacks-01-collapsed-jit.txt", "LazyCompile")):
        if not src.exists():
            pytest.skip(f"corpus file missing: {src}")
        p = nf.read(src)
        out = tmp_path / (src.stem + ".svg")
        p.write(out)
        data = out.read_bytes()
        fr = frames_of(data)
        assert fr[0][0] == f"all ({p.total:,} samples, 100.00%)"
        assert len(fr) > 3 and all(w > 0 for *_, w, _f, _t in [(f[0], f[1], f[2], f[3], f[4], f[5]) for f in fr])
        if expect:
            assert any(expect in t for t, *_ in fr)


def test_cli_convert_passes_options(corpus, tmp_path):
    src = corpus / "flamegraph/results/perf-js-stacks-01-collapsed-jit.txt"
    if not src.exists():
        pytest.skip(f"corpus file missing: {src}")
    out = tmp_path / "o.svg"
    assert cli_main(["convert", str(src), str(out), "--title", "T&T", "--width", "900", "--minwidth", "2",
                     "--inverted"]) == 0
    r = ET.fromstring(out.read_bytes())
    assert r.get("width") == "900" and r.find(".//s:text[@id='title']", NS).text == "T&T"
    fr = frames_of(out.read_bytes())
    assert fr[0][2] == min(f[2] for f in fr) and fr[0][3] == 880
    assert all(f[3] >= 2 for f in fr if not label_of(f[0]).startswith("other"))


def test_big_profile_is_pruned_and_quick():
    rng = np.random.default_rng(7)
    ft = FrameTable()
    ids = [ft.add(f"fn{i}", f"/app/m{i % 50}.js", i + 1) for i in range(2000)]
    n_stacks, depth = 20000, 30
    flat = np.asarray(ids, np.int64)[rng.integers(0, 60, size=(n_stacks, depth)) + rng.integers(0, 1940, size=(n_stacks, 1))]
    flat[:, :3] = ids[:3]
    offsets = np.arange(0, n_stacks * depth + 1, depth)
    w = rng.pareto(1.2, n_stacks).astype(np.int64) + 1
    p = build_profile(ft, offsets, flat.ravel(), weights=w)
    import time
    t = time.process_time()
    data = render(p)
    took = time.process_time() - t
    fr = frames_of(data)
    assert len(fr) < 60000 and len(data) < 15_000_000
    assert all(f[3] >= 0.1 - 0.006 for f in fr if not label_of(f[0]).startswith("other"))
    assert took < 20  # generous: vectorised it takes well under a second



def test_the_stack_table_layout_draws_what_the_whole_call_tree_draws(monkeypatch):
    """Where the stack table is the call tree (one frame per function), the writer lays it out as it is
    (``views.layout_tree``: no call tree built); the SVG is byte for byte the one the whole call tree
    (``views._tree_arrays``) gives, with every option that changes the layout."""
    from nodeflame.frames import views
    rng = np.random.default_rng(3)
    profiles = [recursive_profile(), folded("a;b;c 3\na;b 2\na;c;b;c 1\nd 4\na;b;c;d 0\n")]
    for seed in range(6):   # random paths over few functions: recursion, equal labels in other files
        ft = FrameTable()
        ids = [ft.add(f"f{i % 4}", f"/app/{i % 3}.js", 1 + i % 2) for i in range(7)]
        n = 40 + 30 * seed
        lens = rng.integers(1, 12, n)
        flat = np.asarray(ids, np.int64)[rng.integers(0, len(ids), int(lens.sum()))]
        profiles.append(build_profile(ft, np.concatenate(([0], np.cumsum(lens))), flat,
                                      weights=rng.integers(0, 50, n)).validate())
    whole_tree = []

    def from_the_call_tree(p, *, minwidth=0.0, inverted=False, tree=None):
        whole_tree.append(1)
        return views.flame_layout_arrays(p, minwidth=minwidth, tree=views._tree_arrays(p, inverted=inverted))

    for p in profiles:
        assert views.stack_tree_is_call_tree(p)
        for opts in ({}, {"minwidth": 0}, {"minwidth": "2%"}, {"minwidth": 3, "width": 300}, {"inverted": True},
                     {"reverse": True}):
            got = render(p, **opts)
            with monkeypatch.context() as m:
                m.setattr(svgw, "flame_layout_arrays", from_the_call_tree)
                want = render(p, **opts)
            assert got == want, opts
    assert len(whole_tree) == 6 * len(profiles)


# -------------------------------------------------------------- browser
needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="chromium not installed (/usr/bin/chromium)")


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.skip("chromium not installed (/usr/bin/chromium)")
    b = Browser(1200, 900)
    try:
        b.start()
        b.add_init_script("window.__alerts = []; window.alert = function (m) { window.__alerts.push(String(m)); };")
        yield b
    finally:
        b.close()


def open_svg(b, tmp_path, p, name="f.svg", **opts):
    path = tmp_path / name
    p.write(path, **opts)
    b.errors.clear()
    b.dialogs.clear()
    b.open(path)
    b.wait_for("window.nodeflame && nodeflame.frames > 0", 10)
    return path


JS_FRAMES = """(function () {
  return Array.prototype.map.call(document.querySelectorAll('#frames > g'), function (g) {
    var r = g.querySelector('rect'), bb = r.getBoundingClientRect(), t = g.querySelector('text');
    return {title: g.querySelector('title').textContent, cls: g.getAttribute('class') || '',
            x: parseFloat(r.getAttribute('x')), w: parseFloat(r.getAttribute('width')),
            bx: bb.left, by: bb.top, bw: bb.width, bh: bb.height,
            fill: getComputedStyle(r).fill, text: t ? t.textContent : null,
            shown: getComputedStyle(g).display !== 'none'};
  });
})()"""


def centre(f):
    return f["bx"] + f["bw"] / 2, f["by"] + f["bh"] / 2


def element_centre(b, element_id):
    """Viewport (x, y) of the centre of the element with that id (a button)."""
    return b.eval(f"(function(){{var r=document.getElementById('{element_id}').getBoundingClientRect();"
                  "return [r.left+r.width/2, r.top+r.height/2];})()")


@pytest.mark.browser
@needs_chromium
def test_browser_renders(browser, tmp_path, corpus):
    src = corpus / "flamegraph/results/perf-js-stacks-01-collapsed-jit.txt"
    p = nf.read(src)
    open_svg(browser, tmp_path, p)
    fr = browser.eval(JS_FRAMES)
    assert len(fr) > 3
    assert all(f["bw"] > 0 and f["bh"] > 0 and f["shown"] for f in fr)
    assert fr[0]["bw"] == pytest.approx(1180, abs=0.5)
    assert browser.eval("document.querySelectorAll('#frames rect').length") == len(fr)
    png = browser.screenshot(tmp_path / "shot.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (tmp_path / "shot.png").read_bytes() == png
    import struct
    assert struct.unpack(">II", png[16:24]) == (1200, 900)  # the viewport
    height = float(ET.fromstring((tmp_path / "f.svg").read_bytes()).get("height"))
    browser.set_viewport(1200, 200)  # smaller than the SVG: a full-page shot goes beyond it
    try:
        full = browser.screenshot(full_page=True)
        assert struct.unpack(">II", full[16:24]) == (1200, int(round(height)))
        assert struct.unpack(">II", browser.screenshot()[16:24]) == (1200, 200)
    finally:
        browser.set_viewport(1200, 900)
    assert browser.errors == []


@pytest.mark.browser
@needs_chromium
def test_browser_hover_click_zoom_and_reset(browser, tmp_path):
    p = recursive_profile()
    open_svg(browser, tmp_path, p, minwidth=0)
    fr = browser.eval(JS_FRAMES)
    baz = next(i for i, f in enumerate(fr) if f["title"].startswith("baz ("))
    x, y = centre(fr[baz])
    browser.mouse_move(x, y)
    browser.wait_for("document.getElementById('details').textContent.indexOf('baz') >= 0", 5)
    assert browser.eval("document.getElementById('details').textContent") == "Function: baz (8 samples, 26.67%) [native]"
    browser.click(x, y)
    browser.wait_for(f"nodeflame.zoomed() === {baz}", 5)
    z = browser.eval(JS_FRAMES)
    assert z[baz]["w"] == pytest.approx(1180) and z[baz]["bw"] == pytest.approx(1180, abs=0.5)
    byt = {f["title"]: f for f in z}
    main = byt["main (30 samples, 100.00%)"]
    assert "parent" in main["cls"] and main["w"] == pytest.approx(1180) and main["shown"]
    assert "parent" in byt["all (30 samples, 100.00%)"]["cls"]
    # the child of baz fills its share of the new width; other branches are hidden
    child = next(f for f in z if f["title"] == "foo (3 samples, 10.00%)")
    assert child["shown"] and child["w"] == pytest.approx(1180 * 3 / 8, abs=0.01)
    assert not byt["qux (7 samples, 23.33%)"]["shown"] and not byt["foo (15 samples, 50.00%)"]["shown"]
    assert browser.eval("document.getElementById('unzoom').getAttribute('class')") == ""
    # reset zoom via its button
    browser.click(*element_centre(browser, "unzoom"))
    browser.wait_for("nodeflame.zoomed() === 0", 5)
    back = browser.eval(JS_FRAMES)
    assert [(f["x"], f["w"], f["shown"]) for f in back] == [(f["x"], f["w"], f["shown"]) for f in fr]
    assert not any("parent" in f["cls"] or "hide" in f["cls"] for f in back)
    assert browser.errors == []


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("pattern", ["foo", "^ba", "qu+x$", "o{2}"])
def test_browser_search_matches_focus_share(browser, tmp_path, pattern):
    p = recursive_profile()
    open_svg(browser, tmp_path, p, minwidth=0)
    browser.prompt_reply = pattern
    try:
        browser.key("f", ctrl=True)  # Ctrl-F opens the prompt, answered with the pattern
        browser.wait_for("nodeflame.matched() !== null", 5)
    finally:
        browser.prompt_reply = None
    assert browser.dialogs and browser.dialogs[-1][0] == "prompt"
    m = browser.eval("nodeflame.matched()")
    want = p.focus(pattern).total
    assert m["samples"] == want and m["total"] == p.total
    assert browser.eval("document.getElementById('matched').textContent") == f"Matched: {100 * want / p.total:.2f}%"
    fr = browser.eval(JS_FRAMES)
    rx = re.compile(pattern)
    for i, f in enumerate(fr):
        hit = i > 0 and rx.search(label_of(f["title"])) is not None
        assert ("match" in f["cls"].split()) == hit, f
        assert (f["fill"] == "rgb(230, 0, 230)") == hit, f
    assert browser.eval("document.getElementById('search').textContent") == "Reset Search"


@pytest.mark.browser
@needs_chromium
def test_browser_search_button_zoom_and_reset_search(browser, tmp_path):
    p = recursive_profile()
    open_svg(browser, tmp_path, p, minwidth=0)
    before = browser.eval(JS_FRAMES)
    browser.prompt_reply = "foo"
    try:
        browser.click(*element_centre(browser, "search"))
        browser.wait_for("nodeflame.matched() !== null", 5)
    finally:
        browser.prompt_reply = None
    assert browser.eval("nodeflame.matched().samples") == 18  # nested foo frames counted once
    # zoom into baz: the match share is also given relative to the zoomed frame
    fr = browser.eval(JS_FRAMES)
    baz = next(i for i, f in enumerate(fr) if f["title"].startswith("baz ("))
    browser.click(*centre(fr[baz]))
    browser.wait_for(f"nodeflame.zoomed() === {baz}", 5)
    assert browser.eval("document.getElementById('matched').textContent") == "Matched: 60.00% (37.50% of zoom)"
    assert browser.eval("nodeflame.matched().zoomSamples") == 3
    browser.eval("nodeflame.resetZoom()")
    # the button now resets the search
    browser.click(*element_centre(browser, "search"))
    browser.wait_for("nodeflame.matched() === null", 5)
    after = browser.eval(JS_FRAMES)
    assert [(f["fill"], f["cls"]) for f in after] == [(f["fill"], f["cls"]) for f in before]
    assert browser.eval("document.getElementById('matched').textContent") == " "
    assert browser.eval("document.getElementById('search').textContent") == "Search"
    # an invalid regex says so and breaks nothing
    browser.eval("nodeflame.search('(')")
    assert browser.eval("document.getElementById('matched').textContent").startswith("Invalid regex")
    assert browser.errors == []


@pytest.mark.browser
@needs_chromium
def test_browser_hostile_names_execute_nothing(browser, tmp_path):
    paths = [([("main", "/app/<x>.js", 1), (name, f"/app/{name}.js", 2)], 50) for name in HOSTILE]
    paths.append(([("main", "/app/<x>.js", 1), ("<script>window.__pwned=9</script>", "", 0),
                   ("leaf\"'<>&", "", 0)], 10))
    p = build(paths)
    open_svg(browser, tmp_path, p, title="<script>window.__pwned=10</script>", minwidth=0)
    fr = browser.eval(JS_FRAMES)
    # hover, zoom into (labels rebuilt as text) and search every hostile frame
    for i, f in enumerate(fr):
        if i == 0 or not f["shown"]:
            continue
        browser.mouse_move(*centre(f))
    target = next(i for i, f in enumerate(fr) if f["title"].startswith("<script>window.__pwned=9</script>"))
    browser.click(*centre(fr[target]))
    browser.wait_for(f"nodeflame.zoomed() === {target}", 5)
    z = browser.eval(JS_FRAMES)
    assert z[target]["text"].startswith("<script>window.__pwned=9</script>")
    leaf = next(f for f in z if f["title"].startswith("leaf\"'<>&"))
    assert leaf["text"].startswith("leaf\"'<>&")
    browser.eval("nodeflame.search('<script>|onerror|\\\\]\\\\]>')")
    assert browser.eval("nodeflame.matched().frames") >= 6
    assert browser.eval("document.getElementById('title').textContent") == "<script>window.__pwned=10</script>"
    assert browser.eval("typeof window.__pwned") == "undefined"
    assert browser.eval("window.__alerts.length") == 0
    assert browser.dialogs == []
    assert browser.eval("document.querySelectorAll('script').length") == 1
    assert browser.eval("document.getElementsByTagName('img').length") == 0
    assert browser.errors == []


@pytest.mark.browser
@needs_chromium
def test_browser_search_bounds_what_other_hides(browser, tmp_path):
    paths = [(["main", "hot"], 100000)] + [(["main", f"tiny{i:03d}", "foo"], 1) for i in range(300)]
    p = build(paths)
    open_svg(browser, tmp_path, p, minwidth=1)
    for pattern, lo, hi in (("foo", 0, 300), ("hot", 100000, 100300), ("main", 100300, 100300),
                            ("^other", 300, 300)):
        m = browser.eval(f"nodeflame.search({pattern!r})")
        assert (m["samples"], m["upperSamples"]) == (lo, hi), pattern
        assert m["samples"] <= p.focus(pattern).total <= m["upperSamples"] or pattern == "^other"
        text = browser.eval("document.getElementById('matched').textContent")
        assert ("up to" in text) == (hi > lo), text
    browser.eval("nodeflame.search('/HOT/i')")
    assert browser.eval("nodeflame.matched().samples") == 100000
    assert browser.errors == []


@pytest.mark.browser
@needs_chromium
def test_browser_harness_kills_chromium_and_reports_js_errors(tmp_path):
    import os
    b = Browser(400, 300)
    with b:
        pid = b.proc.pid
        b.open("data:text/html,<title>t</title><script>console.log('hi'); setTimeout(function(){throw new Error('boom')}, 0)</script>")
        b.wait_for("document.readyState === 'complete'")
        b.wait_for("new Promise(function (r) { setTimeout(function () { r(true); }, 50); })")
        assert b.eval("document.title") == "t" and b.eval("1 + 2") == 3
        assert ("log", "hi") in b.console and any("boom" in e for e in b.errors)
        with pytest.raises(Exception, match="nope"):
            b.eval("(function(){ throw new Error('nope') })()")
    assert b.proc.poll() is not None
    assert [q for q in _group(pid) if _alive(q)] == []  # the whole process group is gone
    assert not os.path.exists(b.tmpdir)


def _group(pgid):
    import os
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    out.append((int(d), fields[0]))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(entry):
    return entry[1] != "Z"  # zombies reparented to a non-reaping init are dead already
