"""The explorer's chart: one plotly ``FigureWidget`` holding the icicle and the timeline strip.

Trace 0 is the ``go.Icicle`` flame chart; when the profile is timed, traces
1..len(KINDS) are the timeline's stacked bars (one per kind, always present so
that a redraw is a restyle, never a delete/add) on an x axis below the
icicle.  One figure widget rather than two because every ``FigureWidget``
carries plotly's whole front-end bundle (about 5 MB) with it.

Clicks on the icicle come back as the loader's own custom message (never merged
or dropped while the kernel is busy; it names the chart's view, ``layout.meta``),
box selections on the timeline through plotly's own trace callbacks; both as
``on_event`` messages: ``{"type": "click", "id": <plotly id>, "view": <n>}`` and
``{"type": "select", "x": [a, b] | None}``.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import traitlets as T
from plotly.basedatatypes import Undefined

from ..frames.kinds import KINDS
from . import frontend

TIMELINE_PX = 130          # pixels given to the figure for the strip, below the icicle
TIMELINE_GAP_PX = 40       # between the strip (with its legend) and the icicle


def _nested(updates: dict) -> dict:
    """``{"marker.colors": x}`` -> ``{"marker": {"colors": x}}``."""
    out: dict = {}
    for path, value in updates.items():
        parts = path.split(".")
        o = out
        for k in parts[:-1]:
            o = o.setdefault(k, {})
        o[parts[-1]] = value
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    """``{"marker": {"colors": x}}`` -> ``{"marker.colors": x}`` (lists stay values)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def _array(v):
    """A list as a numpy array (whole numbers as int64, anything else as objects: plotly then
    validates, compares and serializes it whole, with the same JSON as the list); other values as
    they are."""
    if isinstance(v, list) and v:
        if type(v[0]) is int:
            a = np.array(v)
            if a.dtype == np.int64:
                return a
        out = np.empty(len(v), dtype=object)
        out[:] = v
        return out
    return v


def _arrays(d: dict) -> dict:
    """:func:`_array` over a nested dict."""
    return {k: _arrays(v) if isinstance(v, dict) else _array(v) for k, v in d.items()}


def _merge_restyles(a: tuple, b: tuple, n_traces: int) -> tuple[dict, list[int]]:
    """Two ``(restyle_data, trace_indexes)`` (``plotly_restyle``'s arguments: a list value is one
    value per trace, cycled; anything else is every trace's) as one, ``b`` winning; the traces
    a key does not touch get ``Undefined``."""
    per: dict[int, dict] = {}
    for data, idx in (a, b):
        idx = list(range(n_traces)) if idx is None else ([idx] if isinstance(idx, int) else list(idx))
        for k, v in data.items():
            for i, t in enumerate(idx):
                tv = v[i % len(v)] if isinstance(v, list) else v
                if tv is not Undefined:
                    per.setdefault(t, {})[k] = tv
    traces = sorted(per)
    keys = {k for d in per.values() for k in d}
    return {k: [per[t].get(k, Undefined) for t in traces] for k in keys}, traces


class FigureWidget(go.FigureWidget):
    """plotly's ``FigureWidget`` whose front-end module is a small loader of the kernel's one
    :class:`~nodeflame.widgets.frontend.PlotlyLibrary` (5 MB of plotly.js sent once per kernel,
    compressed, instead of once per chart); see :mod:`nodeflame.widgets.frontend`."""

    _esm = frontend.loader()
    _nf_library = T.Unicode("").tag(sync=True)
    # the key of the static output shown with this chart (hidden by the loader once it has drawn)
    _nf_static = T.Unicode("").tag(sync=True)

    # a restyle the batch_update being closed sends in its one plotly_update (restyle_with_batch)
    _nf_restyle = None

    def restyle_with_batch(self, restyle_data: dict, trace_indexes: list[int]) -> None:
        """Inside ``batch_update()``: send ``restyle_data`` (as ``plotly_restyle`` takes it: not
        validated again) in the batch's one ``plotly_update`` message, with the layout and trace
        properties set in the batch; a browser draws the figure once for all of it, where a
        ``plotly_restyle`` is a message and a draw of its own."""
        if not self._in_batch_mode:
            raise RuntimeError("restyle_with_batch is for inside batch_update()")
        self._nf_restyle = (restyle_data, list(trace_indexes))

    def plotly_update(self, restyle_data=None, relayout_data=None, trace_indexes=None, **kwargs):
        pending, self._nf_restyle = self._nf_restyle, None
        if pending is not None:
            restyle_data, trace_indexes = _merge_restyles((restyle_data or {}, trace_indexes), pending,
                                                          len(self.data))
        return super().plotly_update(restyle_data=restyle_data, relayout_data=relayout_data,
                                     trace_indexes=trace_indexes, **kwargs)

    @T.default("_nf_library")
    def _library_ref(self):
        # read when the figure's comm opens (its first state): the library is made and its comm
        # opened first, so the browser knows it before this figure
        return "IPY_MODEL_" + frontend.library().model_id


class Chart:
    """A ``go.FigureWidget`` (``self.widget``) kept in step with the explorer's figure dicts."""

    def __init__(self, *, height: int = 560, timeline: bool = False, static_key: str = ""):
        self.static_key = static_key
        self.height = int(height)        # of the icicle; set_flame takes it from the layout it gets
        self.timeline = bool(timeline)
        self._handlers = []
        self.sent_figures = 0     # how many whole-figure updates went out (for tests and the benchmark)
        self.sent_restyles = 0
        self._last_select = None
        # created by the first set_flame with the whole figure in its initial state, so that the
        # widget's comm_open (and any saved widget state) carries it, not a trail of messages
        self.widget = None

    # ------------------------------------------------------------- events
    def on_event(self, fn) -> None:
        """Call ``fn(message)`` for each click/select coming from the browser."""
        self._handlers.append(fn)

    def _emit(self, msg):
        for fn in self._handlers:
            fn(msg)

    def _on_click(self, trace, points, _state=None):
        inds = list(getattr(points, "point_inds", []) or [])
        if not inds:
            return
        ids = trace.ids
        i = inds[0]
        node = ids[i] if ids is not None and 0 <= i < len(ids) else None
        self._emit({"type": "click", "id": None if node is None else str(node)})

    def _on_select(self, _trace, points, selector=None):
        xr = getattr(selector, "xrange", None)
        if xr is None:
            xs = list(getattr(points, "xs", []) or [])
            xr = (min(xs), max(xs)) if xs else None
        key = None if xr is None else (float(min(xr)), float(max(xr)))
        if key == self._last_select:  # every bar trace reports the same selection
            return
        self._last_select = key
        self._emit({"type": "select", "x": None if key is None else list(key)})

    def _on_deselect(self, _trace, _points, *_a):
        if self._last_select is None:
            return
        self._last_select = None
        self._emit({"type": "select", "x": None})

    def _on_msg(self, _widget, content, _buffers=None):
        # the loader's own click message (see frontend.LOADER): custom messages are never merged
        # or dropped by the widget manager's throttle, which keeps only the last of the state
        # updates (plotly's own _js2py_pointsCallback) a busy kernel has not answered yet
        if isinstance(content, dict) and content.get("event") == "nodeflame-click":
            self._emit({"type": "click", "id": None if content.get("id") is None else str(content["id"]),
                        "view": content.get("view")})

    def _connect(self):
        data = self.widget.data
        self.widget.on_msg(self._on_msg)   # clicks: the loader's message, not plotly's on_click
        for tr in data[1:]:
            tr.on_selection(self._on_select)
            tr.on_deselect(self._on_deselect)

    # ------------------------------------------------------------ drawing
    @property
    def total_height(self) -> int:
        """The figure's height in pixels: the icicle's plus the timeline strip's."""
        return self.height + (TIMELINE_PX if self.timeline else 0)

    @property
    def _tl_fraction(self) -> float:
        return (TIMELINE_PX - TIMELINE_GAP_PX) / self.total_height

    def _layout(self, layout: dict) -> dict:
        lay = dict(layout)
        self.height = int(lay.get("height") or self.height)
        lay["height"] = self.total_height
        TIMELINE_FRACTION = self._tl_fraction
        if self.timeline:
            lay.update({
                "xaxis": {"domain": [0, 1], "anchor": "y", "title": {"text": "ms", "standoff": 2},
                          "fixedrange": True},
                "yaxis": {"domain": [0, TIMELINE_FRACTION], "fixedrange": True},
                "barmode": "stack", "bargap": 0, "dragmode": "select", "selectdirection": "h",
                "showlegend": True,
                "legend": {"orientation": "h", "x": 0, "y": TIMELINE_FRACTION + 0.005, "yanchor": "bottom",
                           "font": {"size": 10}},
            })
        return lay

    def _icicle(self, trace: dict) -> dict:
        tr = {k: v for k, v in trace.items() if k != "type"}
        if self.timeline:
            tr["domain"] = {"x": [0, 1], "y": [TIMELINE_PX / self.total_height, 1]}
        return tr

    def _timeline_restyle(self, bars: list[dict], names=None) -> dict:
        """The bar traces' restyle for the timeline ``bars`` (one dict per kind present): every
        bar trace (named ``names``: the figure's) gets each key (the kinds absent: no data, no
        legend entry), one value per trace."""
        by_kind = {b["name"]: b for b in bars}
        names = [tr.name for tr in self.widget.data[1:]] if names is None else names
        keys = sorted({k for b in bars for k in _flat(b) if k not in ("type", "name")} | {"x", "y"})
        upd = {k: [] for k in keys}
        upd["showlegend"] = []
        for name in names:
            b = _flat(by_kind.get(name, {}))
            for k in keys:
                upd[k].append(b.get(k, [] if k in ("x", "y") else None))
            upd["showlegend"].append(name in by_kind)
        return upd

    def _initial_bars(self, bars: list[dict] | None) -> list:
        """The timeline's bar traces, one per kind, holding ``bars`` (None: empty) as
        :meth:`_timeline_restyle` would set them on empty ones."""
        upd = self._timeline_restyle(bars, names=KINDS) if bars is not None else {}
        out = []
        for i, kind in enumerate(KINDS):
            d = {"name": kind, "x": [], "y": [], "showlegend": False, "marker": {"line": {"width": 0}}}
            for path, vals in upd.items():
                *parents, last = path.split(".")
                o = d
                for k in parents:
                    o = o.setdefault(k, {})
                if vals[i] is None:
                    o.pop(last, None)
                else:
                    o[last] = vals[i]
            out.append(go.Bar(**d))
        return out

    def set_flame(self, trace: dict, layout: dict, timeline: tuple | None = None) -> None:
        """Replace the icicle (trace 0) and the figure's layout; with ``timeline`` (``(bars,
        shapes)`` as :meth:`set_timeline` takes them), the timeline strip's bars and selection
        too.  One plotly update: the browser draws the figure once."""
        w = self.widget
        lay = self._layout(layout)     # first: it sets the height the icicle's domain depends on
        tr = self._icicle(trace)
        # back to the root on every redraw: plotly's own click-to-zoom moves the browser's level
        # without telling the kernel, and a restyle of an unchanged value ("r" again) is never
        # sent; "r" and None both mean the root, so alternating them always sends the reset
        if "level" in tr:
            tr["level"] = "r" if self.sent_figures % 2 == 0 else None
        if not self.timeline:
            timeline = None
        if w is None:
            bars = self._initial_bars(timeline[0] if timeline is not None else None) if self.timeline else []
            if timeline is not None:
                lay["shapes"] = timeline[1]
            # numpy arrays: plotly validates them whole (lists element by element; the same state)
            self.widget = FigureWidget(data=[go.Icicle(**_arrays(tr))] + bars, layout=lay)
            self.widget._nf_static = self.static_key
            self.widget._config = {"displaylogo": False, "responsive": True, "scrollZoom": False}
            self._connect()
        else:
            # one plotly_update (Plotly.update in the browser: one draw) for the icicle, the
            # timeline's bars and the layout; each plotly_restyle / relayout is a message and a
            # draw of its own in the browser.
            # the traces were validated when they were added and keep the same keys: the restyle
            # skips re-validating thousands of array elements (3x faster than trace.update);
            # arrays go as numpy arrays, which plotly compares and serializes whole (one tolist()
            # each: the same JSON as the lists, int64 is never sent as a binary buffer)
            restyle, indexes = {k: [_array(v)] for k, v in _flat(tr).items()}, [0]
            if timeline is not None:
                restyle, indexes = _merge_restyles((restyle, indexes), (self._timeline_restyle(timeline[0]),
                                                                        list(range(1, len(w.data)))), len(w.data))
            # only the layout's changed properties (as the figure holds them now: the browser's
            # relayouts included) are validated and sent, in the same message (batch_update)
            changed = {k: v for k, v in lay.items() if w._layout.get(k) != v}
            with w.batch_update():
                if changed:
                    w.layout.update(changed)
                if timeline is not None:
                    w.layout.shapes = timeline[1]
                w.restyle_with_batch(restyle, indexes)
        self.sent_figures += 1

    def restyle(self, updates: dict) -> None:
        """Small changes of the icicle (colours after a search, orientation)."""
        if self.widget is not None and self.widget.data:
            self.widget.plotly_restyle({k: [_array(v)] for k, v in updates.items()}, trace_indexes=[0])
        self.sent_restyles += 1

    def set_timeline(self, bars: list[dict], shapes: list[dict]) -> None:
        """Replace the timeline's bars (one dict per kind present) and its selection shape (one
        plotly update; the explorer sends them with the flame, :meth:`set_flame`)."""
        if not self.timeline or self.widget is None or not self.widget.data:
            return
        w = self.widget
        with w.batch_update():
            w.layout.shapes = shapes
            w.restyle_with_batch(self._timeline_restyle(bars), list(range(1, len(w.data))))

    @property
    def figure(self) -> dict:
        """The figure as a plain dict ({"data": [...], "layout": {...}}), as the browser has it."""
        return self.widget.to_plotly_json()

    def to_plotly(self):
        """The current figure as a ``plotly.graph_objects.Figure``."""
        return go.Figure(self.widget)
