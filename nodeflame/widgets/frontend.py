"""The chart's front end: plotly's FigureWidget code sent once per kernel, not once per chart.

plotly's ``FigureWidget`` is an anywidget whose front-end module (``_esm``:
plotly.js and its widget code, about 5 MB) is part of every figure widget's
state.  Every explorer therefore sent 5 MB to the browser, and a notebook saved
with its widget state grew by 5 MB per explorer; the browser also parsed and
ran plotly.js once per chart.

Here the figure widget's ``_esm`` is a small loader (:data:`LOADER`), and
plotly's module travels once per kernel, gzip-compressed (1.5 MB), as a custom
message of one model (:class:`PlotlyLibrary`, which every figure names in its
``_nf_library`` trait): not in the model's state, so saved widget state (what
``nbconvert --execute`` keeps) stays small.  The library's own small module starts importing plotly
in the browser as soon as the model arrives (the explorer sends it before it
computes its first chart, so the two overlap); the loader fetches the library
through the widget manager if need be, decompresses the code
(``DecompressionStream``), imports it once per page and hands the figure to
plotly's own ``initialize``/``render``.

The loader also:

- returns from ``initialize`` at once (anywidget gives a model 2 s before it
  gives up on it and its messages; the library can take longer on a busy
  machine) and queues the figure's ``_py2js_*`` messages that arrive before
  the library, replaying them into plotly's model when it is there;
- hides the static output shown with the chart (see ``Explorer._ipython_display_``)
  once the chart has drawn;
- sends each click on the icicle to the kernel as its own custom message (with
  the id of the chart's view), so that clicks made while the kernel is busy are
  all delivered, and stops plotly's own click-to-zoom while clicks focus;
- writes, after each draw, the label of a frame too narrow for it cut to the frame's width with a
  "…" (plotly hides it: frames of long C++ names showed nothing), as flame graph tools do; 50 ms
  the first time over a 4,000-frame chart, 13 ms after (headless chromium);
- draws the chart at the width of the output: plotly sizes a new plot from its
  element, and a view is rendered before the output area attaches it (0 px:
  plotly then falls back to 700 px), so the first draw waits until the element
  has its width, and later width changes resize the plot.
"""
from __future__ import annotations

import functools
import gzip
import os
import pathlib
import time

import anywidget
import traitlets as T


def _plotly_version() -> str:
    import plotly
    return plotly.__version__

_COMMON = r"""const KEY = Symbol.for("nodeflame.plotly-widget/__VERSION__");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// the library's gzip bytes: a custom message from the kernel (asked for here, and sent by the
// kernel unasked as the model is made), never part of the model's state, so that saved widget state
// (nbclient's, JupyterLab's "save widget state") does not carry 1.5 MB of plotly per notebook
function codeOf(lib) {
  const have = lib.get("code");
  if (have && (have.byteLength || have.length)) return Promise.resolve(have);
  return new Promise((resolve) => {
    const cb = (content, buffers) => {
      if (!content || content.nodeflame !== "code" || !buffers || !buffers.length) return;
      if (typeof lib.off === "function") lib.off("msg:custom", cb);
      resolve(buffers[0]);
    };
    lib.on("msg:custom", cb);
    lib.send({ nodeflame: "code?" });
  });
}

// plotly's FigureWidget module from the library model's gzip bytes, imported once per page
function importFrom(lib) {
  const g = globalThis;
  if (!g[KEY]) {
    g[KEY] = (async () => {
      performance.mark("nodeflame:library-start");
      const code = await codeOf(lib);
      const bytes = code instanceof DataView ? new Uint8Array(code.buffer, code.byteOffset, code.byteLength)
        : code instanceof ArrayBuffer ? new Uint8Array(code) : code;
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      const text = await new Response(stream).text();
      const url = URL.createObjectURL(new Blob([text], { type: "text/javascript" }));
      performance.mark("nodeflame:library-decompressed");
      try {
        return await import(/* webpackIgnore: true */ url);
      } finally {
        URL.revokeObjectURL(url);
        performance.mark("nodeflame:library-loaded");
      }
    })();
    g[KEY].catch(() => { delete g[KEY]; });
  }
  return g[KEY];
}
"""

# the library model's own module: it starts importing plotly as soon as the model arrives, while
# the kernel is still computing the first chart
LIBRARY_ESM = _COMMON + r"""
export default {
  initialize({ model }) {
    importFrom(model).catch((e) => console.error("nodeflame: plotly's front end did not load", e));
  },
};
"""

LOADER = _COMMON + r"""// nodeflame: plotly's FigureWidget front end, from the kernel's one library model
const PY2JS = ["_py2js_addTraces", "_py2js_deleteTraces", "_py2js_moveTraces", "_py2js_restyle",
  "_py2js_relayout", "_py2js_update", "_py2js_animate", "_py2js_removeLayoutProps", "_py2js_removeTraceProps"];

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

async function loadLibrary(model) {
  if (globalThis[KEY]) return globalThis[KEY];
  return importFrom(await libraryModel(model));
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

// clicks on the icicle go to the kernel as one custom message each, naming the node and the chart's
// view (layout.meta.nodeflame.view): the widget manager merges state updates the kernel has not
// answered (a busy kernel kept only the last of plotly's clicks) but sends every custom message.
// Returning false stops plotly's own click-to-zoom (the kernel redraws the focused view) unless
// the kernel asked for it (meta.nodeflame.zoom: click-to-focus off).
// the static chart displayed with this one (its SVG, for places without a kernel) is hidden once
// the live chart has drawn
function hideStatic(model) {
  const key = String(model.get("_nf_static") || "");
  if (!/^[0-9a-f]+$/.test(key)) return;
  for (const s of document.querySelectorAll(".nodeflame-static-" + key)) {
    const out = s.closest(".jp-OutputArea-child") || s.closest(".output_area") || s;
    out.style.display = "none";
  }
}

// plotly hides the label of a frame it does not fit at uniformtext.minsize (its text scaled to 0 and
// not displayed: a 50 px frame of "v8::internal::String::WriteToFlat<unsigned char>" shows nothing);
// flame graph tools show what fits instead.  After each draw, such a label is written cut to the
// frame's width and ending in "\u2026", at the size plotly gave the labels it shows; the whole
// label stays in the text's data-nf-label (hover and clicks use the trace's data, not this text).
const ELLIPSIS = "\u2026";
const PAD = 3;          // px between a frame's left edge and its label, as plotly places them

function shortenLabels(gd) {
  const slices = gd.querySelectorAll("g.slice");
  for (const g of slices) {           // a label plotly has written again since it was cut
    const t = g.querySelector("text");
    if (t && t.hasAttribute("data-nf-label") && !t.textContent.endsWith(ELLIPSIS)) t.removeAttribute("data-nf-label");
  }
  const px = (t) => parseFloat(t.style.fontSize) || 11;
  let size = 0;         // the labels plotly shows share one size (uniformtext): take theirs, in px
  for (const g of slices) {
    const t = g.querySelector("text");
    if (!t || t.style.display === "none" || t.hasAttribute("data-nf-label")) continue;
    const m = /scale\(([0-9.]+)\)/.exec(t.getAttribute("transform") || "");
    size = px(t) * (m ? Number(m[1]) : 1);
    if (size > 0) break;
  }
  for (const g of slices) {
    const t = g.querySelector("text"), path = g.querySelector("path");
    if (!t || !path || t.style.display !== "none") continue;
    const scale = size > 0 ? size / px(t) : 1;
    const box = path.getBBox();
    // (one character and the ellipsis take about 1.5 em: narrower frames are left at once)
    if (box.width - 2 * PAD < 1.5 * px(t) * scale || box.height < 10) continue;
    const room = (box.width - 2 * PAD) / scale;
    const label = t.textContent;
    if (!label) continue;
    const saved = t.getAttribute("transform");
    t.style.display = "";
    const fits = (k) => {
      t.textContent = label.slice(0, k) + ELLIPSIS;
      return t.getComputedTextLength() <= room;
    };
    let lo = 1, hi = label.length - 1;
    if (hi < 1 || !fits(1)) {           // not even one character: stays hidden
      t.textContent = label;
      t.style.display = "none";
      if (saved !== null) t.setAttribute("transform", saved);
      continue;
    }
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (fits(mid)) lo = mid; else hi = mid - 1;
    }
    fits(lo);
    t.setAttribute("data-nf-label", label);
    t.setAttribute("transform", "");
    const bb = t.getBBox();
    t.setAttribute("transform", `translate(${box.x + PAD},${box.y + PAD - bb.y * scale})scale(${scale})`);
  }
}

function hookClicks(model, el) {
  let tries = 0;
  const hook = () => {
    if (typeof el.on !== "function" || !el._fullData) {
      if (tries++ < 1200) setTimeout(hook, 50);
      return;
    }
    hideStatic(model);
    setTimeout(() => hideStatic(model), 1000);
    shortenLabels(el);
    el.on("plotly_afterplot", () => shortenLabels(el));
    el.on("plotly_animated", () => shortenLabels(el));
    el.on("plotly_icicleclick", (ev) => {
      const meta = (el.layout && el.layout.meta && el.layout.meta.nodeflame) || null;
      const pt = ev && ev.points && ev.points[0];
      if (!meta || !pt) return undefined;
      const ids = el.data && el.data[0] && el.data[0].ids;
      const id = pt.id !== undefined ? pt.id : (ids ? ids[pt.pointNumber] : null);
      model.send({ event: "nodeflame-click", id: id === null || id === undefined ? null : String(id),
                   label: pt.label === undefined ? null : String(pt.label), view: meta.view });
      globalThis.__nodeflame_clicks = (globalThis.__nodeflame_clicks || 0) + 1;
      return meta.zoom ? undefined : false;
    });
  };
  hook();
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
      performance.mark("nodeflame:render");
      const cleanup = widget.render({ model, el });
      hookClicks(model, el);
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


def _cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "nodeflame"


@functools.lru_cache(maxsize=1)
def plotly_module() -> tuple[str, bytes]:
    """(plotly version, plotly's FigureWidget front-end module gzip-compressed).

    Compressing 5 MB takes 0.15 s on an idle core (0.5 s on a busy one), so the result is kept
    in ``~/.cache/nodeflame`` (``$XDG_CACHE_HOME``), keyed by plotly's version and the module
    file's size and time; without a writable cache it is compressed in memory."""
    from plotly.basewidget import BaseFigureWidget
    version = _plotly_version()
    esm = BaseFigureWidget._esm
    path = pathlib.Path(getattr(esm, "_path", None) or "")
    if not path.is_file():
        return version, gzip.compress(str(esm).encode("utf-8"), 9, mtime=0)
    st = path.stat()
    cached = _cache_dir() / f"plotly-widget-{version}-{st.st_size}-{int(st.st_mtime)}.js.gz"
    try:
        data = cached.read_bytes()
        if data[:2] == b"\x1f\x8b":
            _prune(cached)
            return version, data
    except OSError:
        pass
    data = gzip.compress(path.read_bytes(), 9, mtime=0)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
    except OSError:
        pass
    _prune(cached)
    return version, data


#: compressed modules kept in the cache: each plotly install (a new virtualenv, an upgrade) has its own
#: key, and without a bound they piled up (46 of 1.5 MB on a test machine after a day of clean clones)
KEEP_MODULES = 3


def _prune(current: pathlib.Path) -> None:
    """Remove all but the KEEP_MODULES most recently written compressed modules (``current`` always
    stays), and leftover temporary files of writers that died."""
    try:
        old = [(f.stat().st_mtime, f) for f in current.parent.glob("plotly-widget-*.js.gz") if f != current]
        tmps = [f for f in current.parent.glob("plotly-widget-*.tmp") if time.time() - f.stat().st_mtime > 3600]
    except OSError:
        return
    for _, f in sorted(old, reverse=True)[KEEP_MODULES - 1:]:
        tmps.append(f)
    for f in tmps:
        try:
            f.unlink()
        except OSError:
            pass


class PlotlyLibrary(anywidget.AnyWidget):
    """A model holding plotly's front-end module once per kernel (never displayed); its own small
    module starts importing plotly in the browser as soon as it arrives."""

    _esm = LIBRARY_ESM.replace("__VERSION__", _plotly_version())
    version = T.Unicode("").tag(sync=True)
    # not synced: sent as a custom message (see codeOf in the front end), so that saved widget
    # state stays small
    code = T.Bytes(b"")

    def __init__(self, **kw):
        super().__init__(**kw)
        self.on_msg(self._on_msg)
        self.send_code()      # unasked: usually there before the browser asks

    def send_code(self) -> None:
        self.send({"nodeflame": "code", "version": self.version}, buffers=[self.code])

    def _on_msg(self, _widget, content, _buffers=None):
        if isinstance(content, dict) and content.get("nodeflame") == "code?":
            self.send_code()


_library: PlotlyLibrary | None = None


def library() -> PlotlyLibrary:
    """This kernel's :class:`PlotlyLibrary` (made, and sent, on first use)."""
    global _library
    if _library is None or getattr(_library, "comm", None) is None:
        version, code = plotly_module()
        _library = PlotlyLibrary(version=version, code=code)
    return _library


def loader() -> str:
    """The figure widgets' ``_esm``."""
    return LOADER.replace("__VERSION__", _plotly_version())
