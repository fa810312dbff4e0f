"""Notebook widgets: the flame/icicle explorer and the diff explorer (plotly + ipywidgets).

Besides the explorers: ``sandwich(profile, func)``, a function's callers above and callees below
(as speedscope's sandwich view; recursion counted once), and ``stack_chart(profile, thread=None)``,
the time-ordered stack chart of a timed capture (x time, y depth, as Chrome DevTools' flame chart);
both return plotly Figures, their data come from ``nodeflame.widgets.sidecharts`` (plain numpy/pandas).

Imported lazily (``Profile.flame()``, ``Diff.flame()``, ``%load_ext nodeflame``),
never by the layers below; install with ``pip install 'nodeflame[notebook]'``.
"""
from __future__ import annotations

from .state import DiffState, ExplorerState

try:   # the views need ipywidgets and plotly (nodeflame[notebook]); the state is plain Python
    from .diffview import DiffExplorer
    from .explorer import Explorer
except ImportError as _e:   # pragma: no cover - exercised with the notebook extra missing
    _missing = _e

    def _unavailable(*_a, **_k):
        raise ImportError(f"the notebook widgets need nodeflame[notebook]: {_missing}") from _missing
    Explorer = DiffExplorer = _unavailable

__all__ = ["explorer", "diff_explorer", "timeline", "sandwich", "stack_chart", "Explorer", "DiffExplorer", "ExplorerState", "DiffState"]


def explorer(profile, **options) -> Explorer:
    """Interactive flame graph of ``profile``; what ``Profile.flame(**options)`` returns.

    Options: ``transforms`` (list applied first, e.g. ``['hide=^node:']``; by default
    none, or "JavaScript only" for walker/perf/stap captures, whose native stacks bury the JS),
    ``inverted`` (bottom-up), ``orientation`` ('flame': root at the bottom, or
    'icicle'), ``color`` ('kind', 'package', 'file'), ``minwidth`` (fraction of
    the whole below which frames merge into "other" nodes; None = automatic),
    ``search`` (regex to highlight), ``max_nodes``, ``height``, ``timeline``,
    ``name`` (variable name used in the replay code), ``title``,
    ``focus_on_click`` (default True: a click applies ``focus=`` to the clicked
    function; False: a click only fills the details pane), ``aggregate``
    (None: draw long timed profiles from samples summed per (stack, thread)).

    Under the details pane, "sandwich" shows the selected function's sandwich (:func:`sandwich`)
    and "stack chart" the view's time-ordered stack chart (:func:`stack_chart`, timed captures);
    from code: ``show_sandwich()``, ``show_stack_chart()``, ``close_extra()``.

    The chart is a plotly ``go.FigureWidget`` (``explorer(p).widget``): trace 0
    the ``go.Icicle``, then the timeline strip's bars, one per kind."""
    return Explorer(profile, **options)


def diff_explorer(diff, **options) -> DiffExplorer:
    """The after profile's flame graph coloured by change; what ``Diff.flame(**options)`` returns.

    Red grew, blue shrank, grey unchanged or within sampling noise.  Same
    options as :func:`explorer`, with ``color='diff'`` the default."""
    return DiffExplorer(diff, **options)


def timeline(profile, bins: int = 200, *, height: int = 220):
    """Samples over time, stacked by the kind of each sample's leaf, as a plotly Figure
    (a text note for untimed profiles: folded and raw files carry no times)."""
    import plotly.graph_objects as go
    from . import model as M
    tl = M.timeline(profile, bins)
    if tl is None:
        fig = go.Figure(layout={"height": 60, "margin": {"l": 4, "r": 4, "t": 4, "b": 4}})
        fig.add_annotation(text="no sample times in this profile (folded/raw input)", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
        return fig
    spec = M.timeline_figure(tl, height=height)
    spec["layout"]["dragmode"] = "zoom"
    return go.Figure(spec)


def sandwich(profile, func, *, color: str = "kind", height: int | None = None):
    """The sandwich view of one function as a plotly Figure: who called it above (an inverted tree
    drawn upwards from the function), what it called below (all its occurrences merged).

    ``func``: a function id, a name or display name (``name file:line``), or a regular expression
    (the heaviest match).  Data: :func:`nodeflame.widgets.sidecharts.sandwich_data`."""
    import plotly.graph_objects as go
    from .sidecharts import sandwich_figure
    return go.Figure(sandwich_figure(profile, func, color=color, height=height))


def stack_chart(profile, thread=None, *, color: str = "kind", height: int | None = None):
    """Time-ordered stack chart (flame chart) of one thread of a timed capture as a plotly Figure:
    x = time (ms from the first sample), y = depth; consecutive samples with the same path down to
    a depth share one bar; a gap of several sampling periods ends the bars.  ``thread=None``: the
    thread with the most samples.  Data: :func:`nodeflame.widgets.sidecharts.stack_chart_data`."""
    import plotly.graph_objects as go
    from .sidecharts import stack_chart_figure
    return go.Figure(stack_chart_figure(profile, thread=thread, color=color, height=height))
