"""The colours every drawing of a profile uses: one palette per kind, one diff shading.

Shared by the SVG writer (:mod:`nodeflame.writers.svg`) and the notebook widgets
(:mod:`nodeflame.widgets`), so that the static flame graph, the live chart, its
legend and the timeline strip say the same thing with the same colour.  Imports
numpy only (a writer may import nothing but ``frames``; ``nodeflame convert`` to SVG loads no pandas).

- **Kinds.** Each kind owns a range of hues (flamegraph.pl's manner: warm for the
  application, cooler for the runtime); within it a function's spot comes from a
  hash of its name, so neighbouring frames differ and a function keeps its colour
  from one profile to the next.  ``KIND_COLORS`` is the middle of each range: the
  swatch of a legend, the colour of a kind's bars in the timeline.
- **Diffs.** Red grew, blue shrank, grey unchanged (or within noise); the
  intensity is the size of the change relative to the largest one drawn, with a
  visible floor so that any real change is tinted.
"""
from __future__ import annotations

import numpy as np

_HEX2 = np.array([f"{i:02x}" for i in range(256)], dtype=object)

# (hue from, hue to, saturation from, to, lightness from, to): the hue range is
# the kind's own, the position within it comes from a hash of the name
PALETTES = {
    "js":      (22, 48, 0.85, 0.95, 0.55, 0.64),   # orange / amber
    "deps":    (62, 82, 0.55, 0.70, 0.48, 0.58),   # yellow-green
    "node":    (105, 140, 0.45, 0.60, 0.52, 0.62),  # green
    "builtin": (172, 192, 0.45, 0.60, 0.50, 0.60),  # aqua
    "native":  (0, 12, 0.75, 0.90, 0.57, 0.65),    # red
    "kernel":  (205, 225, 0.55, 0.70, 0.62, 0.70),  # blue
    "gc":      (255, 275, 0.45, 0.60, 0.64, 0.72),  # violet
    "idle":    (0, 0, 0.0, 0.0, 0.82, 0.88),       # light grey
    "program": (35, 50, 0.15, 0.25, 0.60, 0.68),   # khaki
    "other":   (0, 0, 0.0, 0.0, 0.68, 0.70),       # grey: narrow frames merged
    "all":     (0, 0, 0.0, 0.0, 0.78, 0.78),       # the root
}

# what XML (and so hashing of an encodable string) cannot hold, made visible the way the SVG
# writer shows it: the hash of a name is the hash of the text drawn
_VISIBLE = {i: f"\\x{i:02x}" for i in list(range(0x20)) + list(range(0x7f, 0xa0))}
_VISIBLE.update({i: f"\\u{i:04x}" for i in range(0xD800, 0xE000)})
_VISIBLE.update({0xFFFE: "\\ufffe", 0xFFFF: "\\uffff"})


def hsl_to_hex(h, s, l) -> np.ndarray:
    """Vectorised HSL (hue in degrees, saturation and lightness 0..1) -> ``#rrggbb``."""
    h = np.asarray(h, np.float64) % 360
    s = np.asarray(s, np.float64)
    l = np.asarray(l, np.float64)  # noqa: E741
    c = (1 - np.abs(2 * l - 1)) * s
    hp = h / 60.0
    x = c * (1 - np.abs(hp % 2 - 1))
    z = np.zeros_like(c)
    sector = np.minimum(hp.astype(np.int64), 5)
    r = np.choose(sector, [c, x, z, z, x, c])
    g = np.choose(sector, [x, c, c, x, z, z])
    b = np.choose(sector, [z, z, x, c, c, x])
    m = l - c / 2
    to = lambda v: np.clip(np.rint((v + m) * 255), 0, 255).astype(np.int64)  # noqa: E731
    return "#" + _HEX2[to(r)] + _HEX2[to(g)] + _HEX2[to(b)]


# ------------------------------------------------------------------ hashing
_U = np.uint64
_K0 = int.from_bytes(b"01234567", "little")
_K1 = int.from_bytes(b"89123456", "little")


def _rotl(x, b):
    return (x << _U(b)) | (x >> _U(64 - b))


def _sipround(v0, v1, v2, v3):
    v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
    v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
    v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
    v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def hash_strings(texts) -> np.ndarray:
    """``pd.util.hash_array`` of an object array of str, in numpy: SipHash-2-4 of each text's UTF-8
    under pandas' default key ("0123456789123456"), then pandas' 64-bit mix; every text's 8-byte
    blocks at once, a block position at a time (tests/test_startup.py compares it with pandas')."""
    data = [t.encode("utf-8") for t in texts]
    n = len(data)
    if n == 0:
        return np.empty(0, _U)
    nblk = np.fromiter((len(d) // 8 + 1 for d in data), np.int64, n)
    buf = b"".join(d + bytes(7 - len(d) % 8) + bytes((len(d) & 0xFF,)) for d in data)
    blocks = np.frombuffer(buf, "<u8").astype(_U)
    start = np.cumsum(nblk) - nblk
    order = np.argsort(-nblk, kind="stable")          # longest first: the active ones are a prefix
    nb, st = nblk[order], start[order]
    v0 = np.full(n, _K0 ^ 0x736F6D6570736575, _U)
    v1 = np.full(n, _K1 ^ 0x646F72616E646F6D, _U)
    v2 = np.full(n, _K0 ^ 0x6C7967656E657261, _U)
    v3 = np.full(n, _K1 ^ 0x7465646279746573, _U)
    with np.errstate(over="ignore"):
        for j in range(int(nb[0])):
            a = slice(0, int(np.searchsorted(-nb, -j, side="left")))   # the texts of more than j blocks
            m = blocks[st[a] + j]
            x0, x1, x2, x3 = v0[a], v1[a], v2[a], v3[a]
            x3 ^= m
            x0, x1, x2, x3 = _sipround(x0, x1, x2, x3)
            x0, x1, x2, x3 = _sipround(x0, x1, x2, x3)
            x0 ^= m
            v0[a], v1[a], v2[a], v3[a] = x0, x1, x2, x3
        v2 ^= _U(0xFF)
        for _ in range(4):
            v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        h = v0 ^ v1 ^ v2 ^ v3
        h ^= h >> _U(30)
        h *= _U(0xBF58476D1CE4E5B9)
        h ^= h >> _U(27)
        h *= _U(0x94D049BB133111EB)
        h ^= h >> _U(31)
    out = np.empty(n, _U)
    out[order] = h
    return out


def kind_codes(kinds, keys) -> np.ndarray:
    """``pd.Categorical(kinds, categories=keys).codes`` as int64: each kind's position in ``keys``, -1 if absent."""
    lut = {k: i for i, k in enumerate(keys)}
    get = lut.get
    return np.fromiter((get(k, -1) for k in np.asarray(kinds, dtype=object).tolist()), np.int64, len(kinds))


def kind_colors(names, kinds) -> np.ndarray:
    """Fill colour per (name, kind): the kind picks the hue range, the name's hash the spot in it.
    Unknown kinds take the ``js`` range."""
    names = np.asarray(names, dtype=object)
    kinds = np.asarray(kinds, dtype=object)
    if len(names) == 0:
        return np.empty(0, object)
    clean = np.empty(len(names), dtype=object)
    clean[:] = [str(s).translate(_VISIBLE) for s in names]  # hashing needs encodable text (no lone surrogates)
    h = hash_strings(clean)
    v1 = (h & np.uint64(0xFFFF)).astype(np.float64) / 65535.0
    v2 = ((h >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.float64) / 65535.0
    v3 = ((h >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.float64) / 65535.0
    pal = np.array([PALETTES.get(k, PALETTES["js"]) for k in PALETTES], np.float64)
    keys = list(PALETTES)
    code = kind_codes(kinds, keys)
    code = np.where(code < 0, keys.index("js"), code)
    p = pal[code]
    hue = p[:, 0] + v1 * (p[:, 1] - p[:, 0])
    sat = p[:, 2] + v2 * (p[:, 3] - p[:, 2])
    lig = p[:, 4] + v3 * (p[:, 5] - p[:, 4])
    return hsl_to_hex(hue, sat, lig)


# the first colour of each range ("other" and "all" are single greys)
PALETTES_HEX = {k: hsl_to_hex(np.array([v[0]]), np.array([v[2]]), np.array([v[4]]))[0]
                for k, v in PALETTES.items()}
# the middle of each kind's range: legend swatches, timeline bars
KIND_COLORS = {k: hsl_to_hex(np.array([(v[0] + v[1]) / 2]), np.array([(v[2] + v[3]) / 2]),
                             np.array([(v[4] + v[5]) / 2]))[0]
               for k, v in PALETTES.items() if k not in ("other", "all")}
OTHER_COLOR = PALETTES_HEX["other"]
ROOT_COLOR = PALETTES_HEX["all"]


# ------------------------------------------------------------------ diffs
DIFF_GREY = "#dcdcdc"


def delta_colors(deltas, maxabs: float | None = None) -> np.ndarray:
    """Differential colours: red grew, blue shrank, grey unchanged; intensity by |delta| / ``maxabs``
    (default: the largest |delta|)."""
    d = np.nan_to_num(np.asarray(deltas, np.float64))
    if len(d) == 0:
        return np.empty(0, object)
    m = float(np.max(np.abs(d))) if maxabs is None else float(maxabs)
    t = np.clip(np.abs(d) / m, 0, 1) if m > 0 else np.zeros_like(d)
    # a visible floor so that any real change is tinted
    t = np.where(np.abs(d) >= 0.005, 0.15 + 0.85 * t, 0.0)
    lo = np.rint(220 - 200 * t).astype(np.int64)
    hi = np.full(len(d), 255, np.int64)
    grey = np.full(len(d), 220, np.int64)
    r = np.where(d > 0, hi, np.where(d < 0, lo, grey))
    g = np.where(d != 0, lo, grey)
    b = np.where(d < 0, hi, np.where(d > 0, lo, grey))
    r, g, b = (np.where(t == 0, 220, v) for v in (r, g, b))
    return "#" + _HEX2[r] + _HEX2[g] + _HEX2[b]


DIFF_RED, DIFF_BLUE = delta_colors([1.0, -1.0])


def diff_shade(delta, significant) -> np.ndarray:
    """Colours of changes in points where only the ``significant`` ones are tinted (grey within
    noise), pale to full by |delta| relative to the largest significant change."""
    delta = np.asarray(delta, np.float64)
    sig = np.asarray(significant, bool)
    return delta_colors(np.where(sig, delta, 0.0))
