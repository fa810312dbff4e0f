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

  // zoom so that frame z spans the whole width; its ancestors stay, full width and greyed.
  // DOM writes only where something changes (40k frames zoom in a fraction of a second)
  var cls = new Array(N), curX = new Float64Array(N), curW = new Float64Array(N);
  for (var q = 0; q < N; q++) {
    cls[q] = "";
    curX[q] = parseFloat(rects[q].getAttribute("x"));
    curW[q] = parseFloat(rects[q].getAttribute("width"));
  }
  function setClass(j, c) {
    if (cls[j] !== c) {
      cls[j] = c;
      if (c) groups[j].setAttribute("class", c); else groups[j].removeAttribute("class");
    }
  }
  function place(j, x, w) {
    if (Math.abs(curX[j] - x) < 0.005 && Math.abs(curW[j] - w) < 0.005) return;
    curX[j] = x;
    curW[j] = w;
    var r = rects[j];
    r.setAttribute("x", fmt(x));
    r.setAttribute("width", fmt(w));
    updateText(j, x, w);
  }
  function zoom(z) {
    z = +z;
    if (!(z >= 0 && z < N)) return;
    var zx = D.x0[z], zn = Math.max(D.n[z], 1), zd = D.d[z], ze = zx + zn;
    var sc = full / zn;
    for (var j = 0; j < N; j++) {
      var x0 = D.x0[j], n = D.n[j], d = D.d[j];
      var m = matchedSet && matchedSet[j] ? " match" : "";
      if (d < zd) {
        if (x0 <= zx && x0 + n >= ze) {
          setClass(j, (z === 0 ? "" : "parent") + m);
          place(j, D.xpad, full);
        } else setClass(j, "hide");
      } else if (x0 >= zx && x0 + n <= ze && (n > 0 || j === z)) {
        setClass(j, m.trim());
        place(j, D.xpad + (x0 - zx) * sc, n * sc);
      } else setClass(j, "hide");
    }
    zoomed = z;
    unzoomBtn.setAttribute("class", z === 0 ? "hide" : "");
    if (term !== null) search(term); else setText(matchedEl, " ");
  }
  function resetZoom() { zoom(0); }

  // "/re/flags" or a plain regular expression
  function toRegExp(re) {
    if (re instanceof RegExp) return re;
    var s = String(re), m = /^\/(.*)\/([dgimsuy]*)$/.exec(s);
    return m ? new RegExp(m[1], m[2].replace("g", "")) : new RegExp(s);
  }
  function withMatch(j, on) {
    var c = cls[j].replace(/(^| )match( |$)/, " ").trim();
    if (on && c !== "hide") c = c ? c + " match" : "match";
    setClass(j, c);
  }
  // search: highlight frames whose label matches; share of samples with every sample counted once.
  // Frames merged into "other" cannot be searched: the share they could add is given as a bound.
  var matchedSet = null;
  function search(re) {
    var rx;
    try {
      rx = toRegExp(re);
    } catch (e) {
      setText(matchedEl, "Invalid regex: " + e.message);
      return null;
    }
    term = rx;
    var hits = [], others = [], set = new Uint8Array(N);
    var otherCode = D.kinds.indexOf("other");
    for (var j = 1; j < N; j++) {
      rx.lastIndex = 0;
      var hit = rx.test(label(j));
      if (hit) { hits.push(j); set[j] = 1; }
      else if (D.k[j] === otherCode) others.push(j);
      withMatch(j, hit);
    }
    matchedSet = set;
    // frames nest (laminar intervals): sort by start, wider first, keep the outermost
    hits.sort(function (a, b) { return (D.x0[a] - D.x0[b]) || (D.n[b] - D.n[a]); });
    var count = 0, inZoom = 0, end = -1, tops = [];
    var zx = D.x0[zoomed], ze = zx + D.n[zoomed];
    for (var k = 0; k < hits.length; k++) {
      var h = hits[k], a = D.x0[h], b = a + D.n[h];
      if (a >= end) {
        count += D.n[h];
        inZoom += Math.max(0, Math.min(b, ze) - Math.max(a, zx));
        end = b;
        tops.push(h);
      }
    }
    // "other" frames not inside a match: what they hide might match too
    var extra = 0, t = 0;
    others.sort(function (a, b) { return D.x0[a] - D.x0[b]; });
    for (var o = 0; o < others.length; o++) {
      var ox = D.x0[others[o]];
      while (t < tops.length && D.x0[tops[t]] + D.n[tops[t]] <= ox) t++;
      if (!(t < tops.length && D.x0[tops[t]] <= ox)) extra += D.n[others[o]];
    }
    var pct = D.total > 0 ? 100 * count / D.total : 0;
    var zpct = D.n[zoomed] > 0 ? 100 * inZoom / D.n[zoomed] : 0;
    lastMatch = {samples: count, total: D.total, percent: pct, frames: hits.length,
                 upperSamples: count + extra, upperPercent: D.total > 0 ? 100 * (count + extra) / D.total : 0,
                 zoomSamples: inZoom, zoomPercent: zpct};
    var msg = "Matched: " + pct.toFixed(2) + "%";
    if (extra > 0) msg += " (up to " + lastMatch.upperPercent.toFixed(2) + "% with 'other')";
    if (zoomed !== 0) msg += " (" + zpct.toFixed(2) + "% of zoom)";
    setText(matchedEl, msg);
    searchBtn.setAttribute("class", "show");
    setText(searchBtn, "Reset Search");
    return lastMatch;
  }
  function resetSearch() {
    term = null;
    lastMatch = null;
    matchedSet = null;
    for (var j = 0; j < N; j++) if (cls[j].indexOf("match") >= 0) withMatch(j, false);
    setText(matchedEl, " ");
    searchBtn.setAttribute("class", "");
    setText(searchBtn, "Search");
  }
  function searchPrompt() {
    var t = window.prompt("Search (regular expression, e.g. ^emit|node_modules, or /re/i):",
                          term ? term.source : "");
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
    if (e.key === "F3" || ((e.ctrlKey || e.metaKey) && (e.key === "f" || e.key === "F" || e.keyCode === 70))) {
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
