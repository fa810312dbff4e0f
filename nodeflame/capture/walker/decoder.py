"""The walker's decoder: stack copies in, named frames and the Profile out.

A :class:`Decoder` owns everything a decoded sample adds to: the frame table,
the per-sample paths, times, thread labels and leaf lines, the native and
kernel frame placeholders, and :meth:`Decoder.profile`.

Threads.  Two threads call into a Decoder during a capture:

* the **sampler thread** (``nodeflame-walker-<pid>``, :meth:`Sampler.run`)
  hands it every sample with :meth:`submit`.  Usually that only queues the
  sample; when the decoder lags (``max_lag_ns``, ``max_queue_bytes``) or has
  not been started, ``submit`` decodes it inline, on the sampler thread.  In
  ``consistent`` mode the sampler thread also walks the stack while the
  target is stopped (:meth:`prewalk`).
* the **decoder thread** (``nodeflame-decode-<pid>``, :meth:`run`) decodes
  queued samples one after the other.

Both decode paths go through :meth:`decode`, which holds :attr:`lock` for the
whole sample: the walk (the unwinder's and the heap's caches), the frame table
the distinct paths and the four per-sample arrays, which must stay aligned.
Per sample the decoder keeps about 19 bytes (a path index, a time, a label
code and a leaf line in ``array`` buffers); each distinct path is kept once,
and :meth:`profile` makes the stack tree from the distinct paths only.  :meth:`prewalk` and
:meth:`profile` take the same lock.  Nothing else of the decoder is written
by two threads: ``inline_decodes`` and the queue's byte count (under its own
lock) by the sampler thread, ``max_lag_ns`` by the decoder thread.

The decoder also writes back to the sampler's per-thread records
(``t.samples``, ``t.idle``: the stack of a thread blocked in a system call,
reused while it stays there; ``t.outgrown``: its stack is deeper than its perf
dump).  Those are single attribute stores that the sampler thread only reads.
"""
from __future__ import annotations

import bisect
import os
from array import array
import queue
import threading
import time

import numpy as np

from ...frames.build import FrameTable, build_from_tree
from .jitcode import CodeMap
from .records import PERF_KERNEL, PTRACE, DecodeStats
from ..native.symbols import clean_native, demangle, kallsyms

SYSCALLS = {0: "read", 1: "write", 7: "poll", 23: "select", 35: "nanosleep", 43: "accept", 202: "futex",
            228: "clock_gettime", 230: "clock_nanosleep", 232: "epoll_wait", 281: "epoll_pwait",
            288: "accept4", 270: "pselect6", 271: "ppoll", 441: "epoll_pwait2", 61: "wait4", 17: "pread64",
            18: "pwrite64", 19: "readv", 20: "writev", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
            47: "recvmsg", 34: "pause", 130: "rt_sigsuspend", 128: "rt_sigtimedwait", 425: "io_uring_setup",
            426: "io_uring_enter", 24: "sched_yield", 257: "openat", 3: "close", 9: "mmap", 11: "munmap",
            10: "mprotect", 12: "brk", 4: "stat", 5: "fstat", 262: "newfstatat", 332: "statx"}


class _DumpOnly:
    """The memory a perf_event dump's walk may see: the dump only.  A read of the thread's stack beyond
    the dump (in ``[lo, hi)``) means the stack is deeper than the dump (``hit``); other reads outside it
    are a frame chain gone wrong, not a deeper stack."""
    __slots__ = ("hit", "lo", "hi")

    def __init__(self, lo, hi):
        self.hit = False
        self.lo, self.hi = lo, hi

    def u64(self, addr):
        if self.lo <= addr < self.hi:
            self.hit = True
        return None


class _Walk:
    """The state of decoding one sample's tokens (leaf first)."""
    __slots__ = ("ids", "memo", "pending_bpc", "leaf_line", "first_js", "fns")

    def __init__(self, fns):
        self.ids = []                 # frame ids, leaf first (native placeholders negative)
        self.memo = {}                # (fn, tier, bca, x) -> (frame id, is native): recursion
        self.pending_bpc = None       # a builtin's pc waiting for the JS frame that follows it
        self.leaf_line = 0            # the executing line of an interpreted leaf JS frame
        self.first_js = True
        self.fns = fns                # JSFunction -> SFI resolved while the thread was stopped


class Decoder:
    """Decodes samples into frames and builds the Profile (see the module docstring for the threads)."""

    def __init__(self, *, pid, space, mem, heap, unwinder, t0, kernel_names=None,
                 max_lag_ns: int = 50_000_000, max_queue_bytes: int = 256 << 20):
        self.pid = pid
        self.space = space
        self.mem = mem
        self.heap = heap
        self.unwinder = unwinder
        self.t0 = t0
        self.max_lag_ns = max_lag_ns
        self.max_queue_bytes = max_queue_bytes
        self.lock = threading.Lock()          # the one lock of every decode path, see the module docstring
        # --- written under self.lock only
        self.ft = FrameTable()
        # per sample, in compact arrays (a long capture holds ~20 bytes a sample, not a list of ints):
        # its path (an index into the distinct paths), time, thread label and leaf line
        self._path_ids: dict = {}             # path (tuple of frame ids, root first) -> path index
        self._paths: list = []                # path index -> path
        self._sample_path = array("i")        # per sample: path index
        self._times = array("q")              # per sample: ns since t0
        self._label_ids: dict = {}            # thread label -> code
        self._label_names: list = []          # code -> thread label
        self._sample_label = array("H")       # per sample: label code
        self._sample_line = array("i")        # per sample: the executing line of its leaf JS frame (0: none)
        self.native_ids: dict = {}            # pc -> placeholder id (negative)
        self._native_by_key: dict = {}        # (symbol, module, is JIT code) -> placeholder id
        self.native_keys: list = []           # placeholder index (-1 - id) -> its key
        self._kernel_ids: dict = {}           # kernel pc -> frame id
        self._kallsyms = kernel_names
        self.stats = DecodeStats()            # which thread writes which field: see DecodeStats
        self.codes = CodeMap(mem, heap, heap.lay)   # pc -> Code object: inlined frames, executing lines
        # --- the queue between the two threads
        self._queue = queue.SimpleQueue()
        self._queued_bytes = 0                # stack bytes waiting (both threads update it, under _queued_lock)
        self._queued_lock = threading.Lock()
        self._decoding_since = 0              # queue time of the sample being decoded (0: idle); decoder thread
        self._thread = None

    # ------------------------------------------------------------- thread control (sampler thread)
    def start(self):
        """Start the decoder thread (called by the sampler thread)."""
        self._thread = threading.Thread(target=self.run, name=f"nodeflame-decode-{self.pid}", daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        """Samples are still waiting to be decoded (and the decoder thread is alive)."""
        return self._thread is not None and self._thread.is_alive() and not self._queue.empty()

    def finish(self, timeout=120):
        """Decode what is queued and end the decoder thread (sampler thread, after the last sample)."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    # ------------------------------------------------------------- sampler thread
    @staticmethod
    def _nbytes(sampled):
        return len(sampled[0].stack) if sampled[0] is not None else 0

    def submit(self, t, sampled):
        """Sampler thread: hand a sample to the decoding thread -- unless it lags: heap objects are read when
        a sample is decoded, and the longer after the stack copy that happens, the likelier a GC has moved
        the functions the copy points to.  Then decode here, inline (and the sampler slows down instead).

        A kernel (perf_event) sample may lag 5 times longer: decoding it here stops the draining of the
        rings, and a full ring loses samples (a whole stretch of one thread's time)."""
        since = self._decoding_since
        lag = time.monotonic_ns() - since if since else 0
        limit = self.max_lag_ns * (5 if sampled[0] is not None and sampled[0].source != PTRACE else 1)
        if self._thread is None or self._queued_bytes > self.max_queue_bytes or lag > limit:
            self.stats.inline_decodes += 1
            self.decode(t, sampled)
            return
        with self._queued_lock:
            self._queued_bytes += self._nbytes(sampled)
        self._queue.put((t, sampled, time.monotonic_ns()))

    def prewalk(self, snap, mem):
        """Sampler thread, ``consistent`` mode, target thread stopped: walk ``snap`` over the live memory
        and resolve each JSFunction's SharedFunctionInfo now.  Returns (tokens, {function: sfi})."""
        with self.lock:
            toks = self.unwinder.walk(*snap[:7], snap[1], mem)
            fns = {}
            for tok in toks:
                if tok[0] == "js" and tok[1] not in fns:
                    fns[tok[1]] = self.heap.function_sfi(tok[1]) if tok[1] else None
        return toks, fns

    # ------------------------------------------------------------- decoder thread
    def run(self):
        """Decoder thread body: decode queued samples until ``finish()`` queues the end."""
        q = self._queue
        while True:
            item = q.get()
            if item is None:
                return
            t, sampled, queued = item
            self._decoding_since = queued     # how far behind the decoder is
            lag = time.monotonic_ns() - queued
            if lag > self.stats.max_lag_ns:
                self.stats.max_lag_ns = lag
            try:
                self.decode(t, sampled)
            finally:
                with self._queued_lock:
                    self._queued_bytes -= self._nbytes(sampled)
                if q.empty():
                    self._decoding_since = 0

    # ------------------------------------------------------------- decoding (either thread, under self.lock)
    def decode(self, t, sampled):
        """Decode one sample of thread record ``t`` and append it.  Either thread; takes :attr:`lock`.

        A sample that cannot be decoded is counted (``decode_errors``) and dropped, on either thread: one
        undecodable sample must not end the capture."""
        with self.lock:
            try:
                self._decode(t, sampled)
            except Exception as e:  # noqa: BLE001
                self.stats.decode_errors += 1
                self.stats.decode_error = f"{type(e).__name__}: {e}"

    def _decode(self, t, sampled):
        snap, toks, fns = sampled
        st = self.stats
        if snap is None:                 # ("reuse", path index, when): a blocked thread's last stack again
            _, path, when = toks
            self._append(path, when, t.label, 0)
            t.samples += 1
            st.samples += 1
            return
        tw = time.perf_counter_ns()
        rip, rsp, rbp, bcr, orax, rax, buf, when, bk, src, asked, kpcs = snap
        self.codes.new_sample()
        if toks is None:
            toks = self._walk(t, snap)
            fns = {}
        w = _Walk(fns)
        ids = w.ids
        prev_tok = None
        prev_ids = ()
        for tok in toks:
            if tok is prev_tok and prev_ids and ids[-len(prev_ids):] == prev_ids:
                ids.extend(prev_ids)     # the unwinder repeats the same token for recursion
                continue
            prev_tok = tok
            kind = tok[0]
            if kind == "pc":
                if w.pending_bpc is not None:
                    ids.append(self._native(w.pending_bpc))
                    w.pending_bpc = None
                ids.append(self._native(tok[1]))
            elif kind == "bpc":
                w.pending_bpc = tok[1]
            elif kind == "wasm":
                if w.pending_bpc is not None:
                    ids.append(self._native(w.pending_bpc))
                    w.pending_bpc = None
                ids.append(self.ft.add("(wasm)", "", hint="js", tier=""))   # see unwind: no name to read
            elif kind == "sys":
                nm = SYSCALLS.get(tok[1], f"syscall_{tok[1]}")
                ids.append(self.ft.add(f"sys_{nm}", "", hint="kernel"))
            elif kind == "kern":
                ids.append(self.ft.add("[kernel]", "", hint="kernel"))
            elif kind == "kpc":
                ids.append(self._kernel_frame(tok[1]))
            elif kind == "trunc":
                ids.append(self.ft.add("(truncated stack)", "", hint="native"))
            else:
                prev_ids = self._js_frames(tok, w)
        if w.pending_bpc is not None:
            ids.append(self._native(w.pending_bpc))
        if not ids:
            return
        ids.reverse()
        path = self._intern(ids)
        if bk is not None and orax == bk[0] and rsp == bk[1] and rip == bk[2]:
            t.idle = (bk, path)          # still blocked where /proc said: reusable while it stays there
        else:
            t.idle = None
        self._append(path, when, t.label, w.leaf_line)
        t.samples += 1
        st.samples += 1
        st.walk_ns += time.perf_counter_ns() - tw

    def _intern(self, ids) -> int:
        """The path index of ``ids`` (frame ids, root first), a new one when it was not seen before."""
        key = tuple(ids)
        k = self._path_ids.get(key)
        if k is None:
            k = self._path_ids[key] = len(self._paths)
            self._paths.append(key)
        return k

    def _append(self, path, when, label, line):
        code = self._label_ids.get(label)
        if code is None:
            code = self._label_ids[label] = len(self._label_names)
            self._label_names.append(label)
        self._sample_path.append(path)
        self._times.append(when - self.t0)
        self._sample_label.append(code)
        self._sample_line.append(line)

    # read-only views of the per-sample data (tests and statistics; the Profile is built from the arrays)
    @property
    def paths(self) -> list:
        """Per sample: its frame ids, root first (native placeholders negative).  A new list each call."""
        p = self._paths
        return [p[k] for k in self._sample_path]

    @property
    def times(self):
        """Per sample: ns since t0 (an array('q'); do not write it)."""
        return self._times

    @property
    def labels(self) -> list:
        """Per sample: its thread label.  A new list each call."""
        n = self._label_names
        return [n[c] for c in self._sample_label]

    @property
    def thread_labels(self) -> list:
        """The distinct thread labels sampled, in order of first sample."""
        return list(self._label_names)

    @property
    def leaf_lines(self) -> list:
        """(sample index, line) of each sample whose leaf JS frame's executing line is known."""
        return [(k, ln) for k, ln in enumerate(self._sample_line) if ln]

    def nbytes(self) -> int:
        """Bytes the per-sample arrays hold."""
        return sum(len(a) * a.itemsize for a in (self._sample_path, self._times, self._sample_label,
                                                 self._sample_line))

    def _walk(self, t, snap):
        """The frame tokens (leaf first) of a snapshot that was not walked while its thread was stopped."""
        rip, rsp, rbp, bcr, orax, rax, buf, when, bk, src, asked, kpcs = snap
        st = self.stats
        if src == PTRACE:
            st.ptrace_samples += 1
            return self.unwinder.walk(rip, rsp, rbp, bcr, orax, rax, buf, rsp, self.mem)
        # a perf_event dump: walk it alone (the live stack beyond it has moved on since).  A dump
        # shorter than asked for ended at the end of the stack's mapping: nothing lies beyond it
        end = rsp + len(buf)
        if len(buf) >= asked:
            r = self.space.region(rsp)
            dump = _DumpOnly(end, r.end if r is not None else end + (1 << 20))
        else:
            dump = _DumpOnly(end, end)
        toks = self.unwinder.walk(rip, rsp, rbp, bcr, orax, rax, buf, rsp, dump)
        if src == PERF_KERNEL:
            toks[:0] = [("kpc", a) for a in kpcs] or [("kern",)]
        if dump.hit:
            st.dump_truncated += 1
            toks.append(("trunc",))
            t.outgrown = True
        st.perf_samples += 1
        return toks

    def _js_frames(self, tok, w: _Walk) -> list:
        """Decode one JS frame token ``("js", fn, tier, bca, x, pc, leaf)`` of the walk ``w``: append its
        frame ids to ``w.ids`` (leaf first, after the pending builtin pc's frame when there is one) and
        return the ids of the token's own frames (empty when the function could not be decoded), which
        the caller repeats when the unwinder repeats the token.

        ``fn`` is the JSFunction, ``tier`` "interpreted", "jit" or "?" (a frameless builtin ran on top),
        ``bca``/``x`` the bytecode array and offset (or what stands in that slot of the frame), ``pc``
        where its JIT code runs (0 when not known).  A frame in optimized code becomes one frame per
        function V8 inlined there (:mod:`.jitcode`), innermost first, marked ``inlined`` but for the
        outermost; every frame carries its executing line and column (0 when unknown)."""
        heap = self.heap
        ids = w.ids
        _, fn, tier, bca, x, pc, leaf = tok
        key = (fn, tier, bca, x, pc)
        hit = w.memo.get(key)
        if hit is not None:
            # the same function in the same state deeper in this stack (recursion)
            if w.pending_bpc is not None:
                if not hit[1]:
                    ids.append(self._native(w.pending_bpc))
                w.pending_bpc = None
            ids.extend(hit[0])
            w.first_js = False
            return hit[0]
        if fn in w.fns:
            sfi = w.fns[fn]
            info = heap.sfi_info(sfi) if sfi else None
        else:
            sfi = None
            info = heap.function_info(fn) if fn else None
        if info is None:
            if w.pending_bpc is not None:
                ids.append(self._native(w.pending_bpc))
                w.pending_bpc = None
            e = self.codes.lookup(pc) if tier == "jit" and pc else None
            if e is not None and e.tier is None:
                # JIT code of no JS function (irregexp's compiled regular expressions, called from
                # NativeRegExpMacroAssembler::Match): its frame holds no function to read; '(JIT code)'
                self.stats.code_unknown += 1
                ids.append(self._native(pc))
                w.first_js = False
                return []
            self.stats.invalid_js += 1
            ids.append(self.ft.add("(unknown JS)", "", hint="js", tier=""))
            w.first_js = False
            return []
        if w.pending_bpc is not None:
            if not info.native:
                ids.append(self._native(w.pending_bpc))
            w.pending_bpc = None
        entry = None
        if tier in ("jit", "?") and pc:
            # the frames of a pc in a Code object are decoded once: the entry is re-validated every sample
            # (freed or moved code drops it, and its memo with it) and the function must still be this one
            entry = self.codes.lookup(pc, fn)
            if entry is not None:
                if sfi is None:
                    sfi = heap.last_sfi if heap.last_fn == fn else heap.function_sfi(fn)
                mkey = (pc, leaf, 0 if entry.tier in ("optimized", "maglev") else bca)   # optimized: fp-32 is a spill slot
                got = entry.memo.get(mkey)
                if got is not None and got[0] == sfi:
                    _, own, line, n_inl = got
                    if w.first_js and not ids and line:
                        w.leaf_line = line
                    self.stats.inlined_frames += n_inl
                    w.memo[key] = (own, info.native)
                    ids.extend(own)
                    w.first_js = False
                    return own
        levels = self._code_levels(entry, sfi, info, bca, pc, leaf) if entry is not None else None
        if tier in ("jit", "?") and pc and entry is None:
            self.stats.code_unknown += 1
        if levels is None:
            line = col = 0
            if tier != "interpreted":
                tier = self._tier(tier, bca, x)
            elif x >= 0 and info.script:
                line, col = heap.line_col(heap.script(info.script), heap.bytecode_position(bca, x)) \
                    if heap.script(info.script) is not None else (0, 0)
            levels = [(info, line, col, tier)]
        if w.first_js and not ids and levels[0][1]:
            w.leaf_line = levels[0][1]
        own = []
        for fi, line, col, ftier in levels:
            own.append(self.ft.add(fi.name, fi.file, line, col, hint="builtin" if fi.native else "js", tier=ftier,
                                   func_line=fi.line, func_column=fi.column))
        self.stats.inlined_frames += len(levels) - 1
        if entry is not None and len(entry.memo) < 4096 and self.codes.entries().get(entry.start) is entry:
            entry.memo[mkey] = (sfi, own, levels[0][1], len(levels) - 1)
        w.memo[key] = (own, info.native)
        ids.extend(own)
        w.first_js = False
        return own

    def _code_levels(self, e, sfi, info, bca, pc, leaf):
        """[(FuncInfo, line, column, tier)] innermost first for a frame whose JIT code (the CodeEntry ``e``)
        runs at ``pc``, or None to decode it as before (not JS code)."""
        codes, heap, st = self.codes, self.heap, self.stats
        if e.tier is None:
            st.code_unknown += 1
            return None
        if e.tier == "baseline":
            bo = codes.bytecode_offset(e, pc, leaf, bca)
            sc = heap.script(info.script) if info.script else None
            if bo is None or sc is None:
                return [(info, 0, 0, "baseline")]
            line, col = heap.line_col(sc, heap.bytecode_position(bca, bo)) if bo >= 0 else (0, 0)
            return [(info, line, col, "baseline")]
        chain = codes.inline_stack(e, pc, leaf)
        if chain is None or chain[-1][0] != sfi:
            # unreadable tables, or code whose function is not this frame's (a stale entry, a moved SFI):
            # forget it and name the frame's own function only
            st.inline_unresolved += 1
            codes.forget(e)
            return [(info, 0, 0, e.tier)]
        out = []
        last = len(chain) - 1
        for k, (s, off) in enumerate(chain):
            fi = info if k == last else heap.sfi_info(s)
            if fi is None:
                st.inline_unresolved += 1
                return [(info, 0, 0, e.tier)]
            sc = heap.script(fi.script) if fi.script else None
            line, col = heap.line_col(sc, off) if (sc is not None and off >= 0) else (0, 0)
            out.append((fi, line, col, e.tier if k == last else "inlined"))
        return out

    def _kernel_frame(self, pc):
        """Frame id of a kernel address, named from /proc/kallsyms (read once; '[kernel]' when hidden)."""
        fid = self._kernel_ids.get(pc)
        if fid is None:
            if self._kallsyms is None:
                self._kallsyms = kallsyms()
            addrs, names = self._kallsyms
            i = bisect.bisect_right(addrs, pc) - 1
            name = names[i] if i >= 0 else "[kernel]"
            fid = self._kernel_ids[pc] = self.ft.add(name, "[kernel.kallsyms]", hint="kernel")
        return fid

    def _tier(self, tier, bca, bco):
        heap = self.heap
        is_bc = bca is not None and heap.is_heap(bca) and heap.itype(bca) == heap.t_bytecode
        if tier == "jit":
            return "baseline" if is_bc else "optimized"
        # '?': a frameless builtin was running on top of this frame
        if is_bc:
            return "interpreted" if (bco is not None and bco & 1 == 0) else "baseline"
        return "optimized"

    def _native(self, pc):
        """The placeholder id (negative) of a native pc's function: pcs in one function share it, so the
        paths of a long capture repeat instead of growing with every pc a native leaf was seen at (the
        frame is named once, at the end: names are demangled in one batch)."""
        i = self.native_ids.get(pc)
        if i is None:
            name, module, _ = self.space.symbolize(pc) if self.space else (None, "", None)
            key = (name, module or "", not name and self.space is not None and self.space.classify(pc) == 1)
            i = self._native_by_key.get(key)
            if i is None:
                i = self._native_by_key[key] = -1 - len(self.native_keys)
                self.native_keys.append(key)
            if len(self.native_ids) < 500_000:
                self.native_ids[pc] = i
        return i

    # ------------------------------------------------------------- result (after both threads ended)
    def profile(self, meta):
        """The Profile of everything decoded so far, with ``meta`` (complete, as the sampler made it).

        Call after the sampler and decoder threads ended; takes :attr:`lock` all the same."""
        with self.lock:
            return self._profile(meta)

    def _profile(self, md):
        st = self.stats
        wk = md.setdefault("walker", {})
        wk["inlined_frames"] = st.inlined_frames
        wk["code"] = dict(self.codes.stats, not_js_code=st.code_unknown, inline_unresolved=st.inline_unresolved)
        if self.codes.why:
            md["warnings"] = list(md.get("warnings", [])) + [f"walker: {self.codes.why}"]
        dem = demangle(sorted({name for name, _, _ in self.native_keys if name}))
        nid = []
        for name, module, jit in self.native_keys:
            is_builtin = bool(name) and name.startswith("Builtins_")
            if name:
                nm = clean_native(dem.get(name, name))
            elif jit:
                nm = "(JIT code)"
                is_builtin = True
            else:
                nm = f"[{os.path.basename(module)}]" if module else "[unknown]"
            nid.append(self.ft.add(nm, module, hint="builtin" if is_builtin else "native"))
        # the distinct paths as a tree (one node per distinct prefix), every sample at its path's leaf node;
        # the per-sample arrays are read in place (no per-sample Python objects, no copy of the paths)
        nid = np.asarray(nid, np.int64)
        children: dict = {}
        node_parent = array("q")
        node_frame = array("q")
        path_node = np.empty(len(self._paths), np.int64)
        for p, ids in enumerate(self._paths):
            node = -1
            for i in ids:
                f = i if i >= 0 else int(nid[-1 - i])
                key = (node, f)
                c = children.get(key)
                if c is None:
                    c = children[key] = len(node_frame)
                    node_parent.append(node)
                    node_frame.append(f)
                node = c
            path_node[p] = node
        del children
        # the per-sample arrays go to the builder as views (each sample's path is its group, whose node is
        # path_node[path]): no per-sample node, key or code array is made here, and the builder reads
        # them a chunk at a time (see build_from_tree)
        n = len(self._sample_path)
        if not n:
            return build_from_tree(self.ft, np.frombuffer(node_parent, np.int64) if len(node_parent) else
                                   np.empty(0, np.int64),
                                   np.frombuffer(node_frame, np.int64) if len(node_frame) else np.empty(0, np.int64),
                                   np.empty(0, np.int64), times=np.empty(0, np.int64), threads=[], meta=md)
        return build_from_tree(self.ft, np.frombuffer(node_parent, np.int64), np.frombuffer(node_frame, np.int64),
                               np.frombuffer(self._sample_path, np.int32), group_node=path_node,
                               times=np.frombuffer(self._times, np.int64),
                               threads=(np.frombuffer(self._sample_label, np.uint16), self._label_names),
                               sample_line=np.frombuffer(self._sample_line, np.int32), meta=md)
