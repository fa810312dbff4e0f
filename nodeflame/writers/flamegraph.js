// nodeflame interactive flame graph.  NF_DATA (written before this script)
// holds, per frame in document order, the sample interval [x0, x0 + n) and
// depth d, plus the geometry.  Names are only ever read from the DOM and
// written back as text (textContent / nodeValue): nothing is parsed as markup.
(function () {
  "use strict";
  var D = NF_DATA;
  var SVGNS = "http://www.w3.org/2000/svg";
  var framesEl = document.getElementById("frames");
  var groups = framesEl.children;
  var N = Math.min(groups.length, D.n.length);
  var full = D.width - 2 * D.xpad;
  var charW = D.fs * D.fw;
  var detailsEl = document.getElementById("details");
  var matchedEl = document.getElementById("matched");
  var searchBtn = document.getElementById("search");
  var unzoomBtn = document.getElementById("unzoom");
  var rects = new Array(N), texts = new Array(N), tips = new Array(N), labels = new Array(N);
  var zoomed = 0, term = null, lastMatch = null;

  for (var i = 0; i < N; i++) {
    var g = groups[i];
    g.__nf = i;
    var c = g.children;
    tips[i] = c[0];
    rects[i] = c[1];
    texts[i] = c.length > 2 ? c[2] : null;
  }

  function frameOf(node) {
    while (node && node.parentNode !== framesEl) node = node.parentNode;
    return node && node.__nf !== undefined ? node.__nf : -1;
  }
  function tipText(i) { return tips[i].textContent; }
  // the label is the tooltip without its final " (counts)" part
  function label(i) {
    var l = labels[i];
    if (l === undefined) {
      l = tipText(i).replace(/ \([^()]*\)$/, "");
      labels[i] = l;
    }
    return l;
  }
  function setText(el, s) {
    if (el.firstChild) el.firstChild.nodeValue = s; else el.appendChild(document.createTextNode(s));
  }
  function fmt(v) { return String(Math.round(v * 100) / 100); }

  // label of frame i for a box w pixels wide, created on demand
  function updateText(i, x, w) {
    var chars = Math.floor((w - 6) / charW);
    var t = texts[i];
    if (chars < 3) {
      if (t) setText(t, "");
      return;
    }
    if (!t) {
      t = document.createElementNS(SVGNS, "text");
      var r = rects[i];
      t.setAttribute("y", fmt(parseFloat(r.getAttribute("y")) + D.fh / 2 + D.fs / 3 - 0.5));
      groups[i].appendChild(t);
      texts[i] = t;
    }
    var s = label(i);
    if (s.length > chars) s = s.substring(0, chars - 2) + "..";
    t.setAttribute("x", fmt(x + 3));
    setText(t, s);
  }

  function place(i, x, w) {
    var r = rects[i];
    r.setAttribute("x", fmt(x));
    r.setAttribute("width", fmt(w));
    updateText(i, x, w);
  }

  // zoom so that frame z spans the whole width; its ancestors stay, full width and greyed
  function zoom(z) {
    z = +z;
    if (!(z >= 0 && z < N)) return;
    var zx = D.x0[z], zn = Math.max(D.n[z], 1), zd = D.d[z], ze = zx + zn;
    var sc = full / zn;
    for (var j = 0; j < N; j++) {
      var x0 = D.x0[j], n = D.n[j], d = D.d[j], g = groups[j];
      if (d < zd) {
        if (x0 <= zx && x0 + n >= ze) {
          g.setAttribute("class", z === 0 ? "" : "parent");
          place(j, D.xpad, full);
        } else g.setAttribute("class", "hide");
      } else if (x0 >= zx && x0 + n <= ze && (n > 0 || j === z)) {
        g.setAttribute("class", "");
        place(j, D.xpad + (x0 - zx) * sc, n * sc);
      } else g.setAttribute("class", "hide");
    }
    zoomed = z;
    unzoomBtn.setAttribute("class", z === 0 ? "hide" : "");
    if (term !== null) search(term); else setText(matchedEl, " ");
  }
  function resetZoom() { zoom(0); }

  // search: highlight frames whose label matches; share of samples with every sample counted once
  function search(re) {
    var rx;
    try {
      rx = re instanceof RegExp ? re : new RegExp(String(re));
    } catch (e) {
      setText(matchedEl, "Invalid regex: " + e.message);
      return null;
    }
    term = rx;
    var hits = [];
    for (var j = 1; j < N; j++) {
      var cls = groups[j].getAttribute("class") || "";
      var base = cls.replace(/(^| )match( |$)/, " ").trim();
      rx.lastIndex = 0;
      if (rx.test(label(j))) {
        hits.push(j);
        groups[j].setAttribute("class", base ? base + " match" : "match");
      } else if (base !== cls) groups[j].setAttribute("class", base);
    }
    // frames nest (laminar intervals): sort by start, wider first, keep the outermost
    hits.sort(function (a, b) { return (D.x0[a] - D.x0[b]) || (D.n[b] - D.n[a]); });
    var count = 0, inZoom = 0, end = -1;
    var zx = D.x0[zoomed], ze = zx + D.n[zoomed];
    for (var k = 0; k < hits.length; k++) {
      var h = hits[k], a = D.x0[h], b = a + D.n[h];
      if (a >= end) {
        count += D.n[h];
        inZoom += Math.max(0, Math.min(b, ze) - Math.max(a, zx));
        end = b;
      }
    }
    var pct = D.total > 0 ? 100 * count / D.total : 0;
    var zpct = D.n[zoomed] > 0 ? 100 * inZoom / D.n[zoomed] : 0;
    lastMatch = {samples: count, total: D.total, percent: pct, frames: hits.length,
                 zoomSamples: inZoom, zoomPercent: zpct};
    var msg = "Matched: " + pct.toFixed(2) + "%";
    if (zoomed !== 0) msg += " (" + zpct.toFixed(2) + "% of zoom)";
    setText(matchedEl, msg);
    searchBtn.setAttribute("class", "show");
    setText(searchBtn, "Reset Search");
    return lastMatch;
  }
  function resetSearch() {
    term = null;
    lastMatch = null;
    for (var j = 0; j < N; j++) {
      var cls = groups[j].getAttribute("class");
      if (cls && cls.indexOf("match") >= 0) groups[j].setAttribute("class", cls.replace(/(^| )match( |$)/, " ").trim());
    }
    setText(matchedEl, " ");
    searchBtn.setAttribute("class", "");
    setText(searchBtn, "Search");
  }
  function searchPrompt() {
    var t = window.prompt("Search (regular expression, e.g. ^emit|node_modules):", term ? term.source : "");
    if (t !== null && t !== "") search(t);
  }

  function details(i) {
    var k = D.kinds[D.k[i]];
    return "Function: " + tipText(i) + (k && k !== "all" ? " [" + k + "]" : "");
  }

  framesEl.addEventListener("mouseover", function (e) {
    var i = frameOf(e.target);
    if (i >= 0) setText(detailsEl, details(i));
  });
  framesEl.addEventListener("mouseout", function (e) {
    if (frameOf(e.target) >= 0) setText(detailsEl, " ");
  });
  document.documentElement.addEventListener("click", function (e) {
    var i = frameOf(e.target);
    if (i >= 0) {
      zoom(i);
      setText(detailsEl, details(i));
    } else if (e.target === unzoomBtn) resetZoom();
    else if (e.target === searchBtn) {
      if (term !== null) resetSearch(); else searchPrompt();
    }
  });
  window.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && (e.key === "f" || e.key === "F" || e.keyCode === 70)) {
      e.preventDefault();
      searchPrompt();
    } else if (e.key === "Escape") {
      if (term !== null) resetSearch(); else resetZoom();
    }
  });

  window.nodeflame = {
    search: search, resetSearch: resetSearch, zoom: zoom, resetZoom: resetZoom,
    matched: function () { return lastMatch; },
    zoomed: function () { return zoomed; },
    frames: N, data: D
  };
})();
