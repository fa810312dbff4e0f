"""The layers' imports flow one way: cli -> capture -> frames <- writers <- widgets."""
import ast
import pathlib
import sys

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "nodeflame"
STDLIB = set(sys.stdlib_module_names)

# layer -> layers (under nodeflame.) it may import
ALLOWED = {
    "frames": {"frames"},
    "writers": {"frames", "writers"},
    "capture": {"frames", "capture"},
    "widgets": {"frames", "writers", "widgets"},
    "dataset": {"frames", "dataset"},
}
THIRD_PARTY = {
    "frames": {"numpy", "pandas"},
    "writers": {"numpy", "pandas"},
    "dataset": {"numpy", "pandas", "pyarrow"},
}
# optional extras these layers may import lazily, inside a function (never at module level)
LAZY_THIRD_PARTY = {
    "frames": {"google", "msgspec", "pyarrow"},  # protobuf, for pprof; nodeflame[fast]: JSON structs, Arrow compute
    "writers": {"google", "nbformat", "pyarrow"},  # protobuf; nbformat for .ipynb; nodeflame[fast]: Arrow compute
    "dataset": {"duckdb", "dask", "fsspec"},  # nodeflame[fleet]: engines load when a question needs them
}


def _imports(path: pathlib.Path):
    """(module name, lineno, inside a function) of every import in a file, relative imports resolved."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        pkg = parts
    else:
        pkg = parts[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lazy.update(id(n) for n in ast.walk(fn))
    for node in ast.walk(tree):
        yield from ((m, ln, id(node) in lazy) for m, ln in _node_imports(node, pkg))


def _node_imports(node, pkg):
    """(module name, lineno) of the import(s) one AST node makes."""
    if isinstance(node, ast.Import):
        for a in node.names:
            yield a.name, node.lineno
    elif isinstance(node, ast.ImportFrom):
        if not node.level:
            yield node.module, node.lineno
            return
        base = pkg[: len(pkg) - node.level + 1]
        mod = ".".join(base + ([node.module] if node.module else []))
        if node.module:
            yield mod, node.lineno
        else:
            for a in node.names:
                yield f"{mod}.{a.name}", node.lineno
    elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
        if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.args[0].value, node.lineno


def _violations(layer: str):
    bad = []
    for path in sorted((PKG / layer).rglob("*.py")):
        for mod, line, lazy in _imports(path):
            top = mod.split(".")[0]
            if lazy and top in LAZY_THIRD_PARTY.get(layer, ()):
                continue
            if top == "nodeflame":
                sub = mod.split(".")[1] if "." in mod else ""
                if sub not in ALLOWED[layer]:
                    bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod}")
            elif layer in THIRD_PARTY and top not in STDLIB and top not in THIRD_PARTY[layer]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports third-party {mod}")
    return bad


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_point_one_way(layer):
    if not (PKG / layer).is_dir():
        pytest.skip(f"no {layer} layer yet")
    assert _violations(layer) == []


def test_checker_catches_a_wrong_arrow(tmp_path, monkeypatch):
    """The walker must see relative imports that climb into another layer."""
    fake = tmp_path / "nodeflame"
    (fake / "frames").mkdir(parents=True)
    (fake / "frames" / "bad.py").write_text("from ..writers import svg\nimport plotly\nimport google.protobuf\n"
                                           "def f():\n    import nbformat\n    import google.protobuf\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    v = _violations("frames")
    assert any("nodeflame.writers" in x for x in v)
    assert any("plotly" in x for x in v)
    # an optional extra: allowed inside a function, not at module level; nbformat is not one for frames
    assert any("bad.py:3 imports third-party google.protobuf" in x for x in v)
    assert not any("bad.py:6" in x for x in v)
    assert any("bad.py:5 imports third-party nbformat" in x for x in v)


def test_core_import_is_light():
    """`import nodeflame` loads numpy and pandas only: no plotly, websocket, elftools, tqdm, nor the
    dataset layer's duckdb, dask, fsspec (pyarrow: pandas itself loads it when installed)."""
    import subprocess
    code = ("import sys, nodeflame; heavy = [m for m in ('plotly', 'ipywidgets', 'websocket', 'elftools', "
            "'tqdm', 'google.protobuf', 'msgspec', 'duckdb', 'dask', 'distributed', 'fsspec', 'nodeflame.dataset') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_native_code_belongs_to_no_backend():
    """capture/native (ELF, address spaces, CFI) serves the walker, stap and the V8 layout: it imports
    none of them."""
    bad = []
    for path in sorted((PKG / "capture" / "native").rglob("*.py")):
        for mod, ln, _lazy in _imports(path):
            if mod and mod.startswith("nodeflame.") and not mod.startswith("nodeflame.capture.native"):
                bad.append(f"{path.relative_to(PKG.parent)}:{ln} imports {mod}")
    assert not bad, "\n".join(bad)
