"""The explorer as people use it: in a real JupyterLab, in headless Chromium, on a live capture.

One JupyterLab server (from PyPI, the test extra; a free port, a token, a temporary
root, config and runtime directories; killed with its kernels on every path) is
shared by the tests of this module, and one headless Chromium (tests/browser.py)
drives it.  The notebook's kernel captures the demo app (notebooks/demo/app.js,
its CSV parser an npm package) with the walker backend: 40-odd frames deep, 16 of
them native scaffolding from libc to V8's entry trampoline.

- labels: every frame wider than 40 px shows its label inside it, whole or cut to its
  width with a "…" where plotly would hide it (long C++ names), in the default view and
  with every native frame shown;
- clicks: ten clicks on different frames each focus the clicked frame (chart,
  breadcrumb and details pane agree), and ten more made while a cell keeps the
  kernel busy are all applied, in order, once it is free;
- persistence: the notebook saved, closed and reopened without a kernel shows the
  static chart (the SVG flame graph of the text/html fallback); ``jupyter nbconvert
  --to html`` of it shows the chart with every non-file request blocked, is under
  2 MB, and the notebook grew by at most 1 MB per explorer; the same for
  ``nbconvert --execute`` of a notebook (which keeps every widget's state).

JupyterLab exposes its application object to the page (``--LabApp.expose_app_in_browser``):
the tests run JupyterLab's own commands (run all, save, close) and ask the kernel
for the explorer's state through it; every click is a real mouse click.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
browser = pytest.importorskip("browser", reason="tests/browser.py (the headless-Chromium harness) is missing")
# installed, not imported: the server, nbconvert and the kernel import them in processes of their own
# (importing jupyterlab and nbconvert here took ~1.8 CPU-s of every process that collects this file,
# each pytest-xdist worker)
for _name, _why in (("jupyterlab", "jupyterlab (the test extra) is not installed"),
                    ("nbconvert", "nbconvert (the test extra) is not installed"),
                    ("plotly", "plotly (nodeflame[notebook]) is not installed"),
                    ("anywidget", "anywidget (nodeflame[notebook]) is not installed")):
    if importlib.util.find_spec(_name) is None:
        pytest.skip(_why, allow_module_level=True)
if browser.chromium_path() is None:
    pytest.skip("chromium is not installed (/usr/bin/chromium); the JupyterLab tests drive it", allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "notebooks" / "demo" / "app.js"
NODE = shutil.which("node") or "/usr/bin/node"
NB = "explore.ipynb"
CAPTURE_S = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen) -> None:
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            pass


class Lab:
    """A JupyterLab server in a temporary directory; ``url(path)`` carries the token."""

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="nodeflame-lab-"))
        self.root = self.dir / "notebooks"
        self.root.mkdir()
        self.port = _free_port()
        self.token = uuid.uuid4().hex
        self.proc = None

    def start(self, timeout: float = 120.0) -> "Lab":
        env = dict(os.environ)
        for k, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                       ("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                       ("IPYTHONDIR", "ipython")):
            env[k] = str(self.dir / sub)
            (self.dir / sub).mkdir(exist_ok=True)
        env.pop("JUPYTER_PATH", None)
        # no news or update checks (they would reach the network and raise a notification)
        notif = self.dir / "settings" / "@jupyterlab" / "apputils-extension"
        notif.mkdir(parents=True)
        (notif / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        log = open(self.dir / "lab.log", "wb")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                 f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                 f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                 "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                 "--ServerApp.allow_root=True"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"jupyter lab did not answer within {timeout:g}s: {self.log_tail()}")
            time.sleep(0.2)

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self) -> str:
        try:
            return (self.dir / "lab.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        _kill_group(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def lab():
    s = Lab()
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def demo():
    """The demo app running, its process: ``live`` kills it once captured (it spins on a core of
    its own, 30-odd CPU-s over the rest of the module); killed at the end on every path."""
    proc = subprocess.Popen([NODE, str(DEMO)], cwd=str(DEMO.parent), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert json.loads(line)["ready"] == proc.pid, line
        from nodeflame.capture import availability
        why = availability("walker", proc.pid)
        if why:
            pytest.skip(f"the walker cannot capture the demo here: {why}")
        yield proc
    finally:
        _kill_group(proc)


@pytest.fixture(scope="module")
def page():
    with browser.Browser(width=1400, height=1000, timeout=60) as b:
        yield b


# ------------------------------------------------------------------ helpers

APP = "window.jupyterapp"
# the notebook's panel (shell.currentWidget follows the focus, which a headless page may not have)
NOTEBOOK = (f"Array.from({APP}.shell.widgets('main')).find(w => w.context && w.context.path === "
            f"{json.dumps(NB)})")
KERNEL = f"{NOTEBOOK}.sessionContext.session.kernel"


def write_notebook(path: pathlib.Path, cells: list[str]) -> None:
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def open_notebook(b, lab, timeout: float = 120) -> None:
    b.open(lab.url(f"lab/tree/{NB}"), timeout=timeout)
    b.wait_for(f"{APP} && {APP}.shell && {NOTEBOOK} && {NOTEBOOK}.context.isReady", timeout=timeout)


def kernel_idle(b, timeout: float = 120) -> None:
    b.wait_for(f"{NOTEBOOK}.sessionContext.session && {KERNEL} && {KERNEL}.status === 'idle'", timeout=timeout)


def kernel_value(b, expr: str, timeout: float = 120):
    """The value of the Python expression ``expr`` (JSON) in the notebook's kernel."""
    code = json.dumps(f"__import__('json').dumps({expr})")
    r = b.eval(f"""(async () => {{
        const f = {KERNEL}.requestExecute({{code: '', silent: true, store_history: false,
                                            user_expressions: {{v: {code}}}}});
        const reply = await f.done;
        const v = reply.content.user_expressions.v;
        if (v.status !== 'ok') return {{error: v.ename + ': ' + v.evalue}};
        return {{value: v.data['text/plain']}};
    }})()""", timeout=timeout)
    if "error" in r:
        raise AssertionError(f"kernel: {expr}: {r['error']}")
    import ast
    return json.loads(ast.literal_eval(r["value"]))


CHART = ".nodeflame-chart"

# every drawn frame of the explorer's chart: label, box, whether a label is shown, and what is shown
# (the label, or the label cut to the frame's width when plotly would hide it: ``cut``, its box ``tr``)
FRAMES_JS = f"""(() => {{
  const gd = document.querySelector('{CHART} .js-plotly-plot');
  if (!gd) return null;
  const out = [];
  for (const g of gd.querySelectorAll('g.slice')) {{
    const path = g.querySelector('path'); if (!path) continue;
    const r = path.getBoundingClientRect();
    const t = g.querySelector('text');
    const tr = t ? t.getBoundingClientRect() : null;
    const shown = !!t && t.textContent.trim() !== '' && tr.width > 0 && getComputedStyle(t).opacity !== '0'
      && getComputedStyle(t).display !== 'none';
    const d = g.__data__ || {{}};
    const id = d.data && d.data.data ? d.data.data.id : (d.data ? d.data.id : null);
    const cut = !!t && t.hasAttribute('data-nf-label');
    out.push({{id: id, label: t ? (cut ? t.getAttribute('data-nf-label') : t.textContent) : '',
               text: t ? t.textContent : '', cut: cut, x: r.x, y: r.y, w: r.width, h: r.height, shown: shown,
               tx: tr ? tr.x : 0, tw: tr ? tr.width : 0}});
  }}
  return out;
}})()"""


def assert_labels_fit(fr) -> None:
    """Every frame in ``fr`` shows its label, whole or cut to its width ("…" at the end), inside it."""
    hidden = [(round(f["w"]), f["label"]) for f in fr if not f["shown"]]
    assert not hidden, hidden
    for f in fr:
        if f["cut"]:
            assert f["text"].endswith("\u2026") and f["label"].startswith(f["text"][:-1]), f
        assert f["x"] - 0.5 <= f["tx"] and f["tx"] + f["tw"] <= f["x"] + f["w"] + 0.5, f


def frames(b):
    return b.eval(FRAMES_JS) or []


def chart_state(b):
    """(view number, ids, labels, parents, values, level) of the chart as plotly has it now."""
    return b.eval(f"""(() => {{
      const gd = document.querySelector('{CHART} .js-plotly-plot');
      if (!gd || !gd.data || !gd.data[0]) return null;
      const t = gd.data[0], meta = (gd.layout.meta || {{}}).nodeflame || {{}};
      return {{view: meta.view, ids: Array.from(t.ids || []), labels: Array.from(t.labels || []),
               parents: Array.from(t.parents || []), values: Array.from(t.values || []),
               level: gd._fullData && gd._fullData[0] ? (gd._fullData[0].level || '') : null}};
    }})()""")


def crumbs(b):
    return b.eval("""Array.from(document.querySelectorAll('.nodeflame-crumbs button'))
                       .map(x => x.getAttribute('title') || x.textContent)""")


def details_name(b):
    return b.eval("(() => { const d = document.querySelector('.nodeflame-details b'); "
                  "return d ? d.textContent : null; })()")


def scroll_into_view(b, x_id: str) -> dict:
    """Scroll the chart's box so that the frame with plotly id ``x_id`` is in the viewport; its box."""
    return b.eval(f"""(() => {{
      const gd = document.querySelector('{CHART} .js-plotly-plot');
      for (const g of gd.querySelectorAll('g.slice')) {{
        const d = g.__data__ || {{}};
        const id = d.data && d.data.data ? d.data.data.id : (d.data ? d.data.id : null);
        if (id !== {json.dumps(x_id)}) continue;
        g.querySelector('path').scrollIntoView({{block: 'center', inline: 'center'}});
        const r = g.querySelector('path').getBoundingClientRect();
        return {{x: r.x, y: r.y, w: r.width, h: r.height}};
      }}
      return null;
    }})()""")


def focused_on(st, label: str) -> bool:
    """Whether every drawn stack passes through a frame labelled ``label`` (the chart of a focus)."""
    ids, parents, labels, values = st["ids"], st["parents"], st["labels"], st["values"]
    parent = dict(zip(ids, parents))
    lab = dict(zip(ids, labels))
    val = dict(zip(ids, values))
    root = [i for i, p in zip(ids, parents) if p in ("", None)]
    if len(root) != 1:
        return False

    def under_label(i):
        i = parent.get(i)
        while i not in ("", None):
            if lab[i] == label:
                return True
            i = parent.get(i)
        return False
    through = sum(val[i] for i in ids if lab[i] == label and not under_label(i))
    return abs(through - val[root[0]]) <= 1e-6 * max(val[root[0]], 1)


def click_frame(b, fid: str) -> None:
    box = scroll_into_view(b, fid)
    assert box and box["w"] > 0, f"frame {fid} is not drawn"
    b.click(box["x"] + box["w"] / 2, box["y"] + box["h"] / 2)


def click_button(b, selector: str, text: str) -> None:
    """A real click on the button (or checkbox label) under ``selector`` whose text is ``text``."""
    box = b.eval(f"""(() => {{
      for (const x of document.querySelectorAll({json.dumps(selector)})) {{
        if ((x.getAttribute('title') || x.textContent).trim() !== {json.dumps(text)}) continue;
        x.scrollIntoView({{block: 'center'}});
        const r = x.getBoundingClientRect();
        return {{x: r.x, y: r.y, w: r.width, h: r.height}};
      }}
      return null; }})()""")
    assert box, (selector, text)
    b.click(box["x"] + box["w"] / 2, box["y"] + box["h"] / 2)


def wait_view_after(b, view: int, timeout: float = 120) -> dict:
    """The chart once the kernel has drawn a view after ``view`` and the panes have followed."""
    b.wait_for(f"(() => {{ const g = document.querySelector('{CHART} .js-plotly-plot');"
               f" return g && g.layout && g.layout.meta && g.layout.meta.nodeflame.view > {view}; }})()",
               timeout=timeout)
    kernel_idle(b, timeout)
    b._pump(0.3)        # the panes' messages follow the chart's
    return chart_state(b)


def pick_frames(b, n: int, exclude=()) -> list[dict]:
    """``n`` frames of distinct functions (by label), wide enough to click, widest first."""
    seen, out = set(exclude), []
    for f in sorted(frames(b), key=lambda f: -f["w"]):
        lab = f["label"].strip()
        if f["w"] < 40 or f["h"] < 10 or not lab or lab == "all" or lab.startswith("other") or lab in seen:
            continue
        if not f["id"] or not str(f["id"]).startswith("n"):
            continue
        seen.add(lab)
        out.append(f)
        if len(out) == n:
            break
    return out


def assert_focused(b, st, label: str) -> None:
    """Chart, breadcrumb and details pane all show the focus on ``label``."""
    assert st["level"] in ("", "r", None), st["level"]          # plotly drew the root, no zoom of its own
    assert focused_on(st, label), (label, st["labels"][:12])
    last = crumbs(b)[-1]
    assert last == f"focus {label}" or last.startswith(f"focus {label} "), (label, last)
    assert details_name(b) == label, (label, details_name(b))


def blocked_on_fifo(pid: int) -> bool:
    """Whether the process's main thread waits in open() of a FIFO for a writer."""
    try:
        wchan = pathlib.Path(f"/proc/{pid}/wchan").read_text().strip()
        call = pathlib.Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return wchan in ("wait_for_partner", "fifo_open") or (bool(call) and call[0] in ("2", "257")
                                                          and wchan not in ("", "0"))


@pytest.fixture(scope="module")
def live(lab, demo, page):
    """The notebook open in JupyterLab, run: its kernel has captured the demo with the walker
    and shows the explorer (``e``)."""
    b = page
    write_notebook(lab.root / NB, [
        "import nodeflame as nf\n"
        f"p = nf.capture({demo.pid}, duration={CAPTURE_S}, backend='walker', progress=False)\n"
        "print(p.meta['backend'], p.total, int(p.stacks['depth'].max()))",
        "e = p.flame()\ne"])
    open_notebook(b, lab)
    kernel_idle(b)
    b.eval(f"{APP}.commands.execute('notebook:run-all-cells')")
    b.wait_for(f"document.querySelectorAll('{CHART} g.slice').length > 0", timeout=300)
    kernel_idle(b, 300)
    _kill_group(demo)       # captured (the cells have run): nothing needs it any more
    return b


def test_live_capture_in_jupyterlab_labels_and_clicks(lab, live):
    b = live
    backend, total, depth = kernel_value(b, "(p.meta['backend'], int(p.total), int(p.stacks['depth'].max()))")
    assert backend == "walker" and total > 100 and depth >= 30, (backend, total, depth)
    # the static chart shown with the explorer is hidden once the live one has drawn
    b.wait_for("(() => { const s = document.querySelector('.nodeflame-static');"
               " return s && s.closest('.jp-OutputArea-child').style.display === 'none'; })()", timeout=30)

    # (a) labels: the default view (JavaScript only, for a walker capture) and the whole native stack
    assert crumbs(b) == ["all", "JavaScript only"]
    fr = [f for f in frames(b) if f["w"] > 40]
    assert len(fr) >= 8, fr
    assert_labels_fit(fr)
    view = chart_state(b)["view"]
    click_button(b, ".widget-checkbox label", "JavaScript only")
    st = wait_view_after(b, view)
    assert crumbs(b) == ["all"] and kernel_value(b, "e.transforms") == []
    fr = [f for f in frames(b) if f["w"] > 40]
    depth_drawn = kernel_value(b, "int(e.layout_table['depth'].max())")
    assert depth_drawn >= 30 and len(fr) >= 25, (depth_drawn, len(fr))
    assert_labels_fit(fr)     # long native names (v8::internal::..., Builtins_...) in 40-65 px too
    assert any(f["cut"] for f in fr), [f["label"] for f in fr]

    # "collapse packages": the demo's CSV parser (npm package tinyparse) and node's internals
    # become one frame per run, named after them; and back
    view = st["view"]
    click_button(b, ".widget-checkbox label", "collapse packages")
    st = wait_view_after(b, view)
    assert crumbs(b) == ["all", "packages collapsed"]
    labels = set(st["labels"])
    assert {"tinyparse", "node internals"} <= labels and not {"tokenize", "processImmediate"} & labels, labels
    view = st["view"]
    click_button(b, ".widget-checkbox label", "collapse packages")
    st = wait_view_after(b, view)
    assert crumbs(b) == ["all"] and "tokenize" in set(st["labels"])

    # (b) ten clicks on different frames, each focusing the clicked frame; the breadcrumb leads back
    targets = pick_frames(b, 10)
    assert len(targets) == 10, [f["label"] for f in frames(b)]
    for f in targets:
        view = st["view"]
        click_frame(b, f["id"])
        st = wait_view_after(b, view)
        assert_focused(b, st, f["label"].strip())
        view = st["view"]
        click_button(b, ".nodeflame-crumbs button", "all")
        st = wait_view_after(b, view)
        assert crumbs(b) == ["all"]
    log = kernel_value(b, "[c['function'] for c in e.clicks]")
    assert [x.split(" ")[0] for x in log] == [f["label"].strip().split(" ")[0] for f in targets]

    # ... and ten while a cell keeps the kernel busy: none lost, applied in order once it is free.
    # ipykernel 7 handles comm messages while a cell runs Python code (clicks are then applied at
    # once), so the cell here blocks in a C call that holds the GIL, as a long numpy/pandas call
    # does: nothing runs in the kernel until the test opens the FIFO the call waits on
    fifo = lab.dir / "free-the-kernel"
    os.mkfifo(fifo)
    kpid = kernel_value(b, "__import__('os').getpid()")
    code = ("import ctypes\n_libc = ctypes.PyDLL(None)   # PyDLL: the call keeps the GIL\n"
            f"_libc.close(_libc.open({str(fifo).encode()!r}, 0))")
    b.eval(f"{KERNEL}.requestExecute({{code: {json.dumps(code)}}}); true")
    deadline = time.monotonic() + 60
    while not blocked_on_fifo(kpid):
        assert time.monotonic() < deadline, "the kernel never blocked on the FIFO"
        b._pump(0.05)
    before = len(log)
    sent0 = b.eval("globalThis.__nodeflame_clicks || 0")
    targets = pick_frames(b, 10)
    assert len(targets) == 10
    for f in targets:
        click_frame(b, f["id"])
    b._pump(0.3)
    assert blocked_on_fifo(kpid)        # (its 'busy' status may not even have gone out: the GIL is held)
    assert chart_state(b)["view"] == st["view"]                 # nothing redrew: the kernel is blocked
    assert b.eval("globalThis.__nodeflame_clicks || 0") - sent0 == 10
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)              # the kernel's open() returns
    os.close(fd)
    st = wait_view_after(b, st["view"])
    # the kernel applies them one message at a time and may show itself idle between two (under load
    # the log was read after 1 of 10): wait until all ten are in its click log and the chart shows the
    # view it drew last
    deadline = time.monotonic() + 120
    while kernel_value(b, "len(e.clicks)") < before + len(targets):
        if time.monotonic() > deadline:
            break                                              # the assertion below says what is missing
        b._pump(0.1)
    last = kernel_value(b, "e._view_seq")
    b.wait_for(f"(() => {{ const g = document.querySelector('{CHART} .js-plotly-plot');"
               f" return g.layout.meta.nodeflame.view >= {max(st['view'], last)}; }})()", timeout=120)
    kernel_idle(b)
    b._pump(0.3)        # the panes' messages follow the chart's (as in wait_view_after)
    log = kernel_value(b, "[(c['function'], len(c['transforms'])) for c in e.clicks]")
    assert [x[0].split(" ")[0] for x in log[before:]] == [f["label"].strip().split(" ")[0] for f in targets]
    assert all(n == 1 for _f, n in log[before:])            # each focused from the chart it was made on
    st = chart_state(b)
    assert_focused(b, st, targets[-1]["label"].strip())
    assert not [e for e in b.errors if "nodeflame" in e], b.errors


def test_sandwich_and_stack_chart_in_jupyterlab(lab, live):
    """The details pane's "sandwich" button draws the selected function's callers and callees
    (two icicles, the function at both roots) under it, and "stack chart" the walker capture's
    samples in time order (one horizontal bar trace); "close" removes the pane."""
    b = live
    kernel_value(b, "e.reset().selected")
    name, total = kernel_value(b, "(lambda f: (str(e.profile.funcs['name'].iat[f]), int(e.profile.top(None, by='total')"
                                  ".loc[f, 'total'])))(int(e.profile.top(None, by='total').index[3]))")
    kernel_value(b, "e.select(func=int(e.profile.top(None, by='total').index[3])).selected")
    b._pump(0.5)
    plots = ".nodeflame-extra .js-plotly-plot"
    click_button(b, "button", "the selected function's callers above it and callees below it")
    b.wait_for(f"(() => {{ const g = document.querySelector('{plots}'); return g && g.data && g.data.length == 2"
               f" && g.querySelectorAll('g.slice').length > 0; }})()", timeout=120)
    got = b.eval(f"""(() => {{ const g = document.querySelector('{plots}');
        return g.data.map(t => ({{type: t.type, root: t.labels[0], value: t.values[0]}})); }})()""")
    assert got == [{"type": "icicle", "root": name or "(anonymous)", "value": total}] * 2, (got, name, total)
    click_button(b, "button", "samples in time order: x time, y depth (timed captures)")
    b.wait_for(f"(() => {{ const g = document.querySelector('{plots}'); return g && g.data && g.data.length == 1"
               f" && g.data[0].type == 'bar' && g.querySelectorAll('.point').length > 0; }})()", timeout=120)
    kind = kernel_value(b, "e.extra_kind")
    assert kind == "stack chart"
    click_button(b, "button", "close the sandwich / stack chart")
    b.wait_for(f"!document.querySelector('{plots}')", timeout=120)
    assert kernel_value(b, "e.extra_kind") == ""


def test_saved_closed_reopened_without_kernel_and_nbconvert_offline(lab, live):
    """The notebook saved, closed (kernel shut down) and reopened without a kernel shows the static
    chart; nbconvert's HTML of it shows the chart with every network request blocked, under 2 MB;
    the explorer's outputs add at most 1 MB to the notebook."""
    b = live
    # nbconvert --execute of another notebook (checked at the end) needs nothing of this one: it runs
    # meanwhile, in a process of its own
    nb2 = lab.root / "executed.ipynb"
    write_notebook(nb2, ["import nodeflame as nf\n"
                         f"p = nf.read({str(ROOT / 'tests' / 'data' / 'diff_demo' / 'slow0.cpuprofile')!r})\n"
                         "p.flame()"])
    out2 = lab.dir / "executed.html"
    with open(lab.dir / "executed.log", "wb") as log:       # (a pipe unread meanwhile could fill up)
        executing = subprocess.Popen([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute",
                                      str(nb2), "--output", str(out2)], stdout=log, stderr=log)
    try:
        _saved_closed_reopened(lab, b, executing, out2)
    finally:
        if executing.poll() is None:          # the test failed before it waited for it
            executing.kill()
            executing.wait()


def _saved_closed_reopened(lab, b, executing, out2):
    b.eval(f"{NOTEBOOK}.context.save().then(() => true)", timeout=120)
    nb = json.loads((lab.root / NB).read_text())
    outs = nb["cells"][1]["outputs"]
    kinds = [sorted(o.get("data", {})) for o in outs]
    assert kinds == [["text/html", "text/plain"], ["application/vnd.jupyter.widget-view+json", "text/plain"]], kinds
    grown = len(json.dumps(outs)) + len(json.dumps(nb["metadata"].get("widgets", {})))
    assert grown <= 1_000_000, grown                       # one explorer: <= 1 MB
    svg = re.search(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", "".join(outs[0]["data"]["text/html"]))
    import base64
    svg_text = base64.b64decode(svg.group(1)).decode()
    assert "handleRequest" in svg_text and "<text" in svg_text

    # close: kernel shut down, panel disposed
    b.eval(f"(async () => {{ const w = {NOTEBOOK}; await w.sessionContext.shutdown(); w.dispose(); return true; }})()",
           timeout=120)
    deadline = time.monotonic() + 60
    while lab.api("api/kernels"):
        assert time.monotonic() < deadline, lab.api("api/kernels")
        time.sleep(0.2)
    # reopen without a kernel (what "No Kernel" gives): the notebook factory may not start one
    b.eval(f"""(async () => {{
      const f = {APP}.docRegistry.getWidgetFactory('Notebook');
      f._preferKernel = false; f._canStartKernel = false; f._autoStartDefault = false;
      await {APP}.commands.execute('docmanager:open', {{path: {json.dumps(NB)}, factory: 'Notebook'}});
      return true; }})()""", timeout=120)
    b.wait_for(f"{NOTEBOOK} && {NOTEBOOK}.context.isReady", timeout=120)
    img = b.wait_for("""(() => { const i = document.querySelector('.nodeflame-static img');
        if (!i || !i.complete || i.naturalWidth === 0) return null;
        const r = i.getBoundingClientRect(); const out = i.closest('.jp-OutputArea-child');
        return {w: r.width, h: r.height, nw: i.naturalWidth, shown: getComputedStyle(out).display !== 'none'}; })()""",
                     timeout=120)
    assert img["shown"] and img["w"] > 300 and img["h"] > 100, img
    assert not lab.api("api/kernels")                      # no kernel came back
    assert b.eval(f"!{NOTEBOOK}.sessionContext.session") is True

    # nbconvert --to html of the executed notebook: the chart renders offline
    out = lab.dir / "explore.html"
    r = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(lab.root / NB),
                        "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    size = out.stat().st_size
    assert size < 2_000_000, size
    with browser.Browser(width=1300, height=1000, timeout=60) as off:
        off.block_network()
        off.open(out, timeout=120)
        img = off.wait_for("""(() => { const i = document.querySelector('.nodeflame-static img');
            if (!i || !i.complete || i.naturalWidth === 0) return null;
            const r = i.getBoundingClientRect(); return {w: r.width, h: r.height}; })()""", timeout=60)
        assert img["w"] > 300 and img["h"] > 100, img
        # what was blocked is nbconvert's own template (require.js, MathJax), nothing of the chart's
        theirs = re.compile(r"^https://cdnjs\.cloudflare\.com/ajax/libs/(require\.js|mathjax)/")
        assert all(theirs.match(u) for u in off.blocked), off.blocked

        # nbconvert --execute: nbclient keeps every widget's state in the notebook (its HTML then
        # loads the widget manager from a CDN); plotly's front end is no part of that state, so the
        # page stays small, and offline the static chart is what shows
        executing.wait(300)
        assert executing.returncode == 0, (lab.dir / "executed.log").read_text(errors="replace")[-2000:]
        size = out2.stat().st_size
        assert size < 2_000_000, size
        html_text = out2.read_text()
        assert "application/vnd.jupyter.widget-state+json" in html_text      # widget state was kept
        off.blocked.clear()
        off.open(out2, timeout=120)
        img = off.wait_for("""(() => { const i = document.querySelector('.nodeflame-static img');
            if (!i || !i.complete || i.naturalWidth === 0) return null;
            const r = i.getBoundingClientRect(); return {w: r.width, h: r.height}; })()""", timeout=60)
        assert img["w"] > 300 and img["h"] > 100, img
        # blocked: the template's scripts and the widget manager nbconvert adds for saved widget state
        assert all(theirs.match(u) or "@jupyter-widgets/html-manager" in u or "jupyter-js-widgets" in u
                   for u in off.blocked), off.blocked
