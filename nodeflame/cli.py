"""The command line.  ``main(argv) -> int`` so it is testable in-process.

    nodeflame convert INPUT OUTPUT [--from FMT] [--to FMT] [--title T] [--width W] [--minwidth PX] [--inverted]
    nodeflame top INPUT [-n N] [--by self|total] [--lines [--func RE]]
    nodeflame diff BEFORE AFTER [-o OUT] [-n N]

convert, top and diff take ``--source-maps [DIR]`` (repeatable) to show JS
frames in their original source.

A user error prints one line (``nodeflame: ...``) to stderr and exits 2.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .cli_options import add_render_options, render_options
from .frames.errors import FormatWarning, NodeflameError

# sub-commands are registered by name -> (configure parser, run); see _commands()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other user error
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _keep_freed_memory() -> None:
    """A conversion is one short process that allocates and frees big arrays over
    and over: have glibc keep freed memory for reuse instead of handing it back
    to the kernel and faulting fresh zeroed pages in again (a third less system
    time on big inputs).  No-op elsewhere.  Arrow's buffers (the readers' interning, the folded
    writer's text) come from the same malloc instead of Arrow's default mimalloc, which hands freed
    segments back and keeps its own: raw 10 M -> folded peak 583 -> 493 MB, less system time."""
    import os
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # read when pyarrow first allocates
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    for param, value in ((-1, 1 << 30), (-2, 1 << 26), (-3, 1 << 30)):  # M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD
        mallopt(param, value)


def _add_source_map_option(ap):
    ap.add_argument("--source-maps", dest="source_maps", action="append", nargs="?", const="", metavar="DIR",
                    help="show JS frames in their original source through source maps (found beside the "
                         "generated files, or in DIR, searched recursively; repeatable)")


def _read(path, args):
    """Read a profile; with --source-maps, apply them."""
    from .frames.formats import read
    p = read(path, format=args.from_fmt)
    dirs = getattr(args, "source_maps", None)
    if dirs is not None:
        p = p.with_source_maps(search=[d for d in dirs if d])
        for w in p.meta.get("warnings") or []:
            if "source map" in w:
                print(f"nodeflame: warning: {w}", file=sys.stderr)
    return p


def _cmd_convert(args) -> int:
    _keep_freed_memory()
    p = _read(args.input, args)
    p.write(args.output, format=args.to_fmt, **render_options(args))
    return 0


def _cmd_top(args) -> int:
    import pandas as pd
    p = _read(args.input, args)
    if args.lines:
        hl = p.hot_lines(args.func).head(args.n)
        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 70,
                               "display.float_format", "{:.2f}".format):
            print(f"{p.total} {p.meta.get('unit') or 'samples'}, hottest lines")
            print(hl[["self", "share", "total", "file", "line", "name", "text"]].to_string(index=False))
        return 0
    df = p.top(args.n, by=args.by)
    cols = ["self", "self_pct", "total", "total_pct", "kind", "name", "file", "line"]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60,
                           "display.float_format", "{:.2f}".format):
        print(f"{p.total} {p.meta.get('unit') or 'samples'}, {len(p.funcs)} functions")
        print(df[cols].to_string(index=False))
    return 0


def _cmd_diff(args) -> int:
    import pandas as pd
    from .frames.diff import diff
    d = diff(_read(args.before, args), _read(args.after, args))
    if args.output:
        d.write(args.output, format=args.to_fmt, **render_options(args))
        return 0
    t = d.table(args.n)
    cols = ["status", "self_before_pct", "self_after_pct", "self_delta_pp", "self_low_pp", "self_high_pp",
            "total_delta_pp", "significant", "name", "file", "line"]
    with pd.option_context("display.max_rows", None, "display.width", 220, "display.max_colwidth", 50,
                           "display.float_format", "{:+.2f}".format):
        print(f"before {d.before.total} samples, after {d.after.total} samples, normalised by {d.normalize}; "
              f"{int(d.table()['significant'].sum())} functions changed beyond sampling noise "
              f"(Benjamini-Hochberg q <= {d.alpha:g}; low/high: unadjusted 95 % intervals)")
        for w in d.warnings:
            print(f"warning: {w}", file=sys.stderr)
        print(t[cols].to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="nodeflame", description="Profile running Node.js processes; convert and inspect profiles.",
                 epilog="torch's form, too: nodeflame PID text|flame|raw SECONDS [options] captures the running "
                        "node process PID and writes a text tree, an SVG flame graph or raw stacks to stdout "
                        "(nodeflame PID text 1 --help for its options).")
    sub = ap.add_subparsers(dest="command", parser_class=_Parser)
    c = sub.add_parser("convert", help="convert a profile between formats (format sniffed / from extension)")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--from", dest="from_fmt", help="input format (default: sniffed from content)")
    c.add_argument("--to", dest="to_fmt", help="output format (default: from OUTPUT's extension)")
    add_render_options(c)
    _add_source_map_option(c)
    c.set_defaults(run=_cmd_convert)
    t = sub.add_parser("top", help="self and total time per function")
    t.add_argument("input")
    t.add_argument("-n", type=int, default=20, help="rows to show (default 20)")
    t.add_argument("--by", choices=("self", "total"), default="self")
    t.add_argument("--from", dest="from_fmt")
    t.add_argument("--lines", action="store_true", help="the hottest source lines, with their text")
    t.add_argument("--func", help="with --lines: only lines of functions matching this regular expression")
    _add_source_map_option(t)
    t.set_defaults(run=_cmd_top)
    df = sub.add_parser("diff", help="compare two profiles: table of changes, or a differential SVG / two-count folded")
    df.add_argument("before")
    df.add_argument("after")
    df.add_argument("-o", "--output", help="write OUT (.svg differential flame graph, .folded two counts)")
    df.add_argument("-n", type=int, default=20, help="rows to print (default 20)")
    df.add_argument("--from", dest="from_fmt")
    df.add_argument("--to", dest="to_fmt")
    add_render_options(df)
    _add_source_map_option(df)
    df.set_defaults(run=_cmd_diff)
    for register in EXTRA_COMMANDS:
        register(sub)
    return ap


# functions (subparsers) -> None that add further sub-commands (capture commands append here)
EXTRA_COMMANDS: list = []
# the sub-commands build_parser() defines itself: run without importing the capture and dataset commands
_OWN_COMMANDS = ("convert", "top", "diff")


def _one_blas_thread() -> None:
    """No command does linear algebra, but numpy's bundled OpenBLAS starts a thread per core when numpy is
    imported, and they spin: 0.08-0.12 s of CPU per process here (`python -c 'import numpy'`: 0.18-0.21 s
    CPU, 0.085-0.10 s with one thread), a third of converting a small file.  Unless the user set it, one
    thread; numpy reads it when it is first imported (in this process: its import is deferred).  Only for
    convert, top and diff, which start no program: a command given to ``record --`` inherits the environment."""
    import os
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _OWN_COMMANDS:
        _one_blas_thread()
    try:
        if not (argv and argv[0] in _OWN_COMMANDS):  # convert, top, diff need neither capture nor dataset
            _load_extra_commands()
            if _torch_form(argv):  # torch form: nodeflame <pid> <text|flame|raw> <duration>
                return torch_main(argv)
        ap = build_parser()
        args = ap.parse_args(argv)
        if not getattr(args, "run", None):
            ap.print_help(sys.stderr)
            return 2
        with warnings.catch_warnings():
            warnings.simplefilter("always", FormatWarning)
            warnings.showwarning = _show_warning
            return int(args.run(args) or 0)
    except _UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except NodeflameError as e:
        print(f"nodeflame: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nodeflame: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"nodeflame: warning: {message}", file=sys.stderr)


def torch_main(argv) -> int:
    """``nodeflame <pid> <text|flame|raw> <duration>``: provided by the capture layer."""
    from .cli_capture import torch_command
    return torch_command(argv)


def _torch_form(argv) -> bool:
    if argv and argv[0].isdigit():
        return True
    from .cli_capture import is_torch_form
    return is_torch_form(argv, ("convert", "top", "diff", "record", "backends", "stap-script", "ingest"))


def _load_extra_commands():
    if EXTRA_COMMANDS:
        return
    from .cli_capture import register_commands
    EXTRA_COMMANDS.append(register_commands)
    from .cli_dataset import register_commands as register_dataset  # ingest; record --to (after record)
    EXTRA_COMMANDS.append(register_dataset)


def main_entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    main_entry()
