"""The machine code a JS frame runs: from a pc to its Code object, and from there to source positions.

A frame running optimized code (TurboFan or Maglev) may stand for several
source-level functions: V8 inlined small callees into it.  Its Code object's
source position table maps each pc offset to a 64-bit SourcePosition whose
bits 31..46 carry an inlining id; the Code's DeoptimizationData lists, per
inlining id, the call site in the caller (another SourcePosition, with the
caller's own inlining id) and the inlined function (an index into its literal
array of SharedFunctionInfos).  Following that chain from the pc's position to
inlining id 0 gives the frames the source says, innermost first, each with the
script offset executing at its level -- V8's own ``SourcePosition::InliningStack``.

A baseline (Sparkplug) frame keeps no bytecode offset; its Code's
``bytecode_offset_table`` gives the machine-code length of each bytecode in
order, so walking the bytecodes (sizes from the binary's own
``Bytecodes::kBytecodeSizes``) turns the pc into a bytecode offset.

Finding the Code of a pc: ``JSFunction::code`` when its instructions contain
the pc (not so for OSR code, code replaced after tier-up, and never on V8 13.6,
where a JSFunction holds a dispatch handle instead), else a scan backwards from
the pc over 64-byte-aligned instruction starts (``kCodeAlignment``) for the
object header whose Code says it starts exactly there and covers the pc.

V8 frees code and reuses its addresses, and a GC may move it: a cached entry
is re-validated against the object's header words (map, back-pointer, start,
size, flags, table pointers) the first time each sample uses it, and dropped
when they differ.  Nothing here stops the target; every read is checked
(instance types, lengths) and a failed check gives None -- an unexpanded frame,
never a wrong name.  Facts per V8 version: ``VERSION_FACTS[...]["code"]`` in
:mod:`nodeflame.capture.v8layout`, overridden by ``v8dbg_*`` constants where the
binary exports them; ``shared/notes/v8-inlining-facts.md`` tells how each was verified.
"""
from __future__ import annotations

import bisect
import struct

import numpy as np

from .heap import decode_source_positions

_Q = struct.Struct("<Q")
_i = struct.Struct("<i")
_I = struct.Struct("<I")
_IP = struct.Struct("<Qi")          # InliningPosition: SourcePosition position; int inlined_function_id
CODE_ALIGN = 64                     # kCodeAlignment on x64, every version
SCAN_LIMIT = 512 << 10              # how far below a pc an instruction start is looked for
_CHUNK = 8192
_MAX_CONFIRM = 64                   # candidate headers checked per scan before the map word is known
_MASK30 = (1 << 30) - 1
_MAX_ENTRIES = 20000
_CODE_HDR = 72                      # bytes of a Code header read (every field used lies below)


def script_offset(p: int) -> int:
    """Script offset of a SourcePosition (-1 for none or an external position)."""
    if p & 1:
        return -1
    return ((p >> 1) & _MASK30) - 1


def inlining_id(p: int) -> int:
    return (p >> 31) & 0xFFFF


class CodeEntry:
    """One Code object of the target: its instructions and (lazily) its tables."""
    __slots__ = ("start", "end", "code", "obj", "kind", "tier", "check", "deopt", "positions", "table",
                 "root_sfi", "literals", "inlining", "bc", "bad", "memo")

    def __init__(self, start, end, code, obj, kind, tier, check, deopt, positions):
        self.start, self.end = start, end
        self.code = code            # tagged Code
        self.obj = obj              # untagged start of the code-space object (InstructionStream or Code)
        self.kind, self.tier = kind, tier
        self.check = check          # header bytes that must be unchanged for the entry to hold
        self.deopt, self.positions = deopt, positions
        self.table = None           # optimized: (code offsets, raw SourcePositions); () when unreadable
        self.root_sfi = 0
        self.literals = ()
        self.inlining = ()
        self.bc = None              # baseline: (pc starts, pc ends, bytecode offsets, bytecode array)
        self.bad = False
        self.memo = {}              # the decoder's: (pc, leaf, bytecode array) -> the frames it decoded there


class CodeMap:
    """pc -> :class:`CodeEntry` for one process, and what a Code object says about a pc."""

    def __init__(self, mem, heap, lay):
        self.mem, self.heap, self.lay = mem, heap, lay
        c = lay.facts.get("code")
        self.why = None
        self.stats = dict(lookups=0, fast=0, scans=0, scan_failed=0, stale=0, cached=0)
        if c is None:
            self.why = (f"V8 {lay.v8_version}: the layout of its optimized code is not in nodeflame's table, "
                        "so inlined functions are not expanded (each optimized frame names its outer function)")
            return
        self.split = c["split"]
        if self.split:
            self.hdr = lay.get("class_InstructionStream__instruction_start__uintptr_t", c["hdr"])
            self.off_start = lay.field("Code", "instruction_start", c["start"])
        else:
            self.hdr = lay.get("class_Code__instruction_start__uintptr_t", c["hdr"])
            self.off_start = None
        self.off_size = lay.field("Code", "instruction_size", c["size"])
        self.off_flags = lay.field("Code", "flags", c["flags"])
        self.off_deopt = lay.field("Code", "deoptimization_data", c["deopt"])
        self.off_pos = lay.field("Code", "source_position_table", c["positions"])
        self.off_is_code = c["is_code"]
        self.fn_code = lay.field("JSFunction", "code") if lay.has_field("JSFunction", "code") else c["fn_code"]
        self.d_count = lay.get("DeoptimizationDataInlinedFunctionCountIndex", c["d_count"])
        self.d_literals = lay.get("DeoptimizationDataLiteralArrayIndex", c["d_literals"])
        self.d_inlining = lay.get("DeoptimizationDataInliningPositionsIndex", c["d_inlining"])
        self.d_sfi_wrapped = c["d_sfi_wrapped"]
        if self.d_sfi_wrapped:
            self.d_sfi = lay.get("DeoptimizationDataWrappedSharedFunctionInfoIndex", c["d_sfi"])
            self.wrapper_sfi = lay.field("SharedFunctionInfoWrapper", "shared_info", 8)
            self.t_wrapper = set(lay.types("SharedFunctionInfoWrapper"))
        else:
            self.d_sfi = lay.get("DeoptimizationDataSharedFunctionInfoIndex", c["d_sfi"])
        self.kind_mask = lay.get("CodeKindFieldMask", 15)
        self.kind_shift = lay.get("CodeKindFieldShift", 0)
        kb = lay["CodeKindBaseline"]
        self.tiers = {kb: "baseline", kb + 1: "maglev", kb + 2: "optimized"}
        self.t_code = lay.type("Code")
        self.t_is = lay.type("InstructionStream") if self.split else self.t_code
        self.t_arrays = set(lay.types("FixedArray") + lay.types("TrustedFixedArray") +
                            lay.types("ProtectedFixedArray"))
        self.t_bytes = set(lay.types("ByteArray") + lay.types("TrustedByteArray"))
        self.t_weak = set(lay.types("WeakFixedArray") + lay.types("TrustedWeakFixedArray") +
                          lay.types("ProtectedWeakFixedArray"))
        self.t_bytecode = heap.t_bytecode
        self.sizes = lay.bytecode_sizes
        self.n_ops = len(self.sizes) // 3
        self.is_map = None           # the map word of code-space objects, once one was confirmed
        self._starts: list = []
        self._entries: dict = {}     # start -> CodeEntry
        self._seen: set = set()      # entries validated in the current sample

    # ------------------------------------------------------------------ control
    def new_sample(self):
        """Cached entries are re-validated once per sample (code may be freed and its address reused)."""
        if self.why is None:
            self._seen.clear()

    # ------------------------------------------------------------------ lookup
    def lookup(self, pc: int, fn: int = 0):
        """The CodeEntry whose instructions contain ``pc`` (``fn``: the frame's JSFunction, for the fast
        path), or None."""
        if self.why is not None:
            return None
        self.stats["lookups"] += 1
        i = bisect.bisect_right(self._starts, pc) - 1
        if i >= 0:
            e = self._entries[self._starts[i]]
            if pc < e.end:
                if e.start in self._seen or self._valid(e):
                    self._seen.add(e.start)
                    self.stats["cached"] += 1
                    return e
                self.stats["stale"] += 1
                self._drop(e)
        e = self._from_function(fn, pc) if (fn and self.fn_code is not None) else None
        if e is not None:
            self.stats["fast"] += 1
        else:
            self.stats["scans"] += 1
            e = self._scan(pc)
            if e is None:
                self.stats["scan_failed"] += 1
                return None
        self._add(e)
        self._seen.add(e.start)
        return e

    def _add(self, e):
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
            self._starts.clear()
        old = self._entries.get(e.start)
        if old is None:
            bisect.insort(self._starts, e.start)
        self._entries[e.start] = e

    def entries(self):
        """{instruction start: CodeEntry} of the entries held now."""
        return self._entries

    def forget(self, e):
        """Drop an entry whose tables did not fit the frame using it (looked up afresh next time)."""
        self._drop(e)
        self._seen.discard(e.start)

    def _drop(self, e):
        if self._entries.pop(e.start, None) is not None:
            k = bisect.bisect_left(self._starts, e.start)
            if k < len(self._starts) and self._starts[k] == e.start:
                del self._starts[k]

    def _code_header(self, code):
        """(start, size, kind, deopt, positions, header bytes) of the tagged Code ``code``, or None."""
        heap = self.heap
        if not heap.is_heap(code):
            return None
        b = self.mem.read(code - heap.tag, _CODE_HDR)
        if len(b) < _CODE_HDR:
            return None
        m = _Q.unpack_from(b, 0)[0]
        if not heap.is_heap(m) or heap.map_type(m) != self.t_code:
            return None
        start = (code - heap.tag + self.hdr) if self.off_start is None else _Q.unpack_from(b, self.off_start)[0]
        size = _i.unpack_from(b, self.off_size)[0]
        if size <= 0 or size > 1 << 28:
            return None
        flags = _I.unpack_from(b, self.off_flags)[0]
        kind = (flags >> self.kind_shift) & self.kind_mask
        deopt = _Q.unpack_from(b, self.off_deopt)[0]
        pos = _Q.unpack_from(b, self.off_pos)[0]
        return start, size, kind, deopt, pos, b

    def _entry(self, code, hdr, is_words=b""):
        start, size, kind, deopt, pos, b = hdr
        return CodeEntry(start, start + size, code, start - self.hdr, kind, self.tiers.get(kind), is_words + b,
                         deopt, pos)

    def _valid(self, e) -> bool:
        if self.split:
            w = self.mem.read(e.obj, 16)
            if len(w) < 16 or w != e.check[:16]:
                return False
            b = self.mem.read(e.code - self.heap.tag, _CODE_HDR)
            return b == e.check[16:]
        b = self.mem.read(e.code - self.heap.tag, _CODE_HDR)
        return b == e.check

    def _from_function(self, fn, pc):
        heap = self.heap
        code = self.mem.u64(fn - heap.tag + self.fn_code)
        if code is None:
            return None
        hdr = self._code_header(code)
        if hdr is None or not (hdr[0] <= pc < hdr[0] + hdr[1]):
            return None
        if self.split:
            w = self.mem.read(hdr[0] - self.hdr, 16)
            if len(w) < 16 or _Q.unpack_from(w, 8)[0] != code:
                return None
            if self.is_map is None and heap.map_type(_Q.unpack_from(w, 0)[0]) == self.t_is:
                self.is_map = _Q.unpack_from(w, 0)[0]
            return self._entry(code, hdr, w)
        return self._entry(code, hdr)

    def _scan(self, pc):
        """Look below pc for the code-space object whose instructions contain it (bounded)."""
        heap = self.heap
        hdr = self.hdr
        a = pc & ~(CODE_ALIGN - 1)
        floor = pc - SCAN_LIMIT
        confirms = 0
        while a > floor:
            # one read covers the headers of the candidates in (a - _CHUNK, a]
            base = a - _CHUNK - hdr
            buf = self.mem.read(base, _CHUNK + 16)
            if len(buf) < _CHUNK + 16:
                return None
            cand = a
            while cand > a - _CHUNK:
                off = cand - hdr - base
                w = _Q.unpack_from(buf, off)[0]
                if self.is_map is not None:
                    hit = w == self.is_map
                else:
                    hit = heap.is_heap(w) and (not self.split or heap.is_heap(_Q.unpack_from(buf, off + 8)[0]))
                    if hit:
                        confirms += 1
                        if confirms > _MAX_CONFIRM:
                            return None
                if hit:
                    e = self._confirm(cand, w, buf[off:off + 16], pc)
                    if e is not None:
                        return e
                cand -= CODE_ALIGN
            a -= _CHUNK
        return None

    def _confirm(self, start, mapw, words, pc):
        heap = self.heap
        if self.split:
            code = _Q.unpack_from(words, 8)[0]
        else:
            code = start - self.hdr + heap.tag
        h = self._code_header(code)
        if h is None or h[0] != start:
            return None
        if self.is_map is None:
            if heap.map_type(mapw) != self.t_is:
                return None
            self.is_map = mapw
        if not pc < start + h[1]:
            return None        # pc is past this object's instructions (not in any code object)
        return self._entry(code, h, words if self.split else b"")

    # --------------------------------------------------------- optimized code
    def _array(self, obj, types, max_len):
        """(length, data bytes) of a V8 array object of one of ``types`` (bytes or 8-byte slots)."""
        heap = self.heap
        if not heap.is_heap(obj) or heap.itype(obj) not in types:
            return None
        n = heap.smi(self.mem.u64(obj - heap.tag + 8) or 0)
        if n < 0 or n > max_len:
            return None
        return n

    def _words(self, obj, types, limit=None, max_len=1 << 20):
        n = self._array(obj, types, max_len)
        if n is None:
            return None
        k = n if limit is None else min(n, limit)
        raw = self.mem.read(obj - self.heap.tag + 16, 8 * k)
        if len(raw) < 8 * k:
            return None
        return struct.unpack_from(f"<{k}Q", raw)

    def _bytes(self, obj, max_len=1 << 24):
        n = self._array(obj, self.t_bytes, max_len)
        if n is None:
            return None
        raw = self.mem.read(obj - self.heap.tag + 16, n)
        return raw if len(raw) == n else None

    def _load_optimized(self, e):
        heap = self.heap
        raw = self._bytes(e.positions)
        d = self._words(e.deopt, self.t_arrays, limit=max(self.d_count, self.d_literals, self.d_sfi,
                                                             self.d_inlining) + 1)
        if raw is None or d is None or len(d) <= self.d_inlining:
            e.bad = True
            return
        t = decode_source_positions(raw, raw_positions=True)
        if not t:
            e.bad = True
            return
        sfi = d[self.d_sfi]
        if self.d_sfi_wrapped:
            if not heap.is_heap(sfi) or heap.itype(sfi) not in self.t_wrapper:
                e.bad = True
                return
            sfi = self.mem.u64(sfi - heap.tag + self.wrapper_sfi) or 0
        if not heap.is_heap(sfi) or heap.itype(sfi) != heap.t_sfi:
            e.bad = True
            return
        count = heap.smi(d[self.d_count]) if heap.is_smi(d[self.d_count]) else -1
        lits = ()
        if count > 0:
            w = self._words(d[self.d_literals], self.t_weak | self.t_arrays, limit=count)
            if w is None or len(w) < count:
                e.bad = True
                return
            lits = tuple((x & ~2) if (x != 3 and heap.is_heap(x)) else 0 for x in w)
        inl = ()
        ib = self._bytes(d[self.d_inlining]) if count > 0 else b""
        if ib is None:
            e.bad = True
            return
        if ib:
            inl = tuple(_IP.unpack_from(ib, k) for k in range(0, len(ib) - len(ib) % 16, 16))
        e.table = t
        e.root_sfi = sfi
        e.literals = lits
        e.inlining = inl

    def inline_stack(self, e, pc: int, leaf: bool):
        """[(SFI, script offset)] of the source-level frames at ``pc`` in the optimized code ``e``,
        innermost first (the outer function last); None when the tables cannot be read or are
        inconsistent.  ``leaf``: pc is where the thread was (not a return address)."""
        if e.table is None and not e.bad:
            self._load_optimized(e)
        if e.bad:
            return None
        codes, P = e.table
        off = pc - e.start - (0 if leaf else 1)
        k = int(np.searchsorted(codes, off, side="right")) - 1
        if k < 0:
            return [(e.root_sfi, -1)]
        p = int(P[k])
        out = []
        for _ in range(64):
            inl = inlining_id(p)
            if inl == 0:
                out.append((e.root_sfi, script_offset(p)))
                return out
            if inl > len(e.inlining):
                return None
            pos, fid = e.inlining[inl - 1]
            if fid == -1:
                sfi = e.root_sfi
            elif 0 <= fid < len(e.literals):
                sfi = e.literals[fid]
            else:
                return None
            if not sfi:
                return None
            out.append((sfi, script_offset(p)))
            p = pos
        return None

    # ---------------------------------------------------------- baseline code
    def _load_baseline(self, e, bca):
        heap = self.heap
        table = self._bytes(e.positions)
        if table is None or not self.n_ops or not heap.is_heap(bca) or heap.itype(bca) != self.t_bytecode:
            e.bad = True
            return
        n = heap.smi(self.mem.u64(bca - heap.tag + heap.fa_len) or 0)
        if n <= 0 or n > 1 << 24:
            e.bad = True
            return
        code = self.mem.read(bca - heap.tag + heap.bytecode_data, n)
        if len(code) < n:
            e.bad = True
            return
        vals = []
        v = shift = 0
        for byte in table:              # unsigned VLQs, no zig-zag
            v |= (byte & 0x7F) << shift
            if byte & 0x80:
                shift += 7
                continue
            vals.append(v)
            v = shift = 0
        if not vals:
            e.bad = True
            return
        sizes, nops = self.sizes, self.n_ops
        pcs = [vals[0]]                 # the prologue belongs to bytecode offset -1
        offs = []
        pos = 0
        for length in vals[1:]:
            if pos >= n:
                e.bad = True
                return
            op = code[pos]
            if op <= 3 and pos + 1 < n:     # Wide / ExtraWide (and their DebugBreak forms) prefix
                scale = 1 if op in (0, 2) else 2
                op2 = code[pos + 1]
                size = (sizes[scale * nops + op2] if op2 < nops else 0) + 1
            else:
                size = sizes[op] if op < nops else 0
            if size <= 0:
                e.bad = True
                return
            offs.append(pos)
            pcs.append(pcs[-1] + length)
            pos += size
        e.bc = (np.asarray(pcs, np.int64), np.asarray(offs, np.int64), bca)

    def bytecode_offset(self, e, pc: int, leaf: bool, bca: int):
        """Bytecode offset executing at ``pc`` in the baseline code ``e`` (-1 in the prologue, None when
        unknown).  ``bca``: the frame's BytecodeArray (tagged)."""
        if e.bc is None and not e.bad:
            self._load_baseline(e, bca)
        if e.bad or e.bc[2] != bca:
            return None
        pcs, offs, _ = e.bc
        off = pc - e.start - (0 if leaf else 1)
        k = int(np.searchsorted(pcs, off, side="right")) - 1     # bytecode k covers [pcs[k], pcs[k + 1])
        if k < 0:
            return -1
        if k >= len(offs):
            return None
        return int(offs[k])
