"""Interactive SVG flame graph: ``Profile.write("flame.svg", **options)``.

A self-contained SVG (works opened from ``file://``, no network) in the manner
of FlameGraph's ``flamegraph.pl``: one ``<g>`` per drawn frame holding a
``<title>`` (tooltip), a ``<rect>`` and, where it fits, a ``<text>`` label.
The embedded script (``flamegraph.js``, with the frames' integer sample
intervals as a JSON array) adds hover details, click to zoom (ancestors stay,
full width and greyed), regex search (button, Ctrl-F; Escape resets) that
highlights matches and prints the matched share with every sample counted
once, and reset zoom / reset search.  The page also exposes
``window.nodeflame`` (``search(re)``, ``resetSearch()``, ``zoom(i)``,
``resetZoom()``, ``matched()``) for scripting and tests.

Options (all optional, unknown ones ignored):

- ``title`` (default "Flame Graph", "Icicle Graph" when inverted), ``subtitle``
- ``width`` in pixels (1200); ``minwidth``: frames narrower than this many
  pixels (default 0.1; ``"0.5%"`` for a share of the whole) are merged per
  parent into one explicit "other" node and their descendants are not drawn
- ``inverted``: icicle, root on top (default: flame, root at the bottom)
- ``reverse``: draw the bottom-up (caller) tree instead of the top-down one
- ``deltas``: an array per function of the profile, change in percentage
  points; frames are coloured red (grew) / blue (shrank) / grey (unchanged),
  as a differential flame graph
- ``frameheight`` (16), ``fontsize`` (12), ``countname`` (the profile's unit)

Colours are by kind (js, deps, node, builtin, native, kernel, gc, idle,
program each own a range of hues) and, within a kind, deterministic per
function name.  Every name and file is XML-escaped; control characters and
lone surrogates (which XML cannot carry) are shown as ``\\xNN`` / ``\\uNNNN``.

Writing is vectorised: per drawn frame, strings are built by numpy
object-array concatenation; only labels that fit on screen are truncated in a
Python comprehension.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

from ..frames.profile import strings
from ..frames.views import flame_layout_arrays

_I64 = np.int64
_HERE = pathlib.Path(__file__).resolve().parent
XPAD = 10
FONTWIDTH = 0.59  # average glyph width relative to the font size (Verdana-ish)
SEARCH_COLOR = "#e600e6"

# ------------------------------------------------------------------ escaping
_SANITIZE = {i: f"\\x{i:02x}" for i in list(range(0x20)) + list(range(0x7f, 0xa0))}
_SANITIZE.update({i: f"\\u{i:04x}" for i in range(0xD800, 0xE000)})
_SANITIZE.update({0xFFFE: "\\ufffe", 0xFFFF: "\\uffff"})
_XML = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;", ord("'"): "&#39;"}
_SANITIZE_XML = {**_SANITIZE, **_XML}


def sanitize(s: str) -> str:
    """``s`` with what XML 1.0 cannot hold (C0/C1 controls, lone surrogates, U+FFFE/F) made visible."""
    return str(s).translate(_SANITIZE)


def xml_escape(s: str) -> str:
    """``s`` safe as XML text or attribute value (also sanitised)."""
    return str(s).translate(_SANITIZE_XML)


# ------------------------------------------------------- vectorised numbers
_FRAC2 = np.array([""] + [("." + f"{i:02d}").rstrip("0") for i in range(1, 100)], dtype=object)
_FRAC2_FIXED = np.array([f".{i:02d}" for i in range(100)], dtype=object)
_PAD3 = np.array([f"{i:03d}" for i in range(1000)], dtype=object)
_HEX2 = np.array([f"{i:02x}" for i in range(256)], dtype=object)


_SMALL = np.array([str(i) for i in range(4096)], dtype=object)


def _istr(a) -> np.ndarray:
    """Integers as an object array of decimal strings (a table lookup for small non-negative ones,
    as pixel coordinates are)."""
    a = np.asarray(a, _I64)
    if len(a) and 0 <= a.min() and a.max() < len(_SMALL):
        return _SMALL[a]
    out = np.empty(len(a), dtype=object)
    out[:] = list(map(str, a.tolist()))
    return out


def _num_parts(a) -> tuple[np.ndarray, np.ndarray]:
    """Numbers with at most two decimals as (integer part, fraction part) object arrays,
    trailing zeros dropped (``12``, ``3.5``, ``0.25``); joined they read as the number."""
    v = np.rint(np.asarray(a, np.float64) * 100).astype(_I64)
    neg = v < 0
    v = np.abs(v)
    ints = _istr(v // 100)
    if neg.any():
        ints = np.where(neg & (v > 0), "-" + ints, ints)
    return ints, _FRAC2[v % 100]


def _num(a) -> np.ndarray:
    """Numbers with at most two decimals, trailing zeros dropped, as one object array."""
    i, f = _num_parts(a)
    return i + f


def _join_columns(nrows: int, cols: list) -> str:
    """Row-wise concatenation of columns (str constants or object arrays of ``nrows`` strings) as one
    string: a ``str.join`` over the piece matrix, no intermediate strings (the caller hands over a slice
    of rows at a time: _ROWS)."""
    m = np.empty((nrows, len(cols)), dtype=object)
    for j, c in enumerate(cols):
        m[:, j] = c
    return "".join(m.ravel().tolist())


def _commas(a) -> np.ndarray:
    """Non-negative integers with thousands separators (``1,234,567``)."""
    n = np.asarray(a, _I64)
    out = _istr(n)
    idx = np.flatnonzero(n >= 1000)
    if len(idx):
        m = n[idx]
        s = "," + _PAD3[m % 1000]
        m = m // 1000
        while True:
            more = m >= 1000
            fin = ~more
            out[idx[fin]] = _istr(m[fin]) + s[fin]
            if not more.any():
                break
            idx, m, s = idx[more], m[more], s[more]
            s = "," + _PAD3[m % 1000] + s
            m = m // 1000
    return out


# ------------------------------------------------------------------ colours
# one kind palette and one diff shading, shared with the notebook widgets
from .palette import PALETTES, PALETTES_HEX, delta_colors, kind_codes, kind_colors  # noqa: E402,F401


# ------------------------------------------------------------------ assets
def _asset(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")


def _cdata(text: str) -> str:
    return "<![CDATA[\n" + text.replace("]]>", "]]]]><![CDATA[>") + "\n]]>"


# ------------------------------------------------------------------ layout
def _minwidth_fraction(minwidth, plot_width: float) -> float:
    if minwidth is None:
        minwidth = 0.1
    if isinstance(minwidth, str):
        s = minwidth.strip()
        if s.endswith("%"):
            return max(float(s[:-1]), 0.0) / 100.0
        minwidth = float(s)
    return max(float(minwidth), 0.0) / max(plot_width, 1.0)


def render_svg(p, **options) -> str:
    """The SVG document as a string (see the module docstring for the options)."""
    return "".join(_render_parts(p, **options))


_ROWS = 1 << 13  # rows of frames made into text at a time (40 k rows' piece matrix and list: 8 MB each whole)


def _render_parts(p, *, title: str | None = None, subtitle: str | None = None, width=1200,
                  minwidth=0.1, inverted: bool = False, reverse: bool = False, deltas=None,
                  frameheight=16, fontsize=12, countname: str | None = None, **_) -> list:
    """The SVG document as the strings that make it, in order (the frames a string per 8 k rows)."""
    width = float(width or 1200)
    if width < 2 * XPAD + 10:
        width = 2 * XPAD + 10
    fh = float(frameheight or 16)
    fs = float(fontsize or 12)
    plot_w = width - 2 * XPAD
    total = int(p.total)
    unit = countname or str(p.meta.get("unit") or "samples")
    if title is None:
        title = "Icicle Graph" if inverted else "Flame Graph"

    lay = flame_layout_arrays(p, minwidth=_minwidth_fraction(minwidth, plot_w), inverted=bool(reverse))
    if lay is None:  # nothing drawn
        lay = {k: np.empty(0, np.float64 if k == "x0" else _I64) for k in ("func", "other", "depth", "x0", "total")}
    nl = len(lay["func"])
    # row 0 is the synthetic root "all"
    func = np.concatenate([[-1], lay["func"].astype(_I64)])
    other = np.concatenate([[0], lay["other"].astype(_I64)])
    depth = np.concatenate([[0], lay["depth"].astype(_I64) + 1])
    x0 = np.concatenate([[0], np.rint(lay["x0"]).astype(_I64)])
    n = np.concatenate([[total], lay["total"].astype(_I64)])
    nrows = nl + 1
    maxdepth = int(depth.max()) if nrows else 0

    ypad1 = fs * 3
    ypad2 = fs * 2 + 10
    ypad3 = fs * 2 if subtitle else 0.0
    height = (maxdepth + 1) * fh + ypad1 + ypad2 + ypad3
    scale = plot_w / total if total > 0 else 0.0

    # --- per function: escaped label, clean label, colour
    flabels = p.func_labels()
    nf = len(flabels)
    clean_f = np.array([sanitize(s) for s in flabels], dtype=object) if nf else np.empty(0, object)
    esc_f = np.array([s.translate(_XML) for s in clean_f], dtype=object) if nf else np.empty(0, object)
    fcols = p.arrays("funcs")
    fkinds = strings(fcols["kind"]) if nf else np.empty(0, object)
    if deltas is not None:
        dl = np.asarray(deltas, np.float64)
        if len(dl) != nf:
            raise ValueError(f"deltas has {len(dl)} values, the profile has {nf} functions")
        dl = np.nan_to_num(dl)
        fcolor = delta_colors(dl)
    else:
        dl = None
        fcolor = kind_colors(strings(fcols["name"]), fkinds) if nf else np.empty(0, object)

    real = func >= 0
    fsafe = np.where(real, func, 0)
    is_other = (~real) & (np.arange(nrows) > 0)
    # the kind of each row for the script, by its position among the palettes (-1: none of them)
    kind_names = list(PALETTES)
    kother = kind_names.index("other") if "other" in kind_names else -1
    kall = kind_names.index("all") if "all" in kind_names else -1
    fcode = kind_codes(fkinds, kind_names) if nf else np.empty(0, _I64)
    kcode = np.where(real, fcode[fsafe] if nf else 0, np.where(is_other, kother, kall))

    # --- geometry
    xs = XPAD + x0 * scale
    ws = n * scale if total > 0 else np.where(np.arange(nrows) == 0, plot_w, 0.0)
    if inverted:
        ys = ypad1 + ypad3 + depth * fh
    else:
        ys = height - ypad2 - (depth + 1) * fh
    pct = 100.0 * n / total if total > 0 else np.where(np.arange(nrows) == 0, 100.0, 0.0)
    pv = np.rint(pct * 100).astype(_I64)
    drow = np.where(real, dl[fsafe] if nf else 0.0, 0.0) if dl is not None else None
    # labels that fit (flamegraph.pl: room for one character plus two dots)
    chars = np.floor((ws - 6) / (fs * FONTWIDTH)).astype(_I64)
    rect_h = _num([max(fh - 1, 1)])[0]
    unit_s = " " + xml_escape(unit) + ", "
    other_hex, all_hex = PALETTES_HEX["other"], PALETTES_HEX["all"]

    def rows(lo: int, hi: int) -> str:
        """Rows lo..hi-1 as SVG text: their strings are made a slice at a time, never all rows' at once
        (40 k rows' columns of Python strings were ~25 MB)."""
        rl, fl, ol = real[lo:hi], fsafe[lo:hi], is_other[lo:hi]
        other_lab = np.where(ol, "other (" + _istr(other[lo:hi]) + " frames)", "all")
        if nf:
            clean = np.where(rl, clean_f[fl], other_lab)
            esc = np.where(rl, esc_f[fl], other_lab)
            color = np.where(rl, fcolor[fl], np.where(ol, other_hex, all_hex)).astype(object)
        else:
            clean = esc = other_lab
            color = np.where(ol, other_hex, all_hex).astype(object)
        # tooltips: "label (1,234 samples, 5.67%[; +0.12 pp])"
        p2 = pv[lo:hi]
        cols = [esc, " (", _commas(n[lo:hi]), unit_s, _istr(p2 // 100), _FRAC2_FIXED[p2 % 100], "%"]
        if drow is not None:
            d = drow[lo:hi]
            sign = np.where(d > 0, "; +", np.where(d < 0, "; -", "; \u00b1"))
            dv = np.rint(np.abs(d) * 100).astype(_I64)
            cols += [np.where(rl, sign, ""), np.where(rl, _istr(dv // 100) + _FRAC2_FIXED[dv % 100] + " pp", "")]
        x, y, wd, ch = xs[lo:hi], ys[lo:hi], ws[lo:hi], chars[lo:hi]
        txt = np.full(hi - lo, "", dtype=object)
        show = np.flatnonzero(ch >= 3)
        if len(show):
            sl = clean[show]
            sc = ch[show]
            fits = np.fromiter(map(len, sl), _I64, len(sl)) <= sc
            cut = esc[show]                     # a label that fits: its escaped text
            short = np.flatnonzero(~fits)
            cut[short] = [(t[:c - 2] + "..").translate(_XML) for t, c in zip(sl[short].tolist(), sc[short].tolist())]
            txt[show] = "<text x=\"" + _num(x[show] + 3) + "\" y=\"" + _num(y[show] + fh / 2 + fs / 3 - 0.5) + \
                "\">" + cut + "</text>"
        xi, xf = _num_parts(x)
        yi, yf = _num_parts(y)
        wi, wf = _num_parts(wd)
        return _join_columns(hi - lo, ["<g><title>", *cols, ")</title><rect x=\"", xi, xf, "\" y=\"", yi, yf,
                                       "\" width=\"", wi, wf, "\" height=\"" + rect_h + "\" fill=\"", color, "\"/>",
                                       txt, "</g>\n"])

    frames = [rows(lo, min(lo + _ROWS, nrows)) for lo in range(0, nrows, _ROWS)]

    # --- data for the script: integers only (no names, nothing to escape)
    data = ("var NF_DATA={" +
            f"\"total\":{total},\"width\":{json.dumps(width)},\"xpad\":{XPAD},\"fh\":{json.dumps(fh)},"
            f"\"fs\":{json.dumps(fs)},\"fw\":{FONTWIDTH},\"inverted\":{1 if inverted else 0},"
            f"\"kinds\":{json.dumps(kind_names)},"
            "\"x0\":[" + ",".join(map(str, x0.tolist())) + "],"
            "\"n\":[" + ",".join(map(str, n.tolist())) + "],"
            "\"d\":[" + ",".join(map(str, depth.tolist())) + "],"
            "\"k\":[" + ",".join(map(str, np.asarray(kcode, _I64).tolist())) + "]};\n")

    W, H = _num([width])[0], _num([height])[0]
    mid = _num([width / 2])[0]
    css = _asset("flamegraph.css").replace("__FONTSIZE__", _num([fs])[0]).replace(
        "__TITLESIZE__", _num([fs + 5])[0]).replace("__SEARCHCOLOR__", SEARCH_COLOR)
    head = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n',
        f'<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" data-generator="nodeflame">\n',
        "<style type=\"text/css\">", _cdata(css), "</style>\n",
        '<defs><linearGradient id="nf-bg" y1="0" y2="1" x1="0" x2="0">'
        '<stop stop-color="#eeeeee" offset="5%"/><stop stop-color="#eeeeb0" offset="95%"/>'
        '</linearGradient></defs>\n',
        f'<rect id="background" x="0" y="0" width="{W}" height="{H}" fill="url(#nf-bg)"/>\n',
        f'<text id="title" x="{mid}" y="{_num([fs * 2])[0]}">{xml_escape(title)}</text>\n',
    ]
    if subtitle:
        head.append(f'<text id="subtitle" x="{mid}" y="{_num([fs * 4])[0]}">{xml_escape(subtitle)}</text>\n')
    bottom = _num([height - ypad2 / 2])[0]
    head += [
        f'<text id="details" x="{XPAD}" y="{bottom}"> </text>\n',
        f'<text id="unzoom" class="hide" x="{XPAD}" y="{_num([fs * 2])[0]}">Reset Zoom</text>\n',
        f'<text id="search" x="{_num([width - XPAD - 100])[0]}" y="{_num([fs * 2])[0]}">Search</text>\n',
        f'<text id="matched" x="{_num([width - XPAD])[0]}" y="{bottom}"> </text>\n',
        '<g id="frames">\n',
    ]
    tail = ["</g>\n", "<script type=\"text/ecmascript\">", _cdata(data + _asset("flamegraph.js")),
            "</script>\n</svg>\n"]
    return ["".join(head), *frames, "".join(tail)]


def write(p, out, **options) -> None:
    """Write the SVG to the binary file ``out`` (its parts encoded 1 M characters at a time: no
    copy of the whole document as one string, nor of its frames as bytes)."""
    step = 1 << 20
    for part in _render_parts(p, **options):
        for i in range(0, len(part), step):
            out.write(part[i:i + step].encode("utf-8"))

