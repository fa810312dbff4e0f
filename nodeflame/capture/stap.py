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
  tables (the walker's :class:`~nodeflame.capture.walker.symbols.AddressSpace`),
  splits the stacks by thread and reads each with the ``raw`` reader.

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

from . import procutil
from .base import Backend, BackendUnavailable, CaptureError, CaptureOptions, Session, Target, TargetError
from .v8layout import LayoutError, V8Layout, layout_for_pid, load_layout

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


_BODY = r"""
global stacks%[@MAX_STACKS]     # [tid, frame ids] -> samples; oldest dropped when full
global nsamples, nlost
global fn_id[@MAX_FRAMES], fn_check[@MAX_FRAMES], labels[@MAX_FRAMES]
global nat_id[@MAX_FRAMES], nat_pc[@MAX_FRAMES]
global next_id, checked, check_faults
global build_check_addr = @BUILD_CHECK_ADDR   # staprun NAME.ko build_check_addr=N sets it for a prebuilt module

function is_heap:long (w:long) { return (w & @HEAP_OBJECT_TAG_MASK) == @HEAP_OBJECT_TAG }
function smi:long (w:long) { return w >> @SMI_SHIFT }
function word:long (a:long) { return user_int64_error(a) }

function itype:long (obj:long) {
  if (!is_heap(obj)) return -1
  m = word(obj - @HEAP_OBJECT_TAG + @MAP_OFFSET)
  if (!is_heap(m)) return -1
  return user_uint16_error(m - @HEAP_OBJECT_TAG + @MAP_INSTANCE_TYPE)
}

# one code point as UTF-8 (control characters and NUL become '?', so a name stays one line)
function utf8:string (c:long) {
  if (c < 32 || c == 127) return "?"
  if (c < 128) return sprintf("%c", c)
  if (c < 2048) return sprintf("%c%c", 192 | (c >> 6), 128 | (c & 63))
  if (c < 65536) return sprintf("%c%c%c", 224 | (c >> 12), 128 | ((c >> 6) & 63), 128 | (c & 63))
  return sprintf("%c%c%c%c", 240 | (c >> 18), 128 | ((c >> 12) & 63), 128 | ((c >> 6) & 63), 128 | (c & 63))
}

# characters [start, start + n) of a sequential string whose chars begin at addr
function seq_chars:string (addr:long, start:long, n:long, one:long, max:long) {
  s = ""
  for (i = start; i < start + n && strlen(s) < max; i++) {
    if (one) { c = user_uint8_error(addr + i) }
    else {
      c = user_uint16_error(addr + 2 * i)
      if (c >= 55296 && c < 56320 && i + 1 < start + n) {      # a surrogate pair
        d = user_uint16_error(addr + 2 * (i + 1))
        if (d >= 56320 && d < 57344) { c = 65536 + ((c - 55296) << 10) + (d - 56320); i++ }
      }
    }
    s .= utf8(c)
  }
  return s
}

function v8_string:string (obj:long, depth:long, max:long) {
  t = itype(obj)
  if (t < 0 || t >= @FIRST_NONSTRING_TYPE || max <= 0) return ""
  base = obj - @HEAP_OBJECT_TAG
  n = user_int_error(base + @STRING_LENGTH)
  if (n <= 0 || n > @MAX_STRING_LENGTH) return ""
  repr = t & @STRING_REPRESENTATION_MASK
  one = (t & @STRING_ENCODING_MASK) == @ONE_BYTE_STRING_TAG
  if (repr == @SEQ_STRING_TAG)
    return seq_chars(base + (one ? @SEQ_ONE_BYTE_CHARS : @SEQ_TWO_BYTE_CHARS), 0, n, one, max)
  if (depth >= @MAX_STRING_DEPTH) return ""
  if (repr == @THIN_STRING_TAG)              # the thin string's own encoding bit is not reliable
    return v8_string(word(base + @THIN_ACTUAL), depth + 1, max)
  if (repr == @CONS_STRING_TAG) {
    a = v8_string(word(base + @CONS_FIRST), depth + 1, max)
    return a . v8_string(word(base + @CONS_SECOND), depth + 1, max - strlen(a))
  }
  if (repr == @SLICED_STRING_TAG) {
    p = word(base + @SLICED_PARENT)
    pt = itype(p)
    if (pt < 0 || pt >= @FIRST_NONSTRING_TYPE || (pt & @STRING_REPRESENTATION_MASK) != @SEQ_STRING_TAG) return ""
    pone = (pt & @STRING_ENCODING_MASK) == @ONE_BYTE_STRING_TAG
    return seq_chars(p - @HEAP_OBJECT_TAG + (pone ? @SEQ_ONE_BYTE_CHARS : @SEQ_TWO_BYTE_CHARS),
                     smi(word(base + @SLICED_OFFSET)), n, pone, max)
  }
  return ""                                   # external strings: not names
}

# the function's name from its ScopeInfo: the function-variable slot, else the inferred name
function scope_info_name:string (si:long) {
  base = si - @HEAP_OBJECT_TAG
  if (@SI_FLAGS_RAW32) flags = user_uint32_error(base + @SI_FLAGS)
  else flags = smi(word(base + @SI_FLAGS))
  n = smi(word(base + @SI_CONTEXT_LOCALS))
  if (n < 0 || n > @MAX_CONTEXT_LOCALS) return ""
  stype = flags & ((1 << @SF_SCOPE_TYPE_BITS) - 1)
  off = @SI_VARS + @TAGGED_SIZE * ((n < @SI_MAX_INLINED_LOCALS ? n : 1) + n)
  if (@SI_HEADER_POSITION >= 0 && stype == @SI_MODULE_SCOPE) off += @TAGGED_SIZE
  if ((flags >> @SF_HAS_SAVED_CLASS_VARIABLE) & 1) off += @TAGGED_SIZE
  name = ""
  if ((flags >> @SF_FUNCTION_VARIABLE) & @SF_FUNCTION_VARIABLE_MASK) {
    name = v8_string(word(base + off), 0, @MAX_NAME)
    off += 2 * @TAGGED_SIZE
  }
  if (name == "" && ((flags >> @SF_HAS_INFERRED_FUNCTION_NAME) & 1))
    name = v8_string(word(base + off), 0, @MAX_NAME)
  return name
}

function sfi_name:string (sfi:long) {
  base = sfi - @HEAP_OBJECT_TAG
  nos = word(base + @SFI_NAME_OR_SCOPE_INFO)
  name = ""
  t = itype(nos)
  if (t >= 0 && t < @FIRST_NONSTRING_TYPE) name = v8_string(nos, 0, @MAX_NAME)
  else if (t == @SCOPE_INFO_TYPE) name = scope_info_name(nos)
  if (name == "" && @SFI_FUNCTION_DATA >= 0) {
    fd = word(base + @SFI_FUNCTION_DATA)
    ft = itype(fd)
    if (ft >= @UNCOMPILED_DATA_FIRST_TYPE && ft <= @UNCOMPILED_DATA_LAST_TYPE)
      name = v8_string(word(fd - @HEAP_OBJECT_TAG + @UNCOMPILED_DATA_INFERRED_NAME), 0, @MAX_NAME)
  }
  return name
}

function sfi_file:string (sfi:long) {
  sc = word(sfi - @HEAP_OBJECT_TAG + @SFI_SCRIPT)
  if (itype(sc) != @SCRIPT_TYPE) return ""      # no script (V8/node builtin), or a DebugInfo
  return v8_string(word(sc - @HEAP_OBJECT_TAG + @SCRIPT_NAME), 0, @MAX_FILE)
}

# the SharedFunctionInfo of the JS frame at fp, or 0 when fp is not a JS frame
function js_frame_sfi:long (fp:long) {
  ctx = word(fp + @OFF_FP_CONTEXT)
  if (!is_heap(ctx)) return 0                    # a typed frame: marker = type << FRAME_MARKER_SHIFT
  fn = word(fp + @OFF_FP_FUNCTION)
  t = itype(fn)
  if (t < @JS_FUNCTION_FIRST_TYPE || t > @JS_FUNCTION_LAST_TYPE) return 0
  sfi = word(fn - @HEAP_OBJECT_TAG + @JS_FUNCTION_SHARED)
  if (itype(sfi) != @SFI_TYPE) return 0
  return sfi
}

# id of the function; a new one is named only when may_name (the per-sample naming budget) allows
function js_frame_id:long (sfi:long, may_name:long) {
  base = sfi - @HEAP_OBJECT_TAG
  chk = word(base + @SFI_NAME_OR_SCOPE_INFO) ^ word(base + @SFI_SCRIPT)
  if (sfi in fn_id && fn_check[sfi] == chk) return fn_id[sfi]   # cached, same name and script words
  if (next_id >= @MAX_FRAMES || !may_name) return 0      # '[unknown]' this time
  name = ""
  file = ""
  try { name = sfi_name(sfi) } catch { }          # a fault (page not readable now) leaves it empty
  try { file = sfi_file(sfi) } catch { }
  id = ++next_id
  labels[id] = "JS:" . (name == "" ? "(anonymous)" : name) . (file == "" ? "" : " " . file)
  fn_id[sfi] = id
  fn_check[sfi] = chk
  return id
}

function native_id:long (pc:long) {
  if (pc in nat_id) return nat_id[pc]
  if (next_id >= @MAX_FRAMES) return 0
  id = ++next_id
  nat_id[pc] = id
  nat_pc[id] = pc
  return id
}

probe @PROBE_POINT {
  if (pid() != target()) next
  if (!checked) {
    # the target must run the binary this script was generated for: one v8dbg constant, read from
    # the target, decides -- but only a read that succeeded.  A probe cannot fault a page in, so a
    # constant on a page that is not resident reads as a fault (user_int() would say 0): then this
    # sample is skipped and the next one tries again, BUILD_CHECK_TRIES times at most; after that
    # the capture goes on unverified and says so in its header.
    if (!build_check_addr) checked = 2
    else {
      ok = 0
      v = 0
      try { v = user_int_error(build_check_addr); ok = 1 } catch { }
      if (ok) {
        if (v != @BUILD_CHECK_VALUE)
          error("nodeflame: the target does not run the node binary this script was generated for")
        checked = 1
      } else if (++check_faults >= @BUILD_CHECK_TRIES) checked = 2
      else next
    }
  }
  nsamples <<< 1
  decodes = 0
  pc = uaddr()
  key = ""
  if (user_mode()) fp = u_register("rbp")
  else {
    # in the kernel (a syscall, a fault): u_register() would give kernel registers and the user
    # frame pointer is not reachable without guru mode, so keep the user pc under a [kernel] leaf
    fp = 0
    key = "k;"
  }
  depth = 0
  while (depth < @MAX_DEPTH) {
    id = 0
    try {
      sfi = fp ? js_frame_sfi(fp) : 0
      if (sfi) {
        before = next_id
        id = js_frame_id(sfi, decodes < @MAX_DECODES_PER_SAMPLE)
        if (next_id != before) decodes++
      } else id = native_id(pc)
    } catch {
      id = native_id(pc)
    }
    key .= sprintf("%x;", id)
    depth++
    if (fp == 0) break
    try {
      nfp = word(fp + @FP_CALLER_FP)
      pc = word(fp + @FP_CALLER_PC)
    } catch { break }
    if (nfp <= fp || nfp - fp > @MAX_FRAME_SIZE || (nfp & (@POINTER_SIZE - 1)) || pc == 0) break
    fp = nfp
  }
  if (depth >= @MAX_DEPTH && fp) key .= "t;"
  stacks[tid(), key] <<< 1
}
@DURATION_PROBE
probe end {
  printf("# nodeflame-stap samples %d ids %d\n", @count(nsamples), next_id)
  printf("# %s\n", @MODULE_ID)
  printf("# nodeflame-stap build-check %s faults %d\n",
         checked == 1 ? "ok" : (build_check_addr ? "unverified" : "off"), check_faults)
  foreach ([t, k] in stacks) {
    tok = tokenize(k, ";")
    while (tok != "") {
      if (tok == "t") printf("[truncated]\n")
      else if (tok == "k") printf("[kernel]\n")
      else {
        id = strtol(tok, 16)
        if (id in labels) printf("%s\n", labels[id])
        else if (id in nat_pc) printf("0x%x\n", nat_pc[id])
        else printf("[unknown]\n")
      }
      tok = tokenize("", ";")
    }
    printf("[thread %d]\n%d\n\n", t, @count(stacks[t, k]))
  }
}
"""


MODULE_ID_PREFIX = "nodeflame-stap-module"
_MODULE_ID = re.compile(rb"nodeflame-stap-module format=(\d+) build-id=([0-9a-f]*) node=(\S*) v8=(\S*)")


def module_id(lay: V8Layout) -> str:
    """The string a script (and so its compiled module) carries to say which node build it is for."""
    return (f"{MODULE_ID_PREFIX} format={SCRIPT_FORMAT} build-id={lay.build_id or ''} "
            f"node={lay.node_version or '?'} v8={lay.v8_version}")


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
        from .walker.elf import STT_OBJECT, read_elf
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
            from .walker.symbols import read_maps
            exe = os.path.realpath(f"/proc/{pid}/exe")
            for r in read_maps(pid):
                if r.path == exe and r.offset <= off < r.offset + (r.end - r.start):
                    return r.start + off - r.offset, lay[sym[6:]]
            return 0, 0
    except Exception:
        return 0, 0
    return 0, 0


def _render(lay: V8Layout, *, hz: int | None, duration: float | None, pid: int | None,
            max_depth: int = MAX_DEPTH, probe_point: str | None = None) -> str:
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
    head.append(f"@define {'MODULE_ID'.ljust(w)} %( \"{module_id(lay)}\" %)  # what a prebuilt module was built for")
    pp = probe_point or _probe_point(hz)
    body = _BODY.replace("@PROBE_POINT", pp)
    if duration is not None:
        ms = max(1, round(float(duration) * 1000))
        body = body.replace("@DURATION_PROBE", f"probe timer.ms({ms}) {{ exit() }}")
    else:
        body = body.replace("@DURATION_PROBE", "")
    return "\n".join(head) + "\n" + body


def generate_script_for_binary(node_path, *, hz: int | None = 1000, duration: float | None = None,
                               max_depth: int = MAX_DEPTH, probe_point: str | None = None) -> str:
    """The SystemTap script for processes running the node binary at ``node_path``.

    ``hz`` None samples at the kernel's HZ (``timer.profile``); ``probe_point``
    replaces the sampling probe (the tests use ``begin`` to elaborate the body
    where no sampling probe can resolve)."""
    lay = load_layout(str(node_path))
    return _render(lay, hz=hz, duration=duration, pid=None, max_depth=max_depth, probe_point=probe_point)


def generate_script(pid: int, *, hz: int | None = 1000, duration: float | None = None,
                    max_depth: int = MAX_DEPTH) -> str:
    """The SystemTap script for process ``pid``, from the layout of the binary it runs."""
    try:
        lay = layout_for_pid(int(pid))
    except LayoutError as e:
        raise TargetError(str(e)) from None
    return _render(lay, hz=hz, duration=duration, pid=int(pid), max_depth=max_depth)


def stap_command(script_path: str, pid: int | str, *, max_depth: int = MAX_DEPTH, stap: str = "stap") -> list[str]:
    """The stap command that runs the script on ``pid``, with every -D the script needs."""
    cmd = [stap, "-x", str(pid)]
    cmd += [f"-D{k}={v}" for k, v in stap_defines(max_depth).items()]
    cmd += ["-s", "32", script_path]
    return cmd


def shell_command(cmd) -> str:
    import shlex
    return shlex.join(str(c) for c in cmd)


# ------------------------------------------------------------------ output -> Profile
def symbolize_output(text: str, aspace=None) -> str:
    """Replace the ``0x<pc>`` lines of the script's output by ``module`symbol`` names.

    ``aspace``: a :class:`~nodeflame.capture.walker.symbols.AddressSpace` of the
    target (None: addresses stay as they are).  JIT code without a JS function
    becomes ``[jit]``, an address outside every mapping ``[unknown]``."""
    if aspace is None:
        return text
    from .walker.symbols import JIT, demangle, clean_native
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


def _split_threads(text: str):
    """{tid: raw text} from the script's output (the '[thread TID]' root line removed).

    Returns (per-thread texts in order of first appearance, header lines)."""
    per: dict[int, list[str]] = {}
    header = []
    block: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        s = line.strip()
        if not s:
            block = []
            continue
        if s.startswith("#") and not block:
            header.append(s)
            continue
        if s.isdigit() and block:
            tid = -1
            m = _THREAD_LINE.match(block[-1])
            if m is not None:
                tid = int(m.group(1))
                block = block[:-1]
            if block:
                per.setdefault(tid, []).extend(block + [s, ""])
            block = []
            continue
        block.append(s)
    return {t: "\n".join(v) + "\n" for t, v in per.items()}, header


def parse_output(text: str, *, pid: int | None = None, aspace=None, thread_names: dict | None = None,
                 source: str = "<stap>"):
    """The Profile of the script's output: native pcs symbolised, one thread per ``[thread TID]``.

    ``thread_names``: {tid: name}; the default names the thread whose tid is
    ``pid`` ``main`` and the others ``thread TID``."""
    from ..frames.combine import concat
    from ..frames.formats import READERS, _ensure_readers
    from ..frames.errors import FormatError
    _ensure_readers()
    reader = READERS["raw"]
    text = symbolize_output(text, aspace)
    per, header = _split_threads(text)
    if not per:
        raise FormatError("the stap script printed no stacks", source=source,
                          expected="raw stacks ending in '[thread TID]' and a count")
    names = dict(thread_names or {})
    parts, tnames = [], []
    for tid, raw in per.items():
        p = reader.read(raw.encode("utf-8", "surrogateescape"), f"{source} thread {tid}")
        parts.append(p)
        if tid in names:
            tnames.append(names[tid])
        elif pid is not None and tid == pid:
            tnames.append("main")
        else:
            tnames.append(f"thread {tid}" if tid >= 0 else "main")
    if len(set(tnames)) < len(tnames):       # two threads with one name: keep them apart
        seen: dict = {}
        for i, n in enumerate(tnames):
            seen[n] = seen.get(n, 0) + 1
            if seen[n] > 1:
                tnames[i] = f"{n} #{seen[n]}"
    prof = concat(parts, tnames)
    samples = None
    for h in header:
        m = re.match(r"# nodeflame-stap samples (\d+)", h)
        if m:
            samples = int(m.group(1))
    prof.meta.update({"source_format": "stap", "threads": tnames})
    warnings = []
    for h in header:
        m = re.match(r"# nodeflame-stap build-check unverified faults (\d+)", h)
        if m:
            warnings.append(f"the stap script could not verify that the target runs the node binary it was "
                            f"generated for (the checked constant's page was not resident in {m.group(1)} samples)")
        m = _MODULE_ID.search(h.encode("utf-8", "replace"))
        if m:
            prof.meta["stap_module_build_id"] = m.group(2).decode()
    if warnings:
        prof.meta["warnings"] = list(prof.meta.get("warnings") or []) + warnings
    if samples is not None:
        prof.meta["stap_samples"] = samples
        kept = int(prof.samples["weight"].sum()) if "weight" in prof.samples else prof.total
        if kept < samples:
            prof.meta["warnings"] = list(prof.meta.get("warnings") or []) + [
                f"{samples - kept} of {samples} samples were dropped by the stap script "
                f"(more than {MAX_STACKS} distinct stacks)"]
    return prof


# ------------------------------------------------------------------ backend
def _kernel_runtime_problem() -> str | None:
    rel = os.uname().release
    if os.path.exists("/proc/sys/kernel/modules_disabled"):
        try:
            with open("/proc/sys/kernel/modules_disabled") as f:
                if f.read().strip() == "1":
                    return ("SystemTap cannot load its kernel module: module loading is disabled "
                            "(/proc/sys/kernel/modules_disabled is 1, which only a reboot undoes)")
        except OSError:
            pass
    elif not os.path.exists("/proc/modules"):
        return (f"SystemTap cannot load its kernel module: kernel {rel} has no loadable-module support "
                "(no /proc/modules, no /proc/sys/kernel/modules_disabled)")
    build = f"/lib/modules/{rel}/build"
    if not os.path.exists(os.path.join(build, "Makefile")):
        return (f"SystemTap cannot build its kernel module: no kernel build tree for {rel} "
                f"({build}/Makefile is missing): apt-get install linux-headers-{rel}")
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
        if not _split_threads(text)[0]:
            raise CaptureError(f"stap took no samples of process {self.target.pid}: it did not run on a CPU "
                               "during the capture (the probe samples CPU time, like perf)")
        prof = parse_output(text, pid=self.target.pid, aspace=self.aspace, thread_names=names,
                            source=f"<stap pid {self.target.pid}>")
        hz = self.opts.hz or self.backend.default_hz
        prof.meta.update({
            "backend": "stap",
            "period_ns": int(1e9 / hz),
            "stap_script_sha": _short_hash(self.script_path),
            "v8_version": self.layout.v8_version,
            "build_id": self.layout.build_id,
        })
        if self.warnings:
            prof.meta["warnings"] = list(prof.meta.get("warnings") or []) + self.warnings
        return prof

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            procutil.interrupt(self.proc, 10)
        except Exception:
            pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)


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

    def available(self, pid: int | None = None) -> str | None:
        try:
            if shutil.which("stap") is None:
                return "systemtap is not installed: apt-get install systemtap"
            why = _privilege_problem() or _kernel_runtime_problem()
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
        from .walker.symbols import AddressSpace
        why = self.available(target.pid)
        if why:
            raise BackendUnavailable(why)
        hz = opts.hz or self.default_hz
        max_depth = int(opts.extra.get("max_depth", MAX_DEPTH))
        lay = layout_for_pid(target.pid)
        script = _render(lay, hz=hz, duration=None, pid=target.pid, max_depth=max_depth)
        tmpdir = tempfile.mkdtemp(prefix="nodeflame-stap-")
        proc = None
        try:
            script_path = os.path.join(tmpdir, "nodeflame.stp")
            out_path = os.path.join(tmpdir, "out.raw")
            err_path = os.path.join(tmpdir, "stap.err")
            with open(script_path, "w", encoding="utf-8") as f:
                f.write(script)
            aspace = AddressSpace(target.pid)
            cmd = stap_command(script_path, target.pid, max_depth=max_depth)
            cmd[1:1] = ["-o", out_path]
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                        start_new_session=True)
            sess = StapSession(self, target, opts, proc, tmpdir, out_path, err_path, script_path, lay, aspace)
            self._wait_running(sess)
            return sess
        except BaseException:
            if proc is not None:
                procutil.terminate(proc)
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise

    @staticmethod
    def _wait_running(sess: StapSession):
        """Wait until the module runs (stap -v would say 'Pass 5: starting run'); fail with its message."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if sess.proc.poll() is not None:
                raise CaptureError(f"stap failed (status {sess.proc.returncode}): "
                                   f"{sess._stderr_tail() or 'no message'}")
            if _module_loaded(sess.proc.pid):
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
