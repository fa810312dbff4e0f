"""What a frame is: its kind and npm package, classified from name and file."""
from __future__ import annotations

import re

import numpy as np

KINDS = ("js", "deps", "node", "builtin", "native", "kernel", "gc", "idle", "program")

_SPECIAL = {
    "(garbage collector)": "gc",
    "(gc)": "gc",
    "(idle)": "idle",
    "(program)": "program",
    "(root)": "program",
}

# node_modules/<name> or node_modules/@scope/<name>; the last node_modules wins.
_PKG = re.compile(r"node_modules[/\\]((?:@[^/\\]+[/\\])?[^/\\]+)(?!.*node_modules[/\\])")
_JS_FILE = re.compile(r"\.(?:[cm]?js|[cm]?ts|jsx|tsx|coffee)$|^(?:file|https?|webpack)://", re.I)
# files that are machine code, not JavaScript: shared objects, native addons, executables named node,
# the vdso, and C/C++/Go/Rust sources (pprof names native functions by their source file)
_NATIVE_FILE = re.compile(
    r"(?:\.so(?:\.[0-9][\w.]*)?|\.node|\.dll|\.dylib|\.exe|(?:^|/)(?:node|nodejs|node\d+)"
    r"|\.(?:c|cc|cpp|cxx|h|hh|hpp|hxx|go|rs|S))$|^\[(?:vdso|vsyscall|vvar)\]$|^//anon$", re.I)
_KERNEL_FILE = re.compile(r"^\[kernel\.kallsyms\]|^\[kernel\]$|\.ko$")
_BUILTIN_NAME = re.compile(r"^(?:Builtins?_|Builtin:|BytecodeHandler:|Stub:|RegExp:|Handler:|StoreIC:|LoadIC:)")
_KERNEL_SYM = re.compile(r"^(?:entry_SYSCALL|__x64_sys_|do_syscall|__sys_|sys_|ksys_|asm_|irq_|__irqentry)")


def package_of(file: str) -> str:
    """npm package name of a file under node_modules, else ''."""
    if not file or "node_modules" not in file:
        return ""
    m = _PKG.search(file)
    return m.group(1).replace("\\", "/") if m else ""


def classify(name: str, file: str = "", hint: str | None = None) -> str:
    """Kind of one function.

    ``hint`` is what the reader already knows (perf's ``[kernel.kallsyms]``
    gives ``kernel``, FlameGraph's ``_[j]`` gives a JIT frame, ...).  A JIT hint
    is refined by the file: node_modules -> deps, ``node:`` -> node.  Without a
    ``js`` hint, a file that is machine code (``/usr/bin/node``, ``libc.so.6``,
    ``addon.node``, ``[vdso]``, a ``.cc`` source) makes the frame native (or
    builtin for V8's ``Builtins_*``), never JavaScript.
    """
    special = _SPECIAL.get(name)
    if special:
        return special
    if hint in ("kernel", "gc", "idle", "program", "native", "builtin"):
        return hint
    f = file or ""
    if hint != "js":  # the reader did not say this is JavaScript: machine code files and V8 builtins
        if _KERNEL_FILE.search(f):
            return "kernel"
        if _NATIVE_FILE.search(f):
            return "builtin" if _BUILTIN_NAME.match(name or "") else "native"
        if hint is None and _BUILTIN_NAME.match(name or ""):
            return "builtin"
    if f.startswith("node:") or f.startswith("internal/") or f in ("node.js", "events.js", "timers.js", "module.js", "fs.js", "net.js", "stream.js", "buffer.js"):
        return "node"
    if "node_modules" in f:
        return "deps"
    if f:
        return "js"
    if hint == "js":
        return "js"
    if hint == "jit-builtin":
        return "builtin"
    return "native"


def classify_many(names, files, hints=None) -> np.ndarray:
    """Vectorised over unique (name, file, hint) triples: ``classify`` of each, with what depends only
    on the file (its regular expressions) worked out once per distinct file and the builtin-name
    match once per distinct name."""
    n = len(names)
    if hints is None:
        hints = [None] * n
    cache: dict = {}
    by_file: dict = {}
    by_name: dict = {}
    out = np.empty(n, dtype=object)
    for i, key in enumerate(zip(names, files, hints)):
        k = cache.get(key)
        if k is None:
            k = cache[key] = _classify_cached(*key, by_file, by_name)
        out[i] = k
    return out


_HINT_KINDS = frozenset(("kernel", "gc", "idle", "program", "native", "builtin"))
_NODE_FILES = frozenset(("node.js", "events.js", "timers.js", "module.js", "fs.js", "net.js", "stream.js", "buffer.js"))


def _file_facts(f: str):
    """(kernel file, machine-code file, kind from the file alone or None) of a file, as classify
    tests them."""
    if f.startswith("node:") or f.startswith("internal/") or f in _NODE_FILES:
        tail = "node"
    elif "node_modules" in f:
        tail = "deps"
    else:
        tail = "js" if f else None
    return bool(_KERNEL_FILE.search(f)), bool(_NATIVE_FILE.search(f)), tail


def _classify_cached(name, file, hint, by_file: dict, by_name: dict) -> str:
    """classify(name, file, hint), with the file's facts and the name's builtin match cached in
    ``by_file`` / ``by_name`` (any value that is not a string: classify itself)."""
    f = file or ""
    if type(f) is not str or type(name or "") is not str:
        return classify(name, file, hint)
    special = _SPECIAL.get(name)
    if special:
        return special
    if hint in _HINT_KINDS:
        return hint
    facts = by_file.get(f)
    if facts is None:
        facts = by_file[f] = _file_facts(f)
    kernel, native, tail = facts
    if hint != "js":
        if kernel:
            return "kernel"
        if native or hint is None:
            b = by_name.get(name)
            if b is None:
                b = by_name[name] = _BUILTIN_NAME.match(name or "") is not None
            if native:
                return "builtin" if b else "native"
            if b:
                return "builtin"
    if tail:
        return tail
    if hint == "js":
        return "js"
    if hint == "jit-builtin":
        return "builtin"
    return "native"


def kind_categorical(values):
    import pandas as pd
    return pd.Categorical(values, categories=list(KINDS))
