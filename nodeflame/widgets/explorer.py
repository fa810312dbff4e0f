"""The flame/icicle explorer: a plotly icicle with ipywidgets controls.

Every control that changes *what* is drawn is one of the model's transforms
(focus, ignore, hide, merge-recursion, slice, thread), kept as a list that is
shown as code and can be replayed: ``p.apply([...]).flame(...)``.  Controls
that only change *how* it is drawn (orientation, invert, colours, minimum
width, search highlighting) are the view options of that code's ``flame()``.
"""
from __future__ import annotations

import html
import re
from collections import OrderedDict

import ipywidgets as W
import numpy as np
import pandas as pd

from ..frames.errors import NodeflameError, TransformError
from ..frames.transforms import Transform
from . import model as M
from .chart import Chart

_REPLACE_ONE = ("thread", "slice")  # at most one of these in the list: setting it replaces the old one
MINWIDTHS = (("auto", None), ("0.01 %", 1e-4), ("0.05 %", 5e-4), ("0.1 %", 1e-3), ("0.5 %", 5e-3),
             ("1 %", 1e-2))
_CACHE = 8


class _LRU(OrderedDict):
    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        v = self[key] = make()
        while len(self) > _CACHE:
            self.popitem(last=False)
        return v


_AUTO = -1.0   # the min-width dropdown's value for "auto" (None would draw a blank dropdown)


def _mw_value(mw):
    return _AUTO if mw is None else mw


def _unescape(rx: str) -> str:
    """``^handle\\ /srv/app\\.js:10$`` -> ``handle /srv/app.js:10`` when the pattern is an exact,
    escaped literal (what clicks and the details buttons make); other patterns stay as written."""
    inner = rx[1:-1] if rx.startswith("^") and rx.endswith("$") and not rx.endswith("\\$") else None
    if inner is not None:
        lit = re.sub(r"\\(.)", r"\1", inner)
        if re.escape(lit) == inner:
            return lit
    return rx


def _btn(desc, tip="", width="auto", style=""):
    return W.Button(description=desc, tooltip=tip, layout=W.Layout(width=width), button_style=style)


class Explorer(W.VBox):
    """Interactive flame graph of a profile; see :func:`nodeflame.widgets.explorer`.

    The state is plain Python and can be driven from code as well as from the
    controls: ``apply``, ``focus``, ``ignore``, ``hide``, ``undo``, ``reset``,
    ``set_view``, ``search``, ``select``, ``set_thread``, ``set_slice_ms``.
    ``profile`` is the transformed profile on screen, ``code`` the line that
    reproduces the view, ``figure`` the plotly figure (a dict)."""

    def __init__(self, profile, *, transforms=(), inverted: bool = False, orientation: str = "flame",
                 color: str = "kind", minwidth: float | None = None, search: str = "",
                 max_nodes: int = 6000, height: int = 560, timeline: bool = True, name: str = "p",
                 title: str | None = None, static_nodes: int = 3000, defer_panes: bool = True,
                 focus_on_click: bool = True, aggregate: bool | None = None):
        if orientation not in ("flame", "icicle"):
            raise ValueError("orientation must be 'flame' (root at the bottom) or 'icicle' (root on top)")
        if color not in self._color_choices():
            raise ValueError(f"color must be one of {', '.join(self._color_choices())}, not {color!r}")
        if profile.total <= 0:
            raise NodeflameError("nothing to draw: the profile has no samples")
        self.base = profile
        self.name = name
        self.title = title
        self.max_nodes = int(max_nodes)
        self.static_nodes = int(static_nodes)
        self.defer_panes = defer_panes
        self.focus_on_click = bool(focus_on_click)
        self.height = int(height)
        self.transforms: list[str] = [str(t) for t in (Transform.parse(s) for s in
                                                          ([transforms] if isinstance(transforms, str) else transforms))]
        self.view = {"inverted": bool(inverted), "orientation": orientation, "color": color, "minwidth": minwidth}
        self.pattern = search or ""
        self.selected = -1          # function (id in self.profile) shown in the details pane
        self.message = ""
        self._profiles = _LRU()
        self._layouts = _LRU()
        self._timelines = _LRU()
        self._aggs = _LRU()
        n_rows = len(profile.samples)
        self._aggregate = bool(aggregate if aggregate is not None else (
            profile.meta.get("timed") and n_rows > 50_000))
        self._restyle: dict = {}
        self._syncing = False
        self._t0 = int(profile.samples["time_ns"].min()) if profile.meta.get("timed") and len(profile.samples) else 0
        self._t1 = int(profile.samples["time_ns"].max()) if profile.meta.get("timed") and len(profile.samples) else 0
        self._build_controls(timeline)
        self.refresh()   # the chart's FigureWidget is born holding the first figure
        self.chart_box.children = [self.chart.widget]
        super().__init__(children=self._children(), layout=W.Layout(width="100%"))

    # ---------------------------------------------------------------- model
    @staticmethod
    def _color_choices():
        return M.COLOR_BY

    def _transform(self, p, specs):
        return p.apply(list(specs)) if specs else p

    def _profile_for(self, key: tuple):
        """The base profile with the transforms ``key`` applied; prefixes are cached so that
        adding one transform costs one transform.

        Long timed profiles (many more sample rows than distinct (stack, thread) pairs) are
        drawn from an aggregate: the slice, if any, is applied to the full profile first (it
        commutes with every other transform), then its samples are summed per (stack, thread)
        and the other transforms run on those few rows.  Totals, trees and tables are the same
        as ``base.apply(key)``'s; only the sample rows are fewer (and carry no times)."""
        if not key:
            return self._agg_for("") if self._aggregate else self.base
        if not self._aggregate:
            return self._profiles.get_or(key, lambda: self._transform(self._profile_for(key[:-1]), [key[-1]]))
        sl = next((t for t in key if t.startswith("slice=")), "")
        rest = tuple(t for t in key if not t.startswith("slice="))
        return self._agg_chain(sl, rest)

    def _agg_chain(self, sl: str, rest: tuple):
        if not rest:
            return self._agg_for(sl)
        return self._profiles.get_or((sl,) + rest,
                                     lambda: self._transform(self._agg_chain(sl, rest[:-1]), [rest[-1]]))

    def _agg_entry(self, sl: str):
        """(aggregate, row of each source sample, source profile) for a slice ('' = none)."""
        def make():
            src = self._transform(self.base, [sl]) if sl else self.base
            s = src.samples
            codes = s["thread"].cat.codes.to_numpy().astype(np.int64)
            key = s["stack"].to_numpy().astype(np.int64) * (len(s["thread"].cat.categories) + 1) + codes
            uniq, inv = np.unique(key, return_inverse=True)
            w = np.bincount(inv, weights=s["weight"].to_numpy(), minlength=len(uniq)).astype(np.int64)
            first = np.full(len(uniq), len(s), np.int64)
            np.minimum.at(first, inv, np.arange(len(s)))
            agg = pd.DataFrame({"stack": s["stack"].to_numpy()[first], "time_ns": np.zeros(len(uniq), np.int64),
                                "weight": w, "thread": s["thread"].iloc[first].to_numpy(),
                                "_row": np.arange(len(uniq))})
            agg["thread"] = pd.Categorical(agg["thread"], categories=s["thread"].cat.categories)
            q = src.copy()
            q.samples = agg
            q.meta = dict(src.meta, timed=False, aggregated_from_rows=len(s))
            q._cache = {}
            return q, inv, src
        return self._aggs.get_or(sl, make)

    def _agg_for(self, sl: str):
        """The (sliced) base with samples summed per (stack, thread); column ``_row`` numbers the rows."""
        return self._agg_entry(sl)[0]

    def _timeline_for(self, key: tuple):
        """The timeline of the samples ``key`` keeps (ignoring its slice: the strip shows the whole capture)."""
        rest = tuple(t for t in key if not t.startswith("slice="))
        if not self._aggregate:
            p = self._profile_for(rest)
            return M.timeline(p, t0_ns=self._t0, t1_ns=self._t1)
        p = self._agg_chain("", rest)
        agg, inv, src = self._agg_entry("")
        kind_of_row = np.full(len(agg.samples), -1, np.int64)
        kind_of_row[p.samples["_row"].to_numpy()] = M.leaf_kinds(p)
        s = src.samples
        return M.timeline_counts(s["time_ns"].to_numpy(), s["weight"].to_numpy(), kind_of_row[inv],
                                 t0_ns=self._t0, t1_ns=self._t1)

    @property
    def profile(self):
        """The profile on screen: the base profile with ``transforms`` applied."""
        return self._profile_for(tuple(self.transforms))

    def _layout_for(self, key, p):
        def make():
            lay, mw = M.auto_layout(p, inverted=self.view["inverted"], minwidth=self.view["minwidth"],
                                    max_nodes=self.max_nodes)
            return lay.assign(nid=M.node_ids(p, lay)), mw
        return self._layouts.get_or((key, self.view["inverted"], self.view["minwidth"]), make)

    @property
    def layout_table(self) -> pd.DataFrame:
        """The drawn nodes (``flame_layout`` rows; column ``nid`` is each node's plotly id, a hash
        of its path that survives re-layouts)."""
        return self._layout_for(tuple(self.transforms), self.profile)[0]

    @property
    def minwidth_used(self) -> float:
        return self._layout_for(tuple(self.transforms), self.profile)[1]

    @property
    def code(self) -> str:
        """Python that reproduces this view."""
        view = {k: v for k, v in self.view.items()
                if v != {"inverted": False, "orientation": "flame", "color": "kind", "minwidth": None}[k]}
        if self.pattern:
            view["search"] = self.pattern
        return M.code_for(self.name, self.transforms, view)

    @property
    def figure(self) -> dict:
        """The flame chart's plotly figure as a dict, with the latest restyle applied."""
        return self.chart.figure

    def to_plotly(self):
        """The flame chart as a ``plotly.graph_objects.Figure``."""
        return self.chart.to_plotly()

    @property
    def widget(self):
        """The plotly ``go.FigureWidget`` on screen (icicle trace 0, timeline bars after it)."""
        return self.chart.widget

    # ------------------------------------------------------------ transforms
    def apply(self, spec) -> "Explorer":
        """Add a transform (``'focus=...'``, ``('hide', regex)``, ...); thread and slice replace
        the current one of their kind."""
        t = Transform.parse(spec)
        new = list(self.transforms)
        if t.name in _REPLACE_ONE:
            new = [x for x in new if Transform.parse(x).name != t.name]
        new.append(str(t))
        return self.set_transforms(new)

    def set_transforms(self, specs) -> "Explorer":
        new = [str(Transform.parse(s)) for s in specs]
        self._profile_for(tuple(new))  # raise before changing anything
        self.transforms = new
        self.selected = -1
        self.refresh()
        return self

    def _pattern_or_selection(self, pattern):
        if pattern:
            return pattern
        if self.selected >= 0:
            return M.exact_pattern(self.profile, self.selected)
        if self.pattern:
            return self.pattern
        raise TransformError("select a frame or type a regular expression first")

    def focus(self, pattern: str | None = None) -> "Explorer":
        """Keep only stacks through ``pattern`` (default: the selected function)."""
        return self.apply(("focus", self._pattern_or_selection(pattern)))

    def ignore(self, pattern: str | None = None) -> "Explorer":
        return self.apply(("ignore", self._pattern_or_selection(pattern)))

    def hide(self, pattern: str | None = None) -> "Explorer":
        return self.apply(("hide", self._pattern_or_selection(pattern)))

    def merge_recursion(self, on: bool = True) -> "Explorer":
        new = [t for t in self.transforms if t != "merge-recursion"]
        return self.set_transforms(new + ["merge-recursion"] if on else new)

    def set_thread(self, thread: str | None) -> "Explorer":
        """Show one thread (None: all)."""
        if thread is None:
            return self.set_transforms([t for t in self.transforms if not t.startswith("thread=")])
        return self.apply(("thread", "^" + re.escape(thread) + "$"))

    def set_slice_ms(self, start_ms: float | None, end_ms: float | None) -> "Explorer":
        """Show only samples between two times, in ms since the first sample (None: all)."""
        rest = [t for t in self.transforms if not t.startswith("slice=")]
        if start_ms is None and end_ms is None:
            return self.set_transforms(rest)
        if not self._t1:
            raise TransformError("slice: this profile has no sample times")
        a = "" if start_ms is None else str(self._t0 + int(round(start_ms * 1e6)))
        b = "" if end_ms is None else str(self._t0 + int(round(end_ms * 1e6)))
        return self.set_transforms(rest + [f"slice={a}:{b}"])

    def slice_ms(self):
        """The current slice as (start_ms, end_ms), None when not sliced."""
        for t in self.transforms:
            if t.startswith("slice="):
                a, _, b = t[6:].partition(":")
                lo = (int(a) - self._t0) / 1e6 if a else 0.0
                hi = (int(b) - self._t0) / 1e6 if b else (self._t1 - self._t0) / 1e6
                return lo, hi
        return None

    def undo(self) -> "Explorer":
        return self.set_transforms(self.transforms[:-1])

    def reset(self) -> "Explorer":
        return self.set_transforms([])

    # ------------------------------------------------------------------ view
    def set_view(self, **view) -> "Explorer":
        """Change ``inverted``, ``orientation``, ``color`` or ``minwidth``."""
        for k, v in view.items():
            if k not in self.view:
                raise TypeError(f"unknown view option {k!r}; expected one of {', '.join(self.view)}")
            if k == "color" and v not in self._color_choices():
                raise ValueError(f"color must be one of {', '.join(self._color_choices())}")
            if k == "orientation" and v not in ("flame", "icicle"):
                raise ValueError("orientation must be 'flame' or 'icicle'")
        structural = any(k in ("inverted", "minwidth") and self.view[k] != v for k, v in view.items())
        self.view.update(view)
        if structural:
            self.selected = -1
            self.refresh()
        else:
            self._restyle_chart()
            self._sync_controls()
        return self

    def search(self, pattern: str) -> "Explorer":
        """Highlight functions whose ``name file:line`` matches the regular expression."""
        if pattern:
            re.compile(pattern)
        self.pattern = pattern or ""
        self._restyle_chart()
        self._sync_controls()
        return self

    def click(self, node) -> "Explorer":
        """What a click on the chart does: with ``focus_on_click`` (the default) focus on the
        clicked frame's function (a ``focus=`` transform; the breadcrumbs lead back out), and
        show it in the details pane.  Clicks on the root or an "other" node only clear the
        selection."""
        func = M.node_func(self.layout_table, node)
        if func < 0 or not self.focus_on_click:
            return self.select(func=func)
        label = str(self.profile.func_labels()[func])
        self.apply(("focus", M.exact_pattern(self.profile, func)))
        labels = self.profile.func_labels()
        hit = np.flatnonzero(labels == label)
        return self.select(func=int(hit[0]) if len(hit) else -1)

    def select(self, node=None, *, func: int | None = None) -> "Explorer":
        """Show a function in the details pane: by plotly node id (a click) or by function id."""
        if func is None:
            func = M.node_func(self.layout_table, node)
        self.selected = int(func)
        self._render_details()
        return self

    # ------------------------------------------------------------- drawing
    def _colors(self, p, lay):
        fc = M.func_colors(p, self.view["color"])
        return M.node_colors(lay, fc)

    def _match(self, p):
        if not self.pattern:
            return None, 0.0
        fm = M.matching_funcs(p, self.pattern)
        return fm, M.matched_share(p, fm)

    def _trace_colors(self, p, lay):
        col = self._colors(p, lay)
        fm, share = self._match(p)
        self.match_share = share
        if fm is not None:
            func = lay["func"].to_numpy()
            hit = np.where(func >= 0, fm[np.maximum(func, 0)] if len(fm) else False, False)
            col = np.where(hit, M.MATCH_COLOR, col)
        return [M.ROOT_COLOR] + list(col)

    def _orientation_style(self):
        flame = self.view["orientation"] == "flame"
        return {"tiling.flip": "y" if flame else None, "pathbar.side": "bottom" if flame else "top"}

    def _title(self):
        return self.title

    def refresh(self) -> None:
        """Redraw from the transform list and view options: the chart first, then (after the
        chart's message has gone out, when a kernel's event loop runs) the panes around it."""
        self._refresh_chart()
        self._generation = getattr(self, "_generation", 0) + 1
        gen = self._generation
        loop = None
        if self.defer_panes:
            try:
                import asyncio
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        if loop is None:
            self._refresh_panes()
        else:
            loop.call_soon(lambda: gen == self._generation and self._refresh_panes(warm=True))

    def _refresh_chart(self) -> None:
        key = tuple(self.transforms)
        p = self._profile_for(key)
        lay, _mw = self._layout_for(key, p)
        trace = M.icicle_trace(p, lay, [], orientation=self.view["orientation"])
        trace["marker"]["colors"] = self._trace_colors(p, lay)
        self._extra_trace(trace, p, lay)
        self._restyle = {}
        h = M.flame_height(lay, self.height, title=bool(self._title()))
        self.chart.set_flame(trace, M.icicle_layout(height=h, title=self._title()))
        self._render_legend(p, lay)
        if getattr(self, "chart_box", None) is not None:
            self.chart_box.layout.height = (f"{M.SCROLL_PX}px" if self.chart.total_height > M.SCROLL_PX
                                            else None)
        self._sync_controls()

    def _refresh_panes(self, warm: bool = False) -> None:
        self._render_timeline()
        self._render_details()
        self._render_side()
        if warm:  # idle time in a live kernel: make the invert toggle instant too
            from ..frames.views import call_tree
            call_tree(self.profile, inverted=not self.view["inverted"])

    def _extra_trace(self, trace, p, lay):
        pass

    def _render_legend(self, p=None, lay=None):
        p = self.profile if p is None else p
        lay = self.layout_table if lay is None else lay
        items = M.legend(p, lay, self.view["color"])
        if self.pattern:
            items = items + [("search match", M.MATCH_COLOR)]
        self.legend.value = M.legend_html(items)

    def _restyle_chart(self):
        p = self.profile
        lay = self.layout_table
        self._render_legend(p, lay)
        self._restyle = {"marker.colors": self._trace_colors(p, lay), **self._orientation_style()}
        self.chart.restyle(dict(self._restyle))
        self._render_status()

    # ------------------------------------------------------------- controls
    def _build_controls(self, timeline: bool):
        self.search_box = W.Text(value=self.pattern, placeholder="regex over 'name file:line'",
                                 description="search", continuous_update=False,
                                 layout=W.Layout(width="320px"))
        self.b_focus = _btn("focus", "keep only stacks through the matches (or the selected frame)")
        self.b_ignore = _btn("ignore", "drop stacks through the matches (or the selected frame)")
        self.b_hide = _btn("hide", "remove the matching frames, joining their callers and callees")
        self.status = W.HTML()
        self.orient = W.ToggleButtons(options=[("flame", "flame"), ("icicle", "icicle")],
                                      value=self.view["orientation"], style={"button_width": "60px"},
                                      tooltips=["root at the bottom", "root on top"])
        self.invert = W.Checkbox(value=self.view["inverted"], description="invert (bottom-up)", indent=False,
                                 layout=W.Layout(width="150px"))
        self.merge = W.Checkbox(value="merge-recursion" in self.transforms, description="merge recursion",
                                indent=False, layout=W.Layout(width="140px"))
        self.color = W.Dropdown(options=list(self._color_choices()), value=self.view["color"], description="colour",
                                layout=W.Layout(width="170px"))
        threads = self.base.threads
        # ipywidgets draws a None value as a blank dropdown: "" is "all threads", -1 is "auto"
        self.thread = W.Dropdown(options=[("all threads", "")] + [(t, t) for t in threads], value="",
                                 description="thread", layout=W.Layout(width="220px"),
                                 disabled=len(threads) < 2)
        widths = [(lab, _AUTO if v is None else v) for lab, v in MINWIDTHS]
        if self.view["minwidth"] not in dict(MINWIDTHS).values():   # a width given in code gets its own entry
            widths.append((f"{100 * self.view['minwidth']:g} %", self.view["minwidth"]))
        self.minwidth = W.Dropdown(options=widths, value=_mw_value(self.view["minwidth"]), description="min width",
                                   layout=W.Layout(width="170px"))
        self.crumbs = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.legend = W.HTML()
        self.b_undo = _btn("undo", "remove the last transform")
        self.b_reset = _btn("reset", "remove every transform")
        has_timeline = bool(timeline and self._t1 > self._t0)
        self.chart = Chart(height=self.height, timeline=has_timeline)
        self.chart.on_event(self._on_chart_event)
        self.timeline_chart = self.chart if has_timeline else None   # the strip lives in the same figure
        # the chart grows with the stacks' depth; past SCROLL_PX it scrolls inside this box
        self.chart_box = W.Box(layout=W.Layout(width="100%", overflow="auto",
                                               display="block"))
        self.range = None
        self.click_focus = W.Checkbox(value=self.focus_on_click, description="click focuses", indent=False,
                                      layout=W.Layout(width="110px"))
        self.click_focus.observe(lambda ch: setattr(self, "focus_on_click", bool(ch["new"])), "value")
        if has_timeline:
            span = (self._t1 - self._t0) / 1e6
            self.range = W.FloatRangeSlider(value=(0.0, span), min=0.0, max=span, step=max(span / 1000, 0.001),
                                            description="time (ms)", continuous_update=False, readout_format=".0f",
                                            layout=W.Layout(width="100%"))
            self.range.observe(self._on_range, "value")
        self.details = W.HTML(layout=W.Layout(width="50%"))
        self.d_focus = _btn("focus on it", "focus on the selected function")
        self.d_ignore = _btn("ignore it", "drop stacks through the selected function")
        self.d_hide = _btn("hide it", "remove the selected function's frames")
        self.side = W.HTML(layout=W.Layout(width="50%"))
        self.code_view = W.HTML()

        self.search_box.observe(self._ui(lambda ch: self.search(ch["new"])), "value")
        self.b_focus.on_click(self._ui(lambda _b: self.focus(self.pattern or None)))
        self.b_ignore.on_click(self._ui(lambda _b: self.ignore(self.pattern or None)))
        self.b_hide.on_click(self._ui(lambda _b: self.hide(self.pattern or None)))
        self.d_focus.on_click(self._ui(lambda _b: self.focus(M.exact_pattern(self.profile, self.selected))))
        self.d_ignore.on_click(self._ui(lambda _b: self.ignore(M.exact_pattern(self.profile, self.selected))))
        self.d_hide.on_click(self._ui(lambda _b: self.hide(M.exact_pattern(self.profile, self.selected))))
        self.orient.observe(self._ui(lambda ch: self.set_view(orientation=ch["new"])), "value")
        self.invert.observe(self._ui(lambda ch: self.set_view(inverted=ch["new"])), "value")
        self.merge.observe(self._ui(lambda ch: self.merge_recursion(ch["new"])), "value")
        self.color.observe(self._ui(lambda ch: self.set_view(color=ch["new"])), "value")
        self.thread.observe(self._ui(lambda ch: self.set_thread(ch["new"] or None)), "value")
        self.minwidth.observe(self._ui(lambda ch: self.set_view(minwidth=None if ch["new"] == _AUTO else ch["new"])),
                              "value")
        self.b_undo.on_click(self._ui(lambda _b: self.undo()))
        self.b_reset.on_click(self._ui(lambda _b: self.reset()))

    def _children(self):
        rows = [
            W.HBox([self.search_box, self.b_focus, self.b_ignore, self.b_hide, self.status],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            W.HBox([self.orient, self.invert, self.merge, self.color, self.thread, self.minwidth],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            W.HBox([self.crumbs, self.b_undo, self.b_reset, self.click_focus],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            self.legend,
            self.chart_box,
        ]
        if self.range is not None:
            rows += [self.range]
        rows += [W.HBox([W.VBox([self.details, W.HBox([self.d_focus, self.d_ignore, self.d_hide])],
                                layout=W.Layout(width="50%")), self.side]),
                 self.code_view]
        return rows

    def _ui(self, fn):
        """Wrap a control callback: ignore echoes of our own updates, show errors in the status line."""
        def run(*args):
            if self._syncing:
                return
            try:
                fn(*args)
                self.message = ""
            except (NodeflameError, re.error, ValueError) as e:
                self.message = f"{type(e).__name__}: {e}"
            self._render_status()
        return run

    def _sync_controls(self):
        self._syncing = True
        try:
            self.search_box.value = self.pattern
            self.orient.value = self.view["orientation"]
            self.invert.value = self.view["inverted"]
            self.merge.value = "merge-recursion" in self.transforms
            self.color.value = self.view["color"]
            mw = self.view["minwidth"]
            if _mw_value(mw) not in [v for _l, v in self.minwidth.options]:
                self.minwidth.options = list(self.minwidth.options) + [(f"{100 * mw:g} %", mw)]
            self.minwidth.value = _mw_value(mw)
            th = next((t[len("thread="):] for t in self.transforms if t.startswith("thread=")), None)
            name = None
            if th is not None:
                name = next((x for x in self.base.threads if "^" + re.escape(x) + "$" == th), None)
            self.thread.value = name or ""
            if self.range is not None:
                sl = self.slice_ms()
                self.range.value = sl if sl is not None else (self.range.min, self.range.max)
            self._render_crumbs()
            self._render_status()
            self.code_view.value = ("<div style='font-size:12px'>replay: <code>" + html.escape(self.code)
                                    + "</code></div>")
            has_sel = self.selected >= 0
            for b in (self.d_focus, self.d_ignore, self.d_hide):
                b.disabled = not has_sel
        finally:
            self._syncing = False

    def _render_crumbs(self):
        crumbs = []
        for i, spec in enumerate(["all"] + self.transforms):
            label = spec if i == 0 else self.crumb_label(spec)
            b = W.Button(description=(label if len(label) <= 40 else label[:37] + "..."), tooltip=label,
                         layout=W.Layout(width="auto"), button_style="info" if i == len(self.transforms) else "")
            b.on_click(self._ui(lambda _b, i=i: self.set_transforms(self.transforms[:i])))
            crumbs.append(b)
        self.crumbs.children = crumbs

    def crumb_label(self, spec: str) -> str:
        """A transform as people read it: ``slice 120–480 ms`` (not ns since boot),
        ``focus handle /srv/app.js:10`` (an exact-name pattern shown unescaped)."""
        name, _, arg = str(spec).partition("=")
        if name == "slice" and self._t1:
            a, _, b = arg.partition(":")
            lo = (int(a) - self._t0) / 1e6 if a else 0.0
            hi = (int(b) - self._t0) / 1e6 if b else (self._t1 - self._t0) / 1e6
            return f"slice {lo:,.0f}–{hi:,.0f} ms"
        if not arg:
            return name
        return f"{name} {_unescape(arg)}"

    def _status_text(self):
        p = self.profile
        lay = self.layout_table
        unit = p.meta.get("unit") or "samples"
        n_other = int((lay["other"] > 0).sum())
        parts = [f"{p.total:,} {unit}", f"{len(lay):,} nodes drawn"]
        if n_other:
            parts.append(f"{n_other:,} 'other' nodes (min width {100 * self.minwidth_used:.3g} %)")
        if self.pattern:
            parts.append(f"<b style='color:{M.MATCH_COLOR}'>matched {100 * getattr(self, 'match_share', 0.0):.2f} %</b>")
        if self.message:
            parts.append(f"<span style='color:#c00'>{html.escape(self.message)}</span>")
        return " · ".join(parts)

    def _render_status(self):
        self.status.value = f"<span style='font-size:12px'>{self._status_text()}</span>"

    def _render_timeline(self):
        if self.timeline_chart is None:
            return
        key = tuple(t for t in self.transforms if not t.startswith("slice="))
        tl = self._timelines.get_or(key, lambda: self._timeline_for(key))
        if tl is None:
            self.chart.set_timeline([], [])
            return
        fig = M.timeline_figure(tl, selected_ms=self.slice_ms())
        self.chart.set_timeline(fig["data"], fig["layout"].get("shapes", []))

    def _details_html(self, p, func):
        s, callers, callees = M.func_details(p, func)
        unit = p.meta.get("unit") or "samples"

        def tab(df, title):
            if len(df) == 0:
                return f"<div><i>no {title}</i></div>"
            rows = "".join(f"<tr><td style='text-align:left'>{html.escape(str(f))}</td><td>{w:,}</td>"
                           f"<td>{pc:.2f} %</td></tr>" for f, w, pc in zip(df["function"], df["weight"], df["pct"]))
            return (f"<div style='margin-top:4px'><b>{title}</b><table style='font-size:11px'>"
                    f"<tr><th>function</th><th>{unit}</th><th>share</th></tr>{rows}</table></div>")

        head = (f"<b>{html.escape(s['name'])}</b> <span style='color:#666'>{html.escape(s['where'])}</span>"
                f" <span style='color:#666'>[{s['kind']}{' · ' + html.escape(s['package']) if s['package'] else ''}]</span><br>"
                f"self {s['self']:,} ({s['self_pct']:.2f} %) · total {s['total']:,} ({s['total_pct']:.2f} %)")
        return f"<div style='font-size:12px'>{head}{tab(callers, 'callers')}{tab(callees, 'callees')}</div>"

    def _render_details(self):
        if self.selected < 0:
            self.details.value = "<div style='font-size:12px;color:#666'>click a frame for its details</div>"
        else:
            self.details.value = self._details_html(self.profile, self.selected)
        for b in (self.d_focus, self.d_ignore, self.d_hide):
            b.disabled = self.selected < 0

    def top_table(self, n: int = 15) -> pd.DataFrame:
        t = self.profile.top(n)
        return pd.DataFrame({"function": self.profile.func_labels()[t.index.to_numpy()], "kind": t["kind"].astype(str),
                             "self_pct": t["self_pct"].round(2), "total_pct": t["total_pct"].round(2)})

    def _render_side(self):
        t = self.top_table(12)
        rows = "".join(f"<tr><td style='text-align:left'>{html.escape(str(f))}</td><td>{k}</td><td>{s:.2f}</td>"
                       f"<td>{tt:.2f}</td></tr>" for f, k, s, tt in zip(t["function"], t["kind"], t["self_pct"],
                                                                        t["total_pct"]))
        self.side.value = ("<div style='font-size:12px'><b>top functions</b><table style='font-size:11px'>"
                           "<tr><th>function</th><th>kind</th><th>self %</th><th>total %</th></tr>"
                           f"{rows}</table></div>")

    # --------------------------------------------------------------- events
    def _on_chart_event(self, msg):
        if msg.get("type") == "click":
            self._ui(lambda: self.click(msg.get("id")))()
        elif msg.get("type") == "select":
            x = msg.get("x")
            self._ui(lambda: self.set_slice_ms(*(sorted(x) if x else (None, None))))()

    def _on_range(self, ch):
        if self._syncing:
            return
        lo, hi = ch["new"]
        full = lo <= self.range.min and hi >= self.range.max
        self._ui(lambda: self.set_slice_ms(None, None) if full else self.set_slice_ms(lo, hi))()

    # ---------------------------------------------------------- static output
    def static_figure(self) -> dict:
        """The chart for places without a kernel: at most ``static_nodes`` nodes."""
        if len(self.layout_table) <= self.static_nodes:
            return self.figure
        p = self.profile
        lay, _mw = M.auto_layout(p, inverted=self.view["inverted"], minwidth=self.minwidth_used,
                                 max_nodes=self.static_nodes)
        trace = M.icicle_trace(p, lay, [], orientation=self.view["orientation"])
        trace["marker"]["colors"] = self._trace_colors(p, lay)
        self._extra_trace(trace, p, lay)
        return {"data": [trace], "layout": M.icicle_layout(height=M.flame_height(lay, self.height,
                                                                                  title=bool(self._title())),
                                                           title=self._title())}

    def to_html(self, path=None, *, include_plotlyjs="cdn", full_html: bool = True) -> str:
        """The chart and the top table as HTML (``include_plotlyjs=True`` inlines plotly.js, for offline use)."""
        from .static import figure_html
        out = figure_html(self.static_figure(), self.text_table(), include_plotlyjs=include_plotlyjs,
                          full_html=full_html, title=self.title or "nodeflame")
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(out)
        return out

    def _svg_deltas(self, p):
        return None

    def static_svg(self, *, width: int = 1200) -> str:
        """The view as the project's SVG flame graph (self-contained, labelled; what the
        notebook keeps when there is no kernel)."""
        from ..writers.svg import render_svg
        p = self.profile
        return render_svg(p, title=self._title() or ("Icicle Graph" if self.view["orientation"] == "icicle"
                                                      else "Flame Graph"),
                          subtitle=" → ".join(self.crumb_label(t) for t in self.transforms) or None,
                          width=width, minwidth=1.0, inverted=self.view["orientation"] == "icicle",
                          reverse=self.view["inverted"], deltas=self._svg_deltas(p), frameheight=18)

    def text_table(self) -> str:
        p = self.profile
        unit = p.meta.get("unit") or "samples"
        t = self.top_table(20)
        head = f"{p.total:,} {unit}" + (f" after {self.transforms}" if self.transforms else "")
        with pd.option_context("display.max_colwidth", 70, "display.width", 200):
            return head + "\n" + t.to_string(index=False)

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle = dict(bundle)
        bundle["text/plain"] = self.text_table()
        # offline, kernel-less and sanitised renderers: a static SVG (no CDN, no script), not plotly
        from .static import svg_html
        bundle["text/html"] = svg_html(self.static_svg(), self.text_table(), alt=self.code)
        return bundle

    def __repr__(self):
        return f"<nodeflame Explorer: {self.code}>"
