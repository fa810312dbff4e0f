"""Fixing what V8's CPU profiler gets wrong on optimized code, from the source.

Two known faults of V8's sampling profiler (``Profiler`` domain, ``--cpu-prof``),
on every node version nodeflame supports:

1. **Leaf-inlined time is charged to the outer function.**  V8 expands the
   inline stack of the return addresses of a sample, never of its pc
   (``Symbolizer::SymbolizeTickSample``): when the running code is an
   optimized function ``lexer`` into which TurboFan or Maglev inlined
   ``tokenize`` and ``parseToken``, the sample is ``lexer``'s self time.
   The per-line ticks of that node (``positionTicks``, the profile's
   ``lines`` table here) still carry the line of the innermost inlined
   function, so :func:`reattribute_inlined` splits each node's self samples
   by those lines: a line outside the node's own function goes to the
   innermost function that contains it (looked for in the node's own script,
   else, for cross-script inlining, in the scripts of the node's callees in
   the profile, else in the scripts its script loads by a relative path,
   ``require('./lib')`` or ``import ... from './lib.js'``, else in the scripts
   that define a function it calls by name), and the inlined frames between the two are rebuilt from a
   static by-name call chain in the source (``lexer -> tokenize ->
   parseToken``), or from the node's callees in the profile.  Every frame
   added this way has the tier ``inlined``.
2. **OSR code compiled before the profiler started is unknown to it**: a
   function that runs such code (one long call of a hot loop) shows less than
   it runs and its caller gets the samples, as self time on the line of the
   call.  Time in builtins an optimized function calls can land there too.
   :func:`reattribute_call_lines` finds those lines and, where the line calls
   one function only, puts the samples back under it.

Limits: ``positionTicks`` give a line, not a column nor a script, so lines
shared by several functions (one-line minified bundles, ``xs.map(x => ...)``)
cannot be split, and a cross-script inlinee whose line number also falls in
the outer function's own script is not seen; intermediate frames come from
calls by name (a heuristic); which of a node's samples moved is not known
(the samples are split in proportion to the ticks, interleaved in time).
What cannot be split stays where V8 put it and is counted.

The inputs are what the capture can fetch after ``Profiler.stop``: for each
script url, its source and its function ranges (``Profiler.getBestEffortCoverage``:
name, start and end offsets in UTF-16 code units), as :class:`Script`.  No I/O here.
"""
from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .kinds import classify, package_of
from .profile import Profile

INLINED = "inlined"
JS_KINDS = ("js", "deps", "node")
MAX_CHAIN = 8          # longest static call chain looked for (functions)
MAX_DESCENDANTS = 400  # callee nodes of one stack searched for a chain start
WARN_SHARE = 0.005     # unsplit / OSR shares below this fraction of the samples are counted, not warned
MIN_OSR_SAMPLES = 5    # a call line with fewer self samples (or a smaller share) is ordinary call overhead
MIN_OSR_SHARE = 0.005

_KEYWORDS = frozenset("""if for while switch catch function return typeof await yield new super import do
else with void delete in of instanceof case throw try finally class extends let const var this""".split())
_CALL = re.compile(r"(?<![\w$])([A-Za-z_$][\w$]*)\s*\(")
_LOOP = re.compile(r"(?<![\w$.])(for|while|do)(?![\w$])")
_SUSPEND = re.compile(r"(?<![\w$.])(await|yield)(?![\w$])")
# a module loaded by a path or a package's name: require('./x'), import('./x'), import ... from 'pkg/x', import './x'
_LOADS = re.compile(r"""(?<![\w$.])(?:require\s*\(\s*|import\s*\(\s*|from\s*|import\s*)(['"])"""
                    r"""(\.\.?/[^'"\n]{1,400}|(?:@[\w.-]+/)?[\w][\w.-]*(?:/[^'"\n]{1,400})?)\1""")
_EXTENSIONS = ("", ".js", ".cjs", ".mjs", ".ts", ".cts", ".mts", "/index.js", "/index.mjs", "/index.ts")
PACKAGE_FILES = 16     # files of one package loaded by name (no entry point found) taken at most


def url_path(url: str) -> str | None:
    """The file path of a script url (``file:///a/b.js`` or ``/a/b.js``); None for any other url."""
    from urllib.parse import unquote, urlparse
    if url.startswith("file://"):
        return unquote(urlparse(url).path) or None
    if url.startswith("/"):
        return url
    return None


class PathIndex:
    """Script urls by their normalised file path, for :func:`loaded_urls` (made once for many scripts)."""

    def __init__(self, urls):
        import posixpath
        self.by_path: dict = {}
        for u in urls:
            pth = url_path(u)
            if pth:
                self.by_path.setdefault(posixpath.normpath(pth), u)
        self.paths = sorted(self.by_path)

    def under(self, root: str) -> list:
        """The urls of the files below directory ``root``, by path."""
        import bisect
        lo = bisect.bisect_left(self.paths, root + "/")
        hi = bisect.bisect_left(self.paths, root + "0")   # '0' follows '/'
        return [self.by_path[p] for p in self.paths[lo:hi]]


def loaded_urls(source: str, url: str, urls) -> list:
    """Those of ``urls`` (script urls, or a :class:`PathIndex` of them made once for many scripts) that
    the script ``url`` (its ``source``) loads, in the order the source names them: by a relative path
    (``require('./lib')``, ``import ... from '../lib.js'``: node's resolution of a file, an extension
    or a directory's index), or a package by name from a ``node_modules``
    of its directory or one above (``require('pkg/sub')`` as a path in the package; ``require('pkg')``
    its ``index`` if that was loaded, else the package's loaded files, ``PACKAGE_FILES`` at most:
    its entry point is in a package.json, not read here).  A built-in module (``fs``) is no file."""
    import posixpath
    base = url_path(url)
    if not base:
        return []
    index = urls if isinstance(urls, PathIndex) else PathIndex(urls)
    by_path = index.by_path
    out: list = []

    def take(u):
        if u not in out and u != url:
            out.append(u)

    def resolve(p):
        for ext in _EXTENSIONS:
            u = by_path.get(p + ext)
            if u is not None:
                return u
        return None

    here = posixpath.dirname(base)
    for m in _LOADS.finditer(source):
        spec = m.group(2)
        if spec.startswith("."):
            u = resolve(posixpath.normpath(posixpath.join(here, spec)))
            if u is not None:
                take(u)
            continue
        parts = spec.split("/")
        k = 2 if spec.startswith("@") else 1
        name, sub = "/".join(parts[:k]), "/".join(parts[k:])
        d = here
        while True:
            root = posixpath.join(d, "node_modules", name)
            if sub:
                u = resolve(posixpath.normpath(posixpath.join(root, sub)))
                if u is not None:
                    take(u)
                    break
            else:
                u = resolve(root + "/index")
                files = [u] if u is not None else index.under(root)[:PACKAGE_FILES]
                if files:
                    for u in files:
                        take(u)
                    break
            if d in ("/", ""):
                break
            d = posixpath.dirname(d)
    return out


@dataclass
class Script:
    """One script of the target: its url, source text and function ranges.

    ``functions``: (name, start, end) per function, offsets in UTF-16 code
    units from the start of ``source`` (as the DevTools protocol counts)."""
    url: str
    source: str
    functions: list = field(default_factory=list)


class _Index:
    """Lines and function ranges of one script, with the queries the split needs."""

    def __init__(self, script: Script):
        self.url = script.url
        self.source = script.source
        self.u16 = np.frombuffer(script.source.encode("utf-16-le", "surrogatepass"), dtype="<u2")
        n = len(self.u16)
        self.n = n
        u = self.u16
        # V8's line terminators: \n, \r not followed by \n, U+2028, U+2029
        cr = np.flatnonzero(u == 13)
        cr = cr[(cr + 1 >= n) | (u[np.minimum(cr + 1, n - 1)] != 10)] if len(cr) else cr
        ends = np.sort(np.concatenate([np.flatnonzero((u == 10) | (u == 0x2028) | (u == 0x2029)), cr]))
        self.line_starts = np.concatenate([[0], ends + 1]).astype(np.int64)
        funcs = {}
        for name, start, end in script.functions:
            start, end = int(start), int(end)
            if end <= start or start < 0:
                continue
            funcs.setdefault((start, end), name or "")
        keys = sorted(funcs, key=lambda k: (k[0], -k[1]))
        self.names = [funcs[k] for k in keys]
        # the script's top level (a module's code): a caller, never inlined anywhere
        self.toplevel = np.asarray([k[0] == 0 and k[1] >= n - 1 and not funcs[k] for k in keys], bool)
        self.starts = np.asarray([k[0] for k in keys], np.int64)
        self.ends = np.asarray([k[1] for k in keys], np.int64)
        # enclosing function of each (ranges nest: sorted by start, longest first)
        self.parent = np.full(len(keys), -1, np.int64)
        stack: list = []
        for i, (s, e) in enumerate(keys):
            while stack and self.ends[stack[-1]] <= s:
                stack.pop()
            if stack and e <= self.ends[stack[-1]]:
                self.parent[i] = stack[-1]
            stack.append(i)
        self._owners: dict = {}
        self._calls: dict = {}
        self._loops: dict = {}
        self._clean: dict = {}

    # -- text
    def text(self, a: int, b: int) -> str:
        return self.u16[max(a, 0):max(b, 0)].tobytes().decode("utf-16-le", "replace")

    def line_of(self, off: int) -> int:
        return int(np.searchsorted(self.line_starts, off, side="right"))

    def nlines(self) -> int:
        return len(self.line_starts)

    def line_span(self, line: int):
        """(start, end) offsets of the non-blank part of 1-based ``line``, or None."""
        if not 1 <= line <= len(self.line_starts):
            return None
        a = int(self.line_starts[line - 1])
        b = int(self.line_starts[line]) - 1 if line < len(self.line_starts) else self.n
        t = self.text(a, b)
        s = t.strip()
        if not s:
            return None
        lead = len(t[:len(t) - len(t.lstrip())].encode("utf-16-le")) // 2
        body = len(s.encode("utf-16-le")) // 2
        return a + lead, a + lead + body

    def is_ancestor(self, a: int, b: int) -> bool:
        """Whether function a encloses function b (or is b)."""
        while b >= 0:
            if b == a:
                return True
            b = int(self.parent[b])
        return False

    # -- functions
    def func_at(self, line: int, column: int):
        """Innermost function containing 1-based (line, column), or None."""
        if not 1 <= line <= len(self.line_starts) or not len(self.starts):
            return None
        off = int(self.line_starts[line - 1]) + max(column, 1) - 1
        hit = np.flatnonzero((self.starts <= off) & (self.ends > off))
        if not len(hit):
            return None
        return int(hit[np.argmax(self.starts[hit])])

    def owners(self, line: int):
        """The functions with code on 1-based ``line``: a tuple of function indices
        (empty when none)."""
        got = self._owners.get(line)
        if got is not None:
            return got
        span = self.line_span(line)
        res: tuple = ()
        if span is not None and len(self.starts):
            a, b = span
            ov = [int(i) for i in np.flatnonzero((self.starts < b) & (self.ends > a))]
            if ov:
                ovs = set(ov)
                inner = [i for i in ov if not any(j != i and self.is_ancestor(i, j) for j in ovs)]
                cand = set(inner)
                for i in inner:
                    # the rest of the line belongs to the enclosing function(s)
                    j = i
                    while j >= 0 and not (self.starts[j] <= a and self.ends[j] >= b):
                        j = int(self.parent[j])
                        if j >= 0:
                            cand.add(j)
                res = tuple(sorted(i for i in cand if not self.toplevel[i]))
        self._owners[line] = res
        return res

    def func_pos(self, i: int):
        """1-based (line, column) V8 reports for function i: its parameter list's '(' when it is a
        named ``function``, else its start."""
        s = int(self.starts[i])
        head = self.text(s, min(s + 400, int(self.ends[i])))
        pos = s
        if self.names[i] and re.match(r"(?:async\s+)?function\b", head):
            k = head.find("(")
            if k > 0:
                pos = s + len(head[:k].encode("utf-16-le")) // 2
        line = self.line_of(pos)
        return line, pos - int(self.line_starts[line - 1]) + 1

    # -- code of one function, without strings, comments and nested functions
    def clean(self, i: int) -> str:
        got = self._clean.get(i)
        if got is not None:
            return got
        s, e = int(self.starts[i]), int(self.ends[i])
        chars = list(_blank_literals(self.text(s, e)))
        # blank nested functions (direct children; theirs are inside them)
        kids = np.flatnonzero(self.parent == i)
        if len(kids) and self.u16[s:e].max(initial=0) < 0xD800:  # offsets are indices (no surrogates)
            for k in kids:
                a, b = int(self.starts[k]) - s, int(self.ends[k]) - s
                for p in range(max(a, 0), min(b, len(chars))):
                    if chars[p] != "\n":
                        chars[p] = " "
        out = "".join(chars)
        self._clean[i] = out
        return out

    def line_code(self, i: int, line: int) -> str:
        """The code of function i on 1-based ``line`` (strings, comments and nested functions blanked)."""
        lines = self.clean(i).split("\n")
        k = line - self.line_of(int(self.starts[i]))
        return lines[k] if 0 <= k < len(lines) else ""

    def calls(self, i: int, line: int | None = None) -> set:
        """Names function i calls (on 1-based ``line`` only, when given)."""
        key = (i, line)
        got = self._calls.get(key)
        if got is not None:
            return got
        code = self.clean(i) if line is None else self.line_code(i, line)
        head = _header_end(code) if line is None or line == self.line_of(int(self.starts[i])) else 0
        names = {m.group(1) for m in _CALL.finditer(code) if m.start() >= head} - _KEYWORDS
        self._calls[key] = names
        return names

    def has_loop(self, i: int) -> bool:
        return bool(self.loop_lines(i))

    def loop_lines(self, i: int) -> set:
        """1-based lines of function i that are inside one of its loops (for/while/do)."""
        got = self._loops.get(i)
        if got is not None:
            return got
        code = self.clean(i)
        first = self.line_of(int(self.starts[i]))
        out: set = set()
        for m in _LOOP.finditer(code):
            end = _loop_end(code, m.end(), m.group(1))
            l0 = first + code.count("\n", 0, m.start())
            l1 = first + code.count("\n", 0, end)
            out.update(range(l0, l1 + 1))
        self._loops[i] = out
        return out


def _blank_literals(code: str):
    """``code`` with the contents of strings, template literals and comments replaced by spaces
    (newlines kept, so lines still count)."""
    out = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if c == "/" and i + 1 < n and code[i + 1] in "/*":
            end = code.find("\n", i) if code[i + 1] == "/" else code.find("*/", i + 2)
            end = n if end < 0 else (end if code[i + 1] == "/" else end + 2)
            out.append("".join(ch if ch == "\n" else " " for ch in code[i:end]))
            i = end
        elif c in "'\"`":
            j = i + 1
            while j < n and code[j] != c:
                if code[j] == "\\":
                    j += 1
                elif code[j] == "\n" and c != "`":
                    break
                j += 1
            end = min(j + 1, n)
            out.append(c + "".join(ch if ch == "\n" else " " for ch in code[i + 1:end - 1]) + code[end - 1:end])
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _header_end(code: str) -> int:
    """Where a function's body starts (after ``function name(params) {`` or ``(params) =>``): its own
    name and parameter list are no calls."""
    i = code.find("(")
    if i < 0:
        return 0
    return _match(code, i, "(", ")")


def _match(code: str, i: int, open_: str, close: str) -> int:
    """Index after the bracket matching the one at code[i] (or len(code))."""
    depth = 0
    for j in range(i, len(code)):
        if code[j] == open_:
            depth += 1
        elif code[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    return len(code)


def _skip_ws(code: str, i: int) -> int:
    while i < len(code) and code[i].isspace():
        i += 1
    return i


def _loop_end(code: str, i: int, kw: str) -> int:
    """End of the loop whose keyword ends at i: after its body (and, for do, its while (...))."""
    if kw != "do":
        i = _skip_ws(code, i)
        if i < len(code) and code[i] == "(":
            i = _match(code, i, "(", ")")
    i = _skip_ws(code, i)
    if i < len(code) and code[i] == "{":
        end = _match(code, i, "{", "}")
    else:
        semi = code.find(";", i)
        end = len(code) if semi < 0 else semi + 1
    if kw == "do":
        j = _skip_ws(code, end)
        if code.startswith("while", j):
            k = _skip_ws(code, j + 5)
            end = _match(code, k, "(", ")") if k < len(code) and code[k] == "(" else j + 5
    return end


# ---------------------------------------------------------------------------------------------- split
class _Work:
    """The profile's tree, with the script indexes and the funcs/frames/stacks being added."""

    def __init__(self, prof: Profile, scripts: dict):
        self.prof = prof
        self.idx = {url: (s if isinstance(s, _Index) else _Index(s)) for url, s in scripts.items()}
        f = prof.funcs
        self.fname = f["name"].astype(str).to_numpy(object)
        self.ffile = f["file"].astype(str).to_numpy(object)
        self.fline = f["line"].to_numpy()
        self.fcol = f["column"].to_numpy()
        self.fkind = f["kind"].astype(str).to_numpy(object)
        st = prof.stacks
        self.prefix = st["prefix"].to_numpy().astype(np.int64)
        self.sframe = st["frame"].to_numpy().astype(np.int64)
        self.depth = st["depth"].to_numpy().astype(np.int64)
        self.frame_func = prof.frames["func"].to_numpy().astype(np.int64)
        self.stack_func = self.frame_func[self.sframe] if len(self.sframe) else np.empty(0, np.int64)
        self._children = None
        self._loads: dict = {}
        self._paths: PathIndex | None = None
        self._defining: dict = {}
        self._own: dict = {}
        self._fid: dict = {}          # (url, function index) -> func row
        self._by_name: dict | None = None
        self.new_funcs: list = []     # (name, file, line, column, kind, package)
        self.new_frames: dict = {}    # (func row, tier) -> frame row
        self.new_stacks: list = []    # (prefix, frame, depth)
        self.stack_key: dict | None = None
        self.no_chain = 0

    # -- tree
    def children(self, s: int) -> list:
        if self._children is None:
            ch: dict = {}
            for i, p in enumerate(self.prefix.tolist()):
                ch.setdefault(p, []).append(i)
            self._children = ch
        return self._children.get(s, [])

    def descendants(self, s: int):
        """(stack, path of stacks below s) breadth first, bounded."""
        out = []
        todo = deque((c, (c,)) for c in self.children(s))
        while todo and len(out) < MAX_DESCENDANTS:
            c, path = todo.popleft()
            out.append((c, path))
            if len(path) < MAX_CHAIN:
                todo.extend((k, path + (k,)) for k in self.children(c))
        return out

    def defining(self, ix: _Index, g: int) -> list:
        """The indexed scripts besides ``ix`` that define a function that function ``g`` of ``ix`` calls by
        name, or that a function of ``ix`` it calls does (and so on: what V8 inlined into g), nearest
        first."""
        key = (ix.url, g)
        if key in self._defining:
            return self._defining[key]
        out: list = self._defining.setdefault(key, [])
        names = self.by_name()
        seen = {g}
        todo = deque([(g, 1)])
        while todo:
            c, d = todo.popleft()
            for nm in sorted(ix.calls(c)):
                for dix, h in names.get(nm, ()):
                    if dix is not ix:
                        if dix not in out:
                            out.append(dix)
                    elif h not in seen and d < MAX_CHAIN:
                        seen.add(h)
                        todo.append((h, d + 1))
        return out

    def loads(self, ix: _Index) -> list:
        """The indexed scripts that script ``ix`` loads by a relative path."""
        got = self._loads.get(ix.url)
        if got is None:
            if self._paths is None:
                self._paths = PathIndex(self.idx)
            got = self._loads[ix.url] = [self.idx[u] for u in loaded_urls(ix.source, ix.url, self._paths)]
        return got

    # -- functions of the profile in the scripts
    def own(self, func: int):
        """(index, function index) of profile function ``func`` in its script, or None."""
        if func in self._own:
            return self._own[func]
        res = None
        ix = self.idx.get(self.ffile[func])
        if ix is not None and self.fkind[func] in JS_KINDS and self.fline[func] > 0:
            g = ix.func_at(int(self.fline[func]), int(self.fcol[func]))
            if g is not None:
                res = (ix, g)
        self._own[func] = res
        return res

    def func_row(self, ix: _Index, g: int) -> int:
        """The funcs row of function g of script ix: an existing one when the profile has it."""
        key = (ix.url, g)
        got = self._fid.get(key)
        if got is not None:
            return got
        rows = np.flatnonzero(self.ffile == ix.url)
        for r in rows.tolist():
            if self.fkind[r] in JS_KINDS and self.fline[r] > 0 and ix.func_at(int(self.fline[r]),
                                                                             int(self.fcol[r])) == g:
                self._fid[key] = r
                return r
        line, col = ix.func_pos(g)
        name = ix.names[g]
        kind = classify(name, ix.url, "js")
        for r in rows.tolist():      # a row with exactly that key (its position mapped elsewhere): reuse it
            if (self.fname[r], int(self.fline[r]), int(self.fcol[r]), self.fkind[r]) == (name, line, col, kind):
                self._fid[key] = r
                return r
        for j, nf in enumerate(self.new_funcs):  # the same function made new before (another url key)
            if nf[:4] == (name, ix.url, line, col):
                r = len(self.fname) + j
                self._fid[key] = r
                return r
        self.new_funcs.append((name, ix.url, line, col, kind, package_of(ix.url)))
        r = len(self.fname) + len(self.new_funcs) - 1
        self._fid[key] = r
        return r

    def by_name(self) -> dict:
        if self._by_name is None:
            d: dict = {}
            for url, ix in self.idx.items():
                for g, nm in enumerate(ix.names):
                    for key in {nm, nm.rsplit(".", 1)[-1]} - {""}:   # Class.method is called as method()
                        d.setdefault(key, []).append((ix, g))
            self._by_name = d
        return self._by_name

    def chain(self, ix: _Index, a: int, tix: _Index, t: int):
        """Shortest static call chain [(ix, a), ..., (tix, t)] by name, or None."""
        if ix is tix and a == t:
            return [(ix, a)]
        names = self.by_name()
        prev = {(ix.url, a): None}
        todo = deque([(ix, a, 1)])
        while todo:
            cix, c, d = todo.popleft()
            if d >= MAX_CHAIN:
                continue
            for nm in sorted(cix.calls(c)):
                targets = names.get(nm, [])
                same = [x for x in targets if x[0] is cix]
                for nix, n in (same or targets):
                    k = (nix.url, n)
                    if k in prev:
                        continue
                    prev[k] = (cix, c)
                    if nix is tix and n == t:
                        path = [(nix, n)]
                        p = prev[k]
                        while p is not None:
                            path.append(p)
                            p = prev[(p[0].url, p[1])]
                        return path[::-1]
                    todo.append((nix, n, d + 1))
        return None

    def inlined_path(self, s: int, own, target) -> list:
        """Funcs rows of the inlined frames below stack s for a tick in function ``target``."""
        oix, o = own
        tix, t = target
        ch = self.chain(oix, o, tix, t)
        if ch is not None:
            return [self.func_row(x, g) for x, g in ch[1:]]
        # cross-script or indirect calls: start from a callee the profile shows under s
        for d, path in self.descendants(s):
            od = self.own(int(self.stack_func[d]))
            if od is None or od[0] is not tix:
                continue
            above = [int(self.stack_func[p]) for p in path]
            if od[1] == t:
                return above[:-1] + [self.func_row(tix, t)]
            ch = self.chain(od[0], od[1], tix, t)
            if ch is not None:
                return above + [self.func_row(x, g) for x, g in ch[1:]]
        self.no_chain += 1
        return [self.func_row(tix, t)]

    # -- new rows
    def frame_for(self, func: int, tier: str = INLINED) -> int:
        fr = self.new_frames.get((func, tier))
        if fr is None:
            fr = self.new_frames[(func, tier)] = len(self.prof.frames) + len(self.new_frames)
        return fr

    def stack_for(self, prefix: int, frame: int) -> int:
        if self.stack_key is None:
            self.stack_key = {(int(p), int(f)): i for i, (p, f) in enumerate(zip(self.prefix, self.sframe))}
        k = (prefix, frame)
        got = self.stack_key.get(k)
        if got is None:
            d = (self.depth[prefix] if prefix < len(self.depth) else self.new_stacks[prefix - len(self.depth)][2]) + 1
            got = len(self.depth) + len(self.new_stacks)
            self.new_stacks.append((prefix, frame, int(d)))
            self.stack_key[k] = got
        return got


def _largest_remainder(total: int, parts) -> np.ndarray:
    parts = np.asarray(parts, np.float64)
    if total <= 0 or parts.sum() <= 0:
        return np.zeros(len(parts), np.int64)
    exact = parts * (total / parts.sum())
    out = np.floor(exact).astype(np.int64)
    rest = total - int(out.sum())
    if rest > 0:
        out[np.argsort(-(exact - out), kind="stable")[:rest]] += 1
    return out


def reattribute_inlined(prof: Profile, scripts: dict) -> tuple[Profile, dict]:
    """Split the self samples of V8 CPU profile nodes by their per-line ticks (see the module doc).

    ``scripts``: url -> :class:`Script`.  Returns (a new Profile, a report
    dict): ``samples`` (total weight), ``reattributed`` (weight moved to
    inlined frames), ``stacks_split``, ``inlined_frames`` (distinct new frames),
    ``functions`` (weight per re-attributed function, ``name file:line``),
    ``unsplit`` (weight that stays because its line is shared by several
    functions or is in no known function, by reason), ``no_chain`` (targets
    put right under the outer function, no call chain found), ``wanted``
    (url -> weight whose split needs that script's source), ``warnings``."""
    w = _Work(prof, scripts)
    weights = prof.stack_weights()
    total = int(prof.samples["weight"].sum())
    lines = prof.lines
    report = {"samples": total, "reattributed": 0, "stacks_split": 0, "inlined_frames": 0, "functions": {},
              "unsplit": {"shared_line": 0, "no_function": 0, "ambiguous": 0}, "no_chain": 0, "wanted": {},
              "warnings": []}
    if not len(lines) or total == 0:
        return prof, report
    ls = lines["stack"].to_numpy().astype(np.int64)
    ll = lines["line"].to_numpy().astype(np.int64)
    lt = lines["ticks"].to_numpy().astype(np.int64)
    order = np.argsort(ls, kind="stable")
    bounds = np.flatnonzero(np.diff(ls[order])) + 1
    plans = {}          # stack -> (groups [(leaf stack or -1, ticks)], line moves {line: leaf})
    unsplit_w = {"shared_line": 0.0, "no_function": 0.0, "ambiguous": 0.0}
    wanted: dict = {}
    for grp in np.split(order, bounds):
        if not len(grp):
            continue
        s = int(ls[grp[0]])
        self_w = int(weights[s]) if s < len(weights) else 0
        ticks_total = int(lt[grp].sum())
        if self_w <= 0 or ticks_total <= 0:
            continue
        per_tick = self_w / ticks_total
        func = int(w.stack_func[s])
        if w.fkind[func] not in JS_KINDS or not w.ffile[func]:
            continue
        own = w.own(func)
        if own is None:
            if w.ffile[func] not in w.idx:
                wanted[w.ffile[func]] = wanted.get(w.ffile[func], 0) + self_w
            continue
        oix, o = own
        targets: dict = {}   # (url, g) -> [ticks, lines]
        for k in grp.tolist():
            line, t = int(ll[k]), int(lt[k])
            cand = oix.owners(line)
            if not cand and oix.toplevel[o]:
                continue   # the node is a script's top level and this line is top-level code
            if o in cand:
                if len(cand) > 1 and any(not oix.is_ancestor(c, o) for c in cand):
                    unsplit_w["shared_line"] += t * per_tick
                continue
            if len(cand) == 1:
                tgt = (oix, cand[0])
            elif len(cand) > 1:
                unsplit_w["ambiguous"] += t * per_tick
                continue
            else:
                # not in the node's own script: a cross-script inlinee, in a callee's script
                found, missing = [], []
                seen = {oix.url}
                for d, _path in w.descendants(s):
                    url = w.ffile[int(w.stack_func[d])]
                    if url in seen or not url:
                        continue
                    seen.add(url)
                    dix = w.idx.get(url)
                    if dix is None:
                        if w.fkind[int(w.stack_func[d])] in JS_KINDS:
                            missing.append(url)
                        continue
                    c2 = dix.owners(line)
                    if len(c2) == 1:
                        found.append((dix, c2[0]))
                    elif len(c2) > 1:
                        found.append(None)
                # an inlinee with no node of its own anywhere (V8 inlined every call of it): in a script
                # the outer function's script loads by a relative path, else in one that defines a
                # function the outer function calls by name; a line of a function the outer function
                # does not reach by a chain of calls by name is a coincidence of line numbers, not taken
                for more in (w.loads(oix), w.defining(oix, o)):
                    if found:
                        break
                    for dix in more:
                        if dix.url in seen:
                            continue
                        seen.add(dix.url)
                        c2 = dix.owners(line)
                        if len(c2) > 1:
                            found.append(None)
                        elif len(c2) == 1 and w.chain(oix, o, dix, c2[0]) is not None:
                            found.append((dix, c2[0]))
                if len(found) == 1 and found[0] is not None:
                    tgt = found[0]
                else:
                    unsplit_w["ambiguous" if found else "no_function"] += t * per_tick
                    for url in missing:
                        wanted[url] = wanted.get(url, 0) + t * per_tick
                    continue
            key = (tgt[0].url, tgt[1])
            ent = targets.setdefault(key, [tgt, 0, []])
            ent[1] += t
            ent[2].append(line)
        if not targets:
            continue
        groups, moves = [], {}
        for _key, (tgt, t, tl) in targets.items():
            path = w.inlined_path(s, own, tgt)
            leaf = s
            for fr in path:
                leaf = w.stack_for(leaf, w.frame_for(fr))
            groups.append((leaf, t, path[-1]))
            for line in tl:
                moves[line] = leaf
        plans[s] = (groups, moves, ticks_total - sum(g[1] for g in groups))
    report["no_chain"] = w.no_chain
    report["unsplit"] = {k: int(round(v)) for k, v in unsplit_w.items()}
    report["wanted"] = {k: int(round(v)) for k, v in sorted(wanted.items(), key=lambda kv: -kv[1])}
    if not plans:
        _unsplit_warning(report, total)
        return prof, report
    new = _apply(prof, w, plans, report)
    _unsplit_warning(report, total)
    return new, report


def _unsplit_warning(report, total):
    n = sum(report["unsplit"].values())
    if total and n / total >= WARN_SHARE:
        why = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report["unsplit"].items() if v)
        report["warnings"].append(
            f"{n} samples ({100 * n / total:.1f} %) that V8 charged to an optimized function could not be split "
            f"among the functions inlined into it ({why}: a line shared by several functions, as in minified "
            "code, or in no function whose source is known); they stay with that function")


def _apply(prof: Profile, w: _Work, plans: dict, report: dict | None = None, remap: dict | None = None) -> Profile:
    """The profile with ``plans`` (stack -> (groups, line moves, own ticks): its self samples split
    among leaves) and ``remap`` (stack -> stack: whole nodes moved elsewhere) carried out; what was
    moved goes into ``report`` when given (reattribute_inlined's)."""
    remap = remap or {}
    report = {"stacks_split": 0} if report is None else report
    sa = prof.samples
    stack = sa["stack"].to_numpy().astype(np.int64)
    weight = sa["weight"].to_numpy().astype(np.int64)
    rep = np.ones(len(sa), np.int64)
    new_stack_of_row: dict = {}   # row -> list of (stack, weight) for split weighted rows
    out_stack = stack.copy()
    func_w: dict = {}
    moved = 0
    rows_by_stack = pd.Series(np.arange(len(sa))).groupby(stack).indices if len(sa) else {}
    for s, to in remap.items():
        out_stack[np.asarray(rows_by_stack.get(s, []), np.int64)] = to
    for s, (groups, _moves, own_ticks) in plans.items():
        rows = np.asarray(rows_by_stack.get(s, []), np.int64)
        if not len(rows):
            continue
        ticks = [own_ticks] + [g[1] for g in groups]
        leaves = np.asarray([s] + [g[0] for g in groups], np.int64)
        rw = weight[rows]
        if (rw == 1).all():
            n = _largest_remainder(len(rows), ticks)
            # interleave the groups in time: group g's j-th sample at (j + 0.5) / n_g
            pos = np.concatenate([(np.arange(k) + 0.5) / k for k in n if k]) if n.sum() else np.empty(0)
            lab = np.concatenate([np.full(k, i) for i, k in enumerate(n) if k]) if n.sum() else np.empty(0, int)
            out_stack[rows] = leaves[lab[np.argsort(pos, kind="stable")]]
            got = n
        else:
            got = np.zeros(len(ticks), np.int64)
            for r in rows.tolist():
                parts = _largest_remainder(int(weight[r]), ticks)
                keep = np.flatnonzero(parts)
                new_stack_of_row[r] = [(int(leaves[i]), int(parts[i])) for i in keep]
                rep[r] = max(len(keep), 1)
                got += parts
        for (leaf, _t, fr), k in zip(groups, got[1:]):
            moved += int(k)
            nm = w.fname[fr] if fr < len(w.fname) else w.new_funcs[fr - len(w.fname)][0]
            fl = w.ffile[fr] if fr < len(w.fname) else w.new_funcs[fr - len(w.fname)][1]
            ln = w.fline[fr] if fr < len(w.fname) else w.new_funcs[fr - len(w.fname)][2]
            lab_ = f"{nm or '(anonymous)'} {fl.rsplit('/', 1)[-1]}:{ln}"
            func_w[lab_] = func_w.get(lab_, 0) + int(k)
        report["stacks_split"] += 1
    # funcs
    funcs = prof.funcs
    if w.new_funcs:
        add = pd.DataFrame(w.new_funcs, columns=["name", "file", "line", "column", "kind", "package"])
        funcs = pd.concat([funcs.astype({c: object for c in ("name", "file", "kind", "package")}), add],
                          ignore_index=True)
    # frames: the inlined ones, with the frames table's other columns at their defaults
    frames = prof.frames
    if w.new_frames:
        keys = sorted(w.new_frames, key=w.new_frames.get)
        fr_funcs = np.asarray([k[0] for k in keys], np.int64)
        fl = funcs["line"].to_numpy()[fr_funcs]
        fc = funcs["column"].to_numpy()[fr_funcs]
        add = {"func": fr_funcs, "line": fl, "column": fc, "tier": [k[1] for k in keys],
               "label": [""] * len(fr_funcs)}
        for col in frames.columns:   # columns other readers or transforms added: their blank value
            if col not in add:
                add[col] = [0 if pd.api.types.is_numeric_dtype(frames[col]) else ""] * len(fr_funcs)
        frames = pd.concat([frames.astype({"tier": object, "label": object}),
                            pd.DataFrame(add, columns=list(frames.columns))], ignore_index=True)
    stacks = prof.stacks
    if w.new_stacks:
        stacks = pd.concat([stacks, pd.DataFrame(w.new_stacks, columns=["prefix", "frame", "depth"])],
                           ignore_index=True)
    # samples: moved rows get their new stack; split weighted rows become several rows
    if new_stack_of_row:
        idx = np.repeat(np.arange(len(sa)), rep)
        samples = sa.iloc[idx].reset_index(drop=True)
        st_new = out_stack[idx]
        wt_new = weight[idx]
        starts = np.cumsum(rep) - rep
        for r, parts in new_stack_of_row.items():
            for j, (leaf, k) in enumerate(parts):
                st_new[starts[r] + j] = leaf
                wt_new[starts[r] + j] = k
        samples["stack"] = st_new
        samples["weight"] = wt_new
    else:
        samples = sa.copy()
        samples["stack"] = out_stack
    # lines: a moved line's ticks go with its leaf
    lines = prof.lines.copy()
    if len(lines):
        lst = lines["stack"].to_numpy().astype(np.int64).copy()
        lln = lines["line"].to_numpy()
        for i in range(len(lst)):
            plan = plans.get(int(lst[i]))
            if plan is not None:
                lst[i] = plan[1].get(int(lln[i]), lst[i])
            else:
                lst[i] = remap.get(int(lst[i]), lst[i])
        lines["stack"] = lst
        lines = lines[lst >= 0]   # ticks a plan took off their line (moved to a frame of another function)
        lines = lines.groupby(["stack", "line"], as_index=False, sort=True)["ticks"].sum()
    meta = dict(prof.meta)
    new = Profile(funcs, frames, stacks, samples, meta, lines)
    report["reattributed"] = moved
    report["inlined_frames"] = sum(1 for _f, tier in w.new_frames if tier == INLINED)
    report["functions"] = dict(sorted(func_w.items(), key=lambda kv: -kv[1]))
    return new


# ----------------------------------------------------------------------------------- call lines
OSR_TIER = "optimized"  # the tier of a frame put back under a caller (the code V8's sampler missed is optimized)


def reattribute_call_lines(prof: Profile, scripts: dict) -> tuple[Profile, list, list]:
    """Self samples V8 charged to the line of a caller that calls the function that really ran: put
    back under that function where the line says which one it is.

    V8's sampler misses the frame of a running function in two ways, and
    charges the sample to the caller, as self time on the line of the call:

    * **OSR code compiled before the profiler started is unknown to it** (a
      long call of a hot loop);
    * **time in a builtin that an optimized function calls** (string
      concatenation, ``Number()``, array growth) can go one frame up (seen on
      the demo program against the walker, which sees every frame: with
      ``tokenize`` inlined into ``parse``, its string additions came out as
      ``handleRequest``'s self time on the line that calls ``parse``; which
      builtins and why was not pinned down in V8's stack walk).

    A caller's self ticks on a line that is in none of its loops, where every
    call on the line names one and the same function of the scripts (not the
    caller), are moved under that function: to its node under the caller, or
    to a new frame of it (tier ``optimized``; its own callees and lines are not
    known).  Lines that call several functions, or a method of no known
    script, stay with the caller and are counted.  The caller's callees in
    the profile that it does not call by name but the function does (a callee
    of the missing frame, hung under the caller) move under it too.

    Returns (profile, findings, warnings): each finding is a dict caller,
    callee (``a or b`` when it cannot be told), candidates, file, line,
    samples, share, moved (samples put back under the callee)."""
    w = _Work(prof, scripts)
    total = int(prof.samples["weight"].sum())
    lines = prof.lines
    if not total or not len(lines):
        return prof, [], []
    weights = prof.stack_weights()
    incl = weights.astype(np.float64).copy()
    for i in range(len(w.prefix) - 1, -1, -1):   # parents before children: accumulate upwards
        p = w.prefix[i]
        if p >= 0:
            incl[p] += incl[i]
    per: dict = {}
    ls = lines["stack"].to_numpy()
    ll = lines["line"].to_numpy()
    lt = lines["ticks"].to_numpy()
    tick_sum = np.bincount(ls, weights=lt, minlength=len(w.prefix))
    for k in range(len(ls)):
        s, line, t = int(ls[k]), int(ll[k]), int(lt[k])
        func = int(w.stack_func[s])
        own = w.own(func)
        if own is None or t <= 0:
            continue
        ix, o = own
        cand = ix.owners(line)
        if line in ix.loop_lines(o) or not (o in cand or (ix.toplevel[o] and not cand)):
            continue
        # a line that awaits or yields runs the caller's own suspend and resume code: not told apart
        callees, unknown = [], bool(_SUSPEND.search(ix.line_code(o, line)))
        for nm in sorted(ix.calls(o, line)):
            found = [x for x in w.by_name().get(nm, []) if not (x[0] is ix and x[1] == o)]
            if len(found) != 1:
                unknown = True     # a builtin, a method of no known script, a name several functions have
            for x in found:
                if x not in callees:
                    callees.append(x)
        if not callees:
            continue
        key = (s, tuple(callees), unknown)
        ent = per.setdefault(key, {
            "stack": s, "caller": w.fname[func] or "(anonymous)", "file": w.ffile[func], "line": line,
            "candidates": [cix.names[c] or "(anonymous)" for cix, c in callees], "samples": 0.0,
            "_ticks": {}, "_known": not unknown and len(callees) == 1})
        ent["samples"] += t * weights[s] / tick_sum[s] if tick_sum[s] else 0
        ent["_ticks"][line] = ent["_ticks"].get(line, 0) + t
    findings, plans, rehang = [], {}, {}
    for (s, callees, _u), ent in per.items():
        if ent["samples"] < MIN_OSR_SAMPLES or ent["samples"] < MIN_OSR_SHARE * total:
            continue   # a few samples on a call line: the call's own overhead
        ticks, known = ent.pop("_ticks"), ent.pop("_known")
        ent["callee"] = " or ".join(ent["candidates"])
        ent["moved"] = 0
        leaf = -1
        if known:
            fr = w.func_row(*callees[0])
            kids = [c for c in w.children(s) if int(w.stack_func[c]) == fr]
            leaf = max(kids, key=lambda c: incl[c]) if kids else w.stack_for(s, w.frame_for(fr, OSR_TIER))
            groups, moves = plans.setdefault(s, ([], {}))
            groups.append((leaf, sum(ticks.values()), fr))
            moves.update(dict.fromkeys(ticks, -1))
            ent["moved"] = int(round(ent["samples"]))
        own = w.own(int(w.stack_func[s]))
        mine = own[0].calls(own[1])
        names = set(ent["candidates"])
        theirs = set().union(*(cix.calls(c) for cix, c in callees))
        for c in w.children(s):
            nm = w.fname[int(w.stack_func[c])]
            key = nm.rsplit(".", 1)[-1]
            if nm not in names and key not in mine and key in theirs:
                # a function the caller does not call and the missing one does: a callee of the
                # missing frame, hung under the caller
                ent["samples"] += incl[c]
                if known and c not in rehang:
                    rehang[c] = (leaf, ent, int(round(incl[c])))
                    ent["moved"] += rehang[c][2]
        ent["samples"] = int(round(ent["samples"]))
        ent["share"] = ent["samples"] / total
        ent.pop("stack")
        findings.append(ent)
    findings.sort(key=lambda e: -e["samples"])
    new = prof
    if plans:
        plans = {s: (g, m, int(tick_sum[s]) - sum(x[1] for x in g)) for s, (g, m) in plans.items()}
        new = _apply(prof, w, plans, remap=_rehung(w, rehang, plans))
    return new, findings, _call_line_warnings(findings, total)


def _rehung(w: _Work, rehang: dict, plans: dict) -> dict:
    """old stack -> new stack for the subtrees ``rehang`` (top stack -> (new parent, finding, samples))
    moves under the function put back; a subtree holding a stack a plan splits stays where it is."""
    out: dict = {}
    for top, (parent, ent, n) in rehang.items():
        sub, todo = [], [top]
        while todo:
            c = todo.pop()
            sub.append(c)
            todo.extend(w.children(c))
        if any(c in plans for c in sub):
            ent["moved"] -= n
            continue
        out[top] = w.stack_for(parent, int(w.sframe[top]))
        for c in sub[1:]:                  # parents come before their children in ``sub``
            out[c] = w.stack_for(out[int(w.prefix[c])], int(w.sframe[c]))
    return out


def _call_line_warnings(findings: list, total: int) -> list:
    def where(fs):
        return "; ".join(f"{e['samples']} in {e['caller']} ({e['file'].rsplit('/', 1)[-1]}:{e['line']}, the call "
                         f"of {e['callee']})" for e in fs[:3])
    out = []
    what = ("a function whose frame V8's sampler missed (code it compiled by on-stack replacement (OSR) before "
            "the capture started, or a builtin the function was running) and charged to the caller's line "
            "that calls it")
    moved = [e for e in findings if e["moved"]]
    n = sum(e["samples"] for e in moved)
    if moved and n / total >= WARN_SHARE:
        out.append(f"{n} samples ({100 * n / total:.1f} %) belong to {what}: they are put back under that function "
                   f"({where(moved)}); a frame added for it has the tier {OSR_TIER!r} and no callees or lines "
                   "of its own")
    left = [e for e in findings if not e["moved"]]
    n = sum(e["samples"] for e in left)
    if left and n / total >= WARN_SHARE:
        out.append(f"{n} samples ({100 * n / total:.1f} %) belong to {what} ({where(left)}): which function "
                   "cannot be told from the line, so they stay with the caller; a capture started before the "
                   "call (nodeflame.run) or the walker backend names it")
    return out
