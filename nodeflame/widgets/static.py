"""Output that needs no kernel: a static chart in HTML plus a plain-text table.

What nbconvert, nbviewer, GitHub and a notebook reopened without a kernel show
for an explorer (the ``text/html`` of its mime bundle) is :func:`svg_html`: the
project's own SVG flame graph as an ``<img>`` data URI — self-contained, no
script, no CDN, labelled frames — and the top table as text.
:func:`figure_html` (the plotly figure) is what ``Explorer.to_html`` writes.
"""
from __future__ import annotations

import base64
import html


def svg_html(svg: str, table_text: str = "", *, alt: str = "flame graph", key: str = "") -> str:
    """An SVG document as an ``<img>`` (data URI: works offline, in sanitised renderers that drop
    scripts, and without the widget manager), followed by ``table_text`` in a ``<pre>``.
    ``key``: the live chart that stands for it (class ``nodeflame-static-KEY``: the chart's front
    end hides this output once it has drawn)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    cls = "nodeflame-static" + (f" nodeflame-static-{html.escape(key)}" if key else "")
    return (f"<div class='{cls}'><img alt='{html.escape(alt)}' style='max-width:100%' "
            f"src='data:image/svg+xml;base64,{data}'/>"
            + (f"<pre style='font-size:11px'>{html.escape(table_text)}</pre>" if table_text else "")
            + "</div>")


def figure_html(fig: dict, table_text: str = "", *, include_plotlyjs="cdn", full_html: bool = False,
                title: str = "nodeflame", div_id: str | None = None) -> str:
    """The figure as HTML (plotly.js from the CDN, or inlined with ``include_plotlyjs=True``),
    followed by ``table_text`` in a ``<pre>`` so the numbers survive where scripts do not run."""
    import plotly.io as pio
    config = {"displaylogo": False, "responsive": True}
    chart = pio.to_html(fig, config=config, include_plotlyjs=include_plotlyjs, full_html=False,
                        validate=False, default_height=f"{fig.get('layout', {}).get('height', 560)}px",
                        div_id=div_id)
    body = (f"<div class='nodeflame-static'>{chart}"
            + (f"<pre style='font-size:11px'>{html.escape(table_text)}</pre>" if table_text else "")
            + "</div>")
    if not full_html:
        return body
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title></head><body>{body}</body></html>\n")
