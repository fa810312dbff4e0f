"""``Profile.write("x.ipynb")``: a ready-to-run notebook for an investigation.

The profile itself is saved beside the notebook as ``x.nfprof`` (nodeflame's
lossless format); the notebook, written with nbformat, loads it and opens the
explorer, the top table and the timeline.  Its first cell states the
capture's metadata (backend, pid, command, node version, when, how long, how
many samples, warnings), so whoever re-opens it knows what they look at.

Options: ``profile_path`` (where to save the profile; default beside the
notebook, required when writing to a file object without a name),
``title``, ``name`` (the variable the notebook uses, default ``p``).
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import re
import os

from ..frames.errors import NodeflameError

_META_ROWS = (
    ("backend", "backend"), ("pid", "pid"), ("command", "command"), ("node version", "node_version"),
    ("source", "source"), ("source format", "source_format"), ("unit", "unit"),
    ("sampling period", "period_ns"), ("achieved rate", "achieved_hz"), ("threads", "threads"),
    ("transforms", "transforms"), ("exit code", "exit_code"),
)


def _target_path(out) -> str | None:
    name = getattr(out, "name", None)
    if not isinstance(name, (str, bytes, os.PathLike)):
        return None
    name = os.fsdecode(name)
    return name[:-4] if name.endswith(".tmp") else name


def _fmt(key, value) -> str:
    if key == "period_ns" and value:
        return f"{value / 1e6:g} ms"
    if key == "achieved_hz" and value:
        return f"{value:g} Hz"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


# punctuation markdown gives a meaning to inside a line (HTML's & < > " ' become entities instead)
_MD_PUNCT = {ord(c): "\\" + c for c in "\\`*_[]|~"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _md_escape(s) -> str:
    """Text for a markdown cell that renders as itself and nothing else.

    Markdown passes HTML through and exports (``jupyter nbconvert --to html``)
    do not sanitise it, so a source path, command line or warning holding
    ``<img src=x onerror=...>`` would run as script.  Markdown's inline
    punctuation is backslash-escaped (no links, images, emphasis, code spans or
    table cells; a leading block marker too), then HTML's special characters become entities (``&lt;`` shows as
    ``<``); line breaks and other control characters become spaces and lone
    surrogates U+FFFD."""
    s = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", str(s))).translate(_MD_PUNCT)
    if s[:1] in ("#", ">", "+", "-", "=", "."):  # block syntax where a value starts a list item
        s = "\\" + s
    return html.escape(s, quote=True)


def metadata_markdown(profile, title: str) -> str:
    m = profile.meta
    unit = m.get("unit") or "samples"
    lines = [f"# {_md_escape(title)}", "", "| | |", "|---|---|"]
    if m.get("start_time"):
        try:
            when = _dt.datetime.fromtimestamp(float(m["start_time"]), _dt.timezone.utc)
            lines.append(f"| captured | {when:%Y-%m-%d %H:%M:%S} UTC |")
        except (TypeError, ValueError, OverflowError, OSError):
            pass
    dur = m.get("duration_ns")
    if dur:
        lines.append(f"| duration | {float(dur) / 1e9:.2f} s |")
    lines.append(f"| total | {profile.total:,} {unit} in {len(profile.samples):,} sample rows |")
    lines.append(f"| functions | {len(profile.funcs):,} ({len(profile.stacks):,} distinct stack prefixes) |")
    for label, key in _META_ROWS:
        v = m.get(key)
        if v in (None, "", [], ()):
            continue
        lines.append(f"| {label} | {_md_escape(_fmt(key, v))} |")
    warnings = m.get("warnings") or []
    if warnings:
        lines += ["", "**Capture warnings:**", ""] + [f"- {_md_escape(str(w))}" for w in warnings]
    lines += ["", "Run all cells to explore: the profile is loaded from the `.nfprof` file beside this notebook."]
    return "\n".join(lines)


def _json_safe(meta: dict) -> dict:
    return json.loads(json.dumps(meta, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def build_notebook(profile, profile_file: str, *, title: str | None = None, name: str = "p"):
    """The notebook (an ``nbformat`` NotebookNode) that opens ``profile_file`` (a path relative
    to the notebook, or absolute)."""
    try:
        import nbformat
        from nbformat import v4
    except ImportError:
        raise NodeflameError("writing .ipynb needs nbformat: pip install 'nodeflame[notebook]'") from None
    m = profile.meta
    if title is None:
        src = str(m.get("source") or "")
        what = (m.get("command") or (src if src and not src.startswith("<") else "")
                or (f"pid {m['pid']}" if m.get("pid") else "a profile"))
        title = f"nodeflame: {what}"
    cells = [
        v4.new_markdown_cell(metadata_markdown(profile, title)),
        v4.new_code_cell(f"import nodeflame as nf\n\n{name} = nf.read({profile_file!r})  # saved beside this notebook\n"
                         f"{name}"),
        v4.new_markdown_cell("## Explorer\nClick a frame to focus on it (the breadcrumbs lead back out); "
                             "search, hide and ignore by regex; select a time range in the strip below the chart. "
                             "The line under the chart replays the current view in code."),
        v4.new_code_cell(f"{name}.flame()"),
        v4.new_markdown_cell("## Top functions\nSelf and total time per function (recursion counted once)."),
        v4.new_code_cell(f"{name}.top(25)"),
        v4.new_markdown_cell("## Timeline\nSamples over time, stacked by the kind of each sample's leaf frame."),
        v4.new_code_cell("from nodeflame.widgets import timeline\n\n"
                         f"timeline({name})"),
    ]
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["nodeflame"] = {"profile": profile_file, "meta": _json_safe(dict(m))}
    nbformat.validate(nb)
    return nb


def write_ipynb(profile, out, *, profile_path=None, title: str | None = None, name: str = "p", **_options):
    import nbformat
    target = _target_path(out)
    if profile_path is None:
        if target is None:
            raise NodeflameError("writing a notebook to a file object needs profile_path= "
                                 "(where to save the profile it opens)")
        profile_path = os.path.splitext(target)[0] + ".nfprof"
    profile_path = os.fspath(profile_path)
    profile.write(profile_path, format="nfprof")
    rel = profile_path
    if target is not None:  # the notebook opens it relative to itself, so both can move together
        rel = os.path.relpath(os.path.abspath(profile_path), os.path.dirname(os.path.abspath(target)))
    nb = build_notebook(profile, rel, title=title, name=name)
    out.write(nbformat.writes(nb).encode("utf-8"))
