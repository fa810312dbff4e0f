"""The ``inspector`` backend: V8's own sampling profiler over the DevTools protocol.

How a capture of a live pid goes:

1. Checks that cost the target nothing: we may signal it, it runs node, it
   is not stopped (a stopped process keeps SIGUSR1 pending and would open an
   unauthenticated port whenever it is continued: refused, nothing sent), it
   catches SIGUSR1 (node >= 22.14 started with ``--disable-sigusr1``, or a
   program that removed node's handler, would be *killed* by SIGUSR1), the
   port its inspector would take is free, and no other inspector capture holds
   the process (:class:`_CaptureLock`).
2. ``kill -USR1 <pid>``: node opens its inspector.  The port is read from the
   sockets the process listens on (``/proc/<pid>/net/tcp`` matched against
   its fd inodes), never assumed to be 9229.  When the target was started with
   ``--inspect`` its inspector is used as it is, and left open afterwards.
   A target in another network namespace (a container) is connected to inside
   that namespace (:func:`procutil.connect_tcp`: setns, as ``nsenter --net``).
   If the target is stopped after SIGUSR1 was sent, or the port does not open
   in time, a watcher process (:func:`_start_guard`) closes whatever port the
   signal opens later, as soon as the process runs.
3. Over the websocket: ``Profiler.enable``, ``Profiler.setSamplingInterval``
   (µs, from ``hz``), ``NodeWorker.enable`` so every worker thread attaches as
   a session of its own (``NodeWorker.sendMessageToWorker`` /
   ``receivedMessageFromWorker`` carry the same Profiler calls to it),
   ``NodeRuntime.notifyWhenWaitingForDisconnect`` (main thread only) so that a
   process that exits during the capture waits for us to fetch its profile,
   then ``Profiler.start`` everywhere.  How long the sampler thread each start
   creates in the target waited for a CPU is read from the kernel
   (:mod:`.sampler_thread`, meta['sampler']): on a machine whose CPUs are all
   busy its samples follow the program's cycle, and a warning says so.
   Every COLLECT_EVERY s (backend_options
   ``collect_every``) each thread's profile so far is collected (Profiler.stop,
   Profiler.start; a ``console.profile`` of ours keeps V8's CpuProfiler alive
   between them, so a restart costs no re-logging of all code), so a target
   stopped (SIGSTOP, Ctrl-Z, a debugger) or killed mid-capture, or a worker
   that ends, keeps what was collected and a warning says what was lost.
   Every wait on a reply ends as soon as the target is stopped.
4. ``Profiler.stop`` on every thread; the parsed replies of all threads go
   to the ``cpuprofile`` reader in one call (``read_protocol_profiles``; per
   thread, then concatenated, when workers are re-attributed), one Profile
   whose ``thread`` is ``main`` or the worker's name (``new Worker(f,
   {name})``; ``worker <id>`` without one): see :func:`worker_thread_name`.
   Before the profiles are read, still connected, each thread's profile is
   corrected (``_Corrections``, :mod:`nodeflame.frames.inline_split`): self
   time V8 charged to an optimized function that inlined the code running is
   split by its per-line ticks onto the inlined functions (frames of tier
   ``inlined``; ``meta['inline_split']``, ``meta['inlined_reattributed']``),
   from ``Profiler.getBestEffortCoverage`` (function ranges) and the script
   sources (read from disk through /proc/PID/root; ``Debugger.getScriptSource``
   only for a script not on disk that holds >= 1 % of the samples).  The
   samples of OSR code compiled before ``Profiler.start`` (which V8's
   profiler does not know) and of some builtins (which V8 charges one frame
   up) land on the caller's line that calls the function: where that line
   calls one function only they go back under it (``meta['osr_unknown']``,
   a warning); nothing is done to the target about it.  backend_options:
   ``reattribute`` (default True), ``sources`` (``auto``/``disk``/``debugger``),
   ``inline_max_heap_mb`` (coverage walks the heap: skipped above it, 1024).
5. ``close()``: when the capture opened the inspector it closes it again
   and waits until the port is gone: an unref'd timer in the target closes
   it once we have disconnected (closing it while connected can crash node:
   see CLOSE_LATER), and a program that never returns to its event loop is
   closed at once over a fresh connection (CLOSE_NOW).  An inspector that was
   open before the capture is left open, with what we enabled disabled.  A
   target stopped at that moment cannot close anything: the watcher closes the
   port once it is continued, and the target is left stopped.  Nor is our
   connection to a stopped target closed: node (before nodejs/node#64209)
   crashes when a client disconnects while it still owes that client a reply,
   so the watcher takes the connection over and ends it only after the target
   has run and gone quiet (:meth:`_Client.hand_over`).

``spawn()`` (``nodeflame.run``) starts ``node --inspect-wait=127.0.0.1:0``
(``--inspect-brk`` on node without ``--inspect-wait``) so profiling starts
before the program's first line, and a program that exits by itself still
hands over its profile (the inspector holds the exit until we disconnect).
"""
from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time

from ..frames.ops import with_meta
from . import procutil
from .sampler_thread import SamplerThreads
from .base import Backend, CaptureError, CaptureOptions, Session, Target, TargetError, TargetExited

DEFAULT_PORT = 9229
OPEN_TIMEOUT = 5.0     # s to wait for the inspector port after SIGUSR1
CALL_TIMEOUT = 15.0    # s for one protocol call (Profiler.stop of a big profile included)
CLOSE_TIMEOUT = 3.0    # s to wait for the port to go away after closing
#: s between collections of the profile during a capture (backend_options collect_every; 0: only at
#: the end): what a target stopped or killed mid-capture keeps is what was collected.  Each
#: collection is a Profiler.stop + Profiler.start on every thread (the target serialises the
#: samples since the last one: ~10-50 ms of its main thread per collection at 1 kHz).
COLLECT_EVERY = 2.0
KEEPALIVE_TITLE = "nodeflame-keepalive"
KEEPALIVE = ("(() => { const i = (typeof require === 'function' ? require('inspector') "
             ": process.getBuiltinModule('inspector')); (i.console || console).profile(%s); })()"
             % json.dumps(KEEPALIVE_TITLE))
#: Ends the keepalive profile and starts it again at once (while the capture's own profile runs, so V8's
#: CpuProfiler lives on): V8 adds every sample to every running profile, so a keepalive left running for
#: a whole capture would hold all its samples in the target (10 minutes at 1 kHz: 600 k samples).  Run
#: after each collection, it holds at most COLLECT_EVERY s of them.
KEEPALIVE_CYCLE = ("(() => { const i = (typeof require === 'function' ? require('inspector') "
                   ": process.getBuiltinModule('inspector')); const c = i.console || console; "
                   "c.profileEnd(%s); c.profile(%s); })()" % (json.dumps(KEEPALIVE_TITLE), json.dumps(KEEPALIVE_TITLE)))


class ProtocolError(CaptureError):
    pass


# --------------------------------------------------------------------- client
class _Client:
    """A DevTools protocol connection with a reader thread.

    Replies are matched by (worker session id or None, message id); events go
    to ``self.events`` as (session id or None, method, params)."""

    def __init__(self, url: str, timeout: float = 5.0, pid: int | None = None, abort=None):
        try:
            import websocket
        except ImportError:  # pragma: no cover - it is a dependency
            raise CaptureError("the inspector backend needs websocket-client: pip install websocket-client") from None
        self._ws_mod = websocket
        #: abort() -> None or why every wait should end now (the target was stopped: no reply can come)
        self.abort = abort
        sock = None
        try:
            if pid is not None and not procutil.own_netns(pid):
                # a target in another network namespace (a container) listens on its own loopback
                host, port = _url_host_port(url)
                sock = procutil.connect_tcp(host, port, timeout, pid)
            self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True,
                                                  enable_multithread=True, socket=sock)
        except (OSError, websocket.WebSocketException) as e:
            if sock is not None:
                sock.close()
            raise CaptureError(f"cannot connect to the inspector at {url}: {e}") from None
        self.ws.settimeout(None)
        self._id = 0
        self._id_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict = {}
        self.events: "queue.Queue" = queue.Queue()
        self.closed: str | None = None
        self._thread = threading.Thread(target=self._reader, name="nodeflame-inspector", daemon=True)
        self._thread.start()

    def _reader(self):
        ws = self._ws_mod
        while True:
            try:
                raw = self.ws.recv()
            except (OSError, ws.WebSocketException, ValueError) as e:
                with self._cond:
                    self.closed = str(e) or type(e).__name__
                    self._cond.notify_all()
                self.events.put((None, "_closed", {}))
                return
            if not raw:
                continue
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            if "id" in msg:
                with self._cond:
                    self._replies[(None, msg["id"])] = msg
                    self._cond.notify_all()
                continue
            method = msg.get("method")
            params = msg.get("params") or {}
            if method == "NodeWorker.receivedMessageFromWorker":
                sid = params.get("sessionId")
                try:
                    inner = json.loads(params.get("message") or "{}")
                except ValueError:
                    continue
                if "id" in inner:
                    with self._cond:
                        self._replies[(sid, inner["id"])] = inner
                        self._cond.notify_all()
                else:
                    self.events.put((sid, inner.get("method"), inner.get("params") or {}))
            else:
                self.events.put((None, method, params))

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        with self._id_lock:
            self._id += 1
            mid = self._id
        body = {"id": mid, "method": method, "params": params or {}}
        if session is not None:
            body = {"id": self._next_outer(), "method": "NodeWorker.sendMessageToWorker",
                    "params": {"sessionId": session, "message": json.dumps(body)}}
        if self.closed:
            raise ProtocolError(f"the inspector connection is closed ({self.closed})")
        try:
            self.ws.send(json.dumps(body))
        except (OSError, self._ws_mod.WebSocketException) as e:
            raise ProtocolError(f"the inspector connection broke: {e}") from None
        return mid

    def _next_outer(self) -> int:
        with self._id_lock:
            self._id += 1
            return self._id

    def wait(self, mid: int, session: str | None = None, timeout: float = CALL_TIMEOUT, what: str = "") -> dict:
        deadline = time.monotonic() + timeout
        key = (session, mid)
        with self._cond:
            while key not in self._replies:
                if self.closed:
                    raise ProtocolError(f"the inspector connection closed while waiting for {what or 'a reply'}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ProtocolError(f"no reply to {what or 'a call'} within {timeout:g} s")
                why = self.abort() if self.abort is not None else None
                if why:
                    raise ProtocolError(f"no reply to {what or 'a call'}: {why}")
                self._cond.wait(min(left, 0.1))
            msg = self._replies.pop(key)
        if "error" in msg:
            err = msg["error"]
            raise ProtocolError(f"{what}: {err.get('message', err)}")
        return msg.get("result") or {}

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = CALL_TIMEOUT) -> dict:
        return self.wait(self.send(method, params, session), session, timeout, what=method)

    def close(self):
        """Disconnect, in bounded time.  A websocket close waits for the peer's close frame while
        the reader thread holds the read lock: with a target that cannot answer (stopped) that wait
        never ends, so the socket is then shut down instead, which also wakes the reader."""
        if self.abort is None or not self.abort():
            t = threading.Thread(target=self._graceful, name="nodeflame-inspector-close", daemon=True)
            t.start()
            t.join(2.0)
            if not t.is_alive():
                self._thread.join(2)
                return
        self._hard_close()
        self._thread.join(2)

    def hand_over(self) -> int:
        """A duplicate of this connection's socket, for a process that outlives this one (the
        watcher); this client stops using the connection without ending it.

        Why: node before the fix of nodejs/node#64209 (node 20 here, and others) crashes (SIGSEGV in
        TcpHolder::WriteRaw on the inspector's I/O thread) when a client's end of the connection
        closes while the main thread still owes it a reply or an event: the I/O thread drops the
        socket at EOF and then writes what the main thread queued.  A stopped target owes what it
        was asked before it stopped, and sends it only once continued; so its connection must stay
        open until then.  Our own socket is swapped (dup2) for one end of a closed socket pair:
        the reader thread ends at its next read and closing this client touches nothing of the
        target's, while the duplicate keeps the connection open."""
        import socket
        sock = self.ws.sock
        fd = os.dup(sock.fileno())
        a, b = socket.socketpair()
        b.close()
        try:
            os.dup2(a.fileno(), sock.fileno())
        finally:
            a.close()
        return fd

    def _graceful(self):
        try:
            self.ws.close(timeout=1)
        except Exception:
            self._hard_close()

    def _hard_close(self):
        import socket
        sock = getattr(self.ws, "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.ws.shutdown()
        except Exception:
            pass


# --------------------------------------------------------------------- discovery
def _url_host_port(url: str) -> tuple[str, int]:
    m = re.match(r"^wss?://(\[[^\]]*\]|[^/:]*):(\d+)/", url)
    if not m:
        raise CaptureError(f"not an inspector url: {url}")
    return m.group(1).strip("[]"), int(m.group(2))


def _http_json(host: str, port: int, path: str, timeout: float = 2.0, pid: int | None = None):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        if pid is not None and not procutil.own_netns(pid):
            conn.sock = procutil.connect_tcp(host, port, timeout, pid)
        conn.request("GET", path, headers={"Host": f"{host}:{port}"})
        r = conn.getresponse()
        if r.status != 200:
            return None
        return json.loads(r.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _connect_host(ip: str) -> str:
    if ip in ("0.0.0.0", "", "::", "::ffff:0.0.0.0"):
        return "127.0.0.1"
    if ip.startswith("::ffff:"):
        return ip[7:]
    return f"[{ip}]" if ":" in ip else ip


def probe(ip: str, port: int, pid: int | None = None) -> str | None:
    """The webSocketDebuggerUrl of a node inspector at ip:port (in the network namespace of
    ``pid`` when given: a process in a container listens on its own loopback), or None."""
    host = _connect_host(ip)
    targets = _http_json(host.strip("[]"), port, "/json/list", pid=pid)
    if not isinstance(targets, list):
        return None
    for t in targets:
        if isinstance(t, dict) and t.get("webSocketDebuggerUrl"):
            url = t["webSocketDebuggerUrl"]
            # the url's host is what node thinks it listens on (0.0.0.0 for --inspect=0.0.0.0)
            return re.sub(r"^ws://[^/]+/", f"ws://{host}:{port}/", url)
    return None


def _expected_port(target: Target) -> tuple[str, int]:
    """(host, port) the inspector of ``target`` binds when it opens."""
    val = procutil.flag_value(target.node_options, "--inspect-port", "--debug-port", "--inspect",
                              "--inspect-brk", "--inspect-wait")
    host, port = "127.0.0.1", DEFAULT_PORT
    if val:
        if ":" in val:
            h, _, p = val.rpartition(":")
            host = h.strip("[]") or host
        else:
            p = val
        try:
            port = int(p)
        except ValueError:
            if not p.isdigit():  # --inspect=host
                host = p
    return host, port


def _inspector_active_flag(target: Target) -> str | None:
    return procutil.has_flag(target.node_options, "--inspect", "--inspect-brk", "--inspect-wait")


# --------------------------------------------------------------------- backend
class InspectorBackend(Backend):
    name = "inspector"
    summary = "V8's sampling profiler over the DevTools protocol (SIGUSR1); JS with exact lines, all threads"
    needs = "permission to signal the process"
    default_hz = 1000

    def available(self, pid: int | None = None) -> str | None:
        try:
            import websocket  # noqa: F401
        except ImportError:
            return "websocket-client is not installed: pip install websocket-client"
        if pid is None:
            return None
        if not procutil.exists(pid):
            return f"no process {pid}"
        why = procutil.can_signal(pid)
        if why:
            return why
        if procutil.is_node(pid) is False:
            return f"process {procutil.describe_pid_briefly(pid)} is not a node process"
        why = _stopped_refusal(pid)
        if why:
            return why
        from . import locks
        why = locks.busy(pid, "inspector")
        if why:
            return why
        target = procutil.describe(pid)
        if not _inspector_active_flag(target):
            why = _sigusr1_refusal(target)
            if why:
                return why
        return None

    # ------------------------------------------------------------- live pid
    def start(self, target: Target, opts: CaptureOptions) -> Session:
        pid = target.pid
        why = procutil.can_signal(pid)
        if why:
            raise TargetError(why)
        if target.is_node is False:
            raise TargetError(f"process {procutil.describe_pid_briefly(pid)} is not a node process; "
                              "nodeflame profiles node (JavaScript) programs")
        why = _stopped_refusal(pid)
        if why:
            raise TargetError(why)
        lock = _CaptureLock.take(pid)
        try:
            url, opened, before = _open_inspector(target, lock)
            try:
                client = _Client(url, pid=pid, abort=_stopped_check(pid))
            except BaseException as e:
                if opened:
                    why = _close_opened(target, url, before, lock)
                    if why and isinstance(e, CaptureError):
                        raise CaptureError(f"{e}; {why}") from None
                raise
            s = InspectorSession(self, target, opts, client, url, opened)
            s.before_ports, s.lock, lock = before, lock, None
        finally:
            if lock is not None:
                lock.release()
        try:
            s.begin()
        except BaseException as e:
            s.close()
            st = procutil.stopped_state(pid) if isinstance(e, ProtocolError) else None
            if st:
                raise CaptureError(f"process {pid} was stopped (state {st}) while the capture was starting, so "
                                   f"nothing was sampled; {'; '.join(s.warnings) or 'its inspector was closed'}; "
                                   f"continue it (kill -CONT {pid}) and capture again") from None
            raise
        return s

    # ------------------------------------------------------------- run()
    def spawn(self, argv, opts: CaptureOptions, **popen_kwargs):
        exe_path = argv[0]
        if not procutil.looks_like_node(exe_path):
            return super().spawn(argv, opts, **popen_kwargs)
        flag = "--inspect-wait" if _supports(exe_path, "--inspect-wait") else "--inspect-brk"
        full = [exe_path, f"{flag}=127.0.0.1:0", "--inspect-publish-uid=http"] + list(argv[1:])
        proc = subprocess.Popen(full, **popen_kwargs)
        try:
            url = None
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and url is None:
                if proc.poll() is not None:
                    raise TargetError(f"{' '.join(argv)} exited with status {proc.returncode} before it "
                                      "could be profiled")
                for ip, port in procutil.listening_ports(proc.pid):
                    url = probe(ip, port)
                    if url:
                        break
                else:
                    time.sleep(0.02)
            if url is None:
                raise CaptureError(f"node did not open its inspector ({flag}=127.0.0.1:0) within 15 s")
            target = procutil.describe(proc.pid)
            target.proc = proc
            client = _Client(url, abort=_stopped_check(proc.pid))
            # opened=True: the inspector exists only for this capture, so close() closes it again
            # (a program left running with terminate=False keeps no debug port)
            s = InspectorSession(self, target, opts, client, url, opened=True)
            s.spawned_flag = flag
            try:
                s.begin()
                s.release_start()
            except BaseException:
                s.close()
                raise
            return proc, s
        except BaseException:
            procutil.terminate(proc)
            raise


_SUPPORTS: dict = {}


def _supports(node: str, flag: str) -> bool:
    key = (node, flag)
    if key not in _SUPPORTS:
        try:
            out = subprocess.run([node, "--help"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _SUPPORTS[key] = flag in out
    return _SUPPORTS[key]


def _sigusr1_refusal(target: Target) -> str | None:
    """Why SIGUSR1 must not be sent to target (it would not open the inspector, or kill it)."""
    pid = target.pid
    flag = procutil.has_flag(target.node_options, "--disable-sigusr1")
    if flag:
        return (f"process {pid} was started with --disable-sigusr1, so SIGUSR1 cannot open its inspector; "
                "restart it without that flag or with --inspect, or use the perf backend "
                "(start node with --perf-basic-prof)")
    if procutil.exists(pid) and not procutil.catches(pid, signal.SIGUSR1):
        ignored = procutil.signal_mask(pid, "SigIgn") & (1 << (signal.SIGUSR1 - 1))
        what = "ignores" if ignored else "does not handle (it would be terminated by)"
        return (f"process {pid} {what} SIGUSR1, so its inspector cannot be opened by signal "
                "(started with --disable-sigusr1, or the program removed node's SIGUSR1 handler); "
                "restart it with --inspect, or use the perf backend (start node with --perf-basic-prof)")
    return None


def _open_inspector(target: Target, lock: "_CaptureLock | None" = None) -> tuple[str, bool, list]:
    """Find or open target's inspector: (websocket url, opened by us, the ports it listened on before).

    Never sends SIGUSR1 to a stopped process.  On every failure after SIGUSR1 was sent, a port that
    opens later because of it (the target was stopped meanwhile, or is slow to open it) is closed
    again by a watcher process (:func:`_start_guard`), which the error names."""
    pid = target.pid
    before = procutil.listening_ports(pid)
    host, port = _expected_port(target)
    if _inspector_active_flag(target):
        # started with --inspect*: its inspector is (normally) open already
        for ip, p in sorted(before, key=lambda a: a[1] != port):
            url = probe(ip, p, pid)
            if url:
                return url, False, before
    elif port != 0:
        # an inspector opened earlier (by another tool's SIGUSR1) and left open: use it, leave it open
        for ip, p in before:
            if p == port:
                url = probe(ip, p, pid)
                if url:
                    return url, False, before
    why = _sigusr1_refusal(target)
    if why:
        raise TargetError(why)
    if port != 0 and not any(p == port for _ip, p in before):
        owner = procutil.port_owner(port, pid_hint=pid)
        if owner is not None and owner != pid:
            who = f"process {procutil.describe_pid_briefly(owner)}" if owner > 0 else "another process"
            raise CaptureError(
                f"the inspector port {port} that process {pid} would open is taken by {who}; "
                f"free it, or restart the target with --inspect-port=0 (any free port) or another port, "
                f"or use the perf backend (node --perf-basic-prof)")
    # the last moment to refuse a stopped process: SIGUSR1 would stay pending and open an
    # unauthenticated port whenever someone continues it
    why = _stopped_refusal(pid)
    if why:
        raise TargetError(why)
    procutil.send_signal(pid, signal.SIGUSR1)
    deadline = time.monotonic() + OPEN_TIMEOUT
    while time.monotonic() < deadline:
        if not procutil.exists(pid):
            raise TargetExited(f"process {pid} exited while the inspector backend was attaching to it "
                               "(right after SIGUSR1); nothing was sampled")
        if procutil.is_stopped(pid):
            # stopped after our check (a race with whoever stopped it): SIGUSR1 is pending, or the
            # port is open and nobody answers on it
            watcher = _watch_text(_start_guard(pid, before, lock))
            raise CaptureError(f"process {pid} was stopped (state {procutil.state(pid)}) just after SIGUSR1 "
                               f"was sent to open its inspector, so it cannot be profiled now; {watcher}; "
                               f"continue it (kill -CONT {pid}) and capture again")
        now = procutil.listening_ports(pid)
        new = [a for a in now if a not in before]
        for ip, p in sorted(new, key=lambda a: a[1] != port):
            url = probe(ip, p, pid)
            if url:
                return url, True, before
        time.sleep(0.02)
    # no new port: maybe its inspector was open already (an earlier SIGUSR1), or the bind failed
    for ip, p in sorted(before, key=lambda a: a[1] != port):
        url = probe(ip, p, pid)
        if url:
            return url, False, before
    # from here on, a port our SIGUSR1 opens late (a main thread blocked for a while) is the watcher's
    watcher = _watch_text(_start_guard(pid, before, lock))
    owner = procutil.port_owner(port, pid_hint=pid) if port else None
    if owner is not None and owner != pid:
        who = f"process {procutil.describe_pid_briefly(owner)}" if owner > 0 else "another process"
        raise CaptureError(f"process {pid} could not open its inspector: port {port} is taken by {who}; "
                           "free it or restart the target with --inspect-port=0, or use the perf backend")
    raise CaptureError(f"process {pid} did not open an inspector within {OPEN_TIMEOUT:g} s of SIGUSR1 "
                       "(the program may handle SIGUSR1 itself, its main thread may be blocked, or node cannot "
                       f"bind the port: see its stderr); {watcher}; "
                       "restart it with --inspect, or use the perf backend (node --perf-basic-prof)")


def _stopped_refusal(pid: int) -> str | None:
    """Why a stopped pid is not signalled or connected to (None: it runs)."""
    st = procutil.stopped_state(pid)
    if st == "T":
        what = "stopped (state T: SIGSTOP, SIGTSTP or Ctrl-Z)"
    elif st == "t":
        tp = procutil.tracer_pid(pid)
        what = f"stopped by a debugger or tracer (state t{f', traced by pid {tp}' if tp else ''})"
    else:
        return None
    return (f"process {pid} is {what}: the inspector backend needs it running, and SIGUSR1 sent now "
            f"would stay pending and open an unauthenticated debug port the moment it is continued, "
            f"so nothing was sent; continue it (kill -CONT {pid}) and capture again")


def _stopped_check(pid: int):
    """For _Client(abort=): every wait on a reply ends as soon as the target is stopped."""
    def check():
        if procutil.state(pid) not in ("T", "t"):
            return None      # the usual case: one read of /proc
        st = procutil.stopped_state(pid)
        return f"process {pid} is stopped (state {st})" if st else None
    return check


# --------------------------------------------------------------------- one capture at a time
class _CaptureLock:
    """One inspector capture of a process at a time (:mod:`.locks`, backend ``inspector``), held for as
    long as a capture or the watcher that closes a port it opened lives (the watcher inherits the
    descriptor); the kernel releases it when its holders exit, whatever the way.

    A second capture would use the first's inspector and have it closed under it (or close it
    under the first), so it is refused with a sentence naming the first instead."""

    @classmethod
    def take(cls, pid: int):
        from . import locks
        return locks.take(pid, "inspector", fix="use the walker or perf backend")


# --------------------------------------------------------------------- the watcher
#: The watcher (see _start_guard) ends when no port was opened by this long of the target
#: *running* after the SIGUSR1 was delivered (a stopped target does not count down).
GUARD_GRACE = 60.0
GUARD_POLL = 0.05


def _start_guard(pid: int, before, lock: "_CaptureLock | None" = None,
                 grace: float = GUARD_GRACE, hold: "_Client | None" = None,
                 close_ports: bool = True) -> int | None:
    """Start a watcher process that closes every inspector port ``pid`` opens (or has open) beyond
    ``before`` as soon as the process runs again: the pid of the watcher, or None.

    Used when a capture cannot close what it caused: the target was stopped (by someone else)
    after SIGUSR1 was sent or during the capture.  A stopped process keeps SIGUSR1 pending (or its
    port open with nobody answering) until it is continued, which may be much later than this
    capture, or this Python, lives.  The watcher is its own session (no terminal signal reaches it),
    polls /proc every GUARD_POLL s, and ends when the process exits, once the port is closed, or
    GUARD_GRACE s of the process running without one.  It inherits the capture lock, so no other
    capture of the process uses the port meanwhile.  Between the process resuming and the port being
    closed, the port is open for the time a connection and a Runtime.evaluate take (~0.1 s).

    ``hold``: a connection to the stopped target that must not be closed before the target has run
    and sent what it owes (see :meth:`_Client.hand_over`): the watcher takes it over, reads and drops
    what arrives once the target runs, and ends it (shutdown) after HOLD_QUIET s without data, before
    it closes any port.  ``close_ports=False``: the inspector was open before the capture, so
    the watcher only ends that connection."""
    start = procutil.start_time(pid)
    if start is None:
        if hold is not None:
            hold.close()
        return None
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    code = ("import sys; from nodeflame.capture.inspector import _guard_main; "
            "sys.exit(_guard_main(sys.argv[1:]))")
    fds = (lock.fileno(),) if lock is not None else ()
    held = hold.hand_over() if hold is not None and not hold.closed else None
    try:
        proc = subprocess.Popen([sys.executable, "-c", code, str(pid), str(start), repr(float(grace)),
                                 json.dumps([list(a) for a in before]), str(-1 if held is None else held),
                                 "1" if close_ports else "0"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True,
                                pass_fds=fds + (() if held is None else (held,)), cwd="/", env=env)
    except OSError:
        return None
    finally:
        if held is not None:
            os.close(held)   # the watcher has its copy (or, if it could not start, the connection ends here)
    threading.Thread(target=proc.wait, name=f"nodeflame-watcher-{proc.pid}", daemon=True).start()  # reaps it
    return proc.pid


def _watch_text(guard: int | None, ending_connection: bool = False) -> str:
    if ending_connection:
        if guard is None:
            return "no watcher could be started to hold the capture's inspector connection until it runs"
        return f"a watcher (pid {guard}) ends the capture's inspector connection once it runs again"
    if guard is None:
        return "no watcher could be started to close an inspector port it opens later: check with ss -ltnp"
    return (f"a watcher (pid {guard}) will close any inspector port this opens as soon as the process runs "
            f"again")


#: A held connection (see _start_guard) is ended after this long without data from a running target.
HOLD_QUIET = 0.5
HOLD_MAX = 30.0


def _guard_main(argv) -> int:
    """The watcher's body (``python -c``): argv = pid, start time, grace seconds, before ports (JSON),
    the fd of a held connection (-1: none), whether to close ports (1/0)."""
    pid, start = int(argv[0]), int(argv[1])
    held = None
    if len(argv) > 4 and int(argv[4]) >= 0:
        import socket
        held = socket.socket(fileno=int(argv[4]))
        held.setblocking(False)
    try:
        # the held connection first: it ends (our EOF) only after the target has run and sent what it
        # owed; closing the inspector from inside while it is still held would leave node's close frame
        # to a connection nobody answers
        if held is not None:
            _release_held(pid, start, held)
        if len(argv) <= 5 or argv[5] == "1":
            _guard_ports(pid, start, float(argv[2]), json.loads(argv[3]))
    finally:
        if held is not None:
            held.close()
    return 0


def _drain(held) -> tuple[bool, bool]:
    """Read and drop what the target sent on a held connection: (whether anything came, whether the
    connection ended)."""
    got = False
    while True:
        try:
            data = held.recv(1 << 16)
        except BlockingIOError:
            return got, False
        except OSError:
            return got, True
        if not data:
            return got, True
        got = True


def _release_held(pid: int, start: int, held) -> None:
    """End a held connection once the target has run and sent nothing for HOLD_QUIET s (time stopped
    does not count; at most HOLD_MAX s of it running)."""
    import socket
    quiet = ran = 0.0
    while ran < HOLD_MAX and quiet < HOLD_QUIET:
        if procutil.start_time(pid) != start or not procutil.exists(pid):
            return
        if procutil.is_stopped(pid):
            quiet = 0.0
        else:
            got, ended = _drain(held)
            if ended:
                return
            quiet = 0.0 if got else quiet + GUARD_POLL
            ran += GUARD_POLL
        time.sleep(GUARD_POLL)
    try:
        held.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _guard_ports(pid: int, start: int, grace: float, before) -> int:
    """Close every inspector port ``pid`` opens beyond ``before`` once it runs (see _start_guard)."""
    ignore = {(ip, int(p)) for ip, p in before}
    usr1 = 1 << (signal.SIGUSR1 - 1)
    not_inspector: dict = {}
    running = 0.0
    while True:
        if procutil.start_time(pid) != start or not procutil.exists(pid):
            return 0
        if procutil.is_stopped(pid):
            running = 0.0
            time.sleep(GUARD_POLL)
            continue
        ports = [a for a in procutil.listening_ports(pid) if a not in ignore and not_inspector.get(a, 0) < 3]
        for ip, p in ports:
            url = probe(ip, p, pid)
            if url is None:
                not_inspector[(ip, p)] = not_inspector.get((ip, p), 0) + 1
                continue
            _close_inspector_fresh(Target(pid=pid), url, before)
            not_inspector[(ip, p)] = 0
        open_now = [a for a in procutil.listening_ports(pid) if a not in ignore and not_inspector.get(a, 0) < 3]
        if not open_now and not (procutil.pending_signals(pid) & usr1):
            if any(v == 0 for v in not_inspector.values()):
                return 0   # we closed it
            running += GUARD_POLL
            if running >= grace:
                return 0
        time.sleep(GUARD_POLL)


def _close_opened(target: Target, url: str, before, lock: "_CaptureLock | None") -> str | None:
    """Close an inspector we opened and hold no working connection to; when the process is stopped
    (it cannot answer now) a watcher closes it once continued.  None, or a warning."""
    if procutil.is_stopped(target.pid):
        return (f"process {target.pid} is stopped with the inspector port {_port_of(url)} open: "
                + _watch_text(_start_guard(target.pid, before, lock)))
    return _close_inspector_fresh(target, url, before, lock)


def _port_of(url: str) -> int | None:
    m = re.match(r"^ws://.*:(\d+)/", url)
    return int(m.group(1)) if m else None


def _wait_port_closed(pid: int, port: int | None, timeout: float = CLOSE_TIMEOUT) -> bool:
    if port is None:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procutil.exists(pid) or not any(p == port for _ip, p in procutil.listening_ports(pid)):
            return True
        time.sleep(0.02)
    return False


#: How the inspector a capture opened is closed again, from inside the target.
#:
#: Closing it straight from a ``Runtime.evaluate`` while we also close our end crashes node 22/24
#: now and then (SIGSEGV in WsHandler::OnCloseFrameWritten on the inspector's I/O thread, the main
#: thread in ~InspectorIo: both ends closing the websocket at once; about 1 capture in 30 with a
#: worker attached).  So:
#:
#: 1. CLOSE_LATER: a timer (unref'd: it never keeps a program alive) closes the inspector
#:    CLOSE_DELAY_MS later, once we have disconnected and no client is left to write a close
#:    frame to.  It needs the event loop to turn.
#: 2. Only when it did not (a program running JavaScript without a pause): CLOSE_NOW on a fresh
#:    connection, which cancels the timer and closes at once; we then only answer the close
#:    frame node sends (we never close our end first), the ordinary server-side close.
#:
#: ``require`` is the command-line API's (``includeCommandLineAPI``), present in CommonJS and ES
#: module programs alike (node 18-24); ``process.getBuiltinModule`` (node >= 20.16) the fallback.
CLOSE_DELAY_MS = 400
_INSPECTOR_JS = ("(typeof require === 'function' ? require('inspector') "
                 ": process.getBuiltinModule('inspector'))")
_TIMER_KEY = "globalThis[Symbol.for('nodeflame.inspector.close')]"
CLOSE_LATER = (
    "(() => { const i = %s; clearTimeout(%s); "
    "const t = %s = setTimeout(() => { %s = undefined; try { i.close(); } catch (e) {} }, %d); "
    "if (t && t.unref) t.unref(); return 'nodeflame: the inspector closes in %d ms'; })()"
    % (_INSPECTOR_JS, _TIMER_KEY, _TIMER_KEY, _TIMER_KEY, CLOSE_DELAY_MS, CLOSE_DELAY_MS))
CLOSE_NOW = "(() => { clearTimeout(%s); %s = undefined; %s.close(); })()" % (_TIMER_KEY, _TIMER_KEY,
                                                                              _INSPECTOR_JS)


def _evaluate(client: _Client, expression: str, timeout: float = 5.0) -> str | None:
    """Evaluate ``expression`` in the target's main context: None, or why it failed."""
    try:
        res = client.call("Runtime.evaluate", {"expression": expression, "includeCommandLineAPI": True,
                                                "silent": True, "returnByValue": True}, timeout=timeout)
    except ProtocolError as e:
        return str(e)
    if res.get("exceptionDetails"):
        d = res["exceptionDetails"]
        return (d.get("exception") or {}).get("description") or d.get("text") or "it threw"
    return None


def _close_now(url: str, pid: int, port: int | None) -> str | None:
    """Step 2 above: None when the port is gone, else why not."""
    try:
        c = _Client(url, timeout=2.0, pid=pid, abort=_stopped_check(pid))
    except CaptureError as e:
        return str(e)
    try:
        c.send("Runtime.evaluate", {"expression": CLOSE_NOW, "includeCommandLineAPI": True, "silent": True})
        # node closes the connection as it closes the inspector; wait for that instead of closing first
        deadline = time.monotonic() + 5.0
        with c._cond:
            while not c.closed and time.monotonic() < deadline and not procutil.is_stopped(pid):
                c._cond.wait(0.05)
    except ProtocolError as e:
        return str(e)
    finally:
        c.close()
    return None if _wait_port_closed(pid, port, 2.0) else "it did not close"


def _close_and_wait(client: _Client, pid: int, port: int | None, url: str, before=(),
                    lock: "_CaptureLock | None" = None) -> str | None:
    """Close the inspector we opened (see CLOSE_LATER); disconnects ``client``.  None, or a warning.
    A target stopped before it answered keeps the connection (handed to a watcher: _Client.hand_over)."""
    why = _evaluate(client, CLOSE_LATER)
    if why is not None and procutil.is_stopped(pid):
        return (f"process {pid} was stopped while its inspector port {port} was being closed: "
                + _watch_text(_start_guard(pid, before, lock, hold=client)))
    client.close()
    if why is None and _wait_port_closed(pid, port, CLOSE_DELAY_MS / 1000 + 0.8):
        return None
    if not procutil.exists(pid):
        return None
    why_now = _close_now(url, pid, port)
    if why_now is None or not procutil.exists(pid):
        return None
    warning = f"the inspector port {port} of process {pid} could not be closed ({why or why_now})"
    if procutil.is_stopped(pid):
        warning += "; " + _watch_text(_start_guard(pid, before, lock))
    return warning


def _close_inspector_fresh(target: Target, url: str, before=(), lock: "_CaptureLock | None" = None) -> str | None:
    """Close an inspector we opened but hold no working connection to: None, or a warning."""
    try:
        c = _Client(url, timeout=2.0, pid=target.pid, abort=_stopped_check(target.pid))
    except CaptureError as e:
        if _wait_port_closed(target.pid, _port_of(url), 0.1):
            return None
        return f"the inspector port {_port_of(url)} of process {target.pid} could not be closed ({e})"
    return _close_and_wait(c, target.pid, _port_of(url), url, before, lock)


# --------------------------------------------------------------------- session
class _Thread:
    def __init__(self, session_id, name, worker_id=None):
        self.session = session_id      # None for the main thread
        self.name = name
        self.worker_id = worker_id
        self.started = False
        self.profile = None            # the cpuprofile dict once stopped
        self.lost = None               # why its samples were lost
        self.info = {"thread": name}
        self.chunks: list = []         # profiles collected during the capture (see COLLECT_EVERY)
        self.keepalive = False         # its console.profile keeps V8's profiler alive across collections
        self.keepalive_cycles = 0      # times the keepalive was restarted (after collections)
        self.collected_at = None       # time.monotonic() of the last collection
        self.gaps: list = []           # (end, start) in µs of V8's clock between consecutive collected parts


class InspectorSession(Session):
    def __init__(self, backend, target, opts, client: _Client, url: str, opened: bool):
        super().__init__(backend, target, opts)
        self.client = client
        self.url = url
        self.opened = opened
        self.port = _port_of(url)
        self.hz = int(opts.hz or backend.default_hz)
        self.interval_us = max(1, int(round(1e6 / self.hz)))
        self.main = _Thread(None, "main")
        self.workers: dict[str, _Thread] = {}
        self.exiting = False
        self.closed = False
        self.warnings: list[str] = []
        self.spawned_flag = None
        self.stop_time = None
        self.profile = None
        self.before_ports: list = []
        self.lock: _CaptureLock | None = None
        try:
            self.collect_every = float((opts.extra or {}).get("collect_every", COLLECT_EVERY))
        except (TypeError, ValueError):
            raise CaptureError("backend_options collect_every must be a number of seconds (0: only at the end)")
        self.next_collect = time.monotonic() + self.collect_every
        self.no_calls: str | None = None   # why no more protocol calls are made (the target is stopped)
        self.stopped_note: str | None = None
        # V8's sampler threads that our Profiler.start creates, and how long they waited for a CPU
        self.sampler = SamplerThreads(target.pid)

    # -- protocol helpers
    def _setup_thread(self, th: _Thread):
        c, s = self.client, th.session
        c.call("Profiler.enable", session=s)
        c.call("Profiler.setSamplingInterval", {"interval": self.interval_us}, session=s)
        if s is None:
            # the main thread waits for us at exit, so a process that ends mid-capture still
            # hands over its profile.  NOT on workers: a worker that waits for its debugger at
            # exit deadlocks process.exit() (node 18-24: main waits for the worker, the worker
            # for a disconnect that never reaches it) - the target would hang forever.
            try:
                c.call("NodeRuntime.notifyWhenWaitingForDisconnect", {"enabled": True})
            except ProtocolError:
                pass  # older node: a process that exits mid-capture loses its samples
        c.call("Profiler.start", session=s)
        th.started = True
        self.sampler.adopt()
        th.collected_at = time.monotonic()
        if self.collect_every > 0:
            # a second profile (console.profile) keeps V8's CpuProfiler alive, so that collecting
            # (Profiler.stop + Profiler.start) costs the target no re-logging of all its code: a new
            # CpuProfiler walks the heap, 0.1-1.5 s of pause on a busy machine.  The
            # consoleProfileStarted event confirms it; without it nothing is collected early.
            try:
                c.send("Runtime.evaluate", {"expression": KEEPALIVE, "includeCommandLineAPI": True,
                                            "silent": True}, session=s)
            except ProtocolError:
                pass

    def begin(self):
        self._setup_thread(self.main)
        self.started_at = time.time()
        if self.opts.threads != "main":
            try:
                self.client.call("NodeWorker.enable", {"waitForDebuggerOnStart": False})
            except ProtocolError as e:
                self.warnings.append(f"worker threads not profiled: {e}")
            # existing workers announce themselves (attachedToWorker) before that reply:
            # start their profilers now; later ones are handled by poll()
            self._drain(0.02)

    def release_start(self):
        """For spawn(): let a program that waits for the debugger run."""
        if self.spawned_flag == "--inspect-brk":
            self.client.call("Debugger.enable")
            self.client.call("Runtime.runIfWaitingForDebugger")
            # it pauses on the first line: resume, then stop debugging
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    sid, method, _p = self.client.events.get(timeout=0.1)
                except queue.Empty:
                    continue
                if method == "Debugger.paused" and sid is None:
                    break
                self._event(sid, method, _p)
            self.client.call("Debugger.resume")
            self.client.call("Debugger.disable")
        else:
            self.client.call("Runtime.runIfWaitingForDebugger")

    def _drain(self, timeout: float = 0.0):
        try:
            sid, method, params = self.client.events.get(timeout=timeout) if timeout else \
                self.client.events.get_nowait()
        except queue.Empty:
            return False
        self._event(sid, method, params)
        while True:
            try:
                sid, method, params = self.client.events.get_nowait()
            except queue.Empty:
                return True
            self._event(sid, method, params)

    def _event(self, sid, method, params):
        if method == "NodeWorker.attachedToWorker" and sid is None:
            wid = params.get("sessionId")
            if wid in self.workers:
                return
            info = params.get("workerInfo") or {}
            name = worker_thread_name(info, {t.name for t in self.workers.values()} | {"main"})
            th = _Thread(wid, name, info.get("workerId"))
            th.info = {"thread": name, "worker_id": info.get("workerId"), "title": info.get("title"),
                       "url": info.get("url")}
            self.workers[wid] = th
            if self.stop_time is None:
                try:
                    self._setup_thread(th)
                except ProtocolError as e:
                    th.lost = f"{name}: could not start its profiler ({e})"
        elif method == "NodeWorker.detachedFromWorker" and sid is None:
            th = self.workers.get(params.get("sessionId"))
            if th is not None and th.started and th.profile is None and th.lost is None:
                th.lost = f"{th.name} ended during the capture; its samples were lost"
        elif method == "NodeRuntime.waitingForDisconnect":
            if sid is None:
                self.exiting = True
            else:
                th = self.workers.get(sid)
                if th is not None and th.started and th.profile is None:
                    self._stop_thread(th)
                    try:
                        self.client.send("NodeWorker.detach", {"sessionId": sid})
                    except ProtocolError:
                        pass
        elif method == "Profiler.consoleProfileStarted" and (params or {}).get("title") == KEEPALIVE_TITLE:
            th = self.main if sid is None else self.workers.get(sid)
            if th is not None:
                th.keepalive = True
        elif method == "_closed":
            pass

    def _stop_thread(self, th: _Thread):
        try:
            res = self.client.call("Profiler.stop", session=th.session, timeout=60)
            th.profile = res.get("profile")
        except ProtocolError as e:
            th.lost = f"{th.name}: Profiler.stop failed ({e})"

    # -- periodic collection
    def _collect(self):
        """Collect every thread's profile so far (Profiler.stop, then at once Profiler.start): what a
        capture keeps when the target is stopped or killed before its end.  Only threads whose
        keepalive profile runs (else the restart would re-log all code, a pause of the target)."""
        c = self.client
        pending = []
        for th in [self.main] + list(self.workers.values()):
            if not th.keepalive or not th.started or th.profile is not None or th.lost is not None:
                continue
            try:
                pending.append((th, c.send("Profiler.stop", session=th.session),
                                c.send("Profiler.start", session=th.session)))
            except ProtocolError:
                return
        for th, stop_id, start_id in pending:
            try:
                prof = c.wait(stop_id, th.session, 10.0, "Profiler.stop").get("profile")
            except ProtocolError:
                continue   # stopped or gone meanwhile: poll() sees it next
            if prof:
                th.chunks.append(prof)
                th.collected_at = time.monotonic()
            try:
                c.wait(start_id, th.session, 10.0, "Profiler.start")
            except ProtocolError as e:
                if not c.closed and not procutil.is_stopped(self.target.pid):
                    th.started = False
                    th.lost = f"{th.name}: its profiler could not be restarted after a collection ({e})"
                continue
            self.sampler.adopt()     # a new sampler thread if V8's profiler had ended meanwhile
            # the capture's profile runs again: restart the keepalive, so that it never holds more than
            # one collection's samples in the target (its consoleProfileFinished event is ignored)
            try:
                c.send("Runtime.evaluate", {"expression": KEEPALIVE_CYCLE, "includeCommandLineAPI": True,
                                            "silent": True}, session=th.session)
                th.keepalive_cycles += 1
            except ProtocolError:
                pass

    def _stopped(self) -> str | None:
        """Why the target can answer no call now (stopped), or None."""
        st = procutil.stopped_state(self.target.pid)
        if st:
            return f"process {self.target.pid} was stopped (state {st})"
        return None

    # -- Session interface
    def poll(self):
        self._drain()
        if self.exiting:
            return "the process is exiting"
        if self.client.closed:
            # node's sockets close as it exits, before it is a zombie (at load 9 the connection was seen closed
            # while /proc still said running): give the exit a moment to show
            if procutil.gone_within(self.target.pid, 2.0):
                return None  # the driver handles the exit
            raise CaptureError(f"the inspector connection closed unexpectedly ({self.client.closed})")
        why = self._stopped()
        if why:
            self.no_calls = why
            self.stopped_note = why
            return (f"{why}: a stopped process answers no inspector call, so the capture ended with the "
                    f"profile collected until then (the target is left stopped)")
        if self.collect_every > 0 and time.monotonic() >= self.next_collect:
            self._collect()
            self.next_collect = time.monotonic() + self.collect_every
        self.sampler.read()
        return None

    def target_exited(self) -> bool:
        return (self.exiting and not self.client.closed) or bool(self.main.chunks)

    def _from_chunks(self, why: str):
        """The Profile of what was collected before the target became unreachable (``why``)."""
        self.no_calls = why
        for th in [self.main] + list(self.workers.values()):
            if th.profile is None and th.chunks:
                th.profile, th.gaps = _merge_chunks(th.chunks)
        if self.main.profile is None:
            every = (f"the first collection comes {self.collect_every:g} s into a capture "
                     "(backend_options collect_every)" if self.collect_every > 0 else
                     "collect_every=0: the profile is only fetched at the end")
            raise TargetExited(f"{why} before any of its profile was collected ({every}); nothing was kept")
        lost = max(0.0, time.monotonic() - (self.main.collected_at or time.monotonic()))
        self.warnings.append(f"{why}: kept the profile collected until {lost:.1f} s before the capture ended; "
                             "the samples after the last collection were lost")
        return self._profile()

    def stop(self):
        self.stop_time = time.time()
        self.sampler.read()       # before the thread ends with its profiler
        self._drain()
        pid = self.target.pid
        if self.client.closed or not procutil.exists(pid):
            why = (f"process {pid} went away during the capture (the inspector connection closed: "
                   f"{self.client.closed or 'the process exited'})")
            if not self.main.chunks:
                raise TargetExited(f"{why}; nothing was kept")
            return self._from_chunks(why)
        why = self.no_calls or self._stopped()
        if why:
            return self._from_chunks(why)
        # stop all threads at about the same moment: send every stop, then collect
        pending = []
        for th in list(self.workers.values()) + [self.main]:
            if th.started and th.profile is None and th.lost is None:
                try:
                    pending.append((th, self.client.send("Profiler.stop", session=th.session)))
                except ProtocolError as e:
                    th.lost = f"{th.name}: Profiler.stop failed ({e})"
        for th, mid in pending:
            try:
                th.profile = (self.client.wait(mid, th.session, 60, "Profiler.stop") or {}).get("profile")
            except ProtocolError as e:
                th.lost = f"{th.name}: Profiler.stop failed ({e})"
        # the parts collected during the capture, then the last one
        for th in [self.main] + list(self.workers.values()):
            if th.chunks:
                got = th.profile is not None
                th.profile, th.gaps = _merge_chunks(th.chunks + ([th.profile] if got else []))
                if not got and th.lost:
                    th.lost += "; kept its samples until the last collection"
                    self.warnings.append(th.lost)
                    th.lost = None
        if self.main.profile is None and self._stopped():
            return self._from_chunks(self._stopped())
        if self.main.profile is None:
            raise CaptureError(self.main.lost or "the main thread's profile could not be fetched")
        return self._profile()

    def _profile(self):
        from ..frames.readers.v8protocol import read_protocol_profiles
        threads = [self.main] + [t for t in self.workers.values() if t.profile is not None]
        names = [th.name for th in threads]
        t0 = self.main.profile.get("startTime", 0)
        fixes = _Corrections(self)
        pid = self.target.pid
        if len(threads) == 1 or not fixes.enabled:
            # the Profiler.stop replies as they were parsed, every thread in one reader call
            source = f"<inspector pid {pid} {names[0]}>" if len(threads) == 1 else f"<inspector pid {pid}>"
            prof = read_protocol_profiles([(th.name, th.profile) for th in threads], source)
            if len(threads) == 1:
                prof = fixes.apply(threads[0], prof)
        else:
            # re-attribution works on one thread's profile (its own coverage, sources and per-line ticks)
            from ..frames.combine import concat
            prof = concat([fixes.apply(th, read_protocol_profiles([(th.name, th.profile)],
                                                                  f"<inspector pid {pid} {th.name}>"))
                           for th in threads], names)
        for th in self.workers.values():
            if th.lost:
                self.warnings.append(th.lost)
        end = self.main.profile.get("endTime", t0)
        self.warnings.extend(fixes.warnings)
        md = {
            "backend": "inspector",
            "source_format": "cpuprofile",
            "period_ns": self.interval_us * 1000,
            "sampling_interval_us": self.interval_us,
            "profile_duration_ns": int((end - t0) * 1000),
            "inspector_url": self.url,
            "inspector_opened": self.opened,
            "threads": names,
            "inspector_threads": [self.main.info] + [t.info for t in self.workers.values()],
        }
        md.update(fixes.meta())
        md["sampler"] = self.sampler.report()
        late = self.sampler.warning()
        if late:
            self.warnings.append(late)
        # what the collections during the capture left unsampled, on the samples' clock (time_ns)
        gaps = {th.name: [[int(a * 1000), int(b * 1000)] for a, b in th.gaps] for th in threads if th.gaps}
        if gaps:
            md["collection_gaps_ns"] = gaps
            # a gap holds one sampling interval that would be there anyway
            lost = sum(max(0, b - a - md["period_ns"]) for a, b in gaps.get("main", ()))
            span = md["profile_duration_ns"]
            if span > 0 and lost > 0.01 * span:
                self.warnings.append(
                    f"the {len(gaps.get('main', ()))} collections of the profile during the capture (every "
                    f"{self.collect_every:g} s, backend_options collect_every) left {lost / 1e6:.0f} ms "
                    f"({100 * lost / span:.1f} %) of the main thread unsampled (meta['collection_gaps_ns']); "
                    "collect_every=0 fetches the profile only at the end")
        prof = with_meta(prof, warnings=self.warnings, **md)
        self.profile = prof
        return prof

    def close(self):
        if self.closed:
            return
        self.closed = True
        c = self.client
        pid = self.target.pid
        warning = None
        try:
            if self.exiting or not procutil.exists(pid):
                pass  # gone or exiting: disconnecting is all there is to do (and lets it exit)
            elif self.opened and procutil.is_stopped(pid):
                # it can close nothing now: the watcher takes our connection (it must outlive the stop:
                # _Client.hand_over) and closes the port once the target is continued
                warning = (f"process {pid} is stopped with the inspector port {self.port} this capture opened: "
                           + _watch_text(_start_guard(pid, self.before_ports, self.lock, hold=c)))
            elif self.opened and c.closed:
                warning = _close_opened(self.target, self.url, self.before_ports, self.lock)
            elif self.opened:
                warning = _close_and_wait(c, pid, self.port, self.url, self.before_ports, self.lock)
            elif c.closed:
                pass  # an inspector open before us, which we leave open; nothing to undo that can be
            elif procutil.is_stopped(pid):
                # an inspector open before us, left open: our connection ends once the target has run
                warning = (f"process {pid} is stopped: "
                           + _watch_text(_start_guard(pid, self.before_ports, self.lock, hold=c,
                                                      close_ports=False), ending_connection=True))
            else:
                # an inspector that was open before us stays open: undo only what we enabled
                for th in list(self.workers.values()) + [self.main]:
                    try:
                        c.send("Profiler.disable", session=th.session)
                    except ProtocolError:
                        pass
                for m, p in (("NodeWorker.disable", None),
                             ("NodeRuntime.notifyWhenWaitingForDisconnect", {"enabled": False})):
                    try:
                        c.call(m, p, timeout=2.0)
                    except ProtocolError:
                        pass
        except Exception as e:  # close() never raises
            warning = f"closing the inspector connection failed: {type(e).__name__}: {e}"
        finally:
            c.close()
            if self.lock is not None:
                self.lock.release()   # a watcher started above holds its own copy
        if warning:
            self.warnings.append(warning)
            self.close_warnings.append(warning)


# --------------------------------------------------------------------- corrections
#: Debugger.getScriptSource is used (Debugger.enable pauses the target ~50-100 ms once, after the
#: capture) only for scripts not readable from disk whose split concerns at least this share of
#: a thread's samples (backend_options sources="debugger": any; sources="disk": never).
DEBUGGER_MIN_SHARE = 0.01
#: best-effort coverage walks the target's heap (a pause after the capture): skipped above this
#: heap size unless backend_options inline_max_heap_mb says otherwise.
INLINE_MAX_HEAP_MB = 1024
#: scripts read besides the profile's own because one of those loads them (require, import)
MAX_LOADED_SCRIPTS = 64


def _ranges(sc: dict) -> list:
    """(name, start, end) of each function of one script's best-effort coverage."""
    return [(f.get("functionName") or "", f["ranges"][0]["startOffset"], f["ranges"][0]["endOffset"])
            for f in sc.get("functions") or [] if f.get("ranges")]


def _source_matches(src: str, functions: list) -> bool:
    """Whether ``src`` is the text the function ranges were measured on (the file may have changed
    on disk since node loaded it)."""
    n = len(src.encode("utf-16-le", "surrogatepass")) // 2
    if any(e > n for _nm, _s, e in functions):
        return False
    top = [e for nm, st, e in functions if st == 0 and not nm]
    if top and max(top) not in (n, n - 1):
        return False
    checked = bad = 0
    ascii_only = src.isascii()
    for nm, st, _e in functions:
        key = nm.rsplit(".", 1)[-1]
        if not ascii_only or not re.fullmatch(r"[A-Za-z_$][\w$]*", key or ""):
            continue
        checked += 1
        if key not in src[st:st + len(key) + 200]:
            bad += 1
        if checked >= 20:
            break
    return bad * 5 <= checked


class _Corrections:
    """After Profiler.stop, while still connected: re-attribution of leaf-inlined time and the
    unknown-OSR check of nodeflame.frames.inline_split, per thread.

    Fetches, per thread: Profiler.getBestEffortCoverage (function ranges; it reads the invocation
    counts V8 keeps anyway and changes no coverage mode), the sources of the profile's scripts from
    disk through /proc/PID/root, and only when needed (a script not on disk that holds enough of
    the samples) Debugger.enable / getScriptSource / disable.  Nothing runs during the capture."""

    def __init__(self, session: "InspectorSession"):
        self.s = session
        ex = dict(session.opts.extra or {})
        self.enabled = bool(ex.get("reattribute", True))
        self.sources = str(ex.get("sources", "auto"))
        if self.sources not in ("auto", "disk", "debugger"):
            raise CaptureError(f"backend_options sources={self.sources!r}: use 'auto', 'disk' or 'debugger'")
        self.max_heap = float(ex.get("inline_max_heap_mb", INLINE_MAX_HEAP_MB))
        self.warnings: list[str] = []
        self.reports: dict = {}
        self.osr: list = []
        self.pause_ms = {"coverage": 0.0, "debugger": 0.0}
        self.source_counts = {"disk": 0, "debugger": 0}

    def meta(self) -> dict:
        if not self.enabled:
            return {"inline_split": {"enabled": False}}
        moved = sum(r["reattributed"] for r in self.reports.values())
        out = {"inlined_reattributed": moved,
               "inline_split": {"enabled": True, "threads": self.reports, "sources": dict(self.source_counts),
                                "pause_ms": {k: round(v, 1) for k, v in self.pause_ms.items()}}}
        out["osr_unknown"] = self.osr
        return out

    def apply(self, th, prof):
        if not self.enabled:
            return prof
        why = self.s.no_calls or self.s._stopped()
        if why:
            self.warnings.append(f"{th.name}: functions inlined by V8 were not re-attributed ({why})")
            return prof
        try:
            return self._apply(th, prof)
        except ProtocolError as e:
            self.warnings.append(f"{th.name}: functions inlined by V8 were not re-attributed ({e})")
        return prof

    def _call(self, th, method, params=None, timeout=30.0):
        return self.s.client.call(method, params, session=th.session, timeout=timeout)

    def _apply(self, th, prof):
        from ..frames.inline_split import (PathIndex, Script, loaded_urls, reattribute_call_lines, reattribute_inlined,
                                           url_path)
        c = self.s.client
        if c.closed or (th.session is not None and th.lost):
            return prof
        files = set(prof.funcs["file"].astype(str))
        if self.max_heap > 0:
            try:
                used = self._call(th, "Runtime.getHeapUsage", timeout=5.0).get("usedSize", 0) / 2**20
            except ProtocolError:
                used = 0
            if used > self.max_heap:
                self.warnings.append(
                    f"{th.name}: functions inlined by V8 were not re-attributed: reading function ranges walks "
                    f"the {used:.0f} MB heap (a pause of the process); allow it with backend_options "
                    f"inline_max_heap_mb={int(used) + 1}")
                return prof
        t = time.monotonic()
        cov = self._call(th, "Profiler.getBestEffortCoverage").get("result") or []
        self.pause_ms["coverage"] += 1000 * (time.monotonic() - t)
        every: dict = {}
        for sc in cov:
            url = sc.get("url") or ""
            if url and (url not in every or len(sc.get("functions") or []) > len(every[url].get("functions") or [])):
                every[url] = sc
        by_url = {url: sc for url, sc in every.items() if url in files}
        ranges = {url: _ranges(sc) for url, sc in by_url.items()}
        scripts = {}
        for url, fr in ranges.items():
            src = self._disk_source(url, fr)
            if src is not None:
                scripts[url] = Script(url, src, fr)
                self.source_counts["disk"] += 1
        # scripts that may hold a function V8 inlined into every caller (no node of its own, so not among
        # the profile's files): those the profile's scripts load by a relative path or a package's name,
        # two levels down at most.  (Not every loaded script that defines a name they call: with common names that reads
        # scripts by the dozen, and each one's names make more calls ambiguous.)  The call-line split
        # below keeps to the profile's own scripts, as before.
        base = dict(scripts)

        def add(url):
            if url in by_url or url_path(url) is None or len(by_url) >= len(files) + MAX_LOADED_SCRIPTS:
                return None
            by_url[url] = every[url]
            ranges[url] = _ranges(every[url])
            src = self._disk_source(url, ranges[url])
            if src is None:
                return None
            scripts[url] = Script(url, src, ranges[url])
            self.source_counts["disk"] += 1
            return scripts[url]
        todo = list(scripts.values())
        paths = PathIndex(every)
        for _level in range(2):
            todo = [got for sc in todo for url in loaded_urls(sc.source, sc.url, paths)
                    for got in [add(url)] if got]
        new, rep = reattribute_inlined(prof, scripts)
        total = max(rep["samples"], 1)
        want = [u for u, w in rep["wanted"].items() if u in by_url and u not in scripts and
                (self.sources == "debugger" or (self.sources == "auto" and w >= max(DEBUGGER_MIN_SHARE * total, 3)))]
        if want:
            got = self._debugger_sources(th, [(u, by_url[u]["scriptId"]) for u in want])
            for url, src in got.items():
                scripts[url] = base[url] = Script(url, src, ranges[url])
            if got:
                new, rep = reattribute_inlined(prof, scripts)
        new, findings, osr_warn = reattribute_call_lines(new, base)
        prefix = f"{th.name}: " if th is not self.s.main else ""
        self.warnings.extend(prefix + w for w in rep["warnings"] + osr_warn)
        self.osr.extend(dict(f, thread=th.name) for f in findings)
        rep = {k: v for k, v in rep.items() if k not in ("warnings",)}
        rep["functions"] = dict(list(rep["functions"].items())[:20])
        self.reports[th.name] = rep
        return new

    def _disk_source(self, url: str, functions: list) -> str | None:
        from ..frames.inline_split import url_path
        path = url_path(url)
        if path is None:
            return None
        for p in (f"/proc/{self.s.target.pid}/root{path}", path):
            try:
                with open(p, "rb") as fh:
                    raw = fh.read(64 << 20)
            except OSError:
                continue
            try:
                src = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
            for cand in (src, src[1:] if src.startswith("\ufeff") else None):
                if cand is not None and _source_matches(cand, functions):
                    return cand
            return None
        return None

    def _debugger_sources(self, th, wanted: list) -> dict:
        """Sources of (url, scriptId) over the protocol: one Debugger.enable (which pauses the
        thread while V8 reports its scripts), the getScriptSource calls, Debugger.disable."""
        out: dict = {}
        t = time.monotonic()
        try:
            self._call(th, "Debugger.enable")
        except ProtocolError as e:
            self.warnings.append(f"{th.name}: script sources not fetched ({e})")
            return out
        try:
            mids = [(url, self.s.client.send("Debugger.getScriptSource", {"scriptId": sid}, session=th.session))
                    for url, sid in wanted]
            for url, mid in mids:
                try:
                    res = self.s.client.wait(mid, th.session, 30.0, "Debugger.getScriptSource")
                except ProtocolError:
                    continue
                src = res.get("scriptSource")
                if isinstance(src, str):
                    out[url] = src
                    self.source_counts["debugger"] += 1
        finally:
            try:
                self._call(th, "Debugger.disable", timeout=10.0)
            except ProtocolError:
                pass
            self.pause_ms["debugger"] += 1000 * (time.monotonic() - t)
        return out


def _merge_chunks(chunks: list) -> tuple[dict | None, list]:
    """One cpuprofile from the consecutive profiles of one thread collected during a capture: node
    ids renumbered, every part's root merged into the first's, sample times kept absolute; and the
    gaps between the parts, ``(latest sample of one, earliest of the next)`` in µs, in which V8
    sampled nothing (a collection's Profiler.stop -> Profiler.start, and the samples V8 still held
    unprocessed when it stopped: 1-5 ms before ``endTime`` on an idle machine)."""
    chunks = [c for c in chunks if isinstance(c, dict) and c.get("nodes")]
    if not chunks:
        return None, []
    nodes: list = []
    root = None
    samples: list = []
    times: list = []
    bounds = []       # per part: (first, last) sample time, or (startTime, endTime) without samples
    next_id = 1
    for c in chunks:
        children = {ch for n in c["nodes"] for ch in (n.get("children") or [])}
        croot = next((n for n in c["nodes"] if n["id"] not in children), c["nodes"][0])
        remap = {}
        for n in c["nodes"]:
            if n is croot and root is not None:
                remap[n["id"]] = root["id"]
            else:
                remap[n["id"]] = next_id
                next_id += 1
        for n in c["nodes"]:
            kids = [remap[k] for k in (n.get("children") or []) if k in remap]
            if n is croot and root is not None:
                root["children"] = list(root.get("children") or []) + kids
                root["hitCount"] = int(root.get("hitCount") or 0) + int(n.get("hitCount") or 0)
                continue
            m = dict(n, id=remap[n["id"]], children=kids)
            if n is croot:
                root = m
            nodes.append(m)
        t = c.get("startTime", 0)
        first = len(times)
        for sid, d in zip(c.get("samples") or [], c.get("timeDeltas") or []):
            t += d
            samples.append(remap.get(sid, root["id"]))
            times.append(t)
        # V8 now and then writes a negative timeDelta (the reader puts such samples back in time order):
        # a part's first and last samples in time are its earliest and latest, not its first and last
        bounds.append((min(times[first:]), max(times[first:])) if len(times) > first else
                      (c.get("startTime"), c.get("endTime")))
    gaps = [(a[1], b[0]) for a, b in zip(bounds, bounds[1:])
            if isinstance(a[1], (int, float)) and isinstance(b[0], (int, float)) and b[0] > a[1]]
    if len(chunks) == 1:
        return chunks[0], gaps
    nodes.remove(root)
    nodes.insert(0, root)
    start = chunks[0].get("startTime", times[0] if times else 0)
    deltas, prev = [], start
    for t in times:
        deltas.append(t - prev)
        prev = t
    return {"nodes": nodes, "startTime": start, "endTime": chunks[-1].get("endTime", prev),
            "samples": samples, "timeDeltas": deltas}, gaps


_TITLE = re.compile(r"^\[worker (\d+)\]\s*(.*)$")


def worker_thread_name(info: dict, taken=()) -> str:
    """The ``thread`` value of a worker: its name (``new Worker(f, {name})``) when it has one,
    else ``worker <id>``; made unique among ``taken`` by adding its id.

    ``info`` is NodeWorker's workerInfo: ``title`` is ``[worker 1] name`` (``[worker 1]``
    on node < 22 without a name, ``[worker 1] WorkerThread`` on node 24)."""
    wid = str(info.get("workerId") or "?")
    title = str(info.get("title") or "")
    m = _TITLE.match(title)
    name = (m.group(2) if m else title).strip()
    if m:
        wid = m.group(1)
    if not name or name == "WorkerThread":
        name = f"worker {wid}"
    if name in taken:
        name = f"{name} (worker {wid})"
    return name


def cpuprofile_to_profile(profile: dict, source: str):
    """A Profile from one Profiler.stop result (the parsed reply), through the cpuprofile reader."""
    from ..frames.readers.v8protocol import read_protocol_profiles
    return read_protocol_profiles([("main", profile)], source)


BACKEND = InspectorBackend()
