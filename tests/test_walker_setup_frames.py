"""The walker's unwinder on V8 code caught while it builds (or tears down) its frame.

A sample can land in a builtin, the interpreter's entry or JIT code after its ``push rbp; mov rbp, rsp``
and before it has pushed its context and function (or after ``mov rsp, rbp`` on the way out).  The
frame at rbp is then that code's own, half built: its function slot lies below rsp.  The perf engine's
stack dump starts at rsp, so the slot read as nothing: the sample became ``(unknown JS)`` right above the
builtin, or (with the context slot missing too) a stack of the builtin alone, cut from its callers.  The
ptrace engine read whatever an earlier call had left below rsp, which can name a function that is not
running.  Measured on tests/workloads/http_phases.js warmed up (node 20): 4-16 such samples in 3,000,
String.prototype.replace, RegExp and KeyedLoadIC builtins and TurboFan prologues among them.

Where it happens is a matter of a few instructions, so a live capture meets it by chance; these tests
build the registers and stack of each case around node 20's real frame layout (V8's offsets from the
binary's postmortem symbols) with a small address space of three code ranges, and run the real
unwinder over them.  The live captures of the other walker tests run the same code.
"""
from __future__ import annotations

import shutil
import struct

import pytest

from nodeflame.capture.native.symbols import BUILTIN, JIT, NATIVE, NONE
from nodeflame.capture.walker.unwind import Unwinder

NODE = shutil.which("node")

BUILTINS = (0x10_0000, 0x20_0000)   # embedded builtins
INTERP = (0x18_0000, 0x18_1000)     # ... of which the interpreter's entry trampoline
JITS = (0x30_0000, 0x40_0000)       # JIT code
LIBS = (0x50_0000, 0x60_0000)       # native code


class Space:
    """The three code ranges above; nothing else is code."""

    def classify(self, pc):
        if BUILTINS[0] <= pc < BUILTINS[1]:
            return BUILTIN
        if JITS[0] <= pc < JITS[1]:
            return JIT
        if LIBS[0] <= pc < LIBS[1]:
            return NATIVE
        return NONE

    classify_live = classify

    def builtin_name(self, pc):
        if INTERP[0] <= pc < INTERP[1]:
            return "Builtins_InterpreterEntryTrampoline"
        return "Builtins_StringPrototypeReplace" if BUILTINS[0] <= pc < BUILTINS[1] else None

    def restore_rt(self):
        return None


@pytest.fixture(scope="module")
def unwinder():
    if NODE is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    from nodeflame.capture.v8layout import LayoutError, load_layout
    try:
        lay = load_layout(NODE)
    except LayoutError as e:
        pytest.skip(f"no V8 layout for {NODE}: {e}")
    return Unwinder(Space(), None, lay)


FN_CALLER = 0x7_0000_1001     # the caller's JSFunction (tagged)
CONTEXT = 0x7_0000_2001       # a context (tagged: the marker slot of a JS frame)
STALE_FN = 0x7_0000_3001      # a JSFunction an earlier call left below rsp
CALLER_PC = JITS[0] + 0x123   # where the caller's optimized code called


def _stack(rsp, words: dict) -> bytes:
    """The stack from rsp up: ``words`` {address: value}, zero elsewhere."""
    top = max(words) + 8
    b = bytearray(top - rsp)
    for a, v in words.items():
        if a >= rsp:
            struct.pack_into("<Q", b, a - rsp, v)
    return bytes(b)


def _frames(unwinder, pc, rsp, rbp, words, below=None):
    """The unwinder's tokens for a thread at pc with rsp/rbp and the stack ``words``: as the perf engine
    sees it (the dump from rsp, nothing below), and as the ptrace engine does (``below``: what memory
    holds under rsp)."""
    buf = _stack(rsp, words)

    class Mem:     # the ptrace engine's view: live memory beyond the copy, stale words below rsp
        def u64(self, a):
            return (below or {}).get(a)
    return (unwinder.walk(pc, rsp, rbp, None, -1 & (2**64 - 1), 0, buf, rsp, None),
            unwinder.walk(pc, rsp, rbp, None, -1 & (2**64 - 1), 0, buf, rsp, Mem()))


def _caller_frame(fp):
    """A complete optimized JS frame at ``fp``: context, function, and the end of the chain above it."""
    return {fp - 16: FN_CALLER, fp - 8: CONTEXT, fp: 0, fp + 8: 0}


@pytest.mark.parametrize("pushed", [0, 1], ids=["rbp-only", "context-pushed"])
def test_a_builtin_building_its_frame_is_a_builtin_under_its_caller(unwinder, pushed):
    rsp = 0x7fff_0000_0000
    fp = rsp + 8 * pushed                  # push rbp; mov rbp, rsp [; push rsi]
    caller_fp = fp + 0x40
    words = {fp: caller_fp, fp + 8: CALLER_PC, **_caller_frame(caller_fp)}
    if pushed:
        words[fp - 8] = CONTEXT
    pc = BUILTINS[0] + 0x777
    for toks in _frames(unwinder, pc, rsp, fp, words, below={fp - 16: STALE_FN, fp - 8: CONTEXT}):
        assert toks[0] == ("bpc", pc), toks
        js = [t for t in toks if t[0] == "js"]
        # the caller's frame, read from its own slots, and nothing else: no frame of a function read from
        # below rsp, and the builtin is not cut from its caller
        assert [t[1] for t in js] == [FN_CALLER], toks
        assert js[0][2] == "jit" and js[0][5] == CALLER_PC, toks


@pytest.mark.parametrize("pc", [INTERP[0] + 0x40, JITS[0] + 0x9000], ids=["interpreter-entry", "jit-prologue"])
def test_the_interpreters_entry_or_jit_code_building_a_frame_is_named_by_its_pc(unwinder, pc):
    rsp = 0x7fff_0000_0000
    caller_fp = rsp + 0x40
    words = {rsp: caller_fp, rsp + 8: CALLER_PC, **_caller_frame(caller_fp)}
    before = unwinder.stats["partial_frames"]
    for toks in _frames(unwinder, pc, rsp, rsp, words, below={rsp - 16: STALE_FN, rsp - 8: CONTEXT}):
        assert toks[0] == ("pc", pc), toks
        assert [t[1] for t in toks if t[0] == "js"] == [FN_CALLER], toks
    assert unwinder.stats["partial_frames"] == before + 2


def test_a_complete_frame_is_still_read_from_its_slots(unwinder):
    """The other side of the rule: a builtin called from a JS frame whose slots are all on the stack."""
    rsp = 0x7fff_0000_0000
    fp = rsp + 0x20                         # a frameless builtin running on top of its caller's frame
    words = {rsp: CALLER_PC, **_caller_frame(fp)}
    pc = BUILTINS[0] + 0x777
    perf, ptrace = _frames(unwinder, pc, rsp, fp, words)
    for toks in (perf, ptrace):
        assert toks[0] == ("bpc", pc), toks
        assert toks[1][:3] == ("js", FN_CALLER, "?"), toks


def test_a_typed_frame_with_only_its_marker_pushed_is_read_by_its_marker(unwinder):
    """A wasm function's frame is known by its type marker at [fp-8] alone: with the marker pushed and
    the rest not yet, it is still a wasm frame (the rule above is for frames that need their function)."""
    wasm = unwinder.lay.frame_types.get("WasmFrame")
    if wasm is None:
        pytest.skip("this node's layout names no WasmFrame type")
    rsp = 0x7fff_0000_0000
    fp = rsp + 8
    caller_fp = fp + 0x40
    words = {fp - 8: wasm << 1, fp: caller_fp, fp + 8: CALLER_PC, **_caller_frame(caller_fp)}
    pc = JITS[0] + 0x5000
    for toks in _frames(unwinder, pc, rsp, fp, words):
        assert toks[0] == ("wasm", pc), toks
        assert [t[1] for t in toks if t[0] == "js"] == [FN_CALLER], toks
