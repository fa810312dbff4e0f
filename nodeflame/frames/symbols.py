"""Parsing of symbol names: V8's perf-map names, demangled C++ and DTrace frames.

V8 writes one line per code object to ``/tmp/perf-<pid>.map`` (``node
--perf-basic-prof``) and perf prints those names for JIT frames.  Their form
changed over the years; all of these are understood::

    LazyCompile:*foo /app/x.js:12          node <= 18: '*' optimized, '~' unoptimized
    LazyCompile:~foo evalmachine.<anonymous>:1
    Function:^foo /app/x.js:12:3           '^' baseline (Sparkplug); line:column
    JS:*foo file:///app/x.mjs:12:3         node >= 20: one 'JS:' tag for every tier
    JS:+foo node:internal/timers:512:17    '+' maglev
    JS:*'foo /app/x.js:12:3                node >= 24: "'" after the tier marks context-specialised code
    Script:~ /app/x.js                     top-level code of a script
    Eval:~ [eval]:1:1
    Builtin:ArrayMap  BytecodeHandler:LdaZero  Stub:CEntryStub  RegExp:[a-z]+
    RegExp.> src: '[a-z]+' flags: 'g'      node >= 24's regular expression code
    Handler:...  LoadIC:...  KeyedStoreIC:...  Callback:...

:func:`parse_symbol` returns a :class:`Symbol` with the function name, its file,
its 1-based line and column (0 when unknown), the tier ('optimized' for ``*``,
'interpreted' for ``~``, 'baseline' for ``^``, 'maglev' for ``+``) and a kind
hint for :func:`nodeflame.frames.kinds.classify`.  Everything else (demangled
C++, C, Java) is kept verbatim as the name.

Function names may contain spaces (``get foo``, ``bound foo``); files may be
paths, ``file://`` or ``node:`` URLs, ``node.js`` (node 0.x) or
``evalmachine.<anonymous>``.  The split between name and file takes the first
space after the name's own ``get ``/``set ``/``bound `` prefixes.
"""
from __future__ import annotations

import re
from typing import NamedTuple

TIER_MARKERS = {"*": "optimized", "~": "interpreted", "^": "baseline", "+": "maglev"}

# tags whose code is a JavaScript function (or script) with a position
JS_TAGS = frozenset({"LazyCompile", "Function", "JS", "Script", "Eval", "InterpretedFunction",
                     "NativeFunction", "NativeScript", "NativeLazyCompile"})
# tags of V8-generated code that is not a user function
BUILTIN_TAGS = frozenset({
    "Builtin", "BytecodeHandler", "Stub", "RegExp", "Handler", "Callback", "CallIC", "CompareIC",
    "LoadIC", "StoreIC", "KeyedLoadIC", "KeyedStoreIC", "LoadGlobalIC", "StoreGlobalIC",
    "KeyedCallIC", "BinaryOpIC", "ToBooleanIC", "CompareNilIC", "StoreInArrayLiteralIC",
    "KeyedStorePolymorphicIC", "KeyedLoadPolymorphicIC", "LoadPolymorphicIC",
    "StorePolymorphicIC", "CallInitialize", "CallMegamorphic", "CallMiss", "CallNormal",
    "CallPreMonomorphic", "KeyedCallInitialize", "KeyedCallMegamorphic", "KeyedCallMiss",
    "KeyedCallNormal", "KeyedCallPreMonomorphic", "Interpreter", "Wasm", "WasmToJS", "JSToWasm",
    "Code", "Opt", "Unopt",
})

_TAG = re.compile(r"^([A-Z][A-Za-z]*):(.*)\Z", re.S)
# 'file:line' or 'file:line:column' at the end; the file part is what is left
_POS = re.compile(r"^(.*?):([0-9]+)(?::([0-9]+))?\Z", re.S)
_NAME_PREFIX = re.compile(r"^(?:(?:get|set|bound|async) )+")
_REGEXP_NEW = re.compile(r"^RegExp(?:\.>|\.|>)? src: ")
_DTRACE = re.compile(r"^([^`\s]+)`(.+)\Z", re.S)


class Symbol(NamedTuple):
    name: str
    file: str = ""
    line: int = 0
    column: int = 0
    tier: str = ""
    hint: str | None = None
    module: str = ""


def _split_name_file(rest: str):
    """'foo /a.js:3:4' -> ('foo', '/a.js', 3, 4); 'get x /a.js:1' keeps 'get x'."""
    if not rest:
        return "", "", 0, 0
    if rest[0] == " ":  # anonymous: 'LazyCompile:~ /a.js:3'
        name, tail = "", rest[1:]
    else:
        m = _NAME_PREFIX.match(rest)
        start = m.end() if m else 0
        sp = rest.find(" ", start)
        if sp < 0:
            return rest, "", 0, 0
        name, tail = rest[:sp], rest[sp + 1:]
    if not tail:
        return name, "", 0, 0
    m = _POS.match(tail)
    if m and m.group(1):
        return name, m.group(1), int(m.group(2)), int(m.group(3) or 0)
    return name, tail, 0, 0


def parse_v8(symbol: str) -> Symbol | None:
    """Parse a V8 code-event name (``Tag:marker name file:line:col``); None if it is not one."""
    m = _TAG.match(symbol)
    if m is None:
        if _REGEXP_NEW.match(symbol):  # V8 >= 12.x: "RegExp.> src: 'a+' flags: 'g'"
            return Symbol(symbol, "", 0, 0, "", "builtin")
        return None
    tag, rest = m.group(1), m.group(2)
    if tag in JS_TAGS:
        tier = ""
        if rest[:1] in TIER_MARKERS:
            tier, rest = TIER_MARKERS[rest[0]], rest[1:]
            if rest[:1] == "'":  # V8 >= 12.x: context-specialised optimised code ('*'' / '+'')
                rest = rest[1:]
        name, file, line, col = _split_name_file(rest)
        if tag in ("Script", "NativeScript") and not name:
            name = "(script)"
        return Symbol(name, file, line, col, tier, "js")
    if tag in BUILTIN_TAGS or tag.endswith("IC") or tag.endswith("Stub"):
        return Symbol(symbol, "", 0, 0, "", "builtin")
    return None


def is_builtin_symbol(name: str) -> bool:
    """V8 builtins embedded in the node binary (node >= 12): ``Builtins_ArrayMap``."""
    return name.startswith("Builtins_") or name.startswith("Builtin:")


def parse_symbol(symbol: str, *, jit: bool = False, kernel: bool = False, module: str = "") -> Symbol:
    """Name, file, line, column, tier and kind hint of one symbol.

    ``jit``: the symbol comes from a JIT map (perf-<pid>.map), so an unknown
    form is still JIT code (hint 'js').  ``kernel``: a kernel symbol.
    ``module``: the DSO or DTrace module, kept as the function's file for
    native code (so that an addon under node_modules gets its package).
    """
    if kernel:
        return Symbol(symbol, "", 0, 0, "", "kernel", module)
    v8 = parse_v8(symbol)
    if v8 is not None:
        return v8._replace(module=module)
    if jit:
        return Symbol(symbol, "", 0, 0, "", "js", module)
    if is_builtin_symbol(symbol):
        return Symbol(symbol, "", 0, 0, "", "builtin", module)
    return Symbol(symbol, module, 0, 0, "", "native", module)


_DISPLAY = re.compile(r"(.*) ([^ ]+?):([0-9]+)(?::([0-9]+))?\Z", re.S)
_JSFILE = re.compile(r"(?:^(?:node|file|https?|webpack|webpack-internal):|[/\\]|\.(?:[cm]?js|[cm]?ts|jsx|tsx|coffee)$"
                     r"|^\[eval\]|^evalmachine\.)")


def parse_display(text: str) -> Symbol | None:
    """nodeflame's own display form of a JS function, ``name file:line[:column]``; None if not one."""
    m = _DISPLAY.match(text)
    if m is None or not _JSFILE.search(m.group(2)):
        return None
    name = m.group(1)
    return Symbol("" if name == "(anonymous)" else name, m.group(2), int(m.group(3)), int(m.group(4) or 0), "", "js")


def parse_dtrace(frame: str) -> Symbol:
    """A DTrace/SystemTap frame ``module`function`` (offset already removed), a V8 name,
    nodeflame's ``name file:line`` or a bare symbol."""
    m = _DTRACE.match(frame)
    if m is None:
        if parse_v8(frame) is None:
            d = parse_display(frame)
            if d is not None:
                return d
        return parse_symbol(frame)
    module, func = m.group(1), m.group(2)
    v8 = parse_v8(func)
    if v8 is not None:
        return v8._replace(module=module)
    if is_builtin_symbol(func):
        return Symbol(func, module, 0, 0, "", "builtin", module)
    return Symbol(func, module, 0, 0, "", "native", module)
