"""The capture-backend interface and the backend registry.

Every backend (``stap``, ``walker``, ``perf``, ``inspector``) is one module
under ``nodeflame/capture/`` (``perf.py``) or one package
(``walker/__init__.py``) that defines a module-level ``BACKEND``: an instance
of a :class:`Backend` subclass.  The registry imports a backend's module only
when the backend is first asked for, so a backend whose module does not exist
yet (or cannot be imported here) is reported as unavailable, not as a crash.

The driver (``nodeflame.capture.capture``) does the rest, identically for all
backends: checks the pid, picks the backend (``auto`` = the first of
:data:`AUTO_ORDER` whose ``available(pid)`` is None), waits out the duration
with a progress bar, turns Ctrl-C into an early stop, fills the common
``meta`` keys, and guarantees ``Session.close()`` on every path.

Backend (subclass :class:`Backend`)
-----------------------------------
``name``          str, the registry key (``"perf"``).
``summary``       one line for ``nodeflame backends`` (how it names frames).
``default_hz``    sampling rate used when the caller gives none.
``needs``         one short phrase: what it requires ("root and systemtap").

``available(pid=None) -> None | str``
    None when the backend can capture on this machine (and, when ``pid`` is
    given, from that process); otherwise ONE sentence that says why not and
    how to fix it ("perf is not installed: apt-get install linux-perf").
    Must be cheap and free of side effects: never signal, attach to, stop or
    connect to the target.  Raise nothing (return the reason instead).

``start(target, opts) -> Session``
    Begin sampling ``target`` (a :class:`Target`) with ``opts`` (a
    :class:`CaptureOptions`).  Returns once samples are being taken.  On
    failure raise :class:`CaptureError` (or a subclass) whose message names
    the fix, after undoing whatever it already did to the target.

``spawn(argv, opts, **popen_kwargs) -> (subprocess.Popen, Session)``
    Optional (used by ``nodeflame.run``): start the command and sample it
    from as early as possible.  The default starts the command with
    ``subprocess.Popen`` and then calls ``start()`` on it once it runs node.

Session (subclass :class:`Session`)
-----------------------------------
``poll() -> None | str``
    Called about 10 times a second while the driver waits.  Return None to
    go on, or a short reason ("the process is exiting") to end the capture
    now: the driver then calls ``stop()`` and records the reason in
    ``meta['warnings']``.  Raise :class:`CaptureError` if the capture can no
    longer succeed (the tool died).  Default: None.
``target_exited() -> bool``
    Called by the driver when it notices the target has exited (zombie or
    gone) before the duration ended.  Return True when ``stop()`` can still
    return what was sampled (perf's data file, a profile fetched at exit);
    False and the driver raises :class:`TargetExited`.  Default: False.
``stop() -> Profile``
    End sampling and return the Profile of what was sampled, with ``thread``
    filled and backend-specific ``meta`` keys (the driver adds the common
    ones, see :func:`common_meta`).  Called at most once.  Must not take
    longer than needed; the driver ignores a second Ctrl-C meanwhile (a
    third one raises KeyboardInterrupt out of ``stop()``; ``close()`` still
    runs).  A Ctrl-C during ``start()`` is held until it returns and then
    ends the capture at once (``stop()`` follows right away).
``close() -> None``
    Release everything and leave the target exactly as found (detach,
    kill helper processes, close a debug port the session opened, delete
    temporary files).  Idempotent; called on EVERY path: after ``stop()``,
    after an error, after Ctrl-C.  Must never raise.

The target must never be harmed: bounded work per sample, nothing left
stopped (state T/t), traced (TracerPid), or listening (a port the capture
opened) once ``close()`` returns.  A target someone else stopped (SIGSTOP,
Ctrl-Z, a debugger) is left stopped: a backend that needs it running refuses
it up front (``available()``), every wait ends when it is stopped mid-capture,
and what cannot be undone until it runs again (a port the inspector opened)
is handed to a watcher that undoes it then.  The driver warns when the target
was stopped during a capture, and a start that failed because the target
exited raises :class:`TargetExited` saying so.

Errors
------
:class:`CaptureError` (a NodeflameError, so the cli prints one line and exits
2), :class:`BackendUnavailable` (``available`` said no: the message is its
reason), :class:`TargetExited` (the process ended mid-capture),
:class:`TargetError` (not a node process, no such pid, no permission).
"""
from __future__ import annotations

import importlib
import subprocess
import time
from dataclasses import dataclass, field

from .target import BackendUnavailable, CaptureError, Target, TargetError, TargetExited

__all__ = ["Backend", "Session", "Target", "CaptureOptions", "CaptureError", "BackendUnavailable",
           "TargetExited", "TargetError", "AUTO_ORDER", "register_backend", "get_backend",
           "backend_names", "common_meta"]

#: ``backend="auto"`` tries these in order (fidelity first, then cost) and takes
#: the first whose ``available(pid)`` is None.
AUTO_ORDER: tuple[str, ...] = ("stap", "walker", "perf", "inspector")

#: backend name -> module defining ``BACKEND``.
BACKEND_MODULES: dict[str, str] = {
    "stap": "nodeflame.capture.stap",
    "walker": "nodeflame.capture.walker",
    "perf": "nodeflame.capture.perf",
    "inspector": "nodeflame.capture.inspector",
}

_REGISTRY: dict[str, "Backend"] = {}
_IMPORT_ERRORS: dict[str, str] = {}


# ----------------------------------------------------------------------- data
@dataclass
class CaptureOptions:
    hz: int | None = None        # requested rate; None -> the backend's default_hz
    threads: str = "all"         # "all" (main + workers) or "main"
    duration: float | None = None  # seconds, None = until the target exits / Ctrl-C
    extra: dict = field(default_factory=dict)  # backend-specific knobs (backend_options=)


# ----------------------------------------------------------------------- backend
class Session:
    """A running capture.  See the module docstring for the contract."""

    backend: "Backend"
    target: Target
    opts: CaptureOptions

    def __init__(self, backend: "Backend", target: Target, opts: CaptureOptions):
        self.backend = backend
        self.target = target
        self.opts = opts
        self.started_at = time.time()
        #: what close() found worth saying after stop() handed the Profile over (the driver adds it)
        self.close_warnings: list[str] = []

    def poll(self) -> str | None:
        return None

    def target_exited(self) -> bool:
        return False

    def stop(self):  # -> Profile
        raise NotImplementedError

    def close(self) -> None:
        return None


class Backend:
    """Base class of capture backends.  See the module docstring for the contract."""

    name: str = "?"
    summary: str = ""
    needs: str = ""
    default_hz: int = 1000

    def available(self, pid: int | None = None) -> str | None:
        raise NotImplementedError

    def note(self, pid: int | None = None) -> str | None:
        """How it will capture (``pid``), when it is available: one sentence for ``backends()``, or None."""
        return None

    def start(self, target: Target, opts: CaptureOptions) -> Session:
        raise NotImplementedError

    def spawn(self, argv: list, opts: CaptureOptions, **popen_kwargs):
        """Start ``argv`` and a session on it.  Default: Popen, wait until it runs node, start()."""
        from . import procutil
        proc = subprocess.Popen(argv, **popen_kwargs)
        try:
            procutil.wait_until_node(proc.pid, timeout=10.0, proc=proc)
            target = procutil.describe(proc.pid)
            target.proc = proc
            return proc, self.start(target, opts)
        except BaseException:
            procutil.terminate(proc)
            raise

    def spawned_ended(self, prof, since: float):
        """After a command ``spawn()`` started has ended: undo what starting it so left on the machine,
        ``since`` its start (time.time()); returns ``prof`` (or it with a note in its meta).  Default:
        nothing to undo."""
        return prof

    def __repr__(self) -> str:
        return f"<capture backend {self.name}>"


# ----------------------------------------------------------------------- registry
def register_backend(backend: Backend, *, auto_before: str | None = None) -> None:
    """Register a backend object (plug-ins; the built-in ones are found via BACKEND_MODULES).

    A name not in AUTO_ORDER is appended to it, or inserted before ``auto_before``."""
    global AUTO_ORDER
    _REGISTRY[backend.name] = backend
    if backend.name not in AUTO_ORDER:
        order = list(AUTO_ORDER)
        order.insert(order.index(auto_before) if auto_before in order else len(order), backend.name)
        AUTO_ORDER = tuple(order)


def backend_names() -> list[str]:
    """Every known backend name, in auto order."""
    names = list(AUTO_ORDER)
    names += [n for n in BACKEND_MODULES if n not in names]
    names += [n for n in _REGISTRY if n not in names]
    return names


def get_backend(name: str) -> Backend | None:
    """The backend object, importing its module on first use; None when it cannot be loaded
    (``import_error(name)`` then says why)."""
    b = _REGISTRY.get(name)
    if b is not None:
        return b
    mod = BACKEND_MODULES.get(name)
    if mod is None:
        raise CaptureError(f"unknown backend {name!r}; known: auto, {', '.join(backend_names())}")
    try:
        m = importlib.import_module(mod)
    except Exception as e:  # a broken plug-in must not break the others
        _IMPORT_ERRORS[name] = f"the {name} backend cannot be loaded: {type(e).__name__}: {e}"
        return None
    b = getattr(m, "BACKEND", None)
    if b is None:
        _IMPORT_ERRORS[name] = f"{mod} defines no BACKEND"
        return None
    _REGISTRY[name] = b
    return b


def import_error(name: str) -> str | None:
    return _IMPORT_ERRORS.get(name)


def availability(name: str, pid: int | None = None, options: dict | None = None) -> str | None:
    """None if backend ``name`` can capture (from ``pid``), else why not, in one sentence.

    ``options``: backend_options, given to a backend whose ``available`` takes them
    (``takes_options``: the stap backend, whose prebuilt module needs no compiler)."""
    b = get_backend(name)
    if b is None:
        return import_error(name) or f"the {name} backend cannot be loaded"
    try:
        if options and getattr(b, "takes_options", False):
            return b.available(pid, options=options)
        return b.available(pid)
    except Exception as e:  # available() must not raise; if it does, report it as the reason
        return f"{name}: availability check failed: {type(e).__name__}: {e}"


def common_meta(target: Target, backend: Backend, opts: CaptureOptions, *, start_time: float,
                duration_s: float, skipped: dict, interrupted: bool) -> dict:
    """The meta keys every capture has (the driver sets them after ``stop()``)."""
    return {
        "backend": backend.name,
        "pid": target.pid,
        "node_version": target.node_version,
        "command": target.command or None,
        "start_time": start_time,            # seconds since the epoch
        "duration_ns": int(duration_s * 1e9),
        "requested_hz": opts.hz,
        "backends_skipped": dict(skipped),   # name -> why auto did not take it
        "interrupted": interrupted,
    }
