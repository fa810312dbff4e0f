"""The ``stap`` backend: a SystemTap script, generated from the target's own V8 layout, walks
the V8 stack in probe context -- the modern equivalent of node-stap's ``profile_node.stp``.

What it does
------------
* :func:`generate_script` reads the ``v8dbg_*`` constants of the binary the
  target runs (:mod:`nodeflame.capture.v8layout`) and writes them into the
  header of a SystemTap script as named ``@define`` macros.  The script body
  is the same text for every node version: it uses only those names (the
  tests check that the body is identical across node 18-24 and that every
  macro equals the layout's value).
* A per-CPU sampling probe (``perf.sw.cpu_clock.sample(period)``, falling
  back to ``timer.profile``), filtered to ``target()`` (``stap -x PID``),
  reads the user registers (``uaddr()``, ``u_register("rbp")``), walks the
  frame-pointer chain up to ``MAX_DEPTH`` frames and classifies each frame:
  a JS frame has a tagged context at ``fp + off_fp_context_or_frame_type``
  and a JSFunction (map instance type in the JSFunction range, whose
  ``shared`` is a SharedFunctionInfo) at ``fp + off_fp_function``; anything
  else (typed V8 frames carry a ``type << 1`` marker there, C++ frames
  anything) is kept as its pc.
* JS frames are named in probe context: SharedFunctionInfo ->
  ``name_or_scope_info`` (a String, or a ScopeInfo whose function-variable /
  inferred-name slots are located with the per-version ScopeInfo facts),
  UncompiledData's inferred name, and the Script's name; strings may be
  sequential one-byte (Latin-1) or two-byte, cons, thin or sliced, and are
  converted to UTF-8 in the script.  Each SFI is decoded once and cached
  (revalidated by its name and script words on every hit).
* Stacks are aggregated in the kernel (``stacks[tid, key] <<< 1``, the key
  a string of small frame ids) and printed in the ``end`` probe in the
  ``raw`` format (frames leaf first, one per line, then the count, then a
  blank line); the root-most line of each stack is ``[thread TID]``.  JS
  frames print as V8 code-event names (``JS:name file``), other frames as
  ``0x<pc>``.
* :func:`parse_output` (what the backend's ``stop()`` uses) turns ``0x``
  lines into ``module`symbol`` from ``/proc/<pid>/maps`` and the ELF symbol
  tables (the walker's :class:`~nodeflame.capture.native.symbols.AddressSpace`)
  and reads the whole output with one call of the ``raw`` reader, which takes
  the ``[thread TID]`` markers into the samples' thread (``threads=True``).

Where SystemTap cannot build and load its kernel module (no loadable-module
support, no kernel build tree), :meth:`StapBackend.available` says so in one
sentence and ``auto`` moves on.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from ...frames.ops import with_meta
from .. import procutil
from ..base import Backend, BackendUnavailable, CaptureError, CaptureOptions, Session, Target, TargetError
from ..v8layout import LayoutError, V8Layout, layout_for_pid, load_layout

__all__ = ["BACKEND", "StapBackend", "generate_script", "generate_script_for_binary", "script_constants",
           "stap_command", "parse_output", "symbolize_output", "MAX_DEPTH"]

SCRIPT_FORMAT = 1
MAX_DEPTH = 256          # frames per stack (leaf side kept; '[truncated]' marks a cut)
MAX_STACKS = 8192        # distinct (thread, stack) keys kept by the kernel map (oldest dropped beyond)
MAX_FRAMES = 16384       # distinct frame ids (functions + native pcs); more become '[unknown]'
MAX_DECODES_PER_SAMPLE = 8   # new SFIs named per sample; a frame over the budget is '[unknown]' once
BUILD_CHECK_TRIES = 200  # samples skipped while the build check's read faults (then: unverified)
MAX_NAME = 200           # bytes of a function name (UTF-8)
MAX_FILE = 300           # bytes of a script name
START_TIMEOUT = 180.0    # s for stap to translate, compile and load the module
STOP_TIMEOUT = 60.0      # s for the end probe to print everything after SIGINT

_THREAD_LINE = re.compile(r"\[thread (\d+)\]\Z")
_HEX_LINE = re.compile(r"0x([0-9a-fA-F]+)\Z")


# ------------------------------------------------------------------ layout -> constants
def _jsfunction_range(lay: V8Layout) -> tuple[int, int]:
    """First and last JSFunction instance types (class constructors etc. are subtypes).

    v8dbg exports only JS_FUNCTION_TYPE (the first); the last is bounded by the
    next exported instance type above it, and by the version fact when present."""
    first = lay.type("JSFunction", "JS_FUNCTION_TYPE")
    above = [v for k, v in lay.consts.items() if k.startswith("type_") and v > first]
    last = (min(above) - 1) if above else first
    fact = lay.facts.get("js_function_last")
    if fact is not None and first <= fact < last:
        last = fact
    return first, last


def _sfi_script_field(lay: V8Layout) -> int:
    for fld in ("script_or_debug_info", "script", "raw_script"):
        if lay.has_field("SharedFunctionInfo", fld):
            return lay.field("SharedFunctionInfo", fld)
    raise LayoutError(f"{lay.path}: no SharedFunctionInfo script field in v8dbg (V8 {lay.v8_version})")


def _uncompiled_range(lay: V8Layout) -> tuple[int, int]:
    ts = sorted(set(lay.types("UncompiledDataWithoutPreparseData") + lay.types("UncompiledDataWithPreparseData")
                    + lay.types("UncompiledDataWithPreparseDataAndJob")
                    + lay.types("UncompiledDataWithoutPreparseDataWithJob")))
    if not ts or ts[-1] - ts[0] != len(ts) - 1:
        return -1, -2      # absent or not contiguous: never matches
    return ts[0], ts[-1]


def script_constants(lay: V8Layout, *, max_depth: int = MAX_DEPTH) -> list[tuple[str, int, str]]:
    """[(macro name, value, where it comes from)] for the script header, in order.

    Every V8 number the script uses is here; nothing else in the body is a V8 offset."""
    lay.check_supported()
    f = lay.facts
    c: list[tuple[str, int, str]] = []

    def k(name, value, src):
        c.append((name, int(value), src))

    def v(name, sym):
        k(name, lay[sym], f"v8dbg_{sym}")

    def fld(name, cls, field):
        key = next(x for x in lay.consts if x.startswith(f"class_{cls}__{field}__")) \
            if lay.has_field(cls, field) else None
        if key is None:
            raise LayoutError(f"{lay.path}: no v8dbg_class_{cls}__{field}__* (V8 {lay.v8_version})")
        k(name, lay.consts[key], f"v8dbg_{key}")

    def fact(name, key, default=None):
        if key in f:
            k(name, int(f[key]), f"V8 {lay.v8_major_minor} fact {key}")
        else:
            k(name, default, f"not used by V8 {lay.v8_major_minor} ({key} absent)")

    # tagging and the frame chain
    v("HEAP_OBJECT_TAG", "HeapObjectTag")
    v("HEAP_OBJECT_TAG_MASK", "HeapObjectTagMask")
    k("SMI_SHIFT", lay.smi_shift, "v8dbg_SmiShiftSize + bits of v8dbg_SmiTagMask")
    v("POINTER_SIZE", "SystemPointerSize")
    v("TAGGED_SIZE", "TaggedSize")
    k("FP_CALLER_FP", 0, "x86-64 frame: saved rbp at [fp]")
    k("FP_CALLER_PC", lay["SystemPointerSize"], "x86-64 frame: return address at [fp + v8dbg_SystemPointerSize]")
    v("OFF_FP_CONTEXT", "off_fp_context_or_frame_type" if "off_fp_context_or_frame_type" in lay.consts
      else "off_fp_context")
    v("OFF_FP_FUNCTION", "off_fp_function")
    k("FRAME_MARKER_SHIFT", lay["SmiTagMask"].bit_length(), "typed frames: marker = type << bits of v8dbg_SmiTagMask")
    k("FRAME_TYPE_MAX", max(lay.frame_types.values()), "max of v8dbg_frametype_*")
    # heap objects
    fld("MAP_OFFSET", "HeapObject", "map")
    fld("MAP_INSTANCE_TYPE", "Map", "instance_type")
    first, last = _jsfunction_range(lay)
    k("JS_FUNCTION_FIRST_TYPE", first, "v8dbg_type_JSFunction__JS_FUNCTION_TYPE")
    k("JS_FUNCTION_LAST_TYPE", last, "next exported instance type above it - 1 (or the version fact)")
    fld("JS_FUNCTION_SHARED", "JSFunction", "shared")
    k("SFI_TYPE", lay.type("SharedFunctionInfo", "SHARED_FUNCTION_INFO_TYPE"),
      "v8dbg_type_SharedFunctionInfo__SHARED_FUNCTION_INFO_TYPE")
    fld("SFI_NAME_OR_SCOPE_INFO", "SharedFunctionInfo", "name_or_scope_info")
    k("SFI_SCRIPT", _sfi_script_field(lay), "v8dbg_class_SharedFunctionInfo__{script_or_debug_info,script}")
    if lay.has_field("SharedFunctionInfo", "function_data"):
        fld("SFI_FUNCTION_DATA", "SharedFunctionInfo", "function_data")
    else:
        k("SFI_FUNCTION_DATA", -1, "no v8dbg_class_SharedFunctionInfo__function_data in this V8")
    ulo, uhi = _uncompiled_range(lay)
    k("UNCOMPILED_DATA_FIRST_TYPE", ulo, "min of v8dbg_type_UncompiledData*")
    k("UNCOMPILED_DATA_LAST_TYPE", uhi, "max of v8dbg_type_UncompiledData*")
    fld("UNCOMPILED_DATA_INFERRED_NAME", "UncompiledData", "inferred_name")
    k("SCOPE_INFO_TYPE", lay.type("ScopeInfo", "SCOPE_INFO_TYPE"), "v8dbg_type_ScopeInfo__SCOPE_INFO_TYPE")
    k("SCRIPT_TYPE", lay.type("Script", "SCRIPT_TYPE"), "v8dbg_type_Script__SCRIPT_TYPE")
    fld("SCRIPT_NAME", "Script", "name")
    # strings
    v("FIRST_NONSTRING_TYPE", "FirstNonstringType")
    v("STRING_REPRESENTATION_MASK", "StringRepresentationMask")
    v("STRING_ENCODING_MASK", "StringEncodingMask")
    v("ONE_BYTE_STRING_TAG", "OneByteStringTag")
    v("SEQ_STRING_TAG", "SeqStringTag")
    v("CONS_STRING_TAG", "ConsStringTag")
    v("THIN_STRING_TAG", "ThinStringTag")
    v("SLICED_STRING_TAG", "SlicedStringTag")
    fld("STRING_LENGTH", "String", "length")
    fld("SEQ_ONE_BYTE_CHARS", "SeqOneByteString", "chars")
    fld("SEQ_TWO_BYTE_CHARS", "SeqTwoByteString", "chars")
    fld("CONS_FIRST", "ConsString", "first")
    fld("CONS_SECOND", "ConsString", "second")
    fld("THIN_ACTUAL", "ThinString", "actual")
    fld("SLICED_PARENT", "SlicedString", "parent")
    fld("SLICED_OFFSET", "SlicedString", "offset")
    # ScopeInfo (not in v8dbg: the per-version facts of v8layout)
    fact("SI_FLAGS", "scopeinfo_flags")
    k("SI_FLAGS_RAW32", 1 if f.get("scopeinfo_flags_raw32") else 0, f"V8 {lay.v8_major_minor} fact scopeinfo_flags_raw32")
    fact("SI_CONTEXT_LOCALS", "scopeinfo_context_locals")
    fact("SI_VARS", "scopeinfo_vars")
    fact("SI_MAX_INLINED_LOCALS", "max_inlined_locals")
    fact("SI_HEADER_POSITION", "scopeinfo_header_position", -1)
    fact("SI_MODULE_SCOPE", "module_scope", -1)
    fact("SF_SCOPE_TYPE_BITS", "sf_scope_type_bits")
    fact("SF_HAS_SAVED_CLASS_VARIABLE", "sf_has_saved_class_variable")
    fact("SF_FUNCTION_VARIABLE", "sf_function_variable")
    k("SF_FUNCTION_VARIABLE_MASK", f.get("sf_function_variable_mask", 3), "ScopeFlags function_variable is a 2-bit field")
    fact("SF_HAS_INFERRED_FUNCTION_NAME", "sf_has_inferred_function_name")
    # limits (ours, not V8's)
    k("MAX_DEPTH", max_depth, "nodeflame: frames per stack")
    k("MAX_FRAME_SIZE", 1 << 20, "nodeflame: largest believable distance between two frame pointers")
    k("MAX_FRAMES", MAX_FRAMES, "nodeflame: distinct frame ids")
    k("MAX_NAME", MAX_NAME, "nodeflame: bytes of a function name")
    k("MAX_FILE", MAX_FILE, "nodeflame: bytes of a script name")
    k("MAX_STRING_LENGTH", 1 << 28, "nodeflame: a longer V8 string length is garbage")
    k("MAX_DECODES_PER_SAMPLE", MAX_DECODES_PER_SAMPLE, "nodeflame: new functions named per sample (the rest next time)")
    k("MAX_STRING_DEPTH", 4, "nodeflame: cons/thin/sliced strings followed")
    k("MAX_CONTEXT_LOCALS", 1 << 20, "nodeflame: a larger ScopeInfo local count is garbage")
    return c


def stap_defines(max_depth: int = MAX_DEPTH) -> dict[str, int | str]:
    """The -D settings the script needs (also listed in its header and in every command line
    nodeflame prints or runs: the module does not work without them)."""
    keylen = max_depth * 5 + 16            # ids below 0x10000: <=4 hex digits + ';' per frame
    strlen = max(1024, 1 << (keylen - 1).bit_length())
    return {
        "MAXSTRINGLEN": strlen,
        # per sample: ~25 statements per frame, plus naming up to MAX_DECODES_PER_SAMPLE new functions
        "MAXACTION": 40 * max_depth + 5000 * MAX_DECODES_PER_SAMPLE + 10000,
        "MAXACTION_INTERRUPTIBLE": 200_000_000,     # the end probe prints every stack
        "MAXMAPENTRIES": MAX_FRAMES,
        "MAXNESTING": 16,
        "MAXSKIPPED": 100_000,                      # probes skipped on lock contention before stap gives up
        # cycles per STP_OVERLOAD_INTERVAL (1e9 cycles): 20 %.  A long long literal: the runtime
        # prints it with %lld, and pass 4 fails with -Werror=format on a plain int
        "STP_OVERLOAD_THRESHOLD": "200000000LL",
    }


def _body() -> str:
    """The script body, package data (sampler.stp) without its leading comment block."""
    with open(os.path.join(os.path.dirname(__file__), "sampler.stp"), encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    k = 0
    while k < len(lines) and lines[k].startswith("//"):
        k += 1
    return "\n" + "\n".join(lines[k:])


_BODY = _body()


MODULE_ID_PREFIX = "nodeflame-stap-module"
_MODULE_ID = re.compile(rb"nodeflame-stap-module format=(\d+) build-id=([0-9a-f]*) node=(\S*) v8=(\S*) hz=(\d+)")


def module_id(lay: V8Layout, hz: int | None = 1000) -> str:
    """The string a script (and so its compiled module) carries to say which node build it is for
    (and its sampling rate; hz=0: the kernel's timer.profile)."""
    return (f"{MODULE_ID_PREFIX} format={SCRIPT_FORMAT} build-id={lay.build_id or ''} "
            f"node={lay.node_version or '?'} v8={lay.v8_version} hz={int(hz or 0)}")


def _probe_point(hz: int | None) -> str:
    if hz is None:
        return "timer.profile"
    period = max(1, round(1e9 / hz))
    return f"perf.sw.cpu_clock.sample({period}) !, timer.profile"


def _build_check(lay: V8Layout, pid: int | None) -> tuple[int, int]:
    """(runtime address, value) of one nonzero v8dbg constant in the target, or (0, 0) when unknown.

    ET_EXEC binaries (official node builds) have it at its symbol address; a
    PIE binary needs the pid's mappings to place it."""
    try:
        from ..native.elf import STT_OBJECT, read_elf
        info = read_elf(lay.path if pid is None else f"/proc/{pid}/exe", all_syms=True)
        name = "v8dbg_class_JSFunction__shared__"
        for j in info.symbols_with_prefix(name.encode()):
            s = info.syms[j]
            if (int(s["info"]) & 0xF) != STT_OBJECT:
                continue
            sym = info.name_at(int(s["name"]))
            if not sym.startswith(name) or lay.get(sym[6:]) in (None, 0):
                continue
            va = int(s["value"])
            if info.etype == "ET_EXEC":
                return va, lay[sym[6:]]
            if pid is None:
                return 0, 0
            off = info.vaddr_to_offset(va)
            from ..native.symbols import read_maps
            exe = os.path.realpath(f"/proc/{pid}/exe")
            for r in read_maps(pid):
                if r.path == exe and r.offset <= off < r.offset + (r.end - r.start):
                    return r.start + off - r.offset, lay[sym[6:]]
            return 0, 0
    except Exception:
        return 0, 0
    return 0, 0


#: guru mode (``stap -g``, ``backend_options={"guru": True}``): user memory is read with the kernel's
#: copy_from_user_nofault(), which works from any probe context, instead of the tapset's user_*_error()
#: readers (which systemtap 4.8 refuses outside task context on kernels without user_addr_max()).
#: Embedded C is what guru mode allows; it is never chosen silently.
_GURU_READERS = r"""
%{
#include <linux/uaccess.h>
%}
# nodeflame guru-mode reader: n bytes (1-8) at addr in the current task, sign-extended when sgn
function nf_uread:long (addr:long, n:long, sgn:long) %{ /* pure */
  u64 v = 0;
  unsigned long a = (unsigned long) STAP_ARG_addr;
  int n = (int) STAP_ARG_n;
  if (n < 1 || n > 8 || copy_from_user_nofault(&v, (const void __user *) a, n))
    STAP_ERROR("nodeflame: user read fault at 0x%lx", a);
  if (STAP_ARG_sgn && n < 8)
    v = (u64) (((s64) (v << (64 - 8 * n))) >> (64 - 8 * n));
  STAP_RETURN(v);
%}
"""
_GURU_NAMES = {"user_int64_error(": "nf_uread8s(", "user_int_error(": "nf_uread4s(",
               "user_uint32_error(": "nf_uread4u(", "user_uint16_error(": "nf_uread2u(",
               "user_uint8_error(": "nf_uread1u("}
_GURU_WRAPPERS = "\n".join(
    f"function {new[:-1]}:long (a:long) {{ return nf_uread(a, {new[8]}, {1 if new[9] == 's' else 0}) }}"
    for new in _GURU_NAMES.values())


def _render(lay: V8Layout, *, hz: int | None, duration: float | None, pid: int | None,
            max_depth: int = MAX_DEPTH, probe_point: str | None = None, guru: bool = False) -> str:
    consts = script_constants(lay, max_depth=max_depth)
    chk_addr, chk_val = _build_check(lay, pid)
    head = [
        "#!/usr/bin/env stap",
        f"# nodeflame stap script (format {SCRIPT_FORMAT}): V8 stack sampler, generated from the binary's v8dbg_* symbols",
        f"# node {lay.node_version or '?'}  V8 {lay.v8_version}  build id {lay.build_id}",
        f"# binary {lay.path}" + (f"  (target pid {pid})" if pid is not None else ""),
        f"# V8 facts not in v8dbg (ScopeInfo layout, ...) for V8 {lay.v8_major_minor}: "
        + (f"verified on {lay.facts['verified']}" if lay.facts.get("verified", "TODO") != "TODO"
           else "not yet marked verified in nodeflame's v8layout table"),
        "# run as root (or stapdev): " + shell_command(stap_command("THIS.stp", pid if pid is not None else "PID",
                                                                   max_depth=max_depth)),
        "# output: raw stacks (leaf first, '[thread TID]' as the root line, then the count, then a blank line);",
        "#   JS frames as 'JS:name script', other frames as 0x<pc> (nodeflame symbolises them from /proc/PID/maps)",
        "",
        "# ---- constants: every V8 number the body uses (from the layout of this binary) ----",
    ]
    w = max(len(n) for n, _, _ in consts)
    for n, v, src in consts:
        head.append(f"@define {n.ljust(w)} %( {v} %)  # {src}")
    head.append(f"@define {'MAX_STACKS'.ljust(w)} %( {MAX_STACKS} %)  # nodeflame: distinct stacks kept")
    head.append(f"@define {'BUILD_CHECK_ADDR'.ljust(w)} %( {chk_addr:#x} %)  # a v8dbg constant in the target"
                + (" (0: not checked)" if not chk_addr else ""))
    head.append(f"@define {'BUILD_CHECK_VALUE'.ljust(w)} %( {chk_val} %)  # ... and its value")
    head.append(f"@define {'BUILD_CHECK_TRIES'.ljust(w)} %( {BUILD_CHECK_TRIES} %)  # nodeflame: samples "
                "skipped while the constant's page is not resident, then the capture goes on unverified")
    head.append(f"@define {'MODULE_ID'.ljust(w)} %( \"{module_id(lay, hz)}\" %)  # what a prebuilt module was built for")
    pp = probe_point or _probe_point(hz)
    body = _BODY.replace("@PROBE_POINT", pp)
    if duration is not None:
        ms = max(1, round(float(duration) * 1000))
        body = body.replace("@DURATION_PROBE", f"probe timer.ms({ms}) {{ exit() }}")
    else:
        body = body.replace("@DURATION_PROBE", "")
    if guru:
        for old, new in _GURU_NAMES.items():
            body = body.replace(old, new)
        body = _GURU_READERS + _GURU_WRAPPERS + "\n" + body
        head.insert(6, "# guru mode: run with stap -g (user memory read with copy_from_user_nofault)")
    return "\n".join(head) + "\n" + body


def generate_script_for_binary(node_path, *, hz: int | None = 1000, duration: float | None = None,
                               max_depth: int = MAX_DEPTH, probe_point: str | None = None,
                               guru: bool = False) -> str:
    """The SystemTap script for processes running the node binary at ``node_path``.

    ``hz`` None samples at the kernel's HZ (``timer.profile``); ``probe_point``
    replaces the sampling probe (the tests use ``begin`` to elaborate the body
    where no sampling probe can resolve)."""
    lay = load_layout(str(node_path))
    return _render(lay, hz=hz, duration=duration, pid=None, max_depth=max_depth, probe_point=probe_point, guru=guru)


def generate_script(pid: int, *, hz: int | None = 1000, duration: float | None = None,
                    max_depth: int = MAX_DEPTH, guru: bool = False) -> str:
    """The SystemTap script for process ``pid``, from the layout of the binary it runs."""
    try:
        lay = layout_for_pid(int(pid))
    except LayoutError as e:
        raise TargetError(str(e)) from None
    return _render(lay, hz=hz, duration=duration, pid=int(pid), max_depth=max_depth, guru=guru)


def stap_command(script_path: str, pid: int | str, *, max_depth: int = MAX_DEPTH, stap: str = "stap",
                 guru: bool = False) -> list[str]:
    """The stap command that runs the script on ``pid``, with every -D the script needs."""
    cmd = [stap] + (["-g"] if guru else []) + ["-x", str(pid)]
    cmd += [f"-D{k}={v}" for k, v in stap_defines(max_depth).items()]
    cmd += ["-s", "32", script_path]
    return cmd


def shell_command(cmd) -> str:
    import shlex
    return shlex.join(str(c) for c in cmd)


# ------------------------------------------------------------------ output -> Profile
def symbolize_output(text: str, aspace=None) -> str:
    """Replace the ``0x<pc>`` lines of the script's output by ``module`symbol`` names.

    ``aspace``: a :class:`~nodeflame.capture.native.symbols.AddressSpace` of the
    target (None: addresses stay as they are).  JIT code without a JS function
    becomes ``[jit]``, an address outside every mapping ``[unknown]``."""
    if aspace is None:
        return text
    from ..native.symbols import JIT, demangle, clean_native
    cache: dict = {}
    raw_names: dict = {}
    out = []
    for line in text.split("\n"):
        m = _HEX_LINE.match(line)
        if m is None:
            out.append(line)
            continue
        pc = int(m.group(1), 16)
        lab = cache.get(pc)
        if lab is None:
            name, path, _ = aspace.symbolize(pc)
            mod = os.path.basename(path) if path and not path.startswith("[") else ""
            if name:
                raw_names.setdefault(name, None)
                lab = (mod, name)
            elif aspace.classify(pc) == JIT:
                lab = ("", "[jit]")
            elif mod:
                lab = (mod, f"{pc:#x}")
            else:
                lab = ("", "[unknown]")
            cache[pc] = lab
        out.append(lab)
    dem = demangle(list(raw_names))
    res = []
    for x in out:
        if isinstance(x, tuple):
            mod, name = x
            if name in dem:
                # '(anonymous namespace)' would be cut by the raw reader's C++-argument rule
                name = clean_native(dem[name]).replace("(anonymous namespace)", "{anonymous}")
            res.append(f"{mod}`{name}" if mod else name)
        else:
            res.append(x)
    return "\n".join(res)


def offline_address_space(maps_text: str, exe: str, sysroot: str = "/"):
    """An address space for :func:`parse_output` from a saved ``/proc/PID/maps`` (the process may be
    gone, or on another machine): ``exe`` is the node binary's path in those maps, and its files are
    read under ``sysroot`` (the machine's root filesystem, e.g. a guest tree)."""
    from ..native import symbols as sy

    class _Offline(sy.AddressSpace):
        def __init__(self):
            self.pid = 0
            self.exe = exe
            self.refresh()

        def refresh(self):
            regions = []
            for line in maps_text.splitlines():
                parts = line.split(None, 5)
                if len(parts) < 5:
                    continue
                a, b = parts[0].split("-")
                path = parts[5].strip() if len(parts) > 5 else ""
                regions.append(sy.Region(int(a, 16), int(b, 16), parts[1], int(parts[2], 16), path,
                                         (parts[3], int(parts[4]))))
            node_elf = None
            for r in regions:
                if not r.path or r.path.startswith("[") or r.path.endswith(" (deleted)"):
                    continue
                r.is_node = r.path == exe
                if r.exec or r.is_node:
                    r.elf = sy._elf_for(os.path.join(sysroot, r.path.lstrip("/")), 0)
                    if r.is_node and r.elf is not None:
                        node_elf = r.elf
            builtins = None
            if node_elf is not None:
                ix = node_elf.symbols_with_prefix(b"Builtins_")
                if len(ix):
                    sv = node_elf.syms[ix]
                    builtins = (int(sv["value"].min()), int((sv["value"] + sv["size"]).max()))
            self.node_elf, self.builtins, self.regions = node_elf, builtins, regions
            self._maps = (regions, [r.start for r in regions])
            self._restore_rt = None
            self.cls_cache = {}
            self._fstart = {}

    return _Offline()


def _has_stacks(text: str) -> bool:
    """Does the script's output hold a stack with a frame besides its '[thread TID]' line?"""
    block, last = 0, ""
    for line in text.split("\n"):
        s = line.strip()
        if not s or (s.startswith("#") and not block):
            block = 0
            continue
        if s.isdigit() and block:
            if block > 1 or not _THREAD_LINE.match(last):
                return True
            block = 0
            continue
        block += 1
        last = s
    return False


def _thread_ids(text: str) -> list:
    """The tids of the '[thread TID]' lines of the script's output, in order of first appearance."""
    return list(dict.fromkeys(int(t) for t in _THREAD_LINES.findall(text)))


_THREAD_LINES = re.compile(r"^[ \t]*\[thread ([0-9]{1,18})\][ \t\r]*$", re.M)


def parse_output(text: str, *, pid: int | None = None, aspace=None, thread_names: dict | None = None,
                 source: str = "<stap>"):
    """The Profile of the script's output: native pcs symbolised, one thread per ``[thread TID]``.

    ``thread_names``: {tid: name}; the default names the thread whose tid is
    ``pid`` ``main`` and the others ``thread TID``.  The whole output is one
    call of the ``raw`` reader with ``threads=True`` (it reads the markers)."""
    from ...frames.errors import FormatError
    from ...frames.readers.raw import read_raw
    text = symbolize_output(text, aspace)
    given = dict(thread_names or {})
    tids = _thread_ids(text) + [-1]              # -1: stacks without a marker
    tnames = []
    for tid in tids:
        if tid in given:
            tnames.append(given[tid])
        elif pid is not None and tid == pid:
            tnames.append("main")
        else:
            tnames.append(f"thread {tid}" if tid >= 0 else "main")
    seen: dict = {}
    for i, n in enumerate(tnames):               # two threads with one name: keep them apart
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            tnames[i] = f"{n} #{seen[n]}"
    names = dict(zip(tids, tnames))
    try:
        prof = read_raw(text.encode("utf-8", "surrogateescape"), source, threads=True, thread_names=names)
    except FormatError as e:
        if "no stacks" not in str(e):
            raise
        prof = None
    if prof is None or not len(prof.samples):
        raise FormatError("the stap script printed no stacks", source=source,
                          expected="raw stacks ending in '[thread TID]' and a count")
    tnames = [names[t] for t in dict.fromkeys(prof.samples["tid"].tolist())]
    header = [ln.strip() for ln in text.split("\n", 8)[:8] if ln.strip().startswith("#")]
    samples = None
    for h in header:
        m = re.match(r"# nodeflame-stap samples (\d+)", h)
        if m:
            samples = int(m.group(1))
    md = {"source_format": "stap", "threads": tnames}
    warnings = []
    for h in header:
        m = re.match(r"# nodeflame-stap build-check unverified faults (\d+)", h)
        if m:
            warnings.append(f"the stap script could not verify that the target runs the node binary it was "
                            f"generated for (the checked constant's page was not resident in {m.group(1)} samples)")
        m = _MODULE_ID.search(h.encode("utf-8", "replace"))
        if m:
            md["stap_module_build_id"] = m.group(2).decode()
    if samples is not None:
        md["stap_samples"] = samples
        kept = int(prof.samples["weight"].sum()) if "weight" in prof.samples else prof.total
        if kept < samples:
            warnings.append(f"{samples - kept} of {samples} samples were dropped by the stap script "
                            f"(more than {MAX_STACKS} distinct stacks)")
    return with_meta(prof, warnings=warnings, **md)


# ------------------------------------------------------------------ prebuilt modules
def module_info(path) -> dict:
    """What a compiled nodeflame stap module says about itself: ``name`` and ``vermagic`` (its
    .modinfo: the kernel release it loads into), and the node build it was generated for
    (``build_id``, ``node``, ``v8``, ``format``: the script's MODULE_ID string, compiled in)."""
    with open(path, "rb") as f:
        data = f.read()
    info: dict = {"path": str(path)}
    for key in (b"vermagic", b"name"):
        m = re.search(rb"(?:^|\0)" + key + rb"=([^\0]*)\0", data)
        if m:
            info[key.decode()] = m.group(1).decode("utf-8", "replace")
    if "vermagic" in info:
        info["kernel_release"] = info["vermagic"].split()[0]
    m = _MODULE_ID.search(data)
    if m:
        info.update(format=int(m.group(1)), build_id=m.group(2).decode(), node=m.group(3).decode(),
                    v8=m.group(4).decode(), hz=int(m.group(5)))
    return info


def module_problem(path, pid: int | None = None, *, release: str | None = None) -> str | None:
    """None when the module at ``path`` can run here (on ``pid``), else one sentence saying why not."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return f"stap module {path} does not exist"
    try:
        info = module_info(path)
    except OSError as e:
        return f"cannot read stap module {path}: {e}"
    if "build_id" not in info:
        return (f"{path} is not a module nodeflame built (no {MODULE_ID_PREFIX} string in it): build one with "
                "nodeflame stap-script --pid PID --build-for KERNEL_RELEASE -o NAME.ko")
    if info["format"] != SCRIPT_FORMAT:
        return (f"{path} was built by a nodeflame with stap script format {info['format']}, this one reads format "
                f"{SCRIPT_FORMAT}: rebuild it with nodeflame stap-script --build-for")
    rel = release or os.uname().release
    if info.get("kernel_release") and info["kernel_release"] != rel:
        return (f"{path} was built for kernel {info['kernel_release']}, but this machine runs {rel}: build it for "
                f"this kernel with nodeflame stap-script --pid PID --build-for {rel} -o NAME.ko")
    if pid is not None:
        try:
            lay = layout_for_pid(pid)
        except LayoutError as e:
            return str(e)
        if info["build_id"] != (lay.build_id or ""):
            return (f"{os.path.basename(path)} was built for another node binary (node {info['node']}, build id "
                    f"{info['build_id'] or '?'}), but process {pid} runs {lay.path} (node {lay.node_version or '?'}, "
                    f"build id {lay.build_id or '?'}): its V8 offsets would be wrong, so it is refused; build a "
                    f"module for this binary with nodeflame stap-script --pid {pid} --build-for KERNEL_RELEASE "
                    "-o NAME.ko")
    return None


def _module_name(output) -> str:
    base = os.path.basename(os.fspath(output))
    if base.endswith(".ko"):
        base = base[:-3]
    name = re.sub(r"[^A-Za-z0-9_]", "_", base) or "nodeflame"
    if name[0].isdigit():
        name = "m_" + name
    return name[:55]


def build_module(output, *, kernel_release: str, pid: int | None = None, node: str | None = None,
                 sysroot: str | None = None, hz: int | None = 1000, max_depth: int = MAX_DEPTH,
                 guru: bool = False, stap: str = "stap", timeout: float = 1800.0, log=None,
                 defines: dict | None = None) -> dict:
    """Compile the script for ``pid`` (or the binary ``node``) into a kernel module for
    ``kernel_release`` with ``stap -r KERNEL_RELEASE -p4``: a module built once, elsewhere, loaded on
    the target machine with staprun (``capture(..., backend_options={"module": path})``).

    ``sysroot``: a root filesystem of the target machine (its kernel headers, systemtap and gcc: the
    toolchain its kernel was built with); stap runs in it with chroot, in a private mount namespace
    (``unshare``: /proc, /dev and a /tmp are mounted there and vanish with it).  Needs root.
    Without it, the host's own stap builds, which needs the target kernel's build tree here
    (/lib/modules/KERNEL_RELEASE/build).  ``defines``: -D settings that replace or add to
    :func:`stap_defines` (for example ``STP_OVERLOAD_THRESHOLD`` for a guest under emulation, whose
    probes are charged the host's time while its vCPU is descheduled).  Returns :func:`module_info`
    of the module written."""
    if (pid is None) == (node is None):
        raise ValueError("build_module needs pid or node (one of them)")
    script = (generate_script(pid, hz=hz, max_depth=max_depth, guru=guru) if pid is not None else
              generate_script_for_binary(node, hz=hz, max_depth=max_depth, guru=guru))
    name = _module_name(output)
    cmd_tail = ["-r", kernel_release, "-p4", "-m", name] + (["-g"] if guru else [])
    cmd_tail += [f"-D{k}={v}" for k, v in {**stap_defines(max_depth), **(defines or {})}.items()]
    t0 = time.monotonic()
    if sysroot:
        if os.geteuid() != 0:
            raise CaptureError("--sysroot builds the module in a chroot, which needs root")
        sysroot = os.path.abspath(sysroot)
        if not os.path.exists(os.path.join(sysroot, "usr/bin/stap")):
            raise CaptureError(f"{sysroot} has no usr/bin/stap: install systemtap in the target's root filesystem")
        if not os.path.exists(os.path.join(sysroot, "lib/modules", kernel_release, "build")):
            raise CaptureError(f"{sysroot} has no lib/modules/{kernel_release}/build: install "
                               f"linux-headers-{kernel_release} in it")
        work = tempfile.mkdtemp(prefix="nodeflame-build-", dir=os.path.join(sysroot, "tmp"))
        inner = "/tmp/" + os.path.basename(work)
        try:
            with open(os.path.join(work, "nodeflame.stp"), "w", encoding="utf-8") as f:
                f.write(script)
            import shlex
            stap_cmd = shlex.join(["stap", *cmd_tail, "nodeflame.stp"])
            sh = ("set -e; mount -t proc proc \"$R/proc\"; mount --rbind /dev \"$R/dev\"; "
                  "mount -t tmpfs tmpfs \"$R/var/tmp\"; "
                  f"exec chroot \"$R\" /bin/sh -c 'cd {inner} && HOME={inner} {stap_cmd}'")
            r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", sh],
                               env={**os.environ, "R": sysroot, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                               capture_output=True, text=True, timeout=timeout)
            built = os.path.join(work, name + ".ko")
            if r.returncode != 0 or not os.path.exists(built):
                raise CaptureError(f"stap -p4 in {sysroot} failed (status {r.returncode}): "
                                   f"{(r.stderr or r.stdout).strip()[-1500:] or 'no message'}")
            shutil.copyfile(built, output)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    else:
        if shutil.which(stap) is None:
            raise CaptureError("systemtap is not installed: apt-get install systemtap (or build in the "
                               "target's root filesystem with --sysroot DIR)")
        work = tempfile.mkdtemp(prefix="nodeflame-build-")
        try:
            with open(os.path.join(work, "nodeflame.stp"), "w", encoding="utf-8") as f:
                f.write(script)
            r = subprocess.run([stap, *cmd_tail, "nodeflame.stp"], cwd=work, capture_output=True, text=True,
                               timeout=timeout)
            built = os.path.join(work, name + ".ko")
            if r.returncode != 0 or not os.path.exists(built):
                raise CaptureError(f"stap -p4 failed (status {r.returncode}): "
                                   f"{(r.stderr or r.stdout).strip()[-1500:] or 'no message'}")
            shutil.copyfile(built, output)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    info = module_info(output)
    info["build_seconds"] = round(time.monotonic() - t0, 1)
    return info


def staprun_command(module, pid: int, out_path: str, *, build_check_addr: int = 0,
                    staprun: str = "staprun") -> list[str]:
    """staprun running a prebuilt module on ``pid`` (-D settings are compiled into the module;
    -b is stap's -s buffer size; build_check_addr places the build check in this process)."""
    return [staprun, "-x", str(int(pid)), "-b", "32", "-o", out_path, os.fspath(module),
            f"build_check_addr={int(build_check_addr)}"]


# ------------------------------------------------------------------ backend
def _kernel_runtime_problem() -> str | None:
    rel = os.uname().release
    why = _module_load_problem()
    if why:
        return why
    build = f"/lib/modules/{rel}/build"
    if not os.path.exists(os.path.join(build, "Makefile")):
        return (f"SystemTap cannot build its kernel module: no kernel build tree for {rel} "
                f"({build}/Makefile is missing): apt-get install linux-headers-{rel}")
    return None


def _header_roots(build: str, sysroot: str = "/") -> list[str]:
    """The kernel header trees of a build dir: itself, its source tree (Debian splits the headers
    into -amd64 and -common: /lib/modules/REL/source, or the Makefile's 'include .../Makefile')."""
    roots = [build]
    src = os.path.join(os.path.dirname(build), "source")
    if os.path.isdir(src):
        roots.append(src)
    try:
        with open(os.path.join(build, "Makefile"), errors="replace") as f:
            for m in re.finditer(r"^include\s+(\S+)/Makefile\s*$", f.read(), re.M):
                roots.append(os.path.join(sysroot, m.group(1).lstrip("/")))
    except OSError:
        pass
    return roots


def _grep(paths, pattern: str) -> bool | None:
    """True/False: whether the first existing file of ``paths`` matches; None when none exists."""
    for p in paths:
        try:
            with open(p, errors="replace") as f:
                return re.search(pattern, f.read()) is not None
        except OSError:
            continue
    return None


#: systemtap runtime defects nodeflame knows, by what the runtime's source and the kernel's headers say
#: (not by version numbers: a distribution's patched runtime is judged by its code)
KNOWN_DEFECTS = {
    "uprobe_unregister": (
        "systemtap's runtime cannot load any module on this kernel: Linux 6.12 split uprobe_unregister() into "
        "uprobe_unregister_nosync()/_sync() and the runtime's transport.c refuses to load when it cannot resolve "
        "it (\"Can't resolve uprobe_unregister!\"; Debian 13's systemtap 5.1)",
        "install systemtap 5.2 or later, or make that lookup a warning in "
        "{runtime}/transport/transport.c (nodeflame's tests/vm/build-guest.sh shows the change; our script "
        "uses no uprobes)", False),
    "task_work_cancel_func": (
        "systemtap's runtime cannot compile any module for this kernel: its stp_task_work.c predates "
        "task_work_cancel_func() (the stable kernels renamed task_work_cancel; Debian 12's systemtap 4.8 on "
        "6.1.1xx), so pass 4 fails with an incompatible pointer type",
        "install systemtap 5.1 or later (Debian 13's, or bookworm-backports), or build the module for this "
        "kernel elsewhere (nodeflame stap-script --build-for {release} --sysroot DIR) and run it with "
        "--stap-module", False),
    "user_addr_max": (
        "systemtap's runtime refuses every user-memory read from a sampling probe on this kernel: its "
        "lookup_bad_addr_user() in linux/addr-map.c needs user_addr_max(), which this kernel no longer has, and "
        "has no TASK_SIZE_MAX fallback (systemtap 4.8), so every JS frame would be [unknown]",
        "install systemtap 5.1 or later, or opt in to guru mode (backend_options={{\"guru\": True}}: stap -g, "
        "the script reads user memory with copy_from_user_nofault)", True),
}


def runtime_defects(release: str | None = None, *, sysroot: str = "/") -> list[tuple[str, str, bool]]:
    """[(key, 'what: fix' sentence, guru mode avoids it)] of KNOWN_DEFECTS that the systemtap runtime
    of ``sysroot`` (/usr/share/systemtap/runtime) has for kernel ``release`` (its headers in
    ``sysroot``/lib/modules/RELEASE/build)."""
    release = release or os.uname().release
    build = os.path.join(sysroot, "lib/modules", release, "build")
    runtime = os.path.join(sysroot, "usr/share/systemtap/runtime")
    roots = _header_roots(build, sysroot)
    hdr = lambda rel: [os.path.join(r, rel) for r in roots]        # noqa: E731
    rt = lambda rel: [os.path.join(runtime, rel)]                  # noqa: E731
    found = []
    # 1. the uprobe_unregister lookup is fatal in the runtime, and the kernel has only the split names
    if (_grep(hdr("include/linux/uprobes.h"), r"\buprobe_unregister_nosync\b")
            and not _grep(hdr("include/linux/uprobes.h"), r"\buprobe_unregister\s*\(")
            and _grep(rt("transport/transport.c"),
                      r"_stp_error\s*\(\s*\"Can't resolve uprobe_unregister!\"\s*\);\s*goto")
            and not _grep(rt("transport/transport.c"), r"uprobe_unregister_nosync")):
        found.append("uprobe_unregister")
    # 2. the kernel has task_work_cancel_func, the runtime does not know it
    if (_grep(hdr("include/linux/task_work.h"), r"\btask_work_cancel_func\b")
            and _grep(rt("stp_task_work.c"), r"task_work_cancel") and not _grep(rt("stp_task_work.c"),
                                                                             r"task_work_cancel_func")):
        found.append("task_work_cancel_func")
    # 3. the runtime's user-address check has no fallback, and the kernel has no user_addr_max()
    if (_grep(rt("linux/addr-map.c"), r"user_addr_max") and not _grep(rt("linux/addr-map.c"), r"TASK_SIZE_MAX")
            and _grep(hdr("arch/x86/include/asm/uaccess.h"), r".") is not None
            and not any(_grep(hdr(f), r"define\s+user_addr_max") for f in (
                "arch/x86/include/asm/uaccess.h", "arch/x86/include/asm/uaccess_64.h",
                "include/asm-generic/uaccess.h", "include/linux/uaccess.h"))):
        found.append("user_addr_max")
    out = []
    for key in found:
        what, fix, guru = KNOWN_DEFECTS[key]
        out.append((key, f"{what}: {fix.format(runtime=runtime, release=release)}", guru))
    return out


def runtime_defect(guru: bool = False, **kw) -> str | None:
    """The first known runtime defect guru mode (when ``guru``) does not avoid, as one sentence."""
    try:
        for key, sentence, guru_avoids in runtime_defects(**kw):
            if guru and guru_avoids:
                continue
            return sentence
    except Exception:        # noqa: BLE001 - a check that cannot read the sources says nothing
        return None
    return None


def _privilege_problem() -> str | None:
    if os.geteuid() == 0:
        return None
    try:
        import grp
        gid = grp.getgrnam("stapdev").gr_gid
        if gid in os.getgroups():
            return None
    except (KeyError, ImportError):
        pass
    return "SystemTap needs root or membership of the stapdev group to run a generated script"


class StapSession(Session):
    def __init__(self, backend, target, opts, proc, tmpdir, out_path, err_path, script_path, lay, aspace):
        super().__init__(backend, target, opts)
        self.proc = proc
        self.tmpdir = tmpdir
        self.out_path = out_path
        self.err_path = err_path
        self.script_path = script_path
        self.layout = lay
        self.aspace = aspace
        self.closed = False
        self.warnings: list[str] = []
        self.module: str | None = None      # a prebuilt module run with staprun
        self.module_hz: int | None = None
        self.running_since: float | None = None
        self.lock = None                    # the stap capture lock of the pid (locks.take), released by close()

    def _stderr_tail(self, n=600) -> str:
        try:
            with open(self.err_path, "rb") as f:
                data = f.read()
            return data[-n:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def poll(self):
        if self.proc.poll() is not None:
            raise CaptureError(f"stap exited with status {self.proc.returncode} during the capture: "
                               f"{self._stderr_tail() or 'no message'}")
        return None

    def target_exited(self) -> bool:
        return self.proc.poll() is None     # stap keeps its map; stop() prints it

    def stop(self):
        if not procutil.interrupt(self.proc, STOP_TIMEOUT):
            self.warnings.append(f"stap did not finish within {STOP_TIMEOUT:g} s of SIGINT; its output may be cut")
        try:
            with open(self.out_path, "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
        except OSError as e:
            raise CaptureError(f"cannot read stap's output: {e}") from None
        if "# nodeflame-stap samples" not in text:
            raise CaptureError(f"stap printed no profile (status {self.proc.returncode}): "
                               f"{self._stderr_tail() or 'no message'}")
        if procutil.exists(self.target.pid):
            try:
                self.aspace.refresh()
            except OSError:
                pass
        names = {t: ("main" if t == self.target.pid else f"{n} {t}")
                 for t, n in procutil.threads(self.target.pid).items()}
        if not _has_stacks(text):
            raise CaptureError(f"stap took no samples of process {self.target.pid}: it did not run on a CPU "
                               "during the capture (the probe samples CPU time, like perf)")
        prof = parse_output(text, pid=self.target.pid, aspace=self.aspace, thread_names=names,
                            source=f"<stap pid {self.target.pid}>")
        hz = self.opts.hz or self.backend.default_hz
        if self.module and self.module_hz:
            if self.opts.hz and self.opts.hz != self.module_hz:
                self.warnings.append(f"the prebuilt module {os.path.basename(self.module)} samples at the "
                                     f"{self.module_hz} Hz it was built for, not the {self.opts.hz} Hz asked")
            hz = self.module_hz
        return with_meta(prof, warnings=self.warnings, **{
            "backend": "stap",
            "requested_hz": hz,   # a prebuilt module's own rate: what the kernel was asked for
            "period_ns": int(1e9 / hz),
            "stap_script_sha": None if self.module else _short_hash(self.script_path),
            "stap_module": self.module,
            "stap_running_since": self.running_since,     # epoch s: the module ran from here
            "v8_version": self.layout.v8_version,
            "build_id": self.layout.build_id,
        })

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            procutil.interrupt(self.proc, 10)
        except Exception:
            pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        if self.lock is not None:
            self.lock.release()


def _read_target_int(pid: int, addr: int) -> int | None:
    """The 4-byte int at ``addr`` in ``pid`` (None when unreadable); reading faults the page in."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        try:
            b = os.pread(fd, 4, addr)
        finally:
            os.close(fd)
        return int.from_bytes(b, "little", signed=True) if len(b) == 4 else None
    except OSError:
        return None


def _module_load_problem() -> str | None:
    if os.path.exists("/proc/sys/kernel/modules_disabled"):
        try:
            with open("/proc/sys/kernel/modules_disabled") as f:
                if f.read().strip() == "1":
                    return ("SystemTap cannot load its kernel module: module loading is disabled "
                            "(/proc/sys/kernel/modules_disabled is 1, which only a reboot undoes)")
        except OSError:
            pass
        return None
    if not os.path.exists("/proc/modules"):
        return (f"SystemTap cannot load its kernel module: kernel {os.uname().release} has no loadable-module "
                "support (no /proc/modules, no /proc/sys/kernel/modules_disabled)")
    return None


def _short_hash(path):
    import hashlib
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError:
        return None


class StapBackend(Backend):
    name = "stap"
    summary = "SystemTap script generated from the binary's v8dbg layout walks V8 frames in the kernel (JS + native)"
    needs = "root, systemtap and a kernel that can load its module"
    default_hz = 1000
    takes_options = True      # available(pid, options=backend_options)

    def available(self, pid: int | None = None, options: dict | None = None) -> str | None:
        """``options`` (capture's backend_options): ``module`` -- a prebuilt module run with staprun
        (no compiler or kernel build tree needed here, only module loading); ``guru`` -- stap -g,
        which avoids the defects guru mode can avoid."""
        try:
            options = options or {}
            if pid is not None:
                from .. import locks
                why = locks.busy(pid, "stap")     # two stap modules would each sample it (twice the cost)
                if why:
                    return why
            if options.get("module"):
                # the module itself first: a module for another binary or kernel is the problem to fix
                # wherever it is loaded
                if pid is not None and not procutil.exists(pid):
                    return f"no process {pid}"
                why = module_problem(options["module"], pid)
                if why:
                    return why
                if shutil.which("staprun") is None:
                    return "staprun is not installed: apt-get install systemtap-runtime"
                return _privilege_problem() or _module_load_problem()
            if shutil.which("stap") is None:
                return "systemtap is not installed: apt-get install systemtap"
            why = _privilege_problem() or _kernel_runtime_problem()
            if why:
                return why
            why = runtime_defect(guru=bool(options.get("guru")))
            if why:
                return why
            if pid is not None:
                if not procutil.exists(pid):
                    return f"no process {pid}"
                try:
                    layout_for_pid(pid).check_supported()
                except LayoutError as e:
                    return str(e)
            return None
        except Exception as e:  # available() never raises
            return f"stap availability check failed: {type(e).__name__}: {e}"

    def start(self, target: Target, opts: CaptureOptions) -> StapSession:
        from ..native.symbols import AddressSpace
        unknown = set(opts.extra) - {"module", "guru", "max_depth"}
        if unknown:
            raise CaptureError(f"unknown stap backend option(s) {', '.join(sorted(unknown))}; "
                               "known: module, guru, max_depth")
        module = opts.extra.get("module")
        guru = bool(opts.extra.get("guru"))
        if module and (guru or "max_depth" in opts.extra):
            raise CaptureError("guru and max_depth are compiled into a prebuilt module: give them to "
                               "nodeflame stap-script --build-for, not to the capture")
        why = self.available(target.pid, {"module": module, "guru": guru})
        if why:
            raise BackendUnavailable(why)
        hz = opts.hz or self.default_hz
        max_depth = int(opts.extra.get("max_depth", MAX_DEPTH))
        from .. import locks
        lock = locks.take(target.pid, "stap", fix="use the walker, perf or inspector backend")
        tmpdir = proc = None
        try:
            lay = layout_for_pid(target.pid)
            tmpdir = tempfile.mkdtemp(prefix="nodeflame-stap-")
            script_path = os.path.join(tmpdir, "nodeflame.stp")
            out_path = os.path.join(tmpdir, "out.raw")
            err_path = os.path.join(tmpdir, "stap.err")
            aspace = AddressSpace(target.pid)
            if module:
                # the module's own hz and limits were compiled in; the check address is this process's
                addr, val = _build_check(lay, target.pid)
                if addr:
                    got = _read_target_int(target.pid, addr)     # also brings the page in for the probe
                    if got is not None and got != val:
                        raise TargetError(f"process {target.pid} does not run the node binary {module} was built "
                                          f"for (v8dbg constant at {addr:#x} is {got}, expected {val})")
                cmd = staprun_command(module, target.pid, out_path, build_check_addr=addr)
                script_path = os.fspath(module)
            else:
                script = _render(lay, hz=hz, duration=None, pid=target.pid, max_depth=max_depth, guru=guru)
                with open(script_path, "w", encoding="utf-8") as f:
                    f.write(script)
                cmd = stap_command(script_path, target.pid, max_depth=max_depth, guru=guru)
                cmd[1:1] = ["-o", out_path]
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                        start_new_session=True)
            sess = StapSession(self, target, opts, proc, tmpdir, out_path, err_path, script_path, lay, aspace)
            sess.lock, lock = lock, None
            sess.module = os.fspath(module) if module else None
            sess.module_hz = module_info(module).get("hz") if module else None
            self._wait_running(sess, _module_name(module) if module else None)
            sess.running_since = time.time()
            return sess
        except BaseException:
            if proc is not None:
                procutil.terminate(proc)
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
            if lock is not None:
                lock.release()
            raise

    @staticmethod
    def _wait_running(sess: StapSession, module_name: str | None = None):
        """Wait until the module runs (stap -v would say 'Pass 5: starting run'); fail with its message."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if sess.proc.poll() is not None:
                what = "staprun" if module_name else "stap"
                raise CaptureError(f"{what} failed (status {sess.proc.returncode}): "
                                   f"{sess._stderr_tail() or 'no message'}")
            if module_name is not None:
                # staprun inserts the module, then execs stapio, which starts the probes
                if procutil.comm(sess.proc.pid) == "stapio" and os.path.exists(f"/sys/module/{module_name}"):
                    return
            elif _module_loaded(sess.proc.pid):
                return
            time.sleep(0.1)
        raise CaptureError(f"stap did not start sampling within {START_TIMEOUT:g} s")


def _module_loaded(stap_pid: int) -> bool:
    """stap runs the module through staprun/stapio once pass 5 begins."""
    try:
        for child in os.listdir(f"/proc/{stap_pid}/task"):
            with open(f"/proc/{stap_pid}/task/{child}/children") as f:
                for c in f.read().split():
                    if procutil.comm(int(c)) in ("staprun", "stapio"):
                        return True
    except (OSError, ValueError):
        return False
    return False


BACKEND = StapBackend()
