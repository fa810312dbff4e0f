"""A small headless-Chromium harness for tests, over the Chrome DevTools Protocol.

    from tests.browser import Browser, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium not installed (/usr/bin/chromium)")
    with Browser() as b:
        b.open("/tmp/flame.svg")          # a path or a URL
        n = b.eval("document.querySelectorAll('rect').length")
        b.mouse_move(100, 200); b.click(100, 200)
        b.wait_for("document.title != ''", timeout=5)
        png = b.screenshot("/tmp/shot.png")

Chromium is started with ``--remote-debugging-port=0`` in a fresh temporary
profile; the port is read from the profile's ``DevToolsActivePort`` file and one
websocket (websocket-client) talks to the browser, attached to one page in
flat session mode.  The browser and every process it started (it runs in its
own process group) are killed on every path: ``close()``, leaving the ``with``
block, a failed start, garbage collection and interpreter exit; and if the Python
process itself is killed, the kernel kills the browser (PR_SET_PDEATHSIG; so start
the Browser in a thread that outlives it, e.g. the main thread).

Besides the calls above the harness records what the page did:
``b.console`` (console API calls as ``(type, text)``), ``b.errors`` (uncaught
exceptions as text) and ``b.dialogs`` (``alert``/``confirm``/``prompt``
dialogs opened, auto-dismissed so they never block; set ``b.prompt_reply = "text"``
to have ``prompt()`` answered with that text instead) and ``b.blocked`` (requests failed
after ``b.block_network()``: an offline page).  ``b.add_init_script(js)``
runs ``js`` in every document before its own scripts (e.g. to stub ``alert``).
"""
from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
import weakref

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
              "/usr/bin/google-chrome-stable")


def chromium_path() -> str | None:
    """Path of a Chromium binary (``$NODEFLAME_CHROMIUM`` first), or None when there is none."""
    env = os.environ.get("NODEFLAME_CHROMIUM")
    for c in ((env,) if env else ()) + CANDIDATES:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


class BrowserError(RuntimeError):
    """The browser could not be started, or a DevTools call failed."""


class JSError(BrowserError):
    """A script evaluated with ``Browser.eval`` threw."""


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the thread that started it dies (Linux
    PR_SET_PDEATHSIG), so that even a test process killed with SIGKILL leaves no browser behind."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except Exception:
        pass


def _kill_group(proc: subprocess.Popen, tmpdir: str | None) -> None:
    """Terminate chromium's process group (it was started as its own session), then remove its profile."""
    try:
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                pass
        if proc is not None:
            # the leader may be gone while renderers/zygotes of its group live on
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 800, *, timeout: float = 30.0,
                 chromium: str | None = None, extra_args: tuple = ()):
        self.width, self.height = int(width), int(height)
        self.timeout = float(timeout)
        self.chromium = chromium or chromium_path()
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        self.tmpdir: str | None = None
        self.ws = None
        self.session: str | None = None
        self.console: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.dialogs: list[tuple[str, str]] = []
        self.blocked: list[str] = []   # URLs failed by block_network()
        self.prompt_reply: str | None = None  # set to answer window.prompt() with this text
        self._events: list[dict] = []
        self._next_id = 0
        self._finalizer = None

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Browser":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "Browser":
        if self.chromium is None:
            raise BrowserError("chromium not found (install Debian's chromium: /usr/bin/chromium)")
        import websocket  # websocket-client, a core dependency

        self.tmpdir = tempfile.mkdtemp(prefix="nodeflame-chromium-")
        log = open(os.path.join(self.tmpdir, "chromium.log"), "wb")
        args = [self.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage",
                "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
                f"--window-size={self.width},{self.height}",
                f"--user-data-dir={self.tmpdir}", "--remote-debugging-port=0",
                *self.extra_args, "about:blank"]
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()
        self._finalizer = weakref.finalize(self, _kill_group, self.proc, self.tmpdir)
        try:
            port, path = self._devtools_port()
            self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=self.timeout,
                                                  suppress_origin=True, http_no_proxy=["127.0.0.1"])
            self._attach()
        except BaseException:
            self.close()
            raise
        return self

    def _devtools_port(self) -> tuple[int, str]:
        f = pathlib.Path(self.tmpdir, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited with {self.proc.returncode} at start-up: {self._log_tail()}")
            try:
                lines = f.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].strip():
                    return int(lines[0]), lines[1].strip()
            except OSError:
                pass
            time.sleep(0.05)
        raise BrowserError(f"chromium wrote no DevToolsActivePort within {self.timeout:g}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return pathlib.Path(self.tmpdir, "chromium.log").read_text(errors="replace")[-800:].strip()
        except OSError:
            return ""

    def _attach(self) -> None:
        targets = self.send("Target.getTargets", session=False)["targetInfos"]
        page = next((t["targetId"] for t in targets if t.get("type") == "page"), None)
        if page is None:
            page = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": page, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime"):
            self.send(f"{domain}.enable")
        self.set_viewport(self.width, self.height)

    def close(self) -> None:
        """Close the connection and kill the browser (idempotent)."""
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass
        if self._finalizer is not None:
            self._finalizer()  # kills the process group and removes the profile, once

    # ------------------------------------------------------------- protocol
    def send(self, method: str, params: dict | None = None, *, session: bool = True,
             timeout: float | None = None) -> dict:
        """One DevTools call; returns its ``result`` or raises BrowserError."""
        if self.ws is None:
            raise BrowserError("browser is not running")
        self._next_id += 1
        mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._recv(deadline, method)
            if reply.get("id") == mid:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}".strip())
                return reply.get("result", {})

    def _recv(self, deadline: float, what: str) -> dict:
        import websocket
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no reply to {what} from chromium")
        self.ws.settimeout(left)
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(f"no reply to {what} from chromium") from None
        except (websocket.WebSocketConnectionClosedException, OSError) as e:
            raise BrowserError(f"connection to chromium lost during {what}: {e}") from None
        msg = json.loads(raw)
        if "method" in msg:
            self._event(msg)
        return msg

    def _event(self, msg: dict) -> None:
        m, p = msg["method"], msg.get("params", {})
        if m == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.console.append((p.get("type", ""), text))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append(d.get("exception", {}).get("description") or d.get("text", ""))
        elif m == "Fetch.requestPaused":
            # block_network(): every request that would leave the machine fails, and is recorded
            self.blocked.append(p.get("request", {}).get("url", ""))
            self._next_id += 1
            self.ws.send(json.dumps({"id": self._next_id, "method": "Fetch.failRequest",
                                     "params": {"requestId": p["requestId"], "errorReason": "BlockedByClient"},
                                     "sessionId": self.session}))
        elif m == "Page.javascriptDialogOpening":
            self.dialogs.append((p.get("type", ""), p.get("message", "")))
            # answer it asynchronously (no reply awaited) so the page never blocks
            self._next_id += 1
            reply = self.prompt_reply if p.get("type") == "prompt" else None
            params = {"accept": False} if reply is None else {"accept": True, "promptText": str(reply)}
            self.ws.send(json.dumps({"id": self._next_id, "method": "Page.handleJavaScriptDialog",
                                     "params": params, "sessionId": self.session}))
        self._events.append(msg)
        del self._events[:-200]

    def _pump(self, seconds: float) -> None:
        """Read events for up to ``seconds``."""
        import websocket
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ws.settimeout(max(end - time.monotonic(), 0.001))
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                return
            if "method" in msg:
                self._event(msg)

    # ------------------------------------------------------------------ API
    def block_network(self) -> None:
        """Fail every http(s) and websocket request of the page from now on (file: and data: URLs
        load); the URLs tried are in ``b.blocked``."""
        self.send("Fetch.enable", {"patterns": [{"urlPattern": "http://*"}, {"urlPattern": "https://*"},
                                                {"urlPattern": "ws://*"}, {"urlPattern": "wss://*"}]})

    def add_init_script(self, js: str) -> None:
        """Run ``js`` at the start of every document loaded from now on, before the page's scripts."""
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": js})

    def open(self, path_or_url, timeout: float | None = None) -> None:
        """Load a file path (made a file:// URL) or a URL and wait for its load event."""
        s = os.fspath(path_or_url)
        if "://" not in s and not s.startswith(("about:", "data:")):
            s = pathlib.Path(s).resolve().as_uri()
        self._events.clear()
        deadline = time.monotonic() + (timeout or self.timeout)
        r = self.send("Page.navigate", {"url": s}, timeout=timeout)
        if r.get("errorText"):
            raise BrowserError(f"cannot open {s}: {r['errorText']}")
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            msg = self._recv(deadline, f"loading {s}")
            if msg.get("method") == "Page.loadEventFired":
                break

    def eval(self, js: str, timeout: float | None = None):
        """Value of the JavaScript expression ``js`` (JSON-serialisable; promises are awaited)."""
        r = self.send("Runtime.evaluate", {"expression": js, "returnByValue": True, "awaitPromise": True,
                                           "userGesture": True}, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise JSError(d.get("exception", {}).get("description") or d.get("text", "script failed"))
        return r.get("result", {}).get("value")

    def wait_for(self, js_condition: str, timeout: float = 10.0, interval: float = 0.05):
        """Evaluate ``js_condition`` until it is truthy; returns its value or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.eval(js_condition)
            if v:
                return v
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout:g}s: {js_condition}")
            self._pump(interval)

    def mouse_move(self, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def click(self, x: float, y: float, button: str = "left", count: int = 1) -> None:
        self.mouse_move(x, y)
        for t in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": t, "x": x, "y": y, "button": button,
                                                   "buttons": 1 if t == "mousePressed" else 0,
                                                   "clickCount": count})

    def key(self, key: str, *, code: str | None = None, ctrl: bool = False, shift: bool = False,
            alt: bool = False, meta: bool = False) -> None:
        """Press and release one key, e.g. ``b.key("f", ctrl=True)`` or ``b.key("Escape")``."""
        mods = (1 if alt else 0) | (2 if ctrl else 0) | (4 if meta else 0) | (8 if shift else 0)
        if code is None:
            code = f"Key{key.upper()}" if len(key) == 1 and key.isalpha() else \
                   f"Digit{key}" if len(key) == 1 and key.isdigit() else key
        vk = ord(key.upper()) if len(key) == 1 else {"Enter": 13, "Escape": 27, "Backspace": 8, "Tab": 9}.get(key, 0)
        base = {"key": key, "code": code, "modifiers": mods, "windowsVirtualKeyCode": vk}
        text = key if len(key) == 1 and not (ctrl or alt or meta) else ""
        self.send("Input.dispatchKeyEvent", {"type": "keyDown" if text else "rawKeyDown", "text": text, **base})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **base})

    def set_viewport(self, width: int, height: int) -> None:
        """Resize the page's viewport (CSS pixels)."""
        self.width, self.height = int(width), int(height)
        self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                         "deviceScaleFactor": 1, "mobile": False})

    def screenshot(self, path=None, full_page: bool = False) -> bytes:
        """PNG of the viewport (or the whole page); written to ``path`` when given."""
        params = {"format": "png"}
        if full_page:
            m = self.send("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m.get("contentSize")
            params["clip"] = {"x": 0, "y": 0, "width": max(size["width"], 1), "height": max(size["height"], 1),
                              "scale": 1}
            params["captureBeyondViewport"] = True
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        if path is not None:
            pathlib.Path(path).write_bytes(data)
        return data
