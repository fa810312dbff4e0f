"""Command-line options more than one command takes: how a profile is rendered to a file (``convert``,
``record``, torch's ``flame``/``text``).  Its own module so that every command module takes them from
here, none from another command's module."""
from __future__ import annotations


def add_render_options(ap):
    """--title, --width, --minwidth, --inverted on argparse parser ``ap``."""
    ap.add_argument("--title", help="title of an SVG flame graph")
    ap.add_argument("--width", type=int, help="SVG width in pixels (default 1200)")
    ap.add_argument("--minwidth", type=float, help="SVG: merge frames narrower than this many pixels into 'other'")
    ap.add_argument("--inverted", action="store_true", help="icicle: root on top (SVG) / bottom-up tree (text)")


def render_options(args) -> dict:
    """The writer options (``Profile.write(..., **options)``) the parsed ``args`` give."""
    opts = {}
    for k in ("title", "width", "minwidth"):
        v = getattr(args, k, None)
        if v is not None:
            opts[k] = v
    if getattr(args, "inverted", False):
        opts["inverted"] = True
    return opts
