"""The dataset commands of the command line (loaded by ``nodeflame.cli``).

    nodeflame ingest PATH... --to DATASET [--label k=v ...] [--from FMT]
    nodeflame record (--pid PID | --match REGEX) --to DATASET [--every SECONDS] [-d SECONDS]
                     [--label k=v ...] [--keep 7d] [--max-size 2GB] [capture options]

``record --to`` captures ``-d`` seconds every ``--every`` seconds into the dataset until
Ctrl-C or SIGTERM, which end it after the capture under way has been written (a second
Ctrl-C cuts that capture short and still writes what it sampled).  ``--match`` follows every
node process whose command line matches, including ones that start later; they are captured one
after the other in each round.  ``record`` without
``--to`` is the one-shot record of nodeflame.cli_capture.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time

from .frames.errors import NodeflameError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
               "ki": 1024, "kib": 1024, "mi": 1024 ** 2, "mib": 1024 ** 2, "gi": 1024 ** 3, "gib": 1024 ** 3,
               "ti": 1024 ** 4, "tib": 1024 ** 4}


def _note(msg: str) -> None:
    print(f"nodeflame: {msg}", file=sys.stderr, flush=True)


def parse_size(value) -> int:
    """``2GB`` (10^9), ``500MiB`` (2^20), ``1000`` (bytes) -> bytes."""
    m = _SIZE.match(str(value))
    if not m:
        raise NodeflameError(f"--max-size: not a size: {value!r} (use e.g. 500MB, 2GB, 1GiB)")
    n = float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
    if n <= 0:
        raise NodeflameError(f"--max-size must be positive, got {value!r}")
    return int(n)


def _open_module():
    import importlib
    try:
        return importlib.import_module(".dataset", __package__)
    except ImportError as e:
        raise NodeflameError(f"datasets need nodeflame[fleet] (pip install 'nodeflame[fleet]'): {e}") from None


def _open(path):
    return _open_module().dataset(path)


# ------------------------------------------------------------------ ingest
def _inputs(paths):
    for p in paths:
        if os.path.isdir(p):
            for d, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if not f.startswith("."):
                        yield os.path.join(d, f)
        else:
            yield p


def _cmd_ingest(args) -> int:
    from .frames.formats import read
    ds = _open(args.to)
    from .dataset.store import parse_labels
    labels = parse_labels(args.label)
    ok = bad = 0
    for path in _inputs(args.paths):
        try:
            p = read(path, format=args.from_fmt)
            mtime = os.path.getmtime(path)
            cid = ds.add(p, labels=labels, time=None if _has_epoch_start(p) else mtime)
        except (NodeflameError, OSError) as e:
            bad += 1
            _note(f"{path}: skipped: {e}")
            continue
        ok += 1
        if not args.quiet:
            _note(f"{path}: {p.total} {p.meta.get('unit') or 'samples'} -> {cid}")
    _note(f"ingested {ok} file{'s' if ok != 1 else ''} into {args.to}" + (f"; {bad} skipped" if bad else ""))
    return 0 if bad == 0 else 1


def _has_epoch_start(p) -> bool:
    st = p.meta.get("start_time")
    return isinstance(st, (int, float)) and 1e9 <= float(st) < 1e10


# ------------------------------------------------------------------ record --to
class _Stop:
    """SIGTERM or a first Ctrl-C: stop after the capture under way.  A second Ctrl-C while the
    capture is sampling: cut it short (what was sampled is still written).  A Ctrl-C at any other
    moment (the session closing, the profile being built or written) only asks to stop: the
    capture under way is finished and written atomically first.

    Whether the capture is sampling is what the capture layer says: ``phase`` is set by its
    ``on_phase`` callback (see ``nodeflame.capture.PHASES``), None between captures.

    Ctrl-C while a session starts, stops or closes reaches the capture layer's own handler, not
    this one; so every signal is also noted on a wakeup fd, read after each capture (``seen``)."""

    def __init__(self):
        self.event = threading.Event()
        self.sigints = 0
        self.phase: str | None = None
        self._old = {}
        self._wake = None
        self._old_wake = None

    def install(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        try:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._old_wake = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            self._wake = (r, w)
        except (ValueError, OSError):  # not the main thread
            self._wake = None

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self._wake is not None:
            signal.set_wakeup_fd(self._old_wake if self._old_wake is not None else -1)
            for fd in self._wake:
                os.close(fd)
            self._wake = None

    def seen(self) -> bool:
        """Read the signals delivered since the last call; a SIGINT or SIGTERM among them (even
        one a capture held for itself while it closed) is a stop request.  True when stopping."""
        if self._wake is not None:
            try:
                while True:
                    data = os.read(self._wake[0], 512)
                    if not data:
                        break
                    if not self.event.is_set() and {signal.SIGINT, signal.SIGTERM} & set(data):
                        self.event.set()
                        sig = signal.SIGINT if signal.SIGINT in data else signal.SIGTERM
                        _note(f"{signal.Signals(sig).name}: stopping after the capture under way")
            except BlockingIOError:
                pass
        return self.event.is_set()

    def _handle(self, signum, frame):
        first = not self.event.is_set()
        self.event.set()
        if signum == signal.SIGINT:
            self.sigints += 1
            if self.sigints >= 2:
                # only while sampling does the capture layer end the capture early and keep it; anywhere
                # else (the profile being built or written) a KeyboardInterrupt would lose it
                if self.phase == "sampling":
                    raise KeyboardInterrupt
                _note("SIGINT: the capture under way is being finished and written; stopping after it")
        if first:
            _note(f"{signal.Signals(signum).name}: stopping after the capture under way")


def matching_pids(regex, exclude=()) -> list[int]:
    """node processes whose command line matches ``regex`` (this process and its parents excluded)."""
    from .capture import procutil
    rx = re.compile(regex)
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid in exclude:
            continue
        try:
            argv = procutil.cmdline(pid)
        except (OSError, NodeflameError):
            continue
        if not argv or not rx.search(" ".join(argv)):
            continue
        try:
            if procutil.is_node(pid):
                out.append(pid)
        except (OSError, NodeflameError):
            continue
    return sorted(out)


def _ancestors() -> set:
    out, pid = {os.getpid()}, os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        out.add(pid)
    return out


def _capture_one(args, pid, duration, stop):
    """One capture of ``pid``; ``stop.phase`` follows it (None once it has returned or failed)."""
    from .capture import capture

    def on_phase(phase):
        stop.phase = phase

    try:
        return capture(pid, duration, backend=args.backend, hz=args.hz, threads=args.threads, progress=False,
                       source_maps=not getattr(args, "no_source_maps", False), on_phase=on_phase)
    finally:
        stop.phase = None


def _cmd_record_to(args) -> int:
    from .capture import TargetError
    from .cli_capture import parse_duration, parse_pid, summary_line
    if args.pid is None and not args.match:
        raise NodeflameError("record --to needs --pid PID or --match REGEX")
    if args.pid is not None and args.match:
        raise NodeflameError("record --to takes --pid or --match, not both")
    if args.cmd:
        raise NodeflameError("record --to follows running processes (--pid, --match), not a command")
    if args.output:
        raise NodeflameError("record takes -o OUT (one capture) or --to DATASET (captures every --every s), not both")
    duration = parse_duration(args.duration) if args.duration is not None else 10.0
    every = parse_duration(args.every) if args.every is not None else None
    if every is not None and every < duration:
        raise NodeflameError(f"--every {every:g} s is shorter than a capture (-d {duration:g} s)")
    _open_module()
    from .dataset.core import parse_seconds
    from .dataset.store import parse_labels
    labels = parse_labels(args.label)
    keep = parse_seconds(args.keep) if args.keep else None
    max_bytes = parse_size(args.max_size) if args.max_size else None
    pid = parse_pid(args.pid) if args.pid is not None else None
    rx = None
    if args.match:
        try:
            rx = re.compile(args.match)
        except re.error as e:
            raise NodeflameError(f"--match: bad regular expression {args.match!r}: {e}") from None
    ds = _open(args.to)
    stop = _Stop()
    stop.install()
    exclude = _ancestors()
    rounds = 0
    written = 0
    what = f"process {pid}" if pid is not None else f"node processes matching {args.match!r}"
    _note(f"recording {what} into {args.to}: {duration:g} s " +
          (f"every {every:g} s" if every else "back to back") + " until Ctrl-C or SIGTERM")
    try:
        while not stop.event.is_set():
            t_round = time.monotonic()
            pids = [pid] if pid is not None else matching_pids(rx, exclude)
            if pid is not None and not _alive(pid):
                _note(f"process {pid} is gone; stopping")
                break
            results = _capture_round(args, pids, duration, stop)
            stop.seen()
            for p_id, prof, err in results:
                if err is not None:
                    if not isinstance(err, TargetError) or pid is not None:
                        _note(f"process {p_id}: {err}")
                    continue
                cid = ds.add(prof, labels=labels)
                written += 1
                if not args.quiet:
                    print(summary_line(prof, f"{args.to} {cid}"), file=sys.stderr, flush=True)
            rounds += 1
            if keep is not None or max_bytes is not None:
                gone = ds.prune(keep=keep, max_bytes=max_bytes)
                if gone and not args.quiet:
                    _note(f"retention: deleted {len(gone)} oldest capture{'s' if len(gone) != 1 else ''}")
            if pid is not None and not _alive(pid):
                _note(f"process {pid} exited; stopping")
                break
            if args.rounds and rounds >= args.rounds:
                break
            wait = (every - (time.monotonic() - t_round)) if every else 0.0
            if not pids:
                wait = max(wait, 1.0)  # nothing to follow yet: look again soon
            if stop.seen():
                break
            if wait > 0:
                _wait(stop, wait)
    finally:
        stop.restore()
    _note(f"stopped after {rounds} round{'s' if rounds != 1 else ''}: {written} capture"
          f"{'s' if written != 1 else ''} in {args.to}")
    return 0


def _wait(stop, seconds):
    """Wait ``seconds`` or until a stop request (one the capture layer held for itself included)."""
    end = time.monotonic() + seconds
    while not stop.event.is_set():
        left = end - time.monotonic()
        if left <= 0 or stop.seen():
            return
        stop.event.wait(min(left, 0.2))


def _alive(pid) -> bool:
    from .dataset.store import pid_alive
    return pid_alive(pid)


def _capture_round(args, pids, duration, stop):
    """Capture the pids one after the other (the inspector backend opens one fixed port, so two
    at once would collide); [(pid, Profile | None, error | None)].  A stop request ends the round
    after the capture under way."""
    from .capture import CaptureError, TargetError, TargetExited
    errors = (CaptureError, TargetError, TargetExited, NodeflameError, OSError)
    out = []
    for i, p in enumerate(pids):
        if i and stop.event.is_set():
            break
        try:
            prof = _capture_one(args, p, duration, stop)
        except errors as e:
            out.append((p, None, e))
            continue
        except KeyboardInterrupt:  # Ctrl-C pressed again and again while a session stopped: it gave up
            stop.event.set()
            out.append((p, None, NodeflameError("capture abandoned: Ctrl-C while the session was stopping")))
            break
        if prof.meta.get("interrupted"):  # a Ctrl-C the capture layer held for itself: a stop request too
            stop.event.set()
        out.append((p, prof, None))
    return out


# ------------------------------------------------------------------ registration
def register_commands(sub) -> None:
    i = sub.add_parser("ingest", help="add profile files of any format nodeflame reads to a dataset",
                       description="Add existing profiles (.cpuprofile, pprof, speedscope, folded, perf script, "
                                   ".nfprof, ...; directories are searched) to the dataset DATASET, each as one "
                                   "capture with the given labels.")
    i.add_argument("paths", nargs="+", metavar="PATH")
    i.add_argument("--to", required=True, metavar="DATASET", help="dataset directory (or fsspec URL)")
    i.add_argument("--label", action="append", metavar="KEY=VALUE", help="label of every capture (repeatable)")
    i.add_argument("--from", dest="from_fmt", help="input format (default: sniffed from content)")
    i.add_argument("-q", "--quiet", action="store_true", help="no line per file")
    i.set_defaults(run=_cmd_ingest)

    r = sub.choices["record"]                 # registered by cli_capture before this
    # record gains --to: continuous capture into a dataset; without it, record is unchanged
    for a in r._actions:
        if a.dest == "output":
            a.required = False
    r.add_argument("--to", metavar="DATASET", help="capture again and again into this dataset (see --every)")
    r.add_argument("--every", metavar="SECONDS", help="with --to: start a capture every SECONDS (default: back to back)")
    r.add_argument("--match", metavar="REGEX", help="with --to: every node process whose command line matches, "
                                                    "including ones that start later")
    r.add_argument("--label", action="append", metavar="KEY=VALUE", help="with --to: label of every capture")
    r.add_argument("--keep", metavar="AGE", help="with --to: delete captures older than AGE (7d, 12h), oldest first")
    r.add_argument("--max-size", dest="max_size", metavar="SIZE",
                   help="with --to: keep the dataset under SIZE (2GB, 500MiB), deleting oldest captures first")
    r.add_argument("--rounds", type=int, help=argparse_suppress())
    one_shot = r.get_default("run")

    def run(args):
        if args.to is not None:
            return _cmd_record_to(args)
        extra = [f"--{n.replace('_', '-')}" for n in ("every", "match", "label", "keep", "max_size", "rounds")
                 if getattr(args, n) is not None]
        if extra:
            raise NodeflameError(f"{', '.join(extra)}: only with --to DATASET")
        if not args.output:
            raise NodeflameError("record needs -o OUT (one capture) or --to DATASET (continuous capture)")
        return one_shot(args)
    r.set_defaults(run=run)


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


__all__ = ["register_commands", "parse_size", "matching_pids"]
