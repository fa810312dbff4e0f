"""The chart's front end: plotly's FigureWidget code sent once per kernel, not once per chart.

plotly's ``FigureWidget`` is an anywidget whose front-end module (``_esm``:
plotly.js and its widget code, about 5 MB) is part of every figure widget's
state.  Every explorer therefore sent 5 MB to the browser, and a notebook saved
with its widget state grew by 5 MB per explorer; the browser also parsed and
ran plotly.js once per chart.

Here the figure widget's ``_esm`` is a small loader (:data:`LOADER`), and
plotly's module travels once per kernel, gzip-compressed (1.5 MB), in a plain
``ipywidgets.Widget`` (:class:`PlotlyLibrary`) that every figure names in its
``_nf_library`` trait.  In the browser the loader fetches that model through
the widget manager, decompresses the code (``DecompressionStream``), imports it
once per page and hands the figure to plotly's own ``initialize``/``render``.

The loader also:

- returns from ``initialize`` at once (anywidget gives a model 2 s before it
  gives up on it and its messages; the library can take longer on a busy
  machine) and queues the figure's ``_py2js_*`` messages that arrive before
  the library, replaying them into plotly's model when it is there;
- draws the chart at the width of the output: plotly sizes a new plot from its
  element, and a view is rendered before the output area attaches it (0 px:
  plotly then falls back to 700 px), so the first draw waits until the element
  has its width, and later width changes resize the plot.
"""
from __future__ import annotations

import functools
import gzip
import pathlib

import ipywidgets as W
import traitlets as T

LOADER = r"""// nodeflame: plotly's FigureWidget front end, loaded once per page from a shared library model
const KEY = Symbol.for("nodeflame.plotly-widget/__VERSION__");
const PY2JS = ["_py2js_addTraces", "_py2js_deleteTraces", "_py2js_moveTraces", "_py2js_restyle",
  "_py2js_relayout", "_py2js_update", "_py2js_animate", "_py2js_removeLayoutProps", "_py2js_removeTraceProps"];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function libraryModel(model) {
  const id = String(model.get("_nf_library") || "").replace(/^IPY_MODEL_/, "");
  if (!id) throw new Error("no library model named");
  // restored from a saved notebook, the library may be registered after this figure
  for (let i = 0; ; i++) {
    try {
      const lib = await model.widget_manager.get_model(id);
      if (lib) return lib;
    } catch (e) {
      if (i >= 100) throw e;
    }
    await sleep(50);
  }
}

function loadLibrary(model) {
  const g = globalThis;
  if (!g[KEY]) {
    g[KEY] = (async () => {
      const lib = await libraryModel(model);
      const code = lib.get("code");
      const bytes = code instanceof DataView ? new Uint8Array(code.buffer, code.byteOffset, code.byteLength)
        : code instanceof ArrayBuffer ? new Uint8Array(code) : code;
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      const text = await new Response(stream).text();
      const url = URL.createObjectURL(new Blob([text], { type: "text/javascript" }));
      try {
        return await import(/* webpackIgnore: true */ url);
      } finally {
        URL.revokeObjectURL(url);
      }
    })();
    g[KEY].catch(() => { delete g[KEY]; });
  }
  return g[KEY];
}

// resolves once the element is in the page with a width (or after `timeout` ms)
function sized(el, timeout = 5000) {
  if (el.isConnected && el.clientWidth > 0) return Promise.resolve();
  return new Promise((resolve) => {
    const ro = new ResizeObserver(() => {
      if (el.isConnected && el.clientWidth > 0) { ro.disconnect(); resolve(); }
    });
    ro.observe(el);
    setTimeout(() => { ro.disconnect(); resolve(); }, timeout);
  });
}

export default () => {
  let ready = null;
  return {
    initialize({ model }) {
      const queue = [];
      let queueing = true;
      const listeners = PY2JS.map((name) => {
        const f = () => {
          const v = model.get(name);
          if (queueing && v !== null && v !== undefined) queue.push([name, v]);
        };
        model.on("change:" + name, f);
        return [name, f];
      });
      ready = loadLibrary(model).then((mod) => {
        queueing = false;
        for (const [name, f] of listeners) model.off("change:" + name, f);
        const handlers = {};
        let override = null;
        const proxied = Object.assign({}, model, {
          get: (k) => (override && k in override ? override[k] : model.get(k)),
          on: (ev, cb) => { (handlers[ev] = handlers[ev] || []).push(cb); model.on(ev, cb); },
        });
        const widget = typeof mod.default === "function" ? mod.default() : mod.default;
        if (widget.initialize) widget.initialize({ model: proxied });
        for (const [name, v] of queue) {
          override = { [name]: v };
          try {
            for (const cb of handlers["change:" + name] || []) cb();
          } finally {
            override = null;
          }
        }
        globalThis.__nodeflame_replayed = (globalThis.__nodeflame_replayed || 0) + queue.length;
        return widget;
      });
      ready.catch((e) => console.error("nodeflame: the chart's front end did not load", e));
    },
    async render({ model, el }) {
      let widget;
      try {
        widget = await ready;
      } catch (e) {
        el.textContent = "nodeflame: the chart could not load its front end (" + e + ")";
        return;
      }
      await sized(el);
      const cleanup = widget.render({ model, el });
      let last = el.clientWidth;
      const ro = new ResizeObserver(() => {
        const w = el.clientWidth;
        if (w > 0 && w !== last) {
          last = w;
          if (typeof el._responsiveChartHandler === "function") el._responsiveChartHandler();
          else window.dispatchEvent(new Event("resize"));
        }
      });
      ro.observe(el);
      return () => {
        ro.disconnect();
        if (typeof cleanup === "function") cleanup();
      };
    },
  };
};
"""


@functools.lru_cache(maxsize=1)
def plotly_module() -> tuple[str, bytes]:
    """(plotly version, plotly's FigureWidget front-end module gzip-compressed)."""
    import plotly
    from plotly.basewidget import BaseFigureWidget
    esm = BaseFigureWidget._esm
    path = pathlib.Path(getattr(esm, "_path", None) or getattr(esm, "path", None) or "")
    raw = path.read_bytes() if path.is_file() else str(esm).encode("utf-8")
    return plotly.__version__, gzip.compress(raw, 6, mtime=0)


class PlotlyLibrary(W.Widget):
    """A model holding plotly's front-end module once per kernel (never displayed)."""

    version = T.Unicode("").tag(sync=True)
    code = T.Bytes(b"").tag(sync=True)


_library: PlotlyLibrary | None = None


def library() -> PlotlyLibrary:
    """This kernel's :class:`PlotlyLibrary` (made, and sent, on first use)."""
    global _library
    if _library is None or getattr(_library, "comm", None) is None:
        version, code = plotly_module()
        _library = PlotlyLibrary(version=version, code=code)
    return _library


def loader() -> str:
    import plotly
    return LOADER.replace("__VERSION__", plotly.__version__)
