"""The capture commands of the command line (loaded by ``nodeflame.cli``).

    nodeflame PID text|flame|raw SECONDS [--backend B] [--hz N] [--threads all|main]   # torch's form
    nodeflame record (--pid PID | -- CMD ...) [-d SECONDS] [--hz N] [--backend B] [--threads all|main] -o OUT
    nodeflame backends [--pid PID]
    nodeflame stap-script --pid PID [-o FILE] [--guru]
    nodeflame stap-script --pid PID --build-for KERNEL_RELEASE [--sysroot DIR] -o NAME.ko

Data goes to stdout (torch form) or to OUT; everything else (the progress
bar, the one-line summary after a capture, notes) goes to stderr.  A user
error is one ``nodeflame: ...`` line on stderr and exit status 2 (raised here
as NodeflameError; ``nodeflame.cli.main`` prints it).
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile

from .frames.errors import NodeflameError

#: torch's modes -> output format
TORCH_MODES = {"text": "text", "flame": "svg", "raw": "raw"}

#: extensions of formats that have (or will have) a writer, for a clear message when one is missing
KNOWN_EXTENSIONS = {
    ".svg": "svg", ".cpuprofile": "cpuprofile", ".folded": "folded", ".collapsed": "folded",
    ".txt": "text", ".raw": "raw", ".stacks": "raw", ".nfprof": "nfprof", ".ipynb": "ipynb",
    ".speedscope.json": "speedscope", ".pb.gz": "pprof", ".pprof": "pprof", ".pb": "pprof",
    ".parquet": "parquet",
}

_SIGNALS = {int(s) for s in signal.Signals}

#: writer options that a format understands, from the command line's render options
RENDER_OPTIONS = {"svg": ("title", "width", "minwidth", "inverted"), "text": ("inverted",)}


class _TorchParser(argparse.ArgumentParser):
    """Usage errors of the torch form: one line through NodeflameError (the cli prints it)."""

    def error(self, message):
        raise NodeflameError(f"{message} (usage: nodeflame PID text|flame|raw SECONDS "
                             "[--backend NAME] [--hz N] [--threads all|main])")


# ------------------------------------------------------------------ argument checks
def parse_pid(value) -> int:
    s = str(value).strip()
    try:
        pid = int(s)
    except ValueError:
        raise NodeflameError(f"pid must be a process id (a positive whole number), got {s!r}") from None
    if pid <= 0:
        raise NodeflameError(f"pid must be a process id (a positive whole number), got {s!r}")
    return pid


def parse_duration(value) -> float:
    s = str(value).strip()
    try:
        d = float(s.rstrip("s") if s.endswith("s") and s[:-1] else s)
    except ValueError:
        raise NodeflameError(f"duration must be a number of seconds, got {s!r}") from None
    if not (d > 0 and math.isfinite(d)):
        raise NodeflameError(f"duration must be a positive number of seconds, got {s!r}")
    return d


def is_torch_form(argv, commands=()) -> bool:
    """``nodeflame PID MODE SECONDS``: the first word a number, or (to give a good error for
    ``nodeflame abc text 10``) any non-command word followed by a torch mode."""
    if not argv:
        return False
    if argv[0].isdigit():
        return True
    return (len(argv) >= 2 and argv[1] in TORCH_MODES and not argv[0].startswith("-")
            and argv[0] not in commands)


def writer_for(path, format: str | None = None) -> str:
    """The output format for ``path``, checked BEFORE capturing, so a capture is never wasted on
    an output that cannot be written."""
    from .frames import formats
    import nodeflame  # noqa: F401  (registers the writers)
    name = os.path.basename(os.fspath(path)).lower() if path is not None else ""
    want = formats._canon(format) if format else None
    if want is None:
        for ext in sorted(KNOWN_EXTENSIONS, key=len, reverse=True):
            if name.endswith(ext):
                want = KNOWN_EXTENSIONS[ext]
                break
    try:
        return formats.format_for_path(path if want is None else name, want)
    except NodeflameError as e:
        raise NodeflameError(f"{e}; known output extensions: {_available_extensions()}") from None


def _available_extensions() -> str:
    from .frames import formats
    exts = []
    for w in formats.WRITERS.values():
        exts += [e for e in w.extensions if e not in exts]
    return ", ".join(exts) or "(none)"


def _check_output_path(out: str) -> None:
    d = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(d):
        raise NodeflameError(f"{out}: directory {d} does not exist")
    if not os.access(d, os.W_OK):
        raise NodeflameError(f"{out}: cannot write in directory {d} (permission denied)")
    if os.path.isdir(out):
        raise NodeflameError(f"{out}: is a directory; give a file name such as {os.path.join(out, 'profile.cpuprofile')}")


def _writer_options(fmt: str, args) -> dict:
    from .cli_options import render_options
    opts = render_options(args)
    allowed = RENDER_OPTIONS.get(fmt, ())
    return {k: v for k, v in opts.items() if k in allowed}


# ------------------------------------------------------------------ capturing
def _do_capture(args, *, pid=None, cmd=None, duration=None):
    from .capture import capture, run  # not `from . import capture` (nodeflame.__getattr__ recursion)
    kw = dict(backend=args.backend, hz=args.hz, threads=args.threads, progress=None,
              source_maps=not getattr(args, "no_source_maps", False))
    opts = {}
    if getattr(args, "stap_module", None):
        opts["module"] = os.path.abspath(args.stap_module)
    if getattr(args, "stap_guru", False):
        opts["guru"] = True
    if opts:
        if args.backend not in ("stap", "auto"):
            raise NodeflameError(f"--stap-module/--stap-guru are options of the stap backend, not of {args.backend}")
        kw.update(backend="stap", backend_options=opts)
    if cmd:
        return run(cmd, duration, **kw)
    return capture(pid, duration, **kw)


def summary_line(p, wrote: str | None = None) -> str:
    """One line: backend, samples, duration, achieved rate, threads, warnings."""
    m = p.meta
    parts = [f"{m.get('backend') or '?'} backend"]
    dur = (m.get("duration_ns") or 0) / 1e9
    s = f"{p.total} samples"
    if dur:
        s += f" in {dur:.1f} s"
    parts.append(s)
    ach, req = m.get("achieved_hz"), m.get("requested_hz")
    if ach is not None:
        parts.append(f"{ach:.0f} Hz achieved" + (f" of {req:g} requested" if req else ""))
    threads = m.get("threads") or []
    if len(threads) > 1:
        parts.append(f"{len(threads)} threads")
    skipped = m.get("backends_skipped") or {}
    failed = [f"{k} {v}" for k, v in skipped.items() if str(v).startswith("could not start")]
    notes = [str(w) for w in (m.get("warnings") or []) if not str(w).startswith("interrupted (Ctrl-C)")]
    if failed:
        notes.append("fell back from " + "; ".join(failed))
    code = m.get("exit_code")
    if isinstance(code, int) and code > 0:
        notes.append(f"the program exited with status {code}")
    elif isinstance(code, int) and code < 0 and -code not in (signal.SIGTERM, signal.SIGKILL):
        notes.append(f"the program was killed by {signal.Signals(-code).name if -code in _SIGNALS else -code}")
    if p.total == 0:
        notes.append("no samples were taken")
    line = "nodeflame: " + ", ".join(parts)
    if wrote:
        line += f"; wrote {wrote}"
    if notes:
        line += "; warning: " + "; ".join(notes)
    return line


def _note(msg: str) -> None:
    print(f"nodeflame: {msg}", file=sys.stderr, flush=True)


def _sigint_held():
    """Ctrl-C is ignored while a captured profile is written (an impatient second Ctrl-C must
    not lose what the first one kept).  Outside the main thread: no effect."""
    from .capture import sigint_held as held  # the capture driver's, without a limit
    return held()


def _write_file(p, out: str, fmt: str, opts: dict) -> str:
    """Write OUT; if that fails after a capture, keep the data in a temporary .nfprof instead."""
    try:
        with _sigint_held():
            p.write(out, format=fmt, **opts)
        return out
    except OSError as e:
        fd, keep = tempfile.mkstemp(prefix=f"nodeflame-{p.meta.get('pid') or 'capture'}-", suffix=".nfprof")
        os.close(fd)
        try:
            p.write(keep, format="nfprof")
        except Exception:
            raise NodeflameError(f"{out}: cannot write: {e.strerror or e}") from None
        raise NodeflameError(f"{out}: cannot write: {e.strerror or e}; the capture was saved to {keep} "
                             f"(nodeflame convert {keep} OUT)") from None


def _interrupted_note(p, where: str) -> None:
    if p.meta.get("interrupted"):
        dur = (p.meta.get("duration_ns") or 0) / 1e9
        _note(f"interrupted after {dur:.1f} s: {where} the {p.total} samples taken")


# ------------------------------------------------------------------ torch form
def torch_command(argv) -> int:
    """``nodeflame PID text|flame|raw SECONDS [options]``: the profile to stdout, notes to stderr."""
    from .cli_options import add_render_options
    ap = _TorchParser(prog="nodeflame", usage="nodeflame PID text|flame|raw SECONDS [options]",
                      description="torch's form: capture the running node process PID for SECONDS and write "
                                  "its text tree (text), an SVG flame graph (flame) or raw stacks for "
                                  "FlameGraph's stackcollapse.pl (raw) to stdout.")
    ap.add_argument("pid", help="process id of a running node program")
    ap.add_argument("mode", help="text, flame or raw")
    ap.add_argument("duration", help="seconds to capture")
    _add_capture_options(ap)
    add_render_options(ap)
    ap.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    args = ap.parse_args(list(argv))
    pid = parse_pid(args.pid)
    if args.mode not in TORCH_MODES:
        raise NodeflameError(f"mode must be one of text, flame, raw (torch's modes), got {args.mode!r}")
    duration = parse_duration(args.duration)
    fmt = TORCH_MODES[args.mode]
    writer_for(None, fmt)
    p = _do_capture(args, pid=pid, duration=duration)
    out = sys.stdout
    try:
        with _sigint_held():
            p.write(out, format=fmt, **_writer_options(fmt, args))
            out.flush()
    finally:
        if not args.quiet:
            print(summary_line(p), file=sys.stderr, flush=True)
        _interrupted_note(p, "printed")
    return 0


def _add_capture_options(ap) -> None:
    ap.add_argument("--backend", default="auto",
                    help="auto (default: the best that can run, see `nodeflame backends`), stap, walker, perf, inspector")
    ap.add_argument("--hz", type=int, help="samples per second (default: the backend's, about 1000)")
    ap.add_argument("--threads", choices=("all", "main"), default="all",
                    help="all: the main thread and worker threads (default); main: the main thread only")
    ap.add_argument("--no-source-maps", action="store_true",
                    help="show generated JS as it runs (default: frames of files with a source map are shown "
                         "in the original source)")


# ------------------------------------------------------------------ record
def _cmd_record(args) -> int:
    cmd = list(args.cmd or [])
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if args.pid is None and not cmd:
        raise NodeflameError("record needs --pid PID or a command after -- (nodeflame record -o out.cpuprofile -- node app.js)")
    if args.pid is not None and cmd:
        raise NodeflameError(f"record takes --pid PID or a command, not both (got --pid {args.pid} and {' '.join(cmd)!r})")
    duration = parse_duration(args.duration) if args.duration is not None else None
    fmt = writer_for(args.output)
    _check_output_path(args.output)
    if args.pid is not None:
        pid = parse_pid(args.pid)
        if duration is None:
            _note(f"recording process {pid} until Ctrl-C")
        p = _do_capture(args, pid=pid, duration=duration)
    else:
        if duration is None:
            _note(f"recording {' '.join(cmd)} until it exits (Ctrl-C stops early)")
        p = _do_capture(args, cmd=cmd, duration=duration)
    wrote = _write_file(p, args.output, fmt, _writer_options(fmt, args))
    if not args.quiet:
        print(summary_line(p, wrote), file=sys.stderr, flush=True)
    _interrupted_note(p, f"wrote {wrote} with")
    return 0


# ------------------------------------------------------------------ backends
def _cmd_backends(args) -> int:
    from .capture import backends, procutil
    from .capture.base import AUTO_ORDER
    pid = None
    if args.pid is not None:
        pid = parse_pid(args.pid)
        t = procutil.describe(pid)   # TargetError (no such process) is a one-line error
        what = (f"node {t.node_version}" if t.node_version else "node") if t.is_node else \
               ("not node" if t.is_node is False else "unknown program")
        print(f"process {pid}: {what}: {t.command[:100] or procutil.comm(pid)}")
    df = backends(pid)
    rows = [("backend", "available", "reason")]
    for r in df.itertuples(index=False):
        rows.append((str(r.backend), "yes" if r.available else "no", str((r.reason if not r.available else r.note) or "")))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}".rstrip())
    avail = set(df.loc[df["available"], "backend"])
    best = next((b for b in AUTO_ORDER if b in avail), None)
    print(f"auto picks: {best}" if best else "auto picks: none (no backend can capture here)")
    return 0


# ------------------------------------------------------------------ stap-script
def _cmd_stap_script(args) -> int:
    from .capture import procutil
    pid = parse_pid(args.pid)
    if args.build_for:
        return _cmd_stap_build(args, pid)
    if args.sysroot:
        raise NodeflameError("--sysroot goes with --build-for KERNEL_RELEASE")
    t = procutil.describe(pid)
    if t.is_node is False:
        raise NodeflameError(f"process {procutil.describe_pid_briefly(pid)} is not a node process")
    import importlib
    try:
        stap = importlib.import_module("nodeflame.capture.stap")
    except ImportError as e:
        raise NodeflameError(f"the stap backend cannot be loaded: {e}") from None
    gen = getattr(stap, "generate_script", None)
    if gen is None:
        raise NodeflameError("nodeflame.capture.stap has no generate_script(pid)")
    try:
        script = gen(pid, guru=True) if args.guru else gen(pid)
    except OSError as e:
        raise NodeflameError(f"cannot generate the SystemTap script for process {pid}: {e}") from None
    if args.output:
        _check_output_path(args.output)
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(script)
        _note(f"wrote {args.output}; run it with: "
              f"sudo {stap.shell_command(stap.stap_command(args.output, pid, guru=args.guru))}")
    else:
        sys.stdout.write(script if script.endswith("\n") else script + "\n")
        sys.stdout.flush()
    return 0


def _cmd_stap_build(args, pid) -> int:
    from .capture import stap
    if not args.output or not args.output.endswith(".ko"):
        raise NodeflameError("--build-for writes a kernel module: give -o NAME.ko")
    _check_output_path(args.output)
    if args.sysroot:
        for key, sentence, _ in stap.runtime_defects(args.build_for, sysroot=args.sysroot):
            if key != "user_addr_max" or not args.guru:
                _note(f"warning: {sentence}")
    _note(f"building {args.output} for kernel {args.build_for}" + (f" in {args.sysroot}" if args.sysroot else "")
          + " (stap -p4: a minute or so)")
    info = stap.build_module(args.output, kernel_release=args.build_for, pid=pid, sysroot=args.sysroot,
                             hz=args.hz or 1000, guru=args.guru)
    _note(f"wrote {args.output} (kernel {info.get('kernel_release', '?')}, node {info.get('node', '?')}, "
          f"{info['build_seconds']:g} s); on the target machine run it with: sudo nodeflame record --pid PID "
          f"--stap-module {args.output} -o out.cpuprofile  (or: sudo staprun -x PID -o out.raw {args.output})")
    return 0


# ------------------------------------------------------------------ registration
def register_commands(sub) -> None:
    from .cli_options import add_render_options
    r = sub.add_parser("record", help="capture a running node process (--pid) or a command (-- CMD) into OUT",
                       description="Capture a running node process (--pid PID) or start a command and "
                                   "capture it (-- node app.js).  Without -d: until Ctrl-C (pid) or until "
                                   "the command exits.  Ctrl-C ends early and still writes OUT.")
    r.add_argument("--pid", help="process id of a running node program")
    r.add_argument("-d", "--duration", help="seconds to capture (default: until Ctrl-C / the command exits)")
    _add_capture_options(r)
    r.add_argument("--stap-module", metavar="NAME.ko",
                   help="stap backend: run this prebuilt module (nodeflame stap-script --build-for) with staprun")
    r.add_argument("--stap-guru", action="store_true", help="stap backend: guru mode (stap -g), an explicit opt-in")
    r.add_argument("-o", "--output", required=True,
                   help="output file; its extension picks the format (.cpuprofile, .svg, .folded, .txt, .nfprof, ...)")
    r.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    add_render_options(r)
    r.add_argument("cmd", nargs="*", metavar="-- CMD", help="command to start and profile (after --)")
    r.set_defaults(run=_cmd_record)
    b = sub.add_parser("backends", help="which capture backends can run here (and from a pid), and why not")
    b.add_argument("--pid", help="check against this process")
    b.set_defaults(run=_cmd_backends)
    s = sub.add_parser("stap-script", help="print the SystemTap script the stap backend would run on PID")
    s.add_argument("--pid", required=True, help="process id of a running node program")
    s.add_argument("-o", "--output", help="write the script to this file instead of stdout "
                   "(with --build-for: the module, NAME.ko)")
    s.add_argument("--build-for", metavar="KERNEL_RELEASE",
                   help="compile the script into a kernel module for this kernel release (stap -r ... -p4), "
                        "to run elsewhere with record --stap-module")
    s.add_argument("--sysroot", metavar="DIR",
                   help="with --build-for: the target's root filesystem (its kernel headers, systemtap, gcc); "
                        "stap runs in it with chroot (root)")
    s.add_argument("--hz", type=int, help="with --build-for: samples per second compiled in (default 1000)")
    s.add_argument("--guru", action="store_true",
                   help="guru mode (stap -g): read user memory with copy_from_user_nofault (works around "
                        "systemtap 4.8 refusing user reads from sampling probes)")
    s.set_defaults(run=_cmd_stap_script)


__all__ = ["register_commands", "torch_command", "is_torch_form", "summary_line", "writer_for",
           "parse_pid", "parse_duration", "TORCH_MODES"]
