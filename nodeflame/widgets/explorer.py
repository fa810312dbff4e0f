"""The flame/icicle explorer: ipywidgets controls and a plotly chart over an :class:`ExplorerState`.

Everything the explorer knows and computes is in :mod:`nodeflame.widgets.state`
(plain Python, driven by the tests without a browser); this module is the view:
it builds the controls, turns their events into the state's operations, and
moves what the state draws into the widgets and the chart.

Every control that changes *what* is drawn is one of the model's transforms
(focus, ignore, hide, merge-recursion, slice, thread), kept as a list that is
shown as code and can be replayed: ``p.apply([...]).flame(...)``.  Controls
that only change *how* it is drawn (orientation, invert, colours, minimum
width, search highlighting) are the view options of that code's ``flame()``.
"""
from __future__ import annotations

import html
import re

import ipywidgets as W

from ..frames.errors import NodeflameError
from . import frontend
from . import model as M
from .chart import Chart, FigureWidget
from .state import DETAILS, FIGURE, MINWIDTHS, STYLE, ExplorerState
from .state import LRU as _LRU  # noqa: F401  (kept for code that imported it from here)
from .state import unescape as _unescape  # noqa: F401

_VIEWS_KEPT = 256   # charts whose late clicks can still be read in their own view
_AUTO = -1.0   # the min-width dropdown's value for "auto" (None would draw a blank dropdown)


def _mw_value(mw):
    return _AUTO if mw is None else mw


def _btn(desc, tip="", width="auto", style=""):
    return W.Button(description=desc, tooltip=tip, layout=W.Layout(width=width), button_style=style)


def _state_attr(name: str, doc: str = "", settable: bool = False):
    """A property of the explorer that is the state's attribute ``name``."""
    def get(self):
        return getattr(self.state, name)

    def set_(self, value):
        setattr(self.state, name, value)
    return property(get, set_ if settable else None, doc=doc or f"the state's ``{name}``")


class Explorer(W.VBox):
    """Interactive flame graph of a profile; see :func:`nodeflame.widgets.explorer`.

    ``state`` (an :class:`~nodeflame.widgets.state.ExplorerState`) holds the view;
    the explorer can be driven from code as well as from the controls: ``apply``,
    ``focus``, ``ignore``, ``hide``, ``undo``, ``reset``, ``set_view``, ``search``,
    ``click``, ``select``, ``set_thread``, ``set_slice_ms``.  ``profile`` is the
    transformed profile on screen, ``code`` the line that reproduces the view,
    ``figure`` the plotly figure (a dict)."""

    _state_class = ExplorerState

    def __init__(self, profile, *, timeline: bool = True, defer_panes: bool = True, **options):
        # plotly's front end first (once per kernel): the browser imports it while this computes
        frontend.library()
        self.state = self._state_class(profile, **options)
        self.defer_panes = defer_panes
        self.message = ""
        self._syncing = False
        self._generation = 0
        self._view_seq = 0
        self._views: dict[int, tuple] = {}
        self.chart_box = None
        self._timeline_drawn = None
        self._build_controls(timeline)
        self.refresh()   # the chart's FigureWidget is born holding the first figure
        self.chart_box.children = [self.chart.widget]
        super().__init__(children=self._children(), layout=W.Layout(width="100%"))

    # ------------------------------------------------------------- the state
    base = _state_attr("base", "the profile explored (before any transform)")
    name = _state_attr("name", settable=True)
    title = _state_attr("title", settable=True)
    view = _state_attr("view", "the view options: inverted, orientation, color, minwidth")
    pattern = _state_attr("pattern", "the search pattern ('' for none)")
    selected = _state_attr("selected", "the function in the details pane (-1: none)", settable=True)
    match_share = _state_attr("match_share", "share (0..1) of the weight the search matches")
    focus_on_click = _state_attr("focus_on_click", settable=True)
    profile = _state_attr("profile", "the profile on screen: the base with ``transforms`` applied")
    layout_table = _state_attr("layout_table", "the drawn nodes (``flame_layout`` rows, ``nid`` their plotly ids)")
    minwidth_used = _state_attr("minwidth_used")
    code = _state_attr("code", "Python that reproduces this view")
    height = _state_attr("height", settable=True)
    max_nodes = _state_attr("max_nodes", settable=True)
    static_nodes = _state_attr("static_nodes", settable=True)
    # caches, for benchmarks that measure cold changes
    _profiles = _state_attr("_profiles")
    _layouts = _state_attr("_layouts")
    _timelines = _state_attr("_timelines")
    _aggs = _state_attr("_aggs")

    @property
    def transforms(self) -> list[str]:
        """The transform list on screen (``p.apply(transforms)`` replays it)."""
        return self.state.transforms

    def crumb_label(self, spec: str) -> str:
        return self.state.crumb_label(spec)

    def slice_ms(self):
        return self.state.slice_ms()

    def top_table(self, n: int = 15):
        return self.state.top_table(n)

    def text_table(self) -> str:
        return self.state.text_table()

    def static_svg(self, *, width: int = 1200) -> str:
        return self.state.static_svg(width=width)

    @property
    def figure(self) -> dict:
        """The flame chart's plotly figure as a dict, as the browser has it."""
        return self.chart.figure

    def to_plotly(self):
        """The flame chart as a ``plotly.graph_objects.Figure``."""
        return self.chart.to_plotly()

    @property
    def widget(self):
        """The plotly ``go.FigureWidget`` on screen (icicle trace 0, timeline bars after it)."""
        return self.chart.widget

    # ------------------------------------------------- operations (state + redraw)
    def _do(self, what: str | None) -> "Explorer":
        if what == FIGURE:
            self.refresh()
        elif what == STYLE:
            self._restyle_chart()
            self._sync_controls()
        elif what == DETAILS:
            self._render_details()
        return self

    def apply(self, spec) -> "Explorer":
        """Add a transform (``'focus=...'``, ``('hide', regex)``, ...); thread and slice replace
        the current one of their kind."""
        return self._do(self.state.apply(spec))

    def set_transforms(self, specs) -> "Explorer":
        return self._do(self.state.set_transforms(specs))

    def focus(self, pattern: str | None = None) -> "Explorer":
        """Keep only stacks through ``pattern`` (default: the selected function)."""
        return self._do(self.state.focus(pattern))

    def ignore(self, pattern: str | None = None) -> "Explorer":
        return self._do(self.state.ignore(pattern))

    def hide(self, pattern: str | None = None) -> "Explorer":
        return self._do(self.state.hide(pattern))

    def merge_recursion(self, on: bool = True) -> "Explorer":
        return self._do(self.state.merge_recursion(on))

    def set_js_only(self, on: bool = True) -> "Explorer":
        """JavaScript only: native, V8 builtin and kernel frames hidden, their time charged to
        their JS callers (a ``hide=`` transform, first in the list; the breadcrumb reads
        "JavaScript only").  Walker, perf and stap captures open with it on."""
        return self._do(self.state.set_js_only(on))

    def set_collapse_packages(self, on: bool = True) -> "Explorer":
        """Collapse library code: each run of frames of one npm package (or of node's internals)
        becomes one frame named after it (the ``collapse-package`` transform)."""
        return self._do(self.state.set_collapse_packages(on))

    def set_thread(self, thread: str | None) -> "Explorer":
        """Show one thread (None: all)."""
        return self._do(self.state.set_thread(thread))

    def set_slice_ms(self, start_ms: float | None, end_ms: float | None) -> "Explorer":
        """Show only samples between two times, in ms since the first sample (None: all)."""
        return self._do(self.state.set_slice_ms(start_ms, end_ms))

    def undo(self) -> "Explorer":
        return self._do(self.state.undo())

    def reset(self) -> "Explorer":
        return self._do(self.state.reset())

    def set_view(self, **view) -> "Explorer":
        """Change ``inverted``, ``orientation``, ``color`` or ``minwidth``."""
        return self._do(self.state.set_view(**view))

    def search(self, pattern: str) -> "Explorer":
        """Highlight functions whose ``name file:line`` matches the regular expression."""
        return self._do(self.state.search(pattern))

    def click(self, node, view: tuple | None = None) -> "Explorer":
        """What a click on the chart does (see :meth:`ExplorerState.click`); ``view``: the view
        key of the chart it was made on (None: the chart shown now)."""
        return self._do(self.state.click(node, view))

    @property
    def clicks(self) -> list[dict]:
        """The clicks applied, oldest first: node id, function, transforms after it."""
        return self.state.clicks

    def select(self, node=None, *, func: int | None = None) -> "Explorer":
        """Show a function in the details pane: by plotly node id (a click) or by function id."""
        return self._do(self.state.select(node, func=func))

    # ------------------------------------------------------------- drawing
    def refresh(self) -> None:
        """Redraw from the transform list and view options: the chart (icicle and timeline strip,
        one plotly update) first, then (after the chart's message has gone out, when a kernel's
        event loop runs) the panes around it."""
        self._refresh_chart()
        self._generation += 1
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
        trace, layout = self.state.flame()
        # the chart names its view: a click made on it comes back with this number, so that a click
        # that arrives after later charts (a busy kernel) is read in the chart it was made on
        self._view_seq += 1
        self._views[self._view_seq] = self.state.view_key
        for old in [k for k in self._views if k <= self._view_seq - _VIEWS_KEPT]:
            del self._views[old]
        layout = dict(layout, meta={"nodeflame": {"view": self._view_seq,
                                                  "zoom": not self.state.focus_on_click}})
        # the timeline strip is in the same figure: sent with the flame, in one plotly update,
        # the browser draws the figure once (a second message, even of the strip alone, is a
        # second draw of the whole figure)
        self.chart.set_flame(trace, layout, timeline=self._timeline_update())
        self.legend.value = self.state.legend_html()
        if self.chart_box is not None:
            self.chart_box.layout.height = (f"{M.SCROLL_PX}px" if self.chart.total_height > M.SCROLL_PX
                                            else None)
        self._sync_controls()

    def _refresh_panes(self, warm: bool = False) -> None:
        self._render_details()
        self.side.value = self.state.side_html()
        if warm:  # idle time in a live kernel: make the invert toggle instant too
            st = self.state
            st._layout_for(tuple(st.transforms), st.profile, inverted=not st.view["inverted"])

    def _restyle_chart(self):
        self.legend.value = self.state.legend_html()
        self.chart.restyle(self.state.style())
        self._render_status()

    def _timeline_update(self):
        """The timeline strip's ``(bars, shapes)`` for the view, None when the strip shows it
        already (or there is none)."""
        if self.timeline_chart is None:
            return None
        tl = self.state.timeline()
        if tl is not None and tl is self._timeline_drawn:
            return None     # the strip shows this already (a view whose samples keep their leaf kinds)
        self._timeline_drawn = tl
        return tl if tl is not None else ([], [])

    def _render_timeline(self):
        tl = self._timeline_update()
        if tl is not None:
            self.chart.set_timeline(*tl)

    def _render_details(self):
        self.details.value = self.state.details_html()
        for b in (self.d_focus, self.d_ignore, self.d_hide, self.d_sandwich):
            b.disabled = self.selected < 0
        if self.extra_kind:
            self._refresh_extra()

    def _render_status(self):
        self.status.value = self.state.status_html(self.message)

    def _render_crumbs(self):
        crumbs = []
        for label, keep, current in self.state.crumbs():
            b = W.Button(description=(label if len(label) <= 40 else label[:37] + "..."), tooltip=label,
                         layout=W.Layout(width="auto"), button_style="info" if current else "")
            b.on_click(self._ui(lambda _b, keep=keep: self.set_transforms(self.transforms[:keep])))
            crumbs.append(b)
        self.crumbs.children = crumbs

    # ------------------------------------------------------------- controls
    def _build_controls(self, timeline: bool):
        st = self.state
        self.search_box = W.Text(value=st.pattern, placeholder="regex over 'name file:line'",
                                 description="search", continuous_update=False,
                                 layout=W.Layout(width="320px"))
        self.b_focus = _btn("focus", "keep only stacks through the matches (or the selected frame)")
        self.b_ignore = _btn("ignore", "drop stacks through the matches (or the selected frame)")
        self.b_hide = _btn("hide", "remove the matching frames, joining their callers and callees")
        self.status = W.HTML()
        self.orient = W.ToggleButtons(options=[("flame", "flame"), ("icicle", "icicle")],
                                      value=st.view["orientation"], style={"button_width": "60px"},
                                      tooltips=["root at the bottom", "root on top"])
        self.invert = W.Checkbox(value=st.view["inverted"], description="invert (bottom-up)", indent=False,
                                 layout=W.Layout(width="150px"))
        self.merge = W.Checkbox(value="merge-recursion" in st.transforms, description="merge recursion",
                                indent=False, layout=W.Layout(width="140px"))
        self.js = W.Checkbox(value=st.js_only, description="JavaScript only", indent=False,
                             layout=W.Layout(width="130px"),
                             tooltip="hide native, V8 builtin and kernel frames; their time goes to their JS callers")
        self.collapse = W.Checkbox(value=st.packages_collapsed, description="collapse packages", indent=False,
                                   layout=W.Layout(width="150px"),
                                   tooltip="one frame per run of an npm package's (or node's internal) frames")
        self.color = W.Dropdown(options=list(st.color_choices()), value=st.view["color"], description="colour",
                                layout=W.Layout(width="170px"))
        threads = st.threads
        # ipywidgets draws a None value as a blank dropdown: "" is "all threads", -1 is "auto"
        self.thread = W.Dropdown(options=[("all threads", "")] + [(t, t) for t in threads], value="",
                                 description="thread", layout=W.Layout(width="220px"),
                                 disabled=len(threads) < 2)
        widths = [(lab, _AUTO if v is None else v) for lab, v in MINWIDTHS]
        if st.view["minwidth"] not in dict(MINWIDTHS).values():   # a width given in code gets its own entry
            widths.append((f"{100 * st.view['minwidth']:g} %", st.view["minwidth"]))
        self.minwidth = W.Dropdown(options=widths, value=_mw_value(st.view["minwidth"]), description="min width",
                                   layout=W.Layout(width="170px"))
        self.crumbs = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.crumbs.add_class("nodeflame-crumbs")
        self.legend = W.HTML()
        self.b_undo = _btn("undo", "remove the last transform")
        self.b_reset = _btn("reset", "remove every transform")
        has_timeline = bool(timeline and st.has_timeline)
        import uuid
        self.static_key = uuid.uuid4().hex[:16]   # names the static output shown with this explorer
        self.chart = Chart(height=st.height, timeline=has_timeline, static_key=self.static_key)
        self.chart.on_event(self._on_chart_event)
        self.timeline_chart = self.chart if has_timeline else None   # the strip lives in the same figure
        # the chart grows with the stacks' depth; past SCROLL_PX it scrolls inside this box
        self.chart_box = W.Box(layout=W.Layout(width="100%", overflow="auto", display="block"))
        self.chart_box.add_class("nodeflame-chart")
        self.range = None
        self.click_focus = W.Checkbox(value=st.focus_on_click, description="click focuses", indent=False,
                                      layout=W.Layout(width="110px"))
        self.click_focus.observe(self._on_click_focus, "value")
        if has_timeline:
            span = (st.t1 - st.t0) / 1e6
            self.range = W.FloatRangeSlider(value=(0.0, span), min=0.0, max=span, step=max(span / 1000, 0.001),
                                            description="time (ms)", continuous_update=False, readout_format=".0f",
                                            layout=W.Layout(width="100%"))
            self.range.observe(self._on_range, "value")
        # the panes share the row; their tables keep one line per row and scroll sideways if need be
        pane = dict(width="50%", min_width="0", overflow="auto", padding="0 12px 0 0")
        self.details = W.HTML(layout=W.Layout(width="100%"))
        self.details.add_class("nodeflame-details")
        self.d_focus = _btn("focus on it", "focus on the selected function")
        self.d_ignore = _btn("ignore it", "drop stacks through the selected function")
        self.d_hide = _btn("hide it", "remove the selected function's frames")
        self.side = W.HTML(layout=W.Layout(**pane))
        self.d_sandwich = _btn("sandwich", "the selected function's callers above it and callees below it")
        self.b_stack = _btn("stack chart", "samples in time order: x time, y depth (timed captures)")
        self.b_stack.disabled = not st.has_stack_chart
        self.b_close_extra = _btn("close", "close the sandwich / stack chart")
        self.extra_kind = ""    # what the extra pane shows: '', 'sandwich' or 'stack chart'
        self.extra_figure = None   # its plotly figure dict
        # the sandwich / stack chart: a figure widget of the same kind as the chart (plotly.js comes
        # once per kernel through frontend.library), made anew for each figure shown
        self.extra = W.VBox(layout=W.Layout(width="100%"))
        self.extra.add_class("nodeflame-extra")
        self._details_box = W.VBox([self.details, W.HBox([self.d_focus, self.d_ignore, self.d_hide, self.d_sandwich,
                                                          self.b_stack])],
                                   layout=W.Layout(**pane))
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
        self.js.observe(self._ui(lambda ch: self.set_js_only(ch["new"])), "value")
        self.collapse.observe(self._ui(lambda ch: self.set_collapse_packages(ch["new"])), "value")
        self.color.observe(self._ui(lambda ch: self.set_view(color=ch["new"])), "value")
        self.thread.observe(self._ui(lambda ch: self.set_thread(ch["new"] or None)), "value")
        self.minwidth.observe(self._ui(lambda ch: self.set_view(minwidth=None if ch["new"] == _AUTO else ch["new"])),
                              "value")
        self.b_undo.on_click(self._ui(lambda _b: self.undo()))
        self.b_reset.on_click(self._ui(lambda _b: self.reset()))
        self.d_sandwich.on_click(self._ui(lambda _b: self.show_sandwich()))
        self.b_stack.on_click(self._ui(lambda _b: self.show_stack_chart()))
        self.b_close_extra.on_click(self._ui(lambda _b: self.close_extra()))

    def _children(self):
        rows = [
            W.HBox([self.search_box, self.b_focus, self.b_ignore, self.b_hide, self.status],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            W.HBox([self.orient, self.invert, self.merge, self.js, self.collapse, self.color, self.thread, self.minwidth],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            W.HBox([self.crumbs, self.b_undo, self.b_reset, self.click_focus],
                   layout=W.Layout(flex_flow="row wrap", align_items="center")),
            self.legend,
            self.chart_box,
        ]
        if self.range is not None:
            rows += [self.range]
        rows += [W.HBox([self._details_box, self.side], layout=W.Layout(width="100%")), self.extra,
                 self.code_view]
        return rows

    # ------------------------------------------------------------- side views
    def show_sandwich(self, func: int | None = None) -> dict:
        """Show the sandwich of ``func`` (default: the selected function) under the details pane;
        returns its figure dict.  Follows the selection until closed."""
        fig = self.state.sandwich_figure(func)
        self._show_extra("sandwich", fig)
        return fig

    def show_stack_chart(self) -> dict:
        """Show the time-ordered stack chart of the view (its thread, or the busiest) under the
        details pane; returns its figure dict.  Follows the transforms until closed."""
        fig = self.state.stack_chart_figure()
        self._show_extra("stack chart", fig)
        return fig

    def close_extra(self) -> None:
        self.extra_kind, self.extra_figure = "", None
        old = [c for c in self.extra.children if isinstance(c, FigureWidget)]
        self.extra.children = []
        for w in old:
            w.close()

    def _show_extra(self, kind, fig):
        widget = FigureWidget(data=fig["data"], layout=fig["layout"])
        old = [c for c in self.extra.children if isinstance(c, FigureWidget)]
        self.extra_kind, self.extra_figure = kind, fig
        self.extra.children = [W.HBox([W.HTML(f"<b>{html.escape(kind)}</b>"), self.b_close_extra],
                                      layout=W.Layout(align_items="center")), widget]
        for w in old:
            w.close()

    def _refresh_extra(self):
        """Redraw an open sandwich / stack chart for the current selection and transforms."""
        try:
            if self.extra_kind == "sandwich" and self.selected >= 0:
                self.show_sandwich()
            elif self.extra_kind == "stack chart":
                self.show_stack_chart()
        except (NodeflameError, ValueError) as e:
            self.close_extra()
            self.message = f"{type(e).__name__}: {e}"

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
            st = self.state
            self.search_box.value = st.pattern
            self.orient.value = st.view["orientation"]
            self.invert.value = st.view["inverted"]
            self.merge.value = "merge-recursion" in st.transforms
            self.js.value = st.js_only
            self.collapse.value = st.packages_collapsed
            self.color.value = st.view["color"]
            mw = st.view["minwidth"]
            if _mw_value(mw) not in [v for _l, v in self.minwidth.options]:
                self.minwidth.options = list(self.minwidth.options) + [(f"{100 * mw:g} %", mw)]
            self.minwidth.value = _mw_value(mw)
            self.thread.value = st.thread()
            if self.range is not None:
                sl = st.slice_ms()
                self.range.value = sl if sl is not None else (self.range.min, self.range.max)
            self._render_crumbs()
            self._render_status()
            self.code_view.value = ("<div style='font-size:12px'>replay: <code>" + html.escape(st.code)
                                    + "</code></div>")
            for b in (self.d_focus, self.d_ignore, self.d_hide, self.d_sandwich):
                b.disabled = st.selected < 0
        finally:
            self._syncing = False

    # --------------------------------------------------------------- events
    def _on_chart_event(self, msg):
        if msg.get("type") == "click":
            view = self._views.get(msg.get("view")) if msg.get("view") is not None else None
            if msg.get("view") is not None and view is None:
                self.message = "a click on a chart long since replaced was ignored"
                self._render_status()
                return
            self._ui(lambda: self.click(msg.get("id"), view))()
        elif msg.get("type") == "select":
            x = msg.get("x")
            self._ui(lambda: self.set_slice_ms(*(sorted(x) if x else (None, None))))()

    def _on_click_focus(self, ch):
        self.state.focus_on_click = bool(ch["new"])
        if self.chart.widget is not None:    # plotly's own click-zoom only while clicks do not focus
            meta = dict(self.chart.widget.layout.meta or {})
            meta["nodeflame"] = dict(meta.get("nodeflame") or {}, zoom=not self.state.focus_on_click)
            self.chart.widget.layout.meta = meta

    def _on_range(self, ch):
        if self._syncing:
            return
        lo, hi = ch["new"]
        full = lo <= self.range.min and hi >= self.range.max
        self._ui(lambda: self.set_slice_ms(None, None) if full else self.set_slice_ms(lo, hi))()

    # ---------------------------------------------------------- static output
    def static_figure(self) -> dict:
        """The chart for places without a kernel: at most ``static_nodes`` nodes."""
        return self.state.static_figure(self.figure if len(self.layout_table) <= self.static_nodes else None)

    def to_html(self, path=None, *, include_plotlyjs="cdn", full_html: bool = True) -> str:
        """The chart and the top table as HTML (``include_plotlyjs=True`` inlines plotly.js, for offline use)."""
        from .static import figure_html
        out = figure_html(self.static_figure(), self.text_table(), include_plotlyjs=include_plotlyjs,
                          full_html=full_html, title=self.title or "nodeflame")
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(out)
        return out

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

    def _ipython_display_(self):
        """Shown in a notebook as two outputs: the static chart (the project's SVG flame graph and
        the top table as ``text/html``, no script, no CDN), then the live explorer (the widget).
        The chart's front end hides the static output once it has drawn; where no kernel runs
        (a notebook reopened later, nbconvert, nbviewer, GitHub) the static output is what is
        shown.  In one output the widget would win wherever the widget manager is installed,
        and JupyterLab shows "model not found" for it once its kernel is gone."""
        from IPython.display import display
        from .static import svg_html
        table = self.text_table()
        display({"text/html": svg_html(self.static_svg(), table, alt=self.code, key=self.static_key),
                 "text/plain": table}, raw=True)
        bundle = W.VBox._repr_mimebundle_(self) or {}
        if isinstance(bundle, tuple):
            bundle = bundle[0]
        bundle = {k: v for k, v in dict(bundle).items() if k != "text/html"}
        bundle["text/plain"] = repr(self) + " (interactive: needs its kernel; the static chart is above)"
        display(bundle, raw=True)

    def __repr__(self):
        return f"<nodeflame Explorer: {self.code}>"
