"""The stap backend: generated SystemTap scripts (parsed and elaborated by the real stap for
node 18-24), constants from the layout, availability on this machine, and the output parse path.

SystemTap's module cannot be built or loaded on machines without a kernel build tree and
module support, so nothing here runs a script in a kernel; what stap can check without one
(pass 1 parse, pass 2 elaboration, pass 3 translation) is checked.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from nodeflame.capture import stap as st
from nodeflame.capture.v8layout import load_layout
from walker_helpers import MAJORS, node_for

STAP = shutil.which("stap")
need_stap = pytest.mark.skipif(STAP is None, reason="systemtap (stap) is not installed: apt-get install systemtap")
REL = os.uname().release
HAVE_BUILD = os.path.exists(f"/lib/modules/{REL}/build/Makefile")
KERNEL_PROBLEM = st._kernel_runtime_problem()


@pytest.fixture(scope="module")
def kbuild(tmp_path_factory):
    """stap -r argument: the real build tree, else a stub holding just what passes 1-3 read
    (.config, include/config/kernel.release, Module.symvers).  The stub cannot build a module."""
    if HAVE_BUILD:
        return []
    d = tmp_path_factory.mktemp("kbuild")
    (d / ".config").write_text("")
    (d / "Module.symvers").write_text("")
    (d / "include" / "config").mkdir(parents=True)
    (d / "include" / "config" / "kernel.release").write_text(REL + "\n")
    return ["-r", str(d)]


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    """{major: (node path, layout, script path, begin-variant script path)}"""
    d = tmp_path_factory.mktemp("stp")
    out = {}
    for major in MAJORS:
        try:
            path = node_for(major)
        except pytest.skip.Exception:
            continue
        lay = load_layout(path)
        s = st.generate_script_for_binary(path, hz=997)
        b = st.generate_script_for_binary(path, hz=997, duration=1, probe_point="begin")
        (d / f"n{major}.stp").write_text(s)
        (d / f"n{major}b.stp").write_text(b)
        out[major] = (path, lay, str(d / f"n{major}.stp"), str(d / f"n{major}b.stp"))
    return out


def _stap(args, timeout=120):
    return subprocess.run([STAP, *args], capture_output=True, text=True, timeout=timeout)


def _defines(script: str) -> dict:
    return {m.group(1): (int(m.group(2), 0), m.group(3)) for m in
            re.finditer(r"^@define (\w+)\s+%\( (-?(?:0x[0-9a-f]+|\d+)) %\)\s+# (.*)$", script, re.M)}


def _body(script: str) -> str:
    return "\n".join(ln for ln in script.splitlines() if not ln.startswith(("#", "@define")))


def _script(scripts, major):
    if major not in scripts:
        pytest.skip(f"node {major} is not available (not cached and cannot be fetched)")
    return scripts[major]


# ----------------------------------------------------------------- stap accepts the scripts
@need_stap
@pytest.mark.parametrize("major", MAJORS)
def test_stap_parses_script(scripts, kbuild, major):
    _, lay, path, _ = _script(scripts, major)
    r = _stap(["-p1", "-x", "1", *kbuild, path])
    assert r.returncode == 0, r.stderr
    # pass 1 prints the parse tree: the sampling probe and every function are in it
    assert "probe perf.sw.cpu_clock.sample(1003009)!,timer.profile{" in r.stdout
    for fn in ("js_frame_sfi", "js_frame_id", "sfi_name", "scope_info_name", "v8_string", "native_id"):
        assert f"function {fn} (" in r.stdout


@need_stap
@pytest.mark.parametrize("major", MAJORS)
def test_stap_elaborates_script(scripts, kbuild, major):
    """Pass 2: the body (functions, types, globals, tapset calls) elaborates for every version;
    the sampling probe resolves only where the kernel offers a profiling timer or perf events."""
    _, lay, path, begin_path = _script(scripts, major)
    r = _stap(["-p2", "-x", "1", *kbuild, begin_path])
    assert r.returncode == 0, r.stderr
    for fn in ("js_frame_id", "sfi_name", "scope_info_name", "v8_string", "seq_chars", "utf8"):
        assert re.search(rf"^{fn}:\w+ \(", r.stdout, re.M), fn       # reachable, so kept
    r = _stap(["-p2", "-x", "1", *kbuild, path])
    if HAVE_BUILD and KERNEL_PROBLEM is None:
        assert r.returncode == 0, r.stderr
    else:
        # honest about this machine: no build tree, so no exported perf/timer hooks to resolve
        assert r.returncode != 0
        assert "while resolving probe point" in r.stderr and "timer" in r.stderr, r.stderr


@need_stap
def test_stap_translates_body(scripts, kbuild):
    """Pass 3 (the module's C source) for one version, with the begin probe standing in."""
    major = next(iter(scripts), None)
    if major is None:
        pytest.skip("no node binary")
    _, lay, _, begin_path = scripts[major]
    r = _stap(["-p3", "-x", "1", *kbuild, begin_path])
    assert r.returncode == 0, r.stderr
    assert "user_int64_error" in r.stdout or "uread" in r.stdout or "_stp_deref" in r.stdout
    assert len(r.stdout.splitlines()) > 1000


# ----------------------------------------------------------------- no hard-coded V8 numbers
def test_constants_come_from_the_layout(scripts):
    if len(scripts) < 2:
        pytest.skip("needs two node versions")
    bodies = {}
    per = {}
    for major, (path, lay, spath, _) in scripts.items():
        text = open(spath).read()
        d = _defines(text)
        per[major] = (lay, d)
        bodies[major] = _body(text)
        checked = 0
        for name, (val, src) in d.items():
            m = re.match(r"v8dbg_(\w+)$", src)
            if m:                                  # the macro names its v8dbg symbol: equal values
                assert lay.consts[m.group(1)] == val, (major, name, src)
                checked += 1
        assert checked >= 30
        assert d["JS_FUNCTION_SHARED"][0] == lay.field("JSFunction", "shared")
        assert d["SFI_NAME_OR_SCOPE_INFO"][0] == lay.field("SharedFunctionInfo", "name_or_scope_info")
        assert d["SFI_TYPE"][0] == lay.type("SharedFunctionInfo", "SHARED_FUNCTION_INFO_TYPE")
        assert d["FRAME_TYPE_MAX"][0] == max(lay.frame_types.values())
        assert d["SMI_SHIFT"][0] == lay.smi_shift
        assert d["SI_VARS"][0] == lay.facts["scopeinfo_vars"]
        assert d["OFF_FP_FUNCTION"][0] == lay["off_fp_function"]
        # the header names what it was generated for
        assert lay.build_id in text and lay.v8_version in text and (lay.node_version or "?") in text
    # one body for every version: all version dependence is in the @define header
    assert len(set(bodies.values())) == 1
    # and the header differs exactly where the layouts do (node 20 vs 24: JSFunction/SFI moved)
    majors = sorted(per)
    a, b = majors[0], majors[-1]
    (la, da), (lb, db) = per[a], per[b]
    differ = [n for n in da if n in db and da[n][0] != db[n][0]]
    assert differ, "two V8 versions with identical constants?"
    for n in differ:
        src = da[n][1]
        m = re.match(r"v8dbg_(\w+)$", src)
        if m and m.group(1) in lb.consts:
            assert la.consts[m.group(1)] != lb.consts[m.group(1)]
    if "20" in per and "24" in per:
        d20, d24 = per["20"][1], per["24"][1]
        for n in ("JS_FUNCTION_SHARED", "SFI_TYPE", "SFI_NAME_OR_SCOPE_INFO", "SFI_SCRIPT", "SI_FLAGS_RAW32",
                  "SI_VARS", "SCOPE_INFO_TYPE", "FRAME_TYPE_MAX"):
            assert d20[n][0] != d24[n][0], n


def test_changed_layout_changes_the_script():
    """A number changed in the layout appears in the script (nothing is a fallback literal)."""
    lay = load_layout(node_for("20"))
    fake = type(lay)(lay.path, "fakebuildid", lay.v8_version, lay.node_version, dict(lay.consts), dict(lay.facts))
    fake.consts["off_fp_function"] = -24
    fake.consts["class_JSFunction__shared__SharedFunctionInfo"] = 40
    fake.facts["scopeinfo_vars"] = 56
    d = _defines(st._render(fake, hz=100, duration=None, pid=None))
    assert d["OFF_FP_FUNCTION"][0] == -24 and d["JS_FUNCTION_SHARED"][0] == 40 and d["SI_VARS"][0] == 56
    fake.facts = {}
    with pytest.raises(Exception, match="not in nodeflame's table"):
        st._render(fake, hz=100, duration=None, pid=None)


def test_script_options():
    path = node_for("20")
    s = st.generate_script_for_binary(path, hz=None, duration=2.5, max_depth=64)
    assert "probe timer.profile {" in s and "probe timer.ms(2500) { exit() }" in s
    assert _defines(s)["MAX_DEPTH"][0] == 64
    defs = st.stap_defines(64)
    assert f"-DMAXSTRINGLEN={defs['MAXSTRINGLEN']}" in s
    assert defs["MAXSTRINGLEN"] >= 64 * 5 + 16
    cmd = st.stap_command("/x.stp", 42, max_depth=64)
    assert cmd[:3] == ["stap", "-x", "42"] and cmd[-1] == "/x.stp"


# ----------------------------------------------------------------- live process
@pytest.fixture
def live_node():
    procs = []

    def start(major):
        p = subprocess.Popen([node_for(major), "-e", "setInterval(() => {}, 1000); console.log('ready')"],
                             stdout=subprocess.PIPE)
        procs.append(p)
        assert p.stdout.readline().strip() == b"ready"
        return p
    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.parametrize("major", ["20", "18"])
def test_generate_script_for_pid(live_node, major):
    p = live_node(major)
    lay = load_layout(os.path.realpath(f"/proc/{p.pid}/exe"))
    s = st.generate_script(p.pid)
    head = "\n".join(s.splitlines()[:6])
    assert f"node {lay.node_version}" in head and lay.node_version.startswith(f"v{major}.")
    assert f"build id {lay.build_id}" in head and len(lay.build_id) == 40
    assert f"target pid {p.pid}" in head
    d = _defines(s)
    addr, val = d["BUILD_CHECK_ADDR"][0], d["BUILD_CHECK_VALUE"][0]
    assert addr and val == lay.field("JSFunction", "shared")
    with open(f"/proc/{p.pid}/mem", "rb") as f:     # what the probe compares: the constant in the target
        f.seek(addr)
        assert int.from_bytes(f.read(4), "little", signed=True) == val


# ----------------------------------------------------------------- availability here
def test_available_gives_the_honest_reason(live_node):
    p = live_node("20")
    why = st.BACKEND.available(p.pid)
    if STAP is None:
        assert why and "apt-get install systemtap" in why
        return
    if os.geteuid() != 0 and st._privilege_problem():
        assert "root" in why
        return
    if not os.path.exists("/proc/modules") and not os.path.exists("/proc/sys/kernel/modules_disabled"):
        assert why and "no loadable-module support" in why and REL in why
    elif not HAVE_BUILD:
        assert why and f"linux-headers-{REL}" in why
    else:
        assert why is None
    if why:
        assert "\n" not in why and why.count(". ") == 0      # one sentence
        from nodeflame.capture import _choose, backends
        df = backends(p.pid)
        row = df[df.backend == "stap"].iloc[0]
        assert not row.available and row.reason == why
        chosen, skipped = _choose("auto", p.pid)
        assert skipped["stap"] == why and all(b.name != "stap" for b in chosen)
        # start() refuses with that reason and leaves nothing behind
        from nodeflame.capture import procutil
        from nodeflame.capture.base import BackendUnavailable, CaptureOptions
        before = set(os.listdir("/tmp"))
        with pytest.raises(BackendUnavailable, match=re.escape(why[:40])):
            st.BACKEND.start(procutil.describe(p.pid), CaptureOptions(hz=100))
        assert not [x for x in set(os.listdir("/tmp")) - before if x.startswith("nodeflame-stap-")]


def test_available_no_process():
    why = st.BACKEND.available(2 ** 22 + 12345)
    assert why and ("no process" in why or "SystemTap" in why or "systemtap" in why)


# ----------------------------------------------------------------- output parse path
def _sample_output(pid, aspace):
    """What the end probe prints (same printf formats), with real pcs of the live process."""
    node = aspace.node_elf
    uv = node.symbol_range("uv_run")[0] + 0x21
    entry = node.symbol_range("Builtins_JSEntry")[0] + 5
    # a JIT pc: any anonymous executable mapping (V8's code space); else skip that frame
    jit = next((r.start + 16 for r in aspace.regions if r.exec and not r.path), None)
    libc = next((r for r in aspace.regions if r.exec and "libc" in os.path.basename(r.path)), None)
    libc_pc = None
    if libc is not None and libc.elf is not None:
        rng = libc.elf.symbol_range("epoll_wait") or libc.elf.symbol_range("__libc_start_main")
        if rng:
            libc_pc = libc.start + (libc.elf.vaddr_to_offset(rng[0]) - libc.offset) + 2
    lines = [
        "# nodeflame-stap samples 12 ids 9",
        "JS:fib /app/walker_lib.js",
        "JS:função /app/walker_lib.js",
        "JS:計算する /app/walker_lib.js",
        "JS:(anonymous) node:internal/timers",
    ]
    if jit:
        lines.append(f"0x{jit:x}")
    lines += [f"0x{entry:x}", f"0x{uv:x}"]
    if libc_pc:
        lines.append(f"0x{libc_pc:x}")
    lines += [f"[thread {pid}]", "7", "",
              "JS:get value /app/a b/c.js", "[truncated]", f"[thread {pid + 1}]", "3", "",
              "0x10", f"[thread {pid}]", "1", ""]
    return "\n".join(lines) + "\n", jit, libc_pc


def test_parse_output_through_the_session(live_node, tmp_path):
    """StapSession.stop() on an output file as the script writes it: symbolised, per thread, validated."""
    from nodeflame.capture import procutil
    from nodeflame.capture.base import CaptureOptions
    from nodeflame.capture.walker.symbols import AddressSpace
    p = live_node("20")
    aspace = AddressSpace(p.pid)
    text, jit, libc_pc = _sample_output(p.pid, aspace)
    tmpdir = tmp_path / "sess"
    tmpdir.mkdir()
    (tmpdir / "out.raw").write_bytes(text.encode("utf-8"))
    (tmpdir / "stap.err").write_text("")
    (tmpdir / "nodeflame.stp").write_text("# script")
    done = subprocess.Popen(["true"])
    done.wait()
    lay = load_layout(os.path.realpath(f"/proc/{p.pid}/exe"))
    sess = st.StapSession(st.BACKEND, procutil.describe(p.pid), CaptureOptions(hz=500), done, str(tmpdir),
                          str(tmpdir / "out.raw"), str(tmpdir / "stap.err"), str(tmpdir / "nodeflame.stp"),
                          lay, aspace)
    prof = sess.stop()
    sess.close()
    assert not tmpdir.exists()                      # close() deletes the temp files
    prof.validate()
    assert prof.total == 11 and prof.meta["stap_samples"] == 12
    assert any("1 of 12 samples were dropped" in w for w in prof.meta["warnings"])
    assert prof.meta["backend"] == "stap" and prof.meta["period_ns"] == 2_000_000
    assert prof.meta["build_id"] == lay.build_id
    fnames = prof.func_labels()
    labels = [fnames[f] for f in prof.frames["func"].to_numpy()]
    sf = prof.stacks.frame.to_numpy()
    sp = prof.stacks.prefix.to_numpy()

    def path(stack):                                 # root-first labels of one stack
        out = []
        while stack >= 0:
            out.append(labels[sf[stack]])
            stack = sp[stack]
        return out[::-1]
    by_thread = {}
    for stack, w, th in zip(prof.samples["stack"], prof.samples["weight"], prof.samples["thread"]):
        by_thread.setdefault(th, []).append((path(stack), w))
    assert set(by_thread) == {"main", f"node {p.pid + 1}" if (p.pid + 1) in procutil.threads(p.pid)
                              else f"thread {p.pid + 1}"}
    main = dict((tuple(k), w) for k, w in by_thread["main"])
    big = next(k for k, w in main.items() if w == 7)
    assert big[-1] == "fib /app/walker_lib.js" and big[-2] == "função /app/walker_lib.js"
    assert big[-3] == "計算する /app/walker_lib.js" and big[-4] == "(anonymous) node:internal/timers"
    nat = list(big[:-4])                             # root-first native part
    assert "Builtins_JSEntry node" in nat and "uv_run node" in nat    # name, module
    assert nat.index("uv_run node") < nat.index("Builtins_JSEntry node")  # root first
    if jit:
        assert "[jit]" in nat
    if libc_pc:
        assert nat[0].endswith(" libc.so.6") and nat[0] != "0x" and nat[0].split()[0] in ("epoll_wait",
                                                                                        "__libc_start_main"), nat
    assert main[("[unknown]",)] == 1
    other = [v for k, v in by_thread.items() if k != "main"][0]
    assert other == [(["[truncated]", "get value /app/a b/c.js"], 3)]
    kinds = dict(zip(prof.funcs.name, prof.funcs.kind))
    assert kinds["fib"] == "js" and kinds["uv_run"] == "native" and kinds["Builtins_JSEntry"] == "builtin"
    assert kinds["(anonymous)"] == "node"
    files = dict(zip(prof.funcs.name, prof.funcs.file))
    assert files["função"] == "/app/walker_lib.js" and files["get value"] == "/app/a b/c.js"


def test_parse_output_errors():
    from nodeflame.frames.errors import FormatError
    with pytest.raises(FormatError, match="no stacks"):
        st.parse_output("# nodeflame-stap samples 0 ids 0\n")
    # without an address space the pcs stay hex, and the reader still takes them
    p = st.parse_output("0x1234\n[thread 9]\n2\n\n", pid=9)
    assert p.total == 2 and list(p.samples.thread) == ["main"]
