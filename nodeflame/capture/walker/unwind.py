"""The frame-pointer walk over a copied stack: typed V8 frames, JS frames, native frames.

Input: the registers of the stopped thread and a copy of its stack from rsp
upwards (taken while it was stopped).  Output: the frames leaf first, as
tokens the sampler turns into FrameTable ids:

* ``("js", fn, tier, bytecode_array, bytecode_offset, pc, leaf)`` -- a JavaScript frame; ``pc`` is
  where its machine code runs (a return address unless ``leaf``) when that code is JIT code, else 0,
* ``("pc", pc)`` -- native or builtin code, symbolised later,
* ``("wasm", pc)`` -- a WebAssembly function's frame (V8 keeps nothing on it that names the function),
* ``("sys", nr)`` -- the syscall the thread was blocked in (kernel).

Frame layout facts (x64): [fp] caller fp, [fp+8] return address, [fp-8]
context (tagged) or frame-type marker (``type << 1``, not a Smi), [fp-16] the
JSFunction, [fp-32] BytecodeArray and [fp-40] bytecode offset (Smi) for
interpreted frames (baseline frames keep the FeedbackVector there).
"""
from __future__ import annotations

import struct

from ..native.cfi import cfi_for
from ..native.symbols import BUILTIN, JIT, NATIVE, NONE

_Q = struct.Struct("<Q")
_ERESTART = {-4, -512, -513, -514, -516}  # EINTR, ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK
MAX_DEPTH = 12000


class Unwinder:
    def __init__(self, space, heap, lay):
        self.space = space
        self.heap = heap
        self.lay = lay
        self.off_marker = lay["off_fp_context_or_frame_type"]
        self.off_fn = lay["off_fp_function"]
        self.off_bca = lay["off_fp_bytecode_array"]
        self.off_bco = lay["off_fp_bytecode_offset"]
        ft = lay.frame_types
        self.max_marker = max(ft.values()) if ft else 40
        self.entry_types = {ft.get("EntryFrame"), ft.get("ConstructEntryFrame")}
        # frames of WebAssembly functions (their code is V8's, in its wasm code space): a frame of their
        # own, never dropped (their time went to the JS function that called them)
        self.wasm_types = {v for k, v in ft.items()
                           if k in ("WasmFrame", "WasmExitFrame", "WasmDebugBreakFrame", "WasmLiftoffSetupFrame")}
        self.bc_header = lay.field("BytecodeArray", "data") - lay["HeapObjectTag"]
        self.interp_names = set()
        self.restore_rt = space.restore_rt()
        self._builtin_is_interp: dict = {}
        self.stats = {"signal_frames": 0, "scanned": 0, "partial_frames": 0}
        self._prologues: dict = {}
        self._cfi_rules: dict = {}
        self._calls: dict = {}

    # -------------------------------------------------------------- helpers
    def _interp(self, pc):
        """True when pc (in the builtins) belongs to the interpreter (so to the frame at fp)."""
        r = self._builtin_is_interp.get(pc)
        if r is None:
            name = self.space.builtin_name(pc) or ""
            r = (name.startswith("Builtins_Interpreter") or name.endswith("Handler")
                 or name.startswith("Builtins_BaselineOutOfLinePrologue"))
            if len(self._builtin_is_interp) < 100000:
                self._builtin_is_interp[pc] = r
        return r

    def walk(self, rip, rsp, rbp, bc_reg, orig_rax, rax, buf, lo, mem=None):
        hi = lo + len(buf)
        out = []
        unpack = _Q.unpack_from
        if lo & 7 == 0:
            words = memoryview(buf)[:len(buf) & ~7].cast("Q")
            whi = lo + 8 * len(words)
        else:
            words, whi = None, lo

        def rd(a):
            if lo <= a < whi and not a & 7:
                return words[(a - lo) >> 3]
            if lo <= a <= hi - 8:
                return unpack(buf, a - lo)[0]
            if mem is not None and a > 0:
                return mem.u64(a)
            return None

        if orig_rax < (1 << 63) and ((rax - (1 << 64)) in _ERESTART):
            out.append(("sys", orig_rax))
        cls = self.space.classify
        live = self.space.classify_live   # a pc on the chain is code: maps read before it was mapped are re-read
        pc, fp, sp = rip, rbp, rsp
        # a stop at the very first instruction of a signal handler: [rsp] is the return to __restore_rt
        if self.restore_rt and rd(sp) == self.restore_rt:
            ctx = self._sigcontext(sp + 8, rd)
            if ctx:
                self.stats["signal_frames"] += 1
                pc, sp, fp = ctx
        leaf = True
        prev_fp = 0
        depth = 0
        om, ofn, obca, obco = self.off_marker, self.off_fn, self.off_bca, self.off_bco
        last = None   # (pc, marker, fn, bca, bco, token) of the last JS frame reached by a return address
        while depth < MAX_DEPTH:
            depth += 1
            if last is not None and pc == last[0] and lo <= fp + obco and fp + 16 <= whi and not fp & 7:
                k = (fp - lo) >> 3
                if words[k + (om >> 3)] == last[1] and words[k + (ofn >> 3)] == last[2] and \
                        words[k + (obca >> 3)] == last[3] and words[k + (obco >> 3)] == last[4]:
                    out.append(last[5])
                    nfp = words[k]
                    ret = words[k + 1]
                    if nfp > fp and ret != self.restore_rt:
                        prev_fp = fp
                        sp = fp + 16
                        pc, fp = ret, nfp
                        continue
                    depth -= 1
                    out.pop()
            c = cls(pc)
            if c == NONE and pc:
                c = live(pc)
            if c == NONE:
                if pc:
                    out.append(("pc", pc))
                break
            if c == NATIVE:
                out.append(("pc", pc))
                # a frameless function (or a leaf still in its prologue) has no frame at rbp: rbp is its
                # caller's frame and the caller's pc is on the stack above rsp
                nxt = self._native_frame(pc, sp, fp, rd, lo, hi, leaf)
                if nxt is not None:
                    self.stats["scanned"] += 1
                    pc, fp, sp = nxt
                    leaf = False
                    continue
            elif leaf and sp <= fp < sp - self.off_fn and not self._typed_marker(fp, sp, rd):
                # V8 code whose own frame at fp is being built (after ``push rbp; mov rbp, rsp``) or torn
                # down: its function slot is not on the stack (the perf engine's dump starts at rsp; the
                # ptrace engine would read what an earlier call left below rsp).  The code is named by
                # its pc (a builtin, the interpreter's entry, JIT code); [fp] and [fp+8] lead to its caller.
                # (A typed frame, a wasm function's say, is known by its marker alone: read as before.)
                out.append(("bpc" if c == BUILTIN and not self._interp(pc) else "pc", pc))
                self.stats["partial_frames"] += 1
            else:
                # V8 code: JIT or embedded builtins
                m = rd(fp + self.off_marker) if fp else None
                if m is None:
                    out.append(("pc", pc))
                    break
                if m & 1 == 0 and (m >> 1) <= self.max_marker:
                    # typed frame (entry, exit, stub, internal, construct, builtin exit, wasm ...)
                    if c == BUILTIN:
                        out.append(("pc", pc))
                    elif (m >> 1) in self.wasm_types:
                        out.append(("wasm", pc))
                else:
                    fn = rd(fp + self.off_fn)
                    bca = rd(fp + self.off_bca)
                    bco = rd(fp + self.off_bco)
                    if c == BUILTIN and self._interp(pc):
                        # interpreted: the bytecode index is the offset register in the leaf (the frame
                        # slot is only spilled before calls), else the Smi in the frame
                        if leaf and bc_reg is not None:
                            idx = bc_reg - self.bc_header
                        elif bco is not None and bco & 1 == 0:
                            idx = self.heap.smi(bco) - self.bc_header
                        else:
                            idx = -1
                        out.append(("js", fn, "interpreted", bca, idx, 0, leaf))
                        if not leaf and words is not None:
                            last = (pc, m, fn, bca, bco, out[-1])
                    elif c == BUILTIN:
                        # a frameless builtin called from the JS frame at fp (or a JS builtin's own code:
                        # the sampler drops the extra frame when fn turns out to be that builtin)
                        jpc = 0
                        if leaf:
                            out.append(("bpc", pc))
                            jpc = self._js_return(sp, fp, rd)
                        out.append(("js", fn, "?", bca, bco, jpc, False))
                    else:
                        out.append(("js", fn, "jit", bca, bco, pc, leaf))
                    if not leaf and words is not None:
                        last = (pc, m, fn, bca, bco, out[-1])
            # next frame
            if not fp or fp & 7 or fp <= prev_fp and not leaf:
                break
            nfp = rd(fp)
            ret = rd(fp + 8)
            if nfp is None or ret is None:
                break
            if self.restore_rt and ret == self.restore_rt:
                # a signal frame in the chain: continue from the interrupted context
                ctx = self._sigcontext(fp + 16, rd)
                if not ctx:
                    break
                self.stats["signal_frames"] += 1
                pc, sp, fp2 = ctx
                prev_fp, fp = 0, fp2
                leaf = True
                continue
            if nfp == 0 or nfp <= fp:
                if ret:
                    if cls(ret) != NONE:
                        out.append(("pc", ret))
                break
            prev_fp = fp
            sp = fp + 16
            pc, fp = ret, nfp
            leaf = False
        return out

    def _typed_marker(self, fp, sp, rd) -> bool:
        """Whether the marker slot of the frame at fp is on the stack and holds a frame-type marker."""
        if fp + self.off_marker < sp:
            return False
        m = rd(fp + self.off_marker)
        return m is not None and m & 1 == 0 and (m >> 1) <= self.max_marker

    def _js_return(self, sp, fp, rd, limit=64):
        """Where the JS frame at fp called the frameless builtin running at the leaf: the first word
        above sp (below fp, at most ``limit`` words) that is a return address into JIT code, or 0.  The
        decoder checks that the code it names belongs to the frame's function."""
        cls = self.space.classify
        a = sp
        end = min(fp, sp + 8 * limit) if fp else sp + 8 * limit
        while a < end:
            w = rd(a)
            if w is not None and w > 0x1000 and cls(w) == JIT and self._after_call(w, None):
                return w
            a += 8
        return 0

    def _prologue(self, fs):
        """Where the function at ``fs`` sets up its frame: (push offset, end offset) of ``push %rbp`` ...
        ``mov %rsp,%rbp`` in its first bytes (compilers may schedule other instructions in between), or
        None when it never does (a frameless function)."""
        k = self._prologues.get(fs, 0)
        if k == 0:
            code = self.heap.mem.read(fs, 48) if self.heap is not None else b""
            j = 4 if code[:4] == b"\xf3\x0f\x1e\xfa" else 0  # endbr64
            k = None
            m = code.find(b"\x48\x89\xe5", j)
            if m >= 0:
                p = code.rfind(b"\x55", j, m)
                if p >= 0:
                    k = (p, m + 3)
            self._prologues[fs] = k
        return k

    def _native_frame(self, pc, sp, fp, rd, lo, hi, leaf):
        """(caller pc, caller fp, caller sp) when the native code at pc has no frame of its own at fp (a
        frameless function, or a leaf still in its prologue); None when fp is its frame."""
        lib = self._lib_cfi(pc if leaf else pc - 1)
        if lib is not None:
            reg, off, rbp_off = lib
            cfa = (sp if reg == 7 else fp) + off
            ret = rd(cfa - 8)
            if not ret:
                return None
            nfp = rd(cfa + rbp_off) if rbp_off is not None else fp
            return ret, nfp or 0, cfa
        fs = self.space.func_start(pc)
        if fs is None:
            return self._scan(sp, fp, rd, lo, hi, None) if leaf else None
        k = self._prologue(fs)
        if k is not None:
            push, end = k
            if pc >= fs + end or not leaf:
                return None          # its own frame is at rbp
            if pc <= fs + push:
                if push <= 4:        # nothing pushed before %rbp: [rsp] is the return address
                    w = rd(sp)
                    return (w, fp, sp + 8) if w else None
                return self._scan(sp, fp, rd, lo, hi, fs)
            w = rd(sp + 8)           # %rbp pushed, frame not set up yet
            return (w, fp, sp + 16) if w else None
        return self._scan(sp, fp, rd, lo, hi)

    def _lib_cfi(self, pc):
        """The .eh_frame rule at pc when it is in a shared library (not node), else None (cached)."""
        r = self._cfi_rules.get(pc, 0)
        if r != 0:
            return r
        r = None
        reg = self.space.region(pc)
        if reg is not None and not reg.is_node and reg.elf is not None and reg.path:
            cfi = cfi_for(reg.path)
            if cfi is not None:
                va = self.space.node_vaddr(reg, pc)
                if va is not None:
                    r = cfi.rule(va)
        if len(self._cfi_rules) < 100000:
            self._cfi_rules[pc] = r
        return r

    def _sigcontext(self, uc, rd):
        """(rip, rsp, rbp) saved in the ucontext at ``uc`` (rt_sigframe on x86-64)."""
        mc = uc + 40  # uc_flags, uc_link, uc_stack(24) -> uc_mcontext
        rbp = rd(mc + 80)
        rsp = rd(mc + 120)
        rip = rd(mc + 128)
        if rip is None or rsp is None or rbp is None:
            return None
        return rip, rsp, rbp

    def _after_call(self, w, fs):
        """Is ``w`` a return address, i.e. right after a call instruction (a direct call must call ``fs``,
        the function we are unwinding, when it is known)?  Stale return addresses left on the stack by
        earlier calls fail this test.  Cached."""
        key = (w, fs)
        r = self._calls.get(key)
        if r is None:
            code = self.heap.mem.read(w - 7, 7) if self.heap is not None else b""
            r = False
            if len(code) == 7:
                if code[2] == 0xE8:                                       # call rel32
                    tgt = (w + int.from_bytes(code[3:7], "little", signed=True)) & ((1 << 64) - 1)
                    r = fs is None or tgt == fs or self.space.classify(tgt) != NATIVE or \
                        self.space.func_start(tgt) != tgt   # a PLT stub or thunk: cannot tell
                elif code[5] == 0xFF and 0xD0 <= code[6] <= 0xD7:         # call *%reg
                    r = True
                elif code[4] == 0xFF and code[5] in (0x15,) or code[1] == 0xFF and code[2] == 0x15:
                    r = True                                              # call *disp32(%rip)
                elif code[4] == 0xFF and 0x50 <= code[5] <= 0x57:          # call *disp8(%reg)
                    r = True
                elif code[1] == 0xFF and 0x90 <= code[2] <= 0x97:          # call *disp32(%reg)
                    r = True
                elif code[4] == 0x41 and code[5] == 0xFF and 0xD0 <= code[6] <= 0xD7:
                    r = True
                elif code[3] == 0xFF and code[4] == 0x54 or code[4] == 0xFF and code[5] == 0x14:
                    r = True                                              # call *(%reg,%reg,s)
            if len(self._calls) < 100000:
                self._calls[key] = r
        return r

    def _scan(self, sp, fp, rd, lo, hi, fs=None):
        """(caller pc, caller fp, caller sp) for a frameless function, found by scanning up from sp for a
        word that is a return address."""
        cls = self.space.classify
        a = sp
        end = min(hi, sp + 4096)
        while a < end:
            w = rd(a)
            if w is not None and w > 0x1000 and cls(w) in (NATIVE, BUILTIN, JIT) and self._after_call(w, fs):
                # w is the return address into the caller; the caller's frame is fp if fp is above,
                # else the first plausible frame record above the slot
                if fp and a < fp < hi and self._plausible(fp, rd, hi):
                    return w, fp, a + 8
                b = a + 8
                while b < end:
                    if self._plausible(b, rd, hi):
                        return w, b, a + 8
                    b += 8
                return w, 0, a + 8
            a += 8
        return None

    def _plausible(self, f, rd, hi):
        """Does a frame record [f]=caller fp, [f+8]=code start a 2-step valid chain?"""
        cls = self.space.classify
        for _ in range(2):
            n = rd(f)
            r = rd(f + 8)
            if n is None or r is None or not (f < n < hi) or n & 7 or cls(r) == NONE:
                return False
            f = n
        return True
