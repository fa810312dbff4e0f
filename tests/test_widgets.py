"""The notebook explorer: widget state asserted directly, and its HTML drawn in headless Chromium.

Profiles are generated with known shapes (who calls whom, how often, when, on
which thread), so every number the widget shows can be checked exactly.
"""
import base64
import gzip
import json
import os
import pathlib
import re
import sys
import time
import zlib

import numpy as np
import pytest

pytest.importorskip("plotly", reason="plotly (nodeflame[notebook]) is not installed")
pytest.importorskip("ipywidgets", reason="ipywidgets (nodeflame[notebook]) is not installed")
pytest.importorskip("anywidget", reason="anywidget (nodeflame[notebook], for plotly's FigureWidget) is not installed")

import nodeflame as nf  # noqa: E402
from nodeflame.frames.build import FrameTable, build_profile  # noqa: E402
from nodeflame.frames.kinds import KINDS  # noqa: E402
from nodeflame.widgets import model as M  # noqa: E402
from nodeflame.widgets.explorer import Explorer  # noqa: E402

APP = "/srv/app/server.js"
DEP = "/srv/app/node_modules/fastjson/index.js"

# (path root-first as (name, file, line), weight, thread, time window in ms)
SHAPE = [
    ([("main", APP, 1), ("handle", APP, 10), ("parse", DEP, 5)], 300, "main", (0, 500)),
    ([("main", APP, 1), ("handle", APP, 10), ("render", APP, 20)], 200, "main", (500, 1000)),
    ([("main", APP, 1), ("fib", APP, 30), ("fib", APP, 30), ("fib", APP, 30)], 100, "main", (0, 1000)),
    ([("main", APP, 1), ("(garbage collector)", "", 0)], 100, "main", (0, 1000)),
    ([("worker", APP, 40), ("crunch", APP, 50)], 300, "worker-1", (0, 1000)),
]
T0 = 5_000_000_000


def make_profile(shape=SHAPE, seed=0):
    """One sample row per unit of weight, spread uniformly over its time window."""
    rng = np.random.default_rng(seed)
    ft = FrameTable()
    offsets, flat, times, threads = [0], [], [], []
    for path, w, th, (a, b) in shape:
        ids = [ft.add(n, f, ln) for n, f, ln in path]
        for t in np.sort(rng.uniform(a, b, w)):
            flat.extend(ids)
            offsets.append(len(flat))
            times.append(T0 + int(t * 1e6))
            threads.append(th)
    order = np.argsort(times, kind="stable")
    offs = np.asarray(offsets)
    paths = [flat[offs[i]:offs[i + 1]] for i in order]
    offsets2 = np.concatenate([[0], np.cumsum([len(x) for x in paths])])
    p = build_profile(ft, offsets2, np.concatenate(paths), times=np.asarray(times)[order],
                      threads=np.asarray(threads, object)[order], meta={"timed": True, "unit": "samples"})
    return p.validate()


@pytest.fixture(scope="module")
def prof():
    return make_profile()


def ex(p, **kw):
    kw.setdefault("defer_panes", False)
    return Explorer(p, **kw)


def kc(name, kind):
    """The colour the SVG writer gives a function of this name and kind (one shared palette)."""
    from nodeflame.writers.svg import kind_colors
    return kind_colors([name], [kind])[0]


def rgb(colour):
    """(r, g, b) of '#rrggbb' or 'rgb(r,g,b)'."""
    if colour.startswith("#"):
        return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return tuple(map(int, re.findall(r"\d+", colour)))


def labels_of(e):
    """Node label -> list of (value, colour) in the drawn icicle (root 'all' included)."""
    tr = e.widget.data[0]
    out = {}
    for lab, v, c in zip(tr.labels, tr.values, tr.marker.colors):
        out.setdefault(lab, []).append((v, c))
    return out


# ------------------------------------------------------------------ traces

def test_icicle_trace_is_the_profile(prof):
    e = ex(prof)
    tr = e.widget.data[0]
    assert tr.type == "icicle" and tr.branchvalues == "total" and tr.level == "r"
    assert tr.tiling.flip == "y" and tr.pathbar.side == "bottom"          # flame: root at the bottom
    lay = e.layout_table
    assert len(tr.ids) == len(lay) + 1 == len(tr.parents) == len(tr.values) == len(tr.marker.colors)
    assert tr.values[0] == prof.total == 1000
    nodes = labels_of(e)
    assert nodes["main"][0][0] == 700 and nodes["worker"][0][0] == 300
    assert nodes["handle"][0][0] == 500 and nodes["parse"][0][0] == 300
    assert sorted(v for v, _c in nodes["fib"]) == [100, 100, 100]    # three levels of recursion
    # every child fits inside its parent
    val = dict(zip(tr.ids, tr.values))
    kids = {}
    for i, par in zip(tr.ids, tr.parents):
        if par:
            kids[par] = kids.get(par, 0) + val[i]
    assert all(s <= val[par] for par, s in kids.items())
    # hover carries file:line, self and total
    i = list(tr.labels).index("parse")
    assert tr.text[i] == f"{DEP}:5" and tr.customdata[i].startswith("300 (30.00 %)")
    assert "%{value" in tr.hovertemplate and "self" in tr.hovertemplate


def test_timeline_strip_is_in_the_same_figure(prof):
    e = ex(prof)
    assert len(e.widget.data) == 1 + len(KINDS)
    bars = {t.name: t for t in e.widget.data[1:]}
    assert bars["js"].showlegend and bars["deps"].showlegend and bars["gc"].showlegend
    assert not bars["kernel"].showlegend and len(bars["kernel"].y) == 0
    # leaves by kind over time, summing to all samples
    assert sum(sum(t.y) for t in e.widget.data[1:]) == 1000
    assert sum(bars["deps"].y) == 300 and sum(bars["gc"].y) == 100
    # parse ran in the first half only
    x = np.asarray(bars["deps"].x)
    y = np.asarray(bars["deps"].y)
    assert y[x > 510].sum() == 0 and y[x <= 510].sum() == 300 and y[x < 250].sum() > 100


def test_icicle_orientation_and_untimed_profiles(prof):
    e = ex(prof, orientation="icicle", timeline=False)
    assert len(e.widget.data) == 1
    assert e.widget.data[0].tiling.flip in ("", None) and e.widget.data[0].pathbar.side == "top"
    e.set_view(orientation="flame")
    assert e.widget.data[0].tiling.flip == "y"
    folded = nf.read(b"a;b 3\na;c 1\n", format="folded")
    e2 = ex(folded)
    assert len(e2.widget.data) == 1 and e2.timeline_chart is None and e2.range is None


# ------------------------------------------------------------ large profiles

def wide_profile(n_leaves=3000, seed=1):
    """A root with many narrow callees and one heavy one."""
    ft = FrameTable()
    root = ft.add("root", APP, 1)
    heavy = ft.add("heavy", APP, 2)
    leaves = [ft.add(f"leaf{i}", APP, 100 + i) for i in range(n_leaves)]
    offsets, flat, w = [0], [], []
    for lf in leaves:
        flat += [root, lf]
        offsets.append(len(flat))
        w.append(1)
    flat += [root, heavy]
    offsets.append(len(flat))
    w.append(3 * n_leaves)
    return build_profile(ft, np.asarray(offsets), np.asarray(flat), weights=np.asarray(w)).validate()


def n_nodes(p):
    return len(p.tree())


def test_narrow_nodes_become_other_nodes_not_dropped():
    p = wide_profile()
    e = ex(p, max_nodes=200)
    lay = e.layout_table
    assert len(lay) <= 200
    other = lay[lay["other"] > 0]
    assert len(other) == 1 and other["total"].iloc[0] == 3000 and other["other"].iloc[0] == 3000
    tr = e.widget.data[0]
    i = list(tr.labels).index("other (3000)")
    assert tr.values[i] == 3000 and tr.marker.colors[i] == M.OTHER_COLOR
    assert "narrow frames merged" in tr.text[i]
    # a finer minimum width draws them
    e2 = ex(p, max_nodes=10_000, minwidth=1e-5)
    assert "leaf7" in set(e2.widget.data[0].labels) and (e2.layout_table["other"] == 0).all()
    assert len(e2.widget.data[0].ids) == n_nodes(p) + 1
    assert "'other'" in e.status.value and "'other'" not in e2.status.value


# ---------------------------------------------------------------- controls

def test_search_colours_matches_and_shows_the_matched_share(prof):
    e = ex(prof)
    before = list(e.widget.data[0].marker.colors)
    figs = e.chart.sent_figures
    e.search_box.value = "^(parse|render) "
    assert e.pattern == "^(parse|render) " and e.match_share == pytest.approx(0.5)
    assert "matched 50.00 %" in e.status.value
    nodes = labels_of(e)
    assert nodes["parse"][0][1] == M.MATCH_COLOR and nodes["render"][0][1] == M.MATCH_COLOR
    assert nodes["handle"][0][1] != M.MATCH_COLOR and nodes["crunch"][0][1] != M.MATCH_COLOR
    assert e.chart.sent_figures == figs          # a restyle, not a new figure
    assert "search='^(parse|render) '" in e.code
    e.search_box.value = ""
    assert list(e.widget.data[0].marker.colors) == before
    e.search_box.value = "("                     # a bad regex is reported, nothing changes
    assert "error" in e.status.value.lower() and e.pattern == ""


def test_transform_buttons_apply_model_transforms(prof):
    e = ex(prof)
    e.search_box.value = "^parse "
    e.b_focus.click()
    assert e.transforms == ["focus=^parse "] and e.profile.total == 300
    e.b_undo.click()
    e.search_box.value = "^fib "
    e.b_ignore.click()
    assert e.transforms == ["ignore=^fib "] and e.profile.total == 900
    e.search_box.value = "^handle "
    e.b_hide.click()
    assert e.transforms == ["ignore=^fib ", "hide=^handle "]
    assert "handle" not in set(e.widget.data[0].labels)
    assert labels_of(e)["parse"][0][0] == 300                          # moved up under main
    # the view is printed as code, and replaying it gives the same profile
    assert e.code == "p.apply(['ignore=^fib ', 'hide=^handle ']).flame(search='^handle ')"
    q = prof.apply(e.transforms)
    assert q.total == e.profile.total and q.text() == e.profile.text()
    # breadcrumbs: "all" + one per transform; the first leads back out
    assert [b.description for b in e.crumbs.children] == ["all", "ignore ^fib ", "hide ^handle "]
    e.crumbs.children[1].click()
    assert e.transforms == ["ignore=^fib "]
    e.b_reset.click()
    assert e.transforms == [] and e.profile.total == 1000


def test_merge_recursion_invert_colour_thread_minwidth(prof):
    e = ex(prof)
    e.merge.value = True
    assert e.transforms == ["merge-recursion"]
    assert [v for v, _c in labels_of(e)["fib"]] == [100]
    e.merge.value = False
    assert e.transforms == []

    e.invert.value = True                        # bottom-up: leaves at the root
    lay = e.layout_table
    roots = set(prof.func_labels()[lay.loc[lay["depth"] == 0, "func"].to_numpy()])
    assert {f"parse {DEP}:5", f"crunch {APP}:50"} <= roots
    assert e.code == "p.flame(inverted=True)"
    e.invert.value = False

    e.color.value = "package"
    nodes = labels_of(e)
    # the colour of its package's name (fastjson), not of its kind
    assert nodes["parse"][0][1] == M.PALETTE[zlib.crc32(b"fastjson") % len(M.PALETTE)]
    assert nodes["handle"][0][1] == kc("handle", "js")              # no package: kind colour
    e.color.value = "file"
    assert labels_of(e)["parse"][0][1] != labels_of(e)["handle"][0][1]
    e.color.value = "kind"
    assert labels_of(e)["parse"][0][1] == kc("parse", "deps")
    assert labels_of(e)["(garbage collector)"][0][1] == kc("(garbage collector)", "gc")

    assert not e.thread.disabled
    e.thread.value = "worker-1"
    assert e.transforms == ["thread=^worker\\-1$"] and e.profile.total == 300
    assert "main" not in set(e.widget.data[0].labels)
    e.thread.value = ""
    assert e.transforms == []

    e.minwidth.value = 1e-2
    assert e.view["minwidth"] == 1e-2 and "minwidth=0.01" in e.code


def test_a_legend_for_every_colouring(prof):
    e = ex(prof)
    assert "js" in e.legend.value and M.KIND_COLORS["gc"] in e.legend.value and "kernel" not in e.legend.value
    e.color.value = "package"
    assert "fastjson" in e.legend.value
    e.color.value = "file"
    assert "server.js" in e.legend.value and "index.js" in e.legend.value
    e.search("^handle ")
    assert "search match" in e.legend.value
    d = nf.diff(prof, prof).flame(defer_panes=False)
    assert "slower" in d.legend.value and "faster" in d.legend.value and "within noise" in d.legend.value


def test_dropdowns_never_hold_none(prof):
    """ipywidgets draws a None value as a blank dropdown."""
    e = ex(prof)
    assert e.thread.value == "" and e.thread.label == "all threads"
    assert e.minwidth.label == "auto" and e.minwidth.value is not None
    e.minwidth.value = 1e-3
    e.minwidth.value = dict(e.minwidth.options)["auto"]
    assert e.view["minwidth"] is None and e.code == "p.flame()"
    e.set_thread("worker-1")
    e.set_thread(None)
    assert e.thread.value == "" and e.thread.label == "all threads"
    assert all(v is not None for _l, v in e.thread.options + e.minwidth.options)


def test_plotly_ids_name_paths_and_survive_relayouts(prof):
    """A zoom level that plotly keeps in the browser after a re-layout names a node id; that id
    must still name the same frame (or nothing), never another one."""
    e = ex(prof)
    tr = e.widget.data[0]
    before = dict(zip(tr.ids, tr.labels))
    assert len(set(tr.ids)) == len(tr.ids)
    e.apply(f"focus=^handle\\ {re.escape(APP)}:10$")
    after = dict(zip(e.widget.data[0].ids, e.widget.data[0].labels))
    shared = set(before) & set(after)
    assert len(shared) >= 4                                   # main, handle, parse, render keep theirs
    assert all(before[i] == after[i] for i in shared)
    e.set_view(minwidth=0.25)                                 # narrow frames merge into "other"
    again = dict(zip(e.widget.data[0].ids, e.widget.data[0].labels))
    assert all(before.get(i, lab) == lab for i, lab in again.items() if not lab.startswith("other"))
    # a click by path id focuses that very frame
    e.set_view(minwidth=None)
    e.reset()
    i = list(e.widget.data[0].labels).index("render")
    e.click(e.widget.data[0].ids[i])
    assert e.transforms == [f"focus=^render\\ {re.escape(APP)}:20$"]


def test_every_redraw_sends_the_zoom_level_back_to_the_root(prof):
    """plotly's click-to-zoom changes the level in the browser only; a restyle to the value the
    kernel already holds is not sent, so the explorer alternates 'r' and None (both the root)."""
    e = ex(prof)
    sent = []
    orig = e.widget._send_restyle_msg
    orig_update = e.widget._send_update_msg

    def spy(restyle_data, trace_indexes=None, source_view_id=None):
        sent.append(dict(restyle_data))
        return orig(restyle_data, trace_indexes=trace_indexes, source_view_id=source_view_id)

    def spy_update(restyle_data, relayout_data, trace_indexes=None, source_view_id=None):   # Plotly.update
        sent.append(dict(restyle_data))
        return orig_update(restyle_data, relayout_data, trace_indexes=trace_indexes, source_view_id=source_view_id)
    e.widget._send_restyle_msg = spy
    e.widget._send_update_msg = spy_update
    for spec in ("ignore=^fib ", "hide=^handle ", "ignore=gc"):
        n = len(sent)
        e.apply(spec)
        assert any("level" in m for m in sent[n:]), sent[n:]
    assert e.widget.data[0].level in ("r", None)


def test_every_update_is_one_figure_message(prof):
    """The icicle, the timeline strip (in the same figure) and the layout with the view number go
    to the browser in one plotly message per update: each message is a whole redraw of the figure
    there (plotly_afterplot), so a flame sent apart from its layout or its timeline drew twice or
    three times."""
    e = ex(prof)
    w = e.widget
    sent = []
    orig = w._send

    def spy(msg, buffers=None):       # the widget's comm messages: state updates and custom ones
        state = msg.get("state") or {}
        sent.extend((k, v) for k, v in state.items() if k.startswith("_py2js_") and v is not None)
        return orig(msg, buffers)
    w._send = spy
    bars_of = lambda: [list(tr.y) for tr in w.data[1:]]        # noqa: E731
    node = lambda label: w.data[0].ids[list(w.data[0].labels).index(label)]   # noqa: E731
    ops = [("ignore", lambda: e.apply("ignore=^fib "), True), ("slice", lambda: e.set_slice_ms(100, 400), False),
           ("thread", lambda: e.set_thread("worker-1"), True), ("undo", e.undo, True),
           ("click", lambda: e.click(node("handle")), True), ("invert", lambda: e.set_view(inverted=True), False),
           ("min width", lambda: e.set_view(minwidth=0.01), False), ("reset", e.reset, True),
           ("hide", lambda: e.hide("^handle "), False)]
    for name, op, timeline_changes in ops:
        del sent[:]
        bars = bars_of()
        op()
        assert [k for k, _v in sent] == ["_py2js_update"], (name, [k for k, _v in sent])
        msg = sent[0][1]
        assert msg["layout_data"]["meta"]["nodeflame"]["view"] == e._view_seq, name    # what clicks name
        assert 0 in msg["style_traces"] and "level" in msg["style_data"], name   # (back to the root)
        assert (bars_of() != bars) == timeline_changes, name
        if timeline_changes:     # the strip's bars went with the flame
            assert msg["style_traces"] == list(range(len(w.data))), name
            y = msg["style_data"]["y"]
            assert y[0] == "_undefined_" and [list(v) for v in y[1:]] == bars_of(), name   # (serialized)
    e.set_slice_ms(200, 300)
    assert e.widget.layout.shapes[0].x0 == 200 and sent[-1][1]["layout_data"]["shapes"][0]["x0"] == 200
    del sent[:]
    e.search("^parse ")                        # a restyle: one message too
    assert [k for k, _v in sent] == ["_py2js_restyle"]


def test_breadcrumbs_in_milliseconds_and_unescaped(prof):
    e = ex(prof)
    e.set_slice_ms(100, 400)
    e.apply(f"focus=^render\\ {re.escape(APP)}:20$")
    assert [b.description for b in e.crumbs.children] == ["all", "slice 100–400 ms", f"focus render {APP}:20"]
    e.apply("ignore=^fi(b|x) ")
    assert e.crumbs.children[-1].description == "ignore ^fi(b|x) "     # a real regex stays a regex


def browser_click(e, label, view=None):
    """What the loader sends when a frame is clicked: a custom message naming its node and chart."""
    tr = e.widget.data[0]
    i = list(tr.labels).index(label)
    view = e.widget.layout.meta["nodeflame"]["view"] if view is None else view
    e.widget._handle_custom_msg({"event": "nodeflame-click", "id": tr.ids[i], "label": label, "view": view}, [])


def test_click_focuses_with_breadcrumbs_and_fills_the_details_pane(prof):
    e = ex(prof)
    browser_click(e, "render")
    assert e.transforms == [f"focus=^render\\ {re.escape(APP)}:20$"]
    assert e.profile.total == 200
    assert str(e.profile.func_labels()[e.selected]) == f"render {APP}:20"
    d = e.details.value
    assert "render" in d and f"{APP}:20" in d and "self 200 (100.00 %)" in d
    assert "callers" in d and "handle" in d
    e.crumbs.children[0].click()                  # back out
    assert e.transforms == [] and e.profile.total == 1000
    # with click-to-focus off a click only selects
    e.click_focus.value = False
    browser_click(e, "handle")
    assert e.transforms == [] and "self 0 (0.00 %) · total 500 (50.00 %)" in e.details.value
    # the details' own buttons are transforms too
    e.d_ignore.click()
    assert e.transforms == [f"ignore=^handle\\ {re.escape(APP)}:10$"] and e.profile.total == 500


def test_details_callers_and_callees_tables(prof):
    func = int(np.flatnonzero(prof.funcs["name"].astype(str) == "handle")[0])
    s, callers, callees = M.func_details(prof, func)
    assert (s["self"], s["total"], s["where"]) == (0, 500, f"{APP}:10")
    assert list(callers["function"]) == [f"main {APP}:1"] and list(callers["weight"]) == [500]
    assert list(callees["function"]) == [f"parse {DEP}:5", f"render {APP}:20"]
    assert list(callees["weight"]) == [300, 200] and callees["pct"].tolist() == [30.0, 20.0]


def test_timeline_selection_redraws_that_range(prof):
    from plotly.callbacks import BoxSelector, Points
    e = ex(prof)
    span = e.range.max
    assert 990 < span <= 1000
    bar = e.widget.data[1]
    e.chart._on_select(bar, Points(point_inds=[], trace_name="", trace_index=1),
                       BoxSelector(xrange=[0, 500], yrange=[0, 1]))
    assert len(e.transforms) == 1 and e.transforms[0].startswith("slice=")
    nodes = labels_of(e)
    assert "render" not in nodes and nodes["parse"][0][0] == 300       # render ran after 500 ms
    assert e.widget.data[0].values[0] == e.profile.total
    assert e.widget.layout.shapes and e.widget.layout.shapes[0].x1 == 500
    # the same selection reported by every bar trace applies once
    e.chart._on_select(e.widget.data[2], Points(point_inds=[], trace_name="", trace_index=2),
                       BoxSelector(xrange=[0, 500], yrange=[0, 1]))
    assert len(e.transforms) == 1
    # the range slider is the same control
    assert e.range.value == pytest.approx((0, 500), abs=1e-6)
    e.range.value = (e.range.min, e.range.max)
    assert e.transforms == [] and not e.widget.layout.shapes
    e.set_slice_ms(500, None)
    assert "parse" not in labels_of(e) and labels_of(e)["render"][0][0] == 200


def test_outside_a_kernel_the_output_is_static_html_and_a_text_table(prof):
    e = ex(prof)
    b = e._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in b
    txt = b["text/plain"]
    assert txt.startswith("1,000 samples") and "crunch" in txt and "parse" in txt
    html = b["text/html"]
    # offline: the project's SVG flame graph as a data URI, no script, no CDN, labelled frames
    assert "<script" not in html and "cdn" not in html.lower() and "http" not in html.replace(
        "http://www.w3.org", "")
    m = re.search(r"src='data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)'", html)
    svg = base64.b64decode(m.group(1)).decode()
    assert ">crunch /srv" in svg and ">handle /srv" in svg and "crunch" in html
    assert len(html) < 1_000_000
    # the diff explorer's fallback is coloured by change
    d = nf.diff(make_profile(STEADY), make_profile([(p, w * 3 if p[-1][0] == "render" else w, th, tw)
                                                      for p, w, th, tw in STEADY], seed=2))
    dh = d.flame(defer_panes=False)._repr_mimebundle_()["text/html"]
    assert "data:image/svg+xml" in dh and "significant" in dh


STEADY = [(p, w, th, (0, 1000)) for p, w, th, _tw in SHAPE]   # no phases: every stack all along


def test_diff_explorer_colours_red_blue_grey():
    before = make_profile(STEADY)
    changed = [(p, w * 3 if p[-1][0] == "render" else w // 3 if p[-1][0] == "parse" else w, th, tw)
               for p, w, th, tw in STEADY]
    after = make_profile(changed, seed=2)
    d = nf.diff(before, after)
    e = d.flame(defer_panes=False)
    nodes = labels_of(e)
    r, g, b = rgb(nodes["render"][0][1])
    assert r > g and r > b                                     # slower: red
    r, g, b = rgb(nodes["parse"][0][1])
    assert b > r and b > g                                     # faster: blue
    # crunch's share fell (render grew) but its own work did not change: grey, not blue
    assert nodes["crunch"][0][1] == M.DIFF_GREY
    assert nodes["main"][0][1] == M.DIFF_GREY                  # no self time in either: unchanged
    # the table beside it reads: significant, status, function
    assert list(e.diff_table().columns[:3]) == ["significant", "status", "function"]
    same = nf.diff(before, before).flame(defer_panes=False)
    assert {c for lab, vs in labels_of(same).items() if lab != "all" for _v, c in vs} == {M.DIFF_GREY}
    assert "change +" in " ".join(e.widget.data[0].customdata)
    assert "change -0.00" not in " ".join(e.widget.data[0].customdata)


def test_diff_flame_draws_work_that_vanished():
    before = make_profile(STEADY)
    gone = [x for x in STEADY if x[0][-1][0] != "render"]     # render's stack vanished after
    d = nf.diff(before, make_profile(gone, seed=3))
    e = d.flame(defer_panes=False)
    nodes = labels_of(e)
    assert "render" in nodes                                   # drawn, from the before shape
    r, g, b = rgb(nodes["render"][0][1])
    assert b > r                                               # gone: blue
    lay = e.layout_table
    names = e.profile.funcs["name"].astype(str).to_numpy()
    w = lay.loc[names[lay["func"].clip(lower=0)] == "render", "total"].sum()
    assert abs(w - 200 * d.scale) <= 2                         # its before width, normalised
    assert d.table().set_index("name").loc["render", "status"] == "gone"
    func = int(np.flatnonzero(e.profile.funcs["name"].astype(str) == "render")[0])
    e.select(func=func)
    assert "not in the after profile" in e.details.value and "gone" in e.details.value
    e.select(func=int(np.flatnonzero(e.profile.funcs["name"].astype(str) == "parse")[0]))
    assert "after profile:" in e.details.value and "self 300 " in e.details.value


def _deep_profile(depth=45):
    ft = FrameTable()
    ids = [ft.add(f"frame{i}", APP, i + 1) for i in range(depth)]
    paths = [ids] * 50 + [ids[:30] + [ft.add("side", APP, 99)]] * 50
    offsets = np.cumsum([0] + [len(x) for x in paths])
    return build_profile(ft, offsets, np.concatenate(paths), meta={"unit": "samples"}).validate()


def test_deep_stacks_grow_the_chart_so_rows_keep_readable_labels():
    p = _deep_profile(45)
    e = Explorer(p, defer_panes=False, timeline=False)
    lay = e.figure["layout"]
    rows = int(e.layout_table["depth"].max()) + 2          # + the root row
    usable = lay["height"] - lay["margin"]["t"] - lay["margin"]["b"] - M.PATHBAR_PX
    assert usable / rows >= 18, (lay["height"], rows)
    assert lay["height"] > 560 and e.chart_box.layout.height == f"{M.SCROLL_PX}px"   # scrolls
    # shallow profiles keep the default height and do not scroll
    small = Explorer(make_profile(), defer_panes=False)
    assert small.figure["layout"]["height"] == 560 + 130 and small.chart_box.layout.height is None
    # focusing on a shallow part shrinks it again
    e.apply("focus=^side ")
    assert e.figure["layout"]["height"] < lay["height"] or e.figure["layout"]["height"] == 560


# ---------------------------------------------------------------- browser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.browser
def test_static_chart_is_drawn_in_headless_chromium(prof, tmp_path):
    browser = pytest.importorskip("browser", reason="tests/browser.py (the headless-Chromium harness) is missing")
    if browser.chromium_path() is None:
        pytest.skip("chromium is not installed (/usr/bin/chromium)")
    e = ex(prof)
    page = tmp_path / "flame.html"
    e.to_html(page, include_plotlyjs=True)       # plotly.js inlined: no network needed
    assert not re.search(r"<script[^>]+src=", page.read_text())
    with browser.Browser(width=1100, height=900) as b:
        b.open(page)
        n = b.wait_for("document.querySelectorAll('g.slice path').length", timeout=20)
        assert n >= len(e.layout_table) // 2
        labels = b.eval("Array.from(document.querySelectorAll('g.slice text')).map(t => t.textContent)")
        assert any("handle" in t for t in labels)
        png = b.screenshot(tmp_path / "shot.png")
        data = base64.b64encode(png).decode()
        painted, pixels, colours = b.eval(f"""(async () => {{
            const img = new Image(); img.src = "data:image/png;base64,{data}"; await img.decode();
            const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            let n = 0; const seen = new Set();
            for (let i = 0; i < d.length; i += 4) {{
                if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) n++;
                if (i % 64 === 0) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            }}
            return [n, c.width * c.height, seen.size];
        }})()""")
        assert painted > 0.1 * pixels and colours > 5, (painted, pixels, colours)
        assert not b.errors


def test_aggregated_drawing_of_long_timed_profiles_is_exact(prof):
    """Long timed profiles are drawn from samples summed per (stack, thread): same trees, same timeline."""
    exact, agg = ex(prof, aggregate=False), ex(prof, aggregate=True)
    assert len(agg.profile.samples) == len(SHAPE) < len(exact.profile.samples) == 1000
    for specs in ([], ["hide=^handle "], ["focus=^fib ", "merge-recursion"], ["thread=^main$", "ignore=gc"],
                  ["hide=^(parse|render) "]):
        exact.set_transforms(specs)
        agg.set_transforms(specs)
        assert agg.profile.text() == exact.profile.text() == prof.apply(specs).text()
        assert list(agg.widget.data[0].values) == list(exact.widget.data[0].values)
        for a, b in zip(agg.widget.data[1:], exact.widget.data[1:]):
            assert (a.name, list(a.y), a.showlegend) == (b.name, list(b.y), b.showlegend)
    # a slice is applied to the full profile first
    exact.set_slice_ms(250, 750)
    agg.set_slice_ms(250, 750)
    assert agg.transforms == exact.transforms
    assert agg.profile.text() == exact.profile.text() == prof.apply(exact.transforms).text()


@pytest.mark.browser
def test_live_figure_widget_front_end_draws_and_a_click_comes_back(prof, tmp_path):
    """plotly's own FigureWidget front end, loaded by nodeflame's loader from the kernel's one
    library model (gzip, decompressed in the browser), renders the explorer's widget state in
    Chromium: a restyle sent before the library arrived is replayed, the first draw takes the
    width of the output it is attached to (not plotly's 700 px), and a real click on a frame,
    fed back to the kernel side, focuses on it."""
    import http.server
    import json
    import threading
    browser = pytest.importorskip("browser", reason="tests/browser.py (the headless-Chromium harness) is missing")
    if browser.chromium_path() is None:
        pytest.skip("chromium is not installed (/usr/bin/chromium)")
    from ipywidgets.widgets.widget import _remove_buffers
    from nodeflame.widgets import frontend
    e = ex(prof, timeline=False)
    state, paths, _bufs = _remove_buffers(e.widget.get_state())
    assert not paths and len(state["_widget_data"]) == 1       # the figure travels in the comm_open state
    esm = state.pop("_esm")
    assert len(esm) < 20_000                                    # a loader, not plotly.js (5 MB)
    lib = frontend.library()
    assert state["_nf_library"] == "IPY_MODEL_" + lib.model_id and 1_000_000 < len(lib.code) < 2_000_000
    # the library's code is no part of its state (saved widget state stays small): a custom message
    assert "code" not in lib.get_state()
    sent = []
    lib.send = lambda content, buffers=None: sent.append((content, buffers))
    lib._handle_custom_msg({"nodeflame": "code?"}, [])
    assert sent[0][0]["nodeflame"] == "code" and bytes(sent[0][1][0]) == lib.code
    del lib.send
    assert frontend.library() is lib                            # one per kernel
    labels = list(e.widget.data[0].labels)
    early = {"restyle_data": {"labels": [["everything"] + labels[1:]]}, "restyle_traces": [0]}
    (tmp_path / "widget.js").write_text(esm)
    (tmp_path / "state.json").write_text(json.dumps(state))
    (tmp_path / "early.json").write_text(json.dumps(early))
    (tmp_path / "library.gz").write_bytes(lib.code)
    (tmp_path / "index.html").write_text("""<!DOCTYPE html><html><body style="margin:0">
<div id="box" style="width:1000px"></div>
<script type="module">
const state = await (await fetch("state.json")).json();
const early = await (await fetch("early.json")).json();
const lib = new Uint8Array(await (await fetch("library.gz")).arrayBuffer());
const handlers = {};
const fire = (k) => (handlers["change:" + k] || []).forEach((cb) => cb());
window.__saved = [];
window.__sent = [];
const model = {
  get: (k) => state[k], set: (k, v) => { state[k] = v; }, off: () => {},
  send: (content) => { window.__sent.push(content); },
  on: (ev, cb) => { (handlers[ev] = handlers[ev] || []).push(cb); },
  save_changes: () => { if (state._js2py_pointsCallback) window.__saved.push(state._js2py_pointsCallback); },
  widget_manager: { get_model: async (id) => {
    if ("IPY_MODEL_" + id !== state._nf_library) throw new Error("no such model " + id);
    await new Promise((r) => setTimeout(r, 800));     // a library slower than the first message
    // its code is not in its state: the kernel sends it as a custom message when asked
    const listeners = [];
    return { get: (k) => null, on: (ev, cb) => { if (ev === "msg:custom") listeners.push(cb); },
             off: () => {},
             send: (content) => { window.__asked = content; setTimeout(() => listeners.forEach(
               (cb) => cb({ nodeflame: "code" }, [new DataView(lib.buffer)])), 50); } };
  } },
};
const mod = await import("./widget.js");
const widget = typeof mod.default === "function" ? await mod.default() : mod.default;
const t0 = performance.now();
await widget.initialize({ model });
window.__init_ms = performance.now() - t0;
// a message from the kernel before the library is there (what anywidget delivers once ready)
state._py2js_restyle = early; fire("_py2js_restyle");
state._py2js_restyle = null; fire("_py2js_restyle");
// rendered into an element the output area attaches only afterwards
const el = document.createElement("div");
const rendered = widget.render({ model, el });
setTimeout(() => document.getElementById("box").appendChild(el), 300);
await rendered;
window.__ready = true;
</script></body></html>""")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        with browser.Browser(width=1100, height=800) as b:
            b.open(f"http://127.0.0.1:{srv.server_address[1]}/index.html")
            b.wait_for("window.__ready === true", timeout=60)
            assert b.eval("window.__init_ms") < 200                   # anywidget's 2 s are never at stake
            assert b.eval("window.__asked") == {"nodeflame": "code?"}
            n = b.wait_for("document.querySelectorAll('g.slice path').length", timeout=20)
            assert n == len(e.layout_table) + 1
            assert b.eval("globalThis.__nodeflame_replayed") == 1
            texts = b.eval("Array.from(document.querySelectorAll('g.slice text')).map(t => t.textContent)")
            assert any("everything" in t for t in texts), texts[:5]  # the early restyle was applied
            width = b.eval("Number(document.querySelector('#box .main-svg').getAttribute('width'))")
            assert width == 1000, width
            box = b.eval("""(() => { const t = Array.from(document.querySelectorAll('g.slice'))
                .find(g => (g.textContent || '').trim() === 'render');
                const r = t.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()""")
            b.click(*box)
            msg = b.wait_for("window.__sent.find(m => m.event === 'nodeflame-click')", timeout=10)
            # plotly's own click (zoom in the browser, and a state update the widget manager may
            # merge away) is stopped: the kernel is told by the message alone
            assert not b.eval("window.__saved.find(p => p.event_type === 'plotly_click')")
            # the output gets narrower: the chart follows
            b.eval("document.getElementById('box').style.width = '800px'")
            b.wait_for("Number(document.querySelector('#box .main-svg').getAttribute('width')) === 800",
                       timeout=10)
            assert not b.errors, b.errors
    finally:
        srv.shutdown()
        srv.server_close()
    assert msg["label"] == "render" and msg["view"] == e.widget.layout.meta["nodeflame"]["view"]
    assert e.widget.data[0].labels[list(e.widget.data[0].ids).index(msg["id"])] == "render"
    e.widget._handle_custom_msg(msg, [])          # what the comm delivers to the kernel
    assert e.transforms == [f"focus=^render\\ {re.escape(APP)}:20$"] and e.profile.total == 200


@pytest.mark.browser
def test_deep_stacks_show_labels_in_chromium(tmp_path):
    """46 levels (16 of native scaffolding, as a walker capture has): at the old fixed 560 px
    plotly labelled 0 of the frames wider than 40 px; grown to 20 px a row, most are labelled."""
    browser = pytest.importorskip("browser", reason="tests/browser.py (the headless-Chromium harness) is missing")
    if browser.chromium_path() is None:
        pytest.skip("chromium is not installed (/usr/bin/chromium)")
    rng = np.random.default_rng(1)
    ft = FrameTable()
    native = [ft.add(f"scaffold_{i}", "", 0) for i in range(16)]
    paths, w = [], []

    def grow(prefix, d):
        if d >= 29 or (d > 6 and rng.random() < 0.12):
            paths.append(prefix)
            w.append(int(rng.integers(1, 50)))
            return
        for k in range(1 if rng.random() < 0.8 else 2):
            grow(prefix + [ft.add(f"fn_{d}_{k}_{len(paths) % 7}", APP, d * 10 + k + 1)], d + 1)
    for r in range(4):
        grow(native + [ft.add(f"entry{r}", APP, 1000 + r)], 0)
    offsets = np.cumsum([0] + [len(x) for x in paths])
    p = build_profile(ft, offsets, np.concatenate(paths), weights=np.array(w)).validate()
    e = Explorer(p, defer_panes=False, timeline=False)
    page = tmp_path / "deep.html"
    e.to_html(page, include_plotlyjs=True)
    with browser.Browser(width=1100, height=900) as b:
        b.open(page)
        b.wait_for("document.querySelectorAll('g.slice path').length", timeout=30)
        wide, labelled = b.eval("""(() => { let wide = 0, lab = 0;
          for (const g of document.querySelectorAll('g.slice')) {
            const t = g.querySelector('text'), r = g.querySelector('path').getBBox();
            if (r.width <= 40) continue;
            wide++;
            if (t && t.textContent.trim() !== '' && t.getBBox().width > 0) lab++; }
          return [wide, lab]; })()""")
    assert wide > 100 and labelled >= 0.75 * wide, (wide, labelled)   # measured: 169 of 201


# ------------------------------------------------------- the state, without widgets

def test_state_runs_without_ipywidgets_or_plotly():
    """nodeflame.widgets.state is plain Python: with ipywidgets, plotly and anywidget made
    unimportable, a whole session (transforms, a click by path id, search, view, details,
    breadcrumbs, replay code, the static SVG) runs and says what to redraw."""
    import inspect
    import subprocess
    import textwrap
    code = textwrap.dedent(f"""
        import sys
        for m in ("ipywidgets", "plotly", "anywidget"):
            sys.modules[m] = None          # any import of them raises ImportError
        import numpy as np
        from nodeflame.frames.build import FrameTable, build_profile
        APP, SHAPE, T0 = {APP!r}, {SHAPE!r}, {T0!r}
        from nodeflame.widgets.state import ExplorerState, FIGURE, STYLE, DETAILS
        import nodeflame as nf
        p = make_profile()
        s = ExplorerState(p)
        trace, layout = s.flame()
        assert trace["type"] == "icicle" and trace["values"][0] == 1000
        assert layout["height"] == 560
        i = trace["labels"].index("render")
        assert s.click(trace["ids"][i]) == FIGURE
        assert s.transforms == ["focus=^render\\\\ " + __import__("re").escape(APP) + ":20$"], s.transforms
        assert s.profile.total == 200 and "render" in s.details_html()
        assert [c[0] for c in s.crumbs()] == ["all", "focus render " + APP + ":20"]
        assert s.search("^render ") == STYLE and s.match_share == 1.0 and "search match" in s.legend_html()
        assert s.set_view(orientation="icicle") == STYLE and s.style()["tiling.flip"] is None
        assert s.set_view(inverted=True) == FIGURE
        assert s.select(func=-1) == DETAILS and "click a frame" in s.details_html()
        assert s.undo() == FIGURE and s.transforms == [] and s.profile.total == 1000
        assert s.code == "p.flame(inverted=True, orientation='icicle', search='^render ')", s.code
        assert s.static_svg().startswith("<?xml") and "matched" in s.status_html()
        bars, shapes = s.timeline()
        assert sum(sum(b["y"]) for b in bars) == 1000 and shapes == []
        from nodeflame.widgets.state import DiffState
        ds = DiffState(nf.diff(p, p))
        assert ds.view["color"] == "diff" and ds.code == "d.flame()" and "largest changes" in ds.side_html()
        assert [m for m in ("ipywidgets", "plotly", "anywidget") if sys.modules.get(m)] == []
        print("ok")
    """).replace("p = make_profile()", "p = make_profile(SHAPE)")
    # make_profile (this file's) is defined before it is called
    head, _, body = code.partition("import nodeflame as nf\n")
    code = head + "import nodeflame as nf\n" + textwrap.dedent(inspect.getsource(make_profile)) + body
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


def test_widgets_and_svg_share_one_palette(prof):
    """The chart colours a function as the SVG writer does (kind by kind, the name's spot in the
    kind's hue range), its legend shows each kind's middle colour, and the diff's shading is the
    SVG's: the static fallback and the live chart say the same thing in the same colours."""
    from nodeflame.writers import palette, svg
    e = ex(prof)
    f = prof.funcs
    want = svg.kind_colors(f["name"].astype(str).to_numpy(object), f["kind"].astype(str).to_numpy(object))
    got = M.func_colors(prof, "kind")
    assert list(got) == list(want)
    assert M.KIND_COLORS is palette.KIND_COLORS and svg.PALETTES is palette.PALETTES
    node = palette.KIND_COLORS["node"]
    r, g, b = rgb(node)
    assert g > r and g > b                                   # node: green, in both
    assert palette.KIND_COLORS["gc"] in e.legend.value
    delta = np.array([3.0, -1.0, 0.5, 0.0])
    sig = np.array([True, True, False, False])
    assert list(M.shade(delta, sig)) == list(svg.delta_colors(np.where(sig, delta, 0.0)))
    assert M.shade(delta, sig)[2] == M.DIFF_GREY == svg.delta_colors([0.0])[0]


def test_plotly_front_end_travels_once_per_kernel(prof):
    """Each chart's widget state carries a small loader, not plotly.js: the 5 MB module is in one
    library model per kernel, gzip-compressed, that every chart names."""
    import gzip
    from plotly.basewidget import BaseFigureWidget
    from nodeflame.widgets import frontend
    a, b = ex(prof), ex(prof, inverted=True)
    sa, sb = a.widget.get_state(), b.widget.get_state()
    assert len(sa["_esm"]) < 20_000 and sa["_esm"] == sb["_esm"]
    lib = frontend.library()
    assert sa["_nf_library"] == sb["_nf_library"] == "IPY_MODEL_" + lib.model_id
    assert gzip.decompress(lib.code) == pathlib.Path(BaseFigureWidget._esm._path).read_bytes()
    assert len(lib.code) < 2_000_000
    # what a saved notebook keeps per chart: its figure and a loader, tens of kB
    assert len(json.dumps(sa, default=str)) < 200_000


def test_details_and_top_tables_keep_one_line_per_row(prof):
    """Names are cut with an ellipsis (whole in the tooltip) in fixed columns, never wrapped."""
    e = ex(prof)
    e.select(func=int(np.flatnonzero(prof.funcs["name"].astype(str) == "handle")[0]))
    for html in (e.details.value, e.side.value):
        assert "table-layout:fixed" in html and "text-overflow:ellipsis" in html and "white-space:nowrap" in html
    assert f"title='parse {DEP}:5'" in e.details.value


def _native_capture():
    """A walker-like capture: 16 native frames under the JS entry, native leaves under JS, a
    builtin, a GC pseudo-frame and a stack with no JS at all."""
    ft = FrameTable()
    nat = [ft.add(f"node::scaffold{i}", "/usr/bin/node", 0) for i in range(16)]
    main, handle = ft.add("main", APP, 1), ft.add("handle", APP, 10)
    memcpy, sort = ft.add("__memcpy_avx", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0), ft.add("sort", "", 0)
    gc = ft.add("(garbage collector)", "", 0)
    timers = ft.add("processTimers", "node:internal/timers", 512)
    paths = ([nat + [timers, main, handle, memcpy]] * 40 + [nat + [timers, main, handle, sort]] * 30
             + [nat + [timers, main, handle]] * 20 + [nat + [gc]] * 6 + [nat] * 4)
    offsets = np.cumsum([0] + [len(x) for x in paths])
    return build_profile(ft, offsets, np.concatenate(paths), meta={"unit": "samples", "backend": "walker"}).validate()


def test_javascript_only_view_collapses_native_frames_into_js_callers():
    from nodeflame.widgets.state import JS_ONLY, ExplorerState
    p = _native_capture()
    assert set(p.funcs["kind"].astype(str)) >= {"native", "js", "node"}
    s = ExplorerState(p)                                   # a walker capture opens JavaScript only
    assert s.transforms == [JS_ONLY] and s.js_only and s.crumbs()[1][0] == "JavaScript only"
    q = s.profile
    assert q.total == 96                                    # the 4 samples without any JS frame leave
    names = set(q.funcs["name"].astype(str)[np.unique(q.stacks["frame"].map(q.frames["func"]))])
    assert names == {"processTimers", "main", "handle", "(garbage collector)"}
    top = q.top(3).set_index("name")
    assert top.loc["handle", "self"] == 90                  # memcpy's and sort's time charged to handle
    assert int(q.stacks["depth"].max()) == 2
    # replayable, and a way back
    assert p.apply(s.transforms).text() == q.text()
    s.apply("focus=^handle ")
    s.set_js_only(False)
    assert s.transforms == ["focus=^handle "] and s.profile.total == 90
    # other captures open as they are; given transforms win
    assert ExplorerState(make_profile()).transforms == []
    assert ExplorerState(p, transforms=[]).transforms == []
    e = ex(p)
    assert e.js.value and [b.description for b in e.crumbs.children] == ["all", "JavaScript only"]
    e.js.value = False
    assert e.transforms == [] and e.profile.total == 100
    e.js.value = True
    assert e.transforms == [JS_ONLY] and e.code == f"p.apply({[JS_ONLY]!r}).flame()"


def test_details_pane_lists_hot_lines_with_their_source_text():
    """The selected function's hottest lines next to their text (pprof's `list`), from the file on disk."""
    from nodeflame.frames.build import FrameTable, build_profile
    from nodeflame.widgets.state import ExplorerState
    wl = pathlib.Path(__file__).resolve().parent / "workloads" / "inline.js"
    src = wl.read_text().splitlines()
    decl = next(i for i, ln in enumerate(src, 1) if ln.startswith("function parseToken("))
    hot = next(i for i, ln in enumerate(src, 1) if "HOT:parseToken" in ln)
    ft = FrameTable()
    root = ft.add("round", str(wl), 0, 0, hint="js", tier="optimized", func_line=1, func_column=1)
    hot_fr = ft.add("parseToken", str(wl), hot, 3, hint="js", tier="inlined", func_line=decl, func_column=1)
    other = ft.add("parseToken", str(wl), decl + 1, 3, hint="js", tier="inlined", func_line=decl, func_column=1)
    paths = [[root, hot_fr]] * 9 + [[root, other]] * 2
    flat = [f for ph in paths for f in ph]
    offsets = np.cumsum([0] + [len(ph) for ph in paths])
    p = build_profile(ft, offsets, np.asarray(flat))
    s = ExplorerState(p, transforms=[])
    func = int(np.flatnonzero(p.funcs["name"].astype(str) == "parseToken")[0])
    s.select(func=func)
    h = s.details_html()
    assert "hot lines" in h
    first = h.index(f">{hot}<")
    assert first < h.index(f">{decl + 1}<")                        # hottest first
    import html as _html
    assert _html.escape(src[hot - 1].strip()) in h                 # with its source text


def _paths(p):
    """Counter of (root-first labels) -> weight over the samples of ``p``."""
    from collections import Counter
    labels = p.func_labels()
    a = p.arrays()
    memo = {}

    def path(s):
        if s not in memo:
            pre = int(a["prefix"][s])
            memo[s] = (path(pre) if pre >= 0 else ()) + (str(labels[a["stack_func"][s]]),)
        return memo[s]
    out = Counter()
    for s, w in zip(p.samples["stack"].to_numpy(), p.samples["weight"].to_numpy()):
        out[path(int(s))] += int(w)
    return out


def test_collapse_package_merges_runs_of_a_package_into_one_frame():
    """'collapse library' on a real inspector capture of the demo app (its CSV parser is the npm
    package tinyparse; node's own timers and streams are node internals): every run of a package's
    frames is one frame named after the package, what the package calls stays above it, nothing
    else moves; as a transform it is replayable and it is the explorer's 'collapse packages' box."""
    from nodeflame.frames.transforms import NODE_INTERNALS
    from nodeflame.widgets.state import COLLAPSE_PACKAGES, JS_ONLY, ExplorerState
    p = nf.read(pathlib.Path(__file__).resolve().parent / "data" / "diff_demo" / "slow0.cpuprofile")
    f = p.funcs
    group = np.where(f["package"].astype(str) != "", f["package"].astype(str),
                     np.where(f["kind"].astype(str) == "node", NODE_INTERNALS, ""))
    assert "tinyparse" in set(group) and NODE_INTERNALS in set(group)
    labels = p.func_labels()
    gname = {str(lab): str(g) for lab, g in zip(labels, group)}
    q = p.apply(["collapse-package"])
    q.validate()
    assert q.meta["transforms"] == ["collapse-package"] and q.total == p.total
    # expected: each path with every run of one package's frames replaced by that package's frame
    want = {}
    for path, w in _paths(p).items():
        out = []
        for lab in path:
            g = gname[lab]
            lab2 = (f"{g} node_modules/{g}" if g != NODE_INTERNALS else g) if g else lab
            if not (g and out and out[-1] == lab2):
                out.append(lab2)
        want[tuple(out)] = want.get(tuple(out), 0) + w
    assert dict(_paths(q)) == want
    # the package's self time is what its own frames had; its total the samples through it
    top = q.top(len(q.funcs)).set_index("name")
    tp = np.isin(p.funcs.index, np.flatnonzero(group == "tinyparse"))
    ptop = p.top(len(p.funcs))
    assert top.loc["tinyparse", "self"] == ptop.loc[ptop.index[tp[ptop.index]], "self"].sum() > 0
    # no two consecutive frames of one package are left
    qa = q.arrays()
    qg = np.isin(q.funcs["name"].astype(str), ["tinyparse", NODE_INTERNALS])[qa["stack_func"]]
    par = qa["prefix"]
    assert not (qg & (par >= 0) & (qa["stack_func"] == qa["stack_func"][np.maximum(par, 0)])).any()
    # line ticks stay with functions that keep their lines; collapsed frames span many files: none
    assert len(p.lines) and len(q.lines) and not qg[q.lines["stack"].to_numpy()].any()
    # one package only; a pattern matching none changes nothing
    only = p.apply(["collapse-package=^tinyparse$"])
    assert "tinyparse" in set(only.funcs["name"].astype(str))
    assert NODE_INTERNALS not in set(only.funcs["name"].astype(str))
    assert only.meta["transforms"] == ["collapse-package=^tinyparse$"]
    assert p.apply(["collapse-package=^nothing-by-this-name$"]).text() == p.text()
    with pytest.raises(nf.NodeflameError, match="collapse-package=\\(: invalid regular expression"):
        p.apply(["collapse-package=("])
    # the explorer's box: after "JavaScript only", before the other transforms; a breadcrumb; replay
    s = ExplorerState(p, transforms=[JS_ONLY, "focus=^renderPage "])
    s.set_collapse_packages(True)
    assert s.transforms == [JS_ONLY, COLLAPSE_PACKAGES, "focus=^renderPage "] and s.packages_collapsed
    assert [c[0] for c in s.crumbs()] == ["all", "JavaScript only", "packages collapsed", "focus ^renderPage "]
    assert s.profile.text() == p.apply(s.transforms).text()
    e = ex(p, transforms=[])
    assert not e.collapse.value
    e.collapse.value = True
    assert e.transforms == [COLLAPSE_PACKAGES] and e.profile.text() == q.text()
    assert e.code == "p.apply(['collapse-package']).flame()"
    assert "tinyparse" in list(e.widget.data[0].labels)
    e.collapse.value = False
    assert e.transforms == [] and e.profile.total == p.total


def test_clicks_queued_by_a_busy_kernel_each_focus_their_frame_in_order(prof):
    """Clicks made while the kernel is busy all arrive once it is free, each naming the chart it was
    made on: each focuses its frame from that chart's view, in order; none is lost, none lands on
    what a later chart has at that node id; chart, breadcrumbs and details agree on the last."""
    e = ex(prof)
    view = e.widget.layout.meta["nodeflame"]["view"]
    seq = ["render", "parse", "crunch", "fib", "handle"]
    ids = {lab: e.widget.data[0].ids[list(e.widget.data[0].labels).index(lab)] for lab in seq}
    for lab in seq:     # all made on the first chart, delivered one after another
        e.widget._handle_custom_msg({"event": "nodeflame-click", "id": ids[lab], "view": view}, [])
    assert [c["function"].split(" ")[0] for c in e.clicks] == seq
    assert [len(c["transforms"]) for c in e.clicks] == [1] * 5          # each from the first view
    last = e.clicks[-1]["function"]
    assert e.transforms == [f"focus=^{re.escape(last)}$"] and str(e.profile.func_labels()[e.selected]) == last
    assert e.crumbs.children[-1].tooltip == f"focus {last}" and "<b>handle</b>" in e.details.value
    assert e.widget.layout.meta["nodeflame"]["view"] > view
    # a click on the chart shown now adds to its view
    browser_click(e, "parse")
    assert e.transforms[-2:] == [f"focus=^{re.escape(last)}$", f"focus=^parse\\ {re.escape(DEP)}:5$"]
    # plotly's own click-zoom stays off while clicks focus
    assert e.widget.layout.meta["nodeflame"]["zoom"] is False


def test_notebook_display_is_a_static_chart_then_the_live_explorer(prof, monkeypatch):
    """Two outputs: the static SVG chart (what stays where no kernel runs: a reopened notebook,
    nbconvert, GitHub), then the widget, whose chart's front end hides the static output it names
    once it has drawn; the widget's own output carries no second copy of the chart."""
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    e = ex(prof)
    e._ipython_display_()
    (static, raw1), (live, raw2) = shown
    assert raw1 and raw2
    assert set(static) == {"text/html", "text/plain"} and "data:image/svg+xml;base64," in static["text/html"]
    assert f"nodeflame-static-{e.static_key}" in static["text/html"] and "<script" not in static["text/html"]
    assert static["text/plain"].startswith("1,000 samples")
    assert "text/html" not in live and live["application/vnd.jupyter.widget-view+json"]["model_id"] == e.model_id
    assert e.widget._nf_static == e.static_key and re.fullmatch("[0-9a-f]{16}", e.static_key)


def test_plotly_module_cache_keeps_a_bounded_number_of_files(tmp_path, monkeypatch):
    """Each plotly install (a new virtualenv, an upgrade) has its own key in the cache of compressed
    front-end modules; the cache keeps the newest few, so that it does not grow with every install."""
    from nodeflame.widgets import frontend
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = tmp_path / "nodeflame"
    d.mkdir()
    now = time.time()
    old = []
    for i in range(5):                     # five earlier installs, the newest last
        f = d / f"plotly-widget-5.0.{i}-100-{i}.js.gz"
        f.write_bytes(b"\x1f\x8b old")
        os.utime(f, (now - 1000 + i, now - 1000 + i))
        old.append(f)
    dead = d / "plotly-widget-5.0.9-100-9.js.123.tmp"       # a writer that died two hours ago
    dead.write_bytes(b"x")
    os.utime(dead, (now - 7200, now - 7200))
    busy = d / "plotly-widget-5.0.8-100-8.js.456.tmp"       # one writing now
    busy.write_bytes(b"x")
    other = d / "v8layout"                                   # the cache's other tenants
    other.mkdir()
    version, data = frontend.plotly_module.__wrapped__()
    assert gzip.decompress(data)                             # the module itself, compressed
    left = sorted(p.name for p in d.iterdir())
    current = [n for n in left if n.startswith(f"plotly-widget-{version}-")]
    assert len(current) == 1, left
    assert set(left) == {current[0], old[3].name, old[4].name, busy.name, "v8layout"}, left
    # read back from the cache the next time, as it is
    assert frontend.plotly_module.__wrapped__() == (version, data)
