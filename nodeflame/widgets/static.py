"""Output that needs no kernel: a static plotly chart in HTML plus a plain-text table.

This is what nbconvert, nbviewer and other renderers without the widget
manager show for an explorer.
"""
from __future__ import annotations

import html


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
