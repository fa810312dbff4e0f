"""A plain source-map VLQ encoder, written independently of nodeflame's decoder: the tests check the
decoder against it, and bench/bench_sourcemaps.py builds its big maps with it."""
from __future__ import annotations

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def vlq(n: int) -> str:
    v = (-n << 1) | 1 if n < 0 else n << 1
    out = ""
    while True:
        d = v & 31
        v >>= 5
        if v:
            d |= 32
        out += B64[d]
        if not v:
            return out


def encode(lines) -> str:
    """lines: list of lists of segments (tuples of 1, 4 or 5 absolute values)."""
    prev = [0, 0, 0, 0, 0]
    out = []
    for segs in lines:
        prev[0] = 0
        parts = []
        for s in segs:
            parts.append("".join(vlq(v - prev[i]) for i, v in enumerate(s)))
            for i, v in enumerate(s):
                prev[i] = v
        out.append(",".join(parts))
    return ";".join(out)
