"""Live capture of node processes.

>>> import nodeflame as nf
>>> p = nf.capture(4242, 10)                       # 10 s of pid 4242, best backend
>>> p = nf.capture(4242, 10, backend="inspector", hz=1000)
>>> p = nf.run(["node", "server.js"], 10)          # start a command and profile it
>>> nf.backends(4242)                              # what can capture here, and why not

The backend interface and registry are in :mod:`nodeflame.capture.base`;
process helpers in :mod:`nodeflame.capture.procutil`.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pandas as pd

from ..frames.ops import with_meta
from . import base as _base
from . import procutil
from .base import (AUTO_ORDER, Backend, BackendUnavailable, CaptureError, CaptureOptions, Session, Target,
                   TargetError, TargetExited, availability, backend_names, common_meta, get_backend,
                   register_backend)

__all__ = ["capture", "run", "backends", "PHASES", "AUTO_ORDER", "Backend", "BackendUnavailable", "CaptureError",
           "CaptureOptions", "Session", "Target", "TargetError", "TargetExited", "get_backend",
           "register_backend"]

POLL_INTERVAL = 0.1   # s between checks of the target and the session while waiting

#: What a capture is doing, in order, as capture() and run() tell their ``on_phase`` callback:
#: ``attaching`` (a backend's session starting; run(): the program starting), ``sampling`` (the wait
#: for samples: only here does a KeyboardInterrupt end the capture early and keep what was sampled),
#: ``stopping`` (the session handing over its samples and closing; Ctrl-C held), ``building``
#: (the Profile being made: metadata, warnings, source maps).
PHASES = ("attaching", "sampling", "stopping", "building")


# ------------------------------------------------------------------ backends()
class _Sentences(pd.DataFrame):
    """backends()'s table: pandas cuts text cells at 50 characters when it displays a frame,
    which cut every reason short of its fix; this one displays whole sentences, left-aligned."""

    @property
    def _constructor(self):
        return pd.DataFrame   # whatever is derived from it is an ordinary frame

    def _repr_html_(self):
        with pd.option_context("display.max_colwidth", None):
            html = super()._repr_html_()
        return html and ("<style>.nf-backends td{text-align:left;white-space:normal;max-width:60em}</style>"
                         + html.replace('class="dataframe"', 'class="dataframe nf-backends"', 1))

    def __repr__(self):
        return self.to_string()   # every column, every sentence whole


def backends(pid: int | None = None) -> pd.DataFrame:
    """Every backend, in ``auto`` order, with whether it can capture here (from ``pid``) and why not.

    Columns: backend, available (bool), reason ('' when available, else one
    sentence with the fix), note (when available: how it will capture, or ''),
    frames (what it names), needs."""
    rows = []
    for name in backend_names():
        b = get_backend(name)
        reason = availability(name, pid)
        note = ""
        if reason is None and b is not None:
            try:
                note = b.note(pid) or ""
            except Exception as e:  # noqa: BLE001 - a note is information, never a failure
                note = f"({type(e).__name__}: {e})"
        rows.append({
            "backend": name,
            "available": reason is None,
            "reason": reason or "",
            "note": note,
            "frames": getattr(b, "summary", "") if b is not None else "",
            "needs": getattr(b, "needs", "") if b is not None else "",
        })
    return _Sentences(rows, columns=["backend", "available", "reason", "note", "frames", "needs"])


def _check_name(backend) -> None:
    if backend != "auto" and backend not in backend_names():
        raise CaptureError(f"unknown backend {backend!r}; known: auto, {', '.join(backend_names())}")


def _choose(backend: str, pid: int | None, options: dict | None = None) -> tuple[list[Backend], dict]:
    """Backends to try, best first, and why the others were skipped.

    ``options``: the backend_options of a named backend (a stap module to run needs no compiler)."""
    skipped: dict[str, str] = {}
    _check_name(backend)
    if backend != "auto":
        why = availability(backend, pid, options)
        if why:
            raise BackendUnavailable(f"{backend} backend: {why}")
        return [get_backend(backend)], skipped
    chosen = []
    for name in _base.AUTO_ORDER:  # the live order: register_backend() may have rebound it
        why = availability(name, pid)
        if why:
            skipped[name] = why
        else:
            chosen.append(get_backend(name))
    if not chosen:
        lines = "; ".join(f"{n}: {w}" for n, w in skipped.items())
        raise BackendUnavailable(f"no capture backend can run here ({lines})")
    return chosen, skipped


def _options(duration, hz, threads, backend_options) -> CaptureOptions:
    if duration is not None:
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            raise CaptureError(f"duration must be a number of seconds, got {duration!r}") from None
        if not duration > 0:
            raise CaptureError(f"duration must be positive, got {duration:g}")
    if hz is not None:
        try:
            hz = int(hz)
        except (TypeError, ValueError):
            raise CaptureError(f"hz must be a whole number of samples per second, got {hz!r}") from None
        if not 1 <= hz <= 100_000:
            raise CaptureError(f"hz must be between 1 and 100000, got {hz}")
    if threads not in ("all", "main"):
        raise CaptureError(f"threads must be 'all' or 'main', got {threads!r}")
    return CaptureOptions(hz=hz, threads=threads, duration=duration, extra=dict(backend_options or {}))


# ------------------------------------------------------------------ progress and Ctrl-C
def _in_notebook() -> bool:
    ip = sys.modules.get("IPython")
    if ip is None:
        return False
    try:
        shell = ip.get_ipython()
    except Exception:
        return False
    if shell is None:
        return False
    kind = type(shell).__name__
    return "ZMQ" in kind or "Kernel" in kind


def _progress_bar(duration, progress, desc):
    if progress is None:
        progress = duration is not None and duration >= 2 and (_in_notebook() or _isatty(sys.stderr))
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    total = round(duration, 1) if duration else None
    return tqdm(total=total, desc=desc, unit="s", leave=False,
                bar_format="{desc}: {bar} {n:.1f}/{total:.1f} s" if total else "{desc}: {n:.1f} s")


def _isatty(f) -> bool:
    try:
        return f.isatty()
    except (AttributeError, ValueError):
        return False


@contextmanager
def sigint_held(limit: int | None = None):
    """Hold Ctrl-C while a session starts or stops: the block runs on, and the list it yields
    records each SIGINT.  With ``limit``, the ``limit``-th SIGINT raises KeyboardInterrupt after
    all (a user who insists gets out of a stuck stop).  Outside the main thread: no effect."""
    got: list = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(*_):
        got.append(time.monotonic())
        if limit is not None and len(got) >= limit:
            raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):
        yield got
        return
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, old)


def _start(b: Backend, target: Target, opts: CaptureOptions):
    """``b.start()`` with Ctrl-C held until it returns (so a half-started session is never
    abandoned with a port open or a thread stopped): (session, interrupted meanwhile).
    A third Ctrl-C meanwhile aborts the start (a stuck one)."""
    with sigint_held(limit=3) as got:
        session = b.start(target, opts)
    return session, bool(got)


def _close(session: Session) -> None:
    """``session.close()``, which must run to its end whatever happens (Ctrl-C held meanwhile)."""
    with sigint_held():
        try:
            session.close()
        except Exception:  # close() must not raise; if it does, the capture's own outcome wins
            pass


def _alive(target: Target) -> bool:
    if target.proc is not None and target.proc.poll() is not None:
        return False
    return procutil.exists(target.pid)


def _tell(on_phase, phase: str) -> None:
    if on_phase is not None:
        on_phase(phase)


def _drive(session: Session, target: Target, opts: CaptureOptions, progress, desc: str,
           interrupted: bool = False, on_phase=None):
    """Wait out the capture; returns (Profile, interrupted, end note, seconds waited, seconds the
    target was seen stopped).  ``on_phase`` is told ``sampling`` for exactly the span in which a
    KeyboardInterrupt ends the wait (and keeps the capture), then ``stopping``."""
    bar = None if interrupted else _progress_bar(opts.duration, progress, desc)
    t0 = time.monotonic()
    note = None
    stopped_s, last = 0.0, t0
    try:
        try:
            if not interrupted:
                _tell(on_phase, "sampling")
            while not interrupted:
                elapsed = time.monotonic() - t0
                if opts.duration is not None and elapsed >= opts.duration:
                    break
                wait = POLL_INTERVAL if opts.duration is None else min(POLL_INTERVAL, opts.duration - elapsed)
                time.sleep(max(wait, 0))
                if bar is not None:
                    bar.n = round(min(time.monotonic() - t0, opts.duration or 1e18), 1)
                    bar.refresh()
                st = procutil.state(target.pid)
                # SIGSTOP/Ctrl-Z at once; a ptrace stop only when it lasts (a profiler's are microseconds)
                stopped = st == "T" or (st == "t" and procutil.stopped_state(target.pid) is not None)
                now = time.monotonic()
                if stopped:
                    stopped_s += now - last
                last = now
                if not _alive(target):
                    if session.target_exited():
                        note = f"the process exited {time.monotonic() - t0:.1f} s into the capture"
                        break
                    raise TargetExited(
                        f"process {target.pid} exited {time.monotonic() - t0:.1f} s into the capture; the "
                        f"{session.backend.name} backend loses its samples when the process ends, "
                        "so nothing was kept")
                why = session.poll()
                if why:
                    note = f"capture ended after {time.monotonic() - t0:.1f} s: {why}"
                    break
        finally:
            _tell(on_phase, "stopping")   # still inside the handler below: no Ctrl-C of 'sampling' escapes
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.monotonic() - t0
    # a second Ctrl-C while the profile is fetched is ignored (the capture is ending anyway);
    # a third one aborts the stop
    with sigint_held(limit=2) as got:
        prof = session.stop()
    if got:
        interrupted = True
    return prof, interrupted, note, elapsed, stopped_s


def _stopped_warning(prof, target: Target, elapsed: float, stopped_s: float):
    """Say so when the target was stopped (SIGSTOP, Ctrl-Z, a debugger) for part of the capture: a
    stopped process runs no code, so that time has no samples (an empty profile is explained)."""
    if stopped_s < POLL_INTERVAL:
        return prof
    if any("was stopped" in str(w) for w in prof.meta.get("warnings") or []):
        return prof  # the backend said it already
    # 'the whole capture' only when nothing ran: a backend may sample before the driver's wait begins
    # (perf records while its session starts), and what it sampled then did run
    whole = stopped_s >= elapsed - 2 * POLL_INTERVAL and len(prof.samples) == 0
    what = "for the whole capture" if whole else f"for {stopped_s:.1f} s of the {elapsed:.1f} s capture"
    empty = "; nothing was sampled" if len(prof.samples) == 0 else ""
    return with_meta(prof, warnings=[f"process {target.pid} was stopped (SIGSTOP, Ctrl-Z or a debugger) {what}: "
                                     f"a stopped process runs no code, so that time has no samples{empty}; it "
                                     "was left stopped"])


def _exited_at_start(pid: int, b: Backend, e: Exception) -> TargetExited | None:
    """A start that failed because the target exited meanwhile (ptrace says 'Operation not permitted'
    to a process that is exiting, the inspector sees no port...): the error says it exited."""
    if procutil.exists(pid):
        return None
    how = "is a zombie" if procutil.state(pid) == "Z" else "is gone"
    return TargetExited(f"process {pid} exited while the {b.name} backend was attaching to it (it {how} now); "
                        "nothing was sampled")


def _finish(prof, target, backend, opts, skipped, start_time, elapsed, interrupted, note):
    meta = common_meta(target, backend, opts, start_time=start_time, duration_s=elapsed,
                       skipped=skipped, interrupted=interrupted)
    # the rate the backend says it asked for (a prebuilt stap module's is compiled in), else the option's
    hz = prof.meta.get("requested_hz") or opts.hz or backend.default_hz
    meta["requested_hz"] = hz
    s = prof.samples
    main = s[s["thread"] == "main"] if "main" in set(s["thread"].astype(str)) else s
    dur = (prof.meta.get("profile_duration_ns") or int(elapsed * 1e9)) / 1e9
    meta["achieved_hz"] = round(float(main["weight"].sum()) / dur, 1) if dur > 0 else None
    if not prof.meta.get("period_ns"):
        meta["period_ns"] = int(1e9 / hz)
    warnings = []
    if interrupted:
        warnings.append(f"interrupted (Ctrl-C) after {elapsed:.1f} s; kept what was sampled")
    if note:
        warnings.append(note)
    meta.pop("warnings", None)
    meta["unit"] = prof.meta.get("unit") or "samples"
    meta["threads"] = [str(t) for t in pd.unique(s["thread"].astype(str))] if len(s) else []
    return with_meta(prof, warnings=warnings, **meta)


def _source_maps(prof, pid: int | None, enabled: bool):
    """Apply the target's source maps (read through /proc/PID/root, so a process in a container
    is mapped from the host); a failure is a warning, never a lost capture."""
    if not enabled:
        return prof
    root = None
    if pid and os.path.isdir(f"/proc/{pid}/root"):
        try:
            if os.path.realpath(f"/proc/{pid}/root", strict=True) != "/":
                root = f"/proc/{pid}/root"
        except OSError:
            pass    # it exited since (a capture ends when its target exits): its files are read from here
    try:
        return prof.with_source_maps(root=root)
    except Exception as e:  # noqa: BLE001 - the capture is worth more than its maps
        return with_meta(prof, warnings=[f"source maps not applied ({type(e).__name__}: {e})"])


#: Why ``auto`` takes one backend over another that could also run (meta['backend_choice']).
_PREFERRED_BECAUSE = {
    ("walker", "inspector"): (
        "the walker names functions TurboFan and Maglev inlined as frames of their own and code optimized "
        "before the capture (OSR code included), from the machine stack, without opening a debug port; V8's "
        "profiler behind the inspector charges inlined code to its caller (nodeflame re-attributes it from "
        "per-line ticks, a heuristic) and misses OSR code compiled before the capture"),
}


def _auto_choice(chosen: Backend, others) -> str:
    """One sentence: which backend ``auto`` took, and why over the others that could also run."""
    others = [o.name for o in others]
    if not others:
        return f"auto: {chosen.name}, the only backend that could run"
    why = [_PREFERRED_BECAUSE[(chosen.name, o)] for o in others if (chosen.name, o) in _PREFERRED_BECAUSE]
    text = f"auto: {chosen.name} over {', '.join(others)} (also available)"
    return text + (": " + "; ".join(why) if why else ": first in the auto order " + ", ".join(_base.AUTO_ORDER))


# ------------------------------------------------------------------ capture()
def capture(pid: int, duration: float | None = 10, *, backend: str = "auto", hz: int | None = None,
            threads: str = "all", progress: bool | None = None, backend_options: dict | None = None,
            source_maps: bool = True, on_phase=None):
    """Profile the running node process ``pid`` for ``duration`` seconds and return a Profile.

    ``backend``: ``auto`` (the best that can run: see ``backends(pid)``) or a
    name (``inspector``, ``perf``, ``walker``, ``stap``).  ``hz``: samples per
    second (default: the backend's, 1000 for inspector, 999 for perf).
    ``threads``: ``all`` (main thread and workers) or ``main``.  ``duration``
    None samples until the process exits or Ctrl-C.  ``progress``: a tqdm bar
    (None: for captures of 2 s or more on a terminal or in a notebook).

    Ctrl-C ends the capture early and returns what was sampled
    (``meta['interrupted']``).  The target is left as found on every path.

    ``source_maps`` (default True): JS frames of files with a source map are shown in their
    original source (see ``Profile.with_source_maps``), the maps read through ``/proc/PID/root``.

    ``on_phase``: called with each of :data:`PHASES` as the capture enters it (a signal handler that
    must know whether a KeyboardInterrupt would end the capture and keep it: only in ``sampling``).
    """
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        raise TargetError(f"pid must be a process id, got {pid!r}") from None
    opts = _options(duration, hz, threads, backend_options)
    _check_name(backend)
    target = procutil.describe(pid)
    if target.is_node is False:
        raise TargetError(f"process {procutil.describe_pid_briefly(pid)} is not a node process "
                          f"(it runs {target.exe or '?'}); nodeflame profiles node programs")
    candidates, skipped = _choose(backend, pid, opts.extra)
    errors = []
    for i, b in enumerate(candidates):
        start_time = time.time()
        _tell(on_phase, "attaching")
        try:
            session, interrupted = _start(b, target, opts)
        except TargetExited:
            raise
        except CaptureError as e:
            gone = _exited_at_start(pid, b, e)
            if gone is not None:
                raise gone from None
            if isinstance(e, TargetError):
                raise
            if backend != "auto" or i == len(candidates) - 1:
                if errors:
                    raise CaptureError(f"{e} (also tried: {'; '.join(errors)})") from None
                raise
            errors.append(f"{b.name}: {e}")
            skipped[b.name] = f"could not start: {e}"
            continue
        try:
            prof, interrupted, note, elapsed, stopped_s = _drive(session, target, opts, progress,
                                                                 f"nodeflame {b.name} pid {pid}", interrupted, on_phase)
        finally:
            _close(session)
        _tell(on_phase, "building")
        prof = with_meta(prof, warnings=session.close_warnings)
        prof = _finish(prof, target, b, opts, skipped, start_time, elapsed, interrupted, note)
        prof = _stopped_warning(prof, target, elapsed, stopped_s)
        if backend == "auto":
            prof = with_meta(prof, backend_choice=_auto_choice(b, candidates[i + 1:]))
        return _source_maps(prof, pid, source_maps)
    raise CaptureError("no backend could start")  # pragma: no cover


# ------------------------------------------------------------------ run()
def _node_argv(cmd) -> list[str]:
    argv = shlex.split(cmd) if isinstance(cmd, str) else [os.fspath(a) for a in cmd]
    if not argv:
        raise CaptureError("run() needs a command, e.g. ['node', 'app.js']")
    if argv[0].endswith((".js", ".mjs", ".cjs")):
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise CaptureError("node is not on PATH: install nodejs")
        argv = [node] + argv
    elif shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        raise CaptureError(f"{argv[0]}: command not found")
    return argv


def run(cmd, duration: float | None = None, *, backend: str = "auto", hz: int | None = None,
        threads: str = "all", progress: bool | None = None, backend_options: dict | None = None,
        stdin=None, stdout=None, stderr=None, env=None, cwd=None, terminate: bool = True,
        source_maps: bool = True, on_phase=None):
    """Start ``cmd`` (a node program: ``["node", "app.js"]``, or ``"app.js"``) and profile it
    until it exits or ``duration`` seconds pass; returns the Profile.

    With the inspector backend node starts with ``--inspect-wait=127.0.0.1:0``
    (``--inspect-brk`` on older node) so the profile begins before the first
    line of the program, and a program that ends by itself still hands over
    its profile.  With ``perf``, node starts with ``--perf-basic-prof
    --interpreted-frames-native-stack``.  Other backends start the command
    and attach once it runs node.

    The command runs in its own process group, so Ctrl-C ends the capture
    (keeping what was sampled) instead of killing the program mid-profile.
    When the duration ends and the program still runs it is sent SIGTERM
    (``terminate=False`` leaves it running; its pid is in ``meta['pid']``).
    ``meta['exit_code']`` holds its exit status when it ended.  ``source_maps`` and ``on_phase`` as for
    capture().
    """
    argv = _node_argv(cmd)
    opts = _options(duration, hz, threads, backend_options)
    candidates, skipped = _choose(backend, None, opts.extra)
    popen_kwargs = dict(stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd, start_new_session=False,
                        process_group=0)
    for i, b in enumerate(candidates):
        start_time = time.time()
        _tell(on_phase, "attaching")
        try:
            with sigint_held() as got:
                proc, session = b.spawn(argv, opts, **popen_kwargs)
        except TargetError:
            raise
        except CaptureError as e:
            # auto: the next backend starts the command afresh (spawn() ended this attempt's process)
            if backend != "auto" or i == len(candidates) - 1:
                raise
            skipped[b.name] = f"could not start: {e}"
            continue
        break
    for name in [c.name for c in candidates[i + 1:]]:
        skipped.setdefault(name, f"{b.name} was preferred")
    target = session.target
    target.proc = proc
    try:
        try:
            prof, interrupted, note, elapsed, _stopped_s = _drive(
                session, target, opts, progress, f"nodeflame {b.name} {os.path.basename(argv[-1])}", bool(got),
                on_phase)
        finally:
            _close(session)
        _tell(on_phase, "building")
        prof = with_meta(prof, warnings=session.close_warnings)
    except BaseException:
        procutil.terminate(proc)
        raise
    if note is not None and not interrupted and proc.poll() is None:
        # the session ended because the program is exiting: give it the moment it needs
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        if terminate:
            procutil.terminate(proc)
            note = "the program was terminated when the capture ended" + (f" ({note})" if note else "")
    elif note is not None and not interrupted:
        note = None   # the program ended by itself: the expected end of a run(), not a warning
    prof = _finish(prof, target, b, opts, skipped, start_time, elapsed, interrupted, note)
    if proc.poll() is not None:
        prof = b.spawned_ended(prof, start_time)
    if backend == "auto":
        prof = with_meta(prof, backend_choice=_auto_choice(b, candidates[i + 1:]))
    prof = with_meta(prof, exit_code=proc.returncode)
    return _source_maps(prof, target.pid, source_maps)


# ``nodeflame.capture`` is both this package and the function above: once any
# ``nodeflame.capture.*`` module is imported, the package attribute
# ``nodeflame.capture`` is this module, so the module itself must be callable
# for ``nf.capture(pid, 10)`` to keep working.
class _CallableModule(type(sys)):
    def __call__(self, *args, **kwargs):
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
