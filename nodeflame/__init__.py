"""nodeflame: profile running Node.js processes into pandas tables and flame graphs.

>>> import nodeflame as nf
>>> p = nf.read("app.cpuprofile")      # any supported format, sniffed
>>> p.top(20); p.write("flame.svg"); print(p.text())

Importing the package is cheap: it loads no numpy or pandas.  ``read``, ``diff``, ``Profile``... are
imported on first use (PEP 562), the writers when a Profile is first written, so ``nodeflame
convert --help`` starts in the time of the interpreter and argparse.
"""
from .frames.errors import FormatError, FormatWarning, InvariantError, NodeflameError, TransformError
from .frames.formats import register_lazy as _register_lazy

# higher layers that frames reaches only through these loaders (frames never imports them itself)
_register_lazy("writers", lambda: _import(".writers"))  # importing it registers the output formats
_register_lazy("widgets", lambda: _import(".widgets"))

__version__ = "0.1.0"

__all__ = ["read", "diff", "Diff", "Profile", "Transform", "NodeflameError", "FormatError", "FormatWarning",
           "InvariantError", "TransformError", "__version__"]

# public name -> module (relative to this package) that defines it, imported on first access
_LAZY = {
    "read": ".frames.formats",
    "Profile": ".frames.profile",
    "Transform": ".frames.transforms",
    "diff": ".frames.diff",
    "Diff": ".frames.diff",
    "capture": ".capture",
    "run": ".capture",
    "backends": ".capture",
}


def _import(module: str):
    import importlib  # not `from . import x`: that asks this module's __getattr__, forever
    return importlib.import_module(module, __name__)


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is not None:
        value = getattr(_import(mod), name)
        if mod != ".capture":  # capture's names stay looked up (tests replace them there)
            globals()[name] = value
        return value
    if name == "dataset":  # nodeflame[fleet]: pyarrow, duckdb (and dask) load only here
        return _import(".dataset")  # a callable module: nf.dataset(PATH)
    if name in ("frames", "writers", "widgets"):
        return _import("." + name)
    raise AttributeError(f"module 'nodeflame' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | {"dataset"})


def load_ipython_extension(ip):
    """``%load_ext nodeflame``: registers the ``%nodeflame`` magic (see nodeflame.magic)."""
    from .magic import load_ipython_extension as _load
    _load(ip)
