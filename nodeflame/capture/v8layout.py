"""The V8 layout of the node binary a process runs, read from its own ``v8dbg_*`` symbols.

Official node builds carry V8's postmortem metadata: ~500 ``int32`` constants
named ``v8dbg_*`` (frame-pointer offsets, frame types, class field offsets,
instance types, string tags).  This module reads them from the ELF file with
pyelftools + numpy.  Constants equal to 0 live in ``.bss`` (NOBITS) and read
as 0; they are not "missing".

A few facts the walker needs are *not* exported (the ScopeInfo layout, the
JSFunction instance-type range, Script.line_offset, ...).  They live in
:data:`VERSION_FACTS`, keyed by V8 ``major.minor``; a binary whose V8 version
is not in the table raises :class:`LayoutError` naming the version rather
than producing wrong names.

Both consumers -- the ptrace walker and the SystemTap script generator -- get
every number from a :class:`V8Layout`; neither hard-codes an offset.

>>> lay = layout_for_pid(4242)            # or load_layout("/usr/bin/node")
>>> lay.v8_version, lay["off_fp_function"], lay.field("JSFunction", "shared")
('11.3.244.8-node.38', -16, 24)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field

import numpy as np

from ..frames.errors import NodeflameError
from .native.elf import STT_OBJECT, file_identity, read_elf

__all__ = ["V8Layout", "LayoutError", "load_layout", "layout_for_pid", "VERSION_FACTS", "cache_dir"]


class LayoutError(NodeflameError):
    """The binary has no usable V8 postmortem metadata, or its V8 version is unknown."""


# Facts v8dbg does not export, per V8 major.minor (x64, pointer compression off).
# Each was verified on the official node build named in "verified" by decoding
# functions of a test script and comparing with %DebugPrint / --cpu-prof (see
# tests/test_v8layout.py and tests/test_walker.py, which check them on every
# version present on the machine).
#
#   scopeinfo_flags / _params / _context_locals: byte offsets of the Smi header fields
#   scopeinfo_vars: byte offset of the variable part (context local names ...)
#   scopeinfo_flags_raw32: flags stored as a raw uint32 instead of a Smi
#   sf_*: ScopeFlags bit positions; max_inlined_locals: kScopeInfoMaxInlinedLocalNamesSize
#   scope_types_with_position: ScopeType values whose ScopeInfo carries position_info
#   class_scope: the CLASS_SCOPE value (position_info only when not is_empty)
#   script_line_offset: Script::line_offset (Smi)
#   bytecode_source_positions: BytecodeArray::source_position_table
#   bytearray_data: ByteArray data start; external_string_data: ExternalString cached data pointer
#   js_function_first / js_function_last: JSFunction instance types (inclusive), class
#       constructors and builtin-created functions are subtypes
#   entry_fp_offset: EntryFrameConstants::kCallerFPOffset (saved c_entry_fp)
#   fp_argc: frame slot of argc
#   bytecode_source_positions_types: the instance type names that table may have
#
# Optimized and baseline code (``code``), for expanding inlined frames and finding the executing line
# (shared/notes/v8-inlining-facts.md; every value verified on the official build named in "verified";
# v8dbg constants are used instead where the binary exports them, see nodeflame/capture/walker/jitcode.py):
#   split: Code and InstructionStream are separate objects (11.3+); else one Code object in code space
#   hdr: bytes from the start of the code-space object (Code or InstructionStream) to its instructions
#   fn_code: JSFunction::code (None: V8 13.6 has a dispatch handle instead)
#   start / size / flags: Code fields (instruction start Address, instruction size int32, flags uint32)
#   deopt / positions: Code::deoptimization_data (baseline: bytecode or interpreter data) and
#       Code::source_position_table (baseline: bytecode_offset_table)
#   is_code: InstructionStream's back-pointer to its Code
#   d_count / d_literals / d_sfi / d_inlining: DeoptimizationData indices; d_sfi_wrapped: the root
#       SFI sits in a SharedFunctionInfoWrapper (13.6), whose shared_info is at wrapper_sfi
_V11_3 = dict(
    verified="node 20.20.2 (V8 11.3.244.8)",
    scopeinfo_flags=8, scopeinfo_params=16, scopeinfo_context_locals=24, scopeinfo_vars=32,
    scopeinfo_flags_raw32=False,
    sf_scope_type_bits=4, sf_has_saved_class_variable=10, sf_function_variable=12,
    sf_has_inferred_function_name=14, sf_is_empty=29,
    max_inlined_locals=75,
    scope_types_with_position=(1, 2, 3, 4), class_scope=0,
    script_line_offset=24,
    bytecode_source_positions=32,
    bytearray_data=16,
    external_string_data=24,
    js_function_first=2066, js_function_last=2096,
    entry_fp_offset=-64,
    bytecode_source_positions_types=("ByteArray",),
    code=dict(split=True, hdr=16, fn_code=48, start=40, size=56, flags=48, deopt=16, positions=24, is_code=8,
              d_count=1, d_literals=2, d_sfi=6, d_inlining=7, d_sfi_wrapped=False),
)

VERSION_FACTS: dict[str, dict] = {
    "11.3": _V11_3,
    "10.2": dict(_V11_3, verified="node 18.20.8 (V8 10.2.154.26): tests/test_walker.py",
                 code=dict(split=False, hdr=128, fn_code=48, start=None, size=40, flags=48, deopt=16, positions=24,
                           is_code=None, d_count=1, d_literals=2, d_sfi=6, d_inlining=7, d_sfi_wrapped=False)),
    # V8 12.4: Code's tables moved to trusted arrays, the bytecode's source positions too (+24)
    "12.4": dict(_V11_3, verified="node 22.23.5 (V8 12.4.254.21): tests/test_walker.py",
                 bytecode_source_positions=24, bytecode_source_positions_types=("TrustedByteArray", "ByteArray"),
                 code=dict(split=True, hdr=32, fn_code=24, start=40, size=52, flags=48, deopt=8, positions=16,
                           is_code=8, d_count=1, d_literals=2, d_sfi=6, d_inlining=7, d_sfi_wrapped=False)),
    # V8 13.x: flags are a raw uint32 (+4 padding), position_info moved into the header (+32/+40),
    # module scopes carry module_variable_count before the locals; ScopeType gained REPL_MODE_SCOPE
    "13.6": dict(_V11_3, verified="node 24.22.3 (V8 13.6.233.17): tests/test_walker.py",
                 scopeinfo_flags_raw32=True, scopeinfo_header_position=32,
                 scopeinfo_vars=48, module_scope=5, scope_types_with_position=(), class_scope=2,
                 bytecode_source_positions=24, bytecode_source_positions_types=("TrustedByteArray", "ByteArray"),
                 code=dict(split=True, hdr=32, fn_code=None, start=40, size=56, flags=52, deopt=8, positions=16,
                           is_code=8, d_count=1, d_literals=3, d_sfi=7, d_inlining=8, d_sfi_wrapped=True)),
}


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nodeflame")


_V8_VERSION = re.compile(rb"\0(\d{1,2}\.\d{1,2}\.\d{1,4}\.\d{1,4}(?:-node\.\d+)?)\0")
_NODE_VERSION = re.compile(r"v\d{1,3}\.\d{1,3}\.\d{1,3}")


@dataclass
class V8Layout:
    """v8dbg constants (prefix stripped) plus the version facts, for one node binary."""
    path: str
    build_id: str
    v8_version: str
    node_version: str | None
    consts: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    #: V8's interpreter::Bytecodes::kBytecodeSizes (uint8 [3][N]: operand scale x opcode), b'' if absent
    bytecode_sizes: bytes = b""

    # ---------------------------------------------------------------- lookups
    def __getitem__(self, name: str) -> int:
        if name.startswith("v8dbg_"):
            name = name[6:]
        if name in self.consts:
            return self.consts[name]
        if name in self.facts:
            return self.facts[name]
        raise LayoutError(f"{self.path}: no v8dbg_{name} in this binary (V8 {self.v8_version})")

    def get(self, name: str, default=None):
        try:
            return self[name]
        except LayoutError:
            return default

    def field(self, cls: str, fld: str, default=None) -> int:
        """Offset of ``cls::fld`` from ``v8dbg_class_<cls>__<fld>__<type>``."""
        pre = f"class_{cls}__{fld}__"
        for k, v in self.consts.items():
            if k.startswith(pre):
                return v
        if default is not None:
            return default
        raise LayoutError(f"{self.path}: no v8dbg_{pre}* in this binary (V8 {self.v8_version})")

    def has_field(self, cls: str, fld: str) -> bool:
        pre = f"class_{cls}__{fld}__"
        return any(k.startswith(pre) for k in self.consts)

    def type(self, cls: str, name: str | None = None, default=None) -> int:
        """Instance type of ``cls`` from ``v8dbg_type_<cls>__<NAME>``."""
        pre = f"type_{cls}__"
        for k, v in self.consts.items():
            if k.startswith(pre) and (name is None or k == pre + name):
                return v
        if default is not None:
            return default
        raise LayoutError(f"{self.path}: no v8dbg_{pre}{name or '*'} (V8 {self.v8_version})")

    def types(self, cls: str) -> list[int]:
        pre = f"type_{cls}__"
        return sorted(v for k, v in self.consts.items() if k.startswith(pre))

    @property
    def frame_types(self) -> dict:
        """{frame type name: value} (on the stack the marker is value << 1)."""
        return {k[10:]: v for k, v in self.consts.items() if k.startswith("frametype_")}

    @property
    def v8_major_minor(self) -> str:
        return ".".join(self.v8_version.split(".")[:2])

    # ------------------------------------------------------------ tagging
    @property
    def smi_shift(self) -> int:
        return self["SmiShiftSize"] + self["SmiTagMask"].bit_length()

    def check_supported(self):
        """Raise LayoutError if this build is one the walker cannot decode."""
        if self.get("TaggedSize", 8) != 8 or self.get("SystemPointerSize", 8) != 8:
            raise LayoutError(f"{self.path}: V8 {self.v8_version} uses pointer compression "
                              f"(TaggedSize={self.get('TaggedSize')}); only uncompressed 64-bit builds "
                              "(all official node builds) are supported")
        if not self.facts:
            known = ", ".join(sorted(VERSION_FACTS))
            raise LayoutError(f"{self.path}: V8 {self.v8_version} (node {self.node_version or '?'}) is not in "
                              f"nodeflame's table of V8 layout facts (known: {known}); "
                              "its ScopeInfo layout has not been verified, so JS names would be guessed")
        return self

    def to_json(self) -> dict:
        return dict(path=self.path, build_id=self.build_id, v8_version=self.v8_version,
                    node_version=self.node_version, consts=self.consts)


_mem_cache: dict = {}


def _read_consts(info) -> dict:
    idx = info.symbols_with_prefix(b"v8dbg_")
    consts = {}
    secs = info.sections
    with open(info.path, "rb") as f:
        for j in idx:
            s = info.syms[j]
            if (int(s["info"]) & 0xF) != STT_OBJECT:
                continue  # the static initializer _GLOBAL__sub_I_v8dbg_* is a function
            name = info.name_at(int(s["name"]))
            sec = secs[int(s["shndx"])] if int(s["shndx"]) < len(secs) else None
            size = int(s["size"]) or 4
            if sec is None or sec.type == "SHT_NOBITS":
                consts[name[6:]] = 0       # .bss: the constants whose value is 0
                continue
            f.seek(int(s["value"]) - sec.addr + sec.offset)
            raw = f.read(size)
            consts[name[6:]] = int.from_bytes(raw, "little", signed=True)
    return consts


BYTECODE_SIZES = "_ZN2v88internal11interpreter9Bytecodes14kBytecodeSizesE"


def _symbol_bytes(info, name: str) -> bytes:
    """The bytes of the data symbol ``name`` as the file holds them (b'' when absent)."""
    key = name.encode() + b"\0"
    k = info.strtab.find(key)
    while k >= 0:
        hit = np.flatnonzero(info.syms["name"] == k)
        if len(hit):
            s = info.syms[hit[0]]
            off = info.vaddr_to_offset(int(s["value"]))
            size = int(s["size"])
            if off is None or not 0 < size <= 1 << 16:
                return b""
            with open(info.path, "rb") as f:
                f.seek(off)
                return f.read(size)
        k = info.strtab.find(key, k + 1)
    return b""


def _find_versions(path: str, info):
    """(V8 version from .rodata, node version from ``<binary> --version`` or None)."""
    ro = info.section(".rodata")
    v8 = node = None
    if ro is not None:
        with open(path, "rb") as f:
            f.seek(ro.offset)
            data = f.read(ro.size)
        m = _V8_VERSION.search(data)
        if m:
            v8 = m.group(1).decode()
        del data
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             env={"PATH": os.environ.get("PATH", "")}).stdout.strip()
        if _NODE_VERSION.fullmatch(out):
            node = out
    except (OSError, subprocess.SubprocessError):
        pass
    return v8, node


def load_layout(path: str, *, use_disk_cache: bool = True) -> V8Layout:
    """Read the V8 layout of the node binary at ``path`` (cached by build id)."""
    ident = file_identity(path)
    hit = _mem_cache.get(ident)
    if hit is not None:
        return hit
    info = read_elf(path, all_syms=True)
    bid = info.build_id or f"noid-{ident[1]}-{ident[2]}-{ident[3]}"
    cfile = os.path.join(cache_dir(), "v8layout", bid + ".json")
    lay = None
    if use_disk_cache and os.path.exists(cfile):
        try:
            with open(cfile) as f:
                d = json.load(f)
            lay = V8Layout(path, bid, d["v8_version"], d.get("node_version"), d["consts"])
        except (OSError, ValueError, KeyError):
            lay = None
    if lay is None:
        consts = _read_consts(info)
        if not consts:
            raise LayoutError(f"{path}: no v8dbg_* symbols: this node was built without V8 postmortem "
                              "metadata (official nodejs.org builds have it; distro builds may not)")
        v8, node = _find_versions(path, info)
        if v8 is None:
            raise LayoutError(f"{path}: cannot find the V8 version string in .rodata")
        lay = V8Layout(path, bid, v8, node, consts)
        if use_disk_cache:
            try:
                os.makedirs(os.path.dirname(cfile), exist_ok=True)
                tmp = cfile + f".{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    json.dump(lay.to_json(), f)
                os.replace(tmp, cfile)
            except OSError:
                pass
    lay.facts = dict(VERSION_FACTS.get(lay.v8_major_minor, {}))
    lay.bytecode_sizes = _symbol_bytes(info, BYTECODE_SIZES)
    _mem_cache[ident] = lay
    return lay


def exe_of(pid: int) -> str:
    """Path through which the binary of ``pid`` can be opened (works after the file is replaced)."""
    return f"/proc/{pid}/exe"


def layout_for_pid(pid: int, **kw) -> V8Layout:
    """Layout of the binary ``pid`` runs (``/proc/<pid>/exe``)."""
    path = exe_of(pid)
    try:
        os.stat(path)
    except PermissionError as e:
        raise LayoutError(f"cannot open /proc/{pid}/exe: {e.strerror} (need the same user or root)") from None
    except FileNotFoundError:
        raise LayoutError(f"no process {pid}") from None
    lay = load_layout(path, **kw)
    try:
        lay.path = os.readlink(path)
    except OSError:
        pass
    return lay


def smi(word: int, shift: int = 32) -> int:
    """Value of a Smi word (32-bit Smis in the upper half on uncompressed x64)."""
    v = word >> shift
    if v >= 1 << (63 - shift):
        v -= 1 << (64 - shift)
    return v


def consts_array(lay: V8Layout, names) -> np.ndarray:
    return np.asarray([lay[n] for n in names], np.int64)
