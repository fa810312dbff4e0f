"""The frame-pointer walk over a copied stack: typed V8 frames, JS frames, native frames.

Input: the registers of the stopped thread and a copy of its stack from rsp
upwards (taken while it was stopped).  Output: the frames leaf first, as
tokens the sampler turns into FrameTable ids:

* ``("js", fn, tier, bytecode_array, bytecode_offset)`` -- a JavaScript frame,
* ``("pc", pc)`` -- native or builtin code, symbolised later,
* ``("sys", nr)`` -- the syscall the thread was blocked in (kernel).

Frame layout facts (x64): [fp] caller fp, [fp+8] return address, [fp-8]
context (tagged) or frame-type marker (``type << 1``, not a Smi), [fp-16] the
JSFunction, [fp-32] BytecodeArray and [fp-40] bytecode offset (Smi) for
interpreted frames (baseline frames keep the FeedbackVector there).
"""
from __future__ import annotations

import struct

from .symbols import BUILTIN, JIT, NATIVE, NONE

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
        self.bc_header = lay.field("BytecodeArray", "data") - lay["HeapObjectTag"]
        self.interp_names = set()
        self.restore_rt = space.restore_rt()
        self._builtin_is_interp: dict = {}
        self.stats = {"signal_frames": 0, "scanned": 0}
        self._prologues: dict = {}

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

        def rd(a):
            if lo <= a <= hi - 8:
                return unpack(buf, a - lo)[0]
            if mem is not None and a > 0:
                return mem.u64(a)
            return None

        if orig_rax < (1 << 63) and ((rax - (1 << 64)) in _ERESTART):
            out.append(("sys", orig_rax))
        cls = self.space.classify
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
        while depth < MAX_DEPTH:
            depth += 1
            c = cls(pc)
            if c == NONE:
                if pc:
                    out.append(("pc", pc))
                break
            if c == NATIVE:
                out.append(("pc", pc))
                if leaf:
                    # the leaf may not have set up its frame (no frame pointer, or still in the prologue):
                    # then rbp is the caller's frame and the caller's pc is on the stack near rsp
                    nxt = self._native_leaf(pc, sp, fp, rd, lo, hi)
                    if nxt is not None:
                        self.stats["scanned"] += 1
                        pc, fp = nxt
                        leaf = False
                        continue
            else:
                # V8 code: JIT or embedded builtins
                m = rd(fp + self.off_marker) if fp else None
                if m is None:
                    out.append(("pc", pc))
                    break
                if m & 1 == 0 and (m >> 1) <= self.max_marker:
                    # typed frame (entry, exit, stub, internal, construct, builtin exit ...)
                    if c == BUILTIN:
                        out.append(("pc", pc))
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
                        out.append(("js", fn, "interpreted", bca, idx))
                    elif c == BUILTIN:
                        # a frameless builtin called from the JS frame at fp (or a JS builtin's own code:
                        # the sampler drops the extra frame when fn turns out to be that builtin)
                        if leaf:
                            out.append(("bpc", pc))
                        out.append(("js", fn, "?", bca, bco))
                    else:
                        out.append(("js", fn, "jit", bca, bco))
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

    def _prologue(self, fs):
        """Offset of ``push %rbp; mov %rsp,%rbp`` at the function start ``fs``, or -1 (frameless)."""
        k = self._prologues.get(fs)
        if k is None:
            code = self.heap.mem.read(fs, 16) if self.heap is not None else b""
            k = -1
            j = 4 if code[:4] == b"\xf3\x0f\x1e\xfa" else 0  # endbr64
            if code[j:j + 4] == b"\x55\x48\x89\xe5":
                k = j
            self._prologues[fs] = k
        return k

    def _native_leaf(self, pc, sp, fp, rd, lo, hi):
        """(caller pc, caller fp) when the native leaf at pc has no frame of its own, else None."""
        fs = self.space.func_start(pc)
        if fs is not None:
            k = self._prologue(fs)
            if k >= 0:
                if pc <= fs + k:
                    w = rd(sp)
                    return (w, fp) if w else None
                if pc < fs + k + 4:
                    w = rd(sp + 8)
                    return (w, fp) if w else None
                return None  # its own frame is at rbp
        return self._scan(sp, fp, rd, lo, hi)

    def _sigcontext(self, uc, rd):
        """(rip, rsp, rbp) saved in the ucontext at ``uc`` (rt_sigframe on x86-64)."""
        mc = uc + 40  # uc_flags, uc_link, uc_stack(24) -> uc_mcontext
        rbp = rd(mc + 80)
        rsp = rd(mc + 120)
        rip = rd(mc + 128)
        if rip is None or rsp is None or rbp is None:
            return None
        return rip, rsp, rbp

    def _scan(self, sp, fp, rd, lo, hi):
        """(caller pc, caller fp) for a frameless library leaf, found by scanning up from sp."""
        cls = self.space.classify
        a = sp
        end = min(hi, sp + 4096)
        while a < end:
            w = rd(a)
            if w is not None and w > 0x1000 and cls(w) in (NATIVE, BUILTIN, JIT):
                # w is the return address into the caller; the caller's frame is fp if fp is above,
                # else the first plausible frame record above the slot
                if fp and a < fp < hi and self._plausible(fp, rd, hi):
                    return w, fp
                b = a + 8
                while b < end:
                    if self._plausible(b, rd, hi):
                        return w, b
                    b += 8
                return w, 0
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
