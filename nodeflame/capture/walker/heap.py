"""Decoding V8 heap objects of a live process: strings, functions, scripts, lines.

Every offset comes from a :class:`~nodeflame.capture.v8layout.V8Layout`
(v8dbg constants plus the per-version facts).  Objects are read with a
:class:`~.memory.Memory`; nothing here stops the target, so every decode
validates what it reads (instance types, lengths) and returns None rather
than guess.  GC may move an object after the stack was copied: a map word
that is not a tagged pointer is a forwarding address, which is followed.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_H = struct.Struct("<H")
_i = struct.Struct("<i")


@dataclass
class FuncInfo:
    name: str
    file: str
    line: int        # 1-based function line, 0 unknown
    column: int      # 1-based
    start: int       # source position of the function start (-1 unknown)
    script: int      # tagged Script pointer (0 none)
    native: bool     # no script: a V8/node builtin function
    check: bytes     # SFI words used to validate a cached entry


class V8Heap:
    def __init__(self, mem, lay):
        self.mem = mem
        self.lay = lay
        f = lay.facts
        self.shift = lay.smi_shift
        self.tag_mask = lay["HeapObjectTagMask"]
        self.tag = lay["HeapObjectTag"]
        self.off_map = lay["class_HeapObject__map__Map"]
        self.off_itype = lay["class_Map__instance_type__uint16_t"]
        self.first_nonstring = lay["FirstNonstringType"]
        self.repr_mask = lay["StringRepresentationMask"]
        self.enc_mask = lay["StringEncodingMask"]
        self.one_byte_tag = lay["OneByteStringTag"]
        self.tags = {lay["SeqStringTag"]: "seq", lay["ConsStringTag"]: "cons", lay["SlicedStringTag"]: "sliced",
                     lay["ThinStringTag"]: "thin", lay["ExternalStringTag"]: "external"}
        self.str_len = lay["class_String__length__int32_t"]
        self.seq_chars = lay["class_SeqOneByteString__chars__char"]
        self.seq2_chars = lay["class_SeqTwoByteString__chars__char"]
        self.cons_first = lay.field("ConsString", "first")
        self.cons_second = lay.field("ConsString", "second")
        self.sliced_parent = lay.field("SlicedString", "parent")
        self.sliced_offset = lay.field("SlicedString", "offset")
        self.thin_actual = lay.field("ThinString", "actual")
        self.ext_resource = lay.field("ExternalString", "resource")
        self.ext_data = f.get("external_string_data", 24)

        self.fn_shared = lay.field("JSFunction", "shared")
        self.t_fn_first = lay.type("JSFunction", "JS_FUNCTION_TYPE")
        self.t_fn_last = f.get("js_function_last")
        if self.t_fn_last is None:
            above = [v for k, v in lay.consts.items() if k.startswith("type_") and v > self.t_fn_first]
            self.t_fn_last = (min(above) - 1) if above else self.t_fn_first
        self.t_sfi = lay.type("SharedFunctionInfo")
        self.t_scopeinfo = lay.type("ScopeInfo")
        self.t_script = lay.type("Script")
        self.t_bytecode = lay.type("BytecodeArray")
        self.t_bytearray = lay.type("ByteArray")
        self.t_uncompiled = set(lay.types("UncompiledDataWithoutPreparseData") +
                                lay.types("UncompiledDataWithPreparseData") +
                                lay.types("UncompiledDataWithPreparseDataAndJob") +
                                lay.types("UncompiledDataWithoutPreparseDataWithJob"))
        self.sfi_name = lay.field("SharedFunctionInfo", "name_or_scope_info")
        if lay.has_field("SharedFunctionInfo", "script_or_debug_info"):
            self.sfi_script = lay.field("SharedFunctionInfo", "script_or_debug_info")
        elif lay.has_field("SharedFunctionInfo", "script"):
            self.sfi_script = lay.field("SharedFunctionInfo", "script")
        else:
            self.sfi_script = lay.field("SharedFunctionInfo", "raw_script")
        self.sfi_function_data = lay.field("SharedFunctionInfo", "function_data", -1) \
            if lay.has_field("SharedFunctionInfo", "function_data") else None
        self.sfi_header = max(self.sfi_name, self.sfi_script) + 8
        self.unc_inferred = lay.field("UncompiledData", "inferred_name")
        self.unc_start = lay.field("UncompiledData", "start_position")
        self.script_name = lay.field("Script", "name")
        self.script_source = lay.field("Script", "source")
        self.script_line_offset = f.get("script_line_offset")
        self.fa_len = lay["class_FixedArrayBase__length__SMI"]
        self.bytecode_data = lay.field("BytecodeArray", "data")  # header size + tag... (v8dbg: offset of data)
        self.bytecode_spt = f.get("bytecode_source_positions")
        # V8 12.4+ keeps the bytecode's source positions in a TrustedByteArray
        self.t_spt = set()
        for cls in f.get("bytecode_source_positions_types", ("ByteArray",)):
            self.t_spt.update(lay.types(cls))
        self.bytearray_data = f.get("bytearray_data", 16)
        # ScopeInfo
        self.si = f
        self.map_types: dict = {}
        self.sfi_cache: dict = {}
        self.fn_cache: dict = {}
        self.script_cache: dict = {}
        self.spt_cache: dict = {}
        self.invalid = 0
        self.moved = 0
        self.last_fn = self.last_sfi = 0   # the JSFunction function_info() last decoded, and its SFI

    # ----------------------------------------------------------- primitives
    def is_heap(self, w):
        return (w & self.tag_mask) == self.tag

    def is_smi(self, w):
        return (w & 1) == 0

    def smi(self, w):
        v = w >> self.shift
        if v >= 1 << (63 - self.shift):
            v -= 1 << (64 - self.shift)
        return v

    def word(self, addr):
        return self.mem.u64(addr)

    def map_type(self, mapw):
        t = self.map_types.get(mapw)
        if t is None:
            b = self.mem.read(mapw - self.tag + self.off_itype, 2)
            if len(b) != 2:
                return None
            t = _H.unpack(b)[0]
            if len(self.map_types) < 100000:
                self.map_types[mapw] = t
        return t

    def itype(self, obj):
        """Instance type of the tagged object ``obj`` (None if unreadable)."""
        if not self.is_heap(obj):
            return None
        m = self.word(obj - self.tag + self.off_map)
        if m is None or not self.is_heap(m):
            return None
        return self.map_type(m)

    # ---------------------------------------------------------------- strings
    def string(self, obj, depth=0, limit=4096):
        """Decode the V8 string ``obj`` (tagged); None when it is not a readable string."""
        if depth > 12 or not self.is_heap(obj):
            return None
        base = obj - self.tag
        hdr = self.mem.read(base, 32)
        if len(hdr) < 16:
            return None
        m = _Q.unpack_from(hdr, self.off_map)[0]
        t = self.map_type(m) if self.is_heap(m) else None
        if t is None or t >= self.first_nonstring:
            return None
        n = _i.unpack_from(hdr, self.str_len)[0]
        if n < 0 or n > (1 << 28):
            return None
        kind = self.tags.get(t & self.repr_mask)
        one = (t & self.enc_mask) == self.one_byte_tag
        if kind == "seq":
            want = min(n, limit)
            raw = self.mem.read(base + (self.seq_chars if one else self.seq2_chars), want * (1 if one else 2))
            return raw.decode("latin-1") if one else raw.decode("utf-16-le", "replace")
        if kind == "thin":
            return self.string(_Q.unpack_from(hdr, self.thin_actual)[0], depth + 1, limit)
        if kind == "cons":
            a = self.string(_Q.unpack_from(hdr, self.cons_first)[0], depth + 1, limit)
            b = self.string(_Q.unpack_from(hdr, self.cons_second)[0], depth + 1, limit)
            return None if a is None or b is None else (a + b)[:limit]
        if kind == "sliced":
            parent = self.string(_Q.unpack_from(hdr, self.sliced_parent)[0], depth + 1, limit + (1 << 20))
            off = self.smi(_Q.unpack_from(hdr, self.sliced_offset)[0])
            return None if parent is None else parent[off:off + min(n, limit)]
        if kind == "external":
            data = self.word(base + self.ext_data) if (t & 0x10) == 0 else None
            if not data:
                return None
            raw = self.mem.read(data, min(n, limit) * (1 if one else 2))
            return raw.decode("latin-1") if one else raw.decode("utf-16-le", "replace")
        return None

    def code_units(self, obj, depth=0):
        """The whole string as a numpy array of code units (uint8 or uint16), for sources."""
        s = self.string(obj, depth, limit=1 << 28)
        if s is None:
            return None
        return s

    # ---------------------------------------------------------------- objects
    def deref_moved(self, obj, nbytes):
        """Read ``nbytes`` of the object at tagged ``obj``; follow a forwarding map word once.

        Returns (tagged address actually read, bytes) or (obj, b'')."""
        b = self.mem.read(obj - self.tag, nbytes)
        if len(b) < 8:
            return obj, b""
        m = _Q.unpack_from(b, 0)[0]
        if not self.is_heap(m):
            # a GC moved it: the map word holds the new (untagged) address
            if m == 0 or m & 7:
                return obj, b""
            self.moved += 1
            obj = m + self.tag
            b = self.mem.read(m, nbytes)
            if len(b) < 8 or not self.is_heap(_Q.unpack_from(b, 0)[0]):
                return obj, b""
        return obj, b

    def function_sfi(self, fn):
        """SFI (tagged) of the JSFunction ``fn`` (tagged), or None if fn is not a JSFunction."""
        fn, b = self.deref_moved(fn, self.fn_shared + 8)
        if len(b) < self.fn_shared + 8:
            return None
        t = self.map_type(_Q.unpack_from(b, 0)[0])
        if t is None or not (self.t_fn_first <= t <= self.t_fn_last):
            return None
        sfi = _Q.unpack_from(b, self.fn_shared)[0]
        return sfi if self.is_heap(sfi) else None

    def function_info(self, fn):
        """FuncInfo of the JSFunction ``fn`` (tagged), or None.  Cached per function address and validated
        by re-reading its map and ``shared`` words (one read when nothing changed)."""
        fn2, b = self.deref_moved(fn, self.fn_shared + 8)
        if len(b) < self.fn_shared + 8:
            return None
        check = b[0:8] + b[self.fn_shared:self.fn_shared + 8]
        sfi = _Q.unpack_from(b, self.fn_shared)[0]
        hit = self.fn_cache.get(fn2)
        if hit is not None and hit[0] == check:
            self.last_fn, self.last_sfi = fn, sfi
            return hit[1]
        t = self.map_type(_Q.unpack_from(b, 0)[0])
        if t is None or not (self.t_fn_first <= t <= self.t_fn_last):
            return None
        info = self.sfi_info(sfi) if self.is_heap(sfi) else None
        if info is not None:
            if len(self.fn_cache) > 100000:
                self.fn_cache.clear()
            self.fn_cache[fn2] = (check, info)
            self.last_fn, self.last_sfi = fn, sfi
        return info

    def is_js_function(self, fn):
        return self.function_sfi(fn) is not None

    def sfi_info(self, sfi):
        """FuncInfo of the SFI (tagged), cached by address and validated on every call."""
        sfi, b = self.deref_moved(sfi, self.sfi_header)
        if len(b) < self.sfi_header:
            self.invalid += 1
            return None
        check = b[self.sfi_name:self.sfi_name + 8] + b[self.sfi_script:self.sfi_script + 8] + b[0:8]
        hit = self.sfi_cache.get(sfi)
        if hit is not None and hit.check == check:
            return hit
        if self.map_type(_Q.unpack_from(b, 0)[0]) != self.t_sfi:
            self.invalid += 1
            return None
        info = self._decode_sfi(sfi, b)
        if info is not None:
            info.check = check
            if len(self.sfi_cache) > 50000:
                self.sfi_cache.clear()
            self.sfi_cache[sfi] = info
        return info

    def _decode_sfi(self, sfi, b):
        nos = _Q.unpack_from(b, self.sfi_name)[0]
        name, inferred, start = "", "", -1
        if self.is_heap(nos):
            t = self.itype(nos)
            if t is not None and t < self.first_nonstring:
                name = self.string(nos) or ""
            elif t == self.t_scopeinfo:
                name, inferred, start = self.scope_info(nos)
        if (not name or start < 0) and self.sfi_function_data is not None:
            fd = self.word(sfi - self.tag + self.sfi_function_data)
            if fd is not None and self.itype(fd) in self.t_uncompiled:
                if not inferred:
                    inferred = self.string(self.word(fd - self.tag + self.unc_inferred) or 0) or ""
                if start < 0:
                    w = self.mem.read(fd - self.tag + self.unc_start, 4)
                    if len(w) == 4:
                        start = _i.unpack(w)[0]
        script = _Q.unpack_from(b, self.sfi_script)[0]
        file, line, col, native = "", 0, 0, True
        sc = self.script(script) if self.is_heap(script) else None
        if sc is not None:
            native = False
            file = sc[0]
            if start >= 0:
                line, col = self.line_col(sc, start)
        nm = name or inferred or "(anonymous)"
        if nm.isdigit() and file.startswith("wasm://"):
            nm = f"wasm-function[{nm}]"   # a wasm module's export: V8 names it by its index
        return FuncInfo(nm, file, line, col, start, script if sc is not None else 0, native, b"")

    def scope_info(self, si):
        """(name, inferred name, start position) from a ScopeInfo (tagged)."""
        f = self.si
        base = si - self.tag
        hdr = self.mem.read(base, f["scopeinfo_vars"])
        if len(hdr) < f["scopeinfo_vars"]:
            return "", "", -1
        if f.get("scopeinfo_flags_raw32"):
            flags = _i.unpack_from(hdr, f["scopeinfo_flags"])[0] & 0xFFFFFFFF
        else:
            flags = self.smi(_Q.unpack_from(hdr, f["scopeinfo_flags"])[0])
        n = self.smi(_Q.unpack_from(hdr, f["scopeinfo_context_locals"])[0])
        if n < 0 or n > 1 << 20:
            return "", "", -1
        scope_type = flags & ((1 << f["sf_scope_type_bits"]) - 1)
        off = f["scopeinfo_vars"] + 8 * ((n if n < f["max_inlined_locals"] else 1) + n)
        hpos = f.get("scopeinfo_header_position")
        if hpos is not None and scope_type == f.get("module_scope"):
            off += 8  # module_variable_count
        if flags >> f["sf_has_saved_class_variable"] & 1:
            off += 8
        fv = flags >> f["sf_function_variable"] & 3
        has_inf = flags >> f["sf_has_inferred_function_name"] & 1
        if hpos is not None:
            has_pos = False  # position_info is in the header
        else:
            has_pos = scope_type in f["scope_types_with_position"] or (
                scope_type == f["class_scope"] and not (flags >> f["sf_is_empty"] & 1))
        need = off + (16 if fv else 0) + (8 if has_inf else 0) + (16 if has_pos else 0)
        body = self.mem.read(base + off, need - off)
        if len(body) < need - off:
            return "", "", -1
        p = 0
        name = inferred = ""
        if fv:
            w = _Q.unpack_from(body, p)[0]
            if self.is_heap(w):
                name = self.string(w) or ""
            p += 16
        if has_inf:
            w = _Q.unpack_from(body, p)[0]
            if self.is_heap(w):
                inferred = self.string(w) or ""
            p += 8
        start = -1
        if has_pos:
            start = self.smi(_Q.unpack_from(body, p)[0])
        elif hpos is not None and not (flags >> f["sf_is_empty"] & 1):
            start = self.smi(_Q.unpack_from(hdr, hpos)[0])
        return name, inferred, start

    # ------------------------------------------------------------- scripts
    def script(self, obj):
        """(name, newline positions ndarray, line_offset) of a Script (tagged), cached; None if not a Script."""
        hit = self.script_cache.get(obj)
        if hit is not None:
            return hit
        if self.itype(obj) != self.t_script:
            return None
        base = obj - self.tag
        name_w = self.word(base + self.script_name) or 0
        name = self.string(name_w) if self.is_heap(name_w) else None
        name = name or ""
        src_w = self.word(base + self.script_source) or 0
        src = self.string(src_w, limit=1 << 28) if self.is_heap(src_w) else None
        if src is not None:
            arr = np.frombuffer(src.encode("utf-16-le", "surrogatepass"), np.uint16)
            nl = np.flatnonzero(arr == 10)
        else:
            nl = None
        lo = 0
        if self.script_line_offset is not None:
            w = self.word(base + self.script_line_offset)
            if w is not None and self.is_smi(w):
                lo = self.smi(w)
        hit = (name, nl, lo)
        if len(self.script_cache) > 5000:
            self.script_cache.clear()
        self.script_cache[obj] = hit
        return hit

    @staticmethod
    def line_col(sc, pos):
        _, nl, lo = sc
        if nl is None or pos < 0:
            return 0, 0
        k = int(np.searchsorted(nl, pos))  # newlines before pos
        line_start = int(nl[k - 1]) + 1 if k else 0
        return k + lo + 1, pos - line_start + 1

    # ------------------------------------------------------- current lines
    def bytecode_line(self, bytecode_array, bc_offset, sc):
        """1-based source line of bytecode offset ``bc_offset`` in ``bytecode_array`` (tagged), or 0."""
        if sc is None:
            return 0
        return self.line_col(sc, self.bytecode_position(bytecode_array, bc_offset))[0]

    def bytecode_position(self, bytecode_array, bc_offset):
        """Script offset of bytecode offset ``bc_offset`` in ``bytecode_array`` (tagged), or -1."""
        if self.bytecode_spt is None or bc_offset < 0:
            return -1
        table = self.spt_cache.get(bytecode_array)
        if table is None:
            table = self._read_spt(bytecode_array)
            if len(self.spt_cache) > 20000:
                self.spt_cache.clear()
            self.spt_cache[bytecode_array] = table
        if not table:
            return -1
        codes, positions = table
        k = int(np.searchsorted(codes, bc_offset, side="right")) - 1
        if k < 0:
            return -1
        return int(positions[k])

    def _read_spt(self, ba):
        if self.itype(ba) != self.t_bytecode:
            return ()
        w = self.word(ba - self.tag + self.bytecode_spt)
        if w is None or self.itype(w) not in self.t_spt:
            return ()
        n = self.smi(self.word(w - self.tag + self.fa_len) or 0)
        if n <= 0 or n > 1 << 22:
            return ()
        raw = self.mem.read(w - self.tag + self.bytearray_data, n)
        return decode_source_positions(raw)


def _vlq(raw, i):
    v = 0
    shift = 0
    while True:
        b = raw[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    # zig-zag
    return ((v >> 1) ^ -(v & 1)), i


def decode_source_positions(raw: bytes, *, raw_positions: bool = False):
    """V8 source position table -> (code offsets, script offsets) arrays; () when empty.

    Entries are pairs of zig-zag VLQs (code offset delta with is_statement in its sign, position delta),
    accumulated from code offset -1 and position 0 (src/codegen/source-position-table.cc).  With
    ``raw_positions`` the second array holds the whole 64-bit SourcePosition (inlining id in bits 31..46)
    instead of the script offset."""
    codes, poss = [], []
    code = -1
    pos = 0
    i = 0
    n = len(raw)
    try:
        while i < n:
            d, i = _vlq(raw, i)
            if d < 0:
                d = -d - 1
            code += d
            d2, i = _vlq(raw, i)
            pos += d2
            codes.append(code)
            poss.append(pos)
    except IndexError:
        pass
    if not codes:
        return ()
    p = np.asarray(poss, np.int64)
    if not raw_positions:
        p = ((p >> 1) & ((1 << 30) - 1)) - 1
    return np.asarray(codes, np.int64), p
