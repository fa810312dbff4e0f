"""IPython magic: ``%load_ext nodeflame``, then

    %nodeflame PID [SECONDS]                 capture a running node process, show the explorer
    %nodeflame --run "node app.js" [SECONDS] start a program and profile it
    %nodeflame 4242 5 --backend inspector --hz 500 --as prof --no-show

Options: ``--backend`` (auto, inspector, perf, walker, stap), ``--hz``,
``--as NAME`` (store the Profile in the notebook's namespace under NAME;
default ``_nodeflame_profile``), ``-o FILE`` (also write the profile: any
format nodeflame writes, e.g. ``x.ipynb``, ``flame.svg``), ``--no-show``
(return the Profile instead of the explorer), ``--icicle``, ``--inverted``.
The magic returns the explorer, so it displays as the cell's output.
"""
from __future__ import annotations

import argparse
import shlex

DEFAULT_SECONDS = 10.0
DEFAULT_NAME = "_nodeflame_profile"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ValueError(message)


def _parser() -> _Parser:
    ap = _Parser(prog="%nodeflame", add_help=False,
                 description="capture a node process (by pid) or a command and show the flame explorer")
    ap.add_argument("target", nargs="?", help="pid of a running node process")
    ap.add_argument("seconds", nargs="?", type=float, help=f"how long to sample (default {DEFAULT_SECONDS:g} s)")
    ap.add_argument("--run", dest="command", help='a command to start and profile, e.g. "node app.js"')
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--hz", type=int)
    ap.add_argument("--as", dest="name", default=DEFAULT_NAME)
    ap.add_argument("-o", "--output", dest="output")
    ap.add_argument("--no-show", dest="show", action="store_false")
    ap.add_argument("--icicle", action="store_true")
    ap.add_argument("--inverted", action="store_true")
    ap.add_argument("-h", "--help", action="store_true")
    return ap


def parse(line: str) -> argparse.Namespace:
    """Parse the magic's line; raises ValueError with a usage message when it makes no sense."""
    ap = _parser()
    try:
        args = ap.parse_args(shlex.split(line))
    except ValueError as e:
        raise ValueError(f"{e}\n{ap.format_usage().strip()}") from None
    if args.help:
        return args
    if args.command is not None:
        # `--run "node app.js" 5`: the positional that parsed as the target is the duration
        if args.target is not None:
            if args.seconds is not None:
                raise ValueError("--run takes the command and at most SECONDS, not a pid too\n"
                                 + ap.format_usage().strip())
            try:
                args.seconds = float(args.target)
            except ValueError:
                raise ValueError(f"SECONDS must be a number, not {args.target!r}") from None
            args.target = None
        if not args.command.strip():
            raise ValueError("--run needs a command, e.g. --run \"node app.js\"")
        args.pid = None
    else:
        if args.target is None:
            raise ValueError("give a pid, or --run \"node app.js\"\n" + ap.format_usage().strip())
        try:
            args.pid = int(args.target)
        except ValueError:
            raise ValueError(f"PID must be a process id (an integer), not {args.target!r}") from None
    if args.seconds is None:
        args.seconds = DEFAULT_SECONDS
    if args.seconds <= 0:
        raise ValueError("SECONDS must be positive")
    return args


def run_magic(line: str, namespace: dict | None = None):
    """What ``%nodeflame LINE`` does; returns the explorer (or the Profile with ``--no-show``)."""
    args = parse(line)
    if args.help:
        print(__doc__)
        return None
    import nodeflame.capture as C
    if args.command is not None:
        prof = C.run(args.command, args.seconds, backend=args.backend, hz=args.hz)
    else:
        prof = C.capture(args.pid, args.seconds, backend=args.backend, hz=args.hz)
    if namespace is not None and args.name:
        namespace[args.name] = prof
    if args.output:
        prof.write(args.output)
    if not args.show:
        return prof
    if prof.total <= 0:
        print("nodeflame: the capture holds no samples (did the program exit at once?)")
        return prof
    return prof.flame(orientation="icicle" if args.icicle else "flame", inverted=args.inverted,
                      name=args.name or "p")


def load_ipython_extension(ip) -> None:
    """Register ``%nodeflame`` with IPython (what ``%load_ext nodeflame`` calls)."""
    from IPython.core.error import UsageError

    def nodeflame(line):
        from .frames.errors import NodeflameError
        try:
            return run_magic(line, ip.user_ns)
        except ValueError as e:
            raise UsageError(str(e)) from None
        except NodeflameError as e:
            raise UsageError(f"nodeflame: {e}") from None

    nodeflame.__doc__ = __doc__
    ip.register_magic_function(nodeflame, magic_kind="line", magic_name="nodeflame")


def unload_ipython_extension(ip) -> None:
    ip.magics_manager.magics["line"].pop("nodeflame", None)
