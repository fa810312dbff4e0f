"""A plotly chart as a small anywidget.

plotly's own ``FigureWidget`` ships its 5 MB JavaScript bundle to the browser
with every instance; this widget sends only the figure (and plotly.js once per
page from the CDN, or from the kernel when the browser is offline).  Clicks
and range selections come back as ``on_event`` callbacks.
"""
from __future__ import annotations

import anywidget
import traitlets

# the browser side, kept here (not in a .js file) so it installs with the module
ESM = r"""
// nodeflame's plotly chart widget (anywidget ES module).
//
// The figure (data + layout) arrives as the `figure` trait; `restyle` carries
// small updates of trace 0 (colours after a search) so they need not resend
// the figure.  plotly.js is taken from the page when it is there, else
// fetched once per page from `plotly_src` (a CDN), else - offline - asked of
// the kernel, which sends the copy bundled with the plotly Python package.
// Clicks and range selections go back to Python as messages.

function evalUmd(source) {
  const module = { exports: {} };
  // plotly's UMD bundle fills module.exports when `module` is defined, which
  // also works where require.js would otherwise swallow a <script> tag
  new Function("module", "exports", "define", source)(module, module.exports, undefined);
  return module.exports;
}

function loadPlotly(model) {
  if (globalThis.Plotly && globalThis.Plotly.newPlot) return Promise.resolve(globalThis.Plotly);
  if (globalThis.__nodeflamePlotly) return globalThis.__nodeflamePlotly;
  const fromKernel = () => new Promise((resolve, reject) => {
    const onMsg = (msg) => {
      if (msg && msg.type === "plotlyjs") {
        model.off("msg:custom", onMsg);
        try { resolve(evalUmd(msg.source)); } catch (e) { reject(e); }
      }
    };
    model.on("msg:custom", onMsg);
    model.send({ type: "need-plotlyjs" });
  });
  const src = model.get("plotly_src");
  const p = (src ? fetch(src).then((r) => {
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.text();
  }).then(evalUmd) : Promise.reject(new Error("no source"))).catch(fromKernel).then((P) => {
    globalThis.Plotly = globalThis.Plotly || P;
    return P;
  });
  globalThis.__nodeflamePlotly = p;
  p.catch(() => { globalThis.__nodeflamePlotly = undefined; });
  return p;
}

function render({ model, el }) {
  const div = document.createElement("div");
  div.className = "nodeflame-chart";
  div.style.width = "100%";
  el.appendChild(div);
  let Plotly = null;
  let alive = true;
  const config = { displaylogo: false, responsive: true, scrollZoom: false };

  const draw = () => {
    if (!Plotly || !alive) return;
    const fig = model.get("figure") || {};
    const data = JSON.parse(JSON.stringify(fig.data || []));
    const restyle = model.get("restyle") || {};
    if (data.length) {
      for (const [path, value] of Object.entries(restyle)) {
        const parts = path.split(".");
        let o = data[0];
        for (const k of parts.slice(0, -1)) o = o[k] = o[k] || {};
        o[parts[parts.length - 1]] = value;
      }
    }
    Plotly.react(div, data, fig.layout || {}, config);
  };
  const restyle = () => {
    if (!Plotly || !alive) return;
    const r = model.get("restyle") || {};
    const upd = {};
    for (const [k, v] of Object.entries(r)) upd[k] = [v];
    if (Object.keys(upd).length) Plotly.restyle(div, upd, [0]); else draw();
  };

  loadPlotly(model).then((P) => {
    Plotly = P;
    draw();
    div.on("plotly_click", (ev) => {
      const pt = ev && ev.points && ev.points[0];
      if (pt) model.send({ type: "click", id: pt.id === undefined ? null : String(pt.id),
                           curve: pt.curveNumber, index: pt.pointNumber, x: pt.x === undefined ? null : pt.x });
    });
    div.on("plotly_selected", (ev) => {
      if (ev && ev.range && ev.range.x) model.send({ type: "select", x: ev.range.x });
    });
    div.on("plotly_deselect", () => model.send({ type: "select", x: null }));
  }).catch((e) => {
    div.textContent = "nodeflame: could not load plotly.js (" + e + ")";
  });
  model.on("change:figure", draw);
  model.on("change:restyle", restyle);
  return () => {
    alive = false;
    model.off("change:figure", draw);
    model.off("change:restyle", restyle);
    if (Plotly) Plotly.purge(div);
  };
}

export default { render };
"""


def plotly_version() -> str:
    from plotly.offline import get_plotlyjs_version
    return get_plotlyjs_version()


def cdn_url() -> str:
    return f"https://cdn.plot.ly/plotly-{plotly_version()}.min.js"


class PlotlyChart(anywidget.AnyWidget):
    """``figure``: {"data": [...], "layout": {...}} as plain JSON; ``restyle``: updates of trace 0
    applied on top of it (dotted property paths, e.g. ``{"marker.colors": [...]}``)."""

    _esm = ESM
    figure = traitlets.Dict().tag(sync=True)
    restyle = traitlets.Dict().tag(sync=True)
    plotly_src = traitlets.Unicode("").tag(sync=True)

    def __init__(self, figure: dict | None = None, **kw):
        kw.setdefault("plotly_src", cdn_url())
        super().__init__(figure=figure or {}, **kw)
        self._handlers = []
        self.on_msg(self._on_msg)

    def on_event(self, fn) -> None:
        """Call ``fn(message)`` for each click/select message from the browser."""
        self._handlers.append(fn)

    def _on_msg(self, _widget, content, _buffers):
        if not isinstance(content, dict):
            return
        if content.get("type") == "need-plotlyjs":
            from plotly.offline import get_plotlyjs
            self.send({"type": "plotlyjs", "source": get_plotlyjs()})
            return
        for fn in self._handlers:
            fn(content)

    def set_figure(self, figure: dict) -> None:
        with self.hold_sync():
            self.restyle = {}
            self.figure = figure

    def to_plotly(self):
        """The current figure as a ``plotly.graph_objects.Figure``."""
        import plotly.graph_objects as go
        fig = go.Figure(self.figure, skip_invalid=False)
        for k, v in self.restyle.items():
            fig.update_traces(selector=0, **{k.replace(".", "_"): v})
        return fig
