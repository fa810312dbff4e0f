"""The explorer's state and controller, in plain Python: no ipywidgets, no plotly.

:class:`ExplorerState` holds everything the explorer shows: the base profile,
the transform list (replayable as ``p.apply([...])``), the view options, the
search pattern, the selected function, and the caches that make a change cost
one transform.  Each operation (``apply``, ``set_view``, ``search``, ``click``,
...) changes the state and returns what must be redrawn:

- ``FIGURE``: the chart's shape changed (a transform, invert, min width);
- ``STYLE``: colours or orientation only (search, colouring, flame/icicle);
- ``DETAILS``: the selection only (the details pane).

and the drawing methods (``flame()``, ``style()``, ``legend_html()``,
``details_html()``, ``timeline()``, ``static_svg()``, ...) give plain dicts and
HTML strings.  :class:`nodeflame.widgets.explorer.Explorer` is a thin view: it
builds the controls, moves these results into widgets and a plotly figure, and
turns control events into these calls.  Tests drive the state directly, without
a kernel, a browser or a widget library.
"""
from __future__ import annotations

import copy
import html
import re
from collections import OrderedDict

import numpy as np
import pandas as pd

from ..frames.ops import with_samples
from ..frames.diff import diff as make_diff
from ..frames.errors import NodeflameError, TransformError
from ..frames.transforms import Transform, resample
from ..frames.transforms import parse_slice
from . import model as M
from .fastviews import top

FIGURE, STYLE, DETAILS = "figure", "style", "details"
_REPLACE_ONE = ("thread", "slice")  # at most one of these in the list: setting it replaces the old one
MINWIDTHS = (("auto", None), ("0.01 %", 1e-4), ("0.05 %", 5e-4), ("0.1 %", 1e-3), ("0.5 %", 5e-3),
             ("1 %", 1e-2))
_CACHE = 8
# the details and top tables: one line per row, long names cut with an ellipsis (the full name
# in the tooltip), numbers right-aligned in fixed columns; wide tables scroll in their pane
TABLE_STYLE = ("font-size:11px;border-collapse:collapse;table-layout:fixed;width:100%")
NAME_TD = ("text-align:left;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:0;"
           "padding:0 6px 0 0")
NUM_TD = "text-align:right;white-space:nowrap;padding:0 0 0 6px"


# "JavaScript only" (the Firefox Profiler's JS-only call tree, as a replayable transform): hide every
# function whose display name ("name file:line") does not end in a JavaScript location (a .js/.mjs/
# .cjs/.ts file, node: internals, a URL) and is not a pseudo-frame such as "(garbage collector)":
# native code, V8 builtins and kernel frames are removed and their time goes to their JS caller.
# Samples without any JavaScript frame leave the view.
JS_LOCATION = r"(?:\S+\.(?:[cm]?[jt]sx?)|node:\S+|(?:https?|file|webpack)://\S+)(?::\d+)?$"
JS_ONLY = "hide=^(?!\\(|.* " + JS_LOCATION + ")"
# "collapse library": every npm package and node's internals, one frame per run of their frames
COLLAPSE_PACKAGES = "collapse-package"
# backends whose captures carry native and kernel frames: their explorer opens on the JS-only view
NATIVE_BACKENDS = ("walker", "perf", "stap")


def default_transforms(profile) -> list[str]:
    """The transforms an explorer opens with when none are given: JavaScript only for captures
    with native stacks (walker, perf, stap), whose 15-20 frames of C++ scaffolding under every JS
    frame bury the code people wrote; nothing otherwise."""
    if profile.meta.get("backend") in NATIVE_BACKENDS and \
            profile.funcs["kind"].astype(str).isin(["native", "kernel"]).any():
        return [JS_ONLY]
    return []


class LRU(OrderedDict):
    """A small least-recently-used cache: ``get_or(key, make)``."""

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        v = self[key] = make()
        while len(self) > _CACHE:
            self.popitem(last=False)
        return v


def unescape(rx: str) -> str:
    """``^handle\\ /srv/app\\.js:10$`` -> ``handle /srv/app.js:10`` when the pattern is an exact,
    escaped literal (what clicks and the details buttons make); other patterns stay as written."""
    inner = rx[1:-1] if rx.startswith("^") and rx.endswith("$") and not rx.endswith("\\$") else None
    if inner is not None:
        lit = re.sub(r"\\(.)", r"\1", inner)
        if re.escape(lit) == inner:
            return lit
    return rx


def name_cell(text: str, width: str | None = None) -> str:
    """A table cell holding a function name on one line, cut with an ellipsis, whole in the tooltip."""
    t = html.escape(str(text))
    w = f"width:{width};" if width else ""
    return f"<td style='{NAME_TD};{w}' title='{t}'>{t}</td>"


def table_html(head: list[tuple[str, str]], rows: list[list[str]]) -> str:
    """An HTML table with fixed column widths: ``head`` is [(title, css width)], the first column
    the name (give it '' to take the rest), ``rows`` cells already rendered (``<td>``)."""
    cols = "".join(f"<col style='width:{w}'>" if w else "<col>" for _t, w in head)
    th = "".join(f"<th style='{'text-align:left' if i == 0 else 'text-align:right'};white-space:nowrap'>"
                 f"{html.escape(t)}</th>" for i, (t, _w) in enumerate(head))
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f"<table style='{TABLE_STYLE}'><colgroup>{cols}</colgroup><tr>{th}</tr>{body}</table>"


def num_cell(text: str, style: str = "") -> str:
    return f"<td style='{NUM_TD};{style}'>{text}</td>"


def aggregate_rows(s: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """(one row per distinct (stack, thread) of the samples table ``s``, in (stack, thread code)
    order, weights summed, times 0, column ``_row`` numbering them; the row of each sample).
    Counted in a table of every (stack, thread) pair when it is not much larger than ``s``
    (no sort of the samples), else sorted."""
    cats = s["thread"].cat.categories
    stack = s["stack"].to_numpy()
    width = len(cats) + 1
    key = np.multiply(stack, width, dtype=np.int64)   # one array, worked on in place
    key += s["thread"].cat.codes.to_numpy()
    key += 1                                 # code -1 (no thread) sorts first within its stack
    room = (int(stack.max()) + 1) * width if len(stack) else 0
    if room <= 4 * len(key) + 1024:
        seen = np.bincount(key, minlength=room) > 0
        uniq = np.flatnonzero(seen)
        rank = np.cumsum(seen) - 1
        inv = rank[key]
    else:
        uniq, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1)
    w = np.bincount(inv, weights=s["weight"].to_numpy(), minlength=len(uniq)).astype(np.int64)
    agg = pd.DataFrame({"stack": uniq // width, "time_ns": np.zeros(len(uniq), np.int64), "weight": w,
                        "thread": pd.Categorical.from_codes(uniq % width - 1, dtype=s["thread"].dtype),
                        "_row": np.arange(len(uniq))})
    return agg, inv


class ExplorerState:
    """What an explorer of ``profile`` shows; see the module docstring.  The options are
    :func:`nodeflame.widgets.explorer`'s."""

    DEFAULT_COLOR = "kind"

    def __init__(self, profile, *, transforms=None, inverted: bool = False, orientation: str = "flame",
                 color: str | None = None, minwidth: float | None = None, search: str = "",
                 max_nodes: int = 6000, height: int = 560, name: str = "p", title: str | None = None,
                 static_nodes: int = 3000, focus_on_click: bool = True, aggregate: bool | None = None):
        color = self.DEFAULT_COLOR if color is None else color
        if orientation not in ("flame", "icicle"):
            raise ValueError("orientation must be 'flame' (root at the bottom) or 'icicle' (root on top)")
        if color not in self.color_choices():
            raise ValueError(f"color must be one of {', '.join(self.color_choices())}, not {color!r}")
        if profile.total <= 0:
            raise NodeflameError("nothing to draw: the profile has no samples")
        if search:
            re.compile(search)
        self.base = profile
        self.name = name
        self.title = title
        self.max_nodes = int(max_nodes)
        self.static_nodes = int(static_nodes)
        self.focus_on_click = bool(focus_on_click)
        self.height = int(height)
        if transforms is None:
            transforms = default_transforms(profile)
        self.transforms: list[str] = [str(t) for t in (Transform.parse(s) for s in
                                                          ([transforms] if isinstance(transforms, str) else transforms))]
        self.view = {"inverted": bool(inverted), "orientation": orientation, "color": color, "minwidth": minwidth}
        self.pattern = search or ""
        self.selected = -1          # function (id in self.profile) shown in the details pane
        self.clicks: list[dict] = []   # the clicks applied, oldest first (node, function, transforms after)
        self._matches = LRU()
        self._profiles = LRU()
        self._layouts = LRU()
        self._timelines = LRU()
        self._aggs = LRU()
        self._ncolors = LRU()
        self._tl_bins = None
        self._tl_last = None   # (leaf kind of each aggregate row, its timeline): the last one computed
        self._tl_drawn = None  # (timeline, slice, bars and shapes): the last one drawn
        n_rows = len(profile.samples)
        self._aggregate = bool(aggregate if aggregate is not None else (
            profile.meta.get("timed") and n_rows > 50_000))
        timed = bool(profile.meta.get("timed")) and n_rows > 0
        self.t0 = int(profile.samples["time_ns"].min()) if timed else 0
        self.t1 = int(profile.samples["time_ns"].max()) if timed else 0
        self._profile_for(tuple(self.transforms))   # a bad transform list raises here

    # ------------------------------------------------------------ the model
    @classmethod
    def color_choices(cls):
        return M.COLOR_BY

    @property
    def default_view(self) -> dict:
        return {"inverted": False, "orientation": "flame", "color": self.DEFAULT_COLOR, "minwidth": None}

    @property
    def has_timeline(self) -> bool:
        return self.t1 > self.t0

    @property
    def threads(self) -> list[str]:
        return list(self.base.threads)

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
        """(aggregate, row of each source sample, source profile) for a slice ('' = none; a slice's
        aggregate is made from the whole one's, and comes without the other two)."""
        def make():
            if sl:
                return self._sliced_aggregate(sl), None, None
            s = self.base.samples
            agg, inv = aggregate_rows(s)
            return with_samples(self.base, agg, timed=False, aggregated_from_rows=len(s)), inv, self.base
        return self._aggs.get_or(sl, make)

    def _sliced_aggregate(self, sl: str):
        """The aggregate of ``base.apply([sl])``: its rows are the whole aggregate's rows with a
        sample in the slice, their weights summed over those samples; the stacks compacted as the
        slice would (``transforms.resample``).  The same Profile as aggregating the sliced base,
        without filtering and compacting every sample row first."""
        agg0, inv0, src = self._agg_entry("")
        s = src.samples
        start, end = parse_slice(Transform.parse(sl).arg)
        t = s["time_ns"].to_numpy()
        keep = np.ones(len(t), bool)
        if start is not None:
            keep &= t >= start
        if end is not None:
            keep &= t < end
        n0 = len(agg0.samples)
        cnt = np.bincount(inv0[keep], minlength=n0)
        w = np.bincount(inv0[keep], weights=s["weight"].to_numpy()[keep], minlength=n0)
        rows = np.flatnonzero(cnt)
        a = agg0.samples
        th = a["thread"]
        agg = pd.DataFrame({"stack": a["stack"].to_numpy()[rows], "time_ns": np.zeros(len(rows), np.int64),
                            "weight": w[rows].astype(np.int64),
                            "thread": pd.Categorical.from_codes(th.cat.codes.to_numpy()[rows], dtype=th.dtype),
                            "_row": np.arange(len(rows))})
        meta = copy.deepcopy(src.meta)
        meta["transforms"] = list(meta.get("transforms") or []) + [sl]
        meta.update(timed=False, aggregated_from_rows=int(keep.sum()))
        return resample(agg0, agg, meta)

    def _agg_for(self, sl: str):
        """The (sliced) base with samples summed per (stack, thread); column ``_row`` numbers the rows."""
        return self._agg_entry(sl)[0]

    def _timeline_for(self, key: tuple):
        """The timeline of the samples ``key`` keeps (ignoring its slice: the strip shows the whole capture)."""
        rest = tuple(t for t in key if not t.startswith("slice="))
        if not self._aggregate:
            p = self._profile_for(rest)
            return M.timeline(p, t0_ns=self.t0, t1_ns=self.t1)
        p = self._agg_chain("", rest)
        agg, inv, src = self._agg_entry("")
        kind_of_row = np.full(len(agg.samples), -1, np.int64)
        kind_of_row[p.samples["_row"].to_numpy()] = M.leaf_kinds(p)
        last = self._tl_last
        if last is not None and np.array_equal(last[0], kind_of_row):
            return last[1]   # every sample row keeps its leaf's kind (merge recursion, most hides)
        s = src.samples
        if self._tl_bins is None:   # the samples' bins on the strip: the same for every view
            self._tl_bins = M.timeline_bins(s["time_ns"].to_numpy(), 200, self.t0, self.t1)
        tl = M.timeline_counts(s["time_ns"].to_numpy(), s["weight"].to_numpy(), kind_of_row[inv],
                               t0_ns=self.t0, t1_ns=self.t1, bin_of=self._tl_bins)
        self._tl_last = (kind_of_row, tl)
        return tl

    @property
    def profile(self):
        """The profile on screen: the base profile with ``transforms`` applied."""
        return self._profile_for(tuple(self.transforms))

    def _layout_for(self, key, p, inverted=None, minwidth=...):
        inverted = self.view["inverted"] if inverted is None else bool(inverted)
        minwidth = self.view["minwidth"] if minwidth is ... else minwidth

        def make():
            lay, mw = M.auto_layout(p, inverted=inverted, minwidth=minwidth, max_nodes=self.max_nodes)
            return lay.assign(nid=M.node_ids(p, lay)), mw
        return self._layouts.get_or((key, inverted, minwidth), make)

    @property
    def view_key(self) -> tuple:
        """What the chart's node ids depend on: (transforms, inverted, minwidth).  A click names the
        view it was made in with this key (see :meth:`click`)."""
        return (tuple(self.transforms), self.view["inverted"], self.view["minwidth"])

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
        view = {k: v for k, v in self.view.items() if v != self.default_view[k]}
        if self.pattern:
            view["search"] = self.pattern
        return M.code_for(self.name, self.transforms, view)

    # ------------------------------------------------------------ transforms
    def apply(self, spec) -> str:
        """Add a transform (``'focus=...'``, ``('hide', regex)``, ...); thread and slice replace
        the current one of their kind."""
        t = Transform.parse(spec)
        new = list(self.transforms)
        if t.name in _REPLACE_ONE:
            new = [x for x in new if Transform.parse(x).name != t.name]
        new.append(str(t))
        return self.set_transforms(new)

    def set_transforms(self, specs) -> str:
        new = [str(Transform.parse(s)) for s in specs]
        self._profile_for(tuple(new))  # raise before changing anything
        self.transforms = new
        self.selected = -1
        return FIGURE

    def pattern_or_selection(self, pattern=None) -> str:
        if pattern:
            return pattern
        if self.selected >= 0:
            return M.exact_pattern(self.profile, self.selected)
        if self.pattern:
            return self.pattern
        raise TransformError("select a frame or type a regular expression first")

    def focus(self, pattern: str | None = None) -> str:
        """Keep only stacks through ``pattern`` (default: the selected function)."""
        return self.apply(("focus", self.pattern_or_selection(pattern)))

    def ignore(self, pattern: str | None = None) -> str:
        return self.apply(("ignore", self.pattern_or_selection(pattern)))

    def hide(self, pattern: str | None = None) -> str:
        return self.apply(("hide", self.pattern_or_selection(pattern)))

    def merge_recursion(self, on: bool = True) -> str:
        new = [t for t in self.transforms if t != "merge-recursion"]
        return self.set_transforms(new + ["merge-recursion"] if on else new)

    @property
    def js_only(self) -> bool:
        """Whether the view is JavaScript only (:data:`JS_ONLY` in the transforms)."""
        return JS_ONLY in self.transforms

    def set_js_only(self, on: bool = True) -> str:
        """JavaScript only: native code, V8 builtins and kernel frames hidden, their time charged
        to their JS callers (first in the list, so that the other transforms see JS frames)."""
        rest = [t for t in self.transforms if t != JS_ONLY]
        return self.set_transforms(([JS_ONLY] if on else []) + rest)

    @property
    def packages_collapsed(self) -> bool:
        """Whether every package (and node's internals) is collapsed into one frame per run
        (:data:`COLLAPSE_PACKAGES` in the transforms)."""
        return COLLAPSE_PACKAGES in self.transforms

    def set_collapse_packages(self, on: bool = True) -> str:
        """Collapse library code: each run of consecutive frames of one npm package (or of node's
        own ``node:`` internals) becomes one frame named after it, as the Firefox Profiler's
        "collapse library" does (the ``collapse-package`` transform).  It goes right after
        "JavaScript only" (whose test is the frames' JS locations, which collapsed frames have no
        longer), before the other transforms, so that focus and search see the collapsed frames."""
        rest = [t for t in self.transforms if t != COLLAPSE_PACKAGES]
        if not on:
            return self.set_transforms(rest)
        at = 1 if rest[:1] == [JS_ONLY] else 0
        return self.set_transforms(rest[:at] + [COLLAPSE_PACKAGES] + rest[at:])

    def set_thread(self, thread: str | None) -> str:
        """Show one thread (None: all)."""
        if thread is None:
            return self.set_transforms([t for t in self.transforms if not t.startswith("thread=")])
        return self.apply(("thread", "^" + re.escape(thread) + "$"))

    def thread(self) -> str:
        """The thread shown ('' when all are)."""
        th = next((t[len("thread="):] for t in self.transforms if t.startswith("thread=")), None)
        if th is None:
            return ""
        return next((x for x in self.base.threads if "^" + re.escape(x) + "$" == th), "")

    def set_slice_ms(self, start_ms: float | None, end_ms: float | None) -> str:
        """Show only samples between two times, in ms since the first sample (None: all)."""
        rest = [t for t in self.transforms if not t.startswith("slice=")]
        if start_ms is None and end_ms is None:
            return self.set_transforms(rest)
        if not self.t1:
            raise TransformError("slice: this profile has no sample times")
        a = "" if start_ms is None else str(self.t0 + int(round(start_ms * 1e6)))
        b = "" if end_ms is None else str(self.t0 + int(round(end_ms * 1e6)))
        return self.set_transforms(rest + [f"slice={a}:{b}"])

    def slice_ms(self):
        """The current slice as (start_ms, end_ms), None when not sliced."""
        for t in self.transforms:
            if t.startswith("slice="):
                a, _, b = t[6:].partition(":")
                lo = (int(a) - self.t0) / 1e6 if a else 0.0
                hi = (int(b) - self.t0) / 1e6 if b else (self.t1 - self.t0) / 1e6
                return lo, hi
        return None

    def undo(self) -> str:
        return self.set_transforms(self.transforms[:-1])

    def reset(self) -> str:
        return self.set_transforms([])

    # ------------------------------------------------------------------ view
    def set_view(self, **view) -> str | None:
        """Change ``inverted``, ``orientation``, ``color`` or ``minwidth``."""
        for k, v in view.items():
            if k not in self.view:
                raise TypeError(f"unknown view option {k!r}; expected one of {', '.join(self.view)}")
            if k == "color" and v not in self.color_choices():
                raise ValueError(f"color must be one of {', '.join(self.color_choices())}")
            if k == "orientation" and v not in ("flame", "icicle"):
                raise ValueError("orientation must be 'flame' or 'icicle'")
        structural = any(k in ("inverted", "minwidth") and self.view[k] != v for k, v in view.items())
        self.view.update(view)
        if structural:
            self.selected = -1
            return FIGURE
        return STYLE

    def search(self, pattern: str) -> str:
        """Highlight functions whose ``name file:line`` matches the regular expression."""
        if pattern:
            re.compile(pattern)
        self.pattern = pattern or ""
        return STYLE

    def click(self, node, view: tuple | None = None) -> str:
        """What a click on the chart does: with ``focus_on_click`` (the default) focus on the
        clicked frame's function (a ``focus=`` transform; the breadcrumbs lead back out), and
        select it for the details pane.  Clicks on the root or an "other" node only clear the
        selection.

        ``view`` is the :attr:`view_key` of the chart the click was made on, when it is not the
        one shown now: clicks made while the kernel was busy arrive after the chart they were made
        on has been replaced by an earlier click's.  Each is then read in its own chart, and
        focuses from that chart's view (``its transforms + focus=<the clicked function>``), as it
        would have had the kernel answered at once; so a burst of clicks is applied in order and
        none is lost or lands on whatever another chart has at that node id.  Every applied click
        is appended to :attr:`clicks`."""
        if view is not None:
            view = (tuple(view[0]), bool(view[1]), view[2])
        if view is None or view == self.view_key:
            key, p, lay = tuple(self.transforms), self.profile, self.layout_table
        else:
            key = view[0]
            p = self._profile_for(key)
            lay = self._layout_for(key, p, view[1], view[2])[0]
        func = M.node_func(lay, node)
        label = str(p.func_labels()[func]) if func >= 0 else ""
        if func >= 0 and self.focus_on_click:
            self.set_transforms(list(key) + [str(Transform.parse(("focus", M.exact_pattern(p, func))))])
            what = FIGURE
        else:
            what = DETAILS
        hit = np.flatnonzero(self.profile.func_labels() == label) if label else []
        self.selected = int(hit[0]) if len(hit) else -1
        self.clicks.append({"node": None if node is None else str(node), "function": label,
                            "transforms": list(self.transforms)})
        del self.clicks[:-200]
        return what

    def select(self, node=None, *, func: int | None = None) -> str:
        """Select a function for the details pane: by plotly node id (a click) or by function id."""
        if func is None:
            func = M.node_func(self.layout_table, node)
        self.selected = int(func)
        return DETAILS

    # ------------------------------------------------------------ drawing
    def title_text(self):
        return self.title

    def _colors(self, p, lay):
        """Colour of each drawn node by the colouring chosen (cached per view and colouring: a
        search or an orientation change recolours without recomputing them; the kind palette
        hashes every function's name, 20-30 ms for 1,700 functions)."""
        def make():   # the drawn functions' colours only
            func = lay["func"].to_numpy()
            return M.node_colors(lay, M.func_colors(p, self.view["color"], only=np.unique(func[func >= 0])))
        if p is self.profile and lay is self.layout_table:
            return self._ncolors.get_or((self.view_key, self.view["color"]), make)
        return make()

    def _match(self, p=None):
        """(matching functions of ``p`` or None, matched share) of the search pattern."""
        if not self.pattern:
            return None, 0.0
        if p is None or p is self.profile:
            key = (tuple(self.transforms), self.pattern)
            return self._matches.get_or(key, lambda: self._match_in(self.profile))
        return self._match_in(p)

    def _match_in(self, p):
        fm = M.matching_funcs(p, self.pattern)
        return fm, M.matched_share(p, fm)

    @property
    def match_share(self) -> float:
        """Share (0..1) of the weight whose stack holds a function the search matches."""
        return self._match()[1]

    def trace_colors(self, p=None, lay=None) -> list:
        """Colours of the drawn nodes, the root first, search matches in ``MATCH_COLOR``."""
        p = self.profile if p is None else p
        lay = self.layout_table if lay is None else lay
        col = self._colors(p, lay)
        fm, _share = self._match(p)
        if fm is not None:
            func = lay["func"].to_numpy()
            hit = np.where(func >= 0, fm[np.maximum(func, 0)] if len(fm) else False, False)
            col = np.where(hit, M.MATCH_COLOR, col)
        return [M.ROOT_COLOR] + list(col)

    def orientation_style(self) -> dict:
        flame = self.view["orientation"] == "flame"
        return {"tiling.flip": "y" if flame else None, "pathbar.side": "bottom" if flame else "top"}

    def extra_trace(self, trace, p, lay) -> None:
        """Hook for subclasses: add to the icicle trace (the diff's change per node)."""

    def flame(self) -> tuple[dict, dict]:
        """(icicle trace, figure layout) of the current view, as plain JSON-ready dicts."""
        p = self.profile
        lay = self.layout_table
        trace = M.icicle_trace(p, lay, [], orientation=self.view["orientation"])
        trace["marker"]["colors"] = self.trace_colors(p, lay)
        self.extra_trace(trace, p, lay)
        h = M.flame_height(lay, self.height, title=bool(self.title_text()))
        return trace, M.icicle_layout(height=h, title=self.title_text())

    def style(self) -> dict:
        """The icicle's restyle for a ``STYLE`` change: colours and orientation."""
        return {"marker.colors": self.trace_colors(), **self.orientation_style()}

    def legend_items(self) -> list[tuple[str, str]]:
        items = M.legend(self.profile, self.layout_table, self.view["color"])
        if self.pattern:
            items = items + [("search match", M.MATCH_COLOR)]
        return items

    def legend_html(self) -> str:
        return M.legend_html(self.legend_items())

    def status_html(self, message: str = "") -> str:
        p = self.profile
        lay = self.layout_table
        unit = p.meta.get("unit") or "samples"
        n_other = int((lay["other"] > 0).sum())
        parts = [f"{p.total:,} {unit}", f"{len(lay):,} nodes drawn"]
        if n_other:
            parts.append(f"{n_other:,} 'other' nodes (min width {100 * self.minwidth_used:.3g} %)")
        if self.pattern:
            parts.append(f"<b style='color:{M.MATCH_COLOR}'>matched {100 * self.match_share:.2f} %</b>")
        if message:
            parts.append(f"<span style='color:#c00'>{html.escape(message)}</span>")
        return f"<span style='font-size:12px'>{' · '.join(parts)}</span>"

    def crumb_label(self, spec: str) -> str:
        """A transform as people read it: ``slice 120–480 ms`` (not ns since boot),
        ``focus handle /srv/app.js:10`` (an exact-name pattern shown unescaped)."""
        if str(spec) == JS_ONLY:
            return "JavaScript only"
        if str(spec) == COLLAPSE_PACKAGES:
            return "packages collapsed"
        name, _, arg = str(spec).partition("=")
        if name == "slice" and self.t1:
            a, _, b = arg.partition(":")
            lo = (int(a) - self.t0) / 1e6 if a else 0.0
            hi = (int(b) - self.t0) / 1e6 if b else (self.t1 - self.t0) / 1e6
            return f"slice {lo:,.0f}–{hi:,.0f} ms"
        if not arg:
            return name
        return f"{name} {unescape(arg)}"

    def crumbs(self) -> list[tuple[str, int, bool]]:
        """(label, how many transforms clicking it keeps, is the current view) per breadcrumb."""
        return [(spec if i == 0 else self.crumb_label(spec), i, i == len(self.transforms))
                for i, spec in enumerate(["all"] + self.transforms)]

    def timeline(self) -> tuple[list[dict], list[dict]] | None:
        """(bars, selection shapes) of the timeline strip, None for untimed profiles."""
        key = tuple(t for t in self.transforms if not t.startswith("slice="))
        tl = self._timelines.get_or(key, lambda: self._timeline_for(key))
        if tl is None:
            return None
        sel = self.slice_ms()
        last = self._tl_drawn
        if last is not None and last[0] is tl and last[1] == sel:
            return last[2]     # the same object as before: nothing to redraw
        fig = M.timeline_figure(tl, selected_ms=sel)
        out = (fig["data"], fig["layout"].get("shapes", []))
        self._tl_drawn = (tl, sel, out)
        return out

    def func_html(self, p, func) -> str:
        """One function of ``p``: name, where, kind, self and total, callers and callees."""
        s, callers, callees = M.func_details(p, func)
        unit = p.meta.get("unit") or "samples"

        def tab(df, title):
            if len(df) == 0:
                return f"<div><i>no {title}</i></div>"
            rows = [[name_cell(f), num_cell(f"{w:,}"), num_cell(f"{pc:.2f} %")]
                    for f, w, pc in zip(df["function"], df["weight"], df["pct"])]
            return (f"<div style='margin-top:4px'><b>{title}</b>"
                    + table_html([("function", ""), (unit, "7em"), ("share", "5.5em")], rows) + "</div>")

        head = (f"<b>{html.escape(s['name'])}</b> <span style='color:#666'>{html.escape(s['where'])}</span>"
                f" <span style='color:#666'>[{s['kind']}{' · ' + html.escape(s['package']) if s['package'] else ''}]</span><br>"
                f"self {s['self']:,} ({s['self_pct']:.2f} %) · total {s['total']:,} ({s['total_pct']:.2f} %)")
        return (f"<div style='font-size:12px'>{head}{self.lines_html(p, func)}{tab(callers, 'callers')}"
                f"{tab(callees, 'callees')}</div>")

    def lines_html(self, p, func, n: int = 8) -> str:
        """The function's hottest lines with their source text (from the file, or the source map's
        sourcesContent), like pprof's ``list``; '' when the profile has no lines for it."""
        try:
            hl = p.hot_lines(int(func))
        except Exception:  # noqa: BLE001 - a details pane must not fail on one function's lines
            return ""
        hl = hl[(hl["line"] > 0) & ((hl["self"] > 0) | (hl["total"] > 0))].head(n)
        if not len(hl):
            return ""
        unit = p.meta.get("unit") or "samples"
        rows = [[num_cell(str(int(ln))), num_cell(f"{int(sf):,}"), num_cell(f"{int(tt):,}"),
                 f"<code>{html.escape(str(tx)) if tx else '<i>source not available</i>'}</code>"]
                for ln, sf, tt, tx in zip(hl["line"], hl["self"], hl["total"], hl["text"])]
        return ("<div style='margin-top:4px'><b>hot lines</b>"
                + table_html([("line", "4em"), (f"self {unit}", "6em"), ("total", "6em"), ("source", "")], rows)
                + "</div>")

    # ------------------------------------------------------------ side views
    def sandwich_figure(self, func: int | None = None) -> dict:
        """The sandwich of ``func`` (default: the selected function) in the profile on screen, as a
        plotly figure dict (:func:`nodeflame.widgets.sidecharts.sandwich_figure`)."""
        from .sidecharts import sandwich_figure
        func = self.selected if func is None else int(func)
        if func < 0:
            raise ValueError("select a function first (click a frame) for its sandwich")
        return sandwich_figure(self.profile, func, color=self.view["color"])

    @property
    def has_stack_chart(self) -> bool:
        """Whether the base profile has sample times (a stack chart can be drawn)."""
        return bool(self.base.meta.get("timed")) and len(self.base.samples) > 0

    def stack_chart_figure(self) -> dict:
        """The time-ordered stack chart of the profile on screen (the transforms applied to the
        timed samples, never to the aggregate), the thread shown or else the busiest, as a plotly
        figure dict (:func:`nodeflame.widgets.sidecharts.stack_chart_figure`)."""
        from .sidecharts import stack_chart_figure
        if not self.has_stack_chart:
            raise ValueError("the stack chart needs sample times; this profile has none")
        p = self.profile if not self._aggregate else self._transform(self.base, self.transforms)
        if not len(p.samples):
            raise ValueError("no samples left after the transforms")
        return stack_chart_figure(p, thread=self.thread() or None, color=self.view["color"])

    def details_html(self) -> str:
        if self.selected < 0:
            return "<div style='font-size:12px;color:#666'>click a frame for its details</div>"
        return self.func_html(self.profile, self.selected)

    def top_table(self, n: int = 15) -> pd.DataFrame:
        t = top(self.profile, n)
        return pd.DataFrame({"function": self.profile.func_labels()[t.index.to_numpy()], "kind": t["kind"].astype(str),
                             "self_pct": t["self_pct"].round(2), "total_pct": t["total_pct"].round(2)})

    def side_html(self) -> str:
        t = self.top_table(12)
        rows = [[name_cell(f), num_cell(k), num_cell(f"{s:.2f}"), num_cell(f"{tt:.2f}")]
                for f, k, s, tt in zip(t["function"], t["kind"], t["self_pct"], t["total_pct"])]
        return ("<div style='font-size:12px'><b>top functions</b>"
                + table_html([("function", ""), ("kind", "4.5em"), ("self %", "4.5em"), ("total %", "4.5em")], rows)
                + "</div>")

    def text_table(self) -> str:
        p = self.profile
        unit = p.meta.get("unit") or "samples"
        t = self.top_table(20)
        head = f"{p.total:,} {unit}" + (f" after {self.transforms}" if self.transforms else "")
        with pd.option_context("display.max_colwidth", 70, "display.width", 200):
            return head + "\n" + t.to_string(index=False)

    # ---------------------------------------------------------- static output
    def svg_deltas(self, p):
        return None

    def static_svg(self, *, width: int = 1200) -> str:
        """The view as the project's SVG flame graph (self-contained, labelled; what the
        notebook keeps when there is no kernel)."""
        from ..writers.svg import render_svg
        p = self.profile
        return render_svg(p, title=self.title_text() or ("Icicle Graph" if self.view["orientation"] == "icicle"
                                                          else "Flame Graph"),
                          subtitle=" → ".join(self.crumb_label(t) for t in self.transforms) or None,
                          width=width, minwidth=1.0, inverted=self.view["orientation"] == "icicle",
                          reverse=self.view["inverted"], deltas=self.svg_deltas(p), frameheight=18)

    def static_figure(self, figure: dict | None = None) -> dict:
        """The plotly figure for places without a kernel: at most ``static_nodes`` nodes
        (``figure``, the live one, when it is small enough)."""
        if figure is not None and len(self.layout_table) <= self.static_nodes:
            return figure
        p = self.profile
        lay, _mw = M.auto_layout(p, inverted=self.view["inverted"], minwidth=self.minwidth_used,
                                 max_nodes=self.static_nodes)
        trace = M.icicle_trace(p, lay, [], orientation=self.view["orientation"])
        trace["marker"]["colors"] = self.trace_colors(p, lay)
        self.extra_trace(trace, p, lay)
        return {"data": [trace], "layout": M.icicle_layout(height=M.flame_height(lay, self.height,
                                                                                  title=bool(self.title_text())),
                                                           title=self.title_text())}


class DiffState(ExplorerState):
    """The diff explorer's state: the merged before/after shape (:func:`model.diff_shape`) of the
    diff taken again under the transforms, coloured by change.  Transforms apply to both sides;
    a time slice to the after profile only (the two captures have different clocks)."""

    DEFAULT_COLOR = "diff"

    def __init__(self, d, *, name: str = "d", title: str | None = None, **options):
        self.source_diff = d
        self._diffs = LRU()
        self._befores = LRU()
        self._shapes = LRU()
        super().__init__(d.after, name=name,
                         title=title or "after vs before: red slower, blue faster, grey unchanged or within noise",
                         **options)

    @classmethod
    def color_choices(cls):
        return ("diff",) + M.COLOR_BY

    @staticmethod
    def both_key(key):
        return tuple(t for t in key if not t.startswith("slice="))

    def _before_for(self, key):
        key = self.both_key(key)
        if not key:
            return self.source_diff.before
        return self._befores.get_or(key, lambda: self._before_for(key[:-1]).apply([key[-1]]))

    def after_for(self, key):
        return ExplorerState._profile_for(self, key)

    def _profile_for(self, key):
        """The drawn profile: the merged before/after shape of the diff under ``key``."""
        return self._shapes.get_or(tuple(key), lambda: M.diff_shape(self.diff_for(tuple(key))))

    def _timeline_for(self, key):
        rest = tuple(t for t in key if not t.startswith("slice="))
        if self._aggregate:
            return super()._timeline_for(key)
        return M.timeline(self.after_for(rest), t0_ns=self.t0, t1_ns=self.t1)

    def diff_for(self, key):
        if not key:
            return self.source_diff
        d0 = self.source_diff
        return self._diffs.get_or(key, lambda: make_diff(self._before_for(key), self.after_for(key),
                                                         normalize=d0.requested, work=d0.work,
                                                         reference=d0.reference, alpha=d0.alpha))

    @property
    def diff(self):
        """The diff of the two profiles as transformed now."""
        return self.diff_for(tuple(self.transforms))

    def set_transforms(self, specs):
        key = tuple(str(Transform.parse(s)) for s in specs)
        self.diff_for(key)  # an empty side raises here, before anything changes
        return super().set_transforms(specs)

    # -------------------------------------------------------------- drawing
    def _colors(self, p, lay):
        if self.view["color"] != "diff":
            return super()._colors(p, lay)
        col, _delta, _sig = M.diff_colors(self.diff, p)
        return M.node_colors(lay, col)

    def extra_trace(self, trace, p, lay):
        _col, delta, sig = M.diff_colors(self.diff, p)
        fmt = np.array([f"{d:+.2f} pp" + ("" if s else " (within noise)") for d, s in zip(np.round(delta, 2) + 0.0, sig)],
                       dtype=object)
        func = lay["func"].to_numpy()
        per_node = np.where(func >= 0, fmt[np.maximum(func, 0)] if len(fmt) else "", "")
        trace["customdata"] = [trace["customdata"][0]] + [c + " · change " + x for c, x in
                                                          zip(trace["customdata"][1:], per_node.tolist())]

    def svg_deltas(self, p):
        _col, delta, sig = M.diff_colors(self.diff, p)
        return np.where(sig, delta, 0.0)

    def diff_table(self, n: int = 12) -> pd.DataFrame:
        t = self.diff.table(n)
        return pd.DataFrame({
            "significant": t["significant"], "status": t["status"].astype(str),
            "function": [f"{a} {b}:{c}" if b else a for a, b, c in zip(t["name"], t["file"], t["line"])],
            "self_before_pct": t["self_before_pct"].round(2), "self_after_pct": t["self_after_pct"].round(2),
            "self_delta_pp": t["self_delta_pp"].round(2), "total_delta_pp": t["total_delta_pp"].round(2)})

    def side_html(self) -> str:
        t = self.diff_table(12)
        rows = []
        for f, b, a, d, s, st in zip(t["function"], t["self_before_pct"], t["self_after_pct"], t["self_delta_pp"],
                                     t["significant"], t["status"]):
            col = M.DIFF_RED if s and d > 0 else M.DIFF_BLUE if s and d < 0 else "#666"
            txt = f"<b>{d:+.2f}</b>" if s else f"{d:+.2f}"
            rows.append([name_cell(f), num_cell(f"{b:.2f}"), num_cell(f"{a:.2f}"), num_cell(txt, f"color:{col}"),
                         num_cell(html.escape(st))])
        return ("<div style='font-size:12px'><b>largest changes</b> (self, in points of the before "
                f"profile, normalised by {html.escape(self.diff.normalize)}; bold = beyond noise)"
                + table_html([("function", ""), ("before %", "5em"), ("after %", "5em"), ("change pp", "5.5em"),
                              ("status", "6em")], rows) + "</div>")

    def details_html(self) -> str:
        if self.selected < 0:
            return super().details_html()
        p, func = self.profile, self.selected
        # p is the merged drawing shape, whose weights are neither side's: show the after
        # profile's callers and callees (the function matched by name, file and line)
        after = self.after_for(tuple(self.transforms))
        hit = np.flatnonzero(after.func_labels() == p.func_labels()[func])
        if len(hit):
            out = "<div style='font-size:11px;color:#666'>after profile:</div>" + self.func_html(after, int(hit[0]))
        else:
            out = (f"<div style='font-size:12px'><b>{html.escape(str(M.short_labels(p)[func]))}</b> "
                   f"<span style='color:#666'>{html.escape(str(M.func_where(p)[func]))}</span>"
                   " — not in the after profile (its work vanished)</div>")
        t = self.diff.numbers()
        f = p.funcs
        row = t[(t["name"] == str(f["name"].iat[func])) & (t["file"] == str(f["file"].iat[func]))
                & (t["line"] == int(f["line"].iat[func]))]
        if len(row):
            r = row.iloc[0]
            out += (f"<div style='font-size:12px'>self {r['self_before_pct']:.2f} % → {r['self_after_pct']:.2f} % "
                    f"({r['self_delta_pp']:+.2f} pp, 95 % interval {r['self_low_pp']:+.2f} .. {r['self_high_pp']:+.2f});"
                    f" total {r['total_before_pct']:.2f} % → {r['total_after_pct']:.2f} %;"
                    f" <b>{r['status']}</b> ({'beyond sampling noise' if r['significant'] else 'within sampling noise'},"
                    f" q = {r['q']:.3g}, normalised by {html.escape(self.diff.normalize)})</div>")
        return out

    def text_table(self) -> str:
        t = self.diff_table(20)
        head = (f"diff: {self.diff.before.total:,} -> {self.diff.after.total:,} samples"
                + (f" after {self.transforms}" if self.transforms else ""))
        with pd.option_context("display.max_colwidth", 70, "display.width", 200):
            return head + "\n" + t.to_string(index=False)

    @property
    def code(self) -> str:
        view = {k: v for k, v in self.view.items() if v != self.default_view[k]}
        if self.pattern:
            view["search"] = self.pattern
        opts = ", ".join(f"{k}={v!r}" for k, v in view.items())
        if not self.transforms:
            return f"{self.name}.flame({opts})"
        both = list(self.both_key(tuple(self.transforms)))
        before = f"{self.name}.before" + (f".apply({both!r})" if both else "")
        after = f"{self.name}.after.apply({list(self.transforms)!r})"
        return f"nf.diff({before}, {after}).flame({opts})"
